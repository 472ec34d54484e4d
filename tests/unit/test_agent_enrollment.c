/*
 * test_agent_enrollment.c - what `qes-agent enroll` leaves for `run`
 * (src/agent/enrollment.c): the server URL rules, the strict enrollment
 * file, the CA file check, the configuration directory's ownership rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"

#include "enrollment.h"

struct fixture {
	char dir[512];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/qes-test-enroll.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	free(f);
	return 0;
}

static void
write_file(const char *dir, const char *name, const char *text, int mode)
{
	char path[1024];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(fp = fopen(path, "w"));
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, (mode_t)mode), 0);
}

static void
test_url_parse(void **state)
{
	char norm[AGENT_URL_MAX], host[256], err[256];
	unsigned port;
	size_t i;
	static const struct {
		const char *url, *norm, *host;
		unsigned port;
	} good[] = {
		{ "https://QES.Example.com", "https://qes.example.com:443", "qes.example.com", 443 },
		{ "https://localhost:8443/", "https://localhost:8443", "localhost", 8443 },
		{ "HTTPS://qes.example.com.:1", "https://qes.example.com:1", "qes.example.com", 1 },
		{ "https://127.0.0.1:65535", "https://127.0.0.1:65535", "127.0.0.1", 65535 },
		{ "https://[::1]:8443", "https://[::1]:8443", "::1", 8443 },
	};
	static const char *bad[] = {
		"http://qes.example.com", "qes.example.com", "https://", "https://:443",
		"https://user@qes.example.com", "https://qes.example.com/v1",
		"https://qes.example.com?x=1", "https://qes.example.com:0",
		"https://qes.example.com:65536", "https://qes.example.com:x",
		"https://qes.example.com:-1", "https://qes_example.com",
		"https://qes.example.com#frag", "https://[::1", "https://qes example.com",
		NULL,
	};

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(agent_server_url_parse(good[i].url, norm, sizeof(norm),
		    host, sizeof(host), &port, err, sizeof(err)), 0);
		assert_string_equal(norm, good[i].norm);
		assert_string_equal(host, good[i].host);
		assert_int_equal(port, good[i].port);
	}
	for (i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		if (agent_server_url_parse(bad[i], norm, sizeof(norm), host,
		    sizeof(host), &port, err, sizeof(err)) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_true(err[0] != '\0');
	}
	assert_int_not_equal(agent_server_url_parse(NULL, norm, sizeof(norm), host,
	    sizeof(host), &port, err, sizeof(err)), 0);
}

static agent_enrollment
sample(void)
{
	agent_enrollment e;

	memset(&e, 0, sizeof(e));
	snprintf(e.server_url, sizeof(e.server_url), "https://qes.example.com:8443");
	snprintf(e.server_name, sizeof(e.server_name), "qes.example.com");
	snprintf(e.device_id, sizeof(e.device_id), "dev_abc123");
	snprintf(e.tenant_id, sizeof(e.tenant_id), "ten_xyz");
	snprintf(e.key_name, sizeof(e.key_name), "dev_abc123");
	snprintf(e.enrolled_at, sizeof(e.enrolled_at), "2026-01-02T03:04:05Z");
	return e;
}

static void
test_enrollment_round_trip(void **state)
{
	struct fixture *f = *state;
	agent_enrollment e = sample(), back;
	char err[512], path[1024];
	struct stat st;

	assert_int_equal(agent_enrollment_load(f->dir, &back, err, sizeof(err)),
	    QES_ERR_NOT_FOUND);
	assert_non_null(strstr(err, "qes-agent enroll"));
	assert_int_equal(agent_enrollment_save(f->dir, &e, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/%s", f->dir, AGENT_ENROLLMENT_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(agent_enrollment_load(f->dir, &back, err, sizeof(err)), 0);
	assert_string_equal(back.server_url, e.server_url);
	assert_string_equal(back.host, "qes.example.com");
	assert_int_equal(back.port, 8443);
	assert_string_equal(back.device_id, e.device_id);
	assert_string_equal(back.tenant_id, e.tenant_id);
	assert_string_equal(back.key_name, e.key_name);
	assert_int_equal(back.system_trust, 0);
	snprintf(path, sizeof(path), "%s/%s", f->dir, AGENT_SERVER_CA_FILE);
	assert_string_equal(back.ca_path, path);

	e.system_trust = 1;
	assert_int_equal(agent_enrollment_save(f->dir, &e, err, sizeof(err)), 0);
	assert_int_equal(agent_enrollment_load(f->dir, &back, err, sizeof(err)), 0);
	assert_int_equal(back.system_trust, 1);
	assert_string_equal(back.ca_path, "");
}

/* Every way the file can be wrong is refused, with the file named. */
static void
test_enrollment_strict(void **state)
{
	struct fixture *f = *state;
	agent_enrollment e;
	char err[512], text[1024];
	size_t i;
	static const char *const base =
	    "\"server\":\"https://qes.example.com\",\"server_name\":\"qes.example.com\","
	    "\"device_id\":\"dev_1\",\"tenant_id\":\"ten_1\",\"key_name\":\"dev_1\","
	    "\"enrolled_at\":\"2026-01-02T03:04:05Z\"";
	static const struct { const char *pre, *post; } bad[] = {
		{ "{", ",\"ca\":\"system\",\"extra\":1}" },	/* unknown field */
		{ "{", ",\"ca\":\"/etc/ssl/certs/ca.pem\"}" },	/* ca elsewhere */
		{ "{", ",\"ca\":\"\"}" },
		{ "{", "}" },					/* ca missing */
		{ "{", ",\"ca\":\"system\",\"ca\":\"system\"}" },	/* duplicate */
		{ "[", "]" },
		{ "{", ",\"ca\":\"system\"" },			/* truncated */
	};

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s%s", bad[i].pre, base, bad[i].post);
		write_file(f->dir, AGENT_ENROLLMENT_FILE, text, 0600);
		err[0] = '\0';
		if (agent_enrollment_load(f->dir, &e, err, sizeof(err)) == 0)
			fail_msg("accepted %s", text);
		assert_non_null(strstr(err, AGENT_ENROLLMENT_FILE));
	}
	/* the server calls itself something else than the URL's host */
	write_file(f->dir, AGENT_ENROLLMENT_FILE, "{\"server\":\"https://qes.example.com\","
	    "\"server_name\":\"evil.example\",\"device_id\":\"dev_1\",\"tenant_id\":"
	    "\"ten_1\",\"key_name\":\"dev_1\",\"enrolled_at\":\"x\",\"ca\":\"system\"}", 0600);
	assert_int_equal(agent_enrollment_load(f->dir, &e, err, sizeof(err)),
	    QES_ERR_FORMAT);
	assert_non_null(strstr(err, "server_name"));
	/* an id that is not an id */
	write_file(f->dir, AGENT_ENROLLMENT_FILE, "{\"server\":\"https://qes.example.com\","
	    "\"server_name\":\"qes.example.com\",\"device_id\":\"dev 1\",\"tenant_id\":"
	    "\"ten_1\",\"key_name\":\"dev_1\",\"enrolled_at\":\"x\",\"ca\":\"system\"}", 0600);
	assert_int_equal(agent_enrollment_load(f->dir, &e, err, sizeof(err)),
	    QES_ERR_FORMAT);
	/* good, then writable by others: refused */
	snprintf(text, sizeof(text), "{%s,\"ca\":\"system\"}", base);
	write_file(f->dir, AGENT_ENROLLMENT_FILE, text, 0600);
	assert_int_equal(agent_enrollment_load(f->dir, &e, err, sizeof(err)), 0);
	write_file(f->dir, AGENT_ENROLLMENT_FILE, text, 0666);
	assert_int_equal(agent_enrollment_load(f->dir, &e, err, sizeof(err)), QES_ERR_IO);
	assert_non_null(strstr(err, "others can write"));
}

