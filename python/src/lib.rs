//! `recur._recur`: the native half of the Python package.
//!
//! Three things cross the boundary:
//! - [`Layer`]: one stacked RNN/LSTM/GRU (f32 or f64) with forward and
//!   backward over NumPy arrays, parameters and gradients under PyTorch's
//!   names;
//! - [`train`]: the `recur train` command run in-process, so every option
//!   of the command is an option of the Python models, with a progress
//!   hook that also turns Ctrl-C into a clean stop;
//! - [`Model`]: a trained model file of any kind, for prediction.
//!
//! Model work runs with the GIL released.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use recur::checkpoint::{self, load_seq, load_seq2seq};
use recur::data::read::{words, TsData, TsSeries, TsTarget};
use recur::data::{tokenize, Vocab};
use recur::model::any::AnyLm;
use recur::model::seq::{SeqModel, SeqTask};
use recur::model::seq2seq::Seq2Seq;
use recur::sample::{default_start, Decoding};
use recur::{CellKind, Float, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};
use recur_cli::seqdata::{token_items, Items};
use recur_cli::train::{set_hook, HookEvent};

create_exception!(
    recur._recur,
    RecurError,
    PyException,
    "An error of recur's that is not a bad argument or a missing file: bad data, a diverged run, a model file that is not one."
);

/// The Python exception for a library error: `ValueError` for arguments
/// and configurations, `FileNotFoundError`, `KeyboardInterrupt` for an
/// interrupted run, `RecurError` otherwise; the message is the library's.
fn py_err(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        if io.kind() == std::io::ErrorKind::NotFound {
            return PyFileNotFoundError::new_err(msg);
        }
    }
    match e.downcast_ref::<recur::Error>() {
        Some(recur::Error::Interrupted { .. }) => PyKeyboardInterrupt::new_err(msg),
        Some(
            recur::Error::Config(_)
            | recur::Error::Shape { .. }
            | recur::Error::Length { .. }
            | recur::Error::Order(_),
        ) => PyValueError::new_err(msg),
        Some(recur::Error::Io { message, .. }) if message.contains("No such file") => {
            PyFileNotFoundError::new_err(msg)
        }
        _ => RecurError::new_err(msg),
    }
}

fn lib_err(e: recur::Error) -> PyErr {
    py_err(e.into())
}

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// A NumPy array of `shape` holding `v`.
fn array<'py, T: Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v).reshape(shape)?.into_any())
}

/// The values and shape of an array argument of element type `T`, copied
/// so that model work can run without the GIL.
fn values<T: Element + Copy + Named>(
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<(Vec<T>, Vec<usize>)> {
    let a: PyReadonlyArrayDyn<T> = obj
        .extract()
        .map_err(|_| value_err(format!("{name}: expected a NumPy array of {}", T::NAME)))?;
    let shape = a.shape().to_vec();
    let v = match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    };
    Ok((v, shape))
}

fn expect_shape(name: &str, got: &[usize], want: &[usize]) -> PyResult<()> {
    if got != want {
        return Err(value_err(format!(
            "{name}: expected shape {want:?}, got {got:?}"
        )));
    }
    Ok(())
}

/// A stack of one precision.
struct Stack<T> {
    store: ParamStore<T>,
    rnn: Rnn,
    ws: RnnWorkspace<T>,
    rng: ChaCha8Rng,
    /// Whether a forward pass awaits its backward.
    ran: bool,
}

type Arrays<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

impl<T: Float + Element + Named> Stack<T> {
    fn new(config: RnnConfig, bias: bool, seed: u64) -> PyResult<Stack<T>> {
        let mut store = ParamStore::new();
        let rnn = Rnn::new(store.root(), config).map_err(lib_err)?;
        rnn.init_uniform(&mut store, seed);
        let mut s = Stack {
            store,
            rnn,
            ws: RnnWorkspace::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            ran: false,
        };
        if !bias {
            s.zero_biases();
        }
        Ok(s)
    }

