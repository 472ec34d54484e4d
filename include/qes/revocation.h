/*
 * revocation.h - is a certificate revoked? OCSP and CRLs, and the
 * validation data (certificates, OCSP responses, CRLs) that AdES B-LT
 * embeds so a verifier need not ask anybody later.
 *
 * OCSP (RFC 6960): the request carries a fresh nonce; the response must be
 * signed by the issuer itself or by a responder the issuer certified with
 * extendedKeyUsage OCSPSigning; it must answer for this certificate, echo
 * the nonce when the responder supports nonces, and be fresh: thisUpdate
 * not in the future (beyond the allowed clock skew), not older than
 * max_age_s, nextUpdate (when given) not passed.
 * CRL (RFC 5280): signed by the issuer (whose keyUsage, when present,
 * allows cRLSign), issued by the issuer's name, current (thisUpdate <= now,
 * nextUpdate >= now); the serial is looked up in it.
 *
 * A status of revoked or unknown is a result, not an error: the call
 * returns 0 and says so in qes_rev_result. Errors are for "could not
 * find out" (QES_ERR_FETCH, QES_ERR_REVOCATION with the reason in err).
 */
#ifndef QES_REVOCATION_H
#define QES_REVOCATION_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/fetch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_REV_MAX_OCSP_BYTES ((size_t)256 * 1024)
#define QES_REV_MAX_CRL_BYTES ((size_t)16 * 1024 * 1024)
#define QES_REV_DEFAULT_SKEW_S 300
#define QES_REV_DEFAULT_OCSP_MAX_AGE_S (7 * 24 * 3600)
/* a chain longer than this is refused (QES_ERR_LIMIT) */
#define QES_REV_MAX_CHAIN 8

typedef enum qes_rev_status {
	QES_REV_GOOD = 1,
	QES_REV_REVOKED = 2,
	QES_REV_UNKNOWN = 3,
} qes_rev_status;

typedef enum qes_rev_source {
	QES_REV_SRC_OCSP = 1,
	QES_REV_SRC_CRL = 2,
} qes_rev_source;

/* which sources to try, in which order */
typedef enum qes_rev_mode {
	QES_REV_OCSP_THEN_CRL = 0,	/* default: OCSP, and the CRL when OCSP fails */
	QES_REV_OCSP_ONLY = 1,
	QES_REV_CRL_ONLY = 2,
} qes_rev_mode;

typedef struct qes_rev_config {
	/* responder / CRL URLs used instead of the certificate's AIA / CDP;
	 * NULL: the certificate's own (only http:// and https:// are used) */
	const char *ocsp_url;
	const char *crl_url;
	qes_rev_mode mode;
	int64_t clock_skew_s;		/* 0: QES_REV_DEFAULT_SKEW_S */
	int64_t ocsp_max_age_s;		/* 0: QES_REV_DEFAULT_OCSP_MAX_AGE_S */
	int64_t now;			/* 0: time(NULL); for tests */
	qes_fetch_opts fetch;		/* max_response_bytes capped per kind */
} qes_rev_config;

typedef struct qes_rev_result {
	qes_rev_status status;
	qes_rev_source source;
	int64_t this_update;
	int64_t next_update;		/* 0 when absent */
	int64_t revocation_time;	/* 0 unless revoked */
	int reason;			/* CRLReason, -1 when none given */
} qes_rev_result;

/* "good", "revoked", "unknown"; NULL otherwise */
const char *qes_rev_status_name(qes_rev_status s);

/*
 * Ask the certificate's OCSP responder (or cfg->ocsp_url). On 0, res says
 * the status and, when der_out is not NULL, the DER OCSPResponse is
 * appended to it.
 */
int qes_ocsp_check(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, qes_rev_result *res, qes_buf *der_out,
    char *err, size_t errlen);

/*
 * Check a DER OCSPResponse (untrusted, at most QES_REV_MAX_OCSP_BYTES) for
 * cert as described above. nonce (may be NULL) is the one the request
 * carried: a response echoing another nonce is refused.
 */
int qes_ocsp_check_response(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, const uint8_t *nonce, size_t nonce_len,
    const uint8_t *der, size_t len, qes_rev_result *res, char *err,
    size_t errlen);

/* Fetch the CRL from the certificate's CDP (or cfg->crl_url) and check cert. */
int qes_crl_check(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, qes_rev_result *res, qes_buf *der_out,
    char *err, size_t errlen);

/* Check a DER CRL (untrusted, at most QES_REV_MAX_CRL_BYTES) for cert. */
int qes_crl_check_der(const qes_rev_config *cfg, const qes_cert *cert,
    const qes_cert *issuer, const uint8_t *der, size_t len,
    qes_rev_result *res, char *err, size_t errlen);

/*
 * Validation data that owns its blobs (certificates, OCSP responses, CRLs;
 * duplicates are kept once) and lends them out as a qes_ades_vdata.
 */
typedef struct qes_vdata qes_vdata;

qes_vdata *qes_vdata_new(void);
void qes_vdata_free(qes_vdata *v);
int qes_vdata_add_cert(qes_vdata *v, const uint8_t *der, size_t len);
int qes_vdata_add_ocsp(qes_vdata *v, const uint8_t *der, size_t len);
int qes_vdata_add_crl(qes_vdata *v, const uint8_t *der, size_t len);
/* Borrowed; valid until the next add or qes_vdata_free(). */
const qes_ades_vdata *qes_vdata_view(qes_vdata *v);

/*
 * Gather validation data for a chain: chain[0] is the end-entity (a signer
 * or a TSA), chain[i + 1] issued chain[i], the last one is a self-signed
 * root (or the last CA the caller trusts). Every certificate goes in; for
 * each non-self-signed one, its revocation status is asked (OCSP, then
 * CRL, per cfg->mode) and the response goes in. A revoked or unknown
 * status is QES_ERR_REVOCATION ("... is revoked"), since validation data
 * that proves a signature invalid is of no use to embed.
 */
int qes_vdata_add_chain(qes_vdata *v, const qes_rev_config *cfg,
    const qes_cert *const *chain, size_t n, char *err, size_t errlen);

/*
 * Order certificates from pool into a chain starting at leaf (leaf first,
 * each next one the issuer of the previous, by name and signature), until
 * a self-signed one or no issuer is found. The qes_cert pointers are
 * borrowed from leaf and pool. *n_out is the chain's length.
 */
int qes_chain_build(const qes_cert *leaf, const qes_cert *const *pool,
    size_t npool, const qes_cert **chain_out, size_t max, size_t *n_out);

#ifdef __cplusplus
}
#endif
#endif
