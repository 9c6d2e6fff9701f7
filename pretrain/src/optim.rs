//! AdamW with CAE's parameter groups, global gradient-norm clipping, and path-keyed state.
//!
//! * `torch.optim.AdamW` semantics: `p ← p·(1 − lr·wd) − lr · m̂ / (√v̂ + ε)` with bias-corrected
//!   moments (cae.md §4: β = (0.9, 0.999), ε = 1e-8, wd = 0.05).
//! * No weight decay for parameters with one dimension (biases, LayerNorm weights, `q_bias`,
//!   `v_bias`, layer scales); `cls_token` and `mask_token` (3-D) are decayed, as in the official
//!   code, whose top-level model has no `no_weight_decay()`. Frozen parameters (the sin-cos tables)
//!   have no gradient and are left alone.
//! * Gradients are clipped to a global L2 norm (`clip_grad_norm_(…, 3.0)`) before the update.
//!
//! The moments are keyed by parameter path (`encoder.blocks.0.attn.qkv.weight`), so they can be
//! written to a checkpoint and restored into a freshly built model in another process, which the
//! exact-resume guarantee of `cae-bench pretrain --resume` needs. burn's own optimizers key their
//! state by `ParamId`, which a reloaded model does not keep.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::PretrainError;

/// AdamW hyper-parameters (the learning rate comes with each step).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay (decoupled).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
pub struct Moments {
    /// First moment.
    pub m: Tensor<1>,
    /// Second moment.
    pub v: Tensor<1>,
}

/// A named flat f32 tensor: `(name, shape, values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The optimizer.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// Updates done so far (the bias-correction step count).
    pub steps: u64,
    /// Moments by parameter path.
    pub state: BTreeMap<String, Moments>,
}

/// Tracks the dotted path of the parameter being visited.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn path(&self) -> String {
        self.0.join(".")
    }
}

/// Sums the squared gradients of every parameter.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// The global L2 norm of the gradients; when it exceeds `max_norm`, every gradient is scaled by
/// `max_norm / (norm + 1e-6)` (`torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> f64 {
    let mut visitor = SquaredNorm { grads, total: None };
    model.visit(&mut visitor);
    let Some(total) = visitor.total else {
        return 0.0;
    };
    let norm = f64::from(total.into_scalar::<f32>()).sqrt();
    if let Some(max) = max_norm {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            let mut scaler = ScaleGrads { grads, coef };
            model.visit(&mut scaler);
        }
    }
    norm
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    coef: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.coef));
        }
    }
}

/// One AdamW update of a flattened parameter `p` with gradient `g` (`torch.optim.AdamW`):
/// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²` (from zero when `prev` is `None`),
/// `p ← p·(1 − lr·wd) − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)`, `t` being the 1-based step
/// count. `lr` and `weight_decay` are this parameter's (after any group scale). The one AdamW
/// formula of the workspace: pretraining's [`AdamW`] and the protocols' optimizer
/// (`cae_heads::optim`, per-group lr scale and decay) both call it.
pub fn adamw_update(
    p: Tensor<1>,
    g: Tensor<1>,
    prev: Option<Moments>,
    t: u64,
    lr: f64,
    weight_decay: f64,
    cfg: &AdamWConfig,
) -> (Tensor<1>, Moments) {
    let moments = match prev {
        Some(mo) => Moments {
            m: mo.m.mul_scalar(cfg.beta1) + g.clone().mul_scalar(1.0 - cfg.beta1),
            v: mo.v.mul_scalar(cfg.beta2) + g.square().mul_scalar(1.0 - cfg.beta2),
        },
        None => Moments {
            m: g.clone().mul_scalar(1.0 - cfg.beta1),
            v: g.square().mul_scalar(1.0 - cfg.beta2),
        },
    };
    let t = i32::try_from(t).unwrap_or(i32::MAX);
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2 = 1.0 - cfg.beta2.powi(t);
    let denom = (moments.v.clone().div_scalar(bc2))
        .sqrt()
        .add_scalar(cfg.eps);
    let delta = moments.m.clone().div_scalar(bc1) / denom;
    let p = if weight_decay != 0.0 {
        p.mul_scalar(1.0 - lr * weight_decay)
    } else {
        p
    };
    (p - delta.mul_scalar(lr), moments)
}

