/*
 * hub.c - the live device sessions of this process (hub.h): who is
 * connected, the bounded send queue of each session, and the work a
 * session causes in the store, run on the server's workers.
 *
 * The WebSocket side (hub_ws.c) owns the connections on the loop thread;
 * this file is what any thread may call. hub_priv.h explains the threads,
 * the locking and the references that keep a session alive.
 *
 * Store calls never run on the loop. A session's events (opened, a message,
 * closed) go to a small per-session actor: a queue drained by one task at a
 * time on a worker (qesd_server_task), so one session's inventory write,
 * its messages to the application and its close happen in order, while
 * different sessions proceed in parallel. Authentication is one task too:
 * the device lookup, the signature check and the session row with its audit
 * record, then back to the loop to go live (hub_ws_auth_done).
 *
 * Revocation races. A device revoked while its authentication is on a
 * worker cannot slip through: the session row is inserted by a statement
 * that requires the device not to be revoked, in a write transaction that
 * the revocation's own transaction is serialised with; and a revocation
 * that commits after it is remembered here (qesd_hub_close_device with the
 * revoked code), so the registration that follows refuses the session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qes/err.h"
#include "bus.h"
#include "devices.h"
#include "hub.h"
#include "hub_priv.h"
#include "log.h"
#include "replicas.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"

#define LWS_PRE_BYTES 16	/* matches LWS_PRE; checked in hub_ws.c */
#define CLOSE_RETRIES 3
#define HUB_REPLACE_SCAN 16	/* a device's newest sessions looked at */

/* ---- references ---- */

void
hub_sess_ref_locked(struct hub_sess *s)
{
	s->refs++;
}

void
hub_sess_ref(struct hub_sess *s)
{
	pthread_mutex_lock(&s->hub->mu);
	s->refs++;
	pthread_mutex_unlock(&s->hub->mu);
}

struct hub_sess *
hub_sess_unref_locked(struct hub_sess *s)
{
	return --s->refs == 0 ? s : NULL;
}

void
hub_sess_free(struct hub_sess *s)
{
	struct hub_frame *f, *fn;
	struct hub_ev *e, *en;

	if (s == NULL)
		return;
	for (f = s->out_head; f != NULL; f = fn) {
		fn = f->next;
		free(f);
	}
	for (e = s->ev_head; e != NULL; e = en) {
		en = e->next;
		qes_proto_msg_free(e->msg);
		free(e);
	}
	qes_buf_free(s->rx);
	qes_wipe(s->nonce, sizeof(s->nonce));
	free(s);
}

void
hub_sess_unref(struct hub_sess *s)
{
	struct hub_sess *dead;

	pthread_mutex_lock(&s->hub->mu);
	dead = hub_sess_unref_locked(s);
	pthread_mutex_unlock(&s->hub->mu);
	hub_sess_free(dead);
}

/* ---- the device map ---- */

static size_t
bucket_of(const char *device_id)
{
	size_t h = 5381;

	for (; *device_id != '\0'; device_id++)
		h = h * 33 + (unsigned char)*device_id;
	return h % HUB_BUCKETS;
}

static struct hub_sess *
find_locked(qesd_hub *hub, const char *tenant_id, const char *device_id)
{
	struct hub_sess *s;

	if (tenant_id == NULL || device_id == NULL)
		return NULL;
	for (s = hub->devices[bucket_of(device_id)]; s != NULL; s = s->hnext)
		if (strcmp(s->device_id, device_id) == 0)
			/* another tenant's device is "not here" */
			return strcmp(s->tenant_id, tenant_id) == 0 ? s : NULL;
	return NULL;
}

