//! The nets that learn the tasks, as [`Model`]s: their loss, test metrics
//! and gradient flow.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{GradientFlow, TaskCell, TaskConfig, TaskKind, TASK_FORMAT};
use crate::cell::CellKind;
use crate::data::tasks::{TaskBatch, COPY_LEN, COPY_SYMBOLS};
use crate::diagnose::{rnn_jacobian_norms, state_grad_norms};
use crate::error::{Error, Result};
use crate::init::{init_params, set_lstm_forget_bias};
use crate::layer::linear::Linear;
use crate::layer::loss::{bce_with_logits, mse, softmax_cross_entropy};
use crate::layer::phased::{PhasedConfig, PhasedLstm, PhasedWs};
use crate::layer::rnn::{Rnn, RnnConfig, RnnInput, RnnWorkspace};
use crate::model::jordan::{JordanNet, JordanWorkspace};
use crate::params::ParamStore;
use crate::train::{Evaluation, Metadata, Model};

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
        /// `[T, B, H]` the task loss's dL/dh_t, held for the gradient-decay
        /// regulariser.
        g: Vec<f32>,
    },
    Jordan {
        net: JordanNet,
        ws: JordanWorkspace<f32>,
    },
    Phased {
        layer: PhasedLstm,
        ws: PhasedWs<f32>,
        out: Linear,
        /// `[T, B, O]` logits.
        z: Vec<f32>,
        /// `[T, B, H]` dL/dy.
        dy: Vec<f32>,
    },
}

impl Net {
    fn new(cfg: &TaskConfig) -> Result<Net> {
        if cfg.cell == TaskCell::Phased {
            return Net::phased(cfg);
        }
        let (i, h, o) = (cfg.inputs(), cfg.hidden, cfg.outputs());
        let mut store = ParamStore::new();
        let cell = match cfg.cell {
            TaskCell::Tanh | TaskCell::Jordan => CellKind::RnnTanh,
            TaskCell::Relu | TaskCell::Irnn => CellKind::RnnRelu,
            TaskCell::Lstm | TaskCell::Phased => CellKind::Lstm,
            TaskCell::Gru => CellKind::Gru,
        };
        let layer = |input: usize| {
            RnnConfig::new(cell, input, h)
                .leak(cfg.leak)
                .skip(cfg.skip)
                .hidden_to_hidden(cfg.cell != TaskCell::Jordan)
                // Elman and Jordan nets have one bias, as in the papers.
                .bias_hh(matches!(cell, CellKind::Lstm | CellKind::Gru))
        };
        let (kind, rnn, out) = if cfg.cell == TaskCell::Jordan {
            let net = JordanNet::new(store.root(), layer(i + o), i, cfg.output_kind())?;
            let (rnn, out) = (net.rnn().clone(), *net.readout());
            let ws = JordanWorkspace::new();
            (NetKind::Jordan { net, ws }, rnn, out)
        } else {
            let rnn = Rnn::new(store.scope("rnn"), layer(i))?;
            let out = Linear::new(store.scope("out"), h, o);
            let mut ws = RnnWorkspace::new();
            // The regulariser reads the task loss's dL/dh_t.
            ws.record_state_grads(cfg.gradient_regulariser > 0.0);
            let kind = NetKind::Layer {
                rnn: rnn.clone(),
                ws,
                out,
                z: Vec::new(),
                dy: Vec::new(),
                g: Vec::new(),
            };
            (kind, rnn, out)
        };
        init_params(
            &mut store.params,
            rnn.param_info(),
            h,
            cfg.init,
            cfg.attempt_seed(),
        );
        if cell == CellKind::Lstm {
            set_lstm_forget_bias(&rnn, &mut store, cfg.forget_bias)?;
        }
        init_readout(&mut store, &out, cfg);
        Ok(Net { store, kind })
    }

