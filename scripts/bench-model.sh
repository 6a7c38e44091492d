#!/usr/bin/env bash
# Engine timings beside onnxruntime (Python, same machine, same command) on one model folder.
# Usage: scripts/bench-model.sh [MODEL_DIR] [CONTEXTS] [THREADS]
#   MODEL_DIR  default models/tiny-policy (full-size folders live outside the repo)
#   CONTEXTS   comma list of prefill lengths, default 600
#   THREADS    default 2
# Prints one JSON line per engine, then ratios (reference / ours: > 1 means we are faster).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/tiny-policy}
contexts=${2:-600}
threads=${3:-2}
py=${SBE_PYTHON:-.venv/bin/python}
steps=${SBE_BENCH_DECODE:-20}

ours=$(SBE_BENCH_MODEL="$model" SBE_BENCH_CONTEXTS="$contexts" SBE_BENCH_THREADS="$threads" SBE_BENCH_DECODE="$steps" \
  cargo bench --bench model --quiet 2>/dev/null | tail -1)
echo "tract: $ours"

ref=$("$py" - "$model" "$contexts" "$threads" "$steps" <<'PY'
import json, sys, time, tomllib, resource
import numpy as np, onnxruntime as ort
d, contexts, threads, steps = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4])
m = tomllib.load(open(d + "/manifest.toml", "rb"))
so = ort.SessionOptions(); so.intra_op_num_threads = threads
opts = dict(sess_options=so, providers=["CPUExecutionProvider"])
t = time.perf_counter()
vis = ort.InferenceSession(d + "/vision.onnx", **opts)
dec = ort.InferenceSession(d + "/decoder.onnx", **opts)
load_s = time.perf_counter() - t
S = m["vision"]["image_size"]; H = m["llm"]["hidden_size"]
px = ((np.arange(3 * S * S) * 7919 % 1000) / 500.0 - 1.0).astype(np.float32).reshape(1, 3, S, S)
vis.run(None, {"pixel_values": px})
vision_ms = []
for _ in range(3):
    t = time.perf_counter(); vis.run(None, {"pixel_values": px}); vision_ms.append((time.perf_counter() - t) * 1e3)
pasts = [i for i in dec.get_inputs() if i.name.startswith("past_")]
rows = []
for C in contexts:
    x = ((np.arange(C * H) * 104729 % 2000) / 20000.0 - 0.05).astype(np.float32).reshape(1, C, H)
    feed = {p.name: np.zeros([1, p.shape[1], 0, p.shape[3]], np.float32) for p in pasts}
    P, times = 0, []
    for step in range(steps + 1):
        L = x.shape[1]
        feed.update(inputs_embeds=x, attention_mask=np.ones([1, P + L], np.int64), position_ids=np.arange(P, P + L, dtype=np.int64)[None])
        t = time.perf_counter()
        res = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, feed)))
        times.append((time.perf_counter() - t) * 1e3)
        for p in pasts:
            feed[p.name] = res[p.name.replace("past_", "present_")]
        P += L
        x = x[:, :1]
    warm = times[2:] if len(times) > 2 else times[1:]
    rows.append({"context": C, "prefill_ms": times[0], "decode_ms_per_token": sum(warm) / max(len(warm), 1)})
print(json.dumps({"backend": "onnxruntime %s CPU, %d threads" % (ort.__version__, threads), "load_s": load_s,
                  "vision_ms": vision_ms, "llm": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
PY
)
echo "onnxruntime: $ref"

"$py" - "$ours" "$ref" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("ratios (onnxruntime time / tract time; > 1 = tract faster):")
print("  vision per image: %.2f" % (min(b["vision_ms"]) / min(a["vision_ms"])))
for ra, rb in zip(a["llm"], b["llm"]):
    print("  context %d: prefill %.2f, decode %.2f (tract %.1f ms/token, onnxruntime %.1f)" % (
        ra["context"], rb["prefill_ms"] / ra["prefill_ms"], rb["decode_ms_per_token"] / ra["decode_ms_per_token"],
        ra["decode_ms_per_token"], rb["decode_ms_per_token"]))
print("  peak RSS MB: tract %.0f, onnxruntime %.0f" % (a["peak_rss_mb"], b["peak_rss_mb"]))
PY
