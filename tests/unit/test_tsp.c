/*
 * test_tsp.c - unit tests for tsp.c: the TimeStampReq we send, and every
 * check on a TimeStampResp, against an in-process TSA that uses the test
 * PKI's TSA key (testpki.h): a good answer is accepted and returns the
 * token; an answer to another request (nonce, imprint), a refusal, an
 * answer signed by a certificate without the timeStamping EKU, one that
 * does not chain to the anchors, garbage, trailing bytes and oversize are
 * refused with the right code. Token parsing and verification too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/ts.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/sig.h"
#include "qes/tsp.h"
#include "testpki.h"

struct fx {
	char root[1024], foreign[1024];
	qes_tsp_config cfg;
	uint8_t digest[32];
};

static int
setup(void **state)
{
	static struct fx fx;

	memset(&fx, 0, sizeof(fx));
	if (testpki_path("root-ca.pem", fx.root, sizeof(fx.root)) == NULL ||
	    testpki_path("foreign-root.pem", fx.foreign, sizeof(fx.foreign)) == NULL) {
		*state = NULL;
		return 0;
	}
	fx.cfg.ca_file = fx.root;
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "document", 8, fx.digest), 0);
	*state = &fx;
	return 0;
}

#define NEED_PKI(fx) do { if ((fx) == NULL) { skip(); return; } } while (0)

static void
test_request_shape(void **state)
{
	struct fx *fx = *state;
	qes_buf *a = qes_buf_new(), *b = qes_buf_new();
	const unsigned char *p;
	TS_REQ *req;

	NEED_PKI(fx);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32,
	    "1.3.6.1.4.1.99999.1.1", a), 0);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, b), 0);
	p = qes_buf_data(a);
	req = d2i_TS_REQ(NULL, &p, (long)qes_buf_len(a));
	assert_non_null(req);
	assert_int_equal(TS_REQ_get_cert_req(req), 1);
	assert_non_null(TS_REQ_get_nonce(req));
	assert_non_null(TS_REQ_get_policy_id(req));
	assert_int_equal(ASN1_STRING_length(TS_MSG_IMPRINT_get_msg(
	    TS_REQ_get_msg_imprint(req))), 32);
	TS_REQ_free(req);
	/* fresh nonces: two requests differ */
	assert_true(qes_buf_len(a) != qes_buf_len(b) ||
	    memcmp(qes_buf_data(a), qes_buf_data(b), qes_buf_len(a)) != 0);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 31, NULL, a),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_tsp_request((qes_md)9, fx->digest, 32, NULL, a),
	    QES_ERR_UNSUPPORTED);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, "not an oid", a),
	    QES_ERR_INVALID_ARG);
	qes_buf_free(a);
	qes_buf_free(b);
}

static void
test_good_answer(void **state)
{
	struct fx *fx = *state;
	qes_buf *req = qes_buf_new(), *resp = qes_buf_new(), *tok = qes_buf_new(),
	    *certs = qes_buf_new();
	qes_tsp_token_info ti;
	char err[256];

	NEED_PKI(fx);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, req), 0);
	assert_int_equal(testpki_tsa_reply(qes_buf_data(req), qes_buf_len(req), NULL,
	    resp), 0);
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), 0);
	assert_true(qes_buf_len(tok) > 100);
	assert_int_equal(qes_tsp_token_parse(qes_buf_data(tok), qes_buf_len(tok), &ti), 0);
	assert_int_equal(ti.md, QES_MD_SHA256);
	assert_memory_equal(ti.imprint, fx->digest, 32);
	assert_string_equal(ti.policy_oid, "1.3.6.1.4.1.99999.1.1");
	assert_non_null(strstr(ti.tsa_subject, "QES Test Qualified TSU 1"));
	assert_true(ti.gen_time > 1700000000);
	assert_int_equal(qes_tsp_token_verify(&fx->cfg, qes_buf_data(tok),
	    qes_buf_len(tok), QES_MD_SHA256, fx->digest, 32, err, sizeof(err)), 0);
	/* the same token over another digest is refused */
	fx->digest[0] ^= 1;
	assert_int_equal(qes_tsp_token_verify(&fx->cfg, qes_buf_data(tok),
	    qes_buf_len(tok), QES_MD_SHA256, fx->digest, 32, err, sizeof(err)),
	    QES_ERR_TIMESTAMP);
	assert_non_null(strstr(err, "imprint"));
	fx->digest[0] ^= 1;
	assert_int_equal(qes_tsp_token_certs(qes_buf_data(tok), qes_buf_len(tok), certs), 0);
	assert_true(qes_buf_len(certs) > 300);
	qes_buf_free(certs);
	qes_buf_free(tok);
	qes_buf_free(resp);
	qes_buf_free(req);
}

