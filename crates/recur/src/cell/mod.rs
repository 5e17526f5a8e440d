//! Fused pointwise step kernels, one file per cell.
//!
//! A step of a recurrent layer is its recurrent GEMMs plus one of these
//! kernels: one GEMM for most cells; two of each for the reset-before GRU,
//! whose second GEMM needs the reset gate; for an Elman layer, one more for a
//! skip connection and none without `weight_hh`. Forward kernels take the pre-activations the GEMMs produced,
//! add the biases, activate in place (the activated gates are what backward
//! needs) and write the new state; backward kernels turn dL/dh (and dL/dc)
//! into gradients of the pre-activations, which the layer then multiplies
//! back through the weights as large GEMMs.
//!
//! Every kernel works on B rows at once. Row b of a step is skipped when the
//! [`StepMask`] says its sequence has ended: its state is carried unchanged,
//! its output is zero and no gradient flows into its gates.
//!
//! The kernels are compiled for AVX-512, AVX2+FMA and baseline x86-64 and the
//! best is chosen at run time; the activations inline into each copy.
//!
//! Each cell file keeps its step whole: [`forward_step`] and
//! [`backward_step`] dispatch to the cell's recurrent GEMM(s) and kernel.

pub(crate) mod gru;
pub(crate) mod lstm;
pub(crate) mod rnn;

use crate::float::Float;
use crate::quant::PackedRef;

/// The tensors of one direction of one layer, as one step reads them.
pub(crate) struct CellParams<'a, T> {
    /// `[G·H, in]`
    pub w_ih: &'a [T],
    /// `[G·H, H]`, empty when the layer has no hidden-to-hidden weights.
    pub w_hh: &'a [T],
    /// `[G·H]`
    pub b_ih: &'a [T],
    /// `[G·H]`
    pub b_hh: &'a [T],
    /// `[H, H]` the skip connection in time (Elman only).
    pub w_skip: Option<&'a [T]>,
    /// `[H]` the leak rate of each unit (Elman only); `None` is α = 1.
    pub alpha: Option<&'a [T]>,
    /// `w_ih` converted for inference (bf16, int8), when it is.
    pub q_ih: Option<PackedRef<'a>>,
    /// `w_hh` converted for inference, when it is.
    pub q_hh: Option<PackedRef<'a>>,
}

impl<'a, T> CellParams<'a, T> {
    /// `w_hh`'s transpose in bf16, when training runs in bf16: what
    /// backward multiplies the gate gradients by.
    pub fn qt_hh(&self) -> Option<PackedRef<'a>> {
        self.q_hh.and_then(PackedRef::t)
    }

    /// `w_ih`'s transpose in bf16, when training runs in bf16.
    pub fn qt_ih(&self) -> Option<PackedRef<'a>> {
        self.q_ih.and_then(PackedRef::t)
    }
}

/// What one forward step of B rows reads and writes.
pub(crate) struct StepForward<'a, T> {
    /// `[B, H]` the state before the step.
    pub h_prev: &'a [T],
    /// `[B, H]` the state d steps back (skip connection), when there is one.
    pub h_skip: Option<&'a [T]>,
    /// `[B, H]` out: the new state.
    pub h_new: &'a mut [T],
    /// `[B, H]` the cell state before the step (LSTM; else empty).
    pub c_prev: &'a [T],
    /// `[B, H]` out: the new cell state (LSTM; else empty).
    pub c_new: &'a mut [T],
    /// `[B, G·H]` in: x·W_ihᵀ; out: the saved activations.
    pub gates: &'a mut [T],
    /// `[B, H]` out: what else backward needs: tanh(c') (LSTM), W_hn h + b_hn
    /// (GRU), r ⊙ h (reset-before GRU); empty for Elman.
    pub extra: &'a mut [T],
    /// `[B, G·H]` scratch for the recurrent product (GRU).
    pub hg: &'a mut [T],
    /// Out: row b at `b·y_stride` gets the new state (zero for finished rows).
    pub y: &'a mut [T],
    /// Stride of `y`.
    pub y_stride: usize,
    /// Which rows take part.
    pub mask: StepMask<'a>,
}

