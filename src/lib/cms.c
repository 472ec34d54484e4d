/*
 * cms.c - DER writing and reading of CMS SignedData for cades.c
 * (cms_priv.h says why this is not OpenSSL's CMS API).
 *
 * Reading goes through der.h's bounded TLV reader only; every count is
 * bounded. Writing appends to qes_buf, whose maximum size bounds output.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "cms_priv.h"
#include "qes/err.h"

/* copying an enveloped file into the CMS reads chunks of this size */
#define FILE_CHUNK ((size_t)1024 * 1024)
/* at most this many attributes in one SET OF we sort */
#define CMS_MAX_SET_ELEMS 256

size_t
cms_hdr_size(size_t len)
{
	size_t n = 2;

	if (len < 0x80)
		return n;
	while (len > 0) {
		n++;
		len >>= 8;
	}
	return n;
}

int
cms_put_hdr(qes_buf *b, uint8_t tag, size_t len)
{
	uint8_t h[2 + sizeof(size_t)];
	size_t n = 0, i, octets = 0, tmp = len;

	h[n++] = tag;
	if (len < 0x80) {
		h[n++] = (uint8_t)len;
	} else {
		while (tmp > 0) {
			octets++;
			tmp >>= 8;
		}
		if (octets > QES_DER_MAX_LEN_OCTETS)
			return QES_ERR_LIMIT;
		h[n++] = (uint8_t)(0x80u | octets);
		for (i = octets; i > 0; i--)
			h[n++] = (uint8_t)(len >> (8 * (i - 1)));
	}
	return qes_buf_put(b, h, n);
}

int
cms_put_tlv(qes_buf *b, uint8_t tag, const void *v, size_t len)
{
	int r;

	if ((r = cms_put_hdr(b, tag, len)) != 0)
		return r;
	return len > 0 ? qes_buf_put(b, v, len) : 0;
}

int
cms_put_wrapped(qes_buf *b, uint8_t tag, const qes_buf *inner)
{
	return cms_put_tlv(b, tag, qes_buf_data(inner), qes_buf_len(inner));
}

int
cms_oid_content(const char *dotted, uint8_t *out, size_t max, size_t *len)
{
	ASN1_OBJECT *o;
	size_t n;

	if ((o = OBJ_txt2obj(dotted, 1)) == NULL)
		return QES_ERR_INTERNAL;
	n = OBJ_length(o);
	if (n == 0 || n > max) {
		ASN1_OBJECT_free(o);
		return QES_ERR_INTERNAL;
	}
	memcpy(out, OBJ_get0_data(o), n);
	*len = n;
	ASN1_OBJECT_free(o);
	return 0;
}

int
cms_put_oid(qes_buf *b, const char *dotted)
{
	uint8_t c[32];
	size_t n;
	int r;

	if ((r = cms_oid_content(dotted, c, sizeof(c), &n)) != 0)
		return r;
	return cms_put_tlv(b, QES_DER_OID, c, n);
}

int
cms_oid_is(const uint8_t *p, size_t len, const char *dotted)
{
	uint8_t c[32];
	size_t n;

	if (cms_oid_content(dotted, c, sizeof(c), &n) != 0)
		return 0;
	return n == len && memcmp(p, c, n) == 0;
}

static int
span_cmp(const void *a, const void *b)
{
	const cms_span *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);

	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

int
cms_put_set_of(qes_buf *b, uint8_t tag, const cms_span *elems, size_t n)
{
	cms_span *sorted = NULL;
	size_t i, total = 0;
	int r;

	if (n > CMS_MAX_SET_ELEMS)
		return QES_ERR_LIMIT;
	if (n > 0 && (sorted = malloc(n * sizeof(*sorted))) == NULL)
		return QES_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		sorted[i] = elems[i];
		total += elems[i].len;
	}
	if (n > 1)
		qsort(sorted, n, sizeof(*sorted), span_cmp);
	r = cms_put_hdr(b, tag, total);
	for (i = 0; i < n && r == 0; i++)
		r = qes_buf_put(b, sorted[i].p, sorted[i].len);
	free(sorted);
	return r;
}

