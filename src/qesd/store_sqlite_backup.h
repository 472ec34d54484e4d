/*
 * store_sqlite_backup.h - an online, consistent copy of a qesd SQLite
 * database (`qesd admin backup FILE`), taken while `qesd serve` may be
 * writing to it.
 *
 * Only SQLite has this: a PostgreSQL store is backed up with the
 * database's own tools (pg_dump, WAL archiving; docs/deployment.md).
 */
#ifndef QESD_STORE_SQLITE_BACKUP_H
#define QESD_STORE_SQLITE_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#define QESD_BACKUP_STEP_PAGES_DEFAULT 256	/* 1 MiB at 4 KiB pages */
#define QESD_BACKUP_STEP_PAGES_MAX 65536
#define QESD_BACKUP_PAUSE_MS_MAX 10000

/* What a backup copied. */
typedef struct qesd_backup_stats {
	uint64_t pages;			/* database pages copied */
	uint64_t bytes;			/* pages * page size */
	uint64_t steps;			/* sqlite3_backup_step() calls */
	int64_t longest_step_ms;	/* the longest of them */
	int64_t schema_version;		/* the copy's schema version */
} qesd_backup_stats;

/*
 * Copy the qesd database at db_path to dest_path with SQLite's online
 * backup API, from one read snapshot of the source (WAL: the server's
 * writers go on while the copy is made, and the copy is the database as it
 * was at one commit). The copy is written to a temporary file beside
 * dest_path (mode 0600), checked (PRAGMA quick_check), fsynced and renamed
 * over dest_path, so dest_path is either the old file or a complete
 * backup. step_pages is how many pages one backup step copies (1 to
 * QESD_BACKUP_STEP_PAGES_MAX; 0: QESD_BACKUP_STEP_PAGES_DEFAULT), and
 * pause_ms (0 to QESD_BACKUP_PAUSE_MS_MAX) a sleep between steps, to spread
 * the copy's I/O on a busy disk. st may be NULL.
 *
 * Returns 0, or QES_ERR_NOT_FOUND (no database at db_path),
 * QES_ERR_INVALID_ARG (dest_path is the database itself or not a regular
 * file), QES_ERR_UNSUPPORTED (db_path is not a qesd database),
 * QES_ERR_FORMAT (the copy failed its check), QES_ERR_BUSY (the source
 * stayed locked), QES_ERR_IO / QES_ERR_UNAVAILABLE; err says what failed.
 */
int qesd_sqlite_backup(const char *db_path, const char *dest_path,
    unsigned step_pages, unsigned pause_ms, qesd_backup_stats *st, char *err,
    size_t err_len);

#endif
