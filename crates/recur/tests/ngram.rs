//! The n-gram model with interpolated modified Kneser–Ney smoothing:
//! distributions sum to 1, cross-entropy equals a naive reference written
//! straight from Chen & Goodman (1998) §3.5, higher orders help on held-out
//! Shakespeare, generation is repeatable, and saved bytes round-trip exactly
//! while corrupted ones are refused.
//!
//! `scale_*` (ignored; run with `--ignored --nocapture`) measure fitting and
//! evaluation on ~1M words and ~5M characters of tinyshakespeare from
//! `../shared/data`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::data::{tokenize, Level, Vocab};
use recur::model::ngram::{Ngram, NgramConfig};

fn cfg(order: usize, vocab_size: usize) -> NgramConfig {
    NgramConfig { order, vocab_size }
}

// ---------------------------------------------------------------------------
// The reference: every count found by scanning the training stream for each
// query, the discounts from count-of-counts taken with hash maps of whole
// m-grams, and the recursion written as in the paper.
// ---------------------------------------------------------------------------

/// Chen & Goodman's D1, D2, D3+ from n1..n4, with the documented fallback
/// (0.5, 1, 1.5) when one is undefined or outside (0, k].
fn reference_discounts(n: [u64; 4]) -> [f64; 3] {
    let fallback = [0.5, 1.0, 1.5];
    if n[0] == 0 || n[1] == 0 || n[2] == 0 {
        return fallback;
    }
    let (n1, n2, n3, n4) = (n[0] as f64, n[1] as f64, n[2] as f64, n[3] as f64);
    let y = n1 / (n1 + 2.0 * n2);
    let d1 = 1.0 - 2.0 * y * n2 / n1;
    let d2 = 2.0 - 3.0 * y * n3 / n2;
    let d3 = 3.0 - 4.0 * y * n4 / n3;
    if d1 > 0.0 && d1 <= 1.0 && d2 > 0.0 && d2 <= 2.0 && d3 > 0.0 && d3 <= 3.0 {
        [d1, d2, d3]
    } else {
        fallback
    }
}

struct Reference<'a> {
    train: &'a [u32],
    n: usize,
    v: usize,
    /// D1, D2, D3+ of levels 1..=n.
    disc: Vec<[f64; 3]>,
}

