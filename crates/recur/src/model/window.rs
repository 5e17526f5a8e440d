//! The fixed-window neural language model of Bengio et al. 2003 (the
//! time-delay nets of the lectures): the embeddings of the last K tokens,
//! concatenated, a tanh hidden layer and a softmax over the vocabulary,
//! with dropout on the hidden layer in training.
//! It shares weights across positions but sees exactly K tokens back: the
//! baseline recurrent models are measured against.
//!
//! It trains on the language model's batches ([`LmBatch`], `[T, B]`
//! time-major). Each row's last K − 1 tokens are carried into the next
//! batch, as truncated BPTT carries the state; before a row's first token
//! the window holds a padding id (V), whose embedding is learned too.

use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::LmBatch;
use crate::error::{check_ids, Error, Result};
use crate::float::Float;
use crate::gemm::{gemm, Trans};
use crate::init::{fill_uniform, init_linears};
use crate::layer::add_column_sums;
use crate::layer::dropout::{dropout_backward, dropout_forward};
use crate::layer::embedding::{gather_rows, scatter_rows, Embedding};
use crate::layer::linear::Linear;
use crate::layer::loss::softmax_cross_entropy;
use crate::params::ParamStore;
use crate::quant::Precision;
use crate::sample::{sample_loop, Decoding};
use crate::train::{Evaluation, Metadata, Model};

/// The `format` metadata of a fixed-window model file.
pub const WINDOW_FORMAT: &str = "recur-window-lm";

/// The shape of a fixed-window model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowConfig {
    /// V.
    pub vocab_size: usize,
    /// K: tokens the model sees.
    pub context: usize,
    /// E.
    pub embed: usize,
    /// H.
    pub hidden: usize,
    /// Dropout probability on the hidden layer, in training only (files
    /// without it have none).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout probability on the concatenated embeddings, in training
    /// only (files without it have none).
    #[serde(default)]
    pub embed_dropout: f64,
}

impl WindowConfig {
    /// Parameters: (V + 1)·E + H·K·E + H + V·H + V (`None` on overflow).
    pub fn param_count(&self) -> Option<usize> {
        let (v, k, e, h) = (self.vocab_size, self.context, self.embed, self.hidden);
        (v.checked_add(1)?.checked_mul(e)?)
            .checked_add(h.checked_mul(k.checked_mul(e)?)?)?
            .checked_add(h)?
            .checked_add(v.checked_mul(h)?)?
            .checked_add(v)
    }

    fn check(&self) -> Result<()> {
        if self.vocab_size == 0 || self.context == 0 || self.embed == 0 || self.hidden == 0 {
            return Err(Error::Config(format!(
                "a fixed-window model needs V, K, E and H of at least 1 (got {}, {}, {}, {})",
                self.vocab_size, self.context, self.embed, self.hidden
            )));
        }
        for (what, p) in [
            ("dropout", self.dropout),
            ("embedding dropout", self.embed_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Config(format!("{what} must be in [0, 1), got {p}")));
            }
        }
        if self.param_count().is_none() || self.vocab_size >= u32::MAX as usize {
            return Err(Error::Config("the fixed-window model is too large".into()));
        }
        Ok(())
    }
}

