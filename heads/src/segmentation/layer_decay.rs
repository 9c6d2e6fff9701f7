//! Layer-wise learning-rate decay of the segmentation fine-tune (cae.md §5b; BEiT / CAE
//! `mmcv_custom/layer_decay_optimizer_constructor.py` with `num_layers = depth`):
//!
//! * layer 0: `backbone.patch_embed.*`, `backbone.cls_token`, `backbone.mask_token`,
//!   `backbone.pos_embed`;
//! * layer `i + 1`: `backbone.blocks.i.*`;
//! * layer `depth + 1`: everything else — the neck, both heads, and what the backbone keeps
//!   outside its blocks (a shared relative position bias, the unused final norm).
//!
//! `lr_scale = decay^(depth + 1 − layer)`. No weight decay for 1-D parameters and biases; every
//! other tensor is decayed (the constructor's `name in ('pos_embed', 'cls_token')` test compares
//! the full name `backbone.cls_token` with bare names and never matches, so the 3-D `cls_token`
//! and the relative position tables are decayed; the sin-cos `pos_embed` is frozen anyway).

use crate::optim::{ParamGroup, layer_id_under};

/// The layer id of a segmentor parameter (its path in [`super::UperNet`]).
pub fn seg_layer_id(path: &str, depth: usize) -> usize {
    layer_id_under(path, "backbone.", depth)
}

/// The group of a segmentor parameter: `lr_scale = decay^(depth + 1 − layer)`, weight decay
/// `weight_decay` except for 1-D tensors and biases.
pub fn seg_param_group(
    path: &str,
    ndim: usize,
    depth: usize,
    decay: f64,
    weight_decay: f64,
) -> ParamGroup {
    let layer = seg_layer_id(path, depth).min(depth + 1);
    let exempt = ndim <= 1 || path.ends_with(".bias");
    ParamGroup {
        lr_scale: decay.powi((depth + 1 - layer) as i32),
        weight_decay: if exempt { 0.0 } else { weight_decay },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::{UperNet, UperNetConfig};
    use burn::tensor::Device;
    use cae_pretrain::config::{CaeConfig, RelPosBias};
    use cae_pretrain::model::VisionTransformerEncoder;
    use cae_pretrain::model::init::{Init, LinearInit};
    use cae_pretrain::weights::expected_tensors;

    /// Every parameter of a CAE ViT-B UperNet (12 blocks with per-block relative position bias,
    /// as CAE's segmentation backbone), built narrow: names and ranks do not depend on the width.
    #[test]
    fn every_vit_b_parameter_gets_its_layer_scale() {
        let dev = Device::flex();
        let mut enc_cfg = CaeConfig::preset("vit_base_patch16").unwrap().encoder;
        enc_cfg.embed_dim = 16;
        enc_cfg.num_heads = 2;
        enc_cfg.img_size = 32;
        enc_cfg.rel_pos_bias = RelPosBias::PerBlock;
        let encoder =
            VisionTransformerEncoder::new(&enc_cfg, &mut Init::new(0, LinearInit::Xavier, &dev));
        let mut cfg = UperNetConfig::preset("vit_base").unwrap();
        cfg.in_channels = 16;
        cfg.channels = 8;
        cfg.aux.as_mut().unwrap().channels = 8;
        let model = UperNet::new(&cfg, 0, &dev)
            .unwrap()
            .with_backbone(&cfg, encoder)
            .unwrap();
        let depth = 12;
        let decay: f64 = 0.65;
        let params = expected_tensors(&model);
        let (mut per_layer, mut heads) = (vec![0usize; depth + 2], 0usize);
        for (path, shape) in &params {
            let g = seg_param_group(path, shape.len(), depth, decay, 0.05);
            let layer = if path.starts_with("backbone.patch_embed.")
                || path == "backbone.cls_token"
                || path == "backbone.pos_embed"
            {
                0
            } else if let Some(rest) = path.strip_prefix("backbone.blocks.") {
                rest.split('.').next().unwrap().parse::<usize>().unwrap() + 1
            } else {
                assert!(
                    path.starts_with("neck.")
                        || path.starts_with("decode_head.")
                        || path.starts_with("auxiliary_head.")
                        || path.starts_with("backbone.norm."),
                    "unexpected parameter {path}"
                );
                heads += 1;
                depth + 1
            };
            per_layer[layer] += 1;
            let expected = decay.powi((depth + 1 - layer) as i32);
            assert!(
                (g.lr_scale - expected).abs() < 1e-12,
                "{path}: {} vs {expected}",
                g.lr_scale
            );
            let decayed = shape.len() > 1 && !path.ends_with(".bias");
            assert_eq!(g.weight_decay, if decayed { 0.05 } else { 0.0 }, "{path}");
        }
        // Layer 0: patch embedding weight and bias, cls token, pos embed.
        assert_eq!(per_layer[0], 4);
        // Every block holds the same parameters.
        assert!(
            per_layer[1..=depth]
                .iter()
                .all(|&n| n == per_layer[1] && n > 0)
        );
        assert_eq!(heads, per_layer[depth + 1]);
        assert_eq!(
            seg_param_group("backbone.cls_token", 3, depth, decay, 0.05).weight_decay,
            0.05
        );
        assert!(
            (seg_param_group("neck.upsample_4x.0.weight", 4, depth, decay, 0.05).lr_scale - 1.0)
                .abs()
                < 1e-12
        );
        assert!(
            (seg_param_group("backbone.blocks.11.mlp.fc1.weight", 2, depth, decay, 0.05).lr_scale
                - decay)
                .abs()
                < 1e-12
        );
    }
}
