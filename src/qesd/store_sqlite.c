/*
 * store_sqlite.c - the SQLite backend of the store (store = sqlite:PATH).
 *
 * Connections. A small pool (default 4) of connections opened at start,
 * handed out per transaction under one mutex. Chosen over one connection
 * per worker thread because a transaction handle then owns exactly one
 * connection whatever thread runs it, the worker pool can be resized
 * without touching the store, and PostgreSQL needs the same pool shape.
 * SQLite in WAL mode lets readers run concurrently with one writer; writers
 * of this process are serialised here, before BEGIN IMMEDIATE, so they
 * queue on a condition variable instead of spinning in SQLite's busy
 * handler. busy_timeout still covers other processes on the same file
 * (`qesd admin ...` while the server runs).
 *
 * The audit chain. Appends run in write transactions, which this
 * serialisation (and BEGIN IMMEDIATE across processes) makes strictly
 * one at a time, so reading the head and writing seq+1 cannot race. As a
 * second line of defence (tenant_id, seq) is UNIQUE, the head moves only by
 * compare-and-set from seq-1, and triggers refuse to change a stored record
 * (other than erasing its address) or to delete one not behind the anchor.
 *
 * Durability: synchronous=FULL. With WAL, NORMAL is safe against
 * corruption but can lose the last committed transactions on power loss;
 * here that could resurrect a revoked API key or lose acknowledged audit
 * records, so every commit is fsynced. Group commit (store.c) keeps the
 * cost of per-request audit records down.
 *
 * Other settings: foreign_keys=ON (checked), secure_delete=ON (erased
 * addresses and purged records are overwritten, not left in free space),
 * a 64 MiB cap on the WAL file left after a checkpoint,
 * defensive mode, untrusted schema, extended error codes, a 0600 database file, application_id
 * 'qesd' so another program's database is never migrated by mistake.
 * Every statement is prepared once per connection; every return code is
 * checked and mapped to a QES_ERR_* (SQLITE_BUSY -> QES_ERR_BUSY; I/O,
 * full disk, corruption -> QES_ERR_UNAVAILABLE).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "qes/audit.h"
#include "qes/err.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"
#include "store_sqlite.h"

#define APPLICATION_ID 0x71657364	/* "qesd" */
#define POOL_DEFAULT 4
#define POOL_MAX 64
#define TIMEOUT_DEFAULT_MS 5000

/* ---- schema ---- */

/*
 * Migration 1: everything issue 3 needs and the tables issue 4 fills.
 * Every tenant table carries tenant_id, and child rows reference their
 * parent by (tenant_id, id), so a row can never point into another tenant.
 * Ids are random text ("ten_..."), times are ms since 1970 UTC, hashes are
 * 32-byte blobs. Secrets appear only as HMACs computed by the caller.
 */
static const char migration_1[] =
"CREATE TABLE tenants (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  name TEXT NOT NULL UNIQUE,\n"
"  created_at_ms INTEGER NOT NULL\n"
") STRICT;\n"

"CREATE TABLE api_keys (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  tenant_id TEXT NOT NULL REFERENCES tenants (id),\n"
"  name TEXT NOT NULL DEFAULT '',\n"
"  scopes INTEGER NOT NULL CHECK (scopes BETWEEN 0 AND 4294967295),\n"
"  secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),\n"
"  prev_secret_hash BLOB CHECK (length(prev_secret_hash) = 32),\n"
"  prev_valid_until_ms INTEGER,\n"
"  created_by_key_id TEXT,\n"
"  created_at_ms INTEGER NOT NULL,\n"
"  expires_at_ms INTEGER,\n"
"  rotated_at_ms INTEGER,\n"
"  revoked_at_ms INTEGER,\n"
"  last_used_at_ms INTEGER,\n"
"  UNIQUE (tenant_id, id)\n"
") STRICT;\n"
"CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at_ms, id);\n"

/* head: where the next record links; anchor: where the stored chain starts */
"CREATE TABLE audit_heads (\n"
"  tenant_id TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),\n"
"  seq INTEGER NOT NULL CHECK (seq >= 0),\n"
"  hash BLOB NOT NULL CHECK (length(hash) = 32)\n"
") STRICT;\n"
"CREATE TABLE audit_anchors (\n"
"  tenant_id TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),\n"
"  seq INTEGER NOT NULL CHECK (seq > 0),\n"
"  hash BLOB NOT NULL CHECK (length(hash) = 32),\n"
"  purged_before_ms INTEGER NOT NULL,\n"
"  created_at_ms INTEGER NOT NULL\n"
") STRICT;\n"
"CREATE TABLE audit_records (\n"
"  tenant_id TEXT NOT NULL REFERENCES tenants (id),\n"
"  seq INTEGER NOT NULL CHECK (seq > 0),\n"
"  id TEXT NOT NULL UNIQUE,\n"
"  time_ms INTEGER NOT NULL,\n"
"  type TEXT NOT NULL,\n"
"  request_id TEXT,\n"
"  key_id TEXT,\n"
"  device_id TEXT,\n"
"  route TEXT,\n"
"  method TEXT,\n"
"  status INTEGER,\n"
"  client_addr TEXT,\n"
"  addr_salt BLOB CHECK (length(addr_salt) = 32),\n"
"  addr_digest BLOB CHECK (length(addr_digest) = 32),\n"
"  details TEXT,\n"
"  prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),\n"
"  hash BLOB NOT NULL CHECK (length(hash) = 32),\n"
"  UNIQUE (tenant_id, seq)\n"
") STRICT;\n"
"CREATE INDEX audit_by_time ON audit_records (tenant_id, time_ms);\n"
"CREATE INDEX audit_by_type ON audit_records (tenant_id, type, seq);\n"
"CREATE INDEX audit_by_key ON audit_records (tenant_id, key_id, seq)\n"
"  WHERE key_id IS NOT NULL;\n"
"CREATE INDEX audit_by_device ON audit_records (tenant_id, device_id, seq)\n"
"  WHERE device_id IS NOT NULL;\n"
/* append-only, against bugs (someone with the file can drop these, and
 * the chain is what catches that) */
"CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records\n"
"WHEN NEW.tenant_id IS NOT OLD.tenant_id OR NEW.seq IS NOT OLD.seq\n"
"  OR NEW.id IS NOT OLD.id OR NEW.time_ms IS NOT OLD.time_ms\n"
"  OR NEW.type IS NOT OLD.type OR NEW.request_id IS NOT OLD.request_id\n"
"  OR NEW.key_id IS NOT OLD.key_id OR NEW.device_id IS NOT OLD.device_id\n"
"  OR NEW.route IS NOT OLD.route OR NEW.method IS NOT OLD.method\n"
"  OR NEW.status IS NOT OLD.status OR NEW.details IS NOT OLD.details\n"
"  OR NEW.addr_digest IS NOT OLD.addr_digest\n"
"  OR NEW.prev_hash IS NOT OLD.prev_hash OR NEW.hash IS NOT OLD.hash\n"
"  OR (NEW.client_addr IS NOT NULL AND NEW.client_addr IS NOT OLD.client_addr)\n"
"  OR (NEW.addr_salt IS NOT NULL AND NEW.addr_salt IS NOT OLD.addr_salt)\n"
"BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;\n"
"CREATE TRIGGER audit_records_delete_behind_anchor\n"
"BEFORE DELETE ON audit_records\n"
"WHEN OLD.seq > coalesce((SELECT seq FROM audit_anchors\n"
"                         WHERE tenant_id = OLD.tenant_id), 0)\n"
"BEGIN SELECT RAISE(ABORT, 'audit records are deleted only behind the anchor'); END;\n"

