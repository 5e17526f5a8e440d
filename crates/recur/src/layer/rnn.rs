//! The time-unrolled recurrent layer: L stacked layers of D directions.
//!
//! Forward, per layer and direction (the haste scheme):
//! 1. one input GEMM over all T·B rows: `gates[T·B, G·H] = x · W_ihᵀ`;
//! 2. per step: one recurrent GEMM `h_prev · W_hhᵀ` and one fused pointwise
//!    kernel that adds the biases, activates, saves the activated gates and
//!    writes the new state.
//!
//! Backward walks the steps in reverse order with the fused backward kernel
//! and one GEMM per step (`d_gates · W_hh` into dh_prev), then computes dW_ih,
//! dW_hh and dx as three large GEMMs over all T·B rows.
//!
//! Every buffer lives in an [`RnnWorkspace`] that is sized once per shape and
//! reused; nothing is allocated inside the time loop.
//!
//! Variable-length batches follow PyTorch's packed sequences: row b is active
//! for t < `lengths[b]`; past that its state is carried unchanged and its output
//! is zero, so the reverse direction starts at each row's own last element
//! and h_n is each row's state at its own end.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cell::{self, CellKind, StepMask};
use crate::error::{check_len, Error, Result};
use crate::float::Float;
use crate::gemm::{gemm, Trans};
use crate::params::{Param, ParamInfo, ParamStore, Scope};

/// Sizes and options of a recurrent stack (PyTorch's `nn.LSTM` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct RnnConfig {
    /// The cell of every layer.
    pub cell: CellKind,
    /// I: features of the first layer's input.
    pub input_size: usize,
    /// H: hidden units per direction.
    pub hidden_size: usize,
    /// L: stacked layers.
    pub num_layers: usize,
    /// Whether each layer also runs backwards in time (D = 2).
    pub bidirectional: bool,
    /// Dropout probability on the outputs of every layer but the last,
    /// applied only in training.
    pub dropout: f64,
}

impl RnnConfig {
    /// One unidirectional layer without dropout.
    pub fn new(cell: CellKind, input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig {
            cell,
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            dropout: 0.0,
        }
    }
    /// Sets the number of stacked layers.
    pub fn layers(mut self, n: usize) -> RnnConfig {
        self.num_layers = n;
        self
    }
    /// Makes every layer bidirectional.
    pub fn bidirectional(mut self, yes: bool) -> RnnConfig {
        self.bidirectional = yes;
        self
    }
    /// Sets the dropout between layers.
    pub fn dropout(mut self, p: f64) -> RnnConfig {
        self.dropout = p;
        self
    }
    /// D: 1 or 2.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// The input width of layer `l`: I for the first, D·H after.
    pub fn layer_input_size(&self, l: usize) -> usize {
        if l == 0 {
            self.input_size
        } else {
            self.directions() * self.hidden_size
        }
    }
    /// The width of the output y: D·H.
    pub fn output_size(&self) -> usize {
        self.directions() * self.hidden_size
    }

