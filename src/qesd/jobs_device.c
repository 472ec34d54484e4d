/*
 * jobs_device.c - what the device side tells the jobs service: an agent's
 * sign_status (awaiting_user: the job's dialog is open, dispatched ->
 * awaiting_user; consented: the signer approved and the token accepted the
 * PIN, recorded as signature.consented), its sign_result (every value
 * verified against the certificate the signer was shown before the job
 * completes; errors mapped to the closed list of reasons in jobs.h), an
 * error message about a sign message, and a closed session, whose open
 * jobs fail. A status or an answer for a job that is not open any more, or
 * not the device's, is refused with an error message to the agent and
 * recorded (signature.result_ignored).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/sig.h"
#include "app.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "log.h"
#include "store.h"
#include "store_jobs.h"

/* ------------------------------------------------------------------------- */
/* the device's messages */

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
		r = jobs_send(j, tenant_id, device_id, b);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_WARN, "error message could not be sent to the device",
		    QLS("device_id", device_id), QLS("error", qes_strerror(r)));
	qes_buf_free(b);
}

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

/*
 * A device answered (sign_result) or reported (sign_status) about a job it
 * may not act on: tell it, record it. what is the message type.
 */
static void
result_ignored(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qesd_job *job, const char *ref_id, const char *what, const char *why)
{
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r;

	send_unknown_job(j, tenant_id, device_id, ref_id,
	    "no open job with this id: the request was cancelled, expired or never existed");
	qesd_log(QESD_LOG_INFO, "a late or foreign message about a job was ignored",
	    QLS("tenant", tenant_id), QLS("device_id", device_id),
	    QLS("job_id", job != NULL ? job->id : NULL), QLS("message", what),
	    QLS("why", why));
	if (job == NULL)
		return;		/* an id that names nothing: the log line is all */
	if ((details = jobs_details(job, NULL, json_pack("{s:s, s:s, s:s}", "why", why,
	    "from_device", device_id, "message", what))) == NULL)
		return;
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = jobs_audit(j, tx, NULL, job, "signature.result_ignored", 0,
	    details)) != 0 || (r = qesd_tx_commit(tx)) != 0)
		qesd_log(QESD_LOG_ERROR, "an ignored message about a job could not be recorded",
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
verify_signatures(qesd_jobs *j, const qesd_job *job,
    const qes_proto_sign_result *sr, qes_sig_scheme *scheme_out, char **result,
    int *is_document)
{
	struct jobs_request q;
	struct jobs_cert *entry = NULL;
	const qes_cert *cert;
	json_t *values = NULL, *o;
	size_t dlen, i;
	int r;

	*result = NULL;
	if ((r = jobs_request_parse(job->request, &q)) != 0)
		return r;
	*scheme_out = q.scheme;
	*is_document = q.document != NULL;
	if (sr->n_signatures != q.n) {
		r = QES_ERR_SIGNATURE_INVALID;
		goto out;
	}
	/* usually the parse made at submit (jobs_certs.c) */
	if ((r = jobs_cert_acquire(&j->certs, qes_buf_data(q.cert_der),
	    qes_buf_len(q.cert_der), &entry)) != 0)
		goto out;
	cert = jobs_cert_get(entry);
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
	jobs_cert_release(&j->certs, entry);
	jobs_request_free(&q);
	return r;
}

static void
on_sign_result(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_proto_msg *m)
{
	const qes_proto_sign_result *sr = &m->u.sign_result;
	struct jobs_transition t;
	qesd_job job;
	qesd_tx *tx = NULL;
	qes_sig_scheme scheme = 0;
	json_t *extra = NULL;
	char *result = NULL;
	const char *reason = NULL;
	int r, applied = 0, v, is_document = 0;

	memset(&job, 0, sizeof(job));
	memset(&t, 0, sizeof(t));
	/* under the writer lock: a dispatch still committing is seen done */
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) == 0)
		r = qesd_job_get(tx, tenant_id, sr->job_id, &job);
	qesd_tx_end(tx);
	if (r == QES_ERR_NOT_FOUND) {
		result_ignored(j, tenant_id, device_id, NULL, m->id, "sign_result",
		    "unknown_job");
		goto out;
	}
	if (r != 0) {
		qesd_log(QESD_LOG_ERROR, "a sign_result could not be read against its job; "
		    "the job times out", QLS("tenant", tenant_id),
		    QLS("job_id", sr->job_id), QLS("error", qes_strerror(r)));
		goto out;
	}
	if (strcmp(job.device_id, device_id) != 0) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_result",
		    "foreign_device");
		goto out;
	}
	if (!(BIT(job.state) & AT_DEVICE)) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_result",
		    qesd_job_state_name(job.state));
		goto out;
	}

	t.from = AT_DEVICE;
	t.version = job.version;
	t.device_id = device_id;
	if (sr->status == QES_PROTO_STATUS_OK) {
		v = verify_signatures(j, &job, sr, &scheme, &result,
		    &is_document);
		if (v == QES_ERR_ALLOC)
			goto out;	/* the job stays open: a retry or its timeout */
		if (v == 0) {
			/* a document job is the finisher's to complete */
			t.to = is_document ? QESD_JOB_SIGNED : QESD_JOB_COMPLETED;
			t.result = result;
			t.type = is_document ? "signature.signed" :
			    "signature.completed";
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
	if ((r = jobs_transition(j, tenant_id, job.id, &t, &applied, NULL, NULL)) != 0)
		goto out;
	if (!applied) {
		/* cancelled, timed out or disconnected while we verified */
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_result",
		    "job_moved_on");
		goto out;
	}
	if (reason == NULL && is_document)
		jobs_ades_kick(j, tenant_id, job.id);
	qesd_log(QESD_LOG_INFO, reason == NULL ? (is_document ?
	    "signature job signed: the document is being finished" :
	    "signature job completed") : "signature job failed", QLS("tenant", tenant_id),
	    QLS("job_id", job.id), QLS("device_id", device_id),
	    QLS("reason", reason), QLS("scheme", reason == NULL ?
	    qes_sig_scheme_name(scheme) : NULL),
	    QLS("detail", sr->status == QES_PROTO_STATUS_ERROR ? sr->detail : NULL));
 out:
	json_decref(extra);
	free(result);
	qesd_job_clear(&job);
}