/// Buffers of one pass; N = T·B rows.
#[derive(Clone, Debug, Default)]
pub struct WindowWs<T> {
    /// `[N, K]` the window of each row.
    ids: Vec<u32>,
    /// `[N, K·E]` concatenated embeddings (the product path only), after
    /// embedding dropout when it ran.
    x: Vec<T>,
    /// `[N, K·E]` embedding dropout mask (0 or 1/(1 − p)).
    x_mask: Vec<T>,
    /// Whether the last forward applied embedding dropout.
    x_dropped: bool,
    /// `[K, V + 1, H]` each position's slice of the hidden weight applied
    /// to every embedding (the table path), then its gradient.
    table: Vec<T>,
    /// `[N, H]` tanh activations.
    a: Vec<T>,
    /// `[N, H]` tanh activations after dropout (training with dropout only).
    a_drop: Vec<T>,
    /// `[N, H]` dropout mask (0 or 1/(1 − p)).
    mask: Vec<T>,
    /// Whether the last forward applied dropout.
    dropped: bool,
    /// `[N, V]` logits, then dL/dlogits.
    logits: Vec<T>,
    /// `[N, H]` dL/da, then dL/dz.
    da: Vec<T>,
    /// `[N, K·E]` dL/dx (the product path only).
    dx: Vec<T>,
    /// `[K − 1, B]` each row's last tokens, carried across batches (empty: padding).
    history: Vec<u32>,
    /// `[K − 1, B]` the next batch's history while it is filled.
    next_history: Vec<u32>,
}

impl<T> WindowWs<T> {
    /// A workspace with no history.
    pub fn new() -> WindowWs<T> {
        WindowWs {
            ids: Vec::new(),
            x: Vec::new(),
            x_mask: Vec::new(),
            x_dropped: false,
            table: Vec::new(),
            a: Vec::new(),
            a_drop: Vec::new(),
            mask: Vec::new(),
            dropped: false,
            logits: Vec::new(),
            da: Vec::new(),
            dx: Vec::new(),
            history: Vec::new(),
            next_history: Vec::new(),
        }
    }
    /// Forgets the carried tokens (start of an epoch or a stream).
    pub fn reset(&mut self) {
        self.history.clear();
    }
    /// `[N, V]` the logits of the last forward.
    pub fn logits(&self) -> &[T] {
        &self.logits
    }
}

/// A fixed-window language model.
pub struct WindowLm<T> {
    config: WindowConfig,
    /// Parameters and gradients: `embedding.weight`, `hidden.{weight,bias}`, `out.{weight,bias}`.
    pub store: ParamStore<T>,
    embedding: Embedding,
    hidden: Linear,
    out: Linear,
    train_ws: WindowWs<T>,
    eval_ws: WindowWs<T>,
    /// The carried history as f32, for the training state.
    carried: Vec<f32>,
}

impl<T: Float> WindowLm<T> {
    /// A model with all parameters zero (to be filled from a file).
    pub fn zeros(config: WindowConfig) -> Result<WindowLm<T>> {
        config.check()?;
        let (v, k, e, h) = (
            config.vocab_size,
            config.context,
            config.embed,
            config.hidden,
        );
        let mut store = ParamStore::new();
        let embedding = Embedding::new(store.scope("embedding"), v + 1, e);
        let hidden = Linear::new(store.scope("hidden"), k * e, h);
        let out = Linear::new(store.scope("out"), h, v);
        Ok(WindowLm {
            config,
            store,
            embedding,
            hidden,
            out,
            train_ws: WindowWs::new(),
            eval_ws: WindowWs::new(),
            carried: Vec::new(),
        })
    }

    /// A model initialised from `seed`: embeddings N(0, 1)-like U(−√3, √3)
    /// scaled by 0.1, linear layers as PyTorch's.
    pub fn new(config: WindowConfig, seed: u64) -> Result<WindowLm<T>> {
        let mut m = WindowLm::zeros(config)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        fill_uniform(
            m.embedding.weight().of_mut(&mut m.store.params),
            0.1,
            &mut rng,
        );
        init_linears(&mut m.store.params, &[m.hidden, m.out], &mut rng);
        Ok(m)
    }

    /// The config.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Sets the dropout probabilities of training: on the hidden layer and
    /// on the embeddings.
    pub fn set_dropout(&mut self, p: f64, embed: f64) -> Result<()> {
        let cfg = WindowConfig {
            dropout: p,
            embed_dropout: embed,
            ..self.config.clone()
        };
        cfg.check()?;
        self.config = cfg;
        Ok(())
    }

