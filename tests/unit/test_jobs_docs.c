/*
 * test_jobs_docs.c - the jobs service purges a job's encrypted document
 * and result (store_jobs.h, migration 4) in the transaction that ends the
 * job: failed by the sweeper (timeout), cancelled by the relying party,
 * expired by the retention of completed jobs; a job still open keeps
 * them, and so does a completed one until it expires.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "app.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "store.h"
#include "store_jobs.h"

#define PEPPER "0123456789abcdef0123456789abcdef-docs-pepper"
#define DAY_MS (24LL * 3600 * 1000)

static const uint8_t key[QESD_DOC_KEY_LEN] = { 7, 7, 7 };

struct fx {
	char dir[64];
	char url[160];
	char clock[128];
	qesd_config cfg;
	qesd_app *app;
	qesd_tenant tenant;
	qesd_request req;
};

static void
set_clock(struct fx *f, long long offset_ms)
{
	char tmp[160];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.new", f->clock);
	assert_non_null(fp = fopen(tmp, "w"));
	fprintf(fp, "%lld\n", offset_ms);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, f->clock), 0);
	usleep(150 * 1000);	/* the clock re-reads every 100 ms */
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	qes_secret *pepper;
	qesd_tx *tx = NULL;
	char err[256];

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-jobdocs-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->url, sizeof(f->url), "sqlite:%s/qesd.db", f->dir);
	snprintf(f->clock, sizeof(f->clock), "%s/clock", f->dir);
	qesd_config_init(&f->cfg);
	free(f->cfg.store);
	f->cfg.store = strdup(f->url);
	f->cfg.insecure_testing_clock_file = strdup(f->clock);
	set_clock(f, 0);
	pepper = qes_secret_new(sizeof(PEPPER));
	assert_int_equal(qes_secret_set(pepper, PEPPER, strlen(PEPPER)), 0);
	if (qesd_app_new(&f->cfg, NULL, &pepper, &f->app, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "app: %s\n", err);
		return -1;
	}
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_tenant_create(tx, "Acme Bank",
	    qesd_now_ms(f->app), &f->tenant), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	f->req.auth.authenticated = 1;
	snprintf(f->req.auth.tenant_id, sizeof(f->req.auth.tenant_id), "%s",
	    f->tenant.id);
	f->req.auth.scopes = QESD_SCOPE_SIGN;
	snprintf(f->req.request_id, sizeof(f->req.request_id), "req-docs-1");
	snprintf(f->req.client_addr, sizeof(f->req.client_addr), "192.0.2.9");
	f->req.route_name = "signatures.cancel";
	f->req.method_name = "POST";
	f->req.app = f->app;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	qesd_app_free(f->app);
	qesd_config_free(&f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

/* A job in the store, moved along to state `to` (created, dispatched or
 * completed), with a document and (completed) a result stored. */
static void
add_job(struct fx *f, qesd_job_state to, char id[QESD_ID_SIZE])
{
	static const uint8_t doc[] = "%PDF-1.7 the document";
	qesd_tx *tx = NULL;
	int64_t now = qesd_now_ms(f->app);
	qesd_job j;

	memset(&j, 0, sizeof(j));
	strcpy(j.tenant_id, f->tenant.id);
	j.state = QESD_JOB_CREATED;
	assert_int_equal(qesd_id_new("crd", j.credential_id), 0);
	assert_non_null(j.request = strdup("{\"title\":\"Contract\"}"));
	strcpy(j.verification_code, "2468");
	j.created_at_ms = j.updated_at_ms = now;
	j.expires_at_ms = now + 60000;
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_job_insert(tx, &j), 0);
	assert_int_equal(qesd_job_doc_put(tx, key, j.tenant_id, j.id,
	    QESD_JOB_DOC_INPUT, doc, sizeof(doc), now), 0);
	if (to != QESD_JOB_CREATED)
		assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_DISPATCHED,
		    NULL, now), 0);
	if (to == QESD_JOB_COMPLETED) {
		assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_SIGNED, NULL,
		    now), 0);
		assert_non_null(j.result = strdup("{\"signatures\":[]}"));
		assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_COMPLETED,
		    NULL, now), 0);
		assert_int_equal(qesd_job_doc_put(tx, key, j.tenant_id, j.id,
		    QESD_JOB_DOC_RESULT, doc, sizeof(doc), now), 0);
	}
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	strcpy(id, j.id);
	qesd_job_clear(&j);
}

