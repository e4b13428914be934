/* log — timestamped lines on stderr; see include/proxystone/log.h. */
#include "proxystone/log.h"
#include "proxystone/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Longest log line; longer messages are cut, marked with "...". */
#define LOG_LINE_MAX 1024

static const char *log_role = "proxystone";
static enum log_level log_min = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_role(const char *role)
{
	log_role = role;
}

void log_set_level(enum log_level min)
{
	log_min = min;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < log_min)
		return;
	char line[LOG_LINE_MAX];
	char ts[ISO8601_LEN];
	time_iso8601(time_wall_ms(), ts);
	int n = snprintf(line, sizeof(line), "%s %s[%d] %s: ", ts, log_role,
			 (int)getpid(), level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	size_t room = sizeof(line) - 1; /* one byte kept for the newline */
	size_t len = (size_t)n + (size_t)(m < 0 ? 0 : m);
	if (len >= room) {
		len = room;
		memcpy(line + len - 3, "...", 3);
	}
	line[len++] = '\n';
	/* One write() per line so lines from the three processes never
	 * interleave. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

bool log_limited(struct log_limit *l, double now, double interval,
		 uint64_t *held)
{
	if (now < l->next) {
		l->held++;
		return false;
	}
	*held = l->held;
	l->held = 0;
	l->next = now + interval;
	return true;
}
