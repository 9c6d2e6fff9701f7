#!/usr/bin/env python3
"""Copies a parity reference folder with one expected tensor of every file perturbed.

    python3 scripts/perturb-reference.py tests/fixtures/reference /tmp/perturbed

Each file keeps its header and every other byte; element 0 of its first expected result (the
first `output.*` tensor, `to_*` for position-table files, `anchors.all` for detection ops) gets
+0.05, far beyond every parity tolerance (1e-4 on activations). A parity test pointed at the copy
(`CAE_REFERENCE_DIR=/tmp/perturbed`) must fail: CI checks that on each backend. Standard library
only.
"""
import json
import shutil
import struct
import sys
from pathlib import Path


def expected_tensor(names):
    for prefix in ("output.", "to_", "anchors.all"):
        hits = sorted(n for n in names if n.startswith(prefix))
        if hits:
            return hits[0]
    return None


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.safetensors")):
        data = bytearray(f.read_bytes())
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        header.pop("__metadata__", None)
        name = expected_tensor([k for k, v in header.items() if v["dtype"] == "F32"])
        if name is None:
            sys.exit(f"{f}: no expected F32 tensor to perturb")
        at = 8 + n + header[name]["data_offsets"][0]
        (x,) = struct.unpack("<f", data[at : at + 4])
        data[at : at + 4] = struct.pack("<f", x + 0.05)
        (dst / f.name).write_bytes(bytes(data))
        print(f"{f.name}: {name}[0] {x:.6g} -> {x + 0.05:.6g}")
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, dst / f.name)


if __name__ == "__main__":
    main()
