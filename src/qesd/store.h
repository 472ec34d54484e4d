/*
 * store.h - the durable state of qesd behind one small interface.
 *
 * Tenants, hashed API keys, the audit chain and (issue 4) devices,
 * enrollments, device sessions and jobs live in a store chosen by URL:
 * "sqlite:PATH" (embedded, one process) or "postgres:URL" (any number of
 * replicas; store_pg*.c). Services call these functions; no SQL
 * exists outside store_*.c.
 *
 * Shape. A qesd_store is opened once and shared by every worker thread.
 * Every operation runs inside a transaction handle (qesd_tx) that a thread
 * takes with qesd_store_begin() and gives back with qesd_tx_end(); a handle
 * is used by one thread at a time. The idiom is
 *
 *	if ((r = qesd_store_begin(s, QESD_TX_WRITE, &tx)) != 0) goto out;
 *	if ((r = qesd_key_revoke(tx, tenant, key, now)) != 0) goto out;
 *	if ((r = qesd_audit_append(tx, tenant, &ev, NULL)) != 0) goto out;
 *	r = qesd_tx_commit(tx);
 *   out:
 *	qesd_tx_end(tx);	(rolls back unless committed; NULL is fine)
 *
 * so a state change and its audit record commit together or not at all.
 * The first failing operation poisons the transaction: later operations
 * and the commit return the same error (this is PostgreSQL's behaviour, and
 * SQLite is made to match). QES_ERR_NOT_FOUND does not poison.
 *
 * Errors: 0 or a negative QES_ERR_*. QES_ERR_NOT_FOUND (no such object in
 * this tenant - a foreign tenant's id looks exactly like a missing one),
 * QES_ERR_CONFLICT (exists already, or the object's state forbids it),
 * QES_ERR_BUSY (locked or pool exhausted: retry shortly, or answer 503 with
 * Retry-After), QES_ERR_UNAVAILABLE (the database cannot be used: 503, and
 * /readyz fails), QES_ERR_INVALID_ARG (caller bug or bad input). Detail for
 * logs: qesd_tx_errmsg(), never containing a secret.
 *
 * Tenancy: every function on tenant data takes the tenant id and filters
 * by it. The exceptions are named: qesd_key_get_for_auth() (the tenant is
 * unknown until the key is found) and the retention functions, which walk
 * all tenants one at a time.
 *
 * Secrets: the store never sees an API key secret or the pepper; callers
 * pass HMAC-SHA-256(pepper, secret) values only.
 *
 * Time: every function takes the time from the caller (*_ms, milliseconds
 * since 1970 UTC), so tests inject time instead of sleeping. 0 means "not
 * set" in time fields of the structures below.
 */
#ifndef QESD_STORE_H
#define QESD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "qes/audit.h"

#define QESD_SCHEMA_VERSION 5		/* latest migration this code knows */
#define QESD_ID_SIZE 48			/* buffer for any id, NUL included */
#define QESD_NAME_MAX 128		/* tenant and key names: bytes */
#define QESD_CURSOR_SIZE 96		/* buffer for a pagination cursor */
#define QESD_HMAC_LEN 32
#define QESD_LIST_DEFAULT 100		/* limit 0 means this */
#define QESD_LIST_MAX 1000		/* larger limits are clamped to this */

/* ---- ids ---- */

/*
 * Ids are "<prefix>_" + 26 lower-case base32 characters (16 random bytes
 * from the OpenSSL CSPRNG, no padding): URL-safe, unguessable, and without
 * '_' after the prefix, so "qes_<keyid>_<secret>" splits unambiguously.
 * Prefixes in use: ten key aud dev enr ses job.
 */
int qesd_id_new(const char *prefix, char out[QESD_ID_SIZE]);
/* 1 when id is a well-formed id with that prefix, else 0. */
int qesd_id_valid(const char *prefix, const char *id);

/* ---- the store ---- */

typedef struct qesd_store qesd_store;
typedef struct qesd_tx qesd_tx;

