//! Sequence models beyond the language model: classify a sequence, tag
//! every step, or regress numbers, in the layout of the PyTorch modules of
//! `fixtures/torch-models`:
//!
//! ```text
//! input   embedding [V, E] (‖ chars: a BiLSTM over each word's characters)
//!         or features [C], standardised with the training set's statistics
//!           → dropout (text)
//! rnn     stacked uni- or bidirectional RNN/LSTM/GRU, ragged (packed) rows,
//!         dropout and optional residual connections between layers,
//!         zero or learned initial state (`init.h0`, `init.c0` [L·D, H])
//! pool    per sequence: the final states (`last`), or mean, max or
//!         attention (`pool.*`) over the valid steps; per step: none
//!           → dropout
//! head    linear [O, D·H]: class logits, tag logits per step, or values
//! loss    cross-entropy (class weights), masked per step; mean squared error
//! ```
//!
//! Backward runs the same list in reverse. Parameters live in one
//! [`ParamStore`] under PyTorch's names (`embedding.weight`, `rnn.*`,
//! `head.weight`, `head.bias`) and recur's own (`chars.*`, `init.*`,
//! `pool.*`).

mod chars;
mod pretrain;

use std::collections::BTreeMap;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use chars::{CharConfig, CharEncoder, CharWs, Spellings};
pub use pretrain::pretrain_lm;

use crate::cell::CellKind;
use crate::data::seq::{step_is_valid, SeqBatch};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::init::{fill_uniform, init_linears};
use crate::layer::dropout::{dropout_backward, dropout_forward};
use crate::layer::embedding::Embedding;
use crate::layer::linear::Linear;
use crate::layer::loss::{mse, softmax_cross_entropy_masked};
use crate::layer::pool::{self, AttentionPool, AttentionWs};
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::metrics::Confusion;
use crate::params::{Param, ParamStore};
use crate::quant::Precision;
use crate::train::{Evaluation, Metadata, Model};

/// The `format` metadata of a sequence model file.
pub const SEQ_FORMAT: &str = "recur-seq-model";

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeqTask {
    /// One class per sequence.
    Classify,
    /// One class per step.
    Tag,
    /// Numbers per sequence (or per step, see [`SeqConfig::per_step`]).
    Regress,
}

impl SeqTask {
    /// From `classify`, `tag` or `regress`.
    pub fn from_name(s: &str) -> Option<SeqTask> {
        match s {
            "classify" => Some(SeqTask::Classify),
            "tag" => Some(SeqTask::Tag),
            "regress" => Some(SeqTask::Regress),
            _ => None,
        }
    }
    /// The name [`SeqTask::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            SeqTask::Classify => "classify",
            SeqTask::Tag => "tag",
            SeqTask::Regress => "regress",
        }
    }
}

/// How a sequence becomes one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The top layer's final state of each direction, concatenated
    /// (forward after the last valid step, backward after step 0).
    Last,
    /// The mean of the top layer's outputs over the valid steps.
    Mean,
    /// Their maximum, per feature.
    Max,
    /// Their attention-weighted sum (a learned context vector).
    Attention,
}

impl Pooling {
    /// From `last`, `mean`, `max` or `attention`.
    pub fn from_name(s: &str) -> Option<Pooling> {
        match s {
            "last" => Some(Pooling::Last),
            "mean" => Some(Pooling::Mean),
            "max" => Some(Pooling::Max),
            "attention" => Some(Pooling::Attention),
            _ => None,
        }
    }
}

/// What a step's input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeqInput {
    /// Token ids through an embedding (id 0 is padding).
    Tokens {
        /// V.
        vocab: usize,
        /// E.
        embed: usize,
    },
    /// C dense features per step.
    Features {
        /// C.
        features: usize,
    },
}

/// Sizes and options of a sequence model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeqConfig {
    /// What it predicts.
    pub task: SeqTask,
    /// What it reads.
    pub input: SeqInput,
    /// With token input: a character encoder per word, concatenated to the
    /// word's embedding.
    pub chars: Option<CharConfig>,
    /// The recurrent cell.
    pub cell: CellKind,
    /// H.
    pub hidden: usize,
    /// L.
    pub layers: usize,
    /// D = 2 when true.
    pub bidirectional: bool,
    /// Dropout on the embedded input, between layers and before the head.
    pub dropout: f64,
    /// Residual connections between layers.
    pub residual: bool,
    /// A learned initial state instead of zeros.
    pub learned_init: bool,
    /// Per-sequence heads: how the steps are pooled.
    pub pooling: Pooling,
    /// O: classes, or values per prediction.
    pub outputs: usize,
    /// Regression: a prediction per step instead of per sequence.
    pub per_step: bool,
    /// Series input: the standard deviation of Gaussian noise added to the
    /// standardised features in training (data augmentation; 0: none).
    #[serde(default)]
    pub input_noise: f64,
}

