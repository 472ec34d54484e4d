/*
 * sign.c - `qes sign`: sign with a local token. --raw signs a file's
 * digest and writes the bare value; --format makes an AdES signature
 * (PAdES, CAdES, XAdES, JAdES at B-B .. B-LTA) through sign_ades.c.
 *
 * The file is hashed here (streaming, so its size does not matter), the
 * signer sees the dialog through pinentry and types the PIN once, the token
 * signs, the value is checked against the certificate, and only then is the
 * signature written (atomically). The result is the bare signature value:
 * RSA as the token returns it, ECDSA as DER (or r||s with --ecdsa-format raw),
 * which `openssl dgst -verify` / `openssl pkeyutl -verify` accept.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "api.h"
#include "sign_ades.h"
#include "sign_remote.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/signer.h"
#include "qes/tool.h"

static void
usage(FILE *f)
{
	fputs("usage: qes sign --raw --in FILE --out SIGNATURE [OPTIONS]\n"
	    "       qes sign --format pades|cades|xades|jades [--level B-B|B-T|B-LT|B-LTA]\n"
	    "                [--packaging P] --in FILE --out FILE [OPTIONS]\n"
	    "\n"
	    "       qes sign --remote --credential crd_... --format F [--level L]\n"
	    "                --in FILE --out FILE [--description TEXT] [API OPTIONS]\n"
	    "\n"
	    "Sign FILE with a certificate's private key on a local PKCS#11 token.\n"
	    "The PIN is asked through pinentry, once; the token is logged out\n"
	    "afterwards. With --remote the key is on a signer's desktop behind a qesd\n"
	    "gateway: the signature is prepared here, only its digest is sent, the\n"
	    "signer confirms on their desktop and the value finishes it here.\n"
	    "\n"
	    "  --raw                 write the bare signature value of FILE's digest\n"
	    "  --format F            write an AdES signature: pades, cades, xades, jades\n"
	    "  --level L             B-B (default), B-T, B-LT, B-LTA (PAdES, XAdES)\n"
	    "  --packaging P         cades: detached (default) | enveloping;\n"
	    "                        xades: enveloped (default) | detached;\n"
	    "                        jades: json (default) | compact | detached\n"
	    "  --tsa URL             RFC 3161 timestamp authority (B-T and above)\n"
	    "  --tsa-ca FILE         PEM trust anchors for the TSA certificate\n"
	    "  --tsa-untrusted FILE  PEM intermediates for the TSA, if it sends none\n"
	    "  --tsa-policy OID      policy to ask the TSA for\n"
	    "  --trust FILE          PEM CA certificates: the signer's chain (embedded\n"
	    "                        without the root) and, for B-LT, the chains' anchors\n"
	    "  --ocsp URL            OCSP responder instead of the certificate's AIA\n"
	    "  --crl URL             CRL instead of the certificate's CDP\n"
	    "  --revocation M        ocsp,crl (default: OCSP, CRL when it fails) | ocsp | crl\n"
	    "  --field NAME --reason TEXT --location TEXT   PAdES signature field\n"
	    "  --doc-name NAME       XAdES detached: the reference (default: FILE's name)\n"
	    "  --mime TYPE           XAdES detached / JAdES: the document's media type\n"
	    "  --in FILE             file to sign (hashed here, streaming)\n"
	    "  --out FILE            where to write the signature value\n"
	    "  --token SERIAL|LABEL  token to use (default: any)\n"
	    "  --key ID|LABEL|REF    certificate: CKA_ID hex, label, or SERIAL:ID\n"
	    "                        (default: the only qualified certificate with a key)\n"
	    "  --md sha256|sha384|sha512           digest algorithm (default sha256)\n"
	    "  --scheme rsa-pkcs1|rsa-pss|ecdsa    (default: rsa-pkcs1 for RSA, ecdsa for EC)\n"
	    "  --ecdsa-format der|raw  ECDSA output encoding (default der)\n"
	    "  --cert-out FILE       also write the signer's certificate (PEM)\n"
	    "  --title TEXT          what the signer is told they sign (default: file name)\n"
	    "  --pinentry PROGRAM    pinentry program (default $QES_PINENTRY, else pinentry)\n"
	    "  --module PATH         also load this PKCS#11 module (repeatable)\n"
	    "  --only-module         load only --module paths and $QES_PKCS11_MODULES\n"
	    "\n"
	    "--remote (with --format; --md, --scheme, --title and the --format options\n"
	    "as above, no token options):\n"
	    "  --credential ID       the signer's credential (GET /v1/credentials)\n"
	    "  --description TEXT    shown to the signer under the title\n"
	    CLI_API_OPTIONS_HELP
	    "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 PIN incorrect,\n"
	    "5 PIN locked, 6 cancelled or declined, 7 token or device error, 8 bad\n"
	    "signature; --remote also 10 authentication refused, 11 server unreachable\n"
	    "or TLS failure, 12 rate-limited or server busy.\n", f);
}

static int
write_cert_pem(const qes_cert *c, const char *path)
{
	const uint8_t *der, *q;
	size_t len;
	X509 *x = NULL;
	BIO *bio = NULL;
	BUF_MEM *mem;
	qes_buf *b = NULL;
	int r = QES_ERR_CRYPTO;

	der = qes_cert_der(c, &len);
	q = der;
	if ((x = d2i_X509(NULL, &q, (long)len)) == NULL ||
	    (bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509(bio, x) ||
	    BIO_get_mem_ptr(bio, &mem) != 1)
		goto out;
	if ((b = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_buf_put(b, mem->data, mem->length)) == 0)
		r = qes_buf_write_file(b, path, 0644);
 out:
	qes_buf_free(b);
	BIO_free(bio);
	X509_free(x);
	return r;
}

int
cli_cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "raw", no_argument, NULL, 'r' },
		{ "format", required_argument, NULL, 'F' },
		{ "level", required_argument, NULL, 'L' },
		{ "packaging", required_argument, NULL, 'P' },
		{ "tsa", required_argument, NULL, 1000 },
		{ "tsa-ca", required_argument, NULL, 1001 },
		{ "tsa-untrusted", required_argument, NULL, 1002 },
		{ "tsa-policy", required_argument, NULL, 1003 },
		{ "trust", required_argument, NULL, 1004 },
		{ "ocsp", required_argument, NULL, 1005 },
		{ "crl", required_argument, NULL, 1006 },
		{ "revocation", required_argument, NULL, 1007 },
		{ "field", required_argument, NULL, 1008 },
		{ "reason", required_argument, NULL, 1009 },
		{ "location", required_argument, NULL, 1010 },
		{ "doc-name", required_argument, NULL, 1011 },
		{ "mime", required_argument, NULL, 1012 },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "token", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "md", required_argument, NULL, 'd' },
		{ "scheme", required_argument, NULL, 's' },
		{ "ecdsa-format", required_argument, NULL, 'e' },
		{ "cert-out", required_argument, NULL, 'c' },
		{ "title", required_argument, NULL, 'T' },
		{ "pinentry", required_argument, NULL, 'p' },
		{ "module", required_argument, NULL, 'm' },
		{ "only-module", no_argument, NULL, 'O' },
		{ "remote", no_argument, NULL, 1013 },
		{ "credential", required_argument, NULL, 1014 },
		{ "description", required_argument, NULL, 1015 },
		CLI_API_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *in = NULL, *out = NULL, *token = NULL, *key = NULL;
	const char *cert_out = NULL, *title = NULL, *scheme_name = NULL;
	qes_tool_modules mods = { 0 };
	qes_pinentry_opts pe_opts = { 0 };
	qes_sign_request req = { 0 };
	qes_sign_result res = { 0 };
	qes_p11_inventory *inv = NULL;
	const qes_p11_token *t;
	const qes_p11_cred *c;
	const qes_cert_info *ci;
	qes_p11 *p = NULL;
	uint8_t digest[QES_MD_MAX_LEN];
	const uint8_t *digests[1] = { digest };
	cli_ades_opts ao = { 0 };
	cli_api_opts co = { 0 };
	cli_remote_opts ro = { 0 };
	int remote = 0, local_opt = 0;
	char err[256];
	int ch, raw = 0, r, rc = QES_EXIT_FAILURE, token_failed = 0;

	req.md = QES_MD_SHA256;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "ri:o:t:k:d:s:e:c:T:p:m:Oh", opts, NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			return QES_EXIT_USAGE;
		if (r > 0)
			continue;
		if (strchr("tkecpmO", ch) != NULL)
			local_opt = 1;
		switch (ch) {
		case 1013: remote = 1; break;
		case 1014: ro.credential = optarg; break;
		case 1015: ro.description = optarg; break;
		case 'r': raw = 1; break;
		case 'F': ao.format = optarg; break;
		case 'L': ao.level = optarg; break;
		case 'P': ao.packaging = optarg; break;
		case 1000: ao.tsa_url = optarg; break;
		case 1001: ao.tsa_ca = optarg; break;
		case 1002: ao.tsa_untrusted = optarg; break;
		case 1003: ao.tsa_policy = optarg; break;
		case 1004: ao.trust = optarg; break;
		case 1005: ao.ocsp_url = optarg; break;
		case 1006: ao.crl_url = optarg; break;
		case 1007: ao.revocation = optarg; break;
		case 1008: ao.field = optarg; break;
		case 1009: ao.reason = optarg; break;
		case 1010: ao.location = optarg; break;
		case 1011: ao.doc_name = optarg; break;
		case 1012: ao.mime = optarg; break;
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 't': token = optarg; break;
		case 'k': key = optarg; break;
		case 'c': cert_out = optarg; break;
		case 'T': title = optarg; break;
		case 'p': pe_opts.program = optarg; break;
		case 'O': mods.only_explicit = 1; break;
		case 'd':
			if (qes_md_from_name(optarg, &req.md) != 0) {
				fprintf(stderr, "qes sign: unknown digest \"%s\"\n", optarg);
				return QES_EXIT_USAGE;
			}
			break;
		case 's':
			scheme_name = optarg;
			break;
		case 'e':
			if (strcmp(optarg, "raw") == 0)
				req.ecdsa_raw = 1;
			else if (strcmp(optarg, "der") != 0) {
				fprintf(stderr, "qes sign: --ecdsa-format is der or raw\n");
				return QES_EXIT_USAGE;
			}
			break;
		case 'm':
			if (qes_tool_modules_add(&mods, optarg) != 0) {
				fprintf(stderr, "qes sign: too many --module options\n");
				return QES_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return QES_EXIT_OK;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc || in == NULL || out == NULL) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (raw == (ao.format != NULL)) {
		fprintf(stderr, "qes sign: give either --raw or --format\n");
		return QES_EXIT_USAGE;
	}
	if (raw && (ao.level != NULL || ao.packaging != NULL || ao.tsa_url != NULL)) {
		fprintf(stderr, "qes sign: --level, --packaging and --tsa go with --format\n");
		return QES_EXIT_USAGE;
	}
	ao.in = in;
	ao.out = out;
	if (remote != (ro.credential != NULL)) {
		fprintf(stderr, "qes sign: --remote and --credential go together\n");
		return QES_EXIT_USAGE;
	}
	if (!remote && (ro.description != NULL || co.server != NULL || co.ca_file != NULL ||
	    co.key_file != NULL || co.timeout_s != 0)) {
		fprintf(stderr, "qes sign: --description and the API options go with "
		    "--remote\n");
		return QES_EXIT_USAGE;
	}
	if (remote) {
		if (raw || local_opt) {
			fprintf(stderr, "qes sign: --remote signs --format only, without "
			    "--raw, token, key, module, pinentry, --ecdsa-format or "
			    "--cert-out options\n");
			return QES_EXIT_USAGE;
		}
		if (scheme_name != NULL) {
			if (qes_sig_scheme_from_name(scheme_name, &ro.scheme) != 0) {
				fprintf(stderr, "qes sign: unknown scheme \"%s\"\n",
				    scheme_name);
				return QES_EXIT_USAGE;
			}
			ro.scheme_set = 1;
		}
		cli_api_wipe_json_memory();
		ro.api = &co;
		ro.md = req.md;
		ro.title = title != NULL ? title : in;
		return cli_sign_remote(&ao, &ro);
	}
	if (raw && (r = qes_md_file(req.md, in, digest)) != 0) {
		fprintf(stderr, "qes sign: cannot read %s: %s\n", in, qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = qes_p11_new(&p)) != 0 || (r = qes_tool_load_modules(p, &mods)) != 0 ||
	    (r = qes_p11_scan(p, &inv)) != 0) {
		fprintf(stderr, "qes sign: %s\n", qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = qes_tool_find_cred(inv, token, key, &t, &c, err, sizeof(err))) != 0) {
		fprintf(stderr, "qes sign: %s\n", err);
		rc = qes_tool_exit_code(r);
		goto out;
	}
	ci = qes_cert_get_info(c->cert);
	if (scheme_name != NULL) {
		if (qes_sig_scheme_from_name(scheme_name, &req.scheme) != 0) {
			fprintf(stderr, "qes sign: unknown scheme \"%s\"\n", scheme_name);
			rc = QES_EXIT_USAGE;
			goto out;
		}
	} else
		req.scheme = ci->key_type == QES_KEY_EC ? QES_SIG_ECDSA : QES_SIG_RSA_PKCS1;
	if (c->cls != QES_CERT_QUALIFIED)
		fprintf(stderr, "qes sign: warning: certificate %s is %s, not a qualified "
		    "signing certificate: the signature will not be a QES\n",
		    c->id_hex, qes_cert_class_name(c->cls));
	req.requester = "qes command line";
	req.title = title != NULL ? title : in;
	req.digests = digests;
	req.n_digests = 1;
	if (!raw) {
		r = cli_sign_ades(&ao, p, t, c, &req, &pe_opts, &res, &token_failed);
		if (r == 0 && cert_out != NULL && (r = write_cert_pem(c->cert, cert_out)) != 0)
			fprintf(stderr, "qes sign: cannot write %s: %s\n", cert_out,
			    qes_strerror(r));
		if (r == 0)
			rc = QES_EXIT_OK;
		else if (!token_failed)
			rc = qes_tool_exit_code(r);
		if (r == 0 || !token_failed)
			goto out;
	} else
		r = qes_sign_local(p, t, c, &req, &pe_opts, &res);
	if (r != 0) {
		fprintf(stderr, "qes sign: %s: %s\n", qes_strerror(r), res.errmsg);
		if (r == QES_ERR_PIN_INCORRECT)
			fprintf(stderr, "qes sign: token \"%s\" now reports:%s%s%s\n", t->label,
			    res.token_flags & QES_TOK_PIN_COUNT_LOW ? " PIN count low" : "",
			    res.token_flags & QES_TOK_PIN_FINAL_TRY ? " PIN final try" : "",
			    res.token_flags & QES_TOK_PIN_LOCKED ? " PIN locked" :
			    (res.token_flags & (QES_TOK_PIN_COUNT_LOW | QES_TOK_PIN_FINAL_TRY)) ?
			    "" : " no retry warning");
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = qes_buf_write_file(res.sigs[0], out, 0644)) != 0 ||
	    (cert_out != NULL && (r = write_cert_pem(c->cert, cert_out)) != 0)) {
		fprintf(stderr, "qes sign: cannot write output: %s\n", qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	printf("signed %s: %s %s, %zu-byte signature by \"%s\" (%s) on token \"%s\" -> %s\n",
	    in, qes_md_name(req.md), qes_sig_scheme_name(req.scheme),
	    qes_buf_len(res.sigs[0]), ci->subject_cn, qes_cert_class_name(c->cls),
	    t->label, out);
	rc = QES_EXIT_OK;
 out:
	qes_sign_result_clear(&res);
	qes_p11_inventory_free(inv);
	qes_p11_free(p);
	return rc;
}
