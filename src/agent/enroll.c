/*
 * enroll.c - `qes-agent enroll`: give this desktop a device identity at a qesd.
 *
 * The steps, in the order that keeps a failure harmless:
 *   1. check the arguments, the configuration directory and the CA file, and
 *      refuse to replace an existing identity unless --force;
 *   2. generate the device key (P-256, devkey.c) in memory;
 *   3. POST /v1/devices/enroll with the one-time code and the public key,
 *      over libcurl pinned to TLS 1.3 with verification on, trusting exactly
 *      the --ca file (nothing else) or, without --ca, the system store;
 *   4. only when the server said 201: store the private key (Secret Service,
 *      or a 0600 file where none is reachable, with a warning), the CA copy
 *      and enrollment.json; with --force, delete the old identity's key last.
 * A refused code leaves everything as it was, and the old identity is never
 * touched before the new one is complete.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"
#include "qes/tool.h"

#include "agent.h"
#include "agentconf.h"
#include "devkey.h"
#include "enrollment.h"
#include "secretstore.h"

#define ENROLL_PATH		"/v1/devices/enroll"
#define ENROLL_TIMEOUT_S	30
#define RESPONSE_MAX_BYTES	(64 * 1024)
#define CODE_MAX		256
#define NAME_MAX_BYTES		128
#define DEFAULT_SECRET_TIMEOUT_MS 5000

static void
usage(FILE *f)
{
	fputs("usage: qes-agent enroll --server https://HOST[:PORT] --code CODE\n"
	    "                        [--ca FILE] [--name NAME] [--config DIR] [--force]\n"
	    "\n"
	    "Register this desktop as a device of your organisation's qes server.\n"
	    "An administrator creates the one-time CODE (POST /v1/enrollments).\n"
	    "\n"
	    "  --server URL   the qes server, https only\n"
	    "  --code CODE    the enrollment code (single use, expires soon)\n"
	    "  --ca FILE      trust only this CA (PEM) for the server, now and in\n"
	    "                 every later `qes-agent run`; a copy is kept. Without\n"
	    "                 it, the system trust store is used, now and later.\n"
	    "  --name NAME    a name for this device in the server's device list\n"
	    "  --config DIR   keep the enrollment in DIR (default $XDG_CONFIG_HOME/qes)\n"
	    "  --force        replace an existing enrollment (the old device key is\n"
	    "                 deleted once the new enrollment is complete)\n"
	    "\n"
	    "The device key is an ECDSA P-256 key kept in the Secret Service (a 0600\n"
	    "file in the configuration directory where no Secret Service runs).\n"
	    "Exit codes: 0 enrolled, 1 failure, 2 usage, 3 the code was not accepted.\n", f);
}

struct http_reply {
	long status;
	qes_buf *body;
	int too_big;
	char content_type[128];
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct http_reply *rep = arg;

	if (qes_buf_put(rep->body, data, size * n) != 0) {
		rep->too_big = 1;
		return 0;
	}
	return size * n;
}

/*
 * POST body to url. ca_pem NULL: the system store. Only TLS 1.3, only
 * https, no redirects, verification on. err gets curl's reason.
 */
static int
http_post(const char *url, const qes_buf *ca_pem, const char *body,
    struct http_reply *rep, char *err, size_t err_len)
{
	struct curl_slist *hdrs = NULL;
	struct curl_blob blob;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *ct = NULL;
	CURLcode cc;
	CURL *c;
	int r = QES_ERR_IO;

