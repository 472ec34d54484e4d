/*
 * buf.c - growable buffers (qes_buf) and bounded cursors (qes_cursor).
 *
 * The cursor is what every parser of untrusted bytes in libqes reads through;
 * it returns an error instead of reading past the end, which keeps pointer
 * arithmetic on input out of the parsers themselves. Secret buffers are wiped
 * before their memory is released or moved by a reallocation.
 */
#define _GNU_SOURCE	/* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"

struct qes_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	int secret;
};

static qes_buf *
buf_alloc(int secret)
{
	qes_buf *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->max = QES_BUF_DEFAULT_MAX;
	b->secret = secret;
	return b;
}

qes_buf *
qes_buf_new(void)
{
	return buf_alloc(0);
}

qes_buf *
qes_buf_new_secret(void)
{
	return buf_alloc(1);
}

void
qes_buf_free(qes_buf *b)
{
	if (b == NULL)
		return;
	if (b->secret && b->data != NULL)
		qes_wipe(b->data, b->cap);
	free(b->data);
	free(b);
}

void
qes_buf_set_max(qes_buf *b, size_t max_bytes)
{
	b->max = max_bytes;
}

const uint8_t *
qes_buf_data(const qes_buf *b)
{
	return b->data;
}

uint8_t *
qes_buf_mutable(qes_buf *b)
{
	return b->data;
}

size_t
qes_buf_len(const qes_buf *b)
{
	return b->len;
}

void
qes_buf_reset(qes_buf *b)
{
	if (b->secret && b->data != NULL)
		qes_wipe(b->data, b->cap);
	b->len = 0;
}

int
qes_buf_reserve(qes_buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *n;

	/* one spare byte always, so qes_buf_cstr() never has to grow */
	if (extra > b->max - b->len || b->len + extra > b->max)
		return QES_ERR_LIMIT;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap < 64 ? 64 : b->cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (b->secret) {
		/* never leave a copy behind in memory realloc() released */
		if ((n = malloc(ncap)) == NULL)
			return QES_ERR_ALLOC;
		if (b->data != NULL) {
			memcpy(n, b->data, b->len);
			qes_wipe(b->data, b->cap);
			free(b->data);
		}
	} else if ((n = realloc(b->data, ncap)) == NULL)
		return QES_ERR_ALLOC;
	b->data = n;
	b->cap = ncap;
	return 0;
}

