/*
 * ratelimit.c - token buckets and authentication-failure counts in a
 * bounded hash table with least-recently-used eviction (see ratelimit.h).
 *
 * Both kinds share one small table type: chained hashing over a power-of-
 * two bucket array, an intrusive LRU list, entries allocated on first use
 * up to max_entries and recycled from the LRU tail after that, one mutex.
 * The critical sections are a hash lookup and a few additions, so one lock
 * per table is plenty for a worker pool of tens of threads.
 *
 * The hash is FNV-1a over a per-process random seed. Keys are client
 * addresses (which a TCP peer cannot choose freely) and ids of keys that
 * already authenticated, so an attacker has little room for hash flooding,
 * and a long chain costs only CPU, never memory.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "qes/err.h"
#include "ratelimit.h"

struct entry {
	char key[QESD_RL_KEY_MAX];
	uint64_t hash;
	struct entry *hnext;		/* bucket chain */
	struct entry *lprev, *lnext;	/* LRU list, most recent at the head */
	/* token bucket */
	double tokens;
	int64_t last_ms;
	/* failure tracker */
	uint32_t failures;
	int64_t window_start_ms;
	int64_t blocked_until_ms;
};

struct table {
	pthread_mutex_t mu;
	struct entry **buckets;
	size_t mask;			/* n_buckets - 1 */
	size_t n, max;
	struct entry *head, *tail;
	uint64_t seed;
};

struct qesd_ratelimit {
	struct table t;
	double per_ms;			/* tokens per millisecond */
	double burst;
};

struct qesd_failtrack {
	struct table t;
	qesd_failtrack_config cfg;
};

/* ------------------------------------------------------------------------- */
/* the table */

static int
table_init(struct table *t, size_t max_entries)
{
	size_t nb = 64;

	memset(t, 0, sizeof(*t));
	if (max_entries == 0 || max_entries > QESD_RL_MAX_ENTRIES)
		max_entries = QESD_RL_MAX_ENTRIES;
	while (nb < max_entries)
		nb <<= 1;
	if ((t->buckets = calloc(nb, sizeof(*t->buckets))) == NULL)
		return QES_ERR_ALLOC;
	if (RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1)
		t->seed = 0x9e3779b97f4a7c15ull;	/* still correct, only predictable */
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t->buckets);
		t->buckets = NULL;
		return QES_ERR_INTERNAL;
	}
	t->mask = nb - 1;
	t->max = max_entries;
	return 0;
}

static void
table_destroy(struct table *t)
{
	struct entry *e, *next;

	if (t->buckets == NULL)
		return;
	for (e = t->head; e != NULL; e = next) {
		next = e->lnext;
		free(e);
	}
	free(t->buckets);
	t->buckets = NULL;
	pthread_mutex_destroy(&t->mu);
}

