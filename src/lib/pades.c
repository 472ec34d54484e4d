/*
 * pades.c - PAdES baseline (ETSI EN 319 142-1): the composition of the PDF
 * layer (pdf.c, pdf_write.c), CAdES (cades.c, cades_levels.c), the
 * timestamp hook and the revocation gathering (revocation.c) into one
 * two-phase signature. See include/qes/pades.h for the sequence.
 *
 * The /Contents reservation is counted from the certificate and key that
 * will really be used rather than padded blindly: a huge placeholder costs
 * every reader of the document, a short one fails the signature. What
 * cannot be known before the signature exists (the TSA's token) has its
 * own reserve, and the document timestamp of B-LTA is sized from the
 * signature timestamp token actually received from the same hook.
 *
 * Each step of finish writes a file of its own beside out_path (names
 * reserved with mkstemp), the PDF layer replacing it atomically; the last
 * one is renamed onto out_path. A failure at any step unlinks them all, so
 * out_path holds either the old file or the complete signed one.
 *
 * With an output buffer (the gateway, which keeps no plaintext on disk)
 * the steps are the same with a buffer per step instead of a file (a
 * "slot"), the document read from memory at each step, and the last slot
 * appended to the caller's buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "cert_priv.h"
#include "der.h"
#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/err.h"
#include "qes/pades.h"
#include "qes/tsp.h"

/* Temporary files (or buffers) of one signature: signed, DSS, document
 * timestamp; FINAL is out_path (or the caller's buffer). */
#define MAX_TMP 3
#define FINAL MAX_TMP
/* structure of the document timestamp's CMS beyond the received token */
#define DOC_TST_SLACK ((size_t)1024)

struct qes_pades_ctx {
	qes_ades_level level;
	qes_md md;
	qes_sig_scheme scheme;
	const qes_cert *signer;
	qes_timestamper tsa;
	int has_tsa;
	const qes_rev_config *rev;
	const qes_cert *const *extra;
	size_t nextra;
	const qes_pdf_limits *limits;
	char *out_path;
	char *tmp[MAX_TMP];		/* reserved names; NULL once gone */
	qes_buf *out_buf;		/* the caller's, instead of out_path */
	qes_buf *stage[MAX_TMP];	/* with out_buf: the steps' documents */
	char *id_seed;
	qes_pdf *pdf;
	qes_pdf_sign_ctx *sctx;
	qes_cades_ctx *cctx;
	size_t reserve;
	int finished;			/* a finish was attempted */
	char err[512];
};

static void
set_err(qes_pades_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_err(qes_pades_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
}

/* DER length of a TLV with a value of n bytes */
static size_t
tlv_len(size_t n)
{
	if (n < 0x80)
		return 2 + n;
	if (n < 0x100)
		return 3 + n;
	if (n < 0x10000)
		return 4 + n;
	return 5 + n;
}

/* Largest signature value the signer's key makes, DER for ECDSA. */
static size_t
sig_value_max(const qes_cert *c)
{
	const qes_cert_info *ci = qes_cert_get_info(c);
	size_t n = (ci->key_bits + 7) / 8;

	if (ci->key_bits == 0)
		return 0;
	if (ci->key_type == QES_KEY_RSA)
		return n;
	if (ci->key_type == QES_KEY_EC)	/* SEQUENCE of two INTEGERs, each n + 1 bytes at most */
		return tlv_len(2 * tlv_len(n + 1));
	return 0;
}

/* DER bytes of the signer's issuer name and serial number (for the sid and
 * the ESSCertIDv2 issuerSerial) */
static size_t
issuer_serial_len(const qes_cert *c)
{
	X509 *x = qes_cert_x509(c);
	int nl = i2d_X509_NAME(X509_get_issuer_name(x), NULL);
	int sl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), NULL);

	if (nl <= 0 || sl <= 0)
		return 0;
	return (size_t)nl + (size_t)sl;
}

