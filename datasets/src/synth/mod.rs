//! The synthetic world: textured scenes of shapes, written as ImageFolder, ADE20K and COCO.
//!
//! [`write_world`] renders `images` scenes of side `size` from `seed` and writes the *same*
//! scenes in the three formats the readers of this crate take (see `datasets/README.md` for
//! the full description):
//!
//! ```text
//! DIR/imagefolder/{train,val}/<class>/<index>.png          label = class of the largest object
//! DIR/ade/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_<n>.jpg
//! DIR/ade/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_<n>.png   0 = background, 1..K (+ K+1..K+S stuff)
//! DIR/coco/{train2017,val2017}/<id>.png
//! DIR/coco/annotations/instances_{train2017,val2017}.json
//! DIR/world.json                                              configuration and counts
//! ```
//!
//! A scene: a textured background, one *main* object (16–26% of the image area, labelled for
//! classification), up to `max_distractors` smaller objects (3–6%), and sometimes a *crowd*
//! (4–6 tiny objects of one class, annotated as one `iscrowd` region). Objects draw their
//! colours and textures from one shared palette ([`paint::PALETTE`]), so colour carries no
//! class information; shape does. Rejection sampling keeps the main object at least twice
//! as large (visible pixels) as anything else and at most 30% hidden.
//!
//! With `stuff = S > 0` the background is made of *stuff* regions instead ([`paint::Stuff`]:
//! sky, grass, wall, water; one region, or two split by a random line), each with its own
//! texture and colour family, and the ADE20K annotations label them `K + 1 ..= K + S`: a
//! segmentation task with classes a small head can learn in minutes (the shapes need the
//! object's whole outline), as ADE20K's stuff classes are learnable from local appearance.
//!
//! Each scene is drawn from its own ChaCha8 stream seeded by `(seed, index)`, so scenes are
//! rendered in parallel and the output is the same bytes for any thread count.

pub mod baselines;
pub mod paint;
pub mod shapes;
mod sheet;

use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::coco::{Mask, mask_to_rle};
use crate::error::{DatasetError, Result};
use crate::io::{LabelMap, save_label_png, save_rgb_jpeg, save_rgb_png, write_atomic};
use crate::loader::derive_seed;
use paint::{Fill, Stuff, distance};
use shapes::{Shape, place};
pub use sheet::sample_sheet;

const TAG_SCENE: u64 = 0x0073_6365_6e65; // "scene"
const TAG_STUFF: u64 = 0x0073_7475_6666; // "stuff"

