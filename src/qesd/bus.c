/*
 * bus.c - the bus's public operations (bus.h): the local hub first, the
 * implementation (bus_local.c, bus_nats.c) for a device not live here.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "bus.h"
#include "bus_priv.h"
#include "hub.h"
#include "log.h"

int
qesd_bus_new(qesd_app *app, qesd_bus **out, char *err, size_t errlen)
{
	const char *spec;

	if (out != NULL)
		*out = NULL;
	if (app == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	spec = app->cfg != NULL ? app->cfg->bus : NULL;
	if (spec == NULL || strcmp(spec, "local") == 0)
		return qesd_bus_local_new(app, out);
	if (strncmp(spec, "nats:", 5) == 0 && spec[5] != '\0')
		return qesd_bus_nats_new(app, spec + 5, out, err, errlen);
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "bus must be local or nats:URL");
	return QES_ERR_INVALID_ARG;
}

void
qesd_bus_stop(qesd_bus *bus)
{
	if (bus != NULL && bus->ops->stop != NULL)
		bus->ops->stop(bus);
}

void
qesd_bus_free(qesd_bus *bus)
{
	if (bus == NULL)
		return;
	qesd_bus_stop(bus);
	bus->ops->free(bus);
}

const char *
qesd_bus_kind(const qesd_bus *bus)
{
	return bus != NULL ? bus->ops->kind : "local";
}

int
qesd_bus_is_remote(const qesd_bus *bus)
{
	return bus != NULL && bus->ops->remote;
}

int
qesd_bus_ready(qesd_bus *bus)
{
	if (bus == NULL || bus->ops->ready == NULL)
		return 0;
	return bus->ops->ready(bus);
}

void
qesd_bus_device_open(qesd_bus *bus, const char *tenant_id,
    const char *device_id, const char *session_id, int64_t connected_ms)
{
	if (bus != NULL && bus->ops->device_open != NULL && tenant_id != NULL &&
	    device_id != NULL && session_id != NULL)
		bus->ops->device_open(bus, tenant_id, device_id, session_id,
		    connected_ms);
}

void
qesd_bus_device_closed(qesd_bus *bus, const char *tenant_id,
    const char *device_id, const char *session_id)
{
	if (bus != NULL && bus->ops->device_closed != NULL && tenant_id != NULL &&
	    device_id != NULL && session_id != NULL)
		bus->ops->device_closed(bus, tenant_id, device_id, session_id);
}

int
qesd_bus_send(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const uint8_t *frame, size_t len)
{
	int r;

	if (bus == NULL)
		return QES_ERR_INVALID_ARG;
	r = qesd_hub_send(bus->app->hub, tenant_id, device_id, frame, len);
	if (r != QES_ERR_NOT_FOUND || bus->ops->send == NULL)
		return r;
	return bus->ops->send(bus, tenant_id, device_id, frame, len);
}

int
qesd_bus_is_live(qesd_bus *bus, const char *tenant_id, const char *device_id,
    char session_id_out[QESD_ID_SIZE])
{
	if (bus == NULL)
		return 0;
	if (qesd_hub_is_live(bus->app->hub, tenant_id, device_id, session_id_out))
		return 1;
	if (bus->ops->is_live == NULL)
		return 0;
	return bus->ops->is_live(bus, tenant_id, device_id, session_id_out);
}

int
qesd_bus_close_device(qesd_bus *bus, const char *tenant_id,
    const char *device_id, int close_code, const char *reason)
{
	int r;

	if (bus == NULL)
		return QES_ERR_INVALID_ARG;
	/* always here first: a revocation is also remembered against an
	 * authentication still in flight on this replica (hub.c) */
	r = qesd_hub_close_device(bus->app->hub, tenant_id, device_id,
	    close_code, reason);
	if (r != QES_ERR_NOT_FOUND || bus->ops->close_device == NULL)
		return r;
	return bus->ops->close_device(bus, tenant_id, device_id, close_code,
	    reason);
}

void
qesd_bus_job_changed(qesd_bus *bus, const char *tenant_id, const char *job_id)
{
	if (bus != NULL && bus->ops->job_changed != NULL && tenant_id != NULL &&
	    job_id != NULL)
		bus->ops->job_changed(bus, tenant_id, job_id);
}

int
qesd_bus_diagnose(qesd_bus *bus, const char *tenant_id, const char *device_id,
    const char *ref)
{
	if (bus == NULL || bus->ops->diagnose == NULL)
		return QES_ERR_NOT_FOUND;
	return bus->ops->diagnose(bus, tenant_id, device_id, ref);
}
