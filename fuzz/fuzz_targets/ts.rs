//! sktime/UEA `.ts` time-series files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = recur::data::read::parse_ts(&recur_fuzz::text(data), "fuzz");
});
