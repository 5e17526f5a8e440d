//! The phased LSTM of Neil, Pfeiffer and Liu, "Phased LSTM: Accelerating
//! Recurrent Network Training for Long or Event-based Sequences" (NIPS
//! 2016): an LSTM whose units update only while their time gate is open,
//! driven by each sample's own time stamp, for irregularly sampled series.
//!
//! Per unit j, a period τ_j (learned as log τ_j), a shift s_j, and a fixed
//! open ratio r_on. With φ = ((t − s) mod τ) / τ, the gate is
//! k = 2φ/r_on for φ < r_on/2, 2 − 2φ/r_on for φ < r_on, and αφ after (a
//! small leak α, so a closed gate still passes gradient in training).
//! With the LSTM's proposals c̃ = f ⊙ c_{t−1} + i ⊙ g and h̃ = o ⊙ tanh c̃:
//!
//! ```text
//! c_t = k ⊙ c̃ + (1 − k) ⊙ c_{t−1}
//! h_t = k ⊙ h̃ + (1 − k) ⊙ h_{t−1}
//! ```
//!
//! Gates in PyTorch's order i, f, g, o. Forward is haste's scheme (one
//! input GEMM over T·B rows, then per step one recurrent GEMM and a fused
//! pointwise loop that saves what backward needs); backward runs the steps
//! in reverse and ends with the weight gradients as large GEMMs.

use crate::error::{check_len, Error, Result};
use crate::float::Float;
use crate::gemm::{gemm_nn, gemm_nt, gemm_tn};
use crate::params::{Param, ParamStore, Scope};

/// The shape and fixed settings of a phased LSTM layer.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasedConfig {
    /// I.
    pub input: usize,
    /// H.
    pub hidden: usize,
    /// r_on: the fraction of each period the gate is open (0.05 in the paper).
    pub r_on: f64,
    /// α: the closed gate's leak (0.001 in training in the paper; 0 at test).
    pub leak: f64,
}

/// A phased LSTM layer's tensors in a store: `weight_ih` `[4H, I]`,
/// `weight_hh` `[4H, H]`, `bias` `[4H]`, `log_period` `[H]`, `shift` `[H]`.
#[derive(Clone, Debug)]
pub struct PhasedLstm {
    config: PhasedConfig,
    weight_ih: Param,
    weight_hh: Param,
    bias: Param,
    log_period: Param,
    shift: Param,
}

/// Everything a forward pass saves for backward.
#[derive(Clone, Debug, Default)]
pub struct PhasedWs<T> {
    steps: usize,
    batch: usize,
    /// `[T, B, I]` the input.
    x: Vec<T>,
    /// `[T, B]` time stamps.
    times: Vec<T>,
    /// `[T, B, 4H]` pre-activations, then the activated gates i, f, g, o.
    gates: Vec<T>,
    /// `[T, B, H]` tanh c̃.
    tanh_c: Vec<T>,
    /// `[T, B, H]` c̃.
    c_tilde: Vec<T>,
    /// `[T, B, H]` the time gate k.
    k: Vec<T>,
    /// `[T+1, B, H]` h, slot t the state before step t.
    hs: Vec<T>,
    /// `[T+1, B, H]` c, as `hs`.
    cs: Vec<T>,
    /// `[T, B, 4H]` dL/d(pre-activations).
    d_gates: Vec<T>,
    /// `[B, H]` dL/dh and dL/dc flowing back in time.
    dh: Vec<T>,
    dc: Vec<T>,
    /// `[T, B, I]` dL/dx.
    dx: Vec<T>,
}

impl<T: Float> PhasedWs<T> {
    /// An empty workspace; forward sizes it.
    pub fn new() -> PhasedWs<T> {
        PhasedWs::default()
    }
    /// `[T, B, H]` the outputs h_1..h_T.
    pub fn output(&self) -> &[T] {
        let bh = self.hs.len() / (self.steps + 1);
        &self.hs[bh..]
    }
    /// `[T, B, H]` the time gate's openness at every step.
    pub fn openness(&self) -> &[T] {
        &self.k
    }
    /// `[T, B, I]` dL/dx of the last backward.
    pub fn dx(&self) -> &[T] {
        &self.dx
    }
}

