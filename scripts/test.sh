#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
#
# What each step relies on, checked against the machine image's package list
# (../.library/env/packages/installed-rust.txt in the workplace):
# - cargo/rustc 1.95, python3 + python3-venv, gcc, pkg-config, binutils: in the image.
# - .venv (numpy, Pillow, pyrealsense2, tokenizers, onnxruntime, tract): scripts/setup-python.sh
#   installs it from PyPI (tools/requirements-test.txt).
# - libusb-1.0-0 (pyrealsense2 needs it to import): NOT in the image; installed here with
#   apt-get (as root), or the script stops and says what to install. libudev1 (librealsense)
#   is in the image; scripts/setup-native-deps.sh installs it where it is missing.
# - libclang.so for bindgen (the `v4l2` feature's v4l2-sys-mit): NOT in the image. The image's
#   libclang-cpp14 is a different library (libclang-cpp.so.14, the C++ API) that bindgen cannot
#   load; libclang-dev is installed here. A missing libclang is a failure, not a skip.
# - the librealsense C API: scripts/setup-native-deps.sh takes it from the pyrealsense2 wheel.
# - gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user: NOT in the image; scripts/cross-aarch64.sh
#   installs them with apt-get.
# - the Rust standard library for aarch64-unknown-linux-gnu and thumbv7em-none-eabihf: NOT in the
#   image (only x86_64); `rustup target add` downloads it from the Rust distribution server. Where
#   that cannot be reached the two cross checks print SKIPPED in a banner and the run goes on;
#   SBE_REQUIRE_CROSS=1 makes such a skip fail the run (a board maintainer's machine).
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get install PACKAGES..., updating the lists first if they are missing or stale; fails
# loudly (exit 1 naming the packages) where it cannot.
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: please install: $* (apt-get install $*); this is not root with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } ||
    { echo "scripts/test.sh: apt-get install $* failed" >&2; exit 1; }
}

# The library bindgen (clang-sys) opens: libclang.so or libclang-N.so[.M], never libclang-cpp.
have_libclang() {
  ldconfig -p | grep -Eq '[[:space:]]libclang(-[0-9.]+)?\.so' ||
    ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-*.so* >/dev/null 2>&1
}

bash scripts/setup-python.sh
# The Triton Inference Server the `triton` backend tests start on loopback: the tritonserver
# binary of the nvidia-pytriton wheel (x86_64 manylinux_2_35; ~60 MB download, ~40 s), in
# .venv-triton. Under CI a missing server fails those tests instead of skipping them.
if [ "$(uname -m)" = x86_64 ]; then
  bash scripts/setup-triton.sh
  export SBE_REQUIRE_TRITON=1
fi
# pyrealsense2 (librealsense's `align`, the registration reference) needs libusb to import.
ldconfig -p | grep -q 'libusb-1.0.so.0' || apt_install libusb-1.0-0
export SBE_PYTHON="$PWD/.venv/bin/python"
"$SBE_PYTHON" -c 'import pyrealsense2' || { echo "scripts/test.sh: pyrealsense2 does not import" >&2; exit 1; }
# Committed model fixtures: manifest hashes and reference cases on onnxruntime (no PyTorch needed).
"$SBE_PYTHON" tools/export/check_fixtures.py models/tiny-spatialbot models/tiny-policy models/sim-spatialbot models/sim-policy
cargo test --workspace --locked
# aarch64 (Jetson): the wire crate's tests and the main library's unit tests (the pure parts,
# without the tract backend) cross-built and run under qemu-user. Prints SKIPPED and goes on
# where the Rust target cannot be downloaded (not root: where apt cannot run); a failed apt
# install is an error.
bash scripts/cross-aarch64.sh --tests-only

# The link's wire protocol must build for controller firmware (Cortex-M4F, no_std).
if rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf ||
   timeout 300 rustup target add thumbv7em-none-eabihf >/dev/null 2>&1; then
    cargo build -p spatialbot-link --target thumbv7em-none-eabihf --locked
    echo "no_std check: spatialbot-link builds for thumbv7em-none-eabihf"
else
    echo "################################################################################"
    echo "## SKIPPED: the thumbv7em-none-eabihf no_std build check of spatialbot-link.   ##"
    echo "## 'rustup target add thumbv7em-none-eabihf' failed (no rustup, or no network ##"
    echo "## to download the target's std). The wire protocol was NOT checked for MCUs. ##"
    echo "################################################################################"
    [ "${SBE_REQUIRE_CROSS:-0}" = 1 ] && exit 1
fi
# The `realsense` feature against a real librealsense (from the pyrealsense2 wheel on x86_64):
# writes .bag files with librealsense's software device and recorder, plays them back.
if [ "$(uname -m)" = x86_64 ]; then
  bash scripts/setup-native-deps.sh
  # Tests run in parallel: librealsense 2.56 appends registered extrinsics to a process-wide list
  # outside its lock; src/camera/realsense serialises those calls (the crash this used to cause).
  ( source .deps/env.sh && cargo test --locked --features realsense --test camera )
fi
# The `v4l2` feature (V4L2 colour cameras): the v4l crate runs bindgen, which needs libclang.
have_libclang || apt_install libclang-dev
have_libclang || { echo "scripts/test.sh: libclang-dev is installed but bindgen's libclang.so is not found" >&2; exit 1; }
cargo test --locked --features v4l2 --test camera camera_v4l2::
cargo build --locked --features v4l2

# The `ort` feature (onnxruntime loaded at run time) against the onnxruntime wheel's own
# libonnxruntime.so (tools/requirements-test.txt): reference cases, ask, provider errors.
ORT_LIB="$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
ORT_DYLIB_PATH="$ORT_LIB" cargo test --locked --features ort --test model -- \
  model_reference:: ask_e2e:: backend_ort:: backend_config::
# The ort backend's own unit tests (a chunked prefill against one run) on the same library.
ORT_DYLIB_PATH="$ORT_LIB" cargo test --locked --features ort --lib model::backend::ort
# The `cuda` feature (tract's CUDA runtime; CUDA libraries are opened at run time, no toolkit at
# build time): type-checked here, ~2-3 min. Its tests need a second full build of the tract stack
# (~12 CPU-min) and are meant for a GPU machine: `cargo test --features cuda --test model backend_cuda::`.
cargo check --locked --features cuda --lib --test model
