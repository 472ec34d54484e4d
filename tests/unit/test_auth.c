/*
 * test_auth.c - unit tests of qesd's authentication and rate limiting:
 * Authorization header parsing (edge cases), HMAC and the constant-time
 * decision with rotation grace, expiry and revocation, the key cache and
 * its invalidation, batched last_used_at, token-bucket and failure-tracker
 * arithmetic with injected time, address keys, the testing clock, and the
 * middleware itself driven in-process against a real SQLite store.
 * Links qesd_core; no server runs (so no deferral: delays answer at once).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "apikey.h"
#include "app.h"
#include "audit_svc.h"
#include "auth.h"
#include "config.h"
#include "problem.h"
#include "ratelimit.h"
#include "store.h"
#include "qesd_fixture.h"

#define PEPPER "0123456789abcdef0123456789abcdef-test-pepper"

static qes_secret *
make_pepper(void)
{
	qes_secret *p = qes_secret_new(sizeof(PEPPER));

	assert_non_null(p);
	assert_int_equal(qes_secret_set(p, PEPPER, strlen(PEPPER)), 0);
	return p;
}

static int
all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------- */
/* header parsing */

static void
test_parse_bearer(void **state)
{
	qes_secret *pepper = make_pepper();
	char key[QESD_APIKEY_SIZE], id[QESD_ID_SIZE], kid[QESD_ID_SIZE];
	char hdr[1200], bad[QESD_APIKEY_SIZE + 8];
	uint8_t hmac[QESD_HMAC_LEN], secret[QESD_APIKEY_SECRET_BYTES];
	size_t klen;

	(void)state;
	assert_int_equal(qesd_apikey_mint(pepper, key, hmac, id), 0);
	klen = strlen(key);
	assert_int_equal(klen, 4 + 30 + 1 + 43);

	snprintf(hdr, sizeof(hdr), "Bearer %s", key);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), 0);
	assert_string_equal(kid, id);
	assert_false(all_zero(secret, sizeof(secret)));
	/* scheme case-insensitive, several spaces */
	snprintf(hdr, sizeof(hdr), "bEARER   %s", key);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), 0);

	/* each of these must fail, with both outputs wiped */
	const char *wrap[][2] = {
		{ "Bearer", "" },		/* no space */
		{ "Bearer\t", "" },		/* tab is not SP */
		{ "Basic ", "" },
		{ "Bearer ", " " },		/* trailing space */
		{ " Bearer ", "" },
		{ "Bearer  ", "\n" },
		{ "Bearer x", "" },
		{ "", "" },			/* no scheme */
		{ "Bearer Bearer ", "" },
	};
	for (size_t i = 0; i < sizeof(wrap) / sizeof(wrap[0]); i++) {
		snprintf(hdr, sizeof(hdr), "%s%s%s", wrap[i][0], key, wrap[i][1]);
		memset(secret, 0xaa, sizeof(secret));
		strcpy(kid, "junk");
		assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
		assert_string_equal(kid, "");
		assert_true(all_zero(secret, sizeof(secret)));
	}
	assert_int_equal(qesd_auth_parse_bearer(NULL, kid, secret), QES_ERR_FORMAT);
	assert_int_equal(qesd_auth_parse_bearer("", kid, secret), QES_ERR_FORMAT);
	assert_int_equal(qesd_auth_parse_bearer("Bearer ", kid, secret), QES_ERR_FORMAT);

	/* one character off, anywhere in the key */
	struct { size_t pos; char c; } edits[] = {
		{ 0, 'Q' },			/* prefix */
		{ 3, '-' },			/* prefix separator */
		{ 4, 'K' },			/* "key_" */
		{ 8, 'A' },			/* id: upper case is not base32 here */
		{ 8, '1' },			/* id: '1' is not in the alphabet */
		{ 34, '-' },			/* separator before the secret */
		{ 40, '+' },			/* secret: not base64url */
		{ 40, '/' },
		{ 40, '=' },
		{ 40, '.' },
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		snprintf(bad, sizeof(bad), "%s", key);
		bad[edits[i].pos] = edits[i].c;
		snprintf(hdr, sizeof(hdr), "Bearer %s", bad);
		assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	}
	/* the last id character carries 2 spare bits that must be zero */
	snprintf(bad, sizeof(bad), "%s", key);
	bad[33] = 'b';
	snprintf(hdr, sizeof(hdr), "Bearer %s", bad);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	/* the last secret character too: 'B' has a low bit set */
	snprintf(bad, sizeof(bad), "%s", key);
	bad[klen - 1] = 'B';
	snprintf(hdr, sizeof(hdr), "Bearer %s", bad);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	/* lengths: one short, one long, padded */
	snprintf(hdr, sizeof(hdr), "Bearer %.*s", (int)klen - 1, key);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	snprintf(hdr, sizeof(hdr), "Bearer %sA", key);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	snprintf(hdr, sizeof(hdr), "Bearer %s=", key);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);
	/* a huge header */
	memset(hdr, 'A', sizeof(hdr) - 1);
	hdr[sizeof(hdr) - 1] = '\0';
	memcpy(hdr, "Bearer ", 7);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, secret), QES_ERR_FORMAT);

	qes_wipe(key, sizeof(key));
	qes_secret_free(pepper);
}

