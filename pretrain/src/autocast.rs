//! Mixed precision: bf16 compute with f32 master weights, the rules of PyTorch's autocast.
//!
//! The papers train with fp16 (apex O1 / `torch.cuda.amp`): weights, gradients and AdamW's moments
//! stay in f32, and only the matrix products run in half precision. bf16 has f32's exponent
//! range, so it needs no loss scaling. Under [`Precision::Bf16`]:
//!
//! * matrix products (Linear layers, attention's `q·kᵀ` and `p·v`) and convolutions cast their
//!   f32 operands to bf16, multiply, and cast the product back to f32 ([`matmul`],
//!   [`crate::fused::linear`], [`conv2d`]). Products accumulate in f32 on every backend that
//!   runs them (burn-flex converts its bf16 operands to f32 for `gemm`; CUDA's bf16 tensor cores
//!   accumulate in f32), so what bf16 changes is the rounding of each product's inputs and output;
//! * everything else stays f32, as under autocast: LayerNorm, softmax, GELU, the residual sums,
//!   the losses and every reduction;
//! * the backward pass follows the casts: a parameter's gradient comes out of a bf16 product,
//!   is cast to f32 by the cast's backward and lands on the f32 parameter, so AdamW updates f32
//!   master weights with f32 state;
//! * the DALL-E tokenizer makes its targets in f32, as the official code does (outside autocast).
//!
//! The precision is the calling thread's ([`autocast`] sets it for a scope, like
//! `torch.autocast`); a step that fans out to threads passes it on ([`current`]).

use std::cell::Cell;
use std::marker::PhantomData;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d as conv2d_op;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::PretrainError;

/// The precision of a step's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products and convolutions in bf16, the rest in f32 (module docs).
    Bf16,
}

impl Precision {
    /// Every precision, in the order the command line lists them.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The name used on the command line and in records: `f32`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this is plain f32.
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// An error unless `device` can compute in this precision.
    pub fn check_device(self, device: &Device) -> Result<(), PretrainError> {
        match self {
            Precision::F32 => Ok(()),
            Precision::Bf16 if device.supports_dtype(DType::BF16) => Ok(()),
            Precision::Bf16 => Err(PretrainError::Config(format!(
                "precision bf16: the device {device:?} has no bf16 tensors (use --precision f32)"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = PretrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                PretrainError::Config(format!("unknown precision {s:?} (expected f32 or bf16)"))
            })
    }
}

thread_local! {
    static COMPUTE: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The calling thread's compute precision.
pub fn current() -> Precision {
    COMPUTE.with(Cell::get)
}

/// Whether the calling thread computes its products in bf16.
pub fn active() -> bool {
    current() == Precision::Bf16
}

/// Sets the calling thread's compute precision until the guard drops (then the previous one
/// is back).
#[must_use = "the precision holds only while the guard lives"]
pub fn autocast(precision: Precision) -> AutocastGuard {
    let previous = COMPUTE.with(|c| c.replace(precision));
    AutocastGuard {
        previous,
        _thread: PhantomData,
    }
}

/// Restores the previous compute precision when dropped (see [`autocast`]); bound to its thread.
pub struct AutocastGuard {
    previous: Precision,
    _thread: PhantomData<*const ()>,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        COMPUTE.with(|c| c.set(self.previous));
    }
}

/// `x` in the compute dtype: bf16 when autocast is on and `x` is f32, else `x` itself.
pub fn lower<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if active() && x.dtype() == DType::F32 {
        x.cast(FloatDType::BF16)
    } else {
        x
    }
}

/// `x` in f32 (a product's output under autocast), else `x` itself.
pub fn raise<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::BF16 {
        x.cast(FloatDType::F32)
    } else {
        x
    }
}

/// `a @ b`, in bf16 under autocast (the product back in f32).
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if active() {
        raise(lower(a).matmul(lower(b)))
    } else {
        a.matmul(b)
    }
}

/// `conv.forward(x)`, in bf16 under autocast (weights, bias and input cast, the output back in
/// f32). Explicit or valid padding only under autocast; `Same` padding runs in f32.
///
/// # Shapes
/// `x: [B, C_in, H, W] → [B, C_out, H', W']`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    };
    match padding.filter(|_| active()) {
        Some(padding) => raise(conv2d_op(
            lower(x),
            lower(conv.weight.val()),
            conv.bias.as_ref().map(|b| lower(b.val())),
            ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups),
        )),
        None => conv.forward(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn the_guard_scopes_the_precision_to_its_thread() {
        assert_eq!(current(), Precision::F32);
        {
            let _g = autocast(Precision::Bf16);
            assert!(active());
            {
                let _inner = autocast(Precision::F32);
                assert!(!active());
            }
            assert!(active());
            std::thread::spawn(|| assert!(!active())).join().unwrap();
        }
        assert!(!active());
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("fp16") && err.contains("bf16"), "{err}");
        assert!(Precision::Bf16.check_device(&Device::flex()).is_ok());
    }

    #[test]
    fn products_round_their_operands_to_bf16_and_return_f32() {
        let device = Device::flex();
        let a = Tensor::<2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([16, 4], Distribution::Normal(0.0, 1.0), &device);
        let exact = a.clone().matmul(b.clone());
        let rounded = a
            .clone()
            .cast(FloatDType::BF16)
            .cast(FloatDType::F32)
            .matmul(b.clone().cast(FloatDType::BF16).cast(FloatDType::F32))
            .cast(FloatDType::BF16)
            .cast(FloatDType::F32);
        let y = {
            let _g = autocast(Precision::Bf16);
            matmul(a.clone(), b.clone())
        };
        assert_eq!(y.dtype(), DType::F32);
        // The product of the rounded operands, accumulated in f32, rounded once more.
        y.to_data()
            .assert_approx_eq::<f32>(&rounded.to_data(), Tolerance::absolute(1e-6));
        // bf16 keeps 8 significant bits: each operand is off by up to 2^-9 relative.
        let diff = (y - exact.clone()).abs().max().into_scalar::<f32>();
        let scale = exact.abs().max().into_scalar::<f32>();
        assert!(diff > 0.0 && diff < 0.05 * scale, "{diff} vs {scale}");
        // Off, it is the f32 product.
        assert_eq!(
            matmul(a.clone(), b.clone()).to_data(),
            a.matmul(b).to_data()
        );
    }

    #[test]
    fn a_convolution_under_autocast_matches_its_f32_self_to_bf16_rounding() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([3, 8], [4, 4])
            .with_stride([4, 4])
            .init(&device);
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let exact = conv.forward(x.clone());
        let y = {
            let _g = autocast(Precision::Bf16);
            conv2d(&conv, x)
        };
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(y.dims(), exact.dims());
        let diff = (y - exact.clone()).abs().max().into_scalar::<f32>();
        let scale = exact.abs().max().into_scalar::<f32>();
        assert!(diff > 0.0 && diff < 0.05 * scale, "{diff} vs {scale}");
    }
}
