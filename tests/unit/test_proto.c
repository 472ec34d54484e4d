/*
 * test_proto.c - unit tests for the qes.v1 protocol layer (proto.h):
 * every message type built, parsed and rebuilt; each schema rule with the
 * exact error it gives; unknown fields and types; size, depth and value
 * limits; base64url edge cases; the authentication bytes against a golden
 * vector computed independently (Python, from the definition in proto.h)
 * and sign/verify with a fresh P-256 key; verification codes against
 * golden vectors (same) and a uniformity check; the inventory and
 * diagnosis documents made by the real report.c from a hand-built token
 * snapshot with real certificates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/report.h"
#include "testcert.h"

#define SERIAL "0123456789abcdef"
#define CRED SERIAL ":0102"

static uint8_t digests4[4 * 32];

/* ---- helpers -------------------------------------------------------------- */

static char *
buf_str(qes_buf *b)
{
	char *s = malloc(qes_buf_len(b) + 1);

	assert_non_null(s);
	memcpy(s, qes_buf_data(b), qes_buf_len(b));
	s[qes_buf_len(b)] = '\0';
	return s;
}

static qes_proto_msg *
parse_ok(const char *json)
{
	qes_proto_msg *m = NULL;
	char err[256];
	int r = qes_proto_parse((const uint8_t *)json, strlen(json), NULL, &m, err,
	    sizeof(err));

	if (r != 0)
		fail_msg("parse failed (%d): %s\n%s", r, err, json);
	assert_non_null(m);
	return m;
}

/* parse must give rc, and on failure err must be exactly want (or start
 * with it when want ends in '*') */
static void
expect_lim(const char *json, size_t len, const qes_proto_limits *lim, int rc,
    const char *want)
{
	qes_proto_msg *m = (qes_proto_msg *)1;
	char err[256];
	size_t wl = strlen(want), i;
	int r = qes_proto_parse((const uint8_t *)json, len, lim, &m, err, sizeof(err));

	if (r != rc)
		fail_msg("expected %d, got %d (%s) for %.200s", rc, r, err, json);
	if (rc == 0) {
		qes_proto_msg_free(m);
		return;
	}
	assert_null(m);
	for (i = 0; err[i] != '\0'; i++)
		assert_true(err[i] >= 0x20 && err[i] < 0x7f);
	if (wl > 0 && want[wl - 1] == '*') {
		if (strncmp(err, want, wl - 1) != 0)
			fail_msg("error \"%s\" does not start with \"%.*s\"", err, (int)wl - 1, want);
	} else if (strcmp(err, want) != 0) {
		fail_msg("error \"%s\", expected \"%s\"", err, want);
	}
}

static void
expect(const char *json, int rc, const char *want)
{
	expect_lim(json, strlen(json), NULL, rc, want);
}

/*
 * Change one value of a JSON text: path is "a.b[2].c"; value NULL deletes
 * the member or element. value is stolen. Returns a new text (free()).
 */
static char *
edit(const char *json, const char *path, json_t *value)
{
	json_t *root, *cur, *next;
	char key[128];
	const char *p = path;
	size_t kl, idx = 0;
	int is_index;
	char *out;

	root = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	assert_non_null(root);
	cur = root;
	for (;;) {
		if (*p == '[') {
			is_index = 1;
			idx = strtoul(p + 1, (char **)&p, 10);
			assert_true(*p == ']');
			p++;
		} else {
			is_index = 0;
			for (kl = 0; p[kl] != '\0' && p[kl] != '.' && p[kl] != '['; kl++)
				;
			assert_true(kl < sizeof(key));
			memcpy(key, p, kl);
			key[kl] = '\0';
			p += kl;
		}
		if (*p == '.')
			p++;
		if (*p == '\0')
			break;
		next = is_index ? json_array_get(cur, idx) : json_object_get(cur, key);
		assert_non_null(next);
		cur = next;
	}
	if (is_index) {
		if (value != NULL)
			assert_int_equal(json_array_set_new(cur, idx, value), 0);
		else
			assert_int_equal(json_array_remove(cur, idx), 0);
	} else {
		if (value != NULL)
			assert_int_equal(json_object_set_new(cur, key, value), 0);
		else
			assert_int_equal(json_object_del(cur, key), 0);
	}
	out = json_dumps(root, JSON_COMPACT);
	assert_non_null(out);
	json_decref(root);
	return out;
}

static void
expect_edit(const char *json, const char *path, json_t *value, int rc, const char *want)
{
	char *t = edit(json, path, value);

	expect(t, rc, want);
	free(t);
}

static json_t *
b64_of(const uint8_t *data, size_t len)
{
	qes_buf *b = qes_buf_new();
	json_t *v;

	assert_non_null(b);
	assert_int_equal(qes_proto_b64url_encode(data, len, b), 0);
	v = json_stringn((const char *)qes_buf_data(b), qes_buf_len(b));
	qes_buf_free(b);
	return v;
}

static void
hex_to(const char *hex, uint8_t *out, size_t out_len)
{
	qes_buf *b = qes_buf_new();

	assert_non_null(b);
	assert_int_equal(qes_hex_decode(hex, b), 0);
	assert_int_equal(qes_buf_len(b), out_len);
	memcpy(out, qes_buf_data(b), out_len);
	qes_buf_free(b);
}

/* build with fn's output, check it parses, and that rebuilding the parsed
 * message gives the same text (returned, free()) */
static char *
roundtrip(qes_buf *b, qes_proto_msg **parsed)
{
	char *text = buf_str(b), *again;
	qes_proto_msg *m = parse_ok(text), *m2;
	qes_buf *b2 = qes_buf_new();
	char err[256];

	assert_non_null(b2);
	if (qes_proto_build(m, b2, err, sizeof(err)) != 0)
		fail_msg("rebuild failed: %s", err);
	again = buf_str(b2);
	assert_string_equal(again, text);
	m2 = parse_ok(again);
	assert_true(qes_proto_msg_equal(m, m2));
	qes_proto_msg_free(m2);
	free(again);
	qes_buf_free(b2);
	*parsed = m;
	return text;
}

static qes_proto_sign
sample_sign(void)
{
	qes_proto_sign s;

	memset(&s, 0, sizeof(s));
	s.job_id = "job_1";
	s.credential = CRED;
	s.scheme = QES_SIG_ECDSA;
	s.md = QES_MD_SHA256;
	s.digests = digests4;
	s.n_digests = 4;
	s.requester.tenant = "Acme GmbH";
	s.requester.application = "Contracts \xe2\x80\x93 Vertrieb";	/* en dash */
	s.title = "Lease 2024-17";
	s.description = "Lease agreement\nBerlin office";
	s.timeout_s = 120;
	return s;
}

static char *
sample_sign_json(void)
{
	qes_proto_sign s = sample_sign();
	qes_buf *b = qes_buf_new();
	char *t;

	assert_non_null(b);
	assert_int_equal(qes_proto_build_sign("m1", &s, b), 0);
	t = buf_str(b);
	qes_buf_free(b);
	return t;
}

static int
setup(void **state)
{
	size_t i;
	char doc[32];

	(void)state;
	for (i = 0; i < 4; i++) {
		snprintf(doc, sizeof(doc), "document %zu", i + 1);
		assert_int_equal(qes_md_digest(QES_MD_SHA256, doc, strlen(doc),
		    digests4 + 32 * i), 0);
	}
	return 0;
}

/* ---- round trips of every type ------------------------------------------- */

