/*
 * jobs_priv.h - what the files of the jobs service share (jobs.c says which
 * file does what). Not for the rest of qesd: they use jobs.h.
 */
#ifndef QESD_JOBS_PRIV_H
#define QESD_JOBS_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/proto.h"
#include "qes/sig.h"
#include "qes/sign.h"
#include "qes/tsp.h"
#include "http.h"
#include "jobs.h"
#include "store.h"
#include "store_jobs.h"

#define WAIT_BUCKETS 256
#define SWEEP_INTERVAL_MS 1000
#define RETENTION_INTERVAL_MS 60000
#define RETENTION_DEFAULT_MS (24LL * 3600 * 1000)
#define SWEEP_BATCH 100
#define SWEEP_ROUNDS 20		/* at most SWEEP_BATCH * SWEEP_ROUNDS per kind per sweep */
#define CAS_ATTEMPTS 3
#define REQUEST_VERSION 1

#define BIT(s) (1u << (s))
#define LIVE_STATES (BIT(QESD_JOB_CREATED) | BIT(QESD_JOB_DISPATCHED) | \
	BIT(QESD_JOB_AWAITING_USER) | BIT(QESD_JOB_SIGNED))
#define AT_DEVICE (BIT(QESD_JOB_DISPATCHED) | BIT(QESD_JOB_AWAITING_USER))

struct qesd_jobs_waiter;	/* jobs_wait.c */

/* ---- jobs_certs.c: parsed certificates, shared by the jobs ---- */

#define JOBS_CERTS_MAX 64	/* entries kept (each at most 64 KiB of DER) */

struct jobs_cert;

struct jobs_certs {
	pthread_mutex_t mu;
	struct jobs_cert *head;
	size_t n;
	uint64_t tick;
	uint64_t hits, misses;		/* for tests and diagnostics */
};

int jobs_certs_init(struct jobs_certs *c);
void jobs_certs_destroy(struct jobs_certs *c);
/*
 * The parsed certificate of this DER, shared: the same entry for the same
 * bytes while it is cached. Release it with jobs_cert_release().
 * QES_ERR_FORMAT when the DER does not parse.
 */
int jobs_cert_acquire(struct jobs_certs *c, const uint8_t *der, size_t len,
    struct jobs_cert **out);
/* Borrowed; valid until the entry is released. */
const qes_cert *jobs_cert_get(const struct jobs_cert *e);
/* NULL is a no-op. */
void jobs_cert_release(struct jobs_certs *c, struct jobs_cert *e);

/* ---- jobs_ades.c: documents the gateway signs ---- */

#define FINISH_QUEUE 64		/* jobs kicked, waiting for the finisher */
#define FINISH_SCAN_MS 5000	/* the finisher looks for signed jobs this often */
#define FINISH_STALE_MS 30000	/* ... signed at least this long ago (not the first) */
#define FINISH_RETRY_MS 90000	/* a TSA or responder out of reach is tried
				 * again until this long after the signature */
#define FINISH_GRACE_MS (10LL * 60 * 1000)	/* a signed job still unfinished this
					 * long after expires_at fails */
#define JOBS_CHAIN_MAX 64	/* certificates in chain_file */

struct jobs_ades {
	int enabled;			/* the document key is loaded */
	uint8_t doc_key[QESD_DOC_KEY_LEN];
	size_t document_max;
	qes_cert *chain[JOBS_CHAIN_MAX];	/* chain_file */
	size_t nchain;
	int has_tsa;
	qes_tsp_config tsa;		/* strings borrowed from the config */
	qes_rev_config rev;		/* the certificates' AIA and CDP */

	/* the finisher thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;			/* mu */
	int started;
	pthread_t thread;
	struct { char tenant[QESD_ID_SIZE], job[QESD_ID_SIZE]; } queue[FINISH_QUEUE];
	size_t qhead, qlen;		/* mu */
};

struct qesd_jobs {
	qesd_app *app;
	struct jobs_ades ades;
	qesd_jobs_devices devices;
	int64_t retention_ms;
	struct jobs_certs certs;

	pthread_mutex_t wait_mu;
	struct qesd_jobs_waiter *waiters[WAIT_BUCKETS];

	pthread_mutex_t sweep_mu;
	pthread_cond_t sweep_cv;
	int stop;			/* sweep_mu */
	int thread_started;
	pthread_t thread;
	int64_t next_retention_mono_ms;	/* sweeper thread only */
};

