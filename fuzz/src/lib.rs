//! Helpers shared by the fuzz targets.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The input as text: invalid UTF-8 becomes U+FFFD, so every input reaches
/// the parser (the byte-level decoding is fuzzed by the `decode` target).
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Two inputs from one: split at the first 0xFF byte (dropped), else halfway.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => data.split_at(data.len() / 2),
    }
}

/// Writes the input to this process's one file in /dev/shm
/// (`recur-fuzz-<target>-<pid>`, overwritten by every input) for the
/// readers that take a path. `fuzz/run-all` removes these files afterwards.
pub fn shm_file(target: &str, data: &[u8]) -> &'static std::path::Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let dir = PathBuf::from("/dev/shm");
        let dir = if dir.is_dir() { dir } else { std::env::temp_dir() };
        dir.join(format!("recur-fuzz-{target}-{}", std::process::id()))
    });
    std::fs::write(path, data).expect("writing the fuzz input to /dev/shm");
    path
}