/* ------------------------------------------------------------------------- */
/* the decision */

static void
test_decide(void **state)
{
	qes_secret *pepper = make_pepper();
	char key1[QESD_APIKEY_SIZE], key2[QESD_APIKEY_SIZE], id[QESD_ID_SIZE],
	    kid[QESD_ID_SIZE], hdr[160];
	uint8_t h1[QESD_HMAC_LEN], h2[QESD_HMAC_LEN], s1[32], s2[32],
	    m1[QESD_HMAC_LEN], m2[QESD_HMAC_LEN];
	qesd_key_facts k;
	int64_t now = 1700000000000;

	(void)state;
	assert_int_equal(qesd_apikey_mint(pepper, key1, h1, id), 0);
	assert_int_equal(qesd_apikey_mint_for(pepper, id, key2, h2), 0);
	assert_string_not_equal(key1, key2);
	snprintf(hdr, sizeof(hdr), "Bearer %s", key1);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, s1), 0);
	snprintf(hdr, sizeof(hdr), "Bearer %s", key2);
	assert_int_equal(qesd_auth_parse_bearer(hdr, kid, s2), 0);
	assert_int_equal(qesd_apikey_hmac(pepper, s1, m1), 0);
	assert_int_equal(qesd_apikey_hmac(pepper, s2, m2), 0);
	/* the HMAC of the parsed secret is the stored value */
	assert_memory_equal(m1, h1, QESD_HMAC_LEN);
	assert_memory_equal(m2, h2, QESD_HMAC_LEN);
	assert_true(qesd_apikey_matches(pepper, s1, h1));
	assert_false(qesd_apikey_matches(pepper, s1, h2));

	memset(&k, 0, sizeof(k));
	memcpy(k.hash, h1, QESD_HMAC_LEN);
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_OK);
	assert_int_equal(qesd_auth_decide(&k, m2, now), QESD_AUTH_WRONG_SECRET);
	/* one bit off in the last byte */
	m1[QESD_HMAC_LEN - 1] ^= 1;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_WRONG_SECRET);
	m1[QESD_HMAC_LEN - 1] ^= 1;
	/* a zero previous hash must not match an all-zero mac without has_prev */
	{
		uint8_t zero[QESD_HMAC_LEN] = { 0 };

		assert_int_equal(qesd_auth_decide(&k, zero, now), QESD_AUTH_WRONG_SECRET);
	}

	/* expiry: expires_at <= now is expired */
	k.expires_at_ms = now;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_EXPIRED);
	k.expires_at_ms = now + 1;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_OK);
	/* a wrong secret never learns about expiry */
	k.expires_at_ms = now - 1;
	assert_int_equal(qesd_auth_decide(&k, m2, now), QESD_AUTH_WRONG_SECRET);
	k.expires_at_ms = 0;

	/* revocation */
	k.revoked_at_ms = now - 5;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_REVOKED);
	assert_int_equal(qesd_auth_decide(&k, m2, now), QESD_AUTH_WRONG_SECRET);
	k.revoked_at_ms = 0;

	/* rotation: key2 current, key1 previous until now + 1000 */
	memcpy(k.hash, h2, QESD_HMAC_LEN);
	memcpy(k.prev_hash, h1, QESD_HMAC_LEN);
	k.has_prev = 1;
	k.prev_valid_until_ms = now + 1000;
	assert_int_equal(qesd_auth_decide(&k, m2, now), QESD_AUTH_OK);
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_OK);
	assert_int_equal(qesd_auth_decide(&k, m1, now + 999), QESD_AUTH_OK);
	assert_int_equal(qesd_auth_decide(&k, m1, now + 1000), QESD_AUTH_GRACE_OVER);
	assert_int_equal(qesd_auth_decide(&k, m2, now + 1000), QESD_AUTH_OK);
	/* has_prev off: the previous hash is ignored even if it is there */
	k.has_prev = 0;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_WRONG_SECRET);
	/* revoked during grace: both refused */
	k.has_prev = 1;
	k.revoked_at_ms = now;
	assert_int_equal(qesd_auth_decide(&k, m1, now), QESD_AUTH_REVOKED);
	assert_int_equal(qesd_auth_decide(&k, m2, now), QESD_AUTH_REVOKED);

	assert_string_equal(qesd_auth_result_name(QESD_AUTH_GRACE_OVER), "grace_over");
	qes_wipe(key1, sizeof(key1));
	qes_wipe(key2, sizeof(key2));
	qes_wipe(s1, sizeof(s1));
	qes_wipe(s2, sizeof(s2));
	qes_secret_free(pepper);
}

