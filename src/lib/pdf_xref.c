/*
 * pdf_xref.c - cross-reference sections and indirect objects of an
 * untrusted PDF (ISO 32000-1, 7.5): classic tables, cross-reference streams
 * (/W, /Index, FlateDecode with PNG predictors), hybrid files (/XRefStm),
 * the /Prev chain of incremental updates (loops and length limited), and
 * objects inside object streams. Objects are parsed on demand from the
 * read-only mapping; only decoded xref and object streams are copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "qes/err.h"
#include "pdf_priv.h"

/* How far from the end "startxref" may be (the spec allows 1024 bytes). */
#define STARTXREF_WINDOW 2048
/* Indirection depth (a /Length pointing at an object pointing at ...). */
#define MAX_RESOLVE_DEPTH 16

int
pdf_err(qes_pdf *pdf, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pdf->err, sizeof(pdf->err), fmt, ap);
	va_end(ap);
	return code;
}

static void
lexer_at(qes_pdf *pdf, pdf_lexer *lx, const uint8_t *data, size_t len)
{
	qes_cursor_init(&lx->c, data, len);
	lx->lim = &pdf->lim;
	lx->err = pdf->err;
	lx->errlen = sizeof(pdf->err);
}

static int
find_startxref(qes_pdf *pdf, uint64_t *off)
{
	size_t from = pdf->size > STARTXREF_WINDOW ? pdf->size - STARTXREF_WINDOW : 0;
	size_t i, kw = 9;	/* strlen("startxref") */
	qes_cursor c;
	int64_t v;

	for (i = pdf->size; i >= from + kw; i--) {
		if (memcmp(pdf->map + i - kw, "startxref", kw) != 0)
			continue;
		qes_cursor_init(&c, pdf->map, pdf->size);
		(void)qes_cursor_skip(&c, i);
		pdf_skip_ws(&c);
		if (pdf_parse_int(&c, &v) != 0 || v < 0 || (uint64_t)v >= pdf->size)
			return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "startxref does not point into the file");
		*off = (uint64_t)v;
		return 0;
	}
	return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
	    "no startxref in the last %d bytes", STARTXREF_WINDOW);
}

static int
xref_grow(qes_pdf *pdf, uint64_t n)
{
	pdf_xent *x;

	if (n <= pdf->nxref)
		return 0;
	if (n > pdf->lim.max_objects)
		return pdf_err(pdf, QES_ERR_LIMIT,
		    "the file claims %llu objects, more than the limit %u",
		    (unsigned long long)n, pdf->lim.max_objects);
	if ((x = realloc(pdf->xref, (size_t)n * sizeof(*x))) == NULL)
		return QES_ERR_ALLOC;
	memset(x + pdf->nxref, 0, (size_t)(n - pdf->nxref) * sizeof(*x));
	pdf->xref = x;
	pdf->nxref = (uint32_t)n;
	return 0;
}

/* Newer sections come first in the chain: the first entry seen wins. */
static int
xref_set(qes_pdf *pdf, uint64_t num, uint8_t type, uint64_t f2, uint64_t f3)
{
	pdf_xent *e;
	int r;

	if ((r = xref_grow(pdf, num + 1)) != 0)
		return r;
	e = &pdf->xref[num];
	if (e->set)
		return 0;
	e->set = 1;
	e->type = type;
	if (type == 1) {
		if (f2 >= pdf->size)
			e->type = 0;	/* points outside: treat as missing */
		e->off = f2;
		e->gen = (uint16_t)(f3 > 65535 ? 65535 : f3);
	} else if (type == 2) {
		e->off = f2;
		e->idx = (uint32_t)(f3 > UINT32_MAX ? UINT32_MAX : f3);
	}
	return 0;
}

