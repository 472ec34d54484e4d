/*
 * bus_nats.c - the bus between qesd replicas on NATS core messaging
 * (bus = nats:URL[,URL...], libnats).
 *
 * Subjects:
 *   qes.dev.<tenant>.<device>  the replica that holds the device's session
 *                              subscribes while the session lives; requests
 *                              (send, live, close, diag) go there, so NATS
 *                              finds the holder and "no responders" means
 *                              offline; a replica where the device opens a
 *                              newer session publishes `replace` there
 *                              first, so an older one elsewhere is closed
 *   qes.job.<tenant>.<job>     every replica subscribes to qes.job.*.*; a
 *                              job change wakes the long-polls everywhere
 *   <inbox>.<ref>              this replica's replies to diagnoses it asked
 *                              another replica for (one subscription)
 * Ids are [A-Za-z0-9_] (qesd_bus_id_ok checks them again before they go
 * into a subject), so no id can add a token or a wildcard.
 *
 * Threads. libnats delivers messages on a small shared pool (global
 * message delivery: one subscription per live device would otherwise mean
 * one thread per device). Handlers there never block: the hub only queues
 * frames, the jobs only queue wakes; a diagnosis, whose answer takes
 * seconds, is registered with the diagnostics service and left to this
 * bus's own thread, which replies when the agent answered or the
 * diagnostics timeout passed. Requests this replica makes (send, live,
 * close) block the calling worker for at most bus_request_timeout_ms.
 *
 * Connection. libnats reconnects by itself, forever, and re-subscribes;
 * the first connection is retried in the background too, so qesd starts
 * while NATS is down. Until connected the replica is not ready and remote
 * devices read as offline (no request is buffered for later). State
 * changes are logged; URLs are not (they may carry a user and password).
 * A stop() waits for the handlers running on libnats threads to leave
 * before the connection is closed, so none touches a freed service.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "errbuf.h"
#include "bus.h"
#include "bus_msg.h"
#include "bus_priv.h"
#include "config.h"
#include "diagnostics.h"
#include "hub.h"
#include "jobs.h"
#include "log.h"

#define DEV_BUCKETS		1024
#define SUBJECT_MAX		(16 + 2 * QESD_ID_SIZE)
#define INBOX_MAX		96
#define DELIVERY_THREADS	2
#define TOKEN_FILE_MAX		4096
#define RECONNECT_WAIT_MS	500
#define PING_INTERVAL_MS	10000

/* A device live on this replica: its subscription. */
struct dev_sub {
	struct dev_sub *next;
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char session_id[QESD_ID_SIZE];
	natsSubscription *sub;
};

/* A diagnosis this replica runs for another one. */
struct held_diag {
	struct held_diag *next;
	uint64_t id;
	qesd_diag_wait *w;
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char ref[QESD_BUS_REF_MAX + 1];
	char reply[INBOX_MAX + QESD_BUS_REF_MAX + 2];
	int64_t deadline_ms;		/* monotonic */
	int answered;			/* the outcome is known */
};

struct bus_nats {
	qesd_bus pub;			/* first: the bus is a bus_nats */
	natsConnection *nc;
	natsSubscription *job_sub;
	natsSubscription *inbox_sub;
	char inbox[INBOX_MAX];
	int64_t timeout_ms;
	int64_t diag_timeout_ms;

