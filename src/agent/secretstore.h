/*
 * secretstore.h - qes-agent's secrets in the operating system's secret store.
 *
 * Two kinds of secret are kept, each under a key:
 *   device-key  the device's private key (PKCS#8 DER), key = server host or
 *               device id (devkey.h);
 *   pin         a token PIN the user chose to remember, key = token serial
 *               (pinstore.h). A PUK is never a kind: qes never stores one.
 *
 * A secret travels only in a qes_secret (locked, wiped memory); nothing here
 * copies one into a string, a qes_buf or a log line.
 *
 * Backends sit behind a small table of functions (struct agent_secret_backend)
 * so that macOS Keychain and Windows Credential Manager can be added without
 * touching the callers:
 *   secretstore_libsecret.c  the Secret Service (GNOME Keyring, KWallet,
 *                            KeePassXC) through libsecret: the platform
 *                            store on Linux and the BSDs;
 *   secretstore_file.c       a 0600 file per secret under
 *                            $XDG_CONFIG_HOME/qes/ (directory 0700), for the
 *                            device key ONLY, and only where no platform
 *                            store is reachable: it is the fallback the
 *                            design allows for headless machines, with a
 *                            warning in the log. It refuses PINs itself.
 *
 * The routing rules live in secretstore.c, in one place:
 *   - pin: the platform store only. No platform store: QES_ERR_UNAVAILABLE.
 *   - device-key: store in the platform store when it is reachable, else in
 *     the file (warning); look up in the platform store, then in the file;
 *     delete from both. A platform store that is reachable but refuses (a
 *     locked keyring whose unlock the user dismissed) is an error, never a
 *     reason to fall back to the file.
 *
 * Errors: QES_ERR_NOT_FOUND (no such secret), QES_ERR_UNAVAILABLE (no store
 * reachable), QES_ERR_TIMEOUT (the store did not answer in time),
 * QES_ERR_UNSUPPORTED (kind not allowed in that backend), QES_ERR_IO (the
 * store failed or a file looked unsafe), with a sentence in
 * agent_secretstore_errmsg(). Thread-safety: one agent_secretstore per
 * thread, or external locking.
 */
#ifndef QES_AGENT_SECRETSTORE_H
#define QES_AGENT_SECRETSTORE_H

#include <stddef.h>

#include "qes/secret.h"

typedef enum agent_secret_kind {
	AGENT_SECRET_DEVICE_KEY = 1,	/* "device-key" */
	AGENT_SECRET_PIN = 2,		/* "pin" */
} agent_secret_kind;

/* Longest key (token serial, host name, device id) in bytes. */
#define AGENT_SECRET_KEY_MAX	200
/* Largest secret a store hands back (a P-256 PKCS#8 key is ~140 bytes). */
#define AGENT_SECRET_MAX	8192

/* "device-key" / "pin"; NULL for anything else. */
const char *agent_secret_kind_name(agent_secret_kind kind);

/* ---- the interface the agent uses ---- */

typedef struct agent_secretstore_opts {
	int timeout_ms;		/* each call to the platform store; 0: 5000 */
	const char *file_dir;	/* the fallback's directory; NULL: agent_config_dir() */
	int no_file_fallback;	/* 1: never use the file (tests, policy) */
	int no_platform;	/* 1: skip the platform store (tests) */
} agent_secretstore_opts;

typedef struct agent_secretstore agent_secretstore;

/*
 * Open the stores: probe the platform store (bounded by timeout_ms) and
 * prepare the file fallback. Succeeds even when no platform store is
 * reachable (then only device keys can be kept, in the file, until a later
 * probe finds one); opts may be NULL. Free with agent_secretstore_free().
 */
int agent_secretstore_open(const agent_secretstore_opts *opts,
    agent_secretstore **out);
void agent_secretstore_free(agent_secretstore *s);

/*
 * 1 when the platform store answered its probe. One that did not is probed
 * again on use, at most every 30 s (a long-running agent may start before
 * the desktop's keyring does).
 */
int agent_secretstore_platform_available(agent_secretstore *s);
/* Why the platform store is not available ("" when it is). */
const char *agent_secretstore_platform_why(const agent_secretstore *s);
/* The platform store's name for people ("Secret Service"). */
const char *agent_secretstore_platform_name(const agent_secretstore *s);

/*
 * Store value under (kind, key), replacing what was there. label is what
 * the user sees in the keyring's manager ("qes: PIN of token ..."); it must
 * not contain the secret. *where_out (may be NULL) names the backend used.
 */
int agent_secret_store(agent_secretstore *s, agent_secret_kind kind,
    const char *key, const char *label, const qes_secret *value,
    const char **where_out);
/* The secret under (kind, key) into value (cleared first). */
int agent_secret_lookup(agent_secretstore *s, agent_secret_kind kind,
    const char *key, qes_secret *value);
/* Delete; QES_ERR_NOT_FOUND when there was nothing to delete. */
int agent_secret_delete(agent_secretstore *s, agent_secret_kind kind,
    const char *key);
/*
 * The keys (never the values) stored for kind, sorted, without duplicates.
 * *keys_out is a NULL-terminated array; free with agent_secret_keys_free().
 */
int agent_secret_list(agent_secretstore *s, agent_secret_kind kind,
    char ***keys_out, size_t *n_out);
void agent_secret_keys_free(char **keys);

/* Detail for the last error. Never NULL, never contains a secret. */
const char *agent_secretstore_errmsg(const agent_secretstore *s);

/* ---- what a backend provides (secretstore_*.c) ---- */

typedef struct agent_secret_backend {
	const char *name;
	void *ctx;
	/* each returns 0 or a QES_ERR_* and writes a sentence into msg */
	int (*store)(void *ctx, agent_secret_kind kind, const char *key,
	    const char *label, const qes_secret *value, char *msg, size_t msg_len);
	int (*lookup)(void *ctx, agent_secret_kind kind, const char *key,
	    qes_secret *value, char *msg, size_t msg_len);
	int (*delete)(void *ctx, agent_secret_kind kind, const char *key,
	    char *msg, size_t msg_len);
	/* append each key to keys with add_key */
	int (*list)(void *ctx, agent_secret_kind kind,
	    int (*add_key)(void *acc, const char *key), void *acc,
	    char *msg, size_t msg_len);
	void (*free)(void *ctx);
} agent_secret_backend;

/*
 * Backend constructors. The platform one probes its service within
 * timeout_ms and answers QES_ERR_UNAVAILABLE (msg says why) when it is not
 * reachable; *out is then NULL.
 */
int agent_secret_backend_libsecret(int timeout_ms, agent_secret_backend **out,
    char *msg, size_t msg_len);
int agent_secret_backend_file(const char *dir, agent_secret_backend **out,
    char *msg, size_t msg_len);
void agent_secret_backend_free(agent_secret_backend *b);

/* Is key acceptable (1..AGENT_SECRET_KEY_MAX printable ASCII bytes)? */
int agent_secret_key_valid(const char *key);

#endif
