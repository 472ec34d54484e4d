/*
 * tsp.h - an RFC 3161 time-stamp protocol client, and the qes_timestamper
 * the AdES formats use for B-T and B-LTA (include/qes/ades.h).
 *
 * qes_tsp_timestamp() builds a TimeStampReq (the imprint, a fresh 128-bit
 * random nonce, certReq TRUE, the policy if configured), POSTs it as
 * application/timestamp-query, and accepts the answer only when
 *   - the status is granted (or grantedWithMods),
 *   - the token's nonce and message imprint are the ones asked for,
 *   - the policy is the configured one (when one is configured),
 *   - its genTime is within max_skew_s of our clock,
 *   - the token's CMS signature verifies, its ESS signing certificate
 *     matches the signer, and the TSA certificate has the critical
 *     extended key usage timeStamping (and nothing else) and chains to the
 *     configured trust anchors.
 * Only then is the TimeStampToken (DER ContentInfo) returned.
 */
#ifndef QES_TSP_H
#define QES_TSP_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/fetch.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* a TSA response larger than this is refused (QES_ERR_LIMIT) */
#define QES_TSP_MAX_RESPONSE_BYTES ((size_t)256 * 1024)

#define QES_TSP_DEFAULT_MAX_SKEW_S 300

struct x509_store_st;	/* OpenSSL's X509_STORE, for callers that have one */

typedef struct qes_tsp_config {
	const char *url;		/* the TSA, http:// or https:// */
	const char *policy_oid;		/* dotted OID to ask for and expect; NULL: any */
	/* trust anchors for the TSA certificate: a store (borrowed, not
	 * modified), else a PEM file of CA certificates; one is required */
	struct x509_store_st *trust_store;
	const char *ca_file;
	/* PEM file of intermediate CAs when the TSA does not send them; NULL: none */
	const char *untrusted_file;
	qes_fetch_opts fetch;		/* timeouts; max_response_bytes is capped */
	/* a fresh token's genTime must be within this of our clock (RFC 3161
	 * section 2.4.2); 0: QES_TSP_DEFAULT_MAX_SKEW_S */
	int64_t max_skew_s;
} qes_tsp_config;

/* The hook: arg is a const qes_tsp_config * that outlives the timestamper. */
int qes_tsp_timestamp_fn(void *arg, qes_md md, const uint8_t *digest,
    size_t digest_len, qes_buf *token_out, char *err, size_t errlen);

/* { qes_tsp_timestamp_fn, cfg } */
qes_timestamper qes_tsp_timestamper(const qes_tsp_config *cfg);

/* Ask the TSA for a token over digest (qes_md_len(md) bytes); appended to token_out. */
int qes_tsp_timestamp(const qes_tsp_config *cfg, qes_md md,
    const uint8_t *digest, size_t digest_len, qes_buf *token_out,
    char *err, size_t errlen);

/*
 * The two halves of qes_tsp_timestamp(), for tests and other transports.
 * qes_tsp_request() builds the DER TimeStampReq; qes_tsp_check_response()
 * applies every check above to a DER TimeStampResp received for that
 * request (untrusted input: at most QES_TSP_MAX_RESPONSE_BYTES) and appends
 * the token. QES_ERR_TIMESTAMP with the reason in err on any refusal,
 * QES_ERR_FORMAT when the bytes are not a TimeStampResp.
 */
int qes_tsp_request(qes_md md, const uint8_t *digest, size_t digest_len,
    const char *policy_oid, qes_buf *req_out);
int qes_tsp_check_response(const qes_tsp_config *cfg, const uint8_t *req,
    size_t req_len, const uint8_t *resp, size_t resp_len, qes_buf *token_out,
    char *err, size_t errlen);

/* What a TimeStampToken says (no signature check). */
typedef struct qes_tsp_token_info {
	int64_t gen_time;		/* seconds since the epoch, UTC */
	qes_md md;			/* 0 when the imprint's hash is not one qes knows */
	uint8_t imprint[QES_MD_MAX_LEN];
	size_t imprint_len;
	char serial_hex[64];		/* lower-case hex */
	char policy_oid[64];
	char tsa_subject[256];		/* the signer certificate's subject, "" if absent */
} qes_tsp_token_info;

/* Parse a DER TimeStampToken (untrusted; QES_ERR_FORMAT when malformed). */
int qes_tsp_token_parse(const uint8_t *token, size_t len, qes_tsp_token_info *info);

/*
 * Verify a token found in a signature: its CMS signature, the TSA
 * certificate (as above, trust from cfg's trust_store/ca_file/untrusted_file)
 * and that its imprint is md(data) = digest. 0 or QES_ERR_TIMESTAMP.
 */
int qes_tsp_token_verify(const qes_tsp_config *cfg, const uint8_t *token,
    size_t len, qes_md md, const uint8_t *digest, size_t digest_len,
    char *err, size_t errlen);

/*
 * The certificates a token carries (DER, appended to certs_out as
 * consecutive TLVs) - the TSA's, for B-LT validation data.
 */
int qes_tsp_token_certs(const uint8_t *token, size_t len, qes_buf *certs_out);

#ifdef __cplusplus
}
#endif
#endif
