/*
 * jsonv.c - checks a parsed JSON object against a static field declaration
 * (see jsonv.h). Recursion follows the declaration, not the input, so its
 * depth is bounded by our own code; the input's depth was already bounded
 * by the pre-scan before jansson parsed it.
 */
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "jsonv.h"
#include "problem.h"

static int check_value(const json_t *v, const qesd_jv_field *f,
    const char *path, qesd_jv_error *err);

/* Copy at most cap-1 bytes of s without splitting a UTF-8 sequence. */
static void
copy_utf8_cut(char *dst, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static int
fail(qesd_jv_error *err, const char *problem, const char *path,
    const char *reason)
{
	err->problem = problem;
	copy_utf8_cut(err->field, sizeof(err->field), path);
	err->reason = reason;
	return QES_ERR_FORMAT;
}

static void
join_member(char *out, size_t cap, const char *parent, const char *name)
{
	char cut[96];

	copy_utf8_cut(cut, sizeof(cut), name);
	if (parent[0] == '\0')
		snprintf(out, cap, "%s", cut);
	else
		snprintf(out, cap, "%s.%s", parent, cut);
	/* snprintf may split a UTF-8 sequence at the end: trim it */
	copy_utf8_cut(out, cap, out);
}

static int
check_object(const json_t *obj, const qesd_jv_field *fields, size_t n,
    const char *path, qesd_jv_error *err)
{
	const char *key;
	json_t *v;
	char sub[256];
	size_t i;
	int r;

	if (!json_is_object(obj))
		return fail(err, "invalid_field", path[0] ? path : "(body)",
		    "expected an object");
	/* unknown members first: they are the likelier client mistake */
	json_object_foreach((json_t *)obj, key, v) {
		for (i = 0; i < n; i++)
			if (strcmp(fields[i].name, key) == 0)
				break;
		if (i == n) {
			join_member(sub, sizeof(sub), path, key);
			return fail(err, "unknown_field", sub, "not a known field");
		}
	}
	for (i = 0; i < n; i++) {
		join_member(sub, sizeof(sub), path, fields[i].name);
		v = json_object_get(obj, fields[i].name);
		if (v == NULL) {
			if (fields[i].flags & QESD_JV_REQUIRED)
				return fail(err, "missing_field", sub,
				    "required field is missing");
			continue;
		}
		if ((r = check_value(v, &fields[i], sub, err)) != 0)
			return r;
	}
	return 0;
}

static int
check_value(const json_t *v, const qesd_jv_field *f, const char *path,
    qesd_jv_error *err)
{
	const char *const *e;
	char sub[256];
	size_t len, i;
	long long x;
	int r;

	if (json_is_null(v)) {
		if (f->flags & QESD_JV_NULLABLE)
			return 0;
		return fail(err, "invalid_field", path, "must not be null");
	}
	switch (f->type) {
	case QESD_JV_STRING:
		if (!json_is_string(v))
			return fail(err, "invalid_field", path, "expected a string");
		len = json_string_length(v);
		if (len < f->min_len)
			return fail(err, "invalid_field", path, "string too short");
		if (f->max_len != 0 && len > f->max_len)
			return fail(err, "invalid_field", path, "string too long");
		/* jansson allows \u0000 inside strings; C code downstream does not */
		if (memchr(json_string_value(v), '\0', len) != NULL)
			return fail(err, "invalid_field", path,
			    "string contains a NUL character");
		return 0;
	case QESD_JV_INTEGER:
		if (!json_is_integer(v))
			return fail(err, "invalid_field", path, "expected an integer");
		x = (long long)json_integer_value(v);
		if ((f->min != 0 || f->max != 0) && (x < f->min || x > f->max))
			return fail(err, "invalid_field", path, "integer out of range");
		return 0;
	case QESD_JV_BOOLEAN:
		if (!json_is_boolean(v))
			return fail(err, "invalid_field", path, "expected a boolean");
		return 0;
	case QESD_JV_ENUM:
		if (!json_is_string(v) || f->enum_values == NULL)
			return fail(err, "invalid_field", path, "expected a string");
		for (e = f->enum_values; *e != NULL; e++)
			if (strlen(*e) == json_string_length(v) &&
			    strcmp(*e, json_string_value(v)) == 0)
				return 0;
		return fail(err, "invalid_field", path, "not one of the allowed values");
	case QESD_JV_OBJECT:
		return check_object(v, f->fields, f->n_fields, path, err);
	case QESD_JV_ARRAY:
		if (!json_is_array(v))
			return fail(err, "invalid_field", path, "expected an array");
		len = json_array_size(v);
		if (len < f->min_len)
			return fail(err, "invalid_field", path, "too few items");
		if (f->max_len != 0 && len > f->max_len)
			return fail(err, "invalid_field", path, "too many items");
		if (f->items == NULL)
			return fail(err, "invalid_field", path, "no items allowed");
		for (i = 0; i < len; i++) {
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			if ((r = check_value(json_array_get(v, i), f->items, sub, err)) != 0)
				return r;
		}
		return 0;
	}
	return fail(err, "invalid_field", path, "unsupported declaration");
}

int
qesd_jv_validate(const json_t *obj, const qesd_jv_field *fields,
    size_t n_fields, qesd_jv_error *err)
{
	qesd_jv_error scratch;

	if (err == NULL)
		err = &scratch;
	memset(err, 0, sizeof(*err));
	if (obj == NULL)
		return fail(err, "invalid_field", "(body)", "expected an object");
	return check_object(obj, fields, n_fields, "", err);
}

int
qesd_jv_problem(qesd_response *resp, const qesd_request *req,
    const qesd_jv_error *err)
{
	const char *name = err->problem != NULL ? err->problem : "invalid_field";
	const char *title = "Invalid field";

	if (strcmp(name, "unknown_field") == 0)
		title = "Unknown field";
	else if (strcmp(name, "missing_field") == 0)
		title = "Missing field";
	int r;

	r = qesd_problemf(resp, req, 400, name, title, "%s: %s", err->field,
	    err->reason != NULL ? err->reason : "invalid");
	/* the field path also as a member of its own, for programs */
	if (r == 0 && resp->json != NULL)
		(void)json_object_set_new(resp->json, "field", json_string(err->field));
	return r;
}
