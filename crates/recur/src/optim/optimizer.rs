//! [`Optimizer`]: the update rules and their state.

use super::{py_float, OptimConfig, OptimizerKind};
use crate::error::{Error, Result};

/// An optimiser with its per-tensor state, for a fixed list of parameter
/// tensors.
///
/// State, per tensor, under PyTorch's `state_dict` names:
///
/// | kind | state |
/// |---|---|
/// | sgd | `momentum_buffer` (only with momentum > 0) |
/// | adam, adamw | `exp_avg`, `exp_avg_sq` |
/// | rmsprop | `square_avg`, and `momentum_buffer` with momentum > 0 |
/// | adagrad | `sum` |
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimConfig,
    sizes: Vec<usize>,
    /// Updates made so far (PyTorch's `step`, shared by all tensors).
    step: u64,
    /// Per tensor: exp_avg (adam), momentum_buffer (sgd, rmsprop) or sum
    /// (adagrad); empty vectors when the rule keeps none.
    a: Vec<Vec<f32>>,
    /// Per tensor: exp_avg_sq (adam) or square_avg (rmsprop); else empty.
    b: Vec<Vec<f32>>,
    /// β1, β2 and weight decay as Python floats, for the f64 scalar math.
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    /// `1 - β1`, `1 - β2`, `1 - α` computed in f64 and rounded, as PyTorch
    /// passes them to its kernels.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    one_minus_alpha: f32,
}

/// Bits of the step count in each f32 of the `step` state tensor: each
/// piece stays below 2^24, so f32 holds it exactly and all 64 bits survive.
const STEP_PIECE_BITS: [u32; 3] = [22, 22, 20];

impl Optimizer {
    /// An optimiser for tensors of the lengths `sizes`, in the order
    /// [`Optimizer::step`] will receive them. Validates `config` and
    /// allocates all state (zeros) here.
    pub fn new(config: OptimConfig, sizes: &[usize]) -> Result<Optimizer> {
        config.validate()?;
        let (has_a, has_b) = state_slots(&config);
        let alloc = |yes: bool| -> Vec<Vec<f32>> {
            sizes
                .iter()
                .map(|&n| if yes { vec![0.0; n] } else { Vec::new() })
                .collect()
        };
        Ok(Optimizer {
            a: alloc(has_a),
            b: alloc(has_b),
            sizes: sizes.to_vec(),
            step: 0,
            beta1: py_float(config.beta1),
            beta2: py_float(config.beta2),
            weight_decay: py_float(config.weight_decay),
            one_minus_beta1: (1.0 - py_float(config.beta1)) as f32,
            one_minus_beta2: (1.0 - py_float(config.beta2)) as f32,
            one_minus_alpha: (1.0 - py_float(config.alpha)) as f32,
            config,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Updates made so far (restored by [`Optimizer::load_state`]).
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One update of every tensor: `params[i]` with gradient `grads[i]`,
    /// both of length `sizes[i]`. `lr` is used instead of `config().lr`, so a
    /// schedule can pass the current rate; it is not checked here.
    ///
    /// # Panics
    /// If the counts or lengths differ from the `sizes` given to
    /// [`Optimizer::new`].
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], lr: f32) {
        let n = self.sizes.len();
        assert_eq!(params.len(), n, "optimizer: number of parameter tensors");
        assert_eq!(grads.len(), n, "optimizer: number of gradient tensors");
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            assert!(
                p.len() == self.sizes[i] && g.len() == self.sizes[i],
                "optimizer: tensor {i} has {} values and gradient {}, expected {}",
                p.len(),
                g.len(),
                self.sizes[i]
            );
        }
        self.step += 1;
        let adam_scalars = matches!(self.config.kind, OptimizerKind::Adam | OptimizerKind::AdamW)
            .then(|| self.adam_scalars(lr));
        let c = &self.config;
        let tensors = params
            .iter_mut()
            .zip(grads)
            .zip(self.a.iter_mut().zip(self.b.iter_mut()));
        let one_minus_alpha = self.one_minus_alpha;
        let first = self.step == 1;
        for ((p, g), (a, b)) in tensors {
            // Elementwise rules: split over threads, the same numbers at
            // any split.
            par_update(p, g, a, b, &|p, g, a, b| match c.kind {
                // PyTorch's buffer is None before the first step: it starts as the gradient.
                OptimizerKind::Sgd => sgd(p, g, a, lr, c.weight_decay, c.momentum, first),
                OptimizerKind::Adam | OptimizerKind::AdamW => adam(
                    p,
                    g,
                    a,
                    b,
                    adam_scalars.as_ref().expect("computed for adam"),
                ),
                OptimizerKind::RmsProp => rmsprop(p, g, b, a, lr, c, one_minus_alpha),
                // clr = lr / (1 + (step - 1)·lr_decay) = lr, as lr_decay is 0.
                OptimizerKind::Adagrad => adagrad(p, g, a, lr, c.weight_decay, c.eps),
            });
        }
    }

