/*
 * jobs.h - the signature jobs service: a relying party's request becomes a
 * persisted job (store_jobs.h), is sent to the signer's device, and ends in
 * a definite state with a machine-readable reason.
 *
 *   POST /v1/signatures  -> qesd_jobs_submit()   created -> dispatched
 *   agent's sign_status  -> qesd_jobs_on_message() -> awaiting_user (dialog
 *                           open), then the consent on record (optional)
 *   agent's sign_result  -> qesd_jobs_on_message() -> signed -> completed
 *                                                    | failed(reason)
 *   (a document job: the finisher, jobs_ades.c, on its own thread)
 *                           signed -> completed (the signed document
 *                           stored) | failed(reason)
 *   GET .../result       -> qesd_jobs_result_take() the signed document,
 *                           handed out once
 *   POST .../cancel      -> qesd_jobs_cancel()    -> cancelled (+ cancel to the agent)
 *   session closed       -> qesd_jobs_on_session_closed() -> failed(device_disconnected)
 *   every second         -> qesd_jobs_sweep()     -> failed(timeout) (+ cancel)
 *   start                -> qesd_jobs_recover()   -> failed(gateway_restart)
 *   retention            -> qesd_jobs_sweep()     completed -> expired (signatures dropped)
 *   (the last three leave a signed document job alone: its value is in,
 *   the finisher ends it, also after a restart)
 *
 * Reasons of failed jobs (stable, part of the API; docs/api/openapi.yaml):
 *   declined            the signer refused in the dialog (agent: "cancelled")
 *   pin_incorrect       wrong PIN (token_flags tell the retries left)
 *   pin_locked          the PIN is locked (token_flags)
 *   pin_expired, pin_invalid
 *   token_not_present, token_removed, key_not_found, key_unsuitable,
 *   mechanism_unsupported, token_busy, data_invalid, pinentry_failed
 *                       as the agent reported them
 *   timeout             nobody answered before expires_at (or the agent's
 *                       dialog timed out)
 *   device_error        any other failure the agent reported, or an error
 *                       message about the job
 *   device_disconnected the session the job was sent on closed first
 *   device_revoked      the device was revoked while the job was open
 *   device_offline      the session went away between the check and the send
 *   bad_signature       a returned value does not verify with the
 *                       certificate's key, or their number is wrong
 *   gateway_restart     qesd stopped while the job was open
 *   gateway_error       qesd could not finish the job (a bug; logged)
 *   timestamp_failed    document job: the TSA did not answer, or its token
 *                       did not verify
 *   revocation_failed   document job (B-LT, B-LTA): no acceptable OCSP
 *                       response or CRL for a certificate of the chain
 *   document_invalid    document job: the document no longer prepares
 *                       (normally refused at POST with 422)
 *
 * Every transition commits in one transaction with its audit record
 * (signature.requested, .dispatched, .awaiting_user, .signed (document
 * jobs), .completed, .failed, .cancelled, .expired, .result_ignored,
 * .result_fetched; and .consented, the signer's consent, which changes no
 * state) and then wakes the job's long-poll waiters
 * through qesd_jobs_changed(), the one place that will also publish on the
 * bus when replicas arrive (issue 6).
 *
 * The device side (enrollment, sessions, inventory) is another service;
 * this one reaches it only through qesd_jobs_devices, so its unit tests
 * drive it without a hub.
 *
 * Threads: every function may be called from any worker thread.
 */
#ifndef QESD_JOBS_H
#define QESD_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/proto.h"
#include "qes/sig.h"
#include "qes/sign.h"
#include "http.h"
#include "store.h"
#include "store_jobs.h"

typedef struct qesd_app qesd_app;	/* app.h */
typedef struct qesd_jobs qesd_jobs;

/* What the device side says about a credential id. */
typedef struct qesd_jobs_credential {
	char device_id[QESD_ID_SIZE];
	char credential[QES_PROTO_CREDENTIAL_MAX + 1];	/* "SERIAL:IDHEX" */
	int device_revoked;				/* 1: never reachable again */
	uint8_t *cert_der;				/* owned: free() */
	size_t cert_der_len;
} qesd_jobs_credential;

/* Release what a lookup filled (cert_der). */
void qesd_jobs_credential_clear(qesd_jobs_credential *c);

