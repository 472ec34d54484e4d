/*
 * test_jobs.c - unit tests of signature jobs: the state machine (every
 * pair of states, allowed or refused), the job store on a temporary SQLite
 * database (insert, lookups, compare-and-set, idempotency keys, tenant
 * isolation, the sweeper lists), the idempotency hash and the API's
 * base64, and the jobs service (jobs.c) driven in-process with a fake
 * device side: dispatch and the sign message, every refusal, replays,
 * signature values verified against a generated key (good -> completed,
 * bad -> failed: bad_signature), agent errors and their reasons, late and
 * foreign answers, cancel, closed sessions, timeouts, restart recovery,
 * result retention, and the audit record of each transition.
 * Links qesd_core; no server runs.
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
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sqlite3.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/secret.h"
#include "app.h"
#include "audit_svc.h"
#include "config.h"
#include "devices.h"
#include "http.h"
#include "hub.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "store.h"
#include "store_jobs.h"
#include "qesd_fixture.h"
#include "testcert.h"

#define CRED "crd_aaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CRED_RSA "crd_bbbbbbbbbbbbbbbbbbbbbbbbbq"
#define CRED_OTHER "crd_cccccccccccccccccccccccccy"
#define T0 1700000000000LL
#define MAX_FRAMES 32

/* ------------------------------------------------------------------------- */
/* the fake device side */

struct fake {
	char device_id[QESD_ID_SIZE];
	char session_id[QESD_ID_SIZE];
	int live;
	int revoked;
	int send_fails;
	int drop_after_send;		/* the session ends right after a send */
	uint8_t *cert_ec;
	size_t cert_ec_len;
	uint8_t *cert_rsa;
	size_t cert_rsa_len;
	char *frames[MAX_FRAMES];	/* what was sent, in order */
	size_t n_frames;
};

static int
fake_lookup(void *ctx, const char *tenant_id, const char *credential_id,
    qesd_jobs_credential *out)
{
	struct fake *fk = ctx;
	const uint8_t *der;
	size_t len;

	(void)tenant_id;
	if (strcmp(credential_id, CRED) == 0) {
		der = fk->cert_ec;
		len = fk->cert_ec_len;
	} else if (strcmp(credential_id, CRED_RSA) == 0) {
		der = fk->cert_rsa;
		len = fk->cert_rsa_len;
	} else
		return QES_ERR_NOT_FOUND;
	memset(out, 0, sizeof(*out));
	snprintf(out->device_id, sizeof(out->device_id), "%s", fk->device_id);
	snprintf(out->credential, sizeof(out->credential), "TOKEN0001:0a0b");
	out->device_revoked = fk->revoked;
	out->cert_der = malloc(len);
	assert_non_null(out->cert_der);
	memcpy(out->cert_der, der, len);
	out->cert_der_len = len;
	return 0;
}

static int
fake_is_live(void *ctx, const char *tenant_id, const char *device_id,
    char session_id[QESD_ID_SIZE])
{
	struct fake *fk = ctx;

	(void)tenant_id;
	if (!fk->live || strcmp(device_id, fk->device_id) != 0)
		return 0;
	snprintf(session_id, QESD_ID_SIZE, "%s", fk->session_id);
	return 1;
}

static int
fake_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	struct fake *fk = ctx;

	(void)tenant_id;
	if (fk->send_fails || !fk->live || strcmp(device_id, fk->device_id) != 0)
		return QES_ERR_NOT_FOUND;
	assert_true(fk->n_frames < MAX_FRAMES);
	/* a frame is bytes, not a C string */
	assert_non_null(fk->frames[fk->n_frames] = malloc(len + 1));
	memcpy(fk->frames[fk->n_frames], frame, len);
	fk->frames[fk->n_frames][len] = '\0';
	fk->n_frames++;
	if (fk->drop_after_send)
		fk->live = 0;
	return 0;
}

/* The last frame as the agent would parse it. */
static qes_proto_msg *
last_frame(struct fake *fk, qes_proto_type want)
{
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	char err[256];

	assert_true(fk->n_frames > 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_AGENT);
	if (qes_proto_parse((const uint8_t *)fk->frames[fk->n_frames - 1],
	    strlen(fk->frames[fk->n_frames - 1]), &lim, &m, err, sizeof(err)) != 0)
		fail_msg("frame does not parse: %s", err);
	assert_int_equal(m->type, want);
	return m;
}

/* ------------------------------------------------------------------------- */
/* fixture: an app on a temporary database, a tenant, a key, a device */

struct fx {
	char dir[64];
	char db[QFX_PATH_MAX];
	char clock[QFX_PATH_MAX];
	qesd_config cfg;
	qesd_app *app;
	qesd_jobs *jobs;
	qesd_tenant tenant, other;
	char key_id[QESD_ID_SIZE];
	EVP_PKEY *ec, *rsa;
	struct fake fk;
	qesd_request req;
};

static uint8_t *
make_cert(EVP_PKEY *key, size_t *len)
{
	testcert_spec s;
	uint8_t *der, *copy;

	memset(&s, 0, sizeof(s));
	s.key = key;
	s.key_usage = QES_KU_NON_REPUDIATION;
	assert_non_null(der = testcert_der(&s, len));
	assert_non_null(copy = malloc(*len));
	memcpy(copy, der, *len);
	OPENSSL_free(der);
	return copy;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	qesd_jobs_devices d;
	qesd_api_key k;
	qesd_tx *tx = NULL;

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-jobs-XXXXXX");
	if (qfx_config(&f->cfg, f->dir, f->db, f->clock) != 0 ||
	    qfx_app(&f->cfg, QFX_PEPPER, &f->app) != 0)
		return -1;
	f->jobs = f->app->jobs;
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_tenant_create(tx, "Acme Bank", T0, &f->tenant), 0);
	assert_int_equal(qesd_tenant_create(tx, "Other", T0, &f->other), 0);
	memset(&k, 0, sizeof(k));
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", f->tenant.id);
	snprintf(k.name, sizeof(k.name), "billing backend");
	k.scopes = QESD_SCOPE_SIGN;
	k.created_at_ms = T0;
	assert_int_equal(qesd_key_insert(tx, &k), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	snprintf(f->key_id, sizeof(f->key_id), "%s", k.id);

	qfx_device(f->db, f->tenant.id, T0, f->fk.device_id);
	assert_int_equal(qesd_id_new("ses", f->fk.session_id), 0);
	f->fk.live = 1;
	assert_non_null(f->ec = testcert_key_ec("P-256"));
	assert_non_null(f->rsa = testcert_key_rsa(2048));
	f->fk.cert_ec = make_cert(f->ec, &f->fk.cert_ec_len);
	f->fk.cert_rsa = make_cert(f->rsa, &f->fk.cert_rsa_len);
	memset(&d, 0, sizeof(d));
	d.credential_lookup = fake_lookup;
	d.lookup_ctx = &f->fk;
	d.is_live = fake_is_live;
	d.send = fake_send;
	d.ctx = &f->fk;
	qesd_jobs_set_devices(f->jobs, &d);

	qfx_request(&f->req, f->app, f->tenant.id, QESD_SCOPE_SIGN,
	    "req-test-1", "192.0.2.7", "signatures.create");
	snprintf(f->req.auth.key_id, sizeof(f->req.auth.key_id), "%s", k.id);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	size_t i;

	qfx_teardown(f->app, &f->cfg, f->dir);
	EVP_PKEY_free(f->ec);
	EVP_PKEY_free(f->rsa);
	free(f->fk.cert_ec);
	free(f->fk.cert_rsa);
	for (i = 0; i < f->fk.n_frames; i++)
		free(f->fk.frames[i]);
	free(f);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* helpers */

static uint8_t digests[3][32];

static void
init_digests(void)
{
	size_t i;

	for (i = 0; i < 3; i++)
		assert_int_equal(qes_md_digest(QES_MD_SHA256, &i, sizeof(i),
		    digests[i]), 0);
}

static qesd_sign_request
sign_request(const char *credential, size_t n)
{
	qesd_sign_request sr;

	init_digests();
	memset(&sr, 0, sizeof(sr));
	sr.credential_id = credential;
	sr.md = QES_MD_SHA256;
	sr.digests = &digests[0][0];
	sr.n_digests = n;
	sr.title = "Loan contract 2024-117";
	sr.description = "Two pages.\nPlease sign.";
	sr.timeout_s = 300;
	return sr;
}

/* Submit and expect a new dispatched job. */
static void
submit_ok(struct fx *f, const qesd_sign_request *sr, qesd_job *job)
{
	qesd_submit_outcome oc = 0;

	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, sr, &oc, job), 0);
	assert_int_equal(oc, QESD_SUBMIT_ACCEPTED);
	assert_int_equal(job->state, QESD_JOB_DISPATCHED);
}