	pthread_mutex_t mu;
	pthread_cond_t cv;		/* inflight drops, held diagnoses */
	int stopping;			/* mu */
	int inflight;			/* mu: handlers running */
	struct dev_sub *devs[DEV_BUCKETS];	/* mu */
	struct held_diag *held;		/* mu */
	uint64_t next_held_id;		/* mu */
	pthread_t thread;
	int thread_started;
	int stopped;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned
bucket_of(const char *tenant_id, const char *device_id)
{
	uint32_t h = 2166136261u;	/* FNV-1a; ids are random already */

	for (; *device_id != '\0'; device_id++)
		h = (h ^ (uint8_t)*device_id) * 16777619u;
	for (; *tenant_id != '\0'; tenant_id++)
		h = (h ^ (uint8_t)*tenant_id) * 16777619u;
	return h % DEV_BUCKETS;
}

/* "qes.dev.<t>.<d>"; 0 or QES_ERR_INVALID_ARG for an id a subject must
 * not carry. */
static int
dev_subject(const char *tenant_id, const char *device_id,
    char out[SUBJECT_MAX])
{
	if (!qesd_bus_id_ok(tenant_id) || !qesd_bus_id_ok(device_id))
		return QES_ERR_INVALID_ARG;
	snprintf(out, SUBJECT_MAX, "qes.dev.%s.%s", tenant_id, device_id);
	return 0;
}

/* A handler on a libnats thread enters (0) unless the bus is stopping. */
static int
enter(struct bus_nats *b)
{
	int ok;

	pthread_mutex_lock(&b->mu);
	ok = !b->stopping;
	if (ok)
		b->inflight++;
	pthread_mutex_unlock(&b->mu);
	return ok ? 0 : -1;
}

static void
leave(struct bus_nats *b)
{
	pthread_mutex_lock(&b->mu);
	if (--b->inflight == 0)
		pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* enter() for a subscription callback: when the bus is stopping, the
 * message is destroyed here and the callback returns at once. */
static int
enter_msg(struct bus_nats *b, natsMsg *msg)
{
	if (enter(b) == 0)
		return 0;
	natsMsg_Destroy(msg);
	return -1;
}

/* The end of a callback entered with enter_msg(). */
static void
leave_msg(struct bus_nats *b, natsMsg *msg)
{
	leave(b);
	natsMsg_Destroy(msg);
}

static int
decode_msg(natsMsg *msg, qesd_bus_msg *m)
{
	return qesd_bus_msg_decode((const uint8_t *)natsMsg_GetData(msg),
	    (size_t)natsMsg_GetDataLength(msg), m);
}

static int
connected(struct bus_nats *b)
{
	return natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* m encoded into a new *out; QES_ERR_LIMIT when larger than the server
 * takes in one message. */
static int
encode_msg(struct bus_nats *b, const qesd_bus_msg *m, qes_buf **out)
{
	qes_buf *buf;
	int r;

	*out = NULL;
	if ((buf = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qesd_bus_msg_encode(m, buf)) != 0 ||
	    (int64_t)qes_buf_len(buf) > natsConnection_GetMaxPayload(b->nc)) {
		qes_buf_free(buf);
		return r != 0 ? r : QES_ERR_LIMIT;
	}
	*out = buf;
	return 0;
}

/* Publish an envelope; 0, QES_ERR_LIMIT (larger than the server takes),
 * QES_ERR_UNAVAILABLE. */
static int
publish(struct bus_nats *b, const char *subject, const char *reply,
    const qesd_bus_msg *m)
{
	qes_buf *buf;
	natsStatus s;
	int r;

	if ((r = encode_msg(b, m, &buf)) != 0)
		return r;
	s = reply != NULL ?
	    natsConnection_PublishRequest(b->nc, subject, reply,
	    qes_buf_data(buf), (int)qes_buf_len(buf)) :
	    natsConnection_Publish(b->nc, subject, qes_buf_data(buf),
	    (int)qes_buf_len(buf));
	qes_buf_free(buf);
	return s == NATS_OK ? 0 : QES_ERR_UNAVAILABLE;
}

/* ------------------------------------------------------------------------- */
/* the holder's side: requests about devices live here */

static void
reply_result(struct bus_nats *b, const char *reply, int result,
    const char *session_id)
{
	qesd_bus_msg m;

	qesd_bus_msg_init(&m, QESD_BUS_REPLY);
	m.result = result;
	if (session_id != NULL)
		snprintf(m.session_id, sizeof(m.session_id), "%s", session_id);
	if (publish(b, reply, NULL, &m) != 0)
		qesd_log(QESD_LOG_WARN, "bus: a reply could not be sent");
}

/* A diag_result for ref, without a report (the start failed). */
static void
reply_diag_outcome(struct bus_nats *b, const char *reply, const qesd_bus_msg *q,
    qesd_diag_outcome o)
{
	qesd_bus_msg m;

	qesd_bus_msg_init(&m, QESD_BUS_DIAG_RESULT);
	memcpy(m.tenant_id, q->tenant_id, sizeof(m.tenant_id));
	memcpy(m.device_id, q->device_id, sizeof(m.device_id));
	memcpy(m.ref, q->ref, sizeof(m.ref));
	snprintf(m.outcome, sizeof(m.outcome), "%s", qesd_diag_outcome_name(o));
	if (publish(b, reply, NULL, &m) != 0)
		qesd_log(QESD_LOG_WARN, "bus: a diagnosis answer could not be sent",
		    QLS("device_id", q->device_id));
}

static void
notify_held(void *arg, uint64_t id)
{
	struct bus_nats *b = arg;
	struct held_diag *h;

	pthread_mutex_lock(&b->mu);
	for (h = b->held; h != NULL; h = h->next)
		if (h->id == id) {
			h->answered = 1;
			pthread_cond_broadcast(&b->cv);
			break;
		}
	pthread_mutex_unlock(&b->mu);
}

/* Start a diagnosis another replica asked for; its outcome is sent by
 * the bus thread. On a libnats thread: nothing here blocks. */
static void
held_diag_start(struct bus_nats *b, const qesd_bus_msg *q, const char *reply)
{
	qesd_app *app = b->pub.app;
	struct held_diag *h;
	char session_id[QESD_ID_SIZE];
	qesd_diag_wait *w = NULL;
	qesd_diag_outcome o;
	uint64_t id;
	int r;

	if (strlen(reply) >= sizeof(h->reply)) {
		qesd_log(QESD_LOG_WARN, "bus: diagnosis request with an overlong "
		    "reply subject dropped");
		return;
	}
	if (app->diag == NULL ||
	    !qesd_hub_is_live(app->hub, q->tenant_id, q->device_id, session_id)) {
		reply_diag_outcome(b, reply, q, QESD_DIAG_OFFLINE);
		return;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		reply_diag_outcome(b, reply, q, QESD_DIAG_OVERLOADED);
		return;
	}
	r = qesd_diag_start(app->diag, q->tenant_id, q->device_id, session_id, &w);
	if (r != 0) {
		o = r == QES_ERR_CONFLICT ? QESD_DIAG_IN_PROGRESS :
		    r == QES_ERR_NOT_FOUND ? QESD_DIAG_OFFLINE : QESD_DIAG_OVERLOADED;
		free(h);
		reply_diag_outcome(b, reply, q, o);
		return;
	}
	memcpy(h->tenant_id, q->tenant_id, sizeof(h->tenant_id));
	memcpy(h->device_id, q->device_id, sizeof(h->device_id));
	memcpy(h->ref, q->ref, sizeof(h->ref));
	memcpy(h->reply, reply, strlen(reply) + 1);
	h->w = w;
	h->deadline_ms = mono_ms() + b->diag_timeout_ms;
	pthread_mutex_lock(&b->mu);
	id = h->id = ++b->next_held_id;
	h->next = b->held;
	b->held = h;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	qesd_diag_arm_notify(w, notify_held, b, id);
}

static void
on_device_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
    void *closure)
{
	struct bus_nats *b = closure;
	qesd_app *app = b->pub.app;
	const char *reply = natsMsg_GetReply(msg);
	char subject[SUBJECT_MAX], session_id[QESD_ID_SIZE];
	qesd_bus_msg m;
	int r;

	(void)nc;
	(void)sub;
	if (enter_msg(b, msg) != 0)
		return;
	r = decode_msg(msg, &m);
	if (r != 0 || ((reply == NULL || reply[0] == '\0') &&
	    m.op != QESD_BUS_REPLACE) ||
	    dev_subject(m.tenant_id, m.device_id, subject) != 0 ||
	    strcmp(subject, natsMsg_GetSubject(msg)) != 0) {
		/* never the payload: it may hold a frame for a device */
		qesd_log(QESD_LOG_WARN, "bus: malformed device request dropped",
		    QLS("error", r != 0 ? qes_strerror(r) : "wrong subject or no reply"),
		    QLI("bytes", natsMsg_GetDataLength(msg)));
		goto out;
	}
	switch (m.op) {
	case QESD_BUS_SEND:
		r = qesd_hub_send(app->hub, m.tenant_id, m.device_id, m.body,
		    m.body_len);
		reply_result(b, reply, r == 0 || r == QES_ERR_NOT_FOUND ||
		    r == QES_ERR_LIMIT ? r : QES_ERR_INVALID_ARG, NULL);
		break;
	case QESD_BUS_LIVE:
		if (qesd_hub_is_live(app->hub, m.tenant_id, m.device_id,
		    session_id))
			reply_result(b, reply, 0, session_id);
		else
			reply_result(b, reply, QES_ERR_NOT_FOUND, NULL);
		break;
	case QESD_BUS_CLOSE:
		r = qesd_hub_close_device(app->hub, m.tenant_id, m.device_id,
		    m.close_code, m.reason);
		reply_result(b, reply, r == 0 ? 0 : QES_ERR_NOT_FOUND, NULL);
		break;
	case QESD_BUS_DIAG:
		held_diag_start(b, &m, reply);
		break;
	case QESD_BUS_REPLACE:
		if (qesd_hub_close_older(app->hub, m.tenant_id, m.device_id,
		    m.session_id, m.since_ms) == 0)
			qesd_log(QESD_LOG_INFO, "bus: a newer session of the device "
			    "opened on another replica: closing the one here",
			    QLS("tenant", m.tenant_id), QLS("device_id", m.device_id),
			    QLS("newer_session_id", m.session_id));
		break;
	default:
		qesd_log(QESD_LOG_WARN, "bus: unexpected operation on a device "
		    "subject dropped", QLS("op", qesd_bus_op_name(m.op)));
		break;
	}
 out:
	leave_msg(b, msg);
}

/* Send the outcome of a held diagnosis (bus thread). */
static void
held_diag_reply(struct bus_nats *b, struct held_diag *h)
{
	qesd_diag_result res;
	qesd_bus_msg m;
	char *report = NULL;
	size_t report_len = 0;
	int r;

	qesd_diag_finish(h->w, &res);
	qesd_bus_msg_init(&m, QESD_BUS_DIAG_RESULT);
	memcpy(m.tenant_id, h->tenant_id, sizeof(m.tenant_id));
	memcpy(m.device_id, h->device_id, sizeof(m.device_id));
	memcpy(m.ref, h->ref, sizeof(m.ref));
	if (qesd_bus_id_ok(res.session_id))
		memcpy(m.session_id, res.session_id, sizeof(m.session_id));
	m.rtt_ms = res.rtt_ms;
	if (res.outcome == QESD_DIAG_OK) {
		m.scan_ms = res.scan_ms;
		m.total_ms = res.total_ms;
		report = json_dumps(res.report, JSON_COMPACT);
		report_len = report != NULL ? strlen(report) : 0;
		if (report_len == 0 || report_len > QESD_BUS_BODY_MAX)
			res.outcome = QESD_DIAG_INVALID;
		m.body = (const uint8_t *)report;
		m.body_len = res.outcome == QESD_DIAG_OK ? report_len : 0;
		if (res.outcome != QESD_DIAG_OK)
			snprintf(m.invalid, sizeof(m.invalid), "%s",
			    "the report is larger than the bus carries");
	}
	snprintf(m.outcome, sizeof(m.outcome), "%s",
	    qesd_diag_outcome_name(res.outcome));
	snprintf(m.agent_error, sizeof(m.agent_error), "%s", res.agent_error);
	snprintf(m.close_reason, sizeof(m.close_reason), "%s", res.close_reason);
	if (res.outcome == QESD_DIAG_INVALID && m.invalid[0] == '\0')
		snprintf(m.invalid, sizeof(m.invalid), "%s",
		    res.invalid != NULL ? res.invalid : "");
	r = publish(b, h->reply, NULL, &m);
	if (r == QES_ERR_LIMIT || r == QES_ERR_INVALID_ARG) {
		/* too large for the server's max_payload, or a field the
		 * envelope refuses: the asking replica still gets an answer */
		m.body = NULL;
		m.body_len = 0;
		m.agent_error[0] = '\0';
		snprintf(m.outcome, sizeof(m.outcome), "%s",
		    qesd_diag_outcome_name(QESD_DIAG_INVALID));
		snprintf(m.invalid, sizeof(m.invalid), "%s",
		    "the report is larger than the bus carries");
		r = publish(b, h->reply, NULL, &m);
	}
	if (r != 0)
		qesd_log(QESD_LOG_WARN, "bus: a diagnosis answer could not be sent",
		    QLS("device_id", h->device_id), QLS("error", qes_strerror(r)));
	free(report);
	qesd_diag_result_clear(&res);
}

/* The bus thread: replies to held diagnoses when answered or due. */
static void *
bus_thread(void *arg)
{
	struct bus_nats *b = arg;
	struct held_diag *h, **pp;
	struct timespec ts;
	int64_t now, next;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		now = mono_ms();
		next = now + 1000;
		for (pp = &b->held; (h = *pp) != NULL; pp = &h->next) {
			if (b->stopping || h->answered || h->deadline_ms <= now)
				break;
			if (h->deadline_ms < next)
				next = h->deadline_ms;
		}
		if (h != NULL) {
			*pp = h->next;
			pthread_mutex_unlock(&b->mu);
			if (b->stopping)
				qesd_diag_finish(h->w, NULL);
			else
				held_diag_reply(b, h);
			free(h);
			pthread_mutex_lock(&b->mu);
			continue;
		}
		if (b->stopping)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((next - now) / 1000);
		ts.tv_nsec += (long)((next - now) % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&b->cv, &b->mu, &ts);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* every replica: job changes, and answers to its own diagnoses */

static void
on_job_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
    void *closure)
{
	struct bus_nats *b = closure;
	qesd_bus_msg m;
	int r;

	(void)nc;
	(void)sub;
	if (enter_msg(b, msg) != 0)
		return;
	r = decode_msg(msg, &m);
	if (r != 0 || m.op != QESD_BUS_JOB)
		qesd_log(QESD_LOG_WARN, "bus: malformed job change dropped",
		    QLS("error", r != 0 ? qes_strerror(r) : "not a job change"),
		    QLI("bytes", natsMsg_GetDataLength(msg)));
	else
		qesd_jobs_wake_local(b->pub.app->jobs, m.tenant_id, m.job_id);
	leave_msg(b, msg);
}

static void
on_inbox_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
    void *closure)
{
	struct bus_nats *b = closure;
	const char *subject = natsMsg_GetSubject(msg), *ref;
	size_t plen = strlen(b->inbox);
	qesd_diag_result res;
	qesd_bus_msg m;
	int r;

	(void)nc;
	(void)sub;
	if (enter_msg(b, msg) != 0)
		return;
	memset(&res, 0, sizeof(res));
	res.rtt_ms = -1;
	if (strncmp(subject, b->inbox, plen) != 0 || subject[plen] != '.')
		goto out;
	ref = subject + plen + 1;
	if (natsMsg_IsNoResponders(msg)) {
		/* nobody holds the device: offline everywhere */
		res.outcome = QESD_DIAG_OFFLINE;
		qesd_diag_remote_result(b->pub.app->diag, ref, &res);
		goto out;
	}
	r = decode_msg(msg, &m);
	if (r != 0 || m.op != QESD_BUS_DIAG_RESULT || strcmp(m.ref, ref) != 0 ||
	    (res.outcome = qesd_diag_outcome_parse(m.outcome)) == 0) {
		qesd_log(QESD_LOG_WARN, "bus: malformed diagnosis answer dropped",
		    QLS("error", r != 0 ? qes_strerror(r) : "unexpected content"),
		    QLI("bytes", natsMsg_GetDataLength(msg)));
		goto out;
	}
	memcpy(res.session_id, m.session_id, sizeof(res.session_id));
	res.rtt_ms = m.rtt_ms;
	res.scan_ms = m.scan_ms;
	res.total_ms = m.total_ms;
	snprintf(res.agent_error, sizeof(res.agent_error), "%s", m.agent_error);
	snprintf(res.close_reason, sizeof(res.close_reason), "%s",
	    m.close_reason);
	if (res.outcome == QESD_DIAG_INVALID)
		res.invalid = qesd_diag_invalid_text(m.invalid);
	if (res.outcome == QESD_DIAG_OK) {
		json_error_t jerr;

		res.report = m.body_len > 0 ? json_loadb((const char *)m.body,
		    m.body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
		if (!json_is_object(res.report) || m.scan_ms < 0 ||
		    m.total_ms < m.scan_ms) {
			json_decref(res.report);
			res.report = NULL;
			res.outcome = QESD_DIAG_INVALID;
			res.invalid = qesd_diag_invalid_text(NULL);
		}
	}
	qesd_diag_remote_result(b->pub.app->diag, ref, &res);
 out:
	qesd_diag_result_clear(&res);
	leave_msg(b, msg);
}

/* ------------------------------------------------------------------------- */
/* connection state */

static void
on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
	qesd_log(QESD_LOG_WARN, "bus: disconnected from NATS: not ready, devices "
	    "on other replicas read as offline until it reconnects");
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
	char id[128] = "";

	(void)closure;
	(void)natsConnection_GetConnectedServerId(nc, id, sizeof(id));
	qesd_log(QESD_LOG_INFO, "bus: connected to NATS", QLS("server_id", id));
}

static void
on_closed(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
	qesd_log(QESD_LOG_INFO, "bus: NATS connection closed");
}

static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
    void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	qesd_log(QESD_LOG_WARN, "bus: NATS reports an error (a slow consumer "
	    "drops messages: give qesd more CPU)",
	    QLS("error", natsStatus_GetText(err)));
}