/* an answer made for another request (other nonce, or other imprint) */
static void
test_other_request(void **state)
{
	struct fx *fx = *state;
	qes_buf *req = qes_buf_new(), *other = qes_buf_new(), *resp = qes_buf_new(),
	    *tok = qes_buf_new();
	uint8_t d2[32];
	char err[256];

	NEED_PKI(fx);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, req), 0);
	/* same imprint, fresh nonce */
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, other), 0);
	assert_int_equal(testpki_tsa_reply(qes_buf_data(other), qes_buf_len(other), NULL,
	    resp), 0);
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_TIMESTAMP);
	assert_non_null(strstr(err, "nonce"));
	assert_int_equal(qes_buf_len(tok), 0);
	/* other imprint, and the request's nonce forced into it */
	memcpy(d2, fx->digest, 32);
	d2[31] ^= 0x80;
	qes_buf_reset(other);
	qes_buf_reset(resp);
	{
		const unsigned char *p = qes_buf_data(req);
		TS_REQ *r1 = d2i_TS_REQ(NULL, &p, (long)qes_buf_len(req));
		TS_MSG_IMPRINT *imp = TS_REQ_get_msg_imprint(r1);
		unsigned char *der = NULL;
		int n;

		assert_non_null(r1);
		assert_int_equal(TS_MSG_IMPRINT_set_msg(imp, d2, 32), 1);
		n = i2d_TS_REQ(r1, &der);
		assert_true(n > 0);
		assert_int_equal(qes_buf_put(other, der, (size_t)n), 0);
		OPENSSL_free(der);
		TS_REQ_free(r1);
	}
	assert_int_equal(testpki_tsa_reply(qes_buf_data(other), qes_buf_len(other), NULL,
	    resp), 0);
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_TIMESTAMP);
	assert_non_null(strstr(err, "imprint"));
	qes_buf_free(tok);
	qes_buf_free(resp);
	qes_buf_free(other);
	qes_buf_free(req);
}

