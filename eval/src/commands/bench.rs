//! `cae-bench bench …`: throughput benchmarks.

use anyhow::Context;
use clap::{Args, Subcommand};

use cae_pretrain::CaeConfig;
use cae_pretrain::autocast::{Precision, autocast};
use cae_pretrain::device::parse_device;
use cae_pretrain::train::bench::bench_pretrain_step;

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Images per second of a full pretraining step (forward, backward, AdamW) on random data.
    Pretrain(BenchPretrainArgs),
    /// Forward + backward time of the dense heads' ops (convolutions, transposed convolution,
    /// max-pool, bilinear resize, RoIAlign) at the shapes UperNet and Mask R-CNN use; the rows
    /// and shapes of `benches/torch_ops.py`.
    Ops(BenchOpsArgs),
    /// Milliseconds of a whole UperNet training iteration (forward, backward, AdamW with the
    /// layer-decay groups) on a fixed synthetic batch: the work of `benches/torch_seg_twin.py`.
    Segment(BenchSegmentArgs),
    /// Milliseconds of a whole Mask R-CNN training iteration (forward, backward, AdamW with the
    /// layer-decay groups) on a fixed synthetic batch: the work of `benches/torch_det_twin.py`.
    Detect(BenchDetectArgs),
}

/// `cae-bench bench detect`.
#[derive(Debug, Args)]
pub struct BenchDetectArgs {
    /// Recipe preset: mini (32×32, batch 4 in groups of 2) or paper (ViT-B, 800×1088, batch 1 by
    /// default).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Images per iteration [default: 4 for mini, 1 for paper].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Input size HxW in pixels, whole patches [default: 32x32 for mini, 800x1088 for paper].
    #[arg(long, value_parser = parse_hw)]
    pub size: Option<[usize; 2]>,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the matrix products and convolutions: f32, or bf16 with f32 master
    /// weights, norms and losses (README, "Mixed precision").
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_hw(s: &str) -> Result<[usize; 2], String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not HxW (e.g. 800x1088)"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{v}` in `{s}` is not a positive number of pixels"))
    };
    Ok([side(h)?, side(w)?])
}

/// `cae-bench bench segment`.
#[derive(Debug, Args)]
pub struct BenchSegmentArgs {
    /// Recipe preset: mini (crop 32, batch 8) or paper (ViT-B, crop 512, batch 2 by default).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Images per iteration [default: 8 for mini, 2 for paper].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the matrix products and convolutions: f32, or bf16 with f32 master
    /// weights, norms and losses (README, "Mixed precision").
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// `cae-bench bench ops`.
#[derive(Debug, Args)]
pub struct BenchOpsArgs {
    /// Timed repetitions per op (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed warm-up repetitions per op.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Only the rows whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `cae-bench bench pretrain`.
#[derive(Debug, Args)]
pub struct BenchPretrainArgs {
    /// Model preset (test, mini, vit_tiny_patch16, vit_small_patch16, vit_base_patch16, vit_large_patch16).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Batch size [default: 64 for mini, 8 otherwise].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the step's matrix products: f32, or bf16 with f32 master weights (README,
    /// "Mixed precision").
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Pretrain(args) => pretrain(args),
        BenchCommand::Ops(args) => ops(args),
        BenchCommand::Segment(args) => segment(args),
        BenchCommand::Detect(args) => detect(args),
    }
}

fn detect(args: BenchDetectArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iters >= 1, "--iters must be at least 1");
    let device = parse_device(&args.device)?;
    args.precision.check_device(&device)?;
    let _precision = autocast(args.precision);
    let r = crate::protocols::coco::bench_mask_rcnn_iteration(
        &args.preset,
        args.batch,
        args.size,
        args.iters,
        args.warmup,
        &device,
    )
    .context("running the detection benchmark")?;
    let mut v = serde_json::to_value(&r)?;
    v["precision"] = args.precision.name().into();
    print_iterations(
        v,
        &r.ms,
        "detect",
        &args.device,
        args.json,
        |median, best, threads| {
            format!(
                "cae-bench detect {} batch {} at {}x{} ({threads} threads): median {median:.1} ms/iter, \
             best {best:.1} ms over {} iters, loss {:.4}, {} proposals, {} box RoIs, {} mask RoIs, \
             {} params",
                r.preset,
                r.batch,
                r.size[0],
                r.size[1],
                r.ms.len(),
                r.loss,
                r.proposals,
                r.box_rois,
                r.mask_rois,
                r.params
            )
        },
    );
    Ok(())
}