static void
test_roundtrip_small(void **state)
{
	qes_proto_hello hello = { "0.1.0", "Linux 6.1.0 x86_64", "dev_7Kq2" };
	qes_proto_challenge ch;
	qes_proto_auth_ok ok = { "ses_A1b2", 20 };
	qes_proto_cancel cancel = { "job_1", QES_PROTO_CANCEL_EXPIRED };
	qes_proto_error er = { "unknown_job", "no job job_9 here", "m77" };
	uint8_t sig[70];
	qes_proto_auth au;
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	char *t;
	size_t i;

	(void)state;
	assert_non_null(b);
	assert_int_equal(qes_proto_build_hello("m1", &hello, b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(t, "{\"type\":\"hello\",\"id\":\"m1\",\"v\":1,"
	    "\"agent_version\":\"0.1.0\",\"os\":\"Linux 6.1.0 x86_64\","
	    "\"device_id\":\"dev_7Kq2\"}");
	assert_int_equal(m->type, QES_PROTO_HELLO);
	assert_string_equal(m->id, "m1");
	assert_string_equal(m->u.hello.device_id, "dev_7Kq2");
	assert_string_equal(m->u.hello.agent_version, "0.1.0");
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	memset(&ch, 0, sizeof(ch));
	for (i = 0; i < sizeof(ch.nonce); i++)
		ch.nonce[i] = (uint8_t)(0xff - i);
	ch.server_name = "qes.example.com";
	ch.session_id = "ses_A1b2";
	assert_int_equal(qes_proto_build_challenge("g1", &ch, b), 0);
	t = roundtrip(b, &m);
	assert_memory_equal(m->u.challenge.nonce, ch.nonce, sizeof(ch.nonce));
	assert_string_equal(m->u.challenge.server_name, "qes.example.com");
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	for (i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)i;
	au.device_id = "dev_7Kq2";
	au.signature.data = sig;
	au.signature.len = sizeof(sig);
	assert_int_equal(qes_proto_build_auth("m2", &au, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.auth.signature.len, sizeof(sig));
	assert_memory_equal(m->u.auth.signature.data, sig, sizeof(sig));
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_auth_ok("g2", &ok, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.auth_ok.heartbeat_s, 20);
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_diagnose("g3", b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(t, "{\"type\":\"diagnose\",\"id\":\"g3\",\"v\":1}");
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_cancel("g4", &cancel, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.cancel.reason, QES_PROTO_CANCEL_EXPIRED);
	assert_string_equal(m->u.cancel.job_id, "job_1");
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_error("g5", &er, b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(m->u.error.code, "unknown_job");
	assert_string_equal(m->u.error.ref_id, "m77");
	qes_proto_msg_free(m);
	free(t);
	er.ref_id = NULL;
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_error("g5", &er, b), 0);
	t = roundtrip(b, &m);
	assert_null(m->u.error.ref_id);
	assert_null(strstr(t, "ref_id"));
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_ping("p1", 1700000000123LL, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.ping.ts, 1700000000123LL);
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_pong("p2", "p1", 1700000000123LL, b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(m->u.pong.ref_id, "p1");
	assert_int_equal(m->u.pong.ts, 1700000000123LL);
	qes_proto_msg_free(m);
	free(t);
	qes_buf_free(b);
}

static void
test_roundtrip_sign(void **state)
{
	qes_proto_sign s = sample_sign();
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	char code[5], *t;

	(void)state;
	assert_non_null(b);
	assert_int_equal(qes_proto_build_sign("m1", &s, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->type, QES_PROTO_SIGN);
	assert_string_equal(m->u.sign.job_id, "job_1");
	assert_string_equal(m->u.sign.credential, CRED);
	assert_int_equal(m->u.sign.scheme, QES_SIG_ECDSA);
	assert_int_equal(m->u.sign.md, QES_MD_SHA256);
	assert_int_equal(m->u.sign.n_digests, 4);
	assert_memory_equal(m->u.sign.digests, digests4, sizeof(digests4));
	assert_string_equal(m->u.sign.requester.tenant, "Acme GmbH");
	assert_string_equal(m->u.sign.description, "Lease agreement\nBerlin office");
	assert_int_equal(qes_verification_code(QES_MD_SHA256, digests4, 4, code), 0);
	assert_string_equal(m->u.sign.verification_code, code);
	assert_int_equal(m->u.sign.timeout_s, 120);
	qes_proto_msg_free(m);
	free(t);

	/* a code given by the caller must be the right one */
	memcpy(s.verification_code, "0000", 5);
	if (strcmp(code, "0000") == 0)
		memcpy(s.verification_code, "0001", 5);
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign("m1", &s, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(b), 0);
	memcpy(s.verification_code, code, 5);
	assert_int_equal(qes_proto_build_sign("m1", &s, b), 0);
	/* builders refuse what the parser would refuse */
	s.title = "bad\x1b[31mtitle";
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign("m1", &s, b), QES_ERR_INVALID_ARG);
	s = sample_sign();
	assert_int_equal(qes_proto_build_sign("bad id", &s, b), QES_ERR_INVALID_ARG);
	s.title = "\xff\xfe";
	assert_int_equal(qes_proto_build_sign("m1", &s, b), QES_ERR_INVALID_ARG);
	qes_buf_free(b);
}

static void
test_roundtrip_sign_result(void **state)
{
	uint8_t s1[71], s2[256];
	qes_proto_bytes sigs[2] = { { s1, sizeof(s1) }, { s2, sizeof(s2) } };
	qes_proto_sign_result r;
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	char *t;

	(void)state;
	assert_non_null(b);
	memset(s1, 0x30, sizeof(s1));
	memset(s2, 0xa5, sizeof(s2));
	memset(&r, 0, sizeof(r));
	r.job_id = "job_1";
	r.status = QES_PROTO_STATUS_OK;
	r.signatures = sigs;
	r.n_signatures = 2;
	assert_int_equal(qes_proto_build_sign_result("m9", &r, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.sign_result.status, QES_PROTO_STATUS_OK);
	assert_int_equal(m->u.sign_result.n_signatures, 2);
	assert_int_equal(m->u.sign_result.signatures[1].len, 256);
	assert_memory_equal(m->u.sign_result.signatures[1].data, s2, 256);
	assert_null(m->u.sign_result.error);
	qes_proto_msg_free(m);
	free(t);

	/* an error given as a code gets its stable name; PIN errors carry flags */
	memset(&r, 0, sizeof(r));
	r.job_id = "job_1";
	r.status = QES_PROTO_STATUS_ERROR;
	r.error_code = QES_ERR_PIN_INCORRECT;
	r.detail = "C_Login: CKR_PIN_INCORRECT";
	r.has_pin_flags = 1;
	r.pin_flags = QES_TOK_PIN_FINAL_TRY;
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign_result("m9", &r, b), 0);
	t = roundtrip(b, &m);
	assert_non_null(strstr(t, "\"pin_flags\":{\"count_low\":false,\"final_try\":true,"
	    "\"locked\":false}"));
	assert_string_equal(m->u.sign_result.error, "pin_incorrect");
	assert_int_equal(m->u.sign_result.error_code, QES_ERR_PIN_INCORRECT);
	assert_int_equal(m->u.sign_result.has_pin_flags, 1);
	assert_int_equal(m->u.sign_result.pin_flags, QES_TOK_PIN_FINAL_TRY);
	qes_proto_msg_free(m);
	free(t);

	/* a PIN error without the token's flags is refused by the builder too */
	r.has_pin_flags = 0;
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign_result("m9", &r, b), QES_ERR_INVALID_ARG);

	/* declined in the dialog */
	memset(&r, 0, sizeof(r));
	r.job_id = "job_1";
	r.status = QES_PROTO_STATUS_ERROR;
	r.error = "cancelled";
	assert_int_equal(qes_proto_build_sign_result("m9", &r, b), 0);
	t = roundtrip(b, &m);
	assert_int_equal(m->u.sign_result.error_code, QES_ERR_CANCELLED);
	assert_string_equal(qes_proto_failure_reason(m->u.sign_result.error), "declined");
	qes_proto_msg_free(m);
	free(t);
	qes_buf_free(b);
}

/* ---- envelope and schema errors ------------------------------------------ */

static void
test_envelope_errors(void **state)
{
	qes_proto_limits gw, ag;
	char *t;

	(void)state;
	expect("", QES_ERR_FORMAT, "message: invalid JSON at byte 0: *");
	expect("[1,2]", QES_ERR_FORMAT, "message: expected an object, got an array");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1} x", QES_ERR_FORMAT,
	    "message: invalid JSON at byte *");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"ts\":1}", QES_ERR_FORMAT, "message.v: missing");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":\"1\",\"ts\":1}", QES_ERR_FORMAT,
	    "message.v: expected an integer");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1.0,\"ts\":1}", QES_ERR_FORMAT,
	    "message.v: expected an integer");
	expect("{\"type\":\"frob\",\"id\":\"a\",\"v\":2}", QES_ERR_UNSUPPORTED,
	    "message.v: version 2 is not supported (this side speaks 1)");
	expect("{\"id\":\"a\",\"v\":1}", QES_ERR_FORMAT, "message.type: missing");
	expect("{\"type\":7,\"id\":\"a\",\"v\":1}", QES_ERR_FORMAT,
	    "message.type: expected a string");
	expect("{\"type\":\"frobnicate\",\"id\":\"a\",\"v\":1}", QES_ERR_UNSUPPORTED,
	    "message.type: unknown type \"frobnicate\"");
	expect("{\"type\":\"Ping\",\"id\":\"a\",\"v\":1}", QES_ERR_UNSUPPORTED,
	    "message.type: unknown type \"Ping\"");
	expect("{\"type\":\"ping\",\"v\":1,\"ts\":1}", QES_ERR_FORMAT, "ping.id: missing");
	expect("{\"type\":\"ping\",\"id\":\"a b\",\"v\":1,\"ts\":1}", QES_ERR_FORMAT,
	    "ping.id: not [A-Za-z0-9_-]{1,64}");
	expect("{\"type\":\"ping\",\"id\":\"\",\"v\":1,\"ts\":1}", QES_ERR_FORMAT,
	    "ping.id: not [A-Za-z0-9_-]{1,64}");
	{
		char id[80], msg[160];

		memset(id, 'x', sizeof(id));
		id[QES_PROTO_ID_MAX + 1] = '\0';
		snprintf(msg, sizeof(msg), "{\"type\":\"ping\",\"id\":\"%s\",\"v\":1,\"ts\":1}", id);
		expect(msg, QES_ERR_FORMAT, "ping.id: not [A-Za-z0-9_-]{1,64}");
		id[QES_PROTO_ID_MAX] = '\0';
		snprintf(msg, sizeof(msg), "{\"type\":\"ping\",\"id\":\"%s\",\"v\":1,\"ts\":1}", id);
		qes_proto_msg_free(parse_ok(msg));
	}
	/* unknown fields, also ones that look harmless */
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1,\"extra\":null}",
	    QES_ERR_FORMAT, "ping: unknown field \"extra\"");
	expect("{\"type\":\"diagnose\",\"id\":\"a\",\"v\":1,\"verbose\":true}",
	    QES_ERR_FORMAT, "diagnose: unknown field \"verbose\"");
	/* the unknown name is escaped, so errors are safe to log */
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1,\"\\u001b[2J\\\"x\":1}",
	    QES_ERR_FORMAT, "ping: unknown field \"\\x1b[2J\\x22x\"");
	/* duplicate members would let two readers see two messages */
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1,\"ts\":2}", QES_ERR_FORMAT,
	    "message: invalid JSON at byte *");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":\"1\"}", QES_ERR_FORMAT,
	    "ping.ts: expected an integer, got a string");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":-1}", QES_ERR_FORMAT,
	    "ping.ts: -1 is out of range 0..9007199254740991");
	expect("{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1e3}", QES_ERR_FORMAT,
	    "ping.ts: expected an integer, got a number with a fraction or exponent");
	/* a NUL inside a string never reaches C strings */
	expect("{\"type\":\"error\",\"id\":\"a\",\"v\":1,\"code\":\"x\",\"message\":\"a\\u0000b\"}",
	    QES_ERR_FORMAT, "message: invalid JSON at byte *");

	/* direction: each side accepts only what the other may send */
	qes_proto_limits_init(&gw, QES_PROTO_ROLE_GATEWAY);
	qes_proto_limits_init(&ag, QES_PROTO_ROLE_AGENT);
	t = sample_sign_json();
	expect_lim(t, strlen(t), &gw, QES_ERR_FORMAT, "sign: not accepted from the agent");
	free(t);
	t = "{\"type\":\"hello\",\"id\":\"a\",\"v\":1,\"agent_version\":\"1\",\"os\":\"x\","
	    "\"device_id\":\"d\"}";
	expect_lim(t, strlen(t), &ag, QES_ERR_FORMAT, "hello: not accepted from the gateway");
	t = "{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":5}";
	{
		qes_proto_msg *m = NULL;

		assert_int_equal(qes_proto_parse((const uint8_t *)t, strlen(t), &gw, &m,
		    NULL, 0), 0);
		qes_proto_msg_free(m);
		assert_int_equal(qes_proto_parse((const uint8_t *)t, strlen(t), &ag, &m,
		    NULL, 0), 0);
		qes_proto_msg_free(m);
	}
	/* bad arguments */
	{
		qes_proto_msg *m;

		assert_int_equal(qes_proto_parse(NULL, 3, NULL, &m, NULL, 0),
		    QES_ERR_INVALID_ARG);
		assert_int_equal(qes_proto_parse((const uint8_t *)t, strlen(t), NULL, NULL,
		    NULL, 0), QES_ERR_INVALID_ARG);
	}
}

