/*
 * verify.c - `qes verify FILE`: what each signature in a signed file is
 * and whether it holds.
 *
 * The format is told from the bytes: a PDF (%PDF- in the first KiB), a CMS
 * (DER SEQUENCE, or PEM "PKCS7"/"CMS"), XML with ds:Signature, a JWS
 * (JSON object or compact). libqes reads the signatures (qes/verify.h):
 * integrity of each (the value over what it covers). Here, with the trust
 * anchors of --trust: the signer's chain (X509_verify_cert with the
 * certificates found in the signature as intermediates) and the timestamp
 * token (qes_tsp_token_verify: its signature, the TSA's chain, the
 * imprint). Without --trust only the timestamp's imprint is compared.
 *
 * Exit codes: 0 every signature valid; 8 any integrity or timestamp
 * failure; 1 (none of those, but) a signature this build cannot check (an
 * algorithm xmlsec1 lacks) or unreadable input; 9 (none of those, but) a
 * chain that does not reach a trust anchor; 2 usage; 3 file not found.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cli.h"
#include "qes/buf.h"
#include "qes/err.h"
#include "qes/jades.h"
#include "qes/pdf.h"
#include "qes/tool.h"
#include "qes/tsp.h"
#include "qes/verify.h"
#include "qes/xades.h"

#define MAX_TRUST 16
/* a CMS (enveloping: the content inside) is mapped, not copied */
#define MAX_CMS_BYTES ((uint64_t)4 * 1024 * 1024 * 1024)

typedef enum { F_PDF = 1, F_CMS, F_PEM, F_XML, F_JWS } file_kind;

typedef struct verdict {
	int integrity;			/* 1 ok */
	int ts_present, ts_ok;		/* ts_ok: 1 ok, 0 failed, -1 not checked */
	int64_t ts_time;
	char ts_msg[256];
	int chain;			/* 1 ok, 0 failed, -1 not checked */
	char chain_msg[256];
	char subject[256], issuer[256], serial[64];
} verdict;

static void
usage(FILE *f)
{
	fputs("usage: qes verify FILE [--content FILE] [--trust FILE]... [--json]\n"
	    "\n"
	    "Reports every signature of FILE (PAdES PDF, CAdES CMS in DER or PEM,\n"
	    "XAdES XML, JAdES JWS compact or JSON): format, level, signer, claimed\n"
	    "signing time, timestamp, integrity, certificate chain, revocation data.\n"
	    "\n"
	    "  --content FILE  the signed content of a detached signature\n"
	    "  --trust FILE    PEM trust anchors (root CAs) for the signer's and the\n"
	    "                  TSA's chains; repeatable. Without it no chain is checked.\n"
	    "  --json          one JSON object on stdout instead of text\n"
	    "\n"
	    "Exit codes: 0 all signatures valid, 8 a signature or timestamp does not\n"
	    "verify, 13 a certificate chain does not reach a --trust anchor, 2 usage,\n"
	    "3 file not found, 1 unreadable or unsupported input.\n", f);
}

static file_kind
detect(const uint8_t *p, size_t n)
{
	size_t i, lim = n < 1024 ? n : 1024, dots = 0;

	for (i = 0; i + 5 <= lim; i++)
		if (memcmp(p + i, "%PDF-", 5) == 0)
			return F_PDF;
	if (n > 0 && p[0] == 0x30)
		return F_CMS;
	i = 0;
	if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
		i++;
	if (i < n && n - i >= 10 && memcmp(p + i, "-----BEGIN", 10) == 0)
		return F_PEM;
	if (i < n && p[i] == '<')
		return F_XML;
	if (i < n && p[i] == '{')
		return F_JWS;
	for (; i < n; i++) {
		if (p[i] == '.')
			dots++;
		else if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '_' ||
		    p[i] == '\n' || p[i] == '\r'))
			return 0;
	}
	return dots == 2 ? F_JWS : 0;
}

/* The certificates of a report as an OpenSSL stack (signer first). */
static STACK_OF(X509) *
report_certs(const qes_verify_report *r)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	const unsigned char *p, *end;
	X509 *x;

	if (sk == NULL || r->certs == NULL)
		return sk;
	p = qes_buf_data(r->certs);
	end = p + qes_buf_len(r->certs);
	while (p < end && sk_X509_num(sk) < 64) {
		if ((x = d2i_X509(NULL, &p, end - p)) == NULL)
			break;
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			break;
		}
	}
	ERR_clear_error();
	return sk;
}

