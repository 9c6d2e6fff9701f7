//! Downstream heads on a CAE / BEiT / MAE encoder: how good are its features?
//!
//! The protocols of cae.md §5a and protocols.md §4, each as the official code runs it, on the
//! encoder of `cae_pretrain` (an encoder file from `cae-bench pretrain` or `cae-bench import`,
//! or a random initialisation):
//!
//! | protocol | what trains | module |
//! |---|---|---|
//! | linear probe (MAE / CAE) | BatchNorm (no affine) + Linear on the cls token (or mean / cls+mean, or an intermediate block), LARS | [`classification::linear`], [`optim`] |
//! | attentive probe (CAE) | one cross-attention block on a learned query + BatchNorm + Linear, Nesterov SGD | [`classification::attentive`] |
//! | kNN (DINO) | nothing: k = 20, cosine similarity, `exp(s/0.07)` votes | [`classification::knn`] |
//! | fine-tuning (CAE), low-label | the whole encoder + `fc_norm` + Linear, AdamW with layer-wise lr decay, on a fixed label subset | [`classification::finetune`], [`data::label_subset`] |
//!
//! The protocols that run them end to end (recipes, runs, records) live in `cae-bench`
//! (`eval/src/protocols/`); this crate holds the modules, their losses and training steps
//! only, so it writes no records and reads no files but weights and images.
//!
//! Segmentation ([`segmentation`]: UperNet, its FCN auxiliary head, the linear head, sliding
//! window) and Mask R-CNN ([`detection`]) share the ViT → 4-scale [`neck`].
//!
//! Everything random (head init, data order, augmentation, drop path, the label subset, a
//! random encoder) is drawn from seeded ChaCha8 streams, so a seed gives the same numbers on a
//! given machine and thread count.

pub mod batch_norm;
pub mod classification;
pub mod data;
pub mod detection;
pub mod error;
pub mod metrics;
pub mod neck;
pub mod optim;
pub mod schedule;
pub mod segmentation;

pub use classification::features::Pooling;
pub use error::HeadsError;
