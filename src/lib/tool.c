/*
 * tool.c - module selection, credential lookup and exit codes shared by the
 * qes and qes-agent commands.
 *
 * Users should never have to edit a card list: every module given by path is
 * loaded, and so are the modules p11-kit knows and the well-known vendor
 * paths that exist on this machine. A module that fails is listed with its
 * error and does not stop the others.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "qes/tool.h"

int
qes_tool_exit_code(int err)
{
	switch (err) {
	case QES_OK:
		return QES_EXIT_OK;
	case QES_ERR_INVALID_ARG:
		return QES_EXIT_USAGE;
	case QES_ERR_NOT_FOUND:
	case QES_ERR_TOKEN_NOT_PRESENT:
	case QES_ERR_KEY_NOT_FOUND:
	case QES_ERR_MODULE_LOAD:
		return QES_EXIT_NOT_FOUND;
	case QES_ERR_PIN_INCORRECT:
	case QES_ERR_PIN_INVALID:
		return QES_EXIT_PIN_INCORRECT;
	case QES_ERR_PIN_LOCKED:
	case QES_ERR_PIN_EXPIRED:
		return QES_EXIT_PIN_BLOCKED;
	case QES_ERR_CANCELLED:
		return QES_EXIT_CANCELLED;
	case QES_ERR_TOKEN_REMOVED:
	case QES_ERR_DEVICE:
		return QES_EXIT_DEVICE;
	case QES_ERR_SIGNATURE_INVALID:
		return QES_EXIT_BAD_SIGNATURE;
	default:
		return QES_EXIT_FAILURE;
	}
}

int
qes_tool_modules_add(qes_tool_modules *m, const char *path)
{
	if (m->n_paths >= QES_TOOL_MAX_MODULES)
		return QES_ERR_LIMIT;
	m->paths[m->n_paths++] = path;
	return 0;
}

int
qes_tool_load_modules(qes_p11 *p, const qes_tool_modules *m)
{
	const char *env = getenv("QES_PKCS11_MODULES");
	const char *only = getenv("QES_PKCS11_ONLY_EXPLICIT");
	char *copy = NULL, *tok, *save = NULL;
	size_t i;
	int r;

	/* failures of single modules are recorded in p and reported later */
	for (i = 0; i < m->n_paths; i++)
		(void)qes_p11_add_module(p, m->paths[i], QES_P11_SRC_EXPLICIT, "", NULL);
	if (env != NULL && *env != '\0') {
		if ((copy = strdup(env)) == NULL)
			return QES_ERR_ALLOC;
		for (tok = strtok_r(copy, ":", &save); tok != NULL;
		    tok = strtok_r(NULL, ":", &save))
			(void)qes_p11_add_module(p, tok, QES_P11_SRC_EXPLICIT, "", NULL);
		free(copy);
	}
	if (m->only_explicit || (only != NULL && strcmp(only, "1") == 0))
		return 0;
	if ((r = qes_p11_add_registered(p)) != 0 && r != QES_ERR_NOT_FOUND)
		return r;
	return qes_p11_add_well_known(p);
}

static int
token_matches(const qes_p11_token *t, const char *token)
{
	if (!t->present || t->err != 0)
		return 0;
	return token == NULL || strcmp(t->serial, token) == 0 ||
	    strcmp(t->label, token) == 0;
}

static int
cred_matches(const qes_p11_token *t, const qes_p11_cred *c, const char *key)
{
	size_t sl;

	if (key == NULL)
		return c->has_key != 0 && c->cls == QES_CERT_QUALIFIED;
	if (strcasecmp(c->id_hex, key) == 0 || strcmp(c->label, key) == 0)
		return 1;
	/* "SERIAL:IDHEX", the credential reference printed by `tokens` */
	sl = strlen(t->serial);
	return strncmp(key, t->serial, sl) == 0 && key[sl] == ':' &&
	    strcasecmp(key + sl + 1, c->id_hex) == 0;
}

int
qes_tool_find_cred(const qes_p11_inventory *inv, const char *token,
    const char *key, const qes_p11_token **t_out, const qes_p11_cred **c_out,
    char *err, size_t err_len)
{
	size_t i, j, found = 0;

	*t_out = NULL;
	*c_out = NULL;
	for (i = 0; i < inv->n_tokens; i++) {
		const qes_p11_token *t = &inv->tokens[i];

		if (!token_matches(t, token))
			continue;
		for (j = 0; j < t->n_creds; j++) {
			if (!cred_matches(t, &t->creds[j], key))
				continue;
			if (found++ == 0) {
				*t_out = t;
				*c_out = &t->creds[j];
			}
		}
	}
	if (found == 1)
		return 0;
	*t_out = NULL;
	*c_out = NULL;
	if (found == 0) {
		snprintf(err, err_len, "no %s%s%s%s%s found (see `qes-agent tokens`)",
		    key == NULL ? "qualified certificate with a private key" : "certificate ",
		    key == NULL ? "" : key, token != NULL ? " on token \"" : "",
		    token != NULL ? token : "", token != NULL ? "\"" : "");
		return QES_ERR_NOT_FOUND;
	}
	snprintf(err, err_len, "%zu certificates match: choose one with --token and --key", found);
	return QES_ERR_INVALID_ARG;
}

int
qes_tool_dispatch(const char *prog, const char *version,
    const qes_tool_cmd *cmds, void (*usage)(FILE *f), int argc, char **argv)
{
	const qes_tool_cmd *c;

	if (argc < 2) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return QES_EXIT_OK;
	}
	if (version != NULL && strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", prog, version);
		return fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
	}
	for (c = cmds; c->name != NULL; c++)
		if (strcmp(argv[1], c->name) == 0)
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command \"%.64s\"\n", prog, argv[1]);
	usage(stderr);
	return QES_EXIT_USAGE;
}
