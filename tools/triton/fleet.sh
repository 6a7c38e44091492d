#!/usr/bin/env bash
# Speed of the `triton` backend on this machine (docs/triton.md has the numbers):
#  1. the same graphs local (tract) and remote (a tritonserver on loopback, python platform):
#     `bench` per stage (vision per image, prefill, decode per token), p50/p99, bytes per frame;
#  2. a fleet: N = 1, 2, 4, 8 `bench` processes (robots) against one server at once: frames/s
#     of all of them together and the vision/frame p99 across robots.
# Usage: tools/triton/fleet.sh [MODEL_DIR] [FRAMES]   (needs scripts/setup-triton.sh and a
# built spatialbot-edge; BIN=path overrides target/release/spatialbot-edge).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:-models/tiny-policy}
frames=${2:-40}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/spatialbot-edge}
py=${SBE_PYTHON:-.venv/bin/python}
sp=$(ls -d .venv-triton/lib/python3.*/site-packages | head -1)
pyver=$(basename "$(dirname "$sp")" | sed 's/python//')
t=$sp/pytriton/tritonserver
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/backends/python"
cp "$t"/backends/python/*.* "$work/backends/python/"
cp "$t/python_backend_stubs/$pyver/triton_python_backend_stub" "$work/backends/python/"
"$bin" triton-repo --platform python --model "$model" --out "$work/repo" >/dev/null
port=$(( 20000 + RANDOM % 20000 ))
LD_LIBRARY_PATH=$sp/nvidia_pytriton.libs PYTHONPATH=$PWD/$sp "$t/bin/tritonserver" \
  --model-repository="$work/repo" --backend-directory="$work/backends" --grpc-port=$port \
  --allow-http=false --allow-metrics=false >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do grep -q "Started GRPCInferenceService" "$work/server.log" && break; sleep 0.1; done
sed -e 's/order = \["tract-cpu"\]/order = ["triton", "tract-cpu"]/' \
    -e "s|^\[camera\]|[backend.triton]\nurl = \"grpc://127.0.0.1:$port\"\ndeadline_ms = 10000\n\n[camera]|" \
    -e 's/^threads = 2/threads = 1/' boards/dev-x86_64.toml > "$work/triton.toml"
sed -e 's/^threads = 2/threads = 1/' boards/dev-x86_64.toml > "$work/local.toml"
sed -i "s|engine_cache_dir = \"../target/engine-cache\"|engine_cache_dir = \"$work/cache\"|" "$work/triton.toml" "$work/local.toml"
bench() { "$bin" bench --board "$1" --model "$model" --frames "$frames" --warmup 5 --json; }
echo "# local vs remote, $model, $frames frames"
bench "$work/local.toml" > "$work/local.json"
bench "$work/triton.toml" > "$work/remote.json"
for n in 1 2 4 8; do
  start=$(date +%s.%N)
  for i in $(seq "$n"); do bench "$work/triton.toml" > "$work/fleet-$n-$i.json" & done
  wait $(jobs -p | grep -v "^$server$") 2>/dev/null || true
  end=$(date +%s.%N)
  echo "$n $start $end" >> "$work/fleet.txt"
done
"$py" - "$work" "$frames" <<'PY'
import json, sys, glob
work, frames = sys.argv[1], int(sys.argv[2])
def stages(path):
    r = json.load(open(path))
    return {s["name"]: s for s in r["stages"]}, r
loc, _ = stages(f"{work}/local.json")
rem, rr = stages(f"{work}/remote.json")
print(f"{'stage':<10} {'per':>6} {'local p50':>10} {'remote p50':>10} {'local p99':>10} {'remote p99':>10}  ms")
for name in ["vision", "prefill", "decode", "generate", "end_to_end"]:
    if name in loc and name in rem:
        a, b = loc[name], rem[name]
        print(f"{name:<10} {a['per']:>6} {a['p50_ms']:>10.3f} {b['p50_ms']:>10.3f} {a['p99_ms']:>10.3f} {b['p99_ms']:>10.3f}")
print(f"frames/s: local {json.load(open(f'{work}/local.json'))['fps']:.2f}, remote {rr['fps']:.2f}")
r = rr["remote"]
calls = r["remote_calls"]
total_frames = frames + 5
print(f"remote: {calls} calls for {total_frames} frames, {r['bytes_sent']/total_frames:.0f} B sent and {r['bytes_received']/total_frames:.0f} B received per frame, {r['local_calls']} local calls")
# frames/s(all): the robots' measured frames per second, summed (their windows overlap).
print("robots  frames/s(all)  vision p50/p99 ms (worst robot)  end_to_end p99 ms (worst robot)")
for line in open(f"{work}/fleet.txt"):
    n, start, end = line.split(); n = int(n)
    both = [stages(p) for p in glob.glob(f"{work}/fleet-{n}-*.json")]
    reps = [s for s, _ in both]
    fps = sum(r["fps"] for _, r in both)
    v50 = max(s["vision"]["p50_ms"] for s in reps); v99 = max(s["vision"]["p99_ms"] for s in reps)
    f99 = max(s["end_to_end"]["p99_ms"] for s in reps)
    print(f"{n:>6}  {fps:>13.1f}  {v50:>14.2f} / {v99:<14.2f}  {f99:>10.2f}")
PY
