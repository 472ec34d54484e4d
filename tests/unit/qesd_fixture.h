/*
 * qesd_fixture.h - the set-up the qesd unit tests share: an app on a
 * temporary SQLite database (with the fake clock file when asked), a
 * tenant, a device row, SQL straight into the database file (and a
 * count out of it), an
 * authenticated request, and the teardown. Each test keeps its own
 * fixture struct; these work on its fields. Everything is static inline
 * (like testcert.h); include it after cmocka.h.
 *
 *	strcpy(f->dir, "/tmp/qes-test-x-XXXXXX");
 *	if (qfx_config(&f->cfg, f->dir, f->db, f->clock) != 0 ||
 *	    qfx_app(&f->cfg, QFX_PEPPER, &f->app) != 0)
 *		return -1;
 *	qfx_tenant(f->app, "Acme Bank", qesd_now_ms(f->app), &f->tenant);
 *	...
 *	qfx_teardown(f->app, &f->cfg, f->dir);
 */
#ifndef QES_QESD_FIXTURE_H
#define QES_QESD_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "qes/secret.h"
#include "app.h"
#include "config.h"
#include "http.h"
#include "store.h"

#define QFX_PEPPER "0123456789abcdef0123456789abcdef-test-pepper"
#define QFX_PATH_MAX 128

/* The fake clock at offset_ms from wall time; qesd re-reads it every 100 ms. */
static inline void
qfx_set_clock(const char *clock, long long offset_ms)
{
	char tmp[QFX_PATH_MAX + 8];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.new", clock);
	assert_non_null(fp = fopen(tmp, "w"));
	fprintf(fp, "%lld\n", offset_ms);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, clock), 0);
	usleep(150 * 1000);
}

/*
 * dir: a mkdtemp template, the directory on return. cfg: the defaults with
 * the store sqlite:DIR/qesd.db (its path in db) and, when clock is not NULL,
 * the fake clock file DIR/clock (its path in clock) at offset 0. db and
 * clock hold QFX_PATH_MAX bytes. -1 when the directory cannot be made.
 */
static inline int
qfx_config(qesd_config *cfg, char *dir, char *db, char *clock)
{
	char url[QFX_PATH_MAX + 8];

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(db, QFX_PATH_MAX, "%s/qesd.db", dir);
	snprintf(url, sizeof(url), "sqlite:%s", db);
	qesd_config_init(cfg);
	free(cfg->store);
	assert_non_null(cfg->store = strdup(url));
	if (clock != NULL) {
		snprintf(clock, QFX_PATH_MAX, "%s/clock", dir);
		assert_non_null(cfg->insecure_testing_clock_file = strdup(clock));
		qfx_set_clock(clock, 0);
	}
	return 0;
}

/* The app over cfg with pepper; -1 (the reason on stderr) when it does not start. */
static inline int
qfx_app(qesd_config *cfg, const char *pepper, qesd_app **app)
{
	qes_secret *p = qes_secret_new(strlen(pepper));
	char err[256];

	assert_int_equal(qes_secret_set(p, pepper, strlen(pepper)), 0);
	if (qesd_app_new(cfg, NULL, &p, app, err, sizeof(err)) != 0) {
		fprintf(stderr, "app: %s\n", err);
		qes_secret_free(p);
		return -1;
	}
	assert_null(p);		/* the app took the pepper */
	return 0;
}

/* A tenant named name, created at now_ms. */
static inline void
qfx_tenant(qesd_app *app, const char *name, int64_t now_ms, qesd_tenant *t)
{
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_tenant_create(tx, name, now_ms, t), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
}

/* SQL straight into the database file (waiting for qesd's lock); an error fails the test. */
static inline void
qfx_sql(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(h);
}

/* The one integer the query answers (a count); no row fails the test. */
static inline long long
qfx_count(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	long long v;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* An enrolled device "laptop" of tenant_id (enrolled at enrolled_ms); its new id in id. */
static inline void
qfx_device(const char *db, const char *tenant_id, long long enrolled_ms,
    char id[QESD_ID_SIZE])
{
	char sql[512];

	assert_int_equal(qesd_id_new("dev", id), 0);
	snprintf(sql, sizeof(sql), "INSERT INTO devices (id, tenant_id, name, "
	    "public_key, enrolled_at_ms) VALUES ('%s', '%s', 'laptop', x'00', %lld)",
	    id, tenant_id, enrolled_ms);
	qfx_sql(db, sql);
}

/* An authenticated POST request of tenant_id with scopes, on route. */
static inline void
qfx_request(qesd_request *req, qesd_app *app, const char *tenant_id,
    uint32_t scopes, const char *request_id, const char *client_addr,
    const char *route)
{
	req->auth.authenticated = 1;
	snprintf(req->auth.tenant_id, sizeof(req->auth.tenant_id), "%s", tenant_id);
	req->auth.scopes = scopes;
	snprintf(req->request_id, sizeof(req->request_id), "%s", request_id);
	snprintf(req->client_addr, sizeof(req->client_addr), "%s", client_addr);
	req->route_name = route;
	req->method_name = "POST";
	req->app = app;
}

/* The app, the configuration and the directory go. */
static inline void
qfx_teardown(qesd_app *app, qesd_config *cfg, const char *dir)
{
	char cmd[128];

	qesd_app_free(app);
	qesd_config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

#endif