int
cms_split_tlvs(const uint8_t *p, size_t len, cms_span *out, size_t max, size_t *n)
{
	qes_cursor c, v;
	uint8_t tag;
	size_t start;
	int r;

	*n = 0;
	qes_cursor_init(&c, p, len);
	while (qes_cursor_remaining(&c) > 0) {
		start = c.off;
		if ((r = qes_der_get_tlv(&c, &tag, &v)) != 0)
			return r;
		if (*n == max)
			return QES_ERR_LIMIT;
		out[*n].p = p + start;
		out[*n].len = c.off - start;
		(*n)++;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Algorithm identifiers */

static const char *
md_oid(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256: return "2.16.840.1.101.3.4.2.1";
	case QES_MD_SHA384: return "2.16.840.1.101.3.4.2.2";
	case QES_MD_SHA512: return "2.16.840.1.101.3.4.2.3";
	}
	return NULL;
}

static qes_md
md_of_oid(const uint8_t *p, size_t len)
{
	static const qes_md all[] = { QES_MD_SHA256, QES_MD_SHA384, QES_MD_SHA512 };
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (cms_oid_is(p, len, md_oid(all[i])))
			return all[i];
	return (qes_md)0;
}

static const EVP_MD *
md_evp(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256: return EVP_sha256();
	case QES_MD_SHA384: return EVP_sha384();
	case QES_MD_SHA512: return EVP_sha512();
	}
	return NULL;
}

/* SHA-2 AlgorithmIdentifiers carry no parameters (RFC 5754 section 2) */
int
cms_put_digest_alg(qes_buf *b, qes_md md)
{
	qes_buf *in;
	int r;

	if (md_oid(md) == NULL)
		return QES_ERR_UNSUPPORTED;
	if ((in = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_put_oid(in, md_oid(md))) == 0)
		r = cms_put_wrapped(b, QES_DER_SEQUENCE, in);
	qes_buf_free(in);
	return r;
}

/*
 * RSASSA-PSS-params (RFC 4055): hashAlgorithm [0], maskGenAlgorithm [1]
 * (MGF1 with the same hash), saltLength [2] = hash length, trailerField
 * default. The defaults (SHA-1) are never what we use, so all three are
 * written out.
 */
static int
put_pss_params(qes_buf *b, qes_md md)
{
	qes_buf *params = NULL, *tmp = NULL, *mgf = NULL;
	uint8_t salt = (uint8_t)qes_md_len(md);
	int r;

	if ((params = qes_buf_new()) == NULL || (tmp = qes_buf_new()) == NULL ||
	    (mgf = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = cms_put_digest_alg(tmp, md)) != 0 ||
	    (r = cms_put_wrapped(params, QES_DER_CONTEXT_CONS(0), tmp)) != 0)
		goto out;
	qes_buf_reset(tmp);
	if ((r = cms_put_oid(mgf, "1.2.840.113549.1.1.8")) != 0 ||
	    (r = cms_put_digest_alg(mgf, md)) != 0 ||
	    (r = cms_put_wrapped(tmp, QES_DER_SEQUENCE, mgf)) != 0 ||
	    (r = cms_put_hdr(params, QES_DER_CONTEXT_CONS(1), qes_buf_len(tmp))) != 0 ||
	    (r = qes_buf_put(params, qes_buf_data(tmp), qes_buf_len(tmp))) != 0)
		goto out;
	qes_buf_reset(tmp);
	if ((r = cms_put_tlv(tmp, QES_DER_INTEGER, &salt, 1)) != 0 ||
	    (r = cms_put_wrapped(params, QES_DER_CONTEXT_CONS(2), tmp)) != 0)
		goto out;
	r = cms_put_wrapped(b, QES_DER_SEQUENCE, params);
out:
	qes_buf_free(mgf);
	qes_buf_free(tmp);
	qes_buf_free(params);
	return r;
}

