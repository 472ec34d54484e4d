/*
 * test_pinentry.c - unit tests for pinentry.c and assuan.c.
 *
 * The Assuan escaping and the PIN decoder are tested directly; the client is
 * tested end to end against tests/helpers/qes-test-pinentry.c, a scripted
 * pinentry that answers from a script and keeps a transcript of what the
 * signer would have seen ($QES_BUILD_DIR/tests/qes-test-pinentry; the tests
 * that need it are skipped when QES_BUILD_DIR is not set). Misbehaving
 * programs (silent, hung, closing their input) are small shell scripts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/pinentry.h"
#include "qes/secret.h"

#include "assuan.h"

#define ELLIPSIS "\xe2\x80\xa6"

struct fixture {
	char dir[512];
	char script[600];
	char pos[600];
	char log[600];
	char program[PATH_MAX];
	char fake[600];		/* a shell-script "pinentry", when used */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/qes-test-pinentry.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->script, sizeof(f->script), "%s/script", f->dir);
	snprintf(f->pos, sizeof(f->pos), "%s/script.pos", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	snprintf(f->fake, sizeof(f->fake), "%s/fake-pinentry", f->dir);
	setenv("QES_TEST_PINENTRY_SCRIPT", f->script, 1);
	setenv("QES_TEST_PINENTRY_LOG", f->log, 1);
	/* The tests must not depend on the terminal or desktop they run in. */
	unsetenv("GPG_TTY");
	unsetenv("DISPLAY");
	unsetenv("QES_PINENTRY");
	setenv("TERM", "dumb", 1);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->script);
	unlink(f->pos);
	unlink(f->log);
	unlink(f->fake);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Find the scripted pinentry or skip the test. */
static struct fixture *
need_pinentry(void **state)
{
	struct fixture *f = *state;
	const char *build = getenv("QES_BUILD_DIR");

	if (build == NULL || *build == '\0')
		skip();
	snprintf(f->program, sizeof(f->program), "%s/tests/qes-test-pinentry",
	    build);
	if (access(f->program, X_OK) != 0) {
		print_error("%s: %s\n", f->program, strerror(errno));
		fail();
	}
	return f;
}

static void
write_file(const char *path, const char *text, int mode)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, (mode_t)mode), 0);
}

static void
write_script(struct fixture *f, const char *text)
{
	write_file(f->script, text, 0600);
	unlink(f->pos);
	unlink(f->log);
}

/* The transcript as a string; caller frees. */
static char *
read_log(struct fixture *f)
{
	qes_buf *b = NULL;
	const char *s;
	char *copy;

	if (qes_buf_read_file(f->log, 1 << 20, &b) == QES_ERR_NOT_FOUND)
		return strdup("");
	assert_non_null(b);
	assert_int_equal(qes_buf_cstr(b, &s), 0);
	copy = strdup(s);
	qes_buf_free(b);
	assert_non_null(copy);
	return copy;
}

static void
assert_log_has(struct fixture *f, const char *needle)
{
	char *log = read_log(f);

	if (strstr(log, needle) == NULL) {
		print_error("transcript lacks \"%s\":\n%s\n", needle, log);
		free(log);
		fail();
	}
	free(log);
}

static void
assert_log_lacks(struct fixture *f, const char *needle)
{
	char *log = read_log(f);

	if (strstr(log, needle) != NULL) {
		print_error("transcript has \"%s\":\n%s\n", needle, log);
		free(log);
		fail();
	}
	free(log);
}

static qes_pinentry *
open_pe(struct fixture *f, int timeout_s)
{
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;

	opts.program = f->program;
	opts.timeout_s = timeout_s;
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	assert_non_null(pe);
	return pe;
}

static void
assert_secret(const qes_secret *s, const void *data, size_t len)
{
	assert_int_equal(qes_secret_len(s), len);
	assert_memory_equal(qes_secret_data(s), data, len);
}

/* ---- escaping ---- */

static void
assert_escape(const char *in, const char *want)
{
	qes_buf *b = qes_buf_new();
	const char *s;

	assert_non_null(b);
	assert_int_equal(qes_assuan_escape(in, b), 0);
	assert_int_equal(qes_buf_cstr(b, &s), 0);
	assert_string_equal(s, want);
	qes_buf_free(b);
}

