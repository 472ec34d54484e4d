/*
 * store_sqlite_backup.c - `qesd admin backup`: an online copy of the SQLite
 * store with SQLite's backup API (sqlite3_backup_init/step/finish).
 *
 * Consistency without blocking the server. The source connection opens a
 * read transaction first and keeps it for the whole copy, so every
 * sqlite3_backup_step() reads the same WAL snapshot: the copy is the
 * database as of one commit, and commits made meanwhile by `qesd serve`
 * neither restart the copy (they would, step after step under load, if
 * each step took a fresh snapshot) nor wait for it - in WAL mode a reader
 * never blocks a writer. The price is that checkpoints cannot pass the
 * snapshot, so the WAL grows while the copy runs; copying in steps of
 * step_pages pages (default 256, 1 MiB) keeps each step short and the
 * copy's I/O interleaved with the server's; an optional pause between steps
 * spreads it further.
 *
 * The copy goes to a temporary file beside the destination (mkstemp: mode
 * 0600, like the database), is checked with PRAGMA quick_check, fsynced,
 * and renamed over the destination; the directory is fsynced after the
 * rename. A failure removes the temporary file and leaves the destination
 * as it was.
 */
#define _GNU_SOURCE	/* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "store_sqlite_backup.h"

#define APPLICATION_ID 0x71657364	/* "qesd", as store_sqlite.c */
#define BUSY_TIMEOUT_MS 5000
#define BUSY_RETRY_MS 20
#define BUSY_RETRIES 250		/* 5 s of retries on a locked step */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return QES_ERR_BUSY;
	case SQLITE_NOMEM:
		return QES_ERR_ALLOC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return QES_ERR_FORMAT;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
		return QES_ERR_IO;
	default:
		return QES_ERR_UNAVAILABLE;
	}
}

/* One integer (or, with text != NULL, one text) from a one-row query. */
static int
query_one(sqlite3 *db, const char *sql, int64_t *v, char *text,
    size_t text_size, const char *what, char *err, size_t err_len)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc, r = 0;

	if ((rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_step(s)) != SQLITE_ROW) {
		snprintf(err, err_len, "%s: %s", what, sqlite3_errmsg(db));
		r = rc == SQLITE_DONE ? QES_ERR_INTERNAL : map_rc(rc);
		goto out;
	}
	if (v != NULL)
		*v = sqlite3_column_int64(s, 0);
	if (text != NULL) {
		t = sqlite3_column_text(s, 0);
		snprintf(text, text_size, "%s", t != NULL ? (const char *)t : "");
	}
 out:
	sqlite3_finalize(s);
	return r;
}

static int
exec_sql(sqlite3 *db, const char *sql, const char *what, char *err,
    size_t err_len)
{
	int rc;

	if ((rc = sqlite3_exec(db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
		snprintf(err, err_len, "%s: %s", what, sqlite3_errmsg(db));
		return map_rc(rc);
	}
	return 0;
}

static int
open_db(const char *path, int flags, sqlite3 **db, char *err, size_t err_len)
{
	int rc;

	rc = sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX |
	    SQLITE_OPEN_PRIVATECACHE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_extended_result_codes(*db, 1);
		if ((rc = sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS)) == SQLITE_OK &&
		    (rc = sqlite3_db_config(*db, SQLITE_DBCONFIG_DEFENSIVE, 1,
		    NULL)) == SQLITE_OK)
			rc = sqlite3_db_config(*db, SQLITE_DBCONFIG_TRUSTED_SCHEMA,
			    0, NULL);
	}
	if (rc != SQLITE_OK) {
		snprintf(err, err_len, "cannot open %s: %s", path,
		    *db != NULL ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		return map_rc(rc);
	}
	return 0;
}

/* Remove the temporary copy and whatever SQLite left beside it. */
static void
remove_tmp(const char *tmp)
{
	static const char *const sfx[] = { "", "-journal", "-wal", "-shm" };
	char p[4096 + 16];
	size_t i;

	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if ((size_t)snprintf(p, sizeof(p), "%s%s", tmp, sfx[i]) < sizeof(p))
			(void)unlink(p);
	}
}

/* The source and the destination must differ, the destination be a
 * regular file or absent. */
static int
check_paths(const char *db_path, const char *dest_path, char *err,
    size_t err_len)
{
	struct stat src, dst;

	if (dest_path[0] == '\0' || strlen(dest_path) > 4096 - 32) {
		snprintf(err, err_len, "the backup file name is empty or too long");
		return QES_ERR_INVALID_ARG;
	}
	if (stat(db_path, &src) != 0) {
		snprintf(err, err_len, "no database at %s: %s (check `store`)",
		    db_path, strerror(errno));
		return errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
	}
	if (stat(dest_path, &dst) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "cannot use %s: %s", dest_path,
		    strerror(errno));
		return QES_ERR_IO;
	}
	if (!S_ISREG(dst.st_mode)) {
		snprintf(err, err_len, "%s exists and is not a regular file",
		    dest_path);
		return QES_ERR_INVALID_ARG;
	}
	if (dst.st_dev == src.st_dev && dst.st_ino == src.st_ino) {
		snprintf(err, err_len, "%s is the database itself: back up to "
		    "another file", dest_path);
		return QES_ERR_INVALID_ARG;
	}
	return 0;
}

/*
 * Copy src's main database into dst from src's current read transaction,
 * step_pages at a time.
 */