size_t
qes_pades_estimate(const qes_cert *signer, const qes_cert *const *chain,
    size_t nchain, qes_md md, qes_ades_level level, size_t timestamp_reserve)
{
	size_t certs = 0, attrs, si, sig, is, mdl = qes_md_len(md), len, i;

	if (signer == NULL || mdl == 0 || (chain == NULL && nchain != 0) ||
	    nchain > QES_PADES_MAX_CHAIN)
		return 0;
	if ((sig = sig_value_max(signer)) == 0 || (is = issuer_serial_len(signer)) == 0)
		return 0;
	qes_cert_der(signer, &len);
	certs += len;
	for (i = 0; i < nchain; i++) {
		qes_cert_der(chain[i], &len);
		certs += len;
	}
	/*
	 * Signed attributes: content-type (26), message-digest (15 + md),
	 * signing-certificate-v2 (about 40 of OIDs and headers, an
	 * AlgorithmIdentifier of 15 when not SHA-256, the certificate hash,
	 * the issuer as a GeneralName and the serial) - each rounded up.
	 */
	attrs = 32 + (24 + mdl) + (64 + 2 + mdl + is + 16);
	/* SignerInfo: version, sid (issuer and serial), two algorithm
	 * identifiers (RSA-PSS parameters included), attributes, value */
	si = 8 + (8 + is) + 20 + 72 + tlv_len(attrs) + tlv_len(sig);
	if (level >= QES_ADES_B_T)	/* unsigned attribute with the token */
		si += 32 + (timestamp_reserve ? timestamp_reserve : QES_PADES_DEFAULT_TST_RESERVE);
	/* ContentInfo, SignedData, digestAlgorithms, encapContentInfo */
	return 64 + certs + 16 + tlv_len(si) + QES_PADES_MARGIN;
}

static void
drop_tmp(qes_pades_ctx *ctx)
{
	size_t i;

	for (i = 0; i < MAX_TMP; i++) {
		if (ctx->tmp[i] != NULL)
			(void)unlink(ctx->tmp[i]);
		free(ctx->tmp[i]);
		ctx->tmp[i] = NULL;
		qes_buf_free(ctx->stage[i]);
		ctx->stage[i] = NULL;
	}
}

/* Reserve a name beside out_path (an empty file the PDF layer replaces),
 * or with out_buf an empty buffer. */
static int
make_tmp(qes_pades_ctx *ctx, size_t i)
{
	int fd, r;

	if (ctx->out_buf != NULL) {
		qes_buf_free(ctx->stage[i]);
		/* the document's plaintext: wiped when released */
		if ((ctx->stage[i] = qes_buf_new_secret()) == NULL)
			return QES_ERR_ALLOC;
		/* bounded by the input's limit plus what the steps add */
		qes_buf_set_max(ctx->stage[i], SIZE_MAX / 2);
		return 0;
	}
	if ((r = qes_file_tmp_beside(ctx->out_path, &ctx->tmp[i], &fd)) != 0) {
		if (r == QES_ERR_IO)
			set_err(ctx, "cannot create a temporary file beside %s: %s",
			    ctx->out_path, strerror(errno));
		ctx->tmp[i] = NULL;
		return r;
	}
	(void)close(fd);
	return 0;
}

/* With out_buf: the document of slot i is no longer needed (the next step
 * has its own); release it now, so at most two copies live at a time. */
static void
drop_stage(qes_pades_ctx *ctx, size_t i)
{
	qes_buf_free(ctx->stage[i]);
	ctx->stage[i] = NULL;
}

void
qes_pades_free(qes_pades_ctx *ctx)
{
	if (ctx == NULL)
		return;
	qes_cades_free(ctx->cctx);
	qes_pdf_sign_free(ctx->sctx);
	qes_pdf_free(ctx->pdf);
	drop_tmp(ctx);
	free(ctx->out_path);
	free(ctx->id_seed);
	free(ctx);
}

const char *
qes_pades_errmsg(const qes_pades_ctx *ctx)
{
	return ctx != NULL ? ctx->err : "no context";
}

size_t
qes_pades_contents_reserve(const qes_pades_ctx *ctx)
{
	return ctx != NULL ? ctx->reserve : 0;
}

const char *
qes_pades_field_name(const qes_pades_ctx *ctx)
{
	return ctx != NULL && ctx->sctx != NULL ? qes_pdf_sign_field_name(ctx->sctx) : "";
}

