/*
 * diagnostics.c - the diagnoses that wait for a desktop agent's answer
 * (see diagnostics.h).
 *
 * The waits are few (one per device, at most max_waiting) and short, so
 * they live in one list under one mutex; an answer is found by a linear
 * scan, which at the default bound of 1024 costs less than parsing the
 * message that carries it. A wait is shared by two parties once the
 * request is deferred - the handler until qesd_diag_arm() returns and the
 * resume function - and the server may run the resume (deadline, drain)
 * before the handler armed it, so the wait counts its holders and the
 * last one frees it.
 *
 * The wait stays in the list until the resume function takes it, even
 * after its answer came: a second request for the device is refused until
 * the first one has its response, which is what "one at a time" means to
 * a client.
 *
 * A remote wait (the device is on another replica, diagnostics.h) is the
 * same record without a session: the agent's messages never match it, only
 * qesd_diag_remote_result() with its ref does. A wait armed with a notify
 * function (the holder's side of a remote diagnosis) is woken through it
 * instead of the server.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "diagnostics.h"
#include "log.h"

struct qesd_diag_wait {
	struct qesd_diag_wait *next, *prev;
	qesd_diag *d;
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char session_id[QESD_ID_SIZE];
	char msg_id[QESD_DIAG_REF_SIZE];	/* the diagnose message's id */
	int64_t sent_us;		/* monotonic */
	int remote;			/* another replica runs it */
	qesd_server *srv;		/* armed */
	uint64_t token;
	void (*notify)(void *, uint64_t);	/* armed for the bus */
	void *notify_arg;
	int armed;
	int finished;			/* the resume took the outcome */
	int refs;			/* handler + resume */
	qesd_diag_result res;		/* outcome 0 while pending */
};

struct qesd_diag {
	qesd_diag_config cfg;
	pthread_mutex_t mu;
	struct qesd_diag_wait *head;	/* mu */
	size_t n;			/* mu */
};

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Copy a bounded string; 0 or QES_ERR_INVALID_ARG when it does not fit. */
static int
copy_id(char *dst, size_t size, const char *src)
{
	size_t len;

	if (src == NULL || (len = strlen(src)) == 0 || len >= size)
		return QES_ERR_INVALID_ARG;
	memcpy(dst, src, len + 1);
	return 0;
}

/* Copy a string, cut to fit (reason words and agent codes are short). */
static void
copy_cut(char *dst, size_t size, const char *src)
{
	size_t len = src != NULL ? strlen(src) : 0;

	if (len >= size)
		len = size - 1;
	if (len > 0)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Why a report is refused: static texts, so a reason that came over the
 * bus maps back to one of them (qesd_diag_invalid_text). */
static const char *const invalid_texts[] = {
	"the report is not a JSON object",
	"the report has no token list",
	"the report has no system section",
	"the agent's total time is shorter than its scan",
	"the report is larger than this gateway returns",
	"out of memory copying the report",
	"the report is larger than the bus carries",
	"the replica holding the device refused the report",
};
#define INV_NOT_OBJECT	(invalid_texts[0])
#define INV_NO_TOKENS	(invalid_texts[1])
#define INV_NO_SYSTEM	(invalid_texts[2])
#define INV_TIMES	(invalid_texts[3])
#define INV_TOO_LARGE	(invalid_texts[4])
#define INV_ALLOC	(invalid_texts[5])
#define INV_GENERIC	(invalid_texts[7])

const char *
qesd_diag_invalid_text(const char *s)
{
	size_t i;

	for (i = 0; s != NULL && i < sizeof(invalid_texts) /
	    sizeof(invalid_texts[0]); i++)
		if (strcmp(s, invalid_texts[i]) == 0)
			return invalid_texts[i];
	return INV_GENERIC;
}

qesd_diag_outcome
qesd_diag_outcome_parse(const char *word)
{
	int o;

	for (o = QESD_DIAG_OK; word != NULL && o <= QESD_DIAG_OVERLOADED; o++)
		if (strcmp(word, qesd_diag_outcome_name((qesd_diag_outcome)o)) == 0)
			return (qesd_diag_outcome)o;
	return (qesd_diag_outcome)0;
}

const char *
qesd_diag_outcome_name(qesd_diag_outcome o)
{
	switch (o) {
	case QESD_DIAG_OK:
		return "ok";
	case QESD_DIAG_BUSY:
		return "device_busy";
	case QESD_DIAG_AGENT_ERROR:
		return "agent_error";
	case QESD_DIAG_INVALID:
		return "invalid_report";
	case QESD_DIAG_SESSION_CLOSED:
		return "session_closed";
	case QESD_DIAG_TIMEOUT:
		return "timeout";
	case QESD_DIAG_IN_PROGRESS:
		return "in_progress";
	case QESD_DIAG_OFFLINE:
		return "device_offline";
	case QESD_DIAG_OVERLOADED:
		return "overloaded";
	}
	return "unknown";
}

int
qesd_diag_new(const qesd_diag_config *cfg, qesd_diag **out)
{
	qesd_diag *d;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (cfg == NULL || cfg->send == NULL)
		return QES_ERR_INVALID_ARG;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return QES_ERR_ALLOC;
	d->cfg = *cfg;
	if (d->cfg.max_waiting == 0)
		d->cfg.max_waiting = QESD_DIAG_MAX_WAITING;
	if (d->cfg.max_report_bytes == 0)
		d->cfg.max_report_bytes = QES_PROTO_MAX_BYTES;
	if (d->cfg.wake == NULL)
		d->cfg.wake = qesd_deferred_wake;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		free(d);
		return QES_ERR_INTERNAL;
	}
	*out = d;
	return 0;
}

