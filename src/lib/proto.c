/*
 * proto.c - qes.v1 messages: the schema of every message type, the parser
 * (size, nesting and value-count limits checked on the raw bytes before
 * jansson sees them, then the envelope, then the body against its schema),
 * the builders, and the exported syntax helpers.
 *
 * The wire rules live in the tables below and in proto_report.c; the
 * engine that applies them is proto_schema.c; the protocol document is
 * docs/protocol.md. A change to a table is a change to the protocol: keep
 * the document and the tests (tests/unit/test_proto.c) in step.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "proto_priv.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define NAMES(a) (a), N(a)
#define JS_MAX_SAFE_INT 9007199254740991LL	/* 2^53 - 1: exact in every JSON reader */

/* ---- the body schemas ----------------------------------------------------- */

#define FLD(type, name, kind, flags, member, min, max) \
	{ name, kind, flags, offsetof(type, member), 0, min, max, 0, 0, NULL, 0, NULL, NULL }
#define INT(type, name, member, lo, hi) \
	{ name, PF_INT, PF_REQ, offsetof(type, member), 0, 0, 0, lo, hi, NULL, 0, NULL, NULL }
#define ENUM(type, name, member, names) \
	{ name, PF_ENUM, PF_REQ, offsetof(type, member), 0, 0, 0, 0, 0, NAMES(names), NULL, NULL }

static const struct pf_field hello_fields[] = {
	FLD(qes_proto_hello, "agent_version", PF_VERSION, PF_REQ, agent_version, 1, 64),
	FLD(qes_proto_hello, "os", PF_ASCII, PF_REQ, os, 1, 128),
	FLD(qes_proto_hello, "device_id", PF_ID, PF_REQ, device_id, 0, 0),
};

static const struct pf_field challenge_fields[] = {
	FLD(qes_proto_challenge, "nonce", PF_B64FIX, PF_REQ, nonce, 0, QES_PROTO_NONCE_LEN),
	FLD(qes_proto_challenge, "server_name", PF_HOST, PF_REQ, server_name, 0, 0),
	FLD(qes_proto_challenge, "session_id", PF_ID, PF_REQ, session_id, 0, 0),
};

static const struct pf_field auth_fields[] = {
	FLD(qes_proto_auth, "device_id", PF_ID, PF_REQ, device_id, 0, 0),
	/* the shortest DER ECDSA value a real signature takes is 8 bytes */
	FLD(qes_proto_auth, "signature", PF_B64, PF_REQ, signature, 8, QES_PROTO_AUTH_SIG_MAX),
};

static const struct pf_field auth_ok_fields[] = {
	FLD(qes_proto_auth_ok, "session_id", PF_ID, PF_REQ, session_id, 0, 0),
	INT(qes_proto_auth_ok, "heartbeat_s", heartbeat_s, QES_PROTO_HEARTBEAT_MIN_S,
	    QES_PROTO_HEARTBEAT_MAX_S),
};

static const struct pf_field inventory_fields[] = {
	{ "report", PF_REPORT, PF_REQ, offsetof(qes_proto_inventory, report), 0, 0, 0,
	    PF_MODE_INVENTORY, 0, NULL, 0, &qes_proto_report_schema, NULL },
};

static const struct pf_name scheme_names[] = {
	{ "rsa-pkcs1", QES_SIG_RSA_PKCS1 },
	{ "rsa-pss", QES_SIG_RSA_PSS },
	{ "ecdsa", QES_SIG_ECDSA },
};

static const struct pf_name md_names[] = {
	{ "sha256", QES_MD_SHA256 },
	{ "sha384", QES_MD_SHA384 },
	{ "sha512", QES_MD_SHA512 },
};

static const struct pf_field requester_fields[] = {
	FLD(qes_proto_requester, "tenant", PF_TEXT, PF_REQ, tenant, 1, QES_PROTO_NAME_MAX),
	FLD(qes_proto_requester, "application", PF_TEXT, PF_REQ, application, 1,
	    QES_PROTO_NAME_MAX),
};

static const struct pf_schema requester_schema = {
	requester_fields, N(requester_fields), sizeof(qes_proto_requester), NULL,
};

static size_t
sign_digest_len(const void *obj, const char **what)
{
	const qes_proto_sign *s = obj;

	*what = qes_md_name(s->md) != NULL ? qes_md_name(s->md) : "?";
	return qes_md_len(s->md);
}

