//! Downstream heads on top of a CAE / BEiT / MAE encoder.
//!
//! This crate will hold the linear probe (BatchNorm without affine + Linear, LARS), the attentive probe
//! (one cross-attention block on a learned query), kNN, and the dense heads: UperNet for semantic
//! segmentation and a Mask R-CNN style detector, each on a frozen or fine-tuned `cae_pretrain` encoder.