    /// The per-step scalars of Adam/AdamW, computed as `_single_tensor_adam`
    /// does on Python floats (f64), then rounded for the kernels.
    fn adam_scalars(&self, lr: f32) -> AdamScalars {
        let c = &self.config;
        let lr = py_float(lr);
        // PyTorch's step is a float tensor; `.item()` gives the count as a float.
        let t = self.step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(t);
        let bias_correction2 = 1.0 - self.beta2.powf(t);
        let step_size = lr / bias_correction1;
        let decoupled = c.kind == OptimizerKind::AdamW;
        AdamScalars {
            one_minus_beta1: self.one_minus_beta1,
            beta2: c.beta2,
            one_minus_beta2: self.one_minus_beta2,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            neg_step_size: (-step_size) as f32,
            eps: c.eps,
            l2: if decoupled { 0.0 } else { c.weight_decay },
            decay: (decoupled && c.weight_decay != 0.0)
                .then_some((1.0 - lr * self.weight_decay) as f32),
        }
    }

    /// Names of the two state slots (empty where the rule keeps none).
    fn slot_names(&self) -> [&'static str; 2] {
        let (has_a, has_b) = state_slots(&self.config);
        let [a, b] = match self.config.kind {
            OptimizerKind::Sgd => ["momentum_buffer", ""],
            OptimizerKind::Adam | OptimizerKind::AdamW => ["exp_avg", "exp_avg_sq"],
            OptimizerKind::RmsProp => ["momentum_buffer", "square_avg"],
            OptimizerKind::Adagrad => ["sum", ""],
        };
        [if has_a { a } else { "" }, if has_b { b } else { "" }]
    }