	if ((c = curl_easy_init()) == NULL)
		return QES_ERR_ALLOC;
	if ((hdrs = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL ||
	    (hdrs = curl_slist_append(hdrs, "Accept: application/json, "
	    "application/problem+json")) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLVERSION,
	    (long)(CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_DEFAULT)) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ENROLL_TIMEOUT_S * 1000L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT, "qes-agent/" QES_VERSION) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)strlen(body)) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, rep) != CURLE_OK) {
		snprintf(err, err_len, "cannot set up the HTTPS client");
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if (ca_pem != NULL) {
		/* exactly this CA: no bundle, no directory of the system's */
		blob.data = (void *)qes_buf_data(ca_pem);
		blob.len = qes_buf_len(ca_pem);
		blob.flags = CURL_BLOB_COPY;
		if (curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob) != CURLE_OK ||
		    curl_easy_setopt(c, CURLOPT_CAINFO, NULL) != CURLE_OK ||
		    curl_easy_setopt(c, CURLOPT_CAPATH, NULL) != CURLE_OK) {
			snprintf(err, err_len, "this libcurl cannot take a CA from memory");
			r = QES_ERR_UNSUPPORTED;
			goto out;
		}
	}
	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		if (rep->too_big)
			snprintf(err, err_len, "the server's answer is larger than %d bytes",
			    RESPONSE_MAX_BYTES);
		else
			snprintf(err, err_len, "%s", errbuf[0] != '\0' ? errbuf :
			    curl_easy_strerror(cc));
		r = cc == CURLE_OPERATION_TIMEDOUT ? QES_ERR_TIMEOUT : QES_ERR_IO;
		goto out;
	}
	(void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rep->status);
	if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
		snprintf(rep->content_type, sizeof(rep->content_type), "%s", ct);
	r = 0;
 out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return r;
}

/* A string member of a JSON answer, printable, for messages; NULL if absent. */
static const char *
answer_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	size_t i;

	if (s == NULL || strlen(s) > 512)
		return NULL;
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return NULL;
	return s;
}

/* Tell the user why the server said no; the exit code. */
static int
report_refusal(const struct http_reply *rep)
{
	const char *title = NULL, *detail = NULL;
	json_t *doc = NULL;

	doc = json_loadb((const char *)qes_buf_data(rep->body), qes_buf_len(rep->body),
	    0, NULL);
	if (json_is_object(doc)) {
		title = answer_str(doc, "title");
		detail = answer_str(doc, "detail");
	}
	fprintf(stderr, "qes-agent enroll: the server refused the enrollment "
	    "(HTTP %ld): %s%s%s%s\n", rep->status,
	    title != NULL ? title : "no reason given",
	    detail != NULL ? " (" : "", detail != NULL ? detail : "",
	    detail != NULL ? ")" : "");
	json_decref(doc);
	switch (rep->status) {
	case 401: case 403: case 404: case 409: case 410:
		fprintf(stderr, "qes-agent enroll: enrollment codes are single-use and "
		    "expire soon: ask your administrator for a new one\n");
		return QES_EXIT_NOT_FOUND;
	default:
		return QES_EXIT_FAILURE;
	}
}

static int
build_body(const char *code, const agent_devkey *key, const char *name,
    char **out)
{
	char os[QES_PROTO_NAME_MAX + 1];
	qes_buf *der = NULL, *b64 = NULL;
	const char *b64s;
	json_t *o = NULL;
	int r = QES_ERR_ALLOC;

	*out = NULL;
	agent_os_describe(os, sizeof(os));
	if ((der = qes_buf_new()) == NULL || (b64 = qes_buf_new()) == NULL)
		goto out;
	if ((r = agent_devkey_public_der(key, der)) != 0 ||
	    (r = qes_proto_b64url_encode(qes_buf_data(der), qes_buf_len(der), b64)) != 0 ||
	    (r = qes_buf_cstr(b64, &b64s)) != 0)
		goto out;
	r = QES_ERR_ALLOC;
	if ((o = json_pack("{s:s, s:s, s:s, s:s}", "code", code, "public_key", b64s,
	    "agent_version", QES_VERSION, "os", os)) == NULL)
		goto out;
	if (name != NULL && json_object_set_new(o, "name", json_string(name)) != 0)
		goto out;
	if ((*out = json_dumps(o, JSON_COMPACT)) == NULL)
		goto out;
	r = 0;
 out:
	json_decref(o);
	qes_buf_free(der);
	qes_buf_free(b64);
	return r;
}

