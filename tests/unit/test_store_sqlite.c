/*
 * test_store_sqlite.c - unit tests for the store interface (store.c,
 * ids.c) on its SQLite backend, each on a fresh database file in a
 * temporary directory - and, run with QES_TEST_PG_URL set (by
 * tests/integration/store_postgres.sh, which starts a private cluster), the
 * same cases on the PostgreSQL backend, each in a fresh schema: URLs and opening, migrations (idempotent, a
 * newer schema refused, another program's database refused), transactions
 * (poisoning, rollback, pool and writer limits), tenant isolation, the API
 * key lifecycle and pagination, the audit chain (consecutive seqs, filters,
 * concurrent appenders, tampering with the file, purge with an anchor,
 * address erasure), the group-commit queue, appenders in several
 * processes, and that no secret reaches the database file. What only one
 * backend has (SQLite's file, WAL and writer slot) is checked on that one.
 */
#define _GNU_SOURCE	/* memmem, asprintf */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>

#include "qes/audit.h"
#include "qes/buf.h"
#include "qes/err.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"

#define T0 1700000000000LL	/* injected "now" */

/* the PostgreSQL server to run on (QES_TEST_PG_URL), NULL for SQLite */
static const char *pg_base;

struct fixture {
	char dir[64];
	char path[1024];	/* SQLite: the file; PostgreSQL: conninfo */
	char url[1100];
	char schema[40];	/* PostgreSQL: this test's schema */
	qesd_store *s;
};