/// What to draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Number of scenes (train + val).
    pub images: usize,
    /// Image side in pixels (≥ 24).
    pub size: u32,
    /// Seed; same seed → same bytes.
    pub seed: u64,
    /// Number of classes `K` (8..=10): the first `K` of [`Shape::ALL`].
    pub classes: usize,
    /// Share of scenes in the validation split (the last ones).
    pub val_fraction: f64,
    /// Range of the main object's area, as a fraction of the image area.
    pub main_area: (f64, f64),
    /// How far the second colour of a texture goes toward another palette colour (0 = solid
    /// fills, 1 = full contrast); backgrounds use 0.9 of it.
    pub texture_contrast: f64,
    /// Largest offset of the main object's centre from the image centre, per axis, as a
    /// fraction of the image side (it also stays 0.8 radius inside the border).
    pub main_offset: f64,
    /// Most distractor objects per scene (each scene draws 0..=this uniformly).
    pub max_distractors: usize,
    /// Probability that a scene has a crowd region.
    pub crowd_prob: f64,
    /// JPEG quality of the ADE20K images (the published format is JPEG).
    pub jpeg_quality: u8,
    /// Stuff classes `S` (0..=4): the first `S` of [`Stuff::ALL`] (sky, grass, wall, water).
    /// With `S > 0` every background is one stuff region or two split by a random line, each
    /// painted in its class's texture and colour family, and the ADE20K annotations label them
    /// `K + 1 ..= K + S` (ADE20K's classes are mostly stuff: wall, floor, sky, ...). The
    /// ImageFolder labels and the COCO instances (things only, as in COCO) do not change. With
    /// `S = 0` (the default) the background is one texture of the shared palette, annotated 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stuff: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl SynthConfig {
    /// `images` scenes of side `size` from `seed`, 8 classes, 20% validation.
    pub fn new(images: usize, size: u32, seed: u64) -> Self {
        SynthConfig {
            images,
            size,
            seed,
            classes: 8,
            val_fraction: 0.2,
            main_area: (0.16, 0.26),
            texture_contrast: 0.4,
            main_offset: 0.25,
            max_distractors: 2,
            crowd_prob: 0.15,
            jpeg_quality: 95,
            stuff: 0,
        }
    }

    /// Checks the ranges; every split must hold every class at least once.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DatasetError::InvalidConfig(m));
        if !(8..=Shape::ALL.len()).contains(&self.classes) {
            return bad(format!(
                "synth needs 8..={} classes, got {}",
                Shape::ALL.len(),
                self.classes
            ));
        }
        if self.size < 24 || self.size > 4096 {
            return bad(format!(
                "synth image size must be in 24..=4096, got {}",
                self.size
            ));
        }
        for s in self.shapes() {
            if self.size < s.min_image_size() {
                return bad(format!(
                    "class `{}` is only unambiguous at >= {} px; use --size {} or fewer classes",
                    s.name(),
                    s.min_image_size(),
                    s.min_image_size()
                ));
            }
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad(format!(
                "val_fraction must be in (0, 1), got {}",
                self.val_fraction
            ));
        }
        if self.train_images() < self.classes || self.val_images() < self.classes {
            return bad(format!(
                "{} images give {} train / {} val scenes; each split needs at least one per class ({})",
                self.images,
                self.train_images(),
                self.val_images(),
                self.classes
            ));
        }
        let (a0, a1) = self.main_area;
        let area_ok = a0 > 0.0 && a0 <= a1 && a1 <= 0.6;
        if !area_ok || !(0.0..=1.0).contains(&self.texture_contrast) {
            return bad(format!(
                "main_area must satisfy 0 < lo <= hi <= 0.6 and texture_contrast be in [0, 1] (got {:?}, {})",
                self.main_area, self.texture_contrast
            ));
        }
        if !(0.0..=1.0).contains(&self.crowd_prob)
            || self.max_distractors > 8
            || !(0.0..=0.5).contains(&self.main_offset)
        {
            return bad(
                "crowd_prob must be in [0, 1], main_offset in [0, 0.5] and max_distractors <= 8"
                    .into(),
            );
        }
        if self.stuff > Stuff::ALL.len() {
            return bad(format!(
                "synth has at most {} stuff classes, got {}",
                Stuff::ALL.len(),
                self.stuff
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(format!(
                "jpeg_quality must be in 1..=100, got {}",
                self.jpeg_quality
            ));
        }
        Ok(())
    }

    /// The shapes of the world, in class-id order.
    pub fn shapes(&self) -> &[Shape] {
        &Shape::ALL[..self.classes.min(Shape::ALL.len())]
    }

    /// Class names, in class-id order.
    pub fn class_names(&self) -> Vec<String> {
        self.shapes().iter().map(|s| s.name().to_string()).collect()
    }

    /// The stuff classes of the world, in class-id order (after the shapes in the ADE copy).
    pub fn stuff_classes(&self) -> &[Stuff] {
        &Stuff::ALL[..self.stuff.min(Stuff::ALL.len())]
    }

    /// Stuff class names, in class-id order.
    pub fn stuff_names(&self) -> Vec<String> {
        self.stuff_classes()
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    }

    /// Classes of the ADE20K copy: `K` shapes, then `S` stuff classes.
    pub fn ade_classes(&self) -> usize {
        self.classes + self.stuff
    }

    /// Scenes in the validation split (the last ones).
    pub fn val_images(&self) -> usize {
        (self.images as f64 * self.val_fraction).round() as usize
    }

    /// Scenes in the training split (the first ones).
    pub fn train_images(&self) -> usize {
        self.images - self.val_images()
    }

    /// Whether scene `index` is in the training split.
    pub fn is_train(&self, index: usize) -> bool {
        index < self.train_images()
    }

    /// The main (labelled) class of scene `index`: classes take turns, so splits are balanced.
    pub fn main_class(&self, index: usize) -> usize {
        index % self.classes
    }
}

