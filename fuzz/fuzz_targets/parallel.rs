//! Parallel source and target files (the input split at the first 0xFF
//! byte, else halfway).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, b) = recur_fuzz::split(data);
    let (src, tgt) = (recur_fuzz::text(a), recur_fuzz::text(b));
    let _ = recur::data::pairs::parse_parallel(&src, &tgt, ("src", "tgt"));
});
