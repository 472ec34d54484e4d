/*
 * store_devices.c - the backend-independent half of the device store
 * (store_devices.h): argument checks, ids, cursors and paging, and the one
 * judgement made at read time (a credential's validity against now).
 *
 * It follows store.c's rules through qesd_tx_check / qesd_tx_result (what
 * may run, what poisons a transaction), so a device operation behaves like
 * every other store operation on both backends.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "store.h"
#include "store_devices.h"

#define DOPS(tx) (qesd_tx_ops(tx)->devices)

/* ---- small checks ---- */

/* 1..max bytes of printable ASCII (or 0 bytes when allow_empty). */
static int
ascii_ok(const char *s, size_t max, int allow_empty)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if ((n == 0 && !allow_empty) || n > max)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* A display name: 1..QESD_NAME_MAX bytes of UTF-8 without control
 * characters (the JSON layer has checked UTF-8 already; this keeps the
 * store's own guarantee for any caller). */
static int
name_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > QESD_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return 0;
	return 1;
}

static int
dev_ok(const char *id)
{
	return qesd_id_valid("dev", id);
}

static int
ten_ok(const char *id)
{
	return qesd_id_valid("ten", id);
}

static size_t
clamp_limit(size_t limit)
{
	if (limit == 0)
		return QESD_LIST_DEFAULT;
	return limit > QESD_LIST_MAX ? QESD_LIST_MAX : limit;
}

static int
list_args(qesd_tx *tx, const char *cursor, char cur[QESD_CURSOR_SIZE],
    void *items, size_t *n, char *next_cursor)
{
	if (items == NULL || n == NULL || next_cursor == NULL)
		return QES_ERR_INVALID_ARG;
	if (cursor == NULL)
		cursor = "";
	if (strlen(cursor) >= QESD_CURSOR_SIZE)
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG, "malformed cursor");
	memcpy(cur, cursor, strlen(cursor) + 1);
	*n = 0;
	next_cursor[0] = '\0';
	return 0;
}

/* "<ms>.<id>" with the id of the given prefix. */
static int
parse_time_cursor(const char *cur, const char *prefix, int64_t *ms,
    const char **id)
{
	const char *p = cur;
	int64_t v = 0;

	if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
		return QES_ERR_INVALID_ARG;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > INT64_MAX / 10 - 10)
			return QES_ERR_INVALID_ARG;
		v = v * 10 + (*p - '0');
	}
	if (*p != '.' || !qesd_id_valid(prefix, p + 1))
		return QES_ERR_INVALID_ARG;
	*ms = v;
	*id = p + 1;
	return 0;
}

/* ---- enrollments ---- */

int
qesd_enrollment_insert(qesd_tx *tx, qesd_enrollment *e)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (e == NULL)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(e->tenant_id))
		return QES_ERR_NOT_FOUND;
	if ((e->device_name[0] != '\0' && !name_ok(e->device_name)) ||
	    e->created_at_ms <= 0 ||
	    e->expires_at_ms <= e->created_at_ms || e->used_at_ms != 0 ||
	    e->device_id[0] != '\0' ||
	    (e->created_by[0] != '\0' && !qesd_id_valid("key", e->created_by)) ||
	    (e->id[0] != '\0' && !qesd_id_valid("enr", e->id)))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "invalid enrollment");
	if (e->id[0] == '\0' && (r = qesd_id_new("enr", e->id)) != 0)
		return r;
	return qesd_tx_result(tx, DOPS(tx)->enrollment_insert(tx, e));
}

int
qesd_enrollment_get_by_code(qesd_tx *tx, const uint8_t code_hash[QESD_HMAC_LEN],
    qesd_enrollment *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (code_hash == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	return qesd_tx_result(tx, DOPS(tx)->enrollment_get_by_code(tx,
	    code_hash, out));
}

int
qesd_enrollment_use(qesd_tx *tx, const char *tenant_id,
    const char *enrollment_id, const char *device_id, int64_t now_ms)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (now_ms <= 0 || !dev_ok(device_id))
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !qesd_id_valid("enr", enrollment_id))
		return QES_ERR_NOT_FOUND;
	r = DOPS(tx)->enrollment_use(tx, tenant_id, enrollment_id, device_id,
	    now_ms);
	if (r == QES_ERR_NOT_FOUND)
		/* it existed when read in this transaction: someone used it */
		return qesd_tx_refuse(tx, QES_ERR_CONFLICT,
		    "enrollment code already used");
	return qesd_tx_result(tx, r);
}

