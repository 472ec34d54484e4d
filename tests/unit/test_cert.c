/*
 * test_cert.c - unit tests for cert.c: the eIDAS classification from
 * keyUsage and qcStatements, the facts reported in qes_cert_info, strict
 * handling of malformed input, PEM/DER files and signature verification.
 * Every certificate is built here with testcert.h; no files are needed.
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
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sig.h"

#include "cert_priv.h"
#include "testcert.h"

#define FULL_QC (QES_QC_COMPLIANCE | QES_QC_SSCD | QES_QC_TYPE_ESIGN)

static struct keys {
	EVP_PKEY *ca;		/* P-256, signs everything */
	EVP_PKEY *rsa2048;
	EVP_PKEY *rsa3072;
	EVP_PKEY *p256;
	EVP_PKEY *p384;
	EVP_PKEY *p521;
} K;

static int
setup_keys(void **state)
{
	(void)state;
	K.ca = testcert_key_ec("P-256");
	K.rsa2048 = testcert_key_rsa(2048);
	K.rsa3072 = testcert_key_rsa(3072);
	K.p256 = testcert_key_ec("P-256");
	K.p384 = testcert_key_ec("P-384");
	K.p521 = testcert_key_ec("P-521");
	if (K.ca == NULL || K.rsa2048 == NULL || K.rsa3072 == NULL ||
	    K.p256 == NULL || K.p384 == NULL || K.p521 == NULL)
		return -1;
	return 0;
}

static int
teardown_keys(void **state)
{
	(void)state;
	EVP_PKEY_free(K.ca);
	EVP_PKEY_free(K.rsa2048);
	EVP_PKEY_free(K.rsa3072);
	EVP_PKEY_free(K.p256);
	EVP_PKEY_free(K.p384);
	EVP_PKEY_free(K.p521);
	return 0;
}

/* Build the certificate the spec describes and parse it; want is the expected result. */
static qes_cert *
make(const testcert_spec *s, int want)
{
	uint8_t *der;
	size_t len;
	qes_cert *c = NULL;

	assert_non_null(der = testcert_der(s, &len));
	assert_int_equal(qes_cert_from_der(der, len, &c), want);
	if (want != 0)
		assert_null(c);
	else
		assert_non_null(c);
	OPENSSL_free(der);
	return c;
}

/* A signing certificate with the given keyUsage and qcStatements bits. */
static qes_cert_class
classify_with(unsigned ku, unsigned qc)
{
	uint8_t qc_der[200];
	testcert_spec s = { .key = K.p256, .ca_key = K.ca, .key_usage = ku };
	qes_cert *c;
	qes_cert_class cls;

	if (qc != 0) {
		s.qc_der = qc_der;
		assert_true((s.qc_der_len = testcert_qc(qc, qc_der, sizeof(qc_der))) > 0);
	}
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->qc, qc != 0 ? (qc | QES_QC_PRESENT) : 0);
	cls = qes_cert_classify(c, (int64_t)time(NULL));
	qes_cert_free(c);
	return cls;
}

static void
test_classify(void **state)
{
	const unsigned nr = QES_KU_NON_REPUDIATION, ds = QES_KU_DIGITAL_SIGNATURE;

	(void)state;
	assert_int_equal(classify_with(nr, FULL_QC), QES_CERT_QUALIFIED);
	assert_int_equal(classify_with(nr | ds, FULL_QC), QES_CERT_QUALIFIED);
	/* no QcType at all still means a qualified signature certificate */
	assert_int_equal(classify_with(nr, QES_QC_COMPLIANCE | QES_QC_SSCD),
	    QES_CERT_QUALIFIED);
	/* key not on a QSCD */
	assert_int_equal(classify_with(nr, QES_QC_COMPLIANCE | QES_QC_TYPE_ESIGN),
	    QES_CERT_ADVANCED);
	assert_int_equal(classify_with(nr, QES_QC_SSCD | QES_QC_TYPE_ESIGN),
	    QES_CERT_ADVANCED);
	/* eSeal and website certificates, and mixtures, are not a person's QES */
	assert_int_equal(classify_with(nr, QES_QC_COMPLIANCE | QES_QC_SSCD |
	    QES_QC_TYPE_ESEAL), QES_CERT_ADVANCED);
	assert_int_equal(classify_with(nr, QES_QC_COMPLIANCE | QES_QC_SSCD |
	    QES_QC_TYPE_WEB), QES_CERT_ADVANCED);
	assert_int_equal(classify_with(nr, FULL_QC | QES_QC_TYPE_ESEAL),
	    QES_CERT_ADVANCED);
	/* non-qualified signing certificate */
	assert_int_equal(classify_with(nr, 0), QES_CERT_ADVANCED);
	/* authentication: digitalSignature only, or no keyUsage at all */
	assert_int_equal(classify_with(ds, FULL_QC), QES_CERT_AUTH_ONLY);
	assert_int_equal(classify_with(ds | QES_KU_KEY_ENCIPHERMENT, 0),
	    QES_CERT_AUTH_ONLY);
	assert_int_equal(classify_with(0, FULL_QC), QES_CERT_AUTH_ONLY);
}