static int
sign_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	const qes_proto_sign *s = obj;
	char serial[QES_PROTO_SERIAL_MAX + 1], code[QES_PROTO_VCODE_LEN + 1];
	uint8_t id[QES_PROTO_KEY_ID_MAX];
	size_t id_len;
	int r;

	(void)j;
	if (qes_proto_credential_split(s->credential, serial, id, &id_len) != 0)
		return pf_fail_at(c, "credential", QES_ERR_FORMAT,
		    "not SERIAL:IDHEX (1..%d printable ASCII, ':', lower-case hex)",
		    QES_PROTO_SERIAL_MAX);
	if ((r = qes_verification_code(s->md, s->digests, s->n_digests, code)) != 0)
		return pf_fail_at(c, "verification_code", r, "cannot be computed");
	if (strcmp(code, s->verification_code) != 0)
		return pf_fail_at(c, "verification_code", QES_ERR_FORMAT,
		    "%s does not match the digests (%s)", s->verification_code, code);
	return 0;
}

static const struct pf_field sign_fields[] = {
	FLD(qes_proto_sign, "job_id", PF_ID, PF_REQ, job_id, 0, 0),
	FLD(qes_proto_sign, "credential", PF_ASCII, PF_REQ, credential, 2,
	    QES_PROTO_CREDENTIAL_MAX),
	ENUM(qes_proto_sign, "scheme", scheme, scheme_names),
	ENUM(qes_proto_sign, "md", md, md_names),
	{ "digests", PF_DIGESTS, PF_REQ, offsetof(qes_proto_sign, digests),
	    offsetof(qes_proto_sign, n_digests), 1, QES_PROTO_DIGESTS_MAX, 0, 0, NULL, 0,
	    NULL, sign_digest_len },
	{ "requester", PF_OBJ, PF_REQ, offsetof(qes_proto_sign, requester), 0, 0, 0, 0, 0,
	    NULL, 0, &requester_schema, NULL },
	FLD(qes_proto_sign, "title", PF_TEXT, PF_REQ, title, 1, QES_PROTO_TITLE_MAX),
	FLD(qes_proto_sign, "description", PF_TEXT, PF_REQ | PF_MULTILINE, description, 0,
	    QES_PROTO_DESCRIPTION_MAX),
	FLD(qes_proto_sign, "verification_code", PF_DIGITS, PF_REQ, verification_code, 0,
	    QES_PROTO_VCODE_LEN),
	INT(qes_proto_sign, "timeout_s", timeout_s, QES_PROTO_TIMEOUT_MIN_S,
	    QES_PROTO_TIMEOUT_MAX_S),
};

static const struct pf_name status_names[] = {
	{ "ok", QES_PROTO_STATUS_OK },
	{ "error", QES_PROTO_STATUS_ERROR },
};

static const struct pf_name pin_flag_names[] = {
	{ "count_low", QES_TOK_PIN_COUNT_LOW },
	{ "final_try", QES_TOK_PIN_FINAL_TRY },
	{ "locked", QES_TOK_PIN_LOCKED },
};

/* The QES_ERR_* whose qes_errname() is name, or 0. */
static int
errcode_of(const char *name)
{
	int code;

	if (strcmp(name, "ok") == 0 || strcmp(name, "unknown") == 0)
		return 0;
	for (code = -1; code >= -255; code--)
		if (strcmp(qes_errname(code), name) == 0)
			return code;
	return 0;
}

