# tests/c/c-tests.mk - C consumer tests and the C demo for threadguard.
#
# A make fragment for the top-level Makefile:
#
#     include tests/c/c-tests.mk
#
# Paths are relative to the repository root. The library must already be built,
# static and shared, in $(TG_LIB_DIR) (cargo build --release), and the header
# must exist in $(TG_INCLUDE). Everything is built under $(TG_C_BUILD).
#
# Targets:
#   c-tests           build every test program in 4 variants (C static, C shared,
#                     C++ static, C++ shared), and the C++-only tests (throwing
#                     callbacks) static and shared, and run them all; fails on any
#                     failure
#   c-tests-build     only build those 4 variants
#   c-tests-valgrind  run the C static variants under valgrind (memcheck)
#   c-tests-asan      build the tests with ASan + UBSan (the C code only: the Rust
#                     library is not instrumented) and run them
#   c-demo            build the C demo (C, static link) and run it
#   c-tests-clean     remove $(TG_C_BUILD)
#
# Knobs: TG_LIB_DIR, TG_INCLUDE, TG_C_BUILD, TG_CC, TG_CXX, TG_VALGRIND,
# TG_NATIVE_LIBS (system libraries the Rust static library needs),
# TG_TEST_SEED / TG_TEST_ITERATIONS (environment, read by the tests).

TG_LIB_DIR ?= target/release
TG_INCLUDE ?= include
TG_C_BUILD ?= build/c-tests
TG_CC ?= cc
TG_CXX ?= c++
TG_VALGRIND ?= valgrind
TG_NATIVE_LIBS ?= -lpthread -ldl -lm

TG_C_DIR := tests/c
TG_C_TESTS := test_api test_threads test_forged test_runner test_late_exit test_fork test_transfer test_sites test_copies
# C++ only (tests/c/*.cpp): callbacks that throw.
TG_CXX_TESTS := test_unwind
TG_C_DEPS := $(TG_C_DIR)/tg_test.h $(TG_INCLUDE)/threadguard.h
TG_C_LIB_A := $(TG_LIB_DIR)/libthreadguard.a
TG_C_LIB_SO := $(TG_LIB_DIR)/libthreadguard.so

# The version the tests expect from tg_version(): the package version in Cargo.toml.
TG_C_VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml 2>/dev/null | head -n 1)
TG_C_VERSION_DEF := $(if $(TG_C_VERSION),-DTG_EXPECTED_VERSION='"$(TG_C_VERSION)"')

TG_C_WARN := -Wall -Wextra -Werror -pedantic
# test_copies loads a second copy of the library from this file.
TG_C_SO_DEF := -DTG_SHARED_LIBRARY='"$(abspath $(TG_C_LIB_SO))"'
TG_C_COMMON := $(TG_C_WARN) -O1 -g -I$(TG_INCLUDE) -I$(TG_C_DIR) $(TG_C_VERSION_DEF) $(TG_C_SO_DEF)
TG_C_CFLAGS := -std=c99 $(TG_C_COMMON)
TG_C_CXXFLAGS := -x c++ -std=c++17 $(TG_C_COMMON)
TG_CXX_ONLY_FLAGS := -std=c++17 $(TG_C_COMMON)
TG_C_SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TG_C_LINK_STATIC := $(TG_C_LIB_A) $(TG_NATIVE_LIBS)
TG_C_LINK_SHARED := -L$(TG_LIB_DIR) -lthreadguard -Wl,-rpath,$(abspath $(TG_LIB_DIR)) $(TG_NATIVE_LIBS)

TG_C_BIN_C_STATIC := $(TG_C_TESTS:%=$(TG_C_BUILD)/c-static/%)
TG_C_BIN_C_SHARED := $(TG_C_TESTS:%=$(TG_C_BUILD)/c-shared/%)
TG_C_BIN_CXX_STATIC := $(TG_C_TESTS:%=$(TG_C_BUILD)/cxx-static/%)
TG_C_BIN_CXX_SHARED := $(TG_C_TESTS:%=$(TG_C_BUILD)/cxx-shared/%)
TG_C_BIN_ASAN := $(TG_C_TESTS:%=$(TG_C_BUILD)/asan/%)
TG_CXX_BIN_STATIC := $(TG_CXX_TESTS:%=$(TG_C_BUILD)/cxx-static/%)
TG_CXX_BIN_SHARED := $(TG_CXX_TESTS:%=$(TG_C_BUILD)/cxx-shared/%)
TG_C_BIN_ALL := $(TG_C_BIN_C_STATIC) $(TG_C_BIN_C_SHARED) $(TG_C_BIN_CXX_STATIC) $(TG_C_BIN_CXX_SHARED) \
	$(TG_CXX_BIN_STATIC) $(TG_CXX_BIN_SHARED)
TG_C_DEMO := $(TG_C_BUILD)/demo/demo

