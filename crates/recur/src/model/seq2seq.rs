//! Encoder–decoder with attention (Sutskever et al. 2014; Bahdanau et al.
//! 2015; Luong et al. 2015), in the layout of the PyTorch module of
//! `fixtures/torch-models`:
//!
//! ```text
//! encoder   embedding [Vs, E] → dropout → stacked uni- or bidirectional
//!           RNN/LSTM/GRU over the (optionally reversed) ragged source
//!             → keys [S, B, K], K = D·H; final states [Le·D, B, H]
//! bridge    where the encoder's layers or directions differ from the
//!           decoder's: h0 = tanh(Linear(final states of a layer, both
//!           directions)) (and c0 likewise); else the states as they are
//! decoder   per step u, on the previous target token (teacher forcing, or
//!           the model's own prediction with scheduled sampling):
//!           embedding [Vt, E] → dropout
//!           Bahdanau: context from the previous top state; input [emb; ctx]
//!           Luong:    input [emb; h̃_{u−1}] with input feeding, else emb;
//!                     context from the new top state; h̃ = tanh(Wc [ctx; h])
//!           stacked RNN/LSTM/GRU step → output (h, or h̃) → dropout
//! out       linear [Vt, H] → logits; masked cross-entropy with label smoothing
//! ```
//!
//! Backward runs the decoder's steps in reverse, then the attention's and
//! the output layer's weight gradients as GEMMs over all steps, then the
//! encoder over the whole source. Parameters live in one [`ParamStore`]
//! under PyTorch's names (`encoder.embedding.weight`, `encoder.rnn.*`,
//! `decoder.embedding.weight`, `decoder.attention.*`, `decoder.rnn.*`,
//! `decoder.out.*`) and recur's own (`bridge.h`, `bridge.c`).

use std::collections::BTreeMap;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::data::pairs::{PairBatch, EOS_ID, PAD_ID, SOS_ID, UNK_ID};
use crate::error::{Error, Result};
use crate::float::{add_into, argmax, Float};
use crate::init::{fill_uniform, init_linears};
use crate::layer::attention::{Attention, AttentionKind, AttentionWs};
use crate::layer::dropout::{dropout_backward, dropout_forward};
use crate::layer::embedding::Embedding;
use crate::layer::linear::Linear;
use crate::layer::loss::softmax_cross_entropy_smoothed;
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::layer::softmax::log_softmax_row;
use crate::model::seq::reborrow;
use crate::params::{Param, ParamStore};
use crate::quant::Precision;
use crate::train::{Evaluation, Metadata, Model};

/// The `format` metadata of a sequence-to-sequence model file.
pub const SEQ2SEQ_FORMAT: &str = "recur-seq2seq-model";

/// Sizes and options of an encoder–decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqConfig {
    /// Vs: source vocabulary (with the reserved ids).
    pub src_vocab: usize,
    /// Vt: target vocabulary.
    pub tgt_vocab: usize,
    /// E: both embeddings' width.
    pub embed: usize,
    /// The cell of encoder and decoder.
    pub cell: CellKind,
    /// H: hidden units per direction of the encoder, and of the decoder.
    pub hidden: usize,
    /// L: decoder layers.
    pub layers: usize,
    /// Le: encoder layers.
    pub encoder_layers: usize,
    /// A bidirectional encoder (D = 2).
    pub bidirectional: bool,
    /// The attention.
    pub attention: AttentionKind,
    /// Luong attention: feed h̃ of the previous step into the next input.
    pub input_feeding: bool,
    /// Read the source reversed (Sutskever et al. 2014).
    pub reverse_source: bool,
    /// Dropout on the embeddings, between layers and before the output layer.
    pub dropout: f64,
    /// No encoder: a decoder alone, such as a conditioned language model
    /// or a captioner (no attention; `src_vocab` unused).
    #[serde(default)]
    pub decoder_only: bool,
    /// A feature vector per sequence that conditions the decoder.
    #[serde(default)]
    pub condition: Option<Condition>,
}

/// How a feature vector `[C]` per sequence conditions a decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// C.
    pub features: usize,
    /// Where it enters.
    pub mode: ConditionMode,
}

/// Where a condition enters the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionMode {
    /// The initial state of every layer: h0 = tanh(W f + b) (decoders
    /// without an encoder).
    Init,
    /// An extra first step whose input is W f + b in place of a token's
    /// embedding (the captioner of Vinyals et al. 2014).
    FirstStep,
    /// Concatenated to every step's input.
    EveryStep,
}

impl ConditionMode {
    /// From `init`, `first-step` or `every-step`.
    pub fn from_name(s: &str) -> Option<ConditionMode> {
        match s {
            "init" => Some(ConditionMode::Init),
            "first-step" | "first" => Some(ConditionMode::FirstStep),
            "every-step" | "every" => Some(ConditionMode::EveryStep),
            _ => None,
        }
    }
}

impl Seq2SeqConfig {
    /// A model of one-layer GRUs of 128 units with Bahdanau attention.
    pub fn new(src_vocab: usize, tgt_vocab: usize) -> Seq2SeqConfig {
        Seq2SeqConfig {
            src_vocab,
            tgt_vocab,
            embed: 128,
            cell: CellKind::Gru,
            hidden: 128,
            layers: 1,
            encoder_layers: 1,
            bidirectional: false,
            attention: AttentionKind::Bahdanau,
            input_feeding: false,
            reverse_source: false,
            dropout: 0.0,
            decoder_only: false,
            condition: None,
        }
    }

    /// Decoder steps before the first token: 1 with a first-step condition.
    pub fn condition_steps(&self) -> usize {
        usize::from(matches!(
            self.condition,
            Some(Condition {
                mode: ConditionMode::FirstStep,
                ..
            })
        ))
    }

    /// C when the condition joins every step's input, else 0.
    fn every_step_features(&self) -> usize {
        match self.condition {
            Some(Condition {
                features,
                mode: ConditionMode::EveryStep,
            }) => features,
            _ => 0,
        }
    }

    /// K: the keys' width, D·H.
    pub fn keys(&self) -> usize {
        self.hidden * if self.bidirectional { 2 } else { 1 }
    }

    /// Whether the encoder's states pass through a bridge.
    pub fn bridged(&self) -> bool {
        !self.decoder_only && (self.bidirectional || self.encoder_layers != self.layers)
    }

    /// The decoder's input width.
    pub fn decoder_input(&self) -> usize {
        self.embed
            + match self.attention {
                AttentionKind::Bahdanau => self.keys(),
                AttentionKind::General | AttentionKind::Dot if self.input_feeding => self.hidden,
                _ => 0,
            }
            + self.every_step_features()
    }

    /// The encoder's stack.
    pub fn encoder(&self) -> RnnConfig {
        RnnConfig::new(self.cell, self.embed, self.hidden)
            .layers(self.encoder_layers)
            .bidirectional(self.bidirectional)
            .dropout(self.dropout)
    }

    /// The decoder's stack.
    pub fn decoder(&self) -> RnnConfig {
        RnnConfig::new(self.cell, self.decoder_input(), self.hidden)
            .layers(self.layers)
            .dropout(self.dropout)
    }