static int
check_encrypt(qes_pdf *pdf, const pdf_obj *trailer)
{
	if (pdf_dict_get(trailer, "Encrypt") != NULL)
		return pdf_err(pdf, QES_ERR_PDF_ENCRYPTED,
		    "the PDF is encrypted (/Encrypt in its trailer)");
	return 0;
}

/*
 * "xref" already consumed: subsections, then "trailer" and a dictionary.
 * With apply false the entries are only checked (to reach the trailer).
 */
static int
read_xref_table(qes_pdf *pdf, pdf_lexer *lx, bool apply, pdf_obj **trailer)
{
	int64_t start, count, f2, f3, i;
	uint8_t kind;
	int r;

	for (;;) {
		pdf_skip_ws(&lx->c);
		if (pdf_keyword(&lx->c, "trailer"))
			break;
		if (pdf_parse_int(&lx->c, &start) != 0 || start < 0)
			return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "bad xref subsection header at offset %zu", lx->c.off);
		pdf_skip_ws(&lx->c);
		if (pdf_parse_int(&lx->c, &count) != 0 || count < 0)
			return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "bad xref subsection count at offset %zu", lx->c.off);
		if ((uint64_t)start + (uint64_t)count > pdf->lim.max_objects)
			return pdf_err(pdf, QES_ERR_LIMIT,
			    "xref subsection %lld+%lld is past the object limit %u",
			    (long long)start, (long long)count, pdf->lim.max_objects);
		/* each entry takes 20 bytes: refuse counts the file cannot hold */
		if ((uint64_t)count > qes_cursor_remaining(&lx->c) / 18)
			return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "xref subsection count %lld runs past the end of the file",
			    (long long)count);
		for (i = 0; i < count; i++) {
			pdf_skip_ws(&lx->c);
			if (pdf_parse_int(&lx->c, &f2) != 0 || f2 < 0)
				goto bad_entry;
			pdf_skip_ws(&lx->c);
			if (pdf_parse_int(&lx->c, &f3) != 0 || f3 < 0)
				goto bad_entry;
			pdf_skip_ws(&lx->c);
			if (qes_cursor_get_u8(&lx->c, &kind) != 0 ||
			    (kind != 'n' && kind != 'f'))
				goto bad_entry;
			if (apply && (r = xref_set(pdf, (uint64_t)(start + i),
			    kind == 'n' ? 1 : 0, (uint64_t)f2, (uint64_t)f3)) != 0)
				return r;
		}
	}
	pdf_skip_ws(&lx->c);
	if ((r = pdf_parse_obj(lx, trailer)) != 0)
		return r;
	if ((*trailer)->type != PDF_DICT) {
		pdf_obj_free(*trailer);
		*trailer = NULL;
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "the trailer is not a dictionary");
	}
	return 0;
 bad_entry:
	return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
	    "bad xref entry at offset %zu", lx->c.off);
}

static int
int_value(const pdf_obj *o, int64_t *out)
{
	if (o == NULL || o->type != PDF_INT)
		return QES_ERR_PDF_MALFORMED;
	*out = o->u.i;
	return 0;
}

/*
 * The indirect object at offset off of the file: its dictionary and, for a
 * stream, where the data lies (a /Length that is a reference is resolved).
 */