/* issue 4: devices, enrollments, sessions, jobs */
"CREATE TABLE devices (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  tenant_id TEXT NOT NULL REFERENCES tenants (id),\n"
"  name TEXT NOT NULL,\n"
"  public_key BLOB NOT NULL,\n"			/* DER SubjectPublicKeyInfo */
"  enrollment_id TEXT,\n"
"  enrolled_at_ms INTEGER NOT NULL,\n"
"  revoked_at_ms INTEGER,\n"
"  inventory TEXT,\n"				/* last inventory (JSON) */
"  inventory_at_ms INTEGER,\n"
"  UNIQUE (tenant_id, id)\n"
") STRICT;\n"
"CREATE INDEX devices_by_tenant ON devices (tenant_id, enrolled_at_ms, id);\n"
"CREATE TABLE enrollments (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  tenant_id TEXT NOT NULL REFERENCES tenants (id),\n"
/* looked up by code hash alone when an agent enrolls (tenant unknown) */
"  code_hash BLOB NOT NULL UNIQUE CHECK (length(code_hash) = 32),\n"
"  device_name TEXT,\n"
"  created_by_key_id TEXT,\n"
"  created_at_ms INTEGER NOT NULL,\n"
"  expires_at_ms INTEGER NOT NULL,\n"
"  used_at_ms INTEGER,\n"
"  device_id TEXT,\n"
"  UNIQUE (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
") STRICT;\n"
"CREATE TABLE device_sessions (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  tenant_id TEXT NOT NULL,\n"
"  device_id TEXT NOT NULL,\n"
"  replica_id TEXT NOT NULL,\n"
"  agent_version TEXT,\n"
"  os TEXT,\n"
"  client_addr TEXT,\n"
"  connected_at_ms INTEGER NOT NULL,\n"
"  last_seen_at_ms INTEGER NOT NULL,\n"
"  closed_at_ms INTEGER,\n"
"  close_reason TEXT,\n"
"  UNIQUE (tenant_id, id),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
") STRICT;\n"
"CREATE INDEX device_sessions_by_device\n"
"  ON device_sessions (tenant_id, device_id, connected_at_ms);\n"
/* heartbeat expiry sweeps over open sessions (replica loss, issue 6) */
"CREATE INDEX device_sessions_open ON device_sessions (replica_id, last_seen_at_ms)\n"
"  WHERE closed_at_ms IS NULL;\n"
"CREATE TABLE jobs (\n"
"  id TEXT NOT NULL PRIMARY KEY,\n"
"  tenant_id TEXT NOT NULL REFERENCES tenants (id),\n"
"  state TEXT NOT NULL CHECK (state IN ('created', 'dispatched',\n"
"    'awaiting_user', 'signed', 'completed', 'failed', 'expired',\n"
"    'cancelled')),\n"
"  reason TEXT,\n"
"  credential_id TEXT NOT NULL,\n"
"  device_id TEXT,\n"
"  key_id TEXT,\n"
"  request TEXT NOT NULL,\n"			/* JSON: digests, algorithm, title */
"  result TEXT,\n"
"  verification_code TEXT,\n"
"  idempotency_key TEXT,\n"
"  request_hash BLOB CHECK (length(request_hash) = 32),\n"
"  created_at_ms INTEGER NOT NULL,\n"
"  updated_at_ms INTEGER NOT NULL,\n"
"  expires_at_ms INTEGER NOT NULL,\n"
"  version INTEGER NOT NULL DEFAULT 1,\n"	/* compare-and-set between replicas */
"  UNIQUE (tenant_id, id),\n"
"  UNIQUE (tenant_id, idempotency_key),\n"
"  CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),\n"
"  FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)\n"
") STRICT;\n"
"CREATE INDEX jobs_by_tenant ON jobs (tenant_id, created_at_ms, id);\n"
"CREATE INDEX jobs_live ON jobs (expires_at_ms)\n"
"  WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled');\n";

/*
 * Migration 2 (jobs, issue 4): the session a job was sent on, so that a
 * closing session fails only its own jobs (a device that reconnected keeps
 * the jobs sent on the new session); completed jobs by age, for the
 * retention that drops their signatures.
 */
static const char migration_2[] =
"ALTER TABLE jobs ADD COLUMN session_id TEXT;\n"
"CREATE INDEX jobs_completed ON jobs (updated_at_ms)\n"
"  WHERE state = 'completed';\n";

/* Migration 3 (devices, issue 4): in store_sqlite_devices.c. */
extern const char qesd_sq_migration_devices[];
/* Migration 4 (AdES job documents, issue 5): in store_sqlite_jobs.c. */
extern const char qesd_sq_migration_docs[];
/* Migration 5 (replica heartbeats, issue 6): in store_sqlite_devices.c. */
extern const char qesd_sq_migration_replicas[];

