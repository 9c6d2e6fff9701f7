//! What the iteration-based downstream protocols (`segment`, `detect`) share around their
//! recipes and run folders: `--set NAME=VALUE` on any recipe field, the settings a leaderboard
//! row is keyed by, the refusal to overwrite a run, the request identity, and the record's
//! versions and resumed history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use cae_pretrain::config::{PosEmbed, PosResize};
use cae_pretrain::train::checkpoint::list_checkpoints;
use cae_reports::record::{EncoderInfo, RunRecord, request_key};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::encoder::EncoderSource;
use super::error::{ProtocolError, Result};

/// `recipe` with each `(name, value)` of `set` written into its field of that name: the value
/// as JSON when it parses (numbers, booleans, `[a, b]`, objects), a string otherwise. An unknown
/// name is an error listing the settings.
pub fn apply_set<T: Serialize + DeserializeOwned>(
    recipe: T,
    set: &[(String, String)],
) -> Result<T> {
    if set.is_empty() {
        return Ok(recipe);
    }
    let mut v = serde_json::to_value(&recipe).expect("a recipe serialises");
    let fields = v.as_object_mut().expect("a recipe is an object");
    for (name, value) in set {
        let Some(slot) = fields.get_mut(name) else {
            let mut names: Vec<&str> = fields.keys().map(|s| s.as_str()).collect();
            names.sort();
            return Err(ProtocolError::Config(format!(
                "--set {name}: no such recipe setting (settings: {})",
                names.join(", ")
            )));
        };
        *slot = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
    }
    serde_json::from_value(v).map_err(|e| ProtocolError::Config(format!("--set: {e}")))
}

/// Every field of `recipe` but the evaluation and checkpoint intervals (they do not change the
/// number): the settings a leaderboard row is keyed by.
pub fn settings<T: Serialize>(recipe: &T) -> BTreeMap<String, serde_json::Value> {
    let v = without_defaults(serde_json::to_value(recipe).expect("a recipe serialises"));
    v.as_object()
        .expect("a recipe is an object")
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "eval_every" | "checkpoint_every"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A recipe's (or pretraining config's) JSON without the settings whose value is what every run
/// before them did: f32 `precision`. So f32 records share their settings (leaderboard rows) with
/// the records written before the setting existed, and run folders started then still resume.
pub(crate) fn without_defaults(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = v.as_object_mut()
        && fields.get("precision").and_then(|p| p.as_str()) == Some("f32")
    {
        fields.remove("precision");
    }
    v
}

/// The checkpoints of run folder `out`, after refusing a folder that holds a run already
/// unless `resume`.
pub fn run_folder_checkpoints(out: &Path, resume: bool) -> Result<Vec<(u64, PathBuf)>> {
    let existing = list_checkpoints(&out.join("checkpoints"))?;
    if !resume && (out.join("record.json").exists() || !existing.is_empty()) {
        return Err(ProtocolError::Input {
            path: out.to_path_buf(),
            message: "this run folder holds a run already: pass --resume to continue it, or \
                      choose another --out"
                .into(),
        });
    }
    Ok(existing)
}

/// A request's identity: everything that changes its numbers (seed included: a checkpoint
/// belongs to one seed).
pub fn identity<T: Serialize>(
    protocol: &str,
    recipe: &T,
    encoder: &EncoderInfo,
    fingerprint: &str,
    device: &str,
    seed: u64,
) -> String {
    let recipe = without_defaults(serde_json::to_value(recipe).expect("a recipe serialises"));
    request_key(&serde_json::json!({
        "protocol": protocol,
        "recipe": recipe,
        "encoder": encoder.sha256.clone().unwrap_or_else(|| format!("random:{}", encoder.arch)),
        "data": fingerprint,
        "device": device,
        "seed": seed,
    }))
}

/// Writes this build's versions (`cae-bench`, `burn`) into a new record.
pub fn stamp_versions(record: &mut RunRecord) {
    record
        .versions
        .insert("cae-bench".into(), env!("CARGO_PKG_VERSION").into());
    record
        .versions
        .insert("burn".into(), cae_pretrain::BURN_VERSION.into());
}

/// The encoder's name in error messages: its file, or the random encoder of `preset`.
pub fn encoder_name(source: &EncoderSource, preset: &str) -> String {
    match source {
        EncoderSource::File(p) => p.display().to_string(),
        EncoderSource::Random => format!("the random `{preset}` encoder"),
    }
}

/// A batch of CHW images of one size `[h, w]` as `[B, 3, h, w]`.
pub fn images_tensor(images: Vec<Vec<f32>>, side: [usize; 2], device: &Device) -> Tensor<4> {
    let b = images.len();
    let flat: Vec<f32> = images.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(flat, [b, 3, side[0], side[1]]), device)
}

