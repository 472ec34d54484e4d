/*
 * http.h - the request/response interface that qesd's route handlers and
 * middleware are written against.
 *
 * How a request flows (server.c does the transport, http.c the parsing):
 *
 *   libwebsockets loop thread               worker thread (pool of `workers`)
 *   -------------------------               ----------------------------------
 *   headers: method, path, route match,
 *   limits (414, 431, 404, 405, 411,
 *   413, 503) -> early problem response
 *   body: accumulate up to max_body_bytes
 *   enqueue (503 overloaded when full) ---> middleware (auth, rate limits)
 *                                           scope check (401 / 403)
 *                                           body checks (415, 400 json_*)
 *                                           handler(req, resp)
 *                                           after hook (audit, metrics)
 *   write response (chunked writes)  <---- completion queue + lws_cancel_service
 *
 * Handlers therefore run on a worker and may block on the store; they must
 * never touch libwebsockets. A handler that has to wait for an event (the
 * long-poll of GET /v1/signatures/{id}?wait=, a device's answer) defers its
 * response with qesd_defer() instead of blocking a worker.
 *
 * Ownership: the server owns the request and the response. A handler fills
 * the response through the qesd_response_* helpers; everything it hands over
 * (a json_t, a header value) is owned by the response from then on.
 */
#ifndef QESD_HTTP_H
#define QESD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "metrics.h"

/* Methods, one bit each, so a route table can answer 405 with Allow. */
typedef enum qesd_method {
	QESD_GET = 1u << 0,
	QESD_POST = 1u << 1,
	QESD_PUT = 1u << 2,
	QESD_PATCH = 1u << 3,
	QESD_DELETE = 1u << 4,
	QESD_HEAD = 1u << 5,
	QESD_OPTIONS = 1u << 6,
} qesd_method;

/* "GET", ...; "OTHER" for anything else. Static strings. */
const char *qesd_method_name(unsigned method);

/* API key scopes (issue 3). A route requires all the bits it lists. */
#define QESD_SCOPE_NONE		0u		/* public: no authentication */
#define QESD_SCOPE_SIGN		(1u << 0)
#define QESD_SCOPE_DEVICES	(1u << 1)
#define QESD_SCOPE_DIAGNOSTICS	(1u << 2)
#define QESD_SCOPE_AUDIT	(1u << 3)
#define QESD_SCOPE_ADMIN	(1u << 4)
#define QESD_SCOPE_ALL		0x1fu
/* "sign" -> QESD_SCOPE_SIGN; 0 when unknown. */
uint32_t qesd_scope_from_name(const char *name);
/* Name of a single scope bit; NULL when not exactly one known bit. */
const char *qesd_scope_name(uint32_t scope);

/* Hard limits of the request model (config limits come on top). */
#define QESD_MAX_PATH_PARAMS	8
#define QESD_MAX_PARAM_BYTES	128	/* one path segment that fills {param} */
#define QESD_MAX_QUERY_PARAMS	32
#define QESD_MAX_QUERY_KEY_BYTES 64
#define QESD_MAX_QUERY_VALUE_BYTES 1024
#define QESD_REQUEST_ID_MAX	64
#define QESD_ADDR_MAX		64
#define QESD_MAX_AUTHORIZATION_BYTES 1024
#define QESD_MAX_IDEMPOTENCY_KEY_BYTES 255
#define QESD_MAX_CONTENT_TYPE_BYTES 255
#define QESD_MAX_ACCEPT_BYTES	1024
#define QESD_MAX_RESPONSE_HEADERS 8

typedef struct qesd_param {
	char *name;		/* NUL-terminated, owned by the request */
	char *value;		/* NUL-terminated UTF-8, no NUL inside */
} qesd_param;

typedef struct qesd_query {
	qesd_param items[QESD_MAX_QUERY_PARAMS];
	size_t n;
} qesd_query;

/* What the authentication middleware found; zeroed for every request. */
typedef struct qesd_auth {
	int authenticated;	/* 1 once an API key was verified */
	char tenant_id[64];
	char key_id[64];
	uint32_t scopes;	/* QESD_SCOPE_* bits of the key */
} qesd_auth;

typedef struct qesd_route qesd_route;
typedef struct qesd_server qesd_server;

