/*
 * jobs.c - signing and diagnosis off the connection's loop (see jobs.h).
 *
 * Threads. The loop thread submits, cancels and takes results; one worker
 * thread per busy token runs that token's jobs one after the other (it
 * picks the next queued job for its token before it exits), and a worker
 * runs each diagnosis. Everything shared - the open jobs, the result queue,
 * the worker list, each job's cancel state and dialog handle - is under
 * j->mu. A worker never holds the lock while it talks to a token or a
 * dialog, so cancel and new requests are never stuck behind a signer.
 *
 * A running job's dialog is reachable from the loop only between the
 * pinentry's attach(pe) and attach(NULL) calls (qes_pinentry_opts.attach),
 * and both take j->mu, so qes_pinentry_cancel() can never meet a freed
 * handle.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/err.h"
#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/report.h"
#include "qes/signer.h"

#include "jobs.h"
#include "log.h"

struct agent_snapshot {
	atomic_int refs;
	qes_p11_inventory *inv;
};

agent_snapshot *
agent_snapshot_new(qes_p11_inventory *inv)
{
	agent_snapshot *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		qes_p11_inventory_free(inv);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->inv = inv;
	return s;
}

agent_snapshot *
agent_snapshot_ref(agent_snapshot *s)
{
	if (s != NULL)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

void
agent_snapshot_unref(agent_snapshot *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	qes_p11_inventory_free(s->inv);
	free(s);
}

const qes_p11_inventory *
agent_snapshot_inv(const agent_snapshot *s)
{
	return s->inv;
}

int64_t
agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum job_state { JOB_QUEUED = 0, JOB_RUNNING = 1 };
enum job_cancel { CANCEL_NONE = 0, CANCEL_REQUESTED, CANCEL_TIMEOUT, CANCEL_SESSION };

struct job {
	struct job *next;		/* j->jobs, in arrival order */
	agent_jobs *j;
	uint64_t session;
	char id[QES_PROTO_ID_MAX + 1];
	agent_snapshot *snap;
	const qes_p11_token *t;		/* in snap */
	const qes_p11_cred *c;
	enum job_state state;
	enum job_cancel cancel;
	qes_pinentry *pe;		/* the open dialog, between attach calls */
	int shown, consented;		/* sign status reported (mu) */
	int64_t received_ms, deadline_ms;
	/* the request, copied out of the message */
	qes_sig_scheme scheme;
	qes_md md;
	uint8_t *digests;
	const uint8_t **digest_ptrs;
	size_t n_digests;
	char *requester, *title, *description;
	char vcode[QES_PROTO_VCODE_LEN + 1];
};

struct worker {
	struct worker *next;
	pthread_t th;
	int done;			/* mu: the thread is about to return */
};

struct diag {
	agent_jobs *j;
	struct worker *w;
	uint64_t session;
	char id[QES_PROTO_ID_MAX + 1];
	int64_t received_ms;
};

struct agent_jobs {
	agent_jobs_opts o;
	pthread_mutex_t mu;
	struct job *jobs;		/* open: queued and running */
	agent_result *res_head, *res_tail;
	struct worker *workers;
	int diagnosing;
	int closing;
};

void
agent_result_free(agent_result *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_sigs; i++)
		qes_buf_free(r->sigs[i]);
	free(r->sigs);
	json_decref(r->report);
	qes_p11_inventory_free(r->inv);
	free(r);
}

static void
job_free(struct job *jb)
{
	if (jb == NULL)
		return;
	agent_snapshot_unref(jb->snap);
	free(jb->digests);
	free(jb->digest_ptrs);
	free(jb->requester);
	free(jb->title);
	free(jb->description);
	free(jb);
}

/* mu held */
static void
push_result(agent_jobs *j, agent_result *r)
{
	r->next = NULL;
	if (j->res_tail != NULL)
		j->res_tail->next = r;
	else
		j->res_head = r;
	j->res_tail = r;
}

static void
wake(agent_jobs *j)
{
	if (j->o.wake != NULL)
		j->o.wake(j->o.wake_arg);
}

/* mu held */
static void
unlink_job(agent_jobs *j, struct job *jb)
{
	struct job **pp;

	for (pp = &j->jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == jb) {
			*pp = jb->next;
			jb->next = NULL;
			return;
		}
}

static int
same_token(const struct job *a, const struct job *b)
{
	return a->t->module_index == b->t->module_index &&
	    strcmp(a->t->serial, b->t->serial) == 0;
}

