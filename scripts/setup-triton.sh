#!/usr/bin/env bash
# Creates .venv-triton: the tritonserver binary of the nvidia-pytriton wheel (x86_64 Linux,
# glibc 2.35+) with numpy and onnxruntime for the python-backend models, for the `triton`
# backend tests (tests/support/triton.rs). Idempotent: a venv whose requirements stamp matches
# is reused. ~60 MB download; the wheel's Python dependencies are not installed (--no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
req=tools/requirements-triton.txt
venv=${SBE_TRITON_VENV:-.venv-triton}
stamp=$venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
"$PY" -m venv "$venv"
# numpy and onnxruntime with their own dependencies; then the wheel alone (not pytriton's
# Python dependencies: only its server binary is used).
"$venv/bin/python" -m pip install -q --disable-pip-version-check numpy==1.26.4 onnxruntime==1.32.0
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$req"
echo "$want" > "$stamp"
