/*
 * apikey.c - minting, parsing and hashing API keys (see apikey.h).
 *
 * Everything that touches a secret wipes its stack copies before
 * returning, on every path; the base64url codec is written out here
 * (rather than OpenSSL's EVP_Encode, which pads and wraps) so that the
 * accepted spelling is exactly the minted one.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "apikey.h"

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
qesd_apikey_hmac(const qes_secret *pepper,
    const uint8_t secret[QESD_APIKEY_SECRET_BYTES], uint8_t out[QESD_HMAC_LEN])
{
	unsigned int len = 0;

	if (pepper == NULL || secret == NULL || out == NULL ||
	    qes_secret_len(pepper) == 0 || qes_secret_len(pepper) > INT_MAX)
		return QES_ERR_INVALID_ARG;
	if (HMAC(EVP_sha256(), qes_secret_data(pepper),
	    (int)qes_secret_len(pepper), secret, QESD_APIKEY_SECRET_BYTES,
	    out, &len) == NULL || len != QESD_HMAC_LEN) {
		ERR_clear_error();
		qes_wipe(out, QESD_HMAC_LEN);
		return QES_ERR_CRYPTO;
	}
	return 0;
}

/* 32 bytes -> 43 characters; out has room for 44 (NUL). */
static void
encode_secret(const uint8_t in[QESD_APIKEY_SECRET_BYTES], char *out)
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0;

	for (i = 0; i < QESD_APIKEY_SECRET_BYTES; i++) {
		acc = (acc << 8 | in[i]) & 0xffffu;
		bits += 8;
		while (bits >= 6) {
			out[o++] = b64url[(acc >> (bits - 6)) & 63];
			bits -= 6;
		}
	}
	if (bits > 0)
		out[o++] = b64url[(acc << (6 - bits)) & 63];
	out[o] = '\0';
	acc = 0;
}

static int
b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* 43 characters -> 32 bytes; canonical spelling only. */
static int
decode_secret(const char *in, uint8_t out[QESD_APIKEY_SECRET_BYTES])
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0, v, r = QES_ERR_FORMAT;

	for (i = 0; i < QESD_APIKEY_SECRET_CHARS; i++) {
		if ((v = b64url_value(in[i])) < 0)
			goto out;
		acc = (acc << 6 | (uint32_t)v) & 0xffffu;
		bits += 6;
		if (bits >= 8) {
			out[o++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	/* 43 * 6 = 258 bits carry 256: the 2 left over must be zero */
	if (o != QESD_APIKEY_SECRET_BYTES || bits != 2 || (acc & 3u) != 0)
		goto out;
	r = 0;
 out:
	acc = 0;
	if (r != 0)
		qes_wipe(out, QESD_APIKEY_SECRET_BYTES);
	return r;
}

int
qesd_apikey_mint_for(const qes_secret *pepper, const char *key_id,
    char out_key[QESD_APIKEY_SIZE], uint8_t out_hmac[QESD_HMAC_LEN])
{
	uint8_t secret[QESD_APIKEY_SECRET_BYTES];
	char text[QESD_APIKEY_SECRET_CHARS + 1];
	int r, n;

	if (out_key == NULL || out_hmac == NULL)
		return QES_ERR_INVALID_ARG;
	out_key[0] = '\0';
	if (!qesd_id_valid("key", key_id))
		return QES_ERR_INVALID_ARG;
	if (RAND_bytes(secret, sizeof(secret)) != 1) {
		ERR_clear_error();
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if ((r = qesd_apikey_hmac(pepper, secret, out_hmac)) != 0)
		goto out;
	encode_secret(secret, text);
	n = snprintf(out_key, QESD_APIKEY_SIZE, "%s%s_%s", QESD_APIKEY_PREFIX,
	    key_id, text);
	if (n < 0 || (size_t)n >= QESD_APIKEY_SIZE) {
		r = QES_ERR_INTERNAL;
		goto out;
	}
	r = 0;
 out:
	qes_wipe(secret, sizeof(secret));
	qes_wipe(text, sizeof(text));
	if (r != 0) {
		qes_wipe(out_key, QESD_APIKEY_SIZE);
		qes_wipe(out_hmac, QESD_HMAC_LEN);
	}
	return r;
}

int
qesd_apikey_mint(const qes_secret *pepper, char out_key[QESD_APIKEY_SIZE],
    uint8_t out_hmac[QESD_HMAC_LEN], char out_keyid[QESD_ID_SIZE])
{
	int r;

	if (out_key == NULL || out_hmac == NULL || out_keyid == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qesd_id_new("key", out_keyid)) != 0)
		return r;
	if ((r = qesd_apikey_mint_for(pepper, out_keyid, out_key,
	    out_hmac)) != 0)
		out_keyid[0] = '\0';
	return r;
}

int
qesd_apikey_parse(const char *key, size_t len, char out_keyid[QESD_ID_SIZE],
    uint8_t out_secret[QESD_APIKEY_SECRET_BYTES])
{
	const size_t plen = sizeof(QESD_APIKEY_PREFIX) - 1;
	int r = QES_ERR_FORMAT;

	if (out_keyid == NULL || out_secret == NULL)
		return QES_ERR_INVALID_ARG;
	out_keyid[0] = '\0';
	memset(out_secret, 0, QESD_APIKEY_SECRET_BYTES);
	if (key == NULL || len != plen + QESD_APIKEY_KEYID_CHARS + 1 +
	    QESD_APIKEY_SECRET_CHARS)
		goto out;
	if (memcmp(key, QESD_APIKEY_PREFIX, plen) != 0 ||
	    key[plen + QESD_APIKEY_KEYID_CHARS] != '_')
		goto out;
	memcpy(out_keyid, key + plen, QESD_APIKEY_KEYID_CHARS);
	out_keyid[QESD_APIKEY_KEYID_CHARS] = '\0';
	if (!qesd_id_valid("key", out_keyid))
		goto out;
	r = decode_secret(key + plen + QESD_APIKEY_KEYID_CHARS + 1, out_secret);
 out:
	if (r != 0) {
		out_keyid[0] = '\0';
		qes_wipe(out_secret, QESD_APIKEY_SECRET_BYTES);
	}
	return r;
}

int
qesd_apikey_matches(const qes_secret *pepper,
    const uint8_t secret[QESD_APIKEY_SECRET_BYTES],
    const uint8_t stored[QESD_HMAC_LEN])
{
	uint8_t mac[QESD_HMAC_LEN];
	int eq;

	if (stored == NULL || qesd_apikey_hmac(pepper, secret, mac) != 0)
		return 0;
	eq = CRYPTO_memcmp(mac, stored, QESD_HMAC_LEN) == 0;
	qes_wipe(mac, sizeof(mac));
	return eq;
}
