/*
 * qes-ades-sign - make XAdES and JAdES signatures with libqes's two-phase
 * API and a software key, for tests/integration/xades_jades.sh.
 *
 * The CLI's `qes sign --format xades|jades` goes through a token; this
 * helper drives the same library calls (prepare -> digest -> sign ->
 * finish) with a PEM key, the way a token would sign the digest, and with
 * the in-process test TSA of tests/unit/testtsa.h for B-T and above, so the
 * independent validators (xmlsec1, python3-jwcrypto, openssl ts) can judge
 * the formats on their own.
 *
 *   qes-ades-sign FORMAT --pki DIR --signer NAME --scheme S --md MD
 *       [--level B-B|B-T|B-LT|B-LTA] [--name NAME] [--mime TYPE] [--inclusive]
 *       [--hash-only] [--detached] [--cty TYPE] [--vcert F]... [--crl F]... [--ocsp F]...
 *       [--tsa-vcert F]... IN OUT
 *   FORMAT: xades-enveloped | xades-detached | jades-compact | jades-json
 *   S: rsa-pkcs1 | rsa-pss | ecdsa   (files: DER certificates, CRLs, OCSP responses)
 *
 * --hash-only (xades-detached): give prepare the document's digest only, as
 * a relying party does that keeps its document.
 *
 * Exit 0 on success; 1 with the library's error name and reason on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/testtsa.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/jades.h"
#include "qes/xades.h"

#define MAX_FILES 8

struct blobs {
	qes_ades_blob b[MAX_FILES];
	qes_buf *bufs[MAX_FILES];
	size_t n;
};

static void
usage(void)
{
	fprintf(stderr, "usage: qes-ades-sign xades-enveloped|xades-detached|jades-compact|"
	    "jades-json --pki DIR --signer NAME --scheme S --md MD [options] IN OUT\n");
	exit(2);
}

static void
add_file(struct blobs *bl, const char *path)
{
	if (bl->n == MAX_FILES || qes_buf_read_file(path, 4 << 20, &bl->bufs[bl->n]) != 0) {
		fprintf(stderr, "qes-ades-sign: cannot read %s\n", path);
		exit(1);
	}
	bl->b[bl->n].data = qes_buf_data(bl->bufs[bl->n]);
	bl->b[bl->n].len = qes_buf_len(bl->bufs[bl->n]);
	bl->n++;
}

static void
free_blobs(struct blobs *bl)
{
	size_t i;

	for (i = 0; i < bl->n; i++)
		qes_buf_free(bl->bufs[i]);
}

static int
der_of_pem(const char *path, qes_buf **out)
{
	X509 *x = testtsa_read_cert(path);
	unsigned char *der = NULL;
	int len;

	if (x == NULL || (len = i2d_X509(x, &der)) <= 0) {
		X509_free(x);
		return -1;
	}
	*out = qes_buf_new();
	qes_buf_put(*out, der, (size_t)len);
	OPENSSL_free(der);
	X509_free(x);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *format, *pki = NULL, *signer = NULL, *in, *outp, *name = NULL;
	const char *mime = NULL, *cty = NULL;
	qes_sig_scheme scheme = 0;
	qes_md md = 0;
	qes_ades_level level = QES_ADES_B_B;
	int inclusive = 0, detached = 0, hash_only = 0, i, r;
	uint8_t doc_digest[QES_MD_MAX_LEN];
	struct blobs vcerts = { 0 }, crls = { 0 }, ocsps = { 0 }, tcerts = { 0 };
	qes_ades_vdata vd, tvd;
	qes_buf *doc = NULL, *out = qes_buf_new(), *sig = qes_buf_new(), *chain = NULL;
	qes_ades_blob chain_blob;
	qes_cert *cert = NULL;
	EVP_PKEY *key = NULL;
	testtsa tsa;
	qes_timestamper ts = { testtsa_stamp, &tsa };
	char path[4096];
	const uint8_t *dig;
	size_t dig_len;
	qes_md tmd;
	qes_sig_scheme tscheme;
	const char *why = "";

	if (argc < 2)
		usage();
	format = argv[1];
	for (i = 2; i < argc - 2; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--inclusive") == 0)
			inclusive = 1;
		else if (strcmp(a, "--detached") == 0)
			detached = 1;
		else if (strcmp(a, "--hash-only") == 0)
			hash_only = 1;
		else if (i + 1 >= argc - 2)
			usage();
		else if (strcmp(a, "--pki") == 0)
			pki = argv[++i];
		else if (strcmp(a, "--signer") == 0)
			signer = argv[++i];
		else if (strcmp(a, "--scheme") == 0) {
			if (qes_sig_scheme_from_name(argv[++i], &scheme) != 0)
				usage();
		} else if (strcmp(a, "--md") == 0) {
			if (qes_md_from_name(argv[++i], &md) != 0)
				usage();
		} else if (strcmp(a, "--level") == 0) {
			if (qes_ades_level_from_name(argv[++i], &level) != 0)
				usage();
		} else if (strcmp(a, "--name") == 0)
			name = argv[++i];
		else if (strcmp(a, "--mime") == 0)
			mime = argv[++i];
		else if (strcmp(a, "--cty") == 0)
			cty = argv[++i];
		else if (strcmp(a, "--vcert") == 0)
			add_file(&vcerts, argv[++i]);
		else if (strcmp(a, "--crl") == 0)
			add_file(&crls, argv[++i]);
		else if (strcmp(a, "--ocsp") == 0)
			add_file(&ocsps, argv[++i]);
		else if (strcmp(a, "--tsa-vcert") == 0)
			add_file(&tcerts, argv[++i]);
		else
			usage();
	}
	if (i != argc - 2 || pki == NULL || signer == NULL || scheme == 0 || md == 0)
		usage();
	in = argv[argc - 2];
	outp = argv[argc - 1];

	if (testtsa_init(&tsa, pki) != 0) {
		fprintf(stderr, "qes-ades-sign: no TSA key in %s\n", pki);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s.key", pki, signer);
	key = testtsa_read_key(path);
	snprintf(path, sizeof(path), "%s/%s.pem", pki, signer);
	if (key == NULL || qes_cert_from_file(path, &cert) != 0) {
		fprintf(stderr, "qes-ades-sign: cannot load signer %s\n", signer);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/issuing-ca.pem", pki);
	if (der_of_pem(path, &chain) != 0)
		return 1;
	chain_blob = (qes_ades_blob){ qes_buf_data(chain), qes_buf_len(chain) };
	if (qes_buf_read_file(in, QES_XADES_MAX_DOC_BYTES, &doc) != 0) {
		fprintf(stderr, "qes-ades-sign: cannot read %s\n", in);
		return 1;
	}
	vd = (qes_ades_vdata){ vcerts.b, vcerts.n, ocsps.b, ocsps.n, crls.b, crls.n };
	tvd = (qes_ades_vdata){ tcerts.b, tcerts.n, NULL, 0, NULL, 0 };

	if (strncmp(format, "xades-", 6) == 0) {
		qes_xades_params p = { 0 };
		qes_xades_ctx *ctx = NULL;

		p.packaging = strcmp(format, "xades-detached") == 0 ? QES_XADES_DETACHED :
		    QES_XADES_ENVELOPED;
		p.level = level;
		p.c14n = inclusive ? QES_XADES_C14N_INCLUSIVE : QES_XADES_C14N_EXCLUSIVE;
		p.doc = qes_buf_data(doc);
		p.doc_len = qes_buf_len(doc);
		if (hash_only) {
			if (qes_md_file(md, in, doc_digest) != 0)
				return 1;
			p.doc = NULL;
			p.doc_len = 0;
			p.detached_digest = doc_digest;
		}
		p.detached_name = name;
		p.mime_type = mime;
		p.signer = cert;
		p.chain = &chain_blob;
		p.nchain = 1;
		p.scheme = scheme;
		p.md = md;
		p.tsa = &ts;
		p.vdata = &vd;
		p.tsa_vdata = tcerts.n > 0 ? &tvd : NULL;
		if ((r = qes_xades_prepare(&p, &ctx)) == 0 &&
		    (r = qes_xades_tbs(ctx, &dig, &dig_len, &tmd, &tscheme)) == 0 &&
		    (r = testtsa_sign(key, tscheme, tmd, dig, dig_len, 1, sig)) == 0)
			r = qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out);
		if (r != 0)
			why = qes_xades_errmsg(ctx);
		if (r != 0) {
			fprintf(stderr, "qes-ades-sign: %s: %s\n", qes_errname(r), why);
			qes_xades_free(ctx);
			return 1;
		}
		qes_xades_free(ctx);
	} else if (strncmp(format, "jades-", 6) == 0) {
		qes_jades_params p = { 0 };
		qes_jades_ctx *ctx = NULL;

		p.serialization = strcmp(format, "jades-compact") == 0 ? QES_JADES_COMPACT :
		    QES_JADES_JSON;
		p.level = level;
		p.payload = qes_buf_data(doc);
		p.payload_len = qes_buf_len(doc);
		p.detached = detached;
		p.cty = cty;
		p.signer = cert;
		p.chain = &chain_blob;
		p.nchain = 1;
		p.scheme = scheme;
		p.md = md;
		p.tsa = &ts;
		p.vdata = &vd;
		p.tsa_vdata = tcerts.n > 0 ? &tvd : NULL;
		if ((r = qes_jades_prepare(&p, &ctx)) == 0 &&
		    (r = qes_jades_tbs(ctx, &dig, &dig_len, &tmd, &tscheme)) == 0 &&
		    (r = testtsa_sign(key, tscheme, tmd, dig, dig_len, 1, sig)) == 0)
			r = qes_jades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out);
		if (r != 0) {
			fprintf(stderr, "qes-ades-sign: %s: %s\n", qes_errname(r),
			    qes_jades_errmsg(ctx));
			qes_jades_free(ctx);
			return 1;
		}
		qes_jades_free(ctx);
	} else
		usage();

	if ((r = qes_buf_write_file(out, outp, 0644)) != 0) {
		fprintf(stderr, "qes-ades-sign: cannot write %s: %s\n", outp, qes_strerror(r));
		return 1;
	}
	free_blobs(&vcerts);
	free_blobs(&crls);
	free_blobs(&ocsps);
	free_blobs(&tcerts);
	qes_buf_free(doc);
	qes_buf_free(out);
	qes_buf_free(sig);
	qes_buf_free(chain);
	qes_cert_free(cert);
	EVP_PKEY_free(key);
	testtsa_free(&tsa);
	return 0;
}
