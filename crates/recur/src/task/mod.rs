//! Long-memory benchmark tasks: binary addition, the adding problem and the
//! copy task. Their configs and runs are here, the nets that learn them (as
//! [`crate::train::Model`]s, with the loss and test metrics) in `net.rs`, the
//! batch generators in [`crate::data::tasks`]; the [`crate::train::Trainer`]
//! trains them.
//!
//! - **binary-addition**: two input bits per step, least significant first;
//!   the target is the sum bit, `delay` steps later. Train on numbers of at
//!   most `train_bits` bits, test on `test_bits`: one set of shared weights
//!   must carry for lengths it never saw. Metric: the fraction of test sums
//!   that are exactly right.
//! - **adding** (Hochreiter & Schmidhuber 1997; Le et al. 2015): T steps of
//!   (value in [0, 1], marker); one marker in each half; the target at the
//!   last step is the sum of the two marked values. Predicting 1 always
//!   gives MSE 1/6 ≈ 0.167; solved means test MSE < 0.01.
//! - **copy** (Arjovsky et al. 2016): 10 symbols from 8, T − 1 blanks, a
//!   delimiter, 10 blanks; the net must then output the 10 symbols. Loss
//!   over every step; metric: accuracy per recalled symbol.
//! - **frequency** (Neil et al. 2016): a sine of random phase and period P
//!   (5–6 ms for half the sequences, else log-uniform over the rest of
//!   1–100 ms), sampled at T random times within 15 ms. Each step gives the
//!   value and the time; the net says at the last step whether P is in
//!   5–6 ms. Metric: accuracy; solved means accuracy ≥ 0.9.
//!
//! Fresh training batches are drawn every step from a ChaCha8 stream seeded
//! with `seed`; the test set comes from a separate stream, so runs with the
//! same settings give the same numbers.

mod net;

use serde::{Deserialize, Serialize};

pub use crate::data::tasks::{TaskBatch, TaskData};
pub use net::TaskNet;

/// The `format` metadata of a task net's checkpoint.
pub const TASK_FORMAT: &str = "recur-task";

use crate::data::tasks::{COPY_LEN, COPY_SYMBOLS};
use crate::error::{Error, Result};
use crate::init::RecurrentInit;
use crate::layer::rnn::Leak;
use crate::model::jordan::OutputKind;
use crate::optim::OptimizerKind;
use crate::train::{Model, TrainConfig, Trainer};

