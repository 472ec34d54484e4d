/*
 * sign_remote.h - `qes sign --remote`: an AdES signature made through qesd
 * by a credential on a signer's desktop; the document stays here, only its
 * signature's digest travels (sign_remote.c).
 */
#ifndef QES_CLI_SIGN_REMOTE_H
#define QES_CLI_SIGN_REMOTE_H

#include "api.h"
#include "sign_ades.h"

typedef struct cli_remote_opts {
	const cli_api_opts *api;	/* --server, --ca, --key-file, --timeout */
	const char *credential;		/* crd_... */
	const char *title;		/* shown to the signer */
	const char *description;	/* NULL: none */
	qes_md md;
	qes_sig_scheme scheme;
	int scheme_set;			/* 0: by the certificate's key type */
} cli_remote_opts;

/* Sign o->in into o->out; returns a qes exit code, messages printed. */
int cli_sign_remote(const cli_ades_opts *o, const cli_remote_opts *ro);

#endif
