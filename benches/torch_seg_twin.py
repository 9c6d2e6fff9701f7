#!/usr/bin/env python3
"""PyTorch twin of one training iteration of `cae-bench segment --protocol upernet`.

One iteration, the same shapes and the same work as our Rust code:

* the CAE ViT encoder (random init) on [cls] + all patches of the crop, run up to the last tap
  block, with stochastic depth rising linearly 0 -> 0.1 over the blocks and a zero-initialised
  relative position bias table per block (BEiT's `(2g-1)^2 + 3` rows x heads, with the official
  index), both added by `prepare_finetune_backbone` (`heads/src/classification/finetune.rs`) for
  the UperNet recipes (`SegRecipe::paper`, which `SegRecipe::mini` inherits: drop_path 0.1,
  rel_pos_bias on). Fused qkv with q / v biases, scale applied to q, softmax attention written
  out (the path our `Attention::forward` takes when a bias is given), layer scale, exact GELU,
  LayerNorm eps 1e-6 (`pretrain/src/model/{encoder,block,attention,rel_pos_bias}.rs`). The taps
  are the un-normed outputs of blocks `tap_blocks(depth)` (4, 6, 8, 12 of 12: [3, 5, 7, 11];
  [0, 1, 2, 3] for the 4-block mini), cls dropped, reshaped to [B, D, g, g]
  (`heads/src/neck.rs`: `tap_blocks`, `tokens_to_map`). The final LayerNorm is kept as a module
  (it is a trainable parameter of ours) but, as in our forward, never used.
* the neck `Feature2Pyramid` (`heads/src/neck.rs`): x4 = ConvTranspose2d(D, D, 2, 2) -> BN ->
  GELU -> ConvTranspose2d(D, D, 2, 2); x2 = ConvTranspose2d(D, D, 2, 2); x1 = identity;
  x0.5 = max-pool 2x2 stride 2.
* `UPerHead` (`heads/src/segmentation/upernet.rs`): PPM on level 3 (AdaptiveAvgPool(s) -> 1x1
  ConvModule -> bilinear back, s in 1, 2, 3, 6), concat -> 3x3 `bottleneck`; 1x1 lateral convs on
  levels 0..2, top-down additions, 3x3 fpn convs on levels 0..2, all four resized to level 0,
  concat -> 3x3 `fpn_bottleneck`, Dropout2d(0.1), 1x1 `conv_seg` (bias). ConvModule = conv (no
  bias, padding k//2) -> BatchNorm (train mode, eps 1e-5, momentum 0.1) -> ReLU
  (`heads/src/segmentation/conv_module.rs`).
* the auxiliary `FCNHead` (`heads/src/segmentation/fcn.rs`) on level 2: one 3x3 ConvModule ->
  Dropout2d(0.1) -> 1x1 `conv_seg`.
* the loss (`heads/src/segmentation/loss.rs`): each head's logits resized bilinearly
  (align_corners=False) to the label size, per-pixel cross-entropy, mean over ALL pixels (mmseg's
  default, `avg_non_ignore = false`), `decode + 0.4 * aux`.
* backward, then AdamW (betas 0.9 / 0.999, eps 1e-8) with our groups
  (`heads/src/segmentation/layer_decay.rs`, `heads/src/optim.rs`): lr_scale =
  0.65^(depth + 1 - layer) (layer 0: patch_embed, cls_token, pos_embed; i + 1: blocks.i;
  depth + 1: everything else), no weight decay for 1-D tensors and biases (cls_token and the
  relative position tables are decayed). lr 1e-3 (mini) / 1e-4 (paper), wd 0.05; the warmup /
  poly schedule is not modelled (the lr value does not change the work).

Every bilinear resize is skipped when the size already matches, as our `resize_bilinear` does
(mini: the main logits are already 32x32; the fusion resize of level 0 onto itself, everywhere).
Parameter names follow ours / mmseg's (`backbone.*`, `neck.*`, `decode_head.*`,
`auxiliary_head.*`), so the layer-decay rule reads the same paths.

Presets: `mini` = encoder `mini` (img 32, patch 4, width 128, depth 4, 4 heads), heads `mini`
(UPerHead 64 wide, aux 32 wide, 8 classes), crop 32, batch 8; `vit_base` = encoder
`vit_base_patch16` (patch 16, width 768, depth 12, 12 heads) at crop 512 (32x32 = 1024 patches,
relative position tables of 63*63 + 3 = 3972 rows), heads `vit` (UPerHead 768 wide, aux 256 wide,
150 classes), batch 2 by default (the recipe's 16 does not fit a CPU bench).

Synthetic batch: `torch.manual_seed(0)`, images `torch.randn(B, 3, C, C)`; labels
`(b + y // 8 + x // 8) % num_classes` (no ignored pixels). The model is initialised after the
batch is drawn (mmcv-style: xavier-uniform linears, kaiming-normal fan-out ConvModules,
normal(0.01) classifiers, torch-default transposed convs); init values do not change the work.

Known differences from ours:
* vit_base position table: ours resamples the pretrained 14x14 sin-cos table bicubically to
  32x32 (frozen); here the frozen table is built as sin-cos directly at 32x32 (different values,
  the same work: one frozen add).
* BatchNorm calls `torch.batch_norm` directly, skipping `F.batch_norm`'s Python check that
  refuses one value per channel in training, so `--batch 1` runs (the PPM's 1x1 pooled branch then
  has one value per channel: its output is 0 and its running variance NaN, as ours gives a
  non-finite one; our recipe refuses batches below 2). The kernel is the same.
* Dropout / drop-path masks come from torch's generator, not our ChaCha stream.
* AdamW is torch's own (single-tensor loop on CPU); ours is the workspace formula, per tensor.

    /work/torchenv/bin/python benches/torch_seg_twin.py --preset mini --iters 5 --warmup 1 \
        --threads 2 --json
"""