/* ------------------------------------------------------------------------- */
/* the requesting side */

/*
 * One request to the holder of (tenant, device); *out the reply. 0, or
 * QES_ERR_NOT_FOUND: not connected, no responders, timeout, a malformed
 * reply (all mean: cannot be reached now).
 */
static int
request(struct bus_nats *b, const qesd_bus_msg *q, qesd_bus_msg *out)
{
	char subject[SUBJECT_MAX];
	natsMsg *reply = NULL;
	natsStatus s;
	qes_buf *buf = NULL;
	int r;

	if (dev_subject(q->tenant_id, q->device_id, subject) != 0)
		return QES_ERR_INVALID_ARG;
	if (!connected(b))
		return QES_ERR_NOT_FOUND;
	if ((r = encode_msg(b, q, &buf)) != 0)
		return r;
	s = natsConnection_Request(&reply, b->nc, subject, qes_buf_data(buf),
	    (int)qes_buf_len(buf), b->timeout_ms);
	if (s != NATS_OK) {
		if (s != NATS_NO_RESPONDERS)
			qesd_log(QESD_LOG_WARN, "bus: the replica holding a device "
			    "did not answer: treated as offline",
			    QLS("op", qesd_bus_op_name(q->op)),
			    QLS("device_id", q->device_id),
			    QLS("error", natsStatus_GetText(s)));
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	r = decode_msg(reply, out);
	if (r != 0 || out->op != QESD_BUS_REPLY) {
		qesd_log(QESD_LOG_WARN, "bus: malformed reply dropped",
		    QLS("op", qesd_bus_op_name(q->op)),
		    QLS("error", r != 0 ? qes_strerror(r) : "not a reply"));
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	r = 0;
 out:
	natsMsg_Destroy(reply);
	qes_buf_free(buf);
	return r;
}

static void
fill_ids(qesd_bus_msg *m, const char *tenant_id, const char *device_id)
{
	snprintf(m->tenant_id, sizeof(m->tenant_id), "%s", tenant_id);
	snprintf(m->device_id, sizeof(m->device_id), "%s", device_id);
}

static int
nats_send(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	qesd_bus_msg q, rep;
	int r;

	qesd_bus_msg_init(&q, QESD_BUS_SEND);
	fill_ids(&q, tenant_id, device_id);
	q.body = frame;
	q.body_len = len;
	if ((r = request(b, &q, &rep)) != 0)
		return r;
	return rep.result;
}

static int
nats_is_live(qesd_bus *bus, const char *tenant_id, const char *device_id,
    char session_id_out[QESD_ID_SIZE])
{
	struct bus_nats *b = (struct bus_nats *)bus;
	qesd_bus_msg q, rep;

	qesd_bus_msg_init(&q, QESD_BUS_LIVE);
	fill_ids(&q, tenant_id, device_id);
	if (request(b, &q, &rep) != 0 || rep.result != 0 ||
	    !qesd_bus_id_ok(rep.session_id))
		return 0;
	if (session_id_out != NULL)
		memcpy(session_id_out, rep.session_id, QESD_ID_SIZE);
	return 1;
}

static int
nats_close_device(qesd_bus *bus, const char *tenant_id, const char *device_id,
    int close_code, const char *reason)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	qesd_bus_msg q, rep;
	int r;

	qesd_bus_msg_init(&q, QESD_BUS_CLOSE);
	fill_ids(&q, tenant_id, device_id);
	q.close_code = close_code;
	snprintf(q.reason, sizeof(q.reason), "%s", reason != NULL ? reason : "");
	if ((r = request(b, &q, &rep)) != 0)
		return r;
	return rep.result;
}

static void
nats_job_changed(qesd_bus *bus, const char *tenant_id, const char *job_id)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	char subject[SUBJECT_MAX];
	qesd_bus_msg m;
	int r;

	if (!qesd_bus_id_ok(tenant_id) || !qesd_bus_id_ok(job_id))
		return;
	qesd_bus_msg_init(&m, QESD_BUS_JOB);
	snprintf(m.tenant_id, sizeof(m.tenant_id), "%s", tenant_id);
	snprintf(m.job_id, sizeof(m.job_id), "%s", job_id);
	snprintf(subject, sizeof(subject), "qes.job.%s.%s", tenant_id, job_id);
	/* best effort, like every wake: the waiters elsewhere also resume at
	 * their deadline */
	if (connected(b) && (r = publish(b, subject, NULL, &m)) != 0)
		qesd_log(QESD_LOG_WARN, "bus: a job change could not be published",
		    QLS("job_id", job_id), QLS("error", qes_strerror(r)));
}

