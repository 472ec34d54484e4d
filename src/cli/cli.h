/*
 * cli.h - the commands of qes, one file each.
 */
#ifndef QES_CLI_H
#define QES_CLI_H

/* sign.c: `qes sign` */
int cli_cmd_sign(int argc, char **argv);
/* keys.c: `qes keys`; audit.c: `qes audit` (api.c is their HTTP client) */
int cli_cmd_keys(int argc, char **argv);
int cli_cmd_audit(int argc, char **argv);
/* verify.c: `qes verify` (offline) */
int cli_cmd_verify(int argc, char **argv);

#endif
