/*
 * test_bus.c - the bus between qesd replicas without a network: the
 * envelope encoder and parser (src/qesd/bus_msg.c), the local bus
 * (bus_local.c through bus.c), and the diagnostics service's remote waits
 * (diagnostics.c) that carry a diagnosis across replicas.
 *
 * What matters: every operation round-trips; the parser refuses what the
 * encoder would never produce (another version, a missing newline, an
 * oversized header or body, an id that would add a subject token or a
 * wildcard, a body where none belongs, duplicate keys, out-of-range
 * numbers) with a precise error, and ignores unknown header keys (rolling
 * upgrades); the local bus never reaches past the hub; a remote wait
 * accepts exactly one answer with its ref and is never matched by an
 * agent's message, and one diagnosis per device holds across local and
 * remote waits. The real NATS bus is exercised by
 * tests/integration/qesd_two_replicas.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "app.h"
#include "bus.h"
#include "bus_msg.h"
#include "config.h"
#include "diagnostics.h"

#define TENANT "ten_abcdefghij234567"
#define DEVICE "dev_klmnopqrst234567"

/* Encode m, decode it again into *out; the encoding stays in *buf. */
static void
round_trip(const qesd_bus_msg *m, qes_buf **buf, qesd_bus_msg *out)
{
	*buf = qes_buf_new();
	assert_non_null(*buf);
	assert_int_equal(qesd_bus_msg_encode(m, *buf), 0);
	assert_int_equal(qesd_bus_msg_decode(qes_buf_data(*buf),
	    qes_buf_len(*buf), out), 0);
}

static int
decode_str(const char *s, qesd_bus_msg *out)
{
	return qesd_bus_msg_decode((const uint8_t *)s, strlen(s), out);
}

static void
test_round_trips(void **state)
{
	const char frame[] = "{\"v\":1,\"type\":\"sign\"}";
	const char report[] = "{\"tokens\":[],\"system\":{}}";
	qesd_bus_msg m, d;
	qes_buf *b;

	(void)state;
	qesd_bus_msg_init(&m, QESD_BUS_SEND);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	m.body = (const uint8_t *)frame;
	m.body_len = strlen(frame);
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_SEND);
	assert_string_equal(d.tenant_id, TENANT);
	assert_string_equal(d.device_id, DEVICE);
	assert_int_equal(d.body_len, strlen(frame));
	assert_memory_equal(d.body, frame, strlen(frame));
	/* the body is the frame itself, after one header line */
	assert_non_null(memchr(qes_buf_data(b), '\n', qes_buf_len(b)));
	assert_true(qes_buf_len(b) < strlen(frame) + 120);
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_CLOSE);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	m.close_code = 4002;
	strcpy(m.reason, "the device was revoked");
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_CLOSE);
	assert_int_equal(d.close_code, 4002);
	assert_string_equal(d.reason, "the device was revoked");
	assert_int_equal(d.body_len, 0);
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_REPLY);
	m.result = QES_ERR_LIMIT;
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_REPLY);
	assert_int_equal(d.result, QES_ERR_LIMIT);
	qes_buf_free(b);
	m.result = 0;
	strcpy(m.session_id, "ses_abc234");
	round_trip(&m, &b, &d);
	assert_int_equal(d.result, 0);
	assert_string_equal(d.session_id, "ses_abc234");
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_DIAG_RESULT);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	strcpy(m.ref, "Ab-_09xyzXYZ0123456789");
	strcpy(m.outcome, "ok");
	strcpy(m.session_id, "ses_abc234");
	m.rtt_ms = 12;
	m.scan_ms = 3;
	m.total_ms = 5;
	m.body = (const uint8_t *)report;
	m.body_len = strlen(report);
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_DIAG_RESULT);
	assert_string_equal(d.ref, "Ab-_09xyzXYZ0123456789");
	assert_string_equal(d.outcome, "ok");
	assert_int_equal(d.rtt_ms, 12);
	assert_int_equal(d.scan_ms, 3);
	assert_int_equal(d.total_ms, 5);
	assert_int_equal(d.body_len, strlen(report));
	assert_string_equal(d.agent_error, "");
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_JOB);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.job_id, "job_0123456789abcdef");
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_JOB);
	assert_string_equal(d.job_id, "job_0123456789abcdef");
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_LIVE);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_LIVE);
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_DIAG);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	strcpy(m.ref, "r1");
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_DIAG);
	assert_string_equal(d.ref, "r1");
	qes_buf_free(b);

	qesd_bus_msg_init(&m, QESD_BUS_REPLACE);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	strcpy(m.session_id, "ses_newer");
	m.since_ms = INT64_C(1764115200123);
	round_trip(&m, &b, &d);
	assert_int_equal(d.op, QESD_BUS_REPLACE);
	assert_string_equal(d.session_id, "ses_newer");
	assert_true(d.since_ms == INT64_C(1764115200123));
	qes_buf_free(b);
}

