//! CoNLL-U treebanks, and writing the parsed sentences back with new tags.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::read::{parse_conllu, write_conllu, TagColumn};

fuzz_target!(|data: &[u8]| {
    if let Ok(sentences) = parse_conllu(&recur_fuzz::text(data), "fuzz") {
        for column in [TagColumn::Upos, TagColumn::Xpos] {
            let tags: Vec<Vec<String>> = sentences
                .iter()
                .map(|s| s.words.iter().map(|w| w.tag(column).to_string()).collect())
                .collect();
            let _ = write_conllu(&sentences, &tags, column);
        }
    }
});