/* ---- devices ---- */

int
qesd_device_insert(qesd_tx *tx, qesd_device *d)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (d == NULL)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(d->tenant_id))
		return QES_ERR_NOT_FOUND;
	if (!name_ok(d->name) || d->enrolled_at_ms <= 0 ||
	    d->public_key_len == 0 || d->public_key_len > QESD_DEVICE_KEY_MAX ||
	    d->revoked_at_ms != 0 || d->inventory_at_ms != 0 ||
	    !ascii_ok(d->agent_version, QESD_AGENT_VERSION_MAX, 1) ||
	    !ascii_ok(d->os, QESD_OS_MAX, 1) ||
	    (d->enrollment_id[0] != '\0' &&
	    !qesd_id_valid("enr", d->enrollment_id)) ||
	    (d->id[0] != '\0' && !dev_ok(d->id)))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG, "invalid device");
	if (d->id[0] == '\0' && (r = qesd_id_new("dev", d->id)) != 0)
		return r;
	return qesd_tx_result(tx, DOPS(tx)->device_insert(tx, d));
}

int
qesd_device_get(qesd_tx *tx, const char *tenant_id, const char *device_id,
    qesd_device *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!ten_ok(tenant_id) || !dev_ok(device_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->device_get(tx, tenant_id,
	    device_id, out));
}

int
qesd_device_get_for_auth(qesd_tx *tx, const char *device_id, qesd_device *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!dev_ok(device_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->device_get(tx, NULL, device_id,
	    out));
}

int
qesd_device_list(qesd_tx *tx, const char *tenant_id, const char *cursor,
    size_t limit, qesd_device **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE])
{
	qesd_device *v = NULL;
	const char *after_id = "";
	char cur[QESD_CURSOR_SIZE];
	int64_t after_ms = 0;
	size_t got = 0, i;
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (!ten_ok(tenant_id))
		return 0;
	if (cur[0] != '\0' && parse_time_cursor(cur, "dev", &after_ms,
	    &after_id) != 0)
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "malformed cursor");
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qesd_tx_result(tx, DOPS(tx)->device_list(tx, tenant_id,
	    after_ms, after_id, limit + 1, v, &got))) != 0)
		goto out;
	if (got > limit) {
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%" PRId64 ".%s",
		    v[got - 1].enrolled_at_ms, v[got - 1].id);
	}
	for (i = 0; i < got; i++) {
		memset(v[i].public_key, 0, sizeof(v[i].public_key));
		v[i].public_key_len = 0;
	}
	if (got == 0) {
		free(v);
		v = NULL;
	}
	*items = v;
	*n = got;
	v = NULL;
 out:
	free(v);
	return r;
}

int
qesd_device_revoke(qesd_tx *tx, const char *tenant_id, const char *device_id,
    int64_t now_ms)
{
	qesd_device d;
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !dev_ok(device_id))
		return QES_ERR_NOT_FOUND;
	r = DOPS(tx)->device_revoke(tx, tenant_id, device_id, now_ms);
	if (r != QES_ERR_NOT_FOUND)
		return qesd_tx_result(tx, r);
	/* missing or foreign (NOT_FOUND), or revoked already (CONFLICT) */
	if ((r = qesd_tx_result(tx, DOPS(tx)->device_get(tx, tenant_id,
	    device_id, &d))) != 0)
		return r;
	return qesd_tx_refuse(tx, QES_ERR_CONFLICT, "device already revoked");
}

/* ---- inventories and credentials ---- */

void
qesd_credential_clear(qesd_credential *c)
{
	if (c == NULL)
		return;
	free(c->label);
	free(c->token_label);
	free(c->subject);
	free(c->subject_cn);
	free(c->issuer);
	free(c->cert_der);
	memset(c, 0, sizeof(*c));
}

void
qesd_credentials_free(qesd_credential *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		qesd_credential_clear(&v[i]);
	free(v);
}

static int
hex_ok(const char *s, size_t max, int even)
{
	size_t n = strlen(s);

	if (n > max || (even && n % 2 != 0))
		return 0;
	return strspn(s, "0123456789abcdef") == n;
}