/// What one backward step of B rows reads and writes.
pub(crate) struct StepBackward<'a, T> {
    /// `[B, G·H]` the saved activations.
    pub gates: &'a [T],
    /// `[B, H]` saved as in [`StepForward::extra`].
    pub extra: &'a [T],
    /// `[B, H]` the states before the step.
    pub h_prev: &'a [T],
    /// `[B, H]` the cell state before the step (LSTM; else empty).
    pub c_prev: &'a [T],
    /// `[B, H]` dL/d(new state) from later steps.
    pub dh: &'a [T],
    /// dL/dy rows at `dy_stride`.
    pub dy: &'a [T],
    /// Stride of `dy`.
    pub dy_stride: usize,
    /// `[B, H]` in: dL/dc'; out: dL/dc (LSTM; else empty).
    pub dc: &'a mut [T],
    /// `[B, G·H]` out: dL/d(input-side pre-activations).
    pub d_gates: &'a mut [T],
    /// `[B, G·H]` out: dL/d(h·W_hhᵀ + b_hh) (reset-after GRU; else empty).
    pub d_hgates: &'a mut [T],
    /// `[B, H]` scratch (reset-before GRU).
    pub d_rh: &'a mut [T],
    /// `[B, H]` out: dL/d(state before the step).
    pub dh_prev: &'a mut [T],
    /// `[B, H]` dL/d(the skip state), added to (skip connection).
    pub dh_skip: Option<&'a mut [T]>,
    /// `[H]` dL/d(leak logits), added to (learned leak).
    pub d_logit: Option<&'a mut [T]>,
    /// Which rows take part.
    pub mask: StepMask<'a>,
}

/// Splits `s` at `at`, or wholly into the first part when shorter (an
/// unused buffer).
fn split_ref<T>(s: &[T], at: usize) -> (&[T], &[T]) {
    s.split_at(at.min(s.len()))
}

/// [`split_ref`] for a buffer written.
fn split_mut<T>(s: &mut [T], at: usize) -> (&mut [T], &mut [T]) {
    let at = at.min(s.len());
    s.split_at_mut(at)
}

/// Rows of one step from which its pointwise kernel runs on two threads,
/// half the rows each: below, the meeting costs more than it saves.
const PAR_MIN_POINTWISE: usize = 4096;

/// Whether a step of `bn` rows of `h` units runs its kernel on two threads.
fn splits(bn: usize, h: usize) -> bool {
    bn >= 2 && bn * h >= PAR_MIN_POINTWISE && crate::gemm::threads() >= 2
}

/// Runs `kernel` on the two halves of a step, one per thread.
fn run_halves<P: Send>(a: P, b: P, kernel: &(dyn Fn(&mut P) + Sync)) {
    let parts = [std::sync::Mutex::new(a), std::sync::Mutex::new(b)];
    crate::pool::pool().run(2, &|i| {
        kernel(&mut parts[i].lock().unwrap_or_else(|e| e.into_inner()));
    });
}

impl<'a, T: Float> StepForward<'a, T> {
    /// Rows 0..m and m.. of the step, borrowed, for a cell of `g` gate
    /// blocks.
    fn split_rows(
        &mut self,
        m: usize,
        h: usize,
        g: usize,
    ) -> (StepForward<'_, T>, StepForward<'_, T>) {
        let (hp0, hp1) = split_ref(self.h_prev, m * h);
        let (hs0, hs1) = self.h_skip.map(|s| split_ref(s, m * h)).unzip();
        let (hn0, hn1) = split_mut(self.h_new, m * h);
        let (cp0, cp1) = split_ref(self.c_prev, m * h);
        let (cn0, cn1) = split_mut(self.c_new, m * h);
        let (g0, g1) = split_mut(self.gates, m * g * h);
        let (e0, e1) = split_mut(self.extra, m * h);
        let (hg0, hg1) = split_mut(self.hg, m * g * h);
        let (y0, y1) = split_mut(self.y, m * self.y_stride);
        let (l0, l1) = self.mask.split(m);
        let y_stride = self.y_stride;
        let part = |h_prev, h_skip, h_new, c_prev, c_new, gates, extra, hg, y, mask| StepForward {
            h_prev,
            h_skip,
            h_new,
            c_prev,
            c_new,
            gates,
            extra,
            hg,
            y,
            y_stride,
            mask,
        };
        (
            part(hp0, hs0, hn0, cp0, cn0, g0, e0, hg0, y0, l0),
            part(hp1, hs1, hn1, cp1, cn1, g1, e1, hg1, y1, l1),
        )
    }

