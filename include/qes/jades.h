/*
 * jades.h - JAdES baseline signatures (ETSI TS 119 182-1), two-phase.
 *
 *   qes_jades_prepare(params, &ctx)    builds the protected header and the
 *                                      JWS signing input
 *                                      ASCII(BASE64URL(header) '.' BASE64URL(payload))
 *   qes_jades_tbs(ctx, ...)            its digest, qes_md and qes_sig_scheme
 *   qes_jades_finish(ctx, value, out)  checks the value with the signer's key
 *                                      and writes the JWS
 *
 * Protected header: alg (RS256/384/512, PS256/384/512, ES256/384/512 with
 * the curve JWA ties to each), x5t#S256 of the signer's certificate, x5c
 * (signer first, then the chain) unless turned off, sigT (claimed signing
 * time, "YYYY-MM-DDThh:mm:ssZ") listed in crit, typ "jose" (compact) or
 * "jose+json" (JSON), and cty when given.
 *
 * Serialisations: JWS compact (B-B only: it has no unprotected header) and
 * the flattened JWS JSON serialisation. B-T adds sigTst to the unprotected
 * header's etsiU array: an RFC 3161 token whose imprint is the digest of
 * the base64url JWS Signature Value (TS 119 182-1 clause 5.3.4); B-LT adds
 * xVals, rVals and, for the TSA's data, tstVD. etsiU elements are
 * base64url-encoded JSON objects (TS 119 182-1 clause 5.3.1), so nothing
 * depends on how JSON is re-serialised. B-LTA (arcTst) is not produced:
 * QES_ERR_UNSUPPORTED.
 *
 * Detached payload: RFC 7515 appendix F - the payload is signed as usual
 * (base64url in the signing input) and left out of the JWS (compact:
 * "header..signature"; JSON: no "payload" member); the verifier supplies
 * it. The unencoded-payload option of RFC 7797 (b64=false) is not used, so
 * any JWS library verifies the result.
 */
#ifndef QES_JADES_H
#define QES_JADES_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_JADES_MAX_PAYLOAD_BYTES ((size_t)64 * 1024 * 1024)
#define QES_JADES_MAX_CHAIN 8

typedef enum qes_jades_serialization {
	QES_JADES_COMPACT = 1,
	QES_JADES_JSON = 2,		/* flattened JWS JSON serialisation */
} qes_jades_serialization;

typedef struct qes_jades_params {
	qes_jades_serialization serialization;
	qes_ades_level level;		/* compact: B-B only; JSON: B-B .. B-LT */
	const uint8_t *payload;		/* may be empty */
	size_t payload_len;
	int detached;			/* leave the payload out (RFC 7515 appendix F) */
	const char *cty;		/* payload media type; NULL: no cty */
	const qes_cert *signer;		/* borrowed for the context's life */
	const qes_ades_blob *chain;	/* DER CA certificates for x5c */
	size_t nchain;
	int no_x5c;			/* only x5t#S256, no x5c */
	qes_sig_scheme scheme;
	qes_md md;			/* must match the alg: ES256 is P-256 with SHA-256 */
	int64_t signing_time;		/* unix seconds; 0: now */
	const qes_timestamper *tsa;	/* B-T and above; borrowed until finish */
	const qes_ades_vdata *vdata;	/* B-LT: signer's validation data */
	const qes_ades_vdata *tsa_vdata; /* B-LT, optional: the TSA's (tstVD) */
} qes_jades_params;

typedef struct qes_jades_ctx qes_jades_ctx;

/*
 * Build the header and signing input. *out is set whenever a context could
 * be allocated, also on failure (qes_jades_errmsg() says why); free it with
 * qes_jades_free() either way.
 */
int qes_jades_prepare(const qes_jades_params *params, qes_jades_ctx **out);

/* The digest to sign (borrowed, valid until qes_jades_free()), and how. */
int qes_jades_tbs(const qes_jades_ctx *ctx, const uint8_t **digest,
    size_t *digest_len, qes_md *md, qes_sig_scheme *scheme);

/* The JWS Signing Input, for callers that sign data rather than digests. */
int qes_jades_signing_input(const qes_jades_ctx *ctx, const char **input, size_t *len);

/*
 * Check sig (RSA: raw value; ECDSA: raw r||s or DER) against the signer's
 * key (QES_ERR_SIGNATURE_INVALID when it does not verify), add the level's
 * unsigned header and append the JWS to out. A failed finish (a TSA that
 * did not answer) may be retried with the same value.
 */
int qes_jades_finish(qes_jades_ctx *ctx, const uint8_t *sig, size_t sig_len,
    qes_buf *out);

const char *qes_jades_errmsg(const qes_jades_ctx *ctx);	/* never NULL */
void qes_jades_free(qes_jades_ctx *ctx);

/* The JWA "alg" for a scheme, digest and key; NULL when JWA has none. */
const char *qes_jades_alg(qes_sig_scheme scheme, qes_md md, const qes_cert *cert);

#ifdef __cplusplus
}
#endif
#endif
