/*
 * agentconf.c - read and check qes-agent's configuration file (agentconf.h).
 *
 * Every key qes-agent knows is in the table below with the values it
 * takes, and the whole file is checked when it is read: a command either
 * runs with exactly the configuration the user wrote or refuses to run.
 * The file is read through a bounded cursor-like loop over one buffer
 * (at most 64 KiB, lines at most 1 KiB, at most 256 keys).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/err.h"

#include "addresses.h"
#include "agentconf.h"

#define CONF_MAX_BYTES	(64 * 1024)
#define CONF_MAX_LINE	1024
#define CONF_MAX_KEYS	256

enum key_type { KEY_ENUM, KEY_UINT, KEY_ADDRS };

struct known_key {
	const char *name;
	int prefix;		/* name is a prefix: "pin_policy." + token serial */
	enum key_type type;
	const char *values[4];	/* KEY_ENUM: allowed values, NULL-ended */
	unsigned min, max;	/* KEY_UINT */
};

static const struct known_key known_keys[] = {
	{ "pin_storage", 0, KEY_ENUM, { "allowed", "disabled", NULL }, 0, 0 },
	{ "pin_policy", 0, KEY_ENUM, { "remembered", "every_signature", NULL }, 0, 0 },
	{ "pin_policy.", 1, KEY_ENUM, { "remembered", "every_signature", NULL }, 0, 0 },
	{ "secret_service_timeout_ms", 0, KEY_UINT, { NULL }, 100, 600000 },
	{ "gateway_addresses", 0, KEY_ADDRS, { NULL }, 0, 0 },
};

struct entry {
	char *key;
	char *value;
};

struct agent_config {
	struct entry *entries;
	size_t n;
	char path[PATH_MAX];
};

int
agent_config_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	struct passwd *pw;
	int n;

	/* the XDG specification says a relative value is to be ignored */
	if (xdg != NULL && xdg[0] == '/')
		n = snprintf(buf, len, "%s/qes", xdg);
	else {
		if (home == NULL || home[0] != '/') {
			if ((pw = getpwuid(geteuid())) == NULL || pw->pw_dir == NULL)
				return QES_ERR_NOT_FOUND;
			home = pw->pw_dir;
		}
		n = snprintf(buf, len, "%s/.config/qes", home);
	}
	if (n < 0 || (size_t)n >= len)
		return QES_ERR_LIMIT;
	return 0;
}

int
agent_config_new_empty(agent_config **out)
{
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return QES_ERR_ALLOC;
	return 0;
}

void
agent_config_free(agent_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->entries[i].key);
		free(c->entries[i].value);
	}
	free(c->entries);
	free(c);
}

const char *
agent_config_get(const agent_config *c, const char *key)
{
	size_t i;

	if (c == NULL || key == NULL)
		return NULL;
	for (i = 0; i < c->n; i++)
		if (strcmp(c->entries[i].key, key) == 0)
			return c->entries[i].value;
	return NULL;
}

unsigned
agent_config_get_uint(const agent_config *c, const char *key, unsigned def)
{
	const char *v = agent_config_get(c, key);

	/* the value was checked against its range when the file was read */
	return v != NULL ? (unsigned)strtoul(v, NULL, 10) : def;
}

const char *
agent_config_path(const agent_config *c)
{
	return c != NULL ? c->path : "";
}

static const struct known_key *
find_known(const char *key)
{
	size_t i, n;

	for (i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++) {
		n = strlen(known_keys[i].name);
		if (known_keys[i].prefix ? strncmp(key, known_keys[i].name, n) == 0 &&
		    key[n] != '\0' : strcmp(key, known_keys[i].name) == 0)
			return &known_keys[i];
	}
	return NULL;
}

static int
check_value(const struct known_key *k, const char *v)
{
	unsigned long n;
	char *end;
	size_t i;

	if (k->type == KEY_ADDRS) {
		agent_addrs l;

		return agent_addrs_parse(v, &l, NULL, 0) == 0 ? 0 : -1;
	}
	if (k->type == KEY_ENUM) {
		for (i = 0; k->values[i] != NULL; i++)
			if (strcmp(v, k->values[i]) == 0)
				return 0;
		return -1;
	}
	if (v[0] < '0' || v[0] > '9')
		return -1;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < k->min || n > k->max)
		return -1;
	return 0;
}

/* Blanks off both ends, in place. */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
key_chars_ok(const char *k)
{
	const unsigned char *p;

	if (*k == '\0')
		return 0;
	for (p = (const unsigned char *)k; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '=' || *p == '#')
			return 0;
	return 1;
}

static int
add_entry(agent_config *c, const char *key, const char *value)
{
	struct entry *e;

	if (c->n >= CONF_MAX_KEYS)
		return QES_ERR_LIMIT;
	if ((e = reallocarray(c->entries, c->n + 1, sizeof(*e))) == NULL)
		return QES_ERR_ALLOC;
	c->entries = e;
	e = &c->entries[c->n];
	if ((e->key = strdup(key)) == NULL)
		return QES_ERR_ALLOC;
	if ((e->value = strdup(value)) == NULL) {
		free(e->key);
		return QES_ERR_ALLOC;
	}
	c->n++;
	return 0;
}

