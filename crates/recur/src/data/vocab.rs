//! Tokens and vocabularies, at character or word level.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};

/// The end-of-line token appended after every non-empty line at word level.
pub const EOS: &str = "<eos>";
/// The token that stands for rare or unseen words.
pub const UNK: &str = "<unk>";

/// What one token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// One Unicode scalar value.
    Char,
    /// One whitespace-separated word; `<eos>` ends every non-empty line.
    Word,
}

impl Level {
    /// "char" or "word".
    pub fn name(self) -> &'static str {
        match self {
            Level::Char => "char",
            Level::Word => "word",
        }
    }
    /// Parses "char" or "word".
    pub fn from_name(s: &str) -> Option<Level> {
        match s {
            "char" => Some(Level::Char),
            "word" => Some(Level::Word),
            _ => None,
        }
    }
}

/// Reads a text file as UTF-8; invalid UTF-8 is an error naming the byte offset.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        Error::Input {
            line: None,
            field: None,
            path: path.display().to_string(),
            message: format!("invalid UTF-8 at byte offset {offset}: expected a UTF-8 text file"),
        }
    })
}

/// Splits text into tokens: Unicode scalar values at char level; at word
/// level, each line's whitespace-separated words followed by `<eos>` (empty
/// lines give nothing), as PyTorch's word_language_model does.
pub fn tokenize(text: &str, level: Level) -> Vec<String> {
    match level {
        Level::Char => text.chars().map(String::from).collect(),
        Level::Word => {
            let mut out = Vec::new();
            for line in text.split('\n') {
                let before = out.len();
                out.extend(line.split_whitespace().map(String::from));
                if out.len() > before {
                    out.push(EOS.to_string());
                }
            }
            out
        }
    }
}

/// The tokens of a model, in index order.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    /// Char or word.
    pub level: Level,
    /// Token i has index i.
    pub tokens: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// A vocabulary of the given tokens in the given order.
    pub fn from_tokens(level: Level, tokens: Vec<String>) -> Result<Vocab> {
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if index.insert(t.clone(), i as u32).is_some() {
                return Err(Error::Input {
                    path: "vocabulary".into(),
                    line: None,
                    field: Some(format!("tokens[{i}]")),
                    message: format!("token {t:?} appears twice"),
                });
            }
        }
        if tokens.is_empty() {
            return Err(Error::input("vocabulary", "it is empty"));
        }
        Ok(Vocab {
            level,
            tokens,
            index,
        })
    }

    /// Builds a vocabulary from training tokens, sorted by code point (as
    /// Python's `sorted(set(tokens))`). Tokens seen fewer than `min_count`
    /// times become `<unk>`, which is then part of the vocabulary.
    pub fn build(level: Level, tokens: &[String], min_count: usize) -> Result<Vocab> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for t in tokens {
            match counts.get_mut(t.as_str()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(t.clone(), 1);
                }
            }
        }
        Vocab::from_counts(level, counts, min_count)
    }

    /// [`Vocab::build`] from counts already taken (the streaming tokeniser's).
    pub fn from_counts(
        level: Level,
        counts: BTreeMap<String, usize>,
        min_count: usize,
    ) -> Result<Vocab> {
        let mut kept: Vec<String> = Vec::new();
        let mut dropped = false;
        for (t, c) in counts {
            if c >= min_count.max(1) {
                kept.push(t);
            } else {
                dropped = true;
            }
        }
        if dropped && !kept.iter().any(|t| t == UNK) {
            kept.push(UNK.to_string());
            kept.sort();
        }
        Vocab::from_tokens(level, kept)
    }

    /// V.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    /// Whether there are no tokens (never, for a built vocabulary).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// The index of a token.
    pub fn get(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }
    /// The index of `<unk>`, if the vocabulary has it.
    pub fn unk(&self) -> Option<u32> {
        self.get(UNK)
    }

    /// Maps tokens to indices. A token outside the vocabulary maps to `<unk>`
    /// when there is one, and is otherwise an error naming it and its position.
    pub fn encode(&self, tokens: &[String], source: &str) -> Result<Vec<u32>> {
        let unk = self.unk();
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.get(t).or(unk).ok_or_else(|| Error::Input { line: None, field: None,
                    path: source.to_string(),
                    message: format!(
                        "{} {t:?} at token {i} is not in the model's vocabulary (which has no {UNK})",
                        if self.level == Level::Char { "character" } else { "word" }
                    ),
                })
            })
            .collect()
    }

    /// Joins tokens back into text (words separated by spaces, `<eos>` as a newline).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut s = String::new();
        for &i in ids {
            let t = &self.tokens[i as usize];
            match self.level {
                Level::Char => s.push_str(t),
                Level::Word if t == EOS => s.push('\n'),
                Level::Word => {
                    if !s.is_empty() && !s.ends_with('\n') {
                        s.push(' ');
                    }
                    s.push_str(t);
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_appends_eos_to_non_empty_lines() {
        let t = tokenize("a b\n\n  c \n", Level::Word);
        assert_eq!(t, ["a", "b", EOS, "c", EOS]);
    }

    #[test]
    fn chars_are_scalar_values() {
        assert_eq!(tokenize("hé!", Level::Char), ["h", "é", "!"]);
    }

    #[test]
    fn rare_words_become_unk_and_vocab_is_sorted() {
        let toks: Vec<String> = "b a b c b a".split(' ').map(String::from).collect();
        let v = Vocab::build(Level::Word, &toks, 2).unwrap();
        assert_eq!(v.tokens, ["<unk>", "a", "b"]);
        assert_eq!(v.encode(&toks, "x").unwrap(), [2, 1, 2, 0, 2, 1]);
    }

    #[test]
    fn unknown_symbol_without_unk_is_an_error_naming_it() {
        let v = Vocab::from_tokens(Level::Char, vec!["a".into()]).unwrap();
        let e = v
            .encode(&["a".into(), "z".into()], "f.txt")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"z\"") && e.contains("token 1") && e.contains("f.txt"),
            "{e}"
        );
    }
}
