"""CAE − random init per metric from the committed detection records: Welch's t interval over the
seeds (Welch–Satterthwaite df), in AP points. Run from the repository root:
python3 docs/detect/compare.py > docs/detect/compare.log"""
import glob, json, math, statistics
from scipy import stats

runs = {}
for f in sorted(glob.glob("docs/detect/runs/*/seed-*/record.json")):
    runs.setdefault(f.split("/")[-3], []).append(json.load(open(f)))

print("| metric | CAE | random init | difference | 95% interval | df | t |")
print("|---|---|---|---|---|---|---|")
for metric in ["bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"]:
    a = [100 * r["metrics"][metric] for r in runs["cae"]]
    b = [100 * r["metrics"][metric] for r in runs["random"]]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = stats.t.ppf(0.975, df)
    d = statistics.mean(a) - statistics.mean(b)
    name = metric.replace("bbox_", "box ").replace("segm_", "mask ")
    print(f"| {name} | {', '.join(f'{v:.2f}' for v in a)} | {', '.join(f'{v:.2f}' for v in b)} | "
          f"{d:+.2f} | [{d - t * se:+.2f}, {d + t * se:+.2f}] | {df:.2f} | {t:.2f} |")
