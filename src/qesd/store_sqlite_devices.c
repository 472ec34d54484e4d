/*
 * store_sqlite_devices.c - the SQLite rows of the device channel:
 * enrollments, devices, inventories and credentials, device sessions
 * (store_devices.h), and the migration that adds what migration 1 lacked.
 *
 * Every statement is a static string prepared once per connection through
 * store_sqlite.h and filters by tenant_id (except the named lookups of
 * store_devices.h). "Live" everywhere means: an open row in
 * device_sessions (closed_at_ms IS NULL) - with several replicas that is the
 * only view every replica shares.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "qes/err.h"
#include "store.h"
#include "store_devices.h"
#include "store_sqlite.h"

/*
 * Migration 3 (devices, issue 4). migration 1 made devices, enrollments
 * and device_sessions; this adds what the agent reported at enrollment,
 * the credentials of each device's latest inventory (one row per
 * certificate with a private key, replaced with every inventory, looked up
 * by credential id when a job is created), and an index for "is this
 * device live".
 */
const char qesd_sq_migration_devices[] =
"ALTER TABLE devices ADD COLUMN agent_version TEXT;\n"
"ALTER TABLE devices ADD COLUMN os TEXT;\n"
"CREATE TABLE device_credentials (\n"
"  tenant_id TEXT NOT NULL,\n"
"  id TEXT NOT NULL,\n"
"  device_id TEXT NOT NULL,\n"
"  serial TEXT NOT NULL,\n"
"  key_id_hex TEXT NOT NULL,\n"
"  label TEXT NOT NULL,\n"
"  token_label TEXT NOT NULL,\n"
"  subject TEXT NOT NULL,\n"
"  subject_cn TEXT NOT NULL,\n"
"  issuer TEXT NOT NULL,\n"
"  cert_serial TEXT NOT NULL,\n"
/* made while the certificate was valid; validity is judged at read time */
"  class TEXT NOT NULL,\n"
"  not_before_ms INTEGER NOT NULL,\n"
"  not_after_ms INTEGER NOT NULL,\n"
"  key_type INTEGER NOT NULL,\n"
"  key_bits INTEGER NOT NULL,\n"
"  curve TEXT NOT NULL,\n"
"  key_usage INTEGER NOT NULL,\n"
"  qc INTEGER NOT NULL,\n"
"  has_private_key INTEGER NOT NULL,\n"
"  always_authenticate INTEGER NOT NULL,\n"
"  cert_sha256 TEXT NOT NULL CHECK (length(cert_sha256) = 64),\n"
"  cert_der BLOB NOT NULL,\n"
"  updated_at_ms INTEGER NOT NULL,\n"
"  PRIMARY KEY (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
") STRICT;\n"
"CREATE INDEX device_credentials_by_device\n"
"  ON device_credentials (tenant_id, device_id);\n"
"CREATE INDEX device_sessions_live\n"
"  ON device_sessions (tenant_id, device_id) WHERE closed_at_ms IS NULL;\n";

/*
 * Migration 5 (failover, issue 6): one heartbeat row per replica name
 * (store_devices.h "replicas"). reaped_at_ms: another replica declared the
 * process that started at started_at_ms gone and closed its sessions.
 */
const char qesd_sq_migration_replicas[] =
"CREATE TABLE replicas (\n"
"  name TEXT NOT NULL PRIMARY KEY,\n"
"  started_at_ms INTEGER NOT NULL,\n"
"  last_beat_at_ms INTEGER NOT NULL,\n"
"  reaped_at_ms INTEGER\n"
") STRICT;\n";

#define LIVE_SQL(d) "EXISTS (SELECT 1 FROM device_sessions s " \
	"WHERE s.tenant_id = " d ".tenant_id AND s.device_id = " d ".id " \
	"AND s.closed_at_ms IS NULL)"

/* ---- statements ---- */

#define ENR_COLS "id, tenant_id, code_hash, device_name, created_by_key_id, " \
	"created_at_ms, expires_at_ms, used_at_ms, device_id"
static const char sql_enr_insert[] =
    "INSERT INTO enrollments (" ENR_COLS ") VALUES "
    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL)";
static const char sql_enr_by_code[] =
    "SELECT " ENR_COLS " FROM enrollments WHERE code_hash = ?1";
static const char sql_enr_use[] =
    "UPDATE enrollments SET used_at_ms = ?4, device_id = ?3 "
    "WHERE tenant_id = ?1 AND id = ?2 AND used_at_ms IS NULL";

#define DEV_COLS "d.id, d.tenant_id, d.name, d.public_key, d.enrollment_id, " \
	"d.agent_version, d.os, d.enrolled_at_ms, d.revoked_at_ms, " \
	"d.inventory_at_ms, " LIVE_SQL("d")