static qesd_job_state
state_of(struct fx *f, const char *job_id, char reason[QESD_JOB_REASON_MAX + 1])
{
	qesd_job job;
	qesd_job_state s;

	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job_id, &job), 0);
	s = job.state;
	if (reason != NULL)
		snprintf(reason, QESD_JOB_REASON_MAX + 1, "%s", job.reason);
	qesd_job_clear(&job);
	return s;
}

/* How many audit records of type name job_id. */
static long long
audit_count(struct fx *f, const char *type, const char *job_id)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_records WHERE "
	    "type = '%s' AND details LIKE '%%\"job_id\":\"%s\"%%'", type, job_id);
	return qfx_count(f->db, sql);
}

/* Sign digest with key as the token would (ECDSA DER, PKCS#1, PSS). */
static size_t
token_sign(EVP_PKEY *key, qes_sig_scheme scheme, const uint8_t *digest,
    uint8_t *sig, size_t cap)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
	size_t len = cap;

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_sign_init(c), 1);
	if (scheme != QES_SIG_ECDSA) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, scheme ==
		    QES_SIG_RSA_PSS ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()), 1);
		if (scheme == QES_SIG_RSA_PSS)
			assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(c,
			    RSA_PSS_SALTLEN_DIGEST), 1);
	}
	assert_int_equal(EVP_PKEY_sign(c, sig, &len, digest, 32), 1);
	EVP_PKEY_CTX_free(c);
	return len;
}

/*
 * Deliver a sign_result as the hub would: built by the agent's builder,
 * parsed with the gateway's limits. sigs NULL: an error result.
 */
static void
deliver_result(struct fx *f, const char *device_id, const char *job_id,
    const qes_proto_bytes *sigs, size_t n, const char *error, int pin_flags)
{
	qes_proto_sign_result b;
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	qes_buf *buf = qes_buf_new();
	char id[23], err[256];

	memset(&b, 0, sizeof(b));
	b.job_id = job_id;
	if (sigs != NULL) {
		b.status = QES_PROTO_STATUS_OK;
		b.signatures = sigs;
		b.n_signatures = n;
	} else {
		b.status = QES_PROTO_STATUS_ERROR;
		b.error = error;
		b.detail = "C_Login: CKR_PIN_INCORRECT";
		if (pin_flags >= 0) {
			b.has_pin_flags = 1;
			b.pin_flags = (unsigned)pin_flags;
		}
	}
	assert_int_equal(qes_proto_new_id(id), 0);
	assert_int_equal(qes_proto_build_sign_result(id, &b, buf), 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	if (qes_proto_parse(qes_buf_data(buf), qes_buf_len(buf), &lim, &m, err,
	    sizeof(err)) != 0)
		fail_msg("sign_result: %s", err);
	qesd_jobs_on_message(f->jobs, f->tenant.id, device_id, f->fk.session_id, m);
	qes_proto_msg_free(m);
	qes_buf_free(buf);
}

/* Good signatures over the first n digests with the EC key. */
static void
deliver_good(struct fx *f, const char *job_id, size_t n)
{
	uint8_t sig[3][128];
	qes_proto_bytes b[3];
	size_t i;

	for (i = 0; i < n; i++) {
		b[i].len = token_sign(f->ec, QES_SIG_ECDSA, digests[i], sig[i],
		    sizeof(sig[i]));
		b[i].data = sig[i];
	}
	deliver_result(f, f->fk.device_id, job_id, b, n, NULL, -1);
}

/* Deliver a sign_status as the hub would: the agent's builder, the
 * gateway's parser. */
static void
deliver_status(struct fx *f, const char *device_id, const char *job_id,
    qes_proto_sign_state st)
{
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	qes_buf *buf = qes_buf_new();
	char id[23], err[256];

	assert_non_null(buf);
	assert_int_equal(qes_proto_new_id(id), 0);
	assert_int_equal(qes_proto_build_sign_status(id, job_id, st, buf), 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	if (qes_proto_parse(qes_buf_data(buf), qes_buf_len(buf), &lim, &m, err,
	    sizeof(err)) != 0)
		fail_msg("sign_status: %s", err);
	qesd_jobs_on_message(f->jobs, f->tenant.id, device_id, f->fk.session_id, m);
	qes_proto_msg_free(m);
	qes_buf_free(buf);
}

/* Audit records of type for job_id that name the device. */
static long long
audit_count_device(struct fx *f, const char *type, const char *job_id,
    const char *device_id)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_records WHERE "
	    "type = '%s' AND device_id = '%s' AND details LIKE '%%\"job_id\":\"%s\"%%'",
	    type, device_id, job_id);
	return qfx_count(f->db, sql);
}

/* ------------------------------------------------------------------------- */
/* the state machine */

static void
test_state_machine(void **state)
{
	/* every edge the machine has; everything else is refused */
	static const int allowed[9][9] = {
		/* to:  -  cr di aw si co fa ex ca */
		[QESD_JOB_CREATED] = { 0, 0, 1, 0, 0, 0, 1, 0, 1 },
		[QESD_JOB_DISPATCHED] = { 0, 0, 0, 1, 1, 0, 1, 0, 1 },
		[QESD_JOB_AWAITING_USER] = { 0, 0, 0, 0, 1, 0, 1, 0, 1 },
		[QESD_JOB_SIGNED] = { 0, 0, 0, 0, 0, 1, 1, 0, 1 },
		[QESD_JOB_COMPLETED] = { 0, 0, 0, 0, 0, 0, 0, 1, 0 },
		[QESD_JOB_FAILED] = { 0 },
		[QESD_JOB_EXPIRED] = { 0 },
		[QESD_JOB_CANCELLED] = { 0 },
	};
	qesd_job_state s;
	int from, to;

	(void)state;
	for (from = 0; from <= 9; from++)
		for (to = 0; to <= 9; to++) {
			int want = from < 9 && to < 9 ? allowed[from][to] : 0;

			if (qesd_job_transition_ok((qesd_job_state)from,
			    (qesd_job_state)to) != want)
				fail_msg("transition %d -> %d: expected %s", from, to,
				    want ? "allowed" : "refused");
		}
	for (from = 1; from <= 8; from++) {
		assert_non_null(qesd_job_state_name((qesd_job_state)from));
		assert_int_equal(qesd_job_state_parse(qesd_job_state_name(
		    (qesd_job_state)from), &s), 0);
		assert_int_equal(s, from);
	}
	assert_null(qesd_job_state_name(0));
	assert_null(qesd_job_state_name(9));
	assert_int_equal(qesd_job_state_parse("done", &s), QES_ERR_FORMAT);
	assert_int_equal(qesd_job_state_parse("Created", &s), QES_ERR_FORMAT);
	assert_string_equal(qesd_job_state_name(QESD_JOB_AWAITING_USER),
	    "awaiting_user");
	assert_false(qesd_job_state_final(QESD_JOB_CREATED));
	assert_false(qesd_job_state_final(QESD_JOB_DISPATCHED));
	assert_false(qesd_job_state_final(QESD_JOB_AWAITING_USER));
	assert_false(qesd_job_state_final(QESD_JOB_SIGNED));
	assert_true(qesd_job_state_final(QESD_JOB_COMPLETED));
	assert_true(qesd_job_state_final(QESD_JOB_FAILED));
	assert_true(qesd_job_state_final(QESD_JOB_EXPIRED));
	assert_true(qesd_job_state_final(QESD_JOB_CANCELLED));
}

/* ------------------------------------------------------------------------- */
/* the job store */