/* ---- jobs.c ---- */

/* A change of one job, applied by jobs_transition(). */
struct jobs_transition {
	unsigned from;			/* states the job must be in */
	qesd_job_state to;		/* COMPLETED passes through SIGNED */
	const char *reason;		/* FAILED */
	const char *result;		/* new result text (the caller's);
					 * NULL: keep, unless drop_result */
	int drop_result;
	int64_t version;		/* > 0: the job must still have it */
	const char *device_id;		/* non-NULL: the job's device must be it */
	const char *type;		/* audit record type */
	json_t *extra;			/* audit details (borrowed) */
	qesd_request *req;		/* the request that acts, or NULL */
	int status;
};

/*
 * Apply t to the tenant's job in one write transaction with its record,
 * retrying a lost compare-and-set. 0 with *applied 1 when the job moved, 0
 * when it was not in a state (or version, device) t applies to; out (may
 * be NULL) is the job afterwards, *prev its state before.
 */
int jobs_transition(qesd_jobs *j, const char *tenant_id, const char *job_id,
    const struct jobs_transition *t, int *applied, qesd_job_state *prev,
    qesd_job *out);
/* Fail a job in one of the states from, for a reason; extra is borrowed. */
int jobs_fail(qesd_jobs *j, const char *tenant_id, const char *job_id,
    unsigned from, const char *reason, json_t *extra, int *applied,
    qesd_job_state *prev, qesd_job *out);
/* Details of a job record: ids, names and counts only. Takes extra. */
char *jobs_details(const qesd_job *job, const char *reason, json_t *extra);
/* Append a job record inside tx, naming req when there is one. */
int jobs_audit(qesd_jobs *j, qesd_tx *tx, qesd_request *req,
    const qesd_job *job, const char *type, int status, const char *details);
/* Commit tx (marking req audited when there is one). */
int jobs_commit(qesd_tx *tx, qesd_request *req);
/* Queue a frame for the device (QES_ERR_NOT_FOUND: nobody to send to). */
int jobs_send(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_buf *b);
/* Tell the device to close the job's dialog; best effort. */
void jobs_send_cancel(qesd_jobs *j, const qesd_job *job,
    qes_proto_cancel_reason why);

/* ---- jobs_format.c ---- */

/* A job's stored request, parsed. */
struct jobs_request {
	json_t *root;			/* owns the strings below */
	qes_md md;
	qes_sig_scheme scheme;
	qes_buf *digests;		/* n * qes_md_len(md) bytes */
	size_t n;
	const char *title, *description, *application, *credential;
	int64_t timeout_s;
	qes_buf *cert_der;
	json_t *document;		/* borrowed from root; NULL: hash-only */
};

/* The request text to store (NULL on allocation failure). */
char *jobs_request_text(const qesd_sign_request *sr, qes_sig_scheme scheme,
    const char *application, const qesd_jobs_credential *cred,
    int64_t signing_time_s);
/* Parse a job's request text (ours, still checked); free with
 * jobs_request_free. */
int jobs_request_parse(const char *text, struct jobs_request *q);
void jobs_request_free(struct jobs_request *q);

/* ---- jobs_ades.c ---- */

/* Load the document key, chain and TSA of app->cfg (documents stay off
 * without a document_key_file); the finisher is not started. */
int jobs_ades_init(qesd_jobs *j);
/* Stop the finisher and wipe the key. */
void jobs_ades_destroy(qesd_jobs *j);
int jobs_ades_start(qesd_jobs *j);
/* A document job became signed: finish it soon (best effort; the
 * finisher's scan finds it anyway). */
void jobs_ades_kick(qesd_jobs *j, const char *tenant_id, const char *job_id);
/*
 * Prepare a document for signer at submit: 0 with the digest to sign
 * appended to digest_out and its md in *md_out, or 0 with *outcome set
 * (FORMAT_UNSUPPORTED, DOCUMENT_INVALID) and detail, or an error.
 */
int jobs_ades_prepare(qesd_jobs *j, const qesd_sign_document *doc,
    const qes_cert *signer, qes_md md, qes_sig_scheme scheme,
    int64_t signing_time_s, const char *job_id, qes_buf *digest_out,
    qes_md *md_out, qesd_submit_outcome *outcome, char *detail,
    size_t detail_len);

/* ---- jobs_sweep.c ---- */

void *jobs_sweeper_main(void *arg);

#endif
