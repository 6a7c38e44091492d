#!/usr/bin/env bash
# Creates .venv with the Python reference implementations the differential tests use.
# Idempotent: a venv whose requirements stamp matches is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
req=tools/requirements-test.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
