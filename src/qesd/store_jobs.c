/*
 * store_jobs.c - the backend-independent half of the job store
 * (store_jobs.h): the state machine's edges, argument checks, and the
 * compare-and-set rule, so that SQLite and PostgreSQL cannot disagree on
 * which transitions exist or on what a lost race looks like.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "store.h"
#include "store_jobs.h"

#define JOBS(tx) (qesd_tx_ops(tx)->jobs)

static const char *const state_names[] = {
	[QESD_JOB_CREATED] = "created",
	[QESD_JOB_DISPATCHED] = "dispatched",
	[QESD_JOB_AWAITING_USER] = "awaiting_user",
	[QESD_JOB_SIGNED] = "signed",
	[QESD_JOB_COMPLETED] = "completed",
	[QESD_JOB_FAILED] = "failed",
	[QESD_JOB_EXPIRED] = "expired",
	[QESD_JOB_CANCELLED] = "cancelled",
};
#define N_STATES (sizeof(state_names) / sizeof(state_names[0]))

#define BIT(s) (1u << (s))
#define ENDINGS (BIT(QESD_JOB_FAILED) | BIT(QESD_JOB_CANCELLED))

/*
 * The edges, one bit set per source state. Every live state can end in
 * failed or cancelled; completed only moves to expired (retention dropped
 * its signatures); failed, cancelled and expired never move again.
 */
static const unsigned edges[N_STATES] = {
	[QESD_JOB_CREATED] = BIT(QESD_JOB_DISPATCHED) | ENDINGS,
	[QESD_JOB_DISPATCHED] = BIT(QESD_JOB_AWAITING_USER) |
	    BIT(QESD_JOB_SIGNED) | ENDINGS,
	[QESD_JOB_AWAITING_USER] = BIT(QESD_JOB_SIGNED) | ENDINGS,
	[QESD_JOB_SIGNED] = BIT(QESD_JOB_COMPLETED) | ENDINGS,
	[QESD_JOB_COMPLETED] = BIT(QESD_JOB_EXPIRED),
};

const char *
qesd_job_state_name(qesd_job_state s)
{
	if ((unsigned)s == 0 || (unsigned)s >= N_STATES)
		return NULL;
	return state_names[s];
}

int
qesd_job_state_parse(const char *name, qesd_job_state *out)
{
	unsigned i;

	if (name == NULL || out == NULL)
		return QES_ERR_FORMAT;
	for (i = 1; i < N_STATES; i++)
		if (strcmp(name, state_names[i]) == 0) {
			*out = (qesd_job_state)i;
			return 0;
		}
	return QES_ERR_FORMAT;
}

int
qesd_job_state_final(qesd_job_state s)
{
	return s == QESD_JOB_COMPLETED || s == QESD_JOB_FAILED ||
	    s == QESD_JOB_EXPIRED || s == QESD_JOB_CANCELLED;
}

int
qesd_job_transition_ok(qesd_job_state from, qesd_job_state to)
{
	if ((unsigned)from == 0 || (unsigned)from >= N_STATES ||
	    (unsigned)to == 0 || (unsigned)to >= N_STATES)
		return 0;
	return (edges[from] & BIT(to)) != 0;
}

void
qesd_job_clear(qesd_job *job)
{
	if (job == NULL)
		return;
	free(job->request);
	free(job->result);
	memset(job, 0, sizeof(*job));
}

void
qesd_job_list_free(qesd_job *jobs, size_t n)
{
	size_t i;

	if (jobs == NULL)
		return;
	for (i = 0; i < n; i++)
		qesd_job_clear(&jobs[i]);
	free(jobs);
}

/* ---- argument checks ---- */

/* "crd_..." (hub.h: qesd_credential_id, an id of ids.c's shape). */
static int
credential_id_ok(const char *s)
{
	return qesd_id_valid("crd", s);
}

static int
reason_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > QESD_JOB_REASON_MAX)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int
qesd_job_idempotency_key_ok(const char *s)
{
	size_t n, i;

	if (s == NULL || (n = strlen(s)) == 0 || n > QESD_IDEMPOTENCY_KEY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return s[0] != ' ' && s[n - 1] != ' ';
}

static int
vcode_ok(const char *s)
{
	return strlen(s) == 4 && strspn(s, "0123456789") == 4;
}

/* An id field that may be empty. */
static int
opt_id_ok(const char *prefix, const char *id)
{
	return id[0] == '\0' || qesd_id_valid(prefix, id);
}

static int
text_ok(const char *s, size_t max)
{
	size_t n;

	return s != NULL && (n = strnlen(s, max + 1)) > 0 && n <= max;
}

/* ---- operations ---- */

int
qesd_job_insert(qesd_tx *tx, qesd_job *job)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (job == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", job->tenant_id))
		return QES_ERR_NOT_FOUND;
	if (job->state != QESD_JOB_CREATED || job->reason[0] != '\0' ||
	    !credential_id_ok(job->credential_id) ||
	    !opt_id_ok("dev", job->device_id) ||
	    !opt_id_ok("ses", job->session_id) ||
	    !opt_id_ok("key", job->key_id) ||
	    !text_ok(job->request, QESD_JOB_REQUEST_MAX) ||
	    job->result != NULL || !vcode_ok(job->verification_code) ||
	    (job->idempotency_key[0] != '\0' &&
	    !qesd_job_idempotency_key_ok(job->idempotency_key)) ||
	    job->created_at_ms <= 0 || job->updated_at_ms != job->created_at_ms ||
	    job->expires_at_ms <= job->created_at_ms ||
	    (job->id[0] != '\0' && !qesd_id_valid("job", job->id)))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG, "invalid job");
	if (job->id[0] == '\0' && (r = qesd_id_new("job", job->id)) != 0)
		return r;
	job->version = 1;
	return qesd_tx_result(tx, JOBS(tx)->insert(tx, job));
}