static void
new_row(struct fx *f, const char *tenant_id, const char *idem, qesd_job *j)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->tenant_id, sizeof(j->tenant_id), "%s", tenant_id);
	j->state = QESD_JOB_CREATED;
	snprintf(j->credential_id, sizeof(j->credential_id), CRED);
	snprintf(j->device_id, sizeof(j->device_id), "%s",
	    strcmp(tenant_id, f->tenant.id) == 0 ? f->fk.device_id : "");
	snprintf(j->verification_code, sizeof(j->verification_code), "0042");
	if (idem != NULL) {
		snprintf(j->idempotency_key, sizeof(j->idempotency_key), "%s", idem);
		memset(j->request_hash, 0x5a, sizeof(j->request_hash));
	}
	j->created_at_ms = j->updated_at_ms = T0;
	j->expires_at_ms = T0 + 300000;
	j->request = strdup("{\"v\":1}");
}

static void
test_store(void **state)
{
	struct fx *f = *state;
	qesd_job a, b, c, *items = NULL;
	qesd_tx *tx = NULL;
	char ses2[QESD_ID_SIZE], other_id[QESD_ID_SIZE];
	size_t n = 0;

	assert_int_equal(qesd_id_new("ses", ses2), 0);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	new_row(f, f->tenant.id, "order-1", &a);
	assert_int_equal(qesd_job_insert(tx, &a), 0);
	assert_true(qesd_id_valid("job", a.id));
	assert_int_equal(a.version, 1);
	/* the same idempotency key again in the tenant: conflict */
	new_row(f, f->tenant.id, "order-1", &b);
	assert_int_equal(qesd_job_insert(tx, &b), QES_ERR_CONFLICT);
	qesd_job_clear(&b);
	qesd_tx_end(tx);	/* poisoned: roll back and start over */

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	memset(a.id, 0, sizeof(a.id));
	assert_int_equal(qesd_job_insert(tx, &a), 0);
	/* the same key in another tenant is another key */
	new_row(f, f->other.id, "order-1", &b);
	assert_int_equal(qesd_job_insert(tx, &b), 0);
	snprintf(other_id, sizeof(other_id), "%s", b.id);
	/* refused shapes */
	new_row(f, f->tenant.id, NULL, &c);
	c.state = QESD_JOB_DISPATCHED;
	assert_int_equal(qesd_job_insert(tx, &c), QES_ERR_INVALID_ARG);
	c.state = QESD_JOB_CREATED;
	snprintf(c.credential_id, sizeof(c.credential_id), "crd_short");
	assert_int_equal(qesd_job_insert(tx, &c), QES_ERR_INVALID_ARG);
	snprintf(c.credential_id, sizeof(c.credential_id), CRED);
	snprintf(c.idempotency_key, sizeof(c.idempotency_key), "bad\nkey");
	assert_int_equal(qesd_job_insert(tx, &c), QES_ERR_INVALID_ARG);
	c.idempotency_key[0] = '\0';
	snprintf(c.verification_code, sizeof(c.verification_code), "12a4");
	assert_int_equal(qesd_job_insert(tx, &c), QES_ERR_INVALID_ARG);
	snprintf(c.verification_code, sizeof(c.verification_code), "1234");
	c.expires_at_ms = c.created_at_ms;
	assert_int_equal(qesd_job_insert(tx, &c), QES_ERR_INVALID_ARG);
	c.expires_at_ms = T0 + 1000;
	assert_int_equal(qesd_job_insert(tx, &c), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);

	/* lookups: by id, by key; a foreign tenant sees nothing */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	qesd_job_clear(&b);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, a.id, &b), 0);
	assert_string_equal(b.request, "{\"v\":1}");
	assert_null(b.result);
	assert_string_equal(b.idempotency_key, "order-1");
	assert_int_equal(b.request_hash[0], 0x5a);
	assert_int_equal(b.state, QESD_JOB_CREATED);
	qesd_job_clear(&b);
	assert_int_equal(qesd_job_get_by_idempotency_key(tx, f->tenant.id,
	    "order-1", &b), 0);
	assert_string_equal(b.id, a.id);
	qesd_job_clear(&b);
	assert_int_equal(qesd_job_get(tx, f->other.id, a.id, &b), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, "job_nope", &b),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_job_get_by_idempotency_key(tx, f->tenant.id,
	    "order-2", &b), QES_ERR_NOT_FOUND);

	/* compare-and-set: a stale copy loses, without poisoning */
	assert_int_equal(qesd_job_get(tx, f->tenant.id, a.id, &b), 0);
	snprintf(a.session_id, sizeof(a.session_id), "%s", f->fk.session_id);
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_DISPATCHED, NULL,
	    T0 + 10), 0);
	assert_int_equal(a.version, 2);
	assert_int_equal(a.updated_at_ms, T0 + 10);
	assert_int_equal(qesd_job_update(tx, &b, QESD_JOB_CANCELLED, NULL,
	    T0 + 20), QES_ERR_CONFLICT);
	/* edges the machine lacks are refused before the database */
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_COMPLETED, NULL,
	    T0 + 20), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_FAILED, NULL,
	    T0 + 20), QES_ERR_INVALID_ARG);	/* no reason */
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_FAILED, "Bad Reason",
	    T0 + 20), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_CANCELLED, "timeout",
	    T0 + 20), QES_ERR_INVALID_ARG);	/* a reason only with failed */
	/* signed with a result, then completed */
	a.result = strdup("{\"signatures\":[]}");
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_SIGNED, NULL, T0 + 30), 0);
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_COMPLETED, NULL,
	    T0 + 40), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);	/* not poisoned */
	qesd_tx_end(tx);
	qesd_job_clear(&b);

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, a.id, &b), 0);
	assert_int_equal(b.state, QESD_JOB_COMPLETED);
	assert_int_equal(b.version, 4);
	assert_string_equal(b.result, "{\"signatures\":[]}");
	assert_string_equal(b.session_id, f->fk.session_id);
	qesd_job_clear(&b);
	/* writes in a read transaction are refused */
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_EXPIRED, NULL, T0 + 50),
	    QES_ERR_INVALID_ARG);
	/* the sweeper's lists: c is live, expiring at T0 + 1000 */
	assert_int_equal(qesd_job_list_live(tx, T0 + 1000, 10, &items, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_job_list_live(tx, T0 + 1001, 10, &items, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, c.id);
	assert_null(items[0].request);
	qesd_job_list_free(items, n);
	/* all tenants, soonest first */
	assert_int_equal(qesd_job_list_live(tx, INT64_MAX, 10, &items, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(items[0].id, c.id);
	assert_string_equal(items[1].id, other_id);
	assert_string_equal(items[1].tenant_id, f->other.id);
	qesd_job_list_free(items, n);
	assert_int_equal(qesd_job_list_live(tx, INT64_MAX, 1, &items, &n), 0);
	assert_int_equal(n, 1);
	qesd_job_list_free(items, n);
	/* by device: a is completed, c was never sent (no session) */
	assert_int_equal(qesd_job_list_live_on_device(tx, f->tenant.id,
	    f->fk.device_id, NULL, 10, &items, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, c.id);
	qesd_job_list_free(items, n);
	assert_int_equal(qesd_job_list_live_on_device(tx, f->tenant.id,
	    f->fk.device_id, ses2, 10, &items, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_job_list_live_on_device(tx, f->other.id,
	    f->fk.device_id, NULL, 10, &items, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_job_list_completed_before(tx, T0 + 40, 10, &items,
	    &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_job_list_completed_before(tx, T0 + 41, 10, &items,
	    &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, a.id);
	qesd_job_list_free(items, n);
	qesd_tx_end(tx);

	/* a final job never moves again (but completed may expire) */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	free(a.result);
	a.result = NULL;
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_EXPIRED, NULL, T0 + 50), 0);
	assert_int_equal(qesd_job_update(tx, &a, QESD_JOB_CANCELLED, NULL,
	    T0 + 60), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	qesd_job_clear(&a);
	qesd_job_clear(&b);
	qesd_job_clear(&c);
}

/* ------------------------------------------------------------------------- */
/* request hash and base64 */

static void
test_request_hash(void **state)
{
	qesd_sign_request a = sign_request(CRED, 2), b;
	uint8_t ha[32], hb[32], copy[2][32];

	(void)state;
	assert_int_equal(qesd_jobs_request_hash(&a, ha), 0);
	/* the same values from other memory: the same hash */
	b = a;
	memcpy(copy, digests, sizeof(copy));
	b.digests = &copy[0][0];
	b.title = strdup(a.title);
	assert_int_equal(qesd_jobs_request_hash(&b, hb), 0);
	assert_memory_equal(ha, hb, 32);
	free((char *)b.title);
	/* an absent description is the empty one */
	b = a;
	b.description = NULL;
	assert_int_equal(qesd_jobs_request_hash(&b, ha), 0);
	b.description = "";
	assert_int_equal(qesd_jobs_request_hash(&b, hb), 0);
	assert_memory_equal(ha, hb, 32);
	assert_int_equal(qesd_jobs_request_hash(&a, ha), 0);

	/* every field counts */
#define DIFFERS(stmt) do { b = a; stmt; \
	assert_int_equal(qesd_jobs_request_hash(&b, hb), 0); \
	assert_memory_not_equal(ha, hb, 32); } while (0)
	DIFFERS(b.credential_id = CRED_RSA);
	DIFFERS(b.n_digests = 1);
	DIFFERS(b.digests = &digests[1][0]);
	DIFFERS(b.has_scheme = 1; b.scheme = QES_SIG_ECDSA);
	DIFFERS(b.title = "Loan contract 2024-118");
	DIFFERS(b.description = "Two pages.");
	DIFFERS(b.application = "Portal");
	DIFFERS(b.timeout_s = 301);
	/* the same bytes read as another algorithm are another request */
	DIFFERS(b.md = QES_MD_SHA384; b.n_digests = 1;
	    b.digests = (const uint8_t *)"0123456789012345678901234567890123456789012345678");
	/* field boundaries are not ambiguous */
	b = a;
	b.title = "ab";
	b.description = "c";
	assert_int_equal(qesd_jobs_request_hash(&b, ha), 0);
	b.title = "a";
	b.description = "bc";
	assert_int_equal(qesd_jobs_request_hash(&b, hb), 0);
	assert_memory_not_equal(ha, hb, 32);
#undef DIFFERS
	/* the idempotency key itself is not part of the body */
	b = a;
	b.idempotency_key = "k1";
	assert_int_equal(qesd_jobs_request_hash(&b, hb), 0);
	assert_int_equal(qesd_jobs_request_hash(&a, ha), 0);
	assert_memory_equal(ha, hb, 32);
	b.n_digests = 0;
	assert_int_equal(qesd_jobs_request_hash(&b, hb), QES_ERR_INVALID_ARG);
}

static void
test_base64(void **state)
{
	static const struct {
		const char *in;
		const char *out;	/* hex; NULL: refused */
	} cases[] = {
		{ "AAECAw==", "00010203" },
		{ "AAECAwQ=", "0001020304" },
		{ "AAECAwQF", "000102030405" },
		{ "+/+/", "fbffbf" },
		{ "AAECAw", NULL },		/* padding is required */
		{ "AAECAw=", NULL },
		{ "AAECAx==", NULL },		/* non-zero unused bits */
		{ "AAEC Aw==", NULL },
		{ "AAECAw==\n", NULL },
		{ "AA==AAAA", NULL },		/* padding inside */
		{ "A===", NULL },
		{ "-_-_", NULL },		/* base64url is not the API's */
		{ "", NULL },
	};
	qes_buf *b;
	json_t *j;
	size_t i, k;
	char hex[64];

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_non_null(b = qes_buf_new());
		if (cases[i].out == NULL) {
			if (qesd_b64_decode(cases[i].in, strlen(cases[i].in), b) !=
			    QES_ERR_FORMAT)
				fail_msg("'%s' accepted", cases[i].in);
		} else {
			assert_int_equal(qesd_b64_decode(cases[i].in,
			    strlen(cases[i].in), b), 0);
			for (k = 0; k < qes_buf_len(b); k++)
				snprintf(hex + 2 * k, 3, "%02x", qes_buf_data(b)[k]);
			hex[2 * k] = '\0';
			assert_string_equal(hex, cases[i].out);
			j = qesd_b64_json(qes_buf_data(b), qes_buf_len(b));
			assert_string_equal(json_string_value(j), cases[i].in);
			json_decref(j);
		}
		qes_buf_free(b);
	}
}

/* ------------------------------------------------------------------------- */
/* the service */

static void
test_submit_dispatch(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 3);
	char code[QES_PROTO_VCODE_LEN + 1];
	qes_proto_msg *m;
	qesd_job job;
	json_t *o;

	submit_ok(f, &sr, &job);
	assert_true(qesd_id_valid("job", job.id));
	assert_string_equal(job.session_id, f->fk.session_id);
	assert_int_equal(job.expires_at_ms - job.created_at_ms, 300000);
	assert_int_equal(qes_verification_code(QES_MD_SHA256, &digests[0][0], 3,
	    code), 0);
	assert_string_equal(job.verification_code, code);

	/* the sign message the agent gets shows what the relying party sees */
	assert_int_equal(f->fk.n_frames, 1);
	m = last_frame(&f->fk, QES_PROTO_SIGN);
	assert_string_equal(m->id, job.id);
	assert_string_equal(m->u.sign.job_id, job.id);
	assert_string_equal(m->u.sign.credential, "TOKEN0001:0a0b");
	assert_int_equal(m->u.sign.scheme, QES_SIG_ECDSA);	/* the EC key's default */
	assert_int_equal(m->u.sign.md, QES_MD_SHA256);
	assert_int_equal(m->u.sign.n_digests, 3);
	assert_memory_equal(m->u.sign.digests, digests, sizeof(digests));
	assert_string_equal(m->u.sign.verification_code, code);
	assert_string_equal(m->u.sign.requester.tenant, "Acme Bank");
	assert_string_equal(m->u.sign.requester.application, "billing backend");
	assert_string_equal(m->u.sign.title, sr.title);
	assert_string_equal(m->u.sign.description, sr.description);
	assert_true(m->u.sign.timeout_s >= 298 && m->u.sign.timeout_s <= 300);
	qes_proto_msg_free(m);

	/* the public view */
	assert_non_null(o = qesd_job_json(&job));
	assert_string_equal(json_string_value(json_object_get(o, "id")), job.id);
	assert_string_equal(json_string_value(json_object_get(o, "state")),
	    "dispatched");
	assert_string_equal(json_string_value(json_object_get(o,
	    "signature_scheme")), "ecdsa");
	assert_string_equal(json_string_value(json_object_get(o,
	    "digest_algorithm")), "sha256");
	assert_string_equal(json_string_value(json_object_get(o,
	    "verification_code")), code);
	assert_string_equal(json_string_value(json_object_get(o, "credential_id")),
	    CRED);
	assert_string_equal(json_string_value(json_object_get(o, "title")), sr.title);
	assert_non_null(json_string_value(json_object_get(o, "expires_at")));
	assert_null(json_object_get(o, "reason"));
	assert_null(json_object_get(o, "signatures"));
	assert_null(json_object_get(o, "token_flags"));
	json_decref(o);

	/* both steps are on record, naming the request and the device */
	assert_int_equal(audit_count(f, "signature.requested", job.id), 1);
	assert_int_equal(audit_count(f, "signature.dispatched", job.id), 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type LIKE 'signature.%' AND request_id = 'req-test-1' AND "
	    "device_id IS NOT NULL AND key_id IS NOT NULL"), 2);
	assert_true(f->req.app_flags & QESD_APPF_AUDITED);
	/* digests are summarised, not copied, into the record */
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type = 'signature.requested' AND details LIKE '%digests_sha256%'"), 1);
	qesd_job_clear(&job);

	/* an explicit application and scheme; RSA's default is PKCS#1 */
	sr = sign_request(CRED_RSA, 1);
	sr.application = "Loan portal";
	submit_ok(f, &sr, &job);
	m = last_frame(&f->fk, QES_PROTO_SIGN);
	assert_int_equal(m->u.sign.scheme, QES_SIG_RSA_PKCS1);
	assert_string_equal(m->u.sign.requester.application, "Loan portal");
	qes_proto_msg_free(m);
	qesd_job_clear(&job);
	sr.has_scheme = 1;
	sr.scheme = QES_SIG_RSA_PSS;
	submit_ok(f, &sr, &job);
	m = last_frame(&f->fk, QES_PROTO_SIGN);
	assert_int_equal(m->u.sign.scheme, QES_SIG_RSA_PSS);
	qes_proto_msg_free(m);
	qesd_job_clear(&job);
}

static void
test_submit_refusals(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	qesd_submit_outcome oc = 0;
	qesd_job job;

	sr.credential_id = CRED_OTHER;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_CREDENTIAL_NOT_FOUND);
	sr.credential_id = CRED;

	f->fk.revoked = 1;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_DEVICE_REVOKED);
	f->fk.revoked = 0;

	f->fk.live = 0;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_DEVICE_OFFLINE);
	f->fk.live = 1;

	sr.has_scheme = 1;
	sr.scheme = QES_SIG_RSA_PSS;	/* an EC key cannot */
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_SCHEME_UNSUITABLE);
	sr.has_scheme = 0;

	/* nothing was created or sent for any of them */
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM jobs"), 0);
	assert_int_equal(f->fk.n_frames, 0);

	/* the session vanished between the check and the send */
	f->fk.send_fails = 1;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_ACCEPTED);
	assert_int_equal(job.state, QESD_JOB_FAILED);
	assert_string_equal(job.reason, "device_offline");
	assert_int_equal(audit_count(f, "signature.failed", job.id), 1);
	qesd_job_clear(&job);
	f->fk.send_fails = 0;

	/* the defaults: credentials from the devices store (none here) */
	qesd_jobs_set_devices(f->jobs, NULL);
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_CREDENTIAL_NOT_FOUND);
}