    /// How many parameters a model of this config has (`None` on overflow).
    pub fn param_count(&self) -> Option<usize> {
        // The widths computed unchecked (keys, decoder_input, k + h) are at
        // most E + 3·H + C: a config read from a file may overflow them.
        self.embed
            .checked_add(self.hidden.checked_mul(3)?)?
            .checked_add(self.every_step_features())?;
        let (e, h, k) = (self.embed, self.hidden, self.keys());
        let lin = |i: usize, o: usize| o.checked_mul(i)?.checked_add(o);
        let mut n = self
            .tgt_vocab
            .checked_mul(e)?
            .checked_add(self.decoder().param_count()?)?
            .checked_add(lin(h, self.tgt_vocab)?)?;
        if !self.decoder_only {
            n = n
                .checked_add(self.src_vocab.checked_mul(e)?)?
                .checked_add(self.encoder().param_count()?)?;
        }
        n = n.checked_add(match self.condition {
            Some(Condition {
                features,
                mode: ConditionMode::Init,
            }) => lin(features, self.layers.checked_mul(h)?)?,
            Some(Condition {
                features,
                mode: ConditionMode::FirstStep,
            }) => lin(features, e)?,
            _ => 0,
        })?;
        if self.bridged() {
            let states = if self.cell.has_cell_state() { 2 } else { 1 };
            n = n.checked_add(lin(k, h)?.checked_mul(states)?)?;
        }
        n = n.checked_add(match self.attention {
            AttentionKind::None => 0,
            AttentionKind::Bahdanau => lin(h, h)?
                .checked_add(lin(k, h)?)?
                .checked_add(lin(h, 1)?)?,
            AttentionKind::General => h.checked_mul(k)?.checked_add(lin(k + h, h)?)?,
            AttentionKind::Dot => lin(k + h, h)?,
        })?;
        Some(n)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if (!self.decoder_only && self.src_vocab < 4) || self.tgt_vocab < 4 {
            return bad(format!(
                "vocabularies need at least the 4 reserved tokens (got {} and {})",
                self.src_vocab, self.tgt_vocab
            ));
        }
        if self.embed == 0 || self.hidden == 0 || self.layers == 0 || self.encoder_layers == 0 {
            return bad("embedding, hidden size and layer counts must be at least 1".into());
        }
        if self.attention == AttentionKind::Dot && self.keys() != self.hidden {
            return bad(
                "dot attention needs keys as wide as the decoder: use a unidirectional encoder, or general attention"
                    .into(),
            );
        }
        if self.input_feeding && !self.attention.luong() {
            return bad("input feeding needs Luong attention (general or dot)".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.decoder_only && self.attention != AttentionKind::None {
            return bad(
                "a decoder without an encoder has nothing to attend to: use attention none".into(),
            );
        }
        match self.condition {
            Some(Condition { features: 0, .. }) => {
                return bad("a condition needs at least one feature".into())
            }
            Some(Condition {
                mode: ConditionMode::Init,
                ..
            }) if !self.decoder_only => {
                return bad("an encoder-decoder's initial state comes from its encoder: condition it at the first step or every step".into())
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a model carries besides its weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqMeta {
    /// Source tokens in id order (the reserved ones first).
    pub src_tokens: Vec<String>,
    /// Target tokens in id order.
    pub tgt_tokens: Vec<String>,
    /// `char` or `word`.
    pub level: String,
    /// With a label condition: the labels, in the order of their one-hot features.
    #[serde(default)]
    pub condition_labels: Vec<String>,
    /// Free-form facts about the training data (the CLI's settings).
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// How teacher forcing is scheduled: the chance that a step is fed the
/// true previous token rather than the model's own prediction (its
/// argmax), as a function of the training step i (Bengio et al. 2015).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TeacherForcing {
    /// Always the same ratio (1: plain teacher forcing).
    Constant {
        /// In [0, 1].
        ratio: f64,
    },
    /// max(floor, 1 − i/k).
    Linear {
        /// Steps to reach the floor.
        k: f64,
        /// The lowest ratio.
        floor: f64,
    },
    /// k^i, k < 1.
    Exponential {
        /// The decay per step.
        k: f64,
    },
    /// k / (k + exp(i/k)), k ≥ 1.
    InverseSigmoid {
        /// The schedule's scale.
        k: f64,
    },
}

impl TeacherForcing {
    /// The ratio at training step i.
    pub fn ratio(&self, i: u64) -> f64 {
        let i = i as f64;
        match *self {
            TeacherForcing::Constant { ratio } => ratio,
            TeacherForcing::Linear { k, floor } => (1.0 - i / k).max(floor),
            TeacherForcing::Exponential { k } => k.powf(i),
            TeacherForcing::InverseSigmoid { k } => k / (k + (i / k).exp()),
        }
    }

    /// Parses `R` (a constant ratio), `linear:K[:FLOOR]`, `exponential:K`
    /// or `inverse-sigmoid:K`.
    pub fn parse(s: &str) -> Result<TeacherForcing> {
        let bad = || {
            Error::Config(format!(
                "teacher forcing: expected a ratio in [0, 1], linear:K[:FLOOR], exponential:K or inverse-sigmoid:K, got {s:?}"
            ))
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(bad)
        };
        let parts: Vec<&str> = s.split(':').collect();
        let tf = match parts[..] {
            [r] => TeacherForcing::Constant { ratio: num(r)? },
            ["linear", k] => TeacherForcing::Linear {
                k: num(k)?,
                floor: 0.0,
            },
            ["linear", k, f] => TeacherForcing::Linear {
                k: num(k)?,
                floor: num(f)?,
            },
            ["exponential", k] => TeacherForcing::Exponential { k: num(k)? },
            ["inverse-sigmoid", k] => TeacherForcing::InverseSigmoid { k: num(k)? },
            _ => return Err(bad()),
        };
        let ok = match tf {
            TeacherForcing::Constant { ratio } => (0.0..=1.0).contains(&ratio),
            TeacherForcing::Linear { k, floor } => k > 0.0 && (0.0..=1.0).contains(&floor),
            TeacherForcing::Exponential { k } => k > 0.0 && k <= 1.0,
            TeacherForcing::InverseSigmoid { k } => k >= 1.0,
        };
        if ok {
            Ok(tf)
        } else {
            Err(bad())
        }
    }
}

/// Training options that are not part of the model's shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqTraining {
    /// Teacher forcing and scheduled sampling.
    pub teacher_forcing: TeacherForcing,
    /// Label smoothing ε.
    pub label_smoothing: f64,
}

impl Default for Seq2SeqTraining {
    fn default() -> Self {
        Seq2SeqTraining {
            teacher_forcing: TeacherForcing::Constant { ratio: 1.0 },
            label_smoothing: 0.0,
        }
    }
}

/// Buffers of one pass, reused across batches.
#[derive(Clone, Debug, Default)]
pub struct Seq2SeqWs<T> {
    /// `[S, B]` source ids as the encoder reads them (reversed if so configured).
    src: Vec<u32>,
    /// `[S, B, E]` embedded source (after dropout) and its mask.
    src_x: Vec<T>,
    src_mask: Vec<T>,
    enc: RnnWorkspace<T>,
    /// `[L, B, K]` bridge inputs (h, c); `[L, B, H]` decoder initial states.
    bridge_h: Vec<T>,
    bridge_c: Vec<T>,
    h0: Vec<T>,
    c0: Vec<T>,
    /// `[U, B]` the tokens the decoder was fed.
    tokens: Vec<u32>,
    /// `[U, B, E]` their embeddings (after dropout) and the mask.
    tgt_x: Vec<T>,
    tgt_mask: Vec<T>,
    /// `[B, I_dec]` one step's decoder input.
    x_step: Vec<T>,
    dec: RnnWorkspace<T>,
    /// Attention's pass.
    pub att: AttentionWs<T>,
    /// `[U, B, H]` what the output layer reads (after dropout), and the mask.
    o: Vec<T>,
    o_mask: Vec<T>,
    /// `[U, B, Vt]` logits; after the loss with a gradient, dL/dlogits.
    logits: Vec<T>,
    /// `[U·B]` loss weights: 1 at valid target steps.
    weights: Vec<T>,
    /// `[U, B, H]` dL/d(output layer input).
    d_o: Vec<T>,
    /// `[S, B, K]` dL/dkeys.
    d_keys: Vec<T>,
    /// `[B, H]` dL/d(query): for the step before (Bahdanau), or of this step.
    d_q: Vec<T>,
    d_y: Vec<T>,
    /// `[B, H]` dL/dh̃ of the previous step through input feeding.
    d_feed: Vec<T>,
    /// `[U, B, E]`
    d_tgt_x: Vec<T>,
    /// `[L, B, K]` through the bridge; `[Le·D, B, H]` to the encoder's final states.
    d_bridge: Vec<T>,
    d_hn: Vec<T>,
    d_cn: Vec<T>,
    /// `[L, B, H]` scratch.
    d_pre: Vec<T>,
    /// `[L, B, H]` dL/d(bridge pre-activation).
    d_bridge_pre: Vec<T>,
    /// `[B, C]` the conditions; `[B, E]` projected for the first step, and
    /// its gradient; `[B, L·H]` the initial state's pre-activation, then its gradient.
    cond: Vec<T>,
    cond_x: Vec<T>,
    d_cond_x: Vec<T>,
    init_z: Vec<T>,
    /// `[S, B, E]` dL/d(embedded source).
    d_src: Vec<T>,
    src_steps: usize,
    tgt_steps: usize,
    batch: usize,
    src_dropped: bool,
    tgt_dropped: bool,
    o_dropped: bool,
}

/// How a translation is decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Search {
    /// The most likely token at every step.
    Greedy,
    /// A draw from softmax(logits / temperature) restricted by top-k / top-p.
    Sample {
        /// > 0.
        temperature: f64,
        /// Keep the k most likely.
        top_k: Option<usize>,
        /// Keep the most likely up to cumulative probability p.
        top_p: Option<f64>,
        /// The draws' seed.
        seed: u64,
    },
    /// Beam search.
    Beam {
        /// W ≥ 1.
        width: usize,
        /// GNMT length penalty α: scores are log p / ((5 + |Y|) / 6)^α.
        alpha: f64,
    },
}

/// Decoding options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decode {
    /// The search.
    pub search: Search,
    /// Hypotheses kept per source (beam search; at most the width).
    pub nbest: usize,
    /// At most `ceil(max_ratio · source length) + 5` tokens…
    pub max_ratio: f64,
    /// …and never more than this.
    pub max_len: usize,
    /// Never produce `<pad>` or `<sos>`, nor `<unk>` from a decoder alone
    /// (off only to compare with a reference that does not mask them).
    pub mask_reserved: bool,
}

impl Default for Decode {
    fn default() -> Self {
        Decode {
            search: Search::Greedy,
            nbest: 1,
            max_ratio: 2.0,
            max_len: 200,
            mask_reserved: true,
        }
    }
}

/// One decoded output.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Target ids, without `<eos>`.
    pub tokens: Vec<u32>,
    /// Σ log p of the tokens (with `<eos>` when it was produced).
    pub log_prob: f64,
    /// The search's score: log p, length-penalised in beam search.
    pub score: f64,
    /// `[tokens (+1 for <eos>), S]` the attention weights of each output step
    /// over the source as given (not reversed); empty without attention.
    pub attention: Vec<f32>,
    /// Whether it ended with `<eos>` (not at the length limit).
    pub finished: bool,
}

/// An encoder–decoder: its parts, one store and its workspaces.
#[derive(Clone, Debug)]
pub struct Seq2Seq<T> {
    config: Seq2SeqConfig,
    /// Vocabularies and data settings.
    pub meta: Seq2SeqMeta,
    /// Training options (saved with the model, not part of its shape).
    pub training: Seq2SeqTraining,
    /// Every parameter and gradient.
    pub store: ParamStore<T>,
    /// The encoder's embedding and stack (none in a decoder alone).
    encoder: Option<(Embedding, Rnn)>,
    bridge: Option<(Linear, Option<Linear>)>,
    /// The condition's projection (initial state, or first step).
    cond: Option<Linear>,
    tgt_emb: Embedding,
    attention: Attention,
    decoder: Rnn,
    out: Linear,
    /// Training steps taken (drives scheduled sampling; carried on resume).
    updates: u64,
    updates_f32: [f32; 2],
    train_ws: Box<Seq2SeqWs<T>>,
    eval_ws: Box<Seq2SeqWs<T>>,
}

impl Seq2Seq<f32> {
    /// Runs inference with the weight products in `precision` (see
    /// [`crate::model::lm::LanguageModel::set_precision`]): the encoder's
    /// and decoder's stacks and the output layer; embeddings, the bridge
    /// and attention stay f32. Training in bf16 is the run's `TrainConfig::precision`.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.pack(precision, &weights)
    }

    /// The weights products multiply by: both stacks' and the output's.
    fn product_weights(&self) -> Vec<Param> {
        let mut weights = self.decoder.product_weights();
        if let Some((_, encoder)) = &self.encoder {
            weights.extend(encoder.product_weights());
        }
        weights.push(self.out.weight());
        weights
    }
}

impl<T: Float> Seq2Seq<T> {
    /// A model with all parameters zero (to be loaded).
    pub fn zeros(config: Seq2SeqConfig, meta: Seq2SeqMeta) -> Result<Seq2Seq<T>> {
        config.check()?;
        let c = &config;
        let mut store = ParamStore::new();
        let encoder = if c.decoder_only {
            None
        } else {
            let mut s = store.scope("encoder");
            let emb = Embedding::new(s.pp("embedding"), c.src_vocab, c.embed);
            Some((emb, Rnn::new(s.pp("rnn"), c.encoder())?))
        };
        let bridge = c.bridged().then(|| {
            let mut s = store.scope("bridge");
            let h = Linear::new(s.pp("h"), c.keys(), c.hidden);
            let cc = c
                .cell
                .has_cell_state()
                .then(|| Linear::new(s.pp("c"), c.keys(), c.hidden));
            (h, cc)
        });
        let cond = match c.condition {
            Some(Condition {
                features,
                mode: ConditionMode::Init,
            }) => Some(Linear::new(
                store.scope("condition"),
                features,
                c.layers * c.hidden,
            )),
            Some(Condition {
                features,
                mode: ConditionMode::FirstStep,
            }) => Some(Linear::new(store.scope("condition"), features, c.embed)),
            _ => None,
        };
        let (tgt_emb, attention, decoder, out) = {
            let mut s = store.scope("decoder");
            let emb = Embedding::new(s.pp("embedding"), c.tgt_vocab, c.embed);
            let att = Attention::new(s.pp("attention"), c.attention, c.keys(), c.hidden);
            let dec = Rnn::new(s.pp("rnn"), c.decoder())?;
            let out = Linear::new(s.pp("out"), c.hidden, c.tgt_vocab);
            (emb, att, dec, out)
        };
        let m = Seq2Seq {
            config,
            meta,
            training: Seq2SeqTraining::default(),
            store,
            encoder,
            bridge,
            cond,
            tgt_emb,
            attention,
            decoder,
            out,
            updates: 0,
            updates_f32: [0.0; 2],
            train_ws: Box::default(),
            eval_ws: Box::default(),
        };
        m.check_meta()?;
        Ok(m)
    }