/*
 * The device side, as functions (the hub wiring sets is_live and send;
 * tests put fakes):
 *   credential_lookup  0, QES_ERR_NOT_FOUND (no such credential in the
 *                      tenant), or a store error. NULL: the devices
 *                      service's lookup in the store (devices.h), with
 *                      lookup_ctx set by the jobs service.
 *   is_live            1 when the device has a live session here (its id
 *                      copied), else 0. NULL: no device is live.
 *   send               qesd_hub_send()'s contract. NULL: nothing can be sent.
 * ctx goes to is_live and send, lookup_ctx to credential_lookup.
 */
typedef struct qesd_jobs_devices {
	int (*credential_lookup)(void *lookup_ctx, const char *tenant_id,
	    const char *credential_id, qesd_jobs_credential *out);
	void *lookup_ctx;
	int (*is_live)(void *ctx, const char *tenant_id, const char *device_id,
	    char session_id[QESD_ID_SIZE]);
	int (*send)(void *ctx, const char *tenant_id, const char *device_id,
	    const uint8_t *frame, size_t len);
	void *ctx;
} qesd_jobs_devices;

typedef struct qesd_jobs_config {
	qesd_jobs_devices devices;
	int64_t result_retention_ms;	/* completed -> expired after; 0: 1 day */
} qesd_jobs_config;

/*
 * app is borrowed (store, clock, audit). Starts nothing: `qesd serve`
 * calls qesd_jobs_recover() and then qesd_jobs_start() before it serves;
 * tests call qesd_jobs_sweep() themselves.
 */
int qesd_jobs_new(qesd_app *app, const qesd_jobs_config *cfg, qesd_jobs **out);
/* Start the sweeper thread: qesd_jobs_sweep() every second. */
int qesd_jobs_start(qesd_jobs *j);
/* Stop the sweeper; no other call may run, and the server that deferred
 * requests to qesd_jobs_resume is freed already. NULL: no-op. */
void qesd_jobs_free(qesd_jobs *j);
/* Replace the device side (before serving; e.g. once the hub exists);
 * d NULL: the defaults (credentials from the store, nothing live). */
void qesd_jobs_set_devices(qesd_jobs *j, const qesd_jobs_devices *d);

/* ---- requests ---- */

#define QESD_JOB_TITLE_MAX		256
#define QESD_JOB_DESCRIPTION_MAX	2048
#define QESD_JOB_APPLICATION_MAX	128
#define QESD_JOB_TIMEOUT_DEFAULT_S	300
#define QESD_JOB_TIMEOUT_MIN_S		30
#define QESD_JOB_TIMEOUT_MAX_S		3600

/*
 * A document the gateway signs (AdES): prepared at submit, the digest to
 * sign is the job's one digest, finished when the signature arrives.
 * Borrowed for the call.
 */
typedef struct qesd_sign_document {
	const uint8_t *data;		/* 1..document_max_bytes */
	size_t len;
	qes_ades_format format;
	qes_ades_level level;
	qes_ades_packaging packaging;	/* DEFAULT: the format's first */
	const char *name;		/* NULL: none ("document" where needed) */
	const char *mime_type;		/* NULL: none */
} qesd_sign_document;

#define QESD_DOC_NAME_MAX	255
#define QESD_DOC_MIME_MAX	127

/* A validated POST /v1/signatures body; strings borrowed for the call. */
typedef struct qesd_sign_request {
	const char *credential_id;
	qes_md md;
	const uint8_t *digests;		/* n_digests * qes_md_len(md) bytes */
	size_t n_digests;		/* 1..QES_PROTO_DIGESTS_MAX */
	int has_scheme;			/* else the key type decides */
	qes_sig_scheme scheme;
	const char *title;
	const char *description;	/* NULL: none */
	const char *application;	/* NULL: the API key's name */
	int64_t timeout_s;
	const char *idempotency_key;	/* NULL: none */
	/* a document instead of digests (digests, n_digests unused) */
	const qesd_sign_document *document;
} qesd_sign_request;

