/*
 * test_audit.c - unit tests for audit.c: the canonical encoding against a
 * golden vector computed independently (Python, from the spec in
 * include/qes/audit.h), the details canonical form, the hash chain and each
 * way it breaks (edit, delete, reorder, forged anchor), address erasure,
 * the strict JSON form, and export files: verification, tampering, and
 * malformed, truncated and oversized input.
 */
#define _GNU_SOURCE	/* vasprintf */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qes/audit.h"
#include "qes/buf.h"
#include "qes/err.h"

#define N_CHAIN 100

static void
hex_to(const char *hex, uint8_t *out, size_t out_len)
{
	qes_buf *b = qes_buf_new();

	assert_non_null(b);
	assert_int_equal(qes_hex_decode(hex, b), 0);
	assert_int_equal(qes_buf_len(b), out_len);
	memcpy(out, qes_buf_data(b), out_len);
	qes_buf_free(b);
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	assert_non_null(d);
	return d;
}

static char *
xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	return s;
}

/* A sealed record seq of tenant, chained to prev. */
static void
make_record(qes_audit_record *r, const char *tenant, uint64_t seq,
    const uint8_t *prev)
{
	char *details = NULL;

	memset(r, 0, sizeof(*r));
	r->tenant_id = xstrdup(tenant);
	r->seq = seq;
	r->id = xprintf("aud_%llu", (unsigned long long)seq);
	r->time_ms = 1700000000000LL + (int64_t)seq * 1000;
	r->type = xstrdup(seq % 3 == 0 ? "key.created" : "api.request");
	r->request_id = xprintf("req-%llu", (unsigned long long)seq);
	r->key_id = xstrdup("key_test");
	r->route = xstrdup("/v1/api-keys");
	r->method = xstrdup("GET");
	r->status = 200;
	if (seq % 5 != 0) {
		char addr[32];

		snprintf(addr, sizeof(addr), "203.0.113.%u",
		    (unsigned)(seq % 250));
		assert_int_equal(qes_audit_set_addr(r, addr), 0);
	}
	if (seq % 2 == 0) {
		char in[64];

		snprintf(in, sizeof(in), "{ \"seq\": %llu, \"a\": [1, true] }",
		    (unsigned long long)seq);
		assert_int_equal(qes_audit_canonical_details(in, &details), 0);
		r->details = details;
	}
	if (prev != NULL)
		memcpy(r->prev_hash, prev, QES_AUDIT_HASH_LEN);
	assert_int_equal(qes_audit_seal(r), 0);
}

/* Records 1..n of one tenant, from the zero anchor. */
static qes_audit_record *
make_chain(const char *tenant, size_t n)
{
	qes_audit_record *recs = calloc(n, sizeof(*recs));
	size_t i;

	assert_non_null(recs);
	for (i = 0; i < n; i++)
		make_record(&recs[i], tenant, i + 1,
		    i > 0 ? recs[i - 1].hash : NULL);
	return recs;
}

static void
expect_break(const qes_audit_record *recs, size_t n, uint64_t anchor_seq,
    const uint8_t *anchor_hash, uint64_t seq, const char *reason)
{
	qes_audit_chain c;

	assert_int_equal(qes_audit_verify_records("ten_a", anchor_seq,
	    anchor_hash, recs, n, &c), QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, seq);
	assert_string_equal(c.reason, reason);
}

/* ---- canonical encoding ---- */

static const char golden_enc[] =
    "7165732d61756469742d7631010000000a74656e5f676f6c64656e0100000008"
    "0000000000000007010000000a6175645f676f6c64656e01000000080000018b"
    "cfe5687b010000000b6b65792e6372656174656401000000057265712d310100"
    "0000076b65795f61626300010000000c2f76312f6170692d6b65797301000000"
    "04504f53540100000004000000c90100000020194ec728e6194a25f082e6ef9b"
    "f8ef686f3986abd5741ae869036d4bdfcfb9bd01000000407b226e223a332c22"
    "6e616d65223a226369222c226e6f7465223a226361665c7530304539222c2273"
    "636f706573223a5b227369676e222c2261646d696e225d7d0100000020aaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char golden_hash[] =
    "c1df531fc2abf04a30c5ef360e212daade11634f4ff28e52b13dcaa69fad02ec";
