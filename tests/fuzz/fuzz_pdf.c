/*
 * fuzz_pdf.c - libFuzzer target for libqes's PDF layer: the input becomes a
 * file (memfd) that qes_pdf_open_fd parses (xref tables and streams, /Prev
 * chains, object streams, the catalog, the page tree, the AcroForm); when
 * it opens, a signature is prepared, finished and the DSS added, so the
 * writer's reading of the same objects is fuzzed too. Seeds in
 * corpus/pdf/ come from qpdf, Ghostscript and cairo, plain and signed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/pdf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char outdir[] = "/tmp/qes-fuzz-pdf-XXXXXX";
static char out_sig[64], out_dss[64];

static void
remove_dir(void)
{
	unlink(out_sig);
	unlink(out_dss);
	rmdir(outdir);
}

static int
prepare_dir(void)
{
	if (out_sig[0] != 0)
		return 0;
	if (mkdtemp(outdir) == NULL)
		return -1;
	atexit(remove_dir);
	snprintf(out_sig, sizeof(out_sig), "%s/s.pdf", outdir);
	snprintf(out_dss, sizeof(out_dss), "%s/d.pdf", outdir);
	return 0;
}

static void
exercise(qes_pdf *pdf)
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	const qes_ades_blob blob = { der, sizeof(der) };
	qes_ades_vdata vd = { &blob, 1, &blob, 1, NULL, 0 };
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .reason = "fuzz", .contents_bytes = 16 };
	qes_pdf_sign_ctx *ctx = NULL;
	uint8_t dig[64];
	size_t dlen;
	int r;

	r = qes_pdf_sign_prepare(pdf, &p, out_sig, QES_MD_SHA256, &ctx);
	if (r == 0) {
		if (qes_pdf_sign_digest(ctx, dig, sizeof(dig), &dlen) != 0 || dlen != 32)
			abort();
		if (qes_pdf_sign_finish(ctx, der, sizeof(der)) != 0)
			abort();
	} else if (ctx != NULL || r > 0) {
		abort();
	}
	qes_pdf_sign_free(ctx);
	(void)qes_pdf_add_dss(pdf, &vd, out_dss);
	unlink(out_sig);
	unlink(out_dss);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_pdf_limits lim;
	qes_pdf *pdf = NULL;
	char err[256];
	int fd, r;

	if (prepare_dir() != 0 || size > 4 * 1024 * 1024)
		return 0;
	if ((fd = memfd_create("fuzz.pdf", MFD_CLOEXEC)) < 0)
		return 0;
	if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	qes_pdf_limits_default(&lim);
	lim.max_objects = 100000;
	lim.max_stream_bytes = 4 * 1024 * 1024;
	r = qes_pdf_open_fd(fd, &lim, &pdf, err, sizeof(err));
	close(fd);
	if (r != 0) {
		if (pdf != NULL || r > 0 || strlen(err) >= sizeof(err))
			abort();
		return 0;
	}
	if (qes_pdf_size(pdf) != size)
		abort();
	exercise(pdf);
	qes_pdf_free(pdf);
	return 0;
}
