/*
 * revocation.c - OCSP and CRL checks and B-LT validation data (revocation.h).
 *
 * OpenSSL does the cryptography and the DER decoding (OCSP_basic_verify,
 * X509_CRL_verify, d2i_*, all bounds-checked); this file fixes the policy:
 * who may sign an answer, how fresh it must be, which URLs are fetched
 * (http/https only, through fetch.c with a size cap per kind), and it
 * keeps the DER it accepted so that it can be embedded unchanged.
 * Freshness is judged against cfg->now so that tests can move the clock.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert_priv.h"
#include "qes/err.h"
#include "qes/fetch.h"
#include "qes/revocation.h"

#define OCSP_NONCE_BYTES 16
/* a qes_vdata holds at most this many blobs of each kind */
#define VDATA_MAX_ITEMS 64

static void rev_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rev_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *
qes_rev_status_name(qes_rev_status s)
{
	switch (s) {
	case QES_REV_GOOD: return "good";
	case QES_REV_REVOKED: return "revoked";
	case QES_REV_UNKNOWN: return "unknown";
	}
	return NULL;
}

static int64_t
cfg_now(const qes_rev_config *cfg)
{
	return cfg != NULL && cfg->now != 0 ? cfg->now : (int64_t)time(NULL);
}

static int64_t
cfg_skew(const qes_rev_config *cfg)
{
	return cfg != NULL && cfg->clock_skew_s > 0 ? cfg->clock_skew_s :
	    QES_REV_DEFAULT_SKEW_S;
}

static int
asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return QES_ERR_FORMAT;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* the certificate's subject CN for messages (never document content) */
static const char *
cert_name(const qes_cert *c)
{
	const qes_cert_info *ci = qes_cert_get_info(c);

	if (ci == NULL)
		return "certificate";
	return ci->subject_cn[0] != '\0' ? ci->subject_cn : ci->subject;
}

/* ---------------------------------------------------------------------- */
/* OCSP */

static int
ocsp_url_of(const qes_cert *cert, const qes_rev_config *cfg, char *url, size_t len)
{
	STACK_OF(OPENSSL_STRING) *urls;
	int i, r = QES_ERR_NOT_FOUND;

	if (cfg != NULL && cfg->ocsp_url != NULL) {
		if (!qes_fetch_url_ok(cfg->ocsp_url) || strlen(cfg->ocsp_url) >= len)
			return QES_ERR_INVALID_ARG;
		snprintf(url, len, "%s", cfg->ocsp_url);
		return 0;
	}
	if ((urls = X509_get1_ocsp(qes_cert_x509(cert))) == NULL)
		return QES_ERR_NOT_FOUND;
	for (i = 0; i < sk_OPENSSL_STRING_num(urls); i++) {
		const char *u = sk_OPENSSL_STRING_value(urls, i);

		if (qes_fetch_url_ok(u) && strlen(u) < len) {
			snprintf(url, len, "%s", u);
			r = 0;
			break;
		}
	}
	X509_email_free(urls);
	return r;
}

static OCSP_CERTID *
ocsp_id(const qes_cert *cert, const qes_cert *issuer)
{
	/* SHA-1 CertIDs are what every responder understands (RFC 6960 4.1.1) */
	return OCSP_cert_to_id(EVP_sha1(), qes_cert_x509(cert), qes_cert_x509(issuer));
}

