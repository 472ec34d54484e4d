/*
 * h_audit.c - GET /v1/audit and GET /v1/audit/verify (scope audit).
 *
 * GET /v1/audit lists the caller's tenant's audit records in seq order.
 * Query: since, until (RFC 3339, or YYYY-MM-DD for midnight UTC; the
 * range is [since, until)), type, device, key (exact ids), cursor (opaque;
 * from the previous page), limit (1..1000, default 100), format (json |
 * jsonl). Unknown parameters are refused, like unknown JSON fields, so a
 * typo never silently widens a query.
 *
 * Two representations of the same page:
 *  - JSON (default): {"records":[...], "next_cursor": "..." | null}, each
 *    record as qes_audit_record_to_json renders it.
 *  - JSON Lines, with `Accept: application/x-ndjson` or `?format=jsonl`: the
 *    export format of qes/audit.h - a header line (tenant, anchor) and one
 *    record per line. Without filters the header's anchor is where the
 *    page's chain starts: the tenant's anchor on the first page, the record
 *    at the cursor on later ones. So the first page of an unfiltered
 *    listing, and every page in turn, is an export that `qes audit verify`
 *    checks on its own, and pages concatenate (dropping the later headers)
 *    into one full export. A filtered listing is an excerpt: its header
 *    carries the tenant's anchor and the excerpt does not verify as a chain.
 * In both, a `Next-Cursor` response header carries the cursor of the next
 * page; it is absent on the last page.
 *
 * GET /v1/audit/verify checks the tenant's whole stored chain in one read
 * snapshot (qesd_audit_verify) and answers 200 with a report either way:
 *   {"ok":true, "records":N, "head_seq":S, "head_hash":"<hex>",
 *    "anchor":{"seq":A, "hash":"<hex>"}}
 *   {"ok":false, "records":N, "first_broken_seq":S, "reason":"..."}
 * records counts the records that verified (before the break, if any).
 *
 * Tenancy: everything is filtered by req->auth.tenant_id, which only the
 * authentication middleware sets; there is no way to name another tenant.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "qes/audit.h"
#include "qes/buf.h"
#include "qes/err.h"
#include "app.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "rfc3339.h"
#include "routes.h"
#include "store.h"

#define TYPE_MAX 64
#define JSONL_TYPE "application/x-ndjson"
#define JSONL_TYPE_ALT "application/jsonl"
#define VERIFY_ATTEMPTS 3

static const char *const list_params[] = {
	"since", "until", "type", "device", "key", "cursor", "limit", "format",
};

static qesd_store *
app_store(const qesd_request *req)
{
	const qesd_app *app = req->app;

	return app != NULL ? app->store : NULL;
}

static qesd_handler_result
bad_query(qesd_request *req, qesd_response *resp, const char *param,
    const char *what)
{
	qesd_problemf(resp, req, 400, "invalid_query", "Invalid query", "%s: %s",
	    param, what);
	return QESD_HANDLED;
}

/* A store failure as a problem: 503 for a busy or unreachable store. */
static int
type_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > TYPE_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '.' || s[i] == '_'))
			return 0;
	return 1;
}

/* 1 when the Accept header names the JSON Lines media type. */
static int
accepts_jsonl(const char *accept)
{
	const char *p = accept, *end;
	size_t n;

	if (accept == NULL)
		return 0;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end != '\0' && *end != ',' && *end != ';' && *end != ' ' &&
		    *end != '\t')
			end++;
		n = (size_t)(end - p);
		if ((n == strlen(JSONL_TYPE) && strncasecmp(p, JSONL_TYPE, n) == 0) ||
		    (n == strlen(JSONL_TYPE_ALT) &&
		    strncasecmp(p, JSONL_TYPE_ALT, n) == 0))
			return 1;
		while (*end != '\0' && *end != ',')
			end++;
		p = end;
	}
	return 0;
}

