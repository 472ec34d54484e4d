/*
 * err.c - messages and stable names for qes_err codes.
 *
 * One table, so that the human message and the machine name of a code can
 * never drift apart. Names are part of the external contract (job failure
 * reasons, problem types): append, never change.
 */
#include <stddef.h>

#include "qes/err.h"

struct err_entry {
	int code;
	const char *name;
	const char *msg;
};

static const struct err_entry errors[] = {
	{ QES_OK, "ok", "success" },
	{ QES_ERR_INTERNAL, "internal", "internal error" },
	{ QES_ERR_ALLOC, "out_of_memory", "out of memory" },
	{ QES_ERR_INVALID_ARG, "invalid_argument", "invalid argument" },
	{ QES_ERR_LIMIT, "limit_exceeded", "input exceeds a size or count limit" },
	{ QES_ERR_TRUNCATED, "truncated", "input is truncated" },
	{ QES_ERR_FORMAT, "malformed", "input is malformed" },
	{ QES_ERR_IO, "io_error", "input/output error" },
	{ QES_ERR_CRYPTO, "crypto_error", "cryptographic operation failed" },
	{ QES_ERR_NOT_FOUND, "not_found", "not found" },
	{ QES_ERR_UNSUPPORTED, "unsupported", "not supported" },
	{ QES_ERR_TIMEOUT, "timeout", "operation timed out" },
	{ QES_ERR_CANCELLED, "cancelled", "cancelled by the user" },
	{ QES_ERR_SIGNATURE_INVALID, "bad_signature", "signature does not verify" },
	{ QES_ERR_MODULE_LOAD, "module_load_failed", "PKCS#11 module could not be loaded" },
	{ QES_ERR_MODULE_INIT, "module_init_failed", "PKCS#11 module could not be initialised" },
	{ QES_ERR_TOKEN_NOT_PRESENT, "token_not_present", "token not present" },
	{ QES_ERR_TOKEN_REMOVED, "token_removed", "token was removed" },
	{ QES_ERR_PIN_INCORRECT, "pin_incorrect", "PIN incorrect" },
	{ QES_ERR_PIN_LOCKED, "pin_locked", "PIN locked" },
	{ QES_ERR_PIN_EXPIRED, "pin_expired", "PIN expired: change it first" },
	{ QES_ERR_PIN_INVALID, "pin_invalid", "PIN has an invalid length or characters" },
	{ QES_ERR_KEY_NOT_FOUND, "key_not_found", "private key not found" },
	{ QES_ERR_MECHANISM_UNSUPPORTED, "mechanism_unsupported", "mechanism not supported by the token" },
	{ QES_ERR_KEY_UNSUITABLE, "key_unsuitable", "key cannot be used for this operation" },
	{ QES_ERR_DEVICE, "device_error", "token or reader error" },
	{ QES_ERR_NOT_LOGGED_IN, "not_logged_in", "not logged in to the token" },
	{ QES_ERR_FUNCTION_NOT_SUPPORTED, "function_not_supported", "function not supported by the PKCS#11 module" },
	{ QES_ERR_TOKEN_BUSY, "token_busy", "token is busy" },
	{ QES_ERR_DATA_INVALID, "data_invalid", "data rejected by the token" },
	{ QES_ERR_PINENTRY, "pinentry_failed", "PIN entry program failed" },
	{ QES_ERR_CONFLICT, "conflict", "conflicts with the current state" },
	{ QES_ERR_BUSY, "store_busy", "store is busy: retry shortly" },
	{ QES_ERR_UNAVAILABLE, "store_unavailable", "store is unavailable" },
	{ QES_ERR_CHAIN_BROKEN, "audit_chain_broken", "audit hash chain is broken" },
	{ QES_ERR_PDF_MALFORMED, "pdf_malformed", "PDF is malformed" },
	{ QES_ERR_PDF_ENCRYPTED, "pdf_encrypted", "PDF is encrypted: decrypt it before signing" },
	{ QES_ERR_XML_MALFORMED, "xml_malformed", "XML document is malformed" },
	{ QES_ERR_TIMESTAMP, "timestamp_failed", "timestamp could not be obtained or does not verify" },
	{ QES_ERR_REVOCATION, "revocation_unavailable", "revocation data unavailable or not acceptable" },
	{ QES_ERR_FETCH, "fetch_failed", "outbound HTTP request failed" },
};

static const struct err_entry *
lookup(int err)
{
	size_t i;

	for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		if (errors[i].code == err)
			return &errors[i];
	return NULL;
}

const char *
qes_strerror(int err)
{
	const struct err_entry *e = lookup(err);

	return e != NULL ? e->msg : "unknown error";
}

const char *
qes_errname(int err)
{
	const struct err_entry *e = lookup(err);

	return e != NULL ? e->name : "unknown";
}