typedef struct qesd_store_config {
	unsigned pool_size;		/* connections; 0: 4 */
	unsigned busy_timeout_ms;	/* wait for another process' lock; 0: 5000 */
	unsigned acquire_timeout_ms;	/* wait for a free connection; 0: 5000 */
} qesd_store_config;

/*
 * Open (creating and migrating when needed) the store named by url.
 * cfg may be NULL. On failure err (if not NULL) holds a sentence for the
 * operator; QES_ERR_UNSUPPORTED for a database whose schema is newer than
 * this code or that is not qesd's, QES_ERR_UNAVAILABLE when it cannot be
 * reached, QES_ERR_INVALID_ARG for a bad URL.
 */
int qesd_store_open(const char *url, const qesd_store_config *cfg,
    qesd_store **out, char *err, size_t err_len);
/* Close every connection; no transaction may be open. NULL: no-op. */
void qesd_store_free(qesd_store *s);
/* "sqlite" or "postgres". */
const char *qesd_store_backend(const qesd_store *s);
/* Readiness: 0 when a query succeeds, else QES_ERR_UNAVAILABLE/BUSY. */
int qesd_store_ping(qesd_store *s);

typedef enum qesd_tx_mode {
	QESD_TX_READ = 0,	/* a consistent snapshot; write functions refused */
	QESD_TX_WRITE = 1,	/* serialised with other writers from the start */
} qesd_tx_mode;

/*
 * Take a connection and start a transaction. Keep write transactions
 * short: no network round trip, no user interaction inside one.
 */
int qesd_store_begin(qesd_store *s, qesd_tx_mode mode, qesd_tx **out);
/* Commit. After it (success or not) only qesd_tx_errmsg and _end. */
int qesd_tx_commit(qesd_tx *tx);
/* Roll back unless committed, give the connection back. NULL: no-op. */
void qesd_tx_end(qesd_tx *tx);
/* Detail of the last failure in tx ("" if none); valid until _end. */
const char *qesd_tx_errmsg(const qesd_tx *tx);

/* ---- tenants ---- */

typedef struct qesd_tenant {
	char id[QESD_ID_SIZE];
	char name[QESD_NAME_MAX + 1];
	int64_t created_at_ms;
} qesd_tenant;

/* New tenant with a generated id and an empty audit chain. Names are
 * unique (QES_ERR_CONFLICT). Write transaction. */
int qesd_tenant_create(qesd_tx *tx, const char *name, int64_t now_ms,
    qesd_tenant *out);
int qesd_tenant_get(qesd_tx *tx, const char *tenant_id, qesd_tenant *out);

/*
 * Lists (here and below): cursor NULL or "" for the first page; limit 0 for
 * QESD_LIST_DEFAULT. *items is a new array of *n entries (free() it, or
 * qes_audit_records_free() for audit records; NULL when *n is 0) and
 * next_cursor is "" on the last page. Cursors are opaque to callers.
 */
int qesd_tenant_list(qesd_tx *tx, const char *cursor, size_t limit,
    qesd_tenant **items, size_t *n, char next_cursor[QESD_CURSOR_SIZE]);

/* ---- API keys ---- */

/*
 * An API key as stored. scopes is a bit set defined by the auth service
 * and stored as is. secret_hash is HMAC-SHA-256(pepper, secret); after a
 * rotation the previous hash stays valid until prev_valid_until_ms - the
 * auth service decides validity from these fields (revoked_at_ms,
 * expires_at_ms, prev_valid_until_ms against its clock).
 */
typedef struct qesd_api_key {
	char id[QESD_ID_SIZE];
	char tenant_id[QESD_ID_SIZE];
	char name[QESD_NAME_MAX + 1];		/* may be "" */
	uint32_t scopes;
	uint8_t secret_hash[QESD_HMAC_LEN];
	int has_prev;				/* prev_secret_hash is set */
	uint8_t prev_secret_hash[QESD_HMAC_LEN];
	int64_t prev_valid_until_ms;
	char created_by[QESD_ID_SIZE];		/* key id; "" = local admin */
	int64_t created_at_ms;
	int64_t expires_at_ms;			/* 0: never */
	int64_t rotated_at_ms;			/* 0: never */
	int64_t revoked_at_ms;			/* 0: not revoked */
	int64_t last_used_at_ms;		/* 0: never (batched, see touch) */
} qesd_api_key;