int
qesd_job_get(qesd_tx *tx, const char *tenant_id, const char *job_id,
    qesd_job *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!qesd_id_valid("ten", tenant_id) || !qesd_id_valid("job", job_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, JOBS(tx)->get(tx, tenant_id, job_id, NULL,
	    out));
}

int
qesd_job_get_by_idempotency_key(qesd_tx *tx, const char *tenant_id,
    const char *idempotency_key, qesd_job *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!qesd_id_valid("ten", tenant_id) ||
	    !qesd_job_idempotency_key_ok(idempotency_key))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, JOBS(tx)->get(tx, tenant_id, NULL,
	    idempotency_key, out));
}

int
qesd_job_update(qesd_tx *tx, qesd_job *job, qesd_job_state to,
    const char *reason, int64_t now_ms)
{
	qesd_job next;
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (job == NULL || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", job->tenant_id) ||
	    !qesd_id_valid("job", job->id))
		return QES_ERR_NOT_FOUND;
	if (!qesd_job_transition_ok(job->state, to))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "the job state machine has no such transition");
	if (to == QESD_JOB_FAILED ? !reason_ok(reason) :
	    (reason != NULL && reason[0] != '\0'))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "a reason goes with failed, and only with it");
	if (!opt_id_ok("ses", job->session_id) ||
	    (job->result != NULL && !text_ok(job->result, QESD_JOB_RESULT_MAX)))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG, "invalid job");
	/* a shallow copy: next borrows job's strings for the call */
	next = *job;
	next.state = to;
	snprintf(next.reason, sizeof(next.reason), "%s",
	    to == QESD_JOB_FAILED ? reason : "");
	next.updated_at_ms = now_ms > job->updated_at_ms ? now_ms :
	    job->updated_at_ms;
	next.version = job->version + 1;
	r = JOBS(tx)->update(tx, &next, job->state, job->version);
	if (r == QES_ERR_NOT_FOUND) {
		/* lost the race, or no such job at all? */
		qesd_job cur;

		r = JOBS(tx)->get(tx, job->tenant_id, job->id, NULL, &cur);
		qesd_job_clear(&cur);
		if (r == 0)
			return qesd_tx_refuse(tx, QES_ERR_CONFLICT,
			    "the job changed meanwhile");
		return qesd_tx_result(tx, r);
	}
	if ((r = qesd_tx_result(tx, r)) != 0)
		return r;
	job->state = next.state;
	memcpy(job->reason, next.reason, sizeof(job->reason));
	job->updated_at_ms = next.updated_at_ms;
	job->version = next.version;
	return 0;
}

/* Common to the three lists. */
static int
list(qesd_tx *tx, enum qesd_job_list_kind kind, const char *tenant_id,
    const char *device_id, const char *session_id, int64_t bound_ms,
    size_t limit, qesd_job **items, size_t *n)
{
	qesd_job *v;
	size_t got = 0;
	int r;

	if (items == NULL || n == NULL)
		return QES_ERR_INVALID_ARG;
	*items = NULL;
	*n = 0;
	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (limit == 0)
		limit = QESD_LIST_DEFAULT;
	if (limit > QESD_LIST_MAX)
		limit = QESD_LIST_MAX;
	if ((v = calloc(limit, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qesd_tx_result(tx, JOBS(tx)->list(tx, kind, tenant_id,
	    device_id, session_id, bound_ms, limit, v, &got))) != 0 ||
	    got == 0) {
		qesd_job_list_free(v, got);
		return r;
	}
	*items = v;
	*n = got;
	return 0;
}

int
qesd_job_list_live(qesd_tx *tx, int64_t before_ms, size_t limit,
    qesd_job **items, size_t *n)
{
	return list(tx, QESD_JOB_LIST_LIVE, NULL, NULL, NULL, before_ms, limit,
	    items, n);
}

int
qesd_job_list_live_on_device(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *session_id, size_t limit,
    qesd_job **items, size_t *n)
{
	if (items != NULL && n != NULL && (!qesd_id_valid("ten", tenant_id) ||
	    !qesd_id_valid("dev", device_id) ||
	    (session_id != NULL && !qesd_id_valid("ses", session_id)))) {
		*items = NULL;
		*n = 0;
		return qesd_tx_check(tx, 0);	/* nothing can match */
	}
	return list(tx, QESD_JOB_LIST_LIVE_DEVICE, tenant_id, device_id,
	    session_id, 0, limit, items, n);
}

int
qesd_job_list_completed_before(qesd_tx *tx, int64_t before_ms, size_t limit,
    qesd_job **items, size_t *n)
{
	return list(tx, QESD_JOB_LIST_COMPLETED, NULL, NULL, NULL, before_ms,
	    limit, items, n);
}

int
qesd_job_list_signed_before(qesd_tx *tx, int64_t before_ms, size_t limit,
    qesd_job **items, size_t *n)
{
	return list(tx, QESD_JOB_LIST_SIGNED, NULL, NULL, NULL, before_ms,
	    limit, items, n);
}
