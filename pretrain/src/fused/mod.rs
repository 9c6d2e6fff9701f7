//! Fused CPU kernels for the operations that dominate a training step on `flex`: LayerNorm, GELU
//! and multi-head attention, each with its own forward and backward pass.
//!
//! burn composes these from primitive tensor ops: a LayerNorm is nine element-wise passes forward
//! and about twenty backward, attention is `B·H` tiny matrix products per call (each a `gemm`
//! call with its packing overhead) and its backward twice that, GELU's `erf` is a scalar libm call,
//! and flex's element-wise ops run on one thread. The fused versions make one or two passes over
//! the data, use all threads, and vectorise (see [`kernels`]).
//!
//! They are a burn backend extension ([`ext::FusedOps`]) with a hand-written backward step for
//! `Autodiff<flex>`. The functions here choose the fused path for `f32` tensors on the `flex`
//! device and fall back to the composed reference ([`reference`]) on any other backend, or when
//! the environment variable `CAE_UNFUSED` is set (for A/B measurements). Tests check every fused
//! operation against its reference: values and gradients.

pub mod conv;
pub mod ext;
pub mod kernels;
pub mod matmul;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::Dispatch;
use burn::nn::LayerNorm;
use burn::tensor::{DType, Device, Tensor};

use ext::FusedOps;

/// The fused operations `CAE_UNFUSED` turns off: unset, empty or `0` turns none off; a
/// comma-separated list of `ln`, `gelu`, `attn`, `linear`, `conv` turns off those; anything else
/// (e.g. `1`) all.
fn unfused() -> &'static [bool; Op::ALL.len()] {
    static OFF: OnceLock<[bool; Op::ALL.len()]> = OnceLock::new();
    OFF.get_or_init(|| {
        let v = std::env::var("CAE_UNFUSED").unwrap_or_default();
        let v = v.trim();
        if v.is_empty() || v == "0" {
            return [false; Op::ALL.len()];
        }
        let names: Vec<&str> = v.split(',').map(str::trim).collect();
        if names.iter().all(|n| Op::ALL.iter().any(|o| o.name() == *n)) {
            Op::ALL.map(|o| names.contains(&o.name()))
        } else {
            [true; Op::ALL.len()]
        }
    })
}

/// A fused operation, for turning it off alone (`CAE_UNFUSED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// LayerNorm.
    LayerNorm,
    /// GELU.
    Gelu,
    /// Multi-head attention.
    Attention,
    /// Linear layers (products written once, the bias as the product's start).
    Linear,
    /// Stride-1 convolutions as im2col + matrix products, forward and backward (the dense heads).
    Conv,
}

impl Op {
    const ALL: [Op; 5] = [Op::LayerNorm, Op::Gelu, Op::Attention, Op::Linear, Op::Conv];

    fn name(self) -> &'static str {
        match self {
            Op::LayerNorm => "ln",
            Op::Gelu => "gelu",
            Op::Attention => "attn",
            Op::Linear => "linear",
            Op::Conv => "conv",
        }
    }
}

/// Whether `CAE_UNFUSED` turns the fused `op` off.
pub fn disabled(op: Op) -> bool {
    unfused()[op as usize]
}

/// The default of [`attention_save_budget`]: 256 MiB, above a ViT-B pretraining step's
/// attention at batch 128 (237 MB a call) and far below a detection step's (1.5 GB a call at
/// 4,000 tokens, batch 2).
pub const ATTENTION_SAVE_MIB: usize = 256;

/// The bytes one fused attention call may keep for its backward pass: `CAE_ATTN_SAVE_MIB`
/// MiB (default [`ATTENTION_SAVE_MIB`]; `0` never saves). A call whose probabilities
/// (`B·H·Nq·Nk` f32) pass it saves nothing and its backward recomputes them head by head, the
/// same values bit for bit, for about a third more attention arithmetic in that pass.
pub fn attention_save_budget() -> usize {
    let b = SAVE_BUDGET.load(Ordering::Relaxed);
    if b != UNSET {
        return b;
    }
    let from_env = parse_save_mib(std::env::var("CAE_ATTN_SAVE_MIB").ok().as_deref())
        .saturating_mul(1 << 20)
        .min(UNSET - 1);
    let _ = SAVE_BUDGET.compare_exchange(UNSET, from_env, Ordering::Relaxed, Ordering::Relaxed);
    SAVE_BUDGET.load(Ordering::Relaxed)
}

