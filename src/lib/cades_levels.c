/*
 * cades_levels.c - what happens to a CAdES signature after finish
 * (cades.h): the B-T timestamp, the B-LT validation data, and reading a
 * CMS back for qes verify.
 *
 * A finished CMS is parsed with cms_parse() (bounded, untrusted input) and
 * written again with cms_assemble(), copying the parts that do not change
 * byte for byte - in particular the signed attributes and the signature,
 * so extending a signature can never invalidate it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert_priv.h"
#include "cms_priv.h"
#include "qes/cades.h"
#include "qes/err.h"
#include "qes/revocation.h"
#include "qes/tsp.h"

/* at most this many certificates, revocation entries or attributes we read */
#define MAX_ITEMS 256

static int
put_attr_tlv(qes_buf *out, const char *oid, const uint8_t *value_tlv, size_t len)
{
	qes_buf *a;
	int r;

	if ((a = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_put_oid(a, oid)) == 0 &&
	    (r = cms_put_tlv(a, QES_DER_SET, value_tlv, len)) == 0)
		r = cms_put_wrapped(out, QES_DER_SEQUENCE, a);
	qes_buf_free(a);
	return r;
}

/*
 * An Attribute's type and the content of its SET of values.
 */
static int
attr_parse(const cms_span *attr, qes_cursor *oid, qes_cursor *values)
{
	qes_cursor c, seq;
	int r;

	qes_cursor_init(&c, attr->p, attr->len);
	if ((r = qes_der_expect(&c, QES_DER_SEQUENCE, &seq)) != 0 ||
	    (r = qes_der_get_oid(&seq, oid)) != 0 ||
	    (r = qes_der_expect(&seq, QES_DER_SET, values)) != 0)
		return r;
	return qes_der_end(&seq);
}

/* SignerInfos SET rebuilt with the given unsigned attributes */
static int
rebuild_signer_infos(const cms_parts *p, const cms_span *uattrs, size_t nu,
    qes_buf *sis)
{
	qes_buf *si = NULL, *seq = NULL;
	int r;

	if ((si = qes_buf_new()) == NULL || (seq = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_buf_put(si, p->si_version.p, p->si_version.len)) != 0 ||
	    (r = qes_buf_put(si, p->si_sid.p, p->si_sid.len)) != 0 ||
	    (r = qes_buf_put(si, p->si_digest_alg.p, p->si_digest_alg.len)) != 0 ||
	    (p->has_signed_attrs && (r = qes_buf_put(si, p->si_signed_attrs.p,
	        p->si_signed_attrs.len)) != 0) ||
	    (r = qes_buf_put(si, p->si_sig_alg.p, p->si_sig_alg.len)) != 0 ||
	    (r = qes_buf_put(si, p->si_sig.p, p->si_sig.len)) != 0)
		goto out;
	if (nu > 0 && (r = cms_put_set_of(si, QES_DER_CONTEXT_CONS(1), uattrs, nu)) != 0)
		goto out;
	if ((r = cms_put_wrapped(seq, QES_DER_SEQUENCE, si)) != 0)
		goto out;
	r = cms_put_wrapped(sis, QES_DER_SET, seq);
out:
	qes_buf_free(seq);
	qes_buf_free(si);
	return r;
}