/* Run sql on the PostgreSQL server of the tests: 0 or -1. */
static int
pg_admin(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res;
	int ok;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "PostgreSQL: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	res = PQexec(c, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	PQfinish(c);
	return ok ? 0 : -1;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	if (pg_base != NULL) {
		/* a fresh schema per test, named after the temporary dir */
		char sql[96];

		snprintf(f->schema, sizeof(f->schema), "t_%s",
		    strrchr(f->dir, '-') + 1);
		for (char *c = f->schema; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
		if (pg_admin(pg_base, sql) != 0)
			return -1;
		snprintf(f->path, sizeof(f->path),
		    "%s%soptions=-csearch_path%%3D%s", pg_base,
		    strchr(pg_base, '?') != NULL ? "&" : "?", f->schema);
		snprintf(f->url, sizeof(f->url), "postgres:%s", f->path);
	} else {
		snprintf(f->path, sizeof(f->path), "%s/qesd.db", f->dir);
		snprintf(f->url, sizeof(f->url), "sqlite:%s", f->path);
	}
	if (qesd_store_open(f->url, NULL, &f->s, err, sizeof(err)) != 0) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	int r;

	qesd_store_free(f->s);
	if (pg_base != NULL) {
		snprintf(cmd, sizeof(cmd), "SET client_min_messages = warning; DROP SCHEMA %s CASCADE", f->schema);
		if (pg_admin(pg_base, cmd) != 0)
			return -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	r = system(cmd);
	free(f);
	return r == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static qesd_tx *
begin(qesd_store *s, qesd_tx_mode mode)
{
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(s, mode, &tx), 0);
	assert_non_null(tx);
	return tx;
}

static void
commit(qesd_tx *tx)
{
	int r = qesd_tx_commit(tx);

	if (r != 0)
		fprintf(stderr, "commit: %s\n", qesd_tx_errmsg(tx));
	assert_int_equal(r, 0);
	qesd_tx_end(tx);
}

static void
make_tenant(qesd_store *s, const char *name, qesd_tenant *t)
{
	qesd_tx *tx = begin(s, QESD_TX_WRITE);

	assert_int_equal(qesd_tenant_create(tx, name, T0, t), 0);
	commit(tx);
}

static void
hmac(const char *pepper, const char *secret, uint8_t out[QESD_HMAC_LEN])
{
	unsigned int len = 0;

	assert_non_null(HMAC(EVP_sha256(), pepper, (int)strlen(pepper),
	    (const unsigned char *)secret, strlen(secret), out, &len));
	assert_int_equal(len, QESD_HMAC_LEN);
}

static void
make_key(qesd_store *s, const char *tenant_id, int64_t created_ms,
    qesd_api_key *k)
{
	qesd_tx *tx = begin(s, QESD_TX_WRITE);

	memset(k, 0, sizeof(*k));
	snprintf(k->tenant_id, sizeof(k->tenant_id), "%s", tenant_id);
	snprintf(k->name, sizeof(k->name), "key at %lld",
	    (long long)created_ms);
	k->scopes = 0x1f;
	memset(k->secret_hash, 0x42, sizeof(k->secret_hash));
	k->created_at_ms = created_ms;
	assert_int_equal(qesd_key_insert(tx, k), 0);
	commit(tx);
}

static void
append(qesd_store *s, const char *tenant_id, const qesd_audit_event *ev,
    qesd_audit_ref *ref)
{
	qesd_tx *tx = begin(s, QESD_TX_WRITE);
	int r = qesd_audit_append(tx, tenant_id, ev, ref);

	if (r != 0)
		fprintf(stderr, "append: %s\n", qesd_tx_errmsg(tx));
	assert_int_equal(r, 0);
	commit(tx);
}

static qesd_audit_event
request_event(int64_t time_ms, const char *key_id, const char *addr)
{
	qesd_audit_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.time_ms = time_ms;
	ev.type = "api.request";
	ev.request_id = "req-test";
	ev.key_id = key_id;
	ev.route = "/v1/api-keys";
	ev.method = "GET";
	ev.status = 200;
	ev.client_addr = addr;
	return ev;
}

static void
assert_chain_ok(qesd_store *s, const char *tenant_id, uint64_t count)
{
	qes_audit_chain c;
	int r = qesd_audit_verify(s, tenant_id, &c);

	if (r != 0)
		fprintf(stderr, "verify: %s at %llu\n", c.reason,
		    (unsigned long long)c.broken_seq);
	assert_int_equal(r, 0);
	assert_int_equal(c.count, count);
}

/* A PostgreSQL conninfo rather than a file name. */
static int
is_pg(const char *path)
{
	return strncmp(path, "postgresql:", 11) == 0 ||
	    strncmp(path, "postgres:", 9) == 0;
}

/* Run SQL on the database behind the store's back (an attacker, a test):
 * SQLite's result code; on PostgreSQL SQLITE_OK, SQLITE_CONSTRAINT for a
 * refused change (constraint or trigger), else SQLITE_ERROR. */
static int
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc;

	if (is_pg(path)) {
		PGconn *c = PQconnectdb(path);
		PGresult *res = PQexec(c, sql);
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		rc = PQresultStatus(res) == PGRES_COMMAND_OK ||
		    PQresultStatus(res) == PGRES_TUPLES_OK ? SQLITE_OK :
		    state != NULL && (strncmp(state, "23", 2) == 0 ||
		    strcmp(state, "P0001") == 0) ? SQLITE_CONSTRAINT :
		    SQLITE_ERROR;
		PQclear(res);
		PQfinish(c);
		return rc;
	}
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static int64_t
raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v;

	if (is_pg(path)) {
		PGconn *c = PQconnectdb(path);
		PGresult *res = PQexec(c, sql);

		assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
		assert_int_equal(PQntuples(res), 1);
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		PQfinish(c);
		return v;
	}
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* ---- ids ---- */

static void
test_ids(void **state)
{
	char a[QESD_ID_SIZE], b[QESD_ID_SIZE], bad[QESD_ID_SIZE];
	int i;

	(void)state;
	assert_int_equal(qesd_id_new("ten", a), 0);
	assert_int_equal(strlen(a), 4 + 26);
	assert_true(strncmp(a, "ten_", 4) == 0);
	assert_null(strchr(a + 4, '_'));
	assert_true(qesd_id_valid("ten", a));
	assert_false(qesd_id_valid("key", a));
	for (i = 0; i < 1000; i++) {
		assert_int_equal(qesd_id_new("key", b), 0);
		assert_true(qesd_id_valid("key", b));
		assert_string_not_equal(a + 4, b + 4);
	}
	strcpy(bad, a);
	bad[10] = 'A';				/* upper case */
	assert_false(qesd_id_valid("ten", bad));
	strcpy(bad, a);
	bad[29] = 'b';				/* spare bits set: 'b' = 1 */
	assert_false(qesd_id_valid("ten", bad));
	strcpy(bad, a);
	bad[29] = '\0';				/* short */
	assert_false(qesd_id_valid("ten", bad));
	assert_false(qesd_id_valid("ten", NULL));
	assert_false(qesd_id_valid("ten", "ten_"));
	assert_int_equal(qesd_id_new("Ten", b), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_id_new("", b), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_id_new("toolongprefix", b), QES_ERR_INVALID_ARG);
}

/* ---- opening ---- */

static void
test_open_urls(void **state)
{
	struct fixture *f = *state;
	qesd_store *s = NULL;
	char err[256], url[256];

	assert_int_equal(qesd_store_open("mysql:x", NULL, &s, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(err, "sqlite:"));
	/* no server there: said so, and the password is not repeated */
	assert_int_equal(qesd_store_open("postgres:postgresql://qes:"
	    "Pw7secretXq@127.0.0.1:1/qes?connect_timeout=2", NULL, &s, err,
	    sizeof(err)), QES_ERR_UNAVAILABLE);
	assert_null(s);
	assert_non_null(strstr(err, "PostgreSQL"));
	assert_null(strstr(err, "Pw7secretXq"));
	/* a string libpq cannot parse: its reason would quote the password */
	assert_int_equal(qesd_store_open("postgres:postgresql://qes:"
	    "Pw7secret%zz@127.0.0.1:1/qes", NULL, &s, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	assert_null(s);
	assert_null(strstr(err, "Pw7secret"));
	/* libpq quotes a bad value, and a password beside it is masked */
	assert_int_equal(qesd_store_open("postgres:host=127.0.0.1 port=1 "
	    "password=Pw7secretXq connect_timeout=2 sslmode=Pw7secretXq", NULL,
	    &s, err, sizeof(err)), QES_ERR_UNAVAILABLE);
	assert_null(strstr(err, "Pw7secretXq"));
	assert_int_equal(qesd_store_open("sqlite:", NULL, &s, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_store_open("sqlite::memory:", NULL, &s, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_store_open("sqlite:/nonexistent/dir/x.db", NULL,
	    &s, err, sizeof(err)), QES_ERR_UNAVAILABLE);
	assert_null(s);

	/* another program's database is not migrated */
	snprintf(url, sizeof(url), "%s/other.db", f->dir);
	assert_int_equal(raw_exec(url, "CREATE TABLE foo (x)"), SQLITE_OK);
	snprintf(url, sizeof(url), "sqlite:%s/other.db", f->dir);
	assert_int_equal(qesd_store_open(url, NULL, &s, err, sizeof(err)),
	    QES_ERR_UNSUPPORTED);
	assert_non_null(strstr(err, "not a qesd database"));

	assert_string_equal(qesd_store_backend(f->s),
	    pg_base != NULL ? "postgres" : "sqlite");
	assert_int_equal(qesd_store_ping(f->s), 0);
}

static void
test_migrations(void **state)
{
	struct fixture *f = *state;
	qesd_store *s = NULL;
	qesd_tenant t;
	struct stat st;
	char err[256];
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	/* reopening applies nothing twice and keeps the data */
	qesd_store_free(f->s);
	f->s = NULL;
	assert_int_equal(qesd_store_open(f->url, NULL, &f->s, err,
	    sizeof(err)), 0);
	assert_int_equal(qesd_store_open(f->url, NULL, &s, err, sizeof(err)),
	    0);
	qesd_store_free(s);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM "
	    "schema_version"), QESD_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->path, "SELECT max(version) FROM "
	    "schema_version"), QESD_SCHEMA_VERSION);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_tenant_get(tx, t.id, &t), 0);
	qesd_tx_end(tx);
	if (pg_base != NULL) {
		/* tables of another program: not migrated */
		qesd_store_free(f->s);
		f->s = NULL;
		assert_int_equal(raw_exec(f->path, "DROP TABLE schema_version"),
		    SQLITE_OK);
		assert_int_equal(qesd_store_open(f->url, NULL, &f->s, err,
		    sizeof(err)), QES_ERR_UNSUPPORTED);
		assert_non_null(strstr(err, "not a qesd database"));
		return;
	}
	assert_int_equal(raw_int(f->path, "PRAGMA application_id"),
	    0x71657364);

	/* WAL, and a private file */
	assert_int_equal(raw_exec(f->path, "SELECT 1"), SQLITE_OK);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	{
		sqlite3 *db;
		sqlite3_stmt *q;

		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode",
		    -1, &q, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(q, 0),
		    "wal");
		sqlite3_finalize(q);
		sqlite3_close(db);
	}
}

static void
test_newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	char err[256];

	qesd_store_free(f->s);
	f->s = NULL;
	assert_int_equal(raw_exec(f->path, "INSERT INTO schema_version "
	    "VALUES (99, 1)"), SQLITE_OK);
	assert_int_equal(qesd_store_open(f->url, NULL, &f->s, err,
	    sizeof(err)), QES_ERR_UNSUPPORTED);
	assert_null(f->s);
	assert_non_null(strstr(err, "newer"));
	/* and nothing was changed by trying */
	assert_int_equal(raw_int(f->path, "SELECT max(version) FROM "
	    "schema_version"), 99);
}

/* ---- transactions ---- */

static void
test_transactions(void **state)
{
	struct fixture *f = *state;
	qesd_store_config cfg = { .pool_size = 3, .acquire_timeout_ms = 100,
	    .busy_timeout_ms = 100 };
	qesd_store *s = NULL;
	qesd_tenant t, t2;
	qesd_api_key k;
	qesd_tx *tx, *tx2, *tx3, *tx4;
	char err[256];

	make_tenant(f->s, "acme", &t);

	/* a write inside a read transaction is refused */
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_tenant_create(tx, "x", T0, &t2),
	    QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qesd_tx_errmsg(tx), "read transaction"));
	qesd_tx_end(tx);

	/* the first failure poisons the rest */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_create(tx, "acme", T0, &t2),
	    QES_ERR_CONFLICT);
	assert_true(strstr(qesd_tx_errmsg(tx), "UNIQUE") != NULL ||
	    strstr(qesd_tx_errmsg(tx), "unique") != NULL);
	assert_int_equal(qesd_tenant_create(tx, "other", T0, &t2),
	    QES_ERR_CONFLICT);
	assert_int_equal(qesd_tx_commit(tx), QES_ERR_CONFLICT);
	qesd_tx_end(tx);
	/* ... but "not found" does not */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_get(tx, "ten_aaaaaaaaaaaaaaaaaaaaaaaaaa",
	    &t2), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_tenant_create(tx, "other", T0, &t2), 0);
	commit(tx);

	/* ended without commit: the key and its audit record vanish */
	tx = begin(f->s, QESD_TX_WRITE);
	memset(&k, 0, sizeof(k));
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", t.id);
	k.created_at_ms = T0;
	assert_int_equal(qesd_key_insert(tx, &k), 0);
	{
		qesd_audit_event ev = request_event(T0, k.id, NULL);

		ev.type = "key.created";
		assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL), 0);
	}
	qesd_tx_end(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_get(tx, t.id, k.id, &k), QES_ERR_NOT_FOUND);
	{
		uint8_t h[QES_AUDIT_HASH_LEN], zero[QES_AUDIT_HASH_LEN] = { 0 };
		uint64_t seq = 99;

		assert_int_equal(qesd_audit_head(tx, t.id, &seq, h), 0);
		assert_int_equal(seq, 0);
		assert_memory_equal(h, zero, sizeof(h));
	}
	qesd_tx_end(tx);

	/* pool of 3: a fourth transaction waits, then gives up */
	assert_int_equal(qesd_store_open(f->url, &cfg, &s, err, sizeof(err)),
	    0);
	tx = begin(s, QESD_TX_READ);
	tx2 = begin(s, QESD_TX_READ);
	tx3 = begin(s, QESD_TX_READ);
	assert_int_equal(qesd_store_begin(s, QESD_TX_READ, &tx4),
	    QES_ERR_BUSY);
	assert_null(tx4);
	qesd_tx_end(tx3);
	qesd_tx_end(tx2);
	/* one writer at a time (a connection is free); readers still go */
	tx2 = begin(s, QESD_TX_WRITE);
	assert_int_equal(qesd_store_begin(s, QESD_TX_WRITE, &tx3),
	    QES_ERR_BUSY);
	assert_null(tx3);
	tx3 = begin(s, QESD_TX_READ);
	qesd_tx_end(tx3);
	qesd_tx_end(tx2);
	tx3 = begin(s, QESD_TX_WRITE);
	qesd_tx_end(tx3);
	qesd_tx_end(tx);
	qesd_store_free(s);

	/* committed means only _end is left */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tx_commit(tx), 0);
	assert_int_equal(qesd_tenant_get(tx, t.id, &t2), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_tx_commit(tx), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);
	qesd_tx_end(NULL);
}

/* ---- tenants ---- */