/// Sets [`attention_save_budget`] in bytes for the rest of the process (benchmarks and tests;
/// results do not depend on it, only memory and time do).
pub fn set_attention_save_budget(bytes: usize) {
    SAVE_BUDGET.store(bytes.min(UNSET - 1), Ordering::Relaxed);
}

const UNSET: usize = usize::MAX;
static SAVE_BUDGET: AtomicUsize = AtomicUsize::new(UNSET);

/// `CAE_ATTN_SAVE_MIB`'s value in MiB: unset or empty is the default; a value that is not a
/// whole number is the default too, with a warning.
fn parse_save_mib(v: Option<&str>) -> usize {
    match v.map(str::trim) {
        None | Some("") => ATTENTION_SAVE_MIB,
        Some(v) => v.parse().unwrap_or_else(|_| {
            tracing::warn!(
                "CAE_ATTN_SAVE_MIB={v:?} is not a whole number of MiB: using {ATTENTION_SAVE_MIB}"
            );
            ATTENTION_SAVE_MIB
        }),
    }
}

/// Whether an attention call of `dims` keeps its probabilities within `budget` bytes.
pub fn saves_attention_probs(dims: kernels::AttentionDims, budget: usize) -> bool {
    let floats = dims.batch * dims.heads * dims.nq * dims.nk;
    floats.saturating_mul(std::mem::size_of::<f32>()) <= budget
}

/// Whether the fused kernels can run on `device` (the `flex` CPU device, with or without
/// autodiff).
pub fn supported(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// Whether the fused `op` runs for `x` (on by default, `f32` on the `flex` device).
pub fn use_fused<const D: usize>(op: Op, x: &Tensor<D>) -> bool {
    !disabled(op) && x.dtype() == DType::F32 && supported(&x.device())
}

/// `norm(x)` with the norm's epsilon `eps` (burn's `LayerNorm` keeps its epsilon private, so the
/// caller passes the value it built the norm with).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, eps: f64) -> Tensor<D> {
    match &norm.beta {
        Some(beta) if use_fused(Op::LayerNorm, &x) => {
            layer_norm_fused(x, norm.gamma.val(), beta.val(), eps)
        }
        _ => norm.forward(x),
    }
}

/// Exact-erf GELU.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if use_fused(Op::Gelu, &x) {
        gelu_fused(x)
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// A Linear layer on rows: `x @ weight + bias`.
///
/// # Shapes
/// `x: [R, D_in]`, `weight: [D_in, D_out]`, `bias: [D_out]` → `[R, D_out]`
///
/// Under bf16 autocast ([`crate::autocast`]) the operands are cast to bf16 and the product back
/// to f32, on burn's composed path.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    use crate::autocast::{active, lower, raise};
    if active() {
        raise(burn::tensor::module::linear(
            lower(x),
            lower(weight),
            bias.map(lower),
        ))
    } else if use_fused(Op::Linear, &x) {
        linear_fused(x, weight, bias)
    } else {
        burn::tensor::module::linear(x, weight, bias)
    }
}

/// Multi-head attention `softmax(q·s @ kᵀ) @ v` on token-major operands.
///
/// # Shapes
/// `q: [B, Nq, D]`, `k, v: [B, Nk, D]` → `[B, Nq, D]` (heads are blocks of `D / heads` columns)
///
/// Under bf16 autocast it runs the composed reference, whose products are bf16 and whose
/// softmax is f32.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    if use_fused(Op::Attention, &q) && !crate::autocast::active() {
        attention_fused(q, k, v, heads)
    } else {
        reference::attention(q, k, v, heads)
    }
}