    fn validate(&self) -> Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return Err(Error::Config(format!(
                "input size, hidden size and layer count must be at least 1 (got {}, {}, {})",
                self.input_size, self.hidden_size, self.num_layers
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// A stack of recurrent layers: its shape, and where its tensors sit in a
/// [`ParamStore`].
///
/// The tensors are registered contiguously in PyTorch's `state_dict`
/// order: for each layer, for each direction, `weight_ih`, `weight_hh`,
/// `bias_ih`, `bias_hh`. [`Rnn::param_info`] names every tensor.
#[derive(Clone, Debug)]
pub struct Rnn {
    config: RnnConfig,
    /// Each tensor under its name within the layer (`weight_ih_l0`), at its
    /// offset in the store.
    info: Vec<ParamInfo>,
    /// The whole block of the layer's tensors.
    at: Param,
}

/// The input of [`Rnn::forward`].
#[derive(Clone, Copy, Debug)]
pub struct RnnInput<'a, T> {
    /// `[T, B, I]` time-major input.
    pub x: &'a [T],
    /// T.
    pub steps: usize,
    /// B.
    pub batch: usize,
    /// `[L·D, B, H]` initial hidden state, zeros when `None`.
    pub h0: Option<&'a [T]>,
    /// `[L·D, B, H]` initial cell state (LSTM), zeros when `None`.
    pub c0: Option<&'a [T]>,
    /// `[B]` sequence lengths, each in 1..=T; all T when `None`.
    pub lengths: Option<&'a [usize]>,
}

impl<'a, T> RnnInput<'a, T> {
    /// A batch of B full-length sequences of T steps, starting from zero state.
    pub fn new(x: &'a [T], steps: usize, batch: usize) -> RnnInput<'a, T> {
        RnnInput {
            x,
            steps,
            batch,
            h0: None,
            c0: None,
            lengths: None,
        }
    }
    /// Sets the initial hidden state `[L·D, B, H]`.
    pub fn h0(mut self, h0: &'a [T]) -> Self {
        self.h0 = Some(h0);
        self
    }
    /// Sets the initial cell state `[L·D, B, H]` (LSTM only).
    pub fn c0(mut self, c0: &'a [T]) -> Self {
        self.c0 = Some(c0);
        self
    }
    /// Sets per-sequence lengths `[B]`.
    pub fn lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }
}

/// Saved activations and scratch of one direction of one layer.
#[derive(Clone, Debug, Default)]
struct DirWs<T> {
    /// `[T, B, G·H]` pre-activations, then the activated gates (by time).
    gates: Vec<T>,
    /// `[T+1, B, H]` states. Forward: slot t is the state before step t.
    /// Reverse: slot t+1 is the state before step t. Either way the T
    /// states that fed a step are contiguous.
    hs: Vec<T>,
    /// `[T+1, B, H]` cell states, laid out like `hs` (LSTM).
    cs: Vec<T>,
    /// `[T, B, H]` tanh(c_t) (LSTM); W_hn h + b_hn (GRU); r ⊙ h_prev (reset-before GRU).
    extra: Vec<T>,
    /// `[B, G·H]` h_prev · W_hhᵀ for the GRU step.
    hg: Vec<T>,
    /// `[T, B, G·H]` dL/d(pre-activations) on the input side.
    d_gates: Vec<T>,
    /// `[T, B, G·H]` dL/d(h·W_hhᵀ + b_hh) for the reset-after GRU.
    d_hgates: Vec<T>,
    /// `[B, H]` dL/dh flowing back in time, and the next step's.
    dh: Vec<T>,
    dh_next: Vec<T>,
    /// `[B, H]` dL/dc flowing back in time (LSTM).
    dc: Vec<T>,
    /// `[B, H]` dL/d(r ⊙ h_prev) (reset-before GRU).
    d_rh: Vec<T>,
    /// `[T, B, H]` the total dL/dh_t of each step, kept only when the
    /// workspace records state gradients (diagnostics).
    dh_record: Vec<T>,
}

/// Buffers of one layer.
#[derive(Clone, Debug, Default)]
struct LayerWs<T> {
    /// `[T, B, D·H]` the layer's output.
    y: Vec<T>,
    /// `[T, B, D·H]` dL/dy.
    dy: Vec<T>,
    /// `[T, B, in]` dropout mask on this layer's input, values 0 or 1/(1-p).
    mask: Vec<T>,
    /// `[T, B, in]` this layer's input after dropout.
    x_drop: Vec<T>,
    dirs: Vec<DirWs<T>>,
}

/// Everything a forward pass saves and a backward pass needs, plus the
/// outputs of both. Sized by the first call for a shape and reused after,
/// so repeated calls allocate nothing.
#[derive(Clone, Debug, Default)]
pub struct RnnWorkspace<T> {
    steps: usize,
    batch: usize,
    /// Identifies the config of the last forward.
    config: Option<RnnConfig>,
    /// Whether the last forward applied dropout.
    dropped: bool,
    ragged: bool,
    /// `[B]`
    lengths: Vec<usize>,
    /// `[T, B, I]` copy of the input.
    x: Vec<T>,
    layers: Vec<LayerWs<T>>,
    /// `[L·D, B, H]`
    h_n: Vec<T>,
    /// `[L·D, B, H]`
    c_n: Vec<T>,
    /// `[T, B, I]`
    dx: Vec<T>,
    /// `[L·D, B, H]`
    dh0: Vec<T>,
    /// `[L·D, B, H]`
    dc0: Vec<T>,
    /// Whether backward keeps dL/dh_t of every step (see `state_grads`).
    record: bool,
}

impl<T: Float> RnnWorkspace<T> {
    /// An empty workspace; the first forward sizes it.
    pub fn new() -> RnnWorkspace<T> {
        RnnWorkspace::default()
    }
    /// T of the last forward.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// B of the last forward.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `[T, B, D·H]` the output of the last layer.
    pub fn output(&self) -> &[T] {
        self.layers.last().map_or(&[], |l| &l.y[..])
    }
    /// `[L·D, B, H]` the final hidden state of every layer and direction.
    pub fn h_n(&self) -> &[T] {
        &self.h_n
    }
    /// `[L·D, B, H]` the final cell state (LSTM; empty otherwise).
    pub fn c_n(&self) -> &[T] {
        &self.c_n
    }
    /// `[T, B, I]` dL/dx after [`Rnn::backward`].
    pub fn dx(&self) -> &[T] {
        &self.dx
    }
    /// `[L·D, B, H]` dL/dh0 after [`Rnn::backward`].
    pub fn dh0(&self) -> &[T] {
        &self.dh0
    }
    /// `[L·D, B, H]` dL/dc0 after [`Rnn::backward`] (LSTM; empty otherwise).
    pub fn dc0(&self) -> &[T] {
        &self.dc0
    }
    /// Makes later backward passes keep the total dL/dh_t of every step
    /// (through the output and through later steps), for gradient-flow
    /// diagnostics. Off by default: it costs a `[T, B, H]` buffer per
    /// layer and direction.
    pub fn record_state_grads(&mut self, on: bool) {
        self.record = on;
    }
    /// `[T, B, H]` the total dL/dh_t of layer `layer`, direction `dir`, from
    /// the last backward; empty unless [`RnnWorkspace::record_state_grads`]
    /// was on.
    pub fn state_grads(&self, layer: usize, dir: usize) -> &[T] {
        self.layers
            .get(layer)
            .and_then(|l| l.dirs.get(dir))
            .map_or(&[], |d| &d.dh_record[..])
    }
    /// What the last forward saved for step `t` of row `b` of (layer, dir):
    /// the activated gates `[G·H]`, h and c before the step `[H]`, c after
    /// it, and the cell's extra buffer (tanh c' for LSTM, W_hn h + b_hn for
    /// GRU). c slices are empty without a cell state.
    pub(crate) fn saved_step(
        &self,
        layer: usize,
        dir: usize,
        t: usize,
        b: usize,
    ) -> SavedStep<'_, T> {
        let cfg = self.config.as_ref().expect("a forward pass ran");
        let (h, g, bn, tn) = (cfg.hidden_size, cfg.cell.gates(), self.batch, self.steps);
        let dm = Dims {
            cell: cfg.cell,
            tn,
            bn,
            h,
            inp: 0,
            rev: dir == 1,
        };
        let d = &self.layers[layer].dirs[dir];
        let (before, _) = dm.slots(t);
        SavedStep {
            gates: &d.gates[(t * bn + b) * g * h..][..g * h],
            h_prev: state_row(&d.hs, before * bn + b, h),
            c_prev: state_row(&d.cs, before * bn + b, h),
            extra: state_row(&d.extra, t * bn + b, h),
        }
    }

    fn size_forward(&mut self, cfg: &RnnConfig, tn: usize, bn: usize) {
        let (h, d, g) = (cfg.hidden_size, cfg.directions(), cfg.cell.gates());
        let lstm = cfg.cell.has_cell_state();
        self.steps = tn;
        self.batch = bn;
        self.x.resize(tn * bn * cfg.input_size, T::ZERO);
        self.layers.resize_with(cfg.num_layers, LayerWs::default);
        for (l, lw) in self.layers.iter_mut().enumerate() {
            lw.y.resize(tn * bn * d * h, T::ZERO);
            lw.dirs.resize_with(d, DirWs::default);
            for dw in &mut lw.dirs {
                dw.gates.resize(tn * bn * g * h, T::ZERO);
                dw.hs.resize((tn + 1) * bn * h, T::ZERO);
                dw.cs
                    .resize(if lstm { (tn + 1) * bn * h } else { 0 }, T::ZERO);
                let extra = if cfg.cell == CellKind::RnnTanh || cfg.cell == CellKind::RnnRelu {
                    0
                } else {
                    tn * bn * h
                };
                dw.extra.resize(extra, T::ZERO);
                let gru = matches!(cfg.cell, CellKind::Gru | CellKind::GruResetBefore);
                dw.hg.resize(if gru { bn * g * h } else { 0 }, T::ZERO);
            }
            let in_l = if l == 0 { 0 } else { cfg.layer_input_size(l) };
            if cfg.dropout > 0.0 {
                lw.mask.resize(tn * bn * in_l, T::ZERO);
                lw.x_drop.resize(tn * bn * in_l, T::ZERO);
            }
        }
        self.h_n.resize(cfg.num_layers * d * bn * h, T::ZERO);
        self.c_n
            .resize(if lstm { cfg.num_layers * d * bn * h } else { 0 }, T::ZERO);
    }

    fn size_backward(&mut self, cfg: &RnnConfig) {
        let (tn, bn) = (self.steps, self.batch);
        let (h, d, g) = (cfg.hidden_size, cfg.directions(), cfg.cell.gates());
        let lstm = cfg.cell.has_cell_state();
        self.dx.resize(tn * bn * cfg.input_size, T::ZERO);
        self.dh0.resize(cfg.num_layers * d * bn * h, T::ZERO);
        self.dc0
            .resize(if lstm { cfg.num_layers * d * bn * h } else { 0 }, T::ZERO);
        for lw in &mut self.layers {
            lw.dy.resize(tn * bn * d * h, T::ZERO);
            for dw in &mut lw.dirs {
                dw.d_gates.resize(tn * bn * g * h, T::ZERO);
                dw.d_hgates.resize(
                    if cfg.cell == CellKind::Gru {
                        tn * bn * g * h
                    } else {
                        0
                    },
                    T::ZERO,
                );
                dw.dh.resize(bn * h, T::ZERO);
                dw.dh_next.resize(bn * h, T::ZERO);
                dw.dc.resize(if lstm { bn * h } else { 0 }, T::ZERO);
                dw.d_rh.resize(
                    if cfg.cell == CellKind::GruResetBefore {
                        bn * h
                    } else {
                        0
                    },
                    T::ZERO,
                );
                dw.dh_record
                    .resize(if self.record { tn * bn * h } else { 0 }, T::ZERO);
            }
        }
    }
}

/// Row `row` (of width `h`) of `buf`, or nothing when `buf` is unused.
fn state_row<T>(buf: &[T], row: usize, h: usize) -> &[T] {
    if buf.is_empty() {
        &[]
    } else {
        &buf[row * h..][..h]
    }
}

/// One step's saved forward values for one row; see
/// [`RnnWorkspace::saved_step`].
pub(crate) struct SavedStep<'a, T> {
    /// `[G·H]` activated gates.
    pub gates: &'a [T],
    /// `[H]` the state before the step.
    pub h_prev: &'a [T],
    /// `[H]` the cell state before the step (LSTM), else empty.
    pub c_prev: &'a [T],
    /// `[H]` tanh(c') (LSTM), W_hn h + b_hn (GRU), else empty.
    pub extra: &'a [T],
}

/// The four parameter tensors of one direction of one layer.
struct DirParams<'a, T> {
    w_ih: &'a [T],
    w_hh: &'a [T],
    b_ih: &'a [T],
    b_hh: &'a [T],
}

