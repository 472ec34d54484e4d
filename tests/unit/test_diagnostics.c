/*
 * test_diagnostics.c - the waits of qesd's diagnostics service
 * (src/qesd/diagnostics.c) on their own: a fake send records the frames,
 * a fake wake records the tokens, and the agent's answers are real qes.v1
 * messages built and parsed by libqes. What matters: an answer reaches the
 * right wait and wakes it exactly once, whether it comes before or after
 * the arm; one wait per device; the timeout, a closed session and the
 * agent's refusals each give their outcome; a resume that runs before the
 * arm (deadline, drain) frees nothing twice (ASan build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "diagnostics.h"

#define MAX_FRAMES 16

static struct {
	char ids[MAX_FRAMES][24];	/* ids of the diagnose messages sent */
	char devices[MAX_FRAMES][QESD_ID_SIZE];
	size_t n;
	int fail;			/* the next send returns this */
	uint64_t woken[MAX_FRAMES];
	size_t n_woken;
} fx;

static int
fake_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	char err[200];

	(void)ctx;
	(void)tenant_id;
	if (fx.fail != 0)
		return fx.fail;
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_AGENT);
	assert_int_equal(qes_proto_parse(frame, len, &lim, &m, err, sizeof(err)), 0);
	assert_int_equal(m->type, QES_PROTO_DIAGNOSE);
	assert_true(fx.n < MAX_FRAMES);
	strcpy(fx.ids[fx.n], m->id);
	strcpy(fx.devices[fx.n], device_id);
	fx.n++;
	qes_proto_msg_free(m);
	return 0;
}

static int
fake_wake(qesd_server *srv, uint64_t token)
{
	(void)srv;
	assert_true(fx.n_woken < MAX_FRAMES);
	fx.woken[fx.n_woken++] = token;
	return 0;
}

static qesd_diag *
new_diag(size_t max_waiting, size_t max_report_bytes)
{
	qesd_diag_config c;
	qesd_diag *d = NULL;

	memset(&fx, 0, sizeof(fx));
	memset(&c, 0, sizeof(c));
	c.send = fake_send;
	c.wake = fake_wake;
	c.max_waiting = max_waiting;
	c.max_report_bytes = max_report_bytes;
	assert_int_equal(qesd_diag_new(&c, &d), 0);
	return d;
}

/* A parsed message from the agent: a diagnose_result about ref. */
static qes_proto_msg *
result_msg(const char *ref)
{
	qes_proto_timings t = { 3, 5 };
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	qes_buf *b = qes_buf_new();
	json_t *rep;
	char err[200];

	rep = json_pack("{s:[], s:[], s:{s:s, s:s, s:s}}", "modules", "tokens",
	    "system", "agent_version", "0.1.0", "openssl_version", "OpenSSL 3",
	    "time", "2026-01-02T03:04:05Z");
	assert_non_null(rep);
	assert_non_null(b);
	assert_int_equal(qes_proto_build_diagnose_result("a1", ref, rep, &t, b), 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	assert_int_equal(qes_proto_parse(qes_buf_data(b), qes_buf_len(b), &lim, &m,
	    err, sizeof(err)), 0);
	json_decref(rep);
	qes_buf_free(b);
	return m;
}

static qes_proto_msg *
error_msg(const char *code, const char *ref)
{
	qes_proto_error e = { code, "a diagnosis is running", ref };
	qes_proto_limits lim;
	qes_proto_msg *m = NULL;
	qes_buf *b = qes_buf_new();
	char err[200];

	assert_non_null(b);
	assert_int_equal(qes_proto_build_error("a2", &e, b), 0);
	qes_proto_limits_init(&lim, QES_PROTO_ROLE_GATEWAY);
	assert_int_equal(qes_proto_parse(qes_buf_data(b), qes_buf_len(b), &lim, &m,
	    err, sizeof(err)), 0);
	qes_buf_free(b);
	return m;
}

static void
deliver(qesd_diag *d, const char *device, qes_proto_msg *m)
{
	qesd_diag_on_message(d, "ten_a", device, "ses_1", m);
	qes_proto_msg_free(m);
}

static void
test_answer_after_arm(void **state)
{
	qesd_diag *d = new_diag(0, 0);
	qesd_diag_wait *w = NULL;
	qes_proto_msg *m;
	qesd_diag_result res;

	(void)state;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	assert_int_equal(fx.n, 1);
	assert_string_equal(fx.devices[0], "dev_1");
	assert_int_equal(qesd_diag_waiting(d), 1);
	qesd_diag_arm(w, NULL, 42);
	assert_int_equal(fx.n_woken, 0);
	/* not ours: another ref, another device, another tenant, a pong */
	deliver(d, "dev_1", result_msg("someone-else"));
	deliver(d, "dev_2", result_msg(fx.ids[0]));
	m = result_msg(fx.ids[0]);
	qesd_diag_on_message(d, "ten_b", "dev_1", "ses_1", m);
	qes_proto_msg_free(m);
	assert_int_equal(fx.n_woken, 0);
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	assert_int_equal(fx.n_woken, 1);
	assert_int_equal(fx.woken[0], 42);
	/* a second answer to the same message wakes nobody */
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	deliver(d, "dev_1", error_msg("unexpected_message", fx.ids[0]));
	assert_int_equal(fx.n_woken, 1);
	/* still one at a time until the resume took it */
	assert_int_equal(qesd_diag_waiting(d), 1);
	qesd_diag_finish(w, &res);
	assert_int_equal(qesd_diag_waiting(d), 0);
	assert_int_equal(res.outcome, QESD_DIAG_OK);
	assert_string_equal(qesd_diag_outcome_name(res.outcome), "ok");
	assert_string_equal(res.session_id, "ses_1");
	assert_true(res.rtt_ms >= 0 && res.rtt_ms < 10000);
	assert_int_equal(res.scan_ms, 3);
	assert_int_equal(res.total_ms, 5);
	assert_non_null(res.report);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    res.report, "system"), "agent_version")), "0.1.0");
	qesd_diag_result_clear(&res);
	qesd_diag_free(d);
}

