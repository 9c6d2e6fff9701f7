//! What each protocol trains, checked through its real code path (the protocol's run function or
//! the command line) on tiny recipes, in the weights a run leaves behind: after a few iterations
//! the backbone of every fine-tuning protocol (UperNet, Mask R-CNN, the fine-tune probe) and the
//! encoder of pretraining differ from where they started and have optimiser moments; the fixed
//! sin-cos position table stays bit-identical to the pretrained table resampled to the input's
//! grid; the frozen protocol (the linear segmentation head) leaves the backbone bit-identical;
//! and each record lists per component what trained.
//!
//! burn 0.22 leaves a module loaded on the plain device and forked to the autodiff one without
//! gradients: every test here failed before the protocols went through
//! `cae_pretrain::train::on_autodiff`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use cae_bench::protocols::ade20k::{SegProtocol, SegRequest, run_segment};
use cae_bench::protocols::classification::{
    FINETUNED_FILE, ProbeOverrides, ProbeRequest, Protocol, run_probe,
};
use cae_bench::protocols::coco::{DetRequest, run_detect};
use cae_bench::protocols::encoder::EncoderSource;
use cae_pretrain::config::CaeConfig;
use cae_pretrain::model::pos_embed::resample_with_cls;
use cae_pretrain::train::checkpoint::list_checkpoints;
use common::{cae_bench, small_world};

type Tensors = BTreeMap<String, Vec<f32>>;

/// Every tensor of a safetensors file, as f32.
fn tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.names()
        .into_iter()
        .map(|n| {
            let v = cae_pretrain::weights::tensor_to_f32(&st.tensor(n).unwrap()).unwrap();
            (n.to_string(), v)
        })
        .collect()
}

/// The newest checkpoint of a run folder.
fn last_checkpoint(run: &Path) -> PathBuf {
    list_checkpoints(&run.join("checkpoints"))
        .unwrap()
        .pop()
        .expect("the run wrote a checkpoint")
        .1
}

fn record(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("record.json")).unwrap()).unwrap()
}

/// An encoder file of the `test` architecture built for `img` px (sin-cos table), and its config.
fn encoder_file(dir: &Path, img: usize) -> (PathBuf, CaeConfig) {
    let mut cfg = CaeConfig::preset("test").unwrap();
    cfg.encoder.img_size = img;
    let enc = cae_pretrain::encoder_file::random_encoder(&cfg, 7, &Device::flex());
    let file = dir.join(format!("enc{img}.safetensors"));
    cae_pretrain::encoder_file::save_encoder(&enc, &cfg, &file, &HashMap::new()).unwrap();
    (file, cfg)
}

/// The encoder file's tensors by their path inside the encoder (`blocks.0.attn.qkv.weight`).
fn encoder_tensors(file: &Path) -> Tensors {
    tensors(file)
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("encoder.").unwrap_or(&k).to_string(), v))
        .collect()
}

/// The optimiser's path of a checkpoint tensor (burn's LayerNorm is `gamma` / `beta`, the
/// checkpoint's `weight` / `bias`).
fn optim_path(key: &str) -> String {
    let mut parts: Vec<&str> = key.split('.').collect();
    let n = parts.len();
    if n >= 2 && parts[n - 2].contains("norm") {
        parts[n - 1] = match parts[n - 1] {
            "weight" => "gamma",
            "bias" => "beta",
            other => other,
        };
    }
    parts.join(".")
}

/// Which encoder tensors are expected to train in a protocol whose heads read the blocks'
/// unnormed outputs (UperNet, Mask R-CNN, the mean-pooled fine-tune): all but the position table
/// and the final LayerNorm, which those heads never use (so it gets no gradient, as in CAE's code).
fn expect_moved(key: &str) -> bool {
    key != "pos_embed" && !key.starts_with("norm.")
}

/// Checks that every encoder tensor of `start` that should train differs in `now` (under
/// `prefix`) and has optimiser moments in `ckpt` (under `optim_prefix`), and that the rest is
/// bit-identical; returns how many moved.
fn check_backbone_trained(
    start: &Tensors,
    now: &Tensors,
    prefix: &str,
    moments: Option<(&Tensors, &str)>,
) -> usize {
    let mut moved = 0;
    for (key, before) in start {
        if key == "pos_embed" {
            continue;
        }
        let after = now
            .get(&format!("{prefix}{key}"))
            .unwrap_or_else(|| panic!("{prefix}{key} is not in the trained weights"));
        if expect_moved(key) {
            assert_ne!(
                after, before,
                "{key} did not change: the backbone was not trained"
            );
            moved += 1;
            if let Some((ckpt, optim_prefix)) = moments {
                let m = format!("{optim_prefix}{}.0", optim_path(key));
                let m = ckpt
                    .get(&m)
                    .unwrap_or_else(|| panic!("{key} has no optimiser moment {m}"));
                assert!(
                    m.iter().any(|x| *x != 0.0),
                    "{key}: an all-zero first moment"
                );
            }
        } else {
            assert_eq!(
                after, before,
                "{key} is unused by the heads and must not change"
            );
        }
    }
    moved
}

