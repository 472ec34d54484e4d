/*
 * verify_cms.c - qes verify's reading of CAdES (CMS SignedData), and the
 * report helpers every verify*.c shares.
 *
 * The CMS is read by libqes's own CAdES parser (qes_cades_inspect,
 * qes_cades_verify_integrity: attributes, signature value, message digest,
 * timestamp; a signer named by issuerAndSerialNumber or by
 * subjectKeyIdentifier), and its certificates are listed in place with the
 * signer's first, OpenSSL reading each certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "qes/cades.h"
#include "qes/err.h"
#include "cms_priv.h"
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

/* Does x match the SignerIdentifier TLV (issuerAndSerialNumber, or [0]
 * subjectKeyIdentifier)? */
static int
sid_matches(X509 *x, const cms_span *sid)
{
	const ASN1_OCTET_STRING *ski;
	qes_buf *b;
	unsigned char *n = NULL, *sn = NULL;
	int nl, sl, m = 0;

	if (sid->len < 2)
		return 0;
	if (sid->p[0] == 0x80) {
		ski = X509_get0_subject_key_id(x);
		return ski != NULL && sid->len == (size_t)ASN1_STRING_length(ski) + 2 &&
		    sid->p[1] == ASN1_STRING_length(ski) &&
		    memcmp(sid->p + 2, ASN1_STRING_get0_data(ski), sid->p[1]) == 0;
	}
	if ((nl = i2d_X509_NAME(X509_get_issuer_name(x), &n)) <= 0 ||
	    (sl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &sn)) <= 0 ||
	    (b = qes_buf_new()) == NULL)
		goto out;
	if (cms_put_hdr(b, 0x30, (size_t)nl + (size_t)sl) == 0 &&
	    qes_buf_put(b, n, (size_t)nl) == 0 && qes_buf_put(b, sn, (size_t)sl) == 0)
		m = qes_buf_len(b) == sid->len && memcmp(qes_buf_data(b), sid->p, sid->len) == 0;
	qes_buf_free(b);
out:
	OPENSSL_free(n);
	OPENSSL_free(sn);
	return m;
}

/*
 * The certificates of the CMS, the signer's first. libqes's parser finds
 * them in place (no copy of an enveloped content, however large); OpenSSL
 * reads each certificate.
 */
static int
cms_certs(const uint8_t *der, size_t len, qes_verify_report *r)
{
	cms_parts p;
	cms_span *s = NULL;
	size_t n = 0, i, signer;
	int e;

	if ((e = cms_parse(der, len, &p)) != 0)
		return e;
	if (!p.has_certs)
		return 0;
	if ((s = calloc(QES_VERIFY_MAX_CERTS, sizeof(*s))) == NULL)
		return QES_ERR_ALLOC;
	if ((e = cms_split_tlvs(p.certs.p, p.certs.len, s, QES_VERIFY_MAX_CERTS, &n)) != 0)
		goto out;
	signer = n;
	/* the signer's certificate first, then the others as found */
	for (i = 0; i < n && signer == n; i++) {
		const unsigned char *q = s[i].p;
		X509 *x;

		if (s[i].p[0] != 0x30 || s[i].len > 0x7fffffff ||
		    (x = d2i_X509(NULL, &q, (long)s[i].len)) == NULL)
			continue;	/* other CertificateChoices */
		if (sid_matches(x, &p.si_sid))
			signer = i;
		X509_free(x);
	}
	if (signer < n) {
		if ((e = verify_add_cert(r, s[signer].p, s[signer].len)) != 0)
			goto out;
		r->signer_found = 1;
	}
	for (i = 0; i < n && e == 0; i++)
		if (i != signer && s[i].p[0] == 0x30)
			e = verify_add_cert(r, s[i].p, s[i].len);
out:
	ERR_clear_error();
	free(s);
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
