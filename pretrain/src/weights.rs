//! Weights I/O in safetensors with the official checkpoint key names.
//!
//! The module trees of this crate are named like the official PyTorch state dicts
//! (`encoder.blocks.0.attn.qkv.weight`, `regresser.regressor_blocks.1.norm1_q.bias`, …), so official
//! weights load without a remapping table. burn-store does the conversion between burn's layout and
//! PyTorch's (Linear weights are transposed; LayerNorm `gamma`/`beta` are `weight`/`bias`).
//!
//! Loading validates the whole file before touching the model: every tensor whose shape differs
//! from the model's is reported with the key and both shapes (in PyTorch layout), and missing and
//! unexpected keys are listed. Writing goes to a temporary file that is renamed into place, so a
//! crash never leaves a half-written checkpoint under the final name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PathFilter, PyTorchToBurnAdapter, bridge};
use burn::tensor::TensorData;
use regex::Regex;
use safetensors::{Dtype, SafeTensors};

use crate::error::{CheckpointMismatch, PretrainError, ShapeMismatch};

/// How file keys map onto a module.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Only keys starting with this prefix are considered, with the prefix removed
    /// (e.g. `"state."` for the oracle files).
    pub prefix: Option<&'a str>,
    /// Regexes of (prefix-stripped) file keys to skip silently: buffers we recompute
    /// (`relative_position_index`) or copies we do not keep (`alignment_encoder.*`).
    pub ignore: &'a [&'a str],
    /// Maps a file key to this module's key, after prefix stripping.
    pub rename: Option<&'a dyn Fn(&str) -> String>,
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Keys applied to the model.
    pub applied: Vec<String>,
    /// File keys skipped by [`LoadOptions::ignore`].
    pub ignored: Vec<String>,
}

/// The tensors of a module in official naming and PyTorch layout: key → shape.
pub fn expected_tensors<M: Module + ModuleSnapshot>(model: &M) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect()
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, PretrainError> {
    std::fs::read(path).map_err(|e| PretrainError::io(path, e))
}

/// The `__metadata__` of a safetensors file.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, PretrainError> {
    let bytes = read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| PretrainError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Converts a safetensors tensor to f32 values (f32, f16, bf16 and f64 are accepted).
pub fn tensor_to_f32(view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, String> {
    let data = view.data();
    let out = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => return Err(format!("dtype {other:?} is not a float type")),
    };
    Ok(out)
}

/// Converts an integer safetensors tensor to i64 values.
pub fn tensor_to_i64(view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<i64>, String> {
    let data = view.data();
    let out = match view.dtype() {
        Dtype::I64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        Dtype::I32 => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
            .collect(),
        Dtype::U8 => data.iter().map(|&v| v as i64).collect(),
        Dtype::BOOL => data.iter().map(|&v| (v != 0) as i64).collect(),
        other => return Err(format!("dtype {other:?} is not an integer type")),
    };
    Ok(out)
}

/// Loads official-key weights from the safetensors file at `path` into `model`.
///
/// Nothing is applied unless every model tensor is present with the right shape and no file key
/// is left unexplained; otherwise the error lists every problem.
pub fn load_safetensors<M: Module + ModuleSnapshot>(
    model: &mut M,
    path: &Path,
    opts: &LoadOptions<'_>,
) -> Result<LoadReport, PretrainError> {
    let bytes = read_file(path)?;
    load_safetensors_bytes(model, &bytes, path, opts)
}

/// [`load_safetensors`] on bytes already read (`path` names them in errors).
pub fn load_safetensors_bytes<M: Module + ModuleSnapshot>(
    model: &mut M,
    bytes: &[u8],
    path: &Path,
    opts: &LoadOptions<'_>,
) -> Result<LoadReport, PretrainError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| PretrainError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let ignore: Vec<Regex> = opts
        .ignore
        .iter()
        .map(|p| Regex::new(p).expect("ignore patterns are constant, valid regexes"))
        .collect();
    let expected = expected_tensors(model);
    let mut mismatch = CheckpointMismatch::default();
    let mut report = LoadReport::default();
    let mut tensors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for file_key in names {
        let Some(stripped) = (match opts.prefix {
            Some(p) => file_key.strip_prefix(p),
            None => Some(file_key),
        }) else {
            continue;
        };
        if ignore.iter().any(|r| r.is_match(stripped)) {
            report.ignored.push(stripped.to_string());
            continue;
        }
        let key = match opts.rename {
            Some(f) => f(stripped),
            None => stripped.to_string(),
        };
        let Some(shape) = expected.get(&key) else {
            mismatch.unexpected.push(stripped.to_string());
            continue;
        };
        seen.insert(key.clone());
        let view = st
            .tensor(file_key)
            .map_err(|e| PretrainError::Safetensors {
                path: path.to_path_buf(),
                message: format!("{file_key}: {e}"),
            })?;
        if view.shape() != shape.as_slice() {
            mismatch.shape_mismatches.push(ShapeMismatch {
                key: stripped.to_string(),
                expected: shape.clone(),
                found: view.shape().to_vec(),
            });
            continue;
        }
        match tensor_to_f32(&view) {
            Ok(values) => tensors.push(bridge::from_data(
                TensorData::new(values, shape.clone()),
                key,
                None,
            )),
            Err(e) => mismatch.other.push(format!("{stripped}: {e}")),
        }
    }
    mismatch.missing = expected
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    if !mismatch.is_empty() {
        return Err(PretrainError::CheckpointMismatch {
            path: path.to_path_buf(),
            mismatch: Box::new(mismatch),
        });
    }
    let result = model.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let mut other: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        other.extend(
            result
                .missing
                .iter()
                .map(|(p, _)| format!("{p}: not applied")),
        );
        return Err(PretrainError::CheckpointMismatch {
            path: path.to_path_buf(),
            mismatch: Box::new(CheckpointMismatch {
                other,
                ..Default::default()
            }),
        });
    }
    report.applied = result.applied;
    Ok(report)
}