import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: img(=crop), patch, dim, depth, heads, head channels, aux channels, classes, batch, lr
PRESETS = {
    "mini": dict(crop=32, patch=4, dim=128, depth=4, heads=4, channels=64, aux_channels=32,
                 classes=8, batch=8, lr=1e-3),
    "vit_base": dict(crop=512, patch=16, dim=768, depth=12, heads=12, channels=768,
                     aux_channels=256, classes=150, batch=2, lr=1e-4),
}
LN_EPS = 1e-6
BN_EPS = 1e-5
INIT_VALUES = 0.1
DROP_PATH = 0.1
DROPOUT = 0.1
AUX_WEIGHT = 0.4
AUX_IN_INDEX = 2
POOL_SCALES = (1, 2, 3, 6)
RESCALES = (4.0, 2.0, 1.0, 0.5)
LAYER_DECAY = 0.65
WEIGHT_DECAY = 0.05


def sincos_2d(grid, dim):
    """MoCo-v3 2-D sin-cos table with a zero cls row: [1, 1 + grid^2, dim] (as torch_twin.py)."""
    h = torch.arange(grid, dtype=torch.float32)
    w = torch.arange(grid, dtype=torch.float32)
    gw, gh = torch.meshgrid(w, h, indexing="ij")
    pdim = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(pdim, dtype=torch.float32) / pdim))
    out_w = gw.flatten()[:, None] * omega[None]
    out_h = gh.flatten()[:, None] * omega[None]
    pe = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], 1)
    return torch.cat([torch.zeros(1, dim), pe], 0)[None]


def relative_position_index(g):
    """BEiT's index for a g x g grid, flattened (1+N)^2 (as our `relative_position_index`)."""
    n = g * g
    nrd = (2 * g - 1) ** 2 + 3
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dh = ys[:, None] - ys[None, :] + g - 1
    dw = xs[:, None] - xs[None, :] + g - 1
    idx = torch.zeros(n + 1, n + 1, dtype=torch.long)
    idx[1:, 1:] = dh * (2 * g - 1) + dw
    idx[0, :] = nrd - 3
    idx[:, 0] = nrd - 2
    idx[0, 0] = nrd - 1
    return idx.flatten()


def drop_path(x, p, training):
    """Per-sample stochastic depth: x * mask / keep."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)
    return x * mask


def resize(x, size):
    """Bilinear, align_corners=False; a no-op when the size already matches (as ours)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------