typedef struct qesd_request {
	unsigned method;		/* one qesd_method bit; 0 when lws saw another */
	const char *method_name;	/* static */
	char *path;			/* percent-decoded path, no query (lws
					 * decodes and collapses ./, ../, //) */
	const qesd_route *route;	/* matched entry */
	const char *route_name;		/* route->name, static */
	qesd_param path_params[QESD_MAX_PATH_PARAMS];
	size_t n_path_params;
	qesd_query query;
	char request_id[QESD_REQUEST_ID_MAX + 1];
	char client_addr[QESD_ADDR_MAX];
	/*
	 * A SECRET. Only the authentication middleware reads it, and it calls
	 * qesd_request_wipe_authorization() when done; the server wipes it
	 * again before the request is freed. Never log it.
	 */
	char *authorization;
	char *idempotency_key;		/* NULL when absent */
	char *content_type;		/* NULL when absent */
	char *accept;			/* NULL when absent */
	uint8_t *body;			/* body_len bytes, NUL after them; NULL when empty */
	size_t body_len;
	json_t *json;			/* parsed body (QESD_ROUTE_JSON_BODY), else NULL */
	int64_t arrival_unix_ms;	/* wall clock, for records */
	int64_t arrival_mono_us;	/* monotonic, for durations */
	qesd_auth auth;			/* filled by the middleware */
	void *app;			/* the application's services (qesd_server_config.app) */
	uint32_t app_flags;		/* the application's per-request marks (zero at
					 * arrival; the server never reads them) */
	qesd_metrics *metrics;		/* borrowed; may be NULL in unit tests */
	qesd_server *server;		/* for qesd_defer(); NULL in unit tests */
	void *txn;			/* server-private */
} qesd_request;

typedef struct qesd_header {
	char name[48];			/* e.g. "Retry-After" */
	char *value;			/* owned; no CR, LF or NUL */
} qesd_header;

typedef struct qesd_response {
	int status;			/* 0 until a handler sets one */
	json_t *json;			/* body as JSON (owned), or NULL */
	uint8_t *body;			/* raw body (owned), used when json is NULL */
	size_t body_len;
	char content_type[96];		/* for the raw body, or a JSON subtype */
	qesd_header headers[QESD_MAX_RESPONSE_HEADERS];
	size_t n_headers;
	const char *problem;		/* problem name of an error (static), for logs */
	int close_connection;		/* set by the server (413 mid-body, draining) */
} qesd_response;

/*
 * Set the body to a JSON value; steals the reference (also on error).
 * Content type application/json unless content_type is already set
 * (problem.c sets application/problem+json).
 */
int qesd_response_json(qesd_response *resp, int status, json_t *body);
/* Copy len bytes as the body with the given content type. */
int qesd_response_raw(qesd_response *resp, int status, const char *content_type,
    const void *data, size_t len);
/* Take ownership of a malloc'd body (freed with free()). */
int qesd_response_take_raw(qesd_response *resp, int status,
    const char *content_type, uint8_t *data, size_t len);
/* Add a response header ("Location", "/v1/..."). QES_ERR_INVALID_ARG for
 * names that are not tokens or values with CR/LF/NUL; QES_ERR_LIMIT past
 * QESD_MAX_RESPONSE_HEADERS. */
int qesd_response_header(qesd_response *resp, const char *name, const char *value);
/* Free everything the response holds and zero it. */
void qesd_response_clear(qesd_response *resp);
/* Move src into dst (dst cleared first); src is left empty. */
void qesd_response_move(qesd_response *dst, qesd_response *src);

/* ---------------------------------------------------------------------------
 * Handlers, middleware, hooks and route tables
 */

typedef enum qesd_handler_result {
	QESD_HANDLED = 0,	/* resp is filled (status != 0, else 500) */
	QESD_DEFERRED = 1,	/* qesd_defer() was called; resp is ignored */
} qesd_handler_result;

typedef qesd_handler_result (*qesd_handler_fn)(qesd_request *req,
    qesd_response *resp);

/*
 * Runs on the worker before the scope check and the handler, for every
 * request that matched a route (public routes too: it decides what to do
 * with them, e.g. rate-limit by address). Return QESD_MW_CONTINUE (0) to
 * continue; QESD_MW_STOP (any other value but QESD_MW_DEFERRED) to stop,
 * with resp filled (401, 429, ...); or, like a handler, call qesd_defer()
 * and return QESD_MW_DEFERRED: the resume function then builds the
 * response and the scope check and handler are skipped (the slow-down of
 * failed authentications waits this way without holding a worker). It
 * fills req->auth.
 */