static void
test_classify_qctype_unknown(void **state)
{
	/* QcCompliance, QcSSCD, QcType { 1.2.3.4 } (an unknown type) */
	static const uint8_t unknown_only[] = {
		0x30, 0x25,
		0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01,
		0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04,
		0x30, 0x0f, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06,
		0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04,
	};
	/* the same with an empty QcType list */
	static const uint8_t empty_types[] = {
		0x30, 0x20,
		0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01,
		0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04,
		0x30, 0x0a, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06,
		0x30, 0x00,
	};
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };
	qes_cert *c;

	(void)state;
	s.qc_der = unknown_only;
	s.qc_der_len = sizeof(unknown_only);
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->qc,
	    QES_QC_PRESENT | QES_QC_COMPLIANCE | QES_QC_SSCD);
	assert_int_equal(qes_cert_classify(c, (int64_t)time(NULL)), QES_CERT_ADVANCED);
	qes_cert_free(c);

	s.qc_der = empty_types;
	s.qc_der_len = sizeof(empty_types);
	c = make(&s, 0);
	assert_int_equal(qes_cert_classify(c, (int64_t)time(NULL)), QES_CERT_ADVANCED);
	qes_cert_free(c);
}

static void
test_classify_validity(void **state)
{
	uint8_t qc[200];
	int64_t now = (int64_t)time(NULL);
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION, .qc_der = qc };
	const qes_cert_info *info;
	qes_cert *c;

	(void)state;
	s.qc_der_len = testcert_qc(FULL_QC, qc, sizeof(qc));

	s.not_before = now - 2 * 365 * 86400;
	s.not_after = now - 86400;
	c = make(&s, 0);
	assert_int_equal(qes_cert_classify(c, now), QES_CERT_EXPIRED);
	qes_cert_free(c);

	s.not_before = now + 86400;
	s.not_after = now + 2 * 365 * 86400;
	c = make(&s, 0);
	assert_int_equal(qes_cert_classify(c, now), QES_CERT_NOT_YET_VALID);
	qes_cert_free(c);

	/* both ends are inside the validity period (RFC 5280) */
	s.not_before = 1700000000;
	s.not_after = 1800000000;
	c = make(&s, 0);
	info = qes_cert_get_info(c);
	assert_int_equal(info->not_before, 1700000000);
	assert_int_equal(info->not_after, 1800000000);
	assert_int_equal(qes_cert_classify(c, 1700000000 - 1), QES_CERT_NOT_YET_VALID);
	assert_int_equal(qes_cert_classify(c, 1700000000), QES_CERT_QUALIFIED);
	assert_int_equal(qes_cert_classify(c, 1800000000), QES_CERT_QUALIFIED);
	assert_int_equal(qes_cert_classify(c, 1800000000 + 1), QES_CERT_EXPIRED);
	qes_cert_free(c);

	/* GeneralizedTime (2050 and later) */
	s.not_before = 2524608000;	/* 2050-01-01 */
	s.not_after = 4102444800;	/* 2100-01-01 */
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->not_before, 2524608000);
	assert_int_equal(qes_cert_get_info(c)->not_after, 4102444800);
	qes_cert_free(c);
}

