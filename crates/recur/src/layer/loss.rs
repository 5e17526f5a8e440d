//! Losses, each returning the loss in f64 and writing dL/dlogits.
//!
//! - Softmax cross-entropy over `[N, V]` logits, fused: the loss and its
//!   gradient in one pass, overwriting the logits, so only one `[N, V]`
//!   buffer ever exists. [`softmax_cross_entropy`] is the mean over the N
//!   rows; [`softmax_cross_entropy_masked`] weights each row (a mask of
//!   padded steps, or per-step weights).
//! - Binary cross-entropy on logits and mean squared error, over selected
//!   elements: `weight` (same shape as the logits) selects and weights the
//!   elements that count.
//!
//! Weighted losses are Σ w·ℓ / Σ w, so padding never changes a result; a
//! batch with Σ w = 0 has loss 0 and gradient 0.

use multiversion::multiversion;

use crate::float::Float;

/// Mean cross-entropy of `logits` `[N, V]` against `targets` `[N]`. When
/// `grad` is true the logits are replaced by dL/dlogits = (softmax − onehot) / N.
pub fn softmax_cross_entropy<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    v: usize,
    grad: bool,
) -> f64 {
    cross_entropy_rows(logits, targets, None, v, 0.0, grad)
}

/// Cross-entropy of `logits` `[N, V]` against `targets` `[N]` with a weight
/// per row `[N]`: Σ w·ℓ / Σ w. When `grad` is true the logits are replaced by
/// dL/dlogits = w·(softmax − onehot) / Σ w (zero for rows of weight 0, whose
/// targets are never read).
pub fn softmax_cross_entropy_masked<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    weight: &[T],
    v: usize,
    grad: bool,
) -> f64 {
    cross_entropy_rows(logits, targets, Some(weight), v, 0.0, grad)
}

/// [`softmax_cross_entropy_masked`] with label smoothing ε (PyTorch's
/// `label_smoothing`): the target distribution is (1 − ε)·onehot + ε/V, so
/// a row's loss is (1 − ε)·(−ln p_target) + ε·mean_j(−ln p_j).
pub fn softmax_cross_entropy_smoothed<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    weight: &[T],
    v: usize,
    smoothing: f64,
    grad: bool,
) -> f64 {
    cross_entropy_rows(logits, targets, Some(weight), v, smoothing, grad)
}

/// The shared pass: row n counts with weight w_n / Σw (1/N without weights).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn cross_entropy_rows<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    weight: Option<&[T]>,
    v: usize,
    smoothing: f64,
    grad: bool,
) -> f64 {
    let n = targets.len();
    let total_w = match weight {
        None => n as f64,
        Some(w) => w[..n].iter().map(|x| x.to_f64()).sum(),
    };
    if total_w == 0.0 {
        if grad {
            logits[..n * v].fill(T::ZERO);
        }
        return 0.0;
    }
    let inv = T::from_f64(1.0 / total_w);
    let mut total = 0.0f64;
    for (i, (row, &tgt)) in logits.chunks_exact_mut(v).zip(targets).enumerate() {
        let w = weight.map_or(T::ONE, |w| w[i]);
        if w == T::ZERO {
            if grad {
                row.fill(T::ZERO);
            }
            continue;
        }
        let max = lanes_max(row);
        let sum = lanes_sum_exp(row, max);
        let lse = sum.to_f64().ln();
        let mut l = lse - (row[tgt as usize] - max).to_f64();
        if smoothing > 0.0 {
            let mean = row.iter().map(|x| (*x - max).to_f64()).sum::<f64>() / v as f64;
            l = (1.0 - smoothing) * l + smoothing * (lse - mean);
        }
        total += if weight.is_some() { w.to_f64() * l } else { l };
        if grad {
            // Unweighted rows keep the 1/N scaling bit for bit.
            let g = if weight.is_some() { w * inv } else { inv };
            let scale = g / sum;
            for x in row.iter_mut() {
                *x = (*x - max).exp() * scale;
            }
            if smoothing > 0.0 {
                let off = g * T::from_f64(smoothing / v as f64);
                row.iter_mut().for_each(|x| *x -= off);
                row[tgt as usize] -= g * T::from_f64(1.0 - smoothing);
            } else {
                row[tgt as usize] -= g;
            }
        }
    }
    total / total_w
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

/// Binary cross-entropy of logits `z` against 0/1 `targets` (PyTorch's
/// `BCEWithLogitsLoss`, computed stably as max(z,0) − z·y + ln(1 + e^−|z|)),
/// averaged over the weighted elements. Returns the loss in f64; writes
/// dL/dz = w·(σ(z) − y) / Σw into `dz`.
pub fn bce_with_logits<T: Float>(z: &[T], targets: &[T], weight: &[T], dz: &mut [T]) -> f64 {
    let Some(total_w) = weight_total(weight, dz) else {
        return 0.0;
    };
    let inv = T::from_f64(1.0 / total_w);
    let mut loss = 0.0f64;
    for (((d, &zv), &y), &w) in dz.iter_mut().zip(z).zip(targets).zip(weight) {
        let (zf, yf) = (zv.to_f64(), y.to_f64());
        loss += w.to_f64() * (zf.max(0.0) - zf * yf + (-zf.abs()).exp().ln_1p());
        *d = w * (zv.sigmoid() - y) * inv;
    }
    loss / total_w
}

/// Mean squared error of `z` against `targets` over the weighted elements:
/// Σ w·(z − y)² / Σ w. Writes dL/dz = 2w·(z − y) / Σw into `dz`.
pub fn mse<T: Float>(z: &[T], targets: &[T], weight: &[T], dz: &mut [T]) -> f64 {
    let Some(total_w) = weight_total(weight, dz) else {
        return 0.0;
    };
    let inv = T::from_f64(2.0 / total_w);
    let mut loss = 0.0f64;
    for (((d, &zv), &y), &w) in dz.iter_mut().zip(z).zip(targets).zip(weight) {
        let e = (zv - y).to_f64();
        loss += w.to_f64() * e * e;
        *d = w * (zv - y) * inv;
    }
    loss / total_w
}

/// Σ w, or None (with dz zeroed) when nothing counts.
fn weight_total<T: Float>(weight: &[T], dz: &mut [T]) -> Option<f64> {
    let total: f64 = weight.iter().map(|w| w.to_f64()).sum();
    if total == 0.0 {
        dz.fill(T::ZERO);
        None
    } else {
        Some(total)
    }
}
