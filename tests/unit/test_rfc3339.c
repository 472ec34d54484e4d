/*
 * test_rfc3339.c - qesd's RFC 3339 parser and formatter (src/qesd/rfc3339.c),
 * which every API time (audit filters, key expiry) and `qesd admin purge
 * --before` go through. rfc3339.c is compiled in directly: it needs nothing
 * but the error codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/qesd/rfc3339.c"

static int64_t
ms(const char *s, unsigned flags)
{
	int64_t v = -1;

	assert_int_equal(qesd_time_parse(s, flags, &v), 0);
	return v;
}

static void
refused(const char *s, unsigned flags)
{
	int64_t v = 12345;

	if (qesd_time_parse(s, flags, &v) != QES_ERR_FORMAT)
		fail_msg("accepted \"%s\"", s);
	assert_int_equal(v, 12345);	/* untouched on failure */
}

static void
test_valid(void **state)
{
	(void)state;
	assert_int_equal(ms("1970-01-01T00:00:00Z", 0), 0);
	assert_int_equal(ms("2024-01-02T03:04:05Z", 0), INT64_C(1704164645000));
	assert_int_equal(ms("2024-01-02t03:04:05z", 0), INT64_C(1704164645000));
	assert_int_equal(ms("2024-01-02T03:04:05.6Z", 0), INT64_C(1704164645600));
	assert_int_equal(ms("2024-01-02T03:04:05.678Z", 0), INT64_C(1704164645678));
	assert_int_equal(ms("2024-01-02T03:04:05.678999999Z", 0),
	    INT64_C(1704164645678));			/* cut, not rounded */
	assert_int_equal(ms("2024-01-02T04:04:05+01:00", 0), INT64_C(1704164645000));
	assert_int_equal(ms("2024-01-01T22:34:05-04:30", 0), INT64_C(1704164645000));
	assert_int_equal(ms("2024-02-29T00:00:00Z", 0), INT64_C(1709164800000));
	assert_int_equal(ms("2000-02-29T00:00:00Z", 0), INT64_C(951782400000));
	assert_int_equal(ms("2016-12-31T23:59:60Z", 0), INT64_C(1483228800000));
	assert_int_equal(ms("9999-12-31T23:59:59.999Z", 0), INT64_C(253402300799999));
	assert_int_equal(ms("2024-03-01", QESD_TIME_DATE_OK), INT64_C(1709251200000));
}

static void
test_invalid(void **state)
{
	static const char *const bad[] = {
		"", "2024", "2024-01-02", "2024-01-02T03:04Z", "2024-01-02T03:04:05",
		"2024-01-02 03:04:05Z", "2024-01-02T03:04:05ZZ", "2024-01-02T03:04:05Z ",
		" 2024-01-02T03:04:05Z", "2024-1-02T03:04:05Z", "+2024-01-02T03:04:05Z",
		"2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-32T00:00:00Z",
		"2024-04-31T00:00:00Z", "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
		"2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:61Z",
		"2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z",
		"2024-01-01T00:00:00+0100", "2024-01-01T00:00:00+01", "2024-01-01T00:00:00+24:00",
		"2024-01-01T00:00:00+01:60", "1969-12-31T23:59:59Z",
		"1970-01-01T00:00:00+00:01",		/* before 1970 once the offset applies */
		"10000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
		"２０２４-01-01T00:00:00Z", "2024-01-01T00:00:00\xef\xbc\xba",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i], 0);
	refused("2024-02-30", QESD_TIME_DATE_OK);
	refused("2024-01-01T", QESD_TIME_DATE_OK);
	assert_int_equal(qesd_time_parse(NULL, 0, NULL), QES_ERR_INVALID_ARG);
}

static void
test_format(void **state)
{
	char out[QESD_TIME_TEXT_SIZE];
	int64_t v;

	(void)state;
	assert_int_equal(qesd_time_format(0, out), 0);
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
	assert_int_equal(qesd_time_format(INT64_C(1704164645678), out), 0);
	assert_string_equal(out, "2024-01-02T03:04:05.678Z");
	assert_int_equal(qesd_time_format(INT64_C(1709164800000), out), 0);
	assert_string_equal(out, "2024-02-29T00:00:00.000Z");
	assert_int_equal(qesd_time_format(INT64_C(253402300799999), out), 0);
	assert_string_equal(out, "9999-12-31T23:59:59.999Z");
	assert_int_equal(qesd_time_format(-1, out), QES_ERR_INVALID_ARG);
	assert_string_equal(out, "");
	assert_int_equal(qesd_time_format(INT64_C(253402300800000), out),
	    QES_ERR_INVALID_ARG);
	/* round trip over a spread of times, leap days included */
	for (v = 0; v < INT64_C(253402300799999); v += INT64_C(86399999937)) {
		int64_t back;

		assert_int_equal(qesd_time_format(v, out), 0);
		assert_int_equal(qesd_time_parse(out, 0, &back), 0);
		assert_int_equal(back, v);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
