/*
 * http.c - the request parsing and validation layer of qesd, and the
 * response helpers (see http.h).
 *
 * Everything here is pure: no sockets, no threads, no libwebsockets. The
 * transport (server.c) feeds it what it read; the unit tests and the
 * libFuzzer target (tests/fuzz/fuzz_http.c) drive it directly. All input
 * is read with explicit lengths and every collection has a limit.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "http.h"
#include "problem.h"

#define MAX_PATH_SEGMENTS 32

/* ------------------------------------------------------------------------- */
/* names */

const char *
qesd_method_name(unsigned method)
{
	switch (method) {
	case QESD_GET: return "GET";
	case QESD_POST: return "POST";
	case QESD_PUT: return "PUT";
	case QESD_PATCH: return "PATCH";
	case QESD_DELETE: return "DELETE";
	case QESD_HEAD: return "HEAD";
	case QESD_OPTIONS: return "OPTIONS";
	default: return "OTHER";
	}
}

static const char *const scope_names[] = { "sign", "devices", "diagnostics",
	"audit", "admin" };

uint32_t
qesd_scope_from_name(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
		if (strcmp(name, scope_names[i]) == 0)
			return 1u << i;
	return 0;
}

const char *
qesd_scope_name(uint32_t scope)
{
	size_t i;

	for (i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
		if (scope == (1u << i))
			return scope_names[i];
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* responses */

void
qesd_response_clear(qesd_response *resp)
{
	size_t i;

	if (resp == NULL)
		return;
	json_decref(resp->json);
	free(resp->body);
	for (i = 0; i < resp->n_headers; i++)
		free(resp->headers[i].value);
	memset(resp, 0, sizeof(*resp));
}

void
qesd_response_move(qesd_response *dst, qesd_response *src)
{
	qesd_response_clear(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
}

/* Drop the body only; headers added before stay. */
static void
clear_body(qesd_response *resp)
{
	json_decref(resp->json);
	resp->json = NULL;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}

int
qesd_response_json(qesd_response *resp, int status, json_t *body)
{
	if (resp == NULL || body == NULL) {
		json_decref(body);
		return QES_ERR_INVALID_ARG;
	}
	clear_body(resp);
	resp->status = status;
	resp->json = body;
	if (resp->content_type[0] == '\0')
		snprintf(resp->content_type, sizeof(resp->content_type),
		    "application/json");
	return 0;
}

int
qesd_response_take_raw(qesd_response *resp, int status,
    const char *content_type, uint8_t *data, size_t len)
{
	if (resp == NULL || content_type == NULL ||
	    strlen(content_type) >= sizeof(resp->content_type) ||
	    strpbrk(content_type, "\r\n") != NULL) {
		free(data);
		return QES_ERR_INVALID_ARG;
	}
	clear_body(resp);
	resp->status = status;
	resp->body = data;
	resp->body_len = data != NULL ? len : 0;
	snprintf(resp->content_type, sizeof(resp->content_type), "%s", content_type);
	return 0;
}

int
qesd_response_raw(qesd_response *resp, int status, const char *content_type,
    const void *data, size_t len)
{
	uint8_t *copy = NULL;

	if (len > 0) {
		if ((copy = malloc(len)) == NULL)
			return QES_ERR_ALLOC;
		memcpy(copy, data, len);
	}
	return qesd_response_take_raw(resp, status, content_type, copy, len);
}

static int
is_tchar(int c)
{
	return isalnum(c) || c == '-' || c == '_';
}

int
qesd_response_header(qesd_response *resp, const char *name, const char *value)
{
	size_t i, nl;

	if (resp == NULL || name == NULL || value == NULL)
		return QES_ERR_INVALID_ARG;
	nl = strlen(name);
	if (nl == 0 || nl >= sizeof(resp->headers[0].name) || strlen(value) > 1024)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < nl; i++)
		if (!is_tchar((unsigned char)name[i]))
			return QES_ERR_INVALID_ARG;
	for (i = 0; value[i] != '\0'; i++)
		if ((unsigned char)value[i] < 0x20 && value[i] != '\t')
			return QES_ERR_INVALID_ARG;
	if (resp->n_headers >= QESD_MAX_RESPONSE_HEADERS)
		return QES_ERR_LIMIT;
	if ((resp->headers[resp->n_headers].value = strdup(value)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(resp->headers[resp->n_headers].name, name, nl + 1);
	resp->n_headers++;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* routing */

struct segs {
	const char *p[MAX_PATH_SEGMENTS];
	size_t len[MAX_PATH_SEGMENTS];
	size_t n;
};

/* Split "/a/b/c" into segments; -1 when not absolute or too many. */
static int
split_path(const char *path, struct segs *s)
{
	const char *p = path, *slash;

	s->n = 0;
	if (path == NULL || path[0] != '/')
		return -1;
	if (path[1] == '\0')
		return 0;	/* "/" has no segments */
	p = path + 1;
	for (;;) {
		if (s->n == MAX_PATH_SEGMENTS)
			return -1;
		slash = strchr(p, '/');
		s->p[s->n] = p;
		s->len[s->n] = slash != NULL ? (size_t)(slash - p) : strlen(p);
		s->n++;
		if (slash == NULL)
			return 0;
		p = slash + 1;
	}
}

static int
is_param_pattern(const char *seg, size_t len)
{
	return len >= 3 && seg[0] == '{' && seg[len - 1] == '}';
}

static int
param_value_ok(const char *v, size_t len)
{
	size_t i;

	if (len == 0 || len > QESD_MAX_PARAM_BYTES)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' &&
		    v[i] != '~' && v[i] != '-')
			return 0;
	return 1;
}

/* Number of literal segments when pattern matches the path, else -1. */
static int
match_score(const struct segs *pat, const struct segs *path)
{
	size_t i;
	int score = 0;

	if (pat->n != path->n)
		return -1;
	for (i = 0; i < pat->n; i++) {
		if (is_param_pattern(pat->p[i], pat->len[i])) {
			if (!param_value_ok(path->p[i], path->len[i]))
				return -1;
			continue;
		}
		if (pat->len[i] != path->len[i] ||
		    memcmp(pat->p[i], path->p[i], pat->len[i]) != 0)
			return -1;
		score++;
	}
	return score;
}

void
qesd_params_free(qesd_param *params, size_t n)
{
	size_t i;

	for (i = 0; params != NULL && i < n; i++) {
		free(params[i].name);
		free(params[i].value);
		params[i].name = params[i].value = NULL;
	}
}

int
qesd_route_match(const qesd_route_table *const *tables, unsigned method,
    const char *path, const qesd_route **out, qesd_param *params,
    size_t *n_params, unsigned *allowed)
{
	const qesd_route *best = NULL;
	struct segs ps, pat;
	size_t t, i, np = 0;
	int score, best_score = -1;
	unsigned any = 0;

	*out = NULL;
	*n_params = 0;
	*allowed = 0;
	if (tables == NULL || split_path(path, &ps) != 0)
		return QES_ERR_NOT_FOUND;
	for (t = 0; tables[t] != NULL; t++) {
		for (i = 0; i < tables[t]->n; i++) {
			const qesd_route *r = &tables[t]->routes[i];

			if (split_path(r->pattern, &pat) != 0)
				continue;	/* a broken pattern never matches */
			if ((score = match_score(&pat, &ps)) < 0)
				continue;
			any |= r->method;
			if ((r->method & method) != 0 && score > best_score) {
				best = r;
				best_score = score;
			}
		}
	}
	if (best == NULL) {
		*allowed = any;
		return any != 0 ? QES_ERR_UNSUPPORTED : QES_ERR_NOT_FOUND;
	}
	if (split_path(best->pattern, &pat) != 0)
		return QES_ERR_INTERNAL;
	for (i = 0; i < pat.n; i++) {
		if (!is_param_pattern(pat.p[i], pat.len[i]))
			continue;
		if (np == QESD_MAX_PATH_PARAMS)
			goto fail;
		params[np].name = strndup(pat.p[i] + 1, pat.len[i] - 2);
		params[np].value = strndup(ps.p[i], ps.len[i]);
		np++;
		if (params[np - 1].name == NULL || params[np - 1].value == NULL)
			goto fail;
	}
	*out = best;
	*n_params = np;
	return 0;
fail:
	qesd_params_free(params, np);
	return QES_ERR_ALLOC;
}

void
qesd_allow_header(unsigned allowed, char *buf, size_t buflen)
{
	static const unsigned order[] = { QESD_GET, QESD_HEAD, QESD_POST, QESD_PUT,
		QESD_PATCH, QESD_DELETE, QESD_OPTIONS };
	size_t i, off = 0;
	int n;

	if (buflen == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(allowed & order[i]))
			continue;
		n = snprintf(buf + off, buflen - off, "%s%s", off ? ", " : "",
		    qesd_method_name(order[i]));
		if (n < 0 || (size_t)n >= buflen - off)
			return;
		off += (size_t)n;
	}
}

const char *
qesd_request_param(const qesd_request *req, const char *name)
{
	size_t i;

	for (i = 0; req != NULL && i < req->n_path_params; i++)
		if (strcmp(req->path_params[i].name, name) == 0)
			return req->path_params[i].value;
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* UTF-8 */

int
qesd_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0, need, k;
	uint32_t cp;

	while (i < len) {
		uint8_t c = s[i];

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1fu;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0fu;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07u;
		} else
			return 0;
		if (len - i - 1 < need)
			return 0;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* ------------------------------------------------------------------------- */
/* query */

void
qesd_query_free(qesd_query *q)
{
	if (q == NULL)
		return;
	qesd_params_free(q->items, q->n);
	q->n = 0;
}

static int
query_key_ok(const char *k, size_t len)
{
	size_t i;

	if (len == 0 || len > QESD_MAX_QUERY_KEY_BYTES)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '.' && k[i] != '_' &&
		    k[i] != '-')
			return 0;
	return 1;
}

static int
query_add(qesd_query *q, const char *k, size_t kl, const char *v, size_t vl,
    const char **detail)
{
	size_t i;

	if (kl > QESD_MAX_QUERY_KEY_BYTES) {
		*detail = "query parameter name too long";
		return QES_ERR_LIMIT;
	}
	if (!query_key_ok(k, kl)) {
		*detail = "query parameter name must be 1..64 of [A-Za-z0-9._-]";
		return QES_ERR_FORMAT;
	}
	if (vl > QESD_MAX_QUERY_VALUE_BYTES) {
		*detail = "query parameter value too long";
		return QES_ERR_LIMIT;
	}
	if (!qesd_utf8_valid((const uint8_t *)v, vl)) {
		*detail = "query parameter value is not valid UTF-8";
		return QES_ERR_FORMAT;
	}
	for (i = 0; i < vl; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
			*detail = "query parameter value contains a control character";
			return QES_ERR_FORMAT;
		}
	for (i = 0; i < q->n; i++)
		if (strlen(q->items[i].name) == kl && memcmp(q->items[i].name, k, kl) == 0) {
			*detail = "query parameter given twice";
			return QES_ERR_FORMAT;
		}
	if (q->n == QESD_MAX_QUERY_PARAMS) {
		*detail = "too many query parameters";
		return QES_ERR_LIMIT;
	}
	q->items[q->n].name = strndup(k, kl);
	q->items[q->n].value = strndup(v, vl);
	q->n++;
	if (q->items[q->n - 1].name == NULL || q->items[q->n - 1].value == NULL) {
		*detail = "out of memory";
		return QES_ERR_ALLOC;
	}
	return 0;
}

int
qesd_query_add_decoded(qesd_query *q, const char *pair, size_t len,
    const char **detail)
{
	const char *eq, *scratch;

	if (detail == NULL)
		detail = &scratch;
	if (len == 0)
		return 0;
	if (memchr(pair, '\0', len) != NULL) {
		*detail = "query contains a NUL byte";
		return QES_ERR_FORMAT;
	}
	eq = memchr(pair, '=', len);
	if (eq == NULL)
		return query_add(q, pair, len, "", 0, detail);
	return query_add(q, pair, (size_t)(eq - pair), eq + 1,
	    len - (size_t)(eq - pair) - 1, detail);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode %XX and '+' of raw[0..len) into out (at most cap bytes). */
static int
pct_decode(const char *raw, size_t len, char *out, size_t cap, size_t *outlen)
{
	size_t i = 0, o = 0;
	int h, l;

	while (i < len) {
		char c = raw[i];

		if (o == cap)
			return QES_ERR_LIMIT;
		if (c == '%') {
			if (len - i < 3 || (h = hexval((unsigned char)raw[i + 1])) < 0 ||
			    (l = hexval((unsigned char)raw[i + 2])) < 0)
				return QES_ERR_FORMAT;
			out[o++] = (char)(h << 4 | l);
			i += 3;
		} else {
			out[o++] = c == '+' ? ' ' : c;
			i++;
		}
	}
	*outlen = o;
	return 0;
}

int
qesd_query_parse(qesd_query *q, const char *raw, size_t len,
    const char **detail)
{
	char key[QESD_MAX_QUERY_KEY_BYTES + 1];
	char val[QESD_MAX_QUERY_VALUE_BYTES + 1];
	size_t off = 0, kl, vl;
	const char *scratch;
	int r;

	if (detail == NULL)
		detail = &scratch;
	*detail = NULL;
	while (off < len) {
		const char *pair = raw + off, *end, *eq;
		size_t pl = len - off;

		for (end = pair; end < raw + len && *end != '&' && *end != ';'; end++)
			;
		pl = (size_t)(end - pair);
		off += pl + 1;
		if (pl == 0)
			continue;
		eq = memchr(pair, '=', pl);
		r = pct_decode(pair, eq != NULL ? (size_t)(eq - pair) : pl, key,
		    sizeof(key) - 1, &kl);
		if (r == 0 && eq != NULL)
			r = pct_decode(eq + 1, pl - (size_t)(eq - pair) - 1, val,
			    sizeof(val) - 1, &vl);
		else
			vl = 0;
		if (r == QES_ERR_LIMIT) {
			*detail = "query parameter too long";
			return r;
		}
		if (r != 0) {
			*detail = "malformed percent-encoding in query";
			return r;
		}
		if (memchr(key, '\0', kl) != NULL || memchr(val, '\0', vl) != NULL) {
			*detail = "query contains a NUL byte";
			return QES_ERR_FORMAT;
		}
		if ((r = query_add(q, key, kl, val, vl, detail)) != 0)
			return r;
	}
	return 0;
}

const char *
qesd_query_get(const qesd_query *q, const char *key)
{
	size_t i;

	for (i = 0; q != NULL && i < q->n; i++)
		if (strcmp(q->items[i].name, key) == 0)
			return q->items[i].value;
	return NULL;
}

int
qesd_query_get_int(const qesd_query *q, const char *key, long long min,
    long long max, long long *out)
{
	const char *v = qesd_query_get(q, key);
	long long x = 0;
	size_t i;

	if (v == NULL)
		return QES_ERR_NOT_FOUND;
	if (v[0] == '\0' || strlen(v) > 18)
		return QES_ERR_FORMAT;
	for (i = (v[0] == '-'); v[i] != '\0'; i++) {
		if (!isdigit((unsigned char)v[i]))
			return QES_ERR_FORMAT;
		x = x * 10 + (v[i] - '0');
	}
	if (v[0] == '-') {
		if (v[1] == '\0')
			return QES_ERR_FORMAT;
		x = -x;
	}
	if (x < min || x > max)
		return QES_ERR_LIMIT;
	*out = x;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* request ids and secrets */

int
qesd_request_id_valid(const char *id, size_t len)
{
	size_t i;

	if (id == NULL || len == 0 || len > QESD_REQUEST_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' &&
		    id[i] != '-')
			return 0;
	return 1;
}

int
qesd_request_id_generate(char out[QESD_REQUEST_ID_MAX + 1])
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char rnd[18];	/* 16 used; 18 makes the loop whole groups */
	size_t i, o = 0;
	uint32_t v;

	memset(rnd, 0, sizeof(rnd));
	if (RAND_bytes(rnd, 16) != 1)
		return QES_ERR_CRYPTO;
	for (i = 0; i < 18; i += 3) {
		v = (uint32_t)rnd[i] << 16 | (uint32_t)rnd[i + 1] << 8 | rnd[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	out[22] = '\0';		/* 16 bytes are 22 characters unpadded */
	return 0;
}

void
qesd_request_wipe_authorization(qesd_request *req)
{
	if (req == NULL || req->authorization == NULL)
		return;
	qes_wipe(req->authorization, strlen(req->authorization));
	free(req->authorization);
	req->authorization = NULL;
}

/* ------------------------------------------------------------------------- */
/* JSON bodies */

int
qesd_content_type_is_json(const char *v)
{
	const char *p, *semi;
	size_t tl;

	if (v == NULL)
		return 0;
	while (*v == ' ' || *v == '\t')
		v++;
	semi = strchr(v, ';');
	tl = semi != NULL ? (size_t)(semi - v) : strlen(v);
	while (tl > 0 && (v[tl - 1] == ' ' || v[tl - 1] == '\t'))
		tl--;
	if (tl != 16 || strncasecmp(v, "application/json", 16) != 0)
		return 0;
	/* parameters: only charset=utf-8 means anything to us; refuse others */
	for (p = semi; p != NULL; p = strchr(p + 1, ';')) {
		const char *q = p + 1;

		while (*q == ' ' || *q == '\t')
			q++;
		if (*q == '\0')
			continue;
		if (strncasecmp(q, "charset=", 8) == 0) {
			q += 8;
			if (*q == '"')
				q++;
			if (strncasecmp(q, "utf-8", 5) != 0)
				return 0;
		}
	}
	return 1;
}

/* Bytes a \uXXXX escape adds to the decoded string (surrogates count 2). */
static size_t
escape_utf8_len(const uint8_t *h)
{
	unsigned cp = 0;
	int i, v;

	for (i = 0; i < 4; i++) {
		if ((v = hexval(h[i])) < 0)
			return 1;	/* malformed: jansson will reject it */
		cp = cp << 4 | (unsigned)v;
	}
	if (cp < 0x80)
		return 1;
	if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
		return 2;
	return 3;
}

qesd_json_scan_result
qesd_json_prescan(const uint8_t *data, size_t len,
    const qesd_body_limits *limits)
{
	uint8_t stack[256];	/* open brackets; depth is capped at 256 */
	size_t depth = 0, i = 0, slen, max_depth;

	max_depth = limits->max_json_depth;
	if (max_depth > sizeof(stack))
		max_depth = sizeof(stack);
	while (i < len) {
		uint8_t c = data[i];

		if (c == '"') {
			slen = 0;
			i++;
			for (;;) {
				if (i >= len)
					return QESD_JSON_SCAN_MALFORMED;
				c = data[i];
				if (c == '"')
					break;
				if (c == '\\') {
					if (i + 1 >= len)
						return QESD_JSON_SCAN_MALFORMED;
					if (data[i + 1] == 'u' && len - i >= 6) {
						slen += escape_utf8_len(data + i + 2);
						i += 6;
					} else {
						slen++;
						i += 2;
					}
				} else {
					slen++;
					i++;
				}
				if (slen > limits->max_string_bytes)
					return QESD_JSON_SCAN_STRING_TOO_LONG;
			}
			i++;	/* closing quote */
			continue;
		}
		if (c == '{' || c == '[') {
			if (depth == max_depth)
				return QESD_JSON_SCAN_TOO_DEEP;
			stack[depth++] = c;
		} else if (c == '}' || c == ']') {
			if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' : '['))
				return QESD_JSON_SCAN_MALFORMED;
			depth--;
		}
		i++;
	}
	return depth == 0 ? QESD_JSON_SCAN_OK : QESD_JSON_SCAN_MALFORMED;
}

int
qesd_request_parse_json(qesd_request *req, const qesd_body_limits *limits,
    qesd_response *resp)
{
	json_error_t jerr;
	json_t *j;

	if (!qesd_content_type_is_json(req->content_type))
		return qesd_problem(resp, req, 415, "unsupported_media_type",
		    "Unsupported media type",
		    "the request body must be application/json"), -1;
	switch (qesd_json_prescan(req->body, req->body_len, limits)) {
	case QESD_JSON_SCAN_OK:
		break;
	case QESD_JSON_SCAN_TOO_DEEP:
		return qesd_problemf(resp, req, 400, "json_too_deep",
		    "JSON nested too deeply",
		    "the body nests objects and arrays deeper than %zu levels",
		    limits->max_json_depth), -1;
	case QESD_JSON_SCAN_STRING_TOO_LONG:
		return qesd_problemf(resp, req, 400, "string_too_long",
		    "JSON string too long",
		    "a string in the body is longer than %zu bytes",
		    limits->max_string_bytes), -1;
	default:
		return qesd_problem(resp, req, 400, "invalid_json", "Invalid JSON",
		    "the body is not well-formed JSON"), -1;
	}
	/* jansson checks UTF-8, rejects \u0000 and, with this flag, duplicates */
	j = json_loadb((const char *)req->body, req->body_len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL)
		return qesd_problemf(resp, req, 400, "invalid_json", "Invalid JSON",
		    "the body is not valid JSON (line %d, column %d)", jerr.line,
		    jerr.column), -1;
	if (!json_is_object(j)) {
		json_decref(j);
		return qesd_problem(resp, req, 400, "invalid_json", "Invalid JSON",
		    "the body must be a JSON object"), -1;
	}
	json_decref(req->json);
	req->json = j;
	return 0;
}
