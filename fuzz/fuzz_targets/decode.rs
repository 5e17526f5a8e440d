//! `decode` in every encoding, and the path readers built on it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::read::{decode, read_decoded, Encoding};

fuzz_target!(|data: &[u8]| {
    let path = recur_fuzz::shm_file("decode", data);
    for enc in [Encoding::Utf8, Encoding::Windows1252, Encoding::Latin1] {
        let _ = decode(data, enc, "fuzz");
        let _ = read_decoded(path, enc);
    }
    let _ = recur::data::read_text(path);
    let _ = Encoding::from_name(&recur_fuzz::text(data));
});
