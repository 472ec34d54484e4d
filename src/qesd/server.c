/*
 * server.c - the HTTPS transport of qesd: libwebsockets on one loop thread,
 * handlers on a fixed worker pool, responses handed back through a
 * completion queue (see server.h and the flow in http.h).
 *
 * Threads and ownership. Every request lives in a `struct txn`. The loop
 * thread creates it, reads headers and body into it, and either answers at
 * once (limits, 404/405, overload, drain) or hands it to the workers by
 * putting it on the work queue (owner = WORKERS). A worker runs middleware,
 * checks and handler, builds and serialises the response, and puts the txn
 * on the completion queue; lws_cancel_service() wakes the loop, which takes
 * it back (owner = LOOP) in LWS_CALLBACK_EVENT_WAIT_CANCELLED and writes it.
 * `owner` and `wsi` are only ever read and written on the loop thread, so a
 * connection that closes while its request is with the workers simply sets
 * txn->wsi = NULL; the txn is freed when it comes back. The queues and the
 * deferred registry are guarded by srv->mu.
 *
 * Deferred requests wait in a registry keyed by a 64-bit token, never by
 * pointer, so a late wake-up for a request that already ended is a clean
 * QES_ERR_NOT_FOUND. A 100 ms loop timer resumes the ones past their
 * deadline, and all of them when the drain starts.
 *
 * Signals: no handler runs in signal context. SIGTERM and SIGINT are blocked
 * in every thread and a small thread takes them with sigtimedwait().
 *
 * Tasks (qesd_server_task) share the workers with requests: the agent
 * endpoint (hub.c) runs its store calls there and continues on the loop in
 * the task's done function, collected like responses. Workers take a task
 * and a request in turn when both wait, so neither starves the other. The
 * drain waits for tasks as for requests; tasks whose done never ran when the
 * server is freed get done(arg, 1).
 *
 * The agent endpoint: when qesd_server_config.hub is set, the API vhost
 * also speaks the WebSocket sub-protocol qes.v1 (hub_ws.h). The upgrade is
 * accepted only for that protocol on that path, never on the metrics
 * vhost and never while draining; the drain closes agent sessions
 * (server_draining) and waits until they are gone.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "errbuf.h"
#include "log.h"
#include "hub_ws.h"
#include "problem.h"
#include "fdlimit.h"
#include "server.h"

#define TICK_US (100 * LWS_US_PER_MS)
#define MAX_DEFER_MS 300000u
#define WRITE_CHUNK 16384
#define HDRBUF_BYTES 12288
#define DEFER_BUCKETS 1024

enum owner { OWNER_LOOP = 0, OWNER_WORKERS = 1 };
enum job { JOB_RUN = 0, JOB_RESUME, JOB_COMPLETE };

struct txn {
	struct txn *next;		/* work or completion queue */
	struct txn *dnext;		/* deferred registry chain */
	qesd_server *srv;
	/* loop thread only */
	struct lws *wsi;		/* NULL once the connection closed */
	enum owner owner;
	int early;			/* answered on the loop, no worker */
	int writing;			/* response ready to go out */
	int headers_sent;
	size_t expected_body;
	int body_complete;
	uint8_t *out;			/* LWS_PRE + out_len bytes */
	size_t out_len, out_off;
	/* worker side (under srv->mu where noted) */
	enum job job;
	qesd_resume_reason reason;
	int in_handler;			/* mu */
	int registered;			/* mu: in the deferred registry */
	int pending;			/* mu: wake/complete arrived in the handler */
	uint64_t token;			/* mu */
	int64_t deadline_us;		/* mu */
	qesd_resume_fn resume;
	void *resume_arg;
	qesd_response dresp;		/* response from qesd_deferred_complete */
	qes_buf *body;
	qesd_request req;
	qesd_response resp;
};

struct conn {
	struct txn *txn;		/* the request in progress on this connection */
};

struct task {
	struct task *next;
	qesd_task_fn work;
	qesd_task_done_fn done;
	void *arg;
};

struct qesd_server {
	qesd_server_config sc;
	const qesd_config *cfg;
	struct lws_context *ctx;
	struct lws_vhost *vhost, *metrics_vhost;
	struct lws_protocols protocols[3];
	lws_sorted_usec_list_t sul;
	uint8_t hdrbuf[LWS_PRE + HDRBUF_BYTES];

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct txn *work_head, *work_tail;	/* mu */
	size_t n_work_requests;			/* mu: JOB_RUN entries only */
	struct txn *done_head, *done_tail;	/* mu */
	struct txn *deferred[DEFER_BUCKETS];	/* mu */
	size_t n_deferred;			/* mu */
	uint64_t next_token;			/* mu */
	size_t busy_workers;			/* mu */
	int stop_workers;			/* mu */
	struct task *task_head, *task_tail;	/* mu: waiting for a worker */
	struct task *tdone_head, *tdone_tail;	/* mu: done, for the loop */
	size_t tasks_pending;			/* mu: queued, running or done */
	int task_turn;				/* mu: a task goes next */
	pthread_t *workers;
	size_t n_workers;

	pthread_t sig_thread;
	int sig_thread_started;
	atomic_int sig_thread_stop;

	atomic_int draining;
	int drain_started;			/* loop */
	int64_t drain_deadline_us;		/* loop */
	int exit_loop;				/* loop */
	size_t live_txns;			/* loop */
	int timed_out;
};

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------- */
/* txn lifetime (loop thread) */

static struct txn *
txn_new(qesd_server *srv, struct lws *wsi)
{
	struct txn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->srv = srv;
	t->wsi = wsi;
	t->req.app = srv->sc.app;
	t->req.metrics = srv->sc.metrics;
	t->req.server = srv;
	t->req.txn = t;
	t->req.route_name = "unmatched";
	t->req.method_name = "OTHER";
	t->req.arrival_unix_ms = wall_ms();
	t->req.arrival_mono_us = mono_us();
	srv->live_txns++;
	return t;
}

static void
txn_free(struct txn *t)
{
	qesd_request *r;

	if (t == NULL)
		return;
	r = &t->req;
	t->srv->live_txns--;
	qesd_request_wipe_authorization(r);
	free(r->path);
	qesd_params_free(r->path_params, r->n_path_params);
	qesd_query_free(&r->query);
	free(r->idempotency_key);
	free(r->content_type);
	free(r->accept);
	json_decref(r->json);
	qes_buf_free(t->body);
	qesd_response_clear(&t->resp);
	qesd_response_clear(&t->dresp);
	free(t->out);
	free(t);
}

