/*
 * verify_jades.c - qes verify's reading of JAdES (JWS compact and JSON,
 * general or flattened): the protected header (alg, x5c, sigT), the
 * signature value over ASCII(protected '.' payload) with the signer
 * certificate of x5c, and the unsigned etsiU properties (sigTst, xVals,
 * rVals, arcTst). jansson parses the JSON (duplicate members refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/jades.h"
#include "qes/proto.h"
#include "verify_priv.h"

/* a JWS text: the payload's limit, base64url-grown, plus headers */
#define MAX_JWS_BYTES (QES_JADES_MAX_PAYLOAD_BYTES / 3 * 4 + 4 * 1024 * 1024)
/* one header, certificate chain included */
#define MAX_HEADER_BYTES (1024 * 1024)

typedef struct jws_part {
	const char *p;
	size_t len;
} jws_part;

static int
set_err(char *err, size_t errlen, int code, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
	return code;
}

static int
alg_params(const char *alg, qes_sig_scheme *scheme, qes_md *md)
{
	if (strlen(alg) != 5)
		return QES_ERR_UNSUPPORTED;
	if (strncmp(alg, "RS", 2) == 0)
		*scheme = QES_SIG_RSA_PKCS1;
	else if (strncmp(alg, "PS", 2) == 0)
		*scheme = QES_SIG_RSA_PSS;
	else if (strncmp(alg, "ES", 2) == 0)
		*scheme = QES_SIG_ECDSA;
	else
		return QES_ERR_UNSUPPORTED;
	if (strcmp(alg + 2, "256") == 0)
		*md = QES_MD_SHA256;
	else if (strcmp(alg + 2, "384") == 0)
		*md = QES_MD_SHA384;
	else if (strcmp(alg + 2, "512") == 0)
		*md = QES_MD_SHA512;
	else
		return QES_ERR_UNSUPPORTED;
	return 0;
}

