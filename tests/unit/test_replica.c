/*
 * test_replica.c - unit tests of replica failover in the store and of the
 * reaper (replicas.c) on a temporary SQLite database with a fake clock:
 * a replica whose heartbeat is older than replica_dead_after_s loses its
 * open sessions (replica_lost, audit record, jobs failed with
 * device_disconnected through the jobs service), a live one never does, a
 * restarted replica of the same name is alive, a reaper that was cut off
 * from the store waits before judging others, two reapers close a session
 * once (compare-and-set), a replica that was reaped while alive learns it
 * on its next beat, and sessions of a replica without any heartbeat row
 * are reaped only after QESD_REPLICA_ORPHAN_AFTER_MS; a replica starting
 * up fails the jobs its predecessor and dead replicas left open, never
 * those a live replica holds. Links qesd_core; no server runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "qes/audit.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "app.h"
#include "config.h"
#include "jobs.h"
#include "replicas.h"
#include "store.h"
#include "store_devices.h"
#include "store_jobs.h"
#include "qesd_fixture.h"

#define CRED "crd_aaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HB_S 5
#define DEAD_S 20

struct fx {
	char dir[64];
	char db[QFX_PATH_MAX];
	char clock[QFX_PATH_MAX];
	qesd_config cfg;
	qesd_app *app;
	qesd_tenant tenant;
	char device_id[QESD_ID_SIZE];
	/* what the callbacks saw */
	int reaped_calls;
	char reaped_session[QESD_ID_SIZE];
	int self_reaped;
};

/* the hub's session_reaped: the jobs service ends the session's jobs */
static void
on_reaped(void *ctx, const char *tenant_id, const char *device_id,
    const char *session_id)
{
	struct fx *f = ctx;

	f->reaped_calls++;
	snprintf(f->reaped_session, sizeof(f->reaped_session), "%s", session_id);
	qesd_jobs_on_session_closed(f->app->jobs, tenant_id, device_id,
	    session_id, QESD_REASON_REPLICA_LOST);
}

static void
on_self_reaped(void *ctx)
{
	struct fx *f = ctx;

	f->self_reaped++;
}

static qesd_replicas *
replica(struct fx *f, const char *name)
{
	qesd_replicas_config c;
	qesd_replicas *r = NULL;

	memset(&c, 0, sizeof(c));
	c.replica = name;
	c.heartbeat_s = HB_S;
	c.dead_after_s = DEAD_S;
	c.session_reaped = on_reaped;
	c.self_reaped = on_self_reaped;
	c.ctx = f;
	assert_int_equal(qesd_replicas_new(f->app, &c, &r), 0);
	return r;
}

/* An open session of the device on replica, seen at now. */
static void
open_session(struct fx *f, const char *replica_name, int64_t seen_ms,
    char id[QESD_ID_SIZE])
{
	qesd_device_session s;
	qesd_tx *tx = NULL;

	memset(&s, 0, sizeof(s));
	assert_int_equal(qesd_id_new("ses", id), 0);
	snprintf(s.id, sizeof(s.id), "%s", id);
	snprintf(s.tenant_id, sizeof(s.tenant_id), "%s", f->tenant.id);
	snprintf(s.device_id, sizeof(s.device_id), "%s", f->device_id);
	snprintf(s.replica, sizeof(s.replica), "%s", replica_name);
	snprintf(s.client_addr, sizeof(s.client_addr), "192.0.2.9");
	s.connected_at_ms = s.last_seen_at_ms = seen_ms;
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_session_insert(tx, &s), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
}

/* A job sent on session_id and waiting for the signer. */
static void
job_at_device(struct fx *f, const char *session_id, char id[QESD_ID_SIZE])
{
	qesd_job j;
	qesd_tx *tx = NULL;
	int64_t now = qesd_now_ms(f->app);

	memset(&j, 0, sizeof(j));
	snprintf(j.tenant_id, sizeof(j.tenant_id), "%s", f->tenant.id);
	j.state = QESD_JOB_CREATED;
	snprintf(j.credential_id, sizeof(j.credential_id), CRED);
	snprintf(j.device_id, sizeof(j.device_id), "%s", f->device_id);
	snprintf(j.verification_code, sizeof(j.verification_code), "0042");
	j.created_at_ms = j.updated_at_ms = now;
	j.expires_at_ms = now + 3600 * 1000;
	j.request = strdup("{\"v\":1}");
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_job_insert(tx, &j), 0);
	snprintf(j.session_id, sizeof(j.session_id), "%s", session_id);
	assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_DISPATCHED, NULL, now),
	    0);
	assert_int_equal(qesd_job_update(tx, &j, QESD_JOB_AWAITING_USER, NULL,
	    now), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	snprintf(id, QESD_ID_SIZE, "%s", j.id);
	qesd_job_clear(&j);
}