    /// Fills the windows `[N, K]` of inputs `[T, B]` from the workspace's
    /// history, and leaves the last K − 1 tokens of each row there.
    fn windows(&self, ws: &mut WindowWs<T>, inputs: &[u32], t: usize, b: usize) {
        let (k, pad) = (self.config.context, self.config.vocab_size as u32);
        let hist = k - 1;
        if ws.history.len() != hist * b {
            ws.history.clear();
            ws.history.resize(hist * b, pad);
        }
        ws.ids.clear();
        ws.ids.resize(t * b * k, pad);
        for s in 0..t {
            for r in 0..b {
                for j in 0..k {
                    // Position s − (k − 1) + j of this row: before s = 0 it is in the history.
                    let p = s as isize - hist as isize + j as isize;
                    ws.ids[(s * b + r) * k + j] = if p >= 0 {
                        inputs[p as usize * b + r]
                    } else {
                        ws.history[(hist as isize + p) as usize * b + r]
                    };
                }
            }
        }
        // The new history: positions t − (k − 1) .. t − 1.
        ws.next_history.clear();
        ws.next_history.resize(hist * b, pad);
        for i in 0..hist {
            let p = t as isize - hist as isize + i as isize;
            for r in 0..b {
                ws.next_history[i * b + r] = if p >= 0 {
                    inputs[p as usize * b + r]
                } else {
                    ws.history[(hist as isize + p) as usize * b + r]
                };
            }
        }
        std::mem::swap(&mut ws.history, &mut ws.next_history);
    }

    /// (V, K, E, H).
    fn dims(&self) -> (usize, usize, usize, usize) {
        let c = &self.config;
        (c.vocab_size, c.context, c.embed, c.hidden)
    }

    /// Whether a pass of `n` rows goes through the table: its K·(V + 1)
    /// rows cost a fraction (V + 1)/N of the product over the N windows'
    /// K·E inputs, so from N ≥ 2·(V + 1) on (character vocabularies) it is
    /// the cheaper way to the same sums.
    fn uses_table(&self, n: usize) -> bool {
        n >= 2 * (self.config.vocab_size + 1)
    }

    /// `a[N, H] = b + Σ_j P_j[ids[·, j]]` with `P_j = embedding · W_jᵀ`
    /// `[V + 1, H]`, W_j the `[H, E]` columns of position j in the hidden
    /// weight: the hidden layer's pre-activations as sums of table rows.
    fn hidden_from_table(&self, ws: &mut WindowWs<T>, n: usize) {
        let (v, k, e, h) = self.dims();
        let v1 = v + 1;
        let p = &self.store.params;
        let (emb, w, bias) = (
            self.embedding.weight().of(p),
            self.hidden.weight().of(p),
            self.hidden.bias().of(p),
        );
        ws.table.resize(k * v1 * h, T::ZERO);
        for (j, tj) in ws.table.chunks_exact_mut(v1 * h).enumerate() {
            gemm(
                v1,
                h,
                e,
                emb,
                e,
                Trans::N,
                &w[j * e..],
                k * e,
                Trans::T,
                tj,
                h,
                false,
            );
        }
        gather_rows(&ws.table, v1, h, &ws.ids[..n * k], k, Some(bias), &mut ws.a);
    }

