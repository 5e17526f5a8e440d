//! One trainer for every model: the language model, the long-memory task
//! nets and the models to come.
//!
//! A model implements [`Model`] (forward plus backward on a batch, returning
//! the loss; evaluation; its config as metadata) and its data implements
//! [`Data`] (training batches by position, held-out batches, the vocabulary
//! as metadata). [`Trainer`] owns everything else, as burn's learner does:
//!
//! - budgets in steps, epochs or minutes ([`Budget`]);
//! - the update: gradient clipping, then the learning-rate schedule and
//!   the optimiser, all over the model's one [`ParamStore`];
//! - evaluation every N steps, with `metrics.jsonl`, the loss plot
//!   `loss.svg`, and the best (`model.safetensors`) and last
//!   (`last.safetensors` + `train_state.safetensors`) checkpoints;
//! - resume: [`Trainer::resume`] continues bit for bit, so the numbers
//!   match an uninterrupted run with the same thread count;
//! - progress through an [`Observer`] (the CLI's progress bar).
//!
//! # The order of an update
//! 1. the gradients are zeroed, forward and backward run on the batch;
//! 2. a loss that is not finite stops the run with [`Error::Diverged`]
//!    before any weight changes, so the last checkpoint stays good;
//! 3. the global L2 norm is measured (and reported); one that is not finite
//!    stops the run the same way; with `clip_norm` > 0, the gradient is
//!    scaled down to it;
//! 4. with `clip_value` > 0, every element is then clamped to ±clip_value;
//! 5. the optimiser steps at the schedule's rate for this step and epoch.
//!
//! # The best model
//! Each evaluation scores the model on the held-out batches: by the metric
//! [`Model::selection`] names (higher is better, e.g. accuracy) or else by
//! the loss (lower is better). `model.safetensors` is the best-scoring
//! model so far; with [`TrainConfig::patience`] > 0 the run ends once that
//! many evaluations in a row have not beaten it.

mod config;
mod state;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use config::{OnDivergence, ScheduleKind, TrainConfig, MAX_SKIPS};

use crate::checkpoint::{encode_store, write_atomic};
use crate::error::{Error, Result};
use crate::optim::{clip_grad_norm, clip_grad_value, LrSchedule, Optimizer};
use crate::params::ParamStore;
use crate::plot::{line_plot, Series};
use crate::quant::Precision;

/// The `format` metadata of a training-state file.
pub const STATE_FORMAT: &str = "recur-train-state";

/// Metadata that travels with a checkpoint: (key, value), values JSON.
pub type Metadata = Vec<(String, String)>;

/// What a held-out evaluation measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// The mean loss the model trains on.
    pub loss: f64,
    /// Further measures by name (`perplexity`, `accuracy`, …).
    pub metrics: BTreeMap<String, f64>,
}

impl Evaluation {
    /// A language model's: the mean cross-entropy in nats, with perplexity
    /// and bits per token.
    pub fn language_model(loss: f64) -> Evaluation {
        Evaluation {
            loss,
            metrics: [
                ("perplexity".to_string(), crate::metrics::perplexity(loss)),
                (
                    "bits_per_token".to_string(),
                    crate::metrics::bits_per_token(loss),
                ),
            ]
            .into(),
        }
    }
}

/// A model the [`Trainer`] can train.
pub trait Model {
    /// One batch of training or evaluation data.
    type Batch: Default;

    /// Parameters and gradients.
    fn store(&self) -> &ParamStore<f32>;
    /// Parameters and gradients, mutable.
    fn store_mut(&mut self) -> &mut ParamStore<f32>;

    /// Zeroes the gradients, runs forward and backward on `batch` and
    /// returns the mean loss. `rng` drives dropout (models without dropout
    /// leave it alone).
    fn forward_backward(&mut self, batch: &Self::Batch, rng: &mut dyn RngCore) -> Result<f64>;

    /// Measures the model on held-out `batches` (given in order), without
    /// dropout and without touching the gradients.
    fn evaluate(&mut self, batches: &[Self::Batch]) -> Result<Evaluation>;

    /// Called before the first batch of every epoch (truncated BPTT zeroes
    /// the carried state here).
    fn start_epoch(&mut self) {}