static void
get_session(struct fx *f, const char *id, qesd_device_session *out)
{
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_session_get(tx, f->tenant.id, id, out), 0);
	qesd_tx_end(tx);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-replica-XXXXXX");
	if (qfx_config(&f->cfg, f->dir, f->db, f->clock) != 0 ||
	    qfx_app(&f->cfg, QFX_PEPPER, &f->app) != 0)
		return -1;
	qfx_tenant(f->app, "Acme Bank", qesd_now_ms(f->app), &f->tenant);
	qfx_device(f->db, f->tenant.id, 1, f->device_id);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	qfx_teardown(f->app, &f->cfg, f->dir);
	free(f);
	return 0;
}

/* r reaps once and closes want sessions. */
static void
reaps(qesd_replicas *r, size_t want)
{
	size_t closed = 9;

	assert_int_equal(qesd_replicas_reap(r, &closed), 0);
	assert_int_equal(closed, want);
}

/* Beat b (and a when given) at each offset in seconds. */
static void
beat_at(struct fx *f, long long s, qesd_replicas *b, qesd_replicas *a)
{
	qfx_set_clock(f->clock, s * 1000);
	assert_int_equal(qesd_replicas_beat(b), 0);
	if (a != NULL)
		assert_int_equal(qesd_replicas_beat(a), 0);
}

/* ------------------------------------------------------------------------- */

/* A killed replica's session closes once, with its record; its job fails. */
static void
test_dead_replica_reaped(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a = replica(f, "qesd-a"), *b = replica(f, "qesd-b");
	qesd_device_session s;
	qesd_job job;
	qes_audit_chain chain;
	qesd_tx *tx = NULL;
	char ses[QESD_ID_SIZE], job_id[QESD_ID_SIZE], mine[QESD_ID_SIZE];

	beat_at(f, 0, b, a);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	open_session(f, "qesd-b", qesd_now_ms(f->app), mine);
	job_at_device(f, ses, job_id);
	/* nobody is judged before the reaper's own beats were steady */
	reaps(b, 0);
	beat_at(f, 10, b, a);		/* a's last beat */
	beat_at(f, 20, b, NULL);
	beat_at(f, 29, b, NULL);
	/* a beat 19 s ago: alive still */
	reaps(b, 0);
	assert_int_equal(f->reaped_calls, 0);
	beat_at(f, 31, b, NULL);
	reaps(b, 1);
	assert_int_equal(f->reaped_calls, 1);
	assert_string_equal(f->reaped_session, ses);
	get_session(f, ses, &s);
	assert_true(s.closed_at_ms > 0);
	assert_string_equal(s.close_reason, "replica_lost");
	/* b's own session is never b's reaper's to close */
	get_session(f, mine, &s);
	assert_int_equal(s.closed_at_ms, 0);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM audit_records WHERE "
	    "type = 'device.session_closed' AND details LIKE "
	    "'%\"reason\":\"replica_lost\"%' AND details LIKE '%qesd-a%'"), 1);
	assert_int_equal(qesd_audit_verify(f->app->store, f->tenant.id, &chain),
	    0);
	/* the job ended definitely, through the jobs service */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, job_id, &job), 0);
	qesd_tx_end(tx);
	assert_int_equal(job.state, QESD_JOB_FAILED);
	assert_string_equal(job.reason, "device_disconnected");
	qesd_job_clear(&job);
	/* a second round finds nothing */
	reaps(b, 0);
	assert_int_equal(f->reaped_calls, 1);
	qesd_replicas_free(a);
	qesd_replicas_free(b);
}

/* Two reapers: the store's compare-and-set closes a session once. */
static void
test_reap_compare_and_set(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a = replica(f, "qesd-a"), *b = replica(f, "qesd-b");
	qesd_device_session *v = NULL;
	qesd_tx *tx = NULL;
	char ses[QESD_ID_SIZE];
	int64_t now, dead, orphan;
	size_t n = 0;

	beat_at(f, 0, b, a);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	qfx_set_clock(f->clock, 25000);
	now = qesd_now_ms(f->app);
	dead = now - DEAD_S * 1000;
	orphan = now - QESD_REPLICA_ORPHAN_AFTER_MS;
	/* both reapers listed it */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_sessions_of_lost_replicas(tx, dead, orphan, 10, &v,
	    &n), 0);
	qesd_tx_end(tx);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, ses);
	free(v);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_session_reap(tx, f->tenant.id, ses, dead, orphan,
	    now), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	/* the second finds it closed */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_session_reap(tx, f->tenant.id, ses, dead, orphan,
	    now), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	/* a replica that beat between the list and the close keeps its own */
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	assert_int_equal(qesd_replicas_beat(a), 0);
	assert_int_equal(f->self_reaped, 1);	/* the first close marked it */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_session_reap(tx, f->tenant.id, ses, dead, orphan,
	    now), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	/* the mark is cleared by that beat */
	assert_int_equal(qesd_replicas_beat(a), 0);
	assert_int_equal(f->self_reaped, 1);
	qesd_replicas_free(a);
	qesd_replicas_free(b);
}

