/*
 * config.c - parses qesd's configuration file and QESD_* environment
 * variables, validates them, and loads the pepper (see config.h).
 *
 * One table lists every key with its type, bounds and place in the
 * struct; file, environment and --help all read it, so a key cannot be
 * documented in one place and forgotten in another.
 */
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/fetch.h"
#include "errbuf.h"
#include "config.h"
#include "log.h"

#define CONFIG_FILE_MAX (64 * 1024)
#define CONFIG_LINE_MAX 4096
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

enum key_type { K_STR, K_UINT, K_SIZE, K_DOUBLE, K_LISTEN, K_METRICS_LISTEN,
	K_LEVEL, K_BOOL };

struct key {
	const char *name;
	enum key_type type;
	size_t offset;
	unsigned long long min, max;	/* integer bounds (K_UINT, K_SIZE) */
	const char *help;
};

#define OFF(f) offsetof(qesd_config, f)
static const struct key keys[] = {
	{ "listen", K_LISTEN, 0, 0, 0, "host:port or [v6]:port (127.0.0.1:8443)" },
	{ "tls_cert", K_STR, OFF(tls_cert), 0, 0, "server certificate chain, PEM (required)" },
	{ "tls_key", K_STR, OFF(tls_key), 0, 0, "server private key, PEM, mode 0600 (required)" },
	{ "pepper_file", K_STR, OFF(pepper_file), 0, 0, "API-key hashing pepper, >= 32 bytes, mode 0600 (required)" },
	{ "store", K_STR, OFF(store), 0, 0, "sqlite:PATH | postgres:URL (sqlite:/var/lib/qesd/qesd.db)" },
	{ "workers", K_UINT, OFF(workers), 1, 64, "worker threads for handlers (4)" },
	{ "max_body_bytes", K_SIZE, OFF(max_body_bytes), 1024, 64ull << 20, "request body limit (1048576)" },
	{ "max_header_bytes", K_SIZE, OFF(max_header_bytes), 1024, 32768, "request header limit (8192)" },
	{ "max_uri_bytes", K_SIZE, OFF(max_uri_bytes), 256, 32768, "request URI limit (4096)" },
	{ "max_json_depth", K_SIZE, OFF(max_json_depth), 1, 256, "JSON nesting limit (32)" },
	{ "max_string_bytes", K_SIZE, OFF(max_string_bytes), 16, 64ull << 20, "one JSON string limit (8192)" },
	{ "max_queue", K_UINT, OFF(max_queue), 1, 1000000, "requests waiting for a worker before 503 (1024)" },
	{ "max_deferred", K_UINT, OFF(max_deferred), 1, 1000000, "long-polls waiting at once (4096)" },
	{ "rate_key_per_s", K_DOUBLE, OFF(rate_key_per_s), 0, 0, "requests per second per API key (50)" },
	{ "rate_key_burst", K_UINT, OFF(rate_key_burst), 1, 1000000, "burst per API key (100)" },
	{ "rate_ip_per_s", K_DOUBLE, OFF(rate_ip_per_s), 0, 0, "requests per second per client address (100)" },
	{ "rate_ip_burst", K_UINT, OFF(rate_ip_burst), 1, 1000000, "burst per client address (200)" },
	{ "auth_fail_delay_ms", K_UINT, OFF(auth_fail_delay_ms), 0, 10000, "delay after a failed authentication (250)" },
	{ "key_cache_ttl_ms", K_UINT, OFF(key_cache_ttl_ms), 0, 3600000, "API key cache lifetime (2000)" },
	{ "audit_retention_days", K_UINT, OFF(audit_retention_days), 1, 36500, "audit retention (365)" },
	{ "job_result_retention_s", K_UINT, OFF(job_result_retention_s), 60, 31536000, "seconds a completed signature job keeps its signatures (86400)" },
	{ "drain_timeout_s", K_UINT, OFF(drain_timeout_s), 0, 3600, "SIGTERM drain deadline (30)" },
	{ "log_level", K_LEVEL, OFF(log_level), 0, 0, "debug | info | warn | error (info)" },
	{ "metrics_listen", K_METRICS_LISTEN, 0, 0, 0, "separate host:port for /metrics (off: served on listen)" },
	{ "testing_routes", K_BOOL, OFF(testing_routes), 0, 0, "on | off: test-only routes; refused unless QESD_ALLOW_TESTING=1 (off)" },
	{ "insecure_testing_clock_file", K_STR, OFF(insecure_testing_clock_file), 0, 0, "tests only: file with a clock offset in ms; refused unless QESD_INSECURE_TESTING=1 (unset)" },
	{ "server_name", K_STR, OFF(server_name), 0, 0, "host name agents dial, signed in their authentication (the listen host)" },
	{ "replica_name", K_STR, OFF(replica_name), 0, 0, "this replica's name in device sessions (the host name)" },
	{ "agent_ping_interval_s", K_UINT, OFF(agent_ping_interval_s), 1, 300, "WebSocket ping to agents every this many seconds (20)" },
	{ "agent_dead_after_s", K_UINT, OFF(agent_dead_after_s), 2, 3600, "close an agent session silent this long (60)" },
	{ "replica_heartbeat_s", K_UINT, OFF(replica_heartbeat_s), 1, 300, "write this replica's heartbeat to the store every this many seconds (5)" },
	{ "replica_dead_after_s", K_UINT, OFF(replica_dead_after_s), 3, 3600, "a replica whose heartbeat is this old is gone: its sessions close, their jobs fail (20)" },
	/* at most the server's cap on a deferred response (http.h) */
	{ "diagnostics_timeout_s", K_UINT, OFF(diagnostics_timeout_s), 1, 300, "seconds POST /v1/devices/{id}/diagnostics waits for the agent (30)" },
	{ "bus", K_STR, OFF(bus), 0, 0, "local | nats:URL[,URL...]: how replicas reach each other's devices (local)" },
	{ "bus_request_timeout_ms", K_UINT, OFF(bus_request_timeout_ms), 50, 60000, "a request to the replica holding a device waits this long (2000)" },
	{ "bus_tls_ca_file", K_STR, OFF(bus_tls_ca_file), 0, 0, "NATS over TLS: CA certificates, PEM (unset: TLS only with tls:// URLs, system CAs)" },
	{ "bus_credentials_file", K_STR, OFF(bus_credentials_file), 0, 0, "NATS user credentials (.creds: JWT and NKey seed), mode 0600 (unset)" },
	{ "bus_token_file", K_STR, OFF(bus_token_file), 0, 0, "NATS authentication token in a file, mode 0600 (unset)" },
	/* at most QESD_JOB_DOC_MAX (store_jobs.h), what the store seals */
	{ "document_max_bytes", K_SIZE, OFF(document_max_bytes), 1024, 64ull << 20, "largest document POST /v1/signatures takes to sign (16777216)" },
	{ "document_key_file", K_STR, OFF(document_key_file), 0, 0, "32-byte key (64 hex digits), mode 0600, sealing documents at rest (unset: document signing off)" },
	{ "chain_file", K_STR, OFF(chain_file), 0, 0, "PEM CA certificates to build and embed signers' chains from (unset: none)" },
	{ "tsa_url", K_STR, OFF(tsa_url), 0, 0, "RFC 3161 time-stamping authority for levels B-T and above (unset: B-B only)" },
	{ "tsa_ca_file", K_STR, OFF(tsa_ca_file), 0, 0, "PEM trust anchors of the TSA's certificate (required with tsa_url)" },
	{ "tsa_policy", K_STR, OFF(tsa_policy), 0, 0, "TSA policy OID to ask for and expect (unset: any)" },
};

