/*
 * h_keys.c - the API key routes (scope admin):
 *
 *   POST   /v1/api-keys              create; the key string is in the 201
 *                                    response ONCE ("key") and nowhere else
 *   GET    /v1/api-keys              list the tenant's keys (?cursor=&limit=);
 *                                    never a secret or a hash
 *   POST   /v1/api-keys/{id}/rotate  new secret; the old one stays valid for
 *                                    grace_seconds (default 86400, max 604800)
 *   DELETE /v1/api-keys/{id}         revoke at once (also in this process'
 *                                    key cache); 204
 *
 * Rules: a key can grant only scopes it holds itself (403
 * scope_escalation). Every state change commits in ONE transaction with its
 * audit record (key.created, key.rotated, key.revoked), so a change without
 * a record cannot exist. A key id of another tenant answers exactly like a
 * missing one (404 not_found, same title and detail): the store filters by
 * the caller's tenant, so the handler cannot even tell them apart.
 *
 * The acting key is the record's key_id; the key acted on is in details.
 */
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "apikey.h"
#include "app.h"
#include "audit_svc.h"
#include "auth.h"
#include "jsonv.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "rfc3339.h"
#include "store.h"

#define GRACE_DEFAULT_S 86400
#define GRACE_MAX_S 604800
#define TIME_TEXT_MAX 40

static const char *const scope_values[] = { "sign", "devices", "diagnostics",
	"audit", "admin", NULL };
static const qesd_jv_field scope_item = { .type = QESD_JV_ENUM,
	.enum_values = scope_values };

static const qesd_jv_field create_fields[] = {
	{ .name = "name", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = QESD_NAME_MAX },
	{ .name = "scopes", .type = QESD_JV_ARRAY, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = 5, .items = &scope_item },
	{ .name = "expires_at", .type = QESD_JV_STRING, .flags = QESD_JV_NULLABLE,
	  .min_len = 1, .max_len = TIME_TEXT_MAX },
};

static const qesd_jv_field rotate_fields[] = {
	{ .name = "grace_seconds", .type = QESD_JV_INTEGER, .min = 0,
	  .max = GRACE_MAX_S },
};

/* ------------------------------------------------------------------------- */
/* helpers */

