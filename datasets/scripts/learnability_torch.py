"""Trains small classifiers from scratch on a synthetic world's ImageFolder (learnability check).

    python datasets/scripts/learnability_torch.py W/imagefolder [--labels 1500] [--epochs 100]

Models: a ViT (patch 4 -> 8x8 tokens at 32 px; default dim 192, depth 6, dim/64 heads), the shape
of the CPU demo's encoder, and a small CNN. Training: the first `--labels` training images (class-balanced
by construction), AdamW, one-cycle schedule, CIFAR-style RandomCrop(padding 1/8, reflect) + flip; evaluation on
the whole val split. Prints the final and best val accuracy of each model.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T


class ViT(nn.Module):
    def __init__(self, size=32, patch=4, dim=192, depth=6, heads=3, classes=8):
        super().__init__()
        n = (size // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def cnn(classes=8):
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
    return nn.Sequential(block(3, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes))


def tensors(ds):
    xs, ys = zip(*[(x, y) for x, y in ds])
    return torch.stack(xs), torch.tensor(ys)


def train(model, xtr, ytr, xva, yva, epochs, dev, size):
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    bs = 128
    steps = epochs * math.ceil(len(xtr) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.1)
    aug = T.Compose([T.RandomCrop(size, padding=size // 8, padding_mode="reflect"), T.RandomHorizontalFlip()])
    best = last = 0.0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            x = torch.stack([aug(v) for v in xtr[idx]]).to(dev)
            loss = F.cross_entropy(model(x), ytr[idx].to(dev), label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if ep % 10 == 9 or ep == epochs - 1:
            model.eval()
            with torch.no_grad():
                last = (model(xva.to(dev)).argmax(1).cpu() == yva).float().mean().item()
                train_acc = (model(xtr.to(dev)).argmax(1).cpu() == ytr).float().mean().item()
            best = max(best, last)
            print(f"  epoch {ep + 1}: train acc {train_acc:.3f}, val acc {last:.3f}", flush=True)
    return last, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--labels", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--models", default="vit,cnn")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    norm = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    tr = torchvision.datasets.ImageFolder(f"{a.root}/train", transform=norm)
    va = torchvision.datasets.ImageFolder(f"{a.root}/val", transform=norm)
    xtr, ytr = tensors(tr)
    xva, yva = tensors(va)
    # The world's file names are scene indices, and classes take turns: the first N indices are
    # balanced. ImageFolder sorts by class, so pick by index.
    order = sorted(range(len(tr.samples)), key=lambda i: tr.samples[i][0].rsplit("/", 1)[-1])[: a.labels]
    xtr, ytr = xtr[order], ytr[order]
    size = xtr.shape[-1]
    k = len(tr.classes)
    print(f"{len(xtr)} labelled train, {len(xva)} val, {k} classes, {size}px, device {dev}")
    models = {
        "vit": (f"vit-p4-d{a.dim}x{a.depth}", lambda: ViT(size=size, dim=a.dim, depth=a.depth, heads=a.dim // 64, classes=k)),
        "cnn": ("cnn-3stage", lambda: cnn(k)),
    }
    for key in a.models.split(","):
        name, make = models[key]
        model = make()
        t = time.time()
        last, best = train(model, xtr, ytr, xva, yva, a.epochs, dev, size)
        print(f"{name:<14} val acc {last:.3f} (best {best:.3f}), chance {1 / k:.3f}, {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
