/*
 * qes-pdf-tool - drives libqes's PDF layer for tests/integration/pades_pdf.sh
 * and the measurements in docs/formats.md. The CMS or timestamp token comes
 * from an outside command (openssl), so the PDF layer is tested on its own.
 *
 *   qes-pdf-tool info IN
 *       "sigs=N xref=table|stream size=BYTES"; on error the error's name
 *       (pdf_encrypted, pdf_malformed, limit, ...) and exit 2
 *   qes-pdf-tool sign IN OUT --contents N [--doc-timestamp] [--field NAME]
 *       [--reason R] [--location L] [--contact C] [--name N]
 *       --ranges FILE|- --der FILE --exec CMD
 *       prepare; write the signed byte ranges to FILE (their sha256 must be
 *       the digest prepare computed; "-" skips this, for measurements of
 *       prepare + finish alone); run CMD with sh -c, which writes the DER
 *       to --der; finish. Prints the byte range and the field name.
 *   qes-pdf-tool dss IN OUT [--cert F]... [--ocsp F]... [--crl F]...
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/sig.h"

#define MAX_BLOBS 32

static int
fail(int r, const char *what, const qes_pdf *pdf)
{
	fprintf(stderr, "qes-pdf-tool: %s: %s (%s)%s%s\n", what, qes_strerror(r),
	    qes_errname(r), pdf ? ": " : "", pdf ? qes_pdf_errmsg(pdf) : "");
	printf("%s\n", qes_errname(r));
	return 2;
}

static int
open_pdf(const char *path, qes_pdf **pdf)
{
	char err[256];
	int r;

	if ((r = qes_pdf_open(path, NULL, pdf, err, sizeof(err))) != 0) {
		fprintf(stderr, "qes-pdf-tool: %s: %s\n", path, err);
		printf("%s\n", qes_errname(r));
		return 2;
	}
	return 0;
}

static int
load_blobs(char **paths, size_t n, qes_buf **bufs, qes_ades_blob *blobs)
{
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		if ((r = qes_buf_read_file(paths[i], 16 * 1024 * 1024, &bufs[i])) != 0)
			return r;
		blobs[i].data = qes_buf_data(bufs[i]);
		blobs[i].len = qes_buf_len(bufs[i]);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "contents", required_argument, NULL, 'n' },
		{ "doc-timestamp", no_argument, NULL, 't' },
		{ "field", required_argument, NULL, 'f' },
		{ "reason", required_argument, NULL, 'r' },
		{ "location", required_argument, NULL, 'l' },
		{ "contact", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'N' },
		{ "ranges", required_argument, NULL, 'R' },
		{ "der", required_argument, NULL, 'd' },
		{ "exec", required_argument, NULL, 'e' },
		{ "cert", required_argument, NULL, 'C' },
		{ "ocsp", required_argument, NULL, 'O' },
		{ "crl", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED };
	const char *cmd, *ranges = NULL, *der_path = NULL, *exec = NULL;
	char *certs[MAX_BLOBS], *ocsps[MAX_BLOBS], *crls[MAX_BLOBS];
	size_t nc = 0, no = 0, nl = 0, i, dlen, rlen;
	qes_buf *bufs[3 * MAX_BLOBS] = { 0 }, *der = NULL;
	qes_ades_blob blobs[3 * MAX_BLOBS];
	qes_ades_vdata vd;
	qes_pdf *pdf = NULL;
	qes_pdf_sign_ctx *ctx = NULL;
	uint8_t dig[QES_MD_MAX_LEN], rdig[QES_MD_MAX_LEN];
	uint64_t br[4];
	int ch, fd, r, rc = 2;

	if (argc < 3) {
		fprintf(stderr, "usage: qes-pdf-tool info|sign|dss IN [OUT] [options]\n");
		return 64;
	}
	cmd = argv[1];
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'n': p.contents_bytes = (size_t)strtoul(optarg, NULL, 10); break;
		case 't': p.subfilter = QES_PDF_RFC3161; break;
		case 'f': p.field_name = optarg; break;
		case 'r': p.reason = optarg; break;
		case 'l': p.location = optarg; break;
		case 'c': p.contact_info = optarg; break;
		case 'N': p.name = optarg; break;
		case 'R': ranges = optarg; break;
		case 'd': der_path = optarg; break;
		case 'e': exec = optarg; break;
		case 'C': if (nc < MAX_BLOBS) certs[nc++] = optarg; break;
		case 'O': if (no < MAX_BLOBS) ocsps[no++] = optarg; break;
		case 'L': if (nl < MAX_BLOBS) crls[nl++] = optarg; break;
		default: return 64;
		}
	}
	if (optind >= argc)
		return 64;
	if ((rc = open_pdf(argv[optind], &pdf)) != 0)
		return rc;
	rc = 2;
	if (strcmp(cmd, "info") == 0) {
		printf("sigs=%zu xref=%s size=%llu\n", qes_pdf_signature_count(pdf),
		    qes_pdf_uses_xref_stream(pdf) ? "stream" : "table",
		    (unsigned long long)qes_pdf_size(pdf));
		rc = 0;
		goto out;
	}
	if (optind + 1 >= argc)
		goto usage;
	if (strcmp(cmd, "dss") == 0) {
		if ((r = load_blobs(certs, nc, bufs, blobs)) != 0 ||
		    (r = load_blobs(ocsps, no, bufs + MAX_BLOBS, blobs + MAX_BLOBS)) != 0 ||
		    (r = load_blobs(crls, nl, bufs + 2 * MAX_BLOBS,
		    blobs + 2 * MAX_BLOBS)) != 0) {
			rc = fail(r, "reading validation data", NULL);
			goto out;
		}
		vd = (qes_ades_vdata){ blobs, nc, blobs + MAX_BLOBS, no,
		    blobs + 2 * MAX_BLOBS, nl };
		if ((r = qes_pdf_add_dss(pdf, &vd, argv[optind + 1])) != 0)
			rc = fail(r, "adding the DSS", pdf);
		else
			rc = 0;
		goto out;
	}
	if (strcmp(cmd, "sign") != 0 || ranges == NULL || der_path == NULL || exec == NULL)
		goto usage;
	if ((r = qes_pdf_sign_prepare(pdf, &p, argv[optind + 1], QES_MD_SHA256, &ctx)) != 0) {
		rc = fail(r, "prepare", pdf);
		goto out;
	}
	qes_pdf_sign_byte_range(ctx, br);
	printf("byterange=%llu %llu %llu %llu field=%s\n", (unsigned long long)br[0],
	    (unsigned long long)br[1], (unsigned long long)br[2],
	    (unsigned long long)br[3], qes_pdf_sign_field_name(ctx));
	if (strcmp(ranges, "-") == 0)
		goto sign;
	if ((fd = open(ranges, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    (r = qes_pdf_sign_write_signed(ctx, fd)) != 0 || close(fd) != 0) {
		rc = fail(QES_ERR_IO, "writing the signed ranges", pdf);
		goto out;
	}
	if ((r = qes_pdf_sign_digest(ctx, dig, sizeof(dig), &dlen)) != 0 ||
	    (r = qes_md_file(QES_MD_SHA256, ranges, rdig)) != 0 ||
	    dlen != qes_md_len(QES_MD_SHA256) || memcmp(dig, rdig, dlen) != 0) {
		fprintf(stderr, "qes-pdf-tool: the digest is not the hash of the ranges\n");
		goto out;
	}
 sign:
	if (system(exec) != 0) {
		fprintf(stderr, "qes-pdf-tool: the signing command failed\n");
		goto out;
	}
	if ((r = qes_buf_read_file(der_path, 8 * 1024 * 1024, &der)) != 0) {
		rc = fail(r, "reading the DER", NULL);
		goto out;
	}
	rlen = qes_buf_len(der);
	if ((r = qes_pdf_sign_finish(ctx, qes_buf_data(der), rlen)) != 0) {
		rc = fail(r, "finish", pdf);
		goto out;
	}
	printf("der=%zu reserved=%zu\n", rlen, p.contents_bytes);
	rc = 0;
	goto out;
 usage:
	fprintf(stderr, "qes-pdf-tool: bad arguments\n");
	rc = 64;
 out:
	qes_buf_free(der);
	for (i = 0; i < 3 * MAX_BLOBS; i++)
		qes_buf_free(bufs[i]);
	qes_pdf_sign_free(ctx);
	qes_pdf_free(pdf);
	return rc;
}
