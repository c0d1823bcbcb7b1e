# Shared by the scripts: install what a fresh machine lacks (idempotent, and
# quick when everything is there), then build. Source it; do not run it.
set -euo pipefail
shopt -s inherit_errexit
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(libflatbuffers-dev flatbuffers-compiler libconcurrentqueue-dev
              libgtest-dev cmake ninja-build pkgconf clang libclang-rt-14-dev abigail-tools)
# mimalloc is compiled into libberth from Debian's source package (the binary
# package is the overriding build, which would change the host's allocator).
MIMALLOC_DEB_VERSION=2.0.9+ds-2
MIMALLOC_ORIG=mimalloc_2.0.9+ds.orig.tar.xz
MIMALLOC_ORIG_SHA256=cbc9d207ff105ad1f0cb739c378076143a6452b8d0624309cea0abfb040e972b
# mypy is pinned: stubtest's checks change between releases.
PIP_PACKAGES=(pybind11 scikit-build-core pytest anyio mypy==2.4.1)

# The scripts install into this interpreter on purpose (CI runs as root on a
# throwaway machine): pip's running-as-root warning is noise in every log.
export PIP_ROOT_USER_ACTION=ignore

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_pip() {
  if ! python3 -c 'import pybind11, scikit_build_core, pytest, anyio, mypy.version as m
assert m.__version__ == "2.4.1"' 2>/dev/null; then
    log "pip install ${PIP_PACKAGES[*]}"
    python3 -m pip install -q "${PIP_PACKAGES[@]}"
  fi
}

ensure_go_modules() {
  local m
  for m in bindings/go examples/go tests/k8sref tests/gomodzip; do
    (cd "$m" && go mod download)
  done
}

# third_party/mimalloc: the upstream tarball of Debian's source package,
# checked against the hash above. apt needs a deb-src entry for it: one is
# added beside the machine's deb entries if none exists. Several scripts may
# start together on a fresh clone (scripts/test and scripts/bench): the
# first fetches under a lock, the others wait and find the tree; each
# unpacks into a directory of its own, moved into place only when complete.
# (A subshell: the lock goes with it, whichever way it returns.)
ensure_mimalloc_source() (
  local dir="$ROOT/third_party/mimalloc"
  [ -f "$dir/src/static.c" ] && return 0
  mkdir -p "$ROOT/third_party"
  exec 8>"$ROOT/third_party/.mimalloc.lock"
  flock 8
  [ -f "$dir/src/static.c" ] && return 0
  log "mimalloc $MIMALLOC_DEB_VERSION source (apt-get source) into third_party/mimalloc"
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
        as_root tee /etc/apt/sources.list.d/berth-deb-src.sources >/dev/null
    else
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
        as_root tee /etc/apt/sources.list.d/berth-deb-src.list >/dev/null
    fi
    as_root apt-get update -qq
  fi
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get source -qq --download-only "mimalloc=$MIMALLOC_DEB_VERSION" >/dev/null 2>&1) || {
    echo "apt-get source mimalloc=$MIMALLOC_DEB_VERSION failed; unpack mimalloc 2.0.9's source into $dir by hand" >&2
    rm -rf "$tmp"; return 1; }
  echo "$MIMALLOC_ORIG_SHA256  $tmp/$MIMALLOC_ORIG" | sha256sum -c --quiet - || {
    echo "$MIMALLOC_ORIG from apt-get source does not have the sha256 scripts/lib.sh expects" \
         "($MIMALLOC_ORIG_SHA256); third_party/mimalloc left as it was" >&2
    rm -rf "$tmp"; return 1; }
  local partial
  partial=$(mktemp -d "$dir.partial.XXXXXX")
  tar -xJf "$tmp/$MIMALLOC_ORIG" -C "$partial" --strip-components=1 || { rm -rf "$tmp" "$partial"; return 1; }
  chmod 755 "$partial"
  rm -rf "$tmp" "$dir" && mv "$partial" "$dir"
)

ensure_deps() {
  ensure_apt
  ensure_mimalloc_source
  ensure_pip
  ensure_go_modules
}

# The C++ tree: core, libberth.so (build/lib, where the Go binding links it),
# tests, benchmarks, demo.
build_cpp() {
  log "build C++ (Release) in build/"
  "$ROOT/scripts/build" >/dev/null
}