static int
set_str(char **slot, const char *v)
{
	char *d = strdup(v);

	if (d == NULL)
		return QES_ERR_ALLOC;
	free(*slot);
	*slot = d;
	return 0;
}

int
qesd_config_init(qesd_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
	c->listen_port = 8443;
	c->workers = 4;
	c->max_body_bytes = 1024 * 1024;
	c->max_header_bytes = 8192;
	c->max_uri_bytes = 4096;
	c->max_json_depth = 32;
	c->max_string_bytes = 8192;
	c->max_queue = 1024;
	c->max_deferred = 4096;
	c->rate_key_per_s = 50;
	c->rate_key_burst = 100;
	c->rate_ip_per_s = 100;
	c->rate_ip_burst = 200;
	c->auth_fail_delay_ms = 250;
	c->key_cache_ttl_ms = 2000;
	c->audit_retention_days = 365;
	c->job_result_retention_s = 86400;
	c->drain_timeout_s = 30;
	c->log_level = QESD_LOG_INFO;
	c->agent_ping_interval_s = 20;
	c->agent_dead_after_s = 60;
	c->replica_heartbeat_s = 5;
	c->replica_dead_after_s = 20;
	c->diagnostics_timeout_s = 30;
	c->bus_request_timeout_ms = 2000;
	if (set_str(&c->bus, "local") != 0)
		return QES_ERR_ALLOC;
	c->document_max_bytes = 16u << 20;
	return set_str(&c->store, "sqlite:/var/lib/qesd/qesd.db");
}

