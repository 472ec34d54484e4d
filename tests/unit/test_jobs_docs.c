/*
 * test_jobs_docs.c - the jobs service purges a job's encrypted document
 * and result (store_jobs.h, migration 4) in the transaction that ends the
 * job: failed by the sweeper (timeout), cancelled by the relying party,
 * expired by the retention of completed jobs; a job still open keeps
 * them, and so does a completed one until it expires.
 *
 * And the documents the gateway signs (jobs_ades.c): request checks,
 * prepare at submit with the document sealed in the job's transaction,
 * the finisher (a signature made with the test PKI's software key), the
 * result taken once, tenant isolation, the refusal of a digest that is not
 * the one signed, purges on failure and cancel, restart.
 */
#define _GNU_SOURCE	/* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/secret.h"
#include "qes/sign.h"
#include "app.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "store.h"
#include "jobs_priv.h"
#include "routes.h"
#include "store_jobs.h"
#include "qesd_fixture.h"
#include "testtsa.h"

#define DAY_MS (24LL * 3600 * 1000)

static const uint8_t key[QESD_DOC_KEY_LEN] = { 7, 7, 7 };

struct fx {
	char dir[64];
	char db[QFX_PATH_MAX];
	char clock[QFX_PATH_MAX];
	qesd_config cfg;
	qesd_app *app;
	qesd_tenant tenant;
	qesd_request req;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-jobdocs-XXXXXX");
	if (qfx_config(&f->cfg, f->dir, f->db, f->clock) != 0 ||
	    qfx_app(&f->cfg, QFX_PEPPER, &f->app) != 0)
		return -1;
	qfx_tenant(f->app, "Acme Bank", qesd_now_ms(f->app), &f->tenant);
	qfx_request(&f->req, f->app, f->tenant.id, QESD_SCOPE_SIGN,
	    "req-docs-1", "192.0.2.9", "signatures.cancel");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	qfx_teardown(f->app, &f->cfg, f->dir);
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
	qfx_set_clock(f->clock, 30000);
	add_job(f, QESD_JOB_CREATED, open_job);
	/* nothing is due yet: both keep their document */
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, late, &st), 1);
	assert_int_equal(st, QESD_JOB_DISPATCHED);
	/* the first job times out, the second is still open */
	qfx_set_clock(f->clock, 61000);
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
	qfx_set_clock(f->clock, DAY_MS + 120000);
	qesd_app_free(f->app);
	assert_int_equal(qfx_app(&f->cfg, QFX_PEPPER, &f->app), 0);
	f->req.app = f->app;
	assert_int_equal(qesd_jobs_sweep(f->app->jobs), 0);
	assert_int_equal(docs_of(f, id, &st), 0);
	assert_int_equal(st, QESD_JOB_EXPIRED);
}

/* ========================================================================= */
/*
 * Documents the gateway signs (jobs_ades.c), through the jobs service with
 * a fake device side and the test PKI's software key as the signer's
 * token: submit prepares and seals the document with the job; the device's
 * value moves the job to signed; the finisher completes it with the sealed
 * result; the result is taken once. And every refusal and failure.
 */

#define CRED_Q "crd_aaaaaaaaaaaaaaaaaaaaaaaaaa"

struct afx {
	char dir[64];
	char db[QFX_PATH_MAX];
	char keyfile[128];
	qesd_config cfg;
	qesd_app *app;
	qesd_jobs *jobs;
	qesd_tenant tenant, other;
	qesd_request req;
	testsigner signer;
	qes_buf *cert_der;
	char device_id[QESD_ID_SIZE];
	char session_id[QESD_ID_SIZE];
	int frames;
	int send_fails;			/* the session went away at the send */
};

static int
a_lookup(void *ctx, const char *tenant_id, const char *credential_id,
    qesd_jobs_credential *out)
{
	struct afx *f = ctx;

	if (strcmp(tenant_id, f->tenant.id) != 0 ||
	    strcmp(credential_id, CRED_Q) != 0)
		return QES_ERR_NOT_FOUND;
	memset(out, 0, sizeof(*out));
	snprintf(out->device_id, sizeof(out->device_id), "%s", f->device_id);
	snprintf(out->credential, sizeof(out->credential), "TOKEN0001:0a0b");
	assert_non_null(out->cert_der = malloc(qes_buf_len(f->cert_der)));
	memcpy(out->cert_der, qes_buf_data(f->cert_der), qes_buf_len(f->cert_der));
	out->cert_der_len = qes_buf_len(f->cert_der);
	return 0;
}