static const char sql_dev_insert[] =
    "INSERT INTO devices (id, tenant_id, name, public_key, enrollment_id, "
    "agent_version, os, enrolled_at_ms) VALUES "
    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_dev_get[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.tenant_id = ?1 AND d.id = ?2";
/* authentication: the tenant is what this lookup finds out */
static const char sql_dev_get_auth[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.id = ?1";
static const char sql_dev_list[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.tenant_id = ?1 "
    "AND (d.enrolled_at_ms, d.id) > (?2, ?3) "
    "ORDER BY d.enrolled_at_ms, d.id LIMIT ?4";
static const char sql_dev_revoke[] =
    "UPDATE devices SET revoked_at_ms = ?3 "
    "WHERE tenant_id = ?1 AND id = ?2 AND revoked_at_ms IS NULL";
static const char sql_dev_set_inv[] =
    "UPDATE devices SET inventory = ?3, inventory_at_ms = ?4 "
    "WHERE tenant_id = ?1 AND id = ?2";
static const char sql_dev_get_inv[] =
    "SELECT inventory, inventory_at_ms FROM devices "
    "WHERE tenant_id = ?1 AND id = ?2";

#define CRD_COLS "c.id, c.tenant_id, c.device_id, c.serial, c.key_id_hex, " \
	"c.label, c.token_label, c.subject, c.subject_cn, c.issuer, " \
	"c.cert_serial, c.class, c.not_before_ms, c.not_after_ms, " \
	"c.key_type, c.key_bits, c.curve, c.key_usage, c.qc, " \
	"c.has_private_key, c.always_authenticate, c.cert_sha256, " \
	"c.cert_der, c.updated_at_ms, d.name, d.revoked_at_ms, " LIVE_SQL("d")
static const char sql_crd_delete[] =
    "DELETE FROM device_credentials WHERE tenant_id = ?1 AND device_id = ?2";
static const char sql_crd_insert[] =
    "INSERT OR IGNORE INTO device_credentials (tenant_id, id, device_id, "
    "serial, key_id_hex, label, token_label, subject, subject_cn, issuer, "
    "cert_serial, class, not_before_ms, not_after_ms, key_type, key_bits, "
    "curve, key_usage, qc, has_private_key, always_authenticate, "
    "cert_sha256, cert_der, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
    "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, "
    "?21, ?22, ?23, ?24)";
static const char sql_crd_list[] =
    "SELECT " CRD_COLS " FROM device_credentials c JOIN devices d "
    "ON d.tenant_id = c.tenant_id AND d.id = c.device_id "
    "WHERE c.tenant_id = ?1 AND c.id > ?2 "
    "AND (?3 IS NULL OR c.device_id = ?3) "
    "AND (?4 = 0 OR (d.revoked_at_ms IS NULL AND " LIVE_SQL("d") ")) "
    "ORDER BY c.id LIMIT ?5";
static const char sql_crd_get[] =
    "SELECT " CRD_COLS " FROM device_credentials c JOIN devices d "
    "ON d.tenant_id = c.tenant_id AND d.id = c.device_id "
    "WHERE c.tenant_id = ?1 AND c.id = ?2";

#define SES_COLS "id, tenant_id, device_id, replica_id, agent_version, os, " \
	"client_addr, connected_at_ms, last_seen_at_ms, closed_at_ms, " \
	"close_reason"
/* the device must exist and not be revoked, checked by the same statement */
static const char sql_ses_insert[] =
    "INSERT INTO device_sessions (" SES_COLS ") SELECT ?1, ?2, ?3, ?4, ?5, "
    "?6, ?7, ?8, ?9, NULL, NULL WHERE EXISTS (SELECT 1 FROM devices "
    "WHERE tenant_id = ?2 AND id = ?3 AND revoked_at_ms IS NULL)";
static const char sql_ses_touch[] =
    "UPDATE device_sessions SET last_seen_at_ms = ?3 "
    "WHERE tenant_id = ?1 AND id = ?2 AND closed_at_ms IS NULL "
    "AND last_seen_at_ms < ?3";
static const char sql_ses_close[] =
    "UPDATE device_sessions SET closed_at_ms = ?4, close_reason = ?5, "
    "last_seen_at_ms = max(last_seen_at_ms, ?3) "
    "WHERE tenant_id = ?1 AND id = ?2 AND closed_at_ms IS NULL";
static const char sql_ses_get[] =
    "SELECT " SES_COLS " FROM device_sessions WHERE tenant_id = ?1 AND id = ?2";
static const char sql_ses_list[] =
    "SELECT " SES_COLS " FROM device_sessions "
    "WHERE tenant_id = ?1 AND device_id = ?2 "
    "AND (?3 = 0 OR (connected_at_ms, id) < (?3, ?4)) "
    "ORDER BY connected_at_ms DESC, id DESC LIMIT ?5";
static const char sql_ses_open_replica[] =
    "SELECT " SES_COLS " FROM device_sessions "
    "WHERE replica_id = ?1 AND closed_at_ms IS NULL "
    "ORDER BY last_seen_at_ms LIMIT ?2";
/* a newer process of the same name replaces the row and its mark; an
 * older one (a late beat of a process that was replaced) changes nothing */
static const char sql_rep_beat_read[] =
    "SELECT started_at_ms, reaped_at_ms FROM replicas WHERE name = ?1";
static const char sql_rep_beat[] =
    "INSERT INTO replicas (name, started_at_ms, last_beat_at_ms, "
    "reaped_at_ms) VALUES (?1, ?2, ?3, NULL) ON CONFLICT (name) DO UPDATE "
    "SET started_at_ms = excluded.started_at_ms, last_beat_at_ms = "
    "max(excluded.last_beat_at_ms, CASE WHEN started_at_ms = "
    "excluded.started_at_ms THEN last_beat_at_ms ELSE 0 END), "
    "reaped_at_ms = NULL WHERE excluded.started_at_ms >= "
    "replicas.started_at_ms";
/* ?1 dead before, ?2 orphan before: the one definition of "gone" */
#define LOST_SQL(s) "(EXISTS (SELECT 1 FROM replicas r " \
	"WHERE r.name = " s ".replica_id AND r.last_beat_at_ms < ?1) OR " \
	"(NOT EXISTS (SELECT 1 FROM replicas r WHERE r.name = " s \
	".replica_id) AND " s ".last_seen_at_ms < ?2))"
static const char sql_ses_lost[] =
    "SELECT " SES_COLS " FROM device_sessions s "
    "WHERE s.closed_at_ms IS NULL AND " LOST_SQL("s") " "
    "ORDER BY s.connected_at_ms, s.id LIMIT ?3";
static const char sql_ses_reap[] =
    "UPDATE device_sessions SET closed_at_ms = ?5, "
    "close_reason = 'replica_lost' "
    "WHERE tenant_id = ?3 AND id = ?4 AND closed_at_ms IS NULL AND "
    LOST_SQL("device_sessions");
static const char sql_ses_held[] =
    "SELECT 1 FROM device_sessions s JOIN replicas r ON r.name = s.replica_id "
    "WHERE s.tenant_id = ?1 AND s.id = ?2 AND s.closed_at_ms IS NULL "
    "AND s.replica_id <> ?3 AND r.last_beat_at_ms >= ?4";
static const char sql_ses_closed_jobs[] =
    "SELECT DISTINCT s.id, s.tenant_id, s.device_id FROM jobs j "
    "JOIN device_sessions s ON s.tenant_id = j.tenant_id AND s.id = j.session_id "
    "WHERE j.state IN ('dispatched', 'awaiting_user') "
    "AND s.closed_at_ms IS NOT NULL AND s.closed_at_ms < ?1 "
    "ORDER BY s.id LIMIT ?2";
static const char sql_rep_forget[] =
    "DELETE FROM replicas WHERE last_beat_at_ms < ?1 AND NOT EXISTS "
    "(SELECT 1 FROM device_sessions s WHERE s.replica_id = replicas.name "
    "AND s.closed_at_ms IS NULL)";
static const char sql_rep_mark[] =
    "UPDATE replicas SET reaped_at_ms = ?3 WHERE name = (SELECT replica_id "
    "FROM device_sessions WHERE tenant_id = ?1 AND id = ?2) "
    "AND reaped_at_ms IS NULL";

/* ---- helpers ---- */

/* Bind failed: note it, release the statement. */
static int
bind_fail(qesd_tx *tx, sqlite3_stmt *s, int rc, const char *what)
{
	qesd_sq_done(s);
	return qesd_sq_fail(tx, rc, what);
}

static int
bind_i64(sqlite3_stmt *s, int i, int64_t v)
{
	return sqlite3_bind_int64(s, i, v);
}

/* "" binds NULL (optional ids). */
static int
bind_opt_text(sqlite3_stmt *s, int i, const char *v)
{
	return qesd_sq_bind_text(s, i, v != NULL && v[0] != '\0' ? v : NULL);
}

/* Step for one optional row: 1 a row, 0 none (statement released), or an
 * error (released). */
static int
step_one(qesd_tx *tx, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	qesd_sq_done(s);
	if (rc == SQLITE_DONE)
		return 0;
	return qesd_sq_fail(tx, rc, what);
}

/* Run an UPDATE; NOT_FOUND when it changed no row. */
static int
run_update(qesd_tx *tx, sqlite3_stmt *s, const char *what)
{
	sqlite3 *db = sqlite3_db_handle(s);
	int r;

	if ((r = qesd_sq_run(tx, s, what)) != 0)
		return r;
	return sqlite3_changes(db) > 0 ? 0 : QES_ERR_NOT_FOUND;
}

/* ---- enrollments ---- */

static int
sq_enrollment_insert(qesd_tx *tx, const qesd_enrollment *e)
{
	static const char what[] = "adding enrollment";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_enr_insert, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, e->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, e->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_blob(s, 3, e->code_hash, QESD_HMAC_LEN)) !=
	    SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, e->device_name)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 5, e->created_by)) != SQLITE_OK ||
	    (rc = bind_i64(s, 6, e->created_at_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 7, e->expires_at_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
read_enrollment(sqlite3_stmt *s, qesd_enrollment *e)
{
	if (qesd_sq_col_text(s, 0, e->id, sizeof(e->id), 0) != 0 ||
	    qesd_sq_col_text(s, 1, e->tenant_id, sizeof(e->tenant_id), 0) != 0 ||
	    qesd_sq_col_blob(s, 2, e->code_hash, QESD_HMAC_LEN, NULL) != 0 ||
	    qesd_sq_col_text(s, 3, e->device_name, sizeof(e->device_name),
	    1) != 0 ||
	    qesd_sq_col_text(s, 4, e->created_by, sizeof(e->created_by),
	    1) != 0 ||
	    qesd_sq_col_text(s, 8, e->device_id, sizeof(e->device_id), 1) != 0)
		return -1;
	e->created_at_ms = sqlite3_column_int64(s, 5);
	e->expires_at_ms = sqlite3_column_int64(s, 6);
	e->used_at_ms = qesd_sq_col_opt_i64(s, 7);
	return 0;
}

static int
sq_enrollment_get_by_code(qesd_tx *tx, const uint8_t code_hash[QESD_HMAC_LEN],
    qesd_enrollment *out)
{
	static const char what[] = "reading enrollment";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_enr_by_code, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_blob(s, 1, code_hash, QESD_HMAC_LEN)) !=
	    SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_enrollment(s, out) != 0 ? qesd_sq_corrupt(tx, "enrollments") : 0;
	qesd_sq_done(s);
	return r;
}

static int
sq_enrollment_use(qesd_tx *tx, const char *tenant_id, const char *enrollment_id,
    const char *device_id, int64_t now_ms)
{
	static const char what[] = "using enrollment";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_enr_use, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, enrollment_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, device_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return run_update(tx, s, what);
}

/* ---- devices ---- */

static int
sq_device_insert(qesd_tx *tx, const qesd_device *d)
{
	static const char what[] = "adding device";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_dev_insert, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, d->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, d->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, d->name)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_blob(s, 4, d->public_key, d->public_key_len)) !=
	    SQLITE_OK ||
	    (rc = bind_opt_text(s, 5, d->enrollment_id)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 6, d->agent_version)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 7, d->os)) != SQLITE_OK ||
	    (rc = bind_i64(s, 8, d->enrolled_at_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
read_device(sqlite3_stmt *s, qesd_device *d)
{
	const void *k;
	int klen;

	memset(d, 0, sizeof(*d));
	if (qesd_sq_col_text(s, 0, d->id, sizeof(d->id), 0) != 0 ||
	    qesd_sq_col_text(s, 1, d->tenant_id, sizeof(d->tenant_id), 0) != 0 ||
	    qesd_sq_col_text(s, 2, d->name, sizeof(d->name), 0) != 0 ||
	    qesd_sq_col_text(s, 4, d->enrollment_id, sizeof(d->enrollment_id),
	    1) != 0 ||
	    qesd_sq_col_text(s, 5, d->agent_version, sizeof(d->agent_version),
	    1) != 0 ||
	    qesd_sq_col_text(s, 6, d->os, sizeof(d->os), 1) != 0)
		return -1;
	if (sqlite3_column_type(s, 3) != SQLITE_BLOB ||
	    (klen = sqlite3_column_bytes(s, 3)) <= 0 ||
	    (size_t)klen > sizeof(d->public_key) ||
	    (k = sqlite3_column_blob(s, 3)) == NULL)
		return -1;
	memcpy(d->public_key, k, (size_t)klen);
	d->public_key_len = (size_t)klen;
	d->enrolled_at_ms = sqlite3_column_int64(s, 7);
	d->revoked_at_ms = qesd_sq_col_opt_i64(s, 8);
	d->inventory_at_ms = qesd_sq_col_opt_i64(s, 9);
	d->live = sqlite3_column_int(s, 10) != 0;
	return 0;
}

static int
sq_device_get(qesd_tx *tx, const char *tenant_id, const char *device_id,
    qesd_device *out)
{
	static const char what[] = "reading device";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, tenant_id != NULL ? sql_dev_get :
	    sql_dev_get_auth, &s)) != 0)
		return r;
	if (tenant_id != NULL) {
		if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
		    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK)
			return bind_fail(tx, s, rc, what);
	} else if ((rc = qesd_sq_bind_text(s, 1, device_id)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_device(s, out) != 0 ? qesd_sq_corrupt(tx, "devices") : 0;
	qesd_sq_done(s);
	return r;
}

static int
sq_device_list(qesd_tx *tx, const char *tenant_id, int64_t after_enrolled_ms,
    const char *after_id, size_t limit, qesd_device *out, size_t *n)
{
	static const char what[] = "listing devices";
	sqlite3_stmt *s;
	int rc, r = 0;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_dev_list, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, after_enrolled_ms)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, after_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (read_device(s, &out[*n]) != 0) {
			r = qesd_sq_corrupt(tx, "devices");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = qesd_sq_fail(tx, rc, what);
 out:
	qesd_sq_done(s);
	return r;
}

static int
sq_device_revoke(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int64_t now_ms)
{
	static const char what[] = "revoking device";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_dev_revoke, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return run_update(tx, s, what);
}

static int
insert_credential(qesd_tx *tx, sqlite3_stmt *s, const char *tenant_id,
    const char *device_id, const qesd_credential *c, int64_t now_ms)
{
	static const char what[] = "adding credential";
	int rc;

	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, c->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, device_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, c->serial)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 5, c->key_id_hex)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 6, c->label)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 7, c->token_label)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 8, c->subject)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 9, c->subject_cn)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 10, c->issuer)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 11, c->cert_serial_hex)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 12, c->classification)) != SQLITE_OK ||
	    (rc = bind_i64(s, 13, c->not_before_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 14, c->not_after_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 15, (int64_t)c->key_type)) != SQLITE_OK ||
	    (rc = bind_i64(s, 16, (int64_t)c->key_bits)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 17, c->curve)) != SQLITE_OK ||
	    (rc = bind_i64(s, 18, (int64_t)c->key_usage)) != SQLITE_OK ||
	    (rc = bind_i64(s, 19, (int64_t)c->qc)) != SQLITE_OK ||
	    (rc = bind_i64(s, 20, c->has_private_key)) != SQLITE_OK ||
	    (rc = bind_i64(s, 21, c->always_authenticate)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 22, c->cert_sha256_hex)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_blob(s, 23, c->cert_der, c->cert_der_len)) !=
	    SQLITE_OK ||
	    (rc = bind_i64(s, 24, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
sq_device_set_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *inventory_json,
    const qesd_credential *creds, size_t n, int64_t now_ms)
{
	static const char what[] = "storing inventory";
	sqlite3_stmt *s;
	size_t i;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_dev_set_inv, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, inventory_json)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = run_update(tx, s, what)) != 0)
		return r;
	if ((r = qesd_sq_stmt(tx, sql_crd_delete, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = qesd_sq_run(tx, s, what)) != 0)
		return r;
	if (n > 0 && (r = qesd_sq_stmt(tx, sql_crd_insert, &s)) != 0)
		return r;
	/* the same certificate twice on one token has one id: kept once */
	for (i = 0; i < n; i++)
		if ((r = insert_credential(tx, s, tenant_id, device_id, &creds[i],
		    now_ms)) != 0)
			return r;
	return 0;
}

