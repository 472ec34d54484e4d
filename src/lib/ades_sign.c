/*
 * ades_sign.c - the one two-phase signing API (include/qes/sign.h) over
 * cades.c, pades.c, xades.c and jades.c.
 *
 * It decides what each format is given (a file path, the document in
 * memory - the caller's or read from the file within the format's limit -
 * or a digest), adds the levels the
 * formats leave to their caller (CAdES timestamp and validation data; the
 * B-LT data of XAdES and JAdES, gathered here for the signer's chain and,
 * through a wrapped timestamper, for the TSA of the token actually
 * received) and writes the result atomically, or appends it to the
 * caller's buffer. Which TSA and which
 * revocation sources are used is the caller's choice: nothing here picks a
 * URL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/err.h"
#include "qes/jades.h"
#include "qes/pades.h"
#include "qes/sign.h"
#include "qes/tsp.h"
#include "qes/xades.h"

struct qes_ades_ctx {
	qes_ades_format format;
	qes_ades_level level;
	qes_ades_packaging packaging;
	qes_md md;
	qes_sig_scheme scheme;
	const qes_cert *signer;
	const qes_cert *const *chain;
	size_t nchain;
	const qes_cert *const *extra;
	size_t nextra;
	const qes_rev_config *rev;
	qes_timestamper user_tsa;
	qes_timestamper tsa;		/* wraps user_tsa, gathers the TSA's data */
	char *out_path;
	qes_buf *out_buf;		/* the caller's, instead of out_path */
	unsigned mode;
	qes_buf *doc;
	qes_ades_blob chain_blobs[QES_ADES_SIGN_MAX_CHAIN];
	qes_vdata *vd, *tsa_vd;
	qes_ades_vdata vd_view, tsa_view;
	qes_cades_ctx *cades;
	qes_pades_ctx *pades;
	qes_xades_ctx *xades;
	qes_jades_ctx *jades;
	int finished;
	char err[512];
};

static const char *const pkg_names[] = {
	[QES_ADES_PKG_DETACHED] = "detached",
	[QES_ADES_PKG_ENVELOPING] = "enveloping",
	[QES_ADES_PKG_ENVELOPED] = "enveloped",
	[QES_ADES_PKG_COMPACT] = "compact",
	[QES_ADES_PKG_JSON] = "json",
};

const char *
qes_ades_packaging_name(qes_ades_packaging p)
{
	if ((int)p <= 0 || (size_t)p >= sizeof(pkg_names) / sizeof(pkg_names[0]))
		return NULL;
	return pkg_names[p];
}

int
qes_ades_packaging_from_name(const char *name, qes_ades_packaging *out)
{
	size_t i;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 1; i < sizeof(pkg_names) / sizeof(pkg_names[0]); i++)
		if (strcasecmp(name, pkg_names[i]) == 0) {
			*out = (qes_ades_packaging)i;
			return 0;
		}
	return QES_ERR_INVALID_ARG;
}

