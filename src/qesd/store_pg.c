/*
 * store_pg.c - the PostgreSQL backend of the store (store =
 * postgres:URL), with libpq.
 *
 * Connections. A pool of pool_size connections (default 4), each used by
 * one transaction handle at a time, handed out under one mutex; when all
 * are taken a transaction waits at most acquire_timeout_ms and then gets
 * QES_ERR_BUSY. A connection is opened when first needed and again after
 * it broke: a transaction that finds the server gone fails with
 * QES_ERR_UNAVAILABLE, and the next one connects anew, so qesd recovers by
 * itself when PostgreSQL comes back.
 *
 * Transactions. Reads run in REPEATABLE READ READ ONLY (one snapshot).
 * Writes run in READ COMMITTED and are serialised with every other writer
 * of the database, on any replica, from their start: each takes one
 * transaction-scoped advisory lock right after BEGIN. store.h promises
 * this (SQLite's BEGIN IMMEDIATE gives it), and the jobs service relies
 * on it: a dispatch queues the sign frame inside its write transaction,
 * and the agent's answer, handled in a write transaction of its own, must
 * not read the job before that commit (jobs.c, steps 2 and 3). Write
 * transactions are short (no network round trip but the database's), so
 * one at a time is what SQLite does too; every state change is besides a
 * compare-and-set in its WHERE clause (jobs carry a version, keys and
 * sessions their state). The audit chain has its own per-tenant guard as
 * a second line: the head row of the tenant is read FOR UPDATE before an
 * append, (tenant_id, seq) is the primary key, the head moves only from
 * seq-1, and triggers refuse to rewrite a record or delete one not behind
 * the anchor, as on SQLite.
 *
 * Errors (SQLSTATE): serialization failure, deadlock, lock timeout ->
 * QES_ERR_BUSY; unique violation -> QES_ERR_CONFLICT; foreign key ->
 * QES_ERR_NOT_FOUND; connection loss, shutdown, disk full ->
 * QES_ERR_UNAVAILABLE. Only the primary message of an error is kept: the
 * DETAIL of a unique violation would show the key's value.
 *
 * The connection string may hold a password: it is never copied into a
 * message or a log line.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "qes/audit.h"
#include "qes/err.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"
#include "store_pg.h"

#define POOL_DEFAULT 4
#define POOL_MAX 64
#define TIMEOUT_DEFAULT_MS 5000
#define STMTS_MAX 128		/* prepared per connection; 82 exist */
/* advisory locks no other program is likely to take: "qesd", "qesw" */
#define MIGRATION_LOCK "1902474596"
#define WRITER_LOCK "1902474615"

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* ---- schema ---- */

/*
 * The migrations of store_sqlite.c in PostgreSQL's words: the same
 * tables, columns, keys, indexes and rules. Integers are bigint
 * throughout (what SQLite stores), hashes bytea with their length checked.
 */
static const char migration_1[] =
"CREATE TABLE tenants (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  name text NOT NULL UNIQUE,\n"
"  created_at_ms bigint NOT NULL\n"
");\n"
"CREATE TABLE api_keys (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  tenant_id text NOT NULL REFERENCES tenants (id),\n"
"  name text NOT NULL DEFAULT '',\n"
"  scopes bigint NOT NULL CHECK (scopes BETWEEN 0 AND 4294967295),\n"
"  secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),\n"
"  prev_secret_hash bytea CHECK (length(prev_secret_hash) = 32),\n"
"  prev_valid_until_ms bigint,\n"
"  created_by_key_id text,\n"
"  created_at_ms bigint NOT NULL,\n"
"  expires_at_ms bigint,\n"
"  rotated_at_ms bigint,\n"
"  revoked_at_ms bigint,\n"
"  last_used_at_ms bigint,\n"
"  UNIQUE (tenant_id, id)\n"
");\n"
"CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at_ms, id);\n"
"CREATE TABLE audit_heads (\n"
"  tenant_id text NOT NULL PRIMARY KEY REFERENCES tenants (id),\n"
"  seq bigint NOT NULL CHECK (seq >= 0),\n"
"  hash bytea NOT NULL CHECK (length(hash) = 32)\n"
");\n"
"CREATE TABLE audit_anchors (\n"
"  tenant_id text NOT NULL PRIMARY KEY REFERENCES tenants (id),\n"
"  seq bigint NOT NULL CHECK (seq > 0),\n"
"  hash bytea NOT NULL CHECK (length(hash) = 32),\n"
"  purged_before_ms bigint NOT NULL,\n"
"  created_at_ms bigint NOT NULL\n"
");\n"
"CREATE TABLE audit_records (\n"
"  tenant_id text NOT NULL REFERENCES tenants (id),\n"
"  seq bigint NOT NULL CHECK (seq > 0),\n"
"  id text NOT NULL UNIQUE,\n"
"  time_ms bigint NOT NULL,\n"
"  type text NOT NULL,\n"
"  request_id text,\n"
"  key_id text,\n"
"  device_id text,\n"
"  route text,\n"
"  method text,\n"
"  status bigint,\n"
"  client_addr text,\n"
"  addr_salt bytea CHECK (length(addr_salt) = 32),\n"
"  addr_digest bytea CHECK (length(addr_digest) = 32),\n"
"  details text,\n"
"  prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),\n"
"  hash bytea NOT NULL CHECK (length(hash) = 32),\n"
"  PRIMARY KEY (tenant_id, seq)\n"
");\n"
"CREATE INDEX audit_by_time ON audit_records (tenant_id, time_ms);\n"
"CREATE INDEX audit_by_type ON audit_records (tenant_id, type, seq);\n"
"CREATE INDEX audit_by_key ON audit_records (tenant_id, key_id, seq)\n"
"  WHERE key_id IS NOT NULL;\n"
"CREATE INDEX audit_by_device ON audit_records (tenant_id, device_id, seq)\n"
"  WHERE device_id IS NOT NULL;\n"
"CREATE FUNCTION qesd_audit_append_only() RETURNS trigger\n"
"LANGUAGE plpgsql AS $$\n"
"BEGIN\n"
"  IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id\n"
"    OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.id IS DISTINCT FROM OLD.id\n"
"    OR NEW.time_ms IS DISTINCT FROM OLD.time_ms\n"
"    OR NEW.type IS DISTINCT FROM OLD.type\n"
"    OR NEW.request_id IS DISTINCT FROM OLD.request_id\n"
"    OR NEW.key_id IS DISTINCT FROM OLD.key_id\n"
"    OR NEW.device_id IS DISTINCT FROM OLD.device_id\n"
"    OR NEW.route IS DISTINCT FROM OLD.route\n"
"    OR NEW.method IS DISTINCT FROM OLD.method\n"
"    OR NEW.status IS DISTINCT FROM OLD.status\n"
"    OR NEW.details IS DISTINCT FROM OLD.details\n"
"    OR NEW.addr_digest IS DISTINCT FROM OLD.addr_digest\n"
"    OR NEW.prev_hash IS DISTINCT FROM OLD.prev_hash\n"
"    OR NEW.hash IS DISTINCT FROM OLD.hash\n"
"    OR (NEW.client_addr IS NOT NULL\n"
"        AND NEW.client_addr IS DISTINCT FROM OLD.client_addr)\n"
"    OR (NEW.addr_salt IS NOT NULL\n"
"        AND NEW.addr_salt IS DISTINCT FROM OLD.addr_salt) THEN\n"
"    RAISE EXCEPTION 'audit records are append-only';\n"
"  END IF;\n"
"  RETURN NEW;\n"
"END $$;\n"
"CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records\n"
"  FOR EACH ROW EXECUTE FUNCTION qesd_audit_append_only();\n"
"CREATE FUNCTION qesd_audit_delete_behind_anchor() RETURNS trigger\n"
"LANGUAGE plpgsql AS $$\n"
"BEGIN\n"
"  IF OLD.seq > coalesce((SELECT seq FROM audit_anchors\n"
"                         WHERE tenant_id = OLD.tenant_id), 0) THEN\n"
"    RAISE EXCEPTION 'audit records are deleted only behind the anchor';\n"
"  END IF;\n"
"  RETURN OLD;\n"
"END $$;\n"
"CREATE TRIGGER audit_records_delete_behind_anchor\n"
"  BEFORE DELETE ON audit_records\n"
"  FOR EACH ROW EXECUTE FUNCTION qesd_audit_delete_behind_anchor();\n"
"CREATE TABLE devices (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  tenant_id text NOT NULL REFERENCES tenants (id),\n"
"  name text NOT NULL,\n"
"  public_key bytea NOT NULL,\n"
"  enrollment_id text,\n"
"  enrolled_at_ms bigint NOT NULL,\n"
"  revoked_at_ms bigint,\n"
"  inventory text,\n"
"  inventory_at_ms bigint,\n"
"  UNIQUE (tenant_id, id)\n"
");\n"
"CREATE INDEX devices_by_tenant ON devices (tenant_id, enrolled_at_ms, id);\n"
"CREATE TABLE enrollments (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  tenant_id text NOT NULL REFERENCES tenants (id),\n"
"  code_hash bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),\n"
"  device_name text,\n"
"  created_by_key_id text,\n"
"  created_at_ms bigint NOT NULL,\n"
"  expires_at_ms bigint NOT NULL,\n"
"  used_at_ms bigint,\n"
"  device_id text,\n"
"  UNIQUE (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
");\n"
"CREATE TABLE device_sessions (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  tenant_id text NOT NULL,\n"
"  device_id text NOT NULL,\n"
"  replica_id text NOT NULL,\n"
"  agent_version text,\n"
"  os text,\n"
"  client_addr text,\n"
"  connected_at_ms bigint NOT NULL,\n"
"  last_seen_at_ms bigint NOT NULL,\n"
"  closed_at_ms bigint,\n"
"  close_reason text,\n"
"  UNIQUE (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
");\n"
"CREATE INDEX device_sessions_by_device\n"
"  ON device_sessions (tenant_id, device_id, connected_at_ms);\n"
"CREATE INDEX device_sessions_open\n"
"  ON device_sessions (replica_id, last_seen_at_ms)\n"
"  WHERE closed_at_ms IS NULL;\n"
"CREATE TABLE jobs (\n"
"  id text NOT NULL PRIMARY KEY,\n"
"  tenant_id text NOT NULL REFERENCES tenants (id),\n"
"  state text NOT NULL CHECK (state IN ('created', 'dispatched',\n"
"    'awaiting_user', 'signed', 'completed', 'failed', 'expired',\n"
"    'cancelled')),\n"
"  reason text,\n"
"  credential_id text NOT NULL,\n"
"  device_id text,\n"
"  key_id text,\n"
"  request text NOT NULL,\n"
"  result text,\n"
"  verification_code text,\n"
"  idempotency_key text,\n"
"  request_hash bytea CHECK (length(request_hash) = 32),\n"
"  created_at_ms bigint NOT NULL,\n"
"  updated_at_ms bigint NOT NULL,\n"
"  expires_at_ms bigint NOT NULL,\n"
"  version bigint NOT NULL DEFAULT 1,\n"
"  UNIQUE (tenant_id, id),\n"
"  UNIQUE (tenant_id, idempotency_key),\n"
"  CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
");\n"
"CREATE INDEX jobs_by_tenant ON jobs (tenant_id, created_at_ms, id);\n"
"CREATE INDEX jobs_live ON jobs (expires_at_ms)\n"
"  WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled');\n";

