/*
 * store.c - the backend-independent half of the store: URL dispatch,
 * argument checks, transaction bookkeeping, cursors, building and sealing
 * audit records, chain verification, retention loops and the group-commit
 * queue for audit records.
 *
 * Everything that must behave the same on SQLite and PostgreSQL lives here,
 * so the two backends (store_sqlite*.c and store_pg*.c) only move
 * rows and cannot drift apart on semantics: which transaction a write
 * needs, what poisons a transaction, how a record is chained, what a
 * cursor means.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/audit.h"
#include "qes/err.h"
#include "store.h"

struct qesd_store {
	const struct qesd_store_ops *ops;
	void *backend;
};

/* store_pg.c (declared here: only store_pg*.c include libpq's header) */
extern const struct qesd_store_ops qesd_store_pg_ops;

/* postgresql: is kept whole for libpq ("postgresql://host/db") */
static const struct {
	const char *prefix;
	const struct qesd_store_ops *ops;
} schemes[] = {
	{ "sqlite:", &qesd_store_sqlite_ops },
	{ "postgres:", &qesd_store_pg_ops },
	{ "postgresql:", &qesd_store_pg_ops },
};

static void
set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

int
qesd_store_open(const char *url, const qesd_store_config *cfg,
    qesd_store **out, char *err, size_t err_len)
{
	static const qesd_store_config defaults = { 0, 0, 0 };
	qesd_store *s = NULL;
	size_t i, plen;
	int r;

	set_err(err, err_len, "%s", "");
	if (out == NULL || url == NULL) {
		set_err(err, err_len, "no store URL given");
		return QES_ERR_INVALID_ARG;
	}
	*out = NULL;
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		plen = strlen(schemes[i].prefix);
		if (strncmp(url, schemes[i].prefix, plen) == 0)
			break;
	}
	if (i == sizeof(schemes) / sizeof(schemes[0])) {
		set_err(err, err_len, "store URL must start with sqlite: or "
		    "postgres: (as in sqlite:/var/lib/qesd/qesd.db)");
		return QES_ERR_INVALID_ARG;
	}
	if (url[plen] == '\0') {
		set_err(err, err_len, "store URL %s names no database",
		    schemes[i].prefix);
		return QES_ERR_INVALID_ARG;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		set_err(err, err_len, "out of memory");
		return QES_ERR_ALLOC;
	}
	s->ops = schemes[i].ops;
	if ((r = s->ops->open(url + plen, cfg != NULL ? cfg : &defaults,
	    &s->backend, err, err_len)) != 0) {
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void
qesd_store_free(qesd_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->backend);
	free(s);
}

const char *
qesd_store_backend(const qesd_store *s)
{
	return s != NULL ? s->ops->name : "none";
}

int
qesd_store_ping(qesd_store *s)
{
	if (s == NULL)
		return QES_ERR_INVALID_ARG;
	return s->ops->ping(s->backend);
}

/* ---- transactions ---- */

int
qesd_store_begin(qesd_store *s, qesd_tx_mode mode, qesd_tx **out)
{
	qesd_tx *tx = NULL;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (s == NULL || (mode != QESD_TX_READ && mode != QESD_TX_WRITE))
		return QES_ERR_INVALID_ARG;
	if ((r = s->ops->begin(s->backend, mode, &tx)) != 0)
		return r;
	tx->store = s;
	tx->mode = mode;
	tx->failed = 0;
	tx->committed = 0;
	tx->errmsg[0] = '\0';
	*out = tx;
	return 0;
}

int
qesd_tx_commit(qesd_tx *tx)
{
	int r;

	if (tx == NULL || tx->committed)
		return QES_ERR_INVALID_ARG;
	if (tx->failed)
		return tx->failed;	/* _end rolls back */
	if ((r = tx->store->ops->commit(tx)) != 0) {
		tx->failed = r;
		return r;
	}
	tx->committed = 1;
	return 0;
}

void
qesd_tx_end(qesd_tx *tx)
{
	if (tx == NULL)
		return;
	tx->store->ops->end(tx);
}

const char *
qesd_tx_errmsg(const qesd_tx *tx)
{
	return tx != NULL ? tx->errmsg : "";
}

static int
tx_refuse(qesd_tx *tx, int r, const char *why)
{
	snprintf(tx->errmsg, sizeof(tx->errmsg), "%s", why);
	return r;
}

/* May this operation run? write: it changes data. */
static int
tx_check(qesd_tx *tx, int write)
{
	if (tx == NULL)
		return QES_ERR_INVALID_ARG;
	if (tx->committed)
		return tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "transaction already committed");
	if (tx->failed)
		return tx->failed;
	if (write && tx->mode != QESD_TX_WRITE)
		return tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "write in a read transaction");
	return 0;
}

