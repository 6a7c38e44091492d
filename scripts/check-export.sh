#!/usr/bin/env bash
# Re-exports the committed tiny checkpoints (tools/export/tiny-checkpoints) into a scratch folder
# and diffs the result byte for byte against models/tiny-*. Run it before committing any change
# to tools/export. Needs the export venv (.venv-export, ~5.7 GB: torch from PyPI is the CUDA
# build); set SBE_SETUP_EXPORT=1 to create it from tools/export/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
if [ ! -x "$PY" ]; then
  if [ "${SBE_SETUP_EXPORT:-0}" = 1 ]; then
    python3 -m venv .venv-export
    .venv-export/bin/python -m pip install -q --disable-pip-version-check -r tools/export/requirements.txt
  else
    echo "check-export: $PY not found; create it with SBE_SETUP_EXPORT=1 bash scripts/check-export.sh" >&2
    exit 2
  fi
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
EXPORT_PYTHON="$PY" bash tools/export/regen.sh "$scratch" > "$scratch/log" 2>&1 || {
  cat "$scratch/log" >&2
  echo "check-export: regeneration failed" >&2
  exit 1
}
status=0
for name in tiny-spatialbot tiny-policy; do
  if diff -r -q -x __pycache__ -x README.md "models/$name" "$scratch/$name"; then
    echo "check-export: models/$name reproduced byte for byte"
  else
    echo "check-export: models/$name differs from a fresh export of tools/export/tiny-checkpoints/$name" >&2
    status=1
  fi
done
exit $status