static int
sq_device_get_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, char **json, int64_t *at_ms)
{
	static const char what[] = "reading inventory";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_dev_get_inv, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = qesd_sq_col_dup(s, 0, QESD_INVENTORY_MAX, json);
	if (r == -1)
		r = qesd_sq_corrupt(tx, "devices");
	*at_ms = qesd_sq_col_opt_i64(s, 1);
	qesd_sq_done(s);
	return r;
}

/* ---- credentials ---- */

static int
dup_col(sqlite3_stmt *s, int i, char **out)
{
	int r = qesd_sq_col_dup(s, i, QES_PROTO_REPORT_STR_MAX, out);

	if (r != 0)
		return r;
	if (*out == NULL)
		return -1;
	return 0;
}

/* 0, -1 malformed, QES_ERR_ALLOC */
static int
read_credential(sqlite3_stmt *s, qesd_credential *c)
{
	const void *der;
	int64_t kt, bits, ku, qc, hpk;
	int len, r;

	memset(c, 0, sizeof(*c));
	if (qesd_sq_col_text(s, 0, c->id, sizeof(c->id), 0) != 0 ||
	    qesd_sq_col_text(s, 1, c->tenant_id, sizeof(c->tenant_id), 0) != 0 ||
	    qesd_sq_col_text(s, 2, c->device_id, sizeof(c->device_id), 0) != 0 ||
	    qesd_sq_col_text(s, 3, c->serial, sizeof(c->serial), 0) != 0 ||
	    qesd_sq_col_text(s, 4, c->key_id_hex, sizeof(c->key_id_hex), 0) != 0 ||
	    qesd_sq_col_text(s, 10, c->cert_serial_hex,
	    sizeof(c->cert_serial_hex), 0) != 0 ||
	    qesd_sq_col_text(s, 11, c->classification,
	    sizeof(c->classification), 0) != 0 ||
	    qesd_sq_col_text(s, 16, c->curve, sizeof(c->curve), 0) != 0 ||
	    qesd_sq_col_text(s, 21, c->cert_sha256_hex,
	    sizeof(c->cert_sha256_hex), 0) != 0 ||
	    qesd_sq_col_text(s, 24, c->device_name, sizeof(c->device_name),
	    0) != 0)
		return -1;
	if ((r = dup_col(s, 5, &c->label)) != 0 ||
	    (r = dup_col(s, 6, &c->token_label)) != 0 ||
	    (r = dup_col(s, 7, &c->subject)) != 0 ||
	    (r = dup_col(s, 8, &c->subject_cn)) != 0 ||
	    (r = dup_col(s, 9, &c->issuer)) != 0)
		return r;
	c->not_before_ms = sqlite3_column_int64(s, 12);
	c->not_after_ms = sqlite3_column_int64(s, 13);
	kt = sqlite3_column_int64(s, 14);
	bits = sqlite3_column_int64(s, 15);
	ku = sqlite3_column_int64(s, 17);
	qc = sqlite3_column_int64(s, 18);
	hpk = sqlite3_column_int64(s, 19);
	if (kt < 0 || kt > QES_KEY_EC || bits < 0 || bits > 65536 || ku < 0 ||
	    ku > 0xffff || qc < 0 || qc > 0xff || hpk < -1 || hpk > 1)
		return -1;
	c->key_type = (qes_key_type)kt;
	c->key_bits = (unsigned)bits;
	c->key_usage = (unsigned)ku;
	c->qc = (unsigned)qc;
	c->has_private_key = (int)hpk;
	c->always_authenticate = sqlite3_column_int(s, 20) != 0;
	if (sqlite3_column_type(s, 22) != SQLITE_BLOB ||
	    (len = sqlite3_column_bytes(s, 22)) <= 0 ||
	    len > QES_PROTO_CERT_DER_MAX ||
	    (der = sqlite3_column_blob(s, 22)) == NULL)
		return -1;
	if ((c->cert_der = malloc((size_t)len)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(c->cert_der, der, (size_t)len);
	c->cert_der_len = (size_t)len;
	c->updated_at_ms = sqlite3_column_int64(s, 23);
	c->device_revoked_at_ms = qesd_sq_col_opt_i64(s, 25);
	c->device_live = sqlite3_column_int(s, 26) != 0;
	return 0;
}

static int
sq_credential_list(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int live_only, const char *after_id, size_t limit, qesd_credential *out,
    size_t *n)
{
	static const char what[] = "listing credentials";
	sqlite3_stmt *s;
	int rc, r = 0, rr;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_crd_list, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, after_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, device_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, live_only ? 1 : 0)) != SQLITE_OK ||
	    (rc = bind_i64(s, 5, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rr = read_credential(s, &out[*n])) != 0) {
			qesd_credential_clear(&out[*n]);
			r = rr == QES_ERR_ALLOC ? rr :
			    qesd_sq_corrupt(tx, "device_credentials");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = qesd_sq_fail(tx, rc, what);
 out:
	qesd_sq_done(s);
	if (r != 0)
		while (*n > 0)
			qesd_credential_clear(&out[--(*n)]);
	return r;
}

static int
sq_credential_get(qesd_tx *tx, const char *tenant_id, const char *credential_id,
    qesd_credential *out)
{
	static const char what[] = "reading credential";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_crd_get, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, credential_id)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	if ((r = read_credential(s, out)) != 0) {
		qesd_credential_clear(out);
		if (r != QES_ERR_ALLOC)
			r = qesd_sq_corrupt(tx, "device_credentials");
	}
	qesd_sq_done(s);
	return r;
}

