/*
 * api.c - the libcurl transport of the qes API client (see api.h).
 *
 * Every request goes through cli_api_request(), which sets the same fixed
 * security options on a fresh easy handle state: TLS 1.3 and later only,
 * certificate chain and host name checked, https as the only protocol, no
 * redirects, a connect and a total timeout, and a cap on the response size
 * that aborts the transfer (not truncates it) when reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/tool.h"
#include "api.h"

struct cli_api {
	const char *prog;
	char base[CLI_API_URL_MAX];
	char *ca_file;
	long timeout_s;
	qes_secret *key;		/* the API key text */
	CURL *curl;
	struct curl_slist *auth;	/* "Authorization: Bearer ..." (secret) */
	char errbuf[CURL_ERROR_SIZE];
	int global_init;
};

/* What the write and header callbacks fill during one transfer. */
struct transfer {
	cli_response *resp;
	size_t max_bytes;
	int too_large;
	int alloc_failed;
};

int
cli_api_parse_opt(cli_api_opts *o, int ch, const char *arg)
{
	char *end;
	long v;

	switch (ch) {
	case CLI_API_OPT_SERVER:
		o->server = arg;
		return 1;
	case CLI_API_OPT_CA:
		o->ca_file = arg;
		return 1;
	case CLI_API_OPT_KEY_FILE:
		o->key_file = arg;
		return 1;
	case CLI_API_OPT_TIMEOUT:
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno != 0 || end == arg || *end != '\0' || v < 1 || v > 3600) {
			fprintf(stderr, "qes: --timeout takes 1..3600 seconds\n");
			return -1;
		}
		o->timeout_s = v;
		return 1;
	default:
		return 0;
	}
}

/*
 * Read the key from a file that only its owner can read. Opened first and
 * checked with fstat, so the file checked is the file read; symlinks are
 * refused (O_NOFOLLOW) so the check is about the key's own file.
 */
