#!/usr/bin/env bash
# Cross-builds spatialbot-edge for aarch64-unknown-linux-gnu (Jetson) with Debian's cross gcc and
# runs the unit tests of the pure parts under qemu-user.
#   bash scripts/cross-aarch64.sh               # the tests below, then the binary
#   bash scripts/cross-aarch64.sh --tests-only  # what scripts/test.sh runs in CI: the wire crate
#                                               # (crates/link, shared with firmware) and the
#                                               # main library's unit tests (rgbd, preprocess,
#                                               # policy parsing and decoding, governor, board
#                                               # profiles, bench, camera, pipeline, ...), among
#                                               # them the NEON kernels of rgbd::kernels and
#                                               # preprocess::kernels against the portable ones
#   bash scripts/cross-aarch64.sh --build-only [--release]
# The library's unit tests build without the `tract` feature (the CPU inference backend): tract
# alone costs more to cross-build than everything else together, and no unit test runs a model.
# The models' aarch64 check is the binary (`--build-only`, default features) on the board.
# A machine without root for apt, or without the rustup target (the Rust distribution server
# out of reach), prints SKIPPED with the reason and exits 0 (1 with SBE_REQUIRE_CROSS=1); an apt
# install that fails as root is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=1
lib_tests=1
build=1
release=""
for arg in "$@"; do
  case "$arg" in
    --tests-only|--lib-tests) build=0 ;;
    --build-only) tests=0; lib_tests=0 ;;
    --release) release=1 ;;
    *) echo "cross-aarch64.sh: unknown argument $arg (see the comment at the top)" >&2; exit 2 ;;
  esac
done
target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

skip() {
  echo "========================================================================"
  echo "SKIPPED: aarch64 cross build: $*"
  echo "========================================================================"
  if [ "${SBE_REQUIRE_CROSS:-0}" = 1 ]; then exit 1; fi
  exit 0
}

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null || [ ! -d "$sysroot/lib" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # Debian's packages are reachable from every machine of this project: a failure here is an
    # error, not a skip.
    timeout 300 apt-get update -qq || { echo "cross-aarch64.sh: apt-get update failed" >&2; exit 1; }
    timeout 600 apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
      || { echo "cross-aarch64.sh: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user failed" >&2; exit 1; }
  else
    skip "gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user are not installed and this is not root with apt-get"
  fi
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v rustup >/dev/null || skip "no rustup to add the $target standard library"
  timeout 300 rustup target add "$target" || skip "\`rustup target add $target\` failed (the Rust distribution server is out of reach?)"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

start=$(date +%s)
if [ "$tests" = 1 ]; then
  cargo test --locked --target "$target" -p spatialbot-link
fi
if [ "$lib_tests" = 1 ]; then
  cargo test --locked --target "$target" --no-default-features --lib -p spatialbot-edge -- --test-threads=2
fi
if [ "$build" = 1 ]; then
  cargo build --locked --target "$target" --bin spatialbot-edge ${release:+--release}
  profile=debug; [ -n "$release" ] && profile=release
  bin=${CARGO_TARGET_DIR:-target}/$target/$profile/spatialbot-edge
  # The binary starts under qemu (the board profiles are built in).
  qemu-aarch64 -L "$sysroot" "$bin" --version
  qemu-aarch64 -L "$sysroot" "$bin" doctor --board jetson-orin-nx-16gb >/dev/null || true
fi
echo "aarch64 cross build and tests: $(( $(date +%s) - start )) s"