/// Their gradients.
struct DirGrads<'a, T> {
    w_ih: &'a mut [T],
    w_hh: &'a mut [T],
    b_ih: &'a mut [T],
    b_hh: &'a mut [T],
}

/// Shapes shared by the per-direction passes.
#[derive(Clone, Copy)]
struct Dims {
    cell: CellKind,
    /// T
    tn: usize,
    /// B
    bn: usize,
    /// H
    h: usize,
    /// input width of this layer
    inp: usize,
    /// whether this direction runs backwards in time
    rev: bool,
}

impl Dims {
    fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }
    fn bh(&self) -> usize {
        self.bn * self.h
    }
    /// Time index of processing step s.
    fn time(&self, s: usize) -> usize {
        if self.rev {
            self.tn - 1 - s
        } else {
            s
        }
    }
    /// State slots (before, after) of time t; see `DirWs::hs`.
    fn slots(&self, t: usize) -> (usize, usize) {
        if self.rev {
            (t + 1, t)
        } else {
            (t, t + 1)
        }
    }
    /// The slot of the state before the first step, and of the final state.
    fn first_last(&self) -> (usize, usize) {
        if self.rev {
            (self.tn, 0)
        } else {
            (0, self.tn)
        }
    }
    /// Offset of the T contiguous "state before step" slots.
    fn prev_states_offset(&self) -> usize {
        if self.rev {
            self.bh()
        } else {
            0
        }
    }
}

