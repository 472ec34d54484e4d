/*
 * pinentry.c - PIN and consent dialogs through a pinentry program (Assuan).
 *
 * We start the program ourselves (posix_spawn, no shell, pipes for its
 * stdin/stdout, every other descriptor closed) and speak the client side of
 * Assuan to it: the same conversation gpg-agent has, so every pinentry
 * flavour works. The program's output is untrusted: it is read into one
 * locked, wiped buffer, framed by length, parsed through qes_cursor, and the
 * PIN is percent-decoded straight from that buffer into the caller's
 * qes_secret. Every read has a deadline when the caller asked for a timeout;
 * a pinentry that dies or breaks the protocol leaves the handle "broken", so
 * later calls fail fast and qes_pinentry_free() kills it instead of waiting.
 *
 * The agent calls this from worker threads, so nothing here touches
 * process-wide state: SIGPIPE is blocked per thread around writes (and a
 * SIGPIPE our own write raised is consumed) rather than ignored globally.
 * One handle must not be used by two threads at once, with one exception:
 * qes_pinentry_cancel() may come from any thread while a dialog is open (a
 * gateway's cancel reaches the agent's loop, not the job's thread). It sets
 * a flag, sends the program SIGTERM so the dialog leaves the screen at once,
 * and writes a byte into a pipe that every wait for the program also polls,
 * so the job's thread returns QES_ERR_CANCELLED even from a pinentry that
 * ignores the signal (qes_pinentry_free() then kills it for good).
 */
#define _GNU_SOURCE	/* pipe2, posix_spawn_file_actions_addclosefrom_np */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pinentry.h"
#include "qes/secret.h"

#include "assuan.h"

/* libgpg-error codes: the low 16 bits of the number in an Assuan ERR line. */
#define GPG_ERR_GENERAL		1
#define GPG_ERR_TIMEOUT		62
#define GPG_ERR_CANCELED	99
#define GPG_ERR_NOT_CONFIRMED	114
#define GPG_ERR_FULLY_CANCELED	198
#define GPG_ERR_ASS_UNKNOWN_CMD	275
#define GPG_ERR_CODE_MASK	0xffffu

/*
 * The greeting and the SET commands involve no user, so a pinentry that
 * takes longer than this to answer them is stuck, even without a timeout.
 */
#define SETUP_TIMEOUT_MS	30000
/* How much longer than its own SETTIMEOUT we give a pinentry to answer. */
#define DIALOG_GRACE_S		5
#define NO_DEADLINE		((int64_t)-1)
/* Waiting for the program to exit after BYE, then after SIGTERM. */
#define BYE_GRACE_MS		1000
#define BROKEN_GRACE_MS		200
#define TERM_GRACE_MS		500
/* Room for a few full Assuan lines (we never buffer more than one). */
#define RBUF_SIZE		4096
#define CANCELLED_MSG		"the dialog was closed: the request was cancelled"

