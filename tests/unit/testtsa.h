/*
 * testtsa.h - an RFC 3161 time-stamping authority inside a test, and the
 * software "token" of the two-phase signing tests.
 *
 * The real timestamper (HTTP to a TSA, response checks) is tsp.c's; the
 * AdES formats only see the qes_timestamper hook, so tests implement it
 * with OpenSSL's TS responder API and the test PKI's TSU key. Each call
 * records the imprint it was asked for, so a test can check what the
 * format timestamped. Everything is static inline (like testcert.h).
 *
 *	testtsa t; testtsa_init(&t, "/path/pki");   // tsa.pem, tsa.key
 *	qes_timestamper ts = { testtsa_stamp, &t };
 *	...
 *	testtsa_free(&t);
 */
#ifndef QES_TESTTSA_H
#define QES_TESTTSA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sig.h"

typedef struct testtsa {
	X509 *cert;
	EVP_PKEY *key;
	int calls;
	int fail;			/* make the next calls fail with QES_ERR_TIMESTAMP */
	qes_md last_md;
	uint8_t last_imprint[QES_MD_MAX_LEN];
	size_t last_len;
	uint8_t imprints[4][QES_MD_MAX_LEN];	/* first four calls */
} testtsa;

static inline EVP_PKEY *
testtsa_read_key(const char *path)
{
	EVP_PKEY *k = NULL;
	FILE *f = fopen(path, "r");

	if (f != NULL) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	return k;
}

static inline X509 *
testtsa_read_cert(const char *path)
{
	X509 *x = NULL;
	FILE *f = fopen(path, "r");

	if (f != NULL) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	return x;
}

static inline int
testtsa_init(testtsa *t, const char *pki_dir)
{
	char p[4096];

	memset(t, 0, sizeof(*t));
	if ((size_t)snprintf(p, sizeof(p), "%s/tsa.pem", pki_dir) >= sizeof(p))
		return -1;
	t->cert = testtsa_read_cert(p);
	if ((size_t)snprintf(p, sizeof(p), "%s/tsa.key", pki_dir) >= sizeof(p))
		return -1;
	t->key = testtsa_read_key(p);
	return t->cert != NULL && t->key != NULL ? 0 : -1;
}

static inline void
testtsa_free(testtsa *t)
{
	X509_free(t->cert);
	EVP_PKEY_free(t->key);
	memset(t, 0, sizeof(*t));
}

static inline ASN1_INTEGER *
testtsa_serial(TS_RESP_CTX *ctx, void *data)
{
	ASN1_INTEGER *s = ASN1_INTEGER_new();
	unsigned char rnd[8];

	(void)ctx;
	(void)data;
	if (s != NULL && RAND_bytes(rnd, sizeof(rnd)) == 1) {
		BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);

		if (bn != NULL && BN_to_ASN1_INTEGER(bn, s) != NULL) {
			BN_free(bn);
			return s;
		}
		BN_free(bn);
	}
	ASN1_INTEGER_free(s);
	return NULL;
}

/* qes_timestamp_fn over the TSU key: request with a nonce, response checked for status. */
static inline int
testtsa_stamp(void *arg, qes_md md, const uint8_t *digest, size_t digest_len,
    qes_buf *token_out, char *err, size_t errlen)
{
	testtsa *t = arg;
	const EVP_MD *emd = md == QES_MD_SHA384 ? EVP_sha384() :
	    md == QES_MD_SHA512 ? EVP_sha512() : EVP_sha256();
	TS_REQ *req = NULL;
	TS_MSG_IMPRINT *mi = NULL;
	X509_ALGOR *alg = NULL;
	ASN1_OBJECT *policy = NULL;
	ASN1_INTEGER *nonce = NULL;
	TS_RESP_CTX *rctx = NULL;
	TS_RESP *resp = NULL;
	BIO *bio = NULL;
	unsigned char *der = NULL;
	int len, r = QES_ERR_TIMESTAMP;

	if (t->fail) {
		snprintf(err, errlen, "test TSA told to fail");
		return QES_ERR_TIMESTAMP;
	}
	if (t->calls < 4)
		memcpy(t->imprints[t->calls], digest, digest_len);
	t->calls++;
	t->last_md = md;
	memcpy(t->last_imprint, digest, digest_len);
	t->last_len = digest_len;
	if ((req = TS_REQ_new()) == NULL || (mi = TS_MSG_IMPRINT_new()) == NULL ||
	    (alg = X509_ALGOR_new()) == NULL || (nonce = testtsa_serial(NULL, NULL)) == NULL)
		goto out;
	X509_ALGOR_set_md(alg, emd);
	if (!TS_MSG_IMPRINT_set_algo(mi, alg) ||
	    !TS_MSG_IMPRINT_set_msg(mi, (unsigned char *)digest, (int)digest_len) ||
	    !TS_REQ_set_version(req, 1) || !TS_REQ_set_msg_imprint(req, mi) ||
	    !TS_REQ_set_nonce(req, nonce) || !TS_REQ_set_cert_req(req, 1))
		goto out;
	if ((bio = BIO_new(BIO_s_mem())) == NULL || i2d_TS_REQ_bio(bio, req) <= 0)
		goto out;
	if ((rctx = TS_RESP_CTX_new()) == NULL ||
	    !TS_RESP_CTX_set_signer_cert(rctx, t->cert) ||
	    !TS_RESP_CTX_set_signer_key(rctx, t->key) ||
	    (policy = OBJ_txt2obj("1.2.3.4.1", 1)) == NULL ||
	    !TS_RESP_CTX_set_def_policy(rctx, policy) ||
	    !TS_RESP_CTX_add_md(rctx, EVP_sha256()) ||
	    !TS_RESP_CTX_add_md(rctx, EVP_sha384()) ||
	    !TS_RESP_CTX_add_md(rctx, EVP_sha512()) ||
	    !TS_RESP_CTX_set_signer_digest(rctx, EVP_sha256()))
		goto out;
	TS_RESP_CTX_set_serial_cb(rctx, testtsa_serial, NULL);
	if ((resp = TS_RESP_create_response(rctx, bio)) == NULL ||
	    ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp))) != 0)
		goto out;
	if ((len = i2d_PKCS7(TS_RESP_get_token(resp), &der)) <= 0)
		goto out;
	r = qes_buf_put(token_out, der, (size_t)len);
