/*
 * session.c - the agent's protocol state machine and reconnect policy
 * (see session.h; the protocol is docs/protocol.md).
 *
 * Everything here runs on the connection's loop thread: callbacks from
 * connection.c (opened, message, closed, woken, tick) and the results the
 * jobs queue. Nothing blocks: a sign or diagnose becomes a job, and its
 * answer is sent when the job's result is taken from the queue - as is a
 * sign job's progress (sign_status: its dialog opened, the signer
 * consented), which the workers queue the same way, ahead of the result.
 *
 * Each connection gets a generation number; jobs remember the generation
 * they came on, and a result for an older one is dropped, never sent on a
 * newer session (docs/protocol.md 12.6: jobs do not resume).
 *
 * Logs carry job ids, token serials, credential ids and at most the first
 * 8 bytes of a digest; never a PIN, a signature or a whole digest.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/report.h"
#include "qes/tool.h"

#include "connection.h"
#include "hotplug.h"
#include "jobs.h"
#include "log.h"
#include "session.h"

#define INVENTORY_MIN_GAP_MS	2000	/* docs/protocol.md 11 */
#define AUTH_GRACE_MS		5000	/* beyond the gateway's own auth timeout */
#define STOP_GRACE_MS		3000	/* waiting for the close handshake */
#define DRAIN_RECONNECT_MS	5000	/* 4004: uniform 0..5 s */
#define AUTH_FAILED_MIN_MS	30000	/* 4001: no sooner than this */
#define CLOSE_NORMAL		1000
#define CLOSE_MESSAGE_TOO_BIG	1009
#define CLOSE_INTERNAL		1011

enum state {
	ST_IDLE = 0,		/* no connection, or dialing */
	ST_HELLO,		/* hello sent, waiting for the challenge */
	ST_AUTH,		/* auth sent, waiting for auth_ok */
	ST_LIVE,		/* authenticated */
};

struct agent_session {
	agent_session_opts o;
	agent_conn *conn;
	agent_jobs *jobs;
	agent_hotplug *hotplug;
	agent_snapshot *snap;		/* the newest inventory */

	enum state st;
	uint64_t gen;			/* connection generation */
	char session_id[QES_PROTO_ID_MAX + 1];
	int64_t opened_ms, live_ms;	/* when the socket opened / auth_ok came */
	unsigned attempt;		/* failures since the last stable session */
	int inventory_due;
	int64_t inventory_sent_ms;
	int no_sign_status;		/* the gateway predates sign_status */

	atomic_int stop_requested;
	int stopping;
	int64_t stop_deadline_ms;
	int exit_code;
};

static const char *
state_name(enum state st)
{
	static const char *names[] = { "idle", "hello", "auth", "live" };

	return names[st];
}

static int
send_buf(agent_session *s, qes_buf *b, const char *what)
{
	int r;

	if ((r = agent_conn_send(s->conn, qes_buf_data(b), qes_buf_len(b))) != 0)
		agent_log(AGENT_LOG_WARN, "send_failed", "message", what,
		    "error", qes_errname(r), NULL);
	return r;
}

/* Send one message built by fn; logs and drops it on failure. */
#define SEND_BUILT(s, what, call) do {						\
	qes_buf *b_ = qes_buf_new();						\
	char id_[23];								\
	int r_;									\
	if (b_ == NULL || qes_proto_new_id(id_) != 0) {				\
		qes_buf_free(b_);						\
		break;								\
	}									\
	r_ = (call);								\
	if (r_ == 0)								\
		(void)send_buf((s), b_, (what));				\
	else									\
		agent_log(AGENT_LOG_ERROR, "build_failed", "message", (what),	\
		    "error", qes_errname(r_), NULL);				\
	qes_buf_free(b_);							\
} while (0)

static void
send_error(agent_session *s, const char *code, const char *message,
    const char *ref_id)
{
	qes_proto_error e = { code, message, ref_id };

	SEND_BUILT(s, "error", qes_proto_build_error(id_, &e, b_));
}