/* Tell the device a message made no sense now (the session goes on). */
static void
send_unexpected(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const char *ref_id, const char *message)
{
	qes_proto_error e = { "unexpected_message", message, ref_id };
	char id[23];
	qes_buf *b = qes_buf_new();
	int r = QES_ERR_ALLOC;

	if (b != NULL && (r = qes_proto_new_id(id)) == 0 &&
	    (r = qes_proto_build_error(id, &e, b)) == 0)
		r = jobs_send(j, tenant_id, device_id, b);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_WARN, "error message could not be sent to the device",
		    QLS("device_id", device_id), QLS("error", qes_strerror(r)));
	qes_buf_free(b);
}

/*
 * The signer consented: one record in the job's audit trail, with the
 * device (jobs_audit), in a write transaction that re-reads the job, so a
 * job that ended meanwhile gets no consent on record. The state stays: the
 * job becomes signed when the values come. 0 with *recorded, or a store
 * error.
 */
static int
record_consent(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const char *job_id, int *recorded, qesd_job *seen)
{
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r;

	*recorded = 0;
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_job_get(tx, tenant_id, job_id, seen)) != 0)
		goto out;
	if (!(BIT(seen->state) & AT_DEVICE) || strcmp(seen->device_id, device_id) != 0)
		goto out;
	if ((details = jobs_details(seen, NULL, NULL)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = jobs_audit(j, tx, NULL, seen, "signature.consented", 0, details)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto out;
	*recorded = 1;
 out:
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_ERROR, "the signer's consent could not be recorded",
		    QLS("tenant", tenant_id), QLS("job_id", job_id),
		    QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	free(details);
	return r;
}

/*
 * sign_status: the job's dialog is open (dispatched -> awaiting_user, by
 * compare-and-set, waking long-pollers), or the signer consented (an audit
 * record). A status for a job that is not open, or not the device's, is
 * handled like a late sign_result; one the state machine does not allow
 * (awaiting_user twice, consent before the job was sent) is answered with
 * unexpected_message and changes nothing.
 */
static void
on_sign_status(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_proto_msg *m)
{
	const qes_proto_sign_status *st = &m->u.sign_status;
	struct jobs_transition t;
	qesd_job job;
	qesd_tx *tx = NULL;
	int r, applied = 0;

	memset(&job, 0, sizeof(job));
	/* under the writer lock: a dispatch still committing is seen done */
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) == 0)
		r = qesd_job_get(tx, tenant_id, st->job_id, &job);
	qesd_tx_end(tx);
	if (r == QES_ERR_NOT_FOUND) {
		result_ignored(j, tenant_id, device_id, NULL, m->id, "sign_status",
		    "unknown_job");
		goto out;
	}
	if (r != 0) {
		qesd_log(QESD_LOG_ERROR, "a sign_status could not be read against its job",
		    QLS("tenant", tenant_id), QLS("job_id", st->job_id),
		    QLS("error", qes_strerror(r)));
		goto out;
	}
	if (strcmp(job.device_id, device_id) != 0) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_status",
		    "foreign_device");
		goto out;
	}
	if (!(BIT(job.state) & (AT_DEVICE | BIT(QESD_JOB_CREATED)))) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_status",
		    qesd_job_state_name(job.state));
		goto out;
	}
	if (st->state == QES_PROTO_SIGN_AWAITING_USER) {
		if (job.state != QESD_JOB_DISPATCHED) {
			send_unexpected(j, tenant_id, device_id, m->id,
			    "awaiting_user: the job is not waiting for its dialog");
			qesd_log(QESD_LOG_WARN, "a sign_status the job's state does not "
			    "allow was refused", QLS("tenant", tenant_id),
			    QLS("job_id", job.id), QLS("device_id", device_id),
			    QLS("status", "awaiting_user"),
			    QLS("state", qesd_job_state_name(job.state)));
			goto out;
		}
		memset(&t, 0, sizeof(t));
		t.from = BIT(QESD_JOB_DISPATCHED);
		t.to = QESD_JOB_AWAITING_USER;
		t.version = job.version;
		t.device_id = device_id;
		t.type = "signature.awaiting_user";
		if ((r = jobs_transition(j, tenant_id, job.id, &t, &applied, NULL,
		    NULL)) != 0)
			goto out;
		if (!applied) {
			/* cancelled, timed out or disconnected meanwhile */
			result_ignored(j, tenant_id, device_id, &job, m->id,
			    "sign_status", "job_moved_on");
			goto out;
		}
		qesd_log(QESD_LOG_INFO, "signature job awaiting the signer",
		    QLS("tenant", tenant_id), QLS("job_id", job.id),
		    QLS("device_id", device_id));
		goto out;
	}
	/*
	 * consented: the job is awaiting_user by now; a dispatched one (its
	 * awaiting_user lost to an agent's allocation failure) still gets the
	 * signer's consent on record, the state is the next sign_result's to move
	 */
	if (job.state == QESD_JOB_CREATED) {
		send_unexpected(j, tenant_id, device_id, m->id,
		    "consented: the job was not sent yet");
		goto out;
	}
	qesd_job_clear(&job);
	if ((r = record_consent(j, tenant_id, device_id, st->job_id, &applied,
	    &job)) != 0)
		goto out;
	if (!applied) {
		result_ignored(j, tenant_id, device_id, &job, m->id, "sign_status",
		    "job_moved_on");
		goto out;
	}
	qesd_log(QESD_LOG_INFO, "the signer consented; the token signs",
	    QLS("tenant", tenant_id), QLS("job_id", job.id),
	    QLS("device_id", device_id));
 out:
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
	struct jobs_transition t;
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
	if (jobs_transition(j, tenant_id, e->ref_id, &t, &applied, NULL, NULL) == 0 &&
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
	else if (msg->type == QES_PROTO_SIGN_STATUS)
		on_sign_status(j, tenant_id, device_id, msg);
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
		/* a signed document job needs its device no more: the
		 * finisher (jobs_ades.c) ends it */
		for (i = 0; i < n; i++)
			if (jobs_fail(j, tenant_id, items[i].id,
			    LIVE_STATES & ~BIT(QESD_JOB_SIGNED), why,
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
