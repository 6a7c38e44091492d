"""Trains a small SpatialBot on a SpatialQA set (docs/spatialqa.md) on the CPU, fixed seeds.

    python tools/train/train_spatialbot.py --train DIR --val DIR --out CHECKPOINT_DIR \
        [--steps N] [--threads 2]

Writes a release-layout checkpoint folder (config.json, model.safetensors, tokenizer.json) that
tools/export/export.py turns into a model folder, plus training.json (the recipe, the loss
curve, wall and CPU time) and, every --save-every steps, step-N/ checkpoints.

The model is Bunny's layout (bunny.py): a SigLIP-like tower (its layer −2), the mlp2x_gelu
projector, a Phi-like language model. Every example is the conversation the runtime builds:
the bunny template, chunked tokenisation, Depth API turns as `ask` sends them
("USER: API: Depth(x,y)=V ASSISTANT:"), the loss on the assistant's turns and their
<|endoftext|>. A share of the examples is RGB-only (one image placeholder, the final answer
given directly) so the same model answers without a depth image (`qa-eval --no-depth`).

--dense-weight W (training only, not exported) needs a set written with `spatialqa --labels`:
a linear head on every colour-image token predicts, per patch, whether it shows each object
name of the set and the gripper (8 × its pixel share, capped at 1, from the scene's label map).
The tower then learns where things are from the first step, not only through the answers' few
coordinate tokens.

--scene-weight W (training only, not exported; the same `--labels` set): a linear head on the
language model's last-layer state where the first answer token is predicted must read the scene
(SceneTargets: the named objects' and the gripper's visibility, centroid and depth). With the
depth image in every example it stayed at a constant's error (docs/spatialqa.md, "Results");
on the colour image alone (--rgb-share 1.0) it learns within a few hundred steps, which is the
recipe's first phase (tools/train/make_sim_spatialbot.sh).

--rgb-share S: the share of examples asked RGB-only (default 0.2; 1.0: a colour-only phase).
--api-rgb: with it, the RGB-only examples of questions answered through the Depth API keep their
API turns (one image) instead of a direct answer. --copy-weight W: the last answer's digits in
conversations with API turns count W times in the answers' loss. --counterfactual-share S: that
share of RGB-D conversations with API turns gets its API values moved by one random monotone map,
reply and answer alike. All three were tried for copying (docs/spatialqa.md, "Tried, not shipped:
copying"); the recipe's first phase uses --api-rgb, the other two are not in it.

--stop-after N stops after N steps of the --steps schedule (its warm-up and cosine unchanged).

The training-only heads are saved beside each checkpoint (training-heads.pt); --init continues
them when the shapes agree instead of starting them fresh.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import bunny  # noqa: E402

VOCAB = 1024
RGB_ONLY_SHARE = 0.2


def config(vocab: int, eos: int) -> dict:
    return {
        "architectures": ["BunnyPhiForCausalLM"],
        "model_type": "bunny-phi",
        "hidden_size": 192,
        "intermediate_size": 768,
        "num_hidden_layers": 3,
        "num_attention_heads": 6,
        "num_key_value_heads": 6,
        "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5,
        "partial_rotary_factor": 0.5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "qk_layernorm": False,
        "tie_word_embeddings": False,
        "mm_vision_tower": "sim-siglip-patch16-128",
        "mm_vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 128,
            "intermediate_size": 512,
            # Bunny takes layer −2: the last of these four is in the release but unused.
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": 128,
            "patch_size": 16,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        "mm_hidden_size": 128,
        "mm_projector_type": "mlp2x_gelu",
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "torch_dtype": "float32",
        "vocab_size": vocab,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
    }


def read_set(folder: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((folder / "meta.json").read_text())
    questions = [json.loads(line) for line in (folder / "questions.jsonl").read_text().splitlines() if line.strip()]
    return meta, questions


# --- conversations -----------------------------------------------------------------------------


def pieces_rgbd(q: dict) -> list[tuple[str, bool]]:
    """The conversation as the runtime prompts it: (text, is_target) pieces."""
    turns = q["conversation"]
    pieces: list[tuple[str, bool]] = []
    for i, t in enumerate(turns):
        if t["from"] == "human":
            head = f"{bunny.BUNNY_SYSTEM} USER: " if i == 0 else "USER: "
            pieces.append((f"{head}{t['value']} ASSISTANT:", False))
        else:
            pieces.append((f" {t['value']}{bunny.EOS_TEXT}", True))
    return pieces


def pieces_rgb(q: dict) -> list[tuple[str, bool]]:
    """RGB only: one image, the final answer given directly."""
    last = [t["value"] for t in q["conversation"] if t["from"] == "gpt"][-1]
    return [
        (bunny.spatialbot_prompt(q["question"], n_images=1), False),
        (f" {last}{bunny.EOS_TEXT}", True),
    ]


def pieces_rgb_api(q: dict) -> list[tuple[str, bool]]:
    """RGB only with the Depth API turns kept (--api-rgb): the conversation as pieces_rgbd, one
    image. Not an inference format (without the depth image the runtime's Depth API has nothing
    to read); a training phase on the colour image alone uses it so that copying the API's value
    is learned beside reading, instead of a direct answer from the colour image."""
    pieces = pieces_rgbd(q)
    two, one = bunny.images_text(2), bunny.images_text(1)
    if two not in pieces[0][0]:
        raise AssertionError(f"{q['id']}: the first turn does not carry two images")
    return [(pieces[0][0].replace(two, one, 1), pieces[0][1])] + pieces[1:]


def segments_to_ids(tok, pieces):
    """Token ids of the whole conversation and which are targets; each prompt prefix tokenises
    exactly as the runtime tokenises that round's prompt on its own (checked)."""
    text = ""
    ids: list[int] = []
    flags: list[bool] = []
    for piece, target in pieces:
        text += piece
        whole = bunny.tokenize_chunked(tok, text)
        if whole[: len(ids)] != ids:
            raise AssertionError(f"tokenisation merges across turns: {text[-80:]!r}")
        flags += [target] * (len(whole) - len(ids))
        ids = whole
    return ids, flags


