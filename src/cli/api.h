/*
 * api.h - the HTTPS client of the qes command for the qesd REST API.
 *
 * One small handle over libcurl with the security settings fixed inside the
 * constructor, libtls-style, so no command can forget or weaken them:
 * TLS 1.3 only, peer and host name verification always on (there is no
 * option to turn them off), https:// URLs only, no redirects, bounded
 * responses and timeouts. The CA file comes from --ca or $QES_CA (else the
 * system store), the server from --server or $QES_SERVER.
 *
 * The API key comes from $QES_API_KEY or from --key-file FILE - never from
 * a command-line value, which any user could read in ps. A key file must be
 * a regular file of the caller, readable by nobody else (like ssh keys).
 * The key lives in one qes_secret and in curl's header list, both wiped
 * when the handle is freed; the environment copy is wiped once read.
 *
 * Errors of the server arrive as RFC 9457 problem details and are printed
 * as "qes: <title>: <detail> (<type>, request id <id>)"; cli_api_exit_code()
 * maps a status to the exit codes below. Everything the server sends is
 * stripped of control characters before it reaches the terminal.
 */
#ifndef QES_CLI_API_H
#define QES_CLI_API_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "qes/buf.h"

/*
 * Exit codes of the API commands, after the shared ones of qes/tool.h
 * (0 ok, 1 failure, 2 usage - also a request the server found invalid,
 * 3 not found, 9 audit chain broken, 13 certificate chain not trusted).
 */
#define CLI_EXIT_AUTH		10	/* 401/403: key missing, invalid, revoked, expired, or lacking a scope */
#define CLI_EXIT_CONNECT	11	/* cannot reach the server, or TLS failed (certificate, host name, version) */
#define CLI_EXIT_BUSY		12	/* 429 or 503: retry later */

#define CLI_API_JSON_MAX	((size_t)16 * 1024 * 1024)	/* one JSON response */
#define CLI_API_PAGE_MAX	((size_t)256 * 1024 * 1024)	/* one export page */
#define CLI_API_KEY_MAX		256	/* longest API key accepted from env or file */
#define CLI_API_URL_MAX		2048
#define CLI_API_DEFAULT_TIMEOUT_S 60
#define CLI_API_CONNECT_TIMEOUT_MS 10000

/* What a command takes from the common options (see CLI_API_OPTIONS). */
typedef struct cli_api_opts {
	const char *server;	/* --server; NULL: $QES_SERVER */
	const char *ca_file;	/* --ca; NULL: $QES_CA, else the system store */
	const char *key_file;	/* --key-file; NULL: $QES_API_KEY */
	long timeout_s;		/* --timeout; 0: CLI_API_DEFAULT_TIMEOUT_S */
} cli_api_opts;

/* getopt_long entries and help text shared by every API command. */
#define CLI_API_OPT_SERVER	0x1001
#define CLI_API_OPT_CA		0x1002
#define CLI_API_OPT_KEY_FILE	0x1003
#define CLI_API_OPT_TIMEOUT	0x1004
#define CLI_API_OPTIONS							\
	{ "server", required_argument, NULL, CLI_API_OPT_SERVER },	\
	{ "ca", required_argument, NULL, CLI_API_OPT_CA },		\
	{ "key-file", required_argument, NULL, CLI_API_OPT_KEY_FILE },	\
	{ "timeout", required_argument, NULL, CLI_API_OPT_TIMEOUT }
#define CLI_API_OPTIONS_HELP						\
	"  --server URL          qesd base URL, https only (default $QES_SERVER)\n" \
	"  --ca FILE             CA certificates to trust, PEM (default $QES_CA,\n" \
	"                        else the system store)\n"			\
	"  --key-file FILE       read the API key from FILE (mode 0600); default:\n" \
	"                        $QES_API_KEY. Never pass a key as an argument.\n" \
	"  --timeout SECONDS     per request (default 60)\n"
/* ... then the exit codes; a command may add its own in between */
#define CLI_API_EXIT_HELP(extra)					\
	"\n"								\
	"Exit codes: 0 ok, 1 failure, 2 usage or invalid request, 3 not found,\n" \
	extra								\
	"10 authentication or permission refused, 11 server unreachable or TLS\n" \
	"failure, 12 rate-limited or server busy.\n"