void
qesd_config_free(qesd_config *c)
{
	if (c == NULL)
		return;
	free(c->tls_cert);
	free(c->tls_key);
	free(c->pepper_file);
	free(c->store);
	free(c->insecure_testing_clock_file);
	free(c->server_name);
	free(c->replica_name);
	free(c->bus);
	free(c->bus_tls_ca_file);
	free(c->bus_credentials_file);
	free(c->bus_token_file);
	c->bus = c->bus_tls_ca_file = c->bus_credentials_file = NULL;
	c->bus_token_file = NULL;
	free(c->document_key_file);
	free(c->chain_file);
	free(c->tsa_url);
	free(c->tsa_ca_file);
	free(c->tsa_policy);
	c->tls_cert = c->tls_key = c->pepper_file = c->store = NULL;
	c->insecure_testing_clock_file = c->server_name = c->replica_name = NULL;
	c->document_key_file = c->chain_file = c->tsa_url = NULL;
	c->tsa_ca_file = c->tsa_policy = NULL;
}

int
qesd_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon, *h;
	size_t hl;
	char *end;
	long p;

	if (s == NULL || *s == '\0')
		return QES_ERR_FORMAT;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return QES_ERR_FORMAT;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return QES_ERR_FORMAT;	/* bare IPv6 needs brackets */
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return QES_ERR_FORMAT;
	for (size_t i = 0; i < hl; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' &&
		    h[i] != ':' && h[i] != '_')
			return QES_ERR_FORMAT;
	if (!isdigit((unsigned char)colon[1]))
		return QES_ERR_FORMAT;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p < 0 || p > 65535)
		return QES_ERR_FORMAT;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

static int
parse_uint(const char *v, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long x;
	char *end;

	if (!isdigit((unsigned char)v[0]))
		return QES_ERR_FORMAT;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0')
		return QES_ERR_FORMAT;
	if (x < min || x > max)
		return QES_ERR_LIMIT;
	*out = x;
	return 0;
}

/* Set one key from a string; where says "file:LINE" or "QESD_KEY". */
static int
apply(qesd_config *c, const struct key *k, const char *v, const char *where,
    char *err, size_t errlen)
{
	unsigned long long x;
	char *end;
	double d;
	int r, lvl;

	switch (k->type) {
	case K_STR:
		if (*v == '\0')
			return qesd_errf(err, errlen, "%s: %s must not be empty", where, k->name);
		if (strlen(v) > PATH_MAX)
			return qesd_errf(err, errlen, "%s: %s is too long", where, k->name);
		if ((r = set_str((char **)((char *)c + k->offset), v)) != 0)
			return r;
		return 0;
	case K_UINT:
	case K_SIZE:
		r = parse_uint(v, k->min, k->max, &x);
		if (r == QES_ERR_LIMIT)
			return qesd_errf(err, errlen, "%s: %s = %s is out of range (%llu..%llu)",
			    where, k->name, v, k->min, k->max);
		if (r != 0)
			return qesd_errf(err, errlen, "%s: %s = '%s' is not a whole number",
			    where, k->name, v);
		if (k->type == K_UINT)
			*(unsigned *)((char *)c + k->offset) = (unsigned)x;
		else
			*(size_t *)((char *)c + k->offset) = (size_t)x;
		return 0;
	case K_DOUBLE:
		errno = 0;
		d = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !(d > 0) || d > 1e6)
			return qesd_errf(err, errlen, "%s: %s = '%s' must be a number in (0, 1000000]",
			    where, k->name, v);
		*(double *)((char *)c + k->offset) = d;
		return 0;
	case K_LISTEN:
		if (qesd_parse_listen(v, c->listen_host, sizeof(c->listen_host),
		    &c->listen_port) != 0)
			return qesd_errf(err, errlen, "%s: listen = '%s' is not host:port or [v6]:port",
			    where, v);
		return 0;
	case K_METRICS_LISTEN:
		if (strcmp(v, "off") == 0) {
			c->metrics_enabled = 0;
			return 0;
		}
		if (qesd_parse_listen(v, c->metrics_host, sizeof(c->metrics_host),
		    &c->metrics_port) != 0)
			return qesd_errf(err, errlen, "%s: metrics_listen = '%s' is not host:port, [v6]:port or off",
			    where, v);
		c->metrics_enabled = 1;
		return 0;
	case K_LEVEL:
		if ((lvl = qesd_log_level_parse(v)) < 0)
			return qesd_errf(err, errlen, "%s: log_level = '%s' is not debug, info, warn or error",
			    where, v);
		c->log_level = lvl;
		return 0;
	case K_BOOL:
		if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			*(int *)((char *)c + k->offset) = 1;
		else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			*(int *)((char *)c + k->offset) = 0;
		else
			return qesd_errf(err, errlen, "%s: %s = '%s' must be on or off", where, k->name, v);
		return 0;
	}
	return qesd_errf(err, errlen, "%s: %s: internal error", where, k->name);
}

