//! Fused softmax cross-entropy: the loss and its gradient in one pass over
//! the logits, overwriting them, so only one `[N, V]` buffer ever exists.

use multiversion::multiversion;

use crate::float::Float;

/// Mean cross-entropy of `logits` `[N, V]` against `targets` `[N]`, returned
/// in f64. When `grad` is true the logits are replaced by dL/dlogits =
/// (softmax − onehot) / N.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub fn softmax_cross_entropy<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    v: usize,
    grad: bool,
) -> f64 {
    let n = targets.len();
    let inv_n = T::from_f64(1.0 / n as f64);
    let mut total = 0.0f64;
    for (row, &tgt) in logits.chunks_exact_mut(v).zip(targets) {
        let max = lanes_max(row);
        let sum = lanes_sum_exp(row, max);
        total += sum.to_f64().ln() - (row[tgt as usize] - max).to_f64();
        if grad {
            let scale = inv_n / sum;
            for x in row.iter_mut() {
                *x = (*x - max).exp() * scale;
            }
            row[tgt as usize] -= inv_n;
        }
    }
    total / n as f64
}

/// Reductions in 16 fixed lanes: they vectorise (a single running sum cannot,
/// as float addition is not associative) and stay deterministic.
const LANES: usize = 16;

#[inline(always)]
fn lanes_max<T: Float>(row: &[T]) -> T {
    let mut acc = [row[0]; LANES];
    let mut it = row.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let m = it
        .remainder()
        .iter()
        .fold(acc[0], |m, &x| if x > m { x } else { m });
    acc.iter().fold(m, |m, &x| if x > m { x } else { m })
}

#[inline(always)]
fn lanes_sum_exp<T: Float>(row: &[T], max: T) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut it = row.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] += (c[l] - max).exp();
        }
    }
    let mut s = T::ZERO;
    for &x in it.remainder() {
        s += (x - max).exp();
    }
    for a in acc {
        s += a;
    }
    s
}

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
