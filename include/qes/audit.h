/*
 * audit.h - the tamper-evident audit record: canonical encoding, hash
 * chain, JSON form, export files and their offline verification.
 *
 * qesd writes audit records through its store; `qes audit verify FILE`
 * checks an exported log on another machine. Both use this one
 * implementation, so the rules that make a chain valid exist exactly once.
 *
 * Chain. Records form one chain per tenant: seq is 1, 2, 3, ... without gaps,
 * each record's prev_hash is the hash of the record before it, and the first
 * record's prev_hash is 32 zero bytes - or, after old records were purged,
 * the hash kept in the tenant's anchor (the seq and hash of the last purged
 * record). hash = SHA-256(canonical encoding v1 of the record).
 *
 * Canonical encoding v1 (every byte is defined here; change it only as v2):
 *
 *   "qes-audit-v1"                  12 ASCII bytes, no terminator
 *   then 14 fields in this order, each either
 *     0x00                          absent
 *     0x01 || u32be(n) || n bytes   present
 *    1 tenant_id    UTF-8, required
 *    2 seq          u64be (n = 8), required, >= 1
 *    3 id           UTF-8, required
 *    4 time_ms      i64be (n = 8), ms since 1970-01-01 UTC, required, >= 0
 *    5 type         UTF-8, required ("api.request", "key.created", ...)
 *    6 request_id   UTF-8
 *    7 key_id       UTF-8
 *    8 device_id    UTF-8
 *    9 route        UTF-8
 *   10 method       UTF-8
 *   11 status       u32be (n = 4); absent when status == 0
 *   12 addr_digest  32 bytes
 *   13 details      canonical JSON text of the details object (below)
 *   14 prev_hash    32 bytes, required
 *
 * Client addresses and GDPR retention. The chain does not hash client_addr
 * itself but a hiding commitment to it:
 *   addr_digest = SHA-256("qes-audit-addr-v1" || addr_salt || client_addr)
 * with a fresh random 32-byte addr_salt per record. Retention erases
 * client_addr and addr_salt together and keeps addr_digest, so the chain
 * still verifies while the address is gone: without the salt the digest
 * cannot be brute-forced back into an address (an unsalted hash of an IPv4
 * address could be, in seconds). While the address is still present, the
 * verifier checks the commitment too, so editing an address is detected.
 *
 * Details. A small JSON object (at most QES_AUDIT_DETAILS_MAX bytes in
 * canonical form, nesting depth at most QES_AUDIT_DETAILS_DEPTH, no
 * floating-point numbers - write them as strings, no duplicate keys, no NUL).
 * Its canonical text is jansson's json_dumps() with JSON_COMPACT |
 * JSON_SORT_KEYS | JSON_ENSURE_ASCII: no whitespace, object keys sorted by
 * byte value, integers in decimal, strings with the short escapes
 * (\" \\ \b \f \n \r \t), every other character below U+0020 and every
 * non-ASCII one as \uXXXX with upper-case hex digits (surrogate pairs above
 * U+FFFF); '/' and DEL stay as they are. The hash always
 * covers the canonical text, so a record round-trips through any JSON tool
 * (export, re-import) without changing its hash; records store details
 * already canonical.
 *
 * What the chain cannot show by itself: removing the newest records of a
 * chain (tail truncation). The store therefore keeps the head (last seq and
 * hash) separately and compares; for an export, compare its last hash with
 * `GET /v1/audit/verify` or with an earlier export.
 *
 * Export file (JSON Lines, UTF-8, one object per line, '\n' terminated):
 *   {"format":"qes-audit-export","version":1,"tenant":"ten_...",
 *    "anchor":{"seq":0,"hash":"<64 hex>"}}
 *   one record object per line (qes_audit_record_to_json)
 * Lines are at most QES_AUDIT_LINE_MAX bytes; the number of records is not
 * limited (files are verified streaming, in constant memory).
 */