static void
name_of(const X509_NAME *n, char *out, size_t outsz)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long len;

	out[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (len = BIO_get_mem_data(b, &p)) > 0)
		snprintf(out, outsz, "%.*s", (int)len, p);
	BIO_free(b);
}

static void
check_chain(X509_STORE *store, const qes_verify_report *r, verdict *v)
{
	STACK_OF(X509) *sk = report_certs(r);
	X509_STORE_CTX *ctx = NULL;
	X509 *signer;
	ASN1_INTEGER *sn;
	BIGNUM *bn;
	char *hex;
	int err;

	v->chain = -1;
	if (sk == NULL || sk_X509_num(sk) == 0 || !r->signer_found) {
		snprintf(v->chain_msg, sizeof(v->chain_msg), "no signer certificate in the signature");
		v->chain = store != NULL ? 0 : -1;
		goto out;
	}
	signer = sk_X509_value(sk, 0);
	name_of(X509_get_subject_name(signer), v->subject, sizeof(v->subject));
	name_of(X509_get_issuer_name(signer), v->issuer, sizeof(v->issuer));
	sn = X509_get_serialNumber(signer);
	if ((bn = ASN1_INTEGER_to_BN(sn, NULL)) != NULL && (hex = BN_bn2hex(bn)) != NULL) {
		snprintf(v->serial, sizeof(v->serial), "%s", hex);
		OPENSSL_free(hex);
	}
	BN_free(bn);
	if (store == NULL) {
		snprintf(v->chain_msg, sizeof(v->chain_msg), "not checked (no --trust)");
		goto out;
	}
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, store, signer, sk) != 1) {
		v->chain = 0;
		snprintf(v->chain_msg, sizeof(v->chain_msg), "OpenSSL could not set up the check");
		goto out;
	}
	if (X509_verify_cert(ctx) == 1) {
		v->chain = 1;
		snprintf(v->chain_msg, sizeof(v->chain_msg), "valid to a --trust anchor");
		goto out;
	}
	err = X509_STORE_CTX_get_error(ctx);
	/* a certificate that expired after a verified timestamp: check at that time */
	if (err == X509_V_ERR_CERT_HAS_EXPIRED && v->ts_ok == 1) {
		X509_STORE_CTX_cleanup(ctx);
		if (X509_STORE_CTX_init(ctx, store, signer, sk) == 1) {
			X509_STORE_CTX_set_time(ctx, 0, (time_t)v->ts_time);
			if (X509_verify_cert(ctx) == 1) {
				v->chain = 1;
				snprintf(v->chain_msg, sizeof(v->chain_msg),
				    "valid to a --trust anchor at the timestamp's time");
				goto out;
			}
			err = X509_STORE_CTX_get_error(ctx);
		}
	}
	v->chain = 0;
	snprintf(v->chain_msg, sizeof(v->chain_msg), "%s (depth %d)",
	    X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx));
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(sk, X509_free);
}