/* base64url text to a JSON object (NULL when it is not one) */
static json_t *
b64_json(const char *s, size_t len)
{
	qes_buf *b;
	json_t *j = NULL;

	if (len > MAX_HEADER_BYTES / 3 * 4 || (b = qes_buf_new()) == NULL)
		return NULL;
	if (qes_proto_b64url_decode(s, len, b) == 0 && qes_buf_len(b) > 0)
		j = json_loadb((const char *)qes_buf_data(b), qes_buf_len(b),
		    JSON_REJECT_DUPLICATES, NULL);
	qes_buf_free(b);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* standard base64 "val" members of [{"val": ...}, ...]: counted; the first
 * decoded into first (when not NULL) */
static size_t
count_vals(const json_t *a, qes_buf **first)
{
	const json_t *v;

	if (!json_is_array(a))
		return 0;
	if (first != NULL && json_array_size(a) > 0 &&
	    json_is_string(v = json_object_get(json_array_get(a, 0), "val")) &&
	    (*first = qes_buf_new()) != NULL &&
	    verify_b64_decode(json_string_value(v), json_string_length(v), *first) != 0) {
		qes_buf_free(*first);
		*first = NULL;
	}
	return json_array_size(a);
}

static void
read_etsiu(const json_t *hdr, qes_verify_report *r)
{
	const json_t *u = json_object_get(hdr, "etsiU"), *e, *o;
	size_t i;

	if (!json_is_array(u))
		return;
	json_array_foreach(u, i, e) {
		json_t *p;

		if (!json_is_string(e) ||
		    (p = b64_json(json_string_value(e), json_string_length(e))) == NULL)
			continue;
		if ((o = json_object_get(p, "sigTst")) != NULL && r->ts_token == NULL) {
			(void)count_vals(json_object_get(o, "tstTokens"), &r->ts_token);
			if (r->level < QES_ADES_B_T)
				r->level = QES_ADES_B_T;
		}
		if ((o = json_object_get(p, "xVals")) != NULL)
			r->vd_certs += count_vals(o, NULL);
		if ((o = json_object_get(p, "rVals")) != NULL) {
			r->vd_crls += count_vals(json_object_get(o, "crlVals"), NULL);
			r->vd_ocsps += count_vals(json_object_get(o, "ocspVals"), NULL);
		}
		if (json_object_get(p, "arcTst") != NULL)
			r->has_archive_ts = 1;
		json_decref(p);
	}
	if (r->level >= QES_ADES_B_T && r->vd_certs + r->vd_crls + r->vd_ocsps > 0)
		r->level = QES_ADES_B_LT;
	if (r->level >= QES_ADES_B_LT && r->has_archive_ts)
		r->level = QES_ADES_B_LTA;
}

/* One signature: protected header text, unprotected header (or NULL),
 * payload text (base64url), signature text. */
static int
one(qes_verify_report *r, jws_part prot, const json_t *hdr, jws_part payload,
    jws_part sig)
{
	json_t *h = NULL;
	const json_t *x5c, *v;
	qes_buf *input = NULL, *sv = NULL, *der = NULL;
	qes_cert *signer = NULL;
	qes_sig_scheme scheme;
	qes_md md;
	uint8_t dg[QES_MD_MAX_LEN];
	size_t i;
	int e = 0;

	r->format = QES_ADES_JADES;
	r->level = QES_ADES_B_B;
	if ((h = b64_json(prot.p, prot.len)) == NULL) {
		verify_fail(r, "the protected header is not base64url of a JSON object");
		goto out;
	}
	if (json_is_string(v = json_object_get(h, "sigT")))
		snprintf(r->signing_time, sizeof(r->signing_time), "%s", json_string_value(v));
	if (json_is_string(v = json_object_get(h, "kid")))
		snprintf(r->name, sizeof(r->name), "%s", json_string_value(v));
	x5c = json_object_get(h, "x5c");
	if (json_is_array(x5c)) {
		json_array_foreach(x5c, i, v) {
			if (i >= 16 || !json_is_string(v))
				break;
			if ((der = qes_buf_new()) == NULL) {
				e = QES_ERR_ALLOC;
				goto out;
			}
			if (verify_b64_decode(json_string_value(v), json_string_length(v), der) == 0 &&
			    (e = verify_add_cert(r, qes_buf_data(der), qes_buf_len(der))) != 0)
				goto out;
			if (i == 0 && qes_cert_from_der(qes_buf_data(der), qes_buf_len(der),
			    &signer) == 0)
				r->signer_found = 1;
			qes_buf_free(der);
			der = NULL;
		}
	}
	if (hdr != NULL)
		read_etsiu(hdr, r);
	if (!json_is_string(v = json_object_get(h, "alg")) ||
	    alg_params(json_string_value(v), &scheme, &md) != 0) {
		verify_fail(r, "alg %s is not one qes verify reads",
		    json_is_string(v) ? json_string_value(v) : "(missing)");
		goto out;
	}
	snprintf(r->algorithm, sizeof(r->algorithm), "%s", json_string_value(v));
	if (json_is_string(v = json_object_get(h, "b64")) || json_is_false(v)) {
		verify_fail(r, "unencoded payloads (b64 false) are not read by qes verify");
		goto out;
	}
	if (signer == NULL) {
		verify_fail(r, "no signer certificate: x5c is missing or unreadable");
		goto out;
	}
	if ((input = qes_buf_new()) == NULL || (sv = qes_buf_new()) == NULL) {
		e = QES_ERR_ALLOC;
		goto out;
	}
	if ((e = qes_buf_put(input, prot.p, prot.len)) != 0 ||
	    (e = qes_buf_put_u8(input, '.')) != 0 ||
	    (e = qes_buf_put(input, payload.p, payload.len)) != 0 ||
	    (e = qes_md_digest(md, qes_buf_data(input), qes_buf_len(input), dg)) != 0)
		goto out;
	if (qes_proto_b64url_decode(sig.p, sig.len, sv) != 0 || qes_buf_len(sv) == 0) {
		verify_fail(r, "the signature value is not base64url");
		goto out;
	}
	if (qes_cert_verify_digest(signer, scheme, md, dg, qes_md_len(md),
	    qes_buf_data(sv), qes_buf_len(sv)) != 0)
		verify_fail(r, "the signature value does not verify over the JWS "
		    "signing input (protected header and payload)");
	/* sigTst covers the base64url signature value, as text */
	if (r->ts_token != NULL && verify_ts_digest(r, (const uint8_t *)sig.p, sig.len) != 0)
		r->ts_md = (qes_md)0;
out:
	qes_buf_free(der);
	qes_buf_free(input);
	qes_buf_free(sv);
	qes_cert_free(signer);
	json_decref(h);
	return e;
}

static int
is_b64url(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '_'))
			return 0;
	return 1;
}

static int
str_part(const json_t *o, const char *key, jws_part *out)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || !is_b64url(json_string_value(v), json_string_length(v)))
		return 0;
	out->p = json_string_value(v);
	out->len = json_string_length(v);
	return 1;
}