static int
nats_diagnose(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const char *ref)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	char subject[SUBJECT_MAX], reply[INBOX_MAX + QESD_BUS_REF_MAX + 2];
	qesd_bus_msg m;

	if (dev_subject(tenant_id, device_id, subject) != 0 || ref == NULL ||
	    strlen(ref) > QESD_BUS_REF_MAX)
		return QES_ERR_INVALID_ARG;
	if (!connected(b))
		return QES_ERR_NOT_FOUND;
	qesd_bus_msg_init(&m, QESD_BUS_DIAG);
	fill_ids(&m, tenant_id, device_id);
	snprintf(m.ref, sizeof(m.ref), "%s", ref);
	snprintf(reply, sizeof(reply), "%s.%s", b->inbox, ref);
	return publish(b, subject, reply, &m) == 0 ? 0 : QES_ERR_NOT_FOUND;
}

/* ------------------------------------------------------------------------- */
/* device subscriptions */

static struct dev_sub *
find_locked(struct bus_nats *b, const char *tenant_id, const char *device_id)
{
	struct dev_sub *e;

	for (e = b->devs[bucket_of(tenant_id, device_id)]; e != NULL; e = e->next)
		if (strcmp(e->device_id, device_id) == 0 &&
		    strcmp(e->tenant_id, tenant_id) == 0)
			return e;
	return NULL;
}