static void
check_timestamp(X509_STORE *store, const qes_verify_report *r, verdict *v)
{
	qes_tsp_token_info ti;
	qes_tsp_config cfg;
	char err[256] = "";

	v->ts_present = r->ts_token != NULL && qes_buf_len(r->ts_token) > 0;
	v->ts_ok = -1;
	if (!v->ts_present)
		return;
	if (qes_tsp_token_parse(qes_buf_data(r->ts_token), qes_buf_len(r->ts_token), &ti) != 0 ||
	    r->ts_md == 0) {
		v->ts_ok = 0;
		snprintf(v->ts_msg, sizeof(v->ts_msg), "the timestamp token is unreadable");
		return;
	}
	v->ts_time = ti.gen_time;
	if (ti.imprint_len != r->ts_digest_len ||
	    memcmp(ti.imprint, r->ts_digest, r->ts_digest_len) != 0) {
		v->ts_ok = 0;
		snprintf(v->ts_msg, sizeof(v->ts_msg), "the token's imprint does not match %s",
		    r->doc_timestamp ? "the signed byte ranges" : "the signature value");
		return;
	}
	if (store == NULL) {
		snprintf(v->ts_msg, sizeof(v->ts_msg),
		    "imprint matches; token and TSA not checked (no --trust)");
		return;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.trust_store = store;
	if (qes_tsp_token_verify(&cfg, qes_buf_data(r->ts_token), qes_buf_len(r->ts_token),
	    r->ts_md, r->ts_digest, r->ts_digest_len, err, sizeof(err)) != 0) {
		v->ts_ok = 0;
		snprintf(v->ts_msg, sizeof(v->ts_msg), "%s", err[0] != '\0' ? err :
		    "the token does not verify");
		return;
	}
	v->ts_ok = 1;
	snprintf(v->ts_msg, sizeof(v->ts_msg), "valid (imprint, token signature, TSA chain)");
}

/* A document timestamp has no signer of its own: the TSA is its signer,
 * and its chain was checked with the token (check_timestamp). */
static void
doc_timestamp_signer(const qes_verify_report *r, verdict *v)
{
	qes_tsp_token_info ti;

	if (r->ts_token != NULL && qes_tsp_token_parse(qes_buf_data(r->ts_token),
	    qes_buf_len(r->ts_token), &ti) == 0) {
		snprintf(v->subject, sizeof(v->subject), "%s", ti.tsa_subject);
		snprintf(v->serial, sizeof(v->serial), "%s", ti.serial_hex);
	}
	v->chain = v->ts_ok == 0 ? -1 : v->ts_ok;
	snprintf(v->chain_msg, sizeof(v->chain_msg), "%s", v->ts_ok == 1 ?
	    "the TSA's, valid with the token" : v->ts_ok == 0 ?
	    "the TSA's: see the timestamp" : "not checked (no --trust)");
}

static const char *
fmt_name(qes_ades_format f)
{
	switch (f) {
	case QES_ADES_CADES: return "CAdES";
	case QES_ADES_PADES: return "PAdES";
	case QES_ADES_XADES: return "XAdES";
	case QES_ADES_JADES: return "JAdES";
	}
	return "?";
}

static void
iso_time(int64_t t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	out[0] = '\0';
	if (gmtime_r(&tt, &tm) != NULL)
		strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
print_text(const qes_verify_report *r, const verdict *v, size_t i, size_t n,
    uint64_t file_size)
{
	char when[32];

	printf("signature %zu of %zu: %s %s%s%s%s\n", i + 1, n, fmt_name(r->format),
	    r->doc_timestamp ? "document timestamp" :
	    qes_ades_level_name(r->level) != NULL ? qes_ades_level_name(r->level) : "?",
	    r->name[0] != '\0' ? " (" : "", r->name, r->name[0] != '\0' ? ")" : "");
	if (v->subject[0] != '\0')
		printf("  %-13s %s\n  %-13s %s\n  %-13s %s\n", r->doc_timestamp ? "TSA:" :
		    "signer:", v->subject, "issuer:", v->issuer, "serial:", v->serial);
	if (r->algorithm[0] != '\0')
		printf("  %-13s %s\n", "algorithm:", r->algorithm);
	if (r->signing_time[0] != '\0')
		printf("  %-13s %s (claimed)\n", "signing time:", r->signing_time);
	if (r->format == QES_ADES_PADES)
		printf("  %-13s bytes 0..%llu of %llu, all but /Contents%s\n", "covers:",
		    (unsigned long long)r->revision_end, (unsigned long long)file_size,
		    r->covers_whole ? " (the whole file)" :
		    " (a revision; later updates follow it)");
	printf("  %-13s %s%s\n", "integrity:", r->integrity_ok ? "valid" :
	    r->unsupported ? "NOT CHECKED: " : "FAILED: ", r->integrity_ok ? "" :
	    r->integrity_err);
	if (v->ts_present) {
		iso_time(v->ts_time, when, sizeof(when));
		printf("  %-13s %s%s%s: %s\n", "timestamp:", when[0] != '\0' ? when : "?",
		    v->ts_ok == 0 ? " " : "", v->ts_ok == 0 ? "FAILED" : "", v->ts_msg);
	} else {
		printf("  %-13s none\n", "timestamp:");
	}
	printf("  %-13s %s%s\n", "chain:", v->chain == 0 ? "FAILED: " : "", v->chain_msg);
	printf("  %-13s %zu certificates, %zu OCSP responses, %zu CRLs%s\n",
	    "revocation:", r->vd_certs, r->vd_ocsps, r->vd_crls,
	    r->format == QES_ADES_PADES ? " (signature and DSS)" : "");
}

static json_t *
to_json(const qes_verify_report *r, const verdict *v, uint64_t file_size)
{
	char when[32];
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	iso_time(v->ts_time, when, sizeof(when));
	json_object_set_new(o, "format", json_string(fmt_name(r->format)));
	json_object_set_new(o, "level", r->doc_timestamp ? json_string("document-timestamp") :
	    qes_ades_level_name(r->level) != NULL ? json_string(qes_ades_level_name(r->level)) :
	    json_null());
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "signer", json_pack("{s:s,s:s,s:s}", "subject", v->subject,
	    "issuer", v->issuer, "serial", v->serial));
	json_object_set_new(o, "algorithm", json_string(r->algorithm));
	json_object_set_new(o, "signing_time", r->signing_time[0] != '\0' ?
	    json_string(r->signing_time) : json_null());
	json_object_set_new(o, "integrity", json_pack("{s:o,s:s}", "ok", r->unsupported ?
	    json_null() : json_boolean(r->integrity_ok), "error", r->integrity_ok ? "" :
	    r->integrity_err));
	json_object_set_new(o, "timestamp", !v->ts_present ? json_null() :
	    json_pack("{s:s,s:o,s:s}", "time", when, "ok", v->ts_ok < 0 ? json_null() :
	    json_boolean(v->ts_ok), "detail", v->ts_msg));
	json_object_set_new(o, "chain", json_pack("{s:o,s:s}", "ok", v->chain < 0 ?
	    json_null() : json_boolean(v->chain), "detail", v->chain_msg));
	json_object_set_new(o, "revocation", json_pack("{s:I,s:I,s:I}", "certificates",
	    (json_int_t)r->vd_certs, "ocsp", (json_int_t)r->vd_ocsps, "crl",
	    (json_int_t)r->vd_crls));
	if (r->format == QES_ADES_PADES)
		json_object_set_new(o, "byte_range", json_pack("{s:[IIII],s:b,s:I}", "range",
		    (json_int_t)r->byte_range[0], (json_int_t)r->byte_range[1],
		    (json_int_t)r->byte_range[2], (json_int_t)r->byte_range[3],
		    "whole_file", r->covers_whole, "file_size", (json_int_t)file_size));
	return o;
}

static X509_STORE *
load_trust(const char *const *files, size_t n)
{
	X509_STORE *st;
	size_t i;

	if (n == 0)
		return NULL;
	if ((st = X509_STORE_new()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (X509_STORE_load_file(st, files[i]) != 1) {
			fprintf(stderr, "qes verify: --trust %s: no PEM certificate could be read\n",
			    files[i]);
			X509_STORE_free(st);
			ERR_clear_error();
			return NULL;
		}
	}
	return st;
}

/* PEM "PKCS7" / "CMS" to DER */
static int
pem_to_der(const uint8_t *p, size_t n, qes_buf *out)
{
	BIO *b = n <= 0x7fffffff ? BIO_new_mem_buf(p, (int)n) : NULL;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long len = 0;
	int r = QES_ERR_FORMAT;

	if (b == NULL)
		return QES_ERR_LIMIT;
	if (PEM_read_bio(b, &name, &header, &data, &len) == 1 &&
	    (strcmp(name, "PKCS7") == 0 || strcmp(name, "CMS") == 0 ||
	    strcmp(name, "PKCS #7 SIGNED DATA") == 0) && len > 0)
		r = qes_buf_put(out, data, (size_t)len);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(b);
	ERR_clear_error();
	return r;
}

int
cli_cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "content", required_argument, NULL, 'c' },
		{ "trust", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *trust[MAX_TRUST], *content = NULL, *path;
	size_t ntrust = 0, n = 0, i;
	int ch, json_out = 0, need_content = 0, unsupported = 0, rc = QES_EXIT_FAILURE, fd = -1, r, bad_sig = 0, bad_chain = 0;
	X509_STORE *store = NULL;
	qes_verify_report *reps = NULL;
	qes_pdf *pdf = NULL;
	qes_pdf_limits lim;
	qes_buf *der = NULL, *cbuf = NULL;
	uint8_t *map = NULL;
	uint64_t size = 0;
	struct stat st;
	char err[256] = "";
	json_t *jarr = NULL;
	verdict *vs = NULL;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': content = optarg; break;
		case 't':
			if (ntrust == MAX_TRUST) {
				fprintf(stderr, "qes verify: at most %d --trust files\n", MAX_TRUST);
				return QES_EXIT_USAGE;
			}
			trust[ntrust++] = optarg;
			break;
		case 'j': json_out = 1; break;
		case 'h':
			usage(stdout);
			return QES_EXIT_OK;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	path = argv[optind];
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "qes verify: %s: %s\n", path, strerror(errno));
		rc = errno == ENOENT ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		fprintf(stderr, "qes verify: %s: not a regular, non-empty file\n", path);
		goto out;
	}
	if (content != NULL && access(content, R_OK) != 0) {
		fprintf(stderr, "qes verify: --content %s: %s\n", content, strerror(errno));
		rc = errno == ENOENT ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
		goto out;
	}
	if (ntrust > 0 && (store = load_trust(trust, ntrust)) == NULL) {
		rc = QES_EXIT_USAGE;
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (size > MAX_CMS_BYTES || size > SIZE_MAX) {
		fprintf(stderr, "qes verify: %s: larger than 4 GiB\n", path);
		rc = QES_EXIT_FAILURE;
		goto out;
	}
	if ((map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
		map = NULL;
		fprintf(stderr, "qes verify: %s: %s\n", path, strerror(errno));
		goto out;
	}
	switch (detect(map, (size_t)size)) {
	case F_PDF:
		qes_pdf_limits_default(&lim);
		if ((r = qes_pdf_open_fd(fd, &lim, &pdf, err, sizeof(err))) != 0 ||
		    (r = qes_verify_pdf(pdf, &reps, &n, err, sizeof(err))) != 0) {
			fprintf(stderr, "qes verify: %s: %s: %s\n", path, qes_strerror(r), err);
			goto out;
		}
		break;
	case F_PEM:
	case F_CMS: {
		const uint8_t *cms = map;
		size_t clen = (size_t)size;
		uint8_t dg[QES_MD_MAX_LEN];
		qes_md md;

		if ((der = qes_buf_new()) == NULL)
			goto out;
		if (map[0] != 0x30) {
			if ((r = pem_to_der(map, (size_t)size, der)) != 0) {
				fprintf(stderr, "qes verify: %s: not a PEM PKCS7/CMS block\n", path);
				goto out;
			}
			cms = qes_buf_data(der);
			clen = qes_buf_len(der);
		}
		if ((r = qes_verify_cms_md(cms, clen, &md)) != 0) {
			fprintf(stderr, "qes verify: %s: not a CMS SignedData with one signer "
			    "(%s)\n", path, qes_strerror(r));
			goto out;
		}
		if (content != NULL && (r = qes_md_file(md, content, dg)) != 0) {
			fprintf(stderr, "qes verify: --content %s: %s\n", content, qes_strerror(r));
			goto out;
		}
		if ((reps = calloc(1, sizeof(*reps))) == NULL)
			goto out;
		n = 1;
		qes_verify_report_init(&reps[0]);
		if ((r = qes_verify_cms(cms, clen, content != NULL ? dg : NULL,
		    content != NULL ? qes_md_len(md) : 0, &reps[0])) != 0) {
			fprintf(stderr, "qes verify: %s: %s\n", path, qes_strerror(r));
			goto out;
		}
		break;
	}
	case F_XML:
		if (size > QES_XADES_MAX_DOC_BYTES) {
			fprintf(stderr, "qes verify: %s: larger than the XAdES limit of %zu bytes\n",
			    path, QES_XADES_MAX_DOC_BYTES);
			goto out;
		}
		if ((r = qes_verify_xades(map, (size_t)size, content, &reps, &n, err,
		    sizeof(err))) != 0) {
			fprintf(stderr, "qes verify: %s: %s: %s\n", path, qes_strerror(r), err);
			goto out;
		}
		break;
	case F_JWS:
		if (content != NULL && (r = qes_buf_read_file(content,
		    QES_JADES_MAX_PAYLOAD_BYTES, &cbuf)) != 0) {
			fprintf(stderr, "qes verify: --content %s: %s\n", content, qes_strerror(r));
			goto out;
		}
		if ((r = qes_verify_jades(map, (size_t)size, cbuf != NULL ?
		    (qes_buf_data(cbuf) != NULL ? qes_buf_data(cbuf) : (const uint8_t *)"") :
		    NULL, cbuf != NULL ? qes_buf_len(cbuf) : 0, &reps, &n, err,
		    sizeof(err))) != 0) {
			fprintf(stderr, "qes verify: %s: %s: %s\n", path, qes_strerror(r), err);
			rc = r == QES_ERR_INVALID_ARG ? QES_EXIT_USAGE : QES_EXIT_FAILURE;
			goto out;
		}
		break;
	default:
		fprintf(stderr, "qes verify: %s: not a PDF, CMS, XML or JWS file\n", path);
		goto out;
	}
	if (n == 0) {
		fprintf(stderr, "qes verify: %s: no signature found\n", path);
		rc = QES_EXIT_NOT_FOUND;
		goto out;
	}
	if ((vs = calloc(n, sizeof(*vs))) == NULL || (json_out && (jarr = json_array()) == NULL))
		goto out;
	for (i = 0; i < n; i++) {
		check_timestamp(store, &reps[i], &vs[i]);
		if (reps[i].doc_timestamp)
			doc_timestamp_signer(&reps[i], &vs[i]);
		else
			check_chain(store, &reps[i], &vs[i]);
		if (!reps[i].integrity_ok) {
			if (reps[i].unsupported)
				unsupported = 1;
			else
				bad_sig = 1;
			fprintf(stderr, "qes verify: signature %zu: integrity: %s\n", i + 1,
			    reps[i].integrity_err);
		}
		if (vs[i].ts_ok == 0) {
			bad_sig = 1;
			fprintf(stderr, "qes verify: signature %zu: timestamp: %s\n", i + 1,
			    vs[i].ts_msg);
		}
		if (vs[i].chain == 0) {
			bad_chain = 1;
			fprintf(stderr, "qes verify: signature %zu: chain: %s\n", i + 1,
			    vs[i].chain_msg);
		}
		if (json_out)
			json_array_append_new(jarr, to_json(&reps[i], &vs[i], size));
		else
			print_text(&reps[i], &vs[i], i, n, size);
	}
	for (i = 0; i < n; i++)
		if (reps[i].needs_content)
			need_content = 1;
	rc = need_content ? QES_EXIT_USAGE : bad_sig ? QES_EXIT_BAD_SIGNATURE :
	    unsupported ? QES_EXIT_FAILURE : bad_chain ? QES_EXIT_UNTRUSTED : QES_EXIT_OK;
	if (json_out) {
		json_t *doc = json_pack("{s:s,s:b,s:o}", "file", path, "valid", rc == QES_EXIT_OK,
		    "signatures", jarr);

		jarr = NULL;
		if (doc != NULL) {
			json_dumpf(doc, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(doc);
		}
	} else {
		printf("%zu signature%s: %s\n", n, n == 1 ? "" : "s", rc == QES_EXIT_OK ?
		    "all valid" : need_content ? "detached: give the signed content with --content" :
		    bad_sig ? "INVALID" : unsupported ? "NOT CHECKED (unsupported algorithm)" :
		    "chain not trusted");
	}
out:
	json_decref(jarr);
	free(vs);
	for (i = 0; reps != NULL && i < n; i++)
		qes_verify_report_clear(&reps[i]);
	free(reps);
	qes_buf_free(cbuf);
	qes_buf_free(der);
	qes_pdf_free(pdf);
	if (map != NULL)
		munmap(map, (size_t)size);
	if (fd >= 0)
		close(fd);
	X509_STORE_free(store);
	return rc;
}