static void
protocol_error(agent_session *s, int code, const char *detail)
{
	agent_log(AGENT_LOG_ERROR, "protocol_error", "state", state_name(s->st),
	    "detail", detail, NULL);
	agent_conn_close(s->conn, code, detail);
}

/* ---- inventory ----------------------------------------------------------- */

static void
send_inventory(agent_session *s)
{
	const qes_p11_inventory *inv;
	json_t *doc = NULL;
	char n[16];
	int r;

	if (s->st != ST_LIVE || s->snap == NULL)
		return;
	inv = agent_snapshot_inv(s->snap);
	s->inventory_due = 0;
	s->inventory_sent_ms = agent_now_ms();
	if ((doc = qes_report_inventory(s->o.p11, inv)) == NULL ||
	    (r = qes_proto_inventory_attach_certs(doc, inv)) != 0) {
		agent_log(AGENT_LOG_ERROR, "inventory_failed", "error",
		    doc == NULL ? "out of memory" : qes_errname(r), NULL);
		json_decref(doc);
		return;
	}
	snprintf(n, sizeof(n), "%zu", inv->n_tokens);
	SEND_BUILT(s, "inventory", qes_proto_build_inventory(id_, doc, b_));
	agent_log(AGENT_LOG_INFO, "inventory_sent", "slots", n, NULL);
	json_decref(doc);
}

/* A new inventory: keep it for the jobs, send it (at most every 2 s). */
static void
new_inventory(agent_session *s, qes_p11_inventory *inv)
{
	agent_snapshot *snap;

	if ((snap = agent_snapshot_new(inv)) == NULL)
		return;
	agent_snapshot_unref(s->snap);
	s->snap = snap;
	s->inventory_due = 1;
	if (agent_now_ms() - s->inventory_sent_ms >= INVENTORY_MIN_GAP_MS)
		send_inventory(s);
}

static void
on_hotplug(void *arg, qes_p11_inventory *inv)
{
	agent_session *s = arg;

	agent_jobs_post_inventory(s->jobs, inv);	/* to the loop */
}

/* ---- results from the jobs ------------------------------------------------ */

static void
send_sign_result(agent_session *s, agent_result *r)
{
	qes_proto_sign_result sr;
	qes_proto_bytes *sigs = NULL;
	char ms[24];
	size_t i;

	memset(&sr, 0, sizeof(sr));
	sr.job_id = r->id;
	snprintf(ms, sizeof(ms), "%lld", (long long)r->dialog_ms);
	if (r->err == 0) {
		if ((sigs = calloc(r->n_sigs, sizeof(*sigs))) == NULL)
			return;
		for (i = 0; i < r->n_sigs; i++) {
			sigs[i].data = qes_buf_data(r->sigs[i]);
			sigs[i].len = qes_buf_len(r->sigs[i]);
		}
		sr.status = QES_PROTO_STATUS_OK;
		sr.signatures = sigs;
		sr.n_signatures = r->n_sigs;
		agent_log(AGENT_LOG_INFO, "job_done", "job", r->id, "status", "ok",
		    "duration_ms", ms, NULL);
	} else {
		sr.status = QES_PROTO_STATUS_ERROR;
		sr.error = qes_errname(r->err);
		sr.detail = r->detail[0] != '\0' ? r->detail : NULL;
		sr.has_pin_flags = r->has_pin_flags;
		sr.pin_flags = r->pin_flags;
		agent_log(AGENT_LOG_INFO, "job_done", "job", r->id, "status", "error",
		    "error", sr.error, "detail", r->detail, "duration_ms", ms, NULL);
	}
	{
		qes_buf *b = qes_buf_new();
		char id[23];
		int e = QES_ERR_ALLOC;

		if (b != NULL && qes_proto_new_id(id) == 0) {
			e = qes_proto_build_sign_result(id, &sr, b);
			if (e != 0 && sr.detail != NULL) {
				/* a detail the schema refuses must not lose the result */
				sr.detail = NULL;
				e = qes_proto_build_sign_result(id, &sr, b);
			}
		}
		if (e == 0)
			(void)send_buf(s, b, "sign_result");
		else
			agent_log(AGENT_LOG_ERROR, "build_failed", "message",
			    "sign_result", "job", r->id, "error", qes_errname(e), NULL);
		qes_buf_free(b);
	}
	free(sigs);
}