/* Record a backend result: anything but success and "not found" poisons. */
static int
tx_result(qesd_tx *tx, int r)
{
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		tx->failed = r;
	return r;
}

#define OPS(tx) ((tx)->store->ops)

/* The same rules for the per-concern files (store.h, store_jobs.c). */
const struct qesd_store_ops *
qesd_tx_ops(const qesd_tx *tx)
{
	return tx != NULL && tx->store != NULL ? tx->store->ops : NULL;
}

int
qesd_tx_check(qesd_tx *tx, int write)
{
	return tx_check(tx, write);
}

int
qesd_tx_result(qesd_tx *tx, int r)
{
	return tx == NULL ? QES_ERR_INVALID_ARG : tx_result(tx, r);
}

int
qesd_tx_refuse(qesd_tx *tx, int r, const char *why)
{
	return tx == NULL ? r : tx_refuse(tx, r, why);
}

/* ---- argument checks ---- */

/* A name: 1..QESD_NAME_MAX bytes of UTF-8 without control characters. */
static int
name_ok(const char *s, int allow_empty)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, i, n, k;

	if (s == NULL)
		return 0;
	len = strlen(s);
	if ((len == 0 && !allow_empty) || len > QESD_NAME_MAX)
		return 0;
	for (i = 0; i < len; i += n + 1) {
		if (p[i] < 0x80) {
			n = 0;
			if (p[i] < 0x20 || p[i] == 0x7f)
				return 0;
			continue;
		}
		n = (p[i] & 0xe0) == 0xc0 ? 1 : (p[i] & 0xf0) == 0xe0 ? 2 :
		    (p[i] & 0xf8) == 0xf0 ? 3 : 4;
		if (n == 4 || p[i] == 0xc0 || p[i] == 0xc1 || p[i] > 0xf4 ||
		    len - i <= n)
			return 0;
		for (k = 1; k <= n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
		/* overlong 3/4-byte forms and surrogates */
		if ((p[i] == 0xe0 && p[i + 1] < 0xa0) ||
		    (p[i] == 0xed && p[i + 1] >= 0xa0) ||
		    (p[i] == 0xf0 && p[i + 1] < 0x90) ||
		    (p[i] == 0xf4 && p[i + 1] >= 0x90))
			return 0;
	}
	return 1;
}

static size_t
clamp_limit(size_t limit)
{
	if (limit == 0)
		return QESD_LIST_DEFAULT;
	return limit > QESD_LIST_MAX ? QESD_LIST_MAX : limit;
}

/*
 * Common list arguments. The cursor is copied into cur first, so a caller
 * may pass the same buffer as cursor and next_cursor to walk all pages.
 */
static int
list_args(qesd_tx *tx, const char *cursor, char cur[QESD_CURSOR_SIZE],
    void *items, size_t *n, char *next_cursor)
{
	if (items == NULL || n == NULL || next_cursor == NULL)
		return QES_ERR_INVALID_ARG;
	if (cursor == NULL)
		cursor = "";
	if (strlen(cursor) >= QESD_CURSOR_SIZE)
		return tx_refuse(tx, QES_ERR_INVALID_ARG, "malformed cursor");
	memcpy(cur, cursor, strlen(cursor) + 1);
	*n = 0;
	next_cursor[0] = '\0';
	return 0;
}

/* ---- cursors ----
 * tenants: "<id>"; keys: "<created_ms>.<id>"; audit: "<seq>". Each is
 * parsed strictly; they carry no secret and every list filters by tenant
 * anyway, so a forged cursor only moves a caller within its own data. */

static int
parse_u64(const char *s, char end, uint64_t *out, const char **rest)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
		return QES_ERR_INVALID_ARG;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_C(1) << 62))
			return QES_ERR_INVALID_ARG;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p != end || v > INT64_MAX)
		return QES_ERR_INVALID_ARG;
	*out = v;
	if (rest != NULL)
		*rest = end != '\0' ? p + 1 : p;
	return 0;
}

/* ---- tenants ---- */

int
qesd_tenant_create(qesd_tx *tx, const char *name, int64_t now_ms,
    qesd_tenant *out)
{
	qesd_tenant t;
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if (!name_ok(name, 0) || now_ms <= 0)
		return tx_refuse(tx, QES_ERR_INVALID_ARG,
		    "tenant name must be 1-128 bytes of printable UTF-8");
	memset(&t, 0, sizeof(t));
	if ((r = qesd_id_new("ten", t.id)) != 0)
		return r;
	memcpy(t.name, name, strlen(name) + 1);
	t.created_at_ms = now_ms;
	if ((r = tx_result(tx, OPS(tx)->tenant_insert(tx, &t))) != 0)
		return r;
	if (out != NULL)
		*out = t;
	return 0;
}

