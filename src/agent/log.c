/*
 * log.c - JSON lines for qes-agent (see log.h).
 *
 * Deliberately small: string fields only, a fixed 4 KiB line (fields that do
 * not fit are dropped whole and the line says "truncated": true, so it stays
 * valid JSON), bytes outside
 * printable ASCII escaped as \u00XX so a hostile token label cannot forge
 * a line or a terminal escape.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_BYTES	4096
#define FIELD_MAX_PAIRS	32

static _Atomic int log_fd = 2;
static _Atomic int log_level = -1;	/* -1: not decided yet */

static const char *level_names[] = { "debug", "info", "warn", "error" };

void
agent_log_set_level(agent_log_level level)
{
	log_level = (int)level;
}

void
agent_log_set_fd(int fd)
{
	log_fd = fd;
}

static int
current_level(void)
{
	const char *env;
	int i, level = log_level;

	if (level >= 0)
		return level;
	level = AGENT_LOG_INFO;
	if ((env = getenv("QES_AGENT_LOG_LEVEL")) != NULL)
		for (i = 0; i < 4; i++)
			if (strcmp(env, level_names[i]) == 0)
				level = i;
	log_level = level;
	return level;
}

struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	int full;
};

/* Room is always kept for the closing "truncated" marker and "}\n". */
#define LINE_RESERVE	32

static void
put_raw(struct line *l, const char *s, size_t n)
{
	if (l->full || n > sizeof(l->buf) - LINE_RESERVE - l->len) {
		l->full = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
put_str(struct line *l, const char *s)
{
	put_raw(l, s, strlen(s));
}

static void
put_json_string(struct line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	char esc[7];

	if (s == NULL) {
		put_str(l, "null");
		return;
	}
	put_raw(l, "\"", 1);
	for (p = (const unsigned char *)s; *p != '\0' && !l->full; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			put_raw(l, esc, 2);
		} else if (*p < 0x20 || *p >= 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			put_raw(l, esc, 6);
		} else
			put_raw(l, (const char *)p, 1);
	}
	put_raw(l, "\"", 1);
}

void
agent_log(agent_log_level level, const char *event, ...)
{
	struct line l;
	struct timespec ts;
	struct tm tm;
	char stamp[64];
	const char *key, *val;
	va_list ap;
	ssize_t n;
	size_t off, saved;
	int i, fd;

	if ((int)level < current_level() || (int)level < 0 || (int)level > 3)
		return;
	memset(&l, 0, sizeof(l));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
	put_str(&l, "{\"time\":\"");
	put_str(&l, stamp);
	put_str(&l, "\",\"level\":\"");
	put_str(&l, level_names[level]);
	put_str(&l, "\",\"event\":");
	saved = l.len;
	put_json_string(&l, event);
	if (l.full) {
		/* events are short literals; never leave half a string behind */
		l.len = saved;
		l.full = 0;
		put_str(&l, "null");
		l.full = 1;
	}
	va_start(ap, event);
	for (i = 0; i < FIELD_MAX_PAIRS && (key = va_arg(ap, const char *)) != NULL;
	    i++) {
		val = va_arg(ap, const char *);
		saved = l.len;
		put_raw(&l, ",", 1);
		put_json_string(&l, key);
		put_raw(&l, ":", 1);
		put_json_string(&l, val);
		if (l.full) {
			/* drop the field that did not fit: the line stays valid JSON */
			l.len = saved;
			break;
		}
	}
	va_end(ap);
	if (l.full) {
		/* LINE_RESERVE bytes are free for this */
		memcpy(l.buf + l.len, ",\"truncated\":true", 17);
		l.len += 17;
	}
	l.buf[l.len++] = '}';
	l.buf[l.len++] = '\n';
	fd = log_fd;
	for (off = 0; off < l.len; off += (size_t)n)
		if ((n = write(fd, l.buf + off, l.len - off)) <= 0)
			break;
}
