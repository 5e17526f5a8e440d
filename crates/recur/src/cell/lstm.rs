//! LSTM step, gates in PyTorch's order i, f, g, o:
//! c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c').

use multiversion::multiversion;

use super::{blocks, blocks_mut, CellParams, StepBackward, StepForward};
use crate::float::Float;
use crate::quant::{weight_nn, weight_nt};

/// The recurrent GEMM h_prev·W_hhᵀ into the gates, then the kernel.
pub(crate) fn forward<T: Float>(h: usize, p: &CellParams<T>, mut io: StepForward<T>) {
    let (bn, gh) = (io.h_prev.len() / h, 4 * h);
    weight_nt(bn, gh, h, io.h_prev, h, p.w_hh, p.q_hh, io.gates, gh, true);
    io.run_rows(h, 4, &|io| lstm_forward_step(h, p, io));
}

/// The kernel, then dL/dh_prev += d_gates·W_hh.
pub(crate) fn backward<T: Float>(h: usize, p: &CellParams<T>, mut io: StepBackward<T>) {
    let (bn, gh) = (io.h_prev.len() / h, 4 * h);
    io.run_rows(h, 4, &|io| lstm_backward_step(h, io));
    weight_nn(
        bn,
        h,
        gh,
        io.d_gates,
        gh,
        p.w_hh,
        p.qt_hh(),
        io.dh_prev,
        h,
        true,
    );
}

/// Forward step for B rows; names are fields of [`StepForward`] and
/// [`CellParams`].
///
/// - `gates` `[B, 4H]`: in, x·W_ihᵀ + h_prev·W_hhᵀ; out, activated i, f, g, o
/// - `b_ih`, `b_hh` `[4H]`
/// - `c_prev`, `h_prev` `[B, H]`
/// - `c_new`, `h_new`, `extra` `[B, H]`: out, c', h', tanh(c')
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn lstm_forward_step<T: Float>(h: usize, p: &CellParams<T>, io: &mut StepForward<T>) {
    let [bii, bif, big, bio] = blocks::<T, 4>(p.b_ih, h);
    let [bhi, bhf, bhg, bho] = blocks::<T, 4>(p.b_hh, h);
    for b in 0..io.gates.len() / (4 * h) {
        if io.carry_finished(b, h) {
            continue;
        }
        let cp = &io.c_prev[b * h..][..h];
        let co = &mut io.c_new[b * h..][..h];
        let ho = &mut io.h_new[b * h..][..h];
        let tc = &mut io.extra[b * h..][..h];
        let yr = &mut io.y[b * io.y_stride..][..h];
        let [gi, gf, gg, go] = blocks_mut::<T, 4>(&mut io.gates[b * 4 * h..], h);
        // Two simple passes vectorise where one loop over 13 streams did not:
        // activate each gate block in place, then combine.
        for (g, (bi, bh)) in gi.iter_mut().zip(bii.iter().zip(bhi)) {
            *g = (*g + *bi + *bh).sigmoid();
        }
        for (g, (bi, bh)) in gf.iter_mut().zip(bif.iter().zip(bhf)) {
            *g = (*g + *bi + *bh).sigmoid();
        }
        for (g, (bi, bh)) in gg.iter_mut().zip(big.iter().zip(bhg)) {
            *g = (*g + *bi + *bh).tanh();
        }
        for (g, (bi, bh)) in go.iter_mut().zip(bio.iter().zip(bho)) {
            *g = (*g + *bi + *bh).sigmoid();
        }
        for (c, ((cp, (i, f)), g)) in co
            .iter_mut()
            .zip(cp.iter().zip(gi.iter().zip(gf.iter())).zip(gg.iter()))
        {
            *c = *f * *cp + *i * *g;
        }
        for (t, c) in tc.iter_mut().zip(co.iter()) {
            *t = c.tanh();
        }
        for ((hv, y), (o, t)) in ho
            .iter_mut()
            .zip(yr.iter_mut())
            .zip(go.iter().zip(tc.iter()))
        {
            *hv = *o * *t;
            *y = *hv;
        }
    }
}

/// Backward step for B rows; names are fields of [`StepBackward`].
///
/// - `gates` `[B, 4H]`: saved activated i, f, g, o; `c_prev`, `extra` `[B, H]`: saved
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `dc` `[B, H]`: in, dL/dc'; out, dL/dc
/// - `d_gates` `[B, 4H]`: out, dL/d(pre-activations)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses W_hh (dh for
///   finished rows, else 0); the layer then adds d_gates·W_hh.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn lstm_backward_step<T: Float>(h: usize, io: &mut StepBackward<T>) {
    for b in 0..io.gates.len() / (4 * h) {
        if io.pass_finished(b, h, 4) {
            continue;
        }
        let dhr = &io.dh[b * h..][..h];
        let dcr = &mut io.dc[b * h..][..h];
        let dhp = &mut io.dh_prev[b * h..][..h];
        let dgr = &mut io.d_gates[b * 4 * h..][..4 * h];
        let dyr = &io.dy[b * io.dy_stride..][..h];
        let cp = &io.c_prev[b * h..][..h];
        let tc = &io.extra[b * h..][..h];
        let [gi, gf, gg, go] = blocks::<T, 4>(&io.gates[b * 4 * h..], h);
        let [di, df, dg, d_o] = blocks_mut::<T, 4>(dgr, h);
        // Short passes over a few streams each vectorise; d_o first holds dL/dh'.
        for (d, (a, y)) in d_o.iter_mut().zip(dhr.iter().zip(dyr)) {
            *d = *a + *y;
        }
        for (c, (d, (o, t))) in dcr.iter_mut().zip(d_o.iter().zip(go.iter().zip(tc))) {
            *c += *d * *o * (T::ONE - *t * *t);
        }
        for (d, (o, t)) in d_o.iter_mut().zip(go.iter().zip(tc)) {
            *d = *d * *t * *o * (T::ONE - *o);
        }
        for (d, (c, (g, i))) in di.iter_mut().zip(dcr.iter().zip(gg.iter().zip(gi))) {
            *d = *c * *g * *i * (T::ONE - *i);
        }
        for (d, (c, (p, f))) in df.iter_mut().zip(dcr.iter().zip(cp.iter().zip(gf))) {
            *d = *c * *p * *f * (T::ONE - *f);
        }
        for (d, (c, (i, g))) in dg.iter_mut().zip(dcr.iter().zip(gi.iter().zip(gg))) {
            *d = *c * *i * (T::ONE - *g * *g);
        }
        for (c, f) in dcr.iter_mut().zip(gf) {
            *c *= *f;
        }
        dhp.fill(T::ZERO);
    }
}
