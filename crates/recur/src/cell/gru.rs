//! GRU steps, gates in PyTorch's order r, z, n; h' = (1 − z)·n + z·h.
//!
//! Reset-after (PyTorch, cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
//! so one recurrent GEMM per step gives all three blocks.
//!
//! Reset-before (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn).
//! The n block's GEMM needs r first, so a step is GEMM (r, z) → kernel
//! `gru_rb_forward_gates` → GEMM (n) → kernel `gru_rb_forward_out`, and
//! backward mirrors it.

use multiversion::multiversion;

use super::{blocks, blocks_mut, CellParams, StepBackward, StepForward};
use crate::float::Float;
use crate::quant::{weight_nn, weight_nt};

/// Reset-after: the recurrent GEMM h_prev·W_hhᵀ (kept apart from the
/// input side, as r multiplies its n block), then the kernel.
pub(crate) fn forward<T: Float>(h: usize, p: &CellParams<T>, mut io: StepForward<T>) {
    let (bn, gh) = (io.h_prev.len() / h, 3 * h);
    weight_nt(bn, gh, h, io.h_prev, h, p.w_hh, p.q_hh, io.hg, gh, false);
    io.run_rows(h, 3, &|io| gru_forward_step(h, p, io));
}

/// Reset-after: the kernel, then dL/dh_prev += d_hgates·W_hh.
pub(crate) fn backward<T: Float>(h: usize, p: &CellParams<T>, mut io: StepBackward<T>) {
    let (bn, gh) = (io.h_prev.len() / h, 3 * h);
    io.run_rows(h, 3, &|io| gru_backward_step(h, io));
    weight_nn(
        bn,
        h,
        gh,
        io.d_hgates,
        gh,
        p.w_hh,
        p.qt_hh(),
        io.dh_prev,
        h,
        true,
    );
}

/// Reset-before: GEMM (r, z) → kernel → GEMM (n on r ⊙ h) → kernel.
pub(crate) fn forward_reset_before<T: Float>(h: usize, p: &CellParams<T>, mut io: StepForward<T>) {
    let (bn, gh) = (io.h_prev.len() / h, 3 * h);
    weight_nt(bn, 2 * h, h, io.h_prev, h, p.w_hh, p.q_hh, io.hg, gh, false);
    io.run_rows(h, 3, &|io| gru_rb_forward_gates(h, p, io));
    weight_nt(
        bn,
        h,
        h,
        io.extra,
        h,
        &p.w_hh[2 * h * h..],
        p.q_hh.map(|q| q.skip_rows(2 * h)),
        &mut io.hg[2 * h..],
        gh,
        false,
    );
    io.run_rows(h, 3, &|io| gru_rb_forward_out(h, p, io));
}

/// Reset-before: backward mirrors forward.
pub(crate) fn backward_reset_before<T: Float>(
    h: usize,
    p: &CellParams<T>,
    mut io: StepBackward<T>,
) {
    let (bn, gh) = (io.h_prev.len() / h, 3 * h);
    io.run_rows(h, 3, &|io| gru_rb_backward_out(h, io));
    weight_nn(
        bn,
        h,
        h,
        &io.d_gates[2 * h..],
        gh,
        &p.w_hh[2 * h * h..],
        p.qt_hh().map(|t| t.cols(2 * h, gh)),
        io.d_rh,
        h,
        false,
    );
    io.run_rows(h, 3, &|io| gru_rb_backward_gates(h, io));
    let qt = p.qt_hh().map(|t| t.cols(0, 2 * h));
    weight_nn(
        bn,
        h,
        2 * h,
        io.d_gates,
        gh,
        p.w_hh,
        qt,
        io.dh_prev,
        h,
        true,
    );
}

