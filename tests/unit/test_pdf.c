/*
 * test_pdf.c - libqes's PDF reader on crafted files: what it must accept
 * (classic tables, xref streams with PNG predictors, object streams,
 * incremental updates) and what it must refuse with the precise error
 * (truncated xref, /Prev loops, huge counts, deep nesting, long strings,
 * /Length loops, /Encrypt); and the writer's two phases on a small file
 * (digest of the byte ranges, placeholder too small, no output left), and
 * on a file larger than its copy steps, copied by the kernel or from the
 * mapping.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/sig.h"

static char tmpdir[] = "/tmp/qes-test-pdf-XXXXXX";

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
path_of(const char *name)
{
	static char p[256];

	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	return p;
}

static void
write_bytes(const char *name, const void *data, size_t len)
{
	FILE *f = fopen(path_of(name), "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/*
 * A PDF from numbered object bodies (objs[i] is object i+1) with a classic
 * xref table and trailer_extra inside the trailer dictionary.
 */
static qes_buf *
build_pdf(const char *const *objs, size_t n, const char *trailer_extra)
{
	qes_buf *b = qes_buf_new();
	size_t offs[64], i, x;

	assert_non_null(b);
	assert_true(n < 64);
	assert_int_equal(qes_buf_put_str(b, "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), 0);
	for (i = 0; i < n; i++) {
		offs[i] = qes_buf_len(b);
		assert_int_equal(qes_buf_putf(b, "%zu 0 obj\n%s\nendobj\n", i + 1, objs[i]), 0);
	}
	x = qes_buf_len(b);
	assert_int_equal(qes_buf_putf(b, "xref\n0 %zu\n0000000000 65535 f \n", n + 1), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(qes_buf_putf(b, "%010zu 00000 n \n", offs[i]), 0);
	assert_int_equal(qes_buf_putf(b, "trailer\n<< /Size %zu /Root 1 0 R %s >>\n"
	    "startxref\n%zu\n%%%%EOF\n", n + 1, trailer_extra, x), 0);
	return b;
}

static void sign_once(qes_pdf *pdf, const char *out, int want);

static const char *const basic[] = {
	"<< /Type /Catalog /Pages 2 0 R >>",
	"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
	"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.5 842] >>",
};

static int
open_buf(const char *name, const qes_buf *b, const qes_pdf_limits *lim,
    qes_pdf **pdf, char *err, size_t errlen)
{
	write_bytes(name, qes_buf_data(b), qes_buf_len(b));
	return qes_pdf_open(path_of(name), lim, pdf, err, errlen);
}

static void
expect_open(const char *name, const qes_buf *b, const qes_pdf_limits *lim,
    int want, const char *msg_part)
{
	qes_pdf *pdf = NULL;
	char err[256] = "";
	int r = open_buf(name, b, lim, &pdf, err, sizeof(err));

	if (r != want)
		fail_msg("%s: got %s (%s), want %s", name, qes_errname(r), err,
		    qes_errname(want));
	if (msg_part != NULL && strstr(err, msg_part) == NULL)
		fail_msg("%s: message '%s' lacks '%s'", name, err, msg_part);
	if (want == 0)
		assert_non_null(pdf);
	else
		assert_null(pdf);
	qes_pdf_free(pdf);
}

static void
test_basic(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	qes_pdf *pdf = NULL;
	char err[256];

	(void)state;
	assert_int_equal(open_buf("basic.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	assert_int_equal(qes_pdf_signature_count(pdf), 0);
	assert_int_equal(qes_pdf_uses_xref_stream(pdf), 0);
	assert_int_equal(qes_pdf_size(pdf), qes_buf_len(b));
	qes_pdf_free(pdf);
	qes_pdf_free(NULL);
	qes_buf_free(b);
	assert_int_equal(qes_pdf_open(path_of("missing.pdf"), NULL, &pdf, err,
	    sizeof(err)), QES_ERR_IO);
}

static void
test_truncated(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	const uint8_t *d = qes_buf_data(b);
	size_t len = qes_buf_len(b), cut;
	qes_buf *t = qes_buf_new();
	char *x;

	(void)state;
	/* the xref table cut in its middle, the file's end kept */
	x = memmem(d, len, "xref\n", 5);
	assert_non_null(x);
	cut = (size_t)((const uint8_t *)x - d) + 30;
	assert_int_equal(qes_buf_put(t, d, cut), 0);
	assert_int_equal(qes_buf_put_str(t, "\nstartxref\n"), 0);
	assert_int_equal(qes_buf_putf(t, "%zu\n%%%%EOF\n",
	    (size_t)((const uint8_t *)x - d)), 0);
	expect_open("trunc-xref.pdf", t, NULL, QES_ERR_PDF_MALFORMED, "xref");
	/* cut before startxref */
	qes_buf_reset(t);
	assert_int_equal(qes_buf_put(t, d, len / 2), 0);
	expect_open("trunc-half.pdf", t, NULL, QES_ERR_PDF_MALFORMED, "startxref");
	/* startxref past the end */
	qes_buf_reset(t);
	assert_int_equal(qes_buf_put_str(t, "%PDF-1.4\nstartxref\n999999\n%%EOF\n"), 0);
	expect_open("far.pdf", t, NULL, QES_ERR_PDF_MALFORMED, NULL);
	/* no header */
	qes_buf_reset(t);
	assert_int_equal(qes_buf_put_str(t, "hello world, no pdf at all here\n"), 0);
	expect_open("nohdr.pdf", t, NULL, QES_ERR_PDF_MALFORMED, "%PDF");
	qes_buf_free(t);
	qes_buf_free(b);
}

static void
test_prev_loop(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	char *x = memmem(qes_buf_data(b), qes_buf_len(b), "xref\n", 5);
	size_t xoff = (size_t)((const uint8_t *)x - qes_buf_data(b));
	char extra[64];
	qes_buf *l;

	(void)state;
	snprintf(extra, sizeof(extra), "/Prev %zu", xoff);
	l = build_pdf(basic, 3, extra);
	expect_open("loop.pdf", l, NULL, QES_ERR_PDF_MALFORMED, "loops");
	qes_buf_free(l);
	qes_buf_free(b);
}

/* Three sections chained by /Prev: the limit on their number holds. */
static void
test_chain_limit(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	qes_pdf_limits lim;
	qes_pdf *pdf = NULL;
	char err[256];
	size_t prev, i, x;

	(void)state;
	x = (size_t)((const uint8_t *)memmem(qes_buf_data(b), qes_buf_len(b),
	    "xref\n", 5) - qes_buf_data(b));
	for (i = 0; i < 2; i++) {
		prev = x;
		x = qes_buf_len(b);
		assert_int_equal(qes_buf_putf(b, "xref\n0 0\ntrailer\n<< /Size 4 "
		    "/Root 1 0 R /Prev %zu >>\nstartxref\n%zu\n%%%%EOF\n", prev, x), 0);
	}
	assert_int_equal(open_buf("chain.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	qes_pdf_free(pdf);
	qes_pdf_limits_default(&lim);
	lim.max_xref_sections = 2;
	expect_open("chain.pdf", b, &lim, QES_ERR_LIMIT, "sections");
	qes_buf_free(b);
}

static void
test_huge_counts(void **state)
{
	qes_buf *t = qes_buf_new();
	qes_pdf_limits lim;

	(void)state;
	assert_int_equal(qes_buf_put_str(t, "%PDF-1.4\nxref\n0 99999999\n"
	    "0000000000 65535 f \ntrailer\n<< /Size 5 >>\nstartxref\n9\n%%EOF\n"), 0);
	expect_open("huge.pdf", t, NULL, QES_ERR_LIMIT, "object limit");
	/* within the limit but more entries than the file holds */
	qes_buf_reset(t);
	assert_int_equal(qes_buf_put_str(t, "%PDF-1.4\nxref\n0 300000\n"
	    "0000000000 65535 f \ntrailer\n<< /Size 5 >>\nstartxref\n9\n%%EOF\n"), 0);
	expect_open("count.pdf", t, NULL, QES_ERR_PDF_MALFORMED, "past the end");
	/* a lower configured limit */
	qes_buf_free(t);
	t = build_pdf(basic, 3, "");
	qes_pdf_limits_default(&lim);
	lim.max_objects = 2;
	expect_open("objs.pdf", t, &lim, QES_ERR_LIMIT, NULL);
	qes_buf_free(t);
}

static void
test_deep_nesting(void **state)
{
	char cat[1024];
	const char *objs[3];
	qes_buf *b;
	size_t i, n = 0;

	(void)state;
	n += (size_t)snprintf(cat + n, sizeof(cat) - n, "<< /Type /Catalog /Pages 2 0 R /X ");
	for (i = 0; i < 100; i++)
		cat[n++] = '[';
	for (i = 0; i < 100; i++)
		cat[n++] = ']';
	snprintf(cat + n, sizeof(cat) - n, " >>");
	objs[0] = cat;
	objs[1] = basic[1];
	objs[2] = basic[2];
	b = build_pdf(objs, 3, "");
	expect_open("deep.pdf", b, NULL, QES_ERR_LIMIT, "nested");
	qes_buf_free(b);
}

static void
test_string_and_dict_limits(void **state)
{
	const char *objs[3] = {
	    "<< /Type /Catalog /Pages 2 0 R /S (a long (nested) string \\101\\102) "
	    "/H <4142434> /N /A#42C >>", basic[1], basic[2] };
	qes_buf *b = build_pdf(objs, 3, "");
	qes_pdf_limits lim;

	(void)state;
	expect_open("str.pdf", b, NULL, 0, NULL);
	qes_pdf_limits_default(&lim);
	lim.max_string_bytes = 8;
	expect_open("str.pdf", b, &lim, QES_ERR_LIMIT, "longer than");
	qes_pdf_limits_default(&lim);
	lim.max_dict_entries = 2;
	expect_open("str.pdf", b, &lim, QES_ERR_LIMIT, "entries");
	qes_buf_free(b);
	objs[0] = "<< /Type /Catalog /Pages 2 0 R /S (unterminated >>";
	b = build_pdf(objs, 3, "");
	expect_open("unterm.pdf", b, NULL, QES_ERR_PDF_MALFORMED, NULL);
	qes_buf_free(b);
	objs[0] = "<< /Type /Catalog /Pages 2 0 R /N /bad#zz >>";
	b = build_pdf(objs, 3, "");
	expect_open("name.pdf", b, NULL, QES_ERR_PDF_MALFORMED, "escape");
	qes_buf_free(b);
}

static void
test_encrypted(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "/Encrypt << /Filter /Standard /V 5 >>");

	(void)state;
	expect_open("enc.pdf", b, NULL, QES_ERR_PDF_ENCRYPTED, "encrypted");
	qes_buf_free(b);
}

/* A stream whose /Length is a reference to itself. */
static void
test_length_loop(void **state)
{
	const char *objs[4] = { "<< /Type /Catalog /Pages 4 0 R >>",
	    basic[1], basic[2], "<< /Length 4 0 R >>\nstream\nxx\nendstream" };
	qes_buf *b = build_pdf(objs, 4, "");

	(void)state;
	expect_open("lenloop.pdf", b, NULL, QES_ERR_LIMIT, "deeper");
	qes_buf_free(b);
}

/*
 * Objects 2 and 3 inside an object stream (object 4), the catalog plain,
 * and a cross-reference stream (object 5) compressed with PNG Up
 * predictors, as qpdf and Acrobat write them.
 */
static qes_buf *
build_xref_stream_pdf_kind(bool hybrid)
{
	qes_buf *b = qes_buf_new(), *os = qes_buf_new();
	uint8_t raw[6 * 5], pred[6 * 6], z[512];
	uLongf zlen = sizeof(z);
	size_t off1, off4, off5, hdr, i, k;
	uint64_t fields[6][3];

	assert_int_equal(qes_buf_put_str(b, "%PDF-1.7\n"), 0);
	off1 = qes_buf_len(b);
	assert_int_equal(qes_buf_put_str(b, "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"), 0);
	/* the object stream: header "2 0 3 N", then the objects */
	{
		const char *o2 = basic[1], *o3 = basic[2];
		char head[64];

		snprintf(head, sizeof(head), "2 0 3 %zu ", strlen(o2) + 1);
		hdr = strlen(head);
		assert_int_equal(qes_buf_putf(os, "%s%s\n%s", head, o2, o3), 0);
	}
	off4 = qes_buf_len(b);
	assert_int_equal(qes_buf_putf(b, "4 0 obj\n<< /Type /ObjStm /N 2 /First %zu "
	    "/Length %zu >>\nstream\n", hdr, qes_buf_len(os)), 0);
	assert_int_equal(qes_buf_put(b, qes_buf_data(os), qes_buf_len(os)), 0);
	assert_int_equal(qes_buf_put_str(b, "\nendstream\nendobj\n"), 0);
	off5 = qes_buf_len(b);
	/* W [1 3 1]: type, offset/objstm, gen/index */
	uint64_t f[6][3] = { { 0, 0, 255 }, { 1, off1, 0 }, { 2, 4, 0 },
	    { 2, 4, 1 }, { 1, off4, 0 }, { 1, off5, 0 } };
	memcpy(fields, f, sizeof(f));
	for (i = 0; i < 6; i++) {
		raw[i * 5] = (uint8_t)fields[i][0];
		raw[i * 5 + 1] = (uint8_t)(fields[i][1] >> 16);
		raw[i * 5 + 2] = (uint8_t)(fields[i][1] >> 8);
		raw[i * 5 + 3] = (uint8_t)fields[i][1];
		raw[i * 5 + 4] = (uint8_t)fields[i][2];
	}
	/* PNG Up: each byte minus the one above */
	for (i = 0; i < 6; i++) {
		pred[i * 6] = 2;
		for (k = 0; k < 5; k++)
			pred[i * 6 + 1 + k] = (uint8_t)(raw[i * 5 + k] -
			    (i ? raw[(i - 1) * 5 + k] : 0));
	}
	assert_int_equal(compress(z, &zlen, pred, sizeof(pred)), Z_OK);
	assert_int_equal(qes_buf_putf(b, "5 0 obj\n<< /Type /XRef /Size 6 /W [1 3 1] "
	    "/Root 1 0 R /Filter /FlateDecode /DecodeParms << /Predictor 12 "
	    "/Columns 5 >> /Length %lu >>\nstream\n", (unsigned long)zlen), 0);
	assert_int_equal(qes_buf_put(b, z, zlen), 0);
	if (!hybrid) {
		assert_int_equal(qes_buf_putf(b, "\nendstream\nendobj\nstartxref\n"
		    "%zu\n%%%%EOF\n", off5), 0);
	} else {
		/* a table for readers of PDF 1.4 that lists what lies outside
		 * object streams; /XRefStm finds the rest */
		size_t x;

		assert_int_equal(qes_buf_put_str(b, "\nendstream\nendobj\n"), 0);
		x = qes_buf_len(b);
		/* objects 2 and 3 are free in the table, as writers do it */
		assert_int_equal(qes_buf_putf(b, "xref\n0 5\n0000000000 65535 f \n"
		    "%010zu 00000 n \n0000000000 00001 f \n0000000000 00001 f \n"
		    "%010zu 00000 n \ntrailer\n<< /Size 6 "
		    "/Root 1 0 R /XRefStm %zu >>\nstartxref\n%zu\n%%%%EOF\n",
		    off1, off4, off5, x), 0);
	}
	qes_buf_free(os);
	return b;
}

static qes_buf *
build_xref_stream_pdf(void)
{
	return build_xref_stream_pdf_kind(false);
}

static void
test_hybrid(void **state)
{
	qes_buf *b = build_xref_stream_pdf_kind(true);
	qes_pdf *pdf = NULL;
	char err[256];

	(void)state;
	if (open_buf("hybrid.pdf", b, NULL, &pdf, err, sizeof(err)) != 0)
		fail_msg("hybrid file: %s", err);
	/* the newest section is a table: the update will be one too */
	assert_int_equal(qes_pdf_uses_xref_stream(pdf), 0);
	sign_once(pdf, "hybrid-signed.pdf", 0);
	qes_pdf_free(pdf);
	pdf = NULL;
	if (qes_pdf_open(path_of("hybrid-signed.pdf"), NULL, &pdf, err, sizeof(err)) != 0)
		fail_msg("signed hybrid file: %s", err);
	assert_int_equal(qes_pdf_signature_count(pdf), 1);
	assert_int_equal(qes_pdf_uses_xref_stream(pdf), 0);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

static void
test_xref_stream(void **state)
{
	qes_buf *b = build_xref_stream_pdf();
	qes_pdf *pdf = NULL;
	qes_pdf_limits lim;
	char err[256];

	(void)state;
	if (open_buf("xs.pdf", b, NULL, &pdf, err, sizeof(err)) != 0)
		fail_msg("xref stream file: %s", err);
	assert_int_equal(qes_pdf_uses_xref_stream(pdf), 1);
	qes_pdf_free(pdf);
	/* the decoded stream is bounded */
	qes_pdf_limits_default(&lim);
	lim.max_stream_bytes = 16;
	expect_open("xs.pdf", b, &lim, QES_ERR_LIMIT, "larger than");
	qes_buf_free(b);
}

/* Read the /ByteRange back from the output and hash those ranges. */
static void
check_ranges(const char *path, const uint64_t br[4], const uint8_t *digest)
{
	qes_buf *f = NULL, *r = qes_buf_new();
	uint8_t d[QES_MD_MAX_LEN];
	char want[128];

	assert_int_equal(qes_buf_read_file(path, 1 << 20, &f), 0);
	snprintf(want, sizeof(want), "/ByteRange[0 %llu %llu %llu]",
	    (unsigned long long)br[1], (unsigned long long)br[2],
	    (unsigned long long)br[3]);
	assert_non_null(memmem(qes_buf_data(f), qes_buf_len(f), want, strlen(want)));
	assert_int_equal(br[2] + br[3], qes_buf_len(f));
	assert_int_equal(qes_buf_data(f)[br[1]], '<');
	assert_int_equal(qes_buf_data(f)[br[2] - 1], '>');
	assert_int_equal(qes_buf_put(r, qes_buf_data(f), br[1]), 0);
	assert_int_equal(qes_buf_put(r, qes_buf_data(f) + br[2], br[3]), 0);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, qes_buf_data(r), qes_buf_len(r), d), 0);
	assert_memory_equal(d, digest, 32);
	qes_buf_free(f);
	qes_buf_free(r);
}

static void
test_sign_two_phases(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	qes_pdf *pdf = NULL, *again = NULL;
	qes_pdf_sign_ctx *ctx = NULL;
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .reason = "Zustimmung \xc3\xa4", .contents_bytes = 64 };
	uint8_t dig[QES_MD_MAX_LEN], der[80];
	uint64_t br[4];
	size_t dlen;
	char err[256];
	struct stat st;

	(void)state;
	memset(der, 0x30, sizeof(der));
	assert_int_equal(open_buf("in.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	/* bad parameters */
	p.contents_bytes = 0;
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("out.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_INVALID_ARG);
	p.contents_bytes = 64;
	p.field_name = "a.b";
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("out.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_INVALID_ARG);
	p.field_name = "\xc3\x28";
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("out.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_pdf_errmsg(pdf), "UTF-8"));
	p.field_name = NULL;
	p.location = "\xff";
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("out.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_pdf_errmsg(pdf), "UTF-8"));
	p.location = "M\xc3\xbcnchen \xf0\x9f\x96\x8a";	/* 2- and 4-byte sequences */
	/* success */
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("out.pdf"),
	    QES_MD_SHA256, &ctx), 0);
	assert_string_equal(qes_pdf_sign_field_name(ctx), "Signature1");
	assert_int_equal(stat(path_of("out.pdf"), &st), -1);	/* not before finish */
	assert_int_equal(qes_pdf_sign_digest(ctx, dig, sizeof(dig), &dlen), 0);
	assert_int_equal(dlen, 32);
	qes_pdf_sign_byte_range(ctx, br);
	assert_int_equal(br[2] - br[1], 2 + 2 * 64);
	assert_int_equal(qes_pdf_sign_finish(ctx, der, 64), 0);
	assert_int_equal(qes_pdf_sign_finish(ctx, der, 64), QES_ERR_INVALID_ARG);
	qes_pdf_sign_free(ctx);
	ctx = NULL;
	check_ranges(path_of("out.pdf"), br, dig);
	{
		qes_buf *f = NULL;

		/* UTF-16BE with a BOM, U+1F58A as a surrogate pair */
		assert_int_equal(qes_buf_read_file(path_of("out.pdf"), 1 << 20, &f), 0);
		assert_non_null(memmem(qes_buf_data(f), qes_buf_len(f),
		    "/Location<feff004d00fc006e006300680065006e0020d83ddd8a>", 54));
		assert_non_null(memmem(qes_buf_data(f), qes_buf_len(f),
		    "/Type/Sig/Filter/Adobe.PPKLite/SubFilter/ETSI.CAdES.detached", 60));
		assert_non_null(memmem(qes_buf_data(f), qes_buf_len(f),
		    "/Rect [0 0 0 0]", 15) ? (void *)1 : memmem(qes_buf_data(f),
		    qes_buf_len(f), "/Rect[0 0 0 0]", 14));
		assert_non_null(memmem(qes_buf_data(f), qes_buf_len(f), "/F 132", 6));
		qes_buf_free(f);
	}
	/* the output opens again and counts one signature */
	assert_int_equal(qes_pdf_open(path_of("out.pdf"), NULL, &again, err, sizeof(err)), 0);
	assert_int_equal(qes_pdf_signature_count(again), 1);
	/* a second signature gets the next name; the first's name is refused */
	p.field_name = "Signature1";
	assert_int_equal(qes_pdf_sign_prepare(again, &p, path_of("out2.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_INVALID_ARG);
	p.field_name = NULL;
	assert_int_equal(qes_pdf_sign_prepare(again, &p, path_of("out2.pdf"),
	    QES_MD_SHA256, &ctx), 0);
	assert_string_equal(qes_pdf_sign_field_name(ctx), "Signature2");
	/* too large for the placeholder: limit, nothing written */
	assert_int_equal(qes_pdf_sign_finish(ctx, der, sizeof(der)), QES_ERR_LIMIT);
	assert_int_equal(stat(path_of("out2.pdf"), &st), -1);
	qes_pdf_sign_free(ctx);
	ctx = NULL;
	/* abandoned: free removes the temporary file */
	assert_int_equal(qes_pdf_sign_prepare(again, &p, path_of("out3.pdf"),
	    QES_MD_SHA384, &ctx), 0);
	assert_int_equal(qes_pdf_sign_digest(ctx, dig, sizeof(dig), &dlen), 0);
	assert_int_equal(dlen, 48);
	qes_pdf_sign_free(ctx);
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", tmpdir);
		assert_int_not_equal(system(cmd), 0);
	}
	qes_pdf_free(again);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

static void
test_dss(void **state)
{
	qes_buf *b = build_xref_stream_pdf();
	qes_pdf *pdf = NULL, *again = NULL;
	const qes_ades_blob certs[] = { { (const uint8_t *)"\x30\x03\x02\x01\x01", 5 } };
	qes_ades_vdata vd = { certs, 1, NULL, 0, NULL, 0 }, none = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(open_buf("dss-in.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	assert_int_equal(qes_pdf_add_dss(pdf, &none, path_of("dss.pdf")), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_pdf_add_dss(pdf, &vd, path_of("dss.pdf")), 0);
	if (qes_pdf_open(path_of("dss.pdf"), NULL, &again, err, sizeof(err)) != 0)
		fail_msg("after the DSS: %s", err);
	assert_int_equal(qes_pdf_uses_xref_stream(again), 1);
	qes_pdf_free(again);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

static void
sign_once(qes_pdf *pdf, const char *out, int want)
{
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .contents_bytes = 16 };
	qes_pdf_sign_ctx *ctx = NULL;
	static const uint8_t der[] = { 0x30, 0x00 };
	int r = qes_pdf_sign_prepare(pdf, &p, path_of(out), QES_MD_SHA256, &ctx);

	if (r != want)
		fail_msg("%s: prepare gave %s (%s)", out, qes_errname(r),
		    qes_pdf_errmsg(pdf));
	if (r == 0)
		assert_int_equal(qes_pdf_sign_finish(ctx, der, sizeof(der)), 0);
	qes_pdf_sign_free(ctx);
}

/* AcroForm, /Fields and /Annots as indirect objects: those are rewritten. */
static void
test_indirect_form(void **state)
{
	const char *objs[7] = {
	    "<< /Type /Catalog /Pages 2 0 R /AcroForm 5 0 R >>",
	    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
	    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots 6 0 R >>",
	    "<< /Type /Annot /Subtype /Widget /FT /Tx /T (Name) /Rect [1 1 2 2] >>",
	    "<< /Fields 7 0 R /DA (/Helv 0 Tf 0 g) >>",
	    "[4 0 R]",
	    "[4 0 R]" };
	qes_buf *b = build_pdf(objs, 7, ""), *out = NULL;
	qes_pdf *pdf = NULL, *again = NULL;
	char err[256];

	(void)state;
	assert_int_equal(open_buf("form-ind.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	sign_once(pdf, "form-ind-signed.pdf", 0);
	assert_int_equal(qes_buf_read_file(path_of("form-ind-signed.pdf"), 1 << 20, &out), 0);
	/* sig dict 8, field 9: both arrays rewritten in place, the form too */
	assert_non_null(memmem(qes_buf_data(out), qes_buf_len(out),
	    "7 0 obj\n[4 0 R 9 0 R]", 20));
	assert_non_null(memmem(qes_buf_data(out), qes_buf_len(out),
	    "6 0 obj\n[4 0 R 9 0 R]", 20));
	assert_non_null(memmem(qes_buf_data(out), qes_buf_len(out),
	    "5 0 obj\n<</Fields 7 0 R/DA <", 28));
	assert_non_null(memmem(qes_buf_data(out), qes_buf_len(out), "/SigFlags 3", 11));
	assert_int_equal(qes_pdf_open(path_of("form-ind-signed.pdf"), NULL, &again,
	    err, sizeof(err)), 0);
	assert_int_equal(qes_pdf_signature_count(again), 1);
	qes_pdf_free(again);
	qes_pdf_free(pdf);
	qes_buf_free(out);
	qes_buf_free(b);
}

/* A file that does not end in a newline: the update starts with one. */
static void
test_no_final_newline(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	qes_pdf *pdf = NULL;
	char err[256];

	(void)state;
	assert_int_equal(qes_buf_truncate(b, qes_buf_len(b) - 1), 0);
	assert_int_equal(open_buf("nonl.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	sign_once(pdf, "nonl-signed.pdf", 0);
	qes_pdf_free(pdf);
	pdf = NULL;
	if (qes_pdf_open(path_of("nonl-signed.pdf"), NULL, &pdf, err, sizeof(err)) != 0)
		fail_msg("signed file without final newline: %s", err);
	assert_int_equal(qes_pdf_signature_count(pdf), 1);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

/* A generated name is past every SignatureN in use. */
static void
test_generated_name(void **state)
{
	const char *objs[5] = {
	    "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R 5 0 R] >> >>",
	    basic[1], basic[2],
	    "<< /FT /Sig /T (Signature7) >>",
	    "<< /FT /Tx /T (Signature9x) >>" };
	qes_buf *b = build_pdf(objs, 5, "");
	qes_pdf_sign_params p = { .subfilter = QES_PDF_RFC3161, .contents_bytes = 16 };
	qes_pdf_sign_ctx *ctx = NULL;
	qes_pdf *pdf = NULL;
	char err[256];

	(void)state;
	assert_int_equal(open_buf("names.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	assert_int_equal(qes_pdf_signature_count(pdf), 1);
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("names-out.pdf"),
	    QES_MD_SHA256, &ctx), 0);
	assert_string_equal(qes_pdf_sign_field_name(ctx), "Signature8");
	qes_pdf_sign_free(ctx);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

static void
test_docmdp(void **state)
{
	const char *objs[5] = {
	    "<< /Type /Catalog /Pages 2 0 R /Perms << /DocMDP 4 0 R >> >>",
	    basic[1], basic[2],
	    "<< /Type /Sig /Reference [<< /Type /SigRef /TransformMethod /DocMDP "
	    "/TransformParams << /Type /TransformParams /P 1 /V /1.2 >> >>] >>",
	    "null" };
	qes_buf *b = build_pdf(objs, 5, "");
	qes_pdf *pdf = NULL;
	char err[256];

	(void)state;
	assert_int_equal(open_buf("mdp.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	sign_once(pdf, "mdp-signed.pdf", QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_pdf_errmsg(pdf), "DocMDP"));
	qes_pdf_free(pdf);
	qes_buf_free(b);
	objs[3] = "<< /Type /Sig /Reference [<< /TransformMethod /DocMDP "
	    "/TransformParams << /P 2 >> >>] >>";
	b = build_pdf(objs, 5, "");
	assert_int_equal(open_buf("mdp2.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	sign_once(pdf, "mdp2-signed.pdf", 0);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

/*
 * A PDF larger than the writer's 2 MiB steps, signed from a regular file
 * (the kernel copies) and from a memfd (tmpfs to ext4 or the like: the
 * kernel refuses with EXDEV and the writer copies from its mapping; on
 * one file system both paths give the same bytes): the output starts
 * with the input unchanged, the byte ranges cover all but /Contents and
 * the digest is theirs.
 */
static void
sign_large_from(qes_pdf *pdf, const qes_buf *in, const char *out)
{
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .contents_bytes = 32 };
	qes_pdf_sign_ctx *ctx = NULL;
	static const uint8_t der[] = { 0x30, 0x00 };
	uint8_t dig[QES_MD_MAX_LEN], d[QES_MD_MAX_LEN];
	uint64_t br[4];
	size_t dlen;
	qes_buf *f = NULL, *r = qes_buf_new();

	assert_non_null(r);
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of(out),
	    QES_MD_SHA256, &ctx), 0);
	assert_int_equal(qes_pdf_sign_digest(ctx, dig, sizeof(dig), &dlen), 0);
	qes_pdf_sign_byte_range(ctx, br);
	assert_int_equal(qes_pdf_sign_finish(ctx, der, sizeof(der)), 0);
	qes_pdf_sign_free(ctx);
	assert_int_equal(qes_buf_read_file(path_of(out), 64 << 20, &f), 0);
	assert_true(qes_buf_len(f) > qes_buf_len(in));
	assert_memory_equal(qes_buf_data(f), qes_buf_data(in), qes_buf_len(in));
	assert_int_equal(br[0], 0);
	assert_true(br[1] > qes_buf_len(in));
	assert_int_equal(br[2] + br[3], qes_buf_len(f));
	assert_int_equal(qes_buf_data(f)[br[1]], '<');
	assert_int_equal(qes_buf_data(f)[br[2] - 1], '>');
	assert_int_equal(qes_buf_put(r, qes_buf_data(f), br[1]), 0);
	assert_int_equal(qes_buf_put(r, qes_buf_data(f) + br[2], br[3]), 0);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, qes_buf_data(r),
	    qes_buf_len(r), d), 0);
	assert_memory_equal(d, dig, 32);
	qes_buf_free(f);
	qes_buf_free(r);
}

static void
test_sign_large(void **state)
{
	enum { DATA = 17 * 1024 * 1024 + 12345 };
	char *objs[4];
	qes_buf *b;
	qes_pdf *pdf = NULL;
	char err[256];
	size_t i;
	int mfd;

	(void)state;
	/* a stream of DATA bytes, its content varied so a misplaced step shows */
	assert_non_null(objs[3] = malloc(DATA + 64));
	i = (size_t)snprintf(objs[3], 64, "<< /Length %d >>\nstream\n", DATA);
	for (size_t k = 0; k < DATA; k++)
		objs[3][i + k] = (char)('A' + (k * 7 + k / 4096) % 26);
	memcpy(objs[3] + i + DATA, "\nendstream", 11);
	objs[0] = (char *)basic[0];
	objs[1] = (char *)basic[1];
	objs[2] = (char *)basic[2];
	b = build_pdf((const char *const *)objs, 4, "");
	assert_int_equal(open_buf("large.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	sign_large_from(pdf, b, "large-signed.pdf");
	qes_pdf_free(pdf);
	pdf = NULL;

	mfd = memfd_create("qes-test-pdf", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(write(mfd, qes_buf_data(b), qes_buf_len(b)),
	    (ssize_t)qes_buf_len(b));
	assert_int_equal(qes_pdf_open_fd(mfd, NULL, &pdf, err, sizeof(err)), 0);
	close(mfd);
	sign_large_from(pdf, b, "large-memfd-signed.pdf");
	qes_pdf_free(pdf);
	free(objs[3]);
	qes_buf_free(b);
}

/* An input that changed after it was opened is refused, nothing left. */
static void
test_sign_input_changed(void **state)
{
	qes_buf *b = build_pdf(basic, 3, "");
	qes_pdf *pdf = NULL;
	qes_pdf_sign_ctx *ctx = NULL;
	qes_pdf_sign_params p = { .subfilter = QES_PDF_CADES_DETACHED,
	    .contents_bytes = 16 };
	char err[256], cmd[512];
	struct stat st;

	(void)state;
	assert_int_equal(open_buf("changed.pdf", b, NULL, &pdf, err, sizeof(err)), 0);
	/* one byte less: the mapped page stays, the size differs */
	assert_int_equal(truncate(path_of("changed.pdf"),
	    (off_t)qes_buf_len(b) - 1), 0);
	assert_int_equal(qes_pdf_sign_prepare(pdf, &p, path_of("changed-out.pdf"),
	    QES_MD_SHA256, &ctx), QES_ERR_IO);
	assert_null(ctx);
	assert_non_null(strstr(qes_pdf_errmsg(pdf), "changed"));
	assert_int_equal(stat(path_of("changed-out.pdf"), &st), -1);
	snprintf(cmd, sizeof(cmd), "ls %s | grep -q changed-out", tmpdir);
	assert_int_not_equal(system(cmd), 0);
	qes_pdf_free(pdf);
	qes_buf_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_prev_loop),
		cmocka_unit_test(test_chain_limit),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_string_and_dict_limits),
		cmocka_unit_test(test_encrypted),
		cmocka_unit_test(test_length_loop),
		cmocka_unit_test(test_xref_stream),
		cmocka_unit_test(test_sign_two_phases),
		cmocka_unit_test(test_dss),
		cmocka_unit_test(test_hybrid),
		cmocka_unit_test(test_indirect_form),
		cmocka_unit_test(test_docmdp),
		cmocka_unit_test(test_generated_name),
		cmocka_unit_test(test_no_final_newline),
		cmocka_unit_test(test_sign_large),
		cmocka_unit_test(test_sign_input_changed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
