//! The Jordan net: an Elman layer fed back its own output, built from the
//! parts every model uses: a one-layer [`Rnn`] run one step at a time and a
//! [`Linear`] readout.
//!
//! One step, for t = 0..T (O outputs; the previous output f_{−1} = 0):
//!
//! ```text
//! h_t = Elman([x_t ; f_{t−1}], h_{t−1})    (leak, skip, W_hh as configured)
//! z_t = W_out h_t + b_out                   o_t = out(z_t)
//! f_t = target_t (teacher forcing) or o_t (free running)
//! ```
//!
//! The layer's `weight_ih` `[H, I+O]` holds W_ih in its first I columns and
//! the feedback weights W_fb in its last O. A Jordan net proper has no W_hh
//! (`hidden_to_hidden: false`); with it the net is an Elman–Jordan hybrid.
//! In free running the gradient flows back through the fed-back output;
//! under teacher forcing the fed-back values are data. The caller computes
//! a loss from the logits z and hands back dL/dz.

use serde::{Deserialize, Serialize};

use crate::error::{check_len, Error, Result};
use crate::float::Float;
use crate::gemm::gemm_nn;
use crate::layer::linear::Linear;
use crate::layer::rnn::{Rnn, RnnConfig, RnnWorkspace};
use crate::params::{ParamStore, Scope};

/// What the readout applies to z before feeding it back (the loss itself
/// always takes the logits z).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// o = z (regression).
    Linear,
    /// o = σ(z) per unit (independent bits).
    Sigmoid,
    /// o = softmax(z) per row (one class per step).
    Softmax,
}

/// A Jordan net: its Elman layer (input I+O), readout and output function.
#[derive(Clone, Debug)]
pub struct JordanNet {
    rnn: Rnn,
    out: Linear,
    output: OutputKind,
    /// I: inputs per step (without the fed-back outputs).
    inputs: usize,
}

/// Saved activations of the last pass, sized once and reused.
#[derive(Clone, Debug, Default)]
pub struct JordanWorkspace<T> {
    rnn: RnnWorkspace<T>,
    teacher: bool,
    /// `[B, I+O]` the layer's input of one step.
    xin: Vec<T>,
    /// `[T, B, O]` logits.
    z: Vec<T>,
    /// `[T, B, O]` out(z).
    o: Vec<T>,
    /// `[T, B, O]` dL/dz including what flows back through the feedback.
    dz: Vec<T>,
    /// `[B, O]` dL/d(the value fed into the next step).
    dfb: Vec<T>,
    /// `[B, H]` dL/dh_t through the readout.
    dh: Vec<T>,
}

impl<T: Float> JordanWorkspace<T> {
    /// An empty workspace.
    pub fn new() -> JordanWorkspace<T> {
        JordanWorkspace::default()
    }
    /// `[T, B, O]` the logits of the last forward.
    pub fn logits(&self) -> &[T] {
        &self.z
    }
    /// The Elman layer's workspace: states, dL/dx, dL/dh0.
    pub fn rnn(&self) -> &RnnWorkspace<T> {
        &self.rnn
    }
}

impl JordanNet {
    /// Registers the net in `scope`: the layer under `rnn` (its config's
    /// input is I+O: `layer.input` must equal `inputs + outputs`) and the
    /// readout under `out`.
    pub fn new<T: Float>(
        mut scope: Scope<'_, T>,
        layer: RnnConfig,
        inputs: usize,
        output: OutputKind,
    ) -> Result<JordanNet> {
        if layer.layers != 1 || layer.bidirectional || layer.input <= inputs {
            return Err(Error::Config(format!(
                "a Jordan net has one unidirectional layer whose input is I + O > I = {inputs} (got {} layers, input {})",
                layer.layers, layer.input
            )));
        }
        let outputs = layer.input - inputs;
        let h = layer.hidden;
        let rnn = Rnn::new(scope.pp("rnn"), layer)?;
        let out = Linear::new(scope.pp("out"), h, outputs);
        Ok(JordanNet {
            rnn,
            out,
            output,
            inputs,
        })
    }