static void
unsubscribe(natsSubscription *sub)
{
	if (sub == NULL)
		return;
	(void)natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}

static void
nats_device_open(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const char *session_id, int64_t connected_ms)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	char subject[SUBJECT_MAX];
	natsSubscription *sub = NULL;
	struct dev_sub *e;
	qesd_bus_msg m;
	natsStatus s;

	if (dev_subject(tenant_id, device_id, subject) != 0 ||
	    !qesd_bus_id_ok(session_id))
		return;
	/*
	 * First, before this replica subscribes: a session of the device that
	 * connected earlier on another replica is stale (the agent runs one
	 * connection) or another process with the same device key; its
	 * holder closes it with 4003, as the hub does on one replica. Best
	 * effort: a stale session also goes at its heartbeat deadline.
	 */
	if (connected(b) && connected_ms > 0) {
		qesd_bus_msg_init(&m, QESD_BUS_REPLACE);
		fill_ids(&m, tenant_id, device_id);
		memcpy(m.session_id, session_id, strlen(session_id) + 1);
		m.since_ms = connected_ms;
		(void)publish(b, subject, NULL, &m);
	}
	pthread_mutex_lock(&b->mu);
	if (b->stopping) {
		pthread_mutex_unlock(&b->mu);
		return;
	}
	if ((e = find_locked(b, tenant_id, device_id)) != NULL) {
		/* a newer session of a device subscribed already */
		memcpy(e->session_id, session_id, strlen(session_id) + 1);
		pthread_mutex_unlock(&b->mu);
		return;
	}
	pthread_mutex_unlock(&b->mu);
	/* libnats calls outside mu: its threads call into handlers that
	 * take mu */
	s = natsConnection_Subscribe(&sub, b->nc, subject, on_device_msg, b);
	if (s != NATS_OK) {
		qesd_log(QESD_LOG_WARN, "bus: cannot subscribe for a device: "
		    "other replicas cannot reach it", QLS("device_id", device_id),
		    QLS("error", natsStatus_GetText(s)));
		return;
	}
	pthread_mutex_lock(&b->mu);
	if (!b->stopping && (e = find_locked(b, tenant_id, device_id)) == NULL &&
	    (e = calloc(1, sizeof(*e))) != NULL) {
		unsigned k = bucket_of(tenant_id, device_id);

		memcpy(e->tenant_id, tenant_id, strlen(tenant_id) + 1);
		memcpy(e->device_id, device_id, strlen(device_id) + 1);
		memcpy(e->session_id, session_id, strlen(session_id) + 1);
		e->sub = sub;
		sub = NULL;
		e->next = b->devs[k];
		b->devs[k] = e;
	} else if (e != NULL && sub != NULL) {
		/* another session's open won the race: one subscription */
		memcpy(e->session_id, session_id, strlen(session_id) + 1);
	}
	pthread_mutex_unlock(&b->mu);
	unsubscribe(sub);
}

