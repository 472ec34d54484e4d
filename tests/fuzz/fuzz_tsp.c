/*
 * fuzz_tsp.c - libFuzzer target for what a TSA sends back: a TimeStampResp
 * through qes_tsp_check_response() (status, token, nonce, imprint, policy,
 * signature and TSA certificate checks) for a fixed request, and the same
 * bytes as a TimeStampToken through qes_tsp_token_parse() and
 * qes_tsp_token_certs(). The seed corpus/tsp/good is a real answer of the
 * test TSA to FUZZ_TSA_REQUEST (fuzz_pki.h), so mutations get past the
 * nonce and imprint checks into the signature verification.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fuzz_pki.h"
#include "qes/buf.h"
#include "qes/err.h"
#include "qes/tsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509_STORE *
trust(void)
{
	static X509_STORE *store;
	BIO *bio;
	X509 *x;

	if (store != NULL)
		return store;
	if ((store = X509_STORE_new()) == NULL ||
	    (bio = BIO_new_mem_buf(FUZZ_ROOT_PEM, -1)) == NULL)
		abort();
	if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL ||
	    X509_STORE_add_cert(store, x) != 1)
		abort();
	X509_free(x);
	BIO_free(bio);
	return store;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_tsp_config cfg;
	qes_tsp_token_info info;
	qes_buf *out = qes_buf_new();
	char err[256];
	int r;

	if (out == NULL)
		abort();
	memset(&cfg, 0, sizeof(cfg));
	cfg.trust_store = trust();
	/* the seed's genTime is fixed: no clock check, so mutations reach the
	 * signature verification whenever the fuzzer runs */
	cfg.max_skew_s = (int64_t)100 * 366 * 24 * 3600;
	r = qes_tsp_check_response(&cfg, FUZZ_TSA_REQUEST, sizeof(FUZZ_TSA_REQUEST),
	    data, size, out, err, sizeof(err));
	if (r == 0 && qes_buf_len(out) == 0)
		abort();	/* success must yield a token */
	if (r != 0 && qes_buf_len(out) != 0)
		abort();	/* failure must not */
	if (r != 0 && strlen(err) >= sizeof(err))
		abort();
	qes_buf_reset(out);
	if (qes_tsp_token_parse(data, size, &info) == 0) {
		if (info.imprint_len > sizeof(info.imprint) ||
		    strlen(info.serial_hex) >= sizeof(info.serial_hex))
			abort();
	}
	(void)qes_tsp_token_certs(data, size, out);
	qes_buf_free(out);
	return 0;
}
