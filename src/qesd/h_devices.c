/*
 * h_devices.c - enrollment and device routes:
 *
 *   POST   /v1/enrollments          (devices) a single-use enrollment code
 *                                   for one new device; the code is in the
 *                                   201 response ONCE and stored only as a
 *                                   keyed hash
 *   POST   /v1/devices/enroll       (public) an agent registers its device
 *                                   key with a code: the code is used and
 *                                   the device created in one transaction
 *   GET    /v1/devices              (devices) the tenant's devices
 *   GET    /v1/devices/{id}         (devices) one device, its inventory
 *                                   summary, credentials and recent sessions
 *   GET    /v1/devices/{id}/sessions (devices) its sessions, newest first
 *   DELETE /v1/devices/{id}         (devices) revoke: stored and audited in
 *                                   one transaction, then the live session is
 *                                   closed (4002) - the device can never
 *                                   authenticate again
 *   POST   /v1/devices/{id}/diagnostics (diagnostics) the agent's diagnose
 *                                   report and the round trip; the handler
 *                                   is in h_diagnostics.c
 *
 * Enrolling is public because the agent has no API key: the code is the
 * credential. It is rate-limited per address by the middleware, and
 * unknown codes count as failed authentications of the address (so
 * guessing is slowed down and then blocked, like API keys). Used and
 * expired codes have their own problem types so the person at the desktop
 * learns what to do, and the refusal is audited in the code's tenant.
 *
 * Tenancy: every lookup filters by the caller's tenant; a foreign device id
 * answers 404 exactly like a missing one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "app.h"
#include "audit_svc.h"
#include "bus.h"
#include "devices.h"
#include "diagnostics.h"
#include "hub.h"
#include "jsonv.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "ratelimit.h"
#include "rfc3339.h"
#include "routes.h"
#include "store.h"
#include "store_devices.h"

#define RECENT_SESSIONS 10
#define PUBLIC_KEY_B64_MAX 512

static const qesd_jv_field enrollment_fields[] = {
	{ .name = "name", .type = QESD_JV_STRING, .min_len = 1,
	  .max_len = QESD_NAME_MAX },
	{ .name = "ttl_seconds", .type = QESD_JV_INTEGER, .min = 60,
	  .max = QESD_ENROLL_TTL_MAX_S },
};

static const qesd_jv_field enroll_fields[] = {
	{ .name = "code", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = 64 },
	{ .name = "public_key", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = PUBLIC_KEY_B64_MAX },
	{ .name = "agent_version", .type = QESD_JV_STRING,
	  .flags = QESD_JV_REQUIRED, .min_len = 1,
	  .max_len = QESD_AGENT_VERSION_MAX },
	{ .name = "os", .type = QESD_JV_STRING, .flags = QESD_JV_REQUIRED,
	  .min_len = 1, .max_len = QESD_OS_MAX },
	/* what the desktop calls itself (qes-agent enroll --name): the
	 * device's name unless the code was made for a name */
	{ .name = "name", .type = QESD_JV_STRING, .min_len = 1,
	  .max_len = QESD_NAME_MAX },
};

/* ------------------------------------------------------------------------- */
/* helpers */

static json_t *
time_json(int64_t ms)
{
	char text[QESD_TIME_TEXT_SIZE];

	if (ms <= 0 || qesd_time_format(ms, text) != 0)
		return json_null();
	return json_string(text);
}

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
	qesd_problem(resp, req, 404, "not_found", "Not found", "no such device");
	return QESD_HANDLED;
}

static int
printable_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static int
no_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Unknown query parameters are refused, like unknown body fields. */
/*
 * qesd_audit_in_tx() for a record about one device: the same fields from
 * the request, plus the device id, so GET /v1/audit?device= finds it.
 */
static int
audit_device_in_tx(qesd_tx *tx, qesd_request *req, const char *type,
    int status, const char *device_id, const char *details)
{
	qesd_audit_event ev;
	int r;

	if (!req->auth.authenticated)
		return QES_ERR_INVALID_ARG;
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = qesd_now_ms(req->app);
	ev.type = type;
	ev.request_id = req->request_id[0] != '\0' ? req->request_id : NULL;
	ev.key_id = req->auth.key_id[0] != '\0' ? req->auth.key_id : NULL;
	ev.device_id = device_id;
	ev.route = req->route_name;
	ev.method = req->method_name;
	ev.status = status;
	ev.client_addr = req->client_addr[0] != '\0' ? req->client_addr : NULL;
	ev.details = details;
	if ((r = qesd_audit_append(tx, req->auth.tenant_id, &ev, NULL)) != 0)
		return r;
	req->app_flags |= QESD_APPF_AUDIT_IN_TX;	/* qesd_audit_commit marks it */
	return 0;
}

