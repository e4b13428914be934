/* node_meta — a node's self-description for gossip; see
 * include/proxystone/node_meta.h. */
#include "proxystone/node_meta.h"
#include "proxystone/json.h"
#include "proxystone/swim_proto.h"
#include "proxystone/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int node_meta_pack(Ps__NodeMeta *m, uint8_t *out, size_t cap, size_t *len)
{
	if (cap > SWIM_META_MAX)
		cap = SWIM_META_MAX;
	size_t n = ps__node_meta__get_packed_size(m);
	if (n > cap) {
		m->platform = NULL;
		m->version = NULL;
		m->has_start_time_ms = false;
		n = ps__node_meta__get_packed_size(m);
	}
	if (n > cap)
		return -EMSGSIZE;
	*len = ps__node_meta__pack(m, out);
	return 0;
}

static double round3(double v)
{
	return (double)(long long)(v * 1000.0 + (v >= 0 ? 0.5 : -0.5)) / 1000.0;
}

int node_meta_to_json(const Ps__NodeMeta *m, struct buf *out)
{
	struct json_writer w;
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "autoRegistered");
	jw_bool(&w, true);
	if (m->version) {
		jw_key(&w, "nodeVersion");
		jw_string(&w, m->version);
	}
	if (m->platform) {
		jw_key(&w, "platform");
		jw_string(&w, m->platform);
	}
	if (m->has_start_time_ms) {
		char ts[ISO8601_LEN];
		time_iso8601(m->start_time_ms, ts);
		jw_key(&w, "startTime");
		jw_string(&w, ts);
	}
	if (m->has_load && m->load >= 0) {
		jw_key(&w, "load");
		jw_double(&w, round3(m->load));
	}
	if (m->has_memory && m->memory >= 0) {
		jw_key(&w, "memory");
		jw_double(&w, round3(m->memory));
	}
	if (m->has_connections) {
		jw_key(&w, "connections");
		jw_int(&w, m->connections);
	}
	jw_key(&w, "serving");
	jw_bool(&w, !m->has_serving || m->serving);
	jw_object_end(&w);
	return jw_finish(&w);
}

void node_meta_sample(double *load, double *memory)
{
	double avg[1];
	*load = getloadavg(avg, 1) == 1 ? avg[0] : -1;
	*memory = -1;
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return;
	char line[128];
	double total = 0, avail = -1;
	while (fgets(line, sizeof(line), f)) {
		double v;
		if (sscanf(line, "MemTotal: %lf", &v) == 1)
			total = v;
		else if (sscanf(line, "MemAvailable: %lf", &v) == 1)
			avail = v;
	}
	fclose(f);
	if (total > 0 && avail >= 0)
		*memory = (total - avail) / total;
}
