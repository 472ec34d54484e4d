/*
 * qes-pinentry-probe.c - ask for a PIN through a real pinentry, for tests.
 *
 * Usage: qes-pinentry-probe PROGRAM TITLE DESCRIPTION [PROMPT]
 *
 * Runs one GETPIN through libqes and prints what a test may compare without
 * ever seeing the PIN: "pin-length=N sha256-prefix=XXXXXXXX" (the first four
 * bytes of SHA-256 of the PIN, in hex) and exit 0, or "cancelled" and exit 2.
 * Any other failure goes to stderr with exit 1. Integration tests run it
 * under tmux to drive pinentry-tty and pinentry-curses like a user would.
 */
#include <locale.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "qes/err.h"
#include "qes/pinentry.h"
#include "qes/secret.h"

int
main(int argc, char **argv)
{
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;
	qes_secret *pin = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int r, ret = 1;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: qes-pinentry-probe PROGRAM TITLE "
		    "DESCRIPTION [PROMPT]\n");
		return 1;
	}
	/* So the pinentry is told our LC_CTYPE, as the agent will do. */
	setlocale(LC_ALL, "");
	opts.program = argv[1];
	if ((pin = qes_secret_new(QES_PIN_MAX)) == NULL) {
		fprintf(stderr, "qes-pinentry-probe: out of memory\n");
		goto out;
	}
	if ((r = qes_pinentry_open(&opts, &pe)) != 0) {
		fprintf(stderr, "qes-pinentry-probe: cannot start %s: %s\n",
		    argv[1], qes_strerror(r));
		goto out;
	}
	r = qes_pinentry_getpin(pe, argv[2], argv[3],
	    argc == 5 ? argv[4] : NULL, NULL, pin);
	if (r == QES_ERR_CANCELLED) {
		printf("cancelled\n");
		ret = 2;
		goto out;
	}
	if (r != 0) {
		fprintf(stderr, "qes-pinentry-probe: %s (%s): %s\n",
		    qes_strerror(r), qes_errname(r), qes_pinentry_errmsg(pe));
		goto out;
	}
	if (EVP_Digest(qes_secret_data(pin), qes_secret_len(pin), md, &md_len,
	    EVP_sha256(), NULL) != 1 || md_len < 4) {
		fprintf(stderr, "qes-pinentry-probe: SHA-256 failed\n");
		goto out;
	}
	printf("pin-length=%zu sha256-prefix=%02x%02x%02x%02x\n",
	    qes_secret_len(pin), md[0], md[1], md[2], md[3]);
	ret = 0;
 out:
	qes_wipe(md, sizeof(md));
	qes_pinentry_free(pe);
	qes_secret_free(pin);
	return ret;
}