int
qes_verify_jades(const uint8_t *jws, size_t len, const uint8_t *content,
    size_t content_len, qes_verify_report **out, size_t *n, char *err, size_t errlen)
{
	const char *s = (const char *)jws, *d1, *d2;
	qes_verify_report *arr = NULL, *r;
	qes_buf *enc = NULL;
	json_t *root = NULL, *sigs;
	const json_t *sg;
	jws_part prot, pay, sig;
	size_t cnt = 0, i, skip = 0;
	int e = 0;

	if (jws == NULL || out == NULL || n == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	*n = 0;
	if (len > MAX_JWS_BYTES)
		return set_err(err, errlen, QES_ERR_LIMIT, "the JWS is larger than its limit");
	if (content != NULL && content_len > QES_JADES_MAX_PAYLOAD_BYTES)
		return set_err(err, errlen, QES_ERR_LIMIT,
		    "the detached content is larger than the JAdES payload limit");
	while (skip < len && (s[skip] == ' ' || s[skip] == '\n' || s[skip] == '\r' ||
	    s[skip] == '\t'))
		skip++;
	if ((enc = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if (content != NULL &&
	    (e = qes_proto_b64url_encode(content, content_len, enc)) != 0)
		goto out;
	memset(&pay, 0, sizeof(pay));
	if (skip < len && s[skip] == '{') {
		json_error_t je;

		if ((root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je)) == NULL ||
		    !json_is_object(root)) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen, "the JWS is not a JSON object: %s (line %d)",
				    root == NULL ? je.text : "not an object", je.line);
			e = QES_ERR_FORMAT;
			goto out;
		}
		if (json_object_get(root, "payload") != NULL && !str_part(root, "payload", &pay)) {
			e = set_err(err, errlen, QES_ERR_FORMAT, "payload is not base64url");
			goto out;
		}
		if (json_object_get(root, "payload") == NULL) {
			if (content == NULL) {
				e = set_err(err, errlen, QES_ERR_INVALID_ARG, "detached payload: "
				    "the signed content is needed (--content)");
				goto out;
			}
			pay.p = (const char *)qes_buf_data(enc);
			pay.len = qes_buf_len(enc);
		}
		sigs = json_object_get(root, "signatures");
		if (sigs == NULL) {	/* flattened */
			if (!str_part(root, "protected", &prot) || !str_part(root, "signature", &sig)) {
				e = set_err(err, errlen, QES_ERR_FORMAT,
				    "protected or signature is missing or not base64url");
				goto out;
			}
			if ((e = verify_push(&arr, &cnt, &r)) != 0 ||
			    (e = one(r, prot, json_object_get(root, "header"), pay, sig)) != 0)
				goto out;
		} else if (json_is_array(sigs)) {
			json_array_foreach(sigs, i, sg) {
				if ((e = verify_push(&arr, &cnt, &r)) != 0) {
					set_err(err, errlen, e, "too many signatures");
					goto out;
				}
				if (!str_part(sg, "protected", &prot) || !str_part(sg, "signature", &sig)) {
					verify_fail(r, "protected or signature is missing or not base64url");
					r->format = QES_ADES_JADES;
					continue;
				}
				if ((e = one(r, prot, json_object_get(sg, "header"), pay, sig)) != 0)
					goto out;
			}
		} else {
			e = set_err(err, errlen, QES_ERR_FORMAT, "signatures is not an array");
			goto out;
		}
	} else {
		/* compact: three base64url parts, the middle one may be empty */
		while (len > skip && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
		    s[len - 1] == ' '))
			len--;
		s += skip;
		len -= skip;
		if ((d1 = memchr(s, '.', len)) == NULL ||
		    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - s))) == NULL ||
		    memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - s)) != NULL) {
			e = set_err(err, errlen, QES_ERR_FORMAT,
			    "not a JWS: neither JSON nor three dot-separated parts");
			goto out;
		}
		prot.p = s;
		prot.len = (size_t)(d1 - s);
		pay.p = d1 + 1;
		pay.len = (size_t)(d2 - d1 - 1);
		sig.p = d2 + 1;
		sig.len = len - (size_t)(d2 + 1 - s);
		if (!is_b64url(prot.p, prot.len) || !is_b64url(pay.p, pay.len) ||
		    !is_b64url(sig.p, sig.len)) {
			e = set_err(err, errlen, QES_ERR_FORMAT,
			    "a part of the compact JWS is not base64url");
			goto out;
		}
		if (pay.len == 0 && content != NULL) {
			pay.p = (const char *)qes_buf_data(enc);
			pay.len = qes_buf_len(enc);
		} else if (pay.len == 0) {
			e = set_err(err, errlen, QES_ERR_INVALID_ARG, "detached payload: "
			    "the signed content is needed (--content)");
			goto out;
		}
		if ((e = verify_push(&arr, &cnt, &r)) != 0 ||
		    (e = one(r, prot, NULL, pay, sig)) != 0)
			goto out;
	}
	*out = arr;
	*n = cnt;
	arr = NULL;
	cnt = 0;
out:
	verify_free_all(arr, cnt);
	json_decref(root);
	qes_buf_free(enc);
	return e;
}
