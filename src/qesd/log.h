/*
 * log.h - structured JSON logs of qesd on stderr.
 *
 * One JSON object per line: "time" (RFC 3339, UTC, milliseconds), "level",
 * "msg", then the caller's fields in order. Every line is formatted in a
 * bounded stack buffer and written with a single write(2), so lines from
 * different threads never interleave.
 *
 * Secrets never go in: the API takes ids (request id, key id, tenant id,
 * route name), never values. Do not pass an Authorization header, an API
 * key secret, a PIN, a pepper or document content to any of these functions;
 * the test suite greps the logs for the secrets it used.
 */
#ifndef QESD_LOG_H
#define QESD_LOG_H

#include <stddef.h>

typedef enum qesd_log_level {
	QESD_LOG_DEBUG = 0,
	QESD_LOG_INFO = 1,
	QESD_LOG_WARN = 2,
	QESD_LOG_ERROR = 3,
} qesd_log_level;

typedef enum qesd_log_type {
	QESD_LF_END = 0,	/* unused slot (the macro's leading sentinel) */
	QESD_LF_STR,		/* string; NULL is written as null */
	QESD_LF_INT,		/* signed integer */
	QESD_LF_MS,		/* double, written with 3 decimals */
} qesd_log_type;

typedef struct qesd_log_field {
	const char *key;	/* a literal JSON key: [a-z0-9_]+ */
	qesd_log_type type;
	const char *s;
	long long i;
	double d;
} qesd_log_field;

#define QLS(k, v) ((qesd_log_field){ .key = (k), .type = QESD_LF_STR, .s = (v) })
#define QLI(k, v) ((qesd_log_field){ .key = (k), .type = QESD_LF_INT, .i = (long long)(v) })
#define QLD(k, v) ((qesd_log_field){ .key = (k), .type = QESD_LF_MS, .d = (double)(v) })

/* Parse "debug" | "info" | "warn" | "error"; -1 when unknown. */
int qesd_log_level_parse(const char *name);
const char *qesd_log_level_name(qesd_log_level level);

/* Messages below this level are dropped (default info). Thread-safe. */
void qesd_log_set_level(qesd_log_level level);
int qesd_log_enabled(qesd_log_level level);

/* Where lines go (default 2, stderr); tests point it at a pipe or file. */
void qesd_log_set_fd(int fd);

/*
 * Write one line. Strings are JSON-escaped; bytes that are not valid UTF-8
 * or are control characters are escaped, and a field longer than 1 KiB is
 * cut (the line stays valid JSON and says "truncated": true).
 */
void qesd_log_fields(qesd_log_level level, const char *msg,
    const qesd_log_field *fields, size_t n_fields);

/* qesd_log(QESD_LOG_INFO, "listening", QLS("addr", a), QLI("port", p)); */
#define qesd_log(level, msg, ...) do {						\
	const qesd_log_field qesd_lf_[] = { { .type = QESD_LF_END }, __VA_ARGS__ }; \
	qesd_log_fields((level), (msg), qesd_lf_ + 1,				\
	    sizeof(qesd_lf_) / sizeof(qesd_lf_[0]) - 1);			\
} while (0)

#endif
