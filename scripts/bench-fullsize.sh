#!/usr/bin/env bash
# Full-size speed table: tract (ours, benches/model.rs), onnxruntime (Python, the same .onnx files)
# and PyTorch eager (the checkpoint the folders were exported from), in one command on this
# machine. Each engine runs each model in its own process (peak RSS = that process's high-water
# mark); the engine order rotates every round, and the summary gives the fastest and the median
# of all rounds, with ratios vs PyTorch (> 1 = faster than PyTorch).
#
# Usage: scripts/bench-fullsize.sh POLICY_DIR POLICY_CHECKPOINT [VISION_DIR VISION_CHECKPOINT]
#   POLICY_DIR      exported Qwen1.5-0.5B + CLIP-L/336 folder (tools/export/export.py)
#   VISION_DIR      exported folder whose vision graph is SigLIP-so400m/384 (only that graph runs)
# Env: ROUNDS (3), THREADS (2), CONTEXTS (600,2300), DECODE (decode steps per context, 10),
#      ENGINES ("tract onnxruntime torch"), EXPORT_PYTHON (python with torch, transformers,
#      onnxruntime; default .venv-export/bin/python), OUT (results folder, default a temp dir),
#      EXTRA ("label=DIR ..." more folders, e.g. int8 exports, run with tract and onnxruntime),
#      PREFILL_CHUNK (onnxruntime: positions per decoder run in a prefill; default the product's,
#      0 = the whole prefill in one run).
# onnxruntime runs with our ort backend's CPU settings (tools/export/bench_fullsize.py says which).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,19p "$0"; exit 2; }
policy=$1 policy_ckpt=$2 vision=${3:-} vision_ckpt=${4:-}
rounds=${ROUNDS:-3} threads=${THREADS:-2} contexts=${CONTEXTS:-600,2300} decode=${DECODE:-10}
engines=${ENGINES:-tract onnxruntime torch}
py=${EXPORT_PYTHON:-.venv-export/bin/python}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

case " $engines " in
  *" tract "*) cargo bench --bench model --no-run --quiet 2>/dev/null || cargo bench --bench model --no-run ;;
esac

run_one() { # label engine folder checkpoint contexts
  local label=$1 engine=$2 folder=$3 ckpt=$4 ctx=$5 line
  if [ "$engine" = tract ]; then
    line=$(SBE_BENCH_MODEL="$folder" SBE_BENCH_CONTEXTS="$ctx" SBE_BENCH_THREADS="$threads" \
      SBE_BENCH_DECODE="$((decode + 1))" SBE_BENCH_REPEAT=3 cargo bench --bench model --quiet 2>/dev/null | tail -1)
  else
    line=$("$py" tools/export/bench_fullsize.py --engine "$engine" --folder "$folder" ${ckpt:+--checkpoint "$ckpt"} \
      --contexts "$ctx" --decode "$((decode + 1))" --repeat 3 --threads "$threads" \
      ${PREFILL_CHUNK:+--prefill-chunk "$PREFILL_CHUNK"} | tail -1)
  fi
  echo "{\"label\": \"$label\", \"kind\": \"$engine\", \"round\": $r, \"result\": $line}" >>"$results"
  echo "round $r $label $engine: $line" >&2
}

for r in $(seq 1 "$rounds"); do
  # Rotate the engine order so no engine always runs first (page cache, neighbours' load).
  set -- $engines
  for _ in $(seq 2 "$r"); do set -- "${@:2}" "$1"; done
  for e in "$@"; do
    run_one policy "$e" "$policy" "$policy_ckpt" "$contexts"
    if [ -n "$vision" ]; then run_one vision "$e" "$vision" "$vision_ckpt" ""; fi
  done
  for extra in ${EXTRA:-}; do
    for e in tract onnxruntime; do
      case " $engines " in *" $e "*) run_one "${extra%%=*}" "$e" "${extra#*=}" "" "$contexts" ;; esac
    done
  done
done

"$py" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def table(label):
    by = {}
    for r in rows:
        if r["label"] == label:
            by.setdefault(r["kind"], []).append(r["result"])
    return by
def stat(xs):
    return (min(xs), statistics.median(xs)) if xs else None
def metrics(results):
    m = {}
    for res in results:
        for v in res["vision_ms"]:
            m.setdefault("vision ms/image", []).append(v)
        for row in res["llm"]:
            c = row["context"]
            m.setdefault(f"prefill {c} ms", []).append(row["prefill_ms"])
            m.setdefault(f"decode @{c} ms/token", []).extend(row["decode_ms"])
        m.setdefault("peak RSS MB", []).append(res["peak_rss_mb"])
        m.setdefault("weights MB", []).append(res["weight_bytes"] / 2**20)
    return m
labels = []
for r in rows:
    if r["label"] not in labels:
        labels.append(r["label"])
base = {k: metrics(v) for k, v in table("policy").items()}
basev = {k: metrics(v) for k, v in table("vision").items()}
for label in labels:
    by = {k: metrics(v) for k, v in table(label).items()}
    ref = (basev if label == "vision" else base).get("torch", {})
    print(f"\n## {label}  (fastest / median of all runs; ×: PyTorch time / engine time, > 1 = faster)")
    names = [n for n in next(iter(by.values()))]
    for name in names:
        cells = []
        for kind, m in by.items():
            if name not in m:
                continue
            lo, med = stat(m[name])
            cell = f"{kind} {lo:.1f} / {med:.1f}"
            if name.startswith("weights"):
                cell = f"{kind} {lo:.0f}"
            elif name.startswith("peak"):
                cell += f" ({lo / m['weights MB'][0]:.2f}× weights)"
            elif name in ref and kind != "torch":
                cell += f" ×{min(ref[name]) / lo:.2f} / ×{statistics.median(ref[name]) / med:.2f}"
            cells.append(cell)
        print(f"  {name:22s} " + " | ".join(cells))
PY
echo "raw results: $results"
