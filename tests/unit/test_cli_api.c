/*
 * test_cli_api.c - the pure parts of the qes API client (src/cli/api_util.c):
 * problem details to a message, exit codes, server text cleaned for the
 * terminal, URL, id and key text checks.
 *
 * api_util.c is compiled into this test directly: the CLI is an executable,
 * not a library, and these functions need nothing but jansson.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/cli/api_util.c"

static int
problem(long status, const char *body, const char *hdr_id, char *out,
    size_t outlen)
{
	return cli_api_problem_text(status, (const uint8_t *)body,
	    body != NULL ? strlen(body) : 0, hdr_id, out, outlen);
}

static void
test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(cli_api_exit_code(200), QES_EXIT_OK);
	assert_int_equal(cli_api_exit_code(204), QES_EXIT_OK);
	assert_int_equal(cli_api_exit_code(400), QES_EXIT_USAGE);
	assert_int_equal(cli_api_exit_code(413), QES_EXIT_USAGE);
	assert_int_equal(cli_api_exit_code(401), CLI_EXIT_AUTH);
	assert_int_equal(cli_api_exit_code(403), CLI_EXIT_AUTH);
	assert_int_equal(cli_api_exit_code(404), QES_EXIT_NOT_FOUND);
	assert_int_equal(cli_api_exit_code(409), QES_EXIT_FAILURE);
	assert_int_equal(cli_api_exit_code(429), CLI_EXIT_BUSY);
	assert_int_equal(cli_api_exit_code(503), CLI_EXIT_BUSY);
	assert_int_equal(cli_api_exit_code(500), QES_EXIT_FAILURE);
	assert_int_equal(cli_api_exit_code(302), QES_EXIT_FAILURE);
	assert_int_not_equal(CLI_EXIT_AUTH, QES_EXIT_CHAIN_BROKEN);
}

static void
test_problem_full(void **state)
{
	char out[512];

	(void)state;
	assert_int_equal(problem(403, "{\"type\":\"urn:qes:problem:insufficient_scope\","
	    "\"title\":\"Insufficient scope\",\"status\":403,\"detail\":\"this route "
	    "needs scope admin\",\"instance\":\"/v1/api-keys\",\"request_id\":\"abc\"}",
	    "hdr", out, sizeof(out)), CLI_EXIT_AUTH);
	assert_string_equal(out, "Insufficient scope: this route needs scope admin "
	    "(urn:qes:problem:insufficient_scope, request id abc)");
}

static void
test_problem_no_detail_header_id(void **state)
{
	char out[512];

	(void)state;
	assert_int_equal(problem(404, "{\"type\":\"urn:qes:problem:not_found\","
	    "\"title\":\"Not found\",\"status\":404}", "rid-7", out, sizeof(out)),
	    QES_EXIT_NOT_FOUND);
	assert_string_equal(out, "Not found (urn:qes:problem:not_found, request id rid-7)");
}

static void
test_problem_not_a_problem(void **state)
{
	char out[512];

	(void)state;
	/* HTML from a proxy, empty bodies, JSON without type/title, arrays,
	 * duplicate keys: all fall back to the status */
	assert_int_equal(problem(502, "<html>bad gateway</html>", NULL, out,
	    sizeof(out)), QES_EXIT_FAILURE);
	assert_string_equal(out, "the server answered HTTP 502 without a problem "
	    "description (request id none)");
	problem(500, "", "x", out, sizeof(out));
	assert_non_null(strstr(out, "HTTP 500"));
	assert_non_null(strstr(out, "request id x"));
	problem(400, "{\"title\":\"t\"}", NULL, out, sizeof(out));
	assert_non_null(strstr(out, "HTTP 400"));
	problem(400, "[1,2]", NULL, out, sizeof(out));
	assert_non_null(strstr(out, "HTTP 400"));
	problem(400, "{\"type\":\"a\",\"title\":\"b\",\"title\":\"c\"}", NULL, out,
	    sizeof(out));
	assert_non_null(strstr(out, "HTTP 400"));
	problem(400, "{\"type\":7,\"title\":\"b\"}", NULL, out, sizeof(out));
	assert_non_null(strstr(out, "HTTP 400"));
	problem(400, NULL, NULL, out, sizeof(out));
	assert_non_null(strstr(out, "HTTP 400"));
}

static void
test_problem_hostile_text(void **state)
{
	char out[512], big[4096];
	size_t i;

	(void)state;
	/* terminal escapes (ESC, CSI as C1 U+009B) never reach the terminal */
	problem(400, "{\"type\":\"t\\u001b[31m\",\"title\":\"x\\u009b2J\\r\\n\","
	    "\"detail\":\"a\\u0007b\",\"request_id\":\"\\u001b]0;pwn\\u0007\"}",
	    NULL, out, sizeof(out));
	for (i = 0; out[i] != '\0'; i++) {
		assert_true((unsigned char)out[i] >= 0x20);
		assert_true((unsigned char)out[i] != 0x7f);
		if ((unsigned char)out[i] == 0xc2)
			assert_true((unsigned char)out[i + 1] >= 0xa0);
	}
	assert_non_null(strstr(out, "a?b"));
	/* long fields are bounded, the output always terminated */
	memcpy(big, "{\"type\":\"t\",\"title\":\"", 21);
	memset(big + 21, 'A', 3000);
	memcpy(big + 3021, "\"}", 3);
	problem(400, big, NULL, out, sizeof(out));
	assert_true(strlen(out) < sizeof(out));
	problem(400, big, NULL, out, 16);
	assert_int_equal(strlen(out), 15);
	/* non-ASCII text stays */
	problem(409, "{\"type\":\"t\",\"title\":\"Schl\\u00fcssel widerrufen\"}", NULL,
	    out, sizeof(out));
	assert_non_null(strstr(out, "Schl\xc3\xbcssel widerrufen"));
}

