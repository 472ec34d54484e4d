/*
 * pdf_lex.c - PDF tokens and objects (ISO 32000-1, 7.2-7.3) read from
 * untrusted bytes through a qes_cursor, and written back.
 *
 * Hand-written rather than taken from a PDF library: the permissive PDF
 * parsers in Debian (qpdf is C++, poppler is GPL, mupdf AGPL) either do not
 * fit libqes's C ABI and licence or parse far more than signing needs. The
 * subset here is small: numbers, strings, names, arrays, dictionaries,
 * references, with every size and the nesting depth limited.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "pdf_priv.h"

int
pdf_set_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static bool
is_ws(uint8_t ch)
{
	return ch == 0 || ch == '\t' || ch == '\n' || ch == '\f' ||
	    ch == '\r' || ch == ' ';
}

static bool
is_delim(uint8_t ch)
{
	return ch == '(' || ch == ')' || ch == '<' || ch == '>' ||
	    ch == '[' || ch == ']' || ch == '{' || ch == '}' || ch == '/' ||
	    ch == '%';
}

static bool
is_regular(uint8_t ch)
{
	return !is_ws(ch) && !is_delim(ch);
}

static int
hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

void
pdf_skip_ws(qes_cursor *c)
{
	uint8_t ch;

	while (qes_cursor_peek_u8(c, &ch) == 0) {
		if (is_ws(ch)) {
			(void)qes_cursor_skip(c, 1);
		} else if (ch == '%') {
			while (qes_cursor_peek_u8(c, &ch) == 0 &&
			    ch != '\n' && ch != '\r')
				(void)qes_cursor_skip(c, 1);
		} else {
			break;
		}
	}
}

bool
pdf_keyword(qes_cursor *c, const char *kw)
{
	size_t n = strlen(kw);
	const uint8_t *p;
	qes_cursor t = *c;
	uint8_t ch;

	if (qes_cursor_get_bytes(&t, n, &p) != 0 || memcmp(p, kw, n) != 0)
		return false;
	if (qes_cursor_peek_u8(&t, &ch) == 0 && is_regular(ch))
		return false;
	*c = t;
	return true;
}

/* An unsigned or signed decimal integer, at most 18 digits. */
int
pdf_parse_int(qes_cursor *c, int64_t *out)
{
	uint8_t ch;
	int64_t v = 0;
	bool neg = false;
	int digits = 0;

	if (qes_cursor_peek_u8(c, &ch) == 0 && (ch == '+' || ch == '-')) {
		neg = ch == '-';
		(void)qes_cursor_skip(c, 1);
	}
	while (qes_cursor_peek_u8(c, &ch) == 0 && ch >= '0' && ch <= '9') {
		if (++digits > 18)
			return QES_ERR_PDF_MALFORMED;
		v = v * 10 + (ch - '0');
		(void)qes_cursor_skip(c, 1);
	}
	if (digits == 0)
		return QES_ERR_PDF_MALFORMED;
	*out = neg ? -v : v;
	return 0;
}

pdf_obj *
pdf_obj_new(pdf_type t)
{
	pdf_obj *o = calloc(1, sizeof(*o));

	if (o != NULL)
		o->type = t;
	return o;
}

void
pdf_obj_free(pdf_obj *o)
{
	size_t i;

	if (o == NULL)
		return;
	switch (o->type) {
	case PDF_STRING:
	case PDF_NAME:
	case PDF_REAL:
		free(o->u.s.p);
		break;
	case PDF_ARRAY:
		for (i = 0; i < o->u.a.n; i++)
			pdf_obj_free(o->u.a.items[i]);
		free(o->u.a.items);
		break;
	case PDF_DICT:
	case PDF_STREAM:
		for (i = 0; i < o->u.d.n; i++) {
			free(o->u.d.kv[i].key);
			pdf_obj_free(o->u.d.kv[i].val);
		}
		free(o->u.d.kv);
		break;
	default:
		break;
	}
	free(o);
}

static pdf_obj *
new_bytes(pdf_type t, const void *p, size_t len)
{
	pdf_obj *o = pdf_obj_new(t);

	if (o == NULL)
		return NULL;
	if ((o->u.s.p = malloc(len + 1)) == NULL) {
		free(o);
		return NULL;
	}
	if (len > 0)
		memcpy(o->u.s.p, p, len);
	o->u.s.p[len] = 0;
	o->u.s.len = len;
	return o;
}

