"""This quickstart (2026-12-06, Intel Xeon, commit e05b7f4) against the one it replaced (2026-12-05,
AMD EPYC, commit e8f3d65; its records are those committed at e05b7f4): pretraining loss per step,
encoder files, and every probe run of the encoders both runs measured. Run from the repository
root: python3 docs/quickstart/compare-2026-12-05.py > docs/quickstart/compare-2026-12-05.log"""
import fnmatch, glob, json, subprocess

OLD = "e05b7f4"


def old(path):
    return subprocess.run(["git", "show", f"{OLD}:{path}"], capture_output=True, text=True, check=True).stdout


def old_files(pattern):
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", OLD, "docs/quickstart"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(f for f in out.split() if fnmatch.fnmatch(f, pattern))


for method in ["cae", "beit"]:
    [o] = old_files(f"docs/quickstart/pretrain/{method}-*/metrics.jsonl")
    [n] = glob.glob(f"docs/quickstart/pretrain/{method}-*/metrics.jsonl")
    lo = [json.loads(l)["loss"] for l in old(o).splitlines()]
    ln = [json.loads(l)["loss"] for l in open(n)]
    assert len(lo) == len(ln), (len(lo), len(ln))
    rel = max(abs(a - b) / abs(a) for a, b in zip(lo, ln))
    ro = json.loads(old(o.replace("metrics.jsonl", "record.json")))
    rn = json.load(open(n.replace("metrics.jsonl", "record.json")))
    print(f"{method}: {len(ln)} steps, largest relative loss difference {rel:.1e}; final loss "
          f"{ro['metrics']['final_loss']:.6f} then, {rn['metrics']['final_loss']:.6f} now; encoder sha256 "
          f"{ro['encoder']['sha256'][:16]} then, {rn['encoder']['sha256'][:16]} now")


def key(path, rec):
    parts = path.split("/")
    return parts[3], parts[4].rsplit("-", 1)[0], rec["seed"]


then = {}
for f in old_files("docs/quickstart/runs/*/record.json"):
    r = json.loads(old(f))
    then[key(f, r)] = r["metrics"]["top1"]
now = {}
for f in glob.glob("docs/quickstart/runs/*/*/seed-*/record.json"):
    r = json.load(open(f))
    now[key(f, r)] = r["metrics"]["top1"]
same = [k for k in then if now.get(k) == then[k]]
diff = [(k, then[k], now.get(k)) for k in then if now.get(k) != then[k]]
print(f"probe runs measured both times: {len(then)}; same top-1: {len(same)}; different: {len(diff)}")
for k, a, b in sorted(diff):
    print(f"  {k}: {a} then, {b} now")
print(f"probe runs new in this run (the zoo's encoders): {len(set(now) - set(then))}")