static int
parse_indirect_at(qes_pdf *pdf, uint64_t off, uint32_t *num, uint32_t *gen,
    pdf_obj **out)
{
	pdf_lexer lx;
	pdf_obj *o = NULL, *len_obj = NULL;
	const pdf_obj *lo;
	int64_t len;
	uint8_t ch;
	int r;

	*out = NULL;
	lexer_at(pdf, &lx, pdf->map, pdf->size);
	if (off >= pdf->size || qes_cursor_skip(&lx.c, (size_t)off) != 0)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "object offset %llu is past the end of the file",
		    (unsigned long long)off);
	if ((r = pdf_parse_obj_header(&lx, num, gen)) != 0)
		return r;
	if ((r = pdf_parse_obj(&lx, &o)) != 0)
		return r;
	pdf_skip_ws(&lx.c);
	if (o->type != PDF_DICT || !pdf_keyword(&lx.c, "stream")) {
		*out = o;
		return 0;
	}
	/* "stream" then CRLF or LF (a lone CR is tolerated) */
	if (qes_cursor_peek_u8(&lx.c, &ch) == 0 && ch == '\r')
		(void)qes_cursor_skip(&lx.c, 1);
	if (qes_cursor_peek_u8(&lx.c, &ch) == 0 && ch == '\n')
		(void)qes_cursor_skip(&lx.c, 1);
	lo = pdf_dict_get(o, "Length");
	if (lo != NULL && lo->type == PDF_REF) {
		if ((r = pdf_resolve(pdf, lo, &len_obj)) != 0)
			goto fail;
		lo = len_obj;
	}
	if (int_value(lo, &len) != 0 || len < 0) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "stream object %u has no valid /Length", *num);
		goto fail;
	}
	if ((uint64_t)len > qes_cursor_remaining(&lx.c)) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "stream object %u runs past the end of the file", *num);
		goto fail;
	}
	o->type = PDF_STREAM;
	o->u.d.data_off = lx.c.off;
	o->u.d.data_len = (uint64_t)len;
	pdf_obj_free(len_obj);
	*out = o;
	return 0;
 fail:
	pdf_obj_free(len_obj);
	pdf_obj_free(o);
	return r;
}

/* Inflate with a ceiling on the output size. */
static int
inflate_bounded(qes_pdf *pdf, const uint8_t *in, size_t inlen, uint8_t **out,
    size_t *outlen)
{
	z_stream z;
	uint8_t *buf = NULL, *nb;
	size_t cap = inlen < 4096 ? 16384 : inlen * 4, max = pdf->lim.max_stream_bytes;
	int zr, r;

	if (cap > max)
		cap = max;
	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK)
		return QES_ERR_ALLOC;
	if ((buf = malloc(cap + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)(inlen > UINT32_MAX ? UINT32_MAX : inlen);
	for (;;) {
		z.next_out = buf + z.total_out;
		z.avail_out = (uInt)(cap - z.total_out);
		zr = inflate(&z, Z_NO_FLUSH);
		if (zr == Z_STREAM_END)
			break;
		if (zr == Z_BUF_ERROR && z.avail_in == 0)
			break;	/* truncated stream: keep what decoded */
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "a FlateDecode stream does not inflate");
			goto out;
		}
		if (z.avail_out == 0) {
			if (cap >= max) {
				r = pdf_err(pdf, QES_ERR_LIMIT,
				    "a decoded stream is larger than %zu bytes", max);
				goto out;
			}
			cap = cap * 2 > max ? max : cap * 2;
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				r = QES_ERR_ALLOC;
				goto out;
			}
			buf = nb;
		}
	}
	*outlen = z.total_out;
	*out = buf;
	buf = NULL;
	r = 0;
 out:
	inflateEnd(&z);
	free(buf);
	return r;
}

static uint8_t
paeth(uint8_t a, uint8_t b, uint8_t c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);

	if (pa <= pb && pa <= pc)
		return a;
	return pb <= pc ? b : c;
}