    /// A model with PyTorch's default initialisation: embeddings N(0, 1)
    /// scaled by 0.1, the stacks U(−1/√H, 1/√H), linear layers
    /// U(−1/√in, 1/√in).
    pub fn new(config: Seq2SeqConfig, meta: Seq2SeqMeta, seed: u64) -> Result<Seq2Seq<T>> {
        let mut m = Seq2Seq::zeros(config, meta)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = &mut m.store.params;
        for e in m.encoder.iter().map(|e| e.0).chain([m.tgt_emb]) {
            fill_uniform(e.weight().of_mut(params), 0.1, &mut rng);
        }
        let mut linears = m.attention.linears();
        linears.push(m.out);
        linears.extend(m.cond);
        if let Some((h, c)) = m.bridge {
            linears.push(h);
            linears.extend(c);
        }
        init_linears(params, &linears, &mut rng);
        if let Some(w) = m.attention.general_weight() {
            let r = 1.0 / (m.config.keys() as f64).sqrt();
            fill_uniform(w.of_mut(params), r, &mut rng);
        }
        let (a, b) = (rng.next_u64(), rng.next_u64());
        if let Some((_, enc)) = &m.encoder {
            enc.init_uniform(&mut m.store, a);
        }
        m.decoder.init_uniform(&mut m.store, b);
        Ok(m)
    }