static const char migration_2[] =
"ALTER TABLE jobs ADD COLUMN session_id text;\n"
"CREATE INDEX jobs_completed ON jobs (updated_at_ms)\n"
"  WHERE state = 'completed';\n";

/* Migration 3 (devices): qesd_pg_migration_devices, store_pg_devices.c. */
/* Migration 4 (AdES job documents): qesd_pg_migration_docs, store_pg_jobs.c. */
/* Migration 5 (replica heartbeats): qesd_pg_migration_replicas,
 * store_pg_devices.c. */

/* Append only; the same versions as SQLite's. */
static const struct {
	int version;
	const char *sql;
} migrations[] = {
	{ 1, migration_1 },
	{ 2, migration_2 },
	{ 3, qesd_pg_migration_devices },
	{ 4, qesd_pg_migration_docs },
	{ 5, qesd_pg_migration_replicas },
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

_Static_assert(QESD_SCHEMA_VERSION == 5,
    "QESD_SCHEMA_VERSION must be the version of the last migration");

/* ---- statements ---- */

#define KEY_COLS "id, tenant_id, name, scopes, secret_hash, " \
	"prev_secret_hash, prev_valid_until_ms, created_by_key_id, " \
	"created_at_ms, expires_at_ms, rotated_at_ms, revoked_at_ms, " \
	"last_used_at_ms"
#define AUDIT_COLS "tenant_id, seq, id, time_ms, type, request_id, key_id, " \
	"device_id, route, method, status, client_addr, addr_salt, " \
	"addr_digest, details, prev_hash, hash"

static const char sql_ping[] = "SELECT max(version) FROM schema_version";
static const char sql_tenant_insert[] =
    "INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)";
static const char sql_head_insert[] =
    "INSERT INTO audit_heads (tenant_id, seq, hash) "
    "VALUES ($1, 0, decode(repeat('00', 32), 'hex'))";
static const char sql_tenant_get[] =
    "SELECT id, name, created_at_ms FROM tenants WHERE id = $1";
static const char sql_tenant_list[] =
    "SELECT id, name, created_at_ms FROM tenants WHERE id > $1 "
    "ORDER BY id LIMIT $2";
static const char sql_key_insert[] =
    "INSERT INTO api_keys (" KEY_COLS ") VALUES "
    "($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $8, NULL, NULL, NULL)";
/* authentication: the tenant is what this lookup finds out */
static const char sql_key_get_auth[] =
    "SELECT " KEY_COLS " FROM api_keys WHERE id = $1";
static const char sql_key_get[] =
    "SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 AND id = $2";
static const char sql_key_list[] =
    "SELECT " KEY_COLS " FROM api_keys "
    "WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3) "
    "ORDER BY created_at_ms, id LIMIT $4";
static const char sql_key_rotate[] =
    "UPDATE api_keys SET prev_secret_hash = secret_hash, "
    "prev_valid_until_ms = $4, secret_hash = $3, rotated_at_ms = $5 "
    "WHERE tenant_id = $1 AND id = $2 AND revoked_at_ms IS NULL";
static const char sql_key_revoke[] =
    "UPDATE api_keys SET revoked_at_ms = $3, prev_secret_hash = NULL, "
    "prev_valid_until_ms = NULL "
    "WHERE tenant_id = $1 AND id = $2 AND revoked_at_ms IS NULL";
static const char sql_key_touch[] =
    "UPDATE api_keys SET last_used_at_ms = $3 "
    "WHERE tenant_id = $1 AND id = $2 "
    "AND (last_used_at_ms IS NULL OR last_used_at_ms < $3)";
static const char sql_head_get[] =
    "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1";
/* appending: the per-tenant lock that serialises every appender */
static const char sql_head_lock[] =
    "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE";
static const char sql_head_advance[] =
    "UPDATE audit_heads SET seq = $2, hash = $3 "
    "WHERE tenant_id = $1 AND seq = $4";
static const char sql_audit_insert[] =
    "INSERT INTO audit_records (" AUDIT_COLS ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "$15, $16, $17)";
static const char sql_anchor_get[] =
    "SELECT seq, hash FROM audit_anchors WHERE tenant_id = $1";
static const char sql_anchor_put[] =
    "INSERT INTO audit_anchors (tenant_id, seq, hash, purged_before_ms, "
    "created_at_ms) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, "
    "hash = excluded.hash, purged_before_ms = excluded.purged_before_ms, "
    "created_at_ms = excluded.created_at_ms "
    "WHERE excluded.seq > audit_anchors.seq";
/* walk the chain in seq order from the anchor ("+ 0" keeps the planner
 * on the primary key rather than the time index) */
static const char sql_purge_first_kept[] =
    "SELECT seq FROM audit_records WHERE tenant_id = $1 AND seq > $2 "
    "AND time_ms + 0 >= $3 ORDER BY seq LIMIT 1";
static const char sql_audit_hash_at[] =
    "SELECT hash FROM audit_records WHERE tenant_id = $1 AND seq = $2";
static const char sql_purge_delete[] =
    "DELETE FROM audit_records WHERE tenant_id = $1 AND seq <= $2";
static const char sql_erase_audit[] =
    "UPDATE audit_records SET client_addr = NULL, addr_salt = NULL "
    "WHERE tenant_id = $1 AND time_ms < $2 "
    "AND (client_addr IS NOT NULL OR addr_salt IS NOT NULL)";
static const char sql_erase_sessions[] =
    "UPDATE device_sessions SET client_addr = NULL "
    "WHERE tenant_id = $1 AND closed_at_ms < $2 "
    "AND client_addr IS NOT NULL";

/* ---- pool ---- */

struct pg_store;

struct pg_stmt {
	const char *sql;		/* by address */
	char name[16];
};

struct pg_conn {
	struct qesd_tx tx;		/* first: the handle callers get */
	struct pg_store *st;
	PGconn *pg;			/* NULL until connected / after loss */
	struct pg_stmt stmts[STMTS_MAX];
	unsigned n_stmts;
	unsigned serial;		/* for statement names */
	int in_use;
};

struct pg_store {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned n_conns;
	struct pg_conn *conns;
	unsigned acquire_timeout_ms;
	unsigned lock_timeout_ms;
	char *conninfo;			/* may hold a password: never shown */
	char *password;			/* the one in conninfo, to redact */
};

static void
deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int
pool_acquire(struct pg_store *st, struct pg_conn **out)
{
	struct timespec deadline;
	unsigned i;
	int rc = 0;

	deadline_after(&deadline, st->acquire_timeout_ms);
	pthread_mutex_lock(&st->mu);
	for (;;) {
		for (i = 0; i < st->n_conns; i++)
			if (!st->conns[i].in_use)
				break;
		if (i < st->n_conns)
			break;
		if (rc == ETIMEDOUT) {
			pthread_mutex_unlock(&st->mu);
			return QES_ERR_BUSY;
		}
		rc = pthread_cond_timedwait(&st->cv, &st->mu, &deadline);
	}
	st->conns[i].in_use = 1;
	pthread_mutex_unlock(&st->mu);
	*out = &st->conns[i];
	return 0;
}

static void
pool_release(struct pg_conn *c)
{
	struct pg_store *st = c->st;

	pthread_mutex_lock(&st->mu);
	c->in_use = 0;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

/*
 * Replace the connection string's password wherever it occurs in msg:
 * libpq's connection errors quote parts of what they were given.
 */
static void
redact(const struct pg_store *st, char *msg)
{
	static const char mask[] = "***";
	size_t plen, mlen = sizeof(mask) - 1;
	char *p;

	if (st->password == NULL || (plen = strlen(st->password)) == 0)
		return;
	while ((p = strstr(msg, st->password)) != NULL) {
		if (plen >= mlen) {
			memcpy(p, mask, mlen);
			memmove(p + mlen, p + plen, strlen(p + plen) + 1);
		} else {
			memset(p, '*', plen);
		}
	}
}

static void
conn_drop(struct pg_conn *c)
{
	if (c->pg != NULL)
		PQfinish(c->pg);
	c->pg = NULL;
	c->n_stmts = 0;
}

/* ---- errors ---- */

static int
map_sqlstate(const char *state)
{
	if (state == NULL)
		return QES_ERR_UNAVAILABLE;	/* no answer: connection */
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
		return QES_ERR_BUSY;
	if (strcmp(state, "23505") == 0)
		return QES_ERR_CONFLICT;
	if (strcmp(state, "23503") == 0)
		return QES_ERR_NOT_FOUND;	/* a parent that does not exist */
	if (strcmp(state, "P0001") == 0)
		return QES_ERR_INTERNAL;	/* code tried to rewrite history */
	if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
		return QES_ERR_INVALID_ARG;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
	    strncmp(state, "53", 2) == 0 || strncmp(state, "58", 2) == 0 ||
	    strcmp(state, "25006") == 0 || strncmp(state, "28", 2) == 0)
		return QES_ERR_UNAVAILABLE;
	return QES_ERR_INTERNAL;
}

/* The first line of libpq's connection-level message. */
static void
first_line(char *dst, size_t size, const char *msg)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	n = strcspn(msg, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

/*
 * A failed call: map it, note what failed with the server's primary
 * message (never its DETAIL, which can quote values), poison the
 * transaction, and drop a broken connection so that the next transaction
 * connects again.
 */
static int
pg_fail(struct pg_conn *c, const PGresult *res, const char *what)
{
	const char *state = NULL, *msg = NULL;
	char line[160];
	int r;

	if (res != NULL) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	}
	r = map_sqlstate(state);
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
		r = QES_ERR_UNAVAILABLE;
	if (msg == NULL) {
		first_line(line, sizeof(line),
		    c->pg != NULL ? PQerrorMessage(c->pg) : "not connected");
		msg = line;
	}
	snprintf(c->tx.errmsg, sizeof(c->tx.errmsg), "%s: %s (SQLSTATE %s)",
	    what, msg, state != NULL ? state : "none");
	redact(c->st, c->tx.errmsg);
	if (r == QES_ERR_UNAVAILABLE)
		conn_drop(c);
	c->tx.failed = r;
	return r;
}

static int
pg_corrupt(struct pg_conn *c, const char *what)
{
	snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
	    "malformed row in %s", what);
	c->tx.failed = QES_ERR_FORMAT;
	return QES_ERR_FORMAT;
}

