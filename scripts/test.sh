#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
# pyrealsense2 (librealsense's `align`, the registration reference) needs libusb to import.
if ! ldconfig -p | grep -q 'libusb-1.0.so.0' && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libusb-1.0-0 >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libusb-1.0-0 >/dev/null; }
fi
export SBE_PYTHON="$PWD/.venv/bin/python"
# Committed model fixtures: manifest hashes and reference cases on onnxruntime (no PyTorch needed).
"$SBE_PYTHON" tools/export/check_fixtures.py models/tiny-spatialbot models/tiny-policy
cargo test --workspace --locked
# aarch64 (Jetson): the wire crate's tests and the main library's unit tests (the pure parts,
# without the tract backend) cross-built and run under qemu-user. Prints SKIPPED and goes on
# where the cross toolchain cannot be installed.
bash scripts/cross-aarch64.sh --tests-only

# The link's wire protocol must build for controller firmware (Cortex-M4F, no_std).
if rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    cargo build -p spatialbot-link --target thumbv7em-none-eabihf --locked
    echo "no_std check: spatialbot-link builds for thumbv7em-none-eabihf"
else
    echo "################################################################################"
    echo "## SKIPPED: the thumbv7em-none-eabihf no_std build check of spatialbot-link.   ##"
    echo "## 'rustup target add thumbv7em-none-eabihf' failed (no rustup, or no network ##"
    echo "## to download the target's std). The wire protocol was NOT checked for MCUs. ##"
    echo "################################################################################"
fi
# The `realsense` feature against a real librealsense (from the pyrealsense2 wheel on x86_64):
# writes .bag files with librealsense's software device and recorder, plays them back.
if [ "$(uname -m)" = x86_64 ]; then
  bash scripts/setup-native-deps.sh
  # Tests run in parallel: librealsense 2.56 appends registered extrinsics to a process-wide list
  # outside its lock; src/camera/realsense serialises those calls (the crash this used to cause).
  ( source .deps/env.sh && cargo test --locked --features realsense --test camera_live --test camera_recording --test camera_devices --test camera_realsense --test camera_pair )
fi
# The `v4l2` feature (V4L2 colour cameras): the v4l crate runs bindgen, which needs libclang.
if ! ldconfig -p | grep -q 'libclang' && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null 2>&1; } || true
fi
if ldconfig -p | grep -q 'libclang' || ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  cargo test --locked --features v4l2 --test camera_v4l2
  cargo build --locked --features v4l2
else
  echo "################################################################################"
  echo "## SKIPPED: the v4l2 feature build and tests. libclang (apt: libclang-dev) is   ##"
  echo "## missing and could not be installed; bindgen in v4l2-sys-mit needs it.       ##"
  echo "################################################################################"
fi
# The `ort` feature (onnxruntime loaded at run time) against the onnxruntime wheel's own
# libonnxruntime.so (tools/requirements-test.txt): reference cases, ask, provider errors.
ORT_LIB="$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
ORT_DYLIB_PATH="$ORT_LIB" cargo test --locked --features ort \
  --test model_reference --test ask_e2e --test backend_ort --test backend_config
# The ort backend's own unit tests (a chunked prefill against one run) on the same library.
ORT_DYLIB_PATH="$ORT_LIB" cargo test --locked --features ort --lib model::backend::ort
# The `cuda` feature (tract's CUDA runtime; CUDA libraries are opened at run time, no toolkit at
# build time): type-checked here, ~2-3 min. Its tests need a second full build of the tract stack
# (~12 CPU-min) and are meant for a GPU machine: `cargo test --features cuda --test backend_cuda`.
cargo check --locked --features cuda --lib --test backend_cuda