/* A running job's progress: its dialog is open, or the signer consented. */
static void
send_sign_status(agent_session *s, const agent_result *r)
{
	const char *name = r->sign_state == QES_PROTO_SIGN_CONSENTED ?
	    "consented" : "awaiting_user";
	char ms[24];

	if (s->no_sign_status)
		return;
	snprintf(ms, sizeof(ms), "%lld", (long long)r->dialog_ms);
	SEND_BUILT(s, "sign_status", qes_proto_build_sign_status(id_, r->id,
	    r->sign_state, b_));
	agent_log(AGENT_LOG_INFO, "job_status", "job", r->id, "state", name,
	    "since_receipt_ms", ms, NULL);
}

static void
handle_result(agent_session *s, agent_result *r)
{
	switch (r->kind) {
	case AGENT_RESULT_SIGN_STATUS:
		/* a status of an older session is dropped like its result */
		if (r->session == s->gen && s->st == ST_LIVE)
			send_sign_status(s, r);
		break;
	case AGENT_RESULT_INVENTORY:
		new_inventory(s, r->inv);
		r->inv = NULL;
		break;
	case AGENT_RESULT_SIGN:
		if (r->session != s->gen || s->st != ST_LIVE) {
			agent_log(AGENT_LOG_INFO, "job_result_dropped", "job", r->id,
			    "reason", "its session ended", NULL);
			break;
		}
		send_sign_result(s, r);
		break;
	case AGENT_RESULT_DIAGNOSE:
		if (r->session != s->gen || s->st != ST_LIVE)
			break;
		if (r->report == NULL) {
			send_error(s, "internal", qes_strerror(r->err), r->id);
			break;
		}
		SEND_BUILT(s, "diagnose_result", qes_proto_build_diagnose_result(id_,
		    r->id, r->report, &r->timings, b_));
		agent_log(AGENT_LOG_INFO, "diagnose_done", "ref", r->id, NULL);
		break;
	}
	agent_result_free(r);
}

static void
drain_results(agent_session *s)
{
	agent_result *r;

	while ((r = agent_jobs_take(s->jobs)) != NULL)
		handle_result(s, r);
}

/* ---- messages from the gateway -------------------------------------------- */

static void
on_challenge(agent_session *s, const qes_proto_challenge *ch)
{
	const agent_enrollment *e = s->o.enrollment;
	qes_proto_auth a;
	qes_buf *tbs = NULL, *sig = NULL;
	int r;

	/*
	 * A relay that forwards another server's challenge gets nothing: we
	 * sign only for the host we enrolled with and dialed.
	 */
	if (strcmp(ch->server_name, e->server_name) != 0) {
		agent_log(AGENT_LOG_ERROR, "server_name_mismatch", "expected",
		    e->server_name, "got", ch->server_name, NULL);
		agent_conn_close(s->conn, QES_PROTO_CLOSE_AUTH_FAILED,
		    "server_name mismatch");
		return;
	}
	if ((tbs = qes_buf_new()) == NULL || (sig = qes_buf_new()) == NULL)
		goto out;
	if ((r = qes_proto_auth_tbs(ch->nonce, e->device_id, ch->server_name,
	    ch->session_id, tbs)) != 0 ||
	    (r = agent_devkey_sign(s->o.key, qes_buf_data(tbs), qes_buf_len(tbs),
	    sig)) != 0) {
		agent_log(AGENT_LOG_ERROR, "auth_sign_failed", "error", qes_errname(r), NULL);
		agent_conn_close(s->conn, CLOSE_INTERNAL, "cannot sign the challenge");
		goto out;
	}
	snprintf(s->session_id, sizeof(s->session_id), "%s", ch->session_id);
	a.device_id = e->device_id;
	a.signature.data = qes_buf_data(sig);
	a.signature.len = qes_buf_len(sig);
	SEND_BUILT(s, "auth", qes_proto_build_auth(id_, &a, b_));
	s->st = ST_AUTH;
 out:
	qes_buf_free(tbs);
	qes_buf_free(sig);
}