int
qes_ocsp_check_response(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, const uint8_t *nonce, size_t nonce_len,
    const uint8_t *der, size_t len, qes_rev_result *res, char *err,
    size_t errlen)
{
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_REQUEST *req = NULL;
	OCSP_CERTID *id = NULL;
	X509_STORE *store = NULL;
	STACK_OF(X509) *certs = NULL;
	ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
	const unsigned char *p = der;
	int64_t now = cfg_now(cfg), skew = cfg_skew(cfg), max_age;
	int status, reason = -1, st, r = QES_ERR_REVOCATION;

	if (cert == NULL || issuer == NULL || der == NULL || res == NULL ||
	    (nonce == NULL && nonce_len != 0) || nonce_len > 64)
		return QES_ERR_INVALID_ARG;
	memset(res, 0, sizeof(*res));
	if (len > QES_REV_MAX_OCSP_BYTES) {
		rev_err(err, errlen, "OCSP response larger than %zu bytes",
		    QES_REV_MAX_OCSP_BYTES);
		return QES_ERR_LIMIT;
	}
	max_age = cfg != NULL && cfg->ocsp_max_age_s > 0 ? cfg->ocsp_max_age_s :
	    QES_REV_DEFAULT_OCSP_MAX_AGE_S;
	if ((resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) == NULL ||
	    p != der + len) {
		rev_err(err, errlen, "not a DER OCSP response");
		r = QES_ERR_FORMAT;
		goto out;
	}
	if ((st = OCSP_response_status(resp)) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		rev_err(err, errlen, "OCSP responder answered %s",
		    OCSP_response_status_str(st));
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
		rev_err(err, errlen, "OCSP response is not a basic response");
		r = QES_ERR_FORMAT;
		goto out;
	}
	if (nonce != NULL && nonce_len > 0) {
		/*
		 * A responder that does not support nonces (-1: absent in the
		 * answer) is accepted - many precompute their answers - and
		 * freshness is then all we rely on; a different nonce is not.
		 */
		if ((req = OCSP_REQUEST_new()) == NULL ||
		    !OCSP_request_add1_nonce(req, (unsigned char *)(uintptr_t)nonce,
		        (int)nonce_len)) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if (OCSP_check_nonce(req, bs) == 0) {
			rev_err(err, errlen, "OCSP nonce mismatch: the answer is not "
			    "for this request");
			goto out;
		}
	}
	/*
	 * The issuer is the only trust anchor (partial chain): the answer is
	 * signed by it, or by a responder it certified for OCSPSigning, which
	 * OCSP_basic_verify checks (RFC 6960 4.2.2.2).
	 */
	if ((store = X509_STORE_new()) == NULL || (certs = sk_X509_new_null()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (!X509_STORE_add_cert(store, qes_cert_x509(issuer)) ||
	    !X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) ||
	    !sk_X509_push(certs, qes_cert_x509(issuer))) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	{
		X509_VERIFY_PARAM *vp = X509_STORE_get0_param(store);

		X509_VERIFY_PARAM_set_time(vp, (time_t)now);
	}
	if (OCSP_basic_verify(bs, certs, store, 0) != 1) {
		unsigned long e = ERR_peek_last_error();

		rev_err(err, errlen, "OCSP response signature or signer not acceptable: %s",
		    e != 0 && ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "verification failed");
		goto out;
	}
	if ((id = ocsp_id(cert, issuer)) == NULL) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if (OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd,
	    &nextupd) != 1) {
		rev_err(err, errlen, "OCSP response does not answer for %s",
		    cert_name(cert));
		goto out;
	}
	if (asn1_time_unix(thisupd, &res->this_update) != 0 ||
	    (nextupd != NULL && asn1_time_unix(nextupd, &res->next_update) != 0)) {
		rev_err(err, errlen, "OCSP response has unreadable times");
		r = QES_ERR_FORMAT;
		goto out;
	}
	if (res->this_update > now + skew) {
		rev_err(err, errlen, "OCSP response thisUpdate is in the future");
		goto out;
	}
	if (res->next_update != 0 && res->next_update < now - skew) {
		rev_err(err, errlen, "OCSP response is stale (nextUpdate passed)");
		goto out;
	}
	if (now - res->this_update > max_age) {
		rev_err(err, errlen, "OCSP response is older than %lld s",
		    (long long)max_age);
		goto out;
	}
	res->source = QES_REV_SRC_OCSP;
	res->reason = -1;
	switch (status) {
	case V_OCSP_CERTSTATUS_GOOD:
		res->status = QES_REV_GOOD;
		break;
	case V_OCSP_CERTSTATUS_REVOKED:
		res->status = QES_REV_REVOKED;
		res->reason = reason;
		if (rev != NULL)
			(void)asn1_time_unix(rev, &res->revocation_time);
		break;
	default:
		res->status = QES_REV_UNKNOWN;
		break;
	}
	r = 0;
out:
	ERR_clear_error();
	sk_X509_free(certs);
	X509_STORE_free(store);
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(req);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	return r;
}