static int
check_params(const qes_pades_params *p, qes_pades_ctx *ctx)
{
	if ((p->in_path == NULL) == (p->in_data == NULL) ||
	    (p->out_path == NULL) == (p->out_buf == NULL) || p->signer == NULL ||
	    (p->chain == NULL && p->nchain != 0) || (p->extra == NULL && p->nextra != 0)) {
		set_err(ctx, "one of in_path and in_data, one of out_path and out_buf, "
		    "and signer are required");
		return QES_ERR_INVALID_ARG;
	}
	if (p->level < QES_ADES_B_B || p->level > QES_ADES_B_LTA) {
		set_err(ctx, "unknown level %d", (int)p->level);
		return QES_ERR_INVALID_ARG;
	}
	if (qes_md_len(p->md) == 0) {
		set_err(ctx, "unknown digest algorithm");
		return QES_ERR_INVALID_ARG;
	}
	if (p->nchain > QES_PADES_MAX_CHAIN || p->nextra > QES_PADES_MAX_EXTRA) {
		set_err(ctx, "at most %d chain and %d extra certificates",
		    QES_PADES_MAX_CHAIN, QES_PADES_MAX_EXTRA);
		return QES_ERR_LIMIT;
	}
	if (p->level >= QES_ADES_B_T && (p->tsa == NULL || p->tsa->fn == NULL)) {
		set_err(ctx, "%s needs a timestamp authority", qes_ades_level_name(p->level));
		return QES_ERR_INVALID_ARG;
	}
	if (p->timestamp_reserve > QES_PDF_MAX_CONTENTS_BYTES / 2) {
		set_err(ctx, "timestamp_reserve is at most %zu bytes",
		    QES_PDF_MAX_CONTENTS_BYTES / 2);
		return QES_ERR_LIMIT;
	}
	if (p->in_path != NULL && p->out_path != NULL && strcmp(p->in_path, p->out_path) == 0) {
		set_err(ctx, "the output must not be the input file");
		return QES_ERR_INVALID_ARG;
	}
	return 0;
}

int
qes_pades_prepare(const qes_pades_params *p, qes_pades_ctx **out)
{
	qes_pades_ctx *ctx;
	qes_pdf_sign_params sp = { .subfilter = QES_PDF_CADES_DETACHED };
	qes_cades_params cp = { 0 };
	uint8_t dig[QES_MD_MAX_LEN];
	size_t dlen;
	char perr[256];
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (p == NULL)
		return QES_ERR_INVALID_ARG;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	*out = ctx;
	if ((r = check_params(p, ctx)) != 0)
		return r;
	if (p->out_path != NULL && (ctx->out_path = strdup(p->out_path)) == NULL)
		return QES_ERR_ALLOC;
	if (p->id_seed != NULL && (ctx->id_seed = strdup(p->id_seed)) == NULL)
		return QES_ERR_ALLOC;
	ctx->out_buf = p->out_buf;
	ctx->level = p->level;
	ctx->md = p->md;
	ctx->scheme = p->scheme;
	ctx->signer = p->signer;
	if (p->tsa != NULL) {
		ctx->tsa = *p->tsa;
		ctx->has_tsa = 1;
	}
	ctx->rev = p->rev;
	ctx->extra = p->extra;
	ctx->nextra = p->nextra;
	ctx->limits = p->limits;
	if ((qes_cert_schemes(p->signer) & (1u << p->scheme)) == 0) {
		set_err(ctx, "the signer's key cannot make %s signatures",
		    qes_sig_scheme_name(p->scheme) ? qes_sig_scheme_name(p->scheme) : "such");
		return QES_ERR_KEY_UNSUITABLE;
	}
	ctx->reserve = qes_pades_estimate(p->signer, p->chain, p->nchain, p->md,
	    p->level, p->timestamp_reserve);
	if (ctx->reserve == 0) {
		set_err(ctx, "the signer's key is of a kind PAdES cannot size");
		return QES_ERR_KEY_UNSUITABLE;
	}
	if ((r = p->in_data != NULL ? qes_pdf_open_mem(p->in_data, p->in_len, p->limits,
	    &ctx->pdf, perr, sizeof(perr)) : qes_pdf_open(p->in_path, p->limits, &ctx->pdf,
	    perr, sizeof(perr))) != 0) {
		set_err(ctx, "%s", perr);
		return r;
	}
	/* B-LT and above write the signed file to a temporary name (or
	 * buffer) first; B-B and B-T straight to the output, which a
	 * prepare into a buffer does not touch before finish */
	if (p->level >= QES_ADES_B_LT && (r = make_tmp(ctx, 0)) != 0)
		return r;
	sp.field_name = p->field_name;
	sp.signing_time = p->signing_time;
	sp.reason = p->reason;
	sp.location = p->location;
	sp.contact_info = p->contact_info;
	sp.name = p->name;
	sp.contents_bytes = ctx->reserve;
	sp.id_seed = ctx->id_seed;
	if ((r = ctx->out_buf != NULL ? qes_pdf_sign_prepare_buf(ctx->pdf, &sp,
	    ctx->stage[0] != NULL ? ctx->stage[0] : ctx->out_buf, p->md, &ctx->sctx) : qes_pdf_sign_prepare(ctx->pdf, &sp,
	    ctx->tmp[0] != NULL ? ctx->tmp[0] : ctx->out_path, p->md, &ctx->sctx)) != 0) {
		set_err(ctx, "%s", qes_pdf_errmsg(ctx->pdf));
		return r;
	}
	if ((r = qes_pdf_sign_digest(ctx->sctx, dig, sizeof(dig), &dlen)) != 0)
		return r;
	cp.signer = p->signer;
	cp.chain = p->chain;
	cp.nchain = p->nchain;
	cp.md = p->md;
	cp.scheme = p->scheme;
	cp.content_digest = dig;
	cp.content_digest_len = dlen;
	cp.omit_signing_time = 1;	/* EN 319 142-1 5.2.1: /M carries the claimed time */
	if ((r = qes_cades_prepare(&cp, &ctx->cctx)) != 0) {
		set_err(ctx, "cannot build the CMS signed attributes: %s", qes_strerror(r));
		return r;
	}
	return 0;
}