static void
on_auth_ok(agent_session *s, const qes_proto_auth_ok *ok)
{
	char hb[16];

	if (strcmp(ok->session_id, s->session_id) != 0) {
		protocol_error(s, QES_PROTO_CLOSE_PROTOCOL_ERROR,
		    "auth_ok names another session");
		return;
	}
	s->st = ST_LIVE;
	s->live_ms = agent_now_ms();
	agent_conn_set_heartbeat(s->conn, (unsigned)ok->heartbeat_s);
	snprintf(hb, sizeof(hb), "%lld", (long long)ok->heartbeat_s);
	agent_log(AGENT_LOG_INFO, "session_open", "session", s->session_id,
	    "device", s->o.enrollment->device_id, "heartbeat_s", hb, NULL);
	send_inventory(s);
}

static void
on_sign(agent_session *s, const qes_proto_msg *m)
{
	const qes_proto_sign *rq = &m->u.sign;
	char detail[256], prefix[17], n[16];
	qes_proto_sign_result sr;
	size_t i;
	int r;

	for (i = 0; i < 8; i++)
		snprintf(prefix + 2 * i, 3, "%02x", rq->digests[i]);
	snprintf(n, sizeof(n), "%zu", rq->n_digests);
	agent_log(AGENT_LOG_INFO, "sign_request", "job", rq->job_id, "credential",
	    rq->credential, "digests", n, "first_digest_prefix", prefix,
	    "verification_code", rq->verification_code, NULL);
	r = agent_jobs_sign(s->jobs, s->gen, s->snap, rq, agent_now_ms(), detail,
	    sizeof(detail));
	if (r == 0)
		return;
	if (r == QES_ERR_CONFLICT) {
		send_error(s, "duplicate_job", detail, m->id);
		return;
	}
	/* refused before it started: the one sign_result it gets */
	agent_log(AGENT_LOG_INFO, "job_refused", "job", rq->job_id, "error",
	    qes_errname(r), "detail", detail, NULL);
	memset(&sr, 0, sizeof(sr));
	sr.job_id = rq->job_id;
	sr.status = QES_PROTO_STATUS_ERROR;
	sr.error = qes_errname(r);
	sr.detail = detail[0] != '\0' ? detail : NULL;
	SEND_BUILT(s, "sign_result", qes_proto_build_sign_result(id_, &sr, b_));
}

static void
on_live_message(agent_session *s, const qes_proto_msg *m)
{
	switch (m->type) {
	case QES_PROTO_SIGN:
		on_sign(s, m);
		break;
	case QES_PROTO_CANCEL:
		if (agent_jobs_cancel(s->jobs, m->u.cancel.job_id) != 0)
			send_error(s, "unknown_job", "no open job with this id", m->id);
		break;
	case QES_PROTO_DIAGNOSE:
		if (agent_jobs_diagnose(s->jobs, s->gen, m->id, agent_now_ms()) != 0)
			send_error(s, "unexpected_message", "a diagnosis is running",
			    m->id);
		break;
	case QES_PROTO_PING:
		SEND_BUILT(s, "pong", qes_proto_build_pong(id_, m->id, m->u.ping.ts, b_));
		break;
	case QES_PROTO_PONG:
		break;
	case QES_PROTO_ERROR:
		agent_log(AGENT_LOG_WARN, "gateway_error", "code", m->u.error.code,
		    "message", m->u.error.message, "ref", m->u.error.ref_id, NULL);
		break;
	default:
		protocol_error(s, QES_PROTO_CLOSE_PROTOCOL_ERROR, "unexpected message "
		    "on a live session");
		break;
	}
}

