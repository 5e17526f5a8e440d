//! Models built from the layers.

pub mod jordan;
pub mod lm;
pub mod seq;
pub mod seq2seq;
