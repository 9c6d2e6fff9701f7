#!/bin/bash
# Data parallel pretraining across 2 MPI processes on this 2-core machine, against one process
# with --accum 2 (the same computation) and one process with 2 threads (the usual way to use
# both cores). CAE `mini`, batch 64, 60 steps, on the quickstart world's 9,600 training images.
set -e
BIN=${BIN:-/work/bin3/cae-bench-mpi}   # cargo build --release -p cae-bench --features mpi
DATA=${DATA:-/work/runs/qs-fresh/world-e683e10f/imagefolder/train}
OUT=${OUT:-/work/runs/dist}
rm -rf "$OUT"; mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 RUST_LOG=warn
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $($BIN --version) (cargo build --release -p cae-bench --features mpi)"
echo "# mpirun: $(mpirun --version | head -1)"
ARGS="pretrain --preset mini --steps 60 --batch 64 --data $DATA --no-progress"
run() { echo "\$ $*"; /usr/bin/time -f "# wall %e s, max RSS %M KiB (of the launcher or process)" "$@"; }
run $BIN --threads 1 $ARGS --accum 2 --out $OUT/one-accum2
run mpirun -np 2 --bind-to none $BIN --threads 1 $ARGS --out $OUT/mpi2
run $BIN --threads 2 $ARGS --out $OUT/one-2threads
python3 - "$OUT" <<'PY'
import json, struct, sys, statistics
out = sys.argv[1]
def metrics(r):
    return [json.loads(l) for l in open(f"{out}/{r}/metrics.jsonl")]
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n]); base = 8 + n; t = {}
    for k, v in head.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; raw = b[base + s: base + e]
        t[k] = struct.unpack(f"<{len(raw)//4}f", raw)
    return t
a, m = metrics("one-accum2"), metrics("mpi2")
dl = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, m))
ta, tm = tensors(f"{out}/one-accum2/encoder.safetensors"), tensors(f"{out}/mpi2/encoder.safetensors")
dw = max(max(abs(p - q) for p, q in zip(ta[k], tm[k])) for k in ta)
same = all(ta[k] == tm[k] for k in ta)
print(f"steps logged: {len(a)} / {len(m)}; final loss {a[-1]['loss']:.6f} (one process, --accum 2) vs {m[-1]['loss']:.6f} (mpirun -np 2)")
print(f"largest relative loss difference over the logged steps: {dl:.3e}")
print(f"largest absolute encoder weight difference: {dw:.3e}; bit-identical encoders: {same}")
for r in ["one-accum2", "mpi2", "one-2threads"]:
    ips = [x["img_per_s"] for x in metrics(r)[5:]]
    print(f"{r}: median {statistics.median(ips):.1f} img/s over steps 6-60 (data loading included)")
PY
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
