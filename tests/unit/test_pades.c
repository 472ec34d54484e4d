/*
 * test_pades.c - PAdES composition (src/lib/pades.c): the /Contents
 * reservation counted from the real certificates, key and timestamp
 * reserve; the two phases with a software key and the in-process TSA of
 * testtsa.h; and the failure paths, each of which must leave neither the
 * output nor a temporary file behind: a wrong signature value, a CMS larger
 * than its reservation, a TSA that fails, an abandoned context, bad input.
 * The independent validators (pdfsig, openssl cms/ts) judge real output in
 * tests/integration/ades_cli.sh.
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
#include "qes/pades.h"

static testsign fx;		/* its qual-p256 signer, TSA and chain */
static testsigner rsa;
static char in_pdf[300], out_pdf[300], bad_pdf[300];

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* a one-page PDF with a classic xref table */
static void
make_pdf(const char *path)
{
	static const char *const objs[] = {
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
	};
	qes_buf *b = qes_buf_new();
	size_t offs[3], i, x;

	assert_non_null(b);
	qes_buf_put_str(b, "%PDF-1.7\n");
	for (i = 0; i < 3; i++) {
		offs[i] = qes_buf_len(b);
		qes_buf_putf(b, "%zu 0 obj\n%s\nendobj\n", i + 1, objs[i]);
	}
	x = qes_buf_len(b);
	qes_buf_put_str(b, "xref\n0 4\n0000000000 65535 f \n");
	for (i = 0; i < 3; i++)
		qes_buf_putf(b, "%010zu 00000 n \n", offs[i]);
	qes_buf_putf(b, "trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n", x);
	write_file(path, qes_buf_data(b), qes_buf_len(b));
	qes_buf_free(b);
}

static int
group_setup(void **state)
{
	(void)state;
	if (testsign_setup(&fx, "/tmp/qes-test-pades-XXXXXX") != 0 ||
	    testsigner_load(&rsa, fx.pki, "qual-rsa2048", QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256) != 0)
		return -1;
	snprintf(in_pdf, sizeof(in_pdf), "%s/in.pdf", fx.dir);
	snprintf(out_pdf, sizeof(out_pdf), "%s/out.pdf", fx.dir);
	snprintf(bad_pdf, sizeof(bad_pdf), "%s/bad.pdf", fx.dir);
	make_pdf(in_pdf);
	write_file(bad_pdf, "%PDF-1.7\nnot a pdf\n", 19);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	testsigner_free(&rsa);
	return testsign_teardown(&fx);
}

/* files in tmpdir besides in.pdf and bad.pdf (and out.pdf when allowed) */
static int
stray_files(int allow_out)
{
	DIR *d = opendir(fx.dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "in.pdf") == 0 ||
		    strcmp(e->d_name, "bad.pdf") == 0 ||
		    (allow_out && strcmp(e->d_name, "out.pdf") == 0))
			continue;
		n++;
	}
	closedir(d);
	return n;
}

static void
base_params(qes_pades_params *p, const qes_cert *signer, qes_sig_scheme scheme)
{
	memset(p, 0, sizeof(*p));
	p->in_path = in_pdf;
	p->out_path = out_pdf;
	p->level = QES_ADES_B_B;
	p->signer = signer;
	p->chain = fx.chain;
	p->nchain = 1;
	p->md = QES_MD_SHA256;
	p->scheme = scheme;
	p->tsa = &fx.ts;
}