impl SeqConfig {
    /// A model of `task` reading `input`, with one layer of 128 LSTM units,
    /// no dropout, final-state pooling and `outputs` outputs.
    pub fn new(task: SeqTask, input: SeqInput, outputs: usize) -> SeqConfig {
        SeqConfig {
            task,
            input,
            chars: None,
            cell: CellKind::Lstm,
            hidden: 128,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
            residual: false,
            learned_init: false,
            pooling: Pooling::Last,
            outputs,
            per_step: task == SeqTask::Tag,
            input_noise: 0.0,
        }
    }

    /// Whether the head runs at every step (tagging, per-step regression).
    pub fn steps_out(&self) -> bool {
        self.task == SeqTask::Tag || (self.task == SeqTask::Regress && self.per_step)
    }

    /// The recurrent stack's input width.
    pub fn rnn_input(&self) -> usize {
        match self.input {
            SeqInput::Tokens { embed, .. } => embed + self.chars.map_or(0, |c| 2 * c.hidden),
            SeqInput::Features { features } => features,
        }
    }

    /// The recurrent stack's configuration.
    pub fn rnn(&self) -> RnnConfig {
        RnnConfig::new(self.cell, self.rnn_input(), self.hidden)
            .layers(self.layers)
            .bidirectional(self.bidirectional)
            .dropout(self.dropout)
            .residual(self.residual)
    }

    /// How many parameters a model of this config has (`None` when the
    /// count overflows), without building it.
    pub fn param_count(&self) -> Option<usize> {
        // rnn_input (E + 2·Hc) and the stack's output (D·H) are computed
        // unchecked: a config read from a file may overflow them.
        if let SeqInput::Tokens { embed, .. } = self.input {
            embed.checked_add(self.chars.map_or(Some(0), |c| c.hidden.checked_mul(2))?)?;
        }
        self.hidden.checked_mul(2)?;
        let rc = self.rnn();
        let f = rc.output();
        let mut n = rc.param_count()?;
        if let SeqInput::Tokens { vocab, embed } = self.input {
            n = n.checked_add(vocab.checked_mul(embed)?)?;
        }
        if let Some(c) = self.chars {
            let cr = RnnConfig::new(CellKind::Lstm, c.embed, c.hidden).bidirectional(true);
            n = n
                .checked_add(c.vocab.checked_mul(c.embed)?)?
                .checked_add(cr.param_count()?)?;
        }
        if self.learned_init {
            let states = if rc.cell.has_cell_state() { 2 } else { 1 };
            n = n.checked_add(
                rc.layers
                    .checked_mul(rc.directions())?
                    .checked_mul(rc.hidden)?
                    .checked_mul(states)?,
            )?;
        }
        if !self.steps_out() && self.pooling == Pooling::Attention {
            n = n.checked_add(f.checked_mul(f)?.checked_add(2 * f)?)?;
        }
        n.checked_add(self.outputs.checked_mul(f)?.checked_add(self.outputs)?)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.outputs == 0 {
            return bad("a model needs at least one output (class or value)".into());
        }
        if matches!(self.task, SeqTask::Classify | SeqTask::Tag) && self.outputs < 2 {
            return bad(format!(
                "classification needs at least 2 classes, got {}",
                self.outputs
            ));
        }
        if !(self.input_noise >= 0.0 && self.input_noise.is_finite()) {
            return bad(format!(
                "input noise must be a standard deviation ≥ 0, got {}",
                self.input_noise
            ));
        }
        if self.chars.is_some() && matches!(self.input, SeqInput::Features { .. }) {
            return bad("a character encoder needs token input".into());
        }
        if self.per_step && self.task == SeqTask::Classify {
            return bad("a classifier predicts per sequence; tag predicts per step".into());
        }
        match self.input {
            SeqInput::Tokens { vocab, embed } if vocab == 0 || embed == 0 => bad(format!(
                "vocabulary and embedding must be at least 1 (got {vocab}, {embed})"
            )),
            SeqInput::Features { features: 0 } => bad("a series needs at least 1 feature".into()),
            _ => Ok(()),
        }
    }
}

/// What a model carries besides its weights: the names of what it reads
/// and predicts, and the statistics it standardises with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeqMeta {
    /// Word (or token) vocabulary, id order; id 0 `<pad>`, 1 `<unk>`.
    #[serde(default)]
    pub words: Vec<String>,
    /// Character vocabulary, id order; id 0 padding, 1 unknown.
    #[serde(default)]
    pub chars: Vec<String>,
    /// Class names, id order (classify, tag).
    #[serde(default)]
    pub labels: Vec<String>,
    /// `[C]` feature means and standard deviations (series input).
    #[serde(default)]
    pub feature_mean: Vec<f64>,
    /// `[C]`
    #[serde(default)]
    pub feature_std: Vec<f64>,
    /// `[O]` target means and standard deviations (regress).
    #[serde(default)]
    pub target_mean: Vec<f64>,
    /// `[O]`
    #[serde(default)]
    pub target_std: Vec<f64>,
    /// `[O]` class weights of the loss (empty: all 1).
    #[serde(default)]
    pub class_weights: Vec<f64>,
    /// Free-form facts about the data the model was trained on (the CLI's
    /// reader settings), kept for predicting on new files.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// A sequence model: its parts, its one store and its workspaces.
