/*
 * diagnostics.h - asking a connected desktop agent to diagnose itself
 * (POST /v1/devices/{id}/diagnostics, scope diagnostics).
 *
 * The service keeps the diagnoses that wait for an agent's answer: it
 * sends the qes.v1 `diagnose` message (docs/protocol.md 5.8) to the
 * device's live session through the hub, and matches what comes back by
 * the message id - a `diagnose_result` with that ref_id, an `error` about
 * it (the agent is busy or failed), or the end of the session. The HTTP
 * request meanwhile waits deferred (qesd_defer), holding no worker: the
 * answer wakes it, or the configured timeout (diagnostics_timeout_s) ends
 * it.
 *
 * One diagnosis per device at a time: the agent runs one and answers a
 * second with an error, so the gateway refuses the second itself
 * (QES_ERR_CONFLICT) instead of bothering the device.
 *
 * The life of one wait, in the handler and its resume function:
 *
 *   qesd_diag_start()      register, send `diagnose`      (handler)
 *   qesd_defer()           ... on failure qesd_diag_abandon()
 *   qesd_diag_arm()        hand over the wake token; the handler must
 *                          not touch the wait afterwards
 *   qesd_diag_finish()     in the resume: the outcome, the wait is freed
 *
 * The hub's events reach the service through devices_jobs.c
 * (qesd_diag_on_message, qesd_diag_on_session_closed). All functions are
 * thread-safe; none blocks on I/O.
 *
 * Across replicas (bus.h). The device may be connected to another replica
 * (A) than the one the request came to (B). B registers a remote wait
 * (qesd_diag_start_remote: same one-per-device rule here, no frame sent),
 * sends its ref in a bus request to A, and defers as above; A runs an
 * ordinary wait for the bus (qesd_diag_start, then qesd_diag_arm_notify
 * instead of a deferred request) and replies with the outcome, which B
 * files with qesd_diag_remote_result. A arbitrates "one at a time" for all
 * replicas: its refusal comes back as QESD_DIAG_IN_PROGRESS.
 */
#ifndef QESD_DIAGNOSTICS_H
#define QESD_DIAGNOSTICS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/proto.h"
#include "http.h"
#include "store.h"

typedef struct qesd_diag qesd_diag;
typedef struct qesd_diag_wait qesd_diag_wait;

/* Defaults of qesd_diag_config */
#define QESD_DIAG_MAX_WAITING	1024		/* diagnoses waiting at once */

/* Sends one text frame to the device's live session (qesd_hub_send). */
typedef int (*qesd_diag_send_fn)(void *ctx, const char *tenant_id,
    const char *device_id, const uint8_t *frame, size_t len);

typedef struct qesd_diag_config {
	size_t max_waiting;		/* 0: QESD_DIAG_MAX_WAITING */
	size_t max_report_bytes;	/* compact JSON; 0: QES_PROTO_MAX_BYTES */
	qesd_diag_send_fn send;		/* required */
	void *send_ctx;
	/* wakes a deferred request; NULL: qesd_deferred_wake (tests observe
	 * the wakes through their own) */
	int (*wake)(qesd_server *srv, uint64_t token);
} qesd_diag_config;

typedef enum qesd_diag_outcome {
	QESD_DIAG_OK = 1,		/* a diagnose_result: report and timings */
	QESD_DIAG_BUSY,			/* the agent runs a diagnosis already
					 * (error unexpected_message) */
	QESD_DIAG_AGENT_ERROR,		/* another error about our diagnose */
	QESD_DIAG_INVALID,		/* a diagnose_result we do not accept */
	QESD_DIAG_SESSION_CLOSED,	/* the session ended before an answer */
	QESD_DIAG_TIMEOUT,		/* no answer before the resume ran */
	/* a remote wait only: the holder could not start the diagnosis */
	QESD_DIAG_IN_PROGRESS,		/* one waits there already */
	QESD_DIAG_OFFLINE,		/* no replica holds the device */
	QESD_DIAG_OVERLOADED,		/* the holder's waits are full */
} qesd_diag_outcome;

/* "ok", "device_busy", "agent_error", "invalid_report", "session_closed",
 * "timeout", "in_progress", "device_offline", "overloaded": the outcome
 * word of logs, audit records and bus replies. */
const char *qesd_diag_outcome_name(qesd_diag_outcome o);
/* The outcome of a word (0 for an unknown one). */
qesd_diag_outcome qesd_diag_outcome_parse(const char *word);
/* The static text of an invalid-report reason equal to s (a reason that
 * came over the bus), or a generic one; never NULL. */
