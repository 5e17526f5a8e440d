//! The batch layout of Zaremba et al. and char-rnn.
//!
//! With N tokens and batch B, L = N div B and row b of the data is
//! tokens[b·L .. (b+1)·L]. Step k feeds columns kT .. kT+T and predicts
//! columns kT+1 .. kT+T+1; an epoch has (L − 1) div T steps. Consecutive
//! steps continue each row, so the recurrent state carries across them.

use crate::error::{Error, Result};

/// Splits tokens into the first (1 − f) for training and the last f for validation.
pub fn split_train_val(tokens: &[u32], val_fraction: f64) -> (&[u32], &[u32]) {
    let n_val = ((tokens.len() as f64) * val_fraction).round() as usize;
    tokens.split_at(tokens.len() - n_val.min(tokens.len()))
}

/// Serves (input, target) batches in the standard layout, time-major.
#[derive(Clone, Debug)]
pub struct Batcher {
    /// `[B, L]` the token rows.
    data: Vec<u32>,
    batch: usize,
    row_len: usize,
    seq_len: usize,
}

impl Batcher {
    /// Lays out `tokens` as B rows. Errors when there are too few tokens for
    /// one step of T predictions per row, naming how many are needed.
    pub fn new(tokens: &[u32], batch: usize, seq_len: usize, what: &str) -> Result<Batcher> {
        if batch == 0 || seq_len == 0 {
            return Err(Error::Config(format!(
                "batch and sequence length must be at least 1 (got {batch} and {seq_len})"
            )));
        }
        let need = batch * (seq_len + 1);
        if tokens.len() < need {
            return Err(Error::TooShort {
                what: what.to_string(),
                have: tokens.len(),
                need,
                batch,
                seq_len,
            });
        }
        let row_len = tokens.len() / batch;
        Ok(Batcher {
            data: tokens[..batch * row_len].to_vec(),
            batch,
            row_len,
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
        let start = k * t_n;
        for b in 0..b_n {
            let row = &self.data[b * self.row_len..(b + 1) * self.row_len];
            for t in 0..t_n {
                inputs[t * b_n + b] = row[start + t];
                targets[t * b_n + b] = row[start + t + 1];
            }
        }
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
