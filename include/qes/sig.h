/*
 * sig.h - digest and signature-scheme helpers shared by every signer.
 *
 * Tokens sign what libqes gives them: for RSA PKCS#1 v1.5 a DER DigestInfo
 * that libqes builds (so the token's CKM_RSA_PKCS never sees an unwrapped
 * digest), for RSA-PSS the bare digest with matching MGF1 and salt length
 * (salt = digest length), for ECDSA the bare digest; an ECDSA value arrives
 * from PKCS#11 as raw r||s and is used as DER (X9.62) everywhere else.
 */
#ifndef QES_SIG_H
#define QES_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qes_md {
	QES_MD_SHA256 = 1,
	QES_MD_SHA384 = 2,
	QES_MD_SHA512 = 3,
} qes_md;

typedef enum qes_sig_scheme {
	QES_SIG_RSA_PKCS1 = 1,	/* RSASSA-PKCS1-v1_5 */
	QES_SIG_RSA_PSS = 2,	/* RSASSA-PSS, MGF1 with the same hash, salt = hash length */
	QES_SIG_ECDSA = 3,
} qes_sig_scheme;

#define QES_MD_MAX_LEN 64

size_t qes_md_len(qes_md md);			/* 0 for an unknown md */
const char *qes_md_name(qes_md md);		/* "sha256"; NULL when unknown */
int qes_md_from_name(const char *name, qes_md *out);	/* accepts sha256, SHA-256, ... */
const char *qes_sig_scheme_name(qes_sig_scheme s);	/* "rsa-pkcs1", "rsa-pss", "ecdsa" */
int qes_sig_scheme_from_name(const char *name, qes_sig_scheme *out);

/* Hash data in one go. out must hold qes_md_len(md) bytes. */
int qes_md_digest(qes_md md, const void *data, size_t len, uint8_t *out);
/* Hash a whole file, streaming (memory does not grow with the file). */
int qes_md_file(qes_md md, const char *path, uint8_t *out);

/* Append the DER DigestInfo (RFC 8017 section 9.2) for digest to out. */
int qes_digest_info(qes_md md, const uint8_t *digest, size_t len, qes_buf *out);

/* ECDSA raw r||s (as PKCS#11 returns it) to DER Ecdsa-Sig-Value, appended to out. */
int qes_ecdsa_raw_to_der(const uint8_t *raw, size_t len, qes_buf *out);
/* DER to raw r||s, each integer left-padded to field_len bytes. */
int qes_ecdsa_der_to_raw(const uint8_t *der, size_t len, size_t field_len, qes_buf *out);

#ifdef __cplusplus
}
#endif
#endif
