/*
 * h_signatures.c - the signature job routes (scope sign):
 *
 *   POST /v1/signatures               a job for one credential and 1..1000
 *                                     digests; 202 with the job (dispatched
 *                                     to the signer's device), 200 with the
 *                                     existing job for a replayed
 *                                     Idempotency-Key, or at once a problem:
 *                                     404 credential_not_found, 409
 *                                     device_revoked / device_offline /
 *                                     idempotency_conflict
 *   GET  /v1/signatures/{id}?wait=S   the job; with wait (1..60 s) the
 *                                     answer waits until the job changes
 *                                     (or the time is up) without holding
 *                                     a worker
 *   POST /v1/signatures/{id}/cancel   cancel a job that is not final (409
 *                                     job_final otherwise)
 *   GET  /v1/signatures/{id}/result   the signed document of a completed
 *                                     document job, once (410 result_gone
 *                                     after; 409 result_not_ready before)
 *
 * POST /v1/signatures takes either digests (hash-only) or a document for
 * the gateway to sign as PAdES, CAdES, XAdES or JAdES (jobs_ades.c): in
 * JSON as base64 ("document", with "format", "level", ...), or as the raw
 * body of any other Content-Type with the other fields in the query
 * string, for documents too large for base64 in JSON. The body limit of
 * this route is document_max_bytes (server.c, QESD_ROUTE_DOCUMENT_BODY).
 *
 * This file turns HTTP into a qesd_sign_request and outcomes into answers;
 * jobs.c does the work. Everything a signer will see (title, description,
 * application) is checked here with the same rule the agent applies to
 * the sign message (qes_proto_display_text_ok), so a request the dialog
 * would refuse is a 400 now, not a failed job later.
 *
 * A job of another tenant answers exactly like a missing one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/secret.h"
#include "qes/sig.h"
#include "qes/sign.h"
#include "app.h"
#include "jobs.h"
#include "jsonv.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "routes.h"
#include "store.h"
#include "store_jobs.h"

#define WAIT_MAX_S 60
#define CREDENTIAL_ID_MAX 64
#define DIGEST_B64_MAX 88	/* SHA-512 */
#define DOC_B64_MAX ((size_t)(QESD_JOB_DOC_MAX + 2) / 3 * 4)

static const char *const md_values[] = { "sha256", "sha384", "sha512", NULL };
static const char *const scheme_values[] = { "rsa-pkcs1", "rsa-pss", "ecdsa",
	NULL };
static const qesd_jv_field digest_item = { .type = QESD_JV_STRING,
	.min_len = 1, .max_len = DIGEST_B64_MAX };

static const qesd_jv_field create_fields[] = {
	{ .name = "credential_id", .type = QESD_JV_STRING,
	  .flags = QESD_JV_REQUIRED, .min_len = 1, .max_len = CREDENTIAL_ID_MAX },
	{ .name = "digest_algorithm", .type = QESD_JV_ENUM,
	  .flags = QESD_JV_REQUIRED, .enum_values = md_values },
	{ .name = "digests", .type = QESD_JV_ARRAY, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = QES_PROTO_DIGESTS_MAX, .items = &digest_item },
	{ .name = "signature_scheme", .type = QESD_JV_ENUM,
	  .enum_values = scheme_values },
	{ .name = "title", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = QESD_JOB_TITLE_MAX },
	{ .name = "description", .type = QESD_JV_STRING,
	  .max_len = QESD_JOB_DESCRIPTION_MAX },
	{ .name = "application", .type = QESD_JV_STRING, .min_len = 1,
	  .max_len = QESD_JOB_APPLICATION_MAX },
	{ .name = "timeout_seconds", .type = QESD_JV_INTEGER,
	  .min = QESD_JOB_TIMEOUT_MIN_S, .max = QESD_JOB_TIMEOUT_MAX_S },
};

static const char *const format_values[] = { "pades", "cades", "xades",
	"jades", NULL };
static const char *const level_values[] = { "B-B", "B-T", "B-LT", "B-LTA",
	NULL };