static int
hex_json(const uint8_t *h, json_t **out)
{
	char hex[2 * QES_AUDIT_HASH_LEN + 1];
	size_t i;

	for (i = 0; i < QES_AUDIT_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return (*out = json_string(hex)) != NULL ? 0 : QES_ERR_ALLOC;
}

/*
 * The anchor of a JSON Lines page: the tenant's anchor, or for an
 * unfiltered later page the record at the cursor (seq = cursor).
 * QES_ERR_NOT_FOUND when that record does not exist.
 */
static int
page_anchor(qesd_tx *tx, const char *tenant, const char *cursor,
    uint64_t *seq, uint8_t hash[QES_AUDIT_HASH_LEN])
{
	qes_audit_record *recs = NULL;
	char prev[QESD_CURSOR_SIZE], next[QESD_CURSOR_SIZE];
	uint64_t at = 0;
	size_t n = 0;
	int r;

	if ((r = qesd_audit_anchor(tx, tenant, seq, hash)) != 0)
		return r;
	if (cursor == NULL)
		return 0;
	/* the cursor was checked to be a decimal seq */
	if (sscanf(cursor, "%" SCNu64, &at) != 1)
		return QES_ERR_INVALID_ARG;
	if (at <= *seq)
		return 0;	/* purged meanwhile: the page starts at the anchor */
	snprintf(prev, sizeof(prev), "%" PRIu64, at - 1);
	if ((r = qesd_audit_list(tx, tenant, NULL, prev, 1, &recs, &n,
	    next)) != 0)
		return r;
	if (n != 1 || recs[0].seq != at) {
		qes_audit_records_free(recs, n);
		return QES_ERR_NOT_FOUND;
	}
	*seq = at;
	memcpy(hash, recs[0].hash, QES_AUDIT_HASH_LEN);
	qes_audit_records_free(recs, n);
	return 0;
}

static qesd_handler_result
audit_list(qesd_request *req, qesd_response *resp)
{
	const char *tenant = req->auth.tenant_id, *v, *cursor, *format;
	qesd_store *store = app_store(req);
	qesd_audit_filter f;
	qes_audit_record *recs = NULL;
	qesd_tx *tx = NULL;
	qes_buf *b = NULL;
	json_t *arr = NULL, *j = NULL;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN];
	uint64_t anchor_seq = 0;
	char next[QESD_CURSOR_SIZE] = "";
	long long limit = QESD_LIST_DEFAULT;
	size_t n = 0, i, k;
	int r, jsonl, filtered;

	if (store == NULL || !req->auth.authenticated || tenant[0] == '\0') {
		qesd_problem(resp, req, 500, "internal", "Internal error", NULL);
		return QESD_HANDLED;
	}
	for (i = 0; i < req->query.n; i++) {
		for (k = 0; k < sizeof(list_params) / sizeof(list_params[0]); k++)
			if (strcmp(req->query.items[i].name, list_params[k]) == 0)
				break;
		if (k == sizeof(list_params) / sizeof(list_params[0]))
			return bad_query(req, resp, req->query.items[i].name,
			    "unknown query parameter");
	}
	memset(&f, 0, sizeof(f));
	if ((v = qesd_query_get(&req->query, "since")) != NULL &&
	    qesd_time_parse(v, QESD_TIME_DATE_OK, &f.since_ms) != 0)
		return bad_query(req, resp, "since", "must be an RFC 3339 time");
	if ((v = qesd_query_get(&req->query, "until")) != NULL &&
	    qesd_time_parse(v, QESD_TIME_DATE_OK, &f.until_ms) != 0)
		return bad_query(req, resp, "until", "must be an RFC 3339 time");
	if (f.until_ms != 0 && f.until_ms <= f.since_ms)
		return bad_query(req, resp, "until", "must be later than since");
	if ((f.type = qesd_query_get(&req->query, "type")) != NULL &&
	    !type_ok(f.type))
		return bad_query(req, resp, "type", "must be 1-64 of [a-z0-9._]");
	if ((f.device_id = qesd_query_get(&req->query, "device")) != NULL &&
	    !qesd_id_valid("dev", f.device_id))
		return bad_query(req, resp, "device", "must be a device id");
	if ((f.key_id = qesd_query_get(&req->query, "key")) != NULL &&
	    !qesd_id_valid("key", f.key_id))
		return bad_query(req, resp, "key", "must be an API key id");
	if ((cursor = qesd_query_get(&req->query, "cursor")) != NULL) {
		size_t len = strlen(cursor);

		if (len == 0 || len > 18 || strspn(cursor, "0123456789") != len ||
		    (len > 1 && cursor[0] == '0'))
			return bad_query(req, resp, "cursor",
			    "is not a cursor of this listing");
	}
	r = qesd_query_get_int(&req->query, "limit", 1, QESD_LIST_MAX, &limit);
	if (r != 0 && r != QES_ERR_NOT_FOUND)
		return bad_query(req, resp, "limit", "must be an integer 1..1000");
	format = qesd_query_get(&req->query, "format");
	if (format != NULL && strcmp(format, "json") != 0 &&
	    strcmp(format, "jsonl") != 0)
		return bad_query(req, resp, "format", "must be json or jsonl");
	jsonl = format != NULL ? strcmp(format, "jsonl") == 0 :
	    accepts_jsonl(req->accept);
	filtered = f.since_ms != 0 || f.until_ms != 0 || f.type != NULL ||
	    f.device_id != NULL || f.key_id != NULL;

	if ((r = qesd_store_begin(store, QESD_TX_READ, &tx)) != 0)
		return qesd_h_store_problem(req, resp, r, tx);
	if (jsonl) {
		r = page_anchor(tx, tenant, filtered ? NULL : cursor, &anchor_seq,
		    anchor_hash);
		if (r == QES_ERR_NOT_FOUND) {
			qesd_tx_end(tx);
			return bad_query(req, resp, "cursor",
			    "names no record of this log");
		}
		if (r != 0)
			goto store_error;
	}
	if ((r = qesd_audit_list(tx, tenant, &f, cursor, (size_t)limit, &recs, &n,
	    next)) != 0) {
		if (r == QES_ERR_INVALID_ARG) {
			qesd_tx_end(tx);
			return bad_query(req, resp, "cursor",
			    "is not a cursor of this listing");
		}
		goto store_error;
	}
	qesd_tx_end(tx);
	tx = NULL;

	if (next[0] != '\0' &&
	    qesd_response_header(resp, "Next-Cursor", next) != 0)
		goto internal;
	if (jsonl) {
		if ((b = qes_buf_new()) == NULL ||
		    qes_audit_export_header(b, tenant, anchor_seq, anchor_hash) != 0)
			goto internal;
		for (i = 0; i < n; i++)
			if (qes_audit_export_record(b, &recs[i]) != 0)
				goto internal;
		if (qesd_response_raw(resp, 200, JSONL_TYPE "; charset=utf-8",
		    qes_buf_data(b), qes_buf_len(b)) != 0)
			goto internal;
	} else {
		if ((arr = json_array()) == NULL)
			goto internal;
		for (i = 0; i < n; i++) {
			if (qes_audit_record_to_json(&recs[i], &j) != 0 ||
			    json_array_append_new(arr, j) != 0)
				goto internal;
			j = NULL;
		}
		j = json_pack("{s:o, s:o}", "records", arr, "next_cursor",
		    next[0] != '\0' ? json_string(next) : json_null());
		arr = NULL;	/* json_pack's "o" took it, also on failure */
		if (j == NULL || qesd_response_json(resp, 200, j) != 0) {
			j = NULL;
			goto internal;
		}
		j = NULL;
	}
	goto out;

 store_error:
	qesd_h_store_problem(req, resp, r, tx);
	goto out;
 internal:
	/* a record the store returned that does not render: a bug or damage */
	qesd_log(QESD_LOG_ERROR, "audit records could not be rendered",
	    QLS("request_id", req->request_id), QLS("tenant", tenant));
	qesd_response_clear(resp);
	qesd_problem(resp, req, 500, "internal", "Internal error", NULL);
 out:
	qesd_tx_end(tx);
	json_decref(arr);
	json_decref(j);
	qes_buf_free(b);
	qes_audit_records_free(recs, n);
	return QESD_HANDLED;
}

