/*
 * jsonv.h - declarative validation of JSON request bodies.
 *
 * A handler declares the fields its body may have; qesd_jv_validate()
 * checks a parsed object against them and names the first offending field:
 *   - a field that is not declared       -> 400 unknown_field
 *   - a declared field of the wrong type, out of range, too long or short,
 *     not one of the enum values         -> 400 invalid_field
 *   - a required field that is absent    -> 400 missing_field
 * Field paths in errors look like "credential.id" or "digests[2]".
 *
 *   static const char *const algs[] = { "sha256", "sha384", NULL };
 *   static const qesd_jv_field digest_item = { .type = QESD_JV_STRING,
 *       .min_len = 1, .max_len = 128 };
 *   static const qesd_jv_field body[] = {
 *       { "credential_id", QESD_JV_STRING, QESD_JV_REQUIRED, .max_len = 64 },
 *       { "algorithm", QESD_JV_ENUM, QESD_JV_REQUIRED, .enum_values = algs },
 *       { "digests", QESD_JV_ARRAY, QESD_JV_REQUIRED, .min_len = 1,
 *         .max_len = 100, .items = &digest_item },
 *       { "wait", QESD_JV_INTEGER, 0, .min = 0, .max = 60 },
 *   };
 *   if (qesd_jv_validate(req->json, body, 4, &err) != 0)
 *       return qesd_jv_problem(resp, req, &err), QESD_HANDLED;
 */
#ifndef QESD_JSONV_H
#define QESD_JSONV_H

#include <stddef.h>

#include <jansson.h>

#include "http.h"

typedef enum qesd_jv_type {
	QESD_JV_STRING = 1,	/* min_len/max_len in bytes (0 max: no extra limit) */
	QESD_JV_INTEGER,	/* min..max; both 0: any integer */
	QESD_JV_BOOLEAN,
	QESD_JV_ENUM,		/* a string from enum_values (NULL-terminated) */
	QESD_JV_OBJECT,		/* fields/n_fields describe its members */
	QESD_JV_ARRAY,		/* min_len/max_len items (0 max: no limit), each
				 * checked against *items */
} qesd_jv_type;

#define QESD_JV_REQUIRED	(1u << 0)
#define QESD_JV_NULLABLE	(1u << 1)	/* null is accepted for it */

typedef struct qesd_jv_field qesd_jv_field;
struct qesd_jv_field {
	const char *name;		/* member name (ignored for array items) */
	qesd_jv_type type;
	unsigned flags;			/* QESD_JV_* */
	size_t min_len;
	size_t max_len;
	long long min;
	long long max;
	const char *const *enum_values;
	const qesd_jv_field *fields;	/* QESD_JV_OBJECT */
	size_t n_fields;
	const qesd_jv_field *items;	/* QESD_JV_ARRAY */
};

typedef struct qesd_jv_error {
	const char *problem;	/* "unknown_field", "invalid_field", "missing_field" */
	char field[160];	/* path of the field, cut at 160 bytes */
	const char *reason;	/* static: "expected a string", ... */
} qesd_jv_error;

/* 0 when obj (an object) satisfies the declaration; QES_ERR_FORMAT with
 * *err filled otherwise. */
int qesd_jv_validate(const json_t *obj, const qesd_jv_field *fields,
    size_t n_fields, qesd_jv_error *err);

/* Turn a validation error into a 400 problem. */
int qesd_jv_problem(qesd_response *resp, const qesd_request *req,
    const qesd_jv_error *err);

#endif
