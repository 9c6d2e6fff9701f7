//! Scores the baseline classifiers of `cae_datasets::synth::baselines` on a world:
//!
//! ```text
//! cargo run --release -p cae-datasets --example learnability -- [size] [train] [val] [seed] [main_offset] [area_lo] [area_hi] [contrast]
//! ```

use cae_datasets::synth::{SynthConfig, baselines::baselines};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: u64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (size, train, val, seed) = (
        get(0, 32) as u32,
        get(1, 2000) as usize,
        get(2, 500) as usize,
        get(3, 3),
    );
    let mut cfg = SynthConfig::new(train + val, size, seed);
    let f = |i: usize| a.get(i).and_then(|s| s.parse::<f64>().ok());
    if let Some(o) = f(4) {
        cfg.main_offset = o;
    }
    if let (Some(lo), Some(hi)) = (f(5), f(6)) {
        cfg.main_area = (lo, hi);
    }
    if let Some(c) = f(7) {
        cfg.texture_contrast = c;
    }
    let b = baselines(&cfg, train, val);
    println!(
        "world: size {size}, {} classes, {train} train / {val} val scenes, seed {seed}",
        cfg.classes
    );
    println!("chance                          {:.3}", b.chance);
    println!("main-object colour, class mean  {:.3}", b.colour);
    println!("pixels 8x8x3, class mean        {:.3}", b.pixels_mean);
    println!("pixels 8x8x3, 1-NN              {:.3}", b.pixels_1nn);
    println!("main-object silhouette, 1-NN    {:.3}", b.silhouette_1nn);
}
