/*
 * pin.c - `qes-agent pin remember | forget | list`: the user's switches for
 * the opt-in PIN store (policy and storage in pinstore.c).
 *
 * `remember` is the only way a PIN gets stored, and it proves the PIN first:
 * it asks through pinentry, logs in to the token once with it, logs out, and
 * stores it only when the token accepted it. A wrong PIN costs the token one
 * try, exactly as signing with it would, and is never stored. The command
 * refuses (before asking anything) when agent.conf switches storage off, when
 * no Secret Service is reachable (PINs never go to a file), and when the
 * token is locked, on its final try, or has a PIN pad (nothing to remember).
 *
 * There is no PUK command and no code path that asks for or stores a PUK.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"
#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/secret.h"
#include "qes/tool.h"

#include "agent.h"
#include "agentconf.h"
#include "pinstore.h"
#include "secretstore.h"

#define DEFAULT_SECRET_TIMEOUT_MS	5000

static void
usage(FILE *f)
{
	fputs("usage: qes-agent pin remember --token SERIAL [--module PATH]... "
	    "[--only-module] [--pinentry PROGRAM]\n"
	    "       qes-agent pin forget (--token SERIAL | --all)\n"
	    "       qes-agent pin list\n"
	    "\n"
	    "Remember a token's PIN in the Secret Service, so that signing asks only\n"
	    "for your confirmation, not for the PIN. Off until you run `remember` for\n"
	    "a token. The PIN is checked by logging in to the token once before it is\n"
	    "stored; a wrong PIN is never stored. A remembered PIN is not used while\n"
	    "the token reports few PIN attempts left, and one the token rejects is\n"
	    "deleted at once and never tried again.\n"
	    "\n"
	    "  remember   ask for the PIN, check it on the token, store it\n"
	    "  forget     delete the PIN of one token, or of all tokens\n"
	    "  list       the serials of tokens with a remembered PIN (never the PINs)\n"
	    "\n"
	    "In $XDG_CONFIG_HOME/qes/agent.conf:\n"
	    "  pin_storage = disabled          never store or use remembered PINs\n"
	    "  pin_policy = every_signature    ask for the PIN for every signature\n"
	    "  pin_policy.SERIAL = every_signature   the same, for one token\n", f);
}

/*
 * The configuration, the secret store and the PIN store. strict: a broken
 * agent.conf is an error (remember); otherwise a warning and the defaults
 * (forget and list must work to clean up whatever the file says).
 */
struct pin_env {
	agent_config *conf;
	agent_secretstore *store;
	agent_pinstore *ps;
};

static int
env_open(struct pin_env *e, const char *cmd, int strict)
{
	agent_secretstore_opts so = { 0 };
	char err[512];
	int r;

	memset(e, 0, sizeof(*e));
	if ((r = agent_config_load(NULL, &e->conf, err, sizeof(err))) != 0) {
		if (strict || r == QES_ERR_ALLOC) {
			fprintf(stderr, "qes-agent pin %s: %s\n", cmd, err);
			return QES_EXIT_FAILURE;
		}
		fprintf(stderr, "qes-agent pin %s: warning: %s (using the defaults)\n",
		    cmd, err);
		if (agent_config_new_empty(&e->conf) != 0)
			return QES_EXIT_FAILURE;
	}
	so.timeout_ms = (int)agent_config_get_uint(e->conf,
	    "secret_service_timeout_ms", DEFAULT_SECRET_TIMEOUT_MS);
	so.no_file_fallback = 1;	/* PINs never live in a file */
	if (agent_secretstore_open(&so, &e->store) != 0 ||
	    agent_pinstore_new(e->conf, e->store, &e->ps) != 0) {
		fprintf(stderr, "qes-agent pin %s: out of memory\n", cmd);
		return QES_EXIT_FAILURE;
	}
	if (!agent_secretstore_platform_available(e->store)) {
		fprintf(stderr, "qes-agent pin %s: no %s reachable (%s): PINs are "
		    "kept only in the operating system's secret store\n", cmd,
		    agent_secretstore_platform_name(e->store),
		    agent_secretstore_platform_why(e->store));
		return QES_EXIT_FAILURE;
	}
	return QES_EXIT_OK;
}

static void
env_close(struct pin_env *e)
{
	agent_pinstore_free(e->ps);
	agent_secretstore_free(e->store);
	agent_config_free(e->conf);
}

/* The one token with this serial in the inventory. */
static int
find_token(const qes_p11_inventory *inv, const char *serial,
    const qes_p11_token **out)
{
	size_t i;

	*out = NULL;
	for (i = 0; i < inv->n_tokens; i++) {
		if (!inv->tokens[i].present || strcmp(inv->tokens[i].serial, serial) != 0)
			continue;
		if (*out != NULL)
			return QES_ERR_INVALID_ARG;	/* two modules show it */
		*out = &inv->tokens[i];
	}
	return *out != NULL ? 0 : QES_ERR_TOKEN_NOT_PRESENT;
}

