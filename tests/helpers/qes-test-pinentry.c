/*
 * qes-test-pinentry.c - a scripted pinentry for tests.
 *
 * Speaks the server side of Assuan the way the real pinentry programs do,
 * but answers dialogs from a script instead of a user, and writes what a
 * user would have seen to a transcript, so tests can check both directions
 * of the conversation without a terminal or a desktop.
 *
 * Environment:
 *   QES_TEST_PINENTRY_SCRIPT  the script: one action per line, consumed in
 *                             order across invocations (the index of the
 *                             next action lives in SCRIPT.pos, so a series
 *                             of pinentry processes walks through it)
 *   QES_TEST_PINENTRY_LOG     the transcript, appended to (optional)
 *
 * Actions (empty lines and lines starting with '#' are skipped):
 *   pin TEXT       GETPIN answers TEXT (D lines, percent-escaped) and OK
 *   pinhex HEX     the same with the PIN given in hex (any bytes)
 *   cancel         ERR 83886179 Operation cancelled
 *   confirm        CONFIRM/MESSAGE answer OK
 *   decline        ERR 83886194 Not confirmed
 *   timeout        ERR 83886142 Timeout
 *   sleep SECONDS  wait, then act on the next line
 *   raw LINE       send LINE as it is, then act on the next line
 *   reply LINE     send LINE as it is as the whole answer
 *   die            exit without answering
 *
 * The transcript has one entry per command: "OPTION name=value",
 * "SETDESC <decoded text>" (decoded texts may span lines), "GETPIN", ...
 * It never contains the PIN, only "PIN-SENT <length>".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES	1000	/* Assuan: including the LF */
#define D_CHUNK		64	/* escaped bytes per D line, to test several */

static const char *log_path;

static void
log_entry(const char *what, const char *text, size_t len)
{
	int fd;

	if (log_path == NULL)
		return;
	if ((fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) < 0)
		return;
	if (write(fd, what, strlen(what)) < 0 ||
	    (text != NULL && (write(fd, " ", 1) < 0 ||
	    write(fd, text, len) < 0)) || write(fd, "\n", 1) < 0)
		fprintf(stderr, "qes-test-pinentry: cannot write the log\n");
	close(fd);
}

static void
send_line(const char *line)
{
	fputs(line, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode in place, as pinentry does; returns the new length. */
static size_t
unescape(char *s)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] == '%' && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			s[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else
			s[o++] = s[i];
	}
	s[o] = '\0';
	return o;
}

/* The script's next action, or NULL when it is used up. Caller frees. */
static char *
next_action(void)
{
	const char *script = getenv("QES_TEST_PINENTRY_SCRIPT");
	char pos_path[4096], *line = NULL, *found = NULL;
	size_t cap = 0;
	ssize_t n;
	long pos = 0, idx = 0;
	FILE *f;

	if (script == NULL ||
	    (size_t)snprintf(pos_path, sizeof(pos_path), "%s.pos", script) >=
	    sizeof(pos_path))
		return NULL;
	if ((f = fopen(pos_path, "r")) != NULL) {
		if (fscanf(f, "%ld", &pos) != 1)
			pos = 0;
		fclose(f);
	}
	if ((f = fopen(script, "r")) == NULL)
		return NULL;
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (idx++ == pos) {
			found = strdup(line);
			break;
		}
	}
	free(line);
	fclose(f);
	if (found != NULL && (f = fopen(pos_path, "w")) != NULL) {
		fprintf(f, "%ld\n", pos + 1);
		fclose(f);
	}
	return found;
}

/* D lines as libassuan writes them: '%', CR and LF escaped. */
static void
send_pin(const unsigned char *pin, size_t len)
{
	char line[LINE_MAX_BYTES];
	size_t i, o = 0;
	char lenbuf[32];

	for (i = 0; i < len; i++) {
		if (o == 0) {
			line[o++] = 'D';
			line[o++] = ' ';
		}
		if (pin[i] == '%' || pin[i] == '\r' || pin[i] == '\n')
			o += (size_t)snprintf(line + o, sizeof(line) - o,
			    "%%%02X", pin[i]);
		else
			line[o++] = (char)pin[i];
		if (o >= D_CHUNK || i + 1 == len) {
			line[o] = '\0';
			send_line(line);
			o = 0;
		}
	}
	explicit_bzero(line, sizeof(line));
	send_line("OK");
	snprintf(lenbuf, sizeof(lenbuf), "%zu", len);
	log_entry("PIN-SENT", lenbuf, strlen(lenbuf));
}

