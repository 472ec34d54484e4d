/*
 * store_pg_jobs.c - the jobs table on PostgreSQL (store_jobs.h): rows in
 * and out, and the compare-and-set update (state and version in the WHERE
 * clause, so two replicas moving the same job cannot both win). The
 * "live" lists repeat the partial index's predicate word for word, as on
 * SQLite, so that jobs_live and jobs_completed are used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "qes/err.h"
#include "store.h"
#include "store_jobs.h"
#include "store_pg.h"

#define JOB_COLS "id, tenant_id, state, reason, credential_id, device_id, " \
	"session_id, key_id, verification_code, idempotency_key, " \
	"request_hash, created_at_ms, updated_at_ms, expires_at_ms, version"
#define LIVE "state NOT IN ('completed', 'failed', 'expired', 'cancelled')"

static const char sql_insert[] =
    "INSERT INTO jobs (" JOB_COLS ", request, result) VALUES "
    "($1, $2, $3, NULL, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "$15, NULL)";
static const char sql_get[] =
    "SELECT " JOB_COLS ", request, result FROM jobs "
    "WHERE tenant_id = $1 AND id = $2";
static const char sql_get_idem[] =
    "SELECT " JOB_COLS ", request, result FROM jobs "
    "WHERE tenant_id = $1 AND idempotency_key = $2";
static const char sql_update[] =
    "UPDATE jobs SET state = $3, reason = $4, result = $5, session_id = $6, "
    "updated_at_ms = $7, version = $8 "
    "WHERE tenant_id = $1 AND id = $2 AND state = $9 AND version = $10";
static const char sql_list_live[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND expires_at_ms < $1 "
    "ORDER BY expires_at_ms, id LIMIT $2";
static const char sql_list_device[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND tenant_id = $1 "
    "AND device_id = $2 AND ($3::text IS NULL OR session_id = $3) "
    "ORDER BY expires_at_ms, id LIMIT $4";
static const char sql_list_completed[] =
    "SELECT " JOB_COLS " FROM jobs WHERE state = 'completed' "
    "AND updated_at_ms < $1 ORDER BY updated_at_ms, id LIMIT $2";
/* LIVE too, so that the partial index jobs_live serves it */
static const char sql_list_signed[] =
    "SELECT " JOB_COLS " FROM jobs WHERE " LIVE " AND state = 'signed' "
    "AND updated_at_ms < $1 ORDER BY updated_at_ms, id LIMIT $2";

/* Columns 0..14 (JOB_COLS); -1 when a value breaks the schema's rules. */
static int
read_job(const PGresult *res, int row, qesd_job *j)
{
	char state[24];
	int has;

	if (qesd_pg_col_text(res, row, 0, j->id, sizeof(j->id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 1, j->tenant_id, sizeof(j->tenant_id),
	    0) != 0 ||
	    qesd_pg_col_text(res, row, 2, state, sizeof(state), 0) != 0 ||
	    qesd_job_state_parse(state, &j->state) != 0 ||
	    qesd_pg_col_text(res, row, 3, j->reason, sizeof(j->reason), 1) != 0 ||
	    qesd_pg_col_text(res, row, 4, j->credential_id,
	    sizeof(j->credential_id), 0) != 0 ||
	    qesd_pg_col_text(res, row, 5, j->device_id, sizeof(j->device_id),
	    1) != 0 ||
	    qesd_pg_col_text(res, row, 6, j->session_id, sizeof(j->session_id),
	    1) != 0 ||
	    qesd_pg_col_text(res, row, 7, j->key_id, sizeof(j->key_id), 1) != 0 ||
	    qesd_pg_col_text(res, row, 8, j->verification_code,
	    sizeof(j->verification_code), 1) != 0 ||
	    qesd_pg_col_text(res, row, 9, j->idempotency_key,
	    sizeof(j->idempotency_key), 1) != 0 ||
	    qesd_pg_col_blob(res, row, 10, j->request_hash,
	    sizeof(j->request_hash), &has) != 0 ||
	    has != (j->idempotency_key[0] != '\0') ||
	    qesd_pg_col_i64(res, row, 11, 0, &j->created_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 12, 0, &j->updated_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 13, 0, &j->expires_at_ms) != 0 ||
	    qesd_pg_col_i64(res, row, 14, 0, &j->version) != 0)
		return -1;
	return j->version >= 1 ? 0 : -1;
}

static int
pg_job_insert(qesd_tx *tx, const qesd_job *j)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, j->id);
	qesd_pg_text(&p, j->tenant_id);
	qesd_pg_text(&p, qesd_job_state_name(j->state));
	qesd_pg_text(&p, j->credential_id);
	qesd_pg_opt_text(&p, j->device_id);
	qesd_pg_opt_text(&p, j->session_id);
	qesd_pg_opt_text(&p, j->key_id);
	qesd_pg_text(&p, j->verification_code);
	qesd_pg_opt_text(&p, j->idempotency_key);
	qesd_pg_blob(&p, j->idempotency_key[0] ? j->request_hash : NULL,
	    sizeof(j->request_hash));
	qesd_pg_i64(&p, j->created_at_ms);
	qesd_pg_i64(&p, j->updated_at_ms);
	qesd_pg_i64(&p, j->expires_at_ms);
	qesd_pg_i64(&p, j->version);
	qesd_pg_text(&p, j->request);
	return qesd_pg_exec(tx, sql_insert, &p, "adding job", NULL, NULL);
}