static json_t *
scopes_json(uint32_t scopes)
{
	json_t *a = json_array();
	uint32_t bit;

	if (a == NULL)
		return NULL;
	for (bit = 1; bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1)
		if ((scopes & bit) && qesd_scope_name(bit) != NULL &&
		    json_array_append_new(a, json_string(qesd_scope_name(bit))) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* "sign, audit": the names of scope bits, as the server's 403 spells them. */
static void
scope_list(uint32_t scopes, char *buf, size_t len)
{
	size_t off = 0;
	uint32_t bit;
	int n;

	buf[0] = '\0';
	for (bit = 1; bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1) {
		if (!(scopes & bit) || qesd_scope_name(bit) == NULL)
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off > 0 ? ", " : "",
		    qesd_scope_name(bit));
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

/* A time as RFC 3339, or null for 0 ("not set"). */
static json_t *
time_json(int64_t ms)
{
	char text[QESD_TIME_TEXT_SIZE];

	if (ms <= 0 || qesd_time_format(ms, text) != 0)
		return json_null();
	return json_string(text);
}

/* Public view of a key: never a hash or a secret. */
static json_t *
key_json(const qesd_api_key *k)
{
	return json_pack("{s:s, s:s, s:o*, s:o*, s:o*, s:o*, s:o*, s:o*, s:s?, s:o*}",
	    "id", k->id,
	    "name", k->name,
	    "scopes", scopes_json(k->scopes),
	    "created_at", time_json(k->created_at_ms),
	    "expires_at", time_json(k->expires_at_ms),
	    "rotated_at", time_json(k->rotated_at_ms),
	    "revoked_at", time_json(k->revoked_at_ms),
	    "last_used_at", time_json(k->last_used_at_ms),
	    "created_by", k->created_by[0] != '\0' ? k->created_by : NULL,
	    "previous_secret_valid_until",
	    time_json(k->has_prev ? k->prev_valid_until_ms : 0));
}

/* Details of a key lifecycle record: ids and names only. */
static char *
details_text(json_t *obj)
{
	char *s = NULL;

	if (obj != NULL)
		s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	return s;
}

static qesd_handler_result
not_found(qesd_request *req, qesd_response *resp)
{
	qesd_problem(resp, req, 404, "not_found", "Not found", "no such API key");
	return QESD_HANDLED;
}

/* Names may not hold control characters (the store refuses them too). */
static int
name_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------- */
/* POST /v1/api-keys */

static qesd_handler_result
keys_create(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	char key[QESD_APIKEY_SIZE], names[96];
	char *details = NULL;
	const char *name, *exp;
	qesd_jv_error jerr;
	qesd_api_key k;
	qesd_tx *tx = NULL;
	json_t *scopes, *v, *body = NULL;
	uint32_t want = 0, bit, missing;
	int64_t now = qesd_now_ms(app), expires = 0;
	size_t i;
	int r;

	memset(&k, 0, sizeof(k));
	memset(key, 0, sizeof(key));
	if (qesd_jv_validate(req->json, create_fields,
	    sizeof(create_fields) / sizeof(create_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		goto out;
	}
	name = json_string_value(json_object_get(req->json, "name"));
	if (!name_printable(name)) {
		qesd_h_invalid_field(req, resp, "name", "contains control characters");
		goto out;
	}
	scopes = json_object_get(req->json, "scopes");
	json_array_foreach(scopes, i, v) {
		bit = qesd_scope_from_name(json_string_value(v));
		if (want & bit) {
			char field[32];

			snprintf(field, sizeof(field), "scopes[%zu]", i);
			qesd_h_invalid_field(req, resp, field, "scope listed twice");
			goto out;
		}
		want |= bit;
	}
	v = json_object_get(req->json, "expires_at");
	if (v != NULL && json_is_string(v)) {
		exp = json_string_value(v);
		if (qesd_time_parse(exp, 0, &expires) != 0) {
			qesd_h_invalid_field(req, resp, "expires_at",
			    "not an RFC 3339 date-time (2030-01-31T12:00:00Z)");
			goto out;
		}
		if (expires <= now) {
			qesd_h_invalid_field(req, resp, "expires_at", "must be in the future");
			goto out;
		}
	}
	if ((missing = want & ~req->auth.scopes) != 0) {
		scope_list(missing, names, sizeof(names));
		qesd_problemf(resp, req, 403, "scope_escalation",
		    "Scope escalation",
		    "a key can only grant scopes it holds; this key lacks %s",
		    names);
		if (resp->json != NULL)
			(void)json_object_set_new(resp->json, "missing_scope",
			    json_string(names));
		goto out;
	}

	if ((r = qesd_apikey_mint(app->pepper, key, k.secret_hash, k.id)) != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		goto out;
	}
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%.47s", req->auth.tenant_id);
	snprintf(k.name, sizeof(k.name), "%s", name);
	snprintf(k.created_by, sizeof(k.created_by), "%.47s", req->auth.key_id);
	k.scopes = want;
	k.created_at_ms = now;
	k.expires_at_ms = expires;
	details = details_text(json_pack("{s:s, s:s, s:o*, s:o*}",
	    "key_id", k.id, "name", k.name, "scopes", scopes_json(want),
	    "expires_at", time_json(expires)));
	if (details == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_key_insert(tx, &k)) != 0 ||
	    (r = qesd_audit_in_tx(tx, req, "key.created", 201, details)) != 0 ||
	    (r = qesd_audit_commit(tx, req)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	body = key_json(&k);
	if (body == NULL || json_object_set_new(body, "key", json_string(key)) != 0) {
		/* created and audited but not shown: a key nobody holds, listed
		 * for the admin to revoke; the caller sees a 500 */
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	qesd_response_json(resp, 201, body);
	body = NULL;
	qesd_log(QESD_LOG_INFO, "API key created", QLS("request_id", req->request_id),
	    QLS("tenant", k.tenant_id), QLS("key_id", k.id),
	    QLS("created_by", k.created_by));
 out:
	qes_wipe(key, sizeof(key));
	qes_wipe(&k, sizeof(k));
	json_decref(body);
	free(details);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* GET /v1/api-keys */

static int
fetch_keys(qesd_request *req, qesd_tx *tx, const char *cursor, size_t limit,
    json_t *arr, char next[QESD_CURSOR_SIZE])
{
	qesd_api_key *items = NULL;
	size_t n = 0, i;
	int r;

	r = qesd_key_list(tx, req->auth.tenant_id, cursor, limit, &items, &n,
	    next);
	for (i = 0; r == 0 && i < n; i++)
		if (json_array_append_new(arr, key_json(&items[i])) != 0)
			r = QES_ERR_ALLOC;
	free(items);
	return r;
}

static qesd_handler_result
keys_list(qesd_request *req, qesd_response *resp)
{
	return qesd_h_list(req, resp, fetch_keys, NULL);
}

/* ------------------------------------------------------------------------- */
/* POST /v1/api-keys/{id}/rotate */

static qesd_handler_result
keys_rotate(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	char key[QESD_APIKEY_SIZE];
	uint8_t hash[QESD_HMAC_LEN];
	char *details = NULL;
	long long grace = GRACE_DEFAULT_S;
	qesd_jv_error jerr;
	qesd_api_key k;
	qesd_tx *tx = NULL;
	json_t *body = NULL, *g;
	int64_t now = qesd_now_ms(app), until;
	int r, committed = 0;

	memset(&k, 0, sizeof(k));
	memset(key, 0, sizeof(key));
	memset(hash, 0, sizeof(hash));
	if (req->json != NULL) {
		if (qesd_jv_validate(req->json, rotate_fields,
		    sizeof(rotate_fields) / sizeof(rotate_fields[0]), &jerr) != 0) {
			qesd_jv_problem(resp, req, &jerr);
			goto out;
		}
		if ((g = json_object_get(req->json, "grace_seconds")) != NULL)
			grace = (long long)json_integer_value(g);
	}
	until = now + (int64_t)grace * 1000;

	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_key_get(tx, req->auth.tenant_id, id, &k);
	if (r == QES_ERR_NOT_FOUND) {
		not_found(req, resp);
		goto out;
	}
	if (r != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	if (k.revoked_at_ms != 0) {
		qesd_problem(resp, req, 409, "key_revoked", "API key revoked",
		    "a revoked API key cannot be rotated; create a new one");
		goto out;
	}
	if ((r = qesd_apikey_mint_for(app->pepper, k.id, key, hash)) != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		goto out;
	}
	details = details_text(json_pack("{s:s, s:I, s:o*}", "key_id", k.id,
	    "grace_seconds", (json_int_t)grace,
	    "previous_secret_valid_until", time_json(until)));
	if (details == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	if ((r = qesd_key_rotate(tx, req->auth.tenant_id, k.id, hash, until,
	    now)) != 0 ||
	    (r = qesd_audit_in_tx(tx, req, "key.rotated", 200, details)) != 0 ||
	    (r = qesd_audit_commit(tx, req)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	committed = 1;
	k.has_prev = 1;
	k.prev_valid_until_ms = until;
	k.rotated_at_ms = now;
	body = key_json(&k);
	if (body == NULL || json_object_set_new(body, "key", json_string(key)) != 0) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	qesd_response_json(resp, 200, body);
	body = NULL;
	qesd_log(QESD_LOG_INFO, "API key rotated", QLS("request_id", req->request_id),
	    QLS("tenant", req->auth.tenant_id), QLS("key_id", k.id),
	    QLI("grace_seconds", grace));
 out:
	if (committed)
		qesd_auth_evict(app->auth, k.id);
	qes_wipe(key, sizeof(key));
	qes_wipe(hash, sizeof(hash));
	qes_wipe(&k, sizeof(k));
	json_decref(body);
	free(details);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* DELETE /v1/api-keys/{id} */

static qesd_handler_result
keys_revoke(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	char *details = NULL;
	qesd_api_key k;
	qesd_tx *tx = NULL;
	int64_t now = qesd_now_ms(app);
	int r, committed = 0;

	memset(&k, 0, sizeof(k));
	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_key_get(tx, req->auth.tenant_id, id, &k);
	if (r == QES_ERR_NOT_FOUND) {
		not_found(req, resp);
		goto out;
	}
	if (r != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	if (k.revoked_at_ms != 0) {
		/* idempotent: nothing changes, the after hook records the call */
		resp->status = 204;
		goto out;
	}
	details = details_text(json_pack("{s:s}", "key_id", k.id));
	if (details == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	if ((r = qesd_key_revoke(tx, req->auth.tenant_id, k.id, now)) != 0 ||
	    (r = qesd_audit_in_tx(tx, req, "key.revoked", 204, details)) != 0 ||
	    (r = qesd_audit_commit(tx, req)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	committed = 1;
	resp->status = 204;
	qesd_log(QESD_LOG_INFO, "API key revoked", QLS("request_id", req->request_id),
	    QLS("tenant", req->auth.tenant_id), QLS("key_id", k.id));
 out:
	/* evict after the commit: from now on no lookup can cache the old row */
	if (committed)
		qesd_auth_evict(app->auth, k.id);
	qes_wipe(&k, sizeof(k));
	free(details);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

static const qesd_route key_routes[] = {
	{ QESD_POST, "/v1/api-keys", QESD_SCOPE_ADMIN, QESD_ROUTE_JSON_BODY,
	  keys_create, "keys.create" },
	{ QESD_GET, "/v1/api-keys", QESD_SCOPE_ADMIN, 0, keys_list, "keys.list" },
	{ QESD_POST, "/v1/api-keys/{id}/rotate", QESD_SCOPE_ADMIN,
	  QESD_ROUTE_JSON_BODY | QESD_ROUTE_BODY_OPTIONAL, keys_rotate,
	  "keys.rotate" },
	{ QESD_DELETE, "/v1/api-keys/{id}", QESD_SCOPE_ADMIN, 0, keys_revoke,
	  "keys.revoke" },
};
const qesd_route_table qesd_key_routes = { key_routes,
	sizeof(key_routes) / sizeof(key_routes[0]) };
