/*
 * devices_jobs.c - the glue between the hub (hub.h) and the services that
 * talk to devices - signature jobs (jobs.h) and diagnostics
 * (diagnostics.h) - so that none includes another: jobs reach live
 * sessions and send through the function table qesd_jobs_devices (they look
 * credentials up in the devices store themselves); both hear about their
 * answers (sign results, diagnose results, errors) and closed sessions
 * through the hub's event callbacks, which go to each in turn.
 * qesd_app_new() calls qesd_devices_attach_jobs() once both exist; tests
 * may replace either side afterwards with fakes.
 */
#include <string.h>

#include "app.h"
#include "devices.h"
#include "diagnostics.h"
#include "hub.h"
#include "jobs.h"

static int
is_live(void *ctx, const char *tenant_id, const char *device_id,
    char session_id[QESD_ID_SIZE])
{
	return qesd_hub_is_live(((qesd_app *)ctx)->hub, tenant_id, device_id,
	    session_id);
}

static int
send_frame(void *ctx, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	return qesd_hub_send(((qesd_app *)ctx)->hub, tenant_id, device_id, frame,
	    len);
}

static void
on_message(void *ctx, const char *tenant_id, const char *device_id,
    const char *session_id, const qes_proto_msg *msg)
{
	qesd_app *app = ctx;

	qesd_jobs_on_message(app->jobs, tenant_id, device_id, session_id, msg);
	if (app->diag != NULL)
		qesd_diag_on_message(app->diag, tenant_id, device_id, session_id,
		    msg);
}

static void
on_session_closed(void *ctx, const char *tenant_id, const char *device_id,
    const char *session_id, const char *reason)
{
	qesd_app *app = ctx;

	qesd_jobs_on_session_closed(app->jobs, tenant_id, device_id, session_id,
	    reason);
	if (app->diag != NULL)
		qesd_diag_on_session_closed(app->diag, tenant_id, device_id,
		    session_id, reason);
}

void
qesd_devices_attach_jobs(qesd_app *app)
{
	qesd_jobs_devices d;
	qesd_hub_events ev;

	if (app == NULL || app->jobs == NULL || app->hub == NULL)
		return;
	memset(&d, 0, sizeof(d));
	d.is_live = is_live;	/* credentials: the jobs' default store lookup */
	d.send = send_frame;
	d.ctx = app;
	qesd_jobs_set_devices(app->jobs, &d);
	memset(&ev, 0, sizeof(ev));
	ev.message = on_message;
	ev.session_closed = on_session_closed;
	ev.app = app;
	qesd_hub_set_events(app->hub, &ev);
}
