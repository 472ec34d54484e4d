/*
 * sign.h - one two-phase signing API over the four AdES formats (CAdES,
 * PAdES, XAdES, JAdES), for the gateway and the CLI alike:
 *
 *	qes_ades_sign_params p = { .format = QES_ADES_PADES,
 *	    .level = QES_ADES_B_T, .in_path = "in.pdf", .out_path = "out.pdf",
 *	    .signer = cert, .chain = cas, .nchain = 1, .md = QES_MD_SHA256,
 *	    .scheme = QES_SIG_ECDSA, .tsa = &ts };
 *	qes_ades_prepare(&p, &ctx);
 *	qes_ades_tbs(ctx, &md, &scheme, &digest, &len);   // to the token
 *	qes_ades_finish(ctx, sig, sig_len);               // checked, written
 *	qes_ades_free(ctx);
 *
 * The library does no I/O policy of its own: which TSA (a qes_timestamper),
 * which OCSP/CRL sources (a qes_rev_config) and which certificates to
 * build chains from are the caller's. Levels above B-B need them: B-T and
 * above the timestamper, B-LT and above the revocation config (NULL: the
 * certificates' AIA/CDP with default limits) and the chain's certificates.
 * B-LT gathers the validation data of the signer's chain and of the TSA's.
 *
 * Packaging per format (QES_ADES_PKG_DEFAULT takes the first):
 *   CAdES  detached | enveloping          levels B-B .. B-LT
 *   PAdES  enveloped (the PDF itself)     levels B-B .. B-LTA
 *   XAdES  enveloped | detached           levels B-B .. B-LTA
 *   JAdES  json | compact | detached (JSON serialisation without payload)
 *          compact: B-B only; others B-B .. B-LT
 * Anything else is QES_ERR_UNSUPPORTED with a sentence in the context.
 *
 * Hash-only (doc_digest instead of in_path, the document never seen):
 * CAdES detached and XAdES detached up to B-LT. PAdES and JAdES sign data
 * that contains the document, so they need it.
 *
 * The output is written only by a successful finish, atomically (a
 * temporary file beside out_path, synced and renamed); a failure leaves
 * out_path as it was and no temporary file.
 */
#ifndef QES_SIGN_H
#define QES_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/cert.h"
#include "qes/revocation.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qes_ades_packaging {
	QES_ADES_PKG_DEFAULT = 0,
	QES_ADES_PKG_DETACHED = 1,
	QES_ADES_PKG_ENVELOPING = 2,
	QES_ADES_PKG_ENVELOPED = 3,
	QES_ADES_PKG_COMPACT = 4,
	QES_ADES_PKG_JSON = 5,
} qes_ades_packaging;

/* "detached", "enveloping", "enveloped", "compact", "json"; NULL otherwise */
const char *qes_ades_packaging_name(qes_ades_packaging p);
int qes_ades_packaging_from_name(const char *name, qes_ades_packaging *out);

#define QES_ADES_SIGN_MAX_CHAIN 8
#define QES_ADES_SIGN_MAX_EXTRA 32

/* Everything is borrowed until qes_ades_free(). */
typedef struct qes_ades_sign_params {
	qes_ades_format format;
	qes_ades_level level;
	qes_ades_packaging packaging;
	/* the document: a file, or (hash-only) its digest with md */
	const char *in_path;
	const uint8_t *doc_digest;
	size_t doc_digest_len;
	const char *doc_name;		/* XAdES detached reference; NULL: in_path's base name */
	const char *mime_type;		/* XAdES detached / JAdES cty; NULL: none */
	const char *out_path;
	unsigned out_mode;		/* 0: 0644 */
	const qes_cert *signer;
	const qes_cert *const *chain;	/* the signer's CAs to embed */
	size_t nchain;
	qes_md md;
	qes_sig_scheme scheme;
	int64_t signing_time;		/* unix seconds; 0: now */
	const qes_timestamper *tsa;	/* B-T and above */
	const qes_rev_config *rev;	/* B-LT and above; NULL: AIA/CDP */
	const qes_cert *const *extra;	/* trust anchors, intermediates for chains */
	size_t nextra;
	/* PAdES */
	const char *pdf_field_name;
	const char *pdf_reason;
	const char *pdf_location;
	size_t timestamp_reserve;	/* 0: QES_PADES_DEFAULT_TST_RESERVE */
} qes_ades_sign_params;

typedef struct qes_ades_ctx qes_ades_ctx;

/*
 * Check the parameters, read what the format needs and build the data to
 * sign. *out is set whenever a context could be allocated, also on failure
 * (qes_ades_errmsg() says why); free it with qes_ades_free().
 */
int qes_ades_prepare(const qes_ades_sign_params *params, qes_ades_ctx **out);
/* The digest to sign (borrowed, lives with ctx), its md and scheme. */
int qes_ades_tbs(const qes_ades_ctx *ctx, qes_md *md, qes_sig_scheme *scheme,
    const uint8_t **digest, size_t *len);
/*
 * Check sig with the signer's certificate (QES_ERR_SIGNATURE_INVALID),
 * add the level's timestamp and validation data and write out_path.
 * One finish per context.
 */
int qes_ades_finish(qes_ades_ctx *ctx, const uint8_t *sig, size_t len);
/* Never NULL; "" when nothing went wrong. */
const char *qes_ades_errmsg(const qes_ades_ctx *ctx);
void qes_ades_free(qes_ades_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
