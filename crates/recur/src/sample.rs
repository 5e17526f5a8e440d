//! Text generation from a language model: greedy, temperature with top-k and
//! top-p (nucleus) filtering, and beam search. The prime text is run once;
//! after that each new token costs one step of the model at batch 1 (W for
//! beam search), with the state carried.

use rand::{Rng, RngCore};

use crate::activation::exp_f32;
use crate::data::{Level, Vocab, EOS};
use crate::error::{Error, Result};
use crate::layer::softmax::log_softmax_row;
use crate::model::lm::{LanguageModel, LmWorkspace};

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decoding {
    /// The most likely token.
    Greedy,
    /// A draw from softmax(logits / temperature), optionally restricted to
    /// the k most likely tokens and then to the smallest set whose
    /// probability reaches p.
    Sample {
        /// > 0; below 1 sharpens, above 1 flattens.
        temperature: f64,
        /// Keep only the k most likely tokens.
        top_k: Option<usize>,
        /// Keep the most likely tokens up to cumulative probability p.
        top_p: Option<f64>,
    },
    /// Beam search of the given width; returns the most likely continuation.
    Beam {
        /// W ≥ 1.
        width: usize,
    },
}

impl Decoding {
    fn validate(&self) -> Result<()> {
        match *self {
            Decoding::Sample {
                temperature,
                top_k,
                top_p,
            } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(Error::Config(format!(
                        "temperature must be a number > 0, got {temperature}"
                    )));
                }
                if top_k == Some(0) {
                    return Err(Error::Config("top-k must be at least 1".into()));
                }
                if let Some(p) = top_p {
                    if !(p > 0.0 && p <= 1.0) {
                        return Err(Error::Config(format!("top-p must be in (0, 1], got {p}")));
                    }
                }
            }
            Decoding::Beam { width: 0 } => {
                return Err(Error::Config("beam width must be at least 1".into()))
            }
            _ => {}
        }
        Ok(())
    }
}

/// The token a generation starts from when no prime text is given: a
/// newline (char level) or `<eos>` (word level) when the vocabulary has it.
pub fn default_start(vocab: &Vocab) -> u32 {
    let t = if vocab.level == Level::Char {
        "\n"
    } else {
        EOS
    };
    vocab.get(t).unwrap_or(0)
}

/// What [`choose`] reuses from token to token.
#[derive(Default)]
pub(crate) struct Scratch {
    /// `[V]` unnormalised probabilities.
    weights: Vec<f32>,
    /// `[V]` (probability, token), most likely first, for top-k and top-p.
    ranked: Vec<(f64, u32)>,
}

/// Chooses the next token from one row of logits `[V]`.
pub(crate) fn choose(
    logits: &[f32],
    how: Decoding,
    rng: &mut dyn RngCore,
    scratch: &mut Scratch,
) -> u32 {
    match how {
        Decoding::Greedy | Decoding::Beam { .. } => crate::float::argmax(logits) as u32,
        Decoding::Sample {
            temperature,
            top_k,
            top_p,
        } => {
            // The weights in f32 with the vectorisable exp, into a buffer
            // of their own: with a word vocabulary, libm's f64 exp over
            // every logit cost more than the model's step. A logit of −∞
            // is a token ruled out: weight 0, not exp's floor.
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let inv = (1.0 / temperature) as f32;
            let w = &mut scratch.weights;
            w.clear();
            w.extend(logits.iter().map(|&x| {
                let e = exp_f32((x - max) * inv);
                if x == f32::NEG_INFINITY {
                    0.0
                } else {
                    e
                }
            }));
            let ranked = &mut scratch.ranked;
            if top_k.is_none() && top_p.is_none() {
                let total = lane_sum(w, |x| x);
                let mut r = rng.random::<f64>() * total;
                for (i, &x) in w.iter().enumerate() {
                    let x = f64::from(x);
                    if r < x {
                        return i as u32;
                    }
                    r -= x;
                }
                // Rounding left r past the last weight: the last token
                // with any weight.
                return w.iter().rposition(|&x| x > 0.0).unwrap_or(0) as u32;
            }
            ranked.clear();
            ranked.extend(w.iter().enumerate().map(|(i, &x)| (f64::from(x), i as u32)));
            // Most likely first; ties by index so results are repeatable.
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            if let Some(k) = top_k {
                ranked.truncate(k.min(ranked.len()));
            }
            if let Some(p) = top_p {
                let total: f64 = ranked.iter().map(|x| x.0).sum();
                let mut acc = 0.0;
                let mut keep = ranked.len();
                for (i, x) in ranked.iter().enumerate() {
                    acc += x.0 / total;
                    if acc >= p {
                        keep = i + 1;
                        break;
                    }
                }
                ranked.truncate(keep);
            }
            let total: f64 = ranked.iter().map(|x| x.0).sum();
            let mut r = rng.random::<f64>() * total;
            for &(w, i) in ranked.iter() {
                if r < w {
                    return i;
                }
                r -= w;
            }
            ranked.last().map_or(0, |x| x.1)
        }
    }
}

