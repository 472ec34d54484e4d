/*
 * cades.c - CAdES baseline signatures (cades.h): the two phases, the level
 * extensions B-T and B-LT, and the report qes verify prints.
 *
 * The DER is written and read by cms.c (cms_priv.h explains why not with
 * OpenSSL's CMS API). What is signed is exactly the DER SET OF signed
 * attributes computed at prepare, so the digest given to the token, the
 * one finish() checks and the bytes in the output are the same by
 * construction.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert_priv.h"
#include "cms_priv.h"
#include "qes/cades.h"
#include "qes/err.h"
#include "qes/revocation.h"
#include "qes/tsp.h"

/* at most this many certificates / revocation entries / attributes in a CMS we read */
#define MAX_ITEMS 256

struct qes_cades_ctx {
	const qes_cert *signer;
	const qes_cert *chain[QES_CADES_MAX_CHAIN];
	size_t nchain;
	qes_md md;
	qes_sig_scheme scheme;
	int enveloping;
	const uint8_t *content;
	size_t content_len;
	char *content_path;
	uint8_t content_digest[QES_MD_MAX_LEN];
	qes_buf *attrs;			/* DER SET OF Attribute (tag 0x31) */
	uint8_t tbs[QES_MD_MAX_LEN];
	int finished;
};

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

/* ---------------------------------------------------------------------- */
/* Signed attributes */

static int
put_attr(qes_buf *out, const char *oid, const qes_buf *value_tlv)
{
	qes_buf *a;
	int r;

	if ((a = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = cms_put_oid(a, oid)) == 0 &&
	    (r = cms_put_wrapped(a, QES_DER_SET, value_tlv)) == 0)
		r = cms_put_wrapped(out, QES_DER_SEQUENCE, a);
	qes_buf_free(a);
	return r;
}

/* UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5652 11.3) */
static int
put_time(qes_buf *b, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char s[32];
	int n;

	if (gmtime_r(&tt, &tm) == NULL)
		return QES_ERR_INVALID_ARG;
	if (tm.tm_year >= 50 && tm.tm_year < 150) {
		n = snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
		    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		return cms_put_tlv(b, 0x17, s, (size_t)n);
	}
	n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return cms_put_tlv(b, 0x18, s, (size_t)n);
}

