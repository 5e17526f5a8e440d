//! Learning-rate schedules.

use super::py_float;

/// How the learning rate changes over a run. Rates are computed in f64 from
/// the decimal values of the settings, as Python would, then rounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Always the base rate.
    Constant,
    /// Zaremba et al. (2014): the base rate for the first `start_epoch`
    /// epochs, then one more factor of `decay` per epoch. Epoch `e` (0-based)
    /// uses `lr · decay^max(0, e + 1 − start_epoch)`; so with
    /// `start_epoch` = 4 and `decay` = 0.5, epochs 0–3 use lr, epoch 4
    /// lr/2, epoch 5 lr/4; with `start_epoch` 0, epoch 0 is decayed once.
    Step {
        /// Factor per epoch.
        decay: f32,
        /// 0-based index of the first epoch whose rate is decayed.
        start_epoch: usize,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_steps`
    /// updates, `CosineAnnealingLR`'s closed form with `T_max` =
    /// `total_steps`: `min_lr + (lr − min_lr)·(1 + cos(π·step/total_steps))/2`
    /// for 0-based `step` < `total_steps`, then `min_lr` from `total_steps`
    /// on (and always, if `total_steps` is 0).
    Cosine {
        /// Length of the descent, in updates.
        total_steps: u64,
        /// The rate at and after `total_steps`.
        min_lr: f32,
    },
    /// The base rate, × `decay` after every evaluation that does not
    /// improve the best validation score, never below `min_lr`. The factor
    /// so far lives in the run's progress (it depends on the evaluations),
    /// and [`LrSchedule::lr`] gives the base rate.
    Plateau {
        /// Factor per evaluation without improvement.
        decay: f32,
        /// The lowest rate.
        min_lr: f32,
    },
}

impl LrSchedule {
    /// The rate for update number `step` (0-based: updates already taken),
    /// which falls in epoch `epoch` (0-based), given the base rate `base_lr`.
    pub fn lr(&self, base_lr: f32, step: u64, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Constant | LrSchedule::Plateau { .. } => base_lr,
            LrSchedule::Step { decay, start_epoch } => {
                let k = (epoch + 1).saturating_sub(start_epoch);
                if k == 0 {
                    return base_lr;
                }
                let k = i32::try_from(k).unwrap_or(i32::MAX);
                (py_float(base_lr) * py_float(decay).powi(k)) as f32
            }
            LrSchedule::Cosine {
                total_steps,
                min_lr,
            } => {
                if step >= total_steps {
                    return min_lr;
                }
                let (lr, min) = (py_float(base_lr), py_float(min_lr));
                let cos = (std::f64::consts::PI * step as f64 / total_steps as f64).cos();
                (min + (lr - min) * (1.0 + cos) / 2.0) as f32
            }
        }
    }
}
