/*
 * fdlimit.c - qesd's open-file limit: every agent's WebSocket is a
 * descriptor, held for as long as the desktop runs.
 *
 * libwebsockets sizes its connection table from RLIMIT_NOFILE when the
 * server starts (getdtablesize()) and accepts nothing beyond it: with the
 * soft limit of 1024 that shells and many init systems hand out (kept low
 * for programs that use select(); libwebsockets polls), a qesd started by
 * hand held about a thousand agents, and beyond that every new connection,
 * API calls included, failed with EMFILE. So qesd raises its soft limit to
 * the hard limit at start, as systemd's documentation advises programs that
 * need many descriptors to do. The hard limit stays the administrator's:
 * LimitNOFILE= in the unit (deploy/systemd/qesd.service sets 65536), the
 * container runtime, or limits.conf (docs/configuration.md).
 *
 * At the limit, accept() fails with EMFILE; the listening socket stays
 * readable, so an event loop that keeps polling it spins, and
 * libwebsockets logs each failure: a qesd full of agents burned a CPU,
 * wrote a million log lines in seconds and answered nobody. The server
 * therefore tells libwebsockets to hold at most qesd_fd_limit_connections()
 * TLS connections (simultaneous_ssl_restriction): at that count it stops
 * polling its listeners, new connections wait in the kernel's backlog, and
 * accepting resumes when one closes.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>

#include "fdlimit.h"
#include "log.h"

/* descriptors qesd needs besides agents and API clients: store, logs, ... */
#define FD_RESERVE	64
/* below this many agent connections the limit is worth a warning */
#define FD_WARN_BELOW	4096

void
qesd_fd_limit_raise(void)
{
	struct rlimit rl;
	rlim_t before;
	int raise_errno = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		qesd_log(QESD_LOG_WARN, "cannot read the open-file limit",
		    QLS("error", strerror(errno)));
		return;
	}
	before = rl.rlim_cur;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			raise_errno = errno;	/* e.g. a seccomp filter: EPERM */
			rl.rlim_cur = before;
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY) {
		qesd_log(QESD_LOG_INFO, "open-file limit: unlimited");
		return;
	}
	if (raise_errno != 0 || rl.rlim_cur < FD_WARN_BELOW + FD_RESERVE)
		qesd_log(QESD_LOG_WARN, "open-file limit is low: each agent holds "
		    "one descriptor; raise the hard limit (LimitNOFILE= in the "
		    "systemd unit, ulimit -Hn, the container runtime)",
		    QLI("nofile", rl.rlim_cur), QLI("hard", rl.rlim_max),
		    QLS("raise_error", raise_errno != 0 ? strerror(raise_errno) : NULL));
	else
		qesd_log(QESD_LOG_INFO, "open-file limit", QLI("nofile", rl.rlim_cur),
		    QLI("raised_from", before));
}

int
qesd_fd_limit_connections(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	if (rl.rlim_cur <= 2 * FD_RESERVE)
		return rl.rlim_cur > 1 ? (int)(rl.rlim_cur / 2) : 1;
	if (rl.rlim_cur - FD_RESERVE > (rlim_t)INT_MAX)
		return INT_MAX;
	return (int)(rl.rlim_cur - FD_RESERVE);
}
