//! Dataset readers, transforms and the synthetic world.
//!
//! Readers for the formats researchers keep on disk (ImageNet-style `ImageFolder`,
//! `ADEChallengeData2016`, COCO instances JSON), seeded transforms for each protocol, a prefetching
//! loader, and a deterministic synthetic world written in those same three formats.

pub mod ade_classes;
pub use ade_classes::ADE20K_CLASSES;
