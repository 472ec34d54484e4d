/*
 * tsp.c - RFC 3161 time-stamp client (tsp.h).
 *
 * OpenSSL's TS API builds the request and verifies the token's CMS
 * signature and the TSA certificate's chain (purpose timestamp signing,
 * ESS signing certificate match). The checks that must produce a precise
 * answer for the operator - status, nonce, imprint, policy, the critical
 * timeStamping EKU - are done here explicitly before and after that, so a
 * misbehaving TSA is reported as "nonce mismatch" rather than as a generic
 * verification failure. The response is parsed by OpenSSL's DER decoder
 * (d2i_TS_RESP), which is bounds-checked, after a size check here; trailing
 * bytes are refused.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "qes/err.h"
#include "qes/fetch.h"
#include "qes/tsp.h"

#define TSP_NONCE_BYTES 16

static void tsp_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
tsp_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The last OpenSSL error as "reason (data)", for refusals OpenSSL detected. */
static void
ossl_reason(char *buf, size_t len)
{
	unsigned long e, last = 0;
	const char *data = NULL, *d;
	int flags;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &d, &flags)) != 0) {
		last = e;
		data = (flags & ERR_TXT_STRING) ? d : NULL;
		if (data != NULL && data[0] != '\0') {
			snprintf(buf, len, "%s (%s)", ERR_reason_error_string(e) != NULL ?
			    ERR_reason_error_string(e) : "error", data);
			ERR_clear_error();
			return;
		}
	}
	snprintf(buf, len, "%s", last != 0 && ERR_reason_error_string(last) != NULL ?
	    ERR_reason_error_string(last) : "unknown OpenSSL error");
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

static qes_md
md_from_obj(const ASN1_OBJECT *obj)
{
	switch (OBJ_obj2nid(obj)) {
	case NID_sha256: return QES_MD_SHA256;
	case NID_sha384: return QES_MD_SHA384;
	case NID_sha512: return QES_MD_SHA512;
	}
	return (qes_md)0;
}

