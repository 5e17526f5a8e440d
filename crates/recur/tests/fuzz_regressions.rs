//! Hostile model files from the fuzz targets in `fuzz/` (seeds written by
//! `fuzz/seeds/hostile.py`, kept in `tests/fixtures/fuzz`): every reader
//! must refuse them with an error naming the file, never panic, hang or
//! allocate what the header claims. The first tests are inputs that did
//! panic, hang or blow up memory before the fix they name.

use std::path::PathBuf;

use recur::checkpoint::{
    file_format, import_torch_lm, load_lm, load_ngram, load_seq, load_seq2seq, load_window,
    read_tensors, read_tensors_f64,
};
use recur::data::{Level, Vocab};
use recur::esn::Esn;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name)
}

/// Each reader's error on `name`, or a panic naming a reader that accepted it.
fn errors(name: &str) -> Vec<(&'static str, String)> {
    let p = fixture(name);
    let vocab = Vocab::from_tokens(Level::Char, vec!["a".into(), "b".into()]).unwrap();
    let results = [
        ("load_lm", load_lm(&p).err()),
        ("load_window", load_window(&p).err()),
        ("load_ngram", load_ngram(&p).err()),
        ("load_seq", load_seq(&p).err()),
        ("load_seq2seq", load_seq2seq(&p).err()),
        ("Esn::load", Esn::load(&p).err()),
        ("import_torch_lm", import_torch_lm(&p, vocab, None).err()),
    ];
    results
        .into_iter()
        .map(|(reader, e)| {
            let e = e.unwrap_or_else(|| panic!("{reader} accepted {name}"));
            (reader, e.to_string())
        })
        .collect()
}

/// No model reader accepts `name`; each error names the file.
#[track_caller]
fn refused(name: &str) {
    for (reader, e) in errors(name) {
        assert!(
            e.contains(name),
            "{reader} on {name}: the error does not name the file: {e}"
        );
    }
}

/// The error of one reader on `name`.
fn error_of(name: &str, reader: &str) -> String {
    errors(name)
        .into_iter()
        .find(|(r, _)| *r == reader)
        .map(|(_, e)| e)
        .unwrap()
}

#[test]
fn lm_config_with_2_pow_60_layers_is_refused_at_once() {
    // Hung: RnnConfig::param_count looped over every layer.
    refused("lm-config-many-layers");
    let e = error_of("lm-config-many-layers", "load_lm");
    assert!(e.contains("parameters"), "{e}");
}

#[test]
fn esn_with_2_pow_40_inputs_is_refused_before_drawing_its_reservoir() {
    // Asked for 2^43 values: W_in [N, I] was drawn before any check.
    refused("esn-inputs-huge");
    let e = error_of("esn-inputs-huge", "Esn::load");
    assert!(
        e.contains("'inputs' is 1099511627776") && e.contains("8 units"),
        "{e}"
    );
}

#[test]
fn esn_with_more_units_than_its_readout_is_refused_before_drawing_its_reservoir() {
    // Hung (10^10 draws of W) or asked for 2^80 draws: W was drawn before
    // W_out's shape was checked against the units.
    for name in ["esn-units-large", "esn-units-huge", "esn-outputs-huge"] {
        refused(name);
        let e = error_of(name, "Esn::load");
        assert!(e.contains("tensor 'w_out' has shape [1, 10]"), "{e}");
    }
}

#[test]
fn configs_whose_widths_overflow_are_refused() {
    // Panicked on overflow (debug builds) in Seq2SeqConfig::keys and
    // SeqConfig::rnn_input before their param_count could say None.
    refused("seq2seq-keys-overflow");
    let e = error_of("seq2seq-keys-overflow", "load_seq2seq");
    assert!(e.contains("more parameters than can be counted"), "{e}");
    refused("seq-output-overflow");
    let e = error_of("seq-output-overflow", "load_seq");
    assert!(e.contains("more parameters than can be counted"), "{e}");
}

