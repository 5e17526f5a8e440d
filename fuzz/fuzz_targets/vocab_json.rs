//! Vocabularies from JSON: a model file's `vocab` metadata
//! (`{"level": …, "tokens": […]}`, as `checkpoint::load_lm` reads it), the
//! token array of `read_vocab_json`, and a seq2seq vocabulary's tokens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::checkpoint::read_vocab_json;
use recur::data::pairs::PairVocab;
use recur::data::{tokenize, Level, Vocab};

/// The private `checkpoint::VocabJson`, field for field.
#[derive(serde::Deserialize)]
struct VocabJson {
    level: String,
    tokens: Vec<String>,
}

fn exercise(v: &Vocab) {
    let toks: Vec<String> = v.tokens.iter().take(64).cloned().collect();
    if let Ok(ids) = v.encode(&toks, "fuzz") {
        let _ = v.decode(&ids);
    }
    let _ = v.encode(&tokenize("a b\nc", v.level), "fuzz");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(vj) = serde_json::from_slice::<VocabJson>(data) {
        if let Some(level) = Level::from_name(&vj.level) {
            if let Ok(v) = Vocab::from_tokens(level, vj.tokens) {
                exercise(&v);
            }
        }
    }
    let path = recur_fuzz::shm_file("vocab_json", data);
    for level in [Level::Char, Level::Word] {
        if let Ok(v) = read_vocab_json(path, level) {
            exercise(&v);
        }
    }
    if let Ok(tokens) = serde_json::from_slice::<Vec<String>>(data) {
        let _ = PairVocab::from_tokens(tokens);
    }
});