static void
test_sanitize(void **state)
{
	char out[16];

	(void)state;
	cli_sanitize("ok \xe2\x82\xac!", out, sizeof(out));
	assert_string_equal(out, "ok \xe2\x82\xac!");
	cli_sanitize("\xff\xfe" "a", out, sizeof(out));
	assert_string_equal(out, "??a");
	cli_sanitize("\xc0\xaf", out, sizeof(out));		/* overlong '/' */
	assert_string_equal(out, "??");
	cli_sanitize("\xed\xa0\x80", out, sizeof(out));		/* surrogate */
	assert_string_equal(out, "???");
	cli_sanitize("\xc2\x85x", out, sizeof(out));		/* NEL, a C1 control */
	assert_string_equal(out, "??x");
	cli_sanitize("abcdefghijklm\xe2\x82\xac", out, sizeof(out));
	assert_string_equal(out, "abcdefghijklm");		/* no half character */
	cli_sanitize(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	cli_sanitize("\x7f\t", out, 3);
	assert_string_equal(out, "??");
}

static void
test_urls(void **state)
{
	char out[CLI_API_URL_MAX];
	const char *why;

	(void)state;
	assert_int_equal(cli_api_check_url("https://localhost:8443/", out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "https://localhost:8443");
	assert_int_equal(cli_api_check_url("HTTPS://[::1]:8443", out, sizeof(out),
	    &why), 0);
	assert_int_equal(cli_api_check_url("https://qes.example/base//", out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "https://qes.example/base");
	assert_int_equal(cli_api_check_url("http://localhost:8443", out,
	    sizeof(out), &why), QES_ERR_FORMAT);
	assert_non_null(strstr(why, "https://"));
	assert_int_equal(cli_api_check_url(NULL, out, sizeof(out), &why),
	    QES_ERR_FORMAT);
	assert_non_null(strstr(why, "QES_SERVER"));
	assert_int_equal(cli_api_check_url("https://", out, sizeof(out), &why),
	    QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://:443", out, sizeof(out), &why),
	    QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://u:p@host", out, sizeof(out),
	    &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://host/?a=b", out, sizeof(out),
	    &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://host/#x", out, sizeof(out),
	    &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://ho st", out, sizeof(out),
	    &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://host\r\nX: y", out,
	    sizeof(out), &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://h\xc3\xa9", out, sizeof(out),
	    &why), QES_ERR_FORMAT);
	assert_int_equal(cli_api_check_url("https://host", out, 8, &why),
	    QES_ERR_FORMAT);
}

static void
test_ids_and_keys(void **state)
{
	static const char key[] =
	    "qes_key_y7jlk7ua4pqhm3hhtldzwgrlm4_3sD18HGKJPfU33Vm13T4IPFwNbe5l4syL62ZjpmFj2k";
	char long_id[200];

	(void)state;
	assert_true(cli_api_id_ok("key_y7jlk7ua4pqhm3hhtldzwgrlm4"));
	assert_true(cli_api_id_ok("A-z.0_~"));
	assert_false(cli_api_id_ok(""));
	assert_false(cli_api_id_ok("."));
	assert_false(cli_api_id_ok(".."));
	assert_false(cli_api_id_ok("key/../x"));
	assert_false(cli_api_id_ok("key%2f"));
	assert_false(cli_api_id_ok("key x"));
	assert_false(cli_api_id_ok(NULL));
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	assert_false(cli_api_id_ok(long_id));
	long_id[128] = '\0';
	assert_true(cli_api_id_ok(long_id));

	assert_int_equal(cli_api_key_text_ok(key, strlen(key)), 0);
	assert_int_equal(cli_api_key_text_ok("qes_", 4), QES_ERR_FORMAT);
	assert_int_equal(cli_api_key_text_ok("Bearer qes_x", 12), QES_ERR_FORMAT);
	assert_int_equal(cli_api_key_text_ok("qes_a b", 7), QES_ERR_FORMAT);
	assert_int_equal(cli_api_key_text_ok("qes_a\r\nX-Evil: 1", 16),
	    QES_ERR_FORMAT);
	assert_int_equal(cli_api_key_text_ok("qes_ab\n", 7), QES_ERR_FORMAT);
	assert_int_equal(cli_api_key_text_ok(NULL, 0), QES_ERR_FORMAT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_problem_full),
		cmocka_unit_test(test_problem_no_detail_header_id),
		cmocka_unit_test(test_problem_not_a_problem),
		cmocka_unit_test(test_problem_hostile_text),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_ids_and_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