# Berth as a user outside this repository takes it: `cmake --install` of build/
# into build/prefix, then examples/c built against that prefix with
# pkg-config (cc, shared), and as a CMake project with find_package(Berth)
# (Berth::berth and Berth::berth_static). Sets BERTH_PREFIX to the prefix.
install_check() {
  local prefix="$ROOT/build/prefix" out="$ROOT/build/consumer" pcdir
  log "cmake --install build --prefix build/prefix; examples/c against it"
  rm -rf "$prefix" "$out" && mkdir -p "$out"
  cmake --install build --prefix "$prefix" >/dev/null
  pcdir=$(dirname "$(find "$prefix" -name berth.pc)")
  local version
  version=$(PKG_CONFIG_PATH="$pcdir" pkg-config --modversion berth)
  [ "$version" = "$(berth_version)" ] || { echo "berth.pc says $version, berth.h $(berth_version)" >&2; return 1; }
  # shellcheck disable=SC2046
  cc -std=c99 -Wall -Wextra -Werror -o "$out/pool_example" examples/c/pool_example.c \
    $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs berth)
  LD_LIBRARY_PATH="$pcdir/.." "$out/pool_example" >/dev/null
  cmake -S examples/c -B "$out/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$out/cmake" >/dev/null
  "$out/cmake/pool_example" >/dev/null
  "$out/cmake/pool_example_static" >/dev/null
  # libberth.a defines nothing global but berth_* (and libstdc++'s weak
  # template instances): the core and mimalloc are local to it.
  local leaked
  leaked=$(nm -g --defined-only "$pcdir/../libberth.a" | awk '$2 ~ /^[TDBR]$/ && $3 !~ /^berth_/')
  [ -z "$leaked" ] || { echo "libberth.a exports more than berth_*:"; echo "$leaked"; return 1; } >&2
  if readelf -d "$out/cmake/pool_example_static" | grep -q 'NEEDED.*libberth'; then
    echo "pool_example_static needs libberth.so" >&2; return 1
  fi
  BERTH_PREFIX="$prefix"
}

