/*
 * enrollment.c - the saved enrollment and the server's CA (see enrollment.h).
 *
 * The JSON file is small and ours, but it decides which server and which
 * trust anchor the agent believes, so it is read as strictly as a protocol
 * message: owner and mode first, a size limit, then every field by name,
 * type and syntax, with unknown fields refused.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"

#include "agentconf.h"
#include "enrollment.h"

#define ENROLLMENT_MAX_BYTES	(64 * 1024)
#define CA_MAX_CERTS		100

static void errf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A message into a fixed buffer; a long path just makes it shorter. */
static void
errf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* A directory we can trust with a device's identity. */
static int
check_dir(const char *dir, char *err, size_t err_len)
{
	struct stat st;

	if (stat(dir, &st) != 0) {
		errf(err, err_len, "%s: %s", dir, strerror(errno));
		return errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		errf(err, err_len, "%s: not a directory", dir);
		return QES_ERR_IO;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		errf(err, err_len, "%s: refusing a directory that is not ours or "
		    "that others can write (owner uid %u, mode %04o): chmod 700 it",
		    dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		return QES_ERR_IO;
	}
	return 0;
}

int
agent_state_dir(const char *dir_opt, int create, char *out, size_t out_len,
    char *err, size_t err_len)
{
	char parent[PATH_MAX], *slash;
	int r;

	if (dir_opt != NULL) {
		if (dir_opt[0] == '\0' ||
		    (size_t)snprintf(out, out_len, "%s", dir_opt) >= out_len) {
			errf(err, err_len, "invalid configuration directory");
			return QES_ERR_INVALID_ARG;
		}
	} else if ((r = agent_config_dir(out, out_len)) != 0) {
		errf(err, err_len, "no configuration directory ($XDG_CONFIG_HOME "
		    "and $HOME unset): give one with --config DIR");
		return r;
	}
	/* drop trailing slashes, so messages and joined paths read well */
	while (strlen(out) > 1 && out[strlen(out) - 1] == '/')
		out[strlen(out) - 1] = '\0';
	if (create && mkdir(out, 0700) != 0 && errno == ENOENT) {
		/* ~/.config may not exist yet on a fresh account: one level up */
		snprintf(parent, sizeof(parent), "%s", out);
		if ((slash = strrchr(parent, '/')) != NULL && slash != parent) {
			*slash = '\0';
			(void)mkdir(parent, 0700);
		}
		(void)mkdir(out, 0700);
	}
	if ((r = check_dir(out, err, err_len)) != 0)
		return r;
	/* absolute from here on: the file store and the logs want it so */
	if (realpath(out, parent) == NULL || strlen(parent) >= out_len) {
		errf(err, err_len, "%s: cannot resolve the path", out);
		return QES_ERR_IO;
	}
	memcpy(out, parent, strlen(parent) + 1);
	return 0;
}

int
agent_server_url_parse(const char *url, char *norm, size_t norm_len,
    char *host, size_t host_len, unsigned *port, char *err, size_t err_len)
{
	const char *p, *h, *hend, *pend;
	unsigned long v;
	char *end;
	size_t n, i;
	int bracket = 0;

	*port = 443;
	if (url == NULL || strncasecmp(url, "https://", 8) != 0) {
		errf(err, err_len, "the server URL must start with https://");
		return QES_ERR_FORMAT;
	}
	h = url + 8;
	if (*h == '[') {
		bracket = 1;
		h++;
		if ((hend = strchr(h, ']')) == NULL) {
			errf(err, err_len, "the server URL has an unclosed '['");
			return QES_ERR_FORMAT;
		}
		p = hend + 1;
	} else {
		hend = h + strcspn(h, ":/?#@");
		p = hend;
	}
	n = (size_t)(hend - h);
	if (n == 0 || n >= host_len || n > QES_PROTO_HOST_MAX) {
		errf(err, err_len, "the server URL has no host, or a host that is "
		    "too long");
		return QES_ERR_FORMAT;
	}
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];

		if (!(isalnum(ch) || ch == '.' || ch == '-' || (bracket && ch == ':'))) {
			errf(err, err_len, "the server URL's host has a character "
			    "that is not allowed (user info, spaces, ... are not)");
			return QES_ERR_FORMAT;
		}
		host[i] = (char)tolower(ch);
	}
	host[n] = '\0';
	if (host[n - 1] == '.')		/* "qes.example.com." is the same host */
		host[n - 1] = '\0';
	if (*p == ':') {
		errno = 0;
		v = strtoul(p + 1, &end, 10);
		if (errno != 0 || end == p + 1 || v == 0 || v > 65535 ||
		    !isdigit((unsigned char)p[1])) {
			errf(err, err_len, "the server URL has an invalid port");
			return QES_ERR_FORMAT;
		}
		*port = (unsigned)v;
		p = end;
	}
	pend = p;
	if (*pend == '/')
		pend++;
	if (*pend != '\0') {
		errf(err, err_len, "give the server as https://HOST[:PORT] "
		    "without a path, query or user name");
		return QES_ERR_FORMAT;
	}
	if ((size_t)snprintf(norm, norm_len, "https://%s%s%s:%u", bracket ? "[" : "",
	    host, bracket ? "]" : "", *port) >= norm_len) {
		errf(err, err_len, "the server URL is too long");
		return QES_ERR_LIMIT;
	}
	return 0;
}

