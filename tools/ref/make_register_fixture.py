#!/usr/bin/env python3
"""Writes tests/data/register/golden.*: a small calibration, a synthetic depth PNG and what
librealsense's `align` makes of it. Run from the repository root with the test venv:

    .venv/bin/python tools/ref/make_register_fixture.py
"""
import os
import sys
import tomllib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from align_ref import Aligner  # noqa: E402

OUT = "tests/data/register"
CALIB = """\
# Golden registration case: 64x48 depth into 96x72 colour (footprint splatting), with a
# baseline and a small rotation. golden.aligned.png is librealsense 2.56.5's align output.
depth_scale = 0.001

[depth]
width = 64
height = 48
fx = 40.3
fy = 40.4
ppx = 31.7
ppy = 24.2
model = "none"
coeffs = [0.0, 0.0, 0.0, 0.0, 0.0]

[color]
width = 96
height = 72
fx = 70.1
fy = 70.2
ppx = 48.3
ppy = 35.6
model = "none"
coeffs = [0.0, 0.0, 0.0, 0.0, 0.0]

[depth_to_color]
rotation = [0.999992735, -0.001054871, -0.003662980, 0.001047190, 0.999997250, -0.002098231, 0.003665183, 0.002094380, 0.999991090]
translation = [0.01485, 0.00012, 0.00031]
"""


def scene(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    z = 1500 + 0.7 * (x - w / 2) - 0.4 * (y - h / 2)
    z[10:30, 8:28] = 600
    z[25:45, 35:60] = np.minimum(z[25:45, 35:60], 420 + 0.5 * (x[25:45, 35:60] - 35))
    z[0:6, 50:64] = 0
    z[40:48, 0:10] = 0
    return np.round(z).astype(np.uint16)


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(f"{OUT}/golden.calib.toml", "w") as f:
        f.write(CALIB)
    calib = tomllib.loads(CALIB)
    depth = scene(calib["depth"]["height"], calib["depth"]["width"])
    aligned = Aligner(calib).aligned(depth)
    Image.fromarray(depth).save(f"{OUT}/golden.depth.png")
    Image.fromarray(aligned).save(f"{OUT}/golden.aligned.png")
    print(f"wrote {OUT}/golden.*: {(aligned > 0).sum()} filled colour pixels")


if __name__ == "__main__":
    main()
