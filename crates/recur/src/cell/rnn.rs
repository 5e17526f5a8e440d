//! Elman RNN step, act = tanh or relu:
//! h' = (1 − α) ⊙ h + α ⊙ act(W_ih x + b_ih + W_hh h + b_hh + W_skip h_{t−d}).
//! Without a leak (α = 1) and without a skip connection this is PyTorch's
//! `nn.RNN` cell; either option, and the absence of W_hh (a Jordan net's
//! hidden layer), are recur's.

use multiversion::multiversion;

use super::{CellParams, StepBackward, StepForward};
use crate::float::Float;
use crate::gemm::{gemm_nn, gemm_nt};
use crate::quant::{weight_nn, weight_nt};

/// The recurrent GEMMs (W_hh, then W_skip) into the gates, then the kernel.
pub(crate) fn forward<T: Float>(relu: bool, h: usize, p: &CellParams<T>, mut io: StepForward<T>) {
    let bn = io.h_prev.len() / h;
    if !p.w_hh.is_empty() {
        weight_nt(bn, h, h, io.h_prev, h, p.w_hh, p.q_hh, io.gates, h, true);
    }
    if let (Some(w), Some(hs)) = (p.w_skip, io.h_skip) {
        gemm_nt(bn, h, h, hs, h, w, io.gates, h, true);
    }
    io.run_rows(h, 1, &|io| rnn_forward_step(relu, h, p, io));
}

/// The kernel, then dL/dh_prev += d_pre·W_hh and dL/dh_skip += d_pre·W_skip.
pub(crate) fn backward<T: Float>(relu: bool, h: usize, p: &CellParams<T>, mut io: StepBackward<T>) {
    let bn = io.h_prev.len() / h;
    io.run_rows(h, 1, &|io| rnn_backward_step(relu, h, p, io));
    if !p.w_hh.is_empty() {
        weight_nn(
            bn,
            h,
            h,
            io.d_gates,
            h,
            p.w_hh,
            p.qt_hh(),
            io.dh_prev,
            h,
            true,
        );
    }
    if let (Some(w), Some(ds)) = (p.w_skip, io.dh_skip) {
        gemm_nn(bn, h, h, io.d_gates, h, w, ds, h, true);
    }
}

/// Forward step for B rows; names are fields of [`StepForward`] and
/// [`CellParams`].
///
/// - `gates` `[B, H]`: in, the products; out, act(pre + b) (the saved activation)
/// - `b_ih`, `b_hh` `[H]`
/// - `h_prev` `[B, H]`; `h_new` `[B, H]`: out, h'
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
/// - `alpha` `[H]`: the leak rates, or `None` for h' = act
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn rnn_forward_step<T: Float>(relu: bool, h: usize, p: &CellParams<T>, io: &mut StepForward<T>) {
    let (bi, bh) = (&p.b_ih[..h], &p.b_hh[..h]);
    for b in 0..io.gates.len() / h {
        if io.carry_finished(b, h) {
            continue;
        }
        let v = &mut io.gates[b * h..][..h];
        let hp = &io.h_prev[b * h..][..h];
        let ho = &mut io.h_new[b * h..][..h];
        let yr = &mut io.y[b * io.y_stride..][..h];
        if relu {
            for (x, (bi, bh)) in v.iter_mut().zip(bi.iter().zip(bh)) {
                *x = (*x + *bi + *bh).max(T::ZERO);
            }
        } else {
            for (x, (bi, bh)) in v.iter_mut().zip(bi.iter().zip(bh)) {
                *x = (*x + *bi + *bh).tanh();
            }
        }
        match p.alpha {
            None => ho.copy_from_slice(v),
            Some(a) => {
                for (o, ((v, hp), a)) in ho.iter_mut().zip(v.iter().zip(hp).zip(a)) {
                    *o = *hp + *a * (*v - *hp);
                }
            }
        }
        yr.copy_from_slice(ho);
    }
}

/// Backward step for B rows; names are fields of [`StepBackward`].
///
/// - `gates` `[B, H]`: the saved act(pre) of this step
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `d_gates` `[B, H]`: out, dL/d(pre-activation)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses the weights:
///   (1 − α)·dL/dh' for active rows, dL/dh' for finished ones; the cell then
///   adds d_pre·W_hh
/// - `alpha`, `h_prev`, `d_logit`: the leak rates `[H]`, the states before the
///   step `[B, H]`, and dL/d(leak logits) `[H]` (added to, when learned)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn rnn_backward_step<T: Float>(relu: bool, h: usize, p: &CellParams<T>, io: &mut StepBackward<T>) {
    for b in 0..io.gates.len() / h {
        if io.pass_finished(b, h, 1) {
            continue;
        }
        let a = &io.gates[b * h..][..h];
        let dhr = &io.dh[b * h..][..h];
        let dyr = &io.dy[b * io.dy_stride..][..h];
        let dp = &mut io.d_gates[b * h..][..h];
        let dhp = &mut io.dh_prev[b * h..][..h];
        let Some(al) = p.alpha else {
            if relu {
                for (d, (v, (g, y))) in dp.iter_mut().zip(a.iter().zip(dhr.iter().zip(dyr))) {
                    *d = if *v > T::ZERO { *g + *y } else { T::ZERO };
                }
            } else {
                for (d, (v, (g, y))) in dp.iter_mut().zip(a.iter().zip(dhr.iter().zip(dyr))) {
                    *d = (*g + *y) * (T::ONE - *v * *v);
                }
            }
            dhp.fill(T::ZERO);
            continue;
        };
        // dh_prev first holds the total dL/dh'.
        for (d, (g, y)) in dhp.iter_mut().zip(dhr.iter().zip(dyr)) {
            *d = *g + *y;
        }
        for (d, ((v, g), al)) in dp.iter_mut().zip(a.iter().zip(dhp.iter()).zip(al)) {
            let fprime = if relu {
                if *v > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            } else {
                T::ONE - *v * *v
            };
            *d = *g * *al * fprime;
        }
        if let Some(dl) = io.d_logit.as_deref_mut() {
            // dh'/dα = act − h_prev; dα/dlogit = α(1 − α).
            let hp = &io.h_prev[b * h..][..h];
            for (d, (((g, v), hp), al)) in dl.iter_mut().zip(dhp.iter().zip(a).zip(hp).zip(al)) {
                *d += *g * (*v - *hp) * *al * (T::ONE - *al);
            }
        }
        for (d, al) in dhp.iter_mut().zip(al) {
            *d *= T::ONE - *al;
        }
    }
}
