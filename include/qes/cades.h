/*
 * cades.h - CAdES baseline signatures (ETSI EN 319 122-1): CMS SignedData
 * with one signer, built in two phases so the signature value can come from
 * anywhere (ades.h):
 *
 *	qes_cades_params p = { .signer = cert, .chain = cas, .nchain = 1,
 *	    .md = QES_MD_SHA256, .scheme = QES_SIG_ECDSA,
 *	    .content_path = "big.iso" };           // detached, streamed
 *	qes_cades_prepare(&p, &ctx);
 *	digest = qes_cades_tbs(ctx, &len);          // give this to the token
 *	qes_cades_finish(ctx, sig, sig_len, cms);   // checked, then assembled
 *
 * Signed attributes: content-type, message-digest, signing-time (unless
 * omitted: PAdES must not carry it) and signing-certificate-v2 (ESSCertIDv2
 * with issuerSerial). The digest to sign is md(DER of the signed
 * attributes); RSA PKCS#1 tokens sign its DigestInfo (qes_digest_info).
 *
 * Levels are added to a finished CMS:
 *	B-T   qes_cades_add_timestamp(): an unsigned signature-time-stamp over
 *	      the SignatureValue, from a qes_timestamper (tsp.h);
 *	B-LT  qes_cades_add_vdata() / qes_cades_extend_lt(): certificates and
 *	      revocation data (CRLs, OCSP responses as id-ri-ocsp-response
 *	      RevocationInfoChoices) added to SignedData.
 * B-LTA is not produced for CAdES (PAdES has its document timestamp).
 */
#ifndef QES_CADES_H
#define QES_CADES_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/revocation.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* chain certificates beyond this are refused (QES_ERR_LIMIT) */
#define QES_CADES_MAX_CHAIN 8

typedef struct qes_cades_params {
	const qes_cert *signer;			/* borrowed until qes_cades_free() */
	const qes_cert *const *chain;		/* the signer's CAs (the root optional) */
	size_t nchain;
	qes_md md;
	qes_sig_scheme scheme;
	int enveloping;				/* 0: detached, 1: content inside */
	/*
	 * The content, exactly one of:
	 *   content/content_len   in memory, borrowed until finish;
	 *   content_path          a file, hashed streaming at prepare and (when
	 *                         enveloping) copied into the CMS at finish,
	 *                         where a changed file is refused;
	 *   content_digest        detached only: md(content), computed by the
	 *                         caller (the hash-only flow, PAdES).
	 */
	const uint8_t *content;
	size_t content_len;
	const char *content_path;
	const uint8_t *content_digest;
	size_t content_digest_len;
	int omit_signing_time;			/* 1 for PAdES */
	int64_t signing_time;			/* seconds since the epoch; 0: now */
} qes_cades_params;

typedef struct qes_cades_ctx qes_cades_ctx;

int qes_cades_prepare(const qes_cades_params *params, qes_cades_ctx **out);
void qes_cades_free(qes_cades_ctx *ctx);

/* The digest to sign (qes_md_len(md) bytes). Borrowed from ctx. */
const uint8_t *qes_cades_tbs(const qes_cades_ctx *ctx, size_t *len);
/* The DER signed attributes (SET OF, what is hashed), for signers that
 * hash themselves. Borrowed from ctx. */
const uint8_t *qes_cades_signed_attrs(const qes_cades_ctx *ctx, size_t *len);
qes_md qes_cades_md(const qes_cades_ctx *ctx);
qes_sig_scheme qes_cades_scheme(const qes_cades_ctx *ctx);

/*
 * Check sig (RSA: the raw value; ECDSA: DER or raw r||s) against the
 * signer's key with qes_cert_verify_digest - QES_ERR_SIGNATURE_INVALID when
 * it does not verify - and append the DER ContentInfo to cms_out.
 */
int qes_cades_finish(qes_cades_ctx *ctx, const uint8_t *sig, size_t sig_len,
    qes_buf *cms_out);

/*
 * The same, written to the file path (mode as for chmod) as it is produced,
 * so an enveloping signature of a large file never sits in memory: a
 * temporary file beside path is filled, synced and renamed over path.
 */