/// The four consecutive tensors of lengths `lens` at the start of `s`.
fn split4<T>(s: &[T], lens: [usize; 4]) -> [&[T]; 4] {
    let (a, s) = s.split_at(lens[0]);
    let (b, s) = s.split_at(lens[1]);
    let (c, s) = s.split_at(lens[2]);
    [a, b, c, &s[..lens[3]]]
}

/// [`split4`], mutable.
fn split4_mut<T>(s: &mut [T], lens: [usize; 4]) -> [&mut [T]; 4] {
    let (a, s) = s.split_at_mut(lens[0]);
    let (b, s) = s.split_at_mut(lens[1]);
    let (c, s) = s.split_at_mut(lens[2]);
    [a, b, c, &mut s[..lens[3]]]
}

/// Slot `a` of `buf` read-only and slot `b` mutable, each `n` long (a ≠ b).
fn slot_pair<T>(buf: &mut [T], a: usize, b: usize, n: usize) -> (&[T], &mut [T]) {
    if a < b {
        let (lo, hi) = buf.split_at_mut(b * n);
        (&lo[a * n..][..n], &mut hi[..n])
    } else {
        let (lo, hi) = buf.split_at_mut(a * n);
        (&hi[..n], &mut lo[b * n..][..n])
    }
}

/// Adds the column sums of `m` `[rows, n]` into `acc` `[n]`.
fn add_column_sums<T: Float>(acc: &mut [T], m: &[T], n: usize) {
    for row in m.chunks_exact(n) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += *v;
        }
    }
}