/* prepare, sign with key, finish; returns finish's result (or prepare's) */
static int
run(const qes_pades_params *p, EVP_PKEY *key, int corrupt, size_t *reserve)
{
	qes_pades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new();
	const uint8_t *dig;
	size_t dlen;
	qes_md md;
	qes_sig_scheme scheme;
	int r;

	assert_non_null(sig);
	if ((r = qes_pades_prepare(p, &ctx)) != 0)
		goto out;
	assert_int_equal(stray_files(0) > 0, 1);	/* the prepared file exists */
	assert_int_equal(qes_pades_tbs(ctx, &dig, &dlen, &md, &scheme), 0);
	assert_int_equal(dlen, qes_md_len(p->md));
	assert_int_equal(testtsa_sign(key, scheme, md, dig, dlen, 0, sig), 0);
	if (corrupt)
		qes_buf_mutable(sig)[qes_buf_len(sig) / 2] ^= 0x01;
	if (reserve != NULL)
		*reserve = qes_pades_contents_reserve(ctx);
	r = qes_pades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig));
	if (r != 0)
		assert_true(strlen(qes_pades_errmsg(ctx)) > 0);
	else
		assert_int_equal(qes_pades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig)),
		    QES_ERR_INVALID_ARG);	/* once only */
 out:
	qes_pades_free(ctx);
	qes_buf_free(sig);
	return r;
}

/* the DER length of the CMS in out.pdf's last /Contents */
static size_t
cms_len_in_output(void)
{
	qes_buf *b = NULL;
	const char *s, *lt;
	size_t n, i, len;
	uint8_t h[8];

	assert_int_equal(qes_buf_read_file(out_pdf, 1 << 20, &b), 0);
	s = (const char *)qes_buf_data(b);
	n = qes_buf_len(b);
	lt = NULL;
	for (i = 0; i + 10 < n; i++)
		if (memcmp(s + i, "/Contents<", 10) == 0)
			lt = s + i + 10;
	assert_non_null(lt);
	for (i = 0; i < 8; i++) {
		char hx[3] = { lt[2 * i], lt[2 * i + 1], 0 };

		h[i] = (uint8_t)strtoul(hx, NULL, 16);
	}
	qes_buf_free(b);
	assert_int_equal(h[0], 0x30);
	if (h[1] < 0x80)
		return 2 + h[1];
	assert_true(h[1] == 0x82);
	len = ((size_t)h[2] << 8) | h[3];
	return 4 + len;
}

static void
test_estimate(void **state)
{
	const qes_cert *chain[1] = { fx.ca };
	size_t bb, bt, ec, nochain, cal;

	(void)state;
	bb = qes_pades_estimate(rsa.cert, chain, 1, QES_MD_SHA256, QES_ADES_B_B, 0);
	bt = qes_pades_estimate(rsa.cert, chain, 1, QES_MD_SHA256, QES_ADES_B_T, 0);
	ec = qes_pades_estimate(fx.p256.cert, chain, 1, QES_MD_SHA256, QES_ADES_B_B, 0);
	nochain = qes_pades_estimate(rsa.cert, NULL, 0, QES_MD_SHA256, QES_ADES_B_B, 0);
	qes_cert_der(fx.ca, &cal);
	assert_true(bb > 0 && ec > 0);
	/* the timestamp reserve and its attribute, nothing else */
	assert_int_equal(bt - bb, QES_PADES_DEFAULT_TST_RESERVE + 32);
	assert_int_equal(qes_pades_estimate(rsa.cert, chain, 1, QES_MD_SHA256, QES_ADES_B_T,
	    3000), bb + 3000 + 32);
	/* the chain's certificate counts with its size */
	assert_int_equal(bb - nochain, cal);
	/* a 256-byte RSA value against a 72-byte ECDSA one */
	assert_true(bb > ec + 150);
	assert_int_equal(qes_pades_estimate(rsa.cert, chain, 1, (qes_md)0, QES_ADES_B_B, 0), 0);
	assert_int_equal(qes_pades_estimate(NULL, chain, 1, QES_MD_SHA256, QES_ADES_B_B, 0), 0);
	assert_int_equal(qes_pades_estimate(rsa.cert, chain, QES_PADES_MAX_CHAIN + 1,
	    QES_MD_SHA256, QES_ADES_B_B, 0), 0);
}

