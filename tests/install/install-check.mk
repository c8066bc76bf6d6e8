# tests/install/install-check.mk - `make install-check` (part of `make test`): install into a
# temporary prefix and build C (pkg-config, shared and static), CMake, Go and the one-copy
# example from directories outside the repository (tests/install/check.sh says what each step
# checks). Needs cmake and pkg-config (.ci/run installs them).

.PHONY: install-check

install-check: lib
	MAKE="$(MAKE)" CARGO="$(CARGO)" GO="$(GO)" tests/install/check.sh
