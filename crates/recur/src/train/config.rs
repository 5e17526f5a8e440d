//! The settings of a training run that are not the model's or the data's.

use serde::{Deserialize, Serialize};

use crate::quant::Precision;

use crate::error::{Error, Result};
use crate::optim::{LrSchedule, OptimConfig, OptimizerKind};

/// Which learning-rate schedule; see [`LrSchedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Zaremba's: × `lr_decay` per epoch from `decay_start` on.
    Step,
    /// Cosine annealing to `min_lr` over the run.
    Cosine,
    /// × `lr_decay` after every evaluation that does not improve the best
    /// validation score, down to `min_lr` (PyTorch's `ReduceLROnPlateau`
    /// with patience 0; Mikolov's RNNLM halves its rate so).
    Plateau,
}

impl ScheduleKind {
    /// Every kind, by its name.
    pub const ALL: [(&'static str, ScheduleKind); 4] = [
        ("constant", ScheduleKind::Constant),
        ("step", ScheduleKind::Step),
        ("cosine", ScheduleKind::Cosine),
        ("plateau", ScheduleKind::Plateau),
    ];
    /// The kind called `s`: constant, step, cosine or plateau.
    pub fn from_name(s: &str) -> Option<ScheduleKind> {
        ScheduleKind::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, k)| *k)
    }
}

/// What a run does when a batch's loss or gradient diverges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDivergence {
    /// Stop with [`Error::Diverged`]; the last checkpoint stays as it was.
    #[default]
    Stop,
    /// Skip the batch (no update) and halve the learning rate; stop only
    /// after [`MAX_SKIPS`] skips in a row.
    Skip,
}

/// Skips in a row after which a run set to [`OnDivergence::Skip`] stops.
pub const MAX_SKIPS: u32 = 10;

impl OnDivergence {
    /// From `stop` or `skip`.
    pub fn from_name(s: &str) -> Option<OnDivergence> {
        match s {
            "stop" => Some(OnDivergence::Stop),
            "skip" => Some(OnDivergence::Skip),
            _ => None,
        }
    }
}

/// The optimiser, schedule, clipping and seed of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    pub lr: f32,
    /// Momentum (sgd, rmsprop).
    pub momentum: f32,
    /// Weight decay (decoupled for adamw, L2 otherwise).
    pub weight_decay: f32,
    /// The learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Step schedule: factor applied after each epoch from `decay_start` on;
    /// plateau schedule: factor applied after each evaluation without
    /// improvement.
    pub lr_decay: f32,
    /// Step schedule: first epoch (0-based) with a decayed rate.
    pub decay_start: usize,
    /// Cosine schedule: the final rate; plateau schedule: the lowest.
    pub min_lr: f32,
    /// Cosine schedule: steps over which the rate falls (the run's length).
    pub total_steps: Option<u64>,
    /// Clip the gradient's global L2 norm to this (0: off).
    pub clip_norm: f32,
    /// Clip every gradient element to ±this (0: off), after the norm.
    pub clip_value: f32,
    /// Seed of dropout (and, by convention, of the initial weights).
    pub seed: u64,
    /// Early stopping: end the run after this many evaluations without a
    /// better validation score (0: never).
    #[serde(default)]
    pub patience: u32,
    /// What to do with a batch whose loss or gradient diverges.
    #[serde(default)]
    pub on_divergence: OnDivergence,
    /// The weight products' format: f32, or bf16 (products in bf16, f32
    /// master weights, gradients and optimiser state).
    #[serde(default)]
    pub precision: Precision,
}

impl TrainConfig {
    /// `optimizer` at `lr` with PyTorch's defaults for it, a constant rate,
    /// no clipping, seed 1.
    pub fn new(optimizer: OptimizerKind, lr: f32) -> TrainConfig {
        let o = OptimConfig::new(optimizer, lr);
        TrainConfig {
            optimizer,
            lr,
            momentum: o.momentum,
            weight_decay: o.weight_decay,
            schedule: ScheduleKind::Constant,
            lr_decay: 0.5,
            decay_start: 4,
            min_lr: 0.0,
            total_steps: None,
            patience: 0,
            on_divergence: OnDivergence::Stop,
            precision: Precision::F32,
            clip_norm: 0.0,
            clip_value: 0.0,
            seed: 1,
        }
    }

    pub(crate) fn optim_config(&self) -> Result<OptimConfig> {
        let mut c = OptimConfig::new(self.optimizer, self.lr);
        c.momentum = self.momentum;
        c.weight_decay = self.weight_decay;
        c.validate()?;
        Ok(c)
    }

    pub(crate) fn schedule(&self) -> Result<LrSchedule> {
        self.check_decay()?;
        match self.schedule {
            ScheduleKind::Constant => Ok(LrSchedule::Constant),
            ScheduleKind::Step => Ok(LrSchedule::Step {
                decay: self.lr_decay,
                start_epoch: self.decay_start,
            }),
            ScheduleKind::Plateau => Ok(LrSchedule::Plateau {
                decay: self.lr_decay,
                min_lr: self.min_lr,
            }),
            ScheduleKind::Cosine => match self.total_steps {
                Some(total_steps) => Ok(LrSchedule::Cosine {
                    total_steps,
                    min_lr: self.min_lr,
                }),
                None => Err(Error::Config(
                    "the cosine schedule needs the run's length: give --steps or --epochs".into(),
                )),
            },
        }
    }

    /// Checks every setting but the cosine schedule's horizon (which may
    /// only be known once the data is), naming the first that is out of
    /// range.
    pub fn check(&self) -> Result<()> {
        self.check_decay()?;
        for (name, v) in [
            ("clip norm", self.clip_norm),
            ("clip value", self.clip_value),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be a number >= 0 (0 turns it off), got {v}"
                )));
            }
        }
        self.optim_config()?;
        Ok(())
    }

    /// The step and plateau schedules' factor: > 0 (and, for the plateau,
    /// at most 1), and the plateau's floor not negative.
    fn check_decay(&self) -> Result<()> {
        let d = self.lr_decay;
        match self.schedule {
            ScheduleKind::Step if !(d.is_finite() && d > 0.0) => Err(Error::Config(format!(
                "lr decay must be a number > 0, got {d}"
            ))),
            ScheduleKind::Plateau if !(d > 0.0 && d <= 1.0) => Err(Error::Config(format!(
                "the plateau schedule's lr decay must be in (0, 1], got {d}"
            ))),
            ScheduleKind::Plateau if !(self.min_lr.is_finite() && self.min_lr >= 0.0) => Err(
                Error::Config(format!("min lr must be a number >= 0, got {}", self.min_lr)),
            ),
            _ => Ok(()),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.check()?;
        self.schedule()?;
        Ok(())
    }
}