static void
test_class_names(void **state)
{
	(void)state;
	assert_string_equal(qes_cert_class_name(QES_CERT_QUALIFIED), "qualified");
	assert_string_equal(qes_cert_class_name(QES_CERT_ADVANCED), "advanced");
	assert_string_equal(qes_cert_class_name(QES_CERT_AUTH_ONLY), "authentication");
	assert_string_equal(qes_cert_class_name(QES_CERT_EXPIRED), "expired");
	assert_string_equal(qes_cert_class_name(QES_CERT_NOT_YET_VALID), "not_yet_valid");
	assert_string_equal(qes_cert_class_name((qes_cert_class)0), "unknown");
	assert_int_equal(qes_cert_classify(NULL, 0), QES_CERT_AUTH_ONLY);
}

static void
test_info_fields(void **state)
{
	uint8_t qc[200], fp[32], *der;
	testcert_spec s = { .key = K.rsa2048, .ca_key = K.ca,
		.cn = "J\xc3\xbcrgen M\xc3\xbcller, Sr.", .issuer_cn = "Example QCA",
		.serial_hex = "00000ABCDEF0123", .key_usage = QES_KU_NON_REPUDIATION |
		QES_KU_DIGITAL_SIGNATURE | QES_KU_KEY_ENCIPHERMENT,
		.qc_der = qc };
	const qes_cert_info *info;
	const uint8_t *got;
	qes_buf *hex;
	const char *fp_hex;
	size_t len, got_len;
	qes_cert *c = NULL;

	(void)state;
	s.qc_der_len = testcert_qc(FULL_QC, qc, sizeof(qc));
	assert_non_null(der = testcert_der(&s, &len));
	assert_int_equal(qes_cert_from_der(der, len, &c), 0);
	info = qes_cert_get_info(c);

	/* RFC 2253: most specific first, special characters escaped, UTF-8 kept */
	assert_string_equal(info->subject,
	    "CN=J\xc3\xbcrgen M\xc3\xbcller\\, Sr.,O=qes test,C=DE");
	assert_string_equal(info->subject_cn, "J\xc3\xbcrgen M\xc3\xbcller, Sr.");
	assert_string_equal(info->issuer, "CN=Example QCA,O=qes test,C=DE");
	assert_string_equal(info->serial_hex, "abcdef0123");
	assert_int_equal(info->key_type, QES_KEY_RSA);
	assert_int_equal(info->key_bits, 2048);
	assert_string_equal(info->curve, "");
	assert_true(info->has_key_usage);
	assert_int_equal(info->key_usage, 0xe0);
	assert_int_equal(info->qc, FULL_QC | QES_QC_PRESENT);
	assert_int_equal(info->policies, 0);

	got = qes_cert_der(c, &got_len);
	assert_int_equal(got_len, len);
	assert_memory_equal(got, der, len);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, der, len, fp), 0);
	assert_non_null(hex = qes_buf_new());
	assert_int_equal(qes_buf_put_hex(hex, fp, sizeof(fp)), 0);
	assert_int_equal(qes_buf_cstr(hex, &fp_hex), 0);
	assert_string_equal(info->sha256_hex, fp_hex);
	qes_buf_free(hex);

	assert_non_null(qes_cert_x509(c));
	assert_true(EVP_PKEY_eq(qes_cert_pkey(c), K.rsa2048) == 1);
	qes_cert_free(c);
	OPENSSL_free(der);

	/* no CN: "" */
	s.cn = "";
	s.serial_hex = "0";
	c = make(&s, 0);
	assert_string_equal(qes_cert_get_info(c)->subject_cn, "");
	assert_string_equal(qes_cert_get_info(c)->subject, "O=qes test,C=DE");
	assert_string_equal(qes_cert_get_info(c)->serial_hex, "0");
	assert_false(qes_cert_get_info(c)->has_key_usage == 0);
	qes_cert_free(c);

	/* a control character in the CN could fake the name in a dialog */
	s.cn = "Alice\nBob";
	(void)make(&s, QES_ERR_FORMAT);

	/* no keyUsage extension */
	s.cn = NULL;
	s.key_usage = 0;
	c = make(&s, 0);
	assert_false(qes_cert_get_info(c)->has_key_usage);
	assert_int_equal(qes_cert_get_info(c)->key_usage, 0);
	qes_cert_free(c);

	qes_cert_free(NULL);
	assert_null(qes_cert_get_info(NULL));
	assert_null(qes_cert_der(NULL, &got_len));
	assert_int_equal(got_len, 0);
}

