/*
 * health.h - operational routes of qesd: liveness, readiness, metrics, and
 * the test-only routes that `testing_routes = on` enables.
 */
#ifndef QESD_HEALTH_H
#define QESD_HEALTH_H

#include "http.h"

/* GET /healthz, GET /readyz */
extern const qesd_route_table qesd_health_routes;
/* GET /metrics (on the API port, or alone on metrics_listen) */
extern const qesd_route_table qesd_metrics_routes;
/*
 * Only with testing_routes = on, which the configuration refuses unless
 * QESD_ALLOW_TESTING=1: GET /testing/slow?ms=N (holds a worker N ms),
 * GET /testing/defer?ms=N (defers, resumes at the deadline or drain),
 * POST /testing/echo (JSON body through jsonv, echoed back).
 */
extern const qesd_route_table qesd_testing_routes;

#endif
