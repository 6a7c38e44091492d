#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
export SBE_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace --locked

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