static int
credential_ok(const qesd_credential *c)
{
	return qesd_id_valid("crd", c->id) &&
	    ascii_ok(c->serial, QES_PROTO_SERIAL_MAX, 0) &&
	    hex_ok(c->key_id_hex, QESD_KEY_ID_HEX_MAX, 1) &&
	    c->label != NULL && c->token_label != NULL && c->subject != NULL &&
	    c->subject_cn != NULL && c->issuer != NULL &&
	    hex_ok(c->cert_serial_hex, sizeof(c->cert_serial_hex) - 1, 0) &&
	    strlen(c->classification) > 0 &&
	    strlen(c->cert_sha256_hex) == 64 &&
	    hex_ok(c->cert_sha256_hex, 64, 1) &&
	    c->cert_der != NULL && c->cert_der_len > 0 &&
	    c->cert_der_len <= QES_PROTO_CERT_DER_MAX;
}

int
qesd_device_set_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, const char *inventory_json,
    const qesd_credential *creds, size_t n, int64_t now_ms)
{
	size_t i;
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (inventory_json == NULL || strlen(inventory_json) > QESD_INVENTORY_MAX ||
	    (creds == NULL && n > 0) || n > QESD_CREDENTIALS_MAX || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !dev_ok(device_id))
		return QES_ERR_NOT_FOUND;
	for (i = 0; i < n; i++)
		if (!credential_ok(&creds[i]))
			return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
			    "invalid credential");
	return qesd_tx_result(tx, DOPS(tx)->device_set_inventory(tx, tenant_id,
	    device_id, inventory_json, creds, n, now_ms));
}

int
qesd_device_get_inventory(qesd_tx *tx, const char *tenant_id,
    const char *device_id, char **json, int64_t *at_ms)
{
	int r;

	if (json != NULL)
		*json = NULL;
	if (at_ms != NULL)
		*at_ms = 0;
	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (json == NULL || at_ms == NULL)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !dev_ok(device_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->device_get_inventory(tx, tenant_id,
	    device_id, json, at_ms));
}

/* The stored classification (made while the certificate was valid), or
 * the validity verdict at now_ms. */
static void
judge_validity(qesd_credential *c, int64_t now_ms)
{
	if (now_ms < c->not_before_ms)
		snprintf(c->classification, sizeof(c->classification),
		    "not_yet_valid");
	else if (now_ms > c->not_after_ms)
		snprintf(c->classification, sizeof(c->classification),
		    "expired");
}

int
qesd_credential_list(qesd_tx *tx, const char *tenant_id,
    const char *device_id, int live_only, int64_t now_ms, const char *cursor,
    size_t limit, qesd_credential **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE])
{
	qesd_credential *v = NULL;
	char cur[QESD_CURSOR_SIZE];
	size_t got = 0, i;
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (!ten_ok(tenant_id) || (device_id != NULL && !dev_ok(device_id)))
		return 0;
	if (cur[0] != '\0' && !qesd_id_valid("crd", cur))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "malformed cursor");
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qesd_tx_result(tx, DOPS(tx)->credential_list(tx, tenant_id,
	    device_id, live_only, cur, limit + 1, v, &got))) != 0)
		goto out;
	if (got > limit) {
		qesd_credential_clear(&v[limit]);
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%s", v[got - 1].id);
	}
	for (i = 0; i < got; i++)
		judge_validity(&v[i], now_ms);
	if (got == 0) {
		free(v);
		v = NULL;
	}
	*items = v;
	*n = got;
	v = NULL;
 out:
	qesd_credentials_free(v, got);
	return r;
}

int
qesd_credential_get(qesd_tx *tx, const char *tenant_id,
    const char *credential_id, int64_t now_ms, qesd_credential *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!ten_ok(tenant_id) || !qesd_id_valid("crd", credential_id))
		return QES_ERR_NOT_FOUND;
	if ((r = qesd_tx_result(tx, DOPS(tx)->credential_get(tx, tenant_id,
	    credential_id, out))) != 0) {
		qesd_credential_clear(out);
		return r;
	}
	judge_validity(out, now_ms);
	return 0;
}

/* ---- sessions ---- */

