//! Models built from the layers.

pub mod any;
pub mod jordan;
pub mod lm;
pub mod ngram;
pub mod seq;
pub mod seq2seq;
pub mod window;