struct qes_pinentry {
	pid_t pid;
	int to_fd;		/* the pinentry's stdin */
	int from_fd;		/* the pinentry's stdout */
	int timeout_s;
	int broken;		/* dead or out of sync: every call fails */
	int eof;		/* it closed its stdout */
	uint8_t *rbuf;		/* mmap'ed, locked, wiped: holds D lines */
	size_t rbuf_cap;
	size_t rbuf_len;	/* bytes buffered */
	size_t line_len;	/* bytes of the current line, LF included */
	int rbuf_locked;
	char errmsg[256];
	/* qes_pinentry_cancel(), from any thread: */
	atomic_int cancelled;
	int cancel_rd, cancel_wr;	/* self-pipe polled with from_fd */
	void (*attach)(void *arg, qes_pinentry *pe);
	void *attach_arg;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void
set_errmsg(qes_pinentry *pe, const char *msg)
{
	snprintf(pe->errmsg, sizeof(pe->errmsg), "%s", msg);
}

/* The connection is unusable from now on; later calls fail fast. */
static int
fail(qes_pinentry *pe, int err, const char *msg)
{
	pe->broken = 1;
	set_errmsg(pe, msg);
	return err;
}

/*
 * Keep the pinentry's text of an ERR line as our error message. It is
 * untrusted: control characters become '?', and a cut never splits a
 * UTF-8 sequence.
 */
static void
set_errmsg_untrusted(qes_pinentry *pe, const char *prefix, qes_cursor *text)
{
	size_t off, start, cap = sizeof(pe->errmsg);
	uint8_t ch, next;

	off = start = strlen(prefix) < cap - 1 ? strlen(prefix) : cap - 1;
	memcpy(pe->errmsg, prefix, off);
	while (off + 1 < cap && qes_cursor_get_u8(text, &ch) == 0)
		pe->errmsg[off++] = (char)(ch < 0x20 || ch == 0x7f ? '?' : ch);
	if (qes_cursor_peek_u8(text, &next) == 0 && (next & 0xc0) == 0x80) {
		while (off > start && ((uint8_t)pe->errmsg[off - 1] & 0xc0) == 0x80)
			off--;
		if (off > start && ((uint8_t)pe->errmsg[off - 1] & 0x80) != 0)
			off--;
	}
	pe->errmsg[off] = '\0';
}

static int
rbuf_alloc(qes_pinentry *pe)
{
	void *m;

	m = mmap(NULL, RBUF_SIZE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return QES_ERR_ALLOC;
#ifdef MADV_DONTDUMP
	(void)madvise(m, RBUF_SIZE, MADV_DONTDUMP);
#endif
	/* Failure is tolerated, as for qes_secret: RLIMIT_MEMLOCK is small. */
	pe->rbuf_locked = mlock(m, RBUF_SIZE) == 0;
	pe->rbuf = m;
	pe->rbuf_cap = RBUF_SIZE;
	return 0;
}

static void
rbuf_free(qes_pinentry *pe)
{
	if (pe->rbuf == NULL)
		return;
	qes_wipe(pe->rbuf, pe->rbuf_cap);
	if (pe->rbuf_locked)
		munlock(pe->rbuf, pe->rbuf_cap);
	munmap(pe->rbuf, pe->rbuf_cap);
	pe->rbuf = NULL;
}

/*
 * Move a pipe end above 0-2, so that the dup2 onto the child's stdin and
 * stdout can neither clobber it nor be a no-op that keeps O_CLOEXEC (both
 * happen when the caller runs with stdin or stdout closed).
 */
static int
fd_above_stdio(int *fd)
{
	int nfd;

	if (*fd > STDERR_FILENO)
		return 0;
	if ((nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)) < 0)
		return -1;
	close(*fd);
	*fd = nfd;
	return 0;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int
spawn_program(qes_pinentry *pe, const char *program)
{
	static const int default_sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP,
	    SIGQUIT, SIGALRM, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1,
	    SIGUSR2 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t empty, defaults;
	int to_child[2] = { -1, -1 }, from_child[2] = { -1, -1 };
	int fa_init = 0, attr_init = 0, e, r = QES_ERR_PINENTRY;
	const char *debug = getenv("QES_PINENTRY_DEBUG");
	char *argv[2];
	size_t i;

	if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0 ||
	    fd_above_stdio(&to_child[0]) != 0 ||
	    fd_above_stdio(&from_child[1]) != 0) {
		set_errmsg(pe, "cannot create pipes for the pinentry");
		goto out;
	}
	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto spawn_err;
	fa_init = 1;
	if ((e = posix_spawn_file_actions_adddup2(&fa, to_child[0],
	    STDIN_FILENO)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, from_child[1],
	    STDOUT_FILENO)) != 0)
		goto spawn_err;
	/* pinentry chatter on stderr would land in the signer's terminal. */
	if ((debug == NULL || *debug == '\0') &&
	    (e = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO,
	    "/dev/null", O_WRONLY, 0)) != 0)
		goto spawn_err;
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* Descriptors another thread opened without O_CLOEXEC stay with us. */
	if ((e = posix_spawn_file_actions_addclosefrom_np(&fa,
	    STDERR_FILENO + 1)) != 0)
		goto spawn_err;
#endif	/* elsewhere only our own descriptors are known to be O_CLOEXEC */

	/*
	 * A worker thread may block signals and the host may ignore some;
	 * pinentry-tty needs SIGALRM for its timeout and SIGINT to cancel.
	 */
	if ((e = posix_spawnattr_init(&attr)) != 0)
		goto spawn_err;
	attr_init = 1;
	sigemptyset(&empty);
	sigemptyset(&defaults);
	for (i = 0; i < sizeof(default_sigs) / sizeof(default_sigs[0]); i++)
		sigaddset(&defaults, default_sigs[i]);
	if ((e = posix_spawnattr_setsigmask(&attr, &empty)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&attr, &defaults)) != 0 ||
	    (e = posix_spawnattr_setflags(&attr,
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0)
		goto spawn_err;

	argv[0] = (char *)program;	/* posix_spawn does not write to it */
	argv[1] = NULL;
	if ((e = posix_spawnp(&pe->pid, program, &fa, &attr, argv,
	    environ)) != 0) {
		pe->pid = -1;
		goto spawn_err;
	}
	pe->to_fd = to_child[1];
	pe->from_fd = from_child[0];
	to_child[1] = from_child[0] = -1;
	r = 0;
	goto out;

 spawn_err:
	if (e == ENOENT) {
		r = QES_ERR_NOT_FOUND;
		set_errmsg(pe, "pinentry program not found: install pinentry "
		    "or set QES_PINENTRY");
	} else {
		snprintf(pe->errmsg, sizeof(pe->errmsg),
		    "cannot start the pinentry program: %s", strerror(e));
	}
 out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	close_fd(&to_child[0]);
	close_fd(&to_child[1]);
	close_fd(&from_child[0]);
	close_fd(&from_child[1]);
	return r;
}

