#!/usr/bin/env python3
"""PyTorch twin of one training iteration of `cae-bench detect` (Mask R-CNN on a ViT).

One iteration (forward, backward, AdamW step), the same shapes and the same work as
`cae-bench bench detect` (`eval/src/protocols/coco.rs`, `bench_mask_rcnn_iteration`), built from
torchvision's detection modules for everything after the backbone:

* the CAE ViT encoder (random init) on [cls] + all patches of the input, run up to the last tap
  block, stochastic depth rising linearly 0 -> 0.1 (mini) / 0.2 (paper), no relative position
  bias (CAE's detection recipe), fused qkv with q / v biases, layer scale 0.1, exact GELU,
  LayerNorm eps 1e-6. Attention is `F.scaled_dot_product_attention` (PyTorch's fused CPU / GPU
  kernel), as ours takes its fused attention kernel when no bias is given. The frozen position
  table is built as sin-cos at the input's grid (ours resamples the pretrained table to it: the
  same work, one frozen add). Taps: the un-normed outputs of blocks 4/6/8/12 of 12 (0-3 of the
  mini's 4), cls dropped, as [B, D, H/p, W/p].
* the 4-scale neck `Feature2Pyramid` of `torch_seg_twin.py` (deconv-BN-GELU-deconv, deconv,
  identity, max-pool), then torchvision's `FeaturePyramidNetwork` (1x1 laterals and 3x3 outputs
  with bias, nearest top-down, P6 = max-pool(1, 2) of P5: mmdet's FPN with `num_outs = 5`).
* torchvision's `RegionProposalNetwork`: `RPNHead` (3x3 conv + ReLU, objectness and deltas),
  anchors of sizes 32-512 scaled by p/16 with ratios 0.5 / 1 / 2, IoU 0.7 / 0.3, 256 anchors per
  image at 50 % positives, proposals: the top `nms_pre` per level, NMS 0.7 per level, the best
  `max_per_img` kept (ours: 500 / 300 for mini, 2000 / 2000 for paper, read from the presets
  below).
* torchvision's `RoIHeads`: `MultiScaleRoIAlign` over P2-P5 (7x7 boxes, 14x14 masks, adaptive
  sampling, the level rule with canonical scale 14p at level log2 p: mmdet's `finest_scale = 56`
  at p = 16), ground truths added to the proposals, IoU 0.5, `num` RoIs per image at 25 %
  positives (64 mini / 512 paper), `FastRCNNConvFCHead` (4 conv + BatchNorm + ReLU, one fc:
  mmdet's `Shared4Conv1FCBBoxHead` with SyncBN), `FastRCNNPredictor`, `MaskRCNNHeads` (4 convs)
  and `MaskRCNNPredictor` (deconv, 1x1) on the positives, 28x28 mask targets.
* backward, then AdamW (0.9 / 0.999, eps 1e-8) with the layer-decay groups of ours
  (`seg_param_group`: 0.75^(depth + 1 - layer), no weight decay on 1-D tensors and biases), lr
  1e-3 (mini) / 3e-4 (paper), wd 0.05.

Synthetic batch (the formula of `bench_objects`): `torch.manual_seed(0)`, images
`torch.randn(B, 3, H, W)`, filling the input (no padding); image b holds n objects (3 mini, 7
paper) side by side, object j in column j of n (an eighth of the column in from each side), top
at (0.1 + 0.15 ((b + j) % 3)) H, half the image high, class (b + 2j) % K (+1 here: torchvision's
class 0 is the background), mask the ellipse inscribed in the box (pixel centres inside).

Known differences from ours (the same work, other details):
* box loss: torchvision's smooth-L1 on encoded deltas; ours GIoU x 10 on decoded boxes (CAE's).
* class-specific regression over K + 1 classes (torchvision) vs K (mmdet); mask logits K + 1 vs K.
* RoIAlign `aligned=False` (torchvision's `MultiScaleRoIAlign`) vs `aligned=True` (mmdet); the
  anchors' base boxes are rounded (torchvision) vs not (mmdet).
* mmdet's padding groups (our batch of 4 is two groups of 2, BatchNorm over all four) are one
  batch of 4 here; the losses are normalised per group in ours, per batch here.
* random streams (drop path, samplers) are torch's, not our ChaCha streams; the proposal and RoI
  counts are printed so both sides' work can be compared.
* AdamW is torch's own (foreach on CPU); ours is the workspace formula, per tensor.

    /work/torchenv/bin/python benches/torch_det_twin.py --preset mini --iters 5 --warmup 1 \
        --threads 2 --json
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_seg_twin import (  # noqa: E402
    LN_EPS, BatchNorm2d, Feature2Pyramid, Mlp, PatchEmbed, drop_path, param_groups, tap_blocks,
    timed_iterations)

# The recipes of `DetRecipe::{mini, paper}` and `MaskRcnnConfig::{mini, vit}`.
PRESETS = {
    "mini": dict(size=(32, 32), patch=4, dim=128, depth=4, heads=4, fpn=64, box_conv=64,
                 box_fc=256, mask_ch=64, classes=8, batch=4, objects=3, nms_pre=500,
                 max_per_img=300, rois=64, lr=1e-3, drop_path=0.1),
    "vit_base": dict(size=(800, 1088), patch=16, dim=768, depth=12, heads=12, fpn=256,
                     box_conv=256, box_fc=1024, mask_ch=256, classes=80, batch=1, objects=7,
                     nms_pre=2000, max_per_img=2000, rois=512, lr=3e-4, drop_path=0.2),
}
INIT_VALUES = 0.1
LAYER_DECAY = 0.75


def sincos_2d_hw(gh, gw, dim):
    """MoCo-v3 2-D sin-cos table of a gh x gw grid with a zero cls row: [1, 1 + gh gw, dim]."""
    h = torch.arange(gh, dtype=torch.float32)
    w = torch.arange(gw, dtype=torch.float32)
    yy, xx = torch.meshgrid(h, w, indexing="ij")
    pdim = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(pdim, dtype=torch.float32) / pdim))
    out_w = xx.flatten()[:, None] * omega[None]
    out_h = yy.flatten()[:, None] * omega[None]
    pe = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], 1)
    return torch.cat([torch.zeros(1, dim), pe], 0)[None]


class Attention(nn.Module):
    """Fused qkv (bias = [q_bias, 0, v_bias]), fused scaled-dot-product attention."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, H, N, hd]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads, dp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.gamma_2 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.dp = dp

    def forward(self, x):
        x = x + drop_path(self.gamma_1 * self.attn(self.norm1(x)), self.dp, self.training)
        return x + drop_path(self.gamma_2 * self.mlp(self.norm2(x)), self.dp, self.training)