fn segment(args: BenchSegmentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iters >= 1, "--iters must be at least 1");
    let device = parse_device(&args.device)?;
    args.precision.check_device(&device)?;
    let _precision = autocast(args.precision);
    let r = crate::protocols::ade20k::bench_upernet_iteration(
        &args.preset,
        args.batch,
        args.iters,
        args.warmup,
        &device,
    )
    .context("running the segmentation benchmark")?;
    let mut v = serde_json::to_value(&r)?;
    v["precision"] = args.precision.name().into();
    print_iterations(
        v,
        &r.ms,
        "segment",
        &args.device,
        args.json,
        |median, best, threads| {
            format!(
                "cae-bench segment {} batch {} crop {} ({threads} threads): median {median:.1} ms/iter, \
             best {best:.1} ms over {} iters, loss {:.4}, {} params",
                r.preset,
                r.batch,
                r.crop,
                r.ms.len(),
                r.loss,
                r.params
            )
        },
    );
    Ok(())
}

/// Prints a whole-iteration benchmark: `v` (its serialised result) with the median and best of
/// `ms`, the task, threads, device and peak RSS as one JSON object, or the line `text` makes from
/// the median, the best and the thread count.
fn print_iterations(
    mut v: serde_json::Value,
    ms: &[f64],
    task: &str,
    device: &str,
    json: bool,
    text: impl FnOnce(f64, f64, usize) -> String,
) {
    let threads = rayon::current_num_threads();
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (median, best) = (sorted[sorted.len() / 2], sorted[0]);
    if json {
        v["task"] = task.into();
        v["ms_median"] = median.into();
        v["ms_best"] = best.into();
        v["threads"] = threads.into();
        v["device"] = device.into();
        v["peak_rss_mib"] = peak_rss_mib().into();
        println!("{v}");
    } else {
        println!("{}", text(median, best, threads));
    }
}

