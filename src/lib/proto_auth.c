/*
 * proto_auth.c - the cryptographic pieces of qes.v1 that both sides must
 * compute byte for byte alike: the data a device signs to authenticate a
 * session, the signature over it, the verification code a signer compares,
 * and fresh ids and nonces. Also the small policies docs/protocol.md fixes
 * in numbers: close codes and reasons, reconnect back-off, the job failure
 * reason of a sign_result error.
 *
 * Every encoding here is length-prefixed and starts with its own label
 * ("qes.v1-auth", "qes.v1-verification-code"), so no value can be shifted
 * into its neighbour and a signature or hash made for one purpose never
 * fits another.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qes/err.h"
#include "proto_priv.h"

#define AUTH_LABEL "qes.v1-auth"
#define VCODE_LABEL "qes.v1-verification-code"

/* u32be(len) || data */
static int
put_lp(qes_buf *b, const void *data, size_t len)
{
	uint8_t be[4];
	int r;

	if (len > UINT32_MAX)
		return QES_ERR_LIMIT;
	be[0] = (uint8_t)(len >> 24);
	be[1] = (uint8_t)(len >> 16);
	be[2] = (uint8_t)(len >> 8);
	be[3] = (uint8_t)len;
	if ((r = qes_buf_put(b, be, sizeof(be))) != 0)
		return r;
	return len > 0 ? qes_buf_put(b, data, len) : 0;
}

int
qes_proto_auth_tbs(const uint8_t nonce[QES_PROTO_NONCE_LEN], const char *device_id,
    const char *server_name, const char *session_id, qes_buf *out)
{
	size_t start;
	int r;

	if (nonce == NULL || device_id == NULL || server_name == NULL ||
	    session_id == NULL || out == NULL ||
	    !pf_id_ok(device_id, strlen(device_id)) ||
	    !pf_host_ok(server_name, strlen(server_name)) ||
	    !pf_id_ok(session_id, strlen(session_id)))
		return QES_ERR_INVALID_ARG;
	start = qes_buf_len(out);
	if ((r = put_lp(out, AUTH_LABEL, strlen(AUTH_LABEL))) != 0 ||
	    (r = put_lp(out, nonce, QES_PROTO_NONCE_LEN)) != 0 ||
	    (r = put_lp(out, device_id, strlen(device_id))) != 0 ||
	    (r = put_lp(out, server_name, strlen(server_name))) != 0 ||
	    (r = put_lp(out, session_id, strlen(session_id))) != 0)
		qes_buf_truncate(out, start);
	return r;
}

/* Device keys are ECDSA P-256 and nothing else: no algorithm negotiation. */
static int
check_p256(EVP_PKEY *key)
{
	char group[64];
	size_t glen = 0;

	if (key == NULL || !EVP_PKEY_is_a(key, "EC"))
		return QES_ERR_KEY_UNSUITABLE;
	if (EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) != 1 ||
	    glen == 0 || glen >= sizeof(group))
		return QES_ERR_KEY_UNSUITABLE;
	group[glen] = '\0';
	if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
		return QES_ERR_KEY_UNSUITABLE;
	return 0;
}

int
qes_proto_auth_sign(EVP_PKEY *key, const uint8_t nonce[QES_PROTO_NONCE_LEN],
    const char *device_id, const char *server_name, const char *session_id,
    qes_buf *sig_out)
{
	EVP_MD_CTX *md = NULL;
	qes_buf *tbs = NULL;
	uint8_t sig[QES_PROTO_AUTH_SIG_MAX + 16];
	size_t sig_len = sizeof(sig);
	int r;

	if (sig_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = check_p256(key)) != 0)
		goto out;
	if ((tbs = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_proto_auth_tbs(nonce, device_id, server_name, session_id, tbs)) != 0)
		goto out;
	r = QES_ERR_CRYPTO;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1 ||
	    EVP_DigestSign(md, sig, &sig_len, qes_buf_data(tbs), qes_buf_len(tbs)) != 1 ||
	    sig_len == 0 || sig_len > QES_PROTO_AUTH_SIG_MAX)
		goto out;
	r = qes_buf_put(sig_out, sig, sig_len);
 out:
	if (r == QES_ERR_CRYPTO)
		ERR_clear_error();
	EVP_MD_CTX_free(md);
	qes_buf_free(tbs);
	return r;
}

int
qes_proto_auth_verify(EVP_PKEY *key, const uint8_t nonce[QES_PROTO_NONCE_LEN],
    const char *device_id, const char *server_name, const char *session_id,
    const uint8_t *sig, size_t sig_len)
{
	EVP_MD_CTX *md = NULL;
	qes_buf *tbs = NULL;
	int r, v;

	if ((r = check_p256(key)) != 0)
		goto out;
	if ((tbs = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_proto_auth_tbs(nonce, device_id, server_name, session_id, tbs)) != 0)
		goto out;
	r = QES_ERR_SIGNATURE_INVALID;
	if (sig == NULL || sig_len == 0 || sig_len > QES_PROTO_AUTH_SIG_MAX)
		goto out;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	/* OpenSSL refuses non-canonical DER and trailing bytes here */
	v = EVP_DigestVerify(md, sig, sig_len, qes_buf_data(tbs), qes_buf_len(tbs));
	r = v == 1 ? 0 : QES_ERR_SIGNATURE_INVALID;
 out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	qes_buf_free(tbs);
	return r;
}