    /// Without biases (`bias=False`), the stack's bias tensors stay zero
    /// and are neither shown nor learned.
    fn zero_biases(&mut self) {
        for p in self.rnn.param_info().to_vec() {
            if p.name.starts_with("bias_") {
                self.store.params[p.range()].fill(T::ZERO);
            }
        }
    }

    fn state_shape(&self, b: usize) -> [usize; 3] {
        let c = self.rnn.config();
        [c.layers * c.directions(), b, c.hidden]
    }

    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        h0: Option<&Bound<'py, PyAny>>,
        c0: Option<&Bound<'py, PyAny>>,
        lengths: Option<Vec<usize>>,
        train: bool,
    ) -> PyResult<Arrays<'py>> {
        let cfg = self.rnn.config().clone();
        let (x, shape) = values::<T>(x, "input")?;
        if shape.len() != 3 || shape[2] != cfg.input {
            return Err(value_err(format!(
                "input: expected shape [T, B, {}] (time-major), got {shape:?}",
                cfg.input
            )));
        }
        let (t, b) = (shape[0], shape[1]);
        let state = self.state_shape(b);
        let h0 = h0.map(|h| values::<T>(h, "h0")).transpose()?;
        let c0 = c0.map(|c| values::<T>(c, "c0")).transpose()?;
        for (name, s) in [("h0", &h0), ("c0", &c0)] {
            if let Some((_, sh)) = s {
                expect_shape(name, sh, &state)?;
            }
        }
        let Stack {
            store,
            rnn,
            ws,
            rng,
            ..
        } = self;
        py.detach(|| {
            let mut input = RnnInput::new(&x, t, b);
            if let Some((h, _)) = &h0 {
                input = input.h0(h);
            }
            if let Some((c, _)) = &c0 {
                input = input.c0(c);
            }
            if let Some(l) = &lengths {
                input = input.lengths(l);
            }
            let rng: Option<&mut dyn rand::RngCore> = if train { Some(rng) } else { None };
            rnn.forward(store, ws, input, rng)
        })
        .map_err(lib_err)?;
        self.ran = true;
        let d = cfg.directions() * cfg.hidden;
        let y = array(py, self.ws.output().to_vec(), &[t, b, d])?;
        let h_n = array(py, self.ws.h_n().to_vec(), &state)?;
        let c_n = match cfg.cell {
            CellKind::Lstm => Some(array(py, self.ws.c_n().to_vec(), &state)?),
            _ => None,
        };
        Ok((y, h_n, c_n))
    }

    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        dy: &Bound<'py, PyAny>,
        dh_n: Option<&Bound<'py, PyAny>>,
        dc_n: Option<&Bound<'py, PyAny>>,
        bias: bool,
    ) -> PyResult<Arrays<'py>> {
        if !self.ran {
            return Err(value_err(
                "backward: call forward first (each forward allows one backward)",
            ));
        }
        let cfg = self.rnn.config().clone();
        let (t, b) = (self.ws.steps(), self.ws.batch());
        let state = self.state_shape(b);
        let (dy, sh) = values::<T>(dy, "d_output")?;
        expect_shape("d_output", &sh, &[t, b, cfg.directions() * cfg.hidden])?;
        let dh = dh_n.map(|h| values::<T>(h, "d_h_n")).transpose()?;
        let dc = dc_n.map(|c| values::<T>(c, "d_c_n")).transpose()?;
        for (name, s) in [("d_h_n", &dh), ("d_c_n", &dc)] {
            if let Some((_, sh)) = s {
                expect_shape(name, sh, &state)?;
            }
        }
        let Stack { store, rnn, ws, .. } = self;
        py.detach(|| {
            rnn.backward(
                store,
                ws,
                &dy,
                dh.as_ref().map(|(v, _)| v.as_slice()),
                dc.as_ref().map(|(v, _)| v.as_slice()),
            )
        })
        .map_err(lib_err)?;
        if !bias {
            for p in self.rnn.param_info().to_vec() {
                if p.name.starts_with("bias_") {
                    self.store.grads[p.range()].fill(T::ZERO);
                }
            }
        }
        // One backward per forward, as in PyTorch: a second would add the
        // same gradients again.
        self.ran = false;
        let dx = array(py, self.ws.dx().to_vec(), &[t, b, cfg.input])?;
        let dh0 = array(py, self.ws.dh0().to_vec(), &state)?;
        let dc0 = match cfg.cell {
            CellKind::Lstm => Some(array(py, self.ws.dc0().to_vec(), &state)?),
            _ => None,
        };
        Ok((dx, dh0, dc0))
    }

    /// name → array of the parameters (`grads`: of their gradients).
    fn tensors<'py>(
        &self,
        py: Python<'py>,
        grads: bool,
        bias: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let buf = if grads {
            &self.store.grads
        } else {
            &self.store.params
        };
        for p in self.rnn.param_info() {
            if !bias && p.name.starts_with("bias_") {
                continue;
            }
            d.set_item(&p.name, array(py, buf[p.range()].to_vec(), &p.shape)?)?;
        }
        Ok(d)
    }

    fn load(&mut self, sd: &Bound<'_, PyDict>, bias: bool) -> PyResult<()> {
        let infos = self.rnn.param_info().to_vec();
        let expected: Vec<&str> = infos
            .iter()
            .filter(|p| bias || !p.name.starts_with("bias_"))
            .map(|p| p.name.as_str())
            .collect();
        for key in sd.keys() {
            let k: String = key.extract()?;
            if !expected.contains(&k.as_str()) {
                return Err(value_err(format!(
                    "load_state_dict: unexpected key '{k}'; expected {}",
                    expected.join(", ")
                )));
            }
        }
        // Everything is checked before anything is written.
        let mut staged = Vec::new();
        for p in infos.iter().filter(|p| expected.contains(&p.name.as_str())) {
            let v = sd
                .get_item(&p.name)?
                .ok_or_else(|| value_err(format!("load_state_dict: missing key '{}'", p.name)))?;
            // Tensors and other array-likes convert through NumPy.
            let v = py_array(&v, T::NAME)?;
            let (vals, sh) = values::<T>(&v, &p.name)?;
            expect_shape(&p.name, &sh, &p.shape)?;
            staged.push((p.range(), vals));
        }
        for (r, v) in staged {
            self.store.params[r].copy_from_slice(&v);
        }
        Ok(())
    }
}