    fn check_meta(&self) -> Result<()> {
        let (c, m) = (&self.config, &self.meta);
        let labels = match c.condition {
            Some(cond) if !m.condition_labels.is_empty() => cond.features,
            _ => 0,
        };
        let src = if c.decoder_only { 0 } else { c.src_vocab };
        for (what, n, want) in [
            ("source vocabulary", m.src_tokens.len(), src),
            ("target vocabulary", m.tgt_tokens.len(), c.tgt_vocab),
            ("condition labels", m.condition_labels.len(), labels),
        ] {
            if n != 0 && n != want {
                return Err(Error::Config(format!(
                    "the model's {what} has {n} entries, but its config needs {want}"
                )));
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.store.len()
    }

    fn check_batch(&self, b: &PairBatch) -> Result<()> {
        let c = &self.config;
        let (sn, un, bn) = (b.src_steps, b.tgt_steps, b.batch());
        let bad = |m: String| Err(Error::Config(m));
        if bn == 0 || un == 0 {
            return bad("a batch needs at least one target".into());
        }
        if c.decoder_only != (sn == 0) {
            return bad(if c.decoder_only {
                "a decoder without an encoder takes no source".into()
            } else {
                "every pair needs a source of at least one token".into()
            });
        }
        if b.src.len() != sn * bn || b.tgt_in.len() != un * bn || b.tgt_out.len() != un * bn {
            return bad(format!(
                "a batch's ids do not fit [S={sn}, B={bn}] and [U={un}, B={bn}]"
            ));
        }
        if b.tgt_lengths.len() != bn
            || (!c.decoder_only && b.src_lengths.iter().any(|&l| l == 0 || l > sn))
            || b.tgt_lengths.iter().any(|&l| l == 0 || l > un)
        {
            return bad("a batch's lengths do not fit its steps".into());
        }
        let (vs, vt) = (c.src_vocab, c.tgt_vocab);
        if let Some(id) = b.src.iter().find(|&&i| i as usize >= vs) {
            return bad(format!("source id {id} is outside the vocabulary of {vs}"));
        }
        if let Some(id) = b
            .tgt_in
            .iter()
            .chain(&b.tgt_out)
            .find(|&&i| i as usize >= vt)
        {
            return bad(format!("target id {id} is outside the vocabulary of {vt}"));
        }
        Ok(())
    }

    /// Takes the conditions `[B, C]` of B sequences into the workspace, and
    /// projects them for a first-step condition (`[B, E]`).
    fn set_condition(&self, ws: &mut Seq2SeqWs<T>, cond: &[f32], bn: usize) -> Result<()> {
        let want = self.config.condition.map_or(0, |c| c.features * bn);
        if cond.len() != want {
            return Err(Error::Config(match self.config.condition {
                Some(c) => format!(
                    "the model is conditioned on {} features per sequence: expected {want} values for {bn} sequences, got {}",
                    c.features,
                    cond.len()
                ),
                None => "the model takes no condition".into(),
            }));
        }
        ws.cond.clear();
        ws.cond.extend(cond.iter().map(|&v| T::from_f64(v as f64)));
        if let (
            Some(lin),
            Some(Condition {
                mode: ConditionMode::FirstStep,
                ..
            }),
        ) = (self.cond, self.config.condition)
        {
            ws.cond_x.resize(bn * self.config.embed, T::ZERO);
            lin.forward(&self.store, &ws.cond, bn, &mut ws.cond_x);
        }
        Ok(())
    }

    /// Runs the encoder on `src` `[S, B]` with `lengths`, and sets the
    /// decoder's initial states `[L, B, H]` in the workspace: the encoder's
    /// (through the bridge), the condition's, or zeros.
    fn encode(
        &self,
        ws: &mut Seq2SeqWs<T>,
        src: &[u32],
        lengths: &[usize],
        bn: usize,
        train: &mut Option<&mut dyn RngCore>,
    ) -> Result<()> {
        let c = &self.config;
        let (e, h, l) = (c.embed, c.hidden, c.layers);
        let lstm = c.cell.has_cell_state();
        ws.batch = bn;
        ws.h0.clear();
        ws.h0.resize(l * bn * h, T::ZERO);
        ws.c0.clear();
        ws.c0.resize(if lstm { l * bn * h } else { 0 }, T::ZERO);
        let Some((src_emb, encoder)) = &self.encoder else {
            ws.src_steps = 0;
            if let (
                Some(lin),
                Some(Condition {
                    mode: ConditionMode::Init,
                    ..
                }),
            ) = (self.cond, c.condition)
            {
                // z [B, L·H] → h0 [L, B, H].
                ws.init_z.resize(bn * l * h, T::ZERO);
                lin.forward(&self.store, &ws.cond, bn, &mut ws.init_z);
                for b in 0..bn {
                    for layer in 0..l {
                        for j in 0..h {
                            ws.h0[(layer * bn + b) * h + j] =
                                ws.init_z[(b * l + layer) * h + j].tanh();
                        }
                    }
                }
            }
            return Ok(());
        };
        let sn = src.len() / bn;
        ws.src_steps = sn;
        ws.src.clear();
        ws.src.extend_from_slice(src);
        if c.reverse_source {
            for (b, &len) in lengths.iter().enumerate() {
                for s in 0..len / 2 {
                    ws.src.swap(s * bn + b, (len - 1 - s) * bn + b);
                }
            }
        }
        ws.src_x.resize(sn * bn * e, T::ZERO);
        src_emb.forward(&self.store, &ws.src, &mut ws.src_x);
        ws.src_dropped = train.is_some() && c.dropout > 0.0;
        if ws.src_dropped {
            ws.src_mask.resize(ws.src_x.len(), T::ZERO);
            let rng = reborrow(train).expect("training");
            dropout_forward(&mut ws.src_x, &mut ws.src_mask, c.dropout, rng);
        }
        let input = RnnInput::new(&ws.src_x[..], sn, bn).lengths(lengths);
        encoder.forward(&self.store, &mut ws.enc, input, reborrow(train))?;
        match self.bridge {
            None => {
                ws.h0.copy_from_slice(ws.enc.h_n());
                if lstm {
                    ws.c0.copy_from_slice(ws.enc.c_n());
                }
            }
            Some((bh, bc)) => {
                let k = c.keys();
                for (lin, src_states, input, out) in [
                    (Some(bh), ws.enc.h_n(), &mut ws.bridge_h, &mut ws.h0),
                    (bc, ws.enc.c_n(), &mut ws.bridge_c, &mut ws.c0),
                ] {
                    let Some(lin) = lin else { continue };
                    input.resize(l * bn * k, T::ZERO);
                    gather_bridge(c, src_states, input, bn);
                    lin.forward(&self.store, input, l * bn, out);
                    out.iter_mut().for_each(|v| *v = v.tanh());
                }
            }
        }
        Ok(())
    }

    /// Completes a decoder step's input `x` `[N, I_dec]` after its first E
    /// columns: Bahdanau's context, attending at step `t` from the previous
    /// top state `q_prev` `[N, H]`, and an every-step condition (`cond`
    /// `[Bs, C]`, row n reading sequence n / `group`). Input feeding's
    /// columns are the caller's.
    #[allow(clippy::too_many_arguments)]
    fn step_input(
        &self,
        att_ws: &mut AttentionWs<T>,
        t: usize,
        x: &mut [T],
        q_prev: &[T],
        keys: &[T],
        lengths: &[usize],
        group: usize,
        cond: &[T],
    ) {
        let c = &self.config;
        let (i_dec, e) = (c.decoder_input(), c.embed);
        if self.attention.kind() == AttentionKind::Bahdanau {
            let ctx = self
                .attention
                .step(&self.store, att_ws, t, q_prev, keys, lengths, group);
            put_cols(x, i_dec, e, ctx, c.keys());
        }
        let f = c.every_step_features();
        if f > 0 {
            for (r, row) in x.chunks_exact_mut(i_dec).enumerate() {
                row[i_dec - f..].copy_from_slice(&cond[(r / group) * f..][..f]);
            }
        }
    }

    /// What the output layer reads after step `t`: the new top state `h`
    /// `[N, H]`, or h̃ of Luong attention over it.
    #[allow(clippy::too_many_arguments)]
    fn step_output<'a>(
        &self,
        att_ws: &'a mut AttentionWs<T>,
        t: usize,
        h: &'a [T],
        keys: &[T],
        lengths: &[usize],
        group: usize,
    ) -> &'a [T] {
        if self.attention.kind().luong() {
            self.attention
                .step(&self.store, att_ws, t, h, keys, lengths, group)
        } else {
            h
        }
    }

