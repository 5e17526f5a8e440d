//! The time-unrolled recurrent layer: L stacked layers of D directions.
//!
//! Forward, per layer and direction (the haste scheme):
//! 1. one input GEMM over all T·B rows: `gates[T·B, G·H] = x · W_ihᵀ`;
//! 2. per step: the cell's recurrent GEMM(s) and one fused pointwise kernel
//!    that adds the biases, activates, saves the activated gates and writes
//!    the new state.
//!
//! Backward walks the steps in reverse order with the fused backward kernel
//! and one GEMM per step (`d_gates · W_hh` into dh_prev; a skip connection
//! adds `d_gates · W_skip`), then computes dW_ih, dW_hh (and dW_skip) and dx
//! as large GEMMs over all T·B rows.
//!
//! The same steps run one at a time for decoders and nets that feed back
//! their output: [`Rnn::start`], [`Rnn::step`] per step, then
//! [`Rnn::step_backward`] per step in reverse and [`Rnn::finish_backward`],
//! which makes the weight gradients the same large GEMMs.
//!
//! Every buffer lives in an [`RnnWorkspace`] that is sized once per shape and
//! reused; nothing is allocated inside the time loop.
//!
//! Variable-length batches follow PyTorch's packed sequences: row b is active
//! for t < `lengths[b]`; past that its state is carried unchanged and its output
//! is zero, so the reverse direction starts at each row's own last element
//! and h_n is each row's state at its own end.
//!
//! Elman cells have three options of recur's own: leaky units (a fixed α or
//! one learned per unit), a skip connection in time, and no `weight_hh`
//! (the hidden layer of a Jordan net).

mod config;
mod decay;
mod dir;
mod workspace;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use config::{Leak, RnnConfig};
pub use workspace::{RnnInput, RnnWorkspace};

use crate::error::{check_ids, check_len, Error, Result};
use crate::float::{add_into, Float};
use crate::layer::embedding::{gather_rows, scatter_rows};
use crate::params::{Param, ParamInfo, ParamStore, Scope};
use dir::{Dims, Slot};
use workspace::{DirWs, LayerWs};

/// A stack of recurrent layers: its shape, and where its tensors sit in a
/// [`ParamStore`].
///
/// The tensors are registered contiguously in PyTorch's `state_dict`
/// order: for each layer, for each direction, `weight_ih`, `weight_hh`,
/// `bias_ih`, `bias_hh`, then recur's `weight_skip` and `leak_logit` where
/// the config has them (and `weight_hh`, `bias_hh` only where it does). [`Rnn::param_info`] names every tensor.
#[derive(Clone, Debug)]
pub struct Rnn {
    config: RnnConfig,
    /// Each tensor under its name within the layer (`weight_ih_l0`), at its
    /// offset in the store.
    info: Vec<ParamInfo>,
    /// `[L·D]` the tensors of each layer and direction.
    slots: Vec<Slot>,
    /// The whole block of the layer's tensors.
    at: Param,
}