static void
test_tenants(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t, *items = NULL;
	char cursor[QESD_CURSOR_SIZE] = "", name[32], last[QESD_ID_SIZE] = "";
	size_t n, total = 0, i;
	qesd_tx *tx;

	for (i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "tenant %zu", i);
		make_tenant(f->s, name, &t);
		assert_true(qesd_id_valid("ten", t.id));
	}
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_tenant_get(tx, t.id, &t), 0);
	assert_string_equal(t.name, "tenant 6");
	assert_int_equal(t.created_at_ms, T0);
	assert_int_equal(qesd_tenant_get(tx, "ten_x", &t), QES_ERR_NOT_FOUND);
	do {
		assert_int_equal(qesd_tenant_list(tx, cursor, 3, &items, &n,
		    cursor), 0);
		assert_true(n <= 3);
		for (i = 0; i < n; i++) {
			assert_true(strcmp(items[i].id, last) > 0);
			strcpy(last, items[i].id);
		}
		total += n;
		free(items);
	} while (cursor[0] != '\0');
	assert_int_equal(total, 7);
	assert_int_equal(qesd_tenant_list(tx, "garbage", 3, &items, &n,
	    cursor), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);

	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_create(tx, "", T0, &t),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_tenant_create(tx, "bad\nname", T0, &t),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_tenant_create(tx, "bad \xc0\xaf", T0, &t),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_tenant_create(tx, "Caf\xc3\xa9 GmbH", T0, &t),
	    0);
	commit(tx);
}

/* ---- API keys ---- */

static void
test_tenant_isolation(void **state)
{
	struct fixture *f = *state;
	qesd_tenant a, b;
	qesd_api_key k, got, *items;
	qes_audit_record *recs;
	qesd_audit_event ev;
	uint8_t h[QESD_HMAC_LEN];
	uint64_t seq;
	char cursor[QESD_CURSOR_SIZE];
	size_t n;
	qesd_tx *tx;

	make_tenant(f->s, "A", &a);
	make_tenant(f->s, "B", &b);
	make_key(f->s, a.id, T0, &k);
	ev = request_event(T0, k.id, "192.0.2.1");
	append(f->s, a.id, &ev, NULL);

	tx = begin(f->s, QESD_TX_WRITE);
	/* authentication finds the key and learns its tenant */
	assert_int_equal(qesd_key_get_for_auth(tx, k.id, &got), 0);
	assert_string_equal(got.tenant_id, a.id);
	/* everything else is filtered: B sees nothing of A */
	assert_int_equal(qesd_key_get(tx, b.id, k.id, &got), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_key_list(tx, b.id, NULL, 0, &items, &n, cursor),
	    0);
	assert_int_equal(n, 0);
	assert_null(items);
	memset(h, 0x11, sizeof(h));
	assert_int_equal(qesd_key_rotate(tx, b.id, k.id, h, T0 + 1, T0),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_key_revoke(tx, b.id, k.id, T0),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_audit_list(tx, b.id, NULL, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_audit_head(tx, b.id, &seq, h), 0);
	assert_int_equal(seq, 0);
	{
		qesd_key_use u;

		memset(&u, 0, sizeof(u));
		strcpy(u.tenant_id, b.id);
		strcpy(u.key_id, k.id);
		u.used_at_ms = T0 + 5;
		assert_int_equal(qesd_key_touch(tx, &u, 1), 0);
	}
	commit(tx);

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_get(tx, a.id, k.id, &got), 0);
	assert_int_equal(got.revoked_at_ms, 0);
	assert_false(got.has_prev);
	assert_int_equal(got.last_used_at_ms, 0);
	assert_int_equal(qesd_audit_list(tx, a.id, NULL, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].tenant_id, a.id);
	qes_audit_records_free(recs, n);
	qesd_tx_end(tx);
	assert_chain_ok(f->s, a.id, 1);
	assert_chain_ok(f->s, b.id, 0);
}

static void
test_key_lifecycle(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t;
	qesd_api_key k, k2, got;
	qesd_key_use uses[4];
	uint8_t h1[QESD_HMAC_LEN], h2[QESD_HMAC_LEN], h3[QESD_HMAC_LEN];
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	hmac("pepper", "secret-1", h1);
	hmac("pepper", "secret-2", h2);
	hmac("pepper", "secret-3", h3);

	tx = begin(f->s, QESD_TX_WRITE);
	memset(&k, 0, sizeof(k));
	strcpy(k.tenant_id, t.id);
	strcpy(k.name, "ci");
	k.scopes = 0x5;
	memcpy(k.secret_hash, h1, sizeof(h1));
	k.created_at_ms = T0;
	k.expires_at_ms = T0 + 86400000;
	assert_int_equal(qesd_key_insert(tx, &k), 0);
	assert_true(qesd_id_valid("key", k.id));
	/* a given id is kept; the same id twice conflicts */
	k2 = k;
	assert_int_equal(qesd_id_new("key", k2.id), 0);
	strcpy(k2.created_by, k.id);
	assert_int_equal(qesd_key_insert(tx, &k2), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_insert(tx, &k2), QES_ERR_CONFLICT);
	qesd_tx_end(tx);
	/* a key for a tenant that does not exist */
	tx = begin(f->s, QESD_TX_WRITE);
	k2.id[0] = '\0';
	assert_int_equal(qesd_id_new("ten", k2.tenant_id), 0);
	assert_int_equal(qesd_key_insert(tx, &k2), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	/* fields that only the store sets */
	tx = begin(f->s, QESD_TX_WRITE);
	k2 = k;
	k2.id[0] = '\0';
	k2.revoked_at_ms = T0;
	assert_int_equal(qesd_key_insert(tx, &k2), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_get(tx, t.id, k.id, &got), 0);
	assert_string_equal(got.name, "ci");
	assert_int_equal(got.scopes, 0x5);
	assert_memory_equal(got.secret_hash, h1, sizeof(h1));
	assert_false(got.has_prev);
	assert_int_equal(got.expires_at_ms, T0 + 86400000);
	assert_string_equal(got.created_by, "");
	assert_int_equal(got.rotated_at_ms, 0);
	qesd_tx_end(tx);

	/* rotate: new hash, the old one valid until the grace ends */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_rotate(tx, t.id, k.id, h2, T0 + 3600000,
	    T0 + 10), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_get_for_auth(tx, k.id, &got), 0);
	assert_memory_equal(got.secret_hash, h2, sizeof(h2));
	assert_true(got.has_prev);
	assert_memory_equal(got.prev_secret_hash, h1, sizeof(h1));
	assert_int_equal(got.prev_valid_until_ms, T0 + 3600000);
	assert_int_equal(got.rotated_at_ms, T0 + 10);
	qesd_tx_end(tx);
	/* rotate again: the first secret is gone at once */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_rotate(tx, t.id, k.id, h3, T0 + 7200000,
	    T0 + 20), 0);
	assert_int_equal(qesd_key_get(tx, t.id, k.id, &got), 0);
	assert_memory_equal(got.secret_hash, h3, sizeof(h3));
	assert_memory_equal(got.prev_secret_hash, h2, sizeof(h2));
	commit(tx);

	/* batched use times: max wins, unknown keys skipped */
	memset(uses, 0, sizeof(uses));
	strcpy(uses[0].tenant_id, t.id);
	strcpy(uses[0].key_id, k.id);
	uses[0].used_at_ms = T0 + 500;
	uses[1] = uses[0];
	uses[1].used_at_ms = T0 + 300;
	uses[2] = uses[0];
	assert_int_equal(qesd_id_new("key", uses[2].key_id), 0);
	uses[3] = uses[0];
	strcpy(uses[3].key_id, "not-an-id");
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_touch(tx, uses, 4), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_get(tx, t.id, k.id, &got), 0);
	assert_int_equal(got.last_used_at_ms, T0 + 500);
	qesd_tx_end(tx);

	/* revoke: immediate, drops the previous hash, idempotent */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_revoke(tx, t.id, k.id, T0 + 30), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_key_revoke(tx, t.id, k.id, T0 + 40), 0);
	assert_int_equal(qesd_key_get(tx, t.id, k.id, &got), 0);
	assert_int_equal(got.revoked_at_ms, T0 + 30);
	assert_false(got.has_prev);
	assert_int_equal(qesd_key_rotate(tx, t.id, k.id, h1, T0 + 50, T0 + 50),
	    QES_ERR_CONFLICT);
	assert_int_equal(qesd_key_revoke(tx, t.id,
	    "key_aaaaaaaaaaaaaaaaaaaaaaaaaa", T0), QES_ERR_NOT_FOUND);
	commit(tx);
}

