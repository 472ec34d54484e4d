/*
 * err.h - the one error enum of qes.
 *
 * Every libqes function returns 0 on success or a negative QES_ERR_* code.
 * Each code has a human message (qes_strerror) and a stable machine name
 * (qes_errname) that later travels in job failure reasons and problem types,
 * so never renumber or rename an existing code: append new ones.
 * Detail that only a handle knows (which token, which PKCS#11 call) is kept on
 * that handle (qes_p11_session_errmsg() etc.), libtls-style, never in a global.
 */
#ifndef QES_ERR_H
#define QES_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qes_err {
	QES_OK = 0,
	/* generic */
	QES_ERR_INTERNAL = -1,		/* a bug or an impossible state */
	QES_ERR_ALLOC = -2,		/* out of memory */
	QES_ERR_INVALID_ARG = -3,	/* caller passed something invalid */
	QES_ERR_LIMIT = -4,		/* input exceeds a configured limit */
	QES_ERR_TRUNCATED = -5,		/* input ended before it should */
	QES_ERR_FORMAT = -6,		/* input is malformed */
	QES_ERR_IO = -7,		/* reading or writing a file or pipe */
	QES_ERR_CRYPTO = -8,		/* a cryptographic library call failed */
	QES_ERR_NOT_FOUND = -9,		/* the named object does not exist */
	QES_ERR_UNSUPPORTED = -10,	/* algorithm/feature not supported */
	QES_ERR_TIMEOUT = -11,		/* an operation took too long */
	QES_ERR_CANCELLED = -12,	/* the user cancelled or declined */
	QES_ERR_SIGNATURE_INVALID = -13, /* a signature does not verify */
	/* PKCS#11 modules and tokens */
	QES_ERR_MODULE_LOAD = -20,	/* dlopen/C_GetFunctionList failed */
	QES_ERR_MODULE_INIT = -21,	/* C_Initialize failed */
	QES_ERR_TOKEN_NOT_PRESENT = -22, /* no token with that serial */
	QES_ERR_TOKEN_REMOVED = -23,	/* token removed during use */
	QES_ERR_PIN_INCORRECT = -24,
	QES_ERR_PIN_LOCKED = -25,
	QES_ERR_PIN_EXPIRED = -26,	/* PIN must be changed first */
	QES_ERR_PIN_INVALID = -27,	/* PIN has wrong length/characters */
	QES_ERR_KEY_NOT_FOUND = -28,	/* no private key for that id */
	QES_ERR_MECHANISM_UNSUPPORTED = -29,
	QES_ERR_KEY_UNSUITABLE = -30,	/* key type/usage does not allow it */
	QES_ERR_DEVICE = -31,		/* the token or reader failed */
	QES_ERR_NOT_LOGGED_IN = -32,
	QES_ERR_FUNCTION_NOT_SUPPORTED = -33, /* optional call missing */
	QES_ERR_TOKEN_BUSY = -34,	/* another operation or session holds it */
	QES_ERR_DATA_INVALID = -35,	/* data length/content rejected */
	/* PIN entry */
	QES_ERR_PINENTRY = -40,		/* pinentry program failed */
	/* durable store and audit chain (qesd, qes audit verify) */
	QES_ERR_CONFLICT = -50,		/* already exists / state changed meanwhile */
	QES_ERR_BUSY = -51,		/* store busy or locked: retry shortly */
	QES_ERR_UNAVAILABLE = -52,	/* store unreachable or unusable (503) */
	QES_ERR_CHAIN_BROKEN = -53,	/* audit hash chain does not verify */
	/* AdES formats: documents, timestamps, revocation data */
	QES_ERR_PDF_MALFORMED = -60,	/* PDF syntax/structure is broken */
	QES_ERR_PDF_ENCRYPTED = -61,	/* encrypted PDF: refused */
	QES_ERR_XML_MALFORMED = -62,	/* XML document is not well formed */
	QES_ERR_TIMESTAMP = -63,	/* TSA failed or its token does not verify */
	QES_ERR_REVOCATION = -64,	/* OCSP/CRL unavailable or not acceptable */
	QES_ERR_FETCH = -65,		/* outbound HTTP (TSA, OCSP, CRL) failed */
} qes_err;

/* A sentence for humans ("PIN incorrect"). Never NULL. */
const char *qes_strerror(int err);

/* A stable snake_case identifier ("pin_incorrect"). Never NULL. */
const char *qes_errname(int err);

#ifdef __cplusplus
}
#endif
#endif
