#!/usr/bin/env python3
"""Writes the tiny checkpoints behind `cae-bench import`'s tests (tests/fixtures/import/).

Each fixture is a timm model (timm from PyPI) at a toy size (16 px images, patch 4, width 16,
2 blocks, 2 heads) with every parameter drawn at random so that nothing is at its initial value,
saved in the layout of one family of official checkpoints, next to an input batch and the
model's features for it:

  cae_pretrain.pth        CAE layout: {"model": {"encoder.*", regresser/decoder/mask_token ...}}
                          (timm Beit with q/v biases, layer scale and our fixed sin-cos table)
  beit_rel.pth            BEiT layout: {"model": {...}}, per-block relative position bias (and
                          its int64 index buffer, as unilm's files have it), no absolute
                          position embedding, layer scale (timm beit_*)
  beit_shared.safetensors BEiT with a shared relative position bias and a learned pos_embed
  vit_learned.pth         timm vit_* / MAE fine-tuned layout: fused qkv bias, learned pos_embed,
                          timm LayerScale (ls1/ls2), a classification head
  mae_fixed.safetensors   MAE pretraining layout: fused qkv bias, MAE's fixed sin-cos pos_embed
                          (column-first, another layout than CAE's), decoder keys, and fc_norm
                          instead of norm (global-pool checkpoint)

and for each NAME a `NAME.expected.safetensors` with `input` [2, 3, 16, 16] and `features`
[2, 17, 16]: all tokens after the final LayerNorm (`forward_features`, then `fc_norm` where the
model has that instead of `norm`). Metadata `num_heads` says what `--num-heads` to pass when the
weights do not tell.

Usage (torch, timm, safetensors in a venv):
    python scripts/make_import_fixtures.py tests/fixtures/import
"""

import math
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

D, DEPTH, HEADS, IMG, PATCH = 16, 2, 2, 16, 4
GRID = IMG // PATCH


def randomise(model, skip=()):
    """Moves every parameter away from its init, reproducibly."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in skip:
                continue
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif "gamma" in name:
                p.copy_(0.1 + 0.05 * noise)
            elif "relative_position_bias_table" in name:
                p.copy_(0.5 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / math.sqrt(max(p[0].numel(), 1)))


def cae_sincos(grid, dim):
    """Our (CAE, MoCo v3) table: [sin(r w), cos(r w), sin(c w), cos(c w)], zero cls slot."""
    q = dim // 4
    omega = 1.0 / (10000.0 ** (np.arange(q, dtype=np.float32) / q))
    rows = []
    for r in range(grid):
        for c in range(grid):
            a, b = r * omega, c * omega
            rows.append(np.concatenate([np.sin(a), np.cos(a), np.sin(b), np.cos(b)]))
    table = np.concatenate([np.zeros((1, dim), np.float32), np.stack(rows).astype(np.float32)])
    return torch.from_numpy(table)[None]


def mae_sincos(grid, dim):
    """MAE's util/pos_embed.py table: column half first, then row half, zero cls slot."""
    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # MAE's np.meshgrid(grid_w, grid_h) puts the column index in the first plane.
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32),
                             indexing="ij")
    emb = np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)
    table = np.concatenate([np.zeros((1, dim)), emb]).astype(np.float32)
    return torch.from_numpy(table)[None]


def beit(**kw):
    return timm.create_model(
        "beit_base_patch16_224", pretrained=False, img_size=IMG, patch_size=PATCH,
        embed_dim=D, depth=DEPTH, num_heads=HEADS, num_classes=10, global_pool="token", **kw)


def vit(**kw):
    return timm.create_model(
        "vit_base_patch16_224", pretrained=False, img_size=IMG, patch_size=PATCH,
        embed_dim=D, depth=DEPTH, num_heads=HEADS, num_classes=10, **kw)


def expected(out, name, model, x, feats, num_heads):
    save_file({"input": x.contiguous(), "features": feats.contiguous()},
              str(out / f"{name}.expected.safetensors"), metadata={"num_heads": str(num_heads)})


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))

    # CAE: BEiT-style blocks (q/v bias, layer scale), fixed sin-cos, encoder.* keys + extras.
    m = beit(use_abs_pos_emb=True, use_rel_pos_bias=False, init_values=0.1).eval()
    randomise(m, skip={"pos_embed"})
    with torch.no_grad():
        m.pos_embed.copy_(cae_sincos(GRID, D))
        feats = m.forward_features(x)
    sd = {f"encoder.{k}": v for k, v in m.state_dict().items() if not k.startswith("head.")}
    g = torch.Generator().manual_seed(99)
    sd["mask_token"] = torch.randn(1, 1, D, generator=g)
    sd["rd_pos_embed"] = cae_sincos(GRID, D)
    sd["regresser.norm.weight"] = torch.ones(D)
    sd["decoder.norm.weight"] = torch.ones(D)
    torch.save({"model": sd, "epoch": 799}, out / "cae_pretrain.pth")
    expected(out, "cae_pretrain", m, x, feats, HEADS)

    # BEiT: per-block relative position bias, no absolute position embedding (beit_* default).
    m = beit(use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1).eval()
    randomise(m)
    with torch.no_grad():
        feats = m.forward_features(x)
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("head.")}
    sd["mask_token"] = torch.zeros(1, 1, D)
    sd["lm_head.weight"] = torch.zeros(64, D)
    for i, blk in enumerate(m.blocks):  # unilm's checkpoints keep this (int64) buffer
        sd[f"blocks.{i}.attn.relative_position_index"] = blk.attn.relative_position_index.clone()
    torch.save({"model": sd}, out / "beit_rel.pth")
    expected(out, "beit_rel", m, x, feats, HEADS)

    # BEiT with a shared relative position bias and a learned absolute position embedding.
    m = beit(use_abs_pos_emb=True, use_rel_pos_bias=False, use_shared_rel_pos_bias=True,
             init_values=0.1).eval()
    randomise(m)
    with torch.no_grad():
        feats = m.forward_features(x)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()},
              str(out / "beit_shared.safetensors"))
    expected(out, "beit_shared", m, x, feats, HEADS)

    # timm ViT (MAE fine-tuning layout): fused qkv bias, learned pos_embed, LayerScale, head.
    m = vit(init_values=0.1, global_pool="token").eval()
    randomise(m)
    with torch.no_grad():
        feats = m.forward_features(x)
    torch.save({"model": m.state_dict()}, out / "vit_learned.pth")
    expected(out, "vit_learned", m, x, feats, HEADS)

    # MAE pretraining layout: fixed MAE sin-cos, no layer scale, decoder keys; fc_norm in place of
    # norm (as a global-pool checkpoint has it).
    m = vit(global_pool="avg").eval()
    randomise(m, skip={"pos_embed"})
    with torch.no_grad():
        m.pos_embed.copy_(mae_sincos(GRID, D))
        feats = m.fc_norm(m.forward_features(x))
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.startswith("head.")}
    sd["mask_token"] = torch.zeros(1, 1, 8)
    sd["decoder_embed.weight"] = torch.zeros(8, D)
    sd["decoder_pos_embed"] = torch.zeros(1, 1 + GRID * GRID, 8)
    save_file(sd, str(out / "mae_fixed.safetensors"))
    expected(out, "mae_fixed", m, x, feats, HEADS)

    print(f"timm {timm.__version__}, torch {torch.__version__}: wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/import")