    /// [`WindowLm::hidden_from_table`] reversed, from dL/dz in `ws.da`:
    /// dP_j[v] = Σ over the rows whose position j holds v of dz, then
    /// dW_j += dP_jᵀ · embedding, d embedding += dP_j · W_j and db = Σ dz.
    fn table_backward(&mut self, ws: &mut WindowWs<T>, n: usize) {
        let (v, k, e, h) = self.dims();
        let v1 = v + 1;
        ws.table.clear();
        ws.table.resize(k * v1 * h, T::ZERO);
        scatter_rows(&ws.da, h, &ws.ids[..n * k], k, v1, &mut ws.table);
        let (view, g) = self.store.view_and_grads();
        let p = view.params;
        let (emb, w) = (self.embedding.weight().of(p), self.hidden.weight().of(p));
        // The store holds the embedding, then the hidden weight and bias.
        let (wp, bp) = (self.hidden.weight(), self.hidden.bias());
        let (g_emb, g_hidden) = g.split_at_mut(wp.offset);
        let d_emb = self.embedding.weight().of_mut(g_emb);
        let (dw, rest) = g_hidden.split_at_mut(wp.len);
        let db = &mut rest[bp.offset - wp.offset - wp.len..][..bp.len];
        for (j, dtj) in ws.table.chunks_exact(v1 * h).enumerate() {
            gemm(
                h,
                e,
                v1,
                dtj,
                h,
                Trans::T,
                emb,
                e,
                Trans::N,
                &mut dw[j * e..],
                k * e,
                true,
            );
        }
        add_column_sums(db, &ws.da[..n * h], h);
        for (j, dtj) in ws.table.chunks_exact(v1 * h).enumerate() {
            gemm(
                v1,
                e,
                h,
                dtj,
                h,
                Trans::N,
                &w[j * e..],
                k * e,
                Trans::N,
                d_emb,
                e,
                true,
            );
        }
    }

    /// Logits `[T·B, V]` for inputs `[T, B]`, carrying the history in `ws`.
    pub fn forward(&self, ws: &mut WindowWs<T>, inputs: &[u32], t: usize, b: usize) -> Result<()> {
        self.forward_with(ws, inputs, t, b, None)
    }

    /// [`WindowLm::forward`] for training: `rng` drives dropout; `None`
    /// turns it off.
    pub fn forward_with(
        &self,
        ws: &mut WindowWs<T>,
        inputs: &[u32],
        t: usize,
        b: usize,
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        let ((v, k, e, h), p) = (self.dims(), self.config.dropout);
        let pe = self.config.embed_dropout;
        let n = t * b;
        if inputs.len() != n {
            return Err(Error::Shape {
                name: "inputs",
                shape: format!("[T={t}, B={b}]"),
                expected: n,
                got: inputs.len(),
            });
        }
        check_ids("token ids", "inputs", "token", inputs, v)?;
        self.windows(ws, inputs, t, b);
        ws.a.resize(n * h, T::ZERO);
        // Embedding dropout makes every window's input its own, so no
        // table can hold the products.
        ws.x_dropped = rng.is_some() && pe > 0.0;
        if self.uses_table(n) && !ws.x_dropped {
            self.hidden_from_table(ws, n);
        } else {
            ws.x.resize(n * k * e, T::ZERO);
            self.embedding.forward(&self.store, &ws.ids, &mut ws.x);
            if let Some(rng) = rng.as_deref_mut().filter(|_| ws.x_dropped) {
                ws.x_mask.resize(n * k * e, T::ZERO);
                dropout_forward(&mut ws.x, &mut ws.x_mask, pe, rng);
            }
            self.hidden.forward(&self.store, &ws.x, n, &mut ws.a);
        }
        ws.a.iter_mut().for_each(|z| *z = z.tanh());
        let rng = rng.filter(|_| p > 0.0);
        ws.dropped = rng.is_some();
        if let Some(rng) = rng {
            ws.a_drop.clear();
            ws.a_drop.extend_from_slice(&ws.a);
            ws.mask.resize(n * h, T::ZERO);
            dropout_forward(&mut ws.a_drop, &mut ws.mask, p, rng);
        }
        let a = if ws.dropped { &ws.a_drop } else { &ws.a };
        ws.logits.resize(n * v, T::ZERO);
        self.out.forward(&self.store, a, n, &mut ws.logits);
        Ok(())
    }

