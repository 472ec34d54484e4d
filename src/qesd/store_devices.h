/*
 * store_devices.h - the store's half of the device channel: enrollment
 * codes, devices, their sessions, inventories and the signing credentials
 * taken from those inventories.
 *
 * Same rules as store.h: every function runs in a qesd_tx, returns 0 or a
 * negative QES_ERR_*, filters by tenant (a foreign id is QES_ERR_NOT_FOUND
 * like a missing one) and takes the time from the caller. No SQL outside
 * store_*.c: store_devices.c checks arguments and pages, the backends
 * (store_sqlite_devices.c) move rows.
 *
 * The named exceptions to tenant filtering, each with the reason:
 *   qesd_enrollment_get_by_code  an agent enrolling knows only its code;
 *                                the tenant is what the lookup finds
 *   qesd_device_get_for_auth     a connecting agent names only its device
 *                                id; the caller then acts only within
 *                                out->tenant_id
 *   qesd_sessions_close_replica  start-up clean-up of one replica's
 *                                sessions, whatever their tenants
 *   qesd_sessions_of_lost_replicas, qesd_replica_beat
 *                                replica liveness: a replica's sessions
 *                                belong to every tenant
 */
#ifndef QESD_STORE_DEVICES_H
#define QESD_STORE_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "qes/cert.h"
#include "qes/proto.h"
#include "store.h"

#define QESD_DEVICE_KEY_MAX	256	/* SPKI DER bytes (P-256: 91) */
#define QESD_AGENT_VERSION_MAX	64
#define QESD_OS_MAX		128
#define QESD_REPLICA_MAX	128
#define QESD_ADDR_TEXT_MAX	64	/* client address text, NUL included */
#define QESD_REASON_MAX		64	/* close reason word, NUL included */
#define QESD_KEY_ID_HEX_MAX	(2 * QES_PROTO_KEY_ID_MAX)
#define QESD_INVENTORY_MAX	(1024 * 1024)	/* stored inventory JSON bytes */
#define QESD_CREDENTIALS_MAX	(QES_PROTO_TOKENS_MAX * QES_PROTO_CERTS_MAX)

/* ---- enrollments ---- */

typedef struct qesd_enrollment {
	char id[QESD_ID_SIZE];			/* "enr_..." */
	char tenant_id[QESD_ID_SIZE];
	uint8_t code_hash[QESD_HMAC_LEN];	/* HMAC(pepper, code): devices.c */
	char device_name[QESD_NAME_MAX + 1];	/* "": the agent names it */
	char created_by[QESD_ID_SIZE];		/* key id; "" = local admin */
	int64_t created_at_ms;
	int64_t expires_at_ms;
	int64_t used_at_ms;			/* 0: not used */
	char device_id[QESD_ID_SIZE];		/* "" until used */
} qesd_enrollment;

/* Insert; e->id "" generates one (written back); used_at and device_id
 * must be unset. Write transaction. */
int qesd_enrollment_insert(qesd_tx *tx, qesd_enrollment *e);
/* The lookup by code hash, NOT filtered by tenant (see above). */
int qesd_enrollment_get_by_code(qesd_tx *tx,
    const uint8_t code_hash[QESD_HMAC_LEN], qesd_enrollment *out);
/*
 * Mark the enrollment used by device_id, compare-and-set: QES_ERR_CONFLICT
 * when it was used already (two agents racing with one code: exactly one
 * wins). Write transaction.
 */
int qesd_enrollment_use(qesd_tx *tx, const char *tenant_id,
    const char *enrollment_id, const char *device_id, int64_t now_ms);

/* ---- devices ---- */

typedef struct qesd_device {
	char id[QESD_ID_SIZE];			/* "dev_..." */
	char tenant_id[QESD_ID_SIZE];
	char name[QESD_NAME_MAX + 1];
	uint8_t public_key[QESD_DEVICE_KEY_MAX];	/* SPKI DER, EC P-256 */
	size_t public_key_len;
	char enrollment_id[QESD_ID_SIZE];
	char agent_version[QESD_AGENT_VERSION_MAX + 1];	/* at enrollment */
	char os[QESD_OS_MAX + 1];			/* at enrollment */
	int64_t enrolled_at_ms;
	int64_t revoked_at_ms;			/* 0: not revoked */
	int64_t inventory_at_ms;		/* 0: no inventory yet */
	int live;				/* lists and gets: an open session
						 * row exists (any replica) */
} qesd_device;