/* The access log line and the request metrics, once per request. */
static void
txn_account(struct txn *t, int client_gone)
{
	qesd_request *r = &t->req;
	double dur_s = (double)(mono_us() - r->arrival_mono_us) / 1e6;

	qesd_metrics_observe_request(t->srv->sc.metrics, r->route_name,
	    r->method_name, t->resp.status, dur_s);
	qesd_log(t->resp.status >= 500 ? QESD_LOG_WARN : QESD_LOG_INFO,
	    client_gone ? "request finished after the client left" : "request",
	    QLS("request_id", r->request_id),
	    QLS("tenant", r->auth.authenticated ? r->auth.tenant_id : NULL),
	    QLS("key_id", r->auth.authenticated ? r->auth.key_id : NULL),
	    QLS("route", r->route_name), QLS("method", r->method_name),
	    QLS("path", r->path), QLI("status", t->resp.status),
	    QLS("problem", t->resp.problem), QLD("duration_ms", dur_s * 1000.0),
	    QLS("client", r->client_addr));
}

/* Serialise resp into t->out (worker or loop). */
static int
txn_serialise(struct txn *t)
{
	qesd_response *resp = &t->resp;
	size_t n = 0;

	free(t->out);
	t->out = NULL;
	t->out_len = t->out_off = 0;
	if (resp->json != NULL) {
		n = json_dumpb(resp->json, NULL, 0, JSON_COMPACT);
		if (n == 0)
			return QES_ERR_INTERNAL;
		if ((t->out = malloc(LWS_PRE + n + 1)) == NULL)
			return QES_ERR_ALLOC;
		if (json_dumpb(resp->json, (char *)t->out + LWS_PRE, n, JSON_COMPACT) != n)
			return QES_ERR_INTERNAL;
		t->out[LWS_PRE + n] = '\n';	/* friendlier for curl and logs */
		t->out_len = n + 1;
	} else if (resp->body_len > 0) {
		if ((t->out = malloc(LWS_PRE + resp->body_len)) == NULL)
			return QES_ERR_ALLOC;
		memcpy(t->out + LWS_PRE, resp->body, resp->body_len);
		t->out_len = resp->body_len;
	}
	return 0;
}

/* A response that cannot even be serialised becomes a fixed 500. */
static void
txn_serialise_or_500(struct txn *t)
{
	static const char body[] = "{\"type\":\"urn:qes:problem:internal\","
	    "\"title\":\"Internal error\",\"status\":500}\n";

	if (txn_serialise(t) == 0)
		return;
	qesd_response_clear(&t->resp);
	t->resp.status = 500;
	t->resp.problem = "internal";
	snprintf(t->resp.content_type, sizeof(t->resp.content_type),
	    "application/problem+json");
	free(t->out);
	t->out_len = t->out_off = 0;
	if ((t->out = malloc(LWS_PRE + sizeof(body) - 1)) != NULL) {
		memcpy(t->out + LWS_PRE, body, sizeof(body) - 1);
		t->out_len = sizeof(body) - 1;
	}
}

/* Answer on the loop thread; the request never reaches a worker. */
static void
early_problem(struct txn *t, int status, const char *name, const char *title,
    const char *detail)
{
	t->early = 1;
	qesd_problem(&t->resp, &t->req, status, name, title, detail);
	/* an unread body would be parsed as the next request: close instead */
	if (t->expected_body > 0 && !t->body_complete)
		t->resp.close_connection = 1;
	txn_serialise_or_500(t);
	t->writing = 1;
	if (t->wsi != NULL)
		lws_callback_on_writable(t->wsi);
}

/* ------------------------------------------------------------------------- */
/* queues (any thread, under mu) */

static void
push_work_locked(qesd_server *srv, struct txn *t)
{
	t->next = NULL;
	if (srv->work_tail != NULL)
		srv->work_tail->next = t;
	else
		srv->work_head = t;
	srv->work_tail = t;
	if (t->job == JOB_RUN)
		srv->n_work_requests++;
	pthread_cond_signal(&srv->cv);
}

static void
push_done(qesd_server *srv, struct txn *t)
{
	pthread_mutex_lock(&srv->mu);
	t->next = NULL;
	if (srv->done_tail != NULL)
		srv->done_tail->next = t;
	else
		srv->done_head = t;
	srv->done_tail = t;
	pthread_mutex_unlock(&srv->mu);
	lws_cancel_service(srv->ctx);
}

static void
registry_remove_locked(qesd_server *srv, struct txn *t)
{
	struct txn **pp = &srv->deferred[t->token % DEFER_BUCKETS];

	for (; *pp != NULL; pp = &(*pp)->dnext)
		if (*pp == t) {
			*pp = t->dnext;
			t->dnext = NULL;
			t->registered = 0;
			srv->n_deferred--;
			return;
		}
}

