//! Fitting vocabularies on arbitrary text and encoding it. The first byte
//! picks what: bits 0-1 `min_count`, bit 2 the level (char or word),
//! bits 3-4 the vocabulary: the language model's (`tokenize`,
//! `Vocab::build`, `encode`, `decode`), the sequence models' (`words`,
//! `SeqMeta::fit_*`, `SeqEncoder`; bit 6 lowercases) or seq2seq's
//! (`split_tokens`, `PairVocab::fit`, `join_tokens`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::pairs::{join_tokens, split_tokens, PairVocab};
use recur::data::read::words;
use recur::data::seq::SeqEncoder;
use recur::data::{tokenize, Level, Vocab};
use recur::model::seq::SeqMeta;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let min_count = usize::from(first & 3);
    let level = if first & 4 == 0 { Level::Char } else { Level::Word };
    let text = recur_fuzz::text(rest);
    match (first >> 3) & 3 {
        0 | 3 => {
            let tokens = tokenize(&text, level);
            if let Ok(v) = Vocab::build(level, &tokens, min_count) {
                if let Ok(ids) = v.encode(&tokens, "fuzz") {
                    let _ = v.decode(&ids);
                }
            }
        }
        1 => {
            let lowercase = first & 0x40 != 0;
            let docs: Vec<Vec<String>> = text.lines().map(words).collect();
            let mut meta = SeqMeta::default();
            let _ = meta.fit_words(docs.iter().map(Vec::as_slice), min_count, lowercase);
            meta.fit_chars(docs.iter().map(Vec::as_slice));
            meta.fit_labels(text.lines());
            let mut enc = SeqEncoder::new(&meta, lowercase);
            for (d, line) in docs.iter().zip(text.lines()) {
                let _ = enc.words(d);
                let _ = enc.spellings(d);
                let _ = enc.label(line, "fuzz", 1);
            }
        }
        _ => {
            let docs: Vec<Vec<String>> = text.lines().map(|l| split_tokens(l, level)).collect();
            let pv = PairVocab::fit(docs.iter().map(Vec::as_slice), min_count, 64);
            for d in &docs {
                let back: Vec<&str> = pv.ids(d).iter().map(|&i| pv.token(i)).collect();
                let _ = join_tokens(&back, level);
            }
        }
    }
});
