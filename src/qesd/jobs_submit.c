/*
 * jobs_submit.c - POST /v1/signatures inside the jobs service: a replayed
 * Idempotency-Key answers with its job; otherwise the credential, its
 * device's revocation and liveness and the key's schemes are checked, the
 * job is created with its record (committed before anything is sent), and
 * dispatched in one transaction with the queued sign frame (jobs.c, the
 * header comment, says why in this order).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/sig.h"
#include "app.h"
#include "audit_svc.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "log.h"
#include "store.h"
#include "store_jobs.h"

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

/* The record's summary: the digests, and a document's size and form
 * (never its content or name). */
static json_t *
request_summary(const qesd_sign_request *sr)
{
	json_t *o = digests_summary(sr);
	const qesd_sign_document *d = sr->document;

	if (o != NULL && d != NULL && json_object_update_new(o, json_pack(
	    "{s:I, s:s, s:s}", "document_bytes", (json_int_t)d->len,
	    "format", qes_ades_format_name(d->format),
	    "level", qes_ades_level_name(d->level))) != 0) {
		json_decref(o);
		o = NULL;
	}
	return o;
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
	sent = jobs_send(j, job->tenant_id, job->device_id, frame);
	if (sent == 0) {
		snprintf(job->session_id, sizeof(job->session_id), "%s", session_id);
		if ((r = qesd_job_update(tx, job, QESD_JOB_DISPATCHED, NULL,
		    qesd_now_ms(j->app))) != 0)
			goto out;
		details = jobs_details(job, NULL, json_pack("{s:s}", "session_id",
		    session_id));
	} else {
		qesd_log(QESD_LOG_INFO, "job could not be sent: the device went offline",
		    QLS("request_id", req->request_id), QLS("job_id", job->id),
		    QLS("device_id", job->device_id), QLS("error", qes_strerror(sent)));
		if ((r = qesd_job_update(tx, job, QESD_JOB_FAILED, "device_offline",
		    qesd_now_ms(j->app))) != 0)
			goto out;
		/* a document job's upload goes with it (store_jobs.h) */
		if ((r = qesd_job_doc_purge(tx, job->tenant_id, job->id, NULL)) != 0)
			goto out;
		details = jobs_details(job, "device_offline", NULL);
	}
	if (details == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = jobs_audit(j, tx, req, job, sent == 0 ? "signature.dispatched" :
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
			jobs_send_cancel(j, job, QES_PROTO_CANCEL_EXPIRED);
	}
	qesd_tx_end(tx);
	free(details);
	return r;
}

int
qesd_jobs_submit(qesd_jobs *j, qesd_request *req, const qesd_sign_request *sr,
    qesd_submit_outcome *outcome, qesd_job *out)
{
	char detail[8];

	return qesd_jobs_submit_detail(j, req, sr, outcome, out, detail,
	    sizeof(detail));
}

/*
 * A document request: the job's id and creation time are chosen now,
 * because the digest to sign depends on them (id_seed, signing_time), and
 * the document is prepared before any transaction (it may take a while
 * for a large PDF). The local request sr2 then carries the one digest.
 */
static int
prepare_document(qesd_jobs *j, const qesd_sign_request *sr,
    const qes_cert *signer, qes_sig_scheme scheme, qesd_job *job,
    qes_buf *digest, qesd_sign_request *sr2, qesd_submit_outcome *outcome,
    char *detail, size_t detail_len)
{
	qes_md md = sr->md;
	int r;

	*sr2 = *sr;
	if ((r = qesd_id_new("job", job->id)) != 0)
		return r;
	job->created_at_ms = qesd_now_ms(j->app);
	if ((r = jobs_ades_prepare(j, sr->document, signer, sr->md, scheme,
	    job->created_at_ms / 1000, job->id, digest, &md, outcome, detail,
	    detail_len)) != 0 || *outcome != 0)
		return r;
	sr2->md = md;
	sr2->digests = qes_buf_data(digest);
	sr2->n_digests = 1;
	return 0;
}

int
qesd_jobs_submit_detail(qesd_jobs *j, qesd_request *req,
    const qesd_sign_request *sr_in, qesd_submit_outcome *outcome,
    qesd_job *out, char *detail, size_t detail_len)
{
	uint8_t hash[QESD_JOB_HASH_LEN];
	qesd_sign_request sr_doc, *sr = &sr_doc;
	qes_buf *doc_digest = NULL;
	int64_t created_ms = 0;
	char job_id[QESD_ID_SIZE] = "";
	char session_id[QESD_ID_SIZE] = "";
	const char *tenant_id;
	const char *application = NULL;
	qesd_jobs_credential cred;
	qesd_tenant tenant;
	qesd_api_key key;
	qesd_job job;
	struct jobs_cert *cert = NULL;
	qes_sig_scheme scheme;
	qesd_tx *tx = NULL;
	qes_buf *frame = NULL;
	char *details = NULL;
	int64_t now;
	int r, found = 0, attempt;

	if (j == NULL || req == NULL || sr_in == NULL || outcome == NULL ||
	    out == NULL || !req->auth.authenticated || detail == NULL ||
	    detail_len == 0)
		return QES_ERR_INVALID_ARG;
	sr_doc = *sr_in;
	*outcome = 0;
	detail[0] = '\0';
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
	if ((r = jobs_cert_acquire(&j->certs, cred.cert_der, cred.cert_der_len,
	    &cert)) != 0) {
		qesd_log(QESD_LOG_ERROR, "a credential's certificate does not parse",
		    QLS("request_id", req->request_id),
		    QLS("credential_id", sr->credential_id), QLS("error", qes_strerror(r)));
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if (choose_scheme(jobs_cert_get(cert), sr, &scheme) != 0) {
		*outcome = QESD_SUBMIT_SCHEME_UNSUITABLE;
		goto out;
	}
	if (sr_in->document != NULL) {
		if ((*outcome = qesd_jobs_document_check(j, sr_in->document, detail,
		    detail_len)) != 0)
			goto out;
		if ((doc_digest = qes_buf_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		memset(&job, 0, sizeof(job));
		if ((r = prepare_document(j, sr_in, jobs_cert_get(cert), scheme,
		    &job, doc_digest, &sr_doc, outcome, detail, detail_len)) != 0 ||
		    *outcome != 0)
			goto out;
		snprintf(job_id, sizeof(job_id), "%s", job.id);
		created_ms = job.created_at_ms;
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
		now = created_ms != 0 ? created_ms : qesd_now_ms(j->app);
		snprintf(job.id, sizeof(job.id), "%s", job_id);
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
		if ((job.request = jobs_request_text(sr, scheme, application,
		    &cred, now / 1000)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		r = qesd_job_insert(tx, &job);
		if (r == QES_ERR_CONFLICT && sr->idempotency_key != NULL)
			continue;	/* another request took the key: look again */
		if (r != 0)
			goto out;
		/* the document, sealed, in the job's own transaction */
		if (sr->document != NULL &&
		    (r = qesd_job_doc_put(tx, j->ades.doc_key, job.tenant_id,
		    job.id, QESD_JOB_DOC_INPUT, sr->document->data,
		    sr->document->len, now)) != 0)
			goto out;
		if ((details = jobs_details(&job, NULL,
		    request_summary(sr))) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = jobs_audit(j, tx, req, &job, "signature.requested", 202,
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
		if (jobs_fail(j, tenant_id, job.id, AT_DEVICE, "device_disconnected",
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
	jobs_cert_release(&j->certs, cert);
	qes_buf_free(frame);
	qes_buf_free(doc_digest);
	free(details);
	return r;
}
