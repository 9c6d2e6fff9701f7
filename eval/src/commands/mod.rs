//! One module per `cae-bench` subcommand.

pub mod bench;
