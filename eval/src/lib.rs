//! Evaluation protocols, metrics and the `cae-bench` command line.
//!
//! The binary (`src/main.rs`) is a thin shell over [`cli`]; each subcommand is a module in
//! [`commands`].

pub mod cli;
pub mod commands;
pub mod dist;
pub mod metrics;
pub mod protocols;
pub mod suite;
pub mod zoo;
