/*
 * store_jobs.h - signature jobs in the store (the jobs table of migration
 * 1, plus the session column and indexes of migration 2).
 *
 * A job row is a persisted state machine. The rules of the machine live
 * here, once, so that no caller and no backend can move a job along an
 * edge that does not exist:
 *
 *   created ──▶ dispatched ──▶ awaiting_user ──▶ signed ──▶ completed ──▶ expired
 *      │             │               │              │
 *      └─────────────┴───────────────┴──────────────┴──▶ failed(reason) | cancelled
 *
 * (dispatched may also go straight to signed: the agent has no message
 * that says "the dialog is open", see jobs.c). failed, cancelled and
 * expired are terminal; completed is final for the relying party (the
 * signatures are there) and moves to expired only when retention drops
 * its signatures.
 *
 * Every change is a compare-and-set on (state, version): qesd_job_update()
 * succeeds only if the row still has the state and version the caller
 * read, and bumps the version. Two replicas (or two threads) racing to
 * move one job cannot both win; the loser gets QES_ERR_CONFLICT, which,
 * like QES_ERR_NOT_FOUND, does not poison the transaction (the loser
 * re-reads and decides again).
 *
 * Tenancy: every per-job function takes the tenant. The sweeper lists
 * (qesd_job_list_live, qesd_job_list_completed_before) walk all tenants,
 * like the audit retention functions: they are for background threads,
 * which then act on each job within its own tenant.
 */
#ifndef QESD_STORE_JOBS_H
#define QESD_STORE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef enum qesd_job_state {
	QESD_JOB_CREATED = 1,
	QESD_JOB_DISPATCHED = 2,
	QESD_JOB_AWAITING_USER = 3,
	QESD_JOB_SIGNED = 4,
	QESD_JOB_COMPLETED = 5,
	QESD_JOB_FAILED = 6,
	QESD_JOB_EXPIRED = 7,
	QESD_JOB_CANCELLED = 8,
} qesd_job_state;

/* "created", ...; NULL for a value outside the enum. */
const char *qesd_job_state_name(qesd_job_state s);
/* 0 and *out, or QES_ERR_FORMAT. */
int qesd_job_state_parse(const char *name, qesd_job_state *out);
/* 1 for completed, failed, expired, cancelled: nothing more will happen
 * for the relying party (a long-poll returns, cancel answers 409). */
int qesd_job_state_final(qesd_job_state s);
/* 1 when the machine has the edge from -> to. */
int qesd_job_transition_ok(qesd_job_state from, qesd_job_state to);

#define QESD_JOB_REASON_MAX	63		/* [a-z0-9_]{1,63} */
#define QESD_JOB_VCODE_SIZE	8		/* 4 digits and NUL, with room */
#define QESD_IDEMPOTENCY_KEY_MAX 255		/* printable ASCII bytes */
#define QESD_JOB_REQUEST_MAX	(512 * 1024)	/* request JSON text, bytes */
#define QESD_JOB_RESULT_MAX	(4 * 1024 * 1024)	/* result JSON text, bytes */
#define QESD_JOB_HASH_LEN	32

typedef struct qesd_job {
	char id[QESD_ID_SIZE];			/* "job_..." */
	char tenant_id[QESD_ID_SIZE];
	qesd_job_state state;
	char reason[QESD_JOB_REASON_MAX + 1];	/* failed only, else "" */
	char credential_id[QESD_ID_SIZE];	/* "crd_..." */
	char device_id[QESD_ID_SIZE];		/* "" when none */
	char session_id[QESD_ID_SIZE];		/* the session it was sent on; "" before */
	char key_id[QESD_ID_SIZE];		/* the API key that asked; "" when none */
	char *request;				/* JSON object text (owned); NULL in lists */
	char *result;				/* JSON object text (owned) or NULL; NULL in lists */
	char verification_code[QESD_JOB_VCODE_SIZE];
	char idempotency_key[QESD_IDEMPOTENCY_KEY_MAX + 1];	/* "" when none */
	uint8_t request_hash[QESD_JOB_HASH_LEN];	/* set with idempotency_key */
	int64_t created_at_ms;
	int64_t updated_at_ms;
	int64_t expires_at_ms;			/* the signer must answer before */
	int64_t version;			/* 1 at insert, +1 per change */
} qesd_job;

