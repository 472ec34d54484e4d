/*
 * ades.h - what the AdES formats (CAdES, PAdES, XAdES, JAdES) share.
 *
 * Every format follows the same two-phase pattern (docs/architecture.md,
 * "The two-phase signature API"):
 *
 *   prepare(params, document | digest) -> context
 *   context -> the digest to sign, its qes_md and qes_sig_scheme
 *   finish(context, signature value)   -> the signed output
 *
 * so the signature value may come from anywhere: a local PKCS#11 token
 * (qes sign), a desktop agent through qesd (the device channel), or a
 * relying party's own signer in the hash-only flow. finish() always checks
 * the value against the signer certificate's public key before it is
 * embedded (qes_cert_verify_digest): a wrong value never reaches a
 * document.
 *
 * Levels above B-B need outside services: a timestamp authority (B-T,
 * B-LTA) and revocation data (B-LT). The formats do not speak HTTP
 * themselves; they call the hooks below, which tsp.c and revocation.c
 * implement over libcurl (and tests may implement otherwise).
 */
#ifndef QES_ADES_H
#define QES_ADES_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ETSI baseline levels, in order: each one contains the one before. */
typedef enum qes_ades_level {
	QES_ADES_B_B = 1,	/* basic signature */
	QES_ADES_B_T = 2,	/* + signature timestamp (RFC 3161) */
	QES_ADES_B_LT = 3,	/* + certificates and revocation data */
	QES_ADES_B_LTA = 4,	/* + archive / document timestamp */
} qes_ades_level;

typedef enum qes_ades_format {
	QES_ADES_CADES = 1,
	QES_ADES_PADES = 2,
	QES_ADES_XADES = 3,
	QES_ADES_JADES = 4,
} qes_ades_format;

/* "B-B", "B-T", "B-LT", "B-LTA"; NULL when unknown */
const char *qes_ades_level_name(qes_ades_level level);
/* accepts "B-B" .. "B-LTA" (also "b-t", "BT"); QES_ERR_INVALID_ARG otherwise */
int qes_ades_level_from_name(const char *name, qes_ades_level *out);
/* "cades", "pades", "xades", "jades"; NULL when unknown */
const char *qes_ades_format_name(qes_ades_format f);
int qes_ades_format_from_name(const char *name, qes_ades_format *out);

/*
 * A timestamp hook: obtain an RFC 3161 TimeStampToken (DER ContentInfo)
 * over a message imprint (md, digest). The implementation checks the
 * response (status, nonce, imprint, TSA certificate and its chain) before
 * returning 0; on failure it returns a QES_ERR_* (QES_ERR_TIMESTAMP,
 * QES_ERR_FETCH, ...) and may fill err. The token is appended to out.
 */
typedef int (*qes_timestamp_fn)(void *arg, qes_md md, const uint8_t *digest,
    size_t digest_len, qes_buf *token_out, char *err, size_t errlen);

typedef struct qes_timestamper {
	qes_timestamp_fn fn;
	void *arg;
} qes_timestamper;

/*
 * Validation data for B-LT: DER certificates, OCSP responses (DER
 * OCSPResponse) and CRLs (DER CertificateList) that let a verifier check
 * the signer's chain (and a timestamp's) later without asking anybody.
 * Arrays of borrowed (pointer, length) pairs.
 */
typedef struct qes_ades_blob {
	const uint8_t *data;
	size_t len;
} qes_ades_blob;

typedef struct qes_ades_vdata {
	const qes_ades_blob *certs;
	size_t ncerts;
	const qes_ades_blob *ocsps;
	size_t nocsps;
	const qes_ades_blob *crls;
	size_t ncrls;
} qes_ades_vdata;

#ifdef __cplusplus
}
#endif
#endif
