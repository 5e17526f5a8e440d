//! Typed errors of the library. The CLI turns them into messages.

/// Everything that can go wrong in the library, by kind: configuration
/// ([`Error::Config`], [`Error::Shape`], [`Error::Length`], [`Error::Order`]),
/// invalid input naming the file, line and field ([`Error::Input`],
/// [`Error::TooShort`]), numerical failure ([`Error::Diverged`],
/// [`Error::Numerical`]), and I/O ([`Error::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot be built (zero sizes, dropout outside [0, 1), ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A buffer whose length does not match the shape it must have.
    #[error("{name}: expected {expected} values for shape {shape}, got {got}")]
    Shape {
        /// Which argument.
        name: &'static str,
        /// The shape it must have, in the crate's dimension letters.
        shape: String,
        /// The number of values that shape holds.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// A sequence length outside 1..=T.
    #[error("lengths[{index}] = {len}: every sequence length must be between 1 and the number of steps T = {steps}")]
    Length {
        /// Which batch row.
        index: usize,
        /// Its length.
        len: usize,
        /// T.
        steps: usize,
    },
    /// A method called out of order, such as backward before forward.
    #[error("{0}")]
    Order(String),
    /// A file that cannot be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        message: String,
    },
    /// Input that is not what was expected: a file's contents, or a value
    /// handed to the library. Names the file (or argument), and the line and
    /// field where known.
    #[error("{path}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), field.as_ref().map(|f| format!(": {f}")).unwrap_or_default())]
    Input {
        /// The file, or what the value is (such as "token ids").
        path: String,
        /// The 1-based line, where the input has lines.
        line: Option<usize>,
        /// The field, column or tensor.
        field: Option<String>,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A computation that failed numerically (a solver that did not
    /// converge, a matrix that is not positive definite).
    #[error("{0}")]
    Numerical(String),
    /// Training diverged: the loss or the gradient stopped being finite, or
    /// the loss passed the model's bound of a sane loss.
    #[error("training diverged at step {step}: {}; no update was made from it (a lower learning rate or gradient clipping may help)", diverged_why(*.loss, *.grad_norm, *.bound))]
    Diverged {
        /// The update that would have been made (1-based).
        step: u64,
        /// The loss of the batch.
        loss: f64,
        /// The gradient's global norm (NaN when the loss already was not finite).
        grad_norm: f32,
        /// The model's bound of a sane loss (infinite when it has none).
        bound: f64,
    },
    /// Training was asked to stop (Ctrl-C, SIGTERM): the state at this step
    /// was saved, and a resume continues from it.
    #[error("interrupted at step {step}: the run's state at this step is saved")]
    Interrupted {
        /// Updates made.
        step: u64,
    },
    /// Too little data for one batch.
    #[error("{what} has {have} tokens, but batch {batch} with sequence length {seq_len} needs at least {need} (batch × (seq_len + 1))")]
    TooShort {
        /// Which data, such as "training data in input.txt".
        what: String,
        /// Tokens available.
        have: usize,
        /// Tokens needed.
        need: usize,
        /// B.
        batch: usize,
        /// T.
        seq_len: usize,
    },
}

impl Error {
    /// An [`Error::Input`] about a whole file (no line or field).
    pub fn input(path: impl std::fmt::Display, message: impl Into<String>) -> Error {
        Error::Input {
            path: path.to_string(),
            line: None,
            field: None,
            message: message.into(),
        }
    }
}

/// What made a run count as diverged.
fn diverged_why(loss: f64, grad_norm: f32, bound: f64) -> String {
    if loss.is_finite() && loss > bound {
        format!("loss {loss} is above {bound}, the bound of a sane loss (10 times that of uniform prediction)")
    } else {
        format!("loss {loss}, gradient norm {grad_norm}")
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that every id is below V, naming the first that is not as
/// `field[k]` of `path`: "`kind` id 7 is outside the vocabulary of 5"
/// (`kind` "token" or "target").
pub(crate) fn check_ids(path: &str, field: &str, kind: &str, ids: &[u32], v: usize) -> Result<()> {
    match ids.iter().position(|&i| i as usize >= v) {
        Some(k) => Err(Error::Input {
            path: path.to_string(),
            line: None,
            field: Some(format!("{field}[{k}]")),
            message: format!("{kind} id {} is outside the vocabulary of {v}", ids[k]),
        }),
        None => Ok(()),
    }
}

/// Checks that a buffer holds exactly `expected` values.
pub(crate) fn check_len(
    name: &'static str,
    shape: impl FnOnce() -> String,
    expected: usize,
    got: usize,
) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            name,
            shape: shape(),
            expected,
            got,
        })
    }
}
