//! The batch layout of Zaremba et al. and char-rnn.
//!
//! With N tokens and batch B, L = N div B and row b of the data is
//! tokens[b·L .. (b+1)·L]. Step k feeds columns kT .. kT+T and predicts
//! columns kT+1 .. kT+T+1; an epoch has (L − 1) div T steps. Consecutive
//! steps continue each row, so the recurrent state carries across them.

use crate::error::{Error, Result};
use crate::train::{Data, Metadata};

use super::tokens::Tokens;
use super::Vocab;

/// The most validation tokens: a corpus larger than memory keeps its
/// validation batches, which are materialised, small.
pub const MAX_VALIDATION: usize = 1 << 20;

/// Splits tokens into the first (1 − f) for training and the last f for
/// validation, at most [`MAX_VALIDATION`] tokens.
pub fn split_train_val(tokens: &[u32], val_fraction: f64) -> (&[u32], &[u32]) {
    tokens.split_at(tokens.len() - validation_len(tokens.len(), val_fraction))
}

/// How many of n tokens [`split_train_val`] holds out.
fn validation_len(n: usize, val_fraction: f64) -> usize {
    (((n as f64) * val_fraction).round() as usize)
        .min(n)
        .min(MAX_VALIDATION)
}

/// Serves (input, target) batches in the standard layout, time-major.
#[derive(Clone, Debug)]
pub struct Batcher {
    /// The ids; rows `[B, L]` start at `start`.
    tokens: Tokens,
    start: usize,
    batch: usize,
    row_len: usize,
    seq_len: usize,
}

impl Batcher {
    /// Lays out `tokens` as B rows. Errors when there are too few tokens for
    /// one step of T predictions per row, naming how many are needed.
    pub fn new(tokens: &[u32], batch: usize, seq_len: usize, what: &str) -> Result<Batcher> {
        Batcher::over(
            Tokens::owned(tokens.to_vec()),
            0..tokens.len(),
            batch,
            seq_len,
            what,
        )
    }

    /// [`Batcher::new`] over `range` of `tokens`, without copying them.
    pub fn over(
        tokens: Tokens,
        range: std::ops::Range<usize>,
        batch: usize,
        seq_len: usize,
        what: &str,
    ) -> Result<Batcher> {
        if batch == 0 || seq_len == 0 {
            return Err(Error::Config(format!(
                "batch and sequence length must be at least 1 (got {batch} and {seq_len})"
            )));
        }
        let n = range.len();
        let need = batch * (seq_len + 1);
        if n < need {
            return Err(Error::TooShort {
                what: what.to_string(),
                have: n,
                need,
                batch,
                seq_len,
            });
        }
        Ok(Batcher {
            tokens,
            start: range.start,
            batch,
            row_len: n / batch,
            seq_len,
        })
    }

    /// Steps per epoch: (L − 1) div T.
    pub fn steps_per_epoch(&self) -> usize {
        (self.row_len - 1) / self.seq_len
    }

    /// B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// T.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Fills `inputs` and `targets` `[T, B]` (time-major) for step k of an epoch.
    pub fn fill(&self, k: usize, inputs: &mut Vec<u32>, targets: &mut Vec<u32>) {
        let (b_n, t_n) = (self.batch, self.seq_len);
        inputs.resize(t_n * b_n, 0);
        targets.resize(t_n * b_n, 0);
        for b in 0..b_n {
            let row = self.start + b * self.row_len + k * t_n;
            for t in 0..t_n {
                inputs[t * b_n + b] = self.tokens.get(row + t);
                targets[t * b_n + b] = self.tokens.get(row + t + 1);
            }
        }
    }
}

/// One batch of a language model: inputs and targets `[T, B]`, time-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LmBatch {
    /// `[T, B]` input ids.
    pub inputs: Vec<u32>,
    /// `[T, B]` the ids to predict.
    pub targets: Vec<u32>,
    /// T.
    pub steps: usize,
    /// B.
    pub batch: usize,
}

/// A language model's data: the training stream in the standard layout,
/// the validation stream as batches in order, and the vocabulary.
#[derive(Clone, Debug)]
pub struct LmData {
    train: Batcher,
    val: Vec<LmBatch>,
    vocab: Vocab,
    hash: u64,
}

/// FNV-1a over `values`: the fingerprint of a run's data, so that resuming
/// on different data is an error.
pub(crate) fn fingerprint(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ x).wrapping_mul(0x0100_0000_01b3)
    })
}