/* Append only; a version once released never changes. */
static const struct {
	int version;
	const char *sql;
} migrations[] = {
	{ 1, migration_1 },
	{ 2, migration_2 },
	{ 3, qesd_sq_migration_devices },
	{ 4, qesd_sq_migration_docs },
	{ 5, qesd_sq_migration_replicas },
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

enum stmt_id {
	ST_BEGIN_READ,
	ST_BEGIN_WRITE,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PING,
	ST_TENANT_INSERT,
	ST_HEAD_INSERT,
	ST_TENANT_GET,
	ST_TENANT_LIST,
	ST_KEY_INSERT,
	ST_KEY_GET_AUTH,
	ST_KEY_GET,
	ST_KEY_LIST,
	ST_KEY_ROTATE,
	ST_KEY_REVOKE,
	ST_KEY_TOUCH,
	ST_HEAD_GET,
	ST_HEAD_ADVANCE,
	ST_AUDIT_INSERT,
	ST_ANCHOR_GET,
	ST_ANCHOR_PUT,
	ST_PURGE_FIRST_KEPT,
	ST_AUDIT_HASH_AT,
	ST_PURGE_DELETE,
	ST_ERASE_AUDIT,
	ST_ERASE_SESSIONS,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN_READ] = "BEGIN DEFERRED",
	[ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PING] = "SELECT max(version) FROM schema_version",
	[ST_TENANT_INSERT] =
	    "INSERT INTO tenants (id, name, created_at_ms) VALUES (?1, ?2, ?3)",
	[ST_HEAD_INSERT] =
	    "INSERT INTO audit_heads (tenant_id, seq, hash) "
	    "VALUES (?1, 0, zeroblob(32))",
	[ST_TENANT_GET] =
	    "SELECT id, name, created_at_ms FROM tenants WHERE id = ?1",
	[ST_TENANT_LIST] =
	    "SELECT id, name, created_at_ms FROM tenants WHERE id > ?1 "
	    "ORDER BY id LIMIT ?2",
	[ST_KEY_INSERT] =
	    "INSERT INTO api_keys (" KEY_COLS ") VALUES "
	    "(?1, ?2, ?3, ?4, ?5, NULL, NULL, ?6, ?7, ?8, NULL, NULL, NULL)",
	/* authentication: the tenant is what this lookup finds out */
	[ST_KEY_GET_AUTH] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1",
	[ST_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys "
	    "WHERE tenant_id = ?1 AND id = ?2",
	[ST_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys "
	    "WHERE tenant_id = ?1 AND (created_at_ms, id) > (?2, ?3) "
	    "ORDER BY created_at_ms, id LIMIT ?4",
	[ST_KEY_ROTATE] =
	    "UPDATE api_keys SET prev_secret_hash = secret_hash, "
	    "prev_valid_until_ms = ?4, secret_hash = ?3, rotated_at_ms = ?5 "
	    "WHERE tenant_id = ?1 AND id = ?2 AND revoked_at_ms IS NULL",
	[ST_KEY_REVOKE] =
	    "UPDATE api_keys SET revoked_at_ms = ?3, prev_secret_hash = NULL, "
	    "prev_valid_until_ms = NULL "
	    "WHERE tenant_id = ?1 AND id = ?2 AND revoked_at_ms IS NULL",
	[ST_KEY_TOUCH] =
	    "UPDATE api_keys SET last_used_at_ms = ?3 "
	    "WHERE tenant_id = ?1 AND id = ?2 "
	    "AND (last_used_at_ms IS NULL OR last_used_at_ms < ?3)",
	[ST_HEAD_GET] = "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?1",
	[ST_HEAD_ADVANCE] =
	    "UPDATE audit_heads SET seq = ?2, hash = ?3 "
	    "WHERE tenant_id = ?1 AND seq = ?4",
	[ST_AUDIT_INSERT] = "INSERT INTO audit_records (" AUDIT_COLS ") VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
	    "?15, ?16, ?17)",
	[ST_ANCHOR_GET] =
	    "SELECT seq, hash FROM audit_anchors WHERE tenant_id = ?1",
	[ST_ANCHOR_PUT] =
	    "INSERT INTO audit_anchors (tenant_id, seq, hash, purged_before_ms, "
	    "created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
	    "ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, "
	    "hash = excluded.hash, purged_before_ms = excluded.purged_before_ms, "
	    "created_at_ms = excluded.created_at_ms "
	    "WHERE excluded.seq > audit_anchors.seq",
	/* walk the chain in seq order from the anchor ("+" keeps the planner
	 * off the time index, which would visit every newer record) */
	[ST_PURGE_FIRST_KEPT] =
	    "SELECT seq FROM audit_records WHERE tenant_id = ?1 AND seq > ?2 "
	    "AND +time_ms >= ?3 ORDER BY seq LIMIT 1",
	[ST_AUDIT_HASH_AT] =
	    "SELECT hash FROM audit_records WHERE tenant_id = ?1 AND seq = ?2",
	[ST_PURGE_DELETE] =
	    "DELETE FROM audit_records WHERE tenant_id = ?1 AND seq <= ?2",
	[ST_ERASE_AUDIT] =
	    "UPDATE audit_records SET client_addr = NULL, addr_salt = NULL "
	    "WHERE tenant_id = ?1 AND time_ms < ?2 "
	    "AND (client_addr IS NOT NULL OR addr_salt IS NOT NULL)",
	[ST_ERASE_SESSIONS] =
	    "UPDATE device_sessions SET client_addr = NULL "
	    "WHERE tenant_id = ?1 AND closed_at_ms < ?2 "
	    "AND client_addr IS NOT NULL",
};

/* audit list: one statement per combination of filters, built on demand */
enum {
	F_SINCE = 1, F_UNTIL = 2, F_TYPE = 4, F_DEVICE = 8, F_KEY = 16,
	F_COMBINATIONS = 32
};

/* ---- pool ---- */

struct sq_store;

/* statements of the per-concern files (store_sqlite.h), by SQL address */
#define EXT_STMTS 64
struct sq_ext_stmt {
	const char *sql;
	sqlite3_stmt *stmt;
};

struct sq_conn {
	struct qesd_tx tx;		/* first: the handle callers get */
	struct sq_store *st;
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
	sqlite3_stmt *list_stmt[F_COMBINATIONS];
	struct sq_ext_stmt ext[EXT_STMTS];
	int in_use;
	int writer;			/* holds the store's writer slot */
};

struct sq_store {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int writer_busy;
	unsigned n_conns;
	struct sq_conn *conns;
	unsigned acquire_timeout_ms;
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

/* A free connection (and for writers the writer slot), waiting at most
 * acquire_timeout_ms: QES_ERR_BUSY when the pool stays exhausted. */
static int
pool_acquire(struct sq_store *st, int write, struct sq_conn **out)
{
	struct timespec deadline;
	unsigned i;
	int rc = 0;

	deadline_after(&deadline, st->acquire_timeout_ms);
	pthread_mutex_lock(&st->mu);
	for (;;) {
		if (!write || !st->writer_busy) {
			for (i = 0; i < st->n_conns; i++)
				if (!st->conns[i].in_use)
					break;
			if (i < st->n_conns)
				break;
		}
		if (rc == ETIMEDOUT) {
			pthread_mutex_unlock(&st->mu);
			return QES_ERR_BUSY;
		}
		rc = pthread_cond_timedwait(&st->cv, &st->mu, &deadline);
	}
	st->conns[i].in_use = 1;
	if (write) {
		st->writer_busy = 1;
		st->conns[i].writer = 1;
	}
	pthread_mutex_unlock(&st->mu);
	*out = &st->conns[i];
	return 0;
}

static void
pool_release(struct sq_conn *c)
{
	struct sq_store *st = c->st;

	pthread_mutex_lock(&st->mu);
	c->in_use = 0;
	if (c->writer) {
		c->writer = 0;
		st->writer_busy = 0;
	}
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

/* ---- errors ---- */

static int
map_rc(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return QES_ERR_CONFLICT;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return QES_ERR_NOT_FOUND;	/* a parent that does not exist */
	case SQLITE_CONSTRAINT_TRIGGER:
		return QES_ERR_INTERNAL;	/* code tried to rewrite history */
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return QES_ERR_BUSY;
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return QES_ERR_INVALID_ARG;
	case SQLITE_NOMEM:
		return QES_ERR_ALLOC;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_PROTOCOL:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return QES_ERR_UNAVAILABLE;
	}
	return QES_ERR_INTERNAL;
}

/*
 * A failed SQLite call: map it, note what failed (SQLite's messages name
 * tables and columns, never values, so no secret can leak), and poison the
 * transaction - PostgreSQL aborts a transaction on any error, so both
 * backends behave alike.
 */
static int
sq_fail(struct sq_conn *c, int rc, const char *what)
{
	int r = map_rc(rc);

	snprintf(c->tx.errmsg, sizeof(c->tx.errmsg), "%s: %s (%s)", what,
	    sqlite3_errmsg(c->db), sqlite3_errstr(rc));
	c->tx.failed = r;
	return r;
}

/* A row that breaks the schema's own rules (edited file, bug). */
static int
sq_corrupt(struct sq_conn *c, const char *what)
{
	snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
	    "malformed row in %s", what);
	c->tx.failed = QES_ERR_FORMAT;
	return QES_ERR_FORMAT;
}

static void
done(sqlite3_stmt *s)
{
	if (s != NULL) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
}

/* ---- binding and reading ---- */

static int
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static int
bind_blob(sqlite3_stmt *s, int i, const void *v, size_t len)
{
	if (v == NULL)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_blob(s, i, v, (int)len, SQLITE_STATIC);
}

/* Times and counts where 0 means unset are NULL in the database. */
static int
bind_opt_i64(sqlite3_stmt *s, int i, int64_t v)
{
	if (v == 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_int64(s, i, v);
}

static int
col_text(sqlite3_stmt *s, int i, char *dst, size_t size, int nullable)
{
	const unsigned char *t;
	int n;

	if (sqlite3_column_type(s, i) == SQLITE_NULL) {
		dst[0] = '\0';
		return nullable ? 0 : -1;
	}
	if ((t = sqlite3_column_text(s, i)) == NULL)
		return -1;
	n = sqlite3_column_bytes(s, i);
	if (n < 0 || (size_t)n >= size || memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* 0 ok, -1 malformed, QES_ERR_ALLOC */
static int
col_dup(sqlite3_stmt *s, int i, size_t max, char **out)
{
	const unsigned char *t;
	int n;

	*out = NULL;
	if (sqlite3_column_type(s, i) == SQLITE_NULL)
		return 0;
	if ((t = sqlite3_column_text(s, i)) == NULL)
		return -1;
	n = sqlite3_column_bytes(s, i);
	if (n < 0 || (size_t)n > max || memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(*out, t, (size_t)n);
	(*out)[n] = '\0';
	return 0;
}

/* Exactly len bytes; NULL allowed only when has != NULL. */
static int
col_blob(sqlite3_stmt *s, int i, uint8_t *dst, size_t len, int *has)
{
	const void *b;

	if (has != NULL)
		*has = 0;
	if (sqlite3_column_type(s, i) == SQLITE_NULL)
		return has != NULL ? 0 : -1;
	if (sqlite3_column_type(s, i) != SQLITE_BLOB ||
	    (size_t)sqlite3_column_bytes(s, i) != len ||
	    (b = sqlite3_column_blob(s, i)) == NULL)
		return -1;
	memcpy(dst, b, len);
	if (has != NULL)
		*has = 1;
	return 0;
}

static int64_t
col_opt_i64(sqlite3_stmt *s, int i)
{
	return sqlite3_column_type(s, i) == SQLITE_NULL ? 0 :
	    sqlite3_column_int64(s, i);
}

/* ---- opening: connections and migrations ---- */

static int
exec_sql(sqlite3 *db, const char *sql, const char *what, char *err,
    size_t err_len)
{
	char *msg = NULL;
	int rc;

	if ((rc = sqlite3_exec(db, sql, NULL, NULL, &msg)) != SQLITE_OK) {
		snprintf(err, err_len, "%s: %s", what,
		    msg != NULL ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return map_rc(rc);
	}
	return 0;
}

/* One integer or text result of a single-row query. */
static int
query_one(sqlite3 *db, const char *sql, int64_t *iv, char *tv, size_t tv_len,
    char *err, size_t err_len)
{
	sqlite3_stmt *s = NULL;
	int rc, r = 0;

	if ((rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL)) != SQLITE_OK)
		goto fail;
	if ((rc = sqlite3_step(s)) != SQLITE_ROW)
		goto fail;
	if (iv != NULL)
		*iv = sqlite3_column_int64(s, 0);
	if (tv != NULL)
		snprintf(tv, tv_len, "%s",
		    sqlite3_column_text(s, 0) != NULL ?
		    (const char *)sqlite3_column_text(s, 0) : "");
	goto out;
 fail:
	snprintf(err, err_len, "%s: %s", sql, sqlite3_errmsg(db));
	r = rc == SQLITE_DONE ? QES_ERR_INTERNAL : map_rc(rc);
 out:
	sqlite3_finalize(s);
	return r;
}

static int
conn_open(struct sq_conn *c, const char *path, const qesd_store_config *cfg,
    char *err, size_t err_len)
{
	char mode[16];
	int64_t on = 0;
	int rc, r;

	rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
	    SQLITE_OPEN_PRIVATECACHE, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, err_len, "cannot open database %s: %s", path,
		    c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		return QES_ERR_UNAVAILABLE;
	}
	sqlite3_extended_result_codes(c->db, 1);
	if ((rc = sqlite3_busy_timeout(c->db, (int)(cfg->busy_timeout_ms ?
	    cfg->busy_timeout_ms : TIMEOUT_DEFAULT_MS))) != SQLITE_OK ||
	    (rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1,
	    NULL)) != SQLITE_OK ||
	    (rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0,
	    NULL)) != SQLITE_OK ||
	    (rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 1,
	    NULL)) != SQLITE_OK ||
	    (rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_FKEY, 1,
	    NULL)) != SQLITE_OK) {
		snprintf(err, err_len, "configuring SQLite: %s",
		    sqlite3_errstr(rc));
		return QES_ERR_INTERNAL;
	}
	/* secure_delete: erased addresses and purged records are zeroed in
	 * the file, not just unlinked (GDPR erasure means gone) */
	if ((r = exec_sql(c->db, "PRAGMA foreign_keys = ON; "
	    "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; "
	    "PRAGMA journal_size_limit = 67108864; "
	    "PRAGMA temp_store = MEMORY",
	    "configuring SQLite", err, err_len)) != 0)
		return r;
	if ((r = query_one(c->db, "PRAGMA foreign_keys", &on, NULL, 0, err,
	    err_len)) != 0)
		return r;
	if (on != 1) {
		snprintf(err, err_len, "this SQLite cannot enforce foreign keys");
		return QES_ERR_UNSUPPORTED;
	}
	if ((r = query_one(c->db, "PRAGMA journal_mode = WAL", NULL, mode,
	    sizeof(mode), err, err_len)) != 0)
		return r;
	if (strcmp(mode, "wal") != 0) {
		snprintf(err, err_len, "database %s cannot use WAL mode (%s): "
		    "put it on a local file system", path, mode);
		return QES_ERR_UNSUPPORTED;
	}
	return 0;
}

/*
 * Bring the schema to QESD_SCHEMA_VERSION, one transaction per migration
 * (BEGIN IMMEDIATE, and the version re-read inside it, so two processes
 * starting together apply each migration once). A database from a newer
 * qesd is refused rather than guessed at.
 */
static int
migrate(sqlite3 *db, const char *path, char *err, size_t err_len)
{
	struct timespec now;
	char sql[128];
	int64_t app_id = 0, tables = 0, version = 0;
	size_t i;
	int r;

	if ((r = exec_sql(db, "BEGIN IMMEDIATE", "locking database", err,
	    err_len)) != 0)
		return r;
	if ((r = query_one(db, "PRAGMA application_id", &app_id, NULL, 0, err,
	    err_len)) != 0 ||
	    (r = query_one(db, "SELECT count(*) FROM sqlite_schema", &tables,
	    NULL, 0, err, err_len)) != 0)
		goto fail;
	if (app_id != APPLICATION_ID && (app_id != 0 || tables != 0)) {
		snprintf(err, err_len, "%s is not a qesd database", path);
		r = QES_ERR_UNSUPPORTED;
		goto fail;
	}
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
	    APPLICATION_ID);
	if ((r = exec_sql(db, sql, "marking database", err, err_len)) != 0 ||
	    (r = exec_sql(db, "CREATE TABLE IF NOT EXISTS schema_version ("
	    "version INTEGER NOT NULL PRIMARY KEY, "
	    "applied_at_ms INTEGER NOT NULL) STRICT",
	    "creating schema_version", err, err_len)) != 0 ||
	    (r = query_one(db, "SELECT coalesce(max(version), 0) FROM "
	    "schema_version", &version, NULL, 0, err, err_len)) != 0)
		goto fail;
	if (version > QESD_SCHEMA_VERSION) {
		snprintf(err, err_len, "database schema version %lld is newer "
		    "than this qesd understands (%d): upgrade qesd",
		    (long long)version, QESD_SCHEMA_VERSION);
		r = QES_ERR_UNSUPPORTED;
		goto fail;
	}
	if ((r = exec_sql(db, "COMMIT", "committing", err, err_len)) != 0)
		goto fail;

	for (i = 0; i < N_MIGRATIONS; i++) {
		if (migrations[i].version <= version)
			continue;
		if ((r = exec_sql(db, "BEGIN IMMEDIATE", "locking database",
		    err, err_len)) != 0)
			return r;
		if ((r = query_one(db, "SELECT coalesce(max(version), 0) FROM "
		    "schema_version", &version, NULL, 0, err, err_len)) != 0)
			goto fail;
		if (migrations[i].version <= version) {	/* someone else did */
			if ((r = exec_sql(db, "COMMIT", "committing", err,
			    err_len)) != 0)
				goto fail;
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		snprintf(sql, sizeof(sql), "INSERT INTO schema_version "
		    "(version, applied_at_ms) VALUES (%d, %lld)",
		    migrations[i].version, (long long)now.tv_sec * 1000 +
		    now.tv_nsec / 1000000);
		if ((r = exec_sql(db, migrations[i].sql, "migrating schema",
		    err, err_len)) != 0 ||
		    (r = exec_sql(db, sql, "recording schema version", err,
		    err_len)) != 0 ||
		    (r = exec_sql(db, "COMMIT", "committing migration", err,
		    err_len)) != 0)
			goto fail;
		version = migrations[i].version;
	}
	return 0;
 fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

static int
conn_prepare(struct sq_conn *c, char *err, size_t err_len)
{
	int i, rc;

	for (i = 0; i < ST_COUNT; i++) {
		if ((rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &c->stmt[i], NULL)) != SQLITE_OK) {
			snprintf(err, err_len, "preparing statement %d: %s", i,
			    sqlite3_errmsg(c->db));
			return map_rc(rc);
		}
	}
	return 0;
}

static void
conn_close(struct sq_conn *c)
{
	int i;

	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	for (i = 0; i < F_COMBINATIONS; i++)
		sqlite3_finalize(c->list_stmt[i]);
	for (i = 0; i < EXT_STMTS; i++)
		sqlite3_finalize(c->ext[i].stmt);
	if (c->db != NULL)
		sqlite3_close(c->db);
	memset(c, 0, sizeof(*c));
}

static void sq_close(void *backend);

/* Create the file 0600 ourselves: it holds HMACs and client addresses. */
static int
create_private(const char *path, char *err, size_t err_len)
{
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	snprintf(err, err_len, "cannot create database %s: %s", path,
	    strerror(errno));
	return QES_ERR_UNAVAILABLE;
}

static int
sq_open(const char *path, const qesd_store_config *cfg, void **backend,
    char *err, size_t err_len)
{
	struct sq_store *st = NULL;
	pthread_condattr_t ca;
	unsigned i, n;
	int r = QES_ERR_ALLOC;

	*backend = NULL;
	/* one shared file: every pooled connection must see the same data */
	if (path[0] == ':' || strncmp(path, "file:", 5) == 0) {
		snprintf(err, err_len, "sqlite: needs a file path, not %s",
		    path);
		return QES_ERR_INVALID_ARG;
	}
	n = cfg->pool_size ? cfg->pool_size : POOL_DEFAULT;
	if (n > POOL_MAX) {
		snprintf(err, err_len, "pool size %u exceeds %d", n, POOL_MAX);
		return QES_ERR_INVALID_ARG;
	}
	if ((r = create_private(path, err, err_len)) != 0)
		return r;
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->conns = calloc(n, sizeof(*st->conns))) == NULL) {
		free(st);
		snprintf(err, err_len, "out of memory");
		return QES_ERR_ALLOC;
	}
	st->acquire_timeout_ms = cfg->acquire_timeout_ms ?
	    cfg->acquire_timeout_ms : TIMEOUT_DEFAULT_MS;
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&st->cv, &ca) != 0 ||
	    pthread_mutex_init(&st->mu, NULL) != 0) {
		snprintf(err, err_len, "cannot initialise pool lock");
		free(st->conns);
		free(st);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	for (i = 0; i < n; i++) {
		st->conns[i].st = st;
		st->n_conns = i + 1;
		if ((r = conn_open(&st->conns[i], path, cfg, err,
		    err_len)) != 0)
			goto fail;
		if (i == 0 && (r = migrate(st->conns[0].db, path, err,
		    err_len)) != 0)
			goto fail;
		if ((r = conn_prepare(&st->conns[i], err, err_len)) != 0)
			goto fail;
	}
	*backend = st;
	return 0;
 fail:
	sq_close(st);
	return r;
}