int
qes_ocsp_check(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, qes_rev_result *res, qes_buf *der_out,
    char *err, size_t errlen)
{
	OCSP_REQUEST *req = NULL;
	OCSP_CERTID *id = NULL;
	qes_buf *resp = NULL;
	qes_fetch_opts fo;
	uint8_t nonce[OCSP_NONCE_BYTES];
	unsigned char *reqder = NULL;
	char url[QES_FETCH_MAX_URL_LEN + 1], ferr[256];
	int n, r;

	if (cert == NULL || issuer == NULL || res == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = ocsp_url_of(cert, cfg, url, sizeof(url))) != 0) {
		rev_err(err, errlen, "%s names no usable OCSP responder", cert_name(cert));
		return r;
	}
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return QES_ERR_CRYPTO;
	r = QES_ERR_ALLOC;
	if ((req = OCSP_REQUEST_new()) == NULL || (id = ocsp_id(cert, issuer)) == NULL ||
	    OCSP_request_add0_id(req, id) == NULL)
		goto out;
	id = NULL;	/* owned by req */
	if (!OCSP_request_add1_nonce(req, nonce, (int)sizeof(nonce)) ||
	    (n = i2d_OCSP_REQUEST(req, &reqder)) <= 0 || (resp = qes_buf_new()) == NULL)
		goto out;
	fo = cfg != NULL ? cfg->fetch : (qes_fetch_opts){ 0 };
	if (fo.max_response_bytes == 0 || fo.max_response_bytes > QES_REV_MAX_OCSP_BYTES)
		fo.max_response_bytes = QES_REV_MAX_OCSP_BYTES;
	if ((r = qes_fetch_post(url, &fo, "application/ocsp-request",
	    "application/ocsp-response", reqder, (size_t)n, resp, ferr,
	    sizeof(ferr))) != 0) {
		rev_err(err, errlen, "OCSP request for %s failed: %s", cert_name(cert), ferr);
		goto out;
	}
	if ((r = qes_ocsp_check_response(cfg, cert, issuer, nonce, sizeof(nonce),
	    qes_buf_data(resp), qes_buf_len(resp), res, err, errlen)) != 0)
		goto out;
	if (der_out != NULL)
		r = qes_buf_put(der_out, qes_buf_data(resp), qes_buf_len(resp));
out:
	ERR_clear_error();
	OPENSSL_free(reqder);
	qes_buf_free(resp);
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(req);
	return r;
}

/* ---------------------------------------------------------------------- */
/* CRL */

static int
crl_url_of(const qes_cert *cert, const qes_rev_config *cfg, char *url, size_t len)
{
	STACK_OF(DIST_POINT) *dps;
	int i, j, r = QES_ERR_NOT_FOUND;

	if (cfg != NULL && cfg->crl_url != NULL) {
		if (!qes_fetch_url_ok(cfg->crl_url) || strlen(cfg->crl_url) >= len)
			return QES_ERR_INVALID_ARG;
		snprintf(url, len, "%s", cfg->crl_url);
		return 0;
	}
	dps = X509_get_ext_d2i(qes_cert_x509(cert), NID_crl_distribution_points,
	    NULL, NULL);
	if (dps == NULL)
		return QES_ERR_NOT_FOUND;
	for (i = 0; i < sk_DIST_POINT_num(dps) && r != 0; i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

		if (dp->distpoint == NULL || dp->distpoint->type != 0)
			continue;
		for (j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);
			const ASN1_IA5STRING *s;
			char tmp[QES_FETCH_MAX_URL_LEN + 1];
			int slen;

			if (gn->type != GEN_URI)
				continue;
			s = gn->d.uniformResourceIdentifier;
			slen = ASN1_STRING_length(s);
			if (slen <= 0 || (size_t)slen >= sizeof(tmp) || (size_t)slen >= len)
				continue;
			memcpy(tmp, ASN1_STRING_get0_data(s), (size_t)slen);
			tmp[slen] = '\0';
			if (strlen(tmp) != (size_t)slen || !qes_fetch_url_ok(tmp))
				continue;
			memcpy(url, tmp, (size_t)slen + 1);
			r = 0;
			break;
		}
	}
	sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
	ERR_clear_error();
	return r;
}

