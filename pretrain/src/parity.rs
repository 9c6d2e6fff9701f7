//! Parity with the official implementations: runs a reference file and compares every tensor.
//!
//! A reference file (made by running the official PyTorch code, see `tests/fixtures/reference/`)
//! holds a `config` (JSON metadata), the model state (`state.*`, official keys), inputs
//! (`input.*`), outputs (`output.*`) and the gradients of `output.loss` (`grad.*`). We build the
//! model from the config, load the state, feed the inputs, and compare:
//!
//! * activations and losses: `max|x − x_ref| ≤ 1e-4`;
//! * gradients, per tensor: `max|g − g_ref| ≤ 1e-3 · max|g_ref| + 1e-6`;
//! * token ids: exactly equal.
//!
//! Files are dispatched on their name: `cae_*`, `dvae_*`, `beit_*`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use safetensors::SafeTensors;

use crate::config::{
    CaeConfig, EncoderConfig, MaskConfig, MaskKind, Method, PosEmbed, QkvBias, RelPosBias,
    TargetConfig,
};
use crate::dalle::{DalleConfig, DalleEncoder};
use crate::error::PretrainError;
use crate::loss::cae_loss;
use crate::masking::MaskBatch;
use crate::model::beit::{BEIT_IGNORED_KEYS, beit_key};
use crate::model::rel_pos_bias::relative_position_index;
use crate::model::{BeitPretrain, ContextAutoencoder, ForwardCtx};
use crate::targets::Targets;
use crate::weights::{LoadOptions, load_safetensors_bytes, tensor_to_f32, tensor_to_i64};

/// Absolute tolerance on activations and losses.
pub const ACT_TOL: f64 = 1e-4;
/// Relative part of the gradient tolerance.
pub const GRAD_REL_TOL: f64 = 1e-3;
/// Additive floor of the gradient tolerance.
pub const GRAD_ABS_FLOOR: f64 = 1e-6;

/// One compared tensor.
#[derive(Debug, Clone)]
pub struct Check {
    /// `output.*` / `grad.*` name in the reference file.
    pub name: String,
    /// Largest absolute difference (or number of differing ids for integer outputs).
    pub max_abs_err: f64,
    /// The tolerance it was held to.
    pub tol: f64,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed when there is nothing to compare (missing, shape).
    pub note: Option<String>,
}

/// The result of one reference file.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    /// The file's kind (`cae`, `dvae`, `beit`).
    pub kind: String,
    /// Every comparison.
    pub checks: Vec<Check>,
}

impl ParityReport {
    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    /// The check closest to (or furthest over) its tolerance.
    pub fn worst(&self) -> Option<&Check> {
        self.checks.iter().max_by(|a, b| {
            let ra = a.max_abs_err / a.tol.max(f64::MIN_POSITIVE);
            let rb = b.max_abs_err / b.tol.max(f64::MIN_POSITIVE);
            ra.total_cmp(&rb)
        })
    }

    /// A one-line-per-failure summary.
    pub fn summary(&self) -> String {
        let fails = self.failures();
        if fails.is_empty() {
            let w = self.worst();
            return format!(
                "{} checks passed{}",
                self.checks.len(),
                w.map(|w| format!(
                    " (closest: {} err {:.3e} / tol {:.3e})",
                    w.name, w.max_abs_err, w.tol
                ))
                .unwrap_or_default()
            );
        }
        fails
            .iter()
            .map(|c| match &c.note {
                Some(n) => format!("{}: {n}", c.name),
                None => format!(
                    "{}: worst error {:.3e} exceeds tolerance {:.3e}",
                    c.name, c.max_abs_err, c.tol
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A reference file, read.
struct Reference<'a> {
    st: SafeTensors<'a>,
    config: serde_json::Value,
}

impl<'a> Reference<'a> {
    fn parse(bytes: &'a [u8], path: &Path) -> Result<Self, PretrainError> {
        let bad = |message: String| PretrainError::Safetensors {
            path: path.to_path_buf(),
            message,
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let config = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .ok_or_else(|| bad("no `config` in the metadata".into()))?;
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| bad(format!("metadata `config`: {e}")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Self { st, config })
    }

    fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), PretrainError> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| PretrainError::Input(format!("reference tensor `{name}`: {e}")))?;
        let data = tensor_to_f32(&v).map_err(|e| PretrainError::Input(format!("{name}: {e}")))?;
        Ok((data, v.shape().to_vec()))
    }

    fn i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>), PretrainError> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| PretrainError::Input(format!("reference tensor `{name}`: {e}")))?;
        let data = tensor_to_i64(&v).map_err(|e| PretrainError::Input(format!("{name}: {e}")))?;
        Ok((data, v.shape().to_vec()))
    }

    fn usize(&self, key: &str) -> Result<usize, PretrainError> {
        self.config[key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| {
                PretrainError::Input(format!("config `{key}` is missing or not an integer"))
            })
    }

    fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .st
            .names()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

