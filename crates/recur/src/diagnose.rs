//! Gradient-flow diagnostics: why gradients vanish or explode over time.
//!
//! Two views of the same product: the size of dL/dh_t at every step (taken
//! from a real backward pass), and the spectral norm σ_max of each step's
//! Jacobian ∂s_t/∂s_{t−1}, whose product carries the gradient back. For a
//! tanh RNN that is diag(1 − h_t²)·W_hh; for an LSTM the state s = (h, c)
//! and the c → c path is diag(f), which is what lets its gradient survive.
//!
//! σ_max comes from power iteration on JᵀJ with matrix-vector products
//! (never forming J), in f64, from what the forward pass saved.

use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::layer::rnn::{Rnn, RnnWorkspace};
use crate::params::ParamStore;

/// The most power-iteration steps per Jacobian. Iteration stops earlier
/// once σ² changes by less than 1e-12 relative between steps; either way
/// the result is deterministic.
pub const POWER_ITERATIONS: usize = 1000;

/// Mean over the B rows of ‖dL/dh_t‖ for each step t, from `grads`
/// `[T, B, H]`.
pub fn state_grad_norms<T: Float>(grads: &[T], steps: usize, batch: usize) -> Vec<f64> {
    if steps == 0 || batch == 0 {
        return Vec::new();
    }
    let h = grads.len() / (steps * batch);
    grads
        .chunks_exact(batch * h)
        .map(|step| {
            step.chunks_exact(h)
                .map(|r| r.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt())
                .sum::<f64>()
                / batch as f64
        })
        .collect()
}

/// σ_max(∂s_t/∂s_{t−1}) for t = 0..T of row `b` of the last forward of a
/// one-layer [`Rnn`] (its first direction): s = h for Elman and GRU
/// (reset-after) cells, s = (h, c) for LSTM. A leaky Elman layer's is
/// (1 − α) I + diag(α ⊙ act′(pre_t)) W_hh. Needs W_hh and no skip
/// connection (whose Jacobian spans d steps).
pub fn rnn_jacobian_norms<T: Float>(
    rnn: &Rnn,
    store: &ParamStore<T>,
    ws: &RnnWorkspace<T>,
    b: usize,
) -> Result<Vec<f64>> {
    let cfg = rnn.config();
    if !ws.ran(cfg) {
        return Err(Error::Order(
            "the step Jacobian needs a forward pass of this layer on the workspace".into(),
        ));
    }
    if ws.is_ragged() {
        return Err(Error::Config(
            "the step Jacobian is measured on batches whose sequences all run every step".into(),
        ));
    }
    if cfg.cell == CellKind::GruResetBefore {
        return Err(Error::Config(
            "the step Jacobian is measured for tanh/relu RNN, LSTM and reset-after GRU cells"
                .into(),
        ));
    }
    if cfg.skip > 0 || !cfg.hidden_to_hidden {
        return Err(Error::Config(
            "the step Jacobian is measured for layers with W_hh and no skip connection".into(),
        ));
    }
    let h = cfg.hidden;
    let (tn, bn) = (ws.steps(), ws.batch());
    check_row(b, bn)?;
    let w = rnn.param(store, "weight_hh_l0").expect("layer 0");
    let g = cfg.cell.gates();
    let mut u = vec![0.0; g * h];
    let mut a = vec![0.0; g * h];
    let mut out = Vec::with_capacity(tn);
    for t in 0..tn {
        let s = ws.saved_step(0, 0, t, b);
        let gv: Vec<f64> = s.gates.iter().map(|v| v.to_f64()).collect();
        let hp: Vec<f64> = s.h_prev.iter().map(|v| v.to_f64()).collect();
        let cp: Vec<f64> = s.c_prev.iter().map(|v| v.to_f64()).collect();
        let ex: Vec<f64> = s.extra.iter().map(|v| v.to_f64()).collect();
        let alpha: Vec<f64> = s.alpha.iter().map(|v| v.to_f64()).collect();
        let sigma = match cfg.cell {
            CellKind::RnnTanh | CellKind::RnnRelu => {
                // α = 1 without a leak: then (1 − α) adds nothing.
                let al = |i: usize| alpha.get(i).copied().unwrap_or(1.0);
                let d: Vec<f64> = gv
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        al(i)
                            * if cfg.cell == CellKind::RnnTanh {
                                1.0 - v * v
                            } else {
                                f64::from(*v > 0.0)
                            }
                    })
                    .collect();
                power_iteration(
                    h,
                    |v, o| {
                        matvec(w, h, h, v, &mut u);
                        (0..h).for_each(|i| o[i] = d[i] * u[i] + (1.0 - al(i)) * v[i]);
                    },
                    |x, o| {
                        (0..h).for_each(|i| a[i] = d[i] * x[i]);
                        matvec_t(w, h, h, &a[..h], o);
                        (0..h).for_each(|i| o[i] += (1.0 - al(i)) * x[i]);
                    },
                )
            }
            CellKind::Lstm => {
                let (gi, gf, gg, go) = (&gv[..h], &gv[h..2 * h], &gv[2 * h..3 * h], &gv[3 * h..]);
                let tc = &ex;
                power_iteration(
                    2 * h,
                    |v, o| {
                        let (vh, vc) = v.split_at(h);
                        matvec(w, 4 * h, h, vh, &mut u);
                        let (oh, oc) = o.split_at_mut(h);
                        for k in 0..h {
                            let di = gi[k] * (1.0 - gi[k]) * u[k];
                            let df = gf[k] * (1.0 - gf[k]) * u[h + k];
                            let dg = (1.0 - gg[k] * gg[k]) * u[2 * h + k];
                            let dout = go[k] * (1.0 - go[k]) * u[3 * h + k];
                            let dc = df * cp[k] + gf[k] * vc[k] + di * gg[k] + gi[k] * dg;
                            oc[k] = dc;
                            oh[k] = dout * tc[k] + go[k] * (1.0 - tc[k] * tc[k]) * dc;
                        }
                    },
                    |x, o| {
                        let (uh, uc) = x.split_at(h);
                        let (oh, oc) = o.split_at_mut(h);
                        for k in 0..h {
                            let ucc = uc[k] + uh[k] * go[k] * (1.0 - tc[k] * tc[k]);
                            a[k] = ucc * gg[k] * gi[k] * (1.0 - gi[k]);
                            a[h + k] = ucc * cp[k] * gf[k] * (1.0 - gf[k]);
                            a[2 * h + k] = ucc * gi[k] * (1.0 - gg[k] * gg[k]);
                            a[3 * h + k] = uh[k] * tc[k] * go[k] * (1.0 - go[k]);
                            oc[k] = ucc * gf[k];
                        }
                        matvec_t(w, 4 * h, h, &a, oh);
                    },
                )
            }
            CellKind::Gru => {
                let (gr, gz, gn) = (&gv[..h], &gv[h..2 * h], &gv[2 * h..]);
                let hn = &ex;
                power_iteration(
                    h,
                    |v, o| {
                        matvec(w, 3 * h, h, v, &mut u);
                        for k in 0..h {
                            let dr = gr[k] * (1.0 - gr[k]) * u[k];
                            let dz = gz[k] * (1.0 - gz[k]) * u[h + k];
                            let dn = (1.0 - gn[k] * gn[k]) * (dr * hn[k] + gr[k] * u[2 * h + k]);
                            o[k] = -dz * gn[k] + (1.0 - gz[k]) * dn + dz * hp[k] + gz[k] * v[k];
                        }
                    },
                    |x, o| {
                        for k in 0..h {
                            let dn_pre = x[k] * (1.0 - gz[k]) * (1.0 - gn[k] * gn[k]);
                            a[k] = dn_pre * hn[k] * gr[k] * (1.0 - gr[k]);
                            a[h + k] = x[k] * (hp[k] - gn[k]) * gz[k] * (1.0 - gz[k]);
                            a[2 * h + k] = dn_pre * gr[k];
                        }
                        matvec_t(w, 3 * h, h, &a, o);
                        (0..h).for_each(|k| o[k] += gz[k] * x[k]);
                    },
                )
            }
            CellKind::GruResetBefore => unreachable!("rejected above"),
        };
        out.push(sigma);
    }
    Ok(out)
}