static void
test_encoder_refuses(void **state)
{
	qesd_bus_msg m;
	qes_buf *b = qes_buf_new();

	(void)state;
	assert_non_null(b);
	/* an id that would add a subject token, or a wildcard */
	qesd_bus_msg_init(&m, QESD_BUS_LIVE);
	strcpy(m.tenant_id, "ten.x");
	strcpy(m.device_id, DEVICE);
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, "*");
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	strcpy(m.device_id, ">");
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	strcpy(m.device_id, "");
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	/* a send without a frame */
	qesd_bus_msg_init(&m, QESD_BUS_SEND);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	/* a body too large */
	m.body = (const uint8_t *)"x";
	m.body_len = QESD_BUS_BODY_MAX + 1;
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_LIMIT);
	/* a close code outside the application range */
	qesd_bus_msg_init(&m, QESD_BUS_CLOSE);
	strcpy(m.tenant_id, TENANT);
	strcpy(m.device_id, DEVICE);
	m.close_code = 1000;
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	/* a reason with a control character */
	m.close_code = 4002;
	strcpy(m.reason, "bad\nline");
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	/* a reply with a result the protocol has no word for */
	qesd_bus_msg_init(&m, QESD_BUS_REPLY);
	m.result = QES_ERR_CRYPTO;
	assert_int_equal(qesd_bus_msg_encode(&m, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(b), 0);	/* nothing half-written */
	qes_buf_free(b);
}

static void
test_parser_refuses(void **state)
{
	char big[QESD_BUS_HEADER_MAX + 64];
	qesd_bus_msg d;

	(void)state;
	assert_int_equal(decode_str("", &d), QES_ERR_FORMAT);
	/* no newline after the header */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"reply\",\"r\":\"ok\"}", &d),
	    QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"reply\",\"r\":\"ok\"}\n", &d),
	    0);
	assert_int_equal(d.op, QESD_BUS_REPLY);
	/* another version: refused as such */
	assert_int_equal(decode_str("{\"v\":2,\"op\":\"reply\",\"r\":\"ok\"}\n", &d),
	    QES_ERR_UNSUPPORTED);
	assert_int_equal(decode_str("{\"op\":\"reply\",\"r\":\"ok\"}\n", &d),
	    QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":\"1\",\"op\":\"reply\",\"r\":\"ok\"}\n",
	    &d), QES_ERR_FORMAT);
	/* unknown op, unknown result word */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"exec\"}\n", &d),
	    QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"reply\",\"r\":\"maybe\"}\n",
	    &d), QES_ERR_FORMAT);
	/* duplicate keys, not an object, broken JSON */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"reply\",\"r\":\"ok\",\"r\":\"limit\"}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("[1]\n", &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\n", &d), QES_ERR_FORMAT);
	/* ids that are not subject-safe */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a.b\",\"d\":\"c\"}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c d\"}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\"}\n", &d),
	    QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c\\u0000\"}\n",
	    &d), QES_ERR_FORMAT);
	/* a body where none belongs, a send without one */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c\"}\nx",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"send\",\"t\":\"a\",\"d\":\"c\"}\n",
	    &d), QES_ERR_FORMAT);
	/* numbers out of range */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"close\",\"t\":\"a\",\"d\":\"c\",\"code\":70000,\"reason\":\"\"}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"diag_result\",\"t\":\"a\",\"d\":\"c\",\"ref\":\"r\",\"outcome\":\"ok\",\"rtt_ms\":-5}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"diag_result\",\"t\":\"a\",\"d\":\"c\",\"ref\":\"r.x\",\"outcome\":\"ok\"}\n",
	    &d), QES_ERR_FORMAT);
	/* a replace needs the newer session and its time */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"replace\",\"t\":\"a\",\"d\":\"c\",\"s\":\"s1\"}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"replace\",\"t\":\"a\",\"d\":\"c\",\"since_ms\":5}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"replace\",\"t\":\"a\",\"d\":\"c\",\"s\":\"s1\",\"since_ms\":-5}\n",
	    &d), QES_ERR_FORMAT);
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"replace\",\"t\":\"a\",\"d\":\"c\",\"s\":\"s1\",\"since_ms\":5}\n",
	    &d), 0);
	assert_true(d.since_ms == 5);
	/* ... and a since_ms on another op means nothing */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c\",\"since_ms\":5,\"s\":\"s1\"}\n",
	    &d), 0);
	assert_true(d.since_ms == 0);
	assert_string_equal(d.session_id, "");
	/* an unknown key is ignored (a newer replica's optional field) */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c\",\"hint\":[1,2]}\n",
	    &d), 0);
	assert_string_equal(d.device_id, "c");
	/* a header longer than the limit */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"v\":1,\"op\":\"live\",\"t\":\"a\",\"d\":\"c\"", 34);
	big[sizeof(big) - 2] = '}';
	big[sizeof(big) - 1] = '\n';
	assert_int_equal(qesd_bus_msg_decode((const uint8_t *)big, sizeof(big), &d),
	    QES_ERR_LIMIT);
	/* an id as long as QESD_ID_SIZE: one too many */
	{
		char msg[256], id[QESD_ID_SIZE + 1];

		memset(id, 'a', QESD_ID_SIZE);
		id[QESD_ID_SIZE] = '\0';
		snprintf(msg, sizeof(msg),
		    "{\"v\":1,\"op\":\"live\",\"t\":\"%s\",\"d\":\"c\"}\n", id);
		assert_int_equal(decode_str(msg, &d), QES_ERR_FORMAT);
		id[QESD_ID_SIZE - 1] = '\0';
		snprintf(msg, sizeof(msg),
		    "{\"v\":1,\"op\":\"live\",\"t\":\"%s\",\"d\":\"c\"}\n", id);
		assert_int_equal(decode_str(msg, &d), 0);
	}
	/* a failed parse leaves nothing behind */
	assert_int_equal(decode_str("{\"v\":1,\"op\":\"exec\"}\n", &d),
	    QES_ERR_FORMAT);
	assert_int_equal(d.op, 0);
	assert_string_equal(d.tenant_id, "");
}