static uint64_t
hash_key(const struct table *t, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull ^ t->seed;
	const unsigned char *p;

	for (p = (const unsigned char *)key; *p != '\0'; p++) {
		h ^= *p;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 29;
	return h;
}

static void
lru_unlink(struct table *t, struct entry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		t->head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		t->tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void
lru_push_front(struct table *t, struct entry *e)
{
	e->lprev = NULL;
	e->lnext = t->head;
	if (t->head != NULL)
		t->head->lprev = e;
	t->head = e;
	if (t->tail == NULL)
		t->tail = e;
}

static void
chain_remove(struct table *t, struct entry *e)
{
	struct entry **pp = &t->buckets[e->hash & t->mask];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			e->hnext = NULL;
			return;
		}
}

/*
 * The entry of key, made (zeroed, *fresh = 1) when absent. Caller holds
 * the lock. NULL only when allocation fails with the table still empty.
 */
static struct entry *
table_get(struct table *t, const char *key, int *fresh)
{
	uint64_t h = hash_key(t, key);
	struct entry *e;

	*fresh = 0;
	for (e = t->buckets[h & t->mask]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0) {
			lru_unlink(t, e);
			lru_push_front(t, e);
			return e;
		}
	if (t->n < t->max && (e = malloc(sizeof(*e))) != NULL) {
		t->n++;
	} else if ((e = t->tail) != NULL) {
		/* full (or out of memory): recycle the least recently used */
		lru_unlink(t, e);
		chain_remove(t, e);
	} else {
		return NULL;
	}
	memset(e, 0, sizeof(*e));
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->hash = h;
	e->hnext = t->buckets[h & t->mask];
	t->buckets[h & t->mask] = e;
	lru_push_front(t, e);
	*fresh = 1;
	return e;
}

static int
key_ok(const char *key)
{
	return key != NULL && key[0] != '\0' && strlen(key) < QESD_RL_KEY_MAX;
}

/* Whole seconds, rounded up, in 1..86400. */
static uint32_t
ms_to_retry_s(double ms)
{
	uint64_t whole;

	if (!(ms > 0))
		return 1;
	if (ms > 86400000.0)
		return 86400;
	whole = (uint64_t)ms;
	if ((double)whole < ms)
		whole++;
	whole = (whole + 999) / 1000;
	return whole < 1 ? 1 : (uint32_t)whole;
}

/* ------------------------------------------------------------------------- */
/* token buckets */

int
qesd_ratelimit_new(double per_s, unsigned burst, size_t max_entries,
    qesd_ratelimit **out)
{
	qesd_ratelimit *rl;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (!(per_s > 0) || per_s > 1e9 || burst < 1)
		return QES_ERR_INVALID_ARG;
	if ((rl = calloc(1, sizeof(*rl))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = table_init(&rl->t, max_entries)) != 0) {
		free(rl);
		return r;
	}
	rl->per_ms = per_s / 1000.0;
	rl->burst = (double)burst;
	*out = rl;
	return 0;
}

void
qesd_ratelimit_free(qesd_ratelimit *rl)
{
	if (rl == NULL)
		return;
	table_destroy(&rl->t);
	free(rl);
}

int
qesd_ratelimit_take(qesd_ratelimit *rl, const char *key, int64_t now_ms,
    uint32_t *retry_after_s)
{
	struct entry *e;
	double elapsed;
	int fresh, r;

	if (rl == NULL || !key_ok(key) || retry_after_s == NULL)
		return QES_ERR_INVALID_ARG;
	*retry_after_s = 0;
	pthread_mutex_lock(&rl->t.mu);
	if ((e = table_get(&rl->t, key, &fresh)) == NULL) {
		/* no memory at all: fail open, the other limits still hold */
		pthread_mutex_unlock(&rl->t.mu);
		return 0;
	}
	if (fresh) {
		e->tokens = rl->burst;
		e->last_ms = now_ms;
	}
	elapsed = now_ms > e->last_ms ? (double)(now_ms - e->last_ms) : 0.0;
	if (now_ms > e->last_ms)
		e->last_ms = now_ms;
	e->tokens += elapsed * rl->per_ms;
	if (e->tokens > rl->burst)
		e->tokens = rl->burst;
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
		r = 0;
	} else {
		*retry_after_s = ms_to_retry_s((1.0 - e->tokens) / rl->per_ms);
		r = QES_ERR_LIMIT;
	}
	pthread_mutex_unlock(&rl->t.mu);
	return r;
}

size_t
qesd_ratelimit_size(qesd_ratelimit *rl)
{
	size_t n;

	if (rl == NULL)
		return 0;
	pthread_mutex_lock(&rl->t.mu);
	n = rl->t.n;
	pthread_mutex_unlock(&rl->t.mu);
	return n;
}

/* ------------------------------------------------------------------------- */
/* authentication failures */

int
qesd_failtrack_new(const qesd_failtrack_config *cfg, qesd_failtrack **out)
{
	static const qesd_failtrack_config defaults = {
		.window_ms = 60000, .free_failures = 3, .base_delay_ms = 250,
		.max_delay_ms = 2000, .block_after = 20, .block_ms = 60000,
		.max_entries = 0,
	};
	qesd_failtrack *ft;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (cfg == NULL)
		cfg = &defaults;
	if (cfg->window_ms == 0 || cfg->block_after == 0 ||
	    cfg->block_after <= cfg->free_failures || cfg->block_ms == 0)
		return QES_ERR_INVALID_ARG;
	if ((ft = calloc(1, sizeof(*ft))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = table_init(&ft->t, cfg->max_entries)) != 0) {
		free(ft);
		return r;
	}
	ft->cfg = *cfg;
	*out = ft;
	return 0;
}

