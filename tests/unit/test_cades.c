/*
 * test_cades.c - unit tests for cades.c, cades_levels.c and cms.c with the
 * test PKI's software keys: the two phases for each signature scheme (the
 * value checked at finish, raw and DER ECDSA), the signed attributes (DER
 * order, signing-time present/omitted/after 2049, signing-certificate-v2),
 * argument checks, a file changed between prepare and finish, B-T through
 * a timestamper hook (an in-process TSA), B-LT validation data (version 5,
 * no duplicates), the report and integrity check on tampered input, and a
 * signer named by subjectKeyIdentifier (openssl cms -sign -keyid).
 * Independent validation by OpenSSL's tools is in tests/integration/cades.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cert_priv.h"
#include "cms_priv.h"
#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/err.h"
#include "qes/revocation.h"
#include "qes/sig.h"
#include "qes/tsp.h"
#include "testpki.h"

#define NEED_PKI(s) do { if ((s) == NULL) { skip(); return; } } while (0)

struct signer {
	const char *name;
	qes_sig_scheme scheme;
	qes_md md;
	qes_cert *cert;
	EVP_PKEY *key;
};

struct fx {
	struct signer s[4];
	qes_cert *issuer, *root;
	char root_path[1024];
};

static struct fx fxs;

static int
setup(void **state)
{
	static const struct { const char *n; qes_sig_scheme sc; qes_md md; } list[] = {
		{ "qual-rsa2048", QES_SIG_RSA_PKCS1, QES_MD_SHA256 },
		{ "qual-rsa2048", QES_SIG_RSA_PSS, QES_MD_SHA256 },
		{ "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256 },
		{ "qual-p384", QES_SIG_ECDSA, QES_MD_SHA384 },
	};
	size_t i;

	*state = NULL;
	if (testpki_path("root-ca.pem", fxs.root_path, sizeof(fxs.root_path)) == NULL)
		return 0;
	for (i = 0; i < 4; i++) {
		fxs.s[i].name = list[i].n;
		fxs.s[i].scheme = list[i].sc;
		fxs.s[i].md = list[i].md;
		if ((fxs.s[i].cert = testpki_cert(list[i].n)) == NULL ||
		    (fxs.s[i].key = testpki_key(list[i].n)) == NULL)
			return -1;
	}
	if ((fxs.issuer = testpki_cert("issuing-ca")) == NULL ||
	    (fxs.root = testpki_cert("root-ca")) == NULL)
		return -1;
	*state = &fxs;
	return 0;
}

static int
teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		qes_cert_free(fxs.s[i].cert);
		EVP_PKEY_free(fxs.s[i].key);
	}
	qes_cert_free(fxs.issuer);
	qes_cert_free(fxs.root);
	return 0;
}

static void
soft_sign(const struct signer *s, const uint8_t *dg, size_t dlen, qes_buf *out)
{
	const EVP_MD *evp = s->md == QES_MD_SHA384 ? EVP_sha384() : EVP_sha256();
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(s->key, NULL);
	uint8_t sig[1024];
	size_t slen = sizeof(sig);

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, evp), 1);
	if (s->scheme == QES_SIG_RSA_PSS) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)dlen), 1);
	}
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &slen, dg, dlen), 1);
	assert_int_equal(qes_buf_put(out, sig, slen), 0);
	EVP_PKEY_CTX_free(ctx);
}

static const uint8_t doc[] = "Kaufvertrag 2026-0815: 1 Stk. Fahrrad, EUR 420,-";

/* prepare + sign + finish; returns the CMS */
static qes_buf *
make(struct fx *fx, const struct signer *s, int enveloping, int omit_time,
    int64_t when)
{
	const qes_cert *chain[1] = { fx->issuer };
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new(), *cms = qes_buf_new();
	const uint8_t *tbs;
	size_t len;

	memset(&p, 0, sizeof(p));
	p.signer = s->cert;
	p.chain = chain;
	p.nchain = 1;
	p.md = s->md;
	p.scheme = s->scheme;
	p.enveloping = enveloping;
	p.content = doc;
	p.content_len = sizeof(doc) - 1;
	p.omit_signing_time = omit_time;
	p.signing_time = when;
	assert_int_equal(qes_cades_prepare(&p, &ctx), 0);
	assert_int_equal(qes_cades_md(ctx), s->md);
	assert_int_equal(qes_cades_scheme(ctx), s->scheme);
	tbs = qes_cades_tbs(ctx, &len);
	assert_int_equal(len, qes_md_len(s->md));
	soft_sign(s, tbs, len, sig);
	assert_int_equal(qes_cades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), cms), 0);
	qes_cades_free(ctx);
	qes_buf_free(sig);
	return cms;
}