static int
a_is_live(void *ctx, const char *tenant_id, const char *device_id,
    char session_id[QESD_ID_SIZE])
{
	struct afx *f = ctx;

	(void)tenant_id;
	if (strcmp(device_id, f->device_id) != 0)
		return 0;
	snprintf(session_id, QESD_ID_SIZE, "%s", f->session_id);
	return 1;
}

static int
a_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	struct afx *f = ctx;

	(void)tenant_id;
	(void)device_id;
	(void)frame;
	(void)len;
	if (f->send_fails)
		return QES_ERR_NOT_FOUND;
	f->frames++;
	return 0;
}

/* 1 when the database file holds the bytes anywhere (it must not) */
static int
db_contains(struct afx *f, const void *needle, size_t len)
{
	qes_buf *b = NULL;
	const uint8_t *d;
	size_t i, n;
	int found = 0;

	assert_int_equal(qes_buf_read_file(f->db, 256u << 20, &b), 0);
	d = qes_buf_data(b);
	n = qes_buf_len(b);
	for (i = 0; !found && i + len <= n; i++)
		found = memcmp(d + i, needle, len) == 0;
	qes_buf_free(b);
	return found;
}

static int
setup_ades(void **state)
{
	struct afx *f = calloc(1, sizeof(*f));
	const char *env = getenv("QES_TESTENV");
	qesd_jobs_devices d;
	const uint8_t *der;
	size_t der_len;
	char p[1200];
	FILE *fp;

	if (f == NULL || env == NULL || strlen(env) > 1000)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-jobades-XXXXXX");
	if (qfx_config(&f->cfg, f->dir, f->db, NULL) != 0)
		return -1;
	snprintf(f->keyfile, sizeof(f->keyfile), "%s/doc.key", f->dir);
	assert_non_null(fp = fopen(f->keyfile, "w"));
	fprintf(fp, "%s\n", "000102030405060708090a0b0c0d0e0f"
	    "101112131415161718191a1b1c1d1e1f");
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(f->keyfile, 0600), 0);
	f->cfg.document_key_file = strdup(f->keyfile);
	/* the CAs the gateway may embed: the issuing CA and the root */
	snprintf(p, sizeof(p), "cat '%s/pki/issuing-ca.pem' '%s/pki/root-ca.pem' "
	    "> '%s/chain.pem'", env, env, f->dir);
	assert_int_equal(system(p), 0);
	snprintf(p, sizeof(p), "%s/chain.pem", f->dir);
	f->cfg.chain_file = strdup(p);
	/* a TSA nobody answers for: B-T jobs fail with timestamp_failed */
	f->cfg.tsa_url = strdup("http://127.0.0.1:9/tsa");
	f->cfg.tsa_ca_file = strdup(p);
	f->cfg.document_max_bytes = 4096;
	if (qfx_app(&f->cfg, QFX_PEPPER, &f->app) != 0)
		return -1;
	f->jobs = f->app->jobs;
	assert_true(f->jobs->ades.enabled);
	assert_true(f->jobs->ades.nchain >= 2);
	assert_int_equal(qesd_jobs_document_max(f->jobs), 4096);
	qfx_tenant(f->app, "Acme Bank", qesd_now_ms(f->app), &f->tenant);
	qfx_tenant(f->app, "Other", qesd_now_ms(f->app), &f->other);
	qfx_device(f->db, f->tenant.id, 1, f->device_id);
	assert_int_equal(qesd_id_new("ses", f->session_id), 0);

	snprintf(p, sizeof(p), "%s/pki", env);
	assert_int_equal(testsigner_load(&f->signer, p, "qual-p256",
	    QES_SIG_ECDSA, QES_MD_SHA256), 0);
	der = qes_cert_der(f->signer.cert, &der_len);
	assert_non_null(f->cert_der = qes_buf_new());
	assert_int_equal(qes_buf_put(f->cert_der, der, der_len), 0);
	memset(&d, 0, sizeof(d));
	d.credential_lookup = a_lookup;
	d.lookup_ctx = f;
	d.is_live = a_is_live;
	d.send = a_send;
	d.ctx = f;
	qesd_jobs_set_devices(f->jobs, &d);

	qfx_request(&f->req, f->app, f->tenant.id, QESD_SCOPE_SIGN,
	    "req-ades-1", "192.0.2.9", "signatures.create");
	*state = f;
	return 0;
}

static int
teardown_ades(void **state)
{
	struct afx *f = *state;

	qfx_teardown(f->app, &f->cfg, f->dir);
	testsigner_free(&f->signer);
	qes_buf_free(f->cert_der);
	free(f);
	return 0;
}