static void
test_sign_errors(void **state)
{
	uint8_t d31[31], d48[48];
	char *s = sample_sign_json();
	json_t *digs;
	size_t i;

	(void)state;
	memset(d31, 1, sizeof(d31));
	memset(d48, 2, sizeof(d48));
	expect_edit(s, "digests[3]", b64_of(d31, sizeof(d31)), QES_ERR_FORMAT,
	    "sign.digests[3]: wrong length 31 for sha256");
	expect_edit(s, "digests[0]", b64_of(d48, sizeof(d48)), QES_ERR_FORMAT,
	    "sign.digests[0]: wrong length 48 for sha256");
	expect_edit(s, "digests[1]", json_integer(5), QES_ERR_FORMAT,
	    "sign.digests[1]: expected a base64url string, got an integer");
	expect_edit(s, "digests[2]", json_string("AAAA+AAA"), QES_ERR_FORMAT,
	    "sign.digests[2]: not canonical base64url without padding");
	expect_edit(s, "digests", json_array(), QES_ERR_FORMAT, "sign.digests: empty");
	expect_edit(s, "digests", json_string("x"), QES_ERR_FORMAT,
	    "sign.digests: expected an array, got a string");
	digs = json_array();
	for (i = 0; i < QES_PROTO_DIGESTS_MAX + 1; i++)
		json_array_append_new(digs, b64_of(digests4, 32));
	expect_edit(s, "digests", digs, QES_ERR_LIMIT, "sign.digests: 1001 entries, at most 1000");
	/* md decides the length: sha384 makes the sha256 digests wrong */
	expect_edit(s, "md", json_string("sha384"), QES_ERR_FORMAT,
	    "sign.digests[0]: wrong length 32 for sha384");
	expect_edit(s, "md", json_string("SHA-256"), QES_ERR_FORMAT,
	    "sign.md: unknown value \"SHA-256\" (expected sha256, sha384, sha512)");
	expect_edit(s, "md", NULL, QES_ERR_FORMAT, "sign.md: missing");
	expect_edit(s, "scheme", json_string("dsa"), QES_ERR_FORMAT,
	    "sign.scheme: unknown value \"dsa\" (expected rsa-pkcs1, rsa-pss, ecdsa)");
	expect_edit(s, "job_id", NULL, QES_ERR_FORMAT, "sign.job_id: missing");
	expect_edit(s, "job_id", json_string("job/1"), QES_ERR_FORMAT,
	    "sign.job_id: character \"/\" at byte 3 is not allowed in an id ([A-Za-z0-9_-])");
	expect_edit(s, "credential", json_string("0123"), QES_ERR_FORMAT,
	    "sign.credential: not SERIAL:IDHEX (1..64 printable ASCII, ':', lower-case hex)");
	expect_edit(s, "credential", json_string(SERIAL ":0A02"), QES_ERR_FORMAT,
	    "sign.credential: not SERIAL:IDHEX (1..64 printable ASCII, ':', lower-case hex)");
	expect_edit(s, "credential", json_string(":0102"), QES_ERR_FORMAT,
	    "sign.credential: not SERIAL:IDHEX (1..64 printable ASCII, ':', lower-case hex)");
	expect_edit(s, "requester.tenant", NULL, QES_ERR_FORMAT,
	    "sign.requester.tenant: missing");
	expect_edit(s, "requester.tenant", json_string(""), QES_ERR_FORMAT,
	    "sign.requester.tenant: empty");
	expect_edit(s, "requester.role", json_string("x"), QES_ERR_FORMAT,
	    "sign.requester: unknown field \"role\"");
	expect_edit(s, "requester", json_string("Acme"), QES_ERR_FORMAT,
	    "sign.requester: expected an object, got a string");
	/* what the signer reads must be what it looks like */
	expect_edit(s, "title", json_string("Pay \xe2\x80\xae" "0001"), QES_ERR_FORMAT,
	    "sign.title: bidirectional control character U+202E at byte 4");
	expect_edit(s, "title", json_string("two\nlines"), QES_ERR_FORMAT,
	    "sign.title: control character U+000A at byte 3");
	expect_edit(s, "description", json_string("tab\there"), QES_ERR_FORMAT,
	    "sign.description: control character U+0009 at byte 3");
	expect_edit(s, "description", json_string("a\xc2\x85z"), QES_ERR_FORMAT,
	    "sign.description: control character U+0085 at byte 1");
	expect_edit(s, "description", json_string("x\xe2\x80\xa8y"), QES_ERR_FORMAT,
	    "sign.description: line or paragraph separator U+2028 at byte 1");
	expect_edit(s, "description", json_string(""), 0, "");
	expect_edit(s, "description", NULL, QES_ERR_FORMAT, "sign.description: missing");
	{
		char long_title[QES_PROTO_TITLE_MAX + 2];

		memset(long_title, 'T', sizeof(long_title) - 1);
		long_title[sizeof(long_title) - 1] = '\0';
		expect_edit(s, "title", json_string(long_title), QES_ERR_LIMIT,
		    "sign.title: 257 bytes, at most 256");
	}
	expect_edit(s, "verification_code", json_string("12345"), QES_ERR_FORMAT,
	    "sign.verification_code: 5 characters, expected 4 digits");
	expect_edit(s, "verification_code", json_string("12a4"), QES_ERR_FORMAT,
	    "sign.verification_code: character \"a\" at byte 2 is not a decimal digit");
	expect_edit(s, "verification_code", json_string("123"), QES_ERR_FORMAT,
	    "sign.verification_code: 3 characters, expected 4 digits");
	{
		char code[5], other[16], want[128];

		assert_int_equal(qes_verification_code(QES_MD_SHA256, digests4, 4, code), 0);
		snprintf(other, sizeof(other), "%04d", (atoi(code) + 1) % 10000);
		snprintf(want, sizeof(want), "sign.verification_code: %s does not match the "
		    "digests (%s)", other, code);
		expect_edit(s, "verification_code", json_string(other), QES_ERR_FORMAT, want);
	}
	expect_edit(s, "timeout_s", json_integer(4), QES_ERR_FORMAT,
	    "sign.timeout_s: 4 is out of range 5..3600");
	expect_edit(s, "timeout_s", json_integer(3601), QES_ERR_FORMAT,
	    "sign.timeout_s: 3601 is out of range 5..3600");
	expect_edit(s, "timeout_s", json_true(), QES_ERR_FORMAT,
	    "sign.timeout_s: expected an integer, got a boolean");
	expect_edit(s, "priority", json_integer(1), QES_ERR_FORMAT,
	    "sign: unknown field \"priority\"");
	free(s);
}