static int
sign_result_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	qes_proto_sign_result *s = obj;

	if (s->status == QES_PROTO_STATUS_OK) {
		if (json_object_get(j, "signatures") == NULL)
			return pf_fail_at(c, "signatures", QES_ERR_FORMAT,
			    "missing (status is ok)");
		if (json_object_get(j, "error") != NULL)
			return pf_fail_at(c, "error", QES_ERR_FORMAT, "not allowed (status is ok)");
		if (json_object_get(j, "detail") != NULL)
			return pf_fail_at(c, "detail", QES_ERR_FORMAT, "not allowed (status is ok)");
		if (json_object_get(j, "pin_flags") != NULL)
			return pf_fail_at(c, "pin_flags", QES_ERR_FORMAT,
			    "not allowed (status is ok)");
		return 0;
	}
	if (json_object_get(j, "signatures") != NULL)
		return pf_fail_at(c, "signatures", QES_ERR_FORMAT, "not allowed (status is error)");
	if (s->error == NULL)
		return pf_fail_at(c, "error", QES_ERR_FORMAT, "missing (status is error)");
	if (strcmp(s->error, "ok") == 0)
		return pf_fail_at(c, "error", QES_ERR_FORMAT, "\"ok\" is not an error");
	if (!s->has_pin_flags && (strcmp(s->error, "pin_incorrect") == 0 ||
	    strcmp(s->error, "pin_locked") == 0))
		return pf_fail_at(c, "pin_flags", QES_ERR_FORMAT, "missing (error is %s)",
		    s->error);
	s->error_code = errcode_of(s->error);
	return 0;
}

static const struct pf_field sign_result_fields[] = {
	FLD(qes_proto_sign_result, "job_id", PF_ID, PF_REQ, job_id, 0, 0),
	ENUM(qes_proto_sign_result, "status", status, status_names),
	{ "signatures", PF_ARR_B64, 0, offsetof(qes_proto_sign_result, signatures),
	    offsetof(qes_proto_sign_result, n_signatures), 1, QES_PROTO_DIGESTS_MAX,
	    1, QES_PROTO_SIG_MAX, NULL, 0, NULL, NULL },
	FLD(qes_proto_sign_result, "error", PF_CODE, 0, error, 1, 64),
	FLD(qes_proto_sign_result, "detail", PF_STR, 0, detail, 0, QES_PROTO_MESSAGE_MAX),
	{ "pin_flags", PF_FLAGOBJ, PF_HAS, offsetof(qes_proto_sign_result, pin_flags),
	    offsetof(qes_proto_sign_result, has_pin_flags), 0, 0, 0, 0,
	    NAMES(pin_flag_names), NULL, NULL },
};

static const struct pf_field timings_fields[] = {
	INT(qes_proto_timings, "scan_ms", scan_ms, 0, 3600000),
	INT(qes_proto_timings, "total_ms", total_ms, 0, 3600000),
};

static const struct pf_schema timings_schema = {
	timings_fields, N(timings_fields), sizeof(qes_proto_timings), NULL,
};

static const struct pf_field diagnose_result_fields[] = {
	FLD(qes_proto_diagnose_result, "ref_id", PF_ID, PF_REQ, ref_id, 0, 0),
	{ "report", PF_REPORT, PF_REQ, offsetof(qes_proto_diagnose_result, report), 0, 0, 0,
	    PF_MODE_DIAGNOSE, 0, NULL, 0, &qes_proto_report_schema, NULL },
	{ "timings", PF_OBJ, PF_REQ, offsetof(qes_proto_diagnose_result, timings), 0, 0, 0,
	    0, 0, NULL, 0, &timings_schema, NULL },
};

static const struct pf_name cancel_reason_names[] = {
	{ "requested", QES_PROTO_CANCEL_REQUESTED },
	{ "expired", QES_PROTO_CANCEL_EXPIRED },
};

static const struct pf_field cancel_fields[] = {
	FLD(qes_proto_cancel, "job_id", PF_ID, PF_REQ, job_id, 0, 0),
	ENUM(qes_proto_cancel, "reason", reason, cancel_reason_names),
};

static const struct pf_field error_fields[] = {
	FLD(qes_proto_error, "code", PF_CODE, PF_REQ, code, 1, 64),
	FLD(qes_proto_error, "message", PF_STR, PF_REQ, message, 0, QES_PROTO_MESSAGE_MAX),
	FLD(qes_proto_error, "ref_id", PF_ID, 0, ref_id, 0, 0),
};

static const struct pf_field ping_fields[] = {
	INT(qes_proto_ping, "ts", ts, 0, JS_MAX_SAFE_INT),
};

static const struct pf_field pong_fields[] = {
	FLD(qes_proto_pong, "ref_id", PF_ID, PF_REQ, ref_id, 0, 0),
	INT(qes_proto_pong, "ts", ts, 0, JS_MAX_SAFE_INT),
};

static const struct pf_name sign_state_names[] = {
	{ "awaiting_user", QES_PROTO_SIGN_AWAITING_USER },
	{ "consented", QES_PROTO_SIGN_CONSENTED },
};