static void
test_policies(void **state)
{
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };
	qes_cert *c;

	(void)state;
	s.policies = "0.4.0.194112.1.2, 1.2.3.4";
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->policies, QES_POLICY_QCP_N_QSCD);
	qes_cert_free(c);

	s.policies = "0.4.0.194112.1.0,0.4.0.194112.1.1,0.4.0.194112.1.2,"
	    "0.4.0.194112.1.3";
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->policies, QES_POLICY_QCP_N |
	    QES_POLICY_QCP_L | QES_POLICY_QCP_N_QSCD | QES_POLICY_QCP_L_QSCD);
	qes_cert_free(c);

	/* neighbours of the ETSI arcs are not them */
	s.policies = "0.4.0.194112.1.4,0.4.0.194112.1,0.4.0.194112.1.2.1,0.4.0.1862.1.1";
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->policies, 0);
	qes_cert_free(c);
}

static void
check_key(EVP_PKEY *key, qes_key_type type, unsigned bits, const char *curve,
    unsigned schemes)
{
	testcert_spec s = { .key = key, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };
	qes_cert *c = make(&s, 0);

	assert_int_equal(qes_cert_get_info(c)->key_type, type);
	assert_int_equal(qes_cert_get_info(c)->key_bits, bits);
	assert_string_equal(qes_cert_get_info(c)->curve, curve);
	assert_int_equal(qes_cert_schemes(c), schemes);
	qes_cert_free(c);
}

static void
test_key_types(void **state)
{
	const unsigned rsa = 1u << QES_SIG_RSA_PKCS1 | 1u << QES_SIG_RSA_PSS;
	const unsigned ec = 1u << QES_SIG_ECDSA;
	EVP_PKEY *bp;

	(void)state;
	check_key(K.rsa2048, QES_KEY_RSA, 2048, "", rsa);
	check_key(K.rsa3072, QES_KEY_RSA, 3072, "", rsa);
	check_key(K.p256, QES_KEY_EC, 256, "P-256", ec);
	check_key(K.p384, QES_KEY_EC, 384, "P-384", ec);
	check_key(K.p521, QES_KEY_EC, 521, "P-521", ec);
	/* other named curves are reported by their OpenSSL short name */
	assert_non_null(bp = testcert_key_ec("brainpoolP256r1"));
	check_key(bp, QES_KEY_EC, 256, "brainpoolP256r1", ec);
	EVP_PKEY_free(bp);
	assert_int_equal(qes_cert_schemes(NULL), 0);
}

static void
qc_case(const uint8_t *qc, size_t len, int want)
{
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION, .qc_der = qc, .qc_der_len = len };
	qes_cert *c = make(&s, want);

	qes_cert_free(c);
}

#define QC_CASE(want, ...) do { \
	static const uint8_t v_[] = { __VA_ARGS__ }; \
	qc_case(v_, sizeof(v_), (want)); \
} while (0)

/* OID content of QcCompliance, QcSSCD and QcType as byte lists */
#define O_COMP 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01
#define O_SSCD 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04
#define O_TYPE 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06
#define O_ESIGN 0x06, 0x07, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x01