static void
test_untrusted_signers(void **state)
{
	struct fx *fx = *state;
	qes_buf *req = qes_buf_new(), *resp = qes_buf_new(), *tok = qes_buf_new();
	qes_tsp_config foreign;
	char err[256];

	NEED_PKI(fx);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, req), 0);
	assert_int_equal(testpki_tsa_reply(qes_buf_data(req), qes_buf_len(req), NULL,
	    resp), 0);
	/* anchors that do not include the TSA's root */
	foreign = fx->cfg;
	foreign.ca_file = fx->foreign;
	assert_int_equal(qes_tsp_check_response(&foreign, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_TIMESTAMP);
	/* no anchors at all */
	foreign.ca_file = NULL;
	assert_int_equal(qes_tsp_check_response(&foreign, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(tok), 0);
	qes_buf_free(tok);
	qes_buf_free(resp);
	qes_buf_free(req);
}

static void
test_malformed_answers(void **state)
{
	struct fx *fx = *state;
	qes_buf *req = qes_buf_new(), *resp = qes_buf_new(), *tok = qes_buf_new(),
	    *big = qes_buf_new();
	/* TimeStampResp { PKIStatusInfo { rejection(2) } } */
	static const uint8_t rejection[] = { 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02 };
	char err[256];

	NEED_PKI(fx);
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, req), 0);
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), rejection, sizeof(rejection), tok, err, sizeof(err)),
	    QES_ERR_TIMESTAMP);
	assert_non_null(strstr(err, "status 2"));
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), (const uint8_t *)"garbage", 7, tok, err, sizeof(err)),
	    QES_ERR_FORMAT);
	assert_int_equal(testpki_tsa_reply(qes_buf_data(req), qes_buf_len(req), NULL,
	    resp), 0);
	assert_int_equal(qes_buf_put_u8(resp, 0), 0);	/* trailing byte */
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_FORMAT);
	assert_int_equal(qes_buf_reserve(big, QES_TSP_MAX_RESPONSE_BYTES + 1), 0);
	while (qes_buf_len(big) <= QES_TSP_MAX_RESPONSE_BYTES)
		assert_int_equal(qes_buf_put_u8(big, 0x30), 0);
	assert_int_equal(qes_tsp_check_response(&fx->cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(big), qes_buf_len(big), tok, err,
	    sizeof(err)), QES_ERR_LIMIT);
	assert_int_equal(qes_buf_len(tok), 0);
	assert_int_equal(qes_tsp_token_parse((const uint8_t *)"x", 1,
	    &(qes_tsp_token_info){ 0 }), QES_ERR_FORMAT);
	qes_buf_free(big);
	qes_buf_free(tok);
	qes_buf_free(resp);
	qes_buf_free(req);
}

/* a TSA whose clock is off by more than the allowed skew */
static void
test_clock_skew(void **state)
{
	struct fx *fx = *state;
	qes_buf *req = qes_buf_new(), *resp = qes_buf_new(), *tok = qes_buf_new();
	qes_tsp_config cfg;
	char err[256];

	NEED_PKI(fx);
	cfg = fx->cfg;
	assert_int_equal(qes_tsp_request(QES_MD_SHA256, fx->digest, 32, NULL, req), 0);
	testpki_tsa_clock_offset_s = -3600;
	assert_int_equal(testpki_tsa_reply(qes_buf_data(req), qes_buf_len(req), NULL,
	    resp), 0);
	testpki_tsa_clock_offset_s = 0;
	assert_int_equal(qes_tsp_check_response(&cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), QES_ERR_TIMESTAMP);
	assert_non_null(strstr(err, "clock"));
	/* a wider window accepts it */
	cfg.max_skew_s = 2 * 3600;
	assert_int_equal(qes_tsp_check_response(&cfg, qes_buf_data(req),
	    qes_buf_len(req), qes_buf_data(resp), qes_buf_len(resp), tok, err,
	    sizeof(err)), 0);
	qes_buf_free(tok);
	qes_buf_free(resp);
	qes_buf_free(req);
}

static void
test_timestamper_hook(void **state)
{
	struct fx *fx = *state;
	qes_tsp_config cfg;
	qes_timestamper t;
	qes_buf *tok = qes_buf_new();
	char err[256];

	NEED_PKI(fx);
	cfg = fx->cfg;
	cfg.url = "http://127.0.0.1:1/tsa";	/* nothing listens there */
	cfg.fetch.connect_timeout_ms = 2000;
	t = qes_tsp_timestamper(&cfg);
	assert_ptr_equal(t.arg, &cfg);
	assert_int_equal(t.fn(t.arg, QES_MD_SHA256, fx->digest, 32, tok, err, sizeof(err)),
	    QES_ERR_FETCH);
	assert_non_null(strstr(err, "TSA request failed"));
	cfg.url = "file:///etc/passwd";
	assert_int_equal(t.fn(t.arg, QES_MD_SHA256, fx->digest, 32, tok, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(tok), 0);
	qes_buf_free(tok);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_shape),
		cmocka_unit_test(test_good_answer),
		cmocka_unit_test(test_other_request),
		cmocka_unit_test(test_untrusted_signers),
		cmocka_unit_test(test_malformed_answers),
		cmocka_unit_test(test_clock_skew),
		cmocka_unit_test(test_timestamper_hook),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
