/*
 * test_store_docs.c - the encrypted job documents of the store
 * (store_docs.c, migration 4) on SQLite and, run with QES_TEST_PG_URL set
 * (tests/integration/store_docs_postgres.sh), on PostgreSQL: round trips
 * of both kinds (a multi-MiB one too), replacement, purge, take (once,
 * and only when the transaction commits), the database
 * holding no plaintext, a wrong key or a row moved to another job failing
 * to open, tenancy, limits, and the rules of the key file.
 */
#define _GNU_SOURCE	/* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "qes/err.h"
#include "store.h"
#include "store_jobs.h"

#define T0 1700000000000LL

static const char *pg_base;

struct fixture {
	char dir[64];
	char path[1024];
	char url[1100];
	char schema[40];
	qesd_store *s;
	qesd_tenant t, t2;
	char job[QESD_ID_SIZE], job2[QESD_ID_SIZE];
};

static const char marker[] = "QES-J1-MARKER-7f3a9c-document-content";
static uint8_t key1[QESD_DOC_KEY_LEN], key2[QESD_DOC_KEY_LEN];

/* Run sql on PostgreSQL; with out, the first value of the first row. */
static int
pg_run(const char *conninfo, const char *sql, uint8_t **out, size_t *out_len)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res;
	int ok;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "PostgreSQL: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	/* binary results for a value; PQexec (several statements) else */
	res = out != NULL ? PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 1) :
	    PQexec(c, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK;
	if (ok && out != NULL) {
		int n = PQntuples(res) > 0 ? PQgetlength(res, 0, 0) : 0;

		*out = malloc((size_t)n + 1);
		if (*out != NULL && n > 0)
			memcpy(*out, PQgetvalue(res, 0, 0), (size_t)n);
		*out_len = (size_t)n;
	}
	PQclear(res);
	PQfinish(c);
	return ok ? 0 : -1;
}

static qesd_tx *
begin(qesd_store *s, qesd_tx_mode mode)
{
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(s, mode, &tx), 0);
	return tx;
}

static void
commit(qesd_tx *tx)
{
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
}

static void
add_job(qesd_tx *tx, const char *tenant_id, char *id_out)
{
	qesd_job j;

	memset(&j, 0, sizeof(j));
	strcpy(j.tenant_id, tenant_id);
	j.state = QESD_JOB_CREATED;
	assert_int_equal(qesd_id_new("crd", j.credential_id), 0);
	j.request = (char *)"{\"format\":\"pades\"}";
	strcpy(j.verification_code, "1234");
	j.created_at_ms = j.updated_at_ms = T0;
	j.expires_at_ms = T0 + 60000;
	assert_int_equal(qesd_job_insert(tx, &j), 0);
	strcpy(id_out, j.id);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	qesd_tx *tx;

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-docs-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	if (pg_base != NULL) {
		char sql[96];

		snprintf(f->schema, sizeof(f->schema), "d_%s",
		    strrchr(f->dir, '-') + 1);
		for (char *c = f->schema; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
		if (pg_run(pg_base, sql, NULL, NULL) != 0)
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
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_create(tx, "acme", T0, &f->t), 0);
	assert_int_equal(qesd_tenant_create(tx, "other", T0, &f->t2), 0);
	add_job(tx, f->t.id, f->job);
	add_job(tx, f->t.id, f->job2);
	commit(tx);
	memset(key1, 0x5a, sizeof(key1));
	memset(key2, 0xa5, sizeof(key2));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	qesd_store_free(f->s);
	if (pg_base != NULL) {
		snprintf(cmd, sizeof(cmd), "SET client_min_messages = warning; "
		    "DROP SCHEMA %s CASCADE", f->schema);
		if (pg_run(pg_base, cmd, NULL, NULL) != 0)
			return -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* 1 when the marker is anywhere in the database (SQLite: the file and
 * its WAL; PostgreSQL: the stored rows, as bytes). */
static int
db_has_marker(struct fixture *f)
{
	static const char *const sfx[] = { "", "-wal" };
	int found = 0;

	if (pg_base != NULL) {
		uint8_t *v = NULL;
		size_t n = 0;

		assert_int_equal(pg_run(f->path, "SELECT coalesce(string_agg("
		    "sealed || convert_to(kind, 'UTF8'), ''::bytea), "
		    "''::bytea) FROM job_documents", &v, &n), 0);
		assert_non_null(v);
		found = memmem(v, n, marker, strlen(marker)) != NULL;
		free(v);
		return found;
	}
	for (size_t i = 0; i < 2 && !found; i++) {
		char p[1100];
		FILE *fp;
		char *buf;
		size_t n;

		snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
		if ((fp = fopen(p, "rb")) == NULL)
			continue;
		assert_non_null(buf = malloc(64u << 20));
		n = fread(buf, 1, 64u << 20, fp);
		fclose(fp);
		found = memmem(buf, n, marker, strlen(marker)) != NULL;
		free(buf);
	}
	return found;
}

static void
test_round_trip(void **state)
{
	struct fixture *f = *state;
	uint8_t *out = NULL;
	size_t n = 0;
	uint64_t purged = 0;
	qesd_tx *tx;
	char doc[256], res[256];

	snprintf(doc, sizeof(doc), "%%PDF-1.7 %s document", marker);
	snprintf(res, sizeof(res), "%%PDF-1.7 %s signed result", marker);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, (const uint8_t *)doc, strlen(doc), T0 + 1), 0);
	commit(tx);
	assert_false(db_has_marker(f));

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), 0);
	assert_int_equal(n, strlen(doc));
	assert_memory_equal(out, doc, n);
	free(out);
	/* no result yet; nothing for the other job */
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), QES_ERR_NOT_FOUND);
	assert_null(out);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_NOT_FOUND);
	/* another tenant sees nothing */
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t2.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_NOT_FOUND);
	/* the wrong key does not open it */
	assert_int_equal(qesd_job_doc_get(tx, key2, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_SIGNATURE_INVALID);
	assert_null(out);
	qesd_tx_end(tx);

	/* the result, then a replacement of it */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, (const uint8_t *)"x", 1, T0 + 2), 0);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, (const uint8_t *)res, strlen(res), T0 + 3), 0);
	commit(tx);
	assert_false(db_has_marker(f));
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), 0);
	assert_int_equal(n, strlen(res));
	assert_memory_equal(out, res, n);
	free(out);
	qesd_tx_end(tx);

	/* purge: both gone, a second purge deletes nothing */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_purge(tx, f->t.id, f->job, &purged), 0);
	assert_int_equal(purged, 2);
	assert_int_equal(qesd_job_doc_purge(tx, f->t.id, f->job, &purged), 0);
	assert_int_equal(purged, 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	assert_false(db_has_marker(f));
}

