# Shared by the scripts: install what a fresh machine lacks (idempotent, and
# quick when everything is there), then build. Source it; do not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(libflatbuffers-dev flatbuffers-compiler libconcurrentqueue-dev libmimalloc-dev
              libgtest-dev cmake ninja-build clang libclang-rt-14-dev)
PIP_PACKAGES=(pybind11 scikit-build-core pytest anyio)

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
  if ! python3 -c 'import pybind11, scikit_build_core, pytest, anyio' 2>/dev/null; then
    log "pip install ${PIP_PACKAGES[*]}"
    python3 -m pip install -q "${PIP_PACKAGES[@]}"
  fi
}

ensure_go_modules() {
  local m
  for m in bindings/go examples/go tests/k8sref; do
    (cd "$m" && go mod download)
  done
}

ensure_deps() {
  ensure_apt
  ensure_pip
  ensure_go_modules
}

# The C++ tree: core, libberth.so (build/lib, where the Go binding links it),
# tests, benchmarks, demo.
build_cpp() {
  log "build C++ (Release) in build/"
  "$ROOT/scripts/build" >/dev/null
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