/// The reference folder: `$CAE_REFERENCE_DIR` when set, else the workspace's
/// `tests/fixtures/reference/`.
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("CAE_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference"),
    }
}

/// The `*.safetensors` files of `dir` whose names start with one of `prefixes`, sorted.
pub fn reference_files(dir: &Path, prefixes: &[&str]) -> Result<Vec<PathBuf>, PretrainError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PretrainError::io(dir, e))? {
        let path = entry.map_err(|e| PretrainError::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".safetensors") && prefixes.iter().any(|p| name.starts_with(p)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `run` on every reference file of the reference folder ([`reference_dir`]) whose name
/// starts with one of `prefixes`, and requires each to pass with at least `min_checks`
/// comparisons. Returns the files run, or one message naming every file that failed (or could not
/// be run) with its summary. No matching file is an error for the shipped folder, and an empty
/// result for a folder set with `$CAE_REFERENCE_DIR` (it may hold other kinds only). What every
/// parity test does; prints each file's summary on stderr.
pub fn check_reference_files<E: std::fmt::Display>(
    prefixes: &[&str],
    min_checks: usize,
    run: impl Fn(&Path) -> Result<ParityReport, E>,
) -> Result<Vec<PathBuf>, String> {
    let dir = reference_dir();
    let files = reference_files(&dir, prefixes)
        .map_err(|e| format!("reading the reference folder {}: {e}", dir.display()))?;
    if files.is_empty() {
        if std::env::var_os("CAE_REFERENCE_DIR").is_some() {
            eprintln!("no {prefixes:?} files in {}", dir.display());
            return Ok(files);
        }
        return Err(format!(
            "no {prefixes:?} reference files in {}",
            dir.display()
        ));
    }
    let mut failures = Vec::new();
    for file in &files {
        match run(file) {
            Ok(report) => {
                eprintln!("{}: {}", file.display(), report.summary());
                if report.checks.len() < min_checks {
                    failures.push(format!(
                        "{}: only {} checks (at least {min_checks} expected)",
                        file.display(),
                        report.checks.len()
                    ));
                } else if !report.failures().is_empty() {
                    failures.push(format!("{}:\n{}", file.display(), report.summary()));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    if failures.is_empty() {
        Ok(files)
    } else {
        Err(format!("parity failures:\n{}", failures.join("\n")))
    }
}

/// Writes a copy of the reference file `src` to `dst` with `edit` applied to the raw
/// little-endian bytes of tensor `name` (given its dtype), metadata kept: how the parity tests
/// check that a perturbed reference fails.
pub fn edited_reference_copy(
    src: &Path,
    dst: &Path,
    name: &str,
    edit: impl Fn(safetensors::Dtype, &mut [u8]),
) -> Result<(), PretrainError> {
    use safetensors::tensor::TensorView;
    let bad = |message: String| PretrainError::Safetensors {
        path: src.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(src).map_err(|e| PretrainError::io(src, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let entry = owned
        .iter_mut()
        .find(|(n, ..)| n == name)
        .ok_or_else(|| bad(format!("no tensor `{name}`")))?;
    edit(entry.1, &mut entry.3[..]);
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| bad(e.to_string()))?;
    let out =
        safetensors::serialize(views, meta.metadata().clone()).map_err(|e| bad(e.to_string()))?;
    crate::weights::write_atomic(dst, &out)
}

/// An [`edited_reference_copy`] edit: adds `delta` to the f32 element `at`.
pub fn add_to_f32(at: usize, delta: f32) -> impl Fn(safetensors::Dtype, &mut [u8]) {
    move |dtype, data| {
        assert_eq!(
            dtype,
            safetensors::Dtype::F32,
            "add_to_f32 on a {dtype:?} tensor"
        );
        let bytes = &mut data[4 * at..4 * at + 4];
        let v = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) + delta;
        bytes.copy_from_slice(&v.to_le_bytes());
    }
}

/// Runs the reference file at `path` (kind from its file name).
pub fn run_reference(path: &Path) -> Result<ParityReport, PretrainError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = crate::weights::read_file(path)?;
    if name.starts_with("cae_") {
        run_cae(&bytes, path)
    } else if name.starts_with("dvae_") {
        run_dvae(&bytes, path)
    } else if name.starts_with("beit_") {
        run_beit(&bytes, path)
    } else {
        Err(PretrainError::Input(format!(
            "{}: a reference file name starts with cae_, dvae_ or beit_",
            path.display()
        )))
    }
}

/// Compares float data: the largest absolute difference against `tol` (a shape mismatch or a
/// NaN fails).
pub fn compare(
    name: &str,
    ours: &[f32],
    ours_shape: &[usize],
    reference: &[f32],
    ref_shape: &[usize],
    tol: f64,
) -> Check {
    if ours_shape != ref_shape {
        return Check {
            name: name.to_string(),
            max_abs_err: f64::INFINITY,
            tol,
            passed: false,
            note: Some(format!("shape {ours_shape:?}, reference {ref_shape:?}")),
        };
    }
    let mut worst = 0.0f64;
    let mut nan = false;
    for (a, b) in ours.iter().zip(reference) {
        let d = (*a as f64 - *b as f64).abs();
        if d.is_nan() {
            nan = true;
        }
        worst = worst.max(d);
    }
    Check {
        name: name.to_string(),
        max_abs_err: if nan { f64::NAN } else { worst },
        tol,
        passed: !nan && worst <= tol,
        note: nan.then(|| "NaN in the output".to_string()),
    }
}

fn tensor_vec<const D: usize>(t: Tensor<D>) -> Result<(Vec<f32>, Vec<usize>), PretrainError> {
    let shape = t.dims().to_vec();
    let v = t
        .try_into_vec_as::<f32>()
        .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
    Ok((v, shape))
}

fn check_output<const D: usize>(
    r: &Reference<'_>,
    key: &str,
    ours: Tensor<D>,
) -> Result<Check, PretrainError> {
    let (rv, rs) = r.f32(key)?;
    let (ov, os) = tensor_vec(ours)?;
    // Scalars are stored as [1]; ours may be [1] too.
    Ok(compare(key, &ov, &os, &rv, &rs, ACT_TOL))
}

/// Replaces every float parameter by its gradient, so that the gradients can be collected with
/// official names and PyTorch layout like the weights themselves.
struct GradsAsParams<'a> {
    grads: &'a Gradients,
    trainable: Vec<bool>,
}

impl ModuleMapper for GradsAsParams<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, _) = param.consume();
        self.trainable.push(tensor.is_require_grad());
        let grad = tensor.grad(self.grads).unwrap_or_else(|| {
            // The NaN marker is written from the host: `zeros * NaN` computed on a GPU backend
            // can come back as zeros (wgpu on lavapipe did), which would read as a gradient.
            let plain = tensor.clone().without_autodiff();
            let dims = plain.dims();
            let n = dims.iter().product::<usize>();
            Tensor::from_data(
                TensorData::new(vec![f32::NAN; n], dims.to_vec()),
                &plain.device(),
            )
        });
        Param::initialized(id, grad)
    }
}

/// Flat values and shape of a tensor.
pub type FlatTensor = (Vec<f32>, Vec<usize>);

/// Gradients of a module by official key (PyTorch layout); `None` entries had no gradient.
pub fn gradients_by_key<M: Module + ModuleSnapshot>(
    model: &M,
    grads: &Gradients,
) -> Result<BTreeMap<String, FlatTensor>, PretrainError> {
    let mut mapper = GradsAsParams {
        grads,
        trainable: Vec::new(),
    };
    let gm = model.clone().map(&mut mapper);
    let mut out = BTreeMap::new();
    for t in gm.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = t.name.clone();
        let data = bridge::into_data(t).map_err(|e| PretrainError::Backend(e.to_string()))?;
        let shape = data.shape().to_vec();
        let v: Vec<f32> = data
            .try_to_vec_as::<f32>()
            .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
        if v.iter().all(|x| x.is_nan()) {
            continue; // no gradient (frozen buffer)
        }
        out.insert(name, (v, shape));
    }
    Ok(out)
}

/// Compares every `grad.*` of the reference with ours; also fails on trainable parameters of
/// ours that the reference has no gradient for. `to_ours` maps an official key to ours.
fn check_grads(
    r: &Reference<'_>,
    ours: &BTreeMap<String, FlatTensor>,
    to_ours: &dyn Fn(&str) -> String,
    checks: &mut Vec<Check>,
) -> Result<(), PretrainError> {
    let names = r.names_with_prefix("grad.");
    for name in &names {
        let key = &to_ours(&name["grad.".len()..]);
        let (rv, rs) = r.f32(name)?;
        let max_ref = rv.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
        let tol = GRAD_REL_TOL * max_ref + GRAD_ABS_FLOOR;
        match ours.get(key) {
            Some((ov, os)) => checks.push(compare(name, ov, os, &rv, &rs, tol)),
            None => checks.push(Check {
                name: name.clone(),
                max_abs_err: f64::INFINITY,
                tol,
                passed: false,
                note: Some("no gradient for this parameter on our side".into()),
            }),
        }
    }
    for key in ours.keys() {
        if !names.iter().any(|n| &to_ours(&n["grad.".len()..]) == key) {
            checks.push(Check {
                name: format!("grad.{key}"),
                max_abs_err: f64::INFINITY,
                tol: 0.0,
                passed: false,
                note: Some("trainable on our side but absent from the reference".into()),
            });
        }
    }
    Ok(())
}

/// The model config of a `cae_*` reference file.
pub fn cae_config_from_reference(cfg: &serde_json::Value) -> Result<CaeConfig, PretrainError> {
    let r = RefConfig(cfg);
    let img = r.usize("img_size")?;
    let patch = r.usize("patch_size")?;
    let n = (img / patch) * (img / patch);
    let cfg = CaeConfig {
        version: 1,
        preset: "reference".into(),
        method: Method::Cae,
        encoder: EncoderConfig {
            img_size: img,
            patch_size: patch,
            in_chans: 3,
            embed_dim: r.usize("embed_dim")?,
            depth: r.usize("depth")?,
            num_heads: r.usize("num_heads")?,
            mlp_ratio: r.f64("mlp_ratio")?,
            qkv_bias: QkvBias::QV,
            layer_norm_eps: r.f64("layer_norm_eps")?,
            init_values: r.f64("init_values")?,
            drop_path_rate: r.f64("drop_path_rate").unwrap_or(0.0),
            pos_embed: PosEmbed::SinCos,
            rel_pos_bias: RelPosBias::None,
        },
        decoder_embed_dim: r.usize("decoder_embed_dim")?,
        decoder_num_heads: r.usize("decoder_num_heads")?,
        regressor_depth: r.usize("regressor_depth")?,
        decoder_depth: r.usize("decoder_depth")?,
        decoder_layer_scale_init_value: r.f64("decoder_layer_scale_init_value")?,
        target: TargetConfig::Dalle {
            vocab_size: r.usize("vocab_size")?,
        },
        mask: MaskConfig {
            kind: MaskKind::Block,
            num_masked: r.usize("num_mask_patches")?,
            min_block: MaskConfig::scaled_min_block(n),
            max_block: None,
            min_aspect: 0.3,
        },
        align_loss_weight: r.f64("align_loss_weight")?,
        fix_init_weight: false,
    };
    cfg.validate()?;
    Ok(cfg)
}

struct RefConfig<'a>(&'a serde_json::Value);