static int
fail(qes_ades_ctx *ctx, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(qes_ades_ctx *ctx, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	return r;
}

const char *
qes_ades_errmsg(const qes_ades_ctx *ctx)
{
	return ctx != NULL ? ctx->err : "no context";
}

void
qes_ades_free(qes_ades_ctx *ctx)
{
	if (ctx == NULL)
		return;
	qes_cades_free(ctx->cades);
	qes_pades_free(ctx->pades);
	qes_xades_free(ctx->xades);
	qes_jades_free(ctx->jades);
	qes_vdata_free(ctx->vd);
	qes_vdata_free(ctx->tsa_vd);
	qes_buf_free(ctx->doc);
	free(ctx->out_path);
	free(ctx);
}

/* the name people write, for messages */
static const char *
format_title(qes_ades_format f)
{
	switch (f) {
	case QES_ADES_CADES: return "CAdES";
	case QES_ADES_PADES: return "PAdES";
	case QES_ADES_XADES: return "XAdES";
	case QES_ADES_JADES: return "JAdES";
	}
	return "?";
}

/* The packaging each format takes, and its default (the first). */
static int
check_packaging(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	qes_ades_packaging k = p->packaging;
	int ok;

	switch (p->format) {
	case QES_ADES_CADES:
		if (k == QES_ADES_PKG_DEFAULT)
			k = QES_ADES_PKG_DETACHED;
		ok = k == QES_ADES_PKG_DETACHED || k == QES_ADES_PKG_ENVELOPING;
		break;
	case QES_ADES_PADES:
		if (k == QES_ADES_PKG_DEFAULT)
			k = QES_ADES_PKG_ENVELOPED;
		ok = k == QES_ADES_PKG_ENVELOPED;
		break;
	case QES_ADES_XADES:
		if (k == QES_ADES_PKG_DEFAULT)
			k = QES_ADES_PKG_ENVELOPED;
		ok = k == QES_ADES_PKG_ENVELOPED || k == QES_ADES_PKG_DETACHED;
		break;
	case QES_ADES_JADES:
		if (k == QES_ADES_PKG_DEFAULT)
			k = QES_ADES_PKG_JSON;
		ok = k == QES_ADES_PKG_JSON || k == QES_ADES_PKG_COMPACT ||
		    k == QES_ADES_PKG_DETACHED;
		break;
	default:
		return fail(ctx, QES_ERR_INVALID_ARG, "unknown format %d", (int)p->format);
	}
	if (!ok)
		return fail(ctx, QES_ERR_UNSUPPORTED, "%s has no %s packaging",
		    format_title(p->format), qes_ades_packaging_name(k) ?
		    qes_ades_packaging_name(k) : "such");
	ctx->packaging = k;
	return 0;
}

static int
check_level(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	const char *fn = format_title(p->format), *ln;

	if ((ln = qes_ades_level_name(p->level)) == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG, "unknown level %d", (int)p->level);
	if (p->level == QES_ADES_B_LTA && (p->format == QES_ADES_CADES ||
	    p->format == QES_ADES_JADES))
		return fail(ctx, QES_ERR_UNSUPPORTED, "%s B-LTA (archive timestamp) is not "
		    "produced by qes: choose B-LT, or PAdES/XAdES for B-LTA", fn);
	if (p->format == QES_ADES_JADES && ctx->packaging == QES_ADES_PKG_COMPACT &&
	    p->level > QES_ADES_B_B)
		return fail(ctx, QES_ERR_UNSUPPORTED, "a JAdES compact JWS has no unprotected "
		    "header and so is B-B only: use the json packaging for %s", ln);
	if (p->level >= QES_ADES_B_T && (p->tsa == NULL || p->tsa->fn == NULL))
		return fail(ctx, QES_ERR_INVALID_ARG, "%s needs a timestamp authority", ln);
	return 0;
}

static int
check_input(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	int hash_only = p->doc_digest != NULL;
	const char *c;

	if ((p->in_path != NULL) + (p->in_data != NULL) + hash_only != 1)
		return fail(ctx, QES_ERR_INVALID_ARG, "give exactly one of in_path, in_data "
		    "and doc_digest");
	if ((p->out_path == NULL) == (p->out_buf == NULL))
		return fail(ctx, QES_ERR_INVALID_ARG, "give exactly one of out_path and "
		    "out_buf");
	if (p->id_seed != NULL) {
		if (strlen(p->id_seed) > QES_ADES_MAX_ID_SEED)
			return fail(ctx, QES_ERR_LIMIT, "id_seed has at most %d bytes",
			    QES_ADES_MAX_ID_SEED);
		for (c = p->id_seed; *c != '\0'; c++)
			if (*c < 0x21 || *c > 0x7e)
				return fail(ctx, QES_ERR_INVALID_ARG, "id_seed must be "
				    "printable ASCII without spaces");
	}
	if (p->in_data != NULL && p->format == QES_ADES_XADES &&
	    ctx->packaging == QES_ADES_PKG_DETACHED && p->doc_name == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG, "a detached XAdES signature of a "
		    "document in memory needs doc_name for its reference");
	if (!hash_only)
		return 0;
	if (p->doc_digest_len != qes_md_len(p->md))
		return fail(ctx, QES_ERR_INVALID_ARG, "doc_digest must be %zu bytes",
		    qes_md_len(p->md));
	if (!((p->format == QES_ADES_CADES || p->format == QES_ADES_XADES) &&
	    ctx->packaging == QES_ADES_PKG_DETACHED))
		return fail(ctx, QES_ERR_UNSUPPORTED, "%s %s needs the document, not its "
		    "digest", format_title(p->format),
		    qes_ades_packaging_name(ctx->packaging));
	if (p->level >= QES_ADES_B_LTA)
		return fail(ctx, QES_ERR_UNSUPPORTED, "the archive timestamp of B-LTA covers "
		    "the document itself: hash-only signing goes up to B-LT");
	if (p->format == QES_ADES_XADES && p->doc_name == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG, "a detached XAdES signature of a digest "
		    "needs doc_name for its reference");
	return 0;
}

/*
 * The timestamper the formats see: the caller's, and for B-LT the TSA's
 * validation data gathered from the first token (the signature timestamp;
 * XAdES and JAdES put its data in before any later timestamp).
 */
static int
tsa_wrap(void *arg, qes_md md, const uint8_t *digest, size_t digest_len,
    qes_buf *token_out, char *err, size_t errlen)
{
	qes_ades_ctx *ctx = arg;
	qes_rev_config trev;
	size_t before = qes_buf_len(token_out);
	int r;

	if ((r = ctx->user_tsa.fn(ctx->user_tsa.arg, md, digest, digest_len, token_out,
	    err, errlen)) != 0)
		return r;
	if (ctx->level < QES_ADES_B_LT || ctx->tsa_vd != NULL)
		return 0;
	if ((ctx->tsa_vd = qes_vdata_new()) == NULL)
		return QES_ERR_ALLOC;
	if (ctx->rev != NULL)
		trev = *ctx->rev;
	else
		memset(&trev, 0, sizeof(trev));
	trev.ocsp_url = NULL;	/* configured URLs are the signer's responders */
	trev.crl_url = NULL;
	/* the token is a SignedData whose signer is the TSA */
	if ((r = qes_cades_collect_vdata(qes_buf_data(token_out) + before,
	    qes_buf_len(token_out) - before, &trev, ctx->extra, ctx->nextra, ctx->tsa_vd,
	    err, errlen)) != 0)
		return r;
	ctx->tsa_view = *qes_vdata_view(ctx->tsa_vd);
	return 0;
}

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s != NULL ? s + 1 : path;
}