/* OpenSSL's own CMS verifier, with the test root as anchor */
static int
openssl_verify(struct fx *fx, const qes_buf *cms, const uint8_t *content, size_t clen)
{
	const unsigned char *p = qes_buf_data(cms);
	CMS_ContentInfo *ci = d2i_CMS_ContentInfo(NULL, &p, (long)qes_buf_len(cms));
	X509_STORE *st = X509_STORE_new();
	X509 *issuer = testpki_x509("issuing-ca");
	BIO *in = content != NULL ? BIO_new_mem_buf(content, (int)clen) : NULL;
	BIO *out = BIO_new(BIO_s_mem());
	int ok;

	assert_non_null(ci);
	assert_int_equal(X509_STORE_load_file(st, fx->root_path), 1);
	assert_non_null(issuer);
	/* OpenSSL 3.0's CMS_verify builds chains only from the CMS's own
	 * certificates: for a CMS without its chain the issuing CA is put in
	 * the store (the root is still what the chain must end at) */
	assert_int_equal(X509_STORE_add_cert(st, issuer), 1);
	ok = CMS_verify(ci, NULL, st, in, out, CMS_BINARY) == 1;
	X509_free(issuer);
	BIO_free(out);
	BIO_free(in);
	X509_STORE_free(st);
	CMS_ContentInfo_free(ci);
	return ok;
}

static void
test_round_trip(void **state)
{
	struct fx *fx = *state;
	qes_cades_report rep;
	size_t i;
	int env;

	NEED_PKI(fx);
	for (i = 0; i < 4; i++) {
		for (env = 0; env <= 1; env++) {
			qes_buf *cms = make(fx, &fx->s[i], env, 0, 0);

			assert_true(openssl_verify(fx, cms, env ? NULL : doc,
			    sizeof(doc) - 1));
			assert_int_equal(qes_cades_inspect(qes_buf_data(cms),
			    qes_buf_len(cms), &rep), 0);
			assert_int_equal(rep.enveloping, env);
			assert_int_equal(rep.md, fx->s[i].md);
			assert_int_equal(rep.scheme, fx->s[i].scheme);
			assert_true(rep.signer_found);
			assert_true(rep.signature_ok);
			assert_true(rep.has_content_type && rep.has_message_digest &&
			    rep.has_signing_time && rep.has_signing_cert_v2);
			assert_int_equal(rep.ncerts, 2);
			assert_int_equal(rep.level, QES_ADES_B_B);
			assert_int_equal(qes_cades_verify_integrity(qes_buf_data(cms),
			    qes_buf_len(cms), doc, sizeof(doc) - 1, 0), 0);
			assert_int_equal(qes_cades_verify_integrity(qes_buf_data(cms),
			    qes_buf_len(cms), doc, sizeof(doc) - 2, 0),
			    env ? 0 : QES_ERR_SIGNATURE_INVALID);
			qes_buf_free(cms);
		}
	}
}

static void
test_wrong_value_refused(void **state)
{
	struct fx *fx = *state;
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new(), *cms = qes_buf_new(), *raw = qes_buf_new();
	const uint8_t *tbs;
	size_t len;

	NEED_PKI(fx);
	memset(&p, 0, sizeof(p));
	p.signer = fx->s[2].cert;
	p.md = QES_MD_SHA256;
	p.scheme = QES_SIG_ECDSA;
	p.content = doc;
	p.content_len = 10;
	assert_int_equal(qes_cades_prepare(&p, &ctx), 0);
	tbs = qes_cades_tbs(ctx, &len);
	/* another key's signature over the right digest */
	soft_sign(&(struct signer){ .key = fx->s[3].key, .md = QES_MD_SHA256,
	    .scheme = QES_SIG_ECDSA }, tbs, len, sig);
	assert_int_equal(qes_buf_put_u8(cms, 0x42), 0);
	assert_int_equal(qes_cades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), cms),
	    QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_buf_len(cms), 1);	/* output untouched */
	/* the right one, as raw r||s, is accepted and stored as DER */
	qes_buf_reset(sig);
	soft_sign(&fx->s[2], tbs, len, sig);
	assert_int_equal(qes_ecdsa_der_to_raw(qes_buf_data(sig), qes_buf_len(sig), 32, raw), 0);
	qes_buf_reset(cms);
	assert_int_equal(qes_cades_finish(ctx, qes_buf_data(raw), qes_buf_len(raw), cms), 0);
	assert_true(openssl_verify(fx, cms, doc, 10));
	/* finish once */
	assert_int_equal(qes_cades_finish(ctx, qes_buf_data(raw), qes_buf_len(raw), cms),
	    QES_ERR_INVALID_ARG);
	qes_cades_free(ctx);
	qes_cades_free(NULL);
	qes_buf_free(raw);
	qes_buf_free(cms);
	qes_buf_free(sig);
}

