/*
 * admin.h - `qesd admin ...`: local administration on the server host.
 *
 * These commands talk to the store directly (no HTTP, no API key): they
 * are how the first tenant and its first admin key come to exist, and how
 * the operator applies audit retention. They read the same configuration
 * as `qesd serve` (--config FILE, QESD_CONFIG, QESD_* environment) but need
 * only `store`, `pepper_file` and `audit_retention_days` from it, and they
 * may run while the server runs (SQLite WAL; the store serialises writers).
 */
#ifndef QESD_ADMIN_H
#define QESD_ADMIN_H

/* Exit codes of `qesd admin` (documented by `qesd admin --help`). */
#define QESD_ADMIN_EXIT_OK 0
#define QESD_ADMIN_EXIT_FAILURE 1	/* store or runtime failure */
#define QESD_ADMIN_EXIT_USAGE 2
#define QESD_ADMIN_EXIT_CONFIG 3	/* configuration or secret-file error */
#define QESD_ADMIN_EXIT_CONFLICT 4	/* the tenant name is taken */
#define QESD_ADMIN_EXIT_NOT_FOUND 5	/* no database at the configured path */

/*
 * argv[0] is "admin"; the rest are the admin command's arguments
 * (main.c: `return qesd_admin_main(argc - 1, argv + 1);`).
 */
int qesd_admin_main(int argc, char **argv);

#endif