    /// Runs training's weight products in `precision` (the run's
    /// [`TrainConfig::precision`]); models without a bf16 path train in
    /// f32 only.
    fn set_training_precision(&mut self, precision: Precision) -> Result<()> {
        match precision {
            Precision::F32 => Ok(()),
            p => Err(Error::Config(format!(
                "this model trains in f32 only, not {p} (bf16 training is for the recurrent language, sequence and sequence-to-sequence models)"
            ))),
        }
    }

    /// State carried from one training batch into the next, by name, saved
    /// with the training state so that a resumed run continues it.
    fn carried_state(&self) -> Vec<(&'static str, &[f32])> {
        Vec::new()
    }

    /// Restores what [`Model::carried_state`] gave (names it does not know
    /// are errors).
    fn set_carried_state(&mut self, state: &[(String, Vec<f32>)]) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::Config(format!(
                "this model carries no state, but the training state has '{name}'"
            ))),
        }
    }

    /// A loss above this is no longer a run that learns: training counts it
    /// as diverged (`None`: only non-finite losses do). The language model
    /// and classifiers use 10 times the loss of uniform prediction.
    fn loss_bound(&self) -> Option<f64> {
        None
    }

    /// The held-out metric that picks the best model, higher being better
    /// (`None`: the lowest loss).
    fn selection(&self) -> Option<&'static str> {
        None
    }

    /// The config (and format) as checkpoint metadata.
    fn metadata(&self) -> Metadata;
}

/// The data a [`Trainer`] feeds a model.
pub trait Data {
    /// The batch type, the model's.
    type Batch: Default;

    /// Batches per epoch; `None` when every batch is freshly drawn (the
    /// run is one endless epoch).
    fn steps_per_epoch(&self) -> Option<usize>;

    /// Fills `batch` with training batch `step` (0-based) of epoch `epoch`.
    /// Called once per step, in order; reusing the buffers of `batch`
    /// allocates nothing once it has its size.
    fn fill(&mut self, epoch: usize, step: usize, batch: &mut Self::Batch) -> Result<()>;

    /// Tokens (or steps of all sequences) in one training batch, for the
    /// throughput and the `tokens` count.
    fn tokens_per_step(&self) -> usize;

    /// The held-out batches, in order (empty without validation data).
    fn validation(&self) -> &[Self::Batch];

    /// A fingerprint of the training data: resuming on other data is an error.
    fn fingerprint(&self) -> u64;

    /// The random stream batches are drawn from, if any, so that its
    /// position is saved and restored with the training state.
    fn rng(&mut self) -> Option<&mut ChaCha8Rng> {
        None
    }

    /// What travels with a checkpoint besides the model's config (the
    /// vocabulary).
    fn metadata(&self) -> Metadata {
        Vec::new()
    }
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// This many epochs (counted from the start of the run, not of a resume).
    Epochs(usize),
    /// This many updates in all.
    Steps(u64),
    /// This many minutes of this process.
    Minutes(f64),
}

impl Budget {
    /// The run's length in updates, when it is known in advance.
    pub fn total_steps(self, steps_per_epoch: Option<usize>) -> Option<u64> {
        match self {
            Budget::Steps(s) => Some(s),
            Budget::Epochs(e) => steps_per_epoch.map(|s| (e * s) as u64),
            Budget::Minutes(_) => None,
        }
    }
}

/// What one training step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Mean loss of the batch, before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// The learning rate used.
    pub lr: f32,
}

/// Where a run stands; saved with every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Updates made.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already used.
    pub step_in_epoch: usize,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Best validation loss so far.
    pub best_val: Option<f64>,
    /// The best model's validation score (its loss, or the model's
    /// selection metric).
    #[serde(default)]
    pub best_score: Option<f64>,
    /// Evaluations since the best score.
    #[serde(default)]
    pub since_best: u32,
    /// The factor on the learning rate left by skipped batches (1 when none).
    #[serde(default = "one")]
    pub lr_scale: f32,
    /// Batches skipped in a row (see [`OnDivergence::Skip`]).
    #[serde(default)]
    pub skips_in_a_row: u32,
    /// Batches skipped in all.
    #[serde(default)]
    pub skipped: u64,
    /// The plateau schedule's factor on the learning rate so far (1 for
    /// other schedules).
    #[serde(default = "one")]
    pub plateau_scale: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            step: 0,
            epoch: 0,
            step_in_epoch: 0,
            tokens_seen: 0,
            best_val: None,
            best_score: None,
            since_best: 0,
            lr_scale: 1.0,
            plateau_scale: 1.0,
            skips_in_a_row: 0,
            skipped: 0,
        }
    }
}