static int
prepare_cades(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	qes_cades_params cp = { 0 };
	int r;

	cp.signer = p->signer;
	cp.chain = p->chain;
	cp.nchain = p->nchain;
	cp.md = p->md;
	cp.scheme = p->scheme;
	cp.enveloping = ctx->packaging == QES_ADES_PKG_ENVELOPING;
	cp.content_path = p->in_path;
	cp.content = p->in_data;
	cp.content_len = p->in_data != NULL ? p->in_len : 0;
	cp.content_digest = p->doc_digest;
	cp.content_digest_len = p->doc_digest_len;
	cp.signing_time = p->signing_time;
	if ((r = qes_cades_prepare(&cp, &ctx->cades)) != 0)
		return fail(ctx, r, "CAdES: %s", qes_strerror(r));
	return 0;
}

static int
prepare_pades(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	qes_pades_params pp = { 0 };
	int r;

	pp.in_path = p->in_path;
	pp.in_data = p->in_data;
	pp.in_len = p->in_data != NULL ? p->in_len : 0;
	pp.out_path = p->out_path;
	pp.out_buf = p->out_buf;
	pp.id_seed = p->id_seed;
	pp.level = p->level;
	pp.signer = p->signer;
	pp.chain = p->chain;
	pp.nchain = p->nchain;
	pp.md = p->md;
	pp.scheme = p->scheme;
	pp.signing_time = (time_t)p->signing_time;
	pp.field_name = p->pdf_field_name;
	pp.reason = p->pdf_reason;
	pp.location = p->pdf_location;
	pp.tsa = p->level >= QES_ADES_B_T ? &ctx->user_tsa : NULL;
	pp.timestamp_reserve = p->timestamp_reserve;
	pp.rev = p->rev;
	pp.extra = p->extra;
	pp.nextra = p->nextra;
	if ((r = qes_pades_prepare(&pp, &ctx->pades)) != 0)
		return fail(ctx, r, "PAdES: %s", qes_pades_errmsg(ctx->pades));
	return 0;
}

