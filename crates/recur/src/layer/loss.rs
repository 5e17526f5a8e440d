//! Losses over selected elements: binary cross-entropy on logits and mean
//! squared error. `weight` (same shape as the logits) selects and weights the
//! elements that count; the loss is Σ w·ℓ / Σ w and dL/dz is written into
//! `dz`, so the caller can mix losses over steps without extra buffers.

use crate::float::Float;

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