/* ---- parameters and results ---- */

static void
add_param(qesd_pg_params *p, const void *v, int len, int fmt, Oid type)
{
	int i = p->n;

	/* statements are fixed; more parameters than this is a bug */
	if (i >= QESD_PG_MAX_PARAMS)
		abort();
	p->val[i] = v;
	p->len[i] = len;
	p->fmt[i] = fmt;
	p->type[i] = type;
	p->n = i + 1;
}

void
qesd_pg_text(qesd_pg_params *p, const char *v)
{
	add_param(p, v, v != NULL ? (int)strlen(v) : 0, 1, OID_TEXT);
}

void
qesd_pg_opt_text(qesd_pg_params *p, const char *v)
{
	qesd_pg_text(p, v != NULL && v[0] != '\0' ? v : NULL);
}

void
qesd_pg_i64(qesd_pg_params *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	unsigned char *b;
	int k;

	if (p->n >= QESD_PG_MAX_PARAMS)
		abort();
	b = p->i8[p->n];
	for (k = 7; k >= 0; k--) {
		b[k] = (unsigned char)(u & 0xff);
		u >>= 8;
	}
	add_param(p, (const char *)b, 8, 1, OID_INT8);
}

void
qesd_pg_opt_i64(qesd_pg_params *p, int64_t v)
{
	if (v == 0)
		add_param(p, NULL, 0, 1, OID_INT8);
	else
		qesd_pg_i64(p, v);
}