static void
test_id_ok(void **state)
{
	(void)state;
	assert_true(qesd_bus_id_ok("ten_ABC_09"));
	assert_false(qesd_bus_id_ok(""));
	assert_false(qesd_bus_id_ok(NULL));
	assert_false(qesd_bus_id_ok("a.b"));
	assert_false(qesd_bus_id_ok("a*"));
	assert_false(qesd_bus_id_ok("a>"));
	assert_false(qesd_bus_id_ok("a b"));
	assert_false(qesd_bus_id_ok("a-b"));
	assert_false(qesd_bus_id_ok("\xc3\xa4"));
}

/* The local bus: the hub or nothing. */
static void
test_local_bus(void **state)
{
	qesd_config cfg;
	qesd_app app;
	qesd_bus *bus = NULL;
	char sid[QESD_ID_SIZE], err[200];

	(void)state;
	assert_int_equal(qesd_config_init(&cfg), 0);
	assert_string_equal(cfg.bus, "local");
	assert_int_equal(cfg.bus_request_timeout_ms, 2000);
	memset(&app, 0, sizeof(app));
	app.cfg = &cfg;
	assert_int_equal(qesd_bus_new(&app, &bus, err, sizeof(err)), 0);
	assert_string_equal(qesd_bus_kind(bus), "local");
	assert_false(qesd_bus_is_remote(bus));
	assert_int_equal(qesd_bus_ready(bus), 0);
	/* no hub (a unit test's app): nothing is live, nothing goes out */
	assert_false(qesd_bus_is_live(bus, TENANT, DEVICE, sid));
	assert_int_equal(qesd_bus_send(bus, TENANT, DEVICE,
	    (const uint8_t *)"{}", 2), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_bus_diagnose(bus, TENANT, DEVICE, "r"),
	    QES_ERR_NOT_FOUND);
	qesd_bus_device_open(bus, TENANT, DEVICE, "ses_1", 1);
	qesd_bus_device_closed(bus, TENANT, DEVICE, "ses_1");
	qesd_bus_job_changed(bus, TENANT, "job_1");
	qesd_bus_stop(bus);
	qesd_bus_stop(bus);
	qesd_bus_free(bus);
	qesd_bus_free(NULL);
	/* NULL buses are harmless too */
	assert_int_equal(qesd_bus_ready(NULL), 0);
	assert_false(qesd_bus_is_remote(NULL));
	/* a configuration qesd refuses */
	free(cfg.bus);
	cfg.bus = strdup("redis:x");
	assert_non_null(cfg.bus);
	assert_int_equal(qesd_bus_new(&app, &bus, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	assert_null(bus);
	assert_int_equal(qesd_config_validate(&cfg, 0, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	qesd_config_free(&cfg);
}

static void
test_config_keys(void **state)
{
	const char text[] = "tls_cert = /x\ntls_key = /y\npepper_file = /z\n"
	    "bus = nats:nats://n1:4222,nats://n2:4222\n"
	    "bus_request_timeout_ms = 500\nbus_token_file = /t\n";
	qesd_config cfg;
	char err[300];

	(void)state;
	assert_int_equal(qesd_config_init(&cfg), 0);
	assert_int_equal(qesd_config_parse(&cfg, text, strlen(text), "t", err,
	    sizeof(err)), 0);
	assert_string_equal(cfg.bus, "nats:nats://n1:4222,nats://n2:4222");
	assert_int_equal(cfg.bus_request_timeout_ms, 500);
	assert_int_equal(qesd_config_validate(&cfg, 0, err, sizeof(err)), 0);
	/* a token and credentials at once: refused */
	assert_int_equal(qesd_config_parse(&cfg, "bus_credentials_file = /c\n",
	    26, "t", err, sizeof(err)), 0);
	assert_int_equal(qesd_config_validate(&cfg, 0, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	assert_non_null(strstr(err, "exclude"));
	/* NATS settings without NATS */
	assert_int_equal(qesd_config_parse(&cfg, "bus = local\n", 12, "t", err,
	    sizeof(err)), 0);
	assert_int_equal(qesd_config_validate(&cfg, 0, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	/* the timeout's bounds */
	assert_int_equal(qesd_config_parse(&cfg, "bus_request_timeout_ms = 10\n",
	    28, "t", err, sizeof(err)), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_config_parse(&cfg, "bus = nats:\n", 12, "t", err,
	    sizeof(err)), 0);
	assert_int_equal(qesd_config_validate(&cfg, 0, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	qesd_config_free(&cfg);
}

/* ---- the diagnostics service's remote waits ---- */

static uint64_t woken[8];
static size_t n_woken;
static uint64_t notified[8];
static size_t n_notified;
static size_t n_sent;

static int
fake_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	(void)ctx;
	(void)tenant_id;
	(void)device_id;
	(void)frame;
	(void)len;
	n_sent++;
	return 0;
}

static int
fake_wake(qesd_server *srv, uint64_t token)
{
	(void)srv;
	assert_true(n_woken < 8);
	woken[n_woken++] = token;
	return 0;
}

static void
fake_notify(void *arg, uint64_t token)
{
	assert_ptr_equal(arg, &n_notified);
	assert_true(n_notified < 8);
	notified[n_notified++] = token;
}

static qesd_diag *
new_diag(void)
{
	qesd_diag_config c;
	qesd_diag *d = NULL;

	n_woken = n_notified = n_sent = 0;
	memset(&c, 0, sizeof(c));
	c.send = fake_send;
	c.wake = fake_wake;
	c.max_waiting = 4;
	assert_int_equal(qesd_diag_new(&c, &d), 0);
	return d;
}

static void
test_remote_wait(void **state)
{
	char ref[QESD_DIAG_REF_SIZE], ref2[QESD_DIAG_REF_SIZE];
	qesd_diag_wait *w = NULL, *w2 = NULL;
	qesd_diag_result res, got;
	qesd_diag *d = new_diag();

	(void)state;
	assert_int_equal(qesd_diag_start_remote(d, TENANT, DEVICE, &w, ref), 0);
	assert_int_equal(n_sent, 0);		/* the bus sends, not the service */
	assert_int_equal(strlen(ref), 22);
	/* one per device, local or remote */
	assert_int_equal(qesd_diag_start_remote(d, TENANT, DEVICE, &w2, ref2),
	    QES_ERR_CONFLICT);
	assert_int_equal(qesd_diag_start(d, TENANT, DEVICE, "ses_1", &w2),
	    QES_ERR_CONFLICT);
	/* a closed session of that device is not this wait's business */
	qesd_diag_on_session_closed(d, TENANT, DEVICE, "", "peer_closed");
	qesd_diag_arm(w, NULL, 7);
	assert_int_equal(n_woken, 0);
	/* an answer for another ref is dropped (its report freed) */
	memset(&res, 0, sizeof(res));
	res.outcome = QESD_DIAG_OK;
	res.report = json_pack("{s:[], s:{}}", "tokens", "system");
	qesd_diag_remote_result(d, "nobody", &res);
	assert_null(res.report);
	assert_int_equal(n_woken, 0);
	/* the answer: copied, the report moved, woken once */
	memset(&res, 0, sizeof(res));
	res.outcome = QESD_DIAG_OK;
	res.rtt_ms = 9;
	res.scan_ms = 1;
	res.total_ms = 2;
	strcpy(res.session_id, "ses_on_a");
	res.report = json_pack("{s:[], s:{}}", "tokens", "system");
	qesd_diag_remote_result(d, ref, &res);
	assert_null(res.report);
	assert_int_equal(n_woken, 1);
	assert_int_equal(woken[0], 7);
	/* a second answer changes nothing */
	res.outcome = QESD_DIAG_TIMEOUT;
	qesd_diag_remote_result(d, ref, &res);
	assert_int_equal(n_woken, 1);
	qesd_diag_finish(w, &got);
	assert_int_equal(got.outcome, QESD_DIAG_OK);
	assert_string_equal(got.session_id, "ses_on_a");
	assert_int_equal(got.rtt_ms, 9);
	assert_non_null(got.report);
	qesd_diag_result_clear(&got);
	assert_int_equal(qesd_diag_waiting(d), 0);

	/* answered before the arm: woken at the arm; an outcome word from
	 * the holder; the abandon path */
	assert_int_equal(qesd_diag_start_remote(d, TENANT, DEVICE, &w, ref), 0);
	memset(&res, 0, sizeof(res));
	res.rtt_ms = -1;
	res.outcome = QESD_DIAG_IN_PROGRESS;
	qesd_diag_remote_result(d, ref, &res);
	assert_int_equal(n_woken, 1);
	qesd_diag_arm(w, NULL, 8);
	assert_int_equal(n_woken, 2);
	assert_int_equal(woken[1], 8);
	qesd_diag_finish(w, &got);
	assert_int_equal(got.outcome, QESD_DIAG_IN_PROGRESS);
	assert_int_equal(got.rtt_ms, -1);
	assert_int_equal(qesd_diag_start_remote(d, TENANT, DEVICE, &w, ref), 0);
	qesd_diag_abandon(w);
	assert_int_equal(qesd_diag_waiting(d), 0);
	qesd_diag_free(d);
}

/* The holder's side: a local wait armed with a notify function. */
static void
test_notify_wait(void **state)
{
	qesd_diag_wait *w = NULL;
	qesd_diag_result got;
	qesd_diag *d = new_diag();

	(void)state;
	assert_int_equal(qesd_diag_start(d, TENANT, DEVICE, "ses_1", &w), 0);
	assert_int_equal(n_sent, 1);
	qesd_diag_arm_notify(w, fake_notify, &n_notified, 42);
	assert_int_equal(n_notified, 0);
	/* the session ends: the bus is told, the server is not */
	qesd_diag_on_session_closed(d, TENANT, DEVICE, "ses_1", "peer_closed");
	assert_int_equal(n_notified, 1);
	assert_int_equal(notified[0], 42);
	assert_int_equal(n_woken, 0);
	qesd_diag_finish(w, &got);
	assert_int_equal(got.outcome, QESD_DIAG_SESSION_CLOSED);
	assert_string_equal(got.close_reason, "peer_closed");
	qesd_diag_free(d);
}

static void
test_outcome_words(void **state)
{
	int o;

	(void)state;
	for (o = QESD_DIAG_OK; o <= QESD_DIAG_OVERLOADED; o++)
		assert_int_equal(qesd_diag_outcome_parse(
		    qesd_diag_outcome_name((qesd_diag_outcome)o)), o);
	assert_int_equal(qesd_diag_outcome_parse("nonsense"), 0);
	assert_int_equal(qesd_diag_outcome_parse(NULL), 0);
	/* a reason from the bus maps to the static text, or a generic one */
	assert_string_equal(qesd_diag_invalid_text("the report has no token list"),
	    "the report has no token list");
	assert_non_null(qesd_diag_invalid_text("anything else"));
	assert_non_null(qesd_diag_invalid_text(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_encoder_refuses),
		cmocka_unit_test(test_parser_refuses),
		cmocka_unit_test(test_id_ok),
		cmocka_unit_test(test_local_bus),
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_remote_wait),
		cmocka_unit_test(test_notify_wait),
		cmocka_unit_test(test_outcome_words),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
