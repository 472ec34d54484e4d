/*
 * hub_ws.c - the agent endpoint: wss://HOST/v1/agent, WebSocket
 * sub-protocol qes.v1 (include/qes/proto.h, docs/protocol.md), on the API
 * vhost of server.c, on its loop thread.
 *
 * A connection goes HELLO -> AUTH -> AUTHING -> LIVE, or to CLOSING from
 * anywhere:
 *   hello      the agent names its device; we answer a challenge: a fresh
 *              nonce (never issued twice in the window this process
 *              remembers), our server name, the new session id
 *   auth       the agent signs qes_proto_auth_tbs(nonce, device, server
 *              name, session) with its device key; the nonce is forgotten
 *              at once (one auth per connection), and the store lookup and
 *              the check run on a worker (hub.c). A signature made for
 *              another connection's challenge cannot verify here: the
 *              nonce and the session id are in the signed bytes.
 *   auth_ok    the session is registered in the hub (a newer session of a
 *              device closes the older with 4003) and messages flow
 * Anything else, in any state, closes the connection with 4000 and a
 * reason naming the problem (audited as device.protocol_error once the
 * device is known); a refused authentication closes with 4001 (audited as
 * device.auth_failed in the device's tenant when the device exists) - but a
 * revoked device that signed correctly gets 4002, which tells the agent to
 * stop retrying and enroll again.
 *
 * Every frame is reassembled up to the limit of the state (64 KiB before
 * authentication, 1 MiB after) and parsed by qes_proto_parse in the
 * gateway role: binary frames, oversized or malformed messages and types
 * an agent may not send are refused, never half-read. Parsing is bounded
 * CPU work and happens here; store work never does (hub.c).
 *
 * Heartbeats: a WebSocket ping every agent_ping_interval_s; a session that
 * sent nothing (no frame, no pong) for agent_dead_after_s is dropped
 * without a close handshake (heartbeat_timeout) - a dead peer would not
 * answer one. An agent that does not authenticate within
 * QES_PROTO_AUTH_TIMEOUT_S is closed with 4001.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libwebsockets.h>

#include "qes/err.h"
#include "qes/proto.h"
#include "app.h"
#include "hub.h"
#include "hub_priv.h"
#include "hub_ws.h"
#include "log.h"
#include "ratelimit.h"

_Static_assert(LWS_PRE == 16, "hub.c reserves 16 bytes (LWS_PRE) per frame");

/*
 * libwebsockets' receive buffer of every agent connection: idle sessions
 * dominate, and bench/sessions.sh measured 16 KiB of it in each session's
 * 27 KiB. Messages span chunks anyway (on_receive gathers them up to
 * QES_PROTO_MAX_BYTES), so a small chunk only costs callbacks on the rare
 * large message (an inventory, a diagnostics report).
 */
#define RX_CHUNK_BYTES		4096
#define HOUSEKEEPING_MS		250
#define CLOSE_GRACE_MS		5000
#define DRAIN_CHECK_MS		500	/* a kept session's jobs looked at */

static void drain_look(qesd_hub *hub, int64_t now);

struct ws_pss {
	struct hub_sess *s;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the upgrade ---- */

int
qesd_hub_ws_confirm_upgrade(qesd_hub *hub, struct lws *wsi, const char *upgrade)
{
	char uri[32], proto[32], addr[QESD_ADDR_TEXT_MAX], key[QESD_RL_KEY_MAX];
	uint32_t retry_s;
	int n;

	if (hub == NULL || upgrade == NULL || strcasecmp(upgrade, "websocket") != 0)
		return -1;
	n = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI);
	if (n <= 0 || (size_t)n >= sizeof(uri) ||
	    lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) != n ||
	    strcmp(uri, QES_PROTO_PATH) != 0 ||
	    lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0)
		return -1;
	n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
	if (n <= 0 || (size_t)n >= sizeof(proto) ||
	    lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) != n ||
	    strcmp(proto, QES_PROTO_SUBPROTOCOL) != 0) {
		qesd_log(QESD_LOG_INFO, "agent upgrade refused: sub-protocol qes.v1 required");
		return -1;
	}
	if (hub->draining || hub->n_pending_auth >= HUB_MAX_PENDING_AUTH) {
		qesd_log(QESD_LOG_WARN, "agent upgrade refused: too many connections waiting for authentication",
		    QLI("pending", hub->n_pending_auth));
		return -1;
	}
	lws_get_peer_simple(wsi, addr, sizeof(addr));
	qesd_addr_key(addr, key);
	if (hub->app->rl_addr != NULL && qesd_ratelimit_take(hub->app->rl_addr,
	    key, qesd_mono_ms(), &retry_s) == QES_ERR_LIMIT) {
		qesd_log(QESD_LOG_WARN, "agent upgrade refused: rate limit",
		    QLS("client", addr));
		return -1;
	}
	return 0;
}