/* ---- sessions ---- */

static int
sq_session_insert(qesd_tx *tx, const qesd_device_session *ds)
{
	static const char what[] = "adding device session";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_insert, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, ds->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, ds->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, ds->device_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, ds->replica)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 5, ds->agent_version)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 6, ds->os)) != SQLITE_OK ||
	    (rc = bind_opt_text(s, 7, ds->client_addr)) != SQLITE_OK ||
	    (rc = bind_i64(s, 8, ds->connected_at_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 9, ds->last_seen_at_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return run_update(tx, s, what);
}

static int
sq_session_touch(qesd_tx *tx, const qesd_session_seen *seen)
{
	static const char what[] = "recording device last seen";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_touch, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, seen->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, seen->session_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, seen->last_seen_at_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
sq_session_close(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t last_seen_at_ms, int64_t now_ms, const char *reason)
{
	static const char what[] = "closing device session";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_close, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, session_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, last_seen_at_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, now_ms)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 5, reason)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return run_update(tx, s, what);
}

static int
read_session(sqlite3_stmt *s, qesd_device_session *ds)
{
	memset(ds, 0, sizeof(*ds));
	if (qesd_sq_col_text(s, 0, ds->id, sizeof(ds->id), 0) != 0 ||
	    qesd_sq_col_text(s, 1, ds->tenant_id, sizeof(ds->tenant_id), 0) != 0 ||
	    qesd_sq_col_text(s, 2, ds->device_id, sizeof(ds->device_id), 0) != 0 ||
	    qesd_sq_col_text(s, 3, ds->replica, sizeof(ds->replica), 0) != 0 ||
	    qesd_sq_col_text(s, 4, ds->agent_version, sizeof(ds->agent_version),
	    1) != 0 ||
	    qesd_sq_col_text(s, 5, ds->os, sizeof(ds->os), 1) != 0 ||
	    qesd_sq_col_text(s, 6, ds->client_addr, sizeof(ds->client_addr),
	    1) != 0 ||
	    qesd_sq_col_text(s, 10, ds->close_reason, sizeof(ds->close_reason),
	    1) != 0)
		return -1;
	ds->connected_at_ms = sqlite3_column_int64(s, 7);
	ds->last_seen_at_ms = sqlite3_column_int64(s, 8);
	ds->closed_at_ms = qesd_sq_col_opt_i64(s, 9);
	return 0;
}

