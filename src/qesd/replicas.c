/*
 * replicas.c - this replica's heartbeat in the store and the reaper of the
 * sessions a lost replica left open (replicas.h explains the rules).
 *
 * Times: the beat and the cutoffs use the wall clock of qesd_now_ms (the
 * store compares the replicas' clocks, which NTP keeps within far less
 * than replica_dead_after_s), the thread's period the monotonic clock.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "qes/err.h"
#include "app.h"
#include "log.h"
#include "replicas.h"
#include "store.h"
#include "store_devices.h"

#define REAP_BATCH	100
#define REAP_ROUNDS	100		/* at most this many batches per run */
/* a session closed this long ago with jobs still at its device: the
 * process that closed it died before failing them */
#define LEFTOVER_AFTER_MS	30000
#define FORGET_INTERVAL_MS	(10 * 60 * 1000)	/* look for old rows */

struct qesd_replicas {
	qesd_app *app;
	qesd_replicas_config cfg;
	char name[QESD_REPLICA_MAX + 1];
	int64_t started_at_ms;
	int64_t dead_after_ms;
	/* the reaper's own beats: steady since, last success (wall ms, 0 none) */
	int64_t steady_since_ms;
	int64_t last_ok_ms;
	int64_t last_beat_mono_ms;		/* the last attempt */
	int64_t next_forget_mono_ms;
	int failing;				/* the last beat failed: logged once */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;				/* mu */
	pthread_t thread;
	int thread_started;
};

int
qesd_replica_name(const qesd_config *cfg, char out[QESD_REPLICA_MAX + 1],
    char *err, size_t errlen)
{
	char host[256];
	size_t i;

	if (cfg != NULL && cfg->replica_name != NULL)
		snprintf(host, sizeof(host), "%s", cfg->replica_name);
	else if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "qesd");
	host[sizeof(host) - 1] = '\0';
	if (strlen(host) > QESD_REPLICA_MAX) {
		snprintf(err, errlen, "replica_name is longer than %d bytes",
		    QESD_REPLICA_MAX);
		return QES_ERR_INVALID_ARG;
	}
	for (i = 0; host[i] != '\0'; i++)
		if ((unsigned char)host[i] <= 0x20 || (unsigned char)host[i] > 0x7e) {
			snprintf(err, errlen, "replica_name must be printable "
			    "ASCII without blanks");
			return QES_ERR_INVALID_ARG;
		}
	memcpy(out, host, strlen(host) + 1);
	return 0;
}

