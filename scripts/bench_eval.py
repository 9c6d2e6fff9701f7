#!/usr/bin/env python3
"""Speed bench of `cae-bench coco-eval` and `cae-bench ade-eval` against the reference tools.

Not part of CI (which needs no Python); run it through scripts/bench_eval.sh, which builds the
release binary first. Needs: pip install pycocotools faster-coco-eval numpy pillow

  bench_eval.py gen-coco OUT [--images 5000] [--dets-per-image 100] [--seed 0]
  bench_eval.py time-coco OUT BIN          # pycocotools, faster-coco-eval, cae-bench, one run
  bench_eval.py gen-ade OUT [--images 2000] [--size 512] [--seed 0]
  bench_eval.py time-ade OUT BIN [--reference]

COCO case (as in protocols.md 1.10): 5,000 images, ~35,000 GT boxes (~1% crowd) in 80
categories, 100 detections per image (500,000): jittered copies of the GT, some with the wrong
class, and false positives. ADE case: 2,000 pairs of 512x512 8-bit label maps in the raw ADE20K
encoding, blocky like real annotations (rectangles and ellipses of 150 classes over "other"),
predictions the same scene with moved boundaries and some regions relabelled.
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


# ----------------------------------------------------------------------------------------- COCO

def gen_coco(out, n_images, dets_per_image, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    cats = [{"id": int(c), "name": f"class_{c}"} for c in range(1, 91) if c % 9 != 0][:80]
    cat_ids = np.array([c["id"] for c in cats])
    images, anns, dets = [], [], []
    aid = 1
    for i in range(1, n_images + 1):
        W, H = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": i, "width": W, "height": H, "file_name": f"{i:012d}.jpg"})
        gts = []
        for _ in range(int(rng.poisson(7))):
            w = float(np.clip(rng.lognormal(3.8, 0.9), 4, W - 1))
            h = float(np.clip(rng.lognormal(3.8, 0.9), 4, H - 1))
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            c = int(rng.choice(cat_ids))
            crowd = int(rng.random() < 0.01)
            anns.append({"id": aid, "image_id": i, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h * float(rng.uniform(0.5, 0.9)), "iscrowd": crowd,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            aid += 1
            gts.append((x, y, w, h, c))
        img_dets = []
        for (x, y, w, h, c) in gts:  # true positives, duplicates and confusions
            for _ in range(int(rng.integers(1, 4))):
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                cc = c if rng.random() < 0.8 else int(rng.choice(cat_ids))
                img_dets.append((cc, [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                                 float(rng.uniform(0.3, 1.0))))
        while len(img_dets) < dets_per_image:  # false positives fill up to 100
            w, h = float(rng.uniform(4, W / 2)), float(rng.uniform(4, H / 2))
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            img_dets.append((int(rng.choice(cat_ids)), [x, y, w, h], float(rng.uniform(0, 0.6))))
        for (c, b, s) in img_dets[:dets_per_image]:
            dets.append({"image_id": i, "category_id": c, "bbox": [round(v, 2) for v in b],
                         "score": round(s, 5)})
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    with open(os.path.join(out, "dt_bbox.json"), "w") as f:
        json.dump(dets, f)
    print(f"coco case: {len(images)} images, {len(anns)} GT "
          f"({sum(a['iscrowd'] for a in anns)} crowd), {len(dets)} detections, 80 categories")


def run_pycocotools(gt, dt):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(gt)
        d = g.loadRes(dt)
        t1 = time.perf_counter()
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        t2 = time.perf_counter()
        e.accumulate()
        t3 = time.perf_counter()
        e.summarize()
    t4 = time.perf_counter()
    return [float(s) for s in e.stats], {"load": t1 - t0, "evaluate": t2 - t1,
                                        "accumulate": t3 - t2, "total": t4 - t0}


def run_faster_coco_eval(gt, dt):
    from faster_coco_eval import COCO, COCOeval_faster
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(gt)
        d = g.loadRes(dt)
        t1 = time.perf_counter()
        e = COCOeval_faster(g, d, "bbox", print_function=lambda *a, **k: None)
        e.evaluate()
        e.accumulate()
        e.summarize()
    t2 = time.perf_counter()
    return [float(s) for s in e.stats[:12]], {"load": t1 - t0, "evaluate": t2 - t1,
                                             "total": t2 - t0}


def run_cae_bench(binary, gt, dt):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "coco-eval", "--gt", gt, "--dt", dt, "--iou-type", "bbox",
                        "--json"], capture_output=True, text=True)
    t1 = time.perf_counter()
    if p.returncode != 0:
        sys.exit(f"cae-bench coco-eval failed:\n{p.stderr}")
    out = json.loads(p.stdout)
    return [out[n] for n in NAMES], {"total": t1 - t0}


def compare(a, b):
    diff = max(abs(x - y) for x, y in zip(a, b))
    exact = sum(x == y for x, y in zip(a, b))
    return diff, exact


def time_coco(out, binary):
    gt, dt = os.path.join(out, "gt.json"), os.path.join(out, "dt_bbox.json")
    print(f"machine: {os.cpu_count()} CPU(s); files in {out}")
    # Warm the page cache so every tool reads the files from memory.
    for f in (gt, dt):
        with open(f, "rb") as fh:
            fh.read()
    ours, t_ours = run_cae_bench(binary, gt, dt)
    fast, t_fast = run_faster_coco_eval(gt, dt)
    ref, t_ref = run_pycocotools(gt, dt)
    print("\n| evaluator | total s | detail | vs pycocotools | 12 stats vs pycocotools |")
    print("|---|---|---|---|---|")
    print(f"| pycocotools | {t_ref['total']:.2f} | load {t_ref['load']:.2f}, evaluate "
          f"{t_ref['evaluate']:.2f}, accumulate {t_ref['accumulate']:.2f} | 1x | reference |")
    d, e = compare(fast, ref)
    print(f"| faster-coco-eval | {t_fast['total']:.2f} | load {t_fast['load']:.2f}, eval+acc "
          f"{t_fast['evaluate']:.2f} | {t_ref['total'] / t_fast['total']:.1f}x | "
          f"max |diff| {d:.1e}, {e}/12 bit-identical |")
    d, e = compare(ours, ref)
    print(f"| cae-bench coco-eval | {t_ours['total']:.2f} | whole process (read, validate, "
          f"evaluate, print) | {t_ref['total'] / t_ours['total']:.1f}x | "
          f"max |diff| {d:.1e}, {e}/12 bit-identical |")
    print(f"\nAP: pycocotools {ref[0]!r}, faster-coco-eval {fast[0]!r}, cae-bench {ours[0]!r}")
    return t_ref["total"] / t_ours["total"], d


# ------------------------------------------------------------------------------------------ ADE

def scene(rng, size, n_classes):
    """A blocky label map: 'other' (0) background, rectangles and ellipses of classes."""
    m = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    shapes = []
    for _ in range(int(rng.integers(6, 16))):
        c = int(rng.integers(1, n_classes + 1))
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size / 16, size / 3, 2)
        shapes.append((c, cy, cx, ry, rx, bool(rng.random() < 0.5)))
    return m, yy, xx, shapes


def paint(m, yy, xx, shapes, dy=0.0, dx=0.0):
    for (c, cy, cx, ry, rx, ell) in shapes:
        cy, cx = cy + dy, cx + dx
        if ell:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        m[mask] = c
    return m


def gen_ade(out, n_images, size, seed, n_classes=150):
    from PIL import Image
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = os.path.join(out, "gt"), os.path.join(out, "pred")
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    for i in range(n_images):
        m, yy, xx, shapes = scene(rng, size, n_classes)
        gt = paint(m.copy(), yy, xx, shapes)
        # The model: boundaries moved by a few pixels, some regions called something else,
        # and every pixel given some class (a model never predicts "other").
        moved = []
        for (c, cy, cx, ry, rx, ell) in shapes:
            if rng.random() < 0.25:
                c = int(rng.integers(1, n_classes + 1))
            moved.append((c, cy, cx, ry * rng.uniform(0.9, 1.1), rx * rng.uniform(0.9, 1.1), ell))
        bg = int(rng.integers(1, n_classes + 1))
        pred = paint(np.full((size, size), bg, np.uint8), yy, xx, moved,
                     float(rng.normal(0, 4)), float(rng.normal(0, 4)))
        name = f"ADE_val_{i:08d}.png"
        Image.fromarray(gt).save(os.path.join(gt_dir, name))
        Image.fromarray(pred).save(os.path.join(pred_dir, name))
    print(f"ade case: {n_images} pairs of {size}x{size} label maps in {out}")


def numpy_reference(gt_dir, pred_dir, c=150):
    """mmseg's IoUMetric with reduce_zero_label, restated in numpy (one thread)."""
    from PIL import Image
    tot = np.zeros((4, c))
    for name in sorted(os.listdir(gt_dir)):
        raw = np.asarray(Image.open(os.path.join(gt_dir, name))).astype(np.int64)
        prd = np.asarray(Image.open(os.path.join(pred_dir, name))).astype(np.int64)
        label, pred = raw - 1, prd - 1
        label[raw == 0] = 255
        pred[prd == 0] = 255
        keep = label != 255
        p, l = pred[keep], label[keep]
        hist = lambda x: np.bincount(x[(x >= 0) & (x < c)], minlength=c).astype(np.float64)
        inter = hist(p[p == l])
        ap, al = hist(p), hist(l)
        tot += np.stack([inter, ap + al - inter, ap, al])
    inter, union, _, label = tot
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, acc = inter / union, inter / label
    return {"aAcc": float(inter.sum() / label.sum() * 100), "mIoU": float(np.nanmean(iou) * 100),
            "mAcc": float(np.nanmean(acc) * 100)}