static struct txn *
registry_find_locked(qesd_server *srv, uint64_t token)
{
	struct txn *t;

	for (t = srv->deferred[token % DEFER_BUCKETS]; t != NULL; t = t->dnext)
		if (t->token == token)
			return t;
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* worker side */

static void
ensure_status(struct txn *t, const char *why)
{
	if (t->resp.status >= 100 && t->resp.status <= 599)
		return;
	qesd_log(QESD_LOG_ERROR, why, QLS("request_id", t->req.request_id),
	    QLS("route", t->req.route_name));
	qesd_problem(&t->resp, &t->req, 500, "internal", "Internal error",
	    "the request could not be completed");
}

/* After hook, serialisation, hand-back to the loop. */
static void
finish(struct txn *t)
{
	qesd_server *srv = t->srv;

	ensure_status(t, "handler returned no status");
	if (srv->sc.after != NULL)
		srv->sc.after(srv->sc.app, &t->req, &t->resp,
		    (double)(mono_us() - t->req.arrival_mono_us) / 1e6);
	txn_serialise_or_500(t);
	qesd_request_wipe_authorization(&t->req);
	push_done(srv, t);
}

/* base64 of a document of document_max_bytes, the longest JSON string a
 * document route takes */
static size_t
document_b64_bytes(const qesd_config *cfg)
{
	return (cfg->document_max_bytes + 2) / 3 * 4;
}

/*
 * The body limit of the request's route: max_body_bytes, except on a
 * document route, where a raw upload may be document_max_bytes and a JSON
 * body its base64 plus max_body_bytes for the other fields.
 */
static size_t
body_max(const qesd_config *cfg, const qesd_request *r)
{
	if (!(r->route->flags & QESD_ROUTE_DOCUMENT_BODY))
		return cfg->max_body_bytes;
	if (!qesd_content_type_is_json(r->content_type))
		return cfg->document_max_bytes;
	return cfg->max_body_bytes + document_b64_bytes(cfg);
}

static void
body_too_large(struct txn *t)
{
	if (t->req.route != NULL &&
	    (t->req.route->flags & QESD_ROUTE_DOCUMENT_BODY))
		early_problem(t, 413, "document_too_large", "Document too large",
		    "the request body exceeds document_max_bytes (raw upload) or "
		    "its base64 plus max_body_bytes (JSON)");
	else
		early_problem(t, 413, "body_too_large", "Request body too large",
		    "the request body exceeds max_body_bytes");
	t->resp.close_connection = 1;
}

static int
body_checks(struct txn *t)
{
	const qesd_config *cfg = t->srv->cfg;
	qesd_body_limits lim = { cfg->max_json_depth, cfg->max_string_bytes };
	unsigned flags = t->req.route->flags;

	if ((flags & QESD_ROUTE_DOCUMENT_BODY) && t->req.body_len > 0) {
		/* a raw upload is the handler's to read */
		if (!qesd_content_type_is_json(t->req.content_type))
			return 0;
		if (lim.max_string_bytes < document_b64_bytes(cfg))
			lim.max_string_bytes = document_b64_bytes(cfg);
	}

	if (!(flags & QESD_ROUTE_JSON_BODY)) {
		if (t->req.body_len == 0)
			return 0;
		qesd_problem(&t->resp, &t->req, 415, "unsupported_media_type",
		    "Unsupported media type", "this route takes no request body");
		return -1;
	}
	if (t->req.body_len == 0) {
		if (flags & QESD_ROUTE_BODY_OPTIONAL)
			return 0;
		qesd_problem(&t->resp, &t->req, 400, "invalid_json", "Invalid JSON",
		    "this route needs a JSON object as request body");
		return -1;
	}
	return qesd_request_parse_json(&t->req, &lim, &t->resp) == 0 ? 0 : -1;
}

static void
run_resume(struct txn *t)
{
	if (t->job == JOB_COMPLETE) {
		/* the response came ready-made: let resume release its arg */
		if (t->resume != NULL)
			t->resume(&t->req, NULL, QESD_RESUME_WOKEN, t->resume_arg);
		qesd_response_move(&t->resp, &t->dresp);
	} else {
		qesd_response_clear(&t->resp);
		if (t->resume != NULL)
			t->resume(&t->req, &t->resp, t->reason, t->resume_arg);
	}
	ensure_status(t, "resume function returned no status");
	qesd_metrics_inflight_add(t->srv->sc.metrics, -1);
	finish(t);
}

/* 403 naming the scopes the key lacks, so the client knows what to ask for. */
static void
scope_problem(struct txn *t, uint32_t missing)
{
	char names[96] = "";
	size_t off = 0;
	uint32_t bit;
	int n;

	for (bit = 1; bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1) {
		if (!(missing & bit) || qesd_scope_name(bit) == NULL)
			continue;
		n = snprintf(names + off, sizeof(names) - off, "%s%s",
		    off > 0 ? ", " : "", qesd_scope_name(bit));
		if (n < 0 || (size_t)n >= sizeof(names) - off)
			break;
		off += (size_t)n;
	}
	qesd_problemf(&t->resp, &t->req, 403, "insufficient_scope",
	    "Insufficient scope",
	    "this route needs the scope %s, which the API key does not have",
	    names);
	if (t->resp.json != NULL)
		(void)json_object_set_new(t->resp.json, "missing_scope",
		    json_string(names));
}

static void
run_request(struct txn *t)
{
	qesd_server *srv = t->srv;
	const qesd_route *route = t->req.route;
	qesd_handler_result hr;
	int mr;

	qesd_response_clear(&t->resp);
	if (srv->sc.middleware != NULL) {
		/* it may defer like a handler (the authentication slow-down) */
		pthread_mutex_lock(&srv->mu);
		t->in_handler = 1;
		pthread_mutex_unlock(&srv->mu);
		mr = srv->sc.middleware(srv->sc.app, &t->req, &t->resp);
		if (mr != QESD_MW_CONTINUE) {
			qesd_request_wipe_authorization(&t->req);
			hr = mr == QESD_MW_DEFERRED ? QESD_DEFERRED : QESD_HANDLED;
			goto settle;
		}
		pthread_mutex_lock(&srv->mu);
		t->in_handler = 0;
		pthread_mutex_unlock(&srv->mu);
	}
	qesd_request_wipe_authorization(&t->req);
	if (route->scopes != QESD_SCOPE_NONE) {
		if (!t->req.auth.authenticated) {
			qesd_problem(&t->resp, &t->req, 401, "unauthorized",
			    "Authentication required",
			    "send an API key as Authorization: Bearer <key>");
			(void)qesd_response_header(&t->resp, "WWW-Authenticate",
			    "Bearer realm=\"qes\"");
			goto done;
		}
		if ((t->req.auth.scopes & route->scopes) != route->scopes) {
			scope_problem(t, route->scopes & ~t->req.auth.scopes);
			goto done;
		}
	}
	if (body_checks(t) != 0)
		goto done;

	pthread_mutex_lock(&srv->mu);
	t->in_handler = 1;
	pthread_mutex_unlock(&srv->mu);
	hr = route->handler(&t->req, &t->resp);
settle:
	pthread_mutex_lock(&srv->mu);
	t->in_handler = 0;
	if (hr == QESD_DEFERRED && (t->registered || t->pending)) {
		if (t->pending) {
			/* woken or completed while the handler was still running */
			t->job = t->pending == 2 ? JOB_COMPLETE : JOB_RESUME;
			t->reason = t->pending == 3 ? QESD_RESUME_DRAINING : QESD_RESUME_WOKEN;
			t->pending = 0;
			if (t->registered)
				registry_remove_locked(srv, t);
			pthread_mutex_unlock(&srv->mu);
			run_resume(t);
			return;
		}
		pthread_mutex_unlock(&srv->mu);
		return;		/* waits in the registry; inflight stays counted */
	}
	if (t->registered) {
		/* qesd_defer() then QESD_HANDLED: the handler changed its mind */
		registry_remove_locked(srv, t);
		pthread_mutex_unlock(&srv->mu);
		if (t->resume != NULL)
			t->resume(&t->req, NULL, QESD_RESUME_WOKEN, t->resume_arg);
	} else
		pthread_mutex_unlock(&srv->mu);
	if (hr == QESD_DEFERRED) {
		qesd_log(QESD_LOG_ERROR, "handler deferred without qesd_defer()",
		    QLS("request_id", t->req.request_id), QLS("route", t->req.route_name));
		qesd_response_clear(&t->resp);
	}
	qesd_response_clear(&t->dresp);
done:
	qesd_metrics_inflight_add(srv->sc.metrics, -1);
	finish(t);
}

/* Run one task on this worker and hand it to the loop. */
static void
run_task(qesd_server *srv, struct task *k)
{
	k->work(k->arg);
	pthread_mutex_lock(&srv->mu);
	k->next = NULL;
	if (srv->tdone_tail != NULL)
		srv->tdone_tail->next = k;
	else
		srv->tdone_head = k;
	srv->tdone_tail = k;
	pthread_mutex_unlock(&srv->mu);
	lws_cancel_service(srv->ctx);
}

static void *
worker_main(void *arg)
{
	qesd_server *srv = arg;
	struct task *k;
	struct txn *t;

	for (;;) {
		pthread_mutex_lock(&srv->mu);
		while (srv->work_head == NULL && srv->task_head == NULL &&
		    !srv->stop_workers)
			pthread_cond_wait(&srv->cv, &srv->mu);
		if (srv->work_head == NULL && srv->task_head == NULL) {
			pthread_mutex_unlock(&srv->mu);
			break;
		}
		if (srv->task_head != NULL &&
		    (srv->work_head == NULL || srv->task_turn)) {
			k = srv->task_head;
			srv->task_head = k->next;
			if (srv->task_head == NULL)
				srv->task_tail = NULL;
			srv->task_turn = 0;
			srv->busy_workers++;
			pthread_mutex_unlock(&srv->mu);
			run_task(srv, k);
			pthread_mutex_lock(&srv->mu);
			srv->busy_workers--;
			pthread_mutex_unlock(&srv->mu);
			continue;
		}
		srv->task_turn = 1;
		t = srv->work_head;
		srv->work_head = t->next;
		if (srv->work_head == NULL)
			srv->work_tail = NULL;
		if (t->job == JOB_RUN)
			srv->n_work_requests--;
		srv->busy_workers++;
		pthread_mutex_unlock(&srv->mu);

		if (t->job == JOB_RUN)
			run_request(t);
		else
			run_resume(t);

		pthread_mutex_lock(&srv->mu);
		srv->busy_workers--;
		pthread_mutex_unlock(&srv->mu);
	}
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* tasks (server.h) */

int
qesd_server_task(qesd_server *srv, qesd_task_fn work, qesd_task_done_fn done,
    void *arg)
{
	struct task *k;

	if (srv == NULL || work == NULL || done == NULL)
		return QES_ERR_INVALID_ARG;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return QES_ERR_ALLOC;
	k->work = work;
	k->done = done;
	k->arg = arg;
	pthread_mutex_lock(&srv->mu);
	if (srv->stop_workers || srv->n_workers == 0) {
		pthread_mutex_unlock(&srv->mu);
		free(k);
		return QES_ERR_UNAVAILABLE;
	}
	if (srv->task_tail != NULL)
		srv->task_tail->next = k;
	else
		srv->task_head = k;
	srv->task_tail = k;
	srv->tasks_pending++;
	pthread_cond_signal(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

void
qesd_server_wake(qesd_server *srv)
{
	if (srv != NULL && srv->ctx != NULL)
		lws_cancel_service(srv->ctx);
}

/* Done functions of finished tasks, on the loop thread. */
static void
collect_tasks(qesd_server *srv)
{
	struct task *k, *next;
	size_t n = 0;

	pthread_mutex_lock(&srv->mu);
	k = srv->tdone_head;
	srv->tdone_head = srv->tdone_tail = NULL;
	pthread_mutex_unlock(&srv->mu);
	for (; k != NULL; k = next) {
		next = k->next;
		k->done(k->arg, 0);
		free(k);
		n++;
	}
	if (n > 0) {
		pthread_mutex_lock(&srv->mu);
		srv->tasks_pending -= n;
		pthread_mutex_unlock(&srv->mu);
	}
}

/* ------------------------------------------------------------------------- */
/* deferral API (http.h) */

int
qesd_defer(qesd_request *req, uint32_t timeout_ms, qesd_resume_fn resume,
    void *arg, uint64_t *token)
{
	struct txn *t;
	qesd_server *srv;
	int r = 0;

	if (req == NULL || req->server == NULL || req->txn == NULL ||
	    resume == NULL || token == NULL)
		return QES_ERR_INVALID_ARG;
	t = req->txn;
	srv = req->server;
	if (timeout_ms > MAX_DEFER_MS)
		timeout_ms = MAX_DEFER_MS;
	pthread_mutex_lock(&srv->mu);
	if (!t->in_handler || t->registered) {
		r = QES_ERR_INVALID_ARG;
		goto out;
	}
	if (srv->n_deferred >= srv->cfg->max_deferred) {
		r = QES_ERR_LIMIT;
		goto out;
	}
	t->token = ++srv->next_token;
	t->deadline_us = mono_us() + (int64_t)timeout_ms * 1000;
	t->resume = resume;
	t->resume_arg = arg;
	t->registered = 1;
	t->dnext = srv->deferred[t->token % DEFER_BUCKETS];
	srv->deferred[t->token % DEFER_BUCKETS] = t;
	srv->n_deferred++;
	if (atomic_load(&srv->draining))
		t->pending = 3;		/* resume at once when the handler returns */
	*token = t->token;
out:
	pthread_mutex_unlock(&srv->mu);
	return r;
}

static int
deferred_end(qesd_server *srv, uint64_t token, qesd_response *resp)
{
	struct txn *t;

	pthread_mutex_lock(&srv->mu);
	t = registry_find_locked(srv, token);
	if (t == NULL || t->pending) {
		pthread_mutex_unlock(&srv->mu);
		if (resp != NULL)
			qesd_response_clear(resp);
		return QES_ERR_NOT_FOUND;
	}
	if (resp != NULL)
		qesd_response_move(&t->dresp, resp);
	if (t->in_handler) {
		t->pending = resp != NULL ? 2 : 1;
	} else {
		registry_remove_locked(srv, t);
		t->job = resp != NULL ? JOB_COMPLETE : JOB_RESUME;
		t->reason = QESD_RESUME_WOKEN;
		push_work_locked(srv, t);
	}
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

int
qesd_deferred_wake(qesd_server *srv, uint64_t token)
{
	if (srv == NULL)
		return QES_ERR_INVALID_ARG;
	return deferred_end(srv, token, NULL);
}

int
qesd_deferred_complete(qesd_server *srv, uint64_t token, qesd_response *resp)
{
	if (srv == NULL || resp == NULL) {
		qesd_response_clear(resp);
		return QES_ERR_INVALID_ARG;
	}
	return deferred_end(srv, token, resp);
}

/* Resume every deferred request past its deadline, or all when draining. */
static void
resume_expired(qesd_server *srv, int all)
{
	int64_t now = mono_us();
	struct txn **pp, *t;
	size_t b;

	pthread_mutex_lock(&srv->mu);
	for (b = 0; b < DEFER_BUCKETS && srv->n_deferred > 0; b++) {
		pp = &srv->deferred[b];
		while ((t = *pp) != NULL) {
			if (t->in_handler) {
				if (all && t->pending == 0)
					t->pending = 3;
				pp = &t->dnext;
				continue;
			}
			if (!all && t->deadline_us > now) {
				pp = &t->dnext;
				continue;
			}
			*pp = t->dnext;
			t->dnext = NULL;
			t->registered = 0;
			srv->n_deferred--;
			t->job = JOB_RESUME;
			t->reason = all ? QESD_RESUME_DRAINING : QESD_RESUME_DEADLINE;
			push_work_locked(srv, t);
		}
	}
	pthread_mutex_unlock(&srv->mu);
}

/* ------------------------------------------------------------------------- */
/* loop side: reading requests */

static char *
hdr_dup(struct lws *wsi, enum lws_token_indexes h, size_t max, int *too_long)
{
	int n = lws_hdr_total_length(wsi, h);
	char *s;

	if (n <= 0)
		return NULL;
	if ((size_t)n > max) {
		*too_long = 1;
		return NULL;
	}
	if ((s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if (lws_hdr_copy(wsi, s, n + 1, h) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

static char *
custom_dup(struct lws *wsi, const char *name, size_t max, int *too_long)
{
	int n = lws_hdr_custom_length(wsi, name, (int)strlen(name));
	char *s;

	if (n <= 0)
		return NULL;
	if ((size_t)n > max) {
		*too_long = 1;
		return NULL;
	}
	if ((s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if (lws_hdr_custom_copy(wsi, s, n + 1, name, (int)strlen(name)) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

static unsigned
method_bit(int lws_meth)
{
	switch (lws_meth) {
	case LWSHUMETH_GET: return QESD_GET;
	case LWSHUMETH_POST: return QESD_POST;
	case LWSHUMETH_OPTIONS: return QESD_OPTIONS;
	case LWSHUMETH_PUT: return QESD_PUT;
	case LWSHUMETH_PATCH: return QESD_PATCH;
	case LWSHUMETH_DELETE: return QESD_DELETE;
	case LWSHUMETH_HEAD: return QESD_HEAD;
	default: return 0;
	}
}

/*
 * Bytes of all headers libwebsockets recognised. Headers it does not know
 * are kept in its arena too but cannot be enumerated through its API; the
 * arena itself is capped (see server_new), and past that cap libwebsockets
 * closes the connection without a response.
 */
static size_t
known_header_bytes(struct lws *wsi)
{
	size_t total = 0;
	int n, len;

	for (n = 0; n < WSI_TOKEN_COUNT; n++)
		if ((len = lws_hdr_total_length(wsi, (enum lws_token_indexes)n)) > 0)
			total += (size_t)len;
	return total;
}

/* Content-Length: digits only, fits in size_t; -1 when malformed. */
static int
parse_content_length(struct lws *wsi, size_t *out)
{
	char buf[24];
	int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
	size_t v = 0, i;

	*out = 0;
	if (n <= 0)
		return 0;
	if ((size_t)n >= sizeof(buf) || lws_hdr_copy(wsi, buf, sizeof(buf),
	    WSI_TOKEN_HTTP_CONTENT_LENGTH) != n)
		return -1;
	for (i = 0; i < (size_t)n; i++) {
		if (buf[i] < '0' || buf[i] > '9' || v > (SIZE_MAX - 9) / 10)
			return -1;
		v = v * 10 + (size_t)(buf[i] - '0');
	}
	*out = v;
	return 1;
}

static void
dispatch(struct txn *t)
{
	qesd_server *srv = t->srv;
	const char *cs;

	if (t->body != NULL && qes_buf_len(t->body) > 0) {
		if (qes_buf_cstr(t->body, &cs) != 0) {
			early_problem(t, 500, "internal", "Internal error", NULL);
			return;
		}
		t->req.body = qes_buf_mutable(t->body);
		t->req.body_len = qes_buf_len(t->body);
	}
	pthread_mutex_lock(&srv->mu);
	if (srv->n_work_requests >= srv->cfg->max_queue) {
		pthread_mutex_unlock(&srv->mu);
		early_problem(t, 503, "overloaded", "Server overloaded",
		    "too many requests are waiting; retry shortly");
		(void)qesd_response_header(&t->resp, "Retry-After", "1");
		return;
	}
	t->owner = OWNER_WORKERS;
	t->job = JOB_RUN;
	qesd_metrics_inflight_add(srv->sc.metrics, 1);
	push_work_locked(srv, t);
	pthread_mutex_unlock(&srv->mu);
	/* the worker decides how long the request may take */
	lws_set_timeout(t->wsi, NO_PENDING_TIMEOUT, 0);
}

static const qesd_route_table *const *
tables_for(qesd_server *srv, struct lws *wsi)
{
	if (srv->metrics_vhost != NULL && lws_get_vhost(wsi) == srv->metrics_vhost)
		return srv->sc.metrics_tables;
	return srv->sc.tables;
}

/* LWS_CALLBACK_HTTP: headers are complete. 0 to continue, -1 to close. */
static int
on_http(qesd_server *srv, struct lws *wsi, struct conn *c)
{
	const qesd_config *cfg = srv->cfg;
	qesd_request *r;
	struct txn *t;
	char *uri = NULL, allow[96];
	const char *detail = NULL;
	unsigned allowed;
	size_t uri_bytes, cl;
	int meth, uri_len, too_long = 0, n, clr, i;
	char frag[QESD_MAX_QUERY_KEY_BYTES + QESD_MAX_QUERY_VALUE_BYTES + 8];

	if (c->txn != NULL)
		return -1;	/* one request at a time per connection */
	if ((t = txn_new(srv, wsi)) == NULL)
		return -1;
	c->txn = t;
	r = &t->req;

	/* request id first: every answer, even a refusal, carries it */
	n = lws_hdr_custom_length(wsi, "x-request-id:", 13);
	if (n > 0 && n <= QESD_REQUEST_ID_MAX &&
	    lws_hdr_custom_copy(wsi, r->request_id, sizeof(r->request_id),
	    "x-request-id:", 13) == n &&
	    qesd_request_id_valid(r->request_id, (size_t)n)) {
		/* the client's id, when sane, ties our logs to theirs */
	} else if (qesd_request_id_generate(r->request_id) != 0)
		return -1;
	lws_get_peer_simple(wsi, r->client_addr, sizeof(r->client_addr));

	meth = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
	if (meth < 0 || uri == NULL)
		return -1;
	r->method = method_bit(meth);
	r->method_name = qesd_method_name(r->method);
	if ((r->path = strndup(uri, (size_t)uri_len)) == NULL)
		return -1;
	if (parse_content_length(wsi, &cl) < 0) {
		early_problem(t, 400, "bad_request", "Bad request",
		    "Content-Length is not a number");
		t->resp.close_connection = 1;
		return 0;
	}
	t->expected_body = cl;

	/* size limits, each with its own problem */
	uri_bytes = (size_t)uri_len +
	    (size_t)(lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0 ?
	    lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) : 0);
	if (uri_bytes > cfg->max_uri_bytes) {
		early_problem(t, 414, "uri_too_long", "URI too long",
		    "the request URI exceeds max_uri_bytes");
		return 0;
	}
	if (known_header_bytes(wsi) > cfg->max_header_bytes) {
		early_problem(t, 431, "header_too_large", "Request header too large",
		    "the request headers exceed max_header_bytes");
		return 0;
	}
	r->authorization = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
	    QESD_MAX_AUTHORIZATION_BYTES, &too_long);
	/*
	 * libwebsockets keeps its own copy in the header arena until the
	 * transaction ends and has no public way to wipe it; ours is wiped.
	 */
	r->content_type = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
	    QESD_MAX_CONTENT_TYPE_BYTES, &too_long);
	r->accept = hdr_dup(wsi, WSI_TOKEN_HTTP_ACCEPT, QESD_MAX_ACCEPT_BYTES,
	    &too_long);
	r->idempotency_key = custom_dup(wsi, "idempotency-key:",
	    QESD_MAX_IDEMPOTENCY_KEY_BYTES, &too_long);
	if (too_long) {
		early_problem(t, 431, "header_too_large", "Request header too large",
		    "a request header exceeds its size limit");
		return 0;
	}
	/* routing */
	clr = qesd_route_match(tables_for(srv, wsi), r->method, r->path,
	    &r->route, r->path_params, &r->n_path_params, &allowed);
	if (clr == QES_ERR_UNSUPPORTED) {
		qesd_allow_header(allowed, allow, sizeof(allow));
		early_problem(t, 405, "method_not_allowed", "Method not allowed",
		    "this path does not support the method");
		(void)qesd_response_header(&t->resp, "Allow", allow);
		return 0;
	}
	if (clr != 0) {
		early_problem(t, 404, "not_found", "Not found",
		    "no route matches this path");
		return 0;
	}
	r->route_name = r->route->name;
	if (atomic_load(&srv->draining) &&
	    !(r->route->flags & QESD_ROUTE_DURING_DRAIN)) {
		early_problem(t, 503, "shutting_down", "Shutting down",
		    "this server is draining; retry on another replica");
		/* soon: the retry reaches another replica (this connection
		 * closes, and a balancer no longer picks one not ready) */
		(void)qesd_response_header(&t->resp, "Retry-After", "1");
		t->resp.close_connection = 1;
		return 0;
	}

	/* query: libwebsockets has decoded and split it into fragments */
	for (i = 0; i < QESD_MAX_QUERY_PARAMS + 2; i++) {
		n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
		    WSI_TOKEN_HTTP_URI_ARGS, i);
		if (n < 0) {
			/* no such fragment, or one larger than any valid pair */
			if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0)
				detail = "query parameter too long";
			break;
		}
		if (qesd_query_add_decoded(&r->query, frag, (size_t)n, &detail) != 0)
			break;
		detail = NULL;
	}
	if (detail == NULL && i == QESD_MAX_QUERY_PARAMS + 2)
		detail = "too many query parameters";
	if (detail != NULL) {
		early_problem(t, 400, "invalid_query", "Invalid query", detail);
		return 0;
	}

	/* bodies */
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
		early_problem(t, 411, "length_required", "Length required",
		    "send the body with Content-Length, not Transfer-Encoding");
		t->resp.close_connection = 1;
		return 0;
	}
	if ((r->method & (QESD_POST | QESD_PUT | QESD_PATCH)) &&
	    lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
		early_problem(t, 411, "length_required", "Length required",
		    "a request with a body needs Content-Length");
		t->resp.close_connection = 1;
		return 0;
	}
	if (cl > body_max(cfg, r)) {
		body_too_large(t);
		return 0;
	}
	if (cl > 0) {
		/* a document's bytes are wiped when the request is freed */
		t->body = (r->route->flags & QESD_ROUTE_DOCUMENT_BODY) ?
		    qes_buf_new_secret() : qes_buf_new();
		if (t->body == NULL)
			return -1;
		qes_buf_set_max(t->body, body_max(cfg, r));
		if (qes_buf_reserve(t->body, cl) != 0)
			return -1;
		return 0;	/* wait for LWS_CALLBACK_HTTP_BODY_COMPLETION */
	}
	/* libwebsockets calls BODY_COMPLETION itself for POST with length 0 */
	if (r->method == QESD_POST)
		return 0;
	dispatch(t);
	return 0;
}

static int
on_body(struct conn *c, const void *in, size_t len)
{
	struct txn *t = c->txn;

	if (t == NULL || t->early || t->owner != OWNER_LOOP || t->body == NULL)
		return 0;	/* answered already: discard */
	if (qes_buf_put(t->body, in, len) != 0)
		body_too_large(t);
	return 0;
}

static int
on_body_complete(struct conn *c)
{
	struct txn *t = c->txn;

	if (t == NULL)
		return 0;
	t->body_complete = 1;
	if (t->early || t->owner != OWNER_LOOP || t->writing)
		return 0;
	dispatch(t);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* loop side: writing responses */

static int
write_headers(qesd_server *srv, struct txn *t)
{
	uint8_t *start = srv->hdrbuf + LWS_PRE, *p = start,
	    *end = srv->hdrbuf + sizeof(srv->hdrbuf) - 1;
	const qesd_response *resp = &t->resp;
	const char *ct = resp->content_type[0] ? resp->content_type : NULL;
	char name[64];
	size_t i;
	struct lws *wsi = t->wsi;

	if (lws_add_http_common_headers(wsi, (unsigned)resp->status, ct,
	    t->out_len, &p, end))
		return -1;
	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"x-request-id:",
	    (const unsigned char *)t->req.request_id, (int)strlen(t->req.request_id),
	    &p, end))
		return -1;
	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
	    (const unsigned char *)"no-store", 8, &p, end))
		return -1;
	for (i = 0; i < resp->n_headers; i++) {
		snprintf(name, sizeof(name), "%s:", resp->headers[i].name);
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
		    (const unsigned char *)resp->headers[i].value,
		    (int)strlen(resp->headers[i].value), &p, end))
			return -1;
	}
	if (t->resp.close_connection || atomic_load(&srv->draining)) {
		t->resp.close_connection = 1;
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
		    (const unsigned char *)"close", 5, &p, end))
			return -1;
	}
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	t->headers_sent = 1;
	return 0;
}

