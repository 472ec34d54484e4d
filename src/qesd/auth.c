/*
 * auth.c - API key authentication: the middleware, the key cache and the
 * batched last_used_at writer (see auth.h for the behaviour and the
 * decisions behind it).
 *
 * Secrets: the Authorization value is parsed in place and wiped (with the
 * request's copy freed) before anything else happens; the raw secret lives
 * in one stack buffer until its HMAC is computed, the HMAC until it is
 * compared; both are wiped on every path. Nothing here logs a value that
 * came from the header except a key id that parsed as a well-formed id.
 *
 * The cache is set-associative (4 ways per set, fixed size, allocated
 * once): a full set forgets its least recently fetched entry, which costs
 * one store read later. It holds key hashes, which are not secrets (the
 * database holds them too) but are wiped when an entry is dropped anyway.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "app.h"
#include "audit_svc.h"
#include "auth.h"
#include "log.h"
#include "problem.h"
#include "ratelimit.h"

#define CACHE_WAYS 4
#define CACHE_DEFAULT_ENTRIES 4096
#define CACHE_MAX_ENTRIES 1000000
#define USES_SLOTS 8192			/* open addressing, at most half full */
#define USES_MAX (USES_SLOTS / 2)
#define TOUCH_DEFAULT_MS 1000

/* ------------------------------------------------------------------------- */
/* decisions and parsing (pure) */

const char *
qesd_auth_result_name(qesd_auth_result r)
{
	switch (r) {
	case QESD_AUTH_OK: return "ok";
	case QESD_AUTH_UNKNOWN_KEY: return "unknown_key";
	case QESD_AUTH_WRONG_SECRET: return "wrong_secret";
	case QESD_AUTH_REVOKED: return "revoked";
	case QESD_AUTH_EXPIRED: return "expired";
	case QESD_AUTH_GRACE_OVER: return "grace_over";
	}
	return "unknown";
}

qesd_auth_result
qesd_auth_decide(const qesd_key_facts *k, const uint8_t mac[QESD_HMAC_LEN],
    int64_t now_ms)
{
	int cur, prev;

	if (k == NULL || mac == NULL)
		return QESD_AUTH_UNKNOWN_KEY;
	/* both comparisons always run */
	cur = CRYPTO_memcmp(mac, k->hash, QESD_HMAC_LEN) == 0;
	prev = CRYPTO_memcmp(mac, k->prev_hash, QESD_HMAC_LEN) == 0;
	prev = prev && k->has_prev;
	if (!cur && !prev)
		return QESD_AUTH_WRONG_SECRET;
	if (k->revoked_at_ms != 0)
		return QESD_AUTH_REVOKED;
	if (k->expires_at_ms != 0 && k->expires_at_ms <= now_ms)
		return QESD_AUTH_EXPIRED;
	if (!cur && !(k->prev_valid_until_ms > now_ms))
		return QESD_AUTH_GRACE_OVER;
	return QESD_AUTH_OK;
}

int
qesd_auth_parse_bearer(const char *value, char key_id[QESD_ID_SIZE],
    uint8_t secret[QESD_APIKEY_SECRET_BYTES])
{
	const char *p;
	size_t len;

	if (key_id == NULL || secret == NULL)
		return QES_ERR_INVALID_ARG;
	key_id[0] = '\0';
	qes_wipe(secret, QESD_APIKEY_SECRET_BYTES);
	if (value == NULL)
		return QES_ERR_FORMAT;
	len = strnlen(value, QESD_MAX_AUTHORIZATION_BYTES + 1);
	/* "Bearer" 1*SP token (RFC 6750 2.1; the scheme is case-insensitive) */
	if (len < 7 || len > QESD_MAX_AUTHORIZATION_BYTES ||
	    strncasecmp(value, "Bearer", 6) != 0 || value[6] != ' ')
		return QES_ERR_FORMAT;
	for (p = value + 6; *p == ' '; p++)
		;
	return qesd_apikey_parse(p, len - (size_t)(p - value), key_id, secret) == 0 ?
	    0 : QES_ERR_FORMAT;
}