static void
sq_close(void *backend)
{
	struct sq_store *st = backend;
	unsigned i;

	if (st == NULL)
		return;
	/* keep the query planner's statistics fresh for the next start */
	if (st->n_conns > 0 && st->conns[0].db != NULL)
		sqlite3_exec(st->conns[0].db, "PRAGMA optimize", NULL, NULL,
		    NULL);
	for (i = 0; i < st->n_conns; i++)
		conn_close(&st->conns[i]);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	free(st->conns);
	free(st);
}

/* ---- transactions ---- */

static int
sq_begin(void *backend, qesd_tx_mode mode, qesd_tx **out)
{
	struct sq_store *st = backend;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	int rc, r;

	if ((r = pool_acquire(st, mode == QESD_TX_WRITE, &c)) != 0)
		return r;
	c->tx.errmsg[0] = '\0';
	s = c->stmt[mode == QESD_TX_WRITE ? ST_BEGIN_WRITE : ST_BEGIN_READ];
	rc = sqlite3_step(s);
	done(s);
	if (rc != SQLITE_DONE) {
		r = map_rc(rc);
		if (!sqlite3_get_autocommit(c->db))
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		pool_release(c);
		return r;
	}
	*out = &c->tx;
	return 0;
}

static int
sq_commit(qesd_tx *tx)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	int rc;

	rc = sqlite3_step(c->stmt[ST_COMMIT]);
	done(c->stmt[ST_COMMIT]);
	if (rc != SQLITE_DONE)
		return sq_fail(c, rc, "commit");
	return 0;
}