/* Undo PNG predictors (Predictor >= 10) in place: rows of 1+rowlen bytes. */
static int
png_unpredict(qes_pdf *pdf, uint8_t *data, size_t len, size_t rowlen,
    size_t bpp, size_t *outlen)
{
	size_t rows, r, i, in = 0, outp = 0;
	uint8_t *prev = NULL, *row, a, b, c, t;

	if (rowlen == 0 || len % (rowlen + 1) != 0)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "PNG-predicted data is not a whole number of rows");
	rows = len / (rowlen + 1);
	for (r = 0; r < rows; r++) {
		t = data[in];
		/* rows shift left by one byte per row: the filter byte goes */
		memmove(data + outp, data + in + 1, rowlen);
		row = data + outp;
		for (i = 0; i < rowlen; i++) {
			a = i >= bpp ? row[i - bpp] : 0;
			b = prev ? prev[i] : 0;
			c = (prev && i >= bpp) ? prev[i - bpp] : 0;
			switch (t) {
			case 0: break;
			case 1: row[i] = (uint8_t)(row[i] + a); break;
			case 2: row[i] = (uint8_t)(row[i] + b); break;
			case 3: row[i] = (uint8_t)(row[i] + ((a + b) / 2)); break;
			case 4: row[i] = (uint8_t)(row[i] + paeth(a, b, c)); break;
			default:
				return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
				    "unknown PNG filter type %u", t);
			}
		}
		prev = row;
		in += rowlen + 1;
		outp += rowlen;
	}
	*outlen = outp;
	return 0;
}

int
pdf_stream_decode(qes_pdf *pdf, const uint8_t *base, size_t base_len,
    const pdf_obj *stm, uint8_t **out, size_t *outlen)
{
	const pdf_obj *filter = pdf_dict_get(stm, "Filter");
	const pdf_obj *parms = pdf_dict_get(stm, "DecodeParms");
	int64_t pred = 1, cols = 1, colors = 1, bpc = 8;
	uint8_t *data = NULL;
	size_t len = 0, rowlen;
	int r;

	if (stm->u.d.data_off > base_len ||
	    stm->u.d.data_len > base_len - stm->u.d.data_off)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "stream data out of bounds");
	if (filter != NULL && filter->type == PDF_ARRAY) {
		if (filter->u.a.n > 1)
			return pdf_err(pdf, QES_ERR_UNSUPPORTED,
			    "cross-reference or object stream with a filter chain");
		filter = filter->u.a.n ? filter->u.a.items[0] : NULL;
	}
	if (parms != NULL && parms->type == PDF_ARRAY)
		parms = parms->u.a.n ? parms->u.a.items[0] : NULL;
	if (filter == NULL) {
		if (stm->u.d.data_len > pdf->lim.max_stream_bytes)
			return pdf_err(pdf, QES_ERR_LIMIT,
			    "a stream is larger than %u bytes", pdf->lim.max_stream_bytes);
		len = (size_t)stm->u.d.data_len;
		if ((data = malloc(len + 1)) == NULL)
			return QES_ERR_ALLOC;
		memcpy(data, base + stm->u.d.data_off, len);
	} else if (pdf_is_name(filter, "FlateDecode")) {
		if ((r = inflate_bounded(pdf, base + stm->u.d.data_off,
		    (size_t)stm->u.d.data_len, &data, &len)) != 0)
			return r;
	} else {
		return pdf_err(pdf, QES_ERR_UNSUPPORTED,
		    "cross-reference or object stream with an unsupported filter");
	}
	if (parms != NULL && parms->type == PDF_DICT) {
		(void)int_value(pdf_dict_get(parms, "Predictor"), &pred);
		(void)int_value(pdf_dict_get(parms, "Columns"), &cols);
		(void)int_value(pdf_dict_get(parms, "Colors"), &colors);
		(void)int_value(pdf_dict_get(parms, "BitsPerComponent"), &bpc);
	}
	if (pred >= 10) {
		if (cols < 1 || cols > 65536 || colors < 1 || colors > 32 ||
		    (bpc != 1 && bpc != 2 && bpc != 4 && bpc != 8 && bpc != 16)) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad /DecodeParms");
			goto fail;
		}
		rowlen = (size_t)((cols * colors * bpc + 7) / 8);
		if ((r = png_unpredict(pdf, data, len, rowlen,
		    (size_t)(colors * bpc >= 8 ? colors * bpc / 8 : 1), &len)) != 0)
			goto fail;
	} else if (pred != 1) {
		r = pdf_err(pdf, QES_ERR_UNSUPPORTED, "unsupported predictor %lld",
		    (long long)pred);
		goto fail;
	}
	*out = data;
	*outlen = len;
	return 0;
 fail:
	free(data);
	return r;
}

