/*
 * api — the process that serves the HTTP API. It owns no state: every
 * request becomes an ipc.proto request to the membership process, and the
 * reply becomes the spec's JSON. While membership is unreachable it answers
 * 503 MEMBERSHIP_UNAVAILABLE and reconnects by itself.
 */
#ifndef PROXYSTONE_API_H
#define PROXYSTONE_API_H

struct config;

/* Child entry point: runs until SIGTERM; returns the exit status. */
int api_main(const struct config *cfg, int sup_fd);

#endif