int
qes_pades_tbs(const qes_pades_ctx *ctx, const uint8_t **digest, size_t *digest_len,
    qes_md *md, qes_sig_scheme *scheme)
{
	if (ctx == NULL || ctx->cctx == NULL || digest == NULL || digest_len == NULL)
		return QES_ERR_INVALID_ARG;
	*digest = qes_cades_tbs(ctx->cctx, digest_len);
	if (md != NULL)
		*md = ctx->md;
	if (scheme != NULL)
		*scheme = ctx->scheme;
	return 0;
}

/* A copy of the revocation config for a TSA: the configured URLs are the
 * signer's responders, a TSA's come from its own certificates. */
static qes_rev_config
tsa_rev(const qes_rev_config *rev)
{
	qes_rev_config c;

	if (rev != NULL)
		c = *rev;
	else
		memset(&c, 0, sizeof(c));
	c.ocsp_url = NULL;
	c.crl_url = NULL;
	return c;
}

/* Open the document of slot i (the file tmp[i] or the buffer stage[i]). */
static int
open_slot(qes_pades_ctx *ctx, size_t i, qes_pdf **pdf, char *perr, size_t perrlen)
{
	if (ctx->out_buf != NULL)
		return qes_pdf_open_mem(qes_buf_data(ctx->stage[i]), qes_buf_len(ctx->stage[i]),
		    ctx->limits, pdf, perr, perrlen);
	return qes_pdf_open(ctx->tmp[i], ctx->limits, pdf, perr, perrlen);
}

/* Slot i's document becomes the output: renamed onto out_path, or
 * appended to out_buf. */
static int
move_final(qes_pades_ctx *ctx, size_t i)
{
	int r;

	if (ctx->out_buf != NULL) {
		if ((r = qes_buf_put(ctx->out_buf, qes_buf_data(ctx->stage[i]),
		    qes_buf_len(ctx->stage[i]))) != 0)
			set_err(ctx, "the signed PDF (%zu bytes) does not fit the output buffer",
			    qes_buf_len(ctx->stage[i]));
		return r;
	}
	if (rename(ctx->tmp[i], ctx->out_path) != 0) {
		set_err(ctx, "cannot rename onto %s: %s", ctx->out_path, strerror(errno));
		return QES_ERR_IO;
	}
	free(ctx->tmp[i]);
	ctx->tmp[i] = NULL;
	return 0;
}

/* Add the DSS of vd to the document of slot from, written atomically to
 * slot to (FINAL: out_path or out_buf). */
static int
add_dss(qes_pades_ctx *ctx, size_t from, qes_vdata *vd, size_t to)
{
	qes_pdf *pdf = NULL;
	char perr[256];
	int r;

	if ((r = open_slot(ctx, from, &pdf, perr, sizeof(perr))) != 0) {
		set_err(ctx, "cannot reopen the signed file: %s", perr);
		return r;
	}
	if (ctx->out_buf != NULL)
		r = qes_pdf_add_dss_buf(pdf, qes_vdata_view(vd), to == FINAL ? ctx->out_buf :
		    ctx->stage[to]);
	else
		r = qes_pdf_add_dss(pdf, qes_vdata_view(vd), to == FINAL ? ctx->out_path :
		    ctx->tmp[to]);
	if (r != 0)
		set_err(ctx, "cannot add the DSS: %s", qes_pdf_errmsg(pdf));
	qes_pdf_free(pdf);
	return r;
}

