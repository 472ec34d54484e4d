/*
 * store_sqlite_jobs.c - the jobs table on SQLite (store_jobs.h): rows in
 * and out, and the compare-and-set update. store_jobs.c has already
 * checked every argument and decided the transition; this file only moves
 * rows.
 *
 * The "live" lists repeat the partial index's own predicate (state NOT IN
 * the final states) word for word: that is what lets SQLite use jobs_live
 * (and jobs_completed) instead of scanning every job ever made.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "qes/err.h"
#include "store.h"
#include "store_jobs.h"
#include "store_sqlite.h"

#define JOB_COLS "id, tenant_id, state, reason, credential_id, device_id, " \
	"session_id, key_id, verification_code, idempotency_key, " \
	"request_hash, created_at_ms, updated_at_ms, expires_at_ms, version"
#define LIVE "state NOT IN ('completed', 'failed', 'expired', 'cancelled')"

static const char sql_insert[] =
    "INSERT INTO jobs (" JOB_COLS ", request, result) VALUES "
    "(?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
    "?15, NULL)";
static const char sql_get[] =
    "SELECT " JOB_COLS ", request, result FROM jobs "
    "WHERE tenant_id = ?1 AND id = ?2";
static const char sql_get_idem[] =
    "SELECT " JOB_COLS ", request, result FROM jobs "
    "WHERE tenant_id = ?1 AND idempotency_key = ?2";
static const char sql_update[] =
    "UPDATE jobs SET state = ?3, reason = ?4, result = ?5, session_id = ?6, "
    "updated_at_ms = ?7, version = ?8 "
    "WHERE tenant_id = ?1 AND id = ?2 AND state = ?9 AND version = ?10";
static const char sql_list_live[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND expires_at_ms < ?1 "
    "ORDER BY expires_at_ms, id LIMIT ?2";
static const char sql_list_device[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND tenant_id = ?1 "
    "AND device_id = ?2 AND (?3 IS NULL OR session_id = ?3) "
    "ORDER BY expires_at_ms, id LIMIT ?4";
static const char sql_list_completed[] =
    "SELECT " JOB_COLS " FROM jobs WHERE state = 'completed' "
    "AND updated_at_ms < ?1 ORDER BY updated_at_ms, id LIMIT ?2";
/* LIVE too, so that the partial index jobs_live serves it */
static const char sql_list_signed[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND state = 'signed' "
    "AND updated_at_ms < ?1 ORDER BY updated_at_ms, id LIMIT ?2";

/* Columns 0..14 (JOB_COLS); -1 when a value breaks the schema's rules. */
static int
read_job(sqlite3_stmt *s, qesd_job *j)
{
	char state[24];
	int has;

	if (qesd_sq_col_text(s, 0, j->id, sizeof(j->id), 0) != 0 ||
	    qesd_sq_col_text(s, 1, j->tenant_id, sizeof(j->tenant_id), 0) != 0 ||
	    qesd_sq_col_text(s, 2, state, sizeof(state), 0) != 0 ||
	    qesd_job_state_parse(state, &j->state) != 0 ||
	    qesd_sq_col_text(s, 3, j->reason, sizeof(j->reason), 1) != 0 ||
	    qesd_sq_col_text(s, 4, j->credential_id, sizeof(j->credential_id),
	    0) != 0 ||
	    qesd_sq_col_text(s, 5, j->device_id, sizeof(j->device_id), 1) != 0 ||
	    qesd_sq_col_text(s, 6, j->session_id, sizeof(j->session_id), 1) != 0 ||
	    qesd_sq_col_text(s, 7, j->key_id, sizeof(j->key_id), 1) != 0 ||
	    qesd_sq_col_text(s, 8, j->verification_code,
	    sizeof(j->verification_code), 1) != 0 ||
	    qesd_sq_col_text(s, 9, j->idempotency_key,
	    sizeof(j->idempotency_key), 1) != 0 ||
	    qesd_sq_col_blob(s, 10, j->request_hash, sizeof(j->request_hash),
	    &has) != 0 ||
	    has != (j->idempotency_key[0] != '\0'))
		return -1;
	j->created_at_ms = sqlite3_column_int64(s, 11);
	j->updated_at_ms = sqlite3_column_int64(s, 12);
	j->expires_at_ms = sqlite3_column_int64(s, 13);
	j->version = sqlite3_column_int64(s, 14);
	return j->version >= 1 ? 0 : -1;
}

static int
sq_job_insert(qesd_tx *tx, const qesd_job *j)
{
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_insert, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, j->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, j->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, qesd_job_state_name(j->state))) !=
	    SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, j->credential_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 5, j->device_id[0] ? j->device_id :
	    NULL)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 6, j->session_id[0] ? j->session_id :
	    NULL)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 7, j->key_id[0] ? j->key_id : NULL)) !=
	    SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 8, j->verification_code)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 9, j->idempotency_key[0] ?
	    j->idempotency_key : NULL)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_blob(s, 10, j->idempotency_key[0] ?
	    j->request_hash : NULL, sizeof(j->request_hash))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 11, j->created_at_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 12, j->updated_at_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 13, j->expires_at_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 14, j->version)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 15, j->request)) != SQLITE_OK) {
		qesd_sq_done(s);
		return qesd_sq_fail(tx, rc, "adding job");
	}
	return qesd_sq_run(tx, s, "adding job");
}