static void
test_other_errors(void **state)
{
	char nonce31[64], nonce_pad[64];
	uint8_t n[32];

	(void)state;
	memset(n, 7, sizeof(n));
#define CH_FMT "{\"type\":\"challenge\",\"id\":\"g1\",\"v\":1,\"nonce\":\"%s\"," \
	    "\"server_name\":\"%s\",\"session_id\":\"ses_1\"}"
	{
		json_t *v = b64_of(n, 31);
		char buf[512];

		snprintf(nonce31, sizeof(nonce31), "%s", json_string_value(v));
		json_decref(v);
		v = b64_of(n, 32);
		snprintf(nonce_pad, sizeof(nonce_pad), "%s=", json_string_value(v));
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "qes.example.com");
		json_decref(v);
		qes_proto_msg_free(parse_ok(buf));
		snprintf(buf, sizeof(buf), CH_FMT, nonce31, "qes.example.com");
		expect(buf, QES_ERR_FORMAT, "challenge.nonce: decodes to 31 bytes, expected 32");
		snprintf(buf, sizeof(buf), CH_FMT, nonce_pad, "qes.example.com");
		expect(buf, QES_ERR_LIMIT,
		    "challenge.nonce: 44 base64url characters, at most 43 (32 bytes)");
		v = b64_of(n, 32);
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "QES.example.com");
		expect(buf, QES_ERR_FORMAT,
		    "challenge.server_name: not a lower-case host name or IP address");
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "qes.example.com.");
		expect(buf, QES_ERR_FORMAT,
		    "challenge.server_name: not a lower-case host name or IP address");
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "qes.example.com:443");
		expect(buf, QES_ERR_FORMAT,
		    "challenge.server_name: not a lower-case host name or IP address");
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "-qes.example.com");
		expect(buf, QES_ERR_FORMAT,
		    "challenge.server_name: not a lower-case host name or IP address");
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "127.0.0.1");
		qes_proto_msg_free(parse_ok(buf));
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "::1");
		qes_proto_msg_free(parse_ok(buf));
		snprintf(buf, sizeof(buf), CH_FMT, json_string_value(v), "localhost");
		qes_proto_msg_free(parse_ok(buf));
		json_decref(v);
	}
	expect("{\"type\":\"auth\",\"id\":\"a\",\"v\":1,\"device_id\":\"d\",\"signature\":\"AAAA\"}",
	    QES_ERR_FORMAT, "auth.signature: decodes to 3 bytes, expected 8..72");
	expect("{\"type\":\"auth_ok\",\"id\":\"a\",\"v\":1,\"session_id\":\"s\",\"heartbeat_s\":1}",
	    QES_ERR_FORMAT, "auth_ok.heartbeat_s: 1 is out of range 5..300");
	expect("{\"type\":\"cancel\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"reason\":\"bored\"}",
	    QES_ERR_FORMAT,
	    "cancel.reason: unknown value \"bored\" (expected requested, expired)");
	expect("{\"type\":\"error\",\"id\":\"a\",\"v\":1,\"code\":\"Bad\",\"message\":\"\"}",
	    QES_ERR_FORMAT,
	    "error.code: character \"B\" at byte 0 is not allowed in a code ([a-z0-9_])");
	expect("{\"type\":\"pong\",\"id\":\"a\",\"v\":1,\"ts\":1}", QES_ERR_FORMAT,
	    "pong.ref_id: missing");
	expect("{\"type\":\"hello\",\"id\":\"a\",\"v\":1,\"agent_version\":\"1 beta\",\"os\":\"x\","
	    "\"device_id\":\"d\"}", QES_ERR_FORMAT,
	    "hello.agent_version: character \" \" at byte 1 is not allowed in a version "
	    "([0-9A-Za-z.+~_-])");
	expect("{\"type\":\"hello\",\"id\":\"a\",\"v\":1,\"agent_version\":\"1\",\"os\":\"Linux\\u00e9\","
	    "\"device_id\":\"d\"}", QES_ERR_FORMAT,
	    "hello.os: character \"\\xc3\" at byte 5 is not printable ASCII");

	/* sign_result rules */
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"ok\"}",
	    QES_ERR_FORMAT, "sign_result.signatures: missing (status is ok)");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"ok\","
	    "\"signatures\":[\"AAAA\"],\"error\":\"timeout\"}",
	    QES_ERR_FORMAT, "sign_result.error: not allowed (status is ok)");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"ok\","
	    "\"signatures\":[]}", QES_ERR_FORMAT, "sign_result.signatures: empty");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"ok\","
	    "\"signatures\":[\"\"]}", QES_ERR_FORMAT, "sign_result.signatures[0]: empty");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\"}",
	    QES_ERR_FORMAT, "sign_result.error: missing (status is error)");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"timeout\",\"signatures\":[\"AAAA\"]}",
	    QES_ERR_FORMAT, "sign_result.signatures: not allowed (status is error)");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"ok\"}", QES_ERR_FORMAT, "sign_result.error: \"ok\" is not an error");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"pin_locked\"}", QES_ERR_FORMAT,
	    "sign_result.pin_flags: missing (error is pin_locked)");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"pin_locked\",\"pin_flags\":{\"count_low\":false,\"locked\":true}}",
	    QES_ERR_FORMAT, "sign_result.pin_flags.final_try: missing");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"pin_locked\",\"pin_flags\":{\"count_low\":false,\"final_try\":0,"
	    "\"locked\":true}}",
	    QES_ERR_FORMAT, "sign_result.pin_flags.final_try: expected a boolean, got an integer");
	expect("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\",\"status\":\"error\","
	    "\"error\":\"pin_locked\",\"pin_flags\":{\"count_low\":false,\"final_try\":false,"
	    "\"locked\":true,\"puk\":true}}",
	    QES_ERR_FORMAT, "sign_result.pin_flags: unknown field \"puk\"");
	{
		/* a code this build does not know still fails the job cleanly */
		qes_proto_msg *m = parse_ok("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,"
		    "\"job_id\":\"j\",\"status\":\"error\",\"error\":\"quantum_decoherence\"}");

		assert_string_equal(m->u.sign_result.error, "quantum_decoherence");
		assert_int_equal(m->u.sign_result.error_code, 0);
		assert_string_equal(qes_proto_failure_reason(m->u.sign_result.error),
		    "quantum_decoherence");
		qes_proto_msg_free(m);
	}
	{
		uint8_t big[QES_PROTO_SIG_MAX + 1];
		json_t *v;
		char *t;

		memset(big, 1, sizeof(big));
		v = b64_of(big, sizeof(big));
		t = edit("{\"type\":\"sign_result\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\","
		    "\"status\":\"ok\",\"signatures\":[\"AAAA\"]}", "signatures[0]", v);
		expect(t, QES_ERR_LIMIT,
		    "sign_result.signatures[0]: 1367 base64url characters, at most 1366 (1024 bytes)");
		free(t);
	}
}

/* ---- limits --------------------------------------------------------------- */

static void
test_limits(void **state)
{
	qes_proto_limits lim;
	size_t n = QES_PROTO_MAX_BYTES + 1, i;
	char *big = malloc(n + 1), *p;

	(void)state;
	assert_non_null(big);
	/* total size: refused before anything is parsed */
	memset(big, ' ', n);
	big[n] = '\0';
	expect_lim(big, n, NULL, QES_ERR_LIMIT, "message: 1048577 bytes, at most 1048576");
	/* a small type may not use the large limit: padding with blanks is enough */
	p = big;
	p += sprintf(p, "{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1");
	memset(p, ' ', 70000);
	p[70000] = '}';
	p[70001] = '\0';
	expect(big, QES_ERR_LIMIT, "ping: 70037 bytes, at most 65536 for this type");
	/* nesting: counted before jansson recurses */
	p = big;
	for (i = 0; i < 11; i++)
		*p++ = '[';
	for (i = 0; i < 11; i++)
		*p++ = ']';
	*p = '\0';
	expect(big, QES_ERR_LIMIT, "message: nested deeper than 10 levels");
	p = big;
	for (i = 0; i < 100000; i++)
		*p++ = '[';
	*p = '\0';
	expect(big, QES_ERR_LIMIT, "message: nested deeper than 10 levels");
	/* brackets in strings are text, not nesting */
	qes_proto_msg_free(parse_ok("{\"type\":\"error\",\"id\":\"a\",\"v\":1,\"code\":\"x\","
	    "\"message\":\"[[[[[[[[[[[[[[[[[[\\\"[[{{{{{{{{{{{{{\"}"));
	/* values: a lowered limit */
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_ANY);
	lim.max_values = 5;
	{
		const char *t = "{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1,\"x\":[1,2,3]}";

		expect_lim(t, strlen(t), &lim, QES_ERR_LIMIT, "message: more than 5 values");
	}
	/* the default value limit: a megabyte of tiny arrays */
	p = big;
	p += sprintf(p, "{\"type\":\"inventory\",\"id\":\"a\",\"v\":1,\"x\":[");
	for (i = 0; i < 250000; i++) {
		memcpy(p, "0,", 2);
		p += 2;
	}
	memcpy(p, "0]}", 4);
	expect(big, QES_ERR_LIMIT, "message: more than 200000 values");
	/* a lowered byte limit and depth */
	lim.max_values = 0;
	lim.max_bytes = 10;
	expect_lim("{\"type\":\"ping\"}", 15, &lim, QES_ERR_LIMIT,
	    "message: 15 bytes, at most 10");
	lim.max_bytes = 0;
	lim.max_depth = 1;
	{
		const char *t = "{\"type\":\"ping\",\"id\":\"a\",\"v\":1,\"ts\":1,\"x\":{}}";

		expect_lim(t, strlen(t), &lim, QES_ERR_LIMIT,
		    "message: nested deeper than 1 levels");
	}
	free(big);
}

