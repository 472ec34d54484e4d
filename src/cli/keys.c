/*
 * keys.c - `qes keys create|list|rotate|revoke`: API keys of the caller's
 * tenant, through the qesd API (POST/GET /v1/api-keys,
 * POST /v1/api-keys/{id}/rotate, DELETE /v1/api-keys/{id}; scope admin).
 *
 * A new or rotated key is in the response once and printed once, on
 * stdout, with a warning on stderr; the response buffer and every JSON
 * string holding it are wiped when freed (api.c). Nothing else here ever
 * prints a secret.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api.h"
#include "cli.h"
#include "qes/buf.h"
#include "qes/tool.h"

#define MAX_SCOPES 16
#define LIST_PAGES_MAX 1000		/* 1000 pages of keys is a bug, not a tenant */

static const char *const scope_names[] = {
	"sign", "devices", "diagnostics", "audit", "admin", NULL,
};

static void
usage(FILE *f)
{
	fputs("usage: qes keys create --name NAME --scope SCOPE... [--expires TIME]\n"
	    "       qes keys list [--json]\n"
	    "       qes keys rotate KEY_ID [--grace SECONDS]\n"
	    "       qes keys revoke KEY_ID\n"
	    "       (each also takes the connection options below)\n"
	    "\n"
	    "API keys of your tenant (needs a key with scope admin).\n"
	    "\n"
	    "  create   make a key; it is printed ONCE (api_key: line): store it\n"
	    "           right away. A key can only grant scopes its creator holds.\n"
	    "    --name NAME       a label for humans (1-128 bytes)\n"
	    "    --scope SCOPE     sign, devices, diagnostics, audit, admin;\n"
	    "                      repeat it or give a comma-separated list\n"
	    "    --expires TIME    RFC 3339 expiry (default: never)\n"
	    "  list     list keys (id, name, scopes, state, times); --json prints\n"
	    "           the API's objects as one JSON document\n"
	    "  rotate   give KEY_ID a new secret, printed ONCE; the old secret keeps\n"
	    "           working for --grace SECONDS (server default 86400, max 604800)\n"
	    "  revoke   revoke KEY_ID at once (the old secret stops working too)\n"
	    "\n"
	    CLI_API_OPTIONS_HELP CLI_API_EXIT_HELP(""), f);
}

static int
scope_known(const char *s, size_t len)
{
	size_t i;

	for (i = 0; scope_names[i] != NULL; i++)
		if (strlen(scope_names[i]) == len &&
		    strncmp(scope_names[i], s, len) == 0)
			return 1;
	return 0;
}

/* Add "a,b" or "a" to the array, refusing unknown names and duplicates. */
static int
add_scopes(json_t *arr, const char *arg)
{
	const char *p = arg, *end;
	size_t i, len;

	for (;;) {
		end = strchr(p, ',');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (!scope_known(p, len)) {
			fprintf(stderr, "qes keys: unknown scope \"%.*s\" (sign, devices, "
			    "diagnostics, audit, admin)\n", (int)(len > 40 ? 40 : len), p);
			return QES_EXIT_USAGE;
		}
		for (i = 0; i < json_array_size(arr); i++)
			if (strlen(json_string_value(json_array_get(arr, i))) == len &&
			    strncmp(json_string_value(json_array_get(arr, i)), p, len) == 0)
				break;
		if (i == json_array_size(arr)) {
			if (json_array_size(arr) >= MAX_SCOPES ||
			    json_array_append_new(arr, json_stringn(p, len)) != 0)
				return QES_EXIT_FAILURE;
		}
		if (end == NULL)
			return 0;
		p = end + 1;
	}
}

