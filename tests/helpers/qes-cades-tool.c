/*
 * qes-cades-tool.c - drive libqes's CAdES, TSP and revocation code from
 * the integration tests (tests/integration/cades.sh) with software keys
 * from the test PKI, so that OpenSSL's command-line tools can judge the
 * output independently.
 *
 *   qes-cades-tool sign --cert C --key K [--chain F]... [--md sha256]
 *       [--scheme rsa-pkcs1|rsa-pss|ecdsa] [--enveloping] [--in FILE |
 *       --digest HEX] [--stream] [--no-signing-time] [--level B-B|B-T|B-LT]
 *       [--tsa URL --tsa-ca FILE] [--extra CERT]... [--ocsp-url URL]
 *       [--crl-only] [--raw-ecdsa] [--bad-signature] [--direct] --out OUT
 *   qes-cades-tool inspect CMS [--content FILE] [--token-out F --sig-out F]
 *   qes-cades-tool status --cert C --issuer I [--crl-only] [--ocsp-url URL]
 *   qes-cades-tool timestamp --tsa URL --tsa-ca FILE --in FILE --out TOKEN
 *   qes-cades-tool fetch URL [--max BYTES] [--out FILE]
 *
 * Exit status: 0 success, 1 a libqes error (its name on stderr), 2 usage.
 * The private key is the PKI's test key; it is never printed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/fetch.h"
#include "qes/revocation.h"
#include "qes/sig.h"
#include "qes/tsp.h"

#define MAX_CERTS 8

static int
fail(const char *what, int r, const char *detail)
{
	fprintf(stderr, "qes-cades-tool: %s: %s (%s)%s%s\n", what, qes_strerror(r),
	    qes_errname(r), detail != NULL && detail[0] != '\0' ? ": " : "",
	    detail != NULL ? detail : "");
	return 1;
}

static int
usage(void)
{
	fprintf(stderr, "usage: qes-cades-tool sign|inspect|status|timestamp ... "
	    "(see the comment at the top of tests/helpers/qes-cades-tool.c)\n");
	return 2;
}

/* Sign a digest with a software key the way a token would. */
static int
soft_sign(EVP_PKEY *key, qes_sig_scheme scheme, qes_md md, const uint8_t *dg,
    size_t dlen, qes_buf *out)
{
	const EVP_MD *evp = md == QES_MD_SHA384 ? EVP_sha384() :
	    md == QES_MD_SHA512 ? EVP_sha512() : EVP_sha256();
	EVP_PKEY_CTX *ctx;
	uint8_t sig[1024];
	size_t slen = sizeof(sig);
	int ok;

	if ((ctx = EVP_PKEY_CTX_new(key, NULL)) == NULL)
		return QES_ERR_ALLOC;
	ok = EVP_PKEY_sign_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, evp) == 1;
	if (ok && scheme == QES_SIG_RSA_PKCS1)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	if (ok && scheme == QES_SIG_RSA_PSS)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evp) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)dlen) == 1;
	ok = ok && EVP_PKEY_sign(ctx, sig, &slen, dg, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	if (!ok)
		return QES_ERR_CRYPTO;
	return qes_buf_put(out, sig, slen);
}

