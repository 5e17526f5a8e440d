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
use multiversion::multiversion;

use crate::cell::{blocks, blocks_mut};
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
    /// `[T, B, H]` dk/dφ.
    dk_dphi: Vec<T>,
    /// `[T, B, H]` φ + n, so that ∂φ/∂log τ = −(φ + n).
    phase_n: Vec<T>,
    /// `[T, B, H]` dL/dφ (backward), reduced into the periods' and shifts'
    /// gradients after the time loop.
    d_phi: Vec<T>,
    /// `[H]` the periods τ = exp(log τ).
    periods: Vec<f64>,
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

/// The time gate of one row at time stamp `stamp` for every unit: k,
/// dk/dφ and φ + n (each `[H]`), with `gate` = (r_on, α).
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn time_gate_row<T: Float>(
    stamp: f64,
    shift: &[T],
    periods: &[f64],
    (r_on, leak): (f64, f64),
    k: &mut [T],
    dk_dphi: &mut [T],
    phase_n: &mut [T],
) {
    for ((((kv, dv), pv), &s), &period) in k
        .iter_mut()
        .zip(dk_dphi.iter_mut())
        .zip(phase_n.iter_mut())
        .zip(shift)
        .zip(periods)
    {
        let (phi, n) = phase(stamp, s.to_f64(), period);
        let (g, dg) = gate(phi, r_on, leak);
        *kv = T::from_f64(g);
        *dv = T::from_f64(dg);
        *pv = T::from_f64(phi + n);
    }
}

/// The time gate at phase `phi`, and dk/dφ.
#[inline(always)]
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
#[inline(always)]
fn phase(t: f64, shift: f64, period: f64) -> (f64, f64) {
    let n = ((t - shift) / period).floor();
    (((t - shift) - n * period) / period, n)
}

/// One forward step's pointwise work for B rows: the gates activated in
/// place (`gates` `[B, 4H]`, i, f, g, o, pre-activations without bias in),
/// c̃ = f·c + i·g, tanh c̃, and the states moved as far as the time gate
/// `k` `[B, H]` opens: c' = k·c̃ + (1 − k)·c, h' = k·o·tanh c̃ + (1 − k)·h.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn forward_step<T: Float>(
    h: usize,
    bias: &[T],
    gates: &mut [T],
    h_prev: &[T],
    c_prev: &[T],
    k: &[T],
    c_tilde: &mut [T],
    tanh_c: &mut [T],
    c_new: &mut [T],
    h_new: &mut [T],
) {
    let [bi, bf, bg, bo] = blocks::<T, 4>(bias, h);
    for (b, row) in gates.chunks_exact_mut(4 * h).enumerate() {
        let [gi, gf, gg, go] = blocks_mut::<T, 4>(row, h);
        // Simple passes vectorise, as in the LSTM's kernel.
        for (g, &v) in gi.iter_mut().zip(bi) {
            *g = (*g + v).sigmoid();
        }
        for (g, &v) in gf.iter_mut().zip(bf) {
            *g = (*g + v).sigmoid();
        }
        for (g, &v) in gg.iter_mut().zip(bg) {
            *g = (*g + v).tanh();
        }
        for (g, &v) in go.iter_mut().zip(bo) {
            *g = (*g + v).sigmoid();
        }
        let r = b * h..(b + 1) * h;
        let (cp, hp, kr) = (&c_prev[r.clone()], &h_prev[r.clone()], &k[r.clone()]);
        let ct = &mut c_tilde[r.clone()];
        for (c, ((&p, &i), (&f, &g))) in ct
            .iter_mut()
            .zip(cp.iter().zip(gi.iter()).zip(gf.iter().zip(gg.iter())))
        {
            *c = f * p + i * g;
        }
        let th = &mut tanh_c[r.clone()];
        for (t, &c) in th.iter_mut().zip(ct.iter()) {
            *t = c.tanh();
        }
        for ((cn, hn), (((&kk, &c), &p), ((&t, &o), &q))) in
            c_new[r.clone()].iter_mut().zip(h_new[r].iter_mut()).zip(
                kr.iter()
                    .zip(ct.iter())
                    .zip(cp.iter())
                    .zip(th.iter().zip(go.iter()).zip(hp.iter())),
            )
        {
            *cn = kk * c + (T::ONE - kk) * p;
            *hn = kk * (o * t) + (T::ONE - kk) * q;
        }
    }
}