impl LmData {
    /// Splits `ids` (the encoding of `source` by `vocab`) into training and
    /// validation by `val_fraction` and lays both out for batch B and T
    /// steps of truncated BPTT.
    pub fn new(
        ids: &[u32],
        vocab: Vocab,
        batch: usize,
        seq_len: usize,
        val_fraction: f64,
        source: &str,
    ) -> Result<LmData> {
        let tokens = Tokens::owned(ids.to_vec());
        let hash = tokens.fingerprint();
        LmData::from_tokens(tokens, hash, vocab, batch, seq_len, val_fraction, source)
    }

    /// [`LmData::new`] over ids in memory or mapped from a token file
    /// ([`super::tokens`]), with their fingerprint; the training part is
    /// read in place.
    pub fn from_tokens(
        tokens: Tokens,
        fingerprint: u64,
        vocab: Vocab,
        batch: usize,
        seq_len: usize,
        val_fraction: f64,
        source: &str,
    ) -> Result<LmData> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(Error::Config(format!(
                "validation fraction must be in [0, 1), got {val_fraction}"
            )));
        }
        let n = tokens.len();
        let n_train = n - validation_len(n, val_fraction);
        let val_ids = tokens.to_vec(n_train..n);
        let train = Batcher::over(
            tokens,
            0..n_train,
            batch,
            seq_len,
            &format!("the training part of {source}"),
        )?;
        if val_fraction > 0.0 && val_ids.len() < 2 {
            return Err(Error::TooShort {
                what: format!("the validation part of {source} ({} tokens)", val_ids.len()),
                have: val_ids.len(),
                need: 2,
                batch: 1,
                seq_len: 1,
            });
        }
        Ok(LmData {
            val: validation_batches(&val_ids, batch, seq_len),
            train,
            vocab,
            hash: fingerprint,
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// B.
    pub fn batch(&self) -> usize {
        self.train.batch()
    }

    /// T.
    pub fn seq_len(&self) -> usize {
        self.train.seq_len()
    }
}

/// The validation stream in the standard layout at batch min(B, ·), cut
/// into steps of at most T, so every prediction of every row is counted
/// once with the state carried along each row.
fn validation_batches(val: &[u32], batch: usize, seq_len: usize) -> Vec<LmBatch> {
    let n = val.len();
    if n < 2 {
        return Vec::new();
    }
    let t = seq_len;
    let b = batch.min((n - 1) / t.min(n - 1)).max(1);
    let row = n / b;
    let data = &val[..row * b];
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < row {
        let len = t.min(row - 1 - start);
        let mut bt = LmBatch {
            inputs: vec![0; len * b],
            targets: vec![0; len * b],
            steps: len,
            batch: b,
        };
        for r in 0..b {
            for k in 0..len {
                bt.inputs[k * b + r] = data[r * row + start + k];
                bt.targets[k * b + r] = data[r * row + start + k + 1];
            }
        }
        out.push(bt);
        start += len;
    }
    out
}

impl Data for LmData {
    type Batch = LmBatch;

    fn steps_per_epoch(&self) -> Option<usize> {
        Some(self.train.steps_per_epoch())
    }

    fn fill(&mut self, _epoch: usize, step: usize, batch: &mut LmBatch) -> Result<()> {
        self.train.fill(step, &mut batch.inputs, &mut batch.targets);
        batch.steps = self.train.seq_len();
        batch.batch = self.train.batch();
        Ok(())
    }

    fn tokens_per_step(&self) -> usize {
        self.train.batch() * self.train.seq_len()
    }

    fn validation(&self) -> &[LmBatch] {
        &self.val
    }

    fn fingerprint(&self) -> u64 {
        self.hash
    }

    fn metadata(&self) -> Metadata {
        vec![crate::checkpoint::vocab_metadata(&self.vocab)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_zaremba() {
        let toks: Vec<u32> = (0..23).collect();
        let b = Batcher::new(&toks, 3, 2, "train").unwrap();
        // L = 7; rows 0..7, 7..14, 14..21; (7-1) div 2 = 3 steps.
        assert_eq!(b.steps_per_epoch(), 3);
        let (mut x, mut y) = (vec![], vec![]);
        b.fill(1, &mut x, &mut y);
        assert_eq!(x, [2, 9, 16, 3, 10, 17]);
        assert_eq!(y, [3, 10, 17, 4, 11, 18]);
    }

    #[test]
    fn too_short_names_what_is_needed() {
        let e = Batcher::new(&[1, 2, 3], 2, 4, "training data")
            .unwrap_err()
            .to_string();
        assert!(e.contains("10") && e.contains("3"), "{e}");
    }

    #[test]
    fn split_keeps_order() {
        let t: Vec<u32> = (0..10).collect();
        let (a, b) = split_train_val(&t, 0.2);
        assert_eq!((a.len(), b), (8, &[8u32, 9][..]));
        assert_eq!(split_train_val(&t, 0.0).1.len(), 0);
    }
}