#define QESD_MW_CONTINUE	0
#define QESD_MW_STOP		1
#define QESD_MW_DEFERRED	2
typedef int (*qesd_middleware_fn)(void *app, qesd_request *req,
    qesd_response *resp);

/*
 * Runs on a worker after the response of a request that reached a worker is
 * final (handler, middleware refusal, validation error, deferred
 * completion). duration_s is from arrival to now. Audit and metrics plug in
 * here. Early refusals made on the loop thread (404, 405, 411, 413, 414,
 * 431, 503) carry no identity and do not call it; they are logged and
 * counted by the server itself.
 */
typedef void (*qesd_after_fn)(void *app, const qesd_request *req,
    const qesd_response *resp, double duration_s);

/* Route flags */
#define QESD_ROUTE_JSON_BODY	(1u << 0)	/* body must be a JSON object with
						 * Content-Type application/json;
						 * parsed into req->json */
#define QESD_ROUTE_BODY_OPTIONAL (1u << 1)	/* with JSON_BODY: empty allowed */
#define QESD_ROUTE_DURING_DRAIN	(1u << 2)	/* still served while draining
						 * (health probes, metrics) */
#define QESD_ROUTE_DOCUMENT_BODY (1u << 3)	/* with JSON_BODY: a document may
						 * come as a JSON string (base64)
						 * or as the raw body of another
						 * Content-Type (req->json NULL);
						 * limit document_max_bytes */

struct qesd_route {
	unsigned method;	/* one qesd_method bit */
	const char *pattern;	/* "/v1/signatures/{id}/result"; literal
				 * segments and whole-segment {name} params */
	uint32_t scopes;	/* QESD_SCOPE_* required, or QESD_SCOPE_NONE */
	unsigned flags;		/* QESD_ROUTE_* */
	qesd_handler_fn handler;
	const char *name;	/* stable, for metrics and logs: "signatures.get" */
};

/* A table a source file exports; the server takes a NULL-terminated array of
 * pointers to them, so each file adds its routes without a central list. */
typedef struct qesd_route_table {
	const qesd_route *routes;
	size_t n;
} qesd_route_table;

/* ---------------------------------------------------------------------------
 * Deferred responses (long-poll, waiting for a device)
 */

typedef enum qesd_resume_reason {
	QESD_RESUME_WOKEN = 1,		/* qesd_deferred_wake() */
	QESD_RESUME_DEADLINE = 2,	/* the timeout given to qesd_defer() passed */
	QESD_RESUME_DRAINING = 3,	/* the server is shutting down */
} qesd_resume_reason;

/*
 * Builds the response of a deferred request, on a worker. Called exactly
 * once per qesd_defer() unless qesd_deferred_complete() delivered the
 * response first, in which case it is called with resp == NULL so it can
 * release arg. The request is still valid; the client may have gone away
 * meanwhile (the response is then dropped).
 */
typedef void (*qesd_resume_fn)(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg);

/*
 * Call from a handler, then return QESD_DEFERRED (or from the middleware,
 * then return QESD_MW_DEFERRED). timeout_ms is capped by
 * the server (max 300000); resume runs at the latest then. On success
 * *token identifies the wait for qesd_deferred_wake/complete from any
 * thread. Errors: QES_ERR_LIMIT when too many requests wait (the handler
 * should answer 503), QES_ERR_INVALID_ARG outside a handler or middleware.
 */
int qesd_defer(qesd_request *req, uint32_t timeout_ms, qesd_resume_fn resume,
    void *arg, uint64_t *token);
/* Run the resume function now (reason WOKEN). QES_ERR_NOT_FOUND when the
 * wait already ended. Thread-safe, never blocks on I/O. */
int qesd_deferred_wake(qesd_server *srv, uint64_t token);
/* Deliver a finished response directly (moved from resp; resp is cleared
 * also on error). QES_ERR_NOT_FOUND when the wait already ended. */
int qesd_deferred_complete(qesd_server *srv, uint64_t token, qesd_response *resp);

/* ---------------------------------------------------------------------------
 * The parsing and validation layer (http.c): pure functions, no I/O, so the
 * unit tests and the fuzzer drive them directly.
 */

