"""pycocotools on the results files of every detection run under RUNS: prints its AP / AP50 for
boxes and masks beside the record's (which cae-bench computed with the coco-eval code), and
fails if any differs by more than 1e-9. Also prints the class-agnostic box AP50 (pycocotools
with useCats = 0): how well objects are found whatever class they are given."""
import contextlib
import io
import json
import pathlib
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

gt_path, runs = sys.argv[1], pathlib.Path(sys.argv[2])
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
worst = 0.0
for record in sorted(runs.glob("**/record.json")):
    rec = json.loads(record.read_text())
    row = [str(record.parent.relative_to(runs))]
    for iou in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(str(record.parent / f"detections_{iou}.json"))
            ev = COCOeval(gt, dt, iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for i, name in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]):
            worst = max(worst, abs(ev.stats[i] - rec["metrics"][f"{iou}_{name}"]))
        if iou == "bbox":
            with contextlib.redirect_stdout(io.StringIO()):
                agn = COCOeval(gt, dt, iou)
                agn.params.useCats = 0
                agn.evaluate()
                agn.accumulate()
                agn.summarize()
            row.append(f"class-agnostic bbox AP50 {agn.stats[1]:.4f}")
        row.append(f"{iou} AP {ev.stats[0]:.4f} (record {rec['metrics'][iou + '_AP']:.4f}) AP50 {ev.stats[1]:.4f} (record {rec['metrics'][iou + '_AP50']:.4f})")
    print("  ".join(row))
print(f"largest |pycocotools - record| over the 24 stats of every run: {worst:.2e}")
sys.exit(0 if worst <= 1e-9 else 1)
