/*
 * audit.c - audit records: validation, canonical encoding and hash, the
 * per-tenant hash chain, the JSON form and the export file verifier.
 *
 * The encoding and the rules are specified in include/qes/audit.h; this file
 * is their only implementation, shared by qesd (which seals records as it
 * appends them) and by `qes audit verify` (which checks an export offline).
 * Everything read from an export file is untrusted: lines are bounded, JSON
 * is parsed with duplicate keys rejected, every field is type- and
 * range-checked before a record is hashed.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qes/audit.h"
#include "qes/err.h"
#include "qes/sig.h"

static const char enc_domain[] = "qes-audit-v1";
static const char addr_domain[] = "qes-audit-addr-v1";
static const uint8_t zero_hash[QES_AUDIT_HASH_LEN];

#define DETAILS_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

/* ---- records ---- */

void
qes_audit_record_clear(qes_audit_record *r)
{
	if (r == NULL)
		return;
	free(r->tenant_id);
	free(r->id);
	free(r->type);
	free(r->request_id);
	free(r->key_id);
	free(r->device_id);
	free(r->route);
	free(r->method);
	free(r->client_addr);
	free(r->details);
	/* the salt is what keeps an erased address unrecoverable: wipe it */
	OPENSSL_cleanse(r, sizeof(*r));
}

void
qes_audit_records_free(qes_audit_record *recs, size_t n)
{
	size_t i;

	if (recs == NULL)
		return;
	for (i = 0; i < n; i++)
		qes_audit_record_clear(&recs[i]);
	free(recs);
}

static int
dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	if ((*out = strdup(s)) == NULL)
		return QES_ERR_ALLOC;
	return 0;
}

int
qes_audit_record_copy(qes_audit_record *dst, const qes_audit_record *src)
{
	qes_audit_record t;
	int r;

	if (dst == NULL || src == NULL)
		return QES_ERR_INVALID_ARG;
	t = *src;	/* scalars and fixed arrays; strings replaced below */
	t.tenant_id = t.id = t.type = t.request_id = t.key_id = NULL;
	t.device_id = t.route = t.method = t.client_addr = t.details = NULL;
	if ((r = dup_opt(src->tenant_id, &t.tenant_id)) != 0 ||
	    (r = dup_opt(src->id, &t.id)) != 0 ||
	    (r = dup_opt(src->type, &t.type)) != 0 ||
	    (r = dup_opt(src->request_id, &t.request_id)) != 0 ||
	    (r = dup_opt(src->key_id, &t.key_id)) != 0 ||
	    (r = dup_opt(src->device_id, &t.device_id)) != 0 ||
	    (r = dup_opt(src->route, &t.route)) != 0 ||
	    (r = dup_opt(src->method, &t.method)) != 0 ||
	    (r = dup_opt(src->client_addr, &t.client_addr)) != 0 ||
	    (r = dup_opt(src->details, &t.details)) != 0) {
		qes_audit_record_clear(&t);
		return r;
	}
	*dst = t;
	return 0;
}

/* ---- validation ---- */

/*
 * Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF)
 * without control characters: audit fields end up in terminals, logs and
 * spreadsheets, where a raw ESC or newline is an injection vector.
 */
static int
text_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		unsigned char c = p[i];

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 1; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3; cp = c & 0x07; min = 0x10000;
		} else
			return 0;
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		/* C1 controls (U+0080..U+009F) are as dangerous as C0 */
		if (cp >= 0x80 && cp <= 0x9f)
			return 0;
		i += n + 1;
	}
	return 1;
}

static int
check_str(const char *s, int required, size_t max)
{
	size_t len;

	if (s == NULL)
		return required ? QES_ERR_FORMAT : 0;
	len = strlen(s);
	if (len == 0 && required)
		return QES_ERR_FORMAT;
	if (len > max)
		return QES_ERR_LIMIT;
	return text_valid(s, len) ? 0 : QES_ERR_FORMAT;
}

static int
details_value_ok(const json_t *v, int depth)
{
	const char *key;
	json_t *child;
	size_t i;
	int r;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (depth >= QES_AUDIT_DETAILS_DEPTH)
			return QES_ERR_LIMIT;
		json_object_foreach((json_t *)v, key, child) {
			if ((r = details_value_ok(child, depth + 1)) != 0)
				return r;
		}
		return 0;
	case JSON_ARRAY:
		if (depth >= QES_AUDIT_DETAILS_DEPTH)
			return QES_ERR_LIMIT;
		json_array_foreach(v, i, child) {
			if ((r = details_value_ok(child, depth + 1)) != 0)
				return r;
		}
		return 0;
	case JSON_REAL:
		/* %.17g is not canonical across implementations */
		return QES_ERR_FORMAT;
	case JSON_STRING:
	case JSON_INTEGER:
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL:
		return 0;
	}
	return QES_ERR_FORMAT;
}

