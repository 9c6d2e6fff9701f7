//! The optimizers of the protocols, with per-parameter groups and path-keyed state.
//!
//! * [`Rule::Lars`]: MAE's `util/lars.py` (from MoCo v3), linear probing. For parameters with more
//!   than one dimension, `dp = g + wd·p` is scaled by `trust · ‖p‖ / ‖dp‖` (when both norms are
//!   positive); 1-D parameters get neither decay nor scaling. Then `μ ← m·μ + dp`, `p ← p − lr·μ`.
//! * [`Rule::Sgd`]: `torch.optim.SGD` (no dampening), with Nesterov as CAE's `create_optimizer`
//!   maps `sgd` (attentive probing): `d = g + wd·p`, `b ← m·b + d` (`b = d` on the first step),
//!   `p ← p − lr·(d + m·b)`.
//! * [`Rule::AdamW`]: `torch.optim.AdamW` (fine-tuning):
//!   `p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + ε)`, computed by the workspace's one AdamW update,
//!   [`cae_pretrain::optim::adamw_update`] (pretraining's optimizer calls it too).
//!
//! Every parameter's learning rate is `lr × lr_scale` and its decay `weight_decay`, both given by
//! the group function from its path and rank ([`layer_decay_group`] for fine-tuning), the
//! equivalent of the official parameter groups. Parameters without a gradient (frozen ones) are
//! left alone.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use cae_pretrain::optim::{AdamWConfig, Moments, adamw_update};

use crate::error::{HeadsError, Result, to_vec};

/// A parameter's learning-rate scale and weight decay.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ParamGroup {
    /// Multiplies the scheduled learning rate.
    pub lr_scale: f64,
    /// Weight decay.
    pub weight_decay: f64,
}

/// Assigns a group from a parameter's dotted path and its number of dimensions.
pub type GroupFn = dyn Fn(&str, usize) -> ParamGroup + Send + Sync;

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Rule {
    /// LARS (MoCo v3 / MAE).
    Lars {
        /// Momentum (0.9).
        momentum: f64,
        /// Trust coefficient (0.001).
        trust: f64,
    },
    /// SGD with momentum.
    Sgd {
        /// Momentum (0.9).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// AdamW.
    AdamW {
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε.
        eps: f64,
    },
}

/// An optimizer's state for a checkpoint: `(key, flat values)` buffers and per-parameter update
/// counts ([`Optimizer::state_buffers`]).
pub type StateBuffers = (Vec<(String, Vec<f32>)>, BTreeMap<String, u64>);

/// One parameter's optimizer state (flattened).
#[derive(Debug, Clone)]
struct State {
    buffers: Vec<Tensor<1>>,
    steps: u64,
}

/// An optimizer.
pub struct Optimizer {
    /// The rule.
    pub rule: Rule,
    groups: Box<GroupFn>,
    state: BTreeMap<String, State>,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("rule", &self.rule)
            .field("params", &self.state.len())
            .finish()
    }
}

impl Optimizer {
    /// A new optimizer.
    pub fn new(rule: Rule, groups: Box<GroupFn>) -> Self {
        Self {
            rule,
            groups,
            state: BTreeMap::new(),
        }
    }

    /// LARS with one weight decay for every parameter (1-D ones are exempt by the rule).
    pub fn lars(momentum: f64, trust: f64, weight_decay: f64) -> Self {
        Self::new(
            Rule::Lars { momentum, trust },
            Box::new(move |_, _| ParamGroup {
                lr_scale: 1.0,
                weight_decay,
            }),
        )
    }

