//! Token files: a corpus tokenised once, in two streaming passes, into raw
//! little-endian ids (u16 when V ≤ 65,536, else u32) and memory-mapped for
//! training, as nanoGPT's `train.bin`. Resident memory is then bounded by
//! the model, the batch and the vocabulary, not by the corpus.
//!
//! The first pass counts tokens for the vocabulary; the second writes ids
//! through a temporary file and a rename. A JSON sidecar records the source
//! (path, size, modification time), the vocabulary, the id count and the
//! fingerprint, so a resumed run reuses the file when nothing changed.
//!
//! Tokens are exactly those of [`tokenize`](super::tokenize): a chunk
//! boundary never splits a character or (at word level) a line.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::vocab::{Level, Vocab, EOS};
use crate::error::{Error, Result};

/// Bytes read per chunk.
const CHUNK: usize = 1 << 20;

/// Where a corpus comes from.
#[derive(Clone, Copy, Debug)]
pub enum Corpus<'a> {
    /// A UTF-8 file, read in chunks.
    File(&'a Path),
    /// Text in memory, with the name errors give it.
    Text(&'a str, &'a str),
}

impl Corpus<'_> {
    /// The name errors and messages use.
    pub fn name(&self) -> String {
        match self {
            Corpus::File(p) => p.display().to_string(),
            Corpus::Text(_, name) => name.to_string(),
        }
    }

    fn reader(&self) -> Result<Box<dyn Read + '_>> {
        match self {
            Corpus::File(p) => Ok(Box::new(File::open(p).map_err(|e| io_err(p, e))?)),
            Corpus::Text(t, _) => Ok(Box::new(t.as_bytes())),
        }
    }

    /// (size in bytes, modification time in ns since the epoch) of a file;
    /// text in memory is identified by its size and fingerprint alone.
    fn stamp(&self) -> Result<(u64, u128)> {
        match self {
            Corpus::File(p) => {
                let m = std::fs::metadata(p).map_err(|e| io_err(p, e))?;
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                Ok((m.len(), t))
            }
            Corpus::Text(t, _) => Ok((t.len() as u64, u128::from(fnv_bytes(t.as_bytes())))),
        }
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn fnv_bytes(b: &[u8]) -> u64 {
    super::batch::fingerprint(b.iter().map(|&x| u64::from(x)))
}

/// One token as the scanner sees it: a character, or a word (`<eos>` ends
/// each non-empty line).
#[derive(Clone, Copy)]
enum Tok<'a> {
    Char(char),
    Word(&'a str),
}

/// Calls `f` on every token of the corpus in order, reading it in chunks.
/// Invalid UTF-8 is an error naming the byte offset and line.
fn scan(corpus: &Corpus, level: Level, mut f: impl FnMut(Tok) -> Result<()>) -> Result<()> {
    let mut r = corpus.reader()?;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    // Bytes of `buf` already consumed, and the offset and line of buf[0].
    let (mut offset, mut line) = (0u64, 1usize);
    let mut eof = false;
    while !eof {
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = loop {
            match r.read(&mut buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Io {
                        path: corpus.name(),
                        message: e.to_string(),
                    })
                }
            }
        };
        buf.truncate(old + n);
        eof = n == 0;
        // The complete text in buf: valid UTF-8 up to an incomplete tail.
        let valid = match std::str::from_utf8(&buf) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() && !eof => e.valid_up_to(),
            Err(e) => {
                let at = e.valid_up_to();
                let l = line + buf[..at].iter().filter(|&&c| c == b'\n').count();
                return Err(Error::Input {
                    path: corpus.name(),
                    line: Some(l),
                    field: None,
                    message: format!(
                        "invalid UTF-8 at byte offset {}: expected a UTF-8 text file",
                        offset + at as u64
                    ),
                });
            }
        };
        let text = std::str::from_utf8(&buf[..valid]).expect("checked above");
        // At word level only whole lines are split; the last partial line
        // waits for the next chunk (or the end).
        let done = match level {
            Level::Char => {
                for c in text.chars() {
                    f(Tok::Char(c))?;
                }
                valid
            }
            Level::Word => {
                let end = if eof {
                    text.len()
                } else {
                    text.rfind('\n').map_or(0, |i| i + 1)
                };
                for l in text[..end].split_terminator('\n') {
                    let mut any = false;
                    for w in l.split_whitespace() {
                        f(Tok::Word(w))?;
                        any = true;
                    }
                    if any {
                        f(Tok::Word(EOS))?;
                    }
                }
                end
            }
        };
        line += buf[..done].iter().filter(|&&c| c == b'\n').count();
        offset += done as u64;
        buf.drain(..done);
    }
    Ok(())
}

