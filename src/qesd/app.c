/*
 * app.c - builds and tears down qesd's application services (app.h), and
 * the clock every validity decision reads.
 *
 * The testing clock exists so the integration tests can move time past a
 * rotation grace or a key's expiry without sleeping for a day. It is an
 * offset read from a file named by insecure_testing_clock_file, which the
 * configuration refuses unless QESD_INSECURE_TESTING=1 is set, and qesd
 * warns loudly at start when it is on. It only ever adds to wall time; it
 * does not touch the monotonic clock behind rate limits and cache TTLs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qes/err.h"
#include "errbuf.h"
#include "app.h"
#include "auth.h"
#include "bus.h"
#include "devices.h"
#include "diagnostics.h"
#include "hub.h"
#include "jobs.h"
#include "log.h"

#define CLOCK_REREAD_MS 100
#define CLOCK_FILE_MAX 64
/*
 * Group commit of read-only requests' audit records: one transaction (one
 * fsync) per batch. 1024-record batches keep the writer ahead of a 2-core
 * server's request rate (bench/auth_cost.sh saw 256-record batches fall
 * behind at ~13k requests/s); the backlog bound keeps memory in check and
 * turns a store that cannot keep up into 503s instead of lost records.
 */
#define AUDIT_QUEUE_FLUSH_RECORDS 1024
#define AUDIT_QUEUE_MAX_PENDING 65536

struct qesd_clock {
	char *file;			/* NULL: wall time only */
	pthread_mutex_t mu;
	int64_t offset_ms;		/* mu */
	int64_t next_read_mono_ms;	/* mu */
	int warned;			/* mu: a bad file was logged once */
};

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
qesd_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------- */
/* clock */

int
qesd_clock_new(const char *file, qesd_clock **out)
{
	qesd_clock *c;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return QES_ERR_ALLOC;
	if (file != NULL && (c->file = strdup(file)) == NULL) {
		free(c);
		return QES_ERR_ALLOC;
	}
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->file);
		free(c);
		return QES_ERR_INTERNAL;
	}
	*out = c;
	return 0;
}

void
qesd_clock_free(qesd_clock *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c->file);
	free(c);
}

/* Parse "[blanks][-]digits[blanks][\n]"; 0 or QES_ERR_FORMAT. */
static int
parse_offset(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	int64_t v = 0;
	int neg = 0, digits = 0;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		/* ten thousand years in ms is far below the bound */
		if (v > INT64_C(1) << 50)
			return QES_ERR_FORMAT;
		v = v * 10 + (s[i] - '0');
		digits++;
	}
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
		i++;
	if (i < len && s[i] == '\n')
		i++;
	if (digits == 0 || i != len)
		return QES_ERR_FORMAT;
	*out = neg ? -v : v;
	return 0;
}

/* Read the offset file; caller holds c->mu. */
static void
clock_reread(qesd_clock *c)
{
	char buf[CLOCK_FILE_MAX + 1];
	ssize_t n;
	size_t len = 0;
	int64_t v;
	int fd;

	fd = open(c->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			c->offset_ms = 0;
		return;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > CLOCK_FILE_MAX || parse_offset(buf, len, &v) != 0) {
		if (!c->warned)
			qesd_log(QESD_LOG_WARN,
			    "testing clock file is malformed: keeping the last offset",
			    QLS("file", c->file));
		c->warned = 1;
		return;
	}
	c->warned = 0;
	c->offset_ms = v;
}

int64_t
qesd_clock_now_ms(qesd_clock *c)
{
	int64_t now = wall_ms(), mono, off;

	if (c == NULL || c->file == NULL)
		return now;
	mono = qesd_mono_ms();
	pthread_mutex_lock(&c->mu);
	if (mono >= c->next_read_mono_ms) {
		clock_reread(c);
		c->next_read_mono_ms = mono + CLOCK_REREAD_MS;
	}
	off = c->offset_ms;
	pthread_mutex_unlock(&c->mu);
	return now + off;
}

int64_t
qesd_now_ms(const qesd_app *app)
{
	if (app == NULL)
		return wall_ms();
	return qesd_clock_now_ms(app->clock);
}

