//! BLEU and chrF of hypothesis and reference files (the input split at the
//! first 0xFF byte, else halfway; line for line, the longer one cut).
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::bleu::{corpus_bleu, corpus_chrf};

fuzz_target!(|data: &[u8]| {
    let (a, b) = recur_fuzz::split(data);
    let (a, b) = (recur_fuzz::text(a), recur_fuzz::text(b));
    let mut hyps: Vec<&str> = a.lines().collect();
    let mut refs: Vec<&str> = b.lines().collect();
    let n = hyps.len().min(refs.len());
    hyps.truncate(n);
    refs.truncate(n);
    let _ = corpus_bleu(&hyps, &refs);
    let _ = corpus_chrf(&hyps, &refs);
});