#[derive(Clone, Debug)]
pub struct SeqModel<T> {
    config: SeqConfig,
    /// Names, statistics and class weights.
    pub meta: SeqMeta,
    /// Every parameter and gradient.
    pub store: ParamStore<T>,
    embedding: Option<Embedding>,
    chars: Option<CharEncoder>,
    rnn: Rnn,
    /// `init.h0` and, for the LSTM, `init.c0`, each `[L·D, H]`.
    init: Option<(Param, Option<Param>)>,
    pool: Option<AttentionPool>,
    head: Linear,
    train_ws: SeqWorkspace<T>,
    eval_ws: SeqWorkspace<T>,
}

/// Buffers of one pass, reused across batches.
#[derive(Clone, Debug, Default)]
pub struct SeqWorkspace<T> {
    /// `[T·B, E]` word embeddings (before they join the characters).
    emb: Vec<T>,
    chars: CharWs<T>,
    /// `[T, B, I]` the stack's input, after dropout.
    x: Vec<T>,
    x_mask: Vec<T>,
    /// `[L·D, B, H]` the learned initial state, broadcast.
    h0: Vec<T>,
    c0: Vec<T>,
    rnn: RnnWorkspace<T>,
    /// `[N, F]` the head's input (N = B, or T·B per step), after dropout.
    feat: Vec<T>,
    feat_mask: Vec<T>,
    /// `[B, F]` max pooling's winners.
    argmax: Vec<u32>,
    att: AttentionWs<T>,
    /// `[N, O]` logits or standardised predictions; after the loss with a
    /// gradient, dL/d(them).
    out: Vec<T>,
    /// `[N, O]` mean squared error's gradient.
    d_pred: Vec<T>,
    /// `[N]` (classes) or `[N, O]` (values) loss weights: 0 at padding.
    weights: Vec<T>,
    /// `[N, O]` standardised regression targets.
    targets: Vec<T>,
    /// `[N, F]`
    d_feat: Vec<T>,
    /// `[T, B, F]` dL/d(stack output).
    dy: Vec<T>,
    /// `[L·D, B, H]`
    dh_n: Vec<T>,
    /// `[T, B, I]` dL/d(stack input); `[T·B, E]` its embedding part.
    dx: Vec<T>,
    d_emb: Vec<T>,
    /// `[N_spellings, 2·Hc]`
    d_chars: Vec<T>,
    /// `[T·B, F]`
    scratch: Vec<T>,
    steps: usize,
    x_dropped: bool,
    feat_dropped: bool,
}

pub(crate) fn reborrow<'a>(r: &'a mut Option<&mut dyn RngCore>) -> Option<&'a mut dyn RngCore> {
    match r {
        Some(r) => Some(&mut **r),
        None => None,
    }
}

impl SeqModel<f32> {
    /// Runs inference with the weight products in `precision` (see
    /// [`crate::model::lm::LanguageModel::set_precision`]): the recurrent
    /// stack and the head; embeddings, the character encoder and attention
    /// pooling stay f32. Training in bf16 is the run's `TrainConfig::precision`.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.pack(precision, &weights)
    }

    /// The weights products multiply by: the stack's and the head's.
    fn product_weights(&self) -> Vec<Param> {
        let mut weights = self.rnn.product_weights();
        weights.push(self.head.weight());
        weights
    }
}

impl<T: Float> SeqModel<T> {
    /// A model with all parameters zero (to be loaded).
    pub fn zeros(config: SeqConfig, meta: SeqMeta) -> Result<SeqModel<T>> {
        config.check()?;
        let mut store = ParamStore::new();
        let embedding = match config.input {
            SeqInput::Tokens { vocab, embed } => {
                Some(Embedding::new(store.scope("embedding"), vocab, embed))
            }
            SeqInput::Features { .. } => None,
        };
        let chars = match config.chars {
            Some(c) => Some(CharEncoder::new(store.scope("chars"), c)?),
            None => None,
        };
        let rc = config.rnn();
        let rnn = Rnn::new(store.scope("rnn"), rc.clone())?;
        let init = config.learned_init.then(|| {
            let mut s = store.scope("init");
            let shape = [rc.layers * rc.directions(), rc.hidden];
            let h0 = s.add("h0", &shape);
            let c0 = rc.cell.has_cell_state().then(|| s.add("c0", &shape));
            (h0, c0)
        });
        let f = rc.output();
        let pool = (!config.steps_out() && config.pooling == Pooling::Attention)
            .then(|| AttentionPool::new(store.scope("pool"), f, f));
        let head = Linear::new(store.scope("head"), f, config.outputs);
        let m = SeqModel {
            config,
            meta,
            store,
            embedding,
            chars,
            rnn,
            init,
            pool,
            head,
            train_ws: SeqWorkspace::default(),
            eval_ws: SeqWorkspace::default(),
        };
        m.check_meta()?;
        Ok(m)
    }