/* ---- closing ---- */

/* Ask the loop to close s with a close frame (first reason wins). */
static void
close_session(struct hub_sess *s, int code, const char *detail,
    const char *reason)
{
	qesd_hub *hub = s->hub;

	pthread_mutex_lock(&hub->mu);
	hub_request_close_locked(s, code, detail, reason);
	pthread_mutex_unlock(&hub->mu);
	if (s->state != HS_CLOSING) {
		s->state = HS_CLOSING;
		s->auth_deadline_mono = mono_ms() + CLOSE_GRACE_MS;
	}
	if (s->wsi != NULL)
		lws_callback_on_writable(s->wsi);
}

static void
protocol_error(struct hub_sess *s, const char *detail)
{
	qesd_log(QESD_LOG_WARN, "agent protocol error: closing the session",
	    QLS("session_id", s->session_id),
	    QLS("tenant", s->tenant_id[0] ? s->tenant_id : NULL),
	    QLS("device_id", s->device_id[0] ? s->device_id : NULL),
	    QLS("client", s->client_addr), QLS("error", detail));
	if (s->detail[0] == '\0')
		snprintf(s->detail, sizeof(s->detail), "%s", detail);
	close_session(s, QES_PROTO_CLOSE_PROTOCOL_ERROR, detail, "protocol_error");
}

