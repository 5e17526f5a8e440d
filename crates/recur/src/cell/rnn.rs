//! Elman RNN step: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.

use multiversion::multiversion;

use super::StepMask;
use crate::float::Float;

/// Forward step for B rows.
///
/// - `pre`  `[B, H]`: in, x·W_ihᵀ + h_prev·W_hhᵀ; out, h' (the saved activation)
/// - `b_ih`, `b_hh` `[H]`
/// - `h_prev` `[B, H]`; `h_out` `[B, H]`: out, h'
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub fn rnn_forward_step<T: Float>(
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
        ho.copy_from_slice(p);
        yr.copy_from_slice(p);
    }
}

/// Backward step for B rows.
///
/// - `act` `[B, H]`: the saved h' of this step
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `d_pre` `[B, H]`: out, dL/d(pre-activation)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses W_hh (dh for
///   finished rows, else 0); the layer then adds d_pre·W_hh.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub fn rnn_backward_step<T: Float>(
    relu: bool,
    h: usize,
    act: &[T],
    dh: &[T],
    dy: &[T],
    dy_stride: usize,
    d_pre: &mut [T],
    dh_prev: &mut [T],
    mask: StepMask,
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
    }
}
