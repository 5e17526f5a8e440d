//! The fused layer against a plain per-step, per-row reference written
//! straight from the cell equations, on odd shapes.

mod common;
use common::*;
use recur::{CellKind, RnnConfig, RnnWorkspace};

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `w[rows, cols] · v` for rows `r0..r0+n`.
fn matvec(w: &[f64], cols: usize, r0: usize, n: usize, v: &[f64]) -> Vec<f64> {
    (r0..r0 + n)
        .map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum())
        .collect()
}

/// Returns (y, h_n, c_n) computed one row and one step at a time.
fn reference(layer: &Layer<f64>, p: &Problem) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cfg = &p.cfg;
    let (t_len, bn, h, d) = (p.t, p.b, cfg.hidden, cfg.directions());
    let mut input = p.x.clone();
    let mut width = cfg.input;
    let n_state = cfg.layers * d * bn * h;
    let (mut h_n, mut c_n) = (vec![0.0; n_state], vec![0.0; n_state]);
    for l in 0..cfg.layers {
        let mut y = vec![0.0; t_len * bn * d * h];
        for dir in 0..d {
            let sfx = if dir == 1 { "_reverse" } else { "" };
            let w_ih = layer
                .rnn
                .param(&layer.store, &format!("weight_ih_l{l}{sfx}"))
                .unwrap();
            let w_hh = layer
                .rnn
                .param(&layer.store, &format!("weight_hh_l{l}{sfx}"))
                .unwrap();
            let b_ih = layer
                .rnn
                .param(&layer.store, &format!("bias_ih_l{l}{sfx}"))
                .unwrap();
            let b_hh = layer
                .rnn
                .param(&layer.store, &format!("bias_hh_l{l}{sfx}"))
                .unwrap();
            let k = l * d + dir;
            for b in 0..bn {
                let len = p.lengths.as_ref().map_or(t_len, |v| v[b]);
                let mut hv = p.h0[(k * bn + b) * h..][..h].to_vec();
                let mut cv =
                    p.c0.as_ref()
                        .map_or(vec![0.0; h], |c| c[(k * bn + b) * h..][..h].to_vec());
                let order: Vec<usize> = if dir == 0 {
                    (0..len).collect()
                } else {
                    (0..len).rev().collect()
                };
                for t in order {
                    let x = &input[(t * bn + b) * width..][..width];
                    let gate = |g: usize, v: &[f64]| -> (Vec<f64>, Vec<f64>) {
                        let xi = matvec(w_ih, width, g * h, h, x);
                        let hh = matvec(w_hh, h, g * h, h, v);
                        let xi = xi.iter().zip(&b_ih[g * h..]).map(|(a, c)| a + c).collect();
                        let hh = hh.iter().zip(&b_hh[g * h..]).map(|(a, c)| a + c).collect();
                        (xi, hh)
                    };
                    let sum = |(a, c): (Vec<f64>, Vec<f64>)| -> Vec<f64> {
                        a.iter().zip(&c).map(|(x, y)| x + y).collect()
                    };
                    hv = match cfg.cell {
                        CellKind::RnnTanh => sum(gate(0, &hv)).iter().map(|v| v.tanh()).collect(),
                        CellKind::RnnRelu => sum(gate(0, &hv)).iter().map(|v| v.max(0.0)).collect(),
                        CellKind::Lstm => {
                            let (i, f, g, o) = (
                                sum(gate(0, &hv)),
                                sum(gate(1, &hv)),
                                sum(gate(2, &hv)),
                                sum(gate(3, &hv)),
                            );
                            cv = (0..h)
                                .map(|j| sig(f[j]) * cv[j] + sig(i[j]) * g[j].tanh())
                                .collect();
                            (0..h).map(|j| sig(o[j]) * cv[j].tanh()).collect()
                        }
                        CellKind::Gru => {
                            let (r, z) = (sum(gate(0, &hv)), sum(gate(1, &hv)));
                            let (xn, hn) = gate(2, &hv);
                            (0..h)
                                .map(|j| {
                                    let n = (xn[j] + sig(r[j]) * hn[j]).tanh();
                                    (1.0 - sig(z[j])) * n + sig(z[j]) * hv[j]
                                })
                                .collect()
                        }
                        CellKind::GruResetBefore => {
                            let (r, z) = (sum(gate(0, &hv)), sum(gate(1, &hv)));
                            let rh: Vec<f64> = (0..h).map(|j| sig(r[j]) * hv[j]).collect();
                            let n = sum(gate(2, &rh));
                            (0..h)
                                .map(|j| (1.0 - sig(z[j])) * n[j].tanh() + sig(z[j]) * hv[j])
                                .collect()
                        }
                    };
                    y[(t * bn + b) * d * h + dir * h..][..h].copy_from_slice(&hv);
                }
                h_n[(k * bn + b) * h..][..h].copy_from_slice(&hv);
                c_n[(k * bn + b) * h..][..h].copy_from_slice(&cv);
            }
        }
        input = y;
        width = d * h;
    }
    if !cfg.cell.has_cell_state() {
        c_n.clear();
    }
    (input, h_n, c_n)
}

fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: fused {x}, reference {y}"
        );
    }
}

#[test]
fn fused_layer_matches_per_step_reference_on_odd_shapes() {
    let cells = [
        CellKind::RnnTanh,
        CellKind::RnnRelu,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::GruResetBefore,
    ];
    // (I, H, T, B, layers, bidirectional, lengths)
    type Shape = (usize, usize, usize, usize, usize, bool, Option<Vec<usize>>);
    let shapes: [Shape; 6] = [
        (3, 7, 1, 1, 1, false, None),
        (3, 7, 1, 1, 2, true, None),
        (1, 1, 6, 2, 1, false, None),
        (3, 7, 9, 1, 2, true, None),
        (5, 7, 7, 4, 2, true, Some(vec![7, 1, 3, 6])),
        (2, 17, 4, 3, 3, false, Some(vec![4, 4, 2])),
    ];
    for cell in cells {
        for (n, (i, h, t, b, layers, bi, lengths)) in shapes.iter().cloned().enumerate() {
            let cfg = RnnConfig::new(cell, i, h).layers(layers).bidirectional(bi);
            let p = Problem::random(cfg.clone(), t, b, lengths, 7 + n as u64);
            let mut layer = Layer::<f64>::new(cfg.clone());
            layer.store.params = p.params.clone();
            let (y, h_n, c_n) = reference(&layer, &p);
            let what = format!("{} shape {n}", cell.name());
            let mut ws = RnnWorkspace::new();
            let out = run(&p, &mut layer, &mut ws, None);
            close(&format!("{what} y"), &out.y, &y, 1e-12);
            close(&format!("{what} h_n"), &out.h_n, &h_n, 1e-12);
            close(&format!("{what} c_n"), &out.c_n, &c_n, 1e-12);
            let mut layer32 = Layer::<f32>::new(cfg);
            let mut ws32 = RnnWorkspace::new();
            let out = run(&p, &mut layer32, &mut ws32, None);
            close(&format!("{what} y f32"), &out.y, &y, 1e-5);
            close(&format!("{what} h_n f32"), &out.h_n, &h_n, 1e-5);
        }
    }
}
