/*
 * proto_schema.c - the schema engine of qes.v1: decode, encode and compare
 * typed structs against field tables (see proto_priv.h).
 *
 * Everything here reads JSON that jansson has already parsed within the
 * size and depth limits proto.c enforced, so it only deals with values:
 * every string length, array length and decoded size is checked against its
 * field's limit before anything is allocated, and every allocation lives in
 * the message's qes_proto_mem, so one free releases a message whatever path
 * the decode took. The syntax checks it applies (ids, host names, display
 * text, base64url) are in proto_syntax.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "proto_priv.h"

/* ---- memory owned by a message ------------------------------------------ */

void *
qes_proto_mem_alloc(struct qes_proto_mem *m, size_t n)
{
	void **nb, *p;
	size_t cap;

	if (n == 0)
		return NULL;
	if (m->n_blocks == m->cap_blocks) {
		cap = m->cap_blocks == 0 ? 8 : m->cap_blocks * 2;
		if (cap > SIZE_MAX / sizeof(void *))
			return NULL;
		if ((nb = realloc(m->blocks, cap * sizeof(void *))) == NULL)
			return NULL;
		m->blocks = nb;
		m->cap_blocks = cap;
	}
	if ((p = calloc(1, n)) == NULL)
		return NULL;
	m->blocks[m->n_blocks++] = p;
	return p;
}

void
qes_proto_mem_free(struct qes_proto_mem *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_blocks; i++)
		free(m->blocks[i]);
	free(m->blocks);
	json_decref(m->root);
	memset(m, 0, sizeof(*m));
}

/* ---- error paths ---------------------------------------------------------- */

void
pf_ctx_init(struct pf_ctx *c, struct qes_proto_mem *mem, char *err,
    size_t errlen, const char *root)
{
	memset(c, 0, sizeof(*c));
	c->mem = mem;
	c->err = err;
	c->errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	pf_push(c, root);
}

size_t
pf_push(struct pf_ctx *c, const char *name)
{
	size_t saved = c->path_len;
	int n;

	n = snprintf(c->path + c->path_len, sizeof(c->path) - c->path_len,
	    "%s%s", c->path_len > 0 ? "." : "", name);
	if (n > 0)
		c->path_len += (size_t)n;
	if (c->path_len >= sizeof(c->path))
		c->path_len = sizeof(c->path) - 1;
	return saved;
}

size_t
pf_push_index(struct pf_ctx *c, size_t i)
{
	size_t saved = c->path_len;
	int n;

	n = snprintf(c->path + c->path_len, sizeof(c->path) - c->path_len,
	    "[%zu]", i);
	if (n > 0)
		c->path_len += (size_t)n;
	if (c->path_len >= sizeof(c->path))
		c->path_len = sizeof(c->path) - 1;
	return saved;
}

void
pf_pop(struct pf_ctx *c, size_t saved)
{
	c->path_len = saved;
	c->path[saved] = '\0';
}

static int vfail(struct pf_ctx *c, const char *field, int rc, const char *fmt,
    va_list ap) __attribute__((format(printf, 4, 0)));

static int
vfail(struct pf_ctx *c, const char *field, int rc, const char *fmt, va_list ap)
{
	char msg[160];

	if (c->failed)
		return rc;
	c->failed = 1;
	if (c->err == NULL || c->errlen == 0)
		return rc;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	snprintf(c->err, c->errlen, "%s%s%s: %s", c->path,
	    field != NULL ? "." : "", field != NULL ? field : "", msg);
	return rc;
}

int
pf_fail(struct pf_ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc = vfail(c, NULL, rc, fmt, ap);
	va_end(ap);
	return rc;
}

