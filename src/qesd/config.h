/*
 * config.h - qesd configuration: a file plus QESD_* environment variables.
 *
 * File syntax: one `key = value` per line; `#` starts a comment line;
 * blank lines are ignored; values are taken verbatim after trimming
 * surrounding blanks (no quoting). Strict: an unknown key, a repeated key
 * or a malformed value is an error that names the key and the line.
 * Environment: QESD_<KEY> (upper case) overrides the file; an unknown
 * QESD_* variable is an error too, so a typo never silently falls back to
 * a default. Keys and defaults are documented in docs/configuration.md and
 * by `qesd --help`.
 *
 * The pepper (server secret for API-key hashing) and the TLS key are files
 * that must be readable by their owner only; qesd refuses to start
 * otherwise.
 */
#ifndef QESD_CONFIG_H
#define QESD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "qes/secret.h"

#define QESD_HOST_MAX 256
#define QESD_PEPPER_MIN_BYTES 32
#define QESD_PEPPER_MAX_BYTES 1024

typedef struct qesd_config {
	char listen_host[QESD_HOST_MAX];	/* "127.0.0.1", "::1" */
	int listen_port;
	char *tls_cert;				/* PEM chain; required */
	char *tls_key;				/* PEM key, mode 0600/0400; required */
	char *pepper_file;			/* required */
	char *store;				/* "sqlite:PATH" | "postgres:URL" */
	unsigned workers;
	size_t max_body_bytes;
	size_t max_header_bytes;
	size_t max_uri_bytes;
	size_t max_json_depth;
	size_t max_string_bytes;
	unsigned max_queue;			/* requests waiting for a worker */
	unsigned max_deferred;			/* requests waiting deferred */
	double rate_key_per_s;
	unsigned rate_key_burst;
	double rate_ip_per_s;
	unsigned rate_ip_burst;
	unsigned auth_fail_delay_ms;
	unsigned key_cache_ttl_ms;
	unsigned audit_retention_days;
	unsigned job_result_retention_s;	/* completed jobs keep signatures */
	unsigned drain_timeout_s;
	int log_level;				/* qesd_log_level */
	int metrics_enabled;			/* metrics_listen was set */
	char metrics_host[QESD_HOST_MAX];
	int metrics_port;
	int testing_routes;			/* needs QESD_ALLOW_TESTING=1 */
	char *insecure_testing_clock_file;	/* tests only: a clock offset in ms;
						 * needs QESD_INSECURE_TESTING=1 */
	int insecure_testing;			/* load_env saw QESD_INSECURE_TESTING=1 */
	/* the agent endpoint (hub.c) */
	char *server_name;			/* host agents dial; NULL: listen_host */
	char *replica_name;			/* this process in device_sessions;
						 * NULL: the host name */
	unsigned agent_ping_interval_s;		/* WebSocket ping period */
	unsigned agent_dead_after_s;		/* silence that closes a session */
	unsigned replica_heartbeat_s;		/* this replica's beat in the store */
	unsigned replica_dead_after_s;		/* a replica silent this long is
						 * gone: its sessions are reaped */
	unsigned diagnostics_timeout_s;		/* wait for a device's diagnose_result */
	/* the bus between replicas (bus.h) */
	char *bus;				/* "local" | "nats:URL[,URL...]" */
	unsigned bus_request_timeout_ms;	/* a request to another replica */
	char *bus_tls_ca_file;			/* NATS over TLS: trust anchors */
	char *bus_credentials_file;		/* NATS user JWT + NKey seed (.creds) */
	char *bus_token_file;			/* NATS token, mode 0600 */
	/* documents the gateway signs (AdES, jobs_ades.c) */
	size_t document_max_bytes;		/* one document, decoded */
	char *document_key_file;		/* 32-byte key, mode 0600; NULL: off */
	char *chain_file;			/* PEM CA certificates for chains */
	char *tsa_url;				/* RFC 3161 TSA for B-T and above */
	char *tsa_ca_file;			/* PEM trust anchors of the TSA */
	char *tsa_policy;			/* dotted OID to ask for; NULL: any */
} qesd_config;

/* Defaults for everything; strings NULL or defaults (owned). */
int qesd_config_init(qesd_config *c);
void qesd_config_free(qesd_config *c);

/* Parse configuration text; origin names it in errors ("qesd.conf"). */
int qesd_config_parse(qesd_config *c, const char *text, size_t len,
    const char *origin, char *err, size_t errlen);
/* Read and parse a file (at most 64 KiB). */
int qesd_config_load_file(qesd_config *c, const char *path, char *err,
    size_t errlen);
/* Apply QESD_* variables from envp (NULL-terminated, like environ). */
int qesd_config_load_env(qesd_config *c, char *const *envp, char *err,
    size_t errlen);
/* Cross-field checks and required keys; allow_testing is whether
 * QESD_ALLOW_TESTING=1 was set. */
int qesd_config_validate(const qesd_config *c, int allow_testing, char *err,
    size_t errlen);

/* "host:port" or "[v6]:port" into host and port (1..65535, or 0 for
 * "any free port"). */
int qesd_parse_listen(const char *s, char *host, size_t hostlen, int *port);

/*
 * Refuse a secret file that is missing, not a regular file, or whose mode
 * grants any access to group or others. what names it in the error
 * ("tls_key").
 */
int qesd_check_secret_file(const char *path, const char *what, char *err,
    size_t errlen);

/*
 * Load the pepper: the file must pass qesd_check_secret_file and hold
 * 32..1024 bytes. A file of printable text has one trailing newline
 * removed (so `openssl rand -hex 32 > pepper` works); other files are
 * taken byte for byte. Caller frees *out with qes_secret_free().
 */
int qesd_pepper_load(const char *path, qes_secret **out, char *err,
    size_t errlen);

/* One line per key with its default, for --help. */
const char *qesd_config_help(void);

#endif