/* IssuerAndSerialNumber of a certificate (the SignerIdentifier we use) */
static int
put_issuer_serial(qes_buf *b, const qes_cert *c, int general_names)
{
	X509 *x = qes_cert_x509(c);
	unsigned char *name = NULL, *serial = NULL;
	qes_buf *in = NULL;
	int nl, sl, r = QES_ERR_CRYPTO;

	if ((nl = i2d_X509_NAME(X509_get_issuer_name(x), &name)) <= 0 ||
	    (sl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &serial)) <= 0)
		goto out;
	if ((in = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (general_names) {
		/* IssuerSerial.issuer is GeneralNames { directoryName [4] Name } */
		size_t gn = cms_hdr_size((size_t)nl) + (size_t)nl;

		if ((r = cms_put_hdr(in, QES_DER_SEQUENCE, gn)) != 0 ||
		    (r = cms_put_tlv(in, QES_DER_CONTEXT_CONS(4), name, (size_t)nl)) != 0)
			goto out;
	} else if ((r = qes_buf_put(in, name, (size_t)nl)) != 0) {
		goto out;
	}
	if ((r = qes_buf_put(in, serial, (size_t)sl)) != 0)
		goto out;
	r = cms_put_wrapped(b, QES_DER_SEQUENCE, in);
out:
	qes_buf_free(in);
	OPENSSL_free(serial);
	OPENSSL_free(name);
	return r;
}

/*
 * signing-certificate-v2 (RFC 5035): SigningCertificateV2 { certs SEQUENCE
 * OF ESSCertIDv2 { hashAlgorithm DEFAULT sha256, certHash, issuerSerial } }
 * with the signer's certificate only.
 */
static int
put_signing_cert_v2(qes_buf *attrs, const qes_cert *signer, qes_md md)
{
	qes_buf *id = NULL, *tmp = NULL, *val = NULL;
	uint8_t h[QES_MD_MAX_LEN];
	const uint8_t *der;
	size_t len;
	int r;

	if ((id = qes_buf_new()) == NULL || (tmp = qes_buf_new()) == NULL ||
	    (val = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	der = qes_cert_der(signer, &len);
	if ((r = qes_md_digest(md, der, len, h)) != 0)
		goto out;
	if (md != QES_MD_SHA256 && (r = cms_put_digest_alg(id, md)) != 0)
		goto out;
	if ((r = cms_put_tlv(id, QES_DER_OCTET_STRING, h, qes_md_len(md))) != 0 ||
	    (r = put_issuer_serial(id, signer, 1)) != 0 ||
	    (r = cms_put_wrapped(tmp, QES_DER_SEQUENCE, id)) != 0)	/* ESSCertIDv2 */
		goto out;
	qes_buf_reset(id);
	if ((r = cms_put_wrapped(id, QES_DER_SEQUENCE, tmp)) != 0 ||	/* SEQUENCE OF */
	    (r = cms_put_wrapped(val, QES_DER_SEQUENCE, id)) != 0)	/* SigningCertificateV2 */
		goto out;
	r = put_attr(attrs, CMS_OID_SIGNING_CERT_V2, val);
out:
	qes_buf_free(val);
	qes_buf_free(tmp);
	qes_buf_free(id);
	return r;
}

static int
build_signed_attrs(qes_cades_ctx *ctx, int omit_time, int64_t when)
{
	qes_buf *list = NULL, *v = NULL;
	cms_span spans[4];
	size_t n = 0;
	int r;

	if ((list = qes_buf_new()) == NULL || (v = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	/* the attributes one after another in list, then sorted into the SET */
	if ((r = cms_put_oid(v, CMS_OID_DATA)) != 0 ||
	    (r = put_attr(list, CMS_OID_CONTENT_TYPE, v)) != 0)
		goto out;
	qes_buf_reset(v);
	if ((r = cms_put_tlv(v, QES_DER_OCTET_STRING, ctx->content_digest,
	    qes_md_len(ctx->md))) != 0 ||
	    (r = put_attr(list, CMS_OID_MESSAGE_DIGEST, v)) != 0)
		goto out;
	if (!omit_time) {
		qes_buf_reset(v);
		if ((r = put_time(v, when != 0 ? when : (int64_t)time(NULL))) != 0 ||
		    (r = put_attr(list, CMS_OID_SIGNING_TIME, v)) != 0)
			goto out;
	}
	if ((r = put_signing_cert_v2(list, ctx->signer, ctx->md)) != 0)
		goto out;
	if ((r = cms_split_tlvs(qes_buf_data(list), qes_buf_len(list), spans, 4, &n)) != 0 ||
	    (r = cms_put_set_of(ctx->attrs, QES_DER_SET, spans, n)) != 0)
		goto out;
	r = qes_md_digest(ctx->md, qes_buf_data(ctx->attrs), qes_buf_len(ctx->attrs),
	    ctx->tbs);
out:
	qes_buf_free(v);
	qes_buf_free(list);
	return r;
}

/* ---------------------------------------------------------------------- */
/* Phase one */

int
qes_cades_prepare(const qes_cades_params *p, qes_cades_ctx **out)
{
	qes_cades_ctx *ctx = NULL;
	size_t i, sources;
	int r;

	if (p == NULL || out == NULL || p->signer == NULL ||
	    (p->chain == NULL && p->nchain != 0))
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (p->nchain > QES_CADES_MAX_CHAIN)
		return QES_ERR_LIMIT;
	if (md_evp(p->md) == NULL)
		return QES_ERR_UNSUPPORTED;
	if (p->scheme != QES_SIG_RSA_PKCS1 && p->scheme != QES_SIG_RSA_PSS &&
	    p->scheme != QES_SIG_ECDSA)
		return QES_ERR_UNSUPPORTED;
	if ((qes_cert_schemes(p->signer) & (1u << p->scheme)) == 0)
		return QES_ERR_KEY_UNSUITABLE;
	sources = (p->content != NULL || p->content_len != 0) +
	    (p->content_path != NULL) + (p->content_digest != NULL);
	if (sources != 1)
		return QES_ERR_INVALID_ARG;
	if (p->content_len != 0 && p->content == NULL)
		return QES_ERR_INVALID_ARG;
	if (p->content_digest != NULL &&
	    (p->enveloping || p->content_digest_len != qes_md_len(p->md)))
		return QES_ERR_INVALID_ARG;

	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	ctx->signer = p->signer;
	for (i = 0; i < p->nchain; i++) {
		if (p->chain[i] == NULL) {
			r = QES_ERR_INVALID_ARG;
			goto fail;
		}
		ctx->chain[i] = p->chain[i];
	}
	ctx->nchain = p->nchain;
	ctx->md = p->md;
	ctx->scheme = p->scheme;
	ctx->enveloping = p->enveloping != 0;
	if ((ctx->attrs = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	if (p->content_digest != NULL) {
		memcpy(ctx->content_digest, p->content_digest, p->content_digest_len);
	} else if (p->content_path != NULL) {
		if ((ctx->content_path = strdup(p->content_path)) == NULL) {
			r = QES_ERR_ALLOC;
			goto fail;
		}
		if ((r = qes_md_file(p->md, p->content_path, ctx->content_digest)) != 0)
			goto fail;
	} else {
		ctx->content = p->content;
		ctx->content_len = p->content_len;
		if ((r = qes_md_digest(p->md, p->content != NULL ? p->content :
		    (const uint8_t *)"", p->content_len, ctx->content_digest)) != 0)
			goto fail;
	}
	if ((r = build_signed_attrs(ctx, p->omit_signing_time, p->signing_time)) != 0)
		goto fail;
	*out = ctx;
	return 0;
fail:
	qes_cades_free(ctx);
	return r;
}

void
qes_cades_free(qes_cades_ctx *ctx)
{
	if (ctx == NULL)
		return;
	qes_buf_free(ctx->attrs);
	free(ctx->content_path);
	OPENSSL_cleanse(ctx, sizeof(*ctx));
	free(ctx);
}

const uint8_t *
qes_cades_tbs(const qes_cades_ctx *ctx, size_t *len)
{
	if (ctx == NULL || len == NULL)
		return NULL;
	*len = qes_md_len(ctx->md);
	return ctx->tbs;
}

const uint8_t *
qes_cades_signed_attrs(const qes_cades_ctx *ctx, size_t *len)
{
	if (ctx == NULL || len == NULL)
		return NULL;
	*len = qes_buf_len(ctx->attrs);
	return qes_buf_data(ctx->attrs);
}

qes_md
qes_cades_md(const qes_cades_ctx *ctx)
{
	return ctx != NULL ? ctx->md : (qes_md)0;
}

qes_sig_scheme
qes_cades_scheme(const qes_cades_ctx *ctx)
{
	return ctx != NULL ? ctx->scheme : (qes_sig_scheme)0;
}

/* ---------------------------------------------------------------------- */
/* Assembly */

static size_t
ec_field_len(const qes_cert *c)
{
	return ((size_t)qes_cert_get_info(c)->key_bits + 7) / 8;
}

/* finish into cms_out, or (out_fd >= 0) written to out_fd as produced */
static int
finish(qes_cades_ctx *ctx, const uint8_t *sig, size_t sig_len, qes_buf *cms_out,
    int out_fd)
{
	qes_buf *sigder = NULL, *si = NULL, *sis = NULL, *certs = NULL,
	    *dalgs = NULL, *encap = NULL, *tmp = NULL;
	const uint8_t *der, *sv = sig;
	size_t len, sv_len = sig_len, i, alen, out_len0;
	struct cms_econtent ec;
	cms_span dspan, espan;
	int r;

	if (ctx == NULL || sig == NULL || (cms_out == NULL) == (out_fd < 0))
		return QES_ERR_INVALID_ARG;
	if (ctx->finished)
		return QES_ERR_INVALID_ARG;
	out_len0 = cms_out != NULL ? qes_buf_len(cms_out) : 0;
	if ((r = qes_cert_verify_digest(ctx->signer, ctx->scheme, ctx->md, ctx->tbs,
	    qes_md_len(ctx->md), sig, sig_len)) != 0)
		return r;
	if ((sigder = qes_buf_new()) == NULL || (si = qes_buf_new()) == NULL ||
	    (sis = qes_buf_new()) == NULL || (certs = qes_buf_new()) == NULL ||
	    (dalgs = qes_buf_new()) == NULL || (encap = qes_buf_new()) == NULL ||
	    (tmp = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (ctx->scheme == QES_SIG_ECDSA) {
		/* CMS carries Ecdsa-Sig-Value DER; a raw r||s value is converted */
		if (qes_ecdsa_der_to_raw(sig, sig_len, ec_field_len(ctx->signer), tmp) != 0) {
			if ((r = qes_ecdsa_raw_to_der(sig, sig_len, sigder)) != 0)
				goto out;
			sv = qes_buf_data(sigder);
			sv_len = qes_buf_len(sigder);
		}
		qes_buf_reset(tmp);
	}

	/* SignerInfo: version 1 with IssuerAndSerialNumber */
	alen = qes_buf_len(ctx->attrs);
	{
		/* the [0] IMPLICIT signed attributes: the SET's content re-tagged */
		qes_cursor c, v;
		uint8_t tag;

		qes_cursor_init(&c, qes_buf_data(ctx->attrs), alen);
		if ((r = qes_der_get_tlv(&c, &tag, &v)) != 0)
			goto out;
		if ((r = qes_buf_put(tmp, "\x02\x01\x01", 3)) != 0 ||
		    (r = put_issuer_serial(tmp, ctx->signer, 0)) != 0 ||
		    (r = cms_put_digest_alg(tmp, ctx->md)) != 0 ||
		    (r = cms_put_tlv(tmp, QES_DER_CONTEXT_CONS(0), v.data, v.len)) != 0 ||
		    (r = cms_put_sig_alg(tmp, ctx->scheme, ctx->md)) != 0 ||
		    (r = cms_put_tlv(tmp, QES_DER_OCTET_STRING, sv, sv_len)) != 0 ||
		    (r = cms_put_wrapped(si, QES_DER_SEQUENCE, tmp)) != 0 ||
		    (r = cms_put_wrapped(sis, QES_DER_SET, si)) != 0)
			goto out;
	}
	/* certificates: the signer, then its chain (RFC 5652 leaves the order free) */
	der = qes_cert_der(ctx->signer, &len);
	if ((r = qes_buf_put(certs, der, len)) != 0)
		goto out;
	for (i = 0; i < ctx->nchain; i++) {
		der = qes_cert_der(ctx->chain[i], &len);
		if ((r = qes_buf_put(certs, der, len)) != 0)
			goto out;
	}
	qes_buf_reset(tmp);
	if ((r = cms_put_digest_alg(tmp, ctx->md)) != 0 ||
	    (r = cms_put_wrapped(dalgs, QES_DER_SET, tmp)) != 0)
		goto out;
	dspan.p = qes_buf_data(dalgs);
	dspan.len = qes_buf_len(dalgs);

	/* EncapsulatedContentInfo, up to the content octets */
	memset(&ec, 0, sizeof(ec));
	if (ctx->enveloping) {
		size_t clen = ctx->content_len, e1, e3, oidlen;
		uint8_t oid[32];
		struct stat st;

		if (ctx->content_path != NULL) {
			if (stat(ctx->content_path, &st) != 0 || !S_ISREG(st.st_mode)) {
				r = QES_ERR_IO;
				goto out;
			}
			clen = (size_t)st.st_size;
			ec.path = ctx->content_path;
			ec.md = ctx->md;
			ec.expect = ctx->content_digest;
		} else {
			ec.mem = ctx->content;
		}
		ec.len = clen;
		if ((r = cms_oid_content(CMS_OID_DATA, oid, sizeof(oid), &oidlen)) != 0)
			goto out;
		e1 = cms_hdr_size(clen) + clen;			/* OCTET STRING */
		e3 = 2 + oidlen + cms_hdr_size(e1) + e1;	/* OID, [0] */
		if ((r = cms_put_hdr(encap, QES_DER_SEQUENCE, e3)) != 0 ||
		    (r = cms_put_tlv(encap, QES_DER_OID, oid, oidlen)) != 0 ||
		    (r = cms_put_hdr(encap, QES_DER_CONTEXT_CONS(0), e1)) != 0 ||
		    (r = cms_put_hdr(encap, QES_DER_OCTET_STRING, clen)) != 0)
			goto out;
	} else {
		qes_buf_reset(tmp);
		if ((r = cms_put_oid(tmp, CMS_OID_DATA)) != 0 ||
		    (r = cms_put_wrapped(encap, QES_DER_SEQUENCE, tmp)) != 0)
			goto out;
	}
	espan.p = qes_buf_data(encap);
	espan.len = qes_buf_len(encap);
	if (out_fd >= 0)
		r = cms_assemble_fd(out_fd, 1, &dspan, &espan,
		    ctx->enveloping ? &ec : NULL, certs, NULL, sis);
	else
		r = cms_assemble(cms_out, 1, &dspan, &espan,
		    ctx->enveloping ? &ec : NULL, certs, NULL, sis);
	if (r == 0)
		ctx->finished = 1;
out:
	if (r != 0 && cms_out != NULL)
		(void)qes_buf_truncate(cms_out, out_len0);
	qes_buf_free(tmp);
	qes_buf_free(encap);
	qes_buf_free(dalgs);
	qes_buf_free(certs);
	qes_buf_free(sis);
	qes_buf_free(si);
	qes_buf_free(sigder);
	return r;
}

int
qes_cades_finish(qes_cades_ctx *ctx, const uint8_t *sig, size_t sig_len,
    qes_buf *cms_out)
{
	if (cms_out == NULL)
		return QES_ERR_INVALID_ARG;
	return finish(ctx, sig, sig_len, cms_out, -1);
}

/*
 * Like qes_buf_write_file(): a temporary file beside path, fsync, rename,
 * so path is either absent/old or the complete CMS.
 */
int
qes_cades_finish_file(qes_cades_ctx *ctx, const uint8_t *sig, size_t sig_len,
    const char *path, unsigned mode)
{
	char *tmp = NULL;
	int fd = -1, r;

	if (ctx == NULL || sig == NULL || path == NULL || path[0] == '\0')
		return QES_ERR_INVALID_ARG;
	if ((r = qes_file_tmp_beside(path, &tmp, &fd)) != 0)
		return r;
	if ((r = finish(ctx, sig, sig_len, NULL, fd)) != 0)
		qes_file_discard(fd, tmp);
	else
		r = qes_file_commit(fd, tmp, path, mode);
	if (r != 0)
		ctx->finished = 0;	/* nothing was delivered: finish may be retried */
	free(tmp);
	return r;
}
