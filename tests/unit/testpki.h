/*
 * testpki.h - the CTest fixture's test PKI (tests/pki/mkpki.sh) for unit
 * tests that want real certificates and keys: $QES_TESTENV/pki. A test
 * skips when the fixture is absent (run through ctest, which sets it up).
 */
#ifndef QES_TESTPKI_H
#define QES_TESTPKI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

#include "qes/buf.h"
#include "qes/cert.h"

/* path of NAME inside the PKI, or NULL when there is no PKI */
static inline const char *
testpki_path(const char *name, char *buf, size_t len)
{
	const char *env = getenv("QES_TESTENV");
	FILE *f;

	if (env == NULL || env[0] == '\0')
		return NULL;
	snprintf(buf, len, "%s/pki/%s", env, name);
	if ((f = fopen(buf, "r")) == NULL)
		return NULL;
	fclose(f);
	return buf;
}

static inline qes_cert *
testpki_cert(const char *name)
{
	char path[1024], file[256];
	qes_cert *c = NULL;

	snprintf(file, sizeof(file), "%s.pem", name);
	if (testpki_path(file, path, sizeof(path)) == NULL ||
	    qes_cert_from_file(path, &c) != 0)
		return NULL;
	return c;
}

static inline EVP_PKEY *
testpki_key(const char *name)
{
	char path[1024], file[256];
	EVP_PKEY *k;
	FILE *f;

	snprintf(file, sizeof(file), "%s.key", name);
	if (testpki_path(file, path, sizeof(path)) == NULL ||
	    (f = fopen(path, "r")) == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static inline X509 *
testpki_x509(const char *name)
{
	char path[1024], file[256];
	X509 *x;
	FILE *f;

	snprintf(file, sizeof(file), "%s.pem", name);
	if (testpki_path(file, path, sizeof(path)) == NULL ||
	    (f = fopen(path, "r")) == NULL)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* whole file in a new buffer, or NULL */
static inline qes_buf *
testpki_file(const char *name)
{
	char path[1024];
	qes_buf *b = NULL;

	if (testpki_path(name, path, sizeof(path)) == NULL ||
	    qes_buf_read_file(path, 64u * 1024 * 1024, &b) != 0)
		return NULL;
	return b;
}

/* seconds the in-process TSA's clock is off (tests of the skew check) */
static long testpki_tsa_clock_offset_s;

static inline int
testpki_tsa_time(TS_RESP_CTX *ctx, void *data, long *sec, long *usec)
{
	(void)ctx;
	(void)data;
	*sec = (long)time(NULL) + testpki_tsa_clock_offset_s;
	*usec = 0;
	return 1;
}

/*
 * An in-process TSA with the PKI's TSA key (OpenSSL's TS_RESP_CTX, the
 * code behind `openssl ts -reply`): the DER TimeStampResp for a DER
 * TimeStampReq, appended to out. signer/key default to the PKI's "tsa".
 */
static inline int
testpki_tsa_reply(const uint8_t *req, size_t len, const char *signer,
    qes_buf *out)
{
	TS_RESP_CTX *ctx = TS_RESP_CTX_new();
	X509 *cert = testpki_x509(signer != NULL ? signer : "tsa");
	EVP_PKEY *key = testpki_key(signer != NULL ? signer : "tsa");
	ASN1_OBJECT *policy = OBJ_txt2obj("1.3.6.1.4.1.99999.1.1", 1);
	BIO *in = BIO_new_mem_buf(req, (int)len);
	TS_RESP *resp = NULL;
	unsigned char *der = NULL;
	int n, r = -1;

	if (ctx == NULL || cert == NULL || key == NULL || policy == NULL || in == NULL)
		goto out;
	if (!TS_RESP_CTX_set_signer_cert(ctx, cert) || !TS_RESP_CTX_set_signer_key(ctx, key) ||
	    !TS_RESP_CTX_set_def_policy(ctx, policy) ||
	    !TS_RESP_CTX_add_md(ctx, EVP_sha256()) || !TS_RESP_CTX_add_md(ctx, EVP_sha384()) ||
	    !TS_RESP_CTX_add_md(ctx, EVP_sha512()) ||
	    !TS_RESP_CTX_set_signer_digest(ctx, EVP_sha256()) ||
	    !TS_RESP_CTX_set_ess_cert_id_digest(ctx, EVP_sha256()))
		goto out;
	TS_RESP_CTX_set_time_cb(ctx, testpki_tsa_time, NULL);
	if ((resp = TS_RESP_create_response(ctx, in)) == NULL ||
	    (n = i2d_TS_RESP(resp, &der)) <= 0)
		goto out;
	r = qes_buf_put(out, der, (size_t)n);
out:
	OPENSSL_free(der);
	TS_RESP_free(resp);
	BIO_free(in);
	ASN1_OBJECT_free(policy);
	EVP_PKEY_free(key);
	X509_free(cert);
	TS_RESP_CTX_free(ctx);
	return r;
}

#endif