static EVP_PKEY *
load_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (f == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static int
write_out(const qes_buf *b, const char *path)
{
	return qes_buf_write_file(b, path, 0644);
}

struct opts {
	const char *cert, *key, *issuer, *md, *scheme, *in, *digest_hex, *level,
	    *tsa, *tsa_ca, *ocsp_url, *out, *content, *token_out, *sig_out, *max;
	const char *chain[MAX_CERTS], *extra[MAX_CERTS];
	size_t nchain, nextra;
	int enveloping, stream, no_time, crl_only, raw_ecdsa, bad_sig, direct;
};

static int
load_certs(const char *const *paths, size_t n, qes_cert **out)
{
	size_t i;
	int r;

	for (i = 0; i < n; i++)
		if ((r = qes_cert_from_file(paths[i], &out[i])) != 0)
			return r;
	return 0;
}

static int
cmd_sign(struct opts *o)
{
	qes_cert *signer = NULL, *chain[MAX_CERTS] = { 0 }, *extra[MAX_CERTS] = { 0 };
	qes_cades_params p;
	qes_cades_ctx *ctx = NULL;
	qes_buf *in = NULL, *dg = NULL, *sig = NULL, *cms = NULL, *next = NULL,
	    *raw = NULL;
	EVP_PKEY *key = NULL;
	qes_tsp_config tcfg;
	qes_timestamper ts;
	qes_rev_config rcfg;
	qes_ades_level level = QES_ADES_B_B;
	const uint8_t *tbs;
	char err[512] = "";
	size_t tlen, i;
	int r, rc = 1;

	memset(&p, 0, sizeof(p));
	if (o->cert == NULL || o->key == NULL || o->out == NULL ||
	    (o->in == NULL) == (o->digest_hex == NULL))
		return usage();
	if (o->level != NULL && qes_ades_level_from_name(o->level, &level) != 0)
		return usage();
	if ((r = qes_cert_from_file(o->cert, &signer)) != 0 ||
	    (r = load_certs(o->chain, o->nchain, chain)) != 0 ||
	    (r = load_certs(o->extra, o->nextra, extra)) != 0) {
		rc = fail("certificates", r, NULL);
		goto out;
	}
	if ((key = load_key(o->key)) == NULL) {
		fprintf(stderr, "qes-cades-tool: cannot read the key\n");
		goto out;
	}
	p.signer = signer;
	p.chain = (const qes_cert *const *)chain;
	p.nchain = o->nchain;
	p.md = QES_MD_SHA256;
	if (o->md != NULL && qes_md_from_name(o->md, &p.md) != 0)
		return usage();
	p.scheme = qes_cert_get_info(signer)->key_type == QES_KEY_EC ? QES_SIG_ECDSA :
	    QES_SIG_RSA_PKCS1;
	if (o->scheme != NULL && qes_sig_scheme_from_name(o->scheme, &p.scheme) != 0)
		return usage();
	p.enveloping = o->enveloping;
	p.omit_signing_time = o->no_time;
	if ((dg = qes_buf_new()) == NULL || (sig = qes_buf_new()) == NULL ||
	    (cms = qes_buf_new()) == NULL || (next = qes_buf_new()) == NULL ||
	    (raw = qes_buf_new()) == NULL)
		goto out;
	if (o->digest_hex != NULL) {
		if (qes_hex_decode(o->digest_hex, dg) != 0)
			return usage();
		p.content_digest = qes_buf_data(dg);
		p.content_digest_len = qes_buf_len(dg);
	} else if (o->stream) {
		p.content_path = o->in;
	} else {
		if ((r = qes_buf_read_file(o->in, QES_BUF_DEFAULT_MAX, &in)) != 0) {
			rc = fail("content", r, NULL);
			goto out;
		}
		p.content = qes_buf_data(in);
		p.content_len = qes_buf_len(in);
		if (p.content == NULL)
			p.content = (const uint8_t *)"";
	}
	if ((r = qes_cades_prepare(&p, &ctx)) != 0) {
		rc = fail("prepare", r, NULL);
		goto out;
	}
	tbs = qes_cades_tbs(ctx, &tlen);
	if ((r = soft_sign(key, p.scheme, p.md, tbs, tlen, sig)) != 0) {
		rc = fail("software signature", r, NULL);
		goto out;
	}
	if (o->bad_sig)
		qes_buf_mutable(sig)[qes_buf_len(sig) / 2] ^= 0x01;
	if (o->raw_ecdsa && p.scheme == QES_SIG_ECDSA) {
		size_t field = (qes_cert_get_info(signer)->key_bits + 7) / 8;

		if ((r = qes_ecdsa_der_to_raw(qes_buf_data(sig), qes_buf_len(sig), field,
		    raw)) != 0) {
			rc = fail("raw ECDSA", r, NULL);
			goto out;
		}
		qes_buf_reset(sig);
		(void)qes_buf_put(sig, qes_buf_data(raw), qes_buf_len(raw));
	}
	if (o->direct) {
		/* B-B straight to the output file (qes_cades_finish_file) */
		if (level != QES_ADES_B_B)
			return usage();
		if ((r = qes_cades_finish_file(ctx, qes_buf_data(sig), qes_buf_len(sig),
		    o->out, 0644)) != 0)
			rc = fail("finish", r, NULL);
		else
			rc = 0;
		goto out;
	}
	if ((r = qes_cades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), cms)) != 0) {
		rc = fail("finish", r, NULL);
		goto out;
	}
	if (level >= QES_ADES_B_T) {
		memset(&tcfg, 0, sizeof(tcfg));
		tcfg.url = o->tsa;
		tcfg.ca_file = o->tsa_ca;
		ts = qes_tsp_timestamper(&tcfg);
		if ((r = qes_cades_add_timestamp(qes_buf_data(cms), qes_buf_len(cms), &ts,
		    p.md, next, err, sizeof(err))) != 0) {
			rc = fail("timestamp", r, err);
			goto out;
		}
		qes_buf_reset(cms);
		(void)qes_buf_put(cms, qes_buf_data(next), qes_buf_len(next));
		qes_buf_reset(next);
	}
	if (level >= QES_ADES_B_LT) {
		memset(&rcfg, 0, sizeof(rcfg));
		rcfg.ocsp_url = o->ocsp_url;
		rcfg.mode = o->crl_only ? QES_REV_CRL_ONLY : QES_REV_OCSP_THEN_CRL;
		if ((r = qes_cades_extend_lt(qes_buf_data(cms), qes_buf_len(cms), &rcfg,
		    (const qes_cert *const *)extra, o->nextra, next, err, sizeof(err))) != 0) {
			rc = fail("B-LT", r, err);
			goto out;
		}
		qes_buf_reset(cms);
		(void)qes_buf_put(cms, qes_buf_data(next), qes_buf_len(next));
	}
	if ((r = write_out(cms, o->out)) != 0) {
		rc = fail("write", r, NULL);
		goto out;
	}
	rc = 0;