    /// Runs the model on a batch with teacher forcing at `ratio` (1: always
    /// the true previous token), leaving the logits `[U, B, Vt]` in the
    /// workspace. `train` drives dropout and scheduled sampling.
    pub fn forward(
        &self,
        ws: &mut Seq2SeqWs<T>,
        batch: &PairBatch,
        ratio: f64,
        mut train: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        self.check_batch(batch)?;
        let c = &self.config;
        let (un, bn) = (batch.tgt_steps, batch.batch());
        let (e, h, v, l) = (c.embed, c.hidden, c.tgt_vocab, c.layers);
        let off = c.condition_steps();
        let tn = un + off;
        let lengths = &batch.src_lengths;
        self.set_condition(ws, &batch.cond, bn)?;
        self.encode(ws, &batch.src, lengths, bn, &mut train)?;
        ws.tgt_steps = un;
        let att = self.attention;
        let keys = keys_of(c, &ws.enc);
        if att.kind() != AttentionKind::None {
            att.project_keys(&self.store, &mut ws.att, keys, tn, bn, true);
        }
        let i_dec = c.decoder_input();
        ws.tokens.clear();
        ws.tokens.extend_from_slice(&batch.tgt_in);
        ws.tgt_x.resize(un * bn * e, T::ZERO);
        ws.x_step.resize(bn * i_dec, T::ZERO);
        ws.o.resize(un * bn * h, T::ZERO);
        ws.logits.resize(un * bn * v, T::ZERO);
        let p = c.dropout;
        ws.tgt_dropped = train.is_some() && p > 0.0;
        ws.o_dropped = ws.tgt_dropped;
        if ws.tgt_dropped {
            ws.tgt_mask.resize(ws.tgt_x.len(), T::ZERO);
            ws.o_mask.resize(ws.o.len(), T::ZERO);
        }
        let sampling = train.is_some() && ratio < 1.0;
        let c0 = (!ws.c0.is_empty()).then_some(&ws.c0[..]);
        self.decoder
            .start(&self.store, &mut ws.dec, bn, tn, Some(&ws.h0), c0)?;
        let top = (l - 1) * bn * h;
        for t in 0..tn {
            // The first E columns: the projected condition on its step,
            // else the token's embedding.
            if t < off {
                put_cols(&mut ws.x_step, i_dec, 0, &ws.cond_x, e);
            } else {
                let u = t - off;
                if sampling && u > 0 {
                    let rng = reborrow(&mut train).expect("training");
                    for b in 0..bn {
                        if rng.random::<f64>() >= ratio {
                            let prev = &ws.logits[((u - 1) * bn + b) * v..][..v];
                            ws.tokens[u * bn + b] = argmax(prev) as u32;
                        }
                    }
                }
                let x_u = &mut ws.tgt_x[u * bn * e..][..bn * e];
                self.tgt_emb
                    .forward(&self.store, &ws.tokens[u * bn..][..bn], x_u);
                if ws.tgt_dropped {
                    let m = &mut ws.tgt_mask[u * bn * e..][..bn * e];
                    dropout_forward(x_u, m, p, reborrow(&mut train).expect("training"));
                }
                put_cols(&mut ws.x_step, i_dec, 0, x_u, e);
            }
            if c.input_feeding {
                if t == 0 {
                    for row in ws.x_step.chunks_exact_mut(i_dec) {
                        row[e..e + h].fill(T::ZERO);
                    }
                } else {
                    let prev = &ws.att.h_att[(t - 1) * bn * h..][..bn * h];
                    put_cols(&mut ws.x_step, i_dec, e, prev, h);
                }
            }
            let q_prev: &[T] = if t == 0 {
                &ws.h0[top..][..bn * h]
            } else {
                ws.dec.step_output(t - 1)
            };
            self.step_input(
                &mut ws.att,
                t,
                &mut ws.x_step,
                q_prev,
                keys,
                lengths,
                1,
                &ws.cond,
            );
            self.decoder
                .step(&self.store, &mut ws.dec, &ws.x_step, reborrow(&mut train))?;
            let out = self.step_output(&mut ws.att, t, ws.dec.step_output(t), keys, lengths, 1);
            if t < off {
                continue;
            }
            let u = t - off;
            let o_u = &mut ws.o[u * bn * h..][..bn * h];
            o_u.copy_from_slice(out);
            if ws.o_dropped {
                let m = &mut ws.o_mask[u * bn * h..][..bn * h];
                dropout_forward(o_u, m, p, reborrow(&mut train).expect("training"));
            }
            if sampling {
                let lg = &mut ws.logits[u * bn * v..][..bn * v];
                self.out.forward(&self.store, o_u, bn, lg);
            }
        }
        if !sampling {
            self.out
                .forward(&self.store, &ws.o, un * bn, &mut ws.logits);
        }
        Ok(())
    }

    /// The mean cross-entropy (label-smoothed by `smoothing`) of the last
    /// forward over the valid target steps; with `grad`, leaves dL/dlogits.
    pub fn loss(
        &self,
        ws: &mut Seq2SeqWs<T>,
        batch: &PairBatch,
        smoothing: f64,
        grad: bool,
    ) -> f64 {
        let (un, bn) = (ws.tgt_steps, ws.batch);
        ws.weights.clear();
        ws.weights.extend((0..un * bn).map(|r| {
            if r / bn < batch.tgt_lengths[r % bn] {
                T::ONE
            } else {
                T::ZERO
            }
        }));
        softmax_cross_entropy_smoothed(
            &mut ws.logits,
            &batch.tgt_out,
            &ws.weights,
            self.config.tgt_vocab,
            smoothing,
            grad,
        )
    }