/* ------------------------------------------------------------------------- */
/* token buckets, failure tracking, address keys */

static void
test_bucket_math(void **state)
{
	qesd_ratelimit *rl = NULL;
	uint32_t retry;

	(void)state;
	assert_int_equal(qesd_ratelimit_new(0, 1, 0, &rl), QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_ratelimit_new(1, 0, 0, &rl), QES_ERR_INVALID_ARG);

	/* 2 per second, burst 3 */
	assert_int_equal(qesd_ratelimit_new(2, 3, 0, &rl), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qesd_ratelimit_take(rl, "a", 1000, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 1000, &retry), QES_ERR_LIMIT);
	assert_int_equal(retry, 1);	/* 500 ms, rounded up to a second */
	assert_int_equal(qesd_ratelimit_take(rl, "a", 1499, &retry), QES_ERR_LIMIT);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 1500, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 1500, &retry), QES_ERR_LIMIT);
	/* another key has its own bucket */
	assert_int_equal(qesd_ratelimit_take(rl, "b", 1500, &retry), 0);
	/* refill never exceeds the burst */
	for (int i = 0; i < 3; i++)
		assert_int_equal(qesd_ratelimit_take(rl, "a", 100000, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 100000, &retry), QES_ERR_LIMIT);
	/* time going backwards adds nothing */
	assert_int_equal(qesd_ratelimit_take(rl, "a", 50, &retry), QES_ERR_LIMIT);
	/* bad keys */
	assert_int_equal(qesd_ratelimit_take(rl, "", 0, &retry), QES_ERR_INVALID_ARG);
	{
		char longkey[QESD_RL_KEY_MAX + 4];

		memset(longkey, 'k', sizeof(longkey) - 1);
		longkey[sizeof(longkey) - 1] = '\0';
		assert_int_equal(qesd_ratelimit_take(rl, longkey, 0, &retry),
		    QES_ERR_INVALID_ARG);
	}
	qesd_ratelimit_free(rl);

	/* slow rate: Retry-After is the whole wait, rounded up */
	assert_int_equal(qesd_ratelimit_new(0.1, 1, 0, &rl), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "x", 0, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "x", 0, &retry), QES_ERR_LIMIT);
	assert_int_equal(retry, 10);
	assert_int_equal(qesd_ratelimit_take(rl, "x", 2500, &retry), QES_ERR_LIMIT);
	assert_int_equal(retry, 8);	/* 7.5 s left */
	assert_int_equal(qesd_ratelimit_take(rl, "x", 10000, &retry), 0);
	qesd_ratelimit_free(rl);

	/* bounded: the least recently used key is forgotten (a full bucket) */
	assert_int_equal(qesd_ratelimit_new(1, 1, 2, &rl), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 0, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "b", 0, &retry), 0);
	assert_int_equal(qesd_ratelimit_take(rl, "b", 0, &retry), QES_ERR_LIMIT);
	assert_int_equal(qesd_ratelimit_take(rl, "c", 0, &retry), 0);
	assert_int_equal(qesd_ratelimit_size(rl), 2);
	/* a was evicted, b (used more recently) kept its empty bucket */
	assert_int_equal(qesd_ratelimit_take(rl, "b", 0, &retry), QES_ERR_LIMIT);
	assert_int_equal(qesd_ratelimit_take(rl, "a", 0, &retry), 0);
	assert_int_equal(qesd_ratelimit_size(rl), 2);
	qesd_ratelimit_free(rl);
	qesd_ratelimit_free(NULL);
}

