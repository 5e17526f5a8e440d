//! Simple recurrent network with its readout: the Elman and Jordan nets of
//! the long-memory literature, with leaky units and skip connections in time.
//!
//! One step, for t = 0..T (O outputs, d the skip distance):
//!
//! ```text
//! pre_t = W_ih x_t + b + W_hh h_{t−1} + W_skip h_{t−d} + W_fb f_{t−1}
//! h_t   = (1 − α) ⊙ h_{t−1} + α ⊙ act(pre_t)
//! z_t   = W_out h_t + b_out          o_t = out(z_t)
//! f_t   = target_t (teacher forcing) or o_t (free running)
//! ```
//!
//! An Elman net has W_hh; a Jordan net has W_fb and no W_hh. States before
//! the sequence (h_{t−d} with t < d, and h_{−1}) are h0. α is 1 (no leak),
//! one fixed value, or learned per unit as sigmoid(leak_logit). In free
//! running the gradient flows back through the fed-back output; under
//! teacher forcing the fed-back values are data.
//!
//! The readout is part of the layer because a Jordan net needs o_t inside
//! the time loop. The caller computes a loss from `z` and hands back dL/dz.

use crate::error::{check_len, Error, Result};
use crate::float::Float;
use crate::gemm::{gemm, Trans};
use crate::layer::linear::{linear_backward, linear_forward};
use crate::params::{ParamInfo, ParamStore, Scope};

/// The hidden units' nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrnActivation {
    /// tanh.
    Tanh,
    /// max(0, ·), as in the IRNN.
    Relu,
}

/// What the readout applies to z before feeding it back (the loss itself
/// always takes the logits z).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// o = z (regression).
    Linear,
    /// o = σ(z) per unit (independent bits).
    Sigmoid,
    /// o = softmax(z) per row (one class per step).
    Softmax,
}

/// The leak rate α of h_t = (1 − α)·h_{t−1} + α·act(pre_t).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leak {
    /// α = 1: a plain Elman unit.
    None,
    /// One fixed α in (0, 1] for the layer.
    Fixed(f64),
    /// α learned per unit as sigmoid(leak_logit), starting at the given value
    /// in (0, 1): units free to choose their own time scale.
    Learned(f64),
}

/// Shape and options of an [`Srn`].
#[derive(Clone, Debug, PartialEq)]
pub struct SrnConfig {
    /// I
    pub input_size: usize,
    /// H
    pub hidden_size: usize,
    /// O
    pub output_size: usize,
    /// The hidden nonlinearity.
    pub activation: SrnActivation,
    /// Whether h_{t−1} feeds step t through W_hh (Elman).
    pub recurrent: bool,
    /// Whether the previous output feeds step t through W_fb (Jordan).
    pub feedback: bool,
    /// The readout's nonlinearity, which decides what is fed back.
    pub output: OutputKind,
    /// The leak rate.
    pub leak: Leak,
    /// Skip distance d ≥ 2: h_{t−d} feeds step t through W_skip; 0 for none.
    pub skip: usize,
}

impl SrnConfig {
    /// An Elman net (tanh, W_hh, no leak, no skip, no feedback, linear readout).
    pub fn elman(input_size: usize, hidden_size: usize, output_size: usize) -> SrnConfig {
        SrnConfig {
            input_size,
            hidden_size,
            output_size,
            activation: SrnActivation::Tanh,
            recurrent: true,
            feedback: false,
            output: OutputKind::Linear,
            leak: Leak::None,
            skip: 0,
        }
    }