/* Canonical text of a details object (rules in audit.h). */
static int
details_canonical(const json_t *obj, char **out)
{
	char *s = NULL;
	int r;

	*out = NULL;
	if (!json_is_object(obj))
		return QES_ERR_FORMAT;
	if ((r = details_value_ok(obj, 0)) != 0)
		return r;
	if ((s = json_dumps(obj, DETAILS_FLAGS)) == NULL)
		return QES_ERR_ALLOC;
	if (strlen(s) > QES_AUDIT_DETAILS_MAX) {
		free(s);
		return QES_ERR_LIMIT;
	}
	*out = s;
	return 0;
}

int
qes_audit_canonical_details(const char *details_json, char **out)
{
	json_error_t jerr;
	json_t *j = NULL;
	int r;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if (details_json == NULL)
		return QES_ERR_INVALID_ARG;
	/* escapes can shrink text at most 6:1; refuse to parse more than that */
	if (strlen(details_json) > (size_t)QES_AUDIT_DETAILS_MAX * 6)
		return QES_ERR_LIMIT;
	if ((j = json_loads(details_json, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return QES_ERR_FORMAT;
	r = details_canonical(j, out);
	json_decref(j);
	return r;
}

int
qes_audit_record_check(const qes_audit_record *r, const char **why)
{
	const char *field = NULL;
	char *canon = NULL;
	int rc = QES_ERR_FORMAT;

	if (r == NULL)
		return QES_ERR_INVALID_ARG;
#define CHECK_STR(f, req, max) do {					\
	if ((rc = check_str(r->f, req, max)) != 0) {			\
		field = #f;						\
		goto out;						\
	}								\
} while (0)
	CHECK_STR(tenant_id, 1, QES_AUDIT_ID_MAX);
	CHECK_STR(id, 1, QES_AUDIT_ID_MAX);
	CHECK_STR(type, 1, QES_AUDIT_STR_MAX);
	CHECK_STR(request_id, 0, QES_AUDIT_STR_MAX);
	CHECK_STR(key_id, 0, QES_AUDIT_STR_MAX);
	CHECK_STR(device_id, 0, QES_AUDIT_STR_MAX);
	CHECK_STR(route, 0, QES_AUDIT_STR_MAX);
	CHECK_STR(method, 0, QES_AUDIT_STR_MAX);
	CHECK_STR(client_addr, 0, QES_AUDIT_STR_MAX);
#undef CHECK_STR
	rc = QES_ERR_FORMAT;
	if (r->seq < 1 || r->seq > INT64_MAX) {
		field = "seq";
		goto out;
	}
	if (r->time_ms < 0) {
		field = "time_ms";
		goto out;
	}
	if (r->status != 0 &&
	    (r->status < 100 || r->status > QES_AUDIT_STATUS_MAX)) {
		field = "status";
		goto out;
	}
	/* address, salt and digest: both or neither of the first two, and a
	 * digest whenever an address was ever recorded */
	if ((r->client_addr != NULL) != (r->has_addr_salt != 0)) {
		field = r->client_addr != NULL ? "addr_salt" : "client_addr";
		goto out;
	}
	if (r->client_addr != NULL && !r->has_addr_digest) {
		field = "addr_digest";
		goto out;
	}
	if (r->details != NULL) {
		if ((rc = qes_audit_canonical_details(r->details, &canon)) != 0 ||
		    strcmp(canon, r->details) != 0) {
			if (rc == 0)
				rc = QES_ERR_FORMAT;	/* valid, but not canonical */
			field = "details";
			goto out;
		}
	}
	rc = 0;
 out:
	free(canon);
	if (why != NULL)
		*why = field;
	return rc;
}

/* ---- client address commitment ---- */

static int
addr_commit(const uint8_t salt[QES_AUDIT_SALT_LEN], const char *addr,
    uint8_t out[QES_AUDIT_HASH_LEN])
{
	EVP_MD_CTX *ctx = NULL;
	unsigned int len = 0;
	int r = QES_ERR_CRYPTO;

	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, addr_domain, sizeof(addr_domain) - 1) != 1 ||
	    EVP_DigestUpdate(ctx, salt, QES_AUDIT_SALT_LEN) != 1 ||
	    EVP_DigestUpdate(ctx, addr, strlen(addr)) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &len) != 1 ||
	    len != QES_AUDIT_HASH_LEN)
		goto out;
	r = 0;
 out:
	if (r == QES_ERR_CRYPTO)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	return r;
}

