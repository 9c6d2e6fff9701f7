#!/usr/bin/env python3
"""PyTorch twin of `cae-bench bench pretrain`: the same CAE preset, the same work per step.

One step = forward of the encoder on [cls] + visible patches, the alignment branch (same weights,
no grad) on [cls] + masked patches, the latent regressor, the decoder and head, the loss
(reconstruction + 2 * alignment MSE), backward, global-norm clipping to 3.0 and AdamW with the CAE
parameter groups (no decay for 1-D parameters). The layers follow the official CAE code
(`models/modeling_cae_helper.py`): fused qkv with q/v biases, manual softmax attention, layer scale,
drop path (active in the alignment branch too), exact-erf GELU, LayerNorm eps 1e-6.

Images are N(0, 1), each sample masks exactly M random patches (the shape of the mask does not
change the work), DALL-E ids are uniform. Timing: the batch is built before the clock starts; the
clock stops after the loss scalars reach the host, as in our bench.

    python3 benches/torch_twin.py --preset mini --batch 64 --steps 10 --threads 2 --json
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # img, patch, dim, depth, heads, dec_dim, dec_heads, reg_depth, dec_depth, masked, target, drop_path
    "test": (16, 4, 32, 2, 2, 32, 2, 1, 1, 6, "pixel", 0.0),
    "mini": (32, 4, 128, 4, 4, 128, 4, 2, 2, 32, "pixel", 0.0),
    "vit_tiny_patch16": (224, 16, 192, 12, 12, 192, 12, 4, 4, 98, "dalle", 0.1),
    "vit_small_patch16": (224, 16, 384, 12, 12, 768, 12, 4, 4, 98, "dalle", 0.1),
    "vit_base_patch16": (224, 16, 768, 12, 12, 768, 12, 4, 4, 98, "dalle", 0.1),
}
EPS = 1e-6
INIT_VALUES = 0.1
VOCAB = 8192


def sincos_2d(grid, dim):
    """MoCo-v3 2-D sin-cos table with a zero cls row: [1, 1+grid², dim]."""
    h = torch.arange(grid, dtype=torch.float32)
    w = torch.arange(grid, dtype=torch.float32)
    gw, gh = torch.meshgrid(w, h, indexing="ij")
    pdim = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(pdim, dtype=torch.float32) / pdim))
    out_w = gw.flatten()[:, None] * omega[None]
    out_h = gh.flatten()[:, None] * omega[None]
    pe = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], 1)
    return torch.cat([torch.zeros(1, dim), pe], 0)[None]


def drop_path(x, p, training):
    if p == 0.0 or not training:
        return x
    keep = 1 - p
    mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
    return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, xq, xk, xv):
        b, nq, c = xq.shape
        nk = xk.shape[1]
        h = self.heads
        q = F.linear(xq, self.q.weight, self.q_bias).reshape(b, nq, h, -1).permute(0, 2, 1, 3)
        k = F.linear(xk, self.k.weight).reshape(b, nk, h, -1).permute(0, 2, 1, 3)
        v = F.linear(xv, self.v.weight, self.v_bias).reshape(b, nk, h, -1).permute(0, 2, 1, 3)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, nq, c))


class Block(nn.Module):
    def __init__(self, dim, heads, dp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.gamma_2 = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.dp = dp

    def forward(self, x, training):
        x = x + drop_path(self.gamma_1 * self.attn(self.norm1(x)), self.dp, training)
        return x + drop_path(self.gamma_2 * self.mlp(self.norm2(x)), self.dp, training)


class RegressorBlock(nn.Module):
    def __init__(self, dim, heads, dp):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=EPS)
        self.norm1_k = nn.LayerNorm(dim, eps=EPS)
        self.norm1_v = nn.LayerNorm(dim, eps=EPS)
        self.norm2_cross = nn.LayerNorm(dim, eps=EPS)
        self.cross_attn = CrossAttention(dim, heads)
        self.mlp_cross = Mlp(dim, 4 * dim)
        self.gamma_1_cross = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.gamma_2_cross = nn.Parameter(INIT_VALUES * torch.ones(dim))
        self.dp = dp

    def forward(self, xq, xkv, pos_q, pos_k, training):
        a = self.cross_attn(self.norm1_q(xq + pos_q), self.norm1_k(xkv + pos_k), self.norm1_v(xkv))
        x = self.norm2_cross(xq + drop_path(self.gamma_1_cross * a, self.dp, training))
        return x + drop_path(self.gamma_2_cross * self.mlp_cross(x), self.dp, training)


class Encoder(nn.Module):
    def __init__(self, img, patch, dim, depth, heads, dp):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos_embed", sincos_2d(img // patch, dim))
        rates = torch.linspace(0, dp, depth).tolist()
        self.blocks = nn.ModuleList([Block(dim, heads, r) for r in rates])
        self.norm = nn.LayerNorm(dim, eps=EPS)

    def forward(self, x, keep, training):
        """`keep`: bool [B, N], the patches that enter (exactly K per sample)."""
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        b, n, d = t.shape
        t = t + self.pos_embed[:, 1:]
        t = t[keep].reshape(b, -1, d)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        t = torch.cat([cls, t], 1)
        for blk in self.blocks:
            t = blk(t, training)
        return self.norm(t)


class Cae(nn.Module):
    def __init__(self, preset):
        super().__init__()
        img, patch, dim, depth, heads, dd, dh, rdep, ddep, m, target, dp = PRESETS[preset]
        self.patch, self.num_masked, self.target = patch, m, target
        self.encoder = Encoder(img, patch, dim, depth, heads, dp)
        self.proj = nn.Linear(dim, dd) if dd != dim else None
        self.proj_norm = nn.LayerNorm(dd, eps=EPS) if dd != dim else None
        self.register_buffer("rd_pos_embed", sincos_2d(img // patch, dd))
        self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * 0.02)
        self.reg_blocks = nn.ModuleList([RegressorBlock(dd, dh, r) for r in torch.linspace(0, dp, rdep).tolist()])
        self.reg_norm = nn.LayerNorm(dd, eps=EPS)
        self.dec_blocks = nn.ModuleList([Block(dd, dh, r) for r in torch.linspace(0, dp, ddep).tolist()])
        self.dec_norm = nn.LayerNorm(dd, eps=EPS)
        outputs = patch * patch * 3 if target == "pixel" else VOCAB
        self.head = nn.Linear(dd, outputs)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)

    def project(self, z):
        return self.proj_norm(self.proj(z)) if self.proj is not None else z

    def forward(self, x, mask):
        b = x.shape[0]
        z = self.project(self.encoder(x, ~mask, True))[:, 1:]  # [B, V, D']
        with torch.no_grad():
            target = self.project(self.encoder(x, mask, True))[:, 1:]  # [B, M, D']
        d = z.shape[-1]
        pos = self.rd_pos_embed[:, 1:].expand(b, -1, -1)
        pos_m = pos[mask].reshape(b, -1, d)
        pos_v = pos[~mask].reshape(b, -1, d)
        q = self.mask_token.expand(b, pos_m.shape[1], -1)
        pos_k = torch.cat([pos_v, pos_m], 1)
        for blk in self.reg_blocks:
            q = blk(q, torch.cat([z, q], 1), pos_m, pos_k, True)
        latent = self.reg_norm(q)
        y = latent + pos_m
        for blk in self.dec_blocks:
            y = blk(y, True)
        logits = self.head(self.dec_norm(y)).reshape(-1, self.head.out_features)
        return logits, latent, target


def pixel_targets(x, mask, patch):
    b, c, h, w = x.shape
    g = h // patch
    p = x.reshape(b, c, g, patch, g, patch).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, -1)
    p = p[mask]
    return F.layer_norm(p, p.shape[-1:], eps=1e-6)


def make_batch(model, preset, batch, gen):
    img, patch = PRESETS[preset][0], PRESETS[preset][1]
    n = (img // patch) ** 2
    x = torch.randn(batch, 3, img, img, generator=gen)
    order = torch.rand(batch, n, generator=gen).argsort(1)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask.scatter_(1, order[:, : model.num_masked], True)
    if model.target == "pixel":
        tgt = pixel_targets(x, mask, patch)
    else:
        tgt = torch.randint(0, VOCAB, (batch, n), generator=gen)[mask]
    return x, mask, tgt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: torch.autocast compute, f32 weights and optimizer state")
    a = ap.parse_args()
    batch = a.batch or (64 if a.preset == "mini" else 8)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    model = Cae(a.preset).to(dev)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
    )
    gen = torch.Generator().manual_seed(0)
    times, loss_v = [], math.nan
    for i in range(a.warmup + a.steps):
        x, mask, tgt = (t.to(dev) for t in make_batch(model, a.preset, batch, gen))
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            logits, latent, target = model(x, mask)
            logits, latent, target = logits.float(), latent.float(), target.float()
        rec = F.mse_loss(logits, tgt) if model.target == "pixel" else F.cross_entropy(logits, tgt)
        align = F.mse_loss(latent, target)
        loss = rec + 2.0 * align
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        loss_v = torch.stack([loss.detach(), rec.detach(), align.detach()]).tolist()[0]
        ms = (time.perf_counter() - t0) * 1e3
        if i >= a.warmup:
            times.append(ms)
    mean = sum(times) / len(times)
    res = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "preset": a.preset,
        "batch": batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "threads": torch.get_num_threads(),
        "ms_per_step": mean,
        "median_ms": statistics.median(times),
        "img_per_s": batch / (mean / 1e3),
        "last_loss": loss_v,
        "device": str(dev),
        "dtype": a.dtype,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"pytorch {torch.__version__} {a.preset} batch {batch} ({res['threads']} threads): "
            f"{mean:.1f} ms/step (median {res['median_ms']:.1f}), {res['img_per_s']:.1f} img/s"
            f" on {dev} {a.dtype}"
        )


if __name__ == "__main__":
    main()