/* One line; lineno for messages. */
static int
parse_line(agent_config *c, char *line, unsigned lineno, char *err, size_t err_len)
{
	const struct known_key *k;
	char *eq, *key, *value;
	int r;

	line = trim(line);
	if (*line == '\0' || *line == '#')
		return 0;
	if ((eq = strchr(line, '=')) == NULL) {
		snprintf(err, err_len, "line %u: expected \"key = value\"", lineno);
		return QES_ERR_FORMAT;
	}
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	if (!key_chars_ok(key)) {
		snprintf(err, err_len, "line %u: invalid key", lineno);
		return QES_ERR_FORMAT;
	}
	if ((k = find_known(key)) == NULL) {
		snprintf(err, err_len, "line %u: unknown key \"%.64s\"", lineno, key);
		return QES_ERR_FORMAT;
	}
	if (check_value(k, value) != 0) {
		if (k->type == KEY_ADDRS) {
			agent_addrs l;
			char why[160];

			(void)agent_addrs_parse(value, &l, why, sizeof(why));
			snprintf(err, err_len, "line %u: %s", lineno, why);
		} else if (k->type == KEY_ENUM)
			snprintf(err, err_len, "line %u: %.64s takes %s%s%s%s%s",
			    lineno, key, k->values[0],
			    k->values[1] != NULL ? " or " : "",
			    k->values[1] != NULL ? k->values[1] : "",
			    k->values[2] != NULL ? " or " : "",
			    k->values[2] != NULL ? k->values[2] : "");
		else
			snprintf(err, err_len, "line %u: %.64s takes a number "
			    "from %u to %u", lineno, key, k->min, k->max);
		return QES_ERR_FORMAT;
	}
	if (agent_config_get(c, key) != NULL) {
		snprintf(err, err_len, "line %u: \"%.64s\" is set twice", lineno, key);
		return QES_ERR_FORMAT;
	}
	if ((r = add_entry(c, key, value)) != 0)
		snprintf(err, err_len, "line %u: %s", lineno, r == QES_ERR_LIMIT ?
		    "too many keys" : "out of memory");
	return r;
}

/* Read the whole file after checking who may have written it. */
static int
read_conf(const char *path, char **data_out, size_t *len_out, char *err,
    size_t err_len)
{
	struct stat st;
	char *data = NULL;
	size_t off = 0;
	ssize_t n;
	int fd, r;

	*data_out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (errno == ENOENT)
			return QES_ERR_NOT_FOUND;
		snprintf(err, err_len, "cannot open: %s", strerror(errno));
		return QES_ERR_IO;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, err_len, "cannot stat: %s", strerror(errno));
		r = QES_ERR_IO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "not a regular file");
		r = QES_ERR_IO;
		goto out;
	}
	/* it switches security policy: only we (or root) may be able to write it */
	if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 022) != 0) {
		snprintf(err, err_len, "refusing a file that others can write "
		    "(owner uid %u, mode %04o): chmod go-w it",
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		r = QES_ERR_IO;
		goto out;
	}
	if (st.st_size > CONF_MAX_BYTES) {
		snprintf(err, err_len, "larger than %d bytes", CONF_MAX_BYTES);
		r = QES_ERR_LIMIT;
		goto out;
	}
	if ((data = malloc((size_t)st.st_size + 1)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, data + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* shrank meanwhile: parse what we have */
		off += (size_t)n;
	}
	data[off] = '\0';
	*data_out = data;
	*len_out = off;
	data = NULL;
	r = 0;
 out:
	free(data);
	close(fd);
	return r;
}

int
agent_config_load(const char *path, agent_config **out, char *err, size_t err_len)
{
	char dir[PATH_MAX], msg[256] = "", *data = NULL, *line, *next;
	agent_config *c = NULL;
	unsigned lineno = 0;
	size_t len = 0;
	int r;

	*out = NULL;
	if ((r = agent_config_new_empty(&c)) != 0)
		goto out;
	if (path == NULL) {
		if ((r = agent_config_dir(dir, sizeof(dir))) != 0) {
			snprintf(msg, sizeof(msg), "no configuration directory "
			    "($XDG_CONFIG_HOME and $HOME unset)");
			goto out;
		}
		if ((size_t)snprintf(c->path, sizeof(c->path), "%s/%s", dir,
		    AGENT_CONFIG_FILE) >= sizeof(c->path)) {
			r = QES_ERR_LIMIT;
			snprintf(msg, sizeof(msg), "path too long");
			goto out;
		}
	} else if ((size_t)snprintf(c->path, sizeof(c->path), "%s", path) >=
	    sizeof(c->path)) {
		r = QES_ERR_LIMIT;
		snprintf(msg, sizeof(msg), "path too long");
		goto out;
	}
	if ((r = read_conf(c->path, &data, &len, msg, sizeof(msg))) != 0) {
		if (r == QES_ERR_NOT_FOUND)
			r = 0;	/* no file: every default applies */
		goto out;
	}
	if (memchr(data, '\0', len) != NULL) {
		snprintf(msg, sizeof(msg), "contains a NUL byte");
		r = QES_ERR_FORMAT;
		goto out;
	}
	for (line = data; line != NULL && *line != '\0'; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (strlen(line) > CONF_MAX_LINE) {
			snprintf(msg, sizeof(msg), "line %u: longer than %d bytes",
			    lineno, CONF_MAX_LINE);
			r = QES_ERR_LIMIT;
			goto out;
		}
		if ((r = parse_line(c, line, lineno, msg, sizeof(msg))) != 0)
			goto out;
	}
	r = 0;
 out:
	if (r != 0 && err != NULL)
		snprintf(err, err_len, "%s: %s", c != NULL && c->path[0] != '\0' ?
		    c->path : "configuration", msg[0] != '\0' ? msg : qes_strerror(r));
	if (r == 0) {
		*out = c;
		c = NULL;
	}
	agent_config_free(c);
	free(data);
	return r;
}
