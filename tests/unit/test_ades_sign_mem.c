/*
 * test_ades_sign_mem.c - the signing API over a document in memory
 * (in_data) with the result appended to a buffer (out_buf), as the gateway
 * uses it: prepare is deterministic (twice the same parameters, the same
 * digest to sign, in every format, packaging and level, so a second
 * process can redo it and finish), the memory path gives what the file
 * path gives, a failure leaves the buffer as it was, and no file is ever
 * written. B-LT and B-LTA finishes need OCSP/CRL servers and are run
 * through the gateway in tests/integration/e2e_ades.sh.
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

#include "testtsa.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/sign.h"
#include "qes/verify.h"

static testsign fx;
static char txt_path[300], xml_path[300], pdf_path[300], out_path[300];

#define SIGNING_TIME ((int64_t)1767225600)	/* 2026-01-01T00:00:00Z */

static const char txt_doc[] = "a contract, marker qes-mem-7f3a\n";
static const char xml_doc[] = "<?xml version=\"1.0\"?>\n<a><b>qes-mem-7f3a</b></a>\n";
static const char pdf_doc[] = TESTTSA_ONE_PAGE_PDF;

typedef struct combo {
	qes_ades_format format;
	qes_ades_packaging packaging;
	qes_ades_level top;	/* the highest level the combination makes */
} combo;

static const combo combos[] = {
	{ QES_ADES_CADES, QES_ADES_PKG_DETACHED, QES_ADES_B_LT },
	{ QES_ADES_CADES, QES_ADES_PKG_ENVELOPING, QES_ADES_B_LT },
	{ QES_ADES_PADES, QES_ADES_PKG_ENVELOPED, QES_ADES_B_LTA },
	{ QES_ADES_XADES, QES_ADES_PKG_ENVELOPED, QES_ADES_B_LTA },
	{ QES_ADES_XADES, QES_ADES_PKG_DETACHED, QES_ADES_B_LTA },
	{ QES_ADES_JADES, QES_ADES_PKG_JSON, QES_ADES_B_LT },
	{ QES_ADES_JADES, QES_ADES_PKG_COMPACT, QES_ADES_B_B },
	{ QES_ADES_JADES, QES_ADES_PKG_DETACHED, QES_ADES_B_LT },
};

/* files in tmpdir besides the three inputs */
static int
stray_files(void)
{
	DIR *d = opendir(fx.dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && strcmp(e->d_name, "doc.txt") != 0 &&
		    strcmp(e->d_name, "doc.xml") != 0 && strcmp(e->d_name, "doc.pdf") != 0)
			n++;
	closedir(d);
	return n;
}