static void
test_escape(void **state)
{
	(void)state;
	assert_escape("", "");
	assert_escape("plain text", "plain text");
	assert_escape("100%", "100%25");
	assert_escape("a\nb\r\n", "a%0Ab%0D%0A");
	assert_escape("tab\there\x01\x1f\x7f", "tab%09here%01%1F%7F");
	/* libassuan strips blanks in front of an argument */
	assert_escape("  indented", "%20 indented");
	/* UTF-8 passes unchanged */
	assert_escape("M\xc3\xbcller \xe2\x82\xac", "M\xc3\xbcller \xe2\x82\xac");
	/* nothing that could end the line survives */
	assert_escape("x\nGETPIN", "x%0AGETPIN");
}

static void
assert_escape_max(const char *in, size_t max, const char *want, int want_cut)
{
	qes_buf *b = qes_buf_new();
	const char *s;
	int cut = -1;

	assert_non_null(b);
	assert_int_equal(qes_assuan_escape_max(in, max, b, &cut), 0);
	assert_int_equal(qes_buf_cstr(b, &s), 0);
	assert_string_equal(s, want);
	assert_true(strlen(s) <= max);
	assert_int_equal(cut, want_cut);
	qes_buf_free(b);
}

static void
test_escape_max(void **state)
{
	qes_buf *b = qes_buf_new();

	(void)state;
	assert_non_null(b);
	assert_escape_max("abc", 3, "abc", 0);
	assert_escape_max("abcd", 4, "abcd", 0);
	assert_escape_max("abcdefgh", 6, "abc" ELLIPSIS, 1);
	/* never inside a UTF-8 sequence: each a-umlaut is 2 bytes */
	assert_escape_max("\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4", 6,
	    "\xc3\xa4" ELLIPSIS, 1);
	assert_escape_max("\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4", 7,
	    "\xc3\xa4\xc3\xa4" ELLIPSIS, 1);
	/* never inside a %XX escape */
	assert_escape_max("ab%cdef", 6, "ab" ELLIPSIS, 1);
	assert_escape_max("ab%cdef", 8, "ab%25" ELLIPSIS, 1);
	assert_escape_max("a%", 4, "a%25", 0);
	/* no room for the ellipsis */
	assert_int_equal(qes_assuan_escape_max("abcdef", 2, b, NULL),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_assuan_escape_max(NULL, 10, b, NULL),
	    QES_ERR_INVALID_ARG);
	qes_buf_free(b);
}

static void
test_unescape(void **state)
{
	static const struct {
		const char *in;
		size_t len;
	} bad[] = {
		{ "%", 1 }, { "ab%4", 4 }, { "%zz", 3 }, { "%4g", 3 },
		{ "%00", 3 }, { "a\0b", 3 }, { "%%41", 4 },
	};
	qes_secret *s = qes_secret_new(8);
	size_t i;

	(void)state;
	assert_non_null(s);
	assert_int_equal(qes_assuan_unescape_into_secret("", 0, s), 0);
	assert_int_equal(qes_secret_len(s), 0);
	assert_int_equal(qes_assuan_unescape_into_secret("a%25b%0a%0D",
	    11, s), 0);
	assert_secret(s, "a%b\n\r", 5);
	/* appends: a PIN may span several D lines */
	assert_int_equal(qes_assuan_unescape_into_secret("%41B", 4, s), 0);
	assert_secret(s, "a%b\n\rAB", 7);
	/* only len bytes are read */
	qes_secret_clear(s);
	assert_int_equal(qes_assuan_unescape_into_secret("xyz", 1, s), 0);
	assert_secret(s, "x", 1);
	/* full: LIMIT, and nothing half-decoded is left behind */
	assert_int_equal(qes_assuan_unescape_into_secret("12345678", 8, s),
	    QES_ERR_LIMIT);
	assert_int_equal(qes_secret_len(s), 0);
	assert_int_equal(qes_assuan_unescape_into_secret("1234567%38", 10,
	    s), 0);
	assert_secret(s, "12345678", 8);
	qes_secret_clear(s);
	assert_int_equal(qes_assuan_unescape_into_secret("1234567%38%39",
	    13, s), QES_ERR_LIMIT);
	assert_int_equal(qes_secret_len(s), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(qes_secret_set(s, "old", 3), 0);
		assert_int_equal(qes_assuan_unescape_into_secret(bad[i].in,
		    bad[i].len, s), QES_ERR_FORMAT);
		assert_int_equal(qes_secret_len(s), 0);
	}
	qes_secret_free(s);
}

