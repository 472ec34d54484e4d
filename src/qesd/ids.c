/*
 * ids.c - random, prefixed object ids ("ten_", "key_", "aud_", ...).
 *
 * 16 bytes from the OpenSSL CSPRNG in lower-case RFC 4648 base32 without
 * padding: 26 characters, URL-safe, case-insensitive friendly and free of
 * '_', so an API key "qes_<keyid>_<secret>" splits without ambiguity.
 * Knowing one id tells nothing about another (no counters, no time), which
 * keeps ids of other tenants unguessable. The 2 spare bits of the last
 * character are always zero, so every id has exactly one spelling.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "qes/err.h"
#include "store.h"

#define ID_RANDOM_BYTES 16
#define ID_CHARS 26		/* ceil(128 / 5) */
#define PREFIX_MAX 8

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static int
prefix_ok(const char *prefix, size_t *len)
{
	size_t i, n;

	if (prefix == NULL)
		return 0;
	n = strlen(prefix);
	if (n == 0 || n > PREFIX_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (prefix[i] < 'a' || prefix[i] > 'z')
			return 0;
	*len = n;
	return 1;
}

int
qesd_id_new(const char *prefix, char out[QESD_ID_SIZE])
{
	uint8_t rnd[ID_RANDOM_BYTES];
	uint32_t acc = 0;
	size_t plen, i, o;
	int bits = 0;

	if (out == NULL || !prefix_ok(prefix, &plen))
		return QES_ERR_INVALID_ARG;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		ERR_clear_error();
		return QES_ERR_CRYPTO;
	}
	memcpy(out, prefix, plen);
	o = plen;
	out[o++] = '_';
	for (i = 0; i < sizeof(rnd); i++) {
		acc = (acc << 8) | rnd[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return 0;
}

int
qesd_id_valid(const char *prefix, const char *id)
{
	const char *p;
	size_t plen, i;

	if (id == NULL || !prefix_ok(prefix, &plen))
		return 0;
	if (strlen(id) != plen + 1 + ID_CHARS ||
	    strncmp(id, prefix, plen) != 0 || id[plen] != '_')
		return 0;
	for (i = 0; i < ID_CHARS; i++) {
		if ((p = memchr(b32, id[plen + 1 + i], 32)) == NULL ||
		    id[plen + 1 + i] == '\0')
			return 0;
		/* 26 * 5 = 130 bits carry 128: the last 2 must be zero */
		if (i == ID_CHARS - 1 && ((p - b32) & 3) != 0)
			return 0;
	}
	return 1;
}
