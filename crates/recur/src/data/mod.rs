//! Data: text tokens, vocabularies and the batch layout of language models;
//! token files larger than memory ([`tokens`]); CSV columns; generated series (Mackey-Glass) and the long-memory tasks' batches;
//! readers of labelled text, CoNLL-U, `.ts` series and CSV tables ([`read`]).

mod batch;
mod csv;
mod generate;
pub mod pairs;
pub mod read;
pub mod seq;
pub mod tasks;
pub mod tokens;
mod vocab;

pub use batch::{split_train_val, Batcher, LmBatch, LmData, MAX_VALIDATION};
pub use csv::{read_column, Column};
pub use generate::{addition_pairs, mackey_glass};
pub use vocab::{read_text, tokenize, Level, Vocab, EOS, UNK};