fn check_row(b: usize, bn: usize) -> Result<()> {
    if b < bn {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "row {b} is outside the batch of {bn}"
        )))
    }
}

/// out = W v for W `[rows, cols]` row-major.
fn matvec<T: Float>(w: &[T], rows: usize, cols: usize, v: &[f64], out: &mut [f64]) {
    for (o, r) in out[..rows].iter_mut().zip(w.chunks_exact(cols)) {
        *o = r.iter().zip(v).map(|(a, b)| a.to_f64() * b).sum();
    }
}

/// out = Wᵀ u for W `[rows, cols]` row-major.
fn matvec_t<T: Float>(w: &[T], rows: usize, cols: usize, u: &[f64], out: &mut [f64]) {
    out[..cols].fill(0.0);
    for (r, &ui) in w.chunks_exact(cols).zip(&u[..rows]) {
        for (o, a) in out[..cols].iter_mut().zip(r) {
            *o += a.to_f64() * ui;
        }
    }
}

/// σ_max of an n×n operator given J·v and Jᵀ·u, by power iteration on JᵀJ
/// from a fixed start, until σ² settles (at most [`POWER_ITERATIONS`] steps).
pub fn power_iteration(
    n: usize,
    mut jv: impl FnMut(&[f64], &mut [f64]),
    mut jtu: impl FnMut(&[f64], &mut [f64]),
) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.5 * ((i as f64) * 0.7).sin())
        .collect();
    let (mut w, mut x) = (vec![0.0; n], vec![0.0; n]);
    let norm = |a: &[f64]| a.iter().map(|e| e * e).sum::<f64>().sqrt();
    let nv = norm(&v);
    v.iter_mut().for_each(|e| *e /= nv);
    let mut last = f64::NAN;
    for _ in 0..POWER_ITERATIONS {
        jv(&v, &mut w);
        jtu(&w, &mut x);
        // vᵀJᵀJv with ‖v‖ = 1: the estimate of σ².
        let sq: f64 = v.iter().zip(&x).map(|(a, b)| a * b).sum();
        if (sq - last).abs() <= 1e-12 * sq {
            break;
        }
        last = sq;
        let nx = norm(&x);
        if nx == 0.0 || !nx.is_finite() {
            return if nx == 0.0 { 0.0 } else { nx };
        }
        v.iter_mut().zip(&x).for_each(|(a, b)| *a = b / nx);
    }
    jv(&v, &mut w);
    norm(&w)
}