void
hub_unregister_locked(struct hub_sess *s)
{
	struct hub_sess **pp;

	if (!s->registered)
		return;
	for (pp = &s->hub->devices[bucket_of(s->device_id)]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	s->hnext = NULL;
	s->registered = 0;
	(void)hub_sess_unref_locked(s);	/* the map's; the connection keeps one */
}

static int
revoked_locked(qesd_hub *hub, const char *tenant_id, const char *device_id)
{
	size_t i;

	for (i = 0; i < HUB_REVOKED_MAX; i++)
		if (strcmp(hub->revoked[i].device_id, device_id) == 0 &&
		    strcmp(hub->revoked[i].tenant_id, tenant_id) == 0)
			return 1;
	return 0;
}

int
hub_register(struct hub_sess *s)
{
	qesd_hub *hub = s->hub;
	struct hub_sess *old;
	size_t b = bucket_of(s->device_id);

	pthread_mutex_lock(&hub->mu);
	if (revoked_locked(hub, s->tenant_id, s->device_id)) {
		pthread_mutex_unlock(&hub->mu);
		return QES_ERR_CONFLICT;
	}
	for (old = hub->devices[b]; old != NULL; old = old->hnext)
		if (strcmp(old->device_id, s->device_id) == 0)
			break;
	if (old != NULL) {
		/* the newer session wins: the agent reconnected */
		hub_request_close_locked(old, QES_PROTO_CLOSE_REPLACED,
		    "a newer session of this device took over", "replaced");
		hub_wake_locked(old);
	}
	s->hnext = hub->devices[b];
	hub->devices[b] = s;
	s->registered = 1;
	hub_sess_ref_locked(s);
	pthread_mutex_unlock(&hub->mu);
	if (old != NULL)
		hub_wake(hub);
	return 0;
}

/* ---- waking the loop ---- */

void
hub_wake_locked(struct hub_sess *s)
{
	if (s->in_wake)
		return;
	s->in_wake = 1;
	hub_sess_ref_locked(s);
	s->wnext = s->hub->wake_head;
	s->hub->wake_head = s;
}

void
hub_wake(qesd_hub *hub)
{
	pthread_mutex_lock(&hub->mu);
	/* under mu: detach cannot free the context meanwhile */
	if (hub->srv != NULL)
		qesd_server_wake(hub->srv);
	pthread_mutex_unlock(&hub->mu);
}

void
hub_request_close_locked(struct hub_sess *s, int code, const char *detail,
    const char *reason)
{
	hub_unregister_locked(s);
	if (s->close_code != 0)
		return;		/* the first reason stands */
	s->close_code = code;
	qes_proto_close_text(code, detail, s->close_text);
	snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
}

/* ---- sending ---- */

static int
queue_frame_locked(struct hub_sess *s, const uint8_t *data, size_t len)
{
	struct hub_frame *f;

	if (s->out_n >= HUB_OUT_MAX_FRAMES ||
	    s->out_bytes + len > HUB_OUT_MAX_BYTES)
		return QES_ERR_LIMIT;
	if ((f = malloc(sizeof(*f) + LWS_PRE_BYTES + len)) == NULL)
		return QES_ERR_ALLOC;
	f->next = NULL;
	f->len = len;
	memcpy(f->data + LWS_PRE_BYTES, data, len);
	if (s->out_tail != NULL)
		s->out_tail->next = f;
	else
		s->out_head = f;
	s->out_tail = f;
	s->out_n++;
	s->out_bytes += len;
	return 0;
}

int
hub_queue_frame(struct hub_sess *s, const uint8_t *data, size_t len)
{
	int r;

	pthread_mutex_lock(&s->hub->mu);
	r = queue_frame_locked(s, data, len);
	pthread_mutex_unlock(&s->hub->mu);
	return r;
}

int
qesd_hub_send(qesd_hub *hub, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	struct hub_sess *s;
	int r;

	if (hub == NULL || frame == NULL || len == 0 || len > QES_PROTO_MAX_BYTES)
		return QES_ERR_INVALID_ARG;
	pthread_mutex_lock(&hub->mu);
	if ((s = find_locked(hub, tenant_id, device_id)) == NULL) {
		pthread_mutex_unlock(&hub->mu);
		return QES_ERR_NOT_FOUND;
	}
	if ((r = queue_frame_locked(s, frame, len)) == 0)
		hub_wake_locked(s);
	if (r == 0 && hub->srv != NULL)
		qesd_server_wake(hub->srv);
	pthread_mutex_unlock(&hub->mu);
	if (r == QES_ERR_LIMIT)
		qesd_log(QESD_LOG_WARN,
		    "device send queue full: the agent does not read fast enough",
		    QLS("tenant", tenant_id), QLS("device_id", device_id));
	return r;
}

int
qesd_hub_is_live(qesd_hub *hub, const char *tenant_id, const char *device_id,
    char session_id_out[QESD_ID_SIZE])
{
	struct hub_sess *s;
	int live = 0;

	if (hub == NULL)
		return 0;
	pthread_mutex_lock(&hub->mu);
	/* draining: no new job goes to a device here */
	if (!hub->refuse_jobs &&
	    (s = find_locked(hub, tenant_id, device_id)) != NULL) {
		live = 1;
		if (session_id_out != NULL)
			memcpy(session_id_out, s->session_id, QESD_ID_SIZE);
	}
	pthread_mutex_unlock(&hub->mu);
	return live;
}

int
qesd_hub_close_device(qesd_hub *hub, const char *tenant_id,
    const char *device_id, int close_code, const char *reason)
{
	struct hub_sess *s;
	const char *word;
	size_t i;

	if (hub == NULL || tenant_id == NULL || device_id == NULL ||
	    strlen(tenant_id) >= QESD_ID_SIZE || strlen(device_id) >= QESD_ID_SIZE)
		return QES_ERR_INVALID_ARG;
	word = close_code == QES_PROTO_CLOSE_DEVICE_REVOKED ? "revoked" :
	    close_code == QES_PROTO_CLOSE_REPLACED ? "replaced" :
	    close_code == QES_PROTO_CLOSE_SERVER_DRAINING ? "server_draining" :
	    "closed_by_server";
	pthread_mutex_lock(&hub->mu);
	if (close_code == QES_PROTO_CLOSE_DEVICE_REVOKED) {
		/* an authentication still on a worker must not go live later */
		i = hub->revoked_next++ % HUB_REVOKED_MAX;
		snprintf(hub->revoked[i].tenant_id, QESD_ID_SIZE, "%s", tenant_id);
		snprintf(hub->revoked[i].device_id, QESD_ID_SIZE, "%s", device_id);
	}
	if ((s = find_locked(hub, tenant_id, device_id)) == NULL) {
		pthread_mutex_unlock(&hub->mu);
		return QES_ERR_NOT_FOUND;
	}
	hub_request_close_locked(s, close_code, reason, word);
	hub_wake_locked(s);
	if (hub->srv != NULL)
		qesd_server_wake(hub->srv);
	pthread_mutex_unlock(&hub->mu);
	return 0;
}

int
qesd_hub_close_older(qesd_hub *hub, const char *tenant_id,
    const char *device_id, const char *keep_session_id, int64_t newer_ms)
{
	struct hub_sess *s;

	if (hub == NULL || tenant_id == NULL || device_id == NULL ||
	    keep_session_id == NULL)
		return QES_ERR_INVALID_ARG;
	pthread_mutex_lock(&hub->mu);
	s = find_locked(hub, tenant_id, device_id);
	if (s == NULL || strcmp(s->session_id, keep_session_id) == 0 ||
	    s->connected_ms >= newer_ms) {
		pthread_mutex_unlock(&hub->mu);
		return QES_ERR_NOT_FOUND;
	}
	hub_request_close_locked(s, QES_PROTO_CLOSE_REPLACED,
	    "a newer session of this device opened on another replica",
	    "replaced");
	hub_wake_locked(s);
	if (hub->srv != NULL)
		qesd_server_wake(hub->srv);
	pthread_mutex_unlock(&hub->mu);
	return 0;
}

/* ---- tasks ---- */

void
hub_run_task(qesd_hub *hub, qesd_task_fn work, qesd_task_done_fn done,
    void *arg)
{
	qesd_server *srv;

	pthread_mutex_lock(&hub->mu);
	srv = hub->srv;
	pthread_mutex_unlock(&hub->mu);
	if (srv != NULL && qesd_server_task(srv, work, done, arg) == 0)
		return;
	/* shutting down (or out of memory): do it here, now */
	work(arg);
	done(arg, 1);
}

/* ---- audit ---- */

/* Append one record of the device channel in tx; details is stolen. */
static int
audit(qesd_tx *tx, const char *tenant_id, const char *type,
    const char *device_id, const char *client_addr, int64_t now_ms,
    json_t *details)
{
	qesd_audit_event ev;
	char *text = NULL;
	int r;

	if (details != NULL &&
	    (text = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		json_decref(details);
		return QES_ERR_ALLOC;
	}
	json_decref(details);
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = now_ms;
	ev.type = type;
	ev.device_id = device_id;
	ev.client_addr = client_addr != NULL && client_addr[0] != '\0' ?
	    client_addr : NULL;
	ev.details = text;
	r = qesd_audit_append(tx, tenant_id, &ev, NULL);
	free(text);
	return r;
}

/* ---- the session actor ---- */

static void
ev_open(struct hub_sess *s)
{
	qesd_hub *hub = s->hub;

	/* the other replicas reach the device through this one from now */
	qesd_bus_device_open(hub->app->bus, s->tenant_id, s->device_id,
	    s->session_id, s->connected_ms);
	if (hub->events.session_open != NULL)
		hub->events.session_open(hub->events.app, s->tenant_id,
		    s->device_id, s->session_id);
}

static void
ev_message(struct hub_sess *s, struct hub_ev *ev)
{
	qesd_hub *hub = s->hub;
	int changed = 0, r;

	if (ev->msg->type == QES_PROTO_INVENTORY) {
		r = qesd_devices_store_inventory(hub->app->store, s->tenant_id,
		    s->device_id, s->session_id, ev->msg, ev->time_ms, &changed);
		qesd_log(r == 0 ? QESD_LOG_INFO : QESD_LOG_WARN,
		    r == 0 ? "inventory stored" : "inventory not stored",
		    QLS("tenant", s->tenant_id), QLS("device_id", s->device_id),
		    QLS("session_id", s->session_id), QLI("changed", changed),
		    QLS("error", r == 0 ? NULL : qes_strerror(r)));
	}
	if (hub->events.message != NULL)
		hub->events.message(hub->events.app, s->tenant_id, s->device_id,
		    s->session_id, ev->msg);
}

static int
close_row(struct hub_sess *s, const struct hub_ev *ev)
{
	qesd_hub *hub = s->hub;
	qesd_tx *tx = NULL;
	int r;

	if ((r = qesd_store_begin(hub->app->store, QESD_TX_WRITE, &tx)) != 0)
		goto out;
	r = qesd_session_close(tx, s->tenant_id, s->session_id,
	    ev->last_seen_ms, ev->time_ms, ev->reason);
	if (r == QES_ERR_NOT_FOUND) {
		r = 0;		/* closed already (by a start-up clean-up) */
		goto out;
	}
	if (r != 0)
		goto out;
	if (ev->detail[0] != '\0' && (r = audit(tx, s->tenant_id,
	    "device.protocol_error", s->device_id, s->client_addr, ev->time_ms,
	    json_pack("{s:s, s:s}", "session_id", s->session_id,
	    "error", ev->detail))) != 0)
		goto out;
	if ((r = audit(tx, s->tenant_id, "device.session_closed", s->device_id,
	    s->client_addr, ev->time_ms, json_pack("{s:s, s:s}", "session_id",
	    s->session_id, "reason", ev->reason))) != 0)
		goto out;
	r = qesd_tx_commit(tx);
 out:
	if (r != 0)
		qesd_log(QESD_LOG_WARN, "device session close not recorded",
		    QLS("tenant", s->tenant_id), QLS("device_id", s->device_id),
		    QLS("session_id", s->session_id), QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	return r;
}

static void
ev_closed(struct hub_sess *s, struct hub_ev *ev)
{
	qesd_hub *hub = s->hub;
	int i, r = 0;

	/* first: a request from another replica now finds no responder */
	if (ev->notify)
		qesd_bus_device_closed(hub->app->bus, s->tenant_id, s->device_id,
		    s->session_id);
	for (i = 0; i < CLOSE_RETRIES; i++) {
		if ((r = close_row(s, ev)) != QES_ERR_BUSY &&
		    r != QES_ERR_UNAVAILABLE)
			break;
		usleep(100000);
	}
	qesd_log(QESD_LOG_INFO, "device session closed",
	    QLS("tenant", s->tenant_id), QLS("device_id", s->device_id),
	    QLS("session_id", s->session_id), QLS("reason", ev->reason),
	    QLS("client", s->client_addr));
	if (ev->notify && hub->events.session_closed != NULL)
		hub->events.session_closed(hub->events.app, s->tenant_id,
		    s->device_id, s->session_id, ev->reason);
}

static void
actor_work(void *arg)
{
	struct hub_sess *s = arg;
	qesd_hub *hub = s->hub;
	struct hub_ev *ev;

	for (;;) {
		pthread_mutex_lock(&hub->mu);
		if ((ev = s->ev_head) == NULL) {
			s->actor_busy = 0;
			pthread_mutex_unlock(&hub->mu);
			return;
		}
		s->ev_head = ev->next;
		if (s->ev_head == NULL)
			s->ev_tail = NULL;
		s->ev_n--;
		pthread_mutex_unlock(&hub->mu);
		switch (ev->kind) {
		case EV_OPEN:
			ev_open(s);
			break;
		case EV_MESSAGE:
			ev_message(s, ev);
			break;
		case EV_CLOSED:
			ev_closed(s, ev);
			break;
		}
		qes_proto_msg_free(ev->msg);
		free(ev);
	}
}

static void
actor_done(void *arg, int cancelled)
{
	struct hub_sess *s = arg;

	if (!cancelled)
		hub_ws_actor_done(s);
	hub_sess_unref(s);
}

void
hub_post(struct hub_sess *s, struct hub_ev *ev)
{
	qesd_hub *hub = s->hub;
	int start;

	ev->next = NULL;
	pthread_mutex_lock(&hub->mu);
	if (s->ev_tail != NULL)
		s->ev_tail->next = ev;
	else
		s->ev_head = ev;
	s->ev_tail = ev;
	s->ev_n++;
	if ((start = !s->actor_busy)) {
		s->actor_busy = 1;
		hub_sess_ref_locked(s);
	}
	pthread_mutex_unlock(&hub->mu);
	if (start)
		hub_run_task(hub, actor_work, actor_done, s);
}

/* ---- authentication ---- */

static int
verify_device_sig(const qesd_device *d, const struct hub_auth *a,
    const struct hub_sess *s, const char *server_name)
{
	const unsigned char *p = d->public_key;
	EVP_PKEY *key;
	int r;

	if ((key = d2i_PUBKEY(NULL, &p, (long)d->public_key_len)) == NULL) {
		ERR_clear_error();
		return QES_ERR_FORMAT;
	}
	r = qes_proto_auth_verify(key, a->nonce, a->device_id, server_name,
	    s->session_id, a->sig, a->sig_len);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return r;
}

/*
 * The device reconnected here while a session of it on another replica is
 * still open in the store (that replica died, or the agent left it without
 * a close): the new session wins now, without waiting for the reaper. Each
 * such row closes as "replaced" with its audit record, and its open jobs
 * fail (device_disconnected) through the application's session_closed. A
 * session of this replica is hub_register's to replace.
 */
static void
replace_elsewhere(struct hub_sess *s, const char *tenant_id,
    const char *device_id, int64_t now_ms)
{
	qesd_hub *hub = s->hub;
	qesd_device_session *v = NULL;
	qesd_tx *tx = NULL;
	char next[QESD_CURSOR_SIZE];
	size_t n = 0, i;
	int r;

	if ((r = qesd_store_begin(hub->app->store, QESD_TX_READ, &tx)) == 0)
		r = qesd_session_list(tx, tenant_id, device_id, NULL,
		    HUB_REPLACE_SCAN, &v, &n, next);
	qesd_tx_end(tx);
	tx = NULL;
	if (r != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (v[i].closed_at_ms != 0 || strcmp(v[i].id, s->session_id) == 0 ||
		    strcmp(v[i].replica, hub->replica) == 0)
			continue;
		if ((r = qesd_store_begin(hub->app->store, QESD_TX_WRITE,
		    &tx)) != 0)
			goto out;
		r = qesd_session_close(tx, v[i].tenant_id, v[i].id,
		    v[i].last_seen_at_ms, now_ms, "replaced");
		if (r == 0)
			r = audit(tx, v[i].tenant_id, "device.session_closed",
			    v[i].device_id, v[i].client_addr, now_ms,
			    json_pack("{s:s, s:s, s:s, s:s}", "session_id", v[i].id,
			    "reason", "replaced", "replica", v[i].replica,
			    "replaced_by", s->session_id));
		if (r == 0)
			r = qesd_tx_commit(tx);
		qesd_tx_end(tx);
		tx = NULL;
		if (r == QES_ERR_NOT_FOUND)
			continue;	/* closed meanwhile (its replica, a reaper) */
		if (r != 0)
			goto out;
		qesd_log(QESD_LOG_INFO, "device session on another replica "
		    "replaced by a new one here", QLS("tenant", tenant_id),
		    QLS("device_id", device_id), QLS("session_id", v[i].id),
		    QLS("replica", v[i].replica),
		    QLS("replaced_by", s->session_id));
		if (hub->events.session_closed != NULL)
			hub->events.session_closed(hub->events.app, v[i].tenant_id,
			    v[i].device_id, v[i].id, "replaced");
	}
 out:
	if (r != 0)
		qesd_log(QESD_LOG_WARN, "the older sessions of a reconnected "
		    "device could not be closed; the reaper or their replica "
		    "will", QLS("tenant", tenant_id),
		    QLS("device_id", device_id), QLS("error", qes_strerror(r)));
	free(v);
}

static void
auth_work(void *arg)
{
	struct hub_auth *a = arg;
	struct hub_sess *s = a->sess;
	qesd_hub *hub = s->hub;
	qesd_device_session row;
	qesd_device d;
	qesd_tx *tx = NULL;
	int r, known = 0;

	a->ok = 0;
	a->fail_reason = "store_error";
	if ((r = qesd_store_begin(hub->app->store, QESD_TX_READ, &tx)) != 0)
		goto out;
	r = qesd_device_get_for_auth(tx, a->device_id, &d);
	qesd_tx_end(tx);
	tx = NULL;
	if (r == QES_ERR_NOT_FOUND) {
		a->fail_reason = "unknown_device";
		goto out;
	}
	if (r != 0)
		goto out;
	known = 1;
	memcpy(a->tenant_id, d.tenant_id, sizeof(a->tenant_id));
	/* the signature first: only the device itself learns it is revoked */
	if (verify_device_sig(&d, a, s, hub->server_name) != 0) {
		a->fail_reason = "bad_signature";
		goto out;
	}
	if (d.revoked_at_ms != 0) {
		a->fail_reason = "revoked";
		goto out;
	}
	/* the session row and its record, or neither */
	memset(&row, 0, sizeof(row));
	memcpy(row.id, s->session_id, sizeof(row.id));
	memcpy(row.tenant_id, d.tenant_id, sizeof(row.tenant_id));
	memcpy(row.device_id, d.id, sizeof(row.device_id));
	snprintf(row.replica, sizeof(row.replica), "%s", hub->replica);
	memcpy(row.agent_version, s->agent_version, sizeof(row.agent_version));
	memcpy(row.os, s->os, sizeof(row.os));
	memcpy(row.client_addr, s->client_addr, sizeof(row.client_addr));
	row.connected_at_ms = a->now_ms;
	row.last_seen_at_ms = a->now_ms;
	if ((r = qesd_store_begin(hub->app->store, QESD_TX_WRITE, &tx)) != 0)
		goto out;
	r = qesd_session_insert(tx, &row);
	if (r == QES_ERR_CONFLICT) {
		a->fail_reason = "revoked";
		goto out;
	}
	if (r != 0 || (r = audit(tx, d.tenant_id, "device.session_opened", d.id,
	    s->client_addr, a->now_ms, json_pack("{s:s, s:s, s:s, s:s}",
	    "session_id", s->session_id, "agent_version", s->agent_version,
	    "os", s->os, "replica", hub->replica))) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto out;
	a->ok = 1;
	a->fail_reason = NULL;
	qesd_tx_end(tx);
	tx = NULL;
	/* s's tenant and device are set on the loop later: d's here */
	replace_elsewhere(s, d.tenant_id, d.id, a->now_ms);
 out:
	if (r != 0 && !a->ok)
		qesd_log(QESD_LOG_WARN, "device authentication: store error",
		    QLS("device_id", a->device_id), QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	tx = NULL;
	if (!a->ok && known) {
		/* in the device's tenant: someone tried to be this device */
		if (qesd_store_begin(hub->app->store, QESD_TX_WRITE, &tx) != 0 ||
		    audit(tx, a->tenant_id, "device.auth_failed", a->device_id,
		    s->client_addr, a->now_ms, json_pack("{s:s, s:s}", "reason",
		    a->fail_reason, "session_id", s->session_id)) != 0 ||
		    qesd_tx_commit(tx) != 0)
			qesd_log(QESD_LOG_ERROR,
			    "device.auth_failed could not be recorded",
			    QLS("tenant", a->tenant_id),
			    QLS("device_id", a->device_id));
		qesd_tx_end(tx);
	}
	qes_wipe(&d, sizeof(d));
}

static void
auth_done(void *arg, int cancelled)
{
	hub_ws_auth_done(arg, cancelled);
}

int
hub_start_auth(struct hub_auth *a)
{
	hub_sess_ref(a->sess);
	hub_run_task(a->sess->hub, auth_work, auth_done, a);
	return 0;
}

/* ---- drain ---- */

struct drain_check {
	struct hub_sess *sess;			/* a reference */
	int busy;
};

static void
drain_check_work(void *arg)
{
	struct drain_check *c = arg;
	struct hub_sess *s = c->sess;
	qesd_job *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0;
	int r;

	if ((r = qesd_store_begin(s->hub->app->store, QESD_TX_READ, &tx)) == 0)
		r = qesd_job_list_live_on_device(tx, s->tenant_id, s->device_id,
		    s->session_id, 1, &items, &n);
	qesd_tx_end(tx);
	c->busy = r == 0 && n > 0;
	if (r != 0)
		qesd_log(QESD_LOG_WARN, "drain: the jobs of a session could not be "
		    "listed; closing it", QLS("tenant", s->tenant_id),
		    QLS("session_id", s->session_id), QLS("error", qes_strerror(r)));
	qesd_job_list_free(items, n);
}

static void
drain_check_done(void *arg, int cancelled)
{
	struct drain_check *c = arg;

	(void)cancelled;
	hub_ws_drain_checked(c->sess, c->busy);
	hub_sess_unref(c->sess);
	free(c);
}

void
hub_drain_check(struct hub_sess *s)
{
	struct drain_check *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		hub_ws_drain_checked(s, 0);
		return;
	}
	c->sess = s;
	hub_sess_ref(s);
	hub_run_task(s->hub, drain_check_work, drain_check_done, c);
}

/* ---- last seen ---- */

struct seen_batch {
	qesd_hub *hub;
	qesd_session_seen *seen;
	size_t n;
};

static void
seen_work(void *arg)
{
	struct seen_batch *b = arg;
	qesd_tx *tx = NULL;
	int r;

	if ((r = qesd_store_begin(b->hub->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_session_touch(tx, b->seen, b->n)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		qesd_log(QESD_LOG_WARN, "device last_seen_at not written",
		    QLI("sessions", b->n), QLS("error", qes_strerror(r)));
	qesd_tx_end(tx);
}

static void
seen_done(void *arg, int cancelled)
{
	struct seen_batch *b = arg;

	(void)cancelled;
	free(b->seen);
	free(b);
}

int
hub_flush_seen(qesd_hub *hub, qesd_session_seen *seen, size_t n)
{
	struct seen_batch *b;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		free(seen);
		return QES_ERR_ALLOC;
	}
	b->hub = hub;
	b->seen = seen;
	b->n = n;
	hub_run_task(hub, seen_work, seen_done, b);
	return 0;
}

/* ---- life cycle ---- */

/* The server name must be what qes_proto_auth_tbs accepts. */
static int
server_name_ok(const char *name)
{
	uint8_t nonce[QES_PROTO_NONCE_LEN] = { 0 };
	qes_buf *b = qes_buf_new();
	int r;

	if (b == NULL)
		return 0;
	r = qes_proto_auth_tbs(nonce, "dev_x", name, "ses_x", b);
	qes_buf_free(b);
	return r == 0;
}

int
qesd_hub_new(qesd_app *app, qesd_hub **out, char *err, size_t errlen)
{
	const qesd_config *cfg;
	qesd_hub *hub;
	const char *name;
	char host[QESD_REPLICA_MAX + 1];

	if (out != NULL)
		*out = NULL;
	if (app == NULL || app->cfg == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	cfg = app->cfg;
	name = cfg->server_name != NULL ? cfg->server_name : cfg->listen_host;
	if (strlen(name) > QES_PROTO_HOST_MAX || !server_name_ok(name)) {
		snprintf(err, errlen, "server_name '%.80s' is not a host name agents "
		    "can sign (lower case, no port, no trailing dot): set server_name",
		    name);
		return QES_ERR_INVALID_ARG;
	}
	if (qesd_replica_name(cfg, host, err, errlen) != 0)
		return QES_ERR_INVALID_ARG;
	if ((hub = calloc(1, sizeof(*hub))) == NULL)
		return QES_ERR_ALLOC;
	hub->app = app;
	hub->cfg = cfg;
	memcpy(hub->server_name, name, strlen(name) + 1);	/* length checked */
	memcpy(hub->replica, host, strlen(host) + 1);
	hub->heartbeat_s = cfg->agent_ping_interval_s;
	if (hub->heartbeat_s < QES_PROTO_HEARTBEAT_MIN_S)
		hub->heartbeat_s = QES_PROTO_HEARTBEAT_MIN_S;
	if (hub->heartbeat_s > QES_PROTO_HEARTBEAT_MAX_S)
		hub->heartbeat_s = QES_PROTO_HEARTBEAT_MAX_S;
	if (pthread_mutex_init(&hub->mu, NULL) != 0) {
		free(hub);
		return QES_ERR_INTERNAL;
	}
	*out = hub;
	return 0;
}

void
qesd_hub_free(qesd_hub *hub)
{
	struct hub_sess *s, *next, *dead;

	if (hub == NULL)
		return;
	qesd_replicas_free(hub->replicas);	/* its callbacks use the hub */
	/* wake-ups nobody serviced (the loop was gone) hold references */
	for (s = hub->wake_head; s != NULL; s = next) {
		next = s->wnext;
		s->in_wake = 0;
		if ((dead = hub_sess_unref_locked(s)) != NULL)
			hub_sess_free(dead);
	}
	hub->wake_head = NULL;
	/* every connection closed with the server; what is left is a bug */
	if (hub->conns != NULL)
		qesd_log(QESD_LOG_ERROR, "hub freed with connections left",
		    QLI("connections", hub->n_conns));
	pthread_mutex_destroy(&hub->mu);
	free(hub);
}

void
qesd_hub_set_events(qesd_hub *hub, const qesd_hub_events *events)
{
	if (hub == NULL)
		return;
	if (events != NULL)
		hub->events = *events;
	else
		memset(&hub->events, 0, sizeof(hub->events));
}

const char *
qesd_hub_server_name(const qesd_hub *hub)
{
	return hub != NULL ? hub->server_name : NULL;
}

/* ---- replicas: heartbeat and reaper (replicas.h) ---- */

/* A lost replica's session was closed in the store: its jobs end. */
static void
on_session_reaped(void *ctx, const char *tenant_id, const char *device_id,
    const char *session_id)
{
	qesd_hub *hub = ctx;

	if (hub->events.session_closed != NULL)
		hub->events.session_closed(hub->events.app, tenant_id, device_id,
		    session_id, QESD_REASON_REPLICA_LOST);
}

/*
 * Another replica took this one for dead and closed its sessions in the
 * store: every agent here reconnects (4004), so each gets a session row
 * that is open again - here or elsewhere.
 */
static void
on_self_reaped(void *ctx)
{
	qesd_hub *hub = ctx;
	struct hub_sess *s, *next;
	size_t b;

	pthread_mutex_lock(&hub->mu);
	for (b = 0; b < HUB_BUCKETS; b++)
		for (s = hub->devices[b]; s != NULL; s = next) {
			next = s->hnext;
			hub_request_close_locked(s, QES_PROTO_CLOSE_SERVER_DRAINING,
			    "reconnect: this replica was declared gone",
			    QESD_REASON_REPLICA_LOST);
			hub_wake_locked(s);
		}
	if (hub->srv != NULL)
		qesd_server_wake(hub->srv);
	pthread_mutex_unlock(&hub->mu);
}

/* The first beat (so no reaper takes this new process for its dead
 * predecessor) and the thread. */
static int
replicas_start(qesd_hub *hub)
{
	qesd_replicas_config rc;
	int r;

	if (hub->replicas != NULL)
		return 0;
	memset(&rc, 0, sizeof(rc));
	rc.replica = hub->replica;
	rc.heartbeat_s = hub->cfg->replica_heartbeat_s;
	rc.dead_after_s = hub->cfg->replica_dead_after_s;
	rc.session_reaped = on_session_reaped;
	rc.self_reaped = on_self_reaped;
	rc.ctx = hub;
	if ((r = qesd_replicas_new(hub->app, &rc, &hub->replicas)) != 0 ||
	    (r = qesd_replicas_beat(hub->replicas)) != 0 ||
	    (r = qesd_replicas_start(hub->replicas)) != 0) {
		qesd_log(QESD_LOG_ERROR, "cannot start the replica heartbeat",
		    QLS("replica", hub->replica), QLS("error", qes_strerror(r)));
		qesd_replicas_free(hub->replicas);
		hub->replicas = NULL;
		return r;
	}
	return 0;
}

int
qesd_hub_recover(qesd_hub *hub)
{
	qesd_device_session *open = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i, total = 0;
	int64_t now;
	int r;

	if (hub == NULL)
		return QES_ERR_INVALID_ARG;
	for (;;) {
		now = qesd_now_ms(hub->app);
		if ((r = qesd_store_begin(hub->app->store, QESD_TX_WRITE,
		    &tx)) != 0 ||
		    (r = qesd_sessions_open_on_replica(tx, hub->replica, 100,
		    &open, &n)) != 0)
			goto out;
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			if ((r = qesd_session_close(tx, open[i].tenant_id,
			    open[i].id, open[i].last_seen_at_ms, now,
			    "gateway_restart")) != 0 ||
			    (r = audit(tx, open[i].tenant_id,
			    "device.session_closed", open[i].device_id,
			    open[i].client_addr, now, json_pack("{s:s, s:s}",
			    "session_id", open[i].id, "reason",
			    "gateway_restart"))) != 0)
				goto out;
		}
		if ((r = qesd_tx_commit(tx)) != 0)
			goto out;
		qesd_tx_end(tx);
		tx = NULL;
		/* their jobs end too (another replica may have sent none of
		 * them: only this replica's sessions are closed here) */
		for (i = 0; i < n && hub->events.session_closed != NULL; i++)
			hub->events.session_closed(hub->events.app,
			    open[i].tenant_id, open[i].device_id, open[i].id,
			    "gateway_restart");
		total += n;
		free(open);
		open = NULL;
	}
	qesd_tx_end(tx);	/* the empty round's */
	tx = NULL;
	r = replicas_start(hub);
	if (total > 0)
		qesd_log(QESD_LOG_INFO,
		    "closed device sessions this replica left open",
		    QLS("replica", hub->replica), QLI("sessions", total),
		    QLS("reason", "gateway_restart"));
 out:
	if (r != 0)
		qesd_log(QESD_LOG_ERROR,
		    "cannot close the device sessions this replica left open",
		    QLS("replica", hub->replica), QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	free(open);
	return r;
}
