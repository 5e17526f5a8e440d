//! LSTM step, gates in PyTorch's order i, f, g, o:
//! c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c').

use multiversion::multiversion;

use super::{blocks, blocks_mut, StepMask};
use crate::float::Float;

/// Forward step for B rows.
///
/// - `gates` `[B, 4H]`: in, x·W_ihᵀ + h_prev·W_hhᵀ; out, activated i, f, g, o
/// - `b_ih`, `b_hh` `[4H]`
/// - `c_prev`, `h_prev` `[B, H]`
/// - `c_out`, `h_out`, `tanh_c` `[B, H]`: out, c', h', tanh(c')
/// - `y`: out, row b at `b·y_stride` gets h' (zero for finished rows)
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub fn lstm_forward_step<T: Float>(
    h: usize,
    gates: &mut [T],
    b_ih: &[T],
    b_hh: &[T],
    c_prev: &[T],
    h_prev: &[T],
    c_out: &mut [T],
    h_out: &mut [T],
    tanh_c: &mut [T],
    y: &mut [T],
    y_stride: usize,
    mask: StepMask,
) {
    let [bii, bif, big, bio] = blocks::<T, 4>(b_ih, h);
    let [bhi, bhf, bhg, bho] = blocks::<T, 4>(b_hh, h);
    for b in 0..gates.len() / (4 * h) {
        let cp = &c_prev[b * h..][..h];
        let hp = &h_prev[b * h..][..h];
        let co = &mut c_out[b * h..][..h];
        let ho = &mut h_out[b * h..][..h];
        let tc = &mut tanh_c[b * h..][..h];
        let yr = &mut y[b * y_stride..][..h];
        if !mask.active(b) {
            co.copy_from_slice(cp);
            ho.copy_from_slice(hp);
            yr.fill(T::ZERO);
            continue;
        }
        let [gi, gf, gg, go] = blocks_mut::<T, 4>(&mut gates[b * 4 * h..], h);
        for j in 0..h {
            let i = (gi[j] + bii[j] + bhi[j]).sigmoid();
            let f = (gf[j] + bif[j] + bhf[j]).sigmoid();
            let g = (gg[j] + big[j] + bhg[j]).tanh();
            let o = (go[j] + bio[j] + bho[j]).sigmoid();
            gi[j] = i;
            gf[j] = f;
            gg[j] = g;
            go[j] = o;
            let c = f * cp[j] + i * g;
            let t = c.tanh();
            co[j] = c;
            tc[j] = t;
            let hv = o * t;
            ho[j] = hv;
            yr[j] = hv;
        }
    }
}

/// Backward step for B rows.
///
/// - `gates` `[B, 4H]`: saved activated i, f, g, o; `c_prev`, `tanh_c` `[B, H]`: saved
/// - `dh` `[B, H]`: dL/dh' from later steps; `dy` rows at `dy_stride`: dL/dy
/// - `dc` `[B, H]`: in, dL/dc'; out, dL/dc
/// - `d_gates` `[B, 4H]`: out, dL/d(pre-activations)
/// - `dh_prev` `[B, H]`: out, the part of dL/dh that bypasses W_hh (dh for
///   finished rows, else 0); the layer then adds d_gates·W_hh.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub fn lstm_backward_step<T: Float>(
    h: usize,
    gates: &[T],
    c_prev: &[T],
    tanh_c: &[T],
    dh: &[T],
    dy: &[T],
    dy_stride: usize,
    dc: &mut [T],
    d_gates: &mut [T],
    dh_prev: &mut [T],
    mask: StepMask,
) {
    for b in 0..gates.len() / (4 * h) {
        let dhr = &dh[b * h..][..h];
        let dcr = &mut dc[b * h..][..h];
        let dhp = &mut dh_prev[b * h..][..h];
        let dgr = &mut d_gates[b * 4 * h..][..4 * h];
        if !mask.active(b) {
            dgr.fill(T::ZERO);
            dhp.copy_from_slice(dhr);
            continue;
        }
        let dyr = &dy[b * dy_stride..][..h];
        let cp = &c_prev[b * h..][..h];
        let tc = &tanh_c[b * h..][..h];
        let [gi, gf, gg, go] = blocks::<T, 4>(&gates[b * 4 * h..], h);
        let [di, df, dg, d_o] = blocks_mut::<T, 4>(dgr, h);
        for j in 0..h {
            let (i, f, g, o, t) = (gi[j], gf[j], gg[j], go[j], tc[j]);
            let dht = dhr[j] + dyr[j];
            let dct = dcr[j] + dht * o * (T::ONE - t * t);
            d_o[j] = dht * t * o * (T::ONE - o);
            di[j] = dct * g * i * (T::ONE - i);
            df[j] = dct * cp[j] * f * (T::ONE - f);
            dg[j] = dct * i * (T::ONE - g * g);
            dcr[j] = dct * f;
            dhp[j] = T::ZERO;
        }
    }
}
