/*
 * fdlimit.h - qesd's open-file limit (fdlimit.c).
 */
#ifndef QESD_FDLIMIT_H
#define QESD_FDLIMIT_H

/*
 * Raise the soft RLIMIT_NOFILE to the hard limit, before the server starts
 * (libwebsockets sizes its connection table from it then), and log the
 * limit qesd runs with. Never fails: where the limit cannot be raised,
 * qesd runs with the one it has and the log says how many agents that
 * leaves room for.
 */
void qesd_fd_limit_raise(void);

/*
 * The TLS connections the server may hold at once: the open-file limit
 * less a reserve for qesd's own descriptors (store, logs, bus, the
 * server's pipes), at least 1; 0 when the limit is infinite. At this many
 * the server stops accepting until one closes, instead of failing accept()
 * with EMFILE in a loop.
 */
int qesd_fd_limit_connections(void);

#endif