/* Insert; d->id "" generates one (written back). Write transaction. */
int qesd_device_insert(qesd_tx *tx, qesd_device *d);
int qesd_device_get(qesd_tx *tx, const char *tenant_id, const char *device_id,
    qesd_device *out);
/* The lookup by device id alone, for the agent endpoint (see above). */
int qesd_device_get_for_auth(qesd_tx *tx, const char *device_id,
    qesd_device *out);
/* Oldest enrollment first; public keys are left out of list entries. */
int qesd_device_list(qesd_tx *tx, const char *tenant_id, const char *cursor,
    size_t limit, qesd_device **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE]);
/* Revoke now. A revoked device stays revoked (QES_ERR_CONFLICT: already
 * revoked, nothing changed). Write transaction. */
int qesd_device_revoke(qesd_tx *tx, const char *tenant_id,
    const char *device_id, int64_t now_ms);

/* ---- inventories and credentials ---- */

/*
 * One signing certificate on one token of one device, as GET
 * /v1/credentials shows it and POST /v1/signatures needs it. Facts come
 * from the certificate's DER as the gateway parsed it (subject, validity,
 * key), never from the agent's description of it; serial, key id and label
 * are the token's, as the agent reported them.
 */
typedef struct qesd_credential {
	char id[QESD_ID_SIZE];			/* "crd_..." (qesd_credential_id) */
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char serial[QES_PROTO_SERIAL_MAX + 1];	/* token serial */
	char key_id_hex[QESD_KEY_ID_HEX_MAX + 1]; /* CKA_ID, lower-case hex; may be "" */
	char *label;				/* CKA_LABEL; "" when none (owned) */
	char *token_label;			/* the token's label; "" when none (owned) */
	char *subject;				/* RFC 2253 (owned) */
	char *subject_cn;			/* "" when absent (owned) */
	char *issuer;				/* RFC 2253 (owned) */
	char cert_serial_hex[80];		/* the certificate's serial number */
	/* "qualified", "advanced", "authentication", "expired",
	 * "not_yet_valid" (qes_cert_class_name): validity is judged at read
	 * time against the caller's now_ms */
	char classification[24];
	int64_t not_before_ms;
	int64_t not_after_ms;
	qes_key_type key_type;
	unsigned key_bits;
	char curve[16];				/* "P-256", ...; "" for RSA */
	unsigned key_usage;			/* QES_KU_* */
	unsigned qc;				/* QES_QC_* */
	int has_private_key;			/* 1, or -1 when unknown before login */
	int always_authenticate;
	char cert_sha256_hex[65];
	uint8_t *cert_der;			/* owned */
	size_t cert_der_len;
	int64_t updated_at_ms;			/* the inventory it came from */
	/* the device, at read time */
	char device_name[QESD_NAME_MAX + 1];
	int device_live;			/* an open session row exists */
	int64_t device_revoked_at_ms;		/* 0: not revoked */
} qesd_credential;

void qesd_credential_clear(qesd_credential *c);
void qesd_credentials_free(qesd_credential *v, size_t n);

/*
 * Replace the device's stored inventory (inventory_json: the report
 * document, at most QESD_INVENTORY_MAX bytes) and its credentials (n
 * entries, ids already computed, tenant and device fields ignored) in one
 * step. Write transaction.
 */
int qesd_device_set_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *inventory_json,
    const qesd_credential *creds, size_t n, int64_t now_ms);
/* The stored inventory document (malloc'd, caller frees) and its time;
 * *json NULL when the device never sent one. */
int qesd_device_get_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, char **json, int64_t *at_ms);

/*
 * Credentials of the tenant in id order. live_only: only devices that are
 * not revoked and have an open session (GET /v1/credentials); otherwise
 * every device's (GET /v1/devices/{id}). device_id NULL: all devices.
 * now_ms judges validity in classification.
 */
int qesd_credential_list(qesd_tx *tx, const char *tenant_id,
    const char *device_id, int live_only, int64_t now_ms, const char *cursor,
    size_t limit, qesd_credential **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE]);
/* One credential, whatever its device's state (out->device_live and
 * out->device_revoked_at_ms tell). Clear out with qesd_credential_clear. */
int qesd_credential_get(qesd_tx *tx, const char *tenant_id,
    const char *credential_id, int64_t now_ms, qesd_credential *out);

/* ---- sessions ---- */