/// One annotated object of a rendered scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    /// Class id (0-based; the COCO category id is `class + 1`, the ADE value `class + 1`).
    pub class: usize,
    /// A crowd region (several tiny objects of one class).
    pub iscrowd: bool,
    /// Whether this is the main (labelled) object.
    pub main: bool,
    /// Visible pixels.
    pub mask: Mask,
    /// The polygon parts (flat `x, y, …`) when the object is whole (not occluded, inside the
    /// image): its rasterisation is exactly `mask`.
    pub polygon: Option<Vec<Vec<f64>>>,
    /// Visible pixel count.
    pub area: u64,
    /// `[x, y, w, h]` of the visible pixels.
    pub bbox: [f64; 4],
}

/// A rendered scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Scene index.
    pub index: usize,
    /// Pixels.
    pub image: RgbImage,
    /// Class of the main (largest) object.
    pub label: usize,
    /// ADE-style label map: `class + 1` on objects; on the background 0, or with stuff classes
    /// `K + 1 + s` for stuff class `s`.
    pub semantic: LabelMap,
    /// Annotated objects in drawing order (crowd members merged into one region).
    pub objects: Vec<SceneObject>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Distractor,
    Crowd,
}

struct Placed {
    class: usize,
    shape: Shape,
    polys: Vec<Vec<(f64, f64)>>,
    fill: Fill,
    role: Role,
    radius: f64,
}