static void
on_message(void *arg, const uint8_t *data, size_t len)
{
	agent_session *s = arg;
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	char err[256], detail[300];
	int r;

	qes_proto_limits_init(&lim, QES_PROTO_ROLE_AGENT);
	if ((r = qes_proto_parse(data, len, &lim, &m, err, sizeof(err))) != 0) {
		protocol_error(s, r == QES_ERR_LIMIT ? CLOSE_MESSAGE_TOO_BIG :
		    QES_PROTO_CLOSE_PROTOCOL_ERROR, err);
		return;
	}
	if (m->type == QES_PROTO_ERROR && s->st != ST_LIVE) {
		agent_log(AGENT_LOG_WARN, "gateway_error", "code", m->u.error.code,
		    "message", m->u.error.message, NULL);
	} else if (s->st == ST_HELLO && m->type == QES_PROTO_CHALLENGE) {
		on_challenge(s, &m->u.challenge);
	} else if (s->st == ST_AUTH && m->type == QES_PROTO_AUTH_OK) {
		on_auth_ok(s, &m->u.auth_ok);
	} else if (s->st == ST_LIVE) {
		on_live_message(s, m);
	} else {
		snprintf(detail, sizeof(detail), "unexpected %s before auth_ok",
		    qes_proto_type_name(m->type));
		protocol_error(s, QES_PROTO_CLOSE_PROTOCOL_ERROR, detail);
	}
	qes_proto_msg_free(m);
	drain_results(s);	/* e.g. a queued job that a cancel just ended */
}

/* ---- the connection's life ------------------------------------------------ */

static void
on_opened(void *arg)
{
	agent_session *s = arg;
	const agent_enrollment *e = s->o.enrollment;
	char os[QES_PROTO_NAME_MAX + 1];
	qes_proto_hello h;

	s->gen++;
	s->st = ST_HELLO;
	s->opened_ms = agent_now_ms();
	s->live_ms = 0;
	s->session_id[0] = '\0';
	agent_os_describe(os, sizeof(os));
	h.agent_version = QES_VERSION;
	h.os = os;
	h.device_id = e->device_id;
	SEND_BUILT(s, "hello", qes_proto_build_hello(id_, &h, b_));
}

static uint64_t
random64(void)
{
	uint64_t v = 0;

	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		v = (uint64_t)agent_now_ms() * 6364136223846793005ULL;
	return v;
}

static void
finish(agent_session *s, int exit_code)
{
	s->exit_code = exit_code;
	agent_conn_stop(s->conn);
}

