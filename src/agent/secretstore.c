/*
 * secretstore.c - which store a secret goes to (see secretstore.h).
 *
 * The routing is the security argument, so it is all here: PINs live only in
 * the platform store; the device key may fall back to a 0600 file, but only
 * where no platform store is reachable at all, and that fallback is logged
 * as a warning every time it is used to store a key.
 *
 * The platform backend is chosen at compile time; a macOS (Keychain) or
 * Windows (Credential Manager) backend adds its constructor below and a
 * secretstore_<name>.c, nothing else.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/err.h"

#include "agentconf.h"
#include "log.h"
#include "secretstore.h"

#define DEFAULT_TIMEOUT_MS	5000
#define MAX_LISTED_KEYS		4096
/* an unreachable platform store is probed again after this long */
#define REPROBE_AFTER_S		30

struct agent_secretstore {
	agent_secret_backend *platform;	/* NULL when not reachable */
	agent_secret_backend *file;	/* NULL when disabled or unusable */
	int timeout_ms;
	int no_platform;
	time_t probed_at;		/* last probe of the platform store */
	char platform_why[256];		/* why platform is NULL */
	char errmsg[512];
};

const char *
agent_secret_kind_name(agent_secret_kind kind)
{
	switch (kind) {
	case AGENT_SECRET_DEVICE_KEY:
		return "device-key";
	case AGENT_SECRET_PIN:
		return "pin";
	}
	return NULL;
}

int
agent_secret_key_valid(const char *key)
{
	size_t i, n;

	if (key == NULL || (n = strlen(key)) == 0 || n > AGENT_SECRET_KEY_MAX)
		return 0;
	if (key[0] == ' ' || key[n - 1] == ' ')
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
			return 0;
	return 1;
}

void
agent_secret_backend_free(agent_secret_backend *b)
{
	if (b == NULL)
		return;
	if (b->free != NULL)
		b->free(b->ctx);
	free(b);
}

static int
platform_backend(int timeout_ms, agent_secret_backend **out, char *msg,
    size_t msg_len)
{
#if defined(__APPLE__) || defined(_WIN32)
	(void)timeout_ms;
	*out = NULL;
	snprintf(msg, msg_len, "no secret store backend for this platform yet");
	return QES_ERR_UNAVAILABLE;
#else
	return agent_secret_backend_libsecret(timeout_ms, out, msg, msg_len);
#endif
}

/* Connect to the platform store; on failure platform_why says why. */
static int
probe_platform(agent_secretstore *s)
{
	int r;

	s->probed_at = time(NULL);
	if ((r = platform_backend(s->timeout_ms, &s->platform, s->platform_why,
	    sizeof(s->platform_why))) != 0) {
		s->platform = NULL;
		agent_log(AGENT_LOG_INFO, "secret_store_unavailable", "reason",
		    s->platform_why, NULL);
	}
	return r;
}

/*
 * A long-running agent may have started before the desktop's keyring: an
 * unreachable platform store is probed again, at most every REPROBE_AFTER_S.
 */
static void
platform_again(agent_secretstore *s)
{
	time_t now = time(NULL);

	if (s->platform != NULL || s->no_platform ||
	    (now >= s->probed_at && now - s->probed_at < REPROBE_AFTER_S))
		return;
	(void)probe_platform(s);
}

int
agent_secretstore_open(const agent_secretstore_opts *opts, agent_secretstore **out)
{
	agent_secretstore_opts none = { 0 };
	agent_secretstore *s;
	char dir[PATH_MAX], msg[256] = "";
	int r, timeout_ms;

	*out = NULL;
	if (opts == NULL)
		opts = &none;
	timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return QES_ERR_ALLOC;
	s->timeout_ms = timeout_ms;
	s->no_platform = opts->no_platform;
	if (opts->no_platform)
		snprintf(s->platform_why, sizeof(s->platform_why),
		    "the platform secret store is switched off");
	else if (probe_platform(s) == QES_ERR_ALLOC)
		goto fail;
	if (!opts->no_file_fallback) {
		if (opts->file_dir != NULL)
			snprintf(dir, sizeof(dir), "%s", opts->file_dir);
		else if (agent_config_dir(dir, sizeof(dir)) != 0)
			dir[0] = '\0';
		/* a missing fallback only matters when a device key needs it */
		if (dir[0] != '\0' && (r = agent_secret_backend_file(dir, &s->file,
		    msg, sizeof(msg))) != 0) {
			if (r == QES_ERR_ALLOC)
				goto fail;
			s->file = NULL;
		}
	}
	*out = s;
	return 0;
 fail:
	agent_secretstore_free(s);
	return QES_ERR_ALLOC;
}

void
agent_secretstore_free(agent_secretstore *s)
{
	if (s == NULL)
		return;
	agent_secret_backend_free(s->platform);
	agent_secret_backend_free(s->file);
	free(s);
}

