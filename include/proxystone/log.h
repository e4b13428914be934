/*
 * log — one line per event on stderr: "2024-01-15T10:30:00.000Z api[1234] info: text".
 *
 * Each process sets its role name once after fork (log_set_role). Only the
 * layer that decides what to do about an error logs it (STYLE.md habit 5).
 */
#ifndef PROXYSTONE_LOG_H
#define PROXYSTONE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_role(const char *role);
void log_set_level(enum log_level min);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
