/*
 * problem.h - RFC 9457 problem details for every error qesd returns.
 *
 * A problem is application/problem+json:
 *   { "type": "urn:qes:problem:<name>", "title": ..., "status": ...,
 *     "detail": ..., "instance": <request path>, "request_id": ... }
 * <name> is stable per failure (snake_case) and is part of the API: clients
 * switch on it, so never rename one. The title is the same for every
 * occurrence of a name; the detail explains this occurrence and must never
 * carry a secret or request content beyond a field name.
 */
#ifndef QESD_PROBLEM_H
#define QESD_PROBLEM_H

#include "http.h"

#define QESD_PROBLEM_TYPE_PREFIX "urn:qes:problem:"

/*
 * Replace resp with a problem (headers too: add Retry-After and the like
 * after this call). name and title must be static strings (the
 * response keeps the name for logs); detail may be NULL. req may be NULL
 * (then instance and request_id are left out). Returns 0 or QES_ERR_ALLOC;
 * on allocation failure resp still carries the status and the name.
 */
int qesd_problem(qesd_response *resp, const qesd_request *req, int status,
    const char *name, const char *title, const char *detail);

/* Same, with a printf-style detail (bounded to 512 bytes). */
int qesd_problemf(qesd_response *resp, const qesd_request *req, int status,
    const char *name, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
