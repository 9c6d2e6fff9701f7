//! Criterion benchmark of a full CAE pretraining step (forward, backward, AdamW) on the default
//! CPU backend: `cargo bench -p cae-pretrain --bench train_step`.
//!
//! `CAE_BENCH_PRESETS` (comma-separated, default `mini`) picks the presets; the batch is 64 for
//! `mini` and 8 otherwise, as in `cae-bench bench pretrain`.

use std::time::Duration;

use burn::tensor::Device;
use cae_pretrain::CaeConfig;
use cae_pretrain::train::bench::StepBench;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let presets = std::env::var("CAE_BENCH_PRESETS").unwrap_or_else(|_| "mini".into());
    let mut group = c.benchmark_group("pretrain_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    for preset in presets.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let cfg = CaeConfig::preset(preset).expect("a known preset");
        let batch = if preset == "mini" { 64 } else { 8 };
        let mut harness = StepBench::new(&cfg, batch, &Device::flex()).expect("a valid preset");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{preset}/batch{batch}"), |b| {
            b.iter(|| harness.step().expect("a training step"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