/* ------------------------------------------------------------------------- */
/* JSON views */

static json_t *
device_json(const qesd_device *d)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:s?, s:s?}",
	    "id", d->id,
	    "name", d->name,
	    "status", d->revoked_at_ms != 0 ? "revoked" : "active",
	    "live", d->live && d->revoked_at_ms == 0,
	    "enrolled_at", time_json(d->enrolled_at_ms),
	    "revoked_at", time_json(d->revoked_at_ms),
	    "inventory_at", time_json(d->inventory_at_ms),
	    "agent_version", d->agent_version[0] ? d->agent_version : NULL,
	    "os", d->os[0] ? d->os : NULL);
}

static json_t *
session_json(const qesd_device_session *s)
{
	return json_pack("{s:s, s:b, s:s, s:s?, s:s?, s:s?, s:o, s:o, s:o, s:s?}",
	    "id", s->id,
	    "live", s->closed_at_ms == 0,
	    "replica", s->replica,
	    "agent_version", s->agent_version[0] ? s->agent_version : NULL,
	    "os", s->os[0] ? s->os : NULL,
	    "client_addr", s->client_addr[0] ? s->client_addr : NULL,
	    "connected_at", time_json(s->connected_at_ms),
	    "last_seen_at", time_json(s->last_seen_at_ms),
	    "closed_at", time_json(s->closed_at_ms),
	    "close_reason", s->close_reason[0] ? s->close_reason : NULL);
}

/* What a person needs to know about each token, from the stored report. */
static json_t *
tokens_summary(const char *inventory)
{
	static const char *const keep[] = { "slot_description", "label",
		"manufacturer", "model", "serial", "present", "flags", "error",
		NULL };
	json_t *doc, *out, *tokens, *t, *o, *v, *certs;
	size_t i, k;

	if ((out = json_array()) == NULL)
		return NULL;
	if (inventory == NULL || (doc = json_loads(inventory, 0, NULL)) == NULL)
		return out;
	tokens = json_object_get(doc, "tokens");
	json_array_foreach(tokens, i, t) {
		if ((o = json_object()) == NULL)
			break;
		for (k = 0; keep[k] != NULL; k++)
			if ((v = json_object_get(t, keep[k])) != NULL)
				(void)json_object_set(o, keep[k], v);
		certs = json_object_get(t, "certificates");
		(void)json_object_set_new(o, "certificates",
		    json_integer((json_int_t)json_array_size(certs)));
		if (json_array_append_new(out, o) != 0)
			break;
	}
	json_decref(doc);
	return out;
}

/* ------------------------------------------------------------------------- */
/* POST /v1/enrollments */

