/*
 * jades.c - JAdES baseline signatures (ETSI TS 119 182-1) in two phases.
 *
 * A JAdES signature is a JWS (RFC 7515) whose protected header carries the
 * ETSI parameters (x5t#S256/x5c, sigT with crit) and whose unprotected
 * header carries etsiU, the list of unsigned properties (sigTst, xVals,
 * rVals, tstVD). jansson builds every JSON text; OpenSSL does the base64
 * and digests. The private key is never here: prepare hands out the digest
 * of the JWS Signing Input, finish takes the value, checks it with
 * qes_cert_verify_digest and assembles the compact or flattened JSON
 * serialisation. See include/qes/jades.h for the choices (detached payload
 * per RFC 7515 appendix F, base64url-encoded etsiU elements).
 *
 * Nothing here parses JWS input: verification belongs to the validators
 * (the tests use python3-jwcrypto), so there is no untrusted-input parser
 * in this file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "qes/err.h"
#include "qes/jades.h"

#define MAX_CTY_BYTES	255
#define MAX_VDATA_ITEMS	64
#define MAX_BLOB_BYTES	((size_t)4 * 1024 * 1024)

struct qes_jades_ctx {
	const qes_cert *signer;
	qes_jades_serialization ser;
	qes_ades_level level;
	qes_sig_scheme scheme;
	qes_md md;
	int detached;
	const qes_timestamper *tsa;
	const qes_ades_vdata *vdata;
	const qes_ades_vdata *tsa_vdata;
	qes_buf *input;			/* BASE64URL(header) '.' BASE64URL(payload), NUL-ended */
	size_t header_len;		/* bytes of BASE64URL(header) in input */
	uint8_t tbs[QES_MD_MAX_LEN];
	size_t tbs_len;
	int finished;
	char errmsg[256];
};