/// Counts the corpus's tokens (first pass).
fn count(corpus: &Corpus, level: Level) -> Result<BTreeMap<String, usize>> {
    let mut ascii = [0usize; 128];
    let mut other: HashMap<String, usize> = HashMap::new();
    scan(corpus, level, |t| {
        match t {
            Tok::Char(c) if c.is_ascii() => ascii[c as usize] += 1,
            Tok::Char(c) => *other.entry(c.to_string()).or_default() += 1,
            Tok::Word(w) => match other.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    other.insert(w.to_string(), 1);
                }
            },
        }
        Ok(())
    })?;
    let mut counts: BTreeMap<String, usize> = other.into_iter().collect();
    for (c, &n) in ascii.iter().enumerate().filter(|(_, &n)| n > 0) {
        counts.insert(char::from(c as u8).to_string(), n);
    }
    Ok(counts)
}

/// A token's id: a table for ASCII characters, a map for the rest.
struct Encoder<'v> {
    vocab: &'v Vocab,
    ascii: [Option<u32>; 128],
    unk: Option<u32>,
    buf: [u8; 4],
}

impl<'v> Encoder<'v> {
    fn new(vocab: &'v Vocab) -> Encoder<'v> {
        let mut ascii = [None; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            *slot = vocab.get(char::from(c as u8).encode_utf8(&mut [0; 4]));
        }
        Encoder {
            vocab,
            ascii,
            unk: vocab.unk(),
            buf: [0; 4],
        }
    }

    fn id(&mut self, t: Tok, index: u64, source: &str) -> Result<u32> {
        let (found, shown) = match t {
            Tok::Char(c) if c.is_ascii() => (self.ascii[c as usize], t),
            Tok::Char(c) => (self.vocab.get(c.encode_utf8(&mut self.buf)), t),
            Tok::Word(w) => (self.vocab.get(w), t),
        };
        found.or(self.unk).ok_or_else(|| Error::Input {
            line: None,
            field: None,
            path: source.to_string(),
            message: match shown {
                Tok::Char(c) => format!(
                    "character {:?} at token {index} is not in the model's vocabulary (which has no <unk>)",
                    c.to_string()
                ),
                Tok::Word(w) => format!(
                    "word {w:?} at token {index} is not in the model's vocabulary (which has no <unk>)"
                ),
            },
        })
    }
}

/// Ids held in memory or mapped from a token file; cheap to clone.
#[derive(Clone, Debug)]
pub struct Tokens {
    store: Arc<Store>,
}

#[derive(Debug)]
enum Store {
    Owned(Vec<u32>),
    /// Little-endian ids of `width` bytes.
    Mapped {
        map: memmap2::Mmap,
        width: usize,
    },
}

impl Tokens {
    /// Ids in memory.
    pub fn owned(ids: Vec<u32>) -> Tokens {
        Tokens {
            store: Arc::new(Store::Owned(ids)),
        }
    }

