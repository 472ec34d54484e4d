/*
 * test_jades.c - JAdES two-phase signing (src/lib/jades.c) with the test
 * PKI's software keys standing in for a token.
 *
 * The JWS is taken apart here with jansson and OpenSSL alone: header
 * members, x5t#S256 against the certificate, the signature over the
 * signing input, the sigTst token's imprint over the base64url signature
 * value. python3-jwcrypto judges the same outputs in the integration test
 * tests/integration/xades_jades.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/jades.h"
#include "testtsa.h"

static testades fx;
static const char payload[] = "{\"invoice\":\"2026-0042\",\"total\":\"29.97\"}";

static int
group_setup(void **state)
{
	(void)state;
	return testades_setup(&fx);
}

static int
group_teardown(void **state)
{
	(void)state;
	testades_teardown(&fx);
	return 0;
}

/* base64 or base64url (padded or not) of n characters */
static qes_buf *
b64dec(const char *s, size_t n)
{
	qes_buf *b = qes_buf_new();
	char *t = malloc(n + 4);
	unsigned char *out = malloc(n + 4);
	size_t i, len = n, pad = 0;
	int k;

	assert_non_null(t);
	assert_non_null(out);
	for (i = 0; i < n; i++)
		t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (len % 4 != 0)
		t[len++] = '=';
	t[len] = '\0';
	if (len >= 1 && t[len - 1] == '=')
		pad++;
	if (len >= 2 && t[len - 2] == '=')
		pad++;
	k = EVP_DecodeBlock(out, (unsigned char *)t, (int)len);
	assert_true(k >= 0);
	qes_buf_put(b, out, (size_t)k - pad);
	free(t);
	free(out);
	return b;
}

static json_t *
json_of_b64u(const char *s, size_t n)
{
	qes_buf *b = b64dec(s, n);
	json_t *j = json_loadb((const char *)qes_buf_data(b), qes_buf_len(b), 0, NULL);

	assert_non_null(j);
	qes_buf_free(b);
	return j;
}

/* the header checks every JAdES B-B signature must pass */
static void
assert_header(json_t *h, const testsigner *s, const char *alg, const char *typ)
{
	const uint8_t *der;
	size_t der_len;
	uint8_t fp[32];
	const char *v;
	qes_buf *b;
	json_t *x5c, *crit;

	assert_string_equal(json_string_value(json_object_get(h, "alg")), alg);
	assert_string_equal(json_string_value(json_object_get(h, "typ")), typ);
	der = qes_cert_der(s->cert, &der_len);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, der, der_len, fp), 0);
	v = json_string_value(json_object_get(h, "x5t#S256"));
	assert_non_null(v);
	assert_null(strchr(v, '='));
	b = b64dec(v, strlen(v));
	assert_int_equal(qes_buf_len(b), 32);
	assert_memory_equal(qes_buf_data(b), fp, 32);
	qes_buf_free(b);
	x5c = json_object_get(h, "x5c");
	assert_true(json_is_array(x5c));
	assert_int_equal(json_array_size(x5c), 2);
	v = json_string_value(json_array_get(x5c, 0));
	b = b64dec(v, strlen(v));
	assert_int_equal(qes_buf_len(b), der_len);
	assert_memory_equal(qes_buf_data(b), der, der_len);
	qes_buf_free(b);
	v = json_string_value(json_object_get(h, "sigT"));
	assert_non_null(v);
	assert_int_equal(strlen(v), 20);
	assert_true(v[4] == '-' && v[10] == 'T' && v[19] == 'Z');
	crit = json_object_get(h, "crit");
	assert_int_equal(json_array_size(crit), 1);
	assert_string_equal(json_string_value(json_array_get(crit, 0)), "sigT");
}

static void
assert_sig(const testsigner *s, const char *input, size_t input_len, const char *sig64)
{
	uint8_t dig[QES_MD_MAX_LEN];
	qes_buf *sig = b64dec(sig64, strlen(sig64));

	if (s->scheme == QES_SIG_ECDSA)
		assert_int_equal(qes_buf_len(sig),
		    2 * (((size_t)EVP_PKEY_get_bits(s->key) + 7) / 8));
	assert_int_equal(qes_md_digest(s->md, input, input_len, dig), 0);
	assert_int_equal(qes_cert_verify_digest(s->cert, s->scheme, s->md, dig,
	    qes_md_len(s->md), qes_buf_data(sig), qes_buf_len(sig)), 0);
	qes_buf_free(sig);
}

