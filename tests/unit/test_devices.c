/*
 * test_devices.c - unit tests of the devices service and its store
 * (devices.c, store_devices.c, store_sqlite_devices.c) on a fresh SQLite
 * file: stable credential ids, enrollment codes and their keyed hash,
 * device key checks, enrollments used once (compare-and-set), devices per
 * tenant (a foreign id is NOT_FOUND), revocation that sessions cannot slip
 * past, sessions (close once, last seen forward only, newest first, open
 * ones per replica), and credentials: replaced per inventory, listed only
 * for live devices, validity judged at read time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "devices.h"
#include "hub.h"
#include "store.h"
#include "store_devices.h"
#include "testcert.h"

#define T0 1700000000000LL

struct fixture {
	char dir[64];
	char url[160];
	qesd_store *s;
	qesd_tenant a, b;
};

static qesd_tx *
begin(qesd_store *s, qesd_tx_mode mode)
{
	qesd_tx *tx = NULL;

	assert_int_equal(qesd_store_begin(s, mode, &tx), 0);
	return tx;
}

static void
commit(qesd_tx *tx)
{
	int r = qesd_tx_commit(tx);

	if (r != 0)
		fprintf(stderr, "commit: %s\n", qesd_tx_errmsg(tx));
	assert_int_equal(r, 0);
	qesd_tx_end(tx);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	qesd_tx *tx;

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/qes-test-devices-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->url, sizeof(f->url), "sqlite:%s/qesd.db", f->dir);
	if (qesd_store_open(f->url, NULL, &f->s, err, sizeof(err)) != 0) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_tenant_create(tx, "A", T0, &f->a), 0);
	assert_int_equal(qesd_tenant_create(tx, "B", T0, &f->b), 0);
	commit(tx);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	int r;

	qesd_store_free(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	r = system(cmd);
	free(f);
	return r == 0 ? 0 : -1;
}

/* SPKI DER of key into out; its length. */
static size_t
spki(EVP_PKEY *k, uint8_t *out, size_t cap)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(k, &der);

	assert_true(n > 0 && (size_t)n <= cap);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	return (size_t)n;
}

static void
make_device(struct fixture *f, const qesd_tenant *t, const char *name,
    int64_t when, qesd_device *d)
{
	EVP_PKEY *k = testcert_key_ec("P-256");
	qesd_tx *tx;

	memset(d, 0, sizeof(*d));
	memcpy(d->tenant_id, t->id, sizeof(d->tenant_id));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->public_key_len = spki(k, d->public_key, sizeof(d->public_key));
	snprintf(d->agent_version, sizeof(d->agent_version), "0.1.0");
	snprintf(d->os, sizeof(d->os), "Linux");
	d->enrolled_at_ms = when;
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_insert(tx, d), 0);
	commit(tx);
	EVP_PKEY_free(k);
}

static void
make_session(struct fixture *f, const qesd_device *d, int64_t when,
    qesd_device_session *s, int want)
{
	qesd_tx *tx;

	memset(s, 0, sizeof(*s));
	assert_int_equal(qesd_id_new("ses", s->id), 0);
	memcpy(s->tenant_id, d->tenant_id, sizeof(s->tenant_id));
	memcpy(s->device_id, d->id, sizeof(s->device_id));
	snprintf(s->replica, sizeof(s->replica), "replica-1");
	snprintf(s->client_addr, sizeof(s->client_addr), "127.0.0.1");
	s->connected_at_ms = s->last_seen_at_ms = when;
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_session_insert(tx, s), want);
	if (want == 0)
		commit(tx);
	else
		qesd_tx_end(tx);
}

/* ---- ids, codes, keys ---- */

