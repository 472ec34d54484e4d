/*
 * test_ades.c - names of the AdES formats and levels.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "qes/ades.h"
#include "qes/err.h"

static void
test_levels(void **state)
{
	qes_ades_level l;

	(void)state;
	assert_int_equal(qes_ades_level_from_name("B-LTA", &l), 0);
	assert_int_equal(l, QES_ADES_B_LTA);
	assert_int_equal(qes_ades_level_from_name("b-t", &l), 0);
	assert_int_equal(l, QES_ADES_B_T);
	assert_int_equal(qes_ades_level_from_name("BLT", &l), 0);
	assert_int_equal(l, QES_ADES_B_LT);
	assert_string_equal(qes_ades_level_name(QES_ADES_B_B), "B-B");
	assert_string_equal(qes_ades_level_name(QES_ADES_B_LT), "B-LT");
	assert_null(qes_ades_level_name((qes_ades_level)9));
	assert_int_equal(qes_ades_level_from_name("B-X", &l), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_ades_level_from_name("", &l), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_ades_level_from_name(NULL, &l), QES_ERR_INVALID_ARG);
	assert_true(QES_ADES_B_B < QES_ADES_B_T && QES_ADES_B_T < QES_ADES_B_LT &&
	    QES_ADES_B_LT < QES_ADES_B_LTA);
}

static void
test_formats(void **state)
{
	qes_ades_format f;

	(void)state;
	assert_int_equal(qes_ades_format_from_name("PAdES", &f), 0);
	assert_int_equal(f, QES_ADES_PADES);
	assert_string_equal(qes_ades_format_name(QES_ADES_JADES), "jades");
	assert_int_equal(qes_ades_format_from_name("asic", &f), QES_ERR_INVALID_ARG);
	assert_null(qes_ades_format_name((qes_ades_format)0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_formats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
