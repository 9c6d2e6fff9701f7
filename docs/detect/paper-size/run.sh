#!/usr/bin/env bash
# The paper preset at full size on this CPU: a random ViT-B through CAE's Mask R-CNN pipeline
# (per-group padding to 32, the 14x14 table resampled to 672x1092 (a 42x68 grid, whole patches as CAE's PatchEmbed) and to each batch's grid,
# the DETR-style crop branch, SyncBN over the groups, grid_sample paste), 2 iterations of
# batch 2 (one group) on 6 real photos, then the test pass on the 2 val photos, under
# /usr/bin/time -v for the peak resident memory. Usage: bash run.sh (from the repo root),
# with `cae-bench` on PATH and /work/torchenv's Python for the photo folder.
set -e
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB RAM, $(uname -sr)"
echo "# cae-bench: $(cae-bench --version), release build of commit $(git rev-parse --short HEAD) (cargo build --release -p cae-bench)"
D=${PHOTOS:-/tmp/photos-coco}
O=${OUT:-/tmp/paper-size-run}
rm -rf "$D" "$O"
echo "\$ python docs/detect/paper-size/make_photos.py $D"
/work/torchenv/bin/python docs/detect/paper-size/make_photos.py "$D"
CMD="cae-bench detect --preset coco-1x-paper --encoder random --batch 2 --iters 2 --data $D --out $O --no-progress --json"
echo "\$ /usr/bin/time -v $CMD"
/usr/bin/time -v $CMD 2>&1
echo "# record details:"
python3 -c "import json,sys; r=json.load(open('$O/record.json')); print(json.dumps({k: r[k] for k in ('status','protocol') if k in r}, indent=1)[:4000])"
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
