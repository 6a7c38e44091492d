"""Bunny / SpatialBot multimodal model built from stock `transformers` classes.

Shared by export.py (graphs), reference.py (end-to-end answers) and train_tiny.py (the tiny
fixtures), so the three use the same checkpoint mapping, tokenisation, preprocessing and splice.
No remote code is executed: the checkpoint's weights are mapped by name onto stock modules.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."

BUNNY_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
EOS_TEXT = "<|endoftext|>"
IMAGE_PLACEHOLDER_RE = re.compile(r"<image \d+>")
FIRST_IMAGE_ID = -201
DEPTH_CALL_RE = re.compile(r"Depth\(([\d.]+),\s*([\d.]+)\)")

# Vision towers named by `mm_vision_tower` in released configs (the tower's own config is not in
# the checkpoint folder; these are the upstream values).
KNOWN_TOWERS = {
    "google/siglip-so400m-patch14-384": dict(
        model_type="siglip_vision_model",
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    ),
    "openai/clip-vit-large-patch14-336": dict(
        model_type="clip_vision_model",
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=768,
    ),
}

SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

LLM_ARCHS = {"bunny-phi": "phi", "phi": "phi", "bunny-qwen2": "qwen2", "qwen2": "qwen2"}


class CheckpointError(Exception):
    """A checkpoint folder that cannot be converted; the message names the file and tensor."""


@dataclass
class Spec:
    """Everything the export needs to know about one checkpoint folder."""

    folder: Path
    config: dict
    arch: str  # "phi" | "qwen2"
    tower: str  # "siglip" | "clip"
    vision_config: dict
    image_aspect_ratio: str
    context_limit: int
    eos_id: int
    extra: dict = field(default_factory=dict)

    @property
    def mean(self):
        return SIGLIP_MEAN if self.tower == "siglip" else CLIP_MEAN

    @property
    def std(self):
        return SIGLIP_STD if self.tower == "siglip" else CLIP_STD

    @property
    def image_size(self) -> int:
        return int(self.vision_config["image_size"])

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // int(self.vision_config["patch_size"])) ** 2

    @property
    def pad_color(self):
        return [int(m * 255) for m in self.mean]


def _known_tower(name) -> str | None:
    """Training configs may name the tower by a local path; match on the repository name."""
    if not isinstance(name, str):
        return None
    base = name.rstrip("/").split("/")[-1]
    for known in KNOWN_TOWERS:
        if known == name or known.split("/")[-1] == base:
            return known
    return None


def read_spec(folder: Path) -> Spec:
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing; a checkpoint folder needs config.json")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from e
    model_type = config.get("model_type")
    arch = LLM_ARCHS.get(model_type)
    if arch is None:
        raise CheckpointError(
            f"{cfg_path}: unknown model_type {model_type!r}; supported: {sorted(LLM_ARCHS)}"
        )
    tower_name = config.get("mm_vision_tower")
    if "mm_vision_config" in config:
        vision_config = dict(config["mm_vision_config"])
    elif _known_tower(tower_name) is not None:
        vision_config = dict(KNOWN_TOWERS[_known_tower(tower_name)])
    else:
        raise CheckpointError(
            f"{cfg_path}: mm_vision_tower {tower_name!r} is not a known tower "
            f"({sorted(KNOWN_TOWERS)}) and there is no mm_vision_config to describe it"
        )
    vt = vision_config.get("model_type", "")
    if "siglip" in vt:
        tower = "siglip"
    elif "clip" in vt:
        tower = "clip"
    else:
        raise CheckpointError(f"{cfg_path}: vision tower model_type {vt!r} is neither SigLIP nor CLIP")
    if config.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise CheckpointError(
            f"{cfg_path}: mm_projector_type {config.get('mm_projector_type')!r} is not supported "
            "(only mlp2x_gelu)"
        )
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: missing field {key!r}")
    eos = config.get("eos_token_id", 50256 if arch == "phi" else 151643)
    if isinstance(eos, list):
        eos = eos[0]
    return Spec(
        folder=folder,
        config=config,
        arch=arch,
        tower=tower,
        vision_config=vision_config,
        image_aspect_ratio=config.get("image_aspect_ratio", "pad"),
        context_limit=int(config.get("tokenizer_model_max_length", 2048)),
        eos_id=int(eos),
    )


def read_checkpoint_tensors(folder: Path) -> dict[str, tuple[Path, torch.Tensor]]:
    """All tensors of the checkpoint, each with the file it came from."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted(set(weight_map.values()))
    elif single.is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(
            f"{folder}: no model.safetensors or model.safetensors.index.json "
            "(convert .bin checkpoints to safetensors first)"
        )
    out = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {index.name} but missing")
        for k, v in load_file(str(path)).items():
            out[k] = (path, v)
    return out


