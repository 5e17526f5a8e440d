//! Elman RNN step: h' = (1 − α) ⊙ h + α ⊙ act(W_ih x + b_ih + W_hh h + b_hh
//! + W_skip h_{t−d}), act = tanh or relu. Without a leak (α = 1) and without
//! a skip connection this is PyTorch's `nn.RNN` cell; either option, and the
//! absence of W_hh (a Jordan net's hidden layer), are recur's.

use multiversion::multiversion;

use super::{CellParams, StepBackward, StepForward, StepMask};
use crate::float::Float;
use crate::gemm::{gemm, Trans};

/// The recurrent GEMMs (W_hh, then W_skip) into the gates, then the kernel.
pub(crate) fn forward<T: Float>(relu: bool, h: usize, p: &CellParams<T>, io: StepForward<T>) {
    let bn = io.h_prev.len() / h;
    if !p.w_hh.is_empty() {
        gemm(
            bn,
            h,
            h,
            io.h_prev,
            h,
            Trans::N,
            p.w_hh,
            h,
            Trans::T,
            io.gates,
            h,
            true,
        );
    }
    if let (Some(w), Some(hs)) = (p.w_skip, io.h_skip) {
        gemm(bn, h, h, hs, h, Trans::N, w, h, Trans::T, io.gates, h, true);
    }
    rnn_forward_step(
        relu,
        h,
        io.gates,
        p.b_ih,
        p.b_hh,
        io.h_prev,
        io.h_new,
        io.y,
        io.y_stride,
        io.mask,
        p.alpha,
    );
}

/// The kernel, then dL/dh_prev += d_pre·W_hh and dL/dh_skip += d_pre·W_skip.
pub(crate) fn backward<T: Float>(relu: bool, h: usize, p: &CellParams<T>, io: StepBackward<T>) {
    let bn = io.h_prev.len() / h;
    rnn_backward_step(
        relu,
        h,
        io.gates,
        io.dh,
        io.dy,
        io.dy_stride,
        io.d_gates,
        io.dh_prev,
        io.mask,
        p.alpha,
        io.h_prev,
        io.d_logit,
    );
    if !p.w_hh.is_empty() {
        gemm(
            bn,
            h,
            h,
            io.d_gates,
            h,
            Trans::N,
            p.w_hh,
            h,
            Trans::N,
            io.dh_prev,
            h,
            true,
        );
    }
    if let (Some(w), Some(ds)) = (p.w_skip, io.dh_skip) {
        gemm(
            bn,
            h,
            h,
            io.d_gates,
            h,
            Trans::N,
            w,
            h,
            Trans::N,
            ds,
            h,
            true,
        );
    }
}

/// Forward step for B rows.
///
/// - `pre`  `[B, H]`: in, the products; out, act(pre + b) (the saved activation)
/// - `b_ih`, `b_hh` `[H]`
/// - `h_prev` `[B, H]`; `h_out` `[B, H]`: out, h'
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
/// - `alpha` `[H]`: the leak rates, or `None` for h' = act
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn rnn_forward_step<T: Float>(
    relu: bool,
    h: usize,
    pre: &mut [T],
    b_ih: &[T],
    b_hh: &[T],
    h_prev: &[T],
    h_out: &mut [T],
    y: &mut [T],
    y_stride: usize,
    mask: StepMask,
    alpha: Option<&[T]>,
) {
    let (bi, bh) = (&b_ih[..h], &b_hh[..h]);
    for b in 0..pre.len() / h {
        let p = &mut pre[b * h..][..h];
        let hp = &h_prev[b * h..][..h];
        let ho = &mut h_out[b * h..][..h];
        let yr = &mut y[b * y_stride..][..h];
        if !mask.active(b) {
            ho.copy_from_slice(hp);
            yr.fill(T::ZERO);
            continue;
        }
        if relu {
            for (v, (bi, bh)) in p.iter_mut().zip(bi.iter().zip(bh)) {
                *v = (*v + *bi + *bh).max(T::ZERO);
            }
        } else {
            for (v, (bi, bh)) in p.iter_mut().zip(bi.iter().zip(bh)) {
                *v = (*v + *bi + *bh).tanh();
            }
        }
        match alpha {
            None => ho.copy_from_slice(p),
            Some(a) => {
                for (o, ((v, hp), a)) in ho.iter_mut().zip(p.iter().zip(hp).zip(a)) {
                    *o = *hp + *a * (*v - *hp);
                }
            }
        }
        yr.copy_from_slice(ho);
    }
}

/// Backward step for B rows.
///
/// - `act` `[B, H]`: the saved act(pre) of this step
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `d_pre` `[B, H]`: out, dL/d(pre-activation)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses the weights:
///   (1 − α)·dL/dh' for active rows, dL/dh' for finished ones; the cell then
///   adds d_pre·W_hh
/// - `alpha`, `h_prev`, `d_logit`: the leak rates `[H]`, the states before the
///   step `[B, H]`, and dL/d(leak logits) `[H]` (added to, when learned)
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn rnn_backward_step<T: Float>(
    relu: bool,
    h: usize,
    act: &[T],
    dh: &[T],
    dy: &[T],
    dy_stride: usize,
    d_pre: &mut [T],
    dh_prev: &mut [T],
    mask: StepMask,
    alpha: Option<&[T]>,
    h_prev: &[T],
    mut d_logit: Option<&mut [T]>,
) {
    for b in 0..act.len() / h {
        let a = &act[b * h..][..h];
        let dhr = &dh[b * h..][..h];
        let dyr = &dy[b * dy_stride..][..h];
        let dp = &mut d_pre[b * h..][..h];
        let dhp = &mut dh_prev[b * h..][..h];
        if !mask.active(b) {
            dp.fill(T::ZERO);
            dhp.copy_from_slice(dhr);
            continue;
        }
        let Some(al) = alpha else {
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
        if let Some(dl) = d_logit.as_deref_mut() {
            // dh'/dα = act − h_prev; dα/dlogit = α(1 − α).
            let hp = &h_prev[b * h..][..h];
            for (d, (((g, v), hp), al)) in dl.iter_mut().zip(dhp.iter().zip(a).zip(hp).zip(al)) {
                *d += *g * (*v - *hp) * *al * (T::ONE - *al);
            }
        }
        for (d, al) in dhp.iter_mut().zip(al) {
            *d *= T::ONE - *al;
        }
    }
}