/* ---- base64url ------------------------------------------------------------ */

static void
check_b64(const char *raw, size_t n, const char *enc)
{
	qes_buf *b = qes_buf_new();

	assert_non_null(b);
	assert_int_equal(qes_proto_b64url_encode((const uint8_t *)raw, n, b), 0);
	assert_int_equal(qes_buf_len(b), strlen(enc));
	assert_memory_equal(qes_buf_data(b), enc, strlen(enc));
	qes_buf_reset(b);
	assert_int_equal(qes_proto_b64url_decode(enc, strlen(enc), b), 0);
	assert_int_equal(qes_buf_len(b), n);
	if (n > 0)
		assert_memory_equal(qes_buf_data(b), raw, n);
	qes_buf_free(b);
}

static void
test_b64url(void **state)
{
	static const char *const bad[] = {
		"Zg==", "Zg=", "Z", "Zm9vY", "Zh", "Zm9=", "Zm+v", "Zm/v", " Zg", "Zg ",
		"Zm9v\n", "Zm9", "AB", "ABC", "Zm9v=",
	};
	qes_buf *b = qes_buf_new();
	size_t i;

	(void)state;
	assert_non_null(b);
	check_b64("", 0, "");
	check_b64("f", 1, "Zg");
	check_b64("fo", 2, "Zm8");
	check_b64("foo", 3, "Zm9v");
	check_b64("foob", 4, "Zm9vYg");
	check_b64("fooba", 5, "Zm9vYmE");
	check_b64("foobar", 6, "Zm9vYmFy");
	check_b64("\xfb\xff\xbf", 3, "-_-_");
	check_b64("\x00\x00", 2, "AAA");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		qes_buf_reset(b);
		if (qes_proto_b64url_decode(bad[i], strlen(bad[i]), b) != QES_ERR_FORMAT)
			fail_msg("\"%s\" decoded", bad[i]);
	}
	assert_int_equal(qes_proto_b64url_decode(NULL, 1, b), QES_ERR_INVALID_ARG);
	qes_buf_free(b);
}

/* ---- authentication ------------------------------------------------------- */

#define TBS_GOLDEN "0000000b7165732e76312d6175746800000020000102030405060708090a0b0c" \
	"0d0e0f101112131415161718191a1b1c1d1e1f000000086465765f374b71320000000f716573" \
	"2e6578616d706c652e636f6d000000087365735f41316232"

static void
test_auth(void **state)
{
	uint8_t nonce[32], other[32], golden[sizeof(TBS_GOLDEN) / 2];
	qes_proto_challenge ch;
	qes_proto_auth au;
	qes_proto_msg *cm, *am;
	EVP_PKEY *k = testcert_key_ec("P-256"), *k2 = testcert_key_ec("P-256");
	EVP_PKEY *k384 = testcert_key_ec("P-384");
	qes_buf *tbs = qes_buf_new(), *sig = qes_buf_new(), *wire = qes_buf_new();
	char *t;
	size_t i;

	(void)state;
	assert_non_null(k);
	assert_non_null(k2);
	assert_non_null(k384);
	assert_non_null(tbs);
	for (i = 0; i < 32; i++)
		nonce[i] = (uint8_t)i;
	/* golden vector: the bytes from the definition, computed in Python */
	hex_to(TBS_GOLDEN, golden, sizeof(golden));
	assert_int_equal(qes_proto_auth_tbs(nonce, "dev_7Kq2", "qes.example.com",
	    "ses_A1b2", tbs), 0);
	assert_int_equal(qes_buf_len(tbs), sizeof(golden));
	assert_memory_equal(qes_buf_data(tbs), golden, sizeof(golden));
	/* appended, never a partial write on error */
	assert_int_equal(qes_proto_auth_tbs(nonce, "dev 7", "qes.example.com", "s", tbs),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_proto_auth_tbs(nonce, "d", "QES.example.com", "s", tbs),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_proto_auth_tbs(nonce, "d", "h", "", tbs), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_proto_auth_tbs(NULL, "d", "h", "s", tbs), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(tbs), sizeof(golden));

	/* the whole exchange: gateway challenge -> agent auth -> gateway verify */
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(qes_proto_new_nonce(ch.nonce), 0);
	ch.server_name = "qes.example.com";
	ch.session_id = "ses_A1b2";
	assert_int_equal(qes_proto_build_challenge("g1", &ch, wire), 0);
	t = buf_str(wire);
	cm = parse_ok(t);
	free(t);
	assert_int_equal(qes_proto_auth_sign(k, cm->u.challenge.nonce, "dev_7Kq2",
	    cm->u.challenge.server_name, cm->u.challenge.session_id, sig), 0);
	assert_true(qes_buf_len(sig) >= 8 && qes_buf_len(sig) <= QES_PROTO_AUTH_SIG_MAX);
	au.device_id = "dev_7Kq2";
	au.signature.data = qes_buf_data(sig);
	au.signature.len = qes_buf_len(sig);
	qes_buf_reset(wire);
	assert_int_equal(qes_proto_build_auth("m2", &au, wire), 0);
	t = buf_str(wire);
	am = parse_ok(t);
	free(t);
	assert_int_equal(qes_proto_auth_verify(k, ch.nonce, am->u.auth.device_id,
	    "qes.example.com", "ses_A1b2", am->u.auth.signature.data,
	    am->u.auth.signature.len), 0);
	/* anything else bound into the signature must match */
	memcpy(other, ch.nonce, 32);
	other[31] ^= 1;
	assert_int_equal(qes_proto_auth_verify(k, other, "dev_7Kq2", "qes.example.com",
	    "ses_A1b2", qes_buf_data(sig), qes_buf_len(sig)), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq3", "qes.example.com",
	    "ses_A1b2", qes_buf_data(sig), qes_buf_len(sig)), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2", "evil.example.com",
	    "ses_A1b2", qes_buf_data(sig), qes_buf_len(sig)), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2", "qes.example.com",
	    "ses_A1b3", qes_buf_data(sig), qes_buf_len(sig)), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_proto_auth_verify(k2, ch.nonce, "dev_7Kq2", "qes.example.com",
	    "ses_A1b2", qes_buf_data(sig), qes_buf_len(sig)), QES_ERR_SIGNATURE_INVALID);
	/* malformed values: trailing byte, flipped bit, empty, too long */
	{
		uint8_t s2[QES_PROTO_AUTH_SIG_MAX + 1];
		size_t l = qes_buf_len(sig);

		memcpy(s2, qes_buf_data(sig), l);
		s2[l] = 0;
		if (l < QES_PROTO_AUTH_SIG_MAX)
			assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2",
			    "qes.example.com", "ses_A1b2", s2, l + 1),
			    QES_ERR_SIGNATURE_INVALID);
		s2[l / 2] ^= 0x10;
		assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2",
		    "qes.example.com", "ses_A1b2", s2, l), QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2",
		    "qes.example.com", "ses_A1b2", s2, 0), QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(qes_proto_auth_verify(k, ch.nonce, "dev_7Kq2",
		    "qes.example.com", "ses_A1b2", s2, sizeof(s2)), QES_ERR_SIGNATURE_INVALID);
	}
	/* device keys are P-256, nothing else */
	qes_buf_reset(sig);
	assert_int_equal(qes_proto_auth_sign(k384, ch.nonce, "d", "h", "s", sig),
	    QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_proto_auth_verify(k384, ch.nonce, "d", "h", "s",
	    golden, 64), QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_proto_auth_sign(NULL, ch.nonce, "d", "h", "s", sig),
	    QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_buf_len(sig), 0);
	/* a public-only key verifies */
	{
		uint8_t *der = NULL;
		const uint8_t *pp;
		int dl;
		EVP_PKEY *pub;

		qes_buf_reset(sig);
		assert_int_equal(qes_proto_auth_sign(k, nonce, "d", "h", "s", sig), 0);
		dl = i2d_PUBKEY(k, &der);
		assert_true(dl > 0);
		pp = der;
		pub = d2i_PUBKEY(NULL, &pp, dl);
		assert_non_null(pub);
		assert_int_equal(qes_proto_auth_verify(pub, nonce, "d", "h", "s",
		    qes_buf_data(sig), qes_buf_len(sig)), 0);
		EVP_PKEY_free(pub);
		OPENSSL_free(der);
	}
	qes_proto_msg_free(cm);
	qes_proto_msg_free(am);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k384);
	qes_buf_free(tbs);
	qes_buf_free(sig);
	qes_buf_free(wire);
}

/* ---- verification code ---------------------------------------------------- */

