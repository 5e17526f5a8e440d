//! recur: recurrent neural networks on the CPU.
//!
//! Elman RNN (tanh, relu), LSTM and GRU layers with PyTorch's weight layout,
//! gate order and state indexing, run by fused kernels with hand-written
//! backpropagation through time, over whole sequences or one step at a time
//! ([`layer::rnn`]); Elman units may be leaky and skip connections in time,
//! and the Jordan net feeds back its output ([`model::jordan`]).
//!
//! The model layer: every model keeps its parameters and gradients in one
//! [`ParamStore`] whose parts register under scoped names ([`params`]);
//! models implement [`train::Model`] and one [`train::Trainer`] trains them
//! all: the language model ([`model::lm`]), sequence classifiers, taggers
//! and regressors ([`model::seq`], on the readers of [`data::read`] and the
//! bucketed batches of [`data::seq`]), the long-memory task nets ([`task`],
//! with gradient-flow [`diagnose`]-tics). Echo state networks
//! ([`esn`]) are fitted in closed form.
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
//! | O | outputs per step of a readout (task nets, the Jordan net), classes or values of a sequence model's head |
//! | P | parameters of a model: its store's flat buffers |
//! | E | embedding width |
//! | C | features (channels) per step of a series |
//! | F | width of a sequence model's head input: D·H, pooled or per step |
//! | N | rows a head or loss sees: B per sequence, T·B per step; spellings of a batch in the character encoder |
//! | Tc, Ec, Hc | the character encoder's steps (characters), embedding and hidden width |
//! | A | width of attention pooling's projection |
//!
//! Sequences are time-major: `x` is `[T, B, I]`, row `t·B + b` is step t of
//! sequence b. States are `[L·D, B, H]`, indexed by `layer·D + direction`.
//!
//! # A layer
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
//!
//! # Composing a model and training it
//! Parts register in one store; the model implements [`train::Model`], its
//! data [`train::Data`], and the [`train::Trainer`] does the rest. Here an
//! LSTM learns to output, at the last step, the sum of its inputs.
//! ```
//! use rand::{Rng, RngCore, SeedableRng};
//! use recur::layer::loss::mse;
//! use recur::optim::OptimizerKind;
//! use recur::train::{Budget, Data, Evaluation, Metadata, Model, Quiet, TrainConfig, Trainer};
//! use recur::{CellKind, Linear, ParamStore, Result, Rnn, RnnConfig, RnnInput, RnnWorkspace};
//!
//! const T: usize = 6;
//! const B: usize = 16;
//!
//! /// x `[T, B, 1]`, the sum at the last step `[B]`.
//! #[derive(Default)]
//! struct Sums { x: Vec<f32>, y: Vec<f32> }
//!
//! struct Summer { store: ParamStore<f32>, rnn: Rnn, head: Linear,
//!                 ws: RnnWorkspace<f32>, z: Vec<f32>, dz: Vec<f32>, dy: Vec<f32> }
//!
//! impl Summer {
//!     fn new() -> Result<Summer> {
//!         let mut store = ParamStore::new();
//!         let rnn = Rnn::new(store.scope("rnn"), RnnConfig::new(CellKind::Lstm, 1, 16))?;
//!         let head = Linear::new(store.scope("head"), 16, 1);   // "head.weight", "head.bias"
//!         rnn.init_uniform(&mut store, 1);
//!         Ok(Summer { store, rnn, head, ws: RnnWorkspace::new(), z: vec![0.0; B],
//!                     dz: vec![0.0; B], dy: vec![0.0; T * B * 16] })
//!     }
//!     /// The loss, and with `grad` the gradients in the store.
//!     fn pass(&mut self, s: &Sums, grad: bool) -> Result<f64> {
//!         self.rnn.forward(&self.store, &mut self.ws, RnnInput::new(&s.x, T, B), None)?;
//!         let last = &self.ws.output()[(T - 1) * B * 16..];     // the last step, [B, 16]
//!         self.head.forward(&self.store, last, B, &mut self.z);
//!         let loss = mse(&self.z, &s.y, &[1.0; B], &mut self.dz);
//!         if grad {
//!             self.store.zero_grad();
//!             self.dy.fill(0.0);
//!             let d_last = &mut self.dy[(T - 1) * B * 16..];
//!             self.head.backward(&mut self.store, last, &self.dz, B, Some(d_last));
//!             self.rnn.backward(&mut self.store, &mut self.ws, &self.dy, None, None)?;
//!         }
//!         Ok(loss)
//!     }
//! }
//!
//! impl Model for Summer {
//!     type Batch = Sums;
//!     fn store(&self) -> &ParamStore<f32> { &self.store }
//!     fn store_mut(&mut self) -> &mut ParamStore<f32> { &mut self.store }
//!     fn forward_backward(&mut self, s: &Sums, _: &mut dyn RngCore) -> Result<f64> {
//!         self.pass(s, true)
//!     }
//!     fn evaluate(&mut self, held_out: &[Sums]) -> Result<Evaluation> {
//!         let mut loss = 0.0;
//!         for s in held_out { loss += self.pass(s, false)?; }
//!         Ok(Evaluation { loss: loss / held_out.len() as f64, ..Default::default() })
//!     }
//!     fn metadata(&self) -> Metadata { vec![("format".into(), "summer".into())] }
//! }
//!
//! /// Fresh random sequences every step; a fixed held-out set.
//! struct SumData { rng: rand_chacha::ChaCha8Rng, val: Vec<Sums> }
//! fn draw(rng: &mut impl Rng, s: &mut Sums) {
//!     s.x = (0..T * B).map(|_| rng.random_range(0.0..0.5)).collect();
//!     s.y = (0..B).map(|b| (0..T).map(|t| s.x[t * B + b]).sum()).collect();
//! }
//! impl Data for SumData {
//!     type Batch = Sums;
//!     fn steps_per_epoch(&self) -> Option<usize> { None }
//!     fn fill(&mut self, _: usize, _: usize, s: &mut Sums) -> Result<()> {
//!         draw(&mut self.rng, s);
//!         Ok(())
//!     }
//!     fn tokens_per_step(&self) -> usize { T * B }
//!     fn validation(&self) -> &[Sums] { &self.val }
//!     fn fingerprint(&self) -> u64 { 0 }
//!     fn rng(&mut self) -> Option<&mut rand_chacha::ChaCha8Rng> { Some(&mut self.rng) }
//! }
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let mut val = Sums::default();
//! draw(&mut rng, &mut val);
//! let data = SumData { rng, val: vec![val] };
//! let mut config = TrainConfig::new(OptimizerKind::Adam, 1e-2);
//! config.clip_norm = 1.0;
//! let mut trainer = Trainer::new(Summer::new()?, data, config)?;
//! let before = trainer.evaluate()?.unwrap().loss;
//! trainer.run(Budget::Steps(300), 100, None, &mut Quiet)?;
//! let after = trainer.evaluate()?.unwrap().loss;
//! assert!(after < before / 20.0, "{before} -> {after}");
//! # Ok::<(), recur::Error>(())
//! ```

#![deny(missing_docs)]

mod activation;
pub mod bleu;
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
pub mod quant;
pub mod sample;
pub mod task;
pub mod train;

pub use cell::CellKind;
pub use error::{Error, Result};
pub use float::Float;
pub use layer::embedding::Embedding;
pub use layer::linear::Linear;
pub use layer::rnn::{Leak, Rnn, RnnConfig, RnnInput, RnnWorkspace};
pub use params::{Param, ParamInfo, ParamStore, Scope};