int
agent_secretstore_platform_available(agent_secretstore *s)
{
	if (s == NULL)
		return 0;
	platform_again(s);
	return s->platform != NULL;
}

const char *
agent_secretstore_platform_why(const agent_secretstore *s)
{
	return s != NULL && s->platform == NULL ? s->platform_why : "";
}

const char *
agent_secretstore_platform_name(const agent_secretstore *s)
{
	(void)s;
#if defined(__APPLE__)
	return "Keychain";
#elif defined(_WIN32)
	return "Credential Manager";
#else
	return "Secret Service";
#endif
}

const char *
agent_secretstore_errmsg(const agent_secretstore *s)
{
	return s != NULL ? s->errmsg : "";
}

static int
check_args(agent_secretstore *s, agent_secret_kind kind, const char *key)
{
	s->errmsg[0] = '\0';
	if (agent_secret_kind_name(kind) == NULL) {
		snprintf(s->errmsg, sizeof(s->errmsg), "unknown secret kind");
		return QES_ERR_INVALID_ARG;
	}
	if (key != NULL && !agent_secret_key_valid(key)) {
		snprintf(s->errmsg, sizeof(s->errmsg), "invalid secret key "
		    "(1 to %d printable ASCII characters)", AGENT_SECRET_KEY_MAX);
		return QES_ERR_INVALID_ARG;
	}
	return 0;
}

/* The error for a kind that needs the platform store when there is none. */
static int
no_platform(agent_secretstore *s, agent_secret_kind kind)
{
	snprintf(s->errmsg, sizeof(s->errmsg), "no %s reachable (%s)%s",
	    agent_secretstore_platform_name(s), s->platform_why,
	    kind == AGENT_SECRET_PIN ? ": PINs are kept only in the operating "
	    "system's secret store" : "");
	return QES_ERR_UNAVAILABLE;
}

static void
drop_file_copy(agent_secretstore *s, const char *key)
{
	char msg[256] = "";
	int r;

	r = s->file->delete(s->file->ctx, AGENT_SECRET_DEVICE_KEY, key, msg,
	    sizeof(msg));
	if (r == 0)
		agent_log(AGENT_LOG_INFO, "secret_store_file_copy_deleted", "key",
		    key, NULL);
	else if (r != QES_ERR_NOT_FOUND)
		agent_log(AGENT_LOG_WARN, "secret_store_file_copy_left", "key", key,
		    "reason", msg, NULL);
}

int
agent_secret_store(agent_secretstore *s, agent_secret_kind kind,
    const char *key, const char *label, const qes_secret *value,
    const char **where_out)
{
	agent_secret_backend *b;
	int r;

	if (where_out != NULL)
		*where_out = "";
	if ((r = check_args(s, kind, key)) != 0)
		return r;
	if (key == NULL || value == NULL || qes_secret_len(value) == 0 ||
	    qes_secret_len(value) > AGENT_SECRET_MAX) {
		snprintf(s->errmsg, sizeof(s->errmsg), "no key or an empty or "
		    "oversized secret");
		return QES_ERR_INVALID_ARG;
	}
	platform_again(s);
	if (s->platform != NULL)
		b = s->platform;
	else if (kind == AGENT_SECRET_DEVICE_KEY && s->file != NULL) {
		b = s->file;
		agent_log(AGENT_LOG_WARN, "secret_store_file_fallback",
		    "kind", agent_secret_kind_name(kind), "key", key,
		    "reason", s->platform_why, "hint", "the device key is kept "
		    "in a 0600 file; start a Secret Service (e.g. gnome-keyring) "
		    "and enroll again to keep it there", NULL);
	} else
		return no_platform(s, kind);
	r = b->store(b->ctx, kind, key, label != NULL ? label : "qes secret",
	    value, s->errmsg, sizeof(s->errmsg));
	if (r != 0)
		return r;
	if (where_out != NULL)
		*where_out = b->name;
	/* a key now in the platform store leaves no older copy on disk */
	if (b == s->platform && kind == AGENT_SECRET_DEVICE_KEY && s->file != NULL)
		drop_file_copy(s, key);
	return 0;
}

int
agent_secret_lookup(agent_secretstore *s, agent_secret_kind kind,
    const char *key, qes_secret *value)
{
	char msg[256] = "";
	int r;

	if ((r = check_args(s, kind, key)) != 0)
		return r;
	if (key == NULL || value == NULL)
		return QES_ERR_INVALID_ARG;
	qes_secret_clear(value);
	platform_again(s);
	if (s->platform != NULL) {
		r = s->platform->lookup(s->platform->ctx, kind, key, value,
		    s->errmsg, sizeof(s->errmsg));
		if (r != QES_ERR_NOT_FOUND || kind != AGENT_SECRET_DEVICE_KEY)
			return r;
	} else if (kind != AGENT_SECRET_DEVICE_KEY)
		return no_platform(s, kind);
	/* a device key enrolled while no secret service was running */
	if (s->file == NULL) {
		if (s->platform == NULL)
			return no_platform(s, kind);
		return r;
	}
	r = s->file->lookup(s->file->ctx, kind, key, value, msg, sizeof(msg));
	if (r != QES_ERR_NOT_FOUND || s->platform == NULL)
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
	return r;
}