/// Reset-after forward step for B rows (fields of [`StepForward`]).
///
/// - `gates` `[B, 3H]`: in, x·W_ihᵀ; out, activated r, z, n
/// - `hg` `[B, 3H]`: h_prev·W_hhᵀ
/// - `b_ih`, `b_hh` `[3H]`; `h_prev` `[B, H]`
/// - `h_new` `[B, H]`: out, h'; `extra` `[B, H]`: out, W_hn h + b_hn (saved for backward)
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_forward_step<T: Float>(h: usize, p: &CellParams<T>, io: &mut StepForward<T>) {
    let [bir, biz, bin] = blocks::<T, 3>(p.b_ih, h);
    let [bhr, bhz, bhn] = blocks::<T, 3>(p.b_hh, h);
    for b in 0..io.gates.len() / (3 * h) {
        if io.carry_finished(b, h) {
            continue;
        }
        let hp = &io.h_prev[b * h..][..h];
        let ho = &mut io.h_new[b * h..][..h];
        let yr = &mut io.y[b * io.y_stride..][..h];
        let hnr = &mut io.extra[b * h..][..h];
        let [hr, hz, hnn] = blocks::<T, 3>(&io.hg[b * 3 * h..], h);
        let [gr, gz, gn] = blocks_mut::<T, 3>(&mut io.gates[b * 3 * h..], h);
        for (g, (bi, (hh, bh))) in gr.iter_mut().zip(bir.iter().zip(hr.iter().zip(bhr))) {
            *g = (*g + *bi + *hh + *bh).sigmoid();
        }
        for (g, (bi, (hh, bh))) in gz.iter_mut().zip(biz.iter().zip(hz.iter().zip(bhz))) {
            *g = (*g + *bi + *hh + *bh).sigmoid();
        }
        for (o, (a, bh)) in hnr.iter_mut().zip(hnn.iter().zip(bhn)) {
            *o = *a + *bh;
        }
        for (g, (bi, (r, hv))) in gn.iter_mut().zip(bin.iter().zip(gr.iter().zip(hnr.iter()))) {
            *g = (*g + *bi + *r * *hv).tanh();
        }
        for (o, (z, (n, p))) in ho.iter_mut().zip(gz.iter().zip(gn.iter().zip(hp))) {
            *o = (T::ONE - *z) * *n + *z * *p;
        }
        yr.copy_from_slice(ho);
    }
}

/// Reset-after backward step for B rows (fields of [`StepBackward`]).
///
/// - `gates` `[B, 3H]`: saved r, z, n; `extra` `[B, H]`: saved W_hn h + b_hn; `h_prev` `[B, H]`
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `d_gates` `[B, 3H]`: out, dL/d(x-side pre-activations) (r, z, n)
/// - `d_hgates` `[B, 3H]`: out, dL/d(h·W_hhᵀ + b_hh) (r, z, and r·dn for n)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses W_hh
///   (z·dh', or dh for finished rows); the layer then adds dg_h·W_hh.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_backward_step<T: Float>(h: usize, io: &mut StepBackward<T>) {
    let hn = io.extra;
    for b in 0..io.gates.len() / (3 * h) {
        if io.pass_finished(b, h, 3) {
            continue;
        }
        let dhr = &io.dh[b * h..][..h];
        let dhp = &mut io.dh_prev[b * h..][..h];
        let dxr = &mut io.d_gates[b * 3 * h..][..3 * h];
        let dhg = &mut io.d_hgates[b * 3 * h..][..3 * h];
        let dyr = &io.dy[b * io.dy_stride..][..h];
        let hp = &io.h_prev[b * h..][..h];
        let hnr = &hn[b * h..][..h];
        let [gr, gz, gn] = blocks::<T, 3>(&io.gates[b * 3 * h..], h);
        let [dxr_r, dxr_z, dxr_n] = blocks_mut::<T, 3>(dxr, h);
        let [dhg_r, dhg_z, dhg_n] = blocks_mut::<T, 3>(dhg, h);
        z_n_backward(dhr, dyr, hp, gz, gn, dxr_z, dxr_n, dhp);
        for (d, (dn, (hn, r))) in dxr_r.iter_mut().zip(dxr_n.iter().zip(hnr.iter().zip(gr))) {
            *d = *dn * *hn * *r * (T::ONE - *r);
        }
        dhg_r.copy_from_slice(dxr_r);
        dhg_z.copy_from_slice(dxr_z);
        for (d, (dn, r)) in dhg_n.iter_mut().zip(dxr_n.iter().zip(gr)) {
            *d = *dn * *r;
        }
    }
}