    /// A Jordan net: the previous output feeds the hidden layer; no W_hh.
    pub fn jordan(input_size: usize, hidden_size: usize, output_size: usize) -> SrnConfig {
        SrnConfig {
            recurrent: false,
            feedback: true,
            ..SrnConfig::elman(input_size, hidden_size, output_size)
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.input_size == 0 || self.hidden_size == 0 || self.output_size == 0 {
            return bad(format!(
                "input, hidden and output sizes must be at least 1 (got {}, {}, {})",
                self.input_size, self.hidden_size, self.output_size
            ));
        }
        if !self.recurrent && !self.feedback && self.skip == 0 {
            return bad("the net has no recurrent path: it needs W_hh, output feedback or a skip connection".into());
        }
        if self.skip == 1 {
            return bad(
                "skip distance 1 is the ordinary recurrence; use 0 (none) or at least 2".into(),
            );
        }
        match self.leak {
            Leak::Fixed(a) if !(a > 0.0 && a <= 1.0) => {
                bad(format!("leak rate α = {a} must be in (0, 1]"))
            }
            Leak::Learned(a) if !(a > 0.0 && a < 1.0) => bad(format!(
                "a learned leak rate starts at α = {a}, which must be in (0, 1)"
            )),
            _ => Ok(()),
        }
    }
}

/// Where each parameter tensor sits in the flat buffers.
#[derive(Clone, Debug)]
struct Layout {
    w_ih: std::ops::Range<usize>,
    w_hh: std::ops::Range<usize>,
    bias: std::ops::Range<usize>,
    w_skip: std::ops::Range<usize>,
    w_fb: std::ops::Range<usize>,
    leak_logit: std::ops::Range<usize>,
    w_out: std::ops::Range<usize>,
    b_out: std::ops::Range<usize>,
}

/// A simple recurrent network with a readout; see the module docs. Its
/// tensors live in a [`ParamStore`].
#[derive(Clone, Debug)]
pub struct Srn {
    config: SrnConfig,
    info: Vec<ParamInfo>,
    at: Layout,
}

/// Saved activations and gradients of the last pass; sized by the first
/// call for a shape and reused after.
#[derive(Clone, Debug, Default)]
pub struct SrnWorkspace<T> {
    steps: usize,
    batch: usize,
    teacher: bool,
    /// `[T, B, I]` copy of the input.
    x: Vec<T>,
    /// `[H]` the leak rate of each unit.
    alpha: Vec<T>,
    /// `[T, B, H]` pre-activations, then act(pre).
    act: Vec<T>,
    /// `[T+1, B, H]` slot 0 is h0, slot t+1 is h_t.
    hs: Vec<T>,
    /// `[T+1, B, O]` slot t is f_{t−1}, the value fed into step t (slot 0 is 0).
    fb: Vec<T>,
    /// `[T, B, O]` logits.
    z: Vec<T>,
    /// `[T, B, O]` out(z).
    o: Vec<T>,
    /// `[T, B, O]` dL/dz including what flows back through the feedback.
    dz: Vec<T>,
    /// `[T+1, B, H]` slot t+1 is the total dL/dh_t; slot 0 is dL/dh0.
    dhs: Vec<T>,
    /// `[T+1, B, O]` dL/d(fed-back value), laid out like `fb`.
    dfb: Vec<T>,
    /// `[T, B, H]` dL/dpre.
    dpre: Vec<T>,
    /// `[T, B, I]` dL/dx.
    dx: Vec<T>,
    /// `[H]` dL/dleak_logit summed over the steps (learned leak only).
    d_logit: Vec<T>,
}

impl<T: Float> SrnWorkspace<T> {
    /// An empty workspace.
    pub fn new() -> SrnWorkspace<T> {
        SrnWorkspace::default()
    }
    /// T of the last forward.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// B of the last forward.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `[T, B, O]` the logits z of the last forward.
    pub fn logits(&self) -> &[T] {
        &self.z
    }
    /// `[T, B, O]` out(z) of the last forward.
    pub fn outputs(&self) -> &[T] {
        &self.o
    }
    /// `[T+1, B, H]` h0 then h_0 … h_{T−1}.
    pub fn states(&self) -> &[T] {
        &self.hs
    }
    /// `[T, B, H]` act(pre_t) of the last forward.
    pub fn activations(&self) -> &[T] {
        &self.act
    }
    /// `[H]` the leak rate α of each unit in the last forward.
    pub fn alpha(&self) -> &[T] {
        &self.alpha
    }
    /// `[T, B, H]` total dL/dh_t after [`Srn::backward`]: every path, the
    /// readout at t and all later steps.
    pub fn state_grads(&self) -> &[T] {
        &self.dhs[self.dhs.len() / (self.steps + 1)..]
    }
    /// `[B, H]` dL/dh0 after [`Srn::backward`].
    pub fn dh0(&self) -> &[T] {
        &self.dhs[..self.dhs.len() / (self.steps + 1)]
    }
    /// `[T, B, I]` dL/dx after [`Srn::backward`].
    pub fn dx(&self) -> &[T] {
        &self.dx
    }
}

impl Srn {
    /// Registers a net's tensors in `scope`, all zero but a learned leak's
    /// logits (see [`crate::init`] to fill them).
    pub fn new<T: Float>(mut scope: Scope<'_, T>, config: SrnConfig) -> Result<Srn> {
        config.validate()?;
        let (i, h, o) = (config.input_size, config.hidden_size, config.output_size);
        let mut info = Vec::new();
        let mut add = |name: &str, shape: Vec<usize>, on: bool| {
            if !on {
                let at = scope.offset();
                return at..at;
            }
            let p = scope.add(name, &shape);
            info.push(ParamInfo {
                name: name.into(),
                shape,
                offset: p.offset,
            });
            p.range()
        };
        let at = Layout {
            w_ih: add("weight_ih", vec![h, i], true),
            w_hh: add("weight_hh", vec![h, h], config.recurrent),
            bias: add("bias", vec![h], true),
            w_skip: add("weight_skip", vec![h, h], config.skip > 0),
            w_fb: add("weight_fb", vec![h, o], config.feedback),
            leak_logit: add(
                "leak_logit",
                vec![h],
                matches!(config.leak, Leak::Learned(_)),
            ),
            w_out: add("out.weight", vec![o, h], true),
            b_out: add("out.bias", vec![o], true),
        };
        if let Leak::Learned(a) = config.leak {
            let logit = T::from_f64((a / (1.0 - a)).ln());
            scope.params_mut()[at.leak_logit.clone()].fill(logit);
        }
        Ok(Srn { config, info, at })
    }