# Encoder


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Fused qkv (bias = [q_bias, 0, v_bias]), own relative position bias table."""

    def __init__(self, dim, heads, grid):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer("relative_position_index", relative_position_index(grid), persistent=False)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        hd = d // h
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3 * h, hd).transpose(1, 2)
        q, k, v = qkv[:, :h], qkv[:, h:2 * h], qkv[:, 2 * h:]
        rpb = self.relative_position_bias_table[self.relative_position_index]
        rpb = rpb.reshape(n, n, h).permute(2, 0, 1)  # [H, N, N]
        attn = (q * hd ** -0.5) @ k.transpose(-2, -1) + rpb.unsqueeze(0)
        out = attn.softmax(dim=-1) @ v  # [B, H, N, hd]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads, grid, dp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, grid)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.gamma_2 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.dp = dp

    def forward(self, x):
        x = x + drop_path(self.gamma_1 * self.attn(self.norm1(x)), self.dp, self.training)
        return x + drop_path(self.gamma_2 * self.mlp(self.norm2(x)), self.dp, self.training)


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


def tap_blocks(depth):
    """Blocks round(depth * m / 12) for m = 4, 6, 8, 12, 0-based (our `tap_blocks`)."""
    return [max(int(math.floor(depth * m / 12.0 + 0.5)), 1) - 1 for m in (4, 6, 8, 12)]


class Encoder(nn.Module):
    def __init__(self, crop, patch, dim, depth, heads):
        super().__init__()
        self.grid = crop // patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Frozen sin-cos table (a Param without grad in ours).
        self.register_buffer("pos_embed", sincos_2d(self.grid, dim))
        rates = [DROP_PATH * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList([Block(dim, heads, self.grid, r) for r in rates])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)  # kept (a parameter of ours), unused by taps
        self.taps = tap_blocks(depth)

    def forward(self, x):
        t = self.patch_embed(x) + self.pos_embed[:, 1:]
        b, _, d = t.shape
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        t = torch.cat([cls, t], 1)
        last = max(self.taps)
        outs = [None] * len(self.taps)
        for i, blk in enumerate(self.blocks[: last + 1]):
            t = blk(t)
            for j, tap in enumerate(self.taps):
                if tap == i:
                    outs[j] = t
        g = self.grid
        return [o[:, 1:].transpose(1, 2).reshape(b, d, g, g) for o in outs]


# ---------------------------------------------------------------------------------------------
# Neck and heads


class BatchNorm2d(nn.BatchNorm2d):
    """PyTorch's BatchNorm2d, calling the kernel directly (no one-value-per-channel check)."""

    def forward(self, x):
        return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                self.training, self.momentum, self.eps, False)


class Feature2Pyramid(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.upsample_4x = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, 2, 2),
            BatchNorm2d(dim, eps=BN_EPS),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, 2, 2),
        )
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2))

    def forward(self, maps):
        out = []
        for x, s in zip(maps, RESCALES):
            if s == 4.0:
                out.append(self.upsample_4x(x))
            elif s == 2.0:
                out.append(self.upsample_2x(x))
            elif s == 1.0:
                out.append(x)
            else:
                out.append(F.max_pool2d(x, 2, 2))
        return out


class ConvModule(nn.Module):
    """conv (no bias, 'same' padding) -> BN -> ReLU, kaiming-normal fan-out."""

    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        self.bn = BatchNorm2d(c_out, eps=BN_EPS)
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def conv_seg(c_in, classes):
    c = nn.Conv2d(c_in, classes, 1)
    nn.init.normal_(c.weight, 0.0, 0.01)
    nn.init.zeros_(c.bias)
    return c


class UPerHead(nn.Module):
    def __init__(self, in_ch, channels, classes, levels=4):
        super().__init__()
        self.psp_modules = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_ch, channels, 1)) for s in POOL_SCALES
        ])
        self.bottleneck = ConvModule(in_ch + len(POOL_SCALES) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(in_ch, channels, 1) for _ in range(levels - 1)])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in range(levels - 1)])
        self.fpn_bottleneck = ConvModule(levels * channels, channels, 3)
        self.dropout = nn.Dropout2d(DROPOUT)
        self.conv_seg = conv_seg(channels, classes)

    def psp_forward(self, x):
        size = x.shape[-2:]
        outs = [x] + [resize(m(x), size) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, 1))

    def forward(self, levels):
        n = len(levels)
        laterals = [conv(levels[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(levels[-1]))
        for i in range(n - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]
        outs.append(laterals[-1])
        size = outs[0].shape[-2:]
        outs = [resize(o, size) for o in outs]
        feats = self.fpn_bottleneck(torch.cat(outs, 1))
        return self.conv_seg(self.dropout(feats))


class FCNHead(nn.Module):
    def __init__(self, in_ch, channels, classes):
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_ch, channels, 3))
        self.dropout = nn.Dropout2d(DROPOUT)
        self.conv_seg = conv_seg(channels, classes)

    def forward(self, levels):
        return self.conv_seg(self.dropout(self.convs(levels[AUX_IN_INDEX])))


class UperNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["dim"]
        self.backbone = Encoder(cfg["crop"], cfg["patch"], d, cfg["depth"], cfg["heads"])
        self.neck = Feature2Pyramid(d)
        self.decode_head = UPerHead(d, cfg["channels"], cfg["classes"])
        self.auxiliary_head = FCNHead(d, cfg["aux_channels"], cfg["classes"])
        for name, m in self.backbone.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.backbone.cls_token, std=0.02)

    def forward(self, x):
        pyramid = self.neck(self.backbone(x))
        return self.decode_head(pyramid), self.auxiliary_head(pyramid)


