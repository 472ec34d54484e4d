/*
 * test_sig.c - unit tests for sig.c: digest names and values, the RFC 8017
 * DigestInfo encodings (checked against the RFC's bytes and against what
 * OpenSSL's own PKCS#1 code expects), ECDSA raw <-> DER conversion and its
 * strictness, and streaming file digests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/sig.h"

static void
hex_to(const char *hex, uint8_t *out, size_t out_len)
{
	qes_buf *b = qes_buf_new();

	assert_non_null(b);
	assert_int_equal(qes_hex_decode(hex, b), 0);
	assert_int_equal(qes_buf_len(b), out_len);
	if (out_len > 0)
		memcpy(out, qes_buf_data(b), out_len);
	qes_buf_free(b);
}

static void
assert_buf_hex(const qes_buf *b, const char *hex)
{
	qes_buf *h = qes_buf_new();
	const char *s;

	assert_non_null(h);
	assert_int_equal(qes_buf_put_hex(h, qes_buf_data(b), qes_buf_len(b)), 0);
	assert_int_equal(qes_buf_cstr(h, &s), 0);
	assert_string_equal(s, hex);
	qes_buf_free(h);
}

/* ---- names ---- */

static void
test_md_names(void **state)
{
	static const char *sha256[] = { "sha256", "SHA256", "SHA-256", "sha-256",
		"Sha2-256" };
	static const char *bad[] = { "", "sha1", "md5", "sha-2-256", "sha256 ",
		"s-h-a256", "sha3-256" };
	qes_md md;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(sha256) / sizeof(sha256[0]); i++) {
		md = 0;
		assert_int_equal(qes_md_from_name(sha256[i], &md), 0);
		assert_int_equal(md, QES_MD_SHA256);
	}
	assert_int_equal(qes_md_from_name("SHA-384", &md), 0);
	assert_int_equal(md, QES_MD_SHA384);
	assert_int_equal(qes_md_from_name("sha512", &md), 0);
	assert_int_equal(md, QES_MD_SHA512);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(qes_md_from_name(bad[i], &md), QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_md_from_name(NULL, &md), QES_ERR_INVALID_ARG);

	assert_int_equal(qes_md_len(QES_MD_SHA256), 32);
	assert_int_equal(qes_md_len(QES_MD_SHA384), 48);
	assert_int_equal(qes_md_len(QES_MD_SHA512), 64);
	assert_int_equal(qes_md_len((qes_md)0), 0);
	assert_int_equal(qes_md_len((qes_md)99), 0);
	assert_string_equal(qes_md_name(QES_MD_SHA256), "sha256");
	assert_string_equal(qes_md_name(QES_MD_SHA384), "sha384");
	assert_string_equal(qes_md_name(QES_MD_SHA512), "sha512");
	assert_null(qes_md_name((qes_md)7));
}

static void
test_scheme_names(void **state)
{
	qes_sig_scheme s;

	(void)state;
	assert_string_equal(qes_sig_scheme_name(QES_SIG_RSA_PKCS1), "rsa-pkcs1");
	assert_string_equal(qes_sig_scheme_name(QES_SIG_RSA_PSS), "rsa-pss");
	assert_string_equal(qes_sig_scheme_name(QES_SIG_ECDSA), "ecdsa");
	assert_null(qes_sig_scheme_name((qes_sig_scheme)0));
	assert_int_equal(qes_sig_scheme_from_name("rsa-pkcs1", &s), 0);
	assert_int_equal(s, QES_SIG_RSA_PKCS1);
	assert_int_equal(qes_sig_scheme_from_name("rsa-pss", &s), 0);
	assert_int_equal(s, QES_SIG_RSA_PSS);
	assert_int_equal(qes_sig_scheme_from_name("ecdsa", &s), 0);
	assert_int_equal(s, QES_SIG_ECDSA);
	assert_int_equal(qes_sig_scheme_from_name("dsa", &s), QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_sig_scheme_from_name("", &s), QES_ERR_UNSUPPORTED);
}

/* ---- digests ---- */

