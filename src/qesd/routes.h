/*
 * routes.h - the one list of qesd's API route tables.
 *
 * Every source file that serves routes exports a qesd_route_table; this
 * header declares them and routes.c lists them in qesd_route_tables[],
 * which `qesd serve` hands to the server and `qesd routes` prints (the
 * OpenAPI consistency test compares that output with docs/api/openapi.yaml).
 *
 * Adding routes: export `const qesd_route_table qesd_<name>_routes` from
 * your file, declare it below, and add `&qesd_<name>_routes,` to the array
 * in routes.c. /metrics (which may live on its own port) and the test-only
 * routes are not in the array: main.c adds them by configuration.
 */
#ifndef QESD_ROUTES_H
#define QESD_ROUTES_H

#include <stdio.h>

#include "http.h"

/* h_keys.c: POST/GET /v1/api-keys, POST /v1/api-keys/{id}/rotate,
 * DELETE /v1/api-keys/{id} */
extern const qesd_route_table qesd_key_routes;

/* h_audit.c: GET /v1/audit, GET /v1/audit/verify */
extern const qesd_route_table qesd_audit_routes;

/* h_signatures.c: POST /v1/signatures, GET /v1/signatures/{id},
 * POST /v1/signatures/{id}/cancel */
extern const qesd_route_table qesd_signature_routes;
/* h_devices.c: POST /v1/enrollments, POST /v1/devices/enroll (public),
 * GET /v1/devices[/{id}[/sessions]], DELETE /v1/devices/{id},
 * POST /v1/devices/{id}/diagnostics (h_diagnostics.c) */
extern const qesd_route_table qesd_device_routes;

/* h_credentials.c: GET /v1/credentials */
extern const qesd_route_table qesd_credential_routes;

/* NULL-terminated: health, keys, ... (not /metrics, not testing) */
extern const qesd_route_table *const qesd_route_tables[];

/*
 * Print every API route and /metrics: method, pattern, scopes, name. Text
 * is one route per line ("GET /v1/api-keys admin keys.list", scopes "-"
 * when none); json is one array of {"method","pattern","scopes":[...],
 * "name"} objects. 0 or QES_ERR_IO / QES_ERR_ALLOC.
 */
int qesd_routes_print(FILE *out, int json);

#endif