static void
test_idempotency(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 2);
	qesd_submit_outcome oc = 0;
	qesd_job a, b;

	sr.idempotency_key = "order 4711";
	submit_ok(f, &sr, &a);
	assert_string_equal(a.idempotency_key, "order 4711");
	/* the same body: the same job, nothing sent again, even offline */
	f->fk.live = 0;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &b), 0);
	assert_int_equal(oc, QESD_SUBMIT_REPLAYED);
	assert_string_equal(b.id, a.id);
	assert_int_equal(f->fk.n_frames, 1);
	qesd_job_clear(&b);
	/* another body under the same key */
	sr.title = "Another contract";
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &b), 0);
	assert_int_equal(oc, QESD_SUBMIT_IDEMPOTENCY_CONFLICT);
	assert_int_equal(b.id[0], '\0');
	/* keys are per tenant */
	f->fk.live = 1;
	snprintf(f->req.auth.tenant_id, sizeof(f->req.auth.tenant_id), "%s",
	    f->other.id);
	qfx_device(f->db, f->other.id, T0, f->fk.device_id);
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &b), 0);
	assert_int_equal(oc, QESD_SUBMIT_ACCEPTED);
	assert_string_not_equal(b.id, a.id);
	qesd_job_clear(&a);
	qesd_job_clear(&b);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM jobs"), 2);
}

