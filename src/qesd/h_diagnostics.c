/*
 * h_diagnostics.c - POST /v1/devices/{id}/diagnostics (scope diagnostics):
 * ask the device's qes-agent for the report `qes-agent diagnose --json`
 * prints, and answer with it and the round trip the gateway measured.
 *
 * The handler checks the device (tenant, revocation, a live session on
 * this replica), starts the diagnosis (diagnostics.c sends `diagnose`) and
 * defers its response; the resume function runs when the answer came or
 * diagnostics_timeout_s passed, and turns the outcome into the response.
 * A device live on another replica (bus = nats) is asked through the bus:
 * the holder runs the diagnosis and replies with the outcome, which wakes
 * this request the same way (diagnostics.h); the holder also decides "one
 * at a time", and "no responders" is device_offline.
 *
 *   200  the report                       409 device_busy (the agent runs
 *   404  not_found (missing, foreign)         one already)
 *   409  device_revoked, device_offline,  502 diagnostics_failed,
 *        diagnostics_in_progress              diagnostics_invalid,
 *   503  overloaded, shutting_down            device_disconnected
 *                                         504 diagnostics_timeout
 *
 * Every request about an existing device leaves one device.diagnostics
 * record in the tenant's chain (device id, outcome, round trip, the
 * agent's error code): the record of the request, so no api.request
 * follows. The report itself stays out of the record and out of the logs
 * - it is not secret, but it is large and says nothing the outcome does
 * not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "app.h"
#include "audit_svc.h"
#include "bus.h"
#include "diagnostics.h"
#include "hub.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "store.h"
#include "store_devices.h"

/* The record of the request: device.diagnostics with a small details
 * object. Failure is logged; the after hook then records api.request. */
