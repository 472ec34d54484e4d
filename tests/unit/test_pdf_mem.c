/*
 * test_pdf_mem.c - the PDF layer over a document in memory and into
 * buffers (qes_pdf_open_mem, qes_pdf_sign_prepare_buf, qes_pdf_add_dss_buf):
 * for every seed PDF of the fuzz corpus (cairo, Ghostscript, qpdf plain,
 * object streams and linearized, AcroForm, signed once and twice,
 * encrypted) the memory path opens or refuses exactly as the file path
 * does and writes the same bytes (into a buffer or, from memory, a file); the caller's document is never changed;
 * the update is deterministic (the /ID derived from id_seed and the
 * update); a failed or abandoned signing leaves the output buffer as it
 * was.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pdf.h"

static char tmpdir[] = "/tmp/qes-test-pdf-mem-XXXXXX";
static char corpus[1024], out_sig[300], out_dss[300];

static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
static const qes_ades_blob blob = { der, sizeof(der) };

static int
group_setup(void **state)
{
	const char *src = getenv("QES_SOURCE_DIR");

	(void)state;
	if (src == NULL || strlen(src) > 900 || mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(corpus, sizeof(corpus), "%s/tests/fuzz/corpus/pdf", src);
	snprintf(out_sig, sizeof(out_sig), "%s/s.pdf", tmpdir);
	snprintf(out_dss, sizeof(out_dss), "%s/d.pdf", tmpdir);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	unlink(out_sig);
	unlink(out_dss);
	return rmdir(tmpdir) == 0 ? 0 : -1;
}

static void
params(qes_pdf_sign_params *p, const char *seed)
{
	memset(p, 0, sizeof(*p));
	p->subfilter = QES_PDF_CADES_DETACHED;
	p->reason = "test";
	p->signing_time = 1767225600;
	p->contents_bytes = 64;
	p->id_seed = seed;
}

static qes_buf *
slurp(const char *path)
{
	qes_buf *b = NULL;

	assert_int_equal(qes_buf_read_file(path, 1 << 24, &b), 0);
	return b;
}

/* the file at path holds exactly the len bytes at want */
static void
file_holds(const char *path, const uint8_t *want, size_t len)
{
	qes_buf *f = slurp(path);

	assert_int_equal(qes_buf_len(f), len);
	assert_memory_equal(qes_buf_data(f), want, len);
	qes_buf_free(f);
}

/* sign pdf into out (a buffer) or out_sig (out NULL); the digest to dig */
static void
sign(qes_pdf *pdf, qes_buf *out, const char *seed, uint8_t dig[64])
{
	qes_pdf_sign_params p;
	qes_pdf_sign_ctx *ctx = NULL;
	size_t dlen;
	int r;

	params(&p, seed);
	r = out != NULL ? qes_pdf_sign_prepare_buf(pdf, &p, out, QES_MD_SHA256, &ctx) :
	    qes_pdf_sign_prepare(pdf, &p, out_sig, QES_MD_SHA256, &ctx);
	if (r != 0)
		fail_msg("prepare: %s", qes_pdf_errmsg(pdf));
	assert_int_equal(qes_pdf_sign_digest(ctx, dig, 64, &dlen), 0);
	assert_int_equal(dlen, 32);
	assert_int_equal(qes_pdf_sign_finish(ctx, der, sizeof(der)), 0);
	qes_pdf_sign_free(ctx);
}

