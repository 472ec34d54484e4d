/*
 * proto_priv.h - the table-driven schema engine behind qes.v1 (proto.h).
 *
 * Every message body and every object inside the report documents is
 * described once, as a table of fields (name, kind, limits, where the value
 * lives in the typed C struct). The same table drives
 *   pf_decode  JSON -> struct, checking everything (the parser),
 *   pf_encode  struct -> JSON (the builders, which then run pf_decode on
 *              their own output, so a builder cannot emit what the parser
 *              refuses),
 *   pf_equal   struct == struct (the fuzzer's round trip, tests).
 * Rules that tie fields together (status ok needs signatures, a present
 * token needs a serial, ...) live in a per-object check hook that runs
 * after the fields of that object were decoded.
 *
 * Decoded strings point into the parsed JSON document; decoded bytes and
 * arrays live in blocks owned by a struct qes_proto_mem, freed together.
 */
#ifndef QES_PROTO_PRIV_H
#define QES_PROTO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/proto.h"

/* What a parsed message owns. */
struct qes_proto_mem {
	json_t *root;		/* the document; strings of the message point into it */
	void **blocks;		/* decoded bytes and arrays */
	size_t n_blocks;
	size_t cap_blocks;
};

/* Zeroed memory owned by m; NULL on allocation failure or n == 0. */
void *qes_proto_mem_alloc(struct qes_proto_mem *m, size_t n);
void qes_proto_mem_free(struct qes_proto_mem *m);

enum pf_kind {
	PF_ID = 1,	/* const char *: [A-Za-z0-9_-]{1,64} */
	PF_STR,		/* const char *: UTF-8, min..max bytes */
	PF_TEXT,	/* const char *: display text (qes_proto_display_text_ok) */
	PF_ASCII,	/* const char *: printable ASCII, min..max bytes */
	PF_VERSION,	/* const char *: [0-9A-Za-z.+~_-], min..max bytes */
	PF_HEX,		/* const char *: lower-case hex, even length, min..max chars */
	PF_HOST,	/* const char *: lower-case DNS name or IP literal */
	PF_CODE,	/* const char *: [a-z0-9_], min..max bytes */
	PF_DIGITS,	/* char[max + 1]: exactly max decimal digits */
	PF_INT,		/* int64_t: imin..imax */
	PF_BOOL,	/* int: 0 or 1 */
	PF_TRIBOOL,	/* int: 0, 1, or -1 for null */
	PF_ENUM,	/* int: the value of one of names */
	PF_B64,		/* qes_proto_bytes: base64url, min..max decoded bytes */
	PF_B64FIX,	/* uint8_t[max]: base64url of exactly max bytes */
	PF_OBJ,		/* struct at off, fields in sub */
	PF_OBJPTR,	/* const struct * at off, allocated; NULL when absent */
	PF_ARR_OBJ,	/* const struct * at off, size_t count at aux_off; min..max items */
	PF_ARR_B64,	/* const qes_proto_bytes * at off, count at aux_off;
			 * min..max items of imin..imax bytes */
	PF_DIGESTS,	/* const uint8_t * at off (items back to back), count at
			 * aux_off; min..max items of item_len() bytes each */
	PF_NAMESET,	/* unsigned: array of distinct names, OR of their values */
	PF_FLAGOBJ,	/* unsigned: object with every name as a boolean */
	PF_REPORT,	/* qes_proto_report at off, sub is the report schema,
			 * imin is the report mode (PF_MODE_*) */
};

/* field flags */
#define PF_REQ		0x01u	/* must be present */
#define PF_MULTILINE	0x02u	/* PF_TEXT: line feeds allowed */
#define PF_HAS		0x04u	/* optional non-pointer value: int "present" at aux_off */

/* report modes: what an inventory and a diagnosis must or must not carry */
#define PF_MODE_INVENTORY 1
#define PF_MODE_DIAGNOSE 2

struct pf_name {
	const char *name;
	unsigned value;
};

struct pf_ctx;
struct pf_schema;

struct pf_field {
	const char *name;
	enum pf_kind kind;
	unsigned flags;
	size_t off;
	size_t aux_off;
	size_t min, max;
	int64_t imin, imax;
	const struct pf_name *names;
	size_t n_names;
	const struct pf_schema *sub;
	/* PF_DIGESTS: bytes per item for the struct decoded so far, and a name
	 * for errors ("sha256"); 0 when the struct says nothing usable */
	size_t (*item_len)(const void *obj, const char **what);
};

struct pf_schema {
	const struct pf_field *fields;
	size_t n_fields;
	size_t size;		/* sizeof the struct, for arrays and PF_OBJPTR */
	/* after the fields: rules across them; j is the object, obj the struct */
	int (*check)(struct pf_ctx *c, const json_t *j, void *obj);
};

struct pf_ctx {
	char *err;		/* first error only */
	size_t errlen;
	char path[192];		/* "sign.digests[3]" */
	size_t path_len;
	struct qes_proto_mem *mem;
	int mode;		/* PF_MODE_* inside a report */
	int failed;
};

void pf_ctx_init(struct pf_ctx *c, struct qes_proto_mem *mem, char *err,
    size_t errlen, const char *root);
/* Record the first error as "PATH: message" and return rc. */
int pf_fail(struct pf_ctx *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, with ".field" appended to the path for this message only. */
int pf_fail_at(struct pf_ctx *c, const char *field, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Extend the path; returns the length to restore with pf_pop. */
size_t pf_push(struct pf_ctx *c, const char *name);
size_t pf_push_index(struct pf_ctx *c, size_t i);
void pf_pop(struct pf_ctx *c, size_t saved);
/* Printable-ASCII rendering of untrusted text for error messages. */
void pf_escape(const char *s, size_t len, char *out, size_t outlen);

/* Decode object j into obj; with envelope, "type", "id" and "v" are skipped. */
int pf_decode(struct pf_ctx *c, const struct pf_schema *s, const json_t *j,
    void *obj, int envelope);
/* Add the fields of obj to object j (absent optional values are left out). */
int pf_encode(struct pf_ctx *c, const struct pf_schema *s, const void *obj, json_t *j);
int pf_equal(const struct pf_schema *s, const void *a, const void *b);

/* Checks shared by the engine and the exported helpers. */
int pf_id_ok(const char *s, size_t len);
int pf_host_ok(const char *s, size_t len);
/* NULL when fine, else a static reason; *at is the byte offset of the
 * problem and *cp the code point there (0 for invalid UTF-8). */
const char *pf_text_problem(const char *s, size_t len, int multiline, size_t *at,
    uint32_t *cp);
int pf_utf8_ok(const char *s, size_t len);
/* base64url without padding into dst (room for len * 3 / 4 bytes). */
int pf_b64url_decode(const char *s, size_t len, uint8_t *dst, size_t *dst_len);
/* Encoded length of n bytes, without terminator. */
size_t pf_b64url_len(size_t n);
/* dst: pf_b64url_len(n) + 1 bytes; NUL-terminated. */
void pf_b64url_encode(const uint8_t *data, size_t n, char *dst);
/* A new JSON string holding base64url of data; NULL on allocation failure. */
json_t *pf_b64_json(const uint8_t *data, size_t len);

/* The report document schema (proto_report.c). */
extern const struct pf_schema qes_proto_report_schema;

#endif
