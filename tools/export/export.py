"""Hugging Face Bunny/SpatialBot checkpoint folder → verified ONNX model folder.

    python tools/export/export.py --checkpoint DIR --out models/NAME [--dtype fp32|fp16] [--verify]

Writes vision.onnx, embed.onnx, decoder.onnx (+ .data files for large weights), tokenizer.json and
manifest.toml (models/MANIFEST.md). With --verify, runs PyTorch and onnxruntime on the graphs
(vision, embed, a decoder prefill and greedy decode steps), writes the cases under reference/ and
exits 1 when they disagree beyond the tolerance or the greedy tokens differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import bunny  # noqa: E402

OPSET = 17
LOGITS_TOL = 1e-4
EMBED_TOL = 1e-4
FP16_TOL = 2e-2
DECODE_STEPS = 5
EXTERNAL_DATA_BYTES = 1 << 30


class ExportError(Exception):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- graph wrappers ------------------------------------------------------------------------------


def wrappers(model: bunny.Bunny, dtype):
    import torch
    from torch import nn
    from transformers import DynamicCache

    # The graph's interface is fp32. In an fp32 export the tracer would still write each
    # `.to(float32)` as a Cast node, and onnxruntime runs a Cast that feeds a graph output as a
    # full copy: every decoder step copied the whole KV cache once more (19 % of a decode step at
    # 2,300 positions of context on the full-size policy). So cast only when the types differ.
    def to_model(x):
        return x if dtype == torch.float32 else x.to(dtype)

    def to_fp32(x):
        return x if dtype == torch.float32 else x.float()

    class Vision(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, pixel_values):
            return to_fp32(self.m.encode_images(to_model(pixel_values)))

    class Embed(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids):
            return to_fp32(self.m.embed(input_ids))

    n_layers = model.lm.config.num_hidden_layers

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = model.lm

        def forward(self, inputs_embeds, attention_mask, position_ids, *past):
            cache = DynamicCache(
                [(to_model(past[2 * i]), to_model(past[2 * i + 1])) for i in range(n_layers)],
                config=self.lm.config,
            )
            out = self.lm(
                inputs_embeds=to_model(inputs_embeds),
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [to_fp32(layer.keys), to_fp32(layer.values)]
            return (to_fp32(out.logits), *present)

    return Vision(), Embed(), Decoder()


def kv_shape(model: bunny.Bunny):
    cfg = model.lm.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_key_value_heads, head_dim


def decoder_names(n_layers: int):
    past, present = [], []
    for i in range(n_layers):
        past += [f"past_key_{i}", f"past_value_{i}"]
        present += [f"present_key_{i}", f"present_value_{i}"]
    return past, present


# --- cleaning ------------------------------------------------------------------------------------


def clean(src: Path, dst: Path, dims: dict[str, dict[int, str]]) -> None:
    """Removes value_info/doc strings/metadata and names the dynamic axes by role (tract-friendly)."""
    import onnx

    m = onnx.load(str(src), load_external_data=True)
    g = m.graph
    del g.value_info[:]
    del m.metadata_props[:]
    m.doc_string = ""
    g.doc_string = ""
    for node in g.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for v in list(g.input) + list(g.output):
        want = dims.get(v.name)
        if not want:
            continue
        shape = v.type.tensor_type.shape
        for axis, name in want.items():
            d = shape.dim[axis]
            d.Clear()
            d.dim_param = name
    onnx.checker.check_model(m, full_check=False)
    data = dst.with_name(dst.name + ".data")
    if data.exists():
        data.unlink()
    if m.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save_model(
            m, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
            location=data.name, size_threshold=1024,
        )
        os.chmod(data, 0o644)
    else:
        onnx.save_model(m, str(dst))


def export_graphs(model: bunny.Bunny, out: Path, dtype_name: str) -> dict[str, float]:
    import torch

    dtype = torch.float16 if dtype_name == "fp16" else torch.float32
    if dtype_name == "fp16":
        model.half()
    vision, embed, decoder = wrappers(model, dtype)
    S = model.spec.image_size
    n_layers = model.lm.config.num_hidden_layers
    kv, hd = kv_shape(model)
    H = model.lm.config.hidden_size
    times = {}
    tmp = out / ".export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kw = dict(opset_version=OPSET, dynamo=False, do_constant_folding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        torch.onnx.export(
            vision, (torch.zeros(2, 3, S, S),), str(tmp / "vision.onnx"),
            input_names=["pixel_values"], output_names=["image_embeds"],
            dynamic_axes={"pixel_values": {0: "images"}, "image_embeds": {0: "images"}}, **kw,
        )
        clean(tmp / "vision.onnx", out / "vision.onnx", {"pixel_values": {0: "images"}, "image_embeds": {0: "images"}})
        times["vision"] = time.perf_counter() - t
        t = time.perf_counter()
        torch.onnx.export(
            embed, (torch.zeros(1, 5, dtype=torch.long),), str(tmp / "embed.onnx"),
            input_names=["input_ids"], output_names=["inputs_embeds"],
            dynamic_axes={"input_ids": {1: "seq"}, "inputs_embeds": {1: "seq"}}, **kw,
        )
        clean(tmp / "embed.onnx", out / "embed.onnx", {"input_ids": {1: "seq"}, "inputs_embeds": {1: "seq"}})
        times["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        past_names, present_names = decoder_names(n_layers)
        Sx, P = 4, 3
        args = [
            torch.zeros(1, Sx, H),
            torch.ones(1, P + Sx, dtype=torch.long),
            torch.arange(P, P + Sx)[None],
        ] + [torch.zeros(1, kv, P, hd) for _ in past_names]
        axes = {"inputs_embeds": {1: "seq"}, "attention_mask": {1: "past + seq"}, "position_ids": {1: "seq"}}
        axes.update({n: {2: "past"} for n in past_names})
        axes.update({n: {2: "past + seq"} for n in present_names})
        torch.onnx.export(
            decoder, tuple(args), str(tmp / "decoder.onnx"),
            input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names], dynamic_axes=axes, **kw,
        )
        clean(tmp / "decoder.onnx", out / "decoder.onnx", axes)
        times["decoder"] = time.perf_counter() - t
    shutil.rmtree(tmp)
    if dtype_name == "fp16":
        model.float()
    return times


# --- manifest --------------------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


MANISKILL_ACTIONS = [
    ("terminate", 0.0, 1.0, 1.0, 0.0),
    ("dx", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("dy", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("dz", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("droll", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("dpitch", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("dyaw", -0.2, 0.2, 0.4000000059604645, -0.20000000298023224),
    ("gripper", 0.0, 1.0, 1.0, 0.0),
]


def manifest_text(spec: bunny.Spec, kind: str, name: str, dtype: str, files: dict[str, str]) -> str:
    c = spec.config
    heads = c["num_attention_heads"]
    lines = [
        "# Written by tools/export/export.py; see models/MANIFEST.md.",
        "format = 1",
        f"kind = {toml_value(kind)}",
        f"name = {toml_value(name)}",
        f"dtype = {toml_value(dtype)}",
        "",
        "[vision]",
        f"tower = {toml_value(spec.tower)}",
        f"image_size = {spec.image_size}",
        f"resize = {toml_value('squash' if spec.tower == 'siglip' else 'shortest_edge_crop')}",
        # The policy scripts call the processor directly (no padding); SpatialBot pads when trained so.
        f"pad_to_square = {toml_value(kind == 'spatialbot' and spec.image_aspect_ratio == 'pad')}",
        f"pad_color = {toml_value(spec.pad_color)}",
        f"mean = {toml_value(spec.mean)}",
        f"std = {toml_value(spec.std)}",
        f"tokens_per_image = {spec.tokens_per_image}",
        f"embed_dim = {c['hidden_size']}",
        "",
        "[llm]",
        f"arch = {toml_value(spec.arch)}",
        f"hidden_size = {c['hidden_size']}",
        f"num_layers = {c['num_hidden_layers']}",
        f"num_kv_heads = {c.get('num_key_value_heads', heads)}",
        f"head_dim = {c['hidden_size'] // heads}",
        f"vocab_size = {c['vocab_size']}",
        f"context_limit = {spec.context_limit}",
        f"stop_ids = {toml_value([spec.eos_id])}",
        f"max_new_tokens = {128}",
        "",
        "[prompt]",
    ]
    if kind == "spatialbot":
        lines += [
            f"template = {toml_value('{system} USER: {images}{question} ASSISTANT:')}",
            f"image_placeholder = {toml_value('<image {n}>' + chr(10))}",
            f"system = {toml_value(bunny.BUNNY_SYSTEM)}",
        ]
    else:
        lines += [
            f"template = {toml_value('USER:{images}{question} ASSISTANT:')}",
            f"image_placeholder = {toml_value('<image {n}>' + chr(10))}",
            f"system = {toml_value('')}",
        ]
    lines.append("")
    if kind == "policy":
        lines += [
            "[policy]",
            f"frames = {int(spec.config.get('policy_frames', 4))}",
            f"order = {toml_value('newest_first')}",
            f"pad = {toml_value('repeat_oldest')}",
            f"instruction = {toml_value(bunny.POLICY_INSTRUCTION)}",
            "depth = false",
            "",
        ]
        for n, lo, hi, scale, offset in MANISKILL_ACTIONS:
            lines += [
                "[[policy.action]]",
                f"name = {toml_value(n)}",
                f"min = {toml_value(lo)}",
                f"max = {toml_value(hi)}",
                f"scale = {toml_value(scale)}",
                f"offset = {toml_value(offset)}",
                "",
            ]
    else:
        lines += [
            "[depth_api]",
            "max_rounds = 2",
            f"reply = {toml_value('API: Depth({x},{y})={value}')}",
            f"unknown = {toml_value('unknown')}",
            "neighbourhood = 0",
            "",
        ]
    lines.append("[files]")
    for fname in sorted(files):
        lines.append(f"{toml_value(fname)} = {toml_value(files[fname])}")
    return "\n".join(lines) + "\n"


# --- verification ----------------------------------------------------------------------------------


def verify_case(spec: bunny.Spec, kind: str, tok):
    """A real prompt (synthetic tabletop scene) so the greedy tokens mean something."""
    import scenes

    rng = np.random.default_rng(2024)
    if kind == "spatialbot":
        rgb, depth, _ = scenes.scene(rng, 80, 60, boxes=1)
        images = [rgb, bunny.pack_depth(depth)]
        prompt = bunny.spatialbot_prompt("What is the depth value of point <0.4,0.6>?")
        pad = spec.image_aspect_ratio == "pad"
    else:
        n = int(spec.config.get("policy_frames", 4))
        frames = scenes.moved(rng, 96, 72, 4)
        images = [f[0] for f in reversed(frames)][:n]
        prompt = bunny.policy_prompt("pick up the box", n)
        pad = False
    pixels = np.stack([bunny.preprocess(im, spec.tower, spec.image_size, pad) for im in images])
    return pixels, bunny.tokenize_chunked(tok, prompt)


def save(folder: Path, name: str, arr: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)


def verify(model: bunny.Bunny, out: Path, kind: str, tok, tol: float | None = None) -> list[str]:
    import onnxruntime as ort
    import torch

    errors = []
    spec = model.spec
    ref = out / "reference"
    if ref.exists():
        for p in sorted(ref.glob("case_*")):
            shutil.rmtree(p)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = {g: ort.InferenceSession(str(out / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
            for g in ("vision", "embed", "decoder")}
    embed_tol = tol or EMBED_TOL
    logits_tol = tol or LOGITS_TOL
    report = {"tolerance": {"image_embeds": embed_tol, "inputs_embeds": embed_tol, "logits": logits_tol,
                            "present": logits_tol}, "max_abs": {}}

    def check(what, got, want, tol):
        d = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
        report["max_abs"][what] = max(report["max_abs"].get(what, 0.0), d)
        if not d <= tol:
            errors.append(f"{what}: onnxruntime differs from PyTorch by {d:.3g} (tolerance {tol:g})")

    pixels, ids = verify_case(spec, kind, tok)
    with torch.no_grad():
        image_embeds = model.encode_images(torch.from_numpy(pixels))
    want = image_embeds.numpy()
    got = sess["vision"].run(None, {"pixel_values": pixels})[0]
    check("image_embeds", got, want, embed_tol)
    save(ref / "case_vision", "in_pixel_values", pixels)
    save(ref / "case_vision", "out_image_embeds", want)

    text_ids = np.array([[t for t in ids if t >= 0]], np.int64)
    with torch.no_grad():
        want = model.embed(torch.from_numpy(text_ids)).numpy()
    got = sess["embed"].run(None, {"input_ids": text_ids})[0]
    check("inputs_embeds", got, want, embed_tol)
    save(ref / "case_embed", "in_input_ids", text_ids)
    save(ref / "case_embed", "out_inputs_embeds", want)

    # Decoder: prefill from an empty cache, then greedy decode steps; each engine keeps its own cache.
    n_layers = model.lm.config.num_hidden_layers
    kv, hd = kv_shape(model)
    past_names, present_names = decoder_names(n_layers)
    _, _, dec = wrappers(model, torch.float32)
    with torch.no_grad():
        embeds = bunny.splice(model, ids, image_embeds).numpy()
    L = embeds.shape[1]
    t_past = [np.zeros((1, kv, 0, hd), np.float32) for _ in past_names]
    o_past = list(t_past)
    tokens_t, tokens_o = [], []
    for step in range(DECODE_STEPS + 1):
        P = t_past[0].shape[2]
        S = embeds.shape[1]
        mask = np.ones((1, P + S), np.int64)
        pos = np.arange(P, P + S, dtype=np.int64)[None]
        with torch.no_grad():
            t_out = [x.numpy() for x in dec(torch.from_numpy(embeds), torch.from_numpy(mask),
                                            torch.from_numpy(pos), *[torch.from_numpy(p) for p in t_past])]
        feeds = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": pos}
        feeds.update(dict(zip(past_names, o_past)))
        o_out = sess["decoder"].run(None, feeds)
        check("logits", o_out[0], t_out[0], logits_tol)
        for a, b in zip(o_out[1:], t_out[1:]):
            check("present", a, b, logits_tol)
        case = ref / "case_decoder" / f"step_{step}"
        save(case, "in_inputs_embeds", embeds)
        save(case, "in_attention_mask", mask)
        save(case, "in_position_ids", pos)
        save(case, "out_logits", t_out[0])
        if step in (0, DECODE_STEPS):
            for n, a in zip(present_names, t_out[1:]):
                save(case, f"out_{n}", a)
        tokens_t.append(int(t_out[0][0, -1].argmax()))
        tokens_o.append(int(o_out[0][0, -1].argmax()))
        if tokens_t[-1] != tokens_o[-1]:
            errors.append(f"decoder step {step}: greedy token {tokens_o[-1]} (onnxruntime) != {tokens_t[-1]} (PyTorch)")
        t_past, o_past = t_out[1:], o_out[1:]
        with torch.no_grad():
            embeds = model.embed(torch.tensor([[tokens_t[-1]]])).numpy()
    report["prefill_length"] = L
    report["decode_steps"] = DECODE_STEPS
    report["greedy_tokens"] = tokens_t
    report["max_abs"] = {k: float(f"{v:.3g}") for k, v in report["max_abs"].items()}
    (ref / "cases.json").write_text(json.dumps(report, indent=2) + "\n")
    return errors


# --- main --------------------------------------------------------------------------------------


def export(checkpoint: Path, out: Path, kind: str | None, name: str | None, dtype: str,
           do_verify: bool, tolerance: float | None = None) -> int:
    import torch

    torch.manual_seed(0)
    t_all = time.perf_counter()
    spec = bunny.read_spec(checkpoint)
    kind = kind or ("spatialbot" if spec.arch == "phi" else "policy")
    name = name or out.name
    tok_src = checkpoint / "tokenizer.json"
    if not tok_src.is_file():
        raise bunny.CheckpointError(f"{tok_src}: missing; export needs the checkpoint's tokenizer.json")
    t = time.perf_counter()
    model, unused = bunny.load_bunny(checkpoint)
    load_s = time.perf_counter() - t
    ignorable = (bunny.VISION_PREFIX + "post_layernorm", bunny.VISION_PREFIX + "head",
                 bunny.VISION_PREFIX + f"encoder.layers.{int(spec.vision_config['num_hidden_layers']) - 1}.")
    for k in unused:
        if not k.startswith(ignorable) and not k.endswith("rotary_emb.inv_freq"):
            print(f"warning: checkpoint tensor {k!r} is not used by the export", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    times = export_graphs(model, out, dtype)
    shutil.copyfile(tok_src, out / "tokenizer.json")
    files = {}
    for f in sorted(out.iterdir()):
        if f.is_file() and f.name != "manifest.toml":
            files[f.name] = sha256(f)
    (out / "manifest.toml").write_text(manifest_text(spec, kind, name, dtype, files))
    print(json.dumps({"load_s": round(load_s, 2), **{f"export_{k}_s": round(v, 2) for k, v in times.items()},
                      "total_s": round(time.perf_counter() - t_all, 2),
                      "bytes": {k: (out / k).stat().st_size for k in files}}), flush=True)
    if do_verify:
        # fp16: the PyTorch side runs the fp16-rounded weights in fp32, so only the graph's fp16
        # arithmetic differs; its tolerance is wider.
        tol = tolerance if tolerance is not None else (FP16_TOL if dtype == "fp16" else None)
        errors = verify(model, out, kind, bunny.load_tokenizer(out), tol)
        if errors:
            for e in errors:
                print(f"verify failed: {e}", file=sys.stderr)
            return 1
        print(f"verify ok: {(out / 'reference' / 'cases.json').read_text()}", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="Hugging Face checkpoint folder")
    ap.add_argument("--out", type=Path, required=True, help="model folder to write")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--verify", action="store_true", help="compare PyTorch and onnxruntime, write reference/")
    ap.add_argument("--kind", choices=["spatialbot", "policy"], default=None,
                    help="default: spatialbot for Phi, policy for Qwen2")
    ap.add_argument("--name", default=None, help="manifest name (default: the folder name)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps outputs reproducible)")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="absolute tolerance of every verified output (default 1e-4 fp32, 2e-2 fp16); "
                         "a model whose image embeddings are large (sim-policy: |x| up to ~200) needs more")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return export(args.checkpoint, args.out, args.kind, args.name, args.dtype, args.verify,
                      tolerance=args.tolerance)
    except bunny.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
