# install/install.mk - `make install` and `make uninstall`: threadguard as an ordinary C library.
#
# A make fragment for the top-level Makefile (`include install/install.mk`). Paths are relative
# to the repository root; the libraries come from `make lib` (the capi/ crate) in $(TG_LIB_DIR).
#
#   make install [PREFIX=/usr/local] [DESTDIR=]   build the release library if its sources
#                                                 changed since `make`, and install:
#       $(INCLUDEDIR)/threadguard.h
#       $(LIBDIR)/libthreadguard.a
#       $(LIBDIR)/libthreadguard.so.<ABI>.<version>, soname libthreadguard.so.<ABI>, with the
#           symlinks libthreadguard.so.<ABI> and libthreadguard.so
#       $(LIBDIR)/pkgconfig/threadguard.pc
#       $(LIBDIR)/cmake/threadguard/threadguardConfig.cmake, threadguardConfigVersion.cmake
#   make uninstall [PREFIX=...] [DESTDIR=...]      remove exactly those files
#
# The layout and names follow cargo-c and the C libraries installed the same way (sqlite,
# libgit2): the soname carries the ABI version (TG_ABI_VERSION, tg_abi_version()), the file
# name adds the package version. The installed libraries are stripped of debug information
# (strip --strip-debug); the ones in $(TG_LIB_DIR) keep it.
#
# Knobs: PREFIX, DESTDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR, CMAKEDIR, INSTALL, STRIP.

PREFIX       ?= /usr/local
DESTDIR      ?=
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR     ?= $(LIBDIR)/cmake/threadguard
INSTALL      ?= install
STRIP        ?= strip

# The ABI version (the soname's number) and the package version, from the source.
TG_ABI      := $(shell sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);.*/\1/p' src/diagnostics.rs)
TG_VERSION  := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
TG_SONAME   := libthreadguard.so.$(TG_ABI)
TG_REALNAME := $(TG_SONAME).$(TG_VERSION)
# What libthreadguard.a needs besides libc: `rustc --print native-static-libs` for the capi
# crate, less -lgcc_s and -lc, which the C compiler driver adds itself (and which would keep
# `cc -static` from linking).
TG_STATIC_LIBS := -lutil -lrt -lpthread -lm -ldl

TG_INSTALLED := $(INCLUDEDIR)/threadguard.h $(LIBDIR)/libthreadguard.a $(LIBDIR)/$(TG_REALNAME) \
	$(LIBDIR)/$(TG_SONAME) $(LIBDIR)/libthreadguard.so $(PKGCONFIGDIR)/threadguard.pc \
	$(CMAKEDIR)/threadguardConfig.cmake $(CMAKEDIR)/threadguardConfigVersion.cmake

# The same for CMake, as a list: Threads::Threads and ${CMAKE_DL_LIBS} stand for -lpthread -ldl.
tg_empty :=
tg_space := $(tg_empty) $(tg_empty)
TG_CMAKE_STATIC_LIBS := $(subst $(tg_space),;,$(strip $(patsubst -l%,%,$(filter-out -lpthread -ldl,$(TG_STATIC_LIBS)))))

# The pkg-config file names directories under the prefix as ${prefix}/..., as cargo-c's do, so
# that pkg-config --define-prefix can move them.
tg_pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

# Paths the CMake package computes from its own location, so an installed tree can be moved.
tg_rel = $(shell realpath -m --relative-to=$(CMAKEDIR) $(1))

.PHONY: install uninstall

# `make install` builds the library only when its sources are newer than the build, so that
# `make && sudo make install` does not need cargo on root's PATH. The soname link that
# `make lib` makes stands for the build (make follows it to libthreadguard.so).
TG_LIB_SOURCES := $(wildcard src/*.rs src/*/*.rs capi/src/*.rs) build.rs capi/build.rs \
	Cargo.toml capi/Cargo.toml Cargo.lock
$(TG_LIB_DIR)/libthreadguard.so.$(TG_ABI): $(TG_LIB_SOURCES)
	$(MAKE) --no-print-directory lib

install: $(TG_LIB_DIR)/libthreadguard.so.$(TG_ABI)
	@test -n "$(TG_ABI)" || { echo "install: no ABI_VERSION in src/diagnostics.rs" >&2; exit 1; }
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	$(INSTALL) -m 644 $(TG_INCLUDE)/threadguard.h $(DESTDIR)$(INCLUDEDIR)/threadguard.h
	$(INSTALL) -m 644 $(TG_LIB_DIR)/libthreadguard.a $(DESTDIR)$(LIBDIR)/libthreadguard.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libthreadguard.a
	$(INSTALL) -m 755 $(TG_LIB_DIR)/libthreadguard.so $(DESTDIR)$(LIBDIR)/$(TG_REALNAME)
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/$(TG_REALNAME)
	ln -sfn $(TG_REALNAME) $(DESTDIR)$(LIBDIR)/$(TG_SONAME)
	ln -sfn $(TG_SONAME) $(DESTDIR)$(LIBDIR)/libthreadguard.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call tg_pc_dir,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call tg_pc_dir,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(TG_VERSION)|g' -e 's|@STATIC_LIBS@|$(TG_STATIC_LIBS)|g' \
	    install/threadguard.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/threadguard.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/threadguard.pc
	sed -e 's|@LIBDIR_REL@|$(call tg_rel,$(LIBDIR))|g' -e 's|@INCLUDEDIR_REL@|$(call tg_rel,$(INCLUDEDIR))|g' \
	    -e 's|@REALNAME@|$(TG_REALNAME)|g' -e 's|@SONAME@|$(TG_SONAME)|g' \
	    -e 's|@STATIC_LIBS@|$(TG_CMAKE_STATIC_LIBS)|g' \
	    install/threadguardConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/threadguardConfig.cmake
	sed -e 's|@VERSION@|$(TG_VERSION)|g' -e "s|@SIZEOF_VOID_P@|$$(( $$(getconf LONG_BIT) / 8 ))|g" \
	    install/threadguardConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/threadguardConfigVersion.cmake
	chmod 644 $(DESTDIR)$(CMAKEDIR)/threadguardConfig.cmake $(DESTDIR)$(CMAKEDIR)/threadguardConfigVersion.cmake
	@echo "install: threadguard $(TG_VERSION) (ABI $(TG_ABI)) installed under $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(addprefix $(DESTDIR),$(TG_INSTALLED))
	-rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null