    /// Backward of the last forward and loss: adds every parameter's
    /// gradient into the store.
    pub fn backward(&mut self, ws: &mut Seq2SeqWs<T>, batch: &PairBatch) -> Result<()> {
        let c = self.config.clone();
        let (un, bn, sn) = (ws.tgt_steps, ws.batch, ws.src_steps);
        let (e, h, k, l) = (c.embed, c.hidden, c.keys(), c.layers);
        let off = c.condition_steps();
        let tn = un + off;
        let i_dec = c.decoder_input();
        let lengths = &batch.src_lengths;
        let att = self.attention;
        // The output layer over all steps at once.
        ws.d_o.resize(un * bn * h, T::ZERO);
        self.out.backward(
            &mut self.store,
            &ws.o,
            &ws.logits,
            un * bn,
            Some(&mut ws.d_o),
        );
        if ws.o_dropped {
            dropout_backward(&mut ws.d_o, &ws.o_mask);
        }
        ws.d_keys.clear();
        ws.d_keys.resize(sn * bn * k, T::ZERO);
        ws.d_q.clear();
        ws.d_q.resize(bn * h, T::ZERO);
        ws.d_y.resize(bn * h, T::ZERO);
        ws.d_feed.clear();
        ws.d_feed.resize(bn * h, T::ZERO);
        ws.d_tgt_x.resize(un * bn * e, T::ZERO);
        ws.d_cond_x.resize(bn * e, T::ZERO);
        let keys = keys_of(&c, &ws.enc);
        for t in (0..tn).rev() {
            // dL/d(what the output layer read at t): none on the condition step.
            ws.d_y.fill(T::ZERO);
            if t >= off {
                ws.d_y
                    .copy_from_slice(&ws.d_o[(t - off) * bn * h..][..bn * h]);
            }
            if att.kind().luong() {
                // dL/dh̃_t also arrives through the next step's input.
                add_into(&mut ws.d_y, &ws.d_feed);
                ws.d_q.fill(T::ZERO);
                att.step_backward(
                    &mut self.store,
                    &mut ws.att,
                    t,
                    &ws.d_y,
                    keys,
                    lengths,
                    1,
                    &mut ws.d_keys,
                    &mut ws.d_q,
                );
                ws.d_y.copy_from_slice(&ws.d_q);
            } else {
                // h_t is also step t + 1's query (Bahdanau; d_q is zero otherwise).
                add_into(&mut ws.d_y, &ws.d_q);
            }
            self.decoder
                .step_backward(&self.store, &mut ws.dec, &ws.d_y, None, None)?;
            let dx = ws.dec.step_dx(t);
            if t >= off {
                get_cols(
                    dx,
                    i_dec,
                    0,
                    &mut ws.d_tgt_x[(t - off) * bn * e..][..bn * e],
                    e,
                );
            } else {
                get_cols(dx, i_dec, 0, &mut ws.d_cond_x, e);
            }
            match att.kind() {
                AttentionKind::Bahdanau => {
                    ws.d_pre.resize(bn * k, T::ZERO);
                    get_cols(dx, i_dec, e, &mut ws.d_pre[..bn * k], k);
                    ws.d_q.fill(T::ZERO);
                    att.step_backward(
                        &mut self.store,
                        &mut ws.att,
                        t,
                        &ws.d_pre[..bn * k],
                        keys,
                        lengths,
                        1,
                        &mut ws.d_keys,
                        &mut ws.d_q,
                    );
                }
                _ if c.input_feeding => get_cols(dx, i_dec, e, &mut ws.d_feed, h),
                _ => {}
            }
        }
        self.decoder.finish_backward(&mut self.store, &mut ws.dec)?;
        if att.kind() != AttentionKind::None {
            att.finish_backward(&mut self.store, &mut ws.att, tn, keys, &mut ws.d_keys);
        }
        if ws.tgt_dropped {
            dropout_backward(&mut ws.d_tgt_x, &ws.tgt_mask);
        }
        self.tgt_emb
            .backward(&mut self.store, &ws.tokens, &ws.d_tgt_x);
        // dL/d(initial states): the decoder's, plus (Bahdanau) the first
        // query's, which is the top layer's h0.
        let lbh = l * bn * h;
        ws.d_pre.resize(lbh, T::ZERO);
        ws.d_pre.copy_from_slice(&ws.dec.dh0()[..lbh]);
        if att.kind() == AttentionKind::Bahdanau {
            add_into(&mut ws.d_pre[(l - 1) * bn * h..], &ws.d_q);
        }
        if let (Some(lin), Some(cond)) = (self.cond, c.condition) {
            match cond.mode {
                ConditionMode::FirstStep => {
                    lin.backward(&mut self.store, &ws.cond, &ws.d_cond_x, bn, None)
                }
                ConditionMode::Init => {
                    // h0[l, b] = tanh(z[b, l]): dz = dh0 ⊙ (1 − h0²).
                    for b in 0..bn {
                        for layer in 0..l {
                            for j in 0..h {
                                let y = ws.h0[(layer * bn + b) * h + j];
                                ws.init_z[(b * l + layer) * h + j] =
                                    ws.d_pre[(layer * bn + b) * h + j] * (T::ONE - y * y);
                            }
                        }
                    }
                    lin.backward(&mut self.store, &ws.cond, &ws.init_z, bn, None);
                }
                ConditionMode::EveryStep => {}
            }
        }
        let Some((src_emb, encoder)) = self.encoder.clone() else {
            return Ok(());
        };
        let enc_states = c.encoder_layers * c.encoder().directions() * bn * h;
        ws.d_hn.clear();
        ws.d_hn.resize(enc_states, T::ZERO);
        let lstm = c.cell.has_cell_state();
        ws.d_cn.clear();
        ws.d_cn.resize(if lstm { enc_states } else { 0 }, T::ZERO);
        match self.bridge {
            None => {
                ws.d_hn.copy_from_slice(&ws.d_pre);
                if lstm {
                    ws.d_cn.copy_from_slice(&ws.dec.dc0()[..lbh]);
                }
            }
            Some((bh, bc)) => {
                let dc0 = ws.dec.dc0();
                for (lin, d_state, input, out, d_enc) in [
                    (Some(bh), &ws.d_pre[..], &ws.bridge_h, &ws.h0, &mut ws.d_hn),
                    (bc, dc0, &ws.bridge_c, &ws.c0, &mut ws.d_cn),
                ] {
                    let Some(lin) = lin else { continue };
                    ws.d_bridge_pre.clear();
                    ws.d_bridge_pre.extend(
                        d_state[..lbh]
                            .iter()
                            .zip(out.iter())
                            .map(|(g, y)| *g * (T::ONE - *y * *y)),
                    );
                    ws.d_bridge.resize(l * bn * k, T::ZERO);
                    lin.backward(
                        &mut self.store,
                        input,
                        &ws.d_bridge_pre,
                        l * bn,
                        Some(&mut ws.d_bridge),
                    );
                    scatter_bridge(&c, &ws.d_bridge, d_enc, bn);
                }
            }
        }
        let dc = (!ws.d_cn.is_empty()).then_some(&ws.d_cn[..]);
        encoder.backward(&mut self.store, &mut ws.enc, &ws.d_keys, Some(&ws.d_hn), dc)?;
        ws.d_src.clear();
        ws.d_src.extend_from_slice(ws.enc.dx());
        if ws.src_dropped {
            dropout_backward(&mut ws.d_src, &ws.src_mask);
        }
        src_emb.backward(&mut self.store, &ws.src, &ws.d_src);
        Ok(())
    }

    /// Zeroes the gradients, runs forward, loss and backward; returns the loss.
    pub fn forward_backward_with(
        &mut self,
        ws: &mut Seq2SeqWs<T>,
        batch: &PairBatch,
        ratio: f64,
        train: Option<&mut dyn RngCore>,
    ) -> Result<f64> {
        self.store.zero_grad();
        self.forward(ws, batch, ratio, train)?;
        let loss = self.loss(ws, batch, self.training.label_smoothing, true);
        self.backward(ws, batch)?;
        Ok(loss)
    }

