/*
 * verify.h - reading signed documents back (`qes verify`): what each
 * signature in a CMS, PDF, XML or JWS file claims and whether its value
 * verifies over what it covers.
 *
 * Every function takes untrusted input: bounded (the formats' own limits,
 * QES_VERIFY_MAX_SIGS signatures per file), QES_ERR_FORMAT / _PDF_MALFORMED
 * / _XML_MALFORMED / _LIMIT with the reason in the report or err. A
 * signature whose value does not verify is not an error of the function:
 * it returns 0 with integrity_ok = 0 and the reason in integrity_err.
 *
 * The certificate chain and the timestamp token are left to the caller,
 * who holds the trust anchors: the report carries the certificates found
 * (signer first) and the token with the digest it must cover
 * (qes_tsp_token_verify()).
 */
#ifndef QES_VERIFY_H
#define QES_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/pdf.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* signatures per file (PDF signature fields, JWS signatures, ds:Signature) */
#define QES_VERIFY_MAX_SIGS 64

typedef struct qes_verify_report {
	qes_ades_format format;
	qes_ades_level level;		/* by what is present: B-B .. B-LTA */
	int doc_timestamp;		/* PDF /DocTimeStamp: no signer, a token */
	char name[128];			/* PDF field, JWS/XML signature Id; "" */
	char algorithm[64];		/* "rsa-pkcs1 sha256", "ES256", ... */

	int integrity_ok;		/* the value verifies over what it covers */
	char integrity_err[256];	/* why not, when integrity_ok = 0 */
	int needs_content;		/* detached, and the content was not given */
	int unsupported;		/* an algorithm this build cannot check (not
					 * a failure of the signature) */

	/* DER certificates found in the signature, consecutive TLVs; the
	 * signer's first when signer_found (owned, qes_verify_report_clear) */
	qes_buf *certs;
	int signer_found;
	char signing_time[40];		/* claimed, as written; "" when absent */

	/* the first signature (or document) timestamp token, DER, and the
	 * digest it must cover, made with the token's own hash algorithm */
	qes_buf *ts_token;
	qes_md ts_md;
	uint8_t ts_digest[QES_MD_MAX_LEN];
	size_t ts_digest_len;

	/* validation data found (B-LT): in the signature itself, and for a PDF
	 * in the document security store */
	size_t vd_certs, vd_ocsps, vd_crls;
	int has_archive_ts;		/* XAdES ArchiveTimeStamp, JAdES arcTst */

	/* PDF only */
	uint64_t byte_range[4];
	int covers_whole;		/* the range reaches the end of the file */
	uint64_t revision_end;		/* br[2] + br[3] */
} qes_verify_report;

void qes_verify_report_init(qes_verify_report *r);
void qes_verify_report_clear(qes_verify_report *r);

/*
 * CAdES: a DER ContentInfo with SignedData. Detached signatures need the
 * content's digest: content_digest (made with the CMS's digest algorithm,
 * which qes_verify_cms_md() tells); NULL means the CMS must be
 * enveloping.
 */
int qes_verify_cms(const uint8_t *cms, size_t len, const uint8_t *content_digest,
    size_t digest_len, qes_verify_report *r);
/* The digest algorithm of the CMS's signer (QES_ERR_FORMAT if unreadable). */
int qes_verify_cms_md(const uint8_t *cms, size_t len, qes_md *md);

/*
 * PAdES: every signature field of the document (signatures and document
 * timestamps), oldest revision first; *out is an array of *n reports
 * (free each with qes_verify_report_clear, then free(*out)). The byte
 * ranges are checked (start at 0, the gap is exactly the /Contents hex
 * string) and hashed; the document security store's counts go to every
 * report, the level takes a later document timestamp as B-LTA.
 */
int qes_verify_pdf(qes_pdf *pdf, qes_verify_report **out, size_t *n,
    char *err, size_t errlen);

/*
 * XAdES: every ds:Signature of the document, with xmlsec1 (references and
 * SignedInfo). A detached reference is read from content_path (one file
 * for every non-fragment URI; NULL: such a reference fails); no other
 * URI is ever opened, nothing is fetched.
 */
int qes_verify_xades(const uint8_t *doc, size_t len, const char *content_path,
    qes_verify_report **out, size_t *n, char *err, size_t errlen);

/*
 * JAdES: a JWS in compact or JSON (general or flattened) serialisation.
 * A detached payload comes from content (read whole, at most
 * QES_JADES_MAX_PAYLOAD_BYTES); NULL when the JWS carries it.
 */
int qes_verify_jades(const uint8_t *jws, size_t len, const uint8_t *content,
    size_t content_len, qes_verify_report **out, size_t *n, char *err,
    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