out:
	qes_cades_free(ctx);
	EVP_PKEY_free(key);
	for (i = 0; i < MAX_CERTS; i++) {
		qes_cert_free(chain[i]);
		qes_cert_free(extra[i]);
	}
	qes_cert_free(signer);
	qes_buf_free(raw);
	qes_buf_free(next);
	qes_buf_free(cms);
	qes_buf_free(sig);
	qes_buf_free(dg);
	qes_buf_free(in);
	return rc;
}

static int
cmd_fetch(const char *url, struct opts *o)
{
	qes_fetch_opts fo;
	qes_buf *body;
	char err[512] = "";
	int r;

	memset(&fo, 0, sizeof(fo));
	if (o->max != NULL)
		fo.max_response_bytes = (size_t)strtoull(o->max, NULL, 10);
	if ((body = qes_buf_new()) == NULL)
		return 1;
	r = qes_fetch_get(url, &fo, body, err, sizeof(err));
	if (r == 0 && o->out != NULL)
		r = write_out(body, o->out);
	if (r == 0)
		printf("fetched %zu bytes\n", qes_buf_len(body));
	qes_buf_free(body);
	return r == 0 ? 0 : fail("fetch", r, err);
}

static int
cmd_inspect(const char *path, const char *content, const struct opts *o)
{
	qes_cades_report rep;
	qes_buf *cms = NULL, *c = NULL;
	int r, rc = 1;

	if ((r = qes_buf_read_file(path, QES_BUF_DEFAULT_MAX, &cms)) != 0)
		return fail("read", r, NULL);
	if ((r = qes_cades_inspect(qes_buf_data(cms), qes_buf_len(cms), &rep)) != 0) {
		rc = fail("inspect", r, NULL);
		goto out;
	}
	printf("level=%s\nenveloping=%d\nmd=%s\nscheme=%s\nsigner=%s\nserial=%s\n"
	    "signature_ok=%d\ncontent_type=%d\nmessage_digest=%d\nsigning_time=%d\n"
	    "signing_cert_v2=%d\ntimestamp=%d\ntimestamp_imprint_ok=%d\n"
	    "certs=%zu\ncrls=%zu\nocsps=%zu\n",
	    qes_ades_level_name(rep.level), rep.enveloping,
	    rep.md != 0 ? qes_md_name(rep.md) : "?",
	    rep.scheme != 0 ? qes_sig_scheme_name(rep.scheme) : "?",
	    rep.signer_subject, rep.signer_serial_hex, rep.signature_ok,
	    rep.has_content_type, rep.has_message_digest, rep.has_signing_time,
	    rep.has_signing_cert_v2, rep.has_timestamp, rep.timestamp_imprint_ok,
	    rep.ncerts, rep.ncrls, rep.nocsps);
	if (rep.has_signing_time)
		printf("signing_time_unix=%lld\n", (long long)rep.signing_time);
	if (rep.has_timestamp)
		printf("timestamp_unix=%lld\n", (long long)rep.timestamp_time);
	if (o->token_out != NULL || o->sig_out != NULL) {
		qes_buf *tok = qes_buf_new(), *sv = qes_buf_new();

		r = tok == NULL || sv == NULL ? QES_ERR_ALLOC :
		    qes_cades_timestamp_token(qes_buf_data(cms), qes_buf_len(cms), tok, sv);
		if (r == 0 && o->token_out != NULL)
			r = write_out(tok, o->token_out);
		if (r == 0 && o->sig_out != NULL)
			r = write_out(sv, o->sig_out);
		qes_buf_free(tok);
		qes_buf_free(sv);
		if (r != 0) {
			rc = fail("timestamp token", r, NULL);
			goto out;
		}
	}
	if (content != NULL || rep.enveloping) {
		if (content != NULL &&
		    (r = qes_buf_read_file(content, QES_BUF_DEFAULT_MAX, &c)) != 0) {
			rc = fail("content", r, NULL);
			goto out;
		}
		r = qes_cades_verify_integrity(qes_buf_data(cms), qes_buf_len(cms),
		    c != NULL ? qes_buf_data(c) : NULL, c != NULL ? qes_buf_len(c) : 0, 0);
		printf("integrity=%s\n", r == 0 ? "ok" : qes_errname(r));
	}
	rc = 0;
out:
	qes_buf_free(c);
	qes_buf_free(cms);
	return rc;
}

