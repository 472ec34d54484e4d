/*
 * connection.c - the agent's wss:// client on libwebsockets (see connection.h).
 *
 * The TLS context is ours: SSL_CTX_new + TLS 1.3 minimum + a verify store
 * holding exactly the enrolled CA file (or the system's default paths when
 * the enrollment used the system store), handed to libwebsockets as
 * provided_client_ssl_ctx. libwebsockets then sets SSL_VERIFY_PEER and the
 * host name (or IP) to check on each connection, because we never pass any
 * of its LCCSCF_ALLOW_* relaxations.
 *
 * State lives on the loop thread. Dialing always goes through a timer, never
 * from inside a callback of the connection that is going away, so a closed()
 * callback may ask for the next dial without re-entering libwebsockets.
 *
 * This libwebsockets is built without asynchronous DNS, so resolving the
 * server's name happens inside lws_client_connect_via_info(), on the loop.
 * It only ever runs while there is no session (dialing), so no heartbeat,
 * cancel or result can be waiting behind it; a stop request waits for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"

#include "connection.h"
#include "jobs.h"
#include "log.h"

#define TICK_US			(250 * LWS_US_PER_MS)
#define SEND_QUEUE_MAX		256
#define CONNECT_TIMEOUT_S	15
#define RX_CHUNK		(64 * 1024)

struct frame {
	struct frame *next;
	size_t len;
	unsigned char buf[];		/* LWS_PRE + len */
};

struct agent_conn {
	agent_conn_opts o;
	char host[QES_PROTO_HOST_MAX + 1];
	char host_header[QES_PROTO_HOST_MAX + 16];
	char dial_text[QES_PROTO_HOST_MAX + 16];	/* for the log */
	agent_addrs addrs;			/* n 0: dial host */
	char user_agent[64];
	SSL_CTX *ssl;
	struct lws_context *ctx;
	struct lws_protocols protocols[2];
	lws_sorted_usec_list_t tick_sul, dial_sul;
	int stop;

	/* the current connection, NULL when none */
	struct lws *wsi;
	int established;
	int ended;			/* closed() was called for this dial */
	struct frame *q_head, *q_tail;
	size_t q_len;
	qes_buf *rx;
	int close_pending;		/* agent_conn_close() waits for WRITEABLE */
	int close_code;			/* ours, once decided */
	char close_reason[124];
	int peer_code;			/* from the peer's close frame */
	char peer_reason[124];
	char drop_reason[128];		/* why we killed it without a close frame */
	unsigned heartbeat_s;
	int ping_pending;
	int64_t last_rx_ms, last_ping_ms;
};

/* printable ASCII copy, for text that came from the network */
static void
copy_printable(char *dst, size_t dst_len, const char *src, size_t src_len)
{
	size_t i, n = src_len < dst_len - 1 ? src_len : dst_len - 1;

	for (i = 0; i < n; i++)
		dst[i] = (unsigned char)src[i] >= 0x20 && (unsigned char)src[i] < 0x7f ?
		    src[i] : '?';
	dst[n] = '\0';
}

static void
queue_clear(agent_conn *c)
{
	struct frame *f;

	while ((f = c->q_head) != NULL) {
		c->q_head = f->next;
		free(f);
	}
	c->q_tail = NULL;
	c->q_len = 0;
}

/* Forget the connection and tell the session how it ended. */
static void
ended(agent_conn *c, int code, const char *reason)
{
	char why[160];

	snprintf(why, sizeof(why), "%s", reason);
	c->ended = 1;
	c->wsi = NULL;
	c->established = 0;
	c->heartbeat_s = 0;
	c->close_pending = 0;
	queue_clear(c);
	qes_buf_reset(c->rx);
	if (c->o.cb.closed != NULL)
		c->o.cb.closed(c->o.cb.arg, code, why);
}

/* Close now, from inside a callback of wsi. */
static int
close_from_callback(agent_conn *c, struct lws *wsi, int code, const char *detail)
{
	char text[124];

	qes_proto_close_text(code, detail, text);
	c->close_code = code;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", text);
	lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)text,
	    strlen(text));
	return -1;
}

static int
on_receive(agent_conn *c, struct lws *wsi, const void *in, size_t len)
{
	c->last_rx_ms = agent_now_ms();
	if (lws_frame_is_binary(wsi))
		return close_from_callback(c, wsi, QES_PROTO_CLOSE_PROTOCOL_ERROR,
		    "binary frame");
	if (qes_buf_len(c->rx) + len > QES_PROTO_MAX_BYTES) {
		agent_log(AGENT_LOG_WARN, "message_too_big", NULL);
		return close_from_callback(c, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
		    NULL);
	}
	if (qes_buf_put(c->rx, in, len) != 0)
		return close_from_callback(c, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
		    "out of memory");
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0)
		return 0;
	if (c->o.cb.message != NULL)
		c->o.cb.message(c->o.cb.arg, qes_buf_data(c->rx), qes_buf_len(c->rx));
	qes_buf_reset(c->rx);
	return 0;
}