static const char *
str_field(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A printable rendering of any field: string, integer, array of strings. */
static void
field_text(const json_t *o, const char *k, char *out, size_t outlen)
{
	const json_t *v = json_object_get(o, k), *it;
	char tmp[512];
	size_t i, off = 0;

	snprintf(out, outlen, "-");
	if (json_is_string(v)) {
		cli_sanitize(json_string_value(v), out, outlen);
	} else if (json_is_integer(v)) {
		snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_boolean(v)) {
		snprintf(out, outlen, "%s", json_is_true(v) ? "true" : "false");
	} else if (json_is_array(v)) {
		tmp[0] = '\0';
		json_array_foreach(v, i, it) {
			if (!json_is_string(it))
				continue;
			off += (size_t)snprintf(tmp + off, off < sizeof(tmp) ?
			    sizeof(tmp) - off : 0, "%s%s", off > 0 ? "," : "",
			    json_string_value(it));
			if (off >= sizeof(tmp))
				break;
		}
		cli_sanitize(tmp, out, outlen);
		if (out[0] == '\0')
			snprintf(out, outlen, "-");
	}
}

/*
 * A key's state for the table: revoked, expired (by this machine's clock),
 * rotating (a previous secret is still valid), or active.
 */
static void
key_state(const json_t *k, char *out, size_t outlen)
{
	char now[32];
	const char *exp = str_field(k, "expires_at");
	struct tm tm;
	time_t t = time(NULL);

	now[0] = '\0';
	if (gmtime_r(&t, &tm) != NULL)
		strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
	/* RFC 3339 UTC texts of the same shape compare as strings */
	if (str_field(k, "revoked_at") != NULL)
		snprintf(out, outlen, "revoked");
	else if (exp != NULL && now[0] != '\0' && strncmp(exp, now, 19) <= 0)
		snprintf(out, outlen, "expired");
	else if (str_field(k, "previous_secret_valid_until") != NULL)
		snprintf(out, outlen, "rotating");
	else
		snprintf(out, outlen, "active");
}

/* The key of a create/rotate answer, printed once. */
static int
print_new_key(const json_t *o, const char *verb)
{
	const char *key = str_field(o, "key");
	char id[160], scopes[256], expires[96], grace[96];

	if (key == NULL || cli_api_key_text_ok(key, strlen(key)) != 0) {
		fprintf(stderr, "qes keys: the server's answer has no API key\n");
		return QES_EXIT_FAILURE;
	}
	field_text(o, "id", id, sizeof(id));
	field_text(o, "scopes", scopes, sizeof(scopes));
	field_text(o, "expires_at", expires, sizeof(expires));
	field_text(o, "previous_secret_valid_until", grace, sizeof(grace));
	printf("key_id: %s\n", id);
	printf("api_key: %s\n", key);
	if (strcmp(scopes, "-") != 0)
		printf("scopes: %s\n", scopes);
	printf("expires_at: %s\n", strcmp(expires, "-") == 0 ? "never" : expires);
	if (strcmp(grace, "-") != 0)
		printf("old_secret_valid_until: %s\n", grace);
	fflush(stdout);
	fprintf(stderr, "qes keys: %s: the API key above is shown ONCE and cannot "
	    "be recovered: store it now (for --key-file: a file of mode 0600)\n",
	    verb);
	return QES_EXIT_OK;
}

static int
cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "scope", required_argument, NULL, 's' },
		{ "expires", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_api_opts co = { 0 };
	cli_response resp = { 0 };
	cli_api *api = NULL;
	json_t *scopes = json_array(), *body = NULL, *answer = NULL;
	const char *name = NULL, *expires = NULL;
	int ch, rc = QES_EXIT_USAGE, r;

	if (scopes == NULL)
		return QES_EXIT_FAILURE;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			goto out;
		if (r > 0)
			continue;
		switch (ch) {
		case 'n': name = optarg; break;
		case 'e': expires = optarg; break;
		case 's':
			if ((rc = add_scopes(scopes, optarg)) != 0)
				goto out;
			rc = QES_EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			rc = QES_EXIT_OK;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc || name == NULL || json_array_size(scopes) == 0) {
		fprintf(stderr, "qes keys create: --name and at least one --scope "
		    "are required\n");
		goto out;
	}
	if ((body = json_pack("{s:s, s:O}", "name", name, "scopes", scopes)) == NULL ||
	    (expires != NULL &&
	    json_object_set_new(body, "expires_at", json_string(expires)) != 0)) {
		fprintf(stderr, "qes keys create: --name and --expires must be UTF-8\n");
		goto out;
	}
	if ((rc = cli_api_open(&co, "qes keys create", &api)) != 0 ||
	    (rc = cli_api_request(api, "POST", "/v1/api-keys", body, NULL, 0,
	    &resp)) != 0 ||
	    (rc = cli_api_json("qes keys create", &resp, &answer)) != 0)
		goto out;
	rc = print_new_key(answer, "created");
 out:
	json_decref(answer);
	json_decref(body);
	json_decref(scopes);
	cli_response_clear(&resp);
	cli_api_free(api);
	return rc;
}

