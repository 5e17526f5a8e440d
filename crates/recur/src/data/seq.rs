//! Examples and ragged batches of the sequence models (classify, tag,
//! regress), and their bucketed batching.
//!
//! A batch is time-major and padded: row b holds `lengths[b]` valid steps,
//! the rest are padding (id 0, zero features), which the model masks.
//! Batches are cut from pools of examples of similar length, so little is
//! spent on padding; which examples go together is a pure function of the
//! seed and the epoch, so a resumed run sees the same batches.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::seq::{SeqMeta, Spellings};
use crate::train::{Data, Metadata};

/// One example: its inputs (token ids, or features `[T, C]`) and its target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqExample {
    /// T: valid steps, at least 1.
    pub steps: usize,
    /// `[T]` token ids (text input; empty for series).
    pub tokens: Vec<u32>,
    /// `[T]` each token's spelling, an index into the data's spelling table
    /// (with a character encoder; empty otherwise).
    pub spellings: Vec<u32>,
    /// `[T, C]` features (series input; empty for text).
    pub features: Vec<f32>,
    /// The class (classify).
    pub label: u32,
    /// `[T]` a class per step (tag).
    pub tags: Vec<u32>,
    /// `[O]` values per sequence (regress).
    pub targets: Vec<f32>,
    /// `[T, O]` values per step (regress per step).
    pub step_targets: Vec<f32>,
}

/// A padded batch, time-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqBatch {
    /// T: the longest example's steps.
    pub steps: usize,
    /// `[B]` valid steps of each row.
    pub lengths: Vec<usize>,
    /// `[T, B]` token ids, 0 at padding.
    pub ids: Vec<u32>,
    /// `[T, B, C]` features, 0 at padding.
    pub features: Vec<f32>,
    /// The distinct spellings of the batch's words.
    pub spellings: Spellings,
    /// `[T, B]` each word's index into `spellings` (0 at padding).
    pub word_spelling: Vec<u32>,
    /// `[B]` classes, or `[T, B]` tags (0 at padding).
    pub labels: Vec<u32>,
    /// `[B, O]` or `[T, B, O]` regression targets (0 at padding).
    pub targets: Vec<f32>,
    /// `[B]` which example each row is (its index in the data); rows are
    /// ordered longest first.
    pub rows: Vec<usize>,
    /// spelling id → its index in `spellings`.
    seen: std::collections::HashMap<u32, u32>,
}

impl SeqBatch {
    /// B.
    pub fn batch(&self) -> usize {
        self.lengths.len()
    }

    /// Whether row r of a `[T, B]` layout (step r / B of sequence r % B)
    /// is inside its sequence rather than padding.
    pub fn is_valid(&self, r: usize) -> bool {
        step_is_valid(&self.lengths, r)
    }

