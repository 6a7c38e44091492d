"""Load time and peak memory of one graph of a model folder (one graph per process).

    python tools/export/bench_load.py MODEL_DIR vision|embed|decoder [--threads 2] [--run]
    python tools/export/bench_load.py MODEL_DIR decoder --engine tract   # load + optimise only

--run also times one inference: vision on one image; decoder a 64-token prefill and 5 decode steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tomllib
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("graph", choices=["vision", "embed", "decoder"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--engine", choices=["onnxruntime", "tract"], default="onnxruntime")
    args = ap.parse_args()
    if args.engine == "tract":
        import tract

        t = time.perf_counter()
        model = tract.onnx().load(str(args.folder / f"{args.graph}.onnx"))
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        model.into_model().into_runnable()
        print(json.dumps({"graph": args.graph, "tract_load_s": round(parse_s, 2),
                          "tract_optimise_s": round(time.perf_counter() - t, 2),
                          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}))
        return 0
    import onnxruntime as ort

    m = tomllib.loads((args.folder / "manifest.toml").read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    t = time.perf_counter()
    sess = ort.InferenceSession(str(args.folder / f"{args.graph}.onnx"), so, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t
    result = {"graph": args.graph, "ort_load_s": round(load_s, 2)}
    if args.run:
        if args.graph == "vision":
            s = m["vision"]["image_size"]
            x = np.zeros((1, 3, s, s), np.float32)
            t = time.perf_counter()
            sess.run(None, {"pixel_values": x})
            result["ort_one_image_s"] = round(time.perf_counter() - t, 2)
        elif args.graph == "decoder":
            llm = m["llm"]
            names = [i.name for i in sess.get_inputs()][3:]
            past = [np.zeros((1, llm["num_kv_heads"], 0, llm["head_dim"]), np.float32) for _ in names]
            L = 64
            x = np.random.default_rng(0).standard_normal((1, L, llm["hidden_size"])).astype(np.float32) * 0.02
            t = time.perf_counter()
            out = sess.run(None, {"inputs_embeds": x, "attention_mask": np.ones((1, L), np.int64),
                                  "position_ids": np.arange(L)[None], **dict(zip(names, past))})
            result["ort_prefill64_s"] = round(time.perf_counter() - t, 2)
            steps = []
            for k in range(5):
                P = L + k
                t = time.perf_counter()
                out = sess.run(None, {"inputs_embeds": x[:, :1], "attention_mask": np.ones((1, P + 1), np.int64),
                                      "position_ids": np.array([[P]]), **dict(zip(names, out[1:]))})
                steps.append(time.perf_counter() - t)
            result["ort_decode_ms_per_token"] = round(1000 * float(np.mean(steps)), 1)
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