impl RefConfig<'_> {
    fn usize(&self, key: &str) -> Result<usize, PretrainError> {
        self.0[key].as_u64().map(|v| v as usize).ok_or_else(|| {
            PretrainError::Input(format!("config `{key}` is missing or not an integer"))
        })
    }
    fn f64(&self, key: &str) -> Result<f64, PretrainError> {
        self.0[key].as_f64().ok_or_else(|| {
            PretrainError::Input(format!("config `{key}` is missing or not a number"))
        })
    }
}

/// Reads `input.mask` (`u8 [B, N]`, 1 = masked) as a [`MaskBatch`].
fn reference_masks(r: &Reference<'_>) -> Result<MaskBatch, PretrainError> {
    let (m, shape) = r.i64("input.mask")?;
    let [b, n] = shape[..] else {
        return Err(PretrainError::Input(format!(
            "input.mask has shape {shape:?}, expected [B, N]"
        )));
    };
    let rows: Vec<Vec<bool>> = (0..b)
        .map(|i| m[i * n..(i + 1) * n].iter().map(|v| *v != 0).collect())
        .collect();
    MaskBatch::from_bool_rows(&rows)
}

/// Token ids at the masked positions, batch-major, ascending patch: `[B·M]`.
fn masked_tokens(
    r: &Reference<'_>,
    masks: &MaskBatch,
    device: &Device,
) -> Result<Tensor<1, Int>, PretrainError> {
    let (t, shape) = r.i64("input.tokens")?;
    let n = shape[1];
    let ids: Vec<i64> = masks
        .masked
        .iter()
        .enumerate()
        .flat_map(|(b, rows)| rows.iter().map(move |&p| (b, p)))
        .map(|(b, p)| t[b * n + p])
        .collect();
    let len = ids.len();
    Ok(Tensor::from_data(TensorData::new(ids, [len]), device))
}