class Encoder(nn.Module):
    def __init__(self, size, patch, dim, depth, heads, dp):
        super().__init__()
        self.grid = (size[0] // patch, size[1] // patch)
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_2d_hw(*self.grid, dim))
        rates = [dp * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList([Block(dim, heads, r) for r in rates])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)  # a parameter of ours, unused by the taps
        self.taps = tap_blocks(depth)

    def forward(self, x):
        t = self.patch_embed(x) + self.pos_embed[:, 1:]
        b, _, d = t.shape
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        t = torch.cat([cls, t], 1)
        outs = [None] * len(self.taps)
        for i, blk in enumerate(self.blocks[: max(self.taps) + 1]):
            t = blk(t)
            for j, tap in enumerate(self.taps):
                if tap == i:
                    outs[j] = t
        gh, gw = self.grid
        return [o[:, 1:].transpose(1, 2).reshape(b, d, gh, gw) for o in outs]


class MaskRcnnTwin(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, c, p = cfg["dim"], cfg["fpn"], cfg["patch"]
        k = cfg["classes"]
        self.backbone = Encoder(cfg["size"], p, d, cfg["depth"], cfg["heads"], cfg["drop_path"])
        self.simple_neck = Feature2Pyramid(d)
        self.neck = FeaturePyramidNetwork([d] * 4, c, extra_blocks=LastLevelMaxPool())
        s = p / 16.0
        anchors = AnchorGenerator(tuple((a * s,) for a in (32, 64, 128, 256, 512)),
                                  ((0.5, 1.0, 2.0),) * 5)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c, 3), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
            batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=dict(training=cfg["nms_pre"], testing=1000),
            post_nms_top_n=dict(training=cfg["max_per_img"], testing=1000), nms_thresh=0.7)
        lp = int(math.log2(p))
        pool = lambda n: MultiScaleRoIAlign(["0", "1", "2", "3"], n, 0,  # noqa: E731
                                            canonical_scale=14 * p, canonical_level=lp)
        self.roi_heads = RoIHeads(
            pool(7),
            FastRCNNConvFCHead((c, 7, 7), [cfg["box_conv"]] * 4, [cfg["box_fc"]],
                               norm_layer=BatchNorm2d),
            FastRCNNPredictor(cfg["box_fc"], k + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=cfg["rois"],
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
            detections_per_img=100, mask_roi_pool=pool(14),
            mask_head=MaskRCNNHeads(c, [cfg["mask_ch"]] * 4, 1),
            mask_predictor=MaskRCNNPredictor(cfg["mask_ch"], cfg["mask_ch"], k + 1))
        for m in self.backbone.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.backbone.cls_token, std=0.02)
        # Counters of the work done (RoIs pooled by each head), read after an iteration.
        self.counts = {}
        for name, mod in (("box_rois", self.roi_heads.box_roi_pool),
                          ("mask_rois", self.roi_heads.mask_roi_pool)):
            mod.register_forward_hook(self._counter(name))

    def _counter(self, name):
        def hook(_mod, inputs, _out):
            self.counts[name] = sum(len(b) for b in inputs[1])
        return hook

    def forward(self, images, targets):
        b, _, h, w = images.shape
        maps = self.simple_neck(self.backbone(images))
        feats = self.neck(OrderedDict((str(i), m) for i, m in enumerate(maps)))
        il = ImageList(images, [(h, w)] * b)
        props, rpn_losses = self.rpn(il, feats, targets)
        self.counts["proposals"] = sum(len(p) for p in props)
        _, roi_losses = self.roi_heads(feats, props, il.image_sizes, targets)
        return {**rpn_losses, **roi_losses}