    /// A phased LSTM with a linear readout: periods log-uniform over
    /// 1–20 time units (milliseconds for the frequency task, steps for
    /// the others), r_on 0.05 and leak 0.001 as in the paper.
    fn phased(cfg: &TaskConfig) -> Result<Net> {
        let (i, h, o) = (cfg.inputs(), cfg.hidden, cfg.outputs());
        let mut store = ParamStore::new();
        let pc = PhasedConfig {
            input: i,
            hidden: h,
            r_on: 0.05,
            leak: 0.001,
        };
        let layer = PhasedLstm::new(store.scope("rnn"), pc)?;
        let out = Linear::new(store.scope("out"), h, o);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.attempt_seed());
        layer.init(&mut store, 1.0, 20.0, &mut rng);
        init_readout(&mut store, &out, cfg);
        let kind = NetKind::Phased {
            layer,
            ws: PhasedWs::new(),
            out,
            z: Vec::new(),
            dy: Vec::new(),
        };
        Ok(Net { store, kind })
    }

    /// Runs the net; returns the logits `[T, B, O]`.
    fn forward(&mut self, bt: &TaskBatch, teacher: bool) -> Result<&[f32]> {
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
                Ok(readout_forward(out, store, ws.output(), z))
            }
            NetKind::Phased {
                layer, ws, out, z, ..
            } => {
                layer.forward(store, ws, &bt.x, &bt.times, bt.steps, bt.batch)?;
                Ok(readout_forward(out, store, ws.output(), z))
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
                readout_backward(out, store, ws.output(), dz, dy);
                rnn.backward(store, ws, dy, None, None)
            }
            NetKind::Phased {
                layer, ws, out, dy, ..
            } => {
                readout_backward(out, store, ws.output(), dz, dy);
                layer.backward(store, ws, dy)
            }
        }
    }

    /// After [`Net::backward`] of the task loss: the gradient-decay
    /// regulariser Ω with its dL/dh_t held constant, its gradient times
    /// `weight` added by a second backward pass. Returns Ω.
    fn regularise(&mut self, weight: f64) -> Result<f64> {
        let store = &mut self.store;
        match &mut self.kind {
            NetKind::Jordan { .. } | NetKind::Phased { .. } => Err(Error::Config(
                "the gradient-decay regulariser is for Elman nets".into(),
            )),
            NetKind::Layer { rnn, ws, dy, g, .. } => {
                g.clear();
                g.extend_from_slice(ws.state_grads(0, 0));
                let omega = rnn.decay_penalty(store, ws, g, weight, dy)?;
                rnn.backward(store, ws, dy, None, None)?;
                Ok(omega)
            }
        }
    }
}

/// The per-step readout of a layer's outputs `y` `[T·B, H]`: logits `z`
/// `[T·B, O]`.
fn readout_forward<'z>(
    out: &Linear,
    store: &ParamStore<f32>,
    y: &[f32],
    z: &'z mut Vec<f32>,
) -> &'z [f32] {
    let rows = y.len() / out.input();
    z.resize(rows * out.output(), 0.0);
    out.forward(store, y, rows, z);
    z
}

/// The readout's backward: its gradients into the store, dL/dy into `dy`.
fn readout_backward(
    out: &Linear,
    store: &mut ParamStore<f32>,
    y: &[f32],
    dz: &[f32],
    dy: &mut Vec<f32>,
) {
    let rows = dz.len() / out.output();
    dy.resize(rows * out.input(), 0.0);
    out.backward(store, y, dz, rows, Some(dy));
}

