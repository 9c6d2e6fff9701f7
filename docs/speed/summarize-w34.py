#!/usr/bin/env python3
"""Summarises a run-w34-{seg,det}.sh log (the scripts call it on their JSON lines at the end): per round, ours (cae-bench JSON line) then the PyTorch
twin's; prints the best iteration of each side, the ratio of the best rounds (PyTorch ms / ours,
above 1 means ours is faster), the per-round ratio of medians (median [min, max] over rounds) and
the peak RSS of each side.

Usage: docs/speed/summarize-w34.py LOG [LOG ...]
"""
import json
import statistics
import sys


def rounds(path):
    ours, twin = [], []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        (twin if "torch" in d else ours).append(d)
    return list(zip(ours, twin))


for path in sys.argv[1:]:
    rs = rounds(path)
    if not rs:
        sys.exit(f"{path}: no rounds")
    best_o = min(o["ms_best"] for o, _ in rs)
    best_t = min(t["ms_best"] for _, t in rs)
    per = [t["ms_median"] / o["ms_median"] for o, t in rs]
    rss_o = [o["peak_rss_mib"] for o, _ in rs]
    rss_t = [t["peak_rss_mib"] for _, t in rs]
    print(f"# summary: {len(rs)} round(s)" + (f" of {path}" if len(sys.argv) > 2 else ""))
    print(f"#   ours best {best_o:.1f} ms, PyTorch best {best_t:.1f} ms: ratio of best {best_t / best_o:.2f}x")
    if len(per) > 1:
        print(f"#   per-round ratio of medians: {statistics.median(per):.2f}x [{min(per):.2f}, {max(per):.2f}]")
    print(f"#   peak RSS ours {min(rss_o):,.0f}-{max(rss_o):,.0f} MiB, PyTorch {min(rss_t):,.0f}-{max(rss_t):,.0f} MiB")
    o, t = rs[0]
    for k in ("proposals", "box_rois", "mask_rois", "loss"):
        if k in o:
            print(f"#   {k}: ours {o[k]}, PyTorch {t.get(k)}")