fn images(r: &Reference<'_>, device: &Device) -> Result<Tensor<4>, PretrainError> {
    let (v, s) = r.f32("input.images")?;
    let shape: [usize; 4] = s
        .clone()
        .try_into()
        .map_err(|_| PretrainError::Input(format!("input.images has shape {s:?}")))?;
    Ok(Tensor::from_data(TensorData::new(v, shape), device))
}

fn run_cae(bytes: &[u8], path: &Path) -> Result<ParityReport, PretrainError> {
    let r = Reference::parse(bytes, path)?;
    let cfg = cae_config_from_reference(&r.config)?;
    let device = crate::device::test_device().autodiff();
    let mut model = ContextAutoencoder::new(&cfg, 0, &device);
    let opts = LoadOptions {
        prefix: Some("state."),
        ignore: &[r"^alignment_encoder\."],
        rename: None,
    };
    load_safetensors_bytes(&mut model, bytes, path, &opts)?;
    let masks = reference_masks(&r)?;
    let x = images(&r, &device)?;
    let labels = masked_tokens(&r, &masks, &device)?;
    let mut ctx = ForwardCtx::eval();
    let out = model.forward(x, &masks, true, &mut ctx);
    let loss = cae_loss(
        out.logits.clone(),
        &Targets::Tokens(labels),
        out.latent_pred.clone(),
        out.latent_target.clone(),
        cfg.align_loss_weight,
    );
    let grads = loss.loss.backward();
    let mut checks = vec![
        check_output(&r, "output.encoder", out.encoder)?,
        check_output(
            &r,
            "output.latent_target",
            out.latent_target.expect("computed with_target"),
        )?,
        check_output(&r, "output.latent_pred", out.latent_pred)?,
        check_output(&r, "output.logits", out.logits)?,
        check_output(&r, "output.loss_rec", loss.loss_rec)?,
        check_output(&r, "output.loss_align", loss.loss_align)?,
        check_output(&r, "output.loss", loss.loss.clone())?,
    ];
    let ours = gradients_by_key(&model, &grads)?;
    check_grads(&r, &ours, &|k: &str| k.to_string(), &mut checks)?;
    Ok(ParityReport {
        kind: "cae".into(),
        checks,
    })
}

