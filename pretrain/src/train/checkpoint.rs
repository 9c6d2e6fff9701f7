//! Training checkpoints: `RUN/checkpoints/ckpt-<step>.safetensors`.
//!
//! One file holds the model (`model.*`, official names), the AdamW moments (`optim.<path>.*`), and
//! in its metadata the step, the optimizer's step count and the run config. Nothing else is
//! needed to resume exactly: data order, augmentation, masks and drop path are pure functions of
//! `(seed, step)`. Files are written to a temporary name and renamed, so a listed checkpoint is
//! always complete; the oldest are deleted once more than `keep` exist.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::PretrainError;
use crate::optim::AdamW;
use crate::weights::{
    LoadOptions, collect_tensors, f32_bytes, load_safetensors_bytes, read_file, tensor_to_f32,
    write_safetensors_atomic,
};

/// Metadata key of the checkpoint state.
pub const STATE_KEY: &str = "checkpoint";
/// Metadata key of the run config (TOML).
pub const RUN_CONFIG_KEY: &str = "run_config";
/// Format tag.
pub const FORMAT: &str = "cae-bench-checkpoint-v1";

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format tag.
    pub format: String,
    /// Optimizer steps completed.
    pub step: u64,
    /// AdamW's bias-correction count.
    pub optim_steps: u64,
    /// The run's seed.
    pub seed: u64,
}

/// The file of the checkpoint after `step` steps.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("ckpt-{step:08}.safetensors"))
}

fn step_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("ckpt-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Every complete checkpoint in `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PretrainError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PretrainError::io(dir, e))? {
        let path = entry.map_err(|e| PretrainError::io(dir, e))?.path();
        if let Some(step) = step_of(&path) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint, if any. Checkpoints are written to a temporary name and renamed, so an
/// unreadable one is damaged, not half-written: it is an error naming the file (delete it to
/// resume from the one before), never silently skipped.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>, PretrainError> {
    let Some((step, path)) = list_checkpoints(dir)?.pop() else {
        return Ok(None);
    };
    match read_state(&path) {
        Ok(_) => Ok(Some((step, path))),
        Err(e) => Err(PretrainError::Input(format!(
            "{e}; the newest checkpoint is damaged (checkpoints are written atomically): \
             delete {} to resume from the one before",
            path.display()
        ))),
    }
}

/// Reads a checkpoint's state and run config without loading tensors.
pub fn read_state(path: &Path) -> Result<(CheckpointState, String), PretrainError> {
    let meta = crate::weights::read_metadata(path)?;
    let bad = |m: &str| PretrainError::Safetensors {
        path: path.to_path_buf(),
        message: m.to_string(),
    };
    let state: CheckpointState = serde_json::from_str(
        meta.get(STATE_KEY)
            .ok_or_else(|| bad("not a cae-bench checkpoint (no `checkpoint` metadata)"))?,
    )
    .map_err(|e| bad(&format!("checkpoint metadata: {e}")))?;
    if state.format != FORMAT {
        return Err(bad(&format!(
            "unknown checkpoint format `{}`",
            state.format
        )));
    }
    let run = meta
        .get(RUN_CONFIG_KEY)
        .cloned()
        .ok_or_else(|| bad("no `run_config` metadata"))?;
    Ok((state, run))
}

/// Writes the checkpoint of `step` and prunes old ones beyond `keep`.
pub fn save_checkpoint<M: Module + ModuleSnapshot>(
    dir: &Path,
    state: &CheckpointState,
    run_config_toml: &str,
    model: &M,
    optim: &AdamW,
    keep: usize,
) -> Result<PathBuf, PretrainError> {
    let mut tensors = collect_tensors(model, None, "model.")?;
    for (name, shape, values) in optim.state_tensors()? {
        tensors.push((format!("optim.{name}"), shape, f32_bytes(&values)));
    }
    let metadata = HashMap::from([
        (
            STATE_KEY.to_string(),
            serde_json::to_string(state).expect("the state serialises"),
        ),
        (RUN_CONFIG_KEY.to_string(), run_config_toml.to_string()),
    ]);
    let path = checkpoint_path(dir, state.step);
    write_safetensors_atomic(&path, &tensors, &metadata)?;
    let all = list_checkpoints(dir)?;
    if all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_file(old).map_err(|e| PretrainError::io(old, e))?;
        }
    }
    Ok(path)
}

/// Loads a checkpoint into `model` and `optim`; returns its state.
pub fn load_checkpoint<M: Module + ModuleSnapshot>(
    path: &Path,
    model: &mut M,
    optim: &mut AdamW,
    device: &Device,
) -> Result<CheckpointState, PretrainError> {
    let (state, _) = read_state(path)?;
    let bytes = read_file(path)?;
    let opts = LoadOptions {
        prefix: Some("model."),
        ..Default::default()
    };
    load_safetensors_bytes(model, &bytes, path, &opts)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| PretrainError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut moments = BTreeMap::new();
    for name in st.names() {
        let Some(key) = name.strip_prefix("optim.") else {
            continue;
        };
        let view = st.tensor(name).map_err(|e| PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: format!("{name}: {e}"),
        })?;
        let values = tensor_to_f32(&view).map_err(|e| PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: format!("{name}: {e}"),
        })?;
        moments.insert(key.to_string(), values);
    }
    optim.load_state(state.optim_steps, moments, device)?;
    Ok(state)
}
