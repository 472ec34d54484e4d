/*
 * pinstore.h - the opt-in PIN store: policy, and the PIN source signing uses.
 *
 * The rules (security invariant 3 of the design) and where each is enforced:
 *  - Off until the user opts in, per token: nothing is stored unless the
 *    user runs `qes-agent pin remember --token SERIAL`, which checks the PIN
 *    by logging in to the token once first, so a wrong PIN is never stored.
 *  - Only in the OS secret store (secretstore.h refuses PINs anywhere else),
 *    keyed by token serial.
 *  - Can be switched off at any time in agent.conf:
 *      pin_storage = disabled          remember refuses; stored PINs are
 *                                      ignored (not even read) when signing;
 *                                      list and forget still work
 *      pin_policy = every_signature    "PIN for every signature": overrides
 *      pin_policy.SERIAL = ...         storage, for all tokens or for one
 *  - A stored PIN is not used when the token reports PIN count low, final
 *    try or locked, and one the token rejects is deleted at once and never
 *    tried again: both are the signer's job (qes_sign_local in libqes),
 *    which calls this store's rejected() hook. The hook deletes the item and
 *    also remembers the serial for the life of the process, so even a
 *    delete that failed (the keyring went away) cannot lead to a retry.
 *  - A PUK is never stored or requested: there is no code path for it.
 *    Unblocking a token is the token vendor's tool's job.
 *
 * Nothing here logs or prints a PIN; log lines carry the token serial only.
 */
#ifndef QES_AGENT_PINSTORE_H
#define QES_AGENT_PINSTORE_H

#include <stddef.h>

#include "qes/secret.h"
#include "qes/signer.h"

#include "agentconf.h"
#include "secretstore.h"

typedef struct agent_pinstore agent_pinstore;

/*
 * conf and store are borrowed and must outlive the pinstore; store may be
 * NULL (no secret store opened: lookups find nothing).
 */
int agent_pinstore_new(const agent_config *conf, agent_secretstore *store,
    agent_pinstore **out);
void agent_pinstore_free(agent_pinstore *ps);

/*
 * May a PIN for this token be stored and used? 0 when yes; otherwise
 * QES_ERR_UNSUPPORTED with a sentence (which switch says no) in why.
 */
int agent_pinstore_allowed(const agent_pinstore *ps, const char *serial,
    char *why, size_t why_len);

/*
 * Store a PIN that the caller has just proven correct with a login to the
 * token. label names the token for the keyring manager (never the PIN).
 */
int agent_pinstore_remember(agent_pinstore *ps, const char *serial,
    const char *token_label, const qes_secret *pin);
/* QES_ERR_NOT_FOUND when nothing was stored for serial. */
int agent_pinstore_forget(agent_pinstore *ps, const char *serial);
/* Forget every stored PIN; *n_out (may be NULL) counts them. */
int agent_pinstore_forget_all(agent_pinstore *ps, size_t *n_out);
/* Serials with a stored PIN (never the PINs); free with agent_secret_keys_free(). */
int agent_pinstore_list(agent_pinstore *ps, char ***serials_out, size_t *n_out);

/*
 * The PIN source for qes_sign_local(): lookup() obeys the policy and finds
 * nothing when storage is off, the policy asks every time, the store is
 * unreachable or slow, or the token's PIN was rejected earlier in this
 * process; rejected() deletes. src stays valid while ps does.
 */
void agent_pinstore_source(agent_pinstore *ps, qes_sign_pin_source *src);

/* Detail for the last error. Never NULL, never a PIN. */
const char *agent_pinstore_errmsg(const agent_pinstore *ps);

#endif
