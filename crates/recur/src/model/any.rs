//! Every language model behind one type, for the commands that take any
//! model file: `recur eval` and `recur generate`.

use std::path::Path;

use rand::RngCore;

use crate::checkpoint::{file_format, load_lm, load_ngram, load_window, MODEL_FORMAT};
use crate::data::Vocab;
use crate::error::{Error, Result};
use crate::model::lm::{LanguageModel, LmWorkspace};
use crate::model::ngram::{Ngram, NGRAM_FORMAT};
use crate::model::window::{WindowLm, WINDOW_FORMAT};
use crate::quant::Precision;
use crate::sample::{generate_with, sample_loop, Decoding};

/// A language model of any kind recur trains.
// Loaded once per file and never moved in a loop: the variants' sizes do
// not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyLm {
    /// The recurrent language model.
    Rnn(LanguageModel),
    /// The fixed-window neural model (Bengio et al. 2003).
    Window(WindowLm<f32>),
    /// The n-gram model with interpolated modified Kneser–Ney smoothing.
    Ngram(Ngram),
}

impl AnyLm {
    /// Loads the language model in `path`, whichever kind its `format`
    /// metadata names, with its vocabulary.
    pub fn load(path: &Path) -> Result<(AnyLm, Vocab)> {
        match file_format(path)?.as_str() {
            WINDOW_FORMAT => load_window(path).map(|(m, v)| (AnyLm::Window(m), v)),
            NGRAM_FORMAT => load_ngram(path).map(|(m, v)| (AnyLm::Ngram(m), v)),
            MODEL_FORMAT => load_lm(path).map(|(m, v)| (AnyLm::Rnn(m), v)),
            other => Err(Error::Input {
                path: path.display().to_string(),
                line: None,
                field: Some("format".into()),
                message: format!(
                    "is a '{other}' file, not a language model ('{MODEL_FORMAT}', '{WINDOW_FORMAT}' or '{NGRAM_FORMAT}')"
                ),
            }),
        }
    }

    /// Runs inference with the weight products in `precision`
    /// ([`LanguageModel::set_precision`]); n-gram models count and the
    /// fixed-window model runs in f32 only.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        match self {
            AnyLm::Rnn(m) => m.set_precision(precision),
            _ if precision == Precision::F32 => Ok(()),
            AnyLm::Window(_) => Err(Error::Config(format!(
                "{precision} inference is for the recurrent language models; the fixed-window model runs in f32"
            ))),
            AnyLm::Ngram(_) => Err(Error::Config(format!(
                "{precision} inference is for the recurrent language models; an n-gram model has counts, not weights"
            ))),
        }
    }

    /// V.
    pub fn vocab_size(&self) -> usize {
        match self {
            AnyLm::Rnn(m) => m.config().vocab_size,
            AnyLm::Window(m) => m.config().vocab_size,
            AnyLm::Ngram(m) => m.config().vocab_size,
        }
    }

    /// Trainable parameters; for the n-gram model, its stored n-grams.
    pub fn num_params(&self) -> usize {
        match self {
            AnyLm::Rnn(m) => m.num_params(),
            AnyLm::Window(m) => m.store.len(),
            AnyLm::Ngram(m) => m.num_ngrams(),
        }
    }

    /// Mean cross-entropy in nats of predicting tokens 1.. of `ids` from
    /// the tokens before them, as one stream, and the number of predictions.
    pub fn cross_entropy(&self, ids: &[u32]) -> Result<(f64, usize)> {
        match self {
            AnyLm::Rnn(m) => {
                let r = m.eval_stream(&mut LmWorkspace::new(), ids, 256)?;
                Ok((r.mean_cross_entropy, r.predictions))
            }
            AnyLm::Window(m) => m.cross_entropy(ids),
            AnyLm::Ngram(m) => m.cross_entropy(ids),
        }
    }

    /// [`crate::sample::generate_with`] for any kind (beam search only for
    /// the recurrent model).
    pub fn generate_with(
        &self,
        prime: &[u32],
        length: usize,
        how: Decoding,
        rng: &mut dyn RngCore,
        emit: &mut dyn FnMut(u32, f64) -> bool,
    ) -> Result<Vec<u32>> {
        let v = self.vocab_size();
        match self {
            AnyLm::Rnn(m) => generate_with(m, prime, length, how, rng, emit),
            AnyLm::Window(m) => m.generate_with(prime, length, how, rng, emit),
            AnyLm::Ngram(m) => {
                let n = m.config().order - 1;
                let mut p = vec![0.0; v];
                sample_loop(v, prime, length, how, rng, emit, &mut |h, out| {
                    m.distribution(&h[h.len().saturating_sub(n)..], &mut p);
                    for (o, &q) in out.iter_mut().zip(&p) {
                        *o = q.ln() as f32;
                    }
                    Ok(())
                })
            }
        }
    }
}
