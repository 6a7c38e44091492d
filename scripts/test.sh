#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
export SBE_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace --locked
# aarch64 (Jetson): the library's pure unit tests cross-built and run under qemu-user. Prints
# SKIPPED and goes on where the cross toolchain cannot be installed. About 2-3 min on 2 cores.
bash scripts/cross-aarch64.sh --tests-only
