/*
 * testcert.h - build X.509 certificates inside unit tests with the OpenSSL
 * API, so that no test depends on certificate files on disk.
 *
 * A test describes the certificate it wants in a testcert_spec (every field
 * has a usable zero default), gets DER bytes from testcert_der(), and can
 * build qcStatements values with testcert_qc(). Everything here is static
 * inline so that a test including it only pays for what it uses.
 *
 *	EVP_PKEY *ca = testcert_key_ec("P-256"), *k = testcert_key_rsa(2048);
 *	uint8_t qc[128];
 *	testcert_spec s = { .key = k, .ca_key = ca,
 *	    .key_usage = QES_KU_NON_REPUDIATION,
 *	    .qc_der = qc, .qc_der_len = testcert_qc(QES_QC_COMPLIANCE |
 *	        QES_QC_SSCD | QES_QC_TYPE_ESIGN, qc, sizeof(qc)) };
 *	size_t len; uint8_t *der = testcert_der(&s, &len);   // OPENSSL_free()
 */
#ifndef QES_TESTCERT_H
#define QES_TESTCERT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "qes/cert.h"

typedef struct testcert_spec {
	EVP_PKEY *key;		/* subject key; its public half goes in */
	EVP_PKEY *ca_key;	/* signs the certificate; NULL: self-signed */
	const char *cn;		/* subject CN (UTF-8); NULL: "Test Signer", "": none */
	const char *issuer_cn;	/* NULL: "qes Test CA" (ignored when self-signed) */
	const char *serial_hex;	/* NULL: "01a2b3c4d5" */
	int64_t not_before;	/* unix seconds; 0: now - 1 day */
	int64_t not_after;	/* unix seconds; 0: now + 365 days */
	unsigned key_usage;	/* QES_KU_* bits; 0: no keyUsage extension */
	const uint8_t *qc_der;	/* value of qcStatements; NULL: no extension */
	size_t qc_der_len;
	int qc_twice;		/* add the qcStatements extension twice */
	const char *policies;	/* "oid,oid,..." for certificatePolicies; NULL: none */
	int extra_nid;		/* add one more extension with this NID ... */
	const uint8_t *extra_der;	/* ... and this raw value (may be malformed) */
	size_t extra_der_len;
	const EVP_MD *md;	/* signature hash; NULL: SHA-256 */
} testcert_spec;

static inline EVP_PKEY *
testcert_key_rsa(unsigned bits)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
}

static inline EVP_PKEY *
testcert_key_ec(const char *curve)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

/* ---- raw DER for qcStatements ---- */

#define TESTCERT_OID_QC_COMPLIANCE	"\x06\x06\x04\x00\x8e\x46\x01\x01"
#define TESTCERT_OID_QC_SSCD		"\x06\x06\x04\x00\x8e\x46\x01\x04"
#define TESTCERT_OID_QC_TYPE		"\x06\x06\x04\x00\x8e\x46\x01\x06"
#define TESTCERT_OID_QCT_ESIGN		"\x06\x07\x04\x00\x8e\x46\x01\x06\x01"
#define TESTCERT_OID_QCT_ESEAL		"\x06\x07\x04\x00\x8e\x46\x01\x06\x02"
#define TESTCERT_OID_QCT_WEB		"\x06\x07\x04\x00\x8e\x46\x01\x06\x03"

/* append a TLV with a short-form length; 0 when it does not fit */
static inline size_t
testcert_tlv(uint8_t tag, const uint8_t *v, size_t vlen, uint8_t *out, size_t cap)
{
	if (vlen > 127 || vlen + 2 > cap)
		return 0;
	out[0] = tag;
	out[1] = (uint8_t)vlen;
	if (vlen > 0)
		memmove(out + 2, v, vlen);
	return vlen + 2;
}

/*
 * qcStatements value for a set of QES_QC_* bits: QcCompliance, QcSSCD and
 * one QcType statement listing the selected types. Returns the length, 0
 * when cap is too small.
 */
static inline size_t
testcert_qc(unsigned qc, uint8_t *out, size_t cap)
{
	uint8_t body[256], types[64], stmt[96];
	size_t blen = 0, tlen = 0, n;

#define TC_APPEND(buf, len, lit) do { \
	memcpy((buf) + (len), (lit), sizeof(lit) - 1); (len) += sizeof(lit) - 1; \
} while (0)
	if (qc & QES_QC_COMPLIANCE) {
		n = testcert_tlv(0x30, (const uint8_t *)TESTCERT_OID_QC_COMPLIANCE,
		    sizeof(TESTCERT_OID_QC_COMPLIANCE) - 1, body + blen, sizeof(body) - blen);
		blen += n;
	}
	if (qc & QES_QC_SSCD) {
		n = testcert_tlv(0x30, (const uint8_t *)TESTCERT_OID_QC_SSCD,
		    sizeof(TESTCERT_OID_QC_SSCD) - 1, body + blen, sizeof(body) - blen);
		blen += n;
	}
	if (qc & (QES_QC_TYPE_ESIGN | QES_QC_TYPE_ESEAL | QES_QC_TYPE_WEB)) {
		if (qc & QES_QC_TYPE_ESIGN)
			TC_APPEND(types, tlen, TESTCERT_OID_QCT_ESIGN);
		if (qc & QES_QC_TYPE_ESEAL)
			TC_APPEND(types, tlen, TESTCERT_OID_QCT_ESEAL);
		if (qc & QES_QC_TYPE_WEB)
			TC_APPEND(types, tlen, TESTCERT_OID_QCT_WEB);
		n = 0;
		TC_APPEND(stmt, n, TESTCERT_OID_QC_TYPE);
		n += testcert_tlv(0x30, types, tlen, stmt + n, sizeof(stmt) - n);
		blen += testcert_tlv(0x30, stmt, n, body + blen, sizeof(body) - blen);
	}