impl Placed {
    fn ideal_area(&self) -> f64 {
        self.shape.unit_area() * self.radius * self.radius
    }
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// A fill whose average colour stands out from every background fill's.
fn object_fill(rng: &mut ChaCha8Rng, size: u32, bgs: &[Fill], contrast: f32) -> Fill {
    let mut best: Option<(f32, Fill)> = None;
    for _ in 0..20 {
        let base = rng.random_range(0..paint::PALETTE.len());
        let f = Fill::random(rng, size, base, contrast);
        let d = bgs
            .iter()
            .map(|bg| {
                distance(f.mean(), bg.mean())
                    .min(distance(f.a, bg.a))
                    .min(distance(f.a, bg.b))
            })
            .fold(f32::MAX, f32::min);
        if d >= 90.0 {
            return f;
        }
        if best.as_ref().is_none_or(|(bd, _)| d > *bd) {
            best = Some((d, f));
        }
    }
    best.expect("at least one draw").1
}

fn place_object(
    rng: &mut ChaCha8Rng,
    cfg: &SynthConfig,
    class: usize,
    area_frac: (f64, f64),
    role: Role,
    bg: &[Fill],
    center: Option<(f64, f64, f64)>,
) -> Placed {
    let s = cfg.size as f64;
    let shape = cfg.shapes()[class];
    let area = uniform(rng, area_frac.0, area_frac.1) * s * s;
    let radius = (area / shape.unit_area()).sqrt();
    let max_rot = shape.max_rotation();
    let angle = uniform(rng, -max_rot, max_rot);
    let (cx, cy) = match (role, center) {
        (_, Some((x, y, spread))) => (
            x + uniform(rng, -spread, spread),
            y + uniform(rng, -spread, spread),
        ),
        (Role::Main, None) => {
            let m = (0.8 * radius).min(s / 2.0);
            let (lo, hi) = (
                (s / 2.0 - cfg.main_offset * s).max(m),
                (s / 2.0 + cfg.main_offset * s).min(s - m),
            );
            let (lo, hi) = if lo <= hi {
                (lo, hi)
            } else {
                (s / 2.0, s / 2.0)
            };
            (uniform(rng, lo, hi), uniform(rng, lo, hi))
        }
        _ => (uniform(rng, 0.0, s), uniform(rng, 0.0, s)),
    };
    Placed {
        class,
        shape,
        polys: place(shape, cx, cy, radius, angle),
        fill: object_fill(rng, cfg.size, bg, cfg.texture_contrast as f32),
        role,
        radius,
    }
}

fn flat(polys: &[Vec<(f64, f64)>]) -> Vec<Vec<f64>> {
    polys
        .iter()
        .map(|p| p.iter().flat_map(|&(x, y)| [x, y]).collect())
        .collect()
}

/// Row-major 0/1 mask of polygons on an `n × n` canvas (pycocotools rasterisation).
fn raster(polys: &[Vec<f64>], n: u32) -> Vec<u8> {
    let rle = hotcoco::mask::fr_polys(polys, n, n).expect("canvas fits u32");
    crate::coco::rle_to_mask(&rle).data
}

/// Draws the layout: background, main object, distractors, maybe a crowd, in drawing order.
fn layout(
    rng: &mut ChaCha8Rng,
    cfg: &SynthConfig,
    index: usize,
    bg: &[Fill],
    with_extras: bool,
) -> Vec<Placed> {
    let k = cfg.classes;
    let mut groups: Vec<Vec<Placed>> = vec![vec![place_object(
        rng,
        cfg,
        cfg.main_class(index),
        cfg.main_area,
        Role::Main,
        bg,
        None,
    )]];
    if with_extras {
        for _ in 0..rng.random_range(0..=cfg.max_distractors) {
            let class = rng.random_range(0..k);
            groups.push(vec![place_object(
                rng,
                cfg,
                class,
                (0.03, 0.06),
                Role::Distractor,
                bg,
                None,
            )]);
        }
        if rng.random::<f64>() < cfg.crowd_prob {
            let class = rng.random_range(0..k);
            let s = cfg.size as f64;
            let (x, y) = (
                uniform(rng, 0.2 * s, 0.8 * s),
                uniform(rng, 0.2 * s, 0.8 * s),
            );
            let n = rng.random_range(4..=6);
            groups.push(
                (0..n)
                    .map(|_| {
                        place_object(
                            rng,
                            cfg,
                            class,
                            (0.006, 0.012),
                            Role::Crowd,
                            bg,
                            Some((x, y, 0.14 * s)),
                        )
                    })
                    .collect(),
            );
        }
        // Random depth order; a crowd stays one layer.
        for i in (1..groups.len()).rev() {
            let j = rng.random_range(0..=i);
            groups.swap(i, j);
        }
    }
    groups.into_iter().flatten().collect()
}

struct Layers {
    /// Per pixel: index of the topmost object, or -1.
    owner: Vec<i32>,
    /// Per object: full (unoccluded, in-image) mask.
    full: Vec<Vec<u8>>,
    /// Per object: visible pixel count.
    visible: Vec<u64>,
}

fn layers(objs: &[Placed], size: u32) -> Layers {
    let n = (size * size) as usize;
    let mut owner = vec![-1i32; n];
    let mut full = Vec::with_capacity(objs.len());
    for (i, o) in objs.iter().enumerate() {
        let m = raster(&flat(&o.polys), size);
        for (p, &v) in owner.iter_mut().zip(&m) {
            if v != 0 {
                *p = i as i32;
            }
        }
        full.push(m);
    }
    let mut visible = vec![0u64; objs.len()];
    for &p in &owner {
        if p >= 0 {
            visible[p as usize] += 1;
        }
    }
    Layers {
        owner,
        full,
        visible,
    }
}

fn bbox_of(mask: &Mask) -> [f64; 4] {
    hotcoco::mask::to_bbox(&mask_to_rle(mask))
}

/// Whether a layout keeps the main object dominant and everything recognisable.
fn acceptable(objs: &[Placed], l: &Layers, size: u32) -> bool {
    let main = objs
        .iter()
        .position(|o| o.role == Role::Main)
        .expect("one main object");
    let main_vis = l.visible[main] as f64;
    if main_vis < 0.7 * objs[main].ideal_area() {
        return false;
    }
    let mut crowd_vis = 0.0;
    let mut crowd_ideal = 0.0;
    for (i, o) in objs.iter().enumerate() {
        match o.role {
            Role::Main => {}
            Role::Distractor => {
                let v = l.visible[i] as f64;
                if v < 0.45 * o.ideal_area() || v < 6.0 || 2.0 * v > main_vis {
                    return false;
                }
            }
            Role::Crowd => {
                crowd_vis += l.visible[i] as f64;
                crowd_ideal += o.ideal_area();
            }
        }
    }
    if crowd_ideal > 0.0 && (crowd_vis < 0.5 * crowd_ideal || 2.0 * crowd_vis > main_vis) {
        return false;
    }
    // Two objects of one class must not share a box (their detections would be ambiguous).
    let boxes: Vec<(usize, [f64; 4])> = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.role != Role::Crowd)
        .map(|(i, o)| {
            let m = LabelMap {
                width: size,
                height: size,
                data: l.owner.iter().map(|&p| (p == i as i32) as u8).collect(),
            };
            (o.class, bbox_of(&m))
        })
        .collect();
    for (a, (ca, ba)) in boxes.iter().enumerate() {
        if boxes[a + 1..].iter().any(|(cb, bb)| ca == cb && ba == bb) {
            return false;
        }
    }
    true
}