static void
audit_diagnostics(qesd_request *req, int status, const char *device_id,
    const char *outcome, const qesd_diag_result *res)
{
	qesd_app *app = req->app;
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	char *details = NULL;
	json_t *o;
	int r = QES_ERR_ALLOC;

	o = json_pack("{s:s, s:s}", "device_id", device_id, "outcome", outcome);
	if (o != NULL && res != NULL) {
		if (res->session_id[0] != '\0' && json_object_set_new(o,
		    "session_id", json_string(res->session_id)) != 0)
			goto out;
		if (res->rtt_ms >= 0 && json_object_set_new(o, "rtt_ms",
		    json_integer(res->rtt_ms)) != 0)
			goto out;
		if (res->agent_error[0] != '\0' && json_object_set_new(o,
		    "agent_error", json_string(res->agent_error)) != 0)
			goto out;
		if (res->close_reason[0] != '\0' && json_object_set_new(o,
		    "close_reason", json_string(res->close_reason)) != 0)
			goto out;
	}
	if (o == NULL ||
	    (details = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = qesd_now_ms(app);
	ev.type = "device.diagnostics";
	ev.request_id = req->request_id[0] != '\0' ? req->request_id : NULL;
	ev.key_id = req->auth.key_id[0] != '\0' ? req->auth.key_id : NULL;
	ev.device_id = device_id;
	ev.route = req->route_name;
	ev.method = req->method_name;
	ev.status = status;
	ev.client_addr = req->client_addr[0] != '\0' ? req->client_addr : NULL;
	ev.details = details;
	if ((r = qesd_store_begin(app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_audit_append(tx, req->auth.tenant_id, &ev, NULL)) != 0 ||
	    (r = qesd_tx_commit(tx)) != 0)
		goto out;
	req->app_flags |= QESD_APPF_AUDITED;
 out:
	if (r != 0)
		qesd_log(QESD_LOG_ERROR, "device.diagnostics audit record not "
		    "written: the request is recorded as api.request",
		    QLS("request_id", req->request_id), QLS("device_id", device_id),
		    QLS("error", qes_strerror(r)),
		    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	qesd_tx_end(tx);
	free(details);
	json_decref(o);
}

static void
unavailable(qesd_request *req, qesd_response *resp, const char *name,
    const char *title, const char *detail)
{
	qesd_problem(resp, req, 503, name, title, detail);
	(void)qesd_response_header(resp, "Retry-After", "1");
}

/* The 200 body; NULL on allocation failure. Takes res->report. */
/* the answers both the start and the outcome of a diagnosis may give */
static void
in_progress(qesd_request *req, qesd_response *resp)
{
	qesd_problem(resp, req, 409, "diagnostics_in_progress",
	    "Diagnostics in progress",
	    "a diagnosis of this device is waiting for its answer already; "
	    "retry when that request has its response");
	(void)qesd_response_header(resp, "Retry-After", "5");
}

static void
offline(qesd_request *req, qesd_response *resp)
{
	qesd_problem(resp, req, 409, "device_offline", "Device offline",
	    "the device is not connected; ask its user to start qes-agent, "
	    "then retry");
}

static json_t *
result_json(const char *device_id, qesd_diag_result *res)
{
	json_t *body;

	body = json_pack("{s:s, s:s, s:I, s:{s:I, s:I}, s:o}",
	    "device_id", device_id, "session_id", res->session_id,
	    "rtt_ms", (json_int_t)res->rtt_ms,
	    "agent_timings", "scan_ms", (json_int_t)res->scan_ms,
	    "total_ms", (json_int_t)res->total_ms,
	    "report", res->report);
	res->report = NULL;	/* "o" stole it, also on failure */
	return body;
}

static void
diagnostics_resume(qesd_request *req, qesd_response *resp,
    qesd_resume_reason reason, void *arg)
{
	qesd_app *app;
	qesd_diag_result res;
	const char *device_id, *outcome;
	json_t *body;
	int64_t rtt_ms;

	qesd_diag_finish(arg, &res);
	if (req == NULL || resp == NULL) {
		qesd_diag_result_clear(&res);
		return;
	}
	app = req->app;
	device_id = qesd_request_param(req, "id");
	outcome = qesd_diag_outcome_name(res.outcome);
	rtt_ms = res.rtt_ms;
	switch (res.outcome) {
	case QESD_DIAG_OK:
		if ((body = result_json(device_id, &res)) == NULL) {
			qesd_problem(resp, req, 500, "internal", "Internal error",
			    "the request could not be completed");
			outcome = "internal";
			break;
		}
		qesd_response_json(resp, 200, body);
		break;
	case QESD_DIAG_BUSY:
		qesd_problem(resp, req, 409, "device_busy", "Device busy",
		    "the agent is running a diagnosis already (asked by another "
		    "request or replica); retry in a few seconds");
		(void)qesd_response_header(resp, "Retry-After", "5");
		break;
	case QESD_DIAG_AGENT_ERROR:
		qesd_problemf(resp, req, 502, "diagnostics_failed",
		    "Diagnostics failed", "the agent could not run the diagnosis "
		    "(agent error %.64s); its log says why", res.agent_error);
		break;
	case QESD_DIAG_INVALID:
		qesd_problemf(resp, req, 502, "diagnostics_invalid",
		    "Invalid diagnostics report", "the agent's report was refused: %s",
		    res.invalid != NULL ? res.invalid : "malformed");
		break;
	case QESD_DIAG_IN_PROGRESS:
		in_progress(req, resp);
		break;
	case QESD_DIAG_OFFLINE:
		offline(req, resp);
		break;
	case QESD_DIAG_OVERLOADED:
		unavailable(req, resp, "overloaded", "Overloaded",
		    "too many diagnoses are waiting for devices; retry shortly");
		break;
	case QESD_DIAG_SESSION_CLOSED:
		qesd_problemf(resp, req, 502, "device_disconnected",
		    "Device disconnected", "the device's session closed (%.63s) "
		    "before it answered; retry once qes-agent is connected again",
		    res.close_reason);
		break;
	case QESD_DIAG_TIMEOUT:
	default:
		if (reason == QESD_RESUME_DRAINING) {
			unavailable(req, resp, "shutting_down", "Shutting down",
			    "this server is draining; retry on another replica");
			outcome = "gateway_draining";
			break;
		}
		qesd_problemf(resp, req, 504, "diagnostics_timeout",
		    "Diagnostics timed out", "the agent did not answer within %u s; "
		    "its token scan may hang (see its log) or the link is slow",
		    app->cfg->diagnostics_timeout_s);
		break;
	}
	qesd_log(QESD_LOG_INFO, "device diagnostics",
	    QLS("request_id", req->request_id), QLS("tenant", req->auth.tenant_id),
	    QLS("device_id", device_id), QLS("session_id", res.session_id),
	    QLS("outcome", outcome), QLI("rtt_ms", rtt_ms),
	    QLS("agent_error", res.agent_error[0] != '\0' ? res.agent_error : NULL));
	audit_diagnostics(req, resp->status, device_id, outcome, &res);
	qesd_diag_result_clear(&res);
}

/* POST /v1/devices/{id}/diagnostics */
qesd_handler_result
qesd_diagnostics_post(qesd_request *req, qesd_response *resp)
{
	qesd_app *app = req->app;
	const char *id = qesd_request_param(req, "id"), *outcome = NULL;
	char session_id[QESD_ID_SIZE], ref[QESD_DIAG_REF_SIZE];
	qesd_diag_wait *w = NULL;
	qesd_device d;
	qesd_tx *tx = NULL;
	uint64_t token;
	int r;

	if ((r = qesd_store_begin(app->store, QESD_TX_READ, &tx)) != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	r = qesd_device_get(tx, req->auth.tenant_id, id, &d);
	if (r == QES_ERR_NOT_FOUND) {
		/* no device of this tenant: nothing to record beyond the
		 * request itself (the after hook) */
		qesd_problem(resp, req, 404, "not_found", "Not found",
		    "no such device");
		goto out;
	}
	if (r != 0) {
		qesd_h_store_problem(req, resp, r, tx);
		goto out;
	}
	qesd_tx_end(tx);
	tx = NULL;
	if (d.revoked_at_ms != 0) {
		qesd_problem(resp, req, 409, "device_revoked", "Device revoked",
		    "the device was revoked; it can never connect again");
		outcome = "device_revoked";
		goto out;
	}
	if (app->diag != NULL && app->hub != NULL &&
	    qesd_hub_is_live(app->hub, req->auth.tenant_id, d.id, session_id)) {
		r = qesd_diag_start(app->diag, req->auth.tenant_id, d.id,
		    session_id, &w);
	} else if (app->diag != NULL && qesd_bus_is_remote(app->bus)) {
		/* not here: the replica holding it runs the diagnosis */
		r = qesd_diag_start_remote(app->diag, req->auth.tenant_id, d.id,
		    &w, ref);
		if (r == 0 && qesd_bus_diagnose(app->bus, req->auth.tenant_id,
		    d.id, ref) != 0) {
			qesd_diag_abandon(w);
			w = NULL;
			r = QES_ERR_NOT_FOUND;
		}
	} else {
		r = QES_ERR_NOT_FOUND;
	}
	switch (r) {
	case 0:
		break;
	case QES_ERR_CONFLICT:
		in_progress(req, resp);
		outcome = "in_progress";
		goto out;
	case QES_ERR_NOT_FOUND:
		/* offline, or the session ended between the check and the
		 * send */
		offline(req, resp);
		outcome = "device_offline";
		goto out;
	case QES_ERR_LIMIT:
		unavailable(req, resp, "overloaded", "Overloaded",
		    "too many diagnoses are waiting for devices; retry shortly");
		outcome = "overloaded";
		goto out;
	default:
		qesd_log(QESD_LOG_ERROR, "device diagnostics could not be started",
		    QLS("request_id", req->request_id), QLS("device_id", d.id),
		    QLS("error", qes_strerror(r)));
		qesd_problem(resp, req, 500, "internal", "Internal error",
		    "the request could not be completed");
		outcome = "internal";
		goto out;
	}
	if ((r = qesd_defer(req, app->cfg->diagnostics_timeout_s * 1000u,
	    diagnostics_resume, w, &token)) != 0) {
		/* the diagnose went out; its answer will find nobody and be
		 * dropped */
		qesd_diag_abandon(w);
		unavailable(req, resp, "overloaded", "Overloaded",
		    "too many requests are waiting; retry shortly");
		outcome = "overloaded";
		goto out;
	}
	qesd_diag_arm(w, req->server, token);
	return QESD_DEFERRED;
 out:
	qesd_tx_end(tx);
	if (outcome != NULL)
		audit_diagnostics(req, resp->status, d.id, outcome, NULL);
	return QESD_HANDLED;
}