    /// SGD with one weight decay for every parameter.
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Self::new(
            Rule::Sgd { momentum, nesterov },
            Box::new(move |_, _| ParamGroup {
                lr_scale: 1.0,
                weight_decay,
            }),
        )
    }

    /// The group of a parameter.
    pub fn group(&self, path: &str, ndim: usize) -> ParamGroup {
        (self.groups)(path, ndim)
    }

    /// The state as flat `f32` buffers keyed `<parameter path>.<k>` (AdamW: 0 = first
    /// moment, 1 = second; LARS and SGD: 0 = momentum), and each parameter's update count, for
    /// checkpoints. Keys are sorted, so the same state gives the same bytes.
    pub fn state_buffers(&self) -> Result<StateBuffers> {
        let mut buffers = Vec::new();
        let mut steps = BTreeMap::new();
        for (path, st) in &self.state {
            for (k, b) in st.buffers.iter().enumerate() {
                buffers.push((format!("{path}.{k}"), to_vec(b.clone())?));
            }
            steps.insert(path.clone(), st.steps);
        }
        Ok((buffers, steps))
    }

    /// Restores a state written by [`Self::state_buffers`] (buffers on `device`'s plain
    /// backend, where the updates compute them). A parameter without its update count or with
    /// a missing buffer is an error naming it.
    pub fn load_state_buffers(
        &mut self,
        mut buffers: BTreeMap<String, Vec<f32>>,
        steps: &BTreeMap<String, u64>,
        device: &burn::tensor::Device,
    ) -> Result<()> {
        let plain = device.clone().without_autodiff();
        let per_param = match self.rule {
            Rule::AdamW { .. } => 2,
            Rule::Lars { .. } | Rule::Sgd { .. } => 1,
        };
        let mut state = BTreeMap::new();
        for (path, &n) in steps {
            let mut bufs = Vec::with_capacity(per_param);
            for k in 0..per_param {
                let key = format!("{path}.{k}");
                let values = buffers.remove(&key).ok_or_else(|| {
                    HeadsError::Config(format!("optimizer state lacks buffer `{key}`"))
                })?;
                let len = values.len();
                bufs.push(Tensor::<1>::from_data(
                    burn::tensor::TensorData::new(values, [len]),
                    &plain,
                ));
            }
            state.insert(
                path.clone(),
                State {
                    buffers: bufs,
                    steps: n,
                },
            );
        }
        if let Some(extra) = buffers.keys().next() {
            return Err(HeadsError::Config(format!(
                "optimizer state buffer `{extra}` has no update count"
            )));
        }
        self.state = state;
        Ok(())
    }

    /// One update with learning rate `lr`; consumes the gradients.
    pub fn step<M: Module>(&mut self, model: M, mut grads: GradientsParams, lr: f64) -> M {
        let mut update = Update {
            opt: self,
            grads: &mut grads,
            lr,
            path: Vec::new(),
        };
        model.map(&mut update)
    }
}

struct Update<'a> {
    opt: &'a mut Optimizer,
    grads: &'a mut GradientsParams,
    lr: f64,
    path: Vec<String>,
}

fn norm(t: &Tensor<1>) -> f64 {
    f64::from(t.clone().square().sum().sqrt().into_scalar::<f32>())
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let path = self.path.join(".");
        let group = self.opt.group(&path, D);
        let rule = self.opt.rule;
        let lr = self.lr * group.lr_scale;
        let wd = group.weight_decay;
        let state = self.opt.state.remove(&path);
        let mut new_state = None;
        let param = param.map(|value| {
            let shape = value.dims();
            let require_grad = value.is_require_grad();
            let n: usize = shape.iter().product();
            let p = value.clone().without_autodiff().reshape([n]);
            let g = grad.without_autodiff().reshape([n]);
            let steps = state.as_ref().map_or(0, |s| s.steps) + 1;
            let (updated, buffers) = match rule {
                Rule::Lars { momentum, trust } => {
                    let mut dp = g;
                    if D > 1 {
                        if wd != 0.0 {
                            dp = dp + p.clone().mul_scalar(wd);
                        }
                        let (pn, un) = (norm(&p), norm(&dp));
                        if pn > 0.0 && un > 0.0 {
                            dp = dp.mul_scalar(trust * pn / un);
                        }
                    }
                    let mu = match state {
                        Some(s) => s.buffers[0].clone().mul_scalar(momentum) + dp,
                        None => dp,
                    };
                    (p - mu.clone().mul_scalar(lr), vec![mu])
                }
                Rule::Sgd { momentum, nesterov } => {
                    let d = if wd != 0.0 {
                        g + p.clone().mul_scalar(wd)
                    } else {
                        g
                    };
                    let buf = match state {
                        Some(s) => s.buffers[0].clone().mul_scalar(momentum) + d.clone(),
                        None => d.clone(),
                    };
                    let dir = if nesterov {
                        d + buf.clone().mul_scalar(momentum)
                    } else {
                        buf.clone()
                    };
                    (p - dir.mul_scalar(lr), vec![buf])
                }
                Rule::AdamW { beta1, beta2, eps } => {
                    // The workspace's one AdamW formula, with this parameter's group lr and decay.
                    let prev = state.map(|s| {
                        let mut b = s.buffers.into_iter();
                        Moments {
                            m: b.next().expect("AdamW state holds m"),
                            v: b.next().expect("AdamW state holds v"),
                        }
                    });
                    let cfg = AdamWConfig {
                        beta1,
                        beta2,
                        eps,
                        weight_decay: wd,
                    };
                    let (p, mo) = adamw_update(p, g, prev, steps, lr, wd, &cfg);
                    (p, vec![mo.m, mo.v])
                }
            };
            new_state = Some(State { buffers, steps });
            let updated = updated.reshape(shape);
            let updated = if value.device().is_autodiff() {
                updated.autodiff()
            } else {
                updated
            };
            updated.set_require_grad(require_grad)
        });
        if let Some(s) = new_state {
            self.opt.state.insert(path, s);
        }
        param
    }
}

