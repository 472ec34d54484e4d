/*
 * app.h - the services of qesd's application layer, in one struct that
 * every handler and hook reaches through req->app.
 *
 *   config          borrowed from main for the process' life
 *   store           durable state (store.h)
 *   pepper          the API-key hashing secret (owned, wiped on free)
 *   metrics         borrowed from main
 *   audit_queue     group commit of read-only requests' audit records
 *   auth            the API key cache and the batched last_used_at writer
 *   rl_key, rl_addr token buckets per API key and per client address
 *   auth_fails      failed authentications per client address
 *   clock           qesd_now_ms(): wall time, or wall time plus a test offset
 *   jobs            signature jobs, their long-poll waiters and sweeper
 *   hub             the live device sessions (hub.h), wired to jobs
 *   diag            diagnoses waiting for an agent's answer (diagnostics.h)
 *   bus             the other replicas (bus.h): jobs reach devices through
 *                   it, job changes are published on it
 *
 * Lifecycle: qesd_app_new() opens the store (migrating it) and starts the
 * two background threads (audit queue, last_used_at flusher);
 * qesd_app_flush() writes what they hold (drain, tests); qesd_app_free()
 * flushes once more, stops them and closes the store. No handler may run
 * when qesd_app_free() is called.
 *
 * Time: every decision about validity (key expiry, rotation grace,
 * audit record times) reads qesd_now_ms(), never time(). Durations that
 * only measure elapsed time (cache TTL, rate-limit refill) use the
 * monotonic clock (qesd_mono_ms()), which no test offset moves.
 */
#ifndef QESD_APP_H
#define QESD_APP_H

#include <stddef.h>
#include <stdint.h>

#include "qes/secret.h"
#include "config.h"
#include "metrics.h"
#include "ratelimit.h"
#include "store.h"

typedef struct qesd_auth_svc qesd_auth_svc;	/* auth.h */
typedef struct qesd_jobs qesd_jobs;		/* jobs.h */
typedef struct qesd_hub qesd_hub;		/* hub.h */
typedef struct qesd_diag qesd_diag;		/* diagnostics.h */
typedef struct qesd_bus qesd_bus;		/* bus.h */
typedef struct qesd_clock qesd_clock;

typedef struct qesd_app {
	const qesd_config *cfg;
	qesd_store *store;
	qes_secret *pepper;
	qesd_metrics *metrics;
	qesd_audit_queue *audit_queue;
	size_t audit_queue_max;		/* its max_pending, for admission */
	qesd_auth_svc *auth;
	qesd_ratelimit *rl_key;
	qesd_ratelimit *rl_addr;
	qesd_failtrack *auth_fails;
	qesd_clock *clock;
	qesd_jobs *jobs;		/* signature jobs (jobs.h) */
	qesd_hub *hub;			/* agent sessions (hub.h) */
	qesd_diag *diag;		/* device diagnostics (diagnostics.h) */
	qesd_bus *bus;			/* other replicas (bus.h) */
} qesd_app;

/*
 * Build the services from cfg. Takes *pepper (set to NULL) on success and
 * on failure alike. metrics is borrowed. On failure err says why, for the
 * operator; QES_ERR_UNAVAILABLE / QES_ERR_UNSUPPORTED / QES_ERR_INVALID_ARG
 * come from the store.
 */
int qesd_app_new(const qesd_config *cfg, qesd_metrics *metrics,
    qes_secret **pepper, qesd_app **out, char *err, size_t errlen);

/* Write queued audit records and last_used_at times now; 0 or the first
 * error (logged). */
int qesd_app_flush(qesd_app *app);

/* Flush, stop the threads, close the store, wipe the pepper. NULL: no-op. */
void qesd_app_free(qesd_app *app);

/* The readiness callback of the server (qesd_server_config.ready): the
 * store answers and the bus is connected. */
int qesd_app_ready(void *app);

/* Milliseconds since 1970 UTC: wall time plus the test offset, if any.
 * app NULL (unit tests): wall time. */
int64_t qesd_now_ms(const qesd_app *app);

/* Monotonic milliseconds, for elapsed time only. */
int64_t qesd_mono_ms(void);

/*
 * The clock on its own (qesd_app_new makes one from
 * insecure_testing_clock_file). file NULL: plain wall time. Otherwise the
 * file holds a signed decimal offset in milliseconds (surrounding blanks
 * and one trailing newline allowed) that is added to wall time; it is read
 * at most every 100 ms, a missing file means 0, and an unreadable or
 * malformed one keeps the last good offset (and is logged).
 */
int qesd_clock_new(const char *file, qesd_clock **out);
void qesd_clock_free(qesd_clock *c);
int64_t qesd_clock_now_ms(qesd_clock *c);

#endif
