/*
 * test_p11_errors.c - unit tests for the PKCS#11 return-value table of
 * p11.c: every mapping qes defines (CK_RV -> qes_err), the names of all
 * standard CKR_* values and of the usual mechanisms, and what unknown and
 * vendor-defined values come out as. No module is loaded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11-kit/pkcs11.h"

#include "qes/err.h"
#include "qes/p11.h"

#include "p11_priv.h"

struct expect {
	CK_RV rv;
	const char *name;
	int err;
};

#define E(x, e) { x, #x, e }
/* Every value the table knows, with the qes_err it must map to. */
static const struct expect expected[] = {
	E(CKR_OK, QES_OK),
	E(CKR_CANCEL, QES_ERR_CANCELLED),
	E(CKR_HOST_MEMORY, QES_ERR_ALLOC),
	E(CKR_SLOT_ID_INVALID, QES_ERR_TOKEN_NOT_PRESENT),
	E(CKR_GENERAL_ERROR, QES_ERR_DEVICE),
	E(CKR_FUNCTION_FAILED, QES_ERR_DEVICE),
	E(CKR_ARGUMENTS_BAD, QES_ERR_INTERNAL),
	E(CKR_NO_EVENT, QES_ERR_NOT_FOUND),
	E(CKR_NEED_TO_CREATE_THREADS, QES_ERR_MODULE_INIT),
	E(CKR_CANT_LOCK, QES_ERR_MODULE_INIT),
	E(CKR_ATTRIBUTE_READ_ONLY, QES_ERR_INTERNAL),
	E(CKR_ATTRIBUTE_SENSITIVE, QES_ERR_UNSUPPORTED),
	E(CKR_ATTRIBUTE_TYPE_INVALID, QES_ERR_UNSUPPORTED),
	E(CKR_ATTRIBUTE_VALUE_INVALID, QES_ERR_INTERNAL),
	E(CKR_ACTION_PROHIBITED, QES_ERR_KEY_UNSUITABLE),
	E(CKR_DATA_INVALID, QES_ERR_DATA_INVALID),
	E(CKR_DATA_LEN_RANGE, QES_ERR_DATA_INVALID),
	E(CKR_DEVICE_ERROR, QES_ERR_DEVICE),
	E(CKR_DEVICE_MEMORY, QES_ERR_DEVICE),
	E(CKR_DEVICE_REMOVED, QES_ERR_TOKEN_REMOVED),
	E(CKR_ENCRYPTED_DATA_INVALID, QES_ERR_DATA_INVALID),
	E(CKR_ENCRYPTED_DATA_LEN_RANGE, QES_ERR_DATA_INVALID),
	E(CKR_AEAD_DECRYPT_FAILED, QES_ERR_DATA_INVALID),
	E(CKR_FUNCTION_CANCELED, QES_ERR_CANCELLED),
	E(CKR_FUNCTION_NOT_PARALLEL, QES_ERR_FUNCTION_NOT_SUPPORTED),
	E(CKR_FUNCTION_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	E(CKR_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	E(CKR_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_NOT_NEEDED, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_CHANGED, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_NEEDED, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_INDIGESTIBLE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_FUNCTION_NOT_PERMITTED, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_NOT_WRAPPABLE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_KEY_UNEXTRACTABLE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_MECHANISM_INVALID, QES_ERR_MECHANISM_UNSUPPORTED),
	E(CKR_MECHANISM_PARAM_INVALID, QES_ERR_MECHANISM_UNSUPPORTED),
	E(CKR_OBJECT_HANDLE_INVALID, QES_ERR_NOT_FOUND),
	E(CKR_OPERATION_ACTIVE, QES_ERR_TOKEN_BUSY),
	E(CKR_OPERATION_NOT_INITIALIZED, QES_ERR_INTERNAL),
	E(CKR_PIN_INCORRECT, QES_ERR_PIN_INCORRECT),
	E(CKR_PIN_INVALID, QES_ERR_PIN_INVALID),
	E(CKR_PIN_LEN_RANGE, QES_ERR_PIN_INVALID),
	E(CKR_PIN_EXPIRED, QES_ERR_PIN_EXPIRED),
	E(CKR_PIN_LOCKED, QES_ERR_PIN_LOCKED),
	E(CKR_SESSION_CLOSED, QES_ERR_TOKEN_REMOVED),
	E(CKR_SESSION_COUNT, QES_ERR_TOKEN_BUSY),
	E(CKR_SESSION_HANDLE_INVALID, QES_ERR_TOKEN_REMOVED),
	E(CKR_SESSION_PARALLEL_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	E(CKR_SESSION_READ_ONLY, QES_ERR_INTERNAL),
	E(CKR_SESSION_EXISTS, QES_ERR_TOKEN_BUSY),
	E(CKR_SESSION_READ_ONLY_EXISTS, QES_ERR_TOKEN_BUSY),
	E(CKR_SESSION_READ_WRITE_SO_EXISTS, QES_ERR_TOKEN_BUSY),
	E(CKR_SIGNATURE_INVALID, QES_ERR_SIGNATURE_INVALID),
	E(CKR_SIGNATURE_LEN_RANGE, QES_ERR_SIGNATURE_INVALID),
	E(CKR_TEMPLATE_INCOMPLETE, QES_ERR_INTERNAL),
	E(CKR_TEMPLATE_INCONSISTENT, QES_ERR_INTERNAL),
	E(CKR_TOKEN_NOT_PRESENT, QES_ERR_TOKEN_REMOVED),
	E(CKR_TOKEN_NOT_RECOGNIZED, QES_ERR_DEVICE),
	E(CKR_TOKEN_WRITE_PROTECTED, QES_ERR_UNSUPPORTED),
	E(CKR_UNWRAPPING_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	E(CKR_UNWRAPPING_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	E(CKR_USER_ALREADY_LOGGED_IN, QES_ERR_INTERNAL),
	E(CKR_USER_NOT_LOGGED_IN, QES_ERR_NOT_LOGGED_IN),
	E(CKR_USER_PIN_NOT_INITIALIZED, QES_ERR_PIN_EXPIRED),
	E(CKR_USER_TYPE_INVALID, QES_ERR_INTERNAL),
	E(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, QES_ERR_TOKEN_BUSY),
	E(CKR_USER_TOO_MANY_TYPES, QES_ERR_TOKEN_BUSY),
	E(CKR_WRAPPED_KEY_INVALID, QES_ERR_KEY_UNSUITABLE),
	E(CKR_WRAPPED_KEY_LEN_RANGE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_WRAPPING_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	E(CKR_WRAPPING_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	E(CKR_WRAPPING_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	E(CKR_RANDOM_SEED_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	E(CKR_RANDOM_NO_RNG, QES_ERR_FUNCTION_NOT_SUPPORTED),
	E(CKR_DOMAIN_PARAMS_INVALID, QES_ERR_KEY_UNSUITABLE),
	E(CKR_CURVE_NOT_SUPPORTED, QES_ERR_MECHANISM_UNSUPPORTED),
	E(CKR_BUFFER_TOO_SMALL, QES_ERR_INTERNAL),
	E(CKR_SAVED_STATE_INVALID, QES_ERR_INTERNAL),
	E(CKR_INFORMATION_SENSITIVE, QES_ERR_UNSUPPORTED),
	E(CKR_STATE_UNSAVEABLE, QES_ERR_UNSUPPORTED),
	E(CKR_CRYPTOKI_NOT_INITIALIZED, QES_ERR_MODULE_INIT),
	E(CKR_CRYPTOKI_ALREADY_INITIALIZED, QES_ERR_MODULE_INIT),
	E(CKR_MUTEX_BAD, QES_ERR_INTERNAL),
	E(CKR_MUTEX_NOT_LOCKED, QES_ERR_INTERNAL),
	E(CKR_NEW_PIN_MODE, QES_ERR_UNSUPPORTED),
	E(CKR_NEXT_OTP, QES_ERR_UNSUPPORTED),
	E(CKR_EXCEEDED_MAX_ITERATIONS, QES_ERR_DEVICE),
	E(CKR_FIPS_SELF_TEST_FAILED, QES_ERR_DEVICE),
	E(CKR_LIBRARY_LOAD_FAILED, QES_ERR_MODULE_LOAD),
	E(CKR_PIN_TOO_WEAK, QES_ERR_PIN_INVALID),
	E(CKR_PUBLIC_KEY_INVALID, QES_ERR_KEY_UNSUITABLE),
	E(CKR_FUNCTION_REJECTED, QES_ERR_CANCELLED),
	E(CKR_TOKEN_RESOURCE_EXCEEDED, QES_ERR_TOKEN_BUSY),
	E(CKR_OPERATION_CANCEL_FAILED, QES_ERR_INTERNAL),
	E(CKR_KEY_EXHAUSTED, QES_ERR_KEY_UNSUITABLE),
};
#undef E

#define N_EXPECTED (sizeof(expected) / sizeof(expected[0]))

static void
test_every_mapping(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_EXPECTED; i++) {
		if (qes_p11_map_ckr(expected[i].rv) != expected[i].err)
			fail_msg("%s maps to %s, expected %s", expected[i].name,
			    qes_errname(qes_p11_map_ckr(expected[i].rv)),
			    qes_errname(expected[i].err));
	}
}

/* The mappings the rest of qes (PIN store, job reasons) relies on. */
static void
test_key_mappings(void **state)
{
	(void)state;
	assert_int_equal(qes_p11_map_ckr(CKR_OK), 0);
	assert_int_equal(qes_p11_map_ckr(CKR_PIN_INCORRECT), QES_ERR_PIN_INCORRECT);
	assert_int_equal(qes_p11_map_ckr(CKR_PIN_LOCKED), QES_ERR_PIN_LOCKED);
	assert_int_equal(qes_p11_map_ckr(CKR_PIN_EXPIRED), QES_ERR_PIN_EXPIRED);
	assert_int_equal(qes_p11_map_ckr(CKR_PIN_LEN_RANGE), QES_ERR_PIN_INVALID);
	assert_int_equal(qes_p11_map_ckr(CKR_PIN_INVALID), QES_ERR_PIN_INVALID);
	assert_int_equal(qes_p11_map_ckr(CKR_TOKEN_NOT_PRESENT), QES_ERR_TOKEN_REMOVED);
	assert_int_equal(qes_p11_map_ckr(CKR_DEVICE_REMOVED), QES_ERR_TOKEN_REMOVED);
	assert_int_equal(qes_p11_map_ckr(CKR_SESSION_HANDLE_INVALID),
	    QES_ERR_TOKEN_REMOVED);
	assert_int_equal(qes_p11_map_ckr(CKR_KEY_HANDLE_INVALID), QES_ERR_KEY_NOT_FOUND);
	assert_int_equal(qes_p11_map_ckr(CKR_MECHANISM_INVALID),
	    QES_ERR_MECHANISM_UNSUPPORTED);
	assert_int_equal(qes_p11_map_ckr(CKR_MECHANISM_PARAM_INVALID),
	    QES_ERR_MECHANISM_UNSUPPORTED);
	assert_int_equal(qes_p11_map_ckr(CKR_KEY_TYPE_INCONSISTENT),
	    QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_p11_map_ckr(CKR_KEY_FUNCTION_NOT_PERMITTED),
	    QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_p11_map_ckr(CKR_DEVICE_ERROR), QES_ERR_DEVICE);
	assert_int_equal(qes_p11_map_ckr(CKR_DEVICE_MEMORY), QES_ERR_DEVICE);
	assert_int_equal(qes_p11_map_ckr(CKR_GENERAL_ERROR), QES_ERR_DEVICE);
	assert_int_equal(qes_p11_map_ckr(CKR_TOKEN_NOT_RECOGNIZED), QES_ERR_DEVICE);
	assert_int_equal(qes_p11_map_ckr(CKR_USER_NOT_LOGGED_IN), QES_ERR_NOT_LOGGED_IN);
	assert_int_equal(qes_p11_map_ckr(CKR_FUNCTION_NOT_SUPPORTED),
	    QES_ERR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(qes_p11_map_ckr(CKR_FUNCTION_CANCELED), QES_ERR_CANCELLED);
	assert_int_equal(qes_p11_map_ckr(CKR_OPERATION_ACTIVE), QES_ERR_TOKEN_BUSY);
	assert_int_equal(qes_p11_map_ckr(CKR_SESSION_COUNT), QES_ERR_TOKEN_BUSY);
	assert_int_equal(qes_p11_map_ckr(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	    QES_ERR_TOKEN_BUSY);
	assert_int_equal(qes_p11_map_ckr(CKR_DATA_LEN_RANGE), QES_ERR_DATA_INVALID);
	assert_int_equal(qes_p11_map_ckr(CKR_DATA_INVALID), QES_ERR_DATA_INVALID);
	assert_int_equal(qes_p11_map_ckr(CKR_HOST_MEMORY), QES_ERR_ALLOC);
	assert_int_equal(qes_p11_map_ckr(CKR_SLOT_ID_INVALID),
	    QES_ERR_TOKEN_NOT_PRESENT);
	assert_int_equal(qes_p11_map_ckr(CKR_CRYPTOKI_NOT_INITIALIZED),
	    QES_ERR_MODULE_INIT);
}

static void
test_every_name(void **state)
{
	size_t i, j;

	(void)state;
	for (i = 0; i < N_EXPECTED; i++)
		assert_string_equal(qes_p11_ckr_name(expected[i].rv),
		    expected[i].name);
	/* one name per value: no two table entries share a value */
	for (i = 0; i < N_EXPECTED; i++)
		for (j = i + 1; j < N_EXPECTED; j++)
			assert_int_not_equal(expected[i].rv, expected[j].rv);
}

/* Every error is a real, named qes_err: nothing maps to "unknown". */
static void
test_errors_are_named(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_EXPECTED; i++) {
		if (expected[i].rv == CKR_OK)
			continue;
		assert_true(qes_p11_map_ckr(expected[i].rv) < 0);
		assert_string_not_equal(qes_errname(qes_p11_map_ckr(expected[i].rv)),
		    "unknown");
	}
}

/* All 2.40 values between 0 and 0x1ff that the table does not name. */
static void
test_unknown_values(void **state)
{
	char msg[QES_P11_ERRMSG_MAX];

	(void)state;
	assert_string_equal(qes_p11_ckr_name(0x1ffUL), "CKR_UNKNOWN");
	assert_string_equal(qes_p11_ckr_name(0x4UL), "CKR_UNKNOWN");
	assert_string_equal(qes_p11_ckr_name(CKR_VENDOR_DEFINED),
	    "CKR_VENDOR_DEFINED");
	assert_string_equal(qes_p11_ckr_name(CKR_VENDOR_DEFINED | 0x1234UL),
	    "CKR_VENDOR_DEFINED");
	assert_string_equal(qes_p11_ckr_name(~0UL), "CKR_VENDOR_DEFINED");
	assert_int_equal(qes_p11_map_ckr(0x1ffUL), QES_ERR_DEVICE);
	assert_int_equal(qes_p11_map_ckr(CKR_VENDOR_DEFINED | 0x1234UL),
	    QES_ERR_DEVICE);

	/* messages: named values by name, unnamed ones with their hex */
	qes_p11_priv_ckr_msg(msg, sizeof(msg), "C_Sign", CKR_PIN_INCORRECT);
	assert_string_equal(msg, "C_Sign: CKR_PIN_INCORRECT");
	qes_p11_priv_ckr_msg(msg, sizeof(msg), "C_Login",
	    CKR_VENDOR_DEFINED | 0x10UL);
	assert_string_equal(msg, "C_Login: CKR_VENDOR_DEFINED (0x80000010)");
	qes_p11_priv_ckr_msg(msg, sizeof(msg), "C_Login", 0x1ffUL);
	assert_string_equal(msg, "C_Login: CKR_UNKNOWN (0x1ff)");
}

static void
test_mech_names(void **state)
{
	static const struct {
		unsigned long mech;
		const char *name;
	} mechs[] = {
		{ CKM_RSA_PKCS, "CKM_RSA_PKCS" },
		{ CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS" },
		{ CKM_RSA_X_509, "CKM_RSA_X_509" },
		{ CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN" },
		{ CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS" },
		{ CKM_SHA384_RSA_PKCS, "CKM_SHA384_RSA_PKCS" },
		{ CKM_SHA512_RSA_PKCS, "CKM_SHA512_RSA_PKCS" },
		{ CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS" },
		{ CKM_ECDSA, "CKM_ECDSA" },
		{ CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256" },
		{ CKM_ECDSA_SHA384, "CKM_ECDSA_SHA384" },
		{ CKM_ECDSA_SHA512, "CKM_ECDSA_SHA512" },
		{ CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN" },
		{ CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE" },
		{ CKM_EDDSA, "CKM_EDDSA" },
		{ CKM_SHA_1, "CKM_SHA_1" },
		{ CKM_SHA256, "CKM_SHA256" },
		{ CKM_SHA384, "CKM_SHA384" },
		{ CKM_SHA512, "CKM_SHA512" },
		{ CKM_SHA256_HMAC, "CKM_SHA256_HMAC" },
		{ CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN" },
		{ CKM_AES_GCM, "CKM_AES_GCM" },
		{ CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD" },
		{ CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP" },
		{ CKM_DES3_CBC, "CKM_DES3_CBC" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		assert_string_equal(qes_p11_mech_name(mechs[i].mech),
		    mechs[i].name);
	assert_string_equal(qes_p11_mech_name(0x7fffUL), "CKM_UNKNOWN");
	assert_string_equal(qes_p11_mech_name(CKM_VENDOR_DEFINED | 0x42UL),
	    "CKM_VENDOR_DEFINED");
}

static void
test_trim_and_flags(void **state)
{
	static const unsigned char padded[16] = "SoftHSM v2      ";
	static const unsigned char nul_term[8] = { 'a', 'b', 0, 'x', 'x', 'x', 'x', 'x' };
	static const unsigned char ctl[6] = { 'a', '\n', 'b', 0x7f, ' ', ' ' };
	static const unsigned char blank[4] = "    ";
	char *s;

	(void)state;
	assert_non_null(s = qes_p11_priv_trim(padded, sizeof(padded)));
	assert_string_equal(s, "SoftHSM v2");
	free(s);
	assert_non_null(s = qes_p11_priv_trim(nul_term, sizeof(nul_term)));
	assert_string_equal(s, "ab");
	free(s);
	assert_non_null(s = qes_p11_priv_trim(ctl, sizeof(ctl)));
	assert_string_equal(s, "a?b?");
	free(s);
	assert_non_null(s = qes_p11_priv_trim(blank, sizeof(blank)));
	assert_string_equal(s, "");
	free(s);

	assert_int_equal(qes_p11_priv_token_flags(0), 0);
	assert_int_equal(qes_p11_priv_token_flags(CKF_LOGIN_REQUIRED |
	    CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
	    CKF_USER_PIN_LOCKED | CKF_USER_PIN_TO_BE_CHANGED),
	    QES_TOK_LOGIN_REQUIRED | QES_TOK_PIN_COUNT_LOW |
	    QES_TOK_PIN_FINAL_TRY | QES_TOK_PIN_LOCKED |
	    QES_TOK_PIN_TO_BE_CHANGED);
	assert_int_equal(qes_p11_priv_token_flags(CKF_PROTECTED_AUTHENTICATION_PATH |
	    CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED |
	    CKF_WRITE_PROTECTED | CKF_SO_PIN_LOCKED),
	    QES_TOK_PROTECTED_AUTH | QES_TOK_INITIALIZED |
	    QES_TOK_USER_PIN_INITIALIZED | QES_TOK_WRITE_PROTECTED |
	    QES_TOK_SO_PIN_LOCKED);
	/* SO counters and unrelated bits do not leak into user PIN flags */
	assert_int_equal(qes_p11_priv_token_flags(CKF_RNG | CKF_SO_PIN_COUNT_LOW |
	    CKF_SO_PIN_FINAL_TRY | CKF_RESTORE_KEY_NOT_NEEDED), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_mapping),
		cmocka_unit_test(test_key_mappings),
		cmocka_unit_test(test_every_name),
		cmocka_unit_test(test_errors_are_named),
		cmocka_unit_test(test_unknown_values),
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_trim_and_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