static const char golden_addr_digest[] =
    "194ec728e6194a25f082e6ef9bf8ef686f3986abd5741ae869036d4bdfcfb9bd";

static void
golden_record(qes_audit_record *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	r->tenant_id = xstrdup("ten_golden");
	r->seq = 7;
	r->id = xstrdup("aud_golden");
	r->time_ms = 1700000000123LL;
	r->type = xstrdup("key.created");
	r->request_id = xstrdup("req-1");
	r->key_id = xstrdup("key_abc");
	r->route = xstrdup("/v1/api-keys");
	r->method = xstrdup("POST");
	r->status = 201;
	r->client_addr = xstrdup("192.0.2.1");
	for (i = 0; i < QES_AUDIT_SALT_LEN; i++)
		r->addr_salt[i] = (uint8_t)(i + 1);
	r->has_addr_salt = 1;
	hex_to(golden_addr_digest, r->addr_digest, QES_AUDIT_HASH_LEN);
	r->has_addr_digest = 1;
	/* not canonical on input: order, spaces, a raw UTF-8 character */
	assert_int_equal(qes_audit_canonical_details(
	    "{\"scopes\": [\"sign\", \"admin\"], \"name\": \"ci\", "
	    "\"note\": \"caf\xc3\xa9\", \"n\": 3}", &r->details), 0);
	memset(r->prev_hash, 0xaa, QES_AUDIT_HASH_LEN);
}

static void
test_golden_vector(void **state)
{
	qes_audit_record r;
	qes_audit_chain c;
	qes_buf *b = qes_buf_new(), *hex = qes_buf_new();
	uint8_t want[QES_AUDIT_HASH_LEN], anchor[QES_AUDIT_HASH_LEN];
	const char *s;

	(void)state;
	assert_non_null(b);
	assert_non_null(hex);
	golden_record(&r);
	assert_string_equal(r.details,
	    "{\"n\":3,\"name\":\"ci\",\"note\":\"caf\\u00E9\","
	    "\"scopes\":[\"sign\",\"admin\"]}");
	assert_int_equal(qes_audit_encode(&r, b), 0);
	assert_int_equal(qes_buf_put_hex(hex, qes_buf_data(b),
	    qes_buf_len(b)), 0);
	assert_int_equal(qes_buf_cstr(hex, &s), 0);
	assert_string_equal(s, golden_enc);
	assert_int_equal(qes_audit_seal(&r), 0);
	hex_to(golden_hash, want, sizeof(want));
	assert_memory_equal(r.hash, want, sizeof(want));

	/* it verifies as seq 7 after an anchor at 6, commitment included */
	memset(anchor, 0xaa, sizeof(anchor));
	assert_int_equal(qes_audit_verify_records("ten_golden", 6, anchor, &r,
	    1, &c), 0);
	assert_true(qes_audit_chain_ends_at(&c, 7, want));
	assert_false(qes_audit_chain_ends_at(&c, 8, want));

	/* absent and empty are different values */
	free(r.request_id);
	r.request_id = xstrdup("");
	assert_int_equal(qes_audit_hash(&r, anchor), 0);
	assert_memory_not_equal(anchor, want, sizeof(want));
	free(r.request_id);
	r.request_id = NULL;
	assert_int_equal(qes_audit_hash(&r, anchor), 0);
	assert_memory_not_equal(anchor, want, sizeof(want));

	qes_audit_record_clear(&r);
	qes_buf_free(b);
	qes_buf_free(hex);
}