static void
sq_end(qesd_tx *tx)
{
	struct sq_conn *c = (struct sq_conn *)tx;

	if (!sqlite3_get_autocommit(c->db)) {
		sqlite3_step(c->stmt[ST_ROLLBACK]);
		done(c->stmt[ST_ROLLBACK]);
		/* a failed ROLLBACK leaves nothing better than this */
		if (!sqlite3_get_autocommit(c->db))
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	}
	pool_release(c);
}

static int
sq_ping(void *backend)
{
	struct sq_store *st = backend;
	struct sq_conn *c = NULL;
	int rc, r;

	if ((r = pool_acquire(st, 0, &c)) != 0)
		return r;
	rc = sqlite3_step(c->stmt[ST_PING]);
	done(c->stmt[ST_PING]);
	pool_release(c);
	if (rc != SQLITE_ROW)
		return map_rc(rc) == QES_ERR_BUSY ? QES_ERR_BUSY :
		    QES_ERR_UNAVAILABLE;
	return 0;
}

/* Run a statement expected to finish without rows (already bound). */
static int
run(struct sq_conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	done(s);
	if (rc != SQLITE_DONE)
		return sq_fail(c, rc, what);
	return 0;
}

/* ---- tenants ---- */

static int
sq_tenant_insert(qesd_tx *tx, const qesd_tenant *t)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_TENANT_INSERT];
	int rc, r;

	if ((rc = bind_text(s, 1, t->id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, t->name)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, t->created_at_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "adding tenant");
	}
	if ((r = run(c, s, "adding tenant")) != 0)
		return r;
	s = c->stmt[ST_HEAD_INSERT];
	if ((rc = bind_text(s, 1, t->id)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "starting audit chain");
	}
	return run(c, s, "starting audit chain");
}

static int
read_tenant(sqlite3_stmt *s, qesd_tenant *t)
{
	if (col_text(s, 0, t->id, sizeof(t->id), 0) != 0 ||
	    col_text(s, 1, t->name, sizeof(t->name), 0) != 0)
		return -1;
	t->created_at_ms = sqlite3_column_int64(s, 2);
	return 0;
}

static int
sq_tenant_get(qesd_tx *tx, const char *id, qesd_tenant *out)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_TENANT_GET];
	int rc, r = 0;

	if ((rc = bind_text(s, 1, id)) != SQLITE_OK) {
		r = sq_fail(c, rc, "reading tenant");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		r = QES_ERR_NOT_FOUND;
	else if (rc != SQLITE_ROW)
		r = sq_fail(c, rc, "reading tenant");
	else if (read_tenant(s, out) != 0)
		r = sq_corrupt(c, "tenants");
 out:
	done(s);
	return r;
}