static void
test_failtrack(void **state)
{
	qesd_failtrack_config c = { .window_ms = 10000, .free_failures = 3,
		.base_delay_ms = 250, .max_delay_ms = 2000, .block_after = 8,
		.block_ms = 5000 };
	const uint32_t want[] = { 0, 0, 0, 250, 500, 1000, 2000 };
	qesd_failtrack *ft = NULL;
	uint32_t retry, d;
	int blocked;

	(void)state;
	assert_int_equal(qesd_failtrack_new(&c, &ft), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = qesd_failtrack_fail(ft, "1.2.3.4", 1000 + (int64_t)i, &blocked, &retry);
		assert_int_equal(d, want[i]);
		assert_int_equal(blocked, 0);
	}
	assert_false(qesd_failtrack_blocked(ft, "1.2.3.4", 1100, &retry));
	/* the 8th failure blocks for 5 s */
	qesd_failtrack_fail(ft, "1.2.3.4", 2000, &blocked, &retry);
	assert_int_equal(blocked, 1);
	assert_int_equal(retry, 5);
	assert_true(qesd_failtrack_blocked(ft, "1.2.3.4", 2000, &retry));
	assert_int_equal(retry, 5);
	assert_true(qesd_failtrack_blocked(ft, "1.2.3.4", 6001, &retry));
	assert_int_equal(retry, 1);
	assert_false(qesd_failtrack_blocked(ft, "1.2.3.4", 7000, &retry));
	/* other addresses are not affected; a fresh count after the block */
	assert_false(qesd_failtrack_blocked(ft, "5.6.7.8", 2000, &retry));
	assert_int_equal(qesd_failtrack_fail(ft, "1.2.3.4", 7000, &blocked, &retry), 0);
	/* the window expires: counting starts over */
	for (int i = 0; i < 5; i++)
		qesd_failtrack_fail(ft, "9.9.9.9", 0, &blocked, &retry);
	assert_int_equal(qesd_failtrack_fail(ft, "9.9.9.9", 10000, &blocked, &retry), 0);
	qesd_failtrack_free(ft);

	/* base delay 0: never a delay, but still the block */
	c.base_delay_ms = 0;
	assert_int_equal(qesd_failtrack_new(&c, &ft), 0);
	for (int i = 0; i < 7; i++)
		assert_int_equal(qesd_failtrack_fail(ft, "a", 0, &blocked, &retry), 0);
	qesd_failtrack_fail(ft, "a", 0, &blocked, &retry);
	assert_int_equal(blocked, 1);
	qesd_failtrack_free(ft);
	c.block_after = 2;
	assert_int_equal(qesd_failtrack_new(&c, &ft), QES_ERR_INVALID_ARG);
}

static void
test_addr_key(void **state)
{
	char k[QESD_RL_KEY_MAX];

	(void)state;
	qesd_addr_key("192.0.2.7", k);
	assert_string_equal(k, "192.0.2.7");
	qesd_addr_key("::ffff:192.0.2.7", k);
	assert_string_equal(k, "192.0.2.7");
	qesd_addr_key("2001:db8:1:2:3:4:5:6", k);
	assert_string_equal(k, "2001:db8:1:2::/64");
	qesd_addr_key("2001:db8:1:2:ffff:ffff:ffff:ffff", k);
	assert_string_equal(k, "2001:db8:1:2::/64");
	qesd_addr_key("::1", k);
	assert_string_equal(k, "::/64");
	qesd_addr_key("", k);
	assert_string_equal(k, "-");
	qesd_addr_key("not-an-address", k);
	assert_string_equal(k, "not-an-address");
}

/* ------------------------------------------------------------------------- */
/* the clock */

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void
test_clock(void **state)
{
	char dir[] = "/tmp/qes-test-auth-clock-XXXXXX", path[128];
	qesd_clock *c = NULL;
	int64_t wall, t;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/clock", dir);

	/* no file configured: wall time */
	assert_int_equal(qesd_clock_new(NULL, &c), 0);
	wall = qesd_now_ms(NULL);
	t = qesd_clock_now_ms(c);
	assert_true(t >= wall && t - wall < 1000);
	qesd_clock_free(c);

	/* missing file: offset 0 */
	assert_int_equal(qesd_clock_new(path, &c), 0);
	wall = qesd_now_ms(NULL);
	t = qesd_clock_now_ms(c);
	assert_true(t >= wall && t - wall < 1000);
	qesd_clock_free(c);

	write_file(path, "86400000\n");
	assert_int_equal(qesd_clock_new(path, &c), 0);
	wall = qesd_now_ms(NULL);
	t = qesd_clock_now_ms(c);
	assert_true(t - wall >= 86400000 && t - wall < 86401000);
	/* re-read at most every 100 ms; a bad file keeps the last offset */
	write_file(path, "12x\n");
	sleep_ms(150);
	wall = qesd_now_ms(NULL);
	t = qesd_clock_now_ms(c);
	assert_true(t - wall >= 86400000 && t - wall < 86401000);
	write_file(path, " -5000 \n");
	sleep_ms(150);
	wall = qesd_now_ms(NULL);
	t = qesd_clock_now_ms(c);
	assert_true(wall - t > 4000 && wall - t <= 5000);
	qesd_clock_free(c);
	unlink(path);
	rmdir(dir);
}

