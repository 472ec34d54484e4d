/*
 * admin.c - `qesd admin`: tenants, their first admin key, and retention,
 * straight against the store (see admin.h).
 *
 *   qesd admin tenant create NAME   tenant + first admin key (all scopes),
 *                                   both audited in the same transaction;
 *                                   the key is printed once
 *   qesd admin tenant list
 *   qesd admin purge [--before DATE] audit retention: purge old records
 *                                   (the chain stays verifiable from its
 *                                   anchor) and erase old client addresses
 *   qesd admin backup FILE          online copy of a SQLite store
 *                                   (store_sqlite_backup.c)
 *
 * The API key is minted by apikey.c (the same code the server uses to
 * verify it) and exists in clear only in one stack buffer, which is printed
 * to stdout and wiped; the store receives its HMAC only.
 *
 * Time is qesd's clock (app.h): wall time, or for tests wall time plus the
 * offset in insecure_testing_clock_file - refused, as by `qesd serve`,
 * unless QESD_INSECURE_TESTING=1 - so admin records and the server's share
 * one timeline.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "admin.h"
#include "apikey.h"
#include "app.h"
#include "config.h"
#include "http.h"
#include "rfc3339.h"
#include "store.h"
#include "store_sqlite_backup.h"

#define MS_PER_DAY INT64_C(86400000)
#define FIRST_KEY_NAME "initial admin key"

extern char **environ;

struct admin {
	qesd_config cfg;
	int cfg_ready;
	qes_secret *pepper;
	qesd_store *store;
	qesd_clock *clock;
	int64_t now_ms;			/* one time for the whole command */
	const char *before;		/* --before, NULL: from retention */
	const char *step_pages;		/* backup --step-pages, NULL: default */
	const char *pause_ms;		/* backup --pause-ms, NULL: none */
};

static void
usage(FILE *f)
{
	fputs("usage: qesd admin [--config FILE] tenant create NAME\n"
	    "       qesd admin [--config FILE] tenant list\n"
	    "       qesd admin [--config FILE] purge [--before DATE]\n"
	    "       qesd admin [--config FILE] backup FILE [--step-pages N] "
	    "[--pause-ms MS]\n"
	    "\n"
	    "Local administration on the server host, straight against the store\n"
	    "(safe while `qesd serve` runs). Reads the same configuration as\n"
	    "`qesd serve`: --config FILE (or $QESD_CONFIG), then QESD_* variables;\n"
	    "only store, pepper_file and audit_retention_days are used.\n"
	    "\n"
	    "  tenant create NAME   create a tenant and its first admin key (all\n"
	    "                       scopes); both are recorded in the tenant's audit\n"
	    "                       log. The key is printed ONCE on stdout: store it\n"
	    "                       in a secret manager, it cannot be shown again.\n"
	    "  tenant list          list tenants (id, creation time, name)\n"
	    "  purge                apply audit retention: delete audit records older\n"
	    "                       than DATE (the chain stays verifiable from its\n"
	    "                       anchor) and erase client addresses older than DATE,\n"
	    "                       printing counts per tenant\n"
	    "    --before DATE      RFC 3339 time or YYYY-MM-DD (UTC midnight);\n"
	    "                       default: now minus audit_retention_days\n"
	    "  backup FILE          consistent online copy of a SQLite store (the\n"
	    "                       server goes on serving), written to a temporary\n"
	    "                       file (mode 0600) and renamed to FILE when\n"
	    "                       complete and checked; for store = postgres:URL\n"
	    "                       use pg_dump (docs/deployment.md)\n"
	    "    --step-pages N     pages copied per step, 1 to 65536 (default\n"
	    "                       256); the copy is one snapshot whatever N is\n"
	    "    --pause-ms MS      sleep between steps, 0 to 10000 (default 0), to\n"
	    "                       spread the copy's I/O on a busy disk\n"
	    "\n"
	    "Exit codes: 0 ok, 1 store or runtime failure, 2 usage error,\n"
	    "3 configuration or secret-file error, 4 tenant name already taken,\n"
	    "5 no database at the configured store path.\n", f);
}