/* Insert. key->id "" generates one (written back); has_prev, rotated,
 * revoked and last_used must be unset. Write transaction. */
int qesd_key_insert(qesd_tx *tx, qesd_api_key *key);
/*
 * The one lookup NOT filtered by tenant: authentication learns the tenant
 * from the key it finds. Use it for nothing else; the caller must then
 * act only within out->tenant_id.
 */
int qesd_key_get_for_auth(qesd_tx *tx, const char *key_id,
    qesd_api_key *out);
int qesd_key_get(qesd_tx *tx, const char *tenant_id, const char *key_id,
    qesd_api_key *out);
/* Oldest first; the secret hash fields of listed keys are left zero. */
int qesd_key_list(qesd_tx *tx, const char *tenant_id, const char *cursor,
    size_t limit, qesd_api_key **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE]);
/*
 * New secret hash; the current one becomes the previous, valid until
 * prev_valid_until_ms (the caller applies its grace policy). A hash that
 * was already "previous" is dropped at once. QES_ERR_CONFLICT for a
 * revoked key. Write transaction.
 */
int qesd_key_rotate(qesd_tx *tx, const char *tenant_id, const char *key_id,
    const uint8_t new_hash[QESD_HMAC_LEN], int64_t prev_valid_until_ms,
    int64_t now_ms);
/* Revoke now (the previous hash is dropped too). Revoking a revoked key
 * succeeds and keeps the first time. Write transaction. */
int qesd_key_revoke(qesd_tx *tx, const char *tenant_id, const char *key_id,
    int64_t now_ms);

/* Batched last_used_at: the server collects uses in memory and writes
 * them in one write transaction now and then. Never moves a time back;
 * unknown keys are skipped. */
typedef struct qesd_key_use {
	char tenant_id[QESD_ID_SIZE];
	char key_id[QESD_ID_SIZE];
	int64_t used_at_ms;
} qesd_key_use;
int qesd_key_touch(qesd_tx *tx, const qesd_key_use *uses, size_t n);

/* ---- audit ---- */

/* What happened; the store adds tenant, seq, id, chain hashes and the
 * address commitment. Strings are borrowed for the call. */
typedef struct qesd_audit_event {
	int64_t time_ms;
	const char *type;		/* required: "api.request", "key.created", ... */
	const char *request_id;		/* NULL: absent (so for every field) */
	const char *key_id;
	const char *device_id;
	const char *route;
	const char *method;
	int status;			/* 0: absent */
	const char *client_addr;
	const char *details;		/* JSON object text; stored canonical */
} qesd_audit_event;

typedef struct qesd_audit_ref {
	uint64_t seq;
	char id[QESD_ID_SIZE];
	uint8_t hash[QES_AUDIT_HASH_LEN];
} qesd_audit_ref;

/*
 * Append to the tenant's chain inside the caller's write transaction: the
 * record gets the next seq and links to the current head. Concurrent
 * appenders never fork or gap a chain: writers are serialised (SQLite) or
 * lock the tenant's head row (PostgreSQL), and (tenant_id, seq) is a
 * primary key besides. out may be NULL.
 */
int qesd_audit_append(qesd_tx *tx, const char *tenant_id,
    const qesd_audit_event *ev, qesd_audit_ref *out);

/* Filters for listing; 0 / NULL fields do not filter. Time is [since, until). */
typedef struct qesd_audit_filter {
	int64_t since_ms;
	int64_t until_ms;
	const char *type;
	const char *device_id;
	const char *key_id;
} qesd_audit_filter;

/* Records in seq order. filter may be NULL. */
int qesd_audit_list(qesd_tx *tx, const char *tenant_id,
    const qesd_audit_filter *filter, const char *cursor, size_t limit,
    qes_audit_record **items, size_t *n, char next_cursor[QESD_CURSOR_SIZE]);