/// Runs one direction of one layer forward over the whole sequence.
///
/// - `x` `[T·B, in]`; `y` `[T, B, D·H]`, written at column `y_off`
/// - `h0`, `c0` `[B, H]` or zeros
#[allow(clippy::too_many_arguments)]
fn dir_forward<T: Float>(
    dm: Dims,
    p: &DirParams<T>,
    x: &[T],
    lengths: Option<&[usize]>,
    h0: Option<&[T]>,
    c0: Option<&[T]>,
    d: &mut DirWs<T>,
    y: &mut [T],
    y_off: usize,
    y_stride: usize,
) {
    let Dims {
        cell,
        tn,
        bn,
        h,
        inp,
        ..
    } = dm;
    let (gh, bh) = (dm.gh(), dm.bh());
    let (first, _) = dm.first_last();
    match h0 {
        Some(s) => d.hs[first * bh..][..bh].copy_from_slice(s),
        None => d.hs[first * bh..][..bh].fill(T::ZERO),
    }
    if cell.has_cell_state() {
        match c0 {
            Some(s) => d.cs[first * bh..][..bh].copy_from_slice(s),
            None => d.cs[first * bh..][..bh].fill(T::ZERO),
        }
    }
    // One GEMM for the input side of every step.
    gemm(
        tn * bn,
        gh,
        inp,
        x,
        inp,
        Trans::N,
        p.w_ih,
        inp,
        Trans::T,
        &mut d.gates,
        gh,
        false,
    );

    for s in 0..tn {
        let t = dm.time(s);
        let (before, after) = dm.slots(t);
        let mask = StepMask { lengths, t };
        let (h_prev, h_new) = slot_pair(&mut d.hs, before, after, bh);
        let gates = &mut d.gates[t * bn * gh..][..bn * gh];
        let y_t = &mut y[t * bn * y_stride + y_off..];
        match cell {
            CellKind::RnnTanh | CellKind::RnnRelu => {
                gemm(
                    bn,
                    gh,
                    h,
                    h_prev,
                    h,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::T,
                    gates,
                    gh,
                    true,
                );
                let relu = cell == CellKind::RnnRelu;
                cell::rnn_forward_step(
                    relu, h, gates, p.b_ih, p.b_hh, h_prev, h_new, y_t, y_stride, mask,
                );
            }
            CellKind::Lstm => {
                gemm(
                    bn,
                    gh,
                    h,
                    h_prev,
                    h,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::T,
                    gates,
                    gh,
                    true,
                );
                let (c_prev, c_new) = slot_pair(&mut d.cs, before, after, bh);
                let tanh_c = &mut d.extra[t * bh..][..bh];
                cell::lstm_forward_step(
                    h, gates, p.b_ih, p.b_hh, c_prev, h_prev, c_new, h_new, tanh_c, y_t, y_stride,
                    mask,
                );
            }
            CellKind::Gru => {
                gemm(
                    bn,
                    gh,
                    h,
                    h_prev,
                    h,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::T,
                    &mut d.hg,
                    gh,
                    false,
                );
                let hn = &mut d.extra[t * bh..][..bh];
                cell::gru_forward_step(
                    h, gates, &d.hg, p.b_ih, p.b_hh, h_prev, h_new, hn, y_t, y_stride, mask,
                );
            }
            CellKind::GruResetBefore => {
                // r and z from h_prev, then n from r ⊙ h_prev.
                gemm(
                    bn,
                    2 * h,
                    h,
                    h_prev,
                    h,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::T,
                    &mut d.hg,
                    gh,
                    false,
                );
                let rh = &mut d.extra[t * bh..][..bh];
                cell::gru_rb_forward_gates(h, gates, &d.hg, p.b_ih, p.b_hh, h_prev, rh, mask);
                let w_hn = &p.w_hh[2 * h * h..];
                gemm(
                    bn,
                    h,
                    h,
                    rh,
                    h,
                    Trans::N,
                    w_hn,
                    h,
                    Trans::T,
                    &mut d.hg[2 * h..],
                    gh,
                    false,
                );
                cell::gru_rb_forward_out(
                    h, gates, &d.hg, p.b_ih, p.b_hh, h_prev, h_new, y_t, y_stride, mask,
                );
            }
        }
    }
}

