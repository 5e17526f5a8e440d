//! Fused pointwise step kernels, one file per cell.
//!
//! A step of a recurrent layer is one recurrent GEMM plus one of these
//! kernels (two of each for the reset-before GRU, whose second GEMM needs the
//! reset gate). Forward kernels take the pre-activations the GEMMs produced,
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

pub mod gru;
pub mod lstm;
pub mod rnn;

pub use gru::{
    gru_backward_step, gru_forward_step, gru_rb_backward_gates, gru_rb_backward_out,
    gru_rb_forward_gates, gru_rb_forward_out,
};
pub use lstm::{lstm_backward_step, lstm_forward_step};
pub use rnn::{rnn_backward_step, rnn_forward_step};

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

    /// Parses a name given by [`CellKind::name`].
    pub fn from_name(s: &str) -> Option<CellKind> {
        [
            CellKind::RnnTanh,
            CellKind::RnnRelu,
            CellKind::Lstm,
            CellKind::Gru,
            CellKind::GruResetBefore,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }
}

/// Which rows of a step are still inside their sequence.
///
/// Row b is active at time t when `t < lengths[b]`; with no lengths every row
/// is active.
#[derive(Clone, Copy, Debug)]
pub struct StepMask<'a> {
    /// Per-row sequence lengths `[B]`, or `None` for all equal to T.
    pub lengths: Option<&'a [usize]>,
    /// The time index of this step.
    pub t: usize,
}

impl StepMask<'_> {
    /// A mask with every row active.
    pub const ALL: StepMask<'static> = StepMask {
        lengths: None,
        t: 0,
    };

    /// Whether row `b` takes part in this step.
    #[inline(always)]
    pub fn active(&self, b: usize) -> bool {
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
