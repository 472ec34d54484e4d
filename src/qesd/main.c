/*
 * main.c - the qesd command: `qesd serve [--config FILE]`, `qesd admin ...`
 * (admin.c) and `qesd routes [--json]` (routes.c).
 *
 * serve reads the configuration (file, then QESD_* environment), loads the
 * pepper and the TLS files (refusing unsafe ones), builds the application
 * services (app.c: store, audit queue, key cache, rate limits, the bus to
 * the other replicas), wires the
 * authentication middleware and the audit after hook into the server with
 * the route tables of routes.c, and runs until SIGTERM/SIGINT has drained
 * it; queued audit records and last_used_at times are written before exit.
 *
 * Exit codes: 0 clean exit (also after a drain), 1 runtime failure (cannot
 * bind, out of memory), 2 usage error, 3 configuration or secret-file error.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "admin.h"
#include "app.h"
#include "audit_svc.h"
#include "auth.h"
#include "config.h"
#include "fdlimit.h"
#include "health.h"
#include "jobs.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"
#include "server.h"
#include "store_jobs.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define EXIT_CONFIG 3
#define MAX_TABLES 16

extern char **environ;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: qesd serve [--config FILE]\n"
	    "       qesd admin [--config FILE] tenant create NAME | tenant list | purge ... |\n"
	    "                                  backup FILE ...\n"
	    "       qesd routes [--json]\n"
	    "       qesd --help | --version\n"
	    "\n"
	    "qesd is the cloud signing layer of qes: an HTTPS (TLS 1.3 only) API for\n"
	    "relying parties and the endpoint of the desktop agents.\n"
	    "\n"
	    "The configuration file has `key = value` lines; QESD_<KEY> environment\n"
	    "variables override it (QESD_CONFIG names the file when --config is not\n"
	    "given). Keys:\n%s"
	    "\n"
	    "Exit codes: 0 ok (also after SIGTERM drained the server), 1 runtime\n"
	    "failure, 2 usage error, 3 configuration or secret-file error.\n",
	    qesd_config_help());
}

/* Everything serve() owns, released in one place. */
struct app {
	qesd_config cfg;
	int cfg_ready;
	qes_secret *pepper;
	qesd_metrics *metrics;
	qesd_app *svc;		/* store, audit queue, key cache, limits */
	qesd_server *srv;
};