static int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	cli_api_opts co = { 0 };
	cli_response resp = { 0 };
	cli_api *api = NULL;
	json_t *all = json_array(), *page = NULL, *items, *it;
	qes_buf *path = NULL;
	char cursor[128] = "", c[7][200];
	const char *nc;
	size_t i, pages = 0;
	int ch, json_out = 0, rc = QES_EXIT_USAGE, r;

	if (all == NULL)
		return QES_EXIT_FAILURE;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			goto out;
		if (r > 0)
			continue;
		switch (ch) {
		case 'j': json_out = 1; break;
		case 'h':
			usage(stdout);
			rc = QES_EXIT_OK;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc) {
		usage(stderr);
		goto out;
	}
	if ((rc = cli_api_open(&co, "qes keys list", &api)) != 0)
		goto out;
	do {
		rc = QES_EXIT_FAILURE;
		qes_buf_free(path);
		if ((path = qes_buf_new()) == NULL ||
		    qes_buf_put_str(path, "/v1/api-keys?limit=1000") != 0 ||
		    (cursor[0] != '\0' && (qes_buf_put_str(path, "&cursor=") != 0 ||
		    cli_api_escape(path, cursor) != 0)) ||
		    qes_buf_put_u8(path, '\0') != 0)
			goto out;
		cli_response_clear(&resp);
		json_decref(page);
		page = NULL;
		if ((rc = cli_api_request(api, "GET",
		    (const char *)qes_buf_data(path), NULL, NULL, 0, &resp)) != 0 ||
		    (rc = cli_api_json("qes keys list", &resp, &page)) != 0)
			goto out;
		items = json_object_get(page, "items");
		if (!json_is_array(items)) {
			fprintf(stderr, "qes keys list: the server's answer has no key list\n");
			rc = QES_EXIT_FAILURE;
			goto out;
		}
		json_array_foreach(items, i, it)
			if (json_array_append(all, it) != 0)
				goto out;
		nc = str_field(page, "next_cursor");
		if (nc != NULL && (strlen(nc) >= sizeof(cursor) ||
		    strcmp(nc, cursor) == 0 || ++pages >= LIST_PAGES_MAX)) {
			fprintf(stderr, "qes keys list: the server's paging does not end\n");
			rc = QES_EXIT_FAILURE;
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", nc != NULL ? nc : "");
	} while (cursor[0] != '\0');

	if (json_out) {
		json_t *doc = json_pack("{s:O}", "keys", all);

		if (doc == NULL || json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
			json_decref(doc);
			rc = QES_EXIT_FAILURE;
			goto out;
		}
		json_decref(doc);
		putchar('\n');
	} else {
		printf("%-30s %-22s %-9s %-32s %-24s %-24s %s\n", "ID", "NAME",
		    "STATE", "SCOPES", "CREATED", "EXPIRES", "LAST USED");
		json_array_foreach(all, i, it) {
			field_text(it, "id", c[0], sizeof(c[0]));
			field_text(it, "name", c[1], sizeof(c[1]));
			key_state(it, c[2], sizeof(c[2]));
			field_text(it, "scopes", c[3], sizeof(c[3]));
			field_text(it, "created_at", c[4], sizeof(c[4]));
			field_text(it, "expires_at", c[5], sizeof(c[5]));
			field_text(it, "last_used_at", c[6], sizeof(c[6]));
			printf("%-30s %-22s %-9s %-32s %-24s %-24s %s\n", c[0], c[1],
			    c[2], c[3], c[4], c[5], c[6]);
		}
	}
	rc = fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
 out:
	qes_buf_free(path);
	json_decref(page);
	json_decref(all);
	cli_response_clear(&resp);
	cli_api_free(api);
	return rc;
}

/* rotate and revoke: one id argument, one request. */
static int
cmd_one(int argc, char **argv, int rotate)
{
	static const struct option rot_opts[] = {
		{ "grace", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	static const struct option rev_opts[] = {
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	const char *prog = rotate ? "qes keys rotate" : "qes keys revoke";
	cli_api_opts co = { 0 };
	cli_response resp = { 0 };
	cli_api *api = NULL;
	json_t *body = NULL, *answer = NULL;
	char path[256], *end;
	long grace = -1;
	int ch, rc = QES_EXIT_USAGE, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", rotate ? rot_opts : rev_opts,
	    NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			return QES_EXIT_USAGE;
		if (r > 0)
			continue;
		switch (ch) {
		case 'g':
			errno = 0;
			grace = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || grace < 0 ||
			    grace > 604800) {
				fprintf(stderr, "%s: --grace takes 0..604800 seconds\n",
				    prog);
				return QES_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return QES_EXIT_OK;
		default:
			usage(stderr);
			return QES_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !cli_api_id_ok(argv[optind])) {
		fprintf(stderr, "%s: give one key id (key_...)\n", prog);
		return QES_EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/api-keys/%s%s", argv[optind],
	    rotate ? "/rotate" : "");
	if (rotate && (body = grace >= 0 ?
	    json_pack("{s:I}", "grace_seconds", (json_int_t)grace) :
	    json_object()) == NULL)
		return QES_EXIT_FAILURE;
	if ((rc = cli_api_open(&co, prog, &api)) != 0 ||
	    (rc = cli_api_request(api, rotate ? "POST" : "DELETE", path, body,
	    NULL, 0, &resp)) != 0)
		goto out;
	if (rotate) {
		if ((rc = cli_api_json(prog, &resp, &answer)) == 0)
			rc = print_new_key(answer, "rotated");
	} else if (resp.status >= 200 && resp.status < 300) {
		printf("revoked %s\n", argv[optind]);
		rc = QES_EXIT_OK;
	} else {
		rc = cli_api_report(&resp);
	}
 out:
	json_decref(answer);
	json_decref(body);
	cli_response_clear(&resp);
	cli_api_free(api);
	return rc;
}

static int
cmd_rotate(int argc, char **argv)
{
	return cmd_one(argc, argv, 1);
}

static int
cmd_revoke(int argc, char **argv)
{
	return cmd_one(argc, argv, 0);
}

int
cli_cmd_keys(int argc, char **argv)
{
	static const qes_tool_cmd cmds[] = {
		{ "create", cmd_create },
		{ "list", cmd_list },
		{ "rotate", cmd_rotate },
		{ "revoke", cmd_revoke },
		{ NULL, NULL },
	};

	cli_api_wipe_json_memory();
	return qes_tool_dispatch("qes keys", NULL, cmds, usage, argc, argv);
}
