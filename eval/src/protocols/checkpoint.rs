//! Checkpoints of the downstream protocols (`segment`, `detect`): the model's tensors under
//! `model.`, the optimiser's buffers under `optim.`, and one metadata entry `checkpoint` with
//! the [`CheckpointState`] (one entry, so the bytes are stable). Written atomically; the newest
//! two are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use cae_heads::optim::Optimizer;
use cae_pretrain::train::checkpoint::{checkpoint_path, list_checkpoints};
use cae_pretrain::weights::{
    RawTensor, f32_bytes, read_file, tensor_to_f32, write_safetensors_atomic,
};
use serde::{Deserialize, Serialize};

use super::error::{ProtocolError, Result};

/// What a checkpoint holds besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format tag of the protocol.
    pub format: String,
    /// Iterations done.
    pub iter: u64,
    /// Seed of the run.
    pub seed: u64,
    /// The request's identity: a checkpoint only resumes its own request.
    pub request_key: String,
    /// Optimiser step counts per parameter.
    pub optim_steps: BTreeMap<String, u64>,
    /// Sum of the training loss since the last evaluation.
    pub loss_sum: f64,
    /// Its count.
    pub loss_count: u64,
}

/// Writes `model` tensors, the optimiser state and `state` as `dir/checkpoint-<iter>…`.
pub fn save(
    dir: &Path,
    mut tensors: Vec<RawTensor>,
    opt: &Optimizer,
    state: &CheckpointState,
) -> Result<PathBuf> {
    let (buffers, steps) = opt.state_buffers()?;
    for (name, values) in buffers {
        tensors.push((
            format!("optim.{name}"),
            vec![values.len()],
            f32_bytes(&values),
        ));
    }
    let state = CheckpointState {
        optim_steps: steps,
        ..state.clone()
    };
    let meta = std::collections::HashMap::from([(
        "checkpoint".to_string(),
        serde_json::to_string(&state).expect("the state serialises"),
    )]);
    let path = checkpoint_path(dir, state.iter);
    write_safetensors_atomic(&path, &tensors, &meta)?;
    // Keep the newest two.
    let all = list_checkpoints(dir)?;
    if all.len() > 2 {
        for (_, old) in &all[..all.len() - 2] {
            std::fs::remove_file(old).map_err(|e| ProtocolError::Input {
                path: old.clone(),
                message: format!("cannot remove an old checkpoint: {e}"),
            })?;
        }
    }
    Ok(path)
}

/// Reads a checkpoint of `format` written for request `key`: the model through `load_model`
/// (given the file's bytes), the optimiser state into `opt`; returns the state.
pub fn load(
    path: &Path,
    format: &str,
    key: &str,
    opt: &mut Optimizer,
    device: &Device,
    load_model: impl FnOnce(&[u8]) -> Result<()>,
) -> Result<CheckpointState> {
    let bytes = read_file(path)?;
    let bad = |m: String| ProtocolError::Input {
        path: path.to_path_buf(),
        message: m,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
    let state: CheckpointState = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("checkpoint"))
        .ok_or_else(|| bad("not a cae-bench checkpoint (no metadata)".into()))
        .and_then(|s| {
            serde_json::from_str(s).map_err(|e| bad(format!("checkpoint metadata: {e}")))
        })?;
    if state.format != format {
        return Err(bad(format!(
            "checkpoint format `{}`, expected `{format}`",
            state.format
        )));
    }
    if state.request_key != key {
        return Err(bad(
            "this checkpoint belongs to another request (encoder, data, preset, protocol, \
             overrides, seed or device differ); resume with the same arguments, or choose \
             another --out"
                .into(),
        ));
    }
    load_model(&bytes)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
    let mut buffers = BTreeMap::new();
    for name in st.names() {
        if let Some(key) = name.strip_prefix("optim.") {
            let view = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            buffers.insert(
                key.to_string(),
                tensor_to_f32(&view).map_err(|e| bad(format!("{name}: {e}")))?,
            );
        }
    }
    opt.load_state_buffers(buffers, &state.optim_steps, device)?;
    Ok(state)
}
