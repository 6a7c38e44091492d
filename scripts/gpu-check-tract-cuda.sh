#!/usr/bin/env bash
# The `cuda` feature (tract-cuda) on a machine with an NVIDIA GPU, from the repository root.
# Build first (here or elsewhere; the test binary finds the models under the build's path):
#   cargo test --release --features cuda --test model --no-run
#   cargo build --release --features cuda
# then run this script where the GPU is. It finds the CUDA libraries (CUDA toolkit folders,
# /usr/lib, pip wheels under /opt), reports what tract-cuda makes of them, runs the backend_cuda::
# tests (the tiny fixtures' reference cases on the GPU), and compares `run` and `ask` on
# tract-cuda with tract on the CPU. tract-cuda is built for the CUDA 12.2 API: where the machine
# has CUDA 13, give a CUDA 12 runtime as CUDART12=/path/to/libcudart.so.12 (the
# nvidia-cuda-runtime-cu12 wheel has one); the other CUDA 13 libraries work with it.
# Results (JSON) go to $OUT when set, else a temporary folder.
set -uo pipefail
OUT="${OUT:-$(mktemp -d)}"
B=target/release/spatialbot-edge
T=$(ls -t target/release/deps/model-* 2>/dev/null | grep -v '\.d$' | head -n 1)
[ -x "$B" ] && [ -n "$T" ] || { echo "build first (see the top of this script)"; exit 2; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
L=$(mktemp -d); dirs=""
for n in cudart nvrtc cublas cublasLt cudnn; do
  f=$(find /usr/local /opt /usr/lib /usr/lib64 -name "lib$n.so.[0-9]*" 2>/dev/null | sort -V | tail -n 1)
  echo "lib$n: ${f:-not found}"
  if [ -n "$f" ]; then ln -sf "$f" "$L/lib$n.so"; dirs="$dirs:$(dirname "$f")"; fi
done
export LD_LIBRARY_PATH="$L$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
probe() { "$B" devices --json | python3 -c "import json,sys; print([b for b in json.load(sys.stdin)['backends'] if b['backend'] == 'tract-cuda'][0])"; }
echo "== tract-cuda with the machine's CUDA runtime"; probe
if [ -n "${CUDART12:-}" ]; then
  ln -sf "$CUDART12" "$L/libcudart.so"
  echo "== tract-cuda with the CUDA 12 runtime $CUDART12"; probe
fi
"$T" backend_cuda:: --test-threads 1 --nocapture 2>&1 | grep -v 'backtrace'
sed -e 's/order = \["tract-cpu"\]/order = ["tract-cuda"]/' -e 's/^cpu_fallback = true/cpu_fallback = false/' \
  boards/dev-x86_64.toml > boards/cuda-only.local.toml
trap 'rm -f boards/cuda-only.local.toml' EXIT
for board in cuda-only.local dev-x86_64; do
  "$B" run --board "boards/$board.toml" --steps 60 --json > "$OUT/run-$board.json" || echo "run on $board failed"
  "$B" ask --board "boards/$board.toml" --model models/tiny-spatialbot \
    --rgb models/tiny-spatialbot/reference/e2e/rgb_1.png --depth models/tiny-spatialbot/reference/e2e/depth_1.png \
    --json "How far is the box? Use Depth(0.5, 0.5)." > "$OUT/ask-$board.json" || echo "ask on $board failed"
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for board in ("cuda-only.local", "dev-x86_64"):
    run = json.load(open(f"{out}/run-{board}.json"))
    stages = {k: (round(v["p50_ms"], 2), round(v["p99_ms"], 2)) for k, v in run["stages"].items()}
    ask = json.load(open(f"{out}/ask-{board}.json"))
    print(board, "run p50/p99 ms:", stages, "steps/s", round(run["loop_hz"], 1))
    print(board, "ask:", ask["backend"], repr(ask["answer"]), ask["rounds"][0]["generation"]["token_ids"], ask["stage_ms"])
PY