void
qesd_failtrack_free(qesd_failtrack *ft)
{
	if (ft == NULL)
		return;
	table_destroy(&ft->t);
	free(ft);
}

int
qesd_failtrack_blocked(qesd_failtrack *ft, const char *key, int64_t now_ms,
    uint32_t *retry_after_s)
{
	struct entry *e;
	uint64_t h;
	int blocked = 0;

	if (ft == NULL || !key_ok(key) || retry_after_s == NULL)
		return 0;
	*retry_after_s = 0;
	h = hash_key(&ft->t, key);
	pthread_mutex_lock(&ft->t.mu);
	/* a lookup only: an address that never failed gets no entry */
	for (e = ft->t.buckets[h & ft->t.mask]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0)
			break;
	if (e != NULL && e->blocked_until_ms > now_ms) {
		blocked = 1;
		*retry_after_s = ms_to_retry_s((double)(e->blocked_until_ms - now_ms));
	}
	pthread_mutex_unlock(&ft->t.mu);
	return blocked;
}

uint32_t
qesd_failtrack_fail(qesd_failtrack *ft, const char *key, int64_t now_ms,
    int *blocked, uint32_t *retry_after_s)
{
	const qesd_failtrack_config *c;
	struct entry *e;
	uint32_t delay = 0, over, i;
	int fresh;

	if (blocked != NULL)
		*blocked = 0;
	if (retry_after_s != NULL)
		*retry_after_s = 0;
	if (ft == NULL || !key_ok(key))
		return 0;
	c = &ft->cfg;
	pthread_mutex_lock(&ft->t.mu);
	if ((e = table_get(&ft->t, key, &fresh)) == NULL)
		goto out;
	if (fresh || now_ms - e->window_start_ms >= (int64_t)c->window_ms) {
		e->window_start_ms = now_ms;
		e->failures = 0;
	}
	if (e->failures < UINT32_MAX)
		e->failures++;
	if (e->failures >= c->block_after) {
		e->blocked_until_ms = now_ms + (int64_t)c->block_ms;
		/* a fresh count once the block ends */
		e->failures = 0;
		e->window_start_ms = e->blocked_until_ms;
		if (blocked != NULL)
			*blocked = 1;
		if (retry_after_s != NULL)
			*retry_after_s = ms_to_retry_s((double)c->block_ms);
		goto out;
	}
	if (e->failures > c->free_failures && c->base_delay_ms > 0) {
		over = e->failures - c->free_failures - 1;
		delay = c->base_delay_ms;
		for (i = 0; i < over && delay < c->max_delay_ms; i++)
			delay *= 2;
		if (delay > c->max_delay_ms)
			delay = c->max_delay_ms;
	}
 out:
	pthread_mutex_unlock(&ft->t.mu);
	return delay;
}

size_t
qesd_failtrack_size(qesd_failtrack *ft)
{
	size_t n;

	if (ft == NULL)
		return 0;
	pthread_mutex_lock(&ft->t.mu);
	n = ft->t.n;
	pthread_mutex_unlock(&ft->t.mu);
	return n;
}

/* ------------------------------------------------------------------------- */
/* address keys */

void
qesd_addr_key(const char *addr, char out[QESD_RL_KEY_MAX])
{
	struct in6_addr a6;
	struct in_addr a4;
	char buf[INET6_ADDRSTRLEN];

	if (addr == NULL || addr[0] == '\0') {
		snprintf(out, QESD_RL_KEY_MAX, "%s", "-");
		return;
	}
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		snprintf(out, QESD_RL_KEY_MAX, "%s", addr);
		return;
	}
	if (inet_pton(AF_INET6, addr, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			memcpy(&a4, &a6.s6_addr[12], 4);
			if (inet_ntop(AF_INET, &a4, buf, sizeof(buf)) != NULL) {
				snprintf(out, QESD_RL_KEY_MAX, "%s", buf);
				return;
			}
		}
		memset(&a6.s6_addr[8], 0, 8);
		if (inet_ntop(AF_INET6, &a6, buf, sizeof(buf)) != NULL) {
			snprintf(out, QESD_RL_KEY_MAX, "%s/64", buf);
			return;
		}
	}
	snprintf(out, QESD_RL_KEY_MAX, "%.*s", QESD_RL_KEY_MAX - 1, addr);
}
