//! Generated series.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The Mackey–Glass series dx/dt = 0.2·x(t−τ)/(1 + x(t−τ)^10) − 0.1·x(t),
/// integrated by fourth-order Runge–Kutta with step `dt` (the delayed value
/// at half steps interpolated linearly), sampled every `subsample` steps.
/// The history before t = 0 is x0 = 1.2, perturbed by U(−0.1, 0.1) drawn
/// from `seed` when it is non-zero.
pub fn mackey_glass(
    length: usize,
    tau: f64,
    dt: f64,
    subsample: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    if !(tau > 0.0 && dt > 0.0 && tau.is_finite() && dt.is_finite()) || subsample == 0 {
        return Err(Error::Config(format!("mackey-glass: tau and dt must be > 0 and subsample >= 1 (got {tau}, {dt}, {subsample})")));
    }
    let lag = (tau / dt).round() as usize;
    if lag == 0 {
        return Err(Error::Config(format!(
            "mackey-glass: tau ({tau}) must be at least dt ({dt})"
        )));
    }
    let x0 = if seed == 0 {
        1.2
    } else {
        1.2 + ChaCha8Rng::seed_from_u64(seed).random_range(-0.1..0.1)
    };
    let f = |x: f64, xd: f64| 0.2 * xd / (1.0 + xd.powi(10)) - 0.1 * x;
    // hist[i] is x at time (i − lag)·dt.
    let steps = length * subsample;
    let mut hist = vec![x0; lag + 1];
    hist.reserve(steps);
    let mut out = Vec::with_capacity(length);
    for s in 0..steps {
        let i = lag + s;
        let x = hist[i];
        let (d0, d1) = (hist[i - lag], hist[i - lag + 1]);
        let dh = 0.5 * (d0 + d1);
        let k1 = f(x, d0);
        let k2 = f(x + 0.5 * dt * k1, dh);
        let k3 = f(x + 0.5 * dt * k2, dh);
        let k4 = f(x + dt * k3, d1);
        if s % subsample == 0 {
            out.push(x);
        }
        hist.push(x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mackey_glass_stays_in_its_range() {
        let x = mackey_glass(2000, 17.0, 0.1, 10, 0).unwrap();
        assert_eq!(x.len(), 2000);
        let (lo, hi) = x
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(lo > 0.2 && hi < 1.5 && hi - lo > 0.5, "{lo}..{hi}");
    }
}
