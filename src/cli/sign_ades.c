/*
 * sign_ades.c - `qes sign --format pades|cades|xades|jades --level ...`:
 * prepare the signature (include/qes/sign.h), have the token sign its
 * digest in one PIN dialog (qes_sign_local, as --raw does), finish.
 *
 * The command line is where the I/O policy lives that the library leaves
 * to its caller: the TSA (--tsa, trusted through --tsa-ca), the revocation
 * sources (the certificates' AIA/CDP unless --ocsp/--crl override them)
 * and the certificates chains are built from (--trust).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sign_ades.h"
#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sign.h"
#include "qes/tsp.h"

#define MAX_TRUST QES_ADES_SIGN_MAX_EXTRA

struct certs {
	qes_cert *c[MAX_TRUST];
	size_t n;
};

static void
certs_free(struct certs *cs)
{
	size_t i;

	for (i = 0; i < cs->n; i++)
		qes_cert_free(cs->c[i]);
	cs->n = 0;
}

/* Every certificate of a PEM file (a bundle), at most MAX_TRUST. */
static int
load_pem_bundle(const char *path, struct certs *cs)
{
	BIO *bio;
	X509 *x;
	unsigned char *der = NULL;
	int len, r = 0;

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		fprintf(stderr, "qes sign: cannot read %s\n", path);
		return QES_ERR_IO;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (cs->n == MAX_TRUST) {
			fprintf(stderr, "qes sign: %s: more than %d certificates\n", path,
			    MAX_TRUST);
			r = QES_ERR_LIMIT;
		} else if ((len = i2d_X509(x, &der)) <= 0 ||
		    qes_cert_from_der(der, (size_t)len, &cs->c[cs->n]) != 0) {
			fprintf(stderr, "qes sign: %s: a certificate qes cannot read\n", path);
			r = QES_ERR_FORMAT;
		} else
			cs->n++;
		OPENSSL_free(der);
		der = NULL;
		X509_free(x);
		if (r != 0)
			break;
	}
	ERR_clear_error();	/* the end of the file reads as an error */
	BIO_free(bio);
	if (r == 0 && cs->n == 0) {
		fprintf(stderr, "qes sign: %s holds no PEM certificate\n", path);
		r = QES_ERR_FORMAT;
	}
	return r;
}

static int
self_signed(const qes_cert *c)
{
	const qes_cert_info *ci = qes_cert_get_info(c);

	return strcmp(ci->subject, ci->issuer) == 0;
}