static int
fail(qes_jades_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(qes_jades_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

/* base64 (url: the RFC 4648 section 5 alphabet without padding) appended to out */
static int
put_b64(qes_buf *out, const uint8_t *data, size_t len, int url)
{
	const size_t slice = 3 * 1024 * 1024;
	size_t enc_len, i, n;
	uint8_t *tmp, *p;
	int r;

	if (len > QES_JADES_MAX_PAYLOAD_BYTES)
		return QES_ERR_LIMIT;
	enc_len = 4 * ((len + 2) / 3);
	if ((tmp = malloc(enc_len + 1)) == NULL)
		return QES_ERR_ALLOC;
	/* EVP_EncodeBlock takes an int length: encode in slices of whole 3-byte groups */
	for (i = 0, p = tmp; i < len; i += n) {
		n = len - i < slice ? len - i : slice;
		p += EVP_EncodeBlock(p, data + i, (int)n);
	}
	if (url) {
		for (i = 0; i < enc_len; i++) {
			if (tmp[i] == '+')
				tmp[i] = '-';
			else if (tmp[i] == '/')
				tmp[i] = '_';
		}
		while (enc_len > 0 && tmp[enc_len - 1] == '=')
			enc_len--;
	}
	r = qes_buf_put(out, tmp, enc_len);
	free(tmp);
	return r;
}

/* a new jansson string of base64 / base64url */
static json_t *
b64_json(const uint8_t *data, size_t len, int url)
{
	qes_buf *b = qes_buf_new();
	json_t *s = NULL;

	if (b != NULL && put_b64(b, data, len, url) == 0)
		s = json_stringn((const char *)qes_buf_data(b), qes_buf_len(b));
	qes_buf_free(b);
	return s;
}

const char *
qes_jades_alg(qes_sig_scheme scheme, qes_md md, const qes_cert *cert)
{
	const qes_cert_info *ci;

	if (md < QES_MD_SHA256 || md > QES_MD_SHA512 || cert == NULL)
		return NULL;
	ci = qes_cert_get_info(cert);
	switch (scheme) {
	case QES_SIG_RSA_PKCS1:
		return ci->key_type == QES_KEY_RSA ?
		    (const char *[]){ "RS256", "RS384", "RS512" }[md - 1] : NULL;
	case QES_SIG_RSA_PSS:
		return ci->key_type == QES_KEY_RSA ?
		    (const char *[]){ "PS256", "PS384", "PS512" }[md - 1] : NULL;
	case QES_SIG_ECDSA:
		/* JWA binds each ECDSA alg to one curve and one hash */
		if (ci->key_type != QES_KEY_EC)
			return NULL;
		if (md == QES_MD_SHA256 && strcmp(ci->curve, "P-256") == 0)
			return "ES256";
		if (md == QES_MD_SHA384 && strcmp(ci->curve, "P-384") == 0)
			return "ES384";
		if (md == QES_MD_SHA512 && strcmp(ci->curve, "P-521") == 0)
			return "ES512";
		return NULL;
	}
	return NULL;
}

static int
check_blobs(const qes_ades_blob *b, size_t n, size_t max)
{
	size_t i;

	if (n > max)
		return QES_ERR_LIMIT;
	if (n > 0 && b == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < n; i++)
		if (b[i].data == NULL || b[i].len == 0 || b[i].len > MAX_BLOB_BYTES)
			return QES_ERR_INVALID_ARG;
	return 0;
}

static int
check_params(qes_jades_ctx *ctx, const qes_jades_params *p)
{
	if (p->signer == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG, "no signer certificate");
	if (qes_jades_alg(p->scheme, p->md, p->signer) == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG,
		    "JWA has no algorithm for %s with %s on this key (ES256 is P-256 with "
		    "SHA-256, ES384 P-384 with SHA-384, ES512 P-521 with SHA-512)",
		    qes_sig_scheme_name(p->scheme) != NULL ?
		    qes_sig_scheme_name(p->scheme) : "?",
		    qes_md_name(p->md) != NULL ? qes_md_name(p->md) : "?");
	if (p->serialization != QES_JADES_COMPACT && p->serialization != QES_JADES_JSON)
		return fail(ctx, QES_ERR_INVALID_ARG, "unknown serialisation");
	if (p->level < QES_ADES_B_B || p->level > QES_ADES_B_LTA)
		return fail(ctx, QES_ERR_INVALID_ARG, "unknown level");
	if (p->level == QES_ADES_B_LTA)
		return fail(ctx, QES_ERR_UNSUPPORTED, "JAdES B-LTA (arcTst) is not produced");
	if (p->serialization == QES_JADES_COMPACT && p->level > QES_ADES_B_B)
		return fail(ctx, QES_ERR_INVALID_ARG,
		    "the compact serialisation has no unprotected header: %s needs JSON",
		    qes_ades_level_name(p->level));
	if (p->level >= QES_ADES_B_T && (p->tsa == NULL || p->tsa->fn == NULL))
		return fail(ctx, QES_ERR_INVALID_ARG, "%s needs a timestamper",
		    qes_ades_level_name(p->level));
	if (p->level >= QES_ADES_B_LT && p->vdata == NULL)
		return fail(ctx, QES_ERR_INVALID_ARG, "%s needs validation data",
		    qes_ades_level_name(p->level));
	if (p->payload == NULL && p->payload_len > 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "payload is NULL");
	if (p->payload_len > QES_JADES_MAX_PAYLOAD_BYTES)
		return fail(ctx, QES_ERR_LIMIT, "payload of %zu bytes, at most %zu",
		    p->payload_len, QES_JADES_MAX_PAYLOAD_BYTES);
	if (p->cty != NULL && (p->cty[0] == '\0' || strlen(p->cty) > MAX_CTY_BYTES))
		return fail(ctx, QES_ERR_INVALID_ARG, "cty empty or longer than %d bytes",
		    MAX_CTY_BYTES);
	if (check_blobs(p->chain, p->nchain, QES_JADES_MAX_CHAIN) != 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "chain: at most %d non-empty certificates",
		    QES_JADES_MAX_CHAIN);
	return 0;
}

static json_t *
protected_header(const qes_jades_params *p)
{
	json_t *h = json_object(), *x5c = NULL, *crit = NULL;
	uint8_t fp[32];
	const uint8_t *der;
	size_t der_len, i;
	char when[32];
	time_t t = p->signing_time != 0 ? (time_t)p->signing_time : time(NULL);
	struct tm tm;

	if (h == NULL)
		return NULL;
	der = qes_cert_der(p->signer, &der_len);
	if (qes_md_digest(QES_MD_SHA256, der, der_len, fp) != 0)
		goto bad;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (json_object_set_new(h, "alg", json_string(qes_jades_alg(p->scheme, p->md,
	    p->signer))) != 0 ||
	    json_object_set_new(h, "typ", json_string(p->serialization == QES_JADES_JSON ?
	    "jose+json" : "jose")) != 0 ||
	    (p->cty != NULL && json_object_set_new(h, "cty", json_string(p->cty)) != 0) ||
	    json_object_set_new(h, "x5t#S256", b64_json(fp, sizeof(fp), 1)) != 0)
		goto bad;
	if (!p->no_x5c) {
		if ((x5c = json_array()) == NULL ||
		    json_array_append_new(x5c, b64_json(der, der_len, 0)) != 0)
			goto bad;
		for (i = 0; i < p->nchain; i++)
			if (json_array_append_new(x5c, b64_json(p->chain[i].data,
			    p->chain[i].len, 0)) != 0)
				goto bad;
		if (json_object_set_new(h, "x5c", x5c) != 0) {
			x5c = NULL;
			goto bad;
		}
		x5c = NULL;
	}
	if (json_object_set_new(h, "sigT", json_string(when)) != 0 ||
	    (crit = json_array()) == NULL ||
	    json_array_append_new(crit, json_string("sigT")) != 0 ||
	    json_object_set_new(h, "crit", crit) != 0)
		goto bad;
	return h;
bad:
	json_decref(x5c);
	json_decref(h);
	return NULL;
}

int
qes_jades_prepare(const qes_jades_params *p, qes_jades_ctx **out)
{
	qes_jades_ctx *ctx;
	json_t *h = NULL;
	char *htext = NULL;
	int r;

	if (p == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	*out = ctx;
	if ((r = check_params(ctx, p)) != 0)
		return r;
	ctx->signer = p->signer;
	ctx->ser = p->serialization;
	ctx->level = p->level;
	ctx->scheme = p->scheme;
	ctx->md = p->md;
	ctx->detached = p->detached;
	ctx->tsa = p->tsa;
	ctx->vdata = p->vdata;
	ctx->tsa_vdata = p->tsa_vdata;
	r = QES_ERR_ALLOC;
	if ((ctx->input = qes_buf_new()) == NULL || (h = protected_header(p)) == NULL ||
	    (htext = json_dumps(h, JSON_COMPACT)) == NULL)
		goto out;
	if ((r = put_b64(ctx->input, (const uint8_t *)htext, strlen(htext), 1)) != 0)
		goto out;
	ctx->header_len = qes_buf_len(ctx->input);
	if ((r = qes_buf_put_u8(ctx->input, '.')) != 0 ||
	    (r = put_b64(ctx->input, p->payload, p->payload_len, 1)) != 0)
		goto out;
	if ((r = qes_md_digest(ctx->md, qes_buf_data(ctx->input), qes_buf_len(ctx->input),
	    ctx->tbs)) != 0)
		goto out;
	ctx->tbs_len = qes_md_len(ctx->md);
	r = 0;
out:
	free(htext);
	json_decref(h);
	if (r != 0 && ctx->errmsg[0] == '\0')
		fail(ctx, r, "%s", qes_strerror(r));
	return r;
}

int
qes_jades_tbs(const qes_jades_ctx *ctx, const uint8_t **digest, size_t *digest_len,
    qes_md *md, qes_sig_scheme *scheme)
{
	if (ctx == NULL || digest == NULL || digest_len == NULL || md == NULL ||
	    scheme == NULL || ctx->tbs_len == 0)
		return QES_ERR_INVALID_ARG;
	*digest = ctx->tbs;
	*digest_len = ctx->tbs_len;
	*md = ctx->md;
	*scheme = ctx->scheme;
	return 0;
}

int
qes_jades_signing_input(const qes_jades_ctx *ctx, const char **input, size_t *len)
{
	if (ctx == NULL || input == NULL || len == NULL || ctx->tbs_len == 0)
		return QES_ERR_INVALID_ARG;
	*input = (const char *)qes_buf_data(ctx->input);
	*len = qes_buf_len(ctx->input);
	return 0;
}

/* ---- unsigned header: etsiU ---- */

/* [{"val": base64}, ...] (pkiOb objects) */
static json_t *
val_list(const qes_ades_blob *b, size_t n, const char *wrap)
{
	json_t *a = json_array(), *o;
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if ((o = json_pack("{s:o}", "val", b64_json(b[i].data, b[i].len, 0))) == NULL)
			goto bad;
		if (wrap != NULL && (o = json_pack("{s:o}", wrap, o)) == NULL)
			goto bad;
		if (json_array_append_new(a, o) != 0)
			goto bad;
	}
	return a;
bad:
	json_decref(a);
	return NULL;
}

static int
check_vdata(qes_jades_ctx *ctx, const qes_ades_vdata *v)
{
	if (check_blobs(v->certs, v->ncerts, MAX_VDATA_ITEMS) != 0 ||
	    check_blobs(v->ocsps, v->nocsps, MAX_VDATA_ITEMS) != 0 ||
	    check_blobs(v->crls, v->ncrls, MAX_VDATA_ITEMS) != 0)
		return fail(ctx, QES_ERR_INVALID_ARG,
		    "validation data: at most %d non-empty items of at most %zu bytes each",
		    MAX_VDATA_ITEMS, MAX_BLOB_BYTES);
	return 0;
}

/* rVals: {"crlVals": [...], "ocspVals": [...]} (members only when non-empty) */
static json_t *
rvals(const qes_ades_vdata *v)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	if ((v->ncrls > 0 && json_object_set_new(o, "crlVals",
	    val_list(v->crls, v->ncrls, NULL)) != 0) ||
	    (v->nocsps > 0 && json_object_set_new(o, "ocspVals",
	    val_list(v->ocsps, v->nocsps, NULL)) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* append base64url(JSON({name: value})) to etsiU; value is stolen */
static int
etsiu_add(json_t *etsiu, const char *name, json_t *value)
{
	json_t *o;
	char *text;
	int r;

	if (value == NULL)
		return QES_ERR_ALLOC;
	if ((o = json_object()) == NULL || json_object_set_new(o, name, value) != 0) {
		json_decref(o);
		return QES_ERR_ALLOC;
	}
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		return QES_ERR_ALLOC;
	r = json_array_append_new(etsiu, b64_json((const uint8_t *)text, strlen(text), 1)) == 0 ?
	    0 : QES_ERR_ALLOC;
	free(text);
	return r;
}

static int
add_sigtst(qes_jades_ctx *ctx, json_t *etsiu, const char *sig_b64u, size_t sig_b64u_len)
{
	uint8_t imprint[QES_MD_MAX_LEN];
	qes_buf *tok;
	char err[200];
	int r;

	err[0] = '\0';
	/* TS 119 182-1 clause 5.3.4.1: the imprint covers the base64url signature value */
	if ((r = qes_md_digest(ctx->md, sig_b64u, sig_b64u_len, imprint)) != 0)
		return r;
	if ((tok = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	qes_buf_set_max(tok, MAX_BLOB_BYTES);
	r = ctx->tsa->fn(ctx->tsa->arg, ctx->md, imprint, qes_md_len(ctx->md), tok, err,
	    sizeof(err));
	if (r != 0) {
		fail(ctx, r, "timestamp for sigTst: %s", err[0] != '\0' ? err :
		    qes_strerror(r));
		goto out;
	}
	if (qes_buf_len(tok) == 0) {
		r = fail(ctx, QES_ERR_TIMESTAMP, "the timestamper returned no token");
		goto out;
	}
	r = etsiu_add(etsiu, "sigTst", json_pack("{s:[{s:o}]}", "tstTokens", "val",
	    b64_json(qes_buf_data(tok), qes_buf_len(tok), 0)));
out:
	qes_buf_free(tok);
	return r;
}

static int
build_etsiu(qes_jades_ctx *ctx, const char *sig_b64u, size_t sig_b64u_len, json_t **out)
{
	json_t *etsiu = json_array();
	const qes_ades_vdata *v = ctx->vdata, *t = ctx->tsa_vdata;
	int r;

	*out = NULL;
	if (etsiu == NULL)
		return QES_ERR_ALLOC;
	if ((r = add_sigtst(ctx, etsiu, sig_b64u, sig_b64u_len)) != 0)
		goto out;
	if (ctx->level >= QES_ADES_B_LT) {
		if ((r = check_vdata(ctx, v)) != 0 ||
		    (t != NULL && (r = check_vdata(ctx, t)) != 0))
			goto out;
		if (v->ncerts > 0 && (r = etsiu_add(etsiu, "xVals",
		    val_list(v->certs, v->ncerts, "x509Cert"))) != 0)
			goto out;
		if (v->ncrls + v->nocsps > 0 && (r = etsiu_add(etsiu, "rVals", rvals(v))) != 0)
			goto out;
		if (t != NULL && t->ncerts + t->ncrls + t->nocsps > 0) {
			json_t *vd = json_object();

			if (vd == NULL ||
			    (t->ncerts > 0 && json_object_set_new(vd, "xVals",
			    val_list(t->certs, t->ncerts, "x509Cert")) != 0) ||
			    (t->ncrls + t->nocsps > 0 &&
			    json_object_set_new(vd, "rVals", rvals(t)) != 0)) {
				json_decref(vd);
				r = QES_ERR_ALLOC;
				goto out;
			}
			if ((r = etsiu_add(etsiu, "tstVD", vd)) != 0)
				goto out;
		}
	}
	*out = etsiu;
	etsiu = NULL;
out:
	json_decref(etsiu);
	return r;
}

/*
 * The flattened JSON serialisation. Its members are base64url strings
 * (nothing to escape) and the unprotected header, which jansson writes;
 * the text is put together here so a large payload is copied once, not
 * three times through jansson.
 */
static int
write_json(qes_jades_ctx *ctx, const char *sig_b64u, size_t sig_b64u_len, qes_buf *out)
{
	const char *in = (const char *)qes_buf_data(ctx->input);
	size_t in_len = qes_buf_len(ctx->input);
	json_t *etsiu = NULL, *hdr = NULL;
	char *htext = NULL;
	int r;

	if (ctx->level >= QES_ADES_B_T) {
		if ((r = build_etsiu(ctx, sig_b64u, sig_b64u_len, &etsiu)) != 0)
			return r;
		r = QES_ERR_ALLOC;
		hdr = json_pack("{s:o}", "etsiU", etsiu);	/* "o" steals, also on failure */
		etsiu = NULL;
		if (hdr == NULL || (htext = json_dumps(hdr, JSON_COMPACT)) == NULL)
			goto out;
	}
	if ((r = qes_buf_reserve(out, in_len + sig_b64u_len + 64 +
	    (htext != NULL ? strlen(htext) : 0))) != 0)
		goto out;
	if ((r = qes_buf_put_str(out, "{")) != 0)
		goto out;
	if (!ctx->detached && ((r = qes_buf_put_str(out, "\"payload\":\"")) != 0 ||
	    (r = qes_buf_put(out, in + ctx->header_len + 1,
	    in_len - ctx->header_len - 1)) != 0 || (r = qes_buf_put_str(out, "\",")) != 0))
		goto out;
	if ((r = qes_buf_put_str(out, "\"protected\":\"")) != 0 ||
	    (r = qes_buf_put(out, in, ctx->header_len)) != 0 ||
	    (r = qes_buf_put_str(out, "\",")) != 0)
		goto out;
	if (htext != NULL && ((r = qes_buf_put_str(out, "\"header\":")) != 0 ||
	    (r = qes_buf_put_str(out, htext)) != 0 || (r = qes_buf_put_str(out, ",")) != 0))
		goto out;
	if ((r = qes_buf_put_str(out, "\"signature\":\"")) != 0 ||
	    (r = qes_buf_put(out, sig_b64u, sig_b64u_len)) != 0 ||
	    (r = qes_buf_put_str(out, "\"}")) != 0)
		goto out;
out:
	free(htext);
	json_decref(hdr);
	json_decref(etsiu);
	return r;
}

int
qes_jades_finish(qes_jades_ctx *ctx, const uint8_t *sig, size_t sig_len, qes_buf *out)
{
	const qes_cert_info *ci;
	qes_buf *raw = NULL, *s64 = NULL;
	size_t field, start;
	int r;

	if (ctx == NULL || sig == NULL || sig_len == 0 || out == NULL)
		return QES_ERR_INVALID_ARG;
	if (ctx->tbs_len == 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "prepare did not succeed");
	if (ctx->finished)
		return fail(ctx, QES_ERR_INVALID_ARG, "the signature is already finished");
	if (sig_len > 1024 ||
	    qes_cert_verify_digest(ctx->signer, ctx->scheme, ctx->md, ctx->tbs,
	    ctx->tbs_len, sig, sig_len) != 0)
		return fail(ctx, QES_ERR_SIGNATURE_INVALID,
		    "the signature value does not verify with the signer's certificate");
	if ((raw = qes_buf_new()) == NULL || (s64 = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (ctx->scheme == QES_SIG_ECDSA) {
		/* JWS ES*: r||s, each as wide as the curve (RFC 7518 section 3.4) */
		ci = qes_cert_get_info(ctx->signer);
		field = ((size_t)ci->key_bits + 7) / 8;
		r = sig_len == 2 * field ? qes_buf_put(raw, sig, sig_len) :
		    qes_ecdsa_der_to_raw(sig, sig_len, field, raw);
	} else
		r = qes_buf_put(raw, sig, sig_len);
	if (r != 0 || (r = put_b64(s64, qes_buf_data(raw), qes_buf_len(raw), 1)) != 0)
		goto out;
	start = qes_buf_len(out);
	if (ctx->ser == QES_JADES_COMPACT) {
		const char *in = (const char *)qes_buf_data(ctx->input);

		if (ctx->detached)
			r = qes_buf_put(out, in, ctx->header_len + 1);
		else
			r = qes_buf_put(out, in, qes_buf_len(ctx->input));
		if (r == 0 && (r = qes_buf_put_u8(out, '.')) == 0)
			r = qes_buf_put(out, qes_buf_data(s64), qes_buf_len(s64));
	} else
		r = write_json(ctx, (const char *)qes_buf_data(s64), qes_buf_len(s64), out);
	if (r == 0)
		ctx->finished = 1;
	else
		qes_buf_truncate(out, start);	/* nothing half-written */
out:
	if (r != 0 && ctx->errmsg[0] == '\0')
		fail(ctx, r, "%s", qes_strerror(r));
	qes_buf_free(raw);
	qes_buf_free(s64);
	return r;
}

const char *
qes_jades_errmsg(const qes_jades_ctx *ctx)
{
	return ctx != NULL ? ctx->errmsg : "";
}

void
qes_jades_free(qes_jades_ctx *ctx)
{
	if (ctx == NULL)
		return;
	qes_buf_free(ctx->input);
	free(ctx);
}