static int
sq_tenant_list(qesd_tx *tx, const char *after_id, size_t limit,
    qesd_tenant *out, size_t *n)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_TENANT_LIST];
	int rc, r = 0;

	*n = 0;
	if ((rc = bind_text(s, 1, after_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)limit)) != SQLITE_OK) {
		r = sq_fail(c, rc, "listing tenants");
		goto out;
	}
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (read_tenant(s, &out[*n]) != 0) {
			r = sq_corrupt(c, "tenants");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = sq_fail(c, rc, "listing tenants");
 out:
	done(s);
	return r;
}

/* ---- API keys ---- */

static int
sq_key_insert(qesd_tx *tx, const qesd_api_key *k)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_KEY_INSERT];
	int rc;

	if ((rc = bind_text(s, 1, k->id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, k->tenant_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, k->name)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, k->scopes)) != SQLITE_OK ||
	    (rc = bind_blob(s, 5, k->secret_hash, QESD_HMAC_LEN)) != SQLITE_OK ||
	    (rc = bind_text(s, 6, k->created_by[0] ? k->created_by : NULL)) !=
	    SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 7, k->created_at_ms)) != SQLITE_OK ||
	    (rc = bind_opt_i64(s, 8, k->expires_at_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "adding API key");
	}
	return run(c, s, "adding API key");
}

static int
read_key(sqlite3_stmt *s, qesd_api_key *k)
{
	int64_t scopes;

	memset(k, 0, sizeof(*k));
	if (col_text(s, 0, k->id, sizeof(k->id), 0) != 0 ||
	    col_text(s, 1, k->tenant_id, sizeof(k->tenant_id), 0) != 0 ||
	    col_text(s, 2, k->name, sizeof(k->name), 0) != 0 ||
	    col_blob(s, 4, k->secret_hash, QESD_HMAC_LEN, NULL) != 0 ||
	    col_blob(s, 5, k->prev_secret_hash, QESD_HMAC_LEN,
	    &k->has_prev) != 0 ||
	    col_text(s, 7, k->created_by, sizeof(k->created_by), 1) != 0)
		return -1;
	scopes = sqlite3_column_int64(s, 3);
	if (scopes < 0 || scopes > UINT32_MAX)
		return -1;
	k->scopes = (uint32_t)scopes;
	k->prev_valid_until_ms = col_opt_i64(s, 6);
	k->created_at_ms = sqlite3_column_int64(s, 8);
	k->expires_at_ms = col_opt_i64(s, 9);
	k->rotated_at_ms = col_opt_i64(s, 10);
	k->revoked_at_ms = col_opt_i64(s, 11);
	k->last_used_at_ms = col_opt_i64(s, 12);
	return 0;
}

static int
sq_key_get(qesd_tx *tx, const char *tenant_id, const char *key_id,
    qesd_api_key *out)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s;
	int rc, r = 0;

	if (tenant_id == NULL) {
		/* authentication only: see qesd_key_get_for_auth() */
		s = c->stmt[ST_KEY_GET_AUTH];
		rc = bind_text(s, 1, key_id);
	} else {
		s = c->stmt[ST_KEY_GET];
		if ((rc = bind_text(s, 1, tenant_id)) == SQLITE_OK)
			rc = bind_text(s, 2, key_id);
	}
	if (rc != SQLITE_OK) {
		r = sq_fail(c, rc, "reading API key");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		r = QES_ERR_NOT_FOUND;
	else if (rc != SQLITE_ROW)
		r = sq_fail(c, rc, "reading API key");
	else if (read_key(s, out) != 0)
		r = sq_corrupt(c, "api_keys");
 out:
	done(s);
	return r;
}

static int
sq_key_list(qesd_tx *tx, const char *tenant_id, int64_t after_created_ms,
    const char *after_id, size_t limit, qesd_api_key *out, size_t *n)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_KEY_LIST];
	int rc, r = 0;

	*n = 0;
	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, after_created_ms)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, after_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, (int64_t)limit)) != SQLITE_OK) {
		r = sq_fail(c, rc, "listing API keys");
		goto out;
	}
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (read_key(s, &out[*n]) != 0) {
			r = sq_corrupt(c, "api_keys");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = sq_fail(c, rc, "listing API keys");
 out:
	done(s);
	return r;
}

/* Run an UPDATE on one key; NOT_FOUND when it matched no row. */
static int
update_key(struct sq_conn *c, sqlite3_stmt *s, const char *what)
{
	int r;

	if ((r = run(c, s, what)) != 0)
		return r;
	return sqlite3_changes(c->db) == 1 ? 0 : QES_ERR_NOT_FOUND;
}

static int
sq_key_rotate(qesd_tx *tx, const char *tenant_id, const char *key_id,
    const uint8_t new_hash[QESD_HMAC_LEN], int64_t prev_valid_until_ms,
    int64_t now_ms)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_KEY_ROTATE];
	int rc;

	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, key_id)) != SQLITE_OK ||
	    (rc = bind_blob(s, 3, new_hash, QESD_HMAC_LEN)) != SQLITE_OK ||
	    (rc = bind_opt_i64(s, 4, prev_valid_until_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, now_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "rotating API key");
	}
	return update_key(c, s, "rotating API key");
}

static int
sq_key_revoke(qesd_tx *tx, const char *tenant_id, const char *key_id,
    int64_t now_ms)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_KEY_REVOKE];
	int rc;

	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, key_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, now_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "revoking API key");
	}
	return update_key(c, s, "revoking API key");
}

static int
sq_key_touch(qesd_tx *tx, const qesd_key_use *u)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_KEY_TOUCH];
	int rc;

	if ((rc = bind_text(s, 1, u->tenant_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, u->key_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, u->used_at_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "recording API key use");
	}
	return run(c, s, "recording API key use");
}

/* ---- audit ---- */

/* seq and hash of a (tenant_id) row of audit_heads or audit_anchors. */
static int
read_point(struct sq_conn *c, enum stmt_id id, const char *tenant_id,
    uint64_t *seq, uint8_t hash[QES_AUDIT_HASH_LEN], const char *what)
{
	sqlite3_stmt *s = c->stmt[id];
	int64_t v;
	int rc, r = 0;

	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK) {
		r = sq_fail(c, rc, what);
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = sq_fail(c, rc, what);
		goto out;
	}
	v = sqlite3_column_int64(s, 0);
	if (v < 0 || col_blob(s, 1, hash, QES_AUDIT_HASH_LEN, NULL) != 0) {
		r = sq_corrupt(c, what);
		goto out;
	}
	*seq = (uint64_t)v;
 out:
	done(s);
	return r;
}

/*
 * The head row. In a write transaction this process' writers are already
 * serialised and BEGIN IMMEDIATE holds the database's write lock, so the
 * value cannot change before this transaction ends.
 */
static int
sq_audit_head(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	return read_point((struct sq_conn *)tx, ST_HEAD_GET, tenant_id, seq,
	    hash, "audit_heads");
}

static int
sq_audit_anchor(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	struct sq_conn *c = (struct sq_conn *)tx;
	qesd_tenant t;
	int r;

	r = read_point(c, ST_ANCHOR_GET, tenant_id, seq, hash,
	    "audit_anchors");
	if (r != QES_ERR_NOT_FOUND)
		return r;
	/* never purged: the chain starts at zero - if the tenant exists */
	if ((r = sq_tenant_get(tx, tenant_id, &t)) != 0)
		return r;
	*seq = 0;
	memset(hash, 0, QES_AUDIT_HASH_LEN);
	return 0;
}

