/*
 * cert.h - X.509 certificates as qes sees them: who, until when, which key,
 * and whether eIDAS calls it a qualified signing certificate.
 *
 * Classification (first match wins):
 *   expired / not_yet_valid  validity does not cover "now"
 *   qualified                keyUsage nonRepudiation, and qcStatements with
 *                            QcCompliance, QcSSCD and (QcType esign or no QcType)
 *   advanced                 keyUsage nonRepudiation without the full set above
 *                            (e.g. a qualified certificate whose key is not on a
 *                            QSCD, or a non-qualified signing certificate)
 *   authentication           anything else (digitalSignature only, TLS client, ...)
 * eSeal certificates (QcType eseal) are "advanced" here: they are not the
 * signature of a natural person.
 */
#ifndef QES_CERT_H
#define QES_CERT_H

#include <stddef.h>
#include <stdint.h>

#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qes_key_type {
	QES_KEY_UNKNOWN = 0,
	QES_KEY_RSA = 1,
	QES_KEY_EC = 2,
} qes_key_type;

typedef enum qes_cert_class {
	QES_CERT_QUALIFIED = 1,
	QES_CERT_ADVANCED = 2,
	QES_CERT_AUTH_ONLY = 3,
	QES_CERT_EXPIRED = 4,
	QES_CERT_NOT_YET_VALID = 5,
} qes_cert_class;

/* keyUsage bits, same values as X.509's KeyUsage bit string as OpenSSL reports it */
#define QES_KU_DIGITAL_SIGNATURE 0x0080u
#define QES_KU_NON_REPUDIATION   0x0040u
#define QES_KU_KEY_ENCIPHERMENT  0x0020u
#define QES_KU_DATA_ENCIPHERMENT 0x0010u
#define QES_KU_KEY_AGREEMENT     0x0008u
#define QES_KU_KEY_CERT_SIGN     0x0004u
#define QES_KU_CRL_SIGN          0x0002u

/* qcStatements (ETSI EN 319 412-5) */
#define QES_QC_COMPLIANCE  0x01u	/* 0.4.0.1862.1.1 */
#define QES_QC_SSCD        0x02u	/* 0.4.0.1862.1.4 */
#define QES_QC_TYPE_ESIGN  0x04u	/* 0.4.0.1862.1.6.1 */
#define QES_QC_TYPE_ESEAL  0x08u	/* 0.4.0.1862.1.6.2 */
#define QES_QC_TYPE_WEB    0x10u	/* 0.4.0.1862.1.6.3 */
#define QES_QC_PRESENT     0x80u	/* the extension exists at all */

/* certificatePolicies (ETSI EN 319 411-2) */
#define QES_POLICY_QCP_N       0x01u	/* 0.4.0.194112.1.0 */
#define QES_POLICY_QCP_L       0x02u	/* 0.4.0.194112.1.1 */
#define QES_POLICY_QCP_N_QSCD  0x04u	/* 0.4.0.194112.1.2 */
#define QES_POLICY_QCP_L_QSCD  0x08u	/* 0.4.0.194112.1.3 */

typedef struct qes_cert_info {
	const char *subject;		/* RFC 2253 string */
	const char *subject_cn;		/* commonName, "" when absent */
	const char *issuer;		/* RFC 2253 string */
	const char *serial_hex;		/* lower-case hex, no leading zeros */
	int64_t not_before;		/* seconds since the epoch, UTC */
	int64_t not_after;
	qes_key_type key_type;
	unsigned key_bits;		/* modulus bits or curve order bits */
	const char *curve;		/* "P-256", "P-384", "P-521", "" for RSA */
	int has_key_usage;
	unsigned key_usage;		/* QES_KU_* */
	unsigned qc;			/* QES_QC_* */
	unsigned policies;		/* QES_POLICY_* */
	const char *sha256_hex;		/* fingerprint of the DER */
} qes_cert_info;

typedef struct qes_cert qes_cert;

/* Parse DER (at most 64 KiB). QES_ERR_FORMAT on anything malformed. */
int qes_cert_from_der(const uint8_t *der, size_t len, qes_cert **out);
/* Read a PEM or DER certificate file. */
int qes_cert_from_file(const char *path, qes_cert **out);
void qes_cert_free(qes_cert *c);

/* Borrowed; valid until qes_cert_free(). */
const qes_cert_info *qes_cert_get_info(const qes_cert *c);
const uint8_t *qes_cert_der(const qes_cert *c, size_t *len);

qes_cert_class qes_cert_classify(const qes_cert *c, int64_t now);
/* "qualified", "advanced", "authentication", "expired", "not_yet_valid" */
const char *qes_cert_class_name(qes_cert_class cls);

/*
 * Verify a signature value over a digest with the certificate's public key.
 * RSA: sig is the raw value; ECDSA: sig is DER or raw r||s (both accepted).
 * 0 when valid, QES_ERR_SIGNATURE_INVALID when not.
 */
int qes_cert_verify_digest(const qes_cert *c, qes_sig_scheme scheme, qes_md md,
    const uint8_t *digest, size_t digest_len, const uint8_t *sig, size_t sig_len);

/* The schemes the certificate's key can produce, as a bit set of (1 << qes_sig_scheme). */
unsigned qes_cert_schemes(const qes_cert *c);

#ifdef __cplusplus
}
#endif
#endif
