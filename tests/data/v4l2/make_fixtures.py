"""Makes the MJPEG fixtures of tests/camera_v4l2.rs with Pillow (libjpeg, Annex K Huffman
tables). Run from the repository root: python tests/data/v4l2/make_fixtures.py"""
import io
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(__file__).parent
rng = np.random.default_rng(6)


def scene(w, h):
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1)
    rgb = rgb.astype(np.int32) + rng.integers(-20, 21, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def strip_dht(jpeg: bytes) -> bytes:
    kept, i = bytearray(jpeg[:2]), 2
    while True:
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker == 0xDA:
            return bytes(kept + jpeg[i:])
        if marker != 0xC4:
            kept += jpeg[i:i + 2 + length]
        i += 2 + length


for name, w, h, subsampling in [("yuv422", 32, 24, 1), ("yuv420", 48, 32, 2)]:
    buf = io.BytesIO()
    Image.fromarray(scene(w, h)).save(buf, "JPEG", quality=85, subsampling=subsampling, optimize=False)
    jpeg = buf.getvalue()
    (out / f"{name}.jpg").write_bytes(jpeg)
    (out / f"{name}_nodht.jpg").write_bytes(strip_dht(jpeg))
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    (out / f"{name}.rgb").write_bytes(decoded.tobytes())