out:
	if (r != 0)
		snprintf(err, errlen, "test TSA could not make a token");
	OPENSSL_free(der);
	TS_RESP_free(resp);
	TS_RESP_CTX_free(rctx);
	ASN1_OBJECT_free(policy);
	BIO_free(bio);
	ASN1_INTEGER_free(nonce);
	X509_ALGOR_free(alg);
	TS_MSG_IMPRINT_free(mi);
	TS_REQ_free(req);
	return r;
}

/*
 * The software token: sign digest the way a PKCS#11 token would for the
 * scheme (PKCS#1 v1.5 over the DigestInfo, PSS with salt = digest length,
 * ECDSA as raw r||s when raw is set, else DER). Appends to out.
 */
static inline int
testtsa_sign(EVP_PKEY *key, qes_sig_scheme scheme, qes_md md, const uint8_t *digest,
    size_t digest_len, int raw, qes_buf *out)
{
	const EVP_MD *emd = md == QES_MD_SHA384 ? EVP_sha384() :
	    md == QES_MD_SHA512 ? EVP_sha512() : EVP_sha256();
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(key, NULL);
	unsigned char sig[1024];
	size_t sig_len = sizeof(sig);
	int r = -1;

	if (pc == NULL || EVP_PKEY_sign_init(pc) <= 0)
		goto out;
	if (scheme == QES_SIG_RSA_PKCS1 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(pc, emd) <= 0))
		goto out;
	if (scheme == QES_SIG_RSA_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(pc, emd) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, emd) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, (int)digest_len) <= 0))
		goto out;
	if (EVP_PKEY_sign(pc, sig, &sig_len, digest, digest_len) <= 0)
		goto out;
	if (scheme == QES_SIG_ECDSA && raw) {
		size_t field = ((size_t)EVP_PKEY_get_bits(key) + 7) / 8;

		r = qes_ecdsa_der_to_raw(sig, sig_len, field, out);
	} else
		r = qes_buf_put(out, sig, sig_len);
out:
	EVP_PKEY_CTX_free(pc);
	return r;
}

/* A signer of the test PKI: its certificate and its software key. */
typedef struct testsigner {
	const char *name;
	qes_sig_scheme scheme;
	qes_md md;
	EVP_PKEY *key;
	qes_cert *cert;
} testsigner;

/* NAME.key and NAME.pem of pki_dir; -1 when either does not load. */
static inline int
testsigner_load(testsigner *s, const char *pki_dir, const char *name,
    qes_sig_scheme scheme, qes_md md)
{
	char p[4200];

	memset(s, 0, sizeof(*s));
	s->name = name;
	s->scheme = scheme;
	s->md = md;
	snprintf(p, sizeof(p), "%s/%s.key", pki_dir, name);
	s->key = testtsa_read_key(p);
	snprintf(p, sizeof(p), "%s/%s.pem", pki_dir, name);
	if (s->key == NULL || qes_cert_from_file(p, &s->cert) != 0)
		return -1;
	return 0;
}

