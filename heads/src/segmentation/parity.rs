//! Parity of the neck and heads with mmsegmentation itself.
//!
//! A reference file `upernet_*.safetensors` (made by `oracles/segmentation/make_oracle.py` from
//! mmseg 1.2.2, eval mode) holds the sizes (`config` metadata), the state (`state.*`, mmseg keys),
//! four ViT-block maps `input.features.{i}` and the labels `input.label`, the outputs
//! (`output.pyramid.{i}`, `output.logits`, `output.aux_logits`, `output.loss`) and the gradient of
//! the loss for every parameter and input map (`grad.*`). We build [`UperNet`] from the config,
//! load the state, run it in eval mode and compare with the tolerances of
//! [`cae_pretrain::parity`]: activations and the loss at `1e-4` absolute, gradients at
//! `1e-3·max|g_ref| + 1e-6`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use cae_pretrain::model::ForwardCtx;
use cae_pretrain::parity::{
    ACT_TOL, Check, GRAD_ABS_FLOOR, GRAD_REL_TOL, ParityReport, compare, gradients_by_key,
};
use cae_pretrain::weights::{LoadOptions, load_safetensors_bytes, tensor_to_f32, tensor_to_i64};
use safetensors::SafeTensors;

use super::{AuxHeadConfig, SEG_IGNORED_KEYS, UperNet, UperNetConfig, upernet_loss};
use crate::error::{HeadsError, Result};

fn bad(path: &Path, message: impl std::fmt::Display) -> HeadsError {
    HeadsError::data(path, message.to_string())
}

struct Reference<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
}

impl Reference<'_> {
    fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| bad(self.path, format!("tensor `{name}`: {e}")))?;
        let data = tensor_to_f32(&v).map_err(|e| bad(self.path, format!("{name}: {e}")))?;
        Ok((data, v.shape().to_vec()))
    }

    fn tensor4(&self, name: &str, device: &Device) -> Result<Tensor<4>> {
        let (v, s) = self.f32(name)?;
        let shape: [usize; 4] = s
            .clone()
            .try_into()
            .map_err(|_| bad(self.path, format!("{name} has shape {s:?}, expected 4-D")))?;
        Ok(Tensor::from_data(TensorData::new(v, shape), device))
    }

    fn check(&self, name: &str, ours: Tensor<4>) -> Result<Check> {
        let (rv, rs) = self.f32(name)?;
        let shape = ours.dims().to_vec();
        let ov = crate::error::to_vec(ours)?;
        Ok(compare(name, &ov, &shape, &rv, &rs, ACT_TOL))
    }

    fn grad_check(&self, name: &str, ours: Option<(&[f32], &[usize])>) -> Result<Check> {
        let (rv, rs) = self.f32(name)?;
        let max_ref = rv.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
        let tol = GRAD_REL_TOL * max_ref + GRAD_ABS_FLOOR;
        Ok(match ours {
            Some((ov, os)) => compare(name, ov, os, &rv, &rs, tol),
            None => Check {
                name: name.to_string(),
                max_abs_err: f64::INFINITY,
                tol,
                passed: false,
                note: Some("no gradient on our side".into()),
            },
        })
    }
}

/// The segmentor config of a reference file's `config` metadata.
pub fn config_from_reference(
    cfg: &serde_json::Value,
) -> std::result::Result<UperNetConfig, String> {
    let usize_of = |k: &str| {
        cfg[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("config `{k}` is missing or not an integer"))
    };
    let f64_list = |k: &str| -> std::result::Result<Vec<f64>, String> {
        cfg[k]
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| format!("config `{k}` is missing or not a list of numbers"))
    };
    if cfg["align_corners"].as_bool() == Some(true) {
        return Err("align_corners = True is not supported".into());
    }
    // The reference reduces with F.cross_entropy's mean over non-ignored pixels unless it says
    // otherwise.
    let avg_non_ignore = match cfg["avg_non_ignore"].as_bool() {
        Some(b) => b,
        None => cfg["loss"]
            .as_str()
            .is_none_or(|l| l.contains("non-ignored")),
    };
    let ignore = usize_of("ignore_index")?;
    Ok(UperNetConfig {
        preset: "reference".into(),
        in_channels: usize_of("embed_dim")?,
        rescales: f64_list("rescales")?,
        out_indices: None,
        channels: usize_of("channels")?,
        pool_scales: f64_list("pool_scales")?
            .into_iter()
            .map(|v| v as usize)
            .collect(),
        num_classes: usize_of("num_classes")?,
        dropout: 0.1,
        aux: Some(AuxHeadConfig {
            channels: usize_of("aux_channels")?,
            num_convs: 1,
            in_index: 2,
            loss_weight: cfg["aux_loss_weight"]
                .as_f64()
                .ok_or("config `aux_loss_weight` is missing")?,
        }),
        bn_eps: 1e-5,
        ignore_index: u8::try_from(ignore).map_err(|_| format!("ignore index {ignore} > 255"))?,
        avg_non_ignore,
    })
}