static int
pg_job_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *idempotency_key, qesd_job *out)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, job_id != NULL ? job_id : idempotency_key);
	if ((r = qesd_pg_exec(tx, job_id != NULL ? sql_get : sql_get_idem, &p,
	    "reading job", &res, NULL)) != 0)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return QES_ERR_NOT_FOUND;
	}
	if (read_job(res, 0, out) != 0)
		goto corrupt;
	if ((r = qesd_pg_col_dup(res, 0, 15, QESD_JOB_REQUEST_MAX,
	    &out->request)) == QES_ERR_ALLOC)
		goto out;
	if (r != 0 || out->request == NULL)
		goto corrupt;
	if ((r = qesd_pg_col_dup(res, 0, 16, QESD_JOB_RESULT_MAX,
	    &out->result)) == QES_ERR_ALLOC)
		goto out;
	if (r != 0)
		goto corrupt;
	goto out;
 corrupt:
	r = qesd_pg_corrupt(tx, "jobs");
 out:
	PQclear(res);
	if (r != 0)
		qesd_job_clear(out);
	return r;
}

static int
pg_job_update(qesd_tx *tx, const qesd_job *next, qesd_job_state old_state,
    int64_t old_version)
{
	qesd_pg_params p = { 0 };
	uint64_t changed = 0;
	int r;

	qesd_pg_text(&p, next->tenant_id);
	qesd_pg_text(&p, next->id);
	qesd_pg_text(&p, qesd_job_state_name(next->state));
	qesd_pg_opt_text(&p, next->reason);
	qesd_pg_text(&p, next->result);
	qesd_pg_opt_text(&p, next->session_id);
	qesd_pg_i64(&p, next->updated_at_ms);
	qesd_pg_i64(&p, next->version);
	qesd_pg_text(&p, qesd_job_state_name(old_state));
	qesd_pg_i64(&p, old_version);
	if ((r = qesd_pg_exec(tx, sql_update, &p, "updating job", NULL,
	    &changed)) != 0)
		return r;
	return changed == 1 ? 0 : QES_ERR_NOT_FOUND;
}

