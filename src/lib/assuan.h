/*
 * assuan.h - private helpers for the Assuan line protocol (used by pinentry.c).
 *
 * Assuan is line based: a line is at most 1000 bytes including its LF, and
 * text that could break the framing ('%', CR, LF) travels as %XX. These
 * helpers are split out of pinentry.c so the unit tests and the fuzz target
 * can reach them; they are not part of the public API.
 */
#ifndef QES_ASSUAN_H
#define QES_ASSUAN_H

#include <stddef.h>

#include "qes/buf.h"
#include "qes/secret.h"

/* Longest line we send, including the LF (the Assuan limit). */
#define QES_ASSUAN_LINE_MAX 1000
/* Longest line we accept: libassuan's ASSUAN_LINELENGTH (1000 + CR LF). */
#define QES_ASSUAN_LINE_IN_MAX 1002

/*
 * Append in to out with '%', every control character (CR and LF included)
 * and DEL escaped as %XX, and a leading space too (the Assuan server eats
 * the blanks in front of an argument). Bytes >= 0x80 pass unchanged so
 * UTF-8 stays readable. On error out may hold a partial result.
 */
int qes_assuan_escape(const char *in, qes_buf *out);

/*
 * The same, but append at most max_bytes. Text that does not fit is cut at
 * a character boundary (never inside a UTF-8 sequence or a %XX escape) and
 * ends with an ellipsis; *truncated (may be NULL) says whether that
 * happened. max_bytes must leave room for the ellipsis (3 bytes).
 */
int qes_assuan_escape_max(const char *in, size_t max_bytes, qes_buf *out,
    int *truncated);

/*
 * Decode the percent escapes of len bytes of Assuan data (a D line without
 * its "D ") and append the result to out, without an intermediate copy.
 * QES_ERR_FORMAT for a malformed escape or a NUL byte (a PIN with a NUL
 * could not be handed to code that treats PINs as C strings),
 * QES_ERR_LIMIT when out is full. On any error out is cleared.
 */
int qes_assuan_unescape_into_secret(const char *in, size_t len,
    qes_secret *out);

#endif
