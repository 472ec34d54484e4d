/*
 * agent.h - the commands of qes-agent, one file each.
 */
#ifndef QES_AGENT_H
#define QES_AGENT_H

/* tokens.c: `tokens` (diagnose == 0) and `diagnose` (diagnose == 1) */
int agent_cmd_tokens(int argc, char **argv, int diagnose);

/* pin.c: `pin remember | forget | list` (the opt-in PIN store) */
int agent_cmd_pin(int argc, char **argv);

/* enroll.c: `enroll` (give this desktop a device identity at a qesd) */
int agent_cmd_enroll(int argc, char **argv);

/* run.c: `run` (the connection to qesd: sessions, signing jobs) */
int agent_cmd_run(int argc, char **argv);

#endif
