//! Sentence pairs for sequence-to-sequence models: reading them, turning
//! text into tokens and back, vocabularies with the reserved ids, and
//! bucketed batches.
//!
//! Tokens are characters (`Level::Char`), or words with punctuation split
//! off (`Level::Word`). A word-level token that was written against the
//! token before it carries the joiner `￭` in front (OpenNMT's
//! `joiner_annotate`), so detokenisation restores the text exactly:
//! `"Hello, world!"` → `Hello ￭, world ￭!`.

use std::collections::HashMap;

use crate::data::read::at;
use crate::data::seq::Buckets;
use crate::data::Level;
use crate::error::{Error, Result};
use crate::train::{Data, Metadata};

/// Padding (id 0).
pub const PAD_ID: u32 = 0;
/// Start of a target sequence (id 1).
pub const SOS_ID: u32 = 1;
/// End of a target sequence (id 2).
pub const EOS_ID: u32 = 2;
/// The unknown token (id 3).
pub const UNK_ID: u32 = 3;
/// The reserved tokens, in id order.
pub const RESERVED: [&str; 4] = ["<pad>", "<sos>", "<eos>", "<unk>"];
/// Marks a word-level token written against the token before it.
pub const JOINER: char = '￭';

/// Splits a line into tokens (see the module docs).
pub fn split_tokens(text: &str, level: Level) -> Vec<String> {
    match level {
        Level::Char => text.chars().map(String::from).collect(),
        Level::Word => {
            let mut out = Vec::new();
            for word in text.split_whitespace() {
                let mut cur = String::new();
                let mut joined = false;
                let flush = |cur: &mut String, joined: &mut bool, out: &mut Vec<String>| {
                    if !cur.is_empty() {
                        let t = std::mem::take(cur);
                        out.push(if *joined { format!("{JOINER}{t}") } else { t });
                        *joined = true;
                    }
                };
                let chars: Vec<char> = word.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    // An apostrophe or hyphen inside a word stays in it
                    // (l'homme, peut-être), as sacreBLEU's 13a keeps them.
                    let inner = (c == '\'' || c == '’' || c == '-')
                        && i > 0
                        && i + 1 < chars.len()
                        && chars[i - 1].is_alphanumeric()
                        && chars[i + 1].is_alphanumeric();
                    if c.is_alphanumeric() || inner {
                        cur.push(c);
                    } else {
                        // Any other character is a token of its own (the
                        // joiner too, so no text becomes no tokens).
                        flush(&mut cur, &mut joined, &mut out);
                        cur.push(c);
                        flush(&mut cur, &mut joined, &mut out);
                    }
                }
                flush(&mut cur, &mut joined, &mut out);
            }
            out
        }
    }
}

/// Joins tokens back into text: the inverse of [`split_tokens`] on what it
/// produced.
pub fn join_tokens<S: AsRef<str>>(tokens: &[S], level: Level) -> String {
    match level {
        Level::Char => tokens.iter().map(|t| t.as_ref()).collect(),
        Level::Word => {
            let mut s = String::new();
            for t in tokens {
                let t = t.as_ref();
                match t.strip_prefix(JOINER) {
                    Some(rest) => s.push_str(rest),
                    None => {
                        if !s.is_empty() {
                            s.push(' ');
                        }
                        s.push_str(t);
                    }
                }
            }
            s
        }
    }
}

/// A vocabulary of one side: the reserved tokens, then the rest by
/// falling frequency (ties in text order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairVocab {
    /// Token of each id.
    pub tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl PairVocab {
    /// From tokens in id order (the first four must be [`RESERVED`]).
    pub fn from_tokens(tokens: Vec<String>) -> Result<PairVocab> {
        if tokens.len() < RESERVED.len() || tokens[..4] != RESERVED {
            return Err(Error::Config(format!(
                "a pair vocabulary starts with {RESERVED:?}"
            )));
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if ids.insert(t.clone(), i as u32).is_some() {
                return Err(Error::Config(format!(
                    "token {t:?} is in the vocabulary twice"
                )));
            }
        }
        Ok(PairVocab { tokens, ids })
    }

    /// The tokens seen at least `min_count` times, at most `max` of them
    /// (0: no limit), most frequent first.
    pub fn fit<'a>(
        docs: impl IntoIterator<Item = &'a [String]>,
        min_count: usize,
        max: usize,
    ) -> PairVocab {
        let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
        for doc in docs {
            for t in doc {
                let n = counts.len();
                counts.entry(t.as_str()).or_insert((0, n)).0 += 1;
            }
        }
        let mut kept: Vec<(&str, (usize, usize))> = counts
            .into_iter()
            .filter(|(t, (c, _))| *c >= min_count.max(1) && !RESERVED.contains(t))
            .collect();
        kept.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        if max > 0 {
            kept.truncate(max);
        }
        let tokens = RESERVED
            .iter()
            .map(|s| s.to_string())
            .chain(kept.into_iter().map(|(t, _)| t.to_string()))
            .collect();
        PairVocab::from_tokens(tokens).expect("reserved tokens first, all distinct")
    }

    /// V.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never: the reserved tokens are always there.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token; [`UNK_ID`] when unknown.
    pub fn id(&self, t: &str) -> u32 {
        self.ids.get(t).copied().unwrap_or(UNK_ID)
    }

    /// Ids of tokens.
    pub fn ids(&self, tokens: &[String]) -> Vec<u32> {
        tokens.iter().map(|t| self.id(t)).collect()
    }

    /// The token of an id (`<unk>` past the end).
    pub fn token(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map_or(RESERVED[UNK_ID as usize], |s| s.as_str())
    }
}