/*
 * Write all of data. SIGPIPE is blocked for this thread only; if our write
 * raised one, it is taken off the pending set before the old mask returns,
 * unless one was already pending before (that one is not ours to eat).
 */
static int
write_all(qes_pinentry *pe, const void *data, size_t len)
{
	const uint8_t *p = data;
	struct timespec zero = { 0, 0 };
	sigset_t pipe_set, old_set, pending;
	int was_pending = 0, got_epipe = 0, r = QES_ERR_PINENTRY;
	size_t off = 0;
	ssize_t n;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set) != 0)
		return fail(pe, QES_ERR_INTERNAL, "cannot block SIGPIPE");
	if (sigismember(&old_set, SIGPIPE) == 1 && sigpending(&pending) == 0)
		was_pending = sigismember(&pending, SIGPIPE) == 1;
	while (off < len) {
		n = write(pe->to_fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			got_epipe = errno == EPIPE;
			goto out;
		}
		off += (size_t)n;
	}
	r = 0;
 out:
	if (got_epipe && !was_pending) {
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 &&
		    errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);
	if (r != 0)
		return fail(pe, r, got_epipe ? "pinentry exited" :
		    "cannot write to the pinentry");
	return 0;
}

static int
wait_readable(qes_pinentry *pe, int64_t deadline_ms)
{
	struct pollfd pfd[2];
	int64_t left;
	int timeout, n;

	for (;;) {
		if (atomic_load(&pe->cancelled))
			return fail(pe, QES_ERR_CANCELLED, CANCELLED_MSG);
		timeout = -1;
		if (deadline_ms != NO_DEADLINE) {
			if ((left = deadline_ms - now_ms()) <= 0)
				return fail(pe, QES_ERR_TIMEOUT,
				    "pinentry did not answer in time");
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		pfd[0].fd = pe->from_fd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = pe->cancel_rd;	/* -1 (ignored by poll) when none */
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		n = poll(pfd, 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(pe, QES_ERR_PINENTRY,
			    "cannot poll the pinentry pipe");
		if (pfd[1].revents != 0)
			continue;	/* the flag is checked at the top */
		if (n > 0)	/* data, hang-up or error: read() tells which */
			return 0;
	}
}

/*
 * Frame the next line: *line covers it without its LF (and a CR before
 * that), borrowed from rbuf until line_done(), which wipes it.
 */
static int
read_line(qes_pinentry *pe, int64_t deadline_ms, qes_cursor *line)
{
	const uint8_t *nl;
	size_t len;
	ssize_t n;
	int r;

	for (;;) {
		nl = pe->rbuf_len > 0 ? memchr(pe->rbuf, '\n', pe->rbuf_len) :
		    NULL;
		if (nl != NULL) {
			len = (size_t)(nl - pe->rbuf);
			if (len + 1 > QES_ASSUAN_LINE_IN_MAX)
				break;
			pe->line_len = len + 1;
			if (len > 0 && pe->rbuf[len - 1] == '\r')
				len--;
			qes_cursor_init(line, pe->rbuf, len);
			return 0;
		}
		if (pe->rbuf_len >= QES_ASSUAN_LINE_IN_MAX)
			break;
		if ((r = wait_readable(pe, deadline_ms)) != 0)
			return r;
		n = read(pe->from_fd, pe->rbuf + pe->rbuf_len,
		    pe->rbuf_cap - pe->rbuf_len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return fail(pe, QES_ERR_PINENTRY,
			    "cannot read from the pinentry");
		if (n == 0) {
			pe->eof = 1;
			return fail(pe, QES_ERR_PINENTRY, "pinentry exited");
		}
		pe->rbuf_len += (size_t)n;
	}
	return fail(pe, QES_ERR_PINENTRY, "pinentry sent an overlong line");
}

static void
line_done(qes_pinentry *pe)
{
	size_t rest = pe->rbuf_len - pe->line_len;

	memmove(pe->rbuf, pe->rbuf + pe->line_len, rest);
	qes_wipe(pe->rbuf + rest, pe->line_len);
	pe->rbuf_len = rest;
	pe->line_len = 0;
}

/* Consume word when the line starts with it followed by a space or the end. */
static int
take_word(qes_cursor *c, const char *word)
{
	qes_cursor probe = *c;
	const uint8_t *p;
	size_t n = strlen(word);
	uint8_t sp;

	if (qes_cursor_get_bytes(&probe, n, &p) != 0 || memcmp(p, word, n) != 0)
		return 0;
	if (qes_cursor_remaining(&probe) > 0 &&
	    (qes_cursor_get_u8(&probe, &sp) != 0 || sp != ' '))
		return 0;
	*c = probe;
	return 1;
}

/* "ERR <code> <text>": the code (GPG_ERR_GENERAL when unreadable), the text
 * into errmsg. */
static void
parse_err(qes_pinentry *pe, qes_cursor *c, uint32_t *code)
{
	uint64_t v = 0;
	size_t digits = 0;
	uint8_t ch;

	while (qes_cursor_peek_u8(c, &ch) == 0 && ch >= '0' && ch <= '9') {
		(void)qes_cursor_skip(c, 1);
		if (++digits <= 10)
			v = v * 10 + (uint64_t)(ch - '0');
	}
	*code = digits == 0 || digits > 10 || v == 0 || v > UINT32_MAX ?
	    GPG_ERR_GENERAL : (uint32_t)v;
	if (qes_cursor_peek_u8(c, &ch) == 0 && ch == ' ')
		(void)qes_cursor_skip(c, 1);
	if (qes_cursor_remaining(c) == 0) {
		snprintf(pe->errmsg, sizeof(pe->errmsg), "pinentry error %u",
		    (unsigned)*code);
		return;
	}
	set_errmsg_untrusted(pe, "pinentry: ", c);
}

/*
 * Send cmd (a complete line; NULL to read the greeting) and read the answer
 * up to its OK or ERR, skipping status and comment lines. With pin, the
 * data lines are decoded into it (too much data is drained and wiped, then
 * QES_ERR_LIMIT); without, they are dropped. Returns 0 with *gpg_err 0
 * after OK or with the code of an ERR line; a negative error when the
 * exchange itself failed.
 */
static int
transact(qes_pinentry *pe, const qes_buf *cmd, int64_t deadline_ms,
    qes_secret *pin, uint32_t *gpg_err)
{
	qes_cursor line;
	const uint8_t *data;
	size_t data_len;
	uint8_t first;
	int r, data_r = 0;

	*gpg_err = 0;
	if (pe->broken)
		return QES_ERR_PINENTRY;	/* errmsg says why */
	if (cmd != NULL &&
	    (r = write_all(pe, qes_buf_data(cmd), qes_buf_len(cmd))) != 0)
		goto out;
	for (;;) {
		if ((r = read_line(pe, deadline_ms, &line)) != 0)
			goto out;
		if (take_word(&line, "OK")) {
			line_done(pe);
			break;
		}
		if (take_word(&line, "ERR")) {
			parse_err(pe, &line, gpg_err);
			line_done(pe);
			break;
		}
		if (take_word(&line, "D")) {
			data_len = qes_cursor_remaining(&line);
			if (pin != NULL && data_r == 0 &&
			    qes_cursor_get_bytes(&line, data_len, &data) == 0)
				data_r = qes_assuan_unescape_into_secret(
				    (const char *)data, data_len, pin);
			line_done(pe);
			continue;
		}
		if (take_word(&line, "S") ||
		    (qes_cursor_peek_u8(&line, &first) == 0 && first == '#')) {
			line_done(pe);
			continue;
		}
		if (take_word(&line, "INQUIRE")) {
			/* We never ask for anything that needs an inquiry. */
			line_done(pe);
			if ((r = write_all(pe, "CAN\n", 4)) != 0)
				goto out;
			continue;
		}
		line_done(pe);
		r = fail(pe, QES_ERR_PINENTRY, "pinentry sent an unexpected line");
		goto out;
	}
	r = 0;
	if (data_r == QES_ERR_LIMIT) {
		set_errmsg(pe, "the PIN is longer than qes accepts");
		r = QES_ERR_LIMIT;
	} else if (data_r != 0) {
		set_errmsg(pe, "pinentry sent malformed data");
		r = QES_ERR_PINENTRY;
	}
 out:
	if (r != 0 && pin != NULL)
		qes_secret_clear(pin);
	return r;
}

/*
 * "NAME" or "NAME text" plus LF in b, the text escaped. A description can be
 * longer than an Assuan line (1000 bytes with the LF), and an over-long line
 * would be refused as a whole, so the text is cut on a UTF-8 character
 * boundary to fit and ends with an ellipsis: the signer sees a shortened
 * dialog instead of none. Callers keep what must be seen (the verification
 * code, the certificate subject) near the start.
 */
static int
build_cmd(qes_buf *b, const char *name, const char *text)
{
	int r;

	qes_buf_reset(b);
	if ((r = qes_buf_put_str(b, name)) != 0)
		return r;
	if (text != NULL && *text != '\0') {
		if ((r = qes_buf_put_u8(b, ' ')) != 0 ||
		    (r = qes_assuan_escape_max(text,
		    QES_ASSUAN_LINE_MAX - qes_buf_len(b) - 1, b, NULL)) != 0)
			return r;
	}
	return qes_buf_put_u8(b, '\n');
}

/* A SET command whose ERR answer is an error (pinentry accepts them all). */
static int
set_text(qes_pinentry *pe, qes_buf *b, const char *name, const char *text)
{
	uint32_t code;
	int r;

	if ((r = build_cmd(b, name, text)) != 0)
		return r;
	if ((r = transact(pe, b, now_ms() + SETUP_TIMEOUT_MS, NULL,
	    &code)) != 0)
		return r;
	return code == 0 ? 0 : QES_ERR_PINENTRY;
}

/*
 * OPTION name=value. The value is not unescaped by the pinentry, so it
 * cannot be escaped either: one with control characters (a hostile
 * $GPG_TTY or $TERM could try to start a second command) or too long for a
 * line is not sent. An ERR answer is fine: older pinentries lack options.
 */
static int
send_option(qes_pinentry *pe, qes_buf *b, const char *name, const char *value)
{
	uint32_t code;
	size_t i;
	int r;

	if (value == NULL || *value == '\0')
		return 0;
	for (i = 0; value[i] != '\0'; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return 0;
	if (strlen("OPTION ") + strlen(name) + 1 + i + 1 > QES_ASSUAN_LINE_MAX)
		return 0;
	qes_buf_reset(b);
	if ((r = qes_buf_putf(b, "OPTION %s=%s\n", name, value)) != 0 ||
	    (r = transact(pe, b, now_ms() + SETUP_TIMEOUT_MS, NULL,
	    &code)) != 0)
		return r;
	if (code != 0)	/* ignored, so it must not linger as "the" error */
		set_errmsg(pe, "no error");
	return 0;
}

/* GnuPG's order: the caller's choice, $GPG_TTY, then our stdin's terminal. */
static const char *
find_tty(const qes_pinentry_opts *opts, char *buf, size_t len)
{
	const char *v;

	if (opts->tty_name != NULL && *opts->tty_name != '\0')
		return opts->tty_name;
	if ((v = getenv("GPG_TTY")) != NULL && *v != '\0')
		return v;
	if (isatty(STDIN_FILENO) && ttyname_r(STDIN_FILENO, buf, len) == 0)
		return buf;
	return NULL;
}

/*
 * The program's LC_CTYPE when it chose one. With "C" we send nothing: the
 * pinentry inherits our environment and derives the same locale from it.
 * (setlocale(, NULL) is only racy against a concurrent setlocale(), which
 * programs do once at start-up.)
 */
static const char *
current_lc_ctype(char *buf, size_t len)
{
	const char *l = setlocale(LC_CTYPE, NULL);

	if (l == NULL || strcmp(l, "C") == 0 || strcmp(l, "POSIX") == 0 ||
	    strlen(l) >= len)
		return NULL;
	memcpy(buf, l, strlen(l) + 1);
	return buf;
}

/*
 * A pidfd for our child, or -1 where the kernel has none (pidfd_open is
 * Linux >= 5.3; seccomp filters may refuse it too). The pid is our unreaped
 * child, so it names that process.
 */
static int
open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd >= 0 && fd <= INT_MAX ? (int)fd : -1;
#else
	(void)pid;
	return -1;
#endif
}

/*
 * Wait until the child has exited or limit_ms have passed; 1 when reaped
 * (or not ours to reap: SIGCHLD ignored). The wait sleeps on the pidfd,
 * which becomes readable when the child exits, so the caller resumes at
 * once; without one it sleeps on the child's stdout until its EOF (the
 * usual sign that it is leaving; at most 10 ms at a time) and then polls
 * waitpid every millisecond.
 * (A plain sleep between waitpid calls cost every signature up to 10 ms.)
 */
static int
wait_child(pid_t pid, int pidfd, int *out_fd, long limit_ms)
{
	int64_t deadline = now_ms() + limit_ms, left;
	struct pollfd pfd;
	char junk[256];
	ssize_t n;
	pid_t w;
	int status;

	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w < 0 && errno == EINTR)
			continue;
		if (w != 0)
			return 1;
		if ((left = deadline - now_ms()) <= 0)
			return 0;
		if (left > INT_MAX)
			left = INT_MAX;
		if (pidfd >= 0) {
			pfd.fd = pidfd;
			pfd.events = POLLIN;
			(void)poll(&pfd, 1, (int)left);
		} else if (*out_fd >= 0) {
			/* a grandchild may hold the pipe: look again soon */
			pfd.fd = *out_fd;
			pfd.events = POLLIN;
			if (poll(&pfd, 1, left < 10 ? (int)left : 10) > 0 &&
			    (n = read(*out_fd, junk, sizeof(junk))) <= 0 &&
			    !(n < 0 && (errno == EINTR || errno == EAGAIN)))
				*out_fd = -1;	/* EOF: it is on its way out */
		} else
			sleep_ms(1);
	}
}

/*
 * Wait for the child with growing force: grace_ms for it to leave on its
 * own, then SIGTERM, then SIGKILL. The pid is our unreaped child, so it
 * cannot have been recycled for another process. out_fd is the child's
 * stdout (our end), or -1; it is only read and drained here.
 */
static void
reap_child(pid_t pid, int out_fd, long grace_ms)
{
	int pidfd = open_pidfd(pid), status;
	pid_t w;

	if (!wait_child(pid, pidfd, &out_fd, grace_ms)) {
		(void)kill(pid, SIGTERM);
		if (!wait_child(pid, pidfd, &out_fd, TERM_GRACE_MS)) {
			(void)kill(pid, SIGKILL);
			do
				w = waitpid(pid, &status, 0);
			while (w < 0 && errno == EINTR);
		}
	}
	if (pidfd >= 0)
		(void)close(pidfd);
}

/*
 * Only a vfork-style posix_spawn (glibc since 2.24) reports a failed exec
 * as its own error; a fork-based one (other libcs, or glibc under valgrind)
 * lets the child exit with 127 before any greeting. Recognise that, so a
 * missing program is QES_ERR_NOT_FOUND everywhere.
 */
static int
exec_failed(qes_pinentry *pe)
{
	pid_t w;
	int i, status;

	for (i = 0; i < 50; i++) {
		w = waitpid(pe->pid, &status, WNOHANG);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return 0;
		if (w == pe->pid) {
			pe->pid = -1;
			return WIFEXITED(status) && WEXITSTATUS(status) == 127;
		}
		sleep_ms(10);
	}
	return 0;
}

int
qes_pinentry_open(const qes_pinentry_opts *opts, qes_pinentry **out)
{
	static const qes_pinentry_opts defaults;
	qes_pinentry *pe = NULL;
	qes_buf *b = NULL;
	const char *program, *v;
	char tty[256], lc[128];
	uint32_t code;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (opts->timeout_s < 0 || opts->timeout_s > INT_MAX - DIALOG_GRACE_S)
		return QES_ERR_INVALID_ARG;
	if ((program = opts->program) == NULL || *program == '\0')
		program = getenv("QES_PINENTRY");
	if (program == NULL || *program == '\0')
		program = "pinentry";

	if ((pe = calloc(1, sizeof(*pe))) == NULL)
		return QES_ERR_ALLOC;
	pe->pid = -1;
	pe->to_fd = pe->from_fd = -1;
	pe->cancel_rd = pe->cancel_wr = -1;
	atomic_init(&pe->cancelled, 0);
	pe->timeout_s = opts->timeout_s;
	set_errmsg(pe, "no error");
	if (opts->attach != NULL) {
		int cp[2];

		if (pipe2(cp, O_CLOEXEC | O_NONBLOCK) != 0) {
			r = QES_ERR_PINENTRY;
			set_errmsg(pe, "cannot create the pinentry's cancel pipe");
			goto out;
		}
		pe->cancel_rd = cp[0];
		pe->cancel_wr = cp[1];
	}
	if ((r = rbuf_alloc(pe)) != 0 || (r = spawn_program(pe, program)) != 0)
		goto out;
	if ((b = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}

	if ((r = transact(pe, NULL, now_ms() + SETUP_TIMEOUT_MS, NULL,
	    &code)) != 0) {
		if (pe->eof && exec_failed(pe)) {
			r = QES_ERR_NOT_FOUND;
			set_errmsg(pe, "pinentry program could not be run");
		}
		goto out;
	}
	if (code != 0) {
		r = fail(pe, QES_ERR_PINENTRY, "pinentry refused to start");
		goto out;
	}
	if ((v = opts->tty_type) == NULL || *v == '\0')
		v = getenv("TERM");
	if ((r = send_option(pe, b, "ttyname",
	    find_tty(opts, tty, sizeof(tty)))) != 0 ||
	    (r = send_option(pe, b, "ttytype", v)) != 0)
		goto out;
	if ((v = opts->display) == NULL || *v == '\0')
		v = getenv("DISPLAY");
	if ((r = send_option(pe, b, "display", v)) != 0 ||
	    (r = send_option(pe, b, "lc-ctype",
	    current_lc_ctype(lc, sizeof(lc)))) != 0)
		goto out;
	/* from here until qes_pinentry_free() another thread may cancel */
	if (opts->attach != NULL) {
		pe->attach = opts->attach;
		pe->attach_arg = opts->attach_arg;
		pe->attach(pe->attach_arg, pe);
	}
	*out = pe;
	pe = NULL;
	r = 0;
 out:
	qes_buf_free(b);
	qes_pinentry_free(pe);
	return r;
}

void
qes_pinentry_cancel(qes_pinentry *pe)
{
	ssize_t n;

	if (pe == NULL || atomic_exchange(&pe->cancelled, 1) != 0)
		return;
	/*
	 * pid stays valid: the child is reaped only in qes_pinentry_free(),
	 * after the attach hook has been told (the caller's lock orders us).
	 */
	if (pe->pid > 0)
		(void)kill(pe->pid, SIGTERM);
	if (pe->cancel_wr >= 0)
		do
			n = write(pe->cancel_wr, "x", 1);
		while (n < 0 && errno == EINTR);
}

void
qes_pinentry_free(qes_pinentry *pe)
{
	if (pe == NULL)
		return;
	if (pe->attach != NULL)
		pe->attach(pe->attach_arg, NULL);	/* no cancel from now on */
	if (pe->to_fd >= 0) {
		if (!pe->broken)
			(void)write_all(pe, "BYE\n", 4);
		/* EOF on its stdin ends the pinentry even without the BYE. */
		close_fd(&pe->to_fd);
	}
	/*
	 * A broken one may sit in a dialog forever: SIGTERM it soon. (A
	 * pinentry-tty killed that way leaves the terminal without echo;
	 * nothing but not killing it would avoid that.)
	 */
	if (pe->pid > 0)
		reap_child(pe->pid, pe->from_fd,
		    pe->broken ? BROKEN_GRACE_MS : BYE_GRACE_MS);
	close_fd(&pe->from_fd);
	close_fd(&pe->cancel_rd);
	close_fd(&pe->cancel_wr);
	rbuf_free(pe);
	qes_wipe(pe, sizeof(*pe));
	free(pe);
}

const char *
qes_pinentry_errmsg(const qes_pinentry *pe)
{
	return pe != NULL ? pe->errmsg : "no pinentry";
}

/*
 * The dialog command itself: no deadline unless a timeout was asked for,
 * since the signer may take their time; then a few seconds beyond the
 * pinentry's own, for one that ignores SETTIMEOUT.
 */
static int
run_dialog(qes_pinentry *pe, qes_buf *b, const char *cmd, qes_secret *pin,
    uint32_t *gpg_err)
{
	int64_t deadline = NO_DEADLINE;
	int r;

	if (pe->timeout_s > 0)
		deadline = now_ms() +
		    ((int64_t)pe->timeout_s + DIALOG_GRACE_S) * 1000;
	if ((r = build_cmd(b, cmd, NULL)) != 0)
		return r;
	return transact(pe, b, deadline, pin, gpg_err);
}

/* What an ERR answer to a dialog means for the caller. */
static int
dialog_error(uint32_t gpg_err, int is_confirm)
{
	switch (gpg_err & GPG_ERR_CODE_MASK) {
	case GPG_ERR_CANCELED:
	case GPG_ERR_FULLY_CANCELED:
		return QES_ERR_CANCELLED;
	case GPG_ERR_TIMEOUT:
		return QES_ERR_TIMEOUT;
	case GPG_ERR_NOT_CONFIRMED:
		if (is_confirm)
			return QES_ERR_CANCELLED;
		break;
	}
	return QES_ERR_PINENTRY;
}

/*
 * A dialog that failed because another thread cancelled it (the program
 * was killed, a write met a closed pipe, a read saw the cancel pipe) is
 * QES_ERR_CANCELLED, whatever the failure looked like from here.
 */
static int
cancelled_or(qes_pinentry *pe, int r)
{
	if (r != 0 && atomic_load(&pe->cancelled)) {
		set_errmsg(pe, CANCELLED_MSG);
		return QES_ERR_CANCELLED;
	}
	return r;
}

/* SETTIMEOUT (when asked for) and SETTITLE, SETDESC: every dialog's start. */
static int
dialog_setup(qes_pinentry *pe, qes_buf *b, const char *title,
    const char *description)
{
	char num[32];
	int r;

	if (pe->timeout_s > 0) {
		snprintf(num, sizeof(num), "%d", pe->timeout_s);
		if ((r = set_text(pe, b, "SETTIMEOUT", num)) != 0)
			return r;
	}
	/*
	 * Settings persist in the pinentry between dialogs, so every one is
	 * sent each time, empty when not given.
	 */
	if ((r = set_text(pe, b, "SETTITLE", title)) != 0 ||
	    (r = set_text(pe, b, "SETDESC", description)) != 0)
		return r;
	return 0;
}

int
qes_pinentry_getpin(qes_pinentry *pe, const char *title,
    const char *description, const char *prompt, const char *error,
    qes_secret *pin)
{
	qes_buf *b = NULL;
	uint32_t code;
	int r;

	if (pe == NULL || pin == NULL)
		return QES_ERR_INVALID_ARG;
	qes_secret_clear(pin);
	if ((b = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = dialog_setup(pe, b, title, description)) != 0 ||
	    (r = set_text(pe, b, "SETPROMPT",
	    prompt != NULL ? prompt : "PIN:")) != 0 ||
	    (r = set_text(pe, b, "SETOK", "_OK")) != 0 ||
	    (r = set_text(pe, b, "SETCANCEL", "_Cancel")) != 0)
		goto out;
	/* The pinentry forgets the error after each dialog by itself. */
	if (error != NULL && *error != '\0' &&
	    (r = set_text(pe, b, "SETERROR", error)) != 0)
		goto out;
	if ((r = run_dialog(pe, b, "GETPIN", pin, &code)) != 0)
		goto out;
	if (code != 0)
		r = dialog_error(code, 0);
 out:
	r = cancelled_or(pe, r);
	if (r != 0)
		qes_secret_clear(pin);
	qes_buf_free(b);
	return r;
}

int
qes_pinentry_confirm(qes_pinentry *pe, const char *title,
    const char *description, const char *ok_label, const char *cancel_label)
{
	qes_buf *b = NULL;
	uint32_t code;
	int r;

	if (pe == NULL)
		return QES_ERR_INVALID_ARG;
	if ((b = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = dialog_setup(pe, b, title, description)) != 0 ||
	    (r = set_text(pe, b, "SETOK",
	    ok_label != NULL ? ok_label : "_OK")) != 0 ||
	    (r = set_text(pe, b, "SETCANCEL",
	    cancel_label != NULL ? cancel_label : "_Cancel")) != 0 ||
	    (r = run_dialog(pe, b, "CONFIRM", NULL, &code)) != 0)
		goto out;
	if (code != 0)
		r = dialog_error(code, 1);
 out:
	r = cancelled_or(pe, r);
	qes_buf_free(b);
	return r;
}

int
qes_pinentry_message(qes_pinentry *pe, const char *title,
    const char *description)
{
	qes_buf *b = NULL;
	uint32_t code;
	int r;

	if (pe == NULL)
		return QES_ERR_INVALID_ARG;
	if ((b = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = dialog_setup(pe, b, title, description)) != 0 ||
	    (r = set_text(pe, b, "SETOK", "_OK")) != 0 ||
	    (r = run_dialog(pe, b, "MESSAGE", NULL, &code)) != 0)
		goto out;
	/* Pinentries older than 0.9 only know the CONFIRM form. */
	if ((code & GPG_ERR_CODE_MASK) == GPG_ERR_ASS_UNKNOWN_CMD &&
	    (r = run_dialog(pe, b, "CONFIRM --one-button", NULL, &code)) != 0)
		goto out;
	if (code != 0)
		r = dialog_error(code, 1);
 out:
	r = cancelled_or(pe, r);
	qes_buf_free(b);
	return r;
}
