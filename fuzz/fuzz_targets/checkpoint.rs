//! Model and checkpoint files (safetensors header, tensors and metadata):
//! every reader of the `checkpoint` module (the recurrent, fixed-window and
//! n-gram language models among them), the echo state network's, and
//! the PyTorch state_dict importer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::checkpoint::*;
use recur::data::{Level, Vocab};

fuzz_target!(|data: &[u8]| {
    let path = recur_fuzz::shm_file("checkpoint", data);
    let _ = file_format(path);
    let _ = read_tensors_f64(path);
    let _ = load_lm(path);
    let _ = load_window(path);
    let _ = load_ngram(path);
    let _ = load_seq(path);
    let _ = load_seq2seq(path);
    let _ = recur::esn::Esn::load(path);
    if let Ok(t) = read_tensors(path) {
        // A vocabulary of the size the file's embedding has, so that the
        // importer gets past its size check.
        let v = t.tensors.get("encoder.weight").and_then(|(s, _)| s.first());
        let n = v.copied().unwrap_or(1).clamp(1, 4096);
        let tokens = (0..n).map(|i| i.to_string()).collect();
        if let Ok(vocab) = Vocab::from_tokens(Level::Word, tokens) {
            let _ = import_torch_lm(path, vocab, None);
        }
    }
});