static const char *const packaging_values[] = { "detached", "enveloping",
	"enveloped", "compact", "json", NULL };

/* a document in JSON: the same fields but digests, and the document's */
static const qesd_jv_field document_fields[] = {
	{ .name = "credential_id", .type = QESD_JV_STRING,
	  .flags = QESD_JV_REQUIRED, .min_len = 1, .max_len = CREDENTIAL_ID_MAX },
	{ .name = "document", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 4, .max_len = DOC_B64_MAX },
	{ .name = "format", .type = QESD_JV_ENUM, .flags = QESD_JV_REQUIRED,
	  .enum_values = format_values },
	{ .name = "level", .type = QESD_JV_ENUM, .enum_values = level_values },
	{ .name = "packaging", .type = QESD_JV_ENUM,
	  .enum_values = packaging_values },
	{ .name = "document_name", .type = QESD_JV_STRING, .min_len = 1,
	  .max_len = QESD_DOC_NAME_MAX },
	{ .name = "mime_type", .type = QESD_JV_STRING, .min_len = 3,
	  .max_len = QESD_DOC_MIME_MAX },
	{ .name = "digest_algorithm", .type = QESD_JV_ENUM,
	  .enum_values = md_values },
	{ .name = "signature_scheme", .type = QESD_JV_ENUM,
	  .enum_values = scheme_values },
	{ .name = "title", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = QESD_JOB_TITLE_MAX },
	{ .name = "description", .type = QESD_JV_STRING,
	  .max_len = QESD_JOB_DESCRIPTION_MAX },
	{ .name = "application", .type = QESD_JV_STRING, .min_len = 1,
	  .max_len = QESD_JOB_APPLICATION_MAX },
	{ .name = "timeout_seconds", .type = QESD_JV_INTEGER,
	  .min = QESD_JOB_TIMEOUT_MIN_S, .max = QESD_JOB_TIMEOUT_MAX_S },
};

/* the query string of a raw upload: the same fields as document_fields */
static const char *const raw_query_keys[] = { "credential_id", "format",
	"level", "packaging", "document_name", "mime_type", "digest_algorithm",
	"signature_scheme", "title", "description", "application",
	"timeout_seconds", NULL };

/* ------------------------------------------------------------------------- */
/* answers */

static qesd_handler_result
not_found(qesd_request *req, qesd_response *resp)
{
	qesd_problem(resp, req, 404, "not_found", "Not found",
	    "no such signature job");
	return QESD_HANDLED;
}

