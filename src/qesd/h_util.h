/*
 * h_util.h - answers every API handler gives the same way: a store that
 * fails, a field that is invalid, a list's query and page, a malformed
 * cursor. One implementation, so the problem types and their wording stay
 * the same on every route (they are part of the API: docs/api.md).
 */
#ifndef QESD_H_UTIL_H
#define QESD_H_UTIL_H

#include <jansson.h>

#include "http.h"
#include "store.h"

/*
 * A store call failed with r: 503 store_busy / store_unavailable with
 * Retry-After: 1 for QES_ERR_BUSY / QES_ERR_UNAVAILABLE (retry shortly),
 * else 500 internal. Logged with the route and the transaction's detail
 * (tx may be NULL). Returns QESD_HANDLED.
 */
qesd_handler_result qesd_h_store_problem(qesd_request *req,
    qesd_response *resp, int r, qesd_tx *tx);

/* 400 invalid_field naming the field and why (static strings or copied). */
qesd_handler_result qesd_h_invalid_field(qesd_request *req,
    qesd_response *resp, const char *field, const char *reason);

/*
 * The query of a list route: only cursor and limit (1..QESD_LIST_MAX,
 * default QESD_LIST_DEFAULT) are known. 0, or -1 with a 400 invalid_query
 * problem in resp. *cursor is borrowed from the request (NULL: first page).
 */
int qesd_h_list_query(qesd_request *req, qesd_response *resp,
    long long *limit, const char **cursor);

/* 400 invalid_cursor: the store refused the cursor (QES_ERR_INVALID_ARG). */
qesd_handler_result qesd_h_invalid_cursor(qesd_request *req,
    qesd_response *resp);

/*
 * 200 with {"items": items, "next_cursor": next or absent}; takes items
 * (NULL is an allocation failure). A 500 problem when it cannot be built.
 */
qesd_handler_result qesd_h_page(qesd_request *req, qesd_response *resp,
    json_t *items, const char *next);

/*
 * A list route's whole answer. fetch runs inside a read transaction: it
 * lists up to limit items after cursor, appends their JSON to items and
 * sets next ("" on the last page). It returns 0; QES_ERR_INVALID_ARG when
 * the store refused the cursor (400 invalid_cursor); QES_ERR_NOT_FOUND when
 * the object the list belongs to does not exist in the caller's tenant
 * (404 not_found with not_found_detail); QES_ERR_ALLOC; or a store error.
 */
typedef int (*qesd_h_fetch_fn)(qesd_request *req, qesd_tx *tx,
    const char *cursor, size_t limit, json_t *items,
    char next[QESD_CURSOR_SIZE]);

qesd_handler_result qesd_h_list(qesd_request *req, qesd_response *resp,
    qesd_h_fetch_fn fetch, const char *not_found_detail);

#endif
