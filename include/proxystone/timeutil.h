/*
 * timeutil — the two clocks. Wall-clock milliseconds for what users see
 * (lastSeen, createdAt); monotonic seconds for every timer and timeout, so
 * a wall-clock jump never fakes a failure.
 */
#ifndef PROXYSTONE_TIMEUTIL_H
#define PROXYSTONE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Length of "2024-01-15T10:30:00.000Z" plus NUL. */
#define ISO8601_LEN 25

int64_t time_wall_ms(void);
double time_mono(void);
/* Formats ms since the epoch as ISO-8601 UTC with milliseconds. */
void time_iso8601(int64_t ms, char out[ISO8601_LEN]);

#endif
