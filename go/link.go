//go:build !threadguard_static && !threadguard_external

package threadguard

// The installed library, found by pkg-config: its header and -lthreadguard
// (see "Building" in the package doc). Without it, cgo stops with
// pkg-config's error that package threadguard was not found, suggesting to
// add the directory containing threadguard.pc to PKG_CONFIG_PATH: install
// threadguard (make install in its repository), or set PKG_CONFIG_PATH to
// the lib/pkgconfig directory of its prefix.

// #cgo pkg-config: threadguard
import "C"
