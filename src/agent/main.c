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

static int
cmd_tokens(int argc, char **argv)
{
	return agent_cmd_tokens(argc, argv, 0);
}

static int
cmd_diagnose(int argc, char **argv)
{
	return agent_cmd_tokens(argc, argv, 1);
}

int
main(int argc, char **argv)
{
	static const qes_tool_cmd cmds[] = {
		{ "tokens", cmd_tokens },
		{ "diagnose", cmd_diagnose },
		{ "pin", agent_cmd_pin },
		{ "enroll", agent_cmd_enroll },
		{ "run", agent_cmd_run },
		{ NULL, NULL },
	};

	return qes_tool_dispatch("qes-agent", QES_VERSION, cmds, usage, argc, argv);
}
