#!/usr/bin/env bash
# Cross-builds spatialbot-edge for aarch64-unknown-linux-gnu (Jetson) with Debian's cross gcc and
# runs the library's unit tests (the pure parts) under qemu-user.
#   bash scripts/cross-aarch64.sh            # build the binary + run the lib tests under qemu
#   SBE_CROSS_TESTS=0 bash scripts/cross-aarch64.sh   # build only
# Anything this machine cannot provide (no root for apt, no rustup target) prints SKIPPED with
# the reason and exits 0: the native tests are the gate, this is the extra check.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

skip() {
  echo "========================================================================"
  echo "SKIPPED: aarch64 cross build: $*"
  echo "========================================================================"
  exit 0
}

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null || [ ! -d "$sysroot/lib" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || skip "apt-get update failed"
    apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
      || skip "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user failed"
  else
    skip "gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user are not installed and this is not root with apt-get"
  fi
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v rustup >/dev/null || skip "no rustup to add the $target standard library"
  rustup target add "$target" || skip "\`rustup target add $target\` failed (no network to static.rust-lang.org?)"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

start=$(date +%s)
if [ "${SBE_CROSS_TESTS:-1}" = 1 ]; then
  # The unit tests of the library and of the wire crate, run under qemu-user.
  cargo test --locked --target "$target" --lib -p spatialbot-edge -p spatialbot-link
fi
cargo build --locked --target "$target" --bin spatialbot-edge ${SBE_CROSS_RELEASE:+--release}
profile=debug; [ -n "${SBE_CROSS_RELEASE:-}" ] && profile=release
bin=target/$target/$profile/spatialbot-edge
file "$bin" 2>/dev/null || true
# The binary itself starts under qemu (board profiles are built in).
qemu-aarch64 -L "$sysroot" "$bin" --version
echo "aarch64 cross build and tests: $(( $(date +%s) - start )) s"