static const char xml_doc[] =
    "<?xml version=\"1.0\"?>\n<invoice id=\"I-7\"><total>42.00</total>"
    "<note>H1-SECRET-CONTENT</note></invoice>\n";
static const char bin_doc[] = "H1-SECRET-CONTENT of a detached CAdES document";

/* Submit a document; the outcome, and the job when accepted. */
static qesd_submit_outcome
a_submit(struct afx *f, qes_ades_format format, qes_ades_level level,
    const void *data, size_t len, const char *idem, qesd_job *job,
    char *detail, size_t detail_len)
{
	qesd_sign_document doc;
	qesd_sign_request sr;
	qesd_submit_outcome outcome = 0;

	memset(&doc, 0, sizeof(doc));
	memset(&sr, 0, sizeof(sr));
	doc.data = data;
	doc.len = len;
	doc.format = format;
	doc.level = level;
	doc.name = "invoice.xml";
	sr.credential_id = CRED_Q;
	sr.md = QES_MD_SHA256;
	sr.title = "Invoice I-7";
	sr.timeout_s = 300;
	sr.idempotency_key = idem;
	sr.document = &doc;
	assert_int_equal(qesd_jobs_submit_detail(f->jobs, &f->req, &sr,
	    &outcome, job, detail, detail_len), 0);
	return outcome;
}

/* The device signs the job's one digest with the software key. */
static void
a_sign(struct afx *f, const char *job_id, int wrong)
{
	struct jobs_request q;
	qes_proto_sign_result b;
	qes_proto_bytes v;
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	qesd_job job;
	qes_buf *sig = qes_buf_new(), *frame = qes_buf_new();
	uint8_t digest[64];
	char id[23], err[256];

	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job_id, &job), 0);
	assert_int_equal(jobs_request_parse(job.request, &q), 0);
	assert_int_equal(q.n, 1);
	memcpy(digest, qes_buf_data(q.digests), qes_buf_len(q.digests));
	if (wrong)
		digest[0] ^= 1;
	assert_int_equal(testtsa_sign(f->signer.key, QES_SIG_ECDSA, q.md, digest,
	    qes_buf_len(q.digests), 0, sig), 0);
	memset(&b, 0, sizeof(b));
	b.job_id = job_id;
	b.status = QES_PROTO_STATUS_OK;
	v.data = qes_buf_data(sig);
	v.len = qes_buf_len(sig);
	b.signatures = &v;
	b.n_signatures = 1;
	assert_int_equal(qes_proto_new_id(id), 0);
	assert_int_equal(qes_proto_build_sign_result(id, &b, frame), 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	if (qes_proto_parse(qes_buf_data(frame), qes_buf_len(frame), &lim, &m,
	    err, sizeof(err)) != 0)
		fail_msg("sign_result: %s", err);
	qesd_jobs_on_message(f->jobs, f->tenant.id, f->device_id, f->session_id,
	    m);
	qes_proto_msg_free(m);
	qes_buf_free(sig);
	qes_buf_free(frame);
	jobs_request_free(&q);
	qesd_job_clear(&job);
}

static qesd_job_state
a_state(struct afx *f, const char *job_id, char reason[QESD_JOB_REASON_MAX + 1])
{
	qesd_job job;
	qesd_job_state st;

	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job_id, &job), 0);
	st = job.state;
	if (reason != NULL)
		strcpy(reason, job.reason);
	qesd_job_clear(&job);
	return st;
}

/* 1 when the job's document of that kind is stored (and decrypts) */
static int
a_has_doc(struct afx *f, const char *job_id, qesd_job_doc_kind kind)
{
	qesd_tx *tx = NULL;
	uint8_t *d = NULL;
	size_t n = 0;
	int r;

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	r = qesd_job_doc_get(tx, f->jobs->ades.doc_key, f->tenant.id, job_id,
	    kind, &d, &n);
	qesd_tx_end(tx);
	assert_true(r == 0 || r == QES_ERR_NOT_FOUND);
	free(d);
	return r == 0;
}

