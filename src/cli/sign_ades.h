/*
 * sign_ades.h - `qes sign --format ...`: an AdES signature with a local
 * token, through the two-phase API of include/qes/sign.h. sign.c parses
 * the command line, finds the credential and calls this.
 */
#ifndef QES_CLI_SIGN_ADES_H
#define QES_CLI_SIGN_ADES_H

#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/signer.h"

typedef struct cli_ades_opts {
	const char *format;		/* pades | cades | xades | jades */
	const char *level;		/* B-B (default) .. B-LTA */
	const char *packaging;		/* NULL: the format's default */
	const char *in, *out;
	const char *tsa_url, *tsa_ca, *tsa_untrusted, *tsa_policy;
	const char *ocsp_url, *crl_url, *revocation;	/* revocation: mode */
	const char *trust;		/* PEM bundle: chain and trust anchors */
	const char *field, *reason, *location;	/* PAdES */
	const char *doc_name, *mime;	/* XAdES detached reference, media type */
	long timeout_ms;		/* outbound HTTP; 0: the library's default */
} cli_ades_opts;

/*
 * Has the digest of a prepared signature signed: sets *sig and *siglen (owned
 * by arg, alive until the function returns to its caller's caller) or
 * returns non-zero with its message printed.
 */
typedef int (*cli_ades_sign_fn)(void *arg, qes_md md, qes_sig_scheme scheme,
    const uint8_t *digest, size_t len, const uint8_t **sig, size_t *siglen);

/*
 * Sign o->in as an AdES signature into o->out for the certificate signer:
 * prepare, have fn sign the one digest, finish (timestamp and validation
 * data added here). *sign_failed is set when fn failed (it said why);
 * other failures are printed here. On success prints "signed IN: FORMAT
 * LEVEL ..., MD SCHEME by "CN" <by> -> OUT".
 */
int cli_sign_ades_with(const cli_ades_opts *o, const qes_cert *signer, qes_md md,
    qes_sig_scheme scheme, cli_ades_sign_fn fn, void *arg, const char *by,
    int *sign_failed);

/*
 * Sign o->in as an AdES signature into o->out with credential c of token t.
 * req carries md, scheme, title and requester; the digest is filled here.
 * Returns a QES_ERR_*; *token_failed is set when the failure came from the
 * token job (res then says why: PIN, cancel), messages are printed here
 * otherwise.
 */
int cli_sign_ades(const cli_ades_opts *o, qes_p11 *p, const qes_p11_token *t,
    const qes_p11_cred *c, qes_sign_request *req, const qes_pinentry_opts *pe,
    qes_sign_result *res, int *token_failed);

#endif
