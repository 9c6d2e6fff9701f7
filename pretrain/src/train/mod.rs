//! Pretraining: the optimisation step, the learning-rate schedule and the throughput benchmark.

pub mod bench;
pub mod schedule;
pub mod step;

pub use step::{PretrainBatch, Pretrainable, StepStats, step_rng, train_step};