#ifndef QES_AUDIT_H
#define QES_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "qes/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_AUDIT_HASH_LEN 32
#define QES_AUDIT_SALT_LEN 32
#define QES_AUDIT_ID_MAX 64		/* tenant_id, id: bytes */
#define QES_AUDIT_STR_MAX 1024		/* every other string field: bytes */
#define QES_AUDIT_DETAILS_MAX 8192	/* canonical details text: bytes */
#define QES_AUDIT_DETAILS_DEPTH 8
#define QES_AUDIT_LINE_MAX 65536	/* one export line, '\n' included */
#define QES_AUDIT_STATUS_MAX 999
#define QES_AUDIT_EXPORT_FORMAT "qes-audit-export"
#define QES_AUDIT_EXPORT_VERSION 1

/*
 * One audit record. Every string is owned by the record (malloc'ed) and
 * released by qes_audit_record_clear(); NULL means absent. Optional fields:
 * request_id, key_id, device_id, route, method, status (0 = absent),
 * client_addr, addr_salt, addr_digest, details.
 */
typedef struct qes_audit_record {
	char *tenant_id;
	uint64_t seq;
	char *id;
	int64_t time_ms;
	char *type;
	char *request_id;
	char *key_id;
	char *device_id;
	char *route;
	char *method;
	int status;
	char *client_addr;			/* NULL when absent or erased */
	int has_addr_salt;			/* erased together with client_addr */
	uint8_t addr_salt[QES_AUDIT_SALT_LEN];
	int has_addr_digest;			/* set iff an address was recorded */
	uint8_t addr_digest[QES_AUDIT_HASH_LEN];
	char *details;				/* canonical JSON object text */
	uint8_t prev_hash[QES_AUDIT_HASH_LEN];
	uint8_t hash[QES_AUDIT_HASH_LEN];
} qes_audit_record;

/* Free the strings of r and zero it; r itself is not freed. NULL: no-op. */
void qes_audit_record_clear(qes_audit_record *r);
/* Clear n records and free the array (as returned by the qesd store). */
void qes_audit_records_free(qes_audit_record *recs, size_t n);
/* Deep copy; dst is overwritten (clear it first if it held anything). */
int qes_audit_record_copy(qes_audit_record *dst, const qes_audit_record *src);

/*
 * Check every field against the rules above (required fields, UTF-8,
 * lengths, status range, canonical details, address/salt/digest
 * consistency). Does not look at the hashes. QES_ERR_FORMAT or
 * QES_ERR_LIMIT with a static reason in *why when why != NULL.
 */
int qes_audit_record_check(const qes_audit_record *r, const char **why);

/*
 * Parse details_json (a JSON object as text), check it against the details
 * rules and return its canonical text in *out (caller frees with free()).
 */
int qes_audit_canonical_details(const char *details_json, char **out);

/* Record client_addr: copies it, draws a fresh salt, computes addr_digest. */
int qes_audit_set_addr(qes_audit_record *r, const char *client_addr);
/* Retention: drop client_addr and addr_salt, keep addr_digest. */
void qes_audit_erase_addr(qes_audit_record *r);

/* Append the canonical encoding v1 of r to out. r must pass the check. */
int qes_audit_encode(const qes_audit_record *r, qes_buf *out);
/* hash = SHA-256(encoding) into out. */
int qes_audit_hash(const qes_audit_record *r, uint8_t out[QES_AUDIT_HASH_LEN]);
/* Check r and compute r->hash. */
int qes_audit_seal(qes_audit_record *r);

/*
 * Chain verification, one record at a time (so a caller can stream from a
 * database cursor or a file). The first failure is kept: broken_seq is the
 * seq found in the offending record (or the seq expected there when the
 * record carried none that makes sense) and reason one of
 *   "seq gap"                    records missing before this one (deleted)
 *   "seq out of order"           seq lower than expected (reordered, duplicated)
 *   "tenant mismatch"            record belongs to another tenant
 *   "prev_hash mismatch"         the record before it was deleted, replaced
 *                                or reordered
 *   "hash mismatch"              this record was edited
 *   "addr commitment mismatch"   client_addr or addr_salt was edited
 *   "invalid record"             a field breaks the record rules
 * and every later add returns QES_ERR_CHAIN_BROKEN without looking.
 */