static void
test_key_pagination(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t;
	qesd_api_key k, *items = NULL;
	char cursor[QESD_CURSOR_SIZE] = "", seen[25][QESD_ID_SIZE];
	uint8_t zero[QESD_HMAC_LEN] = { 0 };
	int64_t last_ms = 0;
	size_t n, total = 0, i, j, pages = 0;
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	/* several keys share a creation time: the id breaks the tie */
	for (i = 0; i < 25; i++)
		make_key(f->s, t.id, T0 + (int64_t)(i / 3), &k);
	tx = begin(f->s, QESD_TX_READ);
	do {
		assert_int_equal(qesd_key_list(tx, t.id, cursor, 10, &items,
		    &n, cursor), 0);
		pages++;
		for (i = 0; i < n; i++) {
			assert_true(items[i].created_at_ms >= last_ms);
			last_ms = items[i].created_at_ms;
			assert_memory_equal(items[i].secret_hash, zero,
			    sizeof(zero));
			for (j = 0; j < total + i; j++)
				assert_string_not_equal(seen[j], items[i].id);
			strcpy(seen[total + i], items[i].id);
		}
		total += n;
		free(items);
	} while (cursor[0] != '\0');
	assert_int_equal(total, 25);
	assert_int_equal(pages, 3);
	assert_int_equal(qesd_key_list(tx, t.id, "12.key_x", 10, &items, &n,
	    cursor), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_key_list(tx, t.id, "-1.x", 10, &items, &n,
	    cursor), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);
}

/* ---- audit ---- */

static void
test_audit_append_and_list(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t, other;
	qesd_audit_event ev;
	qesd_audit_ref ref;
	qesd_audit_filter flt;
	qes_audit_record *recs = NULL;
	char cursor[QESD_CURSOR_SIZE] = "";
	uint8_t prev[QES_AUDIT_HASH_LEN] = { 0 }, head[QES_AUDIT_HASH_LEN];
	uint64_t seq, next = 1;
	size_t n, i, total = 0;
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	make_tenant(f->s, "other", &other);
	for (i = 0; i < 30; i++) {
		ev = request_event(T0 + (int64_t)i * 1000,
		    i % 3 == 0 ? "key_aaaaaaaaaaaaaaaaaaaaaaaaaa" : NULL,
		    i % 2 ? "2001:db8::1" : NULL);
		if (i % 5 == 0) {
			ev.type = "key.created";
			ev.details = "{\"scopes\": [\"sign\"], \"n\": 1}";
		}
		ev.device_id = i % 4 == 0 ? "dev_x" : NULL;
		append(f->s, t.id, &ev, &ref);
		assert_int_equal(ref.seq, i + 1);
		assert_true(qesd_id_valid("aud", ref.id));
		/* another tenant's appends do not touch this chain */
		append(f->s, other.id, &ev, NULL);
	}
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_audit_head(tx, t.id, &seq, head), 0);
	assert_int_equal(seq, 30);
	assert_memory_equal(head, ref.hash, sizeof(head));
	/* pages in seq order, each linked to the one before */
	do {
		assert_int_equal(qesd_audit_list(tx, t.id, NULL, cursor, 7,
		    &recs, &n, cursor), 0);
		for (i = 0; i < n; i++) {
			assert_int_equal(recs[i].seq, next++);
			assert_memory_equal(recs[i].prev_hash, prev,
			    sizeof(prev));
			memcpy(prev, recs[i].hash, sizeof(prev));
		}
		total += n;
		qes_audit_records_free(recs, n);
	} while (cursor[0] != '\0');
	assert_int_equal(total, 30);

	/* filters */
	memset(&flt, 0, sizeof(flt));
	flt.type = "key.created";
	assert_int_equal(qesd_audit_list(tx, t.id, &flt, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 6);
	assert_string_equal(recs[1].details, "{\"n\":1,\"scopes\":[\"sign\"]}");
	qes_audit_records_free(recs, n);
	memset(&flt, 0, sizeof(flt));
	flt.key_id = "key_aaaaaaaaaaaaaaaaaaaaaaaaaa";
	assert_int_equal(qesd_audit_list(tx, t.id, &flt, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 10);
	qes_audit_records_free(recs, n);
	memset(&flt, 0, sizeof(flt));
	flt.device_id = "dev_x";
	flt.since_ms = T0 + 8000;		/* i >= 8 */
	flt.until_ms = T0 + 20000;		/* i < 20 */
	assert_int_equal(qesd_audit_list(tx, t.id, &flt, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 3);			/* i = 8, 12, 16 */
	assert_int_equal(recs[0].seq, 9);
	assert_string_equal(recs[2].device_id, "dev_x");
	qes_audit_records_free(recs, n);
	/* a filter and pagination together */
	memset(&flt, 0, sizeof(flt));
	flt.type = "api.request";
	assert_int_equal(qesd_audit_list(tx, t.id, &flt, NULL, 20, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 20);
	qes_audit_records_free(recs, n);
	assert_int_equal(qesd_audit_list(tx, t.id, &flt, cursor, 20, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 4);
	assert_string_equal(cursor, "");
	qes_audit_records_free(recs, n);
	assert_int_equal(qesd_audit_list(tx, t.id, NULL, "01", 20, &recs, &n,
	    cursor), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);

	/* bad events, wrong transactions, unknown tenants */
	tx = begin(f->s, QESD_TX_READ);
	ev = request_event(T0, NULL, NULL);
	assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL),
	    QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	ev.type = NULL;
	assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL),
	    QES_ERR_INVALID_ARG);
	ev.type = "api.request";
	ev.details = "[1]";
	assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL),
	    QES_ERR_INVALID_ARG);
	ev.details = NULL;
	ev.route = "/v1/\x1b[2J";
	assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL),
	    QES_ERR_INVALID_ARG);
	ev.route = NULL;
	assert_int_equal(qesd_audit_append(tx,
	    "ten_aaaaaaaaaaaaaaaaaaaaaaaaaa", &ev, NULL), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	assert_chain_ok(f->s, t.id, 30);
	assert_chain_ok(f->s, other.id, 30);
}

struct appender {
	qesd_store *s;
	const char *tenant_id;
	int n;
	int failures;
};

static void *
append_many(void *arg)
{
	struct appender *a = arg;
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	char rid[64];
	int i;

	for (i = 0; i < a->n; i++) {
		snprintf(rid, sizeof(rid), "req-%ld-%p-%d", (long)getpid(),
		    (void *)a, i);
		ev = request_event(T0 + i, NULL, "198.51.100.4");
		ev.request_id = rid;
		if (qesd_store_begin(a->s, QESD_TX_WRITE, &tx) != 0 ||
		    qesd_audit_append(tx, a->tenant_id, &ev, NULL) != 0 ||
		    qesd_tx_commit(tx) != 0)
			a->failures++;
		qesd_tx_end(tx);
		tx = NULL;
	}
	return NULL;
}

static void *
read_many(void *arg)
{
	struct appender *a = arg;
	qes_audit_record *recs;
	char cursor[QESD_CURSOR_SIZE];
	size_t n;
	qesd_tx *tx = NULL;
	int i;

	for (i = 0; i < a->n; i++) {
		if (qesd_store_begin(a->s, QESD_TX_READ, &tx) != 0 ||
		    qesd_audit_list(tx, a->tenant_id, NULL, NULL, 50, &recs, &n,
		    cursor) != 0)
			a->failures++;
		else
			qes_audit_records_free(recs, n);
		qesd_tx_end(tx);
		tx = NULL;
	}
	return NULL;
}

static void
test_concurrent_appends(void **state)
{
	struct fixture *f = *state;
	struct appender a[5];
	pthread_t th[5];
	qesd_tenant t;
	int i;

	make_tenant(f->s, "acme", &t);
	for (i = 0; i < 5; i++) {
		a[i].s = f->s;
		a[i].tenant_id = t.id;
		a[i].n = 250;
		a[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL,
		    i < 4 ? append_many : read_many, &a[i]), 0);
	}
	/* join all before asserting: a failed assert leaves the test */
	for (i = 0; i < 5; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 5; i++)
		assert_int_equal(a[i].failures, 0);
	/* one chain, 1..1000, nothing forked, nothing missing */
	assert_chain_ok(f->s, t.id, 1000);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit_records"),
	    1000);
	assert_int_equal(raw_int(f->path, "SELECT max(seq) FROM audit_records"),
	    1000);
}

/*
 * Appenders in several processes, each with its own store (replicas, or
 * `qesd admin` beside the server), each with two threads: one chain, no
 * fork, no gap. SQLite serialises them with the database's write lock,
 * PostgreSQL with the row lock on the tenant's chain head.
 */