/*
 * The certificate cache (jobs_certs.c): the same bytes give the same
 * parse, other bytes another; what does not parse is refused and not
 * kept; never more than JOBS_CERTS_MAX entries, and an entry in use is
 * never evicted (the caller then gets a parse of its own).
 */
static uint8_t *
serial_cert(EVP_PKEY *key, unsigned serial, size_t *len)
{
	char hex[16];
	testcert_spec s;
	uint8_t *der;

	memset(&s, 0, sizeof(s));
	s.key = key;
	snprintf(hex, sizeof(hex), "%x", serial + 1);
	s.serial_hex = hex;
	assert_non_null(der = testcert_der(&s, len));
	return der;
}

static void
test_cert_cache(void **state)
{
	struct jobs_certs c;
	struct jobs_cert *held[JOBS_CERTS_MAX + 1], *a, *a2, *e;
	EVP_PKEY *key = testcert_key_ec("P-256");
	uint8_t *der, *der0, bad[8] = { 0x30, 0x06, 1, 2, 3, 4, 5, 6 };
	size_t len, len0;
	unsigned i;

	(void)state;
	assert_non_null(key);
	assert_int_equal(jobs_certs_init(&c), 0);
	der0 = serial_cert(key, 0, &len0);
	assert_int_equal(jobs_cert_acquire(&c, der0, len0, &a), 0);
	assert_int_equal(jobs_cert_acquire(&c, der0, len0, &a2), 0);
	assert_ptr_equal(a, a2);
	assert_int_equal(c.misses, 1);
	assert_int_equal(c.hits, 1);
	{
		size_t got_len = 0;
		const uint8_t *got = qes_cert_der(jobs_cert_get(a), &got_len);

		assert_int_equal(got_len, len0);
		assert_memory_equal(got, der0, len0);
	}
	jobs_cert_release(&c, a2);
	assert_int_equal(jobs_cert_acquire(&c, bad, sizeof(bad), &e),
	    QES_ERR_FORMAT);
	assert_null(e);
	assert_int_equal(c.n, 1);

	/* all entries held: one more is a parse of its own, not cached */
	held[0] = a;
	for (i = 1; i <= JOBS_CERTS_MAX; i++) {
		der = serial_cert(key, i, &len);
		assert_int_equal(jobs_cert_acquire(&c, der, len, &held[i]), 0);
		assert_ptr_not_equal(held[i], held[i - 1]);
		OPENSSL_free(der);
	}
	assert_int_equal(c.n, JOBS_CERTS_MAX);
	assert_int_equal(c.misses, JOBS_CERTS_MAX + 1);
	/* the first one stayed, in use: the same parse again */
	assert_int_equal(jobs_cert_acquire(&c, der0, len0, &a2), 0);
	assert_ptr_equal(a2, a);
	jobs_cert_release(&c, a2);
	for (i = 0; i <= JOBS_CERTS_MAX; i++)
		jobs_cert_release(&c, held[i]);

	/* none in use: a new one evicts the least recently used */
	der = serial_cert(key, JOBS_CERTS_MAX + 1, &len);
	assert_int_equal(jobs_cert_acquire(&c, der, len, &e), 0);
	assert_int_equal(c.n, JOBS_CERTS_MAX);
	jobs_cert_release(&c, e);
	OPENSSL_free(der);
	jobs_cert_release(&c, NULL);
	jobs_certs_destroy(&c);
	OPENSSL_free(der0);
	EVP_PKEY_free(key);
}

static void
test_sign_result_good(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 3);
	qesd_job job, done;
	json_t *o, *sigs;
	qes_buf *b;
	qes_cert *cert = NULL;
	uint64_t misses0 = f->jobs->certs.misses, hits0 = f->jobs->certs.hits;
	size_t i;

	submit_ok(f, &sr, &job);
	deliver_good(f, job.id, 3);
	/* the certificate parsed once for the job: at submit, reused after */
	assert_true(f->jobs->certs.misses - misses0 <= 1);
	assert_true(f->jobs->certs.hits - hits0 >= 1);
	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &done), 0);
	assert_int_equal(done.state, QESD_JOB_COMPLETED);
	assert_int_equal(done.version, 4);	/* created, dispatched, signed, completed */
	assert_non_null(o = qesd_job_json(&done));
	assert_string_equal(json_string_value(json_object_get(o, "state")),
	    "completed");
	sigs = json_object_get(o, "signatures");
	assert_int_equal(json_array_size(sigs), 3);
	/* what the relying party gets verifies with the certificate */
	assert_int_equal(qes_cert_from_der(f->fk.cert_ec, f->fk.cert_ec_len, &cert), 0);
	for (i = 0; i < 3; i++) {
		const char *s = json_string_value(json_array_get(sigs, i));

		assert_non_null(b = qes_buf_new());
		assert_int_equal(qesd_b64_decode(s, strlen(s), b), 0);
		assert_int_equal(qes_cert_verify_digest(cert, QES_SIG_ECDSA,
		    QES_MD_SHA256, digests[i], 32, qes_buf_data(b),
		    qes_buf_len(b)), 0);
		qes_buf_free(b);
	}
	qes_cert_free(cert);
	json_decref(o);
	assert_int_equal(audit_count(f, "signature.completed", job.id), 1);
	qesd_job_clear(&done);
	qesd_job_clear(&job);

	/* an ECDSA value as raw r||s is accepted and handed out as DER */
	{
		uint8_t der[128];
		qes_proto_bytes pb;
		qes_buf *raw = qes_buf_new(), *got = qes_buf_new();
		const char *s;

		assert_non_null(raw);
		assert_non_null(got);
		sr = sign_request(CRED, 1);
		submit_ok(f, &sr, &job);
		pb.len = token_sign(f->ec, QES_SIG_ECDSA, digests[0], der, sizeof(der));
		assert_int_equal(qes_ecdsa_der_to_raw(der, pb.len, 32, raw), 0);
		pb.data = qes_buf_data(raw);
		pb.len = qes_buf_len(raw);
		deliver_result(f, f->fk.device_id, job.id, &pb, 1, NULL, -1);
		assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &done), 0);
		assert_int_equal(done.state, QESD_JOB_COMPLETED);
		assert_non_null(o = qesd_job_json(&done));
		s = json_string_value(json_array_get(json_object_get(o, "signatures"), 0));
		assert_int_equal(qesd_b64_decode(s, strlen(s), got), 0);
		assert_int_equal(qes_buf_data(got)[0], 0x30);	/* a DER SEQUENCE */
		assert_int_equal(qes_cert_from_der(f->fk.cert_ec, f->fk.cert_ec_len,
		    &cert), 0);
		assert_int_equal(qes_cert_verify_digest(cert, QES_SIG_ECDSA,
		    QES_MD_SHA256, digests[0], 32, qes_buf_data(got),
		    qes_buf_len(got)), 0);
		qes_cert_free(cert);
		json_decref(o);
		qes_buf_free(raw);
		qes_buf_free(got);
		qesd_job_clear(&done);
		qesd_job_clear(&job);
	}

	/* RSA PKCS#1 and PSS values verify too */
	for (i = 0; i < 2; i++) {
		qes_sig_scheme sch = i == 0 ? QES_SIG_RSA_PKCS1 : QES_SIG_RSA_PSS;
		uint8_t sig[512];
		qes_proto_bytes pb;

		sr = sign_request(CRED_RSA, 1);
		sr.has_scheme = 1;
		sr.scheme = sch;
		submit_ok(f, &sr, &job);
		pb.len = token_sign(f->rsa, sch, digests[0], sig, sizeof(sig));
		pb.data = sig;
		deliver_result(f, f->fk.device_id, job.id, &pb, 1, NULL, -1);
		assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
		qesd_job_clear(&job);
	}
}