int
qes_crl_check_der(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, const uint8_t *der, size_t len,
    qes_rev_result *res, char *err, size_t errlen)
{
	X509_CRL *crl = NULL;
	X509_REVOKED *rev = NULL;
	X509 *ix;
	ASN1_ENUMERATED *reason;
	const unsigned char *p = der;
	int64_t now = cfg_now(cfg), skew = cfg_skew(cfg);
	int found, r = QES_ERR_REVOCATION;

	if (cert == NULL || issuer == NULL || der == NULL || res == NULL)
		return QES_ERR_INVALID_ARG;
	memset(res, 0, sizeof(*res));
	if (len > QES_REV_MAX_CRL_BYTES) {
		rev_err(err, errlen, "CRL larger than %zu bytes", QES_REV_MAX_CRL_BYTES);
		return QES_ERR_LIMIT;
	}
	ix = qes_cert_x509(issuer);
	if ((crl = d2i_X509_CRL(NULL, &p, (long)len)) == NULL || p != der + len) {
		rev_err(err, errlen, "not a DER CRL");
		r = QES_ERR_FORMAT;
		goto out;
	}
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ix)) != 0 ||
	    X509_NAME_cmp(X509_get_issuer_name(qes_cert_x509(cert)),
	        X509_get_subject_name(ix)) != 0) {
		rev_err(err, errlen, "CRL is not from the certificate's issuer");
		goto out;
	}
	if ((X509_get_extension_flags(ix) & EXFLAG_KUSAGE) != 0 &&
	    (X509_get_key_usage(ix) & KU_CRL_SIGN) == 0) {
		rev_err(err, errlen, "the issuer's key may not sign CRLs");
		goto out;
	}
	if (X509_CRL_verify(crl, qes_cert_pkey(issuer)) != 1) {
		rev_err(err, errlen, "CRL signature does not verify");
		goto out;
	}
	if (asn1_time_unix(X509_CRL_get0_lastUpdate(crl), &res->this_update) != 0 ||
	    X509_CRL_get0_nextUpdate(crl) == NULL ||
	    asn1_time_unix(X509_CRL_get0_nextUpdate(crl), &res->next_update) != 0) {
		rev_err(err, errlen, "CRL has no readable thisUpdate/nextUpdate");
		r = QES_ERR_FORMAT;
		goto out;
	}
	if (res->this_update > now + skew) {
		rev_err(err, errlen, "CRL thisUpdate is in the future");
		goto out;
	}
	if (res->next_update < now - skew) {
		rev_err(err, errlen, "CRL is stale (nextUpdate passed)");
		goto out;
	}
	res->source = QES_REV_SRC_CRL;
	res->reason = -1;
	found = X509_CRL_get0_by_cert(crl, &rev, qes_cert_x509(cert));
	if (found == 1 && rev != NULL) {
		res->status = QES_REV_REVOKED;
		(void)asn1_time_unix(X509_REVOKED_get0_revocationDate(rev),
		    &res->revocation_time);
		reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
		if (reason != NULL) {
			res->reason = (int)ASN1_ENUMERATED_get(reason);
			ASN1_ENUMERATED_free(reason);
		}
	} else {
		/* not listed, or listed as removeFromCRL (found == 2) */
		res->status = QES_REV_GOOD;
	}
	r = 0;
out:
	ERR_clear_error();
	X509_CRL_free(crl);
	return r;
}

