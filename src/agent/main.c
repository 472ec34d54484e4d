/*
 * main.c - qes-agent: the desktop client that talks to the signer's tokens.
 *
 * This file only parses the command line and dispatches; each command lives
 * in its own file. Commands of the foundation: tokens (inventory) and
 * diagnose (inventory plus versions and a verdict per token).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "qes/tool.h"

static void
usage(FILE *f)
{
	fputs("usage: qes-agent COMMAND [OPTIONS]\n"
	    "\n"
	    "commands:\n"
	    "  tokens     list PKCS#11 modules, slots, tokens and certificates\n"
	    "  diagnose   report versions, modules, tokens, PIN state and a verdict per token\n"
	    "  pin        remember, forget or list token PINs in the OS secret store (opt-in)\n"
	    "  enroll     register this desktop with a qes server (one-time code)\n"
	    "  run        stay connected to the qes server and sign what it asks, with consent\n"
	    "\n"
	    "Run `qes-agent COMMAND --help` for the options of a command.\n"
	    "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 PIN incorrect,\n"
	    "5 PIN locked, 6 cancelled, 7 token removed or device error, 8 bad signature.\n", f);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return QES_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("qes-agent %s\n", QES_VERSION);
		return QES_EXIT_OK;
	}
	if (strcmp(argv[1], "tokens") == 0)
		return agent_cmd_tokens(argc - 1, argv + 1, 0);
	if (strcmp(argv[1], "diagnose") == 0)
		return agent_cmd_tokens(argc - 1, argv + 1, 1);
	if (strcmp(argv[1], "pin") == 0)
		return agent_cmd_pin(argc - 1, argv + 1);
	if (strcmp(argv[1], "enroll") == 0)
		return agent_cmd_enroll(argc - 1, argv + 1);
	if (strcmp(argv[1], "run") == 0)
		return agent_cmd_run(argc - 1, argv + 1);
	fprintf(stderr, "qes-agent: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return QES_EXIT_USAGE;
}
