/*
 * secret.c - locked, wiped storage for PINs and other secrets.
 *
 * The memory is allocated page-aligned at its final size so it never moves
 * (a realloc could leave a copy behind), mlock'ed where RLIMIT_MEMLOCK allows,
 * marked MADV_DONTDUMP so a core dump does not carry it, and wiped with
 * OPENSSL_cleanse, which the compiler cannot optimise away.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "qes/err.h"
#include "qes/secret.h"

struct qes_secret {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t map_len;
	int locked;
};

void
qes_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		OPENSSL_cleanse(p, len);
}

qes_secret *
qes_secret_new(size_t capacity)
{
	qes_secret *s;
	long page = sysconf(_SC_PAGESIZE);
	size_t pg = page > 0 ? (size_t)page : 4096;
	void *m;

	if (capacity == 0 || capacity > 1024 * 1024)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->cap = capacity;
	s->map_len = (capacity + pg - 1) / pg * pg;
	m = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		free(s);
		return NULL;
	}
	s->data = m;
#ifdef MADV_DONTDUMP
	(void)madvise(m, s->map_len, MADV_DONTDUMP);
#endif
	s->locked = mlock(m, s->map_len) == 0;
	return s;
}

void
qes_secret_free(qes_secret *s)
{
	if (s == NULL)
		return;
	qes_wipe(s->data, s->map_len);
	if (s->locked)
		munlock(s->data, s->map_len);
	munmap(s->data, s->map_len);
	free(s);
}

int
qes_secret_set(qes_secret *s, const void *data, size_t len)
{
	qes_secret_clear(s);
	return qes_secret_append(s, data, len);
}

int
qes_secret_append(qes_secret *s, const void *data, size_t len)
{
	if (len > s->cap - s->len)
		return QES_ERR_LIMIT;
	if (len > 0)
		memcpy(s->data + s->len, data, len);
	s->len += len;
	return 0;
}

int
qes_secret_copy(qes_secret *s, const qes_secret *from)
{
	return qes_secret_set(s, from->data, from->len);
}

void
qes_secret_clear(qes_secret *s)
{
	qes_wipe(s->data, s->cap);
	s->len = 0;
}

const uint8_t *
qes_secret_data(const qes_secret *s)
{
	return s->data;
}

size_t
qes_secret_len(const qes_secret *s)
{
	return s->len;
}

size_t
qes_secret_capacity(const qes_secret *s)
{
	return s->cap;
}

int
qes_secret_locked(const qes_secret *s)
{
	return s->locked;
}