/* The testing clock is refused unless the environment says otherwise. */
static void
test_clock_config(void **state)
{
	char *const env_off[] = { "QESD_INSECURE_TESTING_CLOCK_FILE=/tmp/x", NULL };
	char *const env_on[] = { "QESD_INSECURE_TESTING=1",
		"QESD_INSECURE_TESTING_CLOCK_FILE=/tmp/x", NULL };
	char *const env_zero[] = { "QESD_INSECURE_TESTING=0",
		"QESD_INSECURE_TESTING_CLOCK_FILE=/tmp/x", NULL };
	const char *base = "tls_cert = c\ntls_key = k\npepper_file = p\n";
	qesd_config c;
	char err[512];

	(void)state;
	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_equal(c.key_cache_ttl_ms, 2000);
	assert_int_equal(qesd_config_parse(&c, base, strlen(base), "t", err, sizeof(err)), 0);
	assert_int_equal(qesd_config_load_env(&c, env_off, err, sizeof(err)), 0);
	assert_int_not_equal(qesd_config_validate(&c, 1, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "QESD_INSECURE_TESTING=1"));
	qesd_config_free(&c);

	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_equal(qesd_config_parse(&c, base, strlen(base), "t", err, sizeof(err)), 0);
	assert_int_equal(qesd_config_load_env(&c, env_zero, err, sizeof(err)), 0);
	assert_int_not_equal(qesd_config_validate(&c, 1, err, sizeof(err)), 0);
	qesd_config_free(&c);

	assert_int_equal(qesd_config_init(&c), 0);
	assert_int_equal(qesd_config_parse(&c, base, strlen(base), "t", err, sizeof(err)), 0);
	assert_int_equal(qesd_config_load_env(&c, env_on, err, sizeof(err)), 0);
	assert_int_equal(qesd_config_validate(&c, 0, err, sizeof(err)), 0);
	assert_string_equal(c.insecure_testing_clock_file, "/tmp/x");
	qesd_config_free(&c);
}

/* ------------------------------------------------------------------------- */
/* store-backed: cache, last_used_at, middleware */

struct fx {
	char dir[64];
	char db[QFX_PATH_MAX];
	qesd_config cfg;
	qesd_app *app;
	qesd_tenant tenant;
	char admin_key[QESD_APIKEY_SIZE];
	char admin_id[QESD_ID_SIZE];
	char sign_key[QESD_APIKEY_SIZE];
	char sign_id[QESD_ID_SIZE];
};

static void
add_key(struct fx *f, uint32_t scopes, int64_t expires, char key[QESD_APIKEY_SIZE],
    char id[QESD_ID_SIZE])
{
	qesd_api_key k;
	qesd_tx *tx = NULL;

	memset(&k, 0, sizeof(k));
	assert_int_equal(qesd_apikey_mint(f->app->pepper, key, k.secret_hash, k.id), 0);
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", f->tenant.id);
	snprintf(k.name, sizeof(k.name), "test");
	k.scopes = scopes;
	k.created_at_ms = qesd_now_ms(NULL);
	k.expires_at_ms = expires;
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_key_insert(tx, &k), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	snprintf(id, QESD_ID_SIZE, "%s", k.id);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-auth-XXXXXX");
	if (qfx_config(&f->cfg, f->dir, f->db, NULL) != 0)
		return -1;
	f->cfg.rate_key_per_s = 1;
	f->cfg.rate_key_burst = 5;
	f->cfg.key_cache_ttl_ms = 60000;	/* long: the tests evict */
	if (qfx_app(&f->cfg, PEPPER, &f->app) != 0)
		return -1;
	qfx_tenant(f->app, "tenant-a", qesd_now_ms(NULL), &f->tenant);
	add_key(f, QESD_SCOPE_ALL, 0, f->admin_key, f->admin_id);
	add_key(f, QESD_SCOPE_SIGN, 0, f->sign_key, f->sign_id);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	qfx_teardown(f->app, &f->cfg, f->dir);
	qes_wipe(f->admin_key, sizeof(f->admin_key));
	qes_wipe(f->sign_key, sizeof(f->sign_key));
	free(f);
	return 0;
}

static void
test_cache_invalidation(void **state)
{
	struct fx *f = *state;
	qesd_auth_svc *svc = NULL;
	qesd_auth_svc_config c = { .cache_ttl_ms = 1000, .no_thread = 1 };
	qesd_auth_stats st;
	qesd_key_facts k;
	qesd_tx *tx = NULL;
	int from_cache;

	assert_int_equal(qesd_auth_svc_new(f->app->store, &c, &svc), 0);
	assert_int_equal(qesd_auth_lookup(svc, f->sign_id, 10000, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 0);
	assert_string_equal(k.tenant_id, f->tenant.id);
	assert_int_equal(k.scopes, QESD_SCOPE_SIGN);
	assert_int_equal(qesd_auth_lookup(svc, f->sign_id, 10500, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 1);

	/* revoked behind the cache's back (another replica): stale until TTL */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_key_revoke(tx, f->tenant.id, f->sign_id,
	    qesd_now_ms(NULL)), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	assert_int_equal(qesd_auth_lookup(svc, f->sign_id, 10999, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 1);
	assert_int_equal(k.revoked_at_ms, 0);
	/* ... and no longer once the TTL passed */
	assert_int_equal(qesd_auth_lookup(svc, f->sign_id, 11000, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 0);
	assert_true(k.revoked_at_ms > 0);

	/* in this process, eviction takes effect at once */
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 20000, 0, &k, &from_cache), 0);
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 20001, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 1);
	qesd_auth_evict(svc, f->admin_id);
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 20002, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 0);
	/* bypass always reads the store */
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 20003, 1, &k, &from_cache), 0);
	assert_int_equal(from_cache, 0);

	/* unknown and malformed ids: not found, never cached */
	assert_int_equal(qesd_auth_lookup(svc, "key_aaaaaaaaaaaaaaaaaaaaaaaaaa", 1, 0,
	    &k, &from_cache), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_auth_lookup(svc, "key_aaaaaaaaaaaaaaaaaaaaaaaaaa", 2, 0,
	    &k, &from_cache), QES_ERR_NOT_FOUND);
	assert_int_equal(from_cache, 0);
	assert_int_equal(qesd_auth_lookup(svc, "nope", 2, 0, &k, &from_cache),
	    QES_ERR_NOT_FOUND);
	qesd_auth_get_stats(svc, &st);
	assert_int_equal(st.cache_hits, 3);
	qesd_auth_svc_free(svc);

	/* TTL 0: never cached */
	c.cache_ttl_ms = 0;
	assert_int_equal(qesd_auth_svc_new(f->app->store, &c, &svc), 0);
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 1, 0, &k, &from_cache), 0);
	assert_int_equal(qesd_auth_lookup(svc, f->admin_id, 2, 0, &k, &from_cache), 0);
	assert_int_equal(from_cache, 0);
	qesd_auth_svc_free(svc);
}