int
qesd_tenant_get(qesd_tx *tx, const char *tenant_id, qesd_tenant *out)
{
	int r;

	if ((r = tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id))
		return QES_ERR_NOT_FOUND;
	return tx_result(tx, OPS(tx)->tenant_get(tx, tenant_id, out));
}

int
qesd_tenant_list(qesd_tx *tx, const char *cursor, size_t limit,
    qesd_tenant **items, size_t *n, char next_cursor[QESD_CURSOR_SIZE])
{
	qesd_tenant *v = NULL;
	char cur[QESD_CURSOR_SIZE];
	size_t got = 0;
	int r;

	if ((r = tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (cur[0] != '\0' && !qesd_id_valid("ten", cur))
		return tx_refuse(tx, QES_ERR_INVALID_ARG, "malformed cursor");
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = tx_result(tx, OPS(tx)->tenant_list(tx, cur, limit + 1, v,
	    &got))) != 0)
		goto out;
	if (got > limit) {
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%s", v[got - 1].id);
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

/* ---- API keys ---- */

static int
key_id_ok(const char *key_id)
{
	return qesd_id_valid("key", key_id);
}

int
qesd_key_insert(qesd_tx *tx, qesd_api_key *key)
{
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if (key == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", key->tenant_id))
		return QES_ERR_NOT_FOUND;
	if (!name_ok(key->name, 1) || key->created_at_ms <= 0 ||
	    key->expires_at_ms < 0 || key->has_prev || key->rotated_at_ms ||
	    key->revoked_at_ms || key->last_used_at_ms ||
	    (key->created_by[0] != '\0' && !key_id_ok(key->created_by)) ||
	    (key->id[0] != '\0' && !key_id_ok(key->id)))
		return tx_refuse(tx, QES_ERR_INVALID_ARG, "invalid API key");
	if (key->id[0] == '\0' && (r = qesd_id_new("key", key->id)) != 0)
		return r;
	return tx_result(tx, OPS(tx)->key_insert(tx, key));
}

int
qesd_key_get_for_auth(qesd_tx *tx, const char *key_id, qesd_api_key *out)
{
	int r;

	if ((r = tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	if (!key_id_ok(key_id))
		return QES_ERR_NOT_FOUND;
	return tx_result(tx, OPS(tx)->key_get(tx, NULL, key_id, out));
}

int
qesd_key_get(qesd_tx *tx, const char *tenant_id, const char *key_id,
    qesd_api_key *out)
{
	int r;

	if ((r = tx_check(tx, 0)) != 0)
		return r;
	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id) || !key_id_ok(key_id))
		return QES_ERR_NOT_FOUND;
	return tx_result(tx, OPS(tx)->key_get(tx, tenant_id, key_id, out));
}

int
qesd_key_list(qesd_tx *tx, const char *tenant_id, const char *cursor,
    size_t limit, qesd_api_key **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE])
{
	qesd_api_key *v = NULL;
	const char *after_id = "", *rest;
	char cur[QESD_CURSOR_SIZE];
	uint64_t after_ms = 0;
	size_t got = 0, i;
	int r;

	if ((r = tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (!qesd_id_valid("ten", tenant_id))
		return 0;	/* no such tenant: an empty list, like B's view of A */
	if (cur[0] != '\0') {
		if (parse_u64(cur, '.', &after_ms, &rest) != 0 ||
		    !key_id_ok(rest))
			return tx_refuse(tx, QES_ERR_INVALID_ARG,
			    "malformed cursor");
		after_id = rest;
	}
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = tx_result(tx, OPS(tx)->key_list(tx, tenant_id,
	    (int64_t)after_ms, after_id, limit + 1, v, &got))) != 0)
		goto out;
	if (got > limit) {
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%" PRId64 ".%s",
		    v[got - 1].created_at_ms, v[got - 1].id);
	}
	/* a list has no business carrying authentication material */
	for (i = 0; i < got; i++) {
		memset(v[i].secret_hash, 0, sizeof(v[i].secret_hash));
		memset(v[i].prev_secret_hash, 0,
		    sizeof(v[i].prev_secret_hash));
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
qesd_key_rotate(qesd_tx *tx, const char *tenant_id, const char *key_id,
    const uint8_t new_hash[QESD_HMAC_LEN], int64_t prev_valid_until_ms,
    int64_t now_ms)
{
	qesd_api_key k;
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if (new_hash == NULL || now_ms <= 0 || prev_valid_until_ms < 0)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id) || !key_id_ok(key_id))
		return QES_ERR_NOT_FOUND;
	r = OPS(tx)->key_rotate(tx, tenant_id, key_id, new_hash,
	    prev_valid_until_ms, now_ms);
	if (r != QES_ERR_NOT_FOUND)
		return tx_result(tx, r);
	/* missing, foreign or revoked? */
	if ((r = tx_result(tx, OPS(tx)->key_get(tx, tenant_id, key_id,
	    &k))) != 0)
		return r;
	return tx_refuse(tx, QES_ERR_CONFLICT, "API key is revoked");
}

int
qesd_key_revoke(qesd_tx *tx, const char *tenant_id, const char *key_id,
    int64_t now_ms)
{
	qesd_api_key k;
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if (now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id) || !key_id_ok(key_id))
		return QES_ERR_NOT_FOUND;
	r = OPS(tx)->key_revoke(tx, tenant_id, key_id, now_ms);
	if (r != QES_ERR_NOT_FOUND)
		return tx_result(tx, r);
	/* already revoked is fine; missing or foreign is not */
	return tx_result(tx, OPS(tx)->key_get(tx, tenant_id, key_id, &k));
}

