"""Behaviour cloning of a Bunny-format policy (Qwen2 + CLIP) on `spatialbot-edge demos` datasets.

    python tools/train/train_policy.py --demos DIR [DIR ...] --val DIR [DIR ...] --out CHECKPOINT \
        [--steps N] [--minutes M] [--threads T] [--image-size S --patch P]

Reads the demonstrations (docs/simulation.md, "Demonstrations"), trains a tokenizer on the goals
and action texts, then trains the whole model end to end on exactly the prompts the runtime
builds (tools/export/bunny.py: chunked tokenisation, the policy template, the image placeholder
replaced by the image's embeddings, loss on the answer tokens and <|endoftext|> only). Writes a
Hugging Face checkpoint folder (config.json, tokenizer.json, model.safetensors) that
tools/export/export.py converts, and train_log.jsonl (loss per step, validation per check).

The answer is the expert's action in the manifest's ManiSkill layout: `[terminate, dx, dy, dz,
droll, dpitch, dyaw, gripper]`, translations as v = (a + 0.2) / 0.4 with two decimals (0.004 m
per level; the runtime decodes 0.4·v − 0.2), rotations "0.5" (the expert does not turn),
terminate "0", gripper "1" open or "0" closed. Fixed seeds; CPU. The CLIP tower's input is 64 px in
8-px patches unless --image-size / --patch say otherwise (64 image tokens either way at 128 / 16).

Auxiliary targets (--aux-weight, default 1): a linear head on the language model's last hidden
state at the prompt's last position (the one that predicts the answer's first token) regresses
privileged state from the demonstrations — the named object's offset from the TCP, the TCP, and
the expert's continuous action — beside the answer's cross-entropy. It gives the vision tower a
dense signal about where the gripper and the named object are; the head is not exported (the
runtime's graphs are the model alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "export"))

import numpy as np  # noqa: E402

import bunny  # noqa: E402

IMAGE_SIZE = 64
PATCH = 8
FRAMES = 1
VOCAB = 320


def make_config() -> dict:
    """The checkpoint's config.json for the current IMAGE_SIZE and PATCH."""
    return {
        "architectures": ["BunnyQwen2ForCausalLM"],
        "model_type": "bunny-qwen2",
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
        "mm_vision_tower": f"sim-clip-patch{PATCH}-{IMAGE_SIZE}",
        "mm_vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 96,
            "intermediate_size": 384,
            "num_hidden_layers": 5,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "projection_dim": 96,
        },
        "mm_hidden_size": 96,
        "mm_projector_type": "mlp2x_gelu",
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 1024,
        "tokenizer_padding_side": "right",
        "torch_dtype": "float32",
        # Read by tools/export/export.py into the manifest's [policy] frames.
        "policy_frames": FRAMES,
    }


# --- the answer text -----------------------------------------------------------------------------


def action_text(action) -> str:
    """The expert's action (wire layout dx, dy, dz, droll, dpitch, dyaw, gripper, terminate) as the
    policy's answer in the ManiSkill layout."""
    dx, dy, dz = (f"{(float(a) + 0.2) / 0.4:.2f}" for a in action[:3])
    grip = "1" if float(action[6]) >= 0.5 else "0"
    term = "1" if float(action[7]) == 1.0 else "0"
    return f"[{term},{dx},{dy},{dz},0.5,0.5,0.5,{grip}]"


def decode_text(text: str):
    """The runtime's decoding of an answer (ManiSkill affine map, f32 constants, f64 math) back to
    the wire layout; None when it does not parse as 8 numbers."""
    try:
        v = [float(x) for x in text.strip()[1:-1].replace(" ", "").split(",")]
    except ValueError:
        return None
    if len(v) != 8:
        return None
    scale, offset = 0.4000000059604645, -0.20000000298023224
    return [scale * v[1] + offset, scale * v[2] + offset, scale * v[3] + offset,
            scale * v[4] + offset, scale * v[5] + offset, scale * v[6] + offset, v[7], v[0]]


