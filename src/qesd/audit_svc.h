/*
 * audit_svc.h - how requests become audit records.
 *
 * The rule (issue 3, DESIGN invariant 7): every request that reached a
 * worker and acted for a tenant leaves exactly one audit record that
 * names it (route, method, status, key id, request id, client address),
 * and a state change commits together with its record.
 *
 *  - State-changing handlers append their own record INSIDE their write
 *    transaction with qesd_audit_in_tx() ("key.created", ...) and commit
 *    with qesd_audit_commit(), which marks the request as audited once the
 *    commit succeeded. If the transaction fails, nothing is marked and the
 *    after hook records the failed request as "api.request" instead.
 *  - Every other request with a tenant (reads, refusals after
 *    authentication: 400, 403, 404, 429, ...) gets an "api.request" record
 *    from the after hook, through the store's group-commit queue: one
 *    write transaction per batch instead of one per request.
 *  - A failed authentication whose key id exists is recorded in that key's
 *    tenant as "auth.failed" (by the middleware, with the reason); it is
 *    that request's record, so no "api.request" follows.
 *  - Requests without a tenant (unauthenticated 401s with an unknown or
 *    malformed key, health probes, public routes) belong to no tenant's
 *    chain: the server's access log line and its metrics are their record.
 *
 * Records never carry secrets, bodies or document content: details hold
 * ids, names and the problem type only.
 *
 * The access log line (time, level, request id, tenant, key id, route,
 * method, status, duration) is written by the server once per request
 * (server.c, txn_account); this file does not log requests a second time.
 */
#ifndef QESD_AUDIT_SVC_H
#define QESD_AUDIT_SVC_H

#include "app.h"
#include "http.h"
#include "store.h"

/* req->app_flags bits owned by this file */
#define QESD_APPF_AUDITED	(1u << 0)	/* the request's record is written/queued */
#define QESD_APPF_AUDIT_IN_TX	(1u << 1)	/* appended in a transaction not yet committed */

/*
 * Append a record of type for req to the authenticated tenant's chain
 * inside tx (a write transaction). status is the HTTP status the handler
 * will answer with; details_json a small JSON object (or NULL). Fills
 * request id, key id, route, method, client address and time from req.
 * QES_ERR_INVALID_ARG when req is not authenticated.
 */
int qesd_audit_in_tx(qesd_tx *tx, qesd_request *req, const char *type,
    int status, const char *details_json);

/* qesd_tx_commit(tx); on success a request with a record appended in tx
 * is marked QESD_APPF_AUDITED. */
int qesd_audit_commit(qesd_tx *tx, qesd_request *req);

/*
 * Queue a record for req in tenant_id's chain (group commit). key_id NULL
 * means req->auth.key_id. Marks req QESD_APPF_AUDITED on success.
 * QES_ERR_UNAVAILABLE when the queue is full (the store is down).
 */
int qesd_audit_queue_req(qesd_app *app, const char *tenant_id,
    const char *key_id, qesd_request *req, const char *type, int status,
    const char *details_json);

/*
 * Admission: 0 when the queue has room for this request's record,
 * QES_ERR_UNAVAILABLE when it is over 90 % full (answer 503 before doing
 * anything, so that no request runs whose record could not be kept).
 */
int qesd_audit_admit(qesd_app *app);

/* The after hook (qesd_server_config.after). */
void qesd_audit_after(void *app, const qesd_request *req,
    const qesd_response *resp, double duration_s);

#endif
