/*
 * pdf.c - the PDF document handle: maps an untrusted file read-only,
 * loads its cross-reference chain (pdf_xref.c), checks the catalog and
 * finds the first page (where PAdES puts its invisible widget). Nothing of
 * the document's content is read, copied or logged here.
 *
 * The file is mapped, not read: the lexer only touches the pages around
 * the few objects it parses, so the resident memory of a 200 MB document
 * stays small. Writers (pdf_write.c) copy the bytes with pread instead.
 * A document already in memory (the gateway's, which never goes to disk)
 * is read in place, the caller's bytes standing in for the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/err.h"
#include "pdf_priv.h"

void
qes_pdf_limits_default(qes_pdf_limits *lim)
{
	lim->max_file_bytes = (uint64_t)4 * 1024 * 1024 * 1024;
	lim->max_objects = 4000000;
	lim->max_depth = 64;
	lim->max_string_bytes = 1024 * 1024;
	lim->max_stream_bytes = 64 * 1024 * 1024;
	lim->max_dict_entries = 4096;
	lim->max_array_items = 1000000;
	lim->max_xref_sections = 256;
}

void
qes_pdf_free(qes_pdf *pdf)
{
	if (pdf == NULL)
		return;
	if (pdf->map != NULL && !pdf->borrowed)
		munmap((void *)(uintptr_t)pdf->map, pdf->size);
	if (pdf->fd >= 0)
		close(pdf->fd);
	free(pdf->xref);
	free(pdf->ostm.data);
	pdf_obj_free(pdf->trailer);
	pdf_obj_free(pdf->catalog);
	free(pdf);
}

const char *
qes_pdf_errmsg(const qes_pdf *pdf)
{
	return pdf != NULL ? pdf->err : "no PDF handle";
}

uint64_t
qes_pdf_size(const qes_pdf *pdf)
{
	return pdf->size;
}

size_t
qes_pdf_signature_count(const qes_pdf *pdf)
{
	return pdf->nsig;
}

int
qes_pdf_uses_xref_stream(const qes_pdf *pdf)
{
	return pdf->xref_stream ? 1 : 0;
}

/* Walk /Kids[0] down from /Pages to the first leaf. */
static int
find_first_page(qes_pdf *pdf)
{
	const pdf_obj *ref = pdf_dict_get(pdf->catalog, "Pages"), *kids;
	pdf_obj *node = NULL;
	uint32_t steps;
	int r;

	for (steps = 0; steps <= pdf->lim.max_depth; steps++) {
		/* ref may point into node: take its numbers before node goes */
		if (ref == NULL || ref->type != PDF_REF) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "the page tree has a node that is not an indirect object");
			goto out;
		}
		pdf->page_num = ref->u.r.num;
		pdf->page_gen = ref->u.r.gen;
		pdf_obj_free(node);
		node = NULL;
		if ((r = pdf_load(pdf, pdf->page_num, &node)) != 0)
			goto out;
		if (node->type != PDF_DICT) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED,
			    "page tree node %u is not a dictionary", pdf->page_num);
			goto out;
		}
		if (pdf_is_name(pdf_dict_get(node, "Type"), "Page")) {
			r = 0;
			goto out;
		}
		kids = pdf_dict_get(node, "Kids");
		if (kids == NULL || kids->type != PDF_ARRAY || kids->u.a.n == 0) {
			r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the document has no page");
			goto out;
		}
		ref = kids->u.a.items[0];
	}
	r = pdf_err(pdf, QES_ERR_LIMIT, "the page tree is deeper than %u",
	    pdf->lim.max_depth);
 out:
	pdf_obj_free(node);
	return r;
}

/* Count the signature fields of the AcroForm (top-level /Fields). */
static int
count_signatures(qes_pdf *pdf)
{
	pdf_obj *form = NULL, *fields = NULL, *f = NULL;
	const pdf_obj *ft;
	size_t i;
	int r;

	pdf->nsig = 0;
	if ((r = pdf_resolve(pdf, pdf_dict_get(pdf->catalog, "AcroForm"), &form)) != 0)
		return r;
	if (form->type != PDF_DICT)
		goto out;
	if ((r = pdf_resolve(pdf, pdf_dict_get(form, "Fields"), &fields)) != 0)
		goto out;
	if (fields->type != PDF_ARRAY)
		goto out;
	for (i = 0; i < fields->u.a.n; i++) {
		if ((r = pdf_resolve(pdf, fields->u.a.items[i], &f)) != 0)
			goto out;
		ft = pdf_dict_get(f, "FT");
		if (pdf_is_name(ft, "Sig"))
			pdf->nsig++;
		pdf_obj_free(f);
		f = NULL;
	}
 out:
	pdf_obj_free(f);
	pdf_obj_free(fields);
	pdf_obj_free(form);
	return r;
}

