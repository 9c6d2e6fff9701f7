//! Cheap classifiers that check the world is learnable but not trivial.
//!
//! On the classification labels of a world (train split → val split):
//! * **colour**: nearest class mean on the main object's mean colour. Near chance means colour
//!   carries no class information.
//! * **pixels (class mean)** and **pixels (1-NN)**: on the image downsampled to 8×8×3. Low means
//!   no shortcut through raw pixel statistics.
//! * **silhouette (1-NN)**: on the main object's visible mask, cropped to a square around its box
//!   and resized to 12×12. High means the classes are unambiguous as shapes at this size, so a
//!   model that finds the object and reads its shape can solve the task.

use super::{Scene, SynthConfig, render_scene};
use crate::transforms::resample::resize_nearest_cv;
use rayon::prelude::*;

/// Validation accuracies of the baseline classifiers (fractions; chance is `1 / classes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baselines {
    /// Nearest class mean on the main object's mean colour.
    pub colour: f64,
    /// Nearest class mean on 8×8×3 pixels.
    pub pixels_mean: f64,
    /// 1-nearest-neighbour on 8×8×3 pixels.
    pub pixels_1nn: f64,
    /// 1-nearest-neighbour on the main object's 12×12 silhouette.
    pub silhouette_1nn: f64,
    /// `1 / classes`.
    pub chance: f64,
}

fn downsample(scene: &Scene, n: u32) -> Vec<f32> {
    let s = scene.image.width();
    let mut out = vec![0f32; (n * n * 3) as usize];
    let mut cnt = vec![0f32; (n * n) as usize];
    for (x, y, p) in scene.image.enumerate_pixels() {
        let cell = ((y * n / s) * n + x * n / s) as usize;
        cnt[cell] += 1.0;
        for c in 0..3 {
            out[cell * 3 + c] += p.0[c] as f32 / 255.0;
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        *v /= cnt[i / 3].max(1.0);
    }
    out
}

fn main_colour(scene: &Scene) -> Vec<f32> {
    let main = scene.objects.iter().find(|o| o.main).expect("main object");
    let mut acc = [0f32; 3];
    let mut n = 0f32;
    for (p, &m) in scene.image.pixels().zip(&main.mask.data) {
        if m != 0 {
            for (a, &v) in acc.iter_mut().zip(&p.0) {
                *a += v as f32 / 255.0;
            }
            n += 1.0;
        }
    }
    acc.iter().map(|v| v / n.max(1.0)).collect()
}

fn silhouette(scene: &Scene, n: u32) -> Vec<f32> {
    let main = scene.objects.iter().find(|o| o.main).expect("main object");
    let [bx, by, bw, bh] = main.bbox;
    let side = bw.max(bh).max(1.0);
    let (x0, y0) = (
        (bx + bw / 2.0 - side / 2.0).floor() as i64,
        (by + bh / 2.0 - side / 2.0).floor() as i64,
    );
    let side = side.ceil() as u32;
    let m = &main.mask;
    let mut crop = vec![0u8; (side * side) as usize];
    for y in 0..side as i64 {
        for x in 0..side as i64 {
            let (sx, sy) = (x0 + x, y0 + y);
            if sx >= 0 && sy >= 0 && (sx as u32) < m.width && (sy as u32) < m.height {
                crop[(y * side as i64 + x) as usize] = m.get(sx as u32, sy as u32);
            }
        }
    }
    resize_nearest_cv(&crop, side, side, n, n)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn class_mean_accuracy(train: &[(Vec<f32>, usize)], val: &[(Vec<f32>, usize)], k: usize) -> f64 {
    let d = train[0].0.len();
    let mut means = vec![vec![0f32; d]; k];
    let mut counts = vec![0f32; k];
    for (f, c) in train {
        counts[*c] += 1.0;
        means[*c].iter_mut().zip(f).for_each(|(m, v)| *m += v);
    }
    for (m, n) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|v| *v /= n.max(1.0));
    }
    let correct = val
        .iter()
        .filter(|(f, c)| {
            let best = (0..k)
                .min_by(|&a, &b| dist2(f, &means[a]).total_cmp(&dist2(f, &means[b])))
                .expect("k > 0");
            best == *c
        })
        .count();
    correct as f64 / val.len() as f64
}

fn one_nn_accuracy(train: &[(Vec<f32>, usize)], val: &[(Vec<f32>, usize)]) -> f64 {
    let correct = val
        .par_iter()
        .filter(|(f, c)| {
            let best = train
                .iter()
                .min_by(|a, b| dist2(f, &a.0).total_cmp(&dist2(f, &b.0)))
                .expect("train not empty");
            best.1 == *c
        })
        .count();
    correct as f64 / val.len() as f64
}

/// Renders `train` and `val` scenes of `cfg` (indices `0..train` and `train..train + val`,
/// whatever `cfg.images` says) and scores the baselines.
pub fn baselines(cfg: &SynthConfig, train: usize, val: usize) -> Baselines {
    let scenes: Vec<Scene> = (0..train + val)
        .into_par_iter()
        .map(|i| render_scene(cfg, i))
        .collect();
    let feats =
        |f: &dyn Fn(&Scene) -> Vec<f32>, range: std::ops::Range<usize>| -> Vec<(Vec<f32>, usize)> {
            scenes[range].iter().map(|s| (f(s), s.label)).collect()
        };
    let (tr, va) = (0..train, train..train + val);
    let k = cfg.classes;
    let colour = class_mean_accuracy(
        &feats(&main_colour, tr.clone()),
        &feats(&main_colour, va.clone()),
        k,
    );
    let px = |s: &Scene| downsample(s, 8);
    let (ptr, pva) = (feats(&px, tr.clone()), feats(&px, va.clone()));
    let sil = |s: &Scene| silhouette(s, 12);
    Baselines {
        colour,
        pixels_mean: class_mean_accuracy(&ptr, &pva, k),
        pixels_1nn: one_nn_accuracy(&ptr, &pva),
        silhouette_1nn: one_nn_accuracy(&feats(&sil, tr), &feats(&sil, va)),
        chance: 1.0 / k as f64,
    }
}
