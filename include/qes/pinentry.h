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

typedef struct qes_pinentry qes_pinentry;

typedef struct qes_pinentry_opts {
	const char *program;	/* path or name; NULL: $QES_PINENTRY, else "pinentry" */
	const char *tty_name;	/* OPTION ttyname; NULL: from the environment/tty */
	const char *tty_type;	/* OPTION ttytype; NULL: $TERM */
	const char *display;	/* OPTION display; NULL: $DISPLAY */
	int timeout_s;		/* SETTIMEOUT for each dialog; 0: no timeout */
	/*
	 * Optional, for dialogs another thread may need to close: called with
	 * the handle at the end of a successful qes_pinentry_open(), and with
	 * NULL at the start of qes_pinentry_free(), on the thread that opens
	 * and frees it. Between the two calls, and only then, the handle may
	 * be given to qes_pinentry_cancel() from any thread; the caller orders
	 * the two with its own lock (take it in attach, and around cancel).
	 */
	void (*attach)(void *arg, qes_pinentry *pe);
	void *attach_arg;
} qes_pinentry_opts;

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

/*
 * End the open dialog, and every later one, from any thread: the program is
 * sent SIGTERM at once and the dialog call in progress (or the next one)
 * returns QES_ERR_CANCELLED. The handle must still be attached (see
 * qes_pinentry_opts.attach); its owner frees it as usual, which reaps the
 * program. Safe to call more than once.
 */
void qes_pinentry_cancel(qes_pinentry *pe);

/* Detail for the last error. Never NULL. */
const char *qes_pinentry_errmsg(const qes_pinentry *pe);

#ifdef __cplusplus
}
#endif
#endif
