//! N-gram language model with interpolated modified Kneser–Ney smoothing
//! (Chen & Goodman 1998, "An Empirical Study of Smoothing Techniques for
//! Language Modeling", §3.5): the count-based baseline a recurrent language
//! model should beat, on the same token ids (character or word level, as
//! [`crate::data::tokenize`] and [`crate::data::Vocab`] make them).
//!
//! # The model
//! For a context h of m − 1 tokens (level m, 1 ≤ m ≤ N):
//!
//! p_m(w | h) = (c_m(hw) − D_m(c_m(hw))) / Σ_v c_m(hv) + γ(h) · p_{m−1}(w | h')
//!
//! where h' is h without its oldest token, p_0 is uniform over the V ids,
//! D_m(0) = 0, D_m(1), D_m(2), D_m(3+) are the level's three discounts, and
//! γ(h) = (D_m(1)·N1(h•) + D_m(2)·N2(h•) + D_m(3+)·N3+(h•)) / Σ_v c_m(hv),
//! with Nk(h•) the number of tokens w with c_m(hw) = k (three or more for
//! N3+). A context never seen at level m (all its counts zero) leaves
//! p_m = p_{m−1}.
//!
//! The counts: c_N is the raw count of the N-gram; below the top level,
//! c_m(g) is the continuation count, the number of distinct tokens seen just
//! before g. The training ids are one continuous stream with no padding
//! symbols, so an m-gram that starts the stream (m < N) has no token before
//! it: that one occurrence counts as a left neighbour of its own, as if a
//! start symbol stood before the stream (as `<s>` does in SRILM and KenLM).
//! This makes the first N − 1 tokens, which the model predicts from the
//! shorter history that exists, training events of the lower levels.
//!
//! The discounts of each level come from its count-of-counts n1 … n4 (the
//! numbers of distinct m-grams whose level-m count is 1 … 4):
//! Y = n1 / (n1 + 2·n2), D1 = 1 − 2Y·n2/n1, D2 = 2 − 3Y·n3/n2,
//! D3+ = 3 − 4Y·n4/n3. On small or artificial data these can be undefined
//! (n1, n2 or n3 zero) or outside (0, k]; the level then uses
//! [`FALLBACK_DISCOUNTS`] (0.5, 1, 1.5), as KenLM's `--discount_fallback`
//! does, so that every token keeps a probability above zero and every
//! distribution sums to 1.
//!
//! # Storage
//! Contexts form a trie read from the most recent token backwards, stored
//! flat: contexts are numbered by length, then by (shorter context, older
//! token), so the longer contexts of one context are a contiguous, sorted
//! run found by binary search, and the next tokens seen after a context (with
//! their counts) are another. A query walks at most N − 1 contexts and
//! searches each level's tokens once: 2N − 1 binary searches, no hashing and
//! no allocation. Memory is 28 bytes per context and 8 per stored n-gram
//! ([`Ngram::memory_bytes`]). Fitting sorts 2N − 1 arrays no longer than
//! the stream (about 0.1–0.3 s per million tokens for N = 5).

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::error::{check_ids, Error, Result};

/// Sizes of an n-gram model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgramConfig {
    /// N ≥ 1: a token is predicted from at most the N − 1 tokens before it.
    pub order: usize,
    /// V: token ids are 0..V. Ids never seen in training keep a probability
    /// from the uniform distribution at the bottom of the interpolation.
    pub vocab_size: usize,
}

/// The `format` metadata of an n-gram model file.
pub const NGRAM_FORMAT: &str = "recur-ngram";

/// The discounts D1, D2, D3+ of a level whose count-of-counts give none that
/// are valid (KenLM's `--discount_fallback` defaults).
pub const FALLBACK_DISCOUNTS: [f64; 3] = [0.5, 1.0, 1.5];

/// What [`Ngram::to_bytes`] writes first.
const MAGIC: &[u8; 8] = b"RCNGRAM\0";
/// The version of the byte layout.
const VERSION: u32 = 1;
/// What errors about saved bytes name.
const SOURCE: &str = "n-gram model bytes";

/// What a query needs of one context: its total count at its level and how
/// many of its next tokens have count 1, 2 and 3 or more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stats {
    total: u32,
    n: [u32; 3],
}