def time_ade(out, binary, reference):
    gt_dir, pred_dir = os.path.join(out, "gt"), os.path.join(out, "pred")
    names = sorted(os.listdir(gt_dir))
    from PIL import Image
    w, h = Image.open(os.path.join(gt_dir, names[0])).size
    mpix = len(names) * w * h / 1e6
    size_mb = sum(os.path.getsize(os.path.join(d, n)) for d in (gt_dir, pred_dir)
                  for n in names) / 1e6
    print(f"machine: {os.cpu_count()} CPU(s); {len(names)} pairs of {w}x{h} "
          f"({mpix:.1f} MPixel per folder, {size_mb:.0f} MB of PNG in both)")
    cmd = [binary, "ade-eval", "--gt", gt_dir, "--pred", pred_dir, "--json"]
    subprocess.run(cmd, capture_output=True)  # warm the page cache
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"cae-bench ade-eval failed:\n{p.stderr}")
        best = dt if best is None else min(best, dt)
    ours = json.loads(p.stdout)
    print(f"cae-bench ade-eval: {best:.3f} s (best of 3, whole process) = "
          f"{mpix / best:.0f} MPixel/s (label maps; both folders decoded)")
    print(f"  aAcc {ours['aAcc']!r} mIoU {ours['mIoU']!r} mAcc {ours['mAcc']!r}")
    if reference:
        t0 = time.perf_counter()
        ref = numpy_reference(gt_dir, pred_dir)
        dt = time.perf_counter() - t0
        diff = max(abs(ours[k] - ref[k]) for k in ref)
        print(f"numpy/PIL restatement of mmseg: {dt:.2f} s = {mpix / dt:.1f} MPixel/s; "
              f"max |diff| vs cae-bench {diff:.1e}")
    return mpix / best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-coco")
    g.add_argument("out")
    g.add_argument("--images", type=int, default=5000)
    g.add_argument("--dets-per-image", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time-coco")
    t.add_argument("out")
    t.add_argument("binary")
    g = sub.add_parser("gen-ade")
    g.add_argument("out")
    g.add_argument("--images", type=int, default=2000)
    g.add_argument("--size", type=int, default=512)
    g.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time-ade")
    t.add_argument("out")
    t.add_argument("binary")
    t.add_argument("--reference", action="store_true", help="also time a numpy restatement")
    a = ap.parse_args()
    if a.cmd == "gen-coco":
        gen_coco(a.out, a.images, a.dets_per_image, a.seed)
    elif a.cmd == "time-coco":
        time_coco(a.out, a.binary)
    elif a.cmd == "gen-ade":
        gen_ade(a.out, a.images, a.size, a.seed)
    else:
        time_ade(a.out, a.binary, a.reference)


if __name__ == "__main__":
    main()