/* Where the stored chain starts: the last purged record (0 and zeros when
 * nothing was purged) - the anchor of an export. */
int qesd_audit_anchor(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN]);
/* Where it ends: seq and hash of the newest record (the anchor if none). */
int qesd_audit_head(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN]);

/*
 * Verify a tenant's stored chain from its anchor to its head in one read
 * snapshot. 0 when intact; QES_ERR_CHAIN_BROKEN with *out saying where
 * (reason "head mismatch" when records are missing at the end).
 */
int qesd_audit_verify(qesd_store *s, const char *tenant_id,
    qes_audit_chain *out);

/*
 * Retention, over all tenants, one write transaction per tenant.
 * purge: delete each tenant's oldest records up to the last one before
 * before_ms (a prefix of the chain: a record is kept while an older-seq
 * one must stay), move the anchor to the last deleted record, and append
 * an "audit.purged" record. erase: drop client addresses older than
 * before_ms from audit records (the commitment stays, the chain verifies)
 * and from closed device sessions, and append "audit.addresses_erased".
 * Counts are optional; err (optional) explains a failure.
 */
int qesd_audit_purge(qesd_store *s, int64_t before_ms, int64_t now_ms,
    uint64_t *purged, char *err, size_t err_len);
int qesd_audit_erase_addrs(qesd_store *s, int64_t before_ms, int64_t now_ms,
    uint64_t *erased, char *err, size_t err_len);

/*
 * Group commit for audit records of read-only requests (a state change
 * appends its record in its own transaction instead). push copies and
 * validates the event and returns at once; a background thread writes
 * what is queued in one transaction every flush_interval_ms or as soon as
 * flush_records are waiting. If the store is down the records wait (in
 * order) and push refuses new ones with QES_ERR_UNAVAILABLE beyond
 * max_pending - answer 503 then: an audit record is never dropped
 * silently. A record the store rejects as invalid (unknown tenant) is
 * dropped and counted; that is a bug in the caller.
 */
typedef struct qesd_audit_queue qesd_audit_queue;

typedef struct qesd_audit_queue_config {
	size_t flush_records;		/* 0: 256 */
	unsigned flush_interval_ms;	/* 0: 100 */
	size_t max_pending;		/* 0: 64 * flush_records */
} qesd_audit_queue_config;

typedef struct qesd_audit_queue_stats {
	uint64_t pending;		/* queued, not yet written */
	uint64_t written;
	uint64_t dropped;		/* rejected by the store as invalid */
	uint64_t flush_failures;	/* flushes that failed and will retry */
} qesd_audit_queue_stats;

int qesd_audit_queue_new(qesd_store *s, const qesd_audit_queue_config *cfg,
    qesd_audit_queue **out);
int qesd_audit_queue_push(qesd_audit_queue *q, const char *tenant_id,
    const qesd_audit_event *ev);
/* Write everything queued now (drain, tests); the store's error if any. */
int qesd_audit_queue_flush(qesd_audit_queue *q);
void qesd_audit_queue_get_stats(qesd_audit_queue *q,
    qesd_audit_queue_stats *out);
/* Stop the thread after a last flush; call _flush first to learn whether
 * anything could not be written. NULL: no-op. */
void qesd_audit_queue_free(qesd_audit_queue *q);

/* ==== backend interface: for store.c and store_*.c only ==== */

/*
 * The common head of a transaction handle. A backend embeds it as the
 * first member of its own connection structure and hands out its address;
 * store.c owns the fields below, the backend fills errmsg.
 */
struct qesd_tx {
	qesd_store *store;
	qesd_tx_mode mode;
	int failed;		/* sticky error of a backend call, 0 if none */
	int committed;
	char errmsg[256];
};

/*
 * One backend. store.c validates arguments, generates ids, builds and
 * seals audit records and implements cursors, paging and retention loops;
 * a backend only moves rows. List functions fill at most limit entries of
 * a zeroed caller array and set *n. A failed database call sets
 * tx->failed and tx->errmsg (PostgreSQL aborts the transaction then, and
 * SQLite must behave the same); "no such row" is QES_ERR_NOT_FOUND and
 * poisons nothing. Backend open/close run once; every other function may
 * be called from any thread, one thread per transaction at a time.
 */