/* ---- GETPIN ---- */

static void
test_getpin_special_characters(void **state)
{
	struct fixture *f = need_pinentry(state);
	static const char pin[] = "a b%c \xc3\xbc\xe2\x82\xac %41";
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	char script[128];

	assert_non_null(s);
	snprintf(script, sizeof(script), "pin %s\npin \n", pin);
	write_script(f, script);
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, pin, strlen(pin));
	/* an empty PIN is an answer, not a cancel */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_int_equal(qes_secret_len(s), 0);
	qes_pinentry_free(pe);
	assert_log_lacks(f, "a b%c");
	assert_log_has(f, "PIN-SENT 15\n");
	qes_secret_free(s);
}

static void
test_getpin_all_bytes(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	uint8_t pin[255];
	char script[16 + 2 * sizeof(pin)];
	size_t i, o;

	assert_non_null(s);
	/* 255 bytes: every value but NUL, so %, CR, LF and high bytes too */
	o = (size_t)snprintf(script, sizeof(script), "pinhex ");
	for (i = 0; i < sizeof(pin); i++) {
		pin[i] = (uint8_t)(i + 1);
		o += (size_t)snprintf(script + o, sizeof(script) - o, "%02x",
		    pin[i]);
	}
	snprintf(script + o, sizeof(script) - o, "\n");
	write_script(f, script);
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", "P", NULL, s), 0);
	assert_secret(s, pin, sizeof(pin));
	qes_pinentry_free(pe);
	assert_log_has(f, "PIN-SENT 255\n");
	qes_secret_free(s);
}

static void
test_getpin_too_long(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(16);
	qes_pinentry *pe;

	assert_non_null(s);
	/* 16 bytes fit, 17 do not; the long one spans two D lines */
	write_script(f, "pin 0123456789abcdef\n"
	    "pin 0123456789abcdefX\n"
	    "pinhex 2525252525252525252525252525252525252525252525252525252525"
	    "25252525252525252525252525252525252525252525252525252525252525\n"
	    "pin 1234\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, "0123456789abcdef", 16);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_LIMIT);
	assert_int_equal(qes_secret_len(s), 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_LIMIT);
	assert_int_equal(qes_secret_len(s), 0);
	/* the rest was drained: the conversation is still in step */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, "1234", 4);
	qes_pinentry_free(pe);
	qes_secret_free(s);
}

static void
test_getpin_cancel_and_timeout(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;

	assert_non_null(s);
	write_script(f, "cancel\ntimeout\nreply ERR 198 Fully canceled\n"
	    "reply ERR 83886339 No such device <Pinentry>\npin 42\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_secret_set(s, "stale", 5), 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_CANCELLED);
	assert_int_equal(qes_secret_len(s), 0);
	assert_non_null(strstr(qes_pinentry_errmsg(pe), "cancelled"));
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_TIMEOUT);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_CANCELLED);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_string_equal(qes_pinentry_errmsg(pe),
	    "pinentry: No such device <Pinentry>");
	/* none of these break the conversation */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, "42", 2);
	qes_pinentry_free(pe);
	qes_secret_free(s);
}