/// `numpy.ascontiguousarray(v, dtype)`, so lists, tensors' `.numpy()` and
/// arrays of other precisions are accepted.
fn py_array<'py>(v: &Bound<'py, PyAny>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    let np = v.py().import("numpy")?;
    np.call_method1("ascontiguousarray", (v, dtype))
}

/// f32 or f64, named as NumPy names them.
trait Named {
    const NAME: &'static str;
}
impl Named for f32 {
    const NAME: &'static str = "float32";
}
impl Named for f64 {
    const NAME: &'static str = "float64";
}

enum Precision {
    F32(Stack<f32>),
    F64(Stack<f64>),
}

macro_rules! each {
    ($p:expr, $s:ident => $body:expr) => {
        match $p {
            Precision::F32($s) => $body,
            Precision::F64($s) => $body,
        }
    };
}

/// A stacked recurrent layer: the native side of `recur.nn.RNN`, `LSTM`
/// and `GRU`, time-major.
#[pyclass(module = "recur._recur")]
pub struct Layer {
    inner: Precision,
    bias: bool,
}

#[pymethods]
impl Layer {
    /// `cell`: rnn-tanh, rnn-relu, lstm, gru or gru-reset-before; `dtype`:
    /// float32 or float64.
    #[new]
    #[pyo3(signature = (cell, input, hidden, layers, bias, dropout, bidirectional, dtype, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cell: &str,
        input: usize,
        hidden: usize,
        layers: usize,
        bias: bool,
        dropout: f64,
        bidirectional: bool,
        dtype: &str,
        seed: u64,
    ) -> PyResult<Layer> {
        let kind = CellKind::from_name(cell).ok_or_else(|| {
            value_err(format!(
                "unknown cell '{cell}': expected rnn-tanh, rnn-relu, lstm, gru or gru-reset-before"
            ))
        })?;
        if input == 0 || hidden == 0 || layers == 0 {
            return Err(value_err(format!(
                "input_size, hidden_size and num_layers must be at least 1 (got {input}, {hidden}, {layers})"
            )));
        }
        let config = RnnConfig::new(kind, input, hidden)
            .layers(layers)
            .dropout(dropout)
            .bidirectional(bidirectional);
        let inner = match dtype {
            "float32" => Precision::F32(Stack::new(config, bias, seed)?),
            "float64" => Precision::F64(Stack::new(config, bias, seed)?),
            other => {
                return Err(value_err(format!(
                    "dtype: expected float32 or float64, got {other}"
                )))
            }
        };
        Ok(Layer { inner, bias })
    }

    /// Runs the stack over `x` `[T, B, I]`: (output `[T, B, D·H]`, h_n,
    /// c_n or None) with states `[L·D, B, H]`.
    #[pyo3(signature = (x, h0=None, c0=None, lengths=None, train=false))]
    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        h0: Option<&Bound<'py, PyAny>>,
        c0: Option<&Bound<'py, PyAny>>,
        lengths: Option<Vec<usize>>,
        train: bool,
    ) -> PyResult<Arrays<'py>> {
        each!(&mut self.inner, s => s.forward(py, x, h0, c0, lengths, train))
    }

    /// Backpropagation through time for the last forward: adds the
    /// parameter gradients and returns (dx, dh0, dc0 or None).
    #[pyo3(signature = (d_output, d_h_n=None, d_c_n=None))]
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        d_output: &Bound<'py, PyAny>,
        d_h_n: Option<&Bound<'py, PyAny>>,
        d_c_n: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Arrays<'py>> {
        let bias = self.bias;
        each!(&mut self.inner, s => s.backward(py, d_output, d_h_n, d_c_n, bias))
    }

    /// The parameters under PyTorch's names, as copies.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        each!(&self.inner, s => s.tensors(py, false, self.bias))
    }

    /// The gradients under the parameters' names, as copies.
    fn grads<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        each!(&self.inner, s => s.tensors(py, true, self.bias))
    }

    /// Sets every parameter from a dict of arrays; the names and shapes
    /// must be exactly the layer's.
    fn load_state_dict(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let bias = self.bias;
        each!(&mut self.inner, s => s.load(state, bias))
    }

    /// Sets every gradient to zero.
    fn zero_grad(&mut self) {
        each!(&mut self.inner, s => s.store.zero_grad())
    }
}

