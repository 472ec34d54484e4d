/*
 * jobs_format.c - the forms a job takes: the API's base64, the
 * idempotency hash of a request, the stored request (what was asked and
 * what the signer was shown, written at submit and read back to verify the
 * device's answer), and the public JSON of a job.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/secret.h"
#include "qes/sig.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "rfc3339.h"
#include "store_jobs.h"

/* ------------------------------------------------------------------------- */
/* base64, as the REST API spells it */

int
qesd_b64_decode(const char *s, size_t len, qes_buf *out)
{
	uint8_t *tmp = NULL, *back = NULL;
	size_t i, pad = 0, n;
	int r = QES_ERR_FORMAT, got;

	if (s == NULL || out == NULL || len == 0 || len % 4 != 0 ||
	    len > (size_t)INT32_MAX)
		return QES_ERR_FORMAT;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '=') {
			if (i < len - 2)
				return QES_ERR_FORMAT;
			pad++;
			continue;
		}
		if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return QES_ERR_FORMAT;
	}
	if ((tmp = malloc(len / 4 * 3)) == NULL ||
	    (back = malloc(len + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len)) < 0 ||
	    (size_t)got != len / 4 * 3)
		goto out;
	n = (size_t)got - pad;
	/* canonical: the unused bits of the last group are zero */
	if (EVP_EncodeBlock(back, tmp, (int)n) != (int)len ||
	    memcmp(back, s, len) != 0)
		goto out;
	r = qes_buf_put(out, tmp, n);
 out:
	/* it may be a document: leave no copy in freed memory */
	if (tmp != NULL)
		qes_wipe(tmp, len / 4 * 3);
	if (back != NULL)
		qes_wipe(back, len + 1);
	free(tmp);
	free(back);
	return r;
}

json_t *
qesd_b64_json(const uint8_t *data, size_t len)
{
	char *text;
	json_t *j;
	int n;

	if (len > (size_t)INT32_MAX / 2 || (text = malloc(len / 3 * 4 + 5)) == NULL)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)text, data, (int)len);
	j = n >= 0 ? json_stringn(text, (size_t)n) : NULL;
	free(text);
	return j;
}
/* ------------------------------------------------------------------------- */
/* the idempotency hash */

static int
lp(EVP_MD_CTX *c, const void *data, size_t len)
{
	uint8_t be[4];

	if (len > UINT32_MAX)
		return 0;
	be[0] = (uint8_t)(len >> 24);
	be[1] = (uint8_t)(len >> 16);
	be[2] = (uint8_t)(len >> 8);
	be[3] = (uint8_t)len;
	return EVP_DigestUpdate(c, be, 4) == 1 &&
	    (len == 0 || EVP_DigestUpdate(c, data, len) == 1);
}

