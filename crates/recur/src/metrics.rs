//! Measures of a prediction, shared by every model and command.

/// RMSE / (max − min) of the truth, as ReservoirPy's `nrmse`.
pub fn nrmse(truth: &[f64], pred: &[f64]) -> f64 {
    let mse = truth
        .iter()
        .zip(pred)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / truth.len() as f64;
    let (lo, hi) = truth
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    mse.sqrt() / (hi - lo)
}

/// Coefficient of determination 1 − SS_res / SS_tot.
pub fn r2(truth: &[f64], pred: &[f64]) -> f64 {
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let ss_res: f64 = truth.iter().zip(pred).map(|(a, b)| (a - b) * (a - b)).sum();
    let ss_tot: f64 = truth.iter().map(|a| (a - mean) * (a - mean)).sum();
    1.0 - ss_res / ss_tot
}

/// Perplexity of a mean cross-entropy in nats.
pub fn perplexity(cross_entropy: f64) -> f64 {
    cross_entropy.exp()
}

/// Bits per token of a mean cross-entropy in nats.
pub fn bits_per_token(cross_entropy: f64) -> f64 {
    cross_entropy / std::f64::consts::LN_2
}