static const struct pf_field sign_status_fields[] = {
	FLD(qes_proto_sign_status, "job_id", PF_ID, PF_REQ, job_id, 0, 0),
	ENUM(qes_proto_sign_status, "state", state, sign_state_names),
};

#define FROM_AGENT 1u
#define FROM_GATEWAY 2u

static const struct msg_type {
	qes_proto_type type;
	const char *name;
	unsigned from;
	int big;			/* may use QES_PROTO_MAX_BYTES */
	struct pf_schema schema;
} msg_types[] = {
	{ QES_PROTO_HELLO, "hello", FROM_AGENT, 0,
	    { hello_fields, N(hello_fields), sizeof(qes_proto_hello), NULL } },
	{ QES_PROTO_CHALLENGE, "challenge", FROM_GATEWAY, 0,
	    { challenge_fields, N(challenge_fields), sizeof(qes_proto_challenge), NULL } },
	{ QES_PROTO_AUTH, "auth", FROM_AGENT, 0,
	    { auth_fields, N(auth_fields), sizeof(qes_proto_auth), NULL } },
	{ QES_PROTO_AUTH_OK, "auth_ok", FROM_GATEWAY, 0,
	    { auth_ok_fields, N(auth_ok_fields), sizeof(qes_proto_auth_ok), NULL } },
	{ QES_PROTO_INVENTORY, "inventory", FROM_AGENT, 1,
	    { inventory_fields, N(inventory_fields), sizeof(qes_proto_inventory), NULL } },
	{ QES_PROTO_SIGN, "sign", FROM_GATEWAY, 1,
	    { sign_fields, N(sign_fields), sizeof(qes_proto_sign), sign_check } },
	{ QES_PROTO_SIGN_RESULT, "sign_result", FROM_AGENT, 1,
	    { sign_result_fields, N(sign_result_fields), sizeof(qes_proto_sign_result),
	    sign_result_check } },
	{ QES_PROTO_DIAGNOSE, "diagnose", FROM_GATEWAY, 0, { NULL, 0, 0, NULL } },
	{ QES_PROTO_DIAGNOSE_RESULT, "diagnose_result", FROM_AGENT, 1,
	    { diagnose_result_fields, N(diagnose_result_fields),
	    sizeof(qes_proto_diagnose_result), NULL } },
	{ QES_PROTO_CANCEL, "cancel", FROM_GATEWAY, 0,
	    { cancel_fields, N(cancel_fields), sizeof(qes_proto_cancel), NULL } },
	{ QES_PROTO_ERROR, "error", FROM_AGENT | FROM_GATEWAY, 0,
	    { error_fields, N(error_fields), sizeof(qes_proto_error), NULL } },
	{ QES_PROTO_PING, "ping", FROM_AGENT | FROM_GATEWAY, 0,
	    { ping_fields, N(ping_fields), sizeof(qes_proto_ping), NULL } },
	{ QES_PROTO_PONG, "pong", FROM_AGENT | FROM_GATEWAY, 0,
	    { pong_fields, N(pong_fields), sizeof(qes_proto_pong), NULL } },
	{ QES_PROTO_SIGN_STATUS, "sign_status", FROM_AGENT, 0,
	    { sign_status_fields, N(sign_status_fields), sizeof(qes_proto_sign_status),
	    NULL } },
};

static const struct msg_type *
type_entry(qes_proto_type t)
{
	size_t i;

	for (i = 0; i < N(msg_types); i++)
		if (msg_types[i].type == t)
			return &msg_types[i];
	return NULL;
}

const char *
qes_proto_type_name(qes_proto_type t)
{
	const struct msg_type *e = type_entry(t);

	return e != NULL ? e->name : NULL;
}

int
qes_proto_type_from_name(const char *name, qes_proto_type *out)
{
	size_t i;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < N(msg_types); i++)
		if (strcmp(msg_types[i].name, name) == 0) {
			*out = msg_types[i].type;
			return 0;
		}
	return QES_ERR_NOT_FOUND;
}

/* ---- parsing -------------------------------------------------------------- */