/* Drop the connection now, without a close handshake (dead peers). */
static void
kill_session(struct hub_sess *s, const char *reason)
{
	qesd_hub *hub = s->hub;

	pthread_mutex_lock(&hub->mu);
	hub_request_close_locked(s, 1001, reason, reason);
	pthread_mutex_unlock(&hub->mu);
	s->state = HS_CLOSING;
	s->auth_deadline_mono = mono_ms() + CLOSE_GRACE_MS;
	if (s->wsi != NULL)
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- sending from the loop ---- */

static void
send_built(struct hub_sess *s, qes_buf *b, const char *what)
{
	if (hub_queue_frame(s, qes_buf_data(b), qes_buf_len(b)) != 0) {
		qesd_log(QESD_LOG_ERROR, "cannot queue a message to an agent",
		    QLS("session_id", s->session_id), QLS("type", what));
		close_session(s, 1011, "internal error", "internal_error");
		return;
	}
	if (s->wsi != NULL)
		lws_callback_on_writable(s->wsi);
}

/* A nonce this process has not issued within its memory (HUB_NONCES). */
static int
fresh_nonce(qesd_hub *hub, uint8_t out[QES_PROTO_NONCE_LEN])
{
	size_t i, tries;
	int seen;

	for (tries = 0; tries < 4; tries++) {
		if (qes_proto_new_nonce(out) != 0)
			return QES_ERR_CRYPTO;
		seen = 0;
		for (i = 0; i < hub->n_nonces && !seen; i++)
			seen = memcmp(hub->nonces[i], out, HUB_NONCE_PREFIX) == 0;
		if (seen)
			continue;	/* a broken CSPRNG, or astronomic luck */
		memcpy(hub->nonces[hub->nonce_next], out, HUB_NONCE_PREFIX);
		hub->nonce_next = (hub->nonce_next + 1) % HUB_NONCES;
		if (hub->n_nonces < HUB_NONCES)
			hub->n_nonces++;
		return 0;
	}
	return QES_ERR_CRYPTO;
}

/* ---- messages ---- */

static void
on_hello(struct hub_sess *s, const qes_proto_msg *m)
{
	qesd_hub *hub = s->hub;
	qes_proto_challenge ch;
	char id[23];
	qes_buf *b = NULL;

	snprintf(s->agent_version, sizeof(s->agent_version), "%s",
	    m->u.hello.agent_version);
	snprintf(s->os, sizeof(s->os), "%s", m->u.hello.os);
	/* claimed, not yet proven: kept apart until auth succeeds */
	if (strlen(m->u.hello.device_id) >= sizeof(s->claimed_device)) {
		protocol_error(s, "hello.device_id: too long");
		return;
	}
	memcpy(s->claimed_device, m->u.hello.device_id,
	    strlen(m->u.hello.device_id) + 1);
	memset(&ch, 0, sizeof(ch));
	if (fresh_nonce(hub, s->nonce) != 0 || qes_proto_new_id(id) != 0 ||
	    (b = qes_buf_new()) == NULL) {
		close_session(s, 1011, "internal error", "internal_error");
		goto out;
	}
	s->nonce_set = 1;
	memcpy(ch.nonce, s->nonce, sizeof(ch.nonce));
	ch.server_name = hub->server_name;
	ch.session_id = s->session_id;
	if (qes_proto_build_challenge(id, &ch, b) != 0) {
		close_session(s, 1011, "internal error", "internal_error");
		goto out;
	}
	s->state = HS_AUTH;
	send_built(s, b, "challenge");
 out:
	qes_wipe(&ch, sizeof(ch));
	qes_buf_free(b);
}

static void
on_auth(struct hub_sess *s, const qes_proto_msg *m, const char *hello_device)
{
	struct hub_auth *a;

	if (strcmp(m->u.auth.device_id, hello_device) != 0) {
		qesd_log(QESD_LOG_WARN, "agent authentication refused: device id differs from hello",
		    QLS("session_id", s->session_id), QLS("client", s->client_addr));
		close_session(s, QES_PROTO_CLOSE_AUTH_FAILED,
		    "device_id differs from hello", "auth_failed");
		return;
	}
	if (!s->nonce_set || m->u.auth.signature.len > QES_PROTO_AUTH_SIG_MAX ||
	    (a = calloc(1, sizeof(*a))) == NULL) {
		close_session(s, QES_PROTO_CLOSE_AUTH_FAILED, NULL, "auth_failed");
		return;
	}
	a->sess = s;
	snprintf(a->device_id, sizeof(a->device_id), "%s", hello_device);
	memcpy(a->nonce, s->nonce, sizeof(a->nonce));
	memcpy(a->sig, m->u.auth.signature.data, m->u.auth.signature.len);
	a->sig_len = m->u.auth.signature.len;
	a->now_ms = qesd_now_ms(s->hub->app);
	/* one auth per challenge: the nonce is gone from this connection */
	qes_wipe(s->nonce, sizeof(s->nonce));
	s->nonce_set = 0;
	s->state = HS_AUTHING;
	hub_start_auth(a);
}

static void
on_live_message(struct hub_sess *s, qes_proto_msg *m)
{
	struct hub_ev *ev;
	qes_buf *b;
	char id[23];
	size_t n;

	switch (m->type) {
	case QES_PROTO_PING:
		/* the agent's own heartbeat: answered here, nothing to store */
		if ((b = qes_buf_new()) == NULL || qes_proto_new_id(id) != 0 ||
		    qes_proto_build_pong(id, m->id, m->u.ping.ts, b) != 0)
			close_session(s, 1011, "internal error", "internal_error");
		else
			send_built(s, b, "pong");
		qes_buf_free(b);
		qes_proto_msg_free(m);
		return;
	case QES_PROTO_INVENTORY:
	case QES_PROTO_SIGN_RESULT:
	case QES_PROTO_SIGN_STATUS:
	case QES_PROTO_DIAGNOSE_RESULT:
	case QES_PROTO_ERROR:
	case QES_PROTO_PONG:
		break;
	default:
		protocol_error(s, m->type == QES_PROTO_HELLO ?
		    "hello after authentication" : m->type == QES_PROTO_AUTH ?
		    "auth after authentication" : "unexpected message type");
		qes_proto_msg_free(m);
		return;
	}
	if ((ev = calloc(1, sizeof(*ev))) == NULL) {
		qes_proto_msg_free(m);
		close_session(s, 1011, "internal error", "internal_error");
		return;
	}
	ev->kind = EV_MESSAGE;
	ev->msg = m;
	ev->time_ms = qesd_now_ms(s->hub->app);
	hub_post(s, ev);
	pthread_mutex_lock(&s->hub->mu);
	n = s->ev_n;
	pthread_mutex_unlock(&s->hub->mu);
	if (n >= HUB_EV_PAUSE && !s->rx_paused && s->wsi != NULL) {
		/* the workers are behind: let TCP push back on the agent */
		lws_rx_flow_control(s->wsi, 0);
		s->rx_paused = 1;
	}
}

static void
on_message(struct hub_sess *s, const uint8_t *data, size_t len)
{
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	char err[200];
	int r;

	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	if (s->state != HS_LIVE)
		lim.max_bytes = QES_PROTO_MAX_SMALL_BYTES;
	err[0] = '\0';
	if ((r = qes_proto_parse(data, len, &lim, &m, err, sizeof(err))) != 0) {
		protocol_error(s, err[0] != '\0' ? err : qes_strerror(r));
		return;
	}
	switch (s->state) {
	case HS_HELLO:
		if (m->type != QES_PROTO_HELLO) {
			protocol_error(s, "expected hello");
			break;
		}
		on_hello(s, m);
		break;
	case HS_AUTH:
		if (m->type != QES_PROTO_AUTH) {
			protocol_error(s, "expected auth");
			break;
		}
		on_auth(s, m, s->claimed_device);
		break;
	case HS_AUTHING:
		protocol_error(s, "message before auth_ok");
		break;
	case HS_LIVE:
		on_live_message(s, m);
		return;		/* m is owned there */
	case HS_CLOSING:
		break;
	}
	qes_proto_msg_free(m);
}

static int
on_receive(struct hub_sess *s, struct lws *wsi, const void *in, size_t len)
{
	size_t max;

	if (s->state == HS_CLOSING)
		return 0;
	s->last_rx_mono = mono_ms();
	s->last_seen_ms = qesd_now_ms(s->hub->app);
	if (lws_frame_is_binary(wsi)) {
		protocol_error(s, "binary frames are not part of qes.v1");
		return 0;
	}
	max = s->state == HS_LIVE ? QES_PROTO_MAX_BYTES : QES_PROTO_MAX_SMALL_BYTES;
	if (qes_buf_len(s->rx) + len > max) {
		char d[64];

		snprintf(d, sizeof(d), "message larger than %zu bytes", max);
		protocol_error(s, d);
		qes_buf_reset(s->rx);
		return 0;
	}
	if (qes_buf_put(s->rx, in, len) != 0) {
		close_session(s, 1011, "internal error", "internal_error");
		return 0;
	}
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return 0;
	on_message(s, qes_buf_data(s->rx), qes_buf_len(s->rx));
	qes_buf_reset(s->rx);
	return 0;
}

/* ---- writing ---- */

static int
on_writable(struct hub_sess *s, struct lws *wsi)
{
	qesd_hub *hub = s->hub;
	struct hub_frame *f;
	/*
	 * The ping carries a payload: libwebsockets 4.1 raises no
	 * LWS_CALLBACK_RECEIVE_PONG for an empty pong, and without that callback
	 * every idle agent would look dead after agent_dead_after_s.
	 */
	unsigned char ping[LWS_PRE + 8];
	int64_t stamp;
	size_t i;
	char text[124];
	int code, more;

	pthread_mutex_lock(&hub->mu);
	if ((code = s->close_code) != 0) {
		memcpy(text, s->close_text, sizeof(text));
		pthread_mutex_unlock(&hub->mu);
		lws_close_reason(wsi, (enum lws_close_status)code,
		    (unsigned char *)text, strlen(text));
		return -1;
	}
	if (s->ping_due) {
		s->ping_due = 0;
		more = s->out_head != NULL;
		pthread_mutex_unlock(&hub->mu);
		stamp = mono_ms();
		for (i = 0; i < 8; i++)
			ping[LWS_PRE + i] = (unsigned char)((uint64_t)stamp >> (56 - 8 * i));
		if (lws_write(wsi, ping + LWS_PRE, 8, LWS_WRITE_PING) < 0)
			return -1;
		if (more)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if ((f = s->out_head) != NULL) {
		s->out_head = f->next;
		if (s->out_head == NULL)
			s->out_tail = NULL;
		s->out_n--;
		s->out_bytes -= f->len;
	}
	more = s->out_head != NULL;
	pthread_mutex_unlock(&hub->mu);
	if (f == NULL)
		return 0;
	if (lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) <
	    (int)f->len) {
		free(f);
		return -1;
	}
	free(f);
	if (more)
		lws_callback_on_writable(wsi);
	return 0;
}

/* ---- connection life ---- */

static void
link_conn(qesd_hub *hub, struct hub_sess *s)
{
	s->lprev = NULL;
	s->lnext = hub->conns;
	if (hub->conns != NULL)
		hub->conns->lprev = s;
	hub->conns = s;
	hub->n_conns++;
}

static void
unlink_conn(qesd_hub *hub, struct hub_sess *s)
{
	if (s->lprev != NULL)
		s->lprev->lnext = s->lnext;
	else
		hub->conns = s->lnext;
	if (s->lnext != NULL)
		s->lnext->lprev = s->lprev;
	s->lprev = s->lnext = NULL;
	hub->n_conns--;
}

static int
on_established(qesd_hub *hub, struct ws_pss *pss, struct lws *wsi)
{
	struct hub_sess *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -1;
	s->hub = hub;
	s->refs = 1;			/* the connection's */
	s->wsi = wsi;
	s->state = HS_HELLO;
	if ((s->rx = qes_buf_new()) == NULL ||
	    qesd_id_new("ses", s->session_id) != 0) {
		hub_sess_free(s);
		return -1;
	}
	qes_buf_set_max(s->rx, QES_PROTO_MAX_BYTES);
	lws_get_peer_simple(wsi, s->client_addr, sizeof(s->client_addr));
	s->connected_ms = qesd_now_ms(hub->app);
	s->last_seen_ms = s->connected_ms;
	s->last_rx_mono = mono_ms();
	s->auth_deadline_mono = s->last_rx_mono + QES_PROTO_AUTH_TIMEOUT_S * 1000;
	link_conn(hub, s);
	hub->n_pending_auth++;
	s->pending = 1;
	pss->s = s;
	qesd_log(QESD_LOG_DEBUG, "agent connected",
	    QLS("session_id", s->session_id), QLS("client", s->client_addr));
	return 0;
}

/* Leaving the "not yet authenticated" count, once. */
static void
leave_pending(struct hub_sess *s)
{
	if (s->pending) {
		s->pending = 0;
		s->hub->n_pending_auth--;
	}
}

static struct hub_ev *
closed_event(struct hub_sess *s, const char *reason)
{
	struct hub_ev *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return NULL;
	ev->kind = EV_CLOSED;
	ev->time_ms = qesd_now_ms(s->hub->app);
	ev->last_seen_ms = s->last_seen_ms;
	ev->notify = s->opened;
	snprintf(ev->reason, sizeof(ev->reason), "%s", reason);
	snprintf(ev->detail, sizeof(ev->detail), "%s", s->detail);
	return ev;
}

/* Why s closes: the first close decision, or what the peer did. */
static void
close_reason(struct hub_sess *s, char out[QESD_REASON_MAX])
{
	pthread_mutex_lock(&s->hub->mu);
	if (s->close_reason[0] != '\0')
		snprintf(out, QESD_REASON_MAX, "%s", s->close_reason);
	else
		snprintf(out, QESD_REASON_MAX, "%s", s->peer_closed ?
		    "peer_closed" : "connection_lost");
	pthread_mutex_unlock(&s->hub->mu);
}

void
hub_ws_closed(struct hub_sess *s)
{
	qesd_hub *hub = s->hub;
	struct hub_ev *ev;
	char reason[QESD_REASON_MAX];

	unlink_conn(hub, s);
	leave_pending(s);
	pthread_mutex_lock(&hub->mu);
	hub_unregister_locked(s);
	pthread_mutex_unlock(&hub->mu);
	close_reason(s, reason);
	s->wsi = NULL;
	s->state = HS_CLOSING;
	if (s->authed) {
		if ((ev = closed_event(s, reason)) != NULL)
			hub_post(s, ev);
		else
			qesd_log(QESD_LOG_ERROR, "out of memory: device session close not recorded",
			    QLS("session_id", s->session_id));
	} else {
		qesd_log(QESD_LOG_INFO, "agent disconnected before authentication",
		    QLS("session_id", s->session_id), QLS("client", s->client_addr),
		    QLS("reason", reason));
	}
	hub_sess_unref(s);	/* the connection's reference */
}

/* The authentication task came back (loop; or inline at shutdown). */
void
hub_ws_auth_done(struct hub_auth *a, int cancelled)
{
	struct hub_sess *s = a->sess;
	qesd_hub *hub = s->hub;
	qes_proto_auth_ok ok;
	struct hub_ev *ev;
	char reason[QESD_REASON_MAX], id[23];
	qes_buf *b = NULL;

	if (a->ok) {
		/* proven: the session row exists under this identity */
		s->authed = 1;
		memcpy(s->tenant_id, a->tenant_id, sizeof(s->tenant_id));
		memcpy(s->device_id, a->device_id, sizeof(s->device_id));
	}
	if (s->wsi == NULL || cancelled) {
		/* the connection went while the worker checked */
		if (a->ok && s->wsi == NULL) {
			close_reason(s, reason);
			if ((ev = closed_event(s, reason)) != NULL)
				hub_post(s, ev);
		}
		goto out;
	}
	if (!a->ok) {
		leave_pending(s);
		qesd_log(QESD_LOG_WARN, "agent authentication refused",
		    QLS("session_id", s->session_id), QLS("device_id", a->device_id),
		    QLS("tenant", a->tenant_id[0] ? a->tenant_id : NULL),
		    QLS("reason", a->fail_reason), QLS("client", s->client_addr));
		/* a revoked device that proved itself is told to stop for good
		 * (4002: enroll again); anything else may retry later (4001) */
		if (strcmp(a->fail_reason, "revoked") == 0)
			close_session(s, QES_PROTO_CLOSE_DEVICE_REVOKED,
			    "the device was revoked", "revoked");
		else
			close_session(s, QES_PROTO_CLOSE_AUTH_FAILED,
			    a->fail_reason, "auth_failed");
		goto out;
	}
	if (s->state != HS_AUTHING) {
		/* closing meanwhile (drain): the close records the row */
		leave_pending(s);
		goto out;
	}
	if (hub_register(s) != 0) {
		leave_pending(s);
		close_session(s, QES_PROTO_CLOSE_DEVICE_REVOKED,
		    "the device was revoked", "revoked");
		goto out;
	}
	leave_pending(s);
	s->state = HS_LIVE;
	s->next_ping_mono = mono_ms() + (int64_t)hub->cfg->agent_ping_interval_s * 1000;
	s->last_seen_written_ms = a->now_ms;
	memset(&ok, 0, sizeof(ok));
	ok.session_id = s->session_id;
	ok.heartbeat_s = hub->heartbeat_s;
	if ((b = qes_buf_new()) == NULL || qes_proto_new_id(id) != 0 ||
	    qes_proto_build_auth_ok(id, &ok, b) != 0) {
		close_session(s, 1011, "internal error", "internal_error");
		goto out;
	}
	send_built(s, b, "auth_ok");
	if ((ev = calloc(1, sizeof(*ev))) != NULL) {
		ev->kind = EV_OPEN;
		ev->time_ms = a->now_ms;
		s->opened = 1;
		hub_post(s, ev);
	}
	qesd_log(QESD_LOG_INFO, "device session open",
	    QLS("tenant", s->tenant_id), QLS("device_id", s->device_id),
	    QLS("session_id", s->session_id), QLS("agent_version", s->agent_version),
	    QLS("client", s->client_addr));
 out:
	qes_buf_free(b);
	qes_wipe(a, sizeof(*a));
	free(a);
	hub_sess_unref(s);
}

void
hub_ws_actor_done(struct hub_sess *s)
{
	size_t n;

	if (s->wsi == NULL || !s->rx_paused)
		return;
	pthread_mutex_lock(&s->hub->mu);
	n = s->ev_n;
	pthread_mutex_unlock(&s->hub->mu);
	if (n < HUB_EV_PAUSE / 2) {
		lws_rx_flow_control(s->wsi, 1);
		s->rx_paused = 0;
	}
}

/* ---- the protocol callback ---- */

static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	const struct lws_protocols *p = lws_get_protocol(wsi);
	qesd_hub *hub = p != NULL ? p->user : NULL;
	struct ws_pss *pss = user;
	struct hub_sess *s = pss != NULL ? pss->s : NULL;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		if (hub == NULL || pss == NULL)
			return -1;
		return on_established(hub, pss, wsi);
	case LWS_CALLBACK_RECEIVE:
		if (s == NULL)
			return -1;
		return on_receive(s, wsi, in, len);
	case LWS_CALLBACK_RECEIVE_PONG:
		if (s != NULL) {
			s->last_rx_mono = mono_ms();
			s->last_seen_ms = qesd_now_ms(hub->app);
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (s == NULL)
			return -1;
		return on_writable(s, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (s != NULL) {
			s->peer_closed = 1;
			if (s->state != HS_CLOSING)
				s->state = HS_CLOSING;
		}
		return 0;	/* lws answers the close */
	case LWS_CALLBACK_CLOSED:
		if (s != NULL) {
			pss->s = NULL;
			hub_ws_closed(s);
		}
		return 0;
	default:
		break;
	}
	return 0;
}

void
qesd_hub_ws_protocol(qesd_hub *hub, struct lws_protocols *p)
{
	memset(p, 0, sizeof(*p));
	p->name = QES_PROTO_SUBPROTOCOL;
	p->callback = ws_callback;
	p->per_session_data_size = sizeof(struct ws_pss);
	p->rx_buffer_size = RX_CHUNK_BYTES;
	p->user = hub;
}

/* ---- loop hooks ---- */

void
qesd_hub_ws_attach(qesd_hub *hub, qesd_server *srv)
{
	pthread_mutex_lock(&hub->mu);
	hub->srv = srv;
	pthread_mutex_unlock(&hub->mu);
}

void
qesd_hub_ws_detach(qesd_hub *hub)
{
	pthread_mutex_lock(&hub->mu);
	hub->srv = NULL;
	pthread_mutex_unlock(&hub->mu);
}

/* last_seen_at of live sessions that moved, in one write every 30 s. */
static void
flush_seen(qesd_hub *hub)
{
	qesd_session_seen *seen;
	struct hub_sess *s;
	size_t n = 0;

	if (hub->n_conns == 0 ||
	    (seen = calloc(hub->n_conns, sizeof(*seen))) == NULL)
		return;
	for (s = hub->conns; s != NULL; s = s->lnext) {
		if (!s->authed || s->state != HS_LIVE ||
		    s->last_seen_ms <= s->last_seen_written_ms)
			continue;
		memcpy(seen[n].tenant_id, s->tenant_id, QESD_ID_SIZE);
		memcpy(seen[n].session_id, s->session_id, QESD_ID_SIZE);
		seen[n].last_seen_at_ms = s->last_seen_ms;
		s->last_seen_written_ms = s->last_seen_ms;
		n++;
	}
	if (n == 0) {
		free(seen);
		return;
	}
	(void)hub_flush_seen(hub, seen, n);
}

void
qesd_hub_ws_tick(qesd_hub *hub)
{
	int64_t now = mono_ms(), dead_ms, ping_ms;
	struct hub_sess *s, *next;

	if (hub->draining && now >= hub->next_drain_check_mono)
		drain_look(hub, now);
	if (now < hub->next_housekeeping_mono)
		return;
	hub->next_housekeeping_mono = now + HOUSEKEEPING_MS;
	dead_ms = (int64_t)hub->cfg->agent_dead_after_s * 1000;
	ping_ms = (int64_t)hub->cfg->agent_ping_interval_s * 1000;
	for (s = hub->conns; s != NULL; s = next) {
		next = s->lnext;
		if (s->wsi == NULL)
			continue;
		switch (s->state) {
		case HS_HELLO:
		case HS_AUTH:
		case HS_AUTHING:
			if (now > s->auth_deadline_mono) {
				qesd_log(QESD_LOG_INFO, "agent did not authenticate in time",
				    QLS("session_id", s->session_id),
				    QLS("client", s->client_addr));
				leave_pending(s);
				close_session(s, QES_PROTO_CLOSE_AUTH_FAILED,
				    "authentication timed out", "auth_timeout");
			}
			break;
		case HS_LIVE:
			if (now - s->last_rx_mono > dead_ms) {
				qesd_log(QESD_LOG_INFO, "agent silent too long: dropping the session",
				    QLS("tenant", s->tenant_id),
				    QLS("device_id", s->device_id),
				    QLS("session_id", s->session_id),
				    QLI("silent_ms", now - s->last_rx_mono));
				kill_session(s, "heartbeat_timeout");
			} else if (now >= s->next_ping_mono) {
				s->next_ping_mono = now + ping_ms;
				pthread_mutex_lock(&hub->mu);
				s->ping_due = 1;
				pthread_mutex_unlock(&hub->mu);
				lws_callback_on_writable(s->wsi);
			}
			break;
		case HS_CLOSING:
			/* a peer that never reads cannot even take a close frame */
			if (now > s->auth_deadline_mono) {
				s->auth_deadline_mono = now + CLOSE_GRACE_MS;
				lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK,
				    LWS_TO_KILL_ASYNC);
			}
			break;
		}
	}
	if (now >= hub->next_seen_flush_mono) {
		if (hub->next_seen_flush_mono != 0)
			flush_seen(hub);
		hub->next_seen_flush_mono = now + HUB_SEEN_INTERVAL_MS;
	}
}

