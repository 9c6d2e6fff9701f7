//! Integration tests of `cae-reports` on hand-written run records (`tests/fixtures/runs`), in one
//! test binary (each binary links polars and plotters).
//!
//! The fixture holds 13 records: 11 complete, one still `running` (a killed run, with a tempting
//! top1 of 0.99) and one `failed`. Expected values, by hand (sample std, n − 1):
//!
//! | row | runs | top1 | top5 |
//! |---|---|---|---|
//! | cae-600 linear cls | seeds 0,1,2 | 0.50, 0.52, 0.54 → 0.52 ± 0.02 | 0.80, 0.85, 0.90 → 0.85 ± 0.05 |
//! | cae-600 linear mean | seed 0 | 0.48 (n=1) | 0.78 (n=1) |
//! | cae-300 linear cls | seed 0 | 0.45 (n=1) | 0.75 (n=1) |
//! | random-init linear cls | seeds 0,1 | 0.30, 0.34 → 0.32 ± √0.0008 | 0.60, 0.64 → 0.62 ± √0.0008 |
//! | cae-600 knn | seeds 0,1 | 0.42, 0.42 → 0.42, one measurement (n=1: kNN on a file draws nothing from the seed) | – |
//! | cae-600 finetune 10% | seed 0 | 0.60 (n=1) | – |
//! | random-init finetune 10% | seed 0 | 0.35 (n=1) | – |

mod baselines;
mod common;
mod leaderboard;
mod leaderboard_identity;
mod plot;
mod report;
