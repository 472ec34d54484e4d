/*
 * ratelimit.h - token buckets and the authentication-failure tracker of
 * qesd, both in bounded, thread-safe tables.
 *
 * Token buckets (qesd_ratelimit): one bucket per key (an API key id, or a
 * client address), refilled at per_s tokens a second up to burst; a
 * request takes one token or is refused with the number of seconds until
 * one is there (Retry-After, rounded up, at least 1).
 *
 * Failure tracker (qesd_failtrack): counts failed authentications per
 * client address within a window. The first free_failures cost nothing;
 * each one after that asks the caller to delay its answer, doubling from
 * base_delay_ms up to max_delay_ms; at block_after failures the address is
 * blocked for block_ms (the caller answers 429 with Retry-After). A
 * success does not reset the count: a client holding one good key must not
 * be able to launder guesses at others between its good requests.
 *
 * Memory is bounded: at most max_entries keys per table. A table that is
 * full forgets its least recently used entry, which costs little: a bucket
 * nobody used lately is full anyway, and a forgotten failure count only
 * gives back what the window would have given back soon.
 *
 * Time is a caller-supplied monotonic millisecond count, so the unit tests
 * drive the arithmetic without sleeping. Keys are at most QESD_RL_KEY_MAX-1
 * bytes; longer ones are refused (QES_ERR_INVALID_ARG), never cut, so two
 * keys can never share an entry by truncation.
 */
#ifndef QESD_RATELIMIT_H
#define QESD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define QESD_RL_KEY_MAX 72		/* bytes of a key, NUL included */
#define QESD_RL_MAX_ENTRIES 100000	/* default and upper bound per table */

/* ---- token buckets ---- */

typedef struct qesd_ratelimit qesd_ratelimit;

/* per_s > 0, burst >= 1; max_entries 0 means QESD_RL_MAX_ENTRIES. */
int qesd_ratelimit_new(double per_s, unsigned burst, size_t max_entries,
    qesd_ratelimit **out);
void qesd_ratelimit_free(qesd_ratelimit *rl);

/*
 * Take one token of key's bucket at now_ms. 0 when allowed; QES_ERR_LIMIT
 * when refused, with *retry_after_s (>= 1) seconds until a token is
 * there; QES_ERR_INVALID_ARG for a bad key.
 */
int qesd_ratelimit_take(qesd_ratelimit *rl, const char *key, int64_t now_ms,
    uint32_t *retry_after_s);

/* Entries held now (tests, diagnostics). */
size_t qesd_ratelimit_size(qesd_ratelimit *rl);

/* ---- authentication failures ---- */

typedef struct qesd_failtrack_config {
	unsigned window_ms;		/* counting window (60000) */
	unsigned free_failures;		/* without delay (3) */
	unsigned base_delay_ms;		/* first delay; 0: never delay */
	unsigned max_delay_ms;		/* cap (2000) */
	unsigned block_after;		/* failures in the window that block (20) */
	unsigned block_ms;		/* how long a block lasts (60000) */
	size_t max_entries;		/* 0: QESD_RL_MAX_ENTRIES */
} qesd_failtrack_config;

typedef struct qesd_failtrack qesd_failtrack;

/* cfg NULL: the defaults in the comments above with base_delay_ms 250. */
int qesd_failtrack_new(const qesd_failtrack_config *cfg, qesd_failtrack **out);
void qesd_failtrack_free(qesd_failtrack *ft);

/* 1 when key is blocked at now_ms, with *retry_after_s; else 0. */
int qesd_failtrack_blocked(qesd_failtrack *ft, const char *key, int64_t now_ms,
    uint32_t *retry_after_s);

/*
 * Count one failure of key at now_ms. Returns the delay in ms the caller
 * should wait before answering (0 for none). When this failure blocks the
 * key, *blocked is 1 and *retry_after_s says for how long.
 */
uint32_t qesd_failtrack_fail(qesd_failtrack *ft, const char *key,
    int64_t now_ms, int *blocked, uint32_t *retry_after_s);

size_t qesd_failtrack_size(qesd_failtrack *ft);

/* ---- keys ---- */

/*
 * The rate-limit key of a client address: an IPv4 address as is, an
 * IPv6 address by its /64 prefix (one subscriber usually holds a whole
 * /64, so per-address limits on single IPv6 addresses would be free to
 * dodge), an IPv4-mapped IPv6 address as its IPv4 address. Anything else
 * is used verbatim, cut to fit.
 */
void qesd_addr_key(const char *addr, char out[QESD_RL_KEY_MAX]);

#endif