    /// Valid steps in all.
    pub fn tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// Fills the batch with `examples[rows[i]]` for each i; spellings come
    /// from `table` (spelling id → characters).
    pub fn fill(
        &mut self,
        examples: &[SeqExample],
        rows: &[usize],
        table: &[Vec<u32>],
    ) -> Result<()> {
        let bn = rows.len();
        if bn == 0 {
            return Err(Error::Config("a batch needs at least one example".into()));
        }
        let tn = rows.iter().map(|&r| examples[r].steps).max().unwrap_or(0);
        let first = &examples[rows[0]];
        let c = first.features.len() / first.steps.max(1);
        let tagging = !first.tags.is_empty();
        let with_spellings = !first.spellings.is_empty();
        let o_seq = first.targets.len();
        let o_step = first.step_targets.len() / first.steps.max(1);
        self.steps = tn;
        // Longest first, as in a packed batch: each step of the recurrent
        // layers then runs only on the rows still inside their sequences.
        self.rows.clear();
        self.rows.extend_from_slice(rows);
        self.rows
            .sort_unstable_by_key(|&r| (std::cmp::Reverse(examples[r].steps), r));
        let rows = &self.rows[..];
        self.lengths.clear();
        self.ids.clear();
        self.ids.resize(tn * bn, 0);
        self.features.clear();
        self.features.resize(tn * bn * c, 0.0);
        self.word_spelling.clear();
        self.word_spelling
            .resize(if with_spellings { tn * bn } else { 0 }, 0);
        self.spellings.clear();
        self.labels.clear();
        self.labels.resize(if tagging { tn * bn } else { bn }, 0);
        self.targets.clear();
        self.targets.resize(bn * o_seq + tn * bn * o_step, 0.0);
        // Distinct spellings, each encoded once per batch.
        self.seen.clear();
        for (b, &r) in rows.iter().enumerate() {
            let e = &examples[r];
            let ok = e.steps > 0
                && e.features.len() == e.steps * c
                && (e.tokens.is_empty() || e.tokens.len() == e.steps)
                && e.tags.len() == if tagging { e.steps } else { 0 }
                && e.spellings.len() == if with_spellings { e.steps } else { 0 }
                && e.targets.len() == o_seq
                && e.step_targets.len() == e.steps * o_step;
            if !ok {
                return Err(Error::Config(format!(
                    "example {r} does not match the batch's first example in shape"
                )));
            }
            self.lengths.push(e.steps);
            if !tagging {
                self.labels[b] = e.label;
            }
            self.targets[b * o_seq..][..o_seq].copy_from_slice(&e.targets);
            for t in 0..e.steps {
                if let Some(&id) = e.tokens.get(t) {
                    self.ids[t * bn + b] = id;
                }
                self.features[(t * bn + b) * c..][..c].copy_from_slice(&e.features[t * c..][..c]);
                if tagging {
                    self.labels[t * bn + b] = e.tags[t];
                }
                self.targets[(t * bn + b) * o_step..][..o_step]
                    .copy_from_slice(&e.step_targets[t * o_step..][..o_step]);
                if with_spellings {
                    let s = e.spellings[t];
                    let chars = table.get(s as usize).ok_or_else(|| {
                        Error::Config(format!("example {r}: spelling {s} is not in the table"))
                    })?;
                    let spellings = &mut self.spellings;
                    let at = *self.seen.entry(s).or_insert_with(|| spellings.push(chars));
                    self.word_spelling[t * bn + b] = at;
                }
            }
        }
        Ok(())
    }
}

/// Whether row r of a `[T, B]` layout with these `[B]` lengths (step r / B
/// of sequence r % B) is inside its sequence rather than padding.
pub fn step_is_valid(lengths: &[usize], r: usize) -> bool {
    let bn = lengths.len();
    r / bn < lengths[r % bn]
}

/// Cuts `examples` into batches of at most `batch` rows in the given order
/// (for evaluation and prediction; sort `order` by length first to waste
/// little on padding).
pub fn batches_of(
    examples: &[SeqExample],
    order: &[usize],
    table: &[Vec<u32>],
    batch: usize,
) -> Result<Vec<SeqBatch>> {
    order
        .chunks(batch.max(1))
        .map(|rows| {
            let mut b = SeqBatch::default();
            b.fill(examples, rows, table)?;
            Ok(b)
        })
        .collect()
}

/// Example indices sorted by length (stable), for evaluation batches.
pub fn by_length(examples: &[SeqExample]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].steps);
    order
}

/// Which examples make each batch of an epoch: shuffled pools of
/// `POOL · B` examples, each sorted by (slightly noisy) length and cut into
/// batches, the batches then shuffled. A pure function of the seed and the
/// epoch, so a resumed run sees the same batches; its buffers are reused,
/// so a new epoch allocates nothing.
#[derive(Clone, Debug)]
pub struct Buckets {
    /// B.
    pub batch: usize,
    /// Orders the epochs.
    pub seed: u64,
    /// `[N]` the examples of `plan_epoch` in batch order.
    order: Vec<usize>,
    /// Each batch's range in `order`, in the epoch's (shuffled) order.
    bounds: Vec<(usize, usize)>,
    plan_epoch: Option<usize>,
}

impl Buckets {
    /// Batches of `batch` examples, ordered by `seed`.
    pub fn new(batch: usize, seed: u64) -> Buckets {
        Buckets {
            batch,
            seed,
            order: Vec::new(),
            bounds: Vec::new(),
            plan_epoch: None,
        }
    }

