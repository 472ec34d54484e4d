/*
 * verify_pdf.c - qes verify's reading of PAdES: the signature fields of a
 * PDF (through the bounds-checked reader of pdf*.c), their byte ranges
 * checked and hashed from the read-only mapping, the CMS inside each read
 * by verify_cms.c, the document security store counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "pdf_priv.h"
#include "qes/err.h"
#include "qes/tsp.h"
#include "verify_priv.h"

/* fields visited in the AcroForm tree, and its depth */
#define MAX_FIELDS 4096
#define MAX_FIELD_DEPTH 16

typedef struct walk {
	qes_pdf *pdf;
	qes_verify_report *arr;
	size_t n;
	size_t visited;
	char *err;
	size_t errlen;
} walk;

static int
range_digest(const qes_pdf *pdf, const uint64_t br[4], qes_md md, uint8_t *out)
{
	const EVP_MD *evp = EVP_get_digestbyname(qes_md_name(md));
	EVP_MD_CTX *c;
	int ok;

	if (evp == NULL)
		return QES_ERR_UNSUPPORTED;
	if ((c = EVP_MD_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	ok = EVP_DigestInit_ex(c, evp, NULL) == 1 &&
	    EVP_DigestUpdate(c, pdf->map + br[0], (size_t)br[1]) == 1 &&
	    EVP_DigestUpdate(c, pdf->map + br[2], (size_t)br[3]) == 1 &&
	    EVP_DigestFinal_ex(c, out, NULL) == 1;
	EVP_MD_CTX_free(c);
	return ok ? 0 : QES_ERR_CRYPTO;
}

/* The byte range: [0, a) and [b, b+c), the gap exactly "<hex>". */
static int
check_range(const qes_pdf *pdf, const pdf_obj *a, qes_verify_report *r)
{
	uint64_t *br = r->byte_range, i;
	size_t k;

	if (a == NULL || a->type != PDF_ARRAY || a->u.a.n != 4) {
		verify_fail(r, "/ByteRange is not an array of four integers");
		return 0;
	}
	for (k = 0; k < 4; k++) {
		if (a->u.a.items[k]->type != PDF_INT || a->u.a.items[k]->u.i < 0) {
			verify_fail(r, "/ByteRange is not an array of four integers");
			return 0;
		}
		br[k] = (uint64_t)a->u.a.items[k]->u.i;
	}
	if (br[0] != 0 || br[1] == 0 || br[2] <= br[1] + 1 || br[2] > pdf->size ||
	    br[3] > pdf->size - br[2]) {
		verify_fail(r, "/ByteRange [%llu %llu %llu %llu] does not fit the file "
		    "(%zu bytes) or does not start at 0", (unsigned long long)br[0],
		    (unsigned long long)br[1], (unsigned long long)br[2],
		    (unsigned long long)br[3], pdf->size);
		return 0;
	}
	r->revision_end = br[2] + br[3];
	r->covers_whole = r->revision_end == pdf->size;
	if (pdf->map[br[1]] != '<' || pdf->map[br[2] - 1] != '>') {
		verify_fail(r, "the gap of /ByteRange is not the /Contents hex string");
		return 0;
	}
	for (i = br[1] + 1; i < br[2] - 1; i++) {
		uint8_t ch = pdf->map[i];

		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		    (ch >= 'A' && ch <= 'F'))) {
			verify_fail(r, "the gap of /ByteRange holds more than the /Contents "
			    "hex string (byte %llu)", (unsigned long long)i);
			return 0;
		}
	}
	return 1;
}

/* The DER TLV at the start of /Contents, without the zero padding after it. */
static int
der_extent(const uint8_t *p, size_t n, size_t *len)
{
	size_t l, i, nb;

	if (n < 2 || p[0] != 0x30)
		return QES_ERR_FORMAT;
	if (p[1] < 0x80) {
		l = p[1];
		i = 2;
	} else {
		nb = p[1] & 0x7f;
		if (nb == 0 || nb > 4 || n < 2 + nb)
			return QES_ERR_FORMAT;
		for (l = 0, i = 0; i < nb; i++)
			l = l << 8 | p[2 + i];
		i = 2 + nb;
	}
	if (l > n - i)
		return QES_ERR_FORMAT;
	*len = i + l;
	return 0;
}

/* "D:YYYYMMDDHHmmSS..." as ISO 8601 (the offset left as written). */
static void
pdf_date(const pdf_obj *m, char *out, size_t outsz)
{
	const char *s;
	size_t i;

	out[0] = '\0';
	if (m == NULL || m->type != PDF_STRING)
		return;
	s = (const char *)m->u.s.p;
	if (m->u.s.len >= 16 && strncmp(s, "D:", 2) == 0) {
		for (i = 2; i < 16; i++)
			if (s[i] < '0' || s[i] > '9')
				return;
		if (m->u.s.len >= 22 && (s[16] == '+' || s[16] == '-') && s[19] == '\'')
			snprintf(out, outsz, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s%c%.2s:%.2s", s + 2,
			    s + 6, s + 8, s + 10, s + 12, s + 14, s[16], s + 17, s + 20);
		else
			snprintf(out, outsz, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", s + 2, s + 6,
			    s + 8, s + 10, s + 12, s + 14);
	}
}