/// Writes `model`'s tensors (official names, PyTorch layout, f32) to `path` atomically.
///
/// `filter` keeps only module paths matching a regex (e.g. `^encoder\.` for the encoder alone);
/// `metadata` goes into the safetensors header (we always store the model `config` there).
pub fn save_safetensors<M: Module + ModuleSnapshot>(
    model: &M,
    path: &Path,
    filter: Option<&str>,
    metadata: &HashMap<String, String>,
) -> Result<(), PretrainError> {
    let named = collect_tensors(model, filter, "")?;
    write_safetensors_atomic(path, &named, metadata)
}

/// A tensor ready to be written: `(name, shape, f32 little-endian bytes)`.
pub type RawTensor = (String, Vec<usize>, Vec<u8>);

/// `model`'s tensors in official naming and PyTorch layout as f32 bytes, names prefixed by
/// `prefix`; `filter` keeps module paths matching a regex.
pub fn collect_tensors<M: Module + ModuleSnapshot>(
    model: &M,
    filter: Option<&str>,
    prefix: &str,
) -> Result<Vec<RawTensor>, PretrainError> {
    let filter = filter.map(|r| PathFilter::new().with_regex(r));
    let tensors = model.collect(filter, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut named = Vec::with_capacity(tensors.len());
    for t in tensors {
        let name = t.name.clone();
        let data = bridge::into_data(t)
            .map_err(|e| PretrainError::Backend(format!("reading `{name}`: {e}")))?;
        let shape = data.shape().to_vec();
        let values: Vec<f32> = data
            .try_to_vec_as::<f32>()
            .map_err(|e| PretrainError::Backend(format!("reading `{name}`: {e:?}")))?;
        named.push((format!("{prefix}{name}"), shape, f32_bytes(&values)));
    }
    Ok(named)
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Serialises `(name, shape, f32 little-endian bytes)` triples to `path` via a temporary file.
pub fn write_safetensors_atomic(
    path: &Path,
    tensors: &[RawTensor],
    metadata: &HashMap<String, String>,
) -> Result<(), PretrainError> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .expect("shape and byte length agree by construction");
            (n.clone(), view)
        })
        .collect();
    let mut bytes = safetensors::serialize(views, Some(metadata.clone())).map_err(|e| {
        PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    canonicalize_header(&mut bytes);
    write_atomic(path, &bytes)
}

/// Rewrites a safetensors header with its keys sorted, so that the same tensors and metadata give
/// the same bytes (the metadata map is a `HashMap`, whose order changes from run to run). The
/// header keeps its length: the same JSON with keys in another order is just as long.
fn canonicalize_header(bytes: &mut [u8]) {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let ordered: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(ordered).expect("a map of JSON values")
            }
            other => other,
        }
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes[8..8 + n]) else {
        return;
    };
    // Serialise entries one by one in sorted order (independent of serde_json's map ordering).
    let serde_json::Value::Object(map) = sorted(header) else {
        return;
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut text = String::from("{");
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(k).expect("a string"));
        text.push(':');
        text.push_str(&canonical_json(&map[*k]));
    }
    text.push('}');
    if text.len() <= n {
        let dst = &mut bytes[8..8 + n];
        dst[..text.len()].copy_from_slice(text.as_bytes());
        dst[text.len()..].fill(b' ');
    }
}

/// Compact JSON with object keys sorted.
fn canonical_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).expect("a string"),
                        canonical_json(&map[*k])
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        serde_json::Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Writes `bytes` to `path` atomically and durably ([`cae_fsio::write_atomic`], the workspace's one
/// implementation), with the error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PretrainError> {
    cae_fsio::write_atomic(path, bytes).map_err(|e| PretrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_same_bytes_whatever_the_metadata_order() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![
            ("b".to_string(), vec![2], f32_bytes(&[1.0, 2.0])),
            ("a".to_string(), vec![1], f32_bytes(&[3.0])),
        ];
        let mut outs = Vec::new();
        for i in 0..8 {
            let meta: HashMap<String, String> = (0..6)
                .map(|k| (format!("key{k}"), format!("value{k}")))
                .collect();
            let p = dir.path().join(format!("{i}.safetensors"));
            write_safetensors_atomic(&p, &tensors, &meta).unwrap();
            outs.push(std::fs::read(&p).unwrap());
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]));
        let meta = read_metadata(&dir.path().join("0.safetensors")).unwrap();
        assert_eq!(meta["key3"], "value3");
    }
}