/// The `recur train` options a Python model takes as keywords, as
/// (name, takes a value, help) with names in snake case.
#[pyfunction]
fn train_options() -> Vec<(String, bool, String)> {
    let cmd = recur_cli::Cli::command();
    let train = cmd.find_subcommand("train").expect("train exists");
    train
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let takes = a.get_action().takes_values();
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some((long.replace('-', "_"), takes, help))
        })
        .collect()
}

/// Runs `recur train ARGS` in this process. `callback(event)` is called
/// with a dict after every step (`{"event": "step", …}`) and evaluation
/// (`{"event": "eval", …}`); returning False stops the run early, with its
/// state saved, and gives False (True: the run went to its end). Ctrl-C
/// raises KeyboardInterrupt once the run has stopped and saved.
#[pyfunction]
#[pyo3(signature = (args, callback=None))]
fn train(py: Python<'_>, args: Vec<String>, callback: Option<Py<PyAny>>) -> PyResult<bool> {
    let argv = std::iter::once("recur".to_string())
        .chain(std::iter::once("train".to_string()))
        .chain(args);
    let cli = recur_cli::Cli::try_parse_from(argv)
        .map_err(|e| value_err(e.render().to_string().trim_end().to_string()))?;
    let failure: std::sync::Arc<std::sync::Mutex<Option<PyErr>>> = Default::default();
    let fail = failure.clone();
    // Whether the callback asked to stop: the run then ends as it would
    // on Ctrl-C (saved), and fit returns normally.
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = stopped.clone();
    set_hook(Some(Box::new(move |e: &HookEvent| {
        Python::attach(|py| {
            if let Err(err) = py.check_signals() {
                *fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
                return false;
            }
            let Some(cb) = &callback else { return true };
            let d = PyDict::new(py);
            let filled = match e {
                HookEvent::Step {
                    step,
                    epoch,
                    loss,
                    total,
                } => (|| -> PyResult<()> {
                    d.set_item("event", "step")?;
                    d.set_item("step", step)?;
                    d.set_item("epoch", epoch)?;
                    d.set_item("loss", loss)?;
                    d.set_item("total", total)
                })(),
                HookEvent::Evaluated(m) => (|| -> PyResult<()> {
                    let json = serde_json::to_string(m).expect("metrics serialise");
                    let parsed = py.import("json")?.call_method1("loads", (json,))?;
                    d.update(parsed.cast::<pyo3::types::PyMapping>()?)?;
                    d.set_item("event", "eval")
                })(),
            };
            let result = filled.and_then(|_| cb.call1(py, (d,)));
            match result {
                // None (no return) goes on; any false value stops.
                Ok(r) if !r.is_none(py) && !r.bind(py).is_truthy().unwrap_or(true) => {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    false
                }
                Ok(_) => true,
                Err(err) => {
                    *fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
                    false
                }
            }
        })
    })));
    let result = py.detach(|| recur_cli::run(cli));
    set_hook(None);
    if let Some(err) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(err);
    }
    match result {
        Err(e)
            if stopped.load(std::sync::atomic::Ordering::SeqCst)
                && matches!(
                    e.downcast_ref::<recur::Error>(),
                    Some(recur::Error::Interrupted { .. })
                ) =>
        {
            Ok(false)
        }
        Err(e) => Err(option_err(e)),
        Ok(()) => Ok(true),
    }
}