static int
load_key_file(cli_api *a, const char *path)
{
	char buf[CLI_API_KEY_MAX + 2];
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int fd, rc = QES_EXIT_FAILURE;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)) < 0) {
		fprintf(stderr, "%s: cannot open key file %s: %s\n", a->prog, path,
		    strerror(errno));
		return errno == ENOENT ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
	}
	if (fstat(fd, &st) != 0) {
		fprintf(stderr, "%s: key file %s: %s\n", a->prog, path,
		    strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "%s: key file %s is not a regular file\n", a->prog,
		    path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		fprintf(stderr, "%s: key file %s is accessible by group or others "
		    "(mode 0%o): run `chmod 600 %s`\n", a->prog, path,
		    (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		fprintf(stderr, "%s: key file %s belongs to another user\n",
		    a->prog, path);
		goto out;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "%s: reading key file %s: %s\n", a->prog,
			    path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (cli_api_key_text_ok(buf, len) != 0) {
		fprintf(stderr, "%s: key file %s does not hold one API key "
		    "(qes_...)\n", a->prog, path);
		goto out;
	}
	if (qes_secret_set(a->key, buf, len) != 0)
		goto out;
	rc = 0;
 out:
	qes_wipe(buf, sizeof(buf));
	close(fd);
	return rc;
}

/* $QES_API_KEY: copied, then wiped in place and removed from environ. */
static int
load_key_env(cli_api *a)
{
	char *v = getenv("QES_API_KEY");
	size_t len;
	int r;

	if (v == NULL || v[0] == '\0') {
		fprintf(stderr, "%s: no API key: set QES_API_KEY or use --key-file "
		    "FILE\n", a->prog);
		return QES_EXIT_USAGE;
	}
	len = strlen(v);
	r = cli_api_key_text_ok(v, len) == 0 ? qes_secret_set(a->key, v, len) :
	    QES_ERR_FORMAT;
	qes_wipe(v, len);
	unsetenv("QES_API_KEY");
	if (r != 0) {
		fprintf(stderr, "%s: QES_API_KEY does not hold an API key (qes_...)\n",
		    a->prog);
		return QES_EXIT_USAGE;
	}
	return 0;
}

/* The Authorization header as a curl list; the staging buffer is wiped. */
static int
make_auth_header(cli_api *a)
{
	static const char pfx[] = "Authorization: Bearer ";
	char hdr[sizeof(pfx) + CLI_API_KEY_MAX];
	size_t klen = qes_secret_len(a->key);
	int rc = QES_EXIT_FAILURE;

	if (klen >= CLI_API_KEY_MAX)
		return rc;
	memcpy(hdr, pfx, sizeof(pfx) - 1);
	memcpy(hdr + sizeof(pfx) - 1, qes_secret_data(a->key), klen);
	hdr[sizeof(pfx) - 1 + klen] = '\0';
	if ((a->auth = curl_slist_append(NULL, hdr)) != NULL)
		rc = 0;
	qes_wipe(hdr, sizeof(hdr));
	return rc;
}

/*
 * jansson's memory is wiped before it is freed: API responses carry new
 * API keys (create, rotate) and the request bodies are built in it too.
 */
static void
wiping_free(void *p)
{
	if (p != NULL) {
		qes_wipe(p, malloc_usable_size(p));
		free(p);
	}
}

void
cli_api_wipe_json_memory(void)
{
	json_set_alloc_funcs(malloc, wiping_free);
}

int
cli_api_open(const cli_api_opts *o, const char *prog, cli_api **out)
{
	const char *server, *ca, *why;
	cli_api *a = NULL;
	int rc = QES_EXIT_FAILURE;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		goto nomem;
	a->prog = prog;
	a->timeout_s = o->timeout_s > 0 ? o->timeout_s : CLI_API_DEFAULT_TIMEOUT_S;
	server = o->server != NULL ? o->server : getenv("QES_SERVER");
	if (cli_api_check_url(server, a->base, sizeof(a->base), &why) != 0) {
		fprintf(stderr, "%s: %s\n", prog, why);
		rc = QES_EXIT_USAGE;
		goto fail;
	}
	ca = o->ca_file != NULL ? o->ca_file : getenv("QES_CA");
	if (ca != NULL && ca[0] != '\0') {
		if (access(ca, R_OK) != 0) {
			fprintf(stderr, "%s: cannot read CA file %s: %s\n", prog, ca,
			    strerror(errno));
			rc = errno == ENOENT ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
			goto fail;
		}
		if ((a->ca_file = strdup(ca)) == NULL)
			goto nomem;
	}
	if ((a->key = qes_secret_new(CLI_API_KEY_MAX)) == NULL)
		goto nomem;
	if ((rc = o->key_file != NULL ? load_key_file(a, o->key_file) :
	    load_key_env(a)) != 0)
		goto fail;
	rc = QES_EXIT_FAILURE;
	if (make_auth_header(a) != 0)
		goto nomem;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: cannot initialise libcurl\n", prog);
		goto fail;
	}
	a->global_init = 1;
	if ((a->curl = curl_easy_init()) == NULL)
		goto nomem;
	*out = a;
	return 0;
 nomem:
	fprintf(stderr, "%s: out of memory\n", prog);
	rc = QES_EXIT_FAILURE;
 fail:
	cli_api_free(a);
	return rc;
}

void
cli_api_free(cli_api *a)
{
	struct curl_slist *l;

	if (a == NULL)
		return;
	if (a->curl != NULL)
		curl_easy_cleanup(a->curl);
	for (l = a->auth; l != NULL; l = l->next)
		if (l->data != NULL)
			qes_wipe(l->data, strlen(l->data));
	curl_slist_free_all(a->auth);
	qes_secret_free(a->key);
	free(a->ca_file);
	if (a->global_init)
		curl_global_cleanup();
	free(a);
}

void
cli_response_clear(cli_response *r)
{
	if (r == NULL)
		return;
	qes_buf_free(r->body);
	memset(r, 0, sizeof(*r));
}

int
cli_api_escape(qes_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	int r = 0;

	for (p = (const unsigned char *)s; *p != '\0' && r == 0; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		    *p == '_' || *p == '~')
			r = qes_buf_put_u8(b, *p);
		else if ((r = qes_buf_put_u8(b, '%')) == 0 &&
		    (r = qes_buf_put_u8(b, (uint8_t)hex[*p >> 4])) == 0)
			r = qes_buf_put_u8(b, (uint8_t)hex[*p & 15]);
	}
	return r;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;

	if (n > t->max_bytes - qes_buf_len(t->resp->body)) {
		t->too_large = 1;
		return 0;	/* aborts with CURLE_WRITE_ERROR */
	}
	if (qes_buf_put(t->resp->body, data, n) != 0) {
		t->alloc_failed = 1;
		return 0;
	}
	return n;
}

/* Copy a header's value (trimmed) into dst if the line is "name: value". */
static void
header_value(const char *line, size_t len, const char *name, char *dst,
    size_t dstlen)
{
	size_t nl = strlen(name), vlen;
	const char *v;
	char tmp[256];

	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	v = line + nl + 1;
	vlen = len - nl - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
	    v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (vlen >= sizeof(tmp))
		vlen = sizeof(tmp) - 1;
	memcpy(tmp, v, vlen);
	tmp[vlen] = '\0';
	cli_sanitize(tmp, dst, dstlen);
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;

	header_value(data, n, "content-type", t->resp->content_type,
	    sizeof(t->resp->content_type));
	header_value(data, n, "x-request-id", t->resp->request_id,
	    sizeof(t->resp->request_id));
	header_value(data, n, "next-cursor", t->resp->next_cursor,
	    sizeof(t->resp->next_cursor));
	header_value(data, n, "retry-after", t->resp->retry_after,
	    sizeof(t->resp->retry_after));
	return n;
}

/* A message for a failed transfer, with the exit code. */
static int
transport_error(cli_api *a, CURLcode cc, const struct transfer *t)
{
	const char *detail = a->errbuf[0] != '\0' ? a->errbuf :
	    curl_easy_strerror(cc);

	if (t->too_large) {
		fprintf(stderr, "%s: the response is larger than %zu bytes: "
		    "refused\n", a->prog, t->max_bytes);
		return QES_EXIT_FAILURE;
	}
	if (t->alloc_failed) {
		fprintf(stderr, "%s: out of memory\n", a->prog);
		return QES_EXIT_FAILURE;
	}
	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		fprintf(stderr, "%s: TLS: the server's certificate is not trusted "
		    "(it must chain to the CA file and name the host in %s): %s\n",
		    a->prog, a->base, detail);
		break;
	case CURLE_SSL_CONNECT_ERROR:
		fprintf(stderr, "%s: TLS handshake with %s failed (qes requires "
		    "TLS 1.3): %s\n", a->prog, a->base, detail);
		break;
	case CURLE_SSL_CACERT_BADFILE:
		fprintf(stderr, "%s: TLS: cannot use the CA file: %s\n", a->prog,
		    detail);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		fprintf(stderr, "%s: %s did not answer within %ld s: %s\n", a->prog,
		    a->base, a->timeout_s, detail);
		break;
	default:
		fprintf(stderr, "%s: cannot reach %s: %s\n", a->prog, a->base,
		    detail);
		break;
	}
	return CLI_EXIT_CONNECT;
}