int
agent_secret_delete(agent_secretstore *s, agent_secret_kind kind,
    const char *key)
{
	int r, rf = QES_ERR_NOT_FOUND, rp = QES_ERR_NOT_FOUND;
	char msg[256] = "";

	if ((r = check_args(s, kind, key)) != 0)
		return r;
	if (key == NULL)
		return QES_ERR_INVALID_ARG;
	platform_again(s);
	if (s->platform == NULL && kind != AGENT_SECRET_DEVICE_KEY)
		return no_platform(s, kind);
	if (s->platform != NULL)
		rp = s->platform->delete(s->platform->ctx, kind, key, s->errmsg,
		    sizeof(s->errmsg));
	if (kind == AGENT_SECRET_DEVICE_KEY && s->file != NULL) {
		rf = s->file->delete(s->file->ctx, kind, key, msg, sizeof(msg));
		if (rf != 0 && rf != QES_ERR_NOT_FOUND)
			snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
	}
	/* a failure anywhere is reported; "deleted somewhere" is success */
	if (rp != 0 && rp != QES_ERR_NOT_FOUND)
		return rp;
	if (rf != 0 && rf != QES_ERR_NOT_FOUND)
		return rf;
	if (rp == QES_ERR_NOT_FOUND && rf == QES_ERR_NOT_FOUND) {
		snprintf(s->errmsg, sizeof(s->errmsg), "no %s stored for \"%s\"",
		    agent_secret_kind_name(kind), key);
		return QES_ERR_NOT_FOUND;
	}
	return 0;
}

/* ---- listing ---- */

struct key_acc {
	char **keys;
	size_t n, cap;
};

static int
add_key(void *arg, const char *key)
{
	struct key_acc *a = arg;
	char **k;
	size_t ncap;

	if (!agent_secret_key_valid(key))
		return 0;	/* not one of ours: skip it */
	if (a->n >= MAX_LISTED_KEYS)
		return QES_ERR_LIMIT;
	if (a->n + 1 >= a->cap) {
		ncap = a->cap == 0 ? 16 : a->cap * 2;
		if ((k = reallocarray(a->keys, ncap, sizeof(*k))) == NULL)
			return QES_ERR_ALLOC;
		a->keys = k;
		a->cap = ncap;
	}
	if ((a->keys[a->n] = strdup(key)) == NULL)
		return QES_ERR_ALLOC;
	a->keys[++a->n] = NULL;
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
agent_secret_keys_free(char **keys)
{
	size_t i;

	if (keys == NULL)
		return;
	for (i = 0; keys[i] != NULL; i++)
		free(keys[i]);
	free(keys);
}

int
agent_secret_list(agent_secretstore *s, agent_secret_kind kind,
    char ***keys_out, size_t *n_out)
{
	struct key_acc acc = { 0 };
	char msg[256] = "";
	size_t i, o;
	int r;

	*keys_out = NULL;
	*n_out = 0;
	if ((r = check_args(s, kind, NULL)) != 0)
		return r;
	platform_again(s);
	if (s->platform == NULL && kind != AGENT_SECRET_DEVICE_KEY)
		return no_platform(s, kind);
	if (s->platform != NULL && (r = s->platform->list(s->platform->ctx, kind,
	    add_key, &acc, s->errmsg, sizeof(s->errmsg))) != 0)
		goto out;
	if (kind == AGENT_SECRET_DEVICE_KEY && s->file != NULL &&
	    (r = s->file->list(s->file->ctx, kind, add_key, &acc, msg,
	    sizeof(msg))) != 0) {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
		goto out;
	}
	/* nothing stored: an empty, NULL-terminated array */
	if (acc.keys == NULL && (acc.keys = calloc(1, sizeof(*acc.keys))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	qsort(acc.keys, acc.n, sizeof(*acc.keys), cmp_str);
	for (i = o = 0; i < acc.n; i++) {
		if (o > 0 && strcmp(acc.keys[o - 1], acc.keys[i]) == 0)
			free(acc.keys[i]);
		else
			acc.keys[o++] = acc.keys[i];
	}
	acc.keys[o] = NULL;
	*keys_out = acc.keys;
	*n_out = o;
	acc.keys = NULL;
 out:
	if (r == QES_ERR_LIMIT)
		snprintf(s->errmsg, sizeof(s->errmsg), "more than %d stored keys",
		    MAX_LISTED_KEYS);
	agent_secret_keys_free(acc.keys);
	return r;
}