/// A scene's background: one palette texture (annotated 0), or stuff regions: one, or two split
/// by a line.
struct Background {
    /// One fill per region.
    fills: Vec<Fill>,
    /// The ADE value of each region.
    labels: Vec<u8>,
    /// With two regions: a point of the dividing line and its normal `[px, py, nx, ny]`; pixels
    /// on the normal's side are the second region.
    split: Option<[f32; 4]>,
}

impl Background {
    fn plain(fill: Fill) -> Self {
        Background {
            fills: vec![fill],
            labels: vec![0],
            split: None,
        }
    }

    /// The stuff regions of scene `index`, from their own stream (`TAG_STUFF`).
    fn stuff(cfg: &SynthConfig, index: usize) -> Self {
        let mut rng = ChaCha8Rng::from_seed(derive_seed(&[TAG_STUFF, cfg.seed, index as u64]));
        let classes = cfg.stuff_classes();
        let n = classes.len();
        let mut regions = vec![rng.random_range(0..n)];
        let mut split = None;
        if n > 1 && rng.random::<f64>() < 0.6 {
            regions.push((regions[0] + rng.random_range(1..n)) % n);
            let s = cfg.size as f32;
            let (px, py) = (
                rng.random_range(0.25..0.75f32) * s,
                rng.random_range(0.25..0.75f32) * s,
            );
            let theta = rng.random_range(0.0..std::f32::consts::TAU);
            split = Some([px, py, theta.cos(), theta.sin()]);
        }
        Background {
            fills: regions
                .iter()
                .map(|&c| classes[c].fill(&mut rng, cfg.size))
                .collect(),
            labels: regions
                .iter()
                .map(|&c| (cfg.classes + 1 + c) as u8)
                .collect(),
            split,
        }
    }

    /// The region of the pixel centred at `(x, y)`.
    fn region(&self, x: f32, y: f32) -> usize {
        match self.split {
            None => 0,
            Some([px, py, nx, ny]) => ((x - px) * nx + (y - py) * ny > 0.0) as usize,
        }
    }
}