static int
group_setup(void **state)
{
	(void)state;
	if (testsign_setup(&fx, "/tmp/qes-test-ades-mem-XXXXXX") != 0)
		return -1;
	snprintf(out_path, sizeof(out_path), "%s/out", fx.dir);
	if (testsign_file(&fx, "doc.txt", txt_doc, txt_path, sizeof(txt_path)) != 0 ||
	    testsign_file(&fx, "doc.xml", xml_doc, xml_path, sizeof(xml_path)) != 0 ||
	    testsign_file(&fx, "doc.pdf", pdf_doc, pdf_path, sizeof(pdf_path)) != 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	return testsign_teardown(&fx);
}

/* The document of a format, in memory and as a file. */
static const char *
doc_of(qes_ades_format f, const char **path)
{
	switch (f) {
	case QES_ADES_PADES:
		*path = pdf_path;
		return pdf_doc;
	case QES_ADES_XADES:
		*path = xml_path;
		return xml_doc;
	default:
		*path = txt_path;
		return txt_doc;
	}
}

/* Parameters for c at level l from memory into out (NULL: out_path). */
static void
params(qes_ades_sign_params *p, const combo *c, qes_ades_level l, qes_buf *out,
    const char *seed)
{
	const char *path, *d = doc_of(c->format, &path);

	memset(p, 0, sizeof(*p));
	p->format = c->format;
	p->packaging = c->packaging;
	p->level = l;
	if (out != NULL) {
		p->in_data = (const uint8_t *)d;
		p->in_len = strlen(d);
		p->out_buf = out;
	} else {
		p->in_path = path;
		p->out_path = out_path;
	}
	p->doc_name = "doc.txt";
	p->mime_type = "text/plain";
	p->signer = fx.p256.cert;
	p->chain = fx.chain;
	p->nchain = 1;
	p->md = QES_MD_SHA256;
	p->scheme = QES_SIG_ECDSA;
	p->signing_time = SIGNING_TIME;
	p->id_seed = seed;
	p->tsa = &fx.ts;
	p->pdf_field_name = "Signature1";
}

/* prepare p and copy the digest to sign into dig */
static qes_ades_ctx *
prepare(const qes_ades_sign_params *p, uint8_t *dig, size_t *len)
{
	qes_ades_ctx *ctx = NULL;
	const uint8_t *d;
	int r;

	if ((r = qes_ades_prepare(p, &ctx)) != 0)
		fail_msg("prepare %d/%d/%d: %s", (int)p->format, (int)p->packaging,
		    (int)p->level, qes_ades_errmsg(ctx));
	assert_int_equal(qes_ades_tbs(ctx, NULL, NULL, &d, len), 0);
	assert_in_range(*len, 32, QES_MD_MAX_LEN);
	memcpy(dig, d, *len);
	return ctx;
}

/*
 * Every format, packaging and level: two prepares from memory with the
 * same parameters give the same digest, and so does a prepare from the
 * file; another id_seed or signing time gives another one (the seed only
 * where something must be unique: XAdES Ids and the PDF's /ID).
 */
static void
test_deterministic(void **state)
{
	uint8_t d1[QES_MD_MAX_LEN], d2[QES_MD_MAX_LEN];
	qes_ades_sign_params p;
	qes_ades_ctx *ctx;
	qes_buf *out = qes_buf_new();
	size_t i, l1, l2;
	int lvl;

	(void)state;
	assert_non_null(out);
	for (i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		for (lvl = QES_ADES_B_B; lvl <= (int)combos[i].top; lvl++) {
			params(&p, &combos[i], (qes_ades_level)lvl, out, "job-0001");
			ctx = prepare(&p, d1, &l1);
			qes_ades_free(ctx);
			ctx = prepare(&p, d2, &l2);
			qes_ades_free(ctx);
			assert_int_equal(l1, l2);
			assert_memory_equal(d1, d2, l1);
			assert_int_equal(qes_buf_len(out), 0);	/* prepare writes nothing */

			/* the file gives the same signed data */
			params(&p, &combos[i], (qes_ades_level)lvl, NULL, "job-0001");
			ctx = prepare(&p, d2, &l2);
			qes_ades_free(ctx);
			assert_memory_equal(d1, d2, l1);

			params(&p, &combos[i], (qes_ades_level)lvl, out, "job-0001");
			p.signing_time = SIGNING_TIME + 1;
			ctx = prepare(&p, d2, &l2);
			qes_ades_free(ctx);
			assert_memory_not_equal(d1, d2, l1);

			if (combos[i].format != QES_ADES_PADES &&
			    combos[i].format != QES_ADES_XADES)
				continue;
			params(&p, &combos[i], (qes_ades_level)lvl, out, "job-0002");
			ctx = prepare(&p, d2, &l2);
			qes_ades_free(ctx);
			assert_memory_not_equal(d1, d2, l1);
		}
	}
	assert_int_equal(stray_files(), 0);
	qes_buf_free(out);
}

/* Finish ctx with sig; the output (out_buf, or out_path when out is NULL)
 * is appended to res. */
static void
finish(qes_ades_ctx *ctx, const qes_buf *sig, qes_buf *out, qes_buf *res)
{
	qes_buf *f = NULL;

	if (qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)) != 0)
		fail_msg("finish: %s", qes_ades_errmsg(ctx));
	if (out != NULL) {
		assert_int_equal(qes_buf_put(res, qes_buf_data(out), qes_buf_len(out)), 0);
		return;
	}
	assert_int_equal(qes_buf_read_file(out_path, 1 << 24, &f), 0);
	assert_int_equal(qes_buf_put(res, qes_buf_data(f), qes_buf_len(f)), 0);
	qes_buf_free(f);
	unlink(out_path);
}

