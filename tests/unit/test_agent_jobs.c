/*
 * test_agent_jobs.c - the agent's job runner (src/agent/jobs.c) against a
 * real SoftHSM2 token and the scripted pinentry: what the connection loop
 * takes from the queue, and in which order. A job reports awaiting_user when
 * its own dialog opens and consented when the token accepted the PIN, both
 * before its result; a declined job never reports consent; a job queued
 * behind another dialog on the same token stays silent until its own dialog
 * opens, and one cancelled while queued reports nothing but its result.
 *
 * Needs the CTest fixture's tokens (QES_TESTENV) and the scripted pinentry
 * (QES_BUILD_DIR/tests/qes-test-pinentry); skipped without them. Works on a
 * private copy of the token store, so logins here touch no other test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "qes/err.h"
#include "qes/p11.h"
#include "qes/proto.h"

#include "jobs.h"
#include "log.h"

static struct {
	int skip;
	char tmp[128];
	char pinentry[PATH_MAX];
	char script[PATH_MAX];
	char module[PATH_MAX];
	char serial_a[QES_PROTO_SERIAL_MAX + 1];
	char pin_a[64];
	qes_p11 *p11;
	agent_snapshot *snap;
	agent_jobs *jobs;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned wakes;
} g;

static void
wake(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g.mu);
	g.wakes++;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

/* The value of "export NAME=VALUE" in file, or "" */
static void
env_value(const char *file, const char *name, char *out, size_t len)
{
	char line[512], want[128];
	size_t n;
	FILE *f;

	out[0] = '\0';
	snprintf(want, sizeof(want), "export %s=", name);
	n = strlen(want);
	if ((f = fopen(file, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, want, n) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "%s", line + n);
			break;
		}
	fclose(f);
}

