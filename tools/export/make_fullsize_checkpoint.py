"""A random-weight checkpoint folder of a full-size architecture, from configs alone (no download).

    python tools/export/make_fullsize_checkpoint.py --model policy --out DIR
    python tools/export/make_fullsize_checkpoint.py --model spatialbot --out DIR [--llm-layers N]

policy = Qwen1.5-0.5B + CLIP-L/14-336 (bunny-qwen2); spatialbot = Phi-2 (vocab 50295, lm_head
without bias) + SigLIP-so400m/14-384 (bunny-phi). Release key layout and config fields; the
tokenizer.json is the tiny fixtures' stand-in (the real one comes with a real checkpoint). Used to
measure export time, sizes and load times; the weights mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bunny  # noqa: E402

CONFIGS = {
    "spatialbot": {
        "architectures": ["BunnyPhiForCausalLM"],
        "model_type": "bunny-phi",
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5,
        "partial_rotary_factor": 0.4,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "vocab_size": 50295,
        "tie_word_embeddings": False,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "mm_hidden_size": 1152,
        "mm_projector_type": "mlp2x_gelu",
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 2048,
        "torch_dtype": "float16",
    },
    "policy": {
        "architectures": ["BunnyQwen2ForCausalLM"],
        "model_type": "bunny-qwen2",
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_hidden_size": 1024,
        "mm_projector_type": "mlp2x_gelu",
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 4096,
        "torch_dtype": "float16",
    },
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--llm-layers", type=int, default=None, help="fewer decoder layers (memory-limited hosts)")
    args = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    cfg = dict(CONFIGS[args.model])
    if args.llm_layers:
        cfg["num_hidden_layers"] = args.llm_layers
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tiny = Path(__file__).resolve().parent / "tiny-checkpoints" / "tiny-spatialbot" / "tokenizer.json"
    shutil.copyfile(tiny, args.out / "tokenizer.json")
    model = bunny.Bunny(bunny.read_spec(args.out))
    sd = model.release_state_dict()
    del model
    save_file(sd, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {args.out} ({sum(v.numel() for v in sd.values()) / 1e6:.1f} M params)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
