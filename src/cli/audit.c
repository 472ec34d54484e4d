/*
 * audit.c - `qes audit list|export|verify`.
 *
 * list and export read GET /v1/audit (scope audit). export asks for JSON
 * Lines, the export format of qes/audit.h, and follows the Next-Cursor
 * header page by page: each page starts with a header line whose anchor is
 * the last record of the page before, which export checks and then drops,
 * so the pages join into one file that `qes audit verify` accepts. The file
 * is written to a temporary name beside the target (mode 0600: records
 * hold client addresses), synced, and renamed only when complete.
 *
 * verify is offline: it reads an export file with the streaming verifier
 * of libqes (qes_audit_verify_file) - the same rules the server applies -
 * and names the first record where the chain breaks.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "api.h"
#include "cli.h"
#include "qes/audit.h"
#include "qes/buf.h"
#include "qes/err.h"
#include "qes/tool.h"

#define EXPORT_DEFAULT_MIB 1024
#define EXPORT_MAX_MIB (1024 * 1024)
#define EXPORT_PAGES_MAX 100000000	/* 10^11 records: a loop, not a log */
#define JSONL_TYPE "application/x-ndjson"

static void
usage(FILE *f)
{
	fputs("usage: qes audit list [--since TIME] [--until TIME] [--type TYPE]\n"
	    "                      [--device DEV_ID] [--key KEY_ID] [--limit N]\n"
	    "                      [--cursor CURSOR] [--json]\n"
	    "       qes audit export --out FILE [--max-mib N] [--page-size N]\n"
	    "       qes audit verify FILE\n"
	    "       (list and export also take the connection options below)\n"
	    "\n"
	    "The tamper-evident audit log of your tenant (needs scope audit).\n"
	    "\n"
	    "  list     records in seq order, filtered; TIME is RFC 3339 or\n"
	    "           YYYY-MM-DD (UTC), the range is [since, until); --limit\n"
	    "           1..1000 (default 100); when more records match, the cursor\n"
	    "           of the next page is printed on stderr. --json prints the\n"
	    "           API's JSON document.\n"
	    "  export   the whole log as JSON Lines (the export format), all pages,\n"
	    "           written atomically to FILE with mode 0600; refused beyond\n"
	    "           --max-mib MiB (default 1024); --page-size records per request\n"
	    "           (1..1000, default 1000)\n"
	    "  verify   OFFLINE: check an export file's hash chain and print\n"
	    "           \"audit chain OK: N records, head seq S hash H\", or\n"
	    "           \"audit chain BROKEN at seq S: REASON\" (exit 9). Compare the\n"
	    "           head hash with `GET /v1/audit/verify` or an earlier export to\n"
	    "           rule out records cut from the end.\n"
	    "\n"
	    CLI_API_OPTIONS_HELP
	    CLI_API_EXIT_HELP("9 (verify) the audit chain is broken or the file damaged,\n"), f);
}

static void
format_ms(json_int_t ms, char *out, size_t outlen)
{
	struct tm tm;
	time_t t;

	if (ms < 0 || (t = (time_t)(ms / 1000), gmtime_r(&t, &tm) == NULL)) {
		snprintf(out, outlen, "-");
		return;
	}
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(ms % 1000));
}

static void
text_of(const json_t *o, const char *k, char *out, size_t outlen)
{
	const json_t *v = json_object_get(o, k);

	if (json_is_string(v))
		cli_sanitize(json_string_value(v), out, outlen);
	else if (json_is_integer(v))
		snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(out, outlen, "-");
}

/* Append "&name=escaped(value)" when value is set. */
static int
add_param(qes_buf *b, const char *name, const char *value)
{
	int r;

	if (value == NULL)
		return 0;
	if ((r = qes_buf_putf(b, "&%s=", name)) != 0)
		return r;
	return cli_api_escape(b, value);
}