/* What qes verify's library says of res: one signature whose value
 * verifies, at level l. */
static void
check_verifies(const combo *c, const qes_buf *res, qes_ades_level l)
{
	qes_verify_report *reps = NULL, one;
	qes_pdf *pdf = NULL;
	size_t n = 0, i;
	char err[256] = "";
	uint8_t dig[32];
	const char *path;
	int r;

	(void)doc_of(c->format, &path);
	switch (c->format) {
	case QES_ADES_CADES:
		qes_verify_report_init(&one);
		assert_int_equal(qes_md_digest(QES_MD_SHA256, txt_doc,
		    strlen(txt_doc), dig), 0);
		r = qes_verify_cms(qes_buf_data(res), qes_buf_len(res),
		    c->packaging == QES_ADES_PKG_DETACHED ? dig : NULL, sizeof(dig), &one);
		assert_int_equal(r, 0);
		assert_int_equal(one.integrity_ok, 1);
		assert_int_equal(one.level, l);
		qes_verify_report_clear(&one);
		return;
	case QES_ADES_PADES:
		assert_int_equal(qes_pdf_open_mem(qes_buf_data(res), qes_buf_len(res), NULL,
		    &pdf, err, sizeof(err)), 0);
		r = qes_verify_pdf(pdf, &reps, &n, err, sizeof(err));
		break;
	case QES_ADES_XADES:
		r = qes_verify_xades(qes_buf_data(res), qes_buf_len(res),
		    c->packaging == QES_ADES_PKG_DETACHED ? path : NULL, &reps, &n, err,
		    sizeof(err));
		break;
	default:
		r = qes_verify_jades(qes_buf_data(res), qes_buf_len(res),
		    c->packaging == QES_ADES_PKG_DETACHED ? (const uint8_t *)txt_doc : NULL,
		    c->packaging == QES_ADES_PKG_DETACHED ? strlen(txt_doc) : 0, &reps, &n,
		    err, sizeof(err));
		break;
	}
	if (r != 0)
		fail_msg("verify: %s", err);
	assert_int_equal(n, 1);
	if (!reps[0].integrity_ok)
		fail_msg("integrity: %s", reps[0].integrity_err);
	assert_int_equal(reps[0].level, l);
	for (i = 0; i < n; i++)
		qes_verify_report_clear(&reps[i]);
	free(reps);
	qes_pdf_free(pdf);
}

/*
 * B-B and B-T (the levels without OCSP/CRL servers): the value signed over
 * the memory prepare's digest finishes a second, independent prepare (the
 * gateway's other process) into out_buf; the file path's finish with the
 * same value writes the same bytes at B-B (nothing else varies) and a
 * signature that verifies the same way at B-T (the TSA's tokens differ).
 * out_buf keeps what it held before.
 */