static void
test_transcript(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;

	assert_non_null(s);
	write_script(f, "pin 271828\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "Sign with Erika Mustermann",
	    "Document: contract.pdf\nVerification code: 4711\n100% sure? "
	    "%41 stays %41", "PIN for \"eToken 5110\":",
	    "Wrong PIN: 2 tries left", s), 0);
	assert_secret(s, "271828", 6);
	qes_pinentry_free(pe);
	assert_log_has(f, "SETTITLE Sign with Erika Mustermann\n");
	assert_log_has(f, "SETDESC Document: contract.pdf\n"
	    "Verification code: 4711\n100% sure? %41 stays %41\n");
	assert_log_has(f, "SETPROMPT PIN for \"eToken 5110\":\n");
	assert_log_has(f, "SETERROR Wrong PIN: 2 tries left\nGETPIN\n");
	assert_log_has(f, "GETPIN\nPIN-SENT 6\nBYE\n");
	assert_log_lacks(f, "271828");
	assert_log_lacks(f, "SETTIMEOUT");
	assert_log_lacks(f, "LINE-TOO-LONG");
	qes_secret_free(s);
}

static void
test_long_description(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_pinentry *pe;
	char desc[3001], *log, *p, *end;
	size_t i;

	/* 1500 two-byte characters: far more than one Assuan line */
	for (i = 0; i + 2 < sizeof(desc); i += 2)
		memcpy(desc + i, "\xc3\xa4", 2);
	desc[i] = '\0';
	write_script(f, "confirm\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_confirm(pe, "T", desc, NULL, NULL), 0);
	qes_pinentry_free(pe);
	assert_log_lacks(f, "LINE-TOO-LONG");
	log = read_log(f);
	p = strstr(log, "SETDESC ");
	assert_non_null(p);
	p += strlen("SETDESC ");
	end = strchr(p, '\n');
	assert_non_null(end);
	/* "SETDESC " + text + LF fit in 1000 bytes; whole characters only */
	assert_true((size_t)(end - p) + strlen("SETDESC ") + 1 <= 1000);
	assert_true((size_t)(end - p) > 900);
	assert_memory_equal(end - 3, ELLIPSIS, 3);
	assert_int_equal((end - 3 - p) % 2, 0);
	assert_memory_equal(p, desc, (size_t)(end - 3 - p));
	free(log);
}

static void
test_settimeout(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;

	assert_non_null(s);
	write_script(f, "pin 1\nconfirm\n");
	pe = open_pe(f, 7);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_int_equal(qes_pinentry_confirm(pe, "T", "D", NULL, NULL), 0);
	qes_pinentry_free(pe);
	assert_log_has(f, "SETTIMEOUT 7\nSETTITLE T\nSETDESC D\nSETPROMPT");
	assert_log_has(f, "SETTIMEOUT 7\nSETTITLE T\nSETDESC D\nSETOK");
	qes_secret_free(s);
}

/* A pinentry that ignores its timeout is given up timeout_s + 5 s later. */
static void
test_deadline(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	int64_t t0, t1;

	assert_non_null(s);
	write_script(f, "sleep 30\npin 1\n");
	pe = open_pe(f, 1);
	t0 = now_ms();
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_TIMEOUT);
	t1 = now_ms();
	assert_true(t1 - t0 >= 5900 && t1 - t0 < 9000);
	/* the handle is done for; freeing it kills the program promptly */
	assert_int_equal(qes_pinentry_confirm(pe, "T", "D", NULL, NULL),
	    QES_ERR_PINENTRY);
	qes_pinentry_free(pe);
	assert_true(now_ms() - t1 < 2000);
	qes_secret_free(s);
}

/* ---- CONFIRM and MESSAGE ---- */

static void
test_confirm(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_pinentry *pe;

	write_script(f, "confirm\ndecline\ncancel\ntimeout\nconfirm\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_confirm(pe, "Consent",
	    "Sign invoice 17?", "_Sign", "_Refuse"), 0);
	assert_int_equal(qes_pinentry_confirm(pe, "Consent", "Again?", NULL,
	    NULL), QES_ERR_CANCELLED);
	assert_int_equal(qes_pinentry_confirm(pe, "C", "D", NULL, NULL),
	    QES_ERR_CANCELLED);
	assert_int_equal(qes_pinentry_confirm(pe, "C", "D", NULL, NULL),
	    QES_ERR_TIMEOUT);
	assert_int_equal(qes_pinentry_message(pe, "Reader",
	    "Enter the PIN on the reader's keypad"), 0);
	qes_pinentry_free(pe);
	assert_log_has(f, "SETTITLE Consent\nSETDESC Sign invoice 17?\n"
	    "SETOK _Sign\nSETCANCEL _Refuse\nCONFIRM\n");
	/* labels persist in a pinentry: the defaults come back */
	assert_log_has(f, "SETDESC Again?\nSETOK _OK\nSETCANCEL _Cancel\n"
	    "CONFIRM\n");
	assert_log_has(f, "SETTITLE Reader\nSETDESC Enter the PIN on the "
	    "reader's keypad\nSETOK _OK\nMESSAGE\n");
}