/* B-B and B-T round trips: the reservation holds the CMS with a modest slack */
static void
test_sign_sizes(void **state)
{
	qes_pades_params p;
	size_t reserve, len;

	(void)state;
	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	assert_int_equal(run(&p, rsa.key, 0, &reserve), 0);
	len = cms_len_in_output();
	assert_true(len <= reserve);
	assert_true(reserve - len < 1024);
	assert_int_equal(stray_files(1), 0);
	unlink(out_pdf);

	base_params(&p, fx.p256.cert, QES_SIG_ECDSA);
	p.level = QES_ADES_B_T;
	p.timestamp_reserve = 4096;
	fx.tsa.calls = 0;
	assert_int_equal(run(&p, fx.p256.key, 0, &reserve), 0);
	assert_int_equal(fx.tsa.calls, 1);
	len = cms_len_in_output();
	assert_true(len <= reserve);
	assert_true(reserve - len < 4096);
	assert_int_equal(stray_files(1), 0);
	unlink(out_pdf);
}

static void
test_bad_signature(void **state)
{
	qes_pades_params p;

	(void)state;
	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	assert_int_equal(run(&p, rsa.key, 1, NULL), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(stray_files(1), 0);
	assert_int_equal(access(out_pdf, F_OK), -1);
}

/* a token larger than its reserve: limit, nothing written, never truncated */
static void
test_reserve_too_small(void **state)
{
	qes_pades_params p;

	(void)state;
	base_params(&p, fx.p256.cert, QES_SIG_ECDSA);
	p.level = QES_ADES_B_T;
	p.timestamp_reserve = 16;
	assert_int_equal(run(&p, fx.p256.key, 0, NULL), QES_ERR_LIMIT);
	assert_int_equal(stray_files(1), 0);
	assert_int_equal(access(out_pdf, F_OK), -1);
}

static void
test_tsa_fails(void **state)
{
	qes_pades_params p;

	(void)state;
	base_params(&p, fx.p256.cert, QES_SIG_ECDSA);
	p.level = QES_ADES_B_T;
	fx.tsa.fail = 1;
	assert_int_equal(run(&p, fx.p256.key, 0, NULL), QES_ERR_TIMESTAMP);
	fx.tsa.fail = 0;
	assert_int_equal(stray_files(1), 0);
	assert_int_equal(access(out_pdf, F_OK), -1);
}

static void
test_bad_input(void **state)
{
	qes_pades_params p;
	qes_pades_ctx *ctx = NULL;

	(void)state;
	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	p.in_path = bad_pdf;
	assert_int_equal(qes_pades_prepare(&p, &ctx), QES_ERR_PDF_MALFORMED);
	assert_non_null(ctx);
	assert_true(strlen(qes_pades_errmsg(ctx)) > 0);
	qes_pades_free(ctx);

	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	p.level = QES_ADES_B_T;
	p.tsa = NULL;
	assert_int_equal(qes_pades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_pades_errmsg(ctx), "timestamp"));
	qes_pades_free(ctx);

	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	p.out_path = in_pdf;
	assert_int_equal(qes_pades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	qes_pades_free(ctx);

	base_params(&p, rsa.cert, QES_SIG_ECDSA);	/* an RSA key makes no ECDSA */
	assert_int_equal(qes_pades_prepare(&p, &ctx), QES_ERR_KEY_UNSUITABLE);
	qes_pades_free(ctx);

	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	p.level = (qes_ades_level)9;
	assert_int_equal(qes_pades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	qes_pades_free(ctx);
	assert_int_equal(qes_pades_prepare(NULL, &ctx), QES_ERR_INVALID_ARG);
	assert_null(ctx);
	assert_int_equal(stray_files(0), 0);
}

/* prepared, never finished: the temporary files go with the context */
static void
test_abandoned(void **state)
{
	qes_pades_params p;
	qes_pades_ctx *ctx = NULL;

	(void)state;
	base_params(&p, rsa.cert, QES_SIG_RSA_PKCS1);
	p.level = QES_ADES_B_LT;
	assert_int_equal(qes_pades_prepare(&p, &ctx), 0);
	assert_true(stray_files(0) > 0);
	assert_string_equal(qes_pades_field_name(ctx), "Signature1");
	qes_pades_free(ctx);
	assert_int_equal(stray_files(0), 0);
	qes_pades_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_estimate),
		cmocka_unit_test(test_sign_sizes),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_reserve_too_small),
		cmocka_unit_test(test_tsa_fails),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_abandoned),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