/// The record's entry for `group`.
fn group<'a>(rec: &'a serde_json::Value, group: &str) -> &'a serde_json::Value {
    rec["trainable"]
        .as_array()
        .expect("the record lists what trained")
        .iter()
        .find(|g| g["group"] == group)
        .unwrap_or_else(|| panic!("no `{group}` group in {}", rec["trainable"]))
}

fn numel(t: &Tensors) -> u64 {
    t.values().map(|v| v.len() as u64).sum()
}

/// The trainable size of a fine-tuned backbone whose weights are `trained` under `prefix`: the
/// encoder file's parameters less its frozen position table, plus the relative position tables
/// the protocol adds (zero-initialised, trained).
fn trainable_backbone(start: &Tensors, trained: &Tensors, prefix: &str) -> u64 {
    let rel: u64 = trained
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.contains("relative_position"))
        .map(|(_, v)| v.len() as u64)
        .sum();
    numel(start) - start["pos_embed"].len() as u64 + rel
}

fn seg_request(data: &Path, out: &Path, protocol: SegProtocol, file: &Path) -> SegRequest {
    let mut r = SegRequest::new(EncoderSource::File(file.to_path_buf()), data, out);
    r.preset = "test".into();
    r.protocol = protocol;
    r.seed = 1;
    r
}

#[test]
fn upernet_fine_tunes_the_backbone_and_keeps_the_resampled_position_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_world(dir.path()).join("ade");
    // Built for 32 px (an 8×8 grid); the `test` preset trains on 16-px crops (4×4).
    let (file, cfg) = encoder_file(dir.path(), 32);
    let start = encoder_tensors(&file);
    let out = dir.path().join("upernet");
    let o = run_segment(&seg_request(&data, &out, SegProtocol::Upernet, &file)).unwrap();
    assert!(o.complete);
    let ckpt = tensors(&last_checkpoint(&out));
    let moved = check_backbone_trained(
        &start,
        &ckpt,
        "model.backbone.",
        Some((&ckpt, "optim.backbone.")),
    );
    assert!(moved >= 10, "{moved}");
    // The fixed sin-cos table: the pretrained one resampled bicubically to 4×4, bit for bit.
    let d = cfg.encoder.embed_dim;
    let want = resample_with_cls(&start["pos_embed"], (8, 8), d, (4, 4));
    assert_eq!(ckpt["model.backbone.pos_embed"], want);
    assert!(!ckpt.contains_key("optim.backbone.pos_embed.0"));
    // The record says so: the backbone trains all but the table, with layer-decayed lr scales.
    let rec = record(&out);
    let pos = want.len() as u64;
    let bb = group(&rec, "backbone");
    assert!(
        ckpt.keys()
            .any(|k| k.starts_with("model.backbone.") && k.contains("relative_position")),
        "CAE's segmentation backbone adds relative position tables"
    );
    assert_eq!(
        bb["trainable"],
        trainable_backbone(&start, &ckpt, "model.backbone.")
    );
    assert_eq!(bb["frozen"], pos);
    assert_eq!(
        bb["frozen_params"],
        serde_json::json!(["backbone.pos_embed"])
    );
    let (lo, hi) = (
        bb["lr_scale"][0].as_f64().unwrap(),
        bb["lr_scale"][1].as_f64().unwrap(),
    );
    assert!(
        0.0 < lo && lo < hi && hi <= 1.0,
        "layer decay: [{lo}, {hi}]"
    );
    for head in ["neck", "decode_head", "auxiliary_head"] {
        let g = group(&rec, head);
        assert!(
            g["trainable"].as_u64().unwrap() > 0 && g["frozen"] == 0,
            "{g}"
        );
    }
    assert!(
        group(&rec, "decode_head")["buffers"].as_u64().unwrap() > 0,
        "BatchNorm statistics are buffers"
    );
    assert!(
        rec["protocol"]["details"]["position_table"]
            .as_str()
            .unwrap()
            .contains("resampled bicubically"),
        "{}",
        rec["protocol"]["details"]
    );
}

#[test]
fn the_linear_segmentation_head_leaves_the_backbone_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_world(dir.path()).join("ade");
    let (file, _) = encoder_file(dir.path(), 16);
    let start = encoder_tensors(&file);
    let out = dir.path().join("linear");
    assert!(
        run_segment(&seg_request(&data, &out, SegProtocol::Linear, &file))
            .unwrap()
            .complete
    );
    let ckpt = tensors(&last_checkpoint(&out));
    for (key, before) in &start {
        assert_eq!(&ckpt[&format!("model.backbone.{key}")], before, "{key}");
    }
    assert!(!ckpt.keys().any(|k| k.starts_with("optim.backbone.")));
    assert!(ckpt.keys().any(|k| k.starts_with("optim.decode_head.")));
    let rec = record(&out);
    let bb = group(&rec, "backbone");
    assert_eq!(bb["trainable"], 0);
    assert_eq!(bb["frozen"], numel(&start));
    assert_eq!(bb["frozen_params"], serde_json::json!(["backbone.*"]));
    assert!(bb["lr_scale"].is_null());
}

