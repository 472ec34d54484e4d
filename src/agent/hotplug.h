/*
 * hotplug.h - notice tokens being inserted and removed.
 *
 * A watcher thread looks at every working module of a qes_p11 and calls back
 * with a fresh inventory (qes_p11_scan) whenever the set of (module, token
 * serial) changes: once at start, then after every insertion or removal.
 * The agent sends that inventory to qesd (the design's "inventory is
 * refreshed on token insertion/removal").
 *
 * How each module is watched (agent_hotplug_mode):
 *   EVENTS  C_WaitForSlotEvent(CKF_DONT_BLOCK) on every tick; the slot list
 *           is read when an event arrives, and every verify_interval_ms
 *           anyway. A module whose slot list changes without an event is
 *           moved to POLL (some modules answer CKR_NO_EVENT but never
 *           report anything).
 *   POLL    the slot list and token serials are read every tick. Modules
 *           that only learn about new tokens at C_Initialize are
 *           re-initialised (C_Finalize + C_Initialize) every
 *           reinit_interval_ms, but only while nothing else in the process
 *           uses the modules (the gate below).
 * The blocking form of C_WaitForSlotEvent is never used: it cannot be
 * interrupted short of C_Finalize, so the watcher could not stop cleanly.
 *
 * SoftHSM2 2.6.1 (the test token) is such a module: CKR_NO_EVENT to every
 * non-blocking call, CKR_FUNCTION_NOT_SUPPORTED to a blocking one; a token
 * directory deleted from its store is seen at once (C_GetTokenInfo fails on
 * that slot), but a directory added (or put back) is only seen after
 * C_Finalize + C_Initialize. It is therefore watched in POLL mode from the
 * start.
 *
 * The gate: any other thread that uses the qes_p11's modules (a scan, a
 * signing session from open to free) brackets that use with
 * agent_hotplug_enter()/agent_hotplug_leave(). Any number of such users may
 * run at once; a re-initialisation waits until there are none, and is
 * skipped (tried on the next tick) rather than ever making them wait. The
 * agent process must be the modules' only user: nothing outside the gate
 * may hold a session across a re-initialisation.
 */
#ifndef QES_AGENT_HOTPLUG_H
#define QES_AGENT_HOTPLUG_H

#include <stddef.h>

#include "qes/p11.h"

typedef enum agent_hotplug_mode {
	AGENT_HOTPLUG_OFF = 0,		/* the module did not load: not watched */
	AGENT_HOTPLUG_EVENTS = 1,
	AGENT_HOTPLUG_POLL = 2,
} agent_hotplug_mode;

typedef struct agent_hotplug_opts {
	unsigned poll_interval_ms;	/* one tick; 0: 1000 */
	unsigned verify_interval_ms;	/* EVENTS: read the slots anyway; 0: 10000 */
	unsigned reinit_interval_ms;	/* POLL: re-initialise when idle; 0: 5000 */
	int no_reinit;			/* never re-initialise a module */
} agent_hotplug_opts;

/*
 * Called on the watcher thread; the callback owns inv (free it with
 * qes_p11_inventory_free). It must return quickly (hand the inventory to
 * the agent's loop) and must not call agent_hotplug_stop().
 */
typedef void (*agent_hotplug_cb)(void *arg, qes_p11_inventory *inv);

typedef struct agent_hotplug agent_hotplug;

/*
 * Start watching the modules p has loaded now (p is borrowed and must
 * outlive the watcher). opts may be NULL. The first callback, with the
 * inventory at start, comes from the watcher thread shortly after.
 */
int agent_hotplug_start(qes_p11 *p, const agent_hotplug_opts *opts,
    agent_hotplug_cb cb, void *arg, agent_hotplug **out);
/* Stop and join the thread, release everything. NULL is a no-op. */
void agent_hotplug_stop(agent_hotplug *h);

/* The gate (see the top of this file). h NULL: no-op. */
void agent_hotplug_enter(agent_hotplug *h);
void agent_hotplug_leave(agent_hotplug *h);

/* How module_index is watched (for diagnostics and tests). */
agent_hotplug_mode agent_hotplug_module_mode(agent_hotplug *h,
    size_t module_index);

typedef struct agent_hotplug_stats {
	unsigned long ticks;
	unsigned long scans;		/* inventories handed to the callback */
	unsigned long reinits;		/* C_Finalize + C_Initialize done */
	unsigned long reinits_deferred;	/* skipped: the gate was in use */
	unsigned long downgrades;	/* EVENTS modules moved to POLL */
} agent_hotplug_stats;

void agent_hotplug_get_stats(agent_hotplug *h, agent_hotplug_stats *out);

#endif