/// A fitted model: the context trie and the counts, flat (see the module docs).
#[derive(Clone, PartialEq)]
pub struct Ngram {
    config: NgramConfig,
    /// `[N + 1]`: contexts of length d are ids `depth_start[d]..depth_start[d + 1]`;
    /// the root (empty context) is id 0.
    depth_start: Vec<u32>,
    /// `[C]` the oldest token of each context (0 for the root).
    ctx_token: Vec<u32>,
    /// `[C + 1]` the contexts one token longer than context c are ids
    /// `ext_start[c]..ext_start[c + 1]`, sorted by their oldest token.
    ext_start: Vec<u32>,
    /// `[C + 1]` the tokens seen after context c are entries
    /// `child_start[c]..child_start[c + 1]`, sorted.
    child_start: Vec<u32>,
    /// `[C]`
    stats: Vec<Stats>,
    /// `[E]` the token of each stored n-gram.
    token: Vec<u32>,
    /// `[E]` its count at its level (raw at the top, continuation below).
    count: Vec<u32>,
    /// `[N]` D1, D2, D3+ of levels 1..=N.
    discounts: Vec<[f64; 3]>,
}

impl std::fmt::Debug for Ngram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ngram")
            .field("config", &self.config)
            .field("contexts", &self.num_contexts())
            .field("ngrams", &self.num_ngrams())
            .field("discounts", &self.discounts)
            .finish()
    }
}

/// Packs (context id, token) into one sort key.
fn key(ctx: u32, token: u32) -> u64 {
    (ctx as u64) << 32 | token as u64
}

/// Sorts keys and counts each distinct one.
fn count_runs(keys: &mut [u64]) -> Vec<(u64, u32)> {
    keys.sort_unstable();
    let mut out: Vec<(u64, u32)> = Vec::new();
    for &k in keys.iter() {
        match out.last_mut() {
            Some((last, c)) if *last == k => *c += 1,
            _ => out.push((k, 1)),
        }
    }
    out
}

/// The modified Kneser–Ney discounts D1, D2, D3+ from the count-of-counts
/// n1 … n4, or [`FALLBACK_DISCOUNTS`] where those are undefined or some
/// discount falls outside (0, k].
fn discounts_from(n: [u64; 4]) -> [f64; 3] {
    if n[0] == 0 || n[1] == 0 || n[2] == 0 {
        return FALLBACK_DISCOUNTS;
    }
    let [n1, n2, n3, n4] = n.map(|x| x as f64);
    let y = n1 / (n1 + 2.0 * n2);
    let d = [
        1.0 - 2.0 * y * n2 / n1,
        2.0 - 3.0 * y * n3 / n2,
        3.0 - 4.0 * y * n4 / n3,
    ];
    if d.iter()
        .enumerate()
        .all(|(k, &x)| x > 0.0 && x <= (k + 1) as f64)
    {
        d
    } else {
        FALLBACK_DISCOUNTS
    }
}

fn check_config(config: &NgramConfig) -> Result<()> {
    if config.order == 0 {
        return Err(Error::Config(
            "n-gram order must be at least 1 (1 is a unigram model)".into(),
        ));
    }
    if config.vocab_size == 0 || config.vocab_size > u32::MAX as usize {
        return Err(Error::Config(format!(
            "n-gram vocabulary size must be between 1 and {} (ids are u32), got {}",
            u32::MAX,
            config.vocab_size
        )));
    }
    Ok(())
}

/// An error about saved bytes.
fn bad(message: impl Into<String>) -> Error {
    Error::input(SOURCE, message)
}

/// 64-bit FNV-1a over little-endian 8-byte words (the last one zero-padded)
/// and the length. Each step is a bijection of the state for a fixed word, so
/// a change to any one word always changes the sum.
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(PRIME);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
    }
    (h ^ bytes.len() as u64).wrapping_mul(PRIME)
}

