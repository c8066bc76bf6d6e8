# Nim interop: the Nim binding (nim/threadguard.nim), the example library (nim/docstore) and
# their tests, for every Nim memory manager that works with threads.
#
#   make -f nim/nim.mk nim-tests      standalone, from the repository root
#   include nim/nim.mk                from the top Makefile (after its first target)
#
#   nim-lib             build/nim/<mm>/libdocstore.a for each memory manager in NIM_MMS
#   nim-tests           nim-lib, the C test (nim/tests/test_docstore.c) and the Nim binding
#                       test (nim/tests/test_binding.nim) for each memory manager, run; plus a
#                       check that the Nim and Rust static libraries define no symbol twice
#   nim-tests-valgrind  the C test under valgrind, ARC and ORC with -d:useMalloc (refc and
#                       markAndSweep scan the stack conservatively, which memcheck reports)
#   nim-go-tests        the Go binding and its tests (nim/go, a Go module), go vet and
#                       go test -race, for each memory manager in NIM_GO_MMS (build tag nim_<mm>)
#   nim-clean           remove build/nim
#
# Needs Nim 1.6 (Debian: apt-get install -y nim) and libthreadguard.a in TG_LIB_DIR; nim-go-tests
# also needs Go (1.24 or later) and the default NIM_BUILD and TG_LIB_DIR, which nim/go's #cgo
# lines name.

NIM         ?= nim
CC          ?= cc
CARGO       ?= cargo
VALGRIND    ?= valgrind
TG_LIB_DIR  ?= target/release
TG_INCLUDE  ?= include
NIM_BUILD   ?= build/nim
# The memory managers that Nim 1.6 supports with --threads:on and that pass here. (boehm and
# go need external collectors and are not covered.)
NIM_MMS     ?= refc orc arc markAndSweep
NIM_FLAGS   ?= -d:release --panics:on
GO          ?= go
# nim/go uses the Go wrapper in go/, which links this checkout's static library with this tag.
TG_GO_TAGS  ?= threadguard_static
# The memory managers the Go tests run under: the default (orc) and the one that scans stacks.
NIM_GO_MMS  ?= orc refc

NIM_TG_LIB  := $(TG_LIB_DIR)/libthreadguard.a
# No process-wide signal handlers from a library (they would take SIGSEGV from a Go runtime).
NIM_COMMON  := --threads:on -d:noSignalHandler --hints:off \
               -d:threadguardInclude=$(abspath $(TG_INCLUDE))
NIM_LDLIBS  := -lpthread -ldl -lm
NIM_CFLAGS  := -std=c99 -Wall -Wextra -Werror -pedantic -O2 -g
NIM_LIB_SRC := nim/threadguard.nim nim/docstore/docstore.nim nim/docstore/docstore.h \
               $(TG_INCLUDE)/threadguard.h
NIM_APT     := apt-get update && apt-get install -y nim

NIM_LIBS          := $(foreach mm,$(NIM_MMS),$(NIM_BUILD)/$(mm)/libdocstore.a)
NIM_C_TESTS       := $(foreach mm,$(NIM_MMS),$(NIM_BUILD)/$(mm)/test_docstore)
NIM_BINDING_TESTS := $(foreach mm,$(NIM_MMS),$(NIM_BUILD)/$(mm)/test_binding)
NIM_VALGRIND_MMS  := orc arc

.PHONY: nim-tests nim-lib nim-tests-valgrind nim-go-tests nim-check nim-symbols-check nim-clean
.SECONDARY: $(NIM_LIBS) $(foreach mm,$(NIM_VALGRIND_MMS),$(NIM_BUILD)/malloc-$(mm)/libdocstore.a)

nim-tests: nim-lib nim-symbols-check $(NIM_C_TESTS) $(NIM_BINDING_TESTS)
	@set -e; for mm in $(NIM_MMS); do \
	    echo "nim-tests: $$mm: test_docstore (C)"; $(NIM_BUILD)/$$mm/test_docstore; \
	    echo "nim-tests: $$mm: test_binding (Nim)"; $(NIM_BUILD)/$$mm/test_binding; \
	done
	@echo "nim-tests: passed for $(NIM_MMS)"

nim-lib: $(NIM_LIBS)

nim-check:
	@command -v $(NIM) >/dev/null 2>&1 || { \
	    echo "nim-check: '$(NIM)' not found; the Nim interop needs Nim 1.6." >&2; \
	    echo "nim-check: on Debian or Ubuntu, as root: $(NIM_APT)" >&2; \
	    exit 1; }
	@$(NIM) --version 2>/dev/null | head -n 1 | grep -q ' Version 1\.6\.' || \
	    echo "nim-check: warning: tested with Nim 1.6; found: $$($(NIM) --version 2>/dev/null | head -n 1)" >&2

# When this file is used on its own, build the Rust library it links against.
ifeq ($(origin STATIC_LIB),undefined)
$(NIM_TG_LIB):
	$(CARGO) build --release --locked -p threadguard-capi
endif