int
cli_api_request(cli_api *a, const char *method, const char *path,
    const json_t *body, const char *accept, size_t max_bytes,
    cli_response *resp)
{
	return cli_api_request_hdr(a, method, path, body, NULL, accept, max_bytes,
	    resp);
}

int
cli_api_request_hdr(cli_api *a, const char *method, const char *path,
    const json_t *body, const char *header, const char *accept,
    size_t max_bytes, cli_response *resp)
{
	char url[CLI_API_URL_MAX + 1024], accept_hdr[160];
	struct curl_slist *hdrs = NULL, *l;
	struct transfer t;
	char *json = NULL;
	CURLcode cc;
	int rc = QES_EXIT_FAILURE, n;

	memset(resp, 0, sizeof(*resp));
	memset(&t, 0, sizeof(t));
	t.resp = resp;
	t.max_bytes = max_bytes > 0 ? max_bytes : CLI_API_JSON_MAX;
	if (strncmp(path, "/v1/", 4) != 0)
		return QES_EXIT_USAGE;
	n = snprintf(url, sizeof(url), "%s%s", a->base, path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		fprintf(stderr, "%s: request URL too long\n", a->prog);
		return QES_EXIT_USAGE;
	}
	if ((resp->body = qes_buf_new_secret()) == NULL)
		goto nomem;
	qes_buf_set_max(resp->body, t.max_bytes);
	snprintf(accept_hdr, sizeof(accept_hdr), "Accept: %s",
	    accept != NULL ? accept : "application/json");
	/* the secret Authorization line comes first, shared, never freed here */
	hdrs = curl_slist_append(NULL, accept_hdr);
	if (hdrs == NULL)
		goto nomem;
	if (body != NULL) {
		if ((json = json_dumps(body, JSON_COMPACT)) == NULL ||
		    (l = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL)
			goto nomem;
		hdrs = l;
	}
	if (header != NULL) {
		if (strchr(header, '\r') != NULL || strchr(header, '\n') != NULL) {
			fprintf(stderr, "%s: a request header with a line break\n", a->prog);
			rc = QES_EXIT_USAGE;
			goto out;
		}
		if ((l = curl_slist_append(hdrs, header)) == NULL)
			goto nomem;
		hdrs = l;
	}
	/* chain our headers after the auth entry for this request only */
	a->auth->next = hdrs;

	curl_easy_reset(a->curl);
	a->errbuf[0] = '\0';
	if (curl_easy_setopt(a->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_SSLVERSION,
	    (long)(CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_DEFAULT)) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    (a->ca_file != NULL &&
	    curl_easy_setopt(a->curl, CURLOPT_CAINFO, a->ca_file) != CURLE_OK) ||
	    curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)CLI_API_CONNECT_TIMEOUT_MS) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, a->timeout_s * 1000L) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->errbuf) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "qes/" QES_VERSION) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, a->auth) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, &t) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_HEADERDATA, &t) != CURLE_OK ||
	    curl_easy_setopt(a->curl, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)t.max_bytes) != CURLE_OK) {
		fprintf(stderr, "%s: libcurl refused an option (is it built with "
		    "TLS 1.3 support?)\n", a->prog);
		goto out;
	}
	if (strcmp(method, "GET") == 0) {
		if (curl_easy_setopt(a->curl, CURLOPT_HTTPGET, 1L) != CURLE_OK)
			goto out;
	} else if (json != NULL) {
		if (curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, json) != CURLE_OK ||
		    curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)strlen(json)) != CURLE_OK)
			goto out;
	} else if (strcmp(method, "POST") == 0) {
		if (curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, "") != CURLE_OK ||
		    curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)0) != CURLE_OK)
			goto out;
	}
	/* POST follows from the body options; other methods are named */
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
	    curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK)
		goto out;

	if ((cc = curl_easy_perform(a->curl)) != CURLE_OK) {
		if (cc == CURLE_FILESIZE_EXCEEDED)
			t.too_large = 1;
		rc = transport_error(a, cc, &t);
		goto out;
	}
	curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &resp->status);
	rc = 0;
	goto out;
 nomem:
	fprintf(stderr, "%s: out of memory\n", a->prog);
	rc = QES_EXIT_FAILURE;
 out:
	/* detach our per-request headers from the shared auth entry */
	if (a->auth != NULL)
		a->auth->next = NULL;
	curl_slist_free_all(hdrs);
	if (json != NULL) {
		qes_wipe(json, strlen(json));
		free(json);
	}
	if (rc != 0)
		cli_response_clear(resp);
	return rc;
}

int
cli_api_report(const cli_response *r)
{
	char msg[1400];
	int rc;

	rc = cli_api_problem_text(r->status, qes_buf_data(r->body),
	    qes_buf_len(r->body), r->request_id, msg, sizeof(msg));
	fprintf(stderr, "qes: %s\n", msg);
	if ((r->status == 429 || r->status == 503) && r->retry_after[0] != '\0')
		fprintf(stderr, "qes: retry after %s s\n", r->retry_after);
	return rc;
}

int
cli_api_json(const char *prog, const cli_response *r, json_t **out)
{
	json_error_t jerr;

	*out = NULL;
	if (r->status < 200 || r->status >= 300)
		return cli_api_report(r);
	if (qes_buf_len(r->body) == 0 ||
	    (*out = json_loadb((const char *)qes_buf_data(r->body),
	    qes_buf_len(r->body), JSON_REJECT_DUPLICATES, &jerr)) == NULL ||
	    !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		fprintf(stderr, "%s: the server sent an unexpected response "
		    "(HTTP %ld, not a JSON object; request id %s)\n", prog,
		    r->status, r->request_id[0] != '\0' ? r->request_id : "none");
		return QES_EXIT_FAILURE;
	}
	return 0;
}