static int
copy_pages(sqlite3 *src, sqlite3 *dst, int step_pages, int pause_ms,
    qesd_backup_stats *st, char *err, size_t err_len)
{
	sqlite3_backup *b;
	int64_t t0, dt;
	int rc, frc, busy = 0;

	if ((b = sqlite3_backup_init(dst, "main", src, "main")) == NULL) {
		snprintf(err, err_len, "starting the backup: %s",
		    sqlite3_errmsg(dst));
		return map_rc(sqlite3_errcode(dst));
	}
	for (;;) {
		t0 = mono_ms();
		rc = sqlite3_backup_step(b, step_pages);
		dt = mono_ms() - t0;
		st->steps++;
		if (dt > st->longest_step_ms)
			st->longest_step_ms = dt;
		if (rc == SQLITE_DONE)
			break;
		if (rc == SQLITE_OK) {
			busy = 0;
			if (pause_ms > 0)
				sqlite3_sleep(pause_ms);
			continue;
		}
		if (((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) &&
		    ++busy <= BUSY_RETRIES) {
			sqlite3_sleep(BUSY_RETRY_MS);
			continue;
		}
		break;
	}
	st->pages = (uint64_t)sqlite3_backup_pagecount(b);
	frc = sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		snprintf(err, err_len, "copying pages: %s%s", sqlite3_errstr(rc),
		    (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ?
		    " (the database stayed locked; retry)" : "");
		return map_rc(rc);
	}
	if (frc != SQLITE_OK) {
		snprintf(err, err_len, "finishing the backup: %s",
		    sqlite3_errstr(frc));
		return map_rc(frc);
	}
	return 0;
}

int
qesd_sqlite_backup(const char *db_path, const char *dest_path,
    unsigned step_pages, unsigned pause_ms, qesd_backup_stats *st_out,
    char *err, size_t err_len)
{
	qesd_backup_stats st;
	sqlite3 *src = NULL, *dst = NULL;
	char *tmp = NULL, check[64];
	int64_t app_id = 0, page_size = 0;
	int fd = -1, r, rc, in_tx = 0;

	memset(&st, 0, sizeof(st));
	if (step_pages == 0)
		step_pages = QESD_BACKUP_STEP_PAGES_DEFAULT;
	if (step_pages > QESD_BACKUP_STEP_PAGES_MAX ||
	    pause_ms > QESD_BACKUP_PAUSE_MS_MAX) {
		snprintf(err, err_len, "a backup step copies 1 to %d pages and "
		    "pauses 0 to %d ms", QESD_BACKUP_STEP_PAGES_MAX,
		    QESD_BACKUP_PAUSE_MS_MAX);
		return QES_ERR_INVALID_ARG;
	}
	if ((r = check_paths(db_path, dest_path, err, err_len)) != 0)
		return r;
	/* mode 0600 from the start, like the database */
	if ((r = qes_file_tmp_beside(dest_path, &tmp, &fd)) != 0) {
		snprintf(err, err_len, "cannot create a file beside %s: %s",
		    dest_path, r == QES_ERR_IO ? strerror(errno) : qes_strerror(r));
		return r;
	}

	/* the source: no CREATE, so a wrong path never leaves a new file */
	if ((r = open_db(db_path, SQLITE_OPEN_READWRITE, &src, err,
	    err_len)) != 0)
		goto fail;
	/* the snapshot: a read transaction, started by the first read */
	if ((r = exec_sql(src, "BEGIN DEFERRED", "starting a read transaction",
	    err, err_len)) != 0)
		goto fail;
	in_tx = 1;
	if ((r = query_one(src, "PRAGMA application_id", &app_id, NULL, 0,
	    "reading the database", err, err_len)) != 0)
		goto fail;
	if (app_id != APPLICATION_ID) {
		snprintf(err, err_len, "%s is not a qesd database", db_path);
		r = QES_ERR_UNSUPPORTED;
		goto fail;
	}
	if ((r = query_one(src, "SELECT coalesce(max(version), 0) FROM "
	    "schema_version", &st.schema_version, NULL, 0,
	    "reading the schema version", err, err_len)) != 0 ||
	    (r = query_one(src, "PRAGMA page_size", &page_size, NULL, 0,
	    "reading the page size", err, err_len)) != 0)
		goto fail;

	if ((r = open_db(tmp, SQLITE_OPEN_READWRITE, &dst, err, err_len)) != 0 ||
	    (r = copy_pages(src, dst, (int)step_pages, (int)pause_ms,
	    &st, err, err_len)) != 0)
		goto fail;
	st.bytes = st.pages * (uint64_t)(page_size > 0 ? page_size : 0);
	in_tx = 0;
	if ((r = exec_sql(src, "COMMIT", "ending the read transaction", err,
	    err_len)) != 0)
		goto fail;
	sqlite3_close(src);
	src = NULL;

	/* the copy must be a sound qesd database before it replaces anything */
	if ((r = query_one(dst, "PRAGMA quick_check", NULL, check,
	    sizeof(check), "checking the copy", err, err_len)) != 0)
		goto fail;
	if (strcmp(check, "ok") != 0) {
		snprintf(err, err_len, "the copy fails PRAGMA quick_check: %s",
		    check);
		r = QES_ERR_FORMAT;
		goto fail;
	}
	if ((rc = sqlite3_close(dst)) != SQLITE_OK) {
		snprintf(err, err_len, "closing the copy: %s", sqlite3_errstr(rc));
		dst = NULL;
		r = map_rc(rc);
		goto fail;
	}
	dst = NULL;
	r = qes_file_commit(fd, tmp, dest_path, 0600);
	fd = -1;
	if (r != 0) {
		snprintf(err, err_len, "moving the copy to %s: %s", dest_path,
		    strerror(errno));
		goto fail;
	}
	free(tmp);
	if (st_out != NULL)
		*st_out = st;
	return 0;

 fail:
	if (in_tx)
		sqlite3_exec(src, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(src);
	sqlite3_close(dst);
	if (fd >= 0)
		close(fd);
	remove_tmp(tmp);
	free(tmp);
	return r;
}