#[test]
fn hostile_headers_are_refused_by_every_reader() {
    for name in [
        "header-length-max",
        "header-length-past-end",
        "header-not-json",
        "huge-shape",
        "shape-overflow",
        "offsets-past-end",
        "offsets-overlap",
        "dtype-unknown",
        "metadata-not-strings",
    ] {
        let p = fixture(name);
        assert!(read_tensors(&p).is_err(), "read_tensors accepted {name}");
        assert!(
            read_tensors_f64(&p).is_err(),
            "read_tensors_f64 accepted {name}"
        );
        assert!(file_format(&p).is_err(), "file_format accepted {name}");
        refused(name);
    }
    let e = read_tensors(&fixture("dtype-i64")).unwrap_err().to_string();
    assert!(e.contains("dtype I64"), "{e}");
    assert!(read_tensors_f64(&fixture("dtype-i64")).is_err());
}

#[test]
fn hostile_metadata_is_refused_by_every_loader() {
    for name in [
        "dtype-i64",
        "lm-config-wrong-types",
        "lm-config-huge",
        "lm-vocab-duplicate",
        "lm-vocab-size-mismatch",
        "seq-config-huge",
        "seq2seq-meta-mismatch",
        "torch-rows-not-multiple",
        "torch-zero-hidden",
    ] {
        refused(name);
    }
    let e = error_of("lm-vocab-duplicate", "load_lm");
    assert!(e.contains("appears twice"), "{e}");
    let e = error_of("torch-rows-not-multiple", "import_torch_lm");
    assert!(e.contains("multiple of its columns"), "{e}");
}

/// The baselines' readers refuse what is not theirs, configs whose sizes
/// overflow or disagree with the file, and damaged n-gram bytes.
#[test]
fn baseline_model_files_are_checked() {
    use recur::checkpoint::{save_ngram, write_tensors};
    use recur::model::ngram::{Ngram, NgramConfig};
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let vocab = Vocab::from_tokens(Level::Char, vec!["a".into(), "b".into()]).unwrap();
    let meta = |format: &str, config: &str| -> HashMap<String, String> {
        [
            ("format".to_string(), format.to_string()),
            ("config".to_string(), config.to_string()),
            recur::checkpoint::vocab_metadata(&vocab),
        ]
        .into_iter()
        .collect()
    };
    let one = [0.0f32];
    let cases = [
        (
            "recur-window-lm",
            r#"{"vocab_size": 2, "context": 4611686018427387904, "embed": 4, "hidden": 4}"#,
            "parameters",
        ),
        (
            "recur-window-lm",
            r#"{"vocab_size": 2, "context": 2, "embed": 2, "hidden": 2}"#,
            "parameters",
        ),
        (
            "recur-window-lm",
            r#"{"vocab_size": 3, "context": 2, "embed": 2, "hidden": 2}"#,
            "vocabulary",
        ),
        (
            "recur-ngram",
            r#"{"order": 3, "vocab_size": 2}"#,
            "U8 tensor",
        ),
        ("recur-ngram", r#"{"order": 3}"#, "config"),
    ];
    for (i, (format, config, says)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.safetensors"));
        write_tensors(&p, &[("x".into(), vec![1], &one[..])], meta(format, config)).unwrap();
        let e = if format.contains("window") {
            load_window(&p).err()
        } else {
            load_ngram(&p).err()
        };
        let e = e.unwrap_or_else(|| panic!("case {i} accepted")).to_string();
        assert!(
            e.contains(says) && e.contains(&format!("bad{i}")),
            "case {i}: {e}"
        );
    }
    // A real n-gram file, then each of its bytes of model data damaged.
    let ng = Ngram::fit(
        NgramConfig {
            order: 3,
            vocab_size: 2,
        },
        &[0, 1, 1, 0, 1, 0, 0, 1],
    )
    .unwrap();
    let p = dir.path().join("ng.safetensors");
    save_ngram(&p, &ng, &vocab).unwrap();
    let (back, _) = load_ngram(&p).unwrap();
    assert_eq!(back.to_bytes(), ng.to_bytes());
    let good = std::fs::read(&p).unwrap();
    let n = ng.to_bytes().len();
    for k in (good.len() - n..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[k] ^= 0x5a;
        std::fs::write(&p, &bad).unwrap();
        assert!(load_ngram(&p).is_err(), "byte {k} flipped was accepted");
    }
}