    /// The examples of batch `step` of `epoch`, of `n` examples whose
    /// lengths `len` gives.
    pub fn rows(
        &mut self,
        epoch: usize,
        step: usize,
        n: usize,
        len: impl Fn(usize) -> usize,
    ) -> Result<&[usize]> {
        if self.plan_epoch != Some(epoch) || self.order.len() != n {
            self.plan(epoch, n, len);
        }
        let &(lo, hi) = self.bounds.get(step).ok_or_else(|| {
            Error::Config(format!(
                "step {step} is past the epoch's {} batches",
                self.bounds.len()
            ))
        })?;
        Ok(&self.order[lo..hi])
    }

    fn plan(&mut self, epoch: usize, n: usize, len: impl Fn(usize) -> usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        self.order.clear();
        self.order.extend(0..n);
        self.order.shuffle(&mut rng);
        // Sorted by length with ±10% noise drawn per example and epoch (as
        // AllenNLP's bucket sampler does), so that even when one pool holds
        // every example the batches are not the same groups every epoch.
        // An unstable sort with the index as tie-break: deterministic, and
        // no scratch allocation.
        let salt = self.seed ^ (epoch as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
        let key = |i: usize| {
            let h = crate::data::batch::fingerprint([salt, i as u64]);
            let noise = (h >> 11) as f64 / (1u64 << 53) as f64 * 0.2 - 0.1;
            len(i) as f64 * (1.0 + noise)
        };
        for pool in self.order.chunks_mut(self.batch * POOL) {
            pool.sort_unstable_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        }
        self.bounds.clear();
        self.bounds.extend(
            (0..n)
                .step_by(self.batch)
                .map(|lo| (lo, (lo + self.batch).min(n))),
        );
        self.bounds.shuffle(&mut rng);
        self.plan_epoch = Some(epoch);
    }
}

/// Batches per pool: a pool of `POOL · B` shuffled examples is sorted by
/// (slightly noisy) length and cut into batches, so batches hold similar
/// lengths while every epoch mixes them differently.
const POOL: usize = 50;

/// The id words are replaced by in word dropout.
pub const UNK_ID: u32 = 1;

/// Training and validation examples of a sequence model, as [`Data`]:
/// bucketed batches in a fresh order every epoch.
pub struct SeqData {
    examples: Vec<SeqExample>,
    table: Vec<Vec<u32>>,
    buckets: Buckets,
    val: Vec<SeqBatch>,
    /// `[V]` the chance that a training token of each id becomes
    /// [`UNK_ID`] (empty: never).
    unk_chance: Vec<f32>,
    last_tokens: usize,
    hash: u64,
}

impl SeqData {
    /// Training `examples` in batches of `batch`, held-out `valid`;
    /// `table` spells the spelling ids of both; `seed` orders the epochs.
    pub fn new(
        examples: Vec<SeqExample>,
        valid: &[SeqExample],
        table: Vec<Vec<u32>>,
        batch: usize,
        seed: u64,
    ) -> Result<SeqData> {
        if examples.is_empty() {
            return Err(Error::Config("no training examples".into()));
        }
        if batch == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        let val = batches_of(valid, &by_length(valid), &table, batch)?;
        let hash = crate::data::batch::fingerprint(examples.iter().flat_map(|e| {
            let head = [e.steps as u64, u64::from(e.label)];
            head.into_iter()
                .chain(e.tokens.iter().map(|&x| u64::from(x)))
                .chain(e.tags.iter().map(|&x| u64::from(x)))
                .chain(e.features.iter().map(|&x| u64::from(x.to_bits())))
                .chain(e.targets.iter().map(|&x| u64::from(x.to_bits())))
                .chain(e.step_targets.iter().map(|&x| u64::from(x.to_bits())))
        }));
        Ok(SeqData {
            examples,
            table,
            buckets: Buckets::new(batch, seed),
            val,
            unk_chance: Vec::new(),
            last_tokens: 0,
            hash,
        })
    }

    /// Word dropout: each training token of id i becomes [`UNK_ID`] with
    /// chance `chance[i]` (drawn afresh for every batch).
    pub fn with_unk_chance(mut self, chance: Vec<f32>) -> SeqData {
        self.unk_chance = chance;
        self
    }

    /// The training examples.
    pub fn examples(&self) -> &[SeqExample] {
        &self.examples
    }

