//! CAE pretraining.