int qes_cades_finish_file(qes_cades_ctx *ctx, const uint8_t *sig,
    size_t sig_len, const char *path, unsigned mode);

/*
 * B-T: timestamp the SignatureValue with md through ts, add the token as
 * the unsigned signature-time-stamp attribute; the new CMS is appended to
 * out. err receives the timestamper's reason.
 */
int qes_cades_add_timestamp(const uint8_t *cms, size_t len,
    const qes_timestamper *ts, qes_md md, qes_buf *out, char *err,
    size_t errlen);

/* B-LT: add vd's certificates, CRLs and OCSP responses to SignedData
 * (ones already there are not added twice); appended to out. */
int qes_cades_add_vdata(const uint8_t *cms, size_t len,
    const qes_ades_vdata *vd, qes_buf *out);

/*
 * B-LT in one step: build the signer's chain and, when the CMS has a
 * signature timestamp, the TSA's chain, from the certificates in the CMS,
 * in the token and in extra (trust anchors, intermediates); gather their
 * revocation data (cfg) and add everything. QES_ERR_REVOCATION when a
 * certificate is revoked or its status cannot be found.
 */
int qes_cades_extend_lt(const uint8_t *cms, size_t len,
    const qes_rev_config *cfg, const qes_cert *const *extra, size_t nextra,
    qes_buf *out, char *err, size_t errlen);

/*
 * The gathering half of qes_cades_extend_lt(): the validation data for the
 * signer's and the TSA's chains added to vd, the CMS left as it is (PAdES
 * puts the same data in the document's DSS instead).
 */
int qes_cades_collect_vdata(const uint8_t *cms, size_t len,
    const qes_rev_config *cfg, const qes_cert *const *extra, size_t nextra,
    qes_vdata *vd, char *err, size_t errlen);

/* What a CMS contains (for qes verify). Nothing here is verified except
 * where a field says so. */
typedef struct qes_cades_report {
	int enveloping;			/* eContent present */
	size_t content_len;		/* its length */
	qes_md md;
	qes_sig_scheme scheme;
	int signer_found;		/* the sid's certificate is in the CMS */
	char signer_subject[256];
	char signer_serial_hex[64];
	int has_content_type, has_message_digest, has_signing_time;
	int has_signing_cert_v2, has_signing_cert_v1;
	int64_t signing_time;		/* when has_signing_time */
	uint8_t message_digest[QES_MD_MAX_LEN];
	size_t message_digest_len;
	int has_timestamp;
	int64_t timestamp_time;		/* the token's genTime */
	int timestamp_imprint_ok;	/* token's imprint = md(SignatureValue) */
	size_t ncerts, ncrls, nocsps;
	int signature_ok;		/* signer's key verifies the signed attributes */
	qes_ades_level level;		/* B-B, B-T or B-LT by what is present */
} qes_cades_report;

/* Parse cms (untrusted) and fill r; QES_ERR_FORMAT when it is not a DER
 * SignedData with one signer. */
int qes_cades_inspect(const uint8_t *cms, size_t len, qes_cades_report *r);

/*
 * The signature-time-stamp token (DER) and the SignatureValue it should
 * cover, appended to token_out and sig_out (either may be NULL), so a
 * verifier can check the token with qes_tsp_token_verify().
 * QES_ERR_NOT_FOUND when the CMS has no signature timestamp.
 */
int qes_cades_timestamp_token(const uint8_t *cms, size_t len,
    qes_buf *token_out, qes_buf *sig_out);

/*
 * Verify integrity: the signature over the signed attributes with the
 * signer certificate in the CMS, and message-digest = md(content), where
 * the content is the eContent or, detached, content/content_len (or
 * content_digest given as content with is_digest = 1).
 * 0, QES_ERR_SIGNATURE_INVALID, or QES_ERR_FORMAT.
 */
int qes_cades_verify_integrity(const uint8_t *cms, size_t len,
    const uint8_t *content, size_t content_len, int is_digest);

#ifdef __cplusplus
}
#endif
#endif
