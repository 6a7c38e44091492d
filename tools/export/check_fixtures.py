"""Checks committed model folders without PyTorch: manifest hashes and the reference cases on onnxruntime.

    python tools/export/check_fixtures.py models/tiny-spatialbot models/tiny-policy

Needs only numpy and onnxruntime (the test venv). The decoder is chained on its own cache, as
the Rust engine must do. Exits 1 on any mismatch, naming the file.
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
    sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
            for g in ("vision", "embed", "decoder")}

    def close(what, got, want, t):
        d = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        if not d <= t:
            errors.append(f"{folder}: {what} differs from the reference by {d:.3g} (tolerance {t:g})")

    v = ref / "case_vision"
    close("vision image_embeds", sess["vision"].run(None, {"pixel_values": np.load(v / "in_pixel_values.npy")})[0],
          np.load(v / "out_image_embeds.npy"), tol["image_embeds"])
    e = ref / "case_embed"
    close("embed inputs_embeds", sess["embed"].run(None, {"input_ids": np.load(e / "in_input_ids.npy")})[0],
          np.load(e / "out_inputs_embeds.npy"), tol["inputs_embeds"])
    dec = sess["decoder"]
    past_names = [i.name for i in dec.get_inputs()][3:]
    n_layers = manifest["llm"]["num_layers"]
    kv, hd = manifest["llm"]["num_kv_heads"], manifest["llm"]["head_dim"]
    past = [np.zeros((1, kv, 0, hd), np.float32) for _ in past_names]
    if len(past_names) != 2 * n_layers:
        errors.append(f"{folder / 'decoder.onnx'}: {len(past_names)} past inputs, manifest says {n_layers} layers")
    for step in range(cases["decode_steps"] + 1):
        s = ref / "case_decoder" / f"step_{step}"
        feeds = {n: np.load(s / f"in_{n}.npy") for n in ("inputs_embeds", "attention_mask", "position_ids")}
        feeds.update(dict(zip(past_names, past)))
        out = dec.run(None, feeds)
        close(f"decoder step {step} logits", out[0], np.load(s / "out_logits.npy"), tol["logits"])
        if int(out[0][0, -1].argmax()) != cases["greedy_tokens"][step]:
            errors.append(f"{folder}: decoder step {step} greedy token differs from cases.json")
        for name, got in zip([o.name for o in dec.get_outputs()][1:], out[1:]):
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
