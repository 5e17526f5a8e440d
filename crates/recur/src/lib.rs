//! recur: recurrent neural networks on the CPU.
//!
//! Elman RNN (tanh, relu), LSTM and GRU layers with PyTorch's weight layout,
//! gate order and state indexing, run by fused kernels with hand-written
//! backpropagation through time; Elman and Jordan nets with leaky units and
//! skip connections (`layer::srn`), the long-memory tasks (`task`) and
//! gradient-flow diagnostics (`diagnose`); echo state networks (`reservoir`).
//!
//! # Dimension legend
//! Every buffer is a flat row-major slice; its shape comment uses these letters.
//!
//! | letter | meaning |
//! |---|---|
//! | T | time steps |
//! | B | batch rows (sequences) |
//! | I | input features of the first layer |
//! | H | hidden units per direction |
//! | G | gate blocks: 1 RNN, 4 LSTM (i, f, g, o), 3 GRU (r, z, n) |
//! | L | stacked layers |
//! | D | directions: 1, or 2 when bidirectional |
//! | V | vocabulary size |
//! | O | outputs per step of a task net's readout (`layer::srn`, `task`) |
//!
//! Sequences are time-major: `x` is `[T, B, I]`, row `t·B + b` is step t of
//! sequence b. States are `[L·D, B, H]`, indexed by `layer·D + direction`.
//!
//! # Example
//! ```
//! use recur::{CellKind, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};
//! let mut store = ParamStore::<f32>::new();
//! let cfg = RnnConfig::new(CellKind::Lstm, 3, 8).layers(2);
//! let rnn = Rnn::new(store.scope("rnn"), cfg).unwrap();
//! rnn.init_uniform(&mut store, 42);
//! let (t, b) = (5, 2);
//! let x = vec![0.5f32; t * b * 3];
//! let mut ws = RnnWorkspace::new();
//! rnn.forward(&store, &mut ws, RnnInput::new(&x, t, b), None).unwrap();
//! assert_eq!(ws.output().len(), t * b * 8);
//! let dy = vec![1.0f32; t * b * 8];
//! rnn.backward(&mut store, &mut ws, &dy, None, None).unwrap();
//! assert!(store.grads.iter().any(|g| *g != 0.0));
//! ```

#![deny(missing_docs)]

mod activation;
mod cell;
pub mod checkpoint;
pub mod data;
pub mod diagnose;
mod error;
pub mod esn;
mod float;
pub mod gemm;
pub mod init;
pub mod layer;
pub mod linalg;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod params;
pub mod plot;
mod pool;
pub mod sample;
pub mod task;
pub mod train;

pub use cell::CellKind;
pub use error::{Error, Result};
pub use float::Float;
pub use layer::embedding::Embedding;
pub use layer::linear::Linear;
pub use layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
pub use params::{Param, ParamInfo, ParamStore, Scope};