/*
 * Match method+path against the tables. 0 and *out/params on a match;
 * QES_ERR_NOT_FOUND when no pattern matches the path (404);
 * QES_ERR_UNSUPPORTED when the path matches but not for this method
 * (405), with *allowed set to the methods that do. Literal segments win
 * over {params}. Param values are copied (free with qesd_params_free) and
 * must be 1..QESD_MAX_PARAM_BYTES of [A-Za-z0-9._~-], else no match.
 */
int qesd_route_match(const qesd_route_table *const *tables, unsigned method,
    const char *path, const qesd_route **out, qesd_param *params,
    size_t *n_params, unsigned *allowed);
void qesd_params_free(qesd_param *params, size_t n);

/* Format the Allow header value ("GET, POST") of a method mask. */
void qesd_allow_header(unsigned allowed, char *buf, size_t buflen);

/*
 * Query parsing. qesd_query_parse() takes the raw query (after '?'),
 * splits on '&', percent-decodes ('+' is a space). qesd_query_add_decoded()
 * adds one already-decoded "key=value" pair (libwebsockets decodes query
 * fragments itself). Both enforce: at most QESD_MAX_QUERY_PARAMS pairs,
 * key 1..QESD_MAX_QUERY_KEY_BYTES of [A-Za-z0-9._-], value at most
 * QESD_MAX_QUERY_VALUE_BYTES of valid UTF-8 without control characters,
 * no duplicate keys. QES_ERR_LIMIT for a count or length, QES_ERR_FORMAT
 * for the rest; *detail (static) says which.
 */
int qesd_query_parse(qesd_query *q, const char *raw, size_t len,
    const char **detail);
int qesd_query_add_decoded(qesd_query *q, const char *pair, size_t len,
    const char **detail);
void qesd_query_free(qesd_query *q);
/* Value of key, or NULL. */
const char *qesd_query_get(const qesd_query *q, const char *key);
/* key as an integer in [min, max]: 0, QES_ERR_NOT_FOUND when absent,
 * QES_ERR_FORMAT or QES_ERR_LIMIT otherwise. */
int qesd_query_get_int(const qesd_query *q, const char *key, long long min,
    long long max, long long *out);

/* Value of a path parameter, or NULL. */
const char *qesd_request_param(const qesd_request *req, const char *name);

/* 1 when an incoming X-Request-Id is acceptable: 1..64 of [A-Za-z0-9._-]. */
int qesd_request_id_valid(const char *id, size_t len);
/* 16 random bytes, base64url without padding (22 characters). */
int qesd_request_id_generate(char out[QESD_REQUEST_ID_MAX + 1]);

/* Wipe and free req->authorization (idempotent). */
void qesd_request_wipe_authorization(qesd_request *req);

/* 1 when s is valid UTF-8 (no overlongs, no surrogates) without NUL. */
int qesd_utf8_valid(const uint8_t *s, size_t len);

/*
 * The JSON body pipeline, in order, each with its own problem:
 *  - Content-Type must be application/json (parameters allowed, charset
 *    only utf-8)                             -> 415 unsupported_media_type
 *  - a pre-scan over the raw bytes that counts nesting and string
 *    lengths without building anything, so jansson never sees a document
 *    that could exhaust the stack or memory -> 400 json_too_deep,
 *                                              400 string_too_long
 *  - jansson parse (rejects bad UTF-8, duplicate keys, trailing data)
 *                                            -> 400 invalid_json
 *  - the top level must be an object        -> 400 invalid_json
 */
typedef struct qesd_body_limits {
	size_t max_json_depth;		/* nesting of [ and { */
	size_t max_string_bytes;	/* one string (key or value), raw bytes */
} qesd_body_limits;

typedef enum qesd_json_scan_result {
	QESD_JSON_SCAN_OK = 0,
	QESD_JSON_SCAN_TOO_DEEP = 1,
	QESD_JSON_SCAN_STRING_TOO_LONG = 2,
	QESD_JSON_SCAN_MALFORMED = 3,	/* unbalanced brackets, bad string */
} qesd_json_scan_result;

qesd_json_scan_result qesd_json_prescan(const uint8_t *data, size_t len,
    const qesd_body_limits *limits);

/* 1 when a Content-Type header value means JSON we accept. */
int qesd_content_type_is_json(const char *value);

/*
 * Run the pipeline on req->body; on success req->json holds the object.
 * On failure resp holds the problem and the return is non-zero.
 */
int qesd_request_parse_json(qesd_request *req, const qesd_body_limits *limits,
    qesd_response *resp);

#endif