int
qesd_key_touch(qesd_tx *tx, const qesd_key_use *uses, size_t n)
{
	size_t i;
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if (uses == NULL && n > 0)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < n; i++) {
		if (!qesd_id_valid("ten", uses[i].tenant_id) ||
		    !key_id_ok(uses[i].key_id) || uses[i].used_at_ms <= 0)
			continue;
		if ((r = tx_result(tx, OPS(tx)->key_touch(tx, &uses[i]))) != 0)
			return r;
	}
	return 0;
}

/* ---- audit ---- */

static int
dup_field(const char *s, char **out)
{
	*out = NULL;
	if (s != NULL && (*out = strdup(s)) == NULL)
		return QES_ERR_ALLOC;
	return 0;
}

/*
 * Everything of a record that does not depend on the chain position: id,
 * copied fields, canonical details and the address commitment. Checked
 * completely here, so that appending later can fail only in the store.
 */
static int
build_record(const char *tenant_id, const qesd_audit_event *ev,
    qes_audit_record *rec)
{
	char id[QESD_ID_SIZE];
	int r;

	memset(rec, 0, sizeof(*rec));
	if (ev == NULL || !qesd_id_valid("ten", tenant_id) || ev->time_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if ((r = qesd_id_new("aud", id)) != 0)
		goto out;
	if ((r = dup_field(tenant_id, &rec->tenant_id)) != 0 ||
	    (r = dup_field(id, &rec->id)) != 0 ||
	    (r = dup_field(ev->type, &rec->type)) != 0 ||
	    (r = dup_field(ev->request_id, &rec->request_id)) != 0 ||
	    (r = dup_field(ev->key_id, &rec->key_id)) != 0 ||
	    (r = dup_field(ev->device_id, &rec->device_id)) != 0 ||
	    (r = dup_field(ev->route, &rec->route)) != 0 ||
	    (r = dup_field(ev->method, &rec->method)) != 0)
		goto out;
	rec->time_ms = ev->time_ms;
	rec->status = ev->status;
	rec->seq = 1;	/* placeholder until appended, so the check passes */
	if (ev->details != NULL &&
	    (r = qes_audit_canonical_details(ev->details, &rec->details)) != 0)
		goto out;
	if (ev->client_addr != NULL &&
	    (r = qes_audit_set_addr(rec, ev->client_addr)) != 0)
		goto out;
	if ((r = qes_audit_record_check(rec, NULL)) != 0)
		goto out;
	rec->seq = 0;
 out:
	if (r != 0) {
		qes_audit_record_clear(rec);
		if (r != QES_ERR_ALLOC && r != QES_ERR_CRYPTO)
			r = QES_ERR_INVALID_ARG;
	}
	return r;
}

/* Chain a built record to the tenant's head and store it. */
static int
append_built(qesd_tx *tx, qes_audit_record *rec, qesd_audit_ref *out)
{
	uint64_t head;
	int r;

	if ((r = tx_result(tx, OPS(tx)->audit_head(tx, rec->tenant_id, &head,
	    rec->prev_hash))) != 0)
		return r;
	if (head >= INT64_MAX)
		return tx_result(tx, QES_ERR_LIMIT);
	rec->seq = head + 1;
	if ((r = qes_audit_seal(rec)) != 0)
		return r;
	if ((r = tx_result(tx, OPS(tx)->audit_insert(tx, rec))) != 0)
		return r;
	if (out != NULL) {
		out->seq = rec->seq;
		snprintf(out->id, sizeof(out->id), "%s", rec->id);
		memcpy(out->hash, rec->hash, sizeof(out->hash));
	}
	return 0;
}

int
qesd_audit_append(qesd_tx *tx, const char *tenant_id,
    const qesd_audit_event *ev, qesd_audit_ref *out)
{
	qes_audit_record rec;
	int r;

	if ((r = tx_check(tx, 1)) != 0)
		return r;
	if ((r = build_record(tenant_id, ev, &rec)) != 0)
		return r == QES_ERR_INVALID_ARG ? tx_refuse(tx, r,
		    "invalid audit event") : r;
	r = append_built(tx, &rec, out);
	qes_audit_record_clear(&rec);
	return r;
}

int
qesd_audit_list(qesd_tx *tx, const char *tenant_id,
    const qesd_audit_filter *filter, const char *cursor, size_t limit,
    qes_audit_record **items, size_t *n, char next_cursor[QESD_CURSOR_SIZE])
{
	static const qesd_audit_filter none;
	qes_audit_record *v = NULL;
	char cur[QESD_CURSOR_SIZE];
	uint64_t after = 0;
	size_t got = 0;
	int r;

	if ((r = tx_check(tx, 0)) != 0 ||
	    (r = list_args(tx, cursor, cur, items, n, next_cursor)) != 0)
		return r;
	*items = NULL;
	if (!qesd_id_valid("ten", tenant_id))
		return 0;
	if (filter == NULL)
		filter = &none;
	if (filter->since_ms < 0 || filter->until_ms < 0)
		return tx_refuse(tx, QES_ERR_INVALID_ARG, "negative time");
	if (cur[0] != '\0' && parse_u64(cur, '\0', &after, NULL) != 0)
		return tx_refuse(tx, QES_ERR_INVALID_ARG, "malformed cursor");
	limit = clamp_limit(limit);
	if ((v = calloc(limit + 1, sizeof(*v))) == NULL)
		return QES_ERR_ALLOC;
	if ((r = tx_result(tx, OPS(tx)->audit_list(tx, tenant_id, filter,
	    after, limit + 1, v, &got))) != 0)
		goto out;
	if (got > limit) {
		qes_audit_record_clear(&v[limit]);
		got = limit;
		snprintf(next_cursor, QESD_CURSOR_SIZE, "%" PRIu64,
		    v[got - 1].seq);
	}
	if (got == 0) {
		free(v);
		v = NULL;
	}
	*items = v;
	*n = got;
	v = NULL;
 out:
	qes_audit_records_free(v, got);
	return r;
}

int
qesd_audit_anchor(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	int r;

	if ((r = tx_check(tx, 0)) != 0)
		return r;
	if (seq == NULL || hash == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id))
		return QES_ERR_NOT_FOUND;
	return tx_result(tx, OPS(tx)->audit_anchor(tx, tenant_id, seq, hash));
}