static void
nats_device_closed(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const char *session_id)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	struct dev_sub *e, **pp;

	if (!qesd_bus_id_ok(tenant_id) || !qesd_bus_id_ok(device_id))
		return;
	pthread_mutex_lock(&b->mu);
	for (pp = &b->devs[bucket_of(tenant_id, device_id)]; (e = *pp) != NULL;
	    pp = &e->next)
		if (strcmp(e->device_id, device_id) == 0 &&
		    strcmp(e->tenant_id, tenant_id) == 0)
			break;
	/* a replaced session's late close keeps the newer one's */
	if (e == NULL || strcmp(e->session_id, session_id) != 0) {
		pthread_mutex_unlock(&b->mu);
		return;
	}
	*pp = e->next;
	pthread_mutex_unlock(&b->mu);
	unsubscribe(e->sub);
	free(e);
}

/* ------------------------------------------------------------------------- */
/* life cycle */

static int
nats_ready(qesd_bus *bus)
{
	return connected((struct bus_nats *)bus) ? 0 : QES_ERR_UNAVAILABLE;
}

static void
nats_stop(qesd_bus *bus)
{
	struct bus_nats *b = (struct bus_nats *)bus;
	struct dev_sub *e, *next;
	size_t k;

	if (b->stopped)
		return;
	b->stopped = 1;
	pthread_mutex_lock(&b->mu);
	b->stopping = 1;
	pthread_cond_broadcast(&b->cv);
	while (b->inflight > 0)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	if (b->thread_started)
		pthread_join(b->thread, NULL);	/* finishes the held waits */
	b->thread_started = 0;
	for (k = 0; k < DEV_BUCKETS; k++)
		for (e = b->devs[k]; e != NULL; e = next) {
			next = e->next;
			natsSubscription_Destroy(e->sub);
			free(e);
		}
	memset(b->devs, 0, sizeof(b->devs));
	natsSubscription_Destroy(b->job_sub);
	natsSubscription_Destroy(b->inbox_sub);
	b->job_sub = b->inbox_sub = NULL;
	if (b->nc != NULL)
		natsConnection_Close(b->nc);
}

