//! Pretraining: the optimisation step, the learning-rate schedule and the throughput benchmark.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod run;
pub mod schedule;
pub mod step;

pub use config::{RunConfig, TrainConfig};
pub use run::{RunRequest, RunSummary, run};
pub use step::{PretrainBatch, Pretrainable, StepStats, step_rng, train_step};