int
qesd_audit_head(qesd_tx *tx, const char *tenant_id, uint64_t *seq,
    uint8_t hash[QES_AUDIT_HASH_LEN])
{
	int r;

	if ((r = tx_check(tx, 0)) != 0)
		return r;
	if (seq == NULL || hash == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id))
		return QES_ERR_NOT_FOUND;
	return tx_result(tx, OPS(tx)->audit_head(tx, tenant_id, seq, hash));
}

int
qesd_audit_verify(qesd_store *s, const char *tenant_id, qes_audit_chain *out)
{
	qesd_tx *tx = NULL;
	qes_audit_record *recs = NULL;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN], head_hash[QES_AUDIT_HASH_LEN];
	uint64_t anchor_seq, head_seq;
	char cursor[QESD_CURSOR_SIZE] = "";
	size_t n = 0, i;
	int r;

	if (s == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if ((r = qesd_store_begin(s, QESD_TX_READ, &tx)) != 0)
		goto out;
	if ((r = qesd_audit_anchor(tx, tenant_id, &anchor_seq,
	    anchor_hash)) != 0 ||
	    (r = qesd_audit_head(tx, tenant_id, &head_seq, head_hash)) != 0)
		goto out;
	if ((r = qes_audit_chain_init(out, tenant_id, anchor_seq,
	    anchor_hash)) != 0)
		goto out;
	snprintf(cursor, sizeof(cursor), "%" PRIu64, anchor_seq);
	do {
		if ((r = qesd_audit_list(tx, tenant_id, NULL, cursor,
		    QESD_LIST_MAX, &recs, &n, cursor)) != 0)
			goto out;
		for (i = 0; i < n; i++)
			if ((r = qes_audit_chain_add(out, &recs[i])) != 0)
				goto out;
		qes_audit_records_free(recs, n);
		recs = NULL;
		n = 0;
	} while (cursor[0] != '\0');
	if (!qes_audit_chain_ends_at(out, head_seq, head_hash)) {
		out->broken_seq = out->next_seq;
		out->reason = "head mismatch";
		r = QES_ERR_CHAIN_BROKEN;
		goto out;
	}
	r = 0;
 out:
	qes_audit_records_free(recs, n);
	qesd_tx_end(tx);
	return r;
}