/* ------------------------------------------------------------------------- */
/* services */

/* The diagnostics service sends through the hub (diagnostics.h). */
static int
diag_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	return qesd_hub_send(((qesd_app *)ctx)->hub, tenant_id, device_id, frame,
	    len);
}

/* The jobs service reaches devices through the bus: here first, then the
 * replica that holds the device (bus.h). */
static int
bus_is_live(void *ctx, const char *tenant_id, const char *device_id,
    char session_id[QESD_ID_SIZE])
{
	return qesd_bus_is_live(((qesd_app *)ctx)->bus, tenant_id, device_id,
	    session_id);
}

static int
bus_send(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	return qesd_bus_send(((qesd_app *)ctx)->bus, tenant_id, device_id, frame,
	    len);
}

int
qesd_app_new(const qesd_config *cfg, qesd_metrics *metrics,
    qes_secret **pepper, qesd_app **out, char *err, size_t errlen)
{
	qesd_audit_queue_config qc;
	qesd_jobs_config jc;
	qesd_diag_config dc;
	qesd_failtrack_config fc;
	qesd_auth_svc_config ac;
	qesd_store_config stc;
	qesd_app *app = NULL;
	int r = QES_ERR_INVALID_ARG;

	if (out != NULL)
		*out = NULL;
	if (cfg == NULL || pepper == NULL || *pepper == NULL || out == NULL) {
		qesd_errf(err, errlen, "application: incomplete configuration");
		goto out;
	}
	r = QES_ERR_ALLOC;
	if ((app = calloc(1, sizeof(*app))) == NULL) {
		qesd_errf(err, errlen, "out of memory");
		goto out;
	}
	app->cfg = cfg;
	app->metrics = metrics;
	app->pepper = *pepper;
	*pepper = NULL;

	if ((r = qesd_clock_new(cfg->insecure_testing_clock_file,
	    &app->clock)) != 0) {
		qesd_errf(err, errlen, "cannot set up the clock: %s", qes_strerror(r));
		goto out;
	}
	if (cfg->insecure_testing_clock_file != NULL)
		qesd_log(QESD_LOG_WARN,
		    "INSECURE testing clock is ON: a file moves qesd's time; never do this in production",
		    QLS("file", cfg->insecure_testing_clock_file));

	memset(&stc, 0, sizeof(stc));
	/* one connection per worker, plus the two background writers */
	stc.pool_size = cfg->workers + 2;
	if ((r = qesd_store_open(cfg->store, &stc, &app->store, err,
	    errlen)) != 0)
		goto out;

	memset(&qc, 0, sizeof(qc));
	qc.flush_records = AUDIT_QUEUE_FLUSH_RECORDS;
	qc.max_pending = AUDIT_QUEUE_MAX_PENDING;
	if ((r = qesd_audit_queue_new(app->store, &qc, &app->audit_queue)) != 0) {
		qesd_errf(err, errlen, "cannot start the audit queue: %s", qes_strerror(r));
		goto out;
	}
	app->audit_queue_max = qc.max_pending;

	memset(&ac, 0, sizeof(ac));
	ac.cache_ttl_ms = cfg->key_cache_ttl_ms;
	if ((r = qesd_auth_svc_new(app->store, &ac, &app->auth)) != 0) {
		qesd_errf(err, errlen, "cannot start the key cache: %s", qes_strerror(r));
		goto out;
	}
	if ((r = qesd_ratelimit_new(cfg->rate_key_per_s, cfg->rate_key_burst, 0,
	    &app->rl_key)) != 0 ||
	    (r = qesd_ratelimit_new(cfg->rate_ip_per_s, cfg->rate_ip_burst, 0,
	    &app->rl_addr)) != 0) {
		qesd_errf(err, errlen, "cannot set up rate limits: %s", qes_strerror(r));
		goto out;
	}
	memset(&fc, 0, sizeof(fc));
	fc.window_ms = 60000;
	fc.free_failures = 3;
	fc.base_delay_ms = cfg->auth_fail_delay_ms;
	fc.max_delay_ms = 2000;
	fc.block_after = 20;
	fc.block_ms = 60000;
	if ((r = qesd_failtrack_new(&fc, &app->auth_fails)) != 0) {
		qesd_errf(err, errlen, "cannot set up failure tracking: %s", qes_strerror(r));
		goto out;
	}
	memset(&jc, 0, sizeof(jc));
	jc.result_retention_ms = (int64_t)cfg->job_result_retention_s * 1000;
	if ((r = qesd_jobs_new(app, &jc, &app->jobs)) != 0) {
		qesd_errf(err, errlen, "cannot set up signature jobs: %s", qes_strerror(r));
		goto out;
	}
	/* the agent endpoint's sessions; jobs reach devices through it */
	if ((r = qesd_hub_new(app, &app->hub, err, errlen)) != 0)
		goto out;
	memset(&dc, 0, sizeof(dc));
	dc.send = diag_send;
	dc.send_ctx = app;
	if ((r = qesd_diag_new(&dc, &app->diag)) != 0) {
		qesd_errf(err, errlen, "cannot set up device diagnostics: %s",
		    qes_strerror(r));
		goto out;
	}
	qesd_devices_attach_jobs(app);	/* the hub's events: jobs, diagnostics */
	/* last: its messages reach the hub, the jobs and the diagnostics */
	if ((r = qesd_bus_new(app, &app->bus, err, errlen)) != 0)
		goto out;
	if (qesd_bus_is_remote(app->bus)) {
		qesd_jobs_devices jd;

		/* the devices glue pointed the jobs at the hub; a device may
		 * be on another replica: the same functions through the bus */
		memset(&jd, 0, sizeof(jd));
		jd.is_live = bus_is_live;
		jd.send = bus_send;
		jd.ctx = app;
		qesd_jobs_set_devices(app->jobs, &jd);
	}
	*out = app;
	app = NULL;
	r = 0;
 out:
	qesd_app_free(app);
	return r;
}