/* ---- broken programs ---- */

static void
test_die(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	int64_t t0;

	assert_non_null(s);
	write_script(f, "raw D 12\ndie\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_int_equal(qes_secret_len(s), 0);
	assert_string_equal(qes_pinentry_errmsg(pe), "pinentry exited");
	/* later calls fail at once, without writing to a dead pipe */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_int_equal(qes_pinentry_message(pe, "T", "D"), QES_ERR_PINENTRY);
	t0 = now_ms();
	qes_pinentry_free(pe);
	assert_true(now_ms() - t0 < 2000);
	qes_secret_free(s);
}

static void
test_protocol_noise_and_errors(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_pinentry *pe;
	char *script;
	size_t i;

	assert_non_null(s);
	/* status and comment lines are skipped; an INQUIRE is refused */
	write_script(f, "raw S PROGRESS 1\nraw # a comment\nraw S\n"
	    "pin 4321\n"
	    "raw D %zz\nreply OK\n"
	    "raw D 12%00\nreply OK\n"
	    "pin 5\n"
	    "reply HELLO\n");
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, "4321", 4);
	/* malformed data: an error, but the answer was read to its end */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_int_equal(qes_secret_len(s), 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s), 0);
	assert_secret(s, "5", 1);
	/* a line that is no Assuan answer ends the conversation */
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_string_equal(qes_pinentry_errmsg(pe),
	    "pinentry sent an unexpected line");
	qes_pinentry_free(pe);

	/* an overlong line (no LF within 1002 bytes) is refused */
	script = malloc(4096);
	assert_non_null(script);
	i = (size_t)snprintf(script, 4096, "raw S ");
	memset(script + i, 'x', 2000);
	snprintf(script + i + 2000, 4096 - i - 2000, "\npin 1\n");
	write_script(f, script);
	free(script);
	pe = open_pe(f, 0);
	assert_int_equal(qes_pinentry_getpin(pe, "T", "D", NULL, NULL, s),
	    QES_ERR_PINENTRY);
	assert_string_equal(qes_pinentry_errmsg(pe),
	    "pinentry sent an overlong line");
	qes_pinentry_free(pe);
	qes_secret_free(s);
}

static void
test_not_found(void **state)
{
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = (qes_pinentry *)&opts;

	(void)state;
	opts.program = "/nonexistent/qes/pinentry";
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_NOT_FOUND);
	assert_null(pe);
	/* searched in PATH when the name has no slash */
	opts.program = "qes-no-such-pinentry-program";
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_NOT_FOUND);
	assert_null(pe);
	setenv("QES_PINENTRY", "/nonexistent/qes/from-env", 1);
	opts.program = NULL;
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_NOT_FOUND);
	assert_null(pe);
	unsetenv("QES_PINENTRY");
	opts.timeout_s = -1;
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_pinentry_open(&opts, NULL), QES_ERR_INVALID_ARG);
	qes_pinentry_free(NULL);
	assert_non_null(qes_pinentry_errmsg(NULL));
}

static void
test_not_a_pinentry(void **state)
{
	struct fixture *f = *state;
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;
	sigset_t pending;

	opts.program = "true";	/* exits at once */
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_PINENTRY);
	assert_null(pe);

	opts.program = f->fake;
	write_file(f->fake, "#!/bin/sh\necho 'ERR 1 not today'\n", 0700);
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_PINENTRY);

	/*
	 * Greets, then stops reading: the OPTION write hits a closed pipe.
	 * SIGPIPE would end this test process if it got through.
	 */
	write_file(f->fake, "#!/bin/sh\nexec 0<&-\necho OK hi\nexec sleep 5\n",
	    0700);
	opts.tty_name = "/dev/null";
	assert_int_equal(qes_pinentry_open(&opts, &pe), QES_ERR_PINENTRY);
	assert_null(pe);
	assert_int_equal(sigpending(&pending), 0);
	assert_int_equal(sigismember(&pending, SIGPIPE), 0);
}