pdf_obj *
pdf_new_string(const void *p, size_t len)
{
	return new_bytes(PDF_STRING, p, len);
}

pdf_obj *
pdf_new_name(const char *name)
{
	return new_bytes(PDF_NAME, name, strlen(name));
}

pdf_obj *
pdf_new_int(int64_t v)
{
	pdf_obj *o = pdf_obj_new(PDF_INT);

	if (o != NULL)
		o->u.i = v;
	return o;
}

pdf_obj *
pdf_new_ref(uint32_t num, uint32_t gen)
{
	pdf_obj *o = pdf_obj_new(PDF_REF);

	if (o != NULL) {
		o->u.r.num = num;
		o->u.r.gen = gen;
	}
	return o;
}

bool
pdf_is_name(const pdf_obj *o, const char *name)
{
	return o != NULL && o->type == PDF_NAME &&
	    strcmp((const char *)o->u.s.p, name) == 0;
}

pdf_obj *
pdf_obj_clone(const pdf_obj *o)
{
	pdf_obj *c;
	size_t i;

	switch (o->type) {
	case PDF_STRING:
	case PDF_NAME:
	case PDF_REAL:
		return new_bytes(o->type, o->u.s.p, o->u.s.len);
	case PDF_ARRAY:
		if ((c = pdf_obj_new(PDF_ARRAY)) == NULL)
			return NULL;
		for (i = 0; i < o->u.a.n; i++) {
			if (pdf_array_push(c, pdf_obj_clone(o->u.a.items[i])) != 0) {
				pdf_obj_free(c);
				return NULL;
			}
		}
		return c;
	case PDF_DICT:
	case PDF_STREAM:
		if ((c = pdf_obj_new(o->type)) == NULL)
			return NULL;
		c->u.d.data_off = o->u.d.data_off;
		c->u.d.data_len = o->u.d.data_len;
		for (i = 0; i < o->u.d.n; i++) {
			if (pdf_dict_set(c, o->u.d.kv[i].key,
			    pdf_obj_clone(o->u.d.kv[i].val)) != 0) {
				pdf_obj_free(c);
				return NULL;
			}
		}
		return c;
	default:
		if ((c = pdf_obj_new(o->type)) != NULL)
			c->u = o->u;
		return c;
	}
}

pdf_obj *
pdf_dict_get(const pdf_obj *dict, const char *key)
{
	size_t i;

	if (dict == NULL || (dict->type != PDF_DICT && dict->type != PDF_STREAM))
		return NULL;
	for (i = 0; i < dict->u.d.n; i++)
		if (strcmp(dict->u.d.kv[i].key, key) == 0)
			return dict->u.d.kv[i].val;
	return NULL;
}

int
pdf_dict_set(pdf_obj *dict, const char *key, pdf_obj *val)
{
	size_t i;
	pdf_kv *kv;

	if (val == NULL)
		return QES_ERR_ALLOC;
	for (i = 0; i < dict->u.d.n; i++) {
		if (strcmp(dict->u.d.kv[i].key, key) == 0) {
			pdf_obj_free(dict->u.d.kv[i].val);
			dict->u.d.kv[i].val = val;
			return 0;
		}
	}
	if (dict->u.d.n == dict->u.d.cap) {
		size_t cap = dict->u.d.cap ? dict->u.d.cap * 2 : 8;

		if ((kv = realloc(dict->u.d.kv, cap * sizeof(*kv))) == NULL) {
			pdf_obj_free(val);
			return QES_ERR_ALLOC;
		}
		dict->u.d.kv = kv;
		dict->u.d.cap = cap;
	}
	if ((dict->u.d.kv[dict->u.d.n].key = strdup(key)) == NULL) {
		pdf_obj_free(val);
		return QES_ERR_ALLOC;
	}
	dict->u.d.kv[dict->u.d.n++].val = val;
	return 0;
}

