/*
 * store_pg_devices.c - the PostgreSQL rows of the device channel:
 * enrollments, devices, inventories and credentials, device sessions
 * (store_devices.h), and migration 3, the same as SQLite's.
 *
 * Every statement filters by tenant_id except the named lookups of
 * store_devices.h. "Live" means an open row in device_sessions
 * (closed_at_ms IS NULL): the one view every replica shares.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "qes/err.h"
#include "store.h"
#include "store_devices.h"
#include "store_pg.h"

const char qesd_pg_migration_devices[] =
"ALTER TABLE devices ADD COLUMN agent_version text;\n"
"ALTER TABLE devices ADD COLUMN os text;\n"
"CREATE TABLE device_credentials (\n"
"  tenant_id text NOT NULL,\n"
"  id text NOT NULL,\n"
"  device_id text NOT NULL,\n"
"  serial text NOT NULL,\n"
"  key_id_hex text NOT NULL,\n"
"  label text NOT NULL,\n"
"  token_label text NOT NULL,\n"
"  subject text NOT NULL,\n"
"  subject_cn text NOT NULL,\n"
"  issuer text NOT NULL,\n"
"  cert_serial text NOT NULL,\n"
"  class text NOT NULL,\n"
"  not_before_ms bigint NOT NULL,\n"
"  not_after_ms bigint NOT NULL,\n"
"  key_type bigint NOT NULL,\n"
"  key_bits bigint NOT NULL,\n"
"  curve text NOT NULL,\n"
"  key_usage bigint NOT NULL,\n"
"  qc bigint NOT NULL,\n"
"  has_private_key bigint NOT NULL,\n"
"  always_authenticate bigint NOT NULL,\n"
"  cert_sha256 text NOT NULL CHECK (length(cert_sha256) = 64),\n"
"  cert_der bytea NOT NULL,\n"
"  updated_at_ms bigint NOT NULL,\n"
"  PRIMARY KEY (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
");\n"
"CREATE INDEX device_credentials_by_device\n"
"  ON device_credentials (tenant_id, device_id);\n"
"CREATE INDEX device_sessions_live\n"
"  ON device_sessions (tenant_id, device_id) WHERE closed_at_ms IS NULL;\n";

#define LIVE_SQL(d) "EXISTS (SELECT 1 FROM device_sessions s " \
	"WHERE s.tenant_id = " d ".tenant_id AND s.device_id = " d ".id " \
	"AND s.closed_at_ms IS NULL)"

#define ENR_COLS "id, tenant_id, code_hash, device_name, created_by_key_id, " \
	"created_at_ms, expires_at_ms, used_at_ms, device_id"
static const char sql_enr_insert[] =
    "INSERT INTO enrollments (" ENR_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, NULL, NULL)";
static const char sql_enr_by_code[] =
    "SELECT " ENR_COLS " FROM enrollments WHERE code_hash = $1";
static const char sql_enr_use[] =
    "UPDATE enrollments SET used_at_ms = $4, device_id = $3 "
    "WHERE tenant_id = $1 AND id = $2 AND used_at_ms IS NULL";

#define DEV_COLS "d.id, d.tenant_id, d.name, d.public_key, d.enrollment_id, " \
	"d.agent_version, d.os, d.enrolled_at_ms, d.revoked_at_ms, " \
	"d.inventory_at_ms, " LIVE_SQL("d")
static const char sql_dev_insert[] =
    "INSERT INTO devices (id, tenant_id, name, public_key, enrollment_id, "
    "agent_version, os, enrolled_at_ms) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8)";
static const char sql_dev_get[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.tenant_id = $1 AND d.id = $2";
/* authentication: the tenant is what this lookup finds out */
static const char sql_dev_get_auth[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.id = $1";
static const char sql_dev_list[] =
    "SELECT " DEV_COLS " FROM devices d WHERE d.tenant_id = $1 "
    "AND (d.enrolled_at_ms, d.id) > ($2, $3) "
    "ORDER BY d.enrolled_at_ms, d.id LIMIT $4";
static const char sql_dev_revoke[] =
    "UPDATE devices SET revoked_at_ms = $3 "
    "WHERE tenant_id = $1 AND id = $2 AND revoked_at_ms IS NULL";
static const char sql_dev_set_inv[] =
    "UPDATE devices SET inventory = $3, inventory_at_ms = $4 "
    "WHERE tenant_id = $1 AND id = $2";
static const char sql_dev_get_inv[] =
    "SELECT inventory, inventory_at_ms FROM devices "
    "WHERE tenant_id = $1 AND id = $2";

#define CRD_COLS "c.id, c.tenant_id, c.device_id, c.serial, c.key_id_hex, " \
	"c.label, c.token_label, c.subject, c.subject_cn, c.issuer, " \
	"c.cert_serial, c.class, c.not_before_ms, c.not_after_ms, " \
	"c.key_type, c.key_bits, c.curve, c.key_usage, c.qc, " \
	"c.has_private_key, c.always_authenticate, c.cert_sha256, " \
	"c.cert_der, c.updated_at_ms, d.name, d.revoked_at_ms, " LIVE_SQL("d")
static const char sql_crd_delete[] =
    "DELETE FROM device_credentials WHERE tenant_id = $1 AND device_id = $2";
static const char sql_crd_insert[] =
    "INSERT INTO device_credentials (tenant_id, id, device_id, "
    "serial, key_id_hex, label, token_label, subject, subject_cn, issuer, "
    "cert_serial, class, not_before_ms, not_after_ms, key_type, key_bits, "
    "curve, key_usage, qc, has_private_key, always_authenticate, "
    "cert_sha256, cert_der, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, "
    "$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, "
    "$21, $22, $23, $24) ON CONFLICT DO NOTHING";
static const char sql_crd_list[] =
    "SELECT " CRD_COLS " FROM device_credentials c JOIN devices d "
    "ON d.tenant_id = c.tenant_id AND d.id = c.device_id "
    "WHERE c.tenant_id = $1 AND c.id > $2 "
    "AND ($3::text IS NULL OR c.device_id = $3) "
    "AND ($4 = 0 OR (d.revoked_at_ms IS NULL AND " LIVE_SQL("d") ")) "
    "ORDER BY c.id LIMIT $5";
static const char sql_crd_get[] =
    "SELECT " CRD_COLS " FROM device_credentials c JOIN devices d "
    "ON d.tenant_id = c.tenant_id AND d.id = c.device_id "
    "WHERE c.tenant_id = $1 AND c.id = $2";

#define SES_COLS "id, tenant_id, device_id, replica_id, agent_version, os, " \
	"client_addr, connected_at_ms, last_seen_at_ms, closed_at_ms, " \
	"close_reason"
/* the device must exist and not be revoked, checked by the same statement */
static const char sql_ses_insert[] =
    "INSERT INTO device_sessions (" SES_COLS ") SELECT $1, $2, $3, $4, $5, "
    "$6, $7, $8, $9, NULL, NULL WHERE EXISTS (SELECT 1 FROM devices "
    "WHERE tenant_id = $2 AND id = $3 AND revoked_at_ms IS NULL)";
static const char sql_ses_touch[] =
    "UPDATE device_sessions SET last_seen_at_ms = $3 "
    "WHERE tenant_id = $1 AND id = $2 AND closed_at_ms IS NULL "
    "AND last_seen_at_ms < $3";
static const char sql_ses_close[] =
    "UPDATE device_sessions SET closed_at_ms = $4, close_reason = $5, "
    "last_seen_at_ms = greatest(last_seen_at_ms, $3) "
    "WHERE tenant_id = $1 AND id = $2 AND closed_at_ms IS NULL";
static const char sql_ses_get[] =
    "SELECT " SES_COLS " FROM device_sessions WHERE tenant_id = $1 AND id = $2";
static const char sql_ses_list[] =
    "SELECT " SES_COLS " FROM device_sessions "
    "WHERE tenant_id = $1 AND device_id = $2 "
    "AND ($3 = 0 OR (connected_at_ms, id) < ($3, $4)) "
    "ORDER BY connected_at_ms DESC, id DESC LIMIT $5";
static const char sql_ses_open_replica[] =
    "SELECT " SES_COLS " FROM device_sessions "
    "WHERE replica_id = $1 AND closed_at_ms IS NULL "
    "ORDER BY last_seen_at_ms LIMIT $2";

/*
 * Migration 5 (failover, issue 6): store_sqlite_devices.c's replicas
 * table in PostgreSQL's words.
 */
const char qesd_pg_migration_replicas[] =
"CREATE TABLE replicas (\n"
"  name text NOT NULL PRIMARY KEY,\n"
"  started_at_ms bigint NOT NULL,\n"
"  last_beat_at_ms bigint NOT NULL,\n"
"  reaped_at_ms bigint\n"
");\n";

/* the row as it was before this beat: FOR UPDATE orders concurrent beats;
 * a newer process of the same name replaces the row and its mark, an older
 * one (a late beat of a process that was replaced) changes nothing */
static const char sql_rep_beat_read[] =
    "SELECT started_at_ms, reaped_at_ms FROM replicas WHERE name = $1 "
    "FOR UPDATE";
static const char sql_rep_beat[] =
    "INSERT INTO replicas (name, started_at_ms, last_beat_at_ms, "
    "reaped_at_ms) VALUES ($1, $2, $3, NULL) ON CONFLICT (name) DO UPDATE "
    "SET started_at_ms = excluded.started_at_ms, last_beat_at_ms = "
    "greatest(excluded.last_beat_at_ms, CASE WHEN replicas.started_at_ms = "
    "excluded.started_at_ms THEN replicas.last_beat_at_ms ELSE 0 END), "
    "reaped_at_ms = NULL WHERE excluded.started_at_ms >= "
    "replicas.started_at_ms";
/* $1 dead before, $2 orphan before: the one definition of "gone" */
#define LOST_SQL(s) "(EXISTS (SELECT 1 FROM replicas r " \
	"WHERE r.name = " s ".replica_id AND r.last_beat_at_ms < $1) OR " \
	"(NOT EXISTS (SELECT 1 FROM replicas r WHERE r.name = " s \
	".replica_id) AND " s ".last_seen_at_ms < $2))"
static const char sql_ses_lost[] =
    "SELECT " SES_COLS " FROM device_sessions s "
    "WHERE s.closed_at_ms IS NULL AND " LOST_SQL("s") " "
    "ORDER BY s.connected_at_ms, s.id LIMIT $3";
/* two reapers: the second waits for the first's row lock, then finds the
 * session closed and changes nothing */
static const char sql_ses_reap[] =
    "UPDATE device_sessions SET closed_at_ms = $5, "
    "close_reason = 'replica_lost' "
    "WHERE tenant_id = $3 AND id = $4 AND closed_at_ms IS NULL AND "
    LOST_SQL("device_sessions");
static const char sql_ses_held[] =
    "SELECT 1 FROM device_sessions s JOIN replicas r ON r.name = s.replica_id "
    "WHERE s.tenant_id = $1 AND s.id = $2 AND s.closed_at_ms IS NULL "
    "AND s.replica_id <> $3 AND r.last_beat_at_ms >= $4";
static const char sql_ses_closed_jobs[] =
    "SELECT DISTINCT s.id, s.tenant_id, s.device_id FROM jobs j "
    "JOIN device_sessions s ON s.tenant_id = j.tenant_id AND s.id = j.session_id "
    "WHERE j.state IN ('dispatched', 'awaiting_user') "
    "AND s.closed_at_ms IS NOT NULL AND s.closed_at_ms < $1 "
    "ORDER BY s.id LIMIT $2";
static const char sql_rep_forget[] =
    "DELETE FROM replicas WHERE last_beat_at_ms < $1 AND NOT EXISTS "
    "(SELECT 1 FROM device_sessions s WHERE s.replica_id = replicas.name "
    "AND s.closed_at_ms IS NULL)";
static const char sql_rep_mark[] =
    "UPDATE replicas SET reaped_at_ms = $3 WHERE name = (SELECT replica_id "
    "FROM device_sessions WHERE tenant_id = $1 AND id = $2) "
    "AND reaped_at_ms IS NULL";

/* An UPDATE (or INSERT ... SELECT); NOT_FOUND when it changed no row. */
static int
run_update(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    const char *what)
{
	uint64_t changed = 0;
	int r;

	if ((r = qesd_pg_exec(tx, sql, p, what, NULL, &changed)) != 0)
		return r;
	return changed > 0 ? 0 : QES_ERR_NOT_FOUND;
}

/* One optional row: 1 and *res, 0 none, or an error. */
static int
query_one(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    const char *what, PGresult **res)
{
	int r;

	if ((r = qesd_pg_exec(tx, sql, p, what, res, NULL)) != 0)
		return r;
	if (PQntuples(*res) == 0) {
		PQclear(*res);
		*res = NULL;
		return 0;
	}
	return 1;
}

/* ---- enrollments ---- */

static int
pg_enrollment_insert(qesd_tx *tx, const qesd_enrollment *e)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, e->id);
	qesd_pg_text(&p, e->tenant_id);
	qesd_pg_blob(&p, e->code_hash, QESD_HMAC_LEN);
	qesd_pg_text(&p, e->device_name);
	qesd_pg_opt_text(&p, e->created_by);
	qesd_pg_i64(&p, e->created_at_ms);
	qesd_pg_i64(&p, e->expires_at_ms);
	return qesd_pg_exec(tx, sql_enr_insert, &p, "adding enrollment", NULL,
	    NULL);
}