static void
test_qc_malformed(void **state)
{
	uint8_t big[512];
	size_t i, n;

	(void)state;
	/* well-formed references */
	QC_CASE(0, 0x30, 0x00);
	QC_CASE(0, 0x30, 0x0a, 0x30, 0x08, O_COMP);
	/* unknown statement with statementInfo (QcPDS-like) is skipped */
	QC_CASE(0, 0x30, 0x0f, 0x30, 0x0d, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46,
	    0x01, 0x05, 0x30, 0x03, 0x02, 0x01, 0x05);
	/* QcCompliance with an info element is tolerated (ANY OPTIONAL) */
	QC_CASE(0, 0x30, 0x0c, 0x30, 0x0a, O_COMP, 0x05, 0x00);

	/* empty extension value */
	qc_case((const uint8_t *)"", 0, QES_ERR_FORMAT);
	/* truncated outer SEQUENCE */
	QC_CASE(QES_ERR_FORMAT, 0x30);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0b, 0x30, 0x08, O_COMP);
	/* trailing bytes after the SEQUENCE */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0a, 0x30, 0x08, O_COMP, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x00, 0x30, 0x00);
	/* not a SEQUENCE */
	QC_CASE(QES_ERR_FORMAT, 0x31, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x04, 0x02, 0x30, 0x00);
	/* statement not a SEQUENCE */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x08, O_COMP);
	/* statement without an OID, or an empty one */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x02, 0x30, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x04, 0x30, 0x02, 0x05, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x04, 0x30, 0x02, 0x06, 0x00);
	/* malformed OIDs: unterminated arc, redundant 0x80 */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x05, 0x30, 0x03, 0x06, 0x01, 0x8e);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x06, 0x30, 0x04, 0x06, 0x02, 0x80, 0x01);
	/* two info elements */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0e, 0x30, 0x0c, O_COMP, 0x05, 0x00, 0x05, 0x00);
	/* info element truncated */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0b, 0x30, 0x09, O_COMP, 0x05);
	/* QcType without info, with a non-SEQUENCE info, with a non-OID element */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0a, 0x30, 0x08, O_TYPE);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0d, 0x30, 0x0b, O_TYPE, 0x06, 0x01, 0x01);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0e, 0x30, 0x0c, O_TYPE, 0x30, 0x02, 0x05, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x13, 0x30, 0x11, O_TYPE, 0x30, 0x07, 0x06,
	    0x05, 0x04, 0x00, 0x8e, 0x46, 0x81);
	/* indefinite length, non-minimal length, high tag number */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x80, 0x30, 0x08, O_COMP, 0x00, 0x00);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x81, 0x0a, 0x30, 0x08, O_COMP);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0b, 0x30, 0x81, 0x08, O_COMP);
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0c, 0x30, 0x0a, O_COMP, 0x1f, 0x81, 0x00);
	/* length with too many octets */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x85, 0x00, 0x00, 0x00, 0x00, 0x0a);
	/* inner length running past the outer one */
	QC_CASE(QES_ERR_FORMAT, 0x30, 0x0a, 0x30, 0x09, O_COMP, 0x00);

	/* 32 statements are fine, 33 are over the limit */
	for (n = 32; n <= 33; n++) {
		big[0] = 0x30;
		big[1] = 0x82;
		big[2] = (uint8_t)((n * 10) >> 8);
		big[3] = (uint8_t)(n * 10);
		for (i = 0; i < n; i++) {
			static const uint8_t st[] = { 0x30, 0x08, O_COMP };

			memcpy(big + 4 + i * 10, st, sizeof(st));
		}
		qc_case(big, 4 + n * 10, n == 32 ? 0 : QES_ERR_LIMIT);
	}
	/* 8 QcTypes are fine, 9 are over the limit */
	for (n = 8; n <= 9; n++) {
		static const uint8_t esign[] = { O_ESIGN };
		static const uint8_t type[] = { O_TYPE };
		size_t types_len = n * sizeof(esign), stmt_len, off = 0;

		stmt_len = sizeof(type) + 2 + types_len;
		big[off++] = 0x30;
		big[off++] = (uint8_t)(stmt_len + 2);
		big[off++] = 0x30;
		big[off++] = (uint8_t)stmt_len;
		memcpy(big + off, type, sizeof(type));
		off += sizeof(type);
		big[off++] = 0x30;
		big[off++] = (uint8_t)types_len;
		for (i = 0; i < n; i++, off += sizeof(esign))
			memcpy(big + off, esign, sizeof(esign));
		qc_case(big, off, n == 8 ? 0 : QES_ERR_LIMIT);
	}
}

static void
test_qc_duplicate_extension(void **state)
{
	uint8_t qc[200];
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION, .qc_der = qc, .qc_twice = 1 };

	(void)state;
	s.qc_der_len = testcert_qc(FULL_QC, qc, sizeof(qc));
	(void)make(&s, QES_ERR_FORMAT);
}

/*
 * Broken or repeated standard extensions: OpenSSL would report "no key
 * usage" for an undecodable keyUsage, which must not silently turn into an
 * unrestricted key; the certificate is refused instead.
 */