static void
text_name(const pdf_obj *t, char *out, size_t outsz)
{
	size_t i, o = 0;

	out[0] = '\0';
	if (t == NULL || t->type != PDF_STRING)
		return;
	for (i = 0; i < t->u.s.len && o + 1 < outsz; i++) {
		uint8_t ch = t->u.s.p[i];

		if (i < 2 && t->u.s.len >= 2 && t->u.s.p[0] == 0xfe && t->u.s.p[1] == 0xff)
			continue;	/* UTF-16BE BOM: keep the ASCII half below */
		if (ch == 0)
			continue;
		out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[o] = '\0';
}

static int
read_sig(walk *w, const pdf_obj *field, const pdf_obj *v)
{
	qes_pdf *pdf = w->pdf;
	qes_verify_report *r;
	const pdf_obj *c = pdf_dict_get(v, "Contents"), *sf = pdf_dict_get(v, "SubFilter");
	uint8_t dg[QES_MD_MAX_LEN];
	qes_tsp_token_info ti;
	size_t dlen;
	qes_md md;
	int e;

	if ((e = verify_push(&w->arr, &w->n, &r)) != 0)
		return pdf_set_err(w->err, w->errlen, e, "more than %d signature fields",
		    QES_VERIFY_MAX_SIGS);
	r->format = QES_ADES_PADES;
	text_name(pdf_dict_get(field, "T"), r->name, sizeof(r->name));
	pdf_date(pdf_dict_get(v, "M"), r->signing_time, sizeof(r->signing_time));
	r->doc_timestamp = pdf_is_name(pdf_dict_get(v, "Type"), "DocTimeStamp") ||
	    pdf_is_name(sf, "ETSI.RFC3161");
	if (!r->doc_timestamp && !pdf_is_name(sf, "ETSI.CAdES.detached") &&
	    !pdf_is_name(sf, "adbe.pkcs7.detached")) {
		verify_fail(r, "/SubFilter /%s is not read by qes verify",
		    sf != NULL && sf->type == PDF_NAME ? (const char *)sf->u.s.p : "(none)");
		return 0;
	}
	if (c == NULL || c->type != PDF_STRING) {
		verify_fail(r, "the signature dictionary has no /Contents string");
		return 0;
	}
	if (!check_range(pdf, pdf_dict_get(v, "ByteRange"), r))
		return 0;
	if (der_extent(c->u.s.p, c->u.s.len, &dlen) != 0) {
		verify_fail(r, "/Contents does not hold a DER structure");
		return 0;
	}
	if (r->doc_timestamp) {
		snprintf(r->algorithm, sizeof(r->algorithm), "RFC 3161 token");
		if ((r->ts_token = qes_buf_new()) == NULL ||
		    qes_buf_put(r->ts_token, c->u.s.p, dlen) != 0)
			return QES_ERR_ALLOC;
		if (qes_tsp_token_parse(c->u.s.p, dlen, &ti) != 0 || ti.md == 0) {
			verify_fail(r, "/Contents is not a readable TimeStampToken");
			return 0;
		}
		snprintf(r->signing_time, sizeof(r->signing_time), "%s", "");
		if ((e = range_digest(pdf, r->byte_range, ti.md, r->ts_digest)) != 0)
			return e;
		r->ts_md = ti.md;
		r->ts_digest_len = qes_md_len(ti.md);
		if (ti.imprint_len != r->ts_digest_len ||
		    memcmp(ti.imprint, r->ts_digest, r->ts_digest_len) != 0)
			verify_fail(r, "the document timestamp's imprint does not match "
			    "the signed byte ranges");
		/* the TSA's certificates, for the report (the token's own check
		 * is qes_tsp_token_verify's, by the caller) */
		if ((r->certs = qes_buf_new()) == NULL)
			return QES_ERR_ALLOC;
		if (qes_tsp_token_certs(c->u.s.p, dlen, r->certs) == 0 &&
		    qes_buf_len(r->certs) > 0)
			r->signer_found = 1;
		return 0;
	}
	if (qes_verify_cms_md(c->u.s.p, dlen, &md) != 0) {
		verify_fail(r, "/Contents is not a readable CMS SignedData");
		return 0;
	}
	if ((e = range_digest(pdf, r->byte_range, md, dg)) != 0)
		return e;
	if ((e = qes_verify_cms(c->u.s.p, dlen, dg, qes_md_len(md), r)) != 0) {
		if (e == QES_ERR_ALLOC)
			return e;
		verify_fail(r, "/Contents is not a readable CMS SignedData: %s",
		    qes_strerror(e));
	}
	r->format = QES_ADES_PADES;
	if (!r->integrity_ok && strncmp(r->integrity_err, "message-digest", 14) == 0)
		snprintf(r->integrity_err, sizeof(r->integrity_err), "message-digest does "
		    "not match the signed byte ranges: the document was changed");
	return 0;
}

static int
visit(walk *w, const pdf_obj *ref, int depth, int inherited_sig)
{
	pdf_obj *f = NULL, *kids = NULL, *v = NULL;
	const pdf_obj *ft;
	size_t i;
	int r = 0, is_sig;

	if (depth > MAX_FIELD_DEPTH)
		return pdf_set_err(w->err, w->errlen, QES_ERR_LIMIT,
		    "the form field tree is deeper than %d", MAX_FIELD_DEPTH);
	if (++w->visited > MAX_FIELDS)
		return pdf_set_err(w->err, w->errlen, QES_ERR_LIMIT,
		    "more than %d form fields", MAX_FIELDS);
	if ((r = pdf_resolve(w->pdf, ref, &f)) != 0)
		goto out;
	if (f->type != PDF_DICT)
		goto out;
	ft = pdf_dict_get(f, "FT");
	is_sig = ft != NULL ? pdf_is_name(ft, "Sig") : inherited_sig;
	if (pdf_dict_get(f, "Kids") != NULL) {
		if ((r = pdf_resolve(w->pdf, pdf_dict_get(f, "Kids"), &kids)) != 0)
			goto out;
		if (kids->type == PDF_ARRAY)
			for (i = 0; i < kids->u.a.n && r == 0; i++)
				r = visit(w, kids->u.a.items[i], depth + 1, is_sig);
		if (r != 0)
			goto out;
	}
	if (is_sig && pdf_dict_get(f, "V") != NULL) {
		if ((r = pdf_resolve(w->pdf, pdf_dict_get(f, "V"), &v)) != 0)
			goto out;
		if (v->type == PDF_DICT)
			r = read_sig(w, f, v);
	}
out:
	pdf_obj_free(v);
	pdf_obj_free(kids);
	pdf_obj_free(f);
	return r;
}

static size_t
array_len(qes_pdf *pdf, const pdf_obj *dss, const char *key)
{
	pdf_obj *a = NULL;
	size_t n = 0;

	if (pdf_dict_get(dss, key) == NULL || pdf_resolve(pdf, pdf_dict_get(dss, key), &a) != 0)
		return 0;
	if (a->type == PDF_ARRAY)
		n = a->u.a.n;
	pdf_obj_free(a);
	return n;
}

static int
by_revision(const void *a, const void *b)
{
	const qes_verify_report *x = a, *y = b;

	return x->revision_end < y->revision_end ? -1 : x->revision_end > y->revision_end;
}

int
qes_verify_pdf(qes_pdf *pdf, qes_verify_report **out, size_t *n, char *err,
    size_t errlen)
{
	walk w;
	pdf_obj *form = NULL, *fields = NULL, *dss = NULL;
	size_t i, j, dc = 0, doc = 0, dcrl = 0;
	int r;

	if (pdf == NULL || out == NULL || n == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	*n = 0;
	memset(&w, 0, sizeof(w));
	w.pdf = pdf;
	w.err = err;
	w.errlen = errlen;
	if ((r = pdf_resolve(pdf, pdf_dict_get(pdf->catalog, "AcroForm"), &form)) != 0)
		goto out;
	if (form->type == PDF_DICT) {
		if ((r = pdf_resolve(pdf, pdf_dict_get(form, "Fields"), &fields)) != 0)
			goto out;
		if (fields->type == PDF_ARRAY)
			for (i = 0; i < fields->u.a.n && r == 0; i++)
				r = visit(&w, fields->u.a.items[i], 0, 0);
		if (r != 0)
			goto out;
	}
	if (pdf_dict_get(pdf->catalog, "DSS") != NULL) {
		if ((r = pdf_resolve(pdf, pdf_dict_get(pdf->catalog, "DSS"), &dss)) != 0)
			goto out;
		if (dss->type == PDF_DICT) {
			dc = array_len(pdf, dss, "Certs");
			doc = array_len(pdf, dss, "OCSPs");
			dcrl = array_len(pdf, dss, "CRLs");
		}
	}
	if (w.n > 1)
		qsort(w.arr, w.n, sizeof(*w.arr), by_revision);
	for (i = 0; i < w.n; i++) {
		qes_verify_report *s = &w.arr[i];

		s->vd_certs += dc;
		s->vd_ocsps += doc;
		s->vd_crls += dcrl;
		if (s->doc_timestamp)
			continue;
		if (s->level >= QES_ADES_B_T && doc + dcrl > 0)
			s->level = QES_ADES_B_LT;
		for (j = i + 1; j < w.n; j++)
			if (s->level == QES_ADES_B_LT && w.arr[j].doc_timestamp &&
			    w.arr[j].revision_end > s->revision_end)
				s->level = QES_ADES_B_LTA;
	}
	*out = w.arr;
	*n = w.n;
	w.arr = NULL;
	w.n = 0;
	r = 0;
out:
	if (r != 0 && (err == NULL || errlen == 0 || err[0] == '\0') && err != NULL &&
	    errlen > 0)
		snprintf(err, errlen, "%s", qes_pdf_errmsg(pdf));
	verify_free_all(w.arr, w.n);
	pdf_obj_free(dss);
	pdf_obj_free(fields);
	pdf_obj_free(form);
	return r;
}