static void
test_ades_xades_end_to_end(void **state)
{
	struct afx *f = *state;
	qesd_result_outcome ro = 0;
	qesd_job job, got;
	qesd_request other;
	char detail[256];
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t count = 9;
	const char *ct, *suffix;
	json_t *j;

	memset(&job, 0, sizeof(job));
	assert_int_equal(a_submit(f, QES_ADES_XADES, QES_ADES_B_B, xml_doc,
	    strlen(xml_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	assert_int_equal(job.state, QESD_JOB_DISPATCHED);
	assert_int_equal(f->frames, 1);
	/* the document is sealed with the job; the file holds no plaintext */
	assert_true(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	assert_false(db_contains(f, "H1-SECRET-CONTENT", 17));
	assert_non_null(strstr(job.request, "\"format\":\"xades\""));
	assert_non_null(j = qesd_job_json(&job));
	assert_string_equal(json_string_value(json_object_get(j, "format")), "xades");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "B-B");
	assert_null(json_object_get(j, "result_url"));
	json_decref(j);

	/* not yet: 409 result_not_ready */
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, job.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_NOT_READY);
	assert_null(data);
	qesd_job_clear(&got);

	/* the value arrives: signed, not completed; the sweeper leaves it */
	a_sign(f, job.id, 0);
	assert_int_equal(a_state(f, job.id, NULL), QESD_JOB_SIGNED);
	assert_int_equal(qesd_jobs_sweep(f->jobs), 0);
	assert_int_equal(a_state(f, job.id, NULL), QESD_JOB_SIGNED);
	/* the finisher: completed, the input dropped, the result sealed */
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(a_state(f, job.id, NULL), QESD_JOB_COMPLETED);
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	assert_true(a_has_doc(f, job.id, QESD_JOB_DOC_RESULT));
	assert_false(db_contains(f, "H1-SECRET-CONTENT", 17));
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 0);

	/* another tenant: no such job */
	other = f->req;
	snprintf(other.auth.tenant_id, sizeof(other.auth.tenant_id), "%s",
	    f->other.id);
	assert_int_equal(qesd_jobs_result_take(f->jobs, &other, job.id, &ro,
	    &got, &data, &len), QES_ERR_NOT_FOUND);

	/* the result, once: an enveloped XAdES signature of the invoice */
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, job.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_OK);
	assert_non_null(data);
	assert_non_null(memmem(data, len, "H1-SECRET-CONTENT", 17));
	assert_non_null(memmem(data, len, "SignedProperties", 16));
	assert_non_null(memmem(data, len, "SignatureValue", 14));
	qesd_job_result_type(&got, &ct, &suffix);
	assert_string_equal(ct, "application/xml");
	assert_string_equal(suffix, ".xml");
	assert_non_null(j = qesd_job_json(&got));
	snprintf(detail, sizeof(detail), "/v1/signatures/%s/result", job.id);
	assert_string_equal(json_string_value(json_object_get(j, "result_url")),
	    detail);
	json_decref(j);
	free(data);
	data = NULL;
	qesd_job_clear(&got);
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_RESULT));
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, job.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_GONE);
	assert_null(data);
	qesd_job_clear(&got);
	qesd_job_clear(&job);
}

/*
 * A signed job is finished however many other jobs are open: the finisher
 * lists the jobs resting in signed, not the soonest-expiring live ones.
 */
static void
test_ades_finish_beyond_batch(void **state)
{
	struct afx *f = *state;
	qesd_job job, last;
	char detail[256];
	uint64_t count = 9;
	size_t i;

	memset(&last, 0, sizeof(last));
	for (i = 0; i < SWEEP_BATCH + 1; i++) {
		memset(&job, 0, sizeof(job));
		assert_int_equal(a_submit(f, QES_ADES_XADES, QES_ADES_B_B,
		    xml_doc, strlen(xml_doc), NULL, &job, detail,
		    sizeof(detail)), QESD_SUBMIT_ACCEPTED);
		/* keep the one the live listing would reach last */
		if (i == 0 || job.expires_at_ms > last.expires_at_ms ||
		    (job.expires_at_ms == last.expires_at_ms &&
		    strcmp(job.id, last.id) > 0)) {
			qesd_job_clear(&last);
			last = job;
		} else
			qesd_job_clear(&job);
	}
	a_sign(f, last.id, 0);
	assert_int_equal(a_state(f, last.id, NULL), QESD_JOB_SIGNED);
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(a_state(f, last.id, NULL), QESD_JOB_COMPLETED);
	qesd_job_clear(&last);
}