def llm_config(spec: Spec):
    from transformers import PhiConfig, Qwen2Config

    c = spec.config
    common = dict(
        vocab_size=c["vocab_size"],
        hidden_size=c["hidden_size"],
        intermediate_size=c.get("intermediate_size", 4 * c["hidden_size"]),
        num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
        max_position_embeddings=c.get("max_position_embeddings", 2048),
        rope_theta=c.get("rope_theta", 10000.0 if spec.arch == "phi" else 1e6),
        tie_word_embeddings=c.get("tie_word_embeddings", spec.arch == "qwen2"),
    )
    if spec.arch == "phi":
        cfg = PhiConfig(
            **common,
            hidden_act=c.get("hidden_act", "gelu_new"),
            layer_norm_eps=c.get("layer_norm_eps", 1e-5),
            partial_rotary_factor=c.get("partial_rotary_factor", 0.4),
            qk_layernorm=c.get("qk_layernorm", False),
        )
    else:
        cfg = Qwen2Config(
            **common,
            hidden_act=c.get("hidden_act", "silu"),
            rms_norm_eps=c.get("rms_norm_eps", 1e-6),
        )
    cfg._attn_implementation = "eager"
    return cfg


def vision_config(spec: Spec, layers: int | None = None):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    vc = {k: v for k, v in spec.vision_config.items() if k != "model_type"}
    if layers is not None:
        vc["num_hidden_layers"] = layers
    cls = SiglipVisionConfig if spec.tower == "siglip" else CLIPVisionConfig
    cfg = cls(**vc)
    cfg._attn_implementation = "eager"
    return cfg


def build_llm(spec: Spec):
    from transformers import PhiForCausalLM, Qwen2ForCausalLM

    cfg = llm_config(spec)
    lm = (PhiForCausalLM if spec.arch == "phi" else Qwen2ForCausalLM)(cfg)
    if spec.arch == "phi":
        # Bunny's Phi builds lm_head without a bias.
        lm.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
    return lm


def build_tower(spec: Spec, layers: int | None = None):
    from transformers import CLIPVisionModel, SiglipVisionModel

    cfg = vision_config(spec, layers)
    return (SiglipVisionModel if spec.tower == "siglip" else CLIPVisionModel)(cfg)


def _strip_vision_model(key: str) -> str:
    # transformers 5 vision models have no `.vision_model` level; older ones do.
    return key[len("vision_model.") :] if key.startswith("vision_model.") else key


