//! Finite-difference checks in f64 for the Jordan net (an Elman layer run
//! step by step, fed back its output: free running and teacher forced, with
//! each output and loss it is trained with, leaky units and a skip
//! connection), and the step-by-step pass of the recurrent layer against
//! the whole-sequence pass.

#![allow(clippy::needless_range_loop)]

mod common;
use common::{Layer, Lcg};
use recur::layer::loss::{bce_with_logits, mse, softmax_cross_entropy};
use recur::layer::rnn::Leak;
use recur::model::jordan::{JordanNet, JordanWorkspace, OutputKind};
use recur::{CellKind, ParamStore, RnnConfig, RnnInput, RnnWorkspace};

const T: usize = 7;
const B: usize = 3;
const I: usize = 2;
const H: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Loss {
    Mse,
    Bce,
    Ce,
}

struct Case {
    name: &'static str,
    layer: RnnConfig,
    output: OutputKind,
    loss: Loss,
    teacher: bool,
}

impl Case {
    fn o(&self) -> usize {
        self.layer.input - I
    }
}

/// A Jordan net's hidden layer for O outputs: tanh, no W_hh, one bias.
fn jordan(o: usize) -> RnnConfig {
    RnnConfig::new(CellKind::RnnTanh, I + o, H)
        .hidden_to_hidden(false)
        .bias_hh(false)
}

/// Targets `[T, B, O]`: 0/1 for BCE, one-hot for CE, reals for MSE; and a
/// weight that drops step 0 so masked steps are exercised.
fn data(c: &Case, r: &mut Lcg) -> (Vec<f64>, Vec<f64>, Vec<u32>, Vec<f64>) {
    let o = c.o();
    let x = r.vec(T * B * I, 1.0);
    let mut y = vec![0.0; T * B * o];
    let mut classes = vec![0u32; T * B];
    for (row, cls) in y.chunks_exact_mut(o).zip(&mut classes) {
        match c.loss {
            Loss::Mse => row.iter_mut().for_each(|v| *v = r.next()),
            Loss::Bce => row.iter_mut().for_each(|v| *v = f64::from(r.next() > 0.0)),
            Loss::Ce => {
                *cls = ((r.next() + 1.0) * 0.5 * o as f64) as u32 % o as u32;
                row[*cls as usize] = 1.0;
            }
        }
    }
    let mut w = vec![1.0; T * B * o];
    w[..B * o].fill(0.0);
    (x, y, classes, w)
}

/// Loss and dL/dz of logits `z`.
fn loss_of(c: &Case, z: &[f64], y: &[f64], classes: &[u32], w: &[f64]) -> (f64, Vec<f64>) {
    let mut dz = vec![0.0; z.len()];
    let l = match c.loss {
        Loss::Mse => mse(z, y, w, &mut dz),
        Loss::Bce => bce_with_logits(z, y, w, &mut dz),
        Loss::Ce => {
            dz.copy_from_slice(z);
            softmax_cross_entropy(&mut dz, classes, c.o(), true)
        }
    };
    (l, dz)
}