static int
on_writeable(agent_conn *c, struct lws *wsi)
{
	unsigned char ping[LWS_PRE + 4];
	struct frame *f;

	if (c->close_pending) {
		lws_close_reason(wsi, (enum lws_close_status)c->close_code,
		    (unsigned char *)c->close_reason, strlen(c->close_reason));
		return -1;
	}
	if (c->ping_pending) {
		c->ping_pending = 0;
		if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0)
			return -1;
		if (c->q_head != NULL)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if ((f = c->q_head) == NULL)
		return 0;
	c->q_head = f->next;
	if (c->q_head == NULL)
		c->q_tail = NULL;
	c->q_len--;
	if (lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int)f->len) {
		free(f);
		return -1;
	}
	free(f);
	if (c->q_head != NULL)
		lws_callback_on_writable(wsi);
	return 0;
}

/*
 * The server must have chosen qes.v1, or we do not speak its language.
 * (Without the header libwebsockets would quietly bind our only protocol.)
 * Checked while the handshake's headers are still there.
 */
static int
check_subprotocol(agent_conn *c, struct lws *wsi)
{
	char proto[32] = "";

	if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) <= 0 ||
	    strcmp(proto, QES_PROTO_SUBPROTOCOL) != 0) {
		snprintf(c->drop_reason, sizeof(c->drop_reason),
		    "the server did not select the qes.v1 sub-protocol");
		return -1;
	}
	return 0;
}

static int
on_established(agent_conn *c, struct lws *wsi)
{
	(void)wsi;
	c->established = 1;
	c->last_rx_ms = c->last_ping_ms = agent_now_ms();
	if (c->o.cb.opened != NULL)
		c->o.cb.opened(c->o.cb.arg);
	return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct lws_context *ctx = lws_get_context(wsi);
	agent_conn *c = ctx != NULL ? lws_context_user(ctx) : NULL;
	unsigned char **p, *end;
	char text[160];
	const unsigned char *b;

	(void)user;
	if (c == NULL)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		p = (unsigned char **)in;
		end = *p + len;
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_USER_AGENT,
		    (const unsigned char *)c->user_agent, (int)strlen(c->user_agent),
		    p, end) != 0)
			return -1;
		break;
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		if (wsi == c->wsi)
			return check_subprotocol(c, wsi);
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (wsi == c->wsi)
			return on_established(c, wsi);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (wsi == c->wsi)
			return on_receive(c, wsi, in, len);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		if (wsi == c->wsi) {
			c->last_rx_ms = agent_now_ms();
			agent_log(AGENT_LOG_DEBUG, "ws_pong", NULL);
		}
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (wsi == c->wsi)
			return on_writeable(c, wsi);
		break;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (wsi == c->wsi && len >= 2) {
			b = in;
			c->peer_code = b[0] << 8 | b[1];
			copy_printable(c->peer_reason, sizeof(c->peer_reason),
			    (const char *)b + 2, len - 2);
		}
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (wsi == c->wsi) {
			copy_printable(text, sizeof(text), in != NULL ? in : "",
			    in != NULL ? strnlen(in, len > 0 ? len : sizeof(text)) : 0);
			ended(c, 0, c->drop_reason[0] != '\0' ? c->drop_reason :
			    text[0] != '\0' ? text : "connection failed");
		}
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (wsi == c->wsi) {
			if (c->peer_code != 0)
				ended(c, c->peer_code, c->peer_reason);
			else if (c->drop_reason[0] != '\0')
				ended(c, 0, c->drop_reason);
			else if (c->close_code != 0)
				ended(c, c->close_code, c->close_reason);
			else
				ended(c, 0, "the connection was lost");
		}
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (c->o.cb.woken != NULL)
			c->o.cb.woken(c->o.cb.arg);
		break;
	default:
		break;
	}
	return 0;
}