static void
test_bad_params(void **state)
{
	struct fx *fx = *state;
	const qes_cert *chain[QES_CADES_MAX_CHAIN + 1];
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	uint8_t dg[32] = { 0 };
	size_t i;

	NEED_PKI(fx);
	memset(&p, 0, sizeof(p));
	p.signer = fx->s[2].cert;
	p.md = QES_MD_SHA256;
	p.scheme = QES_SIG_ECDSA;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);	/* no content */
	p.content = doc;
	p.content_len = 3;
	p.content_digest = dg;
	p.content_digest_len = 32;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);	/* two */
	p.content = NULL;
	p.content_len = 0;
	p.enveloping = 1;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);	/* digest, enveloping */
	p.enveloping = 0;
	p.content_digest_len = 31;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	p.content_digest_len = 32;
	p.scheme = QES_SIG_RSA_PSS;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_KEY_UNSUITABLE);
	p.scheme = QES_SIG_ECDSA;
	p.md = (qes_md)7;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_UNSUPPORTED);
	p.md = QES_MD_SHA256;
	for (i = 0; i <= QES_CADES_MAX_CHAIN; i++)
		chain[i] = fx->issuer;
	p.chain = chain;
	p.nchain = QES_CADES_MAX_CHAIN + 1;
	assert_int_equal(qes_cades_prepare(&p, &ctx), QES_ERR_LIMIT);
	p.nchain = 0;
	p.content_digest = NULL;
	p.content_path = "/nonexistent/qes/file";
	i = (size_t)-qes_cades_prepare(&p, &ctx);
	assert_true(i == (size_t)-QES_ERR_IO || i == (size_t)-QES_ERR_NOT_FOUND);
	assert_null(ctx);
}

/* the SET OF signed attributes is in DER order and re-tagged [0] in the CMS */
static void
test_signed_attrs(void **state)
{
	struct fx *fx = *state;
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	qes_cades_report rep;
	const uint8_t *a, *prev = NULL;
	size_t len, off, plen = 0;
	qes_buf *cms;

	NEED_PKI(fx);
	memset(&p, 0, sizeof(p));
	p.signer = fx->s[0].cert;
	p.md = QES_MD_SHA256;
	p.scheme = QES_SIG_RSA_PKCS1;
	p.content = doc;
	p.content_len = 5;
	assert_int_equal(qes_cades_prepare(&p, &ctx), 0);
	a = qes_cades_signed_attrs(ctx, &len);
	assert_true(len > 100);
	assert_int_equal(a[0], 0x31);
	/* walk the elements: each one sorts after the previous one */
	off = a[1] & 0x80 ? 2 + (a[1] & 0x7fu) : 2;
	while (off < len) {
		size_t l = a[off + 1], hl = 2, i, n;

		if (l & 0x80) {
			n = l & 0x7f;
			for (l = 0, i = 0; i < n; i++)
				l = (l << 8) | a[off + 2 + i];
			hl = 2 + n;
		}
		if (prev != NULL) {
			n = plen < hl + l ? plen : hl + l;
			assert_true(memcmp(prev, a + off, n) < 0 ||
			    (memcmp(prev, a + off, n) == 0 && plen <= hl + l));
		}
		prev = a + off;
		plen = hl + l;
		off += hl + l;
	}
	assert_int_equal(off, len);
	qes_cades_free(ctx);

	/* omitted signing-time (PAdES) */
	cms = make(fx, &fx->s[2], 0, 1, 0);
	assert_int_equal(qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep), 0);
	assert_false(rep.has_signing_time);
	assert_true(rep.signature_ok);
	qes_buf_free(cms);
	/* a fixed time, and one after 2049 (GeneralizedTime) */
	cms = make(fx, &fx->s[2], 0, 0, 1767225600);	/* 2026-01-01 */
	assert_int_equal(qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep), 0);
	assert_int_equal(rep.signing_time, 1767225600);
	qes_buf_free(cms);
	cms = make(fx, &fx->s[2], 0, 0, 2556144000);	/* 2051-01-01 */
	assert_int_equal(qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep), 0);
	assert_int_equal(rep.signing_time, 2556144000);
	assert_true(rep.signature_ok);
	qes_buf_free(cms);
}

