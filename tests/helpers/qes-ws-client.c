/*
 * qes-ws-client - a scriptable qes.v1 agent for the gateway's tests
 * (tests/integration/qesd_devices.sh): it connects to wss://HOST:PORT/v1/agent
 * with libwebsockets, authenticates with a device key (or deliberately
 * does not), sends what it is told, and prints every event on stdout, one
 * line each, so a shell script can wait for and check them:
 *
 *   connected
 *   recv {"type":"challenge",...}       every text frame, as received
 *   sent auth                           a message it sent (its type)
 *   close 4001 auth_failed: revoked     the server's close frame
 *   closed                              the connection is gone
 *   error <text>                        it could not connect
 *
 * Usage: qes-ws-client --port N --ca FILE --device-id ID --key KEY.pem
 *          [--host localhost] [--server-name NAME] [--path /v1/agent]
 *          [--protocol qes.v1 | --protocol ""]
 *          [--inventory FILE | --inventory-module SO] [--inventory-out FILE]
 *          [--send FILE]... [--raw-first FILE] [--save-auth FILE]
 *          [--replay-auth FILE] [--sign-key OTHER.pem] [--no-auth]
 *          [--ping] [--stay SECONDS | --until-close]
 *
 * --raw-first sends a file's bytes instead of hello; --replay-auth sends
 * a saved auth message instead of signing the challenge; --sign-key signs
 * with another key; --no-auth never answers the challenge; --send sends a
 * file's bytes as a text frame after auth_ok (after the inventory, in
 * order); --ping sends a qes.v1 ping after auth_ok. Without --stay or
 * --until-close it closes normally once everything was sent and the server
 * had a moment to answer. Exit status: 0, 2 usage, 3 no connection.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/proto.h"
#include "qes/report.h"

#define MAX_SENDS 16
#define MAX_RX (2u << 20)

struct out {
	struct out *next;
	size_t len;
	char *label;
	uint8_t data[];		/* LWS_PRE + len */
};

static struct {
	const char *host, *server_name, *path, *protocol, *ca, *device_id;
	const char *key_file, *sign_key_file, *inventory, *inventory_module;
	const char *inventory_out, *raw_first, *save_auth, *replay_auth;
	const char *sends[MAX_SENDS];
	int n_sends, port, no_auth, ping, until_close;
	double stay_s;
} opt;

static struct out *out_head, *out_tail;
static qes_buf *rx;
static int done, authed, status, closing;
static double quit_at;
static struct lws *conn;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
queue(const void *data, size_t len, const char *label)
{
	struct out *o = malloc(sizeof(*o) + LWS_PRE + len);

	if (o == NULL)
		exit(3);
	o->next = NULL;
	o->len = len;
	o->label = strdup(label);
	memcpy(o->data + LWS_PRE, data, len);
	if (out_tail != NULL)
		out_tail->next = o;
	else
		out_head = o;
	out_tail = o;
	if (conn != NULL)
		lws_callback_on_writable(conn);
}

static void
queue_buf(qes_buf *b, const char *label)
{
	queue(qes_buf_data(b), qes_buf_len(b), label);
}

static void
queue_file(const char *path, const char *label)
{
	qes_buf *b = NULL;

	if (qes_buf_read_file(path, MAX_RX, &b) != 0) {
		say("error cannot read %s", path);
		exit(2);
	}
	queue_buf(b, label);
	qes_buf_free(b);
}

static EVP_PKEY *
load_key(const char *path)
{
	EVP_PKEY *k;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		say("error cannot open %s", path);
		exit(2);
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL) {
		say("error %s is not a PEM private key", path);
		exit(2);
	}
	return k;
}

static void
send_hello(void)
{
	qes_proto_hello h = { "0.1.0-test", "Linux test", opt.device_id };
	qes_buf *b;
	char id[23];

	if (opt.raw_first != NULL) {
		queue_file(opt.raw_first, "raw");
		return;
	}
	b = qes_buf_new();
	if (b == NULL || qes_proto_new_id(id) != 0 ||
	    qes_proto_build_hello(id, &h, b) != 0) {
		say("error cannot build hello");
		exit(3);
	}
	queue_buf(b, "hello");
	qes_buf_free(b);
}

