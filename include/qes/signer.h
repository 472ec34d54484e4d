/*
 * signer.h - one signing job on a local token, with the signer in the loop.
 *
 * This is the desktop half of every signature qes makes: open the token,
 * show the signer what is being signed and ask for the PIN through pinentry
 * (once for the whole batch), log in, sign every digest, check every value
 * against the certificate before handing it out, log out and wipe the PIN.
 * The CLI (`qes sign`) and the agent's sign handler both run it, so the
 * rules below hold everywhere:
 *  - one PIN per job: the token is logged out at the end, never kept open;
 *  - a PIN-pad reader or vendor dialog (protected authentication path) is
 *    never asked for a PIN by qes: the signer confirms, then types it on the
 *    device, exactly once;
 *  - a token that reports its PIN locked is not tried;
 *  - a wrong PIN is reported with the token's retry flags; the signer may be
 *    asked again (at most max_pin_attempts, and never once the token reports
 *    it is on its final try unless the signer sees that warning);
 *  - a remembered PIN (pin_source, the agent's opt-in store) replaces only
 *    the typing: the signer still confirms the same dialog. It is not used
 *    while the token reports PIN count low, final try or locked; one the
 *    token rejects is handed to rejected() at once (the source deletes it),
 *    never tried again, and the signer is asked for the PIN instead.
 */
#ifndef QES_SIGNER_H
#define QES_SIGNER_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/secret.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Where a PIN may come from instead of the dialog. lookup() fills pin and
 * returns 0, or returns non-zero when it has none to offer (the signer is
 * then asked). rejected() is called at once when the token refuses that PIN,
 * or it cannot be a PIN for this token; the source must forget it. Both are
 * required; they run on the signing job's thread.
 */
typedef struct qes_sign_pin_source {
	int (*lookup)(void *arg, const char *serial, qes_secret *pin);
	void (*rejected)(void *arg, const char *serial);
	void *arg;
} qes_sign_pin_source;

typedef struct qes_sign_request {
	const char *requester;		/* who asks, e.g. "qes command line" or tenant/app */
	const char *title;		/* what, one line */
	const char *description;	/* optional detail, may be NULL */
	const char *verification_code;	/* optional 4-digit code to show, may be NULL */
	qes_sig_scheme scheme;
	qes_md md;
	const uint8_t *const *digests;	/* n_digests digests of qes_md_len(md) bytes */
	size_t n_digests;
	int ecdsa_raw;			/* give ECDSA values as r||s instead of DER */
	int max_pin_attempts;		/* 0: 3 (a rejected remembered PIN counts) */
	const qes_sign_pin_source *pin_source;	/* optional; NULL: always ask */
	/*
	 * Optional: called once, on the signing thread, when the signer has
	 * consented and the token has accepted the login (PIN, remembered PIN
	 * or the reader's PIN pad), after the dialog closed and before the
	 * first signature is made. The agent tells its gateway with it.
	 */
	void (*consented)(void *arg);
	void *consented_arg;
} qes_sign_request;

typedef struct qes_sign_result {
	qes_buf **sigs;			/* n_digests signature values, caller frees */
	size_t n_sigs;
	unsigned token_flags;		/* QES_TOK_* after the job (retry counters) */
	char errmsg[256];		/* detail on failure; never contains a PIN */
} qes_sign_result;

/*
 * Sign every digest of req with credential c on token t (both from an
 * inventory of p). The PIN comes from pinentry (opts); ui_out may be NULL.
 * On success result->sigs holds one value per digest.
 */
int qes_sign_local(qes_p11 *p, const qes_p11_token *t, const qes_p11_cred *c,
    const qes_sign_request *req, const qes_pinentry_opts *opts,
    qes_sign_result *result);
void qes_sign_result_clear(qes_sign_result *result);

/*
 * The dialog text for a request (token, certificate subject, requester,
 * title, digest prefix, number of documents, verification code), as shown
 * by qes_sign_local. Appended to out.
 */
int qes_sign_describe(const qes_p11_token *t, const qes_p11_cred *c,
    const qes_sign_request *req, qes_buf *out);

#ifdef __cplusplus
}
#endif
#endif