int
qesd_app_flush(qesd_app *app)
{
	int r = 0, r2;

	if (app == NULL)
		return 0;
	if (app->auth != NULL && (r2 = qesd_auth_flush_uses(app->auth)) != 0) {
		qesd_log(QESD_LOG_WARN, "last_used_at times could not be written",
		    QLS("error", qes_strerror(r2)));
		r = r2;
	}
	if (app->audit_queue != NULL &&
	    (r2 = qesd_audit_queue_flush(app->audit_queue)) != 0) {
		qesd_audit_queue_stats st;

		qesd_audit_queue_get_stats(app->audit_queue, &st);
		qesd_log(QESD_LOG_ERROR,
		    "audit records could not be written: the store refuses writes",
		    QLS("error", qes_strerror(r2)), QLI("pending", st.pending));
		if (r == 0)
			r = r2;
	}
	return r;
}

void
qesd_app_free(qesd_app *app)
{
	if (app == NULL)
		return;
	qesd_bus_stop(app->bus);	/* no message reaches the services now */
	qesd_jobs_free(app->jobs);	/* its sweeper writes to the store */
	qesd_hub_free(app->hub);	/* after the jobs: their sweeper sends */
	qesd_bus_free(app->bus);	/* after the jobs and the hub: they call it */
	qesd_diag_free(app->diag);	/* after the hub: its events reach it */
	(void)qesd_app_flush(app);
	qesd_auth_svc_free(app->auth);
	qesd_audit_queue_free(app->audit_queue);
	qesd_store_free(app->store);
	qesd_ratelimit_free(app->rl_key);
	qesd_ratelimit_free(app->rl_addr);
	qesd_failtrack_free(app->auth_fails);
	qesd_clock_free(app->clock);
	qes_secret_free(app->pepper);
	free(app);
}

int
qesd_app_ready(void *appv)
{
	qesd_app *app = appv;

	int r;

	if (app == NULL || app->store == NULL)
		return QES_ERR_UNAVAILABLE;
	if ((r = qesd_store_ping(app->store)) != 0)
		return r;
	/* a replica cut off from the bus cannot reach most devices */
	return qesd_bus_ready(app->bus);
}