static uint64_t
be_field(const uint8_t *p, int64_t w)
{
	uint64_t v = 0;
	int64_t i;

	for (i = 0; i < w; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Entries of a cross-reference stream (its dictionary is stm). */
static int
read_xref_stream(qes_pdf *pdf, const pdf_obj *stm)
{
	const pdf_obj *wa = pdf_dict_get(stm, "W"), *idx = pdf_dict_get(stm, "Index");
	int64_t w[3], size, start, count, k;
	uint8_t *data = NULL;
	size_t len, pos = 0, i, esz;
	uint64_t f1;
	int r;

	if (!pdf_is_name(pdf_dict_get(stm, "Type"), "XRef"))
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "startxref points at neither \"xref\" nor an /XRef stream");
	if (int_value(pdf_dict_get(stm, "Size"), &size) != 0 || size < 0)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "xref stream without /Size");
	if (wa == NULL || wa->type != PDF_ARRAY || wa->u.a.n != 3)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "xref stream without /W [a b c]");
	for (i = 0; i < 3; i++)
		if (int_value(wa->u.a.items[i], &w[i]) != 0 || w[i] < 0 || w[i] > 8)
			return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad /W in an xref stream");
	esz = (size_t)(w[0] + w[1] + w[2]);
	if (esz == 0)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad /W in an xref stream");
	if (idx != NULL && (idx->type != PDF_ARRAY || idx->u.a.n % 2 != 0))
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad /Index in an xref stream");
	if ((r = xref_grow(pdf, (uint64_t)size)) != 0)
		return r;
	if ((r = pdf_stream_decode(pdf, pdf->map, pdf->size, stm, &data, &len)) != 0)
		return r;
	for (i = 0; i < (idx ? idx->u.a.n : 2); i += 2) {
		if (idx == NULL) {
			start = 0;
			count = size;
		} else if (int_value(idx->u.a.items[i], &start) != 0 ||
		    int_value(idx->u.a.items[i + 1], &count) != 0 ||
		    start < 0 || count < 0) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad /Index in an xref stream");
			goto out;
		}
		if ((uint64_t)start + (uint64_t)count > pdf->lim.max_objects) {
			r = pdf_err(pdf, QES_ERR_LIMIT,
			    "xref stream /Index is past the object limit %u",
			    pdf->lim.max_objects);
			goto out;
		}
		if ((uint64_t)count > (len - pos) / esz) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "xref stream data is shorter than its /Index says");
			goto out;
		}
		for (k = 0; k < count; k++, pos += esz) {
			f1 = w[0] ? be_field(data + pos, w[0]) : 1;
			if (f1 > 2)
				continue;	/* unknown type: a null reference */
			if ((r = xref_set(pdf, (uint64_t)(start + k), (uint8_t)f1,
			    be_field(data + pos + w[0], w[1]),
			    be_field(data + pos + w[0] + w[1], w[2]))) != 0)
				goto out;
		}
	}
	r = 0;
 out:
	free(data);
	return r;
}