static void
test_sign_result_bad(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 2);
	char reason[QESD_JOB_REASON_MAX + 1];
	uint8_t sig[2][128];
	qes_proto_bytes b[2];
	qesd_job job, got;
	json_t *o;
	EVP_PKEY *other;

	/* one value by another key */
	assert_non_null(other = testcert_key_ec("P-256"));
	submit_ok(f, &sr, &job);
	b[0].len = token_sign(f->ec, QES_SIG_ECDSA, digests[0], sig[0], 128);
	b[0].data = sig[0];
	b[1].len = token_sign(other, QES_SIG_ECDSA, digests[1], sig[1], 128);
	b[1].data = sig[1];
	deliver_result(f, f->fk.device_id, job.id, b, 2, NULL, -1);
	assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "bad_signature");
	assert_int_equal(audit_count(f, "signature.failed", job.id), 1);
	/* and no value of it is kept or shown */
	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &got), 0);
	assert_null(got.result);
	assert_non_null(o = qesd_job_json(&got));
	assert_null(json_object_get(o, "signatures"));
	assert_string_equal(json_string_value(json_object_get(o, "reason")),
	    "bad_signature");
	json_decref(o);
	qesd_job_clear(&got);
	qesd_job_clear(&job);

	/* a value over another digest */
	submit_ok(f, &sr, &job);
	b[1].len = token_sign(f->ec, QES_SIG_ECDSA, digests[2], sig[1], 128);
	deliver_result(f, f->fk.device_id, job.id, b, 2, NULL, -1);
	assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "bad_signature");
	qesd_job_clear(&job);

	/* one value for two digests */
	submit_ok(f, &sr, &job);
	deliver_result(f, f->fk.device_id, job.id, b, 1, NULL, -1);
	assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "bad_signature");
	qesd_job_clear(&job);
	EVP_PKEY_free(other);
}

static void
test_sign_result_errors(void **state)
{
	static const struct {
		const char *error;
		int pin_flags;
		const char *reason;
	} cases[] = {
		{ "cancelled", -1, "declined" },
		{ "pin_incorrect", QES_TOK_PIN_COUNT_LOW, "pin_incorrect" },
		{ "pin_locked", QES_TOK_PIN_LOCKED, "pin_locked" },
		{ "token_removed", -1, "token_removed" },
		{ "key_not_found", -1, "key_not_found" },
		{ "timeout", -1, "timeout" },
		{ "device_error", -1, "device_error" },
		{ "internal", -1, "device_error" },
		{ "frobnicated_by_newer_agent", -1, "device_error" },
	};
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char reason[QESD_JOB_REASON_MAX + 1];
	qesd_job job, got;
	json_t *o, *tf;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		submit_ok(f, &sr, &job);
		deliver_result(f, f->fk.device_id, job.id, NULL, 0, cases[i].error,
		    cases[i].pin_flags);
		assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
		assert_string_equal(reason, cases[i].reason);
		assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &got), 0);
		assert_non_null(o = qesd_job_json(&got));
		tf = json_object_get(o, "token_flags");
		if (cases[i].pin_flags < 0) {
			assert_null(tf);
		} else {
			assert_non_null(tf);
			assert_int_equal(json_is_true(json_object_get(tf,
			    "user_pin_count_low")),
			    (cases[i].pin_flags & QES_TOK_PIN_COUNT_LOW) != 0);
			assert_int_equal(json_is_true(json_object_get(tf,
			    "user_pin_locked")),
			    (cases[i].pin_flags & QES_TOK_PIN_LOCKED) != 0);
			assert_false(json_is_true(json_object_get(tf,
			    "user_pin_final_try")));
		}
		json_decref(o);
		qesd_job_clear(&got);
		assert_int_equal(audit_count(f, "signature.failed", job.id), 1);
		qesd_job_clear(&job);
	}
	/* the detail (a PKCS#11 call) and the PIN flags are on record */
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type = 'signature.failed' AND details LIKE '%\"agent_error\":\"pin_incorrect\"%' "
	    "AND details LIKE '%pin_flags%'"), 1);
}

static void
test_late_and_foreign(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char other_dev[QESD_ID_SIZE], fake_job[QESD_ID_SIZE];
	qes_proto_msg *m;
	qesd_job job, after;
	int was_final = 0;

	/* cancelled, then the answer comes: ignored, told, recorded */
	submit_ok(f, &sr, &job);
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, job.id, &was_final,
	    &after), 0);
	assert_int_equal(was_final, 0);
	assert_int_equal(after.state, QESD_JOB_CANCELLED);
	qesd_job_clear(&after);
	m = last_frame(&f->fk, QES_PROTO_CANCEL);
	assert_string_equal(m->u.cancel.job_id, job.id);
	assert_int_equal(m->u.cancel.reason, QES_PROTO_CANCEL_REQUESTED);
	qes_proto_msg_free(m);
	deliver_good(f, job.id, 1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_CANCELLED);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unknown_job");
	qes_proto_msg_free(m);
	assert_int_equal(audit_count(f, "signature.cancelled", job.id), 1);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 1);
	qesd_job_clear(&job);

	/* another device of the tenant answers for this one's job */
	submit_ok(f, &sr, &job);
	qfx_device(f->db, f->tenant.id, T0, other_dev);
	deliver_result(f, other_dev, job.id, NULL, 0, "cancelled", -1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_DISPATCHED);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 1);
	/* an id that names no job at all */
	assert_int_equal(qesd_id_new("job", fake_job), 0);
	deliver_good(f, fake_job, 1);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unknown_job");
	qes_proto_msg_free(m);
	/* the same job answered twice: the second is late */
	deliver_good(f, job.id, 1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
	deliver_result(f, f->fk.device_id, job.id, NULL, 0, "cancelled", -1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 2);

	/* cancel of a final job changes nothing */
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, job.id, &was_final,
	    &after), 0);
	assert_int_equal(was_final, 1);
	assert_int_equal(after.state, QESD_JOB_COMPLETED);
	qesd_job_clear(&after);
	/* foreign and unknown jobs are not found */
	snprintf(f->req.auth.tenant_id, sizeof(f->req.auth.tenant_id), "%s",
	    f->other.id);
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, job.id, &was_final,
	    &after), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_jobs_get(f->jobs, f->other.id, job.id, &after),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, "job_x", &was_final,
	    &after), QES_ERR_NOT_FOUND);
	qesd_job_clear(&job);
}