static void
answer_challenge(const qes_proto_msg *m)
{
	const char *sn = opt.server_name != NULL ? opt.server_name : opt.host;
	qes_buf *sig = qes_buf_new(), *b = qes_buf_new();
	qes_proto_auth au;
	EVP_PKEY *k;
	char id[23];
	FILE *f;

	if (opt.no_auth)
		goto out;
	if (opt.replay_auth != NULL) {
		queue_file(opt.replay_auth, "auth");
		goto out;
	}
	/* an agent refuses a challenge for another server than it dialed */
	if (strcmp(m->u.challenge.server_name, sn) != 0) {
		say("error challenge names server %s", m->u.challenge.server_name);
		goto out;
	}
	k = load_key(opt.sign_key_file != NULL ? opt.sign_key_file : opt.key_file);
	if (sig == NULL || b == NULL || qes_proto_auth_sign(k, m->u.challenge.nonce,
	    opt.device_id, sn, m->u.challenge.session_id, sig) != 0) {
		say("error cannot sign the challenge");
		exit(3);
	}
	EVP_PKEY_free(k);
	au.device_id = opt.device_id;
	au.signature.data = qes_buf_data(sig);
	au.signature.len = qes_buf_len(sig);
	if (qes_proto_new_id(id) != 0 || qes_proto_build_auth(id, &au, b) != 0) {
		say("error cannot build auth");
		exit(3);
	}
	if (opt.save_auth != NULL && (f = fopen(opt.save_auth, "w")) != NULL) {
		fwrite(qes_buf_data(b), 1, qes_buf_len(b), f);
		fclose(f);
	}
	queue_buf(b, "auth");
 out:
	qes_buf_free(sig);
	qes_buf_free(b);
}

static json_t *
inventory_from_module(const char *so)
{
	qes_p11_inventory *inv = NULL;
	qes_p11 *p = NULL;
	json_t *j = NULL;

	if (qes_p11_new(&p) != 0)
		return NULL;
	(void)qes_p11_add_module(p, so, QES_P11_SRC_EXPLICIT, NULL, NULL);
	if (qes_p11_scan(p, &inv) == 0 && (j = qes_report_inventory(p, inv)) != NULL &&
	    qes_proto_inventory_attach_certs(j, inv) != 0) {
		json_decref(j);
		j = NULL;
	}
	qes_p11_inventory_free(inv);
	qes_p11_free(p);
	return j;
}

static void
after_auth(void)
{
	json_error_t jerr;
	json_t *j = NULL;
	qes_buf *b;
	char id[23];
	int i;

	authed = 1;
	if (opt.inventory != NULL || opt.inventory_module != NULL) {
		j = opt.inventory != NULL ? json_load_file(opt.inventory, 0, &jerr) :
		    inventory_from_module(opt.inventory_module);
		if (j == NULL) {
			say("error no inventory");
			exit(3);
		}
		if (opt.inventory_out != NULL)
			json_dump_file(j, opt.inventory_out, JSON_INDENT(1));
		if ((b = qes_buf_new()) == NULL || qes_proto_new_id(id) != 0 ||
		    qes_proto_build_inventory(id, j, b) != 0) {
			say("error cannot build inventory");
			exit(3);
		}
		queue_buf(b, "inventory");
		qes_buf_free(b);
		json_decref(j);
	}
	if (opt.ping) {
		if ((b = qes_buf_new()) == NULL || qes_proto_new_id(id) != 0 ||
		    qes_proto_build_ping(id, 1234, b) != 0)
			exit(3);
		queue_buf(b, "ping");
		qes_buf_free(b);
	}
	for (i = 0; i < opt.n_sends; i++)
		queue_file(opt.sends[i], "raw");
	if (!opt.until_close)
		quit_at = now_s() + (opt.stay_s > 0 ? opt.stay_s : 1.0);
}