static qesd_handler_result
enrollments_create(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	char code[QESD_ENROLL_CODE_SIZE];
	char *details = NULL;
	qesd_enrollment e;
	qesd_jv_error jerr;
	qesd_tx *tx = NULL;
	json_t *v, *body = NULL;
	const char *name;
	long long ttl = QESD_ENROLL_TTL_DEFAULT_S;
	int64_t now = qesd_now_ms(app);
	int r;

	memset(&e, 0, sizeof(e));
	memset(code, 0, sizeof(code));
	if (qesd_jv_validate(req->json, enrollment_fields,
	    sizeof(enrollment_fields) / sizeof(enrollment_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		goto out;
	}
	name = json_string_value(json_object_get(req->json, "name"));
	if (name != NULL && !no_controls(name)) {
		qesd_h_invalid_field(req, resp, "name", "contains control characters");
		goto out;
	}
	if ((v = json_object_get(req->json, "ttl_seconds")) != NULL)
		ttl = (long long)json_integer_value(v);
	if ((r = qesd_enroll_code_new(app->pepper, code, e.code_hash)) != 0) {
		qesd_h_store_problem(req, resp, r, NULL);
		goto out;
	}
	snprintf(e.tenant_id, sizeof(e.tenant_id), "%.47s", req->auth.tenant_id);
	/* "" leaves the name to the agent (qes-agent enroll --name) */
	snprintf(e.device_name, sizeof(e.device_name), "%s",
	    name != NULL ? name : "");
	snprintf(e.created_by, sizeof(e.created_by), "%.47s", req->auth.key_id);
	e.created_at_ms = now;
	e.expires_at_ms = now + (int64_t)ttl * 1000;
	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_enrollment_insert(tx, &e)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	details = details_text(json_pack("{s:s, s:s?, s:o}", "enrollment_id",
	    e.id, "name", e.device_name[0] != '\0' ? e.device_name : NULL,
	    "expires_at", time_json(e.expires_at_ms)));
	if (details == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	if ((r = qesd_audit_in_tx(tx, req, "enrollment.created", 201,
	    details)) != 0 || (r = qesd_audit_commit(tx, req)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	body = json_pack("{s:s, s:s, s:s?, s:o}", "enrollment_id", e.id,
	    "code", code, "name", e.device_name[0] != '\0' ? e.device_name : NULL,
	    "expires_at", time_json(e.expires_at_ms));
	if (body == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	qesd_response_json(resp, 201, body);
	body = NULL;
	qesd_log(QESD_LOG_INFO, "enrollment code created",
	    QLS("request_id", req->request_id), QLS("tenant", e.tenant_id),
	    QLS("enrollment_id", e.id), QLI("ttl_seconds", ttl));
 out:
	qes_wipe(code, sizeof(code));
	qes_wipe(&e, sizeof(e));
	json_decref(body);
	free(details);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* POST /v1/devices/enroll (public) */

static int
version_ok(const char *s)
{
	return strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz.+~_-") == strlen(s);
}

/* An event of the enroll route, in the code's tenant (no API key). */
static void
enroll_event(const qesd_request *req, const char *type, int status,
    const char *device_id, const char *details, qesd_audit_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->time_ms = qesd_now_ms(req->app);
	ev->type = type;
	ev->request_id = req->request_id[0] != '\0' ? req->request_id : NULL;
	ev->device_id = device_id;
	ev->route = req->route_name;
	ev->method = req->method_name;
	ev->status = status;
	ev->client_addr = req->client_addr[0] != '\0' ? req->client_addr : NULL;
	ev->details = details;
}

/* A code that matches nothing: a guess, as far as we can tell. */
static qesd_handler_result
bad_code(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	char addr[QESD_RL_KEY_MAX];
	uint32_t retry_s = 0;
	int blocked = 0;

	qesd_addr_key(req->client_addr, addr);
	if (app->auth_fails != NULL)
		(void)qesd_failtrack_fail(app->auth_fails, addr, qesd_mono_ms(),
		    &blocked, &retry_s);
	qesd_log(QESD_LOG_WARN, "enrollment refused: unknown code",
	    QLS("request_id", req->request_id), QLS("client", req->client_addr));
	qesd_problem(resp, req, 400, "enrollment_code_invalid",
	    "Invalid enrollment code",
	    "no such enrollment code: check it, or ask for a new one");
	return QESD_HANDLED;
}

/* Refuse a used or expired code, with a record in its tenant. */
static qesd_handler_result
refuse_code(qesd_request *req, qesd_response *resp, qesd_tx *tx,
    const qesd_enrollment *e, const char *why)
{
	qesd_audit_event ev;
	char *details;
	int r = QES_ERR_ALLOC;

	details = details_text(json_pack("{s:s, s:s}", "enrollment_id", e->id,
	    "reason", why));
	if (details != NULL) {
		enroll_event(req, "device.enroll_refused", 410, NULL, details, &ev);
		if ((r = qesd_audit_append(tx, e->tenant_id, &ev, NULL)) == 0)
			r = qesd_tx_commit(tx);
	}
	free(details);
	if (r != 0)
		qesd_log(QESD_LOG_WARN, "refused enrollment not audited",
		    QLS("request_id", req->request_id), QLS("error", qes_strerror(r)));
	qesd_log(QESD_LOG_INFO, "enrollment refused", QLS("request_id", req->request_id),
	    QLS("tenant", e->tenant_id), QLS("enrollment_id", e->id),
	    QLS("reason", why), QLS("client", req->client_addr));
	if (strcmp(why, "used") == 0)
		qesd_problem(resp, req, 410, "enrollment_code_used",
		    "Enrollment code already used",
		    "this code has enrolled a device already: ask for a new code");
	else
		qesd_problem(resp, req, 410, "enrollment_code_expired",
		    "Enrollment code expired",
		    "this code is no longer valid: ask for a new code");
	return QESD_HANDLED;
}

static qesd_handler_result
devices_enroll(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	uint8_t hash[QESD_HMAC_LEN];
	const char *code, *pk, *ver, *os, *agent_name;
	char addr[QESD_RL_KEY_MAX], *details = NULL, retry[16];
	qesd_enrollment e;
	qesd_audit_event ev;
	qesd_jv_error jerr;
	qesd_device d;
	qesd_tx *tx = NULL;
	qes_buf *der = NULL;
	json_t *body = NULL;
	uint32_t retry_s = 0;
	int64_t now = qesd_now_ms(app);
	int r;

	memset(&e, 0, sizeof(e));
	memset(&d, 0, sizeof(d));
	memset(hash, 0, sizeof(hash));
	qesd_addr_key(req->client_addr, addr);
	if (app->auth_fails != NULL && qesd_failtrack_blocked(app->auth_fails,
	    addr, qesd_mono_ms(), &retry_s)) {
		qesd_problem(resp, req, 429, "rate_limited", "Too many requests",
		    "too many failed attempts from this address");
		snprintf(retry, sizeof(retry), "%u", retry_s > 0 ? retry_s : 1);
		(void)qesd_response_header(resp, "Retry-After", retry);
		goto out;
	}
	if (qesd_jv_validate(req->json, enroll_fields,
	    sizeof(enroll_fields) / sizeof(enroll_fields[0]), &jerr) != 0) {
		qesd_jv_problem(resp, req, &jerr);
		goto out;
	}
	code = json_string_value(json_object_get(req->json, "code"));
	pk = json_string_value(json_object_get(req->json, "public_key"));
	ver = json_string_value(json_object_get(req->json, "agent_version"));
	os = json_string_value(json_object_get(req->json, "os"));
	agent_name = json_string_value(json_object_get(req->json, "name"));
	if (agent_name != NULL && !no_controls(agent_name)) {
		qesd_h_invalid_field(req, resp, "name", "contains control characters");
		goto out;
	}
	if (!version_ok(ver)) {
		qesd_h_invalid_field(req, resp, "agent_version",
		    "only letters, digits and . + ~ _ - are allowed");
		goto out;
	}
	if (!printable_ascii(os)) {
		qesd_h_invalid_field(req, resp, "os", "must be printable ASCII");
		goto out;
	}
	if ((der = qes_buf_new()) == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	if (qes_proto_b64url_decode(pk, strlen(pk), der) != 0) {
		qesd_h_invalid_field(req, resp, "public_key",
		    "not base64url without padding");
		goto out;
	}
	if ((r = qesd_device_key_check(qes_buf_data(der), qes_buf_len(der))) != 0) {
		qesd_h_invalid_field(req, resp, "public_key", r == QES_ERR_KEY_UNSUITABLE ?
		    "must be an EC P-256 key" :
		    "not a DER SubjectPublicKeyInfo");
		goto out;
	}
	if (qesd_enroll_code_hash(app->pepper, code, hash) != 0) {
		bad_code(req, resp);
		goto out;
	}

	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_enrollment_get_by_code(tx, hash, &e);
	if (r == QES_ERR_NOT_FOUND) {
		bad_code(req, resp);
		goto out;
	}
	if (r != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	if (e.used_at_ms != 0) {
		refuse_code(req, resp, tx, &e, "used");
		goto out;
	}
	if (e.expires_at_ms <= now) {
		refuse_code(req, resp, tx, &e, "expired");
		goto out;
	}
	memcpy(d.tenant_id, e.tenant_id, sizeof(d.tenant_id));
	/* the name the code was made for, else the agent's, else "device" */
	snprintf(d.name, sizeof(d.name), "%s", e.device_name[0] != '\0' ?
	    e.device_name : agent_name != NULL ? agent_name : "device");
	memcpy(d.public_key, qes_buf_data(der), qes_buf_len(der));
	d.public_key_len = qes_buf_len(der);
	memcpy(d.enrollment_id, e.id, sizeof(d.enrollment_id));
	snprintf(d.agent_version, sizeof(d.agent_version), "%s", ver);
	snprintf(d.os, sizeof(d.os), "%s", os);
	d.enrolled_at_ms = now;
	if ((r = qesd_device_insert(tx, &d)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	/* compare-and-set: of two agents racing with one code, one wins */
	r = qesd_enrollment_use(tx, e.tenant_id, e.id, d.id, now);
	if (r == QES_ERR_CONFLICT) {
		qesd_problem(resp, req, 410, "enrollment_code_used",
		    "Enrollment code already used",
		    "this code has enrolled a device already: ask for a new code");
		goto out;
	}
	details = details_text(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s*}",
	    "device_id", d.id, "name", d.name, "enrollment_id", e.id,
	    "agent_version", d.agent_version, "os", d.os,
	    "agent_name", agent_name));
	if (r != 0 || details == NULL) {
		qesd_h_store_problem(req, resp, r != 0 ? r : QES_ERR_ALLOC, tx);
		goto out;
	}
	enroll_event(req, "device.enrolled", 201, d.id, details, &ev);
	if ((r = qesd_audit_append(tx, e.tenant_id, &ev, NULL)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	req->app_flags |= QESD_APPF_AUDITED;
	body = json_pack("{s:s, s:s, s:s, s:s}", "device_id", d.id,
	    "tenant_id", d.tenant_id, "name", d.name, "server_name",
	    app->hub != NULL ? qesd_hub_server_name(app->hub) :
	    (app->cfg->server_name != NULL ? app->cfg->server_name :
	    app->cfg->listen_host));
	if (body == NULL) {
		qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
		goto out;
	}
	qesd_response_json(resp, 201, body);
	body = NULL;
	qesd_log(QESD_LOG_INFO, "device enrolled", QLS("request_id", req->request_id),
	    QLS("tenant", d.tenant_id), QLS("device_id", d.id),
	    QLS("enrollment_id", e.id), QLS("client", req->client_addr));
 out:
	qes_wipe(hash, sizeof(hash));
	qes_wipe(&e, sizeof(e));
	qes_buf_free(der);
	json_decref(body);
	free(details);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* GET /v1/devices */

static int
fetch_devices(qesd_request *req, qesd_tx *tx, const char *cursor,
    size_t limit, json_t *arr, char next[QESD_CURSOR_SIZE])
{
	qesd_device *items = NULL;
	size_t n = 0, i;
	int r;

	r = qesd_device_list(tx, req->auth.tenant_id, cursor, limit, &items, &n,
	    next);
	for (i = 0; r == 0 && i < n; i++)
		if (json_array_append_new(arr, device_json(&items[i])) != 0)
			r = QES_ERR_ALLOC;
	free(items);
	return r;
}

static qesd_handler_result
devices_list(qesd_request *req, qesd_response *resp)
{
	return qesd_h_list(req, resp, fetch_devices, NULL);
}

/* ------------------------------------------------------------------------- */
/* GET /v1/devices/{id} */

static qesd_handler_result
devices_get(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	char next[QESD_CURSOR_SIZE], *inventory = NULL;
	qesd_device_session *sessions = NULL;
	qesd_credential *creds = NULL;
	qesd_device d;
	qesd_tx *tx = NULL;
	json_t *body = NULL, *arr, *inv;
	int64_t inv_at = 0, now = qesd_now_ms(app);
	size_t n_s = 0, n_c = 0, i;
	int r;

	if ((r = qesd_store_begin(app->store, QESD_TX_READ, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_device_get(tx, req->auth.tenant_id, id, &d);
	if (r == QES_ERR_NOT_FOUND) {
		not_found(req, resp);
		goto out;
	}
	if (r != 0 ||
	    (r = qesd_device_get_inventory(tx, d.tenant_id, d.id, &inventory,
	    &inv_at)) != 0 ||
	    (r = qesd_credential_list(tx, d.tenant_id, d.id, 0, now, NULL,
	    QESD_LIST_MAX, &creds, &n_c, next)) != 0 ||
	    (r = qesd_session_list(tx, d.tenant_id, d.id, NULL, RECENT_SESSIONS,
	    &sessions, &n_s, next)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	if ((body = device_json(&d)) == NULL)
		goto nomem;
	if ((arr = json_array()) == NULL ||
	    json_object_set_new(body, "recent_sessions", arr) != 0)
		goto nomem;
	for (i = 0; i < n_s; i++)
		if (json_array_append_new(arr, session_json(&sessions[i])) != 0)
			goto nomem;
	inv = json_pack("{s:o, s:o, s:[]}", "updated_at", time_json(inv_at),
	    "tokens", tokens_summary(inventory), "credentials");
	if (inv == NULL || json_object_set_new(body, "inventory", inv) != 0)
		goto nomem;
	arr = json_object_get(inv, "credentials");
	for (i = 0; i < n_c; i++)
		if (json_array_append_new(arr, qesd_credential_json(&creds[i])) != 0)
			goto nomem;
	qesd_response_json(resp, 200, body);
	body = NULL;
	goto out;
 nomem:
	qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
 out:
	json_decref(body);
	free(inventory);
	free(sessions);
	qesd_credentials_free(creds, n_c);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}

/* ------------------------------------------------------------------------- */
/* GET /v1/devices/{id}/sessions */

static int
fetch_sessions(qesd_request *req, qesd_tx *tx, const char *cursor,
    size_t limit, json_t *arr, char next[QESD_CURSOR_SIZE])
{
	qesd_device_session *items = NULL;
	qesd_device d;
	size_t n = 0, i;
	int r;

	if ((r = qesd_device_get(tx, req->auth.tenant_id,
	    qesd_request_param(req, "id"), &d)) != 0)
		return r;
	r = qesd_session_list(tx, d.tenant_id, d.id, cursor, limit, &items, &n,
	    next);
	for (i = 0; r == 0 && i < n; i++)
		if (json_array_append_new(arr, session_json(&items[i])) != 0)
			r = QES_ERR_ALLOC;
	free(items);
	return r;
}

static qesd_handler_result
devices_sessions(qesd_request *req, qesd_response *resp)
{
	return qesd_h_list(req, resp, fetch_sessions, "no such device");
}

/* ------------------------------------------------------------------------- */
/* DELETE /v1/devices/{id} */

static qesd_handler_result
devices_revoke(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id");
	char *details = NULL;
	qesd_tx *tx = NULL;
	int64_t now = qesd_now_ms(app);
	int r, committed = 0;

	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_device_revoke(tx, req->auth.tenant_id, id, now);
	if (r == QES_ERR_NOT_FOUND) {
		not_found(req, resp);
		goto out;
	}
	if (r == QES_ERR_CONFLICT) {
		/* revoked already: nothing changes, the after hook records it */
		resp->status = 204;
		goto out;
	}
	details = details_text(json_pack("{s:s}", "device_id", id));
	if (r != 0 || details == NULL) {
		qesd_h_store_problem(req, resp, r != 0 ? r : QES_ERR_ALLOC, tx);
		goto out;
	}
	if ((r = audit_device_in_tx(tx, req, "device.revoked", 204, id,
	    details)) != 0 ||
	    (r = qesd_audit_commit(tx, req)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	committed = 1;
	resp->status = 204;
	qesd_log(QESD_LOG_INFO, "device revoked", QLS("request_id", req->request_id),
	    QLS("tenant", req->auth.tenant_id), QLS("device_id", id));
 out:
	qesd_tx_end(tx);
	/* after the commit: the live session goes at once, and an
	 * authentication still in flight is refused (hub.c); a session on
	 * another replica is closed by that replica (bus.h) */
	if (committed && app->bus != NULL)
		(void)qesd_bus_close_device(app->bus, req->auth.tenant_id, id,
		    QES_PROTO_CLOSE_DEVICE_REVOKED, "the device was revoked");
	else if (committed && app->hub != NULL)
		(void)qesd_hub_close_device(app->hub, req->auth.tenant_id, id,
		    QES_PROTO_CLOSE_DEVICE_REVOKED, "the device was revoked");
	free(details);
	return QESD_HANDLED;
}

static const qesd_route device_routes[] = {
	{ QESD_POST, "/v1/enrollments", QESD_SCOPE_DEVICES, QESD_ROUTE_JSON_BODY,
	  enrollments_create, "enrollments.create" },
	{ QESD_POST, "/v1/devices/enroll", QESD_SCOPE_NONE, QESD_ROUTE_JSON_BODY,
	  devices_enroll, "devices.enroll" },
	{ QESD_GET, "/v1/devices", QESD_SCOPE_DEVICES, 0, devices_list,
	  "devices.list" },
	{ QESD_GET, "/v1/devices/{id}", QESD_SCOPE_DEVICES, 0, devices_get,
	  "devices.get" },
	{ QESD_GET, "/v1/devices/{id}/sessions", QESD_SCOPE_DEVICES, 0,
	  devices_sessions, "devices.sessions" },
	{ QESD_DELETE, "/v1/devices/{id}", QESD_SCOPE_DEVICES, 0, devices_revoke,
	  "devices.revoke" },
	{ QESD_POST, "/v1/devices/{id}/diagnostics", QESD_SCOPE_DIAGNOSTICS, 0,
	  qesd_diagnostics_post, "devices.diagnostics" },
};
const qesd_route_table qesd_device_routes = { device_routes,
	sizeof(device_routes) / sizeof(device_routes[0]) };
