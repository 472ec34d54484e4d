/*
 * metrics.h - Prometheus counters and histograms of qesd.
 *
 * A qesd_metrics handle collects, from any thread, what GET /metrics renders
 * in the Prometheus text exposition format (version 0.0.4):
 *   qesd_http_requests_total{route,method,status}        counter
 *   qesd_http_request_duration_seconds{route}            histogram, 1 ms .. 10 s
 *   qesd_auth_failures_total, qesd_rate_limited_total   counters
 *   qesd_inflight_requests                              gauge
 *   qesd_build_info{version}                            always 1
 * Label values are route names from the route tables, method names and
 * status codes: bounded sets, never request data. The series table is fixed
 * in size; series past it are counted in qesd_metrics_dropped_series_total.
 */
#ifndef QESD_METRICS_H
#define QESD_METRICS_H

#include <stdint.h>

#include "qes/buf.h"

typedef struct qesd_metrics qesd_metrics;

/* NULL on allocation failure. Free with qesd_metrics_free(). */
qesd_metrics *qesd_metrics_new(void);
void qesd_metrics_free(qesd_metrics *m);

/* One finished request. route and method must be static strings. */
void qesd_metrics_observe_request(qesd_metrics *m, const char *route,
    const char *method, int status, double duration_s);
void qesd_metrics_auth_failure(qesd_metrics *m);
void qesd_metrics_rate_limited(qesd_metrics *m);
/* delta +1 when a request enters a worker or waits deferred, -1 when done. */
void qesd_metrics_inflight_add(qesd_metrics *m, int delta);

/* Append the exposition text to out. */
int qesd_metrics_render(qesd_metrics *m, qes_buf *out);

#endif