void
qesd_diag_free(qesd_diag *d)
{
	struct qesd_diag_wait *w, *next;

	if (d == NULL)
		return;
	/* the server drained, so every resume ran; anything left is a bug,
	 * freed rather than leaked */
	for (w = d->head; w != NULL; w = next) {
		next = w->next;
		qesd_diag_result_clear(&w->res);
		free(w);
	}
	pthread_mutex_destroy(&d->mu);
	free(d);
}

size_t
qesd_diag_waiting(qesd_diag *d)
{
	size_t n;

	if (d == NULL)
		return 0;
	pthread_mutex_lock(&d->mu);
	n = d->n;
	pthread_mutex_unlock(&d->mu);
	return n;
}

/* Wake whoever waits for w's outcome: the bus's notify function or the
 * deferred request. Outside mu. */
static void
fire(qesd_diag *d, qesd_server *srv, uint64_t token,
    void (*notify)(void *, uint64_t), void *notify_arg)
{
	if (notify != NULL)
		notify(notify_arg, token);
	else
		(void)d->cfg.wake(srv, token);
}

/* Caller holds mu. */
static void
unlink_locked(qesd_diag *d, struct qesd_diag_wait *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else if (d->head == w)
		d->head = w->next;
	else
		return;		/* not linked */
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	d->n--;
}

/* Drop one holder; caller holds mu. 1 when w was freed. */
static int
release_locked(struct qesd_diag_wait *w)
{
	if (--w->refs > 0)
		return 0;
	qesd_diag_result_clear(&w->res);
	free(w);
	return 1;
}

/*
 * Links w at the head of d's waiters and stamps its send time, unless a
 * diagnosis of the same device is already waiting (QES_ERR_CONFLICT) or
 * max_waiting are (QES_ERR_LIMIT). Takes d->mu itself.
 */
