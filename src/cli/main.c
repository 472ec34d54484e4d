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
	    "\n"
	    "Run `qes COMMAND --help` for the options of a command.\n"
	    "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 PIN incorrect,\n"
	    "5 PIN locked, 6 cancelled, 7 token removed or device error, 8 bad signature,\n"
	    "9 audit chain broken, 10 API authentication or permission refused,\n"
	    "11 server unreachable or TLS failure, 12 rate-limited or server busy.\n", f);
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
		printf("qes %s\n", QES_VERSION);
		return QES_EXIT_OK;
	}
	if (strcmp(argv[1], "sign") == 0)
		return cli_cmd_sign(argc - 1, argv + 1);
	if (strcmp(argv[1], "keys") == 0)
		return cli_cmd_keys(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return cli_cmd_audit(argc - 1, argv + 1);
	fprintf(stderr, "qes: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return QES_EXIT_USAGE;
}
