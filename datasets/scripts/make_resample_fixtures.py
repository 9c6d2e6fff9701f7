"""Reference outputs for the resampling parity test (datasets/tests/reference_parity.rs).

Writes, into OUT (default tests/fixtures/datasets/resample):
  src.png                  a 37x29 RGB test image (smooth ramps + noise + hard edges)
  pil_<k>.png              Pillow  img.crop(box).resize(size, filter)
  cv_<k>.png               OpenCV  cv2.resize(img, size, interpolation)
  hsv.json                 OpenCV 8-bit RGB<->HSV on 512 random pixels
  cases.json               what each file is
Needs: pip install pillow numpy opencv-python-headless
"""
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/datasets/resample"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
h, w = 29, 37
yy, xx = np.mgrid[0:h, 0:w]
img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), ((xx // 4 + yy // 4) % 2) * 255], -1).astype(np.int32)
img = np.clip(img + rng.integers(-40, 41, size=img.shape), 0, 255).astype(np.uint8)
Image.fromarray(img).save(os.path.join(out, "src.png"))
pil = Image.fromarray(img)

filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
cases = []
geoms = [
    ((0, 0, 37, 29), (16, 16)),   # downscale
    ((3, 2, 30, 27), (64, 48)),   # crop + upscale
    ((5, 4, 25, 20), (20, 7)),    # one axis unchanged
    ((0, 0, 37, 29), (11, 29)),   # only horizontal
    ((10, 0, 21, 29), (9, 5)),    # strong downscale of a crop
    ((1, 1, 36, 28), (35, 27)),   # identity size (copy)
]
k = 0
for name, f in filters.items():
    for box, size in geoms:
        res = pil.crop(box).resize(size, f)
        fn = f"pil_{k}.png"
        res.save(os.path.join(out, fn))
        cases.append({"kind": "pil", "filter": name, "crop": list(box), "size": list(size), "file": fn})
        k += 1
for interp, name in [(cv2.INTER_LINEAR, "linear"), (cv2.INTER_NEAREST, "nearest")]:
    for size in [(16, 16), (64, 48), (20, 7), (74, 58), (100, 13)]:
        res = cv2.resize(img, size, interpolation=interp)
        fn = f"cv_{k}.png"
        Image.fromarray(res).save(os.path.join(out, fn))
        cases.append({"kind": "cv", "interpolation": name, "size": list(size), "file": fn})
        k += 1
px = rng.integers(0, 256, size=(1, 512, 3)).astype(np.uint8)
hsv = cv2.cvtColor(px, cv2.COLOR_RGB2HSV)
rand_hsv = np.stack([rng.integers(0, 180, 512), rng.integers(0, 256, 512), rng.integers(0, 256, 512)], -1)
hsv_in = np.concatenate([hsv, rand_hsv[None].astype(np.uint8)], 1)
rgb_back = cv2.cvtColor(hsv_in, cv2.COLOR_HSV2RGB)
with open(os.path.join(out, "hsv.json"), "w") as fh:
    json.dump({"rgb": px[0].tolist(), "hsv": hsv[0].tolist(), "hsv_in": hsv_in[0].tolist(), "rgb_back": rgb_back[0].tolist()}, fh)
with open(os.path.join(out, "cases.json"), "w") as fh:
    json.dump({"pillow": Image.__version__, "opencv": cv2.__version__, "cases": cases}, fh, indent=1)
print(f"wrote {len(cases)} cases to {out}")
