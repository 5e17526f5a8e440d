//! Optimisers, gradient clipping and learning-rate schedules with
//! `torch.optim`'s update rules and defaults.
//!
//! An [`Optimizer`] updates a fixed list of parameter tensors. Its state is
//! allocated once in [`Optimizer::new`]; [`Optimizer::step`] allocates
//! nothing; [`Optimizer::state_tensors`] / [`Optimizer::load_state`]
//! round-trip the state bit for bit, for resumable training.
//!
//! # Matching PyTorch
//! Each rule follows the single-tensor (`foreach=False`) code path of
//! `torch.optim` (2.x), operation for operation:
//!
//! * element-wise work is done in f32, in PyTorch's order of operations
//!   (for example `addcdiv_(t1, t2, value=v)` is `p + (v·t1)/t2`, and Adam's
//!   first moment is `exp_avg.lerp_(grad, 1 − β1)`);
//! * scalar work that PyTorch does on Python floats (bias corrections, Adam's
//!   step size, AdamW's decay factor, `1 − β`) is done in f64 on the
//!   hyper-parameters' decimal values (0.9, not the f32 nearest 0.9 widened),
//!   then rounded to f32 where PyTorch hands it to a kernel.
//!
//! One difference remains: PyTorch's vectorised CPU kernels fuse some
//! multiply-adds (`add(…, alpha)` and `lerp` use FMA on AVX2 machines),
//! which this module does not, so a long run can drift from PyTorch's by a
//! few units in the last place per step.

mod clip;
mod optimizer;
mod schedule;
#[cfg(test)]
mod tests;

pub use clip::{clip_grad_norm, clip_grad_value};
pub use optimizer::Optimizer;
pub use schedule::LrSchedule;

use crate::error::{Error, Result};

/// Which update rule. Serialised under the names of [`OptimizerKind::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with heavy-ball momentum
    /// (`torch.optim.SGD`, dampening 0, no Nesterov).
    Sgd,
    /// Adam, weight decay as L2 added to the gradient (`torch.optim.Adam`).
    Adam,
    /// Adam with decoupled weight decay (`torch.optim.AdamW`).
    AdamW,
    /// Uncentered RMSprop, optionally with momentum (`torch.optim.RMSprop`).
    RmsProp,
    /// Adagrad without learning-rate decay, accumulator starting at 0
    /// (`torch.optim.Adagrad`).
    Adagrad,
}

impl OptimizerKind {
    /// Every kind, in declaration order.
    pub const ALL: [OptimizerKind; 5] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::RmsProp,
        OptimizerKind::Adagrad,
    ];

    /// The lower-case name: "sgd", "adam", "adamw", "rmsprop" or "adagrad".
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::RmsProp => "rmsprop",
            OptimizerKind::Adagrad => "adagrad",
        }
    }

    /// The kind called `s` by [`OptimizerKind::name`]; None for any other name.
    pub fn from_name(s: &str) -> Option<OptimizerKind> {
        OptimizerKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Hyper-parameters of an optimiser. [`OptimConfig::new`] fills in
/// PyTorch's defaults; fields a rule does not use are ignored by it.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    /// Which rule.
    pub kind: OptimizerKind,
    /// Learning rate (a schedule may pass another one to each step).
    pub lr: f32,
    /// Momentum of SGD and RMSprop; 0 keeps no momentum buffer.
    pub momentum: f32,
    /// L2 penalty added to the gradient (sgd, adam, rmsprop, adagrad), or
    /// decoupled decay `p ← p·(1 − lr·wd)` (adamw).
    pub weight_decay: f32,
    /// Adam's first-moment decay β1.
    pub beta1: f32,
    /// Adam's second-moment decay β2.
    pub beta2: f32,
    /// Added to denominators (Adam, AdamW, RMSprop, Adagrad).
    pub eps: f32,
    /// RMSprop's smoothing constant.
    pub alpha: f32,
}

impl OptimConfig {
    /// PyTorch's defaults for `kind` at learning rate `lr`: momentum 0,
    /// β = (0.9, 0.999), α = 0.99, eps 1e-8 (1e-10 for Adagrad), weight decay
    /// 0 (0.01 for AdamW).
    pub fn new(kind: OptimizerKind, lr: f32) -> OptimConfig {
        OptimConfig {
            kind,
            lr,
            momentum: 0.0,
            weight_decay: if kind == OptimizerKind::AdamW {
                0.01
            } else {
                0.0
            },
            beta1: 0.9,
            beta2: 0.999,
            eps: if kind == OptimizerKind::Adagrad {
                1e-10
            } else {
                1e-8
            },
            alpha: 0.99,
        }
    }

    /// Checks every field (NaN fails every check), naming the first that is
    /// out of range: lr and weight decay finite and ≥ 0, momentum, β1, β2 and
    /// α in [0, 1), eps finite and > 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, want: &str, v: f32| {
            Err(Error::Config(format!("{field} must be {want}, got {v}")))
        };
        let unit = |v: f32| (0.0..1.0).contains(&v);
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("learning rate", "a finite number >= 0", self.lr);
        }
        if !unit(self.momentum) {
            return bad("momentum", "in [0, 1)", self.momentum);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight decay", "a finite number >= 0", self.weight_decay);
        }
        if !unit(self.beta1) {
            return bad("beta1", "in [0, 1)", self.beta1);
        }
        if !unit(self.beta2) {
            return bad("beta2", "in [0, 1)", self.beta2);
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", "a finite number > 0", self.eps);
        }
        if !unit(self.alpha) {
            return bad("alpha", "in [0, 1)", self.alpha);
        }
        Ok(())
    }
}

/// The f64 that Python holds for a hyper-parameter given as `x`: the
/// shortest decimal that rounds to `x` (what the user wrote), read as f64.
/// PyTorch computes bias corrections and step sizes from these Python
/// floats, and `1 - 0.9` differs from `1 - f64::from(0.9f32)` in the
/// seventh digit. Formats on the stack, so it does not allocate.
fn py_float(x: f32) -> f64 {
    use std::fmt::Write;
    struct Buf {
        b: [u8; 48],
        n: usize,
    }
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.n + s.len();
            let dst = self.b.get_mut(self.n..end).ok_or(std::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.n = end;
            Ok(())
        }
    }
    if !x.is_finite() {
        return f64::from(x);
    }
    let mut buf = Buf { b: [0; 48], n: 0 };
    // `{:e}` prints the shortest round-tripping digits, at most ~15 bytes.
    if write!(buf, "{x:e}").is_err() {
        return f64::from(x);
    }
    std::str::from_utf8(&buf.b[..buf.n])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::from(x))
}
