#!/bin/sh
# Starts the seed's local cluster in the foreground from the shipped
# configs; Ctrl-C stops every node. State lives under var/ (rm -rf var
# resets it).
set -eu
cd "$(dirname "$0")/.."
BIN=./bin/proxystone
pids=""
stop() {
	trap - INT TERM
	for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
	wait
}
trap stop INT TERM
for conf in ${PS_NODES:-etc/coordinator.conf etc/worker1.conf etc/worker2.conf}; do
	$BIN --config "$conf" &
	pids="$pids $!"
done
echo "proxystone: local cluster starting: coordinator http://127.0.0.1:4401/api, workers :4402 :4403 (Ctrl-C stops)"
wait