void
qesd_hub_ws_service(qesd_hub *hub)
{
	struct hub_sess *s, *next, *dead;

	pthread_mutex_lock(&hub->mu);
	s = hub->wake_head;
	hub->wake_head = NULL;
	pthread_mutex_unlock(&hub->mu);
	for (; s != NULL; s = next) {
		int closing;

		pthread_mutex_lock(&hub->mu);
		next = s->wnext;
		s->wnext = NULL;
		s->in_wake = 0;
		closing = s->close_code != 0;
		pthread_mutex_unlock(&hub->mu);
		if (s->wsi != NULL) {
			if (closing && s->state != HS_CLOSING) {
				s->state = HS_CLOSING;
				s->auth_deadline_mono = mono_ms() + CLOSE_GRACE_MS;
			}
			lws_callback_on_writable(s->wsi);
		}
		pthread_mutex_lock(&hub->mu);
		dead = hub_sess_unref_locked(s);
		pthread_mutex_unlock(&hub->mu);
		hub_sess_free(dead);
	}
}

/*
 * The drain (SIGTERM). No device here takes a new job from now
 * (qesd_hub_is_live says no). A session without a job at its device is
 * told to reconnect elsewhere (4004) at once; a session with one - the
 * signer may be typing the PIN - stays until that job ends, or until
 * close_by_mono_ms, when it is closed with 4004 too and its job fails with
 * gateway_restart: so each in-flight job completes or ends definitely
 * within the drain deadline. Sessions not yet authenticated close at once.
 */