/* A sign result carrying only an error; NULL on allocation failure. */
static agent_result *
error_result(const struct job *jb, int err, const char *detail)
{
	agent_result *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->kind = AGENT_RESULT_SIGN;
	r->session = jb->session;
	memcpy(r->id, jb->id, sizeof(r->id));
	r->err = err;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
	r->dialog_ms = agent_now_ms() - jb->received_ms;
	return r;
}

static const char *
cancel_text(enum job_cancel c)
{
	switch (c) {
	case CANCEL_TIMEOUT:
		return "the request's time ran out";
	case CANCEL_SESSION:
		return "the connection to the server ended";
	default:
		return "the server cancelled the request";
	}
}

/* End a queued job now (mu held): its result, and it is gone. */
static void
end_queued(agent_jobs *j, struct job *jb, enum job_cancel why)
{
	agent_result *r;

	unlink_job(j, jb);
	r = error_result(jb, why == CANCEL_TIMEOUT ? QES_ERR_TIMEOUT :
	    QES_ERR_CANCELLED, cancel_text(why));
	if (r != NULL)
		push_result(j, r);
	job_free(jb);
}

/* Ask a running job to stop (mu held). */
static void
stop_running(struct job *jb, enum job_cancel why)
{
	if (jb->cancel == CANCEL_NONE)
		jb->cancel = why;
	if (jb->pe != NULL)
		qes_pinentry_cancel(jb->pe);
}

/*
 * Queue a sign status for the loop (mu held); 1 when queued, so the caller
 * wakes the loop once it let go of the lock. Allocation failure loses only
 * the status: the result still comes.
 */
static int
post_status(agent_jobs *j, const struct job *jb, qes_proto_sign_state st)
{
	agent_result *r;

	if (jb->cancel != CANCEL_NONE || (r = calloc(1, sizeof(*r))) == NULL)
		return 0;
	r->kind = AGENT_RESULT_SIGN_STATUS;
	r->session = jb->session;
	memcpy(r->id, jb->id, sizeof(r->id));
	r->sign_state = st;
	r->dialog_ms = agent_now_ms() - jb->received_ms;
	push_result(j, r);
	return 1;
}

/* The dialog opened (pe) or is about to go (NULL); on the job's thread. */
static void
job_attach(void *arg, qes_pinentry *pe)
{
	struct job *jb = arg;
	int posted = 0;

	pthread_mutex_lock(&jb->j->mu);
	jb->pe = pe;
	if (pe != NULL && jb->cancel != CANCEL_NONE)
		qes_pinentry_cancel(pe);
	if (pe != NULL && !jb->shown) {
		jb->shown = 1;
		posted = post_status(jb->j, jb, QES_PROTO_SIGN_AWAITING_USER);
	}
	pthread_mutex_unlock(&jb->j->mu);
	if (posted)
		wake(jb->j);
}

/* qes_sign_local's consented hook: approved, logged in, about to sign. */
static void
job_consented(void *arg)
{
	struct job *jb = arg;
	int posted = 0;

	pthread_mutex_lock(&jb->j->mu);
	if (!jb->consented) {
		jb->consented = 1;
		posted = post_status(jb->j, jb, QES_PROTO_SIGN_CONSENTED);
	}
	pthread_mutex_unlock(&jb->j->mu);
	if (posted)
		wake(jb->j);
}