/// Renders scene `index` of the world `cfg` (deterministic in `(cfg.seed, index)`).
pub fn render_scene(cfg: &SynthConfig, index: usize) -> Scene {
    let size = cfg.size;
    let s = size as f32;
    let n = (size * size) as usize;
    let mut rng = ChaCha8Rng::from_seed(derive_seed(&[TAG_SCENE, cfg.seed, index as u64]));
    let base = rng.random_range(0..paint::PALETTE.len());
    let bg = Fill::random(&mut rng, size, base, 0.9 * cfg.texture_contrast as f32);
    let bg = if cfg.stuff == 0 {
        Background::plain(bg)
    } else {
        Background::stuff(cfg, index)
    };

    let mut objs = Vec::new();
    let mut lay = None;
    for attempt in 0..30 {
        let candidate = layout(&mut rng, cfg, index, &bg.fills, attempt < 29);
        let l = layers(&candidate, size);
        if attempt == 29 || acceptable(&candidate, &l, size) {
            objs = candidate;
            lay = Some(l);
            break;
        }
    }
    let l = lay.expect("the last attempt is always taken");

    // Pixels: background, then each object composited with 4x4 supersampled coverage.
    let mut px = vec![0f32; n * 3];
    for y in 0..size {
        for x in 0..size {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let c = bg.fills[bg.region(cx, cy)].at(cx, cy, s);
            px[(y * size + x) as usize * 3..][..3].copy_from_slice(&c);
        }
    }
    const SS: u32 = 4;
    for o in &objs {
        let fine: Vec<Vec<f64>> = flat(&o.polys)
            .into_iter()
            .map(|p| p.into_iter().map(|v| v * SS as f64).collect())
            .collect();
        let cover = raster(&fine, size * SS);
        let mut cov = vec![0u8; n];
        for (i, &v) in cover.iter().enumerate() {
            if v != 0 {
                let (fy, fx) = (i as u32 / (size * SS), i as u32 % (size * SS));
                cov[((fy / SS) * size + fx / SS) as usize] += 1;
            }
        }
        for (i, &c) in cov.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let t = c as f32 / (SS * SS) as f32;
            let (x, y) = (
                (i as u32 % size) as f32 + 0.5,
                (i as u32 / size) as f32 + 0.5,
            );
            let col = o.fill.at(x, y, s);
            for k in 0..3 {
                px[i * 3 + k] = px[i * 3 + k] * (1.0 - t) + col[k] * t;
            }
        }
    }
    let raw: Vec<u8> = px
        .iter()
        .map(|&v| {
            (v + rng.random_range(-3i32..=3) as f32)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    let image = RgbImage::from_raw(size, size, raw).expect("buffer size");

    // Labels.
    let semantic = LabelMap {
        width: size,
        height: size,
        data: l
            .owner
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                if p < 0 {
                    let (x, y) = ((i as u32 % size) as f32, (i as u32 / size) as f32);
                    bg.labels[bg.region(x + 0.5, y + 0.5)]
                } else {
                    objs[p as usize].class as u8 + 1
                }
            })
            .collect(),
    };
    let mut objects = Vec::new();
    let mut crowd: Option<(usize, Vec<u8>)> = None;
    for (i, o) in objs.iter().enumerate() {
        let vis: Vec<u8> = l.owner.iter().map(|&p| (p == i as i32) as u8).collect();
        if o.role == Role::Crowd {
            let (_, m) = crowd.get_or_insert_with(|| (o.class, vec![0u8; n]));
            m.iter_mut().zip(&vis).for_each(|(a, &b)| *a |= b);
            continue;
        }
        if l.visible[i] == 0 {
            continue;
        }
        let inside = o
            .polys
            .iter()
            .flatten()
            .all(|&(x, y)| (0.0..=s as f64).contains(&x) && (0.0..=s as f64).contains(&y));
        let whole = inside && l.visible[i] == l.full[i].iter().map(|&v| v as u64).sum::<u64>();
        let mask = LabelMap {
            width: size,
            height: size,
            data: vis,
        };
        objects.push(SceneObject {
            class: o.class,
            iscrowd: false,
            main: o.role == Role::Main,
            bbox: bbox_of(&mask),
            mask,
            polygon: whole.then(|| flat(&o.polys)),
            area: l.visible[i],
        });
    }
    if let Some((class, data)) = crowd {
        let mask = LabelMap {
            width: size,
            height: size,
            data,
        };
        let area = mask.data.iter().map(|&v| v as u64).sum();
        if area > 0 {
            objects.push(SceneObject {
                class,
                iscrowd: true,
                main: false,
                bbox: bbox_of(&mask),
                mask,
                polygon: None,
                area,
            });
        }
    }
    Scene {
        index,
        image,
        label: cfg.main_class(index),
        semantic,
        objects,
    }
}