static void
nats_free(qesd_bus *bus)
{
	struct bus_nats *b = (struct bus_nats *)bus;

	natsConnection_Destroy(b->nc);
	b->nc = NULL;
	/*
	 * libnats' own threads and memory, so leak checkers see none - and
	 * before b goes: a message the delivery pool had already taken could
	 * still reach its callback (closure b) after Close returned, and b
	 * was freed before those threads were waited for. If the threads do
	 * not end in time, b stays: the process is exiting.
	 */
	if (nats_CloseAndWait(5000) != NATS_OK) {
		qesd_log(QESD_LOG_WARN, "bus: libnats threads still running at exit");
		return;
	}
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

static const struct qesd_bus_ops nats_ops = {
	.kind = "nats",
	.remote = 1,
	.ready = nats_ready,
	.device_open = nats_device_open,
	.device_closed = nats_device_closed,
	.send = nats_send,
	.is_live = nats_is_live,
	.close_device = nats_close_device,
	.job_changed = nats_job_changed,
	.diagnose = nats_diagnose,
	.stop = nats_stop,
	.free = nats_free,
};

/*
 * The token of bus_token_file: one line of printable ASCII (a trailing
 * newline is allowed), at most TOKEN_FILE_MAX bytes, into a wiped secret
 * with a terminating NUL (libnats takes a C string and copies it).
 */
static int
read_token(const char *path, qes_secret **out)
{
	uint8_t buf[TOKEN_FILE_MAX + 1];
	qes_secret *t = NULL;
	size_t len = 0, i;
	ssize_t n;
	int fd, r = QES_ERR_FORMAT;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return QES_ERR_IO;
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > TOKEN_FILE_MAX)
		goto out;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	for (i = 0; i < len; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e)
			goto out;
	if (len == 0)
		goto out;
	buf[len] = '\0';
	r = QES_ERR_ALLOC;
	if ((t = qes_secret_new(len + 1)) == NULL ||
	    qes_secret_set(t, buf, len + 1) != 0)
		goto out;
	*out = t;
	t = NULL;
	r = 0;
 out:
	OPENSSL_cleanse(buf, sizeof(buf));
	qes_secret_free(t);
	return r;
}

/* The options from the configuration; err says what is wrong. */
static int
make_options(struct bus_nats *b, const qesd_config *cfg, const char *urls,
    natsOptions **out, char *err, size_t errlen)
{
	natsOptions *o = NULL;
	qes_secret *token = NULL;
	char name[160];
	natsStatus s;
	int r = QES_ERR_INVALID_ARG;

	*out = NULL;
	if (natsOptions_Create(&o) != NATS_OK) {
		r = qesd_errf(err, errlen, "bus: cannot create NATS options");
		goto out;
	}
	snprintf(name, sizeof(name), "qesd %s",
	    cfg->replica_name != NULL ? cfg->replica_name : "");
	if ((s = natsOptions_SetURL(o, urls)) != NATS_OK) {
		r = qesd_errf(err, errlen, "bus: the NATS URL list is not valid (%s)",
		    natsStatus_GetText(s));
		goto out;
	}
	if (natsOptions_SetName(o, name) != NATS_OK ||
	    natsOptions_SetAllowReconnect(o, true) != NATS_OK ||
	    natsOptions_SetMaxReconnect(o, -1) != NATS_OK ||
	    natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS) != NATS_OK ||
	    natsOptions_SetPingInterval(o, PING_INTERVAL_MS) != NATS_OK ||
	    natsOptions_SetMaxPingsOut(o, 2) != NATS_OK ||
	    natsOptions_SetNoEcho(o, true) != NATS_OK ||
	    natsOptions_UseGlobalMessageDelivery(o, true) != NATS_OK ||
	    natsOptions_SetRetryOnFailedConnect(o, true, on_reconnected, b) !=
	    NATS_OK ||
	    natsOptions_SetDisconnectedCB(o, on_disconnected, b) != NATS_OK ||
	    natsOptions_SetReconnectedCB(o, on_reconnected, b) != NATS_OK ||
	    natsOptions_SetClosedCB(o, on_closed, b) != NATS_OK ||
	    natsOptions_SetErrorHandler(o, on_error, b) != NATS_OK) {
		r = qesd_errf(err, errlen, "bus: cannot set the NATS options");
		goto out;
	}
	if (cfg->bus_tls_ca_file != NULL &&
	    ((s = natsOptions_SetSecure(o, true)) != NATS_OK ||
	    (s = natsOptions_LoadCATrustedCertificates(o,
	    cfg->bus_tls_ca_file)) != NATS_OK)) {
		r = qesd_errf(err, errlen, "bus_tls_ca_file %s cannot be loaded (%s)",
		    cfg->bus_tls_ca_file, natsStatus_GetText(s));
		goto out;
	}
	if (cfg->bus_credentials_file != NULL) {
		if (qesd_check_secret_file(cfg->bus_credentials_file,
		    "bus_credentials_file", err, errlen) != 0)
			goto out;
		if ((s = natsOptions_SetUserCredentialsFromFiles(o,
		    cfg->bus_credentials_file, NULL)) != NATS_OK) {
			r = qesd_errf(err, errlen, "bus_credentials_file %s cannot be "
			    "used (%s)", cfg->bus_credentials_file,
			    natsStatus_GetText(s));
			goto out;
		}
	}
	if (cfg->bus_token_file != NULL) {
		if (qesd_check_secret_file(cfg->bus_token_file, "bus_token_file",
		    err, errlen) != 0)
			goto out;
		if (read_token(cfg->bus_token_file, &token) != 0 ||
		    natsOptions_SetToken(o,
		    (const char *)qes_secret_data(token)) != NATS_OK) {
			r = qesd_errf(err, errlen, "bus_token_file %s holds no usable "
			    "token (one line of printable characters)",
			    cfg->bus_token_file);
			goto out;
		}
	}
	*out = o;
	o = NULL;
	r = 0;
 out:
	qes_secret_free(token);
	natsOptions_Destroy(o);
	return r;
}