/* Run one job's signing, without the lock. */
static agent_result *
run_sign(agent_jobs *j, struct job *jb, int *flags_changed)
{
	qes_sign_request req;
	qes_sign_result res;
	qes_pinentry_opts pe_opts = { 0 };
	agent_result *r;
	enum job_cancel cancel;
	int64_t left_ms;
	int err;

	*flags_changed = 0;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->kind = AGENT_RESULT_SIGN;
	r->session = jb->session;
	memcpy(r->id, jb->id, sizeof(r->id));

	memset(&req, 0, sizeof(req));
	req.requester = jb->requester;
	req.title = jb->title;
	req.description = jb->description;
	req.verification_code = jb->vcode;
	req.scheme = jb->scheme;
	req.md = jb->md;
	req.digests = jb->digest_ptrs;
	req.n_digests = jb->n_digests;
	req.pin_source = j->o.pin_source;
	req.consented = job_consented;
	req.consented_arg = jb;
	pe_opts.program = j->o.pinentry;
	pe_opts.attach = job_attach;
	pe_opts.attach_arg = jb;
	/* the dialog's own timeout too, in case our tick is late */
	left_ms = jb->deadline_ms - agent_now_ms();
	pe_opts.timeout_s = left_ms < 1000 ? 1 : (int)(left_ms / 1000);

	agent_log(AGENT_LOG_INFO, "job_started", "job", jb->id, "token", jb->t->serial,
	    "credential_id", jb->c->id_hex, NULL);
	agent_hotplug_enter(j->o.hotplug);
	err = qes_sign_local(j->o.p11, jb->t, jb->c, &req, &pe_opts, &res);
	agent_hotplug_leave(j->o.hotplug);

	pthread_mutex_lock(&j->mu);
	cancel = jb->cancel;
	pthread_mutex_unlock(&j->mu);
	if (err == QES_ERR_CANCELLED && cancel == CANCEL_TIMEOUT)
		err = QES_ERR_TIMEOUT;
	r->err = err;
	if (err == 0) {
		r->sigs = res.sigs;
		r->n_sigs = res.n_sigs;
		res.sigs = NULL;
		res.n_sigs = 0;
	} else {
		snprintf(r->detail, sizeof(r->detail), "%s",
		    err == QES_ERR_CANCELLED && cancel != CANCEL_NONE ?
		    cancel_text(cancel) : res.errmsg);
	}
	r->pin_flags = res.token_flags & QES_PROTO_PIN_FLAGS;
	r->has_pin_flags = err == QES_ERR_PIN_INCORRECT || err == QES_ERR_PIN_LOCKED ||
	    (err != 0 && r->pin_flags != 0);
	*flags_changed = (res.token_flags & QES_PROTO_PIN_FLAGS) !=
	    (jb->t->flags & QES_PROTO_PIN_FLAGS) && res.token_flags != 0;
	r->dialog_ms = agent_now_ms() - jb->received_ms;
	qes_sign_result_clear(&res);
	return r;
}

/* A fresh inventory after a job moved a token's PIN counters. */
static void
rescan(agent_jobs *j)
{
	qes_p11_inventory *inv = NULL;
	agent_result *r;
	int err;

	agent_hotplug_enter(j->o.hotplug);
	err = qes_p11_scan(j->o.p11, &inv);
	agent_hotplug_leave(j->o.hotplug);
	if (err != 0) {
		agent_log(AGENT_LOG_WARN, "rescan_failed", "error", qes_errname(err), NULL);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		qes_p11_inventory_free(inv);
		return;
	}
	r->kind = AGENT_RESULT_INVENTORY;
	r->inv = inv;
	pthread_mutex_lock(&j->mu);
	push_result(j, r);
	pthread_mutex_unlock(&j->mu);
	wake(j);
}

struct sign_worker_arg {
	agent_jobs *j;
	struct worker *w;
	struct job *first;
};

/* One token's jobs, one after another, until none is queued. */
static void *
sign_worker(void *arg)
{
	struct sign_worker_arg *a = arg;
	agent_jobs *j = a->j;
	struct worker *w = a->w;
	struct job *jb = a->first, *next;
	agent_result *r;
	int changed;

	free(a);
	for (;;) {
		pthread_mutex_lock(&j->mu);
		if (jb->cancel != CANCEL_NONE) {
			/* cancelled between being picked and starting */
			r = error_result(jb, jb->cancel == CANCEL_TIMEOUT ?
			    QES_ERR_TIMEOUT : QES_ERR_CANCELLED, cancel_text(jb->cancel));
			changed = 0;
			pthread_mutex_unlock(&j->mu);
		} else {
			pthread_mutex_unlock(&j->mu);
			r = run_sign(j, jb, &changed);
		}
		if (changed)
			rescan(j);
		pthread_mutex_lock(&j->mu);
		unlink_job(j, jb);
		if (r != NULL)
			push_result(j, r);
		else
			agent_log(AGENT_LOG_ERROR, "job_result_lost", "job", jb->id,
			    "error", "out of memory", NULL);
		for (next = j->jobs; next != NULL; next = next->next)
			if (next->state == JOB_QUEUED && same_token(next, jb))
				break;
		job_free(jb);
		if (next != NULL) {
			next->state = JOB_RUNNING;
			jb = next;
			pthread_mutex_unlock(&j->mu);
			wake(j);
			continue;
		}
		w->done = 1;
		pthread_mutex_unlock(&j->mu);
		wake(j);
		return NULL;
	}
}

