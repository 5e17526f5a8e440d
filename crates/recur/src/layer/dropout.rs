//! Inverted dropout: kept values are scaled by 1/(1 − p) in training, so
//! inference needs no change.

use rand::RngCore;

use crate::float::Float;

/// Draws a mask (0 or 1/(1 − p) per element) and applies it: `x *= mask`.
/// Each 64-bit draw decides two elements, by its halves against
/// (1 − p)·2³².
pub fn dropout_forward<T: Float>(x: &mut [T], mask: &mut [T], p: f64, rng: &mut dyn RngCore) {
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep);
    // The 32-bit threshold: P(u32 < threshold) = keep to 2⁻³².
    let threshold = (keep * 4_294_967_296.0).min(u64::MAX as f64) as u64;
    let decide = |v: &mut T, m: &mut T, r: u32| {
        *m = if u64::from(r) < threshold {
            scale
        } else {
            T::ZERO
        };
        *v *= *m;
    };
    let mut pairs_x = x.chunks_exact_mut(2);
    let mut pairs_m = mask.chunks_exact_mut(2);
    for (v, m) in (&mut pairs_x).zip(&mut pairs_m) {
        let r = rng.next_u64();
        decide(&mut v[0], &mut m[0], r as u32);
        decide(&mut v[1], &mut m[1], (r >> 32) as u32);
    }
    for (v, m) in pairs_x
        .into_remainder()
        .iter_mut()
        .zip(pairs_m.into_remainder())
    {
        decide(v, m, rng.next_u32());
    }
}

/// `dx *= mask`.
pub fn dropout_backward<T: Float>(dx: &mut [T], mask: &[T]) {
    for (v, m) in dx.iter_mut().zip(mask) {
        *v *= *m;
    }
}