int
cms_put_sig_alg(qes_buf *b, qes_sig_scheme scheme, qes_md md)
{
	static const uint8_t null_der[] = { 0x05, 0x00 };
	qes_buf *in;
	const char *oid = NULL;
	int r;

	switch (scheme) {
	case QES_SIG_RSA_PKCS1:
		oid = md == QES_MD_SHA256 ? "1.2.840.113549.1.1.11" :
		    md == QES_MD_SHA384 ? "1.2.840.113549.1.1.12" :
		    md == QES_MD_SHA512 ? "1.2.840.113549.1.1.13" : NULL;
		break;
	case QES_SIG_RSA_PSS:
		oid = md_oid(md) != NULL ? "1.2.840.113549.1.1.10" : NULL;
		break;
	case QES_SIG_ECDSA:
		oid = md == QES_MD_SHA256 ? "1.2.840.10045.4.3.2" :
		    md == QES_MD_SHA384 ? "1.2.840.10045.4.3.3" :
		    md == QES_MD_SHA512 ? "1.2.840.10045.4.3.4" : NULL;
		break;
	}
	if (oid == NULL)
		return QES_ERR_UNSUPPORTED;
	if ((in = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_put_oid(in, oid)) != 0)
		goto out;
	/* RSA PKCS#1 v1.5 identifiers carry NULL (RFC 4055 section 5), ECDSA none */
	if (scheme == QES_SIG_RSA_PKCS1)
		r = qes_buf_put(in, null_der, sizeof(null_der));
	else if (scheme == QES_SIG_RSA_PSS)
		r = put_pss_params(in, md);
	if (r == 0)
		r = cms_put_wrapped(b, QES_DER_SEQUENCE, in);
out:
	qes_buf_free(in);
	return r;
}

qes_md
cms_digest_alg_md(const uint8_t *tlv, size_t len)
{
	qes_cursor c, seq, oid;

	qes_cursor_init(&c, tlv, len);
	if (qes_der_expect(&c, QES_DER_SEQUENCE, &seq) != 0 ||
	    qes_der_get_oid(&seq, &oid) != 0)
		return (qes_md)0;
	return md_of_oid(oid.data + oid.off, qes_cursor_remaining(&oid));
}

int
cms_sig_alg_parse(const uint8_t *tlv, size_t len, qes_sig_scheme *scheme, qes_md *md)
{
	static const struct {
		const char *oid;
		qes_sig_scheme scheme;
		qes_md md;
	} algs[] = {
		{ "1.2.840.113549.1.1.1", QES_SIG_RSA_PKCS1, (qes_md)0 },
		{ "1.2.840.113549.1.1.11", QES_SIG_RSA_PKCS1, QES_MD_SHA256 },
		{ "1.2.840.113549.1.1.12", QES_SIG_RSA_PKCS1, QES_MD_SHA384 },
		{ "1.2.840.113549.1.1.13", QES_SIG_RSA_PKCS1, QES_MD_SHA512 },
		{ "1.2.840.113549.1.1.10", QES_SIG_RSA_PSS, (qes_md)0 },
		{ "1.2.840.10045.4.3.2", QES_SIG_ECDSA, QES_MD_SHA256 },
		{ "1.2.840.10045.4.3.3", QES_SIG_ECDSA, QES_MD_SHA384 },
		{ "1.2.840.10045.4.3.4", QES_SIG_ECDSA, QES_MD_SHA512 },
	};
	qes_cursor c, seq, oid, params, hash;
	size_t i;

	qes_cursor_init(&c, tlv, len);
	if (qes_der_expect(&c, QES_DER_SEQUENCE, &seq) != 0 ||
	    qes_der_get_oid(&seq, &oid) != 0)
		return QES_ERR_FORMAT;
	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		if (!cms_oid_is(oid.data + oid.off, qes_cursor_remaining(&oid), algs[i].oid))
			continue;
		*scheme = algs[i].scheme;
		*md = algs[i].md;
		if (algs[i].scheme == QES_SIG_RSA_PSS) {
			/* the hash is the [0] hashAlgorithm of RSASSA-PSS-params */
			uint8_t tag;
			size_t start;

			if (qes_der_expect(&seq, QES_DER_SEQUENCE, &params) != 0 ||
			    qes_der_peek_tag(&params, &tag) != 0 ||
			    tag != QES_DER_CONTEXT_CONS(0) ||
			    qes_der_expect(&params, QES_DER_CONTEXT_CONS(0), &hash) != 0)
				return QES_ERR_FORMAT;
			start = hash.off;
			*md = cms_digest_alg_md(hash.data + start, hash.len - start);
		}
		return 0;
	}
	return QES_ERR_UNSUPPORTED;
}