/// Runs the reference file at `path` and compares every output and gradient.
pub fn run_upernet_reference(path: &Path) -> Result<ParityReport> {
    let bytes = cae_pretrain::weights::read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e))?;
    let config = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .ok_or_else(|| bad(path, "no `config` in the metadata"))?;
    let config: serde_json::Value =
        serde_json::from_str(config).map_err(|e| bad(path, format!("metadata `config`: {e}")))?;
    let cfg = config_from_reference(&config).map_err(|e| bad(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    let r = Reference { st, path };

    let device = cae_pretrain::device::test_device().autodiff();
    let mut model = UperNet::new(&cfg, 0, &device)?;
    let opts = LoadOptions {
        prefix: Some("state."),
        ignore: SEG_IGNORED_KEYS,
        rename: None,
    };
    load_safetensors_bytes(&mut model, &bytes, path, &opts)?;

    let levels = cfg.rescales.len();
    let feats = (0..levels)
        .map(|i| {
            Ok(r.tensor4(&format!("input.features.{i}"), &device)?
                .require_grad())
        })
        .collect::<Result<Vec<_>>>()?;
    let labels = {
        let v =
            r.st.tensor("input.label")
                .map_err(|e| bad(path, format!("tensor `input.label`: {e}")))?;
        let data = tensor_to_i64(&v).map_err(|e| bad(path, format!("input.label: {e}")))?;
        let shape: [usize; 3] = v
            .shape()
            .to_vec()
            .try_into()
            .map_err(|_| bad(path, "input.label is not [B, H, W]"))?;
        Tensor::<3, Int>::from_data(TensorData::new(data, shape), &device)
    };

    let out = model.forward_maps(feats.clone(), &mut ForwardCtx::eval())?;
    let aux_weight = cfg.aux.as_ref().map_or(0.0, |a| a.loss_weight);
    let loss = upernet_loss(
        out.logits.clone(),
        out.aux_logits.clone(),
        labels,
        aux_weight,
        cfg.ignore_index as i64,
        cfg.avg_non_ignore,
    );

    let mut checks = Vec::new();
    for (i, level) in out.pyramid.iter().enumerate() {
        checks.push(r.check(&format!("output.pyramid.{i}"), level.clone())?);
    }
    checks.push(r.check("output.logits", out.logits.clone())?);
    if let Some(aux) = &out.aux_logits {
        checks.push(r.check("output.aux_logits", aux.clone())?);
    }
    {
        let (rv, rs) = r.f32("output.loss")?;
        let ov = crate::error::to_vec(loss.loss.clone())?;
        checks.push(compare("output.loss", &ov, &[1], &rv, &rs, ACT_TOL));
    }

    let grads = loss.loss.backward();
    let ours: BTreeMap<String, (Vec<f32>, Vec<usize>)> = gradients_by_key(&model, &grads)?;
    let mut names: Vec<&str> =
        r.st.names()
            .into_iter()
            .filter(|n| n.starts_with("grad."))
            .collect();
    names.sort_unstable();
    for name in &names {
        let key = &name["grad.".len()..];
        if let Some(i) = key.strip_prefix("input.features.") {
            let i: usize = i
                .parse()
                .map_err(|_| bad(path, format!("unexpected tensor `{name}`")))?;
            let g = feats
                .get(i)
                .and_then(|f| f.grad(&grads))
                .map(|g| {
                    let shape = g.dims().to_vec();
                    crate::error::to_vec(g).map(|v| (v, shape))
                })
                .transpose()?;
            checks.push(r.grad_check(name, g.as_ref().map(|(v, s)| (&v[..], &s[..])))?);
        } else {
            let g = ours.get(key).map(|(v, s)| (&v[..], &s[..]));
            checks.push(r.grad_check(name, g)?);
        }
    }
    for key in ours.keys() {
        if !names.iter().any(|n| &n["grad.".len()..] == key) {
            checks.push(Check {
                name: format!("grad.{key}"),
                max_abs_err: f64::INFINITY,
                tol: 0.0,
                passed: false,
                note: Some("trainable on our side but absent from the reference".into()),
            });
        }
    }
    Ok(ParityReport {
        kind: "upernet".into(),
        checks,
    })
}
