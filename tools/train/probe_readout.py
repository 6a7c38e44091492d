"""Can a SpatialBot learn to read the scene out of its image tokens? A diagnostic for
train_spatialbot.py's scene readout (docs/spatialqa.md, "Results").

    python tools/train/probe_readout.py --train DIR (--init CHECKPOINT | --fresh CONFIG_DIR)
        [--path lm|direct] [--targets all|gripper|named] [--position-weight W]
        [--dense-weight W] [--rgb-share S] [--lr LR] [--warmup N] [--steps N] [--threads T]

Trains only the readout loss (SceneTargets, weight 10) and prints its mean every 25 steps beside
the constant predictor's mean squared error over the same targets, so a flat curve at that
level means nothing is read:
- `--path lm`: the head reads the language model's last-layer state at the end of the first
  prompt (where train_spatialbot.py's --scene-weight head sits); the whole model trains.
- `--path direct`: the head reads the colour image's tokens directly (layer-normed, flattened),
  the tower and projector train; the tokens' own capacity, without the language model.
- `--targets gripper|named`: only the gripper's or the first named object's centroid.
- `--position-weight W`: a linear head on every (layer-normed) image token must also give its
  own patch's column and row in [-1, 1] (weight W).
- `--dense-weight W`: a linear head on the colour image's tokens must give each patch's share of
  every object and the gripper (train_spatialbot.py's --dense-weight).
- `--rgb-share S`: the share of examples asked without the depth image (default the trainer's
  0.2; 1.0: one image, 64 tokens).
- `--warmup N`: the learning rate rises linearly over the first N steps.
`--fresh DIR` builds a new model from DIR's config.json and tokenizer.json (a trainer's output
folder); `--init` loads a checkpoint's weights. Needs a set written with `spatialqa --labels`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import bunny  # noqa: E402
import train_spatialbot as trainer  # noqa: E402

COLUMNS = {"gripper": slice(9, 11), "named": slice(1, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True)
    start = ap.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path)
    start.add_argument("--fresh", type=Path)
    ap.add_argument("--path", choices=["lm", "direct"], default="lm")
    ap.add_argument("--targets", choices=["all", "gripper", "named"], default="all")
    ap.add_argument("--position-weight", type=float, default=0.0)
    ap.add_argument("--dense-weight", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--rgb-share", type=float, default=trainer.RGB_ONLY_SHARE,
                    help="the share of examples asked without the depth image")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    folder = args.init or args.fresh
    spec = bunny.read_spec(folder)
    if args.init:
        model, _ = bunny.load_bunny(folder)
    else:
        model = bunny.Bunny(spec)
    model.train()
    tok = bunny.load_tokenizer(folder)
    patch = int(spec.vision_config["patch_size"])
    labels = trainer.Labels(args.train, spec.image_size, patch)
    scenes = trainer.SceneTargets(labels)
    keep = np.ones(scenes.width(), np.float32)
    if args.targets != "all":
        keep[:] = 0.0
        keep[COLUMNS[args.targets]] = 1.0

    def targets(q: dict, with_depth: bool):
        t, w = scenes.of(q, with_depth)
        return t, w * keep

    _, questions = trainer.read_set(args.train)
    questions = rng.sample(questions, min(6000, len(questions)))
    examples = trainer.examples_of(questions, tok, rng, args.rgb_share)
    images = trainer.Images(args.train, spec.image_size)

    # The constant predictor's error over these targets: the level of reading nothing.
    ys, ws = zip(*(targets(q, True) for q in questions[:2000]))
    ys, ws = np.stack(ys), np.stack(ws)
    mean = (ys * ws).sum(0) / np.maximum(ws.sum(0), 1.0)
    constant = float(((ys - mean) ** 2 * ws).sum() / max(ws.sum(), 1.0))

    T = spec.tokens_per_image
    hidden = int(spec.config["hidden_size"])
    head = torch.nn.Linear(hidden * (T if args.path == "direct" else 1), scenes.width())
    grid = spec.image_size // patch
    row, col = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    own = torch.from_numpy(np.stack([col.reshape(-1), row.reshape(-1)], 1).astype(np.float32) / max(grid - 1, 1) * 2 - 1)
    position_head = torch.nn.Linear(hidden, 2)
    dense_head = torch.nn.Linear(hidden, labels.classes())
    params = [p for m in (model, head, position_head, dense_head) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))
    print(f"path {args.path}, targets {args.targets}, constant predictor {constant:.4f}", flush=True)
    t0, recent = time.time(), []
    for step in range(args.steps):
        batch = rng.sample(examples, 16)
        px = torch.from_numpy(np.stack([p for ex in batch for p in images.tensors(ex["q"], ex["depth"])]))
        embeds = model.encode_images(px)
        # Each example's colour image: its first row in `embeds` (an RGB-D example has two).
        first = np.cumsum([0] + [2 if ex["depth"] else 1 for ex in batch])[:-1]
        if args.path == "direct":
            feats = torch.nn.functional.layer_norm(embeds[first], embeds.shape[-1:]).flatten(1)
            pairs = [targets(ex["q"], False) for ex in batch]
        else:
            seqs, tgts, at, k = [], [], [], 0
            for ex in batch:
                n = 2 if ex["depth"] else 1
                seqs.append(bunny.splice(model, ex["ids"], embeds[k : k + n])[0])
                k += n
                tgts.append(bunny.answer_targets(ex["ids"], ex["flags"], T))
                at.append(trainer.first_answer_position(ex["ids"], ex["flags"], T))
            _, feats = bunny.padded_lm_loss(model, seqs, tgts, hidden_at=at)
            pairs = [targets(ex["q"], ex["depth"]) for ex in batch]
        want = torch.from_numpy(np.stack([p[0] for p in pairs]))
        wt = torch.from_numpy(np.stack([p[1] for p in pairs]))
        readout = ((head(feats) - want).pow(2) * wt).sum() / wt.sum().clamp(min=1.0)
        total = 10.0 * readout
        if args.position_weight > 0:
            normed = torch.nn.functional.layer_norm(embeds, embeds.shape[-1:])
            total = total + args.position_weight * (position_head(normed) - own).pow(2).mean()
        if args.dense_weight > 0:
            shares = torch.from_numpy(np.stack([labels.shares(ex["q"]["image"]) for ex in batch]))
            total = total + args.dense_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                dense_head(embeds[first]), shares)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        recent.append(readout.item())
        if (step + 1) % 25 == 0:
            print(json.dumps({"step": step + 1, "readout": round(float(np.mean(recent)), 4),
                              "constant": round(constant, 4), "wall_s": round(time.time() - t0)}), flush=True)
            recent = []
    return 0


if __name__ == "__main__":
    sys.exit(main())