/// The op rows: name and a closure running forward + backward once (inputs made inside, before
/// the clock starts, is not needed: they are built once and cloned).
fn ops(args: BenchOpsArgs) -> anyhow::Result<()> {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::tensor::module::max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;
    use burn::tensor::{Distribution, Tensor};
    use cae_heads::detection::roi_align::{Roi, RoiAlignConfig, roi_align};
    use cae_heads::segmentation::conv_module::resize_bilinear;

    anyhow::ensure!(args.reps >= 1, "--reps must be at least 1");
    let device = parse_device(&args.device)?.autodiff();
    device.seed(0);
    let rand = |shape: [usize; 4]| {
        Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
    };
    let sync = |d: &burn::tensor::Device| d.sync().map_err(|e| anyhow::anyhow!("{e:?}"));
    type Row<'a> = (&'static str, Box<dyn Fn() -> anyhow::Result<()> + 'a>);
    let conv = |c_in: usize,
                c_out: usize,
                k: usize,
                x: [usize; 4]|
     -> Box<dyn Fn() -> anyhow::Result<()>> {
        let layer = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
            .init(&device);
        let x = rand(x);
        Box::new(move || {
            // What the heads run: a 1×1 convolution as one matrix product.
            let _ = cae_heads::segmentation::conv_module::conv2d(&layer, x.clone())
                .sum()
                .backward();
            Ok(())
        })
    };
    // RoIs on a 256-px image whose stride-4 map is 64×64: sizes 16..128 px, a fixed pattern.
    let rois = |n: usize| -> Vec<Roi> {
        (0..n)
            .map(|i| {
                let s = 16.0 + ((i * 37) % 113) as f32;
                let x = ((i * 53) % 128) as f32;
                let y = ((i * 29) % 128) as f32;
                Roi {
                    batch: i % 2,
                    bbox: [x, y, (x + s).min(255.0), (y + s).min(255.0)],
                }
            })
            .collect()
    };
    let mut rows: Vec<Row> = vec![
        (
            "conv3x3 768->768, 2x768x32x32 (UperNet FPN conv)",
            conv(768, 768, 3, [2, 768, 32, 32]),
        ),
        (
            "conv1x1 768->768, 2x768x64x64 (UperNet lateral)",
            conv(768, 768, 1, [2, 768, 64, 64]),
        ),
        (
            "conv3x3 256->256, 2x256x64x64 (detection FPN conv)",
            conv(256, 256, 3, [2, 256, 64, 64]),
        ),
        (
            "conv3x3 256->256, 64x256x14x14 (mask head)",
            conv(256, 256, 3, [64, 256, 14, 14]),
        ),
    ];
    {
        let layer = ConvTranspose2dConfig::new([768, 768], [2, 2])
            .with_stride([2, 2])
            .init(&device);
        let x = rand([2, 768, 32, 32]);
        rows.push((
            "deconv2x2 s2 768->768, 2x768x32x32 (neck x2)",
            Box::new(move || {
                // What the neck runs: kernel = stride, as one matrix product.
                let _ = cae_heads::segmentation::conv_module::conv_transpose2d(&layer, x.clone())
                    .sum()
                    .backward();
                Ok(())
            }),
        ));
    }
    {
        let x = rand([2, 768, 32, 32]);
        rows.push((
            "max-pool 2x2, 2x768x32x32 (neck x0.5)",
            Box::new(move || {
                let _ = max_pool2d(x.clone(), MaxPoolOptions::new([2, 2]))
                    .sum()
                    .backward();
                Ok(())
            }),
        ));
    }
    {
        let x = rand([2, 150, 64, 64]);
        rows.push((
            "bilinear resize 2x150x64x64 -> 256x256 (logits)",
            Box::new(move || {
                let _ = resize_bilinear(x.clone(), [256, 256]).sum().backward();
                Ok(())
            }),
        ));
    }
    for (name, size, n) in [
        ("RoIAlign 7x7, 2x256x64x64, 256 RoIs (box head)", 7, 256),
        ("RoIAlign 14x14, 2x256x64x64, 64 RoIs (mask head)", 14, 64),
    ] {
        let x = rand([2, 256, 64, 64]);
        let boxes = rois(n);
        let cfg = RoiAlignConfig::new(size, 0.25);
        rows.push((
            name,
            Box::new(move || {
                let _ = roi_align(x.clone(), &boxes, &cfg)?.sum().backward();
                Ok(())
            }),
        ));
    }
    let mut results = Vec::new();
    for (name, f) in &rows {
        if let Some(only) = &args.only
            && !name.contains(only.as_str())
        {
            continue;
        }
        for _ in 0..args.warmup {
            f()?;
        }
        sync(&device)?;
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let t = std::time::Instant::now();
            f().with_context(|| format!("op {name}"))?;
            sync(&device)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if !args.json {
            println!(
                "{name}: {median:.2} ms (forward + backward, median of {})",
                args.reps
            );
        }
        results.push(serde_json::json!({ "op": name, "ms": median }));
    }
    if args.json {
        let v = serde_json::json!({
            "device": args.device,
            "threads": rayon::current_num_threads(),
            "reps": args.reps,
            "ops": results,
        });
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(())
}

fn pretrain(args: BenchPretrainArgs) -> anyhow::Result<()> {
    let cfg = CaeConfig::preset(&args.preset)?;
    let batch = args
        .batch
        .unwrap_or(if args.preset == "mini" { 64 } else { 8 });
    let device = parse_device(&args.device)?;
    let result = bench_pretrain_step(
        &cfg,
        batch,
        args.steps,
        args.warmup,
        args.precision,
        &device,
    )
    .context("running the pretraining benchmark")?;
    let threads = rayon::current_num_threads();
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v["device"] = serde_json::Value::from(args.device.clone());
        v["threads"] = serde_json::Value::from(threads);
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "{} batch {} {} on {} ({} threads): {:.1} ms/step (median {:.1}), {:.1} img/s over {} steps",
            result.preset,
            result.batch,
            result.precision,
            args.device,
            threads,
            result.ms_per_step,
            result.median_ms,
            result.img_per_s,
            result.steps
        );
    }
    Ok(())
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`) in MiB; `None` where the file
/// does not exist (not Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