static void
test_verification_code(void **state)
{
	uint8_t d[3 * 64], z[32];
	char code[5];
	unsigned *counts;
	double chi2 = 0, e;
	size_t i;

	(void)state;
	/* golden vectors, computed in Python from the definition in proto.h */
	assert_int_equal(qes_verification_code(QES_MD_SHA256, digests4, 2, code), 0);
	assert_string_equal(code, "0238");
	assert_int_equal(qes_verification_code(QES_MD_SHA256, digests4, 1, code), 0);
	assert_string_equal(code, "9476");
	memcpy(d, digests4 + 32, 32);
	memcpy(d + 32, digests4, 32);
	assert_int_equal(qes_verification_code(QES_MD_SHA256, d, 2, code), 0);
	assert_string_equal(code, "8077");	/* order matters */
	memset(z, 0, sizeof(z));
	assert_int_equal(qes_verification_code(QES_MD_SHA256, z, 1, code), 0);
	assert_string_equal(code, "0163");	/* leading zero kept */
	assert_int_equal(qes_md_digest(QES_MD_SHA384, "abc", 3, d), 0);
	assert_int_equal(qes_verification_code(QES_MD_SHA384, d, 1, code), 0);
	assert_string_equal(code, "1993");
	assert_int_equal(qes_md_digest(QES_MD_SHA512, "abc", 3, d), 0);
	memcpy(d + 64, d, 64);
	memcpy(d + 128, d, 64);
	assert_int_equal(qes_verification_code(QES_MD_SHA512, d, 3, code), 0);
	assert_string_equal(code, "7799");
	/* bad arguments leave an empty string */
	assert_int_equal(qes_verification_code(QES_MD_SHA256, z, 0, code), QES_ERR_INVALID_ARG);
	assert_string_equal(code, "");
	assert_int_equal(qes_verification_code((qes_md)9, z, 1, code), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_verification_code(QES_MD_SHA256, NULL, 1, code),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_verification_code(QES_MD_SHA256, z, QES_PROTO_DIGESTS_MAX + 1,
	    code), QES_ERR_INVALID_ARG);

	/* uniformity: 50,000 digests over 10,000 codes, chi-square near its mean */
	counts = calloc(10000, sizeof(*counts));
	assert_non_null(counts);
	for (i = 0; i < 50000; i++) {
		uint32_t be = (uint32_t)i;

		assert_int_equal(qes_md_digest(QES_MD_SHA256, &be, sizeof(be), z), 0);
		assert_int_equal(qes_verification_code(QES_MD_SHA256, z, 1, code), 0);
		assert_int_equal(strlen(code), 4);
		counts[atoi(code)]++;
	}
	e = 50000.0 / 10000.0;
	for (i = 0; i < 10000; i++)
		chi2 += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
	/* 9,999 degrees of freedom: mean 9999, standard deviation 141 */
	if (chi2 < 9999 - 6 * 141 || chi2 > 9999 + 6 * 141)
		fail_msg("chi-square %.1f is not plausible for uniform codes", chi2);
	free(counts);
}

/* ---- inventory and diagnosis --------------------------------------------- */

struct fake {
	qes_p11 *p;
	qes_p11_inventory inv;
	qes_p11_token tok[2];
	qes_p11_cred cred[2];
	qes_p11_mech mech[2];
	uint8_t *der[2];
	size_t der_len[2];
	EVP_PKEY *key[2];
};

static void
fake_init(struct fake *f)
{
	uint8_t qc[128];
	testcert_spec s;
	int i;

	memset(f, 0, sizeof(*f));
	assert_int_equal(qes_p11_new(&f->p), 0);
	f->key[0] = testcert_key_ec("P-256");
	f->key[1] = testcert_key_ec("P-384");
	for (i = 0; i < 2; i++) {
		memset(&s, 0, sizeof(s));
		s.key = f->key[i];
		s.cn = i == 0 ? "Erika Mustermann" : "Erika Mustermann (auth)";
		if (i == 0) {
			s.key_usage = QES_KU_NON_REPUDIATION;
			s.qc_der = qc;
			s.qc_der_len = testcert_qc(QES_QC_COMPLIANCE | QES_QC_SSCD |
			    QES_QC_TYPE_ESIGN, qc, sizeof(qc));
		} else {
			s.key_usage = QES_KU_DIGITAL_SIGNATURE | QES_KU_KEY_AGREEMENT;
		}
		f->der[i] = testcert_der(&s, &f->der_len[i]);
		assert_non_null(f->der[i]);
		assert_int_equal(qes_cert_from_der(f->der[i], f->der_len[i],
		    &f->cred[i].cert), 0);
		f->cred[i].cls = qes_cert_classify(f->cred[i].cert, (int64_t)time(NULL));
		f->cred[i].id[0] = 1;
		f->cred[i].id[1] = (uint8_t)(2 + i);
		f->cred[i].id_len = 2;
		f->cred[i].id_hex = i == 0 ? "0102" : "0103";
		f->cred[i].label = i == 0 ? "Signature" : "Authentication";
		f->cred[i].has_key = i == 0 ? 1 : -1;
		f->cred[i].always_authenticate = i == 0;
		f->cred[i].can_sign = 1;
	}
	f->mech[0] = (qes_p11_mech){ 0x1041, "CKM_ECDSA", 256, 521, 0 };
	f->mech[1] = (qes_p11_mech){ 0x1, "CKM_RSA_PKCS", 1024, 4096, 0 };
	f->tok[0] = (qes_p11_token){
		.slot_id = 7, .slot_description = "Test Reader 0", .slot_manufacturer = "qes",
		.hardware_slot = 1, .removable = 1, .present = 1, .label = "Signer Card",
		.manufacturer = "qes test", .model = "virtual", .serial = SERIAL,
		.hw_major = 1, .fw_major = 2, .fw_minor = 3,
		.flags = QES_TOK_LOGIN_REQUIRED | QES_TOK_INITIALIZED |
		    QES_TOK_USER_PIN_INITIALIZED | QES_TOK_PIN_COUNT_LOW,
		.min_pin = 4, .max_pin = 12, .mechs = f->mech, .n_mechs = 2,
		.creds = f->cred, .n_creds = 2, .errmsg = "",
	};
	f->tok[1] = (qes_p11_token){
		.slot_id = 8, .slot_description = "Test Reader 1", .slot_manufacturer = "qes",
		.hardware_slot = 1, .removable = 1, .present = 0, .label = "",
		.manufacturer = "", .model = "", .serial = "", .errmsg = "",
	};
	f->inv.tokens = f->tok;
	f->inv.n_tokens = 2;
}

static void
fake_free(struct fake *f)
{
	int i;

	for (i = 0; i < 2; i++) {
		qes_cert_free(f->cred[i].cert);
		OPENSSL_free(f->der[i]);
		EVP_PKEY_free(f->key[i]);
	}
	qes_p11_free(f->p);
}

static char *
inventory_json(struct fake *f, int attach)
{
	json_t *rep = qes_report_inventory(f->p, &f->inv);
	qes_proto_inventory b;
	qes_proto_msg m;
	qes_buf *buf = qes_buf_new();
	char err[256], *t;

	assert_non_null(rep);
	assert_non_null(buf);
	if (attach)
		assert_int_equal(qes_proto_inventory_attach_certs(rep, &f->inv), 0);
	memset(&b, 0, sizeof(b));
	b.report.json = rep;
	memset(&m, 0, sizeof(m));
	m.type = QES_PROTO_INVENTORY;
	m.id = "m3";
	m.u.inventory = b;
	if (attach) {
		if (qes_proto_build(&m, buf, err, sizeof(err)) != 0)
			fail_msg("build inventory: %s", err);
		t = buf_str(buf);
	} else {
		/* the builder refuses it; make the text by hand for the parser */
		assert_int_equal(qes_proto_build(&m, buf, err, sizeof(err)),
		    QES_ERR_INVALID_ARG);
		assert_string_equal(err, "inventory.report.tokens[0].certificates[0]."
		    "certificate: missing (an inventory carries every certificate)");
		json_t *j = json_pack("{s:s,s:s,s:i,s:O}", "type", "inventory", "id", "m3",
		    "v", 1, "report", rep);

		t = json_dumps(j, JSON_COMPACT);
		json_decref(j);
	}
	json_decref(rep);
	qes_buf_free(buf);
	return t;
}