/* 1 when s may be an Idempotency-Key: 1..255 printable ASCII characters,
 * no blank at either end (what an HTTP header carries after trimming). */
int qesd_job_idempotency_key_ok(const char *s);

/* Free request and result and zero the job. NULL: no-op. */
void qesd_job_clear(qesd_job *job);
/* Free an array from a list function (each entry cleared). */
void qesd_job_list_free(qesd_job *jobs, size_t n);

/*
 * Insert a new job in state created, version 1. job->id "" generates one
 * (written back). request is required; result must be NULL. With an
 * idempotency key, a second job with the same key in the tenant is
 * QES_ERR_CONFLICT (look it up with qesd_job_get_by_idempotency_key).
 * Write transaction.
 */
int qesd_job_insert(qesd_tx *tx, qesd_job *job);

/* The job, request and result included (clear it with qesd_job_clear). */
int qesd_job_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    qesd_job *out);
int qesd_job_get_by_idempotency_key(qesd_tx *tx, const char *tenant_id,
    const char *idempotency_key, qesd_job *out);

/*
 * Move job (as read: its state and version are what the row must still
 * hold) to state to, writing reason (failed: required [a-z0-9_]; other
 * states: must be NULL or ""), job->result (NULL stores NULL) and
 * job->session_id as they are now. On success job reflects the row (state,
 * reason, version + 1, updated_at_ms = now_ms).
 *   QES_ERR_INVALID_ARG  the machine has no such edge (nothing written)
 *   QES_ERR_CONFLICT     the row moved on meanwhile (re-read; no poison)
 *   QES_ERR_NOT_FOUND    no such job in the tenant
 * Write transaction.
 */
int qesd_job_update(qesd_tx *tx, qesd_job *job, qesd_job_state to,
    const char *reason, int64_t now_ms);

/*
 * Jobs not yet final (created, dispatched, awaiting_user, signed) whose
 * expires_at_ms < before_ms, soonest first, at most limit (clamped to
 * QESD_LIST_MAX), ALL TENANTS: the expiry sweeper and the restart
 * recovery (before_ms INT64_MAX). *items: free with qesd_job_list_free.
 */
int qesd_job_list_live(qesd_tx *tx, int64_t before_ms, size_t limit,
    qesd_job **items, size_t *n);
/* Jobs not yet final of one device; session_id NULL: whatever session. */
int qesd_job_list_live_on_device(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *session_id, size_t limit,
    qesd_job **items, size_t *n);
/* Completed jobs last changed before before_ms, ALL TENANTS (retention). */
int qesd_job_list_completed_before(qesd_tx *tx, int64_t before_ms,
    size_t limit, qesd_job **items, size_t *n);
/* Jobs resting in signed (document jobs waiting for their finish) last
 * changed before before_ms, longest waiting first, ALL TENANTS. */
int qesd_job_list_signed_before(qesd_tx *tx, int64_t before_ms,
    size_t limit, qesd_job **items, size_t *n);

/*
 * ---- job documents (migration 4): store_docs.c ----
 *
 * The document of an AdES job and its signed result, held only for the
 * job's life and only encrypted: AES-256-GCM under the gateway's document
 * key (document_key_file), a fresh random 96-bit nonce per write, and the
 * tenant, job id and kind as additional authenticated data, so that a row
 * copied to another job or kind no longer decrypts. The store sees the
 * nonce, the ciphertext and the tag, never the document.
 */
#define QESD_DOC_KEY_LEN	32
#define QESD_DOC_NONCE_LEN	12
#define QESD_DOC_TAG_LEN	16
#define QESD_JOB_DOC_MAX	(64u * 1024 * 1024)	/* plaintext bytes */

typedef enum qesd_job_doc_kind {
	QESD_JOB_DOC_INPUT = 1,		/* "document": what the client sent */
	QESD_JOB_DOC_RESULT = 2,	/* "result": the signed document */
} qesd_job_doc_kind;

