//! Language model in the layout of PyTorch's word_language_model `RNNModel`:
//! `encoder` (embedding `[V, E]`) → dropout → `rnn` (stack, dropout between
//! layers) → dropout → `decoder` (linear `[V, H]` + bias `[V]`).
//!
//! Training is truncated BPTT: the state at the end of one batch starts the
//! next (no gradient flows across), and [`LmWorkspace::reset_state`] zeroes
//! it at the start of each epoch.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::checkpoint::MODEL_FORMAT;
use crate::data::LmBatch;
use crate::error::{check_ids, check_len, Error, Result};
use crate::float::add_into;
use crate::layer::dropout::{dropout_backward, dropout_forward};
use crate::layer::embedding::Embedding;
use crate::layer::linear::Linear;
use crate::layer::loss::softmax_cross_entropy;
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::params::{Param, ParamStore};
use crate::quant::Precision;
use crate::train::{Evaluation, Metadata, Model};

/// Sizes of a language model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    /// The cell of every layer (saved as "lstm", "gru", "gru-reset-before",
    /// "rnn-tanh" or "rnn-relu").
    pub cell: CellKind,
    /// V.
    pub vocab_size: usize,
    /// E: embedding width.
    pub embed: usize,
    /// H.
    pub hidden: usize,
    /// L.
    pub layers: usize,
    /// Dropout on the embedding, between layers and on the output (training only).
    pub dropout: f64,
}

/// The model: its parts and the one store that holds all their parameters
/// and gradients, in PyTorch's `RNNModel` order and names.
#[derive(Clone, Debug)]
pub struct LanguageModel {
    config: LmConfig,
    /// Every parameter and gradient: `encoder.weight` `[V, E]`,
    /// `rnn.weight_ih_l0` … (the stack), `decoder.weight` `[V, H]`,
    /// `decoder.bias` `[V]`.
    pub store: ParamStore<f32>,
    encoder: Embedding,
    rnn: Rnn,
    decoder: Linear,
    /// The training workspace, with the state carried between batches.
    train_ws: LmWorkspace,
    /// The evaluation workspace.
    eval_ws: LmWorkspace,
    /// Weight of the gradient-decay regulariser in training (0: none); a
    /// training setting, not part of the model.
    decay: f64,
}

/// Buffers of one model for one (T, B), reused across calls, and the state
/// carried between batches.
#[derive(Clone, Debug, Default)]
pub struct LmWorkspace {
    /// `[T·B]` input ids of the last forward.
    ids: Vec<u32>,
    /// `[T, B, E]` embeddings after dropout.
    emb: Vec<f32>,
    /// `[T, B, E]`
    emb_mask: Vec<f32>,
    rnn: RnnWorkspace<f32>,
    /// `[T, B, H]` stack output after dropout (empty without dropout:
    /// the decoder then reads the stack's output in place).
    out: Vec<f32>,
    /// `[T, B, H]`
    out_mask: Vec<f32>,
    /// `[T·B, V]` logits, then dL/dlogits.
    logits: Vec<f32>,
    /// `[T, B, H]`
    d_out: Vec<f32>,
    /// `[L, B, H]` carried state (h, and c for LSTM); empty when zero.
    state_h: Vec<f32>,
    state_c: Vec<f32>,
    state_batch: usize,
    dropped: bool,
    /// `[L, B, H]` scratch for reordering the carried state (beam search).
    scratch: Vec<f32>,
    /// `[T, B, H]` dL/dh_t held for the gradient-decay regulariser.
    g: Vec<f32>,
}

impl LmWorkspace {
    /// An empty workspace.
    pub fn new() -> LmWorkspace {
        LmWorkspace::default()
    }
    /// `[B, V]` or `[T·B, V]` logits of the last forward (before any backward).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
    /// `[L, B, H]` carried hidden state (empty when zero).
    pub fn state_h(&self) -> &[f32] {
        &self.state_h
    }
    /// `[L, B, H]` carried cell state (LSTM; empty when zero).
    pub fn state_c(&self) -> &[f32] {
        &self.state_c
    }
    /// Sets the carried state, for resuming; empty slices mean zero.
    pub fn set_state(&mut self, h: &[f32], c: &[f32], batch: usize) {
        self.state_h = h.to_vec();
        self.state_c = c.to_vec();
        self.state_batch = batch;
    }
    /// Zeroes the carried state (start of an epoch or of a stream).
    pub fn reset_state(&mut self) {
        self.state_h.clear();
        self.state_c.clear();
    }
    /// Reorders the rows of the carried state: new row i = old row `from[i]`
    /// (beam search).
    pub(crate) fn reorder_state(&mut self, from: &[usize], h: usize) {
        let b = self.state_batch;
        for s in [&mut self.state_h, &mut self.state_c] {
            if s.is_empty() {
                continue;
            }
            // Gather into the reused scratch buffer, then copy back.
            self.scratch.clear();
            for layer in s.chunks_exact(b * h) {
                for &f in from {
                    self.scratch.extend_from_slice(&layer[f * h..(f + 1) * h]);
                }
            }
            s.copy_from_slice(&self.scratch);
        }
    }
}

