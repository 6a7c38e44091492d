"""An fp32 model folder → a folder with reduced-precision MatMul weights, and its accuracy vs fp32.

    python tools/export/quantize.py --src DIR --out DIR --mode int8|q4 [--check-steps 24]

int8: onnxruntime dynamic quantisation of every MatMul weight (signed int8, per output channel;
activations quantised per tensor at run time: DynamicQuantizeLinear + MatMulInteger).
q4:   com.microsoft MatMulNBits, 4-bit blocks of 32 along K with an fp32 scale per block
(symmetric), the layout tract maps onto its Q4_0 kernels.
The embedding table (a Gather) stays fp32. Graph inputs and outputs keep their fp32 contract, so
the folder is used like any other (models/MANIFEST.md; manifest dtype = int8 | q4).

--check-steps N (default 24) runs onnxruntime on both folders with the same inputs: vision on one
image, the decoder on the fp32 folder's reference prefill (reference/case_decoder/step_0) and then
N greedy steps, each folder feeding its own tokens back through its own embed graph. Prints the
max |Δ| of image embeddings and logits (steps where both folders saw the same tokens), and the
greedy agreement; writes it to OUT/quantization.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

EXTERNAL_DATA_BYTES = 1 << 30


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(model, dst: Path) -> None:
    import onnx

    data = dst.with_name(dst.name + ".data")
    if data.exists():
        data.unlink()
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(model, str(dst))


def quantize_graph(src: Path, dst: Path, mode: str) -> None:
    import onnx

    if mode == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True})
        # quantize_dynamic names its external data after the graph; re-save under ours.
        model = onnx.load(str(dst), load_external_data=True)
        for f in dst.parent.glob(dst.name + "*.data"):
            f.unlink()
        save(model, dst)
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)

        model = onnx.load(str(src), load_external_data=True)
        cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=None)
        q = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True, algo_config=cfg)
        q.process()
        save(q.model.model, dst)


def rewrite_manifest(src: Path, out: Path, mode: str) -> None:
    text = (src / "manifest.toml").read_text()
    text = re.sub(r'^dtype = ".*"$', f'dtype = "{mode}"', text, count=1, flags=re.M)
    text = re.sub(r'^name = "(.*)"$', lambda m: f'name = "{m.group(1)}-{mode}"', text, count=1, flags=re.M)
    head, _, _ = text.partition("[files]\n")
    files = sorted(f for f in out.iterdir() if f.is_file() and f.name not in ("manifest.toml", "quantization.json"))
    lines = [f'"{f.name}" = "{sha256(f)}"' for f in files]
    (out / "manifest.toml").write_text(head + "[files]\n" + "\n".join(lines) + "\n")


def check(src: Path, out: Path, steps: int) -> dict:
    import onnxruntime as ort
    import tomllib

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    m = tomllib.loads((src / "manifest.toml").read_text())
    s = m["vision"]["image_size"]
    rng = np.random.default_rng(7)
    report: dict = {"steps": steps}

    def sess(folder, graph):
        return ort.InferenceSession(str(folder / f"{graph}.onnx"), so, providers=["CPUExecutionProvider"])

    px = rng.uniform(-1, 1, (1, 3, s, s)).astype(np.float32)
    want = sess(src, "vision").run(None, {"pixel_values": px})[0]
    got = sess(out, "vision").run(None, {"pixel_values": px})[0]
    report["image_embeds_max_abs"] = float(np.max(np.abs(got - want)))
    report["image_embeds_abs_max"] = float(np.max(np.abs(want)))
    report["image_embeds_rel_rms"] = float(np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)))
    case = src / "reference" / "case_decoder" / "step_0"
    if not case.exists():
        return report
    x0 = np.load(case / "in_inputs_embeds.npy")

    def greedy(folder):
        dec, emb = sess(folder, "decoder"), sess(folder, "embed")
        pasts = [i for i in dec.get_inputs() if i.name.startswith("past_")]
        outs = [o.name for o in dec.get_outputs()]
        feed = {p.name: np.zeros([1, p.shape[1], 0, p.shape[3]], np.float32) for p in pasts}
        x, P, toks, logits = x0, 0, [], []
        for _ in range(steps + 1):
            L = x.shape[1]
            feed.update(inputs_embeds=x, attention_mask=np.ones([1, P + L], np.int64),
                        position_ids=np.arange(P, P + L, dtype=np.int64)[None])
            res = dict(zip(outs, dec.run(None, feed)))
            for p in pasts:
                feed[p.name] = res[p.name.replace("past_", "present_")]
            P += L
            logits.append(res["logits"][0, -1])
            toks.append(int(res["logits"][0, -1].argmax()))
            x = emb.run(None, {"input_ids": np.array([[toks[-1]]], np.int64)})[0]
        return toks, logits

    t_ref, l_ref = greedy(src)
    t_q, l_q = greedy(out)
    same = 0
    while same < len(t_ref) and t_ref[same] == t_q[same]:
        same += 1
    # Logits are comparable while both saw the same history: the prefill and every step up to and
    # including the first disagreement.
    upto = min(same + 1, len(t_ref))
    report["logits_max_abs"] = float(max(np.max(np.abs(a - b)) for a, b in zip(l_ref[:upto], l_q[:upto])))
    report["logits_std"] = float(np.std(l_ref[0]))
    report["greedy_tokens_fp32"] = t_ref
    report["greedy_tokens_quant"] = t_q
    report["greedy_agree_prefix"] = same
    report["greedy_agree_of"] = len(t_ref)
    report["prefill_length"] = int(x0.shape[1])
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="fp32 model folder (tools/export/export.py)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mode", choices=["int8", "q4"], required=True)
    ap.add_argument("--graphs", default="vision,decoder", help="graphs to quantise (the others are copied)")
    ap.add_argument("--check-steps", type=int, default=24, help="0 = no accuracy check")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = [g for g in args.graphs.split(",") if g]
    times = {}
    for g in ("vision", "embed", "decoder"):
        src = args.src / f"{g}.onnx"
        if g in wanted:
            t = time.perf_counter()
            quantize_graph(src, args.out / f"{g}.onnx", args.mode)
            times[g] = round(time.perf_counter() - t, 1)
        else:
            for f in (src, src.with_name(src.name + ".data")):
                if f.exists():
                    shutil.copyfile(f, args.out / f.name)
    shutil.copyfile(args.src / "tokenizer.json", args.out / "tokenizer.json")
    rewrite_manifest(args.src, args.out, args.mode)
    sizes = {f.name: f.stat().st_size for f in sorted(args.out.iterdir()) if f.suffix in (".onnx", ".data")}
    print(json.dumps({"quantize_s": times, "bytes": sizes}), flush=True)
    if args.check_steps:
        report = check(args.src, args.out, args.check_steps)
        (args.out / "quantization.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in report.items() if not k.startswith("greedy_tokens")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
