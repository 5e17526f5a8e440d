//! Checkpoints as safetensors files.
//!
//! A model file holds the tensors under PyTorch's `RNNModel` names
//! (`encoder.weight`, `rnn.weight_ih_l0`, …, `decoder.weight`,
//! `decoder.bias`), all f32, so PyTorch can load them directly, plus metadata:
//! `format` = `recur-lm`, `config` (JSON of [`LmConfig`]) and `vocab` (JSON
//! `{"level": …, "tokens": […]}`).
//!
//! Every file is written to a temporary file in the same directory and
//! renamed over the target, so a crash never leaves a half-written file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::data::{Level, Vocab};
use crate::error::{Error, Result};
use crate::layer::rnn::RnnConfig;
use crate::model::lm::{LanguageModel, LmConfig};
use crate::model::ngram::{Ngram, NgramConfig, NGRAM_FORMAT};
use crate::model::seq::{SeqConfig, SeqMeta, SeqModel, SEQ_FORMAT};
use crate::model::seq2seq::{Seq2Seq, Seq2SeqConfig, Seq2SeqMeta, Seq2SeqTraining, SEQ2SEQ_FORMAT};
use crate::model::window::{WindowConfig, WindowLm, WINDOW_FORMAT};
use crate::params::ParamStore;
use crate::train::Model;

/// The `format` metadata of a model file.
pub const MODEL_FORMAT: &str = "recur-lm";

/// The tensors and metadata of a safetensors file, as f32.
#[derive(Clone, Debug, Default)]
pub struct Tensors {
    /// The `__metadata__` entries.
    pub metadata: HashMap<String, String>,
    /// name → (shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Tensors {
    /// A tensor that must exist with exactly this shape.
    pub fn take(&mut self, path: &Path, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (s, v) = self.tensors.remove(name).ok_or_else(|| Error::Input {
            line: None,
            field: None,
            path: path.display().to_string(),
            message: format!("missing tensor '{name}' (expected shape {shape:?})"),
        })?;
        if s != shape {
            return Err(Error::Input {
                line: None,
                field: None,
                path: path.display().to_string(),
                message: format!("tensor '{name}' has shape {s:?}, expected {shape:?}"),
            });
        }
        Ok(v)
    }
}

fn data_err(path: &Path, message: impl Into<String>) -> Error {
    Error::input(path.display(), message)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A tensor as stored: name, shape, dtype and little-endian bytes.
type RawTensor = (String, Vec<usize>, Dtype, Vec<u8>);

/// Reads a safetensors file: its metadata and every tensor as stored.
fn read_raw(path: &Path) -> Result<(HashMap<String, String>, Vec<RawTensor>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        data_err(
            path,
            format!("not a valid safetensors file ({e}); is it truncated or corrupt?"),
        )
    })?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| data_err(path, e.to_string()))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.dtype(), v.data().to_vec()))
        .collect();
    Ok((meta.metadata().clone().unwrap_or_default(), tensors))
}