/*
 * Verify, then read the anchor for the report. The anchor is read in a
 * second snapshot; a purge in between shows as a different anchor seq, and
 * the whole check is simply repeated.
 */
static qesd_handler_result
audit_verify(qesd_request *req, qesd_response *resp)
{
	const char *tenant = req->auth.tenant_id;
	qesd_store *store = app_store(req);
	qes_audit_chain ch;
	qesd_tx *tx = NULL;
	json_t *body = NULL, *head_hex = NULL, *anchor_hex = NULL;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN];
	uint64_t anchor_seq = 0, start_seq;
	int r = 0, attempt;

	if (store == NULL || !req->auth.authenticated || tenant[0] == '\0') {
		qesd_problem(resp, req, 500, "internal", "Internal error", NULL);
		return QESD_HANDLED;
	}
	for (attempt = 0; attempt < VERIFY_ATTEMPTS; attempt++) {
		r = qesd_audit_verify(store, tenant, &ch);
		if (r == QES_ERR_CHAIN_BROKEN) {
			qesd_log(QESD_LOG_WARN, "audit chain broken",
			    QLS("request_id", req->request_id), QLS("tenant", tenant),
			    QLI("seq", ch.broken_seq), QLS("reason", ch.reason));
			body = json_pack("{s:b, s:I, s:I, s:s}", "ok", 0, "records",
			    (json_int_t)ch.count, "first_broken_seq",
			    (json_int_t)ch.broken_seq, "reason",
			    ch.reason != NULL ? ch.reason : "unknown");
			goto respond;
		}
		if (r != 0)
			return qesd_h_store_problem(req, resp, r, NULL);
		/* the chain started after anchor seq = head - count */
		start_seq = ch.next_seq - 1 - ch.count;
		if ((r = qesd_store_begin(store, QESD_TX_READ, &tx)) != 0 ||
		    (r = qesd_audit_anchor(tx, tenant, &anchor_seq,
		    anchor_hash)) != 0) {
			qesd_h_store_problem(req, resp, r, tx);
			qesd_tx_end(tx);
			return QESD_HANDLED;
		}
		qesd_tx_end(tx);
		tx = NULL;
		if (anchor_seq == start_seq)
			break;
	}
	if (attempt == VERIFY_ATTEMPTS) {
		qesd_problem(resp, req, 503, "store_busy", "Service unavailable",
		    "the log kept changing (purges) during verification: retry");
		(void)qesd_response_header(resp, "Retry-After", "1");
		return QESD_HANDLED;
	}
	if (hex_json(ch.prev_hash, &head_hex) != 0 ||
	    hex_json(anchor_hash, &anchor_hex) != 0)
		goto respond;
	body = json_pack("{s:b, s:I, s:I, s:o, s:{s:I, s:o}}", "ok", 1,
	    "records", (json_int_t)ch.count, "head_seq",
	    (json_int_t)(ch.next_seq - 1), "head_hash", head_hex, "anchor",
	    "seq", (json_int_t)anchor_seq, "hash", anchor_hex);
	head_hex = anchor_hex = NULL;	/* "o" took them, also on failure */
 respond:
	json_decref(head_hex);
	json_decref(anchor_hex);
	if (body == NULL || qesd_response_json(resp, 200, body) != 0) {
		qesd_response_clear(resp);
		qesd_problem(resp, req, 500, "internal", "Internal error", NULL);
	}
	return QESD_HANDLED;
}

static const qesd_route audit_routes[] = {
	{ QESD_GET, "/v1/audit", QESD_SCOPE_AUDIT, 0, audit_list, "audit.list" },
	{ QESD_GET, "/v1/audit/verify", QESD_SCOPE_AUDIT, 0, audit_verify, "audit.verify" },
};
const qesd_route_table qesd_audit_routes = { audit_routes,
	sizeof(audit_routes) / sizeof(audit_routes[0]) };