static int
reason_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n >= QESD_REASON_MAX)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int
qesd_session_insert(qesd_tx *tx, const qesd_device_session *s)
{
	qesd_device d;
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (s == NULL)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(s->tenant_id) || !dev_ok(s->device_id))
		return QES_ERR_NOT_FOUND;
	if (!qesd_id_valid("ses", s->id) || s->connected_at_ms <= 0 ||
	    s->last_seen_at_ms < s->connected_at_ms || s->closed_at_ms != 0 ||
	    s->close_reason[0] != '\0' ||
	    !ascii_ok(s->replica, QESD_REPLICA_MAX, 0) ||
	    !ascii_ok(s->agent_version, QESD_AGENT_VERSION_MAX, 1) ||
	    !ascii_ok(s->os, QESD_OS_MAX, 1) ||
	    !ascii_ok(s->client_addr, QESD_ADDR_TEXT_MAX - 1, 1))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "invalid device session");
	r = DOPS(tx)->session_insert(tx, s);
	if (r != QES_ERR_NOT_FOUND)
		return qesd_tx_result(tx, r);
	/* no row inserted: missing device, or revoked meanwhile */
	if ((r = qesd_tx_result(tx, DOPS(tx)->device_get(tx, s->tenant_id,
	    s->device_id, &d))) != 0)
		return r;
	return qesd_tx_refuse(tx, QES_ERR_CONFLICT, "device is revoked");
}

int
qesd_session_touch(qesd_tx *tx, const qesd_session_seen *seen, size_t n)
{
	size_t i;
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (seen == NULL && n > 0)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < n; i++) {
		if (!ten_ok(seen[i].tenant_id) ||
		    !qesd_id_valid("ses", seen[i].session_id) ||
		    seen[i].last_seen_at_ms <= 0)
			continue;
		if ((r = qesd_tx_result(tx, DOPS(tx)->session_touch(tx,
		    &seen[i]))) != 0)
			return r;
	}
	return 0;
}

int
qesd_session_close(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t last_seen_at_ms, int64_t now_ms, const char *reason)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (now_ms <= 0 || last_seen_at_ms < 0 || !reason_ok(reason))
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !qesd_id_valid("ses", session_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->session_close(tx, tenant_id,
	    session_id, last_seen_at_ms, now_ms, reason));
}

int
qesd_session_get(qesd_tx *tx, const char *tenant_id, const char *session_id,
    qesd_device_session *out)
{
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!ten_ok(tenant_id) || !qesd_id_valid("ses", session_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->session_get(tx, tenant_id,
	    session_id, out));
}

int
qesd_session_list(qesd_tx *tx, const char *tenant_id, const char *device_id,
    const char *cursor, size_t limit, qesd_device_session **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE])
{
	qesd_device_session *v = NULL;
	const char *before_id = "";
	char cur[QESD_CURSOR_SIZE];
	int64_t before_ms = 0;
	size_t got = 0;
	int r;

	if ((r = qesd_tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (!ten_ok(tenant_id) || !dev_ok(device_id))
		return 0;
	if (cur[0] != '\0' && (parse_time_cursor(cur, "ses", &before_ms,
	    &before_id) != 0 || before_ms == 0))
		return qesd_tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "malformed cursor");
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qesd_tx_result(tx, DOPS(tx)->session_list(tx, tenant_id,
	    device_id, before_ms, before_id, limit + 1, v, &got))) != 0)
		goto out;
	if (got > limit) {
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%" PRId64 ".%s",
		    v[got - 1].connected_at_ms, v[got - 1].id);
	}
	if (got == 0) {
		free(v);
		v = NULL;
	}
	*items = v;
	*n = got;
	v = NULL;
 out:
	free(v);
	return r;
}

/*
 * The sessions a replica's upkeep works through in batches (held by one
 * replica, left by lost replicas, closed with jobs still waiting): the
 * three share their checks, the clamped limit and the array handed to the
 * caller (NULL and 0 when none), and differ only in the backend query.
 */
enum batch_kind {
	BATCH_OPEN_ON_REPLICA,
	BATCH_OF_LOST_REPLICAS,
	BATCH_CLOSED_WITH_JOBS,
};

struct batch_q {
	enum batch_kind kind;
	const char *replica;
	int64_t a_ms, b_ms;
};