int
qes_buf_put(qes_buf *b, const void *data, size_t len)
{
	int r;

	if (len == 0)
		return 0;
	if ((r = qes_buf_reserve(b, len)) != 0)
		return r;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int
qes_buf_put_u8(qes_buf *b, uint8_t v)
{
	return qes_buf_put(b, &v, 1);
}

int
qes_buf_put_str(qes_buf *b, const char *s)
{
	return qes_buf_put(b, s, strlen(s));
}

int
qes_buf_putf(qes_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return QES_ERR_INTERNAL;
	if ((r = qes_buf_reserve(b, (size_t)n)) != 0)
		return r;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int
qes_buf_truncate(qes_buf *b, size_t new_len)
{
	if (new_len > b->len)
		return QES_ERR_INVALID_ARG;
	if (b->secret)
		qes_wipe(b->data + new_len, b->len - new_len);
	b->len = new_len;
	return 0;
}

int
qes_buf_put_hex(qes_buf *b, const uint8_t *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;
	int r;

	if (len > SIZE_MAX / 2)
		return QES_ERR_LIMIT;
	if ((r = qes_buf_reserve(b, len * 2)) != 0)
		return r;
	for (i = 0; i < len; i++) {
		b->data[b->len++] = (uint8_t)hex[data[i] >> 4];
		b->data[b->len++] = (uint8_t)hex[data[i] & 0xf];
	}
	return 0;
}

int
qes_buf_cstr(qes_buf *b, const char **out)
{
	int r;

	if ((r = qes_buf_reserve(b, 0)) != 0)
		return r;
	b->data[b->len] = '\0';
	*out = (const char *)b->data;
	return 0;
}

int
qes_buf_read_file(const char *path, size_t max_bytes, qes_buf **out)
{
	qes_buf *b = NULL;
	uint8_t chunk[65536];
	ssize_t n;
	int fd = -1, r = QES_ERR_IO;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
	if ((b = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	qes_buf_set_max(b, max_bytes);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if ((r = qes_buf_put(b, chunk, (size_t)n)) != 0)
			goto out;
		r = QES_ERR_IO;
	}
	*out = b;
	b = NULL;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	qes_buf_free(b);
	return r;
}

int
qes_file_tmp_beside(const char *path, char **tmp_out, int *fd_out)
{
	/* mkostemp(3)'s template: it replaces the six X with a unique name */
	static const char suffix[] = ".tmpXXXXXX";
	size_t n;
	char *tmp;
	int fd;

	if (path == NULL || path[0] == '\0' || tmp_out == NULL || fd_out == NULL)
		return QES_ERR_INVALID_ARG;
	n = strlen(path) + sizeof(suffix);
	if (n > PATH_MAX)
		return QES_ERR_INVALID_ARG;
	if ((tmp = malloc(n)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(tmp, path, n - sizeof(suffix));
	memcpy(tmp + n - sizeof(suffix), suffix, sizeof(suffix));
	/* mkostemp: O_EXCL and mode 0600 from the start, never wider */
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		int e = errno;

		free(tmp);
		errno = e;
		return QES_ERR_IO;
	}
	*tmp_out = tmp;
	*fd_out = fd;
	return 0;
}

/* fsync the directory holding path, so that a rename into it is durable. */
static int
fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];
	int fd, r = 0;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return -1;
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (fsync(fd) != 0 && errno != EINVAL)	/* some file systems refuse it */
		r = -1;
	close(fd);
	return r;
}

int
qes_file_commit(int fd, const char *tmp, const char *path, unsigned mode)
{
	int e;

	if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return fsync_parent(path) == 0 ? 0 : QES_ERR_IO;
 fail:
	e = errno;
	qes_file_discard(fd, tmp);
	errno = e;
	return QES_ERR_IO;
}

void
qes_file_discard(int fd, const char *tmp)
{
	int e = errno;

	if (fd >= 0)
		close(fd);
	if (tmp != NULL)
		(void)unlink(tmp);
	errno = e;
}

int
qes_buf_write_file(const qes_buf *b, const char *path, unsigned mode)
{
	char *tmp = NULL;
	size_t off = 0;
	ssize_t n;
	int fd, r;

	if ((r = qes_file_tmp_beside(path, &tmp, &fd)) != 0)
		return r;
	while (off < b->len) {
		n = write(fd, b->data + off, b->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			qes_file_discard(fd, tmp);
			free(tmp);
			return QES_ERR_IO;
		}
		off += (size_t)n;
	}
	r = qes_file_commit(fd, tmp, path, mode);
	free(tmp);
	return r;
}

void
qes_cursor_init(qes_cursor *c, const void *data, size_t len)
{
	c->data = data;
	c->len = data != NULL ? len : 0;
	c->off = 0;
}

size_t
qes_cursor_remaining(const qes_cursor *c)
{
	return c->len - c->off;
}

int
qes_cursor_get_bytes(qes_cursor *c, size_t n, const uint8_t **out)
{
	if (n > c->len - c->off)
		return QES_ERR_TRUNCATED;
	*out = c->data + c->off;
	c->off += n;
	return 0;
}

int
qes_cursor_get_u8(qes_cursor *c, uint8_t *out)
{
	const uint8_t *p;
	int r;

	if ((r = qes_cursor_get_bytes(c, 1, &p)) != 0)
		return r;
	*out = p[0];
	return 0;
}

int
qes_cursor_get_be16(qes_cursor *c, uint16_t *out)
{
	const uint8_t *p;
	int r;

	if ((r = qes_cursor_get_bytes(c, 2, &p)) != 0)
		return r;
	*out = (uint16_t)((unsigned)p[0] << 8 | p[1]);
	return 0;
}

int
qes_cursor_get_be32(qes_cursor *c, uint32_t *out)
{
	const uint8_t *p;
	int r;

	if ((r = qes_cursor_get_bytes(c, 4, &p)) != 0)
		return r;
	*out = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	return 0;
}

int
qes_cursor_peek_u8(const qes_cursor *c, uint8_t *out)
{
	if (c->off >= c->len)
		return QES_ERR_TRUNCATED;
	*out = c->data[c->off];
	return 0;
}

int
qes_cursor_skip(qes_cursor *c, size_t n)
{
	const uint8_t *p;

	return qes_cursor_get_bytes(c, n, &p);
}

int
qes_cursor_sub(qes_cursor *c, size_t n, qes_cursor *sub)
{
	const uint8_t *p;
	int r;

	if ((r = qes_cursor_get_bytes(c, n, &p)) != 0)
		return r;
	qes_cursor_init(sub, p, n);
	return 0;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int
qes_hex_decode(const char *hex, qes_buf *out)
{
	size_t i, n = strlen(hex);
	int hi, lo, r;

	if (n % 2 != 0)
		return QES_ERR_FORMAT;
	for (i = 0; i < n; i += 2) {
		if ((hi = hexval(hex[i])) < 0 || (lo = hexval(hex[i + 1])) < 0)
			return QES_ERR_FORMAT;
		if ((r = qes_buf_put_u8(out, (uint8_t)(hi << 4 | lo))) != 0)
			return r;
	}
	return 0;
}