const char *qesd_diag_invalid_text(const char *s);

typedef struct qesd_diag_result {
	qesd_diag_outcome outcome;
	char session_id[QESD_ID_SIZE];	/* the session diagnose was sent to */
	json_t *report;			/* OK: the agent's report (owned) */
	int64_t scan_ms, total_ms;	/* OK: the agent's own timings */
	/* OK, BUSY, AGENT_ERROR, INVALID: diagnose sent -> answer received,
	 * on the monotonic clock; -1 otherwise */
	int64_t rtt_ms;
	char agent_error[65];		/* BUSY, AGENT_ERROR: the agent's code */
	char close_reason[64];		/* SESSION_CLOSED: the hub's reason word */
	const char *invalid;		/* INVALID: why (static text) */
} qesd_diag_result;

/* 0, QES_ERR_INVALID_ARG (no send function), QES_ERR_ALLOC. */
int qesd_diag_new(const qesd_diag_config *cfg, qesd_diag **out);
/* NULL is a no-op. No wait may be outstanding (the server drained). */
void qesd_diag_free(qesd_diag *d);

/*
 * Register a diagnosis of device_id (its live session is session_id) and
 * send `diagnose` to it. 0 and *out; QES_ERR_CONFLICT when one waits for
 * this device already; QES_ERR_LIMIT when max_waiting wait, or the
 * session's send queue is full; QES_ERR_NOT_FOUND when the session is gone
 * (the send found no live session); QES_ERR_INVALID_ARG, QES_ERR_ALLOC.
 */
int qesd_diag_start(qesd_diag *d, const char *tenant_id, const char *device_id,
    const char *session_id, qesd_diag_wait **out);
/* qesd_defer() failed: forget the wait (an answer is then dropped). */
void qesd_diag_abandon(qesd_diag_wait *w);
/* qesd_defer() succeeded: wake (srv, token) when the answer comes, at once
 * if it came already. w belongs to the resume function afterwards. */
void qesd_diag_arm(qesd_diag_wait *w, qesd_server *srv, uint64_t token);
/* In the resume function (also with resp == NULL): the outcome (TIMEOUT
 * when nothing came), then w is freed. Clear res with
 * qesd_diag_result_clear(). */
void qesd_diag_finish(qesd_diag_wait *w, qesd_diag_result *res);
void qesd_diag_result_clear(qesd_diag_result *res);

/* Hub events: an agent's message (diagnose_result and error are looked
 * at, the rest ignored), and a closed session. */
void qesd_diag_on_message(qesd_diag *d, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg);
void qesd_diag_on_session_closed(qesd_diag *d, const char *tenant_id,
    const char *device_id, const char *session_id, const char *reason);

/*
 * Across replicas: register a wait for a diagnosis another replica runs
 * (nothing is sent; the caller sends ref_out, the wait's id, on the bus).
 * 0 and *out; QES_ERR_CONFLICT, QES_ERR_LIMIT as qesd_diag_start. Defer,
 * qesd_diag_arm and qesd_diag_finish as for a local wait.
 */
#define QESD_DIAG_REF_SIZE 24
int qesd_diag_start_remote(qesd_diag *d, const char *tenant_id,
    const char *device_id, qesd_diag_wait **out,
    char ref_out[QESD_DIAG_REF_SIZE]);
/*
 * The holder's answer to the remote wait ref: res is copied (its report
 * taken, res->report set to NULL) and the wait woken. Ignored (report
 * freed) when no remote wait has that ref or it has an outcome already.
 */
void qesd_diag_remote_result(qesd_diag *d, const char *ref,
    qesd_diag_result *res);
/*
 * The holder's side: instead of a deferred request, call notify(arg,
 * token) when the outcome is known (on the thread that learnt it; it must
 * not block), at once if it is known already; then qesd_diag_finish() as
 * usual. w belongs to the caller of qesd_diag_finish afterwards.
 */
void qesd_diag_arm_notify(qesd_diag_wait *w,
    void (*notify)(void *arg, uint64_t token), void *arg, uint64_t token);

/* Diagnoses waiting now (tests, metrics). */
size_t qesd_diag_waiting(qesd_diag *d);

/*
 * POST /v1/devices/{id}/diagnostics (h_diagnostics.c); h_devices.c lists
 * it with the other device routes.
 */
qesd_handler_result qesd_diagnostics_post(qesd_request *req,
    qesd_response *resp);

#endif