static void
test_md_digest_vectors(void **state)
{
	/* FIPS 180-2 "abc" vectors */
	static const struct {
		qes_md md;
		const char *hex;
	} v[] = {
		{ QES_MD_SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ QES_MD_SHA384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
		    "8086072ba1e7cc2358baeca134c825a7" },
		{ QES_MD_SHA512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
		    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
	};
	uint8_t got[QES_MD_MAX_LEN], want[QES_MD_MAX_LEN];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = qes_md_len(v[i].md);
		hex_to(v[i].hex, want, n);
		assert_int_equal(qes_md_digest(v[i].md, "abc", 3, got), 0);
		assert_memory_equal(got, want, n);
	}
	/* empty input, NULL data allowed when len is 0 */
	hex_to("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want, 32);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, NULL, 0, got), 0);
	assert_memory_equal(got, want, 32);
	assert_int_equal(qes_md_digest((qes_md)9, "abc", 3, got), QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, NULL, 3, got), QES_ERR_INVALID_ARG);
}

static void
write_all(int fd, const uint8_t *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void
test_md_file(void **state)
{
	char path[] = "/tmp/qes_test_sig_XXXXXX";
	/* not a multiple of the 1 MiB chunk, so the last read is partial */
	size_t len = 2 * 1024 * 1024 + 12345, i;
	uint8_t *data, a[QES_MD_MAX_LEN], b[QES_MD_MAX_LEN];
	qes_md mds[] = { QES_MD_SHA256, QES_MD_SHA384, QES_MD_SHA512 };
	int fd;

	(void)state;
	assert_non_null(data = malloc(len));
	for (i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 31 + (i >> 13));
	assert_true((fd = mkstemp(path)) >= 0);
	write_all(fd, data, len);
	assert_int_equal(close(fd), 0);

	for (i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		assert_int_equal(qes_md_digest(mds[i], data, len, a), 0);
		assert_int_equal(qes_md_file(mds[i], path, b), 0);
		assert_memory_equal(a, b, qes_md_len(mds[i]));
	}
	/* empty file */
	assert_true((fd = open(path, O_WRONLY | O_TRUNC)) >= 0);
	assert_int_equal(close(fd), 0);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, NULL, 0, a), 0);
	assert_int_equal(qes_md_file(QES_MD_SHA256, path, b), 0);
	assert_memory_equal(a, b, 32);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(qes_md_file(QES_MD_SHA256, path, b), QES_ERR_NOT_FOUND);
	assert_int_equal(qes_md_file(QES_MD_SHA256, "/", b), QES_ERR_IO);
	assert_int_equal(qes_md_file((qes_md)0, "/", b), QES_ERR_UNSUPPORTED);
	free(data);
}

/* ---- DigestInfo ---- */

/* RFC 8017 section 9.2, note 1, copied independently of sig.c */
static const struct {
	qes_md md;
	const char *prefix_hex;
} rfc8017[] = {
	{ QES_MD_SHA256, "3031300d060960864801650304020105000420" },
	{ QES_MD_SHA384, "3041300d060960864801650304020205000430" },
	{ QES_MD_SHA512, "3051300d060960864801650304020305000440" },
};

static void
test_digest_info_rfc_prefixes(void **state)
{
	uint8_t digest[QES_MD_MAX_LEN], prefix[19];
	qes_buf *b;
	size_t i, j, n;

	(void)state;
	for (i = 0; i < sizeof(rfc8017) / sizeof(rfc8017[0]); i++) {
		n = qes_md_len(rfc8017[i].md);
		for (j = 0; j < n; j++)
			digest[j] = (uint8_t)(0xa0 + j);
		hex_to(rfc8017[i].prefix_hex, prefix, sizeof(prefix));
		assert_non_null(b = qes_buf_new());
		assert_int_equal(qes_buf_put_str(b, "X"), 0);	/* appends */
		assert_int_equal(qes_digest_info(rfc8017[i].md, digest, n, b), 0);
		assert_int_equal(qes_buf_len(b), 1 + sizeof(prefix) + n);
		assert_memory_equal(qes_buf_data(b) + 1, prefix, sizeof(prefix));
		assert_memory_equal(qes_buf_data(b) + 1 + sizeof(prefix), digest, n);
		/* wrong digest length, unknown md: nothing appended */
		assert_int_equal(qes_digest_info(rfc8017[i].md, digest, n - 1, b),
		    QES_ERR_INVALID_ARG);
		assert_int_equal(qes_digest_info((qes_md)0, digest, n, b),
		    QES_ERR_UNSUPPORTED);
		assert_int_equal(qes_buf_len(b), 1 + sizeof(prefix) + n);
		qes_buf_free(b);
	}
}