static void
test_ades_refusals(void **state)
{
	struct afx *f = *state;
	static const char not_pdf[] = "%PDF-1.7 this is no PDF at all";
	char detail[256];
	qesd_job job;
	qesd_tx *tx = NULL;
	qesd_job *items = NULL;
	size_t n = 0;

	memset(&job, 0, sizeof(job));
	/* JAdES has no B-LTA */
	assert_int_equal(a_submit(f, QES_ADES_JADES, QES_ADES_B_LTA, xml_doc,
	    strlen(xml_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_FORMAT_UNSUPPORTED);
	assert_true(strlen(detail) > 0);
	/* a PDF that is not: document_invalid, with a sentence */
	assert_int_equal(a_submit(f, QES_ADES_PADES, QES_ADES_B_B, not_pdf,
	    strlen(not_pdf), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_DOCUMENT_INVALID);
	assert_true(strlen(detail) > 0);
	/* broken XML for an enveloped XAdES */
	assert_int_equal(a_submit(f, QES_ADES_XADES, QES_ADES_B_B, "<a><b></a>",
	    10, NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_DOCUMENT_INVALID);
	/* no TSA: B-T is refused before anything else */
	f->jobs->ades.has_tsa = 0;
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_T, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_TIMESTAMP_UNAVAILABLE);
	assert_non_null(strstr(detail, "tsa_url"));
	f->jobs->ades.has_tsa = 1;
	/* no document key: documents are off */
	f->jobs->ades.enabled = 0;
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_DOCUMENTS_DISABLED);
	assert_int_equal(qesd_jobs_document_max(f->jobs), 0);
	f->jobs->ades.enabled = 1;
	/* an unknown credential */
	{
		qesd_sign_document doc;
		qesd_sign_request sr;
		qesd_submit_outcome o = 0;

		memset(&doc, 0, sizeof(doc));
		memset(&sr, 0, sizeof(sr));
		doc.data = (const uint8_t *)bin_doc;
		doc.len = strlen(bin_doc);
		doc.format = QES_ADES_CADES;
		doc.level = QES_ADES_B_B;
		sr.credential_id = "crd_zzzzzzzzzzzzzzzzzzzzzzzzzz";
		sr.md = QES_MD_SHA256;
		sr.title = "x";
		sr.timeout_s = 300;
		sr.document = &doc;
		assert_int_equal(qesd_jobs_submit_detail(f->jobs, &f->req, &sr,
		    &o, &job, detail, sizeof(detail)), 0);
		assert_int_equal(o, QESD_SUBMIT_CREDENTIAL_NOT_FOUND);
	}
	/* none of these made a job, nor sent anything */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_job_list_live(tx, INT64_MAX, 10, &items, &n), 0);
	qesd_tx_end(tx);
	assert_int_equal(n, 0);
	qesd_job_list_free(items, n);
	assert_int_equal(f->frames, 0);
}

/* the same key and document: the job again; another document: conflict */
static void
test_ades_idempotency(void **state)
{
	struct afx *f = *state;
	char detail[256];
	qesd_job a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), "order-7", &a, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), "order-7", &b, detail, sizeof(detail)),
	    QESD_SUBMIT_REPLAYED);
	assert_string_equal(a.id, b.id);
	qesd_job_clear(&b);
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, xml_doc,
	    strlen(xml_doc), "order-7", &b, detail, sizeof(detail)),
	    QESD_SUBMIT_IDEMPOTENCY_CONFLICT);
	assert_int_equal(a_submit(f, QES_ADES_XADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), "order-7", &b, detail, sizeof(detail)),
	    QESD_SUBMIT_IDEMPOTENCY_CONFLICT);
	assert_int_equal(f->frames, 1);
	qesd_job_clear(&a);
}

/*
 * The finisher refuses to write a signature over another digest than the
 * one the signer approved: the stored document replaced behind the job's
 * back fails it (gateway_error), nothing is written, everything purged.
 */
static void
test_ades_digest_mismatch(void **state)
{
	struct afx *f = *state;
	static const char other_doc[] = "another document entirely";
	qesd_result_outcome ro = 0;
	char detail[256], reason[QESD_JOB_REASON_MAX + 1];
	qesd_job job, got;
	qesd_tx *tx = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t count = 0;

	memset(&job, 0, sizeof(job));
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	a_sign(f, job.id, 0);
	assert_int_equal(a_state(f, job.id, NULL), QESD_JOB_SIGNED);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_job_doc_put(tx, f->jobs->ades.doc_key,
	    f->tenant.id, job.id, QESD_JOB_DOC_INPUT,
	    (const uint8_t *)other_doc, strlen(other_doc),
	    qesd_now_ms(f->app)), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(a_state(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "gateway_error");
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_RESULT));
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, job.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_UNAVAILABLE);
	qesd_job_clear(&got);
	qesd_job_clear(&job);
}

