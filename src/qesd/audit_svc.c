/*
 * audit_svc.c - turns requests into audit records (see audit_svc.h): the
 * in-transaction helper for state-changing handlers, the group-commit path
 * for everything else, and the after hook that decides which applies.
 *
 * What a record holds: the request's id, route name, method, status, the
 * acting key id, the client address (kept as a salted commitment in the
 * chain, erasable by retention) and a small details object. Details are
 * built here from static names only (the problem type of a refusal), or
 * by handlers from ids and names; never from headers or bodies.
 */
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "app.h"
#include "audit_svc.h"
#include "log.h"

#define ADMIT_PERCENT 90

static void
event_from_req(const qesd_request *req, const char *key_id, const char *type,
    int status, const char *details_json, qesd_audit_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->time_ms = qesd_now_ms(req->app);
	ev->type = type;
	ev->request_id = req->request_id[0] != '\0' ? req->request_id : NULL;
	ev->key_id = key_id != NULL && key_id[0] != '\0' ? key_id : NULL;
	ev->route = req->route_name;
	ev->method = req->method_name;
	ev->status = status > 0 && status <= 999 ? status : 0;
	ev->client_addr = req->client_addr[0] != '\0' ? req->client_addr : NULL;
	ev->details = details_json;
}

int
qesd_audit_in_tx(qesd_tx *tx, qesd_request *req, const char *type,
    int status, const char *details_json)
{
	qesd_audit_event ev;
	int r;

	if (tx == NULL || req == NULL || type == NULL || !req->auth.authenticated)
		return QES_ERR_INVALID_ARG;
	event_from_req(req, req->auth.key_id, type, status, details_json, &ev);
	if ((r = qesd_audit_append(tx, req->auth.tenant_id, &ev, NULL)) != 0)
		return r;
	req->app_flags |= QESD_APPF_AUDIT_IN_TX;
	return 0;
}

int
qesd_audit_commit(qesd_tx *tx, qesd_request *req)
{
	int r = qesd_tx_commit(tx);

	if (req != NULL) {
		if (r == 0 && (req->app_flags & QESD_APPF_AUDIT_IN_TX))
			req->app_flags |= QESD_APPF_AUDITED;
		req->app_flags &= ~QESD_APPF_AUDIT_IN_TX;
	}
	return r;
}

static int
queue_push(qesd_app *app, const char *tenant_id, const char *key_id,
    const qesd_request *req, const char *type, int status,
    const char *details_json)
{
	qesd_audit_event ev;

	if (app == NULL || app->audit_queue == NULL || tenant_id == NULL ||
	    req == NULL || type == NULL)
		return QES_ERR_INVALID_ARG;
	event_from_req(req, key_id, type, status, details_json, &ev);
	return qesd_audit_queue_push(app->audit_queue, tenant_id, &ev);
}

int
qesd_audit_queue_req(qesd_app *app, const char *tenant_id, const char *key_id,
    qesd_request *req, const char *type, int status, const char *details_json)
{
	int r;

	if (req == NULL)
		return QES_ERR_INVALID_ARG;
	if (key_id == NULL)
		key_id = req->auth.key_id;
	if ((r = queue_push(app, tenant_id, key_id, req, type, status,
	    details_json)) == 0)
		req->app_flags |= QESD_APPF_AUDITED;
	return r;
}

int
qesd_audit_admit(qesd_app *app)
{
	qesd_audit_queue_stats st;

	if (app == NULL || app->audit_queue == NULL || app->audit_queue_max == 0)
		return 0;
	qesd_audit_queue_get_stats(app->audit_queue, &st);
	if (st.pending * 100 >= (uint64_t)app->audit_queue_max * ADMIT_PERCENT)
		return QES_ERR_UNAVAILABLE;
	return 0;
}

void
qesd_audit_after(void *appv, const qesd_request *req,
    const qesd_response *resp, double duration_s)
{
	qesd_app *app = appv;
	char details[96];
	const char *d = NULL;
	int r;

	(void)duration_s;
	if (app == NULL || req == NULL || resp == NULL)
		return;
	/* no tenant: the access log line and the metrics are the record */
	if (!req->auth.authenticated)
		return;
	if (req->app_flags & QESD_APPF_AUDITED)
		return;
	if (resp->problem != NULL &&
	    strspn(resp->problem, "abcdefghijklmnopqrstuvwxyz0123456789_") ==
	    strlen(resp->problem) && strlen(resp->problem) < 64) {
		/* problem names are static identifiers from our code */
		snprintf(details, sizeof(details), "{\"problem\":\"%s\"}",
		    resp->problem);
		d = details;
	}
	r = queue_push(app, req->auth.tenant_id, req->auth.key_id, req,
	    "api.request", resp->status, d);
	if (r != 0)
		qesd_log(QESD_LOG_ERROR,
		    "audit record of a request could not be queued: the store is not taking writes",
		    QLS("request_id", req->request_id),
		    QLS("tenant", req->auth.tenant_id),
		    QLS("route", req->route_name), QLI("status", resp->status),
		    QLS("error", qes_strerror(r)));
}