static inline void
testsigner_free(testsigner *s)
{
	EVP_PKEY_free(s->key);
	qes_cert_free(s->cert);
	memset(s, 0, sizeof(*s));
}

/*
 * What the AdES format tests share: the test PKI of $QES_TESTENV, its TSA,
 * the issuing CA's certificate (DER) and its CRL (DER), for the chains and
 * validation data the formats embed.
 */
typedef struct testades {
	char pki[2048];
	testtsa tsa;
	qes_buf *issuing_der, *crl_der;
} testades;

static inline int
testades_setup(testades *fx)
{
	const char *env = getenv("QES_TESTENV");
	char p[4200];
	X509 *x;
	unsigned char *der = NULL;
	int len, r = -1;

	memset(fx, 0, sizeof(*fx));
	if (env == NULL || strlen(env) > 1000)
		return -1;
	snprintf(fx->pki, sizeof(fx->pki), "%s/pki", env);
	if (testtsa_init(&fx->tsa, fx->pki) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/issuing-ca.pem", fx->pki);
	if ((x = testtsa_read_cert(p)) == NULL || (len = i2d_X509(x, &der)) <= 0)
		goto out;
	if ((fx->issuing_der = qes_buf_new()) == NULL ||
	    qes_buf_put(fx->issuing_der, der, (size_t)len) != 0)
		goto out;
	snprintf(p, sizeof(p), "%s/issuing-ca.crl", fx->pki);
	r = qes_buf_read_file(p, 1 << 20, &fx->crl_der);
out:
	OPENSSL_free(der);
	X509_free(x);
	return r;
}

static inline void
testades_teardown(testades *fx)
{
	testtsa_free(&fx->tsa);
	qes_buf_free(fx->issuing_der);
	qes_buf_free(fx->crl_der);
	memset(fx, 0, sizeof(*fx));
}


/* The one-page PDF (classic xref table) the signing API tests sign. */
#define TESTTSA_ONE_PAGE_PDF \
	"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" \
	"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n" \
	"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n" \
	"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n" \
	"0000000058 00000 n \n0000000115 00000 n \n" \
	"trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n186\n%%EOF\n"

/*
 * What the signing API tests share: a temporary directory, the TSA of the
 * test PKI ($QES_TESTENV/pki) as a timestamper, the qual-p256 signer
 * (certificate and software key) and the issuing CA, its one-certificate
 * chain. fx must stay where it is while in use (ts points into it).
 */
typedef struct testsign {
	char dir[64];
	char pki[1024];
	testtsa tsa;
	qes_timestamper ts;
	testsigner p256;
	qes_cert *ca;
	const qes_cert *chain[1];
} testsign;

/* dir_template: a mkdtemp template (under 64 bytes); -1 when anything is missing. */
static inline int
testsign_setup(testsign *fx, const char *dir_template)
{
	const char *env = getenv("QES_TESTENV");
	char p[1100];

	memset(fx, 0, sizeof(*fx));
	if (env == NULL || strlen(env) > 1000 ||
	    (size_t)snprintf(fx->dir, sizeof(fx->dir), "%s", dir_template) >= sizeof(fx->dir) ||
	    mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->pki, sizeof(fx->pki), "%s/pki", env);
	if (testtsa_init(&fx->tsa, fx->pki) != 0)
		return -1;
	fx->ts = (qes_timestamper){ testtsa_stamp, &fx->tsa };
	if (testsigner_load(&fx->p256, fx->pki, "qual-p256", QES_SIG_ECDSA,
	    QES_MD_SHA256) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/issuing-ca.pem", fx->pki);
	if (qes_cert_from_file(p, &fx->ca) != 0)
		return -1;
	fx->chain[0] = fx->ca;
	return 0;
}

/* Everything freed and the directory removed; -1 when it could not be. */
static inline int
testsign_teardown(testsign *fx)
{
	char cmd[128];
	int r = 0;

	testtsa_free(&fx->tsa);
	testsigner_free(&fx->p256);
	qes_cert_free(fx->ca);
	if (fx->dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
		r = system(cmd) == 0 ? 0 : -1;
	}
	memset(fx, 0, sizeof(*fx));
	return r;
}

/* The NUL-terminated s written to DIR/name; its path in path (pathlen bytes). */
static inline int
testsign_file(const testsign *fx, const char *name, const char *s, char *path,
    size_t pathlen)
{
	FILE *f;
	int r;

	if ((size_t)snprintf(path, pathlen, "%s/%s", fx->dir, name) >= pathlen ||
	    (f = fopen(path, "wb")) == NULL)
		return -1;
	r = fputs(s, f) >= 0 ? 0 : -1;
	return fclose(f) == 0 ? r : -1;
}

#endif