/* ---------------------------------------------------------------------- */
/* Parsing */

static int
get_span(qes_cursor *c, uint8_t want, cms_span *whole, qes_cursor *value)
{
	size_t start = c->off;
	int r;

	if ((r = qes_der_expect(c, want, value)) != 0)
		return r;
	whole->p = c->data + start;
	whole->len = c->off - start;
	return 0;
}

static int
small_int(const cms_span *tlv, long *out)
{
	/* INTEGER TLV of one content octet (versions are 0..5) */
	if (tlv->len != 3 || tlv->p[2] > 0x7f)
		return QES_ERR_FORMAT;
	*out = tlv->p[2];
	return 0;
}

static int
parse_signer_info(qes_cursor *sis, cms_parts *p)
{
	qes_cursor si, v;
	cms_span whole;
	uint8_t tag;
	int r;

	if ((r = qes_der_expect(sis, QES_DER_SEQUENCE, &si)) != 0)
		return r;
	if (qes_cursor_remaining(sis) != 0)
		return QES_ERR_UNSUPPORTED;	/* one signer per CMS here */
	if ((r = get_span(&si, QES_DER_INTEGER, &p->si_version, &v)) != 0)
		return r;
	if ((r = qes_der_peek_tag(&si, &tag)) != 0)
		return r;
	if (tag != QES_DER_SEQUENCE && tag != QES_DER_CONTEXT(0))
		return QES_ERR_FORMAT;
	if ((r = get_span(&si, tag, &p->si_sid, &v)) != 0 ||
	    (r = get_span(&si, QES_DER_SEQUENCE, &p->si_digest_alg, &v)) != 0 ||
	    (r = qes_der_peek_tag(&si, &tag)) != 0)
		return r;
	if (tag == QES_DER_CONTEXT_CONS(0)) {
		if ((r = get_span(&si, tag, &p->si_signed_attrs, &v)) != 0)
			return r;
		p->has_signed_attrs = 1;
		p->si_signed_attrs_val.p = v.data;
		p->si_signed_attrs_val.len = v.len;
	}
	if ((r = get_span(&si, QES_DER_SEQUENCE, &p->si_sig_alg, &v)) != 0 ||
	    (r = get_span(&si, QES_DER_OCTET_STRING, &p->si_sig, &v)) != 0)
		return r;
	p->si_sig_val.p = v.data;
	p->si_sig_val.len = v.len;
	if (qes_cursor_remaining(&si) > 0) {
		if ((r = get_span(&si, QES_DER_CONTEXT_CONS(1), &whole, &v)) != 0)
			return r;
		p->has_unsigned_attrs = 1;
		p->si_unsigned_attrs_val.p = v.data;
		p->si_unsigned_attrs_val.len = v.len;
	}
	return qes_der_end(&si);
}