/* One step of output; returns what the lws callback should return. */
static int
on_writable(qesd_server *srv, struct conn *c)
{
	struct txn *t = c->txn;
	size_t n;
	int final, close_after;

	if (t == NULL || !t->writing || t->owner != OWNER_LOOP)
		return 0;
	if (!t->headers_sent) {
		if (write_headers(srv, t) != 0)
			return -1;
		if (t->out_len > 0 && t->req.method != QESD_HEAD) {
			lws_callback_on_writable(t->wsi);
			return 0;
		}
	} else {
		n = t->out_len - t->out_off;
		if (n > WRITE_CHUNK)
			n = WRITE_CHUNK;
		final = t->out_off + n == t->out_len;
		if (lws_write(t->wsi, t->out + LWS_PRE + t->out_off, n,
		    final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
			return -1;
		t->out_off += n;
		if (!final) {
			lws_callback_on_writable(t->wsi);
			return 0;
		}
	}
	/* the whole response is out */
	close_after = t->resp.close_connection;
	txn_account(t, 0);
	c->txn = NULL;
	{
		struct lws *wsi = t->wsi;

		txn_free(t);
		if (close_after)
			return -1;
		if (lws_http_transaction_completed(wsi))
			return -1;
	}
	return 0;
}

/* Take finished requests back from the workers (loop thread). */
static void
collect_done(qesd_server *srv)
{
	struct txn *t, *next;

	pthread_mutex_lock(&srv->mu);
	t = srv->done_head;
	srv->done_head = srv->done_tail = NULL;
	pthread_mutex_unlock(&srv->mu);
	for (; t != NULL; t = next) {
		next = t->next;
		t->next = NULL;
		t->owner = OWNER_LOOP;
		if (t->wsi == NULL) {
			txn_account(t, 1);
			txn_free(t);
			continue;
		}
		t->writing = 1;
		lws_callback_on_writable(t->wsi);
	}
}

/*
 * How long before the drain deadline the agent sessions still holding a
 * job are closed, so their close handshakes and the jobs' failure
 * (gateway_restart) are written before the process leaves: a third of
 * drain_timeout_s, at most 5 s.
 */
static int64_t
drain_margin_us(const qesd_server *srv)
{
	int64_t third = (int64_t)srv->cfg->drain_timeout_s * 1000000 / 3;

	return third < 5000000 ? third : 5000000;
}

static void
check_drain(qesd_server *srv)
{
	size_t tasks, agents = 0;
	int64_t now;

	if (!atomic_load(&srv->draining))
		return;
	now = mono_us();
	if (!srv->drain_started) {
		srv->drain_started = 1;
		srv->drain_deadline_us = now + (int64_t)srv->cfg->drain_timeout_s * 1000000;
		qesd_log(QESD_LOG_INFO, "draining: refusing new requests",
		    QLI("in_flight", (long long)srv->live_txns),
		    QLI("drain_timeout_s", srv->cfg->drain_timeout_s));
		resume_expired(srv, 1);
		if (srv->sc.hub != NULL)
			qesd_hub_ws_drain(srv->sc.hub,
			    (srv->drain_deadline_us - drain_margin_us(srv)) / 1000);
	}
	pthread_mutex_lock(&srv->mu);
	tasks = srv->tasks_pending;
	pthread_mutex_unlock(&srv->mu);
	if (srv->sc.hub != NULL)
		agents = qesd_hub_ws_connections(srv->sc.hub);
	if (srv->live_txns == 0 && tasks == 0 && agents == 0) {
		srv->exit_loop = 1;
	} else if (now >= srv->drain_deadline_us) {
		qesd_log(QESD_LOG_WARN, "drain timeout: abandoning requests still running",
		    QLI("in_flight", (long long)srv->live_txns));
		srv->timed_out = 1;
		srv->exit_loop = 1;
	}
}

static void
tick(lws_sorted_usec_list_t *sul)
{
	qesd_server *srv = lws_container_of(sul, qesd_server, sul);

	resume_expired(srv, 0);
	if (srv->sc.hub != NULL)
		qesd_hub_ws_tick(srv->sc.hub);
	check_drain(srv);
	lws_sul_schedule(srv->ctx, 0, &srv->sul, tick, TICK_US);
}

static int
callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct lws_vhost *vh = lws_get_vhost(wsi);
	qesd_server *srv = vh != NULL ? lws_get_vhost_user(vh) : NULL;
	struct conn *c = user;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* belt and braces with ssl_options_set: nothing below TLS 1.3 */
		if (user == NULL || !SSL_CTX_set_min_proto_version((SSL_CTX *)user,
		    TLS1_3_VERSION))
			return 1;
		return 0;
	case LWS_CALLBACK_HTTP:
		if (srv == NULL || c == NULL)
			return -1;
		return on_http(srv, wsi, c);
	case LWS_CALLBACK_HTTP_BODY:
		if (c == NULL)
			return -1;
		return on_body(c, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (c == NULL)
			return -1;
		return on_body_complete(c);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (srv == NULL || c == NULL)
			return 0;
		return on_writable(srv, c);
	case LWS_CALLBACK_CLOSED_HTTP:
		if (c != NULL && c->txn != NULL) {
			struct txn *t = c->txn;

			c->txn = NULL;
			if (t->owner == OWNER_WORKERS) {
				t->wsi = NULL;	/* freed when it comes back */
			} else {
				if (t->writing)
					txn_account(t, 1);
				txn_free(t);
			}
		}
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (srv != NULL) {
			collect_done(srv);
			collect_tasks(srv);
			if (srv->sc.hub != NULL)
				qesd_hub_ws_service(srv->sc.hub);
			check_drain(srv);
		}
		return 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* only qes.v1 on /v1/agent of the API vhost (hub_ws.c decides) */
		if (srv == NULL || srv->sc.hub == NULL || vh != srv->vhost ||
		    atomic_load(&srv->draining))
			return -1;
		return qesd_hub_ws_confirm_upgrade(srv->sc.hub, wsi, in);
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ------------------------------------------------------------------------- */
/* signals */

static void *
signal_main(void *arg)
{
	qesd_server *srv = arg;
	struct timespec ts = { 0, 200 * 1000 * 1000 };
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	while (!atomic_load(&srv->sig_thread_stop)) {
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			qesd_log(QESD_LOG_INFO, "signal received",
			    QLS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
			qesd_server_stop(srv);
		}
	}
	return NULL;
}

static void
lws_log_emit(int level, const char *line)
{
	char msg[512];
	size_t n;

	snprintf(msg, sizeof(msg), "libwebsockets: %s", line);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	qesd_log(level == LLL_ERR ? QESD_LOG_ERROR :
	    level == LLL_WARN ? QESD_LOG_WARN : QESD_LOG_DEBUG, msg);
}

/* ------------------------------------------------------------------------- */
/* lifecycle */

static struct lws_vhost *
make_vhost(qesd_server *srv, const char *name, const char *host, int port)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.vhost_name = name;
	info.port = port;
	info.iface = host;
	info.protocols = srv->protocols;
	info.user = srv;
	info.ssl_cert_filepath = srv->cfg->tls_cert;
	info.ssl_private_key_filepath = srv->cfg->tls_key;
	info.ssl_options_set = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
	    SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 | SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION;
	info.alpn = "http/1.1";		/* HTTP/2 stays off: one request model */
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
	    LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
	info.keepalive_timeout = 30;
	info.timeout_secs = 20;
	return lws_create_vhost(srv->ctx, &info);
}

int
qesd_server_new(const qesd_server_config *sc, qesd_server **out, char *err,
    size_t errlen)
{
	struct lws_context_creation_info info;
	const qesd_config *cfg;
	qesd_server *srv = NULL;
	sigset_t set;
	size_t i, arena;
	int r = QES_ERR_INVALID_ARG;

	*out = NULL;
	if (sc == NULL || sc->cfg == NULL || sc->tables == NULL || sc->metrics == NULL)
		return qesd_errf(err, errlen, "server: incomplete configuration");
	cfg = sc->cfg;
	if (cfg->tls_cert == NULL || cfg->tls_key == NULL)
		return qesd_errf(err, errlen, "tls_cert and tls_key are required: qesd serves TLS 1.3 only");
	if (access(cfg->tls_cert, R_OK) != 0)
		return qesd_errf(err, errlen, "tls_cert %s: %s", cfg->tls_cert, strerror(errno));
	if ((r = qesd_check_secret_file(cfg->tls_key, "tls_key", err, errlen)) != 0)
		return r;
	if (cfg->metrics_enabled && sc->metrics_tables == NULL)
		return qesd_errf(err, errlen, "metrics_listen is set but no metrics routes were given");

	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return qesd_errf(err, errlen, "out of memory");
	srv->sc = *sc;
	srv->cfg = cfg;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cv, NULL);
	srv->protocols[0].name = "http";
	srv->protocols[0].callback = callback_http;
	srv->protocols[0].per_session_data_size = sizeof(struct conn);
	srv->protocols[0].rx_buffer_size = 0;
	if (sc->hub != NULL)
		qesd_hub_ws_protocol(sc->hub, &srv->protocols[1]);

	if (sc->handle_signals) {
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	}

	lws_set_log_level(qesd_log_enabled(QESD_LOG_DEBUG) ?
	    LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
	    LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.server_string = "qesd";
	/*
	 * libwebsockets' header arena: larger than max_header_bytes so that we,
	 * not the library, answer moderately oversized headers with 431.
	 */
	arena = cfg->max_header_bytes * 4;
	if (arena < cfg->max_header_bytes + 4096)
		arena = cfg->max_header_bytes + 4096;
	if (arena > 131072)
		arena = 131072;
	info.max_http_header_data2 = (unsigned)arena;
	info.max_http_header_pool2 = 256;
	/* stop accepting below the open-file limit, not spin on EMFILE */
	info.simultaneous_ssl_restriction = qesd_fd_limit_connections();
	if ((srv->ctx = lws_create_context(&info)) == NULL) {
		r = qesd_errf(err, errlen, "cannot create the libwebsockets context");
		goto fail;
	}
	srv->vhost = make_vhost(srv, "api", cfg->listen_host, cfg->listen_port);
	if (srv->vhost == NULL) {
		r = qesd_errf(err, errlen,
		    "cannot listen on %s port %d with TLS (address in use, or bad certificate/key %s / %s?)",
		    cfg->listen_host, cfg->listen_port, cfg->tls_cert, cfg->tls_key);
		goto fail;
	}
	if (cfg->metrics_enabled) {
		srv->metrics_vhost = make_vhost(srv, "metrics", cfg->metrics_host,
		    cfg->metrics_port);
		if (srv->metrics_vhost == NULL) {
			r = qesd_errf(err, errlen, "cannot listen on metrics %s port %d",
			    cfg->metrics_host, cfg->metrics_port);
			goto fail;
		}
	}

	srv->n_workers = cfg->workers;
	if ((srv->workers = calloc(srv->n_workers, sizeof(pthread_t))) == NULL) {
		r = qesd_errf(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < srv->n_workers; i++)
		if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
			srv->n_workers = i;
			r = qesd_errf(err, errlen, "cannot start worker threads");
			goto fail;
		}
	if (sc->handle_signals) {
		if (pthread_create(&srv->sig_thread, NULL, signal_main, srv) != 0) {
			r = qesd_errf(err, errlen, "cannot start the signal thread");
			goto fail;
		}
		srv->sig_thread_started = 1;
	}
	lws_sul_schedule(srv->ctx, 0, &srv->sul, tick, TICK_US);
	if (sc->hub != NULL)
		qesd_hub_ws_attach(sc->hub, srv);
	*out = srv;
	return 0;
fail:
	qesd_server_free(srv);
	return r != 0 ? r : QES_ERR_INTERNAL;
}

int
qesd_server_run(qesd_server *srv)
{
	qesd_log(QESD_LOG_INFO, "listening", QLS("host", srv->cfg->listen_host),
	    QLI("port", qesd_server_port(srv)), QLI("workers", srv->n_workers),
	    QLS("tls", "1.3"));
	if (srv->metrics_vhost != NULL)
		qesd_log(QESD_LOG_INFO, "metrics listening",
		    QLS("host", srv->cfg->metrics_host),
		    QLI("port", qesd_server_metrics_port(srv)));
	while (!srv->exit_loop)
		if (lws_service(srv->ctx, 0) < 0)
			break;
	if (srv->timed_out)
		return QES_ERR_TIMEOUT;
	qesd_log(QESD_LOG_INFO, "drained");
	return 0;
}

void
qesd_server_stop(qesd_server *srv)
{
	if (srv == NULL)
		return;
	atomic_store(&srv->draining, 1);
	if (srv->ctx != NULL)
		lws_cancel_service(srv->ctx);
}

void
qesd_server_free(qesd_server *srv)
{
	size_t i;

	if (srv == NULL)
		return;
	if (srv->sig_thread_started) {
		atomic_store(&srv->sig_thread_stop, 1);
		pthread_join(srv->sig_thread, NULL);
	}
	pthread_mutex_lock(&srv->mu);
	srv->stop_workers = 1;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	for (i = 0; i < srv->n_workers; i++)
		pthread_join(srv->workers[i], NULL);
	free(srv->workers);
	/* from here the hub runs its store work inline, and wakes nobody */
	if (srv->sc.hub != NULL)
		qesd_hub_ws_detach(srv->sc.hub);
	/* closes every connection: CLOSED_HTTP frees what is left */
	if (srv->ctx != NULL) {
		lws_sul_cancel(&srv->sul);
		lws_context_destroy(srv->ctx);
	}
	/* tasks the loop never took back */
	while (srv->tdone_head != NULL) {
		struct task *k = srv->tdone_head;

		srv->tdone_head = k->next;
		k->done(k->arg, 1);
		free(k);
	}
	/* completions nobody collected (run() never ran or ended early) */
	while (srv->done_head != NULL) {
		struct txn *t = srv->done_head;

		srv->done_head = t->next;
		txn_free(t);
	}
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

int
qesd_server_draining(const qesd_server *srv)
{
	return srv != NULL && atomic_load(&((qesd_server *)srv)->draining);
}

int
qesd_server_ready(qesd_server *srv)
{
	if (srv == NULL || qesd_server_draining(srv))
		return 0;
	if (srv->sc.ready == NULL)
		return 1;
	return srv->sc.ready(srv->sc.app) == 0;
}

int
qesd_server_port(const qesd_server *srv)
{
	return srv != NULL && srv->vhost != NULL ?
	    lws_get_vhost_listen_port(srv->vhost) : -1;
}

int
qesd_server_metrics_port(const qesd_server *srv)
{
	return srv != NULL && srv->metrics_vhost != NULL ?
	    lws_get_vhost_listen_port(srv->metrics_vhost) : -1;
}
