//! Writes a synthetic world, as `cae-bench data synth` will:
//!
//! ```text
//! cargo run --release -p cae-datasets --example synth -- --out w --images 600 --size 32 --seed 3 [--classes 8] [--sheet sheet.png]
//! ```

use std::time::Instant;

use cae_datasets::synth::{SynthConfig, sample_sheet, write_world};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut cfg = SynthConfig::new(600, 32, 3);
    let mut out = None;
    let mut sheet = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(val()?),
            "--images" => cfg.images = val()?.parse()?,
            "--size" => cfg.size = val()?.parse()?,
            "--seed" => cfg.seed = val()?.parse()?,
            "--classes" => cfg.classes = val()?.parse()?,
            "--main-offset" => cfg.main_offset = val()?.parse()?,
            "--main-area" => {
                let v = val()?;
                let (a, b) = v.split_once(',').ok_or("--main-area LO,HI")?;
                cfg.main_area = (a.parse()?, b.parse()?);
            }
            "--contrast" => cfg.texture_contrast = val()?.parse()?,
            "--distractors" => cfg.max_distractors = val()?.parse()?,
            "--sheet" => sheet = Some(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    let t = Instant::now();
    let summary = write_world(&cfg, &out)?;
    println!(
        "wrote {} train + {} val scenes ({} annotations: {} polygons, {} RLE, {} crowd) to {out} in {:.2} s",
        summary.train_images,
        summary.val_images,
        summary.annotations,
        summary.polygons,
        summary.rles,
        summary.crowd,
        t.elapsed().as_secs_f64()
    );
    if let Some(p) = sheet {
        sample_sheet(&cfg, 4, (128 / cfg.size).max(1), &p)?;
        println!("sample sheet: {p}");
    }
    Ok(())
}