    /// Mean cross-entropy of `targets` `[T, B]` after [`WindowLm::forward`];
    /// with `grad`, the gradients replace the store's (backward reads as
    /// forward reversed).
    pub fn loss_backward(
        &mut self,
        ws: &mut WindowWs<T>,
        targets: &[u32],
        t: usize,
        b: usize,
        grad: bool,
    ) -> Result<f64> {
        let (v, k, e, h) = self.dims();
        let n = t * b;
        if targets.len() != n || targets.iter().any(|&x| x as usize >= v) {
            return Err(Error::Input {
                path: "targets".into(),
                line: None,
                field: None,
                message: format!("expected {n} ids below {v}"),
            });
        }
        let loss = softmax_cross_entropy(&mut ws.logits, targets, v, grad);
        if grad {
            self.store.zero_grad();
            ws.da.resize(n * h, T::ZERO);
            let a = if ws.dropped { &ws.a_drop } else { &ws.a };
            self.out
                .backward(&mut self.store, a, &ws.logits, n, Some(&mut ws.da));
            if ws.dropped {
                dropout_backward(&mut ws.da, &ws.mask);
            }
            for (d, &a) in ws.da.iter_mut().zip(&ws.a) {
                *d *= T::ONE - a * a;
            }
            if self.uses_table(n) && !ws.x_dropped {
                self.table_backward(ws, n);
            } else {
                ws.dx.resize(n * k * e, T::ZERO);
                self.hidden
                    .backward(&mut self.store, &ws.x, &ws.da, n, Some(&mut ws.dx));
                if ws.x_dropped {
                    dropout_backward(&mut ws.dx, &ws.x_mask);
                }
                self.embedding.backward(&mut self.store, &ws.ids, &ws.dx);
            }
        }
        Ok(loss)
    }

    /// Σ loss·predictions and the predictions of `batches` run in order
    /// with the history carried between them.
    fn stream(&self, ws: &mut WindowWs<T>, batches: &[LmBatch]) -> Result<(f64, usize)> {
        ws.reset();
        let v = self.config.vocab_size;
        let (mut total, mut count) = (0.0, 0);
        for bt in batches {
            self.forward(ws, &bt.inputs, bt.steps, bt.batch)?;
            let n = bt.steps * bt.batch;
            if bt.targets.iter().any(|&x| x as usize >= v) {
                return Err(Error::input("targets", format!("ids must be below {v}")));
            }
            total += softmax_cross_entropy(&mut ws.logits, &bt.targets, v, false) * n as f64;
            count += n;
        }
        ws.reset();
        Ok((total, count))
    }

    /// Mean cross-entropy in nats of predicting tokens 1.. of `ids` each
    /// from the K before it (padding before the start), and the number of
    /// predictions, as [`crate::model::ngram::Ngram::cross_entropy`] counts
    /// them. Runs as one stream, 256 positions per pass.
    pub fn cross_entropy(&self, ids: &[u32]) -> Result<(f64, usize)> {
        if ids.len() < 2 {
            return Err(Error::input(
                "token ids",
                format!("need at least 2 tokens to predict one, got {}", ids.len()),
            ));
        }
        let v = self.config.vocab_size;
        let mut ws = WindowWs::new();
        let (inputs, targets) = (&ids[..ids.len() - 1], &ids[1..]);
        let mut total = 0.0;
        for (x, y) in inputs.chunks(256).zip(targets.chunks(256)) {
            self.forward(&mut ws, x, x.len(), 1)?;
            if let Some(&bad) = y.iter().find(|&&t| t as usize >= v) {
                return Err(Error::input(
                    "token ids",
                    format!("id {bad} is outside the vocabulary of {v}"),
                ));
            }
            total += softmax_cross_entropy(&mut ws.logits, y, v, false) * x.len() as f64;
        }
        Ok((total / targets.len() as f64, targets.len()))
    }