/// Self-attention on a fused projection's output.
///
/// # Shapes
/// `qkv: [B, N, 3D]` (queries, keys, values side by side) → `[B, N, D]`
pub fn attention_packed(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    if use_fused(Op::Attention, &qkv) && !crate::autocast::active() {
        attention_packed_fused(qkv, heads)
    } else {
        let [_, _, d3] = qkv.dims();
        let d = d3 / 3;
        reference::attention(
            qkv.clone().narrow(2, 0, d),
            qkv.clone().narrow(2, d, d),
            qkv.narrow(2, 2 * d, d),
            heads,
        )
    }
}

/// The fused LayerNorm (flex only).
pub fn layer_norm_fused<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ))
}

/// The fused GELU (flex only).
pub fn gelu_fused<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()))
}

/// The fused Linear layer (flex only).
pub fn linear_fused(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    Tensor::from_dispatch(match bias {
        Some(b) => <Dispatch as FusedOps>::fused_linear(
            x.into_dispatch(),
            weight.into_dispatch(),
            b.into_dispatch(),
        ),
        None => {
            <Dispatch as FusedOps>::fused_linear_no_bias(x.into_dispatch(), weight.into_dispatch())
        }
    })
}

/// The fused stride-1 convolution (flex only; see [`conv`]), zero padding
/// `[top, left, bottom, right]`.
///
/// # Shapes
/// `x: [B, C, H, W]`, `weight: [O, C, kh, kw]`, `bias: [O]` → `[B, O, H + top + bottom − kh + 1,
/// W + left + right − kw + 1]`
pub fn conv2d_fused(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    padding: [usize; 4],
) -> Tensor<4> {
    Tensor::from_dispatch(match bias {
        Some(b) => <Dispatch as FusedOps>::fused_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            b.into_dispatch(),
            padding,
        ),
        None => <Dispatch as FusedOps>::fused_conv2d_no_bias(
            x.into_dispatch(),
            weight.into_dispatch(),
            padding,
        ),
    })
}

/// The fused attention (flex only).
pub fn attention_fused(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        heads,
    ))
}

/// The fused self-attention on packed `qkv` (flex only).
pub fn attention_packed_fused(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention_packed(
        qkv.into_dispatch(),
        heads,
    ))
}

/// The same operations composed from burn's primitives: the fallback, and what the tests compare
/// the kernels with.
pub mod reference {
    use crate::autocast::matmul;
    use burn::tensor::Tensor;
    use burn::tensor::activation::softmax;

    /// `softmax(q·scale @ kᵀ) @ v`, as the official code computes it (scale applied to `q`).
    /// Under bf16 autocast both products are bf16 ([`crate::autocast::matmul`]); the bias and
    /// the softmax are f32.
    ///
    /// # Shapes
    /// `q: [B, H, Nq, hd]`, `k, v: [B, H, Nk, hd]`, `bias: [H, Nq, Nk]` → `[B, H, Nq, hd]`
    pub fn scaled_dot_product(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<3>>,
    ) -> Tensor<4> {
        let hd = q.dims()[3];
        let q = q.mul_scalar((hd as f64).powf(-0.5));
        let mut attn = matmul(q, k.swap_dims(2, 3)); // [B, H, Nq, Nk]
        if let Some(bias) = bias {
            attn = attn + bias.unsqueeze_dim(0);
        }
        matmul(softmax(attn, 3), v)
    }

