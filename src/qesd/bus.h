/*
 * bus.h - how a qesd replica reaches a device whose agent is connected to
 * another replica, and tells the other replicas that a job changed.
 *
 * Every replica owns the sessions of the agents connected to it (hub.h);
 * the bus routes to the owner. Two implementations, chosen by the
 * configuration key bus:
 *
 *   local      one process: the hub is the whole world (bus_local.c); no
 *              threads, nothing leaves the process
 *   nats:URL   NATS core messaging (bus_nats.c, libnats): each replica
 *              subscribes to qes.dev.<tenant>.<device> for each device live
 *              on it; a request to that subject reaches the holder, and
 *              "no responders" means the device is offline everywhere;
 *              job changes are published on qes.job.<tenant>.<job>, which
 *              every replica subscribes to
 *
 * The services call the bus instead of the hub for a device that may be
 * elsewhere: every operation tries the local hub first and goes to the bus
 * only when the device is not live here, so a single replica behaves
 * exactly as before. Envelopes: bus_msg.h.
 *
 * Threads: all functions may be called from any thread. Requests to
 * another replica (send, is_live, close) block the caller for at most
 * bus_request_timeout_ms; the rest never block. Messages from other
 * replicas are handled on libnats' delivery threads, which only queue
 * (qesd_hub_send), look up (qesd_hub_is_live) or hand work to the bus's
 * own thread (a diagnosis waits there for the agent's answer).
 *
 * Life cycle (app.c): qesd_bus_new() after the hub, the jobs and the
 * diagnostics service (it reaches them through the app when a message
 * comes); qesd_bus_stop() first in qesd_app_free() (no message is handled
 * and no request leaves afterwards: remote devices read as offline);
 * qesd_bus_free() after the hub.
 */
#ifndef QESD_BUS_H
#define QESD_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "store.h"

typedef struct qesd_bus qesd_bus;

/*
 * The bus app->cfg->bus names (NULL or "local": the local one). A NATS bus
 * starts connecting and returns at once: while the server is unreachable
 * the replica is not ready (qesd_bus_ready) and remote devices read as
 * offline. QES_ERR_INVALID_ARG with err set for a bad configuration (an
 * unreadable credentials or token file, a CA file that does not load).
 */
int qesd_bus_new(qesd_app *app, qesd_bus **out, char *err, size_t errlen);
/* Stop handling and sending messages (idempotent; NULL: no-op). */
void qesd_bus_stop(qesd_bus *bus);
/* Stop, then release. NULL is a no-op. */
void qesd_bus_free(qesd_bus *bus);

/* "local" or "nats". */
const char *qesd_bus_kind(const qesd_bus *bus);
/* 1 when other replicas may hold devices (NATS). */
int qesd_bus_is_remote(const qesd_bus *bus);
/* 0 when the bus works (local: always), else QES_ERR_UNAVAILABLE. */
int qesd_bus_ready(qesd_bus *bus);

/* The hub's session events: a device became live here / its session
 * ended (subscribe, unsubscribe). Session ids tell a replaced session's
 * late close from the current one's. On open, an older session of the
 * device on another replica (connected before connected_ms) is closed
 * there with 4003, as the hub does on one replica. */
void qesd_bus_device_open(qesd_bus *bus, const char *tenant_id,
    const char *device_id, const char *session_id, int64_t connected_ms);
void qesd_bus_device_closed(qesd_bus *bus, const char *tenant_id,
    const char *device_id, const char *session_id);

/*
 * qesd_hub_send()'s contract wherever the device is: 0 queued (here or by
 * its holder), QES_ERR_NOT_FOUND offline (no holder answered: no
 * responders, timeout, the bus down), QES_ERR_LIMIT the holder's send
 * queue is full, QES_ERR_INVALID_ARG.
 */
int qesd_bus_send(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len);
/* qesd_hub_is_live() wherever the device is: 1 and the session id. */
int qesd_bus_is_live(qesd_bus *bus, const char *tenant_id,
    const char *device_id, char session_id_out[QESD_ID_SIZE]);
/* qesd_hub_close_device() wherever the device is (revocation). */
int qesd_bus_close_device(qesd_bus *bus, const char *tenant_id,
    const char *device_id, int close_code, const char *reason);

/* A job changed: wake its long-poll waiters on the other replicas (the
 * local ones are woken by qesd_jobs_changed itself). */
void qesd_bus_job_changed(qesd_bus *bus, const char *tenant_id,
    const char *job_id);

/*
 * Ask the holder of device_id to diagnose it (diagnostics.h): the answer
 * comes later through qesd_diag_remote_result() with ref, the id of the
 * wait qesd_diag_start_remote() registered. 0 sent; QES_ERR_NOT_FOUND
 * when the bus cannot carry it (local bus, NATS down).
 */
int qesd_bus_diagnose(qesd_bus *bus, const char *tenant_id,
    const char *device_id, const char *ref);

#endif