static void
test_large(void **state)
{
	struct fixture *f = *state;
	size_t len = (3u << 20) + 17, n = 0, i;
	uint8_t *doc, *out = NULL;
	qesd_tx *tx;

	assert_non_null(doc = malloc(len));
	for (i = 0; i < len; i++)
		doc[i] = (uint8_t)(i * 131 + (i >> 11));
	memcpy(doc + len / 2, marker, strlen(marker));
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_INPUT, doc, len, T0 + 1), 0);
	commit(tx);
	assert_false(db_has_marker(f));
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_INPUT, &out, &n), 0);
	qesd_tx_end(tx);
	assert_int_equal(n, len);
	assert_memory_equal(out, doc, len);
	free(out);
	free(doc);
}

/* A row moved to another job (or kind) no longer opens: the AAD. */
static void
test_moved_row(void **state)
{
	struct fixture *f = *state;
	char sql[256];
	uint8_t *out = NULL;
	size_t n = 0;
	qesd_tx *tx;

	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, (const uint8_t *)marker, strlen(marker),
	    T0 + 1), 0);
	commit(tx);
	snprintf(sql, sizeof(sql), "UPDATE job_documents SET job_id = '%s' "
	    "WHERE job_id = '%s'", f->job2, f->job);
	if (pg_base != NULL)
		assert_int_equal(pg_run(f->path, sql, NULL, NULL), 0);
	else {
		sqlite3 *db;

		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 5000);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL),
		    SQLITE_OK);
		sqlite3_close(db);
	}
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_SIGNATURE_INVALID);
	assert_null(out);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
}