#[test]
fn mask_rcnn_fine_tunes_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_world(dir.path()).join("coco");
    // The `test` recipe's images are 32 px; an encoder built for 16 px keeps its 4×4 table,
    // which each batch resamples to its 8×8 grid (CAE's per-batch rule), never trained.
    let (file, cfg) = encoder_file(dir.path(), 16);
    let start = encoder_tensors(&file);
    let out = dir.path().join("det");
    let mut req = DetRequest::new(EncoderSource::File(file), &data, &out);
    req.preset = "test".into();
    req.seed = 1;
    assert!(run_detect(&req).unwrap().complete);
    let ckpt = tensors(&last_checkpoint(&out));
    let moved = check_backbone_trained(
        &start,
        &ckpt,
        "model.backbone.",
        Some((&ckpt, "optim.backbone.")),
    );
    assert!(moved >= 10, "{moved}");
    let want = start["pos_embed"].clone();
    assert_eq!(ckpt["model.backbone.pos_embed"], want);
    assert_eq!(want.len(), 17 * cfg.encoder.embed_dim);
    let rec = record(&out);
    let bb = group(&rec, "backbone");
    assert_eq!(bb["frozen"], want.len() as u64);
    assert_eq!(
        bb["frozen_params"],
        serde_json::json!(["backbone.pos_embed"])
    );
    assert_eq!(
        bb["trainable"],
        trainable_backbone(&start, &ckpt, "model.backbone.")
    );
    for head in ["neck", "rpn_head", "roi_head"] {
        assert!(group(&rec, head)["trainable"].as_u64().unwrap() > 0);
    }
}

#[test]
fn the_finetune_probe_fine_tunes_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_world(dir.path()).join("imagefolder");
    let (file, _) = encoder_file(dir.path(), 16);
    let start = encoder_tensors(&file);
    let out = dir.path().join("ft");
    let mut req = ProbeRequest::new(EncoderSource::File(file), &data, Protocol::Finetune);
    req.seed = 1;
    req.out = Some(out.clone());
    req.save_model = true;
    req.overrides = ProbeOverrides {
        epochs: Some(2),
        batch_size: Some(8),
        ..ProbeOverrides::default()
    };
    run_probe(&req).unwrap();
    let tuned = tensors(&out.join(FINETUNED_FILE));
    let moved = check_backbone_trained(&start, &tuned, "encoder.", None);
    assert!(moved >= 10, "{moved}");
    assert_eq!(tuned["encoder.pos_embed"], start["pos_embed"]);
    let rec = record(&out);
    let enc = group(&rec, "encoder");
    assert_eq!(
        enc["trainable"],
        trainable_backbone(&start, &tuned, "encoder.")
    );
    assert_eq!(
        enc["frozen_params"],
        serde_json::json!(["encoder.pos_embed"])
    );
    assert!(group(&rec, "head")["trainable"].as_u64().unwrap() > 0);
}

#[test]
fn pretraining_trains_every_encoder_weight_but_the_position_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_world(dir.path()).join("imagefolder/train");
    let out = dir.path().join("pre");
    let run = cae_bench(&[
        "pretrain",
        "--preset",
        "test",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "8",
        "--seed",
        "3",
        "--no-progress",
    ]);
    assert!(run.ok, "{}", run.stderr);
    // The starting point: the same model drawn from the same seed.
    let cfg = CaeConfig::preset("test").unwrap();
    let init = cae_pretrain::model::ContextAutoencoder::new(&cfg, 3, &Device::flex());
    let init_file = dir.path().join("init.safetensors");
    cae_pretrain::weights::save_safetensors(
        &init,
        &init_file,
        Some(r"^encoder\."),
        &HashMap::new(),
    )
    .unwrap();
    let start = encoder_tensors(&init_file);
    let ckpt = tensors(&last_checkpoint(&out));
    assert_eq!(
        start.len(),
        ckpt.keys()
            .filter(|k| k.starts_with("model.encoder."))
            .count()
    );
    for (key, before) in &start {
        let after = &ckpt[&format!("model.encoder.{key}")];
        if key == "pos_embed" {
            assert_eq!(after, before, "the sin-cos table is fixed");
            continue;
        }
        // Pretraining uses the final norm (the regressor reads the normed encoder output).
        assert_ne!(after, before, "{key} did not change");
        let m = format!("optim.encoder.{}.exp_avg", optim_path(key));
        assert!(ckpt.contains_key(&m), "{key} has no optimiser moment {m}");
    }
}