static int
prepare_xml_json(qes_ades_ctx *ctx, const qes_ades_sign_params *p)
{
	size_t i, len, max = p->format == QES_ADES_XADES ? QES_XADES_MAX_DOC_BYTES :
	    QES_JADES_MAX_PAYLOAD_BYTES;
	const qes_ades_vdata *vd = p->level >= QES_ADES_B_LT ? &ctx->vd_view : NULL;
	const qes_ades_vdata *tvd = p->level >= QES_ADES_B_LT ? &ctx->tsa_view : NULL;
	const qes_timestamper *ts = p->level >= QES_ADES_B_T ? &ctx->tsa : NULL;
	const uint8_t *doc = NULL;
	size_t doc_len = 0;
	int r;

	for (i = 0; i < p->nchain; i++) {
		ctx->chain_blobs[i].data = qes_cert_der(p->chain[i], &len);
		ctx->chain_blobs[i].len = len;
	}
	if (p->in_path != NULL && (r = qes_buf_read_file(p->in_path, max, &ctx->doc)) != 0)
		return fail(ctx, r, r == QES_ERR_LIMIT ? "%s: larger than the %zu bytes %s "
		    "signs" : "cannot read %s (%zu bytes at most for %s)", p->in_path, max,
		    format_title(p->format));
	if (p->in_data != NULL && p->in_len > max)
		return fail(ctx, QES_ERR_LIMIT, "the document (%zu bytes) is larger than the "
		    "%zu bytes %s signs", p->in_len, max, format_title(p->format));
	if (p->in_data != NULL) {
		doc = p->in_data;
		doc_len = p->in_len;
	} else if (ctx->doc != NULL) {
		doc = qes_buf_data(ctx->doc);
		doc_len = qes_buf_len(ctx->doc);
	} else if (p->in_path != NULL) {
		doc = (const uint8_t *)"";	/* an empty file */
	}
	if (p->format == QES_ADES_XADES) {
		qes_xades_params xp = { 0 };

		xp.packaging = ctx->packaging == QES_ADES_PKG_DETACHED ? QES_XADES_DETACHED :
		    QES_XADES_ENVELOPED;
		xp.level = p->level;
		xp.doc = doc;
		xp.doc_len = doc_len;
		xp.detached_digest = p->doc_digest;
		xp.detached_name = p->doc_name != NULL ? p->doc_name :
		    (p->in_path != NULL ? base_name(p->in_path) : NULL);
		xp.mime_type = p->mime_type;
		xp.signer = p->signer;
		xp.chain = ctx->chain_blobs;
		xp.nchain = p->nchain;
		xp.scheme = p->scheme;
		xp.md = p->md;
		xp.signing_time = p->signing_time;
		xp.tsa = ts;
		xp.vdata = vd;
		xp.tsa_vdata = tvd;
		xp.id_seed = p->id_seed;
		if ((r = qes_xades_prepare(&xp, &ctx->xades)) != 0)
			return fail(ctx, r, "XAdES: %s", qes_xades_errmsg(ctx->xades));
		return 0;
	}
	{
		qes_jades_params jp = { 0 };

		jp.serialization = ctx->packaging == QES_ADES_PKG_COMPACT ? QES_JADES_COMPACT :
		    QES_JADES_JSON;
		jp.level = p->level;
		jp.payload = doc;
		jp.payload_len = doc_len;
		jp.detached = ctx->packaging == QES_ADES_PKG_DETACHED;
		jp.cty = p->mime_type;
		jp.signer = p->signer;
		jp.chain = ctx->chain_blobs;
		jp.nchain = p->nchain;
		jp.scheme = p->scheme;
		jp.md = p->md;
		jp.signing_time = p->signing_time;
		jp.tsa = ts;
		jp.vdata = vd;
		jp.tsa_vdata = tvd;
		if ((r = qes_jades_prepare(&jp, &ctx->jades)) != 0)
			return fail(ctx, r, "JAdES: %s", qes_jades_errmsg(ctx->jades));
	}
	return 0;
}

