/*
 * jobs.c - the signature jobs service (see jobs.h for the states, the
 * reasons and who calls what).
 *
 * How a job moves, and why in this order:
 *
 *  1. submit: the job is inserted in state created with its
 *     signature.requested record and committed BEFORE anything is sent, so
 *     a crash right after leaves a job that the next start fails with
 *     gateway_restart instead of a signer's dialog nobody knows about.
 *  2. dispatch: one write transaction queues the sign frame on the device's
 *     session (qesd_hub_send only queues: no I/O, no waiting) and moves the
 *     job to dispatched with signature.dispatched. Queuing inside the
 *     transaction means the agent's answer, which needs a write
 *     transaction of its own, cannot overtake the commit. If the queue
 *     refuses (the session went away since the check), the same
 *     transaction fails the job with device_offline.
 *  3. the agent's sign_result: the job is read under the writer lock (so a
 *     dispatch still committing is seen), the values are verified against
 *     the certificate the signer was shown (stored with the request)
 *     outside any transaction, then the job moves by compare-and-set on the
 *     version it had: signed and completed, or failed(bad_signature), or
 *     failed(reason) for an error. A job that moved meanwhile (cancelled,
 *     timed out) keeps its state; the late answer is refused with an
 *     error message to the agent and recorded as signature.result_ignored.
 *  4. everything else ends a job from the outside: cancel, the sweeper
 *     (timeout), a closing session, the restart recovery.
 *
 * The agent has no message meaning "the dialog is open", so jobs go from
 * dispatched straight to signed; awaiting_user exists in the machine for
 * when the protocol grows one.
 *
 * Long-poll waiters are kept in a small hash table by job id; a change
 * wakes every waiter of the job (qesd_jobs_changed), each re-reads the job
 * in its resume function. Wakes are best effort by design: a waiter also
 * resumes at its deadline, so nothing hangs if one is missed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/sig.h"
#include "app.h"
#include "audit_svc.h"
#include "devices.h"
#include "jobs.h"
#include "log.h"
#include "problem.h"
#include "rfc3339.h"
#include "store.h"
#include "store_jobs.h"

#define WAIT_BUCKETS 256
#define SWEEP_INTERVAL_MS 1000
#define RETENTION_INTERVAL_MS 60000
#define RETENTION_DEFAULT_MS (24LL * 3600 * 1000)
#define SWEEP_BATCH 100
#define SWEEP_ROUNDS 20		/* at most SWEEP_BATCH * SWEEP_ROUNDS per kind per sweep */
#define CAS_ATTEMPTS 3
#define REQUEST_VERSION 1

#define BIT(s) (1u << (s))
#define LIVE_STATES (BIT(QESD_JOB_CREATED) | BIT(QESD_JOB_DISPATCHED) | \
	BIT(QESD_JOB_AWAITING_USER) | BIT(QESD_JOB_SIGNED))
#define AT_DEVICE (BIT(QESD_JOB_DISPATCHED) | BIT(QESD_JOB_AWAITING_USER))

struct qesd_jobs_waiter {
	struct qesd_jobs_waiter *next, *prev;
	qesd_jobs *jobs;
	char tenant_id[QESD_ID_SIZE];
	char job_id[QESD_ID_SIZE];
	qesd_server *srv;
	uint64_t token;
	unsigned bucket;
	int linked;			/* in the table (jobs->wait_mu) */
};

struct qesd_jobs {
	qesd_app *app;
	qesd_jobs_devices devices;
	int64_t retention_ms;

	pthread_mutex_t wait_mu;
	struct qesd_jobs_waiter *waiters[WAIT_BUCKETS];

	pthread_mutex_t sweep_mu;
	pthread_cond_t sweep_cv;
	int stop;			/* sweep_mu */
	int thread_started;
	pthread_t thread;
	int64_t next_retention_mono_ms;	/* sweeper thread only */
};

/* ------------------------------------------------------------------------- */
/* base64, as the REST API spells it */

int
qesd_b64_decode(const char *s, size_t len, qes_buf *out)
{
	uint8_t *tmp = NULL, *back = NULL;
	size_t i, pad = 0, n;
	int r = QES_ERR_FORMAT, got;

	if (s == NULL || out == NULL || len == 0 || len % 4 != 0 ||
	    len > (size_t)INT32_MAX)
		return QES_ERR_FORMAT;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '=') {
			if (i < len - 2)
				return QES_ERR_FORMAT;
			pad++;
			continue;
		}
		if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return QES_ERR_FORMAT;
	}
	if ((tmp = malloc(len / 4 * 3)) == NULL ||
	    (back = malloc(len + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len)) < 0 ||
	    (size_t)got != len / 4 * 3)
		goto out;
	n = (size_t)got - pad;
	/* canonical: the unused bits of the last group are zero */
	if (EVP_EncodeBlock(back, tmp, (int)n) != (int)len ||
	    memcmp(back, s, len) != 0)
		goto out;
	r = qes_buf_put(out, tmp, n);
 out:
	free(tmp);
	free(back);
	return r;
}

json_t *
qesd_b64_json(const uint8_t *data, size_t len)
{
	char *text;
	json_t *j;
	int n;

	if (len > (size_t)INT32_MAX / 2 || (text = malloc(len / 3 * 4 + 5)) == NULL)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)text, data, (int)len);
	j = n >= 0 ? json_stringn(text, (size_t)n) : NULL;
	free(text);
	return j;
}

/* ------------------------------------------------------------------------- */
/* the idempotency hash */

static int
lp(EVP_MD_CTX *c, const void *data, size_t len)
{
	uint8_t be[4];

	if (len > UINT32_MAX)
		return 0;
	be[0] = (uint8_t)(len >> 24);
	be[1] = (uint8_t)(len >> 16);
	be[2] = (uint8_t)(len >> 8);
	be[3] = (uint8_t)len;
	return EVP_DigestUpdate(c, be, 4) == 1 &&
	    (len == 0 || EVP_DigestUpdate(c, data, len) == 1);
}

