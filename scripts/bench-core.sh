#!/usr/bin/env bash
# Times our pack and preprocess (release build) and the reference numpy / Pillow code in one
# command on the same machine, and prints ratios (reference time / our time; > 1 means faster).
# Both sides report the fastest of many runs (shared, noisy machines). `pack_u16_*` packs
# from 16-bit millimetres, the same input numpy gets; `pack_*` from our 32-bit DepthMm.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SBE_PYTHON:-}" ] || bash scripts/setup-python.sh >/dev/null
PY="${SBE_PYTHON:-$PWD/.venv/bin/python}"
cargo build --release --locked --example bench_core >/dev/null 2>&1 || cargo build --release --locked --example bench_core
ours=$(target/release/examples/bench_core)
ref=$("$PY" - <<'PY'
import time
import numpy as np
from PIL import Image

def min_ns(f, iters):
    for _ in range(max(1, iters // 10)):
        f()
    ts = []
    for _ in range(iters):
        t = time.perf_counter_ns(); f(); ts.append(time.perf_counter_ns() - t)
    ts.sort()
    return ts[0]

def pack(img):
    out = np.zeros((img.shape[0], img.shape[1], 3), np.uint8)
    out[:, :, 0] = (img // 1024) * 4
    out[:, :, 1] = (img // 32) * 8
    out[:, :, 2] = (img % 32) * 8
    return out

for w, h in [(640, 480), (1280, 720)]:
    y, x = np.mgrid[0:h, 0:w]
    depth = ((x * 97 + y * 131) % 65536).astype(np.uint16)
    print(f"pack_{w}x{h}", min_ns(lambda: pack(depth), 200))

w, h = 640, 480
y, x = np.mgrid[0:h, 0:w]
rgb = Image.fromarray(np.stack([x * 3 % 256, y * 5 % 256, (x + y) * 7 % 256], -1).astype(np.uint8), "RGB")

def expand2square(img, color):
    W, H = img.size
    if W == H:
        return img
    side = max(W, H)
    out = Image.new(img.mode, (side, side), color)
    out.paste(img, (0, (W - H) // 2) if W > H else ((H - W) // 2, 0))
    return out

def normalise(arr, mean, std):
    x = (arr * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))

def siglip(pad):
    img = expand2square(rgb, (127, 127, 127)) if pad else rgb
    return normalise(np.array(img.resize((384, 384), Image.BICUBIC)), [0.5] * 3, [0.5] * 3)

def clip():
    W, H = rgb.size
    short, long = (W, H) if W <= H else (H, W)
    nl = int(336 * long / short)
    ow, oh = (336, nl) if W <= H else (nl, 336)
    arr = np.array(rgb.resize((ow, oh), Image.BICUBIC))
    t, l = (oh - 336) // 2, (ow - 336) // 2
    arr = arr[t:t + 336, l:l + 336]
    return normalise(arr, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])

print("preprocess_siglip_pad_640x480", min_ns(lambda: siglip(True), 100))
print("preprocess_siglip_squash_640x480", min_ns(lambda: siglip(False), 100))
print("preprocess_clip_640x480", min_ns(clip, 100))
PY
)
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$2"; }
printf '%-34s %12s %12s %9s\n' case "ours_us" "ref_us" "ratio"
for size in 640x480 1280x720; do
  r=$(get "pack_$size" "$ref")
  for input in "" u16_; do
    o=$(get "pack_$input$size" "$ours")
    awk -v c="pack_$input$size" -v o="$o" -v r="$r" 'BEGIN { printf "%-34s %12.1f %12.1f %8.1fx  (numpy on its uint16 input / ours)\n", c, o/1000, r/1000, r/o }'
  done
done
for case in preprocess_siglip_pad_640x480 preprocess_siglip_squash_640x480 preprocess_clip_640x480; do
  o=$(get "$case" "$ours"); r=$(get "$case" "$ref")
  awk -v c="$case" -v o="$o" -v r="$r" 'BEGIN { printf "%-34s %12.1f %12.1f %8.1fx  (reference numpy/Pillow / ours)\n", c, o/1000, r/1000, r/o }'
done
for size in 640x480 1280x720; do
  mo=$(get "memcpy_out_$size" "$ours"); mi=$(get "memcpy_in_$size" "$ours")
  for input in "" u16_; do
    o=$(get "pack_$input$size" "$ours")
    awk -v s="$input$size" -v o="$o" -v mo="$mo" -v mi="$mi" 'BEGIN { printf "pack_%-29s %6.2fx memcpy of the 3-byte output, %6.2fx memcpy of the u32 input (ours / memcpy; <= 3 is the target)\n", s, o/mo, o/mi }'
  done
done
