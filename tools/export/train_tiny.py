"""Short CPU training of a tiny Bunny model on synthetic tabletop scenes (fixed seed, one thread).

The full multimodal model is trained end to end on exactly the prompts the runtime builds:
chunked tokenisation, the bunny template, placeholders replaced by the images' embeddings
(bunny.splice), loss on the answer tokens and <|endoftext|> only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

import bunny
import scenes

BATCH = 24
DEFAULT_STEPS = {"spatialbot": 700, "policy": 2000}


def _segments_to_ids(tok, pieces: list[tuple[str, bool]]):
    """pieces: (text, is_target). Returns ids of the whole text and a per-id target flag."""
    text = ""
    flags_at: list[tuple[int, int, bool]] = []
    ids: list[int] = []
    for piece, target in pieces:
        before = len(bunny.tokenize_chunked(tok, text)) if text else 0
        text += piece
        ids = bunny.tokenize_chunked(tok, text)
        flags_at.append((before, len(ids), target))
    flags = [False] * len(ids)
    for a, b, target in flags_at:
        if target:
            for i in range(a, b):
                flags[i] = True
    return ids, flags


def _check_prefix(tok, pieces):
    """Training tokens must equal what the runtime gets tokenising each prompt on its own."""
    text = ""
    for piece, target in pieces:
        if target:
            prefix = bunny.tokenize_chunked(tok, text)
            whole = bunny.tokenize_chunked(tok, text + piece)
            if whole[: len(prefix)] != prefix:
                raise AssertionError(f"tokenisation of the answer merges into the prompt: {text!r} + {piece!r}")
        text += piece


def spatialbot_example(rng, tok, size: int):
    w, h = scenes.SIZES[int(rng.integers(len(scenes.SIZES)))]
    rgb, depth, boxes = scenes.scene(rng, w, h, boxes=1)
    images = [rgb, bunny.pack_depth(depth)]
    eos = bunny.EOS_TEXT
    if rng.random() < 0.35:
        q = ["What color is the box?", "What is the color of the box?"][int(rng.integers(2))]
        p = bunny.spatialbot_prompt(q)
        pieces = [(p, False), (f" The box is {boxes[0]['color']}.{eos}", True)]
    else:
        x, y = f"0.{rng.integers(1, 10)}", f"0.{rng.integers(1, 10)}"
        q = f"What is the depth value of point <{x},{y}>?"
        p = bunny.spatialbot_prompt(q)
        a1 = f"The depth value of point({x},{y}) is Depth({x},{y})."
        value = bunny.depth_lookup(depth, x, y)
        reply = f"API: Depth({x},{y})={value}"
        pieces = [
            (p, False),
            (f" {a1}{eos}", True),
            (f"USER: {reply} ASSISTANT:", False),
            (f" The depth is {value} mm.{eos}", True),
        ]
    pixels = [bunny.preprocess(im, "siglip", size, pad=True) for im in images]
    return pieces, pixels


def policy_example(rng, tok, size: int):
    w, h = scenes.SIZES[int(rng.integers(len(scenes.SIZES)))]
    real = int(rng.choice([1, 2, 3, 4, 4, 4, 4]))
    frames = scenes.moved(rng, w, h, real)  # oldest first
    history = list(reversed(frames))  # newest first
    while len(history) < 4:
        history.append(history[-1])  # repeat the oldest
    goals = scenes.PICK_GOALS + scenes.PUSH_GOALS
    goal = goals[int(rng.integers(len(goals)))]
    p = bunny.policy_prompt(goal)
    newest_rgb, newest_boxes = history[0]
    pieces = [(p, False), (f" {scenes.action_text(newest_rgb, newest_boxes, goal)}{bunny.EOS_TEXT}", True)]
    pixels = [bunny.preprocess(rgb, "clip", size, pad=False) for rgb, _ in history]
    return pieces, pixels


def batch_loss(model: bunny.Bunny, tok, examples):
    T = model.spec.tokens_per_image
    pixels = torch.from_numpy(np.stack([p for _, px in examples for p in px]))
    image_embeds = model.encode_images(pixels)
    seqs, targets = [], []
    img = 0
    for pieces, px in examples:
        ids, flags = _segments_to_ids(tok, pieces)
        n = len(px)
        seqs.append(bunny.splice(model, ids, image_embeds[img : img + n])[0])
        img += n
        targets.append(bunny.answer_targets(ids, flags, T))
    return bunny.padded_lm_loss(model, seqs, targets)


@torch.no_grad()
def evaluate(model: bunny.Bunny, tok, kind: str, rng, n: int = 16) -> float:
    make = spatialbot_example if kind == "spatialbot" else policy_example
    good = 0
    for _ in range(n):
        pieces, px = make(rng, tok, model.spec.image_size)
        embeds_img = model.encode_images(torch.from_numpy(np.stack(px)))
        ok = True
        text = ""
        for piece, target in pieces:
            if target:
                ids = bunny.tokenize_chunked(tok, text)
                out = bunny.greedy(model, bunny.splice(model, ids, embeds_img), 48, [model.spec.eos_id])
                got = bunny.decode_answer(tok, out, [model.spec.eos_id])
                want = piece.replace(bunny.EOS_TEXT, "").strip()
                ok &= got == want
            text += piece
        good += ok
    return good / n


def train(folder: Path, kind: str, steps: int | None = None) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(1234 if kind == "spatialbot" else 4321)
    spec = bunny.read_spec(folder)
    tok = bunny.load_tokenizer(folder)
    full_tower = bunny.build_tower(spec)  # the released checkpoint keeps every tower layer
    model = bunny.Bunny(spec)
    model.tower.load_state_dict(
        {k: v for k, v in full_tower.state_dict().items() if k in model.tower.state_dict()}, strict=True
    )
    make = spatialbot_example if kind == "spatialbot" else policy_example
    for _ in range(8):
        _check_prefix(tok, make(rng, tok, spec.image_size)[0])
    steps = steps or DEFAULT_STEPS[kind]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )
    model.train()
    t0 = time.time()
    for step in range(steps):
        examples = [make(rng, tok, spec.image_size) for _ in range(BATCH)]
        loss = batch_loss(model, tok, examples)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"{kind} step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    acc = evaluate(model, tok, kind, np.random.default_rng(99))
    print(f"{kind}: exact-answer accuracy on 16 fresh scenes: {acc:.2f}", flush=True)
    sd = model.release_state_dict(full_tower)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