/*
 * After BYE the pinentry is waited for until it has exited, however it
 * leaves: one that closes its output first and takes a moment longer is
 * not killed for it (it writes a file on its way out), and one that
 * closes its output and ignores SIGTERM is killed. Either way no zombie
 * is left behind.
 */
static void
assert_no_child(void)
{
	int status;

	errno = 0;
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void
test_reaped_after_bye(void **state)
{
	struct fixture *f = *state;
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;
	char text[2048], left[600];
	struct stat st;

	snprintf(left, sizeof(left), "%s/left", f->dir);
	snprintf(text, sizeof(text),
	    "#!/bin/sh\n"
	    "echo 'OK hi'\n"
	    "while read -r line; do\n"
	    "  case \"$line\" in\n"
	    "  BYE) echo 'OK bye'; exec >&-; sleep 0.2; : > '%s'; exit 0;;\n"
	    "  *) echo OK;;\n"
	    "  esac\n"
	    "done\n", left);
	write_file(f->fake, text, 0700);
	opts.program = f->fake;
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	qes_pinentry_free(pe);
	assert_int_equal(stat(left, &st), 0);
	assert_int_equal(unlink(left), 0);
	assert_no_child();

	/* closes its output, then neither leaves nor minds SIGTERM */
	write_file(f->fake,
	    "#!/bin/sh\n"
	    "trap '' TERM\n"
	    "echo 'OK hi'\n"
	    "while read -r line; do\n"
	    "  case \"$line\" in\n"
	    "  BYE) exec >&-; while :; do sleep 0.1; done;;\n"
	    "  *) echo OK;;\n"
	    "  esac\n"
	    "done\n", 0700);
	pe = NULL;
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	qes_pinentry_free(pe);
	assert_no_child();
}

static void
test_options(void **state)
{
	struct fixture *f = need_pinentry(state);
	qes_pinentry_opts opts = { 0 };
	qes_pinentry *pe = NULL;

	write_script(f, "");
	opts.program = f->program;
	opts.tty_name = "/dev/pts/77";
	opts.tty_type = "vt100";
	opts.display = ":9";
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	qes_pinentry_free(pe);
	assert_log_has(f, "OPTION ttyname=/dev/pts/77\n");
	assert_log_has(f, "OPTION ttytype=vt100\n");
	assert_log_has(f, "OPTION display=:9\n");

	/* from the environment; a value that could inject a line is dropped */
	write_script(f, "");
	setenv("GPG_TTY", "/dev/pts/5\nGETPIN", 1);
	setenv("DISPLAY", ":3", 1);
	opts.tty_name = NULL;
	opts.tty_type = NULL;
	opts.display = NULL;
	opts.program = NULL;
	setenv("QES_PINENTRY", f->program, 1);
	assert_int_equal(qes_pinentry_open(&opts, &pe), 0);
	qes_pinentry_free(pe);
	unsetenv("QES_PINENTRY");
	unsetenv("GPG_TTY");
	unsetenv("DISPLAY");
	assert_log_has(f, "OPTION ttytype=dumb\n");
	assert_log_has(f, "OPTION display=:3\n");
	assert_log_lacks(f, "/dev/pts/5");
	assert_log_lacks(f, "GETPIN");
	assert_log_lacks(f, "UNKNOWN");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_max),
		cmocka_unit_test(test_unescape),
		cmocka_unit_test_setup_teardown(test_getpin_special_characters,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_getpin_all_bytes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_getpin_too_long, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_getpin_cancel_and_timeout,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_transcript, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_long_description, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_settimeout, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_confirm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_die, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_noise_and_errors,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_not_a_pinentry, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reaped_after_bye, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
