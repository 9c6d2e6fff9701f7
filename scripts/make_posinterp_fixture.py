"""Reference for resampling a learned position table to a new patch grid, as the BEiT / CAE /
timm segmentation and detection backbones do: the cls slot is kept, the patch part is reshaped
to (1, D, g, g) and resized with `F.interpolate(size=(h, w), mode='bicubic',
align_corners=False)`.

Writes tests/fixtures/reference/posinterp_0.safetensors (written by hand: the safetensors
format is an 8-byte little-endian header length, a JSON header, then the raw f32 data), with
`table` [1, 1+7*7, 16] and one `to_<h>x<w>` [1, 1+h*w, 16] per target grid.

Run: /work/torchenv/bin/python scripts/make_posinterp_fixture.py (torch 2.x, CPU).
"""
import json
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
g, d = 7, 16
table = torch.randn(1, 1 + g * g, d)
outs = {"table": table}
for h, w in [(10, 12), (3, 3), (7, 7), (14, 14)]:
    patch = table[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(h, w), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, h * w, d)
    outs[f"to_{h}x{w}"] = torch.cat([table[:, :1], patch], dim=1)

header, blobs, off = {}, [], 0
for name, t in outs.items():
    b = t.contiguous().numpy().astype("<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header["__metadata__"] = {"source": f"torch {torch.__version__} F.interpolate bicubic, align_corners=False", "grid": str(g)}
hb = json.dumps(header, separators=(",", ":")).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/reference/posinterp_0.safetensors"
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    for b in blobs:
        f.write(b)
print("wrote", path)
