/*
 * test_verify.c - unit tests for qes verify's readers (src/lib/verify*.c):
 * a JWS signed here with the test PKI's P-256 key verifies, and fails when
 * its payload, protected header or value changes; malformed JWS texts are
 * refused with QES_ERR_FORMAT, too many signatures with QES_ERR_LIMIT; a
 * PDF's byte range is checked before anything is hashed (outside the file,
 * a gap that is not the /Contents string, a /Contents that is no CMS); an
 * XML document without ds:Signature, or with a DTD, and a non-CMS are
 * refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/proto.h"
#include "qes/sig.h"
#include "qes/verify.h"
#include "testpki.h"

static void
b64url_str(const void *p, size_t n, qes_buf *out)
{
	assert_int_equal(qes_proto_b64url_encode(p, n, out), 0);
}

/* protected '.' payload '.' signature, ES256 with qual-p256, x5c = [cert] */
static qes_buf *
make_jws(const char *payload)
{
	qes_cert *c = testpki_cert("qual-p256");
	EVP_PKEY *k = testpki_key("qual-p256");
	qes_buf *hdr = qes_buf_new(), *jws = qes_buf_new(), *raw = qes_buf_new();
	const uint8_t *der;
	size_t dlen, slen = 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	uint8_t sig[128];
	char *x5c;
	int n;

	assert_non_null(c);
	assert_non_null(k);
	der = qes_cert_der(c, &dlen);
	x5c = malloc(dlen * 2 + 8);
	assert_non_null(x5c);
	n = EVP_EncodeBlock((unsigned char *)x5c, der, (int)dlen);
	assert_true(n > 0);
	assert_int_equal(qes_buf_putf(hdr, "{\"alg\":\"ES256\",\"x5c\":[\"%s\"],"
	    "\"sigT\":\"2026-11-25T12:00:00Z\",\"crit\":[\"sigT\"]}", x5c), 0);
	b64url_str(qes_buf_data(hdr), qes_buf_len(hdr), jws);
	assert_int_equal(qes_buf_put_u8(jws, '.'), 0);
	b64url_str(payload, strlen(payload), jws);
	assert_true(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k) == 1);
	slen = sizeof(sig);
	assert_true(EVP_DigestSign(m, sig, &slen, qes_buf_data(jws), qes_buf_len(jws)) == 1);
	assert_int_equal(qes_ecdsa_der_to_raw(sig, slen, 32, raw), 0);
	assert_int_equal(qes_buf_put_u8(jws, '.'), 0);
	b64url_str(qes_buf_data(raw), qes_buf_len(raw), jws);
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(k);
	qes_cert_free(c);
	qes_buf_free(hdr);
	qes_buf_free(raw);
	free(x5c);
	return jws;
}

static int
jws_ok(const uint8_t *p, size_t n, char *why, size_t whylen)
{
	qes_verify_report *arr = NULL;
	size_t cnt = 0, i;
	char err[256];
	int ok, r;

	r = qes_verify_jades(p, n, NULL, 0, &arr, &cnt, err, sizeof(err));
	if (r != 0)
		return r;
	assert_int_equal(cnt, 1);
	assert_int_equal(arr[0].format, QES_ADES_JADES);
	assert_int_equal(arr[0].level, QES_ADES_B_B);
	ok = arr[0].integrity_ok;
	if (why != NULL)
		snprintf(why, whylen, "%s", arr[0].integrity_err);
	if (ok) {
		assert_true(arr[0].signer_found);
		assert_string_equal(arr[0].signing_time, "2026-11-25T12:00:00Z");
		assert_string_equal(arr[0].algorithm, "ES256");
	}
	for (i = 0; i < cnt; i++)
		qes_verify_report_clear(&arr[i]);
	free(arr);
	return ok ? 1 : 0;
}