static int
sign(const testsigner *s, qes_jades_params *p, int raw, qes_buf *out)
{
	qes_jades_ctx *ctx = NULL;
	const uint8_t *dig;
	size_t dig_len;
	qes_md md;
	qes_sig_scheme scheme;
	qes_buf *sig = qes_buf_new();
	int r;

	p->signer = s->cert;
	p->scheme = s->scheme;
	p->md = s->md;
	if (p->chain == NULL) {
		static qes_ades_blob chain;

		chain = (qes_ades_blob){ qes_buf_data(fx.issuing_der), qes_buf_len(fx.issuing_der) };
		p->chain = &chain;
		p->nchain = 1;
	}
	if ((r = qes_jades_prepare(p, &ctx)) != 0)
		goto out;
	assert_int_equal(qes_jades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
	assert_int_equal(testtsa_sign(s->key, scheme, md, dig, dig_len, raw, sig), 0);
	r = qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out);
out:
	if (r != 0)
		fprintf(stderr, "jades: %s (%s)\n", qes_jades_errmsg(ctx), qes_errname(r));
	qes_jades_free(ctx);
	qes_buf_free(sig);
	return r;
}

static void
compact_case(const char *name, qes_sig_scheme scheme, qes_md md, const char *alg,
    int detached)
{
	testsigner s;
	qes_jades_params p = { 0 };
	qes_buf *out = qes_buf_new(), *pl;
	const char *jws, *dot1, *dot2;
	json_t *h;

	assert_int_equal(testsigner_load(&s, fx.pki, name, scheme, md), 0);
	p.serialization = QES_JADES_COMPACT;
	p.level = QES_ADES_B_B;
	p.payload = (const uint8_t *)payload;
	p.payload_len = strlen(payload);
	p.cty = "application/json";
	p.detached = detached;
	assert_int_equal(sign(&s, &p, 0, out), 0);
	qes_buf_cstr(out, &jws);
	dot1 = strchr(jws, '.');
	assert_non_null(dot1);
	dot2 = strchr(dot1 + 1, '.');
	assert_non_null(dot2);
	assert_null(strchr(dot2 + 1, '.'));
	h = json_of_b64u(jws, (size_t)(dot1 - jws));
	assert_header(h, &s, alg, "jose");
	assert_string_equal(json_string_value(json_object_get(h, "cty")), "application/json");
	json_decref(h);
	if (detached) {
		/* RFC 7515 appendix F: signed as attached, then left out */
		qes_buf *input = qes_buf_new();
		qes_buf *e = qes_buf_new();

		assert_ptr_equal(dot2, dot1 + 1);
		qes_buf_put(input, jws, (size_t)(dot1 - jws) + 1);
		{
			/* BASE64URL(payload) the long way round */
			unsigned char enc[256];
			int n = EVP_EncodeBlock(enc, (const unsigned char *)payload,
			    (int)strlen(payload)), i;

			for (i = 0; i < n; i++)
				if (enc[i] != '=')
					qes_buf_put_u8(e, enc[i] == '+' ? '-' :
					    enc[i] == '/' ? '_' : enc[i]);
		}
		qes_buf_put(input, qes_buf_data(e), qes_buf_len(e));
		assert_sig(&s, (const char *)qes_buf_data(input), qes_buf_len(input), dot2 + 1);
		qes_buf_free(input);
		qes_buf_free(e);
	} else {
		pl = b64dec(dot1 + 1, (size_t)(dot2 - dot1 - 1));
		assert_int_equal(qes_buf_len(pl), strlen(payload));
		assert_memory_equal(qes_buf_data(pl), payload, strlen(payload));
		qes_buf_free(pl);
		assert_sig(&s, jws, (size_t)(dot2 - jws), dot2 + 1);
	}
	qes_buf_free(out);
	testsigner_free(&s);
}

static void
test_compact(void **state)
{
	(void)state;
	compact_case("qual-rsa2048", QES_SIG_RSA_PKCS1, QES_MD_SHA256, "RS256", 0);
	compact_case("qual-rsa3072", QES_SIG_RSA_PKCS1, QES_MD_SHA512, "RS512", 0);
	compact_case("qual-rsa2048", QES_SIG_RSA_PSS, QES_MD_SHA256, "PS256", 0);
	compact_case("qual-rsa3072", QES_SIG_RSA_PSS, QES_MD_SHA384, "PS384", 1);
	compact_case("qual-p256", QES_SIG_ECDSA, QES_MD_SHA256, "ES256", 0);
	compact_case("qual-p384", QES_SIG_ECDSA, QES_MD_SHA384, "ES384", 1);
}

