/*
 * pades.h - PAdES baseline signatures (ETSI EN 319 142-1), two-phase, on
 * top of the PDF layer (pdf.h) and CAdES (cades.h).
 *
 *   qes_pades_prepare(params, &ctx)   opens the PDF, writes the incremental
 *                                     update with the signature dictionary
 *                                     (SubFilter ETSI.CAdES.detached, /M)
 *                                     and a /Contents sized from the real
 *                                     data, hashes the /ByteRange and builds
 *                                     the CAdES signed attributes over it
 *                                     (no signing-time attribute: /M says it)
 *   qes_pades_tbs(ctx, ...)           the digest to sign, its md and scheme
 *   qes_pades_finish(ctx, value)      checks the value with the signer's key,
 *                                     assembles the CMS, adds the signature
 *                                     timestamp (B-T and above), writes it
 *                                     into /Contents; B-LT appends a /DSS
 *                                     with the certificates and OCSP
 *                                     responses/CRLs of the signer's and the
 *                                     TSA's chains; B-LTA then appends a
 *                                     document timestamp (ETSI.RFC3161) and,
 *                                     when its TSA is not the one already in
 *                                     the DSS, a second /DSS for that TSA.
 *
 * The /Contents reservation is the sum of what the CMS will hold: the
 * certificates (signer and chain), the signed attributes, the signature
 * value at the key's size, the timestamp token (B-T and above:
 * timestamp_reserve, default QES_PADES_DEFAULT_TST_RESERVE) and
 * QES_PADES_MARGIN bytes of structure slack. A CMS that turns out larger
 * is QES_ERR_LIMIT at finish and nothing is written. The document
 * timestamp of B-LTA is sized from the signature timestamp token actually
 * received.
 *
 * out_path is written once, atomically, at the end of finish: every step
 * writes a temporary file beside it; a failure removes them all. With
 * out_buf instead, B-B and B-T append the signed document to out_buf at
 * finish, and the steps of B-LT and B-LTA each build a buffer of their own,
 * the last appended to out_buf. prepare copies nothing (it hashes); a
 * failure leaves out_buf as it was.
 *
 * The same parameters with an explicit signing_time give the same digest
 * to sign: nothing in the incremental update is random.
 */
#ifndef QES_PADES_H
#define QES_PADES_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/pdf.h"
#include "qes/revocation.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bytes reserved for one RFC 3161 token unless the caller says otherwise */
#define QES_PADES_DEFAULT_TST_RESERVE ((size_t)6144)
/* slack for the CMS structure on top of the counted parts */
#define QES_PADES_MARGIN ((size_t)512)
#define QES_PADES_MAX_CHAIN 8
#define QES_PADES_MAX_EXTRA 32

/* Pointers are borrowed until qes_pades_free(); strings only for prepare. */
typedef struct qes_pades_params {
	/* the PDF to sign, exactly one of: a file, or bytes in memory (read in
	 * place, borrowed until qes_pades_free()) */
	const char *in_path;
	const uint8_t *in_data;
	size_t in_len;
	/* the result, exactly one of: a file written at the end of finish, or
	 * appended to out_buf by a successful finish (every step then builds
	 * its document in memory: no file at all) */
	const char *out_path;
	qes_buf *out_buf;
	const char *id_seed;		/* mixed into the update's /ID (pdf.h) */
	const qes_pdf_limits *limits;	/* NULL: qes_pdf_limits_default() */
	qes_ades_level level;		/* QES_ADES_B_B .. QES_ADES_B_LTA */
	const qes_cert *signer;		/* borrowed until qes_pades_free() */
	const qes_cert *const *chain;	/* the signer's CAs for the CMS */
	size_t nchain;
	qes_md md;
	qes_sig_scheme scheme;
	time_t signing_time;		/* /M; 0: now */
	/* signature dictionary text (UTF-8, optional) and field name */
	const char *field_name;		/* NULL or "": SignatureN */
	const char *reason;
	const char *location;
	const char *contact_info;
	const char *name;
	/* B-T and above: signature timestamp; B-LTA: document timestamp too */
	const qes_timestamper *tsa;
	size_t timestamp_reserve;	/* DER bytes for a token; 0: default */
	/* B-LT and above: where revocation data comes from (NULL: the
	 * certificates' AIA/CDP with default limits), and certificates to
	 * build the chains from (trust anchors, intermediates) */
	const qes_rev_config *rev;
	const qes_cert *const *extra;
	size_t nextra;
} qes_pades_params;

typedef struct qes_pades_ctx qes_pades_ctx;

/*
 * Prepare. *out is set whenever a context could be allocated, also on
 * failure (qes_pades_errmsg() says why); free it with qes_pades_free().
 */
int qes_pades_prepare(const qes_pades_params *params, qes_pades_ctx **out);
/* The digest to sign (borrowed, valid until qes_pades_free()) and how. */
int qes_pades_tbs(const qes_pades_ctx *ctx, const uint8_t **digest,
    size_t *digest_len, qes_md *md, qes_sig_scheme *scheme);
/*
 * Check sig (RSA: raw value; ECDSA: DER or raw r||s) with the signer's
 * key (QES_ERR_SIGNATURE_INVALID), then build the levels and write
 * out_path. Only one finish per context, successful or not.
 */
int qes_pades_finish(qes_pades_ctx *ctx, const uint8_t *sig, size_t sig_len);
/* DER bytes reserved for the signature's /Contents. */
size_t qes_pades_contents_reserve(const qes_pades_ctx *ctx);
/* The signature field's name (borrowed, lives with ctx). */
const char *qes_pades_field_name(const qes_pades_ctx *ctx);
/* What went wrong last, for humans; "" when nothing. Never NULL. */
const char *qes_pades_errmsg(const qes_pades_ctx *ctx);
/* Removes every temporary file; out_path is untouched unless finished. */
void qes_pades_free(qes_pades_ctx *ctx);

/*
 * The reservation prepare makes for a signer, its chain, md and level
 * (timestamp_reserve 0: the default), in DER bytes; 0 when the signer's
 * key is of no known kind. For callers that want to know, and tests.
 */
size_t qes_pades_estimate(const qes_cert *signer, const qes_cert *const *chain,
    size_t nchain, qes_md md, qes_ades_level level, size_t timestamp_reserve);

#ifdef __cplusplus
}
#endif
#endif