static int
sq_job_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *idempotency_key, qesd_job *out)
{
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, job_id != NULL ? sql_get : sql_get_idem,
	    &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, job_id != NULL ? job_id :
	    idempotency_key)) != SQLITE_OK) {
		r = qesd_sq_fail(tx, rc, "reading job");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = qesd_sq_fail(tx, rc, "reading job");
		goto out;
	}
	if (read_job(s, out) != 0)
		goto corrupt;
	if ((r = qesd_sq_col_dup(s, 15, QESD_JOB_REQUEST_MAX,
	    &out->request)) == QES_ERR_ALLOC)
		goto out;
	if (r != 0 || out->request == NULL)
		goto corrupt;
	if ((r = qesd_sq_col_dup(s, 16, QESD_JOB_RESULT_MAX,
	    &out->result)) == QES_ERR_ALLOC)
		goto out;
	if (r != 0)
		goto corrupt;
	goto out;
 corrupt:
	r = qesd_sq_corrupt(tx, "jobs");
 out:
	qesd_sq_done(s);
	if (r != 0)
		qesd_job_clear(out);
	return r;
}

static int
sq_job_update(qesd_tx *tx, const qesd_job *next, qesd_job_state old_state,
    int64_t old_version)
{
	sqlite3_stmt *s;
	int rc, r;

	if ((r = qesd_sq_stmt(tx, sql_update, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, next->tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, next->id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, qesd_job_state_name(next->state))) !=
	    SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 4, next->reason[0] ? next->reason :
	    NULL)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 5, next->result)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 6, next->session_id[0] ?
	    next->session_id : NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 7, next->updated_at_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 8, next->version)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 9, qesd_job_state_name(old_state))) !=
	    SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 10, old_version)) != SQLITE_OK) {
		qesd_sq_done(s);
		return qesd_sq_fail(tx, rc, "updating job");
	}
	if ((r = qesd_sq_run(tx, s, "updating job")) != 0)
		return r;
	return sqlite3_changes(sqlite3_db_handle(s)) == 1 ? 0 :
	    QES_ERR_NOT_FOUND;
}

static int
sq_job_list(qesd_tx *tx, enum qesd_job_list_kind kind, const char *tenant_id,
    const char *device_id, const char *session_id, int64_t bound_ms,
    size_t limit, qesd_job *out, size_t *n)
{
	sqlite3_stmt *s;
	const char *sql;
	int rc, r = 0;

	*n = 0;
	switch (kind) {
	case QESD_JOB_LIST_LIVE:
		sql = sql_list_live;
		break;
	case QESD_JOB_LIST_LIVE_DEVICE:
		sql = sql_list_device;
		break;
	case QESD_JOB_LIST_COMPLETED:
		sql = sql_list_completed;
		break;
	case QESD_JOB_LIST_SIGNED:
		sql = sql_list_signed;
		break;
	default:
		return QES_ERR_INVALID_ARG;
	}
	if ((r = qesd_sq_stmt(tx, sql, &s)) != 0)
		return r;
	if (kind == QESD_JOB_LIST_LIVE_DEVICE) {
		if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) == SQLITE_OK &&
		    (rc = qesd_sq_bind_text(s, 2, device_id)) == SQLITE_OK &&
		    (rc = qesd_sq_bind_text(s, 3, session_id)) == SQLITE_OK)
			rc = sqlite3_bind_int64(s, 4, (int64_t)limit);
	} else if ((rc = sqlite3_bind_int64(s, 1, bound_ms)) == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, (int64_t)limit);
	if (rc != SQLITE_OK) {
		r = qesd_sq_fail(tx, rc, "listing jobs");
		goto out;
	}
	while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (read_job(s, &out[*n]) != 0) {
			r = qesd_sq_corrupt(tx, "jobs");
			goto out;
		}
		(*n)++;
	}
	if (*n < limit && rc != SQLITE_DONE)
		r = qesd_sq_fail(tx, rc, "listing jobs");
 out:
	qesd_sq_done(s);
	return r;
}

/* ---- job documents (migration 4; sealed by store_docs.c) ---- */

/*
 * Migration 4 (AdES documents, issue 5): the document and the result of a
 * job, sealed (nonce || AES-256-GCM ciphertext || tag), deleted with
 * their job. secure_delete is turned on for the connection before a
 * write here (store_sqlite.c does not need to know): deleted content is
 * overwritten with zeros in the pages SQLite writes, so a purged row's
 * ciphertext does not stay in the file's free space (older WAL frames
 * holding it are reused after the next checkpoint).
 */