int
qes_crl_check(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, qes_rev_result *res, qes_buf *der_out,
    char *err, size_t errlen)
{
	qes_buf *crl = NULL;
	qes_fetch_opts fo;
	char url[QES_FETCH_MAX_URL_LEN + 1], ferr[256];
	int r;

	if (cert == NULL || issuer == NULL || res == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = crl_url_of(cert, cfg, url, sizeof(url))) != 0) {
		rev_err(err, errlen, "%s names no usable CRL distribution point",
		    cert_name(cert));
		return r;
	}
	if ((crl = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	fo = cfg != NULL ? cfg->fetch : (qes_fetch_opts){ 0 };
	if (fo.max_response_bytes == 0 || fo.max_response_bytes > QES_REV_MAX_CRL_BYTES)
		fo.max_response_bytes = QES_REV_MAX_CRL_BYTES;
	if ((r = qes_fetch_get(url, &fo, crl, ferr, sizeof(ferr))) != 0) {
		rev_err(err, errlen, "CRL download for %s failed: %s", cert_name(cert), ferr);
		goto out;
	}
	if ((r = qes_crl_check_der(cfg, cert, issuer, qes_buf_data(crl),
	    qes_buf_len(crl), res, err, errlen)) != 0)
		goto out;
	if (der_out != NULL)
		r = qes_buf_put(der_out, qes_buf_data(crl), qes_buf_len(crl));
out:
	qes_buf_free(crl);
	return r;
}

/* ---------------------------------------------------------------------- */
/* Validation data */

struct blobs {
	qes_ades_blob items[VDATA_MAX_ITEMS];
	size_t n;
};

struct qes_vdata {
	struct blobs certs, ocsps, crls;
	qes_ades_vdata view;
};

qes_vdata *
qes_vdata_new(void)
{
	return calloc(1, sizeof(qes_vdata));
}

static void
blobs_free(struct blobs *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		free((void *)(uintptr_t)b->items[i].data);
	b->n = 0;
}

void
qes_vdata_free(qes_vdata *v)
{
	if (v == NULL)
		return;
	blobs_free(&v->certs);
	blobs_free(&v->ocsps);
	blobs_free(&v->crls);
	free(v);
}

static int
blobs_add(struct blobs *b, const uint8_t *der, size_t len)
{
	uint8_t *copy;
	size_t i;

	if (der == NULL || len == 0)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < b->n; i++)
		if (b->items[i].len == len && memcmp(b->items[i].data, der, len) == 0)
			return 0;
	if (b->n == VDATA_MAX_ITEMS)
		return QES_ERR_LIMIT;
	if ((copy = malloc(len)) == NULL)
		return QES_ERR_ALLOC;
	memcpy(copy, der, len);
	b->items[b->n].data = copy;
	b->items[b->n].len = len;
	b->n++;
	return 0;
}

int
qes_vdata_add_cert(qes_vdata *v, const uint8_t *der, size_t len)
{
	return v == NULL ? QES_ERR_INVALID_ARG : blobs_add(&v->certs, der, len);
}

int
qes_vdata_add_ocsp(qes_vdata *v, const uint8_t *der, size_t len)
{
	return v == NULL ? QES_ERR_INVALID_ARG : blobs_add(&v->ocsps, der, len);
}

int
qes_vdata_add_crl(qes_vdata *v, const uint8_t *der, size_t len)
{
	return v == NULL ? QES_ERR_INVALID_ARG : blobs_add(&v->crls, der, len);
}

const qes_ades_vdata *
qes_vdata_view(qes_vdata *v)
{
	if (v == NULL)
		return NULL;
	v->view.certs = v->certs.items;
	v->view.ncerts = v->certs.n;
	v->view.ocsps = v->ocsps.items;
	v->view.nocsps = v->ocsps.n;
	v->view.crls = v->crls.items;
	v->view.ncrls = v->crls.n;
	return &v->view;
}

static int
self_signed(const qes_cert *c)
{
	X509 *x = qes_cert_x509(c);

	return X509_check_issued(x, x) == X509_V_OK;
}