/* An error message about the sign message fails the job. */
static void
test_error_message(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char reason[QESD_JOB_REASON_MAX + 1];
	qes_proto_msg m;
	qesd_job job;

	submit_ok(f, &sr, &job);
	memset(&m, 0, sizeof(m));
	m.type = QES_PROTO_ERROR;
	m.id = "err1";
	/* the agent has the job already: nothing changes */
	m.u.error.code = "duplicate_job";
	m.u.error.message = "job already open";
	m.u.error.ref_id = job.id;
	qesd_jobs_on_message(f->jobs, f->tenant.id, f->fk.device_id,
	    f->fk.session_id, &m);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_DISPATCHED);
	m.u.error.code = "busy";
	m.u.error.message = "another dialog is open";
	m.u.error.ref_id = job.id;
	qesd_jobs_on_message(f->jobs, f->tenant.id, f->fk.device_id,
	    f->fk.session_id, &m);
	assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "device_error");
	/* about something else: nothing happens */
	m.u.error.ref_id = "m7Gx";
	qesd_jobs_on_message(f->jobs, f->tenant.id, f->fk.device_id,
	    f->fk.session_id, &m);
	qesd_job_clear(&job);
}

static void
test_session_closed(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char reason[QESD_JOB_REASON_MAX + 1], old_ses[QESD_ID_SIZE];
	qesd_job a, b, c;

	/* a on the old session, b on the new one (the agent reconnected) */
	submit_ok(f, &sr, &a);
	snprintf(old_ses, sizeof(old_ses), "%s", f->fk.session_id);
	assert_int_equal(qesd_id_new("ses", f->fk.session_id), 0);
	submit_ok(f, &sr, &b);
	deliver_good(f, b.id, 1);	/* completed: stays so */
	submit_ok(f, &sr, &c);
	qesd_jobs_on_session_closed(f->jobs, f->tenant.id, f->fk.device_id,
	    old_ses, "replaced");
	assert_int_equal(state_of(f, a.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "device_disconnected");
	assert_int_equal(state_of(f, b.id, NULL), QESD_JOB_COMPLETED);
	assert_int_equal(state_of(f, c.id, NULL), QESD_JOB_DISPATCHED);
	/* the answer of the dead session's dialog comes too late */
	deliver_good(f, a.id, 1);
	assert_int_equal(state_of(f, a.id, NULL), QESD_JOB_FAILED);
	/* revocation closes the new one */
	qesd_jobs_on_session_closed(f->jobs, f->tenant.id, f->fk.device_id,
	    f->fk.session_id, "device_revoked");
	assert_int_equal(state_of(f, c.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "device_revoked");
	assert_int_equal(audit_count(f, "signature.failed", c.id), 1);
	qesd_job_clear(&a);
	qesd_job_clear(&b);
	qesd_job_clear(&c);

	/* the session ends while the dispatch commits (its close listed the
	 * jobs before this one was dispatched): the job fails at once */
	f->fk.drop_after_send = 1;
	{
		qesd_submit_outcome oc = 0;

		assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &a), 0);
		assert_int_equal(oc, QESD_SUBMIT_ACCEPTED);
		assert_int_equal(a.state, QESD_JOB_FAILED);
		assert_string_equal(a.reason, "device_disconnected");
		assert_int_equal(audit_count(f, "signature.dispatched", a.id), 1);
		assert_int_equal(audit_count(f, "signature.failed", a.id), 1);
		qesd_job_clear(&a);
	}
}

static void
test_timeout_and_recover(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char reason[QESD_JOB_REASON_MAX + 1];
	uint64_t count = 0;
	qes_proto_msg *m;
	qesd_job a, b, c;

	sr.timeout_s = 30;
	submit_ok(f, &sr, &a);
	sr.timeout_s = 600;
	submit_ok(f, &sr, &b);
	/* nothing is due yet */
	assert_int_equal(qesd_jobs_sweep(f->jobs), 0);
	assert_int_equal(state_of(f, a.id, NULL), QESD_JOB_DISPATCHED);
	/* 31 s later a is over: failed, and its dialog is told to close */
	qfx_set_clock(f->clock, 31000);
	assert_int_equal(qesd_jobs_sweep(f->jobs), 0);
	assert_int_equal(state_of(f, a.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "timeout");
	assert_int_equal(state_of(f, b.id, NULL), QESD_JOB_DISPATCHED);
	m = last_frame(&f->fk, QES_PROTO_CANCEL);
	assert_string_equal(m->u.cancel.job_id, a.id);
	assert_int_equal(m->u.cancel.reason, QES_PROTO_CANCEL_EXPIRED);
	qes_proto_msg_free(m);
	assert_int_equal(audit_count(f, "signature.failed", a.id), 1);
	/* an answer after the timeout is refused */
	deliver_good(f, a.id, 1);
	assert_int_equal(state_of(f, a.id, NULL), QESD_JOB_FAILED);

	/* a restart: whatever was open fails with gateway_restart */
	submit_ok(f, &sr, &c);
	deliver_good(f, c.id, 1);
	assert_int_equal(qesd_jobs_recover(f->jobs, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(state_of(f, b.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "gateway_restart");
	assert_int_equal(state_of(f, c.id, NULL), QESD_JOB_COMPLETED);
	assert_int_equal(qesd_jobs_recover(f->jobs, &count), 0);
	assert_int_equal(count, 0);
	qesd_job_clear(&a);
	qesd_job_clear(&b);
	qesd_job_clear(&c);
}

static void
test_retention(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	qesd_job job, got;
	json_t *o;

	submit_ok(f, &sr, &job);
	deliver_good(f, job.id, 1);
	/* a day and a bit later the signatures are gone: expired */
	qfx_set_clock(f->clock, 86400LL * 1000 + 5000);
	assert_int_equal(qesd_jobs_sweep(f->jobs), 0);
	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &got), 0);
	assert_int_equal(got.state, QESD_JOB_EXPIRED);
	assert_null(got.result);
	assert_non_null(o = qesd_job_json(&got));
	assert_string_equal(json_string_value(json_object_get(o, "state")),
	    "expired");
	assert_null(json_object_get(o, "signatures"));
	json_decref(o);
	assert_int_equal(audit_count(f, "signature.expired", job.id), 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM jobs WHERE result "
	    "IS NOT NULL"), 0);
	qesd_job_clear(&got);
	qesd_job_clear(&job);
}

/* The default lookup: credentials as the devices service stores them. */
static void
test_store_credentials(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr;
	qesd_submit_outcome oc = 0;
	qesd_jobs_devices d;
	qesd_credential c;
	qes_proto_msg *m;
	qesd_tx *tx = NULL;
	qesd_job job;

	memset(&c, 0, sizeof(c));
	snprintf(c.serial, sizeof(c.serial), "SERIAL1");
	snprintf(c.key_id_hex, sizeof(c.key_id_hex), "0a0b");
	snprintf(c.cert_serial_hex, sizeof(c.cert_serial_hex), "01a2b3c4d5");
	snprintf(c.classification, sizeof(c.classification), "advanced");
	snprintf(c.cert_sha256_hex, sizeof(c.cert_sha256_hex), "%064d", 7);
	c.label = strdup("");
	c.token_label = strdup("token");
	c.subject = strdup("CN=Test Signer");
	c.subject_cn = strdup("Test Signer");
	c.issuer = strdup("CN=qes Test CA");
	c.not_before_ms = T0;
	c.not_after_ms = T0 + 86400LL * 365 * 1000 * 10;
	c.key_type = QES_KEY_EC;
	c.key_bits = 256;
	c.has_private_key = 1;
	assert_non_null(c.cert_der = malloc(f->fk.cert_ec_len));
	memcpy(c.cert_der, f->fk.cert_ec, f->fk.cert_ec_len);
	c.cert_der_len = f->fk.cert_ec_len;
	assert_int_equal(qesd_credential_id(f->fk.device_id, c.serial,
	    c.key_id_hex, c.cert_sha256_hex, c.id), 0);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_device_set_inventory(tx, f->tenant.id,
	    f->fk.device_id, "{\"tokens\":[]}", &c, 1, T0 + 5), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);

	/* the hub's part faked, the lookup the service's own */
	memset(&d, 0, sizeof(d));
	d.is_live = fake_is_live;
	d.send = fake_send;
	d.ctx = &f->fk;
	qesd_jobs_set_devices(f->jobs, &d);
	sr = sign_request(c.id, 1);
	submit_ok(f, &sr, &job);
	m = last_frame(&f->fk, QES_PROTO_SIGN);
	assert_string_equal(m->u.sign.credential, "SERIAL1:0a0b");
	assert_int_equal(m->u.sign.scheme, QES_SIG_ECDSA);
	qes_proto_msg_free(m);
	deliver_good(f, job.id, 1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
	qesd_job_clear(&job);
	/* not connected, then revoked */
	f->fk.live = 0;
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_DEVICE_OFFLINE);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_device_revoke(tx, f->tenant.id, f->fk.device_id,
	    T0 + 10), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_DEVICE_REVOKED);
	/* another tenant does not see the credential */
	snprintf(f->req.auth.tenant_id, sizeof(f->req.auth.tenant_id), "%s",
	    f->other.id);
	assert_int_equal(qesd_jobs_submit(f->jobs, &f->req, &sr, &oc, &job), 0);
	assert_int_equal(oc, QESD_SUBMIT_CREDENTIAL_NOT_FOUND);
	qesd_credential_clear(&c);
}