/// Reads `source<TAB>target` lines; columns past the second are ignored
/// (Tatoeba's `fra.txt` has a licence column). Blank lines are skipped.
/// `name` names the file in errors.
pub fn parse_pairs(text: &str, name: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| at(name, i + 1, None, what);
        let mut cols = line.split('\t');
        let (src, tgt) = match (cols.next(), cols.next()) {
            (Some(s), Some(t)) => (s.trim(), t.trim()),
            _ => return Err(bad("expected `source<TAB>target`, found no tab")),
        };
        if src.is_empty() {
            return Err(bad("the source (first column) is empty"));
        }
        if tgt.is_empty() {
            return Err(bad("the target (second column) is empty"));
        }
        out.push((src.to_string(), tgt.to_string()));
    }
    if out.is_empty() {
        return Err(Error::Input {
            path: name.into(),
            line: None,
            field: None,
            message: "no sentence pairs".into(),
        });
    }
    Ok(out)
}

/// Pairs from two parallel files, line by line (`names` for errors).
pub fn parse_parallel(src: &str, tgt: &str, names: (&str, &str)) -> Result<Vec<(String, String)>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (src.lines().collect(), tgt.lines().collect());
    if a.len() != b.len() {
        return Err(Error::Input {
            path: names.1.into(),
            line: None,
            field: None,
            message: format!(
                "has {} lines but {} has {}: parallel files need one line per pair",
                b.len(),
                names.0,
                a.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(a.len());
    for (i, (s, t)) in a.iter().zip(&b).enumerate() {
        let (s, t) = (s.trim(), t.trim());
        for (side, name) in [(s, names.0), (t, names.1)] {
            if side.is_empty() {
                return Err(at(name, i + 1, None, "the sentence is empty"));
            }
        }
        out.push((s.to_string(), t.to_string()));
    }
    if out.is_empty() {
        return Err(at(names.0, 1, None, "no sentence pairs"));
    }
    Ok(out)
}

/// One pair as ids: the source, and the target without `<sos>`/`<eos>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairExample {
    /// `[S]`
    pub src: Vec<u32>,
    /// `[U − 1]`
    pub tgt: Vec<u32>,
    /// `[C]` the condition's features (empty without one).
    pub cond: Vec<f32>,
}

/// A padded batch of pairs, time-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairBatch {
    /// S: the longest source.
    pub src_steps: usize,
    /// `[B]`
    pub src_lengths: Vec<usize>,
    /// `[S, B]` source ids, 0 at padding.
    pub src: Vec<u32>,
    /// U: the longest target plus one.
    pub tgt_steps: usize,
    /// `[B]` each target's length plus one (its `<eos>` step).
    pub tgt_lengths: Vec<usize>,
    /// `[U, B]` `<sos>` then the target (0 past the end).
    pub tgt_in: Vec<u32>,
    /// `[U, B]` the target then `<eos>` (0 past the end).
    pub tgt_out: Vec<u32>,
    /// `[B]` which example each row is.
    pub rows: Vec<usize>,
    /// `[B, C]` the conditions (empty without).
    pub cond: Vec<f32>,
}

impl PairBatch {
    /// B.
    pub fn batch(&self) -> usize {
        self.src_lengths.len()
    }

    /// Lays out `examples[rows]`, reusing the buffers.
    pub fn fill(&mut self, examples: &[PairExample], rows: &[usize]) -> Result<()> {
        let bn = rows.len();
        let get = |i: usize| {
            examples
                .get(i)
                .ok_or_else(|| Error::Config(format!("no example {i}")))
        };
        self.src_lengths.clear();
        self.tgt_lengths.clear();
        self.rows.clear();
        self.cond.clear();
        let width = rows
            .first()
            .map_or(0, |&i| examples.get(i).map_or(0, |e| e.cond.len()));
        for &i in rows {
            let e = get(i)?;
            if e.cond.len() != width {
                return Err(Error::Config(format!(
                    "example {i} has {} condition features, the batch {width}",
                    e.cond.len()
                )));
            }
            self.cond.extend_from_slice(&e.cond);
            self.src_lengths.push(e.src.len());
            self.tgt_lengths.push(e.tgt.len() + 1);
            self.rows.push(i);
        }
        self.src_steps = self.src_lengths.iter().copied().max().unwrap_or(0);
        self.tgt_steps = self.tgt_lengths.iter().copied().max().unwrap_or(0);
        let (sn, un) = (self.src_steps, self.tgt_steps);
        self.src.clear();
        self.src.resize(sn * bn, PAD_ID);
        self.tgt_in.clear();
        self.tgt_in.resize(un * bn, PAD_ID);
        self.tgt_out.clear();
        self.tgt_out.resize(un * bn, PAD_ID);
        for (b, &i) in rows.iter().enumerate() {
            let e = &examples[i];
            for (s, &id) in e.src.iter().enumerate() {
                self.src[s * bn + b] = id;
            }
            self.tgt_in[b] = SOS_ID;
            for (u, &id) in e.tgt.iter().enumerate() {
                self.tgt_in[(u + 1) * bn + b] = id;
                self.tgt_out[u * bn + b] = id;
            }
            self.tgt_out[e.tgt.len() * bn + b] = EOS_ID;
        }
        Ok(())
    }

    /// Target tokens predicted (the loss's valid steps).
    pub fn tokens(&self) -> usize {
        self.tgt_lengths.iter().sum()
    }
}

/// Cuts `examples` into batches of at most `batch` in `order`.
pub fn pair_batches(
    examples: &[PairExample],
    order: &[usize],
    batch: usize,
) -> Result<Vec<PairBatch>> {
    order
        .chunks(batch.max(1))
        .map(|rows| {
            let mut b = PairBatch::default();
            b.fill(examples, rows)?;
            Ok(b)
        })
        .collect()
}

/// The length a pair is bucketed by.
fn pair_length(e: &PairExample) -> usize {
    e.src.len().max(e.tgt.len() + 1)
}

/// Example indices by length (stable), for evaluation batches.
pub fn pairs_by_length(examples: &[PairExample]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| pair_length(&examples[i]));
    order
}