static void
test_jws_valid_and_tampered(void **state)
{
	qes_buf *j = make_jws("{\"amount\":\"100\"}"), *k = make_jws("{\"amount\":\"900\"}");
	uint8_t *t;
	const char *p, *d1, *d2;
	char why[256];
	size_t n = qes_buf_len(j);

	(void)state;
	assert_int_equal(jws_ok(qes_buf_data(j), n, NULL, 0), 1);
	p = (const char *)qes_buf_data(j);
	d1 = memchr(p, '.', n);
	d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - p));

	/* another payload under this header and value */
	t = malloc(n + qes_buf_len(k));
	assert_non_null(t);
	{
		const char *q = (const char *)qes_buf_data(k), *e1, *e2;
		size_t m = qes_buf_len(k), off;

		e1 = memchr(q, '.', m);
		e2 = memchr(e1 + 1, '.', m - (size_t)(e1 + 1 - q));
		off = (size_t)(d1 - p) + 1;
		memcpy(t, p, off);
		memcpy(t + off, e1 + 1, (size_t)(e2 - e1 - 1));
		memcpy(t + off + (size_t)(e2 - e1 - 1), d2, n - (size_t)(d2 - p));
		assert_int_equal(jws_ok(t, off + (size_t)(e2 - e1 - 1) + n - (size_t)(d2 - p),
		    why, sizeof(why)), 0);
		assert_non_null(strstr(why, "does not verify over the JWS signing input"));
	}
	/* a changed character of the value: still base64url, no longer valid */
	memcpy(t, p, n);
	t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
	assert_int_equal(jws_ok(t, n, NULL, 0), 0);
	/* a changed character of the protected header breaks its JSON or the value */
	memcpy(t, p, n);
	t[3] = t[3] == 'A' ? 'B' : 'A';
	assert_int_equal(jws_ok(t, n, NULL, 0), 0);
	free(t);
	qes_buf_free(j);
	qes_buf_free(k);
}

static void
test_jws_malformed(void **state)
{
	static const char *const bad[] = {
		"abc.def", "a.b.c.d", "a!.b.c", "{", "[]", "{\"payload\":\"x\"}",
		"{\"payload\":\"e30\",\"protected\":\"e30\"}",
		"{\"payload\":\"e30\",\"signatures\":7}",
		"{\"payload\":\"e30\",\"protected\":\"e30\",\"protected\":\"e30\",\"signature\":\"AA\"}",
	};
	qes_verify_report *arr = NULL;
	qes_buf *many = qes_buf_new();
	size_t cnt = 0, i;
	char err[256];

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(qes_verify_jades((const uint8_t *)bad[i], strlen(bad[i]), NULL, 0,
		    &arr, &cnt, err, sizeof(err)), QES_ERR_FORMAT);
		assert_null(arr);
		assert_true(err[0] != '\0');
	}
	/* detached compact without content: the caller must give it */
	assert_int_equal(qes_verify_jades((const uint8_t *)"e30..AA", 7, NULL, 0, &arr, &cnt,
	    err, sizeof(err)), QES_ERR_INVALID_ARG);
	/* more signatures than QES_VERIFY_MAX_SIGS */
	assert_int_equal(qes_buf_put_str(many, "{\"payload\":\"e30\",\"signatures\":["), 0);
	for (i = 0; i <= QES_VERIFY_MAX_SIGS; i++)
		assert_int_equal(qes_buf_putf(many, "%s{\"protected\":\"e30\",\"signature\":\"AA\"}",
		    i > 0 ? "," : ""), 0);
	assert_int_equal(qes_buf_put_str(many, "]}"), 0);
	assert_int_equal(qes_verify_jades(qes_buf_data(many), qes_buf_len(many), NULL, 0, &arr,
	    &cnt, err, sizeof(err)), QES_ERR_LIMIT);
	assert_null(arr);
	qes_buf_free(many);
}

/* A one-page PDF whose signature field's /V has the given /ByteRange
 * ("%s" gets the offsets of the /Contents string when br is NULL). */
