/*
 * health.c - liveness, readiness and metrics routes, plus test-only routes.
 *
 * GET /healthz is the liveness probe: 200 for as long as the process runs
 * and its loop answers, also while draining ({"status":"draining"}), so an
 * orchestrator does not kill a replica that is finishing its requests.
 * GET /readyz is the readiness probe: 200 only when not draining and the
 * readiness callback (the store ping, the bus connected) succeeds, else 503
 * not_ready, so the load balancer stops sending new work first. Both and GET /metrics stay
 * served during the drain; everything else gets 503 shutting_down.
 *
 * The testing routes exist so the integration tests can hold a worker busy,
 * exercise deferral, and send bodies through the JSON pipeline before real
 * routes exist. They are compiled in but unreachable unless the operator
 * sets testing_routes = on AND the environment has QESD_ALLOW_TESTING=1.
 */
#include <string.h>
#include <time.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "app.h"
#include "bus.h"
#include "health.h"
#include "jsonv.h"
#include "problem.h"
#include "server.h"

static qesd_handler_result
healthz(qesd_request *req, qesd_response *resp)
{
	const char *st = qesd_server_draining(req->server) ? "draining" : "ok";

	qesd_response_json(resp, 200, json_pack("{s:s}", "status", st));
	return QESD_HANDLED;
}

static qesd_handler_result
readyz(qesd_request *req, qesd_response *resp)
{
	if (qesd_server_draining(req->server))
		qesd_problem(resp, req, 503, "not_ready", "Not ready",
		    "the server is draining");
	else if (!qesd_server_ready(req->server))
		qesd_problem(resp, req, 503, "not_ready", "Not ready",
		    req->app != NULL && qesd_bus_ready(((qesd_app *)req->app)->bus) != 0 ?
		    "the bus to the other replicas (NATS) is not reachable" :
		    "the store is not reachable");
	else
		qesd_response_json(resp, 200, json_pack("{s:s}", "status", "ready"));
	return QESD_HANDLED;
}

static qesd_handler_result
metrics(qesd_request *req, qesd_response *resp)
{
	qes_buf *b = qes_buf_new();

	if (b == NULL || qesd_metrics_render(req->metrics, b) != 0) {
		qes_buf_free(b);
		qesd_problem(resp, req, 500, "internal", "Internal error",
		    "metrics could not be rendered");
		return QESD_HANDLED;
	}
	qesd_response_raw(resp, 200, "text/plain; version=0.0.4; charset=utf-8",
	    qes_buf_data(b), qes_buf_len(b));
	qes_buf_free(b);
	return QESD_HANDLED;
}

static const qesd_route health_routes[] = {
	{ QESD_GET, "/healthz", QESD_SCOPE_NONE, QESD_ROUTE_DURING_DRAIN, healthz, "health.live" },
	{ QESD_GET, "/readyz", QESD_SCOPE_NONE, QESD_ROUTE_DURING_DRAIN, readyz, "health.ready" },
};
const qesd_route_table qesd_health_routes = { health_routes, 2 };

static const qesd_route metrics_routes[] = {
	{ QESD_GET, "/metrics", QESD_SCOPE_NONE, QESD_ROUTE_DURING_DRAIN, metrics, "metrics" },
};
const qesd_route_table qesd_metrics_routes = { metrics_routes, 1 };

/* ------------------------------------------------------------------------- */
/* test-only routes */

static qesd_handler_result
testing_slow(qesd_request *req, qesd_response *resp)
{
	long long ms = 100;
	struct timespec ts;
	int r = qesd_query_get_int(&req->query, "ms", 0, 60000, &ms);

	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		qesd_problem(resp, req, 400, "invalid_query", "Invalid query",
		    "ms must be 0..60000");
		return QESD_HANDLED;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
	qesd_response_json(resp, 200, json_pack("{s:I}", "slept_ms", (json_int_t)ms));
	return QESD_HANDLED;
}

static void
testing_resumed(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg)
{
	(void)req;
	(void)arg;
	if (resp == NULL)
		return;
	qesd_response_json(resp, 200, json_pack("{s:s}", "resumed",
	    reason == QESD_RESUME_DEADLINE ? "deadline" :
	    reason == QESD_RESUME_DRAINING ? "draining" : "woken"));
}

static qesd_handler_result
testing_defer(qesd_request *req, qesd_response *resp)
{
	long long ms = 1000;
	uint64_t token;
	int r = qesd_query_get_int(&req->query, "ms", 0, 300000, &ms);

	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		qesd_problem(resp, req, 400, "invalid_query", "Invalid query",
		    "ms must be 0..300000");
		return QESD_HANDLED;
	}
	r = qesd_defer(req, (uint32_t)ms, testing_resumed, NULL, &token);
	if (r == QES_ERR_LIMIT) {
		qesd_problem(resp, req, 503, "overloaded", "Server overloaded",
		    "too many requests are waiting");
		return QESD_HANDLED;
	}
	if (r != 0) {
		qesd_problem(resp, req, 500, "internal", "Internal error", NULL);
		return QESD_HANDLED;
	}
	return QESD_DEFERRED;
}

static const char *const echo_modes[] = { "plain", "fancy", NULL };
static const qesd_jv_field echo_tag = { .type = QESD_JV_STRING, .min_len = 1,
	.max_len = 32 };
static const qesd_jv_field echo_fields[] = {
	{ .name = "name", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = 64 },
	{ .name = "count", .type = QESD_JV_INTEGER, .min = 0, .max = 1000 },
	{ .name = "mode", .type = QESD_JV_ENUM, .enum_values = echo_modes },
	{ .name = "tags", .type = QESD_JV_ARRAY, .max_len = 10, .items = &echo_tag },
	{ .name = "nested", .type = QESD_JV_OBJECT, .flags = QESD_JV_NULLABLE },
};

static qesd_handler_result
testing_echo(qesd_request *req, qesd_response *resp)
{
	qesd_jv_error err;

	if (qesd_jv_validate(req->json, echo_fields,
	    sizeof(echo_fields) / sizeof(echo_fields[0]), &err) != 0) {
		qesd_jv_problem(resp, req, &err);
		return QESD_HANDLED;
	}
	qesd_response_json(resp, 200, json_pack("{s:O}", "echo", req->json));
	return QESD_HANDLED;
}

static const qesd_route testing_routes[] = {
	{ QESD_GET, "/testing/slow", QESD_SCOPE_NONE, 0, testing_slow, "testing.slow" },
	{ QESD_GET, "/testing/defer", QESD_SCOPE_NONE, 0, testing_defer, "testing.defer" },
	{ QESD_POST, "/testing/echo", QESD_SCOPE_NONE, QESD_ROUTE_JSON_BODY, testing_echo, "testing.echo" },
};
const qesd_route_table qesd_testing_routes = { testing_routes, 3 };
