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

/// Keras's addition problem (`addition_rnn.py`): `"a+b"` → `"a+b"'s sum`
/// for numbers of 1 to `digits` digits, each question once. Returns
/// `train` + `test` distinct pairs from one seeded draw, so the test
/// questions are never trained on.
pub fn addition_pairs(
    digits: u32,
    train: usize,
    test: usize,
    seed: u64,
) -> crate::error::Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    use rand::{Rng, SeedableRng};
    if !(1..=9).contains(&digits) {
        return Err(crate::error::Error::Config(format!(
            "digits must be 1 to 9, got {digits}"
        )));
    }
    let max = 10u64.pow(digits);
    // Keras draws each number's length first, then its digits.
    let distinct = (max as f64).powi(2);
    if (train + test) as f64 > 0.5 * distinct {
        return Err(crate::error::Error::Config(format!(
            "{} questions of up to {digits} digits would repeat; ask for at most {}",
            train + test,
            (0.5 * distinct) as u64
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let number = |rng: &mut rand_chacha::ChaCha8Rng| -> u64 {
        let len = rng.random_range(1..=digits);
        let lo = if len == 1 { 0 } else { 10u64.pow(len - 1) };
        rng.random_range(lo..10u64.pow(len))
    };
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::with_capacity(train + test);
    while all.len() < train + test {
        let (a, b) = (number(&mut rng), number(&mut rng));
        // a+b and b+a are the same question, as Keras counts them.
        if seen.insert((a.min(b), a.max(b))) {
            all.push((format!("{a}+{b}"), (a + b).to_string()));
        }
    }
    let test_pairs = all.split_off(train);
    Ok((all, test_pairs))
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
