//! Criterion benchmarks of the dense heads' ops computed as matrix products against burn-flex's
//! direct kernels, forward + backward on `Autodiff<flex>`, at the shapes of the `mini`
//! segmentation recipe (64 channels, 32×32 maps, batch 8) and of UperNet's logits:
//! `cargo bench -p cae-heads --bench dense_ops`.
//!
//! * 1×1 convolution: `conv_module::conv2d` (one batched product) vs `Conv2d::forward`;
//! * transposed convolution with kernel = stride (the neck's ×2): `conv_module::conv_transpose2d`
//!   vs `ConvTranspose2d::forward`;
//! * bilinear resize (`align_corners = False`): `conv_module::resize_bilinear` (two products) vs
//!   burn's `interpolate`.
//!
//! The unit tests of `conv_module` check that both sides give the same values and gradients.
//! `cae-bench bench ops` and `benches/ops_side_by_side.py` put the heads' paths beside PyTorch.

use std::time::Duration;

use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Tensor};
use cae_heads::segmentation::conv_module::{conv_transpose2d, conv2d, resize_bilinear};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn rand(shape: [usize; 4], dev: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), dev).require_grad()
}

fn bench(c: &mut Criterion) {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let mut group = c.benchmark_group("dense_ops");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));

    let conv = Conv2dConfig::new([256, 64], [1, 1]).init(&dev);
    let x = rand([8, 256, 32, 32], &dev);
    for (side, on) in [("matmul", true), ("burn", false)] {
        group.bench_with_input(
            BenchmarkId::new("conv1x1_256to64_8x32x32", side),
            &on,
            |b, &on| {
                b.iter(|| {
                    let y = if on {
                        conv2d(&conv, x.clone())
                    } else {
                        conv.forward(x.clone())
                    };
                    let _ = y.sum().backward();
                })
            },
        );
    }

    let deconv = ConvTranspose2dConfig::new([128, 128], [2, 2])
        .with_stride([2, 2])
        .init(&dev);
    let x = rand([8, 128, 8, 8], &dev);
    for (side, on) in [("matmul", true), ("burn", false)] {
        group.bench_with_input(
            BenchmarkId::new("deconv2x2s2_128_8x8x8", side),
            &on,
            |b, &on| {
                b.iter(|| {
                    let y = if on {
                        conv_transpose2d(&deconv, x.clone())
                    } else {
                        deconv.forward(x.clone())
                    };
                    let _ = y.sum().backward();
                })
            },
        );
    }

    for (name, shape, size) in [
        ("resize_8x12x8x8_to_32x32", [8, 12, 8, 8], [32, 32]),
        (
            "resize_2x150x64x64_to_256x256",
            [2, 150, 64, 64],
            [256, 256],
        ),
    ] {
        let x = rand(shape, &dev);
        for (side, on) in [("matmul", true), ("burn", false)] {
            group.bench_with_input(BenchmarkId::new(name, side), &on, |b, &on| {
                b.iter(|| {
                    let y = if on {
                        resize_bilinear(x.clone(), size)
                    } else {
                        interpolate(
                            x.clone(),
                            InterpolateOptions::new(InterpolateMode::Bilinear)
                                .with_align_corners(false)
                                .with_output_size(size),
                        )
                    };
                    let _ = y.sum().backward();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