struct qesd_store_job_ops;	/* store_jobs.h */
struct qesd_store_device_ops;	/* store_devices.h */

struct qesd_store_ops {
	const char *name;
	int (*open)(const char *target, const qesd_store_config *cfg,
	    void **backend, char *err, size_t err_len);
	void (*close)(void *backend);
	int (*ping)(void *backend);
	int (*begin)(void *backend, qesd_tx_mode mode, qesd_tx **out);
	int (*commit)(qesd_tx *tx);
	void (*end)(qesd_tx *tx);

	int (*tenant_insert)(qesd_tx *tx, const qesd_tenant *t);
	int (*tenant_get)(qesd_tx *tx, const char *id, qesd_tenant *out);
	int (*tenant_list)(qesd_tx *tx, const char *after_id, size_t limit,
	    qesd_tenant *out, size_t *n);

	int (*key_insert)(qesd_tx *tx, const qesd_api_key *k);
	/* tenant_id NULL only for the authentication lookup */
	int (*key_get)(qesd_tx *tx, const char *tenant_id, const char *key_id,
	    qesd_api_key *out);
	int (*key_list)(qesd_tx *tx, const char *tenant_id,
	    int64_t after_created_ms, const char *after_id, size_t limit,
	    qesd_api_key *out, size_t *n);
	/* NOT_FOUND when no such key that is not revoked */
	int (*key_rotate)(qesd_tx *tx, const char *tenant_id,
	    const char *key_id, const uint8_t new_hash[QESD_HMAC_LEN],
	    int64_t prev_valid_until_ms, int64_t now_ms);
	/* NOT_FOUND when no such key that is not revoked */
	int (*key_revoke)(qesd_tx *tx, const char *tenant_id,
	    const char *key_id, int64_t now_ms);
	int (*key_touch)(qesd_tx *tx, const qesd_key_use *u);

	/* head for appending: in a write transaction, locked until its end */
	int (*audit_head)(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
	    uint8_t hash[QES_AUDIT_HASH_LEN]);
	/* insert a sealed record and move the head from seq-1 to it */
	int (*audit_insert)(qesd_tx *tx, const qes_audit_record *rec);
	int (*audit_anchor)(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
	    uint8_t hash[QES_AUDIT_HASH_LEN]);
	int (*audit_list)(qesd_tx *tx, const char *tenant_id,
	    const qesd_audit_filter *f, uint64_t after_seq, size_t limit,
	    qes_audit_record *out, size_t *n);
	/* delete the purgeable prefix, anchor at its last record */
	int (*audit_purge)(qesd_tx *tx, const char *tenant_id,
	    int64_t before_ms, int64_t now_ms, uint64_t *through_seq,
	    uint64_t *count);
	int (*audit_erase_addrs)(qesd_tx *tx, const char *tenant_id,
	    int64_t before_ms, uint64_t *count);

	/* signature jobs (store_jobs.h) */
	const struct qesd_store_job_ops *jobs;
	/* enrollments, devices, credentials, sessions (store_devices.h) */
	const struct qesd_store_device_ops *devices;
};

/*
 * For the per-concern halves of the store (store_jobs.c, ...), which
 * follow store.c's rules: the backend of tx; the check every operation
 * makes first (tx usable, and a write transaction when write); recording
 * a backend result (anything but 0 and QES_ERR_NOT_FOUND poisons tx); and
 * refusing bad arguments with a detail for qesd_tx_errmsg (no poison).
 */
const struct qesd_store_ops *qesd_tx_ops(const qesd_tx *tx);
int qesd_tx_check(qesd_tx *tx, int write);
int qesd_tx_result(qesd_tx *tx, int r);
int qesd_tx_refuse(qesd_tx *tx, int r, const char *why);

extern const struct qesd_store_ops qesd_store_sqlite_ops;

#endif