static int
check_header(qes_pdf *pdf)
{
	size_t n = pdf->size < 1024 ? pdf->size : 1024, i;

	for (i = 0; i + 5 <= n; i++)
		if (memcmp(pdf->map + i, "%PDF-", 5) == 0)
			return 0;
	return pdf_err(pdf, QES_ERR_PDF_MALFORMED,
	    "no %%PDF- header in the first 1024 bytes");
}

static int load(qes_pdf *pdf);

int
qes_pdf_open_fd(int fd, const qes_pdf_limits *limits, qes_pdf **out,
    char *err, size_t errlen)
{
	qes_pdf *pdf;
	struct stat st;
	void *map;
	int r;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = 0;
	if ((pdf = calloc(1, sizeof(*pdf))) == NULL)
		return QES_ERR_ALLOC;
	pdf->fd = -1;
	if (limits != NULL)
		pdf->lim = *limits;
	else
		qes_pdf_limits_default(&pdf->lim);
	if (fstat(fd, &st) != 0) {
		r = pdf_err(pdf, QES_ERR_IO, "cannot stat the PDF: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		r = pdf_err(pdf, QES_ERR_INVALID_ARG, "the PDF is not a regular file");
		goto fail;
	}
	if (st.st_size < 16) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the file is too short for a PDF");
		goto fail;
	}
	if ((uint64_t)st.st_size > pdf->lim.max_file_bytes ||
	    (uint64_t)st.st_size > SIZE_MAX / 2) {
		r = pdf_err(pdf, QES_ERR_LIMIT, "the PDF is larger than %llu bytes",
		    (unsigned long long)pdf->lim.max_file_bytes);
		goto fail;
	}
	/* our own descriptor: the writer copies the original bytes from it */
	if ((pdf->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		r = pdf_err(pdf, QES_ERR_IO, "cannot duplicate the descriptor");
		goto fail;
	}
	pdf->size = (size_t)st.st_size;
	map = mmap(NULL, pdf->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = pdf_err(pdf, QES_ERR_IO, "cannot map the PDF: %s", strerror(errno));
		goto fail;
	}
	pdf->map = map;
	if ((r = load(pdf)) != 0)
		goto fail;
	*out = pdf;
	return 0;
 fail:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", pdf->err[0] ? pdf->err : "cannot open the PDF");
	qes_pdf_free(pdf);
	return r;
}

/* What both openers do once the bytes are in pdf->map. */
static int
load(qes_pdf *pdf)
{
	const pdf_obj *root;
	int r;

	if ((r = check_header(pdf)) != 0 || (r = pdf_xref_load(pdf)) != 0)
		return r;
	root = pdf_dict_get(pdf->trailer, "Root");
	if (root == NULL || root->type != PDF_REF)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the trailer has no /Root reference");
	pdf->root_num = root->u.r.num;
	pdf->root_gen = root->u.r.gen;
	if ((r = pdf_load(pdf, root->u.r.num, &pdf->catalog)) != 0)
		return r;
	if (pdf->catalog->type != PDF_DICT)
		return pdf_err(pdf, QES_ERR_PDF_MALFORMED, "/Root is not a dictionary");
	if ((r = find_first_page(pdf)) != 0 || (r = count_signatures(pdf)) != 0)
		return r;
	return 0;
}

int
qes_pdf_open_mem(const uint8_t *data, size_t len, const qes_pdf_limits *limits,
    qes_pdf **out, char *err, size_t errlen)
{
	qes_pdf *pdf;
	int r;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = 0;
	if (data == NULL && len != 0)
		return pdf_set_err(err, errlen, QES_ERR_INVALID_ARG, "no PDF bytes");
	if ((pdf = calloc(1, sizeof(*pdf))) == NULL)
		return QES_ERR_ALLOC;
	pdf->fd = -1;
	pdf->borrowed = true;
	if (limits != NULL)
		pdf->lim = *limits;
	else
		qes_pdf_limits_default(&pdf->lim);
	if (len < 16) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the document is too short for a PDF");
		goto fail;
	}
	if ((uint64_t)len > pdf->lim.max_file_bytes || len > SIZE_MAX / 2) {
		r = pdf_err(pdf, QES_ERR_LIMIT, "the PDF is larger than %llu bytes",
		    (unsigned long long)pdf->lim.max_file_bytes);
		goto fail;
	}
	pdf->map = data;
	pdf->size = len;
	if ((r = load(pdf)) != 0)
		goto fail;
	*out = pdf;
	return 0;
 fail:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", pdf->err[0] ? pdf->err : "cannot open the PDF");
	qes_pdf_free(pdf);
	return r;
}

int
qes_pdf_open(const char *path, const qes_pdf_limits *limits, qes_pdf **out,
    char *err, size_t errlen)
{
	int fd, r;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return pdf_set_err(err, errlen, QES_ERR_IO, "cannot open %s: %s",
		    path, strerror(errno));
	r = qes_pdf_open_fd(fd, limits, out, err, errlen);
	close(fd);
	return r;
}
