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
 *
 * This file turns HTTP into a qesd_sign_request and outcomes into answers;
 * jobs.c does the work. Everything a signer will see (title, description,
 * application) is checked here with the same rule the agent applies to
 * the sign message (qes_proto_display_text_ok), so a request the dialog
 * would refuse is a 400 now, not a failed job later.
 *
 * A job of another tenant answers exactly like a missing one.
 */
#include <stdio.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/sig.h"
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

static qesd_handler_result
signatures_create(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	qesd_sign_request sr;
	qesd_submit_outcome outcome = 0;
	qesd_jv_error jerr;
	qesd_job job;
	qes_buf *digests = NULL;
	json_t *v;
	const char *s;
	char field[32];
	size_t i, dlen;
	int r;

	memset(&sr, 0, sizeof(sr));
	memset(&job, 0, sizeof(job));
	if (qesd_jv_validate(req->json, create_fields,
	    sizeof(create_fields) / sizeof(create_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		goto out;
	}
	if (req->idempotency_key != NULL &&
	    !qesd_job_idempotency_key_ok(req->idempotency_key)) {
		qesd_problem(resp, req, 400, "invalid_idempotency_key",
		    "Invalid Idempotency-Key",
		    "the Idempotency-Key header must be 1-255 printable ASCII characters");
		goto out;
	}
	sr.idempotency_key = req->idempotency_key;
	sr.credential_id = json_string_value(json_object_get(req->json,
	    "credential_id"));
	(void)qes_md_from_name(json_string_value(json_object_get(req->json,
	    "digest_algorithm")), &sr.md);
	if ((v = json_object_get(req->json, "signature_scheme")) != NULL) {
		sr.has_scheme = 1;
		(void)qes_sig_scheme_from_name(json_string_value(v), &sr.scheme);
	}
	sr.title = json_string_value(json_object_get(req->json, "title"));
	if (!qes_proto_display_text_ok(sr.title, QESD_JOB_TITLE_MAX, 0, 0)) {
		qesd_h_invalid_field(req, resp, "title", "must be one line of text without "
		    "control or bidirectional-override characters");
		goto out;
	}
	if ((v = json_object_get(req->json, "description")) != NULL) {
		sr.description = json_string_value(v);
		if (!qes_proto_display_text_ok(sr.description,
		    QESD_JOB_DESCRIPTION_MAX, 1, 1)) {
			qesd_h_invalid_field(req, resp, "description", "must be text without "
			    "control characters (line feeds allowed) or "
			    "bidirectional overrides");
			goto out;
		}
	}
	if ((v = json_object_get(req->json, "application")) != NULL) {
		sr.application = json_string_value(v);
		if (!qes_proto_display_text_ok(sr.application,
		    QESD_JOB_APPLICATION_MAX, 0, 0)) {
			qesd_h_invalid_field(req, resp, "application", "must be one line of "
			    "text without control or bidirectional-override characters");
			goto out;
		}
	}
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

	/* an id of the wrong shape cannot name a credential */
	if (!qesd_id_valid("crd", sr.credential_id)) {
		outcome = QESD_SUBMIT_CREDENTIAL_NOT_FOUND;
	} else if ((r = qesd_jobs_submit(app->jobs, req, &sr, &outcome,
	    &job)) != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		goto out;
	}
	switch (outcome) {
	case QESD_SUBMIT_ACCEPTED:
		job_answer(req, resp, 202, &job);
		break;
	case QESD_SUBMIT_REPLAYED:
		job_answer(req, resp, 200, &job);
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
	default:
		qesd_h_store_problem(req, resp, QES_ERR_INTERNAL, NULL);
		break;
	}
 out:
	qesd_job_clear(&job);
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

static const qesd_route signature_routes[] = {
	{ QESD_POST, "/v1/signatures", QESD_SCOPE_SIGN, QESD_ROUTE_JSON_BODY,
	  signatures_create, "signatures.create" },
	{ QESD_GET, "/v1/signatures/{id}", QESD_SCOPE_SIGN, 0, signatures_get,
	  "signatures.get" },
	{ QESD_POST, "/v1/signatures/{id}/cancel", QESD_SCOPE_SIGN, 0,
	  signatures_cancel, "signatures.cancel" },
};
const qesd_route_table qesd_signature_routes = { signature_routes,
	sizeof(signature_routes) / sizeof(signature_routes[0]) };