static void
test_file_changed(void **state)
{
	struct fx *fx = *state;
	char path[] = "/tmp/qes-cades-test-XXXXXX";
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new(), *cms = qes_buf_new();
	const uint8_t *tbs;
	size_t len;
	int fd;

	NEED_PKI(fx);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, doc, sizeof(doc)), (ssize_t)sizeof(doc));
	memset(&p, 0, sizeof(p));
	p.signer = fx->s[2].cert;
	p.md = QES_MD_SHA256;
	p.scheme = QES_SIG_ECDSA;
	p.enveloping = 1;
	p.content_path = path;
	assert_int_equal(qes_cades_prepare(&p, &ctx), 0);
	tbs = qes_cades_tbs(ctx, &len);
	soft_sign(&fx->s[2], tbs, len, sig);
	/* same length, other bytes */
	assert_int_equal(pwrite(fd, "X", 1, 3), 1);
	assert_int_equal(qes_cades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), cms),
	    QES_ERR_DATA_INVALID);
	assert_int_equal(qes_buf_len(cms), 0);
	/* written to a file: refused the same way, and no file is left */
	{
		char outp[sizeof(path) + 8];
		qes_buf *back = NULL;

		snprintf(outp, sizeof(outp), "%s.p7s", path);
		assert_int_equal(qes_cades_finish_file(ctx, qes_buf_data(sig),
		    qes_buf_len(sig), outp, 0600), QES_ERR_DATA_INVALID);
		assert_int_not_equal(access(outp, F_OK), 0);
		/* restored: accepted, and the file holds what finish() makes */
		assert_int_equal(pwrite(fd, doc + 3, 1, 3), 1);
		assert_int_equal(qes_cades_finish_file(ctx, qes_buf_data(sig),
		    qes_buf_len(sig), outp, 0600), 0);
		assert_int_equal(qes_buf_read_file(outp, 1 << 20, &back), 0);
		assert_true(openssl_verify(fx, back, NULL, 0));
		unlink(outp);
		qes_buf_free(back);
		/* finished once */
		assert_int_equal(qes_cades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig),
		    cms), QES_ERR_INVALID_ARG);
	}
	assert_int_equal(qes_buf_len(cms), 0);
	close(fd);
	unlink(path);
	qes_cades_free(ctx);
	qes_buf_free(cms);
	qes_buf_free(sig);
}

/* a timestamper hook backed by the in-process TSA */
static int
local_tsa(void *arg, qes_md md, const uint8_t *digest, size_t len, qes_buf *out,
    char *err, size_t errlen)
{
	qes_tsp_config *cfg = arg;
	qes_buf *req = qes_buf_new(), *resp = qes_buf_new();
	int r;

	if ((r = qes_tsp_request(md, digest, len, NULL, req)) == 0 &&
	    (r = testpki_tsa_reply(qes_buf_data(req), qes_buf_len(req), NULL, resp)) == 0)
		r = qes_tsp_check_response(cfg, qes_buf_data(req), qes_buf_len(req),
		    qes_buf_data(resp), qes_buf_len(resp), out, err, errlen);
	qes_buf_free(resp);
	qes_buf_free(req);
	return r;
}

static int
failing_tsa(void *arg, qes_md md, const uint8_t *digest, size_t len, qes_buf *out,
    char *err, size_t errlen)
{
	(void)arg; (void)md; (void)digest; (void)len; (void)out;
	snprintf(err, errlen, "TSA down");
	return QES_ERR_FETCH;
}

