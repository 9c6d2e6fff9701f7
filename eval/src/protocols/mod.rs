//! The protocols: what a run of each does, from its recipe to its record. `heads` holds the
//! modules and their losses; these files resolve the recipes, run them, score them and write
//! `record.json`.
//!
//! | protocol | file | command |
//! |---|---|---|
//! | linear / attentive probe, kNN, (low-label) fine-tuning | [`classification`] | `cae-bench linear-probe` |
//! | ADE20K semantic segmentation (UperNet, linear head) | [`ade20k`] | `cae-bench segment` |
//! | COCO detection and instance segmentation (Mask R-CNN) | [`coco`] | `cae-bench detect` |

pub mod ade20k;
pub mod checkpoint;
pub mod classification;
pub mod coco;
pub mod encoder;
pub mod error;
pub mod recipe;

pub use error::{ProtocolError, Result};