static void
test_bad_standard_extensions(void **state)
{
	static const uint8_t ku_bad[] = { 0x03, 0x05, 0x00 };		/* truncated */
	static const uint8_t ku_nr[] = { 0x03, 0x02, 0x06, 0x40 };	/* nonRepudiation */
	static const uint8_t pol_bad[] = { 0x30, 0x03, 0x30, 0x01, 0x06 };
	static const uint8_t pol_ok[] = { 0x30, 0x0b, 0x30, 0x09, 0x06, 0x07,
		0x04, 0x00, 0x8b, 0xec, 0x40, 0x01, 0x02 };
	testcert_spec s = { .key = K.p256, .ca_key = K.ca };
	qes_cert *c;

	(void)state;
	/* a single raw keyUsage parses like the built one */
	s.extra_nid = NID_key_usage;
	s.extra_der = ku_nr;
	s.extra_der_len = sizeof(ku_nr);
	c = make(&s, 0);
	assert_true(qes_cert_get_info(c)->has_key_usage);
	assert_int_equal(qes_cert_get_info(c)->key_usage, QES_KU_NON_REPUDIATION);
	qes_cert_free(c);
	/* undecodable keyUsage */
	s.extra_der = ku_bad;
	s.extra_der_len = sizeof(ku_bad);
	(void)make(&s, QES_ERR_FORMAT);
	/* keyUsage twice */
	s.key_usage = QES_KU_DIGITAL_SIGNATURE;
	s.extra_der = ku_nr;
	s.extra_der_len = sizeof(ku_nr);
	(void)make(&s, QES_ERR_FORMAT);
	s.key_usage = 0;
	/* certificatePolicies: raw good one, undecodable one, twice */
	s.extra_nid = NID_certificate_policies;
	s.extra_der = pol_ok;
	s.extra_der_len = sizeof(pol_ok);
	c = make(&s, 0);
	assert_int_equal(qes_cert_get_info(c)->policies, QES_POLICY_QCP_N_QSCD);
	qes_cert_free(c);
	s.extra_der = pol_bad;
	s.extra_der_len = sizeof(pol_bad);
	(void)make(&s, QES_ERR_FORMAT);
	s.policies = "0.4.0.194112.1.2";
	s.extra_der = pol_ok;
	s.extra_der_len = sizeof(pol_ok);
	(void)make(&s, QES_ERR_FORMAT);
}

static void
test_der_framing(void **state)
{
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };
	uint8_t *der, *longer;
	size_t len, i;
	qes_cert *c = NULL;

	(void)state;
	assert_non_null(der = testcert_der(&s, &len));
	/* every truncation fails */
	for (i = 0; i < len; i++) {
		assert_true(qes_cert_from_der(der, i, &c) < 0);
		assert_null(c);
	}
	/* trailing garbage fails */
	assert_non_null(longer = malloc(len + 1));
	memcpy(longer, der, len);
	longer[len] = 0x00;
	assert_int_equal(qes_cert_from_der(longer, len + 1, &c), QES_ERR_FORMAT);
	assert_null(c);
	/* a flipped tag fails */
	longer[0] = 0x31;
	assert_int_equal(qes_cert_from_der(longer, len, &c), QES_ERR_FORMAT);
	free(longer);
	/* size limit and arguments */
	assert_non_null(longer = calloc(1, 64 * 1024 + 1));
	assert_int_equal(qes_cert_from_der(longer, 64 * 1024 + 1, &c), QES_ERR_LIMIT);
	free(longer);
	assert_int_equal(qes_cert_from_der(der, 0, &c), QES_ERR_FORMAT);
	assert_int_equal(qes_cert_from_der(NULL, 10, &c), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_cert_from_der(der, len, NULL), QES_ERR_INVALID_ARG);
	/* and the original still parses */
	assert_int_equal(qes_cert_from_der(der, len, &c), 0);
	qes_cert_free(c);
	OPENSSL_free(der);
}

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
test_from_file(void **state)
{
	char dir[] = "/tmp/qes_test_cert_XXXXXX", path[256];
	testcert_spec s = { .key = K.p256, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };
	X509 *x;
	BIO *bio;
	char *pem, *text;
	long pem_len;
	uint8_t *der;
	size_t der_len;
	qes_cert *c = NULL, *d = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_non_null(x = testcert_x509(&s));
	der = NULL;
	assert_true(i2d_X509(x, &der) > 0);
	der_len = (size_t)i2d_X509(x, NULL);

	/* DER */
	snprintf(path, sizeof(path), "%s/cert.der", dir);
	write_file(path, der, der_len);
	assert_int_equal(qes_cert_from_file(path, &c), 0);
	assert_int_equal(unlink(path), 0);

	/* PEM after some text and a public key block */
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_true(BIO_puts(bio, "Subject: test\n") > 0);
	assert_int_equal(PEM_write_bio_PUBKEY(bio, K.p256), 1);
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	write_file(path, pem, (size_t)pem_len);
	assert_int_equal(qes_cert_from_file(path, &d), 0);
	assert_string_equal(qes_cert_get_info(c)->sha256_hex,
	    qes_cert_get_info(d)->sha256_hex);
	qes_cert_free(d);
	d = NULL;

	/* a PEM block with (encryption) headers is refused, without prompting */
	{
		static const char marker[] = "-----BEGIN CERTIFICATE-----\n";
		const char *begin;
		size_t head;
		qes_buf *t;

		assert_non_null(text = calloc(1, (size_t)pem_len + 1));
		memcpy(text, pem, (size_t)pem_len);
		assert_non_null(begin = strstr(text, marker));
		head = (size_t)(begin - text) + strlen(marker);
		assert_non_null(t = qes_buf_new());
		assert_int_equal(qes_buf_put(t, text, head), 0);
		assert_int_equal(qes_buf_put_str(t, "Proc-Type: 4,ENCRYPTED\n"
		    "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n"), 0);
		assert_int_equal(qes_buf_put_str(t, text + head), 0);
		write_file(path, qes_buf_data(t), qes_buf_len(t));
		assert_int_equal(qes_cert_from_file(path, &d), QES_ERR_FORMAT);
		assert_null(d);
		qes_buf_free(t);
		free(text);
	}
	BIO_free(bio);
	assert_int_equal(unlink(path), 0);

	/* no certificate in the file, empty file, missing file */
	write_file(path, "hello\n", 6);
	assert_int_equal(qes_cert_from_file(path, &d), QES_ERR_FORMAT);
	write_file(path, "", 0);
	assert_int_equal(qes_cert_from_file(path, &d), QES_ERR_FORMAT);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(qes_cert_from_file(path, &d), QES_ERR_NOT_FOUND);
	assert_null(d);
	assert_int_equal(rmdir(dir), 0);

	qes_cert_free(c);
	X509_free(x);
	OPENSSL_free(der);
}

