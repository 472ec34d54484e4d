/*
 * jobs_certs.c - parsed signer certificates, shared by the jobs of one
 * qesd.
 *
 * Every job needs its credential's certificate twice: at submit (which
 * schemes the key can make) and when the agent answers (every value is
 * verified against it). Parsing it each time was about a quarter of
 * qesd's CPU per job, most of it OpenSSL 3's decoder set-up for the public
 * key. The job itself is not kept in memory between the two (it lives in
 * the store, and its answer arrives on another thread, possibly after a
 * restart), so the parse cannot simply travel with the job; instead the
 * service keeps a small bounded cache of parsed certificates.
 *
 * An entry is found by the SHA-256 of the DER and then compared byte for
 * byte, so a hit is exactly the parse of the same bytes: parsing is
 * deterministic and nothing time-dependent is cached (no validity or
 * classification; the jobs use only the key and its schemes). Entries are
 * reference-counted because several jobs of one signer may verify at once
 * on different threads (qes_cert is read-only after parsing, and OpenSSL 3
 * allows concurrent use of one EVP_PKEY). At most JOBS_CERTS_MAX entries
 * stay (least recently used goes first, never one in use); when all are
 * in use the caller gets a parse of its own, freed at release.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sig.h"

#include "jobs_priv.h"

struct jobs_cert {
	struct jobs_cert *next;
	uint8_t sha256[32];
	qes_cert *cert;
	unsigned refs;			/* certs->mu */
	uint64_t last_used;		/* certs->mu */
	int cached;			/* in the list; else freed at release */
};

int
jobs_certs_init(struct jobs_certs *c)
{
	memset(c, 0, sizeof(*c));
	if (pthread_mutex_init(&c->mu, NULL) != 0)
		return QES_ERR_INTERNAL;
	return 0;
}

static void
entry_free(struct jobs_cert *e)
{
	if (e == NULL)
		return;
	qes_cert_free(e->cert);
	free(e);
}

void
jobs_certs_destroy(struct jobs_certs *c)
{
	struct jobs_cert *e, *next;

	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		entry_free(e);
	}
	c->head = NULL;
	c->n = 0;
	pthread_mutex_destroy(&c->mu);
}

static int
same_der(const struct jobs_cert *e, const uint8_t *sha256, const uint8_t *der,
    size_t len)
{
	const uint8_t *have;
	size_t have_len = 0;

	if (memcmp(e->sha256, sha256, sizeof(e->sha256)) != 0)
		return 0;
	have = qes_cert_der(e->cert, &have_len);
	return have != NULL && have_len == len && memcmp(have, der, len) == 0;
}

/* Unlink and free the least recently used entry nobody holds, if any. */
static int
evict_one(struct jobs_certs *c)
{
	struct jobs_cert **pp, **victim = NULL, *e;

	for (pp = &c->head; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->refs == 0 && (victim == NULL ||
		    (*pp)->last_used < (*victim)->last_used))
			victim = pp;
	if (victim == NULL)
		return 0;
	e = *victim;
	*victim = e->next;
	c->n--;
	entry_free(e);
	return 1;
}

int
jobs_cert_acquire(struct jobs_certs *c, const uint8_t *der, size_t len,
    struct jobs_cert **out)
{
	uint8_t sha256[32];
	struct jobs_cert *e, *found = NULL;
	qes_cert *cert = NULL;
	int r;

	*out = NULL;
	if (der == NULL || len == 0)
		return QES_ERR_INVALID_ARG;
	if ((r = qes_md_digest(QES_MD_SHA256, der, len, sha256)) != 0)
		return r;
	pthread_mutex_lock(&c->mu);
	for (e = c->head; e != NULL; e = e->next)
		if (same_der(e, sha256, der, len)) {
			found = e;
			break;
		}
	if (found != NULL) {
		found->refs++;
		found->last_used = ++c->tick;
		c->hits++;
	}
	pthread_mutex_unlock(&c->mu);
	if (found != NULL) {
		*out = found;
		return 0;
	}

	/* parsed outside the lock: other jobs need not wait for it */
	if ((r = qes_cert_from_der(der, len, &cert)) != 0)
		return r;
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		qes_cert_free(cert);
		return QES_ERR_ALLOC;
	}
	memcpy(e->sha256, sha256, sizeof(sha256));
	e->cert = cert;
	e->refs = 1;
	pthread_mutex_lock(&c->mu);
	c->misses++;
	/* another thread may have added the same one meanwhile: use it */
	for (found = c->head; found != NULL; found = found->next)
		if (same_der(found, sha256, der, len))
			break;
	if (found != NULL) {
		found->refs++;
		found->last_used = ++c->tick;
	} else if (c->n < JOBS_CERTS_MAX || evict_one(c)) {
		e->cached = 1;
		e->last_used = ++c->tick;
		e->next = c->head;
		c->head = e;
		c->n++;
	}
	pthread_mutex_unlock(&c->mu);
	if (found != NULL) {
		entry_free(e);
		e = found;
	}
	*out = e;
	return 0;
}

const qes_cert *
jobs_cert_get(const struct jobs_cert *e)
{
	return e->cert;
}

void
jobs_cert_release(struct jobs_certs *c, struct jobs_cert *e)
{
	int drop;

	if (e == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	e->refs--;
	drop = !e->cached && e->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (drop)
		entry_free(e);
}