/// The time gate at phase `phi`, and dk/dφ.
fn gate(phi: f64, r_on: f64, leak: f64) -> (f64, f64) {
    if phi < 0.5 * r_on {
        (2.0 * phi / r_on, 2.0 / r_on)
    } else if phi < r_on {
        (2.0 - 2.0 * phi / r_on, -2.0 / r_on)
    } else {
        (leak * phi, leak)
    }
}

/// φ = ((t − s) mod τ)/τ in [0, 1), and n = ⌊(t − s)/τ⌋.
fn phase(t: f64, shift: f64, period: f64) -> (f64, f64) {
    let n = ((t - shift) / period).floor();
    (((t - shift) - n * period) / period, n)
}

impl PhasedLstm {
    /// Registers the tensors in `scope` (all zero; see [`PhasedLstm::init`]).
    pub fn new<T: Float>(mut scope: Scope<'_, T>, config: PhasedConfig) -> Result<PhasedLstm> {
        let (i, h) = (config.input, config.hidden);
        if i == 0
            || h == 0
            || !(config.r_on > 0.0 && config.r_on <= 1.0)
            || config.leak.is_nan()
            || config.leak < 0.0
        {
            return Err(Error::Config(format!(
                "a phased LSTM needs I, H ≥ 1, r_on in (0, 1] and a leak ≥ 0 (got {i}, {h}, {}, {})",
                config.r_on, config.leak
            )));
        }
        Ok(PhasedLstm {
            weight_ih: scope.add("weight_ih", &[4 * h, i]),
            weight_hh: scope.add("weight_hh", &[4 * h, h]),
            bias: scope.add("bias", &[4 * h]),
            log_period: scope.add("log_period", &[h]),
            shift: scope.add("shift", &[h]),
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &PhasedConfig {
        &self.config
    }

    /// The paper's start: weights U(−1/√H, 1/√H), forget bias 1, periods
    /// drawn log-uniformly from [`min_period`, `max_period`], shifts
    /// uniformly from [0, τ).
    pub fn init<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        min_period: f64,
        max_period: f64,
        rng: &mut dyn rand::RngCore,
    ) {
        use rand::Rng;
        let h = self.config.hidden;
        let k = 1.0 / (h as f64).sqrt();
        let p = &mut store.params;
        for r in [
            self.weight_ih.range(),
            self.weight_hh.range(),
            self.bias.range(),
        ] {
            for v in &mut p[r] {
                *v = T::from_f64(rng.random_range(-k..k));
            }
        }
        for v in &mut p[self.bias.range()][h..2 * h] {
            *v = T::from_f64(1.0);
        }
        let (lo, hi) = (min_period.ln(), max_period.ln().max(min_period.ln() + 1e-9));
        for j in 0..h {
            let lp = rng.random_range(lo..hi);
            p[self.log_period.offset + j] = T::from_f64(lp);
            p[self.shift.offset + j] = T::from_f64(rng.random_range(0.0..lp.exp()));
        }
    }

    /// Runs the layer over `x` `[T, B, I]` with time stamps `times` `[T, B]`
    /// from zero states; the outputs are [`PhasedWs::output`].
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut PhasedWs<T>,
        x: &[T],
        times: &[T],
        steps: usize,
        batch: usize,
    ) -> Result<()> {
        let PhasedConfig {
            input: ni,
            hidden: h,
            r_on,
            leak,
        } = self.config;
        let (tn, bn) = (steps, batch);
        check_len(
            "x",
            || format!("[T={tn}, B={bn}, I={ni}]"),
            tn * bn * ni,
            x.len(),
        )?;
        check_len(
            "times",
            || format!("[T={tn}, B={bn}]"),
            tn * bn,
            times.len(),
        )?;
        if let Some(bad) = times.iter().find(|t| !t.to_f64().is_finite()) {
            return Err(Error::input(
                "times",
                format!("time stamps must be finite, got {}", bad.to_f64()),
            ));
        }
        let p = &store.params;
        let (w_ih, w_hh, bias) = (self.weight_ih.of(p), self.weight_hh.of(p), self.bias.of(p));
        let (log_period, shift) = (self.log_period.of(p), self.shift.of(p));
        let (g4, bh) = (4 * h, bn * h);
        ws.steps = tn;
        ws.batch = bn;
        ws.x.clear();
        ws.x.extend_from_slice(x);
        ws.times.clear();
        ws.times.extend_from_slice(times);
        ws.gates.resize(tn * bn * g4, T::ZERO);
        ws.tanh_c.resize(tn * bh, T::ZERO);
        ws.c_tilde.resize(tn * bh, T::ZERO);
        ws.k.resize(tn * bh, T::ZERO);
        ws.hs.clear();
        ws.hs.resize((tn + 1) * bh, T::ZERO);
        ws.cs.clear();
        ws.cs.resize((tn + 1) * bh, T::ZERO);
        // The time gate depends only on the stamps: all of it up front.
        let periods: Vec<f64> = log_period.iter().map(|v| v.to_f64().exp()).collect();
        for (r, &stamp) in times.iter().enumerate() {
            for j in 0..h {
                let (phi, _) = phase(stamp.to_f64(), shift[j].to_f64(), periods[j]);
                ws.k[r * h + j] = T::from_f64(gate(phi, r_on, leak).0);
            }
        }
        // One input GEMM over every row.
        gemm_nt(tn * bn, g4, ni, x, ni, w_ih, &mut ws.gates, g4, false);
        for t in 0..tn {
            let (h_before, h_after) = ws.hs.split_at_mut((t + 1) * bh);
            let h_prev = &h_before[t * bh..];
            let gates = &mut ws.gates[t * bn * g4..][..bn * g4];
            gemm_nt(bn, g4, h, h_prev, h, w_hh, gates, g4, true);
            let (c_before, c_after) = ws.cs.split_at_mut((t + 1) * bh);
            let c_prev = &c_before[t * bh..];
            for b in 0..bn {
                let row = &mut gates[b * g4..][..g4];
                for j in 0..h {
                    let i = (row[j] + bias[j]).sigmoid();
                    let f = (row[h + j] + bias[h + j]).sigmoid();
                    let g = (row[2 * h + j] + bias[2 * h + j]).tanh();
                    let o = (row[3 * h + j] + bias[3 * h + j]).sigmoid();
                    row[j] = i;
                    row[h + j] = f;
                    row[2 * h + j] = g;
                    row[3 * h + j] = o;
                    let s = b * h + j;
                    let ct = f * c_prev[s] + i * g;
                    let th = ct.tanh();
                    let at = t * bh + s;
                    let k = ws.k[at];
                    ws.c_tilde[at] = ct;
                    ws.tanh_c[at] = th;
                    c_after[s] = k * ct + (T::ONE - k) * c_prev[s];
                    h_after[s] = k * (o * th) + (T::ONE - k) * h_prev[s];
                }
            }
        }
        Ok(())
    }

    /// Backpropagation through time for the last forward on `ws`, from dL/dy
    /// `[T, B, H]`: adds dL/dparams into the store's gradients and leaves
    /// dL/dx in [`PhasedWs::dx`].
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut PhasedWs<T>,
        dy: &[T],
    ) -> Result<()> {
        let PhasedConfig {
            input: ni,
            hidden: h,
            r_on,
            leak,
        } = self.config;
        let (tn, bn) = (ws.steps, ws.batch);
        check_len(
            "dy",
            || format!("[T={tn}, B={bn}, H={h}]"),
            tn * bn * h,
            dy.len(),
        )?;
        if ws.hs.len() != (tn + 1) * bn * h {
            return Err(Error::Order(
                "backward needs a forward pass of this layer on the workspace first".into(),
            ));
        }
        let (g4, bh) = (4 * h, bn * h);
        let ParamStore { params, grads, .. } = store;
        let (w_ih, w_hh) = (self.weight_ih.of(params), self.weight_hh.of(params));
        let (log_period, shift) = (self.log_period.of(params), self.shift.of(params));
        ws.d_gates.resize(tn * bn * g4, T::ZERO);
        ws.dh.clear();
        ws.dh.resize(bh, T::ZERO);
        ws.dc.clear();
        ws.dc.resize(bh, T::ZERO);
        let mut d_log_period = vec![0.0f64; h];
        let mut d_shift = vec![0.0f64; h];
        let periods: Vec<f64> = log_period.iter().map(|v| v.to_f64().exp()).collect();
        for t in (0..tn).rev() {
            let h_prev = &ws.hs[t * bh..][..bh];
            let c_prev = &ws.cs[t * bh..][..bh];
            let gates = &ws.gates[t * bn * g4..][..bn * g4];
            let d_gates = &mut ws.d_gates[t * bn * g4..][..bn * g4];
            for b in 0..bn {
                let row = &gates[b * g4..][..g4];
                let drow = &mut d_gates[b * g4..][..g4];
                let stamp = ws.times[t * bn + b].to_f64();
                for j in 0..h {
                    let s = b * h + j;
                    let at = t * bh + s;
                    let (i, f, g, o) = (row[j], row[h + j], row[2 * h + j], row[3 * h + j]);
                    let (ct, th, k) = (ws.c_tilde[at], ws.tanh_c[at], ws.k[at]);
                    let dh = ws.dh[s] + dy[at];
                    let dc = ws.dc[s];
                    // h = k h̃ + (1 − k) h_prev, c = k c̃ + (1 − k) c_prev.
                    let dk = dh * (o * th - h_prev[s]) + dc * (ct - c_prev[s]);
                    let dht = k * dh;
                    let dct = k * dc + dht * o * (T::ONE - th * th);
                    // The time gate's parameters, through φ.
                    let period = periods[j];
                    let (phi, n) = phase(stamp, shift[j].to_f64(), period);
                    let dphi = dk.to_f64() * gate(phi, r_on, leak).1;
                    // φ = (t − s)/τ − n: ∂φ/∂log τ = −(φ + n), ∂φ/∂s = −1/τ.
                    d_log_period[j] -= dphi * (phi + n);
                    d_shift[j] -= dphi / period;
                    drow[j] = dct * g * i * (T::ONE - i);
                    drow[h + j] = dct * c_prev[s] * f * (T::ONE - f);
                    drow[2 * h + j] = dct * i * (T::ONE - g * g);
                    drow[3 * h + j] = dht * th * o * (T::ONE - o);
                    ws.dc[s] = (T::ONE - k) * dc + dct * f;
                    ws.dh[s] = (T::ONE - k) * dh;
                }
            }
            // dL/dh_prev through W_hh.
            gemm_nn(bn, h, g4, d_gates, g4, w_hh, &mut ws.dh, h, true);
        }
        // The weight gradients as large GEMMs over every row.
        let rows = tn * bn;
        gemm_tn(
            g4,
            ni,
            rows,
            &ws.d_gates,
            g4,
            &ws.x,
            &mut grads[self.weight_ih.range()],
        );
        gemm_tn(
            g4,
            h,
            rows,
            &ws.d_gates,
            g4,
            &ws.hs[..rows * h],
            &mut grads[self.weight_hh.range()],
        );
        let db = &mut grads[self.bias.range()];
        for r in ws.d_gates.chunks_exact(g4) {
            for (d, &v) in db.iter_mut().zip(r) {
                *d += v;
            }
        }
        for j in 0..h {
            let a = self.log_period.offset + j;
            grads[a] += T::from_f64(d_log_period[j]);
            let a = self.shift.offset + j;
            grads[a] += T::from_f64(d_shift[j]);
        }
        ws.dx.resize(rows * ni, T::ZERO);
        gemm_nn(rows, ni, g4, &ws.d_gates, g4, w_ih, &mut ws.dx, ni, false);
        Ok(())
    }
}