void
qesd_pg_blob(qesd_pg_params *p, const void *v, size_t len)
{
	add_param(p, v, v != NULL ? (int)len : 0, 1, OID_BYTEA);
}

int
qesd_pg_col_text(const PGresult *r, int row, int col, char *dst, size_t size,
    int nullable)
{
	const char *t;
	int n;

	dst[0] = '\0';
	if (PQgetisnull(r, row, col))
		return nullable ? 0 : -1;
	t = PQgetvalue(r, row, col);
	n = PQgetlength(r, row, col);
	if (t == NULL || n < 0 || (size_t)n >= size ||
	    memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return 0;
}

int
qesd_pg_col_dup(const PGresult *r, int row, int col, size_t max, char **out)
{
	const char *t;
	int n;

	*out = NULL;
	if (PQgetisnull(r, row, col))
		return 0;
	t = PQgetvalue(r, row, col);
	n = PQgetlength(r, row, col);
	if (t == NULL || n < 0 || (size_t)n > max ||
	    memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(*out, t, (size_t)n);
	(*out)[n] = '\0';
	return 0;
}

int
qesd_pg_col_blob(const PGresult *r, int row, int col, uint8_t *dst,
    size_t len, int *has)
{
	if (has != NULL)
		*has = 0;
	if (PQgetisnull(r, row, col))
		return has != NULL ? 0 : -1;
	if (PQgetlength(r, row, col) < 0 ||
	    (size_t)PQgetlength(r, row, col) != len)
		return -1;
	memcpy(dst, PQgetvalue(r, row, col), len);
	if (has != NULL)
		*has = 1;
	return 0;
}

int
qesd_pg_col_var_blob(const PGresult *r, int row, int col, uint8_t *dst,
    size_t max, size_t *len)
{
	int n;

	*len = 0;
	if (PQgetisnull(r, row, col))
		return -1;
	n = PQgetlength(r, row, col);
	if (n <= 0 || (size_t)n > max)
		return -1;
	memcpy(dst, PQgetvalue(r, row, col), (size_t)n);
	*len = (size_t)n;
	return 0;
}

int
qesd_pg_col_i64(const PGresult *r, int row, int col, int opt, int64_t *out)
{
	const unsigned char *b;
	uint64_t u = 0;
	int k;

	*out = 0;
	if (PQgetisnull(r, row, col))
		return opt ? 0 : -1;
	if (PQgetlength(r, row, col) != 8)
		return -1;
	b = (const unsigned char *)PQgetvalue(r, row, col);
	for (k = 0; k < 8; k++)
		u = (u << 8) | b[k];
	*out = (int64_t)u;
	return 0;
}

int
qesd_pg_col_bool(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 1)
		return -1;
	return PQgetvalue(r, row, col)[0] != 0;
}

/* ---- running statements ---- */

/* The prepared statement for sql on c's connection, prepared on first use. */
static int
stmt_name(struct pg_conn *c, const char *sql, const qesd_pg_params *p,
    const char **name, const char *what)
{
	PGresult *res;
	unsigned i;
	int r;

	for (i = 0; i < c->n_stmts; i++)
		if (c->stmts[i].sql == sql) {
			*name = c->stmts[i].name;
			return 0;
		}
	if (c->n_stmts == STMTS_MAX) {
		snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
		    "%s: too many statements", what);
		return c->tx.failed = QES_ERR_INTERNAL;
	}
	i = c->n_stmts;
	snprintf(c->stmts[i].name, sizeof(c->stmts[i].name), "q%u",
	    c->serial++);
	res = PQprepare(c->pg, c->stmts[i].name, sql, p->n, p->type);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = pg_fail(c, res, what);
		PQclear(res);
		return r;
	}
	PQclear(res);
	c->stmts[i].sql = sql;
	c->n_stmts = i + 1;
	*name = c->stmts[i].name;
	return 0;
}

static int
result_ok(struct pg_conn *c, PGresult *res, const char *what,
    PGresult **out, uint64_t *changes)
{
	ExecStatusType es = PQresultStatus(res);
	int r;

	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		r = pg_fail(c, res, what);
		PQclear(res);
		return r;
	}
	if (changes != NULL)
		*changes = strtoull(PQcmdTuples(res), NULL, 10);
	if (out != NULL)
		*out = res;
	else
		PQclear(res);
	return 0;
}

int
qesd_pg_exec(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    const char *what, PGresult **res, uint64_t *changes)
{
	static const qesd_pg_params none;
	struct pg_conn *c = (struct pg_conn *)tx;
	const char *name = NULL;
	int r;

	if (res != NULL)
		*res = NULL;
	if (p == NULL)
		p = &none;
	if (c->pg == NULL)
		return pg_fail(c, NULL, what);
	if ((r = stmt_name(c, sql, p, &name, what)) != 0)
		return r;
	return result_ok(c, PQexecPrepared(c->pg, name, p->n, p->val, p->len,
	    p->fmt, 1), what, res, changes);
}

int
qesd_pg_corrupt(qesd_tx *tx, const char *what)
{
	return pg_corrupt((struct pg_conn *)tx, what);
}

/* A command without parameters or rows (BEGIN, COMMIT, ...). */
static int
command(struct pg_conn *c, const char *sql, const char *what)
{
	if (c->pg == NULL)
		return pg_fail(c, NULL, what);
	return result_ok(c, PQexec(c->pg, sql), what, NULL, NULL);
}

/* ---- connecting and migrating ---- */

static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int
conn_connect(struct pg_store *st, struct pg_conn *c, char *err,
    size_t err_len)
{
	/* the operator's string last: what it sets wins over these */
	static const char *const keys[] = {
		"connect_timeout", "application_name", "client_encoding",
		"keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "dbname", NULL
	};
	const char *vals[9] = {
		"5", "qesd", "UTF8", "1", "30", "10", "3", st->conninfo, NULL
	};
	char sql[160], line[200];
	PGresult *res;

	conn_drop(c);
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
		first_line(line, sizeof(line), c->pg != NULL ?
		    PQerrorMessage(c->pg) : "out of memory");
		snprintf(err, err_len, "cannot connect to PostgreSQL: %s",
		    line);
		redact(st, err);
		conn_drop(c);
		return QES_ERR_UNAVAILABLE;
	}
	/* the server's notices (NOTICE, WARNING) are not ours to print */
	PQsetNoticeProcessor(c->pg, quiet_notice, NULL);
	/* wait for another writer's row lock at most this long (BUSY then),
	 * and never hold a transaction open forever */
	snprintf(sql, sizeof(sql), "SET lock_timeout = %u; "
	    "SET idle_in_transaction_session_timeout = 60000; "
	    "SET TIME ZONE 'UTC'", st->lock_timeout_ms);
	res = PQexec(c->pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		first_line(line, sizeof(line), PQresultErrorMessage(res));
		snprintf(err, err_len, "configuring PostgreSQL session: %s",
		    line);
		redact(st, err);
		PQclear(res);
		conn_drop(c);
		return QES_ERR_UNAVAILABLE;
	}
	PQclear(res);
	return 0;
}

static int
exec_plain(PGconn *pg, const char *sql, const char *what, char *err,
    size_t err_len, PGresult **out)
{
	PGresult *res = PQexec(pg, sql);
	ExecStatusType es = PQresultStatus(res);
	const char *state, *msg;
	char line[200];
	int r;

	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
		if (out != NULL)
			*out = res;
		else
			PQclear(res);
		return 0;
	}
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (msg == NULL) {
		first_line(line, sizeof(line), PQerrorMessage(pg));
		msg = line;
	}
	snprintf(err, err_len, "%s: %s", what, msg);
	r = map_sqlstate(state);
	PQclear(res);
	return r;
}