/* Read a small file that only we can have written. */
static int
read_own_file(const char *path, size_t max, qes_buf **out, char *err, size_t err_len)
{
	struct stat st;
	qes_buf *b = NULL;
	uint8_t chunk[4096];
	ssize_t n;
	int fd, r;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return QES_ERR_NOT_FOUND;
		errf(err, err_len, "%s: %s", path, strerror(errno));
		return QES_ERR_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		errf(err, err_len, "%s: not a regular file", path);
		r = QES_ERR_IO;
		goto out;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		errf(err, err_len, "%s: refusing a file that is not ours or that "
		    "others can write (owner uid %u, mode %04o)", path,
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		r = QES_ERR_IO;
		goto out;
	}
	if ((b = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	qes_buf_set_max(b, max);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			errf(err, err_len, "%s: %s", path, strerror(errno));
			r = QES_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		if ((r = qes_buf_put(b, chunk, (size_t)n)) != 0) {
			errf(err, err_len, "%s: larger than %zu bytes", path, max);
			goto out;
		}
	}
	*out = b;
	b = NULL;
	r = 0;
 out:
	qes_buf_free(b);
	close(fd);
	return r;
}

/* Copy a JSON string member into dst; 0, or QES_ERR_FORMAT naming it. */
static int
get_str(json_t *o, const char *key, char *dst, size_t dst_len, int (*ok)(const char *),
    char *err, size_t err_len)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (!json_is_string(v) || (s = json_string_value(v)) == NULL ||
	    strlen(s) >= dst_len || (ok != NULL && !ok(s))) {
		errf(err, err_len, "field \"%s\" is missing or invalid", key);
		return QES_ERR_FORMAT;
	}
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int
key_name_ok(const char *s)
{
	return agent_secret_key_valid(s);
}

static int
nonempty(const char *s)
{
	return s[0] != '\0';
}

int
agent_enrollment_load(const char *dir, agent_enrollment *e, char *err, size_t err_len)
{
	static const char *const known[] = { "server", "server_name", "device_id",
	    "tenant_id", "ca", "key_name", "enrolled_at", NULL };
	char path[PATH_MAX], msg[256] = "", host[QES_PROTO_HOST_MAX + 1];
	char ca[64], url[AGENT_URL_MAX];
	qes_buf *b = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	const char *key;
	json_t *val;
	size_t i;
	int r;

	memset(e, 0, sizeof(*e));
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    AGENT_ENROLLMENT_FILE) >= sizeof(path)) {
		errf(err, err_len, "configuration path too long");
		return QES_ERR_LIMIT;
	}
	if ((r = read_own_file(path, ENROLLMENT_MAX_BYTES, &b, msg, sizeof(msg))) != 0) {
		if (r == QES_ERR_NOT_FOUND)
			errf(err, err_len, "not enrolled (no %s): run `qes-agent "
			    "enroll --server URL --code CODE` first", path);
		else
			errf(err, err_len, "%s", msg);
		return r;
	}
	root = json_loadb((const char *)qes_buf_data(b), qes_buf_len(b),
	    JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		errf(msg, sizeof(msg), "not a JSON object");
		r = QES_ERR_FORMAT;
		goto out;
	}
	json_object_foreach(root, key, val) {
		for (i = 0; known[i] != NULL && strcmp(known[i], key) != 0; i++)
			;
		if (known[i] == NULL) {
			errf(msg, sizeof(msg), "unknown field \"%.64s\"", key);
			r = QES_ERR_FORMAT;
			goto out;
		}
	}
	if ((r = get_str(root, "server", e->server_url, sizeof(e->server_url), NULL,
	    msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "server_name", e->server_name, sizeof(e->server_name),
	    nonempty, msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "device_id", e->device_id, sizeof(e->device_id),
	    qes_proto_id_ok, msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "tenant_id", e->tenant_id, sizeof(e->tenant_id),
	    qes_proto_id_ok, msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "ca", ca, sizeof(ca), nonempty, msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "key_name", e->key_name, sizeof(e->key_name),
	    key_name_ok, msg, sizeof(msg))) != 0 ||
	    (r = get_str(root, "enrolled_at", e->enrolled_at, sizeof(e->enrolled_at),
	    NULL, msg, sizeof(msg))) != 0)
		goto out;
	memcpy(url, e->server_url, sizeof(url));
	if ((r = agent_server_url_parse(url, e->server_url, sizeof(e->server_url),
	    host, sizeof(host), &e->port, msg, sizeof(msg))) != 0)
		goto out;
	memcpy(e->host, host, sizeof(host));
	if (strcmp(e->server_name, e->host) != 0) {
		errf(msg, sizeof(msg), "server_name \"%.64s\" is not the host of "
		    "the server URL", e->server_name);
		r = QES_ERR_FORMAT;
		goto out;
	}
	if (strcmp(ca, "system") == 0)
		e->system_trust = 1;
	else if (strcmp(ca, AGENT_SERVER_CA_FILE) == 0) {
		if ((size_t)snprintf(e->ca_path, sizeof(e->ca_path), "%s/%s", dir,
		    AGENT_SERVER_CA_FILE) >= sizeof(e->ca_path)) {
			errf(msg, sizeof(msg), "path too long");
			r = QES_ERR_LIMIT;
			goto out;
		}
	} else {
		errf(msg, sizeof(msg), "field \"ca\" must be \"system\" or \"%s\"",
		    AGENT_SERVER_CA_FILE);
		r = QES_ERR_FORMAT;
		goto out;
	}
	r = 0;
 out:
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		errf(err, err_len, "%s: %s", path, msg);
	json_decref(root);
	qes_buf_free(b);
	return r;
}

