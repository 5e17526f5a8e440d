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

/// A confusion matrix of C classes: `counts[truth · C + predicted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    classes: usize,
    counts: Vec<u64>,
}

/// Precision, recall and F1 of one class, and how often it is the truth.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ClassScores {
    /// Of the predictions of this class, the share that were right.
    pub precision: f64,
    /// Of this class's examples, the share predicted as it.
    pub recall: f64,
    /// Their harmonic mean (0 when both are 0).
    pub f1: f64,
    /// Examples whose truth is this class.
    pub support: u64,
}

impl Confusion {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }
    /// C.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// Counts one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth * self.classes + predicted] += 1;
    }
    /// How often `truth` was predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }
    /// Predictions counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// The share of predictions that were right (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        right as f64 / self.total().max(1) as f64
    }
    /// Precision, recall and F1 of class `c` (a ratio with nothing to
    /// count is 0, as scikit-learn's `zero_division=0`).
    pub fn scores(&self, c: usize) -> ClassScores {
        let tp = self.count(c, c) as f64;
        let predicted: u64 = (0..self.classes).map(|t| self.count(t, c)).sum();
        let support: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
        let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
        let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    }
    /// The unweighted mean F1 over the classes that occur as truth or as
    /// prediction (scikit-learn's `f1_score(average="macro")` over the
    /// labels present).
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<usize> = (0..self.classes)
            .filter(|&c| (0..self.classes).any(|o| self.count(c, o) + self.count(o, c) > 0))
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&c| self.scores(c).f1).sum::<f64>() / present.len() as f64
    }
}