void
pdf_dict_del(pdf_obj *dict, const char *key)
{
	size_t i;

	for (i = 0; i < dict->u.d.n; i++) {
		if (strcmp(dict->u.d.kv[i].key, key) == 0) {
			free(dict->u.d.kv[i].key);
			pdf_obj_free(dict->u.d.kv[i].val);
			memmove(&dict->u.d.kv[i], &dict->u.d.kv[i + 1],
			    (dict->u.d.n - i - 1) * sizeof(pdf_kv));
			dict->u.d.n--;
			return;
		}
	}
}

int
pdf_array_push(pdf_obj *arr, pdf_obj *val)
{
	pdf_obj **items;

	if (val == NULL)
		return QES_ERR_ALLOC;
	if (arr->u.a.n == arr->u.a.cap) {
		size_t cap = arr->u.a.cap ? arr->u.a.cap * 2 : 8;

		if ((items = realloc(arr->u.a.items, cap * sizeof(*items))) == NULL) {
			pdf_obj_free(val);
			return QES_ERR_ALLOC;
		}
		arr->u.a.items = items;
		arr->u.a.cap = cap;
	}
	arr->u.a.items[arr->u.a.n++] = val;
	return 0;
}

/* ---- parsing ---- */

#define LXERR(lx, code, ...) pdf_set_err((lx)->err, (lx)->errlen, code, __VA_ARGS__)

static int parse_obj(pdf_lexer *lx, uint32_t depth, pdf_obj **out);

static int
put_byte(pdf_lexer *lx, qes_buf *b, uint8_t ch)
{
	if (qes_buf_len(b) >= lx->lim->max_string_bytes)
		return LXERR(lx, QES_ERR_LIMIT,
		    "a PDF string or name is longer than %u bytes",
		    lx->lim->max_string_bytes);
	return qes_buf_put_u8(b, ch);
}

static int
parse_name(pdf_lexer *lx, pdf_obj **out)
{
	qes_buf *b = qes_buf_new();
	uint8_t ch, h1, h2;
	int r;

	if (b == NULL)
		return QES_ERR_ALLOC;
	(void)qes_cursor_skip(&lx->c, 1);	/* '/' */
	while (qes_cursor_peek_u8(&lx->c, &ch) == 0 && is_regular(ch)) {
		(void)qes_cursor_skip(&lx->c, 1);
		if (ch == '#') {
			if (qes_cursor_get_u8(&lx->c, &h1) != 0 ||
			    qes_cursor_get_u8(&lx->c, &h2) != 0 ||
			    hexval(h1) < 0 || hexval(h2) < 0 ||
			    (ch = (uint8_t)(hexval(h1) * 16 + hexval(h2))) == 0) {
				r = LXERR(lx, QES_ERR_PDF_MALFORMED,
				    "bad #xx escape in a name at offset %zu", lx->c.off);
				goto out;
			}
		}
		if ((r = put_byte(lx, b, ch)) != 0)
			goto out;
	}
	r = (*out = new_bytes(PDF_NAME, qes_buf_data(b), qes_buf_len(b))) ?
	    0 : QES_ERR_ALLOC;
 out:
	qes_buf_free(b);
	return r;
}

static int
parse_literal(pdf_lexer *lx, pdf_obj **out)
{
	qes_buf *b = qes_buf_new();
	uint8_t ch, n;
	size_t nest = 1;
	int r, i, v;

	if (b == NULL)
		return QES_ERR_ALLOC;
	(void)qes_cursor_skip(&lx->c, 1);	/* '(' */
	for (;;) {
		if (qes_cursor_get_u8(&lx->c, &ch) != 0) {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED, "unterminated string");
			goto out;
		}
		if (ch == '(') {
			nest++;
		} else if (ch == ')') {
			if (--nest == 0)
				break;
		} else if (ch == '\\') {
			if (qes_cursor_get_u8(&lx->c, &ch) != 0)
				continue;	/* reported at the top */
			switch (ch) {
			case 'n': ch = '\n'; break;
			case 'r': ch = '\r'; break;
			case 't': ch = '\t'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case '\r':
				if (qes_cursor_peek_u8(&lx->c, &n) == 0 && n == '\n')
					(void)qes_cursor_skip(&lx->c, 1);
				continue;
			case '\n':
				continue;
			default:
				if (ch >= '0' && ch <= '7') {
					v = ch - '0';
					for (i = 0; i < 2 &&
					    qes_cursor_peek_u8(&lx->c, &n) == 0 &&
					    n >= '0' && n <= '7'; i++) {
						v = v * 8 + (n - '0');
						(void)qes_cursor_skip(&lx->c, 1);
					}
					ch = (uint8_t)(v & 0xff);
				}
				break;
			}
		}
		if ((r = put_byte(lx, b, ch)) != 0)
			goto out;
	}
	r = (*out = new_bytes(PDF_STRING, qes_buf_data(b), qes_buf_len(b))) ?
	    0 : QES_ERR_ALLOC;
 out:
	qes_buf_free(b);
	return r;
}