static void
test_concurrent_appends_processes(void **state)
{
	struct fixture *f = *state;
	enum { PROCS = 4, THREADS = 2, EACH = 60 };
	pid_t pid[PROCS];
	qesd_tenant t;
	int i, status;

	make_tenant(f->s, "acme", &t);
	for (i = 0; i < PROCS; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			struct appender a[THREADS];
			pthread_t th[THREADS];
			qesd_store *s = NULL;
			char err[256];
			int j, bad = 0;

			if (qesd_store_open(f->url, NULL, &s, err,
			    sizeof(err)) != 0) {
				fprintf(stderr, "child open: %s\n", err);
				_exit(2);
			}
			for (j = 0; j < THREADS; j++) {
				a[j].s = s;
				a[j].tenant_id = t.id;
				a[j].n = EACH;
				a[j].failures = 0;
				if (pthread_create(&th[j], NULL, append_many,
				    &a[j]) != 0)
					_exit(3);
			}
			for (j = 0; j < THREADS; j++) {
				pthread_join(th[j], NULL);
				bad += a[j].failures;
			}
			qesd_store_free(s);
			_exit(bad == 0 ? 0 : 1);
		}
	}
	for (i = 0; i < PROCS; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_chain_ok(f->s, t.id, PROCS * THREADS * EACH);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit_records"),
	    PROCS * THREADS * EACH);
	assert_int_equal(raw_int(f->path, "SELECT count(DISTINCT request_id) "
	    "FROM audit_records"), PROCS * THREADS * EACH);
}

/*
 * The rows of the device channel and of jobs, through every backend
 * function once: an enrollment used by a device, a session that makes it
 * live, an inventory with a credential, a job moved by compare-and-set.
 * (test_devices.c and test_jobs.c test the services on SQLite; this is
 * what lets the same code run on PostgreSQL.)
 */
static void
test_device_and_job_rows(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t;
	qesd_enrollment e, eg;
	qesd_device d, dg, *devs = NULL;
	qesd_device_session ses, sg, *sl = NULL;
	qesd_session_seen seen;
	qesd_credential c, cg, *cl = NULL;
	qesd_job j, jg, *jl = NULL;
	char cursor[QESD_CURSOR_SIZE], *inv = NULL;
	static char label[] = "qualified key", tok[] = "qes-token-a",
	    subj[] = "CN=Alice,C=EU", cn[] = "Alice", iss[] = "CN=Test CA";
	uint8_t der[300];
	int64_t at = 0;
	size_t n = 0;
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	tx = begin(f->s, QESD_TX_WRITE);
	memset(&e, 0, sizeof(e));
	strcpy(e.tenant_id, t.id);
	memset(e.code_hash, 0x5a, sizeof(e.code_hash));
	strcpy(e.device_name, "laptop");
	e.created_at_ms = T0;
	e.expires_at_ms = T0 + 600000;
	assert_int_equal(qesd_enrollment_insert(tx, &e), 0);
	memset(&d, 0, sizeof(d));
	strcpy(d.tenant_id, t.id);
	strcpy(d.name, "laptop");
	memset(d.public_key, 0x30, 91);
	d.public_key_len = 91;
	strcpy(d.enrollment_id, e.id);
	strcpy(d.agent_version, "0.1.0");
	strcpy(d.os, "linux");
	d.enrolled_at_ms = T0 + 1;
	assert_int_equal(qesd_device_insert(tx, &d), 0);
	assert_int_equal(qesd_enrollment_use(tx, t.id, e.id, d.id, T0 + 1), 0);
	/* used once: refused now, without poisoning (qesd_tx_refuse) */
	assert_int_equal(qesd_enrollment_use(tx, t.id, e.id, d.id, T0 + 2),
	    QES_ERR_CONFLICT);
	commit(tx);

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_enrollment_get_by_code(tx, e.code_hash, &eg), 0);
	assert_string_equal(eg.id, e.id);
	assert_string_equal(eg.device_id, d.id);
	assert_int_equal(eg.used_at_ms, T0 + 1);
	assert_int_equal(qesd_device_get(tx, t.id, d.id, &dg), 0);
	assert_int_equal(dg.public_key_len, 91);
	assert_memory_equal(dg.public_key, d.public_key, 91);
	assert_string_equal(dg.os, "linux");
	assert_int_equal(dg.revoked_at_ms, 0);
	assert_false(dg.live);
	assert_int_equal(qesd_device_get_for_auth(tx, d.id, &dg), 0);
	assert_string_equal(dg.tenant_id, t.id);
	qesd_tx_end(tx);

	/* a session: the device is live; an inventory with one credential */
	tx = begin(f->s, QESD_TX_WRITE);
	memset(&ses, 0, sizeof(ses));
	assert_int_equal(qesd_id_new("ses", ses.id), 0);
	strcpy(ses.tenant_id, t.id);
	strcpy(ses.device_id, d.id);
	strcpy(ses.replica, "replica-a");
	strcpy(ses.client_addr, "192.0.2.9");
	ses.connected_at_ms = ses.last_seen_at_ms = T0 + 10;
	assert_int_equal(qesd_session_insert(tx, &ses), 0);
	memset(&seen, 0, sizeof(seen));
	strcpy(seen.tenant_id, t.id);
	strcpy(seen.session_id, ses.id);
	seen.last_seen_at_ms = T0 + 20;
	assert_int_equal(qesd_session_touch(tx, &seen, 1), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(qesd_id_new("crd", c.id), 0);
	strcpy(c.serial, "026d241bb1cdef7a");
	strcpy(c.key_id_hex, "02");
	c.label = label;
	c.token_label = tok;
	c.subject = subj;
	c.subject_cn = cn;
	c.issuer = iss;
	strcpy(c.cert_serial_hex, "0a1b");
	strcpy(c.classification, "qualified");
	c.not_before_ms = T0 - 1000;
	c.not_after_ms = T0 + 86400000LL * 365;
	c.key_type = QES_KEY_EC;
	c.key_bits = 256;
	strcpy(c.curve, "P-256");
	c.key_usage = 1;
	c.has_private_key = -1;
	memset(c.cert_sha256_hex, 'a', 64);
	memset(der, 0x82, sizeof(der));
	c.cert_der = der;
	c.cert_der_len = sizeof(der);
	assert_int_equal(qesd_device_set_inventory(tx, t.id, d.id,
	    "{\"slots\":[]}", &c, 1, T0 + 30), 0);
	commit(tx);

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_device_list(tx, t.id, NULL, 0, &devs, &n,
	    cursor), 0);
	assert_int_equal(n, 1);
	assert_true(devs[0].live);
	assert_int_equal(devs[0].inventory_at_ms, T0 + 30);
	free(devs);
	assert_int_equal(qesd_device_get_inventory(tx, t.id, d.id, &inv, &at),
	    0);
	assert_string_equal(inv, "{\"slots\":[]}");
	assert_int_equal(at, T0 + 30);
	free(inv);
	assert_int_equal(qesd_credential_list(tx, t.id, NULL, 1, T0 + 40, NULL,
	    0, &cl, &n, cursor), 0);
	assert_int_equal(n, 1);
	assert_string_equal(cl[0].id, c.id);
	assert_string_equal(cl[0].subject, subj);
	assert_int_equal(cl[0].has_private_key, -1);
	assert_int_equal(cl[0].cert_der_len, sizeof(der));
	assert_memory_equal(cl[0].cert_der, der, sizeof(der));
	assert_true(cl[0].device_live);
	assert_string_equal(cl[0].device_name, "laptop");
	qesd_credentials_free(cl, n);
	assert_int_equal(qesd_credential_get(tx, t.id, c.id, T0 + 40, &cg), 0);
	assert_string_equal(cg.curve, "P-256");
	qesd_credential_clear(&cg);
	assert_int_equal(qesd_sessions_open_on_replica(tx, "replica-a", 10,
	    &sl, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(sl[0].last_seen_at_ms, T0 + 20);
	free(sl);
	qesd_tx_end(tx);

	/* a job: created, dispatched by compare-and-set, a stale one refused */
	tx = begin(f->s, QESD_TX_WRITE);
	memset(&j, 0, sizeof(j));
	strcpy(j.tenant_id, t.id);
	j.state = QESD_JOB_CREATED;
	strcpy(j.credential_id, c.id);
	strcpy(j.device_id, d.id);
	assert_non_null(j.request = strdup("{\"digests\":[]}"));
	strcpy(j.verification_code, "4711");
	strcpy(j.idempotency_key, "order-17");
	memset(j.request_hash, 0x11, sizeof(j.request_hash));
	j.created_at_ms = j.updated_at_ms = T0 + 50;
	j.expires_at_ms = T0 + 5000;
	assert_int_equal(qesd_job_insert(tx, &j), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_get_by_idempotency_key(tx, t.id, "order-17",
	    &jg), 0);
	assert_string_equal(jg.id, j.id);
	assert_memory_equal(jg.request_hash, j.request_hash, 32);
	jg.version = j.version;
	strcpy(jg.session_id, ses.id);
	assert_int_equal(qesd_job_update(tx, &jg, QESD_JOB_DISPATCHED, NULL,
	    T0 + 60), 0);
	assert_int_equal(jg.version, 2);
	/* the copy read before moves nothing */
	assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_CANCELLED, NULL,
	    T0 + 61), QES_ERR_CONFLICT);
	commit(tx);
	qesd_job_clear(&jg);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_list_live_on_device(tx, t.id, d.id, ses.id,
	    10, &jl, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(jl[0].state, QESD_JOB_DISPATCHED);
	assert_null(jl[0].request);
	qesd_job_list_free(jl, n);
	assert_int_equal(qesd_job_list_live(tx, T0 + 5001, 10, &jl, &n), 0);
	assert_int_equal(n, 1);
	qesd_job_list_free(jl, n);
	assert_int_equal(qesd_job_list_live(tx, T0 + 5000, 10, &jl, &n), 0);
	assert_int_equal(n, 0);
	qesd_job_list_free(jl, n);
	assert_int_equal(qesd_job_get(tx, t.id, j.id, &jg), 0);
	assert_string_equal(jg.session_id, ses.id);
	assert_string_equal(jg.request, "{\"digests\":[]}");
	assert_null(jg.result);
	qesd_job_clear(&jg);
	qesd_tx_end(tx);
	/* a second job with the key: a conflict */
	tx = begin(f->s, QESD_TX_WRITE);
	j.id[0] = '\0';
	j.state = QESD_JOB_CREATED;
	j.version = 0;
	j.reason[0] = '\0';
	j.session_id[0] = '\0';
	j.updated_at_ms = j.created_at_ms;
	assert_int_equal(qesd_job_insert(tx, &j), QES_ERR_CONFLICT);
	qesd_tx_end(tx);
	qesd_job_clear(&j);

	/* the session closes: the device is not live; revoked: no session */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_session_close(tx, t.id, ses.id, T0 + 70, T0 + 71,
	    "agent_closed"), 0);
	assert_int_equal(qesd_session_close(tx, t.id, ses.id, T0 + 70, T0 + 72,
	    "agent_closed"), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_device_revoke(tx, t.id, d.id, T0 + 80), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_session_get(tx, t.id, ses.id, &sg), 0);
	assert_int_equal(sg.closed_at_ms, T0 + 71);
	assert_int_equal(sg.last_seen_at_ms, T0 + 70);
	assert_string_equal(sg.close_reason, "agent_closed");
	assert_int_equal(qesd_session_list(tx, t.id, d.id, NULL, 0, &sl, &n,
	    cursor), 0);
	assert_int_equal(n, 1);
	free(sl);
	assert_int_equal(qesd_device_get(tx, t.id, d.id, &dg), 0);
	assert_false(dg.live);
	assert_int_equal(dg.revoked_at_ms, T0 + 80);
	assert_int_equal(qesd_id_new("ses", ses.id), 0);
	ses.connected_at_ms = ses.last_seen_at_ms = T0 + 90;
	assert_int_equal(qesd_session_insert(tx, &ses), QES_ERR_CONFLICT);
	qesd_tx_end(tx);
}