int
pdf_xref_load(qes_pdf *pdf)
{
	uint64_t *seen = NULL, off = 0;
	uint32_t nseen = 0, num, gen, i;
	pdf_obj *trailer = NULL, *stm = NULL;
	const pdf_obj *o;
	pdf_lexer lx;
	qes_cursor table;
	int64_t v;
	int r;

	if ((r = find_startxref(pdf, &off)) != 0)
		return r;
	pdf->startxref = off;
	if ((seen = calloc(pdf->lim.max_xref_sections, sizeof(*seen))) == NULL)
		return QES_ERR_ALLOC;
	for (;;) {
		for (i = 0; i < nseen; i++)
			if (seen[i] == off) {
				r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
				    "the /Prev chain loops (offset %llu twice)",
				    (unsigned long long)off);
				goto out;
			}
		if (nseen == pdf->lim.max_xref_sections) {
			r = pdf_err(pdf, QES_ERR_LIMIT,
			    "more than %u cross-reference sections",
			    pdf->lim.max_xref_sections);
			goto out;
		}
		seen[nseen++] = off;
		lexer_at(pdf, &lx, pdf->map, pdf->size);
		(void)qes_cursor_skip(&lx.c, (size_t)off);
		pdf_skip_ws(&lx.c);
		if (pdf_keyword(&lx.c, "xref")) {
			/*
			 * A hybrid file's table lists compressed objects as
			 * free and /XRefStm has them (7.5.8.4): the stream's
			 * entries are taken first, then the table's, so a free
			 * table entry does not hide the compressed object.
			 */
			table = lx.c;
			if ((r = read_xref_table(pdf, &lx, false, &trailer)) != 0)
				goto out;
			if ((r = check_encrypt(pdf, trailer)) != 0)
				goto out;
			/* hybrid file: the stream holds the compressed objects */
			if (int_value(pdf_dict_get(trailer, "XRefStm"), &v) == 0) {
				if (v < 0 || (r = parse_indirect_at(pdf, (uint64_t)v,
				    &num, &gen, &stm)) != 0) {
					r = r ? r : pdf_err(pdf, QES_ERR_PDF_MALFORMED,
					    "bad /XRefStm");
					goto out;
				}
				if (stm->type != PDF_STREAM) {
					r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
					    "/XRefStm is not a stream");
					goto out;
				}
				if ((r = read_xref_stream(pdf, stm)) != 0)
					goto out;
				pdf_obj_free(stm);
				stm = NULL;
			}
			lx.c = table;
			if ((r = read_xref_table(pdf, &lx, true, &stm)) != 0)
				goto out;
			pdf_obj_free(stm);	/* the same trailer again */
			stm = NULL;
			if (nseen == 1)
				pdf->xref_stream = false;
		} else {
			if ((r = parse_indirect_at(pdf, off, &num, &gen, &trailer)) != 0)
				goto out;
			if (trailer->type != PDF_STREAM) {
				r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
				    "startxref points at neither \"xref\" nor a stream");
				goto out;
			}
			if ((r = check_encrypt(pdf, trailer)) != 0 ||
			    (r = read_xref_stream(pdf, trailer)) != 0)
				goto out;
			if (nseen == 1)
				pdf->xref_stream = true;
		}
		if (nseen == 1) {
			pdf->trailer = trailer;
			trailer = NULL;
			o = pdf->trailer;
		} else {
			o = trailer;
		}
		if (int_value(pdf_dict_get(o, "Prev"), &v) != 0) {
			r = 0;
			break;
		}
		if (v < 0 || (uint64_t)v >= pdf->size) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "/Prev points outside the file");
			goto out;
		}
		off = (uint64_t)v;
		pdf_obj_free(trailer);
		trailer = NULL;
	}
 out:
	pdf_obj_free(trailer);
	pdf_obj_free(stm);
	free(seen);
	return r;
}

