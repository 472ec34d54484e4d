/*
 * jobs_sweep.c - every job ends definitely: at start, the jobs a previous
 * process left open fail (gateway_restart) - but not those another live
 * replica holds (failover, replicas.h); every second, open jobs past
 * their expires_at fail (timeout) and their devices are told to close the
 * dialog (a signed document job is neither: the finisher of jobs_ades.c
 * completes or fails it, also after a restart); every minute, completed jobs past the retention lose their
 * signatures (expired).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "qes/err.h"
#include "qes/proto.h"
#include "app.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "log.h"
#include "replicas.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"

/* ------------------------------------------------------------------------- */
/* recovery and the sweeper */

/*
 * At start with replicas sharing the store: 1 when the job's session is
 * open on another replica that is alive (its beat younger than
 * replica_dead_after_s), which then ends the job itself. A store error
 * counts as not held: the job fails, which is definite.
 */
static int
held_elsewhere(qesd_jobs *j, const char *replica, const qesd_job *job)
{
	const qesd_config *cfg = j->app->cfg;
	qesd_tx *tx = NULL;
	int64_t alive_after;
	int held = 0;

	if (replica == NULL || cfg == NULL || job->session_id[0] == '\0')
		return 0;
	alive_after = qesd_now_ms(j->app) -
	    (int64_t)cfg->replica_dead_after_s * 1000;
	if (qesd_store_begin(j->app->store, QESD_TX_READ, &tx) != 0 ||
	    qesd_session_held_elsewhere(tx, job->tenant_id, job->session_id,
	    replica, alive_after, &held) != 0)
		held = 0;
	qesd_tx_end(tx);
	return held;
}

/*
 * Fail every live job listed by list() with reason; send a cancel to its
 * device when it had it (timeout). replica (start-up): spare the jobs
 * another live replica holds. Returns how many moved, or an error.
 */
static int
fail_listed(qesd_jobs *j, int64_t before_ms, const char *reason,
    int cancel_at_device, const char *replica, uint64_t *count)
{
	qesd_job *items = NULL, after;
	qesd_job_state prev;
	qesd_tx *tx = NULL;
	size_t n = 0, i, rounds, spared;
	int r = 0, applied;

	for (rounds = 0; rounds < SWEEP_ROUNDS; rounds++) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
			r = qesd_job_list_live(tx, before_ms, SWEEP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (r != 0)
			return r;
		spared = 0;
		for (i = 0; i < n; i++) {
			if (held_elsewhere(j, replica, &items[i])) {
				spared++;
				continue;
			}
			memset(&after, 0, sizeof(after));
			/* a signed job is a document job: the finisher's to end
			 * (jobs_ades.c), also after a restart */
			if (jobs_fail(j, items[i].tenant_id, items[i].id,
			    LIVE_STATES & ~BIT(QESD_JOB_SIGNED), reason, NULL,
			    &applied, &prev, &after) != 0 || !applied) {
				qesd_job_clear(&after);
				continue;
			}
			(*count)++;
			if (cancel_at_device && (BIT(prev) & AT_DEVICE))
				jobs_send_cancel(j, &after, QES_PROTO_CANCEL_EXPIRED);
			qesd_log(QESD_LOG_INFO, "signature job failed", QLS("tenant",
			    after.tenant_id), QLS("job_id", after.id),
			    QLS("device_id", after.device_id), QLS("reason", reason));
			qesd_job_clear(&after);
		}
		qesd_job_list_free(items, n);
		items = NULL;
		/* a batch held only by others would come back the same */
		if (n < SWEEP_BATCH || spared == n)
			break;
	}
	return 0;
}

int
qesd_jobs_recover(qesd_jobs *j, uint64_t *count)
{
	char replica[QESD_REPLICA_MAX + 1], err[128];
	uint64_t c = 0;
	int r;

	if (j == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qesd_replica_name(j->app->cfg, replica, err, sizeof(err))) != 0)
		return r;
	r = fail_listed(j, INT64_MAX, "gateway_restart", 0, replica, &c);
	if (c > 0)
		qesd_log(QESD_LOG_WARN, "jobs left open by the previous run failed "
		    "with gateway_restart: their relying parties must ask again",
		    QLI("jobs", c));
	if (count != NULL)
		*count = c;
	return r;
}

/* Completed jobs past the retention lose their signatures: expired. */
static int
expire_results(qesd_jobs *j, int64_t before_ms)
{
	struct jobs_transition t;
	qesd_job *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i, rounds;
	int r = 0, applied;

	memset(&t, 0, sizeof(t));
	t.from = BIT(QESD_JOB_COMPLETED);
	t.to = QESD_JOB_EXPIRED;
	t.drop_result = 1;
	t.type = "signature.expired";
	for (rounds = 0; rounds < SWEEP_ROUNDS; rounds++) {
		if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
			r = qesd_job_list_completed_before(tx, before_ms,
			    SWEEP_BATCH, &items, &n);
		qesd_tx_end(tx);
		tx = NULL;
		if (r != 0)
			return r;
		for (i = 0; i < n; i++) {
			t.version = items[i].version;
			(void)jobs_transition(j, items[i].tenant_id, items[i].id, &t,
			    &applied, NULL, NULL);
		}
		qesd_job_list_free(items, n);
		items = NULL;
		if (n < SWEEP_BATCH)
			break;
	}
	return 0;
}

int
qesd_jobs_sweep(qesd_jobs *j)
{
	uint64_t c = 0;
	int64_t now;
	int r, r2 = 0;

	if (j == NULL)
		return QES_ERR_INVALID_ARG;
	now = qesd_now_ms(j->app);
	/* expires_at_ms < now + 1: a job is over at its expiry instant */
	r = fail_listed(j, now + 1, "timeout", 1, NULL, &c);
	if (qesd_mono_ms() >= j->next_retention_mono_ms) {
		r2 = expire_results(j, now - j->retention_ms);
		j->next_retention_mono_ms = qesd_mono_ms() + RETENTION_INTERVAL_MS;
	}
	return r != 0 ? r : r2;
}

void *
jobs_sweeper_main(void *arg)
{
	qesd_jobs *j = arg;
	struct timespec ts;
	int r;

	pthread_mutex_lock(&j->sweep_mu);
	while (!j->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += SWEEP_INTERVAL_MS / 1000;
		pthread_cond_timedwait(&j->sweep_cv, &j->sweep_mu, &ts);
		if (j->stop)
			break;
		pthread_mutex_unlock(&j->sweep_mu);
		if ((r = qesd_jobs_sweep(j)) != 0)
			qesd_log(r == QES_ERR_BUSY ? QESD_LOG_WARN : QESD_LOG_ERROR,
			    "the job sweeper could not run; it tries again in a second",
			    QLS("error", qes_strerror(r)));
		pthread_mutex_lock(&j->sweep_mu);
	}
	pthread_mutex_unlock(&j->sweep_mu);
	return NULL;
}