static void
test_inventory(void **state)
{
	struct fake f;
	const qes_proto_token *t0, *t1;
	const qes_proto_cert *c0, *c1;
	qes_proto_limits gw;
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	char *t, *t2;
	json_t *toks, *root;
	size_t i;

	(void)state;
	assert_non_null(b);
	fake_init(&f);
	t = inventory_json(&f, 1);
	qes_proto_limits_init(&gw, QES_PROTO_ROLE_GATEWAY);
	{
		char err[256];

		assert_int_equal(qes_proto_parse((const uint8_t *)t, strlen(t), &gw, &m, err,
		    sizeof(err)), 0);
	}
	assert_int_equal(m->type, QES_PROTO_INVENTORY);
	assert_int_equal(m->u.inventory.report.n_tokens, 2);
	assert_null(m->u.inventory.report.system);
	assert_non_null(m->u.inventory.report.json);
	t0 = &m->u.inventory.report.tokens[0];
	t1 = &m->u.inventory.report.tokens[1];
	assert_true(t0->present);
	assert_string_equal(t0->serial, SERIAL);
	assert_string_equal(t0->label, "Signer Card");
	assert_int_equal(t0->slot_id, 7);
	assert_int_equal(t0->flags, f.tok[0].flags);
	assert_int_equal(t0->n_mechanisms, 2);
	assert_string_equal(t0->mechanisms[0].name, "CKM_ECDSA");
	assert_int_equal(t0->mechanisms[1].max_key, 4096);
	assert_int_equal(t0->n_certificates, 2);
	assert_null(t0->verdict);
	c0 = &t0->certificates[0];
	c1 = &t0->certificates[1];
	assert_string_equal(c0->credential, CRED);
	assert_int_equal(c0->classification, QES_CERT_QUALIFIED);
	assert_int_equal(c0->key_type, QES_KEY_EC);
	assert_string_equal(c0->curve, "P-256");
	assert_int_equal(c0->key_usage, QES_KU_NON_REPUDIATION);
	assert_int_equal(c0->qc, QES_QC_COMPLIANCE | QES_QC_SSCD | QES_QC_TYPE_ESIGN);
	assert_int_equal(c0->has_private_key, 1);
	assert_int_equal(c0->always_authenticate, 1);
	assert_int_equal(c0->certificate.len, f.der_len[0]);
	assert_memory_equal(c0->certificate.data, f.der[0], f.der_len[0]);
	assert_int_equal(c1->has_private_key, -1);
	assert_int_equal(c1->key_usage, QES_KU_DIGITAL_SIGNATURE | QES_KU_KEY_AGREEMENT);
	assert_string_equal(c1->curve, "P-384");
	assert_false(t1->present);
	assert_null(t1->serial);
	assert_int_equal(t1->n_certificates, 0);
	/* rebuilt from the parsed message: the same text */
	assert_int_equal(qes_proto_build(m, b, NULL, 0), 0);
	t2 = buf_str(b);
	assert_string_equal(t2, t);
	free(t2);
	qes_proto_msg_free(m);

	/* each rule between fields, by editing the good document */
	expect_edit(t, "report.tokens[0].certificates[0].sha256",
	    json_string("00000000000000000000000000000000000000000000000000000000000000ff"),
	    QES_ERR_FORMAT, "inventory.report.tokens[0].certificates[0].sha256: is not the "
	    "SHA-256 of certificate");
	expect_edit(t, "report.tokens[0].certificates[1].credential",
	    json_string("fedcba9876543210:0103"), QES_ERR_FORMAT,
	    "inventory.report.tokens[0].certificates[1].credential: is not the token serial "
	    "and the id joined by ':'");
	expect_edit(t, "report.tokens[0].serial", NULL, QES_ERR_FORMAT,
	    "inventory.report.tokens[0].serial: missing (the token is present)");
	expect_edit(t, "report.tokens[1].label", json_string("ghost"), QES_ERR_FORMAT,
	    "inventory.report.tokens[1].label: not allowed (no token in the slot)");
	expect_edit(t, "report.tokens[0].verdict", json_string("ready"), QES_ERR_FORMAT,
	    "inventory.report.tokens[0].verdict: not allowed (only a diagnosis has verdicts)");
	expect_edit(t, "report.tokens[0].flags.user_pin_locked", NULL, QES_ERR_FORMAT,
	    "inventory.report.tokens[0].flags.user_pin_locked: missing");
	expect_edit(t, "report.tokens[0].flags.pin_stolen", json_false(), QES_ERR_FORMAT,
	    "inventory.report.tokens[0].flags: unknown field \"pin_stolen\"");
	expect_edit(t, "report.tokens[0].certificates[0].classification",
	    json_string("super"), QES_ERR_FORMAT,
	    "inventory.report.tokens[0].certificates[0].classification: unknown value "
	    "\"super\" (expected qualified, advanced, authentication, expired, not_yet_valid)");
	{
		char *e1 = edit(t, "report.tokens[0].certificates[1].key_usage[1]",
		    json_string("digitalSignature"));

		expect(e1, QES_ERR_FORMAT,
		    "inventory.report.tokens[0].certificates[1].key_usage[1]: listed twice");
		free(e1);
	}
	expect_edit(t, "report.tokens[0].certificates[0].has_private_key", json_string("yes"),
	    QES_ERR_FORMAT, "inventory.report.tokens[0].certificates[0].has_private_key: "
	    "expected a boolean or null, got a string");
	expect_edit(t, "report.tokens[0].certificates[0].pin", json_string("1234"),
	    QES_ERR_FORMAT,
	    "inventory.report.tokens[0].certificates[0]: unknown field \"pin\"");
	expect_edit(t, "report.tokens[1].certificates", json_pack("[{}]"), QES_ERR_FORMAT,
	    "inventory.report.tokens[1].certificates[0].credential: missing");
	expect_edit(t, "report.system", json_pack("{s:s,s:s,s:s}", "agent_version", "1",
	    "openssl_version", "OpenSSL", "time", "2024-01-01T00:00:00Z"), QES_ERR_FORMAT,
	    "inventory.report.system: not allowed (only a diagnosis describes the system)");
	expect_edit(t, "report.modules", json_pack("[{s:s,s:s,s:s,s:b}]", "path", "/x.so",
	    "name", "", "source", "explicit", "loaded", 0), QES_ERR_FORMAT,
	    "inventory.report.modules[0].error: missing (the module did not load)");
	/* too many tokens */
	root = json_loads(t, 0, NULL);
	assert_non_null(root);
	toks = json_object_get(json_object_get(root, "report"), "tokens");
	for (i = 0; i < 63; i++)
		json_array_append(toks, json_array_get(toks, 1));
	t2 = json_dumps(root, JSON_COMPACT);
	expect(t2, QES_ERR_LIMIT, "inventory.report.tokens: 65 entries, at most 64");
	free(t2);
	json_decref(root);
	free(t);

	/* without certificates an inventory is refused */
	t = inventory_json(&f, 0);
	expect(t, QES_ERR_FORMAT, "inventory.report.tokens[0].certificates[0].certificate: "
	    "missing (an inventory carries every certificate)");
	free(t);
	/* attaching to a report of another snapshot is refused */
	{
		json_t *rep = qes_report_inventory(f.p, &f.inv);

		assert_non_null(rep);
		f.cred[1].id_hex = "0109";
		assert_int_equal(qes_proto_inventory_attach_certs(rep, &f.inv),
		    QES_ERR_INVALID_ARG);
		f.cred[1].id_hex = "0103";
		f.inv.n_tokens = 1;
		assert_int_equal(qes_proto_inventory_attach_certs(rep, &f.inv),
		    QES_ERR_INVALID_ARG);
		f.inv.n_tokens = 2;
		json_decref(rep);
	}
	qes_buf_free(b);
	fake_free(&f);
}

