/*
 * jobs.h - the agent's work that must not run on the connection's loop:
 * signing (PKCS#11 calls that take seconds, a dialog that takes minutes),
 * diagnosis (a fresh token scan) and the rescans that follow a job which
 * changed a token's PIN counters.
 *
 * The loop hands a request in and gets a result back later: workers put
 * finished results on a queue and call the wake function (the loop's
 * lws_cancel_service), and the loop takes them with agent_jobs_take(). The
 * loop never waits for a worker, except in agent_jobs_free() at exit.
 *
 * Per token (module, serial) one job runs at a time; later requests for the
 * same token wait in arrival order, up to AGENT_JOBS_QUEUE_MAX, and beyond
 * that are refused with QES_ERR_TOKEN_BUSY (docs/protocol.md, 12.2). Tokens
 * work in parallel. A job's timeout_s counts from receipt, queued or not.
 *
 * Progress: while a job runs, the queue also carries its sign status, each
 * at most once and always before its result: awaiting_user when this job's
 * own dialog opens (a queued job waits silently), consented when the signer
 * approved and the token accepted the login. A job already being cancelled
 * reports neither.
 *
 * Cancelling: a queued job ends at once; a running one has its dialog closed
 * (qes_pinentry_cancel through the attach hook) and answers "cancelled" (or
 * "timeout" when its deadline passed); one whose token already signed
 * answers with the signatures. Every request gets exactly one result.
 */
#ifndef QES_AGENT_JOBS_H
#define QES_AGENT_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/buf.h"
#include "qes/p11.h"
#include "qes/proto.h"
#include "qes/signer.h"

#include "hotplug.h"

#define AGENT_JOBS_QUEUE_MAX	16	/* waiting jobs per token */

/*
 * An inventory shared between the loop and the jobs that use its tokens and
 * certificates; freed with the last reference. Reference counting is
 * thread-safe.
 */
typedef struct agent_snapshot agent_snapshot;

/* Takes ownership of inv. NULL on allocation failure (inv is freed). */
agent_snapshot *agent_snapshot_new(qes_p11_inventory *inv);
agent_snapshot *agent_snapshot_ref(agent_snapshot *s);
void agent_snapshot_unref(agent_snapshot *s);	/* NULL is a no-op */
const qes_p11_inventory *agent_snapshot_inv(const agent_snapshot *s);

typedef enum agent_result_kind {
	AGENT_RESULT_SIGN = 1,		/* a sign request ended */
	AGENT_RESULT_DIAGNOSE = 2,	/* a diagnose request ended */
	AGENT_RESULT_INVENTORY = 3,	/* a new inventory (hot-plug, rescan) */
	AGENT_RESULT_SIGN_STATUS = 4,	/* a sign job's dialog opened, or the
					 * signer consented (before its result) */
} agent_result_kind;

typedef struct agent_result {
	struct agent_result *next;
	agent_result_kind kind;
	uint64_t session;		/* the session the request came on */
	char id[QES_PROTO_ID_MAX + 1];	/* sign: job id; diagnose: message id */
	/* sign */
	int err;			/* 0 or QES_ERR_* */
	char detail[256];		/* with err; never a PIN */
	int has_pin_flags;
	unsigned pin_flags;		/* QES_PROTO_PIN_FLAGS bits */
	qes_buf **sigs;			/* err == 0: n_sigs values */
	size_t n_sigs;
	int64_t dialog_ms;		/* receipt to result (status: to now), for the log */
	/* sign status */
	qes_proto_sign_state sign_state;
	/* diagnose */
	json_t *report;			/* qes_report_diagnose(), NULL on failure */
	qes_proto_timings timings;
	/* inventory */
	qes_p11_inventory *inv;
} agent_result;

void agent_result_free(agent_result *r);	/* NULL is a no-op */

typedef struct agent_jobs_opts {
	qes_p11 *p11;				/* borrowed */
	agent_hotplug *hotplug;			/* borrowed; NULL: no gate */
	const qes_sign_pin_source *pin_source;	/* remembered PINs; NULL: none */
	const char *pinentry;			/* NULL: $QES_PINENTRY, else "pinentry" */
	void (*wake)(void *arg);		/* a result is queued (any thread) */
	void *wake_arg;
} agent_jobs_opts;

typedef struct agent_jobs agent_jobs;

int agent_jobs_new(const agent_jobs_opts *o, agent_jobs **out);
/*
 * The hot-plug gate the workers bracket their token work with; set before
 * the first request (the watcher needs the jobs to post to, so it starts
 * after them).
 */
void agent_jobs_set_hotplug(agent_jobs *j, agent_hotplug *h);
/*
 * Refuse new requests, cancel every open one and wait for the workers.
 * Results stay queued, posting still works; call before stopping the
 * hot-plug watcher, whose gate the workers use.
 */
void agent_jobs_stop(agent_jobs *j);
/* agent_jobs_stop() if needed, drop the queued results, free. NULL: no-op. */
void agent_jobs_free(agent_jobs *j);

/*
 * Start or queue a sign request from session, on the credential's token in
 * snap (the loop's current inventory; a reference is taken). now_ms is the
 * receipt time (CLOCK_MONOTONIC). Returns 0 when accepted: a result will
 * come. Otherwise no result will come and the caller answers at once:
 * QES_ERR_CONFLICT (the job id is in use: duplicate_job),
 * QES_ERR_TOKEN_NOT_PRESENT / QES_ERR_KEY_NOT_FOUND (detail says which),
 * QES_ERR_TOKEN_BUSY (the token's queue is full), QES_ERR_ALLOC.
 */
int agent_jobs_sign(agent_jobs *j, uint64_t session, agent_snapshot *snap,
    const qes_proto_sign *req, int64_t now_ms, char *detail, size_t detail_len);

/* Run a diagnosis; QES_ERR_BUSY while one runs (no result comes then). */
int agent_jobs_diagnose(agent_jobs *j, uint64_t session, const char *msg_id,
    int64_t now_ms);

/* Cancel one job: QES_ERR_NOT_FOUND when no such job is open. */
int agent_jobs_cancel(agent_jobs *j, const char *job_id);
/* The session ended: abort every job it started (results will be dropped). */
void agent_jobs_cancel_session(agent_jobs *j, uint64_t session);
/* Deadlines: end the jobs whose timeout passed (loop, about once a second). */
void agent_jobs_tick(agent_jobs *j, int64_t now_ms);

/* Queue an inventory as a result (the hot-plug watcher's callback). */
void agent_jobs_post_inventory(agent_jobs *j, qes_p11_inventory *inv);

/* The next result, or NULL. Loop thread. */
agent_result *agent_jobs_take(agent_jobs *j);

int64_t agent_now_ms(void);	/* CLOCK_MONOTONIC, ms */

#endif