/* The 201 answer into e; a sentence in err when it is not what we expect. */
static int
parse_answer(const struct http_reply *rep, agent_enrollment *e, char *err,
    size_t err_len)
{
	json_t *doc;
	const char *dev, *ten, *name;
	int r = QES_ERR_FORMAT;

	doc = json_loadb((const char *)qes_buf_data(rep->body), qes_buf_len(rep->body),
	    JSON_REJECT_DUPLICATES, NULL);
	dev = json_string_value(json_object_get(doc, "device_id"));
	ten = json_string_value(json_object_get(doc, "tenant_id"));
	name = json_string_value(json_object_get(doc, "server_name"));
	if (!json_is_object(doc) || dev == NULL || ten == NULL || name == NULL ||
	    !qes_proto_id_ok(dev) || !qes_proto_id_ok(ten) ||
	    strlen(name) > QES_PROTO_HOST_MAX) {
		snprintf(err, err_len, "the server's answer lacks a valid device_id, "
		    "tenant_id or server_name");
		goto out;
	}
	/*
	 * The device signs challenges for the host it dials; a server that
	 * calls itself something else would make every session fail later.
	 */
	if (strcmp(name, e->host) != 0) {
		if (snprintf(err, err_len, "the server calls itself \"%s\" but was "
		    "reached as \"%s\": enroll with --server https://%s:%u",
		    name, e->host, name, e->port) < 0)
			err[0] = '\0';
		goto out;
	}
	memcpy(e->device_id, dev, strlen(dev) + 1);
	memcpy(e->tenant_id, ten, strlen(ten) + 1);
	memcpy(e->server_name, name, strlen(name) + 1);
	r = 0;
 out:
	json_decref(doc);
	return r;
}

struct enroll_args {
	const char *server, *code, *ca, *name, *config;
	int force;
};

static int
parse_args(int argc, char **argv, struct enroll_args *a)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "code", required_argument, NULL, 'c' },
		{ "ca", required_argument, NULL, 'a' },
		{ "name", required_argument, NULL, 'n' },
		{ "config", required_argument, NULL, 'C' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:c:a:n:C:fh", opts, NULL)) != -1) {
		switch (ch) {
		case 's': a->server = optarg; break;
		case 'c': a->code = optarg; break;
		case 'a': a->ca = optarg; break;
		case 'n': a->name = optarg; break;
		case 'C': a->config = optarg; break;
		case 'f': a->force = 1; break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc || a->server == NULL || a->code == NULL) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (a->code[0] == '\0' || strlen(a->code) > CODE_MAX) {
		fprintf(stderr, "qes-agent enroll: the code must have 1 to %d characters\n",
		    CODE_MAX);
		return QES_EXIT_USAGE;
	}
	if (a->name != NULL && !qes_proto_display_text_ok(a->name, NAME_MAX_BYTES, 0, 0)) {
		fprintf(stderr, "qes-agent enroll: --name must be 1 to %d bytes of "
		    "plain one-line text\n", NAME_MAX_BYTES);
		return QES_EXIT_USAGE;
	}
	return 0;
}