int
pf_fail_at(struct pf_ctx *c, const char *field, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc = vfail(c, field, rc, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- decoding ------------------------------------------------------------- */

#define AT(obj, off, type) ((type *)(void *)((char *)(obj) + (off)))
#define CAT(obj, off, type) ((const type *)(const void *)((const char *)(obj) + (off)))

static const char *
json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number with a fraction or exponent";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

static int
wrong_type(struct pf_ctx *c, const char *expected, const json_t *v)
{
	return pf_fail(c, QES_ERR_FORMAT, "expected %s, got %s", expected, json_kind(v));
}

/* string value with its length bounds; LIMIT above max, FORMAT below min */
static int
get_string(struct pf_ctx *c, const json_t *v, size_t min, size_t max,
    const char **s, size_t *len)
{
	if (!json_is_string(v))
		return wrong_type(c, "a string", v);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (*len > max)
		return pf_fail(c, QES_ERR_LIMIT, "%zu bytes, at most %zu", *len, max);
	if (*len < min)
		return pf_fail(c, QES_ERR_FORMAT, *len == 0 ? "empty" :
		    "%zu bytes, at least %zu", *len, min);
	return 0;
}

static int
bad_char(struct pf_ctx *c, const char *s, size_t len, size_t at, const char *what)
{
	char esc[16];

	pf_escape(s + at, len - at > 1 ? 1 : len - at, esc, sizeof(esc));
	return pf_fail(c, QES_ERR_FORMAT, "character \"%s\" at byte %zu is not %s",
	    esc, at, what);
}

static int
decode_string(struct pf_ctx *c, const struct pf_field *f, const json_t *v, void *obj)
{
	const char *s, *why;
	size_t len, i, at;
	uint32_t cp;
	int r;

	switch (f->kind) {
	case PF_ID:
		if ((r = get_string(c, v, 1, QES_PROTO_ID_MAX, &s, &len)) != 0)
			return r;
		for (i = 0; i < len; i++)
			if (!pf_id_ok(s + i, 1))
				return bad_char(c, s, len, i, "allowed in an id ([A-Za-z0-9_-])");
		break;
	case PF_STR:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		if (!pf_utf8_ok(s, len))
			return pf_fail(c, QES_ERR_FORMAT, "not valid UTF-8");
		break;
	case PF_TEXT:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		if ((why = pf_text_problem(s, len, (f->flags & PF_MULTILINE) != 0,
		    &at, &cp)) != NULL)
			return cp != 0 ? pf_fail(c, QES_ERR_FORMAT, "%s U+%04X at byte %zu",
			    why, (unsigned)cp, at) :
			    pf_fail(c, QES_ERR_FORMAT, "%s at byte %zu", why, at);
		break;
	case PF_ASCII:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		for (i = 0; i < len; i++)
			if (s[i] < 0x20 || s[i] > 0x7e)
				return bad_char(c, s, len, i, "printable ASCII");
		break;
	case PF_VERSION:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		for (i = 0; i < len; i++)
			if (!pf_id_ok(s + i, 1) && s[i] != '.' && s[i] != '+' && s[i] != '~')
				return bad_char(c, s, len, i, "allowed in a version ([0-9A-Za-z.+~_-])");
		break;
	case PF_HEX:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		for (i = 0; i < len; i++)
			if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
				return bad_char(c, s, len, i, "lower-case hex");
		if (len % 2 != 0)
			return pf_fail(c, QES_ERR_FORMAT, "odd number of hex digits");
		break;
	case PF_HOST:
		if ((r = get_string(c, v, 1, QES_PROTO_HOST_MAX, &s, &len)) != 0)
			return r;
		if (!pf_host_ok(s, len))
			return pf_fail(c, QES_ERR_FORMAT,
			    "not a lower-case host name or IP address");
		break;
	case PF_CODE:
		if ((r = get_string(c, v, f->min, f->max, &s, &len)) != 0)
			return r;
		for (i = 0; i < len; i++)
			if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
			    s[i] == '_'))
				return bad_char(c, s, len, i, "allowed in a code ([a-z0-9_])");
		break;
	case PF_DIGITS:
		if (!json_is_string(v))
			return wrong_type(c, "a string", v);
		s = json_string_value(v);
		len = json_string_length(v);
		if (len != f->max)
			return pf_fail(c, QES_ERR_FORMAT, "%zu characters, expected %zu digits",
			    len, f->max);
		for (i = 0; i < len; i++)
			if (s[i] < '0' || s[i] > '9')
				return bad_char(c, s, len, i, "a decimal digit");
		memcpy(AT(obj, f->off, char), s, len);
		AT(obj, f->off, char)[len] = '\0';
		return 0;
	default:
		return pf_fail(c, QES_ERR_INTERNAL, "bad schema");
	}
	*AT(obj, f->off, const char *) = s;
	return 0;
}

