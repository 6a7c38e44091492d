#!/usr/bin/env bash
# Regenerates models/sim-policy: demonstrations in the simulated world, behaviour cloning, export
# with verification, the end-to-end reference on validation frames (docs/training.md).
#   bash tools/train/sim-policy.sh WORK_DIR      (WORK_DIR holds the demos and the checkpoint)
# Needs a release build (target/release/spatialbot-edge, or $SBE) and .venv-export (or
# $EXPORT_PYTHON). Fixed seeds throughout; training runs single-threaded on the CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:?give a work folder}
SBE=${SBE:-target/release/spatialbot-edge}
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
mkdir -p "$work"
d="$work/demos"
# Training seeds 0..449, validation 500..519; `eval` reports on seeds 1000 and up.
[ -d "$d/reach-clean" ] || "$SBE" demos --task reach --episodes 300 --seed 0 --out "$d/reach-clean"
[ -d "$d/pick-clean" ] || "$SBE" demos --task pick --episodes 300 --seed 0 --out "$d/pick-clean"
[ -d "$d/reach-noise" ] || "$SBE" demos --task reach --episodes 150 --seed 300 --noise 0.015 --out "$d/reach-noise"
[ -d "$d/pick-noise" ] || "$SBE" demos --task pick --episodes 150 --seed 300 --noise 0.015 --out "$d/pick-noise"
[ -d "$d/reach-val" ] || "$SBE" demos --task reach --episodes 20 --seed 500 --out "$d/reach-val"
[ -d "$d/pick-val" ] || "$SBE" demos --task pick --episodes 20 --seed 500 --out "$d/pick-val"
"$PY" tools/train/train_policy.py --demos "$d/reach-clean" "$d/pick-clean" "$d/reach-noise" "$d/pick-noise" \
  --val "$d/reach-val" "$d/pick-val" --out "$work/checkpoint" ${TRAIN_ARGS:-}
"$PY" tools/export/export.py --checkpoint "$work/checkpoint" --out models/sim-policy --verify --tolerance 1e-3
"$PY" tools/export/reference.py e2e --checkpoint "$work/checkpoint" --kind policy \
  --demos "$d/reach-val/episodes/501" "$d/pick-val/episodes/502" --per-episode 6 \
  --out models/sim-policy/reference/e2e