/* 200/202 with the job, and where it lives. */
static qesd_handler_result
job_answer(qesd_request *req, qesd_response *resp, int status,
    const qesd_job *job)
{
	char location[96];
	json_t *body = qesd_job_json(job);

	if (body == NULL)
		return qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
	qesd_response_json(resp, status, body);
	if (status == 201 || status == 202) {
		snprintf(location, sizeof(location), "/v1/signatures/%s", job->id);
		(void)qesd_response_header(resp, "Location", location);
	}
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* POST /v1/signatures */

/*
 * What every request has, from the JSON body or the query string (get
 * returns NULL for an absent field): the Idempotency-Key, credential,
 * digest algorithm and scheme, and what the signer will see. -1 with the
 * problem in resp.
 */
static int
common_fields(qesd_request *req, qesd_response *resp,
    const char *(*get)(qesd_request *, const char *), qesd_sign_request *sr)
{
	const char *v;

	if (req->idempotency_key != NULL &&
	    !qesd_job_idempotency_key_ok(req->idempotency_key)) {
		qesd_problem(resp, req, 400, "invalid_idempotency_key",
		    "Invalid Idempotency-Key",
		    "the Idempotency-Key header must be 1-255 printable ASCII characters");
		return -1;
	}
	sr->idempotency_key = req->idempotency_key;
	sr->credential_id = get(req, "credential_id");
	sr->md = QES_MD_SHA256;
	if ((v = get(req, "digest_algorithm")) != NULL &&
	    qes_md_from_name(v, &sr->md) != 0)
		return qesd_h_invalid_field(req, resp, "digest_algorithm",
		    "must be sha256, sha384 or sha512"), -1;
	if ((v = get(req, "signature_scheme")) != NULL) {
		sr->has_scheme = 1;
		if (qes_sig_scheme_from_name(v, &sr->scheme) != 0)
			return qesd_h_invalid_field(req, resp, "signature_scheme",
			    "must be rsa-pkcs1, rsa-pss or ecdsa"), -1;
	}
	sr->title = get(req, "title");
	if (sr->title == NULL || !qes_proto_display_text_ok(sr->title,
	    QESD_JOB_TITLE_MAX, 0, 0))
		return qesd_h_invalid_field(req, resp, "title", "must be one line "
		    "of text without control or bidirectional-override characters"),
		    -1;
	if ((sr->description = get(req, "description")) != NULL &&
	    !qes_proto_display_text_ok(sr->description,
	    QESD_JOB_DESCRIPTION_MAX, 1, 1))
		return qesd_h_invalid_field(req, resp, "description", "must be "
		    "text without control characters (line feeds allowed) or "
		    "bidirectional overrides"), -1;
	if ((sr->application = get(req, "application")) != NULL &&
	    !qes_proto_display_text_ok(sr->application,
	    QESD_JOB_APPLICATION_MAX, 0, 0))
		return qesd_h_invalid_field(req, resp, "application", "must be one "
		    "line of text without control or bidirectional-override "
		    "characters"), -1;
	return 0;
}

static const char *
json_get(qesd_request *req, const char *name)
{
	return json_string_value(json_object_get(req->json, name));
}

static const char *
query_get(qesd_request *req, const char *name)
{
	return qesd_query_get(&req->query, name);
}

/* The answer to a submit. */
static void
submit_answer(qesd_request *req, qesd_response *resp,
    qesd_submit_outcome outcome, const qesd_job *job, const char *detail)
{
	switch (outcome) {
	case QESD_SUBMIT_ACCEPTED:
		job_answer(req, resp, 202, job);
		break;
	case QESD_SUBMIT_REPLAYED:
		job_answer(req, resp, 200, job);
		(void)qesd_response_header(resp, "Idempotent-Replayed", "true");
		break;
	case QESD_SUBMIT_IDEMPOTENCY_CONFLICT:
		qesd_problem(resp, req, 409, "idempotency_conflict",
		    "Idempotency conflict",
		    "this Idempotency-Key was used for a different request body; "
		    "use a new key for a new request");
		break;
	case QESD_SUBMIT_CREDENTIAL_NOT_FOUND:
		qesd_problem(resp, req, 404, "credential_not_found",
		    "Credential not found",
		    "no such credential in this tenant (GET /v1/credentials lists them)");
		break;
	case QESD_SUBMIT_DEVICE_REVOKED:
		qesd_problem(resp, req, 409, "device_revoked", "Device revoked",
		    "the credential's device was revoked; it can never sign again");
		break;
	case QESD_SUBMIT_DEVICE_OFFLINE:
		qesd_problem(resp, req, 409, "device_offline", "Device offline",
		    "the credential's device is not connected; ask the signer to "
		    "start qes-agent, then retry");
		break;
	case QESD_SUBMIT_SCHEME_UNSUITABLE:
		qesd_h_invalid_field(req, resp, "signature_scheme",
		    "the credential's key cannot make this kind of signature");
		break;
	case QESD_SUBMIT_DOCUMENTS_DISABLED:
		qesd_problemf(resp, req, 501, "documents_disabled",
		    "Document signing disabled", "%s", detail);
		break;
	case QESD_SUBMIT_TIMESTAMP_UNAVAILABLE:
		qesd_problemf(resp, req, 409, "timestamp_unavailable",
		    "Timestamp unavailable", "%s", detail);
		break;
	case QESD_SUBMIT_FORMAT_UNSUPPORTED:
		qesd_problemf(resp, req, 400, "unsupported_format",
		    "Unsupported format, level or packaging", "%s", detail);
		break;
	case QESD_SUBMIT_DOCUMENT_INVALID:
		qesd_problemf(resp, req, 422, "document_invalid",
		    "Document cannot be signed", "%s", detail);
		break;
	default:
		qesd_h_store_problem(req, resp, QES_ERR_INTERNAL, NULL);
		break;
	}
}

/* 1 when a document name is a plain file name: 1..255 bytes of letters,
 * digits, blank and ._-+,() not starting with a dot (it becomes a
 * reference URI in XAdES and the result's file name). */
static int
doc_name_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > QESD_DOC_NAME_MAX || s[0] == '.' || s[0] == ' ')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr(" ._-+,()", c) != NULL))
			return 0;
	}
	return 1;
}