static void *
diag_worker(void *arg)
{
	struct diag *d = arg;
	agent_jobs *j = d->j;
	qes_p11_inventory *inv = NULL;
	agent_result *r;
	int64_t t0;
	int err;

	if ((r = calloc(1, sizeof(*r))) != NULL) {
		r->kind = AGENT_RESULT_DIAGNOSE;
		r->session = d->session;
		memcpy(r->id, d->id, sizeof(r->id));
		agent_hotplug_enter(j->o.hotplug);
		t0 = agent_now_ms();
		err = qes_p11_scan(j->o.p11, &inv);
		r->timings.scan_ms = agent_now_ms() - t0;
		if (err == 0)
			r->report = qes_report_diagnose(j->o.p11, inv);
		agent_hotplug_leave(j->o.hotplug);
		qes_p11_inventory_free(inv);
		r->err = err != 0 ? err : r->report == NULL ? QES_ERR_ALLOC : 0;
		r->timings.total_ms = agent_now_ms() - d->received_ms;
	}
	pthread_mutex_lock(&j->mu);
	if (r != NULL)
		push_result(j, r);
	j->diagnosing = 0;
	d->w->done = 1;
	pthread_mutex_unlock(&j->mu);
	free(d);
	wake(j);
	return NULL;
}

/* Start a thread; the worker record is linked before it runs (mu held). */
static int
spawn(agent_jobs *j, void *(*fn)(void *), void *arg, struct worker *w)
{
	int e;

	if ((e = pthread_create(&w->th, NULL, fn, arg)) != 0) {
		agent_log(AGENT_LOG_ERROR, "thread_failed", "error", strerror(e), NULL);
		return QES_ERR_ALLOC;
	}
	w->next = j->workers;
	j->workers = w;
	return 0;
}

int
agent_jobs_new(const agent_jobs_opts *o, agent_jobs **out)
{
	agent_jobs *j;

	*out = NULL;
	if (o == NULL || o->p11 == NULL)
		return QES_ERR_INVALID_ARG;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return QES_ERR_ALLOC;
	j->o = *o;
	pthread_mutex_init(&j->mu, NULL);
	*out = j;
	return 0;
}

/* Join the workers that are done (or all of them). */
static void
reap_workers(agent_jobs *j, int all)
{
	struct worker **pp, *w;

	for (;;) {
		pthread_mutex_lock(&j->mu);
		for (pp = &j->workers; *pp != NULL && !(*pp)->done && !all;
		    pp = &(*pp)->next)
			;
		if ((w = *pp) != NULL)
			*pp = w->next;
		pthread_mutex_unlock(&j->mu);
		if (w == NULL)
			return;
		pthread_join(w->th, NULL);
		free(w);
	}
}

void
agent_jobs_set_hotplug(agent_jobs *j, agent_hotplug *h)
{
	pthread_mutex_lock(&j->mu);
	j->o.hotplug = h;
	pthread_mutex_unlock(&j->mu);
}

void
agent_jobs_stop(agent_jobs *j)
{
	struct job *jb, *next;

	pthread_mutex_lock(&j->mu);
	j->closing = 1;
	for (jb = j->jobs; jb != NULL; jb = next) {
		next = jb->next;
		if (jb->state == JOB_QUEUED)
			end_queued(j, jb, CANCEL_SESSION);
		else
			stop_running(jb, CANCEL_SESSION);
	}
	pthread_mutex_unlock(&j->mu);
	reap_workers(j, 1);
}

void
agent_jobs_free(agent_jobs *j)
{
	agent_result *r;

	if (j == NULL)
		return;
	agent_jobs_stop(j);
	while ((r = agent_jobs_take(j)) != NULL)
		agent_result_free(r);
	pthread_mutex_destroy(&j->mu);
	free(j);
}

/* The credential in snap; detail says what is missing. */
static int
find_cred(const qes_p11_inventory *inv, const char *credential,
    const qes_p11_token **t_out, const qes_p11_cred **c_out, char *detail,
    size_t detail_len)
{
	char serial[QES_PROTO_SERIAL_MAX + 1];
	uint8_t id[QES_PROTO_KEY_ID_MAX];
	size_t id_len = 0, i, k;
	int token_seen = 0;

	if (qes_proto_credential_split(credential, serial, id, &id_len) != 0) {
		snprintf(detail, detail_len, "invalid credential");
		return QES_ERR_KEY_NOT_FOUND;
	}
	for (i = 0; inv != NULL && i < inv->n_tokens; i++) {
		const qes_p11_token *t = &inv->tokens[i];

		if (!t->present || strcmp(t->serial, serial) != 0)
			continue;
		token_seen = 1;
		for (k = 0; k < t->n_creds; k++) {
			const qes_p11_cred *c = &t->creds[k];

			if (c->id_len == id_len && memcmp(c->id, id, id_len) == 0 &&
			    c->cert != NULL) {
				*t_out = t;
				*c_out = c;
				return 0;
			}
		}
	}
	if (!token_seen) {
		snprintf(detail, detail_len, "no token with serial %s is present", serial);
		return QES_ERR_TOKEN_NOT_PRESENT;
	}
	snprintf(detail, detail_len, "token %s has no certificate with that id", serial);
	return QES_ERR_KEY_NOT_FOUND;
}

