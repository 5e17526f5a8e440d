//! Inverted dropout: kept values are scaled by 1/(1 − p) in training, so
//! inference needs no change.

use rand::{Rng, RngCore};

use crate::float::Float;

/// Draws a mask (0 or 1/(1 − p) per element) and applies it: `x *= mask`.
pub fn dropout_forward<T: Float>(x: &mut [T], mask: &mut [T], p: f64, rng: &mut dyn RngCore) {
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep);
    for (v, m) in x.iter_mut().zip(mask.iter_mut()) {
        *m = if rng.random::<f64>() < keep {
            scale
        } else {
            T::ZERO
        };
        *v *= *m;
    }
}

/// `dx *= mask`.
pub fn dropout_backward<T: Float>(dx: &mut [T], mask: &[T]) {
    for (v, m) in dx.iter_mut().zip(mask) {
        *v *= *m;
    }
}
