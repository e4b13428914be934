# tests/fuzz/fuzz.mk — builds the libFuzzer targets; run by tests/fuzz/run
# (make -f tests/fuzz/fuzz.mk from the repository root).
#
# Every source of src/ (but main.c) and the generated protobuf-c code is
# compiled once with the fuzzing flags into build/fuzz/libproxystone.a; each
# target links it, so the linker takes exactly the modules the target
# reaches, and a module split in src/ needs no change here.

FUZZ_CC  ?= clang
FUZZ_OUT ?= build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS   := -g -O1 -std=gnu11 $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	    -fno-omit-frame-pointer -Wall -Wextra
CPPFLAGS := -Iinclude -Ibuild/gen -Itests/fuzz -D_GNU_SOURCE \
	    -DPS_VERSION='"fuzz"' -DPS_UI_DIR='"/nonexistent"' -MMD -MP
LDLIBS   := -lev -lprotobuf-c -luuid -lhttp_parser -lsodium -lm

SRC     := $(filter-out src/supervisor/main.c,$(wildcard src/*/*.c))
PROTO_C := $(patsubst proto/%.proto,build/gen/proto/%.pb-c.c,\
		       $(wildcard proto/*.proto))
OBJ     := $(SRC:%.c=$(FUZZ_OUT)/obj/%.o) \
	   $(PROTO_C:build/gen/%.c=$(FUZZ_OUT)/obj/gen/%.o)
LIB     := $(FUZZ_OUT)/libproxystone.a
TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ_OUT)/%,\
		       $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all
all: $(TARGETS)

$(FUZZ_OUT)/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(FUZZ_OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_OUT)/fuzz_%: $(FUZZ_OUT)/obj/tests/fuzz/fuzz_%.o $(LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# The seed generator is an ordinary program (its own main, no libFuzzer).
$(FUZZ_OUT)/gen_seeds: $(FUZZ_OUT)/obj/tests/fuzz/gen_seeds.o $(LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

-include $(shell find $(FUZZ_OUT)/obj -name '*.d' 2>/dev/null)