static void
test_canonical_details(void **state)
{
	static const char *bad[] = {
		"[1,2]", "\"x\"", "17", "null", "{", "{\"a\":1}x",
		"{\"a\":1.5}", "{\"a\":[1e3]}", "{\"a\":1,\"a\":2}",
		"{\"a\":\"x\\u0000y\"}",
	};
	char deep[256], *out = NULL, *big;
	size_t i;

	(void)state;
	assert_int_equal(qes_audit_canonical_details(
	    " { \"b\" : {\"z\":null,\"y\":false}, \"a\": \"/\" } ", &out), 0);
	assert_string_equal(out, "{\"a\":\"/\",\"b\":{\"y\":false,\"z\":null}}");
	free(out);
	assert_int_equal(qes_audit_canonical_details("{}", &out), 0);
	assert_string_equal(out, "{}");
	free(out);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = (char *)1;
		assert_int_equal(qes_audit_canonical_details(bad[i], &out),
		    QES_ERR_FORMAT);
		assert_null(out);
	}
	/* depth: 8 levels of nesting are fine, 9 are not */
	strcpy(deep, "{\"a\":[[[[[[[1]]]]]]]}");
	assert_int_equal(qes_audit_canonical_details(deep, &out), 0);
	free(out);
	strcpy(deep, "{\"a\":[[[[[[[[1]]]]]]]]}");
	assert_int_equal(qes_audit_canonical_details(deep, &out),
	    QES_ERR_LIMIT);
	/* size */
	big = malloc(QES_AUDIT_DETAILS_MAX + 32);
	assert_non_null(big);
	strcpy(big, "{\"a\":\"");
	memset(big + 6, 'x', QES_AUDIT_DETAILS_MAX);
	strcpy(big + 6 + QES_AUDIT_DETAILS_MAX, "\"}");
	assert_int_equal(qes_audit_canonical_details(big, &out),
	    QES_ERR_LIMIT);
	free(big);
}

static void
test_record_check(void **state)
{
	qes_audit_record r;
	const char *why;
	char *save;

	(void)state;
	make_record(&r, "ten_a", 4, NULL);
	assert_int_equal(qes_audit_record_check(&r, &why), 0);
	assert_null(why);

	save = r.route;
	r.route = (char *)"/v1/x\x1b[31m";		/* terminal escape */
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	assert_string_equal(why, "route");
	r.route = (char *)"/v1/\xc0\xaf";		/* overlong '/' */
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	r.route = save;

	r.status = 42;
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	assert_string_equal(why, "status");
	r.status = 0;
	assert_int_equal(qes_audit_record_check(&r, NULL), 0);

	save = r.type;
	r.type = NULL;
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	assert_string_equal(why, "type");
	r.type = save;

	r.has_addr_salt = 0;				/* address without salt */
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	assert_string_equal(why, "addr_salt");
	r.has_addr_salt = 1;

	save = r.details;
	r.details = (char *)"{\"seq\": 4}";		/* not canonical */
	assert_int_equal(qes_audit_record_check(&r, &why), QES_ERR_FORMAT);
	assert_string_equal(why, "details");
	r.details = save;
	assert_int_equal(qes_audit_record_check(&r, NULL), 0);
	qes_audit_record_clear(&r);
}

/* ---- chain ---- */

static void
test_chain_verifies(void **state)
{
	qes_audit_record *recs = make_chain("ten_a", N_CHAIN);
	qes_audit_chain c;

	(void)state;
	assert_int_equal(qes_audit_verify_records("ten_a", 0, NULL, recs,
	    N_CHAIN, &c), 0);
	assert_int_equal(c.count, N_CHAIN);
	assert_null(c.reason);
	assert_true(qes_audit_chain_ends_at(&c, N_CHAIN,
	    recs[N_CHAIN - 1].hash));
	/* the same records are not another tenant's chain */
	assert_int_equal(qes_audit_verify_records("ten_b", 0, NULL, recs,
	    N_CHAIN, &c), QES_ERR_CHAIN_BROKEN);
	assert_int_equal(c.broken_seq, 1);
	assert_string_equal(c.reason, "tenant mismatch");
	/* broken is sticky */
	assert_int_equal(qes_audit_chain_add(&c, &recs[0]),
	    QES_ERR_CHAIN_BROKEN);
	qes_audit_records_free(recs, N_CHAIN);
}