/*
 * backup: straight from the file, not through qesd_store_open(), which
 * would migrate the schema; the copy is the database as the server has it.
 */
/* A decimal option value from min to max; NULL keeps *v. */
static int
number_option(const char *name, const char *text, unsigned min, unsigned max,
    unsigned *v)
{
	char *end = NULL;
	unsigned long n;

	if (text == NULL)
		return 0;
	errno = 0;
	n = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] < '0' ||
	    text[0] > '9' || n < min || n > max) {
		fprintf(stderr, "qesd admin: %s wants a number from %u to %u\n",
		    name, min, max);
		return -1;
	}
	*v = (unsigned)n;
	return 0;
}

static int
backup(struct admin *a, const char *file)
{
	qesd_backup_stats st;
	struct timespec t0, t1;
	char err[512];
	unsigned step = 0, pause = 0;
	int r;

	if (number_option("--step-pages", a->step_pages, 1,
	    QESD_BACKUP_STEP_PAGES_MAX, &step) != 0 ||
	    number_option("--pause-ms", a->pause_ms, 0,
	    QESD_BACKUP_PAUSE_MS_MAX, &pause) != 0)
		return QESD_ADMIN_EXIT_USAGE;

	if (strncmp(a->cfg.store, "sqlite:", 7) != 0) {
		fprintf(stderr, "qesd admin: backup copies a SQLite store; this "
		    "store is PostgreSQL: back it up with pg_dump or WAL archiving "
		    "(docs/deployment.md)\n");
		return QESD_ADMIN_EXIT_CONFIG;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((r = qesd_sqlite_backup(a->cfg.store + 7, file, step, pause, &st, err,
	    sizeof(err))) != 0) {
		fprintf(stderr, "qesd admin: backup failed: %s\n", err);
		return r == QES_ERR_NOT_FOUND ? QESD_ADMIN_EXIT_NOT_FOUND :
		    r == QES_ERR_INVALID_ARG ? QESD_ADMIN_EXIT_USAGE :
		    QESD_ADMIN_EXIT_FAILURE;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("backup: %s\nschema_version: %" PRId64 "\npages: %" PRIu64
	    "\nbytes: %" PRIu64 "\nsteps: %" PRIu64 "\nlongest_step_ms: %"
	    PRId64 "\nduration_ms: %" PRId64 "\n", file, st.schema_version,
	    st.pages, st.bytes, st.steps, st.longest_step_ms,
	    (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000);
	return QESD_ADMIN_EXIT_OK;
}

/* Map a store error to an exit code. */
static int
exit_for(int r)
{
	switch (r) {
	case 0:
		return QESD_ADMIN_EXIT_OK;
	case QES_ERR_CONFLICT:
		return QESD_ADMIN_EXIT_CONFLICT;
	case QES_ERR_INVALID_ARG:
		return QESD_ADMIN_EXIT_USAGE;
	default:
		return QESD_ADMIN_EXIT_FAILURE;
	}
}

/*
 * Configuration as `qesd serve` reads it, minus the TLS checks: an admin
 * command needs the store (and, to mint a key, the pepper), nothing else.
 */
static int
load_config(struct admin *a, const char *path, int need_pepper)
{
	char err[512];

	if (qesd_config_init(&a->cfg) != 0) {
		fprintf(stderr, "qesd admin: out of memory\n");
		return QESD_ADMIN_EXIT_FAILURE;
	}
	a->cfg_ready = 1;
	if (path != NULL &&
	    qesd_config_load_file(&a->cfg, path, err, sizeof(err)) != 0)
		goto fail;
	if (qesd_config_load_env(&a->cfg, environ, err, sizeof(err)) != 0)
		goto fail;
	if (a->cfg.store == NULL || (strncmp(a->cfg.store, "sqlite:", 7) != 0 &&
	    strncmp(a->cfg.store, "postgres:", 9) != 0)) {
		snprintf(err, sizeof(err), "store must be sqlite:PATH or postgres:URL");
		goto fail;
	}
	if (a->cfg.insecure_testing_clock_file != NULL && !a->cfg.insecure_testing) {
		snprintf(err, sizeof(err), "insecure_testing_clock_file is refused: "
		    "it moves qesd's clock and is allowed only with "
		    "QESD_INSECURE_TESTING=1, never in production");
		goto fail;
	}
	if (need_pepper &&
	    qesd_pepper_load(a->cfg.pepper_file, &a->pepper, err, sizeof(err)) != 0)
		goto fail;
	if (qesd_clock_new(a->cfg.insecure_testing_clock_file, &a->clock) != 0) {
		snprintf(err, sizeof(err), "cannot set up the clock");
		goto fail;
	}
	a->now_ms = qesd_clock_now_ms(a->clock);
	return 0;
 fail:
	fprintf(stderr, "qesd admin: configuration error: %s\n", err);
	return QESD_ADMIN_EXIT_CONFIG;
}

/*
 * Open the store. Only `tenant create` may create a new database: listing
 * or purging a path with a typo must not leave an empty database behind.
 */
static int
open_store(struct admin *a, int may_create)
{
	struct stat st;
	char err[512];
	int r;

	if (!may_create && strncmp(a->cfg.store, "sqlite:", 7) == 0 &&
	    stat(a->cfg.store + 7, &st) != 0) {
		fprintf(stderr, "qesd admin: no database at %s: %s (check `store`)\n",
		    a->cfg.store + 7, strerror(errno));
		return QESD_ADMIN_EXIT_NOT_FOUND;
	}
	if ((r = qesd_store_open(a->cfg.store, NULL, &a->store, err,
	    sizeof(err))) != 0) {
		fprintf(stderr, "qesd admin: cannot open the store: %s\n", err);
		return r == QES_ERR_INVALID_ARG || r == QES_ERR_UNSUPPORTED ?
		    QESD_ADMIN_EXIT_CONFIG : QESD_ADMIN_EXIT_FAILURE;
	}
	return 0;
}

/* The details object of a record, as JSON text (caller frees). */
static char *
details_text(json_t *obj)
{
	char *s = NULL;

	if (obj != NULL)
		s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	return s;
}

static json_t *
scope_names(uint32_t scopes)
{
	json_t *a = json_array();
	uint32_t bit;

	if (a == NULL)
		return NULL;
	for (bit = 1; bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1) {
		if (!(scopes & bit) || qesd_scope_name(bit) == NULL)
			continue;
		if (json_array_append_new(a, json_string(qesd_scope_name(bit))) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static int
tenant_create(struct admin *a, const char *name)
{
	char key[QESD_APIKEY_SIZE];
	char *d_tenant = NULL, *d_key = NULL;
	qesd_audit_event ev;
	qesd_api_key k;
	qesd_tenant t;
	qesd_tx *tx = NULL;
	int r, rc = QESD_ADMIN_EXIT_FAILURE;

	memset(&k, 0, sizeof(k));
	memset(key, 0, sizeof(key));
	if ((r = qesd_apikey_mint(a->pepper, key, k.secret_hash, k.id)) != 0) {
		fprintf(stderr, "qesd admin: cannot make a key: %s\n", qes_strerror(r));
		goto out;
	}
	k.scopes = QESD_SCOPE_ALL;
	k.created_at_ms = a->now_ms;
	snprintf(k.name, sizeof(k.name), "%s", FIRST_KEY_NAME);
	/* as h_keys.c writes them: the key acted on is in details; the actor
	 * (a record's key_id) is nobody's key here but the local admin */
	d_tenant = details_text(json_pack("{s:s, s:s}", "actor", "qesd admin",
	    "name", name));
	d_key = details_text(json_pack("{s:s, s:s, s:s, s:o}", "actor",
	    "qesd admin", "key_id", k.id, "name", k.name, "scopes",
	    scope_names(k.scopes)));
	if (d_tenant == NULL || d_key == NULL) {
		r = QES_ERR_ALLOC;
		fprintf(stderr, "qesd admin: out of memory\n");
		goto out;
	}

	if ((r = qesd_store_begin(a->store, QESD_TX_WRITE, &tx)) != 0)
		goto store_error;
	if ((r = qesd_tenant_create(tx, name, a->now_ms, &t)) != 0) {
		if (r == QES_ERR_CONFLICT)
			fprintf(stderr, "qesd admin: a tenant named \"%s\" exists already\n",
			    name);
		else if (r == QES_ERR_INVALID_ARG)
			fprintf(stderr, "qesd admin: %s\n", qesd_tx_errmsg(tx));
		else
			goto store_error;
		rc = exit_for(r);
		goto out;
	}
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", t.id);
	if ((r = qesd_key_insert(tx, &k)) != 0)
		goto store_error;
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = a->now_ms;
	ev.type = "tenant.created";
	ev.details = d_tenant;
	if ((r = qesd_audit_append(tx, t.id, &ev, NULL)) != 0)
		goto store_error;
	ev.type = "key.created";
	ev.details = d_key;
	if ((r = qesd_audit_append(tx, t.id, &ev, NULL)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto store_error;

	printf("tenant_id: %s\ntenant_name: %s\nkey_id: %s\napi_key: %s\n",
	    t.id, t.name, k.id, key);
	fflush(stdout);
	fprintf(stderr, "qesd admin: the API key above is shown ONCE and cannot be "
	    "recovered: store it in a secret manager now (it has every scope; "
	    "create narrower keys with `qes keys create` and revoke this one when "
	    "done)\n");
	rc = QESD_ADMIN_EXIT_OK;
	goto out;

 store_error:
	fprintf(stderr, "qesd admin: creating the tenant failed: %s%s%s\n",
	    qes_strerror(r), tx != NULL && qesd_tx_errmsg(tx)[0] ? ": " : "",
	    tx != NULL ? qesd_tx_errmsg(tx) : "");
	rc = exit_for(r) == QESD_ADMIN_EXIT_OK ? QESD_ADMIN_EXIT_FAILURE :
	    exit_for(r);
 out:
	qesd_tx_end(tx);
	qes_wipe(key, sizeof(key));
	qes_wipe(k.secret_hash, sizeof(k.secret_hash));
	free(d_tenant);
	free(d_key);
	return rc;
}

static int
tenant_list(struct admin *a)
{
	char cursor[QESD_CURSOR_SIZE] = "", when[QESD_TIME_TEXT_SIZE];
	qesd_tenant *page = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i, total = 0;
	int r;

	if ((r = qesd_store_begin(a->store, QESD_TX_READ, &tx)) != 0)
		goto fail;
	do {
		if ((r = qesd_tenant_list(tx, cursor, QESD_LIST_MAX, &page, &n,
		    cursor)) != 0)
			goto fail;
		for (i = 0; i < n; i++) {
			if (qesd_time_format(page[i].created_at_ms, when) != 0)
				snprintf(when, sizeof(when), "-");
			printf("%s  %s  %s\n", page[i].id, when, page[i].name);
		}
		total += n;
		free(page);
		page = NULL;
	} while (cursor[0] != '\0');
	qesd_tx_end(tx);
	fprintf(stderr, "%zu tenant%s\n", total, total == 1 ? "" : "s");
	return QESD_ADMIN_EXIT_OK;
 fail:
	fprintf(stderr, "qesd admin: listing tenants failed: %s%s%s\n",
	    qes_strerror(r), tx != NULL && qesd_tx_errmsg(tx)[0] ? ": " : "",
	    tx != NULL ? qesd_tx_errmsg(tx) : "");
	free(page);
	qesd_tx_end(tx);
	return QESD_ADMIN_EXIT_FAILURE;
}

/*
 * The count the store wrote into the tenant's "audit.purged" or
 * "audit.addresses_erased" record of this run (time == now_ms; one run per
 * millisecond at most), 0 when it wrote none (nothing to do).
 */
static int
run_count(qesd_tx *tx, const char *tenant_id, const char *type, int64_t now_ms,
    uint64_t *count)
{
	qesd_audit_filter f;
	qes_audit_record *recs = NULL;
	char next[QESD_CURSOR_SIZE];
	json_t *d = NULL, *v;
	size_t n = 0;
	int r;

	*count = 0;
	memset(&f, 0, sizeof(f));
	f.since_ms = now_ms;
	f.until_ms = now_ms + 1;
	f.type = type;
	if ((r = qesd_audit_list(tx, tenant_id, &f, NULL, 1, &recs, &n,
	    next)) != 0)
		return r;
	if (n == 1 && recs[0].details != NULL &&
	    (d = json_loads(recs[0].details, 0, NULL)) != NULL &&
	    json_is_integer(v = json_object_get(d, "records")) &&
	    json_integer_value(v) >= 0)
		*count = (uint64_t)json_integer_value(v);
	json_decref(d);
	qes_audit_records_free(recs, n);
	return 0;
}

static int
purge(struct admin *a)
{
	char cutoff[QESD_TIME_TEXT_SIZE], cursor[QESD_CURSOR_SIZE] = "";
	char err[512];
	qesd_tenant *page = NULL;
	qesd_tx *tx = NULL;
	uint64_t purged = 0, erased = 0, p, e;
	size_t n = 0, i, touched = 0, tenants = 0;
	int64_t before_ms;
	int r, rc = QESD_ADMIN_EXIT_FAILURE;

	if (a->before != NULL) {
		if (qesd_time_parse(a->before, QESD_TIME_DATE_OK, &before_ms) != 0) {
			fprintf(stderr, "qesd admin: --before \"%s\" is not an RFC 3339 "
			    "time or a YYYY-MM-DD date\n", a->before);
			return QESD_ADMIN_EXIT_USAGE;
		}
		if (before_ms > a->now_ms) {
			fprintf(stderr, "qesd admin: --before is in the future: retention "
			    "deletes only the past\n");
			return QESD_ADMIN_EXIT_USAGE;
		}
	} else {
		before_ms = a->now_ms - (int64_t)a->cfg.audit_retention_days * MS_PER_DAY;
	}
	if (before_ms <= 0 || qesd_time_format(before_ms, cutoff) != 0) {
		fprintf(stderr, "qesd admin: the cutoff is before 1970\n");
		return QESD_ADMIN_EXIT_USAGE;
	}
	printf("cutoff %s%s\n", cutoff, a->before != NULL ? " (--before)" :
	    " (audit_retention_days)");

	if ((r = qesd_audit_purge(a->store, before_ms, a->now_ms, &purged, err,
	    sizeof(err))) != 0) {
		fprintf(stderr, "qesd admin: purge failed: %s\n", err);
		goto counts;	/* earlier tenants were done: show them */
	}
	if ((r = qesd_audit_erase_addrs(a->store, before_ms, a->now_ms, &erased,
	    err, sizeof(err))) != 0)
		fprintf(stderr, "qesd admin: erasing client addresses failed: %s\n", err);
 counts:
	rc = r == 0 ? QESD_ADMIN_EXIT_OK : QESD_ADMIN_EXIT_FAILURE;
	if ((r = qesd_store_begin(a->store, QESD_TX_READ, &tx)) != 0)
		goto count_error;
	do {
		if ((r = qesd_tenant_list(tx, cursor, QESD_LIST_MAX, &page, &n,
		    cursor)) != 0)
			goto count_error;
		for (i = 0; i < n; i++) {
			if ((r = run_count(tx, page[i].id, "audit.purged",
			    a->now_ms, &p)) != 0 ||
			    (r = run_count(tx, page[i].id,
			    "audit.addresses_erased", a->now_ms, &e)) != 0)
				goto count_error;
			tenants++;
			if (p == 0 && e == 0)
				continue;
			touched++;
			printf("%s  purged %" PRIu64 "  addresses erased %" PRIu64
			    "  %s\n", page[i].id, p, e, page[i].name);
		}
		free(page);
		page = NULL;
	} while (cursor[0] != '\0');
	printf("total: %" PRIu64 " audit records purged, %" PRIu64
	    " client addresses erased, in %zu of %zu tenants\n", purged, erased,
	    touched, tenants);
	goto out;
 count_error:
	fprintf(stderr, "qesd admin: reading the counts failed: %s\n",
	    qes_strerror(r));
	rc = QESD_ADMIN_EXIT_FAILURE;
 out:
	free(page);
	qesd_tx_end(tx);
	return rc;
}

int
qesd_admin_main(int argc, char **argv)
{
	struct admin a;
	const char *config_path = getenv("QESD_CONFIG");
	const char *words[4];
	size_t nw = 0;
	int i, rc = QESD_ADMIN_EXIT_USAGE, create = 0, list = 0, purging = 0;
	int backing_up = 0;

	memset(&a, 0, sizeof(a));
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return QESD_ADMIN_EXIT_OK;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--before") == 0 && i + 1 < argc) {
			a.before = argv[++i];
		} else if (strcmp(argv[i], "--step-pages") == 0 && i + 1 < argc) {
			a.step_pages = argv[++i];
		} else if (strcmp(argv[i], "--pause-ms") == 0 && i + 1 < argc) {
			a.pause_ms = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "qesd admin: unknown option \"%s\"\n", argv[i]);
			goto usage_error;
		} else if (nw < sizeof(words) / sizeof(words[0])) {
			words[nw++] = argv[i];
		} else
			goto usage_error;
	}
	if (nw == 3 && strcmp(words[0], "tenant") == 0 &&
	    strcmp(words[1], "create") == 0)
		create = 1;
	else if (nw == 2 && strcmp(words[0], "tenant") == 0 &&
	    strcmp(words[1], "list") == 0)
		list = 1;
	else if (nw == 1 && strcmp(words[0], "purge") == 0)
		purging = 1;
	else if (nw == 2 && strcmp(words[0], "backup") == 0)
		backing_up = 1;
	else
		goto usage_error;
	if (a.before != NULL && !purging) {
		fprintf(stderr, "qesd admin: --before belongs to purge\n");
		goto usage_error;
	}
	if ((a.step_pages != NULL || a.pause_ms != NULL) && !backing_up) {
		fprintf(stderr, "qesd admin: --step-pages and --pause-ms belong to "
		    "backup\n");
		goto usage_error;
	}

	if ((rc = load_config(&a, config_path, create)) != 0)
		goto out;
	if (backing_up) {
		rc = backup(&a, words[1]);
		goto out;
	}
	if ((rc = open_store(&a, create)) != 0)
		goto out;
	if (create)
		rc = tenant_create(&a, words[2]);
	else if (list)
		rc = tenant_list(&a);
	else
		rc = purge(&a);
	goto out;

 usage_error:
	usage(stderr);
	rc = QESD_ADMIN_EXIT_USAGE;
 out:
	qesd_store_free(a.store);
	qesd_clock_free(a.clock);
	qes_secret_free(a.pepper);
	if (a.cfg_ready)
		qesd_config_free(&a.cfg);
	return rc;
}
