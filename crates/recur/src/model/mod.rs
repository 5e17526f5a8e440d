//! Models built from the layers.

pub mod lm;