static int
read_enrollment(const PGresult *res, qesd_enrollment *e)
{
	if (qesd_pg_col_text(res, 0, 0, e->id, sizeof(e->id), 0) != 0 ||
	    qesd_pg_col_text(res, 0, 1, e->tenant_id, sizeof(e->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_blob(res, 0, 2, e->code_hash, QESD_HMAC_LEN, NULL) != 0 ||
	    qesd_pg_col_text(res, 0, 3, e->device_name, sizeof(e->device_name),
	    1) != 0 ||
	    qesd_pg_col_text(res, 0, 4, e->created_by, sizeof(e->created_by),
	    1) != 0 ||
	    qesd_pg_col_i64(res, 0, 5, 0, &e->created_at_ms) != 0 ||
	    qesd_pg_col_i64(res, 0, 6, 0, &e->expires_at_ms) != 0 ||
	    qesd_pg_col_i64(res, 0, 7, 1, &e->used_at_ms) != 0 ||
	    qesd_pg_col_text(res, 0, 8, e->device_id, sizeof(e->device_id),
	    1) != 0)
		return -1;
	return 0;
}

static int
pg_enrollment_get_by_code(qesd_tx *tx, const uint8_t code_hash[QESD_HMAC_LEN],
    qesd_enrollment *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	qesd_pg_blob(&p, code_hash, QESD_HMAC_LEN);
	if ((r = query_one(tx, sql_enr_by_code, &p, "reading enrollment",
	    &res)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_enrollment(res, out) != 0 ?
	    qesd_pg_corrupt(tx, "enrollments") : 0;
	PQclear(res);
	return r;
}

static int
pg_enrollment_use(qesd_tx *tx, const char *tenant_id, const char *enrollment_id,
    const char *device_id, int64_t now_ms)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, enrollment_id);
	qesd_pg_text(&p, device_id);
	qesd_pg_i64(&p, now_ms);
	return run_update(tx, sql_enr_use, &p, "using enrollment");
}

/* ---- devices ---- */

static int
pg_device_insert(qesd_tx *tx, const qesd_device *d)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, d->id);
	qesd_pg_text(&p, d->tenant_id);
	qesd_pg_text(&p, d->name);
	qesd_pg_blob(&p, d->public_key, d->public_key_len);
	qesd_pg_opt_text(&p, d->enrollment_id);
	qesd_pg_opt_text(&p, d->agent_version);
	qesd_pg_opt_text(&p, d->os);
	qesd_pg_i64(&p, d->enrolled_at_ms);
	return qesd_pg_exec(tx, sql_dev_insert, &p, "adding device", NULL,
	    NULL);
}