/* Waiters are woken on change and free themselves in resume. */
/*
 * sign_status: awaiting_user moves dispatched -> awaiting_user (and wakes
 * long-pollers), consented is on record with the device, and the job
 * completes from awaiting_user; a declined job's record names the device
 * too. Statuses the machine does not allow are refused and change nothing;
 * statuses of unknown, finished or foreign jobs are handled like late
 * sign_results.
 */
static void
test_sign_status(void **state)
{
	struct fx *f = *state;
	qesd_sign_request sr = sign_request(CRED, 1);
	char reason[QESD_JOB_REASON_MAX + 1], other_dev[QESD_ID_SIZE];
	char fake_job[QESD_ID_SIZE];
	qesd_jobs_waiter *w;
	qes_proto_msg *m;
	qesd_job job, got, after;
	json_t *o;
	size_t frames;
	int was_final = 0;

	/* the whole way: dispatched -> awaiting_user -> consent -> completed */
	submit_ok(f, &sr, &job);
	assert_non_null(w = qesd_jobs_wait_begin(f->jobs, f->tenant.id, job.id));
	qesd_jobs_wait_arm(w, NULL, 1);
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_AWAITING_USER);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_AWAITING_USER);
	qesd_jobs_resume(NULL, NULL, QESD_RESUME_WOKEN, w);
	assert_int_equal(qesd_jobs_get(f->jobs, f->tenant.id, job.id, &got), 0);
	assert_true(got.version > job.version);
	assert_non_null(o = qesd_job_json(&got));
	assert_string_equal(json_string_value(json_object_get(o, "state")),
	    "awaiting_user");
	json_decref(o);
	qesd_job_clear(&got);
	assert_int_equal(audit_count_device(f, "signature.awaiting_user", job.id,
	    f->fk.device_id), 1);
	/* a second awaiting_user: refused, nothing changes */
	frames = f->fk.n_frames;
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_AWAITING_USER);
	assert_int_equal(f->fk.n_frames, frames + 1);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unexpected_message");
	qes_proto_msg_free(m);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_AWAITING_USER);
	assert_int_equal(audit_count(f, "signature.awaiting_user", job.id), 1);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 0);
	/* consent: on record with the device, the state stays */
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_CONSENTED);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_AWAITING_USER);
	assert_int_equal(audit_count_device(f, "signature.consented", job.id,
	    f->fk.device_id), 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type = 'signature.consented' AND details LIKE '%\"state\":\"awaiting_user\"%'"),
	    1);
	deliver_good(f, job.id, 1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
	assert_int_equal(audit_count(f, "signature.completed", job.id), 1);
	/* after the end, a status is late: ignored, told, recorded */
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_CONSENTED);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unknown_job");
	qes_proto_msg_free(m);
	assert_int_equal(audit_count(f, "signature.consented", job.id), 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type = 'signature.result_ignored' AND details LIKE '%\"message\":\"sign_status\"%' "
	    "AND details LIKE '%\"why\":\"completed\"%'"), 1);
	qesd_job_clear(&job);

	/* an older agent: no status at all, dispatched -> completed as before */
	submit_ok(f, &sr, &job);
	deliver_good(f, job.id, 1);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_COMPLETED);
	qesd_job_clear(&job);

	/* declined in the open dialog: the failure names the device */
	submit_ok(f, &sr, &job);
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_AWAITING_USER);
	deliver_result(f, f->fk.device_id, job.id, NULL, 0, "cancelled", -1);
	assert_int_equal(state_of(f, job.id, reason), QESD_JOB_FAILED);
	assert_string_equal(reason, "declined");
	assert_int_equal(audit_count_device(f, "signature.failed", job.id,
	    f->fk.device_id), 1);
	assert_int_equal(audit_count(f, "signature.consented", job.id), 0);
	qesd_job_clear(&job);

	/* consent straight from dispatched (its awaiting_user was lost) */
	submit_ok(f, &sr, &job);
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_CONSENTED);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_DISPATCHED);
	assert_int_equal(audit_count(f, "signature.consented", job.id), 1);
	/* another device reports on this one's job: ignored */
	qfx_device(f->db, f->tenant.id, T0, other_dev);
	deliver_status(f, other_dev, job.id, QES_PROTO_SIGN_AWAITING_USER);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_DISPATCHED);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 1);
	/* cancelled, then the dialog opens: the job stays cancelled */
	assert_int_equal(qesd_jobs_cancel(f->jobs, &f->req, job.id, &was_final,
	    &after), 0);
	qesd_job_clear(&after);
	deliver_status(f, f->fk.device_id, job.id, QES_PROTO_SIGN_AWAITING_USER);
	assert_int_equal(state_of(f, job.id, NULL), QESD_JOB_CANCELLED);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unknown_job");
	qes_proto_msg_free(m);
	assert_int_equal(audit_count(f, "signature.result_ignored", job.id), 2);
	assert_int_equal(audit_count(f, "signature.awaiting_user", job.id), 0);
	qesd_job_clear(&job);

	/* an id that names no job */
	assert_int_equal(qesd_id_new("job", fake_job), 0);
	frames = f->fk.n_frames;
	deliver_status(f, f->fk.device_id, fake_job, QES_PROTO_SIGN_AWAITING_USER);
	assert_int_equal(f->fk.n_frames, frames + 1);
	m = last_frame(&f->fk, QES_PROTO_ERROR);
	assert_string_equal(m->u.error.code, "unknown_job");
	qes_proto_msg_free(m);
}

static void
test_waiters(void **state)
{
	struct fx *f = *state;
	qesd_jobs_waiter *w1, *w2, *w3;

	assert_non_null(w1 = qesd_jobs_wait_begin(f->jobs, f->tenant.id, "job_a"));
	assert_non_null(w2 = qesd_jobs_wait_begin(f->jobs, f->tenant.id, "job_a"));
	assert_non_null(w3 = qesd_jobs_wait_begin(f->jobs, f->tenant.id, "job_b"));
	qesd_jobs_wait_arm(w1, NULL, 1);
	qesd_jobs_wait_arm(w2, NULL, 2);
	qesd_jobs_wait_arm(w3, NULL, 3);
	/* another tenant's job of the same id wakes nobody here */
	qesd_jobs_changed(f->jobs, f->other.id, "job_a");
	qesd_jobs_changed(f->jobs, f->tenant.id, "job_a");
	/* resume after a wake, at a deadline, and a never-deferred waiter */
	qesd_jobs_resume(NULL, NULL, QESD_RESUME_WOKEN, w1);
	qesd_jobs_resume(NULL, NULL, QESD_RESUME_DEADLINE, w2);
	qesd_jobs_wait_cancel(w3);
	qesd_jobs_changed(f->jobs, f->tenant.id, "job_b");	/* nobody left */
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_request_hash),
		cmocka_unit_test(test_cert_cache),
		cmocka_unit_test(test_base64),
		T(test_store),
		T(test_submit_dispatch),
		T(test_submit_refusals),
		T(test_idempotency),
		T(test_sign_result_good),
		T(test_sign_result_bad),
		T(test_sign_result_errors),
		T(test_late_and_foreign),
		T(test_error_message),
		T(test_sign_status),
		T(test_session_closed),
		T(test_timeout_and_recover),
		T(test_retention),
		T(test_store_credentials),
		T(test_waiters),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
