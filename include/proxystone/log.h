/*
 * log — one line per event on stderr: "2024-01-15T10:30:00.000Z api[1234] info:
 * text".
 *
 * Each process sets its role name once after fork (log_set_role). Only the
 * layer that decides what to do about an error logs it (STYLE.md habit 5).
 */
#ifndef PROXYSTONE_LOG_H
#define PROXYSTONE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_role(const char *role);
void log_set_level(enum log_level min);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Rate limit for a line that input from the network can trigger: at most
 * one per `interval` seconds per limiter. log_limited() says whether to log
 * now; *held is how many were held back since the last line, so the line can
 * say so. One limiter per kind of line (a static or a struct field).
 */
struct log_limit {
	double next;   /* monotonic time the next line may go out */
	uint64_t held; /* suppressed since the last line */
};
bool log_limited(struct log_limit *l, double now, double interval,
		 uint64_t *held);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