/* One seed: the memory path against the file path. */
static void
compare(const char *path)
{
	qes_ades_vdata vd = { &blob, 1, &blob, 1, NULL, 0 };
	qes_buf *doc = slurp(path), *copy = qes_buf_new(), *a = qes_buf_new();
	qes_buf *b = qes_buf_new();
	qes_pdf *pf = NULL, *pm = NULL;
	uint8_t d1[64], d2[64];
	char e1[256], e2[256];
	int r1, r2;

	assert_true(copy != NULL && a != NULL && b != NULL);
	assert_int_equal(qes_buf_put(copy, qes_buf_data(doc), qes_buf_len(doc)), 0);
	r1 = qes_pdf_open(path, NULL, &pf, e1, sizeof(e1));
	r2 = qes_pdf_open_mem(qes_buf_data(doc), qes_buf_len(doc), NULL, &pm, e2, sizeof(e2));
	if (r1 != r2)
		fail_msg("%s: file %d (%s), memory %d (%s)", path, r1, e1, r2, e2);
	if (r1 != 0) {
		assert_null(pm);
		goto out;
	}
	assert_int_equal(qes_pdf_size(pm), qes_buf_len(doc));
	assert_int_equal(qes_pdf_signature_count(pm), qes_pdf_signature_count(pf));
	assert_int_equal(qes_pdf_uses_xref_stream(pm), qes_pdf_uses_xref_stream(pf));

	/* a signature: the same digest and the same bytes */
	sign(pf, NULL, "job-1", d1);
	sign(pm, a, "job-1", d2);
	assert_memory_equal(d1, d2, 32);
	file_holds(out_sig, qes_buf_data(a), qes_buf_len(a));
	/* from memory into a file: the same bytes again */
	sign(pm, NULL, "job-1", d1);
	assert_memory_equal(d1, d2, 32);
	file_holds(out_sig, qes_buf_data(a), qes_buf_len(a));
	/* twice the same; another seed another /ID, so another digest */
	sign(pm, b, "job-1", d1);
	assert_memory_equal(d1, d2, 32);
	assert_memory_equal(qes_buf_data(a), qes_buf_data(b), qes_buf_len(a));
	qes_buf_reset(b);
	sign(pm, b, "job-2", d1);
	assert_memory_not_equal(d1, d2, 32);

	/* a DSS: the same bytes, appended after what the buffer held */
	qes_buf_reset(b);
	assert_int_equal(qes_buf_put_str(b, "kept"), 0);
	assert_int_equal(qes_pdf_add_dss(pf, &vd, out_dss), 0);
	assert_int_equal(qes_pdf_add_dss_buf(pm, &vd, b), 0);
	assert_true(qes_buf_len(b) >= 4);
	assert_memory_equal(qes_buf_data(b), "kept", 4);
	file_holds(out_dss, qes_buf_data(b) + 4, qes_buf_len(b) - 4);
 out:
	/* the caller's document is read, never written */
	assert_memory_equal(qes_buf_data(doc), qes_buf_data(copy), qes_buf_len(doc));
	qes_pdf_free(pf);
	qes_pdf_free(pm);
	qes_buf_free(a);
	qes_buf_free(b);
	qes_buf_free(copy);
	qes_buf_free(doc);
	unlink(out_sig);
	unlink(out_dss);
}

static void
test_corpus(void **state)
{
	DIR *d = opendir(corpus);
	struct dirent *e;
	char path[1400];
	int n = 0, opened = 0;

	(void)state;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		qes_pdf *p = NULL;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", corpus, e->d_name);
		compare(path);
		n++;
		if (qes_pdf_open(path, NULL, &p, NULL, 0) == 0)
			opened++;
		qes_pdf_free(p);
	}
	closedir(d);
	assert_true(n >= 8);
	assert_true(opened >= 7);	/* all but the encrypted one */
}

/* Prepare leaves the buffer alone; a DER over the reservation, a prepare
 * never finished and a buffer too small leave it as it was. Refusals of
 * the memory opener. */