int
qes_proto_new_nonce(uint8_t out[QES_PROTO_NONCE_LEN])
{
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	return RAND_bytes(out, QES_PROTO_NONCE_LEN) == 1 ? 0 : QES_ERR_CRYPTO;
}

int
qes_proto_new_id(char out[23])
{
	uint8_t rnd[16];

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return QES_ERR_CRYPTO;
	pf_b64url_encode(rnd, sizeof(rnd), out);	/* 22 characters */
	return 0;
}

int
qes_verification_code(qes_md md, const uint8_t *digests, size_t n,
    char out[QES_PROTO_VCODE_LEN + 1])
{
	size_t dlen = qes_md_len(md), i;
	const char *name = qes_md_name(md);
	EVP_MD_CTX *ctx = NULL;
	uint8_t h[32], be[4];
	uint64_t v = 0;
	qes_buf *b = NULL;
	int r = QES_ERR_INVALID_ARG;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	out[0] = '\0';
	if (dlen == 0 || name == NULL || digests == NULL || n == 0 ||
	    n > QES_PROTO_DIGESTS_MAX)
		goto out;
	/* the header; then the digests streamed, so nothing large is copied */
	if ((b = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	be[0] = (uint8_t)(n >> 24);
	be[1] = (uint8_t)(n >> 16);
	be[2] = (uint8_t)(n >> 8);
	be[3] = (uint8_t)n;
	if ((r = put_lp(b, VCODE_LABEL, strlen(VCODE_LABEL))) != 0 ||
	    (r = put_lp(b, name, strlen(name))) != 0 ||
	    (r = qes_buf_put(b, be, sizeof(be))) != 0)
		goto out;
	be[0] = be[1] = be[2] = 0;
	be[3] = (uint8_t)dlen;		/* dlen <= 64 */
	r = QES_ERR_CRYPTO;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, qes_buf_data(b), qes_buf_len(b)) != 1)
		goto out;
	for (i = 0; i < n; i++)
		if (EVP_DigestUpdate(ctx, be, sizeof(be)) != 1 ||
		    EVP_DigestUpdate(ctx, digests + i * dlen, dlen) != 1)
			goto out;
	if (EVP_DigestFinal_ex(ctx, h, NULL) != 1)
		goto out;
	for (i = 0; i < 8; i++)
		v = v << 8 | h[i];
	snprintf(out, QES_PROTO_VCODE_LEN + 1, "%04u", (unsigned)(v % 10000u));
	r = 0;
 out:
	EVP_MD_CTX_free(ctx);
	qes_buf_free(b);
	return r;
}

const char *
qes_proto_failure_reason(const char *error)
{
	if (error == NULL || error[0] == '\0')
		return "internal";
	if (strcmp(error, "cancelled") == 0)
		return "declined";
	return error;
}

uint32_t
qes_proto_backoff_ms(unsigned attempt, uint64_t rnd)
{
	uint64_t cap = QES_PROTO_BACKOFF_CAP_MS;

	if (attempt < 32 && ((uint64_t)QES_PROTO_BACKOFF_BASE_MS << attempt) < cap)
		cap = (uint64_t)QES_PROTO_BACKOFF_BASE_MS << attempt;
	return (uint32_t)(rnd % (cap + 1));
}

const char *
qes_proto_close_name(int code)
{
	switch (code) {
	case 1000:
		return "normal";
	case 1001:
		return "going_away";
	case 1009:
		return "message_too_big";
	case 1011:
		return "internal_error";
	case QES_PROTO_CLOSE_PROTOCOL_ERROR:
		return "protocol_error";
	case QES_PROTO_CLOSE_AUTH_FAILED:
		return "auth_failed";
	case QES_PROTO_CLOSE_DEVICE_REVOKED:
		return "device_revoked";
	case QES_PROTO_CLOSE_REPLACED:
		return "replaced";
	case QES_PROTO_CLOSE_SERVER_DRAINING:
		return "server_draining";
	}
	return "unknown";
}

void
qes_proto_close_text(int code, const char *detail, char out[124])
{
	size_t i;

	if (out == NULL)
		return;
	if (detail != NULL && detail[0] != '\0')
		snprintf(out, 124, "%s: %s", qes_proto_close_name(code), detail);
	else
		snprintf(out, 124, "%s", qes_proto_close_name(code));
	/* printable ASCII only: always valid UTF-8, whatever the cut */
	for (i = 0; out[i] != '\0'; i++)
		if (out[i] < 0x20 || out[i] > 0x7e)
			out[i] = '?';
}
