//! The default training text, embedded in the binary so that `recur train`
//! works with nothing else present: recur's own source code and README.

/// About 150 KB of Rust and Markdown.
pub const DEFAULT_CORPUS: &[&str] = &[
    include_str!("../../../README.md"),
    include_str!("../../recur/src/lib.rs"),
    include_str!("../../recur/src/layer/rnn/mod.rs"),
    include_str!("../../recur/src/layer/rnn/dir.rs"),
    include_str!("../../recur/src/cell/mod.rs"),
    include_str!("../../recur/src/cell/rnn.rs"),
    include_str!("../../recur/src/cell/lstm.rs"),
    include_str!("../../recur/src/cell/gru.rs"),
    include_str!("../../recur/src/gemm.rs"),
    include_str!("../../recur/src/activation.rs"),
    include_str!("../../recur/src/model/lm.rs"),
    include_str!("../../recur/src/sample.rs"),
    include_str!("../../recur/src/checkpoint.rs"),
    include_str!("../../recur/src/data/vocab.rs"),
    include_str!("../../recur/src/data/batch.rs"),
];

/// The corpus as one text.
pub fn text() -> String {
    DEFAULT_CORPUS.concat()
}