    /// All state as named flat tensors, for a checkpoint: `step` and, per
    /// tensor `i`, the rule's buffers named `NAME.i` (`exp_avg.3`,
    /// `exp_avg_sq.3`, `momentum_buffer.3`, `square_avg.3`, `sum.3`).
    ///
    /// `step` holds the update count exactly, as three f32 integers: bits
    /// 0–21, 22–43 and 44–63.
    pub fn state_tensors(&self) -> Vec<(String, Vec<f32>)> {
        let mut pieces = Vec::with_capacity(STEP_PIECE_BITS.len());
        let mut rest = self.step;
        for bits in STEP_PIECE_BITS {
            pieces.push((rest & ((1 << bits) - 1)) as f32);
            rest >>= bits;
        }
        let mut out = vec![("step".to_string(), pieces)];
        let [na, nb] = self.slot_names();
        for i in 0..self.sizes.len() {
            for (name, slot) in [(na, &self.a), (nb, &self.b)] {
                if !name.is_empty() {
                    out.push((format!("{name}.{i}"), slot[i].clone()));
                }
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`] of an
    /// optimiser with the same kind, momentum setting and sizes, so that
    /// later steps are bit-for-bit those of the saved one.
    ///
    /// Fails with [`Error::Config`] naming the tensor that is missing, has
    /// the wrong length, is given twice, is not part of this optimiser's
    /// state, or (for `step`) does not hold a valid count. Nothing changes
    /// on failure.
    pub fn load_state(&mut self, tensors: &[(String, Vec<f32>)]) -> Result<()> {
        let err = |msg: String| Error::Config(format!("optimizer state: {msg}"));
        let [na, nb] = self.slot_names();
        let mut expected = vec![("step".to_string(), STEP_PIECE_BITS.len())];
        for (i, &n) in self.sizes.iter().enumerate() {
            for name in [na, nb] {
                if !name.is_empty() {
                    expected.push((format!("{name}.{i}"), n));
                }
            }
        }
        for (k, (name, _)) in tensors.iter().enumerate() {
            if !expected.iter().any(|(e, _)| e == name) {
                return Err(err(format!(
                    "unexpected tensor '{name}' (not part of {} state for {} tensors{})",
                    self.config.kind.name(),
                    self.sizes.len(),
                    if self.config.momentum > 0.0 {
                        " with momentum"
                    } else {
                        ""
                    }
                )));
            }
            if tensors[..k].iter().any(|(n, _)| n == name) {
                return Err(err(format!("tensor '{name}' given twice")));
            }
        }
        let mut found = Vec::with_capacity(expected.len());
        for (name, len) in &expected {
            let v = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| err(format!("missing tensor '{name}'")))?;
            if v.len() != *len {
                return Err(err(format!(
                    "tensor '{name}' has {} values, expected {len}",
                    v.len()
                )));
            }
            found.push(v);
        }
        let mut step = 0u64;
        let mut shift = 0;
        for (&x, bits) in found[0].iter().zip(STEP_PIECE_BITS) {
            if !(x >= 0.0 && x.fract() == 0.0 && (x as u64) < 1 << bits) {
                return Err(err(format!(
                    "tensor 'step' holds {:?}, not a valid step count",
                    found[0]
                )));
            }
            step |= (x as u64) << shift;
            shift += bits;
        }
        // Everything checked: copy in the same order as `expected`.
        let mut src = found[1..].iter();
        for i in 0..self.sizes.len() {
            for (name, slot) in [(na, &mut self.a), (nb, &mut self.b)] {
                if !name.is_empty() {
                    slot[i].copy_from_slice(src.next().expect("checked above"));
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Which state slots a configuration keeps: (a, b) as in [`Optimizer`].
fn state_slots(c: &OptimConfig) -> (bool, bool) {
    match c.kind {
        OptimizerKind::Sgd => (c.momentum != 0.0, false),
        OptimizerKind::Adam | OptimizerKind::AdamW => (true, true),
        OptimizerKind::RmsProp => (c.momentum > 0.0, true),
        OptimizerKind::Adagrad => (true, false),
    }
}

/// `grad.add(param, alpha=wd)`, skipped like PyTorch when wd is 0.
#[inline(always)]
fn l2(g: f32, p: f32, wd: f32) -> f32 {
    if wd != 0.0 {
        g + wd * p
    } else {
        g
    }
}

/// `start.lerp_(end, w)` as ATen computes it: the form that is exact at
/// the nearer end.
#[inline(always)]
fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        start + w * (end - start)
    } else {
        end - (end - start) * (1.0 - w)
    }
}

/// A raw pointer that crosses into the pool's threads; each thread touches
/// only its own range.
#[derive(Clone, Copy)]
struct Raw(*mut f32);
// SAFETY: `par_update` gives each task a disjoint range of the buffers.
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

/// A read-only pointer that crosses into the pool's threads.
#[derive(Clone, Copy)]
struct RawConst(*const f32);
// SAFETY: only read, by tasks over disjoint ranges.
unsafe impl Send for RawConst {}
unsafe impl Sync for RawConst {}
impl RawConst {
    /// A method, so closures capture the whole (Sync) wrapper.
    fn at(self, offset: usize) -> *const f32 {
        self.0.wrapping_add(offset)
    }
}

/// Runs an update rule over (params, grads, state a, state b) split into
/// one contiguous range per thread. A state buffer may be empty (unused).
type Rule<'a> = &'a (dyn Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync);
fn par_update(p: &mut [f32], g: &[f32], a: &mut [f32], b: &mut [f32], rule: Rule<'_>) {
    let n = p.len();
    let (na, nb) = (a.len(), b.len());
    assert!(g.len() == n && (na == 0 || na == n) && (nb == 0 || nb == n));
    let (pp, gp, ap, bp) = (
        Raw(p.as_mut_ptr()),
        RawConst(g.as_ptr()),
        Raw(a.as_mut_ptr()),
        Raw(b.as_mut_ptr()),
    );
    crate::pool::par_ranges(n, 1 << 15, &|r| {
        let sub = |ptr: Raw, len: usize| -> &mut [f32] {
            if len == 0 {
                return &mut [];
            }
            // SAFETY: the buffers hold n values (or none, asserted above),
            // and the ranges the pool hands out are disjoint and within 0..n.
            unsafe { std::slice::from_raw_parts_mut(ptr.0.add(r.start), r.len()) }
        };
        // SAFETY: as above; the gradient is only read.
        let g = unsafe { std::slice::from_raw_parts(gp.at(r.start), r.len()) };
        rule(sub(pp, n), g, sub(ap, na), sub(bp, nb));
    });
}

/// `_single_tensor_sgd` for one tensor (dampening 0, no Nesterov).
fn sgd(p: &mut [f32], g: &[f32], buf: &mut [f32], lr: f32, wd: f32, momentum: f32, first: bool) {
    let neg_lr = -lr;
    if momentum == 0.0 {
        for (p, &g) in p.iter_mut().zip(g) {
            let d = l2(g, *p, wd);
            *p += neg_lr * d;
        }
    } else {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(buf) {
            let d = l2(g, *p, wd);
            // buf.mul_(momentum).add_(d, alpha=1 - dampening)
            *b = if first { d } else { *b * momentum + d };
            *p += neg_lr * *b;
        }
    }
}

/// Scalars of one Adam/AdamW step, rounded to f32 as the kernels get them.
struct AdamScalars {
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    neg_step_size: f32,
    eps: f32,
    /// L2 weight decay (0 for AdamW).
    l2: f32,
    /// AdamW's `1 - lr·wd` factor.
    decay: Option<f32>,
}

/// `_single_tensor_adam` / `_single_tensor_adamw` for one tensor.
fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamScalars) {
    let decay = s.decay.unwrap_or(1.0);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        if s.decay.is_some() {
            *p *= decay;
        }
        let d = l2(g, *p, s.l2);
        *m = lerp(*m, d, s.one_minus_beta1);
        // exp_avg_sq.mul_(β2).addcmul_(d, d, value=1 - β2)
        *v = *v * s.beta2 + s.one_minus_beta2 * d * d;
        // (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
        // param.addcdiv_(exp_avg, denom, value=-step_size)
        *p += s.neg_step_size * *m / denom;
    }
}

/// `_single_tensor_rmsprop` for one tensor (centered=False).
fn rmsprop(
    p: &mut [f32],
    g: &[f32],
    square_avg: &mut [f32],
    buf: &mut [f32],
    lr: f32,
    c: &OptimConfig,
    one_minus_alpha: f32,
) {
    let (neg_lr, wd, alpha, eps, momentum) = (-lr, c.weight_decay, c.alpha, c.eps, c.momentum);
    if momentum > 0.0 {
        for (((p, &g), sa), b) in p.iter_mut().zip(g).zip(square_avg).zip(buf) {
            let d = l2(g, *p, wd);
            *sa = *sa * alpha + one_minus_alpha * d * d;
            let avg = sa.sqrt() + eps;
            // buf.mul_(momentum).addcdiv_(d, avg); param.add_(buf, alpha=-lr)
            *b = *b * momentum + d / avg;
            *p += neg_lr * *b;
        }
    } else {
        for ((p, &g), sa) in p.iter_mut().zip(g).zip(square_avg) {
            let d = l2(g, *p, wd);
            *sa = *sa * alpha + one_minus_alpha * d * d;
            let avg = sa.sqrt() + eps;
            // param.addcdiv_(d, avg, value=-lr)
            *p += neg_lr * d / avg;
        }
    }
}

/// `_single_tensor_adagrad` for one tensor (lr_decay 0, dense gradient).
fn adagrad(p: &mut [f32], g: &[f32], sum: &mut [f32], lr: f32, wd: f32, eps: f32) {
    let neg_lr = -lr;
    for ((p, &g), s) in p.iter_mut().zip(g).zip(sum) {
        let d = l2(g, *p, wd);
        // state_sum.addcmul_(d, d, value=1)
        *s += d * d;
        // std = state_sum.sqrt().add_(eps); param.addcdiv_(d, std, value=-clr)
        let std = s.sqrt() + eps;
        *p += neg_lr * d / std;
    }
}
