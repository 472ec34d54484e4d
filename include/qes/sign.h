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
 * The document is one of: a file (in_path), bytes in memory (in_data,
 * in_len: read in place, PAdES parses the PDF from this buffer), or,
 * hash-only, its digest (doc_digest: the document never seen): CAdES detached and XAdES detached up to B-LT. PAdES and JAdES sign
 * data that contains the document, so they need it.
 *
 * The output goes to a file (out_path) or is appended to a buffer
 * (out_buf); exactly one of them. A file is written only by a successful
 * finish, atomically (a temporary file beside out_path, synced and
 * renamed); a failure leaves out_path as it was and no temporary file. A
 * buffer receives the same bytes the file would hold, also only on
 * success: a failed finish leaves it as it was. With in_data and out_buf
 * together no file is created at any step (PAdES B-LT and B-LTA build
 * their incremental updates in memory too), and a prepare whose only use
 * is the digest copies no document (PAdES hashes the input in place).
 *
 * Determinism: prepare is a pure function of its parameters. With the same
 * document, certificates, md, scheme, level, packaging, names, an explicit
 * signing_time (0 means "now", which differs between calls) and the same
 * id_seed, qes_ades_prepare() gives the same digest to sign in every
 * format, so one process may prepare, and another redo the prepare from
 * the stored document and parameters and finish with the value signed
 * over the first digest. What must be unique per signature (the Id
 * attributes of XAdES, the PDF's second /ID) is derived from id_seed and
 * the signed data, never drawn at random. The finish is not deterministic
 * (TSA tokens, OCSP responses) and need not be.
 */
#ifndef QES_SIGN_H
#define QES_SIGN_H

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
#define QES_ADES_MAX_ID_SEED 128

/* Everything is borrowed until qes_ades_free(). */
typedef struct qes_ades_sign_params {
	qes_ades_format format;
	qes_ades_level level;
	qes_ades_packaging packaging;
	/* the document, exactly one of: a file; bytes in memory (borrowed
	 * until qes_ades_free(), not copied); or (hash-only) its digest with md */
	const char *in_path;
	const uint8_t *in_data;
	size_t in_len;
	const uint8_t *doc_digest;
	size_t doc_digest_len;
	const char *doc_name;		/* XAdES detached reference; NULL: in_path's base name
					 * (in_data and doc_digest need it for XAdES detached) */
	const char *mime_type;		/* XAdES detached / JAdES cty; NULL: none */
	/* the result, exactly one of: a file, or appended to out_buf
	 * (borrowed until qes_ades_free(); its limit must fit the result) */
	const char *out_path;
	qes_buf *out_buf;
	unsigned out_mode;		/* 0: 0644 (out_path only) */
	const qes_cert *signer;
	const qes_cert *const *chain;	/* the signer's CAs to embed */
	size_t nchain;
	qes_md md;
	qes_sig_scheme scheme;
	int64_t signing_time;		/* unix seconds; 0: now (not deterministic) */
	/*
	 * Mixed into what must be unique per signature (XAdES Id attributes,
	 * the PDF update's /ID), e.g. the gateway's job id; NULL or "" is a
	 * seed too. Printable ASCII, at most QES_ADES_MAX_ID_SEED bytes.
	 */
	const char *id_seed;
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
 * add the level's timestamp and validation data and write out_path (or
 * append to out_buf).
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