static void
test_chain_edit_each_field(void **state)
{
	qes_audit_record *recs = make_chain("ten_a", N_CHAIN);
	qes_audit_record *r = &recs[36];		/* seq 37 */
	char *save;
	int64_t t;

	(void)state;
	save = r->type;
	r->type = (char *)"api.request.x";
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->type = save;

	r->status = 500;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->status = 200;

	t = r->time_ms;
	r->time_ms = t + 1;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->time_ms = t;

	save = r->key_id;
	r->key_id = NULL;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->key_id = save;

	save = r->details;
	r->details = (char *)"{\"seq\":38}";
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->details = save;

	r->addr_digest[0] ^= 1;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->addr_digest[0] ^= 1;

	r->hash[31] ^= 0x80;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "hash mismatch");
	r->hash[31] ^= 0x80;

	/* the address is outside the hash, but its commitment is not */
	save = r->client_addr;
	r->client_addr = (char *)"198.51.100.7";
	expect_break(recs, N_CHAIN, 0, NULL, 37, "addr commitment mismatch");
	r->client_addr = save;
	r->addr_salt[5] ^= 1;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "addr commitment mismatch");
	r->addr_salt[5] ^= 1;

	r->prev_hash[0] ^= 1;
	expect_break(recs, N_CHAIN, 0, NULL, 37, "prev_hash mismatch");
	r->prev_hash[0] ^= 1;

	/* everything restored: intact again */
	assert_int_equal(qes_audit_verify_records("ten_a", 0, NULL, recs,
	    N_CHAIN, &(qes_audit_chain){ 0 }), 0);
	qes_audit_records_free(recs, N_CHAIN);
}

static void
test_chain_delete_and_reorder(void **state)
{
	qes_audit_record *recs = make_chain("ten_a", N_CHAIN), tmp;
	qes_audit_chain c;
	uint8_t head[QES_AUDIT_HASH_LEN];
	size_t i;

	(void)state;
	memcpy(head, recs[N_CHAIN - 1].hash, sizeof(head));

	/* delete seq 50: found at the next seq */
	tmp = recs[49];
	memmove(&recs[49], &recs[50], (N_CHAIN - 50) * sizeof(*recs));
	expect_break(recs, N_CHAIN - 1, 0, NULL, 51, "seq gap");
	/* and when the deleter renumbers the rest, the links break at 50 */
	for (i = 49; i < N_CHAIN - 1; i++)
		recs[i].seq--;
	expect_break(recs, N_CHAIN - 1, 0, NULL, 50, "prev_hash mismatch");
	/* a deleter who re-links and re-hashes everything after it builds a
	 * valid chain - with a different head, which the store compares */
	for (i = 49; i < N_CHAIN - 1; i++) {
		memcpy(recs[i].prev_hash, recs[i - 1].hash, QES_AUDIT_HASH_LEN);
		assert_int_equal(qes_audit_seal(&recs[i]), 0);
	}
	assert_int_equal(qes_audit_verify_records("ten_a", 0, NULL, recs,
	    N_CHAIN - 1, &c), 0);
	assert_false(qes_audit_chain_ends_at(&c, N_CHAIN, head));
	assert_false(qes_audit_chain_ends_at(&c, N_CHAIN - 1, head));
	/* back to the original chain */
	for (i = N_CHAIN - 1; i > 49; i--)
		recs[i] = recs[i - 1];
	recs[49] = tmp;
	qes_audit_records_free(recs, N_CHAIN);
	recs = make_chain("ten_a", N_CHAIN);

	/* swap 30 and 31 */
	tmp = recs[29];
	recs[29] = recs[30];
	recs[30] = tmp;
	expect_break(recs, N_CHAIN, 0, NULL, 31, "seq gap");
	/* swapped, seqs renumbered to look in order */
	recs[29].seq = 30;
	recs[30].seq = 31;
	expect_break(recs, N_CHAIN, 0, NULL, 30, "prev_hash mismatch");
	recs[29].seq = 31;
	recs[30].seq = 30;
	tmp = recs[29];
	recs[29] = recs[30];
	recs[30] = tmp;

	/* a duplicated record */
	tmp = recs[60];
	recs[60] = recs[59];
	expect_break(recs, N_CHAIN, 0, NULL, 60, "seq out of order");
	recs[60] = tmp;
	assert_int_equal(qes_audit_verify_records("ten_a", 0, NULL, recs,
	    N_CHAIN, &c), 0);
	qes_audit_records_free(recs, N_CHAIN);
}

