/*
 * cert.c - X.509 certificates as qes sees them (cert.h).
 *
 * OpenSSL parses the certificate; this file turns it into the few facts the
 * rest of qes needs (names, validity, key, keyUsage, policies) and reads
 * the one extension OpenSSL does not decode, qcStatements (RFC 3739, ETSI
 * EN 319 412-5), with the strict DER reader of der.c. The eIDAS class that
 * the agent's inventory, the consent dialog and qesd show is computed from
 * those facts here and nowhere else.
 *
 * A certificate we cannot judge is refused rather than shown with partial
 * information: malformed qcStatements, an invalid keyUsage, duplicate
 * extensions or unprintable names make qes_cert_from_der() fail, so that
 * such a certificate can never be presented as qualified.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sig.h"

#include "cert_priv.h"
#include "der.h"

#define CERT_DER_MAX		((size_t)64 * 1024)
/* a PEM file may carry a chain and explanatory text around the certificate */
#define CERT_FILE_MAX		((size_t)1024 * 1024)
#define CERT_PEM_MAX_BLOCKS	64
#define QC_MAX_STATEMENTS	32
#define QC_MAX_TYPES		8
/* the largest curve sig.c converts: P-521 */
#define QES_ECDSA_MAX_FIELD_LEN	66

/* RFC 2253, but UTF-8 kept as UTF-8: "Müller", not "M\C3\BCller" */
#define NAME_PRINT_FLAGS	(XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)

/* OID content octets (ETSI EN 319 412-5, EN 319 411-2) */
static const uint8_t oid_qc_compliance[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01 };
static const uint8_t oid_qc_sscd[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x04 };
static const uint8_t oid_qc_type[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06 };
static const uint8_t oid_qct_esign[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x01 };
static const uint8_t oid_qct_eseal[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x02 };
static const uint8_t oid_qct_web[] = { 0x04, 0x00, 0x8e, 0x46, 0x01, 0x06, 0x03 };

static const struct {
	uint8_t oid[9];
	size_t len;
	unsigned bit;
} qc_policies[] = {
	{ { 0x04, 0x00, 0x8b, 0xec, 0x40, 0x01, 0x00 }, 7, QES_POLICY_QCP_N },
	{ { 0x04, 0x00, 0x8b, 0xec, 0x40, 0x01, 0x01 }, 7, QES_POLICY_QCP_L },
	{ { 0x04, 0x00, 0x8b, 0xec, 0x40, 0x01, 0x02 }, 7, QES_POLICY_QCP_N_QSCD },
	{ { 0x04, 0x00, 0x8b, 0xec, 0x40, 0x01, 0x03 }, 7, QES_POLICY_QCP_L_QSCD },
};

struct qes_cert {
	X509 *x509;
	EVP_PKEY *pkey;			/* borrowed from x509 */
	uint8_t *der;
	size_t der_len;
	qes_cert_info info;		/* strings point at the members below */
	char *subject;
	char *subject_cn;
	char *issuer;
	char *serial_hex;
	char curve[64];
	char sha256_hex[2 * 32 + 1];
	unsigned schemes;
	int qc_type_present;		/* a QcType statement exists */
	int qc_type_other;		/* it names a type besides esign */
};

static const EVP_MD *
md_evp(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256:
		return EVP_sha256();
	case QES_MD_SHA384:
		return EVP_sha384();
	case QES_MD_SHA512:
		return EVP_sha512();
	}
	return NULL;
}