/* the decoded etsiU element i, which must be {name: ...}; returns the value (owned by *holder) */
static json_t *
etsiu_get(json_t *jws, size_t i, const char *name, json_t **holder)
{
	json_t *etsiu = json_object_get(json_object_get(jws, "header"), "etsiU");
	const char *v = json_string_value(json_array_get(etsiu, i));

	assert_non_null(v);
	*holder = json_of_b64u(v, strlen(v));
	assert_int_equal(json_object_size(*holder), 1);
	assert_non_null(json_object_get(*holder, name));
	return json_object_get(*holder, name);
}

static void
test_json_levels(void **state)
{
	testsigner s;
	qes_jades_params p = { 0 };
	qes_timestamper ts = { testtsa_stamp, &fx.tsa };
	qes_ades_blob certs[1], crls[1];
	qes_ades_vdata vd, tvd;
	qes_buf *out = qes_buf_new(), *tok;
	json_t *jws, *h, *holder, *v;
	const char *sig64, *val;
	uint8_t want[QES_MD_MAX_LEN];
	const unsigned char *pp;
	PKCS7 *p7;
	TS_TST_INFO *ti;
	ASN1_OCTET_STRING *os;

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256), 0);
	p.serialization = QES_JADES_JSON;
	p.payload = (const uint8_t *)payload;
	p.payload_len = strlen(payload);
	p.tsa = &ts;

	/* B-B, flattened JSON, detached: no payload member */
	p.level = QES_ADES_B_B;
	p.detached = 1;
	assert_int_equal(sign(&s, &p, 1, out), 0);
	jws = json_loadb((const char *)qes_buf_data(out), qes_buf_len(out), 0, NULL);
	assert_non_null(jws);
	assert_null(json_object_get(jws, "payload"));
	assert_null(json_object_get(jws, "header"));
	val = json_string_value(json_object_get(jws, "protected"));
	h = json_of_b64u(val, strlen(val));
	assert_header(h, &s, "ES256", "jose+json");
	json_decref(h);
	json_decref(jws);

	/* B-T: sigTst over the base64url signature value */
	p.detached = 0;
	p.level = QES_ADES_B_T;
	qes_buf_reset(out);
	fx.tsa.calls = 0;
	assert_int_equal(sign(&s, &p, 1, out), 0);
	assert_int_equal(fx.tsa.calls, 1);
	jws = json_loadb((const char *)qes_buf_data(out), qes_buf_len(out), 0, NULL);
	assert_non_null(jws);
	sig64 = json_string_value(json_object_get(jws, "signature"));
	assert_int_equal(qes_md_digest(QES_MD_SHA256, sig64, strlen(sig64), want), 0);
	assert_memory_equal(fx.tsa.last_imprint, want, 32);
	v = etsiu_get(jws, 0, "sigTst", &holder);
	val = json_string_value(json_object_get(json_array_get(json_object_get(v,
	    "tstTokens"), 0), "val"));
	assert_non_null(val);
	tok = b64dec(val, strlen(val));
	pp = qes_buf_data(tok);
	assert_non_null(p7 = d2i_PKCS7(NULL, &pp, (long)qes_buf_len(tok)));
	assert_non_null(ti = PKCS7_to_TS_TST_INFO(p7));
	os = TS_MSG_IMPRINT_get_msg(TS_TST_INFO_get_msg_imprint(ti));
	assert_int_equal(ASN1_STRING_length(os), 32);
	assert_memory_equal(ASN1_STRING_get0_data(os), want, 32);
	TS_TST_INFO_free(ti);
	PKCS7_free(p7);
	qes_buf_free(tok);
	json_decref(holder);
	{
		/* the signature still covers protected '.' payload */
		qes_buf *in = qes_buf_new();

		qes_buf_put_str(in, json_string_value(json_object_get(jws, "protected")));
		qes_buf_put_u8(in, '.');
		qes_buf_put_str(in, json_string_value(json_object_get(jws, "payload")));
		assert_sig(&s, (const char *)qes_buf_data(in), qes_buf_len(in), sig64);
		qes_buf_free(in);
	}
	json_decref(jws);

	/* B-LT: xVals, rVals, tstVD after sigTst */
	certs[0] = (qes_ades_blob){ qes_buf_data(fx.issuing_der), qes_buf_len(fx.issuing_der) };
	crls[0] = (qes_ades_blob){ qes_buf_data(fx.crl_der), qes_buf_len(fx.crl_der) };
	vd = (qes_ades_vdata){ certs, 1, NULL, 0, crls, 1 };
	tvd = (qes_ades_vdata){ certs, 1, NULL, 0, NULL, 0 };
	p.vdata = &vd;
	p.tsa_vdata = &tvd;
	p.level = QES_ADES_B_LT;
	qes_buf_reset(out);
	assert_int_equal(sign(&s, &p, 0, out), 0);
	jws = json_loadb((const char *)qes_buf_data(out), qes_buf_len(out), 0, NULL);
	assert_non_null(jws);
	assert_int_equal(json_array_size(json_object_get(json_object_get(jws, "header"),
	    "etsiU")), 4);
	v = etsiu_get(jws, 1, "xVals", &holder);
	val = json_string_value(json_object_get(json_object_get(json_array_get(v, 0),
	    "x509Cert"), "val"));
	tok = b64dec(val, strlen(val));
	assert_int_equal(qes_buf_len(tok), qes_buf_len(fx.issuing_der));
	assert_memory_equal(qes_buf_data(tok), qes_buf_data(fx.issuing_der), qes_buf_len(tok));
	qes_buf_free(tok);
	json_decref(holder);
	v = etsiu_get(jws, 2, "rVals", &holder);
	val = json_string_value(json_object_get(json_array_get(json_object_get(v, "crlVals"),
	    0), "val"));
	tok = b64dec(val, strlen(val));
	assert_int_equal(qes_buf_len(tok), qes_buf_len(fx.crl_der));
	qes_buf_free(tok);
	assert_null(json_object_get(v, "ocspVals"));
	json_decref(holder);
	v = etsiu_get(jws, 3, "tstVD", &holder);
	assert_non_null(json_object_get(v, "xVals"));
	json_decref(holder);
	json_decref(jws);

	qes_buf_free(out);
	testsigner_free(&s);
}