int
agent_cmd_enroll(int argc, char **argv)
{
	struct enroll_args a;
	struct http_reply rep = { 0 };
	agent_enrollment e, old;
	agent_secretstore_opts so = { 0 };
	agent_secretstore *store = NULL;
	agent_config *conf = NULL;
	agent_devkey *key = NULL;
	qes_buf *ca_pem = NULL;
	const char *where = NULL;
	char dir[PATH_MAX], err[768] = "", url[AGENT_URL_MAX + 32];
	char *body = NULL, conf_path[PATH_MAX + 16];
	int r, rc = QES_EXIT_FAILURE, have_old;
	time_t now;
	struct tm tm;

	if ((r = parse_args(argc, argv, &a)) != 0)
		return r < 0 ? QES_EXIT_OK : r;
	memset(&e, 0, sizeof(e));
	if (agent_server_url_parse(a.server, e.server_url, sizeof(e.server_url),
	    e.host, sizeof(e.host), &e.port, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		return QES_EXIT_USAGE;
	}
	if (agent_state_dir(a.config, 1, dir, sizeof(dir), err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		return QES_EXIT_FAILURE;
	}
	snprintf(conf_path, sizeof(conf_path), "%s/%s", dir, AGENT_CONFIG_FILE);
	if (agent_config_load(conf_path, &conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		goto out;
	}
	r = agent_enrollment_load(dir, &old, err, sizeof(err));
	have_old = r == 0;
	if (r != 0 && r != QES_ERR_NOT_FOUND && !a.force) {
		fprintf(stderr, "qes-agent enroll: %s\n(use --force to replace it)\n", err);
		goto out;
	}
	if (have_old && !a.force) {
		fprintf(stderr, "qes-agent enroll: already enrolled as device %s at %s "
		    "(since %s). To replace this identity, run again with --force.\n",
		    old.device_id, old.server_url, old.enrolled_at);
		goto out;
	}
	if (a.ca != NULL && agent_ca_read(a.ca, &ca_pem, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		goto out;
	}
	e.system_trust = ca_pem == NULL;

	if ((r = agent_devkey_generate(&key)) != 0 ||
	    (r = build_body(a.code, key, a.name, &body)) != 0) {
		fprintf(stderr, "qes-agent enroll: cannot make the device key: %s\n",
		    qes_strerror(r));
		goto out;
	}
	if ((rep.body = qes_buf_new()) == NULL)
		goto out;
	qes_buf_set_max(rep.body, RESPONSE_MAX_BYTES);
	snprintf(url, sizeof(url), "%s%s", e.server_url, ENROLL_PATH);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "qes-agent enroll: cannot initialise libcurl\n");
		goto out;
	}
	r = http_post(url, ca_pem, body, &rep, err, sizeof(err));
	curl_global_cleanup();
	if (r != 0) {
		fprintf(stderr, "qes-agent enroll: %s: %s\n", e.server_url, err);
		goto out;
	}
	if (rep.status != 201) {
		rc = report_refusal(&rep);
		goto out;
	}
	if (parse_answer(&rep, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		goto out;
	}

	/* the server has the public key: now keep the private one */
	so.timeout_ms = (int)agent_config_get_uint(conf, "secret_service_timeout_ms",
	    DEFAULT_SECRET_TIMEOUT_MS);
	so.file_dir = dir;
	snprintf(e.key_name, sizeof(e.key_name), "%s", e.device_id);
	if ((r = agent_secretstore_open(&so, &store)) != 0 ||
	    (r = agent_devkey_save(key, store, e.key_name, &where)) != 0) {
		fprintf(stderr, "qes-agent enroll: the server registered device %s, but "
		    "its key could not be stored: %s. Fix that and enroll again with a "
		    "new code.\n", e.device_id, store != NULL ?
		    agent_secretstore_errmsg(store) : qes_strerror(r));
		goto out;
	}
	if (ca_pem != NULL && agent_ca_install(dir, ca_pem, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		goto out;
	}
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(e.enrolled_at, sizeof(e.enrolled_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (agent_enrollment_save(dir, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent enroll: %s\n", err);
		goto out;
	}
	if (have_old && strcmp(old.key_name, e.key_name) != 0 &&
	    (r = agent_devkey_delete(store, old.key_name)) != 0 && r != QES_ERR_NOT_FOUND)
		fprintf(stderr, "qes-agent enroll: warning: the old device key %s could "
		    "not be deleted: %s\n", old.key_name, agent_secretstore_errmsg(store));
	if (where != NULL && strcmp(where, "file") == 0)
		fprintf(stderr, "qes-agent enroll: warning: no Secret Service is "
		    "reachable (%s); the device key is in a 0600 file in %s\n",
		    agent_secretstore_platform_why(store), dir);
	printf("enrolled: device %s of tenant %s at %s\n"
	    "  server certificate trusted through %s\n"
	    "  device key in the %s\n"
	    "  configuration in %s\n"
	    "Start the agent with `qes-agent run` (or the qes-agent systemd user unit).\n",
	    e.device_id, e.tenant_id, e.server_url,
	    e.system_trust ? "the system trust store" : "the CA given with --ca (copied)",
	    where != NULL && strcmp(where, "file") == 0 ? "fallback file (0600)" :
	    "Secret Service", dir);
	rc = fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
 out:
	free(body);
	qes_buf_free(rep.body);
	qes_buf_free(ca_pem);
	agent_devkey_free(key);
	agent_secretstore_free(store);
	agent_config_free(conf);
	return rc;
}