/// Σ f(x) in f64, from sixteen f32 partial sums (so the loop is vector
/// code).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter()
        .map(|&a| f64::from(a))
        .chain(chunks.remainder().iter().map(|&v| f64::from(f(v))))
        .sum()
}

/// Generates `length` tokens after `prime` (which must be non-empty),
/// calling `emit` with each as soon as it is chosen. Returns the tokens.
pub fn generate(
    model: &LanguageModel,
    prime: &[u32],
    length: usize,
    how: Decoding,
    rng: &mut dyn RngCore,
    emit: &mut dyn FnMut(u32),
) -> Result<Vec<u32>> {
    generate_with(model, prime, length, how, rng, &mut |t, _| {
        emit(t);
        true
    })
}

/// [`generate`], with `emit` also given each token's probability under the
/// model (the softmax of its logits, before temperature and truncation;
/// NaN in beam search) and able to stop early by returning false.
pub fn generate_with(
    model: &LanguageModel,
    prime: &[u32],
    length: usize,
    how: Decoding,
    rng: &mut dyn RngCore,
    emit: &mut dyn FnMut(u32, f64) -> bool,
) -> Result<Vec<u32>> {
    check_start(how, prime)?;
    if let Decoding::Beam { width } = how {
        let out = beam_search(model, prime, length, width)?;
        for &t in &out {
            if !emit(t, f64::NAN) {
                break;
            }
        }
        return Ok(out);
    }
    let v = model.config().vocab_size;
    let mut ws = LmWorkspace::new();
    sample_loop(v, prime, length, how, rng, emit, &mut |history, logits| {
        // The prime runs once; after it, each step feeds the new token.
        let fed = if history.len() == prime.len() {
            prime
        } else {
            &history[history.len() - 1..]
        };
        model.forward(&mut ws, fed, fed.len(), 1, None)?;
        logits.copy_from_slice(&ws.logits()[(fed.len() - 1) * v..]);
        Ok(())
    })
}

/// Refuses a bad decoding setting or an empty prime.
fn check_start(how: Decoding, prime: &[u32]) -> Result<()> {
    how.validate()?;
    if prime.is_empty() {
        return Err(Error::input(
            "the prime",
            "generation needs at least one token to start from",
        ));
    }
    Ok(())
}

/// The next-token logits `[V]` after a history (the prime, then the tokens
/// chosen so far).
pub(crate) type NextLogits<'a> = dyn FnMut(&[u32], &mut [f32]) -> Result<()> + 'a;

/// The sampling loop every language model shares: `next` gives the logits
/// after the history, one token is chosen from them as `how` says, and
/// `emit` sees it with its probability and may stop early.
pub(crate) fn sample_loop(
    v: usize,
    prime: &[u32],
    length: usize,
    how: Decoding,
    rng: &mut dyn RngCore,
    emit: &mut dyn FnMut(u32, f64) -> bool,
    next: &mut NextLogits<'_>,
) -> Result<Vec<u32>> {
    check_start(how, prime)?;
    if let Decoding::Beam { .. } = how {
        return Err(Error::Config(
            "beam search is for the recurrent language models; sample, or use greedy decoding"
                .into(),
        ));
    }
    let mut history = prime.to_vec();
    let mut logits = vec![0.0f32; v];
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(length);
    for i in 0..length {
        next(&history, &mut logits)?;
        let t = choose(&logits, how, rng, &mut scratch);
        out.push(t);
        history.push(t);
        if !emit(t, probability(&logits, t)) || i + 1 == length {
            break;
        }
    }
    Ok(out)
}