static void
on_closed(void *arg, int code, const char *reason)
{
	agent_session *s = arg;
	enum state was = s->st;
	int64_t now = agent_now_ms();
	uint32_t delay;
	char c[16], d[24];

	s->st = ST_IDLE;
	if (code == QES_PROTO_CLOSE_PROTOCOL_ERROR && reason != NULL &&
	    strstr(reason, "unknown type \"sign_status\"") != NULL && !s->no_sign_status) {
		/* docs/protocol.md 14: a gateway older than sign_status; jobs
		 * still work without it */
		s->no_sign_status = 1;
		agent_log(AGENT_LOG_WARN, "sign_status_unsupported", "message",
		    "the server does not know sign_status: upgrade it; this agent "
		    "stops sending it until restarted", NULL);
	}
	agent_jobs_cancel_session(s->jobs, s->gen);
	drain_results(s);	/* drops what belonged to the closed session */
	snprintf(c, sizeof(c), "%d", code);
	if (s->stopping) {
		agent_log(AGENT_LOG_INFO, "disconnected", "code", c, "reason", reason,
		    NULL);
		finish(s, s->exit_code);
		return;
	}
	if (code == QES_PROTO_CLOSE_DEVICE_REVOKED) {
		agent_log(AGENT_LOG_ERROR, "device_revoked", "device",
		    s->o.enrollment->device_id, "message", "the server revoked this "
		    "device: enroll again with `qes-agent enroll --force --server URL "
		    "--code NEW_CODE`", NULL);
		fprintf(stderr, "qes-agent: this device (%s) was revoked at %s. "
		    "Enroll again: qes-agent enroll --force --server %s --code NEW_CODE\n",
		    s->o.enrollment->device_id, s->o.enrollment->server_url,
		    s->o.enrollment->server_url);
		finish(s, AGENT_EXIT_REVOKED);
		return;
	}
	if (code == QES_PROTO_CLOSE_REPLACED) {
		agent_log(AGENT_LOG_ERROR, "session_replaced", "device",
		    s->o.enrollment->device_id, "message", "another process connected "
		    "with this device's identity; this one stops", NULL);
		fprintf(stderr, "qes-agent: another qes-agent connected as device %s; "
		    "this one stops. Run only one agent per enrollment.\n",
		    s->o.enrollment->device_id);
		finish(s, AGENT_EXIT_REPLACED);
		return;
	}
	if (s->live_ms != 0 && now - s->live_ms >= QES_PROTO_STABLE_S * 1000)
		s->attempt = 0;
	if (code == QES_PROTO_CLOSE_SERVER_DRAINING) {
		delay = (uint32_t)(random64() % (DRAIN_RECONNECT_MS + 1));
	} else {
		delay = qes_proto_backoff_ms(s->attempt, random64());
		if (s->attempt < 32)
			s->attempt++;
		if (code == QES_PROTO_CLOSE_AUTH_FAILED) {
			agent_log(AGENT_LOG_ERROR, "auth_failed", "device",
			    s->o.enrollment->device_id, "message", "the server did "
			    "not accept this device: check the enrollment (qes-agent "
			    "enroll)", NULL);
			if (delay < AUTH_FAILED_MIN_MS)
				delay = AUTH_FAILED_MIN_MS;
		}
	}
	s->live_ms = 0;
	/* a replica that is gone or leaving: the next one (addresses.h) */
	if (agent_addrs_rotate_on(code))
		agent_conn_next_address(s->conn);
	snprintf(d, sizeof(d), "%u", delay);
	agent_log(was == ST_LIVE ? AGENT_LOG_WARN : AGENT_LOG_INFO, "disconnected",
	    "code", c, "reason", reason, "state", state_name(was), "retry_in_ms", d,
	    NULL);
	agent_conn_dial(s->conn, delay);
}

static void
begin_stop(agent_session *s)
{
	s->stopping = 1;
	s->stop_deadline_ms = agent_now_ms() + STOP_GRACE_MS;
	agent_log(AGENT_LOG_INFO, "stopping", NULL);
	agent_jobs_cancel_session(s->jobs, s->gen);
	if (agent_conn_active(s->conn))
		agent_conn_close(s->conn, CLOSE_NORMAL, "the agent is stopping");
	else
		finish(s, s->exit_code);
}

static void
on_woken(void *arg)
{
	agent_session *s = arg;

	if (atomic_load(&s->stop_requested) && !s->stopping)
		begin_stop(s);
	drain_results(s);
}

static void
on_tick(void *arg)
{
	agent_session *s = arg;
	int64_t now = agent_now_ms();

	if (atomic_load(&s->stop_requested) && !s->stopping)
		begin_stop(s);
	if (s->stopping && now > s->stop_deadline_ms) {
		finish(s, s->exit_code);
		return;
	}
	if ((s->st == ST_HELLO || s->st == ST_AUTH) &&
	    now - s->opened_ms > QES_PROTO_AUTH_TIMEOUT_S * 1000 + AUTH_GRACE_MS)
		agent_conn_drop(s->conn, "no auth_ok from the server in time");
	agent_jobs_tick(s->jobs, now);
	if (s->inventory_due && now - s->inventory_sent_ms >= INVENTORY_MIN_GAP_MS)
		send_inventory(s);
	drain_results(s);
}