# Nim writes its warnings to the log; any warning fails the build.
define nim_compile
	@mkdir -p $(@D)
	@$(NIM) c $(NIM_COMMON) $(NIM_FLAGS) $(1) --nimcache:$(@D)/cache-$(notdir $@) -o:$@ $(2) \
	    > $@.log 2>&1 || { cat $@.log; exit 1; }
	@if grep 'Warning:' $@.log; then echo "$@: Nim warnings (see above)"; rm -f $@; exit 1; fi
	@echo "nim: built $@"
endef

$(NIM_BUILD)/malloc-%/libdocstore.a: $(NIM_LIB_SRC) | nim-check
	$(call nim_compile,--app:staticlib --noMain:on --gc:$* -d:useMalloc,nim/docstore/docstore.nim)

$(NIM_BUILD)/%/libdocstore.a: $(NIM_LIB_SRC) | nim-check
	$(call nim_compile,--app:staticlib --noMain:on --gc:$*,nim/docstore/docstore.nim)

$(NIM_BUILD)/%/test_docstore: nim/tests/test_docstore.c $(NIM_BUILD)/%/libdocstore.a $(NIM_TG_LIB)
	$(CC) $(NIM_CFLAGS) -I$(TG_INCLUDE) -Inim/docstore -o $@ $< \
	    $(NIM_BUILD)/$*/libdocstore.a $(NIM_TG_LIB) $(NIM_LDLIBS)

$(NIM_BUILD)/%/test_binding: nim/tests/test_binding.nim nim/threadguard.nim \
                             $(TG_INCLUDE)/threadguard.h $(NIM_TG_LIB) | nim-check
	$(call nim_compile,--gc:$* --passL:$(NIM_TG_LIB) $(addprefix --passL:,$(NIM_LDLIBS)),nim/tests/test_binding.nim)

# A Nim static library carries the whole Nim runtime, with unprefixed global names (main when
# built without --noMain, NimMain, cmdLine, dealloc, ...). None may collide with the Rust one.
nim-symbols-check: $(NIM_LIBS) $(NIM_TG_LIB)
	@nm -g --defined-only $(NIM_TG_LIB) 2>/dev/null | awk 'NF == 3 { print $$3 }' | sort -u \
	    > $(NIM_BUILD)/threadguard.symbols
	@set -e; for lib in $(NIM_LIBS); do \
	    nm -g --defined-only $$lib 2>/dev/null | awk 'NF == 3 { print $$3 }' | sort -u > $$lib.symbols; \
	    if nm -g --defined-only $$lib 2>/dev/null | awk 'NF == 3 { print $$3 }' | grep -qx main; then \
	        echo "nim-symbols-check: $$lib defines main (build it with --noMain:on)"; exit 1; fi; \
	    dup=$$(comm -12 $(NIM_BUILD)/threadguard.symbols $$lib.symbols); \
	    if [ -n "$$dup" ]; then echo "nim-symbols-check: defined in both $$lib and $(NIM_TG_LIB):"; \
	        echo "$$dup"; exit 1; fi; \
	done
	@echo "nim-symbols-check: no symbol is defined by both a Nim library and $(NIM_TG_LIB)"

nim-tests-valgrind: $(foreach mm,$(NIM_VALGRIND_MMS),$(NIM_BUILD)/malloc-$(mm)/test_docstore)
	@command -v $(VALGRIND) >/dev/null 2>&1 || { echo "nim-tests-valgrind: $(VALGRIND) not found" >&2; exit 1; }
	@set -e; for mm in $(NIM_VALGRIND_MMS); do \
	    echo "nim-tests-valgrind: $$mm -d:useMalloc"; \
	    $(VALGRIND) -q --error-exitcode=99 --leak-check=full \
	        --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	        $(NIM_BUILD)/malloc-$$mm/test_docstore; \
	done

# The Go module links $(NIM_BUILD)/<mm>/libdocstore.a and libthreadguard.a by fixed relative paths
# (nim/go/docstore/link_*.go), chosen by the build tag nim_<mm>.
nim-go-tests: nim-lib $(foreach mm,$(NIM_GO_MMS),$(NIM_BUILD)/$(mm)/libdocstore.a) $(NIM_TG_LIB)
	@if [ "$(NIM_BUILD)" != build/nim ] || [ "$(TG_LIB_DIR)" != target/release ]; then \
	    echo "nim-go-tests: nim/go links build/nim and target/release; NIM_BUILD and TG_LIB_DIR must be the defaults" >&2; \
	    exit 1; fi
	@unformatted="$$(cd nim/go && gofmt -l .)"; if [ -n "$$unformatted" ]; then \
	    echo "nim-go-tests: gofmt needed: $$unformatted"; exit 1; fi
	@set -e; for mm in $(NIM_GO_MMS); do \
	    echo "nim-go-tests: $$mm (-tags nim_$$mm,$(TG_GO_TAGS))"; \
	    (cd nim/go && $(GO) vet -tags nim_$$mm,$(TG_GO_TAGS) ./... && $(GO) test -race -count=1 -tags nim_$$mm,$(TG_GO_TAGS) ./...); \
	done
	@echo "nim-go-tests: passed for $(NIM_GO_MMS)"

nim-clean:
	rm -rf $(NIM_BUILD)
