/*
 * main.c - qes: signing and administration from a shell.
 *
 * Parses the command name and dispatches; each command lives in its own file.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "qes/tool.h"

static void
usage(FILE *f)
{
	fputs("usage: qes COMMAND [OPTIONS]\n"
	    "\n"
	    "commands:\n"
	    "  sign       sign with a certificate on a local token (PIN through pinentry)\n"
	    "  keys       API keys of your tenant on a qesd server (create, list, rotate, revoke)\n"
	    "  audit      the tenant's audit log (list, export) and offline verification of exports\n"
	    "  verify     check the signatures of a PDF, CMS, XML or JWS file (offline)\n"
	    "\n"
	    "Run `qes COMMAND --help` for the options of a command.\n"
	    "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 PIN incorrect,\n"
	    "5 PIN locked, 6 cancelled, 7 token removed or device error, 8 bad signature,\n"
	    "9 audit chain broken, 10 API authentication or permission refused,\n"
	    "11 server unreachable or TLS failure, 12 rate-limited or server busy,\n"
	    "13 certificate chain not trusted (verify).\n", f);
}

int
main(int argc, char **argv)
{
	static const qes_tool_cmd cmds[] = {
		{ "sign", cli_cmd_sign },
		{ "keys", cli_cmd_keys },
		{ "audit", cli_cmd_audit },
		{ "verify", cli_cmd_verify },
		{ NULL, NULL },
	};

	return qes_tool_dispatch("qes", QES_VERSION, cmds, usage, argc, argv);
}