static void
test_touch_batch(void **state)
{
	struct fx *f = *state;
	qesd_auth_svc *svc = NULL;
	qesd_auth_svc_config c = { .cache_ttl_ms = 1000, .no_thread = 1 };
	qesd_auth_stats st;
	qesd_api_key k;
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_auth_svc_new(f->app->store, &c, &svc), 0);
	qesd_auth_touch(svc, f->tenant.id, f->admin_id, 1700000000100);
	qesd_auth_touch(svc, f->tenant.id, f->admin_id, 1700000000300);
	qesd_auth_touch(svc, f->tenant.id, f->admin_id, 1700000000200);
	qesd_auth_touch(svc, f->tenant.id, f->sign_id, 1700000000050);
	assert_int_equal(qesd_auth_flush_uses(svc), 0);
	qesd_auth_get_stats(svc, &st);
	assert_int_equal(st.uses_written, 2);	/* one row per key, one transaction */
	assert_int_equal(qesd_auth_flush_uses(svc), 0);	/* nothing left */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_key_get(tx, f->tenant.id, f->admin_id, &k), 0);
	assert_int_equal(k.last_used_at_ms, 1700000000300);
	assert_int_equal(qesd_key_get(tx, f->tenant.id, f->sign_id, &k), 0);
	assert_int_equal(k.last_used_at_ms, 1700000000050);
	qesd_tx_end(tx);
	/* last_used_at never moves back */
	qesd_auth_touch(svc, f->tenant.id, f->admin_id, 1600000000000);
	qesd_auth_svc_free(svc);	/* flushes */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_key_get(tx, f->tenant.id, f->admin_id, &k), 0);
	assert_int_equal(k.last_used_at_ms, 1700000000300);
	qesd_tx_end(tx);
}

static qesd_handler_result
dummy(qesd_request *req, qesd_response *resp)
{
	(void)req;
	(void)resp;
	return QESD_HANDLED;
}

static const qesd_route route_admin = { QESD_GET, "/v1/api-keys",
	QESD_SCOPE_ADMIN, 0, dummy, "keys.list" };
static const qesd_route route_probe = { QESD_GET, "/healthz", QESD_SCOPE_NONE,
	QESD_ROUTE_DURING_DRAIN, dummy, "health.live" };

/* Run the middleware on a fresh request; returns its result. */
static int
run_mw(struct fx *f, const qesd_route *route, const char *authz,
    const char *addr, qesd_request *req, qesd_response *resp)
{
	char hdr[200];

	memset(req, 0, sizeof(*req));
	qesd_response_clear(resp);
	memset(resp, 0, sizeof(*resp));
	req->route = route;
	req->route_name = route->name;
	req->method_name = "GET";
	req->path = (char *)route->pattern;
	req->app = f->app;
	snprintf(req->request_id, sizeof(req->request_id), "test-req");
	snprintf(req->client_addr, sizeof(req->client_addr), "%s", addr);
	if (authz != NULL) {
		snprintf(hdr, sizeof(hdr), "%s", authz);
		req->authorization = strdup(hdr);
		qes_wipe(hdr, sizeof(hdr));
	}
	return qesd_auth_middleware(f->app, req, resp);
}

