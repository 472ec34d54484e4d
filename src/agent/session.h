/*
 * session.h - qes-agent's side of qes.v1: one device, one gateway, for as
 * long as `qes-agent run` lives.
 *
 * The session drives the connection (connection.h) through the protocol of
 * docs/protocol.md: hello, challenge (its server_name must be the enrolled
 * one before anything is signed), auth with the device key, auth_ok, then
 * the inventory, and from then on sign / cancel / diagnose / ping from the
 * gateway, handed to the jobs (jobs.h) so the loop never waits. It decides
 * what happens after a connection ends: reconnect with exponential back-off
 * and full jitter, reset after a stable session; 4004 soon; 4001 no sooner
 * than 30 s; 4002 (revoked) and 4003 (replaced) never. With
 * gateway_addresses, a lost connection or 4004 moves to the next address.
 */
#ifndef QES_AGENT_SESSION_H
#define QES_AGENT_SESSION_H

#include "qes/p11.h"
#include "qes/signer.h"

#include "addresses.h"
#include "devkey.h"
#include "enrollment.h"

/* run's exit codes beyond tool.h's (docs/agent.md) */
#define AGENT_EXIT_REVOKED	10	/* 4002: enroll again */
#define AGENT_EXIT_REPLACED	11	/* 4003: another process uses this device */

typedef struct agent_session_opts {
	const agent_enrollment *enrollment;	/* borrowed */
	const agent_devkey *key;		/* borrowed */
	qes_p11 *p11;				/* borrowed, modules loaded */
	const qes_sign_pin_source *pin_source;	/* borrowed; NULL: none */
	const char *pinentry;			/* NULL: $QES_PINENTRY / pinentry */
	int no_hotplug;				/* scan once instead of watching */
	const agent_addrs *addrs;		/* NULL: dial server_url's host */
} agent_session_opts;

typedef struct agent_session agent_session;

int agent_session_new(const agent_session_opts *o, agent_session **out,
    char *err, size_t err_len);
/* Stops everything (jobs, watcher, connection) and frees. NULL: no-op. */
void agent_session_free(agent_session *s);

/*
 * Connect and serve until stopped (agent_session_request_stop) or told never
 * to come back (revoked, replaced). Returns the process exit code.
 */
int agent_session_run(agent_session *s);

/* Any thread, also a signal-handling one: close with 1000 and return. */
void agent_session_request_stop(agent_session *s);

#endif
