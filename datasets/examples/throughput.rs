//! Loading throughput: decode + augment on the loader's pool, images per second.
//!
//! ```text
//! cargo run --release -p cae-datasets --example throughput -- [DIR] [--make N] [--threads T]
//! ```
//! With `--make N`, first writes N 256×256 JPEGs (synthetic scenes, quality 90) into DIR.
//! Then, for 1 thread and for T threads (default: all cores), runs one epoch of
//! * `rrc224`: decode, RandomResizedCrop 224 (bicubic) + flip + normalise (the probe pipeline);
//! * `pretrain224`: decode, flip, one crop resized to 224 (bicubic) and 112 (Lanczos), normalised;
//! * `decode`: decode only;
//!
//! and the `mini` preset: 32×32 PNGs, pretrain views 32/16, batch 64, as the CPU demo trains.
//! Compare with `datasets/scripts/torchvision_throughput.py DIR` on the same files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cae_datasets::io::save_rgb_jpeg;
use cae_datasets::synth::{SynthConfig, render_scene, write_world};
use cae_datasets::{
    DatasetError, Loader, PretrainTransform, ProbeTrainTransform, UnlabelledFolder, load_rgb,
};

fn run<T: Send + 'static>(
    name: &str,
    files: &Arc<Vec<PathBuf>>,
    threads: usize,
    batch: usize,
    f: impl Fn(&Path, &mut rand_chacha::ChaCha8Rng) -> Result<T, DatasetError> + Send + Sync + 'static,
) -> f64 {
    let loader = Loader::new(files.len(), batch, 0, true, false, 4)
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let files2 = files.clone();
    let t = Instant::now();
    let mut n = 0;
    for b in loader.epoch(0, 0, move |i, rng| f(&files2[i], rng)) {
        n += b.unwrap().len();
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "{name:<12} threads {threads:>2}: {n} images in {secs:.2} s = {rate:>7.0} img/s ({:.0} img/s per thread, {:.2} ms per batch of {batch})",
        rate / threads as f64,
        secs * 1000.0 / n.div_ceil(batch) as f64
    );
    rate
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("target/throughput-jpeg");
    let mut make = None;
    let mut threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--make" => make = Some(args.next().ok_or("--make N")?.parse::<usize>()?),
            "--threads" => threads = args.next().ok_or("--threads T")?.parse()?,
            d => dir = PathBuf::from(d),
        }
    }
    if let Some(n) = make {
        let cfg = SynthConfig::new(n.max(16), 256, 1);
        for i in 0..n {
            save_rgb_jpeg(
                &dir.join(format!("{i:05}.jpg")),
                &render_scene(&cfg, i).image,
                90,
            )?;
        }
    }
    let files = Arc::new(UnlabelledFolder::open(&dir)?.images);
    println!("{} files in {}", files.len(), dir.display());
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    for &t in &counts {
        run("decode", &files, t, 64, |p, _| {
            load_rgb(p).map(|i| i.width())
        });
        let probe = ProbeTrainTransform::new(224);
        run("rrc224", &files, t, 64, move |p, rng| {
            Ok(probe.apply(&load_rgb(p)?, rng))
        });
        let pre = PretrainTransform::new(224);
        run("pretrain224", &files, t, 64, move |p, rng| {
            Ok(pre.apply(&load_rgb(p)?, rng))
        });
    }

    // The mini preset: 32-px PNGs from a synthetic world.
    let mini = dir.join("mini-world");
    if !mini.join("world.json").exists() {
        write_world(&SynthConfig::new(1280, 32, 3), &mini)?;
    }
    let files = Arc::new(UnlabelledFolder::open(mini.join("imagefolder/train"))?.images);
    for &t in &counts {
        let pre = PretrainTransform::new(32);
        run("mini32", &files, t, 64, move |p, rng| {
            Ok(pre.apply(&load_rgb(p)?, rng))
        });
    }
    Ok(())
}