typedef struct qesd_device_session {
	char id[QESD_ID_SIZE];			/* "ses_..." */
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char replica[QESD_REPLICA_MAX + 1];
	char agent_version[QESD_AGENT_VERSION_MAX + 1];
	char os[QESD_OS_MAX + 1];
	char client_addr[QESD_ADDR_TEXT_MAX];	/* "" once erased by retention */
	int64_t connected_at_ms;
	int64_t last_seen_at_ms;
	int64_t closed_at_ms;			/* 0: open */
	char close_reason[QESD_REASON_MAX];	/* "" while open */
} qesd_device_session;

/* Insert an open session; s->id must be set (the hub chose it for the
 * challenge). QES_ERR_CONFLICT when the device is revoked (checked inside
 * the same write transaction, so a revocation cannot slip between).
 * Write transaction. */
int qesd_session_insert(qesd_tx *tx, const qesd_device_session *s);
/* Move last_seen_at forward (never back) on open sessions; unknown or
 * closed ones are skipped. Write transaction. */
typedef struct qesd_session_seen {
	char tenant_id[QESD_ID_SIZE];
	char session_id[QESD_ID_SIZE];
	int64_t last_seen_at_ms;
} qesd_session_seen;
int qesd_session_touch(qesd_tx *tx, const qesd_session_seen *seen, size_t n);
/* Close an open session (closed_at, reason, a final last_seen_at);
 * QES_ERR_NOT_FOUND when there is no such open session. */
int qesd_session_close(qesd_tx *tx, const char *tenant_id,
    const char *session_id, int64_t last_seen_at_ms, int64_t now_ms,
    const char *reason);
int qesd_session_get(qesd_tx *tx, const char *tenant_id,
    const char *session_id, qesd_device_session *out);
/* A device's sessions, newest first. */
int qesd_session_list(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *cursor, size_t limit,
    qesd_device_session **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE]);
/*
 * Up to limit open sessions of replica (any tenant: see above), oldest
 * first. The start-up clean-up closes each with qesd_session_close and an
 * audit record, then asks again until none are left.
 */
int qesd_sessions_open_on_replica(qesd_tx *tx, const char *replica,
    size_t limit, qesd_device_session **items, size_t *n);

/*
 * ---- replicas (migration 5): who is alive, for failover ----
 *
 * Every qesd process writes one row under its replica name: when it
 * started and when it last beat (replicas.c, every replica_heartbeat_s).
 * A replica whose beat is older than replica_dead_after_s is gone (a
 * SIGKILL, a lost node): any other replica closes its open sessions with
 * reason "replica_lost". A newer process of the same name replaces the row
 * (its own start time), so its predecessor's row never makes it look dead.
 */

/*
 * The beat of replica (this process, started at started_at_ms) at now_ms.
 * *reaped (optional): 1 when another replica declared this very process
 * gone since its previous beat (and closed its sessions in the store); the
 * mark is cleared by this beat. Write transaction.
 */
int qesd_replica_beat(qesd_tx *tx, const char *replica, int64_t started_at_ms,
    int64_t now_ms, int *reaped);
/*
 * Up to limit open sessions, any tenant, of replicas that are gone: the
 * replica's beat is older than dead_before_ms, or it has no row at all
 * (a qesd before migration 5, or a row lost) and the session was last seen
 * before orphan_before_ms. Oldest first.
 */
int qesd_sessions_of_lost_replicas(qesd_tx *tx, int64_t dead_before_ms,
    int64_t orphan_before_ms, size_t limit, qesd_device_session **items,
    size_t *n);
/*
 * Close one session of a lost replica (reason "replica_lost"),
 * compare-and-set: only while it is open and its replica still counts as
 * gone by the same cutoffs; the replica's row is marked reaped. So two
 * replicas reaping at once close it once, and a replica that beat again
 * meanwhile keeps it. QES_ERR_NOT_FOUND when nothing changed. Write
 * transaction.
 */
int qesd_session_reap(qesd_tx *tx, const char *tenant_id,
    const char *session_id, int64_t dead_before_ms, int64_t orphan_before_ms,
    int64_t now_ms);

/*
 * *held 1 when session_id is open on a replica other than replica whose
 * beat is not older than alive_after_ms: a live replica still holds it, so
 * a replica starting up leaves its jobs alone. Read transaction.
 */
int qesd_session_held_elsewhere(qesd_tx *tx, const char *tenant_id,
    const char *session_id, const char *replica, int64_t alive_after_ms,
    int *held);

