# Proxy Stone — build, test, run.
#
#   make          build bin/proxystone (and tools)
#   make run      install missing packages, build, start the local cluster
#   make test     install missing packages, build, run unit + system tests
#   make bench    benchmarks into BENCHMARKS.md;  make fuzz  libFuzzer targets
#   make install  PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
BINDIR  ?= bin
# SAN=1: AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer).
SAN     ?=
CC      ?= cc
VERSION := 0.1.0

# CFLAGS is the user's (make CFLAGS=-O0 keeps every flag below); the
# language, warning and sanitizer flags the build requires are PS_CFLAGS.
CFLAGS  ?= -O2 -g
PS_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes -fno-strict-aliasing
ifeq ($(SAN),1)
PS_CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
PS_LDFLAGS := -fsanitize=address,undefined
endif
CPPFLAGS += -Iinclude -I$(BUILD)/gen -D_GNU_SOURCE -DPS_VERSION='"$(VERSION)"' -MMD -MP \
            -DPS_UI_DIR='"$(PREFIX)/share/proxystone/ui"'
LDLIBS  += -lev -lprotobuf-c -luuid -lhttp_parser -lsodium -lm

PROTOS    := $(wildcard proto/*.proto)
PROTO_C   := $(PROTOS:%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_H   := $(PROTO_C:.c=.h)
PROTO_OBJ := $(PROTO_C:$(BUILD)/gen/%.c=$(BUILD)/obj/gen/%.o)

MAIN_SRC := src/supervisor/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_OBJ)
LIB      := $(BUILD)/libproxystone.a

DUMP_SRC := $(wildcard tools/dump/*.c)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Helpers shared by tests and benchmarks (e.g. the gossip simulator).
TESTLIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/lib/*.c))

BINS := $(BINDIR)/proxystone $(if $(DUMP_SRC),$(BINDIR)/proxystone-dump)

.PHONY: all deps run test unit system browser sanitize fuzz bench install clean format format-check
all: $(BINS)

deps:
	@./tools/install-deps.sh

# Generated sources are kept, not deleted as intermediates: a second make
# with nothing changed does nothing.
.SECONDARY: $(PROTO_C) $(PROTO_H)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: %.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PS_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PS_CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/proxystone: $(BUILD)/obj/$(MAIN_SRC:.c=.o) $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(LDFLAGS) $(PS_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BINDIR)/proxystone-dump: $(DUMP_SRC:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(LDFLAGS) $(PS_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TESTLIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(PS_LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

run: deps all
	./tools/run-local.sh

# The whole suite twice: a normal build, then the same tests against an
# ASan+UBSan build (sanitizer reports in any process fail the run).
SAN_DIRS := BUILD=build/san BINDIR=build/san/bin SAN=1
test: deps
	$(MAKE) format-check
	$(MAKE) all $(UNIT_BIN)
	$(MAKE) unit system browser
	$(MAKE) $(SAN_DIRS) sanitize
	$(MAKE) fuzz FUZZ_SECONDS=10

sanitize:
	$(MAKE) $(SAN_DIRS) all $(UNIT_BIN:$(BUILD)/%=build/san/%)
	$(MAKE) $(SAN_DIRS) unit
	PS_BIN=$(CURDIR)/build/san/bin/proxystone PS_SANITIZE=1 $(MAKE) $(SAN_DIRS) system

# Every C source and header follows .clang-format (STYLE.md habit 9):
# format-check fails on the first file that does not, format rewrites them.
FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files follow .clang-format"

format:
	clang-format -i $(FORMAT_FILES)

# Speed, footprint and gossip-scale benchmarks; rewrites BENCHMARKS.md.
# Not part of make test (it installs wrk, nginx and gnuplot when missing).
bench: all
	./tests/bench/run

# libFuzzer targets (clang, libclang-rt-14-dev): FUZZ_SECONDS per target,
# then the corpus and every regression file are replayed.
FUZZ_SECONDS ?= 60
fuzz: all
	tests/fuzz/run $(FUZZ_SECONDS)

# LeakSanitizer on; UBSan stops at the first error.
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

system: all
	python3 tests/system/run.py

# The dashboard end to end in Debian's headless Chromium (playwright-core),
# then the link attack of issue 12 against it (security.test.mjs).
browser: all
	cd tests/browser && npm ci --no-audit --no-fund --silent && node dashboard.test.mjs && node security.test.mjs

# Installs what `make` built (it compiles nothing, so `sudo make install`
# never leaves root-owned objects). PREFIX may differ from the build's: the
# binary finds the dashboard at <bin>/../share/proxystone/ui, and the
# systemd unit's ExecStart is rewritten to $(PREFIX)/bin.
install:
	@for b in $(BINS); do [ -x $$b ] || { echo "install: $$b is not built; run make first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/proxystone/etc
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 etc/*.conf $(DESTDIR)$(PREFIX)/share/proxystone/etc/
	sed 's#/usr/local/bin/proxystone#$(PREFIX)/bin/proxystone#' etc/proxystone.service \
		> $(DESTDIR)$(PREFIX)/share/proxystone/etc/proxystone.service
	chmod 0644 $(DESTDIR)$(PREFIX)/share/proxystone/etc/proxystone.service
	install -d $(DESTDIR)$(PREFIX)/share/proxystone/ui
	install -m 0644 src/ui/static/index.html src/ui/static/app.js src/ui/static/style.css \
		src/ui/static/favicon.svg $(DESTDIR)$(PREFIX)/share/proxystone/ui/

clean:
	rm -rf build bin

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