/* ---- retention ---- */

typedef int (*tenant_fn)(qesd_store *s, const char *tenant_id, void *arg,
    char *err, size_t err_len);

/* Call fn for every tenant, one page of ids at a time. */
static int
each_tenant(qesd_store *s, tenant_fn fn, void *arg, char *err, size_t err_len)
{
	qesd_tenant *page = NULL;
	qesd_tx *tx = NULL;
	char cursor[QESD_CURSOR_SIZE] = "";
	size_t n = 0, i;
	int r;

	do {
		if ((r = qesd_store_begin(s, QESD_TX_READ, &tx)) != 0) {
			set_err(err, err_len, "listing tenants: %s",
			    qes_strerror(r));
			goto out;
		}
		if ((r = qesd_tenant_list(tx, cursor, QESD_LIST_MAX, &page, &n,
		    cursor)) != 0) {
			set_err(err, err_len, "listing tenants: %s",
			    qesd_tx_errmsg(tx));
			goto out;
		}
		qesd_tx_end(tx);
		tx = NULL;
		for (i = 0; i < n; i++)
			if ((r = fn(s, page[i].id, arg, err, err_len)) != 0)
				goto out;
		free(page);
		page = NULL;
	} while (cursor[0] != '\0');
	r = 0;
 out:
	free(page);
	qesd_tx_end(tx);
	return r;
}

struct retention {
	int64_t before_ms;
	int64_t now_ms;
	uint64_t total;
};