static void
test_levels(void **state)
{
	struct fx *fx = *state;
	qes_tsp_config tcfg;
	qes_timestamper ts = { local_tsa, &tcfg }, bad = { failing_tsa, NULL };
	qes_buf *cms = make(fx, &fx->s[1], 0, 0, 0), *bt = qes_buf_new(),
	    *blt = qes_buf_new(), *again = qes_buf_new(), *tok = qes_buf_new(),
	    *sv = qes_buf_new();
	qes_cades_report rep;
	qes_ades_blob certs[2], ocsps[1], crls[1];
	qes_ades_vdata vd;
	qes_buf *crl;
	const uint8_t *der;
	uint8_t h[32];
	char err[256];

	NEED_PKI(fx);
	memset(&tcfg, 0, sizeof(tcfg));
	tcfg.ca_file = fx->root_path;
	assert_int_equal(qes_cades_add_timestamp(qes_buf_data(cms), qes_buf_len(cms), &bad,
	    QES_MD_SHA256, bt, err, sizeof(err)), QES_ERR_FETCH);
	assert_string_equal(err, "TSA down");
	assert_int_equal(qes_buf_len(bt), 0);
	assert_int_equal(qes_cades_add_timestamp(qes_buf_data(cms), qes_buf_len(cms), &ts,
	    QES_MD_SHA256, bt, err, sizeof(err)), 0);
	assert_true(openssl_verify(fx, bt, doc, sizeof(doc) - 1));
	assert_int_equal(qes_cades_inspect(qes_buf_data(bt), qes_buf_len(bt), &rep), 0);
	assert_int_equal(rep.level, QES_ADES_B_T);
	assert_true(rep.has_timestamp && rep.timestamp_imprint_ok && rep.signature_ok);
	assert_int_equal(qes_cades_timestamp_token(qes_buf_data(bt), qes_buf_len(bt), tok,
	    sv), 0);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, qes_buf_data(sv), qes_buf_len(sv), h), 0);
	assert_int_equal(qes_tsp_token_verify(&tcfg, qes_buf_data(tok), qes_buf_len(tok),
	    QES_MD_SHA256, h, 32, err, sizeof(err)), 0);
	assert_int_equal(qes_cades_timestamp_token(qes_buf_data(cms), qes_buf_len(cms),
	    NULL, NULL), QES_ERR_NOT_FOUND);

	/* B-LT from blobs: the issuer and root certificates (the issuer is
	 * already there), a CRL and an "OCSP response" */
	crl = testpki_file("root.crl");
	assert_non_null(crl);
	der = qes_cert_der(fx->issuer, &certs[0].len);
	certs[0].data = der;
	der = qes_cert_der(fx->root, &certs[1].len);
	certs[1].data = der;
	crls[0].data = qes_buf_data(crl);
	crls[0].len = qes_buf_len(crl);
	ocsps[0].data = (const uint8_t *)"\x30\x03\x0a\x01\x00";
	ocsps[0].len = 5;
	memset(&vd, 0, sizeof(vd));
	vd.certs = certs;
	vd.ncerts = 2;
	vd.crls = crls;
	vd.ncrls = 1;
	vd.ocsps = ocsps;
	vd.nocsps = 1;
	assert_int_equal(qes_cades_add_vdata(qes_buf_data(bt), qes_buf_len(bt), &vd, blt), 0);
	assert_true(openssl_verify(fx, blt, doc, sizeof(doc) - 1));
	assert_int_equal(qes_cades_inspect(qes_buf_data(blt), qes_buf_len(blt), &rep), 0);
	assert_int_equal(rep.level, QES_ADES_B_LT);
	assert_int_equal(rep.ncerts, 3);
	assert_int_equal(rep.ncrls, 1);
	assert_int_equal(rep.nocsps, 1);
	assert_true(rep.signature_ok && rep.timestamp_imprint_ok);
	/* SignedData version 5 with an "other" RevocationInfoChoice */
	{
		const uint8_t *q = qes_buf_data(blt);
		size_t i;
		int found = 0;

		for (i = 0; i + 3 < 40 && !found; i++)
			found = q[i] == 0x02 && q[i + 1] == 0x01 && q[i + 2] == 0x05;
		assert_true(found);
	}
	/* adding the same again changes nothing */
	assert_int_equal(qes_cades_add_vdata(qes_buf_data(blt), qes_buf_len(blt), &vd,
	    again), 0);
	assert_int_equal(qes_buf_len(again), qes_buf_len(blt));
	assert_memory_equal(qes_buf_data(again), qes_buf_data(blt), qes_buf_len(blt));
	qes_buf_free(crl);
	qes_buf_free(sv);
	qes_buf_free(tok);
	qes_buf_free(again);
	qes_buf_free(blt);
	qes_buf_free(bt);
	qes_buf_free(cms);
}

