//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use recur::{CellKind, Float, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};

/// A recurrent stack alone in its own store (names without a prefix).
pub struct Layer<T> {
    pub rnn: Rnn,
    pub store: ParamStore<T>,
}

impl<T: Float> Layer<T> {
    pub fn new(cfg: RnnConfig) -> Layer<T> {
        let mut store = ParamStore::new();
        let rnn = Rnn::new(store.root(), cfg).unwrap();
        Layer { rnn, store }
    }
}

/// A PyTorch reference case: float64 tensors and string metadata.
pub struct Fixture {
    pub name: String,
    pub tensors: HashMap<String, Vec<f64>>,
    pub meta: HashMap<String, String>,
}

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch-rnn")
}

pub fn load_fixture(name: &str) -> Fixture {
    let path = fixture_dir().join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = HashMap::new();
    for (k, v) in st.tensors() {
        assert_eq!(v.dtype(), safetensors::Dtype::F64, "{k}");
        let data = v
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        tensors.insert(k.to_string(), data);
    }
    Fixture {
        name: name.to_string(),
        tensors,
        meta,
    }
}

impl Fixture {
    pub fn t(&self, k: &str) -> &[f64] {
        self.tensors
            .get(k)
            .unwrap_or_else(|| panic!("{}: no tensor {k}", self.name))
    }
    pub fn m(&self, k: &str) -> usize {
        self.meta[k].parse().unwrap()
    }
    pub fn config(&self) -> RnnConfig {
        let cell = match (
            self.meta["mode"].as_str(),
            self.meta["nonlinearity"].as_str(),
        ) {
            ("LSTM", _) => CellKind::Lstm,
            ("GRU", _) => CellKind::Gru,
            ("RNN", "relu") => CellKind::RnnRelu,
            ("RNN", _) => CellKind::RnnTanh,
            (m, _) => panic!("unknown mode {m}"),
        };
        RnnConfig::new(cell, self.m("input_size"), self.m("hidden_size"))
            .layers(self.m("num_layers"))
            .bidirectional(self.meta["bidirectional"] == "true")
    }
}

pub fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

/// Random numbers in [-1, 1) from a tiny LCG, so tests need no RNG crate.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() + 1.0) / 2.0 * n as f64) as usize % n
    }
}

/// Everything a forward/backward pair needs, in f64.
#[derive(Clone)]
pub struct Problem {
    pub cfg: RnnConfig,
    pub t: usize,
    pub b: usize,
    pub params: Vec<f64>,
    pub x: Vec<f64>,
    pub h0: Vec<f64>,
    pub c0: Option<Vec<f64>>,
    pub lengths: Option<Vec<usize>>,
    pub gy: Vec<f64>,
    pub gh: Vec<f64>,
    pub gc: Option<Vec<f64>>,
}

impl Problem {
    pub fn random(
        cfg: RnnConfig,
        t: usize,
        b: usize,
        lengths: Option<Vec<usize>>,
        seed: u64,
    ) -> Problem {
        let mut r = Lcg(seed);
        let layer = Layer::<f64>::new(cfg.clone());
        let n_state = cfg.layers * cfg.directions() * b * cfg.hidden;
        let lstm = cfg.cell.has_cell_state();
        Problem {
            params: r.vec(layer.store.len(), 0.6),
            x: r.vec(t * b * cfg.input, 1.0),
            h0: r.vec(n_state, 0.5),
            c0: lstm.then(|| r.vec(n_state, 0.5)),
            lengths,
            gy: r.vec(t * b * cfg.output(), 1.0),
            gh: r.vec(n_state, 1.0),
            gc: lstm.then(|| r.vec(n_state, 1.0)),
            cfg,
            t,
            b,
        }
    }

    pub fn input<'a, T>(
        &self,
        x: &'a [T],
        h0: &'a [T],
        c0: Option<&'a [T]>,
        lengths: Option<&'a [usize]>,
    ) -> RnnInput<'a, T> {
        let mut inp = RnnInput::new(x, self.t, self.b).h0(h0);
        inp.c0 = c0;
        inp.lengths = lengths;
        inp
    }
}

/// Runs forward and backward in T; returns (y, h_n, c_n, dx, dh0, dc0, dparams) as f64.
pub struct Outcome {
    pub y: Vec<f64>,
    pub h_n: Vec<f64>,
    pub c_n: Vec<f64>,
    pub dx: Vec<f64>,
    pub dh0: Vec<f64>,
    pub dc0: Vec<f64>,
    pub grads: Vec<f64>,
    pub loss: f64,
}