static const struct key *
find_key(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++)
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

static void
trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t' ||
	    (*s)[*len - 1] == '\r'))
		(*len)--;
}

int
qesd_config_parse(qesd_config *c, const char *text, size_t len,
    const char *origin, char *err, size_t errlen)
{
	unsigned char seen[N_KEYS];
	char where[300], value[CONFIG_LINE_MAX], name[64];
	size_t off = 0, lineno = 0;
	int r;

	memset(seen, 0, sizeof(seen));
	while (off < len) {
		const char *line = text + off, *nl, *eq, *k, *v;
		size_t ll, kl, vl;
		const struct key *key;

		nl = memchr(line, '\n', len - off);
		ll = nl != NULL ? (size_t)(nl - line) : len - off;
		off += ll + (nl != NULL);
		lineno++;
		snprintf(where, sizeof(where), "%s:%zu", origin, lineno);
		if (memchr(line, '\0', ll) != NULL)
			return qesd_errf(err, errlen, "%s: NUL byte in configuration", where);
		if (ll >= CONFIG_LINE_MAX)
			return qesd_errf(err, errlen, "%s: line too long", where);
		trim(&line, &ll);
		if (ll == 0 || line[0] == '#')
			continue;
		if ((eq = memchr(line, '=', ll)) == NULL)
			return qesd_errf(err, errlen, "%s: expected 'key = value'", where);
		k = line;
		kl = (size_t)(eq - line);
		v = eq + 1;
		vl = ll - kl - 1;
		trim(&k, &kl);
		trim(&v, &vl);
		if ((key = find_key(k, kl)) == NULL) {
			snprintf(name, sizeof(name), "%.*s", (int)(kl > 48 ? 48 : kl), k);
			return qesd_errf(err, errlen, "%s: unknown key '%s'", where, name);
		}
		if (seen[key - keys])
			return qesd_errf(err, errlen, "%s: key '%s' given twice", where, key->name);
		seen[key - keys] = 1;
		memcpy(value, v, vl);
		value[vl] = '\0';
		if ((r = apply(c, key, value, where, err, errlen)) != 0)
			return r;
	}
	return 0;
}

int
qesd_config_load_file(qesd_config *c, const char *path, char *err, size_t errlen)
{
	qes_buf *b = NULL;
	int r;

	errno = 0;
	r = qes_buf_read_file(path, CONFIG_FILE_MAX, &b);
	if (r == QES_ERR_LIMIT)
		return qesd_errf(err, errlen, "%s: configuration file larger than %d bytes",
		    path, CONFIG_FILE_MAX);
	if (r != 0)
		return qesd_errf(err, errlen, "%s: cannot read configuration file: %s",
		    path, errno != 0 ? strerror(errno) : qes_strerror(r));
	r = qesd_config_parse(c, (const char *)qes_buf_data(b), qes_buf_len(b),
	    path, err, errlen);
	qes_buf_free(b);
	return r;
}

/* Variables in the QESD_ namespace that are not configuration keys. */
static const char *const env_not_keys[] = { "QESD_ALLOW_TESTING", "QESD_CONFIG",
	"QESD_INSECURE_TESTING" };

