/*
 * test_ades_sign.c - the one signing API over the four formats
 * (src/lib/ades_sign.c): what each format and level refuses, with a
 * sentence; round trips with a software key and the in-process TSA for
 * CAdES (file and hash-only), XAdES, JAdES and PAdES; a wrong value and a
 * second finish refused with no output written. Real validators judge the
 * output in tests/integration/ades_cli.sh.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testtsa.h"
#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sign.h"

static testsign fx;
static char doc[300], xml[300], pdf[300], out[300];

static int
group_setup(void **state)
{
	(void)state;
	if (testsign_setup(&fx, "/tmp/qes-test-ades-sign-XXXXXX") != 0)
		return -1;
	snprintf(out, sizeof(out), "%s/out", fx.dir);
	if (testsign_file(&fx, "doc.txt", "a contract\n", doc, sizeof(doc)) != 0 ||
	    testsign_file(&fx, "doc.xml", "<?xml version=\"1.0\"?>\n<a><b>1</b></a>\n",
	    xml, sizeof(xml)) != 0 ||
	    testsign_file(&fx, "doc.pdf", TESTTSA_ONE_PAGE_PDF, pdf, sizeof(pdf)) != 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	return testsign_teardown(&fx);
}

static void
params(qes_ades_sign_params *p, qes_ades_format f, qes_ades_level l, const char *in)
{
	memset(p, 0, sizeof(*p));
	p->format = f;
	p->level = l;
	p->in_path = in;
	p->out_path = out;
	p->signer = fx.p256.cert;
	p->chain = fx.chain;
	p->nchain = 1;
	p->md = QES_MD_SHA256;
	p->scheme = QES_SIG_ECDSA;
	p->tsa = &fx.ts;
}

/* prepare must refuse with r and a message containing what */
static void
refused(const qes_ades_sign_params *p, int r, const char *what)
{
	qes_ades_ctx *ctx = NULL;

	assert_int_equal(qes_ades_prepare(p, &ctx), r);
	assert_non_null(ctx);
	if (strstr(qes_ades_errmsg(ctx), what) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", qes_ades_errmsg(ctx), what);
	qes_ades_free(ctx);
	assert_int_equal(access(out, F_OK), -1);
}

static void
test_refusals(void **state)
{
	qes_ades_sign_params p;
	uint8_t dig[32] = { 0 };

	(void)state;
	params(&p, QES_ADES_JADES, QES_ADES_B_LTA, doc);
	refused(&p, QES_ERR_UNSUPPORTED, "JAdES B-LTA");
	params(&p, QES_ADES_CADES, QES_ADES_B_LTA, doc);
	refused(&p, QES_ERR_UNSUPPORTED, "CAdES B-LTA");
	params(&p, QES_ADES_JADES, QES_ADES_B_T, doc);
	p.packaging = QES_ADES_PKG_COMPACT;
	refused(&p, QES_ERR_UNSUPPORTED, "B-B only");
	params(&p, QES_ADES_XADES, QES_ADES_B_B, xml);
	p.packaging = QES_ADES_PKG_ENVELOPING;
	refused(&p, QES_ERR_UNSUPPORTED, "no enveloping packaging");
	params(&p, QES_ADES_PADES, QES_ADES_B_T, pdf);
	p.tsa = NULL;
	refused(&p, QES_ERR_INVALID_ARG, "timestamp authority");
	params(&p, QES_ADES_PADES, QES_ADES_B_B, NULL);
	p.doc_digest = dig;
	p.doc_digest_len = sizeof(dig);
	refused(&p, QES_ERR_UNSUPPORTED, "needs the document");
	params(&p, QES_ADES_CADES, QES_ADES_B_B, doc);
	p.doc_digest = dig;
	p.doc_digest_len = sizeof(dig);
	refused(&p, QES_ERR_INVALID_ARG, "exactly one of in_path, in_data and doc_digest");
	params(&p, QES_ADES_XADES, QES_ADES_B_LTA, NULL);
	p.packaging = QES_ADES_PKG_DETACHED;
	p.doc_digest = dig;
	p.doc_digest_len = sizeof(dig);
	p.doc_name = "doc.txt";
	refused(&p, QES_ERR_UNSUPPORTED, "up to B-LT");
	params(&p, QES_ADES_CADES, QES_ADES_B_B, doc);
	p.out_path = doc;
	refused(&p, QES_ERR_INVALID_ARG, "must not be the input");
	params(&p, QES_ADES_PADES, QES_ADES_B_B, doc);	/* not a PDF */
	refused(&p, QES_ERR_PDF_MALFORMED, "PAdES");
	params(&p, (qes_ades_format)9, QES_ADES_B_B, doc);
	refused(&p, QES_ERR_INVALID_ARG, "unknown format");
}

/* prepare, sign, finish; the output must exist afterwards */
static void
round_trip(const qes_ades_sign_params *p)
{
	qes_ades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new();
	const uint8_t *dig;
	size_t len;
	qes_md md;
	qes_sig_scheme scheme;
	int r;

	unlink(out);
	r = qes_ades_prepare(p, &ctx);
	if (r != 0)
		fail_msg("prepare: %s", qes_ades_errmsg(ctx));
	assert_int_equal(qes_ades_tbs(ctx, &md, &scheme, &dig, &len), 0);
	assert_int_equal(md, p->md);
	assert_int_equal(scheme, p->scheme);
	assert_int_equal(testtsa_sign(fx.p256.key, scheme, md, dig, len, 0, sig), 0);
	if ((r = qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig))) != 0)
		fail_msg("finish: %s", qes_ades_errmsg(ctx));
	assert_int_equal(qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(access(out, F_OK), 0);
	qes_ades_free(ctx);
	qes_buf_free(sig);
}