static void
test_failures(void **state)
{
	char path[1400], err[256];
	qes_buf *doc, *out = qes_buf_new();
	qes_pdf *pdf = NULL;
	qes_pdf_sign_params p;
	qes_pdf_sign_ctx *ctx = NULL;
	uint8_t big[100];

	(void)state;
	snprintf(path, sizeof(path), "%s/cairo.pdf", corpus);
	doc = slurp(path);
	assert_int_equal(qes_pdf_open_mem(qes_buf_data(doc), qes_buf_len(doc), NULL, &pdf,
	    err, sizeof(err)), 0);
	assert_int_equal(qes_buf_put_str(out, "kept"), 0);
	params(&p, NULL);
	assert_int_equal(qes_pdf_sign_prepare_buf(pdf, &p, out, QES_MD_SHA256, &ctx), 0);
	assert_int_equal(qes_buf_len(out), 4);	/* prepare only hashes */
	/* the signed bytes are there before finish, for a signer that wants them */
	{
		char sp[1500];
		qes_buf *sb = NULL;
		uint64_t br[4];
		FILE *fp;

		snprintf(sp, sizeof(sp), "%s/signed.bin", tmpdir);
		assert_non_null(fp = fopen(sp, "wb"));
		assert_int_equal(qes_pdf_sign_write_signed(ctx, fileno(fp)), 0);
		assert_int_equal(fclose(fp), 0);
		sb = slurp(sp);
		unlink(sp);
		qes_pdf_sign_byte_range(ctx, br);
		assert_int_equal(qes_buf_len(sb), br[1] + br[3]);
		assert_memory_equal(qes_buf_data(sb), qes_buf_data(doc), qes_buf_len(doc));
		qes_buf_free(sb);
	}
	memset(big, 0x30, sizeof(big));
	assert_int_equal(qes_pdf_sign_finish(ctx, big, sizeof(big)), QES_ERR_LIMIT);
	assert_int_equal(qes_buf_len(out), 4);
	qes_pdf_sign_free(ctx);
	assert_int_equal(qes_buf_len(out), 4);

	ctx = NULL;
	assert_int_equal(qes_pdf_sign_prepare_buf(pdf, &p, out, QES_MD_SHA256, &ctx), 0);
	qes_pdf_sign_free(ctx);		/* abandoned */
	assert_int_equal(qes_buf_len(out), 4);

	/* an output buffer too small for the document */
	qes_buf_set_max(out, 64);
	ctx = NULL;
	assert_int_equal(qes_pdf_sign_prepare_buf(pdf, &p, out, QES_MD_SHA256, &ctx), 0);
	assert_int_equal(qes_pdf_sign_finish(ctx, der, sizeof(der)), QES_ERR_LIMIT);
	assert_non_null(strstr(qes_pdf_errmsg(pdf), "output buffer"));
	qes_pdf_sign_free(ctx);
	assert_int_equal(qes_buf_len(out), 4);
	assert_int_equal(qes_pdf_add_dss_buf(pdf, &(qes_ades_vdata){ &blob, 1, NULL, 0,
	    NULL, 0 }, out), QES_ERR_LIMIT);
	assert_int_equal(qes_buf_len(out), 4);
	ctx = NULL;
	assert_int_equal(qes_pdf_sign_prepare_buf(pdf, &p, NULL, QES_MD_SHA256, &ctx),
	    QES_ERR_INVALID_ARG);
	qes_pdf_free(pdf);

	pdf = NULL;
	assert_int_equal(qes_pdf_open_mem((const uint8_t *)"%PDF-1.7\n", 9, NULL, &pdf, err,
	    sizeof(err)), QES_ERR_PDF_MALFORMED);
	assert_null(pdf);
	assert_non_null(strstr(err, "too short"));
	assert_int_equal(qes_pdf_open_mem(NULL, 100, NULL, &pdf, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	/* the limit applies to memory as to files */
	{
		qes_pdf_limits lim;

		qes_pdf_limits_default(&lim);
		lim.max_file_bytes = 100;
		assert_int_equal(qes_pdf_open_mem(qes_buf_data(doc), qes_buf_len(doc), &lim,
		    &pdf, err, sizeof(err)), QES_ERR_LIMIT);
		assert_null(pdf);
	}
	qes_buf_free(out);
	qes_buf_free(doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_failures),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
