"""Synthetic tabletop RGB-D scenes (coloured boxes on a table) and the tiny models' target answers."""

from __future__ import annotations

import numpy as np

COLORS = {
    "red": (200, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 200),
    "yellow": (220, 200, 40),
}
YAW_BY_COLOR = {"red": "0.2", "green": "0.4", "blue": "0.6", "yellow": "0.8"}
PICK_GOALS = ["pick up the box", "grasp the box", "lift the box"]
PUSH_GOALS = ["push the box", "move the box away"]
SIZES = [(80, 60), (64, 64), (60, 80), (96, 72), (72, 54)]


def layout(rng: np.random.Generator, width: int, height: int, boxes: int | None = None) -> dict:
    """A random table and boxes; render() draws it."""
    n = boxes if boxes is not None else int(rng.integers(1, 3))
    placed = []
    for _ in range(n):
        name = list(COLORS)[int(rng.integers(len(COLORS)))]
        bw = int(rng.integers(width // 5, width // 2))
        bh = int(rng.integers(height // 5, height // 2))
        placed.append(dict(
            color=name,
            x0=int(rng.integers(0, width - bw)),
            y0=int(rng.integers(0, height - bh)),
            w=bw,
            h=bh,
            rgb=[int(c) for c in np.array(COLORS[name]) + rng.integers(-15, 16, size=3)],
            lift=float(rng.uniform(60, 300)),
        ))
    return dict(
        width=width,
        height=height,
        table=[int(c) for c in np.array([150, 120, 90]) + rng.integers(-20, 21, size=3)],
        near=float(rng.uniform(500, 1500)),
        slope=float(rng.uniform(8, 30)),
        noise_seed=int(rng.integers(1 << 31)),
        boxes=placed,
    )


def render(scene_layout: dict):
    """RGB uint8 HWC, depth uint16 mm, and the boxes sorted largest first."""
    w, h = scene_layout["width"], scene_layout["height"]
    noise = np.random.default_rng(scene_layout["noise_seed"])
    rgb = np.empty((h, w, 3), np.int64)
    rgb[:, :] = scene_layout["table"]
    rgb += noise.integers(-6, 7, size=(h, w, 1))
    rows = np.arange(h, dtype=np.float64)[:, None]
    depth = scene_layout["near"] + (h - 1 - rows) * scene_layout["slope"] + np.zeros((1, w))
    for b in scene_layout["boxes"]:
        rgb[b["y0"] : b["y0"] + b["h"], b["x0"] : b["x0"] + b["w"]] = b["rgb"]
        depth[b["y0"] : b["y0"] + b["h"], b["x0"] : b["x0"] + b["w"]] -= b["lift"]
    boxes = sorted(scene_layout["boxes"], key=lambda b: -b["w"] * b["h"])
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    depth = np.clip(np.round(depth), 1, 65535).astype(np.uint16)
    return rgb, depth, boxes


def scene(rng: np.random.Generator, width: int, height: int, boxes: int | None = None):
    return render(layout(rng, width, height, boxes))


def moved(rng: np.random.Generator, width: int, height: int, count: int, boxes: int | None = 1):
    """`count` frames (rgb, boxes) of one scene, oldest first; the boxes drift a little each frame."""
    sl = layout(rng, width, height, boxes)
    frames = []
    for i in range(count):
        if i:
            for b in sl["boxes"]:
                b["x0"] = int(np.clip(b["x0"] + rng.integers(-width // 8, width // 8 + 1), 0, width - b["w"]))
                b["y0"] = int(np.clip(b["y0"] + rng.integers(-height // 8, height // 8 + 1), 0, height - b["h"]))
        rgb, _, bx = render(sl)
        frames.append((rgb, [dict(b) for b in bx]))
    return frames


def action_text(rgb: np.ndarray, boxes, goal: str) -> str:
    """The tiny policy's target: ManiSkill layout [terminate, dx, dy, dz, droll, dpitch, dyaw, gripper]."""
    h, w = rgb.shape[:2]
    if boxes:
        b = boxes[0]
        cx, cy = b["x0"] + b["w"] / 2, b["y0"] + b["h"] / 2
        dx = "0.3" if cx < w / 2 else "0.7"
        dy = "0.3" if cy < h / 2 else "0.7"
        yaw = YAW_BY_COLOR[b["color"]]
    else:
        dx, dy, yaw = "0.5", "0.5", "0.5"
    grip = "1.0" if goal in PICK_GOALS else "0.0"
    return f"[0.0,{dx},{dy},0.5,0.5,0.5,{yaw},{grip}]"