/* ------------------------------------------------------------------------- */
/* the service */

struct cache_slot {
	int used;
	int64_t fetched_mono_ms;
	qesd_key_facts facts;
};

struct use_slot {
	int used;
	qesd_key_use use;
};

struct qesd_auth_svc {
	qesd_store *store;
	unsigned ttl_ms;
	unsigned touch_ms;
	uint64_t seed;

	pthread_mutex_t cache_mu;
	struct cache_slot *slots;	/* n_sets * CACHE_WAYS */
	size_t n_sets;
	uint64_t epoch;			/* cache_mu: bumped by every eviction */

	pthread_mutex_t uses_mu;
	pthread_cond_t uses_cv;
	struct use_slot *uses;		/* USES_SLOTS */
	size_t n_uses;
	int stop;			/* uses_mu */
	pthread_t thread;
	int thread_started;
	pthread_mutex_t flush_mu;	/* one flush at a time */

	pthread_mutex_t stats_mu;
	qesd_auth_stats stats;
};

static uint64_t
hash_id(const qesd_auth_svc *svc, const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull ^ svc->seed;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 31);
}

static void
stat_add(qesd_auth_svc *svc, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&svc->stats_mu);
	*field += n;
	pthread_mutex_unlock(&svc->stats_mu);
}

static void
deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *
touch_thread(void *arg)
{
	qesd_auth_svc *svc = arg;
	struct timespec deadline;
	int stop, r;

	for (;;) {
		pthread_mutex_lock(&svc->uses_mu);
		deadline_after(&deadline, svc->touch_ms);
		while (!svc->stop && pthread_cond_timedwait(&svc->uses_cv,
		    &svc->uses_mu, &deadline) != ETIMEDOUT)
			;
		stop = svc->stop;
		pthread_mutex_unlock(&svc->uses_mu);
		if ((r = qesd_auth_flush_uses(svc)) != 0)
			qesd_log(QESD_LOG_WARN,
			    "last_used_at times could not be written; they are dropped",
			    QLS("error", qes_strerror(r)));
		if (stop)
			return NULL;
	}
}

int
qesd_auth_svc_new(qesd_store *store, const qesd_auth_svc_config *cfg,
    qesd_auth_svc **out)
{
	qesd_auth_svc *svc = NULL;
	pthread_condattr_t ca;
	size_t entries;
	int r = QES_ERR_ALLOC, ca_init = 0, cache_mu = 0, uses_mu = 0,
	    uses_cv = 0, flush_mu = 0, stats_mu = 0;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((svc = calloc(1, sizeof(*svc))) == NULL)
		return QES_ERR_ALLOC;
	svc->store = store;
	svc->ttl_ms = cfg != NULL ? cfg->cache_ttl_ms : 2000;
	svc->touch_ms = cfg != NULL && cfg->touch_interval_ms != 0 ?
	    cfg->touch_interval_ms : TOUCH_DEFAULT_MS;
	entries = cfg != NULL && cfg->cache_entries != 0 ? cfg->cache_entries :
	    CACHE_DEFAULT_ENTRIES;
	if (entries > CACHE_MAX_ENTRIES)
		entries = CACHE_MAX_ENTRIES;
	svc->n_sets = (entries + CACHE_WAYS - 1) / CACHE_WAYS;
	if ((svc->slots = calloc(svc->n_sets * CACHE_WAYS,
	    sizeof(*svc->slots))) == NULL ||
	    (svc->uses = calloc(USES_SLOTS, sizeof(*svc->uses))) == NULL)
		goto out;
	if (RAND_bytes((unsigned char *)&svc->seed, sizeof(svc->seed)) != 1)
		svc->seed = 0x2545f4914f6cdd1dull;
	r = QES_ERR_INTERNAL;
	if (pthread_mutex_init(&svc->cache_mu, NULL) != 0)
		goto out;
	cache_mu = 1;
	if (pthread_mutex_init(&svc->uses_mu, NULL) != 0)
		goto out;
	uses_mu = 1;
	if (pthread_mutex_init(&svc->flush_mu, NULL) != 0)
		goto out;
	flush_mu = 1;
	if (pthread_mutex_init(&svc->stats_mu, NULL) != 0)
		goto out;
	stats_mu = 1;
	if (pthread_condattr_init(&ca) != 0)
		goto out;
	ca_init = 1;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&svc->uses_cv, &ca) != 0)
		goto out;
	uses_cv = 1;
	if (store != NULL && (cfg == NULL || !cfg->no_thread)) {
		if (pthread_create(&svc->thread, NULL, touch_thread, svc) != 0)
			goto out;
		svc->thread_started = 1;
	}
	*out = svc;
	svc = NULL;
	r = 0;
 out:
	if (ca_init)
		pthread_condattr_destroy(&ca);
	if (svc != NULL) {
		if (uses_cv)
			pthread_cond_destroy(&svc->uses_cv);
		if (cache_mu)
			pthread_mutex_destroy(&svc->cache_mu);
		if (uses_mu)
			pthread_mutex_destroy(&svc->uses_mu);
		if (flush_mu)
			pthread_mutex_destroy(&svc->flush_mu);
		if (stats_mu)
			pthread_mutex_destroy(&svc->stats_mu);
		free(svc->slots);
		free(svc->uses);
		free(svc);
	}
	return r;
}