/* One integer of a one-row text-format query. */
static int
query_int(PGconn *pg, const char *sql, long long *v, char *err,
    size_t err_len)
{
	PGresult *res = NULL;
	int r;

	if ((r = exec_plain(pg, sql, sql, err, err_len, &res)) != 0)
		return r;
	if (PQntuples(res) != 1 || PQnfields(res) != 1) {
		snprintf(err, err_len, "%s: unexpected answer", sql);
		PQclear(res);
		return QES_ERR_INTERNAL;
	}
	*v = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0),
	    NULL, 10);
	PQclear(res);
	return 0;
}

/*
 * Bring the schema to QESD_SCHEMA_VERSION, one transaction per migration
 * under an advisory lock, the version re-read inside it, so that replicas
 * starting together apply each migration once. A schema from a newer qesd
 * is refused; a database that has tables but no schema_version is not
 * ours and is refused too.
 */
static int
migrate(PGconn *pg, char *err, size_t err_len)
{
	char sql[160];
	long long version = 0, tables = 0, ours = 0;
	size_t i;
	int r;

	for (i = 0; i <= N_MIGRATIONS; i++) {
		if ((r = exec_plain(pg, "BEGIN; SELECT pg_advisory_xact_lock("
		    MIGRATION_LOCK ")", "locking schema", err, err_len,
		    NULL)) != 0)
			goto fail;
		if ((r = query_int(pg, "SELECT count(*) FROM pg_tables WHERE "
		    "schemaname = current_schema()", &tables, err,
		    err_len)) != 0 ||
		    (r = query_int(pg, "SELECT count(*) FROM pg_tables WHERE "
		    "schemaname = current_schema() AND "
		    "tablename = 'schema_version'", &ours, err, err_len)) != 0)
			goto fail;
		if (!ours && tables != 0) {
			snprintf(err, err_len, "the database has tables but no "
			    "schema_version: not a qesd database");
			r = QES_ERR_UNSUPPORTED;
			goto fail;
		}
		if (!ours && (r = exec_plain(pg, "CREATE TABLE schema_version ("
		    "version bigint NOT NULL PRIMARY KEY, "
		    "applied_at_ms bigint NOT NULL)", "creating schema_version",
		    err, err_len, NULL)) != 0)
			goto fail;
		if ((r = query_int(pg, "SELECT coalesce(max(version), 0) FROM "
		    "schema_version", &version, err, err_len)) != 0)
			goto fail;
		if (version > QESD_SCHEMA_VERSION) {
			snprintf(err, err_len, "database schema version %lld "
			    "is newer than this qesd understands (%d): "
			    "upgrade qesd", version, QESD_SCHEMA_VERSION);
			r = QES_ERR_UNSUPPORTED;
			goto fail;
		}
		if (i < N_MIGRATIONS && migrations[i].version > version) {
			snprintf(sql, sizeof(sql), "INSERT INTO schema_version "
			    "(version, applied_at_ms) VALUES (%d, "
			    "(extract(epoch FROM clock_timestamp()) * 1000)"
			    "::bigint)", migrations[i].version);
			if ((r = exec_plain(pg, migrations[i].sql,
			    "migrating schema", err, err_len, NULL)) != 0 ||
			    (r = exec_plain(pg, sql, "recording schema version",
			    err, err_len, NULL)) != 0)
				goto fail;
		}
		if ((r = exec_plain(pg, "COMMIT", "committing migration", err,
		    err_len, NULL)) != 0)
			goto fail;
	}
	return 0;
 fail:
	PQclear(PQexec(pg, "ROLLBACK"));
	return r;
}

static void pg_close(void *backend);

/*
 * target: a libpq URI ("postgresql://user@host/db?...") or key=value
 * string; the "postgresql:" scheme that store.c took off is put back.
 */
static int
pg_open(const char *target, const qesd_store_config *cfg, void **backend,
    char *err, size_t err_len)
{
	struct pg_store *st = NULL;
	PQconninfoOption *opts, *o;
	pthread_condattr_t ca;
	char *perr = NULL;
	unsigned n;
	size_t len;
	int r;

	*backend = NULL;
	n = cfg->pool_size ? cfg->pool_size : POOL_DEFAULT;
	if (n > POOL_MAX) {
		snprintf(err, err_len, "pool size %u exceeds %d", n, POOL_MAX);
		return QES_ERR_INVALID_ARG;
	}
	len = strlen(target);
	if (len > 4096) {
		snprintf(err, err_len, "the PostgreSQL connection string is "
		    "longer than 4096 bytes");
		return QES_ERR_INVALID_ARG;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->conns = calloc(n, sizeof(*st->conns))) == NULL ||
	    (st->conninfo = malloc(len + sizeof("postgresql:"))) == NULL) {
		if (st != NULL)
			free(st->conns);
		free(st);
		snprintf(err, err_len, "out of memory");
		return QES_ERR_ALLOC;
	}
	snprintf(st->conninfo, len + sizeof("postgresql:"), "%s%s",
	    strncmp(target, "//", 2) == 0 ? "postgresql:" : "", target);
	st->acquire_timeout_ms = cfg->acquire_timeout_ms ?
	    cfg->acquire_timeout_ms : TIMEOUT_DEFAULT_MS;
	st->lock_timeout_ms = cfg->busy_timeout_ms ? cfg->busy_timeout_ms :
	    TIMEOUT_DEFAULT_MS;
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&st->cv, &ca) != 0 ||
	    pthread_mutex_init(&st->mu, NULL) != 0) {
		snprintf(err, err_len, "cannot initialise pool lock");
		free(st->conninfo);
		free(st->conns);
		free(st);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	st->n_conns = n;
	/* parse it first: libpq's parse errors can quote the string, password
	 * and all, so they are not shown; the password is kept for redact() */
	if ((opts = PQconninfoParse(st->conninfo, &perr)) == NULL) {
		PQfreemem(perr);
		snprintf(err, err_len, "the PostgreSQL connection string after "
		    "postgres: is not valid (libpq's reason is not shown: it "
		    "may quote a password)");
		r = QES_ERR_INVALID_ARG;
		goto fail;
	}
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    o->val[0] != '\0' &&
		    (st->password = strdup(o->val)) == NULL)
			break;
	if (o->keyword != NULL) {
		PQconninfoFree(opts);
		snprintf(err, err_len, "out of memory");
		r = QES_ERR_ALLOC;
		goto fail;
	}
	PQconninfoFree(opts);
	for (unsigned i = 0; i < n; i++)
		st->conns[i].st = st;
	/* one connection now: the database must be there and migrated;
	 * the others connect when first needed */
	if ((r = conn_connect(st, &st->conns[0], err, err_len)) != 0)
		goto fail;
	if ((r = migrate(st->conns[0].pg, err, err_len)) != 0)
		goto fail;
	*backend = st;
	return 0;
 fail:
	pg_close(st);
	return r;
}

static void
pg_close(void *backend)
{
	struct pg_store *st = backend;
	unsigned i;

	if (st == NULL)
		return;
	for (i = 0; i < st->n_conns; i++)
		conn_drop(&st->conns[i]);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	if (st->conninfo != NULL) {
		explicit_bzero(st->conninfo, strlen(st->conninfo));
		free(st->conninfo);
	}
	if (st->password != NULL) {
		explicit_bzero(st->password, strlen(st->password));
		free(st->password);
	}
	free(st->conns);
	free(st);
}

/* ---- transactions ---- */

/* A pooled connection, connected (again) when needed. */
static int
take(struct pg_store *st, struct pg_conn **out)
{
	struct pg_conn *c;
	int r;

	if ((r = pool_acquire(st, &c)) != 0)
		return r;
	c->tx.errmsg[0] = '\0';
	if (c->pg != NULL && PQstatus(c->pg) != CONNECTION_OK)
		conn_drop(c);
	if (c->pg == NULL && (r = conn_connect(st, c, c->tx.errmsg,
	    sizeof(c->tx.errmsg))) != 0) {
		pool_release(c);
		return r;
	}
	*out = c;
	return 0;
}