def bench_objects(b, h, w, n, classes):
    """Image b's objects (the formula of ours): boxes [n, 4], labels [n] (1-based), masks."""
    boxes, labels, masks = [], [], []
    cw = w / n
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    for j in range(n):
        x0, x1 = j * cw + cw / 8, (j + 1) * cw - cw / 8
        y0 = h * (0.1 + 0.15 * ((b + j) % 3))
        y1 = y0 + h * 0.5
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        masks.append((((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0).to(torch.uint8))
        boxes.append([x0, y0, x1, y1])
        labels.append((b + 2 * j) % classes + 1)
    return dict(boxes=torch.tensor(boxes, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.int64), masks=torch.stack(masks))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--size", help="HxW (whole patches)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed iterations, profile one more with torch.profiler and "
                    "print its op table (self CPU time)")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: torch.autocast compute, f32 weights and optimizer state")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    cfg = dict(PRESETS[a.preset])
    if a.size:
        cfg["size"] = tuple(int(v) for v in a.size.lower().split("x"))
    batch = a.batch or cfg["batch"]
    h, w = cfg["size"]

    torch.manual_seed(0)
    images = torch.randn(batch, 3, h, w)
    targets = [bench_objects(i, h, w, cfg["objects"], cfg["classes"]) for i in range(batch)]
    model = MaskRcnnTwin(cfg).to(dev)
    images = images.to(dev)
    targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
    model.train()
    opt = torch.optim.AdamW(param_groups(model, cfg["depth"], cfg["lr"], LAYER_DECAY), lr=cfg["lr"],
                            betas=(0.9, 0.999), eps=1e-8)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            losses = model(images, targets)
        loss = sum(v.float() for v in losses.values())
        value = loss.item()
        loss.backward()
        opt.step()
        return value

    times, loss_v = timed_iterations(step, a.warmup, a.iters, dev)

    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25),
              file=sys.stderr)

    res = {
        "task": "detect",
        "preset": a.preset,
        "batch": batch,
        "size": [h, w],
        "objects": cfg["objects"],
        "threads": a.threads,
        "ms": times,
        "ms_median": statistics.median(times) if times else math.nan,
        "ms_best": min(times) if times else math.nan,
        "loss": loss_v,
        "params": params,
        **model.counts,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "device": str(dev),
        "dtype": a.dtype,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"pytorch {torch.__version__} detect {a.preset} batch {batch} at {h}x{w} "
            f"({a.threads} threads): median {res['ms_median']:.1f} ms/iter, best "
            f"{res['ms_best']:.1f} ms over {len(times)} iters, loss {loss_v:.4f}, "
            f"{model.counts.get('proposals')} proposals, {model.counts.get('box_rois')} box RoIs, "
            f"{model.counts.get('mask_rois')} mask RoIs, {params} params, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