fn run_dvae(bytes: &[u8], path: &Path) -> Result<ParityReport, PretrainError> {
    let r = Reference::parse(bytes, path)?;
    let cfg = DalleConfig {
        group_count: r.usize("group_count")?,
        n_hid: r.usize("n_hid")?,
        n_blk_per_group: r.usize("n_blk_per_group")?,
        vocab_size: r.usize("vocab_size")?,
    };
    let device = crate::device::test_device();
    let mut model = DalleEncoder::new(&cfg, &device)?;
    let rename = |k: &str| crate::dalle::official_to_module_key(k);
    let opts = LoadOptions {
        prefix: Some("state."),
        ignore: &[],
        rename: Some(&rename),
    };
    load_safetensors_bytes(&mut model, bytes, path, &opts)?;
    let (v, s) = r.f32("input.pixels01")?;
    let shape: [usize; 4] = s
        .clone()
        .try_into()
        .map_err(|_| PretrainError::Input(format!("input.pixels01 has shape {s:?}")))?;
    let x = Tensor::<4>::from_data(TensorData::new(v, shape), &device);
    let logits = model.logits(x.clone());
    let mut checks = vec![check_output(&r, "output.logits", logits)?];
    let tokens = model.tokens(x);
    let (rt, rs) = r.i64("output.tokens")?;
    let ours: Vec<i64> = tokens
        .try_into_vec_as::<i64>()
        .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
    let expected_len: usize = rs.iter().product();
    let differing = if ours.len() == expected_len {
        ours.iter().zip(&rt).filter(|(a, b)| a != b).count()
    } else {
        expected_len.max(1)
    };
    checks.push(Check {
        name: "output.tokens".into(),
        max_abs_err: differing as f64,
        tol: 0.0,
        passed: differing == 0,
        note: (differing > 0).then(|| format!("{differing} of {expected_len} token ids differ")),
    });
    Ok(ParityReport {
        kind: "dvae".into(),
        checks,
    })
}