/*
 * The idempotency hash of a request: SHA-256 over a length-prefixed
 * encoding of every field above but the key itself, defaults applied
 * (timeout_s as given after defaulting; an absent description equals ""),
 * so the same body hashes the same whatever its JSON spelling (key order,
 * escapes, white space):
 *   lp("qesd.v1-signature-request") lp(credential_id) lp(md name)
 *   lp(scheme name or "") u32be(n) lp(digest 1) .. lp(digest n)
 *   lp(title) lp(description or "") lp(application or "") u64be(timeout_s)
 * A document request has n = 0 and no digests (they depend on the signing
 * time), and after timeout_s:
 *   lp("document") lp(format) lp(level) lp(packaging or "") lp(name or "")
 *   lp(mime_type or "") lp(SHA-256 of the document)
 */
int qesd_jobs_request_hash(const qesd_sign_request *sr,
    uint8_t out[QESD_JOB_HASH_LEN]);

typedef enum qesd_submit_outcome {
	QESD_SUBMIT_ACCEPTED = 1,	/* a new job (202); it may already have
					 * failed: device_offline after a race */
	QESD_SUBMIT_REPLAYED,		/* same key, same body: that job (200) */
	QESD_SUBMIT_IDEMPOTENCY_CONFLICT, /* same key, another body (409) */
	QESD_SUBMIT_CREDENTIAL_NOT_FOUND, /* 404 */
	QESD_SUBMIT_DEVICE_REVOKED,	/* 409 */
	QESD_SUBMIT_DEVICE_OFFLINE,	/* 409 */
	QESD_SUBMIT_SCHEME_UNSUITABLE,	/* the key cannot make that scheme (400) */
	/* document requests (detail says why) */
	QESD_SUBMIT_DOCUMENTS_DISABLED,	/* no document_key_file (501) */
	QESD_SUBMIT_TIMESTAMP_UNAVAILABLE, /* B-T and above without tsa_url (409) */
	QESD_SUBMIT_FORMAT_UNSUPPORTED,	/* format x level x packaging (400) */
	QESD_SUBMIT_DOCUMENT_INVALID,	/* the document does not prepare (422) */
} qesd_submit_outcome;

/*
 * Create and dispatch a job for req's tenant and key (the audit records
 * name req). 0 with *outcome (and *out for ACCEPTED and REPLAYED, cleared
 * with qesd_job_clear), or a store error (QES_ERR_BUSY/UNAVAILABLE: 503).
 */
int qesd_jobs_submit(qesd_jobs *j, qesd_request *req,
    const qesd_sign_request *sr, qesd_submit_outcome *outcome, qesd_job *out);
/* The same, with a sentence for the document outcomes in detail (never
 * any of the document's content). */
int qesd_jobs_submit_detail(qesd_jobs *j, qesd_request *req,
    const qesd_sign_request *sr, qesd_submit_outcome *outcome, qesd_job *out,
    char *detail, size_t detail_len);

/*
 * What a document request can be refused for before any credential is
 * looked at: QESD_SUBMIT_DOCUMENTS_DISABLED, _TIMESTAMP_UNAVAILABLE; 0 when
 * it may go on. detail gets a sentence.
 */
qesd_submit_outcome qesd_jobs_document_check(qesd_jobs *j,
    const qesd_sign_document *doc, char *detail, size_t detail_len);

/* The largest document this gateway takes (document_max_bytes). */
size_t qesd_jobs_document_max(const qesd_jobs *j);
/*
 * At start, before the store opens: with document signing configured,
 * chain_file and tsa_ca_file must be PEM bundles of certificates that
 * parse (a missing or placeholder file is a configuration error, not jobs
 * failing later). 0, or an error with err filled.
 */
struct qesd_config;
int qesd_jobs_documents_check_config(const struct qesd_config *cfg, char *err,
    size_t errlen);

typedef enum qesd_result_outcome {
	QESD_RESULT_OK = 1,		/* *data, *len: the signed document */
	QESD_RESULT_NOT_READY,		/* the job is not final yet (409) */
	QESD_RESULT_UNAVAILABLE,	/* failed or cancelled: none (409) */
	QESD_RESULT_GONE,		/* fetched already, or expired (410) */
	QESD_RESULT_NO_DOCUMENT,	/* a hash-only job (409) */
} qesd_result_outcome;

/*
 * GET /v1/signatures/{id}/result: the signed document of a completed
 * document job, read and purged in one transaction with its
 * signature.result_fetched record (sizes, never content), so it is handed
 * out once. QES_ERR_NOT_FOUND for a missing or foreign job. *data: wipe
 * with qes_wipe, then free. *job: the job (qesd_job_clear).
 */