static int
read_device(const PGresult *res, int row, qesd_device *d)
{
	int live;

	memset(d, 0, sizeof(*d));
	if (qesd_pg_col_text(res, row, 0, d->id, sizeof(d->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, d->tenant_id, sizeof(d->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, d->name, sizeof(d->name), 0) != 0 ||
	    qesd_pg_col_var_blob(res, row, 3, d->public_key,
	    sizeof(d->public_key), &d->public_key_len) != 0 ||
	    qesd_pg_col_text(res, row, 4, d->enrollment_id,
	    sizeof(d->enrollment_id), 1) != 0 ||
	    qesd_pg_col_text(res, row, 5, d->agent_version,
	    sizeof(d->agent_version), 1) != 0 ||
	    qesd_pg_col_text(res, row, 6, d->os, sizeof(d->os), 1) != 0 ||
	    qesd_pg_col_i64(res, row, 7, 0, &d->enrolled_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 8, 1, &d->revoked_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 9, 1, &d->inventory_at_ms) != 0 ||
	    (live = qesd_pg_col_bool(res, row, 10)) < 0)
		return -1;
	d->live = live;
	return 0;
}

static int
pg_device_get(qesd_tx *tx, const char *tenant_id, const char *device_id,
    qesd_device *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	if (tenant_id != NULL)
		qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	if ((r = query_one(tx, tenant_id != NULL ? sql_dev_get :
	    sql_dev_get_auth, &p, "reading device", &res)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_device(res, 0, out) != 0 ? qesd_pg_corrupt(tx, "devices") : 0;
	PQclear(res);
	return r;
}

static int
pg_device_list(qesd_tx *tx, const char *tenant_id, int64_t after_enrolled_ms,
    const char *after_id, size_t limit, qesd_device *out, size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r, i;

	*n = 0;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, after_enrolled_ms);
	qesd_pg_text(&p, after_id);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, sql_dev_list, &p, "listing devices", &res,
	    NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if (read_device(res, i, &out[*n]) != 0) {
			r = qesd_pg_corrupt(tx, "devices");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	return r;
}

static int
pg_device_revoke(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int64_t now_ms)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	qesd_pg_i64(&p, now_ms);
	return run_update(tx, sql_dev_revoke, &p, "revoking device");
}

static int
insert_credential(qesd_tx *tx, const char *tenant_id, const char *device_id,
    const qesd_credential *c, int64_t now_ms)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, c->id);
	qesd_pg_text(&p, device_id);
	qesd_pg_text(&p, c->serial);
	qesd_pg_text(&p, c->key_id_hex);
	qesd_pg_text(&p, c->label);
	qesd_pg_text(&p, c->token_label);
	qesd_pg_text(&p, c->subject);
	qesd_pg_text(&p, c->subject_cn);
	qesd_pg_text(&p, c->issuer);
	qesd_pg_text(&p, c->cert_serial_hex);
	qesd_pg_text(&p, c->classification);
	qesd_pg_i64(&p, c->not_before_ms);
	qesd_pg_i64(&p, c->not_after_ms);
	qesd_pg_i64(&p, (int64_t)c->key_type);
	qesd_pg_i64(&p, (int64_t)c->key_bits);
	qesd_pg_text(&p, c->curve);
	qesd_pg_i64(&p, (int64_t)c->key_usage);
	qesd_pg_i64(&p, (int64_t)c->qc);
	qesd_pg_i64(&p, c->has_private_key);
	qesd_pg_i64(&p, c->always_authenticate);
	qesd_pg_text(&p, c->cert_sha256_hex);
	qesd_pg_blob(&p, c->cert_der, c->cert_der_len);
	qesd_pg_i64(&p, now_ms);
	return qesd_pg_exec(tx, sql_crd_insert, &p, "adding credential", NULL,
	    NULL);
}

static int
pg_device_set_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *inventory_json,
    const qesd_credential *creds, size_t n, int64_t now_ms)
{
	static const char what[] = "storing inventory";
	qesd_pg_params p = { 0 };
	size_t i;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	qesd_pg_text(&p, inventory_json);
	qesd_pg_i64(&p, now_ms);
	if ((r = run_update(tx, sql_dev_set_inv, &p, what)) != 0)
		return r;
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	if ((r = qesd_pg_exec(tx, sql_crd_delete, &p, what, NULL, NULL)) != 0)
		return r;
	/* the same certificate twice on one token has one id: kept once */
	for (i = 0; i < n; i++)
		if ((r = insert_credential(tx, tenant_id, device_id, &creds[i],
		    now_ms)) != 0)
			return r;
	return 0;
}