static void
test_chain_anchor_and_erasure(void **state)
{
	qes_audit_record *recs = make_chain("ten_a", N_CHAIN);
	qes_audit_chain c;
	uint8_t anchor[QES_AUDIT_HASH_LEN];
	size_t i, erased = 0;

	(void)state;
	/* purge 1..40: the anchor is (40, hash of 40) */
	memcpy(anchor, recs[39].hash, sizeof(anchor));
	assert_int_equal(qes_audit_verify_records("ten_a", 40, anchor,
	    &recs[40], N_CHAIN - 40, &c), 0);
	assert_int_equal(c.count, N_CHAIN - 40);
	/* a wrong anchor hash or seq does not verify */
	anchor[0] ^= 1;
	expect_break(&recs[40], N_CHAIN - 40, 40, anchor, 41,
	    "prev_hash mismatch");
	anchor[0] ^= 1;
	expect_break(&recs[40], N_CHAIN - 40, 39, anchor, 41, "seq gap");
	/* no anchor at all: the chain must start at seq 1 */
	expect_break(&recs[40], N_CHAIN - 40, 0, NULL, 41, "seq gap");
	assert_int_equal(qes_audit_chain_init(&c, "ten_a", 3, NULL),
	    QES_ERR_INVALID_ARG);

	/* erase addresses of the first half: still verifies */
	for (i = 0; i < N_CHAIN / 2; i++) {
		if (recs[i].client_addr != NULL)
			erased++;
		qes_audit_erase_addr(&recs[i]);
		assert_null(recs[i].client_addr);
		assert_false(recs[i].has_addr_salt);
	}
	assert_true(erased > 30);
	assert_int_equal(qes_audit_verify_records("ten_a", 0, NULL, recs,
	    N_CHAIN, &c), 0);
	/* but an erased address cannot be put back differently: no salt */
	recs[1].client_addr = xstrdup("203.0.113.2");
	expect_break(recs, N_CHAIN, 0, NULL, 2, "invalid record");
	qes_audit_records_free(recs, N_CHAIN);
}

/* ---- JSON ---- */

static void
test_json_roundtrip_and_strictness(void **state)
{
	qes_audit_record r, back;
	qes_audit_chain c;
	json_t *j = NULL, *k;
	json_error_t jerr;
	uint8_t h[QES_AUDIT_HASH_LEN];

	(void)state;
	golden_record(&r);
	assert_int_equal(qes_audit_seal(&r), 0);
	assert_int_equal(qes_audit_record_to_json(&r, &j), 0);
	assert_int_equal(json_object_size(j), 17);
	assert_true(json_is_null(json_object_get(j, "device_id")));
	assert_true(json_is_object(json_object_get(j, "details")));
	assert_string_equal(json_string_value(json_object_get(j, "hash")),
	    golden_hash);
	assert_int_equal(qes_audit_record_from_json(j, &back), 0);
	assert_string_equal(back.details, r.details);
	assert_string_equal(back.client_addr, "192.0.2.1");
	assert_null(back.device_id);
	assert_int_equal(back.status, 201);
	assert_int_equal(qes_audit_hash(&back, h), 0);
	assert_memory_equal(h, r.hash, sizeof(h));
	memset(h, 0xaa, sizeof(h));
	assert_int_equal(qes_audit_verify_records("ten_golden", 6, h, &back, 1,
	    &c), 0);
	qes_audit_record_clear(&back);

#define EXPECT_BAD(mutate) do {						\
	k = json_deep_copy(j);						\
	assert_non_null(k);						\
	mutate;								\
	assert_int_equal(qes_audit_record_from_json(k, &back),		\
	    QES_ERR_FORMAT);						\
	assert_null(back.tenant_id);					\
	json_decref(k);							\
} while (0)
	EXPECT_BAD(json_object_set_new(k, "extra", json_true()));
	EXPECT_BAD(json_object_del(k, "route"));
	EXPECT_BAD(json_object_del(k, "device_id"));
	EXPECT_BAD(json_object_set_new(k, "seq", json_string("7")));
	EXPECT_BAD(json_object_set_new(k, "seq", json_integer(0)));
	EXPECT_BAD(json_object_set_new(k, "time_ms", json_integer(-1)));
	EXPECT_BAD(json_object_set_new(k, "status", json_integer(99)));
	EXPECT_BAD(json_object_set_new(k, "status", json_string("201")));
	EXPECT_BAD(json_object_set_new(k, "type", json_null()));
	EXPECT_BAD(json_object_set_new(k, "type", json_string("")));
	EXPECT_BAD(json_object_set_new(k, "route", json_integer(1)));
	EXPECT_BAD(json_object_set_new(k, "details", json_string("{}")));
	EXPECT_BAD(json_object_set_new(k, "details", json_loads(
	    "{\"x\":0.5}", 0, &jerr)));
	EXPECT_BAD(json_object_set_new(k, "hash", json_string(
	    "C1DF531FC2ABF04A30C5EF360E212DAADE11634F4FF28E52B13DCAA69FAD02EC")));
	EXPECT_BAD(json_object_set_new(k, "hash", json_string("c1df")));
	EXPECT_BAD(json_object_set_new(k, "addr_salt", json_null()));
	EXPECT_BAD(json_object_set_new(k, "key_id",
	    json_stringn("a\0b", 3)));