static void
on_text(const uint8_t *data, size_t len)
{
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	char err[200];

	say("recv %.*s", (int)len, (const char *)data);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_AGENT);
	if (qes_proto_parse(data, len, &lim, &m, err, sizeof(err)) != 0) {
		say("bad %s", err);
		return;
	}
	if (m->type == QES_PROTO_CHALLENGE)
		answer_challenge(m);
	else if (m->type == QES_PROTO_AUTH_OK)
		after_auth();
	qes_proto_msg_free(m);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct out *o;
	char reason_text[128];
	int code;

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		say("error %s", in != NULL ? (const char *)in : "connection failed");
		status = 3;
		done = 1;
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		conn = wsi;
		say("connected");
		send_hello();
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (qes_buf_put(rx, in, len) != 0) {
			say("error message too large");
			return -1;
		}
		if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
			on_text(qes_buf_data(rx), qes_buf_len(rx));
			qes_buf_reset(rx);
		}
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if ((o = out_head) == NULL) {
			if (closing) {
				lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
				    (unsigned char *)"bye", 3);
				return -1;
			}
			break;
		}
		out_head = o->next;
		if (out_head == NULL)
			out_tail = NULL;
		if (lws_write(wsi, o->data + LWS_PRE, o->len, LWS_WRITE_TEXT) <
		    (int)o->len) {
			free(o->label);
			free(o);
			return -1;
		}
		say("sent %s", o->label);
		free(o->label);
		free(o);
		if (out_head != NULL)
			lws_callback_on_writable(wsi);
		break;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		code = len >= 2 ? ((const uint8_t *)in)[0] << 8 |
		    ((const uint8_t *)in)[1] : 0;
		snprintf(reason_text, sizeof(reason_text), "%.*s",
		    len > 2 ? (int)(len - 2) : 0, len > 2 ? (const char *)in + 2 : "");
		say("close %d %s", code, reason_text);
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		say("closed");
		conn = NULL;
		done = 1;
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{ "qes-test-client", callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void
usage(void)
{
	fprintf(stderr, "usage: qes-ws-client --port N --ca FILE --device-id ID "
	    "--key KEY.pem [options] (see the source)\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "ca", required_argument, NULL, 'c' },
		{ "device-id", required_argument, NULL, 'd' },
		{ "key", required_argument, NULL, 'k' },
		{ "sign-key", required_argument, NULL, 'K' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "path", required_argument, NULL, 'P' },
		{ "protocol", required_argument, NULL, 'r' },
		{ "inventory", required_argument, NULL, 'i' },
		{ "inventory-module", required_argument, NULL, 'm' },
		{ "inventory-out", required_argument, NULL, 'o' },
		{ "send", required_argument, NULL, 's' },
		{ "raw-first", required_argument, NULL, 'f' },
		{ "save-auth", required_argument, NULL, 'S' },
		{ "replay-auth", required_argument, NULL, 'R' },
		{ "no-auth", no_argument, NULL, 'N' },
		{ "ping", no_argument, NULL, 'g' },
		{ "stay", required_argument, NULL, 't' },
		{ "until-close", no_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	struct lws_context *ctx;
	int c;

	opt.host = "localhost";
	opt.path = QES_PROTO_PATH;
	opt.protocol = QES_PROTO_SUBPROTOCOL;
	opt.device_id = "dev_none";
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'c': opt.ca = optarg; break;
		case 'd': opt.device_id = optarg; break;
		case 'k': opt.key_file = optarg; break;
		case 'K': opt.sign_key_file = optarg; break;
		case 'n': opt.server_name = optarg; break;
		case 'P': opt.path = optarg; break;
		case 'r': opt.protocol = optarg; break;
		case 'i': opt.inventory = optarg; break;
		case 'm': opt.inventory_module = optarg; break;
		case 'o': opt.inventory_out = optarg; break;
		case 's':
			if (opt.n_sends == MAX_SENDS)
				usage();
			opt.sends[opt.n_sends++] = optarg;
			break;
		case 'f': opt.raw_first = optarg; break;
		case 'S': opt.save_auth = optarg; break;
		case 'R': opt.replay_auth = optarg; break;
		case 'N': opt.no_auth = 1; break;
		case 'g': opt.ping = 1; break;
		case 't': opt.stay_s = atof(optarg); break;
		case 'u': opt.until_close = 1; break;
		default: usage();
		}
	}
	if (opt.port <= 0 || opt.ca == NULL ||
	    (opt.key_file == NULL && opt.replay_auth == NULL && !opt.no_auth &&
	    opt.raw_first == NULL))
		usage();
	signal(SIGPIPE, SIG_IGN);
	if ((rx = qes_buf_new()) == NULL)
		return 3;
	qes_buf_set_max(rx, MAX_RX);
	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_filepath = opt.ca;
	if ((ctx = lws_create_context(&info)) == NULL) {
		say("error cannot create a libwebsockets context");
		return 3;
	}
	memset(&ci, 0, sizeof(ci));
	ci.context = ctx;
	ci.address = opt.host;
	ci.port = opt.port;
	ci.path = opt.path;
	ci.host = opt.host;
	ci.origin = opt.host;
	ci.ssl_connection = LCCSCF_USE_SSL;
	ci.protocol = opt.protocol[0] != '\0' ? opt.protocol : NULL;
	ci.local_protocol_name = "qes-test-client";
	if (lws_client_connect_via_info(&ci) == NULL) {
		say("error cannot connect");
		lws_context_destroy(ctx);
		return 3;
	}
	while (!done) {
		lws_service(ctx, 50);
		if (quit_at > 0 && now_s() >= quit_at && conn != NULL) {
			quit_at = 0;
			closing = 1;
			lws_callback_on_writable(conn);
		}
	}
	lws_context_destroy(ctx);
	qes_buf_free(rx);
	return status;
}