int
cli_sign_ades_with(const cli_ades_opts *o, const qes_cert *signer, qes_md md,
    qes_sig_scheme scheme, cli_ades_sign_fn fn, void *arg, const char *by,
    int *sign_failed)
{
	qes_ades_sign_params sp = { 0 };
	qes_ades_ctx *ctx = NULL;
	qes_tsp_config tcfg = { 0 };
	qes_timestamper ts;
	qes_rev_config rev = { 0 };
	struct certs trust = { 0 };
	const qes_cert *chain[QES_REV_MAX_CHAIN], *embed[QES_ADES_SIGN_MAX_CHAIN];
	const uint8_t *digest, *sig;
	size_t dlen, siglen, nchain = 0, nembed = 0, i;
	int r;

	*sign_failed = 0;
	if (qes_ades_format_from_name(o->format, &sp.format) != 0) {
		fprintf(stderr, "qes sign: --format is pades, cades, xades or jades\n");
		return QES_ERR_INVALID_ARG;
	}
	sp.level = QES_ADES_B_B;
	if (o->level != NULL && qes_ades_level_from_name(o->level, &sp.level) != 0) {
		fprintf(stderr, "qes sign: --level is B-B, B-T, B-LT or B-LTA\n");
		return QES_ERR_INVALID_ARG;
	}
	if (o->packaging != NULL &&
	    qes_ades_packaging_from_name(o->packaging, &sp.packaging) != 0) {
		fprintf(stderr, "qes sign: --packaging is detached, enveloping, enveloped, "
		    "compact or json\n");
		return QES_ERR_INVALID_ARG;
	}
	if (sp.level >= QES_ADES_B_T && (o->tsa_url == NULL || o->tsa_ca == NULL)) {
		fprintf(stderr, "qes sign: %s needs --tsa URL and --tsa-ca FILE (the TSA's "
		    "trust anchors)\n", qes_ades_level_name(sp.level));
		return QES_ERR_INVALID_ARG;
	}
	if (o->revocation != NULL) {
		if (strcmp(o->revocation, "ocsp") == 0)
			rev.mode = QES_REV_OCSP_ONLY;
		else if (strcmp(o->revocation, "crl") == 0)
			rev.mode = QES_REV_CRL_ONLY;
		else if (strcmp(o->revocation, "ocsp,crl") == 0)
			rev.mode = QES_REV_OCSP_THEN_CRL;
		else {
			fprintf(stderr, "qes sign: --revocation is ocsp, crl or ocsp,crl\n");
			return QES_ERR_INVALID_ARG;
		}
	}
	if (o->trust != NULL && (r = load_pem_bundle(o->trust, &trust)) != 0)
		goto out;
	/* the CAs to embed: the signer's chain from --trust, without the root */
	if ((r = qes_chain_build(signer, (const qes_cert *const *)trust.c, trust.n, chain,
	    QES_REV_MAX_CHAIN, &nchain)) != 0) {
		fprintf(stderr, "qes sign: cannot build the signer's chain: %s\n",
		    qes_strerror(r));
		goto out;
	}
	for (i = 1; i < nchain && nembed < QES_ADES_SIGN_MAX_CHAIN; i++)
		if (!self_signed(chain[i]))
			embed[nembed++] = chain[i];
	if (sp.level >= QES_ADES_B_LT && (nchain < 2 || !self_signed(chain[nchain - 1])))
		fprintf(stderr, "qes sign: warning: the signer's chain does not end at a root "
		    "(give the CA certificates with --trust)\n");

	tcfg.url = o->tsa_url;
	tcfg.ca_file = o->tsa_ca;
	tcfg.untrusted_file = o->tsa_untrusted;
	tcfg.policy_oid = o->tsa_policy;
	tcfg.fetch.connect_timeout_ms = o->timeout_ms;
	tcfg.fetch.total_timeout_ms = o->timeout_ms;
	ts = qes_tsp_timestamper(&tcfg);
	rev.ocsp_url = o->ocsp_url;
	rev.crl_url = o->crl_url;
	rev.fetch.connect_timeout_ms = o->timeout_ms;
	rev.fetch.total_timeout_ms = o->timeout_ms;

	sp.in_path = o->in;
	sp.out_path = o->out;
	sp.doc_name = o->doc_name;
	sp.mime_type = o->mime;
	sp.signer = signer;
	sp.chain = embed;
	sp.nchain = nembed;
	sp.md = md;
	sp.scheme = scheme;
	sp.tsa = sp.level >= QES_ADES_B_T ? &ts : NULL;
	sp.rev = &rev;
	sp.extra = (const qes_cert *const *)trust.c;
	sp.nextra = trust.n;
	sp.pdf_field_name = o->field;
	sp.pdf_reason = o->reason;
	sp.pdf_location = o->location;
	/* everything that can be refused is refused before the PIN dialog */
	if ((r = qes_ades_prepare(&sp, &ctx)) != 0 ||
	    (r = qes_ades_tbs(ctx, NULL, NULL, &digest, &dlen)) != 0) {
		fprintf(stderr, "qes sign: %s: %s\n", qes_strerror(r), qes_ades_errmsg(ctx));
		goto out;
	}
	if ((r = fn(arg, md, scheme, digest, dlen, &sig, &siglen)) != 0) {
		*sign_failed = 1;
		goto out;
	}
	if ((r = qes_ades_finish(ctx, sig, siglen)) != 0) {
		fprintf(stderr, "qes sign: %s: %s\n", qes_strerror(r), qes_ades_errmsg(ctx));
		goto out;
	}
	printf("signed %s: %s %s%s%s, %s %s by \"%s\" %s -> %s\n",
	    o->in, qes_ades_format_name(sp.format), qes_ades_level_name(sp.level),
	    o->packaging != NULL ? " " : "", o->packaging != NULL ? o->packaging : "",
	    qes_md_name(md), qes_sig_scheme_name(scheme),
	    qes_cert_get_info(signer)->subject_cn, by, o->out);
 out:
	qes_ades_free(ctx);
	certs_free(&trust);
	return r;
}

/* The local token as cli_ades_sign_fn: one PIN dialog, qes_sign_local. */
struct local_signer {
	qes_p11 *p;
	const qes_p11_token *t;
	const qes_p11_cred *c;
	qes_sign_request *req;
	const qes_pinentry_opts *pe;
	qes_sign_result *res;
};

static int
local_sign(void *arg, qes_md md, qes_sig_scheme scheme, const uint8_t *digest,
    size_t len, const uint8_t **sig, size_t *siglen)
{
	struct local_signer *ls = arg;
	const uint8_t *digests[1] = { digest };
	int r;

	(void)len;	/* the token job knows md's length */
	ls->req->md = md;
	ls->req->scheme = scheme;
	ls->req->digests = digests;
	ls->req->n_digests = 1;
	r = qes_sign_local(ls->p, ls->t, ls->c, ls->req, ls->pe, ls->res);
	ls->req->digests = NULL;
	ls->req->n_digests = 0;
	if (r != 0)
		return r;
	*sig = qes_buf_data(ls->res->sigs[0]);
	*siglen = qes_buf_len(ls->res->sigs[0]);
	return 0;
}

int
cli_sign_ades(const cli_ades_opts *o, qes_p11 *p, const qes_p11_token *t,
    const qes_p11_cred *c, qes_sign_request *req, const qes_pinentry_opts *pe,
    qes_sign_result *res, int *token_failed)
{
	struct local_signer ls = { p, t, c, req, pe, res };
	char by[320];

	snprintf(by, sizeof(by), "(%s) on token \"%s\"", qes_cert_class_name(c->cls),
	    t->label);
	return cli_sign_ades_with(o, c->cert, req->md, req->scheme, local_sign, &ls, by,
	    token_failed);
}
