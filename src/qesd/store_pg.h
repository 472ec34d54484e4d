/*
 * store_pg.h - what store_pg.c lends to the per-concern halves of the
 * PostgreSQL backend (store_pg_jobs.c, store_pg_devices.c), so that every
 * file moves rows the same way: one pooled connection per transaction
 * handle, statements prepared once per connection, parameters and results
 * in binary form, the same error mapping and poisoning.
 *
 * For store_pg*.c only; nothing else includes libpq-fe.h.
 */
#ifndef QESD_STORE_PG_H
#define QESD_STORE_PG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store.h"

#define QESD_PG_MAX_PARAMS 32

/* Parameters of one statement, in binary form ($1 is the first added). */
typedef struct qesd_pg_params {
	int n;
	const char *val[QESD_PG_MAX_PARAMS];
	int len[QESD_PG_MAX_PARAMS];
	int fmt[QESD_PG_MAX_PARAMS];
	Oid type[QESD_PG_MAX_PARAMS];
	unsigned char i8[QESD_PG_MAX_PARAMS][8];
} qesd_pg_params;

/* NULL binds SQL NULL (text, bytea); opt_text binds "" as NULL too;
 * opt_i64 binds 0 ("not set") as NULL. */
void qesd_pg_text(qesd_pg_params *p, const char *v);
void qesd_pg_opt_text(qesd_pg_params *p, const char *v);
void qesd_pg_i64(qesd_pg_params *p, int64_t v);
void qesd_pg_opt_i64(qesd_pg_params *p, int64_t v);
void qesd_pg_blob(qesd_pg_params *p, const void *v, size_t len);

/*
 * Run sql (static storage: its address names the prepared statement on
 * the connection) with p in tx. On success 0 and *res (PQclear it) when
 * res != NULL, and the number of rows changed in *changes when not NULL.
 * On failure the poisoning QES_ERR_* with tx's errmsg naming what.
 */
int qesd_pg_exec(qesd_tx *tx, const char *sql, const qesd_pg_params *p,
    const char *what, PGresult **res, uint64_t *changes);
/* A row that breaks the schema's rules: QES_ERR_FORMAT, poisons tx. */
int qesd_pg_corrupt(qesd_tx *tx, const char *what);

/* Reading a binary result: 0, or -1 for a value that breaks the rules. */
int qesd_pg_col_text(const PGresult *r, int row, int col, char *dst,
    size_t size, int nullable);
/* A new string of at most max bytes (*out NULL for NULL); QES_ERR_ALLOC. */
int qesd_pg_col_dup(const PGresult *r, int row, int col, size_t max,
    char **out);
/* Exactly len bytes; NULL allowed only when has != NULL (*has 0). */
int qesd_pg_col_blob(const PGresult *r, int row, int col, uint8_t *dst,
    size_t len, int *has);
/* bytea of 1..max bytes into dst; *len its length. */
int qesd_pg_col_var_blob(const PGresult *r, int row, int col, uint8_t *dst,
    size_t max, size_t *len);
/* bigint; NULL is -1 unless opt (then 0). */
int qesd_pg_col_i64(const PGresult *r, int row, int col, int opt,
    int64_t *out);
/* boolean: 0 or 1, -1 malformed */
int qesd_pg_col_bool(const PGresult *r, int row, int col);

/* the halves of the backend (store_pg_jobs.c, store_pg_devices.c) */
struct qesd_store_job_ops;
struct qesd_store_device_ops;
extern const struct qesd_store_job_ops qesd_store_pg_job_ops;
extern const struct qesd_store_ops qesd_store_pg_ops;
extern const char qesd_pg_migration_devices[];
extern const char qesd_pg_migration_docs[];
extern const char qesd_pg_migration_replicas[];
extern const struct qesd_store_device_ops qesd_store_pg_device_ops;

#endif