static int
sq_session_get(qesd_tx *tx, const char *tenant_id, const char *session_id,
    qesd_device_session *out)
{
	static const char what[] = "reading device session";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_get, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, session_id)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_session(s, out) != 0 ?
	    qesd_sq_corrupt(tx, "device_sessions") : 0;
	qesd_sq_done(s);
	return r;
}

/* Rows of a bound session query into out. */
static int
read_sessions(qesd_tx *tx, sqlite3_stmt *s, size_t limit,
    qesd_device_session *out, size_t *n, const char *what)
{
	int rc = SQLITE_DONE, r = 0;

	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (read_session(s, &out[*n]) != 0) {
			r = qesd_sq_corrupt(tx, "device_sessions");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = qesd_sq_fail(tx, rc, what);
 out:
	qesd_sq_done(s);
	return r;
}

static int
sq_session_list(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int64_t before_ms, const char *before_id, size_t limit,
    qesd_device_session *out, size_t *n)
{
	static const char what[] = "listing device sessions";
	sqlite3_stmt *s;
	int rc, r;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_ses_list, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, device_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, before_ms)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, before_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 5, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return read_sessions(tx, s, limit, out, n, what);
}

static int
sq_sessions_open_on_replica(qesd_tx *tx, const char *replica, size_t limit,
    qesd_device_session *out, size_t *n)
{
	static const char what[] = "listing open device sessions";
	sqlite3_stmt *s;
	int rc, r;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_ses_open_replica, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, replica)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return read_sessions(tx, s, limit, out, n, what);
}