int
qes_audit_set_addr(qes_audit_record *r, const char *client_addr)
{
	char *copy = NULL;
	uint8_t salt[QES_AUDIT_SALT_LEN], digest[QES_AUDIT_HASH_LEN];
	int rc;

	if (r == NULL || client_addr == NULL)
		return QES_ERR_INVALID_ARG;
	if ((rc = check_str(client_addr, 1, QES_AUDIT_STR_MAX)) != 0)
		return rc;
	if ((copy = strdup(client_addr)) == NULL)
		return QES_ERR_ALLOC;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		ERR_clear_error();
		rc = QES_ERR_CRYPTO;
		goto out;
	}
	if ((rc = addr_commit(salt, copy, digest)) != 0)
		goto out;
	free(r->client_addr);
	r->client_addr = copy;
	copy = NULL;
	memcpy(r->addr_salt, salt, sizeof(salt));
	memcpy(r->addr_digest, digest, sizeof(digest));
	r->has_addr_salt = r->has_addr_digest = 1;
 out:
	free(copy);
	OPENSSL_cleanse(salt, sizeof(salt));
	return rc;
}

void
qes_audit_erase_addr(qes_audit_record *r)
{
	if (r == NULL)
		return;
	if (r->client_addr != NULL) {
		OPENSSL_cleanse(r->client_addr, strlen(r->client_addr));
		free(r->client_addr);
		r->client_addr = NULL;
	}
	OPENSSL_cleanse(r->addr_salt, sizeof(r->addr_salt));
	r->has_addr_salt = 0;
}

/* ---- canonical encoding and hash ---- */

static int
put_be(qes_buf *b, uint64_t v, size_t n)
{
	uint8_t tmp[8];
	size_t i;

	for (i = 0; i < n; i++)
		tmp[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return qes_buf_put(b, tmp, n);
}

static int
put_field(qes_buf *b, const void *data, size_t len)
{
	int r;

	if (len > UINT32_MAX)
		return QES_ERR_LIMIT;
	if ((r = qes_buf_put_u8(b, 1)) != 0 ||
	    (r = put_be(b, len, 4)) != 0 ||
	    (r = qes_buf_put(b, data, len)) != 0)
		return r;
	return 0;
}

static int
put_str_field(qes_buf *b, const char *s)
{
	if (s == NULL)
		return qes_buf_put_u8(b, 0);
	return put_field(b, s, strlen(s));
}

static int
put_int_field(qes_buf *b, uint64_t v, size_t n)
{
	int r;

	if ((r = qes_buf_put_u8(b, 1)) != 0 ||
	    (r = put_be(b, n, 4)) != 0 ||
	    (r = put_be(b, v, n)) != 0)
		return r;
	return 0;
}

int
qes_audit_encode(const qes_audit_record *rec, qes_buf *b)
{
	int r;

	if (rec == NULL || b == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qes_audit_record_check(rec, NULL)) != 0)
		return r;
	if ((r = qes_buf_put(b, enc_domain, sizeof(enc_domain) - 1)) != 0 ||
	    (r = put_str_field(b, rec->tenant_id)) != 0 ||
	    (r = put_int_field(b, rec->seq, 8)) != 0 ||
	    (r = put_str_field(b, rec->id)) != 0 ||
	    (r = put_int_field(b, (uint64_t)rec->time_ms, 8)) != 0 ||
	    (r = put_str_field(b, rec->type)) != 0 ||
	    (r = put_str_field(b, rec->request_id)) != 0 ||
	    (r = put_str_field(b, rec->key_id)) != 0 ||
	    (r = put_str_field(b, rec->device_id)) != 0 ||
	    (r = put_str_field(b, rec->route)) != 0 ||
	    (r = put_str_field(b, rec->method)) != 0)
		return r;
	if (rec->status == 0)
		r = qes_buf_put_u8(b, 0);
	else
		r = put_int_field(b, (uint64_t)rec->status, 4);
	if (r != 0)
		return r;
	if (rec->has_addr_digest)
		r = put_field(b, rec->addr_digest, QES_AUDIT_HASH_LEN);
	else
		r = qes_buf_put_u8(b, 0);
	if (r != 0)
		return r;
	if ((r = put_str_field(b, rec->details)) != 0 ||
	    (r = put_field(b, rec->prev_hash, QES_AUDIT_HASH_LEN)) != 0)
		return r;
	return 0;
}