static const EVP_MD *
evp_of(qes_md md)
{
	return md == QES_MD_SHA256 ? EVP_sha256() :
	    md == QES_MD_SHA384 ? EVP_sha384() : EVP_sha512();
}

/*
 * What a token does with CKM_RSA_PKCS: PKCS#1 type 1 padding over the bytes
 * it is given. Signing our DigestInfo that way must give a signature that
 * OpenSSL's RSASSA-PKCS1-v1_5 verification (which builds its own DigestInfo)
 * accepts, and the recovered block must be our DigestInfo exactly.
 */
static void
test_digest_info_openssl_rsa(void **state)
{
	EVP_PKEY *key;
	EVP_PKEY_CTX *ctx;
	uint8_t digest[QES_MD_MAX_LEN], sig[256], rec[256];
	size_t i, n, sig_len, rec_len;
	qes_buf *di;

	(void)state;
	assert_non_null(key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
	for (i = 0; i < sizeof(rfc8017) / sizeof(rfc8017[0]); i++) {
		n = qes_md_len(rfc8017[i].md);
		assert_int_equal(qes_md_digest(rfc8017[i].md, "hello", 5, digest), 0);
		assert_non_null(di = qes_buf_new());
		assert_int_equal(qes_digest_info(rfc8017[i].md, digest, n, di), 0);

		/* raw PKCS#1 v1.5 signature over our DigestInfo (no md set) */
		assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
		assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		sig_len = sizeof(sig);
		assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, qes_buf_data(di),
		    qes_buf_len(di)), 1);
		EVP_PKEY_CTX_free(ctx);

		/* OpenSSL verifies it as RSASSA-PKCS1-v1_5 with this md */
		assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
		assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, evp_of(rfc8017[i].md)), 1);
		assert_int_equal(EVP_PKEY_verify(ctx, sig, sig_len, digest, n), 1);
		EVP_PKEY_CTX_free(ctx);

		/* and the other way: OpenSSL's signature recovers to our bytes */
		assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
		assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, evp_of(rfc8017[i].md)), 1);
		sig_len = sizeof(sig);
		assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, digest, n), 1);
		EVP_PKEY_CTX_free(ctx);
		assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
		assert_int_equal(EVP_PKEY_verify_recover_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		rec_len = sizeof(rec);
		assert_int_equal(EVP_PKEY_verify_recover(ctx, rec, &rec_len, sig, sig_len), 1);
		EVP_PKEY_CTX_free(ctx);
		assert_int_equal(rec_len, qes_buf_len(di));
		assert_memory_equal(rec, qes_buf_data(di), rec_len);
		qes_buf_free(di);
	}
	EVP_PKEY_free(key);
}

/* ---- ECDSA raw <-> DER ---- */

static void
ecdsa_roundtrip(const char *raw_hex, const char *der_hex)
{
	uint8_t raw[132];
	size_t raw_len = strlen(raw_hex) / 2;
	qes_buf *der, *back;

	hex_to(raw_hex, raw, raw_len);
	assert_non_null(der = qes_buf_new());
	assert_non_null(back = qes_buf_new());
	assert_int_equal(qes_ecdsa_raw_to_der(raw, raw_len, der), 0);
	if (der_hex != NULL)
		assert_buf_hex(der, der_hex);
	assert_int_equal(qes_ecdsa_der_to_raw(qes_buf_data(der), qes_buf_len(der),
	    raw_len / 2, back), 0);
	assert_buf_hex(back, raw_hex);
	qes_buf_free(der);
	qes_buf_free(back);
}