/*
 * PostgreSQL only: connections lost under the store (the server cut them,
 * as at a restart or failover). A transaction that was open fails with
 * QES_ERR_UNAVAILABLE and stays failed; an idle pooled connection that
 * died is replaced at the next begin; nothing needs a new store.
 */
static void
test_connection_loss(void **state)
{
	struct fixture *f = *state;
	static const char kill_sql[] = "SELECT count(pg_terminate_backend(pid)) "
	    "FROM pg_stat_activity WHERE application_name = 'qesd' "
	    "AND datname = current_database()";
	qesd_tenant t, t2;
	qesd_tx *tx, *tx2;
	int i;

	if (pg_base == NULL)
		skip();
	make_tenant(f->s, "acme", &t);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_get(tx, t.id, &t2), 0);
	assert_true(raw_int(f->path, kill_sql) >= 1);
	assert_int_equal(qesd_tenant_create(tx, "other", T0, &t2),
	    QES_ERR_UNAVAILABLE);
	assert_int_equal(qesd_tenant_get(tx, t.id, &t2), QES_ERR_UNAVAILABLE);
	assert_int_equal(qesd_tx_commit(tx), QES_ERR_UNAVAILABLE);
	qesd_tx_end(tx);
	/* every pooled connection, idle ones too */
	tx = begin(f->s, QESD_TX_READ);
	tx2 = begin(f->s, QESD_TX_READ);
	qesd_tx_end(tx2);
	qesd_tx_end(tx);
	assert_true(raw_int(f->path, kill_sql) >= 1);
	for (i = 0; i < 6; i++) {
		tx = begin(f->s, QESD_TX_WRITE);
		assert_int_equal(qesd_tenant_get(tx, t.id, &t2), 0);
		qesd_tx_end(tx);
	}
	assert_int_equal(qesd_store_ping(f->s), 0);
	make_tenant(f->s, "other", &t2);
	assert_chain_ok(f->s, t2.id, 0);
}