/* the writer lock waits at most lock_timeout (busy_timeout_ms): BUSY then */
static const char begin_write[] =
    "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE; "
    "SELECT pg_advisory_xact_lock(" WRITER_LOCK ")";
static const char begin_read[] =
    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

static int
pg_begin(void *backend, qesd_tx_mode mode, qesd_tx **out)
{
	struct pg_store *st = backend;
	struct pg_conn *c = NULL;
	int r;

	if ((r = take(st, &c)) != 0)
		return r;
	c->tx.failed = 0;
	r = command(c, mode == QESD_TX_WRITE ? begin_write : begin_read,
	    "starting transaction");
	if (r != 0) {
		/* a connection that died while idle in the pool: once more
		 * on a fresh one */
		if (r == QES_ERR_UNAVAILABLE && (r = conn_connect(st, c,
		    c->tx.errmsg, sizeof(c->tx.errmsg))) == 0)
			r = command(c, mode == QESD_TX_WRITE ? begin_write :
			    begin_read, "starting transaction");
		if (r != 0) {
			if (c->pg != NULL &&
			    PQtransactionStatus(c->pg) != PQTRANS_IDLE)
				PQclear(PQexec(c->pg, "ROLLBACK"));
			c->tx.failed = 0;
			pool_release(c);
			return r;
		}
	}
	*out = &c->tx;
	return 0;
}

static int
pg_commit(qesd_tx *tx)
{
	struct pg_conn *c = (struct pg_conn *)tx;
	PGresult *res;
	int r;

	if (c->pg == NULL)
		return pg_fail(c, NULL, "commit");
	res = PQexec(c->pg, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = pg_fail(c, res, "commit");
		PQclear(res);
		return r;
	}
	/* COMMIT of an aborted transaction answers ROLLBACK */
	if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		PQclear(res);
		snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
		    "commit: the transaction was rolled back");
		return c->tx.failed = QES_ERR_INTERNAL;
	}
	PQclear(res);
	return 0;
}

static void
pg_end(qesd_tx *tx)
{
	struct pg_conn *c = (struct pg_conn *)tx;

	if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		PQclear(PQexec(c->pg, "ROLLBACK"));
		if (PQstatus(c->pg) != CONNECTION_OK ||
		    PQtransactionStatus(c->pg) != PQTRANS_IDLE)
			conn_drop(c);
	}
	pool_release(c);
}

static int
pg_ping(void *backend)
{
	struct pg_store *st = backend;
	struct pg_conn *c = NULL;
	int r;

	if ((r = take(st, &c)) != 0)
		return r == QES_ERR_BUSY ? r : QES_ERR_UNAVAILABLE;
	r = qesd_pg_exec(&c->tx, sql_ping, NULL, "ping", NULL, NULL);
	c->tx.failed = 0;
	pool_release(c);
	if (r != 0)
		return r == QES_ERR_BUSY ? r : QES_ERR_UNAVAILABLE;
	return 0;
}

/* ---- tenants ---- */

static int
pg_tenant_insert(qesd_tx *tx, const qesd_tenant *t)
{
	qesd_pg_params p = { 0 };
	int r;

	qesd_pg_text(&p, t->id);
	qesd_pg_text(&p, t->name);
	qesd_pg_i64(&p, t->created_at_ms);
	if ((r = qesd_pg_exec(tx, sql_tenant_insert, &p, "adding tenant",
	    NULL, NULL)) != 0)
		return r;
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, t->id);
	return qesd_pg_exec(tx, sql_head_insert, &p, "starting audit chain",
	    NULL, NULL);
}

static int
read_tenant(const PGresult *res, int row, qesd_tenant *t)
{
	if (qesd_pg_col_text(res, row, 0, t->id, sizeof(t->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, t->name, sizeof(t->name), 0) != 0 ||
	    qesd_pg_col_i64(res, row, 2, 0, &t->created_at_ms) != 0)
		return -1;
	return 0;
}

static int
pg_tenant_get(qesd_tx *tx, const char *id, qesd_tenant *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r;

	qesd_pg_text(&p, id);
	if ((r = qesd_pg_exec(tx, sql_tenant_get, &p, "reading tenant", &res,
	    NULL)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = QES_ERR_NOT_FOUND;
	else if (read_tenant(res, 0, out) != 0)
		r = qesd_pg_corrupt(tx, "tenants");
	PQclear(res);
	return r;
}

static int
pg_tenant_list(qesd_tx *tx, const char *after_id, size_t limit,
    qesd_tenant *out, size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r = 0, i;

	*n = 0;
	qesd_pg_text(&p, after_id);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, sql_tenant_list, &p, "listing tenants",
	    &res, NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if (read_tenant(res, i, &out[*n]) != 0) {
			r = qesd_pg_corrupt(tx, "tenants");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	return r;
}

/* ---- API keys ---- */

static int
pg_key_insert(qesd_tx *tx, const qesd_api_key *k)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, k->id);
	qesd_pg_text(&p, k->tenant_id);
	qesd_pg_text(&p, k->name);
	qesd_pg_i64(&p, k->scopes);
	qesd_pg_blob(&p, k->secret_hash, QESD_HMAC_LEN);
	qesd_pg_opt_text(&p, k->created_by);
	qesd_pg_i64(&p, k->created_at_ms);
	qesd_pg_opt_i64(&p, k->expires_at_ms);
	return qesd_pg_exec(tx, sql_key_insert, &p, "adding API key", NULL,
	    NULL);
}

static int
read_key(const PGresult *res, int row, qesd_api_key *k)
{
	int64_t scopes;

	memset(k, 0, sizeof(*k));
	if (qesd_pg_col_text(res, row, 0, k->id, sizeof(k->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, k->tenant_id, sizeof(k->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, k->name, sizeof(k->name), 0) != 0 ||
	    qesd_pg_col_i64(res, row, 3, 0, &scopes) != 0 ||
	    qesd_pg_col_blob(res, row, 4, k->secret_hash, QESD_HMAC_LEN,
	    NULL) != 0 ||
	    qesd_pg_col_blob(res, row, 5, k->prev_secret_hash, QESD_HMAC_LEN,
	    &k->has_prev) != 0 ||
	    qesd_pg_col_i64(res, row, 6, 1, &k->prev_valid_until_ms) != 0 ||
	    qesd_pg_col_text(res, row, 7, k->created_by, sizeof(k->created_by),
	    1) != 0 ||
	    qesd_pg_col_i64(res, row, 8, 0, &k->created_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 9, 1, &k->expires_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 10, 1, &k->rotated_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 11, 1, &k->revoked_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 12, 1, &k->last_used_at_ms) != 0)
		return -1;
	if (scopes < 0 || scopes > UINT32_MAX)
		return -1;
	k->scopes = (uint32_t)scopes;
	return 0;
}

static int
pg_key_get(qesd_tx *tx, const char *tenant_id, const char *key_id,
    qesd_api_key *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r;

	if (tenant_id != NULL)
		qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, key_id);
	/* tenant_id NULL: authentication only, see qesd_key_get_for_auth() */
	if ((r = qesd_pg_exec(tx, tenant_id != NULL ? sql_key_get :
	    sql_key_get_auth, &p, "reading API key", &res, NULL)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = QES_ERR_NOT_FOUND;
	else if (read_key(res, 0, out) != 0)
		r = qesd_pg_corrupt(tx, "api_keys");
	PQclear(res);
	return r;
}

static int
pg_key_list(qesd_tx *tx, const char *tenant_id, int64_t after_created_ms,
    const char *after_id, size_t limit, qesd_api_key *out, size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r = 0, i;

	*n = 0;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, after_created_ms);
	qesd_pg_text(&p, after_id);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, sql_key_list, &p, "listing API keys", &res,
	    NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if (read_key(res, i, &out[*n]) != 0) {
			r = qesd_pg_corrupt(tx, "api_keys");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	return r;
}

/* An UPDATE of one row; NOT_FOUND when it matched none. */
static int
update_one(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    const char *what)
{
	uint64_t changed = 0;
	int r;

	if ((r = qesd_pg_exec(tx, sql, p, what, NULL, &changed)) != 0)
		return r;
	return changed == 1 ? 0 : QES_ERR_NOT_FOUND;
}

static int
pg_key_rotate(qesd_tx *tx, const char *tenant_id, const char *key_id,
    const uint8_t new_hash[QESD_HMAC_LEN], int64_t prev_valid_until_ms,
    int64_t now_ms)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, key_id);
	qesd_pg_blob(&p, new_hash, QESD_HMAC_LEN);
	qesd_pg_opt_i64(&p, prev_valid_until_ms);
	qesd_pg_i64(&p, now_ms);
	return update_one(tx, sql_key_rotate, &p, "rotating API key");
}

static int
pg_key_revoke(qesd_tx *tx, const char *tenant_id, const char *key_id,
    int64_t now_ms)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, key_id);
	qesd_pg_i64(&p, now_ms);
	return update_one(tx, sql_key_revoke, &p, "revoking API key");
}

static int
pg_key_touch(qesd_tx *tx, const qesd_key_use *u)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, u->tenant_id);
	qesd_pg_text(&p, u->key_id);
	qesd_pg_i64(&p, u->used_at_ms);
	return qesd_pg_exec(tx, sql_key_touch, &p, "recording API key use",
	    NULL, NULL);
}