/// The bytes of a safetensors file of tensors as stored, with metadata
/// (`path` names the file in errors).
fn encode_raw(
    path: &Path,
    tensors: Vec<RawTensor>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, d, b)| {
            Ok((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| data_err(path, e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut data =
        safetensors::serialize(views, Some(metadata)).map_err(|e| data_err(path, e.to_string()))?;
    sort_header(&mut data);
    Ok(data)
}

/// Rewrites a serialised file's JSON header with its keys sorted (the
/// metadata arrives as a HashMap, in a random order), so that the same
/// tensors and metadata always give the same bytes. The header keeps its
/// length: the same JSON in another order, padded with spaces.
fn sort_header(data: &mut [u8]) {
    let Some(n) = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return;
    };
    let Some(header) = data.get(8..8 + n) else {
        return;
    };
    // serde_json's maps are BTreeMaps: parsing and printing sorts the keys.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else {
        return;
    };
    let sorted = v.to_string().into_bytes();
    if sorted.len() <= n {
        let out = &mut data[8..8 + n];
        out[..sorted.len()].copy_from_slice(&sorted);
        out[sorted.len()..].fill(b' ');
    }
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
}

fn f64s(b: &[u8]) -> impl Iterator<Item = f64> + '_ {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// Reads every tensor of a safetensors file as f32 (f64 files are converted).
pub fn read_tensors(path: &Path) -> Result<Tensors> {
    let (metadata, raw) = read_raw(path)?;
    let mut out = Tensors {
        metadata,
        tensors: BTreeMap::new(),
    };
    for (name, shape, dtype, bytes) in raw {
        let values: Vec<f32> = match dtype {
            Dtype::F32 => f32s(&bytes).collect(),
            Dtype::F64 => f64s(&bytes).map(|v| v as f32).collect(),
            other => {
                return Err(data_err(
                    path,
                    format!("tensor '{name}' has dtype {other:?}, expected F32 or F64"),
                ))
            }
        };
        out.tensors.insert(name, (shape, values));
    }
    Ok(out)
}

/// An element type stored in safetensors files.
trait Stored: Copy {
    const DTYPE: Dtype;
    fn extend_le(self, out: &mut Vec<u8>);
}

impl Stored for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Stored for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Writes typed tensors and metadata through a temporary file and a rename.
fn write_typed<T: Stored>(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomic(path, &encode_typed(path, tensors, metadata)?)
}

/// The bytes of a safetensors file of `T` tensors with metadata.
fn encode_typed<T: Stored>(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raw = tensors
        .iter()
        .map(|(n, s, v)| {
            let mut bytes = Vec::with_capacity(std::mem::size_of_val(*v));
            v.iter().for_each(|x| x.extend_le(&mut bytes));
            (n.clone(), s.clone(), T::DTYPE, bytes)
        })
        .collect();
    encode_raw(path, raw, metadata)
}

/// The bytes of a safetensors file of f32 tensors with metadata (`path`
/// names the file in errors), for [`stage`].
pub fn encode_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    encode_typed(path, tensors, metadata)
}

/// The bytes of a file of every tensor of `store` with `metadata`.
pub fn encode_store(
    path: &Path,
    store: &ParamStore<f32>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let tensors: Vec<_> = store
        .named()
        .map(|(n, s, v)| (n.to_string(), s.to_vec(), v))
        .collect();
    encode_tensors(path, &tensors, metadata)
}

/// Writes tensors (f32) and metadata to `path` through a temporary file and a rename.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_typed(path, tensors, metadata)
}

/// Writes bytes to `path` through a temporary file in the same directory,
/// synced, then renamed over the target.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    stage(path, data)?.commit()
}

/// A file written in full to a temporary name beside its target, not yet
/// renamed over it: several can be staged and then committed together, so
/// that a failure while writing any (a full disk) leaves every target as it
/// was. Dropped uncommitted, the temporary file is removed.
pub struct Staged {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    done: bool,
}

