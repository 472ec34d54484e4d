/*
 * store_sqlite.h - what store_sqlite.c lends to the per-concern halves of
 * the SQLite backend (store_sqlite_jobs.c, ...), so that every file moves
 * rows the same way: one connection per transaction handle, statements
 * prepared once per connection, the same error mapping and poisoning.
 *
 * For store_sqlite*.c only; nothing else includes sqlite3.h.
 */
#ifndef QESD_STORE_SQLITE_H
#define QESD_STORE_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

/*
 * The statement for sql on tx's connection, prepared on first use and kept
 * until the store closes. sql must have static storage (a string literal
 * or a static array): its address is the cache key. Do not finalize it;
 * release it with qesd_sq_done() after use. 0 or a poisoning error.
 */
int qesd_sq_stmt(qesd_tx *tx, const char *sql, sqlite3_stmt **out);
/* Reset and clear the bindings (NULL: no-op). */
void qesd_sq_done(sqlite3_stmt *s);
/* Map a SQLite return code, note what failed, poison tx; returns the
 * QES_ERR_*. */
int qesd_sq_fail(qesd_tx *tx, int rc, const char *what);
/* A row that breaks the schema's rules: QES_ERR_FORMAT, poisons tx. */
int qesd_sq_corrupt(qesd_tx *tx, const char *what);
/* Step a bound statement that returns no rows, then qesd_sq_done(). */
int qesd_sq_run(qesd_tx *tx, sqlite3_stmt *s, const char *what);

/* Binding: NULL binds SQL NULL. Return SQLite codes. */
int qesd_sq_bind_text(sqlite3_stmt *s, int i, const char *v);
int qesd_sq_bind_blob(sqlite3_stmt *s, int i, const void *v, size_t len);

/* Reading: 0, or -1 for a value that breaks the column's rules. */
/* Text into dst (size bytes with NUL); NULL is "" when nullable. */
int qesd_sq_col_text(sqlite3_stmt *s, int i, char *dst, size_t size,
    int nullable);
/* Text as a new string of at most max bytes (*out NULL for NULL);
 * QES_ERR_ALLOC too. */
int qesd_sq_col_dup(sqlite3_stmt *s, int i, size_t max, char **out);
/* Exactly len bytes; NULL allowed only when has != NULL (*has 0). */
int qesd_sq_col_blob(sqlite3_stmt *s, int i, uint8_t *dst, size_t len,
    int *has);
/* An integer where NULL means 0 ("not set"). */
int64_t qesd_sq_col_opt_i64(sqlite3_stmt *s, int i);

#endif