/// The readout as torch.nn.Linear: U(−1/√H, 1/√H).
fn init_readout(store: &mut ParamStore<f32>, out: &Linear, cfg: &TaskConfig) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.attempt_seed() ^ 0x5eed);
    let k = 1.0 / (out.input() as f32).sqrt();
    for r in [out.weight().range(), out.bias().range()] {
        for v in &mut store.params[r] {
            *v = rng.random_range(-k..k);
        }
    }
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
    /// Training steps measure the gradient flow when their number (from 1)
    /// is 1 or a multiple of this (0: never).
    record: u64,
    /// Training steps taken by this net.
    steps: u64,
    /// (‖dL/dh_t‖, σ_max of the step Jacobians) of the last training step,
    /// measured before the update.
    flow: Option<(Vec<f64>, Vec<f64>)>,
    /// The gradient-decay regulariser Ω of the last training step.
    omega: f64,
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
            record: 0,
            steps: 0,
            flow: None,
            omega: 0.0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TaskConfig {
        &self.cfg
    }

    /// The loss of the last training batch.
    pub fn last_loss(&self) -> f64 {
        self.last.2
    }

    /// The gradient-decay regulariser Ω of the last training batch
    /// (without its weight; 0 when the config has none).
    pub fn last_regulariser(&self) -> f64 {
        self.omega
    }

    /// Makes later training steps measure their gradient flow for
    /// [`TaskNet::gradient_flow`] (Elman, LSTM and GRU nets without skip
    /// connections; not a Jordan net): step 1 and every `every`-th step
    /// (numbered from 1), since measuring the step Jacobians costs more
    /// than the step.
    pub fn record_gradients(&mut self, every: u64) -> Result<()> {
        match &mut self.net.kind {
            NetKind::Jordan { .. } | NetKind::Phased { .. } => Err(Error::Config(
                "gradient flow is measured for Elman, LSTM and GRU nets, not a Jordan net or a phased LSTM".into(),
            )),
            NetKind::Layer { ws, .. } => {
                ws.record_state_grads(true);
                self.record = every.max(1);
                Ok(())
            }
        }
    }

    /// The gradient flow of the last measured training step (`step` is its
    /// number): ‖dL/dh_t‖ over the batch, and the step Jacobians' spectral
    /// norms for its first sequence, both from the weights the step used.
    /// Needs [`TaskNet::record_gradients`] before the step.
    pub fn gradient_flow(&self, step: u64) -> Result<GradientFlow> {
        let (state_grad_norm, jacobian_norm) = self.flow.clone().ok_or_else(|| {
            Error::Order("gradient flow needs record_gradients and then a training step".into())
        })?;
        Ok(GradientFlow {
            step: step as usize,
            loss: self.last.2,
            state_grad_norm,
            jacobian_norm,
        })
    }

    /// Measures the flow of the backward pass that just ran.
    fn measure_flow(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let (tn, bn, _) = self.last;
        match &self.net.kind {
            NetKind::Layer { rnn, ws, .. } => Ok((
                state_grad_norms(ws.state_grads(0, 0), tn, bn),
                rnn_jacobian_norms(rnn, &self.net.store, ws, 0)?,
            )),
            NetKind::Jordan { .. } | NetKind::Phased { .. } => {
                unreachable!("record_gradients refuses Jordan nets and phased LSTMs")
            }
        }
    }
}

impl Model for TaskNet {
    type Batch = TaskBatch;

    fn store(&self) -> &ParamStore<f32> {
        &self.net.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<f32> {
        &mut self.net.store
    }

    fn forward_backward(&mut self, bt: &TaskBatch, _rng: &mut dyn RngCore) -> Result<f64> {
        self.net.store.zero_grad();
        let z = self.net.forward(bt, self.cfg.teacher_forcing)?;
        let loss = task_loss(&self.cfg, bt, z, &mut self.dz);
        self.last = (bt.steps, bt.batch, loss);
        self.steps += 1;
        if loss.is_finite() {
            self.net.backward(&self.dz)?;
            if self.record > 0 && (self.steps == 1 || self.steps.is_multiple_of(self.record)) {
                self.flow = Some(self.measure_flow()?);
            }
            if self.cfg.gradient_regulariser > 0.0 {
                self.omega = self.net.regularise(self.cfg.gradient_regulariser)?;
            }
        }
        Ok(loss)
    }

    /// The test set, free running (no teacher forcing): the task's loss,
    /// and `accuracy` (binary addition: exactly right sums; copy: right
    /// recalled symbols), `mse` and `baseline_mse` (adding), `baseline_loss`
    /// (copy), and `solved` (1 or 0).
    fn evaluate(&mut self, test: &[TaskBatch]) -> Result<Evaluation> {
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
                    TaskKind::Frequency => {
                        let r = (tn - 1) * bn + b;
                        right += usize::from((z[r] > 0.0) == (bt.y[r] > 0.5));
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
            TaskKind::Frequency => {
                let acc = right as f64 / count as f64;
                metrics.insert("accuracy".to_string(), acc);
                acc >= 0.9
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
            ("format".to_string(), TASK_FORMAT.to_string()),
            (
                "config".to_string(),
                serde_json::to_string(&self.cfg).expect("config serialises"),
            ),
        ]
    }
}

/// The task's loss of logits `z` on `bt`; writes dL/dz into `dz`.
fn task_loss(cfg: &TaskConfig, bt: &TaskBatch, z: &[f32], dz: &mut Vec<f32>) -> f64 {
    dz.resize(z.len(), 0.0);
    match cfg.task {
        TaskKind::BinaryAddition | TaskKind::Frequency => bce_with_logits(z, &bt.y, &bt.weight, dz),
        TaskKind::Adding => mse(z, &bt.y, &bt.weight, dz),
        TaskKind::Copy => {
            dz.copy_from_slice(z);
            softmax_cross_entropy(dz, &bt.classes, cfg.outputs(), true)
        }
    }
}
