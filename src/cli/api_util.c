/*
 * api_util.c - the pure parts of the qes API client (see api.h): problem
 * details to text, exit codes, URL, id and key text checks, and cleaning
 * server text before it reaches a terminal.
 *
 * Nothing here does I/O, so tests/unit/test_cli_api.c drives it directly.
 * A hostile or broken server controls every byte of a problem document;
 * the worst it may achieve here is a truncated, '?'-studded message.
 */
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "qes/err.h"
#include "qes/tool.h"
#include "api.h"

#define FIELD_MAX 400		/* one piece of server text in a message */

int
cli_api_exit_code(long status)
{
	if (status >= 200 && status < 300)
		return QES_EXIT_OK;
	switch (status) {
	case 400:
	case 413:
	case 414:
	case 415:
	case 422:
	case 431:
		return QES_EXIT_USAGE;
	case 401:
	case 403:
		return CLI_EXIT_AUTH;
	case 404:
		return QES_EXIT_NOT_FOUND;
	case 429:
	case 503:
		return CLI_EXIT_BUSY;
	default:
		return QES_EXIT_FAILURE;
	}
}

/* Length of the UTF-8 sequence at s (1..4) if valid and printable, else 0. */
static size_t
utf8_seq(const unsigned char *s, size_t avail)
{
	size_t n, i;

	if (s[0] < 0x80)
		return s[0] >= 0x20 && s[0] != 0x7f ? 1 : 0;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > avail)
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	/* C1 controls U+0080..U+009F, which some terminals obey */
	if (s[0] == 0xc2 && s[1] < 0xa0)
		return 0;
	return n;
}

void
cli_sanitize(const char *s, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, i = 0, o = 0, n;

	if (out == NULL || outlen == 0)
		return;
	out[0] = '\0';
	if (s == NULL)
		return;
	len = strlen(s);
	while (i < len && o + 1 < outlen) {
		if ((n = utf8_seq(p + i, len - i)) == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, p + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
}

static const char *
json_str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

int
cli_api_problem_text(long status, const uint8_t *body, size_t len,
    const char *request_id_header, char *out, size_t outlen)
{
	char title[FIELD_MAX], detail[FIELD_MAX], type[FIELD_MAX], rid[80];
	const char *t, *d, *ty, *id;
	json_t *j = NULL;

	if (out == NULL || outlen == 0)
		return cli_api_exit_code(status);
	out[0] = '\0';
	if (body != NULL && len > 0 && len <= CLI_API_JSON_MAX)
		j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
	t = json_is_object(j) ? json_str(j, "title") : NULL;
	ty = json_is_object(j) ? json_str(j, "type") : NULL;
	d = json_is_object(j) ? json_str(j, "detail") : NULL;
	id = json_is_object(j) ? json_str(j, "request_id") : NULL;
	if (id == NULL)
		id = request_id_header;
	cli_sanitize(id != NULL && id[0] != '\0' ? id : "none", rid, sizeof(rid));
	if (t != NULL && ty != NULL) {
		cli_sanitize(t, title, sizeof(title));
		cli_sanitize(ty, type, sizeof(type));
		cli_sanitize(d, detail, sizeof(detail));
		if (detail[0] != '\0')
			snprintf(out, outlen, "%s: %s (%s, request id %s)", title,
			    detail, type, rid);
		else
			snprintf(out, outlen, "%s (%s, request id %s)", title, type,
			    rid);
	} else {
		snprintf(out, outlen, "the server answered HTTP %ld without a "
		    "problem description (request id %s)", status, rid);
	}
	json_decref(j);
	return cli_api_exit_code(status);
}

int
cli_api_check_url(const char *url, char *out, size_t outlen, const char **why)
{
	const char *host, *p;
	size_t len;

	*why = NULL;
	if (url == NULL || url[0] == '\0') {
		*why = "no server URL: set QES_SERVER or use --server https://HOST:PORT";
		return QES_ERR_FORMAT;
	}
	len = strlen(url);
	if (len > CLI_API_URL_MAX - 64 || len >= outlen) {
		*why = "the server URL is too long";
		return QES_ERR_FORMAT;
	}
	if (strncasecmp(url, "https://", 8) != 0) {
		*why = "the server URL must start with https:// (qes speaks TLS 1.3 only)";
		return QES_ERR_FORMAT;
	}
	for (p = url; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			*why = "the server URL contains spaces or control characters";
			return QES_ERR_FORMAT;
		}
		if (*p == '?' || *p == '#') {
			*why = "the server URL must not have a query or fragment";
			return QES_ERR_FORMAT;
		}
	}
	host = url + 8;
	if (*host == '\0' || *host == '/' || *host == ':') {
		*why = "the server URL has no host";
		return QES_ERR_FORMAT;
	}
	for (p = host; *p != '\0' && *p != '/'; p++)
		if (*p == '@') {
			*why = "the server URL must not carry user information";
			return QES_ERR_FORMAT;
		}
	memcpy(out, url, len + 1);
	while (len > 8 && out[len - 1] == '/')
		out[--len] = '\0';
	return 0;
}

int
cli_api_id_ok(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
		    c == '-'))
			return 0;
	}
	/* "." and ".." would be collapsed by the server's path handling */
	return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int
cli_api_key_text_ok(const char *key, size_t len)
{
	size_t i;

	if (key == NULL || len <= 4 || len >= CLI_API_KEY_MAX ||
	    memcmp(key, "qes_", 4) != 0)
		return QES_ERR_FORMAT;
	for (i = 0; i < len; i++)
		if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
			return QES_ERR_FORMAT;
	return 0;
}