fn check(c: Case) {
    let mut r = Lcg(2024);
    let mut store = ParamStore::<f64>::new();
    let net = JordanNet::new(store.root(), c.layer.clone(), I, c.output).unwrap();
    for p in store.params.iter_mut() {
        *p = r.next() * 0.7;
    }
    let (x, y, classes, w) = data(&c, &mut r);
    let h0 = r.vec(B * H, 0.5);
    let teacher = c.teacher.then_some(&y[..]);
    let loss = |store: &ParamStore<f64>, x: &[f64], h0: &[f64], ws: &mut JordanWorkspace<f64>| {
        net.forward(store, ws, x, T, B, Some(h0), teacher).unwrap();
        loss_of(&c, ws.logits(), &y, &classes, &w)
    };
    let mut ws = JordanWorkspace::new();
    let (_, dz) = loss(&store, &x, &h0, &mut ws);
    store.zero_grad();
    net.backward(&mut store, &mut ws, &dz).unwrap();
    let grads = store.grads.clone();
    // dL/dx: the first I columns of the layer's input gradient.
    let dx: Vec<f64> = ws
        .rnn()
        .dx()
        .chunks_exact(I + c.o())
        .flat_map(|row| row[..I].to_vec())
        .collect();
    let dh0 = ws.rnn().dh0().to_vec();

    let eps = 1e-6;
    let mut worst = 0.0f64;
    let mut compare = |what: String, analytic: f64, up: f64, down: f64| {
        let numeric = (up - down) / (2.0 * eps);
        let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
        assert!(
            err < 1e-6,
            "{}: {what}: analytic {analytic} numeric {numeric}",
            c.name
        );
        worst = worst.max(err);
    };
    let mut ws2 = JordanWorkspace::new();
    for i in 0..store.len() {
        let v = store.params[i];
        store.params[i] = v + eps;
        let up = loss(&store, &x, &h0, &mut ws2).0;
        store.params[i] = v - eps;
        let down = loss(&store, &x, &h0, &mut ws2).0;
        store.params[i] = v;
        let name = &store.info().iter().rfind(|p| p.offset <= i).unwrap().name;
        compare(format!("{name}[{i}]"), grads[i], up, down);
    }
    for (buf, analytic, label) in [(x.clone(), &dx, "x"), (h0.clone(), &dh0, "h0")] {
        for i in 0..buf.len() {
            let mut plus = buf.clone();
            plus[i] += eps;
            let mut minus = buf.clone();
            minus[i] -= eps;
            let (up, down) = if label == "x" {
                (
                    loss(&store, &plus, &h0, &mut ws2).0,
                    loss(&store, &minus, &h0, &mut ws2).0,
                )
            } else {
                (
                    loss(&store, &x, &plus, &mut ws2).0,
                    loss(&store, &x, &minus, &mut ws2).0,
                )
            };
            compare(format!("{label}[{i}]"), analytic[i], up, down);
        }
    }
    eprintln!("{}: worst relative error {worst:.2e}", c.name);
}

#[test]
fn jordan_free_running_and_teacher_forced() {
    for (output, loss, o) in [
        (OutputKind::Sigmoid, Loss::Bce, 2),
        (OutputKind::Softmax, Loss::Ce, 4),
        (OutputKind::Linear, Loss::Mse, 2),
    ] {
        for teacher in [false, true] {
            check(Case {
                name: "jordan",
                layer: jordan(o),
                output,
                loss,
                teacher,
            });
        }
    }
}

#[test]
fn jordan_with_leak_and_skip() {
    check(Case {
        name: "jordan leak 0.3",
        layer: jordan(2).leak(Leak::Fixed(0.3)),
        output: OutputKind::Sigmoid,
        loss: Loss::Bce,
        teacher: false,
    });
    check(Case {
        name: "jordan skip 3, relu",
        layer: RnnConfig {
            cell: CellKind::RnnRelu,
            ..jordan(2).skip(3)
        },
        output: OutputKind::Linear,
        loss: Loss::Mse,
        teacher: false,
    });
}

#[test]
fn elman_jordan_hybrid_with_everything() {
    check(Case {
        name: "elman+jordan+learned leak+skip",
        layer: jordan(3)
            .hidden_to_hidden(true)
            .leak(Leak::Learned(0.6))
            .skip(3),
        output: OutputKind::Softmax,
        loss: Loss::Ce,
        teacher: false,
    });
}

