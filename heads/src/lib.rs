//! Downstream heads on a CAE / BEiT / MAE encoder: how good are its features?
//!
//! The protocols of cae.md §5a and protocols.md §4, each as the official code runs it, on the
//! encoder of `cae_pretrain` (an encoder file from `cae-bench pretrain` or `cae-bench import`,
//! or a random initialisation):
//!
//! | protocol | what trains | module |
//! |---|---|---|
//! | linear probe (MAE / CAE) | BatchNorm (no affine) + Linear on the cls token (or mean / cls+mean, or an intermediate block), LARS | [`linear`], [`optim`] |
//! | attentive probe (CAE) | one cross-attention block on a learned query + BatchNorm + Linear, Nesterov SGD | [`attentive`] |
//! | kNN (DINO) | nothing: k = 20, cosine similarity, `exp(s/0.07)` votes | [`knn`] |
//! | fine-tuning (CAE), low-label | the whole encoder + `fc_norm` + Linear, AdamW with layer-wise lr decay, on a fixed label subset | [`finetune`], [`data::label_subset`] |
//!
//! [`probe::run_probe`] runs one of them end to end and writes a `record.json`; the
//! `cae-bench linear-probe` command is a thin shell over it:
//!
//! ```no_run
//! use cae_heads::probe::{EncoderSource, Protocol, ProbeRequest, run_probe};
//! # fn main() -> Result<(), cae_heads::HeadsError> {
//! let mut req = ProbeRequest::new(EncoderSource::Random, "w/imagefolder", Protocol::Knn);
//! req.preset = Some("mini".into());
//! req.seed = 1;
//! req.out = Some("runs/knn-random".into());
//! let outcome = run_probe(&req)?;
//! println!("top-1 {:.1}%", outcome.top1);
//! # Ok(())
//! # }
//! ```
//!
//! Everything random (head init, data order, augmentation, drop path, the label subset, a
//! random encoder) is drawn from seeded ChaCha8 streams, so a seed gives the same numbers on a
//! given machine and thread count.

pub mod attentive;
pub mod batch_norm;
pub mod data;
pub mod detection;
pub mod error;
pub mod features;
pub mod finetune;
pub mod head;
pub mod knn;
pub mod linear;
pub mod metrics;
pub mod neck;
pub mod norm;
pub mod optim;
pub mod probe;
pub mod schedule;
pub mod segmentation;
pub mod train_head;

pub use error::HeadsError;
pub use features::Pooling;
pub use probe::{
    EncoderSource, ProbeConfig, ProbeOutcome, ProbeOverrides, ProbeRequest, Protocol, Recipe,
    run_probe,
};