/// The z and n blocks of a GRU step backward, as both forms share them:
/// from dL/dh' = dh + dy, dL/d(pre-activation) of n and z, and z·dL/dh'
/// into `dhp` (the part of dL/dh that bypasses the weights).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn z_n_backward<T: Float>(
    dh: &[T],
    dy: &[T],
    hp: &[T],
    gz: &[T],
    gn: &[T],
    dz: &mut [T],
    dn: &mut [T],
    dhp: &mut [T],
) {
    // dhp first holds dL/dh'.
    for (d, (a, y)) in dhp.iter_mut().zip(dh.iter().zip(dy)) {
        *d = *a + *y;
    }
    for (d, (t, (z, n))) in dn.iter_mut().zip(dhp.iter().zip(gz.iter().zip(gn))) {
        *d = *t * (T::ONE - *z) * (T::ONE - *n * *n);
    }
    for (d, (t, (p, (n, z)))) in dz
        .iter_mut()
        .zip(dhp.iter().zip(hp.iter().zip(gn.iter().zip(gz))))
    {
        *d = *t * (*p - *n) * *z * (T::ONE - *z);
    }
    for (d, z) in dhp.iter_mut().zip(gz) {
        *d *= *z;
    }
}

/// Reset-before forward, first half: the r and z gates and r ⊙ h.
///
/// - `gates` `[B, 3H]`: in, x·W_ihᵀ; out, r and z activated in blocks 0 and 1
/// - `hg` `[B, 3H]`: blocks 0 and 1 hold h_prev·W_h{r,z}ᵀ
/// - `b_ih`, `b_hh` `[3H]`; `h_prev` `[B, H]`
/// - `extra` `[B, H]`: out, r ⊙ h_prev (the input of the n block's GEMM)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_rb_forward_gates<T: Float>(h: usize, p: &CellParams<T>, io: &mut StepForward<T>) {
    let [bir, biz, _] = blocks::<T, 3>(p.b_ih, h);
    let [bhr, bhz, _] = blocks::<T, 3>(p.b_hh, h);
    for b in 0..io.gates.len() / (3 * h) {
        let rhr = &mut io.extra[b * h..][..h];
        if !io.mask.active(b) {
            rhr.fill(T::ZERO);
            continue;
        }
        let hp = &io.h_prev[b * h..][..h];
        let [hr, hz, _] = blocks::<T, 3>(&io.hg[b * 3 * h..], h);
        let [gr, gz, _] = blocks_mut::<T, 3>(&mut io.gates[b * 3 * h..], h);
        for (g, (bi, (hh, bh))) in gr.iter_mut().zip(bir.iter().zip(hr.iter().zip(bhr))) {
            *g = (*g + *bi + *hh + *bh).sigmoid();
        }
        for (g, (bi, (hh, bh))) in gz.iter_mut().zip(biz.iter().zip(hz.iter().zip(bhz))) {
            *g = (*g + *bi + *hh + *bh).sigmoid();
        }
        for (o, (r, p)) in rhr.iter_mut().zip(gr.iter().zip(hp)) {
            *o = *r * *p;
        }
    }
}