/*
 * base64url string v, min..max decoded bytes, into dst (room for
 * pf_b64url_len(max) * 3 / 4 + 3 bytes), or, when dst is NULL, into newly
 * allocated memory of the message.
 */
static int
decode_b64(struct pf_ctx *c, const json_t *v, size_t min, size_t max,
    uint8_t *dst, qes_proto_bytes *out)
{
	const char *s;
	size_t len, n;

	if (!json_is_string(v))
		return wrong_type(c, "a base64url string", v);
	s = json_string_value(v);
	len = json_string_length(v);
	/* bound the text before decoding: max bytes never need more characters */
	if (len > pf_b64url_len(max))
		return pf_fail(c, QES_ERR_LIMIT, "%zu base64url characters, at most %zu "
		    "(%zu bytes)", len, pf_b64url_len(max), max);
	if (len == 0) {
		if (min > 0)
			return pf_fail(c, QES_ERR_FORMAT, "empty");
		out->data = NULL;
		out->len = 0;
		return 0;
	}
	if (dst == NULL && (dst = qes_proto_mem_alloc(c->mem, len / 4 * 3 + 3)) == NULL)
		return pf_fail(c, QES_ERR_ALLOC, "out of memory");
	if (pf_b64url_decode(s, len, dst, &n) != 0)
		return pf_fail(c, QES_ERR_FORMAT, "not canonical base64url without padding");
	if (n < min || n > max)
		return pf_fail(c, n > max ? QES_ERR_LIMIT : QES_ERR_FORMAT,
		    min == max ? "decodes to %zu bytes, expected %zu" :
		    "decodes to %zu bytes, expected %zu..%zu", n, min, max);
	out->data = dst;
	out->len = n;
	return 0;
}

static int
decode_enum(struct pf_ctx *c, const struct pf_field *f, const json_t *v, unsigned *out)
{
	char esc[48], list[160];
	const char *s;
	size_t i, len, o = 0;

	if (!json_is_string(v))
		return wrong_type(c, "a string", v);
	s = json_string_value(v);
	len = json_string_length(v);
	for (i = 0; i < f->n_names; i++)
		if (strlen(f->names[i].name) == len && memcmp(f->names[i].name, s, len) == 0) {
			*out = f->names[i].value;
			return 0;
		}
	list[0] = '\0';
	for (i = 0; i < f->n_names && o < sizeof(list); i++) {
		int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
		    f->names[i].name);

		if (n < 0)
			break;
		o += (size_t)n;
	}
	pf_escape(s, len, esc, sizeof(esc));
	return pf_fail(c, QES_ERR_FORMAT, "unknown value \"%s\" (expected %s)", esc, list);
}

static int
array_count(struct pf_ctx *c, const json_t *v, size_t min, size_t max, size_t *n)
{
	if (!json_is_array(v))
		return wrong_type(c, "an array", v);
	*n = json_array_size(v);
	if (*n > max)
		return pf_fail(c, QES_ERR_LIMIT, "%zu entries, at most %zu", *n, max);
	if (*n < min)
		return pf_fail(c, QES_ERR_FORMAT, *n == 0 ? "empty" :
		    "%zu entries, at least %zu", *n, min);
	return 0;
}

