/*
 * test_revocation.c - unit tests for revocation.c against OCSP responses
 * made in-process with the test PKI's keys (OpenSSL's OCSP_basic_sign, the
 * code behind `openssl ocsp -index`) and the PKI's real CRLs: good, revoked
 * and unknown answers; the nonce; who may sign (the delegated responder,
 * the issuer itself, not any other certificate); freshness against a moved
 * clock; the CRL's issuer, signature and validity; the validation data
 * container and chain building.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/revocation.h"
#include "testpki.h"

struct fx {
	qes_cert *good, *revoked, *issuer, *root, *tsa, *foreign;
};

static struct fx fx_store;

static int
setup(void **state)
{
	struct fx *fx = &fx_store;

	fx->good = testpki_cert("qual-p256");
	fx->revoked = testpki_cert("revoked-p256");
	fx->issuer = testpki_cert("issuing-ca");
	fx->root = testpki_cert("root-ca");
	fx->tsa = testpki_cert("tsa");
	fx->foreign = testpki_cert("foreign-root");
	*state = fx->good != NULL && fx->revoked != NULL && fx->issuer != NULL &&
	    fx->root != NULL && fx->tsa != NULL && fx->foreign != NULL ? fx : NULL;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = &fx_store;

	(void)state;
	qes_cert_free(fx->good);
	qes_cert_free(fx->revoked);
	qes_cert_free(fx->issuer);
	qes_cert_free(fx->root);
	qes_cert_free(fx->tsa);
	qes_cert_free(fx->foreign);
	return 0;
}

#define NEED_PKI(fx) do { if ((fx) == NULL) { skip(); return; } } while (0)

enum { ST_GOOD, ST_REVOKED, ST_UNKNOWN };

/*
 * An OCSP response for cert_name (issued by issuing-ca) with status st,
 * signed by signer_name's key, thisUpdate = now + this_off, nextUpdate =
 * now + next_off, the nonce included when given.
 */
static void
make_ocsp(const char *cert_name, int st, const char *signer_name, long this_off,
    long next_off, const uint8_t *nonce, size_t nonce_len, qes_buf *out)
{
	X509 *cert = testpki_x509(cert_name), *issuer = testpki_x509("issuing-ca");
	X509 *signer = testpki_x509(signer_name);
	EVP_PKEY *key = testpki_key(signer_name);
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	OCSP_CERTID *id;
	OCSP_RESPONSE *resp;
	ASN1_TIME *thisupd, *nextupd, *revt;
	STACK_OF(X509) *chain = sk_X509_new_null();
	unsigned char *der = NULL;
	time_t now = time(NULL);
	int n;

	assert_non_null(cert);
	assert_non_null(issuer);
	assert_non_null(signer);
	assert_non_null(key);
	assert_non_null(bs);
	id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
	assert_non_null(id);
	thisupd = X509_time_adj_ex(NULL, 0, this_off, &now);
	nextupd = X509_time_adj_ex(NULL, 0, next_off, &now);
	revt = X509_time_adj_ex(NULL, -1, 0, &now);
	assert_non_null(OCSP_basic_add1_status(bs, id,
	    st == ST_GOOD ? V_OCSP_CERTSTATUS_GOOD :
	    st == ST_REVOKED ? V_OCSP_CERTSTATUS_REVOKED : V_OCSP_CERTSTATUS_UNKNOWN,
	    st == ST_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0,
	    st == ST_REVOKED ? revt : NULL, thisupd, nextupd));
	if (nonce != NULL)
		assert_int_equal(OCSP_basic_add1_nonce(bs, (unsigned char *)(uintptr_t)nonce,
		    (int)nonce_len), 1);
	assert_int_equal(OCSP_basic_sign(bs, signer, key, EVP_sha256(), chain, 0), 1);
	resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	assert_non_null(resp);
	n = i2d_OCSP_RESPONSE(resp, &der);
	assert_true(n > 0);
	assert_int_equal(qes_buf_put(out, der, (size_t)n), 0);
	OPENSSL_free(der);
	OCSP_RESPONSE_free(resp);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	ASN1_TIME_free(revt);
	OCSP_CERTID_free(id);
	OCSP_BASICRESP_free(bs);
	sk_X509_free(chain);
	EVP_PKEY_free(key);
	X509_free(signer);
	X509_free(issuer);
	X509_free(cert);
}

static int
check(struct fx *fx, const qes_cert *cert, const qes_buf *b, const uint8_t *nonce,
    size_t nlen, const qes_rev_config *cfg, qes_rev_result *res, char *err, size_t el)
{
	return qes_ocsp_check_response(cfg, cert, fx->issuer, nonce, nlen,
	    qes_buf_data(b), qes_buf_len(b), res, err, el);
}