def corpus(questions: list[dict]) -> list[str]:
    lines = [bunny.BUNNY_SYSTEM + " USER: "] * 200
    for q in questions:
        for p, _ in pieces_rgbd(q):
            lines.append(bunny.IMAGE_PLACEHOLDER_RE.sub("", p))
    return lines


def train_tokenizer(questions: list[dict]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[bunny.EOS_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(questions), trainer=trainer)
    return tok


# --- images ------------------------------------------------------------------------------------


class Images:
    """Each scene's RGB and packed depth, padded and resized once (uint8), normalised per batch."""

    def __init__(self, root: Path, size: int):
        self.root = root
        self.size = size
        self.cache: dict[str, np.ndarray] = {}

    def _load(self, rel: str, depth: bool) -> np.ndarray:
        from PIL import Image

        key = ("d:" if depth else "c:") + rel
        if key not in self.cache:
            im = np.asarray(Image.open(self.root / rel))
            if depth:
                im = bunny.pack_depth(im.astype(np.uint16))
            else:
                im = im[:, :, :3]
            im = bunny.expand2square(np.ascontiguousarray(im), [127, 127, 127])
            self.cache[key] = bunny.resize_bicubic(im, self.size, self.size)
        return self.cache[key]

    def tensors(self, q: dict, with_depth: bool) -> list[np.ndarray]:
        out = [self._load(q["image"], False)]
        if with_depth:
            out.append(self._load(q["depth"], True))
        return [bunny.normalize(im, bunny.SIGLIP_MEAN, bunny.SIGLIP_STD) for im in out]


class Labels:
    """Per scene image: how much of each patch shows each class (the set's object names, then the
    gripper; 8 × the pixel share, capped at 1), from `scenes.jsonl` and the label maps of
    `spatialqa --labels`, padded to a square as the colour image is (background) at the tower's
    input size."""

    GRIPPER, BACKGROUND = 254, 255

    def __init__(self, root: Path, size: int, patch: int, names: list[str] | None = None):
        path = root / "scenes.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (write the set with `spatialqa --labels` for --dense-weight)")
        self.root, self.size, self.patch = root, size, patch
        self.scenes = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            rec = json.loads(line)
            if not isinstance(rec.get("objects"), list) or not isinstance(rec.get("labels"), str):
                raise SystemExit(f"{path}:{n}: needs `labels` and `objects`")
            self.scenes[rec["image"]] = rec
        self.names = names if names is not None else sorted({o for r in self.scenes.values() for o in r["objects"]})
        self.cache: dict[str, np.ndarray] = {}

    def classes(self) -> int:
        return len(self.names) + 1

    def shares(self, image: str) -> np.ndarray:
        """[tokens, classes] float32."""
        if image not in self.cache:
            from PIL import Image

            rec = self.scenes.get(image)
            if rec is None:
                raise SystemExit(f"{self.root / 'scenes.jsonl'}: no scene for {image}")
            lab = np.asarray(Image.open(self.root / rec["labels"]))
            h, w = lab.shape
            side = max(h, w)
            sq = np.full((side, side), self.BACKGROUND, np.uint8)
            sq[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = lab
            # Nearest-neighbour to the input size (the sets' frames are that size already).
            pick = (np.arange(self.size) * side) // self.size
            sq = sq[pick][:, pick]
            codes = np.full(256, -1, np.int64)
            for i, name in enumerate(rec["objects"]):
                if name in self.names:
                    codes[i] = self.names.index(name)
            codes[self.GRIPPER] = len(self.names)
            cls = codes[sq]
            g = self.size // self.patch
            out = np.zeros((g * g, self.classes()), np.float32)
            blocks = cls.reshape(g, self.patch, g, self.patch).transpose(0, 2, 1, 3).reshape(g * g, -1)
            for c in range(self.classes()):
                # A patch an eighth covered counts as showing it: the objects are a few patches
                # at most, and a share target of a few percent would teach almost nothing.
                out[:, c] = np.minimum(1.0, 8.0 * (blocks == c).mean(1))
            self.cache[image] = out
        return self.cache[image]


class SceneTargets:
    """What the language model must read out of the images at the end of the first prompt (the
    position that predicts the first answer token), for --scene-weight: for the first and second
    object the question names and for the gripper, whether it is seen (mask pixels), its mask's
    centroid on the padded square (x, y in [-1, 1]) and its median registered depth ((mm - 800)
    / 100; RGB-only examples leave it out: their depth is not in the input); then, for every object
    name of the set and the gripper, whether it is seen and where; and how many objects are seen
    (/ 4). From `scenes.jsonl` and the label maps of `spatialqa --labels`. Returns (targets,
    weights): a weight of 0 leaves a target out (an unseen object has no position)."""

    MIN_PIXELS = 8  # at 128 × 96, as the question generator counts an object as seen

    def __init__(self, labels: Labels):
        self.labels = labels
        self.names = labels.names
        self.cores = [n.removeprefix("the ") for n in self.names]
        self.cache: dict[str, dict] = {}

    def width(self) -> int:
        return 3 * 4 + 3 * (len(self.names) + 1) + 1

    def _scene(self, image: str) -> dict:
        if image not in self.cache:
            from PIL import Image

            lb = self.labels
            rec = lb.scenes.get(image)
            if rec is None:
                raise SystemExit(f"{lb.root / 'scenes.jsonl'}: no scene for {image}")
            lab = np.asarray(Image.open(lb.root / rec["labels"]))
            depth = np.asarray(Image.open(lb.root / rec["depth"])).astype(np.float64)
            h, w = lab.shape
            side = max(h, w)
            oy, ox = (side - h) / 2.0, (side - w) / 2.0
            vv, uu = np.mgrid[0:h, 0:w]
            found = {}
            for i, name in enumerate(list(rec["objects"]) + ["gripper"]):
                code = Labels.GRIPPER if name == "gripper" else i
                m = lab == code
                if m.sum() < self.MIN_PIXELS:
                    continue
                d = depth[m & (depth > 0)]
                found[name] = (
                    2.0 * (uu[m].mean() + 0.5 + ox) / side - 1.0,
                    2.0 * (vv[m].mean() + 0.5 + oy) / side - 1.0,
                    (float(np.median(d)) - 800.0) / 100.0 if d.size else None,
                )
            self.cache[image] = found
        return self.cache[image]

    def named(self, question: str) -> list[str]:
        """The set's object names in the question, in order of appearance (longest match first at
        each place, so "red box" is not also read as "box")."""
        q = question.lower()
        hits = []
        for name, core in zip(self.names, self.cores):
            at = q.find(core)
            while at >= 0:
                hits.append((at, -len(core), name))
                at = q.find(core, at + 1)
        hits.sort()
        out, taken = [], -1
        for at, neg, name in hits:
            if at >= taken and name not in out:
                out.append(name)
                taken = at - neg
        return out

    def of(self, q: dict, with_depth: bool) -> tuple[np.ndarray, np.ndarray]:
        found = self._scene(q["image"])
        t, wt = [], []

        def slot(name: str | None):
            seen = name is not None and name in found
            t.append(1.0 if seen else 0.0)
            wt.append(0.0 if name is None else 1.0)
            x, y, d = found[name] if seen else (0.0, 0.0, None)
            t.extend([x, y, d if d is not None else 0.0])
            wt.extend([1.0 if seen else 0.0] * 2 + [1.0 if seen and with_depth and d is not None else 0.0])

        named = self.named(q["question"])
        slot(named[0] if named else None)
        slot(named[1] if len(named) > 1 else None)
        slot("gripper")
        for name in self.names + ["gripper"]:
            seen = name in found
            x, y, _ = found[name] if seen else (0.0, 0.0, None)
            t.extend([1.0 if seen else 0.0, x, y])
            wt.extend([1.0, 1.0 if seen else 0.0, 1.0 if seen else 0.0])
        t.append(sum(1 for n in found if n != "gripper") / 4.0)
        wt.append(1.0)
        return np.array(t, np.float32), np.array(wt, np.float32)


# --- training ----------------------------------------------------------------------------------


def patch_statistics(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Per patch (row-major, as the tower's tokens): each channel's mean and standard deviation
    of the normalised pixels, (N, tokens, 6)."""
    n, c, _, _ = pixels.shape
    p = pixels.unfold(2, patch, patch).unfold(3, patch, patch)  # N, C, gh, gw, patch, patch
    p = p.reshape(n, c, -1, patch * patch)
    return torch.cat([p.mean(-1), p.std(-1)], dim=1).transpose(1, 2)


def aux_patch_loss(aux_head, embeds_img: torch.Tensor, pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Auxiliary loss (training only, not exported): every image token, as the language model's
    first layer norm sees it (normalised), must still tell its patch's colour and depth
    statistics, and an image's tokens must not share one direction (the squared norm per feature
    of its mean normalised token: 1 when all are alike). Without it the tokens collapse to one direction
    and the model answers blind."""
    normed = torch.nn.functional.layer_norm(embeds_img, embeds_img.shape[-1:])
    stats = torch.nn.functional.mse_loss(aux_head(normed), patch_statistics(pixels, patch))
    # Per image: 1 when all its tokens are the same normalised vector, near 0 when they spread
    # out (so the patches of one image stay told apart, not only the RGB and depth images).
    shared = normed.mean(1).pow(2).mean()
    return stats + shared


def first_answer_position(ids: list[int], flags: list[bool], tokens_per_image: int) -> int:
    """The spliced sequence's position whose output predicts the first answer token: the first
    prompt's last token."""
    k = 0
    for t, f in zip(ids, flags):
        if f:
            return k - 1
        k += tokens_per_image if t < 0 else 1
    raise AssertionError("an example without an answer")


def scene_loss(readout, hidden: torch.Tensor, batch, scenes: SceneTargets) -> torch.Tensor:
    """The scene readout's weighted mean squared error (SceneTargets)."""
    pairs = [scenes.of(ex["q"], ex["depth"]) for ex in batch]
    want = torch.from_numpy(np.stack([p[0] for p in pairs]))
    wt = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return ((readout(hidden) - want).pow(2) * wt).sum() / wt.sum().clamp(min=1.0)


def batch_loss(model, batch, images: Images, aux_head=None, dense_head=None, labels: Labels | None = None,
               readout=None, scenes: SceneTargets | None = None, copy_weight: float = 1.0):
    """(the answers' loss, the auxiliary loss or None, the dense loss or None, the scene readout's
    loss or None)."""
    T = model.spec.tokens_per_image
    px = [p for ex in batch for p in images.tensors(ex["q"], ex["depth"])]
    pixels = torch.from_numpy(np.stack(px))
    embeds_img = model.encode_images(pixels)
    seqs, targets = [], []
    k = 0
    for ex in batch:
        n = 2 if ex["depth"] else 1
        seqs.append(bunny.splice(model, ex["ids"], embeds_img[k : k + n])[0])
        k += n
        targets.append(bunny.answer_targets(ex["ids"], ex["flags"], T))
    weights = None
    if copy_weight != 1.0:
        # Weighted mean of the per-token loss: the answer's copied digits count copy_weight times.
        weights = []
        for i, ex in enumerate(batch):
            w = bunny.answer_targets(ex["ids"], ex["copies"], T)
            weights.append([0.0 if t < 0 else (copy_weight if c >= 0 else 1.0) for t, c in zip(targets[i], w)])
            targets[i] = [max(t, 0) for t in targets[i]]
    aux = dense = scene = None
    if readout is not None and scenes is not None:
        at = [first_answer_position(ex["ids"], ex["flags"], T) for ex in batch]
        loss, hidden = bunny.padded_lm_loss(model, seqs, targets, weights, hidden_at=at)
        scene = scene_loss(readout, hidden, batch, scenes)
    else:
        loss = bunny.padded_lm_loss(model, seqs, targets, weights)
    if aux_head is not None:
        aux = aux_patch_loss(aux_head, embeds_img, pixels, int(model.spec.vision_config["patch_size"]))
    if dense_head is not None and labels is not None:
        first, k = [], 0
        for ex in batch:
            first.append(k)
            k += 2 if ex["depth"] else 1
        want = torch.from_numpy(np.stack([labels.shares(ex["q"]["image"]) for ex in batch]))
        dense = torch.nn.functional.binary_cross_entropy_with_logits(dense_head(embeds_img[first]), want)
    return loss, aux, dense, scene


def copied_digits(tok, ids: list[int], flags: list[bool], api: bool) -> list[bool]:
    """Per token: a digit of the last answer of a conversation with Depth API turns — the values
    and coordinates the answer copies from the API's reply and the question (--copy-weight)."""
    out = [False] * len(ids)
    if not api:
        return out
    k = len(ids) - 1
    while k >= 0 and flags[k]:
        t = ids[k]
        out[k] = t >= 0 and (tok.id_to_token(t) or "").isdigit()
        k -= 1
    return out


MM = re.compile(r"(?<![\d.])\d{3,5}(?![\d.])")
API_VALUE = re.compile(r"Depth\([^)]*\)=(\d+)")


def counterfactual(q: dict, rng: random.Random) -> dict | None:
    """The conversation with every Depth API value v replaced by round(a·v + b) (a in [0.6, 1.6],
    b in [-300, 300] mm, one draw per conversation) in the API's replies and the last answer, or
    None where that cannot stay consistent: a value of the last answer that is not the API's (an
    object's max, min and mean depth are read off the depth image), a value out of 200..4000 mm,
    or an order between two values that changes (a proximity answer compares them). Only copying
    the API's reply answers these; the depth image no longer does (--counterfactual-share)."""
    conv = q["conversation"]
    values = sorted({int(v) for t in conv if t["from"] == "human" for v in API_VALUE.findall(t["value"])})
    if not values or any(int(v) not in values for v in MM.findall(conv[-1]["value"])):
        return None
    a, b = rng.uniform(0.6, 1.6), rng.uniform(-300.0, 300.0)
    new = {v: round(a * v + b) for v in values}
    after = [new[v] for v in values]
    if min(after) < 200 or max(after) > 4000 or any(x >= y for x, y in zip(after, after[1:])):
        return None

    def swap(text: str) -> str:
        return MM.sub(lambda m: str(new.get(int(m.group()), m.group())), text)

    turns = [dict(t, value=swap(t["value"])) if i > 0 and (t["from"] == "human" or i == len(conv) - 1) else t
             for i, t in enumerate(conv)]
    return dict(q, conversation=turns)


def examples_of(questions, tok, rng: random.Random, rgb_share: float, api_rgb: bool = False,
                cf_share: float = 0.0, cf_rng: random.Random | None = None):
    out = []
    for q in questions:
        depth = rng.random() >= rgb_share
        api = sum(1 for t in q["conversation"] if t["from"] == "gpt") > 1
        if depth and api and cf_rng is not None and cf_rng.random() < cf_share:
            q = counterfactual(q, cf_rng) or q
        if depth:
            pieces = pieces_rgbd(q)
        elif api_rgb and api:
            pieces = pieces_rgb_api(q)
        else:
            pieces = pieces_rgb(q)
        ids, flags = segments_to_ids(tok, pieces)
        out.append(dict(q=q, depth=depth, ids=ids, flags=flags, copies=copied_digits(tok, ids, flags, api)))
    return out


HEADS = "training-heads.pt"


def save_checkpoint(model, full_tower, cfg, tok, folder: Path, heads: dict | None = None):
    """The release-layout checkpoint; the training-only heads (not exported) beside it in
    training-heads.pt, so that a later stage's --init continues them instead of starting fresh."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if heads:
        torch.save({k: h.state_dict() for k, h in heads.items() if h is not None}, folder / HEADS)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok.save(str(folder / "tokenizer.json"))
    sd = model.release_state_dict(full_tower)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})


@torch.no_grad()
def val_loss(model, examples, images, batch: int) -> float:
    model.eval()
    losses = [batch_loss(model, examples[i : i + batch], images)[0].item() for i in range(0, len(examples), batch)]
    model.train()
    return float(np.mean(losses))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--val-questions", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this checkpoint folder's weights and tokenizer (a second stage)")
    ap.add_argument("--init-language-only", action="store_true",
                    help="with --init: take only the language model's weights; the tower and projector start fresh")
    ap.add_argument("--aux-weight", type=float, default=0.0,
                    help="weight of the auxiliary patch-statistics loss on the image tokens (0: off)")
    ap.add_argument("--dense-weight", type=float, default=0.0,
                    help="weight of the per-patch object/gripper share loss on the colour tokens "
                         "(0: off; needs a set written with `spatialqa --labels`)")
    ap.add_argument("--scene-weight", type=float, default=0.0,
                    help="weight of the scene readout loss on the language model's state at the end of "
                         "the first prompt (0: off; needs a set written with `spatialqa --labels`)")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop after this many steps of the --steps schedule (warm-up and cosine over --steps)")
    ap.add_argument("--copy-weight", type=float, default=1.0,
                    help="weight of the last answer's digit tokens in conversations with Depth API turns "
                         "(the copied values) in the answers' loss, a weighted mean (1: every token alike)")
    ap.add_argument("--counterfactual-share", type=float, default=0.0,
                    help="the share of RGB-D examples with Depth API turns whose API values are moved by one "
                         "random monotone map (reply and answer alike), so that only copying answers them")
    ap.add_argument("--api-rgb", action="store_true",
                    help="RGB-only training examples of the questions answered through the Depth API keep "
                         "their API turns (one image) instead of a direct answer; for a colour-only phase")
    ap.add_argument("--rgb-share", type=float, default=RGB_ONLY_SHARE,
                    help="the share of training examples asked without the depth image (RGB-only prompt, "
                         "direct answer); 1.0 trains on the colour image alone")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(args.seed)
    t_wall, t_cpu = time.time(), time.process_time()

    train_meta, train_q = read_set(args.train)
    val_meta, val_q = read_set(args.val)
    if set(range(*train_meta["seeds"])) & set(range(*val_meta["seeds"])):
        raise SystemExit("train and val seeds overlap")
    tok = bunny.load_tokenizer(args.init) if args.init else train_tokenizer(train_q)
    eos = tok.token_to_id(bunny.EOS_TEXT)
    cfg = config(tok.get_vocab_size(), eos)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok.save(str(args.out / "tokenizer.json"))
    spec = bunny.read_spec(args.out)
    full_tower = bunny.build_tower(spec)
    model = bunny.Bunny(spec)
    model.tower.load_state_dict(
        {k: v for k, v in full_tower.state_dict().items() if k in model.tower.state_dict()}, strict=True
    )
    if args.init:
        fresh = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("lm.")}
        model.load_checkpoint(bunny.read_checkpoint_tensors(args.init))
        if args.init_language_only:
            model.load_state_dict(fresh, strict=False)
        print(f"initialised from {args.init}{' (language model only)' if args.init_language_only else ''}", flush=True)
    aux_head = torch.nn.Linear(cfg["hidden_size"], 6) if args.aux_weight > 0 else None
    labels = dense_head = None
    if args.dense_weight > 0:
        labels = Labels(args.train, spec.image_size, int(spec.vision_config["patch_size"]))
        dense_head = torch.nn.Linear(cfg["hidden_size"], labels.classes())
        print(f"dense targets: {labels.names} + gripper", flush=True)
    scenes = readout = None
    if args.scene_weight > 0:
        scenes = SceneTargets(labels or Labels(args.train, spec.image_size, int(spec.vision_config["patch_size"])))
        readout = torch.nn.Linear(cfg["hidden_size"], scenes.width())
        print(f"scene readout: {scenes.width()} targets over {scenes.names} + gripper", flush=True)
    heads = {"aux": aux_head, "dense": dense_head, "readout": readout}
    if args.init and (args.init / HEADS).is_file():
        saved = torch.load(args.init / HEADS)
        for name, head in heads.items():
            if head is not None and name in saved:
                try:
                    head.load_state_dict(saved[name])
                    print(f"training head {name}: continued from {args.init / HEADS}", flush=True)
                except RuntimeError as e:
                    print(f"training head {name}: starts fresh ({e.__class__.__name__}: shapes differ)", flush=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params / 1e6:.2f} M (trained), vocab {cfg['vocab_size']}", flush=True)

    train_images = Images(args.train, spec.image_size)
    val_images = Images(args.val, spec.image_size)
    train_ex = examples_of(train_q, tok, rng, args.rgb_share, args.api_rgb, args.counterfactual_share,
                           random.Random(args.seed + 7919))
    if args.counterfactual_share > 0:
        changed = sum(1 for e, q in zip(train_ex, train_q) if e["q"] is not q)
        print(f"counterfactual Depth API values: {changed} of {len(train_ex)} examples", flush=True)
    val_sel = random.Random(1).sample(val_q, min(args.val_questions, len(val_q)))
    val_ex = examples_of(val_sel, tok, random.Random(2), RGB_ONLY_SHARE)
    lengths = [len(e["ids"]) for e in train_ex]
    print(f"train examples {len(train_ex)}, text tokens mean {np.mean(lengths):.0f} max {max(lengths)}", flush=True)

    trained = list(model.parameters()) + [p for h in (aux_head, dense_head, readout) if h is not None for p in h.parameters()]
    opt = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, args.steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))),
    )
    curve = []
    order: list[int] = []
    model.train()
    last = args.steps if args.stop_after is None else min(args.steps, args.stop_after)
    for step in range(last):
        if len(order) < args.batch:
            more = list(range(len(train_ex)))
            rng.shuffle(more)
            order += more
        batch = [train_ex[i] for i in order[: args.batch]]
        del order[: args.batch]
        loss, aux, dense, scene = batch_loss(model, batch, train_images, aux_head, dense_head, labels, readout, scenes,
                                             args.copy_weight)
        opt.zero_grad()
        total = loss
        if aux is not None:
            total = total + args.aux_weight * aux
        if dense is not None:
            total = total + args.dense_weight * dense
        if scene is not None:
            total = total + args.scene_weight * scene
        total.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        sched.step()
        point = dict(step=step, loss=round(loss.item(), 5), **({"aux": round(aux.item(), 5)} if aux is not None else {}),
                     **({"dense": round(dense.item(), 5)} if dense is not None else {}),
                     **({"scene": round(scene.item(), 5)} if scene is not None else {}), wall_s=round(time.time() - t_wall, 1),
                     cpu_s=round(time.process_time() - t_cpu, 1))
        if step % 25 == 0:
            print(json.dumps(point), flush=True)
        if (step + 1) % args.save_every == 0 or step == last - 1:
            point["val_loss"] = round(val_loss(model, val_ex, val_images, args.batch), 5)
            print(json.dumps(point), flush=True)
            save_checkpoint(model, full_tower, cfg, tok, args.out / f"step-{step + 1}", heads)
        curve.append(point)
        (args.out / "curve.jsonl").open("a").write(json.dumps(point) + "\n") if step % 25 == 0 or "val_loss" in point else None
    save_checkpoint(model, full_tower, cfg, tok, args.out, heads)
    record = dict(
        recipe=dict(vars(args), train=str(args.train), val=str(args.val), out=str(args.out), init=str(args.init),
                    rgb_only_share=args.rgb_share, vocab=VOCAB),
        train_set=train_meta,
        val_set=val_meta,
        parameters=params,
        wall_s=round(time.time() - t_wall, 1),
        cpu_s=round(time.process_time() - t_cpu, 1),
        curve=[c for c in curve if c["step"] % 25 == 0 or "val_loss" in c],
    )
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"done: wall {record['wall_s']} s, cpu {record['cpu_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