impl Rnn {
    /// Registers a stack's tensors in `scope`, all zero but learned leaks'
    /// logits (the starting α); see [`Rnn::init_uniform`].
    pub fn new<T: Float>(mut scope: Scope<'_, T>, config: RnnConfig) -> Result<Rnn> {
        config.validate()?;
        let (h, g, d) = (config.hidden, config.cell.gates(), config.directions());
        let mut info = Vec::new();
        let mut slots = Vec::new();
        let start = scope.offset();
        for l in 0..config.layers {
            let inp = config.layer_input(l);
            for dir in 0..d {
                let sfx = if dir == 1 { "_reverse" } else { "" };
                let mut add = |kind: &str, shape: Vec<usize>| {
                    let name = format!("{kind}_l{l}{sfx}");
                    let p = scope.add(&name, &shape);
                    info.push(ParamInfo {
                        name,
                        shape,
                        offset: p.offset,
                    });
                    p
                };
                let w_ih = add("weight_ih", vec![g * h, inp]);
                let w_hh = config
                    .hidden_to_hidden
                    .then(|| add("weight_hh", vec![g * h, h]));
                let b_ih = add("bias_ih", vec![g * h]);
                let b_hh = config.bias_hh.then(|| add("bias_hh", vec![g * h]));
                let w_skip = (config.skip > 0).then(|| add("weight_skip", vec![h, h]));
                let leak_logit = match config.leak {
                    Leak::Learned(_) => Some(add("leak_logit", vec![h])),
                    _ => None,
                };
                if let (Leak::Learned(a), Some(p)) = (config.leak, leak_logit) {
                    let logit = T::from_f64((a / (1.0 - a)).ln());
                    scope.fill(p, logit);
                }
                slots.push(Slot {
                    hidden: h,
                    leaky: config.leaky(),
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    w_skip,
                    leak_logit,
                });
            }
        }
        let at = Param {
            offset: start,
            len: scope.offset() - start,
        };
        Ok(Rnn {
            config,
            info,
            slots,
            at,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Every parameter tensor in registration order, named within the layer
    /// (`weight_ih_l0`), at its offset in the store.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.info
    }

    /// The block of all the layer's tensors in the store.
    pub fn block(&self) -> Param {
        self.at
    }

    /// The weights forward passes multiply activations by, each `[G·H, in]`
    /// (`weight_ih`, `weight_hh`): what [`ParamStore::pack`] converts for
    /// inference in bf16 or int8.
    pub fn product_weights(&self) -> Vec<Param> {
        self.slots
            .iter()
            .flat_map(|s| std::iter::once(s.w_ih).chain(s.w_hh))
            .collect()
    }

    fn find(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.info.iter().find(|p| p.name == name).map(|p| p.range())
    }

    /// A parameter tensor by its name within the layer.
    pub fn param<'a, T: Float>(&self, store: &'a ParamStore<T>, name: &str) -> Option<&'a [T]> {
        Some(&store.params[self.find(name)?])
    }