static int
sq_audit_insert(qesd_tx *tx, const qes_audit_record *rec)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s = c->stmt[ST_AUDIT_INSERT];
	int rc, r;

	if ((rc = bind_text(s, 1, rec->tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)rec->seq)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, rec->id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, rec->time_ms)) != SQLITE_OK ||
	    (rc = bind_text(s, 5, rec->type)) != SQLITE_OK ||
	    (rc = bind_text(s, 6, rec->request_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 7, rec->key_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 8, rec->device_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 9, rec->route)) != SQLITE_OK ||
	    (rc = bind_text(s, 10, rec->method)) != SQLITE_OK ||
	    (rc = bind_opt_i64(s, 11, rec->status)) != SQLITE_OK ||
	    (rc = bind_text(s, 12, rec->client_addr)) != SQLITE_OK ||
	    (rc = bind_blob(s, 13, rec->has_addr_salt ? rec->addr_salt : NULL,
	    QES_AUDIT_SALT_LEN)) != SQLITE_OK ||
	    (rc = bind_blob(s, 14, rec->has_addr_digest ? rec->addr_digest :
	    NULL, QES_AUDIT_HASH_LEN)) != SQLITE_OK ||
	    (rc = bind_text(s, 15, rec->details)) != SQLITE_OK ||
	    (rc = bind_blob(s, 16, rec->prev_hash,
	    QES_AUDIT_HASH_LEN)) != SQLITE_OK ||
	    (rc = bind_blob(s, 17, rec->hash, QES_AUDIT_HASH_LEN)) !=
	    SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "appending audit record");
	}
	if ((r = run(c, s, "appending audit record")) != 0)
		return r;
	/* compare-and-set: the head must still be where we linked */
	s = c->stmt[ST_HEAD_ADVANCE];
	if ((rc = bind_text(s, 1, rec->tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)rec->seq)) != SQLITE_OK ||
	    (rc = bind_blob(s, 3, rec->hash, QES_AUDIT_HASH_LEN)) !=
	    SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, (int64_t)rec->seq - 1)) !=
	    SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "moving audit head");
	}
	if ((r = run(c, s, "moving audit head")) != 0)
		return r;
	if (sqlite3_changes(c->db) != 1) {
		snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
		    "audit head of %s moved during append", rec->tenant_id);
		c->tx.failed = QES_ERR_CONFLICT;
		return QES_ERR_CONFLICT;
	}
	return 0;
}

static int
read_audit(sqlite3_stmt *s, qes_audit_record *r)
{
	int64_t seq, status;
	int rc;

	memset(r, 0, sizeof(*r));
	seq = sqlite3_column_int64(s, 1);
	status = col_opt_i64(s, 10);
	if (seq <= 0 || status < 0 || status > QES_AUDIT_STATUS_MAX)
		return -1;
	r->seq = (uint64_t)seq;
	r->time_ms = sqlite3_column_int64(s, 3);
	r->status = (int)status;
	if ((rc = col_dup(s, 0, QES_AUDIT_ID_MAX, &r->tenant_id)) != 0 ||
	    (rc = col_dup(s, 2, QES_AUDIT_ID_MAX, &r->id)) != 0 ||
	    (rc = col_dup(s, 4, QES_AUDIT_STR_MAX, &r->type)) != 0 ||
	    (rc = col_dup(s, 5, QES_AUDIT_STR_MAX, &r->request_id)) != 0 ||
	    (rc = col_dup(s, 6, QES_AUDIT_STR_MAX, &r->key_id)) != 0 ||
	    (rc = col_dup(s, 7, QES_AUDIT_STR_MAX, &r->device_id)) != 0 ||
	    (rc = col_dup(s, 8, QES_AUDIT_STR_MAX, &r->route)) != 0 ||
	    (rc = col_dup(s, 9, QES_AUDIT_STR_MAX, &r->method)) != 0 ||
	    (rc = col_dup(s, 11, QES_AUDIT_STR_MAX, &r->client_addr)) != 0 ||
	    (rc = col_dup(s, 14, QES_AUDIT_DETAILS_MAX, &r->details)) != 0)
		goto fail;
	rc = -1;
	if (r->tenant_id == NULL || r->id == NULL || r->type == NULL ||
	    col_blob(s, 12, r->addr_salt, QES_AUDIT_SALT_LEN,
	    &r->has_addr_salt) != 0 ||
	    col_blob(s, 13, r->addr_digest, QES_AUDIT_HASH_LEN,
	    &r->has_addr_digest) != 0 ||
	    col_blob(s, 15, r->prev_hash, QES_AUDIT_HASH_LEN, NULL) != 0 ||
	    col_blob(s, 16, r->hash, QES_AUDIT_HASH_LEN, NULL) != 0)
		goto fail;
	/* no semantic check here: a tampered record must reach the verifier,
	 * which names it, instead of failing the listing */
	return 0;
 fail:
	qes_audit_record_clear(r);
	return rc;
}

static sqlite3_stmt *
list_stmt(struct sq_conn *c, unsigned mask, int *rc)
{
	char sql[640];
	size_t off;

	if (c->list_stmt[mask] != NULL)
		return c->list_stmt[mask];
	/* fixed fragments only: values are always bound parameters */
	off = (size_t)snprintf(sql, sizeof(sql), "SELECT " AUDIT_COLS
	    " FROM audit_records WHERE tenant_id = ?1 AND seq > ?2");
	if (mask & F_SINCE)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off,
		    " AND time_ms >= ?3");
	if (mask & F_UNTIL)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off,
		    " AND time_ms < ?4");
	if (mask & F_TYPE)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off,
		    " AND type = ?5");
	if (mask & F_DEVICE)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off,
		    " AND device_id = ?6");
	if (mask & F_KEY)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off,
		    " AND key_id = ?7");
	snprintf(sql + off, sizeof(sql) - off, " ORDER BY seq LIMIT ?8");
	*rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	    &c->list_stmt[mask], NULL);
	return *rc == SQLITE_OK ? c->list_stmt[mask] : NULL;
}

static int
sq_audit_list(qesd_tx *tx, const char *tenant_id, const qesd_audit_filter *f,
    uint64_t after_seq, size_t limit, qes_audit_record *out, size_t *n)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	sqlite3_stmt *s;
	unsigned mask = 0;
	int rc = SQLITE_OK, r = 0, rr;

	*n = 0;
	mask |= f->since_ms ? F_SINCE : 0;
	mask |= f->until_ms ? F_UNTIL : 0;
	mask |= f->type ? F_TYPE : 0;
	mask |= f->device_id ? F_DEVICE : 0;
	mask |= f->key_id ? F_KEY : 0;
	if ((s = list_stmt(c, mask, &rc)) == NULL)
		return sq_fail(c, rc, "listing audit records");
	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)after_seq)) != SQLITE_OK ||
	    ((mask & F_SINCE) &&
	    (rc = sqlite3_bind_int64(s, 3, f->since_ms)) != SQLITE_OK) ||
	    ((mask & F_UNTIL) &&
	    (rc = sqlite3_bind_int64(s, 4, f->until_ms)) != SQLITE_OK) ||
	    ((mask & F_TYPE) && (rc = bind_text(s, 5, f->type)) != SQLITE_OK) ||
	    ((mask & F_DEVICE) &&
	    (rc = bind_text(s, 6, f->device_id)) != SQLITE_OK) ||
	    ((mask & F_KEY) && (rc = bind_text(s, 7, f->key_id)) != SQLITE_OK) ||
	    (rc = sqlite3_bind_int64(s, 8, (int64_t)limit)) != SQLITE_OK) {
		r = sq_fail(c, rc, "listing audit records");
		goto out;
	}
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rr = read_audit(s, &out[*n])) != 0) {
			r = rr == QES_ERR_ALLOC ? rr :
			    sq_corrupt(c, "audit_records");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = sq_fail(c, rc, "listing audit records");
 out:
	done(s);
	if (r != 0) {
		while (*n > 0)
			qes_audit_record_clear(&out[--(*n)]);
	}
	return r;
}