static void
test_diagnose_result(void **state)
{
	struct fake f;
	qes_proto_timings tm = { 12, 40 };
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	json_t *rep;
	char *t;

	(void)state;
	assert_non_null(b);
	fake_init(&f);
	rep = qes_report_diagnose(f.p, &f.inv);
	assert_non_null(rep);
	assert_int_equal(qes_proto_build_diagnose_result("m4", "g3", rep, &tm, b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(m->u.diagnose_result.ref_id, "g3");
	assert_int_equal(m->u.diagnose_result.timings.scan_ms, 12);
	assert_int_equal(m->u.diagnose_result.timings.total_ms, 40);
	assert_non_null(m->u.diagnose_result.report.system);
	assert_non_null(m->u.diagnose_result.report.system->agent_version);
	assert_int_equal(m->u.diagnose_result.report.n_tokens, 2);
	assert_non_null(m->u.diagnose_result.report.tokens[0].verdict);
	assert_string_equal(m->u.diagnose_result.report.tokens[1].verdict, "no_token");
	assert_int_equal(m->u.diagnose_result.report.tokens[0].certificates[0].certificate.len, 0);
	qes_proto_msg_free(m);
	expect_edit(t, "timings.scan_ms", json_integer(-1), QES_ERR_FORMAT,
	    "diagnose_result.timings.scan_ms: -1 is out of range 0..3600000");
	expect_edit(t, "report.system", NULL, QES_ERR_FORMAT,
	    "diagnose_result.report.system: missing (a diagnosis describes the system)");
	expect_edit(t, "report.tokens[0].verdict", NULL, QES_ERR_FORMAT,
	    "diagnose_result.report.tokens[0].verdict: missing (a diagnosis has a verdict "
	    "per token)");
	free(t);
	/* an inventory document is not a diagnosis */
	json_decref(rep);
	rep = qes_report_inventory(f.p, &f.inv);
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_diagnose_result("m4", "g3", rep, &tm, b),
	    QES_ERR_INVALID_ARG);
	json_decref(rep);
	qes_buf_free(b);
	fake_free(&f);
}

/* ---- helpers -------------------------------------------------------------- */

static void
test_helpers(void **state)
{
	char serial[QES_PROTO_SERIAL_MAX + 1], id1[23], id2[23], ctext[124];
	uint8_t id[QES_PROTO_KEY_ID_MAX];
	qes_proto_type ty;
	size_t id_len;
	uint32_t ms;
	unsigned a;

	(void)state;
	assert_int_equal(qes_proto_credential_split(CRED, serial, id, &id_len), 0);
	assert_string_equal(serial, SERIAL);
	assert_int_equal(id_len, 2);
	assert_int_equal(id[0], 1);
	assert_int_equal(id[1], 2);
	assert_int_equal(qes_proto_credential_split("a:b:00ff", serial, id, &id_len), 0);
	assert_string_equal(serial, "a:b");
	assert_int_equal(id_len, 2);
	assert_int_equal(qes_proto_credential_split("SN:", serial, id, &id_len), 0);
	assert_int_equal(id_len, 0);
	assert_int_equal(qes_proto_credential_split("SN", serial, id, &id_len), QES_ERR_FORMAT);
	assert_int_equal(qes_proto_credential_split("SN:abc", serial, id, &id_len),
	    QES_ERR_FORMAT);
	assert_int_equal(qes_proto_credential_split("S\tN:ab", serial, id, &id_len),
	    QES_ERR_FORMAT);

	assert_true(qes_proto_display_text_ok("Vertrag \xc3\xa4", 64, 0, 0));
	assert_false(qes_proto_display_text_ok("", 64, 0, 0));
	assert_true(qes_proto_display_text_ok("", 64, 0, 1));
	assert_false(qes_proto_display_text_ok("a\nb", 64, 0, 0));
	assert_true(qes_proto_display_text_ok("a\nb", 64, 1, 0));
	assert_false(qes_proto_display_text_ok("a\xe2\x81\xa6x", 64, 0, 0));	/* U+2066 */
	assert_false(qes_proto_display_text_ok("\xc0\xaf", 64, 0, 0));	/* overlong */
	assert_false(qes_proto_display_text_ok("\xed\xa0\x80", 64, 0, 0));	/* surrogate */
	assert_false(qes_proto_display_text_ok("abcd", 3, 0, 0));

	assert_true(qes_proto_id_ok("job_1-A"));
	assert_false(qes_proto_id_ok("job 1"));
	assert_false(qes_proto_id_ok(NULL));
	assert_int_equal(qes_proto_new_id(id1), 0);
	assert_int_equal(qes_proto_new_id(id2), 0);
	assert_int_equal(strlen(id1), 22);
	assert_true(qes_proto_id_ok(id1));
	assert_string_not_equal(id1, id2);

	for (ty = QES_PROTO_HELLO; ty <= QES_PROTO_SIGN_STATUS; ty++) {
		qes_proto_type back;

		assert_non_null(qes_proto_type_name(ty));
		assert_int_equal(qes_proto_type_from_name(qes_proto_type_name(ty), &back), 0);
		assert_int_equal(back, ty);
	}
	assert_null(qes_proto_type_name((qes_proto_type)99));

	assert_string_equal(qes_proto_close_name(QES_PROTO_CLOSE_PROTOCOL_ERROR),
	    "protocol_error");
	assert_string_equal(qes_proto_close_name(QES_PROTO_CLOSE_AUTH_FAILED), "auth_failed");
	assert_string_equal(qes_proto_close_name(QES_PROTO_CLOSE_DEVICE_REVOKED),
	    "device_revoked");
	assert_string_equal(qes_proto_close_name(QES_PROTO_CLOSE_REPLACED), "replaced");
	assert_string_equal(qes_proto_close_name(QES_PROTO_CLOSE_SERVER_DRAINING),
	    "server_draining");
	assert_string_equal(qes_proto_close_name(4999), "unknown");
	qes_proto_close_text(QES_PROTO_CLOSE_PROTOCOL_ERROR,
	    "sign.digests[3]: wrong length 31 for sha256", ctext);
	assert_string_equal(ctext, "protocol_error: sign.digests[3]: wrong length 31 for sha256");
	{
		char longd[300];

		memset(longd, 'x', sizeof(longd) - 1);
		longd[sizeof(longd) - 1] = '\0';
		longd[5] = '\n';
		longd[6] = (char)0xc3;
		qes_proto_close_text(QES_PROTO_CLOSE_AUTH_FAILED, longd, ctext);
		assert_int_equal(strlen(ctext), 123);
		assert_non_null(strstr(ctext, "auth_failed: xxxxx??x"));
	}
	qes_proto_close_text(QES_PROTO_CLOSE_SERVER_DRAINING, NULL, ctext);
	assert_string_equal(ctext, "server_draining");

	assert_string_equal(qes_proto_failure_reason("cancelled"), "declined");
	assert_string_equal(qes_proto_failure_reason("pin_incorrect"), "pin_incorrect");

	/* full jitter: within [0, min(cap, base * 2^attempt)] */
	assert_int_equal(qes_proto_backoff_ms(0, 0), 0);
	assert_int_equal(qes_proto_backoff_ms(0, 1000), 1000);
	assert_int_equal(qes_proto_backoff_ms(0, 1001), 0);
	assert_int_equal(qes_proto_backoff_ms(3, 8000), 8000);
	assert_int_equal(qes_proto_backoff_ms(40, 60000), 60000);
	assert_int_equal(qes_proto_backoff_ms(40, UINT64_MAX), UINT64_MAX % 60001);
	for (a = 0; a < 100; a++) {
		ms = qes_proto_backoff_ms(a, (uint64_t)a * 0x9e3779b97f4a7c15ULL);
		assert_true(ms <= QES_PROTO_BACKOFF_CAP_MS);
	}
}

/* ---- sign_status ---------------------------------------------------------- */

static void
test_sign_status(void **state)
{
	qes_proto_limits gw, ag;
	qes_proto_msg *m;
	qes_buf *b = qes_buf_new();
	char big[QES_PROTO_MAX_SMALL_BYTES + 128];
	char *t;
	size_t n;

	(void)state;
	assert_non_null(b);
	assert_int_equal(qes_proto_build_sign_status("a1", "job_Fq8Lw2Zr",
	    QES_PROTO_SIGN_AWAITING_USER, b), 0);
	t = roundtrip(b, &m);
	assert_string_equal(t, "{\"type\":\"sign_status\",\"id\":\"a1\",\"v\":1,"
	    "\"job_id\":\"job_Fq8Lw2Zr\",\"state\":\"awaiting_user\"}");
	assert_int_equal(m->type, QES_PROTO_SIGN_STATUS);
	assert_string_equal(m->u.sign_status.job_id, "job_Fq8Lw2Zr");
	assert_int_equal(m->u.sign_status.state, QES_PROTO_SIGN_AWAITING_USER);
	qes_proto_msg_free(m);
	free(t);

	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign_status("a2", "job_1",
	    QES_PROTO_SIGN_CONSENTED, b), 0);
	t = roundtrip(b, &m);
	assert_non_null(strstr(t, "\"state\":\"consented\""));
	assert_int_equal(m->u.sign_status.state, QES_PROTO_SIGN_CONSENTED);
	qes_proto_msg_free(m);
	free(t);

	/* the builders refuse what the parser would */
	qes_buf_reset(b);
	assert_int_equal(qes_proto_build_sign_status("a3", "job 1",
	    QES_PROTO_SIGN_CONSENTED, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_proto_build_sign_status("a3", NULL,
	    QES_PROTO_SIGN_CONSENTED, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_proto_build_sign_status("a3", "job_1",
	    (qes_proto_sign_state)7, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(b), 0);

	/* schema */
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\"}",
	    QES_ERR_FORMAT, "sign_status.state: missing");
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"state\":\"consented\"}",
	    QES_ERR_FORMAT, "sign_status.job_id: missing");
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\","
	    "\"state\":\"signed\"}", QES_ERR_FORMAT,
	    "sign_status.state: unknown value \"signed\" (expected awaiting_user, consented)");
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\","
	    "\"state\":1}", QES_ERR_FORMAT,
	    "sign_status.state: expected a string, got an integer");
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j k\","
	    "\"state\":\"consented\"}", QES_ERR_FORMAT,
	    "sign_status.job_id: character \" \" at byte 1 is not allowed in an id ([A-Za-z0-9_-])");
	expect("{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\","
	    "\"state\":\"consented\",\"pin\":\"123456\"}", QES_ERR_FORMAT,
	    "sign_status: unknown field \"pin\"");

	/* a small message: the small limit applies */
	n = (size_t)snprintf(big, sizeof(big), "{\"type\":\"sign_status\",\"id\":\"a\","
	    "\"v\":1,\"job_id\":\"j\",\"state\":\"consented\",\"x\":\"");
	memset(big + n, 'x', QES_PROTO_MAX_SMALL_BYTES);
	n += QES_PROTO_MAX_SMALL_BYTES;
	memcpy(big + n, "\"}", 3);
	n += 2;
	{
		char want[96];

		snprintf(want, sizeof(want), "sign_status: %zu bytes, at most %d for this type",
		    n, QES_PROTO_MAX_SMALL_BYTES);
		expect_lim(big, n, NULL, QES_ERR_LIMIT, want);
	}

	/* direction: only a gateway accepts it */
	qes_proto_limits_init(&gw, QES_PROTO_ROLE_GATEWAY);
	qes_proto_limits_init(&ag, QES_PROTO_ROLE_AGENT);
	t = "{\"type\":\"sign_status\",\"id\":\"a\",\"v\":1,\"job_id\":\"j\","
	    "\"state\":\"awaiting_user\"}";
	expect_lim(t, strlen(t), &ag, QES_ERR_FORMAT, "sign_status: not accepted from the gateway");
	expect_lim(t, strlen(t), &gw, 0, "");
	qes_buf_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_small),
		cmocka_unit_test(test_roundtrip_sign),
		cmocka_unit_test(test_roundtrip_sign_result),
		cmocka_unit_test(test_envelope_errors),
		cmocka_unit_test(test_sign_errors),
		cmocka_unit_test(test_other_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_verification_code),
		cmocka_unit_test(test_inventory),
		cmocka_unit_test(test_diagnose_result),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_sign_status),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
