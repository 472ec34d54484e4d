/*
 * hub.h - the live device sessions of this qesd process, and the one door
 * through which the rest of qesd talks to a desktop agent.
 *
 * The WebSocket endpoint (wss://HOST/v1/agent, sub-protocol qes.v1, see
 * docs/protocol.md) authenticates a device, registers its session here and
 * hands every message it receives to the application through the event
 * callbacks below. Services (jobs, diagnostics, device revocation) send to
 * a device with qesd_hub_send() from any thread: the frame is queued and
 * the event loop is woken; nothing here blocks on I/O.
 *
 * Tenancy: every call names the tenant; a device of another tenant is
 * "not here" (QES_ERR_NOT_FOUND), exactly like an offline one.
 *
 * Threads: callbacks run on a worker thread, never on the event loop, so
 * they may use the store. They may call qesd_hub_* functions. For one
 * session they run one at a time and in order (session_open, messages,
 * session_closed); different sessions run in parallel.
 *
 * Life cycle (main.c): qesd_hub_new() after the application services,
 * qesd_hub_set_events() by the services that listen, qesd_hub_recover()
 * before serving, then the server gets the hub (qesd_server_config.hub)
 * and serves /v1/agent; qesd_hub_free() after qesd_server_free().
 */
#ifndef QESD_HUB_H
#define QESD_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "qes/proto.h"
#include "app.h"
#include "store.h"

typedef struct qesd_hub qesd_hub;

typedef struct qesd_hub_events {
	/* a device finished authentication; its session is live */
	void (*session_open)(void *app, const char *tenant_id,
	    const char *device_id, const char *session_id);
	/* the session ended (peer closed, heartbeat lost, revoked, replaced,
	 * draining); reason is a stable snake_case word */
	void (*session_closed)(void *app, const char *tenant_id,
	    const char *device_id, const char *session_id, const char *reason);
	/* an authenticated, schema-checked message: inventory, sign_result,
	 * diagnose_result, error, pong. Borrowed for the call. */
	void (*message)(void *app, const char *tenant_id, const char *device_id,
	    const char *session_id, const qes_proto_msg *msg);
	void *app;
} qesd_hub_events;

/*
 * A hub for app (configuration: server_name, replica_name,
 * agent_ping_interval_s, agent_dead_after_s). QES_ERR_INVALID_ARG with err
 * set when server_name is not a host name the protocol accepts (lower
 * case, no port).
 */
int qesd_hub_new(qesd_app *app, qesd_hub **out, char *err, size_t errlen);
/* NULL is a no-op. After qesd_server_free(). */
void qesd_hub_free(qesd_hub *hub);
/* Set the listeners (copied); before the server runs. */
void qesd_hub_set_events(qesd_hub *hub, const qesd_hub_events *events);
/*
 * Close the sessions this replica left open in the store (a crash, a kill)
 * with reason gateway_restart, each with its audit record. Before serving.
 */
int qesd_hub_recover(qesd_hub *hub);
/* The configured server name (what agents sign); borrowed. */
const char *qesd_hub_server_name(const qesd_hub *hub);

/*
 * Queue a text frame for the live session of device_id in tenant_id.
 * 0: queued; QES_ERR_NOT_FOUND: no live session here (offline, foreign
 * tenant, revoked); QES_ERR_LIMIT: the session's send queue is full.
 */
int qesd_hub_send(qesd_hub *hub, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len);

/* 1 when device_id has a live session here (session id copied if asked). */
int qesd_hub_is_live(qesd_hub *hub, const char *tenant_id, const char *device_id,
    char session_id_out[QESD_ID_SIZE]);

/* Close the device's live session (revocation, ...) with a qes.v1 close code. */
int qesd_hub_close_device(qesd_hub *hub, const char *tenant_id,
    const char *device_id, int close_code, const char *reason);

/*
 * A newer session of the device opened on another replica (bus.h): close
 * the one here with 4003 replaced, as a newer session on this replica
 * would, if it connected before newer_ms (wall clock) and is not
 * keep_session_id. 0 closed; QES_ERR_NOT_FOUND when there is none, or it
 * is the newer one.
 */
int qesd_hub_close_older(qesd_hub *hub, const char *tenant_id,
    const char *device_id, const char *keep_session_id, int64_t newer_ms);

/*
 * The stable credential id of one certificate on one device's token:
 * "crd_" + 26 base32 characters of SHA-256 over a length-prefixed
 * (device_id, token serial, CKA_ID hex, certificate SHA-256 hex). The same
 * certificate on the same token of the same device keeps its id across
 * reconnects and restarts; nothing else can share it.
 */
int qesd_credential_id(const char *device_id, const char *serial,
    const char *key_id_hex, const char *cert_sha256_hex, char out[QESD_ID_SIZE]);

#endif
