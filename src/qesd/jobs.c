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
 * The agent's sign_status (docs/protocol.md 5.12) says when the job's
 * dialog opened (dispatched -> awaiting_user, a compare-and-set like the
 * others) and when the signer consented (signature.consented on record,
 * the state unchanged). Both are optional: an agent that predates them
 * still has its jobs go from dispatched straight to signed.
 *
 * Long-poll waiters are kept in a small hash table by job id; a change
 * wakes every waiter of the job (qesd_jobs_changed), each re-reads the job
 * in its resume function. Wakes are best effort by design: a waiter also
 * resumes at its deadline, so nothing hangs if one is missed.
 *
 * The files of the service:
 *   jobs.c         the service's lifecycle, its audit records, frames to the
 *                  device, the one transition function, cancel
 *   jobs_submit.c  submit: idempotency, the device checks, create, dispatch
 *   jobs_device.c  the device's messages (sign_status, sign_result, error)
 *                  and closed sessions
 *   jobs_sweep.c   restart recovery, the sweeper (timeouts, retention)
 *   jobs_wait.c    long-poll waiters
 *   jobs_format.c  the API's base64, the idempotency hash, the stored
 *                  request, the public JSON
 *   jobs_certs.c   parsed signer certificates, shared by the jobs
 *   jobs_ades.c    documents the gateway signs: prepare at submit, the
 *                  finisher of signed document jobs, the result's fetch
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "app.h"
#include "audit_svc.h"
#include "devices.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "log.h"
#include "store.h"
#include "store_jobs.h"

/* ------------------------------------------------------------------------- */
/* audit */

/* Details of a job record: ids, names and counts only. Takes extra. */
char *
jobs_details(const qesd_job *job, const char *reason, json_t *extra)
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
int
jobs_audit(qesd_jobs *j, qesd_tx *tx, qesd_request *req, const qesd_job *job,
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

int
jobs_commit(qesd_tx *tx, qesd_request *req)
{
	return req != NULL ? qesd_audit_commit(tx, req) : qesd_tx_commit(tx);
}
/* ------------------------------------------------------------------------- */
/* frames to the device */

int
jobs_send(qesd_jobs *j, const char *tenant_id, const char *device_id,
    const qes_buf *b)
{
	if (j->devices.send == NULL)
		return QES_ERR_NOT_FOUND;
	return j->devices.send(j->devices.ctx, tenant_id, device_id,
	    qes_buf_data(b), qes_buf_len(b));
}

/* Tell the device to close the job's dialog; best effort. */
void
jobs_send_cancel(qesd_jobs *j, const qesd_job *job, qes_proto_cancel_reason why)
{
	qes_proto_cancel c = { job->id, why };
	char id[23];
	qes_buf *b = qes_buf_new();
	int r = QES_ERR_ALLOC;

	if (b != NULL && (r = qes_proto_new_id(id)) == 0 &&
	    (r = qes_proto_build_cancel(id, &c, b)) == 0)
		r = jobs_send(j, job->tenant_id, job->device_id, b);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		qesd_log(QESD_LOG_WARN, "cancel could not be sent to the device",
		    QLS("job_id", job->id), QLS("device_id", job->device_id),
		    QLS("error", qes_strerror(r)));
	qes_buf_free(b);
}

/* ------------------------------------------------------------------------- */
/* transitions */

/*
 * Apply t to the tenant's job in one write transaction with its record,
 * retrying a lost compare-and-set. 0 with *applied 1 when the job moved, 0
 * when it was not in a state (or version, device) t applies to; out (may
 * be NULL) is the job afterwards, *prev its state before.
 */
int
jobs_transition(qesd_jobs *j, const char *tenant_id, const char *job_id,
    const struct jobs_transition *t, int *applied, qesd_job_state *prev,
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
		/* a job that ends for good takes its document and signed
		 * result (store_jobs.h) with it, in the same transaction */
		if ((t->to == QESD_JOB_FAILED || t->to == QESD_JOB_CANCELLED ||
		    t->to == QESD_JOB_EXPIRED) &&
		    (r = qesd_job_doc_purge(tx, tenant_id, job.id, NULL)) != 0)
			goto out;
		if ((details = jobs_details(&job, t->reason,
		    t->extra != NULL ? json_deep_copy(t->extra) : NULL)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = jobs_audit(j, tx, t->req, &job, t->type, t->status,
		    details)) != 0 || (r = jobs_commit(tx, t->req)) != 0)
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
int
jobs_fail(qesd_jobs *j, const char *tenant_id, const char *job_id,
    unsigned from, const char *reason, json_t *extra, int *applied,
    qesd_job_state *prev, qesd_job *out)
{
	struct jobs_transition t;

	memset(&t, 0, sizeof(t));
	t.from = from;
	t.to = QESD_JOB_FAILED;
	t.reason = reason;
	t.type = "signature.failed";
	t.extra = extra;
	return jobs_transition(j, tenant_id, job_id, &t, applied, prev, out);
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
	if (jobs_certs_init(&j->certs) != 0) {
		free(j);
		return QES_ERR_INTERNAL;
	}
	if (pthread_mutex_init(&j->wait_mu, NULL) != 0) {
		jobs_certs_destroy(&j->certs);
		free(j);
		return QES_ERR_INTERNAL;
	}
	if (pthread_mutex_init(&j->sweep_mu, NULL) != 0 ||
	    pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&j->wait_mu);
		jobs_certs_destroy(&j->certs);
		free(j);
		return QES_ERR_INTERNAL;
	}
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&j->sweep_cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&j->sweep_mu);
		pthread_mutex_destroy(&j->wait_mu);
		jobs_certs_destroy(&j->certs);
		free(j);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	if (jobs_ades_init(j) != 0) {
		pthread_cond_destroy(&j->sweep_cv);
		pthread_mutex_destroy(&j->sweep_mu);
		pthread_mutex_destroy(&j->wait_mu);
		jobs_certs_destroy(&j->certs);
		free(j);
		return QES_ERR_INVALID_ARG;
	}
	*out = j;
	return 0;
}

int
qesd_jobs_start(qesd_jobs *j)
{
	if (j == NULL || j->thread_started)
		return QES_ERR_INVALID_ARG;
	if (pthread_create(&j->thread, NULL, jobs_sweeper_main, j) != 0)
		return QES_ERR_INTERNAL;
	j->thread_started = 1;
	return jobs_ades_start(j);
}

void
qesd_jobs_free(qesd_jobs *j)
{
	if (j == NULL)
		return;
	jobs_ades_destroy(j);
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
	jobs_certs_destroy(&j->certs);
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
/* cancel */

int
qesd_jobs_cancel(qesd_jobs *j, qesd_request *req, const char *job_id,
    int *was_final, qesd_job *out)
{
	struct jobs_transition t;
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
	if ((r = jobs_transition(j, req->auth.tenant_id, job_id, &t, &applied, &prev,
	    out)) != 0)
		return r;
	if (!applied) {
		*was_final = 1;
		return 0;
	}
	if (BIT(prev) & AT_DEVICE)
		jobs_send_cancel(j, out, QES_PROTO_CANCEL_REQUESTED);
	qesd_log(QESD_LOG_INFO, "signature job cancelled",
	    QLS("request_id", req->request_id), QLS("tenant", out->tenant_id),
	    QLS("job_id", out->id), QLS("was", qesd_job_state_name(prev)));
	return 0;
}