int
qesd_config_load_env(qesd_config *c, char *const *envp, char *err, size_t errlen)
{
	char name[64], where[80];
	size_t i, j, nl;
	int r;

	if (envp == NULL)
		return 0;
	for (i = 0; envp[i] != NULL; i++) {
		const char *e = envp[i], *eq;
		const struct key *key;
		int skip = 0;

		if (strncmp(e, "QESD_", 5) != 0 || (eq = strchr(e, '=')) == NULL)
			continue;
		if (strcmp(e, "QESD_INSECURE_TESTING=1") == 0)
			c->insecure_testing = 1;
		for (j = 0; j < sizeof(env_not_keys) / sizeof(env_not_keys[0]); j++)
			if (strlen(env_not_keys[j]) == (size_t)(eq - e) &&
			    strncmp(e, env_not_keys[j], (size_t)(eq - e)) == 0)
				skip = 1;
		if (skip)
			continue;
		nl = (size_t)(eq - e) - 5;
		if (nl == 0 || nl >= sizeof(name))
			return qesd_errf(err, errlen, "environment: unknown variable %.*s",
			    (int)((size_t)(eq - e) > 60 ? 60 : (size_t)(eq - e)), e);
		for (j = 0; j < nl; j++)
			name[j] = (char)tolower((unsigned char)e[5 + j]);
		name[nl] = '\0';
		if ((key = find_key(name, nl)) == NULL)
			return qesd_errf(err, errlen, "environment: unknown variable %.*s",
			    (int)(eq - e), e);
		snprintf(where, sizeof(where), "environment %.*s", (int)(eq - e), e);
		if ((r = apply(c, key, eq + 1, where, err, errlen)) != 0)
			return r;
	}
	return 0;
}

int
qesd_config_validate(const qesd_config *c, int allow_testing, char *err,
    size_t errlen)
{
	if (c->tls_cert == NULL)
		return qesd_errf(err, errlen, "tls_cert is not set: qesd serves only TLS 1.3 and needs a certificate");
	if (c->tls_key == NULL)
		return qesd_errf(err, errlen, "tls_key is not set: qesd serves only TLS 1.3 and needs a private key");
	if (c->pepper_file == NULL)
		return qesd_errf(err, errlen, "pepper_file is not set: API keys cannot be verified without the pepper");
	if (c->store == NULL || (strncmp(c->store, "sqlite:", 7) != 0 &&
	    strncmp(c->store, "postgres:", 9) != 0))
		return qesd_errf(err, errlen, "store must be sqlite:PATH or postgres:URL");
	if (c->bus == NULL || (strcmp(c->bus, "local") != 0 &&
	    (strncmp(c->bus, "nats:", 5) != 0 || c->bus[5] == '\0')))
		return qesd_errf(err, errlen, "bus must be local or nats:URL[,URL...] (e.g. nats:nats://nats:4222)");
	if (strcmp(c->bus, "local") == 0 && (c->bus_tls_ca_file != NULL ||
	    c->bus_credentials_file != NULL || c->bus_token_file != NULL))
		return qesd_errf(err, errlen, "bus_tls_ca_file, bus_credentials_file and bus_token_file need bus = nats:URL");
	if (c->bus_credentials_file != NULL && c->bus_token_file != NULL)
		return qesd_errf(err, errlen, "bus_credentials_file and bus_token_file exclude each other: NATS authenticates a client one way");
	if (c->max_uri_bytes > c->max_header_bytes)
		return qesd_errf(err, errlen, "max_uri_bytes (%zu) must not exceed max_header_bytes (%zu)",
		    c->max_uri_bytes, c->max_header_bytes);
	if (c->max_string_bytes > c->max_body_bytes)
		return qesd_errf(err, errlen, "max_string_bytes (%zu) must not exceed max_body_bytes (%zu)",
		    c->max_string_bytes, c->max_body_bytes);
	if (c->listen_port == 0 && c->metrics_enabled && c->metrics_port == 0)
		return qesd_errf(err, errlen, "listen and metrics_listen cannot both use port 0");
	if (c->metrics_enabled && c->metrics_port == c->listen_port &&
	    c->listen_port != 0 && strcmp(c->metrics_host, c->listen_host) == 0)
		return qesd_errf(err, errlen, "metrics_listen must differ from listen");
	if (c->agent_dead_after_s <= c->agent_ping_interval_s)
		return qesd_errf(err, errlen, "agent_dead_after_s (%u) must exceed agent_ping_interval_s (%u): a live agent answers pings",
		    c->agent_dead_after_s, c->agent_ping_interval_s);
	if (c->replica_dead_after_s <= 2 * c->replica_heartbeat_s)
		return qesd_errf(err, errlen, "replica_dead_after_s (%u) must exceed twice replica_heartbeat_s (%u): one late beat must not declare a live replica gone",
		    c->replica_dead_after_s, c->replica_heartbeat_s);
	if (c->tsa_url != NULL && !qes_fetch_url_ok(c->tsa_url))
		return qesd_errf(err, errlen, "tsa_url must be an absolute http:// or https:// URL");
	if (c->tsa_url != NULL && c->tsa_ca_file == NULL)
		return qesd_errf(err, errlen, "tsa_url needs tsa_ca_file: the TSA's certificate must chain to an anchor qesd trusts");
	if (c->testing_routes && !allow_testing)
		return qesd_errf(err, errlen, "testing_routes = on is refused: it adds test-only routes and is allowed only with QESD_ALLOW_TESTING=1, never in production");
	if (c->insecure_testing_clock_file != NULL && !c->insecure_testing)
		return qesd_errf(err, errlen, "insecure_testing_clock_file is refused: it lets a file move qesd's clock (key expiry, rotation grace) and is allowed only with QESD_INSECURE_TESTING=1, never in production");
	return 0;
}

