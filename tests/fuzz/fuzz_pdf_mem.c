/*
 * fuzz_pdf_mem.c - libFuzzer target for the PDF layer over a document held
 * in memory (qes_pdf_open_mem: the gateway's path, which never writes the
 * document to a file): the input is parsed in place, with no mapping
 * around it, so a read past its end is an AddressSanitizer report rather
 * than a read of the mapping's padding. When it opens, a signature is
 * prepared and finished into a buffer (qes_pdf_sign_prepare_buf) and a DSS
 * appended (qes_pdf_add_dss_buf), and what the buffer API promises is
 * checked: the output starts with the input, a failure leaves the buffer
 * as it was, the same signature prepared twice hashes the same. Seeds in
 * corpus/pdf_mem/ are those of fuzz_pdf.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pdf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* prepare and finish a signature of pdf into out; the digest to dig */
static int
sign_into(qes_pdf *pdf, qes_buf *out, uint8_t dig[64])
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .reason = "fuzz", .contents_bytes = 16, .signing_time = 1767225600,
	    .id_seed = "fuzz" };
	qes_pdf_sign_ctx *ctx = NULL;
	size_t before = qes_buf_len(out), dlen;
	int r;

	r = qes_pdf_sign_prepare_buf(pdf, &p, out, QES_MD_SHA256, &ctx);
	if (r != 0) {
		if (ctx != NULL || r > 0 || qes_buf_len(out) != before)
			abort();
		return r;
	}
	if (qes_pdf_sign_digest(ctx, dig, 64, &dlen) != 0 || dlen != 32)
		abort();
	if (qes_pdf_sign_finish(ctx, der, sizeof(der)) != 0)
		abort();
	qes_pdf_sign_free(ctx);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	const qes_ades_blob blob = { der, sizeof(der) };
	qes_ades_vdata vd = { &blob, 1, &blob, 1, NULL, 0 };
	qes_pdf_limits lim;
	qes_pdf *pdf = NULL;
	qes_buf *a = NULL, *b = NULL;
	uint8_t d1[64], d2[64];
	char err[256];
	size_t before;
	int r;

	if (size > 4 * 1024 * 1024)
		return 0;
	qes_pdf_limits_default(&lim);
	lim.max_objects = 100000;
	lim.max_stream_bytes = 4 * 1024 * 1024;
	r = qes_pdf_open_mem(data, size, &lim, &pdf, err, sizeof(err));
	if (r != 0) {
		if (pdf != NULL || r > 0 || strlen(err) >= sizeof(err))
			abort();
		return 0;
	}
	if (qes_pdf_size(pdf) != size || (a = qes_buf_new()) == NULL ||
	    (b = qes_buf_new()) == NULL)
		abort();
	if (sign_into(pdf, a, d1) == 0) {
		/* an incremental update: the original bytes first, unchanged */
		if (qes_buf_len(a) <= size || memcmp(qes_buf_data(a), data, size) != 0)
			abort();
		/* deterministic: the same parameters, the same digest */
		if (sign_into(pdf, b, d2) != 0 || memcmp(d1, d2, 32) != 0 ||
		    qes_buf_len(a) != qes_buf_len(b) ||
		    memcmp(qes_buf_data(a), qes_buf_data(b), qes_buf_len(a)) != 0)
			abort();
	}
	qes_buf_reset(b);
	if (qes_buf_put_str(b, "kept") != 0)
		abort();
	before = qes_buf_len(b);
	r = qes_pdf_add_dss_buf(pdf, &vd, b);
	if (r != 0 && (r > 0 || qes_buf_len(b) != before))
		abort();
	if (r == 0 && (qes_buf_len(b) <= before + size ||
	    memcmp(qes_buf_data(b) + before, data, size) != 0))
		abort();
	qes_buf_free(a);
	qes_buf_free(b);
	qes_pdf_free(pdf);
	return 0;
}