/* ---- audit ---- */

static int
read_point(qesd_tx *tx, const char *sql, const char *tenant_id,
    uint64_t *seq, uint8_t hash[QES_AUDIT_HASH_LEN], const char *what)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int64_t v;
	int r;

	qesd_pg_text(&p, tenant_id);
	if ((r = qesd_pg_exec(tx, sql, &p, what, &res, NULL)) != 0)
		return r;
	if (PQntuples(res) == 0)
		r = QES_ERR_NOT_FOUND;
	else if (qesd_pg_col_i64(res, 0, 0, 0, &v) != 0 || v < 0 ||
	    qesd_pg_col_blob(res, 0, 1, hash, QES_AUDIT_HASH_LEN, NULL) != 0)
		r = qesd_pg_corrupt(tx, what);
	else
		*seq = (uint64_t)v;
	PQclear(res);
	return r;
}

/*
 * The head row. In a write transaction it is locked FOR UPDATE until the
 * transaction ends: appenders of one tenant, on any replica, take turns,
 * and READ COMMITTED lets the next one see the head the previous one
 * committed.
 */
static int
pg_audit_head(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	return read_point(tx, tx->mode == QESD_TX_WRITE ? sql_head_lock :
	    sql_head_get, tenant_id, seq, hash, "audit_heads");
}

static int
pg_audit_anchor(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	qesd_tenant t;
	int r;

	r = read_point(tx, sql_anchor_get, tenant_id, seq, hash,
	    "audit_anchors");
	if (r != QES_ERR_NOT_FOUND)
		return r;
	if ((r = pg_tenant_get(tx, tenant_id, &t)) != 0)
		return r;
	*seq = 0;
	memset(hash, 0, QES_AUDIT_HASH_LEN);
	return 0;
}

static int
pg_audit_insert(qesd_tx *tx, const qes_audit_record *rec)
{
	qesd_pg_params p = { 0 };
	uint64_t changed = 0;
	int r;

	qesd_pg_text(&p, rec->tenant_id);
	qesd_pg_i64(&p, (int64_t)rec->seq);
	qesd_pg_text(&p, rec->id);
	qesd_pg_i64(&p, rec->time_ms);
	qesd_pg_text(&p, rec->type);
	qesd_pg_text(&p, rec->request_id);
	qesd_pg_text(&p, rec->key_id);
	qesd_pg_text(&p, rec->device_id);
	qesd_pg_text(&p, rec->route);
	qesd_pg_text(&p, rec->method);
	qesd_pg_opt_i64(&p, rec->status);
	qesd_pg_text(&p, rec->client_addr);
	qesd_pg_blob(&p, rec->has_addr_salt ? rec->addr_salt : NULL,
	    QES_AUDIT_SALT_LEN);
	qesd_pg_blob(&p, rec->has_addr_digest ? rec->addr_digest : NULL,
	    QES_AUDIT_HASH_LEN);
	qesd_pg_text(&p, rec->details);
	qesd_pg_blob(&p, rec->prev_hash, QES_AUDIT_HASH_LEN);
	qesd_pg_blob(&p, rec->hash, QES_AUDIT_HASH_LEN);
	if ((r = qesd_pg_exec(tx, sql_audit_insert, &p,
	    "appending audit record", NULL, NULL)) != 0)
		return r;
	/* compare-and-set: the head must still be where we linked */
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, rec->tenant_id);
	qesd_pg_i64(&p, (int64_t)rec->seq);
	qesd_pg_blob(&p, rec->hash, QES_AUDIT_HASH_LEN);
	qesd_pg_i64(&p, (int64_t)rec->seq - 1);
	if ((r = qesd_pg_exec(tx, sql_head_advance, &p, "moving audit head",
	    NULL, &changed)) != 0)
		return r;
	if (changed != 1) {
		snprintf(tx->errmsg, sizeof(tx->errmsg),
		    "audit head of %s moved during append", rec->tenant_id);
		tx->failed = QES_ERR_CONFLICT;
		return QES_ERR_CONFLICT;
	}
	return 0;
}

static int
read_audit(const PGresult *res, int row, qes_audit_record *r)
{
	int64_t seq, status;
	int rc;

	memset(r, 0, sizeof(*r));
	if (qesd_pg_col_i64(res, row, 1, 0, &seq) != 0 ||
	    qesd_pg_col_i64(res, row, 10, 1, &status) != 0 ||
	    qesd_pg_col_i64(res, row, 3, 0, &r->time_ms) != 0 ||
	    seq <= 0 || status < 0 || status > QES_AUDIT_STATUS_MAX)
		return -1;
	r->seq = (uint64_t)seq;
	r->status = (int)status;
	if ((rc = qesd_pg_col_dup(res, row, 0, QES_AUDIT_ID_MAX,
	    &r->tenant_id)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 2, QES_AUDIT_ID_MAX, &r->id)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 4, QES_AUDIT_STR_MAX,
	    &r->type)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 5, QES_AUDIT_STR_MAX,
	    &r->request_id)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 6, QES_AUDIT_STR_MAX,
	    &r->key_id)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 7, QES_AUDIT_STR_MAX,
	    &r->device_id)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 8, QES_AUDIT_STR_MAX,
	    &r->route)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 9, QES_AUDIT_STR_MAX,
	    &r->method)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 11, QES_AUDIT_STR_MAX,
	    &r->client_addr)) != 0 ||
	    (rc = qesd_pg_col_dup(res, row, 14, QES_AUDIT_DETAILS_MAX,
	    &r->details)) != 0)
		goto fail;
	rc = -1;
	if (r->tenant_id == NULL || r->id == NULL || r->type == NULL ||
	    qesd_pg_col_blob(res, row, 12, r->addr_salt, QES_AUDIT_SALT_LEN,
	    &r->has_addr_salt) != 0 ||
	    qesd_pg_col_blob(res, row, 13, r->addr_digest, QES_AUDIT_HASH_LEN,
	    &r->has_addr_digest) != 0 ||
	    qesd_pg_col_blob(res, row, 15, r->prev_hash, QES_AUDIT_HASH_LEN,
	    NULL) != 0 ||
	    qesd_pg_col_blob(res, row, 16, r->hash, QES_AUDIT_HASH_LEN,
	    NULL) != 0)
		goto fail;
	/* no semantic check: a tampered record must reach the verifier */
	return 0;
 fail:
	qes_audit_record_clear(r);
	return rc;
}