static int
session_batch(qesd_tx *tx, const struct batch_q *q, int args_ok,
    size_t limit, qesd_device_session **items, size_t *n)
{
	qesd_device_session *v = NULL;
	size_t got = 0;
	int r;

	if (items != NULL)
		*items = NULL;
	if (n != NULL)
		*n = 0;
	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (items == NULL || n == NULL || !args_ok)
		return QES_ERR_INVALID_ARG;
	limit = clamp_limit(limit);
	if ((v = calloc(limit, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	switch (q->kind) {
	case BATCH_OPEN_ON_REPLICA:
		r = DOPS(tx)->sessions_open_on_replica(tx, q->replica, limit, v,
		    &got);
		break;
	case BATCH_OF_LOST_REPLICAS:
		r = DOPS(tx)->sessions_of_lost_replicas(tx, q->a_ms, q->b_ms,
		    limit, v, &got);
		break;
	case BATCH_CLOSED_WITH_JOBS:
		r = DOPS(tx)->sessions_closed_with_jobs(tx, q->a_ms, limit, v,
		    &got);
		break;
	default:
		r = QES_ERR_INVALID_ARG;
		break;
	}
	if ((r = qesd_tx_result(tx, r)) != 0 || got == 0) {
		free(v);
		return r;
	}
	*items = v;
	*n = got;
	return 0;
}

int
qesd_sessions_open_on_replica(qesd_tx *tx, const char *replica, size_t limit,
    qesd_device_session **items, size_t *n)
{
	struct batch_q q = { .kind = BATCH_OPEN_ON_REPLICA, .replica = replica };

	return session_batch(tx, &q, ascii_ok(replica, QESD_REPLICA_MAX, 0),
	    limit, items, n);
}

/* ---- replicas ---- */

int
qesd_replica_beat(qesd_tx *tx, const char *replica, int64_t started_at_ms,
    int64_t now_ms, int *reaped)
{
	int r, mark = 0;

	if (reaped != NULL)
		*reaped = 0;
	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (!ascii_ok(replica, QESD_REPLICA_MAX, 0) || started_at_ms <= 0 ||
	    now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if ((r = qesd_tx_result(tx, DOPS(tx)->replica_beat(tx, replica,
	    started_at_ms, now_ms, &mark))) != 0)
		return r;
	if (reaped != NULL)
		*reaped = mark;
	return 0;
}

int
qesd_sessions_of_lost_replicas(qesd_tx *tx, int64_t dead_before_ms,
    int64_t orphan_before_ms, size_t limit, qesd_device_session **items,
    size_t *n)
{
	struct batch_q q = { .kind = BATCH_OF_LOST_REPLICAS,
	    .a_ms = dead_before_ms, .b_ms = orphan_before_ms };

	return session_batch(tx, &q, dead_before_ms > 0 && orphan_before_ms > 0,
	    limit, items, n);
}

int
qesd_session_reap(qesd_tx *tx, const char *tenant_id, const char *session_id,
    int64_t dead_before_ms, int64_t orphan_before_ms, int64_t now_ms)
{
	int r;

	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (dead_before_ms <= 0 || orphan_before_ms <= 0 || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !qesd_id_valid("ses", session_id))
		return QES_ERR_NOT_FOUND;
	return qesd_tx_result(tx, DOPS(tx)->session_reap(tx, tenant_id,
	    session_id, dead_before_ms, orphan_before_ms, now_ms));
}

int
qesd_session_held_elsewhere(qesd_tx *tx, const char *tenant_id,
    const char *session_id, const char *replica, int64_t alive_after_ms,
    int *held)
{
	int r;

	if (held != NULL)
		*held = 0;
	if ((r = qesd_tx_check(tx, 0)) != 0)
		return r;
	if (held == NULL || !ascii_ok(replica, QESD_REPLICA_MAX, 0))
		return QES_ERR_INVALID_ARG;
	if (!ten_ok(tenant_id) || !qesd_id_valid("ses", session_id))
		return 0;
	return qesd_tx_result(tx, DOPS(tx)->session_held_elsewhere(tx, tenant_id,
	    session_id, replica, alive_after_ms, held));
}

int
qesd_sessions_closed_with_jobs(qesd_tx *tx, int64_t closed_before_ms,
    size_t limit, qesd_device_session **items, size_t *n)
{
	struct batch_q q = { .kind = BATCH_CLOSED_WITH_JOBS,
	    .a_ms = closed_before_ms };

	return session_batch(tx, &q, closed_before_ms > 0, limit, items, n);
}

int
qesd_replicas_forget(qesd_tx *tx, int64_t before_ms, uint64_t *n)
{
	uint64_t got = 0;
	int r;

	if (n != NULL)
		*n = 0;
	if ((r = qesd_tx_check(tx, 1)) != 0)
		return r;
	if (before_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if ((r = qesd_tx_result(tx, DOPS(tx)->replicas_forget(tx, before_ms,
	    &got))) != 0)
		return r;
	if (n != NULL)
		*n = got;
	return 0;
}