/*
 * Read the 32-byte document key from path: the file must be a regular
 * file, owned by the caller, not readable or writable by group or others
 * (0600 or stricter), and hold exactly 32 bytes or 64 hex digits (a final
 * newline allowed). 0, or QES_ERR_IO / QES_ERR_FORMAT with err filled (no
 * key material in err).
 */
int qesd_doc_key_load(const char *path, uint8_t key[QESD_DOC_KEY_LEN],
    char *err, size_t err_len);

/*
 * Encrypt data (1..QESD_JOB_DOC_MAX bytes) and store it as the job's
 * document of that kind, replacing one there. The job must exist in the
 * tenant (QES_ERR_NOT_FOUND). Write transaction.
 */
int qesd_job_doc_put(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    const uint8_t *data, size_t len, int64_t now_ms);
/*
 * The job's document of that kind, decrypted into *data (malloc'ed: the
 * caller wipes it with qes_wipe and frees it) and *len.
 * QES_ERR_NOT_FOUND when there is none (never stored, or purged);
 * QES_ERR_SIGNATURE_INVALID when it does not decrypt (another key, or the
 * row was tampered with or moved).
 */
int qesd_job_doc_get(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    uint8_t **data, size_t *len);
/*
 * qesd_job_doc_get, then every document of the job purged, in the
 * caller's write transaction: what GET .../result does, so that a result
 * is handed out once (a second call: QES_ERR_NOT_FOUND) and only if the
 * transaction commits.
 */
int qesd_job_doc_take(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    uint8_t **data, size_t *len);
/* Delete every document of the job; *n (optional) the rows deleted, 0
 * when there were none (not an error). Write transaction. */
int qesd_job_doc_purge(qesd_tx *tx, const char *tenant_id,
    const char *job_id, uint64_t *n);

/* ==== backend interface: for store_jobs.c and store_*_jobs.c only ==== */

enum qesd_job_list_kind {
	QESD_JOB_LIST_LIVE = 1,		/* bound: expires_at_ms < bound_ms */
	QESD_JOB_LIST_LIVE_DEVICE = 2,	/* tenant, device, optional session */
	QESD_JOB_LIST_COMPLETED = 3,	/* bound: updated_at_ms < bound_ms */
	QESD_JOB_LIST_SIGNED = 4,	/* bound: updated_at_ms < bound_ms */
};

struct qesd_store_job_ops {
	int (*insert)(qesd_tx *tx, const qesd_job *job);
	/* by id, or (id NULL) by idempotency key */
	int (*get)(qesd_tx *tx, const char *tenant_id, const char *job_id,
	    const char *idempotency_key, qesd_job *out);
	/* compare-and-set from (old_state, old_version) to the values in
	 * next (state, reason, result, session_id, updated_at_ms, version);
	 * NOT_FOUND when no row matched, without poisoning */
	int (*update)(qesd_tx *tx, const qesd_job *next,
	    qesd_job_state old_state, int64_t old_version);
	/* fills at most limit zeroed entries (request and result NULL) */
	int (*list)(qesd_tx *tx, enum qesd_job_list_kind kind,
	    const char *tenant_id, const char *device_id,
	    const char *session_id, int64_t bound_ms, size_t limit,
	    qesd_job *out, size_t *n);

	/* job documents (store_docs.c has checked the arguments and does
	 * the cryptography; sealed is nonce || ciphertext || tag) */
	int (*doc_put)(qesd_tx *tx, const char *tenant_id, const char *job_id,
	    const char *kind, const uint8_t *sealed, size_t sealed_len,
	    int64_t now_ms);
	/* *sealed malloc'ed; NOT_FOUND when no row */
	int (*doc_get)(qesd_tx *tx, const char *tenant_id, const char *job_id,
	    const char *kind, size_t max, uint8_t **sealed, size_t *sealed_len);
	int (*doc_purge)(qesd_tx *tx, const char *tenant_id,
	    const char *job_id, uint64_t *n);
};

extern const struct qesd_store_job_ops qesd_store_sqlite_job_ops;

#endif
