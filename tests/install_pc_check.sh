#!/usr/bin/env bash
# The installed berth.pc finds the header and the library wherever the prefix
# lands: `cmake --install` of the build tree into a scratch prefix, which is
# then moved, and whatever CMAKE_INSTALL_LIBDIR the build was configured with
# (lib, lib64, lib/x86_64-linux-gnu: the .pc file's way up to the prefix
# depends on it). Usage: install_pc_check.sh <build dir> <scratch dir>
set -euo pipefail
build=$1 scratch=$2
rm -rf "$scratch" && mkdir -p "$scratch"
cmake --install "$build" --prefix "$scratch/installed" >/dev/null
mv "$scratch/installed" "$scratch/moved"
pc=$(find "$scratch/moved" -name berth.pc)
[ -n "$pc" ] || { echo "no berth.pc under the prefix" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
prefix=$(pkg-config --variable=prefix berth)
libdir=$(pkg-config --variable=libdir berth)
includedir=$(pkg-config --variable=includedir berth)
fail=0
[ "$(realpath "$prefix")" = "$(realpath "$scratch/moved")" ] ||
  { echo "berth.pc: prefix $prefix is not the prefix $scratch/moved" >&2; fail=1; }
[ -f "$includedir/berth.h" ] || { echo "berth.pc: no berth.h in includedir $includedir" >&2; fail=1; }
[ -e "$libdir/libberth.so" ] || { echo "berth.pc: no libberth.so in libdir $libdir" >&2; fail=1; }
exit "$fail"