int
qesd_replicas_new(qesd_app *app, const qesd_replicas_config *c,
    qesd_replicas **out)
{
	qesd_replicas *r;
	pthread_condattr_t ca;

	if (out != NULL)
		*out = NULL;
	if (app == NULL || c == NULL || out == NULL || c->replica == NULL ||
	    c->replica[0] == '\0' || strlen(c->replica) > QESD_REPLICA_MAX ||
	    c->heartbeat_s == 0 || c->dead_after_s <= 2 * c->heartbeat_s)
		return QES_ERR_INVALID_ARG;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return QES_ERR_ALLOC;
	r->app = app;
	r->cfg = *c;
	memcpy(r->name, c->replica, strlen(c->replica) + 1);
	r->cfg.replica = r->name;
	r->started_at_ms = qesd_now_ms(app);
	r->dead_after_ms = (int64_t)c->dead_after_s * 1000;
	if (pthread_condattr_init(&ca) != 0) {
		free(r);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&r->mu, NULL) != 0) {
		pthread_condattr_destroy(&ca);
		free(r);
		return QES_ERR_INTERNAL;
	}
	if (pthread_cond_init(&r->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	*out = r;
	return 0;
}

void
qesd_replicas_free(qesd_replicas *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (r->thread_started)
		pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

int64_t
qesd_replicas_started_at(const qesd_replicas *r)
{
	return r != NULL ? r->started_at_ms : 0;
}

/* ---- the beat ---- */

int
qesd_replicas_beat(qesd_replicas *r)
{
	qesd_tx *tx = NULL;
	int64_t now;
	int rc, reaped = 0;

	if (r == NULL)
		return QES_ERR_INVALID_ARG;
	now = qesd_now_ms(r->app);
	r->last_beat_mono_ms = qesd_mono_ms();
	if ((rc = qesd_store_begin(r->app->store, QESD_TX_WRITE, &tx)) == 0 &&
	    (rc = qesd_replica_beat(tx, r->name, r->started_at_ms, now,
	    &reaped)) == 0)
		rc = qesd_tx_commit(tx);
	if (rc != 0) {
		if (!r->failing)
			qesd_log(QESD_LOG_WARN, "replica heartbeat not written: "
			    "other replicas will declare this one gone if it "
			    "lasts; check the store", QLS("replica", r->name),
			    QLS("error", qes_strerror(rc)),
			    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
		r->failing = 1;
		r->steady_since_ms = 0;
		qesd_tx_end(tx);
		return rc;
	}
	qesd_tx_end(tx);
	if (r->failing)
		qesd_log(QESD_LOG_INFO, "replica heartbeat written again",
		    QLS("replica", r->name));
	r->failing = 0;
	/* a gap longer than the dead time: others may have missed us too */
	if (r->steady_since_ms == 0 || now - r->last_ok_ms > r->dead_after_ms ||
	    now < r->last_ok_ms)
		r->steady_since_ms = now;
	r->last_ok_ms = now;
	if (reaped) {
		qesd_log(QESD_LOG_WARN, "another replica declared this one gone "
		    "(its heartbeat was late): every agent is told to reconnect",
		    QLS("replica", r->name));
		if (r->cfg.self_reaped != NULL)
			r->cfg.self_reaped(r->cfg.ctx);
	}
	return 0;
}

/* ---- the reaper ---- */

/* Close one session of a lost replica with its audit record: 1 closed
 * here, 0 somebody else did (or the replica came back), or an error. */
static int
reap_one(qesd_replicas *r, const qesd_device_session *s, int64_t dead_before,
    int64_t orphan_before, int64_t now)
{
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	json_t *d = NULL;
	char *text = NULL;
	int rc;

	if ((rc = qesd_store_begin(r->app->store, QESD_TX_WRITE, &tx)) != 0)
		goto out;
	rc = qesd_session_reap(tx, s->tenant_id, s->id, dead_before,
	    orphan_before, now);
	if (rc == QES_ERR_NOT_FOUND) {
		rc = 0;
		goto out;
	}
	if (rc != 0)
		goto out;
	if ((d = json_pack("{s:s, s:s, s:s}", "session_id", s->id, "reason",
	    QESD_REASON_REPLICA_LOST, "replica", s->replica)) == NULL ||
	    (text = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		rc = QES_ERR_ALLOC;
		goto out;
	}
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = now;
	ev.type = "device.session_closed";
	ev.device_id = s->device_id;
	ev.client_addr = s->client_addr[0] != '\0' ? s->client_addr : NULL;
	ev.details = text;
	if ((rc = qesd_audit_append(tx, s->tenant_id, &ev, NULL)) != 0 ||
	    (rc = qesd_tx_commit(tx)) != 0)
		goto out;
	rc = 1;
 out:
	if (rc < 0)
		qesd_log(QESD_LOG_WARN, "a session of a lost replica could not be "
		    "closed; the next round tries again", QLS("tenant",
		    s->tenant_id), QLS("session_id", s->id), QLS("error",
		    qes_strerror(rc)), QLS("detail", tx != NULL ?
		    qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	free(text);
	json_decref(d);
	return rc;
}

/*
 * Jobs still at the device of a session closed long ago (its replica died
 * between closing the row and failing the jobs): hand the session to
 * session_reaped again, whose jobs then fail. Jobs move by compare-and-set,
 * so replicas doing this at once fail each job once.
 */
static int
end_leftover_jobs(qesd_replicas *r, int64_t now)
{
	qesd_device_session *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i;
	int rc;

	if ((rc = qesd_store_begin(r->app->store, QESD_TX_READ, &tx)) == 0)
		rc = qesd_sessions_closed_with_jobs(tx, now - LEFTOVER_AFTER_MS,
		    REAP_BATCH, &items, &n);
	qesd_tx_end(tx);
	if (rc != 0)
		return rc;
	for (i = 0; i < n; i++) {
		qesd_log(QESD_LOG_WARN, "jobs of a session closed long ago were "
		    "still open: they fail now", QLS("tenant", items[i].tenant_id),
		    QLS("device_id", items[i].device_id),
		    QLS("session_id", items[i].id));
		if (r->cfg.session_reaped != NULL)
			r->cfg.session_reaped(r->cfg.ctx, items[i].tenant_id,
			    items[i].device_id, items[i].id);
	}
	free(items);
	return 0;
}

/* Rows of replicas gone for QESD_REPLICA_FORGET_AFTER_MS without a
 * session left: dropped, or every pod name ever would stay. */
static void
forget_old_rows(qesd_replicas *r, int64_t now)
{
	qesd_tx *tx = NULL;
	uint64_t n = 0;
	int rc;

	if ((rc = qesd_store_begin(r->app->store, QESD_TX_WRITE, &tx)) == 0 &&
	    (rc = qesd_replicas_forget(tx, now - QESD_REPLICA_FORGET_AFTER_MS,
	    &n)) == 0)
		rc = qesd_tx_commit(tx);
	qesd_tx_end(tx);
	if (rc != 0)
		qesd_log(QESD_LOG_WARN, "rows of replicas long gone not dropped; "
		    "the next round tries again", QLS("error", qes_strerror(rc)));
	else if (n > 0)
		qesd_log(QESD_LOG_INFO, "dropped the heartbeat rows of replicas "
		    "gone for a week", QLI("replicas", n));
}

int
qesd_replicas_reap(qesd_replicas *r, size_t *closed)
{
	qesd_device_session *items = NULL;
	qesd_tx *tx = NULL;
	int64_t now, dead_before, orphan_before, orphan_ms;
	size_t n = 0, i, rounds, count = 0;
	int rc = 0, one;

	if (closed != NULL)
		*closed = 0;
	if (r == NULL)
		return QES_ERR_INVALID_ARG;
	now = qesd_now_ms(r->app);
	if (r->last_ok_ms == 0 || now - r->last_ok_ms > r->dead_after_ms / 2)
		return 0;	/* the store is away for us: nothing to do */
	if ((rc = end_leftover_jobs(r, now)) != 0)
		return rc;
	/* our own view of the store must be steady before we judge others */
	if (r->steady_since_ms == 0 || r->last_ok_ms == 0 ||
	    now - r->steady_since_ms < r->dead_after_ms ||
	    now - r->last_ok_ms > r->dead_after_ms / 2)
		return 0;
	orphan_ms = r->dead_after_ms > QESD_REPLICA_ORPHAN_AFTER_MS ?
	    r->dead_after_ms : QESD_REPLICA_ORPHAN_AFTER_MS;
	dead_before = now - r->dead_after_ms;
	orphan_before = now - orphan_ms;
	for (rounds = 0; rounds < REAP_ROUNDS; rounds++) {
		if ((rc = qesd_store_begin(r->app->store, QESD_TX_READ, &tx)) == 0)
			rc = qesd_sessions_of_lost_replicas(tx, dead_before,
			    orphan_before, REAP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (rc != 0)
			break;
		for (i = 0; i < n; i++) {
			/* never our own: a late beat of ours is not a death */
			if (strcmp(items[i].replica, r->name) == 0)
				continue;
			if ((one = reap_one(r, &items[i], dead_before,
			    orphan_before, now)) < 0) {
				rc = one;
				continue;
			}
			if (one == 0)
				continue;
			count++;
			qesd_log(QESD_LOG_WARN, "device session of a lost replica "
			    "closed: its open jobs fail", QLS("tenant",
			    items[i].tenant_id), QLS("device_id",
			    items[i].device_id), QLS("session_id", items[i].id),
			    QLS("lost_replica", items[i].replica),
			    QLS("reason", QESD_REASON_REPLICA_LOST));
			if (r->cfg.session_reaped != NULL)
				r->cfg.session_reaped(r->cfg.ctx,
				    items[i].tenant_id, items[i].device_id,
				    items[i].id);
		}
		free(items);
		items = NULL;
		if (n < REAP_BATCH || rc != 0)
			break;
		/* a long reap must not make this replica look dead */
		if (qesd_mono_ms() - r->last_beat_mono_ms >=
		    (int64_t)r->cfg.heartbeat_s * 1000)
			(void)qesd_replicas_beat(r);
	}
	if (closed != NULL)
		*closed = count;
	if (rc == 0 && qesd_mono_ms() >= r->next_forget_mono_ms) {
		forget_old_rows(r, now);
		r->next_forget_mono_ms = qesd_mono_ms() + FORGET_INTERVAL_MS;
	}
	return rc;
}

/* ---- the thread ---- */

static void *
replicas_main(void *arg)
{
	qesd_replicas *r = arg;
	struct timespec ts;

	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		pthread_mutex_unlock(&r->mu);
		if (qesd_replicas_beat(r) == 0)
			(void)qesd_replicas_reap(r, NULL);
		pthread_mutex_lock(&r->mu);
		if (r->stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)r->cfg.heartbeat_s;
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int
qesd_replicas_start(qesd_replicas *r)
{
	if (r == NULL || r->thread_started)
		return QES_ERR_INVALID_ARG;
	if (pthread_create(&r->thread, NULL, replicas_main, r) != 0)
		return QES_ERR_INTERNAL;
	r->thread_started = 1;
	return 0;
}