pub fn run<T: Float>(
    p: &Problem,
    layer: &mut Layer<T>,
    ws: &mut RnnWorkspace<T>,
    seed: Option<u64>,
) -> Outcome {
    use rand::SeedableRng;
    let Layer { rnn, store } = layer;
    store.params = cast(&p.params);
    store.zero_grad();
    let x: Vec<T> = cast(&p.x);
    let h0: Vec<T> = cast(&p.h0);
    let c0: Option<Vec<T>> = p.c0.as_deref().map(cast);
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    let train = rng.as_mut().map(|r| r as &mut dyn rand::RngCore);
    rnn.forward(
        store,
        ws,
        p.input(&x, &h0, c0.as_deref(), p.lengths.as_deref()),
        train,
    )
    .unwrap();
    let back = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let (y, h_n, c_n) = (back(ws.output()), back(ws.h_n()), back(ws.c_n()));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut loss = dot(&y, &p.gy) + dot(&h_n, &p.gh);
    if let Some(gc) = &p.gc {
        loss += dot(&c_n, gc);
    }
    let gy: Vec<T> = cast(&p.gy);
    let gh: Vec<T> = cast(&p.gh);
    let gc: Option<Vec<T>> = p.gc.as_deref().map(cast);
    rnn.backward(store, ws, &gy, Some(&gh), gc.as_deref())
        .unwrap();
    Outcome {
        y,
        h_n,
        c_n,
        dx: back(ws.dx()),
        dh0: back(ws.dh0()),
        dc0: back(ws.dc0()),
        grads: back(&store.grads),
        loss,
    }
}

/// Random tagging examples with one spelling per token: `n` sequences of
/// `steps` tokens drawn from 2..`vocab`, tags `token % classes`; token t is
/// spelled by `1 + t % spell` characters from 2..2+`chars`. Returns the
/// examples and their spelling table.
pub fn tagged_examples(
    rng: &mut impl rand::Rng,
    n: usize,
    steps: std::ops::Range<usize>,
    vocab: u32,
    classes: u32,
    spell: u32,
    chars: u32,
) -> (Vec<recur::data::seq::SeqExample>, Vec<Vec<u32>>) {
    let mut table: Vec<Vec<u32>> = Vec::new();
    let examples = (0..n)
        .map(|_| {
            let steps = rng.random_range(steps.clone());
            let tokens: Vec<u32> = (0..steps).map(|_| rng.random_range(2..vocab)).collect();
            let spellings = tokens
                .iter()
                .map(|&t| {
                    table.push((0..1 + t % spell).map(|c| 2 + (c + t) % chars).collect());
                    (table.len() - 1) as u32
                })
                .collect();
            recur::data::seq::SeqExample {
                steps,
                tags: tokens.iter().map(|t| t % classes).collect(),
                tokens,
                spellings,
                ..Default::default()
            }
        })
        .collect();
    (examples, table)
}

/// Checks the analytic gradient `grads` of every parameter of a model's
/// store against central differences (ε = 1e-6) of `loss`, to relative
/// error 1e-6 (denominator at least 1e-3); prints and returns the worst.
pub fn check_gradients<M>(
    name: &str,
    m: &mut M,
    store: fn(&mut M) -> &mut ParamStore<f64>,
    grads: &[f64],
    mut loss: impl FnMut(&M) -> f64,
) -> f64 {
    let eps = 1e-6;
    let mut worst = 0.0f64;
    let info = store(m).info().to_vec();
    for info in &info {
        for i in info.range() {
            let v = store(m).params[i];
            store(m).params[i] = v + eps;
            let up = loss(m);
            store(m).params[i] = v - eps;
            let down = loss(m);
            store(m).params[i] = v;
            let num = (up - down) / (2.0 * eps);
            let err = (num - grads[i]).abs() / num.abs().max(grads[i].abs()).max(1e-3);
            assert!(
                err < 1e-6,
                "{name}: {}[{}]: analytic {} numeric {num} (error {err:.1e})",
                info.name,
                i - info.offset,
                grads[i]
            );
            worst = worst.max(err);
        }
    }
    println!(
        "{name}: {} parameters, worst error {worst:.1e}",
        grads.len()
    );
    worst
}