typedef struct qes_audit_chain {
	char tenant_id[QES_AUDIT_ID_MAX + 1];
	uint64_t next_seq;			/* seq the next record must carry */
	uint8_t prev_hash[QES_AUDIT_HASH_LEN];	/* hash of the last good record */
	uint64_t count;				/* records verified so far */
	uint64_t broken_seq;			/* 0 while intact */
	const char *reason;			/* static; NULL while intact */
} qes_audit_chain;

/* Start a chain after anchor (anchor_seq 0 and NULL hash: from the start). */
int qes_audit_chain_init(qes_audit_chain *c, const char *tenant_id,
    uint64_t anchor_seq, const uint8_t *anchor_hash);
/* 0 when r extends the chain, QES_ERR_CHAIN_BROKEN otherwise. */
int qes_audit_chain_add(qes_audit_chain *c, const qes_audit_record *r);
/* 1 when the chain ends exactly at head (seq, hash); for tail checks. */
int qes_audit_chain_ends_at(const qes_audit_chain *c, uint64_t head_seq,
    const uint8_t head_hash[QES_AUDIT_HASH_LEN]);

/* Whole array at once: 0 or QES_ERR_CHAIN_BROKEN, details in *out. */
int qes_audit_verify_records(const char *tenant_id, uint64_t anchor_seq,
    const uint8_t *anchor_hash, const qes_audit_record *recs, size_t n,
    qes_audit_chain *out);

/*
 * JSON form of a record: every field present (null when absent), hashes,
 * salt and digest as 64 lower-case hex digits, details as an object.
 * Names: tenant_id seq id time_ms type request_id key_id device_id route
 * method status client_addr addr_salt addr_digest details prev_hash hash.
 * to_json: *out is a new reference (json_decref). from_json is strict:
 * unknown or missing fields, wrong types and values that break the record
 * rules are QES_ERR_FORMAT; *out is then cleared. The hash is not checked.
 */
int qes_audit_record_to_json(const qes_audit_record *r, json_t **out);
int qes_audit_record_from_json(const json_t *j, qes_audit_record *out);

/* Append one export line ('\n' included): the header, or a record. */
int qes_audit_export_header(qes_buf *out, const char *tenant_id,
    uint64_t anchor_seq, const uint8_t *anchor_hash);
int qes_audit_export_record(qes_buf *out, const qes_audit_record *r);

/*
 * Verify an export file, streaming. Returns
 *   0                      the file is well formed and the chain intact
 *   QES_ERR_CHAIN_BROKEN   broken_seq and reason say where and why
 *   QES_ERR_FORMAT         a line is not valid (reason and line say which)
 *   QES_ERR_LIMIT          a line is longer than QES_AUDIT_LINE_MAX
 *   QES_ERR_TRUNCATED      the file ends inside a line
 *   QES_ERR_IO / QES_ERR_NOT_FOUND  reading failed / no such file
 * In every case *res says how far verification got.
 */
typedef struct qes_audit_verify_result {
	char tenant_id[QES_AUDIT_ID_MAX + 1];	/* from the header */
	uint64_t anchor_seq;
	uint8_t anchor_hash[QES_AUDIT_HASH_LEN];
	uint64_t records;			/* records that verified */
	uint64_t last_seq;			/* seq of the last one (anchor_seq if none) */
	uint8_t last_hash[QES_AUDIT_HASH_LEN];	/* its hash: compare with the live head */
	uint64_t broken_seq;			/* QES_ERR_CHAIN_BROKEN: first bad seq */
	uint64_t line;				/* line of the failure (1 = header) */
	char reason[160];			/* "" when all is well */
} qes_audit_verify_result;

int qes_audit_verify_stream(FILE *fp, qes_audit_verify_result *res);
int qes_audit_verify_file(const char *path, qes_audit_verify_result *res);

#ifdef __cplusplus
}
#endif
#endif
