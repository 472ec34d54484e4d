/*
 * log.h - qes-agent's structured log: one JSON object per line on stderr.
 *
 * Each line carries "time" (RFC 3339, UTC, milliseconds), "level", "event"
 * (a stable snake_case name) and the caller's string fields, in order. A
 * line is built in a bounded stack buffer and written with one write(2), so
 * lines from the watcher thread and a signing job never interleave.
 *
 * Secrets never go in: fields are names and ids (token serial, secret kind,
 * key name, file path), never values. Do not pass a PIN, a device key or
 * anything read from a secret store; the tests grep the logs for the PINs
 * they used.
 */
#ifndef QES_AGENT_LOG_H
#define QES_AGENT_LOG_H

typedef enum agent_log_level {
	AGENT_LOG_DEBUG = 0,
	AGENT_LOG_INFO = 1,
	AGENT_LOG_WARN = 2,
	AGENT_LOG_ERROR = 3,
} agent_log_level;

/*
 * Lines below this level are dropped. The default is info, or what
 * $QES_AGENT_LOG_LEVEL (debug|info|warn|error) says when it is set.
 */
void agent_log_set_level(agent_log_level level);
/* Where lines go (default 2, stderr). */
void agent_log_set_fd(int fd);

/*
 * agent_log(AGENT_LOG_WARN, "pin_rejected", "token", serial, NULL):
 * key/value string pairs ended by NULL. A NULL value is written as null.
 */
void agent_log(agent_log_level level, const char *event, ...)
    __attribute__((sentinel));

#endif