    /// `[B, N, D]` → `[B, H, N, D/H]`.
    pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
        let [b, n, d] = x.dims();
        x.reshape([b, n, heads, d / heads]).swap_dims(1, 2)
    }

    /// `[B, H, N, hd]` → `[B, N, H·hd]`.
    pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
        let [b, h, n, hd] = x.dims();
        x.swap_dims(1, 2).reshape([b, n, h * hd])
    }

    /// Multi-head attention on token-major operands (see [`super::attention`]).
    pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
        merge_heads(scaled_dot_product(
            split_heads(q, heads),
            split_heads(k, heads),
            split_heads(v, heads),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    fn dev() -> Device {
        Device::flex().autodiff()
    }

    /// Normal(0, 1) values drawn from a seeded CPU generator: the device RNG is one global
    /// state that tests running in parallel reseed and draw from, so two draws "with the same
    /// seed" there may differ.
    fn rand<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<D> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        // Box-Muller.
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Tensor::<D>::from_data(burn::tensor::TensorData::new(values, shape), &dev()).require_grad()
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    fn assert_close(name: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{name}: lengths");
        let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        let worst = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= tol * scale,
            "{name}: max |Δ| = {worst} (scale {scale})"
        );
    }

    /// A loss that weighs every output element differently, so the gradients are not all alike.
    fn weighted<const D: usize>(y: Tensor<D>, seed: u64) -> Tensor<1> {
        let w = rand(y.dims(), seed).detach();
        (y * w).sum()
    }

    #[test]
    fn layer_norm_matches_the_reference_values_and_gradients() {
        for (rows, c) in [(37, 48), (70, 128), (3, 5)] {
            let x = rand([rows, c], 1);
            let gamma = rand([c], 2);
            let beta = rand([c], 3);
            let mut norm = burn::nn::LayerNormConfig::new(c)
                .with_epsilon(1e-6)
                .init(&dev());
            norm.gamma = burn::module::Param::from_tensor(gamma.clone());
            norm.beta = Some(burn::module::Param::from_tensor(beta.clone()));
            let want = norm.forward(x.clone());
            let got = layer_norm_fused(x.clone(), gamma.clone(), beta.clone(), 1e-6);
            assert_close("ln y", &vals(got.clone()), &vals(want.clone()), 1e-5);
            let gw = weighted(want, 9).backward();
            let gg = weighted(got, 9).backward();
            assert_close(
                "ln dx",
                &vals(x.grad(&gg).unwrap()),
                &vals(x.grad(&gw).unwrap()),
                1e-5,
            );
            assert_close(
                "ln dgamma",
                &vals(gamma.grad(&gg).unwrap()),
                &vals(gamma.grad(&gw).unwrap()),
                1e-5,
            );
            assert_close(
                "ln dbeta",
                &vals(beta.grad(&gg).unwrap()),
                &vals(beta.grad(&gw).unwrap()),
                1e-5,
            );
        }
    }

    #[test]
    fn gelu_matches_the_reference_values_and_gradients() {
        let x = rand([50_001], 4).mul_scalar(3.0).detach().require_grad();
        let want = burn::tensor::activation::gelu(x.clone());
        let got = gelu_fused(x.clone());
        assert_close("gelu y", &vals(got.clone()), &vals(want.clone()), 1e-6);
        let gw = weighted(want, 5).backward();
        let gg = weighted(got, 5).backward();
        assert_close(
            "gelu dx",
            &vals(x.grad(&gg).unwrap()),
            &vals(x.grad(&gw).unwrap()),
            1e-6,
        );
    }

    #[test]
    fn attention_matches_the_reference_values_and_gradients() {
        for (b, nq, nk, heads, d) in [(3, 9, 17, 2, 16), (2, 33, 33, 4, 128), (1, 1, 1, 1, 8)] {
            let q = rand([b, nq, d], 6);
            let k = rand([b, nk, d], 7);
            let v = rand([b, nk, d], 8);
            let want = reference::attention(q.clone(), k.clone(), v.clone(), heads);
            let got = attention_fused(q.clone(), k.clone(), v.clone(), heads);
            assert_close("attn y", &vals(got.clone()), &vals(want.clone()), 1e-5);
            let gw = weighted(want, 10).backward();
            let gg = weighted(got, 10).backward();
            for (name, t) in [("dq", &q), ("dk", &k), ("dv", &v)] {
                assert_close(
                    name,
                    &vals(t.grad(&gg).unwrap()),
                    &vals(t.grad(&gw).unwrap()),
                    1e-5,
                );
            }
        }
    }

    #[test]
    fn attention_over_the_save_budget_recomputes_with_the_same_bits() {
        fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
            vals(t).iter().map(|x| x.to_bits()).collect()
        }
        let run = |budget: usize| {
            set_attention_save_budget(budget);
            let qkv = rand([2, 13, 96], 21);
            let q = rand([2, 9, 32], 22);
            let kv = rand([2, 13, 64], 23);
            let packed = attention_packed_fused(qkv.clone(), 2);
            let sep = attention_fused(
                q.clone(),
                kv.clone().narrow(2, 0, 32),
                kv.clone().narrow(2, 32, 32),
                2,
            );
            let g = (weighted(packed.clone(), 24) + weighted(sep.clone(), 25)).backward();
            let grads = [
                qkv.grad(&g).unwrap(),
                q.grad(&g).unwrap(),
                kv.grad(&g).unwrap(),
            ];
            (bits(packed), bits(sep), grads.map(bits))
        };
        let saved = run(usize::MAX);
        let recomputed = run(0);
        set_attention_save_budget(ATTENTION_SAVE_MIB << 20);
        assert!(
            saved == recomputed,
            "outputs and gradients differ between the two modes"
        );
        // The rule: B·H·Nq·Nk f32 against the budget, inclusive.
        let dims = |batch, n| kernels::AttentionDims {
            batch,
            nq: n,
            nk: n,
            heads: 12,
            head_dim: 64,
            scale: 0.125,
        };
        let vit_b_pretrain = dims(128, 197);
        assert!(saves_attention_probs(
            vit_b_pretrain,
            ATTENTION_SAVE_MIB << 20
        ));
        let vit_b_detect = dims(2, 4000);
        assert!(!saves_attention_probs(
            vit_b_detect,
            ATTENTION_SAVE_MIB << 20
        ));
        let exact = 2 * 12 * 4000 * 4000 * 4;
        assert!(saves_attention_probs(vit_b_detect, exact));
        assert!(!saves_attention_probs(vit_b_detect, exact - 1));
        assert_eq!(parse_save_mib(None), ATTENTION_SAVE_MIB);
        assert_eq!(parse_save_mib(Some(" 64 ")), 64);
        assert_eq!(parse_save_mib(Some("0")), 0);
        assert_eq!(parse_save_mib(Some("lots")), ATTENTION_SAVE_MIB);
    }

    #[test]
    fn packed_attention_matches_the_reference_values_and_gradients() {
        let (b, n, heads, d) = (3, 13, 2, 32);
        let qkv = rand([b, n, 3 * d], 11);
        let want = reference::attention(
            qkv.clone().narrow(2, 0, d),
            qkv.clone().narrow(2, d, d),
            qkv.clone().narrow(2, 2 * d, d),
            heads,
        );
        let got = attention_packed_fused(qkv.clone(), heads);
        assert_close("packed y", &vals(got.clone()), &vals(want.clone()), 1e-5);
        let gw = weighted(want, 12).backward();
        let gg = weighted(got, 12).backward();
        assert_close(
            "dqkv",
            &vals(qkv.grad(&gg).unwrap()),
            &vals(qkv.grad(&gw).unwrap()),
            1e-5,
        );
    }

    #[test]
    fn linear_matches_the_reference_values_and_gradients() {
        for (rows, d_in, d_out) in [(37, 24, 40), (2112, 128, 384), (1, 1, 1)] {
            for with_bias in [true, false] {
                let x = rand([rows, d_in], 13);
                let w = rand([d_in, d_out], 14);
                let b = rand([d_out], 15);
                let bias = with_bias.then(|| b.clone());
                let want = burn::tensor::module::linear(x.clone(), w.clone(), bias.clone());
                let got = linear_fused(x.clone(), w.clone(), bias);
                assert_close("linear y", &vals(got.clone()), &vals(want.clone()), 1e-5);
                let gw = weighted(want, 16).backward();
                let gg = weighted(got, 16).backward();
                for (name, t) in [("dx", &x), ("dw", &w)] {
                    assert_close(
                        name,
                        &vals(t.grad(&gg).unwrap()),
                        &vals(t.grad(&gw).unwrap()),
                        1e-5,
                    );
                }
                if with_bias {
                    assert_close(
                        "db",
                        &vals(b.grad(&gg).unwrap()),
                        &vals(b.grad(&gw).unwrap()),
                        1e-5,
                    );
                } else {
                    assert!(b.grad(&gg).is_none(), "an unused bias gets no gradient");
                }
            }
        }
    }

    #[test]
    fn linear_leaves_frozen_operands_without_gradients() {
        let frozen = |shape: [usize; 2], seed| {
            Tensor::<2>::from_data(
                burn::tensor::TensorData::new(vals(rand(shape, seed)), shape),
                &dev(),
            )
        };
        let x = frozen([9, 6], 17);
        let b = frozen([1, 5], 19).reshape([5]);
        let w = rand([6, 5], 18);
        let g = linear_fused(x.clone(), w.clone(), Some(b.clone()))
            .sum()
            .backward();
        assert!(x.grad(&g).is_none() && b.grad(&g).is_none());
        let dw = vals(w.grad(&g).unwrap());
        // d(Σ x·W)/dW[i][j] = Σ_rows x[r][i].
        let xs = vals(x);
        for (i, row) in dw.chunks(5).enumerate() {
            let want: f32 = (0..9).map(|r| xs[r * 6 + i]).sum();
            assert_close("dw", row, &[want; 5], 1e-5);
        }
        // Nothing tracked: the product runs untracked.
        let y = linear_fused(frozen([3, 6], 20), frozen([6, 5], 21), None);
        assert!(!y.is_require_grad());
    }

    #[test]
    fn conv_matches_burn_values_and_gradients() {
        use burn::nn::PaddingConfig2d;
        use burn::nn::conv::Conv2dConfig;
        for (k, pad, bias, shape) in [
            (3, [1, 1, 1, 1], false, [2, 4, 6, 5]),
            (3, [0, 0, 0, 0], true, [1, 3, 5, 7]),
            (3, [2, 0, 1, 3], true, [2, 2, 4, 4]),
            (1, [0, 0, 0, 0], true, [3, 5, 4, 3]),
            (1, [1, 1, 1, 1], false, [1, 3, 3, 3]),
            (5, [2, 2, 2, 2], true, [1, 2, 6, 6]),
        ] {
            let [top, left, bottom, right] = pad;
            let mut conv = Conv2dConfig::new([shape[1], 3], [k, k])
                .with_bias(bias)
                .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
                .init(&dev());
            let w = rand([3, shape[1], k, k], 22);
            conv.weight = burn::module::Param::from_tensor(w.clone());
            let b = rand([3], 23);
            if bias {
                conv.bias = Some(burn::module::Param::from_tensor(b.clone()));
            }
            let x = rand(shape, 24);
            let want = conv.forward(x.clone());
            let got = conv2d_fused(x.clone(), w.clone(), bias.then(|| b.clone()), pad);
            assert_eq!(got.dims(), want.dims(), "k {k}, pad {pad:?}");
            assert_close("conv y", &vals(got.clone()), &vals(want.clone()), 1e-5);
            let gw = weighted(want, 25).backward();
            let gg = weighted(got, 25).backward();
            assert_close(
                "conv dx",
                &vals(x.grad(&gg).unwrap()),
                &vals(x.grad(&gw).unwrap()),
                1e-5,
            );
            assert_close(
                "conv dw",
                &vals(w.grad(&gg).unwrap()),
                &vals(w.grad(&gw).unwrap()),
                1e-5,
            );
            if bias {
                assert_close(
                    "conv db",
                    &vals(b.grad(&gg).unwrap()),
                    &vals(b.grad(&gw).unwrap()),
                    1e-5,
                );
            }
        }
    }

    #[test]
    fn fused_ops_run_without_autodiff_and_are_deterministic() {
        let d = Device::flex();
        let x = Tensor::<3>::random([4, 10, 96], Distribution::Normal(0.0, 1.0), &d);
        let a = vals(attention_packed_fused(x.clone(), 2));
        let b = vals(attention_packed_fused(x.clone(), 2));
        assert_eq!(a, b);
        let y = vals(gelu_fused(x.clone()));
        assert_eq!(y, vals(gelu_fused(x.clone())));
        let rows = x.reshape([40, 96]);
        let w = Tensor::<2>::random([96, 7], Distribution::Normal(0.0, 1.0), &d);
        let l = vals(linear_fused(rows.clone(), w.clone(), None));
        assert_eq!(l, vals(linear_fused(rows.clone(), w.clone(), None)));
        assert_close("linear", &l, &vals(rows.matmul(w)), 1e-5);
    }

    #[test]
    fn other_devices_take_the_reference_path() {
        assert!(supported(&Device::flex()));
        assert!(supported(&Device::flex().autodiff()));
    }
}
