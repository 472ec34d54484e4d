/*
 * bus_msg.c - encoding and parsing of the bus envelopes (bus_msg.h).
 *
 * The header is JSON because it is small, self-describing and easy to read
 * in a NATS trace; jansson parses it (duplicates refused) after the length
 * is bounded, and every field is then checked against the same rules the
 * encoder applies. Unknown header keys are ignored, so a newer replica can
 * add an optional field during a rolling upgrade; a new meaning needs a new
 * version number. Keys that belong to another op are ignored the same way,
 * so what the parser returns re-encodes to the same envelope (the fuzz
 * target checks it).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qes/err.h"
#include "bus_msg.h"

#define HEADER_MAX_KEYS 24

static const char *const op_names[] = {
	[QESD_BUS_SEND] = "send",
	[QESD_BUS_LIVE] = "live",
	[QESD_BUS_CLOSE] = "close",
	[QESD_BUS_DIAG] = "diag",
	[QESD_BUS_REPLY] = "reply",
	[QESD_BUS_DIAG_RESULT] = "diag_result",
	[QESD_BUS_JOB] = "job",
	[QESD_BUS_REPLACE] = "replace",
};
#define N_OPS (sizeof(op_names) / sizeof(op_names[0]))

static const struct {
	const char *word;
	int code;
} results[] = {
	{ "ok", 0 },
	{ "not_found", QES_ERR_NOT_FOUND },
	{ "limit", QES_ERR_LIMIT },
	{ "invalid", QES_ERR_INVALID_ARG },
};
#define N_RESULTS (sizeof(results) / sizeof(results[0]))

const char *
qesd_bus_op_name(qesd_bus_op op)
{
	if ((size_t)op == 0 || (size_t)op >= N_OPS)
		return NULL;
	return op_names[op];
}

void
qesd_bus_msg_init(qesd_bus_msg *m, qesd_bus_op op)
{
	memset(m, 0, sizeof(*m));
	m->op = op;
	m->rtt_ms = m->scan_ms = m->total_ms = -1;
}

int
qesd_bus_id_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i + 1 >= QESD_ID_SIZE)
			return 0;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	}
	return 1;
}

/* A ref: base64url characters, 1..QESD_BUS_REF_MAX (a NATS token). */
static int
ref_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= QESD_BUS_REF_MAX)
			return 0;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	}
	return 1;
}

/* A word: [a-z0-9_], 1..size-1 characters. */
static int
word_ok(const char *s, size_t size)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i + 1 >= size)
			return 0;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_'))
			return 0;
	}
	return 1;
}

/* A short text: printable ASCII, 0..size-1 bytes (no control characters
 * reach a log line or a problem detail). */
static int
text_ok(const char *s, size_t size)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (i + 1 >= size || (unsigned char)s[i] < 0x20 ||
		    (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

static const char *
result_word(int code)
{
	size_t i;

	for (i = 0; i < N_RESULTS; i++)
		if (results[i].code == code)
			return results[i].word;
	return NULL;
}

/* The fields op needs are present and valid; 0 or QES_ERR_FORMAT. */
static int
check(const qesd_bus_msg *m)
{
	int ids = 0;

	switch (m->op) {
	case QESD_BUS_SEND:
		if (m->body_len == 0)
			return QES_ERR_FORMAT;
		ids = 1;
		break;
	case QESD_BUS_LIVE:
		ids = 1;
		break;
	case QESD_BUS_CLOSE:
		if (m->close_code < 4000 || m->close_code > 4999 ||
		    !text_ok(m->reason, sizeof(m->reason)))
			return QES_ERR_FORMAT;
		ids = 1;
		break;
	case QESD_BUS_DIAG:
		if (!ref_ok(m->ref))
			return QES_ERR_FORMAT;
		ids = 1;
		break;
	case QESD_BUS_REPLY:
		if (result_word(m->result) == NULL ||
		    (m->session_id[0] != '\0' && !qesd_bus_id_ok(m->session_id)))
			return QES_ERR_FORMAT;
		break;
	case QESD_BUS_DIAG_RESULT:
		if (!ref_ok(m->ref) ||
		    !word_ok(m->outcome, sizeof(m->outcome)) ||
		    (m->session_id[0] != '\0' && !qesd_bus_id_ok(m->session_id)) ||
		    (m->agent_error[0] != '\0' &&
		    !text_ok(m->agent_error, sizeof(m->agent_error))) ||
		    (m->close_reason[0] != '\0' &&
		    !word_ok(m->close_reason, sizeof(m->close_reason))) ||
		    !text_ok(m->invalid, sizeof(m->invalid)) ||
		    m->rtt_ms < -1 || m->scan_ms < -1 || m->total_ms < -1)
			return QES_ERR_FORMAT;
		ids = 1;
		break;
	case QESD_BUS_JOB:
		if (!qesd_bus_id_ok(m->tenant_id) || !qesd_bus_id_ok(m->job_id))
			return QES_ERR_FORMAT;
		break;
	case QESD_BUS_REPLACE:
		if (!qesd_bus_id_ok(m->session_id) || m->since_ms <= 0)
			return QES_ERR_FORMAT;
		ids = 1;
		break;
	default:
		return QES_ERR_FORMAT;
	}
	if (ids && (!qesd_bus_id_ok(m->tenant_id) || !qesd_bus_id_ok(m->device_id)))
		return QES_ERR_FORMAT;
	if (m->op != QESD_BUS_SEND && m->op != QESD_BUS_DIAG_RESULT &&
	    m->body_len != 0)
		return QES_ERR_FORMAT;
	return 0;
}

/* Set a string member; 0 or QES_ERR_ALLOC. */
static int
set_str(json_t *o, const char *key, const char *v)
{
	return json_object_set_new(o, key, json_string(v)) == 0 ? 0 : QES_ERR_ALLOC;
}

static int
set_int(json_t *o, const char *key, int64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v)) == 0 ?
	    0 : QES_ERR_ALLOC;
}