static int
lps(EVP_MD_CTX *c, const char *s)
{
	return lp(c, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int
qesd_jobs_request_hash(const qesd_sign_request *sr,
    uint8_t out[QESD_JOB_HASH_LEN])
{
	static const char tag[] = "qesd.v1-signature-request";
	EVP_MD_CTX *c = NULL;
	size_t dlen, i;
	uint8_t be[8];
	unsigned int olen = 0;
	int ok, k;

	if (sr == NULL || out == NULL || sr->credential_id == NULL ||
	    sr->title == NULL || (dlen = qes_md_len(sr->md)) == 0 ||
	    sr->n_digests == 0 || sr->n_digests > QES_PROTO_DIGESTS_MAX ||
	    sr->digests == NULL || sr->timeout_s < 0)
		return QES_ERR_INVALID_ARG;
	if ((c = EVP_MD_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    lp(c, tag, sizeof(tag) - 1) && lps(c, sr->credential_id) &&
	    lps(c, qes_md_name(sr->md)) &&
	    lps(c, sr->has_scheme ? qes_sig_scheme_name(sr->scheme) : NULL);
	be[0] = (uint8_t)(sr->n_digests >> 24);
	be[1] = (uint8_t)(sr->n_digests >> 16);
	be[2] = (uint8_t)(sr->n_digests >> 8);
	be[3] = (uint8_t)sr->n_digests;
	ok = ok && EVP_DigestUpdate(c, be, 4) == 1;
	for (i = 0; ok && i < sr->n_digests; i++)
		ok = lp(c, sr->digests + i * dlen, dlen);
	ok = ok && lps(c, sr->title) && lps(c, sr->description) &&
	    lps(c, sr->application);
	for (k = 0; k < 8; k++)
		be[k] = (uint8_t)((uint64_t)sr->timeout_s >> (56 - 8 * k));
	ok = ok && EVP_DigestUpdate(c, be, 8) == 1 &&
	    EVP_DigestFinal_ex(c, out, &olen) == 1 && olen == QESD_JOB_HASH_LEN;
	EVP_MD_CTX_free(c);
	return ok ? 0 : QES_ERR_CRYPTO;
}

/* ------------------------------------------------------------------------- */
/* the stored request: what was asked and what the signer was shown */

struct stored_request {
	json_t *root;			/* owns the strings below */
	qes_md md;
	qes_sig_scheme scheme;
	qes_buf *digests;		/* n * qes_md_len(md) bytes */
	size_t n;
	const char *title, *description, *application, *credential;
	int64_t timeout_s;
	qes_buf *cert_der;
};

static void
stored_request_free(struct stored_request *q)
{
	json_decref(q->root);
	qes_buf_free(q->digests);
	qes_buf_free(q->cert_der);
	memset(q, 0, sizeof(*q));
}

/* Parse a job's request text (our own writing, still checked). */
static int
stored_request_parse(const char *text, struct stored_request *q)
{
	json_t *digests, *v;
	size_t i, dlen;
	const char *s;
	int r = QES_ERR_FORMAT;

	memset(q, 0, sizeof(*q));
	if (text == NULL ||
	    (q->root = json_loads(text, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto out;
	if (json_integer_value(json_object_get(q->root, "v")) != REQUEST_VERSION ||
	    qes_md_from_name(json_string_value(json_object_get(q->root,
	    "digest_algorithm")), &q->md) != 0 ||
	    qes_sig_scheme_from_name(json_string_value(json_object_get(q->root,
	    "signature_scheme")), &q->scheme) != 0 ||
	    (q->title = json_string_value(json_object_get(q->root, "title"))) == NULL ||
	    (q->description = json_string_value(json_object_get(q->root,
	    "description"))) == NULL ||
	    (q->application = json_string_value(json_object_get(q->root,
	    "application"))) == NULL ||
	    (q->credential = json_string_value(json_object_get(q->root,
	    "credential"))) == NULL ||
	    !json_is_integer(v = json_object_get(q->root, "timeout_seconds")) ||
	    !json_is_array(digests = json_object_get(q->root, "digests")) ||
	    (q->n = json_array_size(digests)) == 0 ||
	    q->n > QES_PROTO_DIGESTS_MAX ||
	    (s = json_string_value(json_object_get(q->root, "certificate"))) == NULL)
		goto out;
	q->timeout_s = (int64_t)json_integer_value(v);
	r = QES_ERR_ALLOC;
	if ((q->digests = qes_buf_new()) == NULL ||
	    (q->cert_der = qes_buf_new()) == NULL)
		goto out;
	if ((r = qesd_b64_decode(s, strlen(s), q->cert_der)) != 0)
		goto out;
	dlen = qes_md_len(q->md);
	json_array_foreach(digests, i, v) {
		size_t before = qes_buf_len(q->digests);

		s = json_string_value(v);
		if (s == NULL) {
			r = QES_ERR_FORMAT;
			goto out;
		}
		if ((r = qesd_b64_decode(s, strlen(s), q->digests)) != 0)
			goto out;
		if (qes_buf_len(q->digests) - before != dlen) {
			r = QES_ERR_FORMAT;
			goto out;
		}
	}
	return 0;
 out:
	stored_request_free(q);
	return r;
}

/* ------------------------------------------------------------------------- */
/* public JSON */

static json_t *
time_json(int64_t ms)
{
	char text[QESD_TIME_TEXT_SIZE];

	if (ms <= 0 || qesd_time_format(ms, text) != 0)
		return json_null();
	return json_string(text);
}

/* token_flags from a stored pin_flags bit set, named as in inventories */
static json_t *
token_flags_json(unsigned flags)
{
	return json_pack("{s:b, s:b, s:b}",
	    "user_pin_count_low", (flags & QES_TOK_PIN_COUNT_LOW) != 0,
	    "user_pin_final_try", (flags & QES_TOK_PIN_FINAL_TRY) != 0,
	    "user_pin_locked", (flags & QES_TOK_PIN_LOCKED) != 0);
}

json_t *
qesd_job_json(const qesd_job *job)
{
	json_t *o = NULL, *req = NULL, *res = NULL, *v;

	if (job == NULL || job->request == NULL)
		return NULL;
	if ((req = json_loads(job->request, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto fail;
	if (job->result != NULL &&
	    (res = json_loads(job->result, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto fail;
	o = json_pack("{s:s, s:s, s:s, s:O, s:O, s:s, s:O, s:o, s:o, s:o}",
	    "id", job->id,
	    "state", qesd_job_state_name(job->state),
	    "credential_id", job->credential_id,
	    "digest_algorithm", json_object_get(req, "digest_algorithm"),
	    "signature_scheme", json_object_get(req, "signature_scheme"),
	    "verification_code", job->verification_code,
	    "title", json_object_get(req, "title"),
	    "created_at", time_json(job->created_at_ms),
	    "updated_at", time_json(job->updated_at_ms),
	    "expires_at", time_json(job->expires_at_ms));
	if (o == NULL)
		goto fail;
	if (job->state == QESD_JOB_FAILED &&
	    json_object_set_new(o, "reason", json_string(job->reason)) != 0)
		goto fail;
	if (job->state == QESD_JOB_COMPLETED &&
	    (v = json_object_get(res, "signatures")) != NULL &&
	    json_object_set(o, "signatures", v) != 0)
		goto fail;
	if (json_is_integer(v = json_object_get(res, "pin_flags")) &&
	    json_object_set_new(o, "token_flags",
	    token_flags_json((unsigned)json_integer_value(v))) != 0)
		goto fail;
	json_decref(req);
	json_decref(res);
	return o;
 fail:
	json_decref(o);
	json_decref(req);
	json_decref(res);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* audit */

/* Details of a job record: ids, names and counts only. Takes extra. */
static char *
details_text(const qesd_job *job, const char *reason, json_t *extra)
{
	json_t *o;
	char *s = NULL;

	o = json_pack("{s:s, s:s, s:s}", "job_id", job->id,
	    "credential_id", job->credential_id,
	    "state", qesd_job_state_name(job->state));
	if (o != NULL && reason != NULL && reason[0] != '\0' &&
	    json_object_set_new(o, "reason", json_string(reason)) != 0) {
		json_decref(o);
		o = NULL;
	}
	if (o != NULL && extra != NULL && json_object_update(o, extra) != 0) {
		json_decref(o);
		o = NULL;
	}
	if (o != NULL)
		s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	json_decref(extra);
	return s;
}

/*
 * Append a job record inside tx. With req, it names the request like
 * qesd_audit_in_tx() (and marks it, so qesd_audit_commit() records it as
 * audited); without, it is the gateway's own act (sweeper, device events).
 * Either way the device is on the record, so a device's history is one
 * filter away.
 */
static int
audit_job(qesd_jobs *j, qesd_tx *tx, qesd_request *req, const qesd_job *job,
    const char *type, int status, const char *details)
{
	qesd_audit_event ev;
	int r;

	memset(&ev, 0, sizeof(ev));
	ev.time_ms = qesd_now_ms(j->app);
	ev.type = type;
	ev.device_id = job->device_id[0] != '\0' ? job->device_id : NULL;
	ev.details = details;
	if (req != NULL) {
		ev.request_id = req->request_id[0] != '\0' ? req->request_id : NULL;
		ev.key_id = req->auth.key_id[0] != '\0' ? req->auth.key_id : NULL;
		ev.route = req->route_name;
		ev.method = req->method_name;
		ev.status = status > 0 && status <= 999 ? status : 0;
		ev.client_addr = req->client_addr[0] != '\0' ? req->client_addr :
		    NULL;
	}
	if ((r = qesd_audit_append(tx, job->tenant_id, &ev, NULL)) != 0)
		return r;
	if (req != NULL)
		req->app_flags |= QESD_APPF_AUDIT_IN_TX;
	return 0;
}

static int
commit(qesd_tx *tx, qesd_request *req)
{
	return req != NULL ? qesd_audit_commit(tx, req) : qesd_tx_commit(tx);
}

/* ------------------------------------------------------------------------- */
/* frames to the device */

static int
send_frame(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_buf *b)
{
	if (j->devices.send == NULL)
		return QES_ERR_NOT_FOUND;
	return j->devices.send(j->devices.ctx, tenant_id, device_id,
	    qes_buf_data(b), qes_buf_len(b));
}

/* Tell the device to close the job's dialog; best effort. */
static void
send_cancel(qesd_jobs *j, const qesd_job *job, qes_proto_cancel_reason why)
{
	qes_proto_cancel c = { job->id, why };
	char id[23];
	qes_buf *b = qes_buf_new();
	int r = QES_ERR_ALLOC;

	if (b != NULL && (r = qes_proto_new_id(id)) == 0 &&
	    (r = qes_proto_build_cancel(id, &c, b)) == 0)
		r = send_frame(j, job->tenant_id, job->device_id, b);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_WARN, "cancel could not be sent to the device",
		    QLS("job_id", job->id), QLS("device_id", job->device_id),
		    QLS("error", qes_strerror(r)));
	qes_buf_free(b);
}

/* Answer a message about a job the device may not act on (any more). */
static void
send_unknown_job(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const char *ref_id, const char *message)
{
	qes_proto_error e = { "unknown_job", message, ref_id };
	char id[23];
	qes_buf *b = qes_buf_new();
	int r = QES_ERR_ALLOC;

	if (b != NULL && (r = qes_proto_new_id(id)) == 0 &&
	    (r = qes_proto_build_error(id, &e, b)) == 0)
		r = send_frame(j, tenant_id, device_id, b);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_WARN, "error message could not be sent to the device",
		    QLS("device_id", device_id), QLS("error", qes_strerror(r)));
	qes_buf_free(b);
}

/* ------------------------------------------------------------------------- */
/* transitions */

struct transition {
	unsigned from;			/* states the job must be in */
	qesd_job_state to;		/* COMPLETED passes through SIGNED */
	const char *reason;		/* FAILED */
	const char *result;		/* new result text (the caller's);
					 * NULL: keep, unless drop_result */
	int drop_result;
	int64_t version;		/* > 0: the job must still have it */
	const char *device_id;		/* non-NULL: the job's device must be it */
	const char *type;		/* audit record type */
	json_t *extra;			/* audit details (borrowed) */
	qesd_request *req;		/* the request that acts, or NULL */
	int status;
};

/*
 * Apply t to the tenant's job in one write transaction with its record,
 * retrying a lost compare-and-set. 0 with *applied 1 when the job moved, 0
 * when it was not in a state (or version, device) t applies to; out (may
 * be NULL) is the job afterwards, *prev its state before.
 */
static int
transition(qesd_jobs *j, const char *tenant_id, const char *job_id,
    const struct transition *t, int *applied, qesd_job_state *prev,
    qesd_job *out)
{
	qesd_job job;
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r = QES_ERR_CONFLICT, attempt;

	*applied = 0;
	memset(&job, 0, sizeof(job));
	for (attempt = 0; attempt < CAS_ATTEMPTS && r == QES_ERR_CONFLICT;
	    attempt++) {
		qesd_tx_end(tx);
		tx = NULL;
		qesd_job_clear(&job);
		free(details);
		details = NULL;
		if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
		    (r = qesd_job_get(tx, tenant_id, job_id, &job)) != 0)
			goto out;
		if (prev != NULL)
			*prev = job.state;
		if (!(t->from & BIT(job.state)) ||
		    (t->version > 0 && job.version != t->version) ||
		    (t->device_id != NULL && strcmp(job.device_id, t->device_id) != 0))
			goto out;	/* not ours to move: *applied stays 0 */
		if (t->result != NULL || t->drop_result) {
			free(job.result);
			job.result = NULL;
			if (t->result != NULL && (job.result = strdup(t->result)) == NULL) {
				r = QES_ERR_ALLOC;
				goto out;
			}
		}
		if (t->to == QESD_JOB_COMPLETED) {
			/* raw signatures: nothing to assemble between the two */
			if ((r = qesd_job_update(tx, &job, QESD_JOB_SIGNED, NULL,
			    qesd_now_ms(j->app))) != 0)
				continue;
		}
		if ((r = qesd_job_update(tx, &job, t->to, t->reason,
		    qesd_now_ms(j->app))) != 0)
			continue;
		if ((details = details_text(&job, t->reason,
		    t->extra != NULL ? json_deep_copy(t->extra) : NULL)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = audit_job(j, tx, t->req, &job, t->type, t->status,
		    details)) != 0 || (r = commit(tx, t->req)) != 0)
			goto out;
		*applied = 1;
	}
 out:
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(r == QES_ERR_BUSY ? QESD_LOG_WARN : QESD_LOG_ERROR,
		    "a job could not be moved in the store",
		    QLS("tenant", tenant_id), QLS("job_id", job_id),
		    QLS("to", qesd_job_state_name(t->to)),
		    QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	free(details);
	if (r == 0 && *applied)
		qesd_jobs_changed(j, tenant_id, job_id);
	if (r == 0 && out != NULL) {
		*out = job;
		memset(&job, 0, sizeof(job));
	}
	qesd_job_clear(&job);
	return r;
}

/* Fail a job that is still live, for a reason; extra is borrowed. */
static int
fail_job(qesd_jobs *j, const char *tenant_id, const char *job_id,
    unsigned from, const char *reason, json_t *extra, int *applied,
    qesd_job_state *prev, qesd_job *out)
{
	struct transition t;

	memset(&t, 0, sizeof(t));
	t.from = from;
	t.to = QESD_JOB_FAILED;
	t.reason = reason;
	t.type = "signature.failed";
	t.extra = extra;
	return transition(j, tenant_id, job_id, &t, applied, prev, out);
}

/* ------------------------------------------------------------------------- */
/* the service */

void
qesd_jobs_credential_clear(qesd_jobs_credential *c)
{
	if (c == NULL)
		return;
	free(c->cert_der);
	memset(c, 0, sizeof(*c));
}

static void *sweeper_main(void *arg);

/*
 * The default credential lookup: the devices service's view of the store
 * (devices.h). Whether the device can be reached NOW is the hub's to say
 * (is_live), not the store's.
 */
static int
store_credential_lookup(void *ctx, const char *tenant_id,
    const char *credential_id, qesd_jobs_credential *out)
{
	qesd_jobs *j = ctx;
	qesd_credential c;
	qesd_tx *tx = NULL;
	int r;

	memset(&c, 0, sizeof(c));
	memset(out, 0, sizeof(*out));
	if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
		r = qesd_devices_credential_lookup(tx, tenant_id, credential_id,
		    qesd_now_ms(j->app), &c);
	qesd_tx_end(tx);
	if (r != 0)
		goto out;
	r = QES_ERR_INVALID_ARG;
	if (snprintf(out->device_id, sizeof(out->device_id), "%s",
	    c.device_id) >= (int)sizeof(out->device_id) ||
	    snprintf(out->credential, sizeof(out->credential), "%s:%s", c.serial,
	    c.key_id_hex) >= (int)sizeof(out->credential) || c.cert_der_len == 0)
		goto out;
	r = QES_ERR_ALLOC;
	if ((out->cert_der = malloc(c.cert_der_len)) == NULL)
		goto out;
	memcpy(out->cert_der, c.cert_der, c.cert_der_len);
	out->cert_der_len = c.cert_der_len;
	out->device_revoked = c.device_revoked_at_ms != 0;
	r = 0;
 out:
	if (r != 0)
		qesd_jobs_credential_clear(out);
	qesd_credential_clear(&c);
	return r;
}

int
qesd_jobs_new(qesd_app *app, const qesd_jobs_config *cfg, qesd_jobs **out)
{
	pthread_condattr_t ca;
	qesd_jobs *j;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (app == NULL || app->store == NULL || cfg == NULL ||
	    cfg->result_retention_ms < 0)
		return QES_ERR_INVALID_ARG;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return QES_ERR_ALLOC;
	j->app = app;
	qesd_jobs_set_devices(j, &cfg->devices);
	j->retention_ms = cfg->result_retention_ms > 0 ?
	    cfg->result_retention_ms : RETENTION_DEFAULT_MS;
	if (pthread_mutex_init(&j->wait_mu, NULL) != 0) {
		free(j);
		return QES_ERR_INTERNAL;
	}
	if (pthread_mutex_init(&j->sweep_mu, NULL) != 0 ||
	    pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&j->wait_mu);
		free(j);
		return QES_ERR_INTERNAL;
	}
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&j->sweep_cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&j->sweep_mu);
		pthread_mutex_destroy(&j->wait_mu);
		free(j);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	*out = j;
	return 0;
}

int
qesd_jobs_start(qesd_jobs *j)
{
	if (j == NULL || j->thread_started)
		return QES_ERR_INVALID_ARG;
	if (pthread_create(&j->thread, NULL, sweeper_main, j) != 0)
		return QES_ERR_INTERNAL;
	j->thread_started = 1;
	return 0;
}

void
qesd_jobs_free(qesd_jobs *j)
{
	if (j == NULL)
		return;
	pthread_mutex_lock(&j->sweep_mu);
	j->stop = 1;
	pthread_cond_signal(&j->sweep_cv);
	pthread_mutex_unlock(&j->sweep_mu);
	if (j->thread_started)
		pthread_join(j->thread, NULL);
	/* no waiter is left: the server, freed first, resumed every deferred
	 * request, and each resume unlinked and freed its waiter */
	pthread_cond_destroy(&j->sweep_cv);
	pthread_mutex_destroy(&j->sweep_mu);
	pthread_mutex_destroy(&j->wait_mu);
	free(j);
}

void
qesd_jobs_set_devices(qesd_jobs *j, const qesd_jobs_devices *d)
{
	if (j == NULL)
		return;
	if (d != NULL)
		j->devices = *d;
	else
		memset(&j->devices, 0, sizeof(j->devices));
	if (j->devices.credential_lookup == NULL) {
		j->devices.credential_lookup = store_credential_lookup;
		j->devices.lookup_ctx = j;
	}
}

int
qesd_jobs_get(qesd_jobs *j, const char *tenant_id, const char *job_id,
    qesd_job *out)
{
	qesd_tx *tx = NULL;
	int r;

	if (j == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
		r = qesd_job_get(tx, tenant_id, job_id, out);
	qesd_tx_end(tx);
	return r;
}

/* ------------------------------------------------------------------------- */
/* submit */

/* The default scheme of a key, and whether it can make the asked one. */
static int
choose_scheme(const qes_cert *cert, const qesd_sign_request *sr,
    qes_sig_scheme *out)
{
	/* in order of preference: PKCS#1 v1.5 is what every validator reads;
	 * a key restricted to PSS (id-RSASSA-PSS) gets PSS */
	static const qes_sig_scheme defaults[] = { QES_SIG_ECDSA,
	    QES_SIG_RSA_PKCS1, QES_SIG_RSA_PSS };
	unsigned can = qes_cert_schemes(cert);
	size_t i;

	if (sr->has_scheme) {
		*out = sr->scheme;
		return (can & (1u << sr->scheme)) ? 0 : QES_ERR_KEY_UNSUITABLE;
	}
	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (can & (1u << defaults[i])) {
			*out = defaults[i];
			return 0;
		}
	return QES_ERR_KEY_UNSUITABLE;
}

/* The request as stored: what the signer is shown and the values to
 * verify against. */
static char *
request_text(const qesd_sign_request *sr, qes_sig_scheme scheme,
    const char *application, const qesd_jobs_credential *cred)
{
	size_t dlen = qes_md_len(sr->md), i;
	json_t *o, *digests;
	char *s = NULL;

	if ((digests = json_array()) == NULL)
		return NULL;
	for (i = 0; i < sr->n_digests; i++)
		if (json_array_append_new(digests, qesd_b64_json(sr->digests +
		    i * dlen, dlen)) != 0) {
			json_decref(digests);
			return NULL;
		}
	o = json_pack("{s:i, s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:s, s:o}",
	    "v", REQUEST_VERSION,
	    "digest_algorithm", qes_md_name(sr->md),
	    "signature_scheme", qes_sig_scheme_name(scheme),
	    "digests", digests,
	    "title", sr->title,
	    "description", sr->description != NULL ? sr->description : "",
	    "application", application,
	    "timeout_seconds", (json_int_t)sr->timeout_s,
	    "credential", cred->credential,
	    "certificate", qesd_b64_json(cred->cert_der, cred->cert_der_len));
	if (o != NULL)
		s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* SHA-256 over the batch, hex: lets an auditor match a set of documents
 * without the records growing with the batch. */
static json_t *
digests_summary(const qesd_sign_request *sr)
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	size_t i;

	SHA256(sr->digests, sr->n_digests * qes_md_len(sr->md), h);
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return json_pack("{s:s, s:I, s:s}", "digest_algorithm",
	    qes_md_name(sr->md), "digests", (json_int_t)sr->n_digests,
	    "digests_sha256", hex);
}

/* Look an idempotency key up. 0 with *found, and *outcome decided. */
static int
idempotency_check(qesd_tx *tx, const char *tenant_id,
    const qesd_sign_request *sr, const uint8_t hash[QESD_JOB_HASH_LEN],
    int *found, qesd_submit_outcome *outcome, qesd_job *out)
{
	int r;

	*found = 0;
	r = qesd_job_get_by_idempotency_key(tx, tenant_id, sr->idempotency_key,
	    out);
	if (r == QES_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	*found = 1;
	if (CRYPTO_memcmp(out->request_hash, hash, QESD_JOB_HASH_LEN) == 0) {
		*outcome = QESD_SUBMIT_REPLAYED;
	} else {
		*outcome = QESD_SUBMIT_IDEMPOTENCY_CONFLICT;
		qesd_job_clear(out);
	}
	return 0;
}

/* 1 when the session the job was sent on is still the device's live one. */
static int
session_still_live(qesd_jobs *j, const qesd_job *job)
{
	char now_sid[QESD_ID_SIZE] = "";

	if (j->devices.is_live == NULL || j->devices.is_live(j->devices.ctx,
	    job->tenant_id, job->device_id, now_sid) != 1)
		return 0;
	return strcmp(now_sid, job->session_id) == 0;
}

/* Build the sign frame for a created job. */
static int
sign_frame(qesd_jobs *j, const qesd_job *job, const qesd_sign_request *sr,
    qes_sig_scheme scheme, const char *tenant_name, const char *application,
    const char *credential, qes_buf *out)
{
	qes_proto_sign s;
	int64_t left_s = (job->expires_at_ms - qesd_now_ms(j->app)) / 1000;

	memset(&s, 0, sizeof(s));
	s.job_id = job->id;
	s.credential = credential;
	s.scheme = scheme;
	s.md = sr->md;
	s.digests = sr->digests;
	s.n_digests = sr->n_digests;
	s.requester.tenant = tenant_name;
	s.requester.application = application;
	s.title = sr->title;
	s.description = sr->description != NULL ? sr->description : "";
	memcpy(s.verification_code, job->verification_code,
	    QES_PROTO_VCODE_LEN + 1);
	s.timeout_s = left_s < QES_PROTO_TIMEOUT_MIN_S ? QES_PROTO_TIMEOUT_MIN_S :
	    left_s > QES_PROTO_TIMEOUT_MAX_S ? QES_PROTO_TIMEOUT_MAX_S : left_s;
	return qes_proto_build_sign(job->id, &s, out);
}

/*
 * Step 2 of the header comment: queue the frame and move the job to
 * dispatched in one transaction, or fail it with device_offline.
 */
static int
dispatch(qesd_jobs *j, qesd_request *req, qesd_job *job, const qes_buf *frame,
    const char *session_id)
{
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r, sent = -1;

	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0)
		goto out;
	sent = send_frame(j, job->tenant_id, job->device_id, frame);
	if (sent == 0) {
		snprintf(job->session_id, sizeof(job->session_id), "%s", session_id);
		if ((r = qesd_job_update(tx, job, QESD_JOB_DISPATCHED, NULL,
		    qesd_now_ms(j->app))) != 0)
			goto out;
		details = details_text(job, NULL, json_pack("{s:s}", "session_id",
		    session_id));
	} else {
		qesd_log(QESD_LOG_INFO, "job could not be sent: the device went offline",
		    QLS("request_id", req->request_id), QLS("job_id", job->id),
		    QLS("device_id", job->device_id), QLS("error", qes_strerror(sent)));
		if ((r = qesd_job_update(tx, job, QESD_JOB_FAILED, "device_offline",
		    qesd_now_ms(j->app))) != 0)
			goto out;
		details = details_text(job, "device_offline", NULL);
	}
	if (details == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = audit_job(j, tx, req, job, sent == 0 ? "signature.dispatched" :
	    "signature.failed", 202, details)) != 0 ||
	    (r = qesd_audit_commit(tx, req)) != 0)
		goto out;
 out:
	if (r != 0) {
		qesd_log(QESD_LOG_ERROR, "a dispatched job could not be recorded: "
		    "it stays created and times out",
		    QLS("request_id", req->request_id), QLS("job_id", job->id),
		    QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
		/* the signer must not approve what the gateway cannot finish */
		if (sent == 0)
			send_cancel(j, job, QES_PROTO_CANCEL_EXPIRED);
	}
	qesd_tx_end(tx);
	free(details);
	return r;
}

int
qesd_jobs_submit(qesd_jobs *j, qesd_request *req, const qesd_sign_request *sr,
    qesd_submit_outcome *outcome, qesd_job *out)
{
	uint8_t hash[QESD_JOB_HASH_LEN];
	char session_id[QESD_ID_SIZE] = "";
	const char *tenant_id;
	const char *application = NULL;
	qesd_jobs_credential cred;
	qesd_tenant tenant;
	qesd_api_key key;
	qesd_job job;
	qes_cert *cert = NULL;
	qes_sig_scheme scheme;
	qesd_tx *tx = NULL;
	qes_buf *frame = NULL;
	char *details = NULL;
	int64_t now;
	int r, found = 0, attempt;

	if (j == NULL || req == NULL || sr == NULL || outcome == NULL ||
	    out == NULL || !req->auth.authenticated)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	memset(&cred, 0, sizeof(cred));
	memset(&job, 0, sizeof(job));
	memset(&key, 0, sizeof(key));
	memset(&tenant, 0, sizeof(tenant));
	tenant_id = req->auth.tenant_id;
	if ((r = qesd_jobs_request_hash(sr, hash)) != 0)
		goto out;

	/* a replay answers with its job whatever the device does now */
	if (sr->idempotency_key != NULL) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) != 0 ||
		    (r = idempotency_check(tx, tenant_id, sr, hash, &found,
		    outcome, out)) != 0 || found)
			goto out;
		qesd_tx_end(tx);
		tx = NULL;
	}

	/* where the credential lives, and whether it is reachable now */
	r = j->devices.credential_lookup(j->devices.lookup_ctx, tenant_id,
	    sr->credential_id, &cred);
	if (r == QES_ERR_NOT_FOUND) {
		*outcome = QESD_SUBMIT_CREDENTIAL_NOT_FOUND;
		r = 0;
		goto out;
	}
	if (r != 0)
		goto out;
	if (cred.device_revoked) {
		*outcome = QESD_SUBMIT_DEVICE_REVOKED;
		goto out;
	}
	if (j->devices.is_live == NULL || j->devices.is_live(j->devices.ctx,
	    tenant_id, cred.device_id, session_id) != 1) {
		*outcome = QESD_SUBMIT_DEVICE_OFFLINE;
		goto out;
	}
	if ((r = qes_cert_from_der(cred.cert_der, cred.cert_der_len, &cert)) != 0) {
		qesd_log(QESD_LOG_ERROR, "a credential's certificate does not parse",
		    QLS("request_id", req->request_id),
		    QLS("credential_id", sr->credential_id), QLS("error", qes_strerror(r)));
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if (choose_scheme(cert, sr, &scheme) != 0) {
		*outcome = QESD_SUBMIT_SCHEME_UNSUITABLE;
		goto out;
	}

	/* step 1: the job exists, with its record, before anything is sent */
	for (attempt = 0; attempt < 2; attempt++) {
		qesd_tx_end(tx);
		tx = NULL;
		qesd_job_clear(&job);
		free(details);
		details = NULL;
		if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0)
			goto out;
		if (sr->idempotency_key != NULL &&
		    ((r = idempotency_check(tx, tenant_id, sr, hash, &found,
		    outcome, out)) != 0 || found))
			goto out;
		if ((r = qesd_tenant_get(tx, tenant_id, &tenant)) != 0)
			goto out;
		/* no application named: the key's name, else the tenant's;
		 * only what a dialog may show (no control or bidi characters) */
		application = sr->application;
		if (application == NULL) {
			r = qesd_key_get(tx, tenant_id, req->auth.key_id, &key);
			if (r != 0 && r != QES_ERR_NOT_FOUND)
				goto out;
			application = r == 0 && qes_proto_display_text_ok(key.name,
			    QES_PROTO_NAME_MAX, 0, 0) ? key.name : tenant.name;
		}
		if (!qes_proto_display_text_ok(application, QES_PROTO_NAME_MAX, 0, 0))
			application = tenant.id;
		now = qesd_now_ms(j->app);
		snprintf(job.tenant_id, sizeof(job.tenant_id), "%.47s", tenant_id);
		job.state = QESD_JOB_CREATED;
		snprintf(job.credential_id, sizeof(job.credential_id), "%s",
		    sr->credential_id);
		snprintf(job.device_id, sizeof(job.device_id), "%s", cred.device_id);
		snprintf(job.key_id, sizeof(job.key_id), "%.47s", req->auth.key_id);
		if ((r = qes_verification_code(sr->md, sr->digests, sr->n_digests,
		    job.verification_code)) != 0)
			goto out;
		if (sr->idempotency_key != NULL) {
			snprintf(job.idempotency_key, sizeof(job.idempotency_key),
			    "%s", sr->idempotency_key);
			memcpy(job.request_hash, hash, sizeof(hash));
		}
		job.created_at_ms = job.updated_at_ms = now;
		job.expires_at_ms = now + sr->timeout_s * 1000;
		if ((job.request = request_text(sr, scheme, application,
		    &cred)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		r = qesd_job_insert(tx, &job);
		if (r == QES_ERR_CONFLICT && sr->idempotency_key != NULL)
			continue;	/* another request took the key: look again */
		if (r != 0)
			goto out;
		if ((details = details_text(&job, NULL,
		    digests_summary(sr))) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = audit_job(j, tx, req, &job, "signature.requested", 202,
		    details)) != 0 || (r = qesd_audit_commit(tx, req)) != 0)
			goto out;
		break;
	}
	if (r != 0)
		goto out;
	qesd_tx_end(tx);
	tx = NULL;

	/* step 2 */
	if ((frame = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = sign_frame(j, &job, sr, scheme,
	    qes_proto_display_text_ok(tenant.name, QES_PROTO_NAME_MAX, 0, 0) ?
	    tenant.name : tenant.id, application,
	    cred.credential, frame)) != 0) {
		qesd_log(QESD_LOG_ERROR, "the sign message cannot be built",
		    QLS("request_id", req->request_id), QLS("job_id", job.id),
		    QLS("error", qes_strerror(r)));
		goto out;
	}
	if ((r = dispatch(j, req, &job, frame, session_id)) != 0)
		goto out;
	qesd_log(QESD_LOG_INFO, job.state == QESD_JOB_DISPATCHED ?
	    "signature job dispatched" : "signature job failed at dispatch",
	    QLS("request_id", req->request_id), QLS("tenant", tenant_id),
	    QLS("job_id", job.id), QLS("device_id", job.device_id),
	    QLI("digests", sr->n_digests));
	qesd_jobs_changed(j, tenant_id, job.id);
	/*
	 * A session that closed while the dispatch was committing listed its
	 * jobs before this one existed as dispatched: look once more, so the
	 * job fails now (device_disconnected) rather than at its timeout.
	 */
	if (job.state == QESD_JOB_DISPATCHED && !session_still_live(j, &job)) {
		qesd_job after;
		int applied = 0;

		memset(&after, 0, sizeof(after));
		if (fail_job(j, tenant_id, job.id, AT_DEVICE, "device_disconnected",
		    NULL, &applied, NULL, &after) == 0 && applied) {
			qesd_job_clear(&job);
			job = after;
		} else
			qesd_job_clear(&after);
	}
	*outcome = QESD_SUBMIT_ACCEPTED;
	*out = job;
	memset(&job, 0, sizeof(job));
 out:
	qesd_tx_end(tx);
	qesd_job_clear(&job);
	qesd_jobs_credential_clear(&cred);
	qes_cert_free(cert);
	qes_buf_free(frame);
	free(details);
	return r;
}

/* ------------------------------------------------------------------------- */
/* cancel */

int
qesd_jobs_cancel(qesd_jobs *j, qesd_request *req, const char *job_id,
    int *was_final, qesd_job *out)
{
	struct transition t;
	qesd_job_state prev = 0;
	int r, applied = 0;

	if (j == NULL || req == NULL || was_final == NULL || out == NULL ||
	    !req->auth.authenticated)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	*was_final = 0;
	memset(&t, 0, sizeof(t));
	t.from = LIVE_STATES;
	t.to = QESD_JOB_CANCELLED;
	t.type = "signature.cancelled";
	t.req = req;
	t.status = 200;
	if ((r = transition(j, req->auth.tenant_id, job_id, &t, &applied, &prev,
	    out)) != 0)
		return r;
	if (!applied) {
		*was_final = 1;
		return 0;
	}
	if (BIT(prev) & AT_DEVICE)
		send_cancel(j, out, QES_PROTO_CANCEL_REQUESTED);
	qesd_log(QESD_LOG_INFO, "signature job cancelled",
	    QLS("request_id", req->request_id), QLS("tenant", out->tenant_id),
	    QLS("job_id", out->id), QLS("was", qesd_job_state_name(prev)));
	return 0;
}

/* ------------------------------------------------------------------------- */
/* the device's messages */

/* Failure reasons an agent may report as they are; anything else is
 * device_error, so the API's list of reasons stays closed. */
static const char *
agent_reason(const char *error)
{
	static const char *const known[] = {
		"declined", "pin_incorrect", "pin_locked", "pin_expired",
		"pin_invalid", "token_not_present", "token_removed",
		"key_not_found", "key_unsuitable", "mechanism_unsupported",
		"token_busy", "data_invalid", "pinentry_failed", "timeout",
	};
	const char *r = qes_proto_failure_reason(error);
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(r, known[i]) == 0)
			return known[i];
	return "device_error";
}

/* A device answered about a job it may not act on: tell it, record it. */
static void
result_ignored(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qesd_job *job, const char *ref_id, const char *why)
{
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r;

	send_unknown_job(j, tenant_id, device_id, ref_id,
	    "no open job with this id: the request was cancelled, expired or never existed");
	qesd_log(QESD_LOG_INFO, "a late or foreign sign_result was ignored",
	    QLS("tenant", tenant_id), QLS("device_id", device_id),
	    QLS("job_id", job != NULL ? job->id : NULL), QLS("why", why));
	if (job == NULL)
		return;		/* an id that names nothing: the log line is all */
	if ((details = details_text(job, NULL, json_pack("{s:s, s:s}", "why", why,
	    "from_device", device_id))) == NULL)
		return;
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = audit_job(j, tx, NULL, job, "signature.result_ignored", 0,
	    details)) != 0 || (r = qesd_tx_commit(tx)) != 0)
		qesd_log(QESD_LOG_ERROR, "an ignored sign_result could not be recorded",
		    QLS("tenant", tenant_id), QLS("job_id", job->id),
		    QLS("error", qes_strerror(r)));
	qesd_tx_end(tx);
	free(details);
}

/*
 * One value as the API gives it: ECDSA as DER (the protocol says DER, but
 * a raw r||s that verifies is converted rather than passed on in a form
 * the documentation does not promise); RSA as it is.
 */
static json_t *
value_json(const qes_cert *cert, qes_sig_scheme scheme, const uint8_t *sig,
    size_t len)
{
	const qes_cert_info *ci = qes_cert_get_info(cert);
	size_t field = ci != NULL ? ((size_t)ci->key_bits + 7) / 8 : 0;
	qes_buf *raw = NULL, *der = NULL;
	json_t *j = NULL;

	if (scheme != QES_SIG_ECDSA || field == 0)
		return qesd_b64_json(sig, len);
	if ((raw = qes_buf_new()) == NULL)
		return NULL;
	if (qes_ecdsa_der_to_raw(sig, len, field, raw) == 0) {
		j = qesd_b64_json(sig, len);
	} else if (len == 2 * field && (der = qes_buf_new()) != NULL &&
	    qes_ecdsa_raw_to_der(sig, len, der) == 0) {
		j = qesd_b64_json(qes_buf_data(der), qes_buf_len(der));
	}
	qes_buf_free(raw);
	qes_buf_free(der);
	return j;
}

/*
 * Verify every value against the certificate the signer was shown. 0 with
 * *result (the job's result text: the values as the API gives them), or
 * QES_ERR_SIGNATURE_INVALID (wrong count or a value that does not verify),
 * or another error when the stored request is unusable.
 */
static int
verify_signatures(const qesd_job *job, const qes_proto_sign_result *sr,
    qes_sig_scheme *scheme_out, char **result)
{
	struct stored_request q;
	qes_cert *cert = NULL;
	json_t *values = NULL, *o;
	size_t dlen, i;
	int r;

	*result = NULL;
	if ((r = stored_request_parse(job->request, &q)) != 0)
		return r;
	*scheme_out = q.scheme;
	if (sr->n_signatures != q.n) {
		r = QES_ERR_SIGNATURE_INVALID;
		goto out;
	}
	if ((r = qes_cert_from_der(qes_buf_data(q.cert_der),
	    qes_buf_len(q.cert_der), &cert)) != 0)
		goto out;
	r = QES_ERR_ALLOC;
	if ((values = json_array()) == NULL)
		goto out;
	dlen = qes_md_len(q.md);
	for (i = 0; i < q.n; i++) {
		if (qes_cert_verify_digest(cert, q.scheme, q.md,
		    qes_buf_data(q.digests) + i * dlen, dlen,
		    sr->signatures[i].data, sr->signatures[i].len) != 0) {
			r = QES_ERR_SIGNATURE_INVALID;
			goto out;
		}
		if (json_array_append_new(values, value_json(cert, q.scheme,
		    sr->signatures[i].data, sr->signatures[i].len)) != 0)
			goto out;
	}
	o = json_pack("{s:o}", "signatures", values);
	values = NULL;
	if (o != NULL && (*result = json_dumps(o, JSON_COMPACT)) != NULL)
		r = 0;
	json_decref(o);
 out:
	json_decref(values);
	qes_cert_free(cert);
	stored_request_free(&q);
	return r;
}

static void
on_sign_result(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_proto_msg *m)
{
	const qes_proto_sign_result *sr = &m->u.sign_result;
	struct transition t;
	qesd_job job;
	qesd_tx *tx = NULL;
	qes_sig_scheme scheme = 0;
	json_t *extra = NULL;
	char *result = NULL;
	const char *reason = NULL;
	int r, applied = 0, v;

	memset(&job, 0, sizeof(job));
	memset(&t, 0, sizeof(t));
	/* under the writer lock: a dispatch still committing is seen done */
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) == 0)
		r = qesd_job_get(tx, tenant_id, sr->job_id, &job);
	qesd_tx_end(tx);
	if (r == QES_ERR_NOT_FOUND) {
		result_ignored(j, tenant_id, device_id, NULL, m->id, "unknown_job");
		goto out;
	}
	if (r != 0) {
		qesd_log(QESD_LOG_ERROR, "a sign_result could not be read against its job; "
		    "the job times out", QLS("tenant", tenant_id),
		    QLS("job_id", sr->job_id), QLS("error", qes_strerror(r)));
		goto out;
	}
	if (strcmp(job.device_id, device_id) != 0) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "foreign_device");
		goto out;
	}
	if (!(BIT(job.state) & AT_DEVICE)) {
		result_ignored(j, tenant_id, device_id, &job, m->id,
		    qesd_job_state_name(job.state));
		goto out;
	}

	t.from = AT_DEVICE;
	t.version = job.version;
	t.device_id = device_id;
	if (sr->status == QES_PROTO_STATUS_OK) {
		v = verify_signatures(&job, sr, &scheme, &result);
		if (v == QES_ERR_ALLOC)
			goto out;	/* the job stays open: a retry or its timeout */
		if (v == 0) {
			t.to = QESD_JOB_COMPLETED;
			t.result = result;
			t.type = "signature.completed";
			extra = json_pack("{s:I}", "signatures",
			    (json_int_t)sr->n_signatures);
		} else {
			reason = v == QES_ERR_SIGNATURE_INVALID ? "bad_signature" :
			    "gateway_error";
			qesd_log(QESD_LOG_WARN, v == QES_ERR_SIGNATURE_INVALID ?
			    "the device returned a signature value that does not verify: job failed" :
			    "a job's stored request is unusable: job failed",
			    QLS("tenant", tenant_id), QLS("job_id", job.id),
			    QLS("device_id", device_id), QLS("error", qes_strerror(v)));
		}
	} else {
		reason = agent_reason(sr->error);
		if ((extra = json_pack("{s:s}", "agent_error", sr->error)) == NULL)
			goto out;
		if (sr->has_pin_flags) {
			/* the token's fresh flags: how many tries are left */
			json_t *res = json_pack("{s:I}", "pin_flags",
			    (json_int_t)sr->pin_flags);

			result = res != NULL ? json_dumps(res, JSON_COMPACT) : NULL;
			json_decref(res);
			if (result == NULL || json_object_set_new(extra, "pin_flags",
			    json_integer(sr->pin_flags)) != 0)
				goto out;
			t.result = result;
		}
	}
	if (reason != NULL) {
		t.to = QESD_JOB_FAILED;
		t.reason = reason;
		t.type = "signature.failed";
	}
	t.extra = extra;
	if ((r = transition(j, tenant_id, job.id, &t, &applied, NULL, NULL)) != 0)
		goto out;
	if (!applied) {
		/* cancelled, timed out or disconnected while we verified */
		result_ignored(j, tenant_id, device_id, &job, m->id, "job_moved_on");
		goto out;
	}
	qesd_log(QESD_LOG_INFO, reason == NULL ? "signature job completed" :
	    "signature job failed", QLS("tenant", tenant_id),
	    QLS("job_id", job.id), QLS("device_id", device_id),
	    QLS("reason", reason), QLS("scheme", reason == NULL ?
	    qes_sig_scheme_name(scheme) : NULL),
	    QLS("detail", sr->status == QES_PROTO_STATUS_ERROR ? sr->detail : NULL));
 out:
	json_decref(extra);
	free(result);
	qesd_job_clear(&job);
}

/*
 * An error message about a job's sign message (a sign message's id is its
 * job id): the agent could not take the job, so it fails (device_error),
 * except duplicate_job, which says the agent has it already.
 */
static void
on_error(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_proto_msg *m)
{
	const qes_proto_error *e = &m->u.error;
	struct transition t;
	int applied = 0;

	if (e->ref_id == NULL || !qesd_id_valid("job", e->ref_id))
		return;		/* about something else: the device side's */
	/* the agent has that job already (a sign sent twice): it goes on */
	if (strcmp(e->code, "duplicate_job") == 0)
		return;
	memset(&t, 0, sizeof(t));
	t.from = AT_DEVICE;
	t.to = QESD_JOB_FAILED;
	t.reason = "device_error";
	t.device_id = device_id;
	t.type = "signature.failed";
	if ((t.extra = json_pack("{s:s}", "agent_error", e->code)) == NULL)
		return;
	if (transition(j, tenant_id, e->ref_id, &t, &applied, NULL, NULL) == 0 &&
	    applied)
		qesd_log(QESD_LOG_INFO, "signature job failed: the device refused it",
		    QLS("tenant", tenant_id), QLS("job_id", e->ref_id),
		    QLS("device_id", device_id), QLS("agent_error", e->code));
	json_decref(t.extra);
}

void
qesd_jobs_on_message(qesd_jobs *j, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg)
{
	(void)session_id;
	if (j == NULL || tenant_id == NULL || device_id == NULL || msg == NULL)
		return;
	if (msg->type == QES_PROTO_SIGN_RESULT)
		on_sign_result(j, tenant_id, device_id, msg);
	else if (msg->type == QES_PROTO_ERROR)
		on_error(j, tenant_id, device_id, msg);
}

/* A close reason of the hub (a stable snake_case word) as a job reason. */
static const char *
close_reason(const char *reason)
{
	if (reason != NULL && strstr(reason, "revoked") != NULL)
		return "device_revoked";
	if (reason != NULL && strstr(reason, "draining") != NULL)
		return "gateway_restart";
	return "device_disconnected";
}

void
qesd_jobs_on_session_closed(qesd_jobs *j, const char *tenant_id,
    const char *device_id, const char *session_id, const char *reason)
{
	const char *why = close_reason(reason);
	qesd_job *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i, rounds;
	int r, applied;

	if (j == NULL || session_id == NULL)
		return;
	for (rounds = 0; rounds < SWEEP_ROUNDS; rounds++) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
			r = qesd_job_list_live_on_device(tx, tenant_id, device_id,
			    session_id, SWEEP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (r != 0) {
			qesd_log(QESD_LOG_ERROR, "the jobs of a closed session could "
			    "not be listed; they time out", QLS("tenant", tenant_id),
			    QLS("device_id", device_id), QLS("error", qes_strerror(r)));
			break;
		}
		for (i = 0; i < n; i++)
			if (fail_job(j, tenant_id, items[i].id, LIVE_STATES, why,
			    NULL, &applied, NULL, NULL) == 0 && applied)
				qesd_log(QESD_LOG_INFO, "signature job failed: its "
				    "session closed", QLS("tenant", tenant_id),
				    QLS("job_id", items[i].id),
				    QLS("device_id", device_id), QLS("reason", why));
		qesd_job_list_free(items, n);
		items = NULL;
		if (n < SWEEP_BATCH)
			break;
	}
}

/* ------------------------------------------------------------------------- */
/* recovery and the sweeper */

/*
 * Fail every live job listed by list() with reason; send a cancel to its
 * device when it had it (timeout). Returns how many moved, or an error.
 */
static int
fail_listed(qesd_jobs *j, int64_t before_ms, const char *reason,
    int cancel_at_device, uint64_t *count)
{
	qesd_job *items = NULL, after;
	qesd_job_state prev;
	qesd_tx *tx = NULL;
	size_t n = 0, i, rounds;
	int r = 0, applied;

	for (rounds = 0; rounds < SWEEP_ROUNDS; rounds++) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
			r = qesd_job_list_live(tx, before_ms, SWEEP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (r != 0)
			return r;
		for (i = 0; i < n; i++) {
			memset(&after, 0, sizeof(after));
			if (fail_job(j, items[i].tenant_id, items[i].id, LIVE_STATES,
			    reason, NULL, &applied, &prev, &after) != 0 || !applied) {
				qesd_job_clear(&after);
				continue;
			}
			(*count)++;
			if (cancel_at_device && (BIT(prev) & AT_DEVICE))
				send_cancel(j, &after, QES_PROTO_CANCEL_EXPIRED);
			qesd_log(QESD_LOG_INFO, "signature job failed", QLS("tenant",
			    after.tenant_id), QLS("job_id", after.id),
			    QLS("device_id", after.device_id), QLS("reason", reason));
			qesd_job_clear(&after);
		}
		qesd_job_list_free(items, n);
		items = NULL;
		if (n < SWEEP_BATCH)
			break;
	}
	return 0;
}

int
qesd_jobs_recover(qesd_jobs *j, uint64_t *count)
{
	uint64_t c = 0;
	int r;

	if (j == NULL)
		return QES_ERR_INVALID_ARG;
	r = fail_listed(j, INT64_MAX, "gateway_restart", 0, &c);
	if (c > 0)
		qesd_log(QESD_LOG_WARN, "jobs left open by the previous run failed "
		    "with gateway_restart: their relying parties must ask again",
		    QLI("jobs", c));
	if (count != NULL)
		*count = c;
	return r;
}

/* Completed jobs past the retention lose their signatures: expired. */
static int
expire_results(qesd_jobs *j, int64_t before_ms)
{
	struct transition t;
	qesd_job *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i, rounds;
	int r = 0, applied;

	memset(&t, 0, sizeof(t));
	t.from = BIT(QESD_JOB_COMPLETED);
	t.to = QESD_JOB_EXPIRED;
	t.drop_result = 1;
	t.type = "signature.expired";
	for (rounds = 0; rounds < SWEEP_ROUNDS; rounds++) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
			r = qesd_job_list_completed_before(tx, before_ms,
			    SWEEP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (r != 0)
			return r;
		for (i = 0; i < n; i++) {
			t.version = items[i].version;
			(void)transition(j, items[i].tenant_id, items[i].id, &t,
			    &applied, NULL, NULL);
		}
		qesd_job_list_free(items, n);
		items = NULL;
		if (n < SWEEP_BATCH)
			break;
	}
	return 0;
}

int
qesd_jobs_sweep(qesd_jobs *j)
{
	uint64_t c = 0;
	int64_t now;
	int r, r2 = 0;

	if (j == NULL)
		return QES_ERR_INVALID_ARG;
	now = qesd_now_ms(j->app);
	/* expires_at_ms < now + 1: a job is over at its expiry instant */
	r = fail_listed(j, now + 1, "timeout", 1, &c);
	if (qesd_mono_ms() >= j->next_retention_mono_ms) {
		r2 = expire_results(j, now - j->retention_ms);
		j->next_retention_mono_ms = qesd_mono_ms() + RETENTION_INTERVAL_MS;
	}
	return r != 0 ? r : r2;
}

static void *
sweeper_main(void *arg)
{
	qesd_jobs *j = arg;
	struct timespec ts;
	int r;

	pthread_mutex_lock(&j->sweep_mu);
	while (!j->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += SWEEP_INTERVAL_MS / 1000;
		pthread_cond_timedwait(&j->sweep_cv, &j->sweep_mu, &ts);
		if (j->stop)
			break;
		pthread_mutex_unlock(&j->sweep_mu);
		if ((r = qesd_jobs_sweep(j)) != 0)
			qesd_log(r == QES_ERR_BUSY ? QESD_LOG_WARN : QESD_LOG_ERROR,
			    "the job sweeper could not run; it tries again in a second",
			    QLS("error", qes_strerror(r)));
		pthread_mutex_lock(&j->sweep_mu);
	}
	pthread_mutex_unlock(&j->sweep_mu);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* long-poll waiters */

static unsigned
bucket_of(const char *job_id)
{
	uint32_t h = 2166136261u;	/* FNV-1a; ids are random already */

	for (; *job_id != '\0'; job_id++)
		h = (h ^ (uint8_t)*job_id) * 16777619u;
	return h % WAIT_BUCKETS;
}

qesd_jobs_waiter *
qesd_jobs_wait_begin(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	qesd_jobs_waiter *w;

	if (j == NULL || tenant_id == NULL || job_id == NULL ||
	    strlen(tenant_id) >= QESD_ID_SIZE || strlen(job_id) >= QESD_ID_SIZE ||
	    (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->jobs = j;
	memcpy(w->tenant_id, tenant_id, strlen(tenant_id) + 1);
	memcpy(w->job_id, job_id, strlen(job_id) + 1);
	w->bucket = bucket_of(job_id);
	return w;
}

void
qesd_jobs_wait_arm(qesd_jobs_waiter *w, qesd_server *srv, uint64_t token)
{
	qesd_jobs *j;

	if (w == NULL)
		return;
	j = w->jobs;
	pthread_mutex_lock(&j->wait_mu);
	w->srv = srv;
	w->token = token;
	w->prev = NULL;
	w->next = j->waiters[w->bucket];
	if (w->next != NULL)
		w->next->prev = w;
	j->waiters[w->bucket] = w;
	w->linked = 1;
	pthread_mutex_unlock(&j->wait_mu);
}

/* Caller holds wait_mu. */
static void
unlink_locked(qesd_jobs *j, qesd_jobs_waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		j->waiters[w->bucket] = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = 0;
}

void
qesd_jobs_wait_cancel(qesd_jobs_waiter *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->jobs->wait_mu);
	unlink_locked(w->jobs, w);
	pthread_mutex_unlock(&w->jobs->wait_mu);
	free(w);
}

void
qesd_jobs_changed(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	struct wake {
		qesd_server *srv;
		uint64_t token;
	} *wakes = NULL;
	qesd_jobs_waiter *w, *next;
	size_t n = 0, cap = 0, i;
	unsigned b;

	if (j == NULL || tenant_id == NULL || job_id == NULL)
		return;
	b = bucket_of(job_id);
	pthread_mutex_lock(&j->wait_mu);
	for (w = j->waiters[b]; w != NULL; w = w->next)
		if (strcmp(w->job_id, job_id) == 0 &&
		    strcmp(w->tenant_id, tenant_id) == 0)
			cap++;
	if (cap > 0 && (wakes = calloc(cap, sizeof(*wakes))) != NULL)
		for (w = j->waiters[b]; w != NULL; w = next) {
			next = w->next;
			if (strcmp(w->job_id, job_id) != 0 ||
			    strcmp(w->tenant_id, tenant_id) != 0)
				continue;
			wakes[n].srv = w->srv;
			wakes[n].token = w->token;
			n++;
			unlink_locked(j, w);	/* its resume frees it */
		}
	pthread_mutex_unlock(&j->wait_mu);
	/* outside the lock: a wake queues the resume, it never runs it here;
	 * on allocation failure the waiters resume at their deadline */
	for (i = 0; i < n; i++)
		if (wakes[i].srv != NULL)
			(void)qesd_deferred_wake(wakes[i].srv, wakes[i].token);
	free(wakes);
}

void
qesd_jobs_resume(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg)
{
	qesd_jobs_waiter *w = arg;
	qesd_jobs *j;
	qesd_job job;
	json_t *body;
	int r;

	(void)reason;
	if (w == NULL)
		return;
	j = w->jobs;
	pthread_mutex_lock(&j->wait_mu);
	unlink_locked(j, w);
	pthread_mutex_unlock(&j->wait_mu);
	if (resp == NULL || req == NULL) {
		free(w);
		return;
	}
	/* woken, at the deadline or draining: the job as it is now */
	r = qesd_jobs_get(j, w->tenant_id, w->job_id, &job);
	free(w);
	if (r == QES_ERR_NOT_FOUND) {
		qesd_problem(resp, req, 404, "not_found", "Not found",
		    "no such signature job");
		return;
	}
	if (r != 0 || (body = qesd_job_json(&job)) == NULL) {
		qesd_job_clear(&job);
		qesd_problem(resp, req, 503, "store_unavailable",
		    "Service unavailable", "the job cannot be read right now; retry shortly");
		(void)qesd_response_header(resp, "Retry-After", "1");
		return;
	}
	qesd_job_clear(&job);
	qesd_response_json(resp, 200, body);
}
