/*
 * tokens.c - `qes-agent tokens` and `qes-agent diagnose`.
 *
 * Both load every module the user can have (explicit paths, p11-kit's
 * registry, well-known vendor paths), take one inventory snapshot and print
 * it; diagnose adds versions and a verdict per token. A module or token that
 * fails is shown with its error; the command still succeeds as long as the
 * report could be made, because a report of what is broken is its purpose.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "agent.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/report.h"
#include "qes/tool.h"

static void
usage(FILE *f, const char *cmd)
{
	fprintf(f, "usage: qes-agent %s [--json] [--module PATH]... [--only-module]\n"
	    "\n"
	    "  --json          print JSON instead of text\n"
	    "  --module PATH   also load this PKCS#11 module (repeatable)\n"
	    "  --only-module   load only --module paths and $QES_PKCS11_MODULES,\n"
	    "                  not p11-kit's registered modules or well-known vendor paths\n"
	    "\n"
	    "%s\n", cmd, strcmp(cmd, "tokens") == 0 ?
	    "Lists every module, slot, token and certificate, and classifies each\n"
	    "certificate: qualified, advanced, authentication, expired, not_yet_valid." :
	    "Reports the agent, OS and OpenSSL versions, every module with its library\n"
	    "and cryptoki versions, every slot and token with flags and PIN state,\n"
	    "certificates with validity and qualified status, and a verdict per token.");
}

int
agent_cmd_tokens(int argc, char **argv, int diagnose)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "module", required_argument, NULL, 'm' },
		{ "only-module", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = diagnose ? "diagnose" : "tokens";
	qes_tool_modules mods = { 0 };
	qes_p11_inventory *inv = NULL;
	qes_p11 *p = NULL;
	json_t *doc = NULL;
	int ch, json = 0, r, rc = QES_EXIT_FAILURE;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "jm:oh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = 1;
			break;
		case 'm':
			if (qes_tool_modules_add(&mods, optarg) != 0) {
				fprintf(stderr, "qes-agent: too many --module options\n");
				return QES_EXIT_USAGE;
			}
			break;
		case 'o':
			mods.only_explicit = 1;
			break;
		case 'h':
			usage(stdout, cmd);
			return QES_EXIT_OK;
		default:
			usage(stderr, cmd);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr, cmd);
		return QES_EXIT_USAGE;
	}
	if ((r = qes_p11_new(&p)) != 0 || (r = qes_tool_load_modules(p, &mods)) != 0 ||
	    (r = qes_p11_scan(p, &inv)) != 0) {
		fprintf(stderr, "qes-agent %s: %s\n", cmd, qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if (json) {
		doc = diagnose ? qes_report_diagnose(p, inv) : qes_report_inventory(p, inv);
		if (doc == NULL || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
			fprintf(stderr, "qes-agent %s: could not write the report\n", cmd);
			goto out;
		}
		fputc('\n', stdout);
	} else if (diagnose)
		qes_report_diagnose_text(stdout, p, inv);
	else
		qes_report_inventory_text(stdout, p, inv);
	if (qes_p11_module_count(p) == 0)
		fprintf(stderr, "qes-agent %s: no PKCS#11 module found; give one with --module PATH\n", cmd);
	rc = fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
 out:
	json_decref(doc);
	qes_p11_inventory_free(inv);
	qes_p11_free(p);
	return rc;
}
