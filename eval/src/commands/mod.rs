//! One module per `cae-bench` subcommand.

pub mod ablate;
pub mod ade_eval;
pub mod bench;
pub mod calibrate;
pub mod coco_eval;
pub mod data;
pub mod detect;
pub mod devices;
pub mod import;
pub mod leaderboard;
pub mod linear_probe;
pub mod pretrain;
pub mod quickstart;
pub mod report;
pub mod segment;
pub mod zoo;
