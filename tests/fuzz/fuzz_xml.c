/*
 * fuzz_xml.c - libFuzzer target for the XML input path of XAdES: the input
 * goes through qes_xades_check_xml (libxml2 with our options, DOCTYPE
 * refusal, depth/node limits) and, when accepted, through a whole enveloped
 * qes_xades_prepare (ds:Signature appended to the root, the document
 * canonicalised without it, SignedProperties and SignedInfo canonicalised),
 * so every node type libxml2 can produce meets our C14N visibility code.
 * The signer is a P-256 certificate made once at start-up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/xades.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static qes_cert *signer;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	unsigned char *der = NULL;
	int len;

	(void)argc;
	(void)argv;
	if (k == NULL || x == NULL)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1,
	    -1, 0);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, k);
	if (X509_sign(x, k, EVP_sha256()) <= 0 || (len = i2d_X509(x, &der)) <= 0 ||
	    qes_cert_from_der(der, (size_t)len, &signer) != 0)
		abort();
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(k);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_xades_params p = { 0 };
	qes_xades_ctx *ctx = NULL;
	const uint8_t *dig;
	size_t dig_len;
	qes_md md;
	qes_sig_scheme scheme;
	char msg[256];
	int r;

	msg[0] = '\0';
	r = qes_xades_check_xml(data, size, msg, sizeof(msg));
	if (r != 0) {
		if (r != QES_ERR_XML_MALFORMED && r != QES_ERR_LIMIT && r != QES_ERR_ALLOC)
			abort();
		if (msg[0] == '\0')
			abort();
		return 0;
	}
	p.packaging = QES_XADES_ENVELOPED;
	p.level = QES_ADES_B_B;
	p.c14n = size > 0 && (data[0] & 1) ? QES_XADES_C14N_INCLUSIVE :
	    QES_XADES_C14N_EXCLUSIVE;
	p.doc = data;
	p.doc_len = size;
	p.signer = signer;
	p.scheme = QES_SIG_ECDSA;
	p.md = QES_MD_SHA256;
	r = qes_xades_prepare(&p, &ctx);
	if (r == 0) {
		if (qes_xades_tbs(ctx, &dig, &dig_len, &md, &scheme) != 0 || dig_len != 32)
			abort();
	} else if (r != QES_ERR_XML_MALFORMED && r != QES_ERR_LIMIT && r != QES_ERR_ALLOC)
		abort();
	qes_xades_free(ctx);
	return 0;
}