/// Reset-before forward, second half: n and the new state.
///
/// - `gates` `[B, 3H]`: r, z activated; block 2 in, x·W_inᵀ; out, n
/// - `hg` `[B, 3H]`: block 2 holds (r ⊙ h_prev)·W_hnᵀ
/// - `h_new` `[B, H]`: out, h'; `y`: out, row b at `b·y_stride` gets h'
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_rb_forward_out<T: Float>(h: usize, p: &CellParams<T>, io: &mut StepForward<T>) {
    let bin = &p.b_ih[2 * h..3 * h];
    let bhn = &p.b_hh[2 * h..3 * h];
    for b in 0..io.gates.len() / (3 * h) {
        if io.carry_finished(b, h) {
            continue;
        }
        let hp = &io.h_prev[b * h..][..h];
        let ho = &mut io.h_new[b * h..][..h];
        let yr = &mut io.y[b * io.y_stride..][..h];
        let hnn = &io.hg[b * 3 * h + 2 * h..][..h];
        let [_, gz, gn] = blocks_mut::<T, 3>(&mut io.gates[b * 3 * h..], h);
        for (g, (bi, (hh, bh))) in gn.iter_mut().zip(bin.iter().zip(hnn.iter().zip(bhn))) {
            *g = (*g + *bi + *hh + *bh).tanh();
        }
        for (o, (z, (n, p))) in ho.iter_mut().zip(gz.iter().zip(gn.iter().zip(hp))) {
            *o = (T::ONE - *z) * *n + *z * *p;
        }
        yr.copy_from_slice(ho);
    }
}

/// Reset-before backward, first half (the mirror of `gru_rb_forward_out`).
///
/// - `gates` `[B, 3H]`: saved r, z, n; `h_prev` `[B, H]`
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `d_gates` `[B, 3H]`: out, blocks 1 (z) and 2 (n) of dL/d(pre-activations)
/// - `dh_prev` `[B, H]`: out, z·dh' (dh for finished rows)
///
/// The layer then computes d(r ⊙ h) = d_n·W_hn for `gru_rb_backward_gates`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_rb_backward_out<T: Float>(h: usize, io: &mut StepBackward<T>) {
    for b in 0..io.gates.len() / (3 * h) {
        if io.pass_finished(b, h, 3) {
            continue;
        }
        let dhr = &io.dh[b * h..][..h];
        let dhp = &mut io.dh_prev[b * h..][..h];
        let dgr = &mut io.d_gates[b * 3 * h..][..3 * h];
        let dyr = &io.dy[b * io.dy_stride..][..h];
        let hp = &io.h_prev[b * h..][..h];
        let [_, gz, gn] = blocks::<T, 3>(&io.gates[b * 3 * h..], h);
        let [_, dz, dn] = blocks_mut::<T, 3>(dgr, h);
        z_n_backward(dhr, dyr, hp, gz, gn, dz, dn, dhp);
    }
}

/// Reset-before backward, second half (the mirror of `gru_rb_forward_gates`).
///
/// - `gates` `[B, 3H]`: saved r, z, n; `h_prev` `[B, H]`
/// - `d_rh` `[B, H]`: dL/d(r ⊙ h_prev) = d_n·W_hn
/// - `d_gates` `[B, 3H]`: out, block 0 (r) of dL/d(pre-activations)
/// - `dh_prev` `[B, H]`: in/out, gets r ⊙ d_rh added; the layer then adds
///   d_{r,z}·W_h{r,z}.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn gru_rb_backward_gates<T: Float>(h: usize, io: &mut StepBackward<T>) {
    for b in 0..io.gates.len() / (3 * h) {
        if !io.mask.active(b) {
            continue;
        }
        let hp = &io.h_prev[b * h..][..h];
        let drh = &io.d_rh[b * h..][..h];
        let dhp = &mut io.dh_prev[b * h..][..h];
        let gr = &io.gates[b * 3 * h..][..h];
        let dr = &mut io.d_gates[b * 3 * h..][..h];
        for (d, (g, (p, r))) in dr.iter_mut().zip(drh.iter().zip(hp.iter().zip(gr))) {
            *d = *g * *p * *r * (T::ONE - *r);
        }
        for (d, (g, r)) in dhp.iter_mut().zip(drh.iter().zip(gr)) {
            *d += *g * *r;
        }
    }
}