/// Reads little-endian values from saved bytes, never past their end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if self.bytes.len() - self.pos < n {
            return Err(bad(format!(
                "truncated: {what} at byte {} needs {n} bytes, {} are left",
                self.pos,
                self.bytes.len() - self.pos
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    /// `n` u32 values; the length was checked against the bytes before.
    fn u32s(&mut self, n: usize, what: &str) -> Result<Vec<u32>> {
        let b = self.take(n.checked_mul(4).ok_or_else(|| bad("size overflow"))?, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
}

impl Ngram {
    /// Counts every n-gram of orders 1..=N in `ids`, one continuous stream:
    /// token i is a training event of the highest level its history allows
    /// (min(i, N − 1) tokens before it), with no padding symbols.
    pub fn fit(config: NgramConfig, ids: &[u32]) -> Result<Ngram> {
        check_config(&config)?;
        check_ids("training token ids", "ids", "token", ids, config.vocab_size)?;
        if ids.is_empty() {
            return Err(Error::input(
                "training token ids",
                "the training stream is empty: an n-gram model needs at least one token to count",
            ));
        }
        let len = ids.len();
        if len >= u32::MAX as usize {
            return Err(Error::input(
                "training token ids",
                format!(
                    "{len} tokens: counts are u32, so a stream must have fewer than {}",
                    u32::MAX
                ),
            ));
        }
        let n = config.order;
        let too_many = || {
            Error::input(
                "training token ids",
                format!(
                    "more than {} distinct contexts or n-grams: ids are u32",
                    u32::MAX
                ),
            )
        };

        // Contexts, one length at a time: cur[i] is the id of the longest
        // context of position i numbered so far; sorting (shorter context,
        // older token) numbers the contexts one token longer.
        let mut cur = vec![0u32; len];
        let mut ctx_token = vec![0u32];
        let mut parent = vec![0u32];
        let mut depth_start = vec![0u32, 1];
        let mut pairs: Vec<(u64, u32)> = Vec::new();
        for d in 1..n {
            pairs.clear();
            pairs.extend((d..len).map(|i| (key(cur[i], ids[i - d]), i as u32)));
            pairs.sort_unstable_by_key(|&(k, _)| k);
            let mut last = None;
            for &(k, i) in &pairs {
                if last != Some(k) {
                    if ctx_token.len() >= u32::MAX as usize {
                        return Err(too_many());
                    }
                    ctx_token.push(k as u32);
                    parent.push((k >> 32) as u32);
                    last = Some(k);
                }
                cur[i as usize] = (ctx_token.len() - 1) as u32;
            }
            depth_start.push(ctx_token.len() as u32);
        }
        drop(pairs);

        // The top level's raw counts, from every position with a full history.
        let mut keys: Vec<u64> = (n - 1..len).map(|i| key(cur[i], ids[i])).collect();
        let mut levels: Vec<Vec<(u64, u32)>> = vec![Vec::new(); n];
        levels[n - 1] = count_runs(&mut keys);
        // Each lower level's continuation counts: one per distinct token
        // before, i.e. per stored n-gram one level up (whose context minus its
        // oldest token is the parent), plus the stream's start.
        for m in (1..n).rev() {
            keys.clear();
            keys.extend(
                levels[m]
                    .iter()
                    .map(|&(k, _)| key(parent[(k >> 32) as usize], k as u32)),
            );
            if len >= m {
                keys.push(key(cur[m - 1], ids[m - 1]));
            }
            levels[m - 1] = count_runs(&mut keys);
        }
        drop(keys);
        drop(cur);

        let total: usize = levels.iter().map(Vec::len).sum();
        if total >= u32::MAX as usize {
            return Err(too_many());
        }
        let c = ctx_token.len();
        let mut ext_len = vec![0u32; c];
        for &p in &parent[1..] {
            ext_len[p as usize] += 1;
        }
        drop(parent);
        let mut child_len = vec![0u32; c];
        let mut token = Vec::with_capacity(total);
        let mut count = Vec::with_capacity(total);
        // Level m's contexts have length m − 1, so levels in order are
        // sorted by context id.
        for level in levels {
            for (k, n) in level {
                child_len[(k >> 32) as usize] += 1;
                token.push(k as u32);
                count.push(n);
            }
        }
        Ngram::assemble(
            config,
            depth_start,
            ctx_token,
            &ext_len,
            &child_len,
            token,
            count,
        )
    }

    /// Builds the offsets, per-context statistics and discounts from the
    /// stored counts, checking every invariant a query relies on (the same
    /// path for fitted and loaded models, so both give the same numbers).
    fn assemble(
        config: NgramConfig,
        depth_start: Vec<u32>,
        ctx_token: Vec<u32>,
        ext_len: &[u32],
        child_len: &[u32],
        token: Vec<u32>,
        count: Vec<u32>,
    ) -> Result<Ngram> {
        check_config(&config)?;
        let mut ctx_token = ctx_token;
        ctx_token.shrink_to_fit();
        let (n, v) = (config.order, config.vocab_size);
        let (c, e) = (ctx_token.len(), token.len());
        if depth_start.len() != n + 1
            || depth_start[0] != 0
            || depth_start[1] != 1
            || depth_start[n] as usize != c
            || depth_start.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad(format!(
                "context counts per length {depth_start:?} do not describe {c} contexts with one root"
            )));
        }
        if ext_len.len() != c || child_len.len() != c || count.len() != e {
            return Err(bad("array lengths disagree"));
        }
        if c >= u32::MAX as usize || e >= u32::MAX as usize {
            return Err(bad("more contexts or n-grams than u32 ids can index"));
        }
        if ctx_token[0] != 0 {
            return Err(bad("the root context has a token"));
        }

        // The longer contexts of each length-d context, in order, must tile
        // exactly the contexts of length d + 1.
        let mut ext_start = Vec::with_capacity(c + 1);
        let mut s: u64 = 1;
        for d in 0..n {
            let (lo, hi) = (depth_start[d] as usize, depth_start[d + 1] as usize);
            for p in lo..hi {
                ext_start.push(s as u32);
                s += ext_len[p] as u64;
                if s > c as u64 {
                    return Err(bad(format!(
                        "context {p} has more longer contexts than are stored"
                    )));
                }
                let run = &ctx_token[ext_start[p] as usize..s as usize];
                if run.windows(2).any(|w| w[0] >= w[1]) || run.iter().any(|&t| t as usize >= v) {
                    return Err(bad(format!(
                        "the longer contexts of context {p} are not sorted, distinct ids below {v}"
                    )));
                }
            }
            let want = if d + 1 < n {
                depth_start[d + 2] as u64
            } else {
                c as u64
            };
            if s != want {
                return Err(bad(format!(
                    "the contexts of length {d} extend to {} contexts of length {}, but {} are stored",
                    s - hi as u64,
                    d + 1,
                    want - hi as u64
                )));
            }
        }
        ext_start.push(s as u32);

        let mut child_start = Vec::with_capacity(c + 1);
        let mut stats = Vec::with_capacity(c);
        let mut s: u64 = 0;
        for (p, &l) in child_len.iter().enumerate() {
            child_start.push(s as u32);
            let (lo, hi) = (s as usize, s as usize + l as usize);
            if hi > e {
                return Err(bad(format!("context {p} has more n-grams than are stored")));
            }
            let toks = &token[lo..hi];
            if toks.windows(2).any(|w| w[0] >= w[1]) || toks.iter().any(|&t| t as usize >= v) {
                return Err(bad(format!(
                    "the tokens after context {p} are not sorted, distinct ids below {v}"
                )));
            }
            let mut st = Stats::default();
            let mut total: u64 = 0;
            for &k in &count[lo..hi] {
                if k == 0 {
                    return Err(bad(format!("an n-gram after context {p} has count 0")));
                }
                total += k as u64;
                st.n[(k.min(3) - 1) as usize] += 1;
            }
            st.total = u32::try_from(total)
                .map_err(|_| bad(format!("the counts after context {p} add up past u32")))?;
            stats.push(st);
            s = hi as u64;
        }
        if s != e as u64 {
            return Err(bad(format!(
                "the contexts hold {s} n-grams, but {e} are stored"
            )));
        }
        child_start.push(s as u32);

        let discounts = (1..=n)
            .map(|m| {
                let lo = child_start[depth_start[m - 1] as usize] as usize;
                let hi = child_start[depth_start[m] as usize] as usize;
                let mut k = [0u64; 4];
                for &x in &count[lo..hi] {
                    if (1..=4).contains(&x) {
                        k[x as usize - 1] += 1;
                    }
                }
                discounts_from(k)
            })
            .collect();

        Ok(Ngram {
            config,
            depth_start,
            ctx_token,
            ext_start,
            child_start,
            stats,
            token,
            count,
            discounts,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NgramConfig {
        &self.config
    }

    /// Stored n-grams of all orders (distinct m-grams, m = 1..=N, seen in training).
    pub fn num_ngrams(&self) -> usize {
        self.token.len()
    }

    /// Stored contexts of lengths 0..N − 1 (the root included).
    pub fn num_contexts(&self) -> usize {
        self.ctx_token.len()
    }

    /// D1, D2, D3+ of levels 1..=N (index m − 1), to see where the
    /// count-of-counts fell back to [`FALLBACK_DISCOUNTS`].
    pub fn discounts(&self) -> &[[f64; 3]] {
        &self.discounts
    }

    /// Bytes held by the model's arrays (its heap memory).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.depth_start.capacity()
            + self.ctx_token.capacity()
            + self.ext_start.capacity()
            + self.child_start.capacity()
            + self.token.capacity()
            + self.count.capacity())
            * size_of::<u32>()
            + self.stats.capacity() * size_of::<Stats>()
            + self.discounts.capacity() * size_of::<[f64; 3]>()
    }

    /// The context one older token longer than `ctx`, if it was seen.
    fn extend(&self, ctx: usize, older: u32) -> Option<usize> {
        let lo = self.ext_start[ctx] as usize;
        let hi = self.ext_start[ctx + 1] as usize;
        self.ctx_token[lo..hi]
            .binary_search(&older)
            .ok()
            .map(|i| lo + i)
    }

    /// γ of a context at level m and its total as f64 (None when unseen there).
    fn weights(&self, ctx: usize, m: usize) -> Option<(f64, f64, &[f64; 3])> {
        let s = self.stats[ctx];
        if s.total == 0 {
            return None;
        }
        let d = &self.discounts[m - 1];
        let total = s.total as f64;
        let gamma = (d[0] * s.n[0] as f64 + d[1] * s.n[1] as f64 + d[2] * s.n[2] as f64) / total;
        Some((gamma, total, d))
    }

    /// The discounted relative frequency of a count at a level: (c − D(c)) / total.
    fn alpha(c: u32, total: f64, d: &[f64; 3]) -> f64 {
        (c as f64 - d[(c.min(3) - 1) as usize]) / total
    }

    /// Walks the contexts of `history` (its last N − 1 tokens, most recent
    /// first), calling `f(ctx, level)` for levels 1, 2, … while the context
    /// was seen.
    fn walk(&self, history: &[u32], mut f: impl FnMut(usize, usize)) {
        let k = history.len().min(self.config.order - 1);
        let mut ctx = 0;
        for m in 1..=k + 1 {
            f(ctx, m);
            if m > k {
                break;
            }
            match self.extend(ctx, history[history.len() - m]) {
                Some(c) => ctx = c,
                None => break,
            }
        }
    }

    /// p(token | the last N − 1 tokens of `history`), a shorter history
    /// using the lower orders alone. Ids outside the vocabulary get 0; in the
    /// history they are simply contexts never seen.
    pub fn prob(&self, history: &[u32], token: u32) -> f64 {
        let v = self.config.vocab_size;
        if token as usize >= v {
            return 0.0;
        }
        let mut p = 1.0 / v as f64;
        self.walk(history, |ctx, m| {
            if let Some((gamma, total, d)) = self.weights(ctx, m) {
                let lo = self.child_start[ctx] as usize;
                let hi = self.child_start[ctx + 1] as usize;
                let alpha = match self.token[lo..hi].binary_search(&token) {
                    Ok(i) => Ngram::alpha(self.count[lo + i], total, d),
                    Err(_) => 0.0,
                };
                p = alpha + gamma * p;
            }
        });
        p
    }

    /// ln [`Ngram::prob`] (−∞ for ids outside the vocabulary).
    pub fn log_prob(&self, history: &[u32], token: u32) -> f64 {
        self.prob(history, token).ln()
    }

    /// The whole next-token distribution `[V]` after `history`, the same
    /// numbers [`Ngram::prob`] gives one at a time (bit for bit), in
    /// O(N·V) rather than V queries.
    ///
    /// # Panics
    /// If `out` is not V long.
    pub fn distribution(&self, history: &[u32], out: &mut [f64]) {
        let v = self.config.vocab_size;
        assert_eq!(
            out.len(),
            v,
            "distribution: out has {} values, the vocabulary {v}",
            out.len()
        );
        out.fill(1.0 / v as f64);
        self.walk(history, |ctx, m| {
            if let Some((gamma, total, d)) = self.weights(ctx, m) {
                for x in out.iter_mut() {
                    *x *= gamma;
                }
                let (lo, hi) = (
                    self.child_start[ctx] as usize,
                    self.child_start[ctx + 1] as usize,
                );
                for (&t, &c) in self.token[lo..hi].iter().zip(&self.count[lo..hi]) {
                    out[t as usize] += Ngram::alpha(c, total, d);
                }
            }
        });
    }

    /// Mean cross-entropy in nats per predicted token of `ids`, and the
    /// number of predictions: tokens 1.. each predicted from the tokens
    /// before it (at most N − 1), as recur's neural language model is
    /// evaluated; token 0 has no history and is not predicted.
    pub fn cross_entropy(&self, ids: &[u32]) -> Result<(f64, usize)> {
        check_ids("token ids", "ids", "token", ids, self.config.vocab_size)?;
        if ids.len() < 2 {
            return Err(Error::input(
                "token ids",
                format!(
                    "{} tokens: cross-entropy predicts tokens 1.. from those before, so it needs at least 2",
                    ids.len()
                ),
            ));
        }
        let h = self.config.order - 1;
        let mut sum = 0.0;
        for i in 1..ids.len() {
            sum -= self.log_prob(&ids[i.saturating_sub(h)..i], ids[i]);
        }
        let n = ids.len() - 1;
        Ok((sum / n as f64, n))
    }

    /// `length` new tokens after `prime` (not included in the result), each
    /// drawn from the distribution raised to 1/`temperature` and
    /// renormalised; a temperature that is not > 0 picks the most likely
    /// token (the lowest id on ties) and draws nothing from `rng`. One draw
    /// per token otherwise, so a seed gives the same text.
    pub fn generate(
        &self,
        prime: &[u32],
        length: usize,
        temperature: f64,
        rng: &mut dyn RngCore,
    ) -> Vec<u32> {
        let h = self.config.order - 1;
        let mut history: Vec<u32> = prime[prime.len().saturating_sub(h)..].to_vec();
        let mut dist = vec![0.0; self.config.vocab_size];
        let mut out = Vec::with_capacity(length);
        for _ in 0..length {
            self.distribution(&history, &mut dist);
            let t = pick(&mut dist, temperature, rng);
            out.push(t);
            history.push(t);
            if history.len() > h {
                history.remove(0);
            }
        }
        out
    }

    /// The model as bytes: a header (magic, version, N, V, contexts per
    /// length, n-grams), the trie and counts as little-endian u32 arrays, and
    /// a checksum. Discounts and statistics are recomputed on loading.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (c, e, n) = (self.num_contexts(), self.num_ngrams(), self.config.order);
        let mut b = Vec::with_capacity(36 + 8 * n + 12 * c + 8 * e + 8);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(n as u64).to_le_bytes());
        b.extend_from_slice(&(self.config.vocab_size as u64).to_le_bytes());
        for d in self.depth_start.windows(2) {
            b.extend_from_slice(&((d[1] - d[0]) as u64).to_le_bytes());
        }
        b.extend_from_slice(&(e as u64).to_le_bytes());
        let put = |b: &mut Vec<u8>, xs: &mut dyn Iterator<Item = u32>| {
            for x in xs {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
        put(&mut b, &mut self.ctx_token.iter().copied());
        put(&mut b, &mut self.ext_start.windows(2).map(|w| w[1] - w[0]));
        put(
            &mut b,
            &mut self.child_start.windows(2).map(|w| w[1] - w[0]),
        );
        put(&mut b, &mut self.token.iter().copied());
        put(&mut b, &mut self.count.iter().copied());
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// A model from [`Ngram::to_bytes`]. Bytes that are not such a model
    /// (another format, truncated, corrupted, or describing an impossible
    /// trie) are an error saying what is wrong; sizes are checked against the
    /// length of `bytes` before anything is allocated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Ngram> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not a recur n-gram model (the bytes do not start with its magic)",
            ));
        }
        let mut r = Reader { bytes, pos: 8 };
        let version = r.u32("the version")?;
        if version != VERSION {
            return Err(bad(format!(
                "layout version {version}; this build reads version {VERSION}"
            )));
        }
        if bytes.len() < 8 + 12 {
            return Err(bad("truncated: no checksum"));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        if checksum(body) != u64::from_le_bytes(tail.try_into().unwrap()) {
            return Err(bad(
                "checksum mismatch: the bytes are corrupted or truncated",
            ));
        }
        let r_body = &mut Reader {
            bytes: body,
            pos: r.pos,
        };
        let order = r_body.u64("the order")?;
        let vocab = r_body.u64("the vocabulary size")?;
        // Each length's context count is 8 bytes: an order the bytes cannot
        // hold is refused before its array is made.
        if order == 0 || order > ((body.len() - r_body.pos) / 8) as u64 {
            return Err(bad(format!(
                "order {order} is impossible for {} bytes",
                bytes.len()
            )));
        }
        let config = NgramConfig {
            order: order as usize,
            vocab_size: usize::try_from(vocab).unwrap_or(usize::MAX),
        };
        check_config(&config).map_err(|e| bad(e.to_string()))?;
        let mut depth_start = vec![0u32];
        let mut contexts: u64 = 0;
        for d in 0..config.order {
            contexts += r_body.u64("the context counts")?;
            if contexts >= u32::MAX as u64 {
                return Err(bad(format!(
                    "more than {} contexts (at length {d})",
                    u32::MAX
                )));
            }
            depth_start.push(contexts as u32);
        }
        let e = r_body.u64("the n-gram count")?;
        let want = 12u128 * contexts as u128 + 8u128 * e as u128;
        let have = (body.len() - r_body.pos) as u128;
        if want != have {
            return Err(bad(format!(
                "the header describes {contexts} contexts and {e} n-grams ({want} bytes), but {have} bytes follow it"
            )));
        }
        let (c, e) = (contexts as usize, e as usize);
        let ctx_token = r_body.u32s(c, "context tokens")?;
        let ext_len = r_body.u32s(c, "context extensions")?;
        let child_len = r_body.u32s(c, "n-grams per context")?;
        let token = r_body.u32s(e, "n-gram tokens")?;
        let count = r_body.u32s(e, "n-gram counts")?;
        Ngram::assemble(
            config,
            depth_start,
            ctx_token,
            &ext_len,
            &child_len,
            token,
            count,
        )
    }
}

/// Draws an id from `dist` raised to 1/temperature (overwriting it), or the
/// most likely id when temperature is not > 0.
fn pick(dist: &mut [f64], temperature: f64, rng: &mut dyn RngCore) -> u32 {
    let max = dist.iter().fold(0.0f64, |m, &x| m.max(x));
    if temperature.is_nan() || temperature <= 0.0 {
        return dist.iter().position(|&x| x == max).unwrap_or(0) as u32;
    }
    if temperature != 1.0 {
        let inv = 1.0 / temperature;
        for x in dist.iter_mut() {
            *x = (*x / max).powf(inv);
        }
    }
    let total: f64 = dist.iter().sum();
    let mut r = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &x) in dist.iter().enumerate() {
        if x > 0.0 {
            if r < x {
                return i as u32;
            }
            r -= x;
            last = i;
        }
    }
    // Rounding left r at or past the last weight.
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounts_follow_chen_goodman_and_fall_back() {
        let d = discounts_from([100, 40, 20, 10]);
        let y = 100.0 / 180.0;
        assert_eq!(
            d,
            [
                1.0 - 2.0 * y * 40.0 / 100.0,
                2.0 - 3.0 * y * 20.0 / 40.0,
                3.0 - 4.0 * y * 10.0 / 20.0
            ]
        );
        assert_eq!(discounts_from([0, 3, 2, 1]), FALLBACK_DISCOUNTS);
        assert_eq!(discounts_from([5, 0, 2, 1]), FALLBACK_DISCOUNTS);
        // D2 < 0: many more 3s than 2s.
        assert_eq!(discounts_from([10, 1, 50, 1]), FALLBACK_DISCOUNTS);
    }

    #[test]
    fn counts_of_a_tiny_stream() {
        // a b a b c: bigram raw counts ab:2 ba:1 bc:1; unigram continuation
        // counts a:{start, b}=2, b:{a}=1, c:{b}=1.
        let m = Ngram::fit(
            NgramConfig {
                order: 2,
                vocab_size: 4,
            },
            &[0, 1, 0, 1, 2],
        )
        .unwrap();
        assert_eq!(m.num_ngrams(), 3 + 3);
        assert_eq!(m.num_contexts(), 1 + 2);
        let root = m.stats[0];
        assert_eq!(root.total, 4);
        assert_eq!(root.n, [2, 1, 0]);
        let a = m.extend(0, 0).unwrap();
        assert_eq!(m.stats[a].total, 2);
        assert_eq!(m.stats[a].n, [0, 1, 0]);
    }
}