/*
 * 1 when a certificate of the token is not yet in vd (another TSA than the
 * one whose data the DSS holds), 0 when all are, or an error. The certs
 * are added to vd either way (it keeps one of each).
 */
static int
token_brings_certs(const uint8_t *token, size_t len, qes_vdata *vd)
{
	qes_buf *certs = qes_buf_new();
	qes_cursor c, v;
	size_t before, start;
	uint8_t tag;
	int r, news = 0;

	if (certs == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_tsp_token_certs(token, len, certs)) != 0)
		goto out;
	qes_cursor_init(&c, qes_buf_data(certs), qes_buf_len(certs));
	while (qes_cursor_remaining(&c) > 0) {
		start = c.off;
		if ((r = qes_der_get_tlv(&c, &tag, &v)) != 0)
			goto out;
		before = qes_vdata_view(vd)->ncerts;
		if ((r = qes_vdata_add_cert(vd, c.data + start, c.off - start)) != 0)
			goto out;
		if (qes_vdata_view(vd)->ncerts != before)
			news = 1;
	}
	r = news;
 out:
	qes_buf_free(certs);
	return r;
}

/*
 * B-LTA: a document timestamp over the document of slot from, to slot 2;
 * then a DSS for its TSA when that one is new, to the output, else slot 2
 * becomes the output. token_len sizes the reservation.
 */
static int
add_doc_timestamp(qes_pades_ctx *ctx, size_t from, size_t token_len, qes_vdata *vd)
{
	qes_pdf *pdf = NULL;
	qes_pdf_sign_ctx *sctx = NULL;
	qes_pdf_sign_params sp = { .subfilter = QES_PDF_RFC3161 };
	qes_buf *token = qes_buf_new();
	qes_vdata *vd2 = NULL;
	qes_rev_config trev = tsa_rev(ctx->rev);
	uint8_t dig[QES_MD_MAX_LEN];
	size_t dlen;
	char perr[256];
	int r, news;

	if (token == NULL)
		return QES_ERR_ALLOC;
	if ((r = make_tmp(ctx, 2)) != 0)
		goto out;
	if ((r = open_slot(ctx, from, &pdf, perr, sizeof(perr))) != 0) {
		set_err(ctx, "cannot reopen the file for the document timestamp: %s", perr);
		goto out;
	}
	sp.contents_bytes = token_len + DOC_TST_SLACK;
	sp.id_seed = ctx->id_seed;
	if ((r = ctx->out_buf != NULL ? qes_pdf_sign_prepare_buf(pdf, &sp, ctx->stage[2],
	    ctx->md, &sctx) : qes_pdf_sign_prepare(pdf, &sp, ctx->tmp[2], ctx->md,
	    &sctx)) != 0 ||
	    (r = qes_pdf_sign_digest(sctx, dig, sizeof(dig), &dlen)) != 0) {
		set_err(ctx, "document timestamp: %s", qes_pdf_errmsg(pdf));
		goto out;
	}
	perr[0] = '\0';
	if ((r = ctx->tsa.fn(ctx->tsa.arg, ctx->md, dig, dlen, token, perr,
	    sizeof(perr))) != 0) {
		set_err(ctx, "the TSA gave no document timestamp: %s", perr);
		goto out;
	}
	if (qes_buf_len(token) > sp.contents_bytes) {
		set_err(ctx, "the document timestamp token (%zu bytes) is larger than the "
		    "%zu bytes reserved", qes_buf_len(token), sp.contents_bytes);
		r = QES_ERR_LIMIT;
		goto out;
	}
	if ((r = qes_pdf_sign_finish(sctx, qes_buf_data(token), qes_buf_len(token))) != 0) {
		set_err(ctx, "document timestamp: %s", qes_pdf_errmsg(pdf));
		goto out;
	}
	/* slot 2 holds the document now: the one it was made from can go */
	qes_pdf_sign_free(sctx);
	sctx = NULL;
	qes_pdf_free(pdf);
	pdf = NULL;
	drop_stage(ctx, from);
	/* the validation data of the document timestamp's TSA, when the DSS
	 * does not hold it already (the usual case is the same TSA) */
	if ((news = token_brings_certs(qes_buf_data(token), qes_buf_len(token), vd)) < 0) {
		r = news;
		set_err(ctx, "cannot read the document timestamp's certificates");
		goto out;
	}
	if (news) {
		if ((vd2 = qes_vdata_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = qes_cades_collect_vdata(qes_buf_data(token), qes_buf_len(token), &trev,
		    ctx->extra, ctx->nextra, vd2, perr, sizeof(perr))) != 0) {
			set_err(ctx, "validation data for the document timestamp's TSA: %s", perr);
			goto out;
		}
		r = add_dss(ctx, 2, vd2, FINAL);
		goto out;
	}
	r = move_final(ctx, 2);
 out:
	qes_vdata_free(vd2);
	qes_buf_free(token);
	qes_pdf_sign_free(sctx);
	qes_pdf_free(pdf);
	return r;
}

