/*
 * pinstore.c - PIN storage policy and the signer's PIN source (pinstore.h).
 *
 * The policy is read from agent.conf each time a pinstore is made, and is
 * checked on every use, not only when a PIN is stored: switching storage
 * off takes effect for the next signature without anything being deleted
 * (the user deletes with `qes-agent pin forget --all`).
 *
 * The source's lookup() never fails a signature: whatever goes wrong
 * (storage off, no secret service, a slow keyring, a malformed item), the
 * answer is "nothing remembered" and the signer is asked for the PIN.
 * rejected() deletes at once and keeps the serial in a deny list for the
 * life of this pinstore, so a PIN that could not be deleted is still never
 * tried twice. `pin remember` for that token clears the entry.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "qes/secret.h"

#include "log.h"
#include "pinstore.h"

#define DENY_MAX	64

struct agent_pinstore {
	const agent_config *conf;
	agent_secretstore *store;	/* borrowed, may be NULL */
	pthread_mutex_t lock;		/* guards deny[], store use */
	char *deny[DENY_MAX];		/* serials whose PIN the token rejected */
	size_t n_deny;
	char errmsg[512];
};

int
agent_pinstore_new(const agent_config *conf, agent_secretstore *store,
    agent_pinstore **out)
{
	agent_pinstore *ps;

	*out = NULL;
	if ((ps = calloc(1, sizeof(*ps))) == NULL)
		return QES_ERR_ALLOC;
	if (pthread_mutex_init(&ps->lock, NULL) != 0) {
		free(ps);
		return QES_ERR_INTERNAL;
	}
	ps->conf = conf;
	ps->store = store;
	*out = ps;
	return 0;
}

void
agent_pinstore_free(agent_pinstore *ps)
{
	size_t i;

	if (ps == NULL)
		return;
	for (i = 0; i < ps->n_deny; i++)
		free(ps->deny[i]);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
}

const char *
agent_pinstore_errmsg(const agent_pinstore *ps)
{
	return ps != NULL ? ps->errmsg : "";
}

int
agent_pinstore_allowed(const agent_pinstore *ps, const char *serial, char *why,
    size_t why_len)
{
	char key[AGENT_SECRET_KEY_MAX + 16];
	const char *v;

	if (!agent_secret_key_valid(serial)) {
		snprintf(why, why_len, "invalid token serial");
		return QES_ERR_INVALID_ARG;
	}
	v = agent_config_get(ps->conf, "pin_storage");
	if (v != NULL && strcmp(v, "disabled") == 0) {
		snprintf(why, why_len, "PIN storage is disabled (pin_storage = "
		    "disabled in %s)", agent_config_path(ps->conf));
		return QES_ERR_UNSUPPORTED;
	}
	/* a per-token policy wins over the global one */
	snprintf(key, sizeof(key), "pin_policy.%s", serial);
	if ((v = agent_config_get(ps->conf, key)) == NULL)
		v = agent_config_get(ps->conf, "pin_policy");
	if (v != NULL && strcmp(v, "every_signature") == 0) {
		snprintf(why, why_len, "the policy asks for the PIN for every "
		    "signature (pin_policy%s%s = every_signature in %s)",
		    agent_config_get(ps->conf, key) != NULL ? "." : "",
		    agent_config_get(ps->conf, key) != NULL ? serial : "",
		    agent_config_path(ps->conf));
		return QES_ERR_UNSUPPORTED;
	}
	return 0;
}

static int
denied(agent_pinstore *ps, const char *serial)
{
	size_t i;

	for (i = 0; i < ps->n_deny; i++)
		if (strcmp(ps->deny[i], serial) == 0)
			return 1;
	return 0;
}

static void
undeny(agent_pinstore *ps, const char *serial)
{
	size_t i;

	for (i = 0; i < ps->n_deny; i++)
		if (strcmp(ps->deny[i], serial) == 0) {
			free(ps->deny[i]);
			ps->deny[i] = ps->deny[--ps->n_deny];
			return;
		}
}

static int
need_store(agent_pinstore *ps)
{
	if (ps->store != NULL)
		return 0;
	snprintf(ps->errmsg, sizeof(ps->errmsg), "no secret store is open");
	return QES_ERR_UNAVAILABLE;
}

int
agent_pinstore_remember(agent_pinstore *ps, const char *serial,
    const char *token_label, const qes_secret *pin)
{
	char label[AGENT_SECRET_KEY_MAX + 128];
	int r;

	ps->errmsg[0] = '\0';
	if ((r = agent_pinstore_allowed(ps, serial, ps->errmsg,
	    sizeof(ps->errmsg))) != 0 || (r = need_store(ps)) != 0)
		return r;
	if (pin == NULL || qes_secret_len(pin) == 0) {
		snprintf(ps->errmsg, sizeof(ps->errmsg), "empty PIN");
		return QES_ERR_INVALID_ARG;
	}
	/* what the keyring manager shows; the label is the token's, never the PIN */
	snprintf(label, sizeof(label), "qes: PIN of token \"%.64s\" (serial %s)",
	    token_label != NULL ? token_label : "", serial);
	pthread_mutex_lock(&ps->lock);
	r = agent_secret_store(ps->store, AGENT_SECRET_PIN, serial, label, pin, NULL);
	if (r == 0)
		undeny(ps, serial);
	else
		snprintf(ps->errmsg, sizeof(ps->errmsg), "%s",
		    agent_secretstore_errmsg(ps->store));
	pthread_mutex_unlock(&ps->lock);
	if (r == 0)
		agent_log(AGENT_LOG_INFO, "pin_remembered", "token", serial, NULL);
	return r;
}

