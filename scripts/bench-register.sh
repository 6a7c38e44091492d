#!/usr/bin/env bash
# Registration speed against librealsense's `align` (pyrealsense2, x86 SSE path) on the same
# synthetic frames, both pinned to one core, in one command:
#     bash scripts/bench-register.sh [ITERATIONS]
# Prints per case: our median ms, librealsense's median ms of align.process, and the ratio.
# Both are medians of per-thread CPU time, so other load on a shared machine counts less.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
# SBE_PYTHON: an existing Python with pyrealsense2 and numpy (else .venv is set up).
[ -n "${SBE_PYTHON:-}" ] || bash scripts/setup-python.sh
PY="${SBE_PYTHON:-$PWD/.venv/bin/python}"
cargo build --release --example register_timing -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
$pin target/release/examples/register_timing "$dir" "$N" > "$dir/ours.txt"
printf '%-40s %10s %14s %8s\n' case ours_ms librealsense_ms ratio
while read -r name ours; do
  theirs=$($pin "$PY" tools/ref/align_ref.py "$dir/$name.toml" "$dir/$name.npy" --bench "$N")
  ratio=$(awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "%.2f", a / b }')
  printf '%-40s %10.3f %14.3f %7sx\n' "$name" "$ours" "$theirs" "$ratio"
done < "$dir/ours.txt"
