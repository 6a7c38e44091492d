"""Does a SpatialBot checkpoint copy the Depth API's value into its answer? (docs/spatialqa.md,
"Tried, not shipped: copying")

    python tools/train/copy_check.py --checkpoint DIR --set VAL_DIR [--questions 40] [--counterfactual]

For the first N point-depth questions of a SpatialQA set, teacher-forced (the whole conversation
given, API reply included): how many of the last answer's millimetre digits the model predicts
right, and for how many questions all of them — once as the runtime asks (two images, RGB-D) and
once with one image and the API turns kept (`train_spatialbot.py --api-rgb`). With
--counterfactual the API values are moved first (`train_spatialbot.counterfactual`), so that the
depth image no longer agrees with the API: a model that copies keeps its score, one that reads the
depth off the image loses it.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import bunny  # noqa: E402
import train_spatialbot as ts  # noqa: E402


def value_positions(tok, targets: list[int]) -> list[int]:
    """Positions (of the spliced sequence) predicting the last answer's digits after its last ')'."""
    last: list[int] = []
    for k in reversed([k for k, t in enumerate(targets) if t >= 0]):
        if last and k != last[-1] - 1:
            break
        last.append(k)
    last.sort()
    closes = [i for i, k in enumerate(last) if tok.id_to_token(targets[k]) == ")"]
    start = closes[-1] if closes else 0
    return [k for k in last[start:] if (tok.id_to_token(targets[k]) or "").isdigit()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--counterfactual", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = bunny.load_bunny(args.checkpoint)
    model.eval()
    tok = bunny.load_tokenizer(args.checkpoint)
    _, questions = ts.read_set(args.set)
    questions = [q for q in questions if q["category"] == "point_depth"][: args.questions]
    if args.counterfactual:
        rng = random.Random(5)
        questions = [ts.counterfactual(q, rng) or q for q in questions]
    images = ts.Images(args.set, model.spec.image_size)
    T = model.spec.tokens_per_image
    for name, pieces_of, depth in (("RGB-D", ts.pieces_rgbd, True), ("one image + API turns", ts.pieces_rgb_api, False)):
        digits = digits_right = values_right = 0
        for q in questions:
            ids, flags = ts.segments_to_ids(tok, pieces_of(q))
            with torch.no_grad():
                embeds = model.encode_images(torch.from_numpy(np.stack(images.tensors(q, depth))))
                logits = model.lm(inputs_embeds=bunny.splice(model, ids, embeds)).logits[0]
            targets = bunny.answer_targets(ids, flags, T)
            ok = [int(logits[k].argmax()) == targets[k] for k in value_positions(tok, targets)]
            digits += len(ok)
            digits_right += sum(ok)
            values_right += bool(ok) and all(ok)
        print(f"{args.checkpoint} {name}: value digits right {digits_right}/{digits}, "
              f"values right {values_right}/{len(questions)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
