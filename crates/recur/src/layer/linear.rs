//! Fully connected layer with PyTorch's layout: weight `[out, in]`, bias `[out]`.

use crate::float::Float;
use crate::gemm::{gemm, Trans};

/// `y[N, out] = x[N, in] · Wᵀ + b`.
pub fn linear_forward<T: Float>(
    x: &[T],
    w: &[T],
    b: &[T],
    n: usize,
    inp: usize,
    out: usize,
    y: &mut [T],
) {
    for row in y[..n * out].chunks_exact_mut(out) {
        row.copy_from_slice(b);
    }
    gemm(
        n,
        out,
        inp,
        x,
        inp,
        Trans::N,
        w,
        inp,
        Trans::T,
        y,
        out,
        true,
    );
}

/// Adds dW `[out, in]` += dyᵀ·x and db += Σ dy; writes dx `[N, in]` = dy·W
/// when `dx` is given.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Float>(
    x: &[T],
    w: &[T],
    dy: &[T],
    n: usize,
    inp: usize,
    out: usize,
    dw: &mut [T],
    db: &mut [T],
    dx: Option<&mut [T]>,
) {
    gemm(
        out,
        inp,
        n,
        dy,
        out,
        Trans::T,
        x,
        inp,
        Trans::N,
        dw,
        inp,
        true,
    );
    for row in dy[..n * out].chunks_exact(out) {
        for (a, g) in db.iter_mut().zip(row) {
            *a += *g;
        }
    }
    if let Some(dx) = dx {
        gemm(
            n,
            inp,
            out,
            dy,
            out,
            Trans::N,
            w,
            inp,
            Trans::N,
            dx,
            inp,
            false,
        );
    }
}