/* 1 when s is a media type: type "/" subtype, RFC 6838 characters. */
static int
mime_ok(const char *s)
{
	size_t i, n = strlen(s), slash = 0;

	if (n < 3 || n > QESD_DOC_MIME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '/') {
			if (slash++ > 0 || i == 0 || i == n - 1)
				return 0;
			continue;
		}
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("!#$&^_.+-", c) != NULL))
			return 0;
	}
	return slash == 1;
}

/*
 * The document's parameters (format, level, packaging, names), from the
 * JSON body or the query string. -1 with the problem in resp.
 */
static int
document_fields_parse(qesd_request *req, qesd_response *resp,
    const char *(*get)(qesd_request *, const char *), qesd_sign_document *doc)
{
	const char *v;

	if ((v = get(req, "format")) == NULL ||
	    qes_ades_format_from_name(v, &doc->format) != 0)
		return qesd_h_invalid_field(req, resp, "format",
		    "must be pades, cades, xades or jades"), -1;
	doc->level = QES_ADES_B_B;
	if ((v = get(req, "level")) != NULL &&
	    (strncmp(v, "B-", 2) != 0 ||
	    qes_ades_level_from_name(v, &doc->level) != 0))
		return qesd_h_invalid_field(req, resp, "level",
		    "must be B-B, B-T, B-LT or B-LTA"), -1;
	if ((v = get(req, "packaging")) != NULL &&
	    qes_ades_packaging_from_name(v, &doc->packaging) != 0)
		return qesd_h_invalid_field(req, resp, "packaging", "must be "
		    "detached, enveloping, enveloped, compact or json"), -1;
	if ((doc->name = get(req, "document_name")) != NULL &&
	    !doc_name_ok(doc->name))
		return qesd_h_invalid_field(req, resp, "document_name", "must be a "
		    "file name of 1-255 letters, digits, blanks and ._-+,() not "
		    "starting with a dot"), -1;
	/* a raw upload's Content-Type is there already unless named here */
	if ((v = get(req, "mime_type")) != NULL) {
		if (!mime_ok(v))
			return qesd_h_invalid_field(req, resp, "mime_type",
			    "must be a media type such as application/pdf"), -1;
		doc->mime_type = v;
	}
	return 0;
}

/* Submit a validated request and answer. */
static void
submit(qesd_request *req, qesd_response *resp, qesd_sign_request *sr)
{
	qesd_app *app = req->app;
	qesd_submit_outcome outcome = 0;
	char detail[512] = "";
	qesd_job job;
	int r;

	memset(&job, 0, sizeof(job));
	/* an id of the wrong shape cannot name a credential */
	if (!qesd_id_valid("crd", sr->credential_id)) {
		outcome = QESD_SUBMIT_CREDENTIAL_NOT_FOUND;
	} else if ((r = qesd_jobs_submit_detail(app->jobs, req, sr, &outcome,
	    &job, detail, sizeof(detail))) != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		return;
	}
	submit_answer(req, resp, outcome, &job, detail);
	qesd_job_clear(&job);
}

/*
 * A document request: the document's bytes in doc (data, len), the
 * fields through get. Refusals that need no credential come first.
 */