static void
dial_now(lws_sorted_usec_list_t *sul)
{
	agent_conn *c = lws_container_of(sul, agent_conn, dial_sul);
	struct lws_client_connect_info i;
	const agent_addr *a = agent_addrs_current(&c->addrs);

	if (c->wsi != NULL || c->stop)
		return;
	memset(&i, 0, sizeof(i));
	i.context = c->ctx;
	/* only the TCP destination: libwebsockets takes the TLS server name
	 * and the name the certificate is checked for from i.host */
	i.address = a != NULL ? a->host : c->host;
	i.port = (int)(a != NULL ? a->port : c->o.port);
	if (a != NULL)
		snprintf(c->dial_text, sizeof(c->dial_text),
		    strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u", a->host,
		    a->port);
	else
		snprintf(c->dial_text, sizeof(c->dial_text), "%s", c->host_header);
	i.ssl_connection = LCCSCF_USE_SSL;	/* no ALLOW_* relaxation, ever */
	i.path = QES_PROTO_PATH;
	i.host = c->host_header;
	i.origin = c->host;
	i.protocol = QES_PROTO_SUBPROTOCOL;
	i.local_protocol_name = QES_PROTO_SUBPROTOCOL;
	i.pwsi = &c->wsi;
	c->peer_code = 0;
	c->close_code = 0;
	c->close_reason[0] = c->peer_reason[0] = c->drop_reason[0] = '\0';
	c->established = 0;
	qes_buf_reset(c->rx);
	agent_log(AGENT_LOG_INFO, "connecting", "host", c->host_header,
	    "address", c->dial_text, NULL);
	c->ended = 0;
	if (lws_client_connect_via_info(&i) == NULL) {
		/* it may or may not have reported the error through the callback */
		c->wsi = NULL;
		if (!c->ended && c->o.cb.closed != NULL)
			c->o.cb.closed(c->o.cb.arg, 0, "cannot start a connection");
	}
}

static void
tick(lws_sorted_usec_list_t *sul)
{
	agent_conn *c = lws_container_of(sul, agent_conn, tick_sul);
	int64_t now = agent_now_ms(), hb_ms = (int64_t)c->heartbeat_s * 1000;
	char why[128];

	if (c->wsi != NULL && c->established && hb_ms > 0) {
		if (now - c->last_rx_ms > QES_PROTO_DEAD_AFTER_BEATS * hb_ms) {
			snprintf(why, sizeof(why), "heartbeat timeout: nothing from the "
			    "server for %lld s", (long long)((now - c->last_rx_ms) / 1000));
			agent_conn_drop(c, why);
		} else if (now - c->last_ping_ms >= hb_ms) {
			c->last_ping_ms = now;
			c->ping_pending = 1;
			lws_callback_on_writable(c->wsi);
		}
	}
	if (c->o.cb.tick != NULL)
		c->o.cb.tick(c->o.cb.arg);
	if (!c->stop)
		lws_sul_schedule(c->ctx, 0, &c->tick_sul, tick, TICK_US);
}

static void
lws_log_emit(int level, const char *line)
{
	char text[256];
	size_t n = strlen(line);

	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	copy_printable(text, sizeof(text), line, n);
	agent_log(level == LLL_ERR ? AGENT_LOG_WARN : AGENT_LOG_DEBUG, "lws",
	    "message", text, NULL);
}

