/*
 * assuan.c - escaping and unescaping for the Assuan line protocol.
 *
 * Outgoing text (dialog titles, descriptions, certificate subjects that came
 * from a token) is escaped so that nothing in it can end the line early and
 * smuggle a second command to the pinentry. Incoming data lines carry the
 * PIN, so they are decoded straight into a qes_secret through a bounded
 * cursor: no decoded byte ever sits in an ordinary buffer.
 */
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"

#include "assuan.h"

/* U+2026 HORIZONTAL ELLIPSIS; pinentry expects UTF-8 text. */
static const char ellipsis[] = "\xe2\x80\xa6";
#define ELLIPSIS_LEN (sizeof(ellipsis) - 1)

static int
needs_escape(unsigned char ch, int at_start)
{
	return ch == '%' || ch < 0x20 || ch == 0x7f || (at_start && ch == ' ');
}

/*
 * Bytes of the character that starts at in[0]: the byte and the UTF-8
 * continuation bytes after it (at most three, so invalid input cannot make
 * one "character" swallow the rest of the text).
 */
static size_t
char_len(const unsigned char *in, size_t avail)
{
	size_t n = 1;

	while (n < avail && n < 4 && (in[n] & 0xc0) == 0x80)
		n++;
	return n;
}

static size_t
escaped_len(const unsigned char *in, size_t n, size_t pos)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++)
		len += needs_escape(in[i], pos + i == 0) ? 3 : 1;
	return len;
}

static int
put_escaped(qes_buf *out, const unsigned char *in, size_t n, size_t pos)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[3];
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		if (!needs_escape(in[i], pos + i == 0)) {
			if ((r = qes_buf_put_u8(out, in[i])) != 0)
				return r;
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[in[i] >> 4];
		esc[2] = hex[in[i] & 0xf];
		if ((r = qes_buf_put(out, esc, sizeof(esc))) != 0)
			return r;
	}
	return 0;
}

int
qes_assuan_escape_max(const char *in, size_t max_bytes, qes_buf *out,
    int *truncated)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n, i, clen, elen, used = 0, budget;
	int cut, r;

	if (truncated != NULL)
		*truncated = 0;
	if (in == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	n = strlen(in);
	cut = escaped_len(s, n, 0) > max_bytes;
	if (!cut)
		return put_escaped(out, s, n, 0);
	if (max_bytes < ELLIPSIS_LEN)
		return QES_ERR_INVALID_ARG;
	budget = max_bytes - ELLIPSIS_LEN;
	if ((r = qes_buf_reserve(out, max_bytes)) != 0)
		return r;
	for (i = 0; i < n; i += clen) {
		clen = char_len(s + i, n - i);
		elen = escaped_len(s + i, clen, i);
		if (elen > budget - used)
			break;
		if ((r = put_escaped(out, s + i, clen, i)) != 0)
			return r;
		used += elen;
	}
	if ((r = qes_buf_put(out, ellipsis, ELLIPSIS_LEN)) != 0)
		return r;
	if (truncated != NULL)
		*truncated = 1;
	return 0;
}

int
qes_assuan_escape(const char *in, qes_buf *out)
{
	return qes_assuan_escape_max(in, SIZE_MAX, out, NULL);
}

static int
hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int
qes_assuan_unescape_into_secret(const char *in, size_t len, qes_secret *out)
{
	qes_cursor c, scan;
	const uint8_t *run, *hex;
	uint8_t ch = 0, byte = 0;
	size_t run_len;
	int hi = 0, lo = 0, r = QES_ERR_INVALID_ARG;

	if (in == NULL || out == NULL)
		goto out;
	qes_cursor_init(&c, in, len);
	while (qes_cursor_remaining(&c) > 0) {
		/* A run of literal bytes goes into the secret in one piece. */
		scan = c;
		run_len = 0;
		while (qes_cursor_get_u8(&scan, &ch) == 0 && ch != '%') {
			if (ch == '\0') {
				r = QES_ERR_FORMAT;
				goto out;
			}
			run_len++;
		}
		if (run_len > 0) {
			if ((r = qes_cursor_get_bytes(&c, run_len, &run)) != 0 ||
			    (r = qes_secret_append(out, run, run_len)) != 0)
				goto out;
			continue;
		}
		/* Now at a '%': exactly two hex digits must follow. */
		r = QES_ERR_FORMAT;
		if (qes_cursor_skip(&c, 1) != 0 ||
		    qes_cursor_get_bytes(&c, 2, &hex) != 0 ||
		    (hi = hexval(hex[0])) < 0 || (lo = hexval(hex[1])) < 0)
			goto out;
		byte = (uint8_t)(hi << 4 | lo);
		if (byte == '\0')
			goto out;
		if ((r = qes_secret_append(out, &byte, 1)) != 0)
			goto out;
	}
	r = 0;
 out:
	qes_wipe(&ch, sizeof(ch));
	qes_wipe(&byte, sizeof(byte));
	qes_wipe(&hi, sizeof(hi));
	qes_wipe(&lo, sizeof(lo));
	if (r != 0 && out != NULL)
		qes_secret_clear(out);
	return r;
}