static void
test_state_dir(void **state)
{
	struct fixture *f = *state;
	char sub[700], out[PATH_MAX], err[512];
	struct stat st;

	snprintf(sub, sizeof(sub), "%s/cfg/qes", f->dir);
	assert_int_equal(agent_state_dir(sub, 0, out, sizeof(out), err, sizeof(err)),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(agent_state_dir(sub, 1, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, sub);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(agent_state_dir(sub, 0, out, sizeof(out), err, sizeof(err)),
	    QES_ERR_IO);
	assert_non_null(strstr(err, "chmod 700"));
	assert_int_equal(chmod(sub, 0700), 0);
}

static void
test_ca_read(void **state)
{
	struct fixture *f = *state;
	qes_buf *pem = NULL;
	char path[1024], err[512], cmd[2048];

	snprintf(cmd, sizeof(cmd), "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout k.pem -out ca.pem -days 1 "
	    "-subj /CN=t 2>/dev/null && cat ca.pem k.pem > mixed.pem", f->dir);
	if (system(cmd) != 0)
		skip();
	snprintf(path, sizeof(path), "%s/ca.pem", f->dir);
	assert_int_equal(agent_ca_read(path, &pem, err, sizeof(err)), 0);
	assert_true(qes_buf_len(pem) > 100);
	assert_int_equal(agent_ca_install(f->dir, pem, err, sizeof(err)), 0);
	qes_buf_free(pem);
	pem = NULL;
	/* a private key in the "CA" file is not a CA */
	snprintf(path, sizeof(path), "%s/mixed.pem", f->dir);
	assert_int_equal(agent_ca_read(path, &pem, err, sizeof(err)), QES_ERR_FORMAT);
	assert_null(pem);
	write_file(f->dir, "junk.pem", "not a certificate\n", 0600);
	snprintf(path, sizeof(path), "%s/junk.pem", f->dir);
	assert_int_equal(agent_ca_read(path, &pem, err, sizeof(err)), QES_ERR_FORMAT);
	snprintf(path, sizeof(path), "%s/missing.pem", f->dir);
	assert_int_not_equal(agent_ca_read(path, &pem, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "missing.pem"));
}

static void
test_os_describe(void **state)
{
	char os[200];
	size_t i;

	(void)state;
	agent_os_describe(os, sizeof(os));
	assert_true(strlen(os) >= 1 && strlen(os) <= 128);
	for (i = 0; os[i] != '\0'; i++)
		assert_true(os[i] >= 0x20 && os[i] < 0x7f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse),
		cmocka_unit_test_setup_teardown(test_enrollment_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enrollment_strict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_read, setup, teardown),
		cmocka_unit_test(test_os_describe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