/// The name of `k` in a (name, value) table.
fn name_of<K: PartialEq>(all: &[(&'static str, K)], k: K) -> &'static str {
    all.iter().find(|(_, v)| *v == k).map_or("", |(n, _)| n)
}

/// The value called `s` in a (name, value) table.
fn named<K: Copy>(all: &[(&'static str, K)], s: &str) -> Option<K> {
    all.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
}

/// Which task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Binary addition with an optional output delay.
    BinaryAddition,
    /// The adding problem.
    Adding,
    /// The copy task.
    Copy,
    /// Frequency discrimination of irregularly sampled sines.
    Frequency,
}

impl TaskKind {
    /// Every task, by its command-line name.
    pub const ALL: [(&'static str, TaskKind); 4] = [
        ("binary-addition", TaskKind::BinaryAddition),
        ("adding", TaskKind::Adding),
        ("copy", TaskKind::Copy),
        ("frequency", TaskKind::Frequency),
    ];
    /// The command-line name.
    pub fn name(self) -> &'static str {
        name_of(&TaskKind::ALL, self)
    }
    /// The task called `s`.
    pub fn from_name(s: &str) -> Option<TaskKind> {
        named(&TaskKind::ALL, s)
    }
}

/// The recurrent net that learns the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskCell {
    /// Elman net, tanh units.
    Tanh,
    /// Elman net, relu units.
    Relu,
    /// Elman net, relu units, identity-initialised W_hh (Le et al. 2015).
    Irnn,
    /// Jordan net: tanh units fed the previous output instead of h_{t−1}.
    Jordan,
    /// LSTM.
    Lstm,
    /// GRU (PyTorch's reset-after form).
    Gru,
    /// Phased LSTM (Neil et al. 2016): an LSTM with a time gate driven by
    /// the samples' time stamps.
    Phased,
}

impl TaskCell {
    /// Every cell, by its command-line name.
    pub const ALL: [(&'static str, TaskCell); 7] = [
        ("tanh", TaskCell::Tanh),
        ("relu", TaskCell::Relu),
        ("irnn", TaskCell::Irnn),
        ("jordan", TaskCell::Jordan),
        ("lstm", TaskCell::Lstm),
        ("gru", TaskCell::Gru),
        ("phased", TaskCell::Phased),
    ];
    /// The command-line name.
    pub fn name(self) -> &'static str {
        name_of(&TaskCell::ALL, self)
    }
    /// The cell called `s`.
    pub fn from_name(s: &str) -> Option<TaskCell> {
        named(&TaskCell::ALL, s)
    }
    fn gated(self) -> bool {
        matches!(self, TaskCell::Lstm | TaskCell::Gru | TaskCell::Phased)
    }
}

/// Everything that defines a task run. [`TaskConfig::new`] gives each task
/// the usual settings of the papers that introduced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// The task.
    pub task: TaskKind,
    /// The net.
    pub cell: TaskCell,
    /// H.
    pub hidden: usize,
    /// T: sequence length for adding, blank steps for copy (binary addition
    /// takes its length from the bit counts).
    pub length: usize,
    /// Training steps (batches).
    pub train_steps: usize,
    /// B.
    pub batch: usize,
    /// Seeds initialisation, training data, test data.
    pub seed: u64,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Its learning rate.
    pub lr: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    pub clip_norm: f32,
    /// Clip every gradient element to ±this (0: no clipping).
    pub clip_value: f32,
    /// How recurrent matrices start.
    pub init: RecurrentInit,
    /// LSTM forget-gate bias at the start.
    pub forget_bias: f64,
    /// Leaky units (Elman and Jordan nets).
    pub leak: Leak,
    /// Skip connection in time from h_{t−d} (Elman and Jordan nets; 0: none).
    pub skip: usize,
    /// Jordan net: feed the target back in training instead of the output.
    pub teacher_forcing: bool,
    /// Binary addition: the target is the sum bit this many steps later.
    pub delay: usize,
    /// Binary addition: training numbers have at most this many bits.
    pub train_bits: usize,
    /// Binary addition: test numbers have this many bits.
    pub test_bits: usize,
    /// Test sequences (rounded up to whole batches).
    pub test_size: usize,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Weight of the gradient-decay regulariser of Pascanu et al. 2013
    /// (Elman nets without leak or skip; 0: none). See
    /// [`crate::Rnn::decay_penalty`].
    #[serde(default)]
    pub gradient_regulariser: f64,
    /// Restarts so far: each draws a fresh initialisation and training
    /// stream from the seed, while the test and check sets stay the same.
    #[serde(default)]
    pub attempt: u64,
}

impl TaskConfig {
    /// The seed of the initialisation and training stream of this attempt.
    pub fn attempt_seed(&self) -> u64 {
        if self.attempt == 0 {
            self.seed
        } else {
            self.seed ^ self.attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }
    }
}

impl TaskConfig {
    /// The defaults for `task` learned by `cell`.
    pub fn new(task: TaskKind, cell: TaskCell) -> TaskConfig {
        let (hidden, length, steps, batch, lr, test_size) = match task {
            TaskKind::BinaryAddition => (16, 0, 2000, 32, 1e-2, 1000),
            TaskKind::Adding => (128, 100, 4000, 50, 1e-3, 1000),
            TaskKind::Copy => (128, 50, 4000, 50, 1e-3, 500),
            TaskKind::Frequency => (64, 100, 2000, 32, 1e-3, 1000),
        };
        TaskConfig {
            task,
            cell,
            hidden,
            length,
            train_steps: steps,
            batch,
            seed: 1,
            optimizer: OptimizerKind::Adam,
            lr,
            clip_norm: 1.0,
            clip_value: 0.0,
            init: if cell == TaskCell::Irnn {
                RecurrentInit::Identity(1.0)
            } else {
                RecurrentInit::Uniform
            },
            forget_bias: 1.0,
            leak: Leak::None,
            skip: 0,
            teacher_forcing: false,
            delay: 0,
            train_bits: 8,
            test_bits: 64,
            test_size,
            eval_every: (steps / 20).max(1),
            gradient_regulariser: 0.0,
            attempt: 0,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.hidden == 0 || self.batch == 0 || self.test_size == 0 {
            return bad("hidden size, batch and test size must be at least 1".into());
        }
        if self.task != TaskKind::BinaryAddition && self.length < 2 {
            return bad(format!("--length must be at least 2 (got {})", self.length));
        }
        if self.task == TaskKind::BinaryAddition
            && !(1..=120).contains(&self.train_bits) | !(1..=120).contains(&self.test_bits)
        {
            return bad(format!(
                "bit counts must be between 1 and 120 (got train {} and test {})",
                self.train_bits, self.test_bits
            ));
        }
        if self.cell.gated() && (self.leak != Leak::None || self.skip > 0 || self.teacher_forcing) {
            return bad(format!(
                "leaky units, skip connections and teacher forcing apply to the tanh, relu, irnn and jordan nets, not {}",
                self.cell.name()
            ));
        }
        let r = self.gradient_regulariser;
        if !(r.is_finite() && r >= 0.0) {
            return bad(format!(
                "the gradient-decay regulariser's weight must be 0 or more (got {r})"
            ));
        }
        if r > 0.0
            && (!matches!(self.cell, TaskCell::Tanh | TaskCell::Relu | TaskCell::Irnn)
                || self.leak != Leak::None
                || self.skip > 0)
        {
            return bad(format!(
                "the gradient-decay regulariser is for Elman nets (tanh, relu, irnn) without leak or skip connection, not {}",
                self.cell.name()
            ));
        }
        if self.teacher_forcing && self.cell != TaskCell::Jordan {
            return bad("teacher forcing needs output feedback: use --cell jordan".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive (got {})", self.lr));
        }
        Ok(())
    }

    /// I: input features per step.
    pub(crate) fn inputs(&self) -> usize {
        match self.task {
            TaskKind::BinaryAddition | TaskKind::Adding | TaskKind::Frequency => 2,
            TaskKind::Copy => COPY_SYMBOLS + 2,
        }
    }

    /// O: outputs per step.
    pub(crate) fn outputs(&self) -> usize {
        match self.task {
            TaskKind::BinaryAddition | TaskKind::Adding | TaskKind::Frequency => 1,
            TaskKind::Copy => COPY_SYMBOLS + 1,
        }
    }

    pub(crate) fn output_kind(&self) -> OutputKind {
        match self.task {
            TaskKind::BinaryAddition | TaskKind::Frequency => OutputKind::Sigmoid,
            TaskKind::Adding => OutputKind::Linear,
            TaskKind::Copy => OutputKind::Softmax,
        }
    }

    /// T of a sequence; `test` picks the test length for binary addition.
    pub(crate) fn steps_per_sequence(&self, test: bool) -> usize {
        match self.task {
            TaskKind::BinaryAddition => {
                (if test {
                    self.test_bits
                } else {
                    self.train_bits
                }) + 1
                    + self.delay
            }
            TaskKind::Adding | TaskKind::Frequency => self.length,
            TaskKind::Copy => self.length + 2 * COPY_LEN,
        }
    }
}

/// Test-set results.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskMetrics {
    /// Training steps taken when measured.
    pub step: usize,
    /// The training loss: in a run, the mean since the previous evaluation;
    /// from [`TaskRun::evaluate`], the last batch's.
    pub train_loss: f64,
    /// The task's loss on the test set.
    pub test_loss: f64,
    /// Binary addition: fraction of exactly right sums; copy: fraction of
    /// right recalled symbols.
    pub test_accuracy: Option<f64>,
    /// Adding: mean squared error at the last step.
    pub test_mse: Option<f64>,
    /// Adding: the MSE of always predicting 1. Copy: the loss of a net that
    /// outputs blanks and then guesses uniformly.
    pub baseline: Option<f64>,
    /// Whether the task counts as solved: adding MSE < 0.01, binary
    /// addition accuracy 1, copy accuracy ≥ 0.99, frequency accuracy ≥ 0.9.
    pub solved: bool,
}

/// dL/dh_t and step-Jacobian norms over time, from the last training step.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientFlow {
    /// Training steps taken.
    pub step: usize,
    /// The loss of that step.
    pub loss: f64,
    /// `[T]` mean over the batch of ‖dL/dh_t‖.
    pub state_grad_norm: Vec<f64>,
    /// `[T]` σ_max(∂s_t/∂s_{t−1}) for the first sequence of the batch.
    pub jacobian_norm: Vec<f64>,
}

/// A task being learned: its net and data in a [`Trainer`].
pub struct TaskRun {
    /// The trainer; its model is the net.
    pub trainer: Trainer<TaskNet, TaskData>,
}

impl TaskRun {
    /// Builds the net, its optimiser and the test set.
    pub fn new(cfg: TaskConfig) -> Result<TaskRun> {
        let net = TaskNet::new(cfg.clone())?;
        let mut tc = TrainConfig::new(cfg.optimizer, cfg.lr);
        tc.clip_norm = cfg.clip_norm;
        tc.clip_value = cfg.clip_value;
        tc.seed = cfg.seed;
        let data = TaskData::new(&cfg)?;
        Ok(TaskRun {
            trainer: Trainer::new(net, data, tc)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TaskConfig {
        self.trainer.model.config()
    }

    /// Trainable parameters.
    pub fn param_count(&self) -> usize {
        self.trainer.model.store().len()
    }

    /// Training steps taken.
    pub fn steps_done(&self) -> usize {
        self.trainer.progress().step as usize
    }

    /// Makes step 1 and every `every`-th training step measure their
    /// gradient flow for [`TaskRun::gradient_flow`].
    pub fn record_gradients(&mut self, every: u64) -> Result<()> {
        self.trainer.model.record_gradients(every)
    }

    /// One step on a fresh batch: forward, loss, BPTT, clipping, update.
    /// Returns the loss.
    pub fn train_step(&mut self) -> Result<f64> {
        Ok(self.trainer.train_step()?.loss)
    }

    /// Measures the test set (free running: no teacher forcing).
    pub fn evaluate(&mut self) -> Result<TaskMetrics> {
        let e = self.trainer.evaluate()?.expect("a task has a test set");
        Ok(TaskMetrics::new(
            self.steps_done(),
            self.trainer.model.last_loss(),
            e.loss,
            &e.metrics,
        ))
    }

    /// Measures the check set: whether the net has solved the task, judged
    /// on data the test set does not share.
    pub fn check(&mut self) -> Result<TaskMetrics> {
        let t = &mut self.trainer;
        let e = t.model.evaluate(t.data.check())?;
        Ok(TaskMetrics::new(
            self.steps_done(),
            self.trainer.model.last_loss(),
            e.loss,
            &e.metrics,
        ))
    }

    /// The gradient flow of the last training step; see [`TaskNet::gradient_flow`].
    pub fn gradient_flow(&self) -> Result<GradientFlow> {
        self.trainer
            .model
            .gradient_flow(self.trainer.progress().step)
    }
}

impl TaskMetrics {
    /// The metrics of an evaluation ([`TaskNet`]'s `evaluate`, or a
    /// `metrics.jsonl` line's `val_` measures without their prefix).
    pub fn new(
        step: usize,
        train_loss: f64,
        test_loss: f64,
        m: &std::collections::BTreeMap<String, f64>,
    ) -> TaskMetrics {
        let get = |k: &str| m.get(k).copied();
        TaskMetrics {
            step,
            train_loss,
            test_loss,
            test_accuracy: get("accuracy"),
            test_mse: get("mse"),
            baseline: get("baseline_mse").or(get("baseline_loss")),
            solved: get("solved") == Some(1.0),
        }
    }
}
