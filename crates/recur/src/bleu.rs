//! Corpus BLEU and chrF, equal to sacreBLEU 2.6.0 with its default settings.
//!
//! - [`corpus_bleu`]: the `13a` tokenizer ([`tokenize_13a`], mteval-v13a as
//!   sacreBLEU implements it), word n-grams of order 1 to 4, case-sensitive,
//!   one reference per hypothesis, `exp` smoothing, no effective order.
//!   Signature: [`Bleu::signature`].
//! - [`corpus_chrf`]: chrF2 on character n-grams of order 1 to 6 with
//!   whitespace removed, no word n-grams, statistics summed over the corpus and
//!   averaged over the orders that have both hypothesis and reference n-grams
//!   (sacreBLEU's default, not its `eps_smoothing`). Signature:
//!   [`Chrf::signature`].
//!
//! Both take the same floating-point steps in the same order as sacreBLEU, so
//! the scores agree to the last bit or nearly so. Whitespace means Python's
//! `str.isspace` (Unicode white space plus the separators U+001C..U+001F), as
//! in sacreBLEU's `str.split()` and `str.rstrip()`. Scores are in 0..=100.

use std::collections::HashMap;

/// Python's `str.isspace` for one character.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument: runs of white space separate,
/// no empty tokens.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// The first rule's class, `` [\{-\~\[-\` -\&\(-\+\:-\@\/] ``: the printable
/// ASCII symbols except `'`, `,`, `-` and `.`, and the space.
fn is_13a_symbol(b: u8) -> bool {
    matches!(b, b'{'..=b'~' | b'['..=b'`' | b' '..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/')
}

/// Python `re.sub` of a two-character pattern `(a)(b)` over `s`: scans left
/// to right, and after a match resumes after both characters (so matches never
/// overlap). Working on UTF-8 bytes is exact here: the characters the rules
/// name (`.`, `,`, `-`, digits) are ASCII and never a byte of a multi-byte
/// character, so `[^0-9]` taking one byte of such a character (its last
/// before a match, its first after) splits where taking all of it would.
fn sub_pairs(
    s: &[u8],
    hit: impl Fn(u8, u8) -> bool,
    emit: impl Fn(&mut Vec<u8>, u8, u8),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 2 + 8);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && hit(s[i], s[i + 1]) {
            emit(&mut out, s[i], s[i + 1]);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Tokenizes one line as sacreBLEU's `13a` tokenizer does (`Tokenizer13a`,
/// equivalent to mteval-v13a.pl as used by WMT).
///
/// In order: removes `<skipped>`, joins `-\n` line breaks, turns other `\n`
/// into spaces, unescapes `&quot;`, `&amp;`, `&lt;`, `&gt;` (one after the
/// other, so `&amp;lt;` becomes `<`); then pads the line with a space on both
/// sides and applies the four regular-expression rules one after the other:
/// ASCII symbols other than `'`, `-`, `.` and `,` are split off; `.` and `,`
/// are split off unless preceded by a digit; and unless followed by a digit;
/// `-` after a digit is split off. Finally runs of white space become one space
/// and the ends are trimmed. [`corpus_bleu`] also strips trailing white space
/// from each line before calling this, as sacreBLEU does.
pub fn tokenize_13a(line: &str) -> String {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    // `f' {line} '` with rule 1, `([<symbol class>])` -> ` \1 `, applied.
    let mut b = Vec::with_capacity(2 * s.len() + 8);
    for &c in b" ".iter().chain(s.as_bytes()).chain(b" ") {
        if is_13a_symbol(c) {
            b.extend_from_slice(&[b' ', c, b' ']);
        } else {
            b.push(c);
        }
    }
    let dot = |c: u8| c == b'.' || c == b',';
    // `([^0-9])([\.,])` -> `\1 \2 `
    let b = sub_pairs(
        &b,
        |a, p| !a.is_ascii_digit() && dot(p),
        |o, a, p| o.extend_from_slice(&[a, b' ', p, b' ']),
    );
    // `([\.,])([^0-9])` -> ` \1 \2`
    let b = sub_pairs(
        &b,
        |p, a| dot(p) && !a.is_ascii_digit(),
        |o, p, a| o.extend_from_slice(&[b' ', p, b' ', a]),
    );
    // `([0-9])(-)` -> `\1 \2 `
    let b = sub_pairs(
        &b,
        |d, m| d.is_ascii_digit() && m == b'-',
        |o, d, m| o.extend_from_slice(&[d, b' ', m, b' ']),
    );
    // Only ASCII spaces were inserted, all at character boundaries, so `b` is
    // valid UTF-8 and the lossy conversion never replaces anything.
    py_split(&String::from_utf8_lossy(&b))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Corpus BLEU as sacreBLEU 2.6.0 reports it (see [`Bleu::signature`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Bleu {
    /// BLEU, 0..=100: `bp * exp(mean of ln precisions)`.
    pub score: f64,
    /// Clipped n-gram precisions (percent) for n = 1..=4, `exp`-smoothed
    /// where an order has no match; all zero when nothing matches at all.
    pub precisions: [f64; 4],
    /// Brevity penalty: `exp(1 - ref_len / sys_len)` when the hypotheses are
    /// shorter than the references, else 1 (0 when they are empty).
    pub bp: f64,
    /// Total number of hypothesis tokens.
    pub sys_len: usize,
    /// Total number of reference tokens.
    pub ref_len: usize,
}

impl Bleu {
    /// sacreBLEU's signature for these settings.
    pub fn signature() -> &'static str {
        "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    }
}

/// Corpus BLEU of `hyps` against `refs` (one reference per hypothesis, line
/// for line), as sacreBLEU's `BLEU().corpus_score(hyps, [refs])`.
///
/// The caller guarantees `hyps.len() == refs.len()` (checked only by a
/// `debug_assert`); otherwise the pairs beyond the shorter slice are ignored.
/// Each line loses its trailing white space and is tokenized by
/// [`tokenize_13a`]; the n-gram counts are clipped per sentence and summed
/// over the corpus before the score is formed. Empty input scores 0.
pub fn corpus_bleu<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> Bleu {
    debug_assert_eq!(
        hyps.len(),
        refs.len(),
        "corpus_bleu: one reference per hypothesis"
    );
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    let (mut correct, mut total) = ([0u64; 4], [0u64; 4]);
    for (h, r) in hyps.iter().zip(refs) {
        let h = tokenize_13a(h.as_ref().trim_end_matches(is_py_space));
        let r = tokenize_13a(r.as_ref().trim_end_matches(is_py_space));
        let ht: Vec<&str> = py_split(&h).collect();
        let rt: Vec<&str> = py_split(&r).collect();
        sys_len += ht.len();
        ref_len += rt.len();
        // Reference n-gram counts keyed by the token slice (its length is the
        // order); each hypothesis match uses one up.
        let mut counts: HashMap<&[&str], u32> = HashMap::with_capacity(4 * rt.len());
        for n in 1..=4 {
            for g in rt.windows(n) {
                *counts.entry(g).or_insert(0) += 1;
            }
        }
        for n in 1..=4 {
            for g in ht.windows(n) {
                total[n - 1] += 1;
                // Clipping: each reference occurrence matches at most once.
                if let Some(c) = counts.get_mut(g).filter(|c| **c > 0) {
                    *c -= 1;
                    correct[n - 1] += 1;
                }
            }
        }
    }
    bleu_from_stats(&correct, &total, sys_len, ref_len)
}

/// `BLEU.compute_bleu` with `exp` smoothing, order 4, no effective order.
fn bleu_from_stats(correct: &[u64; 4], total: &[u64; 4], sys_len: usize, ref_len: usize) -> Bleu {
    let bp = match (sys_len < ref_len, sys_len > 0) {
        (false, _) => 1.0,
        (true, true) => (1.0 - ref_len as f64 / sys_len as f64).exp(),
        (true, false) => 0.0,
    };
    let mut precisions = [0.0f64; 4];
    if correct.iter().all(|&c| c == 0) {
        return Bleu {
            score: 0.0,
            precisions,
            bp,
            sys_len,
            ref_len,
        };
    }
    let mut smooth = 1.0f64;
    for n in 0..4 {
        if total[n] == 0 {
            break; // this and higher orders keep precision 0, so BLEU is 0
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // sacreBLEU's `my_log`: log 0 is floored to -9999999999.
    let log_sum = precisions.iter().fold(0.0, |acc, &p| {
        acc + if p == 0.0 { -9_999_999_999.0 } else { p.ln() }
    });
    Bleu {
        score: bp * (log_sum / 4.0).exp(),
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}

/// Corpus chrF as sacreBLEU 2.6.0 reports it (see [`Chrf::signature`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Chrf {
    /// chrF2, 0..=100.
    pub score: f64,
}

impl Chrf {
    /// sacreBLEU's signature for these settings.
    pub fn signature() -> &'static str {
        "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
    }
}

/// Character n-gram orders of chrF.
const CHAR_ORDER: usize = 6;

/// Corpus chrF2 of `hyps` against `refs` (one reference per hypothesis, line
/// for line), as sacreBLEU's `CHRF().corpus_score(hyps, [refs])`.
///
/// The caller guarantees `hyps.len() == refs.len()` (checked only by a
/// `debug_assert`); otherwise the pairs beyond the shorter slice are ignored.
/// Per sentence and order n = 1..=6, white space is removed and character
/// (Unicode scalar) n-grams are counted: hypothesis n-grams (counted as 0 when
/// the reference has none of that order), reference n-grams and clipped
/// matches, summed over the corpus. Precision and recall are averaged over the
/// orders where both totals are positive and combined as F-beta with beta = 2.
pub fn corpus_chrf<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> Chrf {
    debug_assert_eq!(
        hyps.len(),
        refs.len(),
        "corpus_chrf: one reference per hypothesis"
    );
    // Per order: [hypothesis n-grams, reference n-grams, matches].
    let mut stats = [[0u64; 3]; CHAR_ORDER];
    for (h, r) in hyps.iter().zip(refs) {
        let hc: Vec<char> = h.as_ref().chars().filter(|&c| !is_py_space(c)).collect();
        let rc: Vec<char> = r.as_ref().chars().filter(|&c| !is_py_space(c)).collect();
        // As in `corpus_bleu`: keyed by the slice, whose length is the order.
        let mut counts: HashMap<&[char], u32> = HashMap::with_capacity(CHAR_ORDER * rc.len());
        for (n, st) in (1..=CHAR_ORDER).zip(&mut stats) {
            let n_ref = (rc.len() + 1).saturating_sub(n) as u64;
            if n_ref == 0 {
                continue; // no reference n-grams: nothing counts for this order
            }
            st[0] += (hc.len() + 1).saturating_sub(n) as u64;
            st[1] += n_ref;
            for g in rc.windows(n) {
                *counts.entry(g).or_insert(0) += 1;
            }
            for g in hc.windows(n) {
                if let Some(c) = counts.get_mut(g).filter(|c| **c > 0) {
                    *c -= 1;
                    st[2] += 1;
                }
            }
        }
    }
    Chrf {
        score: chrf_from_stats(&stats),
    }
}

/// `CHRF._compute_f_score` without eps smoothing, beta = 2.
fn chrf_from_stats(stats: &[[u64; 3]; CHAR_ORDER]) -> f64 {
    let factor = 4.0; // beta^2
    let (mut avg_prec, mut avg_rec, mut orders) = (0.0f64, 0.0f64, 0u32);
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return 0.0;
    }
    avg_prec /= orders as f64;
    avg_rec /= orders as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    100.0 * ((1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec))
}