/// Adds the versions to a new record and, when resuming from iteration `start`, the history of
/// the record in `out` up to it.
pub fn finish_record(record: &mut RunRecord, out: &Path, start: u64) {
    stamp_versions(record);
    if start > 0
        && let Ok(text) = std::fs::read_to_string(out.join("record.json"))
        && let Ok(old) = serde_json::from_str::<RunRecord>(&text)
    {
        record.per_epoch = old
            .per_epoch
            .into_iter()
            .filter(|e| e.epoch <= start)
            .collect();
    }
}

/// What happened to the encoder's position table on its way from pretraining's `built_for` px to
/// the protocol's `now` px input (the record's `position_table` detail).
pub fn position_table_note(
    pos: PosEmbed,
    resize: PosResize,
    built_for: usize,
    now: usize,
) -> String {
    if built_for == now {
        return format!("as built ({built_for} px)");
    }
    let how = match (pos, resize) {
        (PosEmbed::Learned, _) => "learned table resampled bicubically",
        (PosEmbed::SinCos, PosResize::Interpolate) => {
            "pretrained sin-cos table resampled bicubically (cls slot kept, frozen)"
        }
        (PosEmbed::SinCos, PosResize::Rebuild) => "sin-cos table rebuilt (frozen)",
        (PosEmbed::None, _) => "none; nothing to move",
    };
    format!("built for {built_for} px, {how} for {now} px")
}

/// What `model` trains under `opt`, per top-level component (the record's `trainable`): each
/// float parameter that takes a gradient is trainable with the lr scale and decay its optimiser
/// group gives; BatchNorm's running statistics are buffers; everything else is frozen.
pub fn trainable_groups<M: burn::module::Module>(
    model: &M,
    opt: &cae_heads::optim::Optimizer,
) -> Vec<cae_reports::record::TrainableGroup> {
    use cae_reports::record::TrainableGroup;
    let widen =
        |r: Option<(f64, f64)>, x: f64| Some(r.map_or((x, x), |(a, b)| (a.min(x), b.max(x))));
    let mut groups: Vec<TrainableGroup> = Vec::new();
    for p in cae_pretrain::train::parameters(model) {
        let name = p.path.split('.').next().unwrap_or("").to_string();
        let at = match groups.iter().position(|g| g.group == name) {
            Some(i) => i,
            None => {
                groups.push(TrainableGroup {
                    group: name,
                    trainable: 0,
                    frozen: 0,
                    buffers: 0,
                    lr_scale: None,
                    weight_decay: None,
                    frozen_params: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        let n = p.numel as u64;
        let leaf = p.path.rsplit('.').next().unwrap_or("");
        if matches!(leaf, "running_mean" | "running_var") {
            g.buffers += n;
        } else if p.trainable {
            let pg = opt.group(&p.path, p.rank);
            g.trainable += n;
            g.lr_scale = widen(g.lr_scale, pg.lr_scale);
            g.weight_decay = widen(g.weight_decay, pg.weight_decay);
        } else {
            g.frozen += n;
            g.frozen_params.push(p.path);
        }
    }
    // A wholly frozen component is named once.
    for g in &mut groups {
        if g.trainable == 0 && g.frozen > 0 {
            g.frozen_params = vec![format!("{}.*", g.group)];
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use cae_pretrain::autocast::Precision;

    #[derive(Serialize)]
    struct Before {
        iters: u64,
        eval_every: u64,
    }

    #[derive(Serialize)]
    struct After {
        iters: u64,
        eval_every: u64,
        precision: Precision,
    }

    fn key<T: Serialize>(recipe: &T) -> String {
        let info = EncoderInfo {
            label: "e".into(),
            path: None,
            sha256: Some("ab".into()),
            method: "cae".into(),
            arch: "test".into(),
            pretrain_steps: None,
        };
        identity("p", recipe, &info, "data", "cpu", 0)
    }

    /// An f32 recipe keeps the settings and the identity of the same recipe from before
    /// `precision` existed (its leaderboard rows and resumable run folders); bf16 is a setting.
    #[test]
    fn f32_precision_leaves_settings_and_identity_as_before() {
        let before = Before {
            iters: 5,
            eval_every: 2,
        };
        let after = |precision| After {
            iters: 5,
            eval_every: 2,
            precision,
        };
        assert_eq!(settings(&after(Precision::F32)), settings(&before));
        assert_eq!(key(&after(Precision::F32)), key(&before));
        let bf16 = settings(&after(Precision::Bf16));
        assert_eq!(bf16["precision"], "bf16");
        assert_eq!(bf16.len(), settings(&before).len() + 1);
        assert_ne!(key(&after(Precision::Bf16)), key(&before));
    }
}