static void
test_round_trips(void **state)
{
	qes_ades_sign_params p;
	qes_buf *cms = NULL;
	qes_cades_report rep;
	uint8_t dig[32];

	(void)state;
	/* CAdES hash-only at B-T: the CMS verifies over the digest */
	assert_int_equal(qes_md_file(QES_MD_SHA256, doc, dig), 0);
	params(&p, QES_ADES_CADES, QES_ADES_B_T, NULL);
	p.doc_digest = dig;
	p.doc_digest_len = sizeof(dig);
	round_trip(&p);
	assert_int_equal(qes_buf_read_file(out, 1 << 20, &cms), 0);
	assert_int_equal(qes_cades_verify_integrity(qes_buf_data(cms), qes_buf_len(cms), dig,
	    sizeof(dig), 1), 0);
	assert_int_equal(qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep), 0);
	assert_int_equal(rep.level, QES_ADES_B_T);
	assert_int_equal(rep.timestamp_imprint_ok, 1);
	qes_buf_free(cms);

	params(&p, QES_ADES_CADES, QES_ADES_B_B, doc);
	p.packaging = QES_ADES_PKG_ENVELOPING;
	round_trip(&p);
	params(&p, QES_ADES_XADES, QES_ADES_B_T, xml);
	round_trip(&p);
	params(&p, QES_ADES_JADES, QES_ADES_B_T, doc);
	round_trip(&p);
	params(&p, QES_ADES_JADES, QES_ADES_B_B, doc);
	p.packaging = QES_ADES_PKG_COMPACT;
	round_trip(&p);
	params(&p, QES_ADES_PADES, QES_ADES_B_T, pdf);
	round_trip(&p);
}

/* a value that does not verify: refused, nothing written, for each format */
static void
test_wrong_value(void **state)
{
	static const qes_ades_format fmts[] = { QES_ADES_CADES, QES_ADES_PADES,
	    QES_ADES_XADES, QES_ADES_JADES };
	const char *ins[] = { doc, pdf, xml, doc };
	qes_ades_sign_params p;
	qes_ades_ctx *ctx;
	qes_buf *sig;
	const uint8_t *dig;
	size_t len, i;

	(void)state;
	for (i = 0; i < 4; i++) {
		unlink(out);
		ctx = NULL;
		sig = qes_buf_new();
		params(&p, fmts[i], QES_ADES_B_T, ins[i]);
		assert_int_equal(qes_ades_prepare(&p, &ctx), 0);
		assert_int_equal(qes_ades_tbs(ctx, NULL, NULL, &dig, &len), 0);
		assert_int_equal(testtsa_sign(fx.p256.key, QES_SIG_ECDSA, QES_MD_SHA256, dig,
		    len, 1, sig), 0);
		qes_buf_mutable(sig)[3] ^= 0x40;
		fx.tsa.calls = 0;
		assert_int_equal(qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)),
		    QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(fx.tsa.calls, 0);	/* nobody asked */
		assert_non_null(strstr(qes_ades_errmsg(ctx), "does not verify"));
		assert_int_equal(access(out, F_OK), -1);
		qes_ades_free(ctx);
		qes_buf_free(sig);
	}
}

static void
test_names(void **state)
{
	qes_ades_packaging k;

	(void)state;
	assert_int_equal(qes_ades_packaging_from_name("Enveloping", &k), 0);
	assert_int_equal(k, QES_ADES_PKG_ENVELOPING);
	assert_string_equal(qes_ades_packaging_name(QES_ADES_PKG_COMPACT), "compact");
	assert_null(qes_ades_packaging_name(QES_ADES_PKG_DEFAULT));
	assert_int_equal(qes_ades_packaging_from_name("zip", &k), QES_ERR_INVALID_ARG);
	qes_ades_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_wrong_value),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