static int
parse_hexstr(pdf_lexer *lx, pdf_obj **out)
{
	qes_buf *b = qes_buf_new();
	uint8_t ch;
	int r, hi = -1, v;

	if (b == NULL)
		return QES_ERR_ALLOC;
	(void)qes_cursor_skip(&lx->c, 1);	/* '<' */
	for (;;) {
		if (qes_cursor_get_u8(&lx->c, &ch) != 0) {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED, "unterminated hex string");
			goto out;
		}
		if (ch == '>')
			break;
		if (is_ws(ch))
			continue;
		if ((v = hexval(ch)) < 0) {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED,
			    "bad character in a hex string at offset %zu", lx->c.off);
			goto out;
		}
		if (hi < 0) {
			hi = v;
		} else {
			if ((r = put_byte(lx, b, (uint8_t)(hi * 16 + v))) != 0)
				goto out;
			hi = -1;
		}
	}
	if (hi >= 0 && (r = put_byte(lx, b, (uint8_t)(hi * 16))) != 0)
		goto out;
	r = (*out = new_bytes(PDF_STRING, qes_buf_data(b), qes_buf_len(b))) ?
	    0 : QES_ERR_ALLOC;
 out:
	qes_buf_free(b);
	return r;
}

static int
parse_number(pdf_lexer *lx, pdf_obj **out)
{
	size_t start = lx->c.off, len;
	uint8_t ch;
	bool real = false, digit = false;
	int64_t v, gen;
	qes_cursor t;
	pdf_obj *o;

	while (qes_cursor_peek_u8(&lx->c, &ch) == 0 &&
	    ((ch >= '0' && ch <= '9') || ch == '.' || ch == '+' || ch == '-')) {
		if (ch == '.')
			real = true;
		else if (ch >= '0' && ch <= '9')
			digit = true;
		(void)qes_cursor_skip(&lx->c, 1);
	}
	len = lx->c.off - start;
	if (!digit || len > 64)
		return LXERR(lx, QES_ERR_PDF_MALFORMED,
		    "bad number at offset %zu", start);
	if (real) {
		/* kept as text so it is written back exactly */
		*out = new_bytes(PDF_REAL, lx->c.data + start, len);
		return *out ? 0 : QES_ERR_ALLOC;
	}
	t = lx->c;
	t.off = start;
	if (pdf_parse_int(&t, &v) != 0 || t.off != lx->c.off)
		return LXERR(lx, QES_ERR_PDF_MALFORMED,
		    "bad integer at offset %zu", start);
	/* "N G R" is a reference */
	t = lx->c;
	pdf_skip_ws(&t);
	if (v >= 0 && v <= UINT32_MAX && qes_cursor_peek_u8(&t, &ch) == 0 &&
	    ch >= '0' && ch <= '9' && pdf_parse_int(&t, &gen) == 0 &&
	    gen >= 0 && gen <= 65535) {
		pdf_skip_ws(&t);
		if (pdf_keyword(&t, "R")) {
			lx->c = t;
			*out = pdf_new_ref((uint32_t)v, (uint32_t)gen);
			return *out ? 0 : QES_ERR_ALLOC;
		}
	}
	if ((o = pdf_new_int(v)) == NULL)
		return QES_ERR_ALLOC;
	*out = o;
	return 0;
}

