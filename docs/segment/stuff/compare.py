"""CAE − random init per protocol and metric from the committed records: Welch's t interval over
the seeds (Welch–Satterthwaite df), and the per-class IoU means. Run from the repository root:
python3 docs/segment/stuff/compare.py > docs/segment/stuff/compare.log"""
import glob, json, math, statistics
from scipy import stats

runs = {}
for f in sorted(glob.glob("docs/segment/stuff/runs/*/seed-*/record.json")):
    r = json.load(open(f))
    enc, proto = f.split("/")[-3].split("-")
    runs.setdefault((proto, enc), []).append(r)

for proto in ["upernet", "linear"]:
    for metric in ["mIoU", "mAcc", "aAcc"]:
        a = [r["metrics"][metric] for r in runs[(proto, "cae")]]
        b = [r["metrics"][metric] for r in runs[(proto, "random")]]
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        t = stats.t.ppf(0.975, df)
        d = statistics.mean(a) - statistics.mean(b)
        print(f"{proto:8} {metric}: CAE {', '.join(f'{v:.2f}' for v in a)}; random {', '.join(f'{v:.2f}' for v in b)}; "
              f"CAE - random = {d:+.2f}, 95% Welch interval [{d - t * se:+.2f}, {d + t * se:+.2f}] (df {df:.1f}, t {t:.2f})")
    for enc in ["cae", "random"]:
        rs = runs[(proto, enc)]
        names = [c["name"] for c in rs[0]["per_class"]]
        iou = {n: statistics.mean(next(c for c in r["per_class"] if c["name"] == n)["values"]["IoU"] for r in rs) for n in names}
        print(f"{proto:8} {enc:6} per-class IoU (mean of {len(rs)} seeds): " + ", ".join(f"{n} {v:.1f}" for n, v in iou.items()))
    print(f"{proto:8} baselines: most frequent class everywhere {rs[0]['protocol']['details']['majority_class_mIoU']:.2f} mIoU, "
          f"uniform guess {rs[0]['protocol']['details']['uniform_guess_mIoU']:.2f} mIoU")