void
qes_proto_limits_init(qes_proto_limits *lim, qes_proto_role role)
{
	if (lim == NULL)
		return;
	memset(lim, 0, sizeof(*lim));
	lim->max_bytes = QES_PROTO_MAX_BYTES;
	lim->max_small_bytes = QES_PROTO_MAX_SMALL_BYTES;
	lim->max_depth = QES_PROTO_MAX_DEPTH;
	lim->max_values = QES_PROTO_MAX_VALUES;
	lim->role = role;
}

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Nesting depth and a count of values on the raw bytes, before the JSON
 * parser allocates anything: jansson recurses per level and allocates per
 * value, so both are bounded here by a loop that only counts. Strings are
 * skipped (brackets inside them do not count); balance and syntax are left
 * to jansson.
 */
static int
prescan(const uint8_t *data, size_t len, unsigned max_depth, size_t max_values,
    char *err, size_t errlen)
{
	qes_cursor cur;
	unsigned depth = 0;
	size_t values = 1;
	int in_str = 0, esc = 0;
	uint8_t ch;

	qes_cursor_init(&cur, data, len);
	while (qes_cursor_get_u8(&cur, &ch) == 0) {
		if (in_str) {
			if (esc)
				esc = 0;
			else if (ch == '\\')
				esc = 1;
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		switch (ch) {
		case '"':
			in_str = 1;
			break;
		case '[':
		case '{':
			if (++depth > max_depth) {
				set_err(err, errlen, "message: nested deeper than %u levels",
				    max_depth);
				return QES_ERR_LIMIT;
			}
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		case ',':
			if (++values > max_values) {
				set_err(err, errlen, "message: more than %zu values", max_values);
				return QES_ERR_LIMIT;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

int
qes_proto_parse(const uint8_t *data, size_t len, const qes_proto_limits *lim,
    qes_proto_msg **out, char *err, size_t errlen)
{
	const struct msg_type *e = NULL;
	qes_proto_limits l;
	qes_proto_msg *m = NULL;
	qes_proto_type type;
	struct pf_ctx c;
	json_error_t je;
	json_t *root, *v;
	char esc[100];
	int r;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out != NULL)
		*out = NULL;
	if (out == NULL || (data == NULL && len > 0))
		return QES_ERR_INVALID_ARG;
	qes_proto_limits_init(&l, lim != NULL ? lim->role : QES_PROTO_ROLE_ANY);
	if (lim != NULL) {
		if (lim->max_bytes != 0)
			l.max_bytes = lim->max_bytes;
		if (lim->max_small_bytes != 0)
			l.max_small_bytes = lim->max_small_bytes;
		if (lim->max_depth != 0)
			l.max_depth = lim->max_depth;
		if (lim->max_values != 0)
			l.max_values = lim->max_values;
	}
	if (len > l.max_bytes) {
		set_err(err, errlen, "message: %zu bytes, at most %zu", len, l.max_bytes);
		return QES_ERR_LIMIT;
	}
	if ((r = prescan(data, len, l.max_depth, l.max_values, err, errlen)) != 0)
		return r;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->mem = calloc(1, sizeof(*m->mem))) == NULL) {
		r = QES_ERR_ALLOC;
		set_err(err, errlen, "message: out of memory");
		goto out;
	}
	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		pf_escape(je.text, strnlen(je.text, sizeof(je.text)), esc, sizeof(esc));
		set_err(err, errlen, "message: invalid JSON at byte %d: %s", je.position, esc);
		r = QES_ERR_FORMAT;
		goto out;
	}
	m->mem->root = root;
	pf_ctx_init(&c, m->mem, err, errlen, "message");
	if (!json_is_object(root)) {
		r = pf_fail(&c, QES_ERR_FORMAT, "expected an object, got %s",
		    json_is_array(root) ? "an array" : "a scalar");
		goto out;
	}
	/* the version first: a newer protocol may have types this one lacks */
	if ((v = json_object_get(root, "v")) == NULL) {
		r = pf_fail_at(&c, "v", QES_ERR_FORMAT, "missing");
		goto out;
	}
	if (!json_is_integer(v)) {
		r = pf_fail_at(&c, "v", QES_ERR_FORMAT, "expected an integer");
		goto out;
	}
	if (json_integer_value(v) != QES_PROTO_VERSION) {
		r = pf_fail_at(&c, "v", QES_ERR_UNSUPPORTED,
		    "version %lld is not supported (this side speaks %d)",
		    (long long)json_integer_value(v), QES_PROTO_VERSION);
		goto out;
	}
	if ((v = json_object_get(root, "type")) == NULL) {
		r = pf_fail_at(&c, "type", QES_ERR_FORMAT, "missing");
		goto out;
	}
	if (!json_is_string(v)) {
		r = pf_fail_at(&c, "type", QES_ERR_FORMAT, "expected a string");
		goto out;
	}
	if (qes_proto_type_from_name(json_string_value(v), &type) != 0 ||
	    (e = type_entry(type)) == NULL) {
		pf_escape(json_string_value(v), json_string_length(v), esc, sizeof(esc));
		r = pf_fail_at(&c, "type", QES_ERR_UNSUPPORTED, "unknown type \"%s\"", esc);
		goto out;
	}
	/* from here on errors are named after the type: "sign.digests[3]: ..." */
	pf_ctx_init(&c, m->mem, err, errlen, e->name);
	if (!e->big && len > l.max_small_bytes) {
		r = pf_fail(&c, QES_ERR_LIMIT, "%zu bytes, at most %zu for this type",
		    len, l.max_small_bytes);
		goto out;
	}
	if ((l.role == QES_PROTO_ROLE_GATEWAY && !(e->from & FROM_AGENT)) ||
	    (l.role == QES_PROTO_ROLE_AGENT && !(e->from & FROM_GATEWAY))) {
		r = pf_fail(&c, QES_ERR_FORMAT, "not accepted from the %s",
		    l.role == QES_PROTO_ROLE_GATEWAY ? "agent" : "gateway");
		goto out;
	}
	if ((v = json_object_get(root, "id")) == NULL) {
		r = pf_fail_at(&c, "id", QES_ERR_FORMAT, "missing");
		goto out;
	}
	if (!json_is_string(v) || !pf_id_ok(json_string_value(v), json_string_length(v))) {
		r = pf_fail_at(&c, "id", QES_ERR_FORMAT, json_is_string(v) ?
		    "not [A-Za-z0-9_-]{1,64}" : "expected a string");
		goto out;
	}
	m->id = json_string_value(v);
	m->type = type;
	if (e->schema.n_fields == 0) {
		/* no body: only the envelope may be there */
		static const struct pf_schema empty = { NULL, 0, 0, NULL };

		r = pf_decode(&c, &empty, root, &m->u, 1);
	} else {
		r = pf_decode(&c, &e->schema, root, &m->u, 1);
	}
	if (r != 0)
		goto out;
	*out = m;
	m = NULL;
 out:
	qes_proto_msg_free(m);
	return r;
}

void
qes_proto_msg_free(qes_proto_msg *m)
{
	if (m == NULL)
		return;
	qes_proto_mem_free(m->mem);
	free(m->mem);
	free(m);
}

int
qes_proto_msg_equal(const qes_proto_msg *a, const qes_proto_msg *b)
{
	const struct msg_type *e;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type || (e = type_entry(a->type)) == NULL)
		return 0;
	if (a->id == NULL || b->id == NULL || strcmp(a->id, b->id) != 0)
		return 0;
	return pf_equal(&e->schema, &a->u, &b->u);
}

