//! Finite-difference checks in f64 for the simple recurrent net (Elman and
//! Jordan nets, leaky units, skip connections, teacher forcing and free
//! running) with each loss it is trained with, and its agreement with the
//! PyTorch-checked `Rnn` layer where the two overlap.

#![allow(clippy::needless_range_loop)]

mod common;
use common::{Layer, Lcg};
use recur::layer::linear::linear_forward;
use recur::layer::loss::softmax_cross_entropy;
use recur::layer::loss::{bce_with_logits, mse};
use recur::layer::srn::{Leak, OutputKind, Srn, SrnActivation, SrnConfig, SrnWorkspace};
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
    cfg: SrnConfig,
    loss: Loss,
    teacher: bool,
}

/// Targets `[T, B, O]`: 0/1 for BCE, one-hot for CE, reals for MSE; and a
/// weight that drops step 0 so masked steps are exercised.
fn data(c: &Case, r: &mut Lcg) -> (Vec<f64>, Vec<f64>, Vec<u32>, Vec<f64>) {
    let o = c.cfg.output_size;
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

/// Loss and dL/dz of the net's last forward.
fn loss_of(
    c: &Case,
    ws: &SrnWorkspace<f64>,
    y: &[f64],
    classes: &[u32],
    w: &[f64],
) -> (f64, Vec<f64>) {
    let z = ws.logits();
    let mut dz = vec![0.0; z.len()];
    let l = match c.loss {
        Loss::Mse => mse(z, y, w, &mut dz),
        Loss::Bce => bce_with_logits(z, y, w, &mut dz),
        Loss::Ce => {
            dz.copy_from_slice(z);
            softmax_cross_entropy(&mut dz, classes, c.cfg.output_size, true)
        }
    };
    (l, dz)
}

fn check(c: Case) {
    let mut r = Lcg(2024);
    let mut store = ParamStore::<f64>::new();
    let net = Srn::new(store.root(), c.cfg.clone()).unwrap();
    for p in store.params.iter_mut() {
        *p = r.next() * 0.7;
    }
    let (x, y, classes, w) = data(&c, &mut r);
    let h0 = r.vec(B * H, 0.5);
    let teacher = c.teacher.then_some(&y[..]);
    let mut ws = SrnWorkspace::new();
    let loss = |store: &ParamStore<f64>, x: &[f64], h0: &[f64], ws: &mut SrnWorkspace<f64>| {
        net.forward(store, ws, x, T, B, Some(h0), teacher).unwrap();
        loss_of(&c, ws, &y, &classes, &w)
    };
    let (_, dz) = loss(&store, &x, &h0, &mut ws);
    net.backward(&mut store, &mut ws, &dz).unwrap();
    let (grads, dx, dh0) = (store.grads.clone(), ws.dx().to_vec(), ws.dh0().to_vec());

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
    let mut ws2 = SrnWorkspace::new();
    for i in 0..store.len() {
        let v = store.params[i];
        store.params[i] = v + eps;
        let up = loss(&store, &x, &h0, &mut ws2).0;
        store.params[i] = v - eps;
        let down = loss(&store, &x, &h0, &mut ws2).0;
        store.params[i] = v;
        let name = &net
            .param_info()
            .iter()
            .rfind(|p| p.offset <= i)
            .unwrap()
            .name;
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

fn elman(o: usize) -> SrnConfig {
    SrnConfig::elman(I, H, o)
}

#[test]
fn elman_tanh_mse() {
    check(Case {
        name: "elman tanh",
        cfg: elman(2),
        loss: Loss::Mse,
        teacher: false,
    });
}

#[test]
fn elman_relu_bce() {
    let cfg = SrnConfig {
        activation: SrnActivation::Relu,
        ..elman(1)
    };
    check(Case {
        name: "elman relu",
        cfg,
        loss: Loss::Bce,
        teacher: false,
    });
}

#[test]
fn leaky_fixed_and_learned() {
    let cfg = SrnConfig {
        leak: Leak::Fixed(0.3),
        ..elman(2)
    };
    check(Case {
        name: "leak fixed",
        cfg,
        loss: Loss::Mse,
        teacher: false,
    });
    let cfg = SrnConfig {
        leak: Leak::Learned(0.4),
        ..elman(3)
    };
    check(Case {
        name: "leak learned",
        cfg,
        loss: Loss::Ce,
        teacher: false,
    });
}

#[test]
fn skip_connections_in_time() {
    for d in [2, 3, T + 2] {
        let cfg = SrnConfig {
            skip: d,
            ..elman(2)
        };
        check(Case {
            name: "skip",
            cfg,
            loss: Loss::Mse,
            teacher: false,
        });
    }
    // Skip path alone, without W_hh.
    let cfg = SrnConfig {
        skip: 2,
        recurrent: false,
        ..elman(2)
    };
    check(Case {
        name: "skip only",
        cfg,
        loss: Loss::Mse,
        teacher: false,
    });
}

#[test]
fn jordan_free_running_and_teacher_forced() {
    for (output, loss, o) in [
        (OutputKind::Sigmoid, Loss::Bce, 2),
        (OutputKind::Softmax, Loss::Ce, 4),
        (OutputKind::Linear, Loss::Mse, 2),
    ] {
        for teacher in [false, true] {
            let cfg = SrnConfig {
                output,
                ..SrnConfig::jordan(I, H, o)
            };
            check(Case {
                name: "jordan",
                cfg,
                loss,
                teacher,
            });
        }
    }
}

#[test]
fn everything_at_once() {
    let cfg = SrnConfig {
        feedback: true,
        output: OutputKind::Softmax,
        leak: Leak::Learned(0.6),
        skip: 3,
        ..elman(3)
    };
    check(Case {
        name: "elman+jordan+leak+skip",
        cfg,
        loss: Loss::Ce,
        teacher: false,
    });
}

/// With no options the net is the `Rnn` layer (checked against PyTorch)
/// followed by a linear readout.
#[test]
fn plain_elman_matches_rnn_layer_and_linear() {
    let o = 3;
    let mut r = Lcg(9);
    let mut ns = ParamStore::<f64>::new();
    let net = Srn::new(ns.root(), elman(o)).unwrap();
    for p in ns.params.iter_mut() {
        *p = r.next() * 0.6;
    }
    let x = r.vec(T * B * I, 1.0);
    let mut ws = SrnWorkspace::new();
    net.forward(&ns, &mut ws, &x, T, B, None, None).unwrap();

    let Layer { rnn, mut store } = Layer::<f64>::new(RnnConfig::new(CellKind::RnnTanh, I, H));
    for (to, from) in [
        ("weight_ih_l0", "weight_ih"),
        ("weight_hh_l0", "weight_hh"),
        ("bias_ih_l0", "bias"),
    ] {
        rnn.param_mut(&mut store, to)
            .unwrap()
            .copy_from_slice(net.param(&ns, from).unwrap());
    }
    let mut rws = RnnWorkspace::new();
    rnn.forward(&store, &mut rws, RnnInput::new(&x, T, B), None)
        .unwrap();
    let mut z = vec![0.0; T * B * o];
    let (w, b) = (
        net.param(&ns, "out.weight").unwrap(),
        net.param(&ns, "out.bias").unwrap(),
    );
    linear_forward(rws.output(), w, b, T * B, H, o, &mut z);
    let err = z
        .iter()
        .zip(ws.logits())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-12, "Srn vs Rnn+Linear: {err}");
}