int
cms_parse(const uint8_t *der, size_t len, cms_parts *p)
{
	qes_cursor c, ci, oid, ex, sd, v, enc, ec, oct;
	cms_span ver, whole;
	uint8_t tag;
	int r;

	if (der == NULL || p == NULL)
		return QES_ERR_INVALID_ARG;
	memset(p, 0, sizeof(*p));
	qes_cursor_init(&c, der, len);
	if ((r = qes_der_expect(&c, QES_DER_SEQUENCE, &ci)) != 0 ||
	    (r = qes_der_end(&c)) != 0 || (r = qes_der_get_oid(&ci, &oid)) != 0)
		return r;
	if (!cms_oid_is(oid.data + oid.off, qes_cursor_remaining(&oid), CMS_OID_SIGNED_DATA))
		return QES_ERR_FORMAT;
	if ((r = qes_der_expect(&ci, QES_DER_CONTEXT_CONS(0), &ex)) != 0 ||
	    (r = qes_der_end(&ci)) != 0 ||
	    (r = qes_der_expect(&ex, QES_DER_SEQUENCE, &sd)) != 0 ||
	    (r = qes_der_end(&ex)) != 0)
		return r;
	if ((r = get_span(&sd, QES_DER_INTEGER, &ver, &v)) != 0 ||
	    (r = small_int(&ver, &p->sd_version)) != 0 ||
	    (r = get_span(&sd, QES_DER_SET, &p->digest_algs, &v)) != 0 ||
	    (r = get_span(&sd, QES_DER_SEQUENCE, &p->encap, &enc)) != 0 ||
	    (r = qes_der_get_oid(&enc, &oid)) != 0)
		return r;
	p->econtent_type.p = oid.data + oid.off;
	p->econtent_type.len = qes_cursor_remaining(&oid);
	if (qes_cursor_remaining(&enc) > 0) {
		/* constructed (BER) OCTET STRINGs are not DER: refused */
		if ((r = qes_der_expect(&enc, QES_DER_CONTEXT_CONS(0), &ec)) != 0 ||
		    (r = qes_der_expect(&ec, QES_DER_OCTET_STRING, &oct)) != 0 ||
		    (r = qes_der_end(&ec)) != 0)
			return r;
		p->has_econtent = 1;
		p->econtent.p = oct.data;
		p->econtent.len = oct.len;
	}
	if ((r = qes_der_end(&enc)) != 0 || (r = qes_der_peek_tag(&sd, &tag)) != 0)
		return r;
	if (tag == QES_DER_CONTEXT_CONS(0)) {
		if ((r = get_span(&sd, tag, &whole, &v)) != 0)
			return r;
		p->has_certs = 1;
		p->certs.p = v.data;
		p->certs.len = v.len;
		if ((r = qes_der_peek_tag(&sd, &tag)) != 0)
			return r;
	}
	if (tag == QES_DER_CONTEXT_CONS(1)) {
		if ((r = get_span(&sd, tag, &whole, &v)) != 0)
			return r;
		p->has_crls = 1;
		p->crls.p = v.data;
		p->crls.len = v.len;
	}
	if ((r = get_span(&sd, QES_DER_SET, &p->signer_infos, &v)) != 0 ||
	    (r = qes_der_end(&sd)) != 0)
		return r;
	return parse_signer_info(&v, p);
}

/* ---------------------------------------------------------------------- */
/* Writing a whole ContentInfo */

/* With fd >= 0, out is only a staging buffer: its bytes go to fd. */
static int
flush_to(qes_buf *out, int fd)
{
	const uint8_t *p = qes_buf_data(out);
	size_t left = qes_buf_len(out);
	ssize_t n;

	if (fd < 0)
		return 0;
	while (left > 0) {
		n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return QES_ERR_IO;
		p += n;
		left -= (size_t)n;
	}
	qes_buf_reset(out);
	return 0;
}