void
qesd_auth_svc_free(qesd_auth_svc *svc)
{
	if (svc == NULL)
		return;
	pthread_mutex_lock(&svc->uses_mu);
	svc->stop = 1;
	pthread_cond_signal(&svc->uses_cv);
	pthread_mutex_unlock(&svc->uses_mu);
	if (svc->thread_started)
		pthread_join(svc->thread, NULL);	/* it flushes once more */
	else if (svc->store != NULL)
		(void)qesd_auth_flush_uses(svc);
	qes_wipe(svc->slots, svc->n_sets * CACHE_WAYS * sizeof(*svc->slots));
	pthread_cond_destroy(&svc->uses_cv);
	pthread_mutex_destroy(&svc->cache_mu);
	pthread_mutex_destroy(&svc->uses_mu);
	pthread_mutex_destroy(&svc->flush_mu);
	pthread_mutex_destroy(&svc->stats_mu);
	free(svc->slots);
	free(svc->uses);
	free(svc);
}

/* ---- cache ---- */

static void
facts_from_key(const qesd_api_key *k, qesd_key_facts *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->key_id, sizeof(f->key_id), "%s", k->id);
	snprintf(f->tenant_id, sizeof(f->tenant_id), "%s", k->tenant_id);
	f->scopes = k->scopes;
	memcpy(f->hash, k->secret_hash, QESD_HMAC_LEN);
	f->has_prev = k->has_prev;
	if (k->has_prev)
		memcpy(f->prev_hash, k->prev_secret_hash, QESD_HMAC_LEN);
	f->prev_valid_until_ms = k->prev_valid_until_ms;
	f->expires_at_ms = k->expires_at_ms;
	f->revoked_at_ms = k->revoked_at_ms;
}

/* The slot of key_id in its set, or NULL. Caller holds cache_mu. */
static struct cache_slot *
cache_find(qesd_auth_svc *svc, const char *key_id, struct cache_slot **set_out)
{
	struct cache_slot *set;
	size_t i;

	set = &svc->slots[(hash_id(svc, key_id) % svc->n_sets) * CACHE_WAYS];
	if (set_out != NULL)
		*set_out = set;
	for (i = 0; i < CACHE_WAYS; i++)
		if (set[i].used && strcmp(set[i].facts.key_id, key_id) == 0)
			return &set[i];
	return NULL;
}