static int
pg_job_list(qesd_tx *tx, enum qesd_job_list_kind kind, const char *tenant_id,
    const char *device_id, const char *session_id, int64_t bound_ms,
    size_t limit, qesd_job *out, size_t *n)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	const char *sql;
	int r = 0, i;

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
	if (kind == QESD_JOB_LIST_LIVE_DEVICE) {
		qesd_pg_text(&p, tenant_id);
		qesd_pg_text(&p, device_id);
		qesd_pg_text(&p, session_id);
	} else
		qesd_pg_i64(&p, bound_ms);
	qesd_pg_i64(&p, (int64_t)limit);
	if ((r = qesd_pg_exec(tx, sql, &p, "listing jobs", &res, NULL)) != 0)
		return r;
	for (i = 0; i < PQntuples(res) && *n < limit; i++) {
		if (read_job(res, i, &out[*n]) != 0) {
			r = qesd_pg_corrupt(tx, "jobs");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	return r;
}

/* ---- job documents (migration 4; sealed by store_docs.c) ---- */

/* Migration 4 (AdES documents): store_sqlite_jobs.c's table, in
 * PostgreSQL's words. */
const char qesd_pg_migration_docs[] =
"CREATE TABLE job_documents (\n"
"  tenant_id text NOT NULL,\n"
"  job_id text NOT NULL,\n"
"  kind text NOT NULL CHECK (kind IN ('document', 'result')),\n"
"  sealed bytea NOT NULL CHECK (length(sealed) > 28),\n"
"  created_at_ms bigint NOT NULL,\n"
"  PRIMARY KEY (tenant_id, job_id, kind),\n"
"  FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id)\n"
"    ON DELETE CASCADE\n"
");\n";

static const char sql_doc_put[] =
    "INSERT INTO job_documents (tenant_id, job_id, kind, sealed, "
    "created_at_ms) SELECT $1, $2, $3, $4, $5 WHERE EXISTS "
    "(SELECT 1 FROM jobs WHERE tenant_id = $1 AND id = $2) "
    "ON CONFLICT (tenant_id, job_id, kind) DO UPDATE SET "
    "sealed = excluded.sealed, created_at_ms = excluded.created_at_ms";
static const char sql_doc_get[] =
    "SELECT sealed FROM job_documents "
    "WHERE tenant_id = $1 AND job_id = $2 AND kind = $3";
static const char sql_doc_purge[] =
    "DELETE FROM job_documents WHERE tenant_id = $1 AND job_id = $2";

static int
pg_doc_put(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *kind, const uint8_t *sealed, size_t sealed_len,
    int64_t now_ms)
{
	qesd_pg_params p = { 0 };
	uint64_t changes = 0;
	int r;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, job_id);
	qesd_pg_text(&p, kind);
	qesd_pg_blob(&p, sealed, sealed_len);
	qesd_pg_i64(&p, now_ms);
	if ((r = qesd_pg_exec(tx, sql_doc_put, &p, "storing job document",
	    NULL, &changes)) != 0)
		return r;
	return changes == 1 ? 0 : QES_ERR_NOT_FOUND;
}

static int
pg_doc_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    const char *kind, size_t max, uint8_t **sealed, size_t *sealed_len)
{
	qesd_pg_params p = { 0 };
	PGresult *res;
	int r, n;

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, job_id);
	qesd_pg_text(&p, kind);
	if ((r = qesd_pg_exec(tx, sql_doc_get, &p, "reading job document",
	    &res, NULL)) != 0)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return QES_ERR_NOT_FOUND;
	}
	n = PQgetlength(res, 0, 0);
	if (PQgetisnull(res, 0, 0) || n <= 0 || (size_t)n > max) {
		PQclear(res);
		return qesd_pg_corrupt(tx, "job_documents");
	}
	if ((*sealed = malloc((size_t)n)) == NULL) {
		PQclear(res);
		return QES_ERR_ALLOC;
	}
	memcpy(*sealed, PQgetvalue(res, 0, 0), (size_t)n);
	*sealed_len = (size_t)n;
	PQclear(res);
	return 0;
}

static int
pg_doc_purge(qesd_tx *tx, const char *tenant_id, const char *job_id,
    uint64_t *n)
{
	qesd_pg_params p = { 0 };

	qesd_pg_text(&p, tenant_id);
	qesd_pg_text(&p, job_id);
	return qesd_pg_exec(tx, sql_doc_purge, &p, "purging job documents",
	    NULL, n);
}

const struct qesd_store_job_ops qesd_store_pg_job_ops = {
	.insert = pg_job_insert,
	.get = pg_job_get,
	.update = pg_job_update,
	.list = pg_job_list,
	.doc_put = pg_doc_put,
	.doc_get = pg_doc_get,
	.doc_purge = pg_doc_purge,
};