static int
serve(int argc, char **argv)
{
	const qesd_route_table *tables[MAX_TABLES], *metrics_tables[2];
	qesd_server_config sc;
	struct app app;
	const char *config_path = getenv("QESD_CONFIG");
	const char *allow = getenv("QESD_ALLOW_TESTING");
	char err[512];
	sigset_t sigs;
	size_t nt = 0, k;
	int i, rc = EXIT_CONFIG, r;

	memset(&app, 0, sizeof(app));
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (qesd_config_init(&app.cfg) != 0) {
		rc = EXIT_RUNTIME;
		goto out;
	}
	app.cfg_ready = 1;
	if (config_path != NULL &&
	    qesd_config_load_file(&app.cfg, config_path, err, sizeof(err)) != 0)
		goto config_error;
	if (qesd_config_load_env(&app.cfg, environ, err, sizeof(err)) != 0)
		goto config_error;
	if (qesd_config_validate(&app.cfg, allow != NULL && strcmp(allow, "1") == 0,
	    err, sizeof(err)) != 0)
		goto config_error;
	qesd_log_set_level((qesd_log_level)app.cfg.log_level);
	if (qesd_pepper_load(app.cfg.pepper_file, &app.pepper, err, sizeof(err)) != 0)
		goto config_error;
	if (qesd_check_secret_file(app.cfg.tls_key, "tls_key", err, sizeof(err)) != 0)
		goto config_error;
	/* the bus's secrets are checked again when read (bus_nats.c); here a
	 * wrong mode is a configuration error like the TLS key's */
	if (app.cfg.bus_token_file != NULL && qesd_check_secret_file(
	    app.cfg.bus_token_file, "bus_token_file", err, sizeof(err)) != 0)
		goto config_error;
	if (app.cfg.bus_credentials_file != NULL && qesd_check_secret_file(
	    app.cfg.bus_credentials_file, "bus_credentials_file", err,
	    sizeof(err)) != 0)
		goto config_error;
	/* the document key: a placeholder or a wrong mode is a configuration
	 * error (exit 3: systemd does not restart, see qesd.service), checked
	 * here before the store; jobs_ades.c reads it again for use */
	if (app.cfg.document_key_file != NULL) {
		uint8_t dk[QESD_DOC_KEY_LEN];

		r = qesd_doc_key_load(app.cfg.document_key_file, dk, err,
		    sizeof(err));
		qes_wipe(dk, sizeof(dk));
		if (r != 0 || qesd_jobs_documents_check_config(&app.cfg, err,
		    sizeof(err)) != 0)
			goto config_error;
	}
	if (app.cfg.testing_routes)
		qesd_log(QESD_LOG_WARN, "testing routes are ON: never do this in production");
	/* one descriptor per agent: before the server sizes its table */
	qesd_fd_limit_raise();

	/*
	 * The services start threads; SIGTERM/SIGINT must be blocked in them
	 * too, or the default action could kill the process there instead of
	 * starting the drain (the server's signal thread takes them).
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	rc = EXIT_RUNTIME;
	if ((app.metrics = qesd_metrics_new()) == NULL)
		goto out;
	if (qesd_app_new(&app.cfg, app.metrics, &app.pepper, &app.svc, err,
	    sizeof(err)) != 0) {
		/* the store, or the bus (bus = nats:, its CA or token file) */
		qesd_log(QESD_LOG_ERROR, "cannot open the store or the bus",
		    QLS("error", err));
		goto out;
	}
	/* every job a previous run left open ends now, before anyone asks */
	if ((r = qesd_jobs_recover(app.svc->jobs, NULL)) != 0 ||
	    (r = qesd_jobs_start(app.svc->jobs)) != 0) {
		qesd_log(QESD_LOG_ERROR, "cannot start the signature jobs service",
		    QLS("error", qes_strerror(r)));
		goto out;
	}
	/* device sessions a previous run left open are closed too */
	if (qesd_hub_recover(app.svc->hub) != 0)
		goto out;

	/* route tables: routes.c lists them; /metrics and testing by config */
	for (k = 0; qesd_route_tables[k] != NULL && nt < MAX_TABLES - 3; k++)
		tables[nt++] = qesd_route_tables[k];
	if (!app.cfg.metrics_enabled)
		tables[nt++] = &qesd_metrics_routes;
	if (app.cfg.testing_routes)
		tables[nt++] = &qesd_testing_routes;
	tables[nt] = NULL;
	metrics_tables[0] = &qesd_metrics_routes;
	metrics_tables[1] = NULL;

	signal(SIGPIPE, SIG_IGN);
	memset(&sc, 0, sizeof(sc));
	sc.cfg = &app.cfg;
	sc.tables = tables;
	sc.metrics_tables = metrics_tables;
	sc.app = app.svc;
	sc.metrics = app.metrics;
	sc.handle_signals = 1;
	sc.middleware = qesd_auth_middleware;
	sc.after = qesd_audit_after;
	sc.ready = qesd_app_ready;
	sc.hub = app.svc->hub;		/* the agent endpoint, /v1/agent */
	if (qesd_server_new(&sc, &app.srv, err, sizeof(err)) != 0) {
		qesd_log(QESD_LOG_ERROR, "cannot start", QLS("error", err));
		goto out;
	}
	r = qesd_server_run(app.srv);
	if (r != 0) {
		/* workers are stuck in requests past the drain deadline: leave,
		 * but with every audit record written that can be */
		qesd_log(QESD_LOG_WARN, "exiting with requests abandoned");
		(void)qesd_app_flush(app.svc);
		_exit(0);
	}
	rc = 0;
	goto out;

config_error:
	qesd_log(QESD_LOG_ERROR, "configuration error", QLS("error", err));
	rc = EXIT_CONFIG;
out:
	qesd_server_free(app.srv);
	qesd_app_free(app.svc);		/* flushes audit records, last_used_at */
	qesd_metrics_free(app.metrics);
	qes_secret_free(app.pepper);
	if (app.cfg_ready)
		qesd_config_free(&app.cfg);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("qesd %s\n", QES_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return serve(argc - 2, argv + 2);
	if (strcmp(argv[1], "admin") == 0)
		return qesd_admin_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "routes") == 0) {
		if (argc > 3 || (argc == 3 && strcmp(argv[2], "--json") != 0)) {
			usage(stderr);
			return EXIT_USAGE;
		}
		return qesd_routes_print(stdout, argc == 3) == 0 ? 0 : EXIT_RUNTIME;
	}
	fprintf(stderr, "qesd: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
