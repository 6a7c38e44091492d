#!/usr/bin/env bash
# Rebuilds models/sim-spatialbot from nothing (docs/spatialqa.md, "Recipe"):
#   bash tools/train/make_sim_spatialbot.sh [WORK_DIR]       (default: target/sim-spatialbot)
# 1. SpatialQA train and val sets from the simulated tabletop (disjoint seeds; the held-out test
#    set tests/data/spatialqa-test uses 300000..300030 and is not touched here);
# 2. training on the CPU (fixed seeds, 2 threads; tools/train/train_spatialbot.py);
# 3. export with reference cases (tools/export/export.py --verify) into models/sim-spatialbot.
# STEP picks the checkpoint (default: the final one); the shipped model's is in
# tools/train/sim-spatialbot-training.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
work=${1:-target/sim-spatialbot}
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
cargo build --release
bin=${CARGO_TARGET_DIR:-target}/release/spatialbot-edge
"$bin" spatialqa --seeds 100000..103000 --split train --extra 1 --out "$work/train"
"$bin" spatialqa --seeds 200000..200300 --split val --out "$work/val"
"$PY" tools/train/train_spatialbot.py --train "$work/train" --val "$work/val" --out "$work/checkpoint" \
  --steps "${STEPS:-450}" --save-every 75
ck="$work/checkpoint"
if [ -n "${STEP:-}" ]; then ck="$work/checkpoint/step-$STEP"; fi
"$PY" tools/export/export.py --checkpoint "$ck" --out models/sim-spatialbot --name sim-spatialbot --verify --tolerance 1e-3