impl<'a> Reference<'a> {
    fn new(train: &'a [u32], n: usize, v: usize) -> Reference<'a> {
        let mut disc = Vec::new();
        for m in 1..=n {
            // Every m-gram occurrence: its raw count and the set of tokens
            // just before it (None: the start of the stream).
            let mut grams: HashMap<&[u32], (u64, HashSet<Option<u32>>)> = HashMap::new();
            for p in 0..train.len().saturating_sub(m - 1) {
                let e = grams.entry(&train[p..p + m]).or_default();
                e.0 += 1;
                e.1.insert(if p == 0 { None } else { Some(train[p - 1]) });
            }
            let mut nk = [0u64; 4];
            for (raw, left) in grams.values() {
                let c = if m == n { *raw } else { left.len() as u64 };
                if (1..=4).contains(&c) {
                    nk[c as usize - 1] += 1;
                }
            }
            disc.push(reference_discounts(nk));
        }
        Reference { train, n, v, disc }
    }

    /// c_m(h w) for every w seen after h, m = |h| + 1: the raw count at the
    /// top level, the number of distinct left neighbours (the stream's start
    /// being one) below it.
    fn counts_after(&self, h: &[u32]) -> BTreeMap<u32, u64> {
        let m = h.len() + 1;
        let mut raw: BTreeMap<u32, u64> = BTreeMap::new();
        let mut left: BTreeMap<u32, BTreeSet<Option<u32>>> = BTreeMap::new();
        for p in 0..self.train.len().saturating_sub(m - 1) {
            if &self.train[p..p + m - 1] == h {
                let w = self.train[p + m - 1];
                *raw.entry(w).or_default() += 1;
                left.entry(w).or_default().insert(if p == 0 {
                    None
                } else {
                    Some(self.train[p - 1])
                });
            }
        }
        if m == self.n {
            raw
        } else {
            left.into_iter().map(|(w, s)| (w, s.len() as u64)).collect()
        }
    }

    /// p_m(w | h), m = |h| + 1, by the recursion of §3.5.
    fn p(&self, h: &[u32], w: u32) -> f64 {
        let lower = if h.is_empty() {
            1.0 / self.v as f64
        } else {
            self.p(&h[1..], w)
        };
        let counts = self.counts_after(h);
        let total: u64 = counts.values().sum();
        if total == 0 {
            return lower;
        }
        let d = self.disc[h.len()];
        let disc = |c: u64| match c {
            0 => 0.0,
            1 => d[0],
            2 => d[1],
            _ => d[2],
        };
        let n1 = counts.values().filter(|&&c| c == 1).count() as f64;
        let n2 = counts.values().filter(|&&c| c == 2).count() as f64;
        let n3 = counts.values().filter(|&&c| c >= 3).count() as f64;
        let total = total as f64;
        let gamma = (d[0] * n1 + d[1] * n2 + d[2] * n3) / total;
        let c = counts.get(&w).copied().unwrap_or(0);
        let alpha = (c as f64 - disc(c)).max(0.0) / total;
        alpha + gamma * lower
    }

    /// p(w | the last n − 1 tokens of history).
    fn prob(&self, history: &[u32], w: u32) -> f64 {
        let k = history.len().min(self.n - 1);
        self.p(&history[history.len() - k..], w)
    }

    /// Mean nats over tokens 1.. and the worst |ln p − ln p_ref| per token.
    fn cross_entropy(&self, ids: &[u32], model: &Ngram) -> (f64, f64) {
        let (mut sum, mut worst) = (0.0, 0.0f64);
        for i in 1..ids.len() {
            let h = &ids[i.saturating_sub(self.n - 1)..i];
            let lp = self.prob(h, ids[i]).ln();
            worst = worst.max((lp - model.log_prob(h, ids[i])).abs());
            sum -= lp;
        }
        (sum / (ids.len() - 1) as f64, worst)
    }
}

// ---------------------------------------------------------------------------
// Data.
// ---------------------------------------------------------------------------

fn fixture_text() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ngram/shakespeare.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The excerpt's ids at a level (vocabulary of the whole excerpt, so some
/// held-out tokens never occur in training), split 90/10.
fn excerpt(level: Level) -> (Vec<u32>, Vec<u32>, usize) {
    let toks = tokenize(&fixture_text(), level);
    let vocab = Vocab::build(level, &toks, 1).unwrap();
    let ids = vocab.encode(&toks, "shakespeare.txt").unwrap();
    let cut = ids.len() * 9 / 10;
    (ids[..cut].to_vec(), ids[cut..].to_vec(), vocab.len())
}

/// A skewed random stream over ids 0..used (ids used..V never occur).
fn random_stream(len: usize, used: u32, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            // Squaring a uniform draw favours low ids (a Zipf-like skew).
            let u: f64 = rng.random();
            ((u * u) * used as f64) as u32
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Distributions sum to 1.
// ---------------------------------------------------------------------------

/// Σ_w prob(h, w) = 1 and `distribution` gives the same numbers bit for bit.
fn check_sums(m: &Ngram, history: &[u32], what: &str) {
    let v = m.config().vocab_size;
    let mut dist = vec![0.0; v];
    m.distribution(history, &mut dist);
    let mut sum = 0.0;
    for w in 0..v as u32 {
        let p = m.prob(history, w);
        assert!(
            p > 0.0 && p < 1.0 + 1e-12,
            "{what}: p({w} | {history:?}) = {p}"
        );
        assert_eq!(
            p.to_bits(),
            dist[w as usize].to_bits(),
            "{what}: distribution differs from prob at {w} after {history:?}"
        );
        sum += p;
    }
    assert!(
        (sum - 1.0).abs() < 1e-12,
        "{what}: Σ p = {sum} after {history:?}"
    );
    let dsum: f64 = dist.iter().sum();
    assert!(
        (dsum - 1.0).abs() < 1e-12,
        "{what}: Σ distribution = {dsum}"
    );
    assert_eq!(m.prob(history, v as u32), 0.0, "an id outside V");
}

#[test]
fn probabilities_sum_to_one_for_random_histories() {
    let (v, used) = (30, 20);
    let train = random_stream(3000, used, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for order in 1..=5 {
        let m = Ngram::fit(cfg(order, v), &train).unwrap();
        for case in 0..150 {
            let len = rng.random_range(0..8usize);
            let history: Vec<u32> = if case % 2 == 0 {
                // Seen contexts, so the deep levels are used.
                let at = rng.random_range(0..train.len() - len);
                train[at..at + len].to_vec()
            } else {
                // Any ids, unseen ones (20..30) included.
                (0..len).map(|_| rng.random_range(0..v as u32)).collect()
            };
            check_sums(&m, &history, &format!("order {order}"));
        }
    }
}

#[test]
fn tiny_and_degenerate_streams_still_give_distributions() {
    // Streams too short or too regular for count-of-counts: the discounts
    // fall back, and every distribution still sums to 1.
    for train in [
        vec![3u32],
        vec![1, 2],
        vec![1, 1, 1, 1],
        vec![0, 1, 0, 1, 0, 1, 0, 1],
    ] {
        for order in 1..=5 {
            let m = Ngram::fit(cfg(order, 5), &train).unwrap();
            for h in [&[][..], &[1], &[0, 1], &[1, 1, 1], &[4, 4, 4, 4, 4]] {
                check_sums(&m, h, &format!("order {order} on {train:?}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. The reference.
// ---------------------------------------------------------------------------

#[test]
fn cross_entropy_matches_the_naive_reference_on_shakespeare() {
    let mut worst_all = 0.0f64;
    for level in [Level::Char, Level::Word] {
        let (train, held, v) = excerpt(level);
        for order in 1..=4 {
            let m = Ngram::fit(cfg(order, v), &train).unwrap();
            let r = Reference::new(&train, order, v);
            for (k, (got, want)) in m.discounts().iter().zip(&r.disc).enumerate() {
                assert_eq!(
                    got,
                    want,
                    "{} order {order}: discounts of level {}",
                    level.name(),
                    k + 1
                );
            }
            let (ce, n) = m.cross_entropy(&held).unwrap();
            assert_eq!(n, held.len() - 1);
            let (ce_ref, worst) = r.cross_entropy(&held, &m);
            let diff = (ce - ce_ref).abs();
            println!(
                "{} order {order}: V {v}, train {}, held-out {}, {ce:.6} nats/token (reference {ce_ref:.6}), |Δ mean| {diff:.2e}, worst |Δ ln p| {worst:.2e}, discounts {:?}",
                level.name(),
                train.len(),
                held.len(),
                m.discounts()
            );
            assert!(
                diff <= 1e-9,
                "{} order {order}: {ce} vs reference {ce_ref}",
                level.name()
            );
            assert!(
                worst <= 1e-9,
                "{} order {order}: worst per-token |Δ ln p| {worst}",
                level.name()
            );
            worst_all = worst_all.max(worst).max(diff);
        }
    }
    println!("worst |difference| from the reference: {worst_all:.2e}");
}

#[test]
fn probabilities_match_the_reference_on_random_streams() {
    // Orders up to 5 and histories of every length, unseen ids included,
    // against the reference query by query.
    let (v, used) = (12, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (len, seed) in [(1usize, 3u64), (4, 4), (40, 5), (600, 6)] {
        let train = random_stream(len, used, seed);
        for order in 1..=5 {
            let m = Ngram::fit(cfg(order, v), &train).unwrap();
            let r = Reference::new(&train, order, v);
            for _ in 0..60 {
                let hl = rng.random_range(0..7usize);
                let history: Vec<u32> = if hl < train.len() && rng.random_bool(0.7) {
                    let at = rng.random_range(0..=train.len() - hl);
                    train[at..at + hl].to_vec()
                } else {
                    (0..hl).map(|_| rng.random_range(0..v as u32)).collect()
                };
                for w in 0..v as u32 {
                    let (got, want) = (m.prob(&history, w), r.prob(&history, w));
                    assert!(
                        (got - want).abs() <= 1e-12,
                        "len {len} order {order}: p({w} | {history:?}) = {got}, reference {want}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Orders, and generation.
// ---------------------------------------------------------------------------

#[test]
fn higher_orders_help_on_held_out_shakespeare() {
    let (train, held, v) = excerpt(Level::Char);
    let ce = |order| {
        Ngram::fit(cfg(order, v), &train)
            .unwrap()
            .cross_entropy(&held)
            .unwrap()
            .0
    };
    let (c1, c2, c3, c5) = (ce(1), ce(2), ce(3), ce(5));
    println!("char: order 1 {c1:.4}, 2 {c2:.4}, 3 {c3:.4}, 5 {c5:.4} nats/char");
    assert!(
        c2 < c1 && c3 < c2 && c5 < c2,
        "char orders 1, 2, 3, 5: {c1} {c2} {c3} {c5}"
    );

    let (train, held, v) = excerpt(Level::Word);
    let w1 = Ngram::fit(cfg(1, v), &train)
        .unwrap()
        .cross_entropy(&held)
        .unwrap()
        .0;
    let w2 = Ngram::fit(cfg(2, v), &train)
        .unwrap()
        .cross_entropy(&held)
        .unwrap()
        .0;
    println!("word: order 1 {w1:.4}, 2 {w2:.4} nats/word");
    assert!(w2 < w1, "word orders 1, 2: {w1} {w2}");
}

#[test]
fn generation_is_repeatable_and_in_vocabulary() {
    let (train, _, v) = excerpt(Level::Char);
    let m = Ngram::fit(cfg(4, v), &train).unwrap();
    let prime = &train[..10];
    let run = |seed: u64, t: f64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        m.generate(prime, 300, t, &mut rng)
    };
    for t in [1.0, 0.5, 2.0] {
        let a = run(7, t);
        assert_eq!(a.len(), 300);
        assert_eq!(a, run(7, t), "temperature {t}: same seed, same text");
        assert_ne!(a, run(8, t), "temperature {t}: another seed, other text");
        assert!(a.iter().all(|&i| (i as usize) < v));
    }
    // Greedy ignores the random stream.
    assert_eq!(run(1, 0.0), run(2, 0.0));
    // Empty prime, and a prime longer than the order.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(m
        .generate(&[], 50, 1.0, &mut rng)
        .iter()
        .all(|&i| (i as usize) < v));
    assert!(m.generate(&train[..100], 0, 1.0, &mut rng).is_empty());
    // A unigram model generates too.
    let u = Ngram::fit(cfg(1, v), &train).unwrap();
    assert!(u
        .generate(prime, 50, 1.0, &mut rng)
        .iter()
        .all(|&i| (i as usize) < v));
}

// ---------------------------------------------------------------------------
// 4. Saving and loading.
// ---------------------------------------------------------------------------

#[test]
fn save_load_round_trip_is_bit_identical() {
    let (train, held, v) = excerpt(Level::Word);
    for order in 1..=4 {
        let m = Ngram::fit(cfg(order, v), &train).unwrap();
        let bytes = m.to_bytes();
        let back = Ngram::from_bytes(&bytes).unwrap();
        assert_eq!(back.config(), m.config());
        assert_eq!(back.num_ngrams(), m.num_ngrams());
        assert_eq!(
            back.to_bytes(),
            bytes,
            "order {order}: saving again gives the same bytes"
        );
        let mut d1 = vec![0.0; v];
        let mut d2 = vec![0.0; v];
        for i in 0..held.len() {
            let h = &held[i.saturating_sub(order)..i];
            assert_eq!(
                m.prob(h, held[i]).to_bits(),
                back.prob(h, held[i]).to_bits()
            );
            if i % 50 == 0 {
                m.distribution(h, &mut d1);
                back.distribution(h, &mut d2);
                assert!(d1.iter().zip(&d2).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
        assert_eq!(
            m.cross_entropy(&held).unwrap().0.to_bits(),
            back.cross_entropy(&held).unwrap().0.to_bits()
        );
    }
}

/// Recomputes the trailing checksum (64-bit FNV-1a over LE words, then the
/// length), so a test can forge bytes that pass it.
fn reseal(bytes: &mut Vec<u8>) {
    bytes.truncate(bytes.len() - 8);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ bytes.len() as u64).wrapping_mul(0x100_0000_01b3);
    bytes.extend_from_slice(&h.to_le_bytes());
}

#[test]
fn corrupted_or_hostile_bytes_are_errors() {
    let train = random_stream(200, 8, 9);
    let m = Ngram::fit(cfg(3, 10), &train).unwrap();
    let bytes = m.to_bytes();
    assert!(Ngram::from_bytes(&bytes).is_ok());

    // Every single flipped bit, and every truncation.
    for i in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                Ngram::from_bytes(&b).is_err(),
                "bit {bit} of byte {i} flipped"
            );
        }
    }
    for len in 0..bytes.len() {
        let e = Ngram::from_bytes(&bytes[..len]).unwrap_err().to_string();
        assert!(e.contains("n-gram model"), "{e}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Ngram::from_bytes(&longer).is_err());

    let msg = |b: &[u8]| Ngram::from_bytes(b).unwrap_err().to_string();
    assert!(msg(b"").contains("not a recur n-gram model"));
    assert!(msg(b"{\"safetensors\": 1}").contains("not a recur n-gram model"));
    assert!(msg(&bytes[..bytes.len() - 1]).contains("checksum"));

    // Forged headers with a valid checksum: sizes far beyond the bytes are
    // refused before any allocation.
    let header = |order: u64, vocab: u64, depths: &[u64], e: u64| {
        let mut b = b"RCNGRAM\0".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&order.to_le_bytes());
        b.extend_from_slice(&vocab.to_le_bytes());
        for d in depths {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&e.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        reseal(&mut b);
        b
    };
    for (b, want) in [
        (header(1, 10, &[1], u64::MAX / 4), "header describes"),
        (header(1, 10, &[1], 1 << 40), "header describes"),
        (header(2, 10, &[1, 1 << 31], 5), "header describes"),
        (header(3, 10, &[1, u64::MAX, 2], 0), "contexts"),
        (header(u64::MAX, 10, &[], 0), "order"),
        (header(0, 10, &[], 0), "order"),
        (header(1, 0, &[1], 0), "vocabulary size"),
        (header(1, u64::MAX, &[1], 0), "vocabulary size"),
    ] {
        let e = msg(&b);
        assert!(e.contains(want), "{e}");
    }

    // Structure broken under a valid checksum: a token past V, tokens out of
    // order, a zero count, context counts that do not tile.
    let n_ctx = m.num_contexts();
    let e = m.num_ngrams();
    let arrays = 8 + 4 + 8 + 8 + 8 * 3 + 8;
    let tokens_at = arrays + 12 * n_ctx;
    let counts_at = tokens_at + 4 * e;
    let put = |b: &mut Vec<u8>, at: usize, x: u32| b[at..at + 4].copy_from_slice(&x.to_le_bytes());
    let mut b = bytes.clone();
    put(&mut b, tokens_at, 10);
    reseal(&mut b);
    assert!(msg(&b).contains("sorted"), "{}", msg(&b));
    let mut b = bytes.clone();
    let second = u32::from_le_bytes(bytes[tokens_at + 4..tokens_at + 8].try_into().unwrap());
    put(&mut b, tokens_at, second);
    reseal(&mut b);
    assert!(msg(&b).contains("sorted"), "{}", msg(&b));
    let mut b = bytes.clone();
    put(&mut b, counts_at, 0);
    reseal(&mut b);
    assert!(msg(&b).contains("count 0"), "{}", msg(&b));
    let mut b = bytes.clone();
    // The root's number of longer contexts (first of the extension array).
    put(&mut b, arrays + 4 * n_ctx, 0);
    reseal(&mut b);
    assert!(Ngram::from_bytes(&b).is_err());

    // Random garbage never panics.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
        if rng.random_bool(0.5) {
            reseal(&mut b);
        }
        let _ = Ngram::from_bytes(&b);
    }
}

#[test]
fn bad_configurations_and_ids_are_errors() {
    let e = |r: recur::Result<Ngram>| r.unwrap_err().to_string();
    assert!(e(Ngram::fit(cfg(0, 5), &[1, 2])).contains("order"));
    assert!(e(Ngram::fit(cfg(2, 0), &[])).contains("vocabulary size"));
    assert!(e(Ngram::fit(cfg(2, 5), &[])).contains("empty"));
    let msg = e(Ngram::fit(cfg(2, 5), &[1, 2, 5]));
    assert!(
        msg.contains("ids[2]") && msg.contains("token id 5"),
        "{msg}"
    );
    let m = Ngram::fit(cfg(2, 5), &[1, 2, 3]).unwrap();
    assert!(m
        .cross_entropy(&[1])
        .unwrap_err()
        .to_string()
        .contains("at least 2"));
    assert!(m
        .cross_entropy(&[1, 9])
        .unwrap_err()
        .to_string()
        .contains("ids[1]"));
    assert_eq!(m.log_prob(&[1], 7), f64::NEG_INFINITY);
}

// ---------------------------------------------------------------------------
// Scale (ignored: needs ../shared; prints figures).
// ---------------------------------------------------------------------------

fn shared_text() -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/tinyshakespeare/input.txt");
    std::fs::read_to_string(path).ok()
}

/// A line of /proc/self/status in MiB (Linux; NaN elsewhere).
fn status_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn measure(what: &str, order: usize, v: usize, train: &[u32], held: &[u32]) {
    // Resets the peak resident size (VmHWM) to the current one.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = status_mib("VmRSS:");
    let t = Instant::now();
    let m = Ngram::fit(cfg(order, v), train).unwrap();
    let fit = t.elapsed().as_secs_f64();
    let peak = status_mib("VmHWM:") - rss0;
    let t = Instant::now();
    let (ce, n) = m.cross_entropy(held).unwrap();
    let eval = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let bytes = m.to_bytes();
    let save = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = Ngram::from_bytes(&bytes).unwrap();
    let load = t.elapsed().as_secs_f64();
    assert_eq!(back.num_ngrams(), m.num_ngrams());
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "{what}: order {order}, V {v}, {} train tokens: fit {fit:.2} s (peak +{peak:.0} MiB while fitting), {} n-grams, {} contexts, model {:.1} MiB ({:.1} B/n-gram); held-out {n} predictions {ce:.4} nats/token in {eval:.3} s ({:.2} M tokens/s); {:.1} MiB of bytes, saved in {save:.2} s, loaded in {load:.2} s",
        train.len(),
        m.num_ngrams(),
        m.num_contexts(),
        mib(m.memory_bytes()),
        m.memory_bytes() as f64 / m.num_ngrams() as f64,
        n as f64 / eval / 1e6,
        mib(bytes.len()),
    );
}

/// The ids of the whole of tinyshakespeare at a level, split 90/10.
fn shared_ids(level: Level) -> Option<(Vec<u32>, Vec<u32>, usize)> {
    let Some(text) = shared_text() else {
        eprintln!("../shared/data/tinyshakespeare/input.txt not found: skipped");
        return None;
    };
    let toks = tokenize(&text, level);
    let vocab = Vocab::build(level, &toks, 1).unwrap();
    let ids = vocab.encode(&toks, "input.txt").unwrap();
    let cut = ids.len() * 9 / 10;
    Some((ids[..cut].to_vec(), ids[cut..].to_vec(), vocab.len()))
}

#[test]
#[ignore]
fn scale_words() {
    let Some((train, held, v)) = shared_ids(Level::Word) else {
        return;
    };
    measure("words, Shakespeare 90%", 5, v, &train, &held);
    // The training part repeated to 1M words: realistic counts, few new n-grams.
    let repeated: Vec<u32> = train.iter().copied().cycle().take(1_000_000).collect();
    measure("words, Shakespeare 90% repeated", 5, v, &repeated, &held);
    // 1M words drawn independently from its unigram frequencies: nearly
    // every 3-, 4- and 5-gram distinct, the worst case for storage.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let drawn: Vec<u32> = (0..1_000_000)
        .map(|_| train[rng.random_range(0..train.len())])
        .collect();
    measure("words, i.i.d. draws", 5, v, &drawn, &held);
}

#[test]
#[ignore]
fn scale_chars() {
    let Some((train, held, v)) = shared_ids(Level::Char) else {
        return;
    };
    for order in [5, 8] {
        measure("chars, Shakespeare 90%", order, v, &train, &held);
    }
    let repeated: Vec<u32> = train.iter().copied().cycle().take(5_000_000).collect();
    for order in [5, 8] {
        measure(
            "chars, Shakespeare 90% repeated",
            order,
            v,
            &repeated,
            &held,
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let drawn: Vec<u32> = (0..5_000_000)
        .map(|_| train[rng.random_range(0..train.len())])
        .collect();
    measure("chars, i.i.d. draws", 5, v, &drawn, &held);
}
