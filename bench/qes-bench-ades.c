/*
 * qes-bench-ades.c - the signing work bench/ades.sh measures, with a
 * software key (PEM) in place of a token, so the figures are libqes's own
 * cost: hashing, CMS assembly and the PDF incremental update.
 *
 *   qes-bench-ades pades IN.pdf OUT.pdf --cert C --key K [--chain CA]
 *       PAdES B-B: qes_pdf_sign_prepare (writes the update, hashes the
 *       byte ranges), a detached CAdES over that digest without
 *       signing-time, qes_pdf_sign_finish.
 *   qes-bench-ades cades IN OUT.p7s --cert C --key K [--chain CA]
 *       [--enveloping]
 *       CAdES B-B over the file, hashed streaming (content_path) and
 *       written with qes_cades_finish_file, so nothing holds the document.
 *
 * Exit status: 0 done, 1 a libqes or OpenSSL error (named on stderr), 2
 * usage. The key is never printed.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/pdf.h"
#include "qes/sig.h"

static int
fail(const char *what, int r, const char *detail)
{
	fprintf(stderr, "qes-bench-ades: %s: %s%s%s\n", what, qes_strerror(r),
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
	return 1;
}

static int
usage(void)
{
	fputs("usage: qes-bench-ades pades|cades IN OUT --cert C --key K "
	    "[--chain CA] [--enveloping]\n", stderr);
	return 2;
}

/* The token's part, done with OpenSSL: sign the digest (PKCS#1 v1.5 or ECDSA). */
static int
soft_sign(EVP_PKEY *key, qes_sig_scheme scheme, const uint8_t *dg, size_t dlen,
    qes_buf *out)
{
	EVP_PKEY_CTX *ctx;
	uint8_t sig[1024];
	size_t slen = sizeof(sig);
	int ok;

	if ((ctx = EVP_PKEY_CTX_new(key, NULL)) == NULL)
		return QES_ERR_ALLOC;
	ok = EVP_PKEY_sign_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
	if (ok && scheme == QES_SIG_RSA_PKCS1)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	ok = ok && EVP_PKEY_sign(ctx, sig, &slen, dg, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	if (!ok)
		return QES_ERR_CRYPTO;
	return qes_buf_put(out, sig, slen);
}

int
main(int argc, char **argv)
{
	const char *mode, *in, *out, *certp = NULL, *keyp = NULL, *chainp = NULL;
	qes_cert *signer = NULL, *ca = NULL;
	const qes_cert *chain[1];
	EVP_PKEY *key = NULL;
	qes_cades_params p;
	qes_cades_ctx *cctx = NULL;
	qes_pdf *pdf = NULL;
	qes_pdf_sign_ctx *pctx = NULL;
	qes_pdf_limits lim;
	qes_pdf_sign_params pp;
	qes_buf *sig = NULL, *cms = NULL;
	uint8_t dg[QES_MD_MAX_LEN];
	const uint8_t *tbs;
	size_t tlen, dlen;
	char err[256];
	int enveloping = 0, i, r, rc = 1;
	FILE *f;

	if (argc < 4)
		return usage();
	mode = argv[1];
	in = argv[2];
	out = argv[3];
	for (i = 4; i < argc; i++) {
		if (strcmp(argv[i], "--enveloping") == 0)
			enveloping = 1;
		else if (i + 1 < argc && strcmp(argv[i], "--cert") == 0)
			certp = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--key") == 0)
			keyp = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--chain") == 0)
			chainp = argv[++i];
		else
			return usage();
	}
	if (certp == NULL || keyp == NULL ||
	    (strcmp(mode, "pades") != 0 && strcmp(mode, "cades") != 0))
		return usage();
	if ((r = qes_cert_from_file(certp, &signer)) != 0)
		return fail("signer certificate", r, certp);
	if (chainp != NULL && (r = qes_cert_from_file(chainp, &ca)) != 0) {
		rc = fail("chain certificate", r, chainp);
		goto out;
	}
	if ((f = fopen(keyp, "r")) == NULL) {
		rc = fail("key", QES_ERR_IO, keyp);
		goto out;
	}
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL) {
		rc = fail("key", QES_ERR_FORMAT, keyp);
		goto out;
	}
	if ((sig = qes_buf_new()) == NULL || (cms = qes_buf_new()) == NULL) {
		rc = fail("memory", QES_ERR_ALLOC, NULL);
		goto out;
	}
	chain[0] = ca;
	memset(&p, 0, sizeof(p));
	p.signer = signer;
	p.chain = chain;
	p.nchain = ca != NULL ? 1 : 0;
	p.md = QES_MD_SHA256;
	p.scheme = qes_cert_get_info(signer)->key_type == QES_KEY_EC ?
	    QES_SIG_ECDSA : QES_SIG_RSA_PKCS1;

	if (strcmp(mode, "pades") == 0) {
		qes_pdf_limits_default(&lim);
		if ((r = qes_pdf_open(in, &lim, &pdf, err, sizeof(err))) != 0) {
			rc = fail("open", r, err);
			goto out;
		}
		memset(&pp, 0, sizeof(pp));
		pp.subfilter = QES_PDF_CADES_DETACHED;
		pp.contents_bytes = 16384;	/* certificates + signature, with room */
		if ((r = qes_pdf_sign_prepare(pdf, &pp, out, p.md, &pctx)) != 0 ||
		    (r = qes_pdf_sign_digest(pctx, dg, sizeof(dg), &dlen)) != 0) {
			rc = fail("prepare", r, qes_pdf_errmsg(pdf));
			goto out;
		}
		p.content_digest = dg;
		p.content_digest_len = dlen;
		p.omit_signing_time = 1;
	} else {
		p.content_path = in;
		p.enveloping = enveloping;
	}
	if ((r = qes_cades_prepare(&p, &cctx)) != 0) {
		rc = fail("CAdES prepare", r, NULL);
		goto out;
	}
	tbs = qes_cades_tbs(cctx, &tlen);
	if ((r = soft_sign(key, p.scheme, tbs, tlen, sig)) != 0) {
		rc = fail("software signature", r, NULL);
		goto out;
	}
	if (pctx != NULL) {
		if ((r = qes_cades_finish(cctx, qes_buf_data(sig), qes_buf_len(sig),
		    cms)) != 0) {
			rc = fail("CAdES finish", r, NULL);
			goto out;
		}
		if ((r = qes_pdf_sign_finish(pctx, qes_buf_data(cms),
		    qes_buf_len(cms))) != 0) {
			rc = fail("PDF finish", r, qes_pdf_errmsg(pdf));
			goto out;
		}
	} else if ((r = qes_cades_finish_file(cctx, qes_buf_data(sig),
	    qes_buf_len(sig), out, 0644)) != 0) {
		rc = fail("CAdES finish", r, NULL);
		goto out;
	}
	rc = 0;
 out:
	qes_cades_free(cctx);
	qes_pdf_sign_free(pctx);
	qes_pdf_free(pdf);
	qes_buf_free(sig);
	qes_buf_free(cms);
	EVP_PKEY_free(key);
	qes_cert_free(ca);
	qes_cert_free(signer);
	return rc;
}