    /// `[U, B, Vt]` the logits of the last forward (before a loss with a
    /// gradient overwrites them).
    pub fn logits<'a>(&self, ws: &'a Seq2SeqWs<T>) -> &'a [T] {
        &ws.logits
    }

    /// `[U, B, S]` the attention weights of the last forward, over the
    /// source as the encoder read it.
    pub fn attention_weights<'a>(&self, ws: &'a Seq2SeqWs<T>) -> &'a [T] {
        &ws.att.alpha
    }

    /// Decodes each source (token ids) with `how`, returning up to
    /// `how.nbest` hypotheses per source, best first.
    pub fn translate(
        &self,
        ws: &mut Seq2SeqWs<T>,
        sources: &[Vec<u32>],
        how: &Decode,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        self.decode(ws, sources, &[], &[], how)
    }

    /// Decodes B sequences: from `sources` (empty ones for a decoder
    /// alone) and `conditions` `[B, C]` (empty for a model without a
    /// condition). Up to `how.nbest` hypotheses per sequence, best first.
    /// Sampling draws sequence b from its own stream `streams[b]` of the
    /// seed (b when `streams` is empty), so a sample does not depend on the
    /// others decoded with it.
    pub fn decode(
        &self,
        ws: &mut Seq2SeqWs<T>,
        sources: &[Vec<u32>],
        conditions: &[f32],
        streams: &[u64],
        how: &Decode,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        if !(how.max_ratio.is_finite() && how.max_ratio > 0.0) {
            return Err(Error::Config(format!(
                "the maximum length ratio must be a number > 0, got {}",
                how.max_ratio
            )));
        }
        if let Search::Beam { alpha, .. } = how.search {
            if !alpha.is_finite() {
                return Err(Error::Config(format!(
                    "the length penalty must be a number, got {alpha}"
                )));
            }
        }
        if !streams.is_empty() && streams.len() != sources.len() {
            return Err(Error::Config(format!(
                "{} sampling streams for {} sequences",
                streams.len(),
                sources.len()
            )));
        }
        let (width, alpha) = match how.search {
            Search::Beam { width: 0, .. } => {
                return Err(Error::Config("beam width must be at least 1".into()))
            }
            Search::Beam { width, alpha } => (width, alpha),
            _ => (1, 0.0),
        };
        if let Search::Sample {
            temperature,
            top_p,
            top_k,
            ..
        } = how.search
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::Config(format!(
                    "temperature must be > 0, got {temperature}"
                )));
            }
            if top_k == Some(0) || top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
                return Err(Error::Config(
                    "top-k must be ≥ 1 and top-p in (0, 1]".into(),
                ));
            }
        }
        if how.nbest == 0 || how.nbest > width {
            return Err(Error::Config(format!(
                "n-best must be between 1 and the beam width {width}, got {}",
                how.nbest
            )));
        }
        let c = &self.config;
        let bn = sources.len();
        if bn == 0 {
            return Ok(Vec::new());
        }
        if c.decoder_only {
            if sources.iter().any(|s| !s.is_empty()) {
                return Err(Error::Config(
                    "a decoder without an encoder takes no source".into(),
                ));
            }
        } else if sources.iter().any(|s| s.is_empty()) {
            return Err(Error::Config("a source sentence is empty".into()));
        }
        let lengths: Vec<usize> = sources.iter().map(Vec::len).collect();
        let sn = *lengths.iter().max().expect("non-empty");
        let mut src = vec![0u32; sn * bn];
        for (b, s) in sources.iter().enumerate() {
            for (t, &id) in s.iter().enumerate() {
                if id as usize >= c.src_vocab {
                    return Err(Error::Config(format!(
                        "source id {id} is outside the vocabulary of {}",
                        c.src_vocab
                    )));
                }
                src[t * bn + b] = id;
            }
        }
        let limits: Vec<usize> = lengths
            .iter()
            .map(|&s| match c.decoder_only {
                true => how.max_len.max(1),
                false => ((how.max_ratio * s as f64).ceil().min(1e9) as usize)
                    .saturating_add(5)
                    .min(how.max_len)
                    .max(1),
            })
            .collect();
        let max_steps = *limits.iter().max().expect("non-empty");
        self.set_condition(ws, conditions, bn)?;
        self.encode(ws, &src, &lengths, bn, &mut None)?;
        let (e, h, v, l) = (c.embed, c.hidden, c.tgt_vocab, c.layers);
        let off = c.condition_steps();
        let n = bn * width;
        let lstm = c.cell.has_cell_state();
        // Every row repeated for each beam.
        let expand = |x: &[T], w: usize| -> Vec<T> {
            let mut out = Vec::with_capacity(x.len() * width);
            for row in x.chunks_exact(w) {
                for _ in 0..width {
                    out.extend_from_slice(row);
                }
            }
            out
        };
        let mut hs = expand(&ws.h0, h);
        let mut cs = if lstm { expand(&ws.c0, h) } else { Vec::new() };
        let mut feed = vec![T::ZERO; n * h];
        let att = &self.attention;
        let keys = keys_of(c, &ws.enc);
        if att.kind() != AttentionKind::None {
            att.project_keys(&self.store, &mut ws.att, keys, max_steps + off, n, false);
        }
        let i_dec = c.decoder_input();
        let mut x = vec![T::ZERO; n * i_dec];
        let mut emb = vec![T::ZERO; n * e];
        let mut o = vec![T::ZERO; n * h];
        let mut logits = vec![T::ZERO; n * v];
        let mut logp = vec![0.0f64; v];
        let mut tokens = vec![SOS_ID; n];
        let mut scores = vec![0.0f64; n];
        // Beams of a source other than the first start dead.
        for b in 0..bn {
            for w in 1..width {
                scores[b * width + w] = f64::NEG_INFINITY;
            }
        }
        // Per step: each row's parent row and token (to read hypotheses back).
        let mut parents: Vec<Vec<usize>> = Vec::new();
        let mut picked: Vec<Vec<u32>> = Vec::new();
        let mut finals: Vec<Vec<Hypothesis>> = vec![Vec::new(); bn];
        let mut done = vec![false; bn];
        let seed = match how.search {
            Search::Sample { seed, .. } => seed,
            _ => 0,
        };
        let mut rngs: Vec<ChaCha8Rng> = (0..bn)
            .map(|b| {
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(streams.get(b).copied().unwrap_or(b as u64));
                r
            })
            .collect();
        let mut row32: Vec<f32> = Vec::with_capacity(v);
        let mut scratch = crate::sample::Scratch::default();
        let mut cand: Vec<(f64, usize, u32)> = Vec::new();
        let (mut parent, mut next, mut next_scores, mut old) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let top = (l - 1) * n * h;
        let cond_x = expand(&ws.cond_x, e);
        for t in 0..max_steps + off {
            if t < off {
                put_cols(&mut x, i_dec, 0, &cond_x, e);
            } else {
                self.tgt_emb.forward(&self.store, &tokens, &mut emb);
                put_cols(&mut x, i_dec, 0, &emb, e);
            }
            if c.input_feeding {
                put_cols(&mut x, i_dec, e, &feed, h);
            }
            let q_prev = &hs[top..][..n * h];
            self.step_input(
                &mut ws.att,
                t,
                &mut x,
                q_prev,
                keys,
                &lengths,
                width,
                &ws.cond,
            );
            let c0 = lstm.then_some(&cs[..]);
            self.decoder
                .start(&self.store, &mut ws.dec, n, 1, Some(&hs), c0)?;
            self.decoder.step(&self.store, &mut ws.dec, &x, None)?;
            hs.copy_from_slice(ws.dec.h_n());
            if lstm {
                cs.copy_from_slice(ws.dec.c_n());
            }
            let out = self.step_output(&mut ws.att, t, &hs[top..][..n * h], keys, &lengths, width);
            o.copy_from_slice(out);
            if c.input_feeding {
                feed.copy_from_slice(&o);
            }
            if t < off {
                continue;
            }
            let u = t - off;
            self.out.forward(&self.store, &o, n, &mut logits);
            parent.clear();
            parent.extend(0..n);
            next.clone_from(&tokens);
            next_scores.clone_from(&scores);
            for b in 0..bn {
                if done[b] {
                    continue;
                }
                let last = u + 1 == limits[b];
                cand.clear();
                for w in 0..width {
                    let r = b * width + w;
                    if scores[r] == f64::NEG_INFINITY {
                        continue;
                    }
                    let row = &logits[r * v..][..v];
                    log_softmax_row(row, &mut logp);
                    if how.mask_reserved {
                        logp[PAD_ID as usize] = f64::NEG_INFINITY;
                        logp[SOS_ID as usize] = f64::NEG_INFINITY;
                        // A decoder alone has no source to copy an unknown word from.
                        if c.decoder_only {
                            logp[UNK_ID as usize] = f64::NEG_INFINITY;
                        }
                    }
                    match how.search {
                        Search::Greedy | Search::Beam { .. } => {
                            for (t, &lp) in logp.iter().enumerate() {
                                cand.push((scores[r] + lp, r, t as u32));
                            }
                        }
                        Search::Sample {
                            temperature,
                            top_k,
                            top_p,
                            ..
                        } => {
                            // From the masked log-probabilities: the same
                            // distribution as the logits', without the masked tokens.
                            row32.clear();
                            row32.extend(logp.iter().map(|&x| x as f32));
                            let how = crate::sample::Decoding::Sample {
                                temperature,
                                top_k,
                                top_p,
                            };
                            let t = crate::sample::choose(&row32, how, &mut rngs[b], &mut scratch);
                            cand.push((scores[r] + logp[t as usize], r, t));
                        }
                    }
                }
                // Best first; ties by row then token, so width 1 is greedy.
                let keep = (2 * width).min(cand.len());
                if keep < cand.len() {
                    cand.select_nth_unstable_by(keep - 1, by_score);
                    cand.truncate(keep);
                }
                cand.sort_by(by_score);
                let mut alive = 0;
                for &(s, r, t) in cand.iter() {
                    if alive == width {
                        break;
                    }
                    if t == EOS_ID || last {
                        let hyp = self.read_back(
                            &parents,
                            &picked,
                            (r, t, u),
                            s,
                            alpha,
                            t == EOS_ID,
                            ws,
                            lengths[b],
                        );
                        finals[b].push(hyp);
                        if finals[b].len() >= width {
                            break;
                        }
                        continue;
                    }
                    let slot = b * width + alive;
                    parent[slot] = r;
                    next[slot] = t;
                    next_scores[slot] = s;
                    alive += 1;
                }
                for w in alive..width {
                    next_scores[b * width + w] = f64::NEG_INFINITY;
                }
                if alive == 0 || finals[b].len() >= width || last {
                    done[b] = true;
                }
            }
            // Reorder the states by parent.
            reorder(&mut hs, &parent, l, n, h, &mut old);
            if lstm {
                reorder(&mut cs, &parent, l, n, h, &mut old);
            }
            reorder(&mut feed, &parent, 1, n, h, &mut old);
            parents.push(parent.clone());
            picked.push(next.clone());
            std::mem::swap(&mut tokens, &mut next);
            std::mem::swap(&mut scores, &mut next_scores);
            if done.iter().all(|&d| d) {
                break;
            }
        }
        for f in &mut finals {
            f.sort_by(|a, b| b.score.total_cmp(&a.score));
            f.truncate(how.nbest);
        }
        Ok(finals)
    }

    /// The hypothesis that ends at step `u` in row `r` with token `t`
    /// (`finished`: `t` is `<eos>`), read back through the parents.
    #[allow(clippy::too_many_arguments)]
    fn read_back(
        &self,
        parents: &[Vec<usize>],
        picked: &[Vec<u32>],
        (r, t, u): (usize, u32, usize),
        log_prob: f64,
        alpha: f64,
        finished: bool,
        ws: &Seq2SeqWs<T>,
        src_len: usize,
    ) -> Hypothesis {
        let has_att = self.attention.kind() != AttentionKind::None;
        let off = self.config.condition_steps();
        let n = ws.att.rows();
        let sn = ws.src_steps;
        let mut tokens = Vec::with_capacity(u + 1);
        let mut rows = Vec::with_capacity(u + 1);
        if !finished {
            tokens.push(t);
        }
        rows.push((u, r));
        let mut row = r;
        for j in (0..u).rev() {
            tokens.push(picked[j][row]);
            row = parents[j][row];
            rows.push((j, row));
        }
        tokens.reverse();
        rows.reverse();
        let mut attention = Vec::new();
        if has_att {
            let reversed = self.config.reverse_source;
            for &(j, row) in &rows {
                let a = &ws.att.alpha[((j + off) * n + row) * sn..][..sn];
                for s in 0..src_len {
                    let at = if reversed { src_len - 1 - s } else { s };
                    attention.push(a[at].to_f64() as f32);
                }
            }
        }
        let len = tokens.len() + usize::from(finished);
        let penalty = ((5.0 + len as f64) / 6.0).powf(alpha);
        Hypothesis {
            tokens,
            log_prob,
            score: log_prob / penalty,
            attention,
            finished,
        }
    }

    /// Loss, perplexity and token accuracy on `batches` (teacher forcing,
    /// no dropout, no label smoothing).
    pub fn measure(&mut self, batches: &[PairBatch]) -> Result<Evaluation> {
        let mut ws = std::mem::take(&mut self.eval_ws);
        let r = self.measure_with(&mut ws, batches);
        self.eval_ws = ws;
        r
    }

    fn measure_with(&self, ws: &mut Seq2SeqWs<T>, batches: &[PairBatch]) -> Result<Evaluation> {
        let v = self.config.tgt_vocab;
        let (mut total, mut count, mut correct) = (0.0, 0usize, 0usize);
        for b in batches {
            self.forward(ws, b, 1.0, None)?;
            let bn = b.batch();
            for (r, row) in ws.logits.chunks_exact(v).enumerate() {
                if r / bn < b.tgt_lengths[r % bn] && argmax(row) == b.tgt_out[r] as usize {
                    correct += 1;
                }
            }
            let n = b.tokens();
            total += self.loss(ws, b, 0.0, false) * n as f64;
            count += n;
        }
        let loss = if count == 0 {
            0.0
        } else {
            total / count as f64
        };
        let mut e = Evaluation {
            loss,
            ..Evaluation::default()
        };
        e.metrics.insert("perplexity".into(), loss.exp());
        e.metrics
            .insert("accuracy".into(), correct as f64 / count.max(1) as f64);
        Ok(e)
    }
}