static void
cache_insert(qesd_auth_svc *svc, const qesd_key_facts *f, int64_t mono_ms,
    uint64_t epoch_seen)
{
	struct cache_slot *set, *slot;
	size_t i;

	if (svc->ttl_ms == 0)
		return;
	pthread_mutex_lock(&svc->cache_mu);
	/* an eviction ran meanwhile: what we read may be the old row */
	if (svc->epoch != epoch_seen)
		goto out;
	if ((slot = cache_find(svc, f->key_id, &set)) == NULL) {
		slot = &set[0];
		for (i = 0; i < CACHE_WAYS; i++) {
			if (!set[i].used) {
				slot = &set[i];
				break;
			}
			if (set[i].fetched_mono_ms < slot->fetched_mono_ms)
				slot = &set[i];
		}
	}
	slot->used = 1;
	slot->fetched_mono_ms = mono_ms;
	slot->facts = *f;
 out:
	pthread_mutex_unlock(&svc->cache_mu);
}

int
qesd_auth_lookup(qesd_auth_svc *svc, const char *key_id, int64_t mono_ms,
    int bypass_cache, qesd_key_facts *out, int *from_cache)
{
	struct cache_slot *slot;
	qesd_api_key k;
	qesd_tx *tx = NULL;
	uint64_t epoch;
	int r;

	if (from_cache != NULL)
		*from_cache = 0;
	if (svc == NULL || key_id == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("key", key_id))
		return QES_ERR_NOT_FOUND;
	pthread_mutex_lock(&svc->cache_mu);
	epoch = svc->epoch;
	if (!bypass_cache && svc->ttl_ms != 0 &&
	    (slot = cache_find(svc, key_id, NULL)) != NULL &&
	    mono_ms - slot->fetched_mono_ms < (int64_t)svc->ttl_ms &&
	    mono_ms >= slot->fetched_mono_ms) {
		*out = slot->facts;
		pthread_mutex_unlock(&svc->cache_mu);
		if (from_cache != NULL)
			*from_cache = 1;
		stat_add(svc, &svc->stats.cache_hits, 1);
		return 0;
	}
	pthread_mutex_unlock(&svc->cache_mu);
	stat_add(svc, &svc->stats.cache_misses, 1);
	if (svc->store == NULL)
		return QES_ERR_NOT_FOUND;

	memset(&k, 0, sizeof(k));
	if ((r = qesd_store_begin(svc->store, QESD_TX_READ, &tx)) != 0)
		goto out;
	stat_add(svc, &svc->stats.store_reads, 1);
	if ((r = qesd_key_get_for_auth(tx, key_id, &k)) != 0)
		goto out;
	facts_from_key(&k, out);
	cache_insert(svc, out, mono_ms, epoch);
 out:
	qesd_tx_end(tx);
	qes_wipe(&k, sizeof(k));
	return r;
}

void
qesd_auth_evict(qesd_auth_svc *svc, const char *key_id)
{
	struct cache_slot *slot;

	if (svc == NULL || key_id == NULL)
		return;
	pthread_mutex_lock(&svc->cache_mu);
	svc->epoch++;
	if ((slot = cache_find(svc, key_id, NULL)) != NULL)
		qes_wipe(slot, sizeof(*slot));
	pthread_mutex_unlock(&svc->cache_mu);
}

/* ---- last_used_at ---- */

void
qesd_auth_touch(qesd_auth_svc *svc, const char *tenant_id, const char *key_id,
    int64_t now_ms)
{
	size_t i, idx;
	int dropped = 0;

	if (svc == NULL || tenant_id == NULL || key_id == NULL || now_ms <= 0)
		return;
	idx = (size_t)(hash_id(svc, key_id) % USES_SLOTS);
	pthread_mutex_lock(&svc->uses_mu);
	for (i = 0; i < USES_SLOTS; i++, idx = (idx + 1) % USES_SLOTS) {
		struct use_slot *u = &svc->uses[idx];

		if (u->used && strcmp(u->use.key_id, key_id) == 0) {
			if (now_ms > u->use.used_at_ms)
				u->use.used_at_ms = now_ms;
			break;
		}
		if (!u->used) {
			if (svc->n_uses >= USES_MAX) {
				dropped = 1;
				break;
			}
			u->used = 1;
			snprintf(u->use.key_id, sizeof(u->use.key_id), "%s", key_id);
			snprintf(u->use.tenant_id, sizeof(u->use.tenant_id), "%s",
			    tenant_id);
			u->use.used_at_ms = now_ms;
			svc->n_uses++;
			break;
		}
	}
	pthread_mutex_unlock(&svc->uses_mu);
	if (dropped)
		stat_add(svc, &svc->stats.uses_dropped, 1);
}