/// Runs one direction of one layer backward (BPTT), adding into its
/// parameter gradients and into (or over) `dx`.
///
/// - `x` `[T·B, in]` the layer input of the forward pass; `dx` `[T·B, in]`
/// - `dy` `[T, B, D·H]`, read at column `dy_off`
/// - `dh_n`, `dc_n` `[B, H]` or zeros; `dh0`, `dc0` `[B, H]` out
#[allow(clippy::too_many_arguments)]
fn dir_backward<T: Float>(
    dm: Dims,
    p: &DirParams<T>,
    g: DirGrads<T>,
    x: &[T],
    lengths: Option<&[usize]>,
    dy: &[T],
    dy_off: usize,
    dy_stride: usize,
    dh_n: Option<&[T]>,
    dc_n: Option<&[T]>,
    d: &mut DirWs<T>,
    dx: &mut [T],
    dx_accumulate: bool,
    dh0: &mut [T],
    dc0: &mut [T],
) {
    let Dims {
        cell,
        tn,
        bn,
        h,
        inp,
        ..
    } = dm;
    let (gh, bh) = (dm.gh(), dm.bh());
    let lstm = cell.has_cell_state();
    match dh_n {
        Some(s) => d.dh.copy_from_slice(s),
        None => d.dh.fill(T::ZERO),
    }
    if lstm {
        match dc_n {
            Some(s) => d.dc.copy_from_slice(s),
            None => d.dc.fill(T::ZERO),
        }
    }

    // Steps in the reverse of the order forward ran them.
    for s in (0..tn).rev() {
        let t = dm.time(s);
        let (before, _) = dm.slots(t);
        let mask = StepMask { lengths, t };
        let h_prev = &d.hs[before * bh..][..bh];
        let gates = &d.gates[t * bn * gh..][..bn * gh];
        let d_gates = &mut d.d_gates[t * bn * gh..][..bn * gh];
        let dy_t = &dy[t * bn * dy_stride + dy_off..];
        if !d.dh_record.is_empty() {
            let rec = &mut d.dh_record[t * bh..][..bh];
            for (b, r) in rec.chunks_exact_mut(h).enumerate() {
                let dyr = &dy_t[b * dy_stride..][..h];
                for ((r, g), y) in r.iter_mut().zip(&d.dh[b * h..][..h]).zip(dyr) {
                    *r = *g + *y;
                }
            }
        }
        match cell {
            CellKind::RnnTanh | CellKind::RnnRelu => {
                let relu = cell == CellKind::RnnRelu;
                cell::rnn_backward_step(
                    relu,
                    h,
                    gates,
                    &d.dh,
                    dy_t,
                    dy_stride,
                    d_gates,
                    &mut d.dh_next,
                    mask,
                );
                gemm(
                    bn,
                    h,
                    gh,
                    d_gates,
                    gh,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::N,
                    &mut d.dh_next,
                    h,
                    true,
                );
            }
            CellKind::Lstm => {
                let c_prev = &d.cs[before * bh..][..bh];
                let tanh_c = &d.extra[t * bh..][..bh];
                cell::lstm_backward_step(
                    h,
                    gates,
                    c_prev,
                    tanh_c,
                    &d.dh,
                    dy_t,
                    dy_stride,
                    &mut d.dc,
                    d_gates,
                    &mut d.dh_next,
                    mask,
                );
                gemm(
                    bn,
                    h,
                    gh,
                    d_gates,
                    gh,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::N,
                    &mut d.dh_next,
                    h,
                    true,
                );
            }
            CellKind::Gru => {
                let hn = &d.extra[t * bh..][..bh];
                let d_hg = &mut d.d_hgates[t * bn * gh..][..bn * gh];
                cell::gru_backward_step(
                    h,
                    gates,
                    hn,
                    h_prev,
                    &d.dh,
                    dy_t,
                    dy_stride,
                    d_gates,
                    d_hg,
                    &mut d.dh_next,
                    mask,
                );
                gemm(
                    bn,
                    h,
                    gh,
                    d_hg,
                    gh,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::N,
                    &mut d.dh_next,
                    h,
                    true,
                );
            }
            CellKind::GruResetBefore => {
                cell::gru_rb_backward_out(
                    h,
                    gates,
                    h_prev,
                    &d.dh,
                    dy_t,
                    dy_stride,
                    d_gates,
                    &mut d.dh_next,
                    mask,
                );
                let w_hn = &p.w_hh[2 * h * h..];
                gemm(
                    bn,
                    h,
                    h,
                    &d_gates[2 * h..],
                    gh,
                    Trans::N,
                    w_hn,
                    h,
                    Trans::N,
                    &mut d.d_rh,
                    h,
                    false,
                );
                cell::gru_rb_backward_gates(
                    h,
                    gates,
                    h_prev,
                    &d.d_rh,
                    d_gates,
                    &mut d.dh_next,
                    mask,
                );
                gemm(
                    bn,
                    h,
                    2 * h,
                    d_gates,
                    gh,
                    Trans::N,
                    p.w_hh,
                    h,
                    Trans::N,
                    &mut d.dh_next,
                    h,
                    true,
                );
            }
        }
        std::mem::swap(&mut d.dh, &mut d.dh_next);
    }
    dh0.copy_from_slice(&d.dh);
    if lstm {
        dc0.copy_from_slice(&d.dc);
    }

    // The three large GEMMs over all T·B rows.
    let rows = tn * bn;
    let dgx = &d.d_gates[..rows * gh];
    let dgh = if cell == CellKind::Gru {
        &d.d_hgates[..rows * gh]
    } else {
        dgx
    };
    let h_prevs = &d.hs[dm.prev_states_offset()..][..rows * h];
    gemm(
        gh,
        inp,
        rows,
        dgx,
        gh,
        Trans::T,
        x,
        inp,
        Trans::N,
        g.w_ih,
        inp,
        true,
    );
    if cell == CellKind::GruResetBefore {
        gemm(
            2 * h,
            h,
            rows,
            dgh,
            gh,
            Trans::T,
            h_prevs,
            h,
            Trans::N,
            g.w_hh,
            h,
            true,
        );
        let rh = &d.extra[..rows * h];
        gemm(
            h,
            h,
            rows,
            &dgh[2 * h..],
            gh,
            Trans::T,
            rh,
            h,
            Trans::N,
            &mut g.w_hh[2 * h * h..],
            h,
            true,
        );
    } else {
        gemm(
            gh,
            h,
            rows,
            dgh,
            gh,
            Trans::T,
            h_prevs,
            h,
            Trans::N,
            g.w_hh,
            h,
            true,
        );
    }
    add_column_sums(g.b_ih, dgx, gh);
    add_column_sums(g.b_hh, dgh, gh);
    gemm(
        rows,
        inp,
        gh,
        dgx,
        gh,
        Trans::N,
        p.w_ih,
        inp,
        Trans::N,
        dx,
        inp,
        dx_accumulate,
    );
}

