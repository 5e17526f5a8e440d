//! Pooling over time: one vector per sequence from a ragged batch of step
//! outputs, reading only the valid steps t < `lengths[b]`.
//!
//! - mean and max: no parameters (max saves its argmax for backward);
//! - attention (Yang et al. 2016's form): u_t = tanh(W·y_t + b),
//!   a_t = softmax over the valid t of v·u_t, out = Σ a_t·y_t;
//! - the final state (`last`) needs no kernel: it is the stack's h_n.

use crate::float::{dot, Float};
use crate::layer::linear::Linear;
use crate::params::{Param, ParamStore, Scope};

/// Mean over the valid steps: `out[b] = Σ_{t<len_b} y[t, b] / len_b`.
/// y `[T, B, F]`, lengths `[B]`, out `[B, F]`.
pub fn mean_forward<T: Float>(y: &[T], lengths: &[usize], f: usize, out: &mut [T]) {
    let bn = lengths.len();
    out[..bn * f].fill(T::ZERO);
    for (b, &len) in lengths.iter().enumerate() {
        let o = &mut out[b * f..][..f];
        for t in 0..len {
            for (o, v) in o.iter_mut().zip(&y[(t * bn + b) * f..][..f]) {
                *o += *v;
            }
        }
        let inv = T::from_f64(1.0 / len as f64);
        o.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Adds dL/dy `[T, B, F]` of [`mean_forward`] given dL/dout `[B, F]`.
pub fn mean_backward<T: Float>(d_out: &[T], lengths: &[usize], f: usize, dy: &mut [T]) {
    let bn = lengths.len();
    for (b, &len) in lengths.iter().enumerate() {
        let inv = T::from_f64(1.0 / len as f64);
        let d = &d_out[b * f..][..f];
        for t in 0..len {
            for (g, v) in dy[(t * bn + b) * f..][..f].iter_mut().zip(d) {
                *g += *v * inv;
            }
        }
    }
}

/// Max over the valid steps, per feature; `argmax` `[B, F]` keeps the step
/// that won (the first, on ties).
pub fn max_forward<T: Float>(
    y: &[T],
    lengths: &[usize],
    f: usize,
    out: &mut [T],
    argmax: &mut [u32],
) {
    let bn = lengths.len();
    for (b, &len) in lengths.iter().enumerate() {
        let o = &mut out[b * f..][..f];
        let a = &mut argmax[b * f..][..f];
        o.copy_from_slice(&y[b * f..][..f]);
        a.fill(0);
        for t in 1..len {
            for ((o, a), v) in o
                .iter_mut()
                .zip(a.iter_mut())
                .zip(&y[(t * bn + b) * f..][..f])
            {
                if *v > *o {
                    *o = *v;
                    *a = t as u32;
                }
            }
        }
    }
}

/// Adds dL/dy of [`max_forward`]: each feature's gradient goes to its argmax.
pub fn max_backward<T: Float>(d_out: &[T], argmax: &[u32], bn: usize, f: usize, dy: &mut [T]) {
    for b in 0..bn {
        for j in 0..f {
            let t = argmax[b * f + j] as usize;
            dy[(t * bn + b) * f + j] += d_out[b * f + j];
        }
    }
}

/// Attention pooling's parameters: `proj` (W `[A, F]`, b `[A]`) and the
/// context vector v `[A]`, registered as `weight`, `bias` and `context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionPool {
    proj: Linear,
    context: Param,
}

/// What attention pooling keeps between forward and backward.
#[derive(Clone, Debug, Default)]
pub struct AttentionWs<T> {
    /// `[T·B, A]` u = tanh(W·y + b), then its gradient.
    u: Vec<T>,
    /// `[T, B]` the weights a (zero at padded steps).
    weights: Vec<T>,
}

impl<T> AttentionWs<T> {
    /// `[T, B]` the attention weights of the last forward.
    pub fn weights(&self) -> &[T] {
        &self.weights
    }
}

impl AttentionPool {
    /// Registers the parameters for features of width `f`, attention width `a`.
    pub fn new<T: Float>(mut scope: Scope<'_, T>, f: usize, a: usize) -> AttentionPool {
        let proj = Linear::new(scope.pp("proj"), f, a);
        let context = scope.add("context", &[a]);
        AttentionPool { proj, context }
    }

    /// The projection W, b.
    pub fn proj(&self) -> Linear {
        self.proj
    }

    /// The context vector v.
    pub fn context(&self) -> Param {
        self.context
    }

    /// Pools y `[T, B, F]` into out `[B, F]`.
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut AttentionWs<T>,
        y: &[T],
        lengths: &[usize],
        tn: usize,
        out: &mut [T],
    ) {
        let (bn, f, a) = (lengths.len(), self.proj.input(), self.proj.output());
        ws.u.resize(tn * bn * a, T::ZERO);
        ws.weights.resize(tn * bn, T::ZERO);
        self.proj.forward(store, y, tn * bn, &mut ws.u);
        ws.u.iter_mut().for_each(|v| *v = v.tanh());
        let v = self.context.of(&store.params);
        for (b, &len) in lengths.iter().enumerate() {
            // Scores into the weights' slots, then a softmax over t < len.
            let mut max = T::from_f64(f64::NEG_INFINITY);
            for t in 0..tn {
                let s = if t < len {
                    dot(&ws.u[(t * bn + b) * a..][..a], v)
                } else {
                    T::ZERO
                };
                ws.weights[t * bn + b] = s;
                if t < len {
                    max = max.max(s);
                }
            }
            let mut sum = T::ZERO;
            for t in 0..len {
                let e = (ws.weights[t * bn + b] - max).exp();
                ws.weights[t * bn + b] = e;
                sum += e;
            }
            let o = &mut out[b * f..][..f];
            o.fill(T::ZERO);
            for t in 0..tn {
                let w = &mut ws.weights[t * bn + b];
                *w = if t < len { *w / sum } else { T::ZERO };
                for (o, x) in o.iter_mut().zip(&y[(t * bn + b) * f..][..f]) {
                    *o += *w * *x;
                }
            }
        }
    }

    /// Backward of [`AttentionPool::forward`]: adds dL/dW, dL/db, dL/dv to
    /// the store and dL/dy into `dy` `[T, B, F]`; `scratch` `[T·B, F]` is
    /// overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut AttentionWs<T>,
        y: &[T],
        lengths: &[usize],
        tn: usize,
        d_out: &[T],
        dy: &mut [T],
        scratch: &mut [T],
    ) {
        let (bn, f, a) = (lengths.len(), self.proj.input(), self.proj.output());
        let v_at = self.context;
        // ds_t = a_t (da_t − Σ a·da), da_t = d_out·y_t; then
        // dv += Σ ds_t u_t and du_t = ds_t v ⊙ (1 − u_t²), in place of u.
        for (b, &len) in lengths.iter().enumerate() {
            let d = &d_out[b * f..][..f];
            let mut mean = T::ZERO;
            for t in 0..len {
                mean += ws.weights[t * bn + b] * dot(d, &y[(t * bn + b) * f..][..f]);
            }
            for t in 0..tn {
                let row = (t * bn + b) * a;
                if t >= len {
                    ws.u[row..row + a].fill(T::ZERO);
                    continue;
                }
                let w = ws.weights[t * bn + b];
                let da = dot(d, &y[(t * bn + b) * f..][..f]);
                let ds = w * (da - mean);
                let (params, grads) = (&store.params, &mut store.grads);
                let v = v_at.of(params);
                for (j, u) in ws.u[row..row + a].iter_mut().enumerate() {
                    grads[v_at.offset + j] += ds * *u;
                    *u = ds * v[j] * (T::ONE - *u * *u);
                }
            }
        }
        let scratch = &mut scratch[..tn * bn * f];
        self.proj
            .backward(store, y, &ws.u, tn * bn, Some(&mut *scratch));
        for (g, s) in dy.iter_mut().zip(scratch.iter()) {
            *g += *s;
        }
        for (b, &len) in lengths.iter().enumerate() {
            let d = &d_out[b * f..][..f];
            for t in 0..len {
                let w = ws.weights[t * bn + b];
                for (g, x) in dy[(t * bn + b) * f..][..f].iter_mut().zip(d) {
                    *g += w * *x;
                }
            }
        }
    }
}