int
qesd_auth_flush_uses(qesd_auth_svc *svc)
{
	qesd_key_use *batch = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i;
	int r = 0;

	if (svc == NULL || svc->store == NULL)
		return 0;
	pthread_mutex_lock(&svc->flush_mu);
	pthread_mutex_lock(&svc->uses_mu);
	if (svc->n_uses > 0 &&
	    (batch = calloc(svc->n_uses, sizeof(*batch))) != NULL) {
		for (i = 0; i < USES_SLOTS; i++)
			if (svc->uses[i].used)
				batch[n++] = svc->uses[i].use;
		memset(svc->uses, 0, USES_SLOTS * sizeof(*svc->uses));
		svc->n_uses = 0;
	} else if (svc->n_uses > 0) {
		r = QES_ERR_ALLOC;	/* keep them for the next round */
	}
	pthread_mutex_unlock(&svc->uses_mu);
	if (n == 0)
		goto out;
	if ((r = qesd_store_begin(svc->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_key_touch(tx, batch, n)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0) {
		stat_add(svc, &svc->stats.uses_dropped, n);
		goto out;
	}
	stat_add(svc, &svc->stats.uses_written, n);
 out:
	qesd_tx_end(tx);
	free(batch);
	pthread_mutex_unlock(&svc->flush_mu);
	return r;
}

void
qesd_auth_get_stats(qesd_auth_svc *svc, qesd_auth_stats *out)
{
	if (svc == NULL || out == NULL)
		return;
	pthread_mutex_lock(&svc->stats_mu);
	*out = svc->stats;
	pthread_mutex_unlock(&svc->stats_mu);
}

/* ------------------------------------------------------------------------- */
/* the middleware */

/* What a deferred refusal answers when it resumes. */
struct refusal {
	int status;
	const char *problem;
	const char *title;
	const char *detail;
	const char *www_authenticate;
};

static const struct refusal refuse_missing = { 401, "unauthorized",
	"Authentication required",
	"send an API key as Authorization: Bearer <key>",
	"Bearer realm=\"qes\"" };
static const struct refusal refuse_malformed = { 401, "unauthorized",
	"Authentication required",
	"the Authorization header is not \"Bearer\" followed by an API key in the qes_<key id>_<secret> format",
	"Bearer realm=\"qes\", error=\"invalid_request\"" };
static const struct refusal refuse_invalid = { 401, "invalid_api_key",
	"Invalid API key",
	"the API key is not valid: it may be unknown, revoked, expired or replaced by a rotation",
	"Bearer realm=\"qes\", error=\"invalid_token\"" };

static void
refusal_fill(qesd_response *resp, const qesd_request *req,
    const struct refusal *f)
{
	qesd_problem(resp, req, f->status, f->problem, f->title, f->detail);
	if (f->www_authenticate != NULL)
		(void)qesd_response_header(resp, "WWW-Authenticate",
		    f->www_authenticate);
}

static void
refusal_resume(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg)
{
	(void)reason;
	if (resp == NULL)
		return;
	refusal_fill(resp, req, arg);
}

static int
too_many(qesd_app *app, qesd_request *req, qesd_response *resp,
    uint32_t retry_after_s, const char *detail)
{
	char v[16];

	qesd_problem(resp, req, 429, "rate_limited", "Too many requests", detail);
	snprintf(v, sizeof(v), "%u", retry_after_s > 0 ? retry_after_s : 1);
	(void)qesd_response_header(resp, "Retry-After", v);
	qesd_metrics_rate_limited(app->metrics);
	return QESD_MW_STOP;
}

static int
unavailable(qesd_request *req, qesd_response *resp, const char *problem,
    const char *detail)
{
	qesd_problem(resp, req, 503, problem, "Service unavailable", detail);
	(void)qesd_response_header(resp, "Retry-After", "1");
	return QESD_MW_STOP;
}

/*
 * A failed authentication: count it (metrics, per-address slow-down), log
 * the real reason with the key id, record it in the key's tenant when
 * there is one, then answer - at once, after a deferred delay, or with
 * 429 when the address has now failed too often.
 */
static int
auth_failed(qesd_app *app, qesd_request *req, qesd_response *resp,
    const char *addr_key, const struct refusal *f, const char *reason,
    const char *key_id, const char *tenant_id)
{
	char details[96];
	uint32_t delay_ms, retry_s = 0;
	uint64_t token;
	int blocked = 0, r;

	qesd_metrics_auth_failure(app->metrics);
	delay_ms = qesd_failtrack_fail(app->auth_fails, addr_key,
	    qesd_mono_ms(), &blocked, &retry_s);
	qesd_log(QESD_LOG_WARN, "authentication failed",
	    QLS("request_id", req->request_id), QLS("reason", reason),
	    QLS("key_id", key_id != NULL && key_id[0] != '\0' ? key_id : NULL),
	    QLS("tenant", tenant_id), QLS("route", req->route_name),
	    QLS("client", req->client_addr), QLI("delay_ms", delay_ms),
	    QLI("blocked", blocked));
	if (tenant_id != NULL && key_id != NULL) {
		snprintf(details, sizeof(details), "{\"reason\":\"%s\"}", reason);
		r = qesd_audit_queue_req(app, tenant_id, key_id, req,
		    "auth.failed", blocked ? 429 : f->status, details);
		if (r != 0)
			qesd_log(QESD_LOG_ERROR,
			    "auth.failed audit record could not be queued",
			    QLS("request_id", req->request_id),
			    QLS("tenant", tenant_id), QLS("error", qes_strerror(r)));
	}
	if (blocked)
		return too_many(app, req, resp, retry_s,
		    "too many failed authentications from this address");
	if (delay_ms > 0 && req->server != NULL &&
	    qesd_defer(req, delay_ms, refusal_resume, (void *)f, &token) == 0)
		return QESD_MW_DEFERRED;
	refusal_fill(resp, req, f);
	return QESD_MW_STOP;
}

int
qesd_auth_middleware(void *appv, qesd_request *req, qesd_response *resp)
{
	qesd_app *app = appv;
	const qesd_route *route;
	char addr[QESD_RL_KEY_MAX], key_id[QESD_ID_SIZE];
	uint8_t secret[QESD_APIKEY_SECRET_BYTES], mac[QESD_HMAC_LEN];
	qesd_auth_result res = QESD_AUTH_UNKNOWN_KEY;
	qesd_key_facts k;
	uint32_t retry_s;
	int64_t mono, now;
	int r, from_cache = 0, rc;

	memset(&req->auth, 0, sizeof(req->auth));
	memset(&k, 0, sizeof(k));
	key_id[0] = '\0';
	if (app == NULL || (route = req->route) == NULL) {
		qesd_request_wipe_authorization(req);
		return QESD_MW_CONTINUE;
	}
	mono = qesd_mono_ms();
	qesd_addr_key(req->client_addr, addr);

	if (route->scopes == QESD_SCOPE_NONE) {
		/* public: a presented key means nothing here */
		qesd_request_wipe_authorization(req);
		if (route->flags & QESD_ROUTE_DURING_DRAIN)
			return QESD_MW_CONTINUE;	/* probes are never limited */
		if (qesd_ratelimit_take(app->rl_addr, addr, mono, &retry_s) ==
		    QES_ERR_LIMIT)
			return too_many(app, req, resp, retry_s,
			    "too many requests from this address");
		return QESD_MW_CONTINUE;
	}

	if (qesd_failtrack_blocked(app->auth_fails, addr, mono, &retry_s)) {
		qesd_request_wipe_authorization(req);
		return too_many(app, req, resp, retry_s,
		    "too many failed authentications from this address");
	}
	if (qesd_ratelimit_take(app->rl_addr, addr, mono, &retry_s) ==
	    QES_ERR_LIMIT) {
		qesd_request_wipe_authorization(req);
		return too_many(app, req, resp, retry_s,
		    "too many requests from this address");
	}
	if (req->authorization == NULL) {
		/* a forgotten header is not a guess: no slow-down */
		qesd_metrics_auth_failure(app->metrics);
		refusal_fill(resp, req, &refuse_missing);
		return QESD_MW_STOP;
	}
	r = qesd_auth_parse_bearer(req->authorization, key_id, secret);
	qesd_request_wipe_authorization(req);
	if (r != 0)
		return auth_failed(app, req, resp, addr, &refuse_malformed,
		    "malformed", NULL, NULL);
	r = qesd_apikey_hmac(app->pepper, secret, mac);
	qes_wipe(secret, sizeof(secret));
	if (r != 0) {
		qes_wipe(mac, sizeof(mac));
		qesd_problem(resp, req, 500, "internal", "Internal error",
		    "the API key could not be checked");
		return QESD_MW_STOP;
	}

	now = qesd_now_ms(app);
	r = qesd_auth_lookup(app->auth, key_id, mono, 0, &k, &from_cache);
	if (r == 0) {
		res = qesd_auth_decide(&k, mac, now);
		/* a cached row may predate a rotation made on another replica */
		if (res != QESD_AUTH_OK && from_cache) {
			r = qesd_auth_lookup(app->auth, key_id, mono, 1, &k, NULL);
			if (r == 0)
				res = qesd_auth_decide(&k, mac, now);
		}
	}
	qes_wipe(mac, sizeof(mac));
	if (r == QES_ERR_NOT_FOUND) {
		res = QESD_AUTH_UNKNOWN_KEY;
	} else if (r != 0) {
		qesd_log(QESD_LOG_ERROR, "API key lookup failed",
		    QLS("request_id", req->request_id), QLS("key_id", key_id),
		    QLS("error", qes_strerror(r)));
		rc = unavailable(req, resp, "store_unavailable",
		    "API keys cannot be checked right now; retry shortly");
		goto out;
	}
	if (res != QESD_AUTH_OK) {
		rc = auth_failed(app, req, resp, addr, &refuse_invalid,
		    qesd_auth_result_name(res), key_id,
		    res == QESD_AUTH_UNKNOWN_KEY ? NULL : k.tenant_id);
		goto out;
	}

	req->auth.authenticated = 1;
	snprintf(req->auth.tenant_id, sizeof(req->auth.tenant_id), "%s",
	    k.tenant_id);
	snprintf(req->auth.key_id, sizeof(req->auth.key_id), "%s", k.key_id);
	req->auth.scopes = k.scopes;
	if (qesd_ratelimit_take(app->rl_key, k.key_id, mono, &retry_s) ==
	    QES_ERR_LIMIT) {
		rc = too_many(app, req, resp, retry_s,
		    "too many requests with this API key");
		goto out;
	}
	qesd_auth_touch(app->auth, k.tenant_id, k.key_id, now);
	if (qesd_audit_admit(app) != 0) {
		qesd_log(QESD_LOG_ERROR,
		    "audit queue is full: refusing requests until the store takes writes again",
		    QLS("request_id", req->request_id));
		rc = unavailable(req, resp, "audit_unavailable",
		    "the audit log cannot take records right now; retry shortly");
		goto out;
	}
	rc = QESD_MW_CONTINUE;
 out:
	qes_wipe(&k, sizeof(k));
	return rc;
}