static void
drain_close(struct hub_sess *s)
{
	close_session(s, QES_PROTO_CLOSE_SERVER_DRAINING,
	    "reconnect to another replica", "server_draining");
}

static void
drain_look(qesd_hub *hub, int64_t now)
{
	struct hub_sess *s;
	size_t kept = 0;
	int last = now >= hub->drain_close_by_mono;

	for (s = hub->conns; s != NULL; s = s->lnext) {
		if (s->wsi == NULL || s->state == HS_CLOSING)
			continue;
		if (s->state != HS_LIVE || last) {
			if (s->state == HS_LIVE)
				kept++;
			drain_close(s);
		} else if (!s->drain_checking) {
			s->drain_checking = 1;
			hub_drain_check(s);	/* hub_ws_drain_checked decides */
		}
	}
	if (last && kept > 0)
		qesd_log(QESD_LOG_WARN, "drain deadline near: closing the sessions "
		    "whose jobs are still at the device (they fail with "
		    "gateway_restart)", QLI("sessions", kept));
	hub->next_drain_check_mono = now + DRAIN_CHECK_MS;
}

void
hub_ws_drain_checked(struct hub_sess *s, int busy)
{
	s->drain_checking = 0;
	if (busy || s->wsi == NULL || s->state != HS_LIVE)
		return;
	drain_close(s);
}

void
qesd_hub_ws_drain(qesd_hub *hub, int64_t close_by_mono_ms)
{
	pthread_mutex_lock(&hub->mu);
	hub->refuse_jobs = 1;
	pthread_mutex_unlock(&hub->mu);
	hub->draining = 1;
	hub->drain_close_by_mono = close_by_mono_ms;
	if (hub->n_conns > 0)
		qesd_log(QESD_LOG_INFO, "draining: agent sessions without a job at "
		    "the device are told to reconnect now, the others when their "
		    "job ends", QLI("connections", hub->n_conns),
		    QLI("close_by_ms", close_by_mono_ms - mono_ms()));
	drain_look(hub, mono_ms());
}

size_t
qesd_hub_ws_connections(qesd_hub *hub)
{
	return hub != NULL ? hub->n_conns : 0;
}
