/*
 * server.h - qesd's HTTPS server: libwebsockets transport, worker pool,
 * deferred responses, graceful drain.
 *
 * The server owns one libwebsockets context with one TLS 1.3-only vhost on
 * the configured listen address (and, when metrics_listen is set, a second
 * TLS vhost that serves only the metrics tables). The loop thread does I/O
 * only; handlers run on `workers` threads (see http.h for the request flow).
 *
 * Lifecycle: qesd_server_new() checks the TLS files, binds and starts the
 * workers; qesd_server_run() serves until SIGTERM/SIGINT (or
 * qesd_server_stop()), then drains: new requests get 503 shutting_down,
 * readiness turns false, waiting long-polls are resumed at once, in-flight
 * requests finish until drain_timeout_s. qesd_server_free() releases all.
 *
 * With a hub (hub.h) the API vhost is also the agents' WebSocket endpoint
 * (wss://HOST/v1/agent, sub-protocol qes.v1); the drain then closes agent
 * sessions with server_draining and waits for them too.
 */
#ifndef QESD_SERVER_H
#define QESD_SERVER_H

#include <stddef.h>

#include "config.h"
#include "http.h"
#include "metrics.h"

/* 0 when the application is ready to serve (store reachable). Runs on a
 * worker, may block briefly. */
typedef int (*qesd_ready_fn)(void *app);

typedef struct qesd_hub qesd_hub;	/* hub.h */

typedef struct qesd_server_config {
	const qesd_config *cfg;			/* borrowed for the server's life */
	const qesd_route_table *const *tables;	/* NULL-terminated */
	const qesd_route_table *const *metrics_tables; /* for metrics_listen */
	qesd_middleware_fn middleware;		/* may be NULL */
	qesd_after_fn after;			/* may be NULL */
	qesd_ready_fn ready;			/* NULL: always ready */
	void *app;				/* handed to hooks and handlers */
	qesd_metrics *metrics;			/* borrowed, required */
	int handle_signals;			/* SIGTERM/SIGINT start the drain */
	qesd_hub *hub;				/* agent endpoint; NULL: none */
} qesd_server_config;

/*
 * Create and bind. Must be called before any other thread exists when
 * handle_signals is set (it blocks SIGTERM and SIGINT for the process and
 * waits for them on a thread of its own). On failure err says why.
 */
int qesd_server_new(const qesd_server_config *sc, qesd_server **out,
    char *err, size_t errlen);

/*
 * Serve until drained. 0 after a clean drain; QES_ERR_TIMEOUT when
 * drain_timeout_s passed with requests still running (their workers are
 * abandoned: the caller should exit without qesd_server_free()).
 */
int qesd_server_run(qesd_server *srv);

/* Begin the drain, from any thread (what SIGTERM does). */
void qesd_server_stop(qesd_server *srv);

/* NULL is a no-op. Only after qesd_server_run() returned 0, or without run. */
void qesd_server_free(qesd_server *srv);

int qesd_server_draining(const qesd_server *srv);
/* Not draining and the ready callback says 0. */
int qesd_server_ready(qesd_server *srv);
/* The bound port of the API vhost (useful with listen port 0). */
int qesd_server_port(const qesd_server *srv);
int qesd_server_metrics_port(const qesd_server *srv);

/*
 * Tasks: run work(arg) on a worker thread, then done(arg, 0) on the loop
 * thread, the one that owns every connection. This is how loop code (the
 * agent endpoint) gets store calls done without blocking the loop: work
 * does the blocking part and must not touch libwebsockets; done continues
 * with the result and may. Tasks share the workers with requests. From any
 * thread. QES_ERR_UNAVAILABLE once the workers have stopped (free: run the
 * work inline then); QES_ERR_ALLOC. A task whose done the loop never ran
 * (the server was freed first) gets done(arg, 1) from qesd_server_free()
 * after every connection is closed.
 */
typedef void (*qesd_task_fn)(void *arg);
typedef void (*qesd_task_done_fn)(void *arg, int cancelled);
int qesd_server_task(qesd_server *srv, qesd_task_fn work,
    qesd_task_done_fn done, void *arg);

/* Wake the loop thread (its hub service runs), from any thread. */
void qesd_server_wake(qesd_server *srv);

#endif
