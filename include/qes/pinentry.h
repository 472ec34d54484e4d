/*
 * pinentry.h - ask the signer for a PIN and consent through a pinentry program.
 *
 * qes does not draw its own dialog: it speaks the Assuan protocol to the
 * standard pinentry programs (pinentry-gnome3, -qt, -tty, -curses, -mac,
 * -w32), so each desktop gets its platform's dialog and terminal users get a
 * terminal prompt. The PIN arrives in a qes_secret; it never touches a
 * qes_buf or a string. Cancel in the dialog is QES_ERR_CANCELLED.
 */
#ifndef QES_PINENTRY_H
#define QES_PINENTRY_H

#include "qes/secret.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qes_pinentry_opts {
	const char *program;	/* path or name; NULL: $QES_PINENTRY, else "pinentry" */
	const char *tty_name;	/* OPTION ttyname; NULL: from the environment/tty */
	const char *tty_type;	/* OPTION ttytype; NULL: $TERM */
	const char *display;	/* OPTION display; NULL: $DISPLAY */
	int timeout_s;		/* SETTIMEOUT for each dialog; 0: no timeout */
} qes_pinentry_opts;

typedef struct qes_pinentry qes_pinentry;

/* Start the program and read its greeting. */
int qes_pinentry_open(const qes_pinentry_opts *opts, qes_pinentry **out);
/* Send BYE, reap the process, free. NULL is a no-op. */
void qes_pinentry_free(qes_pinentry *pe);

/*
 * Ask for a PIN. title/description/prompt are shown as given (escaped for
 * Assuan here); error (may be NULL) is shown above the prompt, e.g. after a
 * wrong PIN. The PIN goes into pin (cleared first).
 * QES_ERR_CANCELLED when the user cancels, QES_ERR_TIMEOUT when the dialog
 * timed out, QES_ERR_PINENTRY when the program misbehaves or dies.
 */
int qes_pinentry_getpin(qes_pinentry *pe, const char *title,
    const char *description, const char *prompt, const char *error,
    qes_secret *pin);

/* Ask a yes/no question: 0 for OK, QES_ERR_CANCELLED for Cancel/No. */
int qes_pinentry_confirm(qes_pinentry *pe, const char *title,
    const char *description, const char *ok_label, const char *cancel_label);

/* Show a message with one button (e.g. "enter the PIN on the reader"). */
int qes_pinentry_message(qes_pinentry *pe, const char *title,
    const char *description);

/* Detail for the last error. Never NULL. */
const char *qes_pinentry_errmsg(const qes_pinentry *pe);

#ifdef __cplusplus
}
#endif
#endif
