/*
 * run.c - `qes-agent run`: the long-lived agent of an enrolled desktop.
 *
 * Loads what enrollment left (enrollment.json, the device key from the
 * secret store, the CA copy), the PKCS#11 modules and the opt-in PIN store,
 * then hands everything to the session (session.c) until SIGTERM/SIGINT or
 * a server verdict that ends it (revoked, replaced).
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked in every thread (the mask
 * is set before any thread starts) and taken by one small thread with
 * sigtimedwait(), which asks the session to stop: close 1000, cancel the
 * dialogs, join the workers, free everything. Nothing runs in signal
 * context. SIGPIPE is ignored: a server that vanishes mid-write must be an
 * error return, not the end of the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/p11.h"
#include "qes/tool.h"

#include "addresses.h"
#include "agent.h"
#include "agentconf.h"
#include "devkey.h"
#include "enrollment.h"
#include "log.h"
#include "pinstore.h"
#include "secretstore.h"
#include "session.h"

#define DEFAULT_SECRET_TIMEOUT_MS 5000
#define ADDRS_ENV "QES_AGENT_GATEWAY_ADDRESSES"

/*
 * Where to connect (addresses.h): QES_AGENT_GATEWAY_ADDRESSES wins over
 * gateway_addresses in agent.conf; neither: server_url's host (l->n 0).
 */
static int
load_addresses(const agent_config *conf, agent_addrs *l, char *err,
    size_t err_len)
{
	const char *env = getenv(ADDRS_ENV), *v;
	char why[192];
	size_t i;
	int r;

	memset(l, 0, sizeof(*l));
	v = env != NULL && env[0] != '\0' ? env :
	    agent_config_get(conf, "gateway_addresses");
	if (v == NULL)
		return 0;
	if ((r = agent_addrs_parse(v, l, why, sizeof(why))) != 0) {
		snprintf(err, err_len, "%s%s", v == env ? ADDRS_ENV ": " : "", why);
		return r;
	}
	for (i = 0; i < l->n; i++)
		agent_log(AGENT_LOG_INFO, "gateway_address", "host", l->a[i].host,
		    "source", v == env ? ADDRS_ENV : "agent.conf", NULL);
	return 0;
}
#define LOCK_FILE "run.lock"

static void
usage(FILE *f)
{
	fputs("usage: qes-agent run [--config DIR] [--module PATH]... [--only-module]\n"
	    "                     [--pinentry PROGRAM] [--no-hotplug]\n"
	    "\n"
	    "Connect to the qes server this desktop is enrolled with and sign what\n"
	    "it asks for, after your consent and PIN in the pinentry dialog.\n"
	    "\n"
	    "  --config DIR       the enrollment and agent.conf (default $XDG_CONFIG_HOME/qes)\n"
	    "  --module PATH      also load this PKCS#11 module (repeatable)\n"
	    "  --only-module      load only --module paths and $QES_PKCS11_MODULES\n"
	    "  --pinentry PROGRAM the dialog program (default $QES_PINENTRY, else pinentry)\n"
	    "  --no-hotplug       read the tokens once at start instead of watching\n"
	    "\n"
	    "Logs are JSON lines on stderr ($QES_AGENT_LOG_LEVEL=debug|info|warn|error).\n"
	    "Exit codes: 0 stopped, 1 failure, 2 usage, 3 not enrolled or no device key,\n"
	    "10 device revoked (enroll again), 11 another agent uses this device.\n", f);
}

struct run_args {
	const char *config, *pinentry;
	qes_tool_modules mods;
	int no_hotplug;
};

static int
parse_args(int argc, char **argv, struct run_args *a)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'C' },
		{ "module", required_argument, NULL, 'm' },
		{ "only-module", no_argument, NULL, 'o' },
		{ "pinentry", required_argument, NULL, 'p' },
		{ "no-hotplug", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "C:m:op:nh", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': a->config = optarg; break;
		case 'p': a->pinentry = optarg; break;
		case 'o': a->mods.only_explicit = 1; break;
		case 'n': a->no_hotplug = 1; break;
		case 'm':
			if (qes_tool_modules_add(&a->mods, optarg) != 0) {
				fprintf(stderr, "qes-agent run: too many --module options\n");
				return QES_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	return 0;
}

struct sig_thread {
	pthread_t th;
	atomic_int done;
	agent_session *s;
	sigset_t set;
};

static void *
sig_main(void *arg)
{
	struct sig_thread *st = arg;
	struct timespec ts = { 0, 200 * 1000000L };
	char name[16];
	int sig;

	while (!atomic_load(&st->done)) {
		if ((sig = sigtimedwait(&st->set, NULL, &ts)) < 0)
			continue;	/* timeout or EINTR: look at done again */
		snprintf(name, sizeof(name), "%d", sig);
		agent_log(AGENT_LOG_INFO, "signal", "signal", name, NULL);
		agent_session_request_stop(st->s);
	}
	return NULL;
}

/*
 * One agent per enrollment: the systemd unit and the XDG autostart entry
 * may both be installed, and two agents with one identity would take the
 * session from each other (4003) forever. The lock dies with the process.
 */
static int
lock_dir(const char *dir, int *fd_out)
{
	char path[PATH_MAX + 16];
	int fd;

	*fd_out = -1;
	snprintf(path, sizeof(path), "%s/%s", dir, LOCK_FILE);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		fprintf(stderr, "qes-agent run: cannot open %s: %s\n", path,
		    strerror(errno));
		return QES_EXIT_FAILURE;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "qes-agent run: another qes-agent is already running "
		    "for %s\n", dir);
		close(fd);
		return AGENT_EXIT_REPLACED;
	}
	*fd_out = fd;
	return 0;
}

