"""This quickstart (2026-12-05, after W3.0's fix) against the one it replaced (2026-11-29, the
records committed at 6ba2a1c): pretraining loss per step, and every probe run's top-1. Run from the
repository root: python3 docs/quickstart/compare-2026-11-29.py > docs/quickstart/compare-2026-11-29.log"""
import glob, json, subprocess

OLD = "6ba2a1c"


def old(path):
    return subprocess.run(["git", "show", f"{OLD}:{path}"], capture_output=True, text=True, check=True).stdout


def old_files(pattern):
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", OLD, "docs/quickstart"], capture_output=True, text=True, check=True).stdout
    import fnmatch
    return sorted(f for f in out.split() if fnmatch.fnmatch(f, pattern))


for method in ["cae", "beit"]:
    [o] = old_files(f"docs/quickstart/pretrain/{method}-*/metrics.jsonl")
    [n] = glob.glob(f"docs/quickstart/pretrain/{method}-*/metrics.jsonl")
    a = [json.loads(l) for l in old(o).splitlines()]
    b = [json.loads(l) for l in open(n)]
    assert [x["step"] for x in a] == [x["step"] for x in b]
    rel = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
    print(f"pretrain {method}: {len(a)} steps; final loss {a[-1]['loss']:.8f} (2026-11-29) vs {b[-1]['loss']:.8f} (now); "
          f"largest relative difference of the loss over the steps {rel:.1e}")

for enc in ["cae", "beit", "random"]:
    for proto in ["linear", "knn", "finetune-1pct"]:
        a = [json.loads(old(f))["metrics"]["top1"] for f in old_files(f"docs/quickstart/runs/{enc}/{proto}-*/seed-*/record.json")]
        b = [json.load(open(f))["metrics"]["top1"] for f in sorted(glob.glob(f"docs/quickstart/runs/{enc}/{proto}-*/seed-*/record.json"))]
        same = "equal" if a == b else "differ"
        print(f"{enc:6} {proto:13} top-1 by seed: 2026-11-29 {', '.join(f'{x:.2f}' for x in a)}; now {', '.join(f'{x:.2f}' for x in b)}: {same}")
