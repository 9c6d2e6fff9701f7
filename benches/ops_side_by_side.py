#!/usr/bin/env python3
"""The dense heads' ops, ours (`cae-bench bench ops`) and PyTorch's (`benches/torch_ops.py`), side
by side: alternating rounds on the same threads, the best round of each row, and the ratio
(PyTorch's time over ours: above 1 means ours is faster).

    python3 benches/ops_side_by_side.py --threads 2 --rounds 2 --reps 3
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_json(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    ap.add_argument("--bin", default=str(target / "release" / "cae-bench"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    ours_cmd = [a.bin, "--threads", str(a.threads), "bench", "ops", "--reps", str(a.reps), "--json"]
    torch_cmd = [a.python, str(ROOT / "benches" / "torch_ops.py"), "--reps", str(a.reps),
                 "--threads", str(a.threads), "--json"]
    best = {"ours": {}, "torch": {}}
    for r in range(a.rounds):
        for who, cmd in [("ours", ours_cmd), ("torch", torch_cmd)]:
            res = run_json(cmd, env)
            for row in res["ops"]:
                ms = row["ms"]
                prev = best[who].get(row["op"])
                if ms is None:
                    best[who][row["op"]] = None
                elif prev is None or ms < prev:
                    best[who][row["op"]] = ms
            print(f"round {r + 1} {who} done", file=sys.stderr)
    print(f"\nforward + backward, median of {a.reps} per run, best of {a.rounds} alternating "
          f"rounds, {a.threads} threads\n")
    print("| op | ours (ms) | PyTorch (ms) | ratio (PyTorch / ours) |")
    print("|---|---:|---:|---:|")
    for op, ms in best["ours"].items():
        t = best["torch"].get(op)
        ratio = f"{t / ms:.2f}×" if t is not None and ms else "not measured"
        tt = f"{t:.1f}" if t is not None else "n/a (no torchvision)"
        print(f"| {op} | {ms:.1f} | {tt} | {ratio} |")


if __name__ == "__main__":
    main()