/* ---- building ------------------------------------------------------------- */

int
qes_proto_build(const qes_proto_msg *m, qes_buf *out, char *err, size_t errlen)
{
	const struct msg_type *e;
	qes_proto_msg *check = NULL;
	struct qes_proto_mem scratch = { 0 };
	struct pf_ctx c;
	json_t *j = NULL;
	char *text = NULL;
	size_t len;
	qes_proto_msg copy;
	int r;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (m == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((e = type_entry(m->type)) == NULL) {
		set_err(err, errlen, "message.type: unknown type %d", (int)m->type);
		return QES_ERR_INVALID_ARG;
	}
	if (m->id == NULL || !pf_id_ok(m->id, strlen(m->id))) {
		set_err(err, errlen, "%s.id: not [A-Za-z0-9_-]{1,64}", e->name);
		return QES_ERR_INVALID_ARG;
	}
	/* fill what a builder derives, on a copy */
	copy = *m;
	if (m->type == QES_PROTO_SIGN && copy.u.sign.verification_code[0] == '\0' &&
	    copy.u.sign.digests != NULL)
		(void)qes_verification_code(copy.u.sign.md, copy.u.sign.digests,
		    copy.u.sign.n_digests, copy.u.sign.verification_code);
	if (m->type == QES_PROTO_SIGN_RESULT && copy.u.sign_result.error == NULL &&
	    copy.u.sign_result.error_code != 0)
		copy.u.sign_result.error = qes_errname(copy.u.sign_result.error_code);

	pf_ctx_init(&c, &scratch, err, errlen, e->name);
	if ((j = json_object()) == NULL ||
	    json_object_set_new(j, "type", json_string(e->name)) != 0 ||
	    json_object_set_new(j, "id", json_string(m->id)) != 0 ||
	    json_object_set_new(j, "v", json_integer(QES_PROTO_VERSION)) != 0) {
		r = pf_fail(&c, QES_ERR_ALLOC, "out of memory");
		goto out;
	}
	if ((r = pf_encode(&c, &e->schema, &copy.u, j)) != 0)
		goto out;
	if ((text = json_dumps(j, JSON_COMPACT)) == NULL) {
		r = pf_fail(&c, QES_ERR_ALLOC, "out of memory");
		goto out;
	}
	len = strlen(text);
	/* the parser's verdict on our own output: what it refuses is not sent */
	if ((r = qes_proto_parse((const uint8_t *)text, len, NULL, &check, err,
	    errlen)) != 0) {
		if (r != QES_ERR_LIMIT && r != QES_ERR_ALLOC)
			r = QES_ERR_INVALID_ARG;
		goto out;
	}
	r = qes_buf_put(out, text, len);
 out:
	qes_proto_msg_free(check);
	qes_proto_mem_free(&scratch);
	free(text);
	json_decref(j);
	return r;
}

static int
build_body(qes_proto_type type, const char *id, const void *body, size_t size,
    qes_buf *out)
{
	qes_proto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.id = id;
	if (body != NULL)
		memcpy(&m.u, body, size);
	return qes_proto_build(&m, out, NULL, 0);
}

int
qes_proto_build_hello(const char *id, const qes_proto_hello *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_HELLO, id, b, sizeof(*b), out);
}

