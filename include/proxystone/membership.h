/*
 * membership — the process that owns all cluster state: the registry, the
 * node's identity, the serving mode, their persistence, and (with gossip)
 * the member table. It serves ipc.proto requests on cfg->socket_path.
 */
#ifndef PROXYSTONE_MEMBERSHIP_H
#define PROXYSTONE_MEMBERSHIP_H

struct config;

/* Child entry point: runs until SIGTERM; returns the exit status. sup_fd is
 * the supervision pipe (readiness + keepalive), -1 when run standalone. */
int membership_main(const struct config *cfg, int sup_fd);

#endif
