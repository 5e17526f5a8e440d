//! Hostile model files from the fuzz targets in `fuzz/` (seeds written by
//! `fuzz/seeds/hostile.py`, kept in `tests/fixtures/fuzz`): every reader
//! must refuse them with an error naming the file, never panic, hang or
//! allocate what the header claims. The first tests are inputs that did
//! panic, hang or blow up memory before the fix they name.

use std::path::PathBuf;

use recur::checkpoint::{
    file_format, import_torch_lm, load_lm, load_seq, load_seq2seq, read_tensors, read_tensors_f64,
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