int
qes_proto_build_challenge(const char *id, const qes_proto_challenge *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_CHALLENGE, id, b, sizeof(*b), out);
}

int
qes_proto_build_auth(const char *id, const qes_proto_auth *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_AUTH, id, b, sizeof(*b), out);
}

int
qes_proto_build_auth_ok(const char *id, const qes_proto_auth_ok *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_AUTH_OK, id, b, sizeof(*b), out);
}

int
qes_proto_build_inventory(const char *id, const json_t *report, qes_buf *out)
{
	qes_proto_inventory b;

	memset(&b, 0, sizeof(b));
	b.report.json = report;
	return build_body(QES_PROTO_INVENTORY, id, &b, sizeof(b), out);
}

int
qes_proto_build_sign(const char *id, const qes_proto_sign *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_SIGN, id, b, sizeof(*b), out);
}

int
qes_proto_build_sign_result(const char *id, const qes_proto_sign_result *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_SIGN_RESULT, id, b, sizeof(*b), out);
}

int
qes_proto_build_diagnose(const char *id, qes_buf *out)
{
	return build_body(QES_PROTO_DIAGNOSE, id, NULL, 0, out);
}

int
qes_proto_build_diagnose_result(const char *id, const char *ref_id,
    const json_t *report, const qes_proto_timings *t, qes_buf *out)
{
	qes_proto_diagnose_result b;

	if (t == NULL)
		return QES_ERR_INVALID_ARG;
	memset(&b, 0, sizeof(b));
	b.ref_id = ref_id;
	b.report.json = report;
	b.timings = *t;
	return build_body(QES_PROTO_DIAGNOSE_RESULT, id, &b, sizeof(b), out);
}

int
qes_proto_build_cancel(const char *id, const qes_proto_cancel *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_CANCEL, id, b, sizeof(*b), out);
}

int
qes_proto_build_error(const char *id, const qes_proto_error *b, qes_buf *out)
{
	return b == NULL ? QES_ERR_INVALID_ARG :
	    build_body(QES_PROTO_ERROR, id, b, sizeof(*b), out);
}