static void
test_memory_equals_file(void **state)
{
	static const char prefix[] = "kept";
	uint8_t d1[QES_MD_MAX_LEN], d2[QES_MD_MAX_LEN];
	qes_ades_sign_params p;
	qes_ades_ctx *ctx;
	qes_buf *out = qes_buf_new(), *mem = qes_buf_new(), *file = qes_buf_new();
	qes_buf *sig = qes_buf_new();
	size_t i, l1, l2;
	int lvl;

	(void)state;
	assert_true(out != NULL && mem != NULL && file != NULL && sig != NULL);
	for (i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		for (lvl = QES_ADES_B_B; lvl <= QES_ADES_B_T && lvl <= (int)combos[i].top;
		    lvl++) {
			qes_buf_reset(out);
			qes_buf_reset(mem);
			qes_buf_reset(file);
			qes_buf_reset(sig);
			assert_int_equal(qes_buf_put_str(out, prefix), 0);
			/* the first process: prepare, the value made from its digest */
			params(&p, &combos[i], (qes_ades_level)lvl, out, "job-0001");
			ctx = prepare(&p, d1, &l1);
			qes_ades_free(ctx);
			assert_int_equal(testtsa_sign(fx.p256.key, QES_SIG_ECDSA,
			    QES_MD_SHA256, d1, l1, 0, sig), 0);
			/* the second: prepare again, finish with that value */
			ctx = prepare(&p, d2, &l2);
			assert_memory_equal(d1, d2, l1);
			assert_int_equal(qes_buf_len(out), sizeof(prefix) - 1);
			finish(ctx, sig, out, mem);
			qes_ades_free(ctx);
			assert_memory_equal(qes_buf_data(mem), prefix, sizeof(prefix) - 1);
			/* only what follows the prefix is the signed document */
			memmove(qes_buf_mutable(mem), qes_buf_data(mem) + sizeof(prefix) - 1,
			    qes_buf_len(mem) - (sizeof(prefix) - 1));
			assert_int_equal(qes_buf_truncate(mem, qes_buf_len(mem) -
			    (sizeof(prefix) - 1)), 0);
			assert_int_equal(stray_files(), 0);

			params(&p, &combos[i], (qes_ades_level)lvl, NULL, "job-0001");
			ctx = prepare(&p, d2, &l2);
			assert_memory_equal(d1, d2, l1);
			finish(ctx, sig, NULL, file);
			qes_ades_free(ctx);
			if (lvl == QES_ADES_B_B) {
				assert_int_equal(qes_buf_len(mem), qes_buf_len(file));
				assert_memory_equal(qes_buf_data(mem), qes_buf_data(file),
				    qes_buf_len(file));
			}
			check_verifies(&combos[i], mem, (qes_ades_level)lvl);
			check_verifies(&combos[i], file, (qes_ades_level)lvl);
		}
	}
	qes_buf_free(out);
	qes_buf_free(mem);
	qes_buf_free(file);
	qes_buf_free(sig);
}