static void
create_document(qesd_request *req, qesd_response *resp,
    const char *(*get)(qesd_request *, const char *), qesd_sign_document *doc)
{
	qesd_app *app = req->app;
	qesd_sign_request sr;
	qesd_submit_outcome outcome;
	char detail[256] = "";
	long long t;
	const char *v;

	memset(&sr, 0, sizeof(sr));
	if (common_fields(req, resp, get, &sr) != 0 ||
	    document_fields_parse(req, resp, get, doc) != 0)
		return;
	sr.timeout_s = QESD_JOB_TIMEOUT_DEFAULT_S;
	if (req->json != NULL) {
		json_t *jt = json_object_get(req->json, "timeout_seconds");

		if (jt != NULL)
			sr.timeout_s = (int64_t)json_integer_value(jt);
	} else if ((v = get(req, "timeout_seconds")) != NULL) {
		if (qesd_query_get_int(&req->query, "timeout_seconds",
		    QESD_JOB_TIMEOUT_MIN_S, QESD_JOB_TIMEOUT_MAX_S, &t) != 0) {
			qesd_problemf(resp, req, 400, "invalid_query",
			    "Invalid query", "timeout_seconds must be a whole number "
			    "of seconds in %d..%d", QESD_JOB_TIMEOUT_MIN_S,
			    QESD_JOB_TIMEOUT_MAX_S);
			return;
		}
		sr.timeout_s = (int64_t)t;
	}
	if (sr.credential_id == NULL) {
		qesd_h_invalid_field(req, resp, "credential_id", "is required");
		return;
	}
	if ((outcome = qesd_jobs_document_check(app->jobs, doc, detail,
	    sizeof(detail))) != 0) {
		submit_answer(req, resp, outcome, NULL, detail);
		return;
	}
	if (doc->len == 0) {
		qesd_problem(resp, req, 400, "document_invalid",
		    "Document cannot be signed", "the document is empty");
		return;
	}
	if (doc->len > qesd_jobs_document_max(app->jobs)) {
		qesd_problemf(resp, req, 413, "document_too_large",
		    "Document too large", "the document has %zu bytes; this "
		    "gateway signs at most %zu (document_max_bytes)", doc->len,
		    qesd_jobs_document_max(app->jobs));
		return;
	}
	sr.document = doc;
	submit(req, resp, &sr);
}

