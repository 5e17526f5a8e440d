//! The shape and options of a recurrent stack.

use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::error::{Error, Result};

/// The leak rate α of an Elman unit: h_t = (1 − α)·h_{t−1} + α·act(pre_t).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leak {
    /// α = 1: a plain Elman unit.
    None,
    /// One fixed α in (0, 1] for every unit.
    Fixed(f64),
    /// α learned per unit as sigmoid(`leak_logit`), starting at the given
    /// value in (0, 1): units free to choose their own time scale.
    Learned(f64),
}

/// Sizes and options of a recurrent stack (PyTorch's `nn.LSTM` arguments,
/// and recur's options for Elman cells).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    /// The cell of every layer.
    pub cell: CellKind,
    /// I: features of the first layer's input.
    pub input: usize,
    /// H: hidden units per direction.
    pub hidden: usize,
    /// L: stacked layers.
    pub layers: usize,
    /// Whether each layer also runs backwards in time (D = 2).
    pub bidirectional: bool,
    /// Dropout probability on the outputs of every layer but the last,
    /// applied only in training.
    pub dropout: f64,
    /// Elman cells: the leak rate of the units.
    pub leak: Leak,
    /// Elman cells: skip distance d ≥ 2 in time, h_{t−d} feeding step t
    /// through `weight_skip` (the state before the sequence where t < d);
    /// 0 for none.
    pub skip: usize,
    /// Whether h_{t−1} feeds step t through `weight_hh` (true but for the
    /// hidden layer of a Jordan net, an Elman cell fed back its output).
    pub hidden_to_hidden: bool,
    /// Whether the layer has `bias_hh` besides `bias_ih` (PyTorch's layout).
    /// An Elman cell adds the two, so one is redundant; with `false` it has
    /// one bias, and Adam does not move it twice as fast.
    pub bias_hh: bool,
    /// Whether every layer after the first adds its input to its output
    /// (a residual connection; both are D·H wide).
    #[serde(default)]
    pub residual: bool,
}

impl RnnConfig {
    /// One unidirectional layer without dropout.
    pub fn new(cell: CellKind, input: usize, hidden: usize) -> RnnConfig {
        RnnConfig {
            cell,
            input,
            hidden,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
            leak: Leak::None,
            skip: 0,
            hidden_to_hidden: true,
            bias_hh: true,
            residual: false,
        }
    }
    /// Sets the number of stacked layers.
    pub fn layers(mut self, n: usize) -> RnnConfig {
        self.layers = n;
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
    /// Sets the leak of Elman units.
    pub fn leak(mut self, leak: Leak) -> RnnConfig {
        self.leak = leak;
        self
    }
    /// Sets the skip distance of Elman units (0: none).
    pub fn skip(mut self, d: usize) -> RnnConfig {
        self.skip = d;
        self
    }
    /// Keeps or drops `weight_hh` (Elman cells).
    pub fn hidden_to_hidden(mut self, yes: bool) -> RnnConfig {
        self.hidden_to_hidden = yes;
        self
    }
    /// Keeps or drops `bias_hh` (Elman cells).
    pub fn bias_hh(mut self, yes: bool) -> RnnConfig {
        self.bias_hh = yes;
        self
    }
    /// Adds residual connections between layers.
    pub fn residual(mut self, yes: bool) -> RnnConfig {
        self.residual = yes;
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
    pub fn layer_input(&self, l: usize) -> usize {
        if l == 0 {
            self.input
        } else {
            self.directions() * self.hidden
        }
    }
    /// The width of the output y: D·H.
    pub fn output(&self) -> usize {
        self.directions() * self.hidden
    }
    /// How many parameters the stack has (`None` when the count overflows):
    /// checked before anything is allocated for a config read from a file.
    /// Takes O(1) time whatever `layers` says: every layer after the first
    /// has the same count.
    pub fn param_count(&self) -> Option<usize> {
        let (h, g) = (self.hidden, self.cell.gates());
        let gh = g.checked_mul(h)?;
        let layer = |input: usize| -> Option<usize> {
            let mut per = gh.checked_mul(input)?.checked_add(gh)?;
            if self.hidden_to_hidden {
                per = per.checked_add(gh.checked_mul(h)?)?;
            }
            if self.bias_hh {
                per = per.checked_add(gh)?;
            }
            if self.skip > 0 {
                per = per.checked_add(h.checked_mul(h)?)?;
            }
            if matches!(self.leak, Leak::Learned(_)) {
                per = per.checked_add(h)?;
            }
            per.checked_mul(self.directions())
        };
        match self.layers {
            0 => Some(0),
            1 => layer(self.input),
            n => layer(self.input)?
                .checked_add(layer(self.directions().checked_mul(h)?)?.checked_mul(n - 1)?),
        }
    }

    /// Whether the units have a leak other than 1.
    pub fn leaky(&self) -> bool {
        self.leak != Leak::None
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.input == 0 || self.hidden == 0 || self.layers == 0 {
            return bad(format!(
                "input size, hidden size and layer count must be at least 1 (got {}, {}, {})",
                self.input, self.hidden, self.layers
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        let elman = matches!(self.cell, CellKind::RnnTanh | CellKind::RnnRelu);
        if !elman && (self.leaky() || self.skip > 0 || !self.hidden_to_hidden || !self.bias_hh) {
            return bad(format!(
                "leaky units, skip connections and dropping weight_hh or bias_hh apply to Elman cells (rnn-tanh, rnn-relu), not {}",
                self.cell.name()
            ));
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