/* a value that does not verify never reaches the finisher */
static void
test_ades_bad_value(void **state)
{
	struct afx *f = *state;
	char detail[256], reason[QESD_JOB_REASON_MAX + 1];
	qesd_job job;

	memset(&job, 0, sizeof(job));
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	a_sign(f, job.id, 1);
	assert_int_equal(a_state(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "bad_signature");
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	qesd_job_clear(&job);
}

/* B-T with a TSA that does not answer: retried for a while, then
 * timestamp_failed, purged */
static void
test_ades_timestamp_failed(void **state)
{
	struct afx *f = *state;
	char detail[256], reason[QESD_JOB_REASON_MAX + 1], sql[256];
	qesd_job job;
	uint64_t count = 0;

	memset(&job, 0, sizeof(job));
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_T, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	a_sign(f, job.id, 0);
	/* out of reach: the job stays signed and is tried again ... */
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(a_state(f, job.id, NULL), QESD_JOB_SIGNED);
	assert_true(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	/* ... until FINISH_RETRY_MS after the signature */
	snprintf(sql, sizeof(sql), "UPDATE jobs SET updated_at_ms = "
	    "updated_at_ms - %lld WHERE id = '%s'", FINISH_RETRY_MS + 1000LL,
	    job.id);
	qfx_sql(f->db, sql);
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(a_state(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "timestamp_failed");
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	qesd_job_clear(&job);
}

/* the device went offline just as the job was sent: failed, purged */
static void
test_ades_offline_at_dispatch(void **state)
{
	struct afx *f = *state;
	char detail[256];
	qesd_job job;

	memset(&job, 0, sizeof(job));
	f->send_fails = 1;
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &job, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	assert_int_equal(job.state, QESD_JOB_FAILED);
	assert_string_equal(job.reason, "device_offline");
	assert_false(a_has_doc(f, job.id, QESD_JOB_DOC_INPUT));
	qesd_job_clear(&job);
}

/*
 * Cancel purges; a signed job survives the restart recovery and is
 * finished after it; a hash-only job has no result.
 */
static void
test_ades_cancel_restart_hash_only(void **state)
{
	struct afx *f = *state;
	qesd_result_outcome ro = 0;
	char detail[256];
	qesd_job a, b, got;
	uint8_t *data = NULL, digest[32] = { 1, 2, 3 };
	size_t len = 0;
	uint64_t count = 0;
	int was_final = -1;
	qesd_sign_request sr;
	qesd_submit_outcome o = 0;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &a, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, a.id, &was_final,
	    &got), 0);
	assert_int_equal(got.state, QESD_JOB_CANCELLED);
	qesd_job_clear(&got);
	assert_false(a_has_doc(f, a.id, QESD_JOB_DOC_INPUT));

	assert_int_equal(a_submit(f, QES_ADES_CADES, QES_ADES_B_B, bin_doc,
	    strlen(bin_doc), NULL, &b, detail, sizeof(detail)),
	    QESD_SUBMIT_ACCEPTED);
	a_sign(f, b.id, 0);
	/* the desktop goes away after its answer: the job needs it no more */
	qesd_jobs_on_session_closed(f->jobs, f->tenant.id, f->device_id,
	    f->session_id, "peer_closed");
	assert_int_equal(a_state(f, b.id, NULL), QESD_JOB_SIGNED);
	assert_int_equal(qesd_jobs_recover(f->jobs, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(a_state(f, b.id, NULL), QESD_JOB_SIGNED);
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(a_state(f, b.id, NULL), QESD_JOB_COMPLETED);
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, b.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_OK);
	/* detached CAdES: a DER SignedData */
	assert_true(len > 100 && data[0] == 0x30);
	free(data);
	data = NULL;
	qesd_job_clear(&got);

	memset(&sr, 0, sizeof(sr));
	sr.credential_id = CRED_Q;
	sr.md = QES_MD_SHA256;
	sr.digests = digest;
	sr.n_digests = 1;
	sr.title = "hash only";
	sr.timeout_s = 300;
	qesd_job_clear(&a);
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &o, &a), 0);
	assert_int_equal(o, QESD_SUBMIT_ACCEPTED);
	assert_int_equal(qesd_jobs_result_take(f->jobs, &f->req, a.id, &ro,
	    &got, &data, &len), 0);
	assert_int_equal(ro, QESD_RESULT_NO_DOCUMENT);
	qesd_job_clear(&got);
	qesd_job_clear(&a);
	qesd_job_clear(&b);
}

/* ---- the routes themselves (h_signatures.c), called as the server would ---- */

static const qesd_route *
a_route(const char *name)
{
	size_t i;

	for (i = 0; i < qesd_signature_routes.n; i++)
		if (strcmp(qesd_signature_routes.routes[i].name, name) == 0)
			return &qesd_signature_routes.routes[i];
	fail_msg("no route %s", name);
	return NULL;
}

/*
 * POST /v1/signatures with a JSON body (json non-NULL) or a raw body of
 * content_type with query; the status, and the problem's name or the
 * job's id in out.
 */