static void
test_ocsp_statuses(void **state)
{
	struct fx *fx = *state;
	qes_buf *b = qes_buf_new();
	qes_rev_result res;
	char err[256];
	static const uint8_t nonce[16] = "0123456789abcdef";

	NEED_PKI(fx);
	make_ocsp("qual-p256", ST_GOOD, "ocsp", -60, 3600, nonce, 16, b);
	assert_int_equal(check(fx, fx->good, b, nonce, 16, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_GOOD);
	assert_int_equal(res.source, QES_REV_SRC_OCSP);
	assert_true(res.next_update > res.this_update);

	qes_buf_reset(b);
	make_ocsp("revoked-p256", ST_REVOKED, "ocsp", -60, 3600, NULL, 0, b);
	/* no nonce in the answer: accepted (responders may not support them) */
	assert_int_equal(check(fx, fx->revoked, b, nonce, 16, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_REVOKED);
	assert_int_equal(res.reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
	assert_true(res.revocation_time > 0);

	qes_buf_reset(b);
	make_ocsp("qual-p256", ST_UNKNOWN, "issuing-ca", -60, 3600, NULL, 0, b);
	/* signed by the issuer itself: allowed */
	assert_int_equal(check(fx, fx->good, b, NULL, 0, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_UNKNOWN);
	/* but it does not answer for another certificate */
	assert_int_equal(check(fx, fx->revoked, b, NULL, 0, NULL, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "does not answer"));
	qes_buf_free(b);
}

static void
test_ocsp_refusals(void **state)
{
	struct fx *fx = *state;
	qes_buf *b = qes_buf_new();
	qes_rev_result res;
	qes_rev_config cfg;
	char err[256];
	static const uint8_t nonce[16] = "0123456789abcdef", other[16] = "fedcba9876543210";
	/* OCSPResponse { responseStatus tryLater(3) } */
	static const uint8_t try_later[] = { 0x30, 0x03, 0x0a, 0x01, 0x03 };

	NEED_PKI(fx);
	make_ocsp("qual-p256", ST_GOOD, "ocsp", -60, 3600, other, 16, b);
	assert_int_equal(check(fx, fx->good, b, nonce, 16, NULL, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "nonce"));

	/* signed by a certificate the issuer did not make a responder */
	qes_buf_reset(b);
	make_ocsp("qual-p256", ST_GOOD, "qual-p384", -60, 3600, NULL, 0, b);
	assert_int_equal(check(fx, fx->good, b, NULL, 0, NULL, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);
	qes_buf_reset(b);
	make_ocsp("qual-p256", ST_GOOD, "tsa", -60, 3600, NULL, 0, b);
	assert_int_equal(check(fx, fx->good, b, NULL, 0, NULL, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);

	/* freshness */
	qes_buf_reset(b);
	make_ocsp("qual-p256", ST_GOOD, "ocsp", -60, 3600, NULL, 0, b);
	memset(&cfg, 0, sizeof(cfg));
	cfg.now = (int64_t)time(NULL) + 2 * 3600;	/* past nextUpdate */
	assert_int_equal(check(fx, fx->good, b, NULL, 0, &cfg, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "stale"));
	cfg.now = (int64_t)time(NULL) - 3600;		/* thisUpdate in the future */
	assert_int_equal(check(fx, fx->good, b, NULL, 0, &cfg, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "future"));
	qes_buf_reset(b);
	make_ocsp("qual-p256", ST_GOOD, "ocsp", -3 * 3600, 3600, NULL, 0, b);
	memset(&cfg, 0, sizeof(cfg));
	cfg.ocsp_max_age_s = 3600;			/* older than allowed */
	assert_int_equal(check(fx, fx->good, b, NULL, 0, &cfg, &res, err, sizeof(err)),
	    QES_ERR_REVOCATION);

	assert_int_equal(qes_ocsp_check_response(NULL, fx->good, fx->issuer, NULL, 0,
	    try_later, sizeof(try_later), &res, err, sizeof(err)), QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "trylater"));
	assert_int_equal(qes_ocsp_check_response(NULL, fx->good, fx->issuer, NULL, 0,
	    (const uint8_t *)"junk", 4, &res, err, sizeof(err)), QES_ERR_FORMAT);
	qes_buf_free(b);
}

static void
test_crl(void **state)
{
	struct fx *fx = *state;
	qes_buf *crl = testpki_file("issuing-ca.crl"), *root_crl = testpki_file("root.crl");
	qes_rev_result res;
	qes_rev_config cfg;
	char err[256];

	NEED_PKI(fx);
	assert_non_null(crl);
	assert_non_null(root_crl);
	assert_int_equal(qes_crl_check_der(NULL, fx->good, fx->issuer, qes_buf_data(crl),
	    qes_buf_len(crl), &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_GOOD);
	assert_int_equal(res.source, QES_REV_SRC_CRL);
	assert_int_equal(qes_crl_check_der(NULL, fx->revoked, fx->issuer, qes_buf_data(crl),
	    qes_buf_len(crl), &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_REVOKED);
	assert_int_equal(res.reason, 1);	/* keyCompromise */
	/* the root's CRL does not speak for the issuing CA's certificates */
	assert_int_equal(qes_crl_check_der(NULL, fx->good, fx->root, qes_buf_data(root_crl),
	    qes_buf_len(root_crl), &res, err, sizeof(err)), QES_ERR_REVOCATION);
	/* but for the TSA's */
	assert_int_equal(qes_crl_check_der(NULL, fx->tsa, fx->root, qes_buf_data(root_crl),
	    qes_buf_len(root_crl), &res, err, sizeof(err)), 0);
	assert_int_equal(res.status, QES_REV_GOOD);
	/* stale: 31 days on, past nextUpdate */
	memset(&cfg, 0, sizeof(cfg));
	cfg.now = (int64_t)time(NULL) + 31 * 24 * 3600;
	assert_int_equal(qes_crl_check_der(&cfg, fx->good, fx->issuer, qes_buf_data(crl),
	    qes_buf_len(crl), &res, err, sizeof(err)), QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "stale"));
	/* a flipped bit in the signature */
	qes_buf_mutable(crl)[qes_buf_len(crl) - 5] ^= 0x01;
	assert_int_equal(qes_crl_check_der(NULL, fx->good, fx->issuer, qes_buf_data(crl),
	    qes_buf_len(crl), &res, err, sizeof(err)), QES_ERR_REVOCATION);
	assert_non_null(strstr(err, "signature"));
	assert_int_equal(qes_crl_check_der(NULL, fx->good, fx->issuer,
	    (const uint8_t *)"\x30\x00", 2, &res, err, sizeof(err)), QES_ERR_FORMAT);
	qes_buf_free(root_crl);
	qes_buf_free(crl);
}

static void
test_urls_refused(void **state)
{
	struct fx *fx = *state;
	qes_rev_config cfg;
	qes_rev_result res;
	char err[256];

	NEED_PKI(fx);
	memset(&cfg, 0, sizeof(cfg));
	cfg.ocsp_url = "ldap://127.0.0.1/ocsp";
	assert_int_equal(qes_ocsp_check(&cfg, fx->good, fx->issuer, &res, NULL, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	cfg.crl_url = "file:///etc/passwd";
	assert_int_equal(qes_crl_check(&cfg, fx->good, fx->issuer, &res, NULL, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	/* the root has neither AIA nor CDP */
	memset(&cfg, 0, sizeof(cfg));
	assert_int_equal(qes_ocsp_check(&cfg, fx->root, fx->root, &res, NULL, err,
	    sizeof(err)), QES_ERR_NOT_FOUND);
	assert_int_equal(qes_crl_check(&cfg, fx->root, fx->root, &res, NULL, err,
	    sizeof(err)), QES_ERR_NOT_FOUND);
}

static void
test_vdata_and_chain(void **state)
{
	struct fx *fx = *state;
	qes_vdata *v = qes_vdata_new();
	const qes_ades_vdata *view;
	const qes_cert *pool[4], *chain[8];
	const uint8_t *der;
	uint8_t blob[4] = { 1, 2, 3, 4 };
	size_t len, n, i;

	NEED_PKI(fx);
	assert_non_null(v);
	der = qes_cert_der(fx->good, &len);
	assert_int_equal(qes_vdata_add_cert(v, der, len), 0);
	assert_int_equal(qes_vdata_add_cert(v, der, len), 0);	/* kept once */
	assert_int_equal(qes_vdata_add_crl(v, blob, 4), 0);
	assert_int_equal(qes_vdata_add_ocsp(v, blob, 0), QES_ERR_INVALID_ARG);
	view = qes_vdata_view(v);
	assert_int_equal(view->ncerts, 1);
	assert_int_equal(view->ncrls, 1);
	assert_int_equal(view->nocsps, 0);
	assert_memory_equal(view->crls[0].data, blob, 4);
	for (i = 0; i < 100; i++) {
		blob[0] = (uint8_t)i;
		if (qes_vdata_add_ocsp(v, blob, 4) != 0)
			break;
	}
	assert_int_equal(qes_vdata_add_ocsp(v, (const uint8_t *)"new!", 4), QES_ERR_LIMIT);
	qes_vdata_free(v);
	qes_vdata_free(NULL);

	pool[0] = fx->tsa;
	pool[1] = fx->root;
	pool[2] = fx->foreign;
	pool[3] = fx->issuer;
	assert_int_equal(qes_chain_build(fx->good, pool, 4, chain, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_ptr_equal(chain[1], fx->issuer);
	assert_ptr_equal(chain[2], fx->root);
	assert_int_equal(qes_chain_build(fx->tsa, pool, 4, chain, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(qes_chain_build(fx->good, pool, 4, chain, 2, &n), QES_ERR_LIMIT);
	assert_int_equal(qes_chain_build(fx->good, NULL, 0, chain, 8, &n), 0);
	assert_int_equal(n, 1);
	/* a root alone needs no revocation data */
	v = qes_vdata_new();
	assert_int_equal(qes_vdata_add_chain(v, NULL, &pool[1], 1, NULL, 0), 0);
	assert_int_equal(qes_vdata_view(v)->ncerts, 1);
	qes_vdata_free(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ocsp_statuses),
		cmocka_unit_test(test_ocsp_refusals),
		cmocka_unit_test(test_crl),
		cmocka_unit_test(test_urls_refused),
		cmocka_unit_test(test_vdata_and_chain),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