#undef EXPECT_BAD
	k = json_array();
	assert_int_equal(qes_audit_record_from_json(k, &back),
	    QES_ERR_FORMAT);
	json_decref(k);
	json_decref(j);
	qes_audit_record_clear(&r);
}

/* ---- export files ---- */

static char tmpdir[64];

static int
setup_tmp(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/qes-test-audit-XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown_tmp(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
write_file(const char *name, const void *data, size_t len)
{
	char *path = xprintf("%s/%s", tmpdir, name);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	return path;
}

/* Export of recs (anchor before recs[0]) as a string. */
static qes_buf *
export(const qes_audit_record *recs, size_t n, uint64_t anchor_seq,
    const uint8_t *anchor_hash)
{
	qes_buf *b = qes_buf_new();
	size_t i;

	assert_non_null(b);
	assert_int_equal(qes_audit_export_header(b, "ten_a", anchor_seq,
	    anchor_hash), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(qes_audit_export_record(b, &recs[i]), 0);
	return b;
}

static int
verify_text(const char *name, const char *text, size_t len,
    qes_audit_verify_result *res)
{
	char *path = write_file(name, text, len);
	int r = qes_audit_verify_file(path, res);

	free(path);
	return r;
}

static void
test_export_verify(void **state)
{
	static const char header[] = "{\"format\":\"qes-audit-export\","
	    "\"version\":1,\"tenant\":\"ten_a\",\"anchor\":{\"seq\":0,"
	    "\"hash\":\"00000000";
	qes_audit_record *recs = make_chain("ten_a", N_CHAIN);
	qes_audit_verify_result res;
	qes_buf *b;
	const char *text, *p;
	char *edit, *q;
	size_t len;

	(void)state;
	b = export(recs, N_CHAIN, 0, NULL);
	assert_int_equal(qes_buf_cstr(b, &text), 0);
	len = qes_buf_len(b);
	assert_true(strncmp(text, header, strlen(header)) == 0);
	assert_int_equal(verify_text("ok.jsonl", text, len, &res), 0);
	assert_int_equal(res.records, N_CHAIN);
	assert_int_equal(res.last_seq, N_CHAIN);
	assert_memory_equal(res.last_hash, recs[N_CHAIN - 1].hash,
	    QES_AUDIT_HASH_LEN);
	assert_string_equal(res.tenant_id, "ten_a");
	assert_string_equal(res.reason, "");

	/* edit the status of seq 37 in the text */
	edit = xstrdup(text);
	p = strstr(edit, "\"id\":\"aud_37\"");
	assert_non_null(p);
	q = strstr(p, "\"status\":200");
	assert_non_null(q);
	memcpy(q, "\"status\":201", 12);
	assert_int_equal(verify_text("edit.jsonl", edit, len, &res),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(res.broken_seq, 37);
	assert_int_equal(res.line, 38);
	assert_string_equal(res.reason, "hash mismatch");
	assert_int_equal(res.records, 36);
	assert_int_equal(res.last_seq, 36);
	free(edit);

	/* delete the line of seq 50 */
	edit = xstrdup(text);
	p = strstr(edit, "{\"tenant_id\":\"ten_a\",\"seq\":50,");
	q = strstr(edit, "{\"tenant_id\":\"ten_a\",\"seq\":51,");
	assert_non_null(p);
	assert_non_null(q);
	memmove((char *)p, q, strlen(q) + 1);
	assert_int_equal(verify_text("del.jsonl", edit, strlen(edit), &res),
	    QES_ERR_CHAIN_BROKEN);
	assert_int_equal(res.broken_seq, 51);
	assert_string_equal(res.reason, "seq gap");
	free(edit);
	qes_buf_free(b);

	/* an export after a purge starts at its anchor */
	b = export(&recs[40], N_CHAIN - 40, 40, recs[39].hash);
	assert_int_equal(qes_buf_cstr(b, &text), 0);
	assert_int_equal(verify_text("anchored.jsonl", text, qes_buf_len(b),
	    &res), 0);
	assert_int_equal(res.anchor_seq, 40);
	assert_int_equal(res.records, N_CHAIN - 40);
	qes_buf_free(b);
	/* header only: intact, nothing verified */
	b = export(recs, 0, 40, recs[39].hash);
	assert_int_equal(qes_buf_cstr(b, &text), 0);
	assert_int_equal(verify_text("header.jsonl", text, qes_buf_len(b),
	    &res), 0);
	assert_int_equal(res.records, 0);
	assert_int_equal(res.last_seq, 40);
	qes_buf_free(b);
	qes_audit_records_free(recs, N_CHAIN);
}

static void
test_export_bad_files(void **state)
{
	qes_audit_record *recs = make_chain("ten_a", 5);
	qes_audit_verify_result res;
	qes_buf *b = export(recs, 5, 0, NULL);
	const char *text, *p;
	char *bad, *big, *nul;
	size_t len, cut;

	(void)state;
	assert_int_equal(qes_buf_cstr(b, &text), 0);
	len = qes_buf_len(b);

	/* truncated inside the last line */
	cut = len - 40;
	assert_int_equal(verify_text("trunc.jsonl", text, cut, &res),
	    QES_ERR_TRUNCATED);
	assert_int_equal(res.line, 6);
	assert_int_equal(res.records, 4);
	/* the last line complete but without its newline is fine */
	assert_int_equal(verify_text("nonl.jsonl", text, len - 1, &res), 0);
	assert_int_equal(res.records, 5);

	/* garbage in the middle */
	p = strstr(text, "{\"tenant_id\":\"ten_a\",\"seq\":3,");
	assert_non_null(p);
	bad = xprintf("%.*sthis is not json\n%s", (int)(p - text), text, p);
	assert_int_equal(verify_text("garbage.jsonl", bad, strlen(bad), &res),
	    QES_ERR_FORMAT);
	assert_int_equal(res.line, 4);		/* header, seq 1, seq 2, here */
	assert_string_equal(res.reason, "invalid JSON");
	assert_int_equal(res.records, 2);
	free(bad);

	/* an unknown field is named */
	bad = xstrdup(text);
	memcpy(strstr(bad, "\"route\""), "\"rout3\"", 7);
	assert_int_equal(verify_text("unknown.jsonl", bad, len, &res),
	    QES_ERR_FORMAT);
	assert_string_equal(res.reason,
	    "invalid record: unknown field 'rout3'");
	assert_int_equal(res.line, 2);
	free(bad);

	/* an empty line, an empty file, a NUL byte */
	bad = xprintf("%s\n%s", text, "");
	assert_int_equal(verify_text("blank.jsonl", bad, strlen(bad), &res),
	    QES_ERR_FORMAT);
	assert_string_equal(res.reason, "empty line");
	free(bad);
	assert_int_equal(verify_text("empty.jsonl", "", 0, &res),
	    QES_ERR_FORMAT);
	nul = xstrdup(text);
	nul[len - 30] = '\0';
	assert_int_equal(verify_text("nul.jsonl", nul, len, &res),
	    QES_ERR_FORMAT);
	assert_int_equal(res.line, 6);
	free(nul);

	/* a line over 64 KiB: a clean limit error, not a crash or a cut */
	big = malloc(QES_AUDIT_LINE_MAX + 16);
	assert_non_null(big);
	memset(big, ' ', QES_AUDIT_LINE_MAX + 15);
	big[0] = '{';
	big[QES_AUDIT_LINE_MAX + 14] = '}';
	big[QES_AUDIT_LINE_MAX + 15] = '\0';
	bad = xprintf("%s%s\n", text, big);
	assert_int_equal(verify_text("long.jsonl", bad, strlen(bad), &res),
	    QES_ERR_LIMIT);
	assert_int_equal(res.line, 7);
	assert_int_equal(res.records, 5);
	free(bad);
	free(big);

	/* headers */
	assert_int_equal(verify_text("h1.jsonl", "{\"format\":\"x\"}\n", 15,
	    &res), QES_ERR_FORMAT);
	bad = xstrdup(text);
	memcpy(strstr(bad, "\"version\":1"), "\"version\":2", 11);
	assert_int_equal(verify_text("h2.jsonl", bad, len, &res),
	    QES_ERR_UNSUPPORTED);
	free(bad);
	bad = xstrdup(text);
	memcpy(strstr(bad, "\"tenant\":\"ten_a\""), "\"tenant\":\"ten_b\"", 16);
	assert_int_equal(verify_text("h3.jsonl", bad, len, &res),
	    QES_ERR_CHAIN_BROKEN);
	assert_string_equal(res.reason, "tenant mismatch");
	assert_int_equal(res.broken_seq, 1);
	free(bad);
	/* a record line where the header belongs */
	bad = xstrdup(strchr(text, '\n') + 1);
	assert_int_equal(verify_text("h4.jsonl", bad, strlen(bad), &res),
	    QES_ERR_FORMAT);
	assert_int_equal(res.line, 1);
	free(bad);

	assert_int_equal(qes_audit_verify_file("/nonexistent/x.jsonl", &res),
	    QES_ERR_NOT_FOUND);
	qes_buf_free(b);
	qes_audit_records_free(recs, 5);
}

/* A long chain streams through in constant memory. */
static void
test_export_many(void **state)
{
	qes_audit_record r, prev;
	qes_audit_verify_result res;
	qes_buf *b = qes_buf_new();
	char *path = xprintf("%s/many.jsonl", tmpdir);
	FILE *fp = fopen(path, "w");
	uint64_t i, n = 10000;

	(void)state;
	assert_non_null(b);
	assert_non_null(fp);
	assert_int_equal(qes_audit_export_header(b, "ten_a", 0, NULL), 0);
	memset(&prev, 0, sizeof(prev));
	for (i = 1; i <= n; i++) {
		make_record(&r, "ten_a", i, i > 1 ? prev.hash : NULL);
		assert_int_equal(qes_audit_export_record(b, &r), 0);
		if (qes_buf_len(b) > 1 << 20) {
			assert_int_equal(fwrite(qes_buf_data(b), 1,
			    qes_buf_len(b), fp), qes_buf_len(b));
			qes_buf_reset(b);
		}
		qes_audit_record_clear(&prev);
		prev = r;
	}
	assert_int_equal(fwrite(qes_buf_data(b), 1, qes_buf_len(b), fp),
	    qes_buf_len(b));
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(qes_audit_verify_file(path, &res), 0);
	assert_int_equal(res.records, n);
	assert_memory_equal(res.last_hash, prev.hash, QES_AUDIT_HASH_LEN);
	qes_audit_record_clear(&prev);
	qes_buf_free(b);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_vector),
		cmocka_unit_test(test_canonical_details),
		cmocka_unit_test(test_record_check),
		cmocka_unit_test(test_chain_verifies),
		cmocka_unit_test(test_chain_edit_each_field),
		cmocka_unit_test(test_chain_delete_and_reorder),
		cmocka_unit_test(test_chain_anchor_and_erasure),
		cmocka_unit_test(test_json_roundtrip_and_strictness),
		cmocka_unit_test(test_export_verify),
		cmocka_unit_test(test_export_bad_files),
		cmocka_unit_test(test_export_many),
	};

	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
