/*
 * rfc3339.c - strict RFC 3339 parsing and formatting (see rfc3339.h).
 *
 * Calendar arithmetic follows Howard Hinnant's days_from_civil /
 * civil_from_days (proleptic Gregorian), valid far beyond the years
 * accepted here.
 */
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "rfc3339.h"

#define MS_PER_DAY INT64_C(86400000)
/* 9999-12-31T23:59:59.999Z */
#define MAX_MS INT64_C(253402300799999)

static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Exactly n decimal digits at *p; advances *p. */
static int
digits(const char **p, int n, unsigned *out)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return QES_ERR_FORMAT;
		v = v * 10 + (unsigned)((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int
qesd_time_parse(const char *s, unsigned flags, int64_t *out_ms)
{
	unsigned year, mon, day, hh = 0, mi = 0, ss = 0, ms = 0, oh, om;
	int64_t t, offset_ms = 0;
	const char *p = s;
	int n;

	if (s == NULL || out_ms == NULL)
		return QES_ERR_INVALID_ARG;
	if (digits(&p, 4, &year) != 0 || *p++ != '-' ||
	    digits(&p, 2, &mon) != 0 || *p++ != '-' ||
	    digits(&p, 2, &day) != 0)
		return QES_ERR_FORMAT;
	if (year < 1970 || mon < 1 || mon > 12 || day < 1 ||
	    day > days_in_month(year, mon))
		return QES_ERR_FORMAT;
	if (*p == '\0') {
		if (!(flags & QESD_TIME_DATE_OK))
			return QES_ERR_FORMAT;
		goto done;
	}
	if (*p != 'T' && *p != 't')
		return QES_ERR_FORMAT;
	p++;
	if (digits(&p, 2, &hh) != 0 || *p++ != ':' ||
	    digits(&p, 2, &mi) != 0 || *p++ != ':' ||
	    digits(&p, 2, &ss) != 0)
		return QES_ERR_FORMAT;
	if (hh > 23 || mi > 59 || ss > 60)
		return QES_ERR_FORMAT;
	if (*p == '.') {
		p++;
		for (n = 0; p[n] >= '0' && p[n] <= '9'; n++)
			if (n < 3)
				ms = ms * 10 + (unsigned)(p[n] - '0');
		if (n == 0 || n > 9)
			return QES_ERR_FORMAT;
		for (; n < 3; n++)
			ms *= 10;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int neg = *p == '-';

		p++;
		if (digits(&p, 2, &oh) != 0 || *p++ != ':' ||
		    digits(&p, 2, &om) != 0 || oh > 23 || om > 59)
			return QES_ERR_FORMAT;
		offset_ms = ((int64_t)oh * 60 + om) * 60000;
		if (neg)
			offset_ms = -offset_ms;
	} else
		return QES_ERR_FORMAT;
	if (*p != '\0')
		return QES_ERR_FORMAT;
 done:
	t = days_from_civil(year, mon, day) * MS_PER_DAY +
	    ((int64_t)hh * 3600 + (int64_t)mi * 60 + ss) * 1000 + ms -
	    offset_ms;
	if (t < 0 || t > MAX_MS)
		return QES_ERR_FORMAT;
	*out_ms = t;
	return 0;
}

int
qesd_time_format(int64_t ms, char out[QESD_TIME_TEXT_SIZE])
{
	int64_t days, rem, y;
	unsigned m, d;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	out[0] = '\0';
	if (ms < 0 || ms > MAX_MS)
		return QES_ERR_INVALID_ARG;
	days = ms / MS_PER_DAY;
	rem = ms % MS_PER_DAY;
	civil_from_days(days, &y, &m, &d);
	/* the modulos tell the compiler the widths (the values are in range) */
	snprintf(out, QESD_TIME_TEXT_SIZE,
	    "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(y % 10000),
	    m % 100, d % 100, (unsigned)(rem / 3600000 % 100),
	    (unsigned)(rem / 60000 % 60), (unsigned)(rem / 1000 % 60),
	    (unsigned)(rem % 1000));
	return 0;
}