# Valgrind: every memcheck error and every definite leak fails the run. A few
# blocks live for the whole process by design (Rust's handle for the main thread,
# kept in thread-local storage whose destructors never run at exit; the table of
# the live-thread registry) and show up as "possibly lost" or "still reachable";
# those are not errors with these flags, and the two "possibly lost" ones are
# suppressed by name in tests/c/valgrind.supp (see the reasons there) so that any
# other one stands out. The forked child of the ABORT-policy test dies of SIGABRT
# by design; its report is silenced. The forked child of test_fork reports its
# results through a pipe and ends with SIGKILL, so no leak check runs over the
# objects of the parent's other threads, which the child never destroys by design.
TG_C_VALGRIND_FLAGS ?= --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	--child-silent-after-fork=yes --suppressions=$(TG_C_DIR)/valgrind.supp
# ASan: leak detection stays on; UBSan stops at the first finding.
TG_C_ASAN_ENV ?= ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Runs each program given in $(1) with the command prefix $(2), logging to
# <program>.$(3).log; prints one summary line per program and the whole log of a
# failing one, and fails if any failed.
define tg_c_run
	@fail=0; for t in $(1); do \
	    log=$$t.$(3).log; \
	    if $(2) ./$$t > $$log 2>&1; then \
	        echo "ok   $$t ($(3)): $$(grep -E '^[0-9]+ passed, [0-9]+ failed$$' $$log | tail -n 1)"; \
	    else \
	        echo "FAIL $$t ($(3)), log in $$log:"; cat $$log; fail=1; \
	    fi; \
	done; exit $$fail
endef

.PHONY: c-tests c-tests-build c-tests-valgrind c-tests-asan c-demo c-tests-clean

c-tests: $(TG_C_BIN_ALL)
	$(call tg_c_run,$(TG_C_BIN_ALL),,run)

c-tests-build: $(TG_C_BIN_ALL)

c-tests-valgrind: $(TG_C_BIN_C_STATIC)
	$(call tg_c_run,$(TG_C_BIN_C_STATIC),$(TG_VALGRIND) $(TG_C_VALGRIND_FLAGS),valgrind)

c-tests-asan: $(TG_C_BIN_ASAN)
	$(call tg_c_run,$(TG_C_BIN_ASAN),$(TG_C_ASAN_ENV),asan)

c-demo: $(TG_C_DEMO)
	./$(TG_C_DEMO)

c-tests-clean:
	rm -rf $(TG_C_BUILD)

# Both library files come out of the same cargo build: order the shared one after
# the static one, so a rule the including Makefile has for the latter covers both.
$(TG_C_LIB_SO): $(TG_C_LIB_A)

$(TG_C_BIN_C_STATIC): $(TG_C_BUILD)/c-static/%: $(TG_C_DIR)/%.c $(TG_C_DEPS) $(TG_C_LIB_A)
	@mkdir -p $(@D)
	$(TG_CC) $(TG_C_CFLAGS) $< $(TG_C_LINK_STATIC) -o $@

$(TG_C_BIN_C_SHARED): $(TG_C_BUILD)/c-shared/%: $(TG_C_DIR)/%.c $(TG_C_DEPS) $(TG_C_LIB_SO)
	@mkdir -p $(@D)
	$(TG_CC) $(TG_C_CFLAGS) $< $(TG_C_LINK_SHARED) -o $@

$(TG_C_BIN_CXX_STATIC): $(TG_C_BUILD)/cxx-static/%: $(TG_C_DIR)/%.c $(TG_C_DEPS) $(TG_C_LIB_A)
	@mkdir -p $(@D)
	$(TG_CXX) $(TG_C_CXXFLAGS) $< -x none $(TG_C_LINK_STATIC) -o $@

$(TG_C_BIN_CXX_SHARED): $(TG_C_BUILD)/cxx-shared/%: $(TG_C_DIR)/%.c $(TG_C_DEPS) $(TG_C_LIB_SO)
	@mkdir -p $(@D)
	$(TG_CXX) $(TG_C_CXXFLAGS) $< -x none $(TG_C_LINK_SHARED) -o $@

$(TG_CXX_BIN_STATIC): $(TG_C_BUILD)/cxx-static/%: $(TG_C_DIR)/%.cpp $(TG_C_DEPS) $(TG_C_LIB_A)
	@mkdir -p $(@D)
	$(TG_CXX) $(TG_CXX_ONLY_FLAGS) $< $(TG_C_LINK_STATIC) -o $@

$(TG_CXX_BIN_SHARED): $(TG_C_BUILD)/cxx-shared/%: $(TG_C_DIR)/%.cpp $(TG_C_DEPS) $(TG_C_LIB_SO)
	@mkdir -p $(@D)
	$(TG_CXX) $(TG_CXX_ONLY_FLAGS) $< $(TG_C_LINK_SHARED) -o $@

$(TG_C_BIN_ASAN): $(TG_C_BUILD)/asan/%: $(TG_C_DIR)/%.c $(TG_C_DEPS) $(TG_C_LIB_A)
	@mkdir -p $(@D)
	$(TG_CC) $(TG_C_CFLAGS) $(TG_C_SANITIZE) $< $(TG_C_LINK_STATIC) -o $@

$(TG_C_DEMO): demo/c/demo.c $(TG_INCLUDE)/threadguard.h $(TG_C_LIB_A)
	@mkdir -p $(@D)
	$(TG_CC) -std=c99 $(TG_C_WARN) -O1 -g -I$(TG_INCLUDE) $< $(TG_C_LINK_STATIC) -o $@
