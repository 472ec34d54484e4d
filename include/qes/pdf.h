/*
 * pdf.h - the PDF layer of PAdES: a bounds-checked reader of untrusted PDF
 * files and an incremental-update writer for signatures, document
 * timestamps and the /DSS dictionary.
 *
 * The reader maps the file read-only and parses only what signing needs
 * (cross-reference sections along the /Prev chain, the catalog, the first
 * page, the AcroForm), so a 200 MB document costs little memory. Every byte
 * goes through a qes_cursor; every collection has a limit (qes_pdf_limits)
 * and breaking one is QES_ERR_LIMIT. Broken syntax is QES_ERR_PDF_MALFORMED,
 * an encrypted file (/Encrypt in a trailer) QES_ERR_PDF_ENCRYPTED.
 *
 * Signing is two-phase (docs/formats.md, "PDF"):
 *
 *   qes_pdf_sign_prepare()  writes the original bytes unchanged plus an
 *                           incremental update with a signature field, its
 *                           dictionary and a /Contents placeholder to a
 *                           temporary file beside out_path, and hashes the
 *                           /ByteRange while writing;
 *   qes_pdf_sign_digest()   that digest, for the CMS (CAdES detached) or the
 *                           RFC 3161 request (document timestamp);
 *   qes_pdf_sign_finish()   writes the hex of the DER into the placeholder
 *                           and renames the temporary file to out_path.
 *
 * A handle (and its signing contexts) is used by one thread at a time.
 *
 * The input is mapped: it must not be truncated by someone else while the
 * handle is open (as with any mapped file, that would be SIGBUS). A
 * document in memory (qes_pdf_open_mem) is read in place instead, and the
 * _buf variants of the writers append their output to a qes_buf, so a
 * document can be signed without any file.
 *
 * out_path never holds a half-written file: a failed or abandoned signing
 * (qes_pdf_sign_free() before finish) removes the temporary file; an output
 * buffer receives the document only from a successful finish.
 */
#ifndef QES_PDF_H
#define QES_PDF_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qes_pdf qes_pdf;
typedef struct qes_pdf_sign_ctx qes_pdf_sign_ctx;

/* Limits on untrusted input; qes_pdf_limits_default() fills sane values. */
typedef struct qes_pdf_limits {
	uint64_t max_file_bytes;	/* whole file (default 4 GiB) */
	uint32_t max_objects;		/* /Size of the xref (default 4,000,000) */
	uint32_t max_depth;		/* nesting of arrays/dicts (default 64) */
	uint32_t max_string_bytes;	/* one string or name (default 1 MiB) */
	uint32_t max_stream_bytes;	/* one decoded stream (default 64 MiB) */
	uint32_t max_dict_entries;	/* one dictionary (default 4096) */
	uint32_t max_array_items;	/* one array (default 1,000,000) */
	uint32_t max_xref_sections;	/* length of the /Prev chain (default 256) */
} qes_pdf_limits;

void qes_pdf_limits_default(qes_pdf_limits *lim);

/*
 * Open and check a PDF: the xref chain, the trailer, the catalog and the
 * page tree down to the first page. limits may be NULL (defaults). On
 * failure err (if not NULL) holds a sentence; no document content is put in
 * it. Free the handle with qes_pdf_free().
 */
int qes_pdf_open(const char *path, const qes_pdf_limits *limits, qes_pdf **out,
    char *err, size_t errlen);
/* Same over an open descriptor (not closed, not needed after return). */
int qes_pdf_open_fd(int fd, const qes_pdf_limits *limits, qes_pdf **out,
    char *err, size_t errlen);
/*
 * Same over bytes in memory, read in place: borrowed, they must stay
 * unchanged until qes_pdf_free().
 */
int qes_pdf_open_mem(const uint8_t *data, size_t len,
    const qes_pdf_limits *limits, qes_pdf **out, char *err, size_t errlen);
void qes_pdf_free(qes_pdf *pdf);

/* The last error of an operation on this handle; never NULL. */
const char *qes_pdf_errmsg(const qes_pdf *pdf);

uint64_t qes_pdf_size(const qes_pdf *pdf);
/* Number of signature fields already in the AcroForm (/FT /Sig). */
size_t qes_pdf_signature_count(const qes_pdf *pdf);
/* 1 when the newest cross-reference section is a stream, 0 for a table */
int qes_pdf_uses_xref_stream(const qes_pdf *pdf);