    /// N.
    pub fn len(&self) -> usize {
        match &*self.store {
            Store::Owned(v) => v.len(),
            Store::Mapped { map, width } => map.len() / width,
        }
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Id i.
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match &*self.store {
            Store::Owned(v) => v[i],
            Store::Mapped { map, width: 2 } => {
                u32::from(u16::from_le_bytes([map[2 * i], map[2 * i + 1]]))
            }
            Store::Mapped { map, .. } => {
                u32::from_le_bytes(map[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            }
        }
    }

    /// Whether the ids are mapped from a file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(&*self.store, Store::Mapped { .. })
    }

    /// Ids `range` as a vector.
    pub fn to_vec(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        range.map(|i| self.get(i)).collect()
    }

    /// FNV-1a over the ids: the fingerprint of a run's data.
    pub fn fingerprint(&self) -> u64 {
        super::batch::fingerprint((0..self.len()).map(|i| u64::from(self.get(i))))
    }

    fn map(path: &Path, width: usize) -> Result<Tokens> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        // SAFETY: the file is the run's own, written once and renamed into
        // place; recur never writes to it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
        if map.len() % width != 0 {
            return Err(Error::Input {
                path: path.display().to_string(),
                line: None,
                field: None,
                message: format!(
                    "holds {} bytes, not a whole number of {width}-byte ids",
                    map.len()
                ),
            });
        }
        Ok(Tokens {
            store: Arc::new(Store::Mapped { map, width }),
        })
    }
}

/// The sidecar of a token file.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Sidecar {
    source: String,
    bytes: u64,
    modified_ns: u128,
    level: String,
    /// The `min_count` the vocabulary was built with; none when given.
    min_count: Option<usize>,
    vocab: Vec<String>,
    width: usize,
    count: usize,
    fingerprint: u64,
}

/// A tokenised corpus: its vocabulary, ids and fingerprint.
#[derive(Clone, Debug)]
pub struct Tokenized {
    /// The vocabulary the ids index.
    pub vocab: Vocab,
    /// The ids.
    pub tokens: Tokens,
    /// [`Tokens::fingerprint`], computed while writing.
    pub fingerprint: u64,
    /// Whether an existing token file was reused.
    pub reused: bool,
}