static void
test_credential_id(void **state)
{
	static const char h1[] =
	    "0000000000000000000000000000000000000000000000000000000000000001";
	char a[QESD_ID_SIZE], b[QESD_ID_SIZE];

	(void)state;
	assert_int_equal(qesd_credential_id("dev_x", "SER1", "01ab", h1, a), 0);
	assert_true(qesd_id_valid("crd", a));
	assert_int_equal(qesd_credential_id("dev_x", "SER1", "01ab", h1, b), 0);
	assert_string_equal(a, b);
	/* every input counts, and the length prefixes keep them apart */
	assert_int_equal(qesd_credential_id("dev_y", "SER1", "01ab", h1, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(qesd_credential_id("dev_x", "SER", "101ab", h1, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(qesd_credential_id("dev_x", "SER1", "", h1, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(qesd_credential_id("dev_x", "SER1", "01ab", "00", b),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qesd_credential_id("dev_x", "", "01ab", h1, b),
	    QES_ERR_INVALID_ARG);
}

static void
test_enroll_codes(void **state)
{
	qes_secret *p1 = qes_secret_new(32), *p2 = qes_secret_new(32);
	uint8_t h[QESD_HMAC_LEN], h2[QESD_HMAC_LEN];
	char code[QESD_ENROLL_CODE_SIZE], typed[64];
	size_t i, o = 0;

	(void)state;
	assert_int_equal(qes_secret_set(p1, "pepper-one-pepper-one-pepper-one", 32), 0);
	assert_int_equal(qes_secret_set(p2, "pepper-two-pepper-two-pepper-two", 32), 0);
	assert_int_equal(qesd_enroll_code_new(p1, code, h), 0);
	assert_int_equal(strlen(code), 23);
	for (i = 0; i < 23; i++)
		assert_true(i % 6 == 5 ? code[i] == '-' :
		    strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", code[i]) != NULL);
	assert_int_equal(qesd_enroll_code_hash(p1, code, h2), 0);
	assert_memory_equal(h, h2, sizeof(h));
	/* typed in lower case, blanks for dashes: the same code */
	for (i = 0; code[i] != '\0'; i++)
		typed[o++] = code[i] == '-' ? ' ' :
		    (code[i] >= 'A' && code[i] <= 'Z') ? (char)(code[i] + 32) : code[i];
	typed[o] = '\0';
	assert_int_equal(qesd_enroll_code_hash(p1, typed, h2), 0);
	assert_memory_equal(h, h2, sizeof(h));
	/* another pepper, another hash: the database alone enrolls nobody */
	assert_int_equal(qesd_enroll_code_hash(p2, code, h2), 0);
	assert_memory_not_equal(h, h2, sizeof(h));
	assert_int_equal(qesd_enroll_code_hash(p1, "AAAAA-AAAAA-AAAAA-AAAA1", h2),
	    QES_ERR_FORMAT);
	assert_int_equal(qesd_enroll_code_hash(p1, "AAAAA-AAAAA-AAAAA-AAAA", h2),
	    QES_ERR_FORMAT);
	assert_int_equal(qesd_enroll_code_hash(p1, "AAAAA-AAAAA-AAAAA-AAAAAA", h2),
	    QES_ERR_FORMAT);
	qes_secret_free(p1);
	qes_secret_free(p2);
}

static void
test_device_key_check(void **state)
{
	EVP_PKEY *p256 = testcert_key_ec("P-256"), *p384 = testcert_key_ec("P-384");
	EVP_PKEY *rsa = testcert_key_rsa(2048);
	uint8_t der[1024];
	size_t n;

	(void)state;
	n = spki(p256, der, sizeof(der));
	assert_int_equal(qesd_device_key_check(der, n), 0);
	assert_int_equal(qesd_device_key_check(der, n - 1), QES_ERR_FORMAT);
	der[n] = 0;
	assert_int_equal(qesd_device_key_check(der, n + 1), QES_ERR_FORMAT);
	n = spki(p384, der, sizeof(der));
	assert_int_equal(qesd_device_key_check(der, n), QES_ERR_KEY_UNSUITABLE);
	n = spki(rsa, der, sizeof(der));
	assert_int_equal(qesd_device_key_check(der, n), QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qesd_device_key_check((const uint8_t *)"junk", 4),
	    QES_ERR_FORMAT);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
}

/* ---- store ---- */

static void
test_enrollments(void **state)
{
	struct fixture *f = *state;
	qesd_enrollment e, got;
	qesd_device d;
	qesd_tx *tx;

	memset(&e, 0, sizeof(e));
	memcpy(e.tenant_id, f->a.id, sizeof(e.tenant_id));
	memset(e.code_hash, 7, sizeof(e.code_hash));
	snprintf(e.device_name, sizeof(e.device_name), "desk");
	e.created_at_ms = T0;
	e.expires_at_ms = T0 + 900000;
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_enrollment_insert(tx, &e), 0);
	commit(tx);
	assert_true(qesd_id_valid("enr", e.id));

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_enrollment_get_by_code(tx, e.code_hash, &got), 0);
	assert_string_equal(got.id, e.id);
	assert_string_equal(got.tenant_id, f->a.id);
	assert_int_equal(got.used_at_ms, 0);
	memset(got.code_hash, 8, sizeof(got.code_hash));
	assert_int_equal(qesd_enrollment_get_by_code(tx, got.code_hash, &got),
	    QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);

	make_device(f, &f->a, "desk", T0 + 1, &d);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_enrollment_use(tx, f->a.id, e.id, d.id, T0 + 2), 0);
	/* the second use loses, in the same or any later transaction */
	assert_int_equal(qesd_enrollment_use(tx, f->a.id, e.id, d.id, T0 + 3),
	    QES_ERR_CONFLICT);
	commit(tx);
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_enrollment_use(tx, f->b.id, e.id, d.id, T0 + 3),
	    QES_ERR_CONFLICT);
	qesd_tx_end(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_enrollment_get_by_code(tx, e.code_hash, &got), 0);
	assert_int_equal(got.used_at_ms, T0 + 2);
	assert_string_equal(got.device_id, d.id);
	qesd_tx_end(tx);
}

static void
test_devices_per_tenant(void **state)
{
	struct fixture *f = *state;
	char next[QESD_CURSOR_SIZE];
	qesd_device d1, d2, d3, got, *items = NULL;
	size_t n = 0;
	qesd_tx *tx;

	make_device(f, &f->a, "one", T0 + 1, &d1);
	make_device(f, &f->a, "two", T0 + 2, &d2);
	make_device(f, &f->b, "three", T0 + 3, &d3);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_device_get(tx, f->a.id, d1.id, &got), 0);
	assert_string_equal(got.name, "one");
	assert_int_equal(got.public_key_len, d1.public_key_len);
	assert_memory_equal(got.public_key, d1.public_key, d1.public_key_len);
	assert_int_equal(got.live, 0);
	/* a foreign id is missing */
	assert_int_equal(qesd_device_get(tx, f->b.id, d1.id, &got),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_device_get_for_auth(tx, d3.id, &got), 0);
	assert_string_equal(got.tenant_id, f->b.id);
	assert_int_equal(qesd_device_list(tx, f->a.id, NULL, 1, &items, &n,
	    next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, d1.id);
	assert_int_equal(items[0].public_key_len, 0);
	assert_true(next[0] != '\0');
	free(items);
	assert_int_equal(qesd_device_list(tx, f->a.id, next, 10, &items, &n,
	    next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, d2.id);
	assert_string_equal(next, "");
	free(items);
	assert_int_equal(qesd_device_list(tx, f->a.id, "1.dev_x", 10, &items, &n,
	    next), QES_ERR_INVALID_ARG);
	qesd_tx_end(tx);

	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_revoke(tx, f->b.id, d1.id, T0 + 9),
	    QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_device_revoke(tx, f->a.id, d1.id, T0 + 9), 0);
	assert_int_equal(qesd_device_revoke(tx, f->a.id, d1.id, T0 + 10),
	    QES_ERR_CONFLICT);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_device_get(tx, f->a.id, d1.id, &got), 0);
	assert_int_equal(got.revoked_at_ms, T0 + 9);
	qesd_tx_end(tx);
}

static void
test_sessions(void **state)
{
	struct fixture *f = *state;
	qesd_device_session s1, s2, got, *items = NULL;
	qesd_session_seen seen;
	char next[QESD_CURSOR_SIZE];
	qesd_device d, live;
	size_t n = 0;
	qesd_tx *tx;

	make_device(f, &f->a, "desk", T0, &d);
	make_session(f, &d, T0 + 10, &s1, 0);
	make_session(f, &d, T0 + 20, &s2, 0);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_device_get(tx, f->a.id, d.id, &live), 0);
	assert_int_equal(live.live, 1);
	qesd_tx_end(tx);

	/* last seen only moves forward, on open sessions */
	memset(&seen, 0, sizeof(seen));
	memcpy(seen.tenant_id, f->a.id, QESD_ID_SIZE);
	memcpy(seen.session_id, s1.id, QESD_ID_SIZE);
	seen.last_seen_at_ms = T0 + 30;
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_session_touch(tx, &seen, 1), 0);
	seen.last_seen_at_ms = T0 + 15;
	assert_int_equal(qesd_session_touch(tx, &seen, 1), 0);
	assert_int_equal(qesd_session_close(tx, f->a.id, s1.id, T0 + 25, T0 + 40,
	    "peer_closed"), 0);
	assert_int_equal(qesd_session_close(tx, f->a.id, s1.id, T0 + 25, T0 + 41,
	    "peer_closed"), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_session_close(tx, f->b.id, s2.id, T0 + 25, T0 + 41,
	    "peer_closed"), QES_ERR_NOT_FOUND);
	assert_int_equal(qesd_session_close(tx, f->a.id, s2.id, T0 + 25, T0 + 41,
	    "Not A Word"), QES_ERR_INVALID_ARG);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_session_get(tx, f->a.id, s1.id, &got), 0);
	assert_int_equal(got.last_seen_at_ms, T0 + 30);
	assert_int_equal(got.closed_at_ms, T0 + 40);
	assert_string_equal(got.close_reason, "peer_closed");
	assert_string_equal(got.replica, "replica-1");
	/* newest first, in pages */
	assert_int_equal(qesd_session_list(tx, f->a.id, d.id, NULL, 1, &items, &n,
	    next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, s2.id);
	free(items);
	assert_int_equal(qesd_session_list(tx, f->a.id, d.id, next, 5, &items, &n,
	    next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, s1.id);
	assert_string_equal(next, "");
	free(items);
	assert_int_equal(qesd_sessions_open_on_replica(tx, "replica-1", 10, &items,
	    &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, s2.id);
	free(items);
	assert_int_equal(qesd_sessions_open_on_replica(tx, "replica-2", 10, &items,
	    &n), 0);
	assert_int_equal(n, 0);
	qesd_tx_end(tx);

	/* a revoked device gets no new session */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_revoke(tx, f->a.id, d.id, T0 + 50), 0);
	commit(tx);
	make_session(f, &d, T0 + 60, &s1, QES_ERR_CONFLICT);
}

static void
fill_credential(qesd_credential *c, const char *device_id, const char *serial,
    int64_t not_after_s)
{
	EVP_PKEY *k = testcert_key_ec("P-256");
	testcert_spec spec;
	uint8_t *der;
	size_t len;

	memset(&spec, 0, sizeof(spec));
	spec.key = k;
	spec.not_before = 1600000000;
	spec.not_after = not_after_s;
	spec.key_usage = QES_KU_NON_REPUDIATION;
	der = testcert_der(&spec, &len);
	assert_non_null(der);
	memset(c, 0, sizeof(*c));
	snprintf(c->serial, sizeof(c->serial), "%s", serial);
	snprintf(c->key_id_hex, sizeof(c->key_id_hex), "01");
	snprintf(c->cert_serial_hex, sizeof(c->cert_serial_hex), "01a2b3c4d5");
	snprintf(c->classification, sizeof(c->classification), "advanced");
	snprintf(c->cert_sha256_hex, sizeof(c->cert_sha256_hex), "%064d", 0);
	c->cert_sha256_hex[63] = serial[0] == 'S' ? '1' : '2';
	snprintf(c->curve, sizeof(c->curve), "P-256");
	c->label = strdup("label");
	c->token_label = strdup("token");
	c->subject = strdup("CN=Test Signer");
	c->subject_cn = strdup("Test Signer");
	c->issuer = strdup("CN=qes Test CA");
	c->not_before_ms = spec.not_before * 1000;
	c->not_after_ms = not_after_s * 1000;
	c->key_type = QES_KEY_EC;
	c->key_bits = 256;
	c->has_private_key = 1;
	c->cert_der = malloc(len);
	memcpy(c->cert_der, der, len);
	c->cert_der_len = len;
	assert_int_equal(qesd_credential_id(device_id, c->serial, c->key_id_hex,
	    c->cert_sha256_hex, c->id), 0);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

static void
test_credentials(void **state)
{
	struct fixture *f = *state;
	char next[QESD_CURSOR_SIZE], *json = NULL;
	qesd_credential creds[2], *items = NULL, one;
	qesd_device_session s;
	int64_t at = 0;
	qesd_device d;
	size_t n = 0;
	qesd_tx *tx;

	make_device(f, &f->a, "desk", T0, &d);
	fill_credential(&creds[0], d.id, "SERIAL1", 4000000000LL);
	fill_credential(&creds[1], d.id, "OTHER2", 1650000000LL);	/* expired */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_set_inventory(tx, f->a.id, d.id,
	    "{\"tokens\":[]}", creds, 2, T0 + 5), 0);
	commit(tx);

	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_device_get_inventory(tx, f->a.id, d.id, &json, &at), 0);
	assert_string_equal(json, "{\"tokens\":[]}");
	assert_int_equal(at, T0 + 5);
	free(json);
	/* not live: nothing for GET /v1/credentials, everything for the device */
	assert_int_equal(qesd_devices_credentials(tx, f->a.id, T0, NULL, 0, &items,
	    &n, next), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_credential_list(tx, f->a.id, d.id, 0, T0, NULL, 0,
	    &items, &n, next), 0);
	assert_int_equal(n, 2);
	qesd_credentials_free(items, n);
	/* another tenant sees nothing and finds nothing */
	assert_int_equal(qesd_credential_list(tx, f->b.id, NULL, 0, T0, NULL, 0,
	    &items, &n, next), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_devices_credential_lookup(tx, f->b.id, creds[0].id,
	    T0, &one), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);

	make_session(f, &d, T0 + 6, &s, 0);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_devices_credentials(tx, f->a.id, T0, NULL, 1, &items,
	    &n, next), 0);
	assert_int_equal(n, 1);
	assert_true(next[0] != '\0');
	assert_int_equal(items[0].device_live, 1);
	qesd_credentials_free(items, n);
	assert_int_equal(qesd_devices_credential_lookup(tx, f->a.id, creds[1].id,
	    T0, &one), 0);
	assert_string_equal(one.classification, "expired");	/* judged at read */
	assert_string_equal(one.serial, "OTHER2");
	assert_int_equal(one.cert_der_len, creds[1].cert_der_len);
	assert_memory_equal(one.cert_der, creds[1].cert_der, one.cert_der_len);
	qesd_credential_clear(&one);
	assert_int_equal(qesd_devices_credential_lookup(tx, f->a.id, creds[0].id,
	    T0, &one), 0);
	assert_string_equal(one.classification, "advanced");
	assert_int_equal(one.device_revoked_at_ms, 0);
	qesd_credential_clear(&one);
	qesd_tx_end(tx);

	/* revoked: out of the live list, still found (and said to be revoked) */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_revoke(tx, f->a.id, d.id, T0 + 7), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_devices_credentials(tx, f->a.id, T0, NULL, 0, &items,
	    &n, next), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qesd_devices_credential_lookup(tx, f->a.id, creds[0].id,
	    T0, &one), 0);
	assert_int_equal(one.device_revoked_at_ms, T0 + 7);
	qesd_credential_clear(&one);
	qesd_tx_end(tx);

	/* the next inventory replaces the credentials as a whole */
	tx = begin(f->s, QESD_TX_WRITE);
	assert_int_equal(qesd_device_set_inventory(tx, f->a.id, d.id,
	    "{\"tokens\":[1]}", NULL, 0, T0 + 8), 0);
	commit(tx);
	tx = begin(f->s, QESD_TX_READ);
	assert_int_equal(qesd_devices_credential_lookup(tx, f->a.id, creds[0].id,
	    T0, &one), QES_ERR_NOT_FOUND);
	qesd_tx_end(tx);
	qesd_credential_clear(&creds[0]);
	qesd_credential_clear(&creds[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_credential_id),
		cmocka_unit_test(test_enroll_codes),
		cmocka_unit_test(test_device_key_check),
		cmocka_unit_test_setup_teardown(test_enrollments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devices_per_tenant, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
