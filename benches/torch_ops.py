#!/usr/bin/env python3
"""PyTorch twin of `cae-bench bench ops`: the same rows, shapes and work (forward, then backward of
the sum), median of `--reps` after `--warmup`. RoIAlign rows need torchvision (`torchvision.ops`);
without it they are reported as not measured."""

import argparse
import json
import time

import torch
import torch.nn.functional as F


def rois(n):
    out = []
    for i in range(n):
        s = 16.0 + float((i * 37) % 113)
        x = float((i * 53) % 128)
        y = float((i * 29) % 128)
        out.append([float(i % 2), x, y, min(x + s, 255.0), min(y + s, 255.0)])
    return torch.tensor(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, requires_grad=True)

    def conv(c_in, c_out, k, shape):
        layer = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2)
        x = rand(*shape)
        return lambda: layer(x).sum().backward()

    rows = [
        ("conv3x3 768->768, 2x768x32x32 (UperNet FPN conv)", conv(768, 768, 3, (2, 768, 32, 32))),
        ("conv1x1 768->768, 2x768x64x64 (UperNet lateral)", conv(768, 768, 1, (2, 768, 64, 64))),
        ("conv3x3 256->256, 2x256x64x64 (detection FPN conv)", conv(256, 256, 3, (2, 256, 64, 64))),
        ("conv3x3 256->256, 64x256x14x14 (mask head)", conv(256, 256, 3, (64, 256, 14, 14))),
    ]
    deconv = torch.nn.ConvTranspose2d(768, 768, 2, stride=2)
    xd = rand(2, 768, 32, 32)
    rows.append(("deconv2x2 s2 768->768, 2x768x32x32 (neck x2)", lambda: deconv(xd).sum().backward()))
    xm = rand(2, 768, 32, 32)
    rows.append(("max-pool 2x2, 2x768x32x32 (neck x0.5)", lambda: F.max_pool2d(xm, 2).sum().backward()))
    xb = rand(2, 150, 64, 64)
    rows.append(("bilinear resize 2x150x64x64 -> 256x256 (logits)",
                 lambda: F.interpolate(xb, size=(256, 256), mode="bilinear",
                                       align_corners=False).sum().backward()))
    try:
        from torchvision.ops import roi_align
    except ImportError:
        roi_align = None
    for name, size, n in [("RoIAlign 7x7, 2x256x64x64, 256 RoIs (box head)", 7, 256),
                          ("RoIAlign 14x14, 2x256x64x64, 64 RoIs (mask head)", 14, 64)]:
        if roi_align is None:
            rows.append((name, None))
            continue
        xr = rand(2, 256, 64, 64)
        boxes = rois(n)
        rows.append((name, lambda xr=xr, boxes=boxes, size=size: roi_align(
            xr, boxes, (size, size), spatial_scale=0.25, sampling_ratio=0,
            aligned=True).sum().backward()))

    results = []
    for name, f in rows:
        if f is None:
            results.append({"op": name, "ms": None, "why": "torchvision is not installed"})
            continue
        for _ in range(a.warmup):
            f()
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            f()
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        results.append({"op": name, "ms": times[len(times) // 2]})
        if not a.json:
            print(f"{name}: {times[len(times) // 2]:.2f} ms")
    if a.json:
        print(json.dumps({"threads": a.threads, "reps": a.reps, "ops": results}))


if __name__ == "__main__":
    main()