impl Rnn {
    /// Registers a stack's tensors in `scope`, all zero; see
    /// [`Rnn::init_uniform`].
    pub fn new<T: Float>(mut scope: Scope<'_, T>, config: RnnConfig) -> Result<Rnn> {
        config.validate()?;
        let (h, g, d) = (config.hidden_size, config.cell.gates(), config.directions());
        let mut info = Vec::new();
        let start = scope.offset();
        for l in 0..config.num_layers {
            let inp = config.layer_input_size(l);
            for dir in 0..d {
                let sfx = if dir == 1 { "_reverse" } else { "" };
                for (kind, shape) in [
                    ("weight_ih", vec![g * h, inp]),
                    ("weight_hh", vec![g * h, h]),
                    ("bias_ih", vec![g * h]),
                    ("bias_hh", vec![g * h]),
                ] {
                    let name = format!("{kind}_l{l}{sfx}");
                    let p = scope.add(&name, &shape);
                    info.push(ParamInfo {
                        name,
                        shape,
                        offset: p.offset,
                    });
                }
            }
        }
        let at = Param {
            offset: start,
            len: scope.offset() - start,
        };
        Ok(Rnn { config, info, at })
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Every parameter tensor in PyTorch's `state_dict` order, named within
    /// the layer (`weight_ih_l0`), at its offset in the store.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.info
    }

    /// The block of all the layer's tensors in the store.
    pub fn block(&self) -> Param {
        self.at
    }

    fn find(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.info.iter().find(|p| p.name == name).map(|p| p.range())
    }