/// softmax(logits)[token].
fn probability(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    f64::from(exp_f32(logits[token as usize] - max)) / lane_sum(logits, |x| exp_f32(x - max))
}

/// Beam search: W hypotheses advance together as a batch of W rows.
fn beam_search(
    model: &LanguageModel,
    prime: &[u32],
    length: usize,
    width: usize,
) -> Result<Vec<u32>> {
    let (v, h) = (model.config().vocab_size, model.config().hidden);
    let mut ws = LmWorkspace::new();
    model.forward(&mut ws, prime, prime.len(), 1, None)?;
    let mut logp = vec![0.0f64; v];
    log_softmax_row(&ws.logits()[(prime.len() - 1) * v..], &mut logp);
    // Replicate the state into W rows.
    let rep = |s: &[f32]| -> Vec<f32> {
        s.chunks_exact(h)
            .flat_map(|row| (0..width).flat_map(move |_| row.iter().copied()))
            .collect()
    };
    let (sh, sc) = (rep(ws.state_h()), rep(ws.state_c()));
    ws.set_state(&sh, &sc, width);
    // Live hypotheses: scores `[W]` and, per step, each one's (parent row,
    // token), so histories are rebuilt once at the end instead of copied
    // every step. Only the first hypothesis is live at the start.
    let mut scores: Vec<f64> = vec![0.0];
    let mut history: Vec<(usize, u32)> = Vec::with_capacity(length * width);
    // Where each step's entries start in `history`.
    let mut starts: Vec<usize> = Vec::with_capacity(length);
    // `[W, V]` log-probabilities of each live row's next token.
    let mut rows_logp = vec![0.0f64; width * v];
    rows_logp[..v].copy_from_slice(&logp);
    let mut cand: Vec<(f64, usize, u32)> = Vec::with_capacity(width * v);
    let (mut from, mut tokens) = (vec![0usize; width], vec![0u32; width]);
    for step in 0..length {
        cand.clear();
        for (bi, score) in scores.iter().enumerate() {
            let row = &rows_logp[bi * v..(bi + 1) * v];
            cand.extend(
                row.iter()
                    .enumerate()
                    .map(|(tok, &lp)| (score + lp, bi, tok as u32)),
            );
        }
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        cand.truncate(width);
        scores.clear();
        scores.extend(cand.iter().map(|c| c.0));
        starts.push(history.len());
        history.extend(cand.iter().map(|c| (c.1, c.2)));
        if step + 1 == length {
            break;
        }
        // Row i of the next step continues from the state of its parent.
        from.fill(0);
        tokens.fill(0);
        for (i, c) in cand.iter().enumerate() {
            (from[i], tokens[i]) = (c.1, c.2);
        }
        ws.reorder_state(&from, h);
        model.forward(&mut ws, &tokens, 1, width, None)?;
        for i in 0..scores.len() {
            log_softmax_row(
                &ws.logits()[i * v..(i + 1) * v],
                &mut rows_logp[i * v..(i + 1) * v],
            );
        }
    }
    // Walk the best hypothesis (row 0 of the last step) back to the start.
    let mut out = vec![0u32; length];
    let mut row = 0;
    for step in (0..length).rev() {
        let (parent, tok) = history[starts[step] + row];
        out[step] = tok;
        row = parent;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let logits = [0.1f32, 3.0, 2.9, -1.0];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut s = Scratch::default();
        for _ in 0..50 {
            let k1 = Decoding::Sample {
                temperature: 1.0,
                top_k: Some(1),
                top_p: None,
            };
            assert_eq!(choose(&logits, k1, &mut rng, &mut s), 1);
            let p = Decoding::Sample {
                temperature: 1.0,
                top_k: None,
                top_p: Some(0.9),
            };
            let t = choose(&logits, p, &mut rng, &mut s);
            assert!(t == 1 || t == 2, "{t}");
        }
        assert_eq!(choose(&logits, Decoding::Greedy, &mut rng, &mut s), 1);
    }

    #[test]
    fn low_temperature_concentrates() {
        let logits = [1.0f32, 1.2, 0.9];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut s = Scratch::default();
        let how = Decoding::Sample {
            temperature: 0.01,
            top_k: None,
            top_p: None,
        };
        assert!((0..100).all(|_| choose(&logits, how, &mut rng, &mut s) == 1));
    }
}