struct Update<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    path: PathStack,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id: ParamId = param.id;
        let Some(grad) = self.grads.remove::<D>(id) else {
            return param;
        };
        let path = self.path.path();
        let cfg = self.opt.cfg;
        let t = self.opt.steps;
        param.map(|value| {
            let shape = value.dims();
            let require_grad = value.is_require_grad();
            let n: usize = shape.iter().product();
            let flat = value.clone().without_autodiff().reshape([n]);
            let g = grad.without_autodiff().reshape([n]);
            let decay = if D > 1 { cfg.weight_decay } else { 0.0 };
            let prev = self.opt.state.remove(&path);
            let (updated, moments) = adamw_update(flat, g, prev, t, self.lr, decay, &cfg);
            let updated = updated.reshape(shape);
            self.opt.state.insert(path.clone(), moments);
            let device = value.device();
            let updated = if device.is_autodiff() {
                updated.autodiff()
            } else {
                updated
            };
            updated.set_require_grad(require_grad)
        })
    }
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(cfg: AdamWConfig) -> Self {
        Self {
            cfg,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// One update with learning rate `lr`; consumes the gradients.
    pub fn step<M: Module>(&mut self, model: M, mut grads: GradientsParams, lr: f64) -> M {
        self.steps += 1;
        let mut update = Update {
            opt: self,
            grads: &mut grads,
            lr,
            path: PathStack::default(),
        };
        model.map(&mut update)
    }

    /// The state as named f32 tensors (`<path>.exp_avg`, `<path>.exp_avg_sq`) for a checkpoint.
    pub fn state_tensors(&self) -> Result<Vec<NamedTensor>, PretrainError> {
        let mut out = Vec::with_capacity(self.state.len() * 2);
        for (path, mo) in &self.state {
            for (suffix, t) in [("exp_avg", &mo.m), ("exp_avg_sq", &mo.v)] {
                let v: Vec<f32> = t
                    .clone()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
                out.push((format!("{path}.{suffix}"), vec![v.len()], v));
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        steps: u64,
        tensors: BTreeMap<String, Vec<f32>>,
        device: &Device,
    ) -> Result<(), PretrainError> {
        let mut state = BTreeMap::new();
        for (name, values) in &tensors {
            let Some(path) = name.strip_suffix(".exp_avg") else {
                continue;
            };
            let sq = tensors.get(&format!("{path}.exp_avg_sq")).ok_or_else(|| {
                PretrainError::Input(format!("optimizer state: `{path}.exp_avg_sq` is missing"))
            })?;
            let mk = |v: &Vec<f32>| {
                Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), device)
            };
            state.insert(
                path.to_string(),
                Moments {
                    m: mk(values),
                    v: mk(sq),
                },
            );
        }
        self.steps = steps;
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::Linear;

    #[derive(Module, Debug)]
    struct Toy {
        lin: Linear,
        token: Param<Tensor<3>>,
    }

    fn toy(dev: &Device) -> Toy {
        Toy {
            lin: Linear {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(vec![1.0f32, -2.0, 0.5, 3.0], [2, 2]),
                    dev,
                )),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(vec![0.1f32, -0.1], [2]),
                    dev,
                ))),
            },
            token: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.5f32, 0.25], [1, 1, 2]),
                dev,
            )),
        }
    }

    fn loss(m: &Toy, dev: &Device) -> Tensor<1> {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), dev);
        let y = m.lin.forward(x) + m.token.val().reshape([1, 2]);
        y.square().sum()
    }

    /// One AdamW step, checked against the update computed by hand in f64 (torch semantics).
    #[test]
    fn one_step_matches_the_torch_formula_and_skips_decay_on_1d() {
        let dev = Device::flex().autodiff();
        let model = toy(&dev);
        let grads = GradientsParams::from_grads(loss(&model, &dev).backward(), &model);
        let gw: Vec<f32> = grads
            .get::<2>(model.lin.weight.id)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let gb: Vec<f32> = grads
            .get::<1>(model.lin.bias.as_ref().unwrap().id)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg);
        let lr = 0.01;
        let new = opt.step(model, grads, lr);
        // After one step m̂ = g, v̂ = g², so the update is lr·g/(|g|+ε) = lr·sign(g).
        let w: Vec<f32> = new.lin.weight.val().try_into_vec_as::<f32>().unwrap();
        let w0 = [1.0f64, -2.0, 0.5, 3.0];
        for i in 0..4 {
            let g = gw[i] as f64;
            let expected = w0[i] * (1.0 - lr * 0.1) - lr * g / (g.abs() + 1e-8);
            assert!(
                (w[i] as f64 - expected).abs() < 1e-6,
                "w[{i}] {} vs {expected}",
                w[i]
            );
        }
        let b: Vec<f32> = new
            .lin
            .bias
            .as_ref()
            .unwrap()
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        let b0 = [0.1f64, -0.1];
        for i in 0..2 {
            let g = gb[i] as f64;
            let expected = b0[i] - lr * g / (g.abs() + 1e-8); // no decay on 1-D
            assert!((b[i] as f64 - expected).abs() < 1e-6);
        }
        assert!(new.lin.weight.val().is_require_grad());
        assert_eq!(opt.state.len(), 3);
        assert!(opt.state.contains_key("lin.weight") && opt.state.contains_key("token"));
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let dev = Device::flex().autodiff();
        let model = toy(&dev);
        let mut grads = GradientsParams::from_grads(loss(&model, &dev).backward(), &model);
        let before = clip_grad_norm(&model, &mut grads, Some(1.0));
        assert!(before > 1.0);
        let after = clip_grad_norm(&model, &mut grads, None);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }

    #[test]
    fn state_round_trips() {
        let dev = Device::flex().autodiff();
        let model = toy(&dev);
        let grads = GradientsParams::from_grads(loss(&model, &dev).backward(), &model);
        let mut opt = AdamW::new(AdamWConfig::default());
        let _ = opt.step(model, grads, 0.1);
        let saved: BTreeMap<String, Vec<f32>> = opt
            .state_tensors()
            .unwrap()
            .into_iter()
            .map(|(n, _, v)| (n, v))
            .collect();
        let mut restored = AdamW::new(AdamWConfig::default());
        restored.load_state(opt.steps, saved.clone(), &dev).unwrap();
        let again: BTreeMap<String, Vec<f32>> = restored
            .state_tensors()
            .unwrap()
            .into_iter()
            .map(|(n, _, v)| (n, v))
            .collect();
        assert_eq!(saved, again);
        assert_eq!(restored.steps, 1);
    }
}
