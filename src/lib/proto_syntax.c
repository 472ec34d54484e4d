/*
 * proto_syntax.c - the small syntax rules qes.v1 is made of: ids, host
 * names, strict UTF-8 and the display-text rule (what a signer reads must
 * not contain characters that hide or reorder text), canonical base64url
 * without padding, and the escaping that makes untrusted text safe to put
 * in an error message.
 *
 * Each function takes a pointer and an explicit length and reads only
 * inside it; none allocates. They are shared by the schema engine
 * (proto_schema.c), the exported helpers of proto.h and the auth encoding.
 */
#include <arpa/inet.h>
#include <string.h>

#include "qes/err.h"
#include "proto_priv.h"

void
pf_escape(const char *s, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (outlen == 0)
		return;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (o + 8 >= outlen) {		/* room for "\xHH" and "..." */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}

/* ---- syntax checks -------------------------------------------------------- */

int
pf_id_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > QES_PROTO_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

/* lower-case LDH labels joined by dots, or an IPv4/IPv6 literal (no brackets) */
int
pf_host_ok(const char *s, size_t len)
{
	char tmp[QES_PROTO_HOST_MAX + 1];
	unsigned char addr[16];
	size_t i, label = 0;
	int colon = 0;

	if (len == 0 || len > QES_PROTO_HOST_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] == ':')
			colon = 1;
	if (colon) {
		for (i = 0; i < len; i++)
			if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
			    s[i] == ':' || s[i] == '.'))
				return 0;
		memcpy(tmp, s, len);
		tmp[len] = '\0';
		return inet_pton(AF_INET6, tmp, addr) == 1;
	}
	for (i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return 0;
		if (ch == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[len - 1] != '-';
}

/* Next code point of strict UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int
utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
	unsigned char b = s[*i];
	uint32_t v, min;
	size_t n, k;

	if (b < 0x80) {
		*cp = b;
		(*i)++;
		return 0;
	}
	if (b >= 0xc2 && b <= 0xdf) {
		n = 1;
		v = b & 0x1fu;
		min = 0x80;
	} else if (b >= 0xe0 && b <= 0xef) {
		n = 2;
		v = b & 0x0fu;
		min = 0x800;
	} else if (b >= 0xf0 && b <= 0xf4) {
		n = 3;
		v = b & 0x07u;
		min = 0x10000;
	} else {
		return -1;
	}
	if (len - *i <= n)
		return -1;
	for (k = 1; k <= n; k++) {
		unsigned char c = s[*i + k];

		if ((c & 0xc0) != 0x80)
			return -1;
		v = v << 6 | (c & 0x3fu);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return -1;
	*cp = v;
	*i += n + 1;
	return 0;
}

int
pf_utf8_ok(const char *s, size_t len)
{
	size_t i = 0;
	uint32_t cp;

	while (i < len)
		if (utf8_next((const unsigned char *)s, len, &i, &cp) != 0 || cp == 0)
			return 0;
	return 1;
}

const char *
pf_text_problem(const char *s, size_t len, int multiline, size_t *at, uint32_t *cp)
{
	size_t i = 0;
	uint32_t v;

	*cp = 0;
	while (i < len) {
		*at = i;
		if (utf8_next((const unsigned char *)s, len, &i, &v) != 0)
			return "invalid UTF-8";
		*cp = v;
		if (v == '\n' && multiline)
			continue;
		if (v < 0x20 || (v >= 0x7f && v <= 0x9f))
			return "control character";
		/* characters that reorder or hide what the signer reads */
		if (v == 0x061c || v == 0x200e || v == 0x200f ||
		    (v >= 0x202a && v <= 0x202e) || (v >= 0x2066 && v <= 0x2069))
			return "bidirectional control character";
		if (v == 0x2028 || v == 0x2029)
			return "line or paragraph separator";
		if (v == 0xfeff || (v >= 0xfff9 && v <= 0xfffb))
			return "invisible formatting character";
	}
	*cp = 0;
	return NULL;
}

/* ---- base64url ------------------------------------------------------------ */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_val(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

size_t
pf_b64url_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void
pf_b64url_encode(const uint8_t *data, size_t n, char *dst)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
		dst[o++] = b64url_chars[v >> 18 & 63];
		dst[o++] = b64url_chars[v >> 12 & 63];
		dst[o++] = b64url_chars[v >> 6 & 63];
		dst[o++] = b64url_chars[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)data[i] << 16;
		dst[o++] = b64url_chars[v >> 18 & 63];
		dst[o++] = b64url_chars[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
		dst[o++] = b64url_chars[v >> 18 & 63];
		dst[o++] = b64url_chars[v >> 12 & 63];
		dst[o++] = b64url_chars[v >> 6 & 63];
	}
	dst[o] = '\0';
}

int
pf_b64url_decode(const char *s, size_t len, uint8_t *dst, size_t *dst_len)
{
	size_t i, o = 0, rem = len % 4;
	uint32_t v = 0;
	int d;

	if (rem == 1)
		return QES_ERR_FORMAT;
	for (i = 0; i < len; i++) {
		if ((d = b64url_val(s[i])) < 0)
			return QES_ERR_FORMAT;
		v = v << 6 | (uint32_t)d;
		if (i % 4 == 3) {
			dst[o++] = (uint8_t)(v >> 16);
			dst[o++] = (uint8_t)(v >> 8);
			dst[o++] = (uint8_t)v;
			v = 0;
		}
	}
	/* the unused low bits of the last character must be zero (canonical) */
	if (rem == 2) {
		if (v & 0x0f)
			return QES_ERR_FORMAT;
		dst[o++] = (uint8_t)(v >> 4);
	} else if (rem == 3) {
		if (v & 0x03)
			return QES_ERR_FORMAT;
		dst[o++] = (uint8_t)(v >> 10);
		dst[o++] = (uint8_t)(v >> 2);
	}
	*dst_len = o;
	return 0;
}