static int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "type", required_argument, NULL, 't' },
		{ "device", required_argument, NULL, 'd' },
		{ "key", required_argument, NULL, 'k' },
		{ "limit", required_argument, NULL, 'l' },
		{ "cursor", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	const char *since = NULL, *until = NULL, *type = NULL, *device = NULL;
	const char *key = NULL, *cursor = NULL, *next;
	cli_api_opts co = { 0 };
	cli_response resp = { 0 };
	cli_api *api = NULL;
	qes_buf *path = NULL;
	json_t *doc = NULL, *recs, *rec;
	char c[8][160], *end;
	long limit = 100;
	size_t i;
	int ch, json_out = 0, rc = QES_EXIT_USAGE, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			return QES_EXIT_USAGE;
		if (r > 0)
			continue;
		switch (ch) {
		case 's': since = optarg; break;
		case 'u': until = optarg; break;
		case 't': type = optarg; break;
		case 'd': device = optarg; break;
		case 'k': key = optarg; break;
		case 'c': cursor = optarg; break;
		case 'j': json_out = 1; break;
		case 'l':
			errno = 0;
			limit = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || limit < 1 ||
			    limit > 1000) {
				fprintf(stderr, "qes audit list: --limit takes 1..1000\n");
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
	if (optind != argc) {
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	rc = QES_EXIT_FAILURE;
	if ((path = qes_buf_new()) == NULL ||
	    qes_buf_putf(path, "/v1/audit?limit=%ld", limit) != 0 ||
	    add_param(path, "since", since) != 0 ||
	    add_param(path, "until", until) != 0 ||
	    add_param(path, "type", type) != 0 ||
	    add_param(path, "device", device) != 0 ||
	    add_param(path, "key", key) != 0 ||
	    add_param(path, "cursor", cursor) != 0 ||
	    qes_buf_put_u8(path, '\0') != 0)
		goto out;
	if ((rc = cli_api_open(&co, "qes audit list", &api)) != 0 ||
	    (rc = cli_api_request(api, "GET", (const char *)qes_buf_data(path),
	    NULL, NULL, 0, &resp)) != 0 ||
	    (rc = cli_api_json("qes audit list", &resp, &doc)) != 0)
		goto out;
	recs = json_object_get(doc, "records");
	if (!json_is_array(recs)) {
		fprintf(stderr, "qes audit list: the server's answer has no records\n");
		rc = QES_EXIT_FAILURE;
		goto out;
	}
	if (json_out) {
		if (json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
			rc = QES_EXIT_FAILURE;
			goto out;
		}
		putchar('\n');
	} else {
		printf("%-7s %-24s %-24s %-6s %-7s %-20s %-30s %s\n", "SEQ", "TIME",
		    "TYPE", "STATUS", "METHOD", "ROUTE", "KEY", "REQUEST ID");
		json_array_foreach(recs, i, rec) {
			const json_t *t = json_object_get(rec, "time_ms");

			text_of(rec, "seq", c[0], sizeof(c[0]));
			format_ms(json_is_integer(t) ? json_integer_value(t) : -1,
			    c[1], sizeof(c[1]));
			text_of(rec, "type", c[2], sizeof(c[2]));
			text_of(rec, "status", c[3], sizeof(c[3]));
			text_of(rec, "method", c[4], sizeof(c[4]));
			text_of(rec, "route", c[5], sizeof(c[5]));
			text_of(rec, "key_id", c[6], sizeof(c[6]));
			text_of(rec, "request_id", c[7], sizeof(c[7]));
			printf("%-7s %-24s %-24s %-6s %-7s %-20s %-30s %s\n", c[0],
			    c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
		}
	}
	if (fflush(stdout) != 0) {
		rc = QES_EXIT_FAILURE;
		goto out;
	}
	next = json_string_value(json_object_get(doc, "next_cursor"));
	if (next != NULL && !json_out) {
		cli_sanitize(next, c[0], sizeof(c[0]));
		fprintf(stderr, "qes audit list: more records: add --cursor %s\n",
		    c[0]);
	}
	rc = QES_EXIT_OK;
 out:
	json_decref(doc);
	qes_buf_free(path);
	cli_response_clear(&resp);
	cli_api_free(api);
	return rc;
}

/* State of an export across pages. */
struct export {
	FILE *out;
	char tenant[QES_AUDIT_ID_MAX + 1];
	uint64_t last_seq;			/* of the last record written (or anchor) */
	char last_hash[2 * QES_AUDIT_HASH_LEN + 1];
	uint64_t records;
	uint64_t first_seq;
	uint64_t bytes, max_bytes;
};

/* 1 when s is 64 lower-case hex digits (a hash as exports spell it). */
static int
hex64(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 2 * QES_AUDIT_HASH_LEN)
		return 0;
	for (i = 0; i < 2 * QES_AUDIT_HASH_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* 1 when s can be printed as a tenant id: 1..64 of [A-Za-z0-9_-]. */
static int
printable_id(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= QES_AUDIT_ID_MAX && strspn(s,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* The JSON of one line (without its '\n'); NULL if not an object. */
static json_t *
line_json(const uint8_t *p, size_t len)
{
	json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);

	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/*
 * One page: check its header against where the previous page ended, write
 * the header (first page only) and the records, remember the last record.
 */
static int
export_page(struct export *ex, const cli_response *resp, int first)
{
	const uint8_t *data = qes_buf_data(resp->body), *p, *nl;
	size_t len = qes_buf_len(resp->body), n, line = 0;
	const json_t *anchor, *v;
	json_t *j = NULL;
	const char *s;
	int rc = QES_EXIT_FAILURE;

	if (len == 0 || data[len - 1] != '\n') {
		fprintf(stderr, "qes audit export: a page does not end with a "
		    "complete line\n");
		return rc;
	}
	for (p = data; p < data + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(data + len - p));
		n = (size_t)(nl - p);
		line++;
		if (line == 1) {
			if ((j = line_json(p, n)) == NULL ||
			    (s = json_string_value(json_object_get(j, "format"))) == NULL ||
			    strcmp(s, QES_AUDIT_EXPORT_FORMAT) != 0 ||
			    (s = json_string_value(json_object_get(j, "tenant"))) == NULL ||
			    !json_is_object(anchor = json_object_get(j, "anchor")) ||
			    !json_is_integer(v = json_object_get(anchor, "seq")) ||
			    json_integer_value(v) < 0 ||
			    !hex64(json_string_value(json_object_get(anchor, "hash"))) ||
			    !printable_id(s)) {
				fprintf(stderr, "qes audit export: the server's page does "
				    "not start with an export header\n");
				goto out;
			}
			if (first) {
				snprintf(ex->tenant, sizeof(ex->tenant), "%s", s);
				ex->last_seq = (uint64_t)json_integer_value(v);
				snprintf(ex->last_hash, sizeof(ex->last_hash), "%s",
				    json_string_value(json_object_get(anchor, "hash")));
				ex->first_seq = ex->last_seq + 1;
			} else if (strcmp(s, ex->tenant) != 0 ||
			    (uint64_t)json_integer_value(v) != ex->last_seq ||
			    strcmp(json_string_value(json_object_get(anchor, "hash")),
			    ex->last_hash) != 0) {
				fprintf(stderr, "qes audit export: the log changed during "
				    "the export (records purged?): pages do not join at "
				    "seq %" PRIu64 "; run the export again\n", ex->last_seq);
				goto out;
			}
			json_decref(j);
			j = NULL;
			if (!first)
				continue;
		} else {
			/* a record: only its seq and hash matter here */
			if ((j = line_json(p, n)) == NULL ||
			    !json_is_integer(v = json_object_get(j, "seq")) ||
			    json_integer_value(v) < 1 ||
			    (s = json_string_value(json_object_get(j, "hash"))) == NULL ||
			    !hex64(s)) {
				fprintf(stderr, "qes audit export: the server sent a record "
				    "line that is not a record\n");
				goto out;
			}
			ex->last_seq = (uint64_t)json_integer_value(v);
			memcpy(ex->last_hash, s, 2 * QES_AUDIT_HASH_LEN + 1);
			ex->records++;
			json_decref(j);
			j = NULL;
		}
		if (n + 1 > ex->max_bytes - ex->bytes) {
			fprintf(stderr, "qes audit export: the export is larger than "
			    "--max-mib allows: refused\n");
			goto out;
		}
		if (fwrite(p, 1, n + 1, ex->out) != n + 1) {
			fprintf(stderr, "qes audit export: write failed: %s\n",
			    strerror(errno));
			goto out;
		}
		ex->bytes += n + 1;
	}
	rc = 0;
 out:
	json_decref(j);
	return rc;
}

static int
cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "max-mib", required_argument, NULL, 'm' },
		{ "page-size", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		CLI_API_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL;
	struct export ex;
	cli_api_opts co = { 0 };
	cli_response resp = { 0 };
	cli_api *api = NULL;
	qes_buf *path = NULL;
	char *tmp = NULL, cursor[128] = "", *end;
	long mib = EXPORT_DEFAULT_MIB, page_size = 1000;
	uint64_t pages = 0;
	int ch, fd = -1, rc = QES_EXIT_USAGE, r, first = 1;

	memset(&ex, 0, sizeof(ex));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if ((r = cli_api_parse_opt(&co, ch, optarg)) < 0)
			return QES_EXIT_USAGE;
		if (r > 0)
			continue;
		switch (ch) {
		case 'o': out = optarg; break;
		case 'm':
			errno = 0;
			mib = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || mib < 1 ||
			    mib > EXPORT_MAX_MIB) {
				fprintf(stderr, "qes audit export: --max-mib takes 1..%d\n",
				    EXPORT_MAX_MIB);
				return QES_EXIT_USAGE;
			}
			break;
		case 'p':
			errno = 0;
			page_size = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    page_size < 1 || page_size > 1000) {
				fprintf(stderr, "qes audit export: --page-size takes "
				    "1..1000\n");
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
	if (optind != argc || out == NULL) {
		fprintf(stderr, "qes audit export: --out FILE is required\n");
		return QES_EXIT_USAGE;
	}
	ex.max_bytes = (uint64_t)mib * 1024 * 1024;
	if ((rc = cli_api_open(&co, "qes audit export", &api)) != 0)
		goto out;
	rc = QES_EXIT_FAILURE;
	if (qes_file_tmp_beside(out, &tmp, &fd) != 0) {
		fprintf(stderr, "qes audit export: cannot create a file beside %s: %s\n",
		    out, strerror(errno));
		tmp = NULL;
		goto out;
	}
	if ((ex.out = fdopen(fd, "w")) == NULL)
		goto out;
	fd = -1;

	do {
		qes_buf_free(path);
		if ((path = qes_buf_new()) == NULL ||
		    qes_buf_putf(path, "/v1/audit?format=jsonl&limit=%ld",
		    page_size) != 0 ||
		    add_param(path, "cursor", cursor[0] != '\0' ? cursor : NULL) != 0 ||
		    qes_buf_put_u8(path, '\0') != 0)
			goto out;
		cli_response_clear(&resp);
		if ((rc = cli_api_request(api, "GET", (const char *)qes_buf_data(path),
		    NULL, JSONL_TYPE, CLI_API_PAGE_MAX, &resp)) != 0)
			goto out;
		if (resp.status != 200) {
			rc = cli_api_report(&resp);
			goto out;
		}
		rc = QES_EXIT_FAILURE;
		if (strncmp(resp.content_type, JSONL_TYPE, strlen(JSONL_TYPE)) != 0) {
			fprintf(stderr, "qes audit export: the server did not answer "
			    "with JSON Lines\n");
			goto out;
		}
		if (export_page(&ex, &resp, first) != 0)
			goto out;
		first = 0;
		if (resp.next_cursor[0] != '\0' &&
		    (strcmp(resp.next_cursor, cursor) == 0 ||
		    ++pages >= EXPORT_PAGES_MAX)) {
			fprintf(stderr, "qes audit export: the server's paging does not "
			    "end\n");
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", resp.next_cursor);
	} while (cursor[0] != '\0');

	if (fflush(ex.out) != 0 || (fd = dup(fileno(ex.out))) < 0) {
		fprintf(stderr, "qes audit export: writing %s failed: %s\n", tmp,
		    strerror(errno));
		goto out;
	}
	r = fclose(ex.out);
	ex.out = NULL;
	if (r != 0) {
		fprintf(stderr, "qes audit export: writing %s failed: %s\n", tmp,
		    strerror(errno));
		goto out;
	}
	/* the export may hold client addresses: 0600, like the temporary file */
	r = qes_file_commit(fd, tmp, out, 0600);
	fd = -1;
	if (r != 0) {
		fprintf(stderr, "qes audit export: cannot write %s: %s\n", out,
		    strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (ex.records > 0)
		printf("exported %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64
		    ") of tenant %s to %s; head hash %s\n", ex.records, ex.first_seq,
		    ex.last_seq, ex.tenant, out, ex.last_hash);
	else
		printf("exported 0 records of tenant %s to %s\n", ex.tenant, out);
	rc = QES_EXIT_OK;
 out:
	if (ex.out != NULL)
		fclose(ex.out);
	if (fd >= 0)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	qes_buf_free(path);
	cli_response_clear(&resp);
	cli_api_free(api);
	return rc;
}

static void
hex(const uint8_t *h, char out[2 * QES_AUDIT_HASH_LEN + 1])
{
	size_t i;

	for (i = 0; i < QES_AUDIT_HASH_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static int
cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	qes_audit_verify_result res;
	char h[2 * QES_AUDIT_HASH_LEN + 1], reason[sizeof(res.reason)];
	const char *file;
	int ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return QES_EXIT_OK;
		}
		usage(stderr);
		return QES_EXIT_USAGE;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "qes audit verify: give one export file\n");
		return QES_EXIT_USAGE;
	}
	file = argv[optind];
	r = qes_audit_verify_file(file, &res);
	cli_sanitize(res.reason, reason, sizeof(reason));
	if (r == 0) {
		hex(res.last_hash, h);
		printf("audit chain OK: %" PRIu64 " records, head seq %" PRIu64
		    " hash %s\n", res.records, res.last_seq, h);
		printf("tenant %s, chain starts after anchor seq %" PRIu64 "\n",
		    res.tenant_id, res.anchor_seq);
		return fflush(stdout) == 0 ? QES_EXIT_OK : QES_EXIT_FAILURE;
	}
	if (r == QES_ERR_CHAIN_BROKEN) {
		printf("audit chain BROKEN at seq %" PRIu64 ": %s\n", res.broken_seq,
		    reason);
		printf("(line %" PRIu64 " of %s; %" PRIu64 " records before it "
		    "verified)\n", res.line, file, res.records);
		fflush(stdout);
		return QES_EXIT_CHAIN_BROKEN;
	}
	if (r == QES_ERR_NOT_FOUND || r == QES_ERR_IO) {
		fprintf(stderr, "qes audit verify: cannot read %s: %s\n", file,
		    r == QES_ERR_NOT_FOUND ? "no such file" : qes_strerror(r));
		return r == QES_ERR_NOT_FOUND ? QES_EXIT_NOT_FOUND : QES_EXIT_FAILURE;
	}
	if (res.line <= 1) {
		fprintf(stderr, "qes audit verify: %s is not a qes audit export: %s\n",
		    file, reason);
		return QES_EXIT_FAILURE;
	}
	/* a record line that cannot be read breaks the chain where it stands */
	printf("audit chain BROKEN at seq %" PRIu64 ": %s\n", res.last_seq + 1,
	    reason);
	printf("(line %" PRIu64 " of %s; %" PRIu64 " records before it "
	    "verified)\n", res.line, file, res.records);
	fflush(stdout);
	return QES_EXIT_CHAIN_BROKEN;
}

int
cli_cmd_audit(int argc, char **argv)
{
	static const qes_tool_cmd cmds[] = {
		{ "list", cmd_list },
		{ "export", cmd_export },
		{ "verify", cmd_verify },
		{ NULL, NULL },
	};

	cli_api_wipe_json_memory();
	return qes_tool_dispatch("qes audit", NULL, cmds, usage, argc, argv);
}
