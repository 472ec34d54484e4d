/*
 * connection.h - the agent's WebSocket connection to qesd: transport only.
 *
 * One libwebsockets client context on the calling thread's loop, dialing
 * wss://HOST:PORT/v1/agent with the sub-protocol qes.v1. What it guarantees,
 * whoever uses it:
 *   - TLS 1.3 only, the server's chain verified against exactly one trust
 *     anchor set (the enrolled CA file, or the system store if enrollment
 *     used it) and its host name checked; the SSL_CTX is built here, not by
 *     libwebsockets' defaults, so nothing else can slip into the store;
 *   - whole messages: fragments are joined, a message over
 *     QES_PROTO_MAX_BYTES closes with 1009 without buffering the rest, a
 *     binary frame closes with 4000;
 *   - keepalive (docs/protocol.md, section 9): a WebSocket ping every
 *     heartbeat interval, and a peer silent for QES_PROTO_DEAD_AFTER_BEATS
 *     intervals is dropped;
 *   - frames queued with agent_conn_send() go out in order.
 * Policy (what to send, when to dial again, which close codes are final)
 * belongs to the caller (session.c), through the callbacks below. All
 * callbacks run on the loop thread; only agent_conn_wake() may be called
 * from another thread.
 */
#ifndef QES_AGENT_CONNECTION_H
#define QES_AGENT_CONNECTION_H

#include <stddef.h>
#include <stdint.h>

#include "addresses.h"

typedef struct agent_conn agent_conn;

typedef struct agent_conn_cb {
	/* the WebSocket is up (qes.v1 selected) */
	void (*opened)(void *arg);
	/* one complete text message; borrowed for the call */
	void (*message)(void *arg, const uint8_t *data, size_t len);
	/*
	 * The connection ended, or could not be made. code: the close code
	 * the peer sent, or ours; 0 when there was none (network, TLS,
	 * handshake or keepalive failure). reason: printable, never NULL.
	 */
	void (*closed)(void *arg, int code, const char *reason);
	/* agent_conn_wake() was called (results to collect) */
	void (*woken)(void *arg);
	/* about every 250 ms */
	void (*tick)(void *arg);
	void *arg;
} agent_conn_cb;

typedef struct agent_conn_opts {
	const char *host;		/* lower case; IPv6 without brackets */
	unsigned port;
	/* where to connect instead of host:port (copied; NULL or empty: host
	 * itself); TLS, Host and the signed name stay host's (addresses.h) */
	const agent_addrs *addrs;
	const char *ca_file;		/* PEM; NULL: the system trust store */
	const char *user_agent;		/* "qes-agent/0.1.0" */
	agent_conn_cb cb;
} agent_conn_opts;

/* err (may be NULL) says why, e.g. the CA file cannot be read. */
int agent_conn_new(const agent_conn_opts *o, agent_conn **out, char *err,
    size_t err_len);
/* Close at once and free. NULL is a no-op. */
void agent_conn_free(agent_conn *c);

/* Dial after delay_ms (0: now). Replaces a pending dial. */
void agent_conn_dial(agent_conn *c, uint32_t delay_ms);
/* The next dial goes to the next of opts.addrs (no-op without them). */
void agent_conn_next_address(agent_conn *c);
/* 1 while a connection exists (dialing, handshaking or open). */
int agent_conn_active(const agent_conn *c);

/* Queue one text message (copied). QES_ERR_LIMIT when the queue is full. */
int agent_conn_send(agent_conn *c, const uint8_t *data, size_t len);
/* Close with code and reason text (qes_proto_close_text); then closed() */
void agent_conn_close(agent_conn *c, int code, const char *reason);
/* Drop the connection at once, without a close handshake; then closed(0) */
void agent_conn_drop(agent_conn *c, const char *reason);

/* Keepalive interval in seconds (0: keepalive off, the default). */
void agent_conn_set_heartbeat(agent_conn *c, unsigned heartbeat_s);

/* Run the loop until agent_conn_stop(). */
int agent_conn_run(agent_conn *c);
/* Make agent_conn_run() return after the current callback. Loop thread. */
void agent_conn_stop(agent_conn *c);
/* Any thread: make the loop call woken(). */
void agent_conn_wake(agent_conn *c);

#endif
