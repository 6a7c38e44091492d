#!/usr/bin/env bash
# Regenerates the tiny model folders from the committed tiny checkpoints:
#   bash tools/export/regen.sh [OUT_ROOT]     (default: models)
# Export with --verify (reference cases), then the end-to-end references (reference/e2e).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
out=${1:-models}
ck=tools/export/tiny-checkpoints
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
for name in tiny-spatialbot tiny-policy; do
  "$PY" tools/export/export.py --checkpoint "$ck/$name" --out "$out/$name" --verify
done
"$PY" tools/export/reference.py e2e --checkpoint "$ck/tiny-spatialbot" --kind spatialbot \
  --out "$out/tiny-spatialbot/reference/e2e"
"$PY" tools/export/reference.py e2e --checkpoint "$ck/tiny-policy" --kind policy \
  --out "$out/tiny-policy/reference/e2e"
# What `run --every-frame` does on the shipped sample recording (one goal, consecutive frames).
if [ -d tests/data/sample/color ]; then
  "$PY" tools/export/reference.py e2e --checkpoint "$ck/tiny-policy" --kind policy \
    --sample tests/data/sample --out "$out/tiny-policy/reference/e2e-sample"
fi
