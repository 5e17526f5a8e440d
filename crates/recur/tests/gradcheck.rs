//! Finite-difference gradient checks in f64 for every cell × {1 layer,
//! 2 layers with dropout, 2 bidirectional layers} × {equal, ragged lengths},
//! covering every parameter, x, h0 and c0.
//!
//! Error measures, both held to 1e-6: per element |a − n| / max(1, |a|, |n|),
//! and per tensor ‖a − n‖ / ‖n‖ (a analytic, n numerical).

mod common;
use common::*;
use recur::layer::rnn::Leak;
use recur::{CellKind, RnnConfig, RnnWorkspace};

const EPS: f64 = 1e-5;
const TOL: f64 = 1e-6;
const CELLS: [CellKind; 5] = CellKind::ALL;

fn loss(p: &Problem, seed: Option<u64>) -> f64 {
    let mut layer = Layer::<f64>::new(p.cfg.clone());
    let mut ws = RnnWorkspace::new();
    run(p, &mut layer, &mut ws, seed).loss
}

/// Central differences of the loss with respect to each element of the
/// vector that `field` selects.
fn numeric(p: &Problem, seed: Option<u64>, field: fn(&mut Problem) -> &mut Vec<f64>) -> Vec<f64> {
    let mut q = p.clone();
    let n = field(&mut q).len();
    (0..n)
        .map(|i| {
            let v = field(&mut q)[i];
            field(&mut q)[i] = v + EPS;
            let up = loss(&q, seed);
            field(&mut q)[i] = v - EPS;
            let down = loss(&q, seed);
            field(&mut q)[i] = v;
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

fn compare(what: &str, a: &[f64], n: &[f64]) -> f64 {
    assert_eq!(a.len(), n.len());
    let mut worst = 0.0f64;
    for (i, (x, y)) in a.iter().zip(n).enumerate() {
        let e = (x - y).abs() / 1f64.max(x.abs()).max(y.abs());
        assert!(
            e <= TOL,
            "{what}[{i}]: analytic {x}, numeric {y}, error {e:.2e}"
        );
        worst = worst.max(e);
    }
    let diff: f64 = a
        .iter()
        .zip(n)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = n.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm > 0.0 {
        let e = diff / norm;
        assert!(e <= TOL, "{what}: norm-wise error {e:.2e}");
        worst = worst.max(e);
    }
    worst
}

fn check(cell: CellKind, structure: &str, ragged: bool) -> f64 {
    check_config(RnnConfig::new(cell, 3, 4), structure, ragged, "")
}

/// Every parameter, x, h0 (and c0) of `base` in `structure`.
fn check_config(base: RnnConfig, structure: &str, ragged: bool, options: &str) -> f64 {
    let (t, b) = (5, 3);
    let cell = base.cell;
    let (cfg, seed) = match structure {
        "1 layer" => (base, None),
        "2 layers" => (base.layers(2).dropout(0.3), Some(11)),
        "bidirectional" => (base.layers(2).bidirectional(true), None),
        _ => unreachable!(),
    };
    // Ragged rows out of order, as with enforce_sorted=False.
    let lengths = ragged.then(|| vec![2, 5, 4]);
    let p = Problem::random(cfg.clone(), t, b, lengths, 1234 + cell as u64);
    let mut layer = Layer::<f64>::new(cfg);
    let mut ws = RnnWorkspace::new();
    let out = run(&p, &mut layer, &mut ws, seed);
    let what = format!(
        "{}{options} {structure}{}",
        cell.name(),
        if ragged { " ragged" } else { "" }
    );
    let mut worst = 0.0f64;
    let num_params = numeric(&p, seed, |q| &mut q.params);
    for info in layer.rnn.param_info() {
        let r = info.offset..info.offset + info.len();
        worst = worst.max(compare(
            &format!("{what}: {}", info.name),
            &out.grads[r.clone()],
            &num_params[r],
        ));
    }
    worst = worst.max(compare(
        &format!("{what}: x"),
        &out.dx,
        &numeric(&p, seed, |q| &mut q.x),
    ));
    worst = worst.max(compare(
        &format!("{what}: h0"),
        &out.dh0,
        &numeric(&p, seed, |q| &mut q.h0),
    ));
    if cell.has_cell_state() {
        let num = numeric(&p, seed, |q| q.c0.as_mut().unwrap());
        worst = worst.max(compare(&format!("{what}: c0"), &out.dc0, &num));
    }
    println!("{what:40} worst relative error {worst:.1e}");
    worst
}

fn check_cell(cell: CellKind) {
    for structure in ["1 layer", "2 layers", "bidirectional"] {
        for ragged in [false, true] {
            check(cell, structure, ragged);
        }
    }
}

#[test]
fn rnn_tanh() {
    check_cell(CellKind::RnnTanh);
}
#[test]
fn rnn_relu() {
    check_cell(CellKind::RnnRelu);
}
#[test]
fn lstm() {
    check_cell(CellKind::Lstm);
}
#[test]
fn gru() {
    check_cell(CellKind::Gru);
}
#[test]
fn gru_reset_before() {
    check_cell(CellKind::GruResetBefore);
}

/// The Elman cell's own options, in every structure: a fixed and a learned
/// leak, skip connections (reaching back before the sequence, and past its
/// start in the reverse direction), no `weight_hh`, and no `bias_hh`.
#[test]
fn elman_leak_skip_and_no_hidden_to_hidden() {
    let options = [
        (
            " leak 0.3",
            RnnConfig::new(CellKind::RnnTanh, 3, 4).leak(Leak::Fixed(0.3)),
        ),
        (
            " learned leak",
            RnnConfig::new(CellKind::RnnTanh, 3, 4).leak(Leak::Learned(0.4)),
        ),
        (" skip 2", RnnConfig::new(CellKind::RnnTanh, 3, 4).skip(2)),
        (
            " one bias",
            RnnConfig::new(CellKind::RnnRelu, 3, 4).bias_hh(false),
        ),
        (
            " skip 3 relu",
            RnnConfig::new(CellKind::RnnRelu, 3, 4).skip(3),
        ),
        (" skip 7", RnnConfig::new(CellKind::RnnTanh, 3, 4).skip(7)),
        (
            " skip only",
            RnnConfig::new(CellKind::RnnTanh, 3, 4)
                .skip(2)
                .hidden_to_hidden(false),
        ),
        (
            " everything",
            RnnConfig::new(CellKind::RnnTanh, 3, 4)
                .skip(3)
                .leak(Leak::Learned(0.6)),
        ),
    ];
    for (name, cfg) in options {
        for structure in ["1 layer", "2 layers", "bidirectional"] {
            for ragged in [false, true] {
                check_config(cfg.clone(), structure, ragged, name);
            }
        }
    }
}

/// Dropout is on in the two-layer checks: make sure it really changes the
/// output, so those checks cover its backward pass.
#[test]
fn dropout_changes_the_output_and_is_seeded() {
    for cell in CELLS {
        let cfg = RnnConfig::new(cell, 3, 4).layers(2).dropout(0.3);
        let p = Problem::random(cfg, 5, 3, None, 99);
        let (a, b, c) = (loss(&p, Some(1)), loss(&p, Some(1)), loss(&p, None));
        assert_eq!(a, b, "same seed, same numbers");
        assert_ne!(a, c, "dropout had no effect");
    }
}