/// A training error: one that names a `--flag` is a bad option value, a
/// `ValueError` naming the keyword (`--seq-len: …` → `seq_len: …`).
fn option_err(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    if let Some(rest) = msg.strip_prefix("--") {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
        let (flag, tail) = rest.split_at(end.unwrap_or(rest.len()));
        return value_err(format!("{}{tail}", flag.replace('-', "_")));
    }
    py_err(e)
}

/// Corpus BLEU (0–100) of hypotheses against one reference each, as
/// sacreBLEU computes it by default (13a tokens, exp smoothing).
#[pyfunction]
fn bleu(hypotheses: Vec<String>, references: Vec<String>) -> PyResult<f64> {
    if hypotheses.len() != references.len() {
        return Err(value_err(format!(
            "bleu: {} hypotheses but {} references",
            hypotheses.len(),
            references.len()
        )));
    }
    Ok(recur::bleu::corpus_bleu(&hypotheses, &references).score)
}

/// What a model file holds.
enum Loaded {
    Lm(Box<AnyLm>, Vocab),
    Seq(Box<SeqModel<f32>>),
    Seq2Seq(Box<Seq2Seq<f32>>),
}

/// A trained model of any kind, loaded from its file.
#[pyclass(module = "recur._recur")]
pub struct Model {
    inner: Loaded,
}

impl Model {
    fn lm(&self) -> PyResult<(&AnyLm, &Vocab)> {
        match &self.inner {
            Loaded::Lm(m, v) => Ok((m, v)),
            _ => Err(value_err(format!(
                "a {} is not a language model",
                self.kind()
            ))),
        }
    }
    fn seq(&mut self) -> PyResult<&mut SeqModel<f32>> {
        let kind = self.kind();
        match &mut self.inner {
            Loaded::Seq(m) => Ok(m),
            _ => Err(value_err(format!(
                "a {kind} is not a classifier, tagger or regressor"
            ))),
        }
    }

    /// Predictions for items built in memory, as the model reads its files.
    fn predict_items(&mut self, py: Python<'_>, items: Items) -> PyResult<Vec<Vec<f32>>> {
        let model = self.seq()?;
        py.detach(|| recur_cli::seq::predict_items(model, &items))
            .map_err(py_err)
    }
}