    /// The Elman layer.
    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }

    /// The readout.
    pub fn readout(&self) -> &Linear {
        &self.out
    }

    /// Runs the net over `x` `[T, B, I]` from `h0` `[B, H]` (zeros when
    /// `None`). `teacher` `[T, B, O]` turns on teacher forcing: row t is fed
    /// back into step t+1 instead of o_t.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut JordanWorkspace<T>,
        x: &[T],
        steps: usize,
        batch: usize,
        h0: Option<&[T]>,
        teacher: Option<&[T]>,
    ) -> Result<()> {
        let (tn, bn, i, o) = (steps, batch, self.inputs, self.out.output());
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
        if let Some(s) = teacher {
            check_len(
                "teacher",
                || format!("[T={tn}, B={bn}, O={o}]"),
                tn * bn * o,
                s.len(),
            )?;
        }
        self.rnn.start(store, &mut ws.rnn, bn, tn, h0, None)?;
        ws.teacher = teacher.is_some();
        ws.xin.resize(bn * (i + o), T::ZERO);
        ws.z.resize(tn * bn * o, T::ZERO);
        ws.o.resize(tn * bn * o, T::ZERO);
        for t in 0..tn {
            for b in 0..bn {
                let row = &mut ws.xin[b * (i + o)..][..i + o];
                row[..i].copy_from_slice(&x[(t * bn + b) * i..][..i]);
                let fb = &mut row[i..];
                match (t, teacher) {
                    (0, _) => fb.fill(T::ZERO),
                    (_, Some(y)) => fb.copy_from_slice(&y[((t - 1) * bn + b) * o..][..o]),
                    (_, None) => fb.copy_from_slice(&ws.o[((t - 1) * bn + b) * o..][..o]),
                }
            }
            self.rnn.step(store, &mut ws.rnn, &ws.xin, None)?;
            let z = &mut ws.z[t * bn * o..][..bn * o];
            self.out.forward(store, ws.rnn.step_output(t), bn, z);
            output_forward(self.output, o, z, &mut ws.o[t * bn * o..][..bn * o]);
        }
        Ok(())
    }

    /// Backpropagation through time for the last [`JordanNet::forward`] on
    /// `ws`: takes dL/dz `[T, B, O]`, adds dL/dparams into the store's
    /// gradients and leaves dL/dx and dL/dh0 in [`JordanWorkspace::rnn`]
    /// (dL/dx there includes the fed-back columns).
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut JordanWorkspace<T>,
        dz: &[T],
    ) -> Result<()> {
        let (tn, bn) = (ws.rnn.steps(), ws.rnn.batch());
        let (i, o, h) = (self.inputs, self.out.output(), self.out.input());
        check_len(
            "dz",
            || format!("[T={tn}, B={bn}, O={o}]"),
            tn * bn * o,
            dz.len(),
        )?;
        ws.dz.clear();
        ws.dz.extend_from_slice(dz);
        ws.dfb.clear();
        ws.dfb.resize(bn * o, T::ZERO);
        ws.dh.resize(bn * h, T::ZERO);
        let free_running = !ws.teacher;
        let w_out = self.out.weight().of(&store.params);
        for t in (0..tn).rev() {
            let dz_t = &mut ws.dz[t * bn * o..][..bn * o];
            if free_running && t + 1 < tn {
                output_backward(self.output, o, &ws.o[t * bn * o..][..bn * o], &ws.dfb, dz_t);
            }
            // The readout at t: dL/dh_t = dz_t · W_out.
            gemm_nn(bn, h, o, dz_t, o, w_out, &mut ws.dh, h, false);
            self.rnn
                .step_backward(store, &mut ws.rnn, &ws.dh, None, None)?;
            let dx = ws.rnn.step_dx(t);
            for (d, row) in ws.dfb.chunks_exact_mut(o).zip(dx.chunks_exact(i + o)) {
                d.copy_from_slice(&row[i..]);
            }
        }
        self.rnn.finish_backward(store, &mut ws.rnn)?;
        // The readout's weights as one product over all T·B rows.
        self.out
            .backward(store, ws.rnn.output(), &ws.dz, tn * bn, None);
        Ok(())
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