static int
a_post(struct afx *f, const char *json, const char *content_type,
    const char *query, const void *body, size_t body_len, char *out,
    size_t out_len)
{
	qesd_request req = f->req;
	qesd_response resp;
	const char *detail = NULL;
	int status;

	memset(&resp, 0, sizeof(resp));
	req.path = (char *)"/v1/signatures";
	memset(&req.query, 0, sizeof(req.query));
	if (json != NULL) {
		assert_non_null(req.json = json_loads(json, 0, NULL));
		req.content_type = (char *)"application/json";
	} else {
		req.json = NULL;
		req.content_type = (char *)content_type;
		req.body = (uint8_t *)(uintptr_t)body;
		req.body_len = body_len;
		assert_int_equal(qesd_query_parse(&req.query, query, strlen(query),
		    &detail), 0);
	}
	assert_int_equal(a_route("signatures.create")->handler(&req, &resp),
	    QESD_HANDLED);
	status = resp.status;
	out[0] = '\0';
	if (resp.problem != NULL)
		snprintf(out, out_len, "%s", resp.problem);
	else if (resp.json != NULL)
		snprintf(out, out_len, "%s", json_string_value(json_object_get(
		    resp.json, "id")));
	qesd_response_clear(&resp);
	json_decref(req.json);
	qesd_query_free(&req.query);
	return status;
}

/* GET /v1/signatures/{id}/result as tenant; the status, the problem or
 * the content type in out, the body's length in *len. */
static int
a_get_result(struct afx *f, const char *tenant_id, const char *job_id,
    char *out, size_t out_len, size_t *len)
{
	qesd_request req = f->req;
	qesd_response resp;
	int status;

	memset(&resp, 0, sizeof(resp));
	req.path = (char *)"/v1/signatures/x/result";
	snprintf(req.auth.tenant_id, sizeof(req.auth.tenant_id), "%s",
	    tenant_id);
	req.path_params[0].name = (char *)"id";
	req.path_params[0].value = (char *)job_id;
	req.n_path_params = 1;
	req.route_name = "signatures.result";
	req.method_name = "GET";
	assert_int_equal(a_route("signatures.result")->handler(&req, &resp),
	    QESD_HANDLED);
	status = resp.status;
	snprintf(out, out_len, "%s", resp.problem != NULL ? resp.problem :
	    resp.content_type);
	*len = resp.body_len;
	qesd_response_clear(&resp);
	return status;
}

