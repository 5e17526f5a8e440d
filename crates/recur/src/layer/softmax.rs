//! Log-softmax of a row, for sampling and beam search (the softmax
//! cross-entropy loss is in [`crate::layer::loss`]).

use crate::float::Float;

/// Log-softmax of one row `[V]` into `out`, in f64 (for sampling and beam search).
pub fn log_softmax_row<T: Float>(logits: &[T], out: &mut [f64]) {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x.to_f64()));
    let sum: f64 = logits.iter().map(|&x| (x.to_f64() - max).exp()).sum();
    let ls = sum.ln() + max;
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = x.to_f64() - ls;
    }
}
