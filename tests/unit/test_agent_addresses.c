/*
 * test_agent_addresses.c - qes-agent's gateway_addresses (addresses.h):
 * the parser (names, IPv4, bracketed IPv6, blanks, every malformed entry
 * refused with the entry's number, the count and length limits), which
 * close codes move the agent to the next address and which keep it, the
 * rotation order with its wrap-around, and the key in agent.conf (checked
 * when the file is read).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/proto.h"

#include "addresses.h"
#include "agentconf.h"

static void
test_parse_good(void **state)
{
	agent_addrs l;
	char err[160];

	(void)state;
	assert_int_equal(agent_addrs_parse("127.0.0.1:8443", &l, err,
	    sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.a[0].host, "127.0.0.1");
	assert_int_equal(l.a[0].port, 8443);
	assert_int_equal(agent_addrs_parse(" GW-A.example.com:443 ,\t[2001:db8::7]:65535,"
	    "10.0.0.6:1 ", &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.a[0].host, "gw-a.example.com");
	assert_int_equal(l.a[0].port, 443);
	assert_string_equal(l.a[1].host, "2001:db8::7");
	assert_int_equal(l.a[1].port, 65535);
	assert_string_equal(l.a[2].host, "10.0.0.6");
	assert_int_equal(l.a[2].port, 1);
	assert_int_equal(l.cur, 0);
}

static void
bad(const char *text, int want, const char *says)
{
	agent_addrs l;
	char err[160];

	memset(&l, 0x5a, sizeof(l));
	err[0] = '\0';
	assert_int_equal(agent_addrs_parse(text, &l, err, sizeof(err)), want);
	assert_int_equal(l.n, 0);
	if (strstr(err, says) == NULL)
		fail_msg("'%s': error '%s' does not say '%s'", text, err, says);
}

static void
test_parse_bad(void **state)
{
	char big[AGENT_ADDRS_TEXT_MAX + 2], many[600];
	size_t i;

	(void)state;
	bad("", QES_ERR_FORMAT, "entry 1 is empty");
	bad("a:1,,b:2", QES_ERR_FORMAT, "entry 2 is empty");
	bad("a:1,", QES_ERR_FORMAT, "entry 2 is empty");
	bad("localhost", QES_ERR_FORMAT, "entry 1 is not HOST:PORT");
	bad("a:1,2001:db8::1:443", QES_ERR_FORMAT, "entry 2 is not HOST:PORT");
	bad("[2001:db8::1]443", QES_ERR_FORMAT, "[ADDRESS]:PORT");
	bad("[2001:db8::1]", QES_ERR_FORMAT, "[ADDRESS]:PORT");
	bad(":443", QES_ERR_FORMAT, "host is empty");
	bad("[]:443", QES_ERR_FORMAT, "host is empty");
	bad("a b:443", QES_ERR_FORMAT, "character");
	bad("a/b:443", QES_ERR_FORMAT, "character");
	bad("[fe80::1%eth0]:443", QES_ERR_FORMAT, "character");
	bad("a:0", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:65536", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:0443", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:+443", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:443x", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:", QES_ERR_FORMAT, "port must be 1..65535");
	bad("a:1234567", QES_ERR_FORMAT, "port must be 1..65535");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bad(big, QES_ERR_LIMIT, "longer than");
	memset(big, 'a', QES_PROTO_HOST_MAX + 1);
	snprintf(big + QES_PROTO_HOST_MAX + 1, 8, ":443");
	bad(big, QES_ERR_FORMAT, "longer than 253");
	many[0] = '\0';
	for (i = 0; i <= AGENT_ADDRS_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%zu:1",
		    i > 0 ? "," : "", i);
	bad(many, QES_ERR_LIMIT, "more than 16 entries");
	assert_int_equal(agent_addrs_parse(NULL, NULL, NULL, 0),
	    QES_ERR_INVALID_ARG);
}

static void
test_rotation(void **state)
{
	agent_addrs l;

	(void)state;
	/* lost, refused or leaving: another replica */
	assert_true(agent_addrs_rotate_on(0));
	assert_true(agent_addrs_rotate_on(1001));
	assert_true(agent_addrs_rotate_on(1006));
	assert_true(agent_addrs_rotate_on(1011));
	assert_true(agent_addrs_rotate_on(QES_PROTO_CLOSE_SERVER_DRAINING));
	/* the replica answered: the same one again */
	assert_false(agent_addrs_rotate_on(1000));
	assert_false(agent_addrs_rotate_on(1009));
	assert_false(agent_addrs_rotate_on(QES_PROTO_CLOSE_PROTOCOL_ERROR));
	assert_false(agent_addrs_rotate_on(QES_PROTO_CLOSE_AUTH_FAILED));
	assert_false(agent_addrs_rotate_on(QES_PROTO_CLOSE_DEVICE_REVOKED));
	assert_false(agent_addrs_rotate_on(QES_PROTO_CLOSE_REPLACED));

	assert_int_equal(agent_addrs_parse("a:1,b:2,c:3", &l, NULL, 0), 0);
	assert_string_equal(agent_addrs_current(&l)->host, "a");
	agent_addrs_next(&l);
	assert_string_equal(agent_addrs_current(&l)->host, "b");
	agent_addrs_next(&l);
	assert_string_equal(agent_addrs_current(&l)->host, "c");
	agent_addrs_next(&l);
	assert_string_equal(agent_addrs_current(&l)->host, "a");
	assert_int_equal(agent_addrs_current(&l)->port, 1);
	/* one address: always that one; none: server_url's host */
	assert_int_equal(agent_addrs_parse("only:9", &l, NULL, 0), 0);
	agent_addrs_next(&l);
	assert_string_equal(agent_addrs_current(&l)->host, "only");
	memset(&l, 0, sizeof(l));
	assert_null(agent_addrs_current(&l));
	agent_addrs_next(&l);
	assert_null(agent_addrs_current(&l));
}

static void
load_conf(const char *text, int want, const char *says)
{
	char dir[] = "/tmp/qes-test-addrs-XXXXXX", path[96], err[256];
	agent_config *c = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/agent.conf", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
	err[0] = '\0';
	assert_int_equal(agent_config_load(path, &c, err, sizeof(err)), want);
	if (want == 0)
		assert_string_equal(agent_config_get(c, "gateway_addresses"),
		    "127.0.0.1:8443,127.0.0.1:8444");
	else if (strstr(err, says) == NULL)
		fail_msg("error '%s' does not say '%s'", err, says);
	agent_config_free(c);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void
test_config_key(void **state)
{
	(void)state;
	load_conf("gateway_addresses = 127.0.0.1:8443,127.0.0.1:8444\n", 0, NULL);
	load_conf("gateway_addresses = 127.0.0.1\n", QES_ERR_FORMAT,
	    "line 1: gateway_addresses: entry 1 is not HOST:PORT");
	load_conf("# two replicas\ngateway_addresses = a:1,b:99999\n",
	    QES_ERR_FORMAT, "line 2: gateway_addresses: entry 2: the port");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_config_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