static int
group_setup(void **state)
{
	const char *env = getenv("QES_TESTENV"), *build = getenv("QES_BUILD_DIR");
	char src[PATH_MAX], conf[PATH_MAX], cmd[3 * PATH_MAX];
	qes_p11_inventory *inv = NULL;
	agent_jobs_opts o;
	size_t idx = 0;
	FILE *f;

	(void)state;
	g.skip = 1;
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	if (env == NULL || build == NULL)
		return 0;
	snprintf(src, sizeof(src), "%s/tokens/tokens.env", env);
	env_value(src, "QES_TEST_MODULE", g.module, sizeof(g.module));
	env_value(src, "QES_TOKEN_A_SERIAL", g.serial_a, sizeof(g.serial_a));
	env_value(src, "QES_TOKEN_A_PIN", g.pin_a, sizeof(g.pin_a));
	snprintf(g.pinentry, sizeof(g.pinentry), "%s/tests/qes-test-pinentry", build);
	if (g.module[0] == '\0' || g.serial_a[0] == '\0' || g.pin_a[0] == '\0' ||
	    access(g.pinentry, X_OK) != 0)
		return 0;
	snprintf(g.tmp, sizeof(g.tmp), "%s/qes-agent-jobs.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g.tmp) == NULL)
		return -1;
	snprintf(cmd, sizeof(cmd), "cp -a '%s/tokens/store' '%s/store'", env, g.tmp);
	if (system(cmd) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", g.tmp);
	if ((f = fopen(conf, "w")) == NULL)
		return -1;
	fprintf(f, "directories.tokendir = %s/store\nobjectstore.backend = file\n"
	    "log.level = ERROR\n", g.tmp);
	fclose(f);
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(g.script, sizeof(g.script), "%s/script", g.tmp);
	setenv("QES_TEST_PINENTRY_SCRIPT", g.script, 1);
	unsetenv("QES_TEST_PINENTRY_LOG");
	agent_log_set_level(AGENT_LOG_ERROR);

	if (qes_p11_new(&g.p11) != 0 ||
	    qes_p11_add_module(g.p11, g.module, QES_P11_SRC_EXPLICIT, "", &idx) != 0 ||
	    qes_p11_scan(g.p11, &inv) != 0 ||
	    (g.snap = agent_snapshot_new(inv)) == NULL)
		return -1;
	memset(&o, 0, sizeof(o));
	o.p11 = g.p11;
	o.pinentry = g.pinentry;
	o.wake = wake;
	if (agent_jobs_new(&o, &g.jobs) != 0)
		return -1;
	g.skip = 0;
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[256];

	(void)state;
	agent_jobs_free(g.jobs);
	agent_snapshot_unref(g.snap);
	qes_p11_free(g.p11);
	if (g.tmp[0] != '\0' && getenv("QES_KEEP_TMP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", g.tmp);
	}
	pthread_cond_destroy(&g.cv);
	pthread_mutex_destroy(&g.mu);
	return 0;
}

/* The pinentry script, one action per line; restarts from the top. */
static void
script(const char *text)
{
	char pos[PATH_MAX + 8];
	FILE *f;

	snprintf(pos, sizeof(pos), "%s.pos", g.script);
	unlink(pos);
	assert_non_null(f = fopen(g.script, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Submit a sign job for token A's P-256 key (id 02) over one digest. */
static void
sign(const char *job_id)
{
	static uint8_t digest[32];
	qes_proto_sign rq;
	char credential[QES_PROTO_CREDENTIAL_MAX + 1], detail[256];

	SHA256((const uint8_t *)job_id, strlen(job_id), digest);
	snprintf(credential, sizeof(credential), "%s:02", g.serial_a);
	memset(&rq, 0, sizeof(rq));
	rq.job_id = job_id;
	rq.credential = credential;
	rq.scheme = QES_SIG_ECDSA;
	rq.md = QES_MD_SHA256;
	rq.digests = digest;
	rq.n_digests = 1;
	rq.requester.tenant = "Test GmbH";
	rq.requester.application = "unit test";
	rq.title = job_id;
	rq.description = "";
	assert_int_equal(qes_verification_code(rq.md, digest, 1, rq.verification_code), 0);
	rq.timeout_s = 60;
	if (agent_jobs_sign(g.jobs, 1, g.snap, &rq, agent_now_ms(), detail,
	    sizeof(detail)) != 0)
		fail_msg("agent_jobs_sign(%s): %s", job_id, detail);
}

/*
 * The next sign result or sign status (inventories are skipped), waiting
 * up to 20 s; written as "JOB:awaiting_user", "JOB:consented", "JOB:ok" or
 * "JOB:ERRNAME".
 */
static void
next_event(char *out, size_t len)
{
	struct timespec until;
	agent_result *r;
	unsigned seen;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	for (;;) {
		/* wakes counted before the take: none can slip between the two */
		pthread_mutex_lock(&g.mu);
		seen = g.wakes;
		pthread_mutex_unlock(&g.mu);
		while ((r = agent_jobs_take(g.jobs)) != NULL) {
			if (r->kind == AGENT_RESULT_SIGN_STATUS) {
				snprintf(out, len, "%s:%s", r->id, r->sign_state ==
				    QES_PROTO_SIGN_CONSENTED ? "consented" : "awaiting_user");
			} else if (r->kind == AGENT_RESULT_SIGN) {
				snprintf(out, len, "%s:%s", r->id, r->err == 0 ? "ok" :
				    qes_errname(r->err));
				if (r->err == 0)
					assert_int_equal(r->n_sigs, 1);
			} else {
				agent_result_free(r);
				continue;
			}
			assert_int_equal(r->session, 1);
			agent_result_free(r);
			return;
		}
		pthread_mutex_lock(&g.mu);
		while (g.wakes == seen && rc == 0)
			rc = pthread_cond_timedwait(&g.cv, &g.mu, &until);
		pthread_mutex_unlock(&g.mu);
		if (rc != 0)
			fail_msg("no event within 20 s");
	}
}

static void
expect_events(const char *const *want, size_t n)
{
	char got[128];
	size_t i;

	for (i = 0; i < n; i++) {
		next_event(got, sizeof(got));
		if (strcmp(got, want[i]) != 0)
			fail_msg("event %zu: expected %s, got %s", i, want[i], got);
	}
}

#define EXPECT(...) do {						\
	static const char *const w_[] = { __VA_ARGS__ };		\
	expect_events(w_, sizeof(w_) / sizeof(w_[0]));			\
} while (0)

static void
test_status_before_result(void **state)
{
	char text[256];

	(void)state;
	if (g.skip)
		skip();
	snprintf(text, sizeof(text), "pin %s\n", g.pin_a);
	script(text);
	sign("job_one");
	EXPECT("job_one:awaiting_user", "job_one:consented", "job_one:ok");
}

static void
test_declined_has_no_consent(void **state)
{
	(void)state;
	if (g.skip)
		skip();
	script("cancel\n");
	sign("job_declined");
	EXPECT("job_declined:awaiting_user", "job_declined:cancelled");
}

static void
test_wrong_pin_has_no_consent(void **state)
{
	char text[256];

	(void)state;
	if (g.skip)
		skip();
	/* three wrong PINs end the job; a right one afterwards resets the count */
	script("pin 918273\npin 918274\npin 918275\n");
	sign("job_wrong");
	EXPECT("job_wrong:awaiting_user", "job_wrong:pin_incorrect");
	snprintf(text, sizeof(text), "pin %s\n", g.pin_a);
	script(text);
	sign("job_right");
	EXPECT("job_right:awaiting_user", "job_right:consented", "job_right:ok");
}

static void
test_queued_job_waits_for_its_dialog(void **state)
{
	char text[256];

	(void)state;
	if (g.skip)
		skip();
	/* the first dialog takes 2 s; the second job waits in the queue */
	snprintf(text, sizeof(text), "sleep 2\npin %s\npin %s\n", g.pin_a, g.pin_a);
	script(text);
	sign("job_first");
	sign("job_second");
	EXPECT("job_first:awaiting_user", "job_first:consented", "job_first:ok",
	    "job_second:awaiting_user", "job_second:consented", "job_second:ok");
}

static void
test_cancelled_while_queued_reports_nothing(void **state)
{
	char text[256];

	(void)state;
	if (g.skip)
		skip();
	snprintf(text, sizeof(text), "sleep 2\npin %s\n", g.pin_a);
	script(text);
	sign("job_running");
	sign("job_queued");
	EXPECT("job_running:awaiting_user");
	assert_int_equal(agent_jobs_cancel(g.jobs, "job_queued"), 0);
	EXPECT("job_queued:cancelled", "job_running:consented", "job_running:ok");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_before_result),
		cmocka_unit_test(test_declined_has_no_consent),
		cmocka_unit_test(test_wrong_pin_has_no_consent),
		cmocka_unit_test(test_queued_job_waits_for_its_dialog),
		cmocka_unit_test(test_cancelled_while_queued_reports_nothing),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
