#!/usr/bin/env python3
"""Ours and PyTorch's training step, side by side, in one invocation.

Runs `cae-bench bench pretrain` (the default; the step not split over threads; the fused kernels'
baseline SSE2 build; the Linear layers through burn's matmul; glibc's allocator defaults; the fused
kernels off; every backend asked for) and `benches/torch_twin.py` with the same
preset, batch, steps and thread count, alternating them for `--rounds` rounds so that both see the
same machine load, and prints a Markdown table (ms/step, img/s, ratio to PyTorch) plus the load
average before and after. The reported figure of each implementation is its best round (the round
least disturbed by other processes); every round is printed too, and the ratio of each round's
pair (the two runs of a round are seconds apart, so they share the machine's state) as its median
and range over the rounds.

    python3 benches/side_by_side.py --preset mini --batch 64 --threads 2 --rounds 3
    python3 benches/side_by_side.py --preset vit_small_patch16 --batch 8 --steps 3 --threads 2

`--bin` points at the `cae-bench` binary (default: the release build in $CARGO_TARGET_DIR or
target/). `--tch-bin` adds the libtorch backend from a binary built with `--features tch`
(see scripts/setup-tch.sh); its environment is set up from `--torch-lib`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def default_bin():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "cae-bench")


def loadavg():
    return os.getloadavg()[0]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--tch-bin", help="a cae-bench built with --features tch")
    ap.add_argument("--torch-lib", help="torch/lib of the venv that tch was built against")
    ap.add_argument("--python", default=sys.executable, help="python with torch for the twin")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    ap.add_argument("--only-default", action="store_true",
                    help="run only our default configuration beside PyTorch (long presets)")
    a = ap.parse_args()
    batch = a.batch or (64 if a.preset == "mini" else 8)
    common = ["--preset", a.preset, "--batch", str(batch), "--steps", str(a.steps),
              "--warmup", str(a.warmup)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    ours = [a.bin, "--threads", str(a.threads), "bench", "pretrain", *common, "--json"]
    # Our default, then each A/B variant: (label, environment overrides).
    variants = [
        ("fused kernels (ours, default)", {}),
        ("step not split over threads (CAE_CPU_SPLIT=0)", {"CAE_CPU_SPLIT": "0"}),
        ("kernels' baseline SSE2 build (CAE_SIMD=baseline)", {"CAE_SIMD": "baseline"}),
        ("Linear layers through burn's matmul (CAE_UNFUSED=linear)", {"CAE_UNFUSED": "linear"}),
        ("glibc malloc defaults (CAE_MALLOC=default)", {"CAE_MALLOC": "default"}),
        ("fused kernels off (CAE_UNFUSED=1)", {"CAE_UNFUSED": "1"}),
    ]
    if a.only_default:
        variants = variants[:1]
    runs = {f"burn flex, {label}": (ours, dict(env, **extra)) for label, extra in variants}
    runs["PyTorch (torch_twin.py)"] = ([a.python, str(ROOT / "benches" / "torch_twin.py"), *common,
                                        "--threads", str(a.threads), "--json"], env)
    if a.tch_bin:
        tch_env = dict(env)
        if a.torch_lib:
            tch_env["LD_LIBRARY_PATH"] = a.torch_lib + ":" + tch_env.get("LD_LIBRARY_PATH", "")
        runs["burn tch (ours, libtorch)"] = (
            [a.tch_bin, "--threads", str(a.threads), "bench", "pretrain", *common, "--device",
             "tch", "--json"], tch_env)
    results = {name: [] for name in runs}
    load_before = loadavg()
    for r in range(a.rounds):
        for name, (cmd, e) in runs.items():
            res = run_json(cmd, e)
            res["load"] = loadavg()
            results[name].append(res)
            print(f"round {r + 1} {name}: {res['ms_per_step']:.1f} ms/step "
                  f"({res['img_per_s']:.1f} img/s), load {res['load']:.2f}", file=sys.stderr)
    load_after = loadavg()
    best = {n: min(rs, key=lambda x: x["ms_per_step"]) for n, rs in results.items()}
    torch_ips = best["PyTorch (torch_twin.py)"]["img_per_s"]
    print(f"\n{a.preset}, batch {batch}, {a.threads} threads, {a.steps} timed steps, "
          f"best of {a.rounds} alternating rounds; load average {load_before:.2f} before, "
          f"{load_after:.2f} after\n")
    print("| implementation | ms/step | img/s | ratio to PyTorch (img/s) | "
          "per-round ratio: median [min, max] | all rounds (ms/step) |")
    print("|---|---|---|---|---|---|")
    torch_rounds = results["PyTorch (torch_twin.py)"]
    for name, b in best.items():
        rounds = ", ".join(f"{x['ms_per_step']:.0f}" for x in results[name])
        paired = sorted(t["ms_per_step"] / x["ms_per_step"]
                        for x, t in zip(results[name], torch_rounds))
        print(f"| {name} | {b['ms_per_step']:.1f} | {b['img_per_s']:.1f} | "
              f"{b['img_per_s'] / torch_ips:.2f}× | {statistics.median(paired):.2f}× "
              f"[{paired[0]:.2f}, {paired[-1]:.2f}] | {rounds} |")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