/* Answer a GETPIN (is_getpin) or CONFIRM/MESSAGE from the script. */
static void
dialog(int is_getpin)
{
	char *act, *arg;
	unsigned char *pin;
	size_t i, n;
	int hi, lo;

	for (;;) {
		if ((act = next_action()) == NULL) {
			log_entry("SCRIPT-EXHAUSTED", NULL, 0);
			send_line("ERR 83886081 Script exhausted <Pinentry>");
			return;
		}
		arg = strchr(act, ' ');
		if (arg != NULL)
			*arg++ = '\0';
		else
			arg = act + strlen(act);

		if (strcmp(act, "sleep") == 0) {
			double s = strtod(arg, NULL);
			struct timespec ts = { (time_t)s,
			    (long)((s - (double)(time_t)s) * 1e9) };

			log_entry("SLEEP", arg, strlen(arg));
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
			free(act);
			continue;
		}
		if (strcmp(act, "raw") == 0) {
			send_line(arg);
			free(act);
			continue;
		}
		break;
	}

	if (strcmp(act, "reply") == 0)
		send_line(arg);
	else if (strcmp(act, "die") == 0) {
		log_entry("DIE", NULL, 0);
		_exit(3);
	} else if (strcmp(act, "cancel") == 0)
		send_line("ERR 83886179 Operation cancelled <Pinentry>");
	else if (strcmp(act, "decline") == 0)
		send_line("ERR 83886194 Not confirmed <Pinentry>");
	else if (strcmp(act, "timeout") == 0)
		send_line("ERR 83886142 Timeout <Pinentry>");
	else if (strcmp(act, "confirm") == 0 && !is_getpin)
		send_line("OK");
	else if (strcmp(act, "pin") == 0 && is_getpin)
		send_pin((const unsigned char *)arg, strlen(arg));
	else if (strcmp(act, "pinhex") == 0 && is_getpin) {
		n = strlen(arg) / 2;
		if ((pin = malloc(n + 1)) == NULL)
			_exit(4);
		for (i = 0; i < n; i++) {
			hi = hexval(arg[2 * i]);
			lo = hexval(arg[2 * i + 1]);
			pin[i] = (unsigned char)(hi < 0 || lo < 0 ?
			    '?' : hi << 4 | lo);
		}
		send_pin(pin, n);
		explicit_bzero(pin, n);
		free(pin);
	} else {
		log_entry("SCRIPT-MISMATCH", act, strlen(act));
		send_line("ERR 83886081 Script does not fit the command "
		    "<Pinentry>");
	}
	explicit_bzero(act, strlen(act) + (arg > act ? strlen(arg) + 1 : 0));
	free(act);
}

int
main(void)
{
	char *line = NULL, *cmd, *args;
	size_t cap = 0, len;
	ssize_t n;

	log_path = getenv("QES_TEST_PINENTRY_LOG");
	log_entry("START", NULL, 0);
	send_line("OK Pleased to meet you");
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		if ((size_t)n > LINE_MAX_BYTES) {
			char lenbuf[32];

			snprintf(lenbuf, sizeof(lenbuf), "%zd", n);
			log_entry("LINE-TOO-LONG", lenbuf, strlen(lenbuf));
			send_line("ERR 536871175 Line too long <User defined "
			    "source 1>");
			continue;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		/* Like libassuan: the command, then blanks, then arguments. */
		cmd = line;
		for (args = cmd; *args != '\0' && *args != ' ' &&
		    *args != '\t'; args++)
			;
		if (*args != '\0') {
			*args++ = '\0';
			while (*args == ' ' || *args == '\t')
				args++;
		}

		if (strcmp(cmd, "OPTION") == 0) {
			log_entry("OPTION", args, strlen(args));
			send_line("OK");
		} else if (strncmp(cmd, "SET", 3) == 0 &&
		    isupper((unsigned char)cmd[3])) {
			len = unescape(args);
			log_entry(cmd, args, len);
			send_line("OK");
		} else if (strcmp(cmd, "GETPIN") == 0) {
			log_entry(cmd, NULL, 0);
			dialog(1);
		} else if (strcmp(cmd, "CONFIRM") == 0 ||
		    strcmp(cmd, "MESSAGE") == 0) {
			log_entry(cmd, *args != '\0' ? args : NULL,
			    strlen(args));
			dialog(0);
		} else if (strcmp(cmd, "GETINFO") == 0 &&
		    strcmp(args, "pid") == 0) {
			printf("D %ld\n", (long)getpid());
			send_line("OK");
		} else if (strcmp(cmd, "BYE") == 0) {
			log_entry(cmd, NULL, 0);
			send_line("OK closing connection");
			break;
		} else if (strcmp(cmd, "NOP") == 0 || strcmp(cmd, "RESET") == 0)
			send_line("OK");
		else {
			log_entry("UNKNOWN", cmd, strlen(cmd));
			send_line("ERR 536871187 Unknown IPC command <User "
			    "defined source 1>");
		}
	}
	if (n < 0)
		log_entry("EOF", NULL, 0);
	free(line);
	return 0;
}