static void
write_pdf(const char *path, const char *br, const char *contents_hex)
{
	char obj[5][512], sig[512];
	size_t off[6], pos, i;
	FILE *f = fopen(path, "wb");
	long lt, gt;

	assert_non_null(f);
	snprintf(obj[0], sizeof(obj[0]), "<< /Type /Catalog /Pages 2 0 R "
	    "/AcroForm << /Fields [4 0 R] >> >>");
	snprintf(obj[1], sizeof(obj[1]), "<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
	snprintf(obj[2], sizeof(obj[2]), "<< /Type /Page /Parent 2 0 R "
	    "/MediaBox [0 0 595 842] >>");
	snprintf(obj[3], sizeof(obj[3]), "<< /FT /Sig /T (Sig1) /V 5 0 R >>");
	pos = (size_t)fprintf(f, "%%PDF-1.7\n");
	for (i = 0; i < 4; i++) {
		off[i] = pos;
		pos += (size_t)fprintf(f, "%zu 0 obj\n%s\nendobj\n", i + 1, obj[i]);
	}
	off[4] = pos;
	/* the /Contents string starts after this prefix */
	snprintf(sig, sizeof(sig), "5 0 obj\n<< /Type /Sig /SubFilter /ETSI.CAdES.detached "
	    "/Contents ");
	lt = (long)(pos + strlen(sig));
	gt = lt + 2 + (long)strlen(contents_hex);	/* first byte after '>' */
	if (br == NULL)
		pos += (size_t)fprintf(f, "%s<%s> /ByteRange [0 %ld %ld %%RANGE%%] >>\nendobj\n",
		    sig, contents_hex, lt, gt);
	else
		pos += (size_t)fprintf(f, "%s<%s> /ByteRange %s >>\nendobj\n", sig, contents_hex, br);
	off[5] = pos;
	fprintf(f, "xref\n0 6\n0000000000 65535 f \n");
	for (i = 0; i < 5; i++)
		fprintf(f, "%010zu 00000 n \n", off[i]);
	fprintf(f, "trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n", off[5]);
	fclose(f);
}

/* "%RANGE%" replaced by the length of the rest of the file, padded */
static void
fix_range(const char *path)
{
	FILE *f = fopen(path, "r+b");
	char buf[4096], num[16];
	size_t n;
	char *p;
	long gt;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	p = strstr(buf, "%RANGE%");
	assert_non_null(p);
	/* the second range starts at the number before %RANGE% */
	{
		char *q = p - 2;

		while (q > buf && *q != ' ')
			q--;
		gt = strtol(q + 1, NULL, 10);
	}
	snprintf(num, sizeof(num), "%-7ld", (long)n - gt);
	memcpy(p, num, 7);
	fseek(f, 0, SEEK_SET);
	fwrite(buf, 1, n, f);
	fclose(f);
}

static void
pdf_expect(const char *path, const char *msg)
{
	qes_pdf_limits lim;
	qes_pdf *pdf = NULL;
	qes_verify_report *arr = NULL;
	size_t n = 0;
	char err[256];

	qes_pdf_limits_default(&lim);
	assert_int_equal(qes_pdf_open(path, &lim, &pdf, err, sizeof(err)), 0);
	assert_int_equal(qes_verify_pdf(pdf, &arr, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(arr[0].format, QES_ADES_PADES);
	assert_string_equal(arr[0].name, "Sig1");
	assert_false(arr[0].integrity_ok);
	if (strstr(arr[0].integrity_err, msg) == NULL)
		fail_msg("'%s' does not say '%s'", arr[0].integrity_err, msg);
	qes_verify_report_clear(&arr[0]);
	free(arr);
	qes_pdf_free(pdf);
}

static void
test_pdf_byte_range(void **state)
{
	char path[] = "/tmp/qes-test-verify-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_pdf(path, "[0 10 20 99999999]", "3003020100");
	pdf_expect(path, "does not fit the file");
	write_pdf(path, "[5 10 20 5]", "3003020100");
	pdf_expect(path, "does not start at 0");
	write_pdf(path, "[0 10 20 5]", "3003020100");
	pdf_expect(path, "is not the /Contents hex string");
	write_pdf(path, "[0 10 20]", "3003020100");
	pdf_expect(path, "not an array of four integers");
	write_pdf(path, NULL, "3003020100");
	fix_range(path);
	pdf_expect(path, "not a readable CMS SignedData");
	write_pdf(path, NULL, "00000000");
	fix_range(path);
	pdf_expect(path, "does not hold a DER structure");
	unlink(path);
}

static void
test_xml_and_cms_refused(void **state)
{
	static const char nosig[] = "<?xml version=\"1.0\"?><a><b>1</b></a>";
	static const char dtd[] = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
	static const uint8_t notcms[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	qes_verify_report *arr = NULL, r;
	size_t n = 0;
	char err[256];

	(void)state;
	assert_int_equal(qes_verify_xades((const uint8_t *)nosig, strlen(nosig), NULL, &arr, &n,
	    err, sizeof(err)), QES_ERR_NOT_FOUND);
	assert_non_null(strstr(err, "no ds:Signature"));
	assert_int_equal(qes_verify_xades((const uint8_t *)dtd, strlen(dtd), NULL, &arr, &n,
	    err, sizeof(err)), QES_ERR_XML_MALFORMED);
	assert_null(arr);
	qes_verify_report_init(&r);
	assert_int_equal(qes_verify_cms(notcms, sizeof(notcms), NULL, 0, &r), QES_ERR_FORMAT);
	qes_verify_report_clear(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jws_valid_and_tampered),
		cmocka_unit_test(test_jws_malformed),
		cmocka_unit_test(test_pdf_byte_range),
		cmocka_unit_test(test_xml_and_cms_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
