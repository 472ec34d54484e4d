/*
 * fuzz_ocsp.c - libFuzzer target for revocation data from the network:
 * the bytes as an OCSPResponse through qes_ocsp_check_response() (status,
 * basic response, nonce, responder signature and authority, CertID lookup,
 * freshness) and as a CRL through qes_crl_check_der() (issuer, signature,
 * validity, serial lookup), for the certificates in fuzz_pki.h. The seeds
 * are the test responder's real answers and the issuing CA's real CRL, so
 * mutations reach the checks after the signatures.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fuzz_pki.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/revocation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qes_cert *
pem_cert(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	qes_cert *c = NULL;
	int n;

	if (x == NULL || (n = i2d_X509(x, &der)) <= 0 ||
	    qes_cert_from_der(der, (size_t)n, &c) != 0)
		abort();
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	return c;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static qes_cert *signer, *revoked, *issuer;
	qes_rev_config cfg;
	qes_rev_result res;
	char err[256];
	int r;

	if (issuer == NULL) {
		signer = pem_cert(FUZZ_SIGNER_PEM);
		revoked = pem_cert(FUZZ_REVOKED_PEM);
		issuer = pem_cert(FUZZ_ISSUER_PEM);
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.now = FUZZ_PKI_NOW;
	r = qes_ocsp_check_response(&cfg, signer, issuer, NULL, 0, data, size, &res,
	    err, sizeof(err));
	if (r == 0 && res.status != QES_REV_GOOD && res.status != QES_REV_REVOKED &&
	    res.status != QES_REV_UNKNOWN)
		abort();
	(void)qes_ocsp_check_response(&cfg, revoked, issuer, NULL, 0, data, size, &res,
	    err, sizeof(err));
	r = qes_crl_check_der(&cfg, revoked, issuer, data, size, &res, err, sizeof(err));
	if (r == 0 && res.source != QES_REV_SRC_CRL)
		abort();
	return 0;
}