/* a qes_buf holding the content of [0] or [1] as parsed, or NULL when absent */
static int
span_buf(int present, const cms_span *s, qes_buf **out)
{
	*out = NULL;
	if (!present)
		return 0;
	if ((*out = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	return s->len > 0 ? qes_buf_put(*out, s->p, s->len) : 0;
}

int
qes_cades_add_timestamp(const uint8_t *cms, size_t len,
    const qes_timestamper *ts, qes_md md, qes_buf *out, char *err,
    size_t errlen)
{
	cms_parts p;
	cms_span *uattrs = NULL;
	qes_buf *token = NULL, *attr = NULL, *sis = NULL, *certs = NULL, *crls = NULL;
	uint8_t h[QES_MD_MAX_LEN];
	size_t nu = 0;
	int r;

	if (cms == NULL || ts == NULL || ts->fn == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	if ((uattrs = calloc(MAX_ITEMS + 1, sizeof(*uattrs))) == NULL ||
	    (token = qes_buf_new()) == NULL || (attr = qes_buf_new()) == NULL ||
	    (sis = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (p.has_unsigned_attrs &&
	    (r = cms_split_tlvs(p.si_unsigned_attrs_val.p, p.si_unsigned_attrs_val.len,
	        uattrs, MAX_ITEMS, &nu)) != 0)
		goto out;
	/* the signature-time-stamp covers the SignatureValue octets (EN 319 122-1 5.3) */
	if ((r = qes_md_digest(md, p.si_sig_val.p, p.si_sig_val.len, h)) != 0)
		goto out;
	if ((r = ts->fn(ts->arg, md, h, qes_md_len(md), token, err, errlen)) != 0)
		goto out;
	if ((r = put_attr_tlv(attr, CMS_OID_TIMESTAMP_TOKEN, qes_buf_data(token),
	    qes_buf_len(token))) != 0)
		goto out;
	uattrs[nu].p = qes_buf_data(attr);
	uattrs[nu].len = qes_buf_len(attr);
	nu++;
	if ((r = rebuild_signer_infos(&p, uattrs, nu, sis)) != 0 ||
	    (r = span_buf(p.has_certs, &p.certs, &certs)) != 0 ||
	    (r = span_buf(p.has_crls, &p.crls, &crls)) != 0)
		goto out;
	r = cms_assemble(out, p.sd_version, &p.digest_algs, &p.encap, NULL, certs,
	    crls, sis);
out:
	qes_buf_free(crls);
	qes_buf_free(certs);
	qes_buf_free(sis);
	qes_buf_free(attr);
	qes_buf_free(token);
	free(uattrs);
	return r;
}

static int
span_in(const cms_span *list, size_t n, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].len == len && memcmp(list[i].p, p, len) == 0)
			return 1;
	return 0;
}

/* 1 when a RevocationInfoChoice TLV is [1] other { id-ri-ocsp-response, ... } */
static int
is_ocsp_choice(const cms_span *e)
{
	qes_cursor c, v, oid;

	qes_cursor_init(&c, e->p, e->len);
	if (qes_der_expect(&c, QES_DER_CONTEXT_CONS(1), &v) != 0 ||
	    qes_der_get_oid(&v, &oid) != 0)
		return 0;
	return cms_oid_is(oid.data, oid.len, CMS_OID_RI_OCSP);
}

int
qes_cades_add_vdata(const uint8_t *cms, size_t len, const qes_ades_vdata *vd,
    qes_buf *out)
{
	cms_parts p;
	cms_span *have_certs = NULL, *have_crls = NULL;
	qes_buf *certs = NULL, *crls = NULL, *sis = NULL, *choice = NULL, *tmp = NULL;
	size_t nc = 0, nr = 0, i;
	long version;
	int r, other = 0;

	if (cms == NULL || vd == NULL || out == NULL ||
	    (vd->ncerts > 0 && vd->certs == NULL) ||
	    (vd->ncrls > 0 && vd->crls == NULL) || (vd->nocsps > 0 && vd->ocsps == NULL))
		return QES_ERR_INVALID_ARG;
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	if ((have_certs = calloc(MAX_ITEMS, sizeof(cms_span))) == NULL ||
	    (have_crls = calloc(MAX_ITEMS, sizeof(cms_span))) == NULL ||
	    (certs = qes_buf_new()) == NULL || (crls = qes_buf_new()) == NULL ||
	    (sis = qes_buf_new()) == NULL || (choice = qes_buf_new()) == NULL ||
	    (tmp = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((p.has_certs && (r = cms_split_tlvs(p.certs.p, p.certs.len, have_certs,
	        MAX_ITEMS, &nc)) != 0) ||
	    (p.has_crls && (r = cms_split_tlvs(p.crls.p, p.crls.len, have_crls,
	        MAX_ITEMS, &nr)) != 0))
		goto out;
	if (nc + vd->ncerts > MAX_ITEMS || nr + vd->ncrls + vd->nocsps > MAX_ITEMS) {
		r = QES_ERR_LIMIT;
		goto out;
	}
	if (p.has_certs && (r = qes_buf_put(certs, p.certs.p, p.certs.len)) != 0)
		goto out;
	for (i = 0; i < vd->ncerts; i++) {
		if (vd->certs[i].data == NULL || vd->certs[i].len == 0) {
			r = QES_ERR_INVALID_ARG;
			goto out;
		}
		if (span_in(have_certs, nc, vd->certs[i].data, vd->certs[i].len))
			continue;
		if ((r = qes_buf_put(certs, vd->certs[i].data, vd->certs[i].len)) != 0)
			goto out;
	}
	if (p.has_crls && (r = qes_buf_put(crls, p.crls.p, p.crls.len)) != 0)
		goto out;
	for (i = 0; i < nr; i++)
		if (have_crls[i].len > 0 && have_crls[i].p[0] == QES_DER_CONTEXT_CONS(1))
			other = 1;
	for (i = 0; i < vd->ncrls; i++) {
		if (vd->crls[i].data == NULL || vd->crls[i].len == 0) {
			r = QES_ERR_INVALID_ARG;
			goto out;
		}
		if (span_in(have_crls, nr, vd->crls[i].data, vd->crls[i].len))
			continue;
		if ((r = qes_buf_put(crls, vd->crls[i].data, vd->crls[i].len)) != 0)
			goto out;
	}
	for (i = 0; i < vd->nocsps; i++) {
		/* RFC 5940: [1] OtherRevocationInfoFormat { id-ri-ocsp-response, OCSPResponse } */
		if (vd->ocsps[i].data == NULL || vd->ocsps[i].len == 0) {
			r = QES_ERR_INVALID_ARG;
			goto out;
		}
		qes_buf_reset(tmp);
		qes_buf_reset(choice);
		if ((r = cms_put_oid(tmp, CMS_OID_RI_OCSP)) != 0 ||
		    (r = qes_buf_put(tmp, vd->ocsps[i].data, vd->ocsps[i].len)) != 0 ||
		    (r = cms_put_wrapped(choice, QES_DER_CONTEXT_CONS(1), tmp)) != 0)
			goto out;
		other = 1;
		if (span_in(have_crls, nr, qes_buf_data(choice), qes_buf_len(choice)))
			continue;
		if ((r = qes_buf_put(crls, qes_buf_data(choice), qes_buf_len(choice))) != 0)
			goto out;
	}
	if ((r = qes_buf_put(sis, p.signer_infos.p, p.signer_infos.len)) != 0)
		goto out;
	/* RFC 5652 5.1: an "other" RevocationInfoChoice makes SignedData version 5 */
	version = other ? 5 : p.sd_version;
	r = cms_assemble(out, version, &p.digest_algs, &p.encap, NULL,
	    qes_buf_len(certs) > 0 ? certs : NULL, qes_buf_len(crls) > 0 ? crls : NULL,
	    sis);
out:
	qes_buf_free(tmp);
	qes_buf_free(choice);
	qes_buf_free(sis);
	qes_buf_free(crls);
	qes_buf_free(certs);
	free(have_crls);
	free(have_certs);
	return r;
}

/* ---------------------------------------------------------------------- */
/* Reading */

/*
 * Does the certificate match the SignerIdentifier TLV? Both choices of RFC
 * 5652, 5.3: issuerAndSerialNumber (a SEQUENCE, compared as DER) and
 * [0] subjectKeyIdentifier (SignerInfo version 3, e.g. openssl cms -sign
 * -keyid), compared with the certificate's subjectKeyIdentifier extension.
 */
static int
sid_matches(const cms_span *sid, const qes_cert *c)
{
	X509 *x = qes_cert_x509(c);
	const ASN1_OCTET_STRING *ski;
	unsigned char *name = NULL, *serial = NULL;
	const uint8_t *id;
	qes_cursor cur, val;
	qes_buf *b;
	uint8_t tag;
	size_t n;
	int nl, sl, match = 0;

	if (sid->len == 0)
		return 0;
	if (sid->p[0] == QES_DER_CONTEXT(0)) {
		qes_cursor_init(&cur, sid->p, sid->len);
		if (qes_der_get_tlv(&cur, &tag, &val) != 0 ||
		    qes_cursor_remaining(&cur) != 0 ||
		    (ski = X509_get0_subject_key_id(x)) == NULL)
			return 0;
		n = qes_cursor_remaining(&val);
		return n > 0 && n == (size_t)ASN1_STRING_length(ski) &&
		    qes_cursor_get_bytes(&val, n, &id) == 0 &&
		    memcmp(id, ASN1_STRING_get0_data(ski), n) == 0;
	}
	if (sid->p[0] != QES_DER_SEQUENCE)
		return 0;
	if ((nl = i2d_X509_NAME(X509_get_issuer_name(x), &name)) <= 0 ||
	    (sl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &serial)) <= 0)
		goto out;
	if ((b = qes_buf_new()) == NULL)
		goto out;
	if (cms_put_hdr(b, QES_DER_SEQUENCE, (size_t)nl + (size_t)sl) == 0 &&
	    qes_buf_put(b, name, (size_t)nl) == 0 &&
	    qes_buf_put(b, serial, (size_t)sl) == 0)
		match = qes_buf_len(b) == sid->len &&
		    memcmp(qes_buf_data(b), sid->p, sid->len) == 0;
	qes_buf_free(b);
out:
	OPENSSL_free(serial);
	OPENSSL_free(name);
	return match;
}

struct cms_certs {
	qes_cert *c[MAX_ITEMS];
	size_t n;
};

static void
certs_free(struct cms_certs *cc)
{
	size_t i;

	for (i = 0; i < cc->n; i++)
		qes_cert_free(cc->c[i]);
	cc->n = 0;
}

/* certificates in a concatenation of TLVs (others, e.g. attribute certs, skipped) */
static int
certs_load(const uint8_t *p, size_t len, struct cms_certs *cc)
{
	cms_span *s;
	size_t n = 0, i;
	int r;

	if ((s = calloc(MAX_ITEMS, sizeof(*s))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_split_tlvs(p, len, s, MAX_ITEMS, &n)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (s[i].p[0] != QES_DER_SEQUENCE)
			continue;
		if (cc->n == MAX_ITEMS) {
			r = QES_ERR_LIMIT;
			goto out;
		}
		if ((r = qes_cert_from_der(s[i].p, s[i].len, &cc->c[cc->n])) != 0)
			goto out;
		cc->n++;
	}
out:
	free(s);
	return r;
}

static const qes_cert *
find_signer(const cms_parts *p, const struct cms_certs *cc)
{
	size_t i;

	for (i = 0; i < cc->n; i++)
		if (sid_matches(&p->si_sid, cc->c[i]))
			return cc->c[i];
	return NULL;
}

/* the first value of the unsigned signature-time-stamp attribute, if any */
static int
find_timestamp(const cms_parts *p, cms_span *token)
{
	cms_span *u;
	qes_cursor oid, vals, v;
	size_t n = 0, i, start;
	uint8_t tag;
	int r, found = 0;

	if (!p->has_unsigned_attrs)
		return 0;
	if ((u = calloc(MAX_ITEMS, sizeof(*u))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_split_tlvs(p->si_unsigned_attrs_val.p, p->si_unsigned_attrs_val.len,
	    u, MAX_ITEMS, &n)) != 0)
		goto out;
	for (i = 0; i < n && !found; i++) {
		if ((r = attr_parse(&u[i], &oid, &vals)) != 0)
			goto out;
		if (!cms_oid_is(oid.data, oid.len, CMS_OID_TIMESTAMP_TOKEN))
			continue;
		start = vals.off;
		if ((r = qes_der_get_tlv(&vals, &tag, &v)) != 0)
			goto out;
		token->p = vals.data + start;
		token->len = vals.off - start;
		found = 1;
	}
	r = found;
out:
	free(u);
	return r;
}

int
qes_cades_collect_vdata(const uint8_t *cms, size_t len, const qes_rev_config *cfg,
    const qes_cert *const *extra, size_t nextra, qes_vdata *vd, char *err,
    size_t errlen)
{
	cms_parts p;
	struct cms_certs *cc = NULL, *tc = NULL;
	const qes_cert **pool = NULL;
	const qes_cert *chain[QES_REV_MAX_CHAIN], *signer, *tsa = NULL;
	qes_buf *tcerts = NULL;
	qes_rev_config tsa_cfg;
	cms_span token;
	size_t npool = 0, n, i;
	int r;

	if (cms == NULL || vd == NULL || (extra == NULL && nextra != 0))
		return QES_ERR_INVALID_ARG;
	if (nextra > MAX_ITEMS)
		return QES_ERR_LIMIT;
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	if ((cc = calloc(1, sizeof(*cc))) == NULL || (tc = calloc(1, sizeof(*tc))) == NULL ||
	    (pool = calloc(3 * MAX_ITEMS, sizeof(*pool))) == NULL ||
	    (tcerts = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (p.has_certs && (r = certs_load(p.certs.p, p.certs.len, cc)) != 0)
		goto out;
	if ((signer = find_signer(&p, cc)) == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "the signer's certificate is not in the CMS");
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	if ((r = find_timestamp(&p, &token)) < 0)
		goto out;
	if (r == 1) {
		if ((r = qes_tsp_token_certs(token.p, token.len, tcerts)) != 0 ||
		    (r = certs_load(qes_buf_data(tcerts), qes_buf_len(tcerts), tc)) != 0)
			goto out;
		/* the TSA is the token certificate whose sole purpose is timestamping */
		for (i = 0; i < tc->n && tsa == NULL; i++) {
			X509 *x = qes_cert_x509(tc->c[i]);

			if ((X509_get_extension_flags(x) & EXFLAG_XKUSAGE) != 0 &&
			    X509_get_extended_key_usage(x) == XKU_TIMESTAMP)
				tsa = tc->c[i];
		}
	}
	for (i = 0; i < cc->n; i++)
		pool[npool++] = cc->c[i];
	for (i = 0; i < tc->n; i++)
		pool[npool++] = tc->c[i];
	for (i = 0; i < nextra; i++)
		pool[npool++] = extra[i];
	if ((r = qes_chain_build(signer, pool, npool, chain, QES_REV_MAX_CHAIN, &n)) != 0 ||
	    (r = qes_vdata_add_chain(vd, cfg, chain, n, err, errlen)) != 0)
		goto out;
	if (tsa != NULL) {
		if (cfg != NULL)
			tsa_cfg = *cfg;
		else
			memset(&tsa_cfg, 0, sizeof(tsa_cfg));
		tsa_cfg.ocsp_url = NULL;	/* configured URLs are the signer's */
		tsa_cfg.crl_url = NULL;
		if ((r = qes_chain_build(tsa, pool, npool, chain, QES_REV_MAX_CHAIN, &n)) != 0 ||
		    (r = qes_vdata_add_chain(vd, &tsa_cfg, chain, n, err, errlen)) != 0)
			goto out;
	}
	r = 0;
out:
	if (tc != NULL)
		certs_free(tc);
	if (cc != NULL)
		certs_free(cc);
	qes_buf_free(tcerts);
	free(pool);
	free(tc);
	free(cc);
	return r;
}

int
qes_cades_extend_lt(const uint8_t *cms, size_t len, const qes_rev_config *cfg,
    const qes_cert *const *extra, size_t nextra, qes_buf *out, char *err,
    size_t errlen)
{
	qes_vdata *vd;
	int r;

	if (cms == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((vd = qes_vdata_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_cades_collect_vdata(cms, len, cfg, extra, nextra, vd, err,
	    errlen)) == 0)
		r = qes_cades_add_vdata(cms, len, qes_vdata_view(vd), out);
	qes_vdata_free(vd);
	return r;
}

static int
parse_time(const uint8_t *tlv, size_t len, int64_t *out)
{
	const unsigned char *q = tlv;
	ASN1_TIME *t;
	struct tm tm;
	int ok;

	if (len == 0 || (tlv[0] != 0x17 && tlv[0] != 0x18))
		return QES_ERR_FORMAT;
	if ((t = d2i_ASN1_TIME(NULL, &q, (long)len)) == NULL) {
		ERR_clear_error();
		return QES_ERR_FORMAT;
	}
	ok = q == tlv + len && ASN1_TIME_to_tm(t, &tm);
	ASN1_TIME_free(t);
	if (!ok)
		return QES_ERR_FORMAT;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static int
read_signed_attrs(const cms_parts *p, qes_cades_report *rep)
{
	cms_span *a;
	qes_cursor oid, vals, v;
	size_t n = 0, i, start;
	uint8_t tag;
	int r;

	if (!p->has_signed_attrs)
		return 0;
	if ((a = calloc(MAX_ITEMS, sizeof(*a))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_split_tlvs(p->si_signed_attrs_val.p, p->si_signed_attrs_val.len,
	    a, MAX_ITEMS, &n)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if ((r = attr_parse(&a[i], &oid, &vals)) != 0)
			goto out;
		/*
		 * RFC 5652 11.1-11.3: content-type, message-digest and
		 * signing-time occur once, with one value; anything else is
		 * malformed (a second message-digest could say something else
		 * than the one a verifier checks).
		 */
		if (cms_oid_is(oid.data, oid.len, CMS_OID_CONTENT_TYPE)) {
			if (rep->has_content_type) {
				r = QES_ERR_FORMAT;
				goto out;
			}
			rep->has_content_type = 1;
		} else if (cms_oid_is(oid.data, oid.len, CMS_OID_MESSAGE_DIGEST)) {
			if (rep->has_message_digest) {
				r = QES_ERR_FORMAT;
				goto out;
			}
			if ((r = qes_der_expect(&vals, QES_DER_OCTET_STRING, &v)) != 0 ||
			    (r = qes_der_end(&vals)) != 0)
				goto out;
			if (v.len > sizeof(rep->message_digest)) {
				r = QES_ERR_FORMAT;
				goto out;
			}
			memcpy(rep->message_digest, v.data, v.len);
			rep->message_digest_len = v.len;
			rep->has_message_digest = 1;
		} else if (cms_oid_is(oid.data, oid.len, CMS_OID_SIGNING_TIME)) {
			if (rep->has_signing_time) {
				r = QES_ERR_FORMAT;
				goto out;
			}
			start = vals.off;
			if ((r = qes_der_get_tlv(&vals, &tag, &v)) != 0 ||
			    (r = qes_der_end(&vals)) != 0 ||
			    (r = parse_time(vals.data + start, vals.off - start,
			        &rep->signing_time)) != 0)
				goto out;
			rep->has_signing_time = 1;
		} else if (cms_oid_is(oid.data, oid.len, CMS_OID_SIGNING_CERT_V2)) {
			rep->has_signing_cert_v2 = 1;
		} else if (cms_oid_is(oid.data, oid.len, CMS_OID_SIGNING_CERT)) {
			rep->has_signing_cert_v1 = 1;
		}
	}
out:
	free(a);
	return r;
}

static int
count_revocation(const cms_parts *p, qes_cades_report *rep)
{
	cms_span *s;
	size_t n = 0, i;
	int r;

	if (!p->has_crls)
		return 0;
	if ((s = calloc(MAX_ITEMS, sizeof(*s))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_split_tlvs(p->crls.p, p->crls.len, s, MAX_ITEMS, &n)) == 0) {
		for (i = 0; i < n; i++) {
			if (s[i].p[0] == QES_DER_SEQUENCE)
				rep->ncrls++;
			else if (is_ocsp_choice(&s[i]))
				rep->nocsps++;
		}
	}
	free(s);
	return r;
}

int
qes_cades_inspect(const uint8_t *cms, size_t len, qes_cades_report *rep)
{
	cms_parts p;
	struct cms_certs *cc = NULL;
	const qes_cert *signer;
	const qes_cert_info *ci;
	qes_tsp_token_info ti;
	qes_buf *attrs = NULL;
	cms_span token;
	qes_md sig_md = (qes_md)0;
	uint8_t h[QES_MD_MAX_LEN];
	int r;

	if (cms == NULL || rep == NULL)
		return QES_ERR_INVALID_ARG;
	memset(rep, 0, sizeof(*rep));
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	rep->enveloping = p.has_econtent;
	rep->content_len = p.has_econtent ? p.econtent.len : 0;
	rep->md = cms_digest_alg_md(p.si_digest_alg.p, p.si_digest_alg.len);
	if (cms_sig_alg_parse(p.si_sig_alg.p, p.si_sig_alg.len, &rep->scheme, &sig_md) != 0)
		rep->scheme = (qes_sig_scheme)0;
	if ((r = read_signed_attrs(&p, rep)) != 0 || (r = count_revocation(&p, rep)) != 0)
		return r;
	if ((cc = calloc(1, sizeof(*cc))) == NULL)
		return QES_ERR_ALLOC;
	if (p.has_certs && (r = certs_load(p.certs.p, p.certs.len, cc)) != 0)
		goto out;
	rep->ncerts = cc->n;
	if ((signer = find_signer(&p, cc)) != NULL) {
		ci = qes_cert_get_info(signer);
		rep->signer_found = 1;
		snprintf(rep->signer_subject, sizeof(rep->signer_subject), "%s", ci->subject);
		snprintf(rep->signer_serial_hex, sizeof(rep->signer_serial_hex), "%s",
		    ci->serial_hex);
	}
	/* signature over the DER signed attributes, [0] re-tagged as SET */
	if (signer != NULL && p.has_signed_attrs && rep->md != 0 && rep->scheme != 0 &&
	    (sig_md == 0 || sig_md == rep->md)) {
		if ((attrs = qes_buf_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = cms_put_tlv(attrs, QES_DER_SET, p.si_signed_attrs_val.p,
		    p.si_signed_attrs_val.len)) != 0 ||
		    (r = qes_md_digest(rep->md, qes_buf_data(attrs), qes_buf_len(attrs), h)) != 0)
			goto out;
		rep->signature_ok = qes_cert_verify_digest(signer, rep->scheme, rep->md, h,
		    qes_md_len(rep->md), p.si_sig_val.p, p.si_sig_val.len) == 0;
	}
	if ((r = find_timestamp(&p, &token)) < 0)
		goto out;
	if (r == 1) {
		rep->has_timestamp = 1;
		if (qes_tsp_token_parse(token.p, token.len, &ti) == 0) {
			rep->timestamp_time = ti.gen_time;
			rep->timestamp_imprint_ok = ti.md != 0 &&
			    qes_md_digest(ti.md, p.si_sig_val.p, p.si_sig_val.len, h) == 0 &&
			    ti.imprint_len == qes_md_len(ti.md) &&
			    memcmp(h, ti.imprint, ti.imprint_len) == 0;
		}
	}
	r = 0;
	rep->level = QES_ADES_B_B;
	if (rep->has_timestamp)
		rep->level = rep->ncrls + rep->nocsps > 0 ? QES_ADES_B_LT : QES_ADES_B_T;
out:
	qes_buf_free(attrs);
	if (cc != NULL)
		certs_free(cc);
	free(cc);
	return r;
}

int
qes_cades_verify_integrity(const uint8_t *cms, size_t len, const uint8_t *content,
    size_t content_len, int is_digest)
{
	qes_cades_report rep;
	cms_parts p;
	uint8_t h[QES_MD_MAX_LEN];
	const uint8_t *d;
	int r;

	if ((r = qes_cades_inspect(cms, len, &rep)) != 0)
		return r;
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	if (!rep.signer_found || !rep.has_message_digest || !rep.has_content_type ||
	    rep.md == 0)
		return QES_ERR_FORMAT;
	if (!rep.signature_ok)
		return QES_ERR_SIGNATURE_INVALID;
	if (p.has_econtent) {
		if ((r = qes_md_digest(rep.md, p.econtent.p, p.econtent.len, h)) != 0)
			return r;
		d = h;
	} else if (content != NULL && is_digest) {
		if (content_len != qes_md_len(rep.md))
			return QES_ERR_INVALID_ARG;
		d = content;
	} else if (content != NULL || content_len == 0) {
		if ((r = qes_md_digest(rep.md, content != NULL ? content :
		    (const uint8_t *)"", content_len, h)) != 0)
			return r;
		d = h;
	} else {
		return QES_ERR_INVALID_ARG;
	}
	if (rep.message_digest_len != qes_md_len(rep.md) ||
	    memcmp(d, rep.message_digest, rep.message_digest_len) != 0)
		return QES_ERR_SIGNATURE_INVALID;
	return 0;
}

int
qes_cades_timestamp_token(const uint8_t *cms, size_t len, qes_buf *token_out,
    qes_buf *sig_out)
{
	cms_parts p;
	cms_span token;
	int r;

	if (cms == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = cms_parse(cms, len, &p)) != 0)
		return r;
	if ((r = find_timestamp(&p, &token)) < 0)
		return r;
	if (r == 0)
		return QES_ERR_NOT_FOUND;
	if (token_out != NULL && (r = qes_buf_put(token_out, token.p, token.len)) != 0)
		return r;
	if (sig_out != NULL &&
	    (r = qes_buf_put(sig_out, p.si_sig_val.p, p.si_sig_val.len)) != 0)
		return r;
	return 0;
}