/// Counts of a written world (also saved as `DIR/world.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldSummary {
    /// The output folder (not written to `world.json`, which stays the same bytes wherever
    /// the world is written).
    #[serde(skip)]
    pub root: PathBuf,
    /// The configuration.
    pub config: SynthConfig,
    /// Class names in class-id order.
    pub classes: Vec<String>,
    /// Stuff class names (ADE20K values `K + 1 ..`), when the world has stuff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuff_classes: Vec<String>,
    /// Training scenes.
    pub train_images: usize,
    /// Validation scenes.
    pub val_images: usize,
    /// COCO annotations, both splits.
    pub annotations: usize,
    /// Of which polygons (whole objects).
    pub polygons: usize,
    /// Of which compressed RLEs (occluded or cut objects).
    pub rles: usize,
    /// Of which crowd regions (uncompressed RLE).
    pub crowd: usize,
}

#[derive(Serialize)]
struct CocoImageOut {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    license: u32,
}

#[derive(Serialize)]
struct CocoAnnOut {
    id: u64,
    image_id: u64,
    category_id: u64,
    segmentation: serde_json::Value,
    area: f64,
    bbox: [f64; 4],
    iscrowd: u8,
}

#[derive(Serialize)]
struct CocoCatOut {
    id: u64,
    name: String,
    supercategory: &'static str,
}

#[derive(Serialize)]
struct CocoFileOut {
    info: serde_json::Value,
    licenses: serde_json::Value,
    images: Vec<CocoImageOut>,
    annotations: Vec<CocoAnnOut>,
    categories: Vec<CocoCatOut>,
}

const WORLD_ENTRIES: [&str; 4] = ["imagefolder", "ade", "coco", "world.json"];

fn prepare_out_dir(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let entries: Vec<_> = std::fs::read_dir(out)
        .map_err(|e| DatasetError::io(out, e))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| DatasetError::io(out, e))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !entries.iter().any(|e| e == "world.json") {
        return Err(DatasetError::InvalidConfig(format!(
            "{} is not empty and holds no earlier world (world.json); refusing to write into it",
            out.display()
        )));
    }
    for name in WORLD_ENTRIES {
        let p = out.join(name);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        };
        removed.map_err(|e| DatasetError::io(&p, e))?;
    }
    Ok(())
}

/// The image id of scene `index` (COCO ids start at 1).
pub fn image_id(index: usize) -> u64 {
    index as u64 + 1
}

/// The ADE20K file stem of scene `index`.
pub fn ade_stem(cfg: &SynthConfig, index: usize) -> String {
    if cfg.is_train(index) {
        format!("ADE_train_{:08}", index + 1)
    } else {
        format!("ADE_val_{:08}", index - cfg.train_images() + 1)
    }
}

