//! Classification heads on an encoder (cae.md §5a, protocols.md §4) and what trains them:
//!
//! | protocol | what trains | module |
//! |---|---|---|
//! | linear probe (MAE / CAE) | BatchNorm (no affine) + Linear on the cls token (or mean / cls+mean, or an intermediate block), LARS | [`linear`], [`norm`] |
//! | attentive probe (CAE) | one cross-attention block on a learned query + BatchNorm + Linear, Nesterov SGD | [`attentive`] |
//! | kNN (DINO) | nothing: k = 20, cosine similarity, `exp(s/0.07)` votes | [`knn`] |
//! | fine-tuning (CAE), low-label | the whole encoder + `fc_norm` + Linear, AdamW with layer-wise lr decay | [`finetune`] |
//!
//! [`features`] extracts pooled features or tokens, [`train_head`] trains a [`head::ProbeHead`]
//! on them. The protocols around them (recipes, runs, records) are
//! `cae_bench::protocols::classification`.

pub mod attentive;
pub mod features;
pub mod finetune;
pub mod head;
pub mod knn;
pub mod linear;
pub mod norm;
pub mod train_head;
