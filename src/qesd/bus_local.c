/*
 * bus_local.c - the bus of a single qesd process (bus = local, the
 * default): every device that is live anywhere is live in this process's
 * hub, so a device the hub does not hold is offline and a job change has
 * no other replica to tell. No thread, no socket; bus.c's local-first
 * dispatch is all there is.
 */
#include <stdlib.h>

#include "qes/err.h"
#include "bus_priv.h"

static void
local_free(qesd_bus *bus)
{
	free(bus);
}

static const struct qesd_bus_ops local_ops = {
	.kind = "local",
	.remote = 0,
	.free = local_free,
	/* everything else NULL: not live here means offline */
};

int
qesd_bus_local_new(qesd_app *app, qesd_bus **out)
{
	qesd_bus *bus;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((bus = calloc(1, sizeof(*bus))) == NULL)
		return QES_ERR_ALLOC;
	bus->ops = &local_ops;
	bus->app = app;
	*out = bus;
	return 0;
}