#undef TC_APPEND
	return testcert_tlv(0x30, body, blen, out, cap);
}

/* ---- certificates ---- */

static inline int
testcert_add_name(X509_NAME *name, const char *cn)
{
	if (X509_NAME_add_entry_by_txt(name, "C", MBSTRING_UTF8,
	    (const unsigned char *)"DE", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	    (const unsigned char *)"qes test", -1, -1, 0) != 1)
		return 0;
	if (cn[0] != '\0' && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) != 1)
		return 0;
	return 1;
}

static inline int
testcert_add_raw_ext(X509 *x, int nid, const uint8_t *der, size_t len)
{
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	int ok = 0;

	if (os == NULL || ASN1_OCTET_STRING_set(os, der, (int)len) != 1)
		goto out;
	if ((ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, os)) == NULL)
		goto out;
	ok = X509_add_ext(x, ext, -1) == 1;
 out:
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	return ok;
}

static inline int
testcert_add_key_usage(X509 *x, unsigned ku)
{
	ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();
	int i, ok = 0;

	if (bs == NULL)
		return 0;
	/* QES_KU_DIGITAL_SIGNATURE (0x80) is bit 0 of the BIT STRING, ... */
	for (i = 0; i < 8; i++) {
		if ((ku & (0x80u >> i)) && ASN1_BIT_STRING_set_bit(bs, i, 1) != 1)
			goto out;
	}
	if (ku & 0x8000u && ASN1_BIT_STRING_set_bit(bs, 8, 1) != 1)
		goto out;
	ok = X509_add1_ext_i2d(x, NID_key_usage, bs, 1, X509V3_ADD_DEFAULT) == 1;
 out:
	ASN1_BIT_STRING_free(bs);
	return ok;
}

/* policies: comma-separated dotted OIDs, spaces allowed */
static inline int
testcert_add_policies(X509 *x, const char *policies)
{
	CERTIFICATEPOLICIES *pols = CERTIFICATEPOLICIES_new();
	POLICYINFO *pi = NULL;
	char oid[128];
	const char *p = policies, *end;
	size_t n;
	int ok = 0;

	if (pols == NULL)
		return 0;
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		for (end = p; *end != '\0' && *end != ','; end++)
			;
		if ((n = (size_t)(end - p)) >= sizeof(oid))
			goto out;
		memcpy(oid, p, n);
		oid[n] = '\0';
		p = end;
		if ((pi = POLICYINFO_new()) == NULL)
			goto out;
		ASN1_OBJECT_free(pi->policyid);
		if ((pi->policyid = OBJ_txt2obj(oid, 1)) == NULL)
			goto out;
		if (sk_POLICYINFO_push(pols, pi) <= 0)
			goto out;
		pi = NULL;
	}
	ok = X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0,
	    X509V3_ADD_DEFAULT) == 1;
 out:
	POLICYINFO_free(pi);
	CERTIFICATEPOLICIES_free(pols);
	return ok;
}

/* The certificate as an X509 object; X509_free() it. NULL on failure. */
static inline X509 *
testcert_x509(const testcert_spec *s)
{
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	time_t now = time(NULL);
	int64_t nb = s->not_before != 0 ? s->not_before : (int64_t)now - 86400;
	int64_t na = s->not_after != 0 ? s->not_after : (int64_t)now + 365 * 86400;
	const char *cn = s->cn != NULL ? s->cn : "Test Signer";
	int ok = 0;

	if (x == NULL || s->key == NULL)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1)
		goto out;
	if (BN_hex2bn(&bn, s->serial_hex != NULL ? s->serial_hex : "01a2b3c4d5") == 0 ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto out;
	if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL)
		goto out;
	if (!testcert_add_name(X509_get_subject_name(x), cn))
		goto out;
	if (s->ca_key == NULL) {
		if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1)
			goto out;
	} else if (!testcert_add_name(X509_get_issuer_name(x),
	    s->issuer_cn != NULL ? s->issuer_cn : "qes Test CA"))
		goto out;
	if (X509_set_pubkey(x, s->key) != 1)
		goto out;
	if (s->key_usage != 0 && !testcert_add_key_usage(x, s->key_usage))
		goto out;
	if (s->qc_der != NULL) {
		if (!testcert_add_raw_ext(x, NID_qcStatements, s->qc_der, s->qc_der_len))
			goto out;
		if (s->qc_twice &&
		    !testcert_add_raw_ext(x, NID_qcStatements, s->qc_der, s->qc_der_len))
			goto out;
	}
	if (s->policies != NULL && !testcert_add_policies(x, s->policies))
		goto out;
	if (s->extra_nid != 0 && !testcert_add_raw_ext(x, s->extra_nid,
	    s->extra_der, s->extra_der_len))
		goto out;
	if (X509_sign(x, s->ca_key != NULL ? s->ca_key : s->key,
	    s->md != NULL ? s->md : EVP_sha256()) <= 0)
		goto out;
	ok = 1;
 out:
	BN_free(bn);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

/* The certificate as DER; OPENSSL_free() it. NULL on failure. */
static inline uint8_t *
testcert_der(const testcert_spec *s, size_t *len)
{
	X509 *x = testcert_x509(s);
	unsigned char *der = NULL;
	int n;

	*len = 0;
	if (x == NULL)
		return NULL;
	n = i2d_X509(x, &der);
	X509_free(x);
	if (n <= 0)
		return NULL;
	*len = (size_t)n;
	return der;
}

#endif