/* prepare must refuse p with r and a message containing what */
static void
refused(const qes_ades_sign_params *p, int r, const char *what)
{
	qes_ades_ctx *ctx = NULL;

	assert_int_equal(qes_ades_prepare(p, &ctx), r);
	assert_non_null(ctx);
	if (strstr(qes_ades_errmsg(ctx), what) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", qes_ades_errmsg(ctx), what);
	qes_ades_free(ctx);
}

static void
test_refusals(void **state)
{
	static const combo cades = { QES_ADES_CADES, QES_ADES_PKG_DETACHED, QES_ADES_B_LT };
	static const combo xdet = { QES_ADES_XADES, QES_ADES_PKG_DETACHED, QES_ADES_B_LTA };
	static const combo pades = { QES_ADES_PADES, QES_ADES_PKG_ENVELOPED, QES_ADES_B_LTA };
	char seed[QES_ADES_MAX_ID_SEED + 2];
	qes_ades_sign_params p;
	qes_buf *out = qes_buf_new();

	(void)state;
	assert_non_null(out);
	params(&p, &cades, QES_ADES_B_B, out, NULL);
	p.in_path = txt_path;
	refused(&p, QES_ERR_INVALID_ARG, "exactly one of in_path, in_data");
	params(&p, &cades, QES_ADES_B_B, out, NULL);
	p.out_path = out_path;
	refused(&p, QES_ERR_INVALID_ARG, "exactly one of out_path and out_buf");
	params(&p, &cades, QES_ADES_B_B, out, NULL);
	p.out_buf = NULL;
	refused(&p, QES_ERR_INVALID_ARG, "exactly one of out_path and out_buf");
	params(&p, &pades, QES_ADES_B_B, out, NULL);
	p.out_path = out_path;
	refused(&p, QES_ERR_INVALID_ARG, "exactly one of out_path and out_buf");
	params(&p, &cades, QES_ADES_B_B, out, NULL);
	p.in_data = NULL;
	refused(&p, QES_ERR_INVALID_ARG, "in_len is set without in_data");
	params(&p, &xdet, QES_ADES_B_B, out, NULL);
	p.doc_name = NULL;
	refused(&p, QES_ERR_INVALID_ARG, "needs doc_name");
	memset(seed, 'a', sizeof(seed) - 1);
	seed[sizeof(seed) - 1] = '\0';
	params(&p, &cades, QES_ADES_B_B, out, seed);
	refused(&p, QES_ERR_LIMIT, "id_seed has at most");
	params(&p, &cades, QES_ADES_B_B, out, "job 1");
	refused(&p, QES_ERR_INVALID_ARG, "printable ASCII");
	params(&p, &pades, QES_ADES_B_B, out, NULL);
	p.in_data = (const uint8_t *)txt_doc;	/* not a PDF */
	p.in_len = strlen(txt_doc);
	refused(&p, QES_ERR_PDF_MALFORMED, "PAdES");
	assert_int_equal(qes_buf_len(out), 0);
	assert_int_equal(stray_files(), 0);
	qes_buf_free(out);
}

/*
 * A value that does not verify, a result larger than out_buf's limit and
 * a PAdES prepare abandoned before finish: out_buf as it was, no file.
 */
static void
test_failures_keep_buffer(void **state)
{
	uint8_t d[QES_MD_MAX_LEN];
	qes_ades_sign_params p;
	qes_ades_ctx *ctx;
	qes_buf *out = qes_buf_new(), *sig = qes_buf_new();
	size_t i, l;

	(void)state;
	assert_true(out != NULL && sig != NULL);
	for (i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		qes_buf_reset(out);
		qes_buf_reset(sig);
		assert_int_equal(qes_buf_put_str(out, "kept"), 0);
		params(&p, &combos[i], QES_ADES_B_B, out, NULL);
		ctx = prepare(&p, d, &l);
		assert_int_equal(testtsa_sign(fx.p256.key, QES_SIG_ECDSA, QES_MD_SHA256, d,
		    l, 1, sig), 0);
		qes_buf_mutable(sig)[3] ^= 0x40;
		assert_int_equal(qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)),
		    QES_ERR_SIGNATURE_INVALID);
		qes_ades_free(ctx);
		assert_int_equal(qes_buf_len(out), 4);

		/* room for the prefix and a few bytes only */
		qes_buf_reset(sig);
		qes_buf_set_max(out, 16);
		ctx = prepare(&p, d, &l);
		assert_int_equal(testtsa_sign(fx.p256.key, QES_SIG_ECDSA, QES_MD_SHA256, d,
		    l, 0, sig), 0);
		assert_int_equal(qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)),
		    QES_ERR_LIMIT);
		assert_non_null(strstr(qes_ades_errmsg(ctx), "output buffer"));
		qes_ades_free(ctx);
		assert_int_equal(qes_buf_len(out), 4);
		qes_buf_set_max(out, QES_BUF_DEFAULT_MAX);
	}
	/* PAdES B-LTA prepared, never finished */
	params(&p, &combos[2], QES_ADES_B_LTA, out, NULL);
	ctx = prepare(&p, d, &l);
	qes_ades_free(ctx);
	assert_int_equal(qes_buf_len(out), 4);
	assert_int_equal(stray_files(), 0);
	qes_buf_free(out);
	qes_buf_free(sig);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_memory_equals_file),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_failures_keep_buffer),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
