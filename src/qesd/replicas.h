/*
 * replicas.h - failover between qesd replicas that share a store: this
 * replica's heartbeat, and the reaper that ends what a lost replica left.
 *
 * Every replica writes one row in the store every replica_heartbeat_s
 * (its name, when this process started, when it last beat: one small
 * write, not one per session). A replica killed with SIGKILL, or cut off
 * from the store, stops beating; once its beat is older than
 * replica_dead_after_s, any other replica closes its open device sessions
 * in the store (reason "replica_lost", audit record device.session_closed)
 * by compare-and-set, so two reapers close each session once, and hands
 * each closed session to session_reaped: the hub fails its open jobs
 * (device_disconnected) through the jobs service. The agents themselves
 * noticed the dead socket and reconnect to another replica.
 *
 * A reaper reaps only after its own beats have gone through without a gap
 * for replica_dead_after_s: after an outage of the store, every live
 * replica gets the time to beat again before anybody is declared gone. If
 * a live replica is reaped anyway (its beats were late), its next beat
 * learns it and self_reaped tells the hub to make its agents reconnect, so
 * each gets a fresh session row.
 *
 * The reaper also ends the jobs still at the device of a session closed
 * more than 30 s ago (the process that closed it died before failing them),
 * through the same session_reaped.
 *
 * Threads: one thread of its own (qesd_replicas_start), never the event
 * loop; callbacks run on it. Tests call beat and reap themselves.
 */
#ifndef QESD_REPLICAS_H
#define QESD_REPLICAS_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "config.h"
#include "store_devices.h"

typedef struct qesd_replicas qesd_replicas;

typedef struct qesd_replicas_config {
	const char *replica;		/* this process's name (copied) */
	unsigned heartbeat_s;		/* beat period, >= 1 */
	unsigned dead_after_s;		/* > 2 * heartbeat_s */
	/* a lost replica's session is closed in the store; its jobs must end */
	void (*session_reaped)(void *ctx, const char *tenant_id,
	    const char *device_id, const char *session_id);
	/* another replica declared this process gone: reconnect every agent */
	void (*self_reaped)(void *ctx);
	void *ctx;
} qesd_replicas_config;

/* The reason word of a session a reaper closed. */
#define QESD_REASON_REPLICA_LOST "replica_lost"

/* A session whose replica left no heartbeat row at all is gone once it
 * was not seen for this long (the hub writes last_seen_at every 30 s). */
#define QESD_REPLICA_ORPHAN_AFTER_MS (120 * 1000)

/*
 * This process's replica name: replica_name, else the host name (else
 * "qesd"); printable ASCII without blanks, at most QESD_REPLICA_MAX bytes
 * (QES_ERR_INVALID_ARG with err saying why).
 */
int qesd_replica_name(const qesd_config *cfg, char out[QESD_REPLICA_MAX + 1],
    char *err, size_t errlen);

/* The heartbeat row of a replica gone this long, with no open session
 * left, is dropped by the reaper. */
#define QESD_REPLICA_FORGET_AFTER_MS (7LL * 24 * 3600 * 1000)

/* app is borrowed (store, clock). Starts nothing. */
int qesd_replicas_new(qesd_app *app, const qesd_replicas_config *c,
    qesd_replicas **out);
/* Stop the thread (if started) and free. NULL: no-op. */
void qesd_replicas_free(qesd_replicas *r);
/* This process's start time (wall clock ms), written with every beat. */
int64_t qesd_replicas_started_at(const qesd_replicas *r);

/* One beat now; self_reaped runs when this process had been reaped. */
int qesd_replicas_beat(qesd_replicas *r);
/*
 * Close the open sessions of lost replicas, when this replica's own beats
 * have been steady for dead_after_s (else nothing: *closed 0). *closed
 * (optional): how many this call closed.
 */
int qesd_replicas_reap(qesd_replicas *r, size_t *closed);
/* The thread: beat every heartbeat_s, then reap. */
int qesd_replicas_start(qesd_replicas *r);

#endif