int
qes_ades_prepare(const qes_ades_sign_params *p, qes_ades_ctx **out)
{
	qes_ades_ctx *ctx;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (p == NULL)
		return QES_ERR_INVALID_ARG;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	*out = ctx;
	if (p->signer == NULL || (p->chain == NULL && p->nchain) ||
	    (p->extra == NULL && p->nextra))
		return fail(ctx, QES_ERR_INVALID_ARG, "signer is required");
	if (p->in_data == NULL && p->in_len != 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "in_len is set without in_data");
	if (p->nchain > QES_ADES_SIGN_MAX_CHAIN || p->nextra > QES_ADES_SIGN_MAX_EXTRA)
		return fail(ctx, QES_ERR_LIMIT, "at most %d chain and %d extra certificates",
		    QES_ADES_SIGN_MAX_CHAIN, QES_ADES_SIGN_MAX_EXTRA);
	if (qes_md_len(p->md) == 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "unknown digest algorithm");
	if ((r = check_packaging(ctx, p)) != 0 || (r = check_level(ctx, p)) != 0 ||
	    (r = check_input(ctx, p)) != 0)
		return r;
	if (p->in_path != NULL && p->out_path != NULL && strcmp(p->in_path, p->out_path) == 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "the output must not be the input file");
	if (p->out_path != NULL && (ctx->out_path = strdup(p->out_path)) == NULL)
		return QES_ERR_ALLOC;
	ctx->out_buf = p->out_buf;
	ctx->format = p->format;
	ctx->level = p->level;
	ctx->md = p->md;
	ctx->scheme = p->scheme;
	ctx->signer = p->signer;
	ctx->chain = p->chain;
	ctx->nchain = p->nchain;
	ctx->extra = p->extra;
	ctx->nextra = p->nextra;
	ctx->rev = p->rev;
	ctx->mode = p->out_mode != 0 ? p->out_mode : 0644;
	if (p->tsa != NULL)
		ctx->user_tsa = *p->tsa;
	ctx->tsa = (qes_timestamper){ tsa_wrap, ctx };
	switch (p->format) {
	case QES_ADES_CADES:
		return prepare_cades(ctx, p);
	case QES_ADES_PADES:
		return prepare_pades(ctx, p);
	default:
		return prepare_xml_json(ctx, p);
	}
}

int
qes_ades_tbs(const qes_ades_ctx *ctx, qes_md *md, qes_sig_scheme *scheme,
    const uint8_t **digest, size_t *len)
{
	qes_md m;
	qes_sig_scheme s;

	if (ctx == NULL || digest == NULL || len == NULL)
		return QES_ERR_INVALID_ARG;
	if (md != NULL)
		*md = ctx->md;
	if (scheme != NULL)
		*scheme = ctx->scheme;
	if (ctx->cades != NULL) {
		*digest = qes_cades_tbs(ctx->cades, len);
		return 0;
	}
	if (ctx->pades != NULL)
		return qes_pades_tbs(ctx->pades, digest, len, NULL, NULL);
	if (ctx->xades != NULL)
		return qes_xades_tbs(ctx->xades, digest, len, &m, &s);
	if (ctx->jades != NULL)
		return qes_jades_tbs(ctx->jades, digest, len, &m, &s);
	return QES_ERR_INVALID_ARG;
}

/* B-LT: the validation data of the signer's chain (embedded chain and the
 * caller's extra certificates as the pool). */
static int
gather_signer_vdata(qes_ades_ctx *ctx)
{
	const qes_cert *pool[QES_ADES_SIGN_MAX_CHAIN + QES_ADES_SIGN_MAX_EXTRA];
	const qes_cert *chain[QES_REV_MAX_CHAIN];
	size_t n = 0, i, nc;
	char err[256];
	int r;

	for (i = 0; i < ctx->nchain; i++)
		pool[n++] = ctx->chain[i];
	for (i = 0; i < ctx->nextra; i++)
		pool[n++] = ctx->extra[i];
	if ((ctx->vd = qes_vdata_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_chain_build(ctx->signer, pool, n, chain, QES_REV_MAX_CHAIN, &nc)) != 0)
		return fail(ctx, r, "cannot build the signer's chain: %s", qes_strerror(r));
	err[0] = '\0';
	if ((r = qes_vdata_add_chain(ctx->vd, ctx->rev, chain, nc, err, sizeof(err))) != 0)
		return fail(ctx, r, "validation data for the signer: %s",
		    err[0] ? err : qes_strerror(r));
	ctx->vd_view = *qes_vdata_view(ctx->vd);
	return 0;
}

/* The result to out_path (atomically) or appended to out_buf. */
static int
put_output(qes_ades_ctx *ctx, const qes_buf *res)
{
	int r;

	if (ctx->out_buf != NULL) {
		if ((r = qes_buf_put(ctx->out_buf, qes_buf_data(res), qes_buf_len(res))) != 0)
			return fail(ctx, r, "the result (%zu bytes) does not fit the output "
			    "buffer", qes_buf_len(res));
		return 0;
	}
	if ((r = qes_buf_write_file(res, ctx->out_path, ctx->mode)) != 0)
		return fail(ctx, r, "cannot write %s: %s", ctx->out_path, qes_strerror(r));
	return 0;
}

