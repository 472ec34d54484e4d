/*
 * metrics.c - Prometheus exposition for qesd (see metrics.h).
 *
 * Request counters live in a small open-addressing table keyed by
 * (route, method, status); histograms in one keyed by route. Both are
 * guarded by one mutex: an observation is a handful of additions, far
 * cheaper than the request it measures, so contention does not matter at
 * our rates. Scalar counters are plain atomics.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "metrics.h"

#define MAX_SERIES 512		/* (route, method, status) triples */
#define MAX_ROUTES 128		/* histograms */

static const double bucket_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
};
#define N_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct series {
	const char *route;	/* NULL: free slot */
	const char *method;
	int status;
	uint64_t count;
};

struct histogram {
	const char *route;
	uint64_t buckets[N_BUCKETS];	/* non-cumulative; summed on render */
	uint64_t count;
	double sum;
};

struct qesd_metrics {
	pthread_mutex_t mu;
	struct series series[MAX_SERIES];
	struct histogram hist[MAX_ROUTES];
	atomic_uint_fast64_t dropped_series;
	atomic_uint_fast64_t auth_failures;
	atomic_uint_fast64_t rate_limited;
	atomic_int_fast64_t inflight;
};

qesd_metrics *
qesd_metrics_new(void)
{
	qesd_metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	if (pthread_mutex_init(&m->mu, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

void
qesd_metrics_free(qesd_metrics *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static uint32_t
hash_str(uint32_t h, const char *s)
{
	while (*s != '\0')
		h = (h ^ (uint8_t)*s++) * 16777619u;	/* FNV-1a */
	return h;
}

void
qesd_metrics_observe_request(qesd_metrics *m, const char *route,
    const char *method, int status, double duration_s)
{
	uint32_t h;
	size_t i, slot;
	struct histogram *hg = NULL;

	if (m == NULL || route == NULL || method == NULL)
		return;
	if (duration_s < 0)
		duration_s = 0;
	h = hash_str(hash_str(2166136261u, route), method) ^ (uint32_t)status;

	pthread_mutex_lock(&m->mu);
	for (i = 0; i < MAX_SERIES; i++) {
		struct series *s;

		slot = (h + i) % MAX_SERIES;
		s = &m->series[slot];
		if (s->route == NULL) {
			s->route = route;
			s->method = method;
			s->status = status;
		} else if (s->status != status || strcmp(s->route, route) != 0 ||
		    strcmp(s->method, method) != 0)
			continue;
		s->count++;
		break;
	}
	if (i == MAX_SERIES)
		atomic_fetch_add(&m->dropped_series, 1);

	h = hash_str(2166136261u, route);
	for (i = 0; i < MAX_ROUTES; i++) {
		slot = (h + i) % MAX_ROUTES;
		if (m->hist[slot].route == NULL)
			m->hist[slot].route = route;
		else if (strcmp(m->hist[slot].route, route) != 0)
			continue;
		hg = &m->hist[slot];
		break;
	}
	if (hg != NULL) {
		for (i = 0; i < N_BUCKETS; i++)
			if (duration_s <= bucket_bounds[i])
				break;
		if (i < N_BUCKETS)
			hg->buckets[i]++;
		hg->count++;
		hg->sum += duration_s;
	} else
		atomic_fetch_add(&m->dropped_series, 1);
	pthread_mutex_unlock(&m->mu);
}

void
qesd_metrics_auth_failure(qesd_metrics *m)
{
	if (m != NULL)
		atomic_fetch_add(&m->auth_failures, 1);
}

void
qesd_metrics_rate_limited(qesd_metrics *m)
{
	if (m != NULL)
		atomic_fetch_add(&m->rate_limited, 1);
}

void
qesd_metrics_inflight_add(qesd_metrics *m, int delta)
{
	if (m != NULL)
		atomic_fetch_add(&m->inflight, delta);
}

/*
 * Rendering copies the tables under the lock (a few tens of KiB) and
 * formats outside it, so a scrape never holds up request completion.
 */
int
qesd_metrics_render(qesd_metrics *m, qes_buf *out)
{
	struct series *series = NULL;
	struct histogram *hist = NULL;
	uint64_t cum;
	size_t i, j;
	int r = QES_ERR_ALLOC;

	if (m == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	series = malloc(sizeof(m->series));
	hist = malloc(sizeof(m->hist));
	if (series == NULL || hist == NULL)
		goto out;
	pthread_mutex_lock(&m->mu);
	memcpy(series, m->series, sizeof(m->series));
	memcpy(hist, m->hist, sizeof(m->hist));
	pthread_mutex_unlock(&m->mu);

	r = qes_buf_put_str(out,
	    "# HELP qesd_build_info Build information.\n"
	    "# TYPE qesd_build_info gauge\n"
	    "qesd_build_info{version=\"" QES_VERSION "\"} 1\n"
	    "# HELP qesd_http_requests_total HTTP requests by route, method and status.\n"
	    "# TYPE qesd_http_requests_total counter\n");
	for (i = 0; r == 0 && i < MAX_SERIES; i++) {
		if (series[i].route == NULL)
			continue;
		r = qes_buf_putf(out,
		    "qesd_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
		    series[i].route, series[i].method, series[i].status,
		    (unsigned long long)series[i].count);
	}
	if (r == 0)
		r = qes_buf_put_str(out,
		    "# HELP qesd_http_request_duration_seconds HTTP request latency by route.\n"
		    "# TYPE qesd_http_request_duration_seconds histogram\n");
	for (i = 0; r == 0 && i < MAX_ROUTES; i++) {
		if (hist[i].route == NULL)
			continue;
		cum = 0;
		for (j = 0; r == 0 && j < N_BUCKETS; j++) {
			cum += hist[i].buckets[j];
			r = qes_buf_putf(out,
			    "qesd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
			    hist[i].route, bucket_bounds[j], (unsigned long long)cum);
		}
		if (r == 0)
			r = qes_buf_putf(out,
			    "qesd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
			    "qesd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
			    "qesd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			    hist[i].route, (unsigned long long)hist[i].count,
			    hist[i].route, hist[i].sum,
			    hist[i].route, (unsigned long long)hist[i].count);
	}
	if (r == 0)
		r = qes_buf_putf(out,
		    "# HELP qesd_auth_failures_total Failed API authentications.\n"
		    "# TYPE qesd_auth_failures_total counter\n"
		    "qesd_auth_failures_total %llu\n"
		    "# HELP qesd_rate_limited_total Requests refused by a rate limit.\n"
		    "# TYPE qesd_rate_limited_total counter\n"
		    "qesd_rate_limited_total %llu\n"
		    "# HELP qesd_inflight_requests Requests being handled or waiting deferred.\n"
		    "# TYPE qesd_inflight_requests gauge\n"
		    "qesd_inflight_requests %lld\n"
		    "# HELP qesd_metrics_dropped_series_total Observations without a free series slot.\n"
		    "# TYPE qesd_metrics_dropped_series_total counter\n"
		    "qesd_metrics_dropped_series_total %llu\n",
		    (unsigned long long)atomic_load(&m->auth_failures),
		    (unsigned long long)atomic_load(&m->rate_limited),
		    (long long)atomic_load(&m->inflight),
		    (unsigned long long)atomic_load(&m->dropped_series));
out:
	free(series);
	free(hist);
	return r;
}
