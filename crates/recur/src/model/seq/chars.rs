//! The character encoder of a word (Plank et al. 2016): a bidirectional
//! LSTM reads each word's characters, and the word is the concatenation of
//! its final forward and backward states.
//!
//! A batch lists each distinct spelling once ([`Spellings`]); the encoder
//! runs all of them as one ragged batch, time-major over characters.

use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::error::Result;
use crate::float::Float;
use crate::layer::embedding::Embedding;
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::params::{ParamStore, Scope};

/// Sizes of the character encoder.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CharConfig {
    /// Characters known (id 0 is padding, 1 unknown).
    pub vocab: usize,
    /// Character embedding width.
    pub embed: usize,
    /// Hidden units per direction: a word is 2·hidden wide.
    pub hidden: usize,
}

/// The distinct spellings of a batch's words: spelling n is
/// `chars[offsets[n]..offsets[n + 1]]`, at least one character.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spellings {
    /// Character ids, all spellings concatenated.
    pub chars: Vec<u32>,
    /// `[N + 1]` where each spelling starts.
    pub offsets: Vec<usize>,
}

impl Spellings {
    /// N: the number of spellings.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Empties the list, keeping its buffers.
    pub fn clear(&mut self) {
        self.chars.clear();
        self.offsets.clear();
    }
    /// Appends a spelling and returns its index.
    pub fn push(&mut self, chars: &[u32]) -> u32 {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.chars.extend_from_slice(chars);
        self.offsets.push(self.chars.len());
        (self.offsets.len() - 2) as u32
    }
}

/// The encoder's parts: `embedding` and a one-layer bidirectional `rnn`.
#[derive(Clone, Debug)]
pub struct CharEncoder {
    config: CharConfig,
    embedding: Embedding,
    rnn: Rnn,
}

/// Buffers of one pass.
#[derive(Clone, Debug, Default)]
pub struct CharWs<T> {
    /// `[Tc, N]` character ids, time-major, 0 past each spelling's end.
    ids: Vec<u32>,
    /// `[N]` the spellings' lengths, longest first.
    lengths: Vec<usize>,
    /// `[N]` the spelling in each row (rows run longest first, so each
    /// step runs only on the words still being read).
    order: Vec<usize>,
    /// `[Tc, N, Ec]`
    x: Vec<T>,
    rnn: RnnWorkspace<T>,
    /// `[N, 2·Hc]` each spelling's vector.
    out: Vec<T>,
    /// `[Tc, N, 2·Hc]` zeros: no gradient reaches the per-step outputs.
    dy: Vec<T>,
    /// `[2, N, Hc]`
    dh_n: Vec<T>,
}

impl<T> CharWs<T> {
    /// `[N, 2·Hc]` the spellings' vectors of the last forward.
    pub fn output(&self) -> &[T] {
        &self.out
    }
}

impl CharEncoder {
    /// Registers `embedding.weight` and `rnn.*` in `scope`.
    pub fn new<T: Float>(mut scope: Scope<'_, T>, config: CharConfig) -> Result<CharEncoder> {
        let embedding = Embedding::new(scope.pp("embedding"), config.vocab, config.embed);
        let rnn = Rnn::new(
            scope.pp("rnn"),
            RnnConfig::new(CellKind::Lstm, config.embed, config.hidden).bidirectional(true),
        )?;
        Ok(CharEncoder {
            config,
            embedding,
            rnn,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &CharConfig {
        &self.config
    }

    /// The width of a word's vector: 2·Hc.
    pub fn output(&self) -> usize {
        2 * self.config.hidden
    }

    /// The embedding.
    pub fn embedding(&self) -> &Embedding {
        &self.embedding
    }

    /// The recurrent layer.
    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }

    /// Encodes every spelling into [`CharWs::output`].
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut CharWs<T>,
        words: &Spellings,
    ) -> Result<()> {
        let n = words.len();
        let w = &words.offsets;
        let tc = (0..n).map(|i| w[i + 1] - w[i]).max().unwrap_or(0);
        let (ec, hc) = (self.config.embed, self.config.hidden);
        ws.order.clear();
        ws.order.extend(0..n);
        ws.order
            .sort_unstable_by_key(|&i| (std::cmp::Reverse(w[i + 1] - w[i]), i));
        ws.ids.clear();
        ws.ids.resize(tc * n, 0);
        ws.lengths.clear();
        for (row, &i) in ws.order.iter().enumerate() {
            let s = &words.chars[w[i]..w[i + 1]];
            for (t, &c) in s.iter().enumerate() {
                ws.ids[t * n + row] = c;
            }
            ws.lengths.push(s.len());
        }
        ws.x.resize(tc * n * ec, T::ZERO);
        self.embedding.forward(store, &ws.ids, &mut ws.x);
        self.rnn.forward(
            store,
            &mut ws.rnn,
            RnnInput::new(&ws.x, tc, n).lengths(&ws.lengths),
            None,
        )?;
        // h_n `[2, N, Hc]` → out `[N, 2·Hc]`.
        ws.out.resize(n * 2 * hc, T::ZERO);
        let h_n = ws.rnn.h_n();
        for (row, &i) in ws.order.iter().enumerate() {
            for d in 0..2 {
                ws.out[(i * 2 + d) * hc..][..hc].copy_from_slice(&h_n[(d * n + row) * hc..][..hc]);
            }
        }
        Ok(())
    }

    /// Backward of the last [`CharEncoder::forward`] on `ws`, given
    /// dL/dout `[N, 2·Hc]`; adds the encoder's gradients to the store.
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut CharWs<T>,
        d_out: &[T],
    ) -> Result<()> {
        let n = ws.lengths.len();
        let hc = self.config.hidden;
        let tc = ws.ids.len() / n.max(1);
        ws.dy.clear();
        ws.dy.resize(tc * n * 2 * hc, T::ZERO);
        ws.dh_n.resize(2 * n * hc, T::ZERO);
        for (row, &i) in ws.order.iter().enumerate() {
            for d in 0..2 {
                ws.dh_n[(d * n + row) * hc..][..hc]
                    .copy_from_slice(&d_out[(i * 2 + d) * hc..][..hc]);
            }
        }
        self.rnn
            .backward(store, &mut ws.rnn, &ws.dy, Some(&ws.dh_n), None)?;
        self.embedding.backward(store, &ws.ids, ws.rnn.dx());
        Ok(())
    }
}