static void
test_ades_routes(void **state)
{
	struct afx *f = *state;
	char out[128], q[512], json[8192], big[5000];
	size_t len = 0;
	qesd_job job;
	uint64_t count = 0;

	/* digests and a document together */
	snprintf(json, sizeof(json), "{\"credential_id\":\"%s\",\"document\":"
	    "\"aGVsbG8=\",\"format\":\"cades\",\"title\":\"t\",\"digest_algorithm\":"
	    "\"sha256\",\"digests\":[\"n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\"]}",
	    CRED_Q);
	assert_int_equal(a_post(f, json, NULL, NULL, NULL, 0, out, sizeof(out)), 400);
	assert_string_equal(out, "document_and_digests");
	/* base64 that is not canonical */
	snprintf(json, sizeof(json), "{\"credential_id\":\"%s\",\"document\":"
	    "\"aGVsbG9=\",\"format\":\"cades\",\"title\":\"t\"}", CRED_Q);
	assert_int_equal(a_post(f, json, NULL, NULL, NULL, 0, out, sizeof(out)), 400);
	assert_string_equal(out, "invalid_field");
	/* an unknown format, a name that is a path */
	snprintf(json, sizeof(json), "{\"credential_id\":\"%s\",\"document\":"
	    "\"aGVsbG8=\",\"format\":\"asic\",\"title\":\"t\"}", CRED_Q);
	assert_int_equal(a_post(f, json, NULL, NULL, NULL, 0, out, sizeof(out)), 400);
	snprintf(json, sizeof(json), "{\"credential_id\":\"%s\",\"document\":"
	    "\"aGVsbG8=\",\"format\":\"cades\",\"title\":\"t\",\"document_name\":"
	    "\"../etc/passwd\"}", CRED_Q);
	assert_int_equal(a_post(f, json, NULL, NULL, NULL, 0, out, sizeof(out)), 400);
	assert_string_equal(out, "invalid_field");
	/* over document_max_bytes (4096 here), in JSON and raw */
	memset(big, 'A', sizeof(big));
	{
		char *j2 = malloc(8000);
		int n;

		assert_non_null(j2);
		n = snprintf(j2, 8000, "{\"credential_id\":\"%s\",\"document\":\"",
		    CRED_Q);
		memset(j2 + n, 'A', 5464);	/* base64 of 4098 bytes */
		snprintf(j2 + n + 5464, 8000 - (size_t)n - 5464,
		    "\",\"format\":\"cades\",\"title\":\"t\"}");
		assert_int_equal(a_post(f, j2, NULL, NULL, NULL, 0, out,
		    sizeof(out)), 413);
		assert_string_equal(out, "document_too_large");
		free(j2);
	}
	snprintf(q, sizeof(q), "credential_id=%s&format=cades&title=t", CRED_Q);
	assert_int_equal(a_post(f, NULL, "application/octet-stream", q, big,
	    4097, out, sizeof(out)), 413);
	assert_string_equal(out, "document_too_large");
	/* not JSON and no format: a wrong Content-Type, not a document */
	snprintf(q, sizeof(q), "credential_id=%s&title=t", CRED_Q);
	assert_int_equal(a_post(f, NULL, "text/plain", q, bin_doc,
	    strlen(bin_doc), out, sizeof(out)), 415);
	assert_string_equal(out, "unsupported_media_type");
	/* a raw upload with an unknown query parameter */
	snprintf(q, sizeof(q), "credential_id=%s&format=cades&title=t&colour=red",
	    CRED_Q);
	assert_int_equal(a_post(f, NULL, "application/octet-stream", q, bin_doc,
	    strlen(bin_doc), out, sizeof(out)), 400);
	assert_string_equal(out, "invalid_query");
	/* B-T without a TSA */
	f->jobs->ades.has_tsa = 0;
	snprintf(q, sizeof(q), "credential_id=%s&format=cades&level=B-T&title=t",
	    CRED_Q);
	assert_int_equal(a_post(f, NULL, "application/octet-stream", q, bin_doc,
	    strlen(bin_doc), out, sizeof(out)), 409);
	assert_string_equal(out, "timestamp_unavailable");
	f->jobs->ades.has_tsa = 1;
	/* documents off */
	f->jobs->ades.enabled = 0;
	assert_int_equal(a_post(f, NULL, "application/xml", q, xml_doc,
	    strlen(xml_doc), out, sizeof(out)), 501);
	assert_string_equal(out, "documents_disabled");
	f->jobs->ades.enabled = 1;
	/* JAdES B-LTA: 400 unsupported_format */
	snprintf(q, sizeof(q), "credential_id=%s&format=jades&level=B-LTA&title=t",
	    CRED_Q);
	assert_int_equal(a_post(f, NULL, "application/json-seq", q, bin_doc,
	    strlen(bin_doc), out, sizeof(out)), 400);
	assert_string_equal(out, "unsupported_format");

	/* a good raw upload: XML, XAdES enveloped; its Content-Type noted */
	snprintf(q, sizeof(q), "credential_id=%s&format=xades&title=Invoice%%20I-7"
	    "&document_name=invoice.xml", CRED_Q);
	assert_int_equal(a_post(f, NULL, "application/xml; charset=utf-8", q,
	    xml_doc, strlen(xml_doc), out, sizeof(out)), 202);
	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, out, &job), 0);
	assert_non_null(strstr(job.request, "\"mime_type\":\"application/xml\""));
	assert_int_equal(a_get_result(f, f->tenant.id, job.id, out, sizeof(out),
	    &len), 409);
	assert_string_equal(out, "result_not_ready");
	a_sign(f, job.id, 0);
	assert_int_equal(qesd_jobs_finish_pending(f->jobs, &count), 0);
	assert_int_equal(a_get_result(f, f->other.id, job.id, out, sizeof(out),
	    &len), 404);
	assert_int_equal(a_get_result(f, f->tenant.id, job.id, out, sizeof(out),
	    &len), 200);
	assert_string_equal(out, "application/xml");
	assert_true(len > strlen(xml_doc));
	assert_int_equal(a_get_result(f, f->tenant.id, job.id, out, sizeof(out),
	    &len), 410);
	assert_string_equal(out, "result_gone");
	qesd_job_clear(&job);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_timeout_purges),
		T(test_cancel_purges),
		T(test_retention_purges),
#define A(fn) cmocka_unit_test_setup_teardown(fn, setup_ades, teardown_ades)
		A(test_ades_xades_end_to_end),
		A(test_ades_finish_beyond_batch),
		A(test_ades_refusals),
		A(test_ades_idempotency),
		A(test_ades_digest_mismatch),
		A(test_ades_bad_value),
		A(test_ades_timestamp_failed),
		A(test_ades_cancel_restart_hash_only),
		A(test_ades_routes),
		A(test_ades_offline_at_dispatch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