/* A new process of a dead replica's name is alive: its sessions stay. */
static void
test_restarted_name_alive(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a1 = replica(f, "qesd-a"), *b = replica(f, "qesd-b");
	qesd_replicas *a2;
	qesd_device_session s;
	char ses[QESD_ID_SIZE];

	beat_at(f, 0, b, a1);
	beat_at(f, 10, b, NULL);
	beat_at(f, 20, b, NULL);
	qfx_set_clock(f->clock, 25000);
	a2 = replica(f, "qesd-a");	/* restarted: a later start time */
	assert_true(qesd_replicas_started_at(a2) >
	    qesd_replicas_started_at(a1));
	assert_int_equal(qesd_replicas_beat(a2), 0);
	assert_int_equal(f->self_reaped, 0);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	beat_at(f, 30, b, a2);
	reaps(b, 0);
	get_session(f, ses, &s);
	assert_int_equal(s.closed_at_ms, 0);
	/* the old process's beat, arriving late, does not roll the row back
	 * to it: a1 is not told it was reaped, and a2 stays alive */
	assert_int_equal(qesd_replicas_beat(a1), 0);
	assert_int_equal(f->self_reaped, 0);
	qesd_replicas_free(a1);
	qesd_replicas_free(a2);
	qesd_replicas_free(b);
}

/* A reaper whose own beats had a gap waits dead_after_s before judging. */
static void
test_reaper_waits_after_gap(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a = replica(f, "qesd-a"), *b = replica(f, "qesd-b");
	char ses[QESD_ID_SIZE];

	beat_at(f, 0, b, a);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	/* b could not beat for 30 s (the store was away for it) */
	beat_at(f, 30, b, NULL);
	reaps(b, 0);
	beat_at(f, 40, b, NULL);
	reaps(b, 0);
	beat_at(f, 50, b, NULL);
	reaps(b, 1);
	qesd_replicas_free(a);
	qesd_replicas_free(b);
}

/* A replica name without any heartbeat row: only long-silent sessions. */
static void
test_orphan_sessions(void **state)
{
	struct fx *f = *state;
	qesd_replicas *b = replica(f, "qesd-b");
	qesd_device_session s;
	char ses[QESD_ID_SIZE];
	long long t;

	beat_at(f, 0, b, NULL);
	open_session(f, "qesd-old", qesd_now_ms(f->app), ses);
	for (t = 10; t <= 100; t += 10)
		beat_at(f, t, b, NULL);
	reaps(b, 0);
	for (t = 110; t <= 130; t += 10)
		beat_at(f, t, b, NULL);
	reaps(b, 1);
	get_session(f, ses, &s);
	assert_string_equal(s.close_reason, "replica_lost");
	qesd_replicas_free(b);
}

static void
job_state(struct fx *f, const char *id, const char *want_state,
    const char *want_reason)
{
	qesd_job job;
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_job_get(tx, f->tenant.id, id, &job), 0);
	qesd_tx_end(tx);
	assert_string_equal(qesd_job_state_name(job.state), want_state);
	assert_string_equal(job.reason, want_reason);
	qesd_job_clear(&job);
}

/* A starting replica ends what it and dead replicas left, not the rest. */
static void
test_recover_spares_live_replicas(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a = replica(f, "qesd-a"), *c = replica(f, "qesd-c");
	qesd_replicas *old_b = replica(f, "qesd-b");
	char ses_a[QESD_ID_SIZE], ses_b[QESD_ID_SIZE], ses_c[QESD_ID_SIZE];
	char job_a[QESD_ID_SIZE], job_b[QESD_ID_SIZE], job_c[QESD_ID_SIZE];
	uint64_t count = 0;

	free(f->cfg.replica_name);
	f->cfg.replica_name = strdup("qesd-b");	/* this process */
	beat_at(f, 0, a, c);
	assert_int_equal(qesd_replicas_beat(old_b), 0);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses_a);
	open_session(f, "qesd-b", qesd_now_ms(f->app), ses_b);
	open_session(f, "qesd-c", qesd_now_ms(f->app), ses_c);
	job_at_device(f, ses_a, job_a);
	job_at_device(f, ses_b, job_b);
	job_at_device(f, ses_c, job_c);
	/* c stops beating; a goes on; b restarts now (its old row is fresh) */
	beat_at(f, 10, a, NULL);
	beat_at(f, 21, a, NULL);
	assert_int_equal(qesd_jobs_recover(f->app->jobs, &count), 0);
	assert_int_equal(count, 2);
	job_state(f, job_a, "awaiting_user", "");
	job_state(f, job_b, "failed", "gateway_restart");
	job_state(f, job_c, "failed", "gateway_restart");
	qesd_replicas_free(a);
	qesd_replicas_free(c);
	qesd_replicas_free(old_b);
}

