/*
 * tool.h - what the qes and qes-agent commands share: choosing PKCS#11
 * modules, finding a credential by what a user types, and exit codes.
 *
 * Exit codes (documented in docs/cli.md):
 *   0 success            4 PIN incorrect          7 token removed / device error
 *   1 other failure      5 PIN locked or expired  8 signature check failed
 *   2 usage error        6 cancelled or declined
 *   3 not found (module, token, certificate, key, file)
 *   9 audit hash chain broken (qes audit verify)
 *  13 a certificate chain does not reach a trust anchor (qes verify)
 * (10-12 are the API commands', src/cli/api.h.)
 */
#ifndef QES_TOOL_H
#define QES_TOOL_H

#include <stddef.h>
#include <stdio.h>

#include "qes/p11.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
	QES_EXIT_OK = 0,
	QES_EXIT_FAILURE = 1,
	QES_EXIT_USAGE = 2,
	QES_EXIT_NOT_FOUND = 3,
	QES_EXIT_PIN_INCORRECT = 4,
	QES_EXIT_PIN_BLOCKED = 5,
	QES_EXIT_CANCELLED = 6,
	QES_EXIT_DEVICE = 7,
	QES_EXIT_BAD_SIGNATURE = 8,
	QES_EXIT_CHAIN_BROKEN = 9,	/* qes audit verify: the hash chain breaks */
	QES_EXIT_UNTRUSTED = 13,	/* qes verify: a chain misses the --trust anchors */
};

int qes_tool_exit_code(int err);

#define QES_TOOL_MAX_MODULES 16

typedef struct qes_tool_modules {
	const char *paths[QES_TOOL_MAX_MODULES];	/* --module PATH, in order */
	size_t n_paths;
	int only_explicit;	/* --only-module: skip p11-kit and well-known paths */
} qes_tool_modules;

/* Add a --module path; QES_ERR_LIMIT past QES_TOOL_MAX_MODULES. */
int qes_tool_modules_add(qes_tool_modules *m, const char *path);

/*
 * Load the modules a command should see: --module paths, then the colon
 * separated $QES_PKCS11_MODULES, then (unless only_explicit or
 * $QES_PKCS11_ONLY_EXPLICIT=1) p11-kit's registered modules and well-known
 * vendor paths. Failed modules stay listed with their error.
 */
int qes_tool_load_modules(qes_p11 *p, const qes_tool_modules *m);

/*
 * Find one credential. token: serial or label (NULL: any token); key:
 * CKA_ID in hex, or certificate label, or "SERIAL:IDHEX" credential ref
 * (NULL: the only qualified certificate with a key). QES_ERR_NOT_FOUND or
 * QES_ERR_INVALID_ARG (ambiguous) with a message in err.
 */
int qes_tool_find_cred(const qes_p11_inventory *inv, const char *token,
    const char *key, const qes_p11_token **t_out, const qes_p11_cred **c_out,
    char *err, size_t err_len);

/* One command of a program or of a command group: argv[0] is its name. */
typedef struct qes_tool_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
} qes_tool_cmd;

/*
 * Run the command argv[1] names among cmds (ended by a { NULL, NULL }
 * entry) with argc - 1, argv + 1. No command: usage on stderr, exit 2;
 * --help, -h or help: usage on stdout, exit 0; --version (only when
 * version is not NULL): "PROG VERSION"; an unknown name: a message naming
 * prog, usage on stderr, exit 2.
 */
int qes_tool_dispatch(const char *prog, const char *version,
    const qes_tool_cmd *cmds, void (*usage)(FILE *f), int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