static int
decode_nameset(struct pf_ctx *c, const struct pf_field *f, const json_t *v, unsigned *out)
{
	unsigned bits = 0, bit;
	size_t n, i, saved;
	int r;

	if ((r = array_count(c, v, 0, f->n_names, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		saved = pf_push_index(c, i);
		r = decode_enum(c, f, json_array_get(v, i), &bit);
		if (r == 0 && (bits & bit))
			r = pf_fail(c, QES_ERR_FORMAT, "listed twice");
		pf_pop(c, saved);
		if (r != 0)
			return r;
		bits |= bit;
	}
	*out = bits;
	return 0;
}

static int
decode_flagobj(struct pf_ctx *c, const struct pf_field *f, const json_t *v, unsigned *out)
{
	const char *key;
	json_t *val;
	char esc[48];
	unsigned bits = 0;
	size_t i, saved;
	int r;

	if (!json_is_object(v))
		return wrong_type(c, "an object", v);
	json_object_foreach((json_t *)v, key, val) {
		for (i = 0; i < f->n_names; i++)
			if (strcmp(f->names[i].name, key) == 0)
				break;
		if (i == f->n_names) {
			pf_escape(key, strlen(key), esc, sizeof(esc));
			return pf_fail(c, QES_ERR_FORMAT, "unknown field \"%s\"", esc);
		}
	}
	for (i = 0; i < f->n_names; i++) {
		if ((val = json_object_get(v, f->names[i].name)) == NULL)
			return pf_fail_at(c, f->names[i].name, QES_ERR_FORMAT, "missing");
		if (!json_is_boolean(val)) {
			saved = pf_push(c, f->names[i].name);
			r = wrong_type(c, "a boolean", val);
			pf_pop(c, saved);
			return r;
		}
		if (json_is_true(val))
			bits |= f->names[i].value;
	}
	*out = bits;
	return 0;
}

static int decode_value(struct pf_ctx *c, const struct pf_field *f, const json_t *v,
    void *obj);

static int
decode_arrays(struct pf_ctx *c, const struct pf_field *f, const json_t *v, void *obj)
{
	const char *what = "";
	size_t n, i, saved, item = 0;
	qes_proto_bytes *bytes, one;
	uint8_t *cat, tmp[QES_MD_MAX_LEN + 3];
	char *items;
	int r = 0;

	if ((r = array_count(c, v, f->min, f->max, &n)) != 0)
		return r;
	*AT(obj, f->aux_off, size_t) = n;
	if (n == 0) {
		*AT(obj, f->off, const void *) = NULL;
		return 0;
	}
	switch (f->kind) {
	case PF_ARR_OBJ:
		/* n <= f->max (small) and size is a struct size: no overflow */
		if ((items = qes_proto_mem_alloc(c->mem, n * f->sub->size)) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		*AT(obj, f->off, const void *) = items;
		for (i = 0; i < n && r == 0; i++) {
			saved = pf_push_index(c, i);
			r = pf_decode(c, f->sub, json_array_get(v, i),
			    items + i * f->sub->size, 0);
			pf_pop(c, saved);
		}
		return r;
	case PF_ARR_B64:
		if ((bytes = qes_proto_mem_alloc(c->mem, n * sizeof(*bytes))) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		*AT(obj, f->off, const void *) = bytes;
		for (i = 0; i < n && r == 0; i++) {
			saved = pf_push_index(c, i);
			r = decode_b64(c, json_array_get(v, i), (size_t)f->imin,
			    (size_t)f->imax, NULL, &bytes[i]);
			pf_pop(c, saved);
		}
		return r;
	case PF_DIGESTS:
		item = f->item_len(obj, &what);
		if (item == 0)
			return pf_fail(c, QES_ERR_INTERNAL, "no digest length");
		if ((cat = qes_proto_mem_alloc(c->mem, n * item)) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		*AT(obj, f->off, const void *) = cat;
		for (i = 0; i < n && r == 0; i++) {
			saved = pf_push_index(c, i);
			/* accept any length up to the largest digest, then name the mismatch */
			r = decode_b64(c, json_array_get(v, i), 1, QES_MD_MAX_LEN, tmp, &one);
			if (r == 0 && one.len != item)
				r = pf_fail(c, QES_ERR_FORMAT, "wrong length %zu for %s",
				    one.len, what);
			if (r == 0)
				memcpy(cat + i * item, one.data, item);
			pf_pop(c, saved);
		}
		return r;
	default:
		return pf_fail(c, QES_ERR_INTERNAL, "bad schema");
	}
}

static int
decode_value(struct pf_ctx *c, const struct pf_field *f, const json_t *v, void *obj)
{
	uint8_t fix[QES_PROTO_NONCE_LEN + 3];
	qes_proto_bytes b;
	unsigned u = 0;
	void *sub;
	int r, saved_mode;

	switch (f->kind) {
	case PF_ID:
	case PF_STR:
	case PF_TEXT:
	case PF_ASCII:
	case PF_VERSION:
	case PF_HEX:
	case PF_HOST:
	case PF_CODE:
	case PF_DIGITS:
		return decode_string(c, f, v, obj);
	case PF_INT:
		if (!json_is_integer(v))
			return wrong_type(c, "an integer", v);
		if (json_integer_value(v) < f->imin || json_integer_value(v) > f->imax)
			return pf_fail(c, QES_ERR_FORMAT, "%lld is out of range %lld..%lld",
			    (long long)json_integer_value(v), (long long)f->imin,
			    (long long)f->imax);
		*AT(obj, f->off, int64_t) = (int64_t)json_integer_value(v);
		return 0;
	case PF_BOOL:
		if (!json_is_boolean(v))
			return wrong_type(c, "a boolean", v);
		*AT(obj, f->off, int) = json_is_true(v);
		return 0;
	case PF_TRIBOOL:
		if (!json_is_boolean(v) && !json_is_null(v))
			return wrong_type(c, "a boolean or null", v);
		*AT(obj, f->off, int) = json_is_null(v) ? -1 : json_is_true(v);
		return 0;
	case PF_ENUM:
		if ((r = decode_enum(c, f, v, &u)) != 0)
			return r;
		*AT(obj, f->off, int) = (int)u;
		return 0;
	case PF_B64:
		if ((r = decode_b64(c, v, f->min, f->max, NULL, &b)) != 0)
			return r;
		*AT(obj, f->off, qes_proto_bytes) = b;
		return 0;
	case PF_B64FIX:
		if (f->max > QES_PROTO_NONCE_LEN)
			return pf_fail(c, QES_ERR_INTERNAL, "bad schema");
		if ((r = decode_b64(c, v, f->max, f->max, fix, &b)) != 0)
			return r;
		memcpy(AT(obj, f->off, uint8_t), b.data, f->max);
		return 0;
	case PF_OBJ:
		return pf_decode(c, f->sub, v, AT(obj, f->off, void), 0);
	case PF_OBJPTR:
		if ((sub = qes_proto_mem_alloc(c->mem, f->sub->size)) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		*AT(obj, f->off, const void *) = sub;
		return pf_decode(c, f->sub, v, sub, 0);
	case PF_REPORT:
		saved_mode = c->mode;
		c->mode = (int)f->imin;
		r = pf_decode(c, f->sub, v, AT(obj, f->off, void), 0);
		c->mode = saved_mode;
		if (r == 0)
			AT(obj, f->off, qes_proto_report)->json = v;
		return r;
	case PF_ARR_OBJ:
	case PF_ARR_B64:
	case PF_DIGESTS:
		return decode_arrays(c, f, v, obj);
	case PF_NAMESET:
		if ((r = decode_nameset(c, f, v, &u)) != 0)
			return r;
		*AT(obj, f->off, unsigned) = u;
		return 0;
	case PF_FLAGOBJ:
		if ((r = decode_flagobj(c, f, v, &u)) != 0)
			return r;
		*AT(obj, f->off, unsigned) = u;
		return 0;
	}
	return pf_fail(c, QES_ERR_INTERNAL, "bad schema");
}

static int
is_envelope(const char *key)
{
	return strcmp(key, "type") == 0 || strcmp(key, "id") == 0 || strcmp(key, "v") == 0;
}

int
pf_decode(struct pf_ctx *c, const struct pf_schema *s, const json_t *j, void *obj,
    int envelope)
{
	const struct pf_field *f;
	const char *key;
	json_t *v;
	char esc[48];
	size_t i, saved;
	int r;

	if (!json_is_object(j))
		return wrong_type(c, "an object", j);
	/* an unknown field is refused before anything else is looked at */
	json_object_foreach((json_t *)j, key, v) {
		if (envelope && is_envelope(key))
			continue;
		for (i = 0; i < s->n_fields; i++)
			if (strcmp(s->fields[i].name, key) == 0)
				break;
		if (i == s->n_fields) {
			pf_escape(key, strlen(key), esc, sizeof(esc));
			return pf_fail(c, QES_ERR_FORMAT, "unknown field \"%s\"", esc);
		}
	}
	for (i = 0; i < s->n_fields; i++) {
		f = &s->fields[i];
		if ((v = json_object_get(j, f->name)) == NULL) {
			if (f->flags & PF_REQ)
				return pf_fail_at(c, f->name, QES_ERR_FORMAT, "missing");
			continue;
		}
		saved = pf_push(c, f->name);
		r = decode_value(c, f, v, obj);
		pf_pop(c, saved);
		if (r != 0)
			return r;
		if (f->flags & PF_HAS)
			*AT(obj, f->aux_off, int) = 1;
	}
	if (s->check != NULL)
		return s->check(c, j, obj);
	return 0;
}

/* ---- encoding ------------------------------------------------------------- */

static int
put(struct pf_ctx *c, json_t *j, const char *name, json_t *v)
{
	if (v == NULL || json_object_set_new(j, name, v) != 0)
		return pf_fail(c, QES_ERR_ALLOC, "out of memory");
	return 0;
}

json_t *
pf_b64_json(const uint8_t *data, size_t len)
{
	size_t n = pf_b64url_len(len);
	json_t *v;
	char *s;

	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	pf_b64url_encode(data, len, s);
	v = json_stringn(s, n);
	free(s);
	return v;
}

static int
encode_string(struct pf_ctx *c, const struct pf_field *f, const void *obj, json_t *j)
{
	const char *s = f->kind == PF_DIGITS ? CAT(obj, f->off, char) :
	    *CAT(obj, f->off, char *);

	if (s == NULL || (f->kind == PF_DIGITS && s[0] == '\0'))
		return 0;	/* absent: the check afterwards says whether it may be */
	if (!pf_utf8_ok(s, strlen(s)))
		return pf_fail_at(c, f->name, QES_ERR_INVALID_ARG, "not valid UTF-8");
	return put(c, j, f->name, json_string(s));
}

static int
encode_enum(struct pf_ctx *c, const struct pf_field *f, unsigned value, json_t *j)
{
	size_t i;

	for (i = 0; i < f->n_names; i++)
		if (f->names[i].value == value)
			return put(c, j, f->name, json_string(f->names[i].name));
	return pf_fail_at(c, f->name, QES_ERR_INVALID_ARG, "invalid value %u", value);
}

static int
encode_array(struct pf_ctx *c, const struct pf_field *f, const void *obj, json_t *j)
{
	size_t n = *CAT(obj, f->aux_off, size_t), i, item;
	const void *p = *CAT(obj, f->off, void *);
	const char *what;
	json_t *a, *o;
	int r = 0;

	if (n == 0 && !(f->flags & PF_REQ))
		return 0;
	if (n > 0 && p == NULL)
		return pf_fail_at(c, f->name, QES_ERR_INVALID_ARG, "count without items");
	if ((a = json_array()) == NULL)
		return pf_fail(c, QES_ERR_ALLOC, "out of memory");
	for (i = 0; i < n && r == 0; i++) {
		switch (f->kind) {
		case PF_ARR_OBJ:
			if ((o = json_object()) == NULL) {
				r = pf_fail(c, QES_ERR_ALLOC, "out of memory");
				break;
			}
			if ((r = pf_encode(c, f->sub, (const char *)p + i * f->sub->size, o)) == 0 &&
			    json_array_append_new(a, o) != 0)
				r = pf_fail(c, QES_ERR_ALLOC, "out of memory");
			else if (r != 0)
				json_decref(o);
			break;
		case PF_ARR_B64:
			if (json_array_append_new(a, pf_b64_json(((const qes_proto_bytes *)p)[i].data,
			    ((const qes_proto_bytes *)p)[i].len)) != 0)
				r = pf_fail(c, QES_ERR_ALLOC, "out of memory");
			break;
		case PF_DIGESTS:
			if ((item = f->item_len(obj, &what)) == 0)
				r = pf_fail_at(c, f->name, QES_ERR_INVALID_ARG,
				    "unknown digest length");
			else if (json_array_append_new(a, pf_b64_json((const uint8_t *)p + i * item,
			    item)) != 0)
				r = pf_fail(c, QES_ERR_ALLOC, "out of memory");
			break;
		default:
			r = pf_fail(c, QES_ERR_INTERNAL, "bad schema");
			break;
		}
	}
	if (r != 0) {
		json_decref(a);
		return r;
	}
	return put(c, j, f->name, a);
}

static int
encode_value(struct pf_ctx *c, const struct pf_field *f, const void *obj, json_t *j)
{
	const qes_proto_bytes *b;
	const qes_proto_report *rep;
	const void *sub;
	unsigned u;
	json_t *o, *a;
	size_t i;
	int r;

	switch (f->kind) {
	case PF_ID:
	case PF_STR:
	case PF_TEXT:
	case PF_ASCII:
	case PF_VERSION:
	case PF_HEX:
	case PF_HOST:
	case PF_CODE:
	case PF_DIGITS:
		return encode_string(c, f, obj, j);
	case PF_INT:
		return put(c, j, f->name, json_integer((json_int_t)*CAT(obj, f->off, int64_t)));
	case PF_BOOL:
		return put(c, j, f->name, json_boolean(*CAT(obj, f->off, int)));
	case PF_TRIBOOL:
		return put(c, j, f->name, *CAT(obj, f->off, int) < 0 ? json_null() :
		    json_boolean(*CAT(obj, f->off, int)));
	case PF_ENUM:
		return encode_enum(c, f, (unsigned)*CAT(obj, f->off, int), j);
	case PF_B64:
		b = CAT(obj, f->off, qes_proto_bytes);
		if (b->data == NULL && b->len == 0)
			return 0;
		if (b->data == NULL)
			return pf_fail_at(c, f->name, QES_ERR_INVALID_ARG, "length without data");
		return put(c, j, f->name, pf_b64_json(b->data, b->len));
	case PF_B64FIX:
		return put(c, j, f->name, pf_b64_json(CAT(obj, f->off, uint8_t), f->max));
	case PF_OBJ:
	case PF_OBJPTR:
		sub = f->kind == PF_OBJ ? CAT(obj, f->off, void) : *CAT(obj, f->off, void *);
		if (sub == NULL)
			return 0;
		if ((o = json_object()) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		if ((r = pf_encode(c, f->sub, sub, o)) != 0) {
			json_decref(o);
			return r;
		}
		return put(c, j, f->name, o);
	case PF_REPORT:
		rep = CAT(obj, f->off, qes_proto_report);
		if (rep->json == NULL)
			return 0;
		/* shared, not copied: the document is only read from here on */
		if (json_object_set(j, f->name, (json_t *)(uintptr_t)rep->json) != 0)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		return 0;
	case PF_ARR_OBJ:
	case PF_ARR_B64:
	case PF_DIGESTS:
		return encode_array(c, f, obj, j);
	case PF_NAMESET:
		u = *CAT(obj, f->off, unsigned);
		if ((a = json_array()) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		for (i = 0; i < f->n_names; i++)
			if ((u & f->names[i].value) &&
			    json_array_append_new(a, json_string(f->names[i].name)) != 0) {
				json_decref(a);
				return pf_fail(c, QES_ERR_ALLOC, "out of memory");
			}
		return put(c, j, f->name, a);
	case PF_FLAGOBJ:
		if ((f->flags & PF_HAS) && !*CAT(obj, f->aux_off, int))
			return 0;
		u = *CAT(obj, f->off, unsigned);
		if ((o = json_object()) == NULL)
			return pf_fail(c, QES_ERR_ALLOC, "out of memory");
		for (i = 0; i < f->n_names; i++)
			if (json_object_set_new(o, f->names[i].name,
			    json_boolean(u & f->names[i].value)) != 0) {
				json_decref(o);
				return pf_fail(c, QES_ERR_ALLOC, "out of memory");
			}
		return put(c, j, f->name, o);
	}
	return pf_fail(c, QES_ERR_INTERNAL, "bad schema");
}

int
pf_encode(struct pf_ctx *c, const struct pf_schema *s, const void *obj, json_t *j)
{
	size_t i;
	int r;

	for (i = 0; i < s->n_fields; i++)
		if ((r = encode_value(c, &s->fields[i], obj, j)) != 0)
			return r;
	return 0;
}

/* ---- comparing ------------------------------------------------------------ */

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
bytes_eq(const qes_proto_bytes *a, const qes_proto_bytes *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int
field_equal(const struct pf_field *f, const void *a, const void *b)
{
	size_t n, i, item;
	const char *what;
	const void *pa, *pb;

	switch (f->kind) {
	case PF_ID:
	case PF_STR:
	case PF_TEXT:
	case PF_ASCII:
	case PF_VERSION:
	case PF_HEX:
	case PF_HOST:
	case PF_CODE:
		return str_eq(*CAT(a, f->off, char *), *CAT(b, f->off, char *));
	case PF_DIGITS:
		return strcmp(CAT(a, f->off, char), CAT(b, f->off, char)) == 0;
	case PF_INT:
		return *CAT(a, f->off, int64_t) == *CAT(b, f->off, int64_t);
	case PF_BOOL:
	case PF_TRIBOOL:
	case PF_ENUM:
		return *CAT(a, f->off, int) == *CAT(b, f->off, int);
	case PF_B64:
		return bytes_eq(CAT(a, f->off, qes_proto_bytes), CAT(b, f->off, qes_proto_bytes));
	case PF_B64FIX:
		return memcmp(CAT(a, f->off, uint8_t), CAT(b, f->off, uint8_t), f->max) == 0;
	case PF_OBJ:
		return pf_equal(f->sub, CAT(a, f->off, void), CAT(b, f->off, void));
	case PF_OBJPTR:
		pa = *CAT(a, f->off, void *);
		pb = *CAT(b, f->off, void *);
		if (pa == NULL || pb == NULL)
			return pa == pb;
		return pf_equal(f->sub, pa, pb);
	case PF_REPORT:
		pa = CAT(a, f->off, qes_proto_report)->json;
		pb = CAT(b, f->off, qes_proto_report)->json;
		if (pa == NULL || pb == NULL)
			return pa == pb;
		return json_equal((json_t *)(uintptr_t)pa, (json_t *)(uintptr_t)pb);
	case PF_ARR_OBJ:
	case PF_ARR_B64:
	case PF_DIGESTS:
		n = *CAT(a, f->aux_off, size_t);
		if (n != *CAT(b, f->aux_off, size_t))
			return 0;
		pa = *CAT(a, f->off, void *);
		pb = *CAT(b, f->off, void *);
		for (i = 0; i < n; i++) {
			if (f->kind == PF_ARR_OBJ &&
			    !pf_equal(f->sub, (const char *)pa + i * f->sub->size,
			    (const char *)pb + i * f->sub->size))
				return 0;
			if (f->kind == PF_ARR_B64 &&
			    !bytes_eq((const qes_proto_bytes *)pa + i, (const qes_proto_bytes *)pb + i))
				return 0;
		}
		if (f->kind == PF_DIGESTS && n > 0) {
			item = f->item_len(a, &what);
			if (item != f->item_len(b, &what) ||
			    memcmp(pa, pb, n * item) != 0)
				return 0;
		}
		return 1;
	case PF_NAMESET:
		return *CAT(a, f->off, unsigned) == *CAT(b, f->off, unsigned);
	case PF_FLAGOBJ:
		if ((f->flags & PF_HAS) &&
		    *CAT(a, f->aux_off, int) != *CAT(b, f->aux_off, int))
			return 0;
		return *CAT(a, f->off, unsigned) == *CAT(b, f->off, unsigned);
	}
	return 0;
}

int
pf_equal(const struct pf_schema *s, const void *a, const void *b)
{
	size_t i;

	for (i = 0; i < s->n_fields; i++)
		if (!field_equal(&s->fields[i], a, b))
			return 0;
	return 1;
}