/* The TLS client context: 1.3 only, verification against one anchor set. */
static int
make_ssl_ctx(agent_conn *c, char *err, size_t err_len)
{
	unsigned long e;

	ERR_clear_error();
	if ((c->ssl = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(c->ssl, TLS1_3_VERSION)) {
		snprintf(err, err_len, "cannot create a TLS 1.3 client context");
		return QES_ERR_CRYPTO;
	}
	SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	if (c->o.ca_file != NULL) {
		if (!SSL_CTX_load_verify_file(c->ssl, c->o.ca_file)) {
			e = ERR_peek_last_error();
			snprintf(err, err_len, "cannot load the enrolled CA %s: %s",
			    c->o.ca_file, e != 0 ? ERR_reason_error_string(e) : "error");
			ERR_clear_error();
			return QES_ERR_IO;
		}
	} else if (!SSL_CTX_set_default_verify_paths(c->ssl)) {
		snprintf(err, err_len, "cannot load the system trust store");
		ERR_clear_error();
		return QES_ERR_IO;
	}
	return 0;
}

int
agent_conn_new(const agent_conn_opts *o, agent_conn **out, char *err,
    size_t err_len)
{
	struct lws_context_creation_info info;
	char dummy[8];
	agent_conn *c;
	int r;

	*out = NULL;
	if (err == NULL) {
		err = dummy;
		err_len = sizeof(dummy);
	}
	if (o == NULL || o->host == NULL || strlen(o->host) > QES_PROTO_HOST_MAX ||
	    o->port == 0 || o->port > 65535)
		return QES_ERR_INVALID_ARG;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return QES_ERR_ALLOC;
	c->o = *o;
	snprintf(c->host, sizeof(c->host), "%s", o->host);
	snprintf(c->host_header, sizeof(c->host_header), strchr(o->host, ':') != NULL ?
	    "[%s]:%u" : "%s:%u", o->host, o->port);
	snprintf(c->user_agent, sizeof(c->user_agent), "%s",
	    o->user_agent != NULL ? o->user_agent : "qes-agent");
	c->o.host = c->host;
	if (o->addrs != NULL)
		c->addrs = *o->addrs;
	c->o.addrs = NULL;
	if ((c->rx = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	if ((r = make_ssl_ctx(c, err, err_len)) != 0)
		goto fail;

	lws_set_log_level(LLL_ERR, lws_log_emit);
	c->protocols[0].name = QES_PROTO_SUBPROTOCOL;
	c->protocols[0].callback = callback;
	c->protocols[0].rx_buffer_size = RX_CHUNK;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = c->protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.provided_client_ssl_ctx = c->ssl;
	info.connect_timeout_secs = CONNECT_TIMEOUT_S;
	info.timeout_secs = CONNECT_TIMEOUT_S;
	info.user = c;
	if ((c->ctx = lws_create_context(&info)) == NULL) {
		snprintf(err, err_len, "cannot create the WebSocket client");
		r = QES_ERR_INTERNAL;
		goto fail;
	}
	lws_sul_schedule(c->ctx, 0, &c->tick_sul, tick, TICK_US);
	*out = c;
	return 0;
 fail:
	agent_conn_free(c);
	return r;
}

void
agent_conn_free(agent_conn *c)
{
	if (c == NULL)
		return;
	c->stop = 1;
	if (c->ctx != NULL) {
		/* no more callbacks into a session that is being freed */
		c->o.cb.closed = NULL;
		c->o.cb.woken = NULL;
		c->o.cb.tick = NULL;
		c->o.cb.message = NULL;
		c->o.cb.opened = NULL;
		lws_context_destroy(c->ctx);
	}
	queue_clear(c);
	qes_buf_free(c->rx);
	SSL_CTX_free(c->ssl);	/* provided: libwebsockets does not free it */
	free(c);
}

void
agent_conn_dial(agent_conn *c, uint32_t delay_ms)
{
	lws_sul_schedule(c->ctx, 0, &c->dial_sul, dial_now,
	    (lws_usec_t)(delay_ms > 0 ? delay_ms : 1) * LWS_US_PER_MS);
}

void
agent_conn_next_address(agent_conn *c)
{
	if (c != NULL)
		agent_addrs_next(&c->addrs);
}

int
agent_conn_active(const agent_conn *c)
{
	return c->wsi != NULL;
}

int
agent_conn_send(agent_conn *c, const uint8_t *data, size_t len)
{
	struct frame *f;

	if (c->wsi == NULL || !c->established || c->close_pending)
		return QES_ERR_IO;
	if (c->q_len >= SEND_QUEUE_MAX)
		return QES_ERR_LIMIT;
	if ((f = malloc(sizeof(*f) + LWS_PRE + len)) == NULL)
		return QES_ERR_ALLOC;
	f->next = NULL;
	f->len = len;
	memcpy(f->buf + LWS_PRE, data, len);
	if (c->q_tail != NULL)
		c->q_tail->next = f;
	else
		c->q_head = f;
	c->q_tail = f;
	c->q_len++;
	lws_callback_on_writable(c->wsi);
	return 0;
}

void
agent_conn_close(agent_conn *c, int code, const char *reason)
{
	if (c->wsi == NULL || c->close_pending)
		return;
	if (!c->established) {
		agent_conn_drop(c, reason != NULL ? reason : "closed before the upgrade");
		return;
	}
	c->close_pending = 1;
	c->close_code = code;
	qes_proto_close_text(code, reason, c->close_reason);
	lws_callback_on_writable(c->wsi);
}

void
agent_conn_drop(agent_conn *c, const char *reason)
{
	if (c->wsi == NULL)
		return;
	snprintf(c->drop_reason, sizeof(c->drop_reason), "%s", reason);
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}

void
agent_conn_set_heartbeat(agent_conn *c, unsigned heartbeat_s)
{
	c->heartbeat_s = heartbeat_s;
	c->last_ping_ms = agent_now_ms();
}

int
agent_conn_run(agent_conn *c)
{
	while (!c->stop)
		if (lws_service(c->ctx, 0) < 0)
			return QES_ERR_IO;
	return 0;
}

void
agent_conn_stop(agent_conn *c)
{
	c->stop = 1;
	lws_cancel_service(c->ctx);
}

void
agent_conn_wake(agent_conn *c)
{
	lws_cancel_service(c->ctx);
}
