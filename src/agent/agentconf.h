/*
 * agentconf.h - qes-agent's configuration file.
 *
 * $XDG_CONFIG_HOME/qes/agent.conf (else ~/.config/qes/agent.conf): lines of
 * "key = value", '#' starts a comment line, blank lines are skipped. A
 * missing file is an empty configuration (every default applies).
 *
 * Strict on purpose: an unknown key, a value a key does not take, a key
 * given twice, or a file that someone else could have written (not ours,
 * or group/other-writable) is an error. A typo in a security switch
 * ("pin_storge = disabled") must never leave the default silently in force.
 * Keys and their values are listed in agentconf.c; add new ones there.
 *
 * Keys today (PIN storage policy, see pinstore.h):
 *   pin_storage = allowed | disabled          (default allowed)
 *   pin_policy = remembered | every_signature (default remembered)
 *   pin_policy.SERIAL = remembered | every_signature   (one token)
 *   secret_service_timeout_ms = 100..600000   (default 5000)
 * And where to reach the gateway (addresses.h):
 *   gateway_addresses = HOST:PORT[,HOST:PORT...] (default: server_url's)
 */
#ifndef QES_AGENT_CONF_H
#define QES_AGENT_CONF_H

#include <stddef.h>

#define AGENT_CONFIG_FILE	"agent.conf"

typedef struct agent_config agent_config;

/*
 * The directory of qes-agent's configuration and fallback files:
 * $XDG_CONFIG_HOME/qes when that is an absolute path, else $HOME/.config/qes
 * (the password database's home when $HOME is unset). Does not create it.
 */
int agent_config_dir(char *buf, size_t len);

/*
 * Read a configuration file; path NULL: the default one. On an error,
 * err (may be NULL) says which line and why. Free with agent_config_free().
 */
int agent_config_load(const char *path, agent_config **out, char *err,
    size_t err_len);
/* An empty configuration (all defaults). */
int agent_config_new_empty(agent_config **out);
void agent_config_free(agent_config *c);

/* The value of key, or NULL when the file does not set it. Borrowed. */
const char *agent_config_get(const agent_config *c, const char *key);
/* A numeric key (its range was checked at load), or def when unset. */
unsigned agent_config_get_uint(const agent_config *c, const char *key,
    unsigned def);
/* The file the configuration was read from ("" for an empty one). */
const char *agent_config_path(const agent_config *c);

#endif