const char qesd_sq_migration_docs[] =
"CREATE TABLE job_documents (\n"
"  tenant_id TEXT NOT NULL,\n"
"  job_id TEXT NOT NULL,\n"
"  kind TEXT NOT NULL CHECK (kind IN ('document', 'result')),\n"
"  sealed BLOB NOT NULL CHECK (length(sealed) > 28),\n"
"  created_at_ms INTEGER NOT NULL,\n"
"  PRIMARY KEY (tenant_id, job_id, kind),\n"
"  FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id)\n"
"    ON DELETE CASCADE\n"
") STRICT;\n";

static const char sql_doc_put[] =
    "INSERT INTO job_documents (tenant_id, job_id, kind, sealed, "
    "created_at_ms) SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS "
    "(SELECT 1 FROM jobs WHERE tenant_id = ?1 AND id = ?2) "
    "ON CONFLICT (tenant_id, job_id, kind) DO UPDATE SET "
    "sealed = excluded.sealed, created_at_ms = excluded.created_at_ms";
static const char sql_doc_get[] =
    "SELECT sealed FROM job_documents "
    "WHERE tenant_id = ?1 AND job_id = ?2 AND kind = ?3";
static const char sql_secure_delete[] = "PRAGMA secure_delete = ON";
static const char sql_doc_purge[] =
    "DELETE FROM job_documents WHERE tenant_id = ?1 AND job_id = ?2";

/* Zero freed pages from now on (per connection; idempotent). */
static int
secure_delete(qesd_tx *tx)
{
	sqlite3_stmt *s;
	int r;

	if ((r = qesd_sq_stmt(tx, sql_secure_delete, &s)) != 0)
		return r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		;
	qesd_sq_done(s);
	return r == SQLITE_DONE ? 0 : qesd_sq_fail(tx, r, "secure_delete");
}

static int
sq_doc_put(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *kind, const uint8_t *sealed, size_t sealed_len,
    int64_t now_ms)
{
	sqlite3_stmt *s;
	int rc, r;

	if ((r = secure_delete(tx)) != 0 ||
	    (r = qesd_sq_stmt(tx, sql_doc_put, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, job_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, kind)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_blob(s, 4, sealed, sealed_len)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, now_ms)) != SQLITE_OK) {
		qesd_sq_done(s);
		return qesd_sq_fail(tx, rc, "storing job document");
	}
	if ((r = qesd_sq_run(tx, s, "storing job document")) != 0)
		return r;
	return sqlite3_changes(sqlite3_db_handle(s)) == 1 ? 0 :
	    QES_ERR_NOT_FOUND;
}

static int
sq_doc_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *kind, size_t max, uint8_t **sealed, size_t *sealed_len)
{
	sqlite3_stmt *s;
	const void *b;
	int rc, r, n;

	if ((r = qesd_sq_stmt(tx, sql_doc_get, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, job_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 3, kind)) != SQLITE_OK) {
		r = qesd_sq_fail(tx, rc, "reading job document");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = qesd_sq_fail(tx, rc, "reading job document");
		goto out;
	}
	b = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	if (sqlite3_column_type(s, 0) != SQLITE_BLOB || b == NULL || n <= 0 ||
	    (size_t)n > max) {
		r = qesd_sq_corrupt(tx, "job_documents");
		goto out;
	}
	if ((*sealed = malloc((size_t)n)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	memcpy(*sealed, b, (size_t)n);
	*sealed_len = (size_t)n;
 out:
	qesd_sq_done(s);
	return r;
}

static int
sq_doc_purge(qesd_tx *tx, const char *tenant_id, const char *job_id,
    uint64_t *n)
{
	sqlite3_stmt *s;
	int rc, r;

	if ((r = secure_delete(tx)) != 0 ||
	    (r = qesd_sq_stmt(tx, sql_doc_purge, &s)) != 0)
		return r;
	if ((rc = qesd_sq_bind_text(s, 1, tenant_id)) != SQLITE_OK ||
	    (rc = qesd_sq_bind_text(s, 2, job_id)) != SQLITE_OK) {
		qesd_sq_done(s);
		return qesd_sq_fail(tx, rc, "purging job documents");
	}
	if ((r = qesd_sq_run(tx, s, "purging job documents")) != 0)
		return r;
	*n = (uint64_t)sqlite3_changes(sqlite3_db_handle(s));
	return 0;
}

const struct qesd_store_job_ops qesd_store_sqlite_job_ops = {
	.insert = sq_job_insert,
	.get = sq_job_get,
	.update = sq_job_update,
	.list = sq_job_list,
	.doc_put = sq_doc_put,
	.doc_get = sq_doc_get,
	.doc_purge = sq_doc_purge,
};