/* ---- life cycle ------------------------------------------------------------ */

static void
wake_loop(void *conn)
{
	agent_conn_wake(conn);
}

int
agent_session_new(const agent_session_opts *o, agent_session **out, char *err,
    size_t err_len)
{
	const agent_enrollment *e = o->enrollment;
	agent_conn_opts co;
	agent_jobs_opts jo;
	qes_p11_inventory *inv = NULL;
	agent_session *s;
	int r;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return QES_ERR_ALLOC;
	s->o = *o;
	atomic_init(&s->stop_requested, 0);
	memset(&co, 0, sizeof(co));
	co.host = e->host;
	co.port = e->port;
	co.addrs = o->addrs;
	co.ca_file = e->system_trust ? NULL : e->ca_path;
	co.user_agent = "qes-agent/" QES_VERSION;
	co.cb.opened = on_opened;
	co.cb.message = on_message;
	co.cb.closed = on_closed;
	co.cb.woken = on_woken;
	co.cb.tick = on_tick;
	co.cb.arg = s;
	if ((r = agent_conn_new(&co, &s->conn, err, err_len)) != 0)
		goto fail;
	memset(&jo, 0, sizeof(jo));
	jo.p11 = o->p11;
	jo.pin_source = o->pin_source;
	jo.pinentry = o->pinentry;
	jo.wake = wake_loop;
	jo.wake_arg = s->conn;
	if ((r = agent_jobs_new(&jo, &s->jobs)) != 0) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	if (!o->no_hotplug &&
	    (r = agent_hotplug_start(o->p11, NULL, on_hotplug, s, &s->hotplug)) == 0) {
		agent_jobs_set_hotplug(s->jobs, s->hotplug);
	} else {
		/* no watcher: one inventory now, and after each job that changes one */
		if (!o->no_hotplug)
			agent_log(AGENT_LOG_WARN, "hotplug_unavailable", "error",
			    qes_errname(r), NULL);
		if ((r = qes_p11_scan(o->p11, &inv)) != 0) {
			snprintf(err, err_len, "cannot read the tokens: %s", qes_strerror(r));
			goto fail;
		}
		agent_jobs_post_inventory(s->jobs, inv);
	}
	*out = s;
	return 0;
 fail:
	agent_session_free(s);
	return r;
}

void
agent_session_free(agent_session *s)
{
	if (s == NULL)
		return;
	/* workers use the watcher's gate; the watcher posts to the jobs */
	if (s->jobs != NULL)
		agent_jobs_stop(s->jobs);
	agent_hotplug_stop(s->hotplug);
	agent_jobs_free(s->jobs);
	agent_conn_free(s->conn);
	agent_snapshot_unref(s->snap);
	free(s);
}

int
agent_session_run(agent_session *s)
{
	int r;

	s->exit_code = QES_EXIT_OK;
	agent_log(AGENT_LOG_INFO, "agent_started", "version", QES_VERSION, "server",
	    s->o.enrollment->server_url, "device", s->o.enrollment->device_id,
	    "trust", s->o.enrollment->system_trust ? "system" : s->o.enrollment->ca_path,
	    NULL);
	agent_conn_dial(s->conn, 0);
	if ((r = agent_conn_run(s->conn)) != 0) {
		agent_log(AGENT_LOG_ERROR, "loop_failed", "error", qes_errname(r), NULL);
		return QES_EXIT_FAILURE;
	}
	return s->exit_code;
}

void
agent_session_request_stop(agent_session *s)
{
	atomic_store(&s->stop_requested, 1);
	agent_conn_wake(s->conn);
}