/* Why remember must not go on with this token state, or NULL. */
static const char *
token_state_refusal(unsigned flags, int *err)
{
	*err = QES_ERR_UNSUPPORTED;
	if (flags & QES_TOK_PIN_LOCKED) {
		*err = QES_ERR_PIN_LOCKED;
		return "the token's PIN is locked: unblock it with the token "
		    "vendor's tool";
	}
	if (flags & QES_TOK_PIN_TO_BE_CHANGED) {
		*err = QES_ERR_PIN_EXPIRED;
		return "the PIN must be changed first with the token vendor's tool";
	}
	if (flags & QES_TOK_PIN_FINAL_TRY)
		return "the token reports ONE PIN attempt left; sign once with "
		    "the right PIN first, then remember it";
	if (flags & QES_TOK_PROTECTED_AUTH)
		return "this token's PIN is entered on the reader or in the "
		    "vendor's dialog: there is nothing to remember";
	if (!(flags & QES_TOK_LOGIN_REQUIRED))
		return "this token needs no PIN";
	return NULL;
}

static int
cmd_remember(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "module", required_argument, NULL, 'm' },
		{ "only-module", no_argument, NULL, 'o' },
		{ "pinentry", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pin_env e;
	qes_tool_modules mods = { 0 };
	qes_pinentry_opts pe_opts = { 0 };
	qes_p11_inventory *inv = NULL;
	const qes_p11_token *t;
	qes_p11_session *s = NULL;
	qes_pinentry *pe = NULL;
	qes_secret *pin = NULL;
	const char *serial = NULL, *refusal;
	char why[512], desc[512], prompt[96];
	unsigned flags = 0;
	qes_p11 *p = NULL;
	int ch, r, rc = QES_EXIT_FAILURE;

	memset(&e, 0, sizeof(e));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:m:op:h", opts, NULL)) != -1) {
		switch (ch) {
		case 't': serial = optarg; break;
		case 'o': mods.only_explicit = 1; break;
		case 'p': pe_opts.program = optarg; break;
		case 'm':
			if (qes_tool_modules_add(&mods, optarg) != 0) {
				fprintf(stderr, "qes-agent pin remember: too many "
				    "--module options\n");
				return QES_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return QES_EXIT_OK;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc || serial == NULL) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (!agent_secret_key_valid(serial)) {
		fprintf(stderr, "qes-agent pin remember: invalid token serial\n");
		return QES_EXIT_USAGE;
	}
	/* every refusal that needs no token comes before any question */
	if ((rc = env_open(&e, "remember", 1)) != QES_EXIT_OK)
		goto out;
	rc = QES_EXIT_FAILURE;
	if (agent_pinstore_allowed(e.ps, serial, why, sizeof(why)) != 0) {
		fprintf(stderr, "qes-agent pin remember: refused: %s\n", why);
		goto out;
	}
	if ((r = qes_p11_new(&p)) != 0 || (r = qes_tool_load_modules(p, &mods)) != 0 ||
	    (r = qes_p11_scan(p, &inv)) != 0) {
		fprintf(stderr, "qes-agent pin remember: %s\n", qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = find_token(inv, serial, &t)) != 0) {
		fprintf(stderr, "qes-agent pin remember: %s\n", r == QES_ERR_INVALID_ARG ?
		    "more than one module shows a token with that serial" :
		    "no token with that serial (see `qes-agent tokens`)");
		rc = r == QES_ERR_INVALID_ARG ? QES_EXIT_USAGE : QES_EXIT_NOT_FOUND;
		goto out;
	}
	if ((r = qes_p11_session_open(p, t->module_index, t->serial, &s)) != 0 ||
	    (r = qes_p11_session_token_flags(s, &flags)) != 0) {
		fprintf(stderr, "qes-agent pin remember: token \"%s\": %s\n", t->label,
		    s != NULL ? qes_p11_session_errmsg(s) : qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((refusal = token_state_refusal(flags, &r)) != NULL) {
		fprintf(stderr, "qes-agent pin remember: token \"%s\": %s\n", t->label,
		    refusal);
		rc = r == QES_ERR_UNSUPPORTED ? QES_EXIT_FAILURE : qes_tool_exit_code(r);
		goto out;
	}

	snprintf(desc, sizeof(desc), "Remember the PIN of token \"%.64s\" (serial "
	    "%s) in your keyring?\nqes will then sign with it after asking you to "
	    "confirm each signature. The PIN is checked on the token once before "
	    "it is stored.", t->label, t->serial);
	snprintf(prompt, sizeof(prompt), "PIN for \"%.64s\":", t->label);
	if ((pin = qes_secret_new(QES_PIN_MAX)) == NULL) {
		fprintf(stderr, "qes-agent pin remember: out of memory\n");
		goto out;
	}
	if ((r = qes_pinentry_open(&pe_opts, &pe)) != 0 ||
	    (r = qes_pinentry_getpin(pe, "qes: remember a token PIN", desc, prompt,
	    (flags & QES_TOK_PIN_COUNT_LOW) ? "The token reports that few PIN "
	    "attempts are left." : NULL, pin)) != 0) {
		fprintf(stderr, "qes-agent pin remember: PIN entry: %s\n",
		    pe != NULL ? qes_pinentry_errmsg(pe) : qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	qes_pinentry_free(pe);
	pe = NULL;
	if (qes_secret_len(pin) == 0 ||
	    (t->min_pin > 0 && qes_secret_len(pin) < t->min_pin) ||
	    (t->max_pin > 0 && qes_secret_len(pin) > t->max_pin)) {
		fprintf(stderr, "qes-agent pin remember: the PIN must have %lu to %lu "
		    "characters; nothing stored\n", t->min_pin, t->max_pin);
		rc = QES_EXIT_PIN_INCORRECT;
		goto out;
	}
	/* the proof: one login; a PIN the token refuses is never stored */
	if ((r = qes_p11_session_login(s, pin)) != 0) {
		fprintf(stderr, "qes-agent pin remember: %s (%s); nothing stored\n",
		    qes_strerror(r), qes_p11_session_errmsg(s));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	(void)qes_p11_session_logout(s);
	if ((r = agent_pinstore_remember(e.ps, t->serial, t->label, pin)) != 0) {
		fprintf(stderr, "qes-agent pin remember: %s\n", agent_pinstore_errmsg(e.ps));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	printf("remembered the PIN of token \"%s\" (serial %s) in the operating "
	    "system's secret store (%s); every signature still asks for your "
	    "confirmation\n", t->label, t->serial,
	    agent_secretstore_platform_name(e.store));
	rc = fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
 out:
	qes_secret_free(pin);
	qes_pinentry_free(pe);
	qes_p11_session_free(s);
	qes_p11_inventory_free(inv);
	qes_p11_free(p);
	env_close(&e);
	return rc;
}

static int
cmd_forget(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pin_env e;
	const char *serial = NULL;
	size_t n = 0;
	int ch, all = 0, r, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "t:ah", opts, NULL)) != -1) {
		switch (ch) {
		case 't': serial = optarg; break;
		case 'a': all = 1; break;
		case 'h':
			usage(stdout);
			return QES_EXIT_OK;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc || (serial == NULL) == !all) {
		fprintf(stderr, "qes-agent pin forget: give --token SERIAL or --all\n");
		return QES_EXIT_USAGE;
	}
	if (serial != NULL && !agent_secret_key_valid(serial)) {
		fprintf(stderr, "qes-agent pin forget: invalid token serial\n");
		return QES_EXIT_USAGE;
	}
	if ((rc = env_open(&e, "forget", 0)) != QES_EXIT_OK)
		goto out;
	if (all) {
		r = agent_pinstore_forget_all(e.ps, &n);
		if (r != 0) {
			fprintf(stderr, "qes-agent pin forget: %s\n",
			    agent_pinstore_errmsg(e.ps));
			rc = qes_tool_exit_code(r);
		}
		printf("forgot %zu remembered PIN%s\n", n, n == 1 ? "" : "s");
		goto out;
	}
	if ((r = agent_pinstore_forget(e.ps, serial)) != 0) {
		fprintf(stderr, "qes-agent pin forget: %s\n", r == QES_ERR_NOT_FOUND ?
		    "no remembered PIN for that token" : agent_pinstore_errmsg(e.ps));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	printf("forgot the PIN of token %s\n", serial);
 out:
	if (fflush(stdout) != 0 && rc == QES_EXIT_OK)
		rc = QES_EXIT_FAILURE;
	env_close(&e);
	return rc;
}

static int
cmd_list(int argc, char **argv)
{
	struct pin_env e;
	char **serials = NULL, why[512];
	size_t i, n = 0;
	int r, rc;

	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return QES_EXIT_OK;
	}
	if (argc != 1) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if ((rc = env_open(&e, "list", 0)) != QES_EXIT_OK)
		goto out;
	if ((r = agent_pinstore_list(e.ps, &serials, &n)) != 0) {
		fprintf(stderr, "qes-agent pin list: %s\n", agent_pinstore_errmsg(e.ps));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	for (i = 0; i < n; i++) {
		printf("%s\n", serials[i]);
		if (agent_pinstore_allowed(e.ps, serials[i], why, sizeof(why)) != 0)
			fprintf(stderr, "qes-agent pin list: %s: not used: %s\n",
			    serials[i], why);
	}
 out:
	if (fflush(stdout) != 0 && rc == QES_EXIT_OK)
		rc = QES_EXIT_FAILURE;
	agent_secret_keys_free(serials);
	env_close(&e);
	return rc;
}

int
agent_cmd_pin(int argc, char **argv)
{
	static const qes_tool_cmd cmds[] = {
		{ "remember", cmd_remember },
		{ "forget", cmd_forget },
		{ "list", cmd_list },
		{ NULL, NULL },
	};

	return qes_tool_dispatch("qes-agent pin", NULL, cmds, usage, argc, argv);
}