/*
 * One statement per combination of filters (fixed fragments only; values
 * are always parameters), so that each can use its index; 32 texts, built
 * once.
 */
enum {
	F_SINCE = 1, F_UNTIL = 2, F_TYPE = 4, F_DEVICE = 8, F_KEY = 16,
	F_COMBINATIONS = 32
};
static char list_sql[F_COMBINATIONS][512];
static pthread_once_t list_once = PTHREAD_ONCE_INIT;

static void
list_sql_build(void)
{
	unsigned m;
	size_t off, sz = sizeof(list_sql[0]);
	char *s;

	for (m = 0; m < F_COMBINATIONS; m++) {
		s = list_sql[m];
		off = (size_t)snprintf(s, sz, "SELECT " AUDIT_COLS
		    " FROM audit_records WHERE tenant_id = $1 AND seq > $2");
		if (m & F_SINCE)
			off += (size_t)snprintf(s + off, sz - off,
			    " AND time_ms >= $3");
		if (m & F_UNTIL)
			off += (size_t)snprintf(s + off, sz - off,
			    " AND time_ms < $4");
		if (m & F_TYPE)
			off += (size_t)snprintf(s + off, sz - off,
			    " AND type = $5");
		if (m & F_DEVICE)
			off += (size_t)snprintf(s + off, sz - off,
			    " AND device_id = $6");
		if (m & F_KEY)
			off += (size_t)snprintf(s + off, sz - off,
			    " AND key_id = $7");
		snprintf(s + off, sz - off, " ORDER BY seq LIMIT $8");
	}
}

static int
pg_audit_list(qesd_tx *tx, const char *tenant_id, const qesd_audit_filter *f,
    uint64_t after_seq, size_t limit, qes_audit_record *out, size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	unsigned mask = 0;
	int r = 0, rr, i;

	*n = 0;
	pthread_once(&list_once, list_sql_build);
	mask |= f->since_ms ? F_SINCE : 0;
	mask |= f->until_ms ? F_UNTIL : 0;
	mask |= f->type ? F_TYPE : 0;
	mask |= f->device_id ? F_DEVICE : 0;
	mask |= f->key_id ? F_KEY : 0;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, (int64_t)after_seq);
	qesd_pg_opt_i64(&p, f->since_ms);
	qesd_pg_opt_i64(&p, f->until_ms);
	qesd_pg_text(&p, f->type);
	qesd_pg_text(&p, f->device_id);
	qesd_pg_text(&p, f->key_id);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, list_sql[mask], &p,
	    "listing audit records", &res, NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if ((rr = read_audit(res, i, &out[*n])) != 0) {
			r = rr == QES_ERR_ALLOC ? rr :
			    qesd_pg_corrupt(tx, "audit_records");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	if (r != 0)
		while (*n > 0)
			qes_audit_record_clear(&out[--(*n)]);
	return r;
}

static int
pg_audit_purge(qesd_tx *tx, const char *tenant_id, int64_t before_ms,
    int64_t now_ms, uint64_t *through_seq, uint64_t *count)
{
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN], head_hash[QES_AUDIT_HASH_LEN];
	uint8_t hash[QES_AUDIT_HASH_LEN];
	uint64_t anchor, head, keep = 0, through, changed = 0;
	qesd_pg_params p = { 0 };
	PGresult *res;
	int64_t v;
	int r;

	*through_seq = *count = 0;
	if ((r = pg_audit_anchor(tx, tenant_id, &anchor, anchor_hash)) != 0 ||
	    (r = pg_audit_head(tx, tenant_id, &head, head_hash)) != 0)
		return r;
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, (int64_t)anchor);
	qesd_pg_i64(&p, before_ms);
	if ((r = qesd_pg_exec(tx, sql_purge_first_kept, &p,
	    "finding purge boundary", &res, NULL)) != 0)
		return r;
	if (PQntuples(res) > 0) {
		if (qesd_pg_col_i64(res, 0, 0, 0, &v) != 0 || v <= 0) {
			PQclear(res);
			return qesd_pg_corrupt(tx, "audit_records");
		}
		keep = (uint64_t)v;
	}
	PQclear(res);
	through = keep != 0 ? keep - 1 : head;
	if (through <= anchor)
		return 0;
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, (int64_t)through);
	if ((r = qesd_pg_exec(tx, sql_audit_hash_at, &p, "reading audit record",
	    &res, NULL)) != 0)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		/* the chain has a hole where the purge must cut */
		snprintf(tx->errmsg, sizeof(tx->errmsg),
		    "audit record %llu of %s is missing: verify the chain",
		    (unsigned long long)through, tenant_id);
		return tx->failed = QES_ERR_CHAIN_BROKEN;
	}
	r = qesd_pg_col_blob(res, 0, 0, hash, QES_AUDIT_HASH_LEN, NULL);
	PQclear(res);
	if (r != 0)
		return qesd_pg_corrupt(tx, "audit_records");
	/* the anchor first: the delete trigger allows only what is behind it */
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, (int64_t)through);
	qesd_pg_blob(&p, hash, QES_AUDIT_HASH_LEN);
	qesd_pg_i64(&p, before_ms);
	qesd_pg_i64(&p, now_ms);
	if ((r = qesd_pg_exec(tx, sql_anchor_put, &p, "moving audit anchor",
	    NULL, NULL)) != 0)
		return r;
	memset(&p, 0, sizeof(p));
	qesd_pg_text(&p, tenant_id);
	qesd_pg_i64(&p, (int64_t)through);
	if ((r = qesd_pg_exec(tx, sql_purge_delete, &p,
	    "purging audit records", NULL, &changed)) != 0)
		return r;
	*through_seq = through;
	*count = changed;
	return 0;
}

static int
pg_audit_erase_addrs(qesd_tx *tx, const char *tenant_id, int64_t before_ms,
    uint64_t *count)
{
	static const char *const sqls[] = { sql_erase_audit,
	    sql_erase_sessions };
	qesd_pg_params p;
	uint64_t changed;
	size_t i;
	int r;

	*count = 0;
	for (i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		memset(&p, 0, sizeof(p));
		qesd_pg_text(&p, tenant_id);
		qesd_pg_i64(&p, before_ms);
		changed = 0;
		if ((r = qesd_pg_exec(tx, sqls[i], &p,
		    "erasing client addresses", NULL, &changed)) != 0)
			return r;
		*count += changed;
	}
	return 0;
}

const struct qesd_store_ops qesd_store_pg_ops = {
	.name = "postgres",
	.open = pg_open,
	.close = pg_close,
	.ping = pg_ping,
	.begin = pg_begin,
	.commit = pg_commit,
	.end = pg_end,
	.tenant_insert = pg_tenant_insert,
	.tenant_get = pg_tenant_get,
	.tenant_list = pg_tenant_list,
	.key_insert = pg_key_insert,
	.key_get = pg_key_get,
	.key_list = pg_key_list,
	.key_rotate = pg_key_rotate,
	.key_revoke = pg_key_revoke,
	.key_touch = pg_key_touch,
	.audit_head = pg_audit_head,
	.audit_insert = pg_audit_insert,
	.audit_anchor = pg_audit_anchor,
	.audit_list = pg_audit_list,
	.audit_purge = pg_audit_purge,
	.audit_erase_addrs = pg_audit_erase_addrs,
	.jobs = &qesd_store_pg_job_ops,
	.devices = &qesd_store_pg_device_ops,
};