/* seq of the first record to keep, or 0 when every record is older. */
static int
first_kept(struct sq_conn *c, const char *tenant_id, uint64_t after,
    int64_t before_ms, uint64_t *seq)
{
	sqlite3_stmt *s = c->stmt[ST_PURGE_FIRST_KEPT];
	int rc, r = 0;

	*seq = 0;
	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)after)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, before_ms)) != SQLITE_OK) {
		r = sq_fail(c, rc, "finding purge boundary");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*seq = (uint64_t)sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE)
		r = sq_fail(c, rc, "finding purge boundary");
 out:
	done(s);
	return r;
}

static int
hash_at(struct sq_conn *c, const char *tenant_id, uint64_t seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	sqlite3_stmt *s = c->stmt[ST_AUDIT_HASH_AT];
	int rc, r = 0;

	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)seq)) != SQLITE_OK) {
		r = sq_fail(c, rc, "reading audit record");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		/* the chain has a hole where the purge must cut */
		snprintf(c->tx.errmsg, sizeof(c->tx.errmsg),
		    "audit record %llu of %s is missing: verify the chain",
		    (unsigned long long)seq, tenant_id);
		r = c->tx.failed = QES_ERR_CHAIN_BROKEN;
	} else if (rc != SQLITE_ROW)
		r = sq_fail(c, rc, "reading audit record");
	else if (col_blob(s, 0, hash, QES_AUDIT_HASH_LEN, NULL) != 0)
		r = sq_corrupt(c, "audit_records");
 out:
	done(s);
	return r;
}

static int
sq_audit_purge(qesd_tx *tx, const char *tenant_id, int64_t before_ms,
    int64_t now_ms, uint64_t *through_seq, uint64_t *count)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN], head_hash[QES_AUDIT_HASH_LEN];
	uint8_t hash[QES_AUDIT_HASH_LEN];
	uint64_t anchor, head, keep, through;
	sqlite3_stmt *s;
	int rc, r;

	*through_seq = *count = 0;
	if ((r = sq_audit_anchor(tx, tenant_id, &anchor, anchor_hash)) != 0 ||
	    (r = sq_audit_head(tx, tenant_id, &head, head_hash)) != 0 ||
	    (r = first_kept(c, tenant_id, anchor, before_ms, &keep)) != 0)
		return r;
	through = keep != 0 ? keep - 1 : head;
	if (through <= anchor)
		return 0;
	if ((r = hash_at(c, tenant_id, through, hash)) != 0)
		return r;
	/* the anchor first: the delete trigger allows only what is behind it */
	s = c->stmt[ST_ANCHOR_PUT];
	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)through)) != SQLITE_OK ||
	    (rc = bind_blob(s, 3, hash, QES_AUDIT_HASH_LEN)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, before_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, now_ms)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "moving audit anchor");
	}
	if ((r = run(c, s, "moving audit anchor")) != 0)
		return r;
	s = c->stmt[ST_PURGE_DELETE];
	if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, (int64_t)through)) != SQLITE_OK) {
		done(s);
		return sq_fail(c, rc, "purging audit records");
	}
	if ((r = run(c, s, "purging audit records")) != 0)
		return r;
	*through_seq = through;
	*count = (uint64_t)sqlite3_changes64(c->db);
	return 0;
}

static int
sq_audit_erase_addrs(qesd_tx *tx, const char *tenant_id, int64_t before_ms,
    uint64_t *count)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	static const enum stmt_id ids[] = { ST_ERASE_AUDIT, ST_ERASE_SESSIONS };
	sqlite3_stmt *s;
	size_t i;
	int rc, r;

	*count = 0;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		s = c->stmt[ids[i]];
		if ((rc = bind_text(s, 1, tenant_id)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(s, 2, before_ms)) != SQLITE_OK) {
			done(s);
			return sq_fail(c, rc, "erasing client addresses");
		}
		if ((r = run(c, s, "erasing client addresses")) != 0)
			return r;
		*count += (uint64_t)sqlite3_changes64(c->db);
	}
	return 0;
}

const struct qesd_store_ops qesd_store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.ping = sq_ping,
	.begin = sq_begin,
	.commit = sq_commit,
	.end = sq_end,
	.tenant_insert = sq_tenant_insert,
	.tenant_get = sq_tenant_get,
	.tenant_list = sq_tenant_list,
	.key_insert = sq_key_insert,
	.key_get = sq_key_get,
	.key_list = sq_key_list,
	.key_rotate = sq_key_rotate,
	.key_revoke = sq_key_revoke,
	.key_touch = sq_key_touch,
	.audit_head = sq_audit_head,
	.audit_insert = sq_audit_insert,
	.audit_anchor = sq_audit_anchor,
	.audit_list = sq_audit_list,
	.audit_purge = sq_audit_purge,
	.audit_erase_addrs = sq_audit_erase_addrs,
	.jobs = &qesd_store_sqlite_job_ops,
	.devices = &qesd_store_sqlite_device_ops,
};

/* ---- helpers for the per-concern files (store_sqlite.h) ---- */

int
qesd_sq_stmt(qesd_tx *tx, const char *sql, sqlite3_stmt **out)
{
	struct sq_conn *c = (struct sq_conn *)tx;
	size_t i;
	int rc;

	*out = NULL;
	for (i = 0; i < EXT_STMTS && c->ext[i].sql != NULL; i++)
		if (c->ext[i].sql == sql) {
			*out = c->ext[i].stmt;
			return 0;
		}
	if (i == EXT_STMTS)
		return sq_fail(c, SQLITE_INTERNAL, "too many statements");
	if ((rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	    &c->ext[i].stmt, NULL)) != SQLITE_OK) {
		c->ext[i].stmt = NULL;
		return sq_fail(c, rc, "preparing statement");
	}
	c->ext[i].sql = sql;
	*out = c->ext[i].stmt;
	return 0;
}

void
qesd_sq_done(sqlite3_stmt *s)
{
	done(s);
}

int
qesd_sq_fail(qesd_tx *tx, int rc, const char *what)
{
	return sq_fail((struct sq_conn *)tx, rc, what);
}

int
qesd_sq_corrupt(qesd_tx *tx, const char *what)
{
	return sq_corrupt((struct sq_conn *)tx, what);
}

int
qesd_sq_run(qesd_tx *tx, sqlite3_stmt *s, const char *what)
{
	return run((struct sq_conn *)tx, s, what);
}

int
qesd_sq_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	return bind_text(s, i, v);
}

int
qesd_sq_bind_blob(sqlite3_stmt *s, int i, const void *v, size_t len)
{
	return bind_blob(s, i, v, len);
}

int
qesd_sq_col_text(sqlite3_stmt *s, int i, char *dst, size_t size, int nullable)
{
	return col_text(s, i, dst, size, nullable);
}

int
qesd_sq_col_dup(sqlite3_stmt *s, int i, size_t max, char **out)
{
	return col_dup(s, i, max, out);
}

int
qesd_sq_col_blob(sqlite3_stmt *s, int i, uint8_t *dst, size_t len, int *has)
{
	return col_blob(s, i, dst, len, has);
}

int64_t
qesd_sq_col_opt_i64(sqlite3_stmt *s, int i)
{
	return col_opt_i64(s, i);
}
