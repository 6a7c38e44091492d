#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
export SBE_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace --locked
# The `realsense` feature against a real librealsense (from the pyrealsense2 wheel on x86_64):
# writes .bag files with librealsense's software device and recorder, plays them back.
if [ "$(uname -m)" = x86_64 ]; then
  bash scripts/setup-native-deps.sh
  ( source .deps/env.sh && cargo test --locked --features realsense --test camera_realsense --test camera_live --test camera_recording --test camera_devices )
fi
