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


def scene(rng: np.random.Generator, width: int, height: int, boxes: int | None = None):
    """RGB uint8 HWC, depth uint16 mm, and the boxes (largest first): dicts of colour and geometry."""
    table = np.array([150, 120, 90]) + rng.integers(-20, 21, size=3)
    rgb = np.empty((height, width, 3), np.int64)
    rgb[:, :] = table
    rgb += rng.integers(-6, 7, size=(height, width, 1))
    rows = np.arange(height, dtype=np.float64)[:, None]
    near = rng.uniform(500, 1500)
    depth = near + (height - 1 - rows) * rng.uniform(8, 30) + np.zeros((1, width))
    n = boxes if boxes is not None else int(rng.integers(1, 3))
    placed = []
    for _ in range(n):
        name = list(COLORS)[int(rng.integers(len(COLORS)))]
        bw = int(rng.integers(width // 5, width // 2))
        bh = int(rng.integers(height // 5, height // 2))
        x0 = int(rng.integers(0, width - bw))
        y0 = int(rng.integers(0, height - bh))
        color = np.array(COLORS[name]) + rng.integers(-15, 16, size=3)
        rgb[y0 : y0 + bh, x0 : x0 + bw] = color
        depth[y0 : y0 + bh, x0 : x0 + bw] -= rng.uniform(60, 300)
        placed.append(dict(color=name, x0=x0, y0=y0, w=bw, h=bh))
    placed.sort(key=lambda b: -b["w"] * b["h"])
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    depth = np.clip(np.round(depth), 1, 65535).astype(np.uint16)
    return rgb, depth, placed


def moved(rng: np.random.Generator, width: int, height: int, count: int):
    """`count` frames of one scene, oldest first, whose largest box drifts a little each frame."""
    rgb, depth, boxes = scene(rng, width, height)
    frames = [(rgb, boxes)]
    seed = int(rng.integers(1 << 31))
    for i in range(1, count):
        r = np.random.default_rng(seed + i)
        shift = int(r.integers(-width // 6, width // 6 + 1))
        frames.append((np.roll(frames[-1][0], shift, axis=1), _shift_boxes(frames[-1][1], shift, width)))
    return frames


def _shift_boxes(boxes, shift, width):
    out = []
    for b in boxes:
        b = dict(b)
        b["x0"] = (b["x0"] + shift) % width
        out.append(b)
    return out


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
