#!/usr/bin/env bash
# Rebuilds models/sim-spatialbot from nothing (docs/spatialqa.md, "Recipe"):
#   bash tools/train/make_sim_spatialbot.sh [WORK_DIR]       (default: target/sim-spatialbot)
# 1. SpatialQA train and val sets from the simulated tabletop (disjoint seeds; the held-out test
#    set tests/data/spatialqa-test uses 300000..300030 and is not touched here);
# 2. stage 1 on the CPU (fixed seeds, 2 threads; tools/train/train_spatialbot.py): the whole
#    model end to end; it learns the conversations, the Depth API calls and copying, but its
#    image tokens collapse to one direction (it answers blind);
# 3. stage 2: stage 1's language model, a fresh tower and projector, and the auxiliary
#    patch-statistics loss that keeps the image tokens apart;
# 4. export with reference cases (tools/export/export.py --verify) into models/sim-spatialbot.
# STEP picks stage 2's checkpoint (default: the final one).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
work=${1:-target/sim-spatialbot}
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
cargo build --release
bin=${CARGO_TARGET_DIR:-target}/release/spatialbot-edge
"$bin" spatialqa --seeds 100000..106000 --split train --extra 1 --out "$work/train"
"$bin" spatialqa --seeds 200000..200300 --split val --out "$work/val"
"$PY" tools/train/train_spatialbot.py --train "$work/train" --val "$work/val" --out "$work/stage1" \
  --steps 3600 --save-every 400
"$PY" tools/train/train_spatialbot.py --train "$work/train" --val "$work/val" --out "$work/stage2" \
  --init "$work/stage1" --init-language-only --aux-weight 5 --lr 2e-3 --seed 1 \
  --steps 2600 --save-every 400
ck="$work/stage2"
if [ -n "${STEP:-}" ]; then ck="$work/stage2/step-$STEP"; fi
# The trained projector's outputs reach a few hundred in magnitude: onnxruntime differs from
# PyTorch by about 1.5e-4 there (stage 1's collapsed tokens reached 4e4 and 6e-3).
"$PY" tools/export/export.py --checkpoint "$ck" --out models/sim-spatialbot --name sim-spatialbot --verify --tolerance 1e-3