static int
pg_device_get_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, char **json, int64_t *at_ms)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	if ((r = query_one(tx, sql_dev_get_inv, &p, "reading inventory",
	    &res)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = qesd_pg_col_dup(res, 0, 0, QESD_INVENTORY_MAX, json);
	if (r == 0 && qesd_pg_col_i64(res, 0, 1, 1, at_ms) != 0) {
		free(*json);
		*json = NULL;
		r = -1;
	}
	if (r == -1)
		r = qesd_pg_corrupt(tx, "devices");
	PQclear(res);
	return r;
}

/* ---- credentials ---- */

static int
dup_col(const PGresult *res, int row, int col, char **out)
{
	int r = qesd_pg_col_dup(res, row, col, QES_PROTO_REPORT_STR_MAX, out);

	if (r != 0)
		return r;
	return *out == NULL ? -1 : 0;
}

/* 0, -1 malformed, QES_ERR_ALLOC */
static int
read_credential(const PGresult *res, int row, qesd_credential *c)
{
	int64_t kt, bits, ku, qc, hpk, aa;
	int len, r, live;

	memset(c, 0, sizeof(*c));
	if (qesd_pg_col_text(res, row, 0, c->id, sizeof(c->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, c->tenant_id, sizeof(c->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, c->device_id, sizeof(c->device_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 3, c->serial, sizeof(c->serial), 0) != 0 ||
	    qesd_pg_col_text(res, row, 4, c->key_id_hex, sizeof(c->key_id_hex),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 10, c->cert_serial_hex,
	    sizeof(c->cert_serial_hex), 0) != 0 ||
	    qesd_pg_col_text(res, row, 11, c->classification,
	    sizeof(c->classification), 0) != 0 ||
	    qesd_pg_col_text(res, row, 16, c->curve, sizeof(c->curve), 0) != 0 ||
	    qesd_pg_col_text(res, row, 21, c->cert_sha256_hex,
	    sizeof(c->cert_sha256_hex), 0) != 0 ||
	    qesd_pg_col_text(res, row, 24, c->device_name,
	    sizeof(c->device_name), 0) != 0 ||
	    qesd_pg_col_i64(res, row, 12, 0, &c->not_before_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 13, 0, &c->not_after_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 14, 0, &kt) != 0 ||
	    qesd_pg_col_i64(res, row, 15, 0, &bits) != 0 ||
	    qesd_pg_col_i64(res, row, 17, 0, &ku) != 0 ||
	    qesd_pg_col_i64(res, row, 18, 0, &qc) != 0 ||
	    qesd_pg_col_i64(res, row, 19, 0, &hpk) != 0 ||
	    qesd_pg_col_i64(res, row, 20, 0, &aa) != 0 ||
	    qesd_pg_col_i64(res, row, 23, 0, &c->updated_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 25, 1, &c->device_revoked_at_ms) != 0 ||
	    (live = qesd_pg_col_bool(res, row, 26)) < 0)
		return -1;
	if ((r = dup_col(res, row, 5, &c->label)) != 0 ||
	    (r = dup_col(res, row, 6, &c->token_label)) != 0 ||
	    (r = dup_col(res, row, 7, &c->subject)) != 0 ||
	    (r = dup_col(res, row, 8, &c->subject_cn)) != 0 ||
	    (r = dup_col(res, row, 9, &c->issuer)) != 0)
		return r;
	if (kt < 0 || kt > QES_KEY_EC || bits < 0 || bits > 65536 || ku < 0 ||
	    ku > 0xffff || qc < 0 || qc > 0xff || hpk < -1 || hpk > 1)
		return -1;
	c->key_type = (qes_key_type)kt;
	c->key_bits = (unsigned)bits;
	c->key_usage = (unsigned)ku;
	c->qc = (unsigned)qc;
	c->has_private_key = (int)hpk;
	c->always_authenticate = aa != 0;
	c->device_live = live;
	if (PQgetisnull(res, row, 22) ||
	    (len = PQgetlength(res, row, 22)) <= 0 ||
	    len > QES_PROTO_CERT_DER_MAX)
		return -1;
	if ((c->cert_der = malloc((size_t)len)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(c->cert_der, PQgetvalue(res, row, 22), (size_t)len);
	c->cert_der_len = (size_t)len;
	return 0;
}

static int
pg_credential_list(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int live_only, const char *after_id, size_t limit, qesd_credential *out,
    size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r, rr, i;

	*n = 0;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, after_id);
	qesd_pg_text(&p, device_id);
	qesd_pg_i64(&p, live_only ? 1 : 0);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, sql_crd_list, &p, "listing credentials",
	    &res, NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if ((rr = read_credential(res, i, &out[*n])) != 0) {
			qesd_credential_clear(&out[*n]);
			r = rr == QES_ERR_ALLOC ? rr :
			    qesd_pg_corrupt(tx, "device_credentials");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	if (r != 0)
		while (*n > 0)
			qesd_credential_clear(&out[--(*n)]);
	return r;
}

static int
pg_credential_get(qesd_tx *tx, const char *tenant_id, const char *credential_id,
    qesd_credential *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, credential_id);
	if ((r = query_one(tx, sql_crd_get, &p, "reading credential",
	    &res)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	if ((r = read_credential(res, 0, out)) != 0) {
		qesd_credential_clear(out);
		if (r != QES_ERR_ALLOC)
			r = qesd_pg_corrupt(tx, "device_credentials");
	}
	PQclear(res);
	return r;
}

/* ---- sessions ---- */

static int
pg_session_insert(qesd_tx *tx, const qesd_device_session *ds)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, ds->id);
	qesd_pg_text(&p, ds->tenant_id);
	qesd_pg_text(&p, ds->device_id);
	qesd_pg_text(&p, ds->replica);
	qesd_pg_opt_text(&p, ds->agent_version);
	qesd_pg_opt_text(&p, ds->os);
	qesd_pg_opt_text(&p, ds->client_addr);
	qesd_pg_i64(&p, ds->connected_at_ms);
	qesd_pg_i64(&p, ds->last_seen_at_ms);
	return run_update(tx, sql_ses_insert, &p, "adding device session");
}

static int
pg_session_touch(qesd_tx *tx, const qesd_session_seen *seen)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, seen->tenant_id);
	qesd_pg_text(&p, seen->session_id);
	qesd_pg_i64(&p, seen->last_seen_at_ms);
	return qesd_pg_exec(tx, sql_ses_touch, &p,
	    "recording device last seen", NULL, NULL);
}

static int
pg_session_close(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t last_seen_at_ms, int64_t now_ms, const char *reason)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, session_id);
	qesd_pg_i64(&p, last_seen_at_ms);
	qesd_pg_i64(&p, now_ms);
	qesd_pg_text(&p, reason);
	return run_update(tx, sql_ses_close, &p, "closing device session");
}

static int
read_session(const PGresult *res, int row, qesd_device_session *ds)
{
	memset(ds, 0, sizeof(*ds));
	if (qesd_pg_col_text(res, row, 0, ds->id, sizeof(ds->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, ds->tenant_id, sizeof(ds->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, ds->device_id, sizeof(ds->device_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 3, ds->replica, sizeof(ds->replica),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 4, ds->agent_version,
	    sizeof(ds->agent_version), 1) != 0 ||
	    qesd_pg_col_text(res, row, 5, ds->os, sizeof(ds->os), 1) != 0 ||
	    qesd_pg_col_text(res, row, 6, ds->client_addr,
	    sizeof(ds->client_addr), 1) != 0 ||
	    qesd_pg_col_i64(res, row, 7, 0, &ds->connected_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 8, 0, &ds->last_seen_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 9, 1, &ds->closed_at_ms) != 0 ||
	    qesd_pg_col_text(res, row, 10, ds->close_reason,
	    sizeof(ds->close_reason), 1) != 0)
		return -1;
	return 0;
}

static int
pg_session_get(qesd_tx *tx, const char *tenant_id, const char *session_id,
    qesd_device_session *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, session_id);
	if ((r = query_one(tx, sql_ses_get, &p, "reading device session",
	    &res)) <= 0)
		return r == 0 ? QES_ERR_NOT_FOUND : r;
	r = read_session(res, 0, out) != 0 ?
	    qesd_pg_corrupt(tx, "device_sessions") : 0;
	PQclear(res);
	return r;
}

/* Only the columns that name a session: id, tenant_id, device_id. */
static int
read_session_ids(const PGresult *res, int row, qesd_device_session *ds)
{
	memset(ds, 0, sizeof(*ds));
	if (qesd_pg_col_text(res, row, 0, ds->id, sizeof(ds->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, ds->tenant_id, sizeof(ds->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, ds->device_id, sizeof(ds->device_id),
	    0) != 0)
		return -1;
	return 0;
}

/* Run sql and read up to limit rows into out with read_row (read_session,
 * or read_session_ids where the query selects only those). */
static int
read_sessions(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    int (*read_row)(const PGresult *, int, qesd_device_session *),
    size_t limit, qesd_device_session *out, size_t *n, const char *what)
{
	PGresult *res;
	int r, i;

	if ((r = qesd_pg_exec(tx, sql, p, what, &res, NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if (read_row(res, i, &out[*n]) != 0) {
			r = qesd_pg_corrupt(tx, "device_sessions");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	return r;
}

static int
pg_session_list(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int64_t before_ms, const char *before_id, size_t limit,
    qesd_device_session *out, size_t *n)
{
	qesd_pg_params p = { 0 };

	*n = 0;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, device_id);
	qesd_pg_i64(&p, before_ms);
	qesd_pg_text(&p, before_id);
	qesd_pg_i64(&p, (int64_t)limit);
	return read_sessions(tx, sql_ses_list, &p, read_session,
	    limit, out, n, "listing device sessions");
}

static int
pg_sessions_open_on_replica(qesd_tx *tx, const char *replica, size_t limit,
    qesd_device_session *out, size_t *n)
{
	qesd_pg_params p = { 0 };

	*n = 0;
	qesd_pg_text(&p, replica);
	qesd_pg_i64(&p, (int64_t)limit);
	return read_sessions(tx, sql_ses_open_replica, &p, read_session,
	    limit, out, n, "listing open device sessions");
}

/* ---- replicas ---- */

static int
pg_replica_beat(qesd_tx *tx, const char *replica, int64_t started_at_ms,
    int64_t now_ms, int *reaped)
{
	static const char what[] = "recording the replica heartbeat";
	qesd_pg_params p = { 0 }, q = { 0 };
	PGresult *res = NULL;
	int64_t started = 0, mark = 0;
	int r;

	*reaped = 0;
	qesd_pg_text(&p, replica);
	if ((r = query_one(tx, sql_rep_beat_read, &p, what, &res)) < 0)
		return r;
	if (r == 1) {
		if (qesd_pg_col_i64(res, 0, 0, 0, &started) != 0 ||
		    qesd_pg_col_i64(res, 0, 1, 1, &mark) != 0) {
			PQclear(res);
			return qesd_pg_corrupt(tx, "replicas");
		}
		/* reaped_at_ms NULL reads as 0 */
		*reaped = started == started_at_ms && mark != 0;
		PQclear(res);
	}
	qesd_pg_text(&q, replica);
	qesd_pg_i64(&q, started_at_ms);
	qesd_pg_i64(&q, now_ms);
	return qesd_pg_exec(tx, sql_rep_beat, &q, what, NULL, NULL);
}

static int
pg_sessions_of_lost_replicas(qesd_tx *tx, int64_t dead_before_ms,
    int64_t orphan_before_ms, size_t limit, qesd_device_session *out,
    size_t *n)
{
	qesd_pg_params p = { 0 };

	*n = 0;
	qesd_pg_i64(&p, dead_before_ms);
	qesd_pg_i64(&p, orphan_before_ms);
	qesd_pg_i64(&p, (int64_t)limit);
	return read_sessions(tx, sql_ses_lost, &p, read_session,
	    limit, out, n, "listing sessions of lost replicas");
}

static int
pg_session_reap(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t dead_before_ms, int64_t orphan_before_ms, int64_t now_ms)
{
	static const char what[] = "closing a session of a lost replica";
	qesd_pg_params p = { 0 }, q = { 0 };
	int r;

	qesd_pg_i64(&p, dead_before_ms);
	qesd_pg_i64(&p, orphan_before_ms);
	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, session_id);
	qesd_pg_i64(&p, now_ms);
	if ((r = run_update(tx, sql_ses_reap, &p, what)) != 0)
		return r;
	qesd_pg_text(&q, tenant_id);
	qesd_pg_text(&q, session_id);
	qesd_pg_i64(&q, now_ms);
	return qesd_pg_exec(tx, sql_rep_mark, &q, what, NULL, NULL);
}

static int
pg_session_held_elsewhere(qesd_tx *tx, const char *tenant_id,
    const char *session_id, const char *replica, int64_t alive_after_ms,
    int *held)
{
	qesd_pg_params p = { 0 };
	PGresult *res = NULL;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, session_id);
	qesd_pg_text(&p, replica);
	qesd_pg_i64(&p, alive_after_ms);
	if ((r = query_one(tx, sql_ses_held, &p, "looking up a session's replica",
	    &res)) < 0)
		return r;
	PQclear(res);
	*held = r;
	return 0;
}

static int
pg_sessions_closed_with_jobs(qesd_tx *tx, int64_t closed_before_ms,
    size_t limit, qesd_device_session *out, size_t *n)
{
	qesd_pg_params p = { 0 };

	*n = 0;
	qesd_pg_i64(&p, closed_before_ms);
	qesd_pg_i64(&p, (int64_t)limit);
	return read_sessions(tx, sql_ses_closed_jobs, &p, read_session_ids,
	    limit, out, n, "listing closed sessions with jobs");
}

static int
pg_replicas_forget(qesd_tx *tx, int64_t before_ms, uint64_t *n)
{
	qesd_pg_params p = { 0 };

	qesd_pg_i64(&p, before_ms);
	return qesd_pg_exec(tx, sql_rep_forget, &p,
	    "dropping rows of replicas long gone", NULL, n);
}

const struct qesd_store_device_ops qesd_store_pg_device_ops = {
	.enrollment_insert = pg_enrollment_insert,
	.enrollment_get_by_code = pg_enrollment_get_by_code,
	.enrollment_use = pg_enrollment_use,
	.device_insert = pg_device_insert,
	.device_get = pg_device_get,
	.device_list = pg_device_list,
	.device_revoke = pg_device_revoke,
	.device_set_inventory = pg_device_set_inventory,
	.device_get_inventory = pg_device_get_inventory,
	.credential_list = pg_credential_list,
	.credential_get = pg_credential_get,
	.session_insert = pg_session_insert,
	.session_touch = pg_session_touch,
	.session_close = pg_session_close,
	.session_get = pg_session_get,
	.session_list = pg_session_list,
	.sessions_open_on_replica = pg_sessions_open_on_replica,
	.replica_beat = pg_replica_beat,
	.sessions_of_lost_replicas = pg_sessions_of_lost_replicas,
	.session_reap = pg_session_reap,
	.session_held_elsewhere = pg_session_held_elsewhere,
	.sessions_closed_with_jobs = pg_sessions_closed_with_jobs,
	.replicas_forget = pg_replicas_forget,
};
