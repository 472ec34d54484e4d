/*
 * routes.c - the list of qesd's API route tables, and `qesd routes`
 * (see routes.h).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "qes/err.h"
#include "health.h"
#include "routes.h"

const qesd_route_table *const qesd_route_tables[] = {
	&qesd_health_routes,
	&qesd_key_routes,
	&qesd_audit_routes,
	&qesd_signature_routes,
	&qesd_credential_routes,
	&qesd_device_routes,
	NULL,
};

static json_t *
scopes_json(uint32_t scopes)
{
	json_t *a = json_array();
	uint32_t bit;

	for (bit = 1; a != NULL && bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1)
		if ((scopes & bit) && qesd_scope_name(bit) != NULL &&
		    json_array_append_new(a, json_string(qesd_scope_name(bit))) != 0) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

static void
scopes_text(uint32_t scopes, char *buf, size_t len)
{
	size_t off = 0;
	uint32_t bit;
	int n;

	buf[0] = '\0';
	for (bit = 1; bit != 0 && bit <= QESD_SCOPE_ALL; bit <<= 1) {
		if (!(scopes & bit) || qesd_scope_name(bit) == NULL)
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off > 0 ? "," : "",
		    qesd_scope_name(bit));
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (off == 0)
		snprintf(buf, len, "-");
}

int
qesd_routes_print(FILE *out, int json)
{
	const qesd_route_table *all[16];
	json_t *arr = NULL, *o;
	char scopes[96];
	size_t nt = 0, t, i;
	int r = QES_ERR_ALLOC;

	for (t = 0; qesd_route_tables[t] != NULL && nt < 15; t++)
		all[nt++] = qesd_route_tables[t];
	all[nt++] = &qesd_metrics_routes;
	if (json && (arr = json_array()) == NULL)
		goto out;
	for (t = 0; t < nt; t++)
		for (i = 0; i < all[t]->n; i++) {
			const qesd_route *rt = &all[t]->routes[i];

			if (!json) {
				scopes_text(rt->scopes, scopes, sizeof(scopes));
				if (fprintf(out, "%-7s %-34s %-12s %s\n",
				    qesd_method_name(rt->method), rt->pattern, scopes,
				    rt->name) < 0) {
					r = QES_ERR_IO;
					goto out;
				}
				continue;
			}
			o = json_pack("{s:s, s:s, s:o, s:s}",
			    "method", qesd_method_name(rt->method),
			    "pattern", rt->pattern,
			    "scopes", scopes_json(rt->scopes), "name", rt->name);
			if (o == NULL || json_array_append_new(arr, o) != 0)
				goto out;
		}
	if (json) {
		if (json_dumpf(arr, out, JSON_INDENT(2)) != 0 || fputc('\n', out) == EOF) {
			r = QES_ERR_IO;
			goto out;
		}
	}
	r = fflush(out) == 0 ? 0 : QES_ERR_IO;
 out:
	json_decref(arr);
	return r;
}