    /// The next-token logits `[V]` after `context` (its last K tokens;
    /// padding before its start), for generation.
    pub fn next_logits(&self, context: &[u32]) -> Result<Vec<T>> {
        let k = self.config.context;
        let mut ws = WindowWs::new();
        let tail = &context[context.len().saturating_sub(k)..];
        // Feed the tail as one row: the window of its last position is it.
        if tail.is_empty() {
            return Err(Error::input("the context", "needs at least one token"));
        }
        self.forward(&mut ws, tail, tail.len(), 1)?;
        let v = self.config.vocab_size;
        Ok(ws.logits[(tail.len() - 1) * v..].to_vec())
    }
}

impl WindowLm<f32> {
    /// `length` tokens after `prime`, chosen as `how` says (not beam
    /// search), with `emit` told each and its probability, as
    /// [`crate::sample::generate_with`] does for the recurrent model.
    pub fn generate_with(
        &self,
        prime: &[u32],
        length: usize,
        how: Decoding,
        rng: &mut dyn RngCore,
        emit: &mut dyn FnMut(u32, f64) -> bool,
    ) -> Result<Vec<u32>> {
        let v = self.config.vocab_size;
        let mut ws = WindowWs::new();
        sample_loop(v, prime, length, how, rng, emit, &mut |h, out| {
            // The prime runs once; after it, the workspace's history holds
            // the window and each step feeds one token.
            let fed = if h.len() == prime.len() {
                prime
            } else {
                &h[h.len() - 1..]
            };
            self.forward(&mut ws, fed, fed.len(), 1)?;
            out.copy_from_slice(&ws.logits[(fed.len() - 1) * v..]);
            Ok(())
        })
    }
}

impl Model for WindowLm<f32> {
    type Batch = LmBatch;

    /// bf16 converts the hidden and output weights for their products; a
    /// pass through the table (character vocabularies) forms the table
    /// from the f32 weights, a product over only K·(V + 1) rows.
    fn set_training_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = [self.hidden.weight(), self.out.weight()];
        self.store.set_training_precision(precision, &weights)
    }

    fn store(&self) -> &ParamStore<f32> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.store
    }

    fn forward_backward(&mut self, b: &LmBatch, rng: &mut dyn RngCore) -> Result<f64> {
        let mut ws = std::mem::take(&mut self.train_ws);
        let r = self
            .forward_with(&mut ws, &b.inputs, b.steps, b.batch, Some(rng))
            .and_then(|_| self.loss_backward(&mut ws, &b.targets, b.steps, b.batch, true));
        self.carried.clear();
        self.carried.extend(ws.history.iter().map(|&x| x as f32));
        self.train_ws = ws;
        r
    }

    fn evaluate(&mut self, batches: &[LmBatch]) -> Result<Evaluation> {
        let mut ws = std::mem::take(&mut self.eval_ws);
        let r = self.stream(&mut ws, batches);
        self.eval_ws = ws;
        let (total, count) = r?;
        Ok(Evaluation::language_model(total / count.max(1) as f64))
    }

    fn start_epoch(&mut self) {
        self.train_ws.reset();
        self.carried.clear();
    }

    fn carried_state(&self) -> Vec<(&'static str, &[f32])> {
        vec![("history", &self.carried)]
    }

    fn set_carried_state(&mut self, state: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, v) in state {
            if name != "history" {
                return Err(Error::Config(format!(
                    "a fixed-window model carries no '{name}'"
                )));
            }
            self.carried = v.clone();
            self.train_ws.history = v.iter().map(|&x| x as u32).collect();
        }
        Ok(())
    }

    fn loss_bound(&self) -> Option<f64> {
        Some(10.0 * (self.config.vocab_size as f64).ln().max(1.0))
    }

    fn metadata(&self) -> Metadata {
        vec![
            ("format".into(), WINDOW_FORMAT.into()),
            (
                "config".into(),
                serde_json::to_string(&self.config).expect("config serialises"),
            ),
        ]
    }
}
