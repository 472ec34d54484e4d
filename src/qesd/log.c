/*
 * log.c - structured JSON log lines on stderr (see log.h).
 *
 * Each line is built in a fixed stack buffer and emitted with one write(2):
 * POSIX makes a single write to a pipe atomic up to PIPE_BUF and, for the
 * regular files and terminals stderr usually is, the kernel does not
 * interleave one write with another, so no lock is needed between threads.
 * Nothing here allocates, so logging works when memory is short.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_BYTES 8192	/* whole line, newline included */
#define FIELD_MAX_BYTES 1024	/* one string value before it is cut */

static atomic_int log_level = QESD_LOG_INFO;
static atomic_int log_fd = 2;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
qesd_log_level_parse(const char *name)
{
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
qesd_log_level_name(qesd_log_level level)
{
	if ((int)level < 0 || (size_t)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "unknown";
	return level_names[level];
}

void
qesd_log_set_level(qesd_log_level level)
{
	atomic_store(&log_level, (int)level);
}

int
qesd_log_enabled(qesd_log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

void
qesd_log_set_fd(int fd)
{
	atomic_store(&log_fd, fd);
}

/* A bounded writer: once full it stops, and the line is marked truncated. */
struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	int truncated;		/* the line did not fit */
	int cut;		/* a field value was shortened */
};

/* Keep room for the closing ,"truncated":true}\n. */
#define LINE_RESERVE 24

static void
put_bytes(struct line *l, const char *s, size_t n)
{
	if (l->truncated || l->len + n > sizeof(l->buf) - LINE_RESERVE) {
		l->truncated = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
put_str(struct line *l, const char *s)
{
	put_bytes(l, s, strlen(s));
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t need, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
		cp = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		cp = s[0] & 0x07u;
	} else
		return 0;
	if (need > n)
		return 0;
	for (i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

static void
put_json_string(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k;
	char esc[8];

	put_bytes(l, "\"", 1);
	if (n > FIELD_MAX_BYTES) {
		n = FIELD_MAX_BYTES;
		l->cut = 1;
	}
	while (i < n) {
		if (p[i] == '"' || p[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)p[i];
			put_bytes(l, esc, 2);
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
			put_bytes(l, esc, 6);
			i++;
		} else if ((k = utf8_seq_len(p + i, n - i)) == 0) {
			/* not UTF-8: show the byte, keep the line valid JSON */
			snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
			put_bytes(l, esc, 6);
			i++;
		} else {
			put_bytes(l, (const char *)p + i, k);
			i += k;
		}
	}
	put_bytes(l, "\"", 1);
}

static void
put_time(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[40], ms[8];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tbuf, sizeof(tbuf) - 6, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ms, sizeof(ms), ".%03dZ", (int)(ts.tv_nsec / 1000000L) % 1000);
	strcat(tbuf, ms);
	put_str(l, "\"time\":\"");
	put_str(l, tbuf);
	put_str(l, "\"");
}

void
qesd_log_fields(qesd_log_level level, const char *msg,
    const qesd_log_field *fields, size_t n_fields)
{
	struct line l;
	char num[48];
	size_t i, off;
	ssize_t w;
	int fd;

	if (!qesd_log_enabled(level))
		return;
	l.len = 0;
	l.truncated = 0;
	l.cut = 0;
	put_str(&l, "{");
	put_time(&l);
	put_str(&l, ",\"level\":\"");
	put_str(&l, qesd_log_level_name(level));
	put_str(&l, "\",\"msg\":");
	put_json_string(&l, msg != NULL ? msg : "");
	for (i = 0; i < n_fields; i++) {
		const qesd_log_field *f = &fields[i];

		if (f->type == QESD_LF_END || f->key == NULL)
			continue;
		put_str(&l, ",\"");
		put_str(&l, f->key);	/* keys are literals from our code */
		put_str(&l, "\":");
		switch (f->type) {
		case QESD_LF_STR:
			if (f->s == NULL)
				put_str(&l, "null");
			else
				put_json_string(&l, f->s);
			break;
		case QESD_LF_INT:
			snprintf(num, sizeof(num), "%lld", f->i);
			put_str(&l, num);
			break;
		case QESD_LF_MS:
			snprintf(num, sizeof(num), "%.3f", f->d);
			put_str(&l, num);
			break;
		default:
			put_str(&l, "null");
			break;
		}
	}
	if (l.cut)
		put_str(&l, ",\"truncated\":true");
	/*
	 * A line that did not fit must still parse: rather than track field
	 * boundaries, rebuild it with only time, level and msg plus the flag.
	 */
	if (l.truncated) {
		l.len = 0;
		l.truncated = 0;
		put_str(&l, "{");
		put_time(&l);
		put_str(&l, ",\"level\":\"");
		put_str(&l, qesd_log_level_name(level));
		put_str(&l, "\",\"msg\":");
		put_json_string(&l, msg != NULL ? msg : "");
		put_str(&l, ",\"truncated\":true");
	}
	/* the reserve guarantees room for the closing bytes */
	memcpy(l.buf + l.len, "}\n", 2);
	l.len += 2;

	fd = atomic_load(&log_fd);
	off = 0;
	while (off < l.len) {
		w = write(fd, l.buf + off, l.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}