static int
copy_file(qes_buf *out, int out_fd, const struct cms_econtent *ec)
{
	EVP_MD_CTX *mctx = NULL;
	uint8_t *chunk = NULL, got[EVP_MAX_MD_SIZE];
	unsigned glen = 0;
	size_t total = 0;
	ssize_t n;
	int fd = -1, r = QES_ERR_IO;

	if ((fd = open(ec->path, O_RDONLY | O_CLOEXEC)) < 0)
		return QES_ERR_IO;
	if ((chunk = malloc(FILE_CHUNK)) == NULL || (mctx = EVP_MD_CTX_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (EVP_DigestInit_ex(mctx, md_evp(ec->md), NULL) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	for (;;) {
		n = read(fd, chunk, FILE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if ((size_t)n > ec->len - total) {
			r = QES_ERR_DATA_INVALID;	/* grew since prepare */
			goto out;
		}
		total += (size_t)n;
		if (EVP_DigestUpdate(mctx, chunk, (size_t)n) != 1) {
			r = QES_ERR_CRYPTO;
			goto out;
		}
		if ((r = qes_buf_put(out, chunk, (size_t)n)) != 0 ||
		    (r = flush_to(out, out_fd)) != 0)
			goto out;
		r = QES_ERR_IO;
	}
	if (EVP_DigestFinal_ex(mctx, got, &glen) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	/* a file changed between prepare and finish would make a broken CMS */
	r = total == ec->len && glen == qes_md_len(ec->md) &&
	    CRYPTO_memcmp(got, ec->expect, glen) == 0 ? 0 : QES_ERR_DATA_INVALID;
out:
	EVP_MD_CTX_free(mctx);
	free(chunk);
	close(fd);
	return r;
}

/*
 * Write ContentInfo { signedData, [0] SignedData { version, digestAlgs,
 * encap, [0] certs, [1] crls, signerInfos } } with the lengths computed up
 * front, so a large eContent is copied exactly once, into out.
 * encap_prefix is the EncapsulatedContentInfo up to the eContent octets
 * (or the whole of it when ec is NULL).
 */
static int
assemble(qes_buf *out, int fd, long version, const cms_span *digest_algs,
    const cms_span *encap_prefix, const struct cms_econtent *ec,
    const qes_buf *certs, const qes_buf *crls, const qes_buf *signer_infos)
{
	static const uint8_t ver_tlv[] = { 0x02, 0x01, 0x00 };
	uint8_t oid[32];
	uint8_t ver[3];
	size_t oid_len, s, s2, ci, total;
	size_t clen = ec != NULL ? ec->len : 0;
	int r;

	memcpy(ver, ver_tlv, sizeof(ver));
	ver[2] = (uint8_t)version;
	if ((r = cms_oid_content(CMS_OID_SIGNED_DATA, oid, sizeof(oid), &oid_len)) != 0)
		return r;
	s = sizeof(ver) + digest_algs->len + encap_prefix->len + clen +
	    qes_buf_len(signer_infos);
	if (certs != NULL)
		s += cms_hdr_size(qes_buf_len(certs)) + qes_buf_len(certs);
	if (crls != NULL)
		s += cms_hdr_size(qes_buf_len(crls)) + qes_buf_len(crls);
	if (s < clen)
		return QES_ERR_LIMIT;
	s2 = cms_hdr_size(s) + s;
	ci = 2 + oid_len + cms_hdr_size(s2) + s2;
	total = cms_hdr_size(ci) + ci;
	if (fd < 0 && (r = qes_buf_reserve(out, total)) != 0)
		return r;
	if ((r = cms_put_hdr(out, QES_DER_SEQUENCE, ci)) != 0 ||
	    (r = cms_put_tlv(out, QES_DER_OID, oid, oid_len)) != 0 ||
	    (r = cms_put_hdr(out, QES_DER_CONTEXT_CONS(0), s2)) != 0 ||
	    (r = cms_put_hdr(out, QES_DER_SEQUENCE, s)) != 0 ||
	    (r = qes_buf_put(out, ver, sizeof(ver))) != 0 ||
	    (r = qes_buf_put(out, digest_algs->p, digest_algs->len)) != 0 ||
	    (r = qes_buf_put(out, encap_prefix->p, encap_prefix->len)) != 0 ||
	    (r = flush_to(out, fd)) != 0)
		return r;
	if (ec != NULL) {
		if (ec->path != NULL)
			r = copy_file(out, fd, ec);
		else if (ec->len > 0 && (r = qes_buf_put(out, ec->mem, ec->len)) == 0)
			r = flush_to(out, fd);
		if (r != 0)
			return r;
	}
	if (certs != NULL && (r = cms_put_wrapped(out, QES_DER_CONTEXT_CONS(0), certs)) != 0)
		return r;
	if (crls != NULL && (r = cms_put_wrapped(out, QES_DER_CONTEXT_CONS(1), crls)) != 0)
		return r;
	if ((r = qes_buf_put(out, qes_buf_data(signer_infos), qes_buf_len(signer_infos))) != 0)
		return r;
	return flush_to(out, fd);
}

int
cms_assemble(qes_buf *out, long version, const cms_span *digest_algs,
    const cms_span *encap_prefix, const struct cms_econtent *ec,
    const qes_buf *certs, const qes_buf *crls, const qes_buf *signer_infos)
{
	return assemble(out, -1, version, digest_algs, encap_prefix, ec, certs,
	    crls, signer_infos);
}

int
cms_assemble_fd(int fd, long version, const cms_span *digest_algs,
    const cms_span *encap_prefix, const struct cms_econtent *ec,
    const qes_buf *certs, const qes_buf *crls, const qes_buf *signer_infos)
{
	qes_buf *stage;
	int r;

	if (fd < 0)
		return QES_ERR_INVALID_ARG;
	if ((stage = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	r = assemble(stage, fd, version, digest_algs, encap_prefix, ec, certs, crls,
	    signer_infos);
	qes_buf_free(stage);
	return r;
}
