/*
 * test_http_parse.c - unit tests of qesd's request parsing and validation
 * layer (http.c), problem details, jsonv, configuration and pepper loading,
 * the JSON log writer and the metrics text. Links qesd_core; no server runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "config.h"
#include "http.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"

static qesd_handler_result
dummy(qesd_request *req, qesd_response *resp)
{
	(void)req;
	(void)resp;
	return QESD_HANDLED;
}

static const qesd_route routes_a[] = {
	{ QESD_GET, "/healthz", 0, 0, dummy, "health" },
	{ QESD_GET, "/v1/signatures/{id}", QESD_SCOPE_SIGN, 0, dummy, "sig.get" },
	{ QESD_POST, "/v1/signatures", QESD_SCOPE_SIGN, QESD_ROUTE_JSON_BODY, dummy, "sig.create" },
	{ QESD_GET, "/v1/signatures/{id}/result", QESD_SCOPE_SIGN, 0, dummy, "sig.result" },
};
static const qesd_route routes_b[] = {
	{ QESD_GET, "/v1/api-keys/{id}", QESD_SCOPE_ADMIN, 0, dummy, "keys.get" },
	{ QESD_DELETE, "/v1/api-keys/{id}", QESD_SCOPE_ADMIN, 0, dummy, "keys.delete" },
	{ QESD_GET, "/v1/api-keys/current", QESD_SCOPE_ADMIN, 0, dummy, "keys.current" },
	{ QESD_POST, "/v1/api-keys/{id}/rotate", QESD_SCOPE_ADMIN, 0, dummy, "keys.rotate" },
};
static const qesd_route_table table_a = { routes_a, 4 };
static const qesd_route_table table_b = { routes_b, 4 };
static const qesd_route_table *const tables[] = { &table_a, &table_b, NULL };

static int
match(unsigned method, const char *path, const qesd_route **r,
    qesd_param *params, size_t *np, unsigned *allowed)
{
	return qesd_route_match(tables, method, path, r, params, np, allowed);
}

static void
test_route_match(void **state)
{
	const qesd_route *r;
	qesd_param p[QESD_MAX_PATH_PARAMS];
	size_t np;
	unsigned allowed;
	char allow[64];
	qesd_request req;

	(void)state;
	assert_int_equal(match(QESD_GET, "/healthz", &r, p, &np, &allowed), 0);
	assert_string_equal(r->name, "health");
	assert_int_equal(np, 0);

	assert_int_equal(match(QESD_GET, "/v1/signatures/job_abc-1.2", &r, p, &np, &allowed), 0);
	assert_string_equal(r->name, "sig.get");
	assert_int_equal(np, 1);
	assert_string_equal(p[0].name, "id");
	assert_string_equal(p[0].value, "job_abc-1.2");
	memset(&req, 0, sizeof(req));
	memcpy(req.path_params, p, sizeof(p));
	req.n_path_params = np;
	assert_string_equal(qesd_request_param(&req, "id"), "job_abc-1.2");
	assert_null(qesd_request_param(&req, "other"));
	qesd_params_free(p, np);

	assert_int_equal(match(QESD_GET, "/v1/signatures/x/result", &r, p, &np, &allowed), 0);
	assert_string_equal(r->name, "sig.result");
	qesd_params_free(p, np);

	/* literal beats param, across tables */
	assert_int_equal(match(QESD_GET, "/v1/api-keys/current", &r, p, &np, &allowed), 0);
	assert_string_equal(r->name, "keys.current");
	assert_int_equal(np, 0);
	assert_int_equal(match(QESD_DELETE, "/v1/api-keys/key_1", &r, p, &np, &allowed), 0);
	assert_string_equal(r->name, "keys.delete");
	qesd_params_free(p, np);

	/* 405 with the methods that exist */
	assert_int_equal(match(QESD_PUT, "/v1/api-keys/key_1", &r, p, &np, &allowed),
	    QES_ERR_UNSUPPORTED);
	assert_int_equal(allowed, QESD_GET | QESD_DELETE);
	qesd_allow_header(allowed, allow, sizeof(allow));
	assert_string_equal(allow, "GET, DELETE");
	assert_int_equal(match(QESD_GET, "/v1/signatures", &r, p, &np, &allowed),
	    QES_ERR_UNSUPPORTED);
	assert_int_equal(allowed, QESD_POST);

	/* 404s */
	assert_int_equal(match(QESD_GET, "/nope", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "/healthz/", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "healthz", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "/v1/signatures/", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "/v1/signatures/a b", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	assert_int_equal(match(QESD_GET, "/v1/signatures/a%2f", &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	{
		char longp[400];

		memset(longp, 'a', sizeof(longp));
		memcpy(longp, "/v1/signatures/", 15);
		longp[15 + QESD_MAX_PARAM_BYTES] = '\0';
		assert_int_equal(match(QESD_GET, longp, &r, p, &np, &allowed), 0);
		qesd_params_free(p, np);
		longp[15 + QESD_MAX_PARAM_BYTES] = 'a';
		longp[16 + QESD_MAX_PARAM_BYTES] = '\0';
		assert_int_equal(match(QESD_GET, longp, &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	}
	{
		/* more segments than any pattern may have */
		char many[200] = "";

		for (int i = 0; i < 40; i++)
			strcat(many, "/a");
		assert_int_equal(match(QESD_GET, many, &r, p, &np, &allowed), QES_ERR_NOT_FOUND);
	}
}

static void
test_query_parse(void **state)
{
	qesd_query q;
	const char *detail;
	long long v;
	char buf[4096];
	int i;

	(void)state;
	memset(&q, 0, sizeof(q));
	assert_int_equal(qesd_query_parse(&q, "wait=30&a=x%20y&b=c+d&&flag", 27, &detail), 0);
	assert_int_equal(q.n, 4);
	assert_string_equal(qesd_query_get(&q, "a"), "x y");
	assert_string_equal(qesd_query_get(&q, "b"), "c d");
	assert_string_equal(qesd_query_get(&q, "flag"), "");
	assert_null(qesd_query_get(&q, "nope"));
	assert_int_equal(qesd_query_get_int(&q, "wait", 0, 60, &v), 0);
	assert_int_equal(v, 30);
	assert_int_equal(qesd_query_get_int(&q, "wait", 0, 10, &v), QES_ERR_LIMIT);
	assert_int_equal(qesd_query_get_int(&q, "a", 0, 10, &v), QES_ERR_FORMAT);
	assert_int_equal(qesd_query_get_int(&q, "nope", 0, 10, &v), QES_ERR_NOT_FOUND);
	qesd_query_free(&q);

	/* duplicates, bad escapes, NUL, control characters, bad UTF-8, bad keys */
	static const char *const bad[] = { "a=1&a=2", "a=%zz", "a=%4", "a=%00",
		"a=%0a", "a=%ff%fe", "k%20y=1", "=1", "a=%c0%af" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		memset(&q, 0, sizeof(q));
		assert_int_equal(qesd_query_parse(&q, bad[k], strlen(bad[k]), &detail),
		    QES_ERR_FORMAT);
		assert_non_null(detail);
		qesd_query_free(&q);
	}

	/* limits: count, key length, value length */
	memset(&q, 0, sizeof(q));
	buf[0] = '\0';
	for (i = 0; i < QESD_MAX_QUERY_PARAMS + 1; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "k%d=1&", i);
	assert_int_equal(qesd_query_parse(&q, buf, strlen(buf), &detail), QES_ERR_LIMIT);
	assert_string_equal(detail, "too many query parameters");
	qesd_query_free(&q);

	memset(&q, 0, sizeof(q));
	memset(buf, 'k', QESD_MAX_QUERY_KEY_BYTES + 1);
	strcpy(buf + QESD_MAX_QUERY_KEY_BYTES + 1, "=1");
	assert_int_equal(qesd_query_parse(&q, buf, strlen(buf), &detail), QES_ERR_LIMIT);
	qesd_query_free(&q);

	memset(&q, 0, sizeof(q));
	strcpy(buf, "v=");
	memset(buf + 2, 'x', QESD_MAX_QUERY_VALUE_BYTES + 1);
	buf[2 + QESD_MAX_QUERY_VALUE_BYTES + 1] = '\0';
	assert_int_equal(qesd_query_parse(&q, buf, strlen(buf), &detail), QES_ERR_LIMIT);
	qesd_query_free(&q);

	/* already-decoded pairs, as libwebsockets hands them over */
	memset(&q, 0, sizeof(q));
	assert_int_equal(qesd_query_add_decoded(&q, "cursor=a b/c", 12, &detail), 0);
	assert_string_equal(qesd_query_get(&q, "cursor"), "a b/c");
	assert_int_equal(qesd_query_add_decoded(&q, "cursor=x", 8, &detail), QES_ERR_FORMAT);
	assert_int_equal(qesd_query_add_decoded(&q, "z=\0x", 4, &detail), QES_ERR_FORMAT);
	qesd_query_free(&q);
}

static void
test_request_id(void **state)
{
	char id[QESD_REQUEST_ID_MAX + 1], id2[QESD_REQUEST_ID_MAX + 1];
	char longid[80];

	(void)state;
	assert_true(qesd_request_id_valid("abc-DEF_1.2", 11));
	assert_false(qesd_request_id_valid("", 0));
	assert_false(qesd_request_id_valid("a b", 3));
	assert_false(qesd_request_id_valid("a\nb", 3));
	assert_false(qesd_request_id_valid("<script>", 8));
	assert_false(qesd_request_id_valid("a\"b", 3));
	memset(longid, 'a', sizeof(longid));
	assert_true(qesd_request_id_valid(longid, 64));
	assert_false(qesd_request_id_valid(longid, 65));

	assert_int_equal(qesd_request_id_generate(id), 0);
	assert_int_equal(strlen(id), 22);
	assert_true(qesd_request_id_valid(id, strlen(id)));
	assert_int_equal(qesd_request_id_generate(id2), 0);
	assert_string_not_equal(id, id2);
}

static const qesd_body_limits limits = { 4, 8 };

static qesd_json_scan_result
scan(const char *s)
{
	return qesd_json_prescan((const uint8_t *)s, strlen(s), &limits);
}

static void
test_json_prescan(void **state)
{
	(void)state;
	assert_int_equal(scan("{\"a\":[1,{\"b\":[]}]}"), QESD_JSON_SCAN_OK);	/* depth 4 */
	assert_int_equal(scan("{\"a\":[1,{\"b\":[[]]}]}"), QESD_JSON_SCAN_TOO_DEEP);
	assert_int_equal(scan("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["), QESD_JSON_SCAN_TOO_DEEP);
	/* brackets inside strings do not count */
	assert_int_equal(scan("{\"k\":\"[[[[[[\"}"), QESD_JSON_SCAN_OK);
	assert_int_equal(scan("{\"k\":\"\\\"[[[[[\"}"), QESD_JSON_SCAN_OK);
	/* string length: 8 decoded bytes allowed, escapes count decoded */
	assert_int_equal(scan("{\"k\":\"12345678\"}"), QESD_JSON_SCAN_OK);
	assert_int_equal(scan("{\"k\":\"123456789\"}"), QESD_JSON_SCAN_STRING_TOO_LONG);
	assert_int_equal(scan("{\"k\":\"\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\"}"),
	    QESD_JSON_SCAN_OK);
	assert_int_equal(scan("{\"123456789\":1}"), QESD_JSON_SCAN_STRING_TOO_LONG);
	/* malformed */
	assert_int_equal(scan("{\"k\":1]"), QESD_JSON_SCAN_MALFORMED);
	assert_int_equal(scan("]"), QESD_JSON_SCAN_MALFORMED);
	assert_int_equal(scan("{\"k"), QESD_JSON_SCAN_MALFORMED);
	assert_int_equal(scan("{\"k\\"), QESD_JSON_SCAN_MALFORMED);
	assert_int_equal(scan("{"), QESD_JSON_SCAN_MALFORMED);
	assert_int_equal(scan(""), QESD_JSON_SCAN_OK);	/* jansson rejects it */
}

static void
init_req(qesd_request *req, const char *body, const char *ct)
{
	memset(req, 0, sizeof(*req));
	req->path = (char *)"/v1/test";
	strcpy(req->request_id, "req-1");
	req->body = (uint8_t *)body;
	req->body_len = strlen(body);
	req->content_type = (char *)ct;
}

static const char *
problem_type(const qesd_response *resp)
{
	return json_string_value(json_object_get(resp->json, "type"));
}

static void
test_parse_json_pipeline(void **state)
{
	qesd_body_limits lim = { 8, 64 };
	qesd_request req;
	qesd_response resp;

	(void)state;
	memset(&resp, 0, sizeof(resp));
	init_req(&req, "{\"a\":1}", "application/json; charset=UTF-8");
	assert_int_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_true(json_is_object(req.json));
	json_decref(req.json);

	init_req(&req, "{\"a\":1}", "text/plain");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_int_equal(resp.status, 415);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:unsupported_media_type");

	init_req(&req, "{\"a\":1}", NULL);
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_int_equal(resp.status, 415);

	init_req(&req, "{\"a\":1}", "application/json; charset=latin1");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_int_equal(resp.status, 415);

	init_req(&req, "{\"a\":\"\xff\xfe\"}", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_int_equal(resp.status, 400);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:invalid_json");

	init_req(&req, "{\"a\":1,\"a\":2}", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:invalid_json");

	init_req(&req, "[1,2]", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:invalid_json");

	init_req(&req, "{\"a\":1} x", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:invalid_json");

	init_req(&req, "{\"a\":\"\\u0000\"}", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);

	init_req(&req, "[[[[[[[[[[[[]]]]]]]]]]]]", "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:json_too_deep");

	init_req(&req, "{\"a\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
	    "application/json");
	assert_int_not_equal(qesd_request_parse_json(&req, &lim, &resp), 0);
	assert_string_equal(problem_type(&resp), "urn:qes:problem:string_too_long");
	qesd_response_clear(&resp);

	assert_true(qesd_content_type_is_json("application/json"));
	assert_true(qesd_content_type_is_json("Application/JSON ; charset=\"utf-8\""));
	assert_false(qesd_content_type_is_json("application/jsonx"));
	assert_false(qesd_content_type_is_json("application/json-seq"));
	assert_false(qesd_content_type_is_json(""));
}

static void
test_problem_shape(void **state)
{
	qesd_request req;
	qesd_response resp;
	json_t *j;

	(void)state;
	init_req(&req, "", NULL);
	memset(&resp, 0, sizeof(resp));
	assert_int_equal(qesd_response_header(&resp, "Retry-After", "5"), 0);
	assert_int_equal(qesd_problem(&resp, &req, 404, "not_found", "Not found",
	    "no such thing"), 0);
	assert_int_equal(resp.status, 404);
	assert_string_equal(resp.problem, "not_found");
	assert_string_equal(resp.content_type, "application/problem+json");
	j = resp.json;
	assert_string_equal(json_string_value(json_object_get(j, "type")),
	    "urn:qes:problem:not_found");
	assert_string_equal(json_string_value(json_object_get(j, "title")), "Not found");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
	assert_string_equal(json_string_value(json_object_get(j, "detail")), "no such thing");
	assert_string_equal(json_string_value(json_object_get(j, "instance")), "/v1/test");
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
	assert_int_equal(json_object_size(j), 6);
	/* a problem replaces everything, headers included */
	assert_int_equal(resp.n_headers, 0);

	/* invalid UTF-8 in a detail never breaks the JSON */
	assert_int_equal(qesd_problem(&resp, NULL, 400, "x", "X", "bad \xff"), 0);
	assert_null(json_object_get(resp.json, "instance"));
	assert_non_null(json_object_get(resp.json, "detail"));
	qesd_response_clear(&resp);

	/* response helpers refuse header injection */
	assert_int_equal(qesd_response_header(&resp, "X-A", "a\r\nSet-Cookie: x"),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_response_header(&resp, "X A", "v"), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_response_header(&resp, "", "v"), QES_ERR_INVALID_ARG);
	for (int i = 0; i < QESD_MAX_RESPONSE_HEADERS; i++)
		assert_int_equal(qesd_response_header(&resp, "X-N", "v"), 0);
	assert_int_equal(qesd_response_header(&resp, "X-N", "v"), QES_ERR_LIMIT);
	assert_int_equal(qesd_response_raw(&resp, 200, "text/plain", "hi", 2), 0);
	assert_int_equal(resp.body_len, 2);
	qesd_response_clear(&resp);
}

static void
test_jsonv(void **state)
{
	static const char *const algs[] = { "sha256", "sha384", NULL };
	static const qesd_jv_field digest = { .type = QESD_JV_STRING, .min_len = 2,
		.max_len = 8 };
	static const qesd_jv_field cred[] = {
		{ .name = "id", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED },
	};
	static const qesd_jv_field fields[] = {
		{ .name = "credential", .type = QESD_JV_OBJECT, .flags = QESD_JV_REQUIRED,
		  .fields = cred, .n_fields = 1 },
		{ .name = "algorithm", .type = QESD_JV_ENUM, .flags = QESD_JV_REQUIRED,
		  .enum_values = algs },
		{ .name = "digests", .type = QESD_JV_ARRAY, .min_len = 1, .max_len = 3,
		  .items = &digest },
		{ .name = "wait", .type = QESD_JV_INTEGER, .min = 0, .max = 60 },
		{ .name = "note", .type = QESD_JV_STRING, .flags = QESD_JV_NULLABLE },
		{ .name = "urgent", .type = QESD_JV_BOOLEAN },
	};
	static const struct { const char *json; const char *problem; const char *field; } cases[] = {
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\"}", NULL, NULL },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"digests\":[\"ab\"],"
		  "\"wait\":60,\"note\":null,\"urgent\":true}", NULL, NULL },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"bogus\":1}",
		  "unknown_field", "bogus" },
		{ "{\"credential\":{\"id\":\"c\",\"x\":1},\"algorithm\":\"sha256\"}",
		  "unknown_field", "credential.x" },
		{ "{\"credential\":{},\"algorithm\":\"sha256\"}", "missing_field", "credential.id" },
		{ "{\"credential\":{\"id\":\"c\"}}", "missing_field", "algorithm" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"md5\"}", "invalid_field", "algorithm" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":7}", "invalid_field", "algorithm" },
		{ "{\"credential\":\"c\",\"algorithm\":\"sha256\"}", "invalid_field", "credential" },
		{ "{\"credential\":{\"id\":1},\"algorithm\":\"sha256\"}", "invalid_field", "credential.id" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"wait\":61}",
		  "invalid_field", "wait" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"wait\":1.5}",
		  "invalid_field", "wait" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"digests\":[]}",
		  "invalid_field", "digests" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"digests\":[\"ab\",\"a\"]}",
		  "invalid_field", "digests[1]" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"digests\":[\"ab\",\"ab\",\"ab\",\"ab\"]}",
		  "invalid_field", "digests" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"urgent\":null}",
		  "invalid_field", "urgent" },
		{ "{\"credential\":{\"id\":\"c\"},\"algorithm\":\"sha256\",\"urgent\":\"yes\"}",
		  "invalid_field", "urgent" },
	};
	qesd_jv_error err;
	qesd_response resp;
	qesd_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = json_loads(cases[i].json, 0, NULL);
		int r;

		assert_non_null(j);
		r = qesd_jv_validate(j, fields, sizeof(fields) / sizeof(fields[0]), &err);
		if (cases[i].problem == NULL) {
			assert_int_equal(r, 0);
		} else {
			assert_int_equal(r, QES_ERR_FORMAT);
			assert_string_equal(err.problem, cases[i].problem);
			assert_string_equal(err.field, cases[i].field);
		}
		json_decref(j);
	}

	/* a long unknown name is cut, still valid UTF-8; the problem names it */
	{
		char big[400];
		json_t *j = json_object();

		memset(big, 'z', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[90] = (char)0xc3;
		big[91] = (char)0xa9;	/* é across the cut */
		json_object_set_new(j, big, json_true());
		assert_int_equal(qesd_jv_validate(j, fields, 1, &err), QES_ERR_FORMAT);
		assert_string_equal(err.problem, "unknown_field");
		assert_true(strlen(err.field) < sizeof(err.field));
		assert_true(qesd_utf8_valid((const uint8_t *)err.field, strlen(err.field)));
		init_req(&req, "", NULL);
		memset(&resp, 0, sizeof(resp));
		assert_int_equal(qesd_jv_problem(&resp, &req, &err), 0);
		assert_int_equal(resp.status, 400);
		assert_string_equal(problem_type(&resp), "urn:qes:problem:unknown_field");
		assert_string_equal(json_string_value(json_object_get(resp.json, "field")),
		    err.field);
		qesd_response_clear(&resp);
		json_decref(j);
	}
	assert_int_equal(qesd_jv_validate(NULL, fields, 1, &err), QES_ERR_FORMAT);
}

static void
test_utf8(void **state)
{
	(void)state;
	assert_true(qesd_utf8_valid((const uint8_t *)"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
	assert_false(qesd_utf8_valid((const uint8_t *)"\xc0\xaf", 2));	/* overlong */
	assert_false(qesd_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));	/* surrogate */
	assert_false(qesd_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));	/* > U+10FFFF */
	assert_false(qesd_utf8_valid((const uint8_t *)"\xe2\x82", 2));	/* truncated */
	assert_false(qesd_utf8_valid((const uint8_t *)"a\0b", 3));
}

/* ---- configuration ---- */

static char tmpdir[] = "/tmp/qesd-test-XXXXXX";

static const char *
write_file(const char *name, const char *content, size_t len, mode_t mode)
{
	static char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void
test_config_parse(void **state)
{
	static const char good[] =
	    "# comment\n"
	    "\n"
	    "listen = [::1]:9443\n"
	    "tls_cert=/etc/qesd/cert.pem\r\n"
	    "  tls_key =  /etc/qesd/key.pem  \n"
	    "pepper_file = /etc/qesd/pepper\n"
	    "workers = 8\n"
	    "max_body_bytes = 2097152\n"
	    "rate_key_per_s = 2.5\n"
	    "log_level = debug\n"
	    "metrics_listen = 127.0.0.1:9100\n";
	qesd_config c;
	char err[256];

	(void)state;
	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_equal(c.listen_port, 8443);
	assert_string_equal(c.listen_host, "127.0.0.1");
	assert_string_equal(c.store, "sqlite:/var/lib/qesd/qesd.db");
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.max_body_bytes, 1048576);
	assert_int_equal(c.max_header_bytes, 8192);
	assert_int_equal(c.max_json_depth, 32);
	assert_int_equal(c.max_string_bytes, 8192);
	assert_int_equal(qesd_config_parse(&c, good, strlen(good), "t.conf", err, sizeof(err)), 0);
	assert_string_equal(c.listen_host, "::1");
	assert_int_equal(c.listen_port, 9443);
	assert_string_equal(c.tls_cert, "/etc/qesd/cert.pem");
	assert_string_equal(c.tls_key, "/etc/qesd/key.pem");
	assert_int_equal(c.workers, 8);
	assert_int_equal(c.max_body_bytes, 2097152);
	assert_true(c.rate_key_per_s > 2.49 && c.rate_key_per_s < 2.51);
	assert_int_equal(c.log_level, QESD_LOG_DEBUG);
	assert_true(c.metrics_enabled);
	assert_int_equal(c.metrics_port, 9100);
	assert_int_equal(qesd_config_validate(&c, 0, err, sizeof(err)), 0);
	qesd_config_free(&c);

	static const struct { const char *text; const char *expect; } bad[] = {
		{ "bogus = 1\n", "t.conf:1: unknown key 'bogus'" },
		{ "# x\nworkers = 4\nworkres = 4\n", "t.conf:3: unknown key 'workres'" },
		{ "workers = 4\nworkers = 5\n", "t.conf:2: key 'workers' given twice" },
		{ "workers = 0\n", "t.conf:1: workers = 0 is out of range (1..64)" },
		{ "workers = four\n", "t.conf:1: workers = 'four' is not a whole number" },
		{ "workers = -1\n", "t.conf:1: workers = '-1' is not a whole number" },
		{ "workers\n", "t.conf:1: expected 'key = value'" },
		{ "listen = ::1:80\n", "t.conf:1: listen = '::1:80' is not host:port or [v6]:port" },
		{ "listen = host:99999\n", "t.conf:1: listen = 'host:99999' is not host:port or [v6]:port" },
		{ "log_level = loud\n", "t.conf:1: log_level = 'loud' is not debug, info, warn or error" },
		{ "testing_routes = maybe\n", "t.conf:1: testing_routes = 'maybe' must be on or off" },
		{ "tls_cert =\n", "t.conf:1: tls_cert must not be empty" },
		{ "rate_ip_per_s = 0\n", "t.conf:1: rate_ip_per_s = '0' must be a number in (0, 1000000]" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(qesd_config_init(&c), 0);
		assert_int_not_equal(qesd_config_parse(&c, bad[i].text, strlen(bad[i].text),
		    "t.conf", err, sizeof(err)), 0);
		assert_string_equal(err, bad[i].expect);
		qesd_config_free(&c);
	}

	/* validation */
	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_not_equal(qesd_config_validate(&c, 0, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "tls_cert"));
	qesd_config_parse(&c, good, strlen(good), "t.conf", err, sizeof(err));
	assert_int_equal(qesd_config_parse(&c, "testing_routes = on\n", 20, "u", err, sizeof(err)), 0);
	assert_int_not_equal(qesd_config_validate(&c, 0, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "QESD_ALLOW_TESTING=1"));
	assert_int_equal(qesd_config_validate(&c, 1, err, sizeof(err)), 0);
	qesd_config_free(&c);
}

static void
test_config_env(void **state)
{
	char *env_ok[] = { "PATH=/bin", "QESD_WORKERS=12", "QESD_LISTEN=0.0.0.0:443",
		"QESD_ALLOW_TESTING=1", "QESD_CONFIG=/x", NULL };
	char *env_unknown[] = { "QESD_WORKRES=2", NULL };
	char *env_bad[] = { "QESD_MAX_JSON_DEPTH=1000", NULL };
	qesd_config c;
	char err[256];

	(void)state;
	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_equal(qesd_config_parse(&c, "workers = 2\n", 12, "f", err, sizeof(err)), 0);
	assert_int_equal(qesd_config_load_env(&c, env_ok, err, sizeof(err)), 0);
	assert_int_equal(c.workers, 12);	/* environment wins */
	assert_string_equal(c.listen_host, "0.0.0.0");
	assert_int_equal(c.listen_port, 443);
	assert_int_not_equal(qesd_config_load_env(&c, env_unknown, err, sizeof(err)), 0);
	assert_string_equal(err, "environment: unknown variable QESD_WORKRES");
	assert_int_not_equal(qesd_config_load_env(&c, env_bad, err, sizeof(err)), 0);
	assert_string_equal(err,
	    "environment QESD_MAX_JSON_DEPTH: max_json_depth = 1000 is out of range (1..256)");
	qesd_config_free(&c);

	{
		char host[64];
		int port;

		assert_int_equal(qesd_parse_listen("[::1]:8443", host, sizeof(host), &port), 0);
		assert_string_equal(host, "::1");
		assert_int_equal(port, 8443);
		assert_int_equal(qesd_parse_listen("localhost:0", host, sizeof(host), &port), 0);
		assert_int_equal(port, 0);
		assert_int_not_equal(qesd_parse_listen("[::1]8443", host, sizeof(host), &port), 0);
		assert_int_not_equal(qesd_parse_listen(":8443", host, sizeof(host), &port), 0);
		assert_int_not_equal(qesd_parse_listen("a:", host, sizeof(host), &port), 0);
		assert_int_not_equal(qesd_parse_listen("a:+1", host, sizeof(host), &port), 0);
		assert_int_not_equal(qesd_parse_listen("a b:1", host, sizeof(host), &port), 0);
	}
}

static void
test_pepper(void **state)
{
	qes_secret *s = NULL;
	char err[256];
	const char *p;
	uint8_t bin[40];

	(void)state;
	assert_int_not_equal(qesd_pepper_load("/nonexistent/pepper", &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "No such file"));
	assert_null(s);

	p = write_file("empty", "", 0, 0600);
	assert_int_not_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "is empty"));

	p = write_file("short", "0123456789\n", 11, 0600);
	assert_int_not_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "holds 10 bytes; at least 32"));

	p = write_file("open", "0123456789012345678901234567890123456789\n", 41, 0644);
	assert_int_not_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "accessible by group or others (mode 0644)"));
	assert_int_not_equal(qesd_check_secret_file(p, "tls_key", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "tls_key"));
	p = write_file("group", "0123456789012345678901234567890123456789\n", 41, 0640);
	assert_int_not_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);

	/* text: one trailing newline is dropped */
	p = write_file("text", "0123456789012345678901234567890123456789\n", 41, 0600);
	assert_int_equal(qesd_check_secret_file(p, "tls_key", err, sizeof(err)), 0);
	assert_int_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);
	assert_int_equal(qes_secret_len(s), 40);
	qes_secret_free(s);
	s = NULL;

	/* binary: taken byte for byte, even a final 0x0a */
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 37 + 1);
	bin[sizeof(bin) - 1] = '\n';
	p = write_file("bin", (const char *)bin, sizeof(bin), 0400);
	assert_int_equal(qesd_pepper_load(p, &s, err, sizeof(err)), 0);
	assert_int_equal(qes_secret_len(s), sizeof(bin));
	assert_memory_equal(qes_secret_data(s), bin, sizeof(bin));
	qes_secret_free(s);

	assert_int_not_equal(qesd_check_secret_file(tmpdir, "tls_key", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not a regular file"));
}

/* ---- logs and metrics ---- */

static void
test_log_lines(void **state)
{
	char buf[16384];
	int fds[2];
	ssize_t n;
	json_t *j;
	char ctrl[] = "a\x01\"b\\\n\xff";

	(void)state;
	assert_int_equal(pipe(fds), 0);
	qesd_log_set_fd(fds[1]);
	qesd_log_set_level(QESD_LOG_INFO);
	qesd_log(QESD_LOG_DEBUG, "hidden");
	qesd_log(QESD_LOG_INFO, "hello", QLS("request_id", "r1"), QLI("status", 200),
	    QLD("duration_ms", 1.5), QLS("tenant", NULL), QLS("odd", ctrl));
	n = read(fds[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(buf[n - 1], '\n');
	assert_null(strchr(buf, '\n') == buf + n - 1 ? NULL : "two lines");
	j = json_loads(buf, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "r1");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
	assert_true(json_is_null(json_object_get(j, "tenant")));
	assert_non_null(json_object_get(j, "duration_ms"));
	assert_int_equal(strlen(json_string_value(json_object_get(j, "time"))), 24);
	json_decref(j);

	/* a huge field is cut and the line stays valid JSON */
	{
		char *big = malloc(20000);

		memset(big, 'x', 19999);
		big[19999] = '\0';
		qesd_log(QESD_LOG_WARN, "big", QLS("a", big), QLS("b", big), QLS("c", big),
		    QLS("d", big), QLS("e", big), QLS("f", big), QLS("g", big), QLS("h", big),
		    QLS("i", big));
		free(big);
		n = read(fds[0], buf, sizeof(buf) - 1);
		assert_true(n > 0 && n <= 8192);
		buf[n] = '\0';
		j = json_loads(buf, 0, NULL);
		assert_non_null(j);
		assert_true(json_is_true(json_object_get(j, "truncated")));
		json_decref(j);
	}
	qesd_log_set_fd(2);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(qesd_log_level_parse("warn"), QESD_LOG_WARN);
	assert_int_equal(qesd_log_level_parse("loud"), -1);
}

static void
test_metrics_text(void **state)
{
	qesd_metrics *m = qesd_metrics_new();
	qes_buf *b = qes_buf_new();
	const char *text;

	(void)state;
	assert_non_null(m);
	qesd_metrics_observe_request(m, "health.live", "GET", 200, 0.0004);
	qesd_metrics_observe_request(m, "health.live", "GET", 200, 0.2);
	qesd_metrics_observe_request(m, "unmatched", "GET", 404, 0.0001);
	qesd_metrics_auth_failure(m);
	qesd_metrics_rate_limited(m);
	qesd_metrics_rate_limited(m);
	qesd_metrics_inflight_add(m, 1);
	assert_int_equal(qesd_metrics_render(m, b), 0);
	assert_int_equal(qes_buf_cstr(b, &text), 0);
	assert_non_null(strstr(text,
	    "qesd_http_requests_total{route=\"health.live\",method=\"GET\",status=\"200\"} 2\n"));
	assert_non_null(strstr(text,
	    "qesd_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"));
	assert_non_null(strstr(text,
	    "qesd_http_request_duration_seconds_bucket{route=\"health.live\",le=\"0.001\"} 1\n"));
	assert_non_null(strstr(text,
	    "qesd_http_request_duration_seconds_bucket{route=\"health.live\",le=\"0.25\"} 2\n"));
	assert_non_null(strstr(text,
	    "qesd_http_request_duration_seconds_bucket{route=\"health.live\",le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text, "qesd_http_request_duration_seconds_count{route=\"health.live\"} 2\n"));
	assert_non_null(strstr(text, "qesd_auth_failures_total 1\n"));
	assert_non_null(strstr(text, "qesd_rate_limited_total 2\n"));
	assert_non_null(strstr(text, "qesd_inflight_requests 1\n"));
	assert_non_null(strstr(text, "qesd_build_info{version=\""));
	qes_buf_free(b);
	qesd_metrics_free(m);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_match),
		cmocka_unit_test(test_query_parse),
		cmocka_unit_test(test_request_id),
		cmocka_unit_test(test_json_prescan),
		cmocka_unit_test(test_parse_json_pipeline),
		cmocka_unit_test(test_problem_shape),
		cmocka_unit_test(test_jsonv),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_config_parse),
		cmocka_unit_test(test_config_env),
		cmocka_unit_test(test_pepper),
		cmocka_unit_test(test_log_lines),
		cmocka_unit_test(test_metrics_text),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
