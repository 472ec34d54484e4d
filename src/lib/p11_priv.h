/*
 * p11_priv.h - what the PKCS#11 files of libqes share (p11.c: module
 * registry and error names, p11_scan.c: inventory, p11_session.c: login
 * and signing). Not installed; nothing outside src/lib includes it.
 *
 * Everything a module hands us (slot lists, attribute values, padded text
 * fields) is untrusted input: the helpers here read it with the two-call
 * size pattern and a hard limit, and turn every CK_RV into a qes_err plus a
 * "C_Function: CKR_NAME" message that never contains a secret.
 */
#ifndef QES_P11_PRIV_H
#define QES_P11_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "p11-kit/pkcs11.h"

#include "qes/p11.h"

/* Limits on what a module may hand us (exceeding one is QES_ERR_LIMIT). */
#define QES_P11_MAX_SLOTS	256
#define QES_P11_MAX_MECHS	1024
#define QES_P11_MAX_OBJECTS	256
#define QES_P11_MAX_CERT_BYTES	(64 * 1024)
#define QES_P11_MAX_ID_BYTES	128
#define QES_P11_MAX_LABEL_BYTES	256
#define QES_P11_MAX_SIG_BYTES	1024
#define QES_P11_ERRMSG_MAX	512	/* room for a 128-byte CKA_ID in hex */

/*
 * PKCS#11 3.0 pieces that p11-kit 0.24's header lacks. Named qes_ck_* so a
 * newer header that declares CK_INTERFACE cannot clash with them; the layout
 * is the one of the 3.0 specification (section 3.6, CK_INTERFACE).
 */
typedef struct qes_ck_interface {
	CK_UTF8CHAR *pInterfaceName;
	void *pFunctionList;
	CK_FLAGS flags;
} qes_ck_interface;

typedef CK_RV (*qes_ck_get_interface_fn)(CK_UTF8CHAR *pInterfaceName,
    CK_VERSION *pVersion, qes_ck_interface **ppInterface, CK_FLAGS flags);

/* CK_RV values newer than p11-kit 0.24's header (PKCS#11 3.0 / 3.1). */
#ifndef CKR_AEAD_DECRYPT_FAILED
#define CKR_AEAD_DECRYPT_FAILED		0x00000035UL
#endif
#ifndef CKR_TOKEN_RESOURCE_EXCEEDED
#define CKR_TOKEN_RESOURCE_EXCEEDED	0x00000201UL
#endif
#ifndef CKR_OPERATION_CANCEL_FAILED
#define CKR_OPERATION_CANCEL_FAILED	0x00000202UL
#endif
#ifndef CKR_KEY_EXHAUSTED
#define CKR_KEY_EXHAUSTED		0x00000203UL
#endif

/*
 * One loaded (or failed) module. Allocated on its own so that the
 * qes_p11_module_info pointers handed out stay valid while other modules
 * are added. Immutable once it is in the registry.
 */
struct qes_p11_module {
	qes_p11_module_info info;	/* its strings point at the fields below */
	char *path;
	char *canon_path;		/* realpath(), NULL when it has none */
	char *name;
	char *errmsg;
	char *manufacturer;
	char *description;
	void *dl;			/* dlopen handle, NULL when failed */
	CK_FUNCTION_LIST *fl;		/* NULL when the module failed */
};

struct qes_p11 {
	pthread_mutex_t lock;		/* guards mods / n_mods / cap */
	struct qes_p11_module **mods;
	size_t n_mods;
	size_t cap;
};

/*
 * The function list of a working module. QES_ERR_INVALID_ARG for an index
 * out of range, the module's own error when it failed to load. The list
 * stays valid until qes_p11_free().
 */
int qes_p11_priv_functions(qes_p11 *p, size_t index, CK_FUNCTION_LIST **out);

/* Write "call: CKR_NAME" (plus the hex value when unnamed) into dst. */
void qes_p11_priv_ckr_msg(char *dst, size_t dst_len, const char *call, CK_RV rv);

/*
 * A blank-padded PKCS#11 text field (CK_INFO, CK_TOKEN_INFO, ...) as a
 * malloc'ed C string: trailing blanks and NULs cut, control characters
 * replaced by '?'. NULL when out of memory.
 */
char *qes_p11_priv_trim(const unsigned char *field, size_t field_len);

/* QES_TOK_* for CK_TOKEN_INFO.flags. */
unsigned qes_p11_priv_token_flags(CK_FLAGS raw);

/*
 * C_GetSlotList with the two-call pattern; *slots_out is malloc'ed (never
 * NULL on success, even for zero slots). On failure errmsg says which call.
 */
int qes_p11_priv_slot_list(CK_FUNCTION_LIST *fl, int token_present,
    CK_SLOT_ID **slots_out, size_t *n_out, char *errmsg, size_t errmsg_len);

/*
 * C_FindObjects over tmpl: up to max handles into handles[]. *more_out is
 * set when the token has more than max matches. C_FindObjectsFinal is
 * always called once C_FindObjectsInit succeeded.
 */
int qes_p11_priv_find(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE *handles, size_t max,
    size_t *found_out, int *more_out, char *errmsg, size_t errmsg_len);

/*
 * One attribute with the two-call size pattern. *out is malloc'ed with at
 * least one byte (so it is never NULL for an empty value). QES_ERR_NOT_FOUND
 * when the object has no such attribute or will not reveal it,
 * QES_ERR_LIMIT when it is longer than max_len.
 */
int qes_p11_priv_get_attr(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, size_t max_len,
    uint8_t **out, size_t *len_out, char *errmsg, size_t errmsg_len);
/* A CK_BBOOL attribute; QES_ERR_NOT_FOUND as above. */
int qes_p11_priv_get_bool(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, int *out);
/* A CK_ULONG attribute (CKA_KEY_TYPE, ...); QES_ERR_NOT_FOUND as above. */
int qes_p11_priv_get_ulong(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *out,
    char *errmsg, size_t errmsg_len);

#endif