# --- data ------------------------------------------------------------------------------------------


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def crop_u8(rgb: np.ndarray) -> np.ndarray:
    """bunny.preprocess for CLIP without the normalisation: shortest edge → S (bicubic), centre crop."""
    h, w = rgb.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = IMAGE_SIZE, int(IMAGE_SIZE * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    rgb = bunny.resize_bicubic(rgb, nw, nh)
    top, left = (nh - IMAGE_SIZE) // 2, (nw - IMAGE_SIZE) // 2
    return np.ascontiguousarray(rgb[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE])


AUX = ["offset_x", "offset_y", "offset_z", "tcp_x", "tcp_y", "tcp_z", "dx", "dy", "dz", "gripper"]


def aux_targets(step: dict, where: str) -> list[float]:
    """The auxiliary regression targets of one step, each scaled to about ±1."""
    if "objects" not in step or "task_object" not in step:
        raise SystemExit(f"{where}: no `objects`/`task_object` (demos written before they were recorded; rewrite them)")
    obj = step["objects"][step["task_object"]]["pos"]
    tcp, a = step["tcp"], step["action"]
    offset = [(obj[i] - tcp[i]) / 0.2 for i in range(3)]
    centre = [tcp[0] / 0.2, (tcp[1] - 0.6) / 0.2, (tcp[2] - 0.15) / 0.1]
    return offset + centre + [a[i] / 0.02 for i in range(3)] + [2 * a[6] - 1]


# The sim camera's pose: src/sim/render.rs CAMERA_POS and AXIS_X/Y/Z (image right, image down,
# optical axis) of the depth camera; the colour camera sits the calibration's baseline along x.
CAMERA_POS = np.array([0.0, -0.05, 0.55])
CAMERA_AXES = np.array([[1.0, 0.0, 0.0], [0.0, -0.6, -0.8], [0.0, 0.8, -0.6]])
# The dense head's channels: every object name a goal can use, then the TCP.
DENSE = ["the red box", "the blue box", "the yellow box", "the purple box", "the ball", "tcp"]
DENSE_SIGMA = 0.7  # patches


def crop_pixel(meta: dict, point) -> tuple[float, float]:
    """Where a world point lands in the cropped S × S frame (pixel-centre coordinates)."""
    color = meta["calibration"]["color"]
    origin = CAMERA_POS - meta["calibration"]["depth_to_color"]["translation"][0] * CAMERA_AXES[0]
    c = CAMERA_AXES @ (np.asarray(point, np.float64) - origin)
    u = color["ppx"] + color["fx"] * c[0] / c[2]
    v = color["ppy"] + color["fy"] * c[1] / c[2]
    w, h = meta["width"], meta["height"]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(IMAGE_SIZE * long / short)
    nw, nh = (IMAGE_SIZE, new_long) if w <= h else (new_long, IMAGE_SIZE)
    u = (u + 0.5) * nw / w - 0.5 - (nw - IMAGE_SIZE) // 2
    v = (v + 0.5) * nh / h - 0.5 - (nh - IMAGE_SIZE) // 2
    return u, v


def dense_targets(meta: dict, step: dict) -> np.ndarray:
    """[patches, channels] heat maps: each channel's point as a Gaussian over the patch centres
    (row-major, as the tower's tokens), zero where the object is not in the scene."""
    g = IMAGE_SIZE // PATCH
    centres = (np.arange(g) + 0.5) * PATCH - 0.5
    out = np.zeros((g * g, len(DENSE)), np.float32)
    points = {o["name"]: o["pos"] for o in step["objects"]}
    points["tcp"] = step["tcp"]
    for k, name in enumerate(DENSE):
        if name not in points:
            continue
        u, v = crop_pixel(meta, points[name])
        d2 = ((centres[None, :] - u) ** 2 + (centres[:, None] - v) ** 2) / PATCH**2
        out[:, k] = np.exp(-d2 / (2 * DENSE_SIGMA**2)).reshape(-1)
    return out


def load_demos(folders: list[Path], with_dense: bool = False):
    """Every step of every episode: (cropped u8 frame, goal, action text, action, aux targets,
    dense targets or None)."""
    crops, goals, answers, actions, aux, dense = [], [], [], [], [], []
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("schema") != "spatialbot-edge/demos/1":
            raise SystemExit(f"{folder / 'meta.json'}: schema {meta.get('schema')!r} is not spatialbot-edge/demos/1")
        # The crops are cached beside the dataset (they depend only on the frames and S).
        cache = folder / f"crops-{IMAGE_SIZE}.npy"
        cached = np.load(cache) if cache.is_file() else None
        mine = []
        for ep in meta["episodes"]:
            ep_dir = folder / "episodes" / str(ep["seed"])
            for line in (ep_dir / "steps.jsonl").read_text().splitlines():
                step = json.loads(line)
                if cached is None:
                    mine.append(crop_u8(read_rgb(ep_dir / step["frame"])))
                goals.append(step["goal"])
                answers.append(action_text(step["action"]))
                actions.append(step["action"])
                aux.append(aux_targets(step, str(ep_dir / "steps.jsonl")))
                if with_dense:
                    dense.append(dense_targets(meta, step))
        if cached is None:
            cached = np.stack(mine)
            np.save(cache, cached)
        crops.append(cached)
    return (np.concatenate(crops), goals, answers, np.array(actions, np.float64), np.array(aux, np.float32),
            np.stack(dense) if with_dense else None)


def pixels_of(crops: np.ndarray) -> np.ndarray:
    """bunny.normalize on a batch of crops (same arithmetic: u8/255 in f64 → f32, minus mean, over std)."""
    x = (crops.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(bunny.CLIP_MEAN, np.float32)) / np.array(bunny.CLIP_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def train_tokenizer(goals: list[str], answers: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[bunny.EOS_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [bunny.policy_prompt(g, FRAMES) for g in sorted(set(goals))] * 50
    corpus += [f" {a}" for a in answers[:: max(1, len(answers) // 2000)]]
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


DIGIT_WEIGHT = 4.0


def encode(tok, goal: str, answer: str):
    """ids of prompt + answer + EOS, and each one's loss weight: 0 for the prompt, DIGIT_WEIGHT
    for the answer's digits (the values), 1 for its punctuation and EOS. The answer's tokens must
    be what the runtime's tokenisation of the prompt alone is followed by."""
    prompt = bunny.policy_prompt(goal, FRAMES)
    p = bunny.tokenize_chunked(tok, prompt)
    whole = bunny.tokenize_chunked(tok, prompt + f" {answer}{bunny.EOS_TEXT}")
    if whole[: len(p)] != p:
        raise AssertionError(f"the answer's tokens merge into the prompt: {prompt!r} + {answer!r}")
    weights = [0.0] * len(p)
    for t in whole[len(p) :]:
        weights.append(DIGIT_WEIGHT if tok.id_to_token(t).isdigit() else 1.0)
    return whole, weights


# --- training --------------------------------------------------------------------------------------


def batch_loss(model, examples, pixels, head=None, aux=None, aux_weight=0.0,
               dense_head=None, dense=None, dense_weight=0.0):
    """The answers' weighted cross-entropy, plus aux_weight × the auxiliary head's mean squared
    error on `aux` and dense_weight × the dense head's per-patch binary cross-entropy on `dense`
    (each when given); returns (total, cross-entropy, aux MSE or None, dense BCE or None)."""
    import torch

    T = model.spec.tokens_per_image
    image_embeds = model.encode_images(torch.from_numpy(pixels))
    bce = None
    if dense_head is not None:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            dense_head(image_embeds), torch.from_numpy(dense))
    seqs, targets, weights, last_prompt = [], [], [], []
    for i, (ids, w) in enumerate(examples):
        seqs.append(bunny.splice(model, ids, image_embeds[i : i + 1])[0])
        tg, wt = [], []
        for t, x in zip(ids, w):
            if t < 0:
                tg += [0] * T
                wt += [0.0] * T
            else:
                tg.append(t)
                wt.append(x)
        # Position k predicts token k + 1.
        targets.append(tg[1:] + [0])
        weights.append(wt[1:] + [0.0])
        last_prompt.append(next(k for k, x in enumerate(wt) if x > 0) - 1)
    extra = 0.0 if bce is None else dense_weight * bce
    if head is None:
        ce = bunny.padded_lm_loss(model, seqs, targets, weights)
        return ce + extra, ce, None, bce
    ce, hidden = bunny.padded_lm_loss(model, seqs, targets, weights, hidden_at=last_prompt)
    mse = torch.nn.functional.mse_loss(head(hidden), torch.from_numpy(aux))
    return ce + aux_weight * mse + extra, ce, mse, bce


def validate(model, tok, crops, goals, answers, actions, n: int) -> dict:
    """Greedy answers on n fixed validation frames: exact text, parse rate, action error (m)."""
    import torch

    idx = np.linspace(0, len(goals) - 1, n).astype(int)
    exact = parsed = grip_ok = 0
    err = []
    model.eval()
    with torch.no_grad():
        embeds_img = model.encode_images(torch.from_numpy(pixels_of(crops[idx])))
        for k, i in enumerate(idx):
            ids = bunny.tokenize_chunked(tok, bunny.policy_prompt(goals[i], FRAMES))
            out = bunny.greedy(model, bunny.splice(model, ids, embeds_img[k : k + 1]), 48, [model.spec.eos_id])
            text = bunny.decode_answer(tok, out, [model.spec.eos_id])
            exact += text == answers[i]
            dec = decode_text(text)
            if dec is not None:
                parsed += 1
                err.append(float(np.max(np.abs(np.array(dec[:3]) - actions[i][:3]))))
                grip_ok += (dec[6] >= 0.5) == (actions[i][6] >= 0.5)
    model.train()
    return {"val_exact": exact / n, "val_parsed": parsed / n, "val_gripper_ok": grip_ok / n,
            "val_max_axis_err_mm": 1000 * float(np.mean(err)) if err else None}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    global IMAGE_SIZE, PATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demos", type=Path, nargs="+", required=True)
    ap.add_argument("--val", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps (the schedule's length)")
    ap.add_argument("--minutes", type=float, default=None, help="stop early after this much wall time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more spin and slow down on a shared machine)")
    ap.add_argument("--check-every", type=int, default=250)
    ap.add_argument("--val-frames", type=int, default=64)
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this checkpoint folder's weights and tokenizer (a DAgger round)")
    ap.add_argument("--data-seed", type=int, default=20, help="seed of the data order")
    ap.add_argument("--aux-weight", type=float, default=1.0,
                    help="weight of the auxiliary privileged-state regression (0: answers only)")
    ap.add_argument("--dense-weight", type=float, default=10.0,
                    help="weight of the per-patch heat maps of the objects and the TCP (0: none)")
    ap.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                    help="the vision tower's input side in pixels (with --init: the checkpoint's)")
    ap.add_argument("--patch", type=int, default=PATCH, help="the vision tower's patch side (with --init: the checkpoint's)")
    args = ap.parse_args()
    IMAGE_SIZE, PATCH = args.image_size, args.patch
    if args.init is not None:
        vision = json.loads((args.init / "config.json").read_text())["mm_vision_config"]
        IMAGE_SIZE, PATCH = vision["image_size"], vision["patch_size"]
    if IMAGE_SIZE % PATCH:
        raise SystemExit(f"--image-size {IMAGE_SIZE} is not a multiple of --patch {PATCH}")

    import torch
    from safetensors.torch import save_file

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.data_seed)
    t0, c0 = time.time(), cpu_seconds()
    crops, goals, answers, actions, aux, dense = load_demos(args.demos, with_dense=args.dense_weight > 0)
    v_crops, v_goals, v_answers, v_actions, _, _ = load_demos(args.val)
    print(f"demos: {len(goals)} training frames, {len(v_goals)} validation frames "
          f"(loaded in {time.time() - t0:.0f} s)", flush=True)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.init is not None:
        # Continuing (a DAgger round): the checkpoint's tokenizer, whatever the new data's mix.
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.init / "tokenizer.json"))
    else:
        tok = train_tokenizer(goals, answers)
    eos = tok.token_to_id(bunny.EOS_TEXT)
    vocab = (tok.get_vocab_size() + 63) // 64 * 64
    cfg = dict(make_config(), vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))
    encoded = {}
    for g, a in zip(goals, answers):
        if (g, a) not in encoded:
            encoded[(g, a)] = encode(tok, g, a)
    for g, a in zip(v_goals, v_answers):
        encode(tok, g, a)  # the validation answers must tokenise the same way

    spec = bunny.read_spec(out)
    full_tower = bunny.build_tower(spec)
    model = bunny.Bunny(spec)
    model.tower.load_state_dict(
        {k: v for k, v in full_tower.state_dict().items() if k in model.tower.state_dict()}, strict=True)
    if args.init is not None:
        # Continue from a checkpoint of the same config, with its tokenizer (above).
        unused = model.load_checkpoint(bunny.read_checkpoint_tensors(args.init))
        print(f"continuing from {args.init} ({len(unused)} tensors of the unused tower layer left out)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, {spec.tokens_per_image} tokens per image, "
          f"vocab {vocab}", flush=True)

    head = torch.nn.Linear(cfg["hidden_size"], len(AUX)) if args.aux_weight > 0 else None
    dense_head = torch.nn.Linear(cfg["hidden_size"], len(DENSE)) if args.dense_weight > 0 else None
    params = list(model.parameters()) + [p for h in (head, dense_head) if h is not None for p in h.parameters()]
    steps = args.steps
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    log = open(out / "train_log.jsonl", "w")

    def save(tag: str):
        sd = model.release_state_dict(full_tower)
        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt", "step": tag})
        (out / "checkpoints").mkdir(exist_ok=True)
        save_file(sd, str(out / "checkpoints" / f"step-{tag}.safetensors"), metadata={"format": "pt", "step": tag})

    model.train()
    t_train, c_train = time.time(), cpu_seconds()
    order = rng.permutation(len(goals))
    at = 0
    for step in range(steps):
        if at + args.batch > len(order):
            order, at = rng.permutation(len(goals)), 0
        idx = order[at : at + args.batch]
        at += args.batch
        loss, ce, mse, bce = batch_loss(model, [encoded[(goals[i], answers[i])] for i in idx],
                                        pixels_of(crops[idx]), head, aux[idx], args.aux_weight,
                                        dense_head, None if dense is None else dense[idx], args.dense_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        rec = {"step": step, "loss": round(ce.item(), 5),
               "aux_mse": None if mse is None else round(mse.item(), 5),
               "dense_bce": None if bce is None else round(bce.item(), 5), "lr": sched.get_last_lr()[0],
               "wall_s": round(time.time() - t_train, 1), "cpu_s": round(cpu_seconds() - c_train, 1)}
        if args.bench and step + 1 == args.bench:
            print(f"bench: {args.bench} steps in {rec['wall_s']} s wall, {rec['cpu_s']} s CPU", flush=True)
            return 0
        last = step == steps - 1 or (args.minutes and time.time() - t_train > 60 * args.minutes)
        if step % args.check_every == 0 or last:
            rec.update(validate(model, tok, v_crops, v_goals, v_answers, v_actions, args.val_frames))
            save(str(step))
        if step % 10 == 0 or "val_exact" in rec:
            print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if last:
            break
    print(f"trained {step + 1} steps in {time.time() - t_train:.0f} s wall, {cpu_seconds() - c_train:.0f} s CPU "
          f"(total with loading {time.time() - t0:.0f} s wall, {cpu_seconds() - c0:.0f} s CPU)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
