/*
 * verify_cms.c - qes verify's reading of CAdES (CMS SignedData), and the
 * report helpers every verify*.c shares.
 *
 * The CMS is read twice: by libqes's own CAdES parser (qes_cades_inspect,
 * qes_cades_verify_integrity: attributes, signature value, message digest,
 * timestamp) and by OpenSSL's, only to list the certificates it carries
 * and which one is the signer's (CMS_SignerInfo_cert_cmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qes/cades.h"
#include "qes/err.h"
#include "qes/tsp.h"
#include "verify_priv.h"

void
qes_verify_report_init(qes_verify_report *r)
{
	memset(r, 0, sizeof(*r));
	r->integrity_ok = 1;
}

void
qes_verify_report_clear(qes_verify_report *r)
{
	if (r == NULL)
		return;
	qes_buf_free(r->certs);
	qes_buf_free(r->ts_token);
	qes_verify_report_init(r);
}

void
verify_fail(qes_verify_report *r, const char *fmt, ...)
{
	va_list ap;

	if (!r->integrity_ok)
		return;		/* keep the first reason */
	r->integrity_ok = 0;
	va_start(ap, fmt);
	vsnprintf(r->integrity_err, sizeof(r->integrity_err), fmt, ap);
	va_end(ap);
}

int
verify_add_cert(qes_verify_report *r, const uint8_t *der, size_t len)
{
	if (r->certs == NULL && (r->certs = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	return qes_buf_put(r->certs, der, len);
}

int
verify_push(qes_verify_report **arr, size_t *n, qes_verify_report **out)
{
	qes_verify_report *a;

	if (*n >= QES_VERIFY_MAX_SIGS)
		return QES_ERR_LIMIT;
	if ((a = realloc(*arr, (*n + 1) * sizeof(*a))) == NULL)
		return QES_ERR_ALLOC;
	*arr = a;
	qes_verify_report_init(&a[*n]);
	*out = &a[(*n)++];
	return 0;
}

void
verify_free_all(qes_verify_report *arr, size_t n)
{
	size_t i;

	for (i = 0; arr != NULL && i < n; i++)
		qes_verify_report_clear(&arr[i]);
	free(arr);
}

int
verify_b64_decode(const char *s, size_t len, qes_buf *out)
{
	size_t pad = 0, full, missing;
	char *tmp = NULL;
	uint8_t *bin = NULL;
	int n, r;

	while (len > 0 && s[len - 1] == '=' && pad < 2) {
		len--;
		pad++;
	}
	if (len % 4 == 1)
		return QES_ERR_FORMAT;
	if (len > (size_t)256 * 1024 * 1024)
		return QES_ERR_LIMIT;
	/* EVP_DecodeBlock wants whole quanta: put the padding back */
	full = (len + 3) / 4 * 4;
	missing = full - len;
	if ((tmp = malloc(full + 1)) == NULL || (bin = malloc(full / 4 * 3 + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	memcpy(tmp, s, len);
	memset(tmp + len, '=', missing);
	n = EVP_DecodeBlock(bin, (const unsigned char *)tmp, (int)full);
	/* it counts the padding as zero bytes */
	if (n < 0 || (size_t)n < missing) {
		r = QES_ERR_FORMAT;
		goto out;
	}
	r = qes_buf_put(out, bin, (size_t)n - missing);
out:
	free(tmp);
	free(bin);
	return r;
}

int
verify_ts_digest(qes_verify_report *r, const uint8_t *data, size_t len)
{
	qes_tsp_token_info ti;
	int e;

	if ((e = qes_tsp_token_parse(qes_buf_data(r->ts_token), qes_buf_len(r->ts_token),
	    &ti)) != 0)
		return e;
	if (ti.md == 0)
		return QES_ERR_FORMAT;
	r->ts_md = ti.md;
	r->ts_digest_len = qes_md_len(ti.md);
	return qes_md_digest(ti.md, data, len, r->ts_digest);
}

int
qes_verify_cms_md(const uint8_t *cms, size_t len, qes_md *md)
{
	qes_cades_report rep;
	int r;

	if ((r = qes_cades_inspect(cms, len, &rep)) != 0)
		return r;
	if (rep.md == 0)
		return QES_ERR_FORMAT;
	*md = rep.md;
	return 0;
}

/* The certificates OpenSSL finds in the CMS, the signer's first. */
static int
cms_certs(const uint8_t *der, size_t len, qes_verify_report *r)
{
	const unsigned char *p = der;
	CMS_ContentInfo *ci;
	STACK_OF(X509) *certs = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	CMS_SignerInfo *si = NULL;
	unsigned char *out;
	int i, n, e = 0, pass;

	if (len > 0x7fffffff || (ci = d2i_CMS_ContentInfo(NULL, &p, (long)len)) == NULL)
		return QES_ERR_FORMAT;
	if ((sis = CMS_get0_SignerInfos(ci)) != NULL && sk_CMS_SignerInfo_num(sis) == 1)
		si = sk_CMS_SignerInfo_value(sis, 0);
	certs = CMS_get1_certs(ci);
	/* two passes: the signer's certificate, then the others */
	for (pass = 0; pass < 2 && e == 0; pass++) {
		for (i = 0; i < sk_X509_num(certs) && e == 0; i++) {
			X509 *x = sk_X509_value(certs, i);
			int is_signer = si != NULL && CMS_SignerInfo_cert_cmp(si, x) == 0;

			if (is_signer != (pass == 0))
				continue;
			out = NULL;
			if ((n = i2d_X509(x, &out)) <= 0) {
				e = QES_ERR_CRYPTO;
				break;
			}
			e = verify_add_cert(r, out, (size_t)n);
			OPENSSL_free(out);
			if (is_signer)
				r->signer_found = 1;
		}
	}
	sk_X509_pop_free(certs, X509_free);
	CMS_ContentInfo_free(ci);
	return e;
}

int
qes_verify_cms(const uint8_t *cms, size_t len, const uint8_t *content_digest,
    size_t digest_len, qes_verify_report *r)
{
	qes_cades_report rep;
	qes_buf *sigval = NULL;
	struct tm tm;
	time_t t;
	int e;

	if (cms == NULL || r == NULL)
		return QES_ERR_INVALID_ARG;
	r->format = QES_ADES_CADES;
	if ((e = qes_cades_inspect(cms, len, &rep)) != 0)
		return e;
	r->level = rep.level;
	r->vd_ocsps = rep.nocsps;
	r->vd_crls = rep.ncrls;
	if (rep.level >= QES_ADES_B_LT)
		r->vd_certs = rep.ncerts;
	snprintf(r->algorithm, sizeof(r->algorithm), "%s %s",
	    qes_sig_scheme_name(rep.scheme) != NULL ? qes_sig_scheme_name(rep.scheme) : "?",
	    qes_md_name(rep.md) != NULL ? qes_md_name(rep.md) : "?");
	if (rep.has_signing_time) {
		t = (time_t)rep.signing_time;
		if (gmtime_r(&t, &tm) != NULL)
			strftime(r->signing_time, sizeof(r->signing_time),
			    "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if ((e = cms_certs(cms, len, r)) != 0)
		return e;

	if (!rep.enveloping && content_digest == NULL) {
		r->needs_content = 1;
		verify_fail(r, "detached signature: the signed content is needed (--content)");
	} else if (!rep.signer_found)
		verify_fail(r, "the signer's certificate is not in the CMS");
	else if (!rep.signature_ok)
		verify_fail(r, "the signature value does not verify over the signed attributes");
	else if (!rep.has_message_digest || !rep.has_content_type)
		verify_fail(r, "the signed attributes lack %s",
		    rep.has_message_digest ? "content-type" : "message-digest");
	else if ((e = qes_cades_verify_integrity(cms, len,
	    rep.enveloping ? NULL : content_digest, rep.enveloping ? 0 : digest_len,
	    rep.enveloping ? 0 : 1)) != 0)
		verify_fail(r, "%s", e == QES_ERR_SIGNATURE_INVALID ?
		    "message-digest does not match the content" :
		    e == QES_ERR_INVALID_ARG ? "the content digest has the wrong length" :
		    qes_strerror(e));

	if (rep.has_timestamp) {
		if ((r->ts_token = qes_buf_new()) == NULL || (sigval = qes_buf_new()) == NULL) {
			qes_buf_free(sigval);
			return QES_ERR_ALLOC;
		}
		e = qes_cades_timestamp_token(cms, len, r->ts_token, sigval);
		if (e == 0 && verify_ts_digest(r, qes_buf_data(sigval), qes_buf_len(sigval)) != 0)
			r->ts_md = (qes_md)0;	/* unreadable token: the caller says so */
		qes_buf_free(sigval);
		if (e != 0)
			return e;
	}
	return 0;
}