/* Jobs of a session closed long ago (its closer died first) end. */
static void
test_leftover_jobs(void **state)
{
	struct fx *f = *state;
	qesd_replicas *b = replica(f, "qesd-b");
	qesd_tx *tx = NULL;
	char ses[QESD_ID_SIZE], job[QESD_ID_SIZE];
	size_t closed = 9;

	beat_at(f, 0, b, NULL);
	open_session(f, "qesd-a", qesd_now_ms(f->app), ses);
	job_at_device(f, ses, job);
	/* qesd-a closed the row and died before failing the job */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_session_close(tx, f->tenant.id, ses,
	    qesd_now_ms(f->app), qesd_now_ms(f->app), "peer_closed"), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	beat_at(f, 20, b, NULL);
	assert_int_equal(qesd_replicas_reap(b, &closed), 0);
	assert_int_equal(f->reaped_calls, 0);	/* maybe still being failed */
	job_state(f, job, "awaiting_user", "");
	beat_at(f, 31, b, NULL);
	reaps(b, 0);
	assert_int_equal(f->reaped_calls, 1);
	job_state(f, job, "failed", "device_disconnected");
	assert_int_equal(qesd_replicas_reap(b, &closed), 0);
	assert_int_equal(f->reaped_calls, 1);
	qesd_replicas_free(b);
}

/* Rows of replicas gone for a week without sessions are dropped. */
static void
test_forget_old_rows(void **state)
{
	struct fx *f = *state;
	qesd_replicas *a = replica(f, "qesd-a"), *c = replica(f, "qesd-c");
	qesd_replicas *b = replica(f, "qesd-b");
	qesd_tx *tx = NULL;
	char ses[QESD_ID_SIZE];
	uint64_t n = 0;
	long long t, week = 7LL * 24 * 3600;

	beat_at(f, 0, a, c);
	open_session(f, "qesd-c", qesd_now_ms(f->app), ses);
	/* a jump of the fake clock: b's beats start a week later */
	for (t = week + 100; t <= week + 130; t += 10)
		beat_at(f, t, b, NULL);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM replicas"), 3);
	/* c still holds an open session: only a's row goes */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_replicas_forget(tx, qesd_now_ms(f->app) -
	    QESD_REPLICA_FORGET_AFTER_MS, &n), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	assert_int_equal(n, 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM replicas WHERE "
	    "name = 'qesd-a'"), 0);
	/* the reaper closes c's session, then drops c's row too */
	reaps(b, 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM replicas"), 1);
	assert_int_equal(qfx_count(f->db, "SELECT count(*) FROM replicas WHERE "
	    "name = 'qesd-b'"), 1);
	qesd_replicas_free(a);
	qesd_replicas_free(b);
	qesd_replicas_free(c);
}

/* Bad configurations are refused. */
static void
test_config(void **state)
{
	struct fx *f = *state;
	qesd_replicas_config c;
	qesd_replicas *r = NULL;

	memset(&c, 0, sizeof(c));
	c.replica = "qesd-a";
	c.heartbeat_s = 5;
	c.dead_after_s = 10;	/* not more than twice the beat */
	assert_int_equal(qesd_replicas_new(f->app, &c, &r), QES_ERR_INVALID_ARG);
	c.dead_after_s = 11;
	assert_int_equal(qesd_replicas_new(f->app, &c, &r), 0);
	qesd_replicas_free(r);
	c.replica = "";
	assert_int_equal(qesd_replicas_new(f->app, &c, &r), QES_ERR_INVALID_ARG);
	c.replica = "qesd-a";
	c.heartbeat_s = 0;
	assert_int_equal(qesd_replicas_new(f->app, &c, &r), QES_ERR_INVALID_ARG);
	assert_null(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dead_replica_reaped, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reap_compare_and_set, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_restarted_name_alive, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reaper_waits_after_gap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_orphan_sessions, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_recover_spares_live_replicas,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_old_rows, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