int
agent_pinstore_forget(agent_pinstore *ps, const char *serial)
{
	int r;

	ps->errmsg[0] = '\0';
	if (!agent_secret_key_valid(serial)) {
		snprintf(ps->errmsg, sizeof(ps->errmsg), "invalid token serial");
		return QES_ERR_INVALID_ARG;
	}
	if ((r = need_store(ps)) != 0)
		return r;
	pthread_mutex_lock(&ps->lock);
	r = agent_secret_delete(ps->store, AGENT_SECRET_PIN, serial);
	if (r != 0)
		snprintf(ps->errmsg, sizeof(ps->errmsg), "%s",
		    agent_secretstore_errmsg(ps->store));
	pthread_mutex_unlock(&ps->lock);
	if (r == 0)
		agent_log(AGENT_LOG_INFO, "pin_forgotten", "token", serial, NULL);
	return r;
}

int
agent_pinstore_list(agent_pinstore *ps, char ***serials_out, size_t *n_out)
{
	int r;

	*serials_out = NULL;
	*n_out = 0;
	ps->errmsg[0] = '\0';
	if ((r = need_store(ps)) != 0)
		return r;
	pthread_mutex_lock(&ps->lock);
	r = agent_secret_list(ps->store, AGENT_SECRET_PIN, serials_out, n_out);
	if (r != 0)
		snprintf(ps->errmsg, sizeof(ps->errmsg), "%s",
		    agent_secretstore_errmsg(ps->store));
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int
agent_pinstore_forget_all(agent_pinstore *ps, size_t *n_out)
{
	char **serials = NULL;
	size_t i, n = 0, done = 0;
	int r, first = 0;

	if (n_out != NULL)
		*n_out = 0;
	if ((r = agent_pinstore_list(ps, &serials, &n)) != 0)
		return r;
	/* go on past a failure, so one bad item does not keep the others */
	for (i = 0; i < n; i++) {
		r = agent_pinstore_forget(ps, serials[i]);
		if (r == 0)
			done++;
		else if (r != QES_ERR_NOT_FOUND && first == 0)
			first = r;
	}
	agent_secret_keys_free(serials);
	if (n_out != NULL)
		*n_out = done;
	return first;
}

/* ---- the signer's PIN source ---- */

static int
source_lookup(void *arg, const char *serial, qes_secret *pin)
{
	agent_pinstore *ps = arg;
	char why[256];
	int r;

	if (agent_pinstore_allowed(ps, serial, why, sizeof(why)) != 0) {
		agent_log(AGENT_LOG_DEBUG, "pin_store_not_used", "token", serial,
		    "reason", why, NULL);
		return QES_ERR_NOT_FOUND;
	}
	pthread_mutex_lock(&ps->lock);
	if (ps->store == NULL || !agent_secretstore_platform_available(ps->store)) {
		/* the store logged why when it was probed */
		pthread_mutex_unlock(&ps->lock);
		return QES_ERR_NOT_FOUND;
	}
	if (denied(ps, serial)) {
		pthread_mutex_unlock(&ps->lock);
		agent_log(AGENT_LOG_WARN, "pin_store_not_used", "token", serial,
		    "reason", "the token rejected the remembered PIN earlier", NULL);
		return QES_ERR_NOT_FOUND;
	}
	r = agent_secret_lookup(ps->store, AGENT_SECRET_PIN, serial, pin);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		agent_log(AGENT_LOG_WARN, "pin_store_lookup_failed", "token", serial,
		    "reason", agent_secretstore_errmsg(ps->store), NULL);
	pthread_mutex_unlock(&ps->lock);
	if (r != 0) {
		qes_secret_clear(pin);
		return QES_ERR_NOT_FOUND;
	}
	agent_log(AGENT_LOG_INFO, "pin_store_used", "token", serial, NULL);
	return 0;
}

static void
source_rejected(void *arg, const char *serial)
{
	agent_pinstore *ps = arg;
	char *copy;
	int r = QES_ERR_UNAVAILABLE;

	pthread_mutex_lock(&ps->lock);
	/* deny first: even if the delete fails, this process never retries */
	if (!denied(ps, serial) && ps->n_deny < DENY_MAX &&
	    (copy = strdup(serial)) != NULL)
		ps->deny[ps->n_deny++] = copy;
	if (ps->store != NULL)
		r = agent_secret_delete(ps->store, AGENT_SECRET_PIN, serial);
	if (r == 0 || r == QES_ERR_NOT_FOUND)
		agent_log(AGENT_LOG_WARN, "pin_rejected_deleted", "token", serial,
		    "hint", "the remembered PIN was refused (by the token, or it "
		    "cannot be a PIN for it); it was deleted and will not be "
		    "tried again", NULL);
	else
		agent_log(AGENT_LOG_ERROR, "pin_rejected_delete_failed", "token",
		    serial, "reason", ps->store != NULL ?
		    agent_secretstore_errmsg(ps->store) : "no secret store",
		    "hint", "run `qes-agent pin forget --token SERIAL`; this agent "
		    "will not use it again", NULL);
	pthread_mutex_unlock(&ps->lock);
}

void
agent_pinstore_source(agent_pinstore *ps, qes_sign_pin_source *src)
{
	src->lookup = source_lookup;
	src->rejected = source_rejected;
	src->arg = ps;
}