/// One line of `metrics.jsonl`: an evaluation and the training since the
/// last one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Updates made.
    pub step: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Mean training loss since the last evaluation.
    pub train_loss: f64,
    /// Held-out loss.
    pub val_loss: Option<f64>,
    /// Held-out measures, each as `val_NAME`.
    #[serde(flatten)]
    pub val: BTreeMap<String, f64>,
    /// The learning rate of the last update.
    pub lr: f32,
    /// Training throughput since the last evaluation.
    pub tokens_per_s: f64,
    /// Seconds since this process started training.
    pub elapsed_s: f64,
}

/// Watches a run: the CLI's progress bar and log lines. Every method does
/// nothing by default.
pub trait Observer<M> {
    /// After every update. An error stops the run.
    fn step(&mut self, _model: &M, _report: &StepReport, _progress: &Progress) -> Result<()> {
        Ok(())
    }
    /// After every evaluation (and its checkpoints).
    fn evaluated(&mut self, _line: &MetricsLine) {}
}

/// An observer that watches nothing.
pub struct Quiet;
impl<M> Observer<M> for Quiet {}

/// A training run in progress: the model, its data, the optimiser and
/// where the run stands.
pub struct Trainer<M: Model, D: Data<Batch = M::Batch>> {
    /// The model being trained.
    pub model: M,
    /// Its data.
    pub data: D,
    config: TrainConfig,
    opt: Optimizer,
    schedule: LrSchedule,
    /// Drives dropout.
    rng: ChaCha8Rng,
    /// The training batch, refilled every step.
    batch: M::Batch,
    progress: Progress,
    /// Every evaluation of the run, for the plot.
    history: Vec<MetricsLine>,
    /// Set from elsewhere (a signal handler) to stop at the next step.
    stop: Option<Arc<AtomicBool>>,
}

/// Refuses a store whose weights were converted for inference: an
/// optimiser would update the f32 weights and leave the converted copies
/// the forward pass reads behind. (Copies packed for training are
/// converted again after every update.)
pub(crate) fn check_trainable(store: &ParamStore<f32>) -> Result<()> {
    if store.trainable() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "this model's weights were converted to {} for inference; training needs f32 weights (or bf16 packed for training)",
        store.precision()
    )))
}