static int
finish_cades(qes_ades_ctx *ctx, const uint8_t *sig, size_t len)
{
	/* enveloping: the document's plaintext, wiped when released */
	qes_buf *cms = qes_buf_new_secret(), *next = qes_buf_new_secret(), *t;
	char err[256];
	int r;

	if (cms == NULL || next == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	/* B-B enveloping streams the content to the file; B-T and above
	 * rewrite the CMS and so hold it */
	if (ctx->level == QES_ADES_B_B && ctx->out_path != NULL) {
		if ((r = qes_cades_finish_file(ctx->cades, sig, len, ctx->out_path,
		    ctx->mode)) != 0)
			fail(ctx, r, r == QES_ERR_SIGNATURE_INVALID ? "the signature value does "
			    "not verify with the signer's certificate" : "CAdES: %s",
			    qes_strerror(r));
		goto out;
	}
	if ((r = qes_cades_finish(ctx->cades, sig, len, cms)) != 0) {
		fail(ctx, r, r == QES_ERR_SIGNATURE_INVALID ? "the signature value does not "
		    "verify with the signer's certificate" : "CAdES: %s", qes_strerror(r));
		goto out;
	}
	if (ctx->level == QES_ADES_B_B) {
		r = put_output(ctx, cms);
		goto out;
	}
	err[0] = '\0';
	if ((r = qes_cades_add_timestamp(qes_buf_data(cms), qes_buf_len(cms), &ctx->user_tsa,
	    ctx->md, next, err, sizeof(err))) != 0) {
		fail(ctx, r, "signature timestamp: %s", err[0] ? err : qes_strerror(r));
		goto out;
	}
	t = cms;
	cms = next;
	next = t;
	if (ctx->level >= QES_ADES_B_LT) {
		qes_buf_reset(next);
		err[0] = '\0';
		if ((r = qes_cades_extend_lt(qes_buf_data(cms), qes_buf_len(cms), ctx->rev,
		    ctx->extra, ctx->nextra, next, err, sizeof(err))) != 0) {
			fail(ctx, r, "validation data: %s", err[0] ? err : qes_strerror(r));
			goto out;
		}
		t = cms;
		cms = next;
		next = t;
	}
	r = put_output(ctx, cms);
 out:
	qes_buf_free(cms);
	qes_buf_free(next);
	return r;
}

int
qes_ades_finish(qes_ades_ctx *ctx, const uint8_t *sig, size_t len)
{
	qes_buf *out = NULL;
	const uint8_t *dig;
	size_t dlen;
	int r;

	if (ctx == NULL || sig == NULL || len == 0)
		return QES_ERR_INVALID_ARG;
	if (ctx->finished)
		return fail(ctx, QES_ERR_INVALID_ARG, "this signature was finished already");
	ctx->finished = 1;
	ctx->err[0] = '\0';
	if (ctx->cades != NULL)
		return finish_cades(ctx, sig, len);
	if (ctx->pades != NULL) {
		if ((r = qes_pades_finish(ctx->pades, sig, len)) != 0)
			fail(ctx, r, "PAdES: %s", qes_pades_errmsg(ctx->pades));
		return r;
	}
	/* check the value before asking anybody for validation data */
	if ((r = qes_ades_tbs(ctx, NULL, NULL, &dig, &dlen)) != 0)
		return r;
	if (qes_cert_verify_digest(ctx->signer, ctx->scheme, ctx->md, dig, dlen, sig,
	    len) != 0)
		return fail(ctx, QES_ERR_SIGNATURE_INVALID, "the signature value does not "
		    "verify with the signer's certificate");
	if (ctx->level >= QES_ADES_B_LT && (r = gather_signer_vdata(ctx)) != 0)
		return r;
	/* holds the document (enveloped XML, JWS payload): wiped when released */
	if ((out = qes_buf_new_secret()) == NULL)
		return QES_ERR_ALLOC;
	if (ctx->xades != NULL) {
		if ((r = qes_xades_finish(ctx->xades, sig, len, out)) != 0)
			fail(ctx, r, "XAdES: %s", qes_xades_errmsg(ctx->xades));
	} else if ((r = qes_jades_finish(ctx->jades, sig, len, out)) != 0)
		fail(ctx, r, "JAdES: %s", qes_jades_errmsg(ctx->jades));
	if (r == 0)
		r = put_output(ctx, out);
	qes_buf_free(out);
	return r;
}
