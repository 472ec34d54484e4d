/*
 * rfc3339.h - RFC 3339 timestamps at the API edge of qesd.
 *
 * Times inside qesd are int64 milliseconds since 1970-01-01 UTC (store.h);
 * they cross the API and the admin command line as RFC 3339 text. One strict
 * parser and one formatter, so every route and command reads and writes the
 * same spelling. No locale, no time zone database, no timegm(): the date
 * arithmetic is done here, so the result never depends on TZ.
 */
#ifndef QESD_RFC3339_H
#define QESD_RFC3339_H

#include <stdint.h>

#define QESD_TIME_TEXT_SIZE 32	/* "2024-01-02T03:04:05.678Z" + NUL, rounded */

/* Parse flags */
#define QESD_TIME_DATE_OK	(1u << 0)	/* also accept "YYYY-MM-DD" (00:00:00Z) */

/*
 * Parse "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" ('t' and 'z' in
 * lower case too; the fraction has 1..9 digits and is cut to milliseconds).
 * Years 1970..9999, real calendar days, hours 0..23, minutes 0..59,
 * seconds 0..60 (a leap second counts as the next second). Nothing may
 * follow. 0 and *out_ms, or QES_ERR_FORMAT (also for a time before 1970).
 */
int qesd_time_parse(const char *s, unsigned flags, int64_t *out_ms);

/* Format ms (>= 0) as "YYYY-MM-DDTHH:MM:SS.mmmZ". QES_ERR_INVALID_ARG for
 * negative times or years past 9999. */
int qesd_time_format(int64_t ms, char out[QESD_TIME_TEXT_SIZE]);

#endif
