/*
 * errbuf.c - the message a start-up step leaves in its caller's error
 * buffer: config.c, app.c, server.c and bus_nats.c each wrote the same
 * formatter before; one serves them all.
 */
#include <stdarg.h>
#include <stdio.h>

#include <qes/err.h>

#include "errbuf.h"

int
qesd_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return QES_ERR_INVALID_ARG;
}
