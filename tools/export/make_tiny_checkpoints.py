"""Makes the tiny source checkpoints: tokenizer, release-layout config.json, trained weights.

    python tools/export/make_tiny_checkpoints.py --out tools/export/tiny-checkpoints

Writes tiny-spatialbot/ (bunny-phi + SigLIP) and tiny-policy/ (bunny-qwen2 + CLIP), each with
config.json, model.safetensors and tokenizer.json. Fixed seeds, single-threaded torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bunny  # noqa: E402
import scenes  # noqa: E402

VOCAB = 512

SPATIALBOT_CONFIG = {
    "architectures": ["BunnyPhiForCausalLM"],
    "model_type": "bunny-phi",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "hidden_act": "gelu_new",
    "layer_norm_eps": 1e-5,
    "partial_rotary_factor": 0.5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "qk_layernorm": False,
    "tie_word_embeddings": False,
    "mm_vision_tower": "tiny-siglip-patch14-28",
    "mm_vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    },
    "mm_hidden_size": 32,
    "mm_projector_type": "mlp2x_gelu",
    "image_aspect_ratio": "pad",
    "tokenizer_model_max_length": 2048,
    "tokenizer_padding_side": "right",
    "torch_dtype": "float32",
}

POLICY_CONFIG = {
    "architectures": ["BunnyQwen2ForCausalLM"],
    "model_type": "bunny-qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
    "mm_vision_tower": "tiny-clip-patch14-28",
    "mm_vision_config": {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 32,
    },
    "mm_hidden_size": 32,
    "mm_projector_type": "mlp2x_gelu",
    "image_aspect_ratio": "pad",
    "tokenizer_model_max_length": 4096,
    "tokenizer_padding_side": "right",
    "torch_dtype": "float32",
}


def corpus() -> list[str]:
    """Every kind of text the tiny models see, repeated so the common phrases merge."""
    import numpy as np

    rng = np.random.default_rng(7)
    lines = [bunny.BUNNY_SYSTEM + " USER: "] * 400
    for _ in range(300):
        x, y = f"0.{rng.integers(1, 10)}", f"0.{rng.integers(1, 10)}"
        v = int(rng.integers(300, 4000))
        color = list(scenes.COLORS)[int(rng.integers(4))]
        lines += [
            f" USER: \n\nWhat is the depth value of point <{x},{y}>? ASSISTANT:",
            f" The depth value of point({x},{y}) is Depth({x},{y}).",
            f"USER: API: Depth({x},{y})={v} ASSISTANT: The depth is {v} mm.",
            f"What color is the box? ASSISTANT: The box is {color}.",
            "USER:\n\n\n\nInstruct the robot to pick up the box\nAnswer with robot parameters. ASSISTANT:",
            f" [0.0,0.3,0.7,0.5,0.5,0.5,{scenes.YAW_BY_COLOR[color]},1.0]",
        ]
        for goal in scenes.PICK_GOALS + scenes.PUSH_GOALS:
            lines.append(f"Instruct the robot to {goal}\n")
    return lines


def train_tokenizer():
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
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: per model)")
    ap.add_argument("--only", choices=["tiny-spatialbot", "tiny-policy"], default=None)
    args = ap.parse_args()

    import train_tiny

    tok = train_tokenizer()
    eos = tok.token_to_id(bunny.EOS_TEXT)
    n = tok.get_vocab_size()
    for name, cfg, vocab in (
        ("tiny-spatialbot", SPATIALBOT_CONFIG, n),  # Phi: vocab resized to len(tokenizer)
        ("tiny-policy", POLICY_CONFIG, (n + 63) // 64 * 64),  # Qwen: padded vocab
    ):
        if args.only and args.only != name:
            continue
        cfg = dict(cfg, vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tok.save(str(folder / "tokenizer.json"))
        train_tiny.train(folder, kind="spatialbot" if "spatialbot" in name else "policy", steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