int
qesd_bus_msg_encode(const qesd_bus_msg *m, qes_buf *out)
{
	json_t *h = NULL;
	char *text = NULL;
	int r;

	if (m == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if (m->body_len > QESD_BUS_BODY_MAX)
		return QES_ERR_LIMIT;
	if ((m->body_len != 0 && m->body == NULL) || check(m) != 0)
		return QES_ERR_INVALID_ARG;
	r = QES_ERR_ALLOC;
	if ((h = json_object()) == NULL ||
	    set_int(h, "v", QESD_BUS_VERSION) != 0 ||
	    set_str(h, "op", qesd_bus_op_name(m->op)) != 0)
		goto out;
	if (m->tenant_id[0] != '\0' && set_str(h, "t", m->tenant_id) != 0)
		goto out;
	if (m->device_id[0] != '\0' && set_str(h, "d", m->device_id) != 0)
		goto out;
	if (m->op == QESD_BUS_JOB && set_str(h, "j", m->job_id) != 0)
		goto out;
	if (m->session_id[0] != '\0' && set_str(h, "s", m->session_id) != 0)
		goto out;
	if (m->ref[0] != '\0' && set_str(h, "ref", m->ref) != 0)
		goto out;
	switch (m->op) {
	case QESD_BUS_REPLY:
		if (set_str(h, "r", result_word(m->result)) != 0)
			goto out;
		break;
	case QESD_BUS_REPLACE:
		if (set_int(h, "since_ms", m->since_ms) != 0)
			goto out;
		break;
	case QESD_BUS_CLOSE:
		if (set_int(h, "code", m->close_code) != 0 ||
		    set_str(h, "reason", m->reason) != 0)
			goto out;
		break;
	case QESD_BUS_DIAG_RESULT:
		if (set_str(h, "outcome", m->outcome) != 0 ||
		    set_int(h, "rtt_ms", m->rtt_ms) != 0 ||
		    set_int(h, "scan_ms", m->scan_ms) != 0 ||
		    set_int(h, "total_ms", m->total_ms) != 0)
			goto out;
		if (m->agent_error[0] != '\0' &&
		    set_str(h, "agent_error", m->agent_error) != 0)
			goto out;
		if (m->close_reason[0] != '\0' &&
		    set_str(h, "close_reason", m->close_reason) != 0)
			goto out;
		if (m->invalid[0] != '\0' && set_str(h, "invalid", m->invalid) != 0)
			goto out;
		break;
	default:
		break;
	}
	if ((text = json_dumps(h, JSON_COMPACT)) == NULL)
		goto out;
	if (strlen(text) > QESD_BUS_HEADER_MAX) {
		r = QES_ERR_LIMIT;
		goto out;
	}
	if ((r = qes_buf_put_str(out, text)) != 0 ||
	    (r = qes_buf_put_u8(out, '\n')) != 0 ||
	    (m->body_len > 0 && (r = qes_buf_put(out, m->body, m->body_len)) != 0))
		goto out;
	r = 0;
 out:
	free(text);
	json_decref(h);
	return r;
}

/* Copy string member key into dst (size bytes) when present; 0, or
 * QES_ERR_FORMAT for a non-string or one that does not fit. */
static int
get_str(const json_t *h, const char *key, char *dst, size_t size)
{
	const json_t *v = json_object_get(h, key);
	size_t len;

	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return QES_ERR_FORMAT;
	len = json_string_length(v);
	if (len >= size || memchr(json_string_value(v), '\0', len) != NULL)
		return QES_ERR_FORMAT;
	memcpy(dst, json_string_value(v), len + 1);
	return 0;
}

/* An integer member in [min, max] when present (else dflt). */
static int
get_int(const json_t *h, const char *key, int64_t min, int64_t max,
    int64_t dflt, int64_t *out)
{
	const json_t *v = json_object_get(h, key);

	*out = dflt;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max)
		return QES_ERR_FORMAT;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

int
qesd_bus_msg_decode(const uint8_t *data, size_t len, qesd_bus_msg *out)
{
	const uint8_t *nl;
	json_t *h = NULL;
	json_error_t jerr;
	char op[16] = "", word[QESD_BUS_WORD_MAX] = "";
	size_t hlen, i;
	int64_t v, code;
	int r = QES_ERR_FORMAT;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	qesd_bus_msg_init(out, 0);
	if (data == NULL || len == 0)
		return QES_ERR_FORMAT;
	nl = memchr(data, '\n', len < QESD_BUS_HEADER_MAX + 1 ? len :
	    QESD_BUS_HEADER_MAX + 1);
	if (nl == NULL)
		return len > QESD_BUS_HEADER_MAX ? QES_ERR_LIMIT : QES_ERR_FORMAT;
	hlen = (size_t)(nl - data);
	if (len - hlen - 1 > QESD_BUS_BODY_MAX)
		return QES_ERR_LIMIT;
	h = json_loadb((const char *)data, hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(h) || json_object_size(h) > HEADER_MAX_KEYS)
		goto out;
	if (get_int(h, "v", 0, INT32_MAX, 0, &v) != 0 || v == 0)
		goto out;
	if (v != QESD_BUS_VERSION) {
		r = QES_ERR_UNSUPPORTED;
		goto out;
	}
	if (get_str(h, "op", op, sizeof(op)) != 0)
		goto out;
	for (i = 1; i < N_OPS; i++)
		if (strcmp(op, op_names[i]) == 0)
			out->op = (qesd_bus_op)i;
	if (out->op == 0 ||
	    get_str(h, "t", out->tenant_id, sizeof(out->tenant_id)) != 0 ||
	    get_str(h, "d", out->device_id, sizeof(out->device_id)) != 0 ||
	    get_str(h, "j", out->job_id, sizeof(out->job_id)) != 0 ||
	    get_str(h, "s", out->session_id, sizeof(out->session_id)) != 0 ||
	    get_str(h, "ref", out->ref, sizeof(out->ref)) != 0 ||
	    get_str(h, "reason", out->reason, sizeof(out->reason)) != 0 ||
	    get_str(h, "outcome", out->outcome, sizeof(out->outcome)) != 0 ||
	    get_str(h, "agent_error", out->agent_error,
	    sizeof(out->agent_error)) != 0 ||
	    get_str(h, "close_reason", out->close_reason,
	    sizeof(out->close_reason)) != 0 ||
	    get_str(h, "invalid", out->invalid, sizeof(out->invalid)) != 0 ||
	    get_str(h, "r", word, sizeof(word)) != 0 ||
	    get_int(h, "code", 0, 65535, 0, &code) != 0 ||
	    get_int(h, "rtt_ms", -1, INT32_MAX, -1, &out->rtt_ms) != 0 ||
	    get_int(h, "scan_ms", -1, INT32_MAX, -1, &out->scan_ms) != 0 ||
	    get_int(h, "total_ms", -1, INT32_MAX, -1, &out->total_ms) != 0 ||
	    get_int(h, "since_ms", 0, INT64_C(1) << 53, 0, &out->since_ms) != 0)
		goto out;
	out->close_code = (int)code;
	if (out->op == QESD_BUS_REPLY) {
		for (i = 0; i < N_RESULTS; i++)
			if (strcmp(word, results[i].word) == 0)
				break;
		if (i == N_RESULTS)
			goto out;
		out->result = results[i].code;
	}
	out->body = len - hlen - 1 > 0 ? nl + 1 : NULL;
	out->body_len = len - hlen - 1;
	/* keys that mean nothing for this op are ignored like unknown ones */
	if (out->op != QESD_BUS_CLOSE) {
		out->close_code = 0;
		out->reason[0] = '\0';
	}
	if (out->op != QESD_BUS_DIAG_RESULT) {
		out->outcome[0] = out->agent_error[0] = '\0';
		out->close_reason[0] = out->invalid[0] = '\0';
		out->rtt_ms = out->scan_ms = out->total_ms = -1;
	}
	if (out->op != QESD_BUS_JOB)
		out->job_id[0] = '\0';
	if (out->op != QESD_BUS_DIAG && out->op != QESD_BUS_DIAG_RESULT)
		out->ref[0] = '\0';
	if (out->op != QESD_BUS_REPLY && out->op != QESD_BUS_DIAG_RESULT &&
	    out->op != QESD_BUS_REPLACE)
		out->session_id[0] = '\0';
	if (out->op != QESD_BUS_REPLACE)
		out->since_ms = 0;
	if (out->op == QESD_BUS_REPLY)
		out->tenant_id[0] = '\0';
	if (out->op == QESD_BUS_REPLY || out->op == QESD_BUS_JOB)
		out->device_id[0] = '\0';
	if (check(out) != 0)
		goto out;
	r = 0;
 out:
	json_decref(h);
	if (r != 0)
		qesd_bus_msg_init(out, 0);
	return r;
}