static void
hex_lower(const uint8_t *p, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int
name_to_str(const X509_NAME *name, char **out)
{
	BIO *bio = NULL;
	char *mem = NULL, *s = NULL;
	long n;
	int r = QES_ERR_FORMAT;

	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	/* fails on strings that do not decode (bad UTF-8, odd BMPString) */
	if (X509_NAME_print_ex(bio, name, 0, NAME_PRINT_FLAGS) < 0)
		goto out;
	if ((n = BIO_get_mem_data(bio, &mem)) < 0 || (n > 0 && mem == NULL))
		goto out;
	if (memchr(mem, '\0', (size_t)n) != NULL)
		goto out;
	if ((s = malloc((size_t)n + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (n > 0)
		memcpy(s, mem, (size_t)n);
	s[n] = '\0';
	*out = s;
	r = 0;
 out:
	BIO_free(bio);
	return r;
}

/*
 * The commonName as UTF-8 (the last one, the most specific in DER order).
 * It is shown alone in consent dialogs, so a NUL or a control character,
 * which could hide or fake part of the name, makes the certificate unusable.
 */
static int
cn_to_str(const X509_NAME *name, char **out)
{
	const X509_NAME_ENTRY *e;
	const ASN1_STRING *data;
	unsigned char *utf8 = NULL;
	char *s = NULL;
	int idx = -1, last = -1, n, i, r = QES_ERR_FORMAT;

	while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0)
		last = idx;
	if (last < 0) {
		n = 0;
	} else {
		if ((e = X509_NAME_get_entry(name, last)) == NULL ||
		    (data = X509_NAME_ENTRY_get_data(e)) == NULL)
			goto out;
		if ((n = ASN1_STRING_to_UTF8(&utf8, data)) < 0)
			goto out;
		for (i = 0; i < n; i++) {
			if (utf8[i] < 0x20 || utf8[i] == 0x7f)
				goto out;
		}
	}
	if ((s = malloc((size_t)n + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (n > 0)
		memcpy(s, utf8, (size_t)n);
	s[n] = '\0';
	*out = s;
	r = 0;
 out:
	OPENSSL_free(utf8);
	return r;
}

/* lower-case hex without leading zeros; "-" first for a (non-conforming) negative serial */
static int
serial_to_str(const ASN1_INTEGER *serial, char **out)
{
	BIGNUM *bn = NULL;
	char *hex = NULL, *s = NULL, *p;
	size_t i, neg, len;
	int r = QES_ERR_FORMAT;

	if (serial == NULL || (bn = ASN1_INTEGER_to_BN(serial, NULL)) == NULL)
		goto out;
	if ((hex = BN_bn2hex(bn)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	neg = hex[0] == '-';
	p = hex + neg;
	while (p[0] == '0' && p[1] != '\0')
		p++;
	len = strlen(p);
	if ((s = malloc(neg + len + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (neg)
		s[0] = '-';
	for (i = 0; i <= len; i++)
		s[neg + i] = (char)(p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 'a' : p[i]);
	*out = s;
	r = 0;
 out:
	OPENSSL_free(hex);
	BN_free(bn);
	return r;
}

static int
time_to_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;
	time_t v;

	memset(&tm, 0, sizeof(tm));
	/* with a NULL time ASN1_TIME_to_tm() would report the current time */
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return QES_ERR_FORMAT;
	if ((v = timegm(&tm)) == (time_t)-1 && (tm.tm_year != 69 ||
	    tm.tm_mon != 11 || tm.tm_mday != 31 || tm.tm_hour != 23 ||
	    tm.tm_min != 59 || tm.tm_sec != 59))
		return QES_ERR_FORMAT;
	*out = (int64_t)v;
	return 0;
}

static int
load_key(qes_cert *c)
{
	char group[sizeof(c->curve)];
	const char *curve;
	size_t glen = 0;
	int bits, nid;

	/* NULL when OpenSSL cannot decode the key: malformed or unknown */
	if ((c->pkey = X509_get0_pubkey(c->x509)) == NULL)
		return QES_ERR_FORMAT;
	if ((bits = EVP_PKEY_get_bits(c->pkey)) <= 0)
		return QES_ERR_FORMAT;
	c->info.key_bits = (unsigned)bits;
	c->curve[0] = '\0';
	if (EVP_PKEY_is_a(c->pkey, "RSA")) {
		c->info.key_type = QES_KEY_RSA;
		c->schemes = 1u << QES_SIG_RSA_PKCS1 | 1u << QES_SIG_RSA_PSS;
	} else if (EVP_PKEY_is_a(c->pkey, "RSA-PSS")) {
		/* an id-RSASSA-PSS key may only make PSS signatures */
		c->info.key_type = QES_KEY_RSA;
		c->schemes = 1u << QES_SIG_RSA_PSS;
	} else if (EVP_PKEY_is_a(c->pkey, "EC")) {
		c->info.key_type = QES_KEY_EC;
		c->schemes = 1u << QES_SIG_ECDSA;
		/* named curves only (RFC 5480): explicit parameters are refused */
		if (EVP_PKEY_get_group_name(c->pkey, group, sizeof(group), &glen) != 1 ||
		    glen == 0 || glen >= sizeof(group))
			return QES_ERR_UNSUPPORTED;
		group[glen] = '\0';
		if ((nid = OBJ_sn2nid(group)) == NID_undef)
			nid = EC_curve_nist2nid(group);
		switch (nid) {
		case NID_X9_62_prime256v1:
			curve = "P-256";
			break;
		case NID_secp384r1:
			curve = "P-384";
			break;
		case NID_secp521r1:
			curve = "P-521";
			break;
		default:
			curve = nid != NID_undef ? OBJ_nid2sn(nid) : group;
			break;
		}
		if (curve == NULL || strlen(curve) >= sizeof(c->curve))
			return QES_ERR_UNSUPPORTED;
		memcpy(c->curve, curve, strlen(curve) + 1);
	} else {
		c->info.key_type = QES_KEY_UNKNOWN;
		c->schemes = 0;
	}
	return 0;
}

/*
 * QcType ::= SEQUENCE OF OBJECT IDENTIFIER, as the statementInfo of the
 * QcType statement; info holds exactly that one TLV.
 */
static int
qc_parse_types(qes_cert *c, qes_cursor *info, unsigned *qc)
{
	qes_cursor seq, oid;
	size_t n = 0;

	if (qes_der_expect(info, QES_DER_SEQUENCE, &seq) != 0 ||
	    qes_der_end(info) != 0)
		return QES_ERR_FORMAT;
	c->qc_type_present = 1;
	while (qes_cursor_remaining(&seq) > 0) {
		if (++n > QC_MAX_TYPES)
			return QES_ERR_LIMIT;
		if (qes_der_get_oid(&seq, &oid) != 0)
			return QES_ERR_FORMAT;
		if (qes_der_oid_eq(&oid, oid_qct_esign, sizeof(oid_qct_esign)))
			*qc |= QES_QC_TYPE_ESIGN;
		else if (qes_der_oid_eq(&oid, oid_qct_eseal, sizeof(oid_qct_eseal))) {
			*qc |= QES_QC_TYPE_ESEAL;
			c->qc_type_other = 1;
		} else if (qes_der_oid_eq(&oid, oid_qct_web, sizeof(oid_qct_web))) {
			*qc |= QES_QC_TYPE_WEB;
			c->qc_type_other = 1;
		} else
			c->qc_type_other = 1;
	}
	return 0;
}

/*
 * QCStatements ::= SEQUENCE OF QCStatement
 * QCStatement ::= SEQUENCE { statementId OID, statementInfo ANY OPTIONAL }
 * Statements we do not know are skipped, but their framing is still checked.
 */
static int
qc_parse(qes_cert *c, const uint8_t *der, size_t len)
{
	qes_cursor top, seq, stmt, oid, info, val;
	unsigned qc = QES_QC_PRESENT;
	size_t n = 0;
	uint8_t tag;
	int r;

	qes_cursor_init(&top, der, len);
	if (qes_der_expect(&top, QES_DER_SEQUENCE, &seq) != 0 ||
	    qes_der_end(&top) != 0)
		return QES_ERR_FORMAT;
	while (qes_cursor_remaining(&seq) > 0) {
		if (++n > QC_MAX_STATEMENTS)
			return QES_ERR_LIMIT;
		if (qes_der_expect(&seq, QES_DER_SEQUENCE, &stmt) != 0 ||
		    qes_der_get_oid(&stmt, &oid) != 0)
			return QES_ERR_FORMAT;
		/* statementInfo: nothing, or exactly one well-framed TLV */
		info = stmt;
		if (qes_cursor_remaining(&stmt) > 0 &&
		    (qes_der_get_tlv(&stmt, &tag, &val) != 0 ||
		    qes_der_end(&stmt) != 0))
			return QES_ERR_FORMAT;
		if (qes_der_oid_eq(&oid, oid_qc_compliance, sizeof(oid_qc_compliance)))
			qc |= QES_QC_COMPLIANCE;
		else if (qes_der_oid_eq(&oid, oid_qc_sscd, sizeof(oid_qc_sscd)))
			qc |= QES_QC_SSCD;
		else if (qes_der_oid_eq(&oid, oid_qc_type, sizeof(oid_qc_type))) {
			if ((r = qc_parse_types(c, &info, &qc)) != 0)
				return r;
		}
	}
	c->info.qc = qc;
	return 0;
}

static int
load_qc_statements(qes_cert *c)
{
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *os;
	int idx;

	c->info.qc = 0;
	if ((idx = X509_get_ext_by_NID(c->x509, NID_qcStatements, -1)) < 0)
		return 0;
	/* RFC 5280: an extension appears at most once */
	if (X509_get_ext_by_NID(c->x509, NID_qcStatements, idx) >= 0)
		return QES_ERR_FORMAT;
	if ((ext = X509_get_ext(c->x509, idx)) == NULL ||
	    (os = X509_EXTENSION_get_data(ext)) == NULL)
		return QES_ERR_FORMAT;
	/* QES_ERR_LIMIT for too many statements or types, else QES_ERR_FORMAT */
	return qc_parse(c, ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
}

static int
load_policies(qes_cert *c)
{
	CERTIFICATEPOLICIES *pols;
	const POLICYINFO *pi;
	const unsigned char *p;
	size_t i, j, len;
	int crit = -1, n;

	c->info.policies = 0;
	pols = X509_get_ext_d2i(c->x509, NID_certificate_policies, &crit, NULL);
	if (pols == NULL)
		return crit == -1 ? 0 : QES_ERR_FORMAT;	/* -2: duplicated, else undecodable */
	n = sk_POLICYINFO_num(pols);
	for (i = 0; n > 0 && i < (size_t)n; i++) {
		if ((pi = sk_POLICYINFO_value(pols, (int)i)) == NULL ||
		    pi->policyid == NULL)
			continue;
		p = OBJ_get0_data(pi->policyid);
		len = OBJ_length(pi->policyid);
		for (j = 0; j < sizeof(qc_policies) / sizeof(qc_policies[0]); j++) {
			if (p != NULL && len == qc_policies[j].len &&
			    memcmp(p, qc_policies[j].oid, len) == 0)
				c->info.policies |= qc_policies[j].bit;
		}
	}
	CERTIFICATEPOLICIES_free(pols);
	return 0;
}

static int
load_info(qes_cert *c)
{
	uint8_t fp[32];
	uint32_t flags;
	int r;

	if ((r = name_to_str(X509_get_subject_name(c->x509), &c->subject)) != 0 ||
	    (r = name_to_str(X509_get_issuer_name(c->x509), &c->issuer)) != 0 ||
	    (r = cn_to_str(X509_get_subject_name(c->x509), &c->subject_cn)) != 0 ||
	    (r = serial_to_str(X509_get0_serialNumber(c->x509), &c->serial_hex)) != 0)
		return r;
	if ((r = time_to_unix(X509_get0_notBefore(c->x509), &c->info.not_before)) != 0 ||
	    (r = time_to_unix(X509_get0_notAfter(c->x509), &c->info.not_after)) != 0)
		return r;
	if ((r = load_key(c)) != 0)
		return r;
	/*
	 * Let OpenSSL decode the extensions it knows. It flags an undecodable
	 * keyUsage (and other broken standard extensions) as invalid, and then
	 * reports no key usage at all: refuse such a certificate outright.
	 */
	if (X509_check_purpose(c->x509, -1, 0) != 1)
		return QES_ERR_FORMAT;
	flags = X509_get_extension_flags(c->x509);
	if (flags & EXFLAG_INVALID)
		return QES_ERR_FORMAT;
	c->info.has_key_usage = (flags & EXFLAG_KUSAGE) != 0;
	c->info.key_usage = c->info.has_key_usage ?
	    (unsigned)(X509_get_key_usage(c->x509) & 0xffffu) : 0;
	if ((r = load_qc_statements(c)) != 0 || (r = load_policies(c)) != 0)
		return r;
	if ((r = qes_md_digest(QES_MD_SHA256, c->der, c->der_len, fp)) != 0)
		return r;
	hex_lower(fp, sizeof(fp), c->sha256_hex);

	c->info.subject = c->subject;
	c->info.subject_cn = c->subject_cn;
	c->info.issuer = c->issuer;
	c->info.serial_hex = c->serial_hex;
	c->info.curve = c->curve;
	c->info.sha256_hex = c->sha256_hex;
	return 0;
}

int
qes_cert_from_der(const uint8_t *der, size_t len, qes_cert **out)
{
	qes_cert *c = NULL;
	const unsigned char *p;
	int r = QES_ERR_FORMAT;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (der == NULL && len > 0)
		return QES_ERR_INVALID_ARG;
	if (len == 0)
		return QES_ERR_FORMAT;
	if (len > CERT_DER_MAX)
		return QES_ERR_LIMIT;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->der = malloc(len)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	memcpy(c->der, der, len);
	c->der_len = len;
	p = c->der;
	if ((c->x509 = d2i_X509(NULL, &p, (long)len)) == NULL)
		goto out;
	if (p != c->der + len)
		goto out;	/* trailing bytes after the certificate */
	if ((r = load_info(c)) != 0)
		goto out;
	*out = c;
	c = NULL;
	r = 0;
 out:
	if (r != 0)
		ERR_clear_error();
	qes_cert_free(c);
	return r;
}

/*
 * The first CERTIFICATE block of a PEM file. Blocks of other types (keys, a
 * CRL) are skipped; a block with headers is refused, so an encrypted-PEM
 * header can never make OpenSSL ask for a passphrase on a terminal.
 */
static int
pem_first_cert(const uint8_t *data, size_t len, qes_cert **out)
{
	BIO *bio = NULL;
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long der_len = 0;
	int blocks, r = QES_ERR_FORMAT;

	if (len > CERT_FILE_MAX)
		return QES_ERR_LIMIT;
	if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	for (blocks = 0; blocks < CERT_PEM_MAX_BLOCKS; blocks++) {
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(der);
		name = header = NULL;
		der = NULL;
		if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1)
			goto out;	/* no (more) PEM blocks */
		if (strcmp(name, PEM_STRING_X509) != 0 &&
		    strcmp(name, PEM_STRING_X509_OLD) != 0)
			continue;
		if (header[0] != '\0' || der_len <= 0)
			goto out;
		r = qes_cert_from_der(der, (size_t)der_len, out);
		goto out;
	}
	r = QES_ERR_LIMIT;
 out:
	if (r != 0)
		ERR_clear_error();
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	return r;
}

int
qes_cert_from_file(const char *path, qes_cert **out)
{
	qes_buf *b = NULL;
	const uint8_t *data;
	size_t len;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (path == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qes_buf_read_file(path, CERT_FILE_MAX, &b)) != 0)
		goto out;
	data = qes_buf_data(b);
	len = qes_buf_len(b);
	if (len == 0) {
		r = QES_ERR_FORMAT;
		goto out;
	}
	/* a DER certificate starts with SEQUENCE; PEM with text */
	if (data[0] == QES_DER_SEQUENCE)
		r = qes_cert_from_der(data, len, out);
	else
		r = pem_first_cert(data, len, out);
 out:
	qes_buf_free(b);
	return r;
}

void
qes_cert_free(qes_cert *c)
{
	if (c == NULL)
		return;
	X509_free(c->x509);
	free(c->der);
	free(c->subject);
	free(c->subject_cn);
	free(c->issuer);
	free(c->serial_hex);
	free(c);
}

const qes_cert_info *
qes_cert_get_info(const qes_cert *c)
{
	return c != NULL ? &c->info : NULL;
}

const uint8_t *
qes_cert_der(const qes_cert *c, size_t *len)
{
	if (c == NULL) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = c->der_len;
	return c->der;
}

X509 *
qes_cert_x509(const qes_cert *c)
{
	return c != NULL ? c->x509 : NULL;
}

EVP_PKEY *
qes_cert_pkey(const qes_cert *c)
{
	return c != NULL ? c->pkey : NULL;
}

/*
 * A QcType, when present, must say esign and nothing else: a certificate
 * that also claims to be an eSeal or a website certificate is not the
 * qualified signature certificate of a natural person.
 */
static int
is_qualified(const qes_cert *c)
{
	const unsigned need = QES_QC_COMPLIANCE | QES_QC_SSCD;

	if ((c->info.qc & need) != need)
		return 0;
	if (!c->qc_type_present)
		return 1;
	return (c->info.qc & QES_QC_TYPE_ESIGN) != 0 && !c->qc_type_other;
}

qes_cert_class
qes_cert_classify(const qes_cert *c, int64_t now)
{
	int non_repudiation;

	if (c == NULL)
		return QES_CERT_AUTH_ONLY;	/* the class that allows nothing */
	/* RFC 5280 4.1.2.5: both ends of the validity period are included */
	if (now > c->info.not_after)
		return QES_CERT_EXPIRED;
	if (now < c->info.not_before)
		return QES_CERT_NOT_YET_VALID;
	non_repudiation = c->info.has_key_usage &&
	    (c->info.key_usage & QES_KU_NON_REPUDIATION) != 0;
	if (!non_repudiation)
		return QES_CERT_AUTH_ONLY;
	return is_qualified(c) ? QES_CERT_QUALIFIED : QES_CERT_ADVANCED;
}

const char *
qes_cert_class_name(qes_cert_class cls)
{
	switch (cls) {
	case QES_CERT_QUALIFIED:
		return "qualified";
	case QES_CERT_ADVANCED:
		return "advanced";
	case QES_CERT_AUTH_ONLY:
		return "authentication";
	case QES_CERT_EXPIRED:
		return "expired";
	case QES_CERT_NOT_YET_VALID:
		return "not_yet_valid";
	}
	return "unknown";
}

unsigned
qes_cert_schemes(const qes_cert *c)
{
	return c != NULL ? c->schemes : 0;
}

/* field (order) size of the certificate's EC key in bytes */
static size_t
ec_field_len(const qes_cert *c)
{
	return ((size_t)c->info.key_bits + 7) / 8;
}

int
qes_cert_verify_digest(const qes_cert *c, qes_sig_scheme scheme, qes_md md,
    const uint8_t *digest, size_t digest_len, const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	qes_buf *conv = NULL;
	const EVP_MD *evp;
	const uint8_t *s = sig;
	size_t s_len = sig_len, field_len;
	int v, r = QES_ERR_CRYPTO;

	if (c == NULL || digest == NULL || sig == NULL)
		return QES_ERR_INVALID_ARG;
	if ((evp = md_evp(md)) == NULL)
		return QES_ERR_UNSUPPORTED;
	if (digest_len != qes_md_len(md))
		return QES_ERR_INVALID_ARG;
	if (scheme != QES_SIG_RSA_PKCS1 && scheme != QES_SIG_RSA_PSS &&
	    scheme != QES_SIG_ECDSA)
		return QES_ERR_UNSUPPORTED;
	if ((c->schemes & (1u << scheme)) == 0)
		return QES_ERR_KEY_UNSUITABLE;
	if (sig_len == 0)
		return QES_ERR_SIGNATURE_INVALID;

	if (scheme == QES_SIG_ECDSA) {
		/* canonical DER is used as it is; raw r||s is converted */
		if ((field_len = ec_field_len(c)) > QES_ECDSA_MAX_FIELD_LEN) {
			r = QES_ERR_UNSUPPORTED;
			goto out;
		}
		if ((conv = qes_buf_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if (qes_ecdsa_der_to_raw(sig, sig_len, field_len, conv) != 0) {
			if (sig_len != 2 * field_len) {
				r = QES_ERR_SIGNATURE_INVALID;
				goto out;
			}
			qes_buf_reset(conv);
			if ((r = qes_ecdsa_raw_to_der(sig, sig_len, conv)) != 0)
				goto out;
			s = qes_buf_data(conv);
			s_len = qes_buf_len(conv);
		}
	}

	r = QES_ERR_CRYPTO;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->pkey, NULL)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	switch (scheme) {
	case QES_SIG_RSA_PKCS1:
		/* OpenSSL builds and compares the DigestInfo itself */
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(ctx, evp) != 1)
			goto out;
		break;
	case QES_SIG_RSA_PSS:
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(ctx, evp) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evp) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)digest_len) != 1)
			goto out;
		break;
	case QES_SIG_ECDSA:
		if (EVP_PKEY_CTX_set_signature_md(ctx, evp) != 1)
			goto out;
		break;
	}
	v = EVP_PKEY_verify(ctx, s, s_len, digest, digest_len);
	if (v == 1)
		r = 0;
	else if (v == 0)
		r = QES_ERR_SIGNATURE_INVALID;
	else
		r = QES_ERR_CRYPTO;
 out:
	/* a failed verification leaves OpenSSL errors behind; do not leak them */
	if (r != 0)
		ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	qes_buf_free(conv);
	return r;
}
