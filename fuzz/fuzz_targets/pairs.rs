//! `source<TAB>target` pair files (tokenising the sentences is the
//! `vocab_fit` target's).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = recur::data::pairs::parse_pairs(&recur_fuzz::text(data), "fuzz");
});