static void
test_tamper_detected(void **state)
{
	struct fixture *f = *state;
	qesd_audit_event ev;
	qes_audit_chain c;
	qesd_tenant t;
	char sql[256];
	int i;

	make_tenant(f->s, "acme", &t);
	for (i = 0; i < 50; i++) {
		ev = request_event(T0 + i, NULL, "192.0.2.7");
		append(f->s, t.id, &ev, NULL);
	}
	assert_chain_ok(f->s, t.id, 50);

	/* the triggers stop code (not a determined attacker) from rewriting */
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET status = 500 "
	    "WHERE tenant_id = '%s' AND seq = 20", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_CONSTRAINT);
	snprintf(sql, sizeof(sql), "DELETE FROM audit_records "
	    "WHERE tenant_id = '%s' AND seq = 30", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_CONSTRAINT);
	/* an address may be erased, not changed */
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET client_addr = "
	    "'10.0.0.1' WHERE tenant_id = '%s' AND seq = 5", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_CONSTRAINT);
	assert_chain_ok(f->s, t.id, 50);

	/* an attacker with the file drops them: the chain still tells */
	assert_int_equal(raw_exec(f->path, pg_base != NULL ?
	    "DROP TRIGGER audit_records_append_only ON audit_records;"
	    "DROP TRIGGER audit_records_delete_behind_anchor ON audit_records" :
	    "DROP TRIGGER audit_records_append_only;"
	    "DROP TRIGGER audit_records_delete_behind_anchor"), SQLITE_OK);
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET status = 500 "
	    "WHERE tenant_id = '%s' AND seq = 20", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	assert_int_equal(qesd_audit_verify(f->s, t.id, &c),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, 20);
	assert_string_equal(c.reason, "hash mismatch");
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET status = 200 "
	    "WHERE tenant_id = '%s' AND seq = 20", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	assert_chain_ok(f->s, t.id, 50);

	snprintf(sql, sizeof(sql), "UPDATE audit_records SET client_addr = "
	    "'10.0.0.1' WHERE tenant_id = '%s' AND seq = 5", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	assert_int_equal(qesd_audit_verify(f->s, t.id, &c),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, 5);
	assert_string_equal(c.reason, "addr commitment mismatch");
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET client_addr = "
	    "'192.0.2.7' WHERE tenant_id = '%s' AND seq = 5", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);

	/* deleting a record: found at the next one */
	snprintf(sql, sizeof(sql), "DELETE FROM audit_records "
	    "WHERE tenant_id = '%s' AND seq = 30", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	assert_int_equal(qesd_audit_verify(f->s, t.id, &c),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, 31);
	assert_string_equal(c.reason, "seq gap");
	/* deleting the newest ones: the head knows */
	snprintf(sql, sizeof(sql), "DELETE FROM audit_records "
	    "WHERE tenant_id = '%s' AND seq >= 30", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	assert_int_equal(qesd_audit_verify(f->s, t.id, &c),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, 30);
	assert_string_equal(c.reason, "head mismatch");
}

static void
test_purge_and_anchor(void **state)
{
	struct fixture *f = *state;
	qesd_tenant a, b;
	qesd_audit_event ev;
	qes_audit_record *recs;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN], hash40[QES_AUDIT_HASH_LEN];
	uint64_t seq, purged;
	qesd_audit_ref ref;
	char cursor[QESD_CURSOR_SIZE], err[256];
	size_t n;
	qesd_tx *tx;
	int i;

	make_tenant(f->s, "A", &a);
	make_tenant(f->s, "B", &b);
	for (i = 1; i <= 100; i++) {
		ev = request_event(T0 + i * 1000, NULL, "192.0.2.9");
		/* one late record in A's prefix: purging must stop before it */
		if (i == 45)
			ev.time_ms = T0 + 90 * 1000;
		append(f->s, a.id, &ev, &ref);
		if (i == 40)
			memcpy(hash40, ref.hash, sizeof(hash40));
		if (i <= 10)
			append(f->s, b.id, &ev, NULL);
	}
	/* records with time < T0+50s: A's 1..49 except 45; B's 1..10 */
	assert_int_equal(qesd_audit_purge(f->s, T0 + 50 * 1000, T0 + 200000,
	    &purged, err, sizeof(err)), 0);
	assert_int_equal(purged, 44 + 10);	/* A: 1..44, B: 1..10 */

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_audit_anchor(tx, a.id, &seq, anchor_hash), 0);
	assert_int_equal(seq, 44);
	assert_int_equal(qesd_audit_list(tx, a.id, NULL, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(recs[0].seq, 45);
	assert_memory_equal(recs[0].prev_hash, anchor_hash,
	    QES_AUDIT_HASH_LEN);
	qes_audit_records_free(recs, n);
	/* the purge is itself on the record, at the end of the chain */
	assert_int_equal(qesd_audit_list(tx, a.id, NULL, "100", 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 1);
	assert_int_equal(recs[0].seq, 101);
	assert_string_equal(recs[0].type, "audit.purged");
	assert_string_equal(recs[0].details, "{\"before_ms\":1700000050000,"
	    "\"records\":44,\"through_seq\":44}");
	qes_audit_records_free(recs, n);
	assert_int_equal(qesd_audit_anchor(tx, b.id, &seq, anchor_hash), 0);
	assert_int_equal(seq, 10);
	qesd_tx_end(tx);
	assert_chain_ok(f->s, a.id, 101 - 44);
	assert_chain_ok(f->s, b.id, 1);

	/* the same purge again changes nothing and records nothing */
	assert_int_equal(qesd_audit_purge(f->s, T0 + 50 * 1000, T0 + 300000,
	    &purged, err, sizeof(err)), 0);
	assert_int_equal(purged, 0);
	assert_chain_ok(f->s, a.id, 101 - 44);
	/* a later one moves the anchor on; B's purge record is purged too */
	assert_int_equal(qesd_audit_purge(f->s, T0 + 1000 * 1000, T0 + 400000,
	    &purged, err, sizeof(err)), 0);
	assert_chain_ok(f->s, a.id, 1);
	assert_chain_ok(f->s, b.id, 1);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_audit_anchor(tx, a.id, &seq, anchor_hash), 0);
	assert_int_equal(seq, 101);
	qesd_tx_end(tx);
	(void)hash40;
}

static int
file_contains(const char *path, const void *needle, size_t len)
{
	qes_buf *b = NULL;
	int found;

	if (qes_buf_read_file(path, 64 << 20, &b) != 0)
		return 0;	/* (a -wal that does not exist) */
	found = memmem(qes_buf_data(b), qes_buf_len(b), needle, len) != NULL;
	qes_buf_free(b);
	return found;
}

static int
db_contains(struct fixture *f, const char *s)
{
	char p[1100];

	snprintf(p, sizeof(p), "%s-wal", f->path);
	return file_contains(f->path, s, strlen(s)) ||
	    file_contains(p, s, strlen(s));
}

static void
test_erase_addresses(void **state)
{
	struct fixture *f = *state;
	qesd_tenant t;
	qesd_audit_event ev;
	qes_audit_record *recs;
	uint64_t erased;
	char addr[32], cursor[QESD_CURSOR_SIZE], err[256];
	size_t n, i;
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	for (i = 0; i < 20; i++) {
		snprintf(addr, sizeof(addr), "203.0.113.%zu", 100 + i);
		ev = request_event(T0 + (int64_t)i * 1000, NULL, addr);
		append(f->s, t.id, &ev, NULL);
	}
	assert_int_equal(qesd_audit_erase_addrs(f->s, T0 + 10 * 1000,
	    T0 + 100000, &erased, err, sizeof(err)), 0);
	assert_int_equal(erased, 10);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_audit_list(tx, t.id, NULL, NULL, 0, &recs, &n,
	    cursor), 0);
	assert_int_equal(n, 21);
	for (i = 0; i < 20; i++) {
		assert_true(recs[i].has_addr_digest);
		if (i < 10) {
			assert_null(recs[i].client_addr);
			assert_false(recs[i].has_addr_salt);
		} else {
			assert_non_null(recs[i].client_addr);
		}
	}
	assert_string_equal(recs[20].type, "audit.addresses_erased");
	qes_audit_records_free(recs, n);
	qesd_tx_end(tx);
	assert_chain_ok(f->s, t.id, 21);
	/* nothing left to erase: no new record */
	assert_int_equal(qesd_audit_erase_addrs(f->s, T0 + 10 * 1000,
	    T0 + 200000, &erased, err, sizeof(err)), 0);
	assert_int_equal(erased, 0);
	assert_chain_ok(f->s, t.id, 21);

	if (pg_base != NULL)
		return;		/* PostgreSQL's files are the server's */
	/* erased means gone from the file, not only from query results */
	qesd_store_free(f->s);		/* last close checkpoints the WAL */
	f->s = NULL;
	assert_false(db_contains(f, "203.0.113.100"));
	assert_false(db_contains(f, "203.0.113.109"));
	assert_true(db_contains(f, "203.0.113.110"));
	assert_int_equal(qesd_store_open(f->url, NULL, &f->s, err,
	    sizeof(err)), 0);
	assert_chain_ok(f->s, t.id, 21);
}

static void
test_no_secret_in_database(void **state)
{
	struct fixture *f = *state;
	static const char pepper[] = "test-pepper-Zq3vXw9KpL2mN8rT";
	static const char secret1[] = "k7Hq2LmZ9xVb4NcR8sTd1WfYg6JpQe3A";
	static const char secret2[] = "Vn5Rt8Ky2Hq7Lw3Zs9Xc4Mb6Jd1Fg0Pe";
	qesd_tenant t;
	qesd_api_key k;
	qesd_audit_event ev;
	uint8_t h[QESD_HMAC_LEN];
	char details[128];
	qesd_tx *tx;

	make_tenant(f->s, "acme", &t);
	tx = begin(f->s, QESD_TX_WRITE);
	memset(&k, 0, sizeof(k));
	strcpy(k.tenant_id, t.id);
	hmac(pepper, secret1, k.secret_hash);
	k.created_at_ms = T0;
	k.scopes = 1;
	assert_int_equal(qesd_key_insert(tx, &k), 0);
	ev = request_event(T0, k.id, "192.0.2.1");
	ev.type = "key.created";
	snprintf(details, sizeof(details), "{\"key_id\":\"%s\"}", k.id);
	ev.details = details;
	assert_int_equal(qesd_audit_append(tx, t.id, &ev, NULL), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	hmac(pepper, secret2, h);
	assert_int_equal(qesd_key_rotate(tx, t.id, k.id, h, T0 + 1000, T0), 0);
	commit(tx);

	if (pg_base != NULL) {
		/* what the server holds, as text, over every table */
		char sql[512];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT "
		    "row_to_json(x)::text AS j FROM api_keys x UNION ALL "
		    "SELECT row_to_json(y)::text FROM audit_records y) z "
		    "WHERE j LIKE '%%%s%%' OR j LIKE '%%%s%%' OR "
		    "j LIKE '%%%s%%'", secret1, secret2, pepper);
		assert_int_equal(raw_int(f->path, sql), 0);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM api_keys "
		    "WHERE id = '%s'", k.id);
		assert_int_equal(raw_int(f->path, sql), 1);
		return;
	}
	assert_false(db_contains(f, secret1));
	assert_false(db_contains(f, secret2));
	assert_false(db_contains(f, pepper));
	qesd_store_free(f->s);
	f->s = NULL;
	assert_false(db_contains(f, secret1));
	assert_false(db_contains(f, secret2));
	assert_false(db_contains(f, pepper));
	/* the file is readable to this check: what is stored is found */
	assert_true(file_contains(f->path, h, sizeof(h)));
	assert_true(db_contains(f, k.id));
}

/* Write tenant's export (header at the anchor, every record) to path. */
static void
export_to_file(qesd_store *s, const char *tenant_id, const char *path,
    uint8_t head[QES_AUDIT_HASH_LEN])
{
	qes_audit_record *recs = NULL;
	uint8_t anchor[QES_AUDIT_HASH_LEN];
	char cursor[QESD_CURSOR_SIZE];
	qes_buf *b = qes_buf_new();
	uint64_t seq, head_seq;
	size_t n, i;
	qesd_tx *tx;

	assert_non_null(b);
	/* one snapshot: the anchor and the records must agree */
	tx = begin(s, QESD_TX_READ);
	assert_int_equal(qesd_audit_anchor(tx, tenant_id, &seq, anchor), 0);
	assert_int_equal(qesd_audit_head(tx, tenant_id, &head_seq, head), 0);
	assert_int_equal(qes_audit_export_header(b, tenant_id, seq, anchor), 0);
	snprintf(cursor, sizeof(cursor), "%llu", (unsigned long long)seq);
	do {
		assert_int_equal(qesd_audit_list(tx, tenant_id, NULL, cursor,
		    QESD_LIST_MAX, &recs, &n, cursor), 0);
		for (i = 0; i < n; i++)
			assert_int_equal(qes_audit_export_record(b, &recs[i]),
			    0);
		qes_audit_records_free(recs, n);
	} while (cursor[0] != '\0');
	qesd_tx_end(tx);
	assert_int_equal(qes_buf_write_file(b, path, 0600), 0);
	qes_buf_free(b);
}