/*
 * Up to limit closed sessions, any tenant, that still have jobs at the
 * device (dispatched or awaiting_user) although they closed before
 * closed_before_ms: a process died between closing a session and failing
 * its jobs. Only id, tenant_id and device_id are set. Read transaction.
 */
int qesd_sessions_closed_with_jobs(qesd_tx *tx, int64_t closed_before_ms,
    size_t limit, qesd_device_session **items, size_t *n);

/*
 * Drop the rows of replicas that last beat before before_ms and hold no
 * open session (pods come and go under new names; their rows would pile
 * up). *n (optional): how many. Write transaction.
 */
int qesd_replicas_forget(qesd_tx *tx, int64_t before_ms, uint64_t *n);

/* ==== backend interface: for store_devices.c and store_*.c only ==== */

struct qesd_store_device_ops {
	int (*enrollment_insert)(qesd_tx *tx, const qesd_enrollment *e);
	int (*enrollment_get_by_code)(qesd_tx *tx,
	    const uint8_t code_hash[QESD_HMAC_LEN], qesd_enrollment *out);
	/* NOT_FOUND when no such unused enrollment */
	int (*enrollment_use)(qesd_tx *tx, const char *tenant_id,
	    const char *enrollment_id, const char *device_id, int64_t now_ms);

	int (*device_insert)(qesd_tx *tx, const qesd_device *d);
	/* tenant_id NULL only for the authentication lookup */
	int (*device_get)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, qesd_device *out);
	int (*device_list)(qesd_tx *tx, const char *tenant_id,
	    int64_t after_enrolled_ms, const char *after_id, size_t limit,
	    qesd_device *out, size_t *n);
	/* NOT_FOUND when no such device that is not revoked */
	int (*device_revoke)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, int64_t now_ms);
	int (*device_set_inventory)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, const char *inventory_json,
	    const qesd_credential *creds, size_t n, int64_t now_ms);
	int (*device_get_inventory)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, char **json, int64_t *at_ms);

	/* device_id NULL: all; classification is filled by store_devices.c */
	int (*credential_list)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, int live_only, const char *after_id,
	    size_t limit, qesd_credential *out, size_t *n);
	int (*credential_get)(qesd_tx *tx, const char *tenant_id,
	    const char *credential_id, qesd_credential *out);

	/* CONFLICT when the device is revoked, NOT_FOUND when missing */
	int (*session_insert)(qesd_tx *tx, const qesd_device_session *s);
	int (*session_touch)(qesd_tx *tx, const qesd_session_seen *s);
	/* NOT_FOUND when no such open session */
	int (*session_close)(qesd_tx *tx, const char *tenant_id,
	    const char *session_id, int64_t last_seen_at_ms, int64_t now_ms,
	    const char *reason);
	int (*session_get)(qesd_tx *tx, const char *tenant_id,
	    const char *session_id, qesd_device_session *out);
	/* newest first: (connected_at, id) < (before_ms, before_id);
	 * before_ms 0 starts at the newest */
	int (*session_list)(qesd_tx *tx, const char *tenant_id,
	    const char *device_id, int64_t before_ms, const char *before_id,
	    size_t limit, qesd_device_session *out, size_t *n);
	int (*sessions_open_on_replica)(qesd_tx *tx, const char *replica,
	    size_t limit, qesd_device_session *out, size_t *n);

	int (*replica_beat)(qesd_tx *tx, const char *replica,
	    int64_t started_at_ms, int64_t now_ms, int *reaped);
	int (*sessions_of_lost_replicas)(qesd_tx *tx, int64_t dead_before_ms,
	    int64_t orphan_before_ms, size_t limit, qesd_device_session *out,
	    size_t *n);
	/* NOT_FOUND when nothing changed */
	int (*session_reap)(qesd_tx *tx, const char *tenant_id,
	    const char *session_id, int64_t dead_before_ms,
	    int64_t orphan_before_ms, int64_t now_ms);
	int (*session_held_elsewhere)(qesd_tx *tx, const char *tenant_id,
	    const char *session_id, const char *replica, int64_t alive_after_ms,
	    int *held);
	int (*sessions_closed_with_jobs)(qesd_tx *tx, int64_t closed_before_ms,
	    size_t limit, qesd_device_session *out, size_t *n);
	int (*replicas_forget)(qesd_tx *tx, int64_t before_ms, uint64_t *n);
};

extern const struct qesd_store_device_ops qesd_store_sqlite_device_ops;

#endif