int qesd_jobs_result_take(qesd_jobs *j, qesd_request *req, const char *job_id,
    qesd_result_outcome *outcome, qesd_job *job, uint8_t **data, size_t *len);

/* The signed document's media type and file name suffix for a job's
 * stored request (format, packaging); "application/octet-stream", ".bin"
 * when it is not a document job. */
void qesd_job_result_type(const qesd_job *job, const char **content_type,
    const char **suffix);

/* The tenant's job (QES_ERR_NOT_FOUND for a missing or foreign one). */
int qesd_jobs_get(qesd_jobs *j, const char *tenant_id, const char *job_id,
    qesd_job *out);

/*
 * Cancel: a job not yet final becomes cancelled at once (the device, if it
 * had the job, gets a cancel). *was_final: 1 when it was final already
 * (nothing changed; 409). *out is the job afterwards.
 */
int qesd_jobs_cancel(qesd_jobs *j, qesd_request *req, const char *job_id,
    int *was_final, qesd_job *out);

/*
 * The public JSON of a job: id, state, reason, credential_id,
 * digest_algorithm, signature_scheme, verification_code, title,
 * created_at, updated_at, expires_at, signatures (completed), token_flags
 * (PIN failures). NULL on allocation failure.
 */
json_t *qesd_job_json(const qesd_job *job);

/* ---- long-poll ---- */

/*
 * A GET ?wait= that found the job not final: qesd_defer() with
 * qesd_jobs_resume and a waiter from qesd_jobs_wait_begin, then arm it
 * with the token, then look at the job once more (it may have changed
 * between the first read and the arming) and qesd_deferred_wake() if it
 * did. qesd_jobs_resume frees the waiter and answers with the job.
 */
typedef struct qesd_jobs_waiter qesd_jobs_waiter;
qesd_jobs_waiter *qesd_jobs_wait_begin(qesd_jobs *j, const char *tenant_id,
    const char *job_id);
void qesd_jobs_wait_arm(qesd_jobs_waiter *w, qesd_server *srv, uint64_t token);
/* Free a waiter that was never deferred. */
void qesd_jobs_wait_cancel(qesd_jobs_waiter *w);
/* The qesd_resume_fn of the long-poll; arg is the waiter. */
void qesd_jobs_resume(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg);

/* Something about the job changed: wake its waiters here and publish the
 * change on the bus (bus.h), whose other replicas wake theirs. */
void qesd_jobs_changed(qesd_jobs *j, const char *tenant_id, const char *job_id);
/* Wake the job's waiters in this process only: what a change another
 * replica published on the bus does (never published again). */
void qesd_jobs_wake_local(qesd_jobs *j, const char *tenant_id,
    const char *job_id);

/* ---- the device side's events (hub.h qesd_hub_events) ---- */

/* sign_status, sign_result and error messages about jobs; other types
 * are ignored. */
void qesd_jobs_on_message(qesd_jobs *j, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg);
/* The session's open jobs fail: device_revoked when reason says the device
 * was revoked, gateway_restart when this qesd is draining, else
 * device_disconnected. */
void qesd_jobs_on_session_closed(qesd_jobs *j, const char *tenant_id,
    const char *device_id, const char *session_id, const char *reason);

/* ---- background ---- */

/* At start: every job a previous process left open fails with
 * gateway_restart. *count (optional) says how many. */
int qesd_jobs_recover(qesd_jobs *j, uint64_t *count);
/* Once: open jobs past expires_at fail with timeout (a signed document
 * job is the finisher's); completed jobs past the retention become
 * expired. */
int qesd_jobs_sweep(qesd_jobs *j);
/*
 * Once: finish the signed document jobs (the finisher thread's work; tests
 * call it themselves). *count (optional): how many moved (completed or
 * failed).
 */
int qesd_jobs_finish_pending(qesd_jobs *j, uint64_t *count);

/* ---- the API's base64 (RFC 4648 section 4, padded) ---- */

/* Strict: canonical padded base64 only; appends to out. QES_ERR_FORMAT. */
int qesd_b64_decode(const char *s, size_t len, qes_buf *out);
/* A new JSON string of padded base64; NULL on allocation failure. */
json_t *qesd_b64_json(const uint8_t *data, size_t len);

#endif
