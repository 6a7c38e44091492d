"""Checks committed model folders without PyTorch: manifest hashes and the reference cases on
onnxruntime and on tract (its Python bindings, default ONNX loader, no fact overrides).

    python tools/export/check_fixtures.py models/tiny-spatialbot models/tiny-policy

Needs numpy, onnxruntime and tract (the test venv). The decoder is chained on each engine's own
cache, as the Rust engine must do. Exits 1 on any mismatch, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

import numpy as np


def check_folder(folder: Path) -> list[str]:
    import onnxruntime as ort

    errors = []
    manifest_path = folder / "manifest.toml"
    manifest = tomllib.loads(manifest_path.read_text())
    listed = manifest.get("files", {})
    present = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.toml")
    if sorted(listed) != present:
        errors.append(f"{manifest_path}: [files] lists {sorted(listed)} but the folder has {present}")
    for name, want in listed.items():
        path = folder / name
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != want:
            errors.append(f"{path}: sha256 differs from {manifest_path}")
    ref = folder / "reference"
    cases = json.loads((ref / "cases.json").read_text())
    tol = cases["tolerance"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    engines = {}
    ort_sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
                for g in ("vision", "embed", "decoder")}
    engines["onnxruntime"] = {g: (lambda s: lambda xs: s.run(None, dict(zip([i.name for i in s.get_inputs()], xs))))(s)
                              for g, s in ort_sess.items()}
    import tract

    def tract_runner(g):
        plan = tract.onnx().load(str(folder / f"{g}.onnx")).into_model().into_runnable()
        return lambda xs: [t.to_numpy() for t in plan.run(list(xs))]

    engines["tract"] = {g: tract_runner(g) for g in ("vision", "embed", "decoder")}
    n_layers = manifest["llm"]["num_layers"]
    kv, hd = manifest["llm"]["num_kv_heads"], manifest["llm"]["head_dim"]
    dec_inputs = [i.name for i in ort_sess["decoder"].get_inputs()]
    dec_outputs = [o.name for o in ort_sess["decoder"].get_outputs()]
    if len(dec_inputs) - 3 != 2 * n_layers:
        errors.append(f"{folder / 'decoder.onnx'}: {len(dec_inputs) - 3} past inputs, manifest says {n_layers} layers")

    for engine, run in engines.items():
        def close(what, got, want, t):
            d = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            if not d <= t:
                errors.append(f"{folder} ({engine}): {what} differs from the reference by {d:.3g} (tolerance {t:g})")

        v = ref / "case_vision"
        close("vision image_embeds", run["vision"]([np.load(v / "in_pixel_values.npy")])[0],
              np.load(v / "out_image_embeds.npy"), tol["image_embeds"])
        e = ref / "case_embed"
        close("embed inputs_embeds", run["embed"]([np.load(e / "in_input_ids.npy")])[0],
              np.load(e / "out_inputs_embeds.npy"), tol["inputs_embeds"])
        past = [np.zeros((1, kv, 0, hd), np.float32) for _ in dec_inputs[3:]]
        for step in range(cases["decode_steps"] + 1):
            s = ref / "case_decoder" / f"step_{step}"
            feeds = [np.load(s / f"in_{n}.npy") for n in dec_inputs[:3]] + list(past)
            out = run["decoder"](feeds)
            close(f"decoder step {step} logits", out[0], np.load(s / "out_logits.npy"), tol["logits"])
            if int(out[0][0, -1].argmax()) != cases["greedy_tokens"][step]:
                errors.append(f"{folder} ({engine}): decoder step {step} greedy token differs from cases.json")
            for name, got in zip(dec_outputs[1:], out[1:]):
                f = s / f"out_{name}.npy"
                if f.is_file():
                    close(f"decoder step {step} {name}", got, np.load(f), tol["present"])
            past = out[1:]
    return errors


def main() -> int:
    folders = [Path(a) for a in sys.argv[1:]]
    failed = 0
    for folder in folders:
        errors = check_folder(folder)
        for e in errors:
            print(f"FAIL {e}")
        failed += bool(errors)
        print(f"{'ok  ' if not errors else 'FAIL'} {folder}")
    print(f"fixtures: {len(folders) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