int
agent_enrollment_save(const char *dir, const agent_enrollment *e, char *err,
    size_t err_len)
{
	char path[PATH_MAX];
	json_t *root = NULL;
	qes_buf *b = NULL;
	char *text = NULL;
	int r = QES_ERR_ALLOC;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    AGENT_ENROLLMENT_FILE) >= sizeof(path)) {
		errf(err, err_len, "configuration path too long");
		return QES_ERR_LIMIT;
	}
	root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
	    "server", e->server_url, "server_name", e->server_name,
	    "device_id", e->device_id, "tenant_id", e->tenant_id,
	    "ca", e->system_trust ? "system" : AGENT_SERVER_CA_FILE,
	    "key_name", e->key_name, "enrolled_at", e->enrolled_at);
	if (root == NULL ||
	    (text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS)) == NULL ||
	    (b = qes_buf_new()) == NULL ||
	    qes_buf_put_str(b, text) != 0 || qes_buf_put_u8(b, '\n') != 0)
		goto out;
	if ((r = qes_buf_write_file(b, path, 0600)) != 0)
		errf(err, err_len, "cannot write %s: %s", path, strerror(errno));
 out:
	if (r == QES_ERR_ALLOC)
		errf(err, err_len, "out of memory");
	free(text);
	qes_buf_free(b);
	json_decref(root);
	return r;
}

int
agent_ca_read(const char *path, qes_buf **pem_out, char *err, size_t err_len)
{
	STACK_OF(X509_INFO) *infos = NULL;
	qes_buf *b = NULL;
	BIO *bio = NULL;
	int i, n_certs = 0, r;

	*pem_out = NULL;
	if ((r = qes_buf_read_file(path, AGENT_CA_MAX_BYTES, &b)) != 0) {
		errf(err, err_len, "cannot read the CA file %s: %s", path,
		    r == QES_ERR_LIMIT ? "too large" : strerror(errno));
		return r == QES_ERR_LIMIT ? r : QES_ERR_NOT_FOUND;
	}
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(qes_buf_data(b), (int)qes_buf_len(b))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
	for (i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *xi = sk_X509_INFO_value(infos, i);

		/* a key or a CRL in a "CA file" is a mistake worth saying */
		if (xi->x509 != NULL && xi->x_pkey == NULL && xi->crl == NULL)
			n_certs++;
	}
	if (infos == NULL || n_certs == 0 || n_certs > CA_MAX_CERTS ||
	    n_certs != sk_X509_INFO_num(infos)) {
		errf(err, err_len, "the CA file %s must hold 1 to %d PEM "
		    "certificates and nothing else", path, CA_MAX_CERTS);
		r = QES_ERR_FORMAT;
		goto out;
	}
	*pem_out = b;
	b = NULL;
	r = 0;
 out:
	ERR_clear_error();
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	BIO_free(bio);
	qes_buf_free(b);
	return r;
}

int
agent_ca_install(const char *dir, const qes_buf *pem, char *err, size_t err_len)
{
	char path[PATH_MAX];
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    AGENT_SERVER_CA_FILE) >= sizeof(path)) {
		errf(err, err_len, "configuration path too long");
		return QES_ERR_LIMIT;
	}
	if ((r = qes_buf_write_file(pem, path, 0600)) != 0)
		errf(err, err_len, "cannot write %s: %s", path, strerror(errno));
	return r;
}

/* Keep printable ASCII only, so the string passes the protocol's check. */
static void
printable(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

void
agent_os_describe(char *out, size_t out_len)
{
	struct utsname u;
	size_t max = out_len < QES_PROTO_NAME_MAX + 1 ? out_len : QES_PROTO_NAME_MAX + 1;

	int n;

	if (uname(&u) != 0)
		snprintf(out, max, "unknown");
	else if ((n = snprintf(out, max, "%.40s %.60s %.20s", u.sysname, u.release,
	    u.machine)) < 0)
		snprintf(out, max, "unknown");
	printable(out);
}
