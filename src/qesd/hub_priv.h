/*
 * hub_priv.h - the shared inside of the hub: hub.c (registry, send queues,
 * per-session event actors, store work) and hub_ws.c (the qes.v1
 * WebSocket endpoint on the loop thread).
 *
 * Threads and ownership. One struct hub_sess per agent connection, made
 * when the WebSocket is established. Fields are grouped by who may touch
 * them:
 *   LOOP  only the libwebsockets loop thread (hub_ws.c, task done
 *         functions); no lock
 *   MU    under hub->mu, from any thread
 *   FIXED written on the loop before the session is published (in the
 *         registry or to a task), read-only afterwards
 * A session is freed when its last reference goes (hub_sess_unref): the
 * connection holds one until LWS_CALLBACK_CLOSED, each queued task one, the
 * wake list one. So a worker's event actor, a late qesd_hub_send() or a
 * task finishing after the peer left never touch freed memory.
 *
 * Lock order: hub->mu, then the server's mutex (qesd_server_task takes it);
 * never the other way round - the server calls into the hub only from the
 * loop thread without holding its own lock.
 */
#ifndef QESD_HUB_PRIV_H
#define QESD_HUB_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/proto.h"
#include "app.h"
#include "hub.h"
#include "replicas.h"
#include "server.h"
#include "store_devices.h"

#define HUB_BUCKETS		256
#define HUB_OUT_MAX_FRAMES	256		/* per session send queue */
#define HUB_OUT_MAX_BYTES	(16u << 20)
#define HUB_EV_PAUSE		32		/* events waiting: stop reading */
#define HUB_MAX_PENDING_AUTH	1024		/* connections not authenticated */
#define HUB_REVOKED_MAX		1024		/* recent revocations remembered */
#define HUB_NONCES		4096		/* recent nonces remembered */
#define HUB_SEEN_INTERVAL_MS	30000		/* last_seen_at write period */
#define HUB_NONCE_PREFIX		16		/* nonce bytes compared */

enum hub_state {
	HS_HELLO = 0,		/* waiting for hello */
	HS_AUTH,		/* challenge sent, waiting for auth */
	HS_AUTHING,		/* auth on a worker */
	HS_LIVE,		/* authenticated, registered */
	HS_CLOSING,		/* close decided, waiting for the socket to go */
};

enum hub_ev_kind {
	EV_OPEN = 1,		/* tell the application: session_open */
	EV_MESSAGE,		/* inventory (stored first), others passed on */
	EV_CLOSED,		/* close the row, audit, tell the application */
};

struct hub_ev {
	struct hub_ev *next;
	enum hub_ev_kind kind;
	qes_proto_msg *msg;			/* EV_MESSAGE, owned */
	int64_t time_ms;			/* wall clock (qesd_now_ms) */
	int64_t last_seen_ms;			/* EV_CLOSED */
	char reason[QESD_REASON_MAX];		/* EV_CLOSED */
	char detail[200];			/* EV_CLOSED: protocol error text */
	int notify;				/* EV_CLOSED: the application saw open */
};

struct hub_frame {
	struct hub_frame *next;
	size_t len;
	uint8_t data[];				/* LWS_PRE + len bytes */
};

struct hub_sess {
	qesd_hub *hub;
	/* FIXED (identity; device and tenant once authenticated) */
	char session_id[QESD_ID_SIZE];
	char tenant_id[QESD_ID_SIZE];
	char device_id[QESD_ID_SIZE];
	char agent_version[QESD_AGENT_VERSION_MAX + 1];
	char os[QESD_OS_MAX + 1];
	char client_addr[QESD_ADDR_TEXT_MAX];
	int64_t connected_ms;

	/* LOOP */
	struct lws *wsi;			/* NULL once closed */
	struct hub_sess *lprev, *lnext;		/* hub->conns */
	enum hub_state state;
	uint8_t nonce[QES_PROTO_NONCE_LEN];
	int nonce_set;
	char claimed_device[QESD_ID_SIZE];	/* hello's, until auth proves it */
	int64_t auth_deadline_mono;
	int64_t last_rx_mono;
	int64_t next_ping_mono;
	int ping_due;
	int64_t last_seen_ms;			/* wall time of the last frame */
	int64_t last_seen_written_ms;
	qes_buf *rx;				/* a message being reassembled */
	int rx_paused;
	int pending;				/* counted in n_pending_auth */
	int authed;				/* the session row exists */
	int opened;				/* EV_OPEN queued */
	int peer_closed;
	char reason[QESD_REASON_MAX];		/* why it closes ("" unknown) */
	char detail[200];			/* protocol error text */
	int drain_checking;			/* drain: a busy check is on a worker */

	/* MU */
	int refs;
	int registered;				/* in the device map */
	struct hub_sess *hnext;			/* device map chain */
	int in_wake;
	struct hub_sess *wnext;			/* wake list */
	struct hub_frame *out_head, *out_tail;
	size_t out_n, out_bytes;
	int close_code;				/* requested from any thread; 0 none */
	char close_text[124];
	char close_reason[QESD_REASON_MAX];
	struct hub_ev *ev_head, *ev_tail;
	size_t ev_n;
	int actor_busy;
};