int
qes_proto_build_ping(const char *id, int64_t ts, qes_buf *out)
{
	qes_proto_ping b = { ts };

	return build_body(QES_PROTO_PING, id, &b, sizeof(b), out);
}

int
qes_proto_build_pong(const char *id, const char *ref_id, int64_t ts, qes_buf *out)
{
	qes_proto_pong b = { ref_id, ts };

	return build_body(QES_PROTO_PONG, id, &b, sizeof(b), out);
}

int
qes_proto_build_sign_status(const char *id, const char *job_id,
    qes_proto_sign_state state, qes_buf *out)
{
	qes_proto_sign_status b = { job_id, state };

	return build_body(QES_PROTO_SIGN_STATUS, id, &b, sizeof(b), out);
}

/* ---- exported syntax helpers ---------------------------------------------- */

int
qes_proto_id_ok(const char *s)
{
	return s != NULL && pf_id_ok(s, strnlen(s, QES_PROTO_ID_MAX + 1));
}

int
qes_proto_display_text_ok(const char *s, size_t max_bytes, int multiline,
    int allow_empty)
{
	size_t len, at;
	uint32_t cp;

	if (s == NULL)
		return 0;
	len = strnlen(s, max_bytes + 1);
	if (len > max_bytes || (len == 0 && !allow_empty))
		return 0;
	return pf_text_problem(s, len, multiline, &at, &cp) == NULL;
}

int
qes_proto_credential_split(const char *credential, char *serial_out,
    uint8_t *id_out, size_t *id_len)
{
	const char *colon;
	size_t len, slen, hlen, i;
	unsigned hi, lo;

	if (credential == NULL || serial_out == NULL || id_out == NULL || id_len == NULL)
		return QES_ERR_INVALID_ARG;
	len = strnlen(credential, QES_PROTO_CREDENTIAL_MAX + 1);
	if (len > QES_PROTO_CREDENTIAL_MAX || (colon = strrchr(credential, ':')) == NULL)
		return QES_ERR_FORMAT;
	slen = (size_t)(colon - credential);
	hlen = len - slen - 1;
	if (slen == 0 || slen > QES_PROTO_SERIAL_MAX || hlen % 2 != 0 ||
	    hlen > 2 * QES_PROTO_KEY_ID_MAX)
		return QES_ERR_FORMAT;
	for (i = 0; i < slen; i++)
		if (credential[i] < 0x20 || credential[i] > 0x7e)
			return QES_ERR_FORMAT;
	for (i = 0; i < hlen; i += 2) {
		char a = colon[1 + i], b = colon[2 + i];

		if (!((a >= '0' && a <= '9') || (a >= 'a' && a <= 'f')) ||
		    !((b >= '0' && b <= '9') || (b >= 'a' && b <= 'f')))
			return QES_ERR_FORMAT;
		hi = (unsigned)(a <= '9' ? a - '0' : a - 'a' + 10);
		lo = (unsigned)(b <= '9' ? b - '0' : b - 'a' + 10);
		id_out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(serial_out, credential, slen);
	serial_out[slen] = '\0';
	*id_len = hlen / 2;
	return 0;
}

int
qes_proto_b64url_encode(const uint8_t *data, size_t len, qes_buf *out)
{
	size_t n;
	char *s;
	int r;

	if (out == NULL || (data == NULL && len > 0))
		return QES_ERR_INVALID_ARG;
	if (len > (SIZE_MAX - 4) / 4 * 3)
		return QES_ERR_LIMIT;
	n = pf_b64url_len(len);
	if ((s = malloc(n + 1)) == NULL)
		return QES_ERR_ALLOC;
	pf_b64url_encode(data, len, s);
	r = qes_buf_put(out, s, n);
	free(s);
	return r;
}

int
qes_proto_b64url_decode(const char *s, size_t len, qes_buf *out)
{
	uint8_t *tmp;
	size_t n;
	int r;

	if (out == NULL || (s == NULL && len > 0))
		return QES_ERR_INVALID_ARG;
	if (len == 0)
		return 0;
	if ((tmp = malloc(len / 4 * 3 + 3)) == NULL)
		return QES_ERR_ALLOC;
	if ((r = pf_b64url_decode(s, len, tmp, &n)) == 0)
		r = qes_buf_put(out, tmp, n);
	free(tmp);
	return r;
}
