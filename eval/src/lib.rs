//! Evaluation protocols, metrics and the `cae-bench` command line.