/* ---- verify_digest ---- */

static size_t
sign_digest(EVP_PKEY *key, qes_sig_scheme scheme, qes_md md, int saltlen,
    const uint8_t *digest, uint8_t *sig, size_t cap)
{
	const EVP_MD *evp = md == QES_MD_SHA256 ? EVP_sha256() :
	    md == QES_MD_SHA384 ? EVP_sha384() : EVP_sha512();
	EVP_PKEY_CTX *ctx;
	size_t len = cap;

	assert_non_null(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL));
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, evp), 1);
	if (scheme == QES_SIG_RSA_PKCS1)
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
	if (scheme == QES_SIG_RSA_PSS) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evp), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen), 1);
	}
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, digest, qes_md_len(md)), 1);
	EVP_PKEY_CTX_free(ctx);
	return len;
}

static qes_cert *
cert_for(EVP_PKEY *key)
{
	testcert_spec s = { .key = key, .ca_key = K.ca,
		.key_usage = QES_KU_NON_REPUDIATION };

	return make(&s, 0);
}

static void
test_verify_rsa(void **state)
{
	static const qes_md mds[] = { QES_MD_SHA256, QES_MD_SHA384, QES_MD_SHA512 };
	uint8_t digest[QES_MD_MAX_LEN], other[QES_MD_MAX_LEN], sig[512];
	qes_cert *c = cert_for(K.rsa2048);
	size_t i, n, len;
	qes_md md;

	(void)state;
	for (i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		md = mds[i];
		n = qes_md_len(md);
		assert_int_equal(qes_md_digest(md, "document", 8, digest), 0);
		assert_int_equal(qes_md_digest(md, "documenT", 8, other), 0);

		/* PKCS#1 v1.5 */
		len = sign_digest(K.rsa2048, QES_SIG_RSA_PKCS1, md, 0, digest, sig, sizeof(sig));
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    digest, n, sig, len), 0);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    other, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PSS, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		sig[len / 2] ^= 0x01;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		sig[len / 2] ^= 0x01;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    digest, n, sig, len - 1), QES_ERR_SIGNATURE_INVALID);

		/* PSS with salt = digest length */
		len = sign_digest(K.rsa2048, QES_SIG_RSA_PSS, md, (int)n, digest, sig,
		    sizeof(sig));
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PSS, md,
		    digest, n, sig, len), 0);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PSS, md,
		    other, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		sig[0] ^= 0x40;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PSS, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);

		/* PSS with another salt length does not match the profile */
		len = sign_digest(K.rsa2048, QES_SIG_RSA_PSS, md, (int)n + 1, digest,
		    sig, sizeof(sig));
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PSS, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);
	}
	/* wrong digest length, wrong scheme for the key, bad arguments */
	assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, QES_MD_SHA256,
	    digest, 31, sig, 256), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, QES_MD_SHA256,
	    digest, 32, sig, 256), QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_cert_verify_digest(c, (qes_sig_scheme)9, QES_MD_SHA256,
	    digest, 32, sig, 256), QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, (qes_md)0,
	    digest, 32, sig, 256), QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, QES_MD_SHA256,
	    digest, 32, sig, 0), QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_cert_verify_digest(NULL, QES_SIG_RSA_PKCS1, QES_MD_SHA256,
	    digest, 32, sig, 256), QES_ERR_INVALID_ARG);
	qes_cert_free(c);
}

