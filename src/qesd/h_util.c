/*
 * h_util.c - the answers every API handler gives the same way (h_util.h).
 */
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "app.h"
#include "h_util.h"
#include "jsonv.h"
#include "log.h"
#include "problem.h"

qesd_handler_result
qesd_h_store_problem(qesd_request *req, qesd_response *resp, int r,
    qesd_tx *tx)
{
	qesd_log(r == QES_ERR_BUSY ? QESD_LOG_WARN : QESD_LOG_ERROR,
	    "a store call failed", QLS("request_id", req->request_id),
	    QLS("route", req->route_name), QLS("error", qes_errname(r)),
	    QLS("detail", tx != NULL ? qesd_tx_errmsg(tx) : NULL));
	if (r == QES_ERR_BUSY || r == QES_ERR_UNAVAILABLE) {
		qesd_problem(resp, req, 503, r == QES_ERR_BUSY ? "store_busy" :
		    "store_unavailable", "Service unavailable",
		    "the store cannot take this request right now; retry shortly");
		(void)qesd_response_header(resp, "Retry-After", "1");
	} else {
		qesd_problem(resp, req, 500, "internal", "Internal error",
		    "the request could not be completed");
	}
	return QESD_HANDLED;
}

qesd_handler_result
qesd_h_invalid_field(qesd_request *req, qesd_response *resp,
    const char *field, const char *reason)
{
	qesd_jv_error e;

	memset(&e, 0, sizeof(e));
	e.problem = "invalid_field";
	snprintf(e.field, sizeof(e.field), "%s", field);
	e.reason = reason;
	qesd_jv_problem(resp, req, &e);
	return QESD_HANDLED;
}

int
qesd_h_list_query(qesd_request *req, qesd_response *resp, long long *limit,
    const char **cursor)
{
	size_t i;
	int r;

	/* unknown query parameters are refused, like unknown body fields */
	for (i = 0; i < req->query.n; i++)
		if (strcmp(req->query.items[i].name, "cursor") != 0 &&
		    strcmp(req->query.items[i].name, "limit") != 0) {
			qesd_problemf(resp, req, 400, "invalid_query", "Invalid query",
			    "unknown query parameter '%.64s' (cursor and limit are known)",
			    req->query.items[i].name);
			return -1;
		}
	*limit = QESD_LIST_DEFAULT;
	r = qesd_query_get_int(&req->query, "limit", 1, QESD_LIST_MAX, limit);
	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		qesd_problemf(resp, req, 400, "invalid_query", "Invalid query",
		    "limit must be a whole number in 1..%d", QESD_LIST_MAX);
		return -1;
	}
	*cursor = qesd_query_get(&req->query, "cursor");
	return 0;
}

qesd_handler_result
qesd_h_invalid_cursor(qesd_request *req, qesd_response *resp)
{
	qesd_problem(resp, req, 400, "invalid_cursor", "Invalid cursor",
	    "the cursor is malformed: pass next_cursor of the previous page as it is");
	return QESD_HANDLED;
}

qesd_handler_result
qesd_h_page(qesd_request *req, qesd_response *resp, json_t *items,
    const char *next)
{
	json_t *body;

	if (items == NULL)
		return qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
	body = json_pack("{s:o, s:s?}", "items", items, "next_cursor",
	    next != NULL && next[0] != '\0' ? next : NULL);
	if (body == NULL)
		return qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
	qesd_response_json(resp, 200, body);
	return QESD_HANDLED;
}

qesd_handler_result
qesd_h_list(qesd_request *req, qesd_response *resp, qesd_h_fetch_fn fetch,
    const char *not_found_detail)
{
	qesd_app *app = req->app;
	char next[QESD_CURSOR_SIZE] = "";
	const char *cursor;
	long long limit;
	json_t *items;
	qesd_tx *tx = NULL;
	int r;

	if (qesd_h_list_query(req, resp, &limit, &cursor) != 0)
		return QESD_HANDLED;
	if ((items = json_array()) == NULL)
		return qesd_h_store_problem(req, resp, QES_ERR_ALLOC, NULL);
	if ((r = qesd_store_begin(app->store, QESD_TX_READ, &tx)) == 0)
		r = fetch(req, tx, cursor, (size_t)limit, items, next);
	if (r == 0) {
		qesd_h_page(req, resp, items, next);
		items = NULL;
	} else if (r == QES_ERR_INVALID_ARG) {
		qesd_h_invalid_cursor(req, resp);
	} else if (r == QES_ERR_NOT_FOUND) {
		qesd_problem(resp, req, 404, "not_found", "Not found",
		    not_found_detail);
	} else {
		qesd_h_store_problem(req, resp, r, tx);
	}
	json_decref(items);
	qesd_tx_end(tx);
	return QESD_HANDLED;
}
