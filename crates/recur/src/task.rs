//! Long-memory benchmark tasks: binary addition, the adding problem and the
//! copy task, each with its data generator, loss, metric and training loop.
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
//!
//! Fresh training batches are drawn every step from a ChaCha8 stream seeded
//! with `seed`; the test set comes from a separate stream, so runs with the
//! same settings give the same numbers.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::diagnose::{rnn_jacobian_norms, state_grad_norms};
use crate::error::{Error, Result};
use crate::init::{init_params, set_lstm_forget_bias, RecurrentInit};
use crate::layer::linear::Linear;
use crate::layer::loss::softmax_cross_entropy;
use crate::layer::loss::{bce_with_logits, mse};
use crate::layer::rnn::Leak;
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::model::jordan::{JordanNet, JordanWorkspace, OutputKind};
use crate::optim::OptimizerKind;
use crate::params::ParamStore;
use crate::train::{Data, Evaluation, Metadata, Model, TrainConfig, Trainer};

/// Symbols of the copy task are classes 1..=8; 0 is blank, 9 the delimiter.
const COPY_SYMBOLS: usize = 8;
/// How many symbols the copy task asks the net to remember.
const COPY_LEN: usize = 10;

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
}

impl TaskKind {
    /// Every task, by its command-line name.
    pub const ALL: [(&'static str, TaskKind); 3] = [
        ("binary-addition", TaskKind::BinaryAddition),
        ("adding", TaskKind::Adding),
        ("copy", TaskKind::Copy),
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
}

impl TaskCell {
    /// Every cell, by its command-line name.
    pub const ALL: [(&'static str, TaskCell); 6] = [
        ("tanh", TaskCell::Tanh),
        ("relu", TaskCell::Relu),
        ("irnn", TaskCell::Irnn),
        ("jordan", TaskCell::Jordan),
        ("lstm", TaskCell::Lstm),
        ("gru", TaskCell::Gru),
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
        matches!(self, TaskCell::Lstm | TaskCell::Gru)
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
    pub steps: usize,
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
}

impl TaskConfig {
    /// The defaults for `task` learned by `cell`.
    pub fn new(task: TaskKind, cell: TaskCell) -> TaskConfig {
        let (hidden, length, steps, batch, lr, test_size) = match task {
            TaskKind::BinaryAddition => (16, 0, 2000, 32, 1e-2, 1000),
            TaskKind::Adding => (128, 100, 4000, 50, 1e-3, 1000),
            TaskKind::Copy => (128, 50, 4000, 50, 1e-3, 500),
        };
        TaskConfig {
            task,
            cell,
            hidden,
            length,
            steps,
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
        }
    }

    fn validate(&self) -> Result<()> {
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
        if self.teacher_forcing && self.cell != TaskCell::Jordan {
            return bad("teacher forcing needs output feedback: use --cell jordan".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive (got {})", self.lr));
        }
        Ok(())
    }

    /// I: input features per step.
    fn inputs(&self) -> usize {
        match self.task {
            TaskKind::BinaryAddition | TaskKind::Adding => 2,
            TaskKind::Copy => COPY_SYMBOLS + 2,
        }
    }

    /// O: outputs per step.
    fn outputs(&self) -> usize {
        match self.task {
            TaskKind::BinaryAddition | TaskKind::Adding => 1,
            TaskKind::Copy => COPY_SYMBOLS + 1,
        }
    }

    fn output_kind(&self) -> OutputKind {
        match self.task {
            TaskKind::BinaryAddition => OutputKind::Sigmoid,
            TaskKind::Adding => OutputKind::Linear,
            TaskKind::Copy => OutputKind::Softmax,
        }
    }

    /// T of a sequence; `test` picks the test length for binary addition.
    fn steps_per_sequence(&self, test: bool) -> usize {
        match self.task {
            TaskKind::BinaryAddition => {
                (if test {
                    self.test_bits
                } else {
                    self.train_bits
                }) + 1
                    + self.delay
            }
            TaskKind::Adding => self.length,
            TaskKind::Copy => self.length + 2 * COPY_LEN,
        }
    }
}

/// One batch of a task, time-major.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// T, B.
    steps: usize,
    batch: usize,
    /// `[T, B, I]`
    x: Vec<f32>,
    /// `[T, B, O]` targets: bits, values, or one-hot classes.
    y: Vec<f32>,
    /// `[T·B]` target classes (copy).
    classes: Vec<u32>,
    /// `[T, B, O]` which target elements count.
    weight: Vec<f32>,
}

/// Draws a batch of `bn` sequences of `cfg`'s task.
fn draw_batch(cfg: &TaskConfig, rng: &mut ChaCha8Rng, bn: usize, test: bool) -> Batch {
    let mut bt = Batch::default();
    draw_batch_into(cfg, rng, bn, test, &mut bt);
    bt
}

/// Draws a batch into `bt`, reusing its buffers (one per training step).
fn draw_batch_into(cfg: &TaskConfig, rng: &mut ChaCha8Rng, bn: usize, test: bool, bt: &mut Batch) {
    let tn = cfg.steps_per_sequence(test);
    let (i, o) = (cfg.inputs(), cfg.outputs());
    (bt.steps, bt.batch) = (tn, bn);
    for (v, n) in [
        (&mut bt.x, tn * bn * i),
        (&mut bt.y, tn * bn * o),
        (&mut bt.weight, tn * bn * o),
    ] {
        v.clear();
        v.resize(n, 0.0);
    }
    bt.classes.clear();
    bt.classes.resize(tn * bn, 0);
    for b in 0..bn {
        match cfg.task {
            TaskKind::BinaryAddition => {
                let bits = if test { cfg.test_bits } else { cfg.train_bits };
                let draw = |rng: &mut ChaCha8Rng| -> u128 {
                    let v: u128 = rng.random();
                    if bits >= 128 {
                        v
                    } else {
                        v & ((1u128 << bits) - 1)
                    }
                };
                let (a, c) = (draw(rng), draw(rng));
                let sum = a + c;
                for t in 0..tn {
                    if t < bits {
                        bt.x[(t * bn + b) * 2] = ((a >> t) & 1) as f32;
                        bt.x[(t * bn + b) * 2 + 1] = ((c >> t) & 1) as f32;
                    }
                    if t >= cfg.delay {
                        bt.y[t * bn + b] = ((sum >> (t - cfg.delay)) & 1) as f32;
                        bt.weight[t * bn + b] = 1.0;
                    }
                }
            }
            TaskKind::Adding => {
                let half = tn / 2;
                let m1 = rng.random_range(0..half);
                let m2 = rng.random_range(half..tn);
                for t in 0..tn {
                    bt.x[(t * bn + b) * 2] = rng.random::<f32>();
                }
                bt.x[(m1 * bn + b) * 2 + 1] = 1.0;
                bt.x[(m2 * bn + b) * 2 + 1] = 1.0;
                let last = (tn - 1) * bn + b;
                bt.y[last] = bt.x[(m1 * bn + b) * 2] + bt.x[(m2 * bn + b) * 2];
                bt.weight[last] = 1.0;
            }
            TaskKind::Copy => {
                let delim = tn - COPY_LEN - 1;
                for t in 0..tn {
                    let input = if t < COPY_LEN {
                        rng.random_range(1..=COPY_SYMBOLS)
                    } else if t == delim {
                        COPY_SYMBOLS + 1
                    } else {
                        0
                    };
                    bt.x[(t * bn + b) * i + input] = 1.0;
                    if t < COPY_LEN {
                        let out = tn - COPY_LEN + t;
                        bt.classes[out * bn + b] = input as u32;
                    }
                }
                for t in 0..tn {
                    let r = t * bn + b;
                    bt.y[r * o + bt.classes[r] as usize] = 1.0;
                    bt.weight[r * o..][..o].fill(1.0);
                }
            }
        }
    }
}

/// The net, in one store: a one-layer [`Rnn`] run over the whole sequence
/// with a linear readout (Elman, LSTM and GRU nets), or a [`JordanNet`],
/// run step by step as it feeds back its output.
#[derive(Clone, Debug)]
struct Net {
    store: ParamStore<f32>,
    kind: NetKind,
}

#[derive(Clone, Debug)]
enum NetKind {
    Layer {
        rnn: Rnn,
        ws: RnnWorkspace<f32>,
        out: Linear,
        /// `[T, B, O]` logits.
        z: Vec<f32>,
        /// `[T, B, H]` dL/dy.
        dy: Vec<f32>,
    },
    Jordan {
        net: JordanNet,
        ws: JordanWorkspace<f32>,
    },
}

impl Net {
    fn new(cfg: &TaskConfig) -> Result<Net> {
        let (i, h, o) = (cfg.inputs(), cfg.hidden, cfg.outputs());
        let mut store = ParamStore::new();
        let cell = match cfg.cell {
            TaskCell::Tanh | TaskCell::Jordan => CellKind::RnnTanh,
            TaskCell::Relu | TaskCell::Irnn => CellKind::RnnRelu,
            TaskCell::Lstm => CellKind::Lstm,
            TaskCell::Gru => CellKind::Gru,
        };
        let layer = |input: usize| {
            RnnConfig::new(cell, input, h)
                .leak(cfg.leak)
                .skip(cfg.skip)
                .hidden_to_hidden(cfg.cell != TaskCell::Jordan)
        };
        let (kind, rnn, out) = if cfg.cell == TaskCell::Jordan {
            let net = JordanNet::new(store.root(), layer(i + o), i, cfg.output_kind())?;
            let (rnn, out) = (net.rnn().clone(), *net.readout());
            let ws = JordanWorkspace::new();
            (NetKind::Jordan { net, ws }, rnn, out)
        } else {
            let rnn = Rnn::new(store.scope("rnn"), layer(i))?;
            let out = Linear::new(store.scope("out"), h, o);
            let kind = NetKind::Layer {
                rnn: rnn.clone(),
                ws: RnnWorkspace::new(),
                out,
                z: Vec::new(),
                dy: Vec::new(),
            };
            (kind, rnn, out)
        };
        init_params(&mut store.params, rnn.param_info(), h, cfg.init, cfg.seed);
        if cell == CellKind::Lstm {
            set_lstm_forget_bias(&rnn, &mut store, cfg.forget_bias)?;
        }
        // The readout as torch.nn.Linear: U(−1/√H, 1/√H).
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
        let k = 1.0 / (h as f32).sqrt();
        for r in [out.weight().range(), out.bias().range()] {
            for v in &mut store.params[r] {
                *v = rng.random_range(-k..k);
            }
        }
        Ok(Net { store, kind })
    }

    /// Runs the net; returns the logits `[T, B, O]`.
    fn forward(&mut self, bt: &Batch, teacher: bool) -> Result<&[f32]> {
        let store = &self.store;
        match &mut self.kind {
            NetKind::Jordan { net, ws } => {
                let tf = teacher.then_some(&bt.y[..]);
                net.forward(store, ws, &bt.x, bt.steps, bt.batch, None, tf)?;
                Ok(ws.logits())
            }
            NetKind::Layer {
                rnn, ws, out, z, ..
            } => {
                rnn.forward(store, ws, RnnInput::new(&bt.x, bt.steps, bt.batch), None)?;
                let rows = bt.steps * bt.batch;
                z.resize(rows * out.out, 0.0);
                out.forward(store, ws.output(), rows, z);
                Ok(z)
            }
        }
    }

    fn backward(&mut self, dz: &[f32]) -> Result<()> {
        let store = &mut self.store;
        match &mut self.kind {
            NetKind::Jordan { net, ws } => net.backward(store, ws, dz),
            NetKind::Layer {
                rnn, ws, out, dy, ..
            } => {
                let rows = dz.len() / out.out;
                dy.resize(rows * out.inp, 0.0);
                out.backward(store, ws.output(), dz, rows, Some(dy));
                rnn.backward(store, ws, dy, None, None)
            }
        }
    }
}

/// Test-set results.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskMetrics {
    /// Training steps taken when measured.
    pub step: usize,
    /// The mean training loss since the previous evaluation.
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
    /// addition accuracy 1, copy accuracy ≥ 0.99.
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

/// The net of a task as a [`Model`]: its loss, its test metrics and its
/// gradient flow.
pub struct TaskNet {
    cfg: TaskConfig,
    net: Net,
    /// `[T, B, O]` dL/dz.
    dz: Vec<f32>,
    /// (T, B, loss) of the last training batch.
    last: (usize, usize, f64),
}

impl TaskNet {
    /// The net `cfg` describes, initialised from its seed.
    pub fn new(cfg: TaskConfig) -> Result<TaskNet> {
        cfg.validate()?;
        Ok(TaskNet {
            net: Net::new(&cfg)?,
            cfg,
            dz: Vec::new(),
            last: (0, 0, f64::NAN),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TaskConfig {
        &self.cfg
    }

    /// Makes later training steps keep dL/dh_t for [`TaskNet::gradient_flow`]
    /// (Elman, LSTM and GRU nets).
    pub fn record_gradients(&mut self) {
        if let NetKind::Layer { ws, .. } = &mut self.net.kind {
            ws.record_state_grads(true);
        }
    }

    /// The gradient flow of the last training step (`step` is its number):
    /// ‖dL/dh_t‖ over the batch, and the step Jacobians' spectral norms for
    /// its first sequence. Needs [`TaskNet::record_gradients`] before the
    /// step, and an Elman, LSTM or GRU net without skip connections (not a
    /// Jordan net).
    pub fn gradient_flow(&self, step: u64) -> Result<GradientFlow> {
        let (tn, bn, loss) = self.last;
        if tn == 0 {
            return Err(Error::Order(
                "gradient flow needs a training step first".into(),
            ));
        }
        let store = &self.net.store;
        let (state_grad_norm, jacobian_norm) = match &self.net.kind {
            NetKind::Jordan { .. } => {
                return Err(Error::Config(
                    "gradient flow is measured for Elman, LSTM and GRU nets, not a Jordan net"
                        .into(),
                ))
            }
            NetKind::Layer { rnn, ws, .. } => {
                let g = ws.state_grads(0, 0);
                if g.is_empty() {
                    return Err(Error::Order(
                        "call record_gradients before the training step to keep dL/dh_t".into(),
                    ));
                }
                (
                    state_grad_norms(g, tn, bn),
                    rnn_jacobian_norms(rnn, store, ws, 0)?,
                )
            }
        };
        Ok(GradientFlow {
            step: step as usize,
            loss,
            state_grad_norm,
            jacobian_norm,
        })
    }
}

impl Model for TaskNet {
    type Batch = Batch;

    fn store(&self) -> &ParamStore<f32> {
        &self.net.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.net.store
    }

    fn forward_backward(&mut self, bt: &Batch, _rng: &mut dyn RngCore) -> Result<f64> {
        self.net.store.zero_grad();
        let z = self.net.forward(bt, self.cfg.teacher_forcing)?;
        let loss = task_loss(&self.cfg, bt, z, &mut self.dz);
        self.last = (bt.steps, bt.batch, loss);
        if loss.is_finite() {
            self.net.backward(&self.dz)?;
        }
        Ok(loss)
    }

    /// The test set, free running (no teacher forcing): the task's loss,
    /// and `accuracy` (binary addition: exactly right sums; copy: right
    /// recalled symbols), `mse` and `baseline_mse` (adding), `baseline_loss`
    /// (copy), and `solved` (1 or 0).
    fn evaluate(&mut self, test: &[Batch]) -> Result<Evaluation> {
        let cfg = &self.cfg;
        let o = cfg.outputs();
        let (mut loss, mut right, mut count, mut sq, mut base) = (0.0, 0usize, 0usize, 0.0, 0.0);
        let mut dz = Vec::new();
        for bt in test {
            let z = self.net.forward(bt, false)?;
            let (tn, bn) = (bt.steps, bt.batch);
            loss += task_loss(cfg, bt, z, &mut dz);
            for b in 0..bn {
                match cfg.task {
                    TaskKind::BinaryAddition => {
                        let exact = (cfg.delay..tn)
                            .all(|t| (z[t * bn + b] > 0.0) == (bt.y[t * bn + b] > 0.5));
                        right += usize::from(exact);
                        count += 1;
                    }
                    TaskKind::Adding => {
                        let r = (tn - 1) * bn + b;
                        sq += f64::from(z[r] - bt.y[r]).powi(2);
                        base += f64::from(1.0 - bt.y[r]).powi(2);
                        count += 1;
                    }
                    TaskKind::Copy => {
                        for t in tn - COPY_LEN..tn {
                            let r = t * bn + b;
                            let row = &z[r * o..][..o];
                            let best = (0..o).fold(0, |m, k| if row[k] > row[m] { k } else { m });
                            right += usize::from(best == bt.classes[r] as usize);
                            count += 1;
                        }
                    }
                }
            }
        }
        let n = test.len() as f64;
        let mut metrics = std::collections::BTreeMap::new();
        let solved = match cfg.task {
            TaskKind::BinaryAddition => {
                metrics.insert("accuracy".to_string(), right as f64 / count as f64);
                right == count
            }
            TaskKind::Adding => {
                let m = sq / count as f64;
                metrics.insert("mse".to_string(), m);
                metrics.insert("baseline_mse".to_string(), base / count as f64);
                m < 0.01
            }
            TaskKind::Copy => {
                let acc = right as f64 / count as f64;
                let tn = cfg.steps_per_sequence(true) as f64;
                let base = COPY_LEN as f64 * (COPY_SYMBOLS as f64).ln() / tn;
                metrics.insert("accuracy".to_string(), acc);
                metrics.insert("baseline_loss".to_string(), base);
                acc >= 0.99
            }
        };
        metrics.insert("solved".to_string(), f64::from(u8::from(solved)));
        Ok(Evaluation {
            loss: loss / n,
            metrics,
        })
    }

    fn metadata(&self) -> Metadata {
        vec![
            ("format".to_string(), "recur-task".to_string()),
            (
                "config".to_string(),
                serde_json::to_string(&self.cfg).expect("config serialises"),
            ),
        ]
    }
}

/// A task's data: fresh training batches from one random stream, and a
/// fixed test set from another.
pub struct TaskData {
    cfg: TaskConfig,
    rng: ChaCha8Rng,
    test: Vec<Batch>,
}

impl TaskData {
    /// The streams `cfg` (its task and seed) describes.
    pub fn new(cfg: &TaskConfig) -> TaskData {
        let mut test_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x7e57));
        let chunks = cfg.test_size.div_ceil(cfg.batch);
        let test = (0..chunks)
            .map(|_| draw_batch(cfg, &mut test_rng, cfg.batch, true))
            .collect();
        TaskData {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0xda7a)),
            test,
        }
    }
}

impl Data for TaskData {
    type Batch = Batch;

    fn steps_per_epoch(&self) -> Option<usize> {
        None
    }

    fn fill(&mut self, _epoch: usize, _step: usize, bt: &mut Batch) -> Result<()> {
        draw_batch_into(&self.cfg, &mut self.rng, self.cfg.batch, false, bt);
        Ok(())
    }

    fn tokens_per_step(&self) -> usize {
        self.cfg.batch * self.cfg.steps_per_sequence(false)
    }

    fn validation(&self) -> &[Batch] {
        &self.test
    }

    fn fingerprint(&self) -> u64 {
        let s = serde_json::to_string(&self.cfg).expect("config serialises");
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
            (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn rng(&mut self) -> Option<&mut ChaCha8Rng> {
        Some(&mut self.rng)
    }
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
        let data = TaskData::new(&cfg);
        Ok(TaskRun {
            trainer: Trainer::new(net, data, tc)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TaskConfig {
        &self.trainer.model.cfg
    }

    /// Trainable parameters.
    pub fn param_count(&self) -> usize {
        self.trainer.model.net.store.len()
    }

    /// Training steps taken.
    pub fn steps_done(&self) -> usize {
        self.trainer.progress.step as usize
    }

    /// Makes the next training steps keep dL/dh_t for [`TaskRun::gradient_flow`].
    pub fn record_gradients(&mut self) {
        self.trainer.model.record_gradients();
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
            self.trainer.model.last.2,
            e.loss,
            &e.metrics,
        ))
    }

    /// The gradient flow of the last training step; see [`TaskNet::gradient_flow`].
    pub fn gradient_flow(&self) -> Result<GradientFlow> {
        self.trainer.model.gradient_flow(self.trainer.progress.step)
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

/// The task's loss of logits `z` on `bt`; writes dL/dz into `dz`.
fn task_loss(cfg: &TaskConfig, bt: &Batch, z: &[f32], dz: &mut Vec<f32>) -> f64 {
    dz.resize(z.len(), 0.0);
    match cfg.task {
        TaskKind::BinaryAddition => bce_with_logits(z, &bt.y, &bt.weight, dz),
        TaskKind::Adding => mse(z, &bt.y, &bt.weight, dz),
        TaskKind::Copy => {
            dz.copy_from_slice(z);
            softmax_cross_entropy(dz, &bt.classes, cfg.outputs(), true)
        }
    }
}
