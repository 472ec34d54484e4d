/*
 * bus_priv.h - the inside of the bus (bus.h): the operations an
 * implementation provides for devices that are not live here. bus.c tries
 * the local hub first and calls these only for the rest.
 */
#ifndef QESD_BUS_PRIV_H
#define QESD_BUS_PRIV_H

#include "bus.h"

struct qesd_bus_ops {
	const char *kind;
	int remote;
	int (*ready)(qesd_bus *bus);
	void (*device_open)(qesd_bus *bus, const char *tenant_id,
	    const char *device_id, const char *session_id,
	    int64_t connected_ms);
	void (*device_closed)(qesd_bus *bus, const char *tenant_id,
	    const char *device_id, const char *session_id);
	int (*send)(qesd_bus *bus, const char *tenant_id, const char *device_id,
	    const uint8_t *frame, size_t len);
	int (*is_live)(qesd_bus *bus, const char *tenant_id,
	    const char *device_id, char session_id_out[QESD_ID_SIZE]);
	int (*close_device)(qesd_bus *bus, const char *tenant_id,
	    const char *device_id, int close_code, const char *reason);
	void (*job_changed)(qesd_bus *bus, const char *tenant_id,
	    const char *job_id);
	int (*diagnose)(qesd_bus *bus, const char *tenant_id,
	    const char *device_id, const char *ref);
	void (*stop)(qesd_bus *bus);
	void (*free)(qesd_bus *bus);
};

struct qesd_bus {
	const struct qesd_bus_ops *ops;
	qesd_app *app;			/* borrowed: hub, jobs, diag, cfg */
};

/* The implementations' constructors (bus.c chooses). */
int qesd_bus_local_new(qesd_app *app, qesd_bus **out);
int qesd_bus_nats_new(qesd_app *app, const char *urls, qesd_bus **out,
    char *err, size_t errlen);

#endif
