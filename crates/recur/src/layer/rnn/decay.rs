//! The gradient-decay regulariser of Pascanu, Mikolov and Bengio, "On the
//! difficulty of training recurrent neural networks" (ICML 2013, §3.3),
//! for one-layer Elman nets.
//!
//! With g_t = ∂E/∂h_t, the total gradient of the task loss at step t, the
//! step back to h_{t−1} carries v_t = g_t · ∂h_t/∂h_{t−1} =
//! (g_t ⊙ f′(h_t)) · W_hh. The regulariser asks every step to keep the
//! gradient's norm in that direction:
//!
//! Ω = mean over steps t and rows b with g_t ≠ 0 of (‖v_t‖ / ‖g_t‖ − 1)².
//!
//! As in the paper, g_t is a constant of Ω (computed by the task loss's
//! backward pass, then held fixed: PyTorch's `g.detach()`); Ω still
//! depends on the weights through W_hh and, for tanh units, through
//! f′(h_t) = 1 − h_t², whose dependence on every earlier step a second
//! backward pass through the layer carries. The paper's mean over steps is
//! here a mean over steps and rows, so the weight does not depend on T or B.

use super::Rnn;
use crate::cell::CellKind;
use crate::error::{check_len, Error, Result};
use crate::float::Float;
use crate::gemm::{gemm_nn, gemm_nt, gemm_tn};
use crate::layer::rnn::RnnWorkspace;
use crate::params::ParamStore;

impl Rnn {
    /// The gradient-decay regulariser Ω of the last forward pass on `ws`
    /// (see `layer::rnn::decay`), for `g` `[T, B, H]`, the task loss's
    /// dL/dh_t held constant (as [`RnnWorkspace::state_grads`] records it).
    ///
    /// Returns Ω; adds `weight` · ∂Ω/∂W_hh into the store's gradients and
    /// writes `weight` · ∂Ω/∂h_t into `d_h` `[T, B, H]`, which the caller
    /// passes as dL/dy to a second [`Rnn::backward`] to carry Ω's gradient
    /// back through the steps into every parameter.
    ///
    /// Needs a one-layer, one-direction Elman layer (tanh or relu) with
    /// W_hh, no leak and no skip connection, run on sequences of equal
    /// length.
    pub fn decay_penalty<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        g: &[T],
        weight: f64,
        d_h: &mut [T],
    ) -> Result<f64> {
        let cfg = &self.config;
        if !matches!(cfg.cell, CellKind::RnnTanh | CellKind::RnnRelu)
            || cfg.layers != 1
            || cfg.bidirectional
            || cfg.leaky()
            || cfg.skip > 0
            || !cfg.hidden_to_hidden
        {
            return Err(Error::Config(
                "the gradient-decay regulariser is for one-layer, one-direction Elman nets (tanh or relu) with W_hh and no leak or skip connection".into(),
            ));
        }
        self.expect(
            ws,
            !ws.stepwise,
            "the gradient-decay regulariser needs a whole-sequence forward pass of this layer first",
        )?;
        if ws.ragged {
            return Err(Error::Config(
                "the gradient-decay regulariser needs sequences that all run every step".into(),
            ));
        }
        let (tn, bn, h) = (ws.steps, ws.batch, cfg.hidden);
        let rows = tn * bn;
        let shape = || format!("[T={tn}, B={bn}, H={h}]");
        check_len("g", shape, rows * h, g.len())?;
        check_len("d_h", shape, rows * h, d_h.len())?;
        let tanh = cfg.cell == CellKind::RnnTanh;
        // Slot t + 1 of the forward states is h_t.
        let hs = &ws.layers[0].dirs[0].hs[bn * h..][..rows * h];
        let w = self.find("weight_hh_l0").expect("an Elman layer with W_hh");

        // `[T·B, H]` a = g ⊙ f′(h), then v = a · W_hh, in the workspace's
        // scratch (it only grows).
        ws.decay.resize(ws.decay.len().max(2 * rows * h), T::ZERO);
        let (a, v) = ws.decay.split_at_mut(rows * h);
        let v = &mut v[..rows * h];
        for ((ai, &gi), &hi) in a.iter_mut().zip(g).zip(hs) {
            *ai = if tanh {
                gi * (T::ONE - hi * hi)
            } else if hi > T::ZERO {
                gi
            } else {
                T::ZERO
            };
        }
        gemm_nn(rows, h, h, a, h, &store.params[w.clone()], v, h, false);

        // Per row: Ω_r = (‖v‖/‖g‖ − 1)², and v becomes u = ∂Ω_r/∂v
        // (before the mean's and the weight's factor).
        let norm = |r: &[T]| r.iter().map(|x| x.to_f64().powi(2)).sum::<f64>().sqrt();
        let (mut omega, mut count) = (0.0, 0usize);
        for (vr, gr) in v.chunks_exact_mut(h).zip(g.chunks_exact(h)) {
            let (vn, gn) = (norm(vr), norm(gr));
            if gn == 0.0 || !gn.is_finite() {
                vr.fill(T::ZERO);
                continue;
            }
            let ratio = vn / gn;
            omega += (ratio - 1.0).powi(2);
            count += 1;
            // ‖v‖ is not differentiable at 0; take 0 there.
            let s = if vn > 0.0 {
                2.0 * (ratio - 1.0) / (vn * gn)
            } else {
                0.0
            };
            for x in vr.iter_mut() {
                *x = T::from_f64(x.to_f64() * s);
            }
        }
        d_h.fill(T::ZERO);
        if count == 0 {
            return Ok(0.0);
        }
        let scale = T::from_f64(weight / count as f64);
        for x in v.iter_mut() {
            *x *= scale;
        }
        // ∂Ω/∂W_hh[i][j] = Σ_r a_r[i] u_r[j]; ∂Ω/∂a = u · W_hhᵀ (into a's place).
        gemm_tn(h, h, rows, a, h, v, &mut store.grads[w.clone()]);
        let d_a = a;
        gemm_nt(rows, h, h, v, h, &store.params[w], d_a, h, false);
        if tanh {
            // a = g ⊙ (1 − h²): ∂a/∂h = −2 g ⊙ h. Relu's f′ is flat.
            for ((o, (&da, &gi)), &hi) in d_h.iter_mut().zip(d_a.iter().zip(g)).zip(hs) {
                *o = -(T::ONE + T::ONE) * da * gi * hi;
            }
        }
        Ok(omega / count as f64)
    }
}