    /// A model with PyTorch's default initialisation: embeddings N(0, 1)
    /// scaled by 0.1 (as word_language_model's U(−0.1, 0.1) keeps them
    /// small), the stacks U(−1/√H, 1/√H), linear layers U(−1/√in, 1/√in),
    /// the initial state and context vector as the linear layers'.
    pub fn new(config: SeqConfig, meta: SeqMeta, seed: u64) -> Result<SeqModel<T>> {
        let mut m = SeqModel::zeros(config, meta)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = &mut m.store.params;
        if let Some(e) = &m.embedding {
            fill_uniform(e.weight().of_mut(params), 0.1, &mut rng);
        }
        if let Some(c) = &m.chars {
            fill_uniform(c.embedding().weight().of_mut(params), 0.1, &mut rng);
        }
        let mut linears = vec![m.head];
        if let Some(p) = &m.pool {
            linears.push(p.proj());
            let a = p.proj().output() as f64;
            fill_uniform(p.context().of_mut(params), 1.0 / a.sqrt(), &mut rng);
        }
        init_linears(params, &linears, &mut rng);
        if let Some((h0, c0)) = m.init {
            let r = 1.0 / (m.config.hidden as f64).sqrt();
            fill_uniform(h0.of_mut(params), r, &mut rng);
            if let Some(c0) = c0 {
                fill_uniform(c0.of_mut(params), r, &mut rng);
            }
        }
        let (a, b) = (rng.next_u64(), rng.next_u64());
        m.rnn.init_uniform(&mut m.store, a);
        if let Some(c) = &m.chars {
            c.rnn().init_uniform(&mut m.store, b);
        }
        Ok(m)
    }