static int
cmd_status(struct opts *o)
{
	qes_cert *cert = NULL, *issuer = NULL;
	qes_rev_config cfg;
	qes_rev_result res;
	char err[512] = "";
	int r, rc = 1;

	if (o->cert == NULL || o->issuer == NULL)
		return usage();
	if ((r = qes_cert_from_file(o->cert, &cert)) != 0 ||
	    (r = qes_cert_from_file(o->issuer, &issuer)) != 0) {
		rc = fail("certificates", r, NULL);
		goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.ocsp_url = o->ocsp_url;
	r = o->crl_only ? qes_crl_check(&cfg, cert, issuer, &res, NULL, err, sizeof(err)) :
	    qes_ocsp_check(&cfg, cert, issuer, &res, NULL, err, sizeof(err));
	if (r != 0) {
		rc = fail("status", r, err);
		goto out;
	}
	printf("status=%s\nsource=%s\nreason=%d\n", qes_rev_status_name(res.status),
	    res.source == QES_REV_SRC_OCSP ? "ocsp" : "crl", res.reason);
	rc = 0;
out:
	qes_cert_free(issuer);
	qes_cert_free(cert);
	return rc;
}

static int
cmd_timestamp(struct opts *o)
{
	qes_tsp_config cfg;
	qes_buf *tok = NULL;
	uint8_t h[QES_MD_MAX_LEN];
	char err[512] = "";
	int r, rc = 1;

	if (o->tsa == NULL || o->tsa_ca == NULL || o->in == NULL || o->out == NULL)
		return usage();
	if ((r = qes_md_file(QES_MD_SHA256, o->in, h)) != 0)
		return fail("content", r, NULL);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = o->tsa;
	cfg.ca_file = o->tsa_ca;
	if ((tok = qes_buf_new()) == NULL)
		return 1;
	if ((r = qes_tsp_timestamp(&cfg, QES_MD_SHA256, h, 32, tok, err, sizeof(err))) != 0)
		rc = fail("timestamp", r, err);
	else if ((r = write_out(tok, o->out)) != 0)
		rc = fail("write", r, NULL);
	else
		rc = 0;
	qes_buf_free(tok);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "chain", required_argument, NULL, 'C' },
		{ "issuer", required_argument, NULL, 'I' },
		{ "md", required_argument, NULL, 'm' },
		{ "scheme", required_argument, NULL, 's' },
		{ "in", required_argument, NULL, 'i' },
		{ "digest", required_argument, NULL, 'd' },
		{ "level", required_argument, NULL, 'l' },
		{ "tsa", required_argument, NULL, 't' },
		{ "tsa-ca", required_argument, NULL, 'T' },
		{ "extra", required_argument, NULL, 'x' },
		{ "ocsp-url", required_argument, NULL, 'u' },
		{ "out", required_argument, NULL, 'o' },
		{ "content", required_argument, NULL, 'n' },
		{ "token-out", required_argument, NULL, 'K' },
		{ "sig-out", required_argument, NULL, 'V' },
		{ "max", required_argument, NULL, 'X' },
		{ "enveloping", no_argument, NULL, 'e' },
		{ "stream", no_argument, NULL, 'S' },
		{ "no-signing-time", no_argument, NULL, 'N' },
		{ "crl-only", no_argument, NULL, 'R' },
		{ "raw-ecdsa", no_argument, NULL, 'w' },
		{ "bad-signature", no_argument, NULL, 'B' },
		{ "direct", no_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o;
	const char *cmd;
	int ch;

	memset(&o, 0, sizeof(o));
	if (argc < 2)
		return usage();
	cmd = argv[1];
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'C':
			if (o.nchain == MAX_CERTS)
				return usage();
			o.chain[o.nchain++] = optarg;
			break;
		case 'x':
			if (o.nextra == MAX_CERTS)
				return usage();
			o.extra[o.nextra++] = optarg;
			break;
		case 'I': o.issuer = optarg; break;
		case 'm': o.md = optarg; break;
		case 's': o.scheme = optarg; break;
		case 'i': o.in = optarg; break;
		case 'd': o.digest_hex = optarg; break;
		case 'l': o.level = optarg; break;
		case 't': o.tsa = optarg; break;
		case 'T': o.tsa_ca = optarg; break;
		case 'u': o.ocsp_url = optarg; break;
		case 'o': o.out = optarg; break;
		case 'n': o.content = optarg; break;
		case 'K': o.token_out = optarg; break;
		case 'V': o.sig_out = optarg; break;
		case 'X': o.max = optarg; break;
		case 'e': o.enveloping = 1; break;
		case 'S': o.stream = 1; break;
		case 'N': o.no_time = 1; break;
		case 'R': o.crl_only = 1; break;
		case 'w': o.raw_ecdsa = 1; break;
		case 'B': o.bad_sig = 1; break;
		case 'D': o.direct = 1; break;
		default: return usage();
		}
	}
	if (strcmp(cmd, "sign") == 0)
		return cmd_sign(&o);
	if (strcmp(cmd, "inspect") == 0 && optind < argc)
		return cmd_inspect(argv[optind], o.content, &o);
	if (strcmp(cmd, "fetch") == 0 && optind < argc)
		return cmd_fetch(argv[optind], &o);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(&o);
	if (strcmp(cmd, "timestamp") == 0)
		return cmd_timestamp(&o);
	return usage();
}
