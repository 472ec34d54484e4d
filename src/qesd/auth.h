/*
 * auth.h - API key authentication of qesd: the middleware every request
 * passes, the key cache behind it, and the batched last_used_at writer.
 *
 * A request to a route with scopes must carry
 *   Authorization: Bearer qes_<keyid>_<secret>
 * (apikey.h has the format). The middleware parses it strictly, wipes the
 * header at once, computes HMAC-SHA-256(pepper, secret) and compares it in
 * constant time with the key's current hash and, while a rotation's grace
 * lasts (prev_valid_until > now), with the previous one. Revoked keys and
 * keys with expires_at <= now are refused.
 *
 * Answers (problem types):
 *   401 unauthorized     no Authorization header, or not "Bearer <key>" in
 *                        the key format (WWW-Authenticate: Bearer)
 *   401 invalid_api_key  unknown key id, wrong secret, revoked, expired,
 *                        previous secret after its grace: ONE answer, so a
 *                        caller cannot tell which; the reason goes to the
 *                        server log (with the key id, never the secret) and,
 *                        when the key id exists, to an `auth.failed` audit
 *                        record in the key's tenant
 *   429 rate_limited     per-address or per-key token bucket empty, or the
 *                        address failed too often (Retry-After, seconds)
 *   503 store_unavailable / audit_unavailable   the key or the audit queue
 *                        cannot be reached (Retry-After: 1)
 * 403 insufficient_scope is the server's scope check after the middleware.
 *
 * Slow-down: failed authentications are counted per client address
 * (ratelimit.h, failtrack). After a few, the 401 is delayed, doubling up to
 * 2 s; the delay is a qesd_defer() wait, so it holds no worker. At 20 in a
 * minute the address gets 429 for a minute on every authenticated route
 * (a valid key from the same address included: the address is what is
 * being throttled). Probes are never throttled.
 *
 * Which routes are limited: public routes flagged QESD_ROUTE_DURING_DRAIN
 * (/healthz, /readyz, /metrics: the orchestrator's probes) skip every
 * limit and ignore any Authorization header; other public routes get the
 * per-address bucket; routes with scopes get the address bucket, then
 * authentication, then the per-key bucket.
 *
 * Key cache. Key id -> tenant, scopes, hashes, expiry, revocation, kept
 * key_cache_ttl_ms (default 2 s). A revocation or rotation in this process
 * evicts the entry at once (qesd_auth_evict), and an invalidation epoch
 * keeps a lookup that raced with it from putting the old row back. With
 * several replicas another replica's entry may lag by at most the TTL:
 * that is the bound on how long a revoked key can still work elsewhere,
 * which is why the TTL is short. The opposite lag never refuses a good
 * key: a key that fails against a cached entry is re-read from the store
 * before the request is refused (so a secret rotated on another replica
 * works at once). Unknown key ids are never cached.
 *
 * last_used_at: uses are collected in memory (bounded, one entry per key)
 * and written by a background thread in one transaction per second
 * (qesd_key_touch), never one write per request. A use that does not fit
 * (more than 4096 distinct keys in one second) is dropped: the time is
 * advisory and the next use records it again.
 */
#ifndef QESD_AUTH_H
#define QESD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "apikey.h"
#include "http.h"
#include "store.h"

/* What a presented key turned out to be. */
typedef enum qesd_auth_result {
	QESD_AUTH_OK = 0,
	QESD_AUTH_UNKNOWN_KEY = 1,	/* no such key id (no tenant to tell) */
	QESD_AUTH_WRONG_SECRET = 2,
	QESD_AUTH_REVOKED = 3,		/* right secret, revoked key */
	QESD_AUTH_EXPIRED = 4,		/* right secret, expires_at <= now */
	QESD_AUTH_GRACE_OVER = 5,	/* the previous secret, after its grace */
} qesd_auth_result;

/* "ok", "unknown_key", "wrong_secret", "revoked", "expired", "grace_over". */
const char *qesd_auth_result_name(qesd_auth_result r);

/* The facts of a key that authentication needs; what the cache holds. */
typedef struct qesd_key_facts {
	char key_id[QESD_ID_SIZE];
	char tenant_id[QESD_ID_SIZE];
	uint32_t scopes;
	uint8_t hash[QESD_HMAC_LEN];
	int has_prev;
	uint8_t prev_hash[QESD_HMAC_LEN];
	int64_t prev_valid_until_ms;
	int64_t expires_at_ms;		/* 0: never */
	int64_t revoked_at_ms;		/* 0: not revoked */
} qesd_key_facts;

/*
 * The decision, from the facts and mac = HMAC(pepper, presented secret).
 * Both hashes are always compared (CRYPTO_memcmp), so the time taken does
 * not depend on which one matched. Revocation and expiry are reported only
 * for the right secret: a wrong secret is WRONG_SECRET whatever the state.
 */
qesd_auth_result qesd_auth_decide(const qesd_key_facts *k,
    const uint8_t mac[QESD_HMAC_LEN], int64_t now_ms);

/*
 * Parse an Authorization header value "Bearer <key>" (scheme
 * case-insensitive, then one or more spaces, then exactly the key).
 * 0 with key_id and the raw secret (wipe it) filled; QES_ERR_FORMAT
 * otherwise, outputs wiped. Never copies the value anywhere else.
 */
int qesd_auth_parse_bearer(const char *value,
    char key_id[QESD_ID_SIZE], uint8_t secret[QESD_APIKEY_SECRET_BYTES]);

/* ---- the service: key cache and last_used_at ---- */

typedef struct qesd_auth_svc qesd_auth_svc;

typedef struct qesd_auth_svc_config {
	unsigned cache_ttl_ms;		/* 0: no caching */
	size_t cache_entries;		/* 0: 4096 */
	unsigned touch_interval_ms;	/* 0: 1000; the flusher thread's period */
	int no_thread;			/* tests: flush only on qesd_auth_flush_uses */
} qesd_auth_svc_config;

int qesd_auth_svc_new(qesd_store *store, const qesd_auth_svc_config *cfg,
    qesd_auth_svc **out);
/* Stops the flusher after a last flush. NULL: no-op. */
void qesd_auth_svc_free(qesd_auth_svc *svc);

/*
 * The facts of key_id at mono_ms: from the cache while fresh (unless
 * bypass_cache), else from the store (and cached). *from_cache says which.
 * 0, QES_ERR_NOT_FOUND, or the store's error (BUSY, UNAVAILABLE, ...).
 */
int qesd_auth_lookup(qesd_auth_svc *svc, const char *key_id, int64_t mono_ms,
    int bypass_cache, qesd_key_facts *out, int *from_cache);

/* Forget key_id now (after its revocation or rotation committed). */
void qesd_auth_evict(qesd_auth_svc *svc, const char *key_id);

/* Record a use of a key for last_used_at (cheap, in memory). */
void qesd_auth_touch(qesd_auth_svc *svc, const char *tenant_id,
    const char *key_id, int64_t now_ms);

/* Write the recorded uses now, in one transaction. 0 or the store's error
 * (the uses are then dropped: the time is advisory). */
int qesd_auth_flush_uses(qesd_auth_svc *svc);

/* Counters for tests and diagnostics. */
typedef struct qesd_auth_stats {
	uint64_t cache_hits, cache_misses, store_reads, uses_written,
	    uses_dropped;
} qesd_auth_stats;
void qesd_auth_get_stats(qesd_auth_svc *svc, qesd_auth_stats *out);

/* ---- the middleware (qesd_server_config.middleware; app is a qesd_app) ---- */

int qesd_auth_middleware(void *app, qesd_request *req, qesd_response *resp);

#endif