/// The layer id of a fine-tuned parameter (CAE / BEiT `furnace/optim_factory.py`
/// `get_num_layer_for_vit` with `num_max_layer = depth + 2`): the patch embedding, `cls_token`
/// and `pos_embed` are layer 0, `blocks.i` is layer `i + 1`, everything else (the shared relative
/// position bias, the final norms, the head) is layer `depth + 1`. `path` is the parameter's path
/// in the fine-tuning model, whose encoder sits under `encoder.`.
pub fn layer_id(path: &str, depth: usize) -> usize {
    layer_id_under(path, "encoder.", depth)
}

/// [`layer_id`] for a model whose encoder sits under `prefix` (`encoder.` when fine-tuning,
/// `backbone.` in a segmentor or detector): layer 0 for the patch embedding and the tokens,
/// `i + 1` for `blocks.i`, `depth + 1` for everything else, inside the encoder or not.
pub fn layer_id_under(path: &str, prefix: &str, depth: usize) -> usize {
    let Some(p) = path.strip_prefix(prefix) else {
        return depth + 1;
    };
    if matches!(p, "cls_token" | "mask_token" | "pos_embed") || p.starts_with("patch_embed.") {
        0
    } else if let Some(rest) = p.strip_prefix("blocks.") {
        rest.split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .map_or(depth + 1, |i| i + 1)
    } else {
        depth + 1
    }
}