static void
test_malformed_cms(void **state)
{
	struct fx *fx = *state;
	qes_cades_report rep;
	qes_buf *cms, *out = qes_buf_new();
	size_t cut;

	NEED_PKI(fx);
	cms = make(fx, &fx->s[2], 1, 0, 0);
	/* every truncation is refused, never read past */
	for (cut = 0; cut < qes_buf_len(cms); cut += 7)
		assert_true(qes_cades_inspect(qes_buf_data(cms), cut, &rep) < 0);
	assert_int_equal(qes_buf_put_u8(cms, 0), 0);	/* trailing byte */
	assert_int_equal(qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep),
	    QES_ERR_FORMAT);
	assert_int_equal(qes_cades_add_vdata(qes_buf_data(cms), qes_buf_len(cms),
	    &(qes_ades_vdata){ 0 }, out), QES_ERR_FORMAT);
	assert_int_equal(qes_buf_truncate(cms, qes_buf_len(cms) - 1), 0);
	/* a flipped byte in the enveloped content: integrity fails, the parse does not */
	qes_buf_mutable(cms)[60] ^= 0x01;
	if (qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep) == 0)
		assert_true(qes_cades_verify_integrity(qes_buf_data(cms), qes_buf_len(cms),
		    NULL, 0, 0) != 0);
	qes_buf_free(out);
	qes_buf_free(cms);
}

/* a CMS whose signed attributes carry message-digest twice is malformed */
static void
test_duplicate_attribute(void **state)
{
	struct fx *fx = *state;
	qes_buf *cms, *attrs = qes_buf_new(), *si = qes_buf_new(), *seq = qes_buf_new(),
	    *sis = qes_buf_new(), *certs = qes_buf_new(), *out = qes_buf_new();
	qes_cades_report rep;
	cms_parts p;
	cms_span el[8];
	size_t n = 0, i;

	NEED_PKI(fx);
	cms = make(fx, &fx->s[2], 0, 0, 0);
	assert_int_equal(cms_parse(qes_buf_data(cms), qes_buf_len(cms), &p), 0);
	assert_int_equal(cms_split_tlvs(p.si_signed_attrs_val.p, p.si_signed_attrs_val.len,
	    el, 7, &n), 0);
	for (i = 0; i < n; i++) {
		/* Attribute { OID 1.2.840.113549.1.9.4 ... }: the OID's last octet */
		if (el[i].p[2] == 0x06 && el[i].p[3] == 9 && el[i].p[4 + 8] == 0x04)
			break;
	}
	assert_true(i < n);
	el[n] = el[i];
	assert_int_equal(cms_put_set_of(attrs, QES_DER_CONTEXT_CONS(0), el, n + 1), 0);
	assert_int_equal(qes_buf_put(si, p.si_version.p, p.si_version.len), 0);
	assert_int_equal(qes_buf_put(si, p.si_sid.p, p.si_sid.len), 0);
	assert_int_equal(qes_buf_put(si, p.si_digest_alg.p, p.si_digest_alg.len), 0);
	assert_int_equal(qes_buf_put(si, qes_buf_data(attrs), qes_buf_len(attrs)), 0);
	assert_int_equal(qes_buf_put(si, p.si_sig_alg.p, p.si_sig_alg.len), 0);
	assert_int_equal(qes_buf_put(si, p.si_sig.p, p.si_sig.len), 0);
	assert_int_equal(cms_put_wrapped(seq, QES_DER_SEQUENCE, si), 0);
	assert_int_equal(cms_put_wrapped(sis, QES_DER_SET, seq), 0);
	assert_int_equal(qes_buf_put(certs, p.certs.p, p.certs.len), 0);
	assert_int_equal(cms_assemble(out, p.sd_version, &p.digest_algs, &p.encap, NULL,
	    certs, NULL, sis), 0);
	assert_int_equal(cms_parse(qes_buf_data(out), qes_buf_len(out), &p), 0);
	assert_int_equal(qes_cades_inspect(qes_buf_data(out), qes_buf_len(out), &rep),
	    QES_ERR_FORMAT);
	qes_buf_free(out);
	qes_buf_free(certs);
	qes_buf_free(sis);
	qes_buf_free(seq);
	qes_buf_free(si);
	qes_buf_free(attrs);
	qes_buf_free(cms);
}