static int
parse_array(pdf_lexer *lx, uint32_t depth, pdf_obj **out)
{
	pdf_obj *a = pdf_obj_new(PDF_ARRAY), *item;
	uint8_t ch;
	int r;

	if (a == NULL)
		return QES_ERR_ALLOC;
	(void)qes_cursor_skip(&lx->c, 1);	/* '[' */
	for (;;) {
		pdf_skip_ws(&lx->c);
		if (qes_cursor_peek_u8(&lx->c, &ch) != 0) {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED, "unterminated array");
			goto fail;
		}
		if (ch == ']') {
			(void)qes_cursor_skip(&lx->c, 1);
			break;
		}
		if (a->u.a.n >= lx->lim->max_array_items) {
			r = LXERR(lx, QES_ERR_LIMIT, "an array has more than %u items",
			    lx->lim->max_array_items);
			goto fail;
		}
		if ((r = parse_obj(lx, depth + 1, &item)) != 0)
			goto fail;
		if ((r = pdf_array_push(a, item)) != 0)
			goto fail;
	}
	*out = a;
	return 0;
 fail:
	pdf_obj_free(a);
	return r;
}

static int
parse_dict(pdf_lexer *lx, uint32_t depth, pdf_obj **out)
{
	pdf_obj *d = pdf_obj_new(PDF_DICT), *key = NULL, *val;
	uint8_t ch;
	int r;

	if (d == NULL)
		return QES_ERR_ALLOC;
	(void)qes_cursor_skip(&lx->c, 2);	/* "<<" */
	for (;;) {
		pdf_skip_ws(&lx->c);
		if (qes_cursor_peek_u8(&lx->c, &ch) != 0) {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED, "unterminated dictionary");
			goto fail;
		}
		if (ch == '>') {
			const uint8_t *end;

			if (qes_cursor_get_bytes(&lx->c, 2, &end) != 0 ||
			    end[1] != '>') {
				r = LXERR(lx, QES_ERR_PDF_MALFORMED,
				    "bad dictionary end at offset %zu", lx->c.off);
				goto fail;
			}
			break;
		}
		if (ch != '/') {
			r = LXERR(lx, QES_ERR_PDF_MALFORMED,
			    "dictionary key is not a name at offset %zu", lx->c.off);
			goto fail;
		}
		if (d->u.d.n >= lx->lim->max_dict_entries) {
			r = LXERR(lx, QES_ERR_LIMIT,
			    "a dictionary has more than %u entries",
			    lx->lim->max_dict_entries);
			goto fail;
		}
		if ((r = parse_name(lx, &key)) != 0)
			goto fail;
		pdf_skip_ws(&lx->c);
		if ((r = parse_obj(lx, depth + 1, &val)) != 0)
			goto fail;
		/* a null value is the same as a missing entry (7.3.7) */
		if (val->type == PDF_NULL)
			pdf_obj_free(val);
		else if ((r = pdf_dict_set(d, (const char *)key->u.s.p, val)) != 0)
			goto fail;
		pdf_obj_free(key);
		key = NULL;
	}
	*out = d;
	return 0;
 fail:
	pdf_obj_free(key);
	pdf_obj_free(d);
	return r;
}

