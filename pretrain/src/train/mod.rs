//! Pretraining: the optimisation step, the learning-rate schedule and the throughput benchmark.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod run;
pub mod schedule;
pub mod step;
pub mod trainable;

pub use config::{RunConfig, TrainConfig};
pub use dist::{Collective, SingleProcess};
pub use run::{RunRequest, RunSummary, run};
pub use step::{
    PRETRAIN_STEP_SALT, PretrainBatch, Pretrainable, StepStats, micro_batch_rng, salted_step_rng,
    step_rng, train_step, train_step_parallel,
};
pub use trainable::{ParamEntry, on_autodiff, parameters};
