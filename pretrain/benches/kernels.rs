//! Criterion benchmarks of the fused CPU kernels against the same operations composed from
//! burn's primitives (what `CAE_UNFUSED` runs), forward + backward on `Autodiff<flex>`, at the
//! shapes of one thread's piece of a `mini` batch-64 step (32 images, 65 tokens, width 128,
//! 4 heads, MLP 512; the Linear layer is the MLP's `fc1`), and the stride-1 convolution at the
//! detection FPN's 3×3 shape against burn's convolution:
//! `cargo bench -p cae-pretrain --bench kernels`.
//!
//! The tests in `cae_pretrain::fused` check that both sides compute the same values and
//! gradients; this says what the fused side buys.

use std::time::Duration;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use cae_pretrain::fused;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const B: usize = 32;
const N: usize = 65;
const D: usize = 128;
const HEADS: usize = 4;
const MLP: usize = 512;
const EPS: f64 = 1e-6;

fn rand<const R: usize>(shape: [usize; R], dev: &Device) -> Tensor<R> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), dev).require_grad()
}

fn layer_norm(norm: &LayerNorm, x: Tensor<3>, fused: bool) -> Tensor<3> {
    match (&norm.beta, fused) {
        (Some(beta), true) => fused::layer_norm_fused(x, norm.gamma.val(), beta.val(), EPS),
        _ => norm.forward(x),
    }
}

fn bench(c: &mut Criterion) {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let mut group = c.benchmark_group("fused_kernels");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    let x = rand([B, N, D], &dev);
    let norm = LayerNormConfig::new(D).with_epsilon(EPS).init(&dev);
    let h = rand([B, N, MLP], &dev);
    let qkv = rand([B, N, 3 * D], &dev);
    let (w1, b1) = (rand([D, MLP], &dev), rand([MLP], &dev));
    // The detection FPN's 3×3 convolution at a quarter of its channels: 2 × 64 × 64 × 64.
    let img = rand([2, 64, 64, 64], &dev);
    let conv = Conv2dConfig::new([64, 64], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&dev);
    for (side, on) in [("fused", true), ("composed", false)] {
        group.bench_with_input(BenchmarkId::new("layer_norm", side), &on, |b, &on| {
            b.iter(|| {
                let _ = layer_norm(&norm, x.clone(), on).sum().backward();
            })
        });
        group.bench_with_input(BenchmarkId::new("gelu", side), &on, |b, &on| {
            b.iter(|| {
                let y = if on {
                    fused::gelu_fused(h.clone())
                } else {
                    burn::tensor::activation::gelu(h.clone())
                };
                let _ = y.sum().backward();
            })
        });
        group.bench_with_input(BenchmarkId::new("linear", side), &on, |b, &on| {
            b.iter(|| {
                let rows = x.clone().reshape([B * N, D]);
                let y = if on {
                    fused::linear_fused(rows, w1.clone(), Some(b1.clone()))
                } else {
                    burn::tensor::module::linear(rows, w1.clone(), Some(b1.clone()))
                };
                let _ = y.sum().backward();
            })
        });
        group.bench_with_input(BenchmarkId::new("conv3x3", side), &on, |b, &on| {
            b.iter(|| {
                let y = if on {
                    fused::conv2d_fused(img.clone(), conv.weight.val(), None, [1; 4])
                } else {
                    conv.forward(img.clone())
                };
                let _ = y.sum().backward();
            })
        });
        group.bench_with_input(BenchmarkId::new("attention", side), &on, |b, &on| {
            b.iter(|| {
                let y = if on {
                    fused::attention_packed_fused(qkv.clone(), HEADS)
                } else {
                    fused::reference::attention(
                        qkv.clone().narrow(2, 0, D),
                        qkv.clone().narrow(2, D, D),
                        qkv.clone().narrow(2, 2 * D, D),
                        HEADS,
                    )
                };
                let _ = y.sum().backward();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
