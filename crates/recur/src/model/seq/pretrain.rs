//! Pretraining a classifier's embedding and first layer as a language
//! model on its own training texts (Dai & Le 2015's LM-LSTM): a forward
//! model for the forward direction and, for a bidirectional layer, one on
//! the reversed sentences for the reverse direction.

use crate::data::seq::SeqExample;
use crate::data::{Level, LmData, Vocab};
use crate::error::{Error, Result};
use crate::model::lm::{LanguageModel, LmConfig};
use crate::optim::OptimizerKind;
use crate::train::{Budget, Quiet, TrainConfig, Trainer};

use super::{SeqConfig, SeqInput, SeqModel};

/// Trains a one-layer language model with the classifier's cell and sizes
/// on the token ids of `examples` (read backwards with `reverse`),
/// sentences separated by id 0, for `epochs` epochs.
pub fn pretrain_lm(
    examples: &[SeqExample],
    words: &[String],
    config: &SeqConfig,
    epochs: usize,
    seed: u64,
    reverse: bool,
) -> Result<LanguageModel> {
    let SeqInput::Tokens { vocab, embed } = config.input else {
        return Err(Error::Config(
            "language-model pretraining needs token input".into(),
        ));
    };
    let mut ids = Vec::new();
    for e in examples {
        if reverse {
            ids.extend(e.tokens.iter().rev());
        } else {
            ids.extend_from_slice(&e.tokens);
        }
        ids.push(0);
    }
    let lm = LanguageModel::new(
        LmConfig {
            cell: config.cell,
            vocab_size: vocab,
            embed,
            hidden: config.hidden,
            layers: 1,
            dropout: config.dropout,
        },
        seed,
    )?;
    let v = Vocab::from_tokens(Level::Word, words.to_vec())?;
    // Zaremba's small setting (32 rows of 35 steps), fewer rows for a small corpus.
    let seq_len = 35.min(ids.len().saturating_sub(1)).max(1);
    let batch = (ids.len() / (seq_len + 1)).clamp(1, 32);
    let data = LmData::new(&ids, v, batch, seq_len, 0.0, "the training texts")?;
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, 2e-3);
    cfg.clip_norm = 5.0;
    cfg.seed = seed;
    let mut t = Trainer::new(lm, data, cfg)?;
    t.run(Budget::Epochs(epochs), 0, None, &mut Quiet)?;
    Ok(t.model)
}

impl SeqModel<f32> {
    /// Starts the first layer's forward (or, with `reverse`, backward)
    /// direction from a language model's layer, and with the forward one
    /// the embedding from its encoder. The sizes must match.
    pub fn init_from_lm(&mut self, lm: &LanguageModel, reverse: bool) -> Result<()> {
        let sfx = if reverse { "_reverse" } else { "" };
        let mut pairs: Vec<(String, String)> = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .iter()
            .map(|k| (format!("rnn.{k}_l0{sfx}"), format!("rnn.{k}_l0")))
            .collect();
        if !reverse {
            pairs.push(("embedding.weight".into(), "encoder.weight".into()));
        }
        for (to, from) in pairs {
            let src = lm
                .store
                .get(&from)
                .ok_or_else(|| Error::Config(format!("the language model has no {from}")))?;
            let dst = self
                .store
                .get_mut(&to)
                .ok_or_else(|| Error::Config(format!("the classifier has no {to}")))?;
            if dst.len() != src.len() {
                return Err(Error::Config(format!(
                    "{to} has {} values but the language model's {from} has {}",
                    dst.len(),
                    src.len()
                )));
            }
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::seq::{SeqMeta, SeqTask};

    /// Pretraining runs, and the classifier then holds the language
    /// models' weights in its embedding and both first-layer directions.
    #[test]
    fn classifier_starts_from_both_language_models() {
        let examples: Vec<SeqExample> = (0..60)
            .map(|i| {
                let tokens: Vec<u32> = (0..5 + i % 4).map(|t| 2 + ((i + t) % 7) as u32).collect();
                SeqExample {
                    steps: tokens.len(),
                    tokens,
                    label: (i % 2) as u32,
                    ..Default::default()
                }
            })
            .collect();
        let words: Vec<String> = (0..9).map(|i| format!("w{i}")).collect();
        let mut c = SeqConfig::new(
            SeqTask::Classify,
            SeqInput::Tokens { vocab: 9, embed: 4 },
            2,
        );
        c.hidden = 6;
        c.bidirectional = true;
        let mut m = SeqModel::<f32>::new(c.clone(), SeqMeta::default(), 1).unwrap();
        let fwd = pretrain_lm(&examples, &words, &c, 1, 3, false).unwrap();
        let bwd = pretrain_lm(&examples, &words, &c, 1, 4, true).unwrap();
        m.init_from_lm(&fwd, false).unwrap();
        m.init_from_lm(&bwd, true).unwrap();
        assert_eq!(
            m.store.get("embedding.weight"),
            fwd.store.get("encoder.weight")
        );
        for k in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            let l0 = format!("rnn.{k}_l0");
            assert_eq!(m.store.get(&l0), fwd.store.get(&l0));
            assert_eq!(
                m.store.get(&format!("rnn.{k}_l0_reverse")),
                bwd.store.get(&l0)
            );
        }
        assert_ne!(
            fwd.store.get("rnn.weight_hh_l0"),
            bwd.store.get("rnn.weight_hh_l0")
        );
        // A language model of another width does not fit.
        let mut narrow = c.clone();
        narrow.hidden = 5;
        let other = pretrain_lm(&examples, &words, &narrow, 1, 3, false).unwrap();
        assert!(m.init_from_lm(&other, false).is_err());
    }
}