static void
test_answer_before_arm(void **state)
{
	qesd_diag *d = new_diag(0, 0);
	qesd_diag_wait *w = NULL;
	qesd_diag_result res;

	(void)state;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	assert_int_equal(fx.n_woken, 0);	/* nobody to wake yet */
	qesd_diag_arm(w, NULL, 7);
	assert_int_equal(fx.n_woken, 1);	/* the arm wakes at once */
	assert_int_equal(fx.woken[0], 7);
	qesd_diag_finish(w, &res);
	assert_int_equal(res.outcome, QESD_DIAG_OK);
	qesd_diag_result_clear(&res);
	qesd_diag_free(d);
}

static void
test_one_per_device_and_limit(void **state)
{
	qesd_diag *d = new_diag(2, 0);
	qesd_diag_wait *w1 = NULL, *w2 = NULL, *w3 = NULL;
	qesd_diag_result res;

	(void)state;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w1), 0);
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w3),
	    QES_ERR_CONFLICT);
	assert_null(w3);
	assert_int_equal(fx.n, 1);		/* the device was not bothered */
	/* the same device id in another tenant is another device */
	assert_int_equal(qesd_diag_start(d, "ten_b", "dev_1", "ses_9", &w2), 0);
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_3", "ses_3", &w3),
	    QES_ERR_LIMIT);
	assert_int_equal(qesd_diag_waiting(d), 2);
	/* no answer: the resume at the deadline, before or after the arm */
	qesd_diag_arm(w1, NULL, 1);
	qesd_diag_finish(w1, &res);
	assert_int_equal(res.outcome, QESD_DIAG_TIMEOUT);
	assert_int_equal(res.rtt_ms, -1);
	assert_null(res.report);
	qesd_diag_finish(w2, &res);		/* resume first (drain) ... */
	assert_int_equal(res.outcome, QESD_DIAG_TIMEOUT);
	qesd_diag_arm(w2, NULL, 2);		/* ... then the arm: no wake */
	assert_int_equal(fx.n_woken, 0);
	assert_int_equal(qesd_diag_waiting(d), 0);
	/* the late answer finds nobody */
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	assert_int_equal(fx.n_woken, 0);
	/* and the device can be diagnosed again */
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w1), 0);
	qesd_diag_abandon(w1);
	assert_int_equal(qesd_diag_waiting(d), 0);
	qesd_diag_free(d);
}