int
qes_audit_hash(const qes_audit_record *rec, uint8_t out[QES_AUDIT_HASH_LEN])
{
	qes_buf *b = NULL;
	int r;

	if (rec == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((b = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_audit_encode(rec, b)) != 0)
		goto out;
	r = qes_md_digest(QES_MD_SHA256, qes_buf_data(b), qes_buf_len(b), out);
 out:
	qes_buf_free(b);
	return r;
}

int
qes_audit_seal(qes_audit_record *rec)
{
	if (rec == NULL)
		return QES_ERR_INVALID_ARG;
	return qes_audit_hash(rec, rec->hash);
}

/* ---- chain ---- */

int
qes_audit_chain_init(qes_audit_chain *c, const char *tenant_id,
    uint64_t anchor_seq, const uint8_t *anchor_hash)
{
	size_t len;

	if (c == NULL || tenant_id == NULL)
		return QES_ERR_INVALID_ARG;
	len = strlen(tenant_id);
	if (len == 0 || len > QES_AUDIT_ID_MAX)
		return QES_ERR_INVALID_ARG;
	if (anchor_seq >= INT64_MAX || (anchor_hash == NULL && anchor_seq != 0))
		return QES_ERR_INVALID_ARG;
	memset(c, 0, sizeof(*c));
	memcpy(c->tenant_id, tenant_id, len + 1);
	c->next_seq = anchor_seq + 1;
	memcpy(c->prev_hash, anchor_hash != NULL ? anchor_hash : zero_hash,
	    QES_AUDIT_HASH_LEN);
	return 0;
}

static int
chain_break(qes_audit_chain *c, uint64_t seq, const char *reason)
{
	c->broken_seq = seq != 0 ? seq : c->next_seq;
	c->reason = reason;
	return QES_ERR_CHAIN_BROKEN;
}

int
qes_audit_chain_add(qes_audit_chain *c, const qes_audit_record *rec)
{
	uint8_t h[QES_AUDIT_HASH_LEN];
	int r;

	if (c == NULL || rec == NULL)
		return QES_ERR_INVALID_ARG;
	if (c->reason != NULL)
		return QES_ERR_CHAIN_BROKEN;
	if ((r = qes_audit_record_check(rec, NULL)) != 0) {
		if (r == QES_ERR_ALLOC)
			return r;
		return chain_break(c, rec->seq, "invalid record");
	}
	if (strcmp(rec->tenant_id, c->tenant_id) != 0)
		return chain_break(c, rec->seq, "tenant mismatch");
	if (rec->seq > c->next_seq)
		return chain_break(c, rec->seq, "seq gap");
	if (rec->seq < c->next_seq)
		return chain_break(c, rec->seq, "seq out of order");
	if (memcmp(rec->prev_hash, c->prev_hash, QES_AUDIT_HASH_LEN) != 0)
		return chain_break(c, rec->seq, "prev_hash mismatch");
	if ((r = qes_audit_hash(rec, h)) != 0)
		return r;
	if (memcmp(h, rec->hash, QES_AUDIT_HASH_LEN) != 0)
		return chain_break(c, rec->seq, "hash mismatch");
	if (rec->client_addr != NULL) {
		if ((r = addr_commit(rec->addr_salt, rec->client_addr, h)) != 0)
			return r;
		if (memcmp(h, rec->addr_digest, QES_AUDIT_HASH_LEN) != 0)
			return chain_break(c, rec->seq, "addr commitment mismatch");
	}
	memcpy(c->prev_hash, rec->hash, QES_AUDIT_HASH_LEN);
	c->next_seq++;
	c->count++;
	return 0;
}

int
qes_audit_chain_ends_at(const qes_audit_chain *c, uint64_t head_seq,
    const uint8_t head_hash[QES_AUDIT_HASH_LEN])
{
	if (c == NULL || head_hash == NULL || c->reason != NULL)
		return 0;
	return c->next_seq == head_seq + 1 &&
	    memcmp(c->prev_hash, head_hash, QES_AUDIT_HASH_LEN) == 0;
}

int
qes_audit_verify_records(const char *tenant_id, uint64_t anchor_seq,
    const uint8_t *anchor_hash, const qes_audit_record *recs, size_t n,
    qes_audit_chain *out)
{
	size_t i;
	int r;

	if (out == NULL || (recs == NULL && n > 0))
		return QES_ERR_INVALID_ARG;
	if ((r = qes_audit_chain_init(out, tenant_id, anchor_seq,
	    anchor_hash)) != 0)
		return r;
	for (i = 0; i < n; i++)
		if ((r = qes_audit_chain_add(out, &recs[i])) != 0)
			return r;
	return 0;
}

/* ---- JSON ---- */

static const char *const record_fields[] = {
	"tenant_id", "seq", "id", "time_ms", "type", "request_id", "key_id",
	"device_id", "route", "method", "status", "client_addr", "addr_salt",
	"addr_digest", "details", "prev_hash", "hash",
};
#define N_RECORD_FIELDS (sizeof(record_fields) / sizeof(record_fields[0]))

static json_t *
hex_json(const uint8_t *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char hex[2 * QES_AUDIT_HASH_LEN + 1];
	size_t i;

	if (len > QES_AUDIT_HASH_LEN)
		return NULL;
	for (i = 0; i < len; i++) {
		hex[2 * i] = digits[data[i] >> 4];
		hex[2 * i + 1] = digits[data[i] & 0x0f];
	}
	hex[2 * len] = '\0';
	return json_string(hex);
}

/* Exactly 64 lower-case hex digits into 32 bytes. */
static int
hex32_decode(const char *s, uint8_t out[QES_AUDIT_HASH_LEN])
{
	size_t i;
	int hi, lo;

	if (strlen(s) != 2 * QES_AUDIT_HASH_LEN)
		return QES_ERR_FORMAT;
	for (i = 0; i < QES_AUDIT_HASH_LEN; i++) {
		char a = s[2 * i], b = s[2 * i + 1];

		hi = a >= '0' && a <= '9' ? a - '0' :
		    a >= 'a' && a <= 'f' ? a - 'a' + 10 : -1;
		lo = b >= '0' && b <= '9' ? b - '0' :
		    b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
		if (hi < 0 || lo < 0)
			return QES_ERR_FORMAT;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* Add v under k; v NULL (allocation or encoding failure) is an error. */
static int
set(json_t *o, const char *k, json_t *v)
{
	if (v == NULL)
		return QES_ERR_ALLOC;
	return json_object_set_new(o, k, v) == 0 ? 0 : QES_ERR_ALLOC;
}

int
qes_audit_record_to_json(const qes_audit_record *rec, json_t **out)
{
	json_error_t jerr;
	json_t *o = NULL;
	int r;

	if (rec == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((r = qes_audit_record_check(rec, NULL)) != 0)
		return r;
	if ((o = json_object()) == NULL)
		return QES_ERR_ALLOC;
	/* the order of record_fields[], so that exports read the same */
	if ((r = set(o, "tenant_id", json_string(rec->tenant_id))) != 0 ||
	    (r = set(o, "seq", json_integer((json_int_t)rec->seq))) != 0 ||
	    (r = set(o, "id", json_string(rec->id))) != 0 ||
	    (r = set(o, "time_ms", json_integer(rec->time_ms))) != 0 ||
	    (r = set(o, "type", json_string(rec->type))) != 0 ||
	    (r = set(o, "request_id", str_or_null(rec->request_id))) != 0 ||
	    (r = set(o, "key_id", str_or_null(rec->key_id))) != 0 ||
	    (r = set(o, "device_id", str_or_null(rec->device_id))) != 0 ||
	    (r = set(o, "route", str_or_null(rec->route))) != 0 ||
	    (r = set(o, "method", str_or_null(rec->method))) != 0 ||
	    (r = set(o, "status", rec->status != 0 ?
	    json_integer(rec->status) : json_null())) != 0 ||
	    (r = set(o, "client_addr", str_or_null(rec->client_addr))) != 0 ||
	    (r = set(o, "addr_salt", rec->has_addr_salt ?
	    hex_json(rec->addr_salt, QES_AUDIT_SALT_LEN) : json_null())) != 0 ||
	    (r = set(o, "addr_digest", rec->has_addr_digest ?
	    hex_json(rec->addr_digest, QES_AUDIT_HASH_LEN) :
	    json_null())) != 0 ||
	    (r = set(o, "details", rec->details != NULL ?
	    json_loads(rec->details, JSON_REJECT_DUPLICATES, &jerr) :
	    json_null())) != 0 ||
	    (r = set(o, "prev_hash",
	    hex_json(rec->prev_hash, QES_AUDIT_HASH_LEN))) != 0 ||
	    (r = set(o, "hash", hex_json(rec->hash, QES_AUDIT_HASH_LEN))) != 0)
		goto out;
	*out = o;
	o = NULL;
 out:
	json_decref(o);
	return r;
}

/* String field: present (string) or null when optional. */
static int
get_str(const json_t *o, const char *k, int required, size_t max, char **out)
{
	const json_t *v = json_object_get(o, k);
	int r;

	*out = NULL;
	if (v == NULL)
		return QES_ERR_FORMAT;
	if (json_is_null(v))
		return required ? QES_ERR_FORMAT : 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) !=
	    json_string_length(v))	/* an embedded \u0000 */
		return QES_ERR_FORMAT;
	if ((r = check_str(json_string_value(v), required, max)) != 0)
		return r;
	if ((*out = strdup(json_string_value(v))) == NULL)
		return QES_ERR_ALLOC;
	return 0;
}

static int
get_hex32(const json_t *o, const char *k, int required, uint8_t *out, int *has)
{
	const json_t *v = json_object_get(o, k);

	if (has != NULL)
		*has = 0;
	if (v == NULL)
		return QES_ERR_FORMAT;
	if (json_is_null(v))
		return required ? QES_ERR_FORMAT : 0;
	if (!json_is_string(v) || hex32_decode(json_string_value(v), out) != 0)
		return QES_ERR_FORMAT;
	if (has != NULL)
		*has = 1;
	return 0;
}

static int
get_int(const json_t *o, const char *k, int nullable, json_int_t min,
    json_int_t max, json_int_t *out)
{
	const json_t *v = json_object_get(o, k);

	*out = 0;
	if (v == NULL)
		return QES_ERR_FORMAT;
	if (json_is_null(v) && nullable)
		return 0;
	if (!json_is_integer(v))
		return QES_ERR_FORMAT;
	*out = json_integer_value(v);
	if (*out < min || *out > max)
		return QES_ERR_FORMAT;
	return 0;
}

/*
 * Strict parse of one record. On failure why (if not NULL) names the
 * offending field, or the unknown key.
 */
static int
record_from_json(const json_t *j, qes_audit_record *rec, char *why,
    size_t why_len)
{
	const char *k, *field = NULL;
	json_t *v;
	json_int_t iv;
	size_t i;
	int r = QES_ERR_FORMAT;

	memset(rec, 0, sizeof(*rec));
	if (!json_is_object(j)) {
		field = "record is not a JSON object";
		goto out;
	}
	json_object_foreach((json_t *)j, k, v) {
		for (i = 0; i < N_RECORD_FIELDS; i++)
			if (strcmp(k, record_fields[i]) == 0)
				break;
		if (i == N_RECORD_FIELDS) {
			if (why != NULL)
				snprintf(why, why_len, "unknown field '%.64s'",
				    k);
			why = NULL;
			goto out;
		}
	}
#define F(expr, name) do {						\
	if ((r = (expr)) != 0) {					\
		field = name;						\
		goto out;						\
	}								\
} while (0)
	F(get_str(j, "tenant_id", 1, QES_AUDIT_ID_MAX, &rec->tenant_id),
	    "tenant_id");
	F(get_int(j, "seq", 0, 1, INT64_MAX, &iv), "seq");
	rec->seq = (uint64_t)iv;
	F(get_str(j, "id", 1, QES_AUDIT_ID_MAX, &rec->id), "id");
	F(get_int(j, "time_ms", 0, 0, INT64_MAX, &iv), "time_ms");
	rec->time_ms = (int64_t)iv;
	F(get_str(j, "type", 1, QES_AUDIT_STR_MAX, &rec->type), "type");
	F(get_str(j, "request_id", 0, QES_AUDIT_STR_MAX, &rec->request_id),
	    "request_id");
	F(get_str(j, "key_id", 0, QES_AUDIT_STR_MAX, &rec->key_id), "key_id");
	F(get_str(j, "device_id", 0, QES_AUDIT_STR_MAX, &rec->device_id),
	    "device_id");
	F(get_str(j, "route", 0, QES_AUDIT_STR_MAX, &rec->route), "route");
	F(get_str(j, "method", 0, QES_AUDIT_STR_MAX, &rec->method), "method");
	F(get_int(j, "status", 1, 100, QES_AUDIT_STATUS_MAX, &iv), "status");
	rec->status = (int)iv;
	F(get_str(j, "client_addr", 0, QES_AUDIT_STR_MAX, &rec->client_addr),
	    "client_addr");
	F(get_hex32(j, "addr_salt", 0, rec->addr_salt, &rec->has_addr_salt),
	    "addr_salt");
	F(get_hex32(j, "addr_digest", 0, rec->addr_digest,
	    &rec->has_addr_digest), "addr_digest");
	v = json_object_get(j, "details");
	if (v == NULL) {
		field = "details";
		goto out;
	}
	if (!json_is_null(v))
		F(details_canonical(v, &rec->details), "details");
	F(get_hex32(j, "prev_hash", 1, rec->prev_hash, NULL), "prev_hash");
	F(get_hex32(j, "hash", 1, rec->hash, NULL), "hash");
#undef F
	if ((r = qes_audit_record_check(rec, &field)) != 0)
		goto out;
	r = 0;
 out:
	if (r != 0) {
		if (r != QES_ERR_ALLOC)
			r = QES_ERR_FORMAT;
		qes_audit_record_clear(rec);
		if (why != NULL)
			snprintf(why, why_len, "%s", field != NULL ? field :
			    "invalid value");
	}
	return r;
}

int
qes_audit_record_from_json(const json_t *j, qes_audit_record *out)
{
	if (j == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	return record_from_json(j, out, NULL, 0);
}

/* ---- export ---- */

static int
put_json_line(qes_buf *out, json_t *j)
{
	char *s;
	int r;

	if ((s = json_dumps(j, JSON_COMPACT)) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_buf_put_str(out, s)) == 0)
		r = qes_buf_put_u8(out, '\n');
	free(s);
	return r;
}

int
qes_audit_export_header(qes_buf *out, const char *tenant_id,
    uint64_t anchor_seq, const uint8_t *anchor_hash)
{
	json_t *h = NULL, *anchor = NULL;
	int r = QES_ERR_ALLOC;

	if (out == NULL || tenant_id == NULL || anchor_seq > INT64_MAX ||
	    (anchor_hash == NULL && anchor_seq != 0))
		return QES_ERR_INVALID_ARG;
	if ((r = check_str(tenant_id, 1, QES_AUDIT_ID_MAX)) != 0)
		return QES_ERR_INVALID_ARG;
	r = QES_ERR_ALLOC;
	if ((anchor = json_object()) == NULL ||
	    json_object_set_new(anchor, "seq",
	    json_integer((json_int_t)anchor_seq)) != 0 ||
	    json_object_set_new(anchor, "hash", hex_json(anchor_hash != NULL ?
	    anchor_hash : zero_hash, QES_AUDIT_HASH_LEN)) != 0)
		goto out;
	if ((h = json_object()) == NULL ||
	    json_object_set_new(h, "format",
	    json_string(QES_AUDIT_EXPORT_FORMAT)) != 0 ||
	    json_object_set_new(h, "version",
	    json_integer(QES_AUDIT_EXPORT_VERSION)) != 0 ||
	    json_object_set_new(h, "tenant", json_string(tenant_id)) != 0)
		goto out;
	if (json_object_set_new(h, "anchor", anchor) != 0) {
		anchor = NULL;	/* set_new consumed it even on failure */
		goto out;
	}
	anchor = NULL;
	r = put_json_line(out, h);
 out:
	json_decref(anchor);
	json_decref(h);
	return r;
}

int
qes_audit_export_record(qes_buf *out, const qes_audit_record *rec)
{
	json_t *j = NULL;
	int r;

	if (out == NULL || rec == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qes_audit_record_to_json(rec, &j)) != 0)
		return r;
	r = put_json_line(out, j);
	json_decref(j);
	return r;
}

