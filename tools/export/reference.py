"""Reference pipeline on PyTorch modules: what SpatialBot's / the robot scripts' code does end to end.

    python tools/export/reference.py ask --checkpoint DIR --rgb RGB.png --depth DEPTH.png "question"
    python tools/export/reference.py policy --checkpoint DIR --goal "pick up the box" NEWEST.png [OLDER.png ...]
    python tools/export/reference.py e2e --checkpoint DIR --kind spatialbot|policy --out MODEL/reference/e2e
    python tools/export/reference.py e2e --checkpoint DIR --kind policy --demos EPISODE... --out DIR

`ask`: pack the depth (uint16 mm → 3-channel), pad to square and bicubic-resize both images, chunked
tokenisation of the bunny prompt, splice, greedy generation; every Depth(x,y) call in the answer is
looked up on the raw depth and fed back as a new USER turn ("API: Depth(x,y)=v"), at most
max_rounds rounds. `policy`: 4-frame history (newest first, padded with the oldest), action text,
parsed and decoded with the ManiSkill affine map. `e2e` writes the fixtures the Rust tests read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import bunny  # noqa: E402

MAX_NEW_TOKENS = 128
MAX_ROUNDS = 2


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_depth(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: depth PNG must be 16-bit grayscale millimetres, got mode {im.mode}")
        return np.asarray(im).astype(np.uint16)


class Runner:
    def __init__(self, checkpoint: Path):
        import torch

        torch.set_num_threads(1)
        self.model, _ = bunny.load_bunny(checkpoint)
        self.tok = bunny.load_tokenizer(checkpoint)
        self.spec = self.model.spec
        self.stop = [self.spec.eos_id]

    def generate(self, prompt: str, pixels: np.ndarray):
        import torch

        ids = bunny.tokenize_chunked(self.tok, prompt)
        with torch.no_grad():
            embeds = bunny.splice(self.model, ids, self.model.encode_images(torch.from_numpy(pixels)))
        tokens = bunny.greedy(self.model, embeds, MAX_NEW_TOKENS, self.stop)
        return ids, tokens, bunny.decode_answer(self.tok, tokens, self.stop)

    def ask(self, rgb: np.ndarray, depth_mm: np.ndarray, question: str) -> dict:
        pad = self.spec.image_aspect_ratio == "pad"
        pixels = np.stack([
            bunny.preprocess(rgb, self.spec.tower, self.spec.image_size, pad),
            bunny.preprocess(bunny.pack_depth(depth_mm), self.spec.tower, self.spec.image_size, pad),
        ])
        prompt = bunny.spatialbot_prompt(question)
        rounds = []
        answer = ""
        for r in range(MAX_ROUNDS):
            ids, tokens, answer = self.generate(prompt, pixels)
            calls = bunny.DEPTH_CALL_RE.findall(answer)
            rec = {"prompt": prompt, "input_ids": ids, "tokens": tokens, "answer": answer, "calls": []}
            rounds.append(rec)
            if not calls or r == MAX_ROUNDS - 1:
                break
            replies = []
            for x, y in calls:
                value = bunny.depth_lookup(depth_mm, x, y)
                rec["calls"].append({"x": x, "y": y, "value": value})
                replies.append(f"API: Depth({x},{y})={value}")
            rec["reply"] = "\n".join(replies)
            prompt = bunny.spatialbot_followup(prompt, answer, rec["reply"])
        return {"question": question, "answer": answer, "rounds": rounds}

    @property
    def frames(self) -> int:
        """The policy's frame history (config.json `policy_frames`, the manifest's [policy] frames)."""
        return int(self.spec.config.get("policy_frames", 4))

    def policy(self, history: list[np.ndarray], goal: str) -> dict:
        n = self.frames
        frames = list(history)
        while len(frames) < n:
            frames.append(frames[-1])
        pixels = np.stack([bunny.preprocess(f, self.spec.tower, self.spec.image_size, False) for f in frames[:n]])
        prompt = bunny.policy_prompt(goal, n)
        ids, tokens, text = self.generate(prompt, pixels)
        return {"goal": goal, "prompt": prompt, "input_ids": ids, "tokens": tokens, "text": text,
                **parse_actions(text)}


def parse_actions(text: str) -> dict:
    """The robot scripts' parser: strip, drop the brackets, remove spaces, split on ',', float()."""
    import export

    try:
        values = [float(v) for v in text.strip()[1:-1].replace(" ", "").split(",")]
    except ValueError:
        return {"values": None, "actions": None}
    if len(values) != len(export.MANISKILL_ACTIONS):
        return {"values": values, "actions": None}
    actions = [scale * v + offset for v, (_, _, _, scale, offset) in zip(values, export.MANISKILL_ACTIONS)]
    return {"values": values, "actions": actions}