/* How many of the job's two documents are stored (0..2); its state. */
static int
docs_of(struct fx *f, const char *job_id, qesd_job_state *state)
{
	qesd_tx *tx = NULL;
	qesd_job j;
	uint8_t *d = NULL;
	size_t n = 0;
	int count = 0, r;

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, job_id, &j), 0);
	*state = j.state;
	qesd_job_clear(&j);
	for (int k = QESD_JOB_DOC_INPUT; k <= QESD_JOB_DOC_RESULT; k++) {
		r = qesd_job_doc_get(tx, key, f->tenant.id, job_id,
		    (qesd_job_doc_kind)k, &d, &n);
		assert_true(r == 0 || r == QES_ERR_NOT_FOUND);
		count += r == 0;
		free(d);
		d = NULL;
	}
	qesd_tx_end(tx);
	return count;
}

static void
test_timeout_purges(void **state)
{
	struct fx *f = *state;
	char open_job[QESD_ID_SIZE], late[QESD_ID_SIZE];
	qesd_job_state st;

	add_job(f, QESD_JOB_DISPATCHED, late);
	set_clock(f, 30000);
	add_job(f, QESD_JOB_CREATED, open_job);
	/* nothing is due yet: both keep their document */
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, late, &st), 1);
	assert_int_equal(st, QESD_JOB_DISPATCHED);
	/* the first job times out, the second is still open */
	set_clock(f, 61000);
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, late, &st), 0);
	assert_int_equal(st, QESD_JOB_FAILED);
	assert_int_equal(docs_of(f, open_job, &st), 1);
	assert_int_equal(st, QESD_JOB_CREATED);
}

static void
test_cancel_purges(void **state)
{
	struct fx *f = *state;
	char id[QESD_ID_SIZE];
	qesd_job_state st;
	qesd_job out;
	int was_final = -1;

	add_job(f, QESD_JOB_CREATED, id);
	assert_int_equal(qesd_jobs_cancel(f->app->jobs, &f->req, id,
	    &was_final, &out), 0);
	assert_int_equal(was_final, 0);
	assert_int_equal(out.state, QESD_JOB_CANCELLED);
	qesd_job_clear(&out);
	assert_int_equal(docs_of(f, id, &st), 0);
	assert_int_equal(st, QESD_JOB_CANCELLED);
}

static void
test_retention_purges(void **state)
{
	struct fx *f = *state;
	char id[QESD_ID_SIZE];
	qesd_job_state st;

	add_job(f, QESD_JOB_COMPLETED, id);
	/* completed: document and result stay for the relying party */
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, id, &st), 2);
	assert_int_equal(st, QESD_JOB_COMPLETED);
	/* past the retention (1 day by default): expired, both gone. A
	 * fresh service: the retention pass runs at its first sweep. */
	set_clock(f, DAY_MS + 120000);
	qesd_app_free(f->app);
	{
		qes_secret *pepper = qes_secret_new(sizeof(PEPPER));
		char err[256];

		assert_int_equal(qes_secret_set(pepper, PEPPER,
		    strlen(PEPPER)), 0);
		assert_int_equal(qesd_app_new(&f->cfg, NULL, &pepper, &f->app,
		    err, sizeof(err)), 0);
	}
	f->req.app = f->app;
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, id, &st), 0);
	assert_int_equal(st, QESD_JOB_EXPIRED);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_timeout_purges),
		T(test_cancel_purges),
		T(test_retention_purges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
