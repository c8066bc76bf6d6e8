# Misuse fuzzing for libraries built on threadguard: the Rust kit (kit/, threadguard-fuzzkit) and
# the Go kit (go/fuzzkit), with their worked examples, the README's Counter
# (kit/tests/counter/, fuzz target kit_counter) and the Nim docstore
# (nim/go/docstore/fuzzkit_test.go). Included from the top Makefile, after FUZZ_TARGETS.
#
#   fuzzkit-tests     the Rust kit's tests in release (seed corpus, seeded random programs, the
#                     planted bug), then short go test -fuzz runs of the Go kit's two examples;
#                     go/fuzzkit's and the docstore example's ordinary tests run in test-go and
#                     nim-go-tests
#   fuzzkit-go-fuzz   the Go fuzz targets, FUZZKIT_GO_FUZZTIME each (a count of executions, as
#                     GO_FUZZTIME in the Makefile says why; make fuzz: FUZZ_LONG_SECONDS)
#
# fuzz-smoke and fuzz run the cargo-fuzz target kit_counter with the project's own targets.

FUZZKIT_GO_FUZZTIME ?= 5000x
FUZZ_TARGETS += kit_counter

.PHONY: fuzzkit-tests fuzzkit-go-fuzz

fuzzkit-tests: lib $(NIM_BUILD)/orc/libdocstore.a
	$(CARGO) test --locked --release -p threadguard-fuzzkit
	@$(MAKE) --no-print-directory fuzzkit-go-fuzz

fuzzkit-go-fuzz: lib $(NIM_BUILD)/orc/libdocstore.a
	cd go && $(GO) test -tags $(TG_GO_TAGS) -run '^$$' -fuzz=FuzzAffine -fuzztime=$(FUZZKIT_GO_FUZZTIME) ./fuzzkit
	cd nim/go && $(GO) test -tags nim_orc,$(TG_GO_TAGS) -run '^$$' -fuzz=FuzzMisuseKit -fuzztime=$(FUZZKIT_GO_FUZZTIME) ./docstore

fuzz: fuzzkit-go-fuzz-long

.PHONY: fuzzkit-go-fuzz-long
fuzzkit-go-fuzz-long:
	@$(MAKE) --no-print-directory fuzzkit-go-fuzz FUZZKIT_GO_FUZZTIME=$${FUZZ_LONG_SECONDS:-600}s