    /// A parameter tensor by its PyTorch name within the layer.
    pub fn param<'a, T: Float>(&self, store: &'a ParamStore<T>, name: &str) -> Option<&'a [T]> {
        Some(&store.params[self.find(name)?])
    }

    /// A parameter tensor by its PyTorch name within the layer, mutable.
    pub fn param_mut<'a, T: Float>(
        &self,
        store: &'a mut ParamStore<T>,
        name: &str,
    ) -> Option<&'a mut [T]> {
        Some(&mut store.params[self.find(name)?])
    }

    /// The gradient of a parameter tensor by its PyTorch name within the layer.
    pub fn grad<'a, T: Float>(&self, store: &'a ParamStore<T>, name: &str) -> Option<&'a [T]> {
        Some(&store.grads[self.find(name)?])
    }

    /// PyTorch's default initialisation: every parameter of the layer drawn
    /// from U(−1/√H, 1/√H), from a ChaCha8 stream seeded with `seed`.
    pub fn init_uniform<T: Float>(&self, store: &mut ParamStore<T>, seed: u64) {
        let k = 1.0 / (self.config.hidden_size as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for p in self.at.of_mut(&mut store.params) {
            *p = T::from_f64(rng.random_range(-k..k));
        }
    }

    /// Index into the flat buffers of (layer, direction).
    fn slot_offsets(&self, l: usize, dir: usize) -> (usize, [usize; 4]) {
        let i = (l * self.config.directions() + dir) * 4;
        let start = self.info[i].offset;
        (start, std::array::from_fn(|k| self.info[i + k].len()))
    }

    fn dir_params<'a, T>(&self, params: &'a [T], l: usize, dir: usize) -> DirParams<'a, T> {
        let (start, lens) = self.slot_offsets(l, dir);
        let [w_ih, w_hh, b_ih, b_hh] = split4(&params[start..], lens);
        DirParams {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
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
        } = input;
        let (h, d) = (cfg.hidden_size, cfg.directions());
        if tn == 0 || bn == 0 {
            return Err(Error::Config(format!(
                "steps T and batch B must be at least 1 (got T = {tn}, B = {bn})"
            )));
        }
        check_len(
            "x",
            || format!("[T={tn}, B={bn}, I={}]", cfg.input_size),
            tn * bn * cfg.input_size,
            x.len(),
        )?;
        let state_shape = || format!("[L·D={}, B={bn}, H={h}]", cfg.num_layers * d);
        let state_len = cfg.num_layers * d * bn * h;
        if let Some(s) = h0 {
            check_len("h0", state_shape, state_len, s.len())?;
        }
        if let Some(s) = c0 {
            if !cfg.cell.has_cell_state() {
                return Err(Error::Config(format!(
                    "c0 was given, but a {} layer has no cell state",
                    cfg.cell.name()
                )));
            }
            check_len("c0", state_shape, state_len, s.len())?;
        }
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
        ws.config = Some(cfg.clone());
        ws.x.copy_from_slice(x);
        ws.ragged = lengths.is_some_and(|l| l.iter().any(|&n| n != tn));
        ws.lengths.clear();
        ws.lengths.extend_from_slice(lengths.unwrap_or(&[]));
        let lengths = if ws.ragged {
            Some(&ws.lengths[..])
        } else {
            None
        };
        let mut rng = train.filter(|_| cfg.dropout > 0.0);
        ws.dropped = rng.is_some() && cfg.num_layers > 1;

        let bh = bn * h;
        for l in 0..cfg.num_layers {
            let inp = cfg.layer_input_size(l);
            let (done, rest) = ws.layers.split_at_mut(l);
            let LayerWs {
                y,
                mask,
                x_drop,
                dirs,
                ..
            } = &mut rest[0];
            let input: &[T] = if l == 0 {
                &ws.x
            } else if let Some(rng) = rng.as_deref_mut() {
                let keep = 1.0 - cfg.dropout;
                let scale = T::from_f64(1.0 / keep);
                for ((m, xd), v) in mask.iter_mut().zip(x_drop.iter_mut()).zip(&done[l - 1].y) {
                    *m = if rng.random::<f64>() < keep {
                        scale
                    } else {
                        T::ZERO
                    };
                    *xd = *v * *m;
                }
                x_drop
            } else {
                &done[l - 1].y
            };
            for (dir, dw) in dirs.iter_mut().enumerate() {
                let dm = Dims {
                    cell: cfg.cell,
                    tn,
                    bn,
                    h,
                    inp,
                    rev: dir == 1,
                };
                let k = l * d + dir;
                let h0_k = h0.map(|s| &s[k * bh..][..bh]);
                let c0_k = c0.map(|s| &s[k * bh..][..bh]);
                dir_forward(
                    dm,
                    &self.dir_params(&store.params, l, dir),
                    input,
                    lengths,
                    h0_k,
                    c0_k,
                    dw,
                    y,
                    dir * h,
                    d * h,
                );
                let (_, last) = dm.first_last();
                ws.h_n[k * bh..][..bh].copy_from_slice(&dw.hs[last * bh..][..bh]);
                if cfg.cell.has_cell_state() {
                    ws.c_n[k * bh..][..bh].copy_from_slice(&dw.cs[last * bh..][..bh]);
                }
            }
        }
        Ok(())
    }

    /// Backpropagation through time for the last [`Rnn::forward`] on `ws`.
    ///
    /// Takes dL/dy `[T, B, D·H]` and dL/dh_n, dL/dc_n `[L·D, B, H]` (zeros
    /// when `None`); adds dL/dparams into the store's gradients and leaves dL/dx,
    /// dL/dh0 and dL/dc0 in the workspace.
    pub fn backward<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        ws: &mut RnnWorkspace<T>,
        dy: &[T],
        dh_n: Option<&[T]>,
        dc_n: Option<&[T]>,
    ) -> Result<()> {
        let cfg = self.config.clone();
        if ws.config.as_ref() != Some(&cfg) {
            return Err(Error::Order(
                "backward needs a forward pass of the same layer on this workspace first".into(),
            ));
        }
        let (tn, bn) = (ws.steps, ws.batch);
        let (h, d) = (cfg.hidden_size, cfg.directions());
        check_len(
            "dy",
            || format!("[T={tn}, B={bn}, D·H={}]", d * h),
            tn * bn * d * h,
            dy.len(),
        )?;
        let state_shape = || format!("[L·D={}, B={bn}, H={h}]", cfg.num_layers * d);
        let state_len = cfg.num_layers * d * bn * h;
        if let Some(s) = dh_n {
            check_len("dh_n", state_shape, state_len, s.len())?;
        }
        if let Some(s) = dc_n {
            if !cfg.cell.has_cell_state() {
                return Err(Error::Config(format!(
                    "dc_n was given, but a {} layer has no cell state",
                    cfg.cell.name()
                )));
            }
            check_len("dc_n", state_shape, state_len, s.len())?;
        }
        ws.size_backward(&cfg);

        let bh = bn * h;
        let lengths = if ws.ragged {
            Some(&ws.lengths[..])
        } else {
            None
        };
        let RnnWorkspace {
            x,
            layers,
            dx,
            dh0,
            dc0,
            dropped,
            ..
        } = ws;
        for l in (0..cfg.num_layers).rev() {
            let inp = cfg.layer_input_size(l);
            let (below, rest) = layers.split_at_mut(l);
            let LayerWs {
                dy: dy_own,
                mask,
                x_drop,
                dirs,
                ..
            } = &mut rest[0];
            let dy_l: &[T] = if l + 1 == cfg.num_layers { dy } else { dy_own };
            let (input, d_input): (&[T], &mut [T]) = match below.last_mut() {
                None => (x, dx),
                Some(prev) => (if *dropped { x_drop } else { &prev.y }, &mut prev.dy),
            };
            for (dir, dw) in dirs.iter_mut().enumerate() {
                let dm = Dims {
                    cell: cfg.cell,
                    tn,
                    bn,
                    h,
                    inp,
                    rev: dir == 1,
                };
                let k = l * d + dir;
                let (start, lens) = self.slot_offsets(l, dir);
                let [w_ih, w_hh, b_ih, b_hh] = split4(&store.params[start..], lens);
                let p = DirParams {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                };
                let [w_ih, w_hh, b_ih, b_hh] = split4_mut(&mut store.grads[start..], lens);
                let g = DirGrads {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                };
                let dh_n_k = dh_n.map(|s| &s[k * bh..][..bh]);
                let dc_n_k = dc_n.map(|s| &s[k * bh..][..bh]);
                let dc0_k: &mut [T] = if cfg.cell.has_cell_state() {
                    &mut dc0[k * bh..][..bh]
                } else {
                    &mut []
                };
                dir_backward(
                    dm,
                    &p,
                    g,
                    input,
                    lengths,
                    dy_l,
                    dir * h,
                    d * h,
                    dh_n_k,
                    dc_n_k,
                    dw,
                    d_input,
                    dir > 0,
                    &mut dh0[k * bh..][..bh],
                    dc0_k,
                );
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
