/*
 * fuzz_http.c - libFuzzer target for qesd's request parsing and validation
 * layer (src/qesd/http.c, jsonv.c, problem.c): the same bytes go through
 * query parsing (raw and pre-decoded), request-id validation, route
 * matching, Content-Type checking, and the JSON body pipeline (depth and
 * string pre-scan, jansson, jsonv against a schema shaped like the real
 * ones), building the problem response whenever a stage refuses.
 * Invariants are checked with abort(): a parsed query holds only valid
 * keys and UTF-8 values; a body the pipeline accepts is never deeper than
 * the limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "http.h"
#include "jsonv.h"
#include "problem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEPTH_LIMIT 8
#define STRING_LIMIT 256

static qesd_handler_result
nop(qesd_request *req, qesd_response *resp)
{
	(void)req;
	(void)resp;
	return QESD_HANDLED;
}

static const qesd_route routes[] = {
	{ QESD_GET, "/healthz", 0, 0, nop, "health.live" },
	{ QESD_GET, "/v1/signatures/{id}", QESD_SCOPE_SIGN, 0, nop, "sig.get" },
	{ QESD_POST, "/v1/signatures/{id}/cancel", QESD_SCOPE_SIGN, 0, nop, "sig.cancel" },
	{ QESD_GET, "/v1/api-keys/current", QESD_SCOPE_ADMIN, 0, nop, "keys.current" },
	{ QESD_DELETE, "/v1/api-keys/{id}", QESD_SCOPE_ADMIN, 0, nop, "keys.delete" },
};
static const qesd_route_table table = { routes, 5 };
static const qesd_route_table *const tables[] = { &table, NULL };

static const char *const algs[] = { "sha256", "sha384", "sha512", NULL };
static const qesd_jv_field digest = { .type = QESD_JV_STRING, .min_len = 1,
	.max_len = 128 };
static const qesd_jv_field cred[] = {
	{ .name = "id", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED, .max_len = 64 },
	{ .name = "kind", .type = QESD_JV_ENUM, .enum_values = algs },
};
static const qesd_jv_field schema[] = {
	{ .name = "credential", .type = QESD_JV_OBJECT, .flags = QESD_JV_REQUIRED,
	  .fields = cred, .n_fields = 2 },
	{ .name = "algorithm", .type = QESD_JV_ENUM, .enum_values = algs },
	{ .name = "digests", .type = QESD_JV_ARRAY, .max_len = 16, .items = &digest },
	{ .name = "wait", .type = QESD_JV_INTEGER, .min = 0, .max = 60 },
	{ .name = "title", .type = QESD_JV_STRING, .flags = QESD_JV_NULLABLE, .max_len = 200 },
	{ .name = "batch", .type = QESD_JV_BOOLEAN },
};

static size_t
json_depth(const json_t *j)
{
	size_t best = 0, d, i;
	const char *k;
	json_t *v;

	if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, v)
			if ((d = json_depth(v)) > best)
				best = d;
		return best + 1;
	}
	if (json_is_array(j)) {
		for (i = 0; i < json_array_size(j); i++)
			if ((d = json_depth(json_array_get(j, i))) > best)
				best = d;
		return best + 1;
	}
	return 0;
}

static void
check_query(const qesd_query *q)
{
	size_t i;

	if (q->n > QESD_MAX_QUERY_PARAMS)
		abort();
	for (i = 0; i < q->n; i++) {
		const char *v = q->items[i].value;

		if (strlen(q->items[i].name) == 0 ||
		    strlen(q->items[i].name) > QESD_MAX_QUERY_KEY_BYTES ||
		    strlen(v) > QESD_MAX_QUERY_VALUE_BYTES ||
		    !qesd_utf8_valid((const uint8_t *)v, strlen(v)))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qesd_body_limits lim = { DEPTH_LIMIT, STRING_LIMIT };
	const qesd_route *route;
	qesd_param params[QESD_MAX_PATH_PARAMS];
	qesd_response resp;
	qesd_request req;
	qesd_jv_error err;
	qesd_query q;
	const char *detail;
	size_t np;
	unsigned allowed;
	char *s;

	if (size > 64 * 1024)
		return 0;
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	memset(&q, 0, sizeof(q));
	if (qesd_query_parse(&q, s, size, &detail) == 0)
		check_query(&q);
	qesd_query_free(&q);
	memset(&q, 0, sizeof(q));
	if (qesd_query_add_decoded(&q, s, size, &detail) == 0)
		check_query(&q);
	qesd_query_free(&q);

	(void)qesd_request_id_valid(s, size);
	(void)qesd_content_type_is_json(s);

	if (qesd_route_match(tables, QESD_GET, s, &route, params, &np, &allowed) == 0) {
		if (route == NULL || np > QESD_MAX_PATH_PARAMS)
			abort();
		qesd_params_free(params, np);
	}

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.path = (char *)"/v1/signatures";
	strcpy(req.request_id, "fuzz");
	req.content_type = (char *)"application/json";
	req.body = (uint8_t *)s;
	req.body_len = size;
	if (qesd_request_parse_json(&req, &lim, &resp) == 0) {
		if (json_depth(req.json) > DEPTH_LIMIT)
			abort();
		if (qesd_jv_validate(req.json, schema, sizeof(schema) / sizeof(schema[0]),
		    &err) != 0) {
			if (err.problem == NULL ||
			    !qesd_utf8_valid((const uint8_t *)err.field, strlen(err.field)))
				abort();
			(void)qesd_jv_problem(&resp, &req, &err);
		}
		json_decref(req.json);
	} else if (resp.status != 400 || resp.json == NULL) {
		abort();
	}
	qesd_response_clear(&resp);
	free(s);
	return 0;
}