    /// B.
    pub fn batch(&self) -> usize {
        self.buckets.batch
    }
}

impl Data for SeqData {
    type Batch = SeqBatch;

    fn steps_per_epoch(&self) -> Option<usize> {
        Some(self.examples.len().div_ceil(self.buckets.batch))
    }

    fn fill(&mut self, epoch: usize, step: usize, batch: &mut SeqBatch) -> Result<()> {
        let examples = &self.examples;
        let rows = self
            .buckets
            .rows(epoch, step, examples.len(), |i| examples[i].steps)?;
        batch.fill(examples, rows, &self.table)?;
        let seed = self.buckets.seed;
        self.last_tokens = batch.tokens();
        if !self.unk_chance.is_empty() {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ 0x756e_6b00
                    ^ ((epoch as u64) << 32 | step as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
            );
            for (r, id) in batch.ids.iter_mut().enumerate() {
                if step_is_valid(&batch.lengths, r) {
                    let p = self.unk_chance.get(*id as usize).copied().unwrap_or(0.0);
                    if p > 0.0 && rng.random::<f32>() < p {
                        *id = UNK_ID;
                    }
                }
            }
        }
        Ok(())
    }

    fn tokens_per_step(&self) -> usize {
        self.last_tokens
    }

    fn validation(&self) -> &[SeqBatch] {
        &self.val
    }

    fn fingerprint(&self) -> u64 {
        self.hash
    }

    fn metadata(&self) -> Metadata {
        Vec::new()
    }
}

/// Reserved word ids: padding and unknown.
pub const PAD: &str = "<pad>";
/// The unknown word (id [`UNK_ID`]).
pub const UNK_WORD: &str = "<unk>";

/// Turns words, spellings and labels into ids with a model's vocabularies
/// ([`SeqMeta`]), keeping the table of the spellings it has seen.
#[derive(Clone, Debug, Default)]
pub struct SeqEncoder {
    words: std::collections::HashMap<String, u32>,
    chars: std::collections::HashMap<char, u32>,
    labels: std::collections::HashMap<String, u32>,
    spelled: std::collections::HashMap<String, u32>,
    /// Spelling id → character ids.
    pub table: Vec<Vec<u32>>,
    lowercase: bool,
}

/// The longest spelling the character encoder reads: longer words keep
/// their first and last `MAX_SPELLING / 2` characters, where prefixes and
/// suffixes carry what a tagger needs.
pub const MAX_SPELLING: usize = 24;

impl SeqEncoder {
    /// An encoder for the vocabularies of `meta`; with `lowercase`, words
    /// are looked up lowercased (spellings keep their case).
    pub fn new(meta: &SeqMeta, lowercase: bool) -> SeqEncoder {
        let index = |v: &[String]| {
            v.iter()
                .enumerate()
                .map(|(i, w)| (w.clone(), i as u32))
                .collect()
        };
        SeqEncoder {
            words: index(&meta.words),
            chars: meta
                .chars
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let mut it = c.chars();
                    match (it.next(), it.next()) {
                        (Some(ch), None) => Some((ch, i as u32)),
                        _ => None,
                    }
                })
                .collect(),
            labels: index(&meta.labels),
            spelled: Default::default(),
            table: Vec::new(),
            lowercase,
        }
    }

    /// The id of a word ([`UNK_ID`] when unknown).
    pub fn word(&self, w: &str) -> u32 {
        let found = if self.lowercase {
            self.words.get(&w.to_lowercase())
        } else {
            self.words.get(w)
        };
        found.copied().unwrap_or(UNK_ID)
    }

    /// The ids of words.
    pub fn words(&self, ws: &[String]) -> Vec<u32> {
        ws.iter().map(|w| self.word(w)).collect()
    }

    /// The spelling id of a word, added to the table when new.
    pub fn spelling(&mut self, w: &str) -> u32 {
        if let Some(&s) = self.spelled.get(w) {
            return s;
        }
        let cs: Vec<char> = w.chars().collect();
        let keep: Vec<char> = if cs.len() > MAX_SPELLING {
            let h = MAX_SPELLING / 2;
            cs[..h].iter().chain(&cs[cs.len() - h..]).copied().collect()
        } else {
            cs
        };
        let mut ids: Vec<u32> = keep
            .iter()
            .map(|c| self.chars.get(c).copied().unwrap_or(UNK_ID))
            .collect();
        if ids.is_empty() {
            ids.push(UNK_ID);
        }
        let s = self.table.len() as u32;
        self.table.push(ids);
        self.spelled.insert(w.to_string(), s);
        s
    }

    /// The spelling ids of words.
    pub fn spellings(&mut self, ws: &[String]) -> Vec<u32> {
        ws.iter().map(|w| self.spelling(w)).collect()
    }

    /// The id of a label; one the model was not trained on is an error
    /// naming where it was found.
    pub fn label(&self, l: &str, source: &str, line: usize) -> Result<u32> {
        self.labels.get(l).copied().ok_or_else(|| {
            let mut known: Vec<&String> = self.labels.keys().collect();
            known.sort();
            let shown: Vec<&str> = known.iter().take(20).map(|s| s.as_str()).collect();
            Error::Input {
                path: source.to_string(),
                line: Some(line),
                field: Some("label".into()),
                message: format!(
                    "label '{l}' was not seen in training; the model knows {} labels ({}{})",
                    known.len(),
                    shown.join(", "),
                    if known.len() > 20 { ", …" } else { "" }
                ),
            }
        })
    }
}