/// The model config of a `beit_*` reference file.
pub fn beit_config_from_reference(cfg: &serde_json::Value) -> Result<CaeConfig, PretrainError> {
    let r = RefConfig(cfg);
    let img = r.usize("img_size")?;
    let patch = r.usize("patch_size")?;
    let n = (img / patch) * (img / patch);
    let d = r.usize("embed_dim")?;
    let flag = |k: &str| cfg[k].as_bool().unwrap_or(false);
    let rel_pos_bias = match (flag("use_shared_rel_pos_bias"), flag("use_rel_pos_bias")) {
        (true, false) => RelPosBias::Shared,
        (false, true) => RelPosBias::PerBlock,
        (false, false) => RelPosBias::None,
        (true, true) => {
            return Err(PretrainError::Input(
                "a shared and a per-block relative position bias together are not supported".into(),
            ));
        }
    };
    let cfg = CaeConfig {
        version: 1,
        preset: "reference".into(),
        method: Method::Beit,
        encoder: EncoderConfig {
            img_size: img,
            patch_size: patch,
            in_chans: 3,
            embed_dim: d,
            depth: r.usize("depth")?,
            num_heads: r.usize("num_heads")?,
            mlp_ratio: r.f64("mlp_ratio")?,
            qkv_bias: QkvBias::QV,
            layer_norm_eps: r.f64("layer_norm_eps")?,
            init_values: r.f64("init_values")?,
            drop_path_rate: 0.0,
            pos_embed: if flag("use_abs_pos_emb") {
                PosEmbed::Learned
            } else {
                PosEmbed::None
            },
            rel_pos_bias,
        },
        decoder_embed_dim: d,
        decoder_num_heads: r.usize("num_heads")?,
        regressor_depth: 0,
        decoder_depth: 0,
        decoder_layer_scale_init_value: 0.0,
        target: TargetConfig::Dalle {
            vocab_size: r.usize("vocab_size")?,
        },
        mask: MaskConfig {
            kind: MaskKind::Block,
            num_masked: r.usize("num_mask_patches")?,
            min_block: MaskConfig::scaled_min_block(n),
            max_block: None,
            min_aspect: 0.3,
        },
        align_loss_weight: 0.0,
        fix_init_weight: false,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn run_beit(bytes: &[u8], path: &Path) -> Result<ParityReport, PretrainError> {
    let r = Reference::parse(bytes, path)?;
    let cfg = beit_config_from_reference(&r.config)?;
    let device = crate::device::test_device().autodiff();
    let mut model = BeitPretrain::new(&cfg, 0, &device);
    let rename = |k: &str| beit_key(k);
    let opts = LoadOptions {
        prefix: Some("state."),
        ignore: BEIT_IGNORED_KEYS,
        rename: Some(&rename),
    };
    load_safetensors_bytes(&mut model, bytes, path, &opts)?;
    let masks = reference_masks(&r)?;
    let x = images(&r, &device)?;
    let labels = masked_tokens(&r, &masks, &device)?;
    let out = model.forward(x, &masks, &mut ForwardCtx::eval());
    let loss = crate::loss::cross_entropy(out.logits.clone(), labels);
    let grads = loss.backward();
    let mut checks = vec![
        check_output(&r, "output.features", out.features)?,
        check_output(&r, "output.logits", out.logits)?,
        check_output(&r, "output.loss", loss)?,
    ];
    // The relative position index buffers must be the ones we compute.
    let g = cfg.encoder.grid_size();
    let ours_index = relative_position_index(g, g);
    for name in r.names_with_prefix("state.") {
        if !name.ends_with("relative_position_index") {
            continue;
        }
        let (theirs, _) = r.i64(&name)?;
        let differing = if theirs.len() == ours_index.len() {
            theirs
                .iter()
                .zip(&ours_index)
                .filter(|(a, b)| a != b)
                .count()
        } else {
            theirs.len().max(1)
        };
        checks.push(Check {
            name,
            max_abs_err: differing as f64,
            tol: 0.0,
            passed: differing == 0,
            note: (differing > 0).then(|| format!("{differing} index entries differ")),
        });
    }
    let ours = gradients_by_key(&model, &grads)?;
    check_grads(&r, &ours, &beit_key, &mut checks)?;
    Ok(ParityReport {
        kind: "beit".into(),
        checks,
    })
}