/* One certificate's status, from OCSP and/or the CRL as cfg->mode says. */
static int
status_of(qes_vdata *v, const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, char *err, size_t errlen)
{
	qes_rev_mode mode = cfg != NULL ? cfg->mode : QES_REV_OCSP_THEN_CRL;
	qes_rev_result res;
	qes_buf *der = NULL;
	char ocsp_err[256] = "";
	int r = QES_ERR_REVOCATION, tried_ocsp = 0;

	if ((der = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if (mode != QES_REV_CRL_ONLY) {
		tried_ocsp = 1;
		r = qes_ocsp_check(cfg, cert, issuer, &res, der, ocsp_err, sizeof(ocsp_err));
		if (r == 0)
			r = qes_vdata_add_ocsp(v, qes_buf_data(der), qes_buf_len(der));
	}
	if ((r != 0 || !tried_ocsp) && mode != QES_REV_OCSP_ONLY) {
		qes_buf_reset(der);
		r = qes_crl_check(cfg, cert, issuer, &res, der, err, errlen);
		if (r == 0)
			r = qes_vdata_add_crl(v, qes_buf_data(der), qes_buf_len(der));
		else if (tried_ocsp && err != NULL && errlen > 0) {
			char crl_err[256];

			snprintf(crl_err, sizeof(crl_err), "%s", err);
			rev_err(err, errlen, "%s; %s", ocsp_err, crl_err);
		}
	} else if (r != 0) {
		rev_err(err, errlen, "%s", ocsp_err);
	}
	if (r != 0) {
		if (r == QES_ERR_NOT_FOUND)
			r = QES_ERR_REVOCATION;
		goto out;
	}
	if (res.status != QES_REV_GOOD) {
		rev_err(err, errlen, "%s is %s (%s)", cert_name(cert),
		    qes_rev_status_name(res.status),
		    res.source == QES_REV_SRC_OCSP ? "OCSP" : "CRL");
		r = QES_ERR_REVOCATION;
	}
out:
	qes_buf_free(der);
	return r;
}

int
qes_vdata_add_chain(qes_vdata *v, const qes_rev_config *cfg,
    const qes_cert *const *chain, size_t n, char *err, size_t errlen)
{
	qes_rev_config ca_cfg;
	const uint8_t *der;
	size_t i, len;
	int r;

	if (v == NULL || chain == NULL || n == 0)
		return QES_ERR_INVALID_ARG;
	if (n > QES_REV_MAX_CHAIN)
		return QES_ERR_LIMIT;
	/* configured URLs stand for the end-entity's; CAs use their own */
	if (cfg != NULL)
		ca_cfg = *cfg;
	else
		memset(&ca_cfg, 0, sizeof(ca_cfg));
	ca_cfg.ocsp_url = NULL;
	ca_cfg.crl_url = NULL;
	for (i = 0; i < n; i++) {
		if (chain[i] == NULL)
			return QES_ERR_INVALID_ARG;
		der = qes_cert_der(chain[i], &len);
		if ((r = qes_vdata_add_cert(v, der, len)) != 0)
			return r;
		if (i + 1 == n || self_signed(chain[i]))
			continue;
		if ((r = status_of(v, i == 0 ? cfg : &ca_cfg, chain[i], chain[i + 1],
		    err, errlen)) != 0)
			return r;
	}
	return 0;
}

int
qes_chain_build(const qes_cert *leaf, const qes_cert *const *pool,
    size_t npool, const qes_cert **chain_out, size_t max, size_t *n_out)
{
	const qes_cert *cur = leaf;
	size_t n = 0, i;

	if (leaf == NULL || chain_out == NULL || n_out == NULL || max == 0 ||
	    (pool == NULL && npool != 0))
		return QES_ERR_INVALID_ARG;
	chain_out[n++] = leaf;
	while (!self_signed(cur)) {
		const qes_cert *next = NULL;

		for (i = 0; i < npool && next == NULL; i++) {
			if (pool[i] == NULL || pool[i] == cur)
				continue;
			if (X509_check_issued(qes_cert_x509(pool[i]),
			    qes_cert_x509(cur)) == X509_V_OK &&
			    X509_verify(qes_cert_x509(cur), qes_cert_pkey(pool[i])) == 1)
				next = pool[i];
		}
		ERR_clear_error();
		if (next == NULL)
			break;
		if (n == max || n == QES_REV_MAX_CHAIN)
			return QES_ERR_LIMIT;
		chain_out[n++] = next;
		cur = next;
	}
	*n_out = n;
	return 0;
}
