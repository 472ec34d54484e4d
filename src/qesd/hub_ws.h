/*
 * hub_ws.h - what the HTTPS server (server.c) needs from the agent
 * endpoint (hub_ws.c): the qes.v1 WebSocket protocol on the API vhost, the
 * upgrade decision, and the loop-thread hooks (tick, service, drain).
 *
 * For server.c only. Everything here runs on the loop thread unless said
 * otherwise; the hub's public, thread-safe side is hub.h.
 */
#ifndef QESD_HUB_WS_H
#define QESD_HUB_WS_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "hub.h"
#include "server.h"

/* Fill the protocol entry ("qes.v1", its callback and per-session size). */
void qesd_hub_ws_protocol(qesd_hub *hub, struct lws_protocols *p);

/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE on the API vhost: 0 to let the upgrade
 * go on, -1 to refuse it (anything but "websocket" to exactly /v1/agent
 * with Sec-WebSocket-Protocol exactly "qes.v1"; too many connections not
 * yet authenticated; the address over its rate limit).
 */
int qesd_hub_ws_confirm_upgrade(qesd_hub *hub, struct lws *wsi,
    const char *upgrade);

/* The server exists (and its loop will run): tasks and wake-ups go there.
 * Called by qesd_server_new. */
void qesd_hub_ws_attach(qesd_hub *hub, qesd_server *srv);
/* The workers are gone and the connections are about to be closed: from
 * now on store work runs inline and nobody is woken. Any thread. */
void qesd_hub_ws_detach(qesd_hub *hub);

/* Every 100 ms: authentication deadlines, pings, dead peers, last_seen. */
void qesd_hub_ws_tick(qesd_hub *hub);
/* After lws_cancel_service(): queued frames and close requests. */
void qesd_hub_ws_service(qesd_hub *hub);
/*
 * The drain started: no new job goes to a device here; sessions without a
 * job at their device close with server_draining (4004) now, the others
 * when their job ends or at close_by_mono_ms (CLOCK_MONOTONIC ms), when
 * their jobs fail with gateway_restart.
 */
void qesd_hub_ws_drain(qesd_hub *hub, int64_t close_by_mono_ms);
/* Agent connections not closed yet (the drain waits for 0). */
size_t qesd_hub_ws_connections(qesd_hub *hub);

#endif