static int
purge_tenant(qesd_store *s, const char *tenant_id, void *arg, char *err,
    size_t err_len)
{
	struct retention *rt = arg;
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	uint64_t through = 0, count = 0;
	char details[160];
	int r;

	if ((r = qesd_store_begin(s, QESD_TX_WRITE, &tx)) != 0)
		goto fail;
	if ((r = tx_result(tx, OPS(tx)->audit_purge(tx, tenant_id,
	    rt->before_ms, rt->now_ms, &through, &count))) != 0)
		goto fail;
	if (count == 0)
		goto out;
	snprintf(details, sizeof(details), "{\"before_ms\":%" PRId64
	    ",\"through_seq\":%" PRIu64 ",\"records\":%" PRIu64 "}",
	    rt->before_ms, through, count);
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = rt->now_ms;
	ev.type = "audit.purged";
	ev.details = details;
	if ((r = qesd_audit_append(tx, tenant_id, &ev, NULL)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto fail;
	rt->total += count;
	goto out;
 fail:
	set_err(err, err_len, "purging audit records of %s: %s", tenant_id,
	    tx != NULL && qesd_tx_errmsg(tx)[0] ? qesd_tx_errmsg(tx) :
	    qes_strerror(r));
 out:
	qesd_tx_end(tx);
	return r;
}

static int
erase_tenant(qesd_store *s, const char *tenant_id, void *arg, char *err,
    size_t err_len)
{
	struct retention *rt = arg;
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	uint64_t count = 0;
	char details[128];
	int r;

	if ((r = qesd_store_begin(s, QESD_TX_WRITE, &tx)) != 0)
		goto fail;
	if ((r = tx_result(tx, OPS(tx)->audit_erase_addrs(tx, tenant_id,
	    rt->before_ms, &count))) != 0)
		goto fail;
	if (count == 0)
		goto out;
	snprintf(details, sizeof(details), "{\"before_ms\":%" PRId64
	    ",\"records\":%" PRIu64 "}", rt->before_ms, count);
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = rt->now_ms;
	ev.type = "audit.addresses_erased";
	ev.details = details;
	if ((r = qesd_audit_append(tx, tenant_id, &ev, NULL)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto fail;
	rt->total += count;
	goto out;
 fail:
	set_err(err, err_len, "erasing client addresses of %s: %s", tenant_id,
	    tx != NULL && qesd_tx_errmsg(tx)[0] ? qesd_tx_errmsg(tx) :
	    qes_strerror(r));
 out:
	qesd_tx_end(tx);
	return r;
}

int
qesd_audit_purge(qesd_store *s, int64_t before_ms, int64_t now_ms,
    uint64_t *purged, char *err, size_t err_len)
{
	struct retention rt = { before_ms, now_ms, 0 };
	int r;

	set_err(err, err_len, "%s", "");
	if (s == NULL || before_ms <= 0 || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	r = each_tenant(s, purge_tenant, &rt, err, err_len);
	if (purged != NULL)
		*purged = rt.total;
	return r;
}

int
qesd_audit_erase_addrs(qesd_store *s, int64_t before_ms, int64_t now_ms,
    uint64_t *erased, char *err, size_t err_len)
{
	struct retention rt = { before_ms, now_ms, 0 };
	int r;

	set_err(err, err_len, "%s", "");
	if (s == NULL || before_ms <= 0 || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	r = each_tenant(s, erase_tenant, &rt, err, err_len);
	if (erased != NULL)
		*erased = rt.total;
	return r;
}

/* ---- group commit ---- */

/*
 * A ring of built (not yet chained) records. Items taken by a flush stay
 * counted against max_pending until written, so a failed flush can always
 * put them back at the front, in order. One flush at a time (flush_mu), so
 * batches reach the chain in the order they were pushed.
 */
struct qesd_audit_queue {
	qesd_store *store;
	size_t flush_records;
	unsigned flush_interval_ms;
	size_t cap;			/* max_pending */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t flush_mu;
	qes_audit_record *ring;
	size_t head, count;		/* queued */
	size_t in_flight;		/* taken by a running flush */
	qesd_audit_queue_stats stats;
	int stop;
	pthread_t thread;
	int thread_started;
};

static int
is_retryable(int r)
{
	return r == QES_ERR_BUSY || r == QES_ERR_UNAVAILABLE ||
	    r == QES_ERR_IO || r == QES_ERR_ALLOC || r == QES_ERR_TIMEOUT ||
	    r == QES_ERR_INTERNAL || r == QES_ERR_CRYPTO;
}

/* Write batch[0..n); on a record the store refuses as invalid, drop it and
 * try the rest again. Returns 0 or a retryable error. */
static int
write_batch(struct qesd_audit_queue *q, qes_audit_record *batch, size_t *n,
    uint64_t *dropped)
{
	qesd_tx *tx = NULL;
	size_t i;
	int r;

 again:
	if (*n == 0)
		return 0;
	if ((r = qesd_store_begin(q->store, QESD_TX_WRITE, &tx)) != 0)
		return r;
	for (i = 0; i < *n; i++) {
		batch[i].seq = 0;
		if ((r = append_built(tx, &batch[i], NULL)) != 0)
			break;
	}
	if (r == 0)
		r = qesd_tx_commit(tx);
	qesd_tx_end(tx);
	tx = NULL;
	if (r == 0 || is_retryable(r) || i == *n)
		return r;
	/* batch[i] is the culprit */
	qes_audit_record_clear(&batch[i]);
	memmove(&batch[i], &batch[i + 1], (*n - i - 1) * sizeof(*batch));
	(*n)--;
	(*dropped)++;
	goto again;
}

static int
queue_flush_once(struct qesd_audit_queue *q, int *more)
{
	qes_audit_record *batch = NULL;
	uint64_t dropped = 0;
	size_t n, i, written;
	int r;

	*more = 0;
	pthread_mutex_lock(&q->mu);
	n = q->count < q->flush_records ? q->count : q->flush_records;
	if (n == 0) {
		pthread_mutex_unlock(&q->mu);
		return 0;
	}
	if ((batch = calloc(n, sizeof(*batch))) == NULL) {
		pthread_mutex_unlock(&q->mu);
		return QES_ERR_ALLOC;
	}
	for (i = 0; i < n; i++)
		batch[i] = q->ring[(q->head + i) % q->cap];
	q->head = (q->head + n) % q->cap;
	q->count -= n;
	q->in_flight = n;
	pthread_mutex_unlock(&q->mu);

	written = n;
	r = write_batch(q, batch, &written, &dropped);

	pthread_mutex_lock(&q->mu);
	q->in_flight = 0;
	q->stats.dropped += dropped;
	if (r == 0) {
		q->stats.written += written;
		for (i = 0; i < written; i++)
			qes_audit_record_clear(&batch[i]);
	} else {
		/* back to the front, in order; in_flight kept room for them */
		q->stats.flush_failures++;
		for (i = written; i > 0; i--) {
			q->head = (q->head + q->cap - 1) % q->cap;
			q->ring[q->head] = batch[i - 1];
		}
		q->count += written;
	}
	*more = r == 0 && q->count > 0;
	q->stats.pending = q->count;
	pthread_mutex_unlock(&q->mu);
	free(batch);
	return r;
}

int
qesd_audit_queue_flush(qesd_audit_queue *q)
{
	int more = 1, r = 0;

	if (q == NULL)
		return QES_ERR_INVALID_ARG;
	pthread_mutex_lock(&q->flush_mu);
	while (more && (r = queue_flush_once(q, &more)) == 0)
		;
	pthread_mutex_unlock(&q->flush_mu);
	return r;
}

static void
deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *
queue_thread(void *arg)
{
	struct qesd_audit_queue *q = arg;
	struct timespec deadline;
	int stop;

	for (;;) {
		pthread_mutex_lock(&q->mu);
		deadline_after(&deadline, q->flush_interval_ms);
		while (!q->stop && q->count < q->flush_records &&
		    pthread_cond_timedwait(&q->cv, &q->mu, &deadline) !=
		    ETIMEDOUT)
			;
		stop = q->stop;
		pthread_mutex_unlock(&q->mu);
		/* errors are retried at the next tick and visible in stats */
		(void)qesd_audit_queue_flush(q);
		if (stop)
			return NULL;
	}
}

int
qesd_audit_queue_new(qesd_store *s, const qesd_audit_queue_config *cfg,
    qesd_audit_queue **out)
{
	struct qesd_audit_queue *q = NULL;
	pthread_condattr_t ca;
	int r = QES_ERR_ALLOC, ca_init = 0, mu = 0, cv = 0, fmu = 0;

	if (s == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return QES_ERR_ALLOC;
	q->store = s;
	q->flush_records = cfg != NULL && cfg->flush_records ?
	    cfg->flush_records : 256;
	q->flush_interval_ms = cfg != NULL && cfg->flush_interval_ms ?
	    cfg->flush_interval_ms : 100;
	q->cap = cfg != NULL && cfg->max_pending ? cfg->max_pending :
	    64 * q->flush_records;
	if (q->cap < q->flush_records || q->flush_records > 100000) {
		r = QES_ERR_INVALID_ARG;
		goto out;
	}
	if ((q->ring = calloc(q->cap, sizeof(*q->ring))) == NULL)
		goto out;
	r = QES_ERR_INTERNAL;
	if (pthread_condattr_init(&ca) != 0)
		goto out;
	ca_init = 1;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&q->cv, &ca) != 0)
		goto out;
	cv = 1;
	if (pthread_mutex_init(&q->mu, NULL) != 0)
		goto out;
	mu = 1;
	if (pthread_mutex_init(&q->flush_mu, NULL) != 0)
		goto out;
	fmu = 1;
	if (pthread_create(&q->thread, NULL, queue_thread, q) != 0)
		goto out;
	q->thread_started = 1;
	*out = q;
	q = NULL;
	r = 0;
 out:
	if (ca_init)
		pthread_condattr_destroy(&ca);
	if (q != NULL) {
		if (cv)
			pthread_cond_destroy(&q->cv);
		if (mu)
			pthread_mutex_destroy(&q->mu);
		if (fmu)
			pthread_mutex_destroy(&q->flush_mu);
		free(q->ring);
		free(q);
	}
	return r;
}

int
qesd_audit_queue_push(qesd_audit_queue *q, const char *tenant_id,
    const qesd_audit_event *ev)
{
	qes_audit_record rec;
	int r;

	if (q == NULL)
		return QES_ERR_INVALID_ARG;
	/* build outside the lock: ids, salts and details cost a little */
	if ((r = build_record(tenant_id, ev, &rec)) != 0)
		return r;
	pthread_mutex_lock(&q->mu);
	if (q->stop || q->count + q->in_flight >= q->cap) {
		pthread_mutex_unlock(&q->mu);
		qes_audit_record_clear(&rec);
		return QES_ERR_UNAVAILABLE;
	}
	q->ring[(q->head + q->count) % q->cap] = rec;
	q->count++;
	q->stats.pending = q->count;
	if (q->count >= q->flush_records)
		pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

void
qesd_audit_queue_get_stats(qesd_audit_queue *q, qesd_audit_queue_stats *out)
{
	if (q == NULL || out == NULL)
		return;
	pthread_mutex_lock(&q->mu);
	*out = q->stats;
	out->pending = q->count + q->in_flight;
	pthread_mutex_unlock(&q->mu);
}

void
qesd_audit_queue_free(qesd_audit_queue *q)
{
	size_t i;

	if (q == NULL)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (q->thread_started)
		pthread_join(q->thread, NULL);	/* it flushes once more */
	for (i = 0; i < q->count; i++)
		qes_audit_record_clear(&q->ring[(q->head + i) % q->cap]);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	pthread_mutex_destroy(&q->flush_mu);
	free(q->ring);
	free(q);
}
