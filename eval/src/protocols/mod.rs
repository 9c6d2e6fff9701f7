//! The protocols: recipe resolution, the run, its record.

pub mod ade20k;
pub mod encoder;
pub mod error;