static void
test_refusals(void **state)
{
	struct fixture *f = *state;
	uint8_t b[4] = { 1, 2, 3, 4 };
	char nojob[QESD_ID_SIZE];
	qesd_tx *tx;

	assert_int_equal(qesd_id_new("job", nojob), 0);
	tx = begin(f->s, QESD_TX_WRITE);
	/* no such job, or the job of another tenant */
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, nojob,
	    QESD_JOB_DOC_INPUT, b, sizeof(b), T0), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t2.id, f->job,
	    QESD_JOB_DOC_INPUT, b, sizeof(b), T0), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, "job_bad",
	    QESD_JOB_DOC_INPUT, b, sizeof(b), T0), QES_ERR_NOT_FOUND);
	/* sizes: nothing, and one byte over the limit (never read) */
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, b, 0, T0), QES_ERR_LIMIT);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, b, (size_t)QESD_JOB_DOC_MAX + 1, T0),
	    QES_ERR_LIMIT);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    (qesd_job_doc_kind)9, b, sizeof(b), T0), QES_ERR_INVALID_ARG);
	/* none of these poisoned the transaction */
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, b, sizeof(b), T0), 0);
	commit(tx);
	/* a read transaction cannot write */
	tx = begin(f->s, QESD_TX_READ);
	assert_int_not_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, b, sizeof(b), T0), 0);
	qesd_tx_end(tx);
}

/* take: the result once, everything of the job gone with it, and only
 * if the transaction commits */
static void
test_take(void **state)
{
	struct fixture *f = *state;
	static const uint8_t doc[] = "the document", res[] = "the result";
	uint8_t *out = NULL;
	size_t n = 0;
	qesd_tx *tx;

	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, doc, sizeof(doc), T0 + 1), 0);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, res, sizeof(res), T0 + 2), 0);
	assert_int_equal(qesd_job_doc_put(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_RESULT, res, sizeof(res), T0 + 2), 0);
	commit(tx);
	/* a read transaction cannot take */
	tx = begin(f->s, QESD_TX_READ);
	assert_int_not_equal(qesd_job_doc_take(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), 0);
	assert_null(out);
	qesd_tx_end(tx);
	/* taken but rolled back: still there */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_take(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), 0);
	free(out);
	qesd_tx_end(tx);
	/* taken and committed: the result, then nothing of the job */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_take(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), 0);
	assert_int_equal(n, sizeof(res));
	assert_memory_equal(out, res, n);
	free(out);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_job_doc_take(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_RESULT, &out, &n), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job,
	    QESD_JOB_DOC_INPUT, &out, &n), QES_ERR_NOT_FOUND);
	/* the other job keeps its result; a wrong key takes nothing */
	assert_int_equal(qesd_job_doc_take(tx, key2, f->t.id, f->job2,
	    QESD_JOB_DOC_RESULT, &out, &n), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qesd_job_doc_get(tx, key1, f->t.id, f->job2,
	    QESD_JOB_DOC_RESULT, &out, &n), 0);
	free(out);
	qesd_tx_end(tx);
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	assert_true((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)) >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void
test_key_file(void **state)
{
	struct fixture *f = *state;
	char p[128], err[256];
	uint8_t k[QESD_DOC_KEY_LEN], raw[QESD_DOC_KEY_LEN];
	const char *hex = "000102030405060708090a0b0c0d0e0f"
	    "101112131415161718191A1B1C1D1E1F\n";

	snprintf(p, sizeof(p), "%s/doc.key", f->dir);
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(0xf0 ^ i);
	write_file(p, raw, sizeof(raw), 0600);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)), 0);
	assert_memory_equal(k, raw, sizeof(raw));

	write_file(p, hex, strlen(hex), 0400);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(k); i++)
		assert_int_equal(k[i], i);

	/* readable by the group: refused, and the reason says so */
	write_file(p, hex, strlen(hex), 0640);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)),
	    QES_ERR_IO);
	assert_non_null(strstr(err, "0600"));
	/* wrong length, bad digit */
	write_file(p, raw, sizeof(raw) - 1, 0600);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)),
	    QES_ERR_FORMAT);
	write_file(p, "zz0102030405060708090a0b0c0d0e0f"
	    "101112131415161718191a1b1c1d1e1f", 64, 0600);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)),
	    QES_ERR_FORMAT);
	assert_null(strstr(err, "101112"));	/* no key material */
	/* missing file, and a directory */
	snprintf(p, sizeof(p), "%s/none.key", f->dir);
	assert_int_equal(qesd_doc_key_load(p, k, err, sizeof(err)),
	    QES_ERR_IO);
	assert_int_equal(qesd_doc_key_load(f->dir, k, err, sizeof(err)),
	    QES_ERR_IO);
}

int
main(void)
{
	pg_base = getenv("QES_TEST_PG_URL");
	if (pg_base != NULL && pg_base[0] == '\0')
		pg_base = NULL;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_round_trip),
		T(test_large),
		T(test_moved_row),
		T(test_refusals),
		T(test_take),
		T(test_key_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