/// The step-by-step pass is the whole-sequence pass run one step at a
/// time: the same outputs, states and gradients (multi-layer, every cell).
#[test]
fn step_by_step_equals_the_whole_sequence() {
    for cell in [
        CellKind::RnnTanh,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::GruResetBefore,
    ] {
        for cfg in [
            RnnConfig::new(cell, I, H).layers(2),
            RnnConfig::new(cell, I, H).layers(1),
        ] {
            let mut r = Lcg(5);
            let Layer { rnn, mut store } = Layer::<f64>::new(cfg.clone());
            store.params.iter_mut().for_each(|p| *p = r.next() * 0.6);
            let x = r.vec(T * B * I, 1.0);
            let n_state = cfg.layers * B * H;
            let h0 = r.vec(n_state, 0.5);
            let c0 = r.vec(n_state, 0.5);
            let dy = r.vec(T * B * H, 1.0);
            let lstm = cell == CellKind::Lstm;
            let mut input = RnnInput::new(&x, T, B).h0(&h0);
            if lstm {
                input = input.c0(&c0);
            }
            let mut whole = RnnWorkspace::new();
            rnn.forward(&store, &mut whole, input, None).unwrap();
            store.zero_grad();
            rnn.backward(&mut store, &mut whole, &dy, None, None)
                .unwrap();
            let grads = store.grads.clone();

            let mut ws = RnnWorkspace::new();
            let c0s = lstm.then_some(&c0[..]);
            rnn.start(&store, &mut ws, B, T + 2, Some(&h0), c0s)
                .unwrap();
            for t in 0..T {
                rnn.step(&store, &mut ws, &x[t * B * I..][..B * I], None)
                    .unwrap();
            }
            let close = |what: &str, a: &[f64], b: &[f64]| {
                assert_eq!(a.len(), b.len(), "{what}");
                let e = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(e < 1e-13, "{} {what}: {e}", cell.name());
            };
            close("y", ws.output(), whole.output());
            close("h_n", ws.h_n(), whole.h_n());
            close("c_n", ws.c_n(), whole.c_n());
            store.zero_grad();
            for t in (0..T).rev() {
                rnn.step_backward(&store, &mut ws, &dy[t * B * H..][..B * H], None, None)
                    .unwrap();
            }
            rnn.finish_backward(&mut store, &mut ws).unwrap();
            close("grads", &store.grads, &grads);
            close("dx", ws.dx(), whole.dx());
            close("dh0", ws.dh0(), whole.dh0());
            close("dc0", ws.dc0(), whole.dc0());
        }
    }
}

/// Misused step by step, the layer says what is out of order instead of
/// panicking or reading stale buffers.
#[test]
fn step_by_step_out_of_order_is_an_error() {
    let Layer { rnn, mut store } = Layer::<f64>::new(RnnConfig::new(CellKind::Lstm, I, H));
    let mut ws = RnnWorkspace::new();
    let x = vec![0.1; B * I];
    let dy = vec![0.1; B * H];
    assert!(
        rnn.step(&store, &mut ws, &x, None).is_err(),
        "step before start"
    );
    rnn.start(&store, &mut ws, B, 3, None, None).unwrap();
    for _ in 0..3 {
        rnn.step(&store, &mut ws, &x, None).unwrap();
    }
    assert!(
        rnn.step(&store, &mut ws, &x, None).is_err(),
        "past the capacity"
    );
    // A new pass, then backward before any step.
    rnn.start(&store, &mut ws, B, 3, None, None).unwrap();
    assert!(rnn.step_backward(&store, &mut ws, &dy, None, None).is_err());
    assert!(rnn.finish_backward(&mut store, &mut ws).is_err());
    rnn.step(&store, &mut ws, &x, None).unwrap();
    rnn.step_backward(&store, &mut ws, &dy, None, None).unwrap();
    assert!(
        rnn.step(&store, &mut ws, &x, None).is_err(),
        "forward after backward began"
    );
    rnn.finish_backward(&mut store, &mut ws).unwrap();
    assert!(rnn.finish_backward(&mut store, &mut ws).is_err(), "twice");
    assert!(rnn.step_backward(&store, &mut ws, &dy, None, None).is_err());
}
