#!/usr/bin/env bash
# Regenerates models/sim-policy: demonstrations in the simulated world, behaviour cloning, one
# DAgger round (the round-0 policy's own episodes, labelled by the expert) trained together with
# demonstrations on 2,000 more layouts, export with verification, the end-to-end reference on
# validation frames (docs/training.md).
#   bash tools/train/sim-policy.sh WORK_DIR      (WORK_DIR holds the demos and the checkpoints)
# Needs a release build (target/release/spatialbot-edge, or $SBE) and .venv-export (or
# $EXPORT_PYTHON). Fixed seeds throughout; training runs on the CPU with two torch threads.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:?give a work folder}
SBE=${SBE:-target/release/spatialbot-edge}
PY=${EXPORT_PYTHON:-.venv-export/bin/python}
export TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
mkdir -p "$work"
d="$work/demos"
g="$work/dagger"
mkdir -p "$g"
# Training seeds 0..499 (clean), 520..999 (noisy) and 2000..2999 (clean, round 1), validation
# 500..519; `eval` reports on seeds 1000..1999 (the documented numbers: 1000..1049).
[ -d "$d/reach-clean" ] || "$SBE" demos --task reach --episodes 500 --seed 0 --out "$d/reach-clean"
[ -d "$d/pick-clean" ] || "$SBE" demos --task pick --episodes 500 --seed 0 --out "$d/pick-clean"
[ -d "$d/reach-noise" ] || "$SBE" demos --task reach --episodes 480 --seed 520 --noise 0.015 --out "$d/reach-noise"
[ -d "$d/pick-noise" ] || "$SBE" demos --task pick --episodes 480 --seed 520 --noise 0.015 --out "$d/pick-noise"
[ -d "$d/reach-val" ] || "$SBE" demos --task reach --episodes 20 --seed 500 --out "$d/reach-val"
[ -d "$d/pick-val" ] || "$SBE" demos --task pick --episodes 20 --seed 500 --out "$d/pick-val"
demos=("$d/reach-clean" "$d/pick-clean" "$d/reach-noise" "$d/pick-noise")
val=("$d/reach-val" "$d/pick-val")
# More layouts for round 1: the policy learns the training layouts far better than new ones
# (docs/training.md), and demonstrations cost seconds.
[ -d "$d/reach-more" ] || "$SBE" demos --task reach --episodes 1000 --seed 2000 --out "$d/reach-more"
[ -d "$d/pick-more" ] || "$SBE" demos --task pick --episodes 1000 --seed 2000 --out "$d/pick-more"
# Round 0: behaviour cloning on the expert's demonstrations.
[ -f "$work/round0/model.safetensors" ] || "$PY" tools/train/train_policy.py --demos "${demos[@]}" \
  --val "${val[@]}" --out "$work/round0" --steps 7000 --minutes 35 --threads 2 --check-every 500
"$PY" tools/export/export.py --checkpoint "$work/round0" --out "$work/round0-export" --verify --tolerance 1e-3
# DAgger round 1: the round-0 policy drives the runtime's loop on training seeds; the expert
# labels every state it reached. Recorded as fast as the loop runs (`fast`) on the two cores at
# once: reach (50 seeds) then 30 more pick seeds on one, pick (60 seeds) on the other — as the
# shipped model was made. On an idle machine `fast` outruns the board's 10 Hz rate limit and most
# recorded steps are held repeats (docs/training.md): without `fast`, the recording has the
# evaluation's dynamics.
record() { # TASK EPISODES SEED NAME
  [ -d "$g/$4" ] || "$SBE" eval --task "$1" --episodes "$2" --seed "$3" --policy "$work/round0-export" \
    --camera-options fast --record "$g/$4" --json > "$g/$4.json"
}
(record reach 50 0 reach-r1 && record pick 30 60 pick-r1b) &
other=$!
record pick 60 0 pick-r1
wait "$other"
# Round 1: continue from round 0 on the demonstrations, the 2,000 new layouts and the policy's
# own states, each once.
"$PY" tools/train/train_policy.py --demos "${demos[@]}" "$d/reach-more" "$d/pick-more" \
  "$g/reach-r1" "$g/pick-r1" "$g/pick-r1b" \
  --val "${val[@]}" --out "$work/round1" --init "$work/round0" --steps 4000 --lr 1.5e-3 --minutes 20 \
  --threads 2 --check-every 500
"$PY" tools/export/export.py --checkpoint "$work/round1" --out models/sim-policy --verify --tolerance 1e-3
"$PY" tools/export/reference.py e2e --checkpoint "$work/round1" --kind policy \
  --demos "$d/reach-val/episodes/501" "$d/pick-val/episodes/502" --per-episode 6 \
  --out models/sim-policy/reference/e2e
