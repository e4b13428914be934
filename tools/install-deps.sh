#!/bin/sh
# Install the Debian packages Proxy Stone needs, only those that are missing.
# Called by `make run`, `make test` and .ci/run, so a fresh Debian machine
# needs nothing else. Uses sudo when not root.
set -eu

# Build and runtime libraries, the protobuf compiler, unit-test framework,
# and what the system tests drive the binary with.
PKGS="build-essential pkg-config libev-dev libprotobuf-c-dev protobuf-c-compiler \
libjsmn-dev uuid-dev libhttp-parser-dev libcmocka-dev libsodium-dev python3 curl procps \
iproute2 nftables"

# The dashboard's end-to-end test: Debian's Chromium, driven by
# playwright-core from npm (installed by `make browser` with npm ci).
PKGS="$PKGS chromium"
# libFuzzer targets (make fuzz; a 10 s smoke run is part of make test).
PKGS="$PKGS clang libclang-rt-14-dev"
# make format-check (part of make test): the tree follows .clang-format.
PKGS="$PKGS clang-format"
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

[ -n "${EXTRA_PKGS:-}" ] && PKGS="$PKGS $EXTRA_PKGS"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