/// Renders the world and writes all three formats under `out_dir` (see the module docs).
///
/// `out_dir` must be missing, empty, or an earlier world (it holds `world.json`); an earlier
/// world's `imagefolder/`, `ade/`, `coco/` and `world.json` are replaced, anything else in a
/// non-empty folder makes this refuse with [`DatasetError::InvalidConfig`].
pub fn write_world(cfg: &SynthConfig, out_dir: impl AsRef<Path>) -> Result<WorldSummary> {
    cfg.validate()?;
    let out = out_dir.as_ref();
    prepare_out_dir(out)?;
    let names = cfg.class_names();
    let records: Vec<Result<Vec<CocoAnnOut>>> = (0..cfg.images)
        .into_par_iter()
        .map(|i| {
            let scene = render_scene(cfg, i);
            let train = cfg.is_train(i);
            let (ifs, ades, cocos) = if train {
                ("train", "training", "train2017")
            } else {
                ("val", "validation", "val2017")
            };
            save_rgb_png(
                &out.join("imagefolder").join(ifs).join(&names[scene.label]).join(format!("{i:06}.png")),
                &scene.image,
            )?;
            let ade = out.join("ade/ADEChallengeData2016");
            let stem = ade_stem(cfg, i);
            save_rgb_jpeg(&ade.join("images").join(ades).join(format!("{stem}.jpg")), &scene.image, cfg.jpeg_quality)?;
            save_label_png(&ade.join("annotations").join(ades).join(format!("{stem}.png")), &scene.semantic)?;
            save_rgb_png(&out.join("coco").join(cocos).join(format!("{:012}.png", image_id(i))), &scene.image)?;
            Ok(scene
                .objects
                .iter()
                .map(|o| {
                    let rle = mask_to_rle(&o.mask);
                    let segmentation = match (&o.polygon, o.iscrowd) {
                        (Some(p), _) => serde_json::json!(p),
                        (None, true) => serde_json::json!({"size": [rle.h, rle.w], "counts": rle.counts}),
                        (None, false) => serde_json::json!({"size": [rle.h, rle.w], "counts": hotcoco::mask::rle_to_string(&rle)}),
                    };
                    CocoAnnOut {
                        id: 0,
                        image_id: image_id(i),
                        category_id: o.class as u64 + 1,
                        segmentation,
                        area: o.area as f64,
                        bbox: o.bbox,
                        iscrowd: o.iscrowd as u8,
                    }
                })
                .collect())
        })
        .collect();

    let mut summary = WorldSummary {
        root: out.to_path_buf(),
        config: cfg.clone(),
        classes: names.clone(),
        stuff_classes: cfg.stuff_names(),
        train_images: cfg.train_images(),
        val_images: cfg.val_images(),
        annotations: 0,
        polygons: 0,
        rles: 0,
        crowd: 0,
    };
    let mut splits: [(Vec<CocoImageOut>, Vec<CocoAnnOut>); 2] = Default::default();
    let mut next_id = 1u64;
    for (i, rec) in records.into_iter().enumerate() {
        let anns = rec?;
        let split = if cfg.is_train(i) { 0 } else { 1 };
        splits[split].0.push(CocoImageOut {
            id: image_id(i),
            file_name: format!("{:012}.png", image_id(i)),
            width: cfg.size,
            height: cfg.size,
            license: 1,
        });
        for mut a in anns {
            a.id = next_id;
            next_id += 1;
            summary.annotations += 1;
            match (&a.segmentation, a.iscrowd) {
                (_, 1) => summary.crowd += 1,
                (serde_json::Value::Array(_), _) => summary.polygons += 1,
                _ => summary.rles += 1,
            }
            splits[split].1.push(a);
        }
    }
    for (split, (images, annotations)) in ["train2017", "val2017"].iter().zip(splits) {
        let file = CocoFileOut {
            info: serde_json::json!({
                "description": format!("cae-bench synthetic world ({split}), seed {}", cfg.seed),
                "version": "1.0",
                "year": 2026,
                "contributor": "cae-bench",
            }),
            licenses: serde_json::json!([{"id": 1, "name": "CC0-1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]),
            images,
            annotations,
            categories: names
                .iter()
                .enumerate()
                .map(|(k, n)| CocoCatOut {
                    id: k as u64 + 1,
                    name: n.clone(),
                    supercategory: "shape",
                })
                .collect(),
        };
        let path = out
            .join("coco/annotations")
            .join(format!("instances_{split}.json"));
        let bytes = serde_json::to_vec(&file).map_err(|e| {
            DatasetError::InvalidConfig(format!("serialising {}: {e}", path.display()))
        })?;
        write_atomic(&path, &bytes)?;
    }
    let path = out.join("world.json");
    let bytes = serde_json::to_vec_pretty(&summary)
        .map_err(|e| DatasetError::InvalidConfig(format!("serialising {}: {e}", path.display())))?;
    write_atomic(&path, &bytes)?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
