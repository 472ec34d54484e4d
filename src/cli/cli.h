/*
 * cli.h - the commands of qes, one file each.
 */
#ifndef QES_CLI_H
#define QES_CLI_H

/* sign.c: `qes sign` */
int cli_cmd_sign(int argc, char **argv);

#endif