static void
test_refusals(void **state)
{
	testsigner s, rsa;
	qes_jades_params p = { 0 };
	qes_jades_ctx *ctx = NULL;
	qes_timestamper ts = { testtsa_stamp, &fx.tsa };
	qes_buf *sig = qes_buf_new(), *out = qes_buf_new();
	const uint8_t *dig;
	size_t dig_len;
	qes_md md;
	qes_sig_scheme scheme;
	uint8_t *m;

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256), 0);
	assert_int_equal(testsigner_load(&rsa, fx.pki, "qual-rsa2048", QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256), 0);
	p.serialization = QES_JADES_COMPACT;
	p.level = QES_ADES_B_B;
	p.payload = (const uint8_t *)payload;
	p.payload_len = strlen(payload);
	p.signer = s.cert;
	p.scheme = QES_SIG_ECDSA;

	/* ES384 is P-384 only */
	p.md = QES_MD_SHA384;
	assert_int_equal(qes_jades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_jades_errmsg(ctx), "ES256 is P-256"));
	qes_jades_free(ctx);
	p.md = QES_MD_SHA256;
	/* compact cannot carry B-T; B-LTA is not produced */
	p.level = QES_ADES_B_T;
	p.tsa = &ts;
	assert_int_equal(qes_jades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_jades_errmsg(ctx), "needs JSON"));
	qes_jades_free(ctx);
	p.serialization = QES_JADES_JSON;
	p.level = QES_ADES_B_LTA;
	assert_int_equal(qes_jades_prepare(&p, &ctx), QES_ERR_UNSUPPORTED);
	qes_jades_free(ctx);
	/* B-T without a TSA */
	p.level = QES_ADES_B_T;
	p.tsa = NULL;
	assert_int_equal(qes_jades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	qes_jades_free(ctx);

	/* a wrong value is refused; a TSA failure may be retried */
	p.tsa = &ts;
	assert_int_equal(qes_jades_prepare(&p, &ctx), 0);
	assert_int_equal(qes_jades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
	assert_int_equal(testtsa_sign(s.key, scheme, md, dig, dig_len, 1, sig), 0);
	m = qes_buf_mutable(sig);
	m[5] ^= 0x40;
	assert_int_equal(qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_SIGNATURE_INVALID);
	m[5] ^= 0x40;
	fx.tsa.fail = 1;
	assert_int_equal(qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_TIMESTAMP);
	fx.tsa.fail = 0;
	assert_int_equal(qes_buf_len(out), 0);
	assert_int_equal(qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out), 0);
	assert_true(qes_buf_len(out) > 0);
	assert_int_equal(qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_INVALID_ARG);
	qes_jades_free(ctx);
	/* another key's value */
	qes_buf_reset(sig);
	p.level = QES_ADES_B_B;
	p.signer = rsa.cert;
	p.scheme = QES_SIG_RSA_PKCS1;
	assert_int_equal(qes_jades_prepare(&p, &ctx), 0);
	assert_int_equal(qes_jades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
	assert_int_equal(testtsa_sign(s.key, QES_SIG_ECDSA, md, dig, dig_len, 0, sig), 0);
	assert_int_equal(qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_SIGNATURE_INVALID);
	qes_jades_free(ctx);

	qes_buf_free(sig);
	qes_buf_free(out);
	testsigner_free(&s);
	testsigner_free(&rsa);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_json_levels),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