/* The device key enrollment stored, from the store it went to. */
static int
load_key(const char *dir, const agent_config *conf, const agent_enrollment *e,
    agent_devkey **key)
{
	agent_secretstore_opts so = { 0 };
	agent_secretstore *store = NULL;
	int r;

	so.timeout_ms = (int)agent_config_get_uint(conf, "secret_service_timeout_ms",
	    DEFAULT_SECRET_TIMEOUT_MS);
	so.file_dir = dir;
	if ((r = agent_secretstore_open(&so, &store)) == 0)
		r = agent_devkey_load(store, e->key_name, key);
	if (r != 0)
		fprintf(stderr, "qes-agent run: cannot load the device key \"%s\": %s%s\n",
		    e->key_name, store != NULL ? agent_secretstore_errmsg(store) :
		    qes_strerror(r), r == QES_ERR_NOT_FOUND ? " (enroll again with "
		    "`qes-agent enroll --force`)" : "");
	agent_secretstore_free(store);
	return r;
}

int
agent_cmd_run(int argc, char **argv)
{
	struct run_args a;
	struct sig_thread st;
	agent_session_opts so;
	agent_enrollment e;
	agent_config *conf = NULL;
	agent_devkey *key = NULL;
	agent_secretstore_opts pso = { 0 };
	agent_secretstore *pin_store = NULL;
	agent_pinstore *ps = NULL;
	agent_session *s = NULL;
	agent_addrs addrs;
	qes_sign_pin_source pin_source;
	qes_p11 *p = NULL;
	char dir[PATH_MAX], conf_path[PATH_MAX + 16], err[768];
	int r, rc = QES_EXIT_FAILURE, sig_started = 0, lock_fd = -1;

	if ((r = parse_args(argc, argv, &a)) != 0)
		return r < 0 ? QES_EXIT_OK : r;
	if (agent_state_dir(a.config, 0, dir, sizeof(dir), err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent run: %s\n", err);
		return QES_EXIT_NOT_FOUND;
	}
	if ((r = lock_dir(dir, &lock_fd)) != 0)
		return r;
	snprintf(conf_path, sizeof(conf_path), "%s/%s", dir, AGENT_CONFIG_FILE);
	if (agent_config_load(conf_path, &conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent run: %s\n", err);
		goto out;
	}
	if ((r = agent_enrollment_load(dir, &e, err, sizeof(err))) != 0) {
		fprintf(stderr, "qes-agent run: %s\n", err);
		rc = r == QES_ERR_NOT_FOUND ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
		goto out;
	}
	if (load_addresses(conf, &addrs, err, sizeof(err)) != 0) {
		fprintf(stderr, "qes-agent run: %s\n", err);
		goto out;
	}

	/*
	 * Every thread from here on inherits the mask. It is set before the
	 * device key is loaded: libsecret starts GDBus's worker thread, and a
	 * thread with SIGTERM unblocked would take it and end the process.
	 */
	memset(&st, 0, sizeof(st));
	sigemptyset(&st.set);
	sigaddset(&st.set, SIGTERM);
	sigaddset(&st.set, SIGINT);
	sigaddset(&st.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &st.set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((r = load_key(dir, conf, &e, &key)) != 0) {
		rc = r == QES_ERR_NOT_FOUND ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
		goto out;
	}

	if ((r = qes_p11_new(&p)) != 0 || (r = qes_tool_load_modules(p, &a.mods)) != 0) {
		fprintf(stderr, "qes-agent run: cannot load PKCS#11 modules: %s\n",
		    qes_strerror(r));
		goto out;
	}
	if (qes_p11_module_count(p) == 0)
		agent_log(AGENT_LOG_WARN, "no_modules", "message", "no PKCS#11 module "
		    "found; give one with --module PATH", NULL);

	/* remembered PINs: only in the platform store, never a file */
	pso.timeout_ms = (int)agent_config_get_uint(conf, "secret_service_timeout_ms",
	    DEFAULT_SECRET_TIMEOUT_MS);
	pso.no_file_fallback = 1;
	if (agent_secretstore_open(&pso, &pin_store) != 0 ||
	    agent_pinstore_new(conf, pin_store, &ps) != 0) {
		fprintf(stderr, "qes-agent run: out of memory\n");
		goto out;
	}
	agent_pinstore_source(ps, &pin_source);

	memset(&so, 0, sizeof(so));
	so.enrollment = &e;
	so.key = key;
	so.p11 = p;
	so.pin_source = &pin_source;
	so.pinentry = a.pinentry;
	so.no_hotplug = a.no_hotplug;
	so.addrs = addrs.n > 0 ? &addrs : NULL;
	if ((r = agent_session_new(&so, &s, err, sizeof(err))) != 0) {
		fprintf(stderr, "qes-agent run: %s\n", err[0] != '\0' ? err :
		    qes_strerror(r));
		goto out;
	}
	st.s = s;
	atomic_init(&st.done, 0);
	if (pthread_create(&st.th, NULL, sig_main, &st) != 0) {
		fprintf(stderr, "qes-agent run: cannot start the signal thread\n");
		goto out;
	}
	sig_started = 1;
	rc = agent_session_run(s);
	agent_log(AGENT_LOG_INFO, "agent_stopped", NULL);
 out:
	if (sig_started) {
		atomic_store(&st.done, 1);
		pthread_join(st.th, NULL);
	}
	agent_session_free(s);
	agent_pinstore_free(ps);
	agent_secretstore_free(pin_store);
	qes_p11_free(p);
	agent_devkey_free(key);
	agent_config_free(conf);
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}
