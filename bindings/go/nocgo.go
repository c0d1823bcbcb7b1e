//go:build !cgo

package berth

// The binding is cgo over libberth (capi/berth.h): without cgo there is
// nothing to build. This file exists so that CGO_ENABLED=0 (or a cross build
// with no C compiler, where cgo is off by default) fails with one error that
// names the cause, instead of "undefined: Key" and the like from the files
// that are built without cgo. Build with CGO_ENABLED=1, a C compiler, and an
// installed Berth that pkg-config finds (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig).
var _ = berth_Go_binding_requires_cgo__set_CGO_ENABLED_1_with_a_C_compiler_and_libberth_via_pkg_config