/// Reborrows an optional random stream for one call.
fn reborrow<'a>(r: &'a mut Option<&mut dyn RngCore>) -> Option<&'a mut dyn RngCore> {
    match r {
        Some(r) => Some(&mut **r),
        None => None,
    }
}

impl LanguageModel {
    /// A model with every parameter drawn from U(−0.1, 0.1) for the
    /// embedding and decoder (as word_language_model) and PyTorch's default
    /// U(−1/√H, 1/√H) for the recurrent stack, decoder bias zero.
    pub fn new(config: LmConfig, seed: u64) -> Result<LanguageModel> {
        let mut m = LanguageModel::zeros(config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        use rand::Rng;
        let p = &mut m.store.params;
        for r in [m.encoder.weight().range(), m.decoder.weight().range()] {
            for v in &mut p[r] {
                *v = rng.random_range(-0.1f32..0.1);
            }
        }
        m.rnn.init_uniform(&mut m.store, rng.next_u64());
        Ok(m)
    }

    /// A model with all parameters zero (to be loaded).
    pub fn zeros(config: LmConfig) -> Result<LanguageModel> {
        let cell = config.cell;
        let (v, e, h) = (config.vocab_size, config.embed, config.hidden);
        if v == 0 || e == 0 || h == 0 || config.layers == 0 {
            return Err(Error::Config(format!(
                "vocab size, embedding width, hidden size and layers must be at least 1 (got {v}, {e}, {h}, {})",
                config.layers
            )));
        }
        let mut store = ParamStore::new();
        let encoder = Embedding::new(store.scope("encoder"), v, e);
        let rnn = Rnn::new(
            store.scope("rnn"),
            RnnConfig::new(cell, e, h)
                .layers(config.layers)
                .dropout(config.dropout),
        )?;
        let decoder = Linear::new(store.scope("decoder"), h, v);
        Ok(LanguageModel {
            config,
            store,
            encoder,
            rnn,
            decoder,
            train_ws: LmWorkspace::new(),
            eval_ws: LmWorkspace::new(),
            decay: 0.0,
        })
    }

    /// Trains with the gradient-decay regulariser of Pascanu et al. 2013
    /// at `weight` (0: none; see [`Rnn::decay_penalty`]): one-layer Elman
    /// models only.
    pub fn set_gradient_regulariser(&mut self, weight: f64) -> Result<()> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::Config(format!(
                "the gradient-decay regulariser's weight must be 0 or more (got {weight})"
            )));
        }
        let elman = matches!(self.config.cell, CellKind::RnnTanh | CellKind::RnnRelu);
        if weight > 0.0 && !(elman && self.config.layers == 1) {
            return Err(Error::Config(format!(
                "the gradient-decay regulariser is for one-layer Elman models (rnn-tanh or rnn-relu), not {} layer(s) of {}",
                self.config.layers,
                self.config.cell.name()
            )));
        }
        self.decay = weight;
        Ok(())
    }

    /// Runs inference with the weight products in `precision`: bf16 and
    /// int8 convert the recurrent and decoder weights once, here (the
    /// embedding is a lookup and stays f32); f32 goes back to the model's
    /// own weights. Training converts with [`Model::set_training_precision`]
    /// instead (the run's `TrainConfig::precision`).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.pack(precision, &weights)
    }

    /// The weights products multiply by: the stack's and the decoder's.
    fn product_weights(&self) -> Vec<Param> {
        let mut weights = self.rnn.product_weights();
        weights.push(self.decoder.weight());
        weights
    }

    /// The precision of the weight products (f32 unless
    /// [`LanguageModel::set_precision`] changed it).
    pub fn precision(&self) -> Precision {
        self.store.precision()
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }

    /// Sets the dropout probability (for fine-tuning an imported model).
    pub fn set_dropout(&mut self, p: f64) -> Result<()> {
        let mut cfg = self.config.clone();
        cfg.dropout = p;
        let mut fresh = LanguageModel::zeros(cfg)?;
        fresh.store.params = std::mem::take(&mut self.store.params);
        *self = fresh;
        Ok(())
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.store.len()
    }

    /// Runs the model over `ids` `[T, B]` from the carried state, leaving
    /// `[T·B, V]` logits in the workspace and the final state carried.
    pub fn forward(
        &self,
        ws: &mut LmWorkspace,
        ids: &[u32],
        t: usize,
        b: usize,
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        let (v, e, h, l) = (
            self.config.vocab_size,
            self.config.embed,
            self.config.hidden,
            self.config.layers,
        );
        check_len("ids", || format!("[T={t}, B={b}]"), t * b, ids.len())?;
        check_ids("token ids", "ids", "token", ids, v)?;
        let n = t * b;
        ws.ids.clear();
        ws.ids.extend_from_slice(ids);
        let p = self.config.dropout;
        ws.dropped = rng.is_some() && p > 0.0;
        if ws.state_batch != b {
            ws.reset_state();
        }
        // Without dropout on the embeddings the stack looks their rows up
        // itself (and multiplies them by its input weight once); dropout
        // makes every row different, so those are built here.
        let mut input = if ws.dropped {
            ws.emb.resize(n * e, 0.0);
            self.encoder.forward(&self.store, ids, &mut ws.emb);
            ws.emb_mask.resize(n * e, 0.0);
            dropout_forward(
                &mut ws.emb,
                &mut ws.emb_mask,
                p,
                reborrow(&mut rng).unwrap(),
            );
            RnnInput::new(&ws.emb[..], t, b)
        } else {
            let table = self.encoder.weight().of(&self.store.params);
            RnnInput::lookup(table, ids, t, b)
        };

        if !ws.state_h.is_empty() {
            input = input.h0(&ws.state_h);
        }
        if !ws.state_c.is_empty() {
            input = input.c0(&ws.state_c);
        }
        self.rnn
            .forward(&self.store, &mut ws.rnn, input, reborrow(&mut rng))?;
        ws.state_h.clear();
        ws.state_h.extend_from_slice(ws.rnn.h_n());
        ws.state_c.clear();
        ws.state_c.extend_from_slice(ws.rnn.c_n());
        ws.state_batch = b;
        debug_assert_eq!(ws.state_h.len(), l * b * h);
        if ws.dropped {
            ws.out.clear();
            ws.out.extend_from_slice(ws.rnn.output());
            ws.out_mask.resize(n * h, 0.0);
            dropout_forward(&mut ws.out, &mut ws.out_mask, p, rng.unwrap());
        }
        ws.logits.resize(n * v, 0.0);
        self.decoder.forward(
            &self.store,
            decoder_input(ws.dropped, &ws.out, &ws.rnn),
            n,
            &mut ws.logits,
        );
        Ok(())
    }

    /// Checks that `targets` is `[T, B]` of ids inside the vocabulary.
    fn check_targets(&self, targets: &[u32], t: usize, b: usize) -> Result<()> {
        let v = self.config.vocab_size;
        check_len(
            "targets",
            || format!("[T={t}, B={b}]"),
            t * b,
            targets.len(),
        )?;
        check_ids("targets", "targets", "target", targets, v)
    }

    /// Mean cross-entropy of predicting `targets` `[T, B]` from `inputs`,
    /// without gradients (state carried).
    pub fn loss(
        &self,
        ws: &mut LmWorkspace,
        inputs: &[u32],
        targets: &[u32],
        t: usize,
        b: usize,
    ) -> Result<f64> {
        self.check_targets(targets, t, b)?;
        self.forward(ws, inputs, t, b, None)?;
        Ok(softmax_cross_entropy(
            &mut ws.logits,
            targets,
            self.config.vocab_size,
            false,
        ))
    }

    /// One training pass on `ws`: zeroes the gradients, runs forward and
    /// backward (truncated at the batch boundary) and returns the mean
    /// cross-entropy. `rng` drives dropout; `None` turns it off.
    pub fn forward_backward_with(
        &mut self,
        ws: &mut LmWorkspace,
        inputs: &[u32],
        targets: &[u32],
        t: usize,
        b: usize,
        rng: Option<&mut dyn RngCore>,
    ) -> Result<f64> {
        let (v, h) = (self.config.vocab_size, self.config.hidden);
        crate::train::check_trainable(&self.store)?;
        self.check_targets(targets, t, b)?;
        self.forward(ws, inputs, t, b, rng)?;
        self.store.zero_grad();
        let n = t * b;
        let loss = softmax_cross_entropy(&mut ws.logits, targets, v, true);
        ws.d_out.resize(n * h, 0.0);
        self.decoder.backward(
            &mut self.store,
            decoder_input(ws.dropped, &ws.out, &ws.rnn),
            &ws.logits,
            n,
            Some(&mut ws.d_out),
        );
        if ws.dropped {
            dropout_backward(&mut ws.d_out, &ws.out_mask);
        }
        ws.rnn.record_state_grads(self.decay > 0.0);
        self.rnn
            .backward(&mut self.store, &mut ws.rnn, &ws.d_out, None, None)?;
        self.encoder_backward(ws);
        if self.decay > 0.0 {
            // Ω with the task loss's dL/dh_t held, then its gradient by a
            // second pass through the stack and the embedding.
            ws.g.clear();
            ws.g.extend_from_slice(ws.rnn.state_grads(0, 0));
            self.rnn.decay_penalty(
                &mut self.store,
                &mut ws.rnn,
                &ws.g,
                self.decay,
                &mut ws.d_out,
            )?;
            self.rnn
                .backward(&mut self.store, &mut ws.rnn, &ws.d_out, None, None)?;
            self.encoder_backward(ws);
        }
        Ok(loss)
    }

    /// Adds the embedding's gradient: the stack's dL/d(table) after a
    /// lookup pass, else its dL/dx through the embedding dropout's mask.
    fn encoder_backward(&mut self, ws: &mut LmWorkspace) {
        if ws.dropped {
            // d_emb = dx ⊙ mask, reusing the embedding buffer.
            let dx = ws.rnn.dx();
            for ((d, &g), &m) in ws.emb.iter_mut().zip(dx).zip(&ws.emb_mask) {
                *d = g * m;
            }
            self.encoder.backward(&mut self.store, &ws.ids, &ws.emb);
        } else {
            let d = self.encoder.weight().of_mut(&mut self.store.grads);
            add_into(d, ws.rnn.d_table());
        }
    }
}

