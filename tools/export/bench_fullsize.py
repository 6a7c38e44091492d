"""One engine's timings on a model folder, in its own process, as one JSON line.

    python tools/export/bench_fullsize.py --engine onnxruntime --folder DIR [--contexts 600,2300]
    python tools/export/bench_fullsize.py --engine torch --folder DIR --checkpoint CKPT [...]
    python tools/export/bench_fullsize.py --engine onnxruntime --folder A --ab B [--ab-chunk N] [...]

--ab: a paired comparison of two onnxruntime decoders in one process (e.g. two exports, or two
--prefill-chunk settings of one): their prefills and decode steps alternate, so both see the same
load on a shared machine; prints per-context times of each and the ratios A/B (> 1 = B faster).

The same workload and output fields as benches/model.rs (our engine), so scripts/bench-fullsize.sh
can put them side by side: vision per image (after one warm-up), then per context a prefill from an
empty cache and single-token decode steps. torch runs the checkpoint the folder was exported from
(bunny.py, the modules the export traced) with `torch.set_num_threads(threads)`; its attention is
transformers' default (sdpa), not the eager attention the export traces, so PyTorch gets its best
CPU path. onnxruntime runs the folder's .onnx files on the CPU provider with intra_op threads and
the session settings our product's ort backend uses (src/model/backend/ort.rs, CPU provider): the
arena allocator on, memory pattern on, and a prefill longer than PREFILL_CHUNK positions run in
chunks, each attending to the cache the earlier chunks wrote. Change them in both places, so this
bench measures what the product runs.
Peak RSS is this process's ru_maxrss: one engine, one model per process; weight_bytes is what
that engine loads (onnxruntime: the folder's graphs; torch: the checkpoint's safetensors, whose
tied embedding is stored once).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

# src/model/backend/ort.rs PREFILL_CHUNK
PREFILL_CHUNK = 512


def pixels(s: int) -> np.ndarray:
    return ((np.arange(3 * s * s) * 7919 % 1000) / 500.0 - 1.0).astype(np.float32).reshape(1, 3, s, s)


def embeds(context: int, hidden: int) -> np.ndarray:
    x = (np.arange(context * hidden) * 104729 % 2000) / 20000.0 - 0.05
    return x.astype(np.float32).reshape(1, context, hidden)


def weight_bytes(folder: Path, graphs: list[str]) -> int:
    total = 0
    for g in graphs:
        for f in (folder / f"{g}.onnx", folder / f"{g}.onnx.data"):
            if f.exists():
                total += f.stat().st_size
    return total


class Ort:
    def __init__(self, folder: Path, threads: int, graphs: list[str], chunk: int = PREFILL_CHUNK):
        import onnxruntime as ort

        self.chunk = chunk or sys.maxsize
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.enable_cpu_mem_arena = True
        so.enable_mem_pattern = True
        self.name = f"onnxruntime {ort.__version__} CPU"
        self.sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
                     for g in graphs}

    def vision(self, px):
        return self.sess["vision"].run(None, {"pixel_values": px})[0]

    def new_cache(self):
        dec = self.sess["decoder"]
        self.pasts = [i for i in dec.get_inputs() if i.name.startswith("past_")]
        self.outs = [o.name for o in dec.get_outputs()]
        return {p.name: np.zeros([1, p.shape[1], 0, p.shape[3]], np.float32) for p in self.pasts}, 0

    def decode(self, cache, x):
        for start in range(0, x.shape[1], self.chunk):
            logits, cache = self.decode_run(cache, x[:, start:start + self.chunk])
        return logits, cache

    def decode_run(self, cache, x):
        feed, past = cache
        L = x.shape[1]
        feed = dict(feed, inputs_embeds=x, attention_mask=np.ones([1, past + L], np.int64),
                    position_ids=np.arange(past, past + L, dtype=np.int64)[None])
        res = dict(zip(self.outs, self.sess["decoder"].run(None, feed)))
        nxt = {p.name: res[p.name.replace("past_", "present_")] for p in self.pasts}
        return res["logits"], (nxt, past + L)


class Torch:
    def __init__(self, checkpoint: Path, threads: int, graphs: list[str]):
        import torch

        import bunny

        torch.set_num_threads(threads)
        self.torch = torch
        self.name = f"torch {torch.__version__} eager CPU"
        model, _ = bunny.load_bunny(checkpoint)
        if "decoder" not in graphs:
            model.lm = None
        else:
            model.lm.config._attn_implementation = "sdpa"
        self.model = model

    def vision(self, px):
        with self.torch.inference_mode():
            return self.model.encode_images(self.torch.from_numpy(px)).numpy()

    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.lm.config), 0

    def decode(self, cache, x):
        torch = self.torch
        kv, past = cache
        L = x.shape[1]
        with torch.inference_mode():
            out = self.model.lm(inputs_embeds=torch.from_numpy(x), attention_mask=torch.ones(1, past + L, dtype=torch.long),
                                position_ids=torch.arange(past, past + L)[None], cache=kv, use_cache=True,
                                logits_to_keep=1)
        return out.logits.numpy(), (out.past_key_values, past + L)


def paired(args) -> int:
    import statistics

    m = tomllib.loads((args.folder / "manifest.toml").read_text())
    engines = {"A": Ort(args.folder, args.threads, ["decoder"], args.prefill_chunk),
               "B": Ort(args.ab, args.threads, ["decoder"], args.ab_chunk)}
    rows = []
    for c in [int(c) for c in args.contexts.split(",") if c.strip()]:
        x = embeds(c, m["llm"]["hidden_size"])
        prefill = {"A": [], "B": []}
        steps = {"A": [], "B": []}
        caches = {}
        for k in range(2 * args.repeat + 2):
            order = "AB" if k % 2 == 0 else "BA"
            for name in order:
                e = engines[name]
                t = time.perf_counter()
                if k < 2:
                    _, caches[name] = e.decode(e.new_cache(), x)
                    prefill[name].append((time.perf_counter() - t) * 1e3)
                else:
                    _, caches[name] = e.decode(caches[name], x[:, :1])
                    steps[name].append((time.perf_counter() - t) * 1e3)
        rows.append({"context": c, "prefill_ms": prefill, "decode_ms": steps,
                     "prefill_a_over_b": min(prefill["A"]) / min(prefill["B"]),
                     "decode_a_over_b_median": statistics.median(a / b for a, b in zip(steps["A"], steps["B"]))})
    print(json.dumps({"a": str(args.folder), "a_chunk": args.prefill_chunk, "b": str(args.ab), "b_chunk": args.ab_chunk,
                      "threads": args.threads, "llm": rows}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["onnxruntime", "torch"], required=True)
    ap.add_argument("--folder", type=Path, required=True, help="exported model folder")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint folder (torch)")
    ap.add_argument("--contexts", default="600", help="comma list; empty = vision only")
    ap.add_argument("--decode", type=int, default=10, help="decode steps per context")
    ap.add_argument("--repeat", type=int, default=3, help="vision runs after the warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-chunk", type=int, default=PREFILL_CHUNK,
                    help="onnxruntime: positions per decoder run in a prefill (0 = all in one run; "
                         "the product uses PREFILL_CHUNK)")
    ap.add_argument("--ab", type=Path, help="onnxruntime: second folder for a paired comparison")
    ap.add_argument("--ab-chunk", type=int, default=PREFILL_CHUNK, help="--prefill-chunk of the --ab folder")
    args = ap.parse_args()
    if args.ab is not None:
        return paired(args)
    m = tomllib.loads((args.folder / "manifest.toml").read_text())
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    # The graphs our runtime loads for the same work (embed too: generation needs it).
    graphs = ["vision"] + (["embed", "decoder"] if contexts else [])
    t = time.perf_counter()
    if args.engine == "torch":
        if args.checkpoint is None:
            ap.error("--engine torch needs --checkpoint")
        eng = Torch(args.checkpoint, args.threads, graphs)
    else:
        eng = Ort(args.folder, args.threads, graphs, args.prefill_chunk)
    load_s = time.perf_counter() - t
    px = pixels(m["vision"]["image_size"])
    eng.vision(px)
    vision_ms = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        eng.vision(px)
        vision_ms.append((time.perf_counter() - t) * 1e3)
    rows = []
    for c in contexts:
        x = embeds(c, m["llm"]["hidden_size"])
        cache = eng.new_cache()
        t = time.perf_counter()
        _, cache = eng.decode(cache, x)
        prefill_ms = (time.perf_counter() - t) * 1e3
        steps = []
        for _ in range(args.decode):
            t = time.perf_counter()
            _, cache = eng.decode(cache, x[:, :1])
            steps.append((time.perf_counter() - t) * 1e3)
        rows.append({"context": c, "prefill_ms": prefill_ms, "decode_ms": steps[1:] if len(steps) > 1 else steps})
    print(json.dumps({"engine": eng.name, "threads": args.threads, "load_s": load_s, "vision_ms": vision_ms,
                      "llm": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "weight_bytes": weight_bytes(args.folder, graphs) if args.engine == "onnxruntime"
                      else sum(f.stat().st_size for f in args.checkpoint.glob("*.safetensors"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