/*
 * A CMS whose signer is named by subjectKeyIdentifier, as openssl cms -sign
 * -keyid makes it (CMS_USE_KEYID, SignerInfo version 3): inspect finds the
 * signer and checks its value, integrity holds, enveloping and detached;
 * a changed key identifier leaves the signer unknown.
 */
static qes_buf *
make_keyid(const struct signer *s, const char *content, int detached)
{
	BIO *in = BIO_new_mem_buf(content, -1);
	CMS_ContentInfo *ci;
	unsigned char *der = NULL;
	qes_buf *out = qes_buf_new();
	int n;

	assert_non_null(in);
	assert_non_null(out);
	ci = CMS_sign(qes_cert_x509(s->cert), s->key, NULL, in,
	    CMS_BINARY | CMS_USE_KEYID | (detached ? CMS_DETACHED : 0));
	assert_non_null(ci);
	assert_true((n = i2d_CMS_ContentInfo(ci, &der)) > 0);
	assert_int_equal(qes_buf_put(out, der, (size_t)n), 0);
	OPENSSL_free(der);
	CMS_ContentInfo_free(ci);
	BIO_free(in);
	return out;
}

static void
test_keyid_signer(void **state)
{
	struct fx *fx = *state;
	static const char content[] = "signed by key identifier";
	qes_cades_report rep;
	qes_buf *env, *det;
	cms_parts p;
	uint8_t dg[QES_MD_MAX_LEN];
	size_t i;

	NEED_PKI(fx);
	for (i = 0; i < 3; i += 2) {	/* RSA and ECDSA */
		env = make_keyid(&fx->s[i], content, 0);
		assert_int_equal(cms_parse(qes_buf_data(env), qes_buf_len(env), &p), 0);
		assert_int_equal(p.si_sid.p[0], QES_DER_CONTEXT(0));
		assert_int_equal(qes_cades_inspect(qes_buf_data(env), qes_buf_len(env),
		    &rep), 0);
		assert_true(rep.enveloping);
		assert_true(rep.signer_found);
		assert_true(rep.signature_ok);
		assert_non_null(strstr(rep.signer_subject, "CN="));
		assert_int_equal(qes_cades_verify_integrity(qes_buf_data(env),
		    qes_buf_len(env), NULL, 0, 0), 0);

		det = make_keyid(&fx->s[i], content, 1);
		assert_int_equal(qes_cades_inspect(qes_buf_data(det), qes_buf_len(det),
		    &rep), 0);
		assert_false(rep.enveloping);
		assert_true(rep.signer_found);
		assert_true(rep.signature_ok);
		assert_int_equal(qes_md_digest(QES_MD_SHA256, (const uint8_t *)content,
		    strlen(content), dg), 0);
		assert_int_equal(qes_cades_verify_integrity(qes_buf_data(det),
		    qes_buf_len(det), dg, 32, 1), 0);
		dg[0] ^= 1;
		assert_int_not_equal(qes_cades_verify_integrity(qes_buf_data(det),
		    qes_buf_len(det), dg, 32, 1), 0);

		/* another key identifier (its last byte): no signer, no value */
		assert_int_equal(cms_parse(qes_buf_data(det), qes_buf_len(det), &p), 0);
		qes_buf_mutable(det)[(size_t)(p.si_sid.p - qes_buf_data(det)) +
		    p.si_sid.len - 1] ^= 0x01;
		assert_int_equal(qes_cades_inspect(qes_buf_data(det), qes_buf_len(det),
		    &rep), 0);
		assert_false(rep.signer_found);
		assert_false(rep.signature_ok);
		qes_buf_free(det);
		qes_buf_free(env);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_wrong_value_refused),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_signed_attrs),
		cmocka_unit_test(test_file_changed),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_malformed_cms),
		cmocka_unit_test(test_duplicate_attribute),
		cmocka_unit_test(test_keyid_signer),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