/*
 * Handle a common option in a getopt loop: 1 when ch was one (stored in
 * o), 0 when not, -1 on a bad value (message printed).
 */
int cli_api_parse_opt(cli_api_opts *o, int ch, const char *arg);

typedef struct cli_api cli_api;

/*
 * Make jansson wipe every block before freeing it (responses hold new
 * keys). Call once, before any JSON is built: main.c does it for the API
 * commands.
 */
void cli_api_wipe_json_memory(void);

/*
 * Check the options, load the key, set up curl. 0, or an exit code with a
 * message printed on stderr (prog prefixes it: "qes keys list").
 */
int cli_api_open(const cli_api_opts *o, const char *prog, cli_api **out);
/* Wipes the key; NULL is a no-op. */
void cli_api_free(cli_api *a);

/* One response. Free with cli_response_clear(). */
typedef struct cli_response {
	long status;
	qes_buf *body;			/* wiped on free (it may carry a new key) */
	char content_type[128];
	char request_id[72];
	char next_cursor[128];		/* Next-Cursor header, "" if none */
	char retry_after[16];
} cli_response;

void cli_response_clear(cli_response *r);

/*
 * Send one request. method "GET", "POST", "DELETE"; path starts with
 * "/v1/" and is already escaped (cli_api_escape); body (may be NULL) is
 * sent as application/json; accept NULL means application/json. The
 * response body is kept up to max_bytes (0: CLI_API_JSON_MAX).
 * Returns 0 when a response arrived (any status), else an exit code with
 * the message printed (transport, TLS, size limit).
 */
int cli_api_request(cli_api *a, const char *method, const char *path,
    const json_t *body, const char *accept, size_t max_bytes,
    cli_response *resp);

/*
 * cli_api_request with one more header line, e.g. "Idempotency-Key: ..."
 * (NULL: none; a line break in it is refused).
 */
int cli_api_request_hdr(cli_api *a, const char *method, const char *path,
    const json_t *body, const char *header, const char *accept,
    size_t max_bytes, cli_response *resp);

/*
 * Print an error response as "qes: <problem text>" on stderr (with the
 * Retry-After hint for 429/503) and return its exit code.
 */
int cli_api_report(const cli_response *r);

/*
 * Parse a successful JSON response body into *out (json_decref it). An
 * error status is reported (cli_api_report) and returned as exit code; a
 * body that is not a JSON object is QES_EXIT_FAILURE with a message.
 */
int cli_api_json(const char *prog, const cli_response *r, json_t **out);

/* Append s percent-encoded (RFC 3986 unreserved kept) to b. */
int cli_api_escape(qes_buf *b, const char *s);

/* ---- pure helpers (tests/unit/test_cli_api.c) ---- */

/* Exit code for an HTTP status. */
int cli_api_exit_code(long status);

/*
 * Describe an error response in out (always NUL-terminated):
 * "<title>: <detail> (<type>, request id <id>)" for a problem document,
 * else "HTTP <status> (request id <id>)". Server text is cleaned of
 * control characters and bounded. Returns cli_api_exit_code(status).
 */
int cli_api_problem_text(long status, const uint8_t *body, size_t len,
    const char *request_id_header, char *out, size_t outlen);

/* Copy at most outlen-1 bytes of s, replacing control characters (and
 * DEL) with '?'; multi-byte UTF-8 is kept whole or dropped. */
void cli_sanitize(const char *s, char *out, size_t outlen);

/*
 * Check a server URL: https:// (any case), a host, no user info, query,
 * fragment, whitespace or control characters, at most CLI_API_URL_MAX - 64
 * bytes. Copies it without a trailing '/' into out. 0 or QES_ERR_FORMAT
 * with *why (static) set.
 */
int cli_api_check_url(const char *url, char *out, size_t outlen,
    const char **why);

/* 1 when s is an acceptable path segment id: 1..128 of [A-Za-z0-9._~-]. */
int cli_api_id_ok(const char *s);

/*
 * Check an API key's text: "qes_" then 1.. printable ASCII characters
 * without spaces, at most CLI_API_KEY_MAX - 1 bytes. 0 or QES_ERR_FORMAT.
 * (The server parses it strictly; this only keeps junk out of headers.)
 */
int cli_api_key_text_ok(const char *key, size_t len);

#endif