/* POST /v1/signatures with "document" in JSON. */
static void
create_document_json(qesd_request *req, qesd_response *resp)
{
	qesd_sign_document doc;
	qesd_jv_error jerr;
	qes_buf *data = NULL;
	const char *b64;
	size_t b64_len, max = qesd_jobs_document_max(((qesd_app *)req->app)->jobs);
	int r;

	memset(&doc, 0, sizeof(doc));
	if (qesd_jv_validate(req->json, document_fields,
	    sizeof(document_fields) / sizeof(document_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		return;
	}
	b64 = json_string_value(json_object_get(req->json, "document"));
	b64_len = strlen(b64);
	/* too large for this gateway: say so before decoding (max 0: off,
	 * which create_document says) */
	if (max > 0 && b64_len > (max + 2) / 3 * 4) {
		qesd_problemf(resp, req, 413, "document_too_large",
		    "Document too large", "this gateway signs documents of at "
		    "most %zu bytes (document_max_bytes)", max);
		return;
	}
	if ((data = qes_buf_new_secret()) == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		return;
	}
	qes_buf_set_max(data, QESD_JOB_DOC_MAX);
	if ((r = qesd_b64_decode(b64, b64_len, data)) != 0) {
		if (r == QES_ERR_ALLOC)
			qesd_h_store_problem(req, resp, r, NULL);
		else
			qesd_h_invalid_field(req, resp, "document",
			    "not canonical padded base64");
		goto out;
	}
	doc.data = qes_buf_data(data);
	doc.len = qes_buf_len(data);
	create_document(req, resp, json_get, &doc);
 out:
	qes_buf_free(data);
}

/* POST /v1/signatures with the document as the body (not JSON). */
static void
create_raw(qesd_request *req, qesd_response *resp)
{
	qesd_sign_document doc;
	char mime[QESD_DOC_MIME_MAX + 1];
	size_t i, k, n;

	memset(&doc, 0, sizeof(doc));
	/* a body that is neither JSON nor names its format is a mistake, not
	 * a document */
	if (qesd_query_get(&req->query, "format") == NULL) {
		qesd_problem(resp, req, 415, "unsupported_media_type",
		    "Unsupported media type", "the request body must be "
		    "application/json, or a document to sign with format (and "
		    "the other fields) in the query string");
		return;
	}
	for (i = 0; i < req->query.n; i++) {
		for (k = 0; raw_query_keys[k] != NULL; k++)
			if (strcmp(req->query.items[i].name, raw_query_keys[k]) == 0)
				break;
		if (raw_query_keys[k] == NULL) {
			qesd_problemf(resp, req, 400, "invalid_query", "Invalid query",
			    "unknown query parameter '%.64s' (a raw upload takes "
			    "credential_id, format, level, packaging, document_name, "
			    "mime_type, digest_algorithm, signature_scheme, title, "
			    "description, application, timeout_seconds)",
			    req->query.items[i].name);
			return;
		}
	}
	doc.data = req->body;
	doc.len = req->body_len;
	/* the Content-Type names the document's type, unless the query does
	 * or it says nothing (octet-stream) */
	if (qesd_query_get(&req->query, "mime_type") == NULL &&
	    req->content_type != NULL) {
		n = strcspn(req->content_type, "; \t");
		if (n > 0 && n < sizeof(mime)) {
			for (i = 0; i < n; i++)
				mime[i] = (char)tolower((unsigned char)req->content_type[i]);
			mime[n] = '\0';
			/* octet-stream says nothing; a form type is what curl
			 * -d sends by default, not the document's */
			if (mime_ok(mime) &&
			    strcmp(mime, "application/octet-stream") != 0 &&
			    strcmp(mime, "application/x-www-form-urlencoded") != 0 &&
			    strcmp(mime, "multipart/form-data") != 0)
				doc.mime_type = mime;
		}
	}
	create_document(req, resp, query_get, &doc);
}

static qesd_handler_result
signatures_create(qesd_request *req, qesd_response *resp)
{
	qesd_sign_request sr;
	qesd_jv_error jerr;
	qes_buf *digests = NULL;
	json_t *v;
	const char *s;
	char field[32];
	size_t i, dlen;
	int r;

	if (req->json == NULL) {
		create_raw(req, resp);
		return QESD_HANDLED;
	}
	if (json_object_get(req->json, "document") != NULL) {
		if (json_object_get(req->json, "digests") != NULL)
			qesd_problem(resp, req, 400, "document_and_digests",
			    "Document and digests", "send either digests (hash-only) "
			    "or a document for the gateway to sign, not both");
		else
			create_document_json(req, resp);
		return QESD_HANDLED;
	}
	memset(&sr, 0, sizeof(sr));
	if (qesd_jv_validate(req->json, create_fields,
	    sizeof(create_fields) / sizeof(create_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		goto out;
	}
	if (common_fields(req, resp, json_get, &sr) != 0)
		goto out;
	sr.timeout_s = QESD_JOB_TIMEOUT_DEFAULT_S;
	if ((v = json_object_get(req->json, "timeout_seconds")) != NULL)
		sr.timeout_s = (int64_t)json_integer_value(v);

	/* the digests: canonical base64 of exactly one digest each */
	dlen = qes_md_len(sr.md);
	if ((digests = qes_buf_new()) == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	json_array_foreach(json_object_get(req->json, "digests"), i, v) {
		size_t before = qes_buf_len(digests);

		s = json_string_value(v);
		r = qesd_b64_decode(s, strlen(s), digests);
		if (r == QES_ERR_ALLOC) {
			qesd_h_store_problem(req, resp, r, NULL);
			goto out;
		}
		if (r != 0 || qes_buf_len(digests) - before != dlen) {
			snprintf(field, sizeof(field), "digests[%zu]", i);
			qesd_h_invalid_field(req, resp, field, dlen == 32 ?
			    "not base64 of a 32-byte SHA-256 digest" : dlen == 48 ?
			    "not base64 of a 48-byte SHA-384 digest" :
			    "not base64 of a 64-byte SHA-512 digest");
			goto out;
		}
	}
	sr.digests = qes_buf_data(digests);
	sr.n_digests = json_array_size(json_object_get(req->json, "digests"));
	submit(req, resp, &sr);
 out:
	qes_buf_free(digests);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* GET /v1/signatures/{id}?wait= */

static qesd_handler_result
signatures_get(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	qesd_jobs_waiter *w = NULL;
	qesd_job job, again;
	long long wait = 0;
	uint64_t token = 0;
	size_t i;
	int r;

	memset(&job, 0, sizeof(job));
	memset(&again, 0, sizeof(again));
	for (i = 0; i < req->query.n; i++)
		if (strcmp(req->query.items[i].name, "wait") != 0) {
			qesd_problemf(resp, req, 400, "invalid_query", "Invalid query",
			    "unknown query parameter '%.64s' (wait is known)",
			    req->query.items[i].name);
			goto out;
		}
	r = qesd_query_get_int(&req->query, "wait", 0, WAIT_MAX_S, &wait);
	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		qesd_problemf(resp, req, 400, "invalid_query", "Invalid query",
		    "wait must be a whole number of seconds in 0..%d", WAIT_MAX_S);
		goto out;
	}
	r = qesd_jobs_get(app->jobs, req->auth.tenant_id, id, &job);
	if (r == QES_ERR_NOT_FOUND) {
		not_found(req, resp);
		goto out;
	}
	if (r != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		goto out;
	}
	if (wait == 0 || qesd_job_state_final(job.state))
		goto answer;

	/*
	 * Wait without a worker: register, then look once more, because the
	 * job may have moved between the read above and the registration
	 * (its wake would have found nobody). A wait that cannot be deferred
	 * (too many waiting) answers now: the client simply asks again.
	 */
	if ((w = qesd_jobs_wait_begin(app->jobs, req->auth.tenant_id, id)) == NULL)
		goto answer;
	if (qesd_defer(req, (uint32_t)wait * 1000, qesd_jobs_resume, w,
	    &token) != 0) {
		qesd_jobs_wait_cancel(w);
		goto answer;
	}
	qesd_jobs_wait_arm(w, req->server, token);
	r = qesd_jobs_get(app->jobs, req->auth.tenant_id, id, &again);
	if (r != 0 || again.version != job.version)
		(void)qesd_deferred_wake(req->server, token);
	qesd_job_clear(&again);
	qesd_job_clear(&job);
	return QESD_DEFERRED;
 answer:
	job_answer(req, resp, 200, &job);
 out:
	qesd_job_clear(&job);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* POST /v1/signatures/{id}/cancel */

static qesd_handler_result
signatures_cancel(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	qesd_job job;
	int r, was_final = 0;

	memset(&job, 0, sizeof(job));
	r = qesd_jobs_cancel(app->jobs, req, id, &was_final, &job);
	if (r == QES_ERR_NOT_FOUND)
		return not_found(req, resp);
	if (r != 0)
		return qesd_h_store_problem(req, resp, r, NULL);
	if (was_final)
		qesd_problemf(resp, req, 409, "job_final", "Job already final",
		    "the job is %s already; only a job that is not final can be "
		    "cancelled", qesd_job_state_name(job.state));
	else
		job_answer(req, resp, 200, &job);
	qesd_job_clear(&job);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* GET /v1/signatures/{id}/result */

/* The result's file name: the document's name (checked at submit: a
 * plain file name) or the job id, with the format's suffix. */
static void
result_filename(const qesd_job *job, const char *suffix, char *out,
    size_t len)
{
	json_t *req = json_loads(job->request, JSON_REJECT_DUPLICATES, NULL);
	const char *name = json_string_value(json_object_get(json_object_get(req,
	    "document"), "name"));
	const char *dot;
	int stem;

	if (name == NULL || !doc_name_ok(name))
		name = job->id;
	dot = strrchr(name, '.');
	stem = dot != NULL && dot != name ? (int)(dot - name) : (int)strlen(name);
	if (strcmp(suffix, ".p7s") == 0 || strcmp(suffix, ".p7m") == 0)
		snprintf(out, len, "%s%s", name, suffix);	/* contract.pdf.p7s */
	else
		snprintf(out, len, "%.*s-signed%s", stem, name, suffix);
	json_decref(req);
}

static qesd_handler_result
signatures_result(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	const char *ctype, *suffix;
	qesd_result_outcome outcome = 0;
	qesd_job job;
	uint8_t *data = NULL;
	size_t len = 0;
	char name[300], disp[340];
	int r;

	memset(&job, 0, sizeof(job));
	r = qesd_jobs_result_take(app->jobs, req, id, &outcome, &job, &data, &len);
	if (r == QES_ERR_NOT_FOUND)
		return not_found(req, resp);
	if (r == QES_ERR_UNSUPPORTED) {
		qesd_problem(resp, req, 501, "documents_disabled",
		    "Document signing disabled", "this gateway has no "
		    "document_key_file configured and cannot open stored results");
		goto out;
	}
	if (r != 0)
		return qesd_h_store_problem(req, resp, r, NULL);
	switch (outcome) {
	case QESD_RESULT_OK:
		qesd_job_result_type(&job, &ctype, &suffix);
		result_filename(&job, suffix, name, sizeof(name));
		snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
		/* the response owns the bytes now (freed after sending) */
		if (qesd_response_take_raw(resp, 200, ctype, data, len) != 0) {
			qes_wipe(data, len);
			free(data);
			data = NULL;
			qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
			goto out;
		}
		data = NULL;
		(void)qesd_response_header(resp, "Content-Disposition", disp);
		(void)qesd_response_header(resp, "Cache-Control", "no-store");
		break;
	case QESD_RESULT_NOT_READY:
		qesd_problemf(resp, req, 409, "result_not_ready", "Result not ready",
		    "the job is %s; the signed document is here once it is "
		    "completed (GET /v1/signatures/%s?wait=60)",
		    qesd_job_state_name(job.state), job.id);
		break;
	case QESD_RESULT_UNAVAILABLE:
		qesd_problemf(resp, req, 409, "result_unavailable",
		    "No result", "the job ended %s%s%s without a signed document",
		    qesd_job_state_name(job.state), job.reason[0] != '\0' ?
		    " with " : "", job.reason);
		break;
	case QESD_RESULT_GONE:
		qesd_problem(resp, req, 410, "result_gone", "Result gone",
		    "the signed document was fetched already or its retention "
		    "ended; it is handed out once and not kept");
		break;
	case QESD_RESULT_NO_DOCUMENT:
		qesd_problem(resp, req, 409, "not_a_document_job",
		    "Not a document job", "this job signed digests; its signature "
		    "values are in the job (GET /v1/signatures/{id})");
		break;
	default:
		qesd_h_store_problem(req, resp, QES_ERR_INTERNAL, NULL);
		break;
	}
 out:
	if (data != NULL) {
		qes_wipe(data, len);
		free(data);
	}
	qesd_job_clear(&job);
	return QESD_HANDLED;
}

static const qesd_route signature_routes[] = {
	{ QESD_POST, "/v1/signatures", QESD_SCOPE_SIGN,
	  QESD_ROUTE_JSON_BODY | QESD_ROUTE_DOCUMENT_BODY,
	  signatures_create, "signatures.create" },
	{ QESD_GET, "/v1/signatures/{id}/result", QESD_SCOPE_SIGN, 0,
	  signatures_result, "signatures.result" },
	{ QESD_GET, "/v1/signatures/{id}", QESD_SCOPE_SIGN, 0, signatures_get,
	  "signatures.get" },
	{ QESD_POST, "/v1/signatures/{id}/cancel", QESD_SCOPE_SIGN, 0,
	  signatures_cancel, "signatures.cancel" },
};
const qesd_route_table qesd_signature_routes = { signature_routes,
	sizeof(signature_routes) / sizeof(signature_routes[0]) };
