//! Dataset readers, seeded transforms, a prefetching loader and a synthetic world.
//!
//! This crate is the upstream end of cae-bench (datasets → pretrain → heads → eval → reports)
//! and does not depend on burn: everything here works on `image::RgbImage`, `Vec<f32>` CHW
//! tensors and `Vec<u8>` label maps.
//!
//! # Modules
//!
//! | module | what it holds |
//! |---|---|
//! | [`imagefolder`] | [`ImageFolder`] (`split/class/*.jpg`, sorted class names → ids) and [`UnlabelledFolder`] (any folder of images, for pretraining) |
//! | [`ade`] | [`AdeDataset`] (`ADEChallengeData2016`), [`reduce_zero_label`], [`ADE20K_CLASSES`] |
//! | [`coco`] | [`CocoDataset`] on hotcoco's types: validation, contiguous labels, masks ([`rle_to_mask`]) |
//! | [`transforms`] | per-protocol transforms: [`PretrainTransform`], [`ProbeTrainTransform`], [`ProbeEvalTransform`], [`SegTrainTransform`], [`SegTestTransform`], [`DetTrainTransform`], [`DetTestTransform`]; Pillow-exact and OpenCV-rule resampling |
//! | [`loader`] | [`Loader`]: deterministic, prefetching batches on a rayon pool, restartable mid-epoch |
//! | [`synth`] | the synthetic world: [`synth::write_world`] writes one set of scenes as ImageFolder, ADE20K and COCO; [`synth::sample_sheet`] draws a preview |
//! | [`fingerprint`] | [`fingerprint_dir`]: what a record keeps of its data, so results are reused only on the same data |
//! | [`io`] | [`load_rgb`], label-map PNGs, atomic writes |
//! | [`error`] | [`DatasetError`]: every bad input is a typed error naming its file |
//!
//! # A pretraining input pipeline
//!
//! ```no_run
//! use std::sync::Arc;
//! use cae_datasets::{Loader, PretrainTransform, UnlabelledFolder, DatasetError};
//!
//! # fn main() -> Result<(), DatasetError> {
//! let data = Arc::new(UnlabelledFolder::open("w/imagefolder/train")?);
//! let tf = PretrainTransform::new(32); // 32-px encoder view, 16-px tokenizer view
//! let loader = Loader::new(data.len(), 64, /*seed*/ 0, true, true, 4)?.with_threads(2)?;
//! for batch in loader.epoch(/*epoch*/ 0, /*start_batch*/ 0, move |i, rng| {
//!     let img = data.load(i)?;
//!     Ok::<_, DatasetError>(tf.apply(&img, rng))
//! }) {
//!     let views = batch?; // Vec<PretrainViews>, 64 of them
//!     # let _ = views;
//! }
//! # Ok(())
//! # }
//! ```

pub mod ade;
pub mod ade_classes;
pub mod coco;
pub mod error;
pub mod fingerprint;
pub mod imagefolder;
pub mod io;
pub mod loader;
pub mod synth;
pub mod transforms;

pub use ade::{AdeDataset, AdePair, AdeSplit, reduce_zero_label};
pub use ade_classes::ADE20K_CLASSES;
pub use coco::{
    CocoDataset, CocoInstance, CocoReadOptions, CocoRecord, CocoSplit, Mask, mask_to_rle,
    rle_to_mask,
};
pub use error::{DatasetError, Result};
pub use fingerprint::{Fingerprint, fingerprint_dir};
pub use imagefolder::{ImageFolder, UnlabelledFolder};
pub use io::{LabelMap, load_label_map, load_rgb};
pub use loader::{Batches, Loader, sample_rng};
pub use transforms::{
    DetSample, DetTestTransform, DetTrainTransform, Normalize, PretrainTransform, PretrainViews,
    ProbeEvalTransform, ProbeTrainTransform, SegSample, SegTestSample, SegTestTransform,
    SegTrainTransform,
};