/* ---- replicas ---- */

static int
sq_replica_beat(qesd_tx *tx, const char *replica, int64_t started_at_ms,
    int64_t now_ms, int *reaped)
{
	static const char what[] = "recording the replica heartbeat";
	sqlite3_stmt *s;
	int rc, r;

	*reaped = 0;
	if ((r = qesd_sq_stmt(tx, sql_rep_beat_read, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, replica)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) < 0)
		return r;
	if (r == 1) {
		*reaped = sqlite3_column_int64(s, 0) == started_at_ms &&
		    sqlite3_column_type(s, 1) != SQLITE_NULL;
		qesd_sq_done(s);
	}
	if ((r = qesd_sq_stmt(tx, sql_rep_beat, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, replica)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, started_at_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
sq_sessions_of_lost_replicas(qesd_tx *tx, int64_t dead_before_ms,
    int64_t orphan_before_ms, size_t limit, qesd_device_session *out,
    size_t *n)
{
	static const char what[] = "listing sessions of lost replicas";
	sqlite3_stmt *s;
	int rc, r;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_ses_lost, &s)) != 0)
		return r;
	if ((rc = bind_i64(s, 1, dead_before_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, orphan_before_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return read_sessions(tx, s, limit, out, n, what);
}

static int
sq_session_reap(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t dead_before_ms, int64_t orphan_before_ms, int64_t now_ms)
{
	static const char what[] = "closing a session of a lost replica";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_reap, &s)) != 0)
		return r;
	if ((rc = bind_i64(s, 1, dead_before_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, orphan_before_ms)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, session_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 5, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = run_update(tx, s, what)) != 0)
		return r;
	if ((r = qesd_sq_stmt(tx, sql_rep_mark, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, session_id)) != SQLITE_OK ||
	    (rc = bind_i64(s, 3, now_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	return qesd_sq_run(tx, s, what);
}

static int
sq_session_held_elsewhere(qesd_tx *tx, const char *tenant_id,
    const char *session_id, const char *replica, int64_t alive_after_ms,
    int *held)
{
	static const char what[] = "looking up a session's replica";
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_ses_held, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, session_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, replica)) != SQLITE_OK ||
	    (rc = bind_i64(s, 4, alive_after_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = step_one(tx, s, what)) < 0)
		return r;
	if (r == 1)
		qesd_sq_done(s);
	*held = r;
	return 0;
}

static int
sq_sessions_closed_with_jobs(qesd_tx *tx, int64_t closed_before_ms,
    size_t limit, qesd_device_session *out, size_t *n)
{
	static const char what[] = "listing closed sessions with jobs";
	sqlite3_stmt *s;
	int rc, r;

	*n = 0;
	if ((r = qesd_sq_stmt(tx, sql_ses_closed_jobs, &s)) != 0)
		return r;
	if ((rc = bind_i64(s, 1, closed_before_ms)) != SQLITE_OK ||
	    (rc = bind_i64(s, 2, (int64_t)limit)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&out[*n], 0, sizeof(out[*n]));
		if (qesd_sq_col_text(s, 0, out[*n].id, sizeof(out[*n].id), 0) != 0 ||
		    qesd_sq_col_text(s, 1, out[*n].tenant_id,
		    sizeof(out[*n].tenant_id), 0) != 0 ||
		    qesd_sq_col_text(s, 2, out[*n].device_id,
		    sizeof(out[*n].device_id), 0) != 0) {
			qesd_sq_done(s);
			return qesd_sq_corrupt(tx, "device_sessions");
		}
		(*n)++;
	}
	r = *n < limit && rc != SQLITE_DONE ? qesd_sq_fail(tx, rc, what) : 0;
	qesd_sq_done(s);
	return r;
}

static int
sq_replicas_forget(qesd_tx *tx, int64_t before_ms, uint64_t *n)
{
	static const char what[] = "dropping rows of replicas long gone";
	sqlite3_stmt *s;
	sqlite3 *db;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_rep_forget, &s)) != 0)
		return r;
	db = sqlite3_db_handle(s);
	if ((rc = bind_i64(s, 1, before_ms)) != SQLITE_OK)
		return bind_fail(tx, s, rc, what);
	if ((r = qesd_sq_run(tx, s, what)) != 0)
		return r;
	*n = (uint64_t)sqlite3_changes(db);
	return 0;
}

const struct qesd_store_device_ops qesd_store_sqlite_device_ops = {
	.enrollment_insert = sq_enrollment_insert,
	.enrollment_get_by_code = sq_enrollment_get_by_code,
	.enrollment_use = sq_enrollment_use,
	.device_insert = sq_device_insert,
	.device_get = sq_device_get,
	.device_list = sq_device_list,
	.device_revoke = sq_device_revoke,
	.device_set_inventory = sq_device_set_inventory,
	.device_get_inventory = sq_device_get_inventory,
	.credential_list = sq_credential_list,
	.credential_get = sq_credential_get,
	.session_insert = sq_session_insert,
	.session_touch = sq_session_touch,
	.session_close = sq_session_close,
	.session_get = sq_session_get,
	.session_list = sq_session_list,
	.sessions_open_on_replica = sq_sessions_open_on_replica,
	.replica_beat = sq_replica_beat,
	.sessions_of_lost_replicas = sq_sessions_of_lost_replicas,
	.session_reap = sq_session_reap,
	.session_held_elsewhere = sq_session_held_elsewhere,
	.sessions_closed_with_jobs = sq_sessions_closed_with_jobs,
	.replicas_forget = sq_replicas_forget,
};
