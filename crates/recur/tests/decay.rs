//! The gradient-decay regulariser (Pascanu et al. 2013): finite
//! differences in f64 of L(θ) = E(θ) + α Ω(θ; g₀), where g₀ = ∂E/∂h_t from
//! E's own backward pass is held constant, as the regulariser defines it.

mod common;
use common::{check_gradients, Layer, Lcg};
use recur::{CellKind, Leak, RnnConfig, RnnInput, RnnWorkspace};

const T: usize = 7;
const B: usize = 3;
const I: usize = 2;
const H: usize = 5;
const ALPHA: f64 = 0.7;

struct Case {
    layer: Layer<f64>,
    x: Vec<f64>,
    h0: Vec<f64>,
    /// E = Σ c ⊙ y + ½ Σ y_T²: output at every step, and more at the last.
    c: Vec<f64>,
}

impl Case {
    fn new(cell: CellKind, seed: u64) -> Case {
        let mut r = Lcg(seed);
        let mut layer = Layer::new(RnnConfig::new(cell, I, H).bias_hh(false));
        layer.store.params = r.vec(layer.store.len(), 0.8);
        Case {
            x: r.vec(T * B * I, 1.0),
            h0: r.vec(B * H, 0.5),
            c: r.vec(T * B * H, 0.3),
            layer,
        }
    }

    /// Runs forward; returns E and leaves dE/dy in `dy`.
    fn task_loss(&self, ws: &mut RnnWorkspace<f64>, dy: &mut Vec<f64>) -> f64 {
        let Layer { rnn, store } = &self.layer;
        rnn.forward(store, ws, RnnInput::new(&self.x, T, B).h0(&self.h0), None)
            .unwrap();
        let y = ws.output();
        dy.clone_from(&self.c);
        let mut e: f64 = y.iter().zip(&self.c).map(|(a, b)| a * b).sum();
        let last = (T - 1) * B * H;
        for i in last..T * B * H {
            e += 0.5 * y[i] * y[i];
            dy[i] += y[i];
        }
        e
    }

    /// E + αΩ(·; g₀) at the store's current parameters.
    fn total(&self, g0: &[f64]) -> f64 {
        let mut ws = RnnWorkspace::new();
        let mut dy = Vec::new();
        let e = self.task_loss(&mut ws, &mut dy);
        let mut store = self.layer.store.clone();
        let mut d_h = vec![0.0; T * B * H];
        let omega = self
            .layer
            .rnn
            .decay_penalty(&mut store, &mut ws, g0, ALPHA, &mut d_h)
            .unwrap();
        e + ALPHA * omega
    }

    /// The analytic gradient of E + αΩ as training computes it: E's
    /// backward (recording g), Ω, then a second backward of Ω's dL/dh.
    fn gradient(&mut self) -> (Vec<f64>, Vec<f64>, f64) {
        let mut ws = RnnWorkspace::new();
        ws.record_state_grads(true);
        let mut dy = Vec::new();
        self.task_loss(&mut ws, &mut dy);
        let Layer { rnn, store } = &mut self.layer;
        store.zero_grad();
        rnn.backward(store, &mut ws, &dy, None, None).unwrap();
        let g0 = ws.state_grads(0, 0).to_vec();
        let mut d_h = vec![0.0; T * B * H];
        let omega = rnn
            .decay_penalty(store, &mut ws, &g0, ALPHA, &mut d_h)
            .unwrap();
        rnn.backward(store, &mut ws, &d_h, None, None).unwrap();
        (store.grads.clone(), g0, omega)
    }
}

fn check(cell: CellKind, seed: u64) {
    let mut case = Case::new(cell, seed);
    let (grads, g0, omega) = case.gradient();
    assert!(omega > 1e-3, "{cell:?}: Ω = {omega} tests nothing");
    assert_eq!(g0.len(), T * B * H);
    let worst = check_gradients(
        &format!("decay penalty, {cell:?}"),
        &mut case,
        |c| &mut c.layer.store,
        &grads,
        |c| c.total(&g0),
    );
    assert!(worst < 1e-6);
}

#[test]
fn decay_penalty_gradient_tanh() {
    check(CellKind::RnnTanh, 3);
    check(CellKind::RnnTanh, 11);
}

#[test]
fn decay_penalty_gradient_relu() {
    check(CellKind::RnnRelu, 5);
}

/// Ω by its definition, row by row, without the layer's GEMMs.
#[test]
fn decay_penalty_value_matches_its_definition() {
    let case = Case::new(CellKind::RnnTanh, 7);
    let mut ws = RnnWorkspace::new();
    let mut dy = Vec::new();
    case.task_loss(&mut ws, &mut dy);
    let g = Lcg(9).vec(T * B * H, 1.0);
    let Layer { rnn, store } = &case.layer;
    let w = rnn.param(store, "weight_hh_l0").unwrap().to_vec();
    let y = ws.output().to_vec();
    let mut want = 0.0;
    for r in 0..T * B {
        let (gr, hr) = (&g[r * H..][..H], &y[r * H..][..H]);
        let v: Vec<f64> = (0..H)
            .map(|j| {
                (0..H)
                    .map(|i| gr[i] * (1.0 - hr[i] * hr[i]) * w[i * H + j])
                    .sum()
            })
            .collect();
        let n = |a: &[f64]| a.iter().map(|x| x * x).sum::<f64>().sqrt();
        want += (n(&v) / n(gr) - 1.0).powi(2);
    }
    want /= (T * B) as f64;
    let mut d_h = vec![0.0; T * B * H];
    let got = rnn
        .decay_penalty(&mut store.clone(), &mut ws, &g, 1.0, &mut d_h)
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn decay_penalty_refuses_other_layers() {
    for cfg in [
        RnnConfig::new(CellKind::Lstm, I, H),
        RnnConfig::new(CellKind::RnnTanh, I, H).layers(2),
        RnnConfig::new(CellKind::RnnTanh, I, H).leak(Leak::Fixed(0.5)),
        RnnConfig::new(CellKind::RnnTanh, I, H).skip(2),
    ] {
        let layer = Layer::<f64>::new(cfg);
        let mut ws = RnnWorkspace::new();
        let x = vec![0.1; T * B * I];
        layer
            .rnn
            .forward(&layer.store, &mut ws, RnnInput::new(&x, T, B), None)
            .unwrap();
        let mut d_h = vec![0.0; T * B * H];
        let err = layer
            .rnn
            .decay_penalty(
                &mut layer.store.clone(),
                &mut ws,
                &vec![1.0; T * B * H],
                1.0,
                &mut d_h,
            )
            .unwrap_err();
        assert!(err.to_string().contains("Elman"), "{err}");
    }
}