/// `[T·B, H]` what the decoder reads: the stack's output `rnn`, or `out`
/// after dropout when the last forward `dropped`.
fn decoder_input<'a>(dropped: bool, out: &'a [f32], rnn: &'a RnnWorkspace<f32>) -> &'a [f32] {
    if dropped {
        out
    } else {
        rnn.output()
    }
}

impl LanguageModel {
    /// Σ loss·predictions and the predictions of `chunks` (inputs, targets,
    /// T, B), run in order with the state carried from one to the next and
    /// zeroed before and after: how validation and `eval` both measure a
    /// stream.
    fn run_stream<'a>(
        &self,
        ws: &mut LmWorkspace,
        chunks: impl Iterator<Item = (&'a [u32], &'a [u32], usize, usize)>,
    ) -> Result<(f64, usize)> {
        ws.reset_state();
        let sums = chunks
            .into_iter()
            .try_fold((0.0f64, 0usize), |(total, n), (x, y, t, b)| {
                let mean = self.loss(ws, x, y, t, b)?;
                Ok((total + mean * (t * b) as f64, n + t * b))
            });
        ws.reset_state();
        sums
    }
}

/// The states a language model passes through, for inspection.
#[derive(Clone, Debug, Default)]
pub struct States {
    /// `[T, L, H]` every layer's hidden state after each token.
    pub h: Vec<f32>,
    /// `[T, L, H]` every layer's cell state (LSTM; empty otherwise).
    pub c: Vec<f32>,
    /// `[T, V]` the logits after each token (the next token's prediction).
    pub logits: Vec<f32>,
}

