//! Fully connected layer with PyTorch's layout: weight `[out, in]`, bias `[out]`.

use crate::float::Float;
use crate::params::{Param, ParamStore, Scope};
use crate::quant::{grad_tn, weight_nn, weight_nt, PackedRef};

/// A fully connected layer as a part of a model: `weight` `[out, in]` and
/// `bias` `[out]` in the store. Applied to `[T·B, in]` it is a per-step
/// readout; to `[B, in]`, a head on a pooled vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    input: usize,
    output: usize,
    weight: Param,
    bias: Param,
}

impl Linear {
    /// Registers `weight` and `bias` (zero) in `scope`.
    pub fn new<T: Float>(mut scope: Scope<'_, T>, inp: usize, out: usize) -> Linear {
        let weight = scope.add("weight", &[out, inp]);
        let bias = scope.add("bias", &[out]);
        Linear {
            input: inp,
            output: out,
            weight,
            bias,
        }
    }
    /// Input features.
    pub fn input(&self) -> usize {
        self.input
    }
    /// Output features.
    pub fn output(&self) -> usize {
        self.output
    }
    /// The weight `[out, in]`.
    pub fn weight(&self) -> Param {
        self.weight
    }
    /// The bias `[out]`.
    pub fn bias(&self) -> Param {
        self.bias
    }
    /// `y[N, out] = x[N, in] · Wᵀ + b`.
    pub fn forward<T: Float>(&self, store: &ParamStore<T>, x: &[T], n: usize, y: &mut [T]) {
        let p = &store.params;
        linear_forward(
            x,
            self.weight.of(p),
            store.packed(self.weight),
            self.bias.of(p),
            n,
            self.input,
            self.output,
            y,
        );
    }
    /// Adds dW and db into the store's gradients; writes dx `[N, in]` when given.
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        x: &[T],
        dy: &[T],
        n: usize,
        dx: Option<&mut [T]>,
    ) {
        let (view, g) = store.view_and_grads();
        let (lo, hi) = g.split_at_mut(self.bias.offset);
        linear_backward(
            x,
            self.weight.of(view.params),
            view.packed(self.weight),
            dy,
            n,
            self.input,
            self.output,
            self.weight.of_mut(lo),
            &mut hi[..self.bias.len],
            dx,
        );
    }
}

/// `y[N, out] = x[N, in] · Wᵀ + b`, through W's converted copy `packed`
/// when there is one (inference in bf16 or int8).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_forward<T: Float>(
    x: &[T],
    w: &[T],
    packed: Option<PackedRef<'_>>,
    b: &[T],
    n: usize,
    inp: usize,
    out: usize,
    y: &mut [T],
) {
    for row in y[..n * out].chunks_exact_mut(out) {
        row.copy_from_slice(b);
    }
    weight_nt(n, out, inp, x, inp, w, packed, y, out, true);
}

/// Adds dW `[out, in]` += dyᵀ·x and db += Σ dy; writes dx `[N, in]` = dy·W
/// when `dx` is given. In bf16 when `packed` is W packed for training.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_backward<T: Float>(
    x: &[T],
    w: &[T],
    packed: Option<PackedRef<'_>>,
    dy: &[T],
    n: usize,
    inp: usize,
    out: usize,
    dw: &mut [T],
    db: &mut [T],
    dx: Option<&mut [T]>,
) {
    let qt = packed.and_then(PackedRef::t);
    grad_tn(out, inp, n, dy, out, x, dw, qt.is_some());
    super::add_column_sums(db, &dy[..n * out], out);
    if let Some(dx) = dx {
        weight_nn(n, inp, out, dy, out, w, qt, dx, inp, false);
    }
}