/// Tokenises `corpus` at `level` into the token file `path` (with its
/// sidecar `path.json`) and maps it. The vocabulary is `vocab` when given,
/// or built from the corpus with `min_count` as [`Vocab::build`] does. An
/// existing file made from the same unchanged source with the same
/// vocabulary is reused.
pub fn tokenize_to_file(
    corpus: &Corpus,
    level: Level,
    vocab: Option<&Vocab>,
    min_count: usize,
    path: &Path,
) -> Result<Tokenized> {
    let side_path = sidecar_path(path);
    let (bytes, modified_ns) = corpus.stamp()?;
    let source = corpus.name();
    if let Ok(text) = std::fs::read_to_string(&side_path) {
        if let Ok(s) = serde_json::from_str::<Sidecar>(&text) {
            let same_vocab = match vocab {
                Some(v) => v.tokens == s.vocab && v.level == level,
                None => s.min_count == Some(min_count),
            };
            if s.source == source
                && s.bytes == bytes
                && s.modified_ns == modified_ns
                && s.level == level.name()
                && same_vocab
            {
                if let Ok(tokens) = Tokens::map(path, s.width) {
                    if tokens.len() == s.count {
                        return Ok(Tokenized {
                            vocab: Vocab::from_tokens(level, s.vocab)?,
                            tokens,
                            fingerprint: s.fingerprint,
                            reused: true,
                        });
                    }
                }
            }
        }
    }
    let built = vocab.is_none();
    let vocab = match vocab {
        Some(v) => v.clone(),
        None => {
            let counts = count(corpus, level)?;
            if counts.is_empty() {
                return Err(Error::input(&source, "it holds no tokens"));
            }
            Vocab::from_counts(level, counts, min_count)?
        }
    };
    let width = if vocab.len() <= 1 << 16 { 2 } else { 4 };
    let tmp = temp_name(path);
    let written = write_ids(corpus, level, &vocab, width, &tmp);
    let (count, fingerprint) = match written {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if count == 0 {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::input(&source, "it holds no tokens"));
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    let side = Sidecar {
        source,
        bytes,
        modified_ns,
        level: level.name().to_string(),
        min_count: built.then_some(min_count),
        vocab: vocab.tokens.clone(),
        width,
        count,
        fingerprint,
    };
    crate::checkpoint::write_atomic(
        &side_path,
        serde_json::to_string(&side)
            .expect("sidecar serialises")
            .as_bytes(),
    )?;
    Ok(Tokenized {
        vocab,
        tokens: Tokens::map(path, width)?,
        fingerprint,
        reused: false,
    })
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(p)
}

/// The second pass: writes the ids to `tmp`, returning (N, fingerprint).
fn write_ids(
    corpus: &Corpus,
    level: Level,
    vocab: &Vocab,
    width: usize,
    tmp: &Path,
) -> Result<(usize, u64)> {
    let file = File::create(tmp).map_err(|e| io_err(tmp, e))?;
    let mut w = BufWriter::with_capacity(CHUNK, file);
    let mut enc = Encoder::new(vocab);
    let source = corpus.name();
    let mut n = 0u64;
    let mut hash = super::batch::fingerprint([]);
    scan(corpus, level, |t| {
        let id = enc.id(t, n, &source)?;
        n += 1;
        hash = (hash ^ u64::from(id)).wrapping_mul(0x0100_0000_01b3);
        let r = if width == 2 {
            w.write_all(&(id as u16).to_le_bytes())
        } else {
            w.write_all(&id.to_le_bytes())
        };
        r.map_err(|e| io_err(tmp, e))
    })?;
    let file = w.into_inner().map_err(|e| io_err(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| io_err(tmp, e))?;
    Ok((n as usize, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenize;

    fn ids_of(t: &Tokenized) -> Vec<u32> {
        t.tokens.to_vec(0..t.tokens.len())
    }

    #[test]
    fn streaming_matches_tokenize_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        // Lines and multi-byte characters straddle the 1 MiB chunks.
        let mut text = String::new();
        let mut i = 0u32;
        while text.len() < 3 * CHUNK + 777 {
            text.push_str(["héllo wörld", "  a\tb  ", "", "€uro ✓"][i as usize % 4]);
            text.push_str(if i.is_multiple_of(7) { "\r\n" } else { "\n" });
            i += 1;
        }
        text.push_str("last line without newline");
        let file = dir.path().join("c.txt");
        std::fs::write(&file, &text).unwrap();
        for level in [Level::Char, Level::Word] {
            let tokens = tokenize(&text, level);
            let vocab = Vocab::build(level, &tokens, 1).unwrap();
            let want = vocab.encode(&tokens, "x").unwrap();
            for corpus in [Corpus::File(&file), Corpus::Text(&text, "t")] {
                let out = dir.path().join(format!("{}.bin", level.name()));
                let t = tokenize_to_file(&corpus, level, None, 1, &out).unwrap();
                assert_eq!(t.vocab, vocab);
                assert!(t.tokens.is_mapped());
                assert_eq!(ids_of(&t), want);
                assert_eq!(t.fingerprint, Tokens::owned(want.clone()).fingerprint());
            }
        }
    }

    #[test]
    fn reuses_an_unchanged_file_and_redoes_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("c.txt");
        std::fs::write(&src, "abcabc\n").unwrap();
        let out = dir.path().join("tokens.bin");
        let a = tokenize_to_file(&Corpus::File(&src), Level::Char, None, 1, &out).unwrap();
        assert!(!a.reused);
        let b =
            tokenize_to_file(&Corpus::File(&src), Level::Char, Some(&a.vocab), 1, &out).unwrap();
        assert!(b.reused);
        assert_eq!(ids_of(&a), ids_of(&b));
        std::fs::write(&src, "abcabcd\n").unwrap();
        let c = tokenize_to_file(&Corpus::File(&src), Level::Char, None, 1, &out).unwrap();
        assert!(!c.reused);
        assert_eq!(c.tokens.len(), 8);
    }

    #[test]
    fn bad_bytes_name_offset_and_line_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bad.txt");
        std::fs::write(&src, b"ok\nstill ok\nbad \xff here\n").unwrap();
        let out = dir.path().join("tokens.bin");
        let e = tokenize_to_file(&Corpus::File(&src), Level::Char, None, 1, &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.txt:3") && e.contains("byte offset 16"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unknown_tokens_without_unk_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vocab::from_tokens(Level::Char, vec!["a".into()]).unwrap();
        let out = dir.path().join("t.bin");
        let e = tokenize_to_file(
            &Corpus::Text("aaz", "f.txt"),
            Level::Char,
            Some(&v),
            1,
            &out,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"z\"") && e.contains("token 2") && e.contains("f.txt"),
            "{e}"
        );
        assert!(!out.exists());
    }
}
