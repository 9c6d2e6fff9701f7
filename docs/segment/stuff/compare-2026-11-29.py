"""These records (2026-12-05, after W3.0's fix) against the ones they replaced (2026-11-29, committed
at 6ba2a1c): the largest difference of each run's mIoU / mAcc / aAcc. Run from the repository root:
python3 docs/segment/stuff/compare-2026-11-29.py > docs/segment/stuff/compare-2026-11-29.log"""
import glob, json, subprocess

for f in sorted(glob.glob("docs/segment/stuff/runs/*/seed-*/record.json")):
    a = json.loads(subprocess.run(["git", "show", f"6ba2a1c:{f}"], capture_output=True, text=True, check=True).stdout)
    b = json.load(open(f))
    d = {k: b["metrics"][k] - a["metrics"][k] for k in ["mIoU", "mAcc", "aAcc"]}
    print(f"{'/'.join(f.split('/')[-3:-1]):24} now − 2026-11-29: " + ", ".join(f"{k} {v:+.2e}" for k, v in d.items()))
