/*
 * p11.h - the PKCS#11 token layer: vendor modules, tokens, certificates, signing.
 *
 * A qes_p11 holds any number of vendor modules loaded by path (dlopen +
 * C_GetInterface for PKCS#11 3.0 or C_GetFunctionList), each initialised
 * with OS locking and finalised when the qes_p11 is freed. A module that
 * fails to load or initialise stays in the list with its error, so it can be
 * reported, and never stops the others from working.
 *
 * qes_p11_scan() takes a snapshot (qes_p11_inventory) of every slot, token,
 * mechanism and certificate, with each certificate paired to its private key
 * by CKA_ID. The snapshot is plain data: it can be printed, diffed (hot-plug)
 * or sent to the gateway without touching the module again.
 *
 * A qes_p11_session is one signing job on one token: open by token serial
 * (slot ids change when a token is re-inserted), log in once (CKU_USER, or
 * with no PIN on a protected authentication path), sign any number of
 * digests (CKU_CONTEXT_SPECIFIC login before each operation on a key marked
 * CKA_ALWAYS_AUTHENTICATE), and free: logout, close, wipe the PIN.
 *
 * Threads: a qes_p11 may be used from several threads (modules run with OS
 * locking); one qes_p11_session belongs to one thread at a time.
 */
#ifndef QES_P11_H
#define QES_P11_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/secret.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qes_p11_source {
	QES_P11_SRC_EXPLICIT = 1,	/* --module PATH or configuration */
	QES_P11_SRC_P11KIT = 2,		/* registered with p11-kit */
	QES_P11_SRC_WELL_KNOWN = 3,	/* probed vendor path (SafeNet, IDPrime, OpenSC) */
} qes_p11_source;

typedef struct qes_p11_module_info {
	const char *path;
	const char *name;		/* p11-kit name or vendor name; "" when unknown */
	qes_p11_source source;
	int err;			/* 0 when loaded and initialised */
	const char *errmsg;		/* why not; "" when err == 0 */
	unsigned cryptoki_major;	/* C_GetInfo cryptokiVersion */
	unsigned cryptoki_minor;
	unsigned interface_major;	/* 3 when C_GetInterface gave a 3.x list */
	unsigned interface_minor;
	const char *manufacturer;	/* C_GetInfo, trimmed */
	const char *description;
	unsigned lib_major;
	unsigned lib_minor;
} qes_p11_module_info;

typedef struct qes_p11 qes_p11;

int qes_p11_new(qes_p11 **out);
/* C_Finalize and dlclose every module. NULL is a no-op. */
void qes_p11_free(qes_p11 *p);

/*
 * Load and initialise a module. Returns its error, but a failed module is
 * still added (so it is reported); *index_out (may be NULL) is its index.
 * Adding a path that is already loaded returns 0 and the existing index.
 */
int qes_p11_add_module(qes_p11 *p, const char *path, qes_p11_source source,
    const char *name, size_t *index_out);
/* Add every module p11-kit has registered (p11-kit's config, not proxied). */
int qes_p11_add_registered(qes_p11 *p);
/* Probe well-known vendor paths and add those that exist. */
int qes_p11_add_well_known(qes_p11 *p);

size_t qes_p11_module_count(const qes_p11 *p);
const qes_p11_module_info *qes_p11_module_get(const qes_p11 *p, size_t index);

typedef struct qes_p11_mech {
	unsigned long type;		/* CKM_* */
	const char *name;		/* "CKM_RSA_PKCS", or "0x..." when unknown */
	unsigned long min_key;		/* as the module reports (bits or bytes) */
	unsigned long max_key;
	unsigned long flags;		/* CKF_* of CK_MECHANISM_INFO */
} qes_p11_mech;

typedef struct qes_p11_cred {
	const char *label;		/* certificate's CKA_LABEL, "" when none */
	uint8_t id[128];		/* CKA_ID shared by certificate and key */
	size_t id_len;
	const char *id_hex;
	qes_cert *cert;			/* parsed; owned by the inventory */
	qes_cert_class cls;		/* at scan time */
	int has_key;			/* 1: a private (or public) key with the same CKA_ID
				 * exists; 0: none; -1: unknown, keys are hidden
				 * until login */
	int always_authenticate;	/* key has CKA_ALWAYS_AUTHENTICATE */
	int can_sign;			/* key has CKA_SIGN (or does not say) */
} qes_p11_cred;