typedef enum qes_pdf_subfilter {
	QES_PDF_CADES_DETACHED = 1,	/* /Type /Sig, ETSI.CAdES.detached */
	QES_PDF_RFC3161 = 2,		/* /Type /DocTimeStamp, ETSI.RFC3161 */
} qes_pdf_subfilter;

/* Strings are UTF-8, borrowed for the call; NULL or "" leaves them out. */
typedef struct qes_pdf_sign_params {
	qes_pdf_subfilter subfilter;
	const char *field_name;	/* unique; "" or NULL generates SignatureN */
	time_t signing_time;	/* /M (signatures only); 0 = now */
	const char *reason;
	const char *location;
	const char *contact_info;
	const char *name;
	size_t contents_bytes;	/* DER bytes reserved for /Contents (>0) */
	/* mixed into the update's /ID, which is derived from the update's
	 * content, not random (the same parameters write the same bytes) */
	const char *id_seed;
} qes_pdf_sign_params;

/* Largest contents_bytes accepted (the placeholder is twice as long). */
#define QES_PDF_MAX_CONTENTS_BYTES ((size_t)4 * 1024 * 1024)

/*
 * Write the prepared file (temporary, beside out_path) and hash its byte
 * ranges with md. pdf must stay open until finish or free. Detail of a
 * failure is in qes_pdf_errmsg(pdf). Free the context with
 * qes_pdf_sign_free().
 */
int qes_pdf_sign_prepare(qes_pdf *pdf, const qes_pdf_sign_params *params,
    const char *out_path, qes_md md, qes_pdf_sign_ctx **out);
/*
 * Same into a buffer instead of a file: prepare only hashes (the input and
 * the update, which the context keeps); finish appends the whole signed
 * document, DER in place, to out (borrowed until then). A failed finish
 * leaves out as it was; prepare never touches it. The byte range offsets
 * are those of the document, whatever out held before.
 */
int qes_pdf_sign_prepare_buf(qes_pdf *pdf, const qes_pdf_sign_params *params,
    qes_buf *out, qes_md md, qes_pdf_sign_ctx **out_ctx);
/* The digest of the signed byte ranges; *len set to qes_md_len(md). */
int qes_pdf_sign_digest(const qes_pdf_sign_ctx *ctx, uint8_t *out,
    size_t outsz, size_t *len);
/* The /ByteRange written, [start1 len1 start2 len2]. */
void qes_pdf_sign_byte_range(const qes_pdf_sign_ctx *ctx, uint64_t br[4]);
/*
 * Write the signed bytes (the two /ByteRange ranges, in order) to fd, read
 * back from the prepared file: for a caller whose signer wants the content
 * rather than the digest (and for tests). Streams; holds no copy.
 */
int qes_pdf_sign_write_signed(const qes_pdf_sign_ctx *ctx, int fd);
/* The name of the signature field written (borrowed, lives with ctx). */
const char *qes_pdf_sign_field_name(const qes_pdf_sign_ctx *ctx);
/*
 * Put der (a CMS ContentInfo, or a TimeStampToken for a document
 * timestamp) into /Contents and move the file to out_path (or leave it
 * complete in the output buffer). QES_ERR_LIMIT
 * when it does not fit the reserved space; the temporary file is then
 * removed and out_path untouched. Only one finish per context.
 */
int qes_pdf_sign_finish(qes_pdf_sign_ctx *ctx, const uint8_t *der, size_t len);
/* Free; removes the temporary file if finish did not succeed. */
void qes_pdf_sign_free(qes_pdf_sign_ctx *ctx);

/*
 * Append a /DSS dictionary (B-LT) as an incremental update: /Certs,
 * /OCSPs and /CRLs streams, merged with an existing /DSS. Written
 * atomically to out_path.
 */
int qes_pdf_add_dss(qes_pdf *pdf, const qes_ades_vdata *vdata,
    const char *out_path);
/* Same, the updated document appended to out (untouched on failure). */
int qes_pdf_add_dss_buf(qes_pdf *pdf, const qes_ades_vdata *vdata,
    qes_buf *out);

#ifdef __cplusplus
}
#endif
#endif