static char *
dup_str(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* The job for req, not yet linked; NULL on allocation failure. */
static struct job *
job_new(agent_jobs *j, uint64_t session, const qes_proto_sign *req, int64_t now_ms)
{
	struct job *jb;
	size_t dlen = qes_md_len(req->md), i, n;

	if ((jb = calloc(1, sizeof(*jb))) == NULL)
		return NULL;
	jb->j = j;
	jb->session = session;
	snprintf(jb->id, sizeof(jb->id), "%s", req->job_id);
	jb->scheme = req->scheme;
	jb->md = req->md;
	jb->n_digests = req->n_digests;
	jb->received_ms = now_ms;
	jb->deadline_ms = now_ms + req->timeout_s * 1000;
	memcpy(jb->vcode, req->verification_code, sizeof(jb->vcode));
	n = strlen(req->requester.tenant) + strlen(req->requester.application) + 4;
	if ((jb->digests = malloc(dlen * req->n_digests)) == NULL ||
	    (jb->digest_ptrs = calloc(req->n_digests, sizeof(*jb->digest_ptrs))) == NULL ||
	    (jb->requester = malloc(n)) == NULL ||
	    (jb->title = dup_str(req->title)) == NULL ||
	    (jb->description = dup_str(req->description)) == NULL) {
		job_free(jb);
		return NULL;
	}
	memcpy(jb->digests, req->digests, dlen * req->n_digests);
	for (i = 0; i < req->n_digests; i++)
		jb->digest_ptrs[i] = jb->digests + i * dlen;
	/* the dialog reads "Acme GmbH (Contract Desk) asks you to sign:" */
	snprintf(jb->requester, n, "%s (%s)", req->requester.tenant,
	    req->requester.application);
	return jb;
}

int
agent_jobs_sign(agent_jobs *j, uint64_t session, agent_snapshot *snap,
    const qes_proto_sign *req, int64_t now_ms, char *detail, size_t detail_len)
{
	const qes_p11_token *t = NULL;
	const qes_p11_cred *c = NULL;
	struct sign_worker_arg *a = NULL;
	struct worker *w = NULL;
	struct job *jb, *o, *running = NULL, **tail;
	size_t queued = 0;
	int r;

	detail[0] = '\0';
	if ((r = find_cred(snap != NULL ? agent_snapshot_inv(snap) : NULL,
	    req->credential, &t, &c, detail, detail_len)) != 0)
		return r;
	if ((jb = job_new(j, session, req, now_ms)) == NULL)
		return QES_ERR_ALLOC;
	jb->snap = agent_snapshot_ref(snap);
	jb->t = t;
	jb->c = c;

	pthread_mutex_lock(&j->mu);
	for (o = j->jobs; o != NULL; o = o->next) {
		if (strcmp(o->id, jb->id) == 0) {
			snprintf(detail, detail_len, "job %s is already open", jb->id);
			r = QES_ERR_CONFLICT;
			goto out;
		}
		if (same_token(o, jb)) {
			if (o->state == JOB_RUNNING)
				running = o;
			else
				queued++;
		}
	}
	if (j->closing) {
		snprintf(detail, detail_len, "the agent is stopping");
		r = QES_ERR_TOKEN_BUSY;
		goto out;
	}
	if (running != NULL && queued >= AGENT_JOBS_QUEUE_MAX) {
		snprintf(detail, detail_len, "token %s has %d jobs waiting", t->serial,
		    AGENT_JOBS_QUEUE_MAX);
		r = QES_ERR_TOKEN_BUSY;
		goto out;
	}
	if (running == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL ||
		    (w = calloc(1, sizeof(*w))) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		a->j = j;
		a->w = w;
		a->first = jb;
		jb->state = JOB_RUNNING;
	}
	for (tail = &j->jobs; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = jb;
	if (running == NULL && (r = spawn(j, sign_worker, a, w)) != 0) {
		unlink_job(j, jb);
		goto out;
	}
	agent_log(AGENT_LOG_INFO, running == NULL ? "job_accepted" : "job_queued",
	    "job", jb->id, "token", t->serial, NULL);
	jb = NULL;
	a = NULL;
	w = NULL;
	r = 0;
 out:
	pthread_mutex_unlock(&j->mu);
	free(a);
	free(w);
	job_free(jb);
	return r;
}

int
agent_jobs_diagnose(agent_jobs *j, uint64_t session, const char *msg_id,
    int64_t now_ms)
{
	struct diag *d = NULL;
	struct worker *w = NULL;
	int r;

	pthread_mutex_lock(&j->mu);
	if (j->diagnosing || j->closing) {
		r = QES_ERR_BUSY;
		goto out;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL || (w = calloc(1, sizeof(*w))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	d->j = j;
	d->w = w;
	d->session = session;
	d->received_ms = now_ms;
	snprintf(d->id, sizeof(d->id), "%s", msg_id);
	if ((r = spawn(j, diag_worker, d, w)) != 0)
		goto out;
	j->diagnosing = 1;
	d = NULL;
	w = NULL;
 out:
	pthread_mutex_unlock(&j->mu);
	free(d);
	free(w);
	return r;
}

int
agent_jobs_cancel(agent_jobs *j, const char *job_id)
{
	struct job *jb;
	int r = QES_ERR_NOT_FOUND;

	pthread_mutex_lock(&j->mu);
	for (jb = j->jobs; jb != NULL; jb = jb->next)
		if (strcmp(jb->id, job_id) == 0)
			break;
	if (jb != NULL) {
		agent_log(AGENT_LOG_INFO, "job_cancel", "job", jb->id, "state",
		    jb->state == JOB_QUEUED ? "queued" : "running", NULL);
		if (jb->state == JOB_QUEUED)
			end_queued(j, jb, CANCEL_REQUESTED);
		else
			stop_running(jb, CANCEL_REQUESTED);
		r = 0;
	}
	pthread_mutex_unlock(&j->mu);
	if (r == 0)
		wake(j);
	return r;
}

void
agent_jobs_cancel_session(agent_jobs *j, uint64_t session)
{
	struct job *jb, *next;

	pthread_mutex_lock(&j->mu);
	for (jb = j->jobs; jb != NULL; jb = next) {
		next = jb->next;
		if (jb->session != session)
			continue;
		if (jb->state == JOB_QUEUED)
			end_queued(j, jb, CANCEL_SESSION);
		else
			stop_running(jb, CANCEL_SESSION);
	}
	pthread_mutex_unlock(&j->mu);
	reap_workers(j, 0);
}

void
agent_jobs_tick(agent_jobs *j, int64_t now_ms)
{
	struct job *jb, *next;

	pthread_mutex_lock(&j->mu);
	for (jb = j->jobs; jb != NULL; jb = next) {
		next = jb->next;
		if (now_ms < jb->deadline_ms)
			continue;
		if (jb->state == JOB_QUEUED) {
			agent_log(AGENT_LOG_INFO, "job_timeout", "job", jb->id,
			    "state", "queued", NULL);
			end_queued(j, jb, CANCEL_TIMEOUT);
		} else if (jb->cancel == CANCEL_NONE) {
			agent_log(AGENT_LOG_INFO, "job_timeout", "job", jb->id,
			    "state", "running", NULL);
			stop_running(jb, CANCEL_TIMEOUT);
		}
	}
	pthread_mutex_unlock(&j->mu);
	reap_workers(j, 0);
}

void
agent_jobs_post_inventory(agent_jobs *j, qes_p11_inventory *inv)
{
	agent_result *r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		qes_p11_inventory_free(inv);
		return;
	}
	r->kind = AGENT_RESULT_INVENTORY;
	r->inv = inv;
	pthread_mutex_lock(&j->mu);
	push_result(j, r);
	pthread_mutex_unlock(&j->mu);
	wake(j);
}

agent_result *
agent_jobs_take(agent_jobs *j)
{
	agent_result *r;

	pthread_mutex_lock(&j->mu);
	if ((r = j->res_head) != NULL) {
		j->res_head = r->next;
		if (j->res_head == NULL)
			j->res_tail = NULL;
		r->next = NULL;
	}
	pthread_mutex_unlock(&j->mu);
	if (r == NULL)
		reap_workers(j, 0);
	return r;
}