static void
test_agent_refusals(void **state)
{
	qesd_diag *d = new_diag(0, 0);
	qesd_diag_wait *w = NULL;
	qesd_diag_result res;

	(void)state;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	qesd_diag_arm(w, NULL, 5);
	deliver(d, "dev_1", error_msg("unexpected_message", "other-ref"));
	assert_int_equal(fx.n_woken, 0);
	deliver(d, "dev_1", error_msg("unexpected_message", fx.ids[0]));
	assert_int_equal(fx.n_woken, 1);
	qesd_diag_finish(w, &res);
	assert_int_equal(res.outcome, QESD_DIAG_BUSY);
	assert_string_equal(res.agent_error, "unexpected_message");
	assert_true(res.rtt_ms >= 0);
	assert_null(res.report);

	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	qesd_diag_arm(w, NULL, 6);
	deliver(d, "dev_1", error_msg("internal", fx.ids[1]));
	qesd_diag_finish(w, &res);
	assert_int_equal(res.outcome, QESD_DIAG_AGENT_ERROR);
	assert_string_equal(res.agent_error, "internal");
	assert_string_equal(qesd_diag_outcome_name(res.outcome), "agent_error");
	assert_int_equal(fx.n_woken, 2);
	qesd_diag_free(d);
}

static void
test_session_closed(void **state)
{
	qesd_diag *d = new_diag(0, 0);
	qesd_diag_wait *w = NULL;
	qesd_diag_result res;

	(void)state;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	qesd_diag_arm(w, NULL, 9);
	/* an older session of the device, or another device, ends: not ours */
	qesd_diag_on_session_closed(d, "ten_a", "dev_1", "ses_0", "replaced");
	qesd_diag_on_session_closed(d, "ten_a", "dev_2", "ses_1", "peer_closed");
	assert_int_equal(fx.n_woken, 0);
	qesd_diag_on_session_closed(d, "ten_a", "dev_1", "ses_1", "connection_lost");
	assert_int_equal(fx.n_woken, 1);
	assert_int_equal(fx.woken[0], 9);
	/* an answer that still arrives changes nothing */
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	assert_int_equal(fx.n_woken, 1);
	qesd_diag_finish(w, &res);
	assert_int_equal(res.outcome, QESD_DIAG_SESSION_CLOSED);
	assert_string_equal(res.close_reason, "connection_lost");
	assert_null(res.report);
	qesd_diag_free(d);
}

static void
test_send_fails_and_invalid_report(void **state)
{
	qesd_diag *d = new_diag(0, 40);
	qesd_diag_wait *w = NULL, *bad = NULL;
	qesd_diag_result res;

	(void)state;
	fx.fail = QES_ERR_NOT_FOUND;		/* the session went meanwhile */
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w),
	    QES_ERR_NOT_FOUND);
	fx.fail = QES_ERR_LIMIT;		/* its send queue is full */
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w),
	    QES_ERR_LIMIT);
	fx.fail = QES_ERR_IO;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w),
	    QES_ERR_INTERNAL);
	assert_null(w);
	assert_int_equal(qesd_diag_waiting(d), 0);
	fx.fail = 0;
	assert_int_equal(qesd_diag_start(d, "ten_a", "dev_1", "ses_1", &w), 0);
	/* bad arguments */
	assert_int_equal(qesd_diag_start(d, "ten_a", "", "ses_1", &bad),
	    QES_ERR_INVALID_ARG);
	assert_null(bad);
	qesd_diag_arm(w, NULL, 3);
	/* the report is larger than this gateway's 40 bytes */
	deliver(d, "dev_1", result_msg(fx.ids[0]));
	assert_int_equal(fx.n_woken, 1);
	qesd_diag_finish(w, &res);
	assert_int_equal(res.outcome, QESD_DIAG_INVALID);
	assert_non_null(res.invalid);
	assert_null(res.report);
	qesd_diag_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answer_after_arm),
		cmocka_unit_test(test_answer_before_arm),
		cmocka_unit_test(test_one_per_device_and_limit),
		cmocka_unit_test(test_agent_refusals),
		cmocka_unit_test(test_session_closed),
		cmocka_unit_test(test_send_fails_and_invalid_report),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
