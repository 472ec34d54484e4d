/*
 * jobs_wait.c - long-poll waiters of GET /v1/signatures/{id}?wait=: a
 * small hash table of deferred requests by job id. A change of a job wakes
 * all its waiters (qesd_jobs_changed, which also publishes the change on the
 * bus so the other replicas wake theirs: qesd_jobs_wake_local, bus.h); each
 * resumes on a worker, unlinks
 * and frees itself and answers with the job as it is then. Wakes are best
 * effort: a waiter also resumes at its deadline.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "app.h"
#include "bus.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "problem.h"
#include "store_jobs.h"

struct qesd_jobs_waiter {
	struct qesd_jobs_waiter *next, *prev;
	qesd_jobs *jobs;
	char tenant_id[QESD_ID_SIZE];
	char job_id[QESD_ID_SIZE];
	qesd_server *srv;
	uint64_t token;
	unsigned bucket;
	int linked;			/* in the table (jobs->wait_mu) */
};

/* ------------------------------------------------------------------------- */
/* long-poll waiters */

static unsigned
bucket_of(const char *job_id)
{
	uint32_t h = 2166136261u;	/* FNV-1a; ids are random already */

	for (; *job_id != '\0'; job_id++)
		h = (h ^ (uint8_t)*job_id) * 16777619u;
	return h % WAIT_BUCKETS;
}

qesd_jobs_waiter *
qesd_jobs_wait_begin(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	qesd_jobs_waiter *w;

	if (j == NULL || tenant_id == NULL || job_id == NULL ||
	    strlen(tenant_id) >= QESD_ID_SIZE || strlen(job_id) >= QESD_ID_SIZE ||
	    (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->jobs = j;
	memcpy(w->tenant_id, tenant_id, strlen(tenant_id) + 1);
	memcpy(w->job_id, job_id, strlen(job_id) + 1);
	w->bucket = bucket_of(job_id);
	return w;
}

void
qesd_jobs_wait_arm(qesd_jobs_waiter *w, qesd_server *srv, uint64_t token)
{
	qesd_jobs *j;

	if (w == NULL)
		return;
	j = w->jobs;
	pthread_mutex_lock(&j->wait_mu);
	w->srv = srv;
	w->token = token;
	w->prev = NULL;
	w->next = j->waiters[w->bucket];
	if (w->next != NULL)
		w->next->prev = w;
	j->waiters[w->bucket] = w;
	w->linked = 1;
	pthread_mutex_unlock(&j->wait_mu);
}

/* Caller holds wait_mu. */
static void
unlink_locked(qesd_jobs *j, qesd_jobs_waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		j->waiters[w->bucket] = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = 0;
}

void
qesd_jobs_wait_cancel(qesd_jobs_waiter *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->jobs->wait_mu);
	unlink_locked(w->jobs, w);
	pthread_mutex_unlock(&w->jobs->wait_mu);
	free(w);
}

void
qesd_jobs_changed(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	if (j == NULL || tenant_id == NULL || job_id == NULL)
		return;
	qesd_jobs_wake_local(j, tenant_id, job_id);
	if (j->app != NULL)
		qesd_bus_job_changed(j->app->bus, tenant_id, job_id);
}

void
qesd_jobs_wake_local(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	struct wake {
		qesd_server *srv;
		uint64_t token;
	} *wakes = NULL;
	qesd_jobs_waiter *w, *next;
	size_t n = 0, cap = 0, i;
	unsigned b;

	if (j == NULL || tenant_id == NULL || job_id == NULL)
		return;
	b = bucket_of(job_id);
	pthread_mutex_lock(&j->wait_mu);
	for (w = j->waiters[b]; w != NULL; w = w->next)
		if (strcmp(w->job_id, job_id) == 0 &&
		    strcmp(w->tenant_id, tenant_id) == 0)
			cap++;
	if (cap > 0 && (wakes = calloc(cap, sizeof(*wakes))) != NULL)
		for (w = j->waiters[b]; w != NULL; w = next) {
			next = w->next;
			if (strcmp(w->job_id, job_id) != 0 ||
			    strcmp(w->tenant_id, tenant_id) != 0)
				continue;
			wakes[n].srv = w->srv;
			wakes[n].token = w->token;
			n++;
			unlink_locked(j, w);	/* its resume frees it */
		}
	pthread_mutex_unlock(&j->wait_mu);
	/* outside the lock: a wake queues the resume, it never runs it here;
	 * on allocation failure the waiters resume at their deadline */
	for (i = 0; i < n; i++)
		if (wakes[i].srv != NULL)
			(void)qesd_deferred_wake(wakes[i].srv, wakes[i].token);
	free(wakes);
}

void
qesd_jobs_resume(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg)
{
	qesd_jobs_waiter *w = arg;
	qesd_jobs *j;
	qesd_job job;
	json_t *body;
	int r;

	(void)reason;
	if (w == NULL)
		return;
	j = w->jobs;
	pthread_mutex_lock(&j->wait_mu);
	unlink_locked(j, w);
	pthread_mutex_unlock(&j->wait_mu);
	if (resp == NULL || req == NULL) {
		free(w);
		return;
	}
	/* woken, at the deadline or draining: the job as it is now */
	r = qesd_jobs_get(j, w->tenant_id, w->job_id, &job);
	free(w);
	if (r == QES_ERR_NOT_FOUND) {
		qesd_problem(resp, req, 404, "not_found", "Not found",
		    "no such signature job");
		return;
	}
	if (r != 0 || (body = qesd_job_json(&job)) == NULL) {
		qesd_job_clear(&job);
		qesd_problem(resp, req, 503, "store_unavailable",
		    "Service unavailable", "the job cannot be read right now; retry shortly");
		(void)qesd_response_header(resp, "Retry-After", "1");
		return;
	}
	qesd_job_clear(&job);
	qesd_response_json(resp, 200, body);
}