impl LanguageModel {
    /// Runs `ids` one token at a time from a zero state and records every
    /// layer's state after each (Karpathy, Johnson and Fei-Fei 2015's cell
    /// visualisation reads these).
    pub fn states(&self, ids: &[u32]) -> Result<States> {
        let (l, h, v) = (
            self.config.layers,
            self.config.hidden,
            self.config.vocab_size,
        );
        let lstm = self.config.cell == crate::CellKind::Lstm;
        let mut ws = LmWorkspace::new();
        let mut out = States {
            h: Vec::with_capacity(ids.len() * l * h),
            c: Vec::with_capacity(if lstm { ids.len() * l * h } else { 0 }),
            logits: Vec::with_capacity(ids.len() * v),
        };
        for &id in ids {
            self.forward(&mut ws, &[id], 1, 1, None)?;
            out.h.extend_from_slice(ws.state_h());
            if lstm {
                out.c.extend_from_slice(ws.state_c());
            }
            out.logits.extend_from_slice(ws.logits());
        }
        Ok(out)
    }
}

/// What [`LanguageModel::eval_stream`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamLoss {
    /// Predictions made: tokens − 1.
    pub predictions: usize,
    /// Mean cross-entropy in nats.
    pub mean_cross_entropy: f64,
}

impl LanguageModel {
    /// Mean cross-entropy of predicting every token of `ids` from all the
    /// tokens before it: one stream at batch 1 from a zero state, run in
    /// chunks of `chunk` steps with the state carried throughout.
    pub fn eval_stream(
        &self,
        ws: &mut LmWorkspace,
        ids: &[u32],
        chunk: usize,
    ) -> Result<StreamLoss> {
        if ids.len() < 2 {
            return Err(Error::input(
                "token ids",
                format!("need at least 2 tokens to predict one, got {}", ids.len()),
            ));
        }
        let (n, c) = (ids.len() - 1, chunk.max(1));
        let chunks = (0..n).step_by(c).map(|s| {
            let t = c.min(n - s);
            (&ids[s..s + t], &ids[s + 1..s + t + 1], t, 1)
        });
        let (total, _) = self.run_stream(ws, chunks)?;
        Ok(StreamLoss {
            predictions: n,
            mean_cross_entropy: total / n as f64,
        })
    }
}