/// Writes `data` to a temporary file beside `path` and syncs it.
pub fn stage(path: &Path, data: &[u8]) -> Result<Staged> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = Staged {
        tmp: dir.join(format!(".{name}.tmp{}", std::process::id())),
        path: path.to_path_buf(),
        done: false,
    };
    let written = (|| {
        let mut f = std::fs::File::create(&staged.tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    // On failure `staged` drops here and removes the partial file.
    written.map_err(|e| io_err(path, e))?;
    Ok(staged)
}

impl Staged {
    /// Renames the file over its target.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_err(&self.path, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct VocabJson {
    level: String,
    tokens: Vec<String>,
}

/// Copies every tensor of `store` out of `t`, by name, checking shapes.
pub fn fill_params(store: &mut ParamStore<f32>, t: &mut Tensors, path: &Path) -> Result<()> {
    for i in 0..store.info().len() {
        let p = &store.info()[i];
        let v = t.take(path, &p.name, &p.shape)?;
        let r = p.range();
        store.params[r].copy_from_slice(&v);
    }
    Ok(())
}

/// Writes every tensor of `store` with `metadata` (f32, by name).
pub fn write_store(
    path: &Path,
    store: &ParamStore<f32>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let tensors: Vec<_> = store
        .named()
        .map(|(n, s, v)| (n.to_string(), s.to_vec(), v))
        .collect();
    write_tensors(path, &tensors, metadata)
}

/// The `vocab` metadata of a model file: `{"level": …, "tokens": […]}`.
pub fn vocab_metadata(vocab: &Vocab) -> (String, String) {
    let v = VocabJson {
        level: vocab.level.name().to_string(),
        tokens: vocab.tokens.clone(),
    };
    (
        "vocab".to_string(),
        serde_json::to_string(&v).expect("vocab serialises"),
    )
}

/// Saves a language model with its vocabulary.
pub fn save_lm(path: &Path, model: &LanguageModel, vocab: &Vocab) -> Result<()> {
    let meta = model
        .metadata()
        .into_iter()
        .chain([vocab_metadata(vocab)])
        .collect();
    write_store(path, &model.store, meta)
}

/// Loads a language model saved by [`save_lm`].
pub fn load_lm(path: &Path) -> Result<(LanguageModel, Vocab)> {
    let mut t = read_tensors(path)?;
    expect_format(&t, path, MODEL_FORMAT, "a recur language model")?;
    let config: LmConfig = config_of(&t.metadata, path)?;
    let vocab = vocab_of(&t.metadata, path)?;
    check_vocab(path, &vocab, config.vocab_size)?;
    let rnn = RnnConfig::new(config.cell, config.embed, config.hidden).layers(config.layers);
    let (v, e, h) = (config.vocab_size, config.embed, config.hidden);
    let count = rnn.param_count().and_then(|n| {
        n.checked_add(v.checked_mul(e)?)?
            .checked_add(v.checked_mul(h)?)?
            .checked_add(v)
    });
    check_size(path, &t, count)?;
    let mut model = LanguageModel::zeros(config).map_err(|e| data_err(path, e.to_string()))?;
    fill_params(&mut model.store, &mut t, path)?;
    Ok((model, vocab))
}

/// The vocabulary in a model file's `vocab` metadata.
fn vocab_of(metadata: &HashMap<String, String>, path: &Path) -> Result<Vocab> {
    let vj: VocabJson = serde_json::from_str(metadata.get("vocab").map_or("", String::as_str))
        .map_err(|e| data_err(path, format!("metadata 'vocab' is not valid: {e}")))?;
    let level = Level::from_name(&vj.level).ok_or_else(|| {
        data_err(
            path,
            format!(
                "metadata 'vocab': level '{}', expected char or word",
                vj.level
            ),
        )
    })?;
    Vocab::from_tokens(level, vj.tokens).map_err(|e| data_err(path, e.to_string()))
}

/// The `config` metadata of a model file, as `C`.
fn config_of<C: serde::de::DeserializeOwned>(
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<C> {
    serde_json::from_str(metadata.get("config").map_or("", String::as_str)).map_err(|e| {
        data_err(
            path,
            format!("metadata 'config' is not a valid model config: {e}"),
        )
    })
}

/// Refuses a vocabulary whose size is not the config's.
fn check_vocab(path: &Path, vocab: &Vocab, vocab_size: usize) -> Result<()> {
    if vocab.len() == vocab_size {
        return Ok(());
    }
    Err(data_err(
        path,
        format!(
            "vocabulary has {} tokens but the config says {vocab_size}",
            vocab.len()
        ),
    ))
}

/// Loads a fixed-window language model written by the trainer.
pub fn load_window(path: &Path) -> Result<(WindowLm<f32>, Vocab)> {
    let mut t = read_tensors(path)?;
    expect_format(&t, path, WINDOW_FORMAT, "a fixed-window language model")?;
    let config: WindowConfig = config_of(&t.metadata, path)?;
    let vocab = vocab_of(&t.metadata, path)?;
    check_vocab(path, &vocab, config.vocab_size)?;
    check_size(path, &t, config.param_count())?;
    let mut model = WindowLm::zeros(config).map_err(|e| data_err(path, e.to_string()))?;
    fill_params(&mut model.store, &mut t, path)?;
    Ok((model, vocab))
}

/// Saves an n-gram model with its vocabulary: its bytes
/// ([`Ngram::to_bytes`]) as one U8 tensor `ngram`, with `format` =
/// `recur-ngram`, `config` and `vocab` metadata.
pub fn save_ngram(path: &Path, model: &Ngram, vocab: &Vocab) -> Result<()> {
    let bytes = model.to_bytes();
    let meta = [
        ("format".to_string(), NGRAM_FORMAT.to_string()),
        (
            "config".to_string(),
            serde_json::to_string(model.config()).expect("config serialises"),
        ),
        vocab_metadata(vocab),
    ]
    .into_iter()
    .collect();
    let raw = vec![("ngram".to_string(), vec![bytes.len()], Dtype::U8, bytes)];
    write_atomic(path, &encode_raw(path, raw, meta)?)
}

/// Loads an n-gram model saved by [`save_ngram`].
pub fn load_ngram(path: &Path) -> Result<(Ngram, Vocab)> {
    let (metadata, raw) = read_raw(path)?;
    match metadata.get("format").map(String::as_str) {
        Some(NGRAM_FORMAT) => {}
        other => {
            return Err(data_err(
                path,
                format!(
                    "is {}, not an n-gram model (format '{NGRAM_FORMAT}')",
                    other.map_or("a file without 'format' metadata".into(), |f| format!(
                        "a '{f}' file"
                    ))
                ),
            ))
        }
    }
    let config: NgramConfig = config_of(&metadata, path)?;
    let vocab = vocab_of(&metadata, path)?;
    check_vocab(path, &vocab, config.vocab_size)?;
    let bytes = match &raw[..] {
        [(name, _, Dtype::U8, b)] if name == "ngram" => b,
        _ => {
            return Err(data_err(
                path,
                "expected one U8 tensor 'ngram' holding the model",
            ))
        }
    };
    let model = Ngram::from_bytes(bytes).map_err(|e| data_err(path, e.to_string()))?;
    if model.config() != &config {
        return Err(data_err(
            path,
            format!(
                "the 'config' metadata ({config:?}) is not the model's ({:?})",
                model.config()
            ),
        ));
    }
    Ok((model, vocab))
}

/// Refuses a config whose model would not be the file's tensors, before
/// anything is allocated for it (a hostile file's config can claim any size).
fn check_size(path: &Path, t: &Tensors, count: Option<usize>) -> Result<()> {
    let held: usize = t.tensors.values().map(|(_, v)| v.len()).sum();
    match count {
        Some(n) if n == held => Ok(()),
        Some(n) => Err(data_err(
            path,
            format!("its config describes {n} parameters, but the file holds {held}"),
        )),
        None => Err(data_err(
            path,
            "its config describes more parameters than can be counted",
        )),
    }
}

/// Checks a file's `format` metadata: it must be `format`, the format of
/// `what`.
fn expect_format(t: &Tensors, path: &Path, format: &str, what: &str) -> Result<()> {
    match t.metadata.get("format").map(String::as_str) {
        Some(f) if f == format => Ok(()),
        Some(other) => Err(data_err(
            path,
            format!("is a '{other}' file, not {what} (format '{format}')"),
        )),
        None => Err(data_err(
            path,
            format!(
                "is not {what} (no '{format}' format metadata); \
                 for a PyTorch state_dict use `recur import`"
            ),
        )),
    }
}

/// The `format` metadata of a recur file (`recur-lm`, `recur-seq-model`, …).
pub fn file_format(path: &Path) -> Result<String> {
    let (meta, _) = read_raw(path)?;
    meta.get("format").cloned().ok_or_else(|| {
        data_err(
            path,
            "is not a recur model (no 'format' metadata); for a PyTorch state_dict use `recur import`",
        )
    })
}

/// Loads a sequence model (classifier, tagger, regressor) saved by the
/// trainer.
pub fn load_seq(path: &Path) -> Result<SeqModel<f32>> {
    let mut t = read_tensors(path)?;
    expect_format(&t, path, SEQ_FORMAT, "a recur sequence model")?;
    let config: SeqConfig = json_meta(&t, path, "config", "a valid sequence-model config")?;
    let meta: SeqMeta = json_meta(&t, path, "meta", "valid")?;
    check_size(path, &t, config.param_count())?;
    let mut model = SeqModel::zeros(config, meta).map_err(|e| data_err(path, e.to_string()))?;
    fill_all_params(&mut model.store, &mut t, path)?;
    Ok(model)
}

/// Loads an encoder–decoder saved by the trainer.
pub fn load_seq2seq(path: &Path) -> Result<Seq2Seq<f32>> {
    let mut t = read_tensors(path)?;
    expect_format(
        &t,
        path,
        SEQ2SEQ_FORMAT,
        "a recur sequence-to-sequence model",
    )?;
    let config: Seq2SeqConfig =
        json_meta(&t, path, "config", "a valid sequence-to-sequence config")?;
    let meta: Seq2SeqMeta = json_meta(&t, path, "meta", "valid")?;
    let training: Seq2SeqTraining = json_meta(&t, path, "training", "valid")?;
    let src_want = if config.decoder_only {
        0
    } else {
        config.src_vocab
    };
    if meta.src_tokens.len() != src_want || meta.tgt_tokens.len() != config.tgt_vocab {
        return Err(data_err(
            path,
            format!(
                "metadata 'meta' has vocabularies of {} and {} tokens; the config needs {src_want} and {}",
                meta.src_tokens.len(),
                meta.tgt_tokens.len(),
                config.tgt_vocab
            ),
        ));
    }
    check_size(path, &t, config.param_count())?;
    let mut model = Seq2Seq::zeros(config, meta).map_err(|e| data_err(path, e.to_string()))?;
    model.training = training;
    fill_all_params(&mut model.store, &mut t, path)?;
    Ok(model)
}

/// Writes an encoder–decoder as a plain PyTorch state_dict (the names of
/// the seq2seq module in `fixtures/torch-models`) and its configuration
/// and vocabularies as JSON: `DIR/state_dict.safetensors`, `DIR/meta.json`.
pub fn export_torch_seq2seq(dir: &Path, model: &Seq2Seq<f32>) -> Result<()> {
    let json = serde_json::json!({ "config": model.config(), "meta": model.meta });
    export_store(dir, &model.store, "meta.json", json.to_string().as_bytes())
}

/// A JSON metadata entry of a model file, parsed; `what` says what it
/// should be in the error.
fn json_meta<D: serde::de::DeserializeOwned>(
    t: &Tensors,
    path: &Path,
    key: &str,
    what: &str,
) -> Result<D> {
    let text = t.metadata.get(key).map_or("", String::as_str);
    serde_json::from_str(text)
        .map_err(|e| data_err(path, format!("metadata '{key}' is not {what}: {e}")))
}

/// [`fill_params`], then no tensor may be left over.
fn fill_all_params(store: &mut ParamStore<f32>, t: &mut Tensors, path: &Path) -> Result<()> {
    fill_params(store, t, path)?;
    match t.tensors.keys().next() {
        Some(extra) => Err(data_err(
            path,
            format!("unexpected tensor '{extra}' for this model's config"),
        )),
        None => Ok(()),
    }
}

/// Writes a sequence model as a plain PyTorch state_dict (the names of the
/// modules in `fixtures/torch-models`) and its vocabularies and labels as
/// JSON: `DIR/state_dict.safetensors`, `DIR/meta.json`.
pub fn export_torch_seq(dir: &Path, model: &SeqModel<f32>) -> Result<()> {
    let json = serde_json::json!({ "config": model.config(), "meta": model.meta });
    export_store(dir, &model.store, "meta.json", json.to_string().as_bytes())
}

/// `DIR/state_dict.safetensors` (the store's tensors, no metadata) and the
/// JSON file `side` beside it.
fn export_store(dir: &Path, store: &ParamStore<f32>, side: &str, json: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    write_store(&dir.join("state_dict.safetensors"), store, HashMap::new())?;
    write_atomic(&dir.join(side), json)
}

/// Reads a plain PyTorch `RNNModel` state_dict, inferring its sizes, layer
/// count and cell from the tensor shapes (G = 4 rows per unit: LSTM, 3: GRU,
/// 1: RNN, whose nonlinearity `rnn_cell` gives; tanh by default).
pub fn import_torch_lm(
    path: &Path,
    vocab: Vocab,
    rnn_cell: Option<CellKind>,
) -> Result<LanguageModel> {
    let mut t = read_tensors(path)?;
    let shape = |t: &Tensors, n: &str| -> Result<Vec<usize>> {
        t.tensors
            .get(n)
            .map(|(s, _)| s.clone())
            .ok_or_else(|| data_err(path, format!("missing tensor '{n}' of a PyTorch RNNModel")))
    };
    let enc = shape(&t, "encoder.weight")?;
    let w0 = shape(&t, "rnn.weight_hh_l0")?;
    if enc.len() != 2 || w0.len() != 2 {
        return Err(data_err(
            path,
            "encoder.weight and rnn.weight_hh_l0 must be 2-dimensional",
        ));
    }
    let (v, e, h) = (enc[0], enc[1], w0[1]);
    if h == 0 || w0[0] % h != 0 {
        return Err(data_err(
            path,
            format!("rnn.weight_hh_l0 has shape {w0:?}: rows must be a multiple of its columns"),
        ));
    }
    let cell = match (w0[0] / h, rnn_cell) {
        (4, _) => CellKind::Lstm,
        (3, _) => CellKind::Gru,
        (1, Some(c @ (CellKind::RnnTanh | CellKind::RnnRelu))) => c,
        (1, _) => CellKind::RnnTanh,
        (g, _) => {
            return Err(data_err(
                path,
                format!("rnn.weight_hh_l0 has {g}·H rows: expected 4 (LSTM), 3 (GRU) or 1 (RNN)"),
            ))
        }
    };
    if t.tensors.keys().any(|k| k.ends_with("_reverse")) {
        return Err(data_err(
            path,
            "bidirectional layers cannot be used in a language model",
        ));
    }
    let layers = (0..)
        .take_while(|l| t.tensors.contains_key(&format!("rnn.weight_ih_l{l}")))
        .count();
    if v != vocab.len() {
        return Err(data_err(
            path,
            format!(
                "encoder.weight has {v} rows but the vocabulary has {} tokens",
                vocab.len()
            ),
        ));
    }
    let config = LmConfig {
        cell,
        vocab_size: v,
        embed: e,
        hidden: h,
        layers,
        dropout: 0.0,
    };
    let mut model = LanguageModel::zeros(config)?;
    fill_params(&mut model.store, &mut t, path)?;
    if let Some(extra) = t.tensors.keys().next() {
        return Err(data_err(
            path,
            format!(
                "unexpected tensor '{extra}' for a {layers}-layer {} RNNModel",
                cell.name()
            ),
        ));
    }
    Ok(model)
}

/// Writes a model as a plain PyTorch state_dict (no recur metadata) and its
/// vocabulary as a JSON array: `DIR/state_dict.safetensors`, `DIR/vocab.json`.
pub fn export_torch_lm(dir: &Path, model: &LanguageModel, vocab: &Vocab) -> Result<()> {
    let json = serde_json::to_string(&vocab.tokens).expect("tokens serialise");
    export_store(dir, &model.store, "vocab.json", json.as_bytes())
}

/// Reads a JSON array of tokens in index order.
pub fn read_vocab_json(path: &Path, level: Level) -> Result<Vocab> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let tokens: Vec<String> = serde_json::from_str(&text)
        .map_err(|e| data_err(path, format!("expected a JSON array of token strings: {e}")))?;
    Vocab::from_tokens(level, tokens).map_err(|e| data_err(path, e.to_string()))
}

/// Writes f64 tensors and metadata to `path` through a temporary file and a rename.
pub fn write_tensors_f64(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f64])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_typed(path, tensors, metadata)
}

/// The tensors of an f64 file: name → (shape, values).
pub type TensorsF64 = HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads a safetensors file of f64 tensors: (metadata, tensors).
pub fn read_tensors_f64(path: &Path) -> Result<(HashMap<String, String>, TensorsF64)> {
    let (metadata, raw) = read_raw(path)?;
    let mut out = HashMap::new();
    for (name, shape, dtype, bytes) in raw {
        if dtype != Dtype::F64 {
            return Err(data_err(
                path,
                format!("tensor '{name}' has dtype {dtype:?}, expected F64"),
            ));
        }
        out.insert(name, (shape, f64s(&bytes).collect()));
    }
    Ok((metadata, out))
}