def seg_ce(logits, labels):
    """Logits resized to the labels, per-pixel CE, mean over all pixels (ignore 255 as 0)."""
    logits = resize(logits, labels.shape[-2:])
    return F.cross_entropy(logits, labels, ignore_index=255, reduction="none").mean()


def layer_id(path, depth):
    if not path.startswith("backbone."):
        return depth + 1
    p = path[len("backbone."):]
    if p in ("cls_token", "mask_token", "pos_embed") or p.startswith("patch_embed."):
        return 0
    if p.startswith("blocks."):
        return int(p.split(".")[1]) + 1
    return depth + 1


def param_groups(model, depth, lr, decay=LAYER_DECAY):
    """AdamW groups of our `seg_param_group`: lr x decay^(depth + 1 - layer), no weight decay on
    1-D tensors and biases (the detection twin passes its recipe's 0.75)."""
    groups = {}
    for path, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = min(layer_id(path, depth), depth + 1)
        scale = decay ** (depth + 1 - layer)
        wd = 0.0 if (p.ndim <= 1 or path.endswith(".bias")) else WEIGHT_DECAY
        groups.setdefault((scale, wd), []).append(p)
    return [{"params": ps, "lr": lr * s, "weight_decay": wd} for (s, wd), ps in groups.items()]


def timed_iterations(step, warmup, iters, dev):
    """Runs `step()` (one whole iteration, returning its loss) `warmup + iters` times; the
    milliseconds of the timed ones (synchronised on a GPU) and the last loss."""
    cuda = dev.type == "cuda"
    times, loss_v = [], math.nan
    for i in range(warmup + iters):
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        loss_v = step()
        if cuda:
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times, loss_v


def make_batch(b, crop, classes):
    torch.manual_seed(0)
    images = torch.randn(b, 3, crop, crop)
    bb = torch.arange(b).view(b, 1, 1)
    yy = (torch.arange(crop) // 8).view(1, crop, 1)
    xx = (torch.arange(crop) // 8).view(1, 1, crop)
    labels = ((bb + yy + xx) % classes).to(torch.int64)
    return images, labels


def summary(model, images):
    """Per-module parameter counts and the forward shapes (for `--summary`)."""
    with torch.no_grad():
        model.eval()
        maps = model.backbone(images)
        pyr = model.neck(maps)
        main, aux = model.decode_head(pyr), model.auxiliary_head(pyr)
        model.train()
    for name in ("backbone", "neck", "decode_head", "auxiliary_head"):
        n = sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        print(f"{name}: {n} trainable parameters")
    print("taps", model.backbone.taps, [tuple(m.shape) for m in maps])
    print("pyramid", [tuple(p.shape) for p in pyr])
    print("logits", tuple(main.shape), "aux", tuple(aux.shape))
    for name, p in model.named_parameters():
        if name.startswith("backbone.blocks.") and not name.startswith("backbone.blocks.0."):
            continue
        print(f"  {name} {tuple(p.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--summary", action="store_true", help="print parameter counts and shapes")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: torch.autocast compute, f32 weights and optimizer state")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    cfg = PRESETS[a.preset]
    batch = a.batch or cfg["batch"]
    crop = cfg["crop"]

    images, labels = make_batch(batch, crop, cfg["classes"])
    model = UperNet(cfg).to(dev)
    images, labels = images.to(dev), labels.to(dev)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, cfg["depth"], cfg["lr"]), lr=cfg["lr"],
                            betas=(0.9, 0.999), eps=1e-8)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if a.summary:
        summary(model, images)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            logits, aux_logits = model(images)
        logits, aux_logits = logits.float(), aux_logits.float()
        loss = seg_ce(logits, labels) + AUX_WEIGHT * seg_ce(aux_logits, labels)
        value = loss.item()
        loss.backward()
        opt.step()
        return value

    times, loss_v = timed_iterations(step, a.warmup, a.iters, dev)

    res = {
        "task": "segment",
        "preset": a.preset,
        "batch": batch,
        "crop": crop,
        "threads": a.threads,
        "ms": times,
        "ms_median": statistics.median(times) if times else math.nan,
        "ms_best": min(times) if times else math.nan,
        "loss": loss_v,
        "params": params,
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
            f"pytorch {torch.__version__} segment {a.preset} batch {batch} crop {crop} "
            f"({a.threads} threads): median {res['ms_median']:.1f} ms/iter, best "
            f"{res['ms_best']:.1f} ms over {len(times)} iters, loss {loss_v:.4f}, "
            f"{params} params, peak RSS {res['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
