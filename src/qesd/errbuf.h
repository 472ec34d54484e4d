/*
 * errbuf.h - the message a start-up step leaves in its caller's error
 * buffer (errbuf.c).
 */
#ifndef QESD_ERRBUF_H
#define QESD_ERRBUF_H

#include <stddef.h>

/*
 * Format a message into err (errlen bytes, cut to fit; nothing when err is
 * NULL or errlen 0) for the caller to report, and return
 * QES_ERR_INVALID_ARG, so that a configuration check can end with
 * `return qesd_errf(err, errlen, ...)`. Shared by the steps that read the
 * configuration and start the server, bus and application.
 */
int qesd_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
