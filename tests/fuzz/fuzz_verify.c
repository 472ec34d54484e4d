/*
 * fuzz_verify.c - libFuzzer target for qes verify's readers (qes/verify.h).
 * The first byte chooses the reader, the rest is the file:
 *   0  PDF: qes_pdf_open_fd on a memfd, then qes_verify_pdf (the AcroForm
 *      field tree, signature dictionaries, byte ranges, the CMS or token in
 *      /Contents, the DSS)
 *   1  JWS compact or JSON: qes_verify_jades (jansson, base64url, headers,
 *      etsiU), once with a detached content
 *   2  XML: qes_verify_xades (libxml2 with limits, xmlsec1 with the closed
 *      URI and transform lists)
 *   3  CMS: qes_verify_cms, with and without a content digest
 * Seeds in corpus/verify/ are signed files of every format, prefixed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
drop(qes_verify_report *arr, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		qes_verify_report_clear(&arr[i]);
	free(arr);
}

static void
pdf(const uint8_t *data, size_t size)
{
	qes_pdf_limits lim;
	qes_pdf *p = NULL;
	qes_verify_report *arr = NULL;
	size_t n = 0;
	char err[256];
	int fd = memfd_create("fuzz-verify", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, data, size) == (ssize_t)size) {
		qes_pdf_limits_default(&lim);
		lim.max_objects = 100000;
		lim.max_stream_bytes = 1 << 20;
		if (qes_pdf_open_fd(fd, &lim, &p, err, sizeof(err)) == 0 &&
		    qes_verify_pdf(p, &arr, &n, err, sizeof(err)) == 0)
			drop(arr, n);
		qes_pdf_free(p);
	}
	close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t content[] = "fuzz content";
	uint8_t digest[32] = { 0 };
	qes_verify_report *arr = NULL, r;
	size_t n = 0;
	char err[256];

	if (size < 1 || size > (1 << 20))
		return 0;
	switch (data[0] & 3) {
	case 0:
		pdf(data + 1, size - 1);
		break;
	case 1:
		if (qes_verify_jades(data + 1, size - 1, NULL, 0, &arr, &n, err,
		    sizeof(err)) == 0)
			drop(arr, n);
		arr = NULL;
		if (qes_verify_jades(data + 1, size - 1, content, sizeof(content) - 1, &arr,
		    &n, err, sizeof(err)) == 0)
			drop(arr, n);
		break;
	case 2:
		if (qes_verify_xades(data + 1, size - 1, NULL, &arr, &n, err,
		    sizeof(err)) == 0)
			drop(arr, n);
		break;
	case 3:
		qes_verify_report_init(&r);
		(void)qes_verify_cms(data + 1, size - 1, NULL, 0, &r);
		qes_verify_report_clear(&r);
		(void)qes_verify_cms(data + 1, size - 1, digest, sizeof(digest), &r);
		qes_verify_report_clear(&r);
		break;
	}
	return 0;
}