    /// A parameter tensor by its name within the layer, mutable.
    pub fn param_mut<'a, T: Float>(
        &self,
        store: &'a mut ParamStore<T>,
        name: &str,
    ) -> Option<&'a mut [T]> {
        Some(&mut store.params[self.find(name)?])
    }

    /// The gradient of a parameter tensor by its name within the layer.
    pub fn grad<'a, T: Float>(&self, store: &'a ParamStore<T>, name: &str) -> Option<&'a [T]> {
        Some(&store.grads[self.find(name)?])
    }

    /// PyTorch's default initialisation: every weight and bias of the
    /// layer drawn from U(−1/√H, 1/√H), from a ChaCha8 stream seeded with
    /// `seed` (learned leak logits keep their start).
    pub fn init_uniform<T: Float>(&self, store: &mut ParamStore<T>, seed: u64) {
        let k = 1.0 / (self.config.hidden as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for p in &self.info {
            if p.name.starts_with("leak_logit") {
                continue;
            }
            for v in &mut store.params[p.range()] {
                *v = T::from_f64(rng.random_range(-k..k));
            }
        }
    }

    /// An [`Error::Order`] saying `what` unless `ws` last ran this layer and
    /// `ready` holds.
    fn expect<T>(&self, ws: &RnnWorkspace<T>, ready: bool, what: &str) -> Result<()> {
        if ws.config.as_ref() == Some(&self.config) && ready {
            Ok(())
        } else {
            Err(Error::Order(what.into()))
        }
    }

    /// Checks a pair of states (`h0`, `c0`, or the gradients `dh_n`,
    /// `dc_n`) against `[L·D, B, H]`; the second only for an LSTM.
    fn check_states<T>(
        &self,
        names: [&'static str; 2],
        bn: usize,
        h: Option<&[T]>,
        c: Option<&[T]>,
    ) -> Result<()> {
        let cfg = &self.config;
        let d = cfg.directions();
        let state_shape = || format!("[L·D={}, B={bn}, H={}]", cfg.layers * d, cfg.hidden);
        let state_len = cfg.layers * d * bn * cfg.hidden;
        if let Some(s) = h {
            check_len(names[0], state_shape, state_len, s.len())?;
        }
        if let Some(s) = c {
            if !cfg.cell.has_cell_state() {
                return Err(Error::Config(format!(
                    "{} was given, but a {} layer has no cell state",
                    names[1],
                    cfg.cell.name()
                )));
            }
            check_len(names[1], state_shape, state_len, s.len())?;
        }
        Ok(())
    }

    /// Runs the stack forward over a batch of sequences.
    ///
    /// Results are in the workspace: [`RnnWorkspace::output`] `[T, B, D·H]`,
    /// [`RnnWorkspace::h_n`] and [`RnnWorkspace::c_n`] `[L·D, B, H]`.
    /// `train` carries the random stream for dropout between layers; with
    /// `None` (inference) there is no dropout.
    pub fn forward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        input: RnnInput<'_, T>,
        train: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        let cfg = &self.config;
        let RnnInput {
            x,
            steps: tn,
            batch: bn,
            h0,
            c0,
            lengths,
            ids,
        } = input;
        let (h, d) = (cfg.hidden, cfg.directions());
        if tn == 0 || bn == 0 {
            return Err(Error::Config(format!(
                "steps T and batch B must be at least 1 (got T = {tn}, B = {bn})"
            )));
        }
        if let Some(ids) = ids {
            check_lookup(x, ids, tn, bn, cfg.input)?;
        } else {
            check_len(
                "x",
                || format!("[T={tn}, B={bn}, I={}]", cfg.input),
                tn * bn * cfg.input,
                x.len(),
            )?;
        }
        self.check_states(["h0", "c0"], bn, h0, c0)?;
        if let Some(l) = lengths {
            check_len("lengths", || format!("[B={bn}]"), bn, l.len())?;
            if let Some((index, &len)) = l.iter().enumerate().find(|(_, &n)| n == 0 || n > tn) {
                return Err(Error::Length {
                    index,
                    len,
                    steps: tn,
                });
            }
        }

        ws.size_forward(cfg, tn, bn);
        ws.steps = tn;
        ws.stepwise = false;
        ws.config = Some(cfg.clone());
        ws.ids.clear();
        ws.table.clear();
        ws.vocab = 0;
        ws.through_table = false;
        match ids {
            Some(ids) => {
                let v = x.len() / cfg.input;
                ws.ids.extend_from_slice(ids);
                ws.vocab = v;
                ws.through_table = tn * bn >= 2 * v;
                if ws.through_table {
                    ws.table.extend_from_slice(x);
                } else {
                    gather_rows(x, v, cfg.input, ids, 1, None, &mut ws.x);
                }
            }
            None => ws.x.copy_from_slice(x),
        }
        ws.ragged = lengths.is_some_and(|l| l.iter().any(|&n| n != tn));
        ws.lengths.clear();
        ws.lengths.extend_from_slice(lengths.unwrap_or(&[]));
        let lengths = if ws.ragged {
            Some(&ws.lengths[..])
        } else {
            None
        };
        let mut rng = train.filter(|_| cfg.dropout > 0.0);
        ws.dropped = rng.is_some() && cfg.layers > 1;

        let bh = bn * h;
        let params = &store.params;
        for l in 0..cfg.layers {
            let inp = cfg.layer_input(l);
            let (done, rest) = ws.layers.split_at_mut(l);
            let LayerWs {
                y,
                y_rev,
                mask,
                x_drop,
                dirs,
                ..
            } = &mut rest[0];
            let input: &[T] = if l == 0 {
                &ws.x
            } else if let Some(rng) = rng.as_deref_mut() {
                draw_dropout(cfg.dropout, mask, x_drop, &done[l - 1].y, rng);
                x_drop
            } else {
                &done[l - 1].y
            };
            // Start both directions and run their input GEMMs (large
            // products, on every thread); then the step loops, at once on
            // two threads when the layer is bidirectional, since each
            // step's products are too small to split well.
            let mut alphas: [Vec<T>; 2] = Default::default();
            for (dir, dw) in dirs.iter_mut().enumerate() {
                let dm = Dims::new(cfg, tn, bn, inp, dir == 1);
                let k = l * d + dir;
                let slot = &self.slots[k];
                dir::start(
                    dm,
                    cfg.leak,
                    slot.leak_logit.map(|p| p.of(params)),
                    dw,
                    h0.map(|s| &s[k * bh..][..bh]),
                    c0.map(|s| &s[k * bh..][..bh]),
                );
                alphas[dir] = std::mem::take(&mut dw.consts);
                let p = slot.params_packed(store.view(), &alphas[dir]);
                if l == 0 && ws.through_table {
                    dir::input_table(dm, &p, &ws.table, &ws.ids, dw);
                } else {
                    dir::input_gemm(dm, &p, input, dw, 0, tn);
                }
            }
            let run = |dir: usize, dw: &mut DirWs<T>, y: &mut [T], off: usize, stride: usize| {
                let dm = Dims::new(cfg, tn, bn, inp, dir == 1);
                let p = self.slots[l * d + dir].params_packed(store.view(), &alphas[dir]);
                for s in 0..tn {
                    dir::step(dm, &p, dw, s, lengths, y, off, stride);
                }
            };
            let p0 = self.slots[l * d].params_packed(store.view(), &alphas[0]);
            match &mut dirs[..] {
                [fwd] if dir::rows_split(bn, h, p0.q_hh.is_some()) => {
                    // Each row's recurrence is its own: both threads run
                    // every step, each on half the rows, and meet once
                    // for the layer instead of at every step.
                    let dm = Dims::new(cfg, tn, bn, inp, false);
                    let p = &p0;
                    let v = dir::DirRows::new(fwd, y);
                    crate::pool::row_halves(bn, &|rows| {
                        for s in 0..tn {
                            // SAFETY: the tasks take disjoint rows, and
                            // `fwd` and `y` stay borrowed until both end.
                            unsafe { dir::step_rows(dm, p, v, s, lengths, 0, h, rows.clone()) };
                        }
                    });
                }
                [fwd] => run(0, fwd, y, 0, h),
                [fwd, bwd] if crate::gemm::threads() > 1 => {
                    y_rev.resize(tn * bn * h, T::ZERO);
                    crate::pool::join(|| run(0, fwd, y, 0, 2 * h), || run(1, bwd, y_rev, 0, h));
                    for (row, rev) in y.chunks_exact_mut(2 * h).zip(y_rev.chunks_exact(h)) {
                        row[h..].copy_from_slice(rev);
                    }
                }
                [fwd, bwd] => {
                    run(0, fwd, y, 0, 2 * h);
                    run(1, bwd, y, h, 2 * h);
                }
                _ => unreachable!("one or two directions"),
            }
            for (dir, dw) in dirs.iter_mut().enumerate() {
                dw.consts = std::mem::take(&mut alphas[dir]);
                let dm = Dims::new(cfg, tn, bn, inp, dir == 1);
                let k = l * d + dir;
                let (_, last) = dm.first_last();
                ws.h_n[k * bh..][..bh].copy_from_slice(&dw.hs[last * bh..][..bh]);
                if cfg.cell.has_cell_state() {
                    ws.c_n[k * bh..][..bh].copy_from_slice(&dw.cs[last * bh..][..bh]);
                }
            }
            if l > 0 && cfg.residual {
                add_into(y, input);
            }
        }
        Ok(())
    }

    /// Backpropagation through time for the last [`Rnn::forward`] on `ws`.
    ///
    /// Takes dL/dy `[T, B, D·H]` and dL/dh_n, dL/dc_n `[L·D, B, H]` (zeros
    /// when `None`); adds dL/dparams into the store's gradients and leaves
    /// dL/dx, dL/dh0 and dL/dc0 in the workspace.
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        dy: &[T],
        dh_n: Option<&[T]>,
        dc_n: Option<&[T]>,
    ) -> Result<()> {
        let cfg = &self.config;
        self.expect(
            ws,
            !ws.stepwise,
            "backward needs a whole-sequence forward pass of the same layer on this workspace first",
        )?;
        let (tn, bn) = (ws.steps, ws.batch);
        let (h, d) = (cfg.hidden, cfg.directions());
        check_len(
            "dy",
            || format!("[T={tn}, B={bn}, D·H={}]", d * h),
            tn * bn * d * h,
            dy.len(),
        )?;
        self.check_states(["dh_n", "dc_n"], bn, dh_n, dc_n)?;
        ws.size_backward(cfg);

        let bh = bn * h;
        let lengths = if ws.ragged {
            Some(&ws.lengths[..])
        } else {
            None
        };
        let RnnWorkspace {
            x,
            ids,
            table,
            vocab,
            through_table,
            layers,
            dx,
            d_table,
            dh0,
            dc0,
            dropped,
            ..
        } = ws;
        let through_table = *through_table;
        d_table.resize(*vocab * cfg.input, T::ZERO);
        let (view, grads) = store.view_and_grads();
        for l in (0..cfg.layers).rev() {
            let inp = cfg.layer_input(l);
            let (below, rest) = layers.split_at_mut(l);
            let LayerWs {
                dy: dy_own,
                mask,
                x_drop,
                dirs,
                ..
            } = &mut rest[0];
            let dy_l: &[T] = if l + 1 == cfg.layers { dy } else { dy_own };
            let (input, d_input): (&[T], &mut [T]) = match below.last_mut() {
                None => (x, dx),
                Some(prev) => (if *dropped { x_drop } else { &prev.y }, &mut prev.dy),
            };
            // The step loops of both directions at once (as in forward),
            // then the weight and input gradients as large products.
            let mut alphas: [Vec<T>; 2] = Default::default();
            for (dir, dw) in dirs.iter_mut().enumerate() {
                let k = l * d + dir;
                alphas[dir] = std::mem::take(&mut dw.consts);
                dir::start_backward(
                    dw,
                    dh_n.map(|s| &s[k * bh..][..bh]),
                    dc_n.map(|s| &s[k * bh..][..bh]),
                );
            }
            let run = |dir: usize, dw: &mut DirWs<T>| {
                let dm = Dims::new(cfg, tn, bn, inp, dir == 1);
                let p = self.slots[l * d + dir].params_packed(view, &alphas[dir]);
                for s in (0..tn).rev() {
                    let dy_t = &dy_l[dm.time(s) * bn * d * h + dir * h..];
                    dir::step_backward(dm, &p, dw, s, lengths, dy_t, d * h);
                }
            };
            let p0 = self.slots[l * d].params_packed(view, &alphas[0]);
            let dm0 = Dims::new(cfg, tn, bn, inp, false);
            match &mut dirs[..] {
                [fwd]
                    if dir::rows_split_backward(dm0, p0.q_hh.is_some())
                        && fwd.d_logit.is_empty() =>
                {
                    // As forward: half the rows on each thread for the
                    // whole sequence; each flips between the two dL/dh
                    // buffers by the parity of the steps it has taken.
                    let dm = dm0;
                    let p = &p0;
                    let v = dir::DirRowsBack::new(fwd);
                    crate::pool::row_halves(bn, &|rows| {
                        for (k, s) in (0..tn).rev().enumerate() {
                            let dy_t = &dy_l[dm.time(s) * bn * h..];
                            // SAFETY: the tasks take disjoint rows, and
                            // `fwd` stays borrowed until both end.
                            unsafe {
                                dir::step_backward_rows(
                                    dm,
                                    p,
                                    v,
                                    s,
                                    k % 2,
                                    lengths,
                                    dy_t,
                                    h,
                                    rows.clone(),
                                )
                            };
                        }
                    });
                    // Where the one-thread loop's swaps would have left it.
                    if tn % 2 == 1 {
                        std::mem::swap(&mut fwd.dh, &mut fwd.dh_next);
                    }
                }
                [fwd, bwd] if crate::gemm::threads() > 1 => {
                    crate::pool::join(|| run(0, fwd), || run(1, bwd))
                }
                all => all
                    .iter_mut()
                    .enumerate()
                    .for_each(|(dir, dw)| run(dir, dw)),
            }
            for (dir, dw) in dirs.iter_mut().enumerate() {
                let dm = Dims::new(cfg, tn, bn, inp, dir == 1);
                let k = l * d + dir;
                let slot = &self.slots[k];
                let p = slot.params_packed(view, &alphas[dir]);
                let dc0_k: &mut [T] = if cfg.cell.has_cell_state() {
                    &mut dc0[k * bh..][..bh]
                } else {
                    &mut []
                };
                let bf16 = p.qt_ih().is_some();
                let table_side = l == 0 && through_table;
                dir::finish_backward(
                    dm,
                    dw,
                    slot.grads(grads),
                    (!table_side).then_some(input),
                    &mut dh0[k * bh..][..bh],
                    dc0_k,
                    bf16,
                );
                if table_side {
                    let g_w_ih = slot.grads(grads).w_ih;
                    dir::table_backward(dm, &p, dw, table, ids, g_w_ih, d_table, dir > 0, bf16);
                } else {
                    dir::input_grad(dm, &p, dw, 0, tn, d_input, dir > 0);
                }
                dw.consts = std::mem::take(&mut alphas[dir]);
            }
            if l == 0 && !ids.is_empty() && !through_table {
                // A lookup pass's rows were copied in: their gradients go
                // back to the table's rows.
                d_table.fill(T::ZERO);
                let inp = cfg.input;
                scatter_rows(&d_input[..tn * bn * inp], inp, ids, 1, *vocab, d_table);
            }
            if l > 0 && cfg.residual {
                add_into(d_input, dy_l);
            }
            if l > 0 && *dropped {
                for (v, m) in d_input.iter_mut().zip(mask.iter()) {
                    *v *= *m;
                }
            }
        }
        Ok(())
    }
}

