/*
 * problem.c - builds RFC 9457 problem responses (see problem.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "problem.h"

/* Strings that are not valid UTF-8 (jansson refuses them) get a fixed text. */
static int
set_text(json_t *o, const char *key, const char *value, const char *fallback)
{
	json_t *v = json_string(value);

	if (v == NULL)
		v = json_string(fallback);
	return json_object_set_new(o, key, v);
}

int
qesd_problem(qesd_response *resp, const qesd_request *req, int status,
    const char *name, const char *title, const char *detail)
{
	char type[128];
	json_t *o = NULL;
	int r = QES_ERR_ALLOC;

	qesd_response_clear(resp);
	resp->status = status;
	resp->problem = name;
	snprintf(resp->content_type, sizeof(resp->content_type), "%s",
	    "application/problem+json");
	snprintf(type, sizeof(type), "%s%s", QESD_PROBLEM_TYPE_PREFIX, name);
	if ((o = json_object()) == NULL)
		goto out;
	if (json_object_set_new(o, "type", json_string(type)) != 0 ||
	    json_object_set_new(o, "title", json_string(title)) != 0 ||
	    json_object_set_new(o, "status", json_integer(status)) != 0)
		goto out;
	if (detail != NULL &&
	    set_text(o, "detail", detail, "(detail not valid UTF-8)") != 0)
		goto out;
	if (req != NULL && req->path != NULL &&
	    set_text(o, "instance", req->path, "(path not valid UTF-8)") != 0)
		goto out;
	if (req != NULL && req->request_id[0] != '\0' &&
	    json_object_set_new(o, "request_id", json_string(req->request_id)) != 0)
		goto out;
	r = qesd_response_json(resp, status, o);
	o = NULL;
	resp->problem = name;
out:
	json_decref(o);
	return r;
}

int
qesd_problemf(qesd_response *resp, const qesd_request *req, int status,
    const char *name, const char *title, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return qesd_problem(resp, req, status, name, title, detail);
}