/* ---- verifying an export file ---- */

static int
fail(qes_audit_verify_result *res, int r, const char *what, const char *field)
{
	if (field != NULL)
		snprintf(res->reason, sizeof(res->reason), "%s: %s", what,
		    field);
	else
		snprintf(res->reason, sizeof(res->reason), "%s", what);
	return r;
}

/*
 * Read one line (terminator included) into line[0..QES_AUDIT_LINE_MAX).
 * 0 with *len > 0: a line (*nl says whether it ended in '\n');
 * 0 with *len == 0: end of file.
 */
static int
read_line(FILE *fp, char *line, size_t *len, int *nl)
{
	size_t n = 0;
	int c;

	*len = 0;
	*nl = 0;
	while ((c = getc_unlocked(fp)) != EOF) {
		if (n == QES_AUDIT_LINE_MAX)
			return QES_ERR_LIMIT;
		if (c == '\0')
			return QES_ERR_FORMAT;
		line[n++] = (char)c;
		if (c == '\n') {
			*nl = 1;
			break;
		}
	}
	if (c == EOF && ferror(fp))
		return QES_ERR_IO;
	*len = n;
	return 0;
}

static int
parse_header(const json_t *h, qes_audit_verify_result *res)
{
	const json_t *fmt, *ver, *ten, *anc, *seq, *hash;
	const char *k;
	json_t *v;
	size_t n;

	if (!json_is_object(h))
		return fail(res, QES_ERR_FORMAT, "header is not a JSON object",
		    NULL);
	json_object_foreach((json_t *)h, k, v) {
		if (strcmp(k, "format") != 0 && strcmp(k, "version") != 0 &&
		    strcmp(k, "tenant") != 0 && strcmp(k, "anchor") != 0)
			return fail(res, QES_ERR_FORMAT,
			    "unknown field in header", NULL);
	}
	fmt = json_object_get(h, "format");
	ver = json_object_get(h, "version");
	ten = json_object_get(h, "tenant");
	anc = json_object_get(h, "anchor");
	if (!json_is_string(fmt) ||
	    strcmp(json_string_value(fmt), QES_AUDIT_EXPORT_FORMAT) != 0)
		return fail(res, QES_ERR_FORMAT, "not a qes audit export",
		    NULL);
	if (!json_is_integer(ver))
		return fail(res, QES_ERR_FORMAT, "invalid header", "version");
	if (json_integer_value(ver) != QES_AUDIT_EXPORT_VERSION)
		return fail(res, QES_ERR_UNSUPPORTED,
		    "unsupported export version", NULL);
	if (!json_is_string(ten) ||
	    check_str(json_string_value(ten), 1, QES_AUDIT_ID_MAX) != 0)
		return fail(res, QES_ERR_FORMAT, "invalid header", "tenant");
	if (!json_is_object(anc) || json_object_size(anc) != 2)
		return fail(res, QES_ERR_FORMAT, "invalid header", "anchor");
	seq = json_object_get(anc, "seq");
	hash = json_object_get(anc, "hash");
	if (!json_is_integer(seq) || json_integer_value(seq) < 0 ||
	    json_integer_value(seq) >= INT64_MAX)
		return fail(res, QES_ERR_FORMAT, "invalid header",
		    "anchor.seq");
	if (!json_is_string(hash) ||
	    hex32_decode(json_string_value(hash), res->anchor_hash) != 0)
		return fail(res, QES_ERR_FORMAT, "invalid header",
		    "anchor.hash");
	n = strlen(json_string_value(ten));
	memcpy(res->tenant_id, json_string_value(ten), n + 1);
	res->anchor_seq = (uint64_t)json_integer_value(seq);
	return 0;
}