/// Checks a lookup pass's table `[V, I]` and ids `[T, B]` (each below V).
fn check_lookup<T>(table: &[T], ids: &[u32], tn: usize, bn: usize, inp: usize) -> Result<()> {
    if table.is_empty() || !table.len().is_multiple_of(inp) {
        let v = table.len().div_ceil(inp).max(1);
        return Err(Error::Shape {
            name: "table",
            shape: format!("[V, I={inp}] with V ≥ 1"),
            expected: v * inp,
            got: table.len(),
        });
    }
    check_len("ids", || format!("[T={tn}, B={bn}]"), tn * bn, ids.len())?;
    check_ids("token ids", "ids", "token", ids, table.len() / inp)
}

/// Step by step.
impl Rnn {
    /// Starts a pass of at most `max_steps` steps of `batch` rows, run one
    /// step at a time with [`Rnn::step`], from `h0`, `c0` `[L, B, H]` (zeros
    /// when `None`). Unidirectional stacks only; every row runs every step.
    pub fn start<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        batch: usize,
        max_steps: usize,
        h0: Option<&[T]>,
        c0: Option<&[T]>,
    ) -> Result<()> {
        let cfg = &self.config;
        if cfg.bidirectional {
            return Err(Error::Config(
                "a bidirectional stack cannot run one step at a time".into(),
            ));
        }
        if batch == 0 || max_steps == 0 {
            return Err(Error::Config(format!(
                "steps and batch B must be at least 1 (got {max_steps} and {batch})"
            )));
        }
        self.check_states(["h0", "c0"], batch, h0, c0)?;
        ws.size_forward(cfg, max_steps, batch);
        ws.config = Some(cfg.clone());
        ws.steps = 0;
        ws.pending = 0;
        ws.finished = false;
        ws.stepwise = true;
        ws.ragged = false;
        ws.dropped = false;
        ws.lengths.clear();
        ws.ids.clear();
        ws.vocab = 0;
        ws.through_table = false;
        let bh = batch * cfg.hidden;
        for (l, lw) in ws.layers.iter_mut().enumerate() {
            let dm = Dims::new(cfg, max_steps, batch, cfg.layer_input(l), false);
            let slot = &self.slots[l];
            dir::start(
                dm,
                cfg.leak,
                slot.leak_logit.map(|p| p.of(&store.params)),
                &mut lw.dirs[0],
                h0.map(|s| &s[l * bh..][..bh]),
                c0.map(|s| &s[l * bh..][..bh]),
            );
        }
        if let Some(h0) = h0 {
            ws.h_n.copy_from_slice(h0);
        } else {
            ws.h_n.fill(T::ZERO);
        }
        if let Some(c0) = c0 {
            ws.c_n.copy_from_slice(c0);
        } else {
            ws.c_n.fill(T::ZERO);
        }
        Ok(())
    }

    /// Runs the next step on `x_t` `[B, I]`: its output is then
    /// [`RnnWorkspace::step_output`], the states [`RnnWorkspace::h_n`] and
    /// [`RnnWorkspace::c_n`]. `train` drives dropout between layers.
    pub fn step<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        x_t: &[T],
        train: Option<&mut dyn RngCore>,
    ) -> Result<()> {
        let cfg = &self.config;
        self.expect(
            ws,
            ws.stepwise && ws.pending == ws.steps && !ws.finished,
            "step needs start on this workspace first, and no step run backward since",
        )?;
        let (t, bn, h) = (ws.steps, ws.batch, cfg.hidden);
        if t == ws.capacity {
            return Err(Error::Config(format!(
                "the pass was started for {t} steps; start it with more"
            )));
        }
        check_len(
            "x_t",
            || format!("[B={bn}, I={}]", cfg.input),
            bn * cfg.input,
            x_t.len(),
        )?;
        let mut rng = train.filter(|_| cfg.dropout > 0.0);
        if t == 0 {
            ws.dropped = rng.is_some() && cfg.layers > 1;
        } else if ws.dropped != rng.is_some() && cfg.layers > 1 {
            return Err(Error::Order(
                "every step of a pass must train (dropout) or none".into(),
            ));
        }
        let n_x = bn * cfg.input;
        ws.x[t * n_x..][..n_x].copy_from_slice(x_t);
        let bh = bn * h;
        for l in 0..cfg.layers {
            let inp = cfg.layer_input(l);
            let n_in = bn * inp;
            let (done, rest) = ws.layers.split_at_mut(l);
            let LayerWs {
                y,
                mask,
                x_drop,
                dirs,
                ..
            } = &mut rest[0];
            let input: &[T] = if l == 0 {
                &ws.x[t * n_in..][..n_in]
            } else if let Some(rng) = rng.as_deref_mut() {
                let (m, xd) = (
                    &mut mask[t * n_in..][..n_in],
                    &mut x_drop[t * n_in..][..n_in],
                );
                draw_dropout(cfg.dropout, m, xd, &done[l - 1].y[t * n_in..][..n_in], rng);
                xd
            } else {
                &done[l - 1].y[t * n_in..][..n_in]
            };
            let dm = Dims::new(cfg, ws.capacity, bn, inp, false);
            let dw = &mut dirs[0];
            let alpha = std::mem::take(&mut dw.consts);
            let p = self.slots[l].params_packed(store.view(), &alpha);
            dir::input_gemm(dm, &p, input, dw, t, 1);
            dir::step(dm, &p, dw, t, None, y, 0, h);
            dw.consts = alpha;
            if l > 0 && cfg.residual {
                add_into(&mut y[t * n_in..][..n_in], input);
            }
            ws.h_n[l * bh..][..bh].copy_from_slice(&dw.hs[(t + 1) * bh..][..bh]);
            if cfg.cell.has_cell_state() {
                ws.c_n[l * bh..][..bh].copy_from_slice(&dw.cs[(t + 1) * bh..][..bh]);
            }
        }
        ws.steps = t + 1;
        ws.pending = t + 1;
        Ok(())
    }

    /// Backward for the last step not yet run backward (steps go in
    /// reverse), given dL/dy_t `[B, H]` of its output, and on the first
    /// call dL/dh_n, dL/dc_n `[L, B, H]` of the final states (zeros when
    /// `None`; ignored after). Leaves dL/dx_t in [`RnnWorkspace::step_dx`].
    pub fn step_backward<T: Float>(
        &self,
        store: &ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        dy_t: &[T],
        dh_n: Option<&[T]>,
        dc_n: Option<&[T]>,
    ) -> Result<()> {
        let cfg = &self.config;
        self.expect(
            ws,
            ws.stepwise && ws.pending > 0 && !ws.finished,
            "step_backward needs steps run forward (start, step) and not yet run backward",
        )?;
        let (bn, h) = (ws.batch, cfg.hidden);
        check_len("dy_t", || format!("[B={bn}, H={h}]"), bn * h, dy_t.len())?;
        let t = ws.pending - 1;
        if t + 1 == ws.steps {
            self.check_states(["dh_n", "dc_n"], bn, dh_n, dc_n)?;
            ws.size_backward(cfg);
        }
        let bh = bn * h;
        let RnnWorkspace {
            layers,
            dx,
            dropped,
            steps,
            capacity,
            ..
        } = ws;
        let view = store.view();
        for l in (0..cfg.layers).rev() {
            let inp = cfg.layer_input(l);
            let n_in = bn * inp;
            let (below, rest) = layers.split_at_mut(l);
            let LayerWs {
                dy: dy_own,
                mask,
                dirs,
                ..
            } = &mut rest[0];
            let dw = &mut dirs[0];
            if t + 1 == *steps {
                dir::start_backward(
                    dw,
                    dh_n.map(|s| &s[l * bh..][..bh]),
                    dc_n.map(|s| &s[l * bh..][..bh]),
                );
            }
            let dm = Dims::new(cfg, *capacity, bn, inp, false);
            let alpha = std::mem::take(&mut dw.consts);
            let p = self.slots[l].params_packed(view, &alpha);
            let dy_l: &[T] = if l + 1 == cfg.layers {
                dy_t
            } else {
                &dy_own[t * bh..][..bh]
            };
            dir::step_backward(dm, &p, dw, t, None, dy_l, h);
            let d_input: &mut [T] = match below.last_mut() {
                None => &mut dx[t * n_in..][..n_in],
                Some(prev) => &mut prev.dy[t * n_in..][..n_in],
            };
            dir::input_grad(dm, &p, dw, t, 1, d_input, false);
            if l > 0 && cfg.residual {
                add_into(d_input, dy_l);
            }
            if l > 0 && *dropped {
                for (v, m) in d_input.iter_mut().zip(&mask[t * n_in..][..n_in]) {
                    *v *= *m;
                }
            }
            dw.consts = alpha;
        }
        ws.pending = t;
        Ok(())
    }

    /// After [`Rnn::step_backward`] has run for every step: adds the weight
    /// gradients into the store and leaves dL/dh0, dL/dc0 in the workspace.
    pub fn finish_backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
    ) -> Result<()> {
        let cfg = &self.config;
        self.expect(
            ws,
            ws.stepwise && ws.pending == 0 && ws.steps > 0 && !ws.finished,
            "finish_backward needs step_backward for every step first",
        )?;
        let (tn, bn, h) = (ws.steps, ws.batch, cfg.hidden);
        let bh = bn * h;
        let RnnWorkspace {
            x,
            layers,
            dh0,
            dc0,
            dropped,
            ..
        } = ws;
        let (view, grads) = store.view_and_grads();
        for l in 0..cfg.layers {
            let inp = cfg.layer_input(l);
            let (below, rest) = layers.split_at_mut(l);
            let input: &[T] = match below.last() {
                None => x,
                Some(_) if *dropped => &rest[0].x_drop[..],
                Some(prev) => &prev.y,
            };
            let dm = Dims::new(cfg, tn, bn, inp, false);
            let dc0_l: &mut [T] = if cfg.cell.has_cell_state() {
                &mut dc0[l * bh..][..bh]
            } else {
                &mut []
            };
            dir::finish_backward(
                dm,
                &rest[0].dirs[0],
                self.slots[l].grads(grads),
                Some(input),
                &mut dh0[l * bh..][..bh],
                dc0_l,
                view.packed(self.slots[l].w_ih)
                    .and_then(crate::quant::PackedRef::t)
                    .is_some(),
            );
        }
        ws.finished = true;
        Ok(())
    }
}

/// Draws a dropout mask (0 or 1/(1−p)) and applies it: `x_drop = v ⊙ mask`.
fn draw_dropout<T: Float>(
    p: f64,
    mask: &mut [T],
    x_drop: &mut [T],
    v: &[T],
    rng: &mut dyn RngCore,
) {
    x_drop.copy_from_slice(v);
    crate::layer::dropout::dropout_forward(x_drop, mask, p, rng);
}