# The one version: the BERTH_ABI_VERSION_* macros of capi/berth.h.
berth_version() {
  local h="$ROOT/capi/berth.h" part v=()
  for part in MAJOR MINOR PATCH; do
    v+=("$(sed -n "s/^#define BERTH_ABI_VERSION_$part \([0-9][0-9]*\).*/\1/p" "$h")")
    [ -n "${v[-1]}" ] || { echo "BERTH_ABI_VERSION_$part not found in $h" >&2; return 1; }
  done
  echo "${v[0]}.${v[1]}.${v[2]}"
}

# A GoogleTest build under sanitizers in build-<name>/ (system allocator, so
# the sanitizer sees every allocation), run with ctest.
sanitizer_suite() {
  local name=$1 flags=$2
  log "GoogleTest under $name"
  if [ ! -f "build-$name/build.ninja" ]; then
    cmake -S . -B "build-$name" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBERTH_SYSTEM_ALLOCATOR=ON -DBERTH_BENCH=OFF -DBERTH_EXAMPLES=OFF \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
  fi
  cmake --build "build-$name" >/dev/null
  ctest --test-dir "build-$name" --output-on-failure -j "$(nproc)" "${@:3}"
}

# The Python package, built by scikit-build-core from this tree.
install_python() {
  log "pip install . (Python binding)"
  python3 -m pip install -q --no-build-isolation "$ROOT"
}

# The Python binding's pytest suite under ASan+UBSan. scikit-build-core builds
# the package (libberth.so with the system allocator, so ASan sees every
# allocation, and _berth) into build-pyasan/site, from its own CMake tree
# build-pyasan/cmake (reused: a rebuild is incremental; never build/python).
# The interpreter is not instrumented: the ASan runtime the libraries link is
# preloaded, as it must come first in the library list. Spawned and forked
# children inherit LD_PRELOAD, PYTHONPATH and the options, so the examples and
# the multiprocessing tests run under ASan too. Extra arguments go to pytest.
python_sanitizer_suite() {
  local dir="$ROOT/build-pyasan" tests="$ROOT/bindings/python/tests"
  local flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  log "pytest under ASan+UBSan (build-pyasan/)"
  mkdir -p "$dir"
  python3 -m pip install -q --no-build-isolation --no-deps --upgrade --target "$dir/site" \
    -C build-dir="$dir/cmake" -C cmake.build-type=RelWithDebInfo \
    -C cmake.define.BERTH_SYSTEM_ALLOCATOR=ON \
    -C "cmake.define.CMAKE_C_FLAGS=$flags" -C "cmake.define.CMAKE_CXX_FLAGS=$flags" \
    -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=$flags" \
    -C "cmake.define.CMAKE_MODULE_LINKER_FLAGS=$flags" "$ROOT"

  # Both libraries must link the ASan runtime. Preload the one they resolve,
  # and their libstdc++: ASan intercepts __cxa_throw only if libstdc++ is
  # loaded when it starts (python3 does not link it); otherwise the first C++
  # exception aborts with "CHECK failed: ... real___cxa_throw".
  local so lib preload=""
  for so in "$dir"/site/berth/_berth*.so "$dir"/site/berth/libberth.so*; do
    readelf -d "$so" | grep -q 'NEEDED.*libasan' || { echo "$so: not built with ASan" >&2; return 1; }
  done
  for lib in libasan libstdc++; do
    so=$(ldd "$dir"/site/berth/libberth.so* | awk -v l="$lib" 'index($1, l) == 1 {print $3}')
    [ -f "$so" ] || { echo "$lib not found: '$so'" >&2; return 1; }
    preload+="${preload:+ }$so"
  done
  # The interpreter itself, not a wrapper script (a pyenv shim would run bash
  # and pyenv under the preload too).
  local py
  py=$(python3 -c 'import sys; print(sys.executable)')

  # Not run here (they run in the ordinary pytest step): the tests that measure
  # the process' memory, which ASan changes by design. The four ru_maxrss ones
  # fail alone (grown by 230+ MiB): freed memory sits in ASan's quarantine
  # (256 MiB) instead of being reused; in a full run they pass only if earlier
  # tests happened to fill the quarantine. The tracemalloc one finds ~1000
  # retained 55-byte str objects: CPython's type attribute cache keeps a
  # reference to the attribute name of each lookup, in a slot chosen by the
  # name's address; pybind11's attr("format") makes a new "format" str per
  # call, and as the quarantine never hands an address back, each one takes
  # a new slot (bounded, at ~1024; plain Python with a fresh name per getattr
  # does the same, and sys._clear_type_cache() frees them). The tests that
  # memory goes back to the OS (current RSS after remove_pool, emptying or
  # closing a cache) cannot hold here: with the system allocator Berth leaves
  # freed memory to it (berth.h, "Memory"), and ASan quarantines it.
  local skip=(
    test_cache.py::test_dropped_lists_are_freed
    test_cache.py::test_dropping_an_open_cache_frees_it
    test_errors.py::test_dropping_an_open_engine_frees_it
    test_selector.py::test_dropped_selectors_are_freed
    test_cache.py::test_no_python_objects_leak_on_any_path
    test_pool.py::test_remove_pool_gives_its_memory_back_to_the_os
    test_cache.py::test_emptying_or_closing_a_cache_gives_its_memory_back_to_the_os
    # A child forked while other threads allocate can hang in ASan's own
    # allocator (no lock around fork in gcc 12's libsanitizer); the fork
    # test runs in the ordinary pytest step.
    test_fork.py
    # UBSan calls catching abi::__forced_unwind by reference (or_park in
    # bindings/python/src/common.h, at interpreter exit) "reference binding
    # to null pointer": a forced unwind
    # has no exception object, and the handler never reads it. The exit
    # tests run in the ordinary pytest step.
    test_exit.py
  )
  local args=(--rootdir "$ROOT") t
  for t in "${skip[@]}"; do args+=(--deselect "bindings/python/tests/$t"); done

  # Run in the process that runs the tests, before pytest: the tests must
  # exercise this build (not the installed package) under the ASan runtime.
  local run_tests
  run_tests=$(cat <<'PY'
import pathlib, sys
import berth, berth._berth
site = pathlib.Path(sys.argv[1]).resolve() / "site"
for mod in (berth, berth._berth):
    assert pathlib.Path(mod.__file__).resolve().is_relative_to(site), mod.__file__
maps = pathlib.Path("/proc/self/maps").read_text()
assert "libasan" in maps, "the ASan runtime is not loaded"
libs = {l.split()[-1] for l in maps.splitlines() if "libberth" in l}
assert libs and all(pathlib.Path(p).resolve().is_relative_to(site) for p in libs), libs
import pytest
sys.exit(pytest.main(sys.argv[2:]))
PY
)
  # ASan writes its reports to files (<log>.<pid>, one per process): a child's
  # stderr is often captured by the test, and the files are checked whatever
  # pytest says. UBSan ignores log_path when ASan's runtime is preloaded (it
  # writes to stderr), so pytest captures only sys.stdout/stderr, not fd 2
  # (--capture=sys: a report from the pytest process itself is not lost in
  # the capture file when it aborts), and the whole output is searched too.
  # detect_leaks=0: CPython leaks by design (interned and static objects,
  # whatever is alive at exit is not freed), so LeakSanitizer would report the
  # interpreter, not Berth; Berth's own leaks are covered by the GoogleTest
  # ASan suite (detect_leaks=1). PYTHONMALLOC=malloc: Python's objects (str
  # and bytes handed to Berth) come from malloc, not from pymalloc's arenas,
  # so ASan sees their bounds.
  local logs="$dir/logs" out="$dir/pytest.out" rc=0
  rm -rf "$logs" && mkdir -p "$logs"
  (cd /tmp && env LD_PRELOAD="$preload" PYTHONPATH="$dir/site" PYTHONMALLOC=malloc \
      ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$logs/asan" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1" \
      "$py" -c "$run_tests" "$dir" -q -p no:cacheprovider --capture=sys "${args[@]}" \
      "$tests" "$@" 2>&1) | tee "$out" || rc=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "ASan reports:" >&2
    cat "$logs"/* >&2
    rc=1
  fi
  if grep -q -E ': runtime error: |ERROR: AddressSanitizer' "$out"; then
    echo "UBSan/ASan reported an error (see above)" >&2
    rc=1
  fi
  return "$rc"
}