struct qesd_hub {
	qesd_app *app;
	const qesd_config *cfg;
	char server_name[QES_PROTO_HOST_MAX + 1];
	char replica[QESD_REPLICA_MAX + 1];
	qesd_hub_events events;			/* set before serving */
	unsigned heartbeat_s;			/* auth_ok.heartbeat_s */

	pthread_mutex_t mu;
	qesd_server *srv;			/* MU: NULL when detached */
	struct hub_sess *devices[HUB_BUCKETS];	/* MU: registered sessions */
	struct hub_sess *wake_head;		/* MU */
	struct {
		char tenant_id[QESD_ID_SIZE];
		char device_id[QESD_ID_SIZE];
	} revoked[HUB_REVOKED_MAX];		/* MU: ring */
	size_t revoked_next;			/* MU */
	int refuse_jobs;			/* MU: draining, no device is live */
	qesd_replicas *replicas;		/* heartbeat and reaper (recover) */

	/* LOOP */
	struct hub_sess *conns;			/* every connection */
	size_t n_conns, n_pending_auth;
	uint8_t nonces[HUB_NONCES][HUB_NONCE_PREFIX];
	size_t nonce_next, n_nonces;
	int64_t next_housekeeping_mono;
	int64_t next_seen_flush_mono;
	int draining;
	int64_t drain_close_by_mono;		/* sessions with jobs close then */
	int64_t next_drain_check_mono;
};

/* ---- hub.c, for hub_ws.c ---- */

void hub_sess_ref(struct hub_sess *s);			/* takes mu */
void hub_sess_unref(struct hub_sess *s);		/* takes mu */
void hub_sess_ref_locked(struct hub_sess *s);
/* Drop a reference under mu; returns the session when the caller must free
 * it (after unlocking) with hub_sess_free. */
struct hub_sess *hub_sess_unref_locked(struct hub_sess *s);
void hub_sess_free(struct hub_sess *s);

/* Queue a frame (copied) on s; any thread. QES_ERR_LIMIT when full. */
int hub_queue_frame(struct hub_sess *s, const uint8_t *data, size_t len);
/* Ask the loop to close s with code/text; reason is the stored word.
 * First request wins. Unregisters s. Caller holds mu. */
void hub_request_close_locked(struct hub_sess *s, int code, const char *detail,
    const char *reason);
/* Put s on the wake list (caller holds mu) and wake the loop (after
 * unlocking: hub_wake). */
void hub_wake_locked(struct hub_sess *s);
void hub_wake(qesd_hub *hub);

/* Register a freshly authenticated session (replacing an older one of the
 * same device: closed with 4003). QES_ERR_CONFLICT when the device was
 * revoked meanwhile. Loop thread. */
int hub_register(struct hub_sess *s);
void hub_unregister_locked(struct hub_sess *s);

/* Hand an event to the session's actor (ownership of ev moves). */
void hub_post(struct hub_sess *s, struct hub_ev *ev);

/* The authentication on a worker, then back on the loop (hub_ws.c gets
 * the result through hub_ws_auth_done). */
struct hub_auth {
	struct hub_sess *sess;			/* a reference */
	char device_id[QESD_ID_SIZE];
	uint8_t nonce[QES_PROTO_NONCE_LEN];
	uint8_t sig[QES_PROTO_AUTH_SIG_MAX];
	size_t sig_len;
	int64_t now_ms;
	/* results */
	int ok;
	const char *fail_reason;		/* static: unknown_device, revoked,
						 * bad_signature, device_mismatch,
						 * store_error */
	char tenant_id[QESD_ID_SIZE];
};
int hub_start_auth(struct hub_auth *a);
void hub_ws_auth_done(struct hub_auth *a, int cancelled);	/* hub_ws.c */

/* Run work then done on a worker (or inline when the workers are gone). */
void hub_run_task(qesd_hub *hub, qesd_task_fn work, qesd_task_done_fn done,
    void *arg);

/* last_seen_at for a batch of sessions, written on a worker. */
int hub_flush_seen(qesd_hub *hub, qesd_session_seen *seen, size_t n);

/*
 * Drain: is a job still at the device of s (a job not final sent on this
 * session)? Runs the store query on a worker, then hub_ws_drain_checked
 * on the loop with the answer (busy 1, 0, or 0 when the store failed: the
 * job then fails gateway_restart with the close).
 */
void hub_drain_check(struct hub_sess *s);
void hub_ws_drain_checked(struct hub_sess *s, int busy);	/* hub_ws.c */

/* The loop-side close bookkeeping (hub_ws.c), at LWS_CALLBACK_CLOSED. */
void hub_ws_closed(struct hub_sess *s);
/* An actor task of s finished (loop): reading may resume. */
void hub_ws_actor_done(struct hub_sess *s);

#endif