int
qes_tsp_request(qes_md md, const uint8_t *digest, size_t digest_len,
    const char *policy_oid, qes_buf *req_out)
{
	TS_REQ *req = NULL;
	TS_MSG_IMPRINT *imp = NULL;
	X509_ALGOR *alg = NULL;
	ASN1_INTEGER *nonce = NULL;
	ASN1_OBJECT *policy = NULL;
	BIGNUM *bn = NULL;
	uint8_t rnd[TSP_NONCE_BYTES];
	unsigned char *der = NULL;
	const EVP_MD *evp;
	int n, r = QES_ERR_CRYPTO;

	if (digest == NULL || req_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((evp = md_evp(md)) == NULL)
		return QES_ERR_UNSUPPORTED;
	if (digest_len != qes_md_len(md))
		return QES_ERR_INVALID_ARG;
	if (policy_oid != NULL && (policy = OBJ_txt2obj(policy_oid, 1)) == NULL)
		return QES_ERR_INVALID_ARG;

	if ((req = TS_REQ_new()) == NULL || (imp = TS_MSG_IMPRINT_new()) == NULL ||
	    (alg = X509_ALGOR_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	X509_ALGOR_set_md(alg, evp);
	if (!TS_REQ_set_version(req, 1) || !TS_MSG_IMPRINT_set_algo(imp, alg) ||
	    !TS_MSG_IMPRINT_set_msg(imp, (unsigned char *)(uintptr_t)digest,
	        (int)digest_len) || !TS_REQ_set_msg_imprint(req, imp))
		goto out;
	/* a positive 127-bit nonce: the top bit cleared, never zero */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	rnd[0] = (uint8_t)((rnd[0] & 0x7f) | 0x40);
	if ((bn = BN_bin2bn(rnd, (int)sizeof(rnd), NULL)) == NULL ||
	    (nonce = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    !TS_REQ_set_nonce(req, nonce) || !TS_REQ_set_cert_req(req, 1))
		goto out;
	if (policy != NULL && !TS_REQ_set_policy_id(req, policy))
		goto out;
	if ((n = i2d_TS_REQ(req, &der)) <= 0)
		goto out;
	r = qes_buf_put(req_out, der, (size_t)n);
out:
	OPENSSL_free(der);
	BN_free(bn);
	ASN1_INTEGER_free(nonce);
	ASN1_OBJECT_free(policy);
	X509_ALGOR_free(alg);
	TS_MSG_IMPRINT_free(imp);
	TS_REQ_free(req);
	return r;
}

/*
 * The TSA certificate must carry extendedKeyUsage timeStamping, critical,
 * and no other purpose (RFC 3161 section 2.3).
 */
static int
check_tsa_eku(X509 *tsa, char *err, size_t errlen)
{
	int idx;
	X509_EXTENSION *ext;

	idx = X509_get_ext_by_NID(tsa, NID_ext_key_usage, -1);
	if (idx < 0 || (ext = X509_get_ext(tsa, idx)) == NULL) {
		tsp_err(err, errlen, "TSA certificate has no extended key usage");
		return QES_ERR_TIMESTAMP;
	}
	if (!X509_EXTENSION_get_critical(ext)) {
		tsp_err(err, errlen, "TSA certificate's extended key usage is not critical");
		return QES_ERR_TIMESTAMP;
	}
	if ((X509_get_extension_flags(tsa) & EXFLAG_XKUSAGE) == 0 ||
	    X509_get_extended_key_usage(tsa) != XKU_TIMESTAMP) {
		tsp_err(err, errlen, "TSA certificate's extended key usage is not "
		    "timeStamping alone");
		return QES_ERR_TIMESTAMP;
	}
	return 0;
}

static int
load_pem_certs(const char *path, STACK_OF(X509) *sk)
{
	BIO *bio;
	X509 *x;
	int n = 0;

	if ((bio = BIO_new_file(path, "r")) == NULL)
		return QES_ERR_IO;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			BIO_free(bio);
			return QES_ERR_ALLOC;
		}
		n++;
	}
	ERR_clear_error();	/* the end of the file reads as an error */
	BIO_free(bio);
	return n > 0 ? 0 : QES_ERR_FORMAT;
}

/*
 * Verify the token's signature and the TSA certificate chain with
 * OpenSSL's TS verifier, then the EKU rule above on the signer.
 */
static int
verify_token(const qes_tsp_config *cfg, PKCS7 *token, char *err, size_t errlen)
{
	TS_VERIFY_CTX *vctx = NULL;
	X509_STORE *store = NULL;
	STACK_OF(X509) *untrusted = NULL, *signers = NULL;
	char why[256];
	int r = QES_ERR_TIMESTAMP;

	if (cfg->trust_store == NULL && cfg->ca_file == NULL) {
		tsp_err(err, errlen, "no trust anchors configured for the TSA");
		return QES_ERR_INVALID_ARG;
	}
	if ((vctx = TS_VERIFY_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	if (cfg->trust_store != NULL) {
		if (!X509_STORE_up_ref(cfg->trust_store)) {
			r = QES_ERR_INTERNAL;
			goto out;
		}
		store = cfg->trust_store;
	} else {
		if ((store = X509_STORE_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if (X509_STORE_load_file(store, cfg->ca_file) != 1) {
			X509_STORE_free(store);
			ERR_clear_error();
			tsp_err(err, errlen, "cannot read the TSA trust anchors");
			r = QES_ERR_IO;
			goto out;
		}
	}
	TS_VERIFY_CTX_set_store(vctx, store);	/* owns it now */
	if (cfg->untrusted_file != NULL) {
		if ((untrusted = sk_X509_new_null()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = load_pem_certs(cfg->untrusted_file, untrusted)) != 0) {
			sk_X509_pop_free(untrusted, X509_free);
			tsp_err(err, errlen, "cannot read the TSA intermediate certificates");
			goto out;
		}
		TS_VERIFY_CTX_set_certs(vctx, untrusted);	/* owns it now */
	}
	TS_VERIFY_CTX_set_flags(vctx, TS_VFY_VERSION | TS_VFY_SIGNATURE);
	ERR_clear_error();
	if (TS_RESP_verify_token(vctx, token) != 1) {
		ossl_reason(why, sizeof(why));
		tsp_err(err, errlen, "timestamp token does not verify: %s", why);
		r = QES_ERR_TIMESTAMP;
		goto out;
	}
	signers = PKCS7_get0_signers(token, untrusted, 0);
	if (signers == NULL || sk_X509_num(signers) != 1) {
		ERR_clear_error();
		tsp_err(err, errlen, "timestamp token has no single signer certificate");
		r = QES_ERR_TIMESTAMP;
		goto out;
	}
	r = check_tsa_eku(sk_X509_value(signers, 0), err, errlen);
out:
	sk_X509_free(signers);
	TS_VERIFY_CTX_free(vctx);
	return r;
}

static int
check_imprint(const TS_TST_INFO *tst, const ASN1_OBJECT *want_alg,
    const uint8_t *want, size_t want_len, char *err, size_t errlen)
{
	TS_MSG_IMPRINT *imp = TS_TST_INFO_get_msg_imprint((TS_TST_INFO *)(uintptr_t)tst);
	const ASN1_OBJECT *obj = NULL;
	ASN1_OCTET_STRING *msg;

	if (imp == NULL || (msg = TS_MSG_IMPRINT_get_msg(imp)) == NULL) {
		tsp_err(err, errlen, "timestamp token has no message imprint");
		return QES_ERR_TIMESTAMP;
	}
	X509_ALGOR_get0(&obj, NULL, NULL, TS_MSG_IMPRINT_get_algo(imp));
	if (obj == NULL || OBJ_cmp(obj, want_alg) != 0) {
		tsp_err(err, errlen, "timestamp imprint mismatch: other hash algorithm");
		return QES_ERR_TIMESTAMP;
	}
	if ((size_t)ASN1_STRING_length(msg) != want_len ||
	    memcmp(ASN1_STRING_get0_data(msg), want, want_len) != 0) {
		tsp_err(err, errlen, "timestamp imprint mismatch: the TSA stamped "
		    "another digest");
		return QES_ERR_TIMESTAMP;
	}
	return 0;
}

static void
status_text(TS_STATUS_INFO *si, char *buf, size_t len)
{
	const STACK_OF(ASN1_UTF8STRING) *text = TS_STATUS_INFO_get0_text(si);
	const ASN1_UTF8STRING *s;
	const unsigned char *p;
	size_t i, n, o = 0;

	buf[0] = '\0';
	if (text == NULL || sk_ASN1_UTF8STRING_num(text) < 1 ||
	    (s = sk_ASN1_UTF8STRING_value(text, 0)) == NULL)
		return;
	/* untrusted text: printable ASCII only, bounded */
	p = ASN1_STRING_get0_data(s);
	n = (size_t)ASN1_STRING_length(s);
	for (i = 0; i < n && o + 1 < len && o < 120; i++)
		buf[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	buf[o] = '\0';
}

int
qes_tsp_check_response(const qes_tsp_config *cfg, const uint8_t *req,
    size_t req_len, const uint8_t *resp, size_t resp_len, qes_buf *token_out,
    char *err, size_t errlen)
{
	TS_REQ *rq = NULL;
	TS_RESP *rs = NULL;
	TS_STATUS_INFO *si;
	TS_TST_INFO *tst;
	TS_MSG_IMPRINT *want_imp;
	PKCS7 *token;
	const ASN1_OBJECT *want_alg = NULL;
	const ASN1_INTEGER *want_nonce, *got_nonce;
	ASN1_OCTET_STRING *want_msg;
	const unsigned char *p;
	unsigned char *der = NULL;
	char text[128];
	long status;
	int n, r;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (cfg == NULL || req == NULL || resp == NULL || token_out == NULL ||
	    req_len > LONG_MAX)
		return QES_ERR_INVALID_ARG;
	if (resp_len > QES_TSP_MAX_RESPONSE_BYTES) {
		tsp_err(err, errlen, "TSA response larger than %zu bytes",
		    QES_TSP_MAX_RESPONSE_BYTES);
		return QES_ERR_LIMIT;
	}
	p = req;
	if ((rq = d2i_TS_REQ(NULL, &p, (long)req_len)) == NULL) {
		ERR_clear_error();
		return QES_ERR_INVALID_ARG;
	}
	p = resp;
	if ((rs = d2i_TS_RESP(NULL, &p, (long)resp_len)) == NULL ||
	    p != resp + resp_len) {
		ERR_clear_error();
		tsp_err(err, errlen, "TSA response is not a DER TimeStampResp");
		r = QES_ERR_FORMAT;
		goto out;
	}
	r = QES_ERR_TIMESTAMP;
	si = TS_RESP_get_status_info(rs);
	status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si));
	if (status != TS_STATUS_GRANTED && status != TS_STATUS_GRANTED_WITH_MODS) {
		status_text(si, text, sizeof(text));
		tsp_err(err, errlen, "TSA refused the request: status %ld%s%s", status,
		    text[0] != '\0' ? ": " : "", text);
		goto out;
	}
	if ((token = TS_RESP_get_token(rs)) == NULL ||
	    (tst = TS_RESP_get_tst_info(rs)) == NULL) {
		tsp_err(err, errlen, "TSA granted the request but sent no token");
		goto out;
	}
	want_nonce = TS_REQ_get_nonce(rq);
	got_nonce = TS_TST_INFO_get_nonce(tst);
	if (want_nonce != NULL && (got_nonce == NULL ||
	    ASN1_INTEGER_cmp(want_nonce, got_nonce) != 0)) {
		tsp_err(err, errlen, "timestamp nonce mismatch: the answer is not "
		    "for this request");
		goto out;
	}
	want_imp = TS_REQ_get_msg_imprint(rq);
	want_msg = TS_MSG_IMPRINT_get_msg(want_imp);
	X509_ALGOR_get0(&want_alg, NULL, NULL, TS_MSG_IMPRINT_get_algo(want_imp));
	if ((r = check_imprint(tst, want_alg, ASN1_STRING_get0_data(want_msg),
	    (size_t)ASN1_STRING_length(want_msg), err, errlen)) != 0)
		goto out;
	r = QES_ERR_TIMESTAMP;
	if (TS_REQ_get_policy_id(rq) != NULL &&
	    OBJ_cmp(TS_REQ_get_policy_id(rq), TS_TST_INFO_get_policy_id(tst)) != 0) {
		tsp_err(err, errlen, "TSA used another policy than the one asked for");
		goto out;
	}
	{
		const ASN1_GENERALIZEDTIME *gt = TS_TST_INFO_get_time(tst);
		int64_t skew = cfg->max_skew_s > 0 ? cfg->max_skew_s :
		    QES_TSP_DEFAULT_MAX_SKEW_S, t, now = (int64_t)time(NULL);
		struct tm tm;

		if (gt == NULL || !ASN1_TIME_to_tm(gt, &tm)) {
			tsp_err(err, errlen, "timestamp token has no readable genTime");
			goto out;
		}
		t = (int64_t)timegm(&tm);
		if (t > now + skew || t < now - skew) {
			tsp_err(err, errlen, "TSA clock is off by %lld s (allowed %lld s)",
			    (long long)(t - now), (long long)skew);
			goto out;
		}
	}
	if ((r = verify_token(cfg, token, err, errlen)) != 0)
		goto out;
	if ((n = i2d_PKCS7(token, &der)) <= 0) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	r = qes_buf_put(token_out, der, (size_t)n);
out:
	ERR_clear_error();
	OPENSSL_free(der);
	TS_RESP_free(rs);
	TS_REQ_free(rq);
	return r;
}

int
qes_tsp_timestamp(const qes_tsp_config *cfg, qes_md md,
    const uint8_t *digest, size_t digest_len, qes_buf *token_out,
    char *err, size_t errlen)
{
	qes_fetch_opts fo;
	qes_buf *req = NULL, *resp = NULL;
	char ferr[256];
	int r;

	if (cfg == NULL || cfg->url == NULL || token_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((req = qes_buf_new()) == NULL || (resp = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_tsp_request(md, digest, digest_len, cfg->policy_oid, req)) != 0)
		goto out;
	fo = cfg->fetch;
	if (fo.max_response_bytes == 0 || fo.max_response_bytes > QES_TSP_MAX_RESPONSE_BYTES)
		fo.max_response_bytes = QES_TSP_MAX_RESPONSE_BYTES;
	if ((r = qes_fetch_post(cfg->url, &fo, "application/timestamp-query",
	    "application/timestamp-reply", qes_buf_data(req), qes_buf_len(req), resp,
	    ferr, sizeof(ferr))) != 0) {
		tsp_err(err, errlen, "TSA request failed: %s", ferr);
		goto out;
	}
	r = qes_tsp_check_response(cfg, qes_buf_data(req), qes_buf_len(req),
	    qes_buf_data(resp), qes_buf_len(resp), token_out, err, errlen);
out:
	qes_buf_free(resp);
	qes_buf_free(req);
	return r;
}

int
qes_tsp_timestamp_fn(void *arg, qes_md md, const uint8_t *digest,
    size_t digest_len, qes_buf *token_out, char *err, size_t errlen)
{
	return qes_tsp_timestamp((const qes_tsp_config *)arg, md, digest,
	    digest_len, token_out, err, errlen);
}

qes_timestamper
qes_tsp_timestamper(const qes_tsp_config *cfg)
{
	qes_timestamper t;

	t.fn = qes_tsp_timestamp_fn;
	t.arg = (void *)(uintptr_t)cfg;
	return t;
}

static PKCS7 *
token_d2i(const uint8_t *token, size_t len)
{
	const unsigned char *p = token;
	PKCS7 *p7;

	if (token == NULL || len == 0 || len > QES_TSP_MAX_RESPONSE_BYTES)
		return NULL;
	if ((p7 = d2i_PKCS7(NULL, &p, (long)len)) == NULL || p != token + len ||
	    !PKCS7_type_is_signed(p7)) {
		PKCS7_free(p7);
		ERR_clear_error();
		return NULL;
	}
	return p7;
}

int
qes_tsp_token_parse(const uint8_t *token, size_t len, qes_tsp_token_info *info)
{
	PKCS7 *p7 = NULL;
	TS_TST_INFO *tst = NULL;
	TS_MSG_IMPRINT *imp;
	ASN1_OCTET_STRING *msg;
	const ASN1_OBJECT *alg = NULL;
	const ASN1_GENERALIZEDTIME *gt;
	STACK_OF(X509) *signers = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	struct tm tm;
	size_t i;
	int r = QES_ERR_FORMAT;

	if (info == NULL)
		return QES_ERR_INVALID_ARG;
	memset(info, 0, sizeof(*info));
	if ((p7 = token_d2i(token, len)) == NULL)
		return QES_ERR_FORMAT;
	if ((tst = PKCS7_to_TS_TST_INFO(p7)) == NULL)
		goto out;
	if ((gt = TS_TST_INFO_get_time(tst)) == NULL || !ASN1_TIME_to_tm(gt, &tm))
		goto out;
	info->gen_time = (int64_t)timegm(&tm);
	imp = TS_TST_INFO_get_msg_imprint(tst);
	if (imp == NULL || (msg = TS_MSG_IMPRINT_get_msg(imp)) == NULL)
		goto out;
	X509_ALGOR_get0(&alg, NULL, NULL, TS_MSG_IMPRINT_get_algo(imp));
	info->md = alg != NULL ? md_from_obj(alg) : (qes_md)0;
	if ((size_t)ASN1_STRING_length(msg) > sizeof(info->imprint))
		goto out;
	info->imprint_len = (size_t)ASN1_STRING_length(msg);
	memcpy(info->imprint, ASN1_STRING_get0_data(msg), info->imprint_len);
	if ((bn = ASN1_INTEGER_to_BN(TS_TST_INFO_get_serial(tst), NULL)) == NULL ||
	    (hex = BN_bn2hex(bn)) == NULL)
		goto out;
	for (i = 0; hex[i] != '\0' && i + 1 < sizeof(info->serial_hex); i++)
		info->serial_hex[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ?
		    hex[i] - 'A' + 'a' : hex[i]);
	if (OBJ_obj2txt(info->policy_oid, (int)sizeof(info->policy_oid),
	    TS_TST_INFO_get_policy_id(tst), 1) <= 0)
		info->policy_oid[0] = '\0';
	if ((signers = PKCS7_get0_signers(p7, NULL, 0)) != NULL &&
	    sk_X509_num(signers) == 1) {
		if (X509_NAME_oneline(X509_get_subject_name(sk_X509_value(signers, 0)),
		    info->tsa_subject, (int)sizeof(info->tsa_subject)) == NULL)
			info->tsa_subject[0] = '\0';
	}
	r = 0;
out:
	ERR_clear_error();
	sk_X509_free(signers);
	OPENSSL_free(hex);
	BN_free(bn);
	TS_TST_INFO_free(tst);
	PKCS7_free(p7);
	return r;
}

int
qes_tsp_token_verify(const qes_tsp_config *cfg, const uint8_t *token,
    size_t len, qes_md md, const uint8_t *digest, size_t digest_len,
    char *err, size_t errlen)
{
	PKCS7 *p7 = NULL;
	TS_TST_INFO *tst = NULL;
	ASN1_OBJECT *alg = NULL;
	int r;

	if (cfg == NULL || digest == NULL || md_evp(md) == NULL ||
	    digest_len != qes_md_len(md))
		return QES_ERR_INVALID_ARG;
	if ((p7 = token_d2i(token, len)) == NULL ||
	    (tst = PKCS7_to_TS_TST_INFO(p7)) == NULL) {
		ERR_clear_error();
		tsp_err(err, errlen, "not a timestamp token");
		r = QES_ERR_TIMESTAMP;
		goto out;
	}
	if ((alg = OBJ_nid2obj(EVP_MD_get_type(md_evp(md)))) == NULL) {
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if ((r = check_imprint(tst, alg, digest, digest_len, err, errlen)) != 0)
		goto out;
	r = verify_token(cfg, p7, err, errlen);
out:
	ERR_clear_error();
	TS_TST_INFO_free(tst);
	PKCS7_free(p7);
	return r;
}

int
qes_tsp_token_certs(const uint8_t *token, size_t len, qes_buf *certs_out)
{
	PKCS7 *p7;
	STACK_OF(X509) *certs;
	unsigned char *der;
	int i, n, r = 0;

	if (certs_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((p7 = token_d2i(token, len)) == NULL)
		return QES_ERR_FORMAT;
	certs = p7->d.sign->cert;
	for (i = 0; certs != NULL && i < sk_X509_num(certs) && r == 0; i++) {
		der = NULL;
		if ((n = i2d_X509(sk_X509_value(certs, i), &der)) <= 0) {
			r = QES_ERR_CRYPTO;
			break;
		}
		r = qes_buf_put(certs_out, der, (size_t)n);
		OPENSSL_free(der);
	}
	PKCS7_free(p7);
	return r;
}