    /// The configuration.
    pub fn config(&self) -> &SrnConfig {
        &self.config
    }

    /// Every parameter tensor with its name within the net and its offset
    /// in the store.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.info
    }

    /// A parameter tensor by name: `weight_ih`, `weight_hh`, `bias`,
    /// `weight_skip`, `weight_fb`, `leak_logit`, `out.weight`, `out.bias`.
    pub fn param_mut<'a, T: Float>(
        &self,
        store: &'a mut ParamStore<T>,
        name: &str,
    ) -> Option<&'a mut [T]> {
        let p = self.info.iter().find(|p| p.name == name)?;
        Some(&mut store.params[p.range()])
    }

    /// A parameter tensor by name, read-only.
    pub fn param<'a, T: Float>(&self, store: &'a ParamStore<T>, name: &str) -> Option<&'a [T]> {
        let p = self.info.iter().find(|p| p.name == name)?;
        Some(&store.params[p.range()])
    }

    /// Runs the net over `x` `[T, B, I]` from `h0` `[B, H]` (zeros when
    /// `None`). `teacher` `[T, B, O]` turns on teacher forcing: row t is fed
    /// back into step t+1 instead of o_t (only meaningful with feedback).
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut SrnWorkspace<T>,
        x: &[T],
        steps: usize,
        batch: usize,
        h0: Option<&[T]>,
        teacher: Option<&[T]>,
    ) -> Result<()> {
        let c = &self.config;
        let (tn, bn) = (steps, batch);
        let (i, h, o) = (c.input_size, c.hidden_size, c.output_size);
        if tn == 0 || bn == 0 {
            return Err(Error::Config(format!(
                "steps T and batch B must be at least 1 (got T = {tn}, B = {bn})"
            )));
        }
        check_len(
            "x",
            || format!("[T={tn}, B={bn}, I={i}]"),
            tn * bn * i,
            x.len(),
        )?;
        if let Some(s) = h0 {
            check_len("h0", || format!("[B={bn}, H={h}]"), bn * h, s.len())?;
        }
        if let Some(s) = teacher {
            check_len(
                "teacher",
                || format!("[T={tn}, B={bn}, O={o}]"),
                tn * bn * o,
                s.len(),
            )?;
        }
        let (bh, bo) = (bn * h, bn * o);
        ws.steps = tn;
        ws.batch = bn;
        ws.teacher = teacher.is_some();
        ws.x.clear();
        ws.x.extend_from_slice(x);
        ws.alpha.resize(h, T::ONE);
        match c.leak {
            Leak::None => ws.alpha.fill(T::ONE),
            Leak::Fixed(a) => ws.alpha.fill(T::from_f64(a)),
            Leak::Learned(_) => {
                for (a, l) in ws
                    .alpha
                    .iter_mut()
                    .zip(&store.params[self.at.leak_logit.clone()])
                {
                    *a = l.sigmoid();
                }
            }
        }
        ws.act.resize(tn * bh, T::ZERO);
        ws.hs.resize((tn + 1) * bh, T::ZERO);
        ws.fb
            .resize(if c.feedback { (tn + 1) * bo } else { 0 }, T::ZERO);
        ws.z.resize(tn * bo, T::ZERO);
        ws.o.resize(tn * bo, T::ZERO);
        match h0 {
            Some(s) => ws.hs[..bh].copy_from_slice(s),
            None => ws.hs[..bh].fill(T::ZERO),
        }
        ws.fb.iter_mut().take(bo).for_each(|v| *v = T::ZERO);

        let p = &store.params;
        let at = &self.at;
        // One GEMM for the input side of every step.
        linear_forward(
            x,
            &p[at.w_ih.clone()],
            &p[at.bias.clone()],
            tn * bn,
            i,
            h,
            &mut ws.act,
        );
        for t in 0..tn {
            let (prev, next) = ws.hs.split_at_mut((t + 1) * bh);
            let h_prev = &prev[t * bh..];
            let h_new = &mut next[..bh];
            let pre = &mut ws.act[t * bh..][..bh];
            if c.recurrent {
                gemm(
                    bn,
                    h,
                    h,
                    h_prev,
                    h,
                    Trans::N,
                    &p[at.w_hh.clone()],
                    h,
                    Trans::T,
                    pre,
                    h,
                    true,
                );
            }
            if c.skip > 0 {
                let s = skip_slot(t, c.skip);
                gemm(
                    bn,
                    h,
                    h,
                    &prev[s * bh..][..bh],
                    h,
                    Trans::N,
                    &p[at.w_skip.clone()],
                    h,
                    Trans::T,
                    pre,
                    h,
                    true,
                );
            }
            if c.feedback {
                gemm(
                    bn,
                    h,
                    o,
                    &ws.fb[t * bo..][..bo],
                    o,
                    Trans::N,
                    &p[at.w_fb.clone()],
                    o,
                    Trans::T,
                    pre,
                    h,
                    true,
                );
            }
            srn_forward_step(c.activation, h, pre, &ws.alpha, h_prev, h_new);
            let z = &mut ws.z[t * bo..][..bo];
            linear_forward(
                h_new,
                &p[at.w_out.clone()],
                &p[at.b_out.clone()],
                bn,
                h,
                o,
                z,
            );
            let out = &mut ws.o[t * bo..][..bo];
            output_forward(c.output, o, z, out);
            if c.feedback {
                let src = match teacher {
                    Some(tch) => &tch[t * bo..][..bo],
                    None => &ws.o[t * bo..][..bo],
                };
                ws.fb[(t + 1) * bo..][..bo].copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// Backpropagation through time for the last [`Srn::forward`] on `ws`:
    /// takes dL/dz `[T, B, O]`, adds dL/dparams into the store's gradients and
    /// leaves dL/dh_t, dL/dh0 and dL/dx in the workspace.
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut SrnWorkspace<T>,
        dz: &[T],
    ) -> Result<()> {
        let c = &self.config;
        let (tn, bn) = (ws.steps, ws.batch);
        let (i, h, o) = (c.input_size, c.hidden_size, c.output_size);
        if ws.act.len() != tn * bn * h || tn == 0 {
            return Err(Error::Order(
                "backward needs a forward pass of the same net on this workspace first".into(),
            ));
        }
        check_len(
            "dz",
            || format!("[T={tn}, B={bn}, O={o}]"),
            tn * bn * o,
            dz.len(),
        )?;
        let (bh, bo) = (bn * h, bn * o);
        ws.dz.clear();
        ws.dz.extend_from_slice(dz);
        ws.dhs.clear();
        ws.dhs.resize((tn + 1) * bh, T::ZERO);
        ws.dfb.clear();
        ws.dfb
            .resize(if c.feedback { (tn + 1) * bo } else { 0 }, T::ZERO);
        ws.dpre.resize(tn * bh, T::ZERO);
        ws.dx.resize(tn * bn * i, T::ZERO);
        let free_running = c.feedback && !ws.teacher;
        let learned = matches!(c.leak, Leak::Learned(_));
        let (p, g, at) = (&store.params, &mut store.grads, &self.at);
        ws.d_logit.clear();
        ws.d_logit.resize(if learned { h } else { 0 }, T::ZERO);

        for t in (0..tn).rev() {
            let dz_t = &mut ws.dz[t * bo..][..bo];
            if free_running {
                output_backward(
                    c.output,
                    o,
                    &ws.o[t * bo..][..bo],
                    &ws.dfb[(t + 1) * bo..][..bo],
                    dz_t,
                );
            }
            let (before, from) = ws.dhs.split_at_mut((t + 1) * bh);
            let dh = &mut from[..bh];
            // The readout at t: dh_t += dz_t · W_out.
            gemm(
                bn,
                h,
                o,
                dz_t,
                o,
                Trans::N,
                &p[at.w_out.clone()],
                h,
                Trans::N,
                dh,
                h,
                true,
            );
            let dpre = &mut ws.dpre[t * bh..][..bh];
            let h_prev = &ws.hs[t * bh..][..bh];
            srn_backward_step(
                c.activation,
                h,
                &ws.act[t * bh..][..bh],
                &ws.alpha,
                h_prev,
                dh,
                dpre,
                &mut before[t * bh..][..bh],
                if learned {
                    Some(&mut ws.d_logit[..])
                } else {
                    None
                },
            );
            if c.recurrent {
                gemm(
                    bn,
                    h,
                    h,
                    dpre,
                    h,
                    Trans::N,
                    &p[at.w_hh.clone()],
                    h,
                    Trans::N,
                    &mut before[t * bh..][..bh],
                    h,
                    true,
                );
            }
            if c.skip > 0 {
                let s = skip_slot(t, c.skip);
                gemm(
                    bn,
                    h,
                    h,
                    dpre,
                    h,
                    Trans::N,
                    &p[at.w_skip.clone()],
                    h,
                    Trans::N,
                    &mut before[s * bh..][..bh],
                    h,
                    true,
                );
            }
            if c.feedback {
                gemm(
                    bn,
                    o,
                    h,
                    dpre,
                    h,
                    Trans::N,
                    &p[at.w_fb.clone()],
                    o,
                    Trans::N,
                    &mut ws.dfb[t * bo..][..bo],
                    o,
                    true,
                );
            }
        }

        // The large products over all T·B rows.
        let rows = tn * bn;
        let (w_ih, bias) = (at.w_ih.clone(), at.bias.clone());
        let (gw, gb) = split_two(g, w_ih, bias);
        linear_backward(
            &ws.x,
            &p[at.w_ih.clone()],
            &ws.dpre,
            rows,
            i,
            h,
            gw,
            gb,
            Some(&mut ws.dx),
        );
        if c.recurrent {
            gemm(
                h,
                h,
                rows,
                &ws.dpre,
                h,
                Trans::T,
                &ws.hs,
                h,
                Trans::N,
                &mut g[at.w_hh.clone()],
                h,
                true,
            );
        }
        if c.skip > 0 {
            let d = c.skip;
            // Steps t ≥ d−1 read slots t+1−d = 0, 1, …: one product. The first
            // d−1 steps all read slot 0.
            let first = (d - 1).min(tn);
            let gs = &mut g[at.w_skip.clone()];
            if first < tn {
                gemm(
                    h,
                    h,
                    (tn - first) * bn,
                    &ws.dpre[first * bh..],
                    h,
                    Trans::T,
                    &ws.hs,
                    h,
                    Trans::N,
                    gs,
                    h,
                    true,
                );
            }
            for t in 0..first {
                gemm(
                    h,
                    h,
                    bn,
                    &ws.dpre[t * bh..][..bh],
                    h,
                    Trans::T,
                    &ws.hs[..bh],
                    h,
                    Trans::N,
                    gs,
                    h,
                    true,
                );
            }
        }
        if c.feedback {
            gemm(
                h,
                o,
                rows,
                &ws.dpre,
                h,
                Trans::T,
                &ws.fb,
                o,
                Trans::N,
                &mut g[at.w_fb.clone()],
                o,
                true,
            );
        }
        if learned {
            for (a, d) in g[at.leak_logit.clone()].iter_mut().zip(&ws.d_logit) {
                *a += *d;
            }
        }
        let (gw, gb) = split_two(g, at.w_out.clone(), at.b_out.clone());
        linear_backward(
            &ws.hs[bh..],
            &p[at.w_out.clone()],
            &ws.dz,
            rows,
            h,
            o,
            gw,
            gb,
            None,
        );
        Ok(())
    }
}

/// The state slot that the skip connection reads at step t: h_{t−d}, or h0
/// before the sequence.
fn skip_slot(t: usize, d: usize) -> usize {
    (t + 1).saturating_sub(d)
}

/// Two disjoint ranges of `g`, the first before the second, both mutable.
fn split_two<T>(
    g: &mut [T],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [T], &mut [T]) {
    let (lo, hi) = g.split_at_mut(b.start);
    (&mut lo[a], &mut hi[..b.len()])
}

/// act(pre) in place, then h_new = (1 − α) ⊙ h_prev + α ⊙ act.
fn srn_forward_step<T: Float>(
    act: SrnActivation,
    h: usize,
    pre: &mut [T],
    alpha: &[T],
    h_prev: &[T],
    h_new: &mut [T],
) {
    match act {
        SrnActivation::Tanh => pre.iter_mut().for_each(|v| *v = v.tanh()),
        SrnActivation::Relu => pre.iter_mut().for_each(|v| *v = v.max(T::ZERO)),
    }
    for ((hn, hp), a) in h_new
        .chunks_exact_mut(h)
        .zip(h_prev.chunks_exact(h))
        .zip(pre.chunks_exact(h))
    {
        for (((y, p), v), al) in hn.iter_mut().zip(hp).zip(a).zip(alpha) {
            *y = *p + *al * (*v - *p);
        }
    }
}

/// From the total dL/dh_t: dL/dpre, the leak's share of dL/dh_{t−1} (added
/// into `dh_prev`) and, for learned leaks, dL/dleak_logit (added).
#[allow(clippy::too_many_arguments)]
fn srn_backward_step<T: Float>(
    act: SrnActivation,
    h: usize,
    a: &[T],
    alpha: &[T],
    h_prev: &[T],
    dh: &[T],
    dpre: &mut [T],
    dh_prev: &mut [T],
    d_logit: Option<&mut [T]>,
) {
    for (((dp, v), g), al) in dpre.iter_mut().zip(a).zip(dh).zip(alpha.iter().cycle()) {
        let fprime = match act {
            SrnActivation::Tanh => T::ONE - *v * *v,
            SrnActivation::Relu => {
                if *v > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        };
        *dp = *g * *al * fprime;
    }
    if alpha.iter().all(|&al| al == T::ONE) {
        return;
    }
    for (dpr, g) in dh_prev.chunks_exact_mut(h).zip(dh.chunks_exact(h)) {
        for ((d, g), al) in dpr.iter_mut().zip(g).zip(alpha) {
            *d += (T::ONE - *al) * *g;
        }
    }
    if let Some(dl) = d_logit {
        // dh_t/dα = act − h_prev; dα/dlogit = α(1 − α).
        for ((g, v), hp) in dh
            .chunks_exact(h)
            .zip(a.chunks_exact(h))
            .zip(h_prev.chunks_exact(h))
        {
            for ((((d, g), v), hp), al) in dl.iter_mut().zip(g).zip(v).zip(hp).zip(alpha) {
                *d += *g * (*v - *hp) * *al * (T::ONE - *al);
            }
        }
    }
}

/// o = out(z), row by row.
fn output_forward<T: Float>(kind: OutputKind, o: usize, z: &[T], out: &mut [T]) {
    match kind {
        OutputKind::Linear => out.copy_from_slice(z),
        OutputKind::Sigmoid => out.iter_mut().zip(z).for_each(|(y, v)| *y = v.sigmoid()),
        OutputKind::Softmax => {
            for (yr, zr) in out.chunks_exact_mut(o).zip(z.chunks_exact(o)) {
                let max = zr.iter().fold(zr[0], |m, v| m.max(*v));
                let mut sum = T::ZERO;
                for (y, v) in yr.iter_mut().zip(zr) {
                    *y = (*v - max).exp();
                    sum += *y;
                }
                let inv = T::ONE / sum;
                yr.iter_mut().for_each(|y| *y *= inv);
            }
        }
    }
}

/// dz += J_outᵀ · d_out, with J_out the Jacobian of out at the saved o.
fn output_backward<T: Float>(kind: OutputKind, o: usize, out: &[T], d_out: &[T], dz: &mut [T]) {
    match kind {
        OutputKind::Linear => dz.iter_mut().zip(d_out).for_each(|(d, g)| *d += *g),
        OutputKind::Sigmoid => {
            for ((d, g), y) in dz.iter_mut().zip(d_out).zip(out) {
                *d += *g * *y * (T::ONE - *y);
            }
        }
        OutputKind::Softmax => {
            for ((dr, gr), yr) in dz
                .chunks_exact_mut(o)
                .zip(d_out.chunks_exact(o))
                .zip(out.chunks_exact(o))
            {
                let dot = gr.iter().zip(yr).fold(T::ZERO, |s, (g, y)| s + *g * *y);
                for ((d, g), y) in dr.iter_mut().zip(gr).zip(yr) {
                    *d += *y * (*g - dot);
                }
            }
        }
    }
}