    /// Runs `kernel` on the step's rows: on two threads, half the rows
    /// each, when the step is large enough (a cell of `g` gate blocks).
    pub(crate) fn run_rows(
        &mut self,
        h: usize,
        g: usize,
        kernel: &(dyn Fn(&mut StepForward<'_, T>) + Sync),
    ) {
        let bn = self.h_prev.len() / h.max(1);
        if !splits(bn, h) {
            return kernel(self);
        }
        let (a, b) = self.split_rows(bn / 2, h, g);
        run_halves(a, b, kernel);
    }
}

impl<'a, T: Float> StepBackward<'a, T> {
    /// Rows 0..m and m.. of the step, borrowed, for a cell of `g` gate
    /// blocks (not with a learned leak, whose gradient sums over the rows).
    fn split_rows(
        &mut self,
        m: usize,
        h: usize,
        g: usize,
    ) -> (StepBackward<'_, T>, StepBackward<'_, T>) {
        let (ga0, ga1) = split_ref(self.gates, m * g * h);
        let (e0, e1) = split_ref(self.extra, m * h);
        let (hp0, hp1) = split_ref(self.h_prev, m * h);
        let (cp0, cp1) = split_ref(self.c_prev, m * h);
        let (dh0, dh1) = split_ref(self.dh, m * h);
        let (dy0, dy1) = split_ref(self.dy, m * self.dy_stride);
        let (dc0, dc1) = split_mut(self.dc, m * h);
        let (dg0, dg1) = split_mut(self.d_gates, m * g * h);
        let (dhg0, dhg1) = split_mut(self.d_hgates, m * g * h);
        let (dr0, dr1) = split_mut(self.d_rh, m * h);
        let (dp0, dp1) = split_mut(self.dh_prev, m * h);
        let (ds0, ds1) = self
            .dh_skip
            .as_deref_mut()
            .map(|s| split_mut(s, m * h))
            .unzip();
        let (l0, l1) = self.mask.split(m);
        let dy_stride = self.dy_stride;
        let part = |gates,
                    extra,
                    h_prev,
                    c_prev,
                    dh,
                    dy,
                    dc,
                    d_gates,
                    d_hgates,
                    d_rh,
                    dh_prev,
                    dh_skip,
                    mask| StepBackward {
            gates,
            extra,
            h_prev,
            c_prev,
            dh,
            dy,
            dy_stride,
            dc,
            d_gates,
            d_hgates,
            d_rh,
            dh_prev,
            dh_skip,
            d_logit: None,
            mask,
        };
        (
            part(
                ga0, e0, hp0, cp0, dh0, dy0, dc0, dg0, dhg0, dr0, dp0, ds0, l0,
            ),
            part(
                ga1, e1, hp1, cp1, dh1, dy1, dc1, dg1, dhg1, dr1, dp1, ds1, l1,
            ),
        )
    }

    /// Runs `kernel` on the step's rows: on two threads, half the rows
    /// each, when the step is large enough and no gradient sums over the
    /// rows (a cell of `g` gate blocks).
    pub(crate) fn run_rows(
        &mut self,
        h: usize,
        g: usize,
        kernel: &(dyn Fn(&mut StepBackward<'_, T>) + Sync),
    ) {
        let bn = self.h_prev.len() / h.max(1);
        if !splits(bn, h) || self.d_logit.is_some() {
            return kernel(self);
        }
        let (a, b) = self.split_rows(bn / 2, h, g);
        run_halves(a, b, kernel);
    }
}

impl<T: Float> StepForward<'_, T> {
    /// When row b's sequence has ended: carries its states unchanged,
    /// zeroes its output, and says so.
    #[inline(always)]
    pub(crate) fn carry_finished(&mut self, b: usize, h: usize) -> bool {
        if self.mask.active(b) {
            return false;
        }
        self.h_new[b * h..][..h].copy_from_slice(&self.h_prev[b * h..][..h]);
        if !self.c_prev.is_empty() {
            self.c_new[b * h..][..h].copy_from_slice(&self.c_prev[b * h..][..h]);
        }
        self.y[b * self.y_stride..][..h].fill(T::ZERO);
        true
    }
}

impl<T: Float> StepBackward<'_, T> {
    /// When row b's sequence has ended: passes dL/dh through unchanged
    /// (and dL/dc, by leaving it), gives its `g` gate blocks no gradient,
    /// and says so.
    #[inline(always)]
    pub(crate) fn pass_finished(&mut self, b: usize, h: usize, g: usize) -> bool {
        if self.mask.active(b) {
            return false;
        }
        self.d_gates[b * g * h..][..g * h].fill(T::ZERO);
        if !self.d_hgates.is_empty() {
            self.d_hgates[b * g * h..][..g * h].fill(T::ZERO);
        }
        self.dh_prev[b * h..][..h].copy_from_slice(&self.dh[b * h..][..h]);
        true
    }
}

/// One forward step of `cell` for B rows: the recurrent GEMM(s) and the
/// fused kernel.
pub(crate) fn forward_step<T: Float>(
    cell: CellKind,
    h: usize,
    p: &CellParams<T>,
    io: StepForward<T>,
) {
    match cell {
        CellKind::RnnTanh | CellKind::RnnRelu => rnn::forward(cell == CellKind::RnnRelu, h, p, io),
        CellKind::Lstm => lstm::forward(h, p, io),
        CellKind::Gru => gru::forward(h, p, io),
        CellKind::GruResetBefore => gru::forward_reset_before(h, p, io),
    }
}

/// One backward step of `cell` for B rows: the fused kernel and the GEMM(s)
/// that carry the gradient to the state before the step.
pub(crate) fn backward_step<T: Float>(
    cell: CellKind,
    h: usize,
    p: &CellParams<T>,
    io: StepBackward<T>,
) {
    match cell {
        CellKind::RnnTanh | CellKind::RnnRelu => rnn::backward(cell == CellKind::RnnRelu, h, p, io),
        CellKind::Lstm => lstm::backward(h, p, io),
        CellKind::Gru => gru::backward(h, p, io),
        CellKind::GruResetBefore => gru::backward_reset_before(h, p, io),
    }
}

/// The recurrent cell of a layer. Serialised (in saved configs) under the
/// names of [`CellKind::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    /// Elman RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
    RnnTanh,
    /// Elman RNN with relu in place of tanh.
    RnnRelu,
    /// LSTM with gates i, f, g, o (PyTorch's order).
    Lstm,
    /// GRU with gates r, z, n and the reset gate applied after the recurrent
    /// product: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) (PyTorch, cuDNN).
    Gru,
    /// GRU with the reset gate applied before the recurrent product, as in
    /// Cho et al. 2014: n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn).
    GruResetBefore,
}

impl CellKind {
    /// Number of gate blocks G: weights are `[G·H, ·]`.
    pub fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru | CellKind::GruResetBefore => 3,
        }
    }

    /// Whether the cell carries a memory cell c besides h (LSTM).
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }

    /// The name used on the command line and in saved configs.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::RnnTanh => "rnn-tanh",
            CellKind::RnnRelu => "rnn-relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::GruResetBefore => "gru-reset-before",
        }
    }

    /// Every cell kind.
    pub const ALL: [CellKind; 5] = [
        CellKind::RnnTanh,
        CellKind::RnnRelu,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::GruResetBefore,
    ];

    /// Parses a name given by [`CellKind::name`].
    pub fn from_name(s: &str) -> Option<CellKind> {
        CellKind::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// Which rows of a step are still inside their sequence.
///
/// Row b is active at time t when `t < lengths[b]`; with no lengths every row
/// is active.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepMask<'a> {
    /// Per-row sequence lengths `[B]`, or `None` for all equal to T.
    pub lengths: Option<&'a [usize]>,
    /// The time index of this step.
    pub t: usize,
}

impl<'a> StepMask<'a> {
    /// The masks of rows 0..m and m.. of the step.
    fn split(self, m: usize) -> (StepMask<'a>, StepMask<'a>) {
        let (l0, l1) = self.lengths.map(|l| l.split_at(m)).unzip();
        let t = self.t;
        (StepMask { lengths: l0, t }, StepMask { lengths: l1, t })
    }

    /// Whether row `b` takes part in this step.
    #[inline(always)]
    pub(crate) fn active(&self, b: usize) -> bool {
        match self.lengths {
            None => true,
            Some(l) => self.t < l[b],
        }
    }
}

/// Splits `s` into its first `n` consecutive blocks of `h` elements.
#[inline(always)]
pub(crate) fn blocks<T, const N: usize>(s: &[T], h: usize) -> [&[T]; N] {
    std::array::from_fn(|k| &s[k * h..(k + 1) * h])
}

/// Splits `s` into its first `N` consecutive mutable blocks of `h` elements.
#[inline(always)]
pub(crate) fn blocks_mut<T, const N: usize>(s: &mut [T], h: usize) -> [&mut [T]; N] {
    let mut rest = &mut s[..N * h];
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(h);
        rest = tail;
        head
    })
}