static int
link_waiter(qesd_diag *d, struct qesd_diag_wait *w)
{
	struct qesd_diag_wait *o;
	int r;

	pthread_mutex_lock(&d->mu);
	for (o = d->head; o != NULL; o = o->next)
		if (strcmp(o->device_id, w->device_id) == 0 &&
		    strcmp(o->tenant_id, w->tenant_id) == 0)
			break;
	r = o != NULL ? QES_ERR_CONFLICT :
	    d->n >= d->cfg.max_waiting ? QES_ERR_LIMIT : 0;
	if (r == 0) {
		w->next = d->head;
		if (w->next != NULL)
			w->next->prev = w;
		d->head = w;
		d->n++;
		w->sent_us = mono_us();
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

int
qesd_diag_start(qesd_diag *d, const char *tenant_id, const char *device_id,
    const char *session_id, qesd_diag_wait **out)
{
	struct qesd_diag_wait *w = NULL;
	qes_buf *frame = NULL;
	int r;

	if (out != NULL)
		*out = NULL;
	if (d == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return QES_ERR_ALLOC;
	w->d = d;
	w->refs = 2;	/* the handler, then the resume function */
	w->res.rtt_ms = -1;
	if ((r = copy_id(w->tenant_id, sizeof(w->tenant_id), tenant_id)) != 0 ||
	    (r = copy_id(w->device_id, sizeof(w->device_id), device_id)) != 0 ||
	    (r = copy_id(w->session_id, sizeof(w->session_id), session_id)) != 0)
		goto fail;
	memcpy(w->res.session_id, w->session_id, sizeof(w->session_id));
	if ((r = qes_proto_new_id(w->msg_id)) != 0)
		goto fail;
	r = QES_ERR_ALLOC;
	if ((frame = qes_buf_new()) == NULL ||
	    (r = qes_proto_build_diagnose(w->msg_id, frame)) != 0)
		goto fail;

	/* linked before the send, so an instant answer finds it */
	if ((r = link_waiter(d, w)) != 0)
		goto fail;

	/* outside the lock: the hub takes its own (it only queues) */
	r = d->cfg.send(d->cfg.send_ctx, w->tenant_id, w->device_id,
	    qes_buf_data(frame), qes_buf_len(frame));
	if (r != 0) {
		pthread_mutex_lock(&d->mu);
		unlink_locked(d, w);
		pthread_mutex_unlock(&d->mu);
		if (r != QES_ERR_NOT_FOUND && r != QES_ERR_LIMIT)
			r = QES_ERR_INTERNAL;
		goto fail;
	}
	qes_buf_free(frame);
	*out = w;
	return 0;
 fail:
	qes_buf_free(frame);
	free(w);
	return r;
}

void
qesd_diag_abandon(qesd_diag_wait *w)
{
	qesd_diag *d;

	if (w == NULL)
		return;
	d = w->d;
	pthread_mutex_lock(&d->mu);
	unlink_locked(d, w);
	pthread_mutex_unlock(&d->mu);
	/* no resume will run: both holders go */
	qesd_diag_result_clear(&w->res);
	free(w);
}

/* Arm w for a deferred request (notify NULL) or for the bus. */
static void
arm(qesd_diag_wait *w, qesd_server *srv, uint64_t token,
    void (*notify)(void *, uint64_t), void *notify_arg)
{
	qesd_diag *d;
	int wake = 0;

	if (w == NULL)
		return;
	d = w->d;
	pthread_mutex_lock(&d->mu);
	if (!w->finished) {
		w->srv = srv;
		w->token = token;
		w->notify = notify;
		w->notify_arg = notify_arg;
		w->armed = 1;
		wake = w->res.outcome != 0;	/* answered before the arm */
	}
	(void)release_locked(w);
	pthread_mutex_unlock(&d->mu);
	/* a wake only queues the resume, so a stale token is harmless */
	if (wake)
		fire(d, srv, token, notify, notify_arg);
}

void
qesd_diag_arm(qesd_diag_wait *w, qesd_server *srv, uint64_t token)
{
	arm(w, srv, token, NULL, NULL);
}

void
qesd_diag_arm_notify(qesd_diag_wait *w,
    void (*notify)(void *arg, uint64_t token), void *arg, uint64_t token)
{
	arm(w, NULL, token, notify, arg);
}

void
qesd_diag_finish(qesd_diag_wait *w, qesd_diag_result *res)
{
	qesd_diag *d;

	if (res != NULL) {
		memset(res, 0, sizeof(*res));
		res->rtt_ms = -1;
	}
	if (w == NULL)
		return;
	d = w->d;
	pthread_mutex_lock(&d->mu);
	unlink_locked(d, w);
	w->finished = 1;
	if (w->res.outcome == 0)
		w->res.outcome = QESD_DIAG_TIMEOUT;
	if (res != NULL) {
		*res = w->res;		/* the report moves to the caller */
		w->res.report = NULL;
	}
	(void)release_locked(w);
	pthread_mutex_unlock(&d->mu);
}

void
qesd_diag_result_clear(qesd_diag_result *res)
{
	if (res == NULL)
		return;
	json_decref(res->report);
	res->report = NULL;
}

/*
 * The report as far as the gateway relies on it. The protocol parser has
 * checked it against the schema of 5.8 already (every token with a
 * verdict, a system object, each list within its limit, the message
 * within 1 MiB); this checks what the response promises on top - an
 * object with tokens and system - and the size of what will be returned,
 * so a client never gets more than max_report_bytes of report. NULL when
 * acceptable, else why.
 */
static const char *
report_problem(const qesd_diag *d, const qes_proto_diagnose_result *dr)
{
	const json_t *rep = dr->report.json;
	size_t len;

	if (!json_is_object(rep))
		return INV_NOT_OBJECT;
	if (!json_is_array(json_object_get(rep, "tokens")) ||
	    json_array_size(json_object_get(rep, "tokens")) != dr->report.n_tokens)
		return INV_NO_TOKENS;
	if (!json_is_object(json_object_get(rep, "system")) ||
	    dr->report.system == NULL)
		return INV_NO_SYSTEM;
	if (dr->timings.total_ms < dr->timings.scan_ms)
		return INV_TIMES;
	len = json_dumpb(rep, NULL, 0, JSON_COMPACT);
	if (len == 0 || len > d->cfg.max_report_bytes)
		return INV_TOO_LARGE;
	return NULL;
}

void
qesd_diag_on_message(qesd_diag *d, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg)
{
	struct qesd_diag_wait *w;
	const char *ref, *invalid = NULL;
	json_t *report = NULL;
	qesd_server *srv = NULL;
	void (*notify)(void *, uint64_t) = NULL;
	void *notify_arg = NULL;
	uint64_t token = 0;
	int64_t now_us;
	int wake = 0;

	if (d == NULL || tenant_id == NULL || device_id == NULL || msg == NULL)
		return;
	if (msg->type == QES_PROTO_DIAGNOSE_RESULT)
		ref = msg->u.diagnose_result.ref_id;
	else if (msg->type == QES_PROTO_ERROR)
		ref = msg->u.error.ref_id;
	else
		return;
	if (ref == NULL)
		return;
	now_us = mono_us();
	if (msg->type == QES_PROTO_DIAGNOSE_RESULT) {
		/* checked and copied outside the lock: the message is borrowed
		 * and may be large; an answer nobody waits for costs this once */
		invalid = report_problem(d, &msg->u.diagnose_result);
		if (invalid == NULL &&
		    (report = json_deep_copy(msg->u.diagnose_result.report.json)) == NULL)
			invalid = INV_ALLOC;
	}
	pthread_mutex_lock(&d->mu);
	for (w = d->head; w != NULL; w = w->next)
		if (!w->remote && strcmp(w->msg_id, ref) == 0 &&
		    strcmp(w->device_id, device_id) == 0 &&
		    strcmp(w->tenant_id, tenant_id) == 0)
			break;
	if (w == NULL || w->res.outcome != 0) {
		pthread_mutex_unlock(&d->mu);
		json_decref(report);
		if (msg->type == QES_PROTO_DIAGNOSE_RESULT)
			qesd_log(QESD_LOG_INFO, "diagnose_result nobody waits for "
			    "(answered late or twice): dropped",
			    QLS("tenant", tenant_id), QLS("device_id", device_id),
			    QLS("session_id", session_id), QLS("ref", ref));
		return;
	}
	w->res.rtt_ms = (now_us - w->sent_us + 999) / 1000;
	if (session_id != NULL)
		copy_cut(w->res.session_id, sizeof(w->res.session_id), session_id);
	if (msg->type == QES_PROTO_ERROR) {
		/* the agent refuses a second diagnose while one runs (5.10) */
		w->res.outcome = strcmp(msg->u.error.code, "unexpected_message") == 0 ?
		    QESD_DIAG_BUSY : QESD_DIAG_AGENT_ERROR;
		copy_cut(w->res.agent_error, sizeof(w->res.agent_error),
		    msg->u.error.code);
	} else if (invalid != NULL) {
		w->res.outcome = QESD_DIAG_INVALID;
		w->res.invalid = invalid;
	} else {
		w->res.outcome = QESD_DIAG_OK;
		w->res.report = report;
		report = NULL;
		w->res.scan_ms = msg->u.diagnose_result.timings.scan_ms;
		w->res.total_ms = msg->u.diagnose_result.timings.total_ms;
	}
	if (w->armed) {
		srv = w->srv;
		token = w->token;
		notify = w->notify;
		notify_arg = w->notify_arg;
		wake = 1;
	}
	pthread_mutex_unlock(&d->mu);
	json_decref(report);
	if (wake)
		fire(d, srv, token, notify, notify_arg);
}

void
qesd_diag_on_session_closed(qesd_diag *d, const char *tenant_id,
    const char *device_id, const char *session_id, const char *reason)
{
	struct wake {
		qesd_server *srv;
		uint64_t token;
		void (*notify)(void *, uint64_t);
		void *notify_arg;
	} wakes[4];
	struct qesd_diag_wait *w;
	size_t n = 0, i;

	if (d == NULL || tenant_id == NULL || device_id == NULL ||
	    session_id == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	/* at most one wait per device, so one wake; the array is slack */
	for (w = d->head; w != NULL; w = w->next) {
		if (w->res.outcome != 0 || w->remote ||
		    strcmp(w->session_id, session_id) != 0 ||
		    strcmp(w->device_id, device_id) != 0 ||
		    strcmp(w->tenant_id, tenant_id) != 0)
			continue;
		w->res.outcome = QESD_DIAG_SESSION_CLOSED;
		copy_cut(w->res.close_reason, sizeof(w->res.close_reason),
		    reason != NULL ? reason : "closed");
		if (w->armed && n < sizeof(wakes) / sizeof(wakes[0])) {
			wakes[n].srv = w->srv;
			wakes[n].token = w->token;
			wakes[n].notify = w->notify;
			wakes[n].notify_arg = w->notify_arg;
			n++;
		}
	}
	pthread_mutex_unlock(&d->mu);
	for (i = 0; i < n; i++)
		fire(d, wakes[i].srv, wakes[i].token, wakes[i].notify,
		    wakes[i].notify_arg);
}

int
qesd_diag_start_remote(qesd_diag *d, const char *tenant_id,
    const char *device_id, qesd_diag_wait **out,
    char ref_out[QESD_DIAG_REF_SIZE])
{
	struct qesd_diag_wait *w = NULL;
	int r;

	if (out != NULL)
		*out = NULL;
	if (d == NULL || out == NULL || ref_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return QES_ERR_ALLOC;
	w->d = d;
	w->refs = 2;
	w->remote = 1;
	w->res.rtt_ms = -1;
	if ((r = copy_id(w->tenant_id, sizeof(w->tenant_id), tenant_id)) != 0 ||
	    (r = copy_id(w->device_id, sizeof(w->device_id), device_id)) != 0 ||
	    (r = qes_proto_new_id(w->msg_id)) != 0)
		goto fail;
	if ((r = link_waiter(d, w)) != 0)
		goto fail;
	memcpy(ref_out, w->msg_id, sizeof(w->msg_id));
	*out = w;
	return 0;
 fail:
	free(w);
	return r;
}

void
qesd_diag_remote_result(qesd_diag *d, const char *ref, qesd_diag_result *res)
{
	struct qesd_diag_wait *w;
	qesd_server *srv = NULL;
	uint64_t token = 0;
	int wake = 0;

	if (d == NULL || ref == NULL || res == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	for (w = d->head; w != NULL; w = w->next)
		if (w->remote && strcmp(w->msg_id, ref) == 0)
			break;
	if (w == NULL || w->res.outcome != 0 || res->outcome == 0) {
		pthread_mutex_unlock(&d->mu);
		qesd_diag_result_clear(res);
		return;
	}
	w->res = *res;
	res->report = NULL;	/* moved to the wait */
	if (w->res.rtt_ms < 0 && (w->res.outcome == QESD_DIAG_OK ||
	    w->res.outcome == QESD_DIAG_BUSY ||
	    w->res.outcome == QESD_DIAG_AGENT_ERROR ||
	    w->res.outcome == QESD_DIAG_INVALID))
		w->res.rtt_ms = (mono_us() - w->sent_us + 999) / 1000;
	if (w->armed) {
		srv = w->srv;
		token = w->token;
		wake = 1;
	}
	pthread_mutex_unlock(&d->mu);
	if (wake)
		fire(d, srv, token, NULL, NULL);
}