class Bunny(nn.Module):
    """Vision tower (layer −2) + mlp2x_gelu projector + causal LM, as Bunny wires them."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        full = int(spec.vision_config["num_hidden_layers"])
        # Layer −2 output: build the tower one layer short and take its last encoder state.
        self.tower = build_tower(spec, full - 1)
        mm_hidden = int(spec.vision_config["hidden_size"])
        hidden = int(spec.config["hidden_size"])
        self.projector = nn.Sequential(nn.Linear(mm_hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.lm = build_llm(spec)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.tower(pixel_values=pixel_values, output_hidden_states=True)
        h = out.hidden_states[-1]
        if self.spec.tower == "clip":
            h = h[:, 1:]
        return self.projector(h)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(input_ids)

    # --- checkpoint mapping ------------------------------------------------------------------
    def checkpoint_targets(self) -> dict[str, torch.Tensor]:
        """Checkpoint key → the parameter it fills."""
        out = {}
        for k, v in self.tower.state_dict(keep_vars=True).items():
            if k.endswith("position_ids"):
                continue
            out[VISION_PREFIX + _strip_vision_model(k)] = v
        for k, v in self.projector.state_dict(keep_vars=True).items():
            out[PROJECTOR_PREFIX + k] = v
        for k, v in self.lm.state_dict(keep_vars=True).items():
            out[k] = v
        return out

    def load_checkpoint(self, tensors: dict[str, tuple[Path, torch.Tensor]]) -> list[str]:
        """Copies the checkpoint's tensors in by name; returns the keys it did not use."""
        targets = self.checkpoint_targets()
        tied = self.lm.config.tie_word_embeddings
        used = set()
        with torch.no_grad():
            for key, param in targets.items():
                src_key = key
                if key == "lm_head.weight" and key not in tensors and tied:
                    src_key = "model.embed_tokens.weight"
                if src_key not in tensors:
                    raise CheckpointError(
                        f"{self.spec.folder}: tensor {key!r} is missing from the checkpoint "
                        f"(expected shape {list(param.shape)})"
                    )
                path, t = tensors[src_key]
                if tuple(t.shape) != tuple(param.shape):
                    raise CheckpointError(
                        f"{path}: tensor {src_key!r} has shape {list(t.shape)} but config.json "
                        f"implies {list(param.shape)}"
                    )
                param.copy_(t.to(param.dtype))
                used.add(src_key)
        return sorted(k for k in tensors if k not in used)

    def release_state_dict(self, full_tower: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """State dict in the release key layout (`model.vision_tower.vision_tower.vision_model.*`)."""
        out = {}
        tower_sd = (full_tower or self.tower).state_dict()
        if full_tower is not None:
            # The trained layers overwrite the full tower's first layers.
            tower_sd = dict(tower_sd)
            tower_sd.update(self.tower.state_dict())
        for k, v in tower_sd.items():
            if k.endswith("position_ids"):
                continue
            out[VISION_PREFIX + _strip_vision_model(k)] = v
        for k, v in self.projector.state_dict().items():
            out[PROJECTOR_PREFIX + k] = v
        for k, v in self.lm.state_dict().items():
            if k == "lm_head.weight" and self.lm.config.tie_word_embeddings:
                continue
            out[k] = v
        return {k: v.detach().contiguous().clone() for k, v in out.items()}


def load_bunny(folder: Path) -> tuple[Bunny, list[str]]:
    spec = read_spec(folder)
    model = Bunny(spec)
    unused = model.load_checkpoint(read_checkpoint_tensors(folder))
    model.eval()
    return model, unused


# --- tokenisation and prompts ----------------------------------------------------------------


def load_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the model folder needs a tokenizer.json")
    return Tokenizer.from_file(str(path))


def tokenize_chunked(tokenizer, text: str) -> list[int]:
    """Reference §2.2: split on `<image N>`, tokenise each chunk alone (no BOS), join with -201, -202, …"""
    chunks = IMAGE_PLACEHOLDER_RE.split(text)
    ids: list[int] = []
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(FIRST_IMAGE_ID - (i - 1))
        if chunk:
            ids.extend(tokenizer.encode(chunk, add_special_tokens=False).ids)
    return ids


def images_text(n: int) -> str:
    return "".join(f"<image {i + 1}>\n" for i in range(n))


def spatialbot_prompt(question: str, n_images: int = 2) -> str:
    return f"{BUNNY_SYSTEM} USER: {images_text(n_images)}{question} ASSISTANT:"


def spatialbot_followup(prompt: str, answer: str, reply: str) -> str:
    """conv `bunny` multi-turn: the answer ends with <|endoftext|>, the API reply is a new USER turn."""
    return f"{prompt} {answer}{EOS_TEXT}USER: {reply} ASSISTANT:"


POLICY_INSTRUCTION = "Instruct the robot to {goal}\nAnswer with robot parameters."


def policy_prompt(goal: str, frames: int = 4) -> str:
    return f"USER:{images_text(frames)}{POLICY_INSTRUCTION.format(goal=goal)} ASSISTANT:"


def splice(model: Bunny, ids: list[int], image_embeds: torch.Tensor) -> torch.Tensor:
    """Placeholders (ids < 0) are replaced, in order of appearance, by consecutive images' rows."""
    pieces = []
    text: list[int] = []
    img = 0
    for t in ids:
        if t < 0:
            if text:
                pieces.append(model.embed(torch.tensor([text], dtype=torch.long))[0])
                text = []
            pieces.append(image_embeds[img])
            img += 1
        else:
            text.append(t)
    if text:
        pieces.append(model.embed(torch.tensor([text], dtype=torch.long))[0])
    if img != image_embeds.shape[0]:
        raise ValueError(f"prompt has {img} image placeholders but {image_embeds.shape[0]} images were given")
    return torch.cat(pieces, 0)[None]


def answer_targets(ids: list[int], flags: list[bool], tokens_per_image: int) -> list[int]:
    """Next-token targets over a spliced sequence: position k predicts token k + 1; image rows,
    prompt tokens (flag False) and the last position are ignored (-100)."""
    expanded: list[int] = []
    for t, f in zip(ids, flags):
        if t < 0:
            expanded += [-100] * tokens_per_image
        else:
            expanded.append(t if f else -100)
    return expanded[1:] + [-100]


def padded_lm_loss(model: Bunny, seqs: list[torch.Tensor], targets: list[list[int]],
                   weights: list[list[float]] | None = None, hidden_at: list[int] | None = None):
    """The language model's cross-entropy over a batch of spliced sequences (each [len, hidden]),
    right-padded to the longest. Without weights: the mean over targets that are not -100. With
    weights (one per position, targets then >= 0): the weighted mean of the per-token loss.
    With hidden_at (one position per sequence): (loss, the last layer's normed hidden state at
    each of those positions, [batch, hidden]) — for a trainer's auxiliary heads."""
    L = max(s.shape[0] for s in seqs)
    H = seqs[0].shape[1]
    embeds = torch.zeros(len(seqs), L, H)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    pad = -100 if weights is None else 0
    tgt = torch.full((len(seqs), L), pad, dtype=torch.long)
    wgt = torch.zeros((len(seqs), L))
    for i, (s, t) in enumerate(zip(seqs, targets)):
        embeds[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
        tgt[i, : len(t)] = torch.tensor(t)
        if weights is not None:
            wgt[i, : len(weights[i])] = torch.tensor(weights[i])
    pos = torch.arange(L)[None].expand(len(seqs), L)
    out = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                   output_hidden_states=hidden_at is not None)
    logits = out.logits
    if weights is None:
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    else:
        nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
        loss = (nll * wgt.reshape(-1)).sum() / wgt.sum()
    if hidden_at is None:
        return loss
    last = out.hidden_states[-1]
    return loss, last[torch.arange(len(seqs)), torch.tensor(hidden_at)]


# --- image preprocessing (numpy + Pillow, as the released processors) ------------------------


def pack_depth(depth_mm: np.ndarray) -> np.ndarray:
    """SpatialBot's 3-channel depth encoding of uint16 millimetres (reference §1)."""
    d = depth_mm.astype(np.int64)
    out = np.zeros(d.shape + (3,), np.uint8)
    out[:, :, 0] = ((d // 1024) * 4) % 256
    out[:, :, 1] = ((d // 32) * 8) % 256
    out[:, :, 2] = ((d % 32) * 8) % 256
    return out


def expand2square(rgb: np.ndarray, color) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    s = max(h, w)
    out = np.empty((s, s, 3), np.uint8)
    out[:, :] = np.array(color, np.uint8)
    if w > h:
        top = (w - h) // 2
        out[top : top + h, :] = rgb
    else:
        left = (h - w) // 2
        out[:, left : left + w] = rgb
    return out


def resize_bicubic(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, "RGB").resize((width, height), Image.BICUBIC))


def normalize(rgb: np.ndarray, mean, std) -> np.ndarray:
    x = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(rgb: np.ndarray, tower: str, size: int, pad: bool) -> np.ndarray:
    """One HWC uint8 image → the f32 CHW tensor the vision graph eats."""
    mean = SIGLIP_MEAN if tower == "siglip" else CLIP_MEAN
    std = SIGLIP_STD if tower == "siglip" else CLIP_STD
    if pad:
        rgb = expand2square(rgb, [int(m * 255) for m in mean])
    if tower == "siglip":
        rgb = resize_bicubic(rgb, size, size)
    else:
        h, w = rgb.shape[:2]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
        rgb = resize_bicubic(rgb, nw, nh)
        top, left = (nh - size) // 2, (nw - size) // 2
        rgb = rgb[top : top + size, left : left + size]
    return normalize(rgb, mean, std)


def depth_lookup(depth_mm: np.ndarray, x_text: str, y_text: str, neighbourhood: int = 0) -> str:
    """The value the Depth API returns for normalised (x, y) on the original image: mm or 'unknown'."""
    try:
        x, y = float(x_text), float(y_text)
    except ValueError:
        return "unknown"
    h, w = depth_mm.shape
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        return "unknown"
    col = min(int(math.floor(x * w)), w - 1)
    row = min(int(math.floor(y * h)), h - 1)
    v = int(depth_mm[row, col])
    return "unknown" if v == 0 else str(v)


# --- generation ------------------------------------------------------------------------------


@torch.no_grad()
def greedy(model: Bunny, embeds: torch.Tensor, max_new_tokens: int, stop_ids: list[int]) -> list[int]:
    """Greedy decoding with a KV cache: prefill the spliced embeddings, then one token at a time."""
    from transformers import DynamicCache

    lm = model.lm
    cache = DynamicCache(config=lm.config)
    L = embeds.shape[1]
    mask = torch.ones(1, L, dtype=torch.long)
    pos = torch.arange(L)[None]
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, cache=cache,
             use_cache=True, logits_to_keep=1)
    tokens: list[int] = []
    for step in range(max_new_tokens):
        t = int(out.logits[0, -1].argmax())
        tokens.append(t)
        if t in stop_ids:
            break
        total = L + step + 1
        mask = torch.ones(1, total, dtype=torch.long)
        pos = torch.tensor([[total - 1]])
        out = lm(inputs_embeds=model.embed(torch.tensor([[t]])), attention_mask=mask, position_ids=pos,
                 cache=out.past_key_values, use_cache=True, logits_to_keep=1)
    return tokens


def decode_answer(tokenizer, tokens: list[int], stop_ids: list[int]) -> str:
    body = [t for t in tokens if t not in stop_ids]
    return tokenizer.decode(body, skip_special_tokens=True).strip()