/* What `qes audit verify FILE` sees: an export of a purged, erased chain
 * verifies offline; an export of a tampered database names the record. */
static void
test_export_verifies_offline(void **state)
{
	struct fixture *f = *state;
	qes_audit_verify_result res;
	qesd_audit_event ev;
	qesd_tenant t;
	uint8_t head[QES_AUDIT_HASH_LEN];
	uint64_t count;
	char path[160], err[256], sql[256];
	int i;

	make_tenant(f->s, "acme", &t);
	for (i = 1; i <= 60; i++) {
		ev = request_event(T0 + i * 1000, NULL, "192.0.2.50");
		if (i % 7 == 0) {
			ev.type = "key.rotated";
			ev.details = "{\"grace_ms\":86400000}";
		}
		append(f->s, t.id, &ev, NULL);
	}
	assert_int_equal(qesd_audit_purge(f->s, T0 + 20 * 1000, T0 + 100000,
	    &count, err, sizeof(err)), 0);
	assert_int_equal(count, 19);
	assert_int_equal(qesd_audit_erase_addrs(f->s, T0 + 40 * 1000,
	    T0 + 100001, &count, err, sizeof(err)), 0);
	assert_int_equal(count, 20);

	snprintf(path, sizeof(path), "%s/export.jsonl", f->dir);
	export_to_file(f->s, t.id, path, head);
	assert_int_equal(qes_audit_verify_file(path, &res), 0);
	assert_int_equal(res.anchor_seq, 19);
	assert_int_equal(res.records, 60 - 19 + 2);	/* + purged, erased */
	assert_int_equal(res.last_seq, 62);
	assert_memory_equal(res.last_hash, head, QES_AUDIT_HASH_LEN);

	assert_int_equal(raw_exec(f->path, pg_base != NULL ?
	    "DROP TRIGGER audit_records_append_only ON audit_records" :
	    "DROP TRIGGER audit_records_append_only"), SQLITE_OK);
	snprintf(sql, sizeof(sql), "UPDATE audit_records SET type = "
	    "'api.request' WHERE tenant_id = '%s' AND seq = 42", t.id);
	assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
	export_to_file(f->s, t.id, path, head);
	assert_int_equal(qes_audit_verify_file(path, &res),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(res.broken_seq, 42);
	assert_string_equal(res.reason, "hash mismatch");
}

/* ---- group commit ---- */

struct pusher {
	qesd_audit_queue *q;
	const char *tenant_id;
	int n;
	int failures;
};

static void *
push_many(void *arg)
{
	struct pusher *p = arg;
	qesd_audit_event ev;
	int i;

	for (i = 0; i < p->n; i++) {
		ev = request_event(T0 + i, NULL, "192.0.2.44");
		if (qesd_audit_queue_push(p->q, p->tenant_id, &ev) != 0)
			p->failures++;
	}
	return NULL;
}

static void
test_group_commit(void **state)
{
	struct fixture *f = *state;
	qesd_audit_queue_config qc = { .flush_records = 50,
	    .flush_interval_ms = 20 };
	qesd_audit_queue *q = NULL;
	qesd_audit_queue_stats st;
	struct pusher p[4];
	pthread_t th[4];
	qesd_audit_event ev;
	qesd_tenant t;
	char ghost[QESD_ID_SIZE];
	int i;

	make_tenant(f->s, "acme", &t);
	assert_int_equal(qesd_audit_queue_new(f->s, &qc, &q), 0);
	for (i = 0; i < 4; i++) {
		p[i].q = q;
		p[i].tenant_id = t.id;
		p[i].n = 250;
		p[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, push_many,
		    &p[i]), 0);
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(p[i].failures, 0);
	/* invalid events are refused at push, not later */
	ev = request_event(T0, NULL, NULL);
	assert_int_equal(qesd_audit_queue_push(q, "nonsense", &ev),
	    QES_ERR_INVALID_ARG);
	ev.type = NULL;
	assert_int_equal(qesd_audit_queue_push(q, t.id, &ev),
	    QES_ERR_INVALID_ARG);
	/* a tenant that does not exist is dropped at flush, alone */
	ev = request_event(T0, NULL, NULL);
	assert_int_equal(qesd_id_new("ten", ghost), 0);
	assert_int_equal(qesd_audit_queue_push(q, ghost, &ev), 0);
	assert_int_equal(qesd_audit_queue_push(q, t.id, &ev), 0);
	assert_int_equal(qesd_audit_queue_flush(q), 0);
	qesd_audit_queue_get_stats(q, &st);
	assert_int_equal(st.written, 1001);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.pending, 0);
	qesd_audit_queue_free(q);
	assert_chain_ok(f->s, t.id, 1001);
}

/* The store is unavailable for a while: records wait in order, push
 * refuses beyond the limit, and everything lands once it is back. */
static void
test_group_commit_backlog(void **state)
{
	struct fixture *f = *state;
	qesd_store_config sc = { .pool_size = 2, .acquire_timeout_ms = 50,
	    .busy_timeout_ms = 50 };
	qesd_audit_queue_config qc = { .flush_records = 10,
	    .flush_interval_ms = 10, .max_pending = 30 };
	qesd_audit_queue *q = NULL;
	qesd_audit_queue_stats st;
	qesd_audit_event ev;
	qes_audit_record *recs;
	qesd_store *s = NULL;
	qesd_tenant t;
	qesd_tx *blocker;
	char err[256], cursor[QESD_CURSOR_SIZE], rid[16];
	size_t n;
	int i, r;

	make_tenant(f->s, "acme", &t);
	assert_int_equal(qesd_store_open(f->url, &sc, &s, err, sizeof(err)),
	    0);
	assert_int_equal(qesd_audit_queue_new(s, &qc, &q), 0);
	/* holds the writer lock, and the chain head */
	blocker = begin(s, QESD_TX_WRITE);
	ev = request_event(T0, NULL, NULL);
	assert_int_equal(qesd_audit_append(blocker, t.id, &ev, NULL), 0);
	for (i = 0; i < 40; i++) {
		snprintf(rid, sizeof(rid), "r%02d", i);
		ev = request_event(T0 + i, NULL, NULL);
		ev.request_id = rid;
		r = qesd_audit_queue_push(q, t.id, &ev);
		if (i < 30)
			assert_int_equal(r, 0);
		else
			assert_int_equal(r, QES_ERR_UNAVAILABLE);
	}
	assert_int_equal(qesd_audit_queue_flush(q), QES_ERR_BUSY);
	qesd_audit_queue_get_stats(q, &st);
	assert_int_equal(st.pending, 30);
	assert_true(st.flush_failures >= 1);
	qesd_tx_end(blocker);
	assert_int_equal(qesd_audit_queue_flush(q), 0);
	qesd_audit_queue_free(q);

	blocker = begin(s, QESD_TX_READ);
	assert_int_equal(qesd_audit_list(blocker, t.id, NULL, NULL, 0, &recs,
	    &n, cursor), 0);
	assert_int_equal(n, 30);
	for (i = 0; i < 30; i++) {
		snprintf(rid, sizeof(rid), "r%02d", i);
		assert_string_equal(recs[i].request_id, rid);
	}
	qes_audit_records_free(recs, n);
	qesd_tx_end(blocker);
	qesd_store_free(s);
	assert_chain_ok(f->s, t.id, 30);
}

int
main(void)
{
	pg_base = getenv("QES_TEST_PG_URL");
	if (pg_base != NULL && pg_base[0] == '\0')
		pg_base = NULL;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		T(test_open_urls),
		T(test_migrations),
		T(test_newer_schema_refused),
		T(test_transactions),
		T(test_tenants),
		T(test_tenant_isolation),
		T(test_key_lifecycle),
		T(test_key_pagination),
		T(test_audit_append_and_list),
		T(test_concurrent_appends),
		T(test_concurrent_appends_processes),
		T(test_device_and_job_rows),
		T(test_connection_loss),
		T(test_tamper_detected),
		T(test_purge_and_anchor),
		T(test_erase_addresses),
		T(test_export_verifies_offline),
		T(test_no_secret_in_database),
		T(test_group_commit),
		T(test_group_commit_backlog),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
