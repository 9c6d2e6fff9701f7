"""PIL + torchvision throughput on the same files as `cargo run --example throughput`.

    python datasets/scripts/torchvision_throughput.py DIR [--workers N]

Single process with torch.set_num_threads(1) (images/s per core), then a DataLoader with N
worker processes. Pipelines as in the Rust example:
  decode       PIL open + convert("RGB") + load
  rrc224       RandomResizedCrop(224, bicubic) + RandomHorizontalFlip + ToTensor + Normalize
  pretrain224  flip, one RandomResizedCrop box resized to 224 (bicubic) and 112 (Lanczos),
               ToTensor + Normalize / ToTensor + 0.8x + 0.1  (CAE's two views)
Needs: pip install torch torchvision pillow
"""
import argparse
import glob
import os
import time

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load(p):
    with open(p, "rb") as f:
        return Image.open(f).convert("RGB")


rrc = T.Compose([
    T.RandomResizedCrop(224, interpolation=T.InterpolationMode.BICUBIC),
    T.RandomHorizontalFlip(),
    T.ToTensor(),
    T.Normalize(MEAN, STD),
])
flip = T.RandomHorizontalFlip()
norm = T.Normalize(MEAN, STD)


def pretrain(img):
    img = flip(img)
    i, j, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
    a = F.resized_crop(img, i, j, h, w, [224, 224], T.InterpolationMode.BICUBIC)
    b = F.resized_crop(img, i, j, h, w, [112, 112], T.InterpolationMode.LANCZOS)
    return norm(F.to_tensor(a)), 0.8 * F.to_tensor(b) + 0.1


PIPES = {
    "decode": lambda p: load(p).size,
    "rrc224": lambda p: rrc(load(p)),
    "pretrain224": lambda p: pretrain(load(p)),
}


class DS(torch.utils.data.Dataset):
    def __init__(self, files, fn):
        self.files, self.fn = files, fn

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.fn(self.files[i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.dir, "*.jpg")))
    torch.set_num_threads(1)
    print(f"{len(files)} files; torch {torch.__version__}, PIL {Image.__version__}")
    for name, fn in PIPES.items():
        fn(files[0])
        t = time.perf_counter()
        for p in files:
            fn(p)
        dt = time.perf_counter() - t
        print(f"{name:<12} 1 process : {len(files) / dt:7.0f} img/s")
    if a.workers > 1:
        for name in ("rrc224", "pretrain224"):
            dl = torch.utils.data.DataLoader(DS(files, PIPES[name]), batch_size=64, num_workers=a.workers,
                                             collate_fn=lambda b: b, prefetch_factor=4, persistent_workers=False)
            t = time.perf_counter()
            n = sum(len(b) for b in dl)
            dt = time.perf_counter() - t
            print(f"{name:<12} {a.workers} workers: {n / dt:7.0f} img/s (incl. worker start-up)")


if __name__ == "__main__":
    main()