static int
lps(EVP_MD_CTX *c, const char *s)
{
	return lp(c, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int
qesd_jobs_request_hash(const qesd_sign_request *sr,
    uint8_t out[QESD_JOB_HASH_LEN])
{
	static const char tag[] = "qesd.v1-signature-request";
	EVP_MD_CTX *c = NULL;
	size_t dlen, i;
	uint8_t be[8];
	unsigned int olen = 0;
	int ok, k;

	const qesd_sign_document *doc;
	uint8_t doc_hash[32];
	size_t n;

	if (sr == NULL || out == NULL || sr->credential_id == NULL ||
	    sr->title == NULL || (dlen = qes_md_len(sr->md)) == 0 ||
	    sr->timeout_s < 0)
		return QES_ERR_INVALID_ARG;
	doc = sr->document;
	if (doc != NULL ? doc->data == NULL || doc->len == 0 :
	    sr->n_digests == 0 || sr->n_digests > QES_PROTO_DIGESTS_MAX ||
	    sr->digests == NULL)
		return QES_ERR_INVALID_ARG;
	n = doc != NULL ? 0 : sr->n_digests;
	if (doc != NULL && EVP_Digest(doc->data, doc->len, doc_hash, NULL,
	    EVP_sha256(), NULL) != 1)
		return QES_ERR_CRYPTO;
	if ((c = EVP_MD_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    lp(c, tag, sizeof(tag) - 1) && lps(c, sr->credential_id) &&
	    lps(c, qes_md_name(sr->md)) &&
	    lps(c, sr->has_scheme ? qes_sig_scheme_name(sr->scheme) : NULL);
	be[0] = (uint8_t)(n >> 24);
	be[1] = (uint8_t)(n >> 16);
	be[2] = (uint8_t)(n >> 8);
	be[3] = (uint8_t)n;
	ok = ok && EVP_DigestUpdate(c, be, 4) == 1;
	for (i = 0; ok && i < n; i++)
		ok = lp(c, sr->digests + i * dlen, dlen);
	ok = ok && lps(c, sr->title) && lps(c, sr->description) &&
	    lps(c, sr->application);
	for (k = 0; k < 8; k++)
		be[k] = (uint8_t)((uint64_t)sr->timeout_s >> (56 - 8 * k));
	ok = ok && EVP_DigestUpdate(c, be, 8) == 1;
	if (ok && doc != NULL)
		ok = lps(c, "document") &&
		    lps(c, qes_ades_format_name(doc->format)) &&
		    lps(c, qes_ades_level_name(doc->level)) &&
		    lps(c, qes_ades_packaging_name(doc->packaging)) &&
		    lps(c, doc->name) && lps(c, doc->mime_type) &&
		    lp(c, doc_hash, sizeof(doc_hash));
	ok = ok && EVP_DigestFinal_ex(c, out, &olen) == 1 &&
	    olen == QESD_JOB_HASH_LEN;
	EVP_MD_CTX_free(c);
	return ok ? 0 : QES_ERR_CRYPTO;
}
/* ------------------------------------------------------------------------- */
/* the stored request: what was asked and what the signer was shown */

void
jobs_request_free(struct jobs_request *q)
{
	json_decref(q->root);
	qes_buf_free(q->digests);
	qes_buf_free(q->cert_der);
	memset(q, 0, sizeof(*q));
}

/* Parse a job's request text (our own writing, still checked). */
int
jobs_request_parse(const char *text, struct jobs_request *q)
{
	json_t *digests, *v;
	size_t i, dlen;
	const char *s;
	int r = QES_ERR_FORMAT;

	memset(q, 0, sizeof(*q));
	if (text == NULL ||
	    (q->root = json_loads(text, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto out;
	if (json_integer_value(json_object_get(q->root, "v")) != REQUEST_VERSION ||
	    qes_md_from_name(json_string_value(json_object_get(q->root,
	    "digest_algorithm")), &q->md) != 0 ||
	    qes_sig_scheme_from_name(json_string_value(json_object_get(q->root,
	    "signature_scheme")), &q->scheme) != 0 ||
	    (q->title = json_string_value(json_object_get(q->root,
	    "title"))) == NULL ||
	    (q->description = json_string_value(json_object_get(q->root,
	    "description"))) == NULL ||
	    (q->application = json_string_value(json_object_get(q->root,
	    "application"))) == NULL ||
	    (q->credential = json_string_value(json_object_get(q->root,
	    "credential"))) == NULL ||
	    !json_is_integer(v = json_object_get(q->root, "timeout_seconds")) ||
	    !json_is_array(digests = json_object_get(q->root, "digests")) ||
	    (q->n = json_array_size(digests)) == 0 ||
	    q->n > QES_PROTO_DIGESTS_MAX ||
	    (s = json_string_value(json_object_get(q->root, "certificate"))) == NULL)
		goto out;
	q->document = json_object_get(q->root, "document");
	if (q->document != NULL && (!json_is_object(q->document) || q->n != 1))
		goto out;
	q->timeout_s = (int64_t)json_integer_value(v);
	r = QES_ERR_ALLOC;
	if ((q->digests = qes_buf_new()) == NULL ||
	    (q->cert_der = qes_buf_new()) == NULL)
		goto out;
	if ((r = qesd_b64_decode(s, strlen(s), q->cert_der)) != 0)
		goto out;
	dlen = qes_md_len(q->md);
	json_array_foreach(digests, i, v) {
		size_t before = qes_buf_len(q->digests);

		s = json_string_value(v);
		if (s == NULL) {
			r = QES_ERR_FORMAT;
			goto out;
		}
		if ((r = qesd_b64_decode(s, strlen(s), q->digests)) != 0)
			goto out;
		if (qes_buf_len(q->digests) - before != dlen) {
			r = QES_ERR_FORMAT;
			goto out;
		}
	}
	return 0;
 out:
	jobs_request_free(q);
	return r;
}
/* The request as stored: what the signer is shown and the values to
 * verify against. */
char *
jobs_request_text(const qesd_sign_request *sr, qes_sig_scheme scheme,
    const char *application, const qesd_jobs_credential *cred,
    int64_t signing_time_s)
{
	size_t dlen = qes_md_len(sr->md), i;
	json_t *o, *digests;
	char *s = NULL;

	if ((digests = json_array()) == NULL)
		return NULL;
	for (i = 0; i < sr->n_digests; i++)
		if (json_array_append_new(digests, qesd_b64_json(sr->digests +
		    i * dlen, dlen)) != 0) {
			json_decref(digests);
			return NULL;
		}
	if (sr->document != NULL && sr->n_digests != 1) {
		json_decref(digests);
		return NULL;
	}
	o = json_pack("{s:i, s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:s, s:o}",
	    "v", REQUEST_VERSION,
	    "digest_algorithm", qes_md_name(sr->md),
	    "signature_scheme", qes_sig_scheme_name(scheme),
	    "digests", digests,
	    "title", sr->title,
	    "description", sr->description != NULL ? sr->description : "",
	    "application", application,
	    "timeout_seconds", (json_int_t)sr->timeout_s,
	    "credential", cred->credential,
	    "certificate", qesd_b64_json(cred->cert_der, cred->cert_der_len));
	if (o != NULL && sr->document != NULL) {
		const qesd_sign_document *d = sr->document;
		json_t *dj = json_pack("{s:s, s:s, s:s, s:I, s:I}",
		    "format", qes_ades_format_name(d->format),
		    "level", qes_ades_level_name(d->level),
		    "packaging", d->packaging != QES_ADES_PKG_DEFAULT ?
		    qes_ades_packaging_name(d->packaging) : "",
		    "bytes", (json_int_t)d->len,
		    "signing_time", (json_int_t)signing_time_s);

		if (dj != NULL && d->name != NULL &&
		    json_object_set_new(dj, "name", json_string(d->name)) != 0) {
			json_decref(dj);
			dj = NULL;
		}
		if (dj != NULL && d->mime_type != NULL &&
		    json_object_set_new(dj, "mime_type",
		    json_string(d->mime_type)) != 0) {
			json_decref(dj);
			dj = NULL;
		}
		if (dj == NULL || json_object_set_new(o, "document", dj) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	if (o != NULL)
		s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* ------------------------------------------------------------------------- */
/* public JSON */

static json_t *
time_json(int64_t ms)
{
	char text[QESD_TIME_TEXT_SIZE];

	if (ms <= 0 || qesd_time_format(ms, text) != 0)
		return json_null();
	return json_string(text);
}

/* token_flags from a stored pin_flags bit set, named as in inventories */
static json_t *
token_flags_json(unsigned flags)
{
	return json_pack("{s:b, s:b, s:b}",
	    "user_pin_count_low", (flags & QES_TOK_PIN_COUNT_LOW) != 0,
	    "user_pin_final_try", (flags & QES_TOK_PIN_FINAL_TRY) != 0,
	    "user_pin_locked", (flags & QES_TOK_PIN_LOCKED) != 0);
}

json_t *
qesd_job_json(const qesd_job *job)
{
	json_t *o = NULL, *req = NULL, *res = NULL, *v, *doc;

	if (job == NULL || job->request == NULL)
		return NULL;
	if ((req = json_loads(job->request, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto fail;
	if (job->result != NULL &&
	    (res = json_loads(job->result, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto fail;
	o = json_pack("{s:s, s:s, s:s, s:O, s:O, s:s, s:O, s:o, s:o, s:o}",
	    "id", job->id,
	    "state", qesd_job_state_name(job->state),
	    "credential_id", job->credential_id,
	    "digest_algorithm", json_object_get(req, "digest_algorithm"),
	    "signature_scheme", json_object_get(req, "signature_scheme"),
	    "verification_code", job->verification_code,
	    "title", json_object_get(req, "title"),
	    "created_at", time_json(job->created_at_ms),
	    "updated_at", time_json(job->updated_at_ms),
	    "expires_at", time_json(job->expires_at_ms));
	if (o == NULL)
		goto fail;
	if (job->state == QESD_JOB_FAILED &&
	    json_object_set_new(o, "reason", json_string(job->reason)) != 0)
		goto fail;
	if (job->state == QESD_JOB_COMPLETED &&
	    (v = json_object_get(res, "signatures")) != NULL &&
	    json_object_set(o, "signatures", v) != 0)
		goto fail;
	if ((doc = json_object_get(req, "document")) != NULL) {
		char url[96];
		const char *pkg = json_string_value(json_object_get(doc,
		    "packaging"));

		if (json_object_set(o, "format", json_object_get(doc, "format")) != 0 ||
		    json_object_set(o, "level", json_object_get(doc, "level")) != 0 ||
		    (pkg != NULL && pkg[0] != '\0' &&
		    json_object_set_new(o, "packaging", json_string(pkg)) != 0))
			goto fail;
		snprintf(url, sizeof(url), "/v1/signatures/%s/result", job->id);
		if (job->state == QESD_JOB_COMPLETED &&
		    json_object_set_new(o, "result_url", json_string(url)) != 0)
			goto fail;
	}
	if (json_is_integer(v = json_object_get(res, "pin_flags")) &&
	    json_object_set_new(o, "token_flags",
	    token_flags_json((unsigned)json_integer_value(v))) != 0)
		goto fail;
	json_decref(req);
	json_decref(res);
	return o;
 fail:
	json_decref(o);
	json_decref(req);
	json_decref(res);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* the signed document's media type */

void
qesd_job_result_type(const qesd_job *job, const char **content_type,
    const char **suffix)
{
	json_t *req = job != NULL && job->request != NULL ?
	    json_loads(job->request, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *doc = json_object_get(req, "document");
	const char *f = json_string_value(json_object_get(doc, "format"));
	const char *p = json_string_value(json_object_get(doc, "packaging"));

	*content_type = "application/octet-stream";
	*suffix = ".bin";
	if (f == NULL)
		;
	else if (strcmp(f, "pades") == 0) {
		*content_type = "application/pdf";
		*suffix = ".pdf";
	} else if (strcmp(f, "cades") == 0) {
		/* detached (the default): only the signature; enveloping: the
		 * CMS that holds the document too */
		if (p != NULL && strcmp(p, "enveloping") == 0) {
			*content_type = "application/cms";
			*suffix = ".p7m";
		} else {
			*content_type = "application/pkcs7-signature";
			*suffix = ".p7s";
		}
	} else if (strcmp(f, "xades") == 0) {
		*content_type = "application/xml";
		*suffix = ".xml";
	} else if (strcmp(f, "jades") == 0) {
		if (p != NULL && strcmp(p, "compact") == 0) {
			*content_type = "application/jose";
			*suffix = ".jws";
		} else {
			*content_type = "application/jose+json";
			*suffix = ".json";
		}
	}
	json_decref(req);
}