/// The encoder's outputs (none without an encoder).
fn keys_of<'a, T: Float>(c: &Seq2SeqConfig, enc: &'a RnnWorkspace<T>) -> &'a [T] {
    if c.decoder_only {
        &[]
    } else {
        enc.output()
    }
}

/// Writes `src` `[N, w]` into columns `at..at + w` of `x` `[N, stride]`.
fn put_cols<T: Copy>(x: &mut [T], stride: usize, at: usize, src: &[T], w: usize) {
    for (row, s) in x.chunks_exact_mut(stride).zip(src.chunks_exact(w)) {
        row[at..at + w].copy_from_slice(s);
    }
}

/// Reads columns `at..at + w` of `x` `[N, stride]` into `dst` `[N, w]`.
fn get_cols<T: Copy>(x: &[T], stride: usize, at: usize, dst: &mut [T], w: usize) {
    for (row, d) in x.chunks_exact(stride).zip(dst.chunks_exact_mut(w)) {
        d.copy_from_slice(&row[at..at + w]);
    }
}

/// Best first: higher score, then lower row, then lower token.
fn by_score(a: &(f64, usize, u32), b: &(f64, usize, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

/// Rows of `[layers, N, H]` states taken from their parent rows (`old`: scratch).
fn reorder<T: Float>(
    x: &mut [T],
    parent: &[usize],
    layers: usize,
    n: usize,
    h: usize,
    old: &mut Vec<T>,
) {
    if parent.iter().enumerate().all(|(i, &p)| i == p) {
        return;
    }
    for layer in x[..layers * n * h].chunks_exact_mut(n * h) {
        old.clear();
        old.extend_from_slice(layer);
        for (r, &p) in parent.iter().enumerate() {
            layer[r * h..][..h].copy_from_slice(&old[p * h..][..h]);
        }
    }
}

/// The encoder layer whose final states start decoder layer `l`: the same
/// layer when the depths agree, else the top one.
fn bridge_source(c: &Seq2SeqConfig, l: usize) -> usize {
    if c.encoder_layers == c.layers {
        l
    } else {
        c.encoder_layers - 1
    }
}

/// Bridge inputs `[L, B, K]` from the encoder's final states
/// `[Le·D, B, H]`: each decoder layer's source layer, directions side by side.
fn gather_bridge<T: Float>(c: &Seq2SeqConfig, states: &[T], input: &mut [T], bn: usize) {
    let (h, k, d) = (c.hidden, c.keys(), c.keys() / c.hidden);
    for l in 0..c.layers {
        let ls = bridge_source(c, l);
        for b in 0..bn {
            for dir in 0..d {
                input[(l * bn + b) * k + dir * h..][..h]
                    .copy_from_slice(&states[((ls * d + dir) * bn + b) * h..][..h]);
            }
        }
    }
}

/// The reverse of [`gather_bridge`]: adds dL/d(inputs) into dL/d(states).
fn scatter_bridge<T: Float>(c: &Seq2SeqConfig, d_input: &[T], d_states: &mut [T], bn: usize) {
    let (h, k, d) = (c.hidden, c.keys(), c.keys() / c.hidden);
    for l in 0..c.layers {
        let ls = bridge_source(c, l);
        for b in 0..bn {
            for dir in 0..d {
                let src = &d_input[(l * bn + b) * k + dir * h..][..h];
                for (g, x) in d_states[((ls * d + dir) * bn + b) * h..][..h]
                    .iter_mut()
                    .zip(src)
                {
                    *g += *x;
                }
            }
        }
    }
}

impl Model for Seq2Seq<f32> {
    fn set_training_precision(&mut self, precision: Precision) -> Result<()> {
        let weights = self.product_weights();
        self.store.set_training_precision(precision, &weights)
    }

    type Batch = PairBatch;

    fn store(&self) -> &ParamStore<f32> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.store
    }

    fn forward_backward(&mut self, batch: &PairBatch, rng: &mut dyn RngCore) -> Result<f64> {
        let ratio = self.training.teacher_forcing.ratio(self.updates);
        let mut ws = std::mem::take(&mut self.train_ws);
        let r = self.forward_backward_with(&mut ws, batch, ratio, Some(rng));
        self.train_ws = ws;
        self.updates += 1;
        self.updates_f32 = split_count(self.updates);
        r
    }

    fn evaluate(&mut self, batches: &[PairBatch]) -> Result<Evaluation> {
        self.measure(batches)
    }

    fn carried_state(&self) -> Vec<(&'static str, &[f32])> {
        vec![("updates", &self.updates_f32[..])]
    }

    fn set_carried_state(&mut self, state: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, v) in state {
            match (name.as_str(), &v[..]) {
                ("updates", &[hi, lo]) => {
                    self.updates = ((hi as u64) << 24) | lo as u64;
                    self.updates_f32 = [hi, lo];
                }
                _ => {
                    return Err(Error::Config(format!(
                        "the training state has '{name}', which an encoder-decoder does not carry"
                    )))
                }
            }
        }
        Ok(())
    }

    /// 10 times the loss of uniform prediction over the target vocabulary.
    fn loss_bound(&self) -> Option<f64> {
        Some(10.0 * (self.config.tgt_vocab as f64).ln())
    }

    fn metadata(&self) -> Metadata {
        let json = |v: &dyn erased::Json| v.to_json();
        vec![
            ("format".into(), SEQ2SEQ_FORMAT.into()),
            ("config".into(), json(&self.config)),
            ("meta".into(), json(&self.meta)),
            ("training".into(), json(&self.training)),
        ]
    }
}

/// A count as two f32s that hold it exactly (24 bits each).
fn split_count(n: u64) -> [f32; 2] {
    [(n >> 24) as f32, (n & 0xff_ffff) as f32]
}

mod erased {
    /// JSON of any serialisable value, through one object-safe method.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<S: serde::Serialize> Json for S {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("plain data serialises")
        }
    }
}