impl<M: Model, D: Data<Batch = M::Batch>> Trainer<M, D> {
    /// Starts a run of `model` on `data`.
    pub fn new(mut model: M, data: D, config: TrainConfig) -> Result<Trainer<M, D>> {
        config.validate()?;
        model.set_training_precision(config.precision)?;
        check_trainable(model.store())?;
        let opt = Optimizer::new(config.optim_config()?, &[model.store().len()])?;
        Ok(Trainer {
            schedule: config.schedule()?,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_d50f),
            model,
            data,
            opt,
            batch: M::Batch::default(),
            progress: Progress::default(),
            history: Vec::new(),
            stop: None,
            config,
        })
    }

    /// Stops [`Trainer::run`] after the step during which `flag` becomes
    /// true: it saves the state at that step (with an output folder) and
    /// returns [`Error::Interrupted`]; a resume continues bit for bit.
    pub fn stop_on(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where the run stands.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// One update on the next batch (see the module docs for its order).
    pub fn train_step(&mut self) -> Result<StepReport> {
        let p = &self.progress;
        if p.step_in_epoch == 0 {
            self.model.start_epoch();
        }
        self.data.fill(p.epoch, p.step_in_epoch, &mut self.batch)?;
        let loss = self.model.forward_backward(&self.batch, &mut self.rng)?;
        let bound = self.model.loss_bound().unwrap_or(f64::INFINITY);
        if !loss.is_finite() || loss > bound {
            return self.diverged(loss, f32::NAN, bound);
        }
        let c = &self.config;
        let store = self.model.store_mut();
        let grad_norm = clip_grad_norm(&mut [&mut store.grads], c.clip_norm);
        if !grad_norm.is_finite() {
            return self.diverged(loss, grad_norm, bound);
        }
        let c = &self.config;
        let store = self.model.store_mut();
        if c.clip_value > 0.0 {
            clip_grad_value(&mut [&mut store.grads], c.clip_value);
        }
        let mut lr = self
            .schedule
            .lr(c.lr, self.progress.step, self.progress.epoch);
        if let LrSchedule::Plateau { min_lr, .. } = self.schedule {
            lr = (lr * self.progress.plateau_scale).max(min_lr.min(lr));
        }
        lr *= self.progress.lr_scale;
        self.opt.step(&mut [&mut store.params], &[&store.grads], lr);
        store.repack();
        self.progress.skips_in_a_row = 0;
        self.advance();
        Ok(StepReport {
            loss,
            grad_norm,
            lr,
        })
    }

    /// The batch diverged: stop, or (with [`OnDivergence::Skip`]) skip it,
    /// halving the learning rate, until too many in a row.
    fn diverged(&mut self, loss: f64, grad_norm: f32, bound: f64) -> Result<StepReport> {
        let p = &mut self.progress;
        let stop = Error::Diverged {
            step: p.step + 1,
            loss,
            grad_norm,
            bound,
        };
        if self.config.on_divergence == OnDivergence::Stop || p.skips_in_a_row + 1 >= MAX_SKIPS {
            return Err(stop);
        }
        p.skips_in_a_row += 1;
        p.skipped += 1;
        p.lr_scale *= 0.5;
        self.model.store_mut().zero_grad();
        self.advance();
        Ok(StepReport {
            loss,
            grad_norm,
            lr: 0.0,
        })
    }

    /// Moves past the batch just used.
    fn advance(&mut self) {
        let p = &mut self.progress;
        p.step += 1;
        p.tokens_seen += self.data.tokens_per_step() as u64;
        p.step_in_epoch += 1;
        if self.data.steps_per_epoch() == Some(p.step_in_epoch) {
            p.step_in_epoch = 0;
            p.epoch += 1;
        }
    }

    /// Measures the model on the held-out batches (None without any).
    pub fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        let val = self.data.validation();
        if val.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.model.evaluate(val)?))
    }

    /// Trains until `budget` is spent, evaluating every `eval_every` steps
    /// (0: only at the end) and at the end. With `out`, each evaluation appends to
    /// `OUT/metrics.jsonl`, redraws `OUT/loss.svg` and writes the last
    /// checkpoint (and the best one when validation improved).
    pub fn run(
        &mut self,
        budget: Budget,
        eval_every: u64,
        out: Option<&Path>,
        obs: &mut dyn Observer<M>,
    ) -> Result<()> {
        let eval_every = if eval_every == 0 {
            u64::MAX
        } else {
            eval_every
        };
        let spe = self.data.steps_per_epoch().map(|s| s as u64);
        if let (Budget::Epochs(_), None) = (budget, spe) {
            return Err(Error::Config(
                "a budget in epochs needs data with epochs; give steps or minutes".into(),
            ));
        }
        if let Budget::Minutes(m) = budget {
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::Config(format!(
                    "a budget in minutes must be a number > 0, got {m}"
                )));
            }
        }
        let end_step = match budget {
            Budget::Epochs(e) => spe.map(|s| e as u64 * s),
            Budget::Steps(s) => Some(s),
            Budget::Minutes(_) => None,
        };
        let limit_s = match budget {
            Budget::Minutes(m) => Some(m * 60.0),
            _ => None,
        };
        let started = Instant::now();
        let finished = |p: &Progress| {
            end_step.is_some_and(|e| p.step >= e)
                || limit_s.is_some_and(|l| started.elapsed().as_secs_f64() >= l)
        };
        let (mut loss_sum, mut loss_n) = (0.0f64, 0u64);
        let mut window = (self.progress.tokens_seen, Instant::now());
        let patience = self.config.patience;
        let out_of_patience = |p: &Progress| patience > 0 && p.since_best >= patience;
        while !finished(&self.progress) && !out_of_patience(&self.progress) {
            let r = self.train_step()?;
            loss_sum += r.loss;
            loss_n += 1;
            obs.step(&self.model, &r, &self.progress)?;
            if self.progress.step.is_multiple_of(eval_every) || finished(&self.progress) {
                let tok_s = (self.progress.tokens_seen - window.0) as f64
                    / window.1.elapsed().as_secs_f64().max(1e-9);
                let line = self.eval_and_save(
                    loss_sum / loss_n as f64,
                    r.lr,
                    tok_s,
                    started.elapsed().as_secs_f64(),
                    out,
                )?;
                obs.evaluated(&line);
                (loss_sum, loss_n) = (0.0, 0);
                window = (self.progress.tokens_seen, Instant::now());
            }
            // After this step's evaluation, if it has one: a resume goes on
            // from the next step exactly as this run would have.
            if self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                if let Some(dir) = out {
                    self.save(dir)?;
                }
                return Err(Error::Interrupted {
                    step: self.progress.step,
                });
            }
        }
        Ok(())
    }

    /// Evaluates, logs and checkpoints; the line it logged.
    fn eval_and_save(
        &mut self,
        train_loss: f64,
        lr: f32,
        tokens_per_s: f64,
        elapsed_s: f64,
        out: Option<&Path>,
    ) -> Result<MetricsLine> {
        let e = self.evaluate()?;
        // Without validation the latest model is the best one known.
        let mut improved = true;
        if let Some(e) = &e {
            let p = &mut self.progress;
            // A run saved before scores were kept selected on the loss.
            if p.best_score.is_none() && self.model.selection().is_none() {
                p.best_score = p.best_val;
            }
            if p.best_val.is_none_or(|b| e.loss < b) {
                p.best_val = Some(e.loss);
            }
            let (score, better) = match self.model.selection() {
                Some(m) => {
                    let v = e.metrics.get(m).copied().ok_or_else(|| {
                        Error::Config(format!(
                            "the model selects on '{m}', which it did not report"
                        ))
                    })?;
                    (v, p.best_score.is_none_or(|b| v > b))
                }
                None => (e.loss, p.best_score.is_none_or(|b| e.loss < b)),
            };
            improved = better;
            if better {
                p.best_score = Some(score);
                p.since_best = 0;
            } else {
                p.since_best += 1;
                if let LrSchedule::Plateau { decay, .. } = self.schedule {
                    p.plateau_scale *= decay;
                }
            }
        }
        let p = &self.progress;
        let line = MetricsLine {
            step: p.step,
            epoch: p.epoch,
            tokens: p.tokens_seen,
            train_loss,
            val_loss: e.as_ref().map(|e| e.loss),
            val: e
                .map(|e| {
                    e.metrics
                        .into_iter()
                        .map(|(k, v)| (format!("val_{k}"), v))
                        .collect()
                })
                .unwrap_or_default(),
            lr,
            tokens_per_s,
            elapsed_s,
        };
        self.history.push(line.clone());
        if let Some(dir) = out {
            // The best model, then the checkpoint pair, then the log: a
            // failure (a full disk) leaves a pair that resumes to redo this
            // evaluation exactly, and no log line the pair has not reached.
            if improved {
                self.save_model(&dir.join("model.safetensors"))?;
            }
            self.save(dir)?;
            let path = dir.join("metrics.jsonl");
            let io = |e: std::io::Error| Error::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            let json = serde_json::to_string(&line).expect("metrics serialise");
            writeln!(f, "{json}").map_err(io)?;
            plot_losses(&dir.join("loss.svg"), &self.history)?;
        }
        Ok(line)
    }

    /// Writes the model with its metadata (and the data's) to `path`.
    pub fn save_model(&self, path: &Path) -> Result<()> {
        self.write_model(path, Vec::new())
    }

    /// Writes the model with its metadata, the data's and `extra`.
    fn write_model(&self, path: &Path, extra: Metadata) -> Result<()> {
        write_atomic(path, &self.encode_model(path, extra)?)
    }

    /// The bytes of the model file [`Trainer::write_model`] writes.
    fn encode_model(&self, path: &Path, extra: Metadata) -> Result<Vec<u8>> {
        let meta = self
            .model
            .metadata()
            .into_iter()
            .chain(self.data.metadata())
            .chain(extra)
            .collect();
        encode_store(path, self.model.store(), meta)
    }

    /// The evaluations of this run so far (read back from `metrics.jsonl`
    /// on resume).
    pub fn history(&self) -> &[MetricsLine] {
        &self.history
    }
}

/// Draws the training and validation losses against tokens seen.
fn plot_losses(path: &Path, m: &[MetricsLine]) -> Result<()> {
    let train: Vec<(f64, f64)> = m.iter().map(|m| (m.tokens as f64, m.train_loss)).collect();
    let val: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.tokens as f64, v)))
        .collect();
    line_plot(
        path,
        "recur: loss against tokens seen",
        "training tokens",
        "loss (nats per token)",
        &[
            Series {
                label: "train",
                points: train,
                color: (31, 119, 180),
            },
            Series {
                label: "validation",
                points: val,
                color: (214, 39, 40),
            },
        ],
    )
}
