/*
 * xades.h - XAdES baseline signatures (ETSI EN 319 132-1), two-phase.
 *
 *   qes_xades_prepare(params, &ctx)     builds the ds:Signature around the
 *                                       document: references, SignedProperties,
 *                                       KeyInfo, canonical SignedInfo
 *   qes_xades_tbs(ctx, ...)             the digest of the canonical SignedInfo,
 *                                       its qes_md and qes_sig_scheme
 *   qes_xades_finish(ctx, value, out)   checks the value against the signer's
 *                                       key, writes ds:SignatureValue and, for
 *                                       B-T and above, the unsigned properties
 *
 * Packaging:
 *   enveloped  the input is an XML document; ds:Signature is appended to its
 *              root element; Reference URI="" with the enveloped-signature
 *              transform and the chosen canonicalisation.
 *   detached   the input is any document, referenced by name (URI = the name
 *              given); the output is an XML file holding only ds:Signature.
 *              The document itself may be replaced by its digest (hash-only
 *              flow), except for B-LTA, whose archive timestamp covers the
 *              referenced bytes themselves.
 *
 * The signature method follows the scheme and digest: rsa-sha256/384/512
 * (RFC 6931), RSA-PSS as sha256/384/512-rsa-MGF1 (RFC 6931, salt = digest
 * length) and ecdsa-sha256/384/512 with the raw r||s value XML DSig wants.
 *
 * XML input is parsed with libxml2 without network access, without loading
 * or honouring a DTD (a document with a DOCTYPE is refused) and without
 * entity expansion, within QES_XADES_MAX_DOC_BYTES, QES_XADES_MAX_DEPTH and
 * QES_XADES_MAX_NODES; anything else is QES_ERR_XML_MALFORMED (or
 * QES_ERR_LIMIT), with the reason in qes_xades_errmsg().
 */
#ifndef QES_XADES_H
#define QES_XADES_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_XADES_MAX_DOC_BYTES ((size_t)64 * 1024 * 1024)
#define QES_XADES_MAX_DEPTH 128
#define QES_XADES_MAX_NODES 4000000
#define QES_XADES_MAX_CHAIN 8

typedef enum qes_xades_packaging {
	QES_XADES_ENVELOPED = 1,
	QES_XADES_DETACHED = 2,
} qes_xades_packaging;

typedef enum qes_xades_c14n {
	QES_XADES_C14N_EXCLUSIVE = 0,	/* xml-exc-c14n# (default) */
	QES_XADES_C14N_INCLUSIVE = 1,	/* REC-xml-c14n-20010315 */
} qes_xades_c14n;

typedef struct qes_xades_params {
	qes_xades_packaging packaging;
	qes_ades_level level;		/* QES_ADES_B_B .. QES_ADES_B_LTA */
	qes_xades_c14n c14n;
	/* enveloped: the XML document; detached: the document's bytes, or
	 * NULL with detached_digest set (digest with md, qes_md_len(md) bytes) */
	const uint8_t *doc;
	size_t doc_len;
	const uint8_t *detached_digest;
	const char *detached_name;	/* detached: Reference URI, e.g. "invoice.pdf" */
	const char *mime_type;		/* detached: DataObjectFormat; NULL: application/octet-stream */
	const qes_cert *signer;		/* borrowed for the context's life */
	const qes_ades_blob *chain;	/* DER CA certificates for KeyInfo, up to QES_XADES_MAX_CHAIN */
	size_t nchain;
	qes_sig_scheme scheme;
	qes_md md;			/* digest of references, SignedInfo and timestamps */
	int64_t signing_time;		/* unix seconds; 0: now */
	/* B-T and above: called by finish (borrowed until then) */
	const qes_timestamper *tsa;
	/* B-LT and above: the signer's validation data, and optionally the
	 * TSA's (xades141:TimeStampValidationData); borrowed until finish */
	const qes_ades_vdata *vdata;
	const qes_ades_vdata *tsa_vdata;
	/* mixed into the Id attributes, which are derived, not random: the
	 * same parameters give the same signed data (NULL: "") */
	const char *id_seed;
} qes_xades_params;

typedef struct qes_xades_ctx qes_xades_ctx;

/*
 * Build the signature structure. *out is set whenever a context could be
 * allocated, also on failure (then qes_xades_errmsg() says why); free it
 * with qes_xades_free() either way.
 */
int qes_xades_prepare(const qes_xades_params *params, qes_xades_ctx **out);

/* The digest to sign (borrowed, valid until qes_xades_free()), and how. */
int qes_xades_tbs(const qes_xades_ctx *ctx, const uint8_t **digest,
    size_t *digest_len, qes_md *md, qes_sig_scheme *scheme);

/*
 * Check sig (RSA: the raw value; ECDSA: raw r||s or DER) over the digest
 * with the signer's key (QES_ERR_SIGNATURE_INVALID when it does not verify),
 * add the levels' unsigned properties and append the signed XML to out.
 * A context is finished at most once.
 */
int qes_xades_finish(qes_xades_ctx *ctx, const uint8_t *sig, size_t sig_len,
    qes_buf *out);

/* What went wrong last, for humans; "" when nothing. Never NULL. */
const char *qes_xades_errmsg(const qes_xades_ctx *ctx);
void qes_xades_free(qes_xades_ctx *ctx);

/*
 * Parse XML input the way prepare does (limits, no DTD, no network) and
 * drop it: 0 when acceptable. For fuzzing and for callers that want to
 * refuse a document early. errmsg may be NULL.
 */
int qes_xades_check_xml(const uint8_t *doc, size_t len, char *errmsg, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
