/* node_schema — node record bounds and names; see
 * include/proxystone/node_schema.h. */
#include "proxystone/node_schema.h"

#include <errno.h>
#include <string.h>

static const char *const status_names[] = {
    [PS__NODE_STATUS__NODE_ACTIVE] = "active",
    [PS__NODE_STATUS__NODE_SUSPECT] = "suspect",
    [PS__NODE_STATUS__NODE_INACTIVE] = "inactive",
    [PS__NODE_STATUS__NODE_DISABLED] = "disabled",
    [PS__NODE_STATUS__NODE_LEFT] = "left",
};

const char *node_status_name(Ps__NodeStatus s)
{
	if ((unsigned)s < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[s];
	return "unknown";
}

int node_status_parse(const char *name, Ps__NodeStatus *out)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]);
	     i++) {
		if (!strcmp(name, status_names[i])) {
			*out = (Ps__NodeStatus)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool node_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > NODE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = id[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == ':' || ch == '-'))
			return false;
	}
	return true;
}