/// Training and validation pairs as [`Data`]: bucketed batches in a fresh
/// order every epoch.
pub struct PairData {
    examples: Vec<PairExample>,
    buckets: Buckets,
    val: Vec<PairBatch>,
    last_tokens: usize,
    hash: u64,
}

impl PairData {
    /// Training `examples` in batches of `batch`, held-out `valid`, ordered by `seed`.
    pub fn new(
        examples: Vec<PairExample>,
        valid: &[PairExample],
        batch: usize,
        seed: u64,
    ) -> Result<PairData> {
        if examples.is_empty() {
            return Err(Error::Config("no training pairs".into()));
        }
        if batch == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        let val = pair_batches(valid, &pairs_by_length(valid), batch)?;
        let hash = crate::data::batch::fingerprint(examples.iter().flat_map(|e| {
            [e.src.len() as u64, e.tgt.len() as u64]
                .into_iter()
                .chain(e.src.iter().chain(&e.tgt).map(|&x| u64::from(x)))
                .chain(e.cond.iter().map(|x| u64::from(x.to_bits())))
        }));
        Ok(PairData {
            examples,
            buckets: Buckets::new(batch, seed),
            val,
            last_tokens: 0,
            hash,
        })
    }

    /// The training pairs.
    pub fn examples(&self) -> &[PairExample] {
        &self.examples
    }
}

impl Data for PairData {
    type Batch = PairBatch;

    fn steps_per_epoch(&self) -> Option<usize> {
        Some(self.examples.len().div_ceil(self.buckets.batch))
    }

    fn fill(&mut self, epoch: usize, step: usize, batch: &mut PairBatch) -> Result<()> {
        let examples = &self.examples;
        let rows = self
            .buckets
            .rows(epoch, step, examples.len(), |i| pair_length(&examples[i]))?;
        batch.fill(examples, rows)?;
        self.last_tokens = batch.tokens();
        Ok(())
    }

    fn tokens_per_step(&self) -> usize {
        self.last_tokens
    }

    fn validation(&self) -> &[PairBatch] {
        &self.val
    }

    fn fingerprint(&self) -> u64 {
        self.hash
    }

    fn metadata(&self) -> Metadata {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_tokens_round_trip() {
        for s in [
            "Hello, world!",
            "Je suis l'homme, n'est-ce pas ?",
            "« Va ! »",
            "3.5 + 4 = 7.5",
            "a  b",
        ] {
            let t = split_tokens(s, Level::Word);
            let back = join_tokens(&t, Level::Word);
            assert_eq!(
                back,
                s.split_whitespace().collect::<Vec<_>>().join(" "),
                "{t:?}"
            );
        }
        assert_eq!(
            split_tokens("Hi, you.", Level::Word),
            ["Hi", "￭,", "you", "￭."]
        );
    }

    #[test]
    fn pairs_name_the_line() {
        let e = parse_pairs("a\tb\nno tab here\n", "p.tsv").unwrap_err();
        assert!(e.to_string().contains("p.tsv:2"), "{e}");
        let e = parse_pairs("a\t \n", "p.tsv").unwrap_err();
        assert!(e.to_string().contains("target"), "{e}");
        let p = parse_pairs("Go.\tVa !\tCC-BY 2.0\n", "f").unwrap();
        assert_eq!(p, [("Go.".to_string(), "Va !".to_string())]);
    }
}