static int
parse_obj(pdf_lexer *lx, uint32_t depth, pdf_obj **out)
{
	uint8_t ch;
	pdf_obj *o;
	bool t;

	*out = NULL;
	if (depth > lx->lim->max_depth)
		return LXERR(lx, QES_ERR_LIMIT,
		    "objects are nested deeper than %u", lx->lim->max_depth);
	pdf_skip_ws(&lx->c);
	if (qes_cursor_peek_u8(&lx->c, &ch) != 0)
		return LXERR(lx, QES_ERR_PDF_MALFORMED, "object expected, end of data");
	switch (ch) {
	case '/':
		return parse_name(lx, out);
	case '(':
		return parse_literal(lx, out);
	case '[':
		return parse_array(lx, depth, out);
	case '<':
		if (qes_cursor_remaining(&lx->c) >= 2 &&
		    lx->c.data[lx->c.off + 1] == '<')
			return parse_dict(lx, depth, out);
		return parse_hexstr(lx, out);
	default:
		break;
	}
	if ((ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.')
		return parse_number(lx, out);
	if ((t = pdf_keyword(&lx->c, "true")) || pdf_keyword(&lx->c, "false")) {
		if ((o = pdf_obj_new(PDF_BOOL)) == NULL)
			return QES_ERR_ALLOC;
		o->u.b = t;
		*out = o;
		return 0;
	}
	if (pdf_keyword(&lx->c, "null"))
		return (*out = pdf_obj_new(PDF_NULL)) ? 0 : QES_ERR_ALLOC;
	return LXERR(lx, QES_ERR_PDF_MALFORMED,
	    "unexpected byte 0x%02x at offset %zu", ch, lx->c.off);
}

int
pdf_parse_obj(pdf_lexer *lx, pdf_obj **out)
{
	return parse_obj(lx, 0, out);
}

int
pdf_parse_obj_header(pdf_lexer *lx, uint32_t *num, uint32_t *gen)
{
	int64_t n, g;

	pdf_skip_ws(&lx->c);
	if (pdf_parse_int(&lx->c, &n) != 0 || n < 0 || n > UINT32_MAX)
		goto bad;
	pdf_skip_ws(&lx->c);
	if (pdf_parse_int(&lx->c, &g) != 0 || g < 0 || g > 65535)
		goto bad;
	pdf_skip_ws(&lx->c);
	if (!pdf_keyword(&lx->c, "obj"))
		goto bad;
	*num = (uint32_t)n;
	*gen = (uint32_t)g;
	return 0;
 bad:
	return LXERR(lx, QES_ERR_PDF_MALFORMED,
	    "no \"N G obj\" at offset %zu", lx->c.off);
}

/* ---- writing ---- */

static int
write_name(qes_buf *b, const uint8_t *p, size_t len)
{
	size_t i;
	int r = qes_buf_put_u8(b, '/');

	for (i = 0; r == 0 && i < len; i++) {
		if (p[i] > 0x20 && p[i] < 0x7f && p[i] != '#' && !is_delim(p[i]))
			r = qes_buf_put_u8(b, p[i]);
		else
			r = qes_buf_putf(b, "#%02X", p[i]);
	}
	return r;
}

static int
write_obj(qes_buf *b, const pdf_obj *o, uint32_t depth)
{
	size_t i;
	int r = 0;

	if (depth > 256)
		return QES_ERR_LIMIT;
	switch (o->type) {
	case PDF_NULL:
		return qes_buf_put_str(b, "null");
	case PDF_BOOL:
		return qes_buf_put_str(b, o->u.b ? "true" : "false");
	case PDF_INT:
		return qes_buf_putf(b, "%lld", (long long)o->u.i);
	case PDF_REAL:
		return qes_buf_put(b, o->u.s.p, o->u.s.len);
	case PDF_STRING:
		if ((r = qes_buf_put_u8(b, '<')) != 0 ||
		    (r = qes_buf_put_hex(b, o->u.s.p, o->u.s.len)) != 0)
			return r;
		return qes_buf_put_u8(b, '>');
	case PDF_NAME:
		return write_name(b, o->u.s.p, o->u.s.len);
	case PDF_REF:
		return qes_buf_putf(b, "%u %u R", o->u.r.num, o->u.r.gen);
	case PDF_ARRAY:
		r = qes_buf_put_u8(b, '[');
		for (i = 0; r == 0 && i < o->u.a.n; i++) {
			if (i > 0)
				r = qes_buf_put_u8(b, ' ');
			if (r == 0)
				r = write_obj(b, o->u.a.items[i], depth + 1);
		}
		return r ? r : qes_buf_put_u8(b, ']');
	case PDF_DICT:
	case PDF_STREAM:
		r = qes_buf_put_str(b, "<<");
		for (i = 0; r == 0 && i < o->u.d.n; i++) {
			const char *k = o->u.d.kv[i].key;

			if ((r = write_name(b, (const uint8_t *)k, strlen(k))) == 0 &&
			    (r = qes_buf_put_u8(b, ' ')) == 0)
				r = write_obj(b, o->u.d.kv[i].val, depth + 1);
		}
		return r ? r : qes_buf_put_str(b, ">>");
	}
	return QES_ERR_INTERNAL;
}

int
pdf_obj_write(qes_buf *b, const pdf_obj *o)
{
	return write_obj(b, o, 0);
}
