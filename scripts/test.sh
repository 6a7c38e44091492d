#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
export SBE_PYTHON="$PWD/.venv/bin/python"
# Committed model fixtures: manifest hashes and reference cases on onnxruntime (no PyTorch needed).
"$SBE_PYTHON" tools/export/check_fixtures.py models/tiny-spatialbot models/tiny-policy
cargo test --workspace --locked