    fn check_meta(&self) -> Result<()> {
        let c = &self.config;
        let m = &self.meta;
        let bad = |what: &str, n: usize, want: usize| {
            Err(Error::Config(format!(
                "the model's {what} has {n} entries, but its config needs {want}"
            )))
        };
        if let SeqInput::Tokens { vocab, .. } = c.input {
            if !m.words.is_empty() && m.words.len() != vocab {
                return bad("word vocabulary", m.words.len(), vocab);
            }
        }
        if let (Some(ch), false) = (c.chars, m.chars.is_empty()) {
            if m.chars.len() != ch.vocab {
                return bad("character vocabulary", m.chars.len(), ch.vocab);
            }
        }
        if c.task != SeqTask::Regress && !m.labels.is_empty() && m.labels.len() != c.outputs {
            return bad("label list", m.labels.len(), c.outputs);
        }
        if !m.class_weights.is_empty() && m.class_weights.len() != c.outputs {
            return bad("class weights", m.class_weights.len(), c.outputs);
        }
        if let SeqInput::Features { features } = c.input {
            for (what, v) in [
                ("feature mean", &m.feature_mean),
                ("feature std", &m.feature_std),
            ] {
                if !v.is_empty() && v.len() != features {
                    return bad(what, v.len(), features);
                }
            }
        }
        for (what, v) in [
            ("target mean", &m.target_mean),
            ("target std", &m.target_std),
        ] {
            if !v.is_empty() && v.len() != c.outputs {
                return bad(what, v.len(), c.outputs);
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &SeqConfig {
        &self.config
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }

    /// The character encoder, if any.
    pub fn chars(&self) -> Option<&CharEncoder> {
        self.chars.as_ref()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.store.len()
    }

    /// A fresh model of the same shape and metadata, with the dropout `p`
    /// and these weights (for fine-tuning).
    pub fn with_dropout(&self, p: f64) -> Result<SeqModel<T>> {
        let mut cfg = self.config.clone();
        cfg.dropout = p;
        let mut m = SeqModel::zeros(cfg, self.meta.clone())?;
        m.store.params.copy_from_slice(&self.store.params);
        Ok(m)
    }

    /// Checks a batch against the model's sizes.
    fn check_batch(&self, b: &SeqBatch) -> Result<()> {
        let (tn, bn) = (b.steps, b.batch());
        let bad = |m: String| Err(Error::Config(m));
        if tn == 0 || bn == 0 || b.lengths.iter().any(|&l| l == 0 || l > tn) {
            return bad(format!(
                "a batch needs rows of 1..=T steps (T = {tn}, lengths {:?})",
                b.lengths
            ));
        }
        match self.config.input {
            SeqInput::Tokens { vocab, .. } => {
                if b.ids.len() != tn * bn {
                    return bad(format!(
                        "ids: expected [T={tn}, B={bn}], got {}",
                        b.ids.len()
                    ));
                }
                if let Some(&id) = b.ids.iter().find(|&&i| i as usize >= vocab) {
                    return bad(format!(
                        "token id {id} is outside the vocabulary of {vocab}"
                    ));
                }
            }
            SeqInput::Features { features } => {
                if b.features.len() != tn * bn * features {
                    return bad(format!(
                        "features: expected [T={tn}, B={bn}, C={features}], got {} values",
                        b.features.len()
                    ));
                }
            }
        }
        if let Some(c) = &self.chars {
            let s = &b.spellings;
            if b.word_spelling.len() != tn * bn
                || b.word_spelling
                    .iter()
                    .any(|&i| i as usize >= s.len().max(1))
                || s.chars.iter().any(|&c2| c2 as usize >= c.config().vocab)
                || (0..s.len()).any(|i| s.offsets[i + 1] <= s.offsets[i])
            {
                return bad("the batch's spellings do not fit the character encoder".into());
            }
        }
        Ok(())
    }

    /// Runs the model on a batch, leaving `[N, O]` outputs in the
    /// workspace (N = B, or T·B per step): class logits, or standardised
    /// predictions. `train` drives dropout (none when `None`).
    pub fn forward(
        &self,
        ws: &mut SeqWorkspace<T>,
        batch: &SeqBatch,
        mut train: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        self.check_batch(batch)?;
        let c = &self.config;
        let (tn, bn) = (batch.steps, batch.batch());
        let rc = self.rnn.config();
        let i_w = rc.input;
        let n = tn * bn;
        let p = c.dropout;
        let lengths = &batch.lengths;
        ws.steps = tn;
        ws.x.clear();
        ws.x.resize(n * i_w, T::ZERO);
        match c.input {
            SeqInput::Tokens { embed, .. } => {
                let emb = self
                    .embedding
                    .as_ref()
                    .expect("token input has an embedding");
                if let Some(ch) = &self.chars {
                    ws.emb.resize(n * embed, T::ZERO);
                    emb.forward(&self.store, &batch.ids, &mut ws.emb);
                    ch.forward(&self.store, &mut ws.chars, &batch.spellings)?;
                    let w = ch.output();
                    let words = ws.chars.output();
                    for r in 0..n {
                        let row = &mut ws.x[r * i_w..][..i_w];
                        row[..embed].copy_from_slice(&ws.emb[r * embed..][..embed]);
                        if step_is_valid(lengths, r) {
                            let s = batch.word_spelling[r] as usize;
                            row[embed..].copy_from_slice(&words[s * w..][..w]);
                        }
                    }
                } else {
                    emb.forward(&self.store, &batch.ids, &mut ws.x);
                }
            }
            SeqInput::Features { features } => {
                let (mean, std) = (&self.meta.feature_mean, &self.meta.feature_std);
                for (r, (x, f)) in
                    ws.x.chunks_exact_mut(features)
                        .zip(batch.features.chunks_exact(features))
                        .enumerate()
                {
                    if !step_is_valid(lengths, r) {
                        continue;
                    }
                    for (j, (x, f)) in x.iter_mut().zip(f).enumerate() {
                        let (m, s) = stat(mean, std, j);
                        *x = T::from_f64((*f as f64 - m) / s);
                    }
                }
            }
        }
        if let (Some(rng), SeqInput::Features { features }) = (reborrow(&mut train), c.input) {
            if c.input_noise > 0.0 {
                add_noise(&mut ws.x, features, lengths, c.input_noise, rng);
            }
        }
        ws.x_dropped = train.is_some() && p > 0.0 && self.embedding.is_some();
        if ws.x_dropped {
            ws.x_mask.resize(n * i_w, T::ZERO);
            dropout_forward(
                &mut ws.x,
                &mut ws.x_mask,
                p,
                reborrow(&mut train).expect("training"),
            );
        }
        let mut input = RnnInput::new(&ws.x[..], tn, bn).lengths(lengths);
        if let Some((h0, c0)) = self.init {
            let k_h = rc.hidden;
            for (buf, par) in [(&mut ws.h0, Some(h0)), (&mut ws.c0, c0)] {
                buf.clear();
                if let Some(par) = par {
                    for row in par.of(&self.store.params).chunks_exact(k_h) {
                        for _ in 0..bn {
                            buf.extend_from_slice(row);
                        }
                    }
                }
            }
            input = input.h0(&ws.h0);
            if c0.is_some() {
                input = input.c0(&ws.c0);
            }
        }
        self.rnn
            .forward(&self.store, &mut ws.rnn, input, reborrow(&mut train))?;
        let f = rc.output();
        let y = ws.rnn.output();
        if c.steps_out() {
            ws.feat.clear();
            ws.feat.extend_from_slice(y);
        } else {
            ws.feat.resize(bn * f, T::ZERO);
            match c.pooling {
                Pooling::Last => {
                    let (h, d) = (rc.hidden, rc.directions());
                    let top = (rc.layers - 1) * d;
                    let h_n = ws.rnn.h_n();
                    for b in 0..bn {
                        for dir in 0..d {
                            ws.feat[b * f + dir * h..][..h]
                                .copy_from_slice(&h_n[((top + dir) * bn + b) * h..][..h]);
                        }
                    }
                }
                Pooling::Mean => pool::mean_forward(y, lengths, f, &mut ws.feat),
                Pooling::Max => {
                    ws.argmax.resize(bn * f, 0);
                    pool::max_forward(y, lengths, f, &mut ws.feat, &mut ws.argmax)
                }
                Pooling::Attention => {
                    let pl = self
                        .pool
                        .as_ref()
                        .expect("attention pooling has parameters");
                    pl.forward(&self.store, &mut ws.att, y, lengths, tn, &mut ws.feat)
                }
            }
        }
        ws.feat_dropped = train.is_some() && p > 0.0;
        if ws.feat_dropped {
            ws.feat_mask.resize(ws.feat.len(), T::ZERO);
            dropout_forward(&mut ws.feat, &mut ws.feat_mask, p, train.expect("training"));
        }
        let rows = ws.feat.len() / f;
        ws.out.resize(rows * c.outputs, T::ZERO);
        self.head.forward(&self.store, &ws.feat, rows, &mut ws.out);
        Ok(())
    }

    /// The loss of the last [`SeqModel::forward`] against the batch's
    /// labels or targets: mean cross-entropy (weighted by class, over the
    /// valid steps when tagging) or mean squared error of the standardised
    /// values. With `grad`, leaves dL/d(outputs) for [`SeqModel::backward`].
    pub fn loss(&self, ws: &mut SeqWorkspace<T>, batch: &SeqBatch, grad: bool) -> Result<f64> {
        let c = &self.config;
        let (tn, bn, o) = (ws.steps, batch.batch(), c.outputs);
        let per_step = c.steps_out();
        let rows = if per_step { tn * bn } else { bn };
        let valid = |r: usize| !per_step || batch.is_valid(r);
        match c.task {
            SeqTask::Classify | SeqTask::Tag => {
                if batch.labels.len() != rows {
                    return Err(Error::Config(format!(
                        "labels: expected {rows}, got {}",
                        batch.labels.len()
                    )));
                }
                ws.weights.clear();
                for (r, &l) in batch.labels.iter().enumerate() {
                    if valid(r) && l as usize >= o {
                        return Err(Error::Config(format!(
                            "label {l} is not one of the model's {o} classes"
                        )));
                    }
                    let w = if !valid(r) {
                        0.0
                    } else {
                        self.meta
                            .class_weights
                            .get(l as usize)
                            .copied()
                            .unwrap_or(1.0)
                    };
                    ws.weights.push(T::from_f64(w));
                }
                let labels = &batch.labels;
                Ok(softmax_cross_entropy_masked(
                    &mut ws.out,
                    labels,
                    &ws.weights,
                    o,
                    grad,
                ))
            }
            SeqTask::Regress => {
                if batch.targets.len() != rows * o {
                    return Err(Error::Config(format!(
                        "targets: expected {} values, got {}",
                        rows * o,
                        batch.targets.len()
                    )));
                }
                let (mean, std) = (&self.meta.target_mean, &self.meta.target_std);
                ws.targets.clear();
                ws.weights.clear();
                for (k, &v) in batch.targets.iter().enumerate() {
                    let j = k % o;
                    let (m, s) = stat(mean, std, j);
                    ws.targets.push(T::from_f64((v as f64 - m) / s));
                    ws.weights.push(if valid(k / o) { T::ONE } else { T::ZERO });
                }
                ws.d_pred.resize(rows * o, T::ZERO);
                let l = mse(&ws.out, &ws.targets, &ws.weights, &mut ws.d_pred);
                if grad {
                    ws.out.copy_from_slice(&ws.d_pred);
                }
                Ok(l)
            }
        }
    }

    /// Backpropagation for the last forward and loss (with `grad`) on
    /// `ws`: adds every parameter's gradient into the store.
    pub fn backward(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut SeqWorkspace<T>,
        batch: &SeqBatch,
    ) -> Result<()> {
        let c = &self.config;
        let rc = self.rnn.config();
        let (tn, bn) = (ws.steps, batch.batch());
        let (f, h, d) = (rc.output(), rc.hidden, rc.directions());
        let n = tn * bn;
        let lengths = &batch.lengths;
        let rows = ws.feat.len() / f;
        ws.d_feat.resize(rows * f, T::ZERO);
        self.head
            .backward(store, &ws.feat, &ws.out, rows, Some(&mut ws.d_feat));
        if ws.feat_dropped {
            dropout_backward(&mut ws.d_feat, &ws.feat_mask);
        }
        ws.dy.clear();
        ws.dy.resize(n * f, T::ZERO);
        ws.dh_n.clear();
        ws.dh_n.resize(rc.layers * d * bn * h, T::ZERO);
        if c.steps_out() {
            ws.dy.copy_from_slice(&ws.d_feat);
        } else {
            let y = ws.rnn.output();
            match c.pooling {
                Pooling::Last => {
                    let top = (rc.layers - 1) * d;
                    for b in 0..bn {
                        for dir in 0..d {
                            ws.dh_n[((top + dir) * bn + b) * h..][..h]
                                .copy_from_slice(&ws.d_feat[b * f + dir * h..][..h]);
                        }
                    }
                }
                Pooling::Mean => pool::mean_backward(&ws.d_feat, lengths, f, &mut ws.dy),
                Pooling::Max => pool::max_backward(&ws.d_feat, &ws.argmax, bn, f, &mut ws.dy),
                Pooling::Attention => {
                    let pl = self
                        .pool
                        .as_ref()
                        .expect("attention pooling has parameters");
                    ws.scratch.resize(n * f, T::ZERO);
                    pl.backward(
                        store,
                        &mut ws.att,
                        y,
                        lengths,
                        tn,
                        &ws.d_feat,
                        &mut ws.dy,
                        &mut ws.scratch,
                    );
                }
            }
        }
        self.rnn
            .backward(store, &mut ws.rnn, &ws.dy, Some(&ws.dh_n), None)?;
        if let Some((h0, c0)) = self.init {
            // The state was broadcast over the batch: its gradient is the sum.
            let grads = &mut store.grads;
            for (par, d0) in [(Some(h0), ws.rnn.dh0()), (c0, ws.rnn.dc0())] {
                let Some(par) = par else { continue };
                let g = par.of_mut(grads);
                for (k, gk) in g.chunks_exact_mut(h).enumerate() {
                    for b in 0..bn {
                        for (a, v) in gk.iter_mut().zip(&d0[(k * bn + b) * h..][..h]) {
                            *a += *v;
                        }
                    }
                }
            }
        }
        let SeqInput::Tokens { embed, .. } = c.input else {
            return Ok(());
        };
        let i_w = rc.input;
        ws.dx.clear();
        ws.dx.extend_from_slice(ws.rnn.dx());
        if ws.x_dropped {
            dropout_backward(&mut ws.dx, &ws.x_mask);
        }
        let emb = self
            .embedding
            .as_ref()
            .expect("token input has an embedding");
        match &self.chars {
            None => emb.backward(store, &batch.ids, &ws.dx),
            Some(ch) => {
                let w = ch.output();
                ws.d_emb.resize(n * embed, T::ZERO);
                ws.d_chars.clear();
                ws.d_chars.resize(batch.spellings.len() * w, T::ZERO);
                for r in 0..n {
                    let row = &ws.dx[r * i_w..][..i_w];
                    ws.d_emb[r * embed..][..embed].copy_from_slice(&row[..embed]);
                    if step_is_valid(lengths, r) {
                        let s = batch.word_spelling[r] as usize;
                        for (a, v) in ws.d_chars[s * w..][..w].iter_mut().zip(&row[embed..]) {
                            *a += *v;
                        }
                    }
                }
                emb.backward(store, &batch.ids, &ws.d_emb);
                ch.backward(store, &mut ws.chars, &ws.d_chars)?;
            }
        }
        Ok(())
    }

    /// Zeroes the gradients, runs forward, loss and backward on `batch`
    /// with the workspace `ws`, and returns the loss.
    pub fn forward_backward_with(
        &mut self,
        ws: &mut SeqWorkspace<T>,
        batch: &SeqBatch,
        train: Option<&mut dyn RngCore>,
    ) -> Result<f64> {
        self.forward(ws, batch, train)?;
        let loss = self.loss(ws, batch, true)?;
        let mut store = std::mem::take(&mut self.store);
        store.zero_grad();
        let r = self.backward(&mut store, ws, batch);
        self.store = store;
        r?;
        Ok(loss)
    }

    /// Predicts for a batch (no dropout): `[N, O]` class logits, or values
    /// in the targets' own units (N = B, or T·B per step; padded rows are
    /// whatever the head gave them).
    pub fn predict(&mut self, batch: &SeqBatch) -> Result<Vec<T>> {
        let mut ws = std::mem::take(&mut self.eval_ws);
        let r = self.forward(&mut ws, batch, None);
        let mut out = ws.out.clone();
        self.eval_ws = ws;
        r?;
        if self.config.task == SeqTask::Regress {
            self.unscale(&mut out);
        }
        Ok(out)
    }

    /// Standardised predictions `[N, O]` → the targets' units.
    fn unscale(&self, out: &mut [T]) {
        let o = self.config.outputs;
        let (mean, std) = (&self.meta.target_mean, &self.meta.target_std);
        for (k, v) in out.iter_mut().enumerate() {
            let j = k % o;
            let (m, s) = stat(mean, std, j);
            *v = T::from_f64(v.to_f64() * s + m);
        }
    }

    /// Runs `batches` and measures the loss and the task's figures:
    /// accuracy and macro F1 (classify, tag), or RMSE and MAE in the
    /// targets' units (regress).
    pub fn measure(&mut self, batches: &[SeqBatch]) -> Result<(Evaluation, Option<Confusion>)> {
        let mut ws = std::mem::take(&mut self.eval_ws);
        let r = self.measure_with(&mut ws, batches);
        self.eval_ws = ws;
        r
    }

    fn measure_with(
        &self,
        ws: &mut SeqWorkspace<T>,
        batches: &[SeqBatch],
    ) -> Result<(Evaluation, Option<Confusion>)> {
        let c = &self.config;
        let o = c.outputs;
        let classes = c.task != SeqTask::Regress;
        let mut conf = classes.then(|| Confusion::new(o));
        let (mut loss_sum, mut weight_sum) = (0.0f64, 0.0f64);
        let (mut se, mut ae, mut count) = (0.0f64, 0.0f64, 0usize);
        for b in batches {
            self.forward(ws, b, None)?;
            let valid = |r: usize| !c.steps_out() || b.is_valid(r);
            if let Some(conf) = conf.as_mut() {
                for (r, row) in ws.out.chunks_exact(o).enumerate() {
                    if valid(r) {
                        conf.add(b.labels[r] as usize, argmax(row));
                    }
                }
            } else {
                let mut pred = ws.out.clone();
                self.unscale(&mut pred);
                for (k, (p, t)) in pred.iter().zip(&b.targets).enumerate() {
                    if valid(k / o) {
                        let e = p.to_f64() - *t as f64;
                        se += e * e;
                        ae += e.abs();
                        count += 1;
                    }
                }
            }
            let l = self.loss(ws, b, false)?;
            // Weight each batch by what its loss averages over.
            let w: f64 = ws.weights.iter().map(|w| w.to_f64()).sum();
            loss_sum += l * w;
            weight_sum += w;
        }
        let mut e = Evaluation {
            loss: loss_sum / weight_sum.max(f64::MIN_POSITIVE),
            ..Default::default()
        };
        if let Some(conf) = &conf {
            e.metrics.insert("accuracy".into(), conf.accuracy());
            e.metrics.insert("macro_f1".into(), conf.macro_f1());
        } else if count > 0 {
            e.metrics.insert("rmse".into(), (se / count as f64).sqrt());
            e.metrics.insert("mae".into(), ae / count as f64);
        }
        Ok((e, conf))
    }
}

/// Column j's mean and standard deviation (0 and 1 when none are stored:
/// no standardisation).
fn stat(mean: &[f64], std: &[f64], j: usize) -> (f64, f64) {
    (
        mean.get(j).copied().unwrap_or(0.0),
        std.get(j).copied().unwrap_or(1.0),
    )
}

/// Adds N(0, σ²) noise to the valid steps of x `[T, B, C]` (Box–Muller).
fn add_noise<T: Float>(
    x: &mut [T],
    c: usize,
    lengths: &[usize],
    sigma: f64,
    rng: &mut dyn RngCore,
) {
    for (r, row) in x.chunks_exact_mut(c).enumerate() {
        if !step_is_valid(lengths, r) {
            continue;
        }
        for v in row {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            *v += T::from_f64(sigma * z);
        }
    }
}

/// The index of the largest value (the first, on ties).
pub fn argmax<T: Float>(row: &[T]) -> usize {
    crate::float::argmax(row)
}

impl Model for SeqModel<f32> {
    fn set_training_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.set_training_precision(precision, &weights)
    }

    type Batch = SeqBatch;

    fn store(&self) -> &ParamStore<f32> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.store
    }

    fn forward_backward(&mut self, batch: &SeqBatch, rng: &mut dyn RngCore) -> Result<f64> {
        let mut ws = std::mem::take(&mut self.train_ws);
        let r = self.forward_backward_with(&mut ws, batch, Some(rng));
        self.train_ws = ws;
        r
    }

    fn evaluate(&mut self, batches: &[SeqBatch]) -> Result<Evaluation> {
        Ok(self.measure(batches)?.0)
    }

    /// 10 times the loss of uniform prediction for classes; for values on
    /// standardised targets, whose mean predictor has loss about 1, 100.
    fn loss_bound(&self) -> Option<f64> {
        Some(match self.config.task {
            SeqTask::Regress => 100.0,
            _ => 10.0 * (self.config.outputs as f64).ln(),
        })
    }

    fn selection(&self) -> Option<&'static str> {
        (self.config.task != SeqTask::Regress).then_some("accuracy")
    }

    fn metadata(&self) -> Metadata {
        vec![
            ("format".into(), SEQ_FORMAT.into()),
            (
                "config".into(),
                serde_json::to_string(&self.config).expect("config serialises"),
            ),
            (
                "meta".into(),
                serde_json::to_string(&self.meta).expect("meta serialises"),
            ),
        ]
    }
}