/// Fine-tuning groups: `lr_scale = decay^(depth + 1 − layer_id)`; no weight decay for 1-D
/// parameters, biases, `pos_embed` and `cls_token` (the model's `no_weight_decay()`); the
/// relative position tables (2-D) are decayed, as in the official code.
pub fn layer_decay_group(
    path: &str,
    ndim: usize,
    depth: usize,
    decay: f64,
    weight_decay: f64,
) -> ParamGroup {
    let layer = layer_id(path, depth);
    let exempt = ndim <= 1
        || path.ends_with(".bias")
        || path == "encoder.pos_embed"
        || path == "encoder.cls_token";
    ParamGroup {
        lr_scale: decay.powi((depth + 1 - layer) as i32),
        weight_decay: if exempt { 0.0 } else { weight_decay },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::nn::Linear;
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Toy {
        lin: Linear,
    }

    fn toy(dev: &Device) -> Toy {
        Toy {
            lin: Linear {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(vec![3.0f32, 0.0, 0.0, 4.0], [2, 2]),
                    dev,
                )),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(vec![1.0f32, -1.0], [2]),
                    dev,
                ))),
            },
        }
    }

    /// Gradients of `sum(lin(x))` with x = [1, 2]: dW[i][o] = x[i], db = 1.
    fn grads(m: &Toy, dev: &Device) -> GradientsParams {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), dev);
        GradientsParams::from_grads(m.lin.forward(x).sum().backward(), m)
    }

    fn weights(m: &Toy) -> (Vec<f32>, Vec<f32>) {
        (
            to_vec(m.lin.weight.val()).unwrap(),
            to_vec(m.lin.bias.as_ref().unwrap().val()).unwrap(),
        )
    }

    #[test]
    fn lars_two_steps_by_hand() {
        let dev = Device::flex().autodiff();
        let mut m = toy(&dev);
        let mut opt = Optimizer::lars(0.9, 0.001, 0.0);
        // W = [[3,0],[0,4]] (‖W‖ = 5), dW = [[1,1],[2,2]] (‖dW‖ = √10); q = 0.001·5/√10.
        let q = 0.001 * 5.0 / 10f64.sqrt();
        let lr = 2.0;
        m = opt.step(m.clone(), grads(&m, &dev), lr);
        let (w, b) = weights(&m);
        let g = [1.0, 1.0, 2.0, 2.0];
        let w0 = [3.0, 0.0, 0.0, 4.0];
        let w1: Vec<f64> = (0..4).map(|i| w0[i] - lr * q * g[i]).collect();
        for i in 0..4 {
            assert!((w[i] as f64 - w1[i]).abs() < 1e-6, "{w:?} vs {w1:?}");
        }
        // 1-D bias: plain momentum SGD, no trust scaling.
        assert!((b[0] as f64 - (1.0 - lr)).abs() < 1e-6);
        // Second step: μ = 0.9·μ1 + q2·g with q2 from the new norms.
        m = opt.step(m.clone(), grads(&m, &dev), lr);
        let (w, b) = weights(&m);
        let pn = w1.iter().map(|v| v * v).sum::<f64>().sqrt();
        let q2 = 0.001 * pn / 10f64.sqrt();
        for i in 0..4 {
            let mu = 0.9 * q * g[i] + q2 * g[i];
            assert!((w[i] as f64 - (w1[i] - lr * mu)).abs() < 1e-6);
        }
        assert!((b[0] as f64 - (1.0 - lr - lr * 1.9)).abs() < 1e-5);
    }

    #[test]
    fn nesterov_sgd_by_hand() {
        let dev = Device::flex().autodiff();
        let mut m = toy(&dev);
        let mut opt = Optimizer::sgd(0.9, true, 0.0);
        m = opt.step(m.clone(), grads(&m, &dev), 0.1);
        // Step 1: buf = g, update g + 0.9·g = 1.9·g.
        let (_, b) = weights(&m);
        assert!((b[0] as f64 - (1.0 - 0.1 * 1.9)).abs() < 1e-6);
        m = opt.step(m.clone(), grads(&m, &dev), 0.1);
        // Step 2: buf = 0.9·1 + 1 = 1.9, update 1 + 0.9·1.9 = 2.71.
        let (_, b) = weights(&m);
        assert!((b[0] as f64 - (1.0 - 0.19 - 0.271)).abs() < 1e-6);
    }

    #[test]
    fn adamw_uses_the_group_lr_scale_and_decay() {
        let dev = Device::flex().autodiff();
        let m = toy(&dev);
        let mut opt = Optimizer::new(
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            Box::new(|path, ndim| ParamGroup {
                lr_scale: if path == "lin.weight" { 0.5 } else { 1.0 },
                weight_decay: if ndim > 1 { 0.1 } else { 0.0 },
            }),
        );
        let m = opt.step(m.clone(), grads(&m, &dev), 0.01);
        let (w, b) = weights(&m);
        // After one step the Adam direction is sign(g) = 1 everywhere.
        assert!((w[0] as f64 - (3.0 * (1.0 - 0.005 * 0.1) - 0.005)).abs() < 1e-6);
        assert!((b[0] as f64 - (1.0 - 0.01)).abs() < 1e-6);
    }

    #[test]
    fn layer_decay_assignment_by_hand() {
        // depth 2, decay 0.5: layer 0 → 0.5³, blocks.0 → 0.5², blocks.1 → 0.5, rest → 1.
        let g = |p: &str, nd| layer_decay_group(p, nd, 2, 0.5, 0.05);
        assert_eq!(g("encoder.cls_token", 3).lr_scale, 0.125);
        assert_eq!(g("encoder.cls_token", 3).weight_decay, 0.0);
        assert_eq!(g("encoder.pos_embed", 3).weight_decay, 0.0);
        assert_eq!(
            g("encoder.patch_embed.proj.weight", 4),
            ParamGroup {
                lr_scale: 0.125,
                weight_decay: 0.05
            }
        );
        assert_eq!(g("encoder.patch_embed.proj.bias", 1).weight_decay, 0.0);
        assert_eq!(g("encoder.blocks.0.attn.qkv.weight", 2).lr_scale, 0.25);
        assert_eq!(g("encoder.blocks.1.mlp.fc2.weight", 2).lr_scale, 0.5);
        assert_eq!(g("encoder.blocks.1.norm1.gamma", 1).weight_decay, 0.0);
        let table = g("encoder.blocks.1.attn.relative_position_bias_table", 2);
        assert_eq!((table.lr_scale, table.weight_decay), (0.5, 0.05));
        assert_eq!(
            g("encoder.rel_pos_bias.relative_position_bias_table", 2).lr_scale,
            1.0
        );
        assert_eq!(g("fc_norm.gamma", 1).lr_scale, 1.0);
        assert_eq!(
            g("head.weight", 2),
            ParamGroup {
                lr_scale: 1.0,
                weight_decay: 0.05
            }
        );
        assert_eq!(layer_id("encoder.blocks.11.attn.proj.weight", 12), 12);
    }
}