static int
check_mode(const struct stat *st, const char *path, const char *what,
    char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode))
		return qesd_errf(err, errlen, "%s %s is not a regular file", what, path);
	if ((st->st_mode & 077) != 0)
		return qesd_errf(err, errlen,
		    "%s %s is accessible by group or others (mode %04o): run chmod 600 on it",
		    what, path, (unsigned)(st->st_mode & 07777));
	return 0;
}

int
qesd_check_secret_file(const char *path, const char *what, char *err,
    size_t errlen)
{
	struct stat st;

	if (path == NULL)
		return qesd_errf(err, errlen, "%s is not set", what);
	if (stat(path, &st) != 0)
		return qesd_errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return check_mode(&st, path, what, err, errlen);
}

int
qesd_pepper_load(const char *path, qes_secret **out, char *err, size_t errlen)
{
	uint8_t buf[QESD_PEPPER_MAX_BYTES + 1];
	qes_secret *s = NULL;
	struct stat st;
	size_t len = 0, i;
	ssize_t n;
	int fd = -1, r, text = 1;

	*out = NULL;
	if (path == NULL) {
		r = qesd_errf(err, errlen, "pepper_file is not set");
		goto out;
	}
	/* open first, then fstat: the file checked is the file read */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		r = qesd_errf(err, errlen, "pepper_file %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		r = qesd_errf(err, errlen, "pepper_file %s: %s", path, strerror(errno));
		goto out;
	}
	if ((r = check_mode(&st, path, "pepper_file", err, errlen)) != 0)
		goto out;
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = qesd_errf(err, errlen, "pepper_file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > QESD_PEPPER_MAX_BYTES) {
		r = qesd_errf(err, errlen, "pepper_file %s is larger than %d bytes", path,
		    QESD_PEPPER_MAX_BYTES);
		goto out;
	}
	for (i = 0; i < len; i++)
		if (!(buf[i] >= 0x20 && buf[i] < 0x7f) &&
		    !(buf[i] == '\n' && i == len - 1) &&
		    !(buf[i] == '\r' && i == len - 2 && buf[len - 1] == '\n'))
			text = 0;
	if (text && len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		r = qesd_errf(err, errlen, "pepper_file %s is empty: create it with `openssl rand -hex 32 > FILE; chmod 600 FILE`",
		    path);
		goto out;
	}
	if (len < QESD_PEPPER_MIN_BYTES) {
		r = qesd_errf(err, errlen, "pepper_file %s holds %zu bytes; at least %d are needed",
		    path, len, QESD_PEPPER_MIN_BYTES);
		goto out;
	}
	if ((s = qes_secret_new(len)) == NULL || qes_secret_set(s, buf, len) != 0) {
		r = qesd_errf(err, errlen, "pepper_file %s: out of memory", path);
		goto out;
	}
	*out = s;
	s = NULL;
	r = 0;
out:
	qes_wipe(buf, sizeof(buf));
	qes_secret_free(s);
	if (fd >= 0)
		close(fd);
	return r;
}

const char *
qesd_config_help(void)
{
	static char text[4096];
	static int done;
	size_t i, off = 0;
	int n;

	/* built once from the table; --help runs single-threaded */
	if (done)
		return text;
	for (i = 0; i < N_KEYS && off < sizeof(text); i++) {
		n = snprintf(text + off, sizeof(text) - off, "  %-22s %s\n",
		    keys[i].name, keys[i].help);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	done = 1;
	return text;
}