static void
test_ecdsa_vectors(void **state)
{
	char raw[2 * 132 + 1];
	size_t i;

	(void)state;
	/* small field: leading zeros stripped, high bit gets a 00 pad */
	ecdsa_roundtrip("00000001" "80000000", "300a020101020500" "80000000");
	ecdsa_roundtrip("7fffffff" "00ffffff", "300c02047fffffff020400ffffff");
	ecdsa_roundtrip("ffffffff" "ffffffff", "300e020500ffffffff020500ffffffff");
	/* zero integers encode as 02 01 00 */
	ecdsa_roundtrip("0000" "0000", "3006020100020100");
	/* P-256 sizes, r with high bit, s with leading zero byte */
	ecdsa_roundtrip(
	    "8123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	    "007edcba9876543210fedcba9876543210fedcba9876543210fedcba98765432",
	    "3044"
	    "0221008123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	    "021f7edcba9876543210fedcba9876543210fedcba9876543210fedcba98765432");
	/* P-521 sizes: DER body over 127 bytes, so the long length form */
	for (i = 0; i < 264; i++)
		raw[i] = (i == 0 || i == 132) ? '0' : (i == 1 || i == 133) ? '1' : 'f';
	raw[264] = '\0';
	ecdsa_roundtrip(raw, NULL);
	{
		uint8_t r[132];
		qes_buf *der = qes_buf_new();

		hex_to(raw, r, 132);
		assert_int_equal(qes_ecdsa_raw_to_der(r, 132, der), 0);
		assert_int_equal(qes_buf_data(der)[0], 0x30);
		assert_int_equal(qes_buf_data(der)[1], 0x81);
		assert_int_equal(qes_buf_data(der)[2], qes_buf_len(der) - 3);
		qes_buf_free(der);
	}
}

static void
test_ecdsa_raw_errors(void **state)
{
	uint8_t raw[140];
	qes_buf *b;

	(void)state;
	memset(raw, 0x11, sizeof(raw));
	assert_non_null(b = qes_buf_new());
	assert_int_equal(qes_ecdsa_raw_to_der(raw, 0, b), QES_ERR_FORMAT);
	assert_int_equal(qes_ecdsa_raw_to_der(raw, 63, b), QES_ERR_FORMAT);
	assert_int_equal(qes_ecdsa_raw_to_der(raw, 134, b), QES_ERR_LIMIT);
	assert_int_equal(qes_ecdsa_raw_to_der(NULL, 64, b), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(b), 0);
	assert_int_equal(qes_ecdsa_raw_to_der(raw, 132, b), 0);
	qes_buf_free(b);
}

static void
der_reject(const char *der_hex, size_t field_len, int want)
{
	uint8_t der[256];
	size_t n = strlen(der_hex) / 2;
	qes_buf *b = qes_buf_new();

	assert_non_null(b);
	hex_to(der_hex, der, n);
	assert_int_equal(qes_buf_put_str(b, "keep"), 0);
	assert_int_equal(qes_ecdsa_der_to_raw(der, n, field_len, b), want);
	/* nothing appended on failure */
	assert_int_equal(qes_buf_len(b), 4);
	qes_buf_free(b);
}

static void
test_ecdsa_der_strict(void **state)
{
	char big[600];
	size_t i;

	(void)state;
	/* sanity: the base case parses */
	ecdsa_roundtrip("00000001" "00000002", "3006020101020102");
	/* trailing garbage */
	der_reject("300602010102010200", 4, QES_ERR_FORMAT);
	der_reject("3006020101020102" "3000", 4, QES_ERR_FORMAT);
	/* truncated */
	der_reject("30060201010201", 4, QES_ERR_FORMAT);
	der_reject("3006", 4, QES_ERR_FORMAT);
	der_reject("30", 4, QES_ERR_FORMAT);
	/* non-minimal integer (redundant leading 00) */
	der_reject("300702020001020102", 4, QES_ERR_FORMAT);
	/* negative integers */
	der_reject("3006020180020102", 4, QES_ERR_FORMAT);
	der_reject("30060201ff020102", 4, QES_ERR_FORMAT);
	/* empty integer */
	der_reject("30050200020102", 4, QES_ERR_FORMAT);
	/* non-minimal outer length (long form for a short length) */
	der_reject("308106020101020102", 4, QES_ERR_FORMAT);
	/* indefinite length (BER) */
	der_reject("30800201010201020000", 4, QES_ERR_FORMAT);
	/* wrong outer tag, wrong inner tag, extra element, missing element */
	der_reject("3106020101020102", 4, QES_ERR_FORMAT);
	der_reject("3006030101020102", 4, QES_ERR_FORMAT);
	der_reject("3009020101020102020103", 4, QES_ERR_FORMAT);
	der_reject("3003020101", 4, QES_ERR_FORMAT);
	/* integer longer than the field */
	der_reject("300b02060102030405060201" "02", 4, QES_ERR_FORMAT);
	/* 5-byte value fits a 5-byte field but not a 4-byte one */
	ecdsa_roundtrip("0102030405" "0000000002", "300a0205010203040502" "0102");
	der_reject("300a020501020304050201" "02", 4, QES_ERR_FORMAT);
	/* high-bit value of exactly field_len bytes + pad is fine, one more is not */
	der_reject("300b020600ffffffffff020102", 4, QES_ERR_FORMAT);
	/* empty input, bad field lengths */
	der_reject("", 4, QES_ERR_FORMAT);
	der_reject("3006020101020102", 0, QES_ERR_INVALID_ARG);
	der_reject("3006020101020102", 67, QES_ERR_INVALID_ARG);
	/* longer than any DER signature for the field can be */
	strcpy(big, "30");
	for (i = 2; i < 2 * 60; i++)
		big[i] = '0';
	big[2 * 60] = '\0';
	der_reject(big, 4, QES_ERR_LIMIT);
}

/* real signatures from OpenSSL survive DER -> raw -> DER unchanged */
static void
test_ecdsa_openssl_signatures(void **state)
{
	static const struct {
		const char *curve;
		size_t field_len;
	} curves[] = { { "P-256", 32 }, { "P-384", 48 }, { "P-521", 66 } };
	uint8_t digest[32], sig[160];
	size_t i, k, sig_len;
	EVP_PKEY *key;
	EVP_PKEY_CTX *ctx;
	qes_buf *raw, *der;

	(void)state;
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "msg", 3, digest), 0);
	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		assert_non_null(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curves[i].curve));
		for (k = 0; k < 8; k++) {
			assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
			assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
			sig_len = sizeof(sig);
			assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, digest, 32), 1);
			EVP_PKEY_CTX_free(ctx);

			assert_non_null(raw = qes_buf_new());
			assert_non_null(der = qes_buf_new());
			assert_int_equal(qes_ecdsa_der_to_raw(sig, sig_len,
			    curves[i].field_len, raw), 0);
			assert_int_equal(qes_buf_len(raw), 2 * curves[i].field_len);
			assert_int_equal(qes_ecdsa_raw_to_der(qes_buf_data(raw),
			    qes_buf_len(raw), der), 0);
			assert_int_equal(qes_buf_len(der), sig_len);
			assert_memory_equal(qes_buf_data(der), sig, sig_len);
			qes_buf_free(raw);
			qes_buf_free(der);
		}
		EVP_PKEY_free(key);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_md_names),
		cmocka_unit_test(test_scheme_names),
		cmocka_unit_test(test_md_digest_vectors),
		cmocka_unit_test(test_md_file),
		cmocka_unit_test(test_digest_info_rfc_prefixes),
		cmocka_unit_test(test_digest_info_openssl_rsa),
		cmocka_unit_test(test_ecdsa_vectors),
		cmocka_unit_test(test_ecdsa_raw_errors),
		cmocka_unit_test(test_ecdsa_der_strict),
		cmocka_unit_test(test_ecdsa_openssl_signatures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