int
qes_pades_finish(qes_pades_ctx *ctx, const uint8_t *sig, size_t sig_len)
{
	qes_buf *cms = NULL, *cms_t = NULL, *tok = NULL, *final;
	qes_vdata *vd = NULL;
	char terr[256];
	int r;

	if (ctx == NULL || ctx->cctx == NULL || ctx->sctx == NULL || sig == NULL)
		return QES_ERR_INVALID_ARG;
	if (ctx->finished) {
		set_err(ctx, "this signature was finished already");
		return QES_ERR_INVALID_ARG;
	}
	ctx->finished = 1;
	ctx->err[0] = '\0';
	if ((cms = qes_buf_new()) == NULL || (cms_t = qes_buf_new()) == NULL ||
	    (tok = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = qes_cades_finish(ctx->cctx, sig, sig_len, cms)) != 0) {
		if (r == QES_ERR_SIGNATURE_INVALID)
			set_err(ctx, "the signature value does not verify with the "
			    "signer's certificate");
		else
			set_err(ctx, "cannot assemble the CMS: %s", qes_strerror(r));
		goto out;
	}
	final = cms;
	if (ctx->level >= QES_ADES_B_T) {
		terr[0] = '\0';
		if ((r = qes_cades_add_timestamp(qes_buf_data(cms), qes_buf_len(cms), &ctx->tsa,
		    ctx->md, cms_t, terr, sizeof(terr))) != 0) {
			set_err(ctx, "signature timestamp: %s", terr[0] ? terr : qes_strerror(r));
			goto out;
		}
		final = cms_t;
		if ((r = qes_cades_timestamp_token(qes_buf_data(final), qes_buf_len(final),
		    tok, NULL)) != 0)
			goto out;
	}
	if (qes_buf_len(final) > ctx->reserve) {
		set_err(ctx, "the CMS (%zu bytes) is larger than the %zu bytes reserved in "
		    "/Contents: nothing written (a larger timestamp_reserve helps when the "
		    "TSA's token is large)", qes_buf_len(final), ctx->reserve);
		r = QES_ERR_LIMIT;
		goto out;
	}
	if ((r = qes_pdf_sign_finish(ctx->sctx, qes_buf_data(final), qes_buf_len(final))) != 0) {
		set_err(ctx, "%s", qes_pdf_errmsg(ctx->pdf));
		goto out;
	}
	if (ctx->level < QES_ADES_B_LT) {
		r = 0;
		goto out;
	}
	if ((vd = qes_vdata_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	terr[0] = '\0';
	if ((r = qes_cades_collect_vdata(qes_buf_data(final), qes_buf_len(final), ctx->rev,
	    ctx->extra, ctx->nextra, vd, terr, sizeof(terr))) != 0) {
		set_err(ctx, "validation data: %s", terr[0] ? terr : qes_strerror(r));
		goto out;
	}
	if (ctx->level == QES_ADES_B_LT) {
		r = add_dss(ctx, 0, vd, FINAL);
		goto out;
	}
	if ((r = make_tmp(ctx, 1)) != 0 || (r = add_dss(ctx, 0, vd, 1)) != 0)
		goto out;
	/* the signed document of slot 0 is in slot 1 now */
	qes_pdf_sign_free(ctx->sctx);
	ctx->sctx = NULL;
	drop_stage(ctx, 0);
	r = add_doc_timestamp(ctx, 1, qes_buf_len(tok), vd);
 out:
	if (r != 0 && r != QES_ERR_ALLOC && ctx->err[0] == '\0')
		set_err(ctx, "%s", qes_strerror(r));
	/* the PDF layer's temporary file goes with its context */
	qes_pdf_sign_free(ctx->sctx);
	ctx->sctx = NULL;
	drop_tmp(ctx);
	qes_vdata_free(vd);
	qes_buf_free(tok);
	qes_buf_free(cms_t);
	qes_buf_free(cms);
	return r;
}
