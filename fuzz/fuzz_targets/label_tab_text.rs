//! `label<TAB>text` files and the classifier's word splitter.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::read::{parse_label_tab_text, words};

fuzz_target!(|data: &[u8]| {
    if let Ok(examples) = parse_label_tab_text(&recur_fuzz::text(data), "fuzz") {
        for e in &examples {
            let _ = words(&e.text);
        }
    }
});