/* token flags, as named in PKCS#11 */
#define QES_TOK_LOGIN_REQUIRED      0x0001u
#define QES_TOK_PROTECTED_AUTH      0x0002u
#define QES_TOK_PIN_COUNT_LOW       0x0004u
#define QES_TOK_PIN_FINAL_TRY       0x0008u
#define QES_TOK_PIN_LOCKED          0x0010u
#define QES_TOK_PIN_TO_BE_CHANGED   0x0020u
#define QES_TOK_INITIALIZED         0x0040u
#define QES_TOK_USER_PIN_INITIALIZED 0x0080u
#define QES_TOK_WRITE_PROTECTED     0x0100u
#define QES_TOK_SO_PIN_LOCKED       0x0200u

typedef struct qes_p11_token {
	size_t module_index;
	unsigned long slot_id;
	const char *slot_description;
	const char *slot_manufacturer;
	int hardware_slot;		/* CKF_HW_SLOT */
	int removable;			/* CKF_REMOVABLE_DEVICE */
	int present;			/* CKF_TOKEN_PRESENT; when 0 the token fields are "" */
	const char *label;
	const char *manufacturer;
	const char *model;
	const char *serial;
	unsigned hw_major, hw_minor;
	unsigned fw_major, fw_minor;
	unsigned flags;			/* QES_TOK_* */
	unsigned long raw_flags;	/* CK_TOKEN_INFO.flags as the module gave it */
	unsigned long min_pin, max_pin;
	qes_p11_mech *mechs;
	size_t n_mechs;
	qes_p11_cred *creds;
	size_t n_creds;
	int err;			/* a problem met while scanning this slot, or 0 */
	const char *errmsg;
} qes_p11_token;

typedef struct qes_p11_inventory {
	qes_p11_token *tokens;		/* one entry per slot, across all modules */
	size_t n_tokens;
} qes_p11_inventory;

/* Snapshot every slot of every working module. Free with qes_p11_inventory_free(). */
int qes_p11_scan(qes_p11 *p, qes_p11_inventory **out);
void qes_p11_inventory_free(qes_p11_inventory *inv);

typedef struct qes_p11_session qes_p11_session;

/*
 * Open a read-only session on the token with this serial in module
 * module_index (QES_ERR_TOKEN_NOT_PRESENT when no slot has it).
 */
int qes_p11_session_open(qes_p11 *p, size_t module_index, const char *serial,
    qes_p11_session **out);
/* Token flags (QES_TOK_*) read fresh from the token. */
int qes_p11_session_token_flags(qes_p11_session *s, unsigned *flags_out);
/*
 * Log in as CKU_USER. pin may be NULL only on a protected authentication
 * path (the reader or middleware asks for it). Refuses with
 * QES_ERR_PIN_LOCKED without trying when the token says the PIN is locked.
 * The PIN is copied into locked memory for context-specific logins and
 * wiped at logout. QES_ERR_PIN_INCORRECT leaves the session usable for
 * another try. PKCS#11 login state is shared by all sessions of a process,
 * so only one qes session may be logged in to a token at a time
 * (QES_ERR_TOKEN_BUSY otherwise), and a login left behind by someone else is
 * logged out first: every job proves its own PIN.
 */
int qes_p11_session_login(qes_p11_session *s, const qes_secret *pin);
/*
 * Sign a digest with the private key whose CKA_ID is key_id.
 * RSA PKCS#1: the token signs a DigestInfo built here (CKM_RSA_PKCS).
 * RSA-PSS: CKM_RSA_PKCS_PSS with MGF1(md) and salt = digest length.
 * ECDSA: CKM_ECDSA; *sig_out receives DER unless ecdsa_raw is set.
 * The value is appended to sig_out, and only ever a complete one.
 */
int qes_p11_session_sign(qes_p11_session *s, const uint8_t *key_id,
    size_t key_id_len, qes_sig_scheme scheme, qes_md md, const uint8_t *digest,
    size_t digest_len, int ecdsa_raw, qes_buf *sig_out);
/* Log out (if logged in) and wipe the PIN; the session stays open. */
int qes_p11_session_logout(qes_p11_session *s);
/* Logout, C_CloseSession, wipe. NULL is a no-op. Free every session before its qes_p11. */
void qes_p11_session_free(qes_p11_session *s);
/* Detail for the last error, e.g. "C_Login: CKR_PIN_INCORRECT". Never NULL. */
const char *qes_p11_session_errmsg(const qes_p11_session *s);

/*
 * Map a CK_RV to a qes_err, and name it ("CKR_PIN_INCORRECT"); unknown
 * values are "CKR_UNKNOWN" / "CKR_VENDOR_DEFINED" (never NULL), and map to
 * QES_ERR_DEVICE.
 */
int qes_p11_map_ckr(unsigned long rv);
const char *qes_p11_ckr_name(unsigned long rv);
const char *qes_p11_mech_name(unsigned long mech);

#ifdef __cplusplus
}
#endif
#endif
