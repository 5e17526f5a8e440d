//! What a pass of a recurrent stack saves and writes: [`RnnWorkspace`],
//! sized once per shape and reused, so repeated passes allocate nothing.

use super::dir::Dims;
use super::RnnConfig;
use crate::cell::CellKind;
use crate::float::Float;

/// The input of [`super::Rnn::forward`].
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
    /// `[T, B]` token ids, when `x` is a table `[V, I]` of which row
    /// `ids[t·B + b]` is the input at step t of row b (see
    /// [`RnnInput::lookup`]).
    pub ids: Option<&'a [u32]>,
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
            ids: None,
        }
    }
    /// A batch whose input at step t of row b is row `ids[t·B + b]` of
    /// `table` `[V, I]` (an embedding's rows). The layer then multiplies
    /// the V rows by its input weight once, instead of T·B copies of them,
    /// when T·B ≥ 2·V, and hands back dL/d`table` ([`RnnWorkspace::d_table`])
    /// instead of dL/dx.
    pub fn lookup(table: &'a [T], ids: &'a [u32], steps: usize, batch: usize) -> RnnInput<'a, T> {
        RnnInput {
            ids: Some(ids),
            ..RnnInput::new(table, steps, batch)
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
pub(super) struct DirWs<T> {
    /// `[T, B, G·H]` pre-activations, then the activated gates (by time).
    pub gates: Vec<T>,
    /// `[T+1, B, H]` states. Forward: slot t is the state before step t.
    /// Reverse: slot t+1 is the state before step t. Either way the T
    /// states that fed a step are contiguous.
    pub hs: Vec<T>,
    /// `[T+1, B, H]` cell states, laid out like `hs` (LSTM).
    pub cs: Vec<T>,
    /// `[T, B, H]` tanh(c_t) (LSTM); W_hn h + b_hn (GRU); r ⊙ h_prev (reset-before GRU).
    pub extra: Vec<T>,
    /// `[B, G·H]` h_prev · W_hhᵀ for the GRU step.
    pub hg: Vec<T>,
    /// `[V, G·H]` a lookup pass's table rows times W_ih (layer 0), then in
    /// backward dL/d(those products).
    pub table: Vec<T>,
    /// The pass's constants: `[H]` the leak rate of each unit (leaky Elman
    /// cells), then `[H]` zeros in place of an absent `bias_hh`.
    pub consts: Vec<T>,
    /// `[T, B, G·H]` dL/d(pre-activations) on the input side.
    pub d_gates: Vec<T>,
    /// `[T, B, G·H]` dL/d(h·W_hhᵀ + b_hh) for the reset-after GRU.
    pub d_hgates: Vec<T>,
    /// `[B, H]` dL/dh flowing back in time, and the next step's.
    pub dh: Vec<T>,
    pub dh_next: Vec<T>,
    /// `[B, H]` dL/dc flowing back in time (LSTM).
    pub dc: Vec<T>,
    /// `[B, H]` dL/d(r ⊙ h_prev) (reset-before GRU).
    pub d_rh: Vec<T>,
    /// `[T+1, B, H]` dL/d(state) arriving through skip connections, laid
    /// out like `hs` (skip connections; else empty).
    pub dh_skip: Vec<T>,
    /// `[H]` dL/d(leak logits) summed over the steps (learned leak).
    pub d_logit: Vec<T>,
    /// `[T, B, H]` the total dL/dh_t of each step, kept only when the
    /// workspace records state gradients (diagnostics).
    pub dh_record: Vec<T>,
}

/// Buffers of one layer.
#[derive(Clone, Debug, Default)]
pub(super) struct LayerWs<T> {
    /// `[T, B, D·H]` the layer's output.
    pub y: Vec<T>,
    /// `[T, B, H]` the reverse direction's output while both directions
    /// run at once, before it joins `y`.
    pub y_rev: Vec<T>,
    /// `[T, B, D·H]` dL/dy.
    pub dy: Vec<T>,
    /// `[T, B, in]` dropout mask on this layer's input, values 0 or 1/(1-p).
    pub mask: Vec<T>,
    /// `[T, B, in]` this layer's input after dropout.
    pub x_drop: Vec<T>,
    pub dirs: Vec<DirWs<T>>,
}

/// Everything a forward pass saves and a backward pass needs, plus the
/// outputs of both. Sized by the first call for a shape and reused after,
/// so repeated calls allocate nothing.
#[derive(Clone, Debug, Default)]
pub struct RnnWorkspace<T> {
    /// T: steps run (in a step-by-step pass, so far).
    pub(super) steps: usize,
    /// The steps the buffers hold (T of a whole pass; the most steps of a
    /// step-by-step pass).
    pub(super) capacity: usize,
    pub(super) batch: usize,
    /// The config of the last forward.
    pub(super) config: Option<RnnConfig>,
    /// Whether the last forward applied dropout.
    pub(super) dropped: bool,
    pub(super) ragged: bool,
    /// Whether the pass runs one step at a time.
    pub(super) stepwise: bool,
    /// Step-by-step backward: the steps not yet run backward.
    pub(super) pending: usize,
    /// Step by step: whether the weight gradients of the pass were added.
    pub(super) finished: bool,
    /// `[B]`
    pub(super) lengths: Vec<usize>,
    /// `[T, B, I]` copy of the input (a lookup pass: its rows, when it
    /// does not go through the table).
    pub(super) x: Vec<T>,
    /// `[T, B]` a lookup pass's ids; empty otherwise.
    pub(super) ids: Vec<u32>,
    /// V: the rows of a lookup pass's table.
    pub(super) vocab: usize,
    /// `[V, I]` a copy of a lookup pass's table, when it goes through the
    /// table's product.
    pub(super) table: Vec<T>,
    /// Whether layer 0's input side went through the table's product.
    pub(super) through_table: bool,
    pub(super) layers: Vec<LayerWs<T>>,
    /// `[L·D, B, H]`
    pub(super) h_n: Vec<T>,
    /// `[L·D, B, H]`
    pub(super) c_n: Vec<T>,
    /// `[T, B, I]`
    pub(super) dx: Vec<T>,
    /// `[V, I]` dL/d(table) of a lookup pass.
    pub(super) d_table: Vec<T>,
    /// `[L·D, B, H]`
    pub(super) dh0: Vec<T>,
    /// `[L·D, B, H]`
    pub(super) dc0: Vec<T>,
    /// Whether backward keeps dL/dh_t of every step (see `state_grads`).
    pub(super) record: bool,
    /// `[2, T·B, H]` the gradient-decay regulariser's a = g ⊙ f′(h) and
    /// v = a · W_hh (see `layer::rnn::decay`).
    pub(super) decay: Vec<T>,
}

impl<T> RnnWorkspace<T> {
    /// Whether the last forward had rows of different lengths.
    pub(crate) fn is_ragged(&self) -> bool {
        self.ragged
    }
    /// Whether the last forward was of a layer with this config.
    pub(crate) fn ran(&self, cfg: &RnnConfig) -> bool {
        self.config.as_ref() == Some(cfg)
    }
}

impl<T: Float> RnnWorkspace<T> {
    /// An empty workspace; the first forward sizes it.
    pub fn new() -> RnnWorkspace<T> {
        RnnWorkspace::default()
    }
    /// T of the last forward (steps taken so far, step by step).
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// B of the last forward.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `[T, B, D·H]` the output of the last layer.
    pub fn output(&self) -> &[T] {
        let w = self.width();
        self.layers
            .last()
            .map_or(&[], |l| &l.y[..self.steps * self.batch * w])
    }
    /// `[B, H]` the last layer's output at step `t` (step by step); empty
    /// for a step not run.
    pub fn step_output(&self, t: usize) -> &[T] {
        let n = self.batch * self.width();
        match self.layers.last() {
            Some(l) if t < self.steps => &l.y[t * n..][..n],
            _ => &[],
        }
    }
    /// `[L·D, B, H]` the final hidden state of every layer and direction.
    pub fn h_n(&self) -> &[T] {
        &self.h_n
    }
    /// `[L·D, B, H]` the final cell state (LSTM; empty otherwise).
    pub fn c_n(&self) -> &[T] {
        &self.c_n
    }
    /// `[T, B, I]` dL/dx after [`super::Rnn::backward`] (empty after a
    /// lookup pass: see [`RnnWorkspace::d_table`]).
    pub fn dx(&self) -> &[T] {
        if self.is_lookup() {
            return &[];
        }
        self.dx
            .get(..self.steps * self.batch * self.input_width())
            .unwrap_or(&[])
    }
    /// `[V, I]` dL/d(table) after [`super::Rnn::backward`] of a pass given
    /// by [`RnnInput::lookup`] (empty otherwise).
    pub fn d_table(&self) -> &[T] {
        if self.is_lookup() {
            &self.d_table
        } else {
            &[]
        }
    }
    fn is_lookup(&self) -> bool {
        !self.ids.is_empty()
    }
    /// `[B, I]` dL/dx_t after [`super::Rnn::step_backward`] for step `t`.
    pub fn step_dx(&self, t: usize) -> &[T] {
        let n = self.batch * self.input_width();
        self.dx.get(t * n..(t + 1) * n).unwrap_or(&[])
    }
    /// `[L·D, B, H]` dL/dh0 after [`super::Rnn::backward`].
    pub fn dh0(&self) -> &[T] {
        &self.dh0
    }
    /// `[L·D, B, H]` dL/dc0 after [`super::Rnn::backward`] (LSTM; empty otherwise).
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
        let n = self.steps * self.batch * self.config.as_ref().map_or(0, |c| c.hidden);
        self.layers
            .get(layer)
            .and_then(|l| l.dirs.get(dir))
            .and_then(|d| d.dh_record.get(..n))
            .unwrap_or(&[])
    }

    fn width(&self) -> usize {
        self.config.as_ref().map_or(0, |c| c.output())
    }

    fn input_width(&self) -> usize {
        self.config.as_ref().map_or(0, |c| c.input)
    }

    /// What the last forward saved for step `t` of row `b` of (layer, dir):
    /// the activated gates `[G·H]`, h and c before the step `[H]`, the
    /// cell's extra buffer (tanh c' for LSTM, W_hn h + b_hn for GRU), and
    /// the leak rates `[H]` of a leaky Elman layer. Empty slices where the
    /// cell has no such value.
    pub(crate) fn saved_step(
        &self,
        layer: usize,
        dir: usize,
        t: usize,
        b: usize,
    ) -> SavedStep<'_, T> {
        let cfg = self.config.as_ref().expect("a forward pass ran");
        let (h, g, bn) = (cfg.hidden, cfg.cell.gates(), self.batch);
        let dm = Dims::new(cfg, self.capacity, bn, 0, dir == 1);
        let d = &self.layers[layer].dirs[dir];
        let (before, _) = dm.slots(t);
        SavedStep {
            gates: &d.gates[(t * bn + b) * g * h..][..g * h],
            h_prev: state_row(&d.hs, before * bn + b, h),
            c_prev: state_row(&d.cs, before * bn + b, h),
            extra: state_row(&d.extra, t * bn + b, h),
            alpha: &d.consts[..if cfg.leaky() { h } else { 0 }],
        }
    }

    /// Sizes every forward buffer for `tn` steps of `bn` rows.
    pub(super) fn size_forward(&mut self, cfg: &RnnConfig, tn: usize, bn: usize) {
        let (h, d, g) = (cfg.hidden, cfg.directions(), cfg.cell.gates());
        let lstm = cfg.cell.has_cell_state();
        self.capacity = tn;
        self.batch = bn;
        self.x.resize(tn * bn * cfg.input, T::ZERO);
        self.layers.resize_with(cfg.layers, LayerWs::default);
        for (l, lw) in self.layers.iter_mut().enumerate() {
            lw.y.resize(tn * bn * d * h, T::ZERO);
            lw.dirs.resize_with(d, DirWs::default);
            for dw in &mut lw.dirs {
                dw.gates.resize(tn * bn * g * h, T::ZERO);
                dw.hs.resize((tn + 1) * bn * h, T::ZERO);
                dw.cs
                    .resize(if lstm { (tn + 1) * bn * h } else { 0 }, T::ZERO);
                let elman = matches!(cfg.cell, CellKind::RnnTanh | CellKind::RnnRelu);
                dw.extra
                    .resize(if elman { 0 } else { tn * bn * h }, T::ZERO);
                let gru = matches!(cfg.cell, CellKind::Gru | CellKind::GruResetBefore);
                dw.hg.resize(if gru { bn * g * h } else { 0 }, T::ZERO);
                let n = usize::from(cfg.leaky()) + usize::from(!cfg.bias_hh);
                dw.consts.resize(n * h, T::ZERO);
            }
            let in_l = if l == 0 { 0 } else { cfg.layer_input(l) };
            if cfg.dropout > 0.0 {
                lw.mask.resize(tn * bn * in_l, T::ZERO);
                lw.x_drop.resize(tn * bn * in_l, T::ZERO);
            }
        }
        self.h_n.resize(cfg.layers * d * bn * h, T::ZERO);
        self.c_n
            .resize(if lstm { cfg.layers * d * bn * h } else { 0 }, T::ZERO);
    }

    /// Sizes every backward buffer for the shape of the last forward.
    pub(super) fn size_backward(&mut self, cfg: &RnnConfig) {
        let (tn, bn) = (self.capacity, self.batch);
        let (h, d, g) = (cfg.hidden, cfg.directions(), cfg.cell.gates());
        let lstm = cfg.cell.has_cell_state();
        let learned = matches!(cfg.leak, super::Leak::Learned(_));
        self.dx.resize(tn * bn * cfg.input, T::ZERO);
        self.dh0.resize(cfg.layers * d * bn * h, T::ZERO);
        self.dc0
            .resize(if lstm { cfg.layers * d * bn * h } else { 0 }, T::ZERO);
        for lw in &mut self.layers {
            lw.dy.resize(tn * bn * d * h, T::ZERO);
            for dw in &mut lw.dirs {
                dw.d_gates.resize(tn * bn * g * h, T::ZERO);
                let gru = cfg.cell == CellKind::Gru;
                dw.d_hgates
                    .resize(if gru { tn * bn * g * h } else { 0 }, T::ZERO);
                dw.dh.resize(bn * h, T::ZERO);
                dw.dh_next.resize(bn * h, T::ZERO);
                dw.dc.resize(if lstm { bn * h } else { 0 }, T::ZERO);
                let rb = cfg.cell == CellKind::GruResetBefore;
                dw.d_rh.resize(if rb { bn * h } else { 0 }, T::ZERO);
                dw.dh_skip
                    .resize(if cfg.skip > 0 { (tn + 1) * bn * h } else { 0 }, T::ZERO);
                dw.d_logit.resize(if learned { h } else { 0 }, T::ZERO);
                dw.dh_record
                    .resize(if self.record { tn * bn * h } else { 0 }, T::ZERO);
            }
        }
    }
}

/// Row `row` (of width `h`) of `buf`, or nothing when `buf` is unused.
pub(super) fn state_row<T>(buf: &[T], row: usize, h: usize) -> &[T] {
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
    /// `[H]` the leak rates (leaky Elman layers), else empty.
    pub alpha: &'a [T],
}
