/*
 * test_pinentry_cancel.c - qes_pinentry_cancel(): another thread closes an
 * open dialog (the agent's loop does this when the gateway cancels a job).
 *
 * Runs the scripted pinentry (tests/helpers/qes-test-pinentry.c) through a
 * small shell wrapper that records its process id, so the tests can check
 * that the program is really gone after qes_pinentry_free(); one wrapper
 * also ignores SIGTERM, to show that the dialog call still returns at once
 * (the cancel pipe wakes it) and that free() kills the program for good.
 * Skipped when QES_BUILD_DIR is not set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/pinentry.h"
#include "qes/secret.h"

struct fixture {
	char dir[512];
	char script[600];
	char pidfile[600];
	char wrapper[600];
	char program[PATH_MAX];
	/* what the attach hook saw, under lock */
	pthread_mutex_t lock;
	qes_pinentry *attached;
	int attach_calls, detach_calls;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/qes-test-pe-cancel.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->script, sizeof(f->script), "%s/script", f->dir);
	snprintf(f->pidfile, sizeof(f->pidfile), "%s/pid", f->dir);
	snprintf(f->wrapper, sizeof(f->wrapper), "%s/pinentry.sh", f->dir);
	setenv("QES_TEST_PINENTRY_SCRIPT", f->script, 1);
	unsetenv("QES_TEST_PINENTRY_LOG");
	unsetenv("GPG_TTY");
	unsetenv("DISPLAY");
	setenv("TERM", "dumb", 1);
	pthread_mutex_init(&f->lock, NULL);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static void
write_file(const char *path, const char *text, int mode)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, (mode_t)mode), 0);
}

/* The wrapper: record $$, optionally ignore SIGTERM, exec the scripted pinentry. */
static struct fixture *
need_pinentry(void **state, int ignore_term, const char *script)
{
	struct fixture *f = *state;
	const char *build = getenv("QES_BUILD_DIR");
	char text[PATH_MAX + 1400];

	if (build == NULL || *build == '\0')
		skip();
	snprintf(f->program, sizeof(f->program), "%s/tests/qes-test-pinentry", build);
	assert_int_equal(access(f->program, X_OK), 0);
	snprintf(text, sizeof(text), "#!/bin/sh\necho $$ > '%s'\n%sexec '%s'\n",
	    f->pidfile, ignore_term ? "trap '' TERM\n" : "", f->program);
	write_file(f->wrapper, text, 0700);
	write_file(f->script, script, 0600);
	return f;
}

static pid_t
read_pid(struct fixture *f)
{
	FILE *fp = fopen(f->pidfile, "r");
	long pid = 0;

	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%ld", &pid), 1);
	fclose(fp);
	assert_true(pid > 1);
	return (pid_t)pid;
}

static void
attach_hook(void *arg, qes_pinentry *pe)
{
	struct fixture *f = arg;

	pthread_mutex_lock(&f->lock);
	f->attached = pe;
	if (pe != NULL)
		f->attach_calls++;
	else
		f->detach_calls++;
	pthread_mutex_unlock(&f->lock);
}

static qes_pinentry *
open_pe(struct fixture *f)
{
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;

	opts.program = f->wrapper;
	opts.attach = attach_hook;
	opts.attach_arg = f;
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	assert_non_null(pe);
	return pe;
}

/* What the agent's loop does: cancel under the lock the hook takes. */
static void *
canceller(void *arg)
{
	struct fixture *f = arg;
	struct timespec ts = { 0, 300 * 1000000L };

	nanosleep(&ts, NULL);
	pthread_mutex_lock(&f->lock);
	qes_pinentry_cancel(f->attached);
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

static void
assert_gone(pid_t pid)
{
	errno = 0;
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
}

static void
run_cancel_during_getpin(void **state, int ignore_term)
{
	struct fixture *f = need_pinentry(state, ignore_term, "sleep 60\npin 1234\n");
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	pthread_t th;
	int64_t t0;
	pid_t pid;

	assert_non_null(s);
	pe = open_pe(f);
	assert_int_equal(f->attach_calls, 1);
	assert_ptr_equal(f->attached, pe);
	pid = read_pid(f);
	assert_int_equal(pthread_create(&th, NULL, canceller, f), 0);
	t0 = now_ms();
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_CANCELLED);
	assert_true(now_ms() - t0 < 5000);
	assert_int_equal(qes_secret_len(s), 0);
	assert_non_null(strstr(qes_pinentry_errmsg(pe), "cancelled"));
	assert_int_equal(pthread_join(th, NULL), 0);
	/* every later dialog is cancelled too, at once */
	assert_int_equal(qes_pinentry_confirm(pe, "T", "D", NULL, NULL),
	    QES_ERR_CANCELLED);
	qes_pinentry_free(pe);
	assert_int_equal(f->detach_calls, 1);
	assert_null(f->attached);
	assert_gone(pid);
	qes_secret_free(s);
}

static void
test_cancel_during_getpin(void **state)
{
	run_cancel_during_getpin(state, 0);
}

/* A pinentry that ignores SIGTERM: the call returns anyway, free() kills it. */
static void
test_cancel_ignoring_sigterm(void **state)
{
	run_cancel_during_getpin(state, 1);
}

static void
test_cancel_before_dialog(void **state)
{
	struct fixture *f = need_pinentry(state, 0, "confirm\n");
	qes_pinentry *pe;
	pid_t pid;

	pe = open_pe(f);
	pid = read_pid(f);
	pthread_mutex_lock(&f->lock);
	qes_pinentry_cancel(f->attached);
	qes_pinentry_cancel(f->attached);	/* twice is fine */
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(qes_pinentry_confirm(pe, "T", "D", NULL, NULL),
	    QES_ERR_CANCELLED);
	assert_int_equal(qes_pinentry_message(pe, "T", "D"), QES_ERR_CANCELLED);
	qes_pinentry_free(pe);
	assert_gone(pid);
}

/* Without a cancel, the hook changes nothing: dialogs answer normally. */
static void
test_attach_without_cancel(void **state)
{
	struct fixture *f = need_pinentry(state, 0, "confirm\npin 0000\n");
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;

	assert_non_null(s);
	pe = open_pe(f);
	assert_int_equal(qes_pinentry_confirm(pe, "T", "D", NULL, NULL), 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_int_equal(qes_secret_len(s), 4);
	qes_pinentry_free(pe);
	assert_int_equal(f->attach_calls, 1);
	assert_int_equal(f->detach_calls, 1);
	qes_pinentry_free(NULL);
	qes_pinentry_cancel(NULL);
	qes_secret_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cancel_during_getpin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_ignoring_sigterm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_before_dialog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attach_without_cancel, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