/// Vocabularies fitted on training data.
impl SeqMeta {
    /// The words seen at least `min_count` times (lowercased with
    /// `lowercase`), most frequent first (ties by first appearance), after
    /// `<pad>` and `<unk>`; returns each id's training count (0 for the
    /// reserved ids), for word dropout.
    pub fn fit_words<'a>(
        &mut self,
        docs: impl IntoIterator<Item = &'a [String]>,
        min_count: usize,
        lowercase: bool,
    ) -> Vec<usize> {
        let mut counts: std::collections::HashMap<String, (usize, usize)> = Default::default();
        for w in docs.into_iter().flatten() {
            let k = if lowercase {
                w.to_lowercase()
            } else {
                w.clone()
            };
            let n = counts.len();
            counts.entry(k).or_insert((0, n)).0 += 1;
        }
        let mut kept: Vec<(String, (usize, usize))> = counts
            .into_iter()
            .filter(|(w, (c, _))| *c >= min_count.max(1) && w != PAD && w != UNK_WORD)
            .collect();
        kept.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        self.words = [PAD.to_string(), UNK_WORD.to_string()]
            .into_iter()
            .chain(kept.iter().map(|(w, _)| w.clone()))
            .collect();
        [0, 0]
            .into_iter()
            .chain(kept.iter().map(|(_, (c, _))| *c))
            .collect()
    }

    /// The characters of the words, in order of first appearance, after
    /// padding and unknown.
    pub fn fit_chars<'a>(&mut self, docs: impl IntoIterator<Item = &'a [String]>) {
        let mut seen = std::collections::HashSet::new();
        self.chars = vec![PAD.to_string(), UNK_WORD.to_string()];
        for w in docs.into_iter().flatten() {
            for c in w.chars() {
                if seen.insert(c) {
                    self.chars.push(c.to_string());
                }
            }
        }
    }

    /// The labels, sorted.
    pub fn fit_labels<'a>(&mut self, labels: impl IntoIterator<Item = &'a str>) {
        let set: std::collections::BTreeSet<&str> = labels.into_iter().collect();
        self.labels = set.into_iter().map(str::to_string).collect();
    }

    /// Per-column means and standard deviations of rows of `c` values
    /// (a standard deviation of 0 becomes 1, so constant columns pass).
    pub fn column_stats<'a>(
        rows: impl IntoIterator<Item = &'a [f32]>,
        c: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (mut sum, mut sq, mut n) = (vec![0.0f64; c], vec![0.0f64; c], 0usize);
        for r in rows {
            for (j, v) in r.chunks_exact(c).flatten().enumerate() {
                let j = j % c;
                sum[j] += *v as f64;
                sq[j] += (*v as f64) * (*v as f64);
            }
            n += r.len() / c.max(1);
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let v = (q / n - m * m).max(0.0).sqrt();
                if v > 1e-12 {
                    v
                } else {
                    1.0
                }
            })
            .collect();
        (mean, std)
    }
}