int
qes_audit_verify_stream(FILE *fp, qes_audit_verify_result *res)
{
	qes_audit_record rec;
	qes_audit_chain chain;
	json_error_t jerr;
	json_t *j = NULL;
	char field[96];
	char *line = NULL;
	size_t len;
	int nl, r;

	if (fp == NULL || res == NULL)
		return QES_ERR_INVALID_ARG;
	memset(res, 0, sizeof(*res));
	memset(&rec, 0, sizeof(rec));
	memset(&chain, 0, sizeof(chain));
	if ((line = malloc(QES_AUDIT_LINE_MAX)) == NULL)
		return QES_ERR_ALLOC;
	flockfile(fp);
	for (;;) {
		if ((r = read_line(fp, line, &len, &nl)) != 0) {
			res->line++;
			r = fail(res, r, r == QES_ERR_LIMIT ?
			    "line longer than 64 KiB" : r == QES_ERR_IO ?
			    "read error" : "NUL byte in line", NULL);
			goto out;
		}
		if (len == 0)
			break;
		res->line++;
		if (len == 1 && nl) {
			r = fail(res, QES_ERR_FORMAT, "empty line", NULL);
			goto out;
		}
		json_decref(j);
		if ((j = json_loadb(line, len, JSON_REJECT_DUPLICATES,
		    &jerr)) == NULL) {
			r = fail(res, nl ? QES_ERR_FORMAT : QES_ERR_TRUNCATED,
			    nl ? "invalid JSON" : "file ends inside a line",
			    NULL);
			goto out;
		}
		if (res->line == 1) {
			if ((r = parse_header(j, res)) != 0)
				goto out;
			if ((r = qes_audit_chain_init(&chain, res->tenant_id,
			    res->anchor_seq, res->anchor_hash)) != 0)
				goto out;
			continue;
		}
		if ((r = record_from_json(j, &rec, field,
		    sizeof(field))) != 0) {
			r = fail(res, r, "invalid record", field);
			goto out;
		}
		r = qes_audit_chain_add(&chain, &rec);
		qes_audit_record_clear(&rec);
		if (r == QES_ERR_CHAIN_BROKEN) {
			res->broken_seq = chain.broken_seq;
			r = fail(res, r, chain.reason, NULL);
			goto out;
		}
		if (r != 0)
			goto out;
	}
	if (res->line == 0) {
		r = fail(res, QES_ERR_FORMAT, "empty file: no header", NULL);
		goto out;
	}
	r = 0;
 out:
	funlockfile(fp);
	if (res->line >= 1 && chain.next_seq > 0) {
		res->records = chain.count;
		res->last_seq = chain.next_seq - 1;
		memcpy(res->last_hash, chain.prev_hash, QES_AUDIT_HASH_LEN);
	}
	qes_audit_record_clear(&rec);
	json_decref(j);
	free(line);
	return r;
}

int
qes_audit_verify_file(const char *path, qes_audit_verify_result *res)
{
	FILE *fp;
	int r;

	if (path == NULL || res == NULL)
		return QES_ERR_INVALID_ARG;
	memset(res, 0, sizeof(*res));
	if ((fp = fopen(path, "re")) == NULL) {
		r = errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
		return fail(res, r, strerror(errno), NULL);
	}
	r = qes_audit_verify_stream(fp, res);
	fclose(fp);
	return r;
}