impl Model for LanguageModel {
    type Batch = LmBatch;

    fn set_training_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.set_training_precision(precision, &weights)
    }

    fn store(&self) -> &ParamStore<f32> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.store
    }

    fn forward_backward(&mut self, b: &LmBatch, rng: &mut dyn RngCore) -> Result<f64> {
        // Moving the workspace out and back allocates nothing.
        let mut ws = std::mem::take(&mut self.train_ws);
        let r =
            self.forward_backward_with(&mut ws, &b.inputs, &b.targets, b.steps, b.batch, Some(rng));
        self.train_ws = ws;
        r
    }

    /// Mean cross-entropy over every prediction of `batches`, run in order
    /// with the state carried from one to the next and zeroed around them;
    /// also perplexity and bits per token.
    fn evaluate(&mut self, batches: &[LmBatch]) -> Result<Evaluation> {
        let mut ws = std::mem::take(&mut self.eval_ws);
        let chunks = batches
            .iter()
            .map(|b| (&b.inputs[..], &b.targets[..], b.steps, b.batch));
        let result = self.run_stream(&mut ws, chunks);
        self.eval_ws = ws;
        let (total, count) = result?;
        Ok(Evaluation::language_model(total / count.max(1) as f64))
    }

    fn start_epoch(&mut self) {
        self.train_ws.reset_state();
    }

    fn carried_state(&self) -> Vec<(&'static str, &[f32])> {
        vec![
            ("h", self.train_ws.state_h()),
            ("c", self.train_ws.state_c()),
        ]
    }

    fn set_carried_state(&mut self, state: &[(String, Vec<f32>)]) -> Result<()> {
        let (mut h, mut c) = (&[][..], &[][..]);
        for (name, v) in state {
            match name.as_str() {
                "h" => h = v,
                "c" => c = v,
                other => {
                    return Err(Error::Config(format!(
                        "a language model carries h and c, not '{other}'"
                    )))
                }
            }
        }
        let per_row = self.config.layers * self.config.hidden;
        self.train_ws.set_state(h, c, h.len() / per_row);
        Ok(())
    }

    fn loss_bound(&self) -> Option<f64> {
        Some(10.0 * (self.config.vocab_size.max(2) as f64).ln())
    }

    fn metadata(&self) -> Metadata {
        vec![
            ("format".to_string(), MODEL_FORMAT.to_string()),
            (
                "config".to_string(),
                serde_json::to_string(&self.config).expect("config serialises"),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_vocabulary_ids_are_errors_not_panics() {
        let cfg = LmConfig {
            cell: CellKind::Gru,
            vocab_size: 3,
            embed: 2,
            hidden: 4,
            layers: 1,
            dropout: 0.0,
        };
        let mut m = LanguageModel::new(cfg, 1).unwrap();
        let mut ws = LmWorkspace::new();
        let e = m
            .loss(&mut ws, &[0, 1], &[2, 5], 2, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target id 5"), "{e}");
        let e = m
            .forward_backward_with(&mut ws, &[0, 7], &[1, 2], 2, 1, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token id 7"), "{e}");
        assert!(m.loss(&mut ws, &[0, 1], &[2, 0], 2, 1).unwrap().is_finite());
    }
}