#[pymethods]
impl Model {
    /// Loads a recur model file of any kind.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        if !path.exists() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such file",
                path.display()
            )));
        }
        py.detach(|| -> anyhow::Result<Model> {
            let format = checkpoint::file_format(&path)?;
            let inner = match format.as_str() {
                checkpoint::MODEL_FORMAT
                | recur::model::window::WINDOW_FORMAT
                | recur::model::ngram::NGRAM_FORMAT => {
                    let (m, v) = AnyLm::load(&path)?;
                    Loaded::Lm(Box::new(m), v)
                }
                recur::model::seq::SEQ_FORMAT => Loaded::Seq(Box::new(load_seq(&path)?)),
                recur::model::seq2seq::SEQ2SEQ_FORMAT => {
                    Loaded::Seq2Seq(Box::new(load_seq2seq(&path)?))
                }
                other => anyhow::bail!("{}: unknown model format '{other}'", path.display()),
            };
            Ok(Model { inner })
        })
        .map_err(py_err)
    }

    /// language-model, classifier, tagger, regressor or seq2seq.
    #[getter]
    fn kind(&self) -> &'static str {
        match &self.inner {
            Loaded::Lm(..) => "language-model",
            Loaded::Seq(m) => match m.config().task {
                SeqTask::Classify => "classifier",
                SeqTask::Tag => "tagger",
                SeqTask::Regress => "regressor",
            },
            Loaded::Seq2Seq(_) => "seq2seq",
        }
    }

    /// The class or tag names, in output order (empty for other kinds).
    #[getter]
    fn labels(&self) -> Vec<String> {
        match &self.inner {
            Loaded::Seq(m) => m.meta.labels.clone(),
            _ => Vec::new(),
        }
    }

    /// The number of parameters.
    #[getter]
    fn num_params(&self) -> usize {
        match &self.inner {
            Loaded::Lm(m, _) => m.num_params(),
            Loaded::Seq(m) => m.num_params(),
            Loaded::Seq2Seq(m) => m.store.len(),
        }
    }

    /// Language model: text continuing `prime`.
    #[pyo3(signature = (prime, length, temperature, top_k, top_p, greedy, seed))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prime: &str,
        length: usize,
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        greedy: bool,
        seed: u64,
    ) -> PyResult<String> {
        let (model, vocab) = self.lm()?;
        let ids = if prime.is_empty() {
            vec![default_start(vocab)]
        } else {
            vocab
                .encode(&tokenize(prime, vocab.level), "prime")
                .map_err(lib_err)?
        };
        let how = if greedy {
            Decoding::Greedy
        } else {
            Decoding::Sample {
                temperature,
                top_k,
                top_p,
            }
        };
        let out = py
            .detach(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                model.generate_with(&ids, length, how, &mut rng, &mut |_, _| true)
            })
            .map_err(lib_err)?;
        Ok(vocab.decode(&out))
    }

    /// Language model: (mean cross-entropy in nats, predictions) of `text`.
    fn evaluate_text(&self, py: Python<'_>, text: &str) -> PyResult<(f64, usize)> {
        let (model, vocab) = self.lm()?;
        let ids = vocab
            .encode(&tokenize(text, vocab.level), "the text")
            .map_err(lib_err)?;
        py.detach(|| model.cross_entropy(&ids)).map_err(lib_err)
    }

    /// Classifier or regressor on texts: `[O]` outputs per text (logits
    /// or values).
    fn predict_texts(&mut self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<f32>>> {
        let mut list = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let tokens = words(t);
            if tokens.is_empty() {
                return Err(value_err(format!("X[{i}]: the text has no words")));
            }
            list.push(tokens);
        }
        self.predict_items(py, token_items(list, "the inputs"))
    }

    /// Tagger: `[T, O]` logits, flattened, per sentence of tokens.
    fn predict_tokens(
        &mut self,
        py: Python<'_>,
        sentences: Vec<Vec<String>>,
    ) -> PyResult<Vec<Vec<f32>>> {
        if let Some(i) = sentences.iter().position(|s| s.is_empty()) {
            return Err(value_err(format!("X[{i}]: the sentence has no tokens")));
        }
        self.predict_items(py, token_items(sentences, "the inputs"))
    }

    /// Classifier or regressor on series: `[O]` outputs per `[T, C]` array.
    fn predict_series(
        &mut self,
        py: Python<'_>,
        series: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Vec<f32>>> {
        let mut ts = TsData {
            problem: None,
            series: Vec::with_capacity(series.len()),
            target: TsTarget::None,
            class_labels: None,
        };
        for (i, s) in series.iter().enumerate() {
            let (values, shape) = values::<f32>(s, &format!("X[{i}]"))?;
            if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
                return Err(value_err(format!(
                    "X[{i}]: expected a [T, C] array with T, C ≥ 1, got shape {shape:?}"
                )));
            }
            ts.series.push(TsSeries {
                steps: shape[0],
                channels: shape[1],
                values,
            });
        }
        let model = self.seq()?;
        let mut items = token_items(Vec::new(), "the inputs");
        items.items = recur_cli::seq::series_to_items(model, &ts).map_err(py_err)?;
        self.predict_items(py, items)
    }

    /// Seq2seq: the n-best translations of each source as (text, score,
    /// attention `[output steps, source tokens]`).
    #[pyo3(signature = (sources, beam, nbest, length_penalty, sample, temperature, top_k, top_p, seed, max_ratio, keep_unk))]
    #[allow(clippy::too_many_arguments)]
    fn translate<'py>(
        &self,
        py: Python<'py>,
        sources: Vec<String>,
        beam: usize,
        nbest: usize,
        length_penalty: f64,
        sample: bool,
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        seed: u64,
        max_ratio: f64,
        keep_unk: bool,
    ) -> PyResult<Vec<Vec<(String, f64, Bound<'py, PyAny>)>>> {
        let Loaded::Seq2Seq(model) = &self.inner else {
            return Err(value_err(format!("a {} does not translate", self.kind())));
        };
        let args = recur_cli::seq2seq::DecodeArgs {
            beam,
            nbest,
            length_penalty,
            sample,
            temperature,
            top_k,
            top_p,
            seed,
            max_ratio,
            keep_unk,
            batch: 64,
        };
        let how = args.decode().map_err(|e| value_err(format!("{e:#}")))?;
        let out = py
            .detach(|| recur_cli::seq2seq::translate_all(model, &sources, &how, !keep_unk))
            .map_err(py_err)?;
        out.into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|t| {
                        let s = t.source.len();
                        let rows = t.hyp.attention.len().checked_div(s).unwrap_or(0);
                        let att = array(py, t.hyp.attention, &[rows, s])?;
                        Ok((t.text, t.hyp.score, att))
                    })
                    .collect()
            })
            .collect()
    }

    /// The model as PyTorch names its tensors (the fixtures' names), as a
    /// dict of float32 arrays.
    fn torch_state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dir = std::env::temp_dir().join(format!(
            "recur-export-{}-{:p}",
            std::process::id(),
            self as *const Model
        ));
        std::fs::create_dir_all(&dir).map_err(|e| py_err(e.into()))?;
        let written = match &self.inner {
            Loaded::Lm(m, v) => match m.as_ref() {
                AnyLm::Rnn(m) => checkpoint::export_torch_lm(&dir, m, v),
                _ => Err(recur::Error::Config(
                    "only the recurrent language model has a PyTorch counterpart".into(),
                )),
            },
            Loaded::Seq(m) => checkpoint::export_torch_seq(&dir, m),
            Loaded::Seq2Seq(m) => checkpoint::export_torch_seq2seq(&dir, m),
        };
        let read =
            written.and_then(|_| checkpoint::read_tensors(&dir.join("state_dict.safetensors")));
        let _ = std::fs::remove_dir_all(&dir);
        let t = read.map_err(lib_err)?;
        let d = PyDict::new(py);
        for (name, (shape, v)) in t.tensors {
            d.set_item(name, array(py, v, &shape)?)?;
        }
        Ok(d)
    }
}

/// The native module.
#[pymodule]
fn _recur(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Layer>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(train_options, m)?)?;
    m.add_function(wrap_pyfunction!(bleu, m)?)?;
    m.add("RecurError", m.py().get_type::<RecurError>())?;
    Ok(())
}