static int
load_objstm(qes_pdf *pdf, uint32_t snum)
{
	pdf_obj *stm = NULL;
	int64_t n, first;
	uint8_t *data = NULL;
	size_t len;
	int r;

	if (pdf->ostm.data != NULL && pdf->ostm.num == snum)
		return 0;
	if (snum >= pdf->nxref || pdf->xref[snum].type != 1)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "object stream %u is not in the file", snum);
	if ((r = pdf_load(pdf, snum, &stm)) != 0)
		return r;
	if (stm->type != PDF_STREAM || !pdf_is_name(pdf_dict_get(stm, "Type"), "ObjStm") ||
	    int_value(pdf_dict_get(stm, "N"), &n) != 0 ||
	    int_value(pdf_dict_get(stm, "First"), &first) != 0 ||
	    n < 0 || first < 0) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "object %u is not an object stream",
		    snum);
		goto out;
	}
	if ((uint64_t)n > pdf->lim.max_objects) {
		r = pdf_err(pdf, QES_ERR_LIMIT, "object stream %u holds too many objects",
		    snum);
		goto out;
	}
	if ((r = pdf_stream_decode(pdf, pdf->map, pdf->size, stm, &data, &len)) != 0)
		goto out;
	if ((uint64_t)first > len) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "object stream /First out of range");
		goto out;
	}
	free(pdf->ostm.data);
	pdf->ostm.data = data;
	pdf->ostm.len = len;
	pdf->ostm.num = snum;
	pdf->ostm.first = (size_t)first;
	pdf->ostm.n = (uint32_t)n;
	data = NULL;
 out:
	free(data);
	pdf_obj_free(stm);
	return r;
}

static int
load_from_objstm(qes_pdf *pdf, uint32_t num, const pdf_xent *e, pdf_obj **out)
{
	pdf_lexer lx;
	int64_t onum = -1, ooff = -1;
	uint32_t i;
	int r;

	if (e->off > UINT32_MAX)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "bad object stream number");
	if ((r = load_objstm(pdf, (uint32_t)e->off)) != 0)
		return r;
	if (e->idx >= pdf->ostm.n)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
		    "object %u: index past its object stream", num);
	lexer_at(pdf, &lx, pdf->ostm.data, pdf->ostm.first);
	for (i = 0; i <= e->idx; i++) {
		pdf_skip_ws(&lx.c);
		if (pdf_parse_int(&lx.c, &onum) != 0)
			goto bad;
		pdf_skip_ws(&lx.c);
		if (pdf_parse_int(&lx.c, &ooff) != 0)
			goto bad;
	}
	if (onum != (int64_t)num || ooff < 0 ||
	    (uint64_t)ooff > pdf->ostm.len - pdf->ostm.first)
		goto bad;
	lexer_at(pdf, &lx, pdf->ostm.data, pdf->ostm.len);
	(void)qes_cursor_skip(&lx.c, pdf->ostm.first + (size_t)ooff);
	return pdf_parse_obj(&lx, out);
 bad:
	return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
	    "object %u: bad object stream header", num);
}

int
pdf_load(qes_pdf *pdf, uint32_t num, pdf_obj **out)
{
	const pdf_xent *e;
	uint32_t n, g;
	int r;

	*out = NULL;
	if (num >= pdf->nxref || pdf->xref[num].type == 0) {
		/* a reference to a missing object is the null object (7.3.10) */
		*out = pdf_obj_new(PDF_NULL);
		return *out ? 0 : QES_ERR_ALLOC;
	}
	if (pdf->resolve_depth >= MAX_RESOLVE_DEPTH)
		return pdf_err(pdf, QES_ERR_LIMIT,
		    "indirect objects nested deeper than %d", MAX_RESOLVE_DEPTH);
	pdf->resolve_depth++;
	e = &pdf->xref[num];
	if (e->type == 2) {
		r = load_from_objstm(pdf, num, e, out);
	} else {
		r = parse_indirect_at(pdf, e->off, &n, &g, out);
		if (r == 0 && n != num) {
			pdf_obj_free(*out);
			*out = NULL;
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "xref entry for object %u points at object %u", num, n);
		}
	}
	pdf->resolve_depth--;
	return r;
}

int
pdf_resolve(qes_pdf *pdf, const pdf_obj *o, pdf_obj **out)
{
	if (o == NULL) {
		*out = pdf_obj_new(PDF_NULL);
		return *out ? 0 : QES_ERR_ALLOC;
	}
	if (o->type == PDF_REF)
		return pdf_load(pdf, o->u.r.num, out);
	*out = pdf_obj_clone(o);
	return *out ? 0 : QES_ERR_ALLOC;
}
