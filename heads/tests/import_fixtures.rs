//! `cae_pretrain::import` on tiny checkpoints made by `scripts/make_import_fixtures.py` from timm
//! models (CAE, BEiT and MAE / timm ViT layouts): each imported encoder must give the features
//! timm computed, within 1e-4, and survive the round trip through an encoder file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use cae_pretrain::config::{PosEmbed, QkvBias, RelPosBias};
use cae_pretrain::encoder_file::load_encoder;
use cae_pretrain::import::{ImportOptions, ImportSource, plan_import};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import")
}

/// `(input [2, 3, 16, 16], features [2, 17, 16], num_heads)` of a fixture.
fn expected(name: &str, dev: &Device) -> (Tensor<4>, Vec<f32>, Vec<usize>, usize) {
    let bytes = std::fs::read(fixtures().join(format!("{name}.expected.safetensors"))).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let heads: usize = meta.metadata().as_ref().unwrap()["num_heads"]
        .parse()
        .unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| {
        let v = st.tensor(n).unwrap();
        (
            cae_pretrain::weights::tensor_to_f32(&v).unwrap(),
            v.shape().to_vec(),
        )
    };
    let (x, xs) = f32s("input");
    let (f, fs) = f32s("features");
    let x = Tensor::<4>::from_data(TensorData::new(x, [xs[0], xs[1], xs[2], xs[3]]), dev);
    (x, f, fs, heads)
}

fn features(enc: &VisionTransformerEncoder, x: Tensor<4>) -> Vec<f32> {
    enc.forward_features(x, &mut ForwardCtx::eval())
        .try_into_vec_as::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Imports `file` as `source`, checks the features, writes and re-reads the encoder file.
fn check(file: &str, source: ImportSource) -> cae_pretrain::import::ImportPlan {
    let dev = Device::flex();
    let name = file.split('.').next().unwrap();
    let (x, want, shape, heads) = expected(name, &dev);
    let opts = ImportOptions {
        num_heads: Some(heads),
        ..Default::default()
    };
    let plan = plan_import(&fixtures().join(file), source, &opts).unwrap();
    assert!(
        plan.missing.is_empty(),
        "{file}: missing {:?}",
        plan.missing
    );
    assert!(
        plan.unexpected.is_empty(),
        "{file}: unexpected {:?}",
        plan.unexpected
    );
    let enc = plan.build(false, &dev).unwrap();
    let got = features(&enc, x.clone());
    assert_eq!(got.len(), shape.iter().product::<usize>());
    let d = max_diff(&got, &want);
    assert!(d < 1e-4, "{file}: features differ from timm's by {d}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("enc.safetensors");
    plan.write(&out, false, &HashMap::new()).unwrap();
    let back = load_encoder(&out, None, &dev).unwrap();
    assert_eq!(back.method(), source.name());
    assert_eq!(back.config.encoder, plan.config.encoder);
    assert_eq!(
        features(&back.encoder, x),
        got,
        "{file}: the encoder file changes nothing"
    );
    plan
}

#[test]
fn cae_checkpoint_with_its_pretraining_extras() {
    let plan = check("cae_pretrain.pth", ImportSource::Cae);
    let e = &plan.config.encoder;
    assert_eq!(plan.unwrapped.as_deref(), Some("model"));
    assert_eq!(
        (e.qkv_bias, e.pos_embed, e.rel_pos_bias),
        (QkvBias::QV, PosEmbed::SinCos, RelPosBias::None)
    );
    assert!(e.init_values > 0.0);
    assert_eq!(
        (e.embed_dim, e.depth, e.num_heads, e.patch_size, e.img_size),
        (16, 2, 2, 4, 16)
    );
    for k in [
        "mask_token",
        "rd_pos_embed",
        "regresser.norm.weight",
        "decoder.norm.weight",
    ] {
        assert!(
            plan.dropped.contains(&k.to_string()),
            "{k} not dropped: {:?}",
            plan.dropped
        );
    }
}

#[test]
fn beit_checkpoint_with_per_block_relative_position_bias() {
    let plan = check("beit_rel.pth", ImportSource::Beit);
    let e = &plan.config.encoder;
    assert_eq!(
        (e.qkv_bias, e.pos_embed, e.rel_pos_bias),
        (QkvBias::QV, PosEmbed::None, RelPosBias::PerBlock)
    );
    // The float tensors are read; the int64 index buffers never reach the plan.
    assert!(
        plan.dropped
            .iter()
            .all(|k| !k.contains("relative_position_index"))
    );
    assert!(plan.dropped.contains(&"lm_head.weight".to_string()));
}

#[test]
fn beit_with_a_shared_table_infers_heads_and_size_from_it() {
    let dev = Device::flex();
    // No --num-heads: the shared table [(2·4−1)² + 3, 2] gives 2 heads and a 4×4 grid.
    let plan = plan_import(
        &fixtures().join("beit_shared.safetensors"),
        ImportSource::Beit,
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(plan.config.encoder.num_heads, 2);
    assert_eq!(plan.config.encoder.rel_pos_bias, RelPosBias::Shared);
    assert_eq!(plan.config.encoder.pos_embed, PosEmbed::Learned);
    assert!(plan.dropped.iter().any(|k| k.starts_with("head.")));
    let (x, want, _, _) = expected("beit_shared", &dev);
    let enc = plan.build(false, &dev).unwrap();
    assert!(max_diff(&features(&enc, x), &want) < 1e-4);
    check("beit_shared.safetensors", ImportSource::Beit);
}

#[test]
fn timm_vit_with_fused_bias_learned_positions_and_layer_scale() {
    let plan = check("vit_learned.pth", ImportSource::Mae);
    let e = &plan.config.encoder;
    assert_eq!(
        (e.qkv_bias, e.pos_embed),
        (QkvBias::Fused, PosEmbed::Learned)
    );
    assert!(e.init_values > 0.0, "ls1.gamma became gamma_1");
    assert!(
        plan.mapped
            .iter()
            .any(|(from, to)| from == "blocks.0.ls1.gamma" && to == "blocks.0.gamma_1")
    );
}

#[test]
fn mae_checkpoint_with_fixed_positions_decoder_and_fc_norm() {
    let plan = check("mae_fixed.safetensors", ImportSource::Mae);
    let e = &plan.config.encoder;
    // MAE's fixed table puts the column first, so it is not our sin-cos layout: kept as a table.
    assert_eq!(
        (e.qkv_bias, e.pos_embed, e.init_values),
        (QkvBias::Fused, PosEmbed::Learned, 0.0)
    );
    assert!(plan.notes.iter().any(|n| n.contains("fc_norm")));
    for k in ["decoder_embed.weight", "decoder_pos_embed", "mask_token"] {
        assert!(plan.dropped.contains(&k.to_string()), "{k}");
    }
}

#[test]
fn a_wrong_layout_is_refused_with_the_file_named() {
    // A BEiT checkpoint read as CAE has no `encoder.*` keys at all.
    let err = plan_import(
        &fixtures().join("beit_rel.pth"),
        ImportSource::Cae,
        &ImportOptions {
            num_heads: Some(2),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("beit_rel.pth") && err.contains("cls_token"),
        "{err}"
    );
    // Too many heads for the width is caught when the config is validated.
    let err = plan_import(
        &fixtures().join("vit_learned.pth"),
        ImportSource::Mae,
        &ImportOptions {
            num_heads: Some(3),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("num_heads"), "{err}");
}
