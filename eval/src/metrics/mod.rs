//! Metrics that give the reference tools' numbers.
//!
//! * [`coco`]: COCO detection AP/AR (bbox, segm), exactly pycocotools' `COCOeval`;
//! * [`semseg`]: semantic-segmentation aAcc / mIoU / mAcc, exactly mmsegmentation's `IoUMetric`;
//! * [`classification`]: top-k accuracy.
//!
//! Each module returns typed errors (`thiserror`) that name the file or entry at fault; the
//! commands in [`crate::commands`] wrap them with `anyhow`.

pub mod classification;
pub mod coco;
mod numeric;
pub mod semseg;