int
qesd_bus_nats_new(qesd_app *app, const char *urls, qesd_bus **out, char *err,
    size_t errlen)
{
	struct bus_nats *b = NULL;
	natsOptions *o = NULL;
	natsStatus s;
	char *inbox = NULL;
	int r = QES_ERR_ALLOC, mu = 0, cv = 0;

	*out = NULL;
	if (app == NULL || app->cfg == NULL || urls == NULL)
		return QES_ERR_INVALID_ARG;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return QES_ERR_ALLOC;
	b->pub.ops = &nats_ops;
	b->pub.app = app;
	b->timeout_ms = app->cfg->bus_request_timeout_ms > 0 ?
	    app->cfg->bus_request_timeout_ms : 2000;
	b->diag_timeout_ms = (int64_t)(app->cfg->diagnostics_timeout_s > 0 ?
	    app->cfg->diagnostics_timeout_s : 30) * 1000;
	if (pthread_mutex_init(&b->mu, NULL) != 0)
		goto fail;
	mu = 1;
	{
		pthread_condattr_t ca;

		if (pthread_condattr_init(&ca) != 0)
			goto fail;
		cv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
		    pthread_cond_init(&b->cv, &ca) == 0;
		pthread_condattr_destroy(&ca);
		if (!cv)
			goto fail;
	}
	if (nats_Open(-1) != NATS_OK ||
	    nats_SetMessageDeliveryPoolSize(DELIVERY_THREADS) != NATS_OK) {
		r = qesd_errf(err, errlen, "bus: cannot start libnats");
		goto fail;
	}
	if ((r = make_options(b, app->cfg, urls, &o, err, errlen)) != 0)
		goto fail;
	s = natsConnection_Connect(&b->nc, o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		r = qesd_errf(err, errlen, "bus: cannot connect to NATS (%s)",
		    natsStatus_GetText(s));
		goto fail;
	}
	if (s == NATS_NOT_YET_CONNECTED)
		qesd_log(QESD_LOG_WARN, "bus: NATS is not reachable yet: not ready "
		    "until it is (retrying in the background)");
	else
		on_reconnected(b->nc, b);
	r = QES_ERR_UNAVAILABLE;
	if (natsInbox_Create(&inbox) != NATS_OK ||
	    strlen(inbox) >= sizeof(b->inbox)) {
		r = qesd_errf(err, errlen, "bus: cannot make a NATS inbox");
		goto fail;
	}
	snprintf(b->inbox, sizeof(b->inbox), "%s", inbox);
	{
		char wild[INBOX_MAX + 3];

		snprintf(wild, sizeof(wild), "%s.*", b->inbox);
		if ((s = natsConnection_Subscribe(&b->job_sub, b->nc,
		    "qes.job.*.*", on_job_msg, b)) != NATS_OK ||
		    (s = natsConnection_Subscribe(&b->inbox_sub, b->nc, wild,
		    on_inbox_msg, b)) != NATS_OK) {
			r = qesd_errf(err, errlen, "bus: cannot subscribe (%s)",
			    natsStatus_GetText(s));
			goto fail;
		}
	}
	if (pthread_create(&b->thread, NULL, bus_thread, b) != 0) {
		r = qesd_errf(err, errlen, "bus: cannot start its thread");
		goto fail;
	}
	b->thread_started = 1;
	natsInbox_Destroy(inbox);
	natsOptions_Destroy(o);
	*out = &b->pub;
	return 0;
 fail:
	natsInbox_Destroy(inbox);
	natsOptions_Destroy(o);
	if (b->nc != NULL) {
		natsSubscription_Destroy(b->job_sub);
		natsSubscription_Destroy(b->inbox_sub);
		natsConnection_Close(b->nc);
		natsConnection_Destroy(b->nc);
	}
	if (cv)
		pthread_cond_destroy(&b->cv);
	if (mu)
		pthread_mutex_destroy(&b->mu);
	free(b);
	if (r == 0)
		r = QES_ERR_INTERNAL;
	return r;
}