static const char *
header(const qesd_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (strcmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

static void
test_middleware(void **state)
{
	struct fx *f = *state;
	qesd_request req;
	qesd_response resp;
	char hdr[200], revoked_key[QESD_APIKEY_SIZE], revoked_id[QESD_ID_SIZE];
	char expired_key[QESD_APIKEY_SIZE], expired_id[QESD_ID_SIZE];
	qesd_tx *tx = NULL;
	int r;

	memset(&resp, 0, sizeof(resp));

	/* probes: nothing checked, the header is dropped */
	r = run_mw(f, &route_probe, "Bearer garbage", "10.0.0.1", &req, &resp);
	assert_int_equal(r, QESD_MW_CONTINUE);
	assert_null(req.authorization);
	assert_false(req.auth.authenticated);

	/* missing header */
	r = run_mw(f, &route_admin, NULL, "10.0.0.1", &req, &resp);
	assert_int_equal(r, QESD_MW_STOP);
	assert_int_equal(resp.status, 401);
	assert_string_equal(resp.problem, "unauthorized");
	assert_non_null(header(&resp, "WWW-Authenticate"));

	/* malformed */
	r = run_mw(f, &route_admin, "Bearer qes_nonsense", "10.0.0.2", &req, &resp);
	assert_int_equal(r, QESD_MW_STOP);
	assert_int_equal(resp.status, 401);
	assert_string_equal(resp.problem, "unauthorized");
	assert_null(req.authorization);

	/* good: authenticated, header wiped and freed */
	snprintf(hdr, sizeof(hdr), "Bearer %s", f->admin_key);
	r = run_mw(f, &route_admin, hdr, "10.0.0.3", &req, &resp);
	assert_int_equal(r, QESD_MW_CONTINUE);
	assert_null(req.authorization);
	assert_true(req.auth.authenticated);
	assert_string_equal(req.auth.tenant_id, f->tenant.id);
	assert_string_equal(req.auth.key_id, f->admin_id);
	assert_int_equal(req.auth.scopes, QESD_SCOPE_ALL);

	/* the same answer for unknown key, wrong secret, revoked, expired */
	add_key(f, QESD_SCOPE_ADMIN, 0, revoked_key, revoked_id);
	add_key(f, QESD_SCOPE_ADMIN, qesd_now_ms(NULL) + 3600000, expired_key,
	    expired_id);
	snprintf(hdr, sizeof(hdr), "Bearer %s", revoked_key);
	assert_int_equal(run_mw(f, &route_admin, hdr, "10.0.1.1", &req, &resp),
	    QESD_MW_CONTINUE);
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_key_revoke(tx, f->tenant.id, revoked_id,
	    qesd_now_ms(NULL)), 0);
	assert_int_equal(qesd_tx_commit(tx), 0);
	qesd_tx_end(tx);
	qesd_auth_evict(f->app->auth, revoked_id);

	{
		char wrong[QESD_APIKEY_SIZE], unknown[QESD_APIKEY_SIZE];
		char *cases[4];

		snprintf(wrong, sizeof(wrong), "%s", f->admin_key);
		wrong[strlen(wrong) - 2] = wrong[strlen(wrong) - 2] == 'a' ? 'b' : 'a';
		snprintf(unknown, sizeof(unknown), "%s", f->admin_key);
		unknown[10] = unknown[10] == 'a' ? 'b' : 'a';
		cases[0] = wrong;
		cases[1] = unknown;
		cases[2] = revoked_key;
		cases[3] = NULL;
		for (int i = 0; cases[i] != NULL; i++) {
			snprintf(hdr, sizeof(hdr), "Bearer %s", cases[i]);
			r = run_mw(f, &route_admin, hdr, "10.0.2.1", &req, &resp);
			assert_int_equal(r, QESD_MW_STOP);
			assert_int_equal(resp.status, 401);
			assert_string_equal(resp.problem, "invalid_api_key");
			assert_false(req.auth.authenticated);
			assert_null(req.authorization);
		}
		qes_wipe(wrong, sizeof(wrong));
	}

	/* expiry through the clock: move the testing clock past expires_at */
	snprintf(hdr, sizeof(hdr), "Bearer %s", expired_key);
	assert_int_equal(run_mw(f, &route_admin, hdr, "10.0.3.1", &req, &resp),
	    QESD_MW_CONTINUE);
	{
		char path[128];
		qesd_clock *old = f->app->clock;

		snprintf(path, sizeof(path), "%s/clock", f->dir);
		write_file(path, "7200000\n");
		assert_int_equal(qesd_clock_new(path, &f->app->clock), 0);
		r = run_mw(f, &route_admin, hdr, "10.0.3.1", &req, &resp);
		assert_int_equal(r, QESD_MW_STOP);
		assert_string_equal(resp.problem, "invalid_api_key");
		qesd_clock_free(f->app->clock);
		f->app->clock = old;
	}

	/* per-key bucket: burst 5 at 1/s; the 6th is 429 with Retry-After */
	snprintf(hdr, sizeof(hdr), "Bearer %s", f->sign_key);
	for (int i = 0; i < 5; i++) {
		char addr[32];

		snprintf(addr, sizeof(addr), "10.1.0.%d", i);	/* not the address limit */
		assert_int_equal(run_mw(f, &route_admin, hdr, addr, &req, &resp),
		    QESD_MW_CONTINUE);
	}
	r = run_mw(f, &route_admin, hdr, "10.1.0.9", &req, &resp);
	assert_int_equal(r, QESD_MW_STOP);
	assert_int_equal(resp.status, 429);
	assert_string_equal(resp.problem, "rate_limited");
	assert_string_equal(header(&resp, "Retry-After"), "1");

	/* failures from one address: after 20, 429 even for a good key */
	for (int i = 0; i < 19; i++) {
		r = run_mw(f, &route_admin, "Bearer qes_bad", "10.9.9.9", &req, &resp);
		assert_int_equal(resp.status, 401);
	}
	r = run_mw(f, &route_admin, "Bearer qes_bad", "10.9.9.9", &req, &resp);
	assert_int_equal(resp.status, 429);
	snprintf(hdr, sizeof(hdr), "Bearer %s", f->admin_key);
	r = run_mw(f, &route_admin, hdr, "10.9.9.9", &req, &resp);
	assert_int_equal(r, QESD_MW_STOP);
	assert_int_equal(resp.status, 429);
	assert_non_null(header(&resp, "Retry-After"));
	/* other addresses are fine */
	assert_int_equal(run_mw(f, &route_admin, hdr, "10.9.9.8", &req, &resp),
	    QESD_MW_CONTINUE);

	qesd_response_clear(&resp);
	qes_wipe(hdr, sizeof(hdr));
	qes_wipe(revoked_key, sizeof(revoked_key));
	qes_wipe(expired_key, sizeof(expired_key));
}

static void
test_audit_in_tx(void **state)
{
	struct fx *f = *state;
	qesd_request req;
	qesd_response resp;
	qes_audit_record *recs = NULL;
	char next[QESD_CURSOR_SIZE];
	qesd_tx *tx = NULL;
	size_t n = 0;

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.route_name = "keys.create";
	req.method_name = "POST";
	req.app = f->app;
	snprintf(req.request_id, sizeof(req.request_id), "rid-1");
	snprintf(req.client_addr, sizeof(req.client_addr), "192.0.2.1");

	/* not authenticated: no tenant chain to write to */
	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_audit_in_tx(tx, &req, "key.created", 201, NULL),
	    QES_ERR_INVALID_ARG);
	req.auth.authenticated = 1;
	snprintf(req.auth.tenant_id, sizeof(req.auth.tenant_id), "%s", f->tenant.id);
	snprintf(req.auth.key_id, sizeof(req.auth.key_id), "%s", f->admin_id);
	assert_int_equal(qesd_audit_in_tx(tx, &req, "key.created", 201,
	    "{\"key_id\":\"x\"}"), 0);
	/* rolled back: not marked, the after hook would record the request */
	qesd_tx_end(tx);
	assert_false(req.app_flags & QESD_APPF_AUDITED);
	req.app_flags = 0;

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_WRITE, &tx), 0);
	assert_int_equal(qesd_audit_in_tx(tx, &req, "key.created", 201,
	    "{\"key_id\":\"x\"}"), 0);
	assert_int_equal(qesd_audit_commit(tx, &req), 0);
	qesd_tx_end(tx);
	assert_true(req.app_flags & QESD_APPF_AUDITED);

	/* the after hook writes nothing more for it */
	resp.status = 201;
	qesd_audit_after(f->app, &req, &resp, 0.001);
	/* but one api.request for a read */
	req.app_flags = 0;
	req.route_name = "keys.list";
	req.method_name = "GET";
	resp.status = 200;
	qesd_audit_after(f->app, &req, &resp, 0.001);
	/* and nothing for an unauthenticated request */
	req.auth.authenticated = 0;
	qesd_audit_after(f->app, &req, &resp, 0.001);
	assert_int_equal(qesd_app_flush(f->app), 0);

	assert_int_equal(qesd_store_begin(f->app->store, QESD_TX_READ, &tx), 0);
	assert_int_equal(qesd_audit_list(tx, f->tenant.id, NULL, NULL, 0, &recs,
	    &n, next), 0);
	qesd_tx_end(tx);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].type, "key.created");
	assert_string_equal(recs[0].route, "keys.create");
	assert_int_equal(recs[0].status, 201);
	assert_string_equal(recs[0].key_id, f->admin_id);
	assert_string_equal(recs[0].request_id, "rid-1");
	assert_string_equal(recs[0].client_addr, "192.0.2.1");
	assert_string_equal(recs[1].type, "api.request");
	assert_string_equal(recs[1].route, "keys.list");
	assert_int_equal(recs[1].status, 200);
	qes_audit_records_free(recs, n);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_bearer),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_bucket_math),
		cmocka_unit_test(test_failtrack),
		cmocka_unit_test(test_addr_key),
		cmocka_unit_test(test_clock),
		cmocka_unit_test(test_clock_config),
		T(test_cache_invalidation),
		T(test_touch_batch),
		T(test_middleware),
		T(test_audit_in_tx),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