static void
check_ecdsa(EVP_PKEY *key, qes_md md, size_t field_len)
{
	uint8_t digest[QES_MD_MAX_LEN], other[QES_MD_MAX_LEN], sig[160], raw[132];
	qes_cert *c = cert_for(key);
	size_t n = qes_md_len(md), len;
	qes_buf *b;
	int k;

	assert_int_equal(qes_md_digest(md, "document", 8, digest), 0);
	assert_int_equal(qes_md_digest(md, "documenT", 8, other), 0);
	for (k = 0; k < 4; k++) {
		len = sign_digest(key, QES_SIG_ECDSA, md, 0, digest, sig, sizeof(sig));
		/* DER */
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, sig, len), 0);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    other, n, sig, len), QES_ERR_SIGNATURE_INVALID);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_RSA_PKCS1, md,
		    digest, n, sig, len), QES_ERR_KEY_UNSUITABLE);
		/* raw r||s */
		assert_non_null(b = qes_buf_new());
		assert_int_equal(qes_ecdsa_der_to_raw(sig, len, field_len, b), 0);
		assert_int_equal(qes_buf_len(b), 2 * field_len);
		memcpy(raw, qes_buf_data(b), 2 * field_len);
		qes_buf_free(b);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, raw, 2 * field_len), 0);
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    other, n, raw, 2 * field_len), QES_ERR_SIGNATURE_INVALID);
		raw[2 * field_len - 1] ^= 0x01;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, raw, 2 * field_len), QES_ERR_SIGNATURE_INVALID);
		/* raw of the wrong length, DER with trailing bytes */
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, raw, 2 * field_len - 2), QES_ERR_SIGNATURE_INVALID);
		sig[len] = 0x00;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, sig, len + 1), QES_ERR_SIGNATURE_INVALID);
		/* a flipped bit inside the DER */
		sig[len - 1] ^= 0x01;
		assert_int_equal(qes_cert_verify_digest(c, QES_SIG_ECDSA, md,
		    digest, n, sig, len), QES_ERR_SIGNATURE_INVALID);
	}
	qes_cert_free(c);
}

static void
test_verify_ecdsa(void **state)
{
	(void)state;
	check_ecdsa(K.p256, QES_MD_SHA256, 32);
	check_ecdsa(K.p384, QES_MD_SHA384, 48);
	check_ecdsa(K.p384, QES_MD_SHA256, 48);
	check_ecdsa(K.p521, QES_MD_SHA512, 66);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_classify_qctype_unknown),
		cmocka_unit_test(test_classify_validity),
		cmocka_unit_test(test_class_names),
		cmocka_unit_test(test_info_fields),
		cmocka_unit_test(test_policies),
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_qc_malformed),
		cmocka_unit_test(test_qc_duplicate_extension),
		cmocka_unit_test(test_bad_standard_extensions),
		cmocka_unit_test(test_der_framing),
		cmocka_unit_test(test_from_file),
		cmocka_unit_test(test_verify_rsa),
		cmocka_unit_test(test_verify_ecdsa),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
