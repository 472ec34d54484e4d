/*
 * qes-agent-sign-test.c - run the local signing job the way qes-agent's sign
 * handler will: qes_sign_local() with the agent's PIN source (pinstore.c), so
 * the integration tests can drive the opt-in PIN store end to end without the
 * gateway.
 *
 * usage: qes-agent-sign-test --module PATH --token SERIAL --key IDHEX
 *            --in FILE --out SIG [--md sha256] [--scheme ecdsa|rsa-pkcs1|rsa-pss]
 *            [--pinentry PROGRAM] [--title TEXT] [--no-pin-source]
 *
 * The configuration (agent.conf) and the Secret Service are the user's, as
 * for qes-agent. The exit code is qes's (tool.h); on failure stderr says why
 * and which retry flags the token reports. Only --module paths are loaded.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/pinentry.h"
#include "qes/signer.h"
#include "qes/tool.h"

#include "agentconf.h"
#include "pinstore.h"
#include "secretstore.h"

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "md", required_argument, NULL, 'd' },
		{ "scheme", required_argument, NULL, 's' },
		{ "pinentry", required_argument, NULL, 'p' },
		{ "title", required_argument, NULL, 'T' },
		{ "no-pin-source", no_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	const char *token = NULL, *key = NULL, *in = NULL, *out = NULL;
	const char *scheme = NULL, *title = NULL;
	qes_tool_modules mods = { .only_explicit = 1 };
	qes_pinentry_opts pe_opts = { 0 };
	agent_secretstore_opts so = { 0 };
	qes_sign_request req = { 0 };
	qes_sign_result res = { 0 };
	qes_sign_pin_source src;
	qes_p11_inventory *inv = NULL;
	const qes_p11_token *t;
	const qes_p11_cred *c;
	agent_config *conf = NULL;
	agent_secretstore *store = NULL;
	agent_pinstore *ps = NULL;
	qes_p11 *p = NULL;
	uint8_t digest[QES_MD_MAX_LEN];
	const uint8_t *digests[1] = { digest };
	char err[512];
	int ch, r, use_source = 1, rc = QES_EXIT_FAILURE;

	req.md = QES_MD_SHA256;
	while ((ch = getopt_long(argc, argv, "m:t:k:i:o:d:s:p:T:N", opts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			if (qes_tool_modules_add(&mods, optarg) != 0)
				return QES_EXIT_USAGE;
			break;
		case 't': token = optarg; break;
		case 'k': key = optarg; break;
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 's': scheme = optarg; break;
		case 'p': pe_opts.program = optarg; break;
		case 'T': title = optarg; break;
		case 'N': use_source = 0; break;
		case 'd':
			if (qes_md_from_name(optarg, &req.md) != 0)
				return QES_EXIT_USAGE;
			break;
		default:
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc || token == NULL || key == NULL || in == NULL || out == NULL) {
		fprintf(stderr, "usage: qes-agent-sign-test --module PATH --token SERIAL "
		    "--key IDHEX --in FILE --out SIG [...]\n");
		return QES_EXIT_USAGE;
	}
	if ((r = agent_config_load(NULL, &conf, err, sizeof(err))) != 0) {
		/* as the agent does: a broken configuration never enables storage */
		fprintf(stderr, "qes-agent-sign-test: %s: not using remembered PINs\n", err);
		use_source = 0;
		if (agent_config_new_empty(&conf) != 0)
			goto out;
	}
	so.timeout_ms = (int)agent_config_get_uint(conf, "secret_service_timeout_ms", 0);
	so.no_file_fallback = 1;
	if (use_source && (agent_secretstore_open(&so, &store) != 0 ||
	    agent_pinstore_new(conf, store, &ps) != 0)) {
		fprintf(stderr, "qes-agent-sign-test: out of memory\n");
		goto out;
	}
	if ((r = qes_md_file(req.md, in, digest)) != 0 || (r = qes_p11_new(&p)) != 0 ||
	    (r = qes_tool_load_modules(p, &mods)) != 0 || (r = qes_p11_scan(p, &inv)) != 0) {
		fprintf(stderr, "qes-agent-sign-test: %s\n", qes_strerror(r));
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = qes_tool_find_cred(inv, token, key, &t, &c, err, sizeof(err))) != 0) {
		fprintf(stderr, "qes-agent-sign-test: %s\n", err);
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if (scheme != NULL) {
		if (qes_sig_scheme_from_name(scheme, &req.scheme) != 0) {
			rc = QES_EXIT_USAGE;
			goto out;
		}
	} else
		req.scheme = qes_cert_get_info(c->cert)->key_type == QES_KEY_EC ?
		    QES_SIG_ECDSA : QES_SIG_RSA_PKCS1;
	req.requester = "qes-agent test";
	req.title = title != NULL ? title : in;
	req.digests = digests;
	req.n_digests = 1;
	if (ps != NULL) {
		agent_pinstore_source(ps, &src);
		req.pin_source = &src;
	}
	if ((r = qes_sign_local(p, t, c, &req, &pe_opts, &res)) != 0) {
		fprintf(stderr, "qes-agent-sign-test: %s: %s\n", qes_strerror(r), res.errmsg);
		fprintf(stderr, "qes-agent-sign-test: token flags:%s%s%s\n",
		    res.token_flags & QES_TOK_PIN_COUNT_LOW ? " count_low" : "",
		    res.token_flags & QES_TOK_PIN_FINAL_TRY ? " final_try" : "",
		    res.token_flags & QES_TOK_PIN_LOCKED ? " locked" : "");
		rc = qes_tool_exit_code(r);
		goto out;
	}
	if ((r = qes_buf_write_file(res.sigs[0], out, 0644)) != 0) {
		fprintf(stderr, "qes-agent-sign-test: cannot write %s\n", out);
		goto out;
	}
	printf("signed: %zu bytes, token flags 0x%x\n", qes_buf_len(res.sigs[0]),
	    res.token_flags);
	rc = QES_EXIT_OK;
 out:
	qes_sign_result_clear(&res);
	qes_p11_inventory_free(inv);
	qes_p11_free(p);
	agent_pinstore_free(ps);
	agent_secretstore_free(store);
	agent_config_free(conf);
	return rc;
}
