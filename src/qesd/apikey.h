/*
 * apikey.h - the one implementation of API key strings and their keyed hash.
 *
 * An API key is shown to its owner once and never stored:
 *
 *   qes_<keyid>_<secret>
 *     keyid   "key_" + 26 base32 characters (store.h ids; no '_' inside)
 *     secret  32 bytes from the OpenSSL CSPRNG, base64url without padding
 *             (43 characters; the 2 spare bits of the last one are zero, so
 *             every secret has exactly one spelling)
 *
 * The store keeps HMAC-SHA-256(pepper, secret) over the 32 raw secret
 * bytes, looked up by key id and compared in constant time. The keys are
 * 256-bit random, so a slow password hash would buy nothing; the pepper
 * (a server secret outside the database) makes a stolen database useless
 * for forging or testing keys.
 *
 * Used by `qesd admin tenant create` (admin.c), by the authentication
 * middleware (auth.c: parse + verify) and by key creation and rotation
 * (h_keys.c: mint). Secrets pass only through caller buffers that the
 * caller wipes with qes_wipe(); nothing here logs or keeps them.
 */
#ifndef QESD_APIKEY_H
#define QESD_APIKEY_H

#include <stddef.h>
#include <stdint.h>

#include "qes/secret.h"
#include "store.h"

#define QESD_APIKEY_PREFIX "qes_"
#define QESD_APIKEY_SECRET_BYTES 32
#define QESD_APIKEY_SECRET_CHARS 43		/* base64url, unpadded */
#define QESD_APIKEY_KEYID_CHARS 30		/* "key_" + 26 */
/* "qes_" + key id + "_" + secret + NUL = 79; rounded up */
#define QESD_APIKEY_SIZE 96

/* HMAC-SHA-256(pepper, secret) into out. QES_ERR_CRYPTO on failure. */
int qesd_apikey_hmac(const qes_secret *pepper,
    const uint8_t secret[QESD_APIKEY_SECRET_BYTES],
    uint8_t out[QESD_HMAC_LEN]);

/*
 * A new key with a new key id: out_key receives the key string (a SECRET:
 * print it once, then qes_wipe it), out_hmac the value to store, out_keyid
 * the id (also inside the string). On failure all three are wiped.
 */
int qesd_apikey_mint(const qes_secret *pepper, char out_key[QESD_APIKEY_SIZE],
    uint8_t out_hmac[QESD_HMAC_LEN], char out_keyid[QESD_ID_SIZE]);

/* The same for an existing key id (rotation: new secret, same id). */
int qesd_apikey_mint_for(const qes_secret *pepper, const char *key_id,
    char out_key[QESD_APIKEY_SIZE], uint8_t out_hmac[QESD_HMAC_LEN]);

/*
 * Split a presented key (len bytes, not necessarily NUL-terminated) into
 * its id and raw secret. Strict: exact length, prefix, a valid key id,
 * canonical base64url. QES_ERR_FORMAT otherwise, with both outputs wiped.
 * The caller wipes out_secret when done.
 */
int qesd_apikey_parse(const char *key, size_t len, char out_keyid[QESD_ID_SIZE],
    uint8_t out_secret[QESD_APIKEY_SECRET_BYTES]);

/*
 * 1 when HMAC(pepper, secret) equals stored (constant time), else 0 (also
 * when the HMAC cannot be computed).
 */
int qesd_apikey_matches(const qes_secret *pepper,
    const uint8_t secret[QESD_APIKEY_SECRET_BYTES],
    const uint8_t stored[QESD_HMAC_LEN]);

#endif