def dump_json(obj) -> str:
    """Indented JSON with number lists kept on one line."""
    import re

    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return re.sub(r"\[\n\s*([-0-9.eE+,\s]+?)\n\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def write_png_rgb(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb, "RGB").save(path)


def write_png_depth(path: Path, depth: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(depth.astype(np.uint16)).save(path)


SPATIALBOT_CASES = [
    # (width, height, question)
    (80, 60, "What is the depth value of point <0.3,0.7>?"),
    (60, 80, "What is the depth value of point <0.6,0.4>?"),
    (64, 64, "What color is the box?"),
    (96, 72, "What color is the box?"),
]


def e2e_spatialbot(runner: Runner, out: Path) -> dict:
    import scenes

    rng = np.random.default_rng(77)
    cases = []
    for i, (w, h, q) in enumerate(SPATIALBOT_CASES):
        rgb, depth, _ = scenes.scene(rng, w, h, boxes=1)
        rgb_name, depth_name = f"rgb_{i}.png", f"depth_{i}.png"
        write_png_rgb(out / rgb_name, rgb)
        write_png_depth(out / depth_name, depth)
        cases.append({"rgb": rgb_name, "depth": depth_name, **runner.ask(read_rgb(out / rgb_name),
                                                                        read_depth(out / depth_name), q)})
    return {"kind": "spatialbot", "max_new_tokens": MAX_NEW_TOKENS, "max_rounds": MAX_ROUNDS, "cases": cases}


POLICY_GOALS = ["pick up the box", "push the box", "pick up the box", "lift the box", "push the box",
                "pick up the box"]
# What `run --every-frame --steps 10 --goal "pick up the box"` does on the sample recording.
SAMPLE_GOAL = "pick up the box"
SAMPLE_STEPS = 10


def e2e_policy(runner: Runner, out: Path, sample: Path | None) -> dict:
    import scenes

    if sample is not None:
        # The control loop over the recording: one goal, frames 0..N-1 in order, the history
        # newest first padded with the oldest frame seen so far.
        names = sorted(p.name for p in (sample / "color").glob("*.png"))[:SAMPLE_STEPS]
        frames = [read_rgb(sample / "color" / n) for n in names]
        source = f"{sample.as_posix()}/color"
        paths = [f"{source}/{n}" for n in names]
    else:
        # Two shots of three frames each (a cut between them), different boxes, so the actions
        # change with what the frames show and the history spans both shots.
        rng = np.random.default_rng(55)
        first = scenes.moved(rng, 160, 120, 3)
        second = scenes.moved(rng, 160, 120, 3)
        while second[0][1][0]["color"] == first[0][1][0]["color"]:
            second = scenes.moved(rng, 160, 120, 3)
        frames = [f for f, _ in first + second]
        (out / "frames").mkdir(parents=True, exist_ok=True)
        paths = []
        for i, f in enumerate(frames):
            write_png_rgb(out / "frames" / f"{i:06}.png", f)
            paths.append(f"frames/{i:06}.png")
        frames = [read_rgb(out / p) for p in paths]
    steps = []
    for k in range(len(frames)):
        idx = list(range(k, max(-1, k - 4), -1))  # newest first
        history = [frames[j] for j in idx]
        goal = SAMPLE_GOAL if sample is not None else POLICY_GOALS[k % len(POLICY_GOALS)]
        rec = runner.policy(history, goal)
        padded = idx + [idx[-1]] * (4 - len(idx))
        steps.append({"frames": [paths[j] for j in padded], **rec})
    return {"kind": "policy", "max_new_tokens": MAX_NEW_TOKENS, "frames_relative_to":
            "repository root" if sample is not None else "this folder", "steps": steps}


def e2e_demos(runner: Runner, out: Path, episodes: list[Path], per_episode: int) -> dict:
    """Frames of `spatialbot-edge demos` episodes (evenly spaced steps of each, copied into
    out/frames/), each with its episode's goal; the history is each frame alone, repeated to the
    manifest's frame count (what `run --every-frame` builds for a one-frame policy)."""
    import shutil

    (out / "frames").mkdir(parents=True, exist_ok=True)
    steps = []
    n = 0
    for ep in episodes:
        lines = [json.loads(line) for line in (ep / "steps.jsonl").read_text().splitlines()]
        picks = sorted(set(np.linspace(0, len(lines) - 1, per_episode).round().astype(int).tolist()))
        for k in picks:
            step = lines[k]
            name = f"frames/{n:06}.png"
            shutil.copyfile(ep / step["frame"], out / name)
            n += 1
            rec = runner.policy([read_rgb(out / name)], step["goal"])
            steps.append({"frames": [name] * runner.frames, "episode": f"{ep.parent.parent.name}/{ep.name}",
                          "episode_step": step["step"], "expert_action": step["action"], **rec})
    return {"kind": "policy", "max_new_tokens": MAX_NEW_TOKENS, "frames_relative_to": "this folder",
            "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ask")
    a.add_argument("--checkpoint", type=Path, required=True)
    a.add_argument("--rgb", type=Path, required=True)
    a.add_argument("--depth", type=Path, required=True)
    a.add_argument("question")
    p = sub.add_parser("policy")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--goal", required=True)
    p.add_argument("frames", type=Path, nargs="+", help="newest first, at most 4")
    e = sub.add_parser("e2e")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--kind", choices=["spatialbot", "policy"], required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--sample", type=Path, default=None, help="a PNG recording folder (policy only)")
    e.add_argument("--demos", type=Path, nargs="+", default=None,
                   help="episode folders of `spatialbot-edge demos` (policy only)")
    e.add_argument("--per-episode", type=int, default=6, help="frames taken from each --demos episode")
    args = ap.parse_args()
    try:
        runner = Runner(args.checkpoint)
    except bunny.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.cmd == "ask":
        result = runner.ask(read_rgb(args.rgb), read_depth(args.depth), args.question)
    elif args.cmd == "policy":
        result = runner.policy([read_rgb(f) for f in args.frames[:4]], args.goal)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.kind == "spatialbot":
            result = e2e_spatialbot(runner, args.out)
        elif args.demos:
            result = e2e_demos(runner, args.out, args.demos, args.per_episode)
        else:
            result = e2e_policy(runner, args.out, args.sample)
        (args.out / "e2e.json").write_text(dump_json(result))
        print(f"wrote {args.out / 'e2e.json'}")
        return 0
    print(dump_json(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