/// What one backward step reads of the forward pass, each `[B, H]`.
struct StepSaved<'a, T> {
    h_prev: &'a [T],
    c_prev: &'a [T],
    c_tilde: &'a [T],
    tanh_c: &'a [T],
    k: &'a [T],
    dk_dphi: &'a [T],
}

/// One backward step's pointwise work for B rows, [`forward_step`]
/// reversed: from dL/dh' (`dh`, plus `dy`) and dL/dc' (`dc`) to dL/d(gate
/// pre-activations) `d_gates` `[B, 4H]` and dL/dφ `d_phi` `[B, H]`; `dh`
/// and `dc` become the parts of dL/dh and dL/dc that bypass W_hh.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn backward_step<T: Float>(
    h: usize,
    gates: &[T],
    saved: StepSaved<'_, T>,
    dy: &[T],
    dh: &mut [T],
    dc: &mut [T],
    d_gates: &mut [T],
    d_phi: &mut [T],
) {
    for (b, (row, drow)) in gates
        .chunks_exact(4 * h)
        .zip(d_gates.chunks_exact_mut(4 * h))
        .enumerate()
    {
        let [i, f, g, o] = blocks::<T, 4>(row, h);
        let [di, df, dg, d_o] = blocks_mut::<T, 4>(drow, h);
        let r = b * h..(b + 1) * h;
        let (hp, cp) = (&saved.h_prev[r.clone()], &saved.c_prev[r.clone()]);
        let (ct, th) = (&saved.c_tilde[r.clone()], &saved.tanh_c[r.clone()]);
        let (k, kd) = (&saved.k[r.clone()], &saved.dk_dphi[r.clone()]);
        // h = k h̃ + (1 − k) h_prev, c = k c̃ + (1 − k) c_prev. First dL/dφ,
        // and dL/dh̃ into do's place.
        for ((dp, dho), (((&dhv, &dyv), &dcv), ((&kk, &kdv), (((&ov, &tv), &hv), (&cv, &pv))))) in
            d_phi[r.clone()].iter_mut().zip(d_o.iter_mut()).zip(
                dh[r.clone()]
                    .iter()
                    .zip(&dy[r.clone()])
                    .zip(&dc[r.clone()])
                    .zip(
                        k.iter().zip(kd.iter()).zip(
                            o.iter()
                                .zip(th.iter())
                                .zip(hp.iter())
                                .zip(ct.iter().zip(cp.iter())),
                        ),
                    ),
            )
        {
            let dht = dhv + dyv;
            let dk = dht * (ov * tv - hv) + dcv * (cv - pv);
            *dp = dk * kdv;
            *dho = kk * dht;
        }
        // dL/dc̃ into di's place, and what flows back to step t − 1.
        for ((dci, (dhr, dcr)), ((&kk, &dyv), ((&dht, &ov), (&tv, &fv)))) in di
            .iter_mut()
            .zip(dh[r.clone()].iter_mut().zip(dc[r.clone()].iter_mut()))
            .zip(
                k.iter()
                    .zip(&dy[r.clone()])
                    .zip(d_o.iter().zip(o.iter()).zip(th.iter().zip(f.iter()))),
            )
        {
            let dct = kk * *dcr + dht * ov * (T::ONE - tv * tv);
            *dci = dct;
            *dcr = (T::ONE - kk) * *dcr + dct * fv;
            *dhr = (T::ONE - kk) * (*dhr + dyv);
        }
        // The gates.
        for ((((dfv, dgv), dov), dci), ((((&iv, &fv), &gv), &ov), (&pv, &tv))) in df
            .iter_mut()
            .zip(dg.iter_mut())
            .zip(d_o.iter_mut())
            .zip(di.iter_mut())
            .zip(
                i.iter()
                    .zip(f.iter())
                    .zip(g.iter())
                    .zip(o.iter())
                    .zip(cp.iter().zip(th.iter())),
            )
        {
            let (dct, dht) = (*dci, *dov);
            *dci = dct * gv * iv * (T::ONE - iv);
            *dfv = dct * pv * fv * (T::ONE - fv);
            *dgv = dct * iv * (T::ONE - gv * gv);
            *dov = dht * tv * ov * (T::ONE - ov);
        }
    }
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
        ws.dk_dphi.resize(tn * bh, T::ZERO);
        ws.phase_n.resize(tn * bh, T::ZERO);
        // The time gate depends only on the stamps: all of it up front, with
        // what backward needs of it.
        ws.periods.clear();
        ws.periods
            .extend(log_period.iter().map(|v| v.to_f64().exp()));
        for (r, &stamp) in times.iter().enumerate() {
            let row = r * h..(r + 1) * h;
            time_gate_row(
                stamp.to_f64(),
                shift,
                &ws.periods,
                (r_on, leak),
                &mut ws.k[row.clone()],
                &mut ws.dk_dphi[row.clone()],
                &mut ws.phase_n[row],
            );
        }
        // One input GEMM over every row.
        gemm_nt(tn * bn, g4, ni, x, ni, w_ih, &mut ws.gates, g4, false);
        for t in 0..tn {
            let (h_before, h_after) = ws.hs.split_at_mut((t + 1) * bh);
            let h_prev = &h_before[t * bh..];
            let gates = &mut ws.gates[t * bn * g4..][..bn * g4];
            gemm_nt(bn, g4, h, h_prev, h, w_hh, gates, g4, true);
            let (c_before, c_after) = ws.cs.split_at_mut((t + 1) * bh);
            let step = t * bh..(t + 1) * bh;
            forward_step(
                h,
                bias,
                gates,
                h_prev,
                &c_before[t * bh..],
                &ws.k[step.clone()],
                &mut ws.c_tilde[step.clone()],
                &mut ws.tanh_c[step],
                &mut c_after[..bh],
                &mut h_after[..bh],
            );
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
            ..
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
        ws.d_gates.resize(tn * bn * g4, T::ZERO);
        ws.d_phi.resize(tn * bh, T::ZERO);
        ws.dh.clear();
        ws.dh.resize(bh, T::ZERO);
        ws.dc.clear();
        ws.dc.resize(bh, T::ZERO);
        for t in (0..tn).rev() {
            let step = t * bh..(t + 1) * bh;
            backward_step(
                h,
                &ws.gates[t * bn * g4..][..bn * g4],
                StepSaved {
                    h_prev: &ws.hs[t * bh..][..bh],
                    c_prev: &ws.cs[t * bh..][..bh],
                    c_tilde: &ws.c_tilde[step.clone()],
                    tanh_c: &ws.tanh_c[step.clone()],
                    k: &ws.k[step.clone()],
                    dk_dphi: &ws.dk_dphi[step.clone()],
                },
                &dy[step.clone()],
                &mut ws.dh,
                &mut ws.dc,
                &mut ws.d_gates[t * bn * g4..][..bn * g4],
                &mut ws.d_phi[step],
            );
            // dL/dh_prev through W_hh.
            let d_gates = &ws.d_gates[t * bn * g4..][..bn * g4];
            gemm_nn(bn, h, g4, d_gates, g4, w_hh, &mut ws.dh, h, true);
        }
        // The time gate's parameters through φ = (t − s)/τ − n:
        // ∂φ/∂log τ = −(φ + n), ∂φ/∂s = −1/τ, summed over every row.
        for (j, &period) in ws.periods.iter().enumerate() {
            let (mut d_log_period, mut d_shift) = (0.0f64, 0.0f64);
            for (dphi, pn) in ws.d_phi[j..]
                .iter()
                .step_by(h)
                .zip(ws.phase_n[j..].iter().step_by(h))
            {
                let dphi = dphi.to_f64();
                d_log_period -= dphi * pn.to_f64();
                d_shift -= dphi / period;
            }
            grads[self.log_period.offset + j] += T::from_f64(d_log_period);
            grads[self.shift.offset + j] += T::from_f64(d_shift);
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
        super::add_column_sums(db, &ws.d_gates, g4);
        ws.dx.resize(rows * ni, T::ZERO);
        gemm_nn(rows, ni, g4, &ws.d_gates, g4, w_ih, &mut ws.dx, ni, false);
        Ok(())
    }
}
