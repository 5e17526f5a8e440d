//! Readers of the data formats of sequence classification, tagging and
//! regression: labelled text (`label<TAB>text`, or one file per class),
//! CoNLL-U treebanks, sktime/UEA `.ts` time series, and numeric CSV tables.
//!
//! Each format has a pure `parse_*` function over the file's text, which
//! names the source in its errors, and a thin `read_*` wrapper that reads
//! the file. Errors about a file's contents are [`Error::Input`] naming the
//! file, the 1-based line, the field where one applies, and what was
//! expected. No input makes a reader panic.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Shared helpers

/// An [`Error::Input`] at a line (and field) of a source.
pub(crate) fn at(
    source: &str,
    line: usize,
    field: Option<String>,
    message: impl Into<String>,
) -> Error {
    Error::Input {
        path: source.to_string(),
        line: Some(line),
        field,
        message: message.into(),
    }
}

/// An [`Error::Io`] about a path.
fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The lines of a text with their 1-based numbers, without their line
/// endings (`\n` or `\r\n`).
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

/// Reads a file's bytes; an I/O failure is an [`Error::Io`] naming the path.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error(path, e))
}

// ---------------------------------------------------------------------------
// Encodings

/// Text encodings of input files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// UTF-8 (a leading byte-order mark is dropped).
    #[default]
    Utf8,
    /// Windows-1252 ("cp1252"), as the WHATWG Encoding Standard defines it:
    /// every byte decodes.
    Windows1252,
    /// ISO-8859-1: each byte is the code point of the same number.
    Latin1,
}

impl Encoding {
    /// Parses a name, case-insensitively: `utf-8`, `utf8`; `windows-1252`,
    /// `cp1252`; `latin1`, `latin-1`, `iso-8859-1`.
    pub fn from_name(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "windows-1252" | "cp1252" => Some(Encoding::Windows1252),
            "latin1" | "latin-1" | "iso-8859-1" => Some(Encoding::Latin1),
            _ => None,
        }
    }

    /// The canonical name: "utf-8", "windows-1252" or "latin1".
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Latin1 => "latin1",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Encoding, String> {
        Encoding::from_name(s).ok_or_else(|| {
            format!("unknown encoding '{s}': expected utf-8, windows-1252 (cp1252) or latin1 (iso-8859-1)")
        })
    }
}

/// Decodes bytes into text. Invalid UTF-8 is an [`Error::Input`] naming the
/// source, the line, and the byte offset (counted from the file's start),
/// and suggesting `--encoding windows-1252`. A UTF-8 byte-order mark is
/// stripped (in UTF-8 only: in the single-byte encodings its bytes are text).
pub fn decode(bytes: &[u8], encoding: Encoding, source: &str) -> Result<String> {
    match encoding {
        Encoding::Utf8 => {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let (skip, body) = match bytes.strip_prefix(BOM) {
                Some(rest) => (BOM.len(), rest),
                None => (0, bytes),
            };
            match std::str::from_utf8(body) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => {
                    let valid = e.valid_up_to();
                    let offset = skip + valid;
                    let before = body.get(..valid).unwrap_or(body);
                    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                    let byte = body
                        .get(valid)
                        .map(|b| format!(" (byte 0x{b:02x})"))
                        .unwrap_or_default();
                    Err(at(
                        source,
                        line,
                        None,
                        format!(
                            "invalid UTF-8 at byte offset {offset}{byte}: expected UTF-8 text; \
                             if the file is in another encoding, pass e.g. `--encoding windows-1252`"
                        ),
                    ))
                }
            }
        }
        Encoding::Windows1252 => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            Ok(text.into_owned())
        }
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Reads a file and decodes it ([`decode`]); I/O failures are [`Error::Io`].
pub fn read_decoded(path: &Path, encoding: Encoding) -> Result<String> {
    let bytes = read_bytes(path)?;
    decode(&bytes, encoding, &path.display().to_string())
}

// ---------------------------------------------------------------------------
// Labelled text

/// One labelled example of text classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labeled {
    /// The class.
    pub label: String,
    /// The text, without surrounding whitespace.
    pub text: String,
    /// The file it came from.
    pub source: String,
    /// Its 1-based line in that file.
    pub line: usize,
}

/// Parses `label<TAB>text` per line (the text runs from the first tab to
/// the end of the line; both are trimmed of surrounding whitespace). Blank
/// lines are skipped and CRLF line endings tolerated. A line without a tab,
/// or with an empty label or an empty text, is an error naming its line; so
/// is a text with no example at all.
pub fn parse_label_tab_text(text: &str, source: &str) -> Result<Vec<Labeled>> {
    let mut out = Vec::new();
    for (n, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let Some((label, body)) = line.split_once('\t') else {
            return Err(at(
                source,
                n,
                None,
                "no tab on this line: expected `label<TAB>text`",
            ));
        };
        let (label, body) = (label.trim(), body.trim());
        if label.is_empty() {
            return Err(at(
                source,
                n,
                Some("label".into()),
                "the label before the tab is empty: expected `label<TAB>text`",
            ));
        }
        if body.is_empty() {
            return Err(at(
                source,
                n,
                Some("text".into()),
                "the text after the tab is empty: expected `label<TAB>text`",
            ));
        }
        out.push(Labeled {
            label: label.to_string(),
            text: body.to_string(),
            source: source.to_string(),
            line: n,
        });
    }
    if out.is_empty() {
        return Err(Error::input(
            source,
            "no examples: expected lines of `label<TAB>text`",
        ));
    }
    Ok(out)
}

/// Reads a `label<TAB>text` file ([`parse_label_tab_text`]).
pub fn read_label_tab_text(path: &Path, encoding: Encoding) -> Result<Vec<Labeled>> {
    let text = read_decoded(path, encoding)?;
    parse_label_tab_text(&text, &path.display().to_string())
}

/// Lists the files that `paths` name: a file as it is, a directory as its
/// regular files (not recursively; hidden ones skipped) in sorted order.
fn expand_class_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| io_error(p, e))?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(p).map_err(|e| io_error(p, e))? {
            let entry = entry.map_err(|e| io_error(p, e))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// The class names of class files: their extensions when all share one stem
/// and all have an extension, else their stems.
fn class_labels(files: &[PathBuf]) -> Vec<String> {
    let stem = |p: &PathBuf| {
        p.file_stem()
            .or_else(|| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let ext = |p: &PathBuf| p.extension().map(|s| s.to_string_lossy().into_owned());
    let first_stem = files.first().map(stem);
    let by_extension = files
        .iter()
        .all(|p| Some(stem(p)) == first_stem && ext(p).is_some_and(|e| !e.is_empty()));
    files
        .iter()
        .map(|p| match ext(p) {
            Some(e) if by_extension => e,
            _ => stem(p),
        })
        .collect()
}

/// Reads one class per file, one example per line (blank lines skipped,
/// texts trimmed). A directory in `paths` expands to its regular files in
/// sorted order (hidden files skipped). The label is the file's extension
/// when all files share one stem (`rt-polarity.neg`, `rt-polarity.pos` give
/// "neg", "pos"), else the file's stem. Fewer than 2 files, two files giving
/// the same label, and a file with no example are errors.
pub fn read_class_files(paths: &[PathBuf], encoding: Encoding) -> Result<Vec<Labeled>> {
    let files = expand_class_paths(paths)?;
    let listed = || {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if files.len() < 2 {
        return Err(Error::input(
            if paths.is_empty() {
                "class files".to_string()
            } else {
                listed()
            },
            format!(
                "found {} class file(s): expected at least 2, one file per class with one example per line",
                files.len()
            ),
        ));
    }
    let labels = class_labels(&files);
    for (i, (label, file)) in labels.iter().zip(&files).enumerate() {
        if let Some(j) = labels.iter().take(i).position(|l| l == label) {
            let other = files.get(j).map(|p| p.display().to_string());
            return Err(Error::input(
                file.display(),
                format!(
                    "gives the class label '{label}', as {} does: each class file must give a different label",
                    other.unwrap_or_default()
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (label, file) in labels.iter().zip(&files) {
        let source = file.display().to_string();
        let text = read_decoded(file, encoding)?;
        let before = out.len();
        for (n, line) in numbered_lines(&text) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            out.push(Labeled {
                label: label.clone(),
                text: line.to_string(),
                source: source.clone(),
                line: n,
            });
        }
        if out.len() == before {
            return Err(Error::input(
                &source,
                format!("no examples of class '{label}': expected one example per line"),
            ));
        }
    }
    Ok(out)
}

/// Contractions split off the end of a word, as their own tokens.
const CONTRACTIONS: [&str; 7] = ["n't", "'s", "'ve", "'re", "'d", "'ll", "'m"];

/// Whether a character belongs to a word (letters, digits, combining marks,
/// the apostrophe); every other non-space character is a token of its own.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || ('\u{300}'..='\u{36f}').contains(&c)
}

/// Splits a run of word characters: a trailing contraction becomes its own
/// token (`don't` -> `do n't`, `it's` -> `it 's`), and apostrophes at the
/// start or end become tokens (`'quoted'` -> `' quoted '`).
fn push_word(run: &str, out: &mut Vec<String>) {
    if CONTRACTIONS.contains(&run) {
        out.push(run.to_string());
        return;
    }
    let (body, suffix) = CONTRACTIONS
        .iter()
        .find_map(|c| {
            run.strip_suffix(c)
                .filter(|b| !b.trim_matches('\'').is_empty())
                .map(|b| (b, Some(*c)))
        })
        .unwrap_or((run, None));
    let core = body.trim_matches('\'');
    let lead = body.len() - body.trim_start_matches('\'').len();
    let trail = if core.is_empty() {
        body.len() - lead
    } else {
        body.len() - body.trim_end_matches('\'').len()
    };
    out.extend(std::iter::repeat_n("'".to_string(), lead));
    if !core.is_empty() {
        out.push(core.to_string());
    }
    out.extend(std::iter::repeat_n("'".to_string(), trail));
    if let Some(s) = suffix {
        out.push(s.to_string());
    }
}

/// The words of a text for classification: lowercased, split on
/// whitespace, punctuation split off as one token per character, and
/// contractions kept as their own tokens, as in Kim (2014)'s `clean_str`
/// (`"Don't"` -> `do n't`, `"it's"` -> `it 's`; the typographic apostrophe
/// ’ counts as '). Deterministic.
pub fn words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    let mut out = Vec::new();
    let mut run = String::new();
    for c in lower.chars() {
        if is_word_char(c) {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            push_word(&run, &mut out);
            run.clear();
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !run.is_empty() {
        push_word(&run, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------
// CoNLL-U

/// A word of a CoNLL-U sentence: a line whose ID is an integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConlluWord {
    /// FORM (may contain spaces).
    pub form: String,
    /// UPOS, the universal part-of-speech tag.
    pub upos: String,
    /// XPOS, the language-specific tag.
    pub xpos: String,
    /// Its 1-based line in the file.
    pub line: usize,
    /// Its index into the sentence's `lines`.
    pub index: usize,
}

/// A CoNLL-U sentence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConlluSentence {
    /// Every line of the sentence verbatim (without its line ending):
    /// comments, multiword-token lines (`1-2`) and empty nodes (`8.1`)
    /// included, the blank line that ends it not.
    pub lines: Vec<String>,
    /// The words: only the lines whose ID is an integer, in order.
    pub words: Vec<ConlluWord>,
}

/// Which tag column of CoNLL-U.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TagColumn {
    /// UPOS, column 4.
    #[default]
    Upos,
    /// XPOS, column 5.
    Xpos,
}

impl TagColumn {
    /// Parses "upos" or "xpos" (case-insensitive).
    pub fn from_name(s: &str) -> Option<TagColumn> {
        match s.trim().to_ascii_lowercase().as_str() {
            "upos" => Some(TagColumn::Upos),
            "xpos" => Some(TagColumn::Xpos),
            _ => None,
        }
    }

    /// "upos" or "xpos".
    pub fn name(self) -> &'static str {
        match self {
            TagColumn::Upos => "upos",
            TagColumn::Xpos => "xpos",
        }
    }

    /// The 0-based tab-separated column.
    fn index(self) -> usize {
        match self {
            TagColumn::Upos => 3,
            TagColumn::Xpos => 4,
        }
    }
}

impl ConlluWord {
    /// The word's tag in a column.
    pub fn tag(&self, c: TagColumn) -> &str {
        match c {
            TagColumn::Upos => &self.upos,
            TagColumn::Xpos => &self.xpos,
        }
    }
}

/// The columns of a CoNLL-U line.
const CONLLU_COLUMNS: &str = "ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC";

/// What a CoNLL-U ID is.
enum ConlluId {
    /// An integer: a word.
    Word,
    /// A range `a-b` (a multiword token) or a decimal `a.b` (an empty node).
    Other,
}

/// Classifies an ID, or None when it is none of integer, range, decimal.
fn conllu_id(id: &str) -> Option<ConlluId> {
    let int = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if int(id) {
        return Some(ConlluId::Word);
    }
    let pair = |sep| id.split_once(sep).is_some_and(|(a, b)| int(a) && int(b));
    (pair('-') || pair('.')).then_some(ConlluId::Other)
}

/// Parses CoNLL-U (Universal Dependencies). Every non-comment line must have
/// exactly 10 tab-separated columns, and its ID must be an integer, a range
/// `a-b` or a decimal `a.b`. A sentence ends at a blank line or the end of
/// the text; consecutive blank lines are skipped, but a sentence with lines
/// and no word (no integer ID) is an error. FORM may contain spaces; CRLF
/// line endings are tolerated (and not kept in `lines`).
pub fn parse_conllu(text: &str, source: &str) -> Result<Vec<ConlluSentence>> {
    let mut out = Vec::new();
    let mut cur = ConlluSentence::default();
    let mut start = 0;
    let finish = |cur: &mut ConlluSentence, start: usize, out: &mut Vec<ConlluSentence>| {
        if cur.lines.is_empty() {
            return Ok(());
        }
        if cur.words.is_empty() {
            return Err(at(
                source,
                start,
                None,
                "the sentence starting on this line has no words: expected at least one line whose ID is an integer",
            ));
        }
        out.push(std::mem::take(cur));
        Ok(())
    };
    for (n, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            finish(&mut cur, start, &mut out)?;
            continue;
        }
        if cur.lines.is_empty() {
            start = n;
        }
        if line.starts_with('#') {
            cur.lines.push(line.to_string());
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let &[id, form, _lemma, upos, xpos, _feats, _head, _deprel, _deps, _misc] = cols.as_slice()
        else {
            let hint = if cols.len() == 1 && line.contains(' ') {
                " (are the columns separated by spaces instead of tabs?)"
            } else {
                ""
            };
            return Err(at(
                source,
                n,
                None,
                format!(
                    "found {} tab-separated column(s), expected 10 ({CONLLU_COLUMNS}){hint}",
                    cols.len()
                ),
            ));
        };
        match conllu_id(id) {
            Some(ConlluId::Word) => cur.words.push(ConlluWord {
                form: form.to_string(),
                upos: upos.to_string(),
                xpos: xpos.to_string(),
                line: n,
                index: cur.lines.len(),
            }),
            Some(ConlluId::Other) => {}
            None => {
                return Err(at(
                    source,
                    n,
                    Some("ID".into()),
                    format!(
                        "'{id}' is not a CoNLL-U ID: expected an integer (a word), a range a-b (a multiword token) or a decimal a.b (an empty node)"
                    ),
                ))
            }
        }
        cur.lines.push(line.to_string());
    }
    finish(&mut cur, start, &mut out)?;
    Ok(out)
}

/// Reads a UTF-8 CoNLL-U file ([`parse_conllu`]).
pub fn read_conllu(path: &Path) -> Result<Vec<ConlluSentence>> {
    let text = read_decoded(path, Encoding::Utf8)?;
    parse_conllu(&text, &path.display().to_string())
}

/// Writes sentences back as CoNLL-U with `tags[s][w]` in `column` of word w
/// of sentence s; every other line and column is unchanged (comments,
/// multiword tokens and empty nodes included), and each sentence is followed
/// by one blank line. A count of tag lists other than the sentences' is an
/// [`Error::Shape`]; a count of tags other than a sentence's words, a tag
/// that is empty or holds a tab or line break, or a sentence whose words do
/// not point at 10-column lines is an [`Error::Config`].
pub fn write_conllu(
    sentences: &[ConlluSentence],
    tags: &[Vec<String>],
    column: TagColumn,
) -> Result<String> {
    if tags.len() != sentences.len() {
        return Err(Error::Shape {
            name: "tags",
            shape: "[sentences]".into(),
            expected: sentences.len(),
            got: tags.len(),
        });
    }
    let col = column.index();
    let mut out = String::new();
    for (s, (sent, sent_tags)) in sentences.iter().zip(tags).enumerate() {
        if sent_tags.len() != sent.words.len() {
            return Err(Error::Config(format!(
                "tags[{s}] holds {} tags, but sentence {s} has {} words",
                sent_tags.len(),
                sent.words.len()
            )));
        }
        let mut replace: Vec<Option<&str>> = vec![None; sent.lines.len()];
        for (w, (word, tag)) in sent.words.iter().zip(sent_tags).enumerate() {
            if tag.is_empty() || tag.contains(['\t', '\n', '\r']) {
                return Err(Error::Config(format!(
                    "tags[{s}][{w}] = {tag:?}: a CoNLL-U tag must be non-empty, without tabs or line breaks (use \"_\" for none)"
                )));
            }
            let Some(slot) = replace.get_mut(word.index) else {
                return Err(Error::Config(format!(
                    "word {w} of sentence {s} points at line {} of the sentence, which has {} lines",
                    word.index,
                    sent.lines.len()
                )));
            };
            *slot = Some(tag);
        }
        for (i, (line, new_tag)) in sent.lines.iter().zip(&replace).enumerate() {
            match new_tag {
                None => out.push_str(line),
                Some(tag) => {
                    let mut cols: Vec<&str> = line.split('\t').collect();
                    let cols_len = cols.len();
                    match cols.get_mut(col) {
                        Some(c) if cols_len == 10 => *c = tag,
                        _ => {
                            return Err(Error::Config(format!(
                                "line {i} of sentence {s} is a word but does not have the 10 tab-separated columns of CoNLL-U"
                            )))
                        }
                    }
                    out.push_str(&cols.join("\t"));
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// sktime / UEA .ts

/// One instance of a `.ts` file: a series of `steps` steps of `channels`
/// values.
#[derive(Clone, Debug, PartialEq)]
pub struct TsSeries {
    /// T: time steps, at least 1.
    pub steps: usize,
    /// C: channels (the file's dimensions), at least 1.
    pub channels: usize,
    /// `[T, C]` row-major: step t, channel c at `t*C + c`.
    pub values: Vec<f32>,
}

/// The targets of a `.ts` file's instances.
#[derive(Clone, Debug, PartialEq)]
pub enum TsTarget {
    /// One class label per instance (`@classLabel true ...`).
    Class(Vec<String>),
    /// One value per instance (`@targetLabel true`, regression).
    Value(Vec<f64>),
    /// No target.
    None,
}

/// A `.ts` file's contents.
#[derive(Clone, Debug, PartialEq)]
pub struct TsData {
    /// `@problemName`.
    pub problem: Option<String>,
    /// The instances, in file order.
    pub series: Vec<TsSeries>,
    /// Their targets, in the same order.
    pub target: TsTarget,
    /// The header's class labels in their order (`@classLabel true ...`).
    pub class_labels: Option<Vec<String>>,
}

/// The header keys a `.ts` file may have (matched case-insensitively).
const TS_KEYS: &str = "@problemName, @timeStamps, @missing, @univariate, @dimensions, @equalLength, @seriesLength, @classLabel, @targetLabel, @data";

/// What a `.ts` header says.
#[derive(Default)]
struct TsHeader {
    problem: Option<String>,
    univariate: Option<bool>,
    dimensions: Option<usize>,
    equal_length: Option<bool>,
    series_length: Option<usize>,
    class_labels: Option<Vec<String>>,
    target_value: bool,
}

/// Parses `true` / `false` (case-insensitive) of a header key.
fn ts_bool(value: &str, source: &str, n: usize, key: &str) -> Result<bool> {
    let first = value.split_whitespace().next().unwrap_or("");
    match first.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(at(
            source,
            n,
            Some(key.to_string()),
            format!("expected true or false, found '{first}'"),
        )),
    }
}

/// Parses a positive integer of a header key.
fn ts_count(value: &str, source: &str, n: usize, key: &str) -> Result<usize> {
    let v = value.trim();
    match v.parse::<usize>() {
        Ok(k) if k > 0 => Ok(k),
        _ => Err(at(
            source,
            n,
            Some(key.to_string()),
            format!("expected a positive integer, found '{v}'"),
        )),
    }
}

/// Reads one header line (without its '@') into `h`; returns whether it
/// was `@data`.
fn ts_header_line(
    rest: &str,
    h: &mut TsHeader,
    seen: &mut Vec<(String, usize)>,
    source: &str,
    n: usize,
) -> Result<bool> {
    let (key, value) = match rest.split_once(char::is_whitespace) {
        Some((k, v)) => (k, v.trim()),
        None => (rest, ""),
    };
    let lower = key.to_ascii_lowercase();
    let field = format!("@{key}");
    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == lower) {
        return Err(at(
            source,
            n,
            Some(field),
            format!("given twice (first on line {first}): expected each header key once"),
        ));
    }
    seen.push((lower.clone(), n));
    match lower.as_str() {
        "problemname" => h.problem = Some(value.to_string()),
        "timestamps" => {
            if ts_bool(value, source, n, &field)? {
                return Err(at(
                    source,
                    n,
                    Some(field),
                    "time-stamped series are not supported: recur reads series of evenly spaced values (@timeStamps false)",
                ));
            }
        }
        // Missing values are refused where they occur, whatever this says.
        "missing" => {
            ts_bool(value, source, n, &field)?;
        }
        "univariate" => h.univariate = Some(ts_bool(value, source, n, &field)?),
        "dimensions" => h.dimensions = Some(ts_count(value, source, n, &field)?),
        "equallength" => h.equal_length = Some(ts_bool(value, source, n, &field)?),
        "serieslength" => h.series_length = Some(ts_count(value, source, n, &field)?),
        "classlabel" => {
            if ts_bool(value, source, n, &field)? {
                let labels: Vec<String> = value
                    .split_whitespace()
                    .skip(1)
                    .map(str::to_string)
                    .collect();
                if labels.is_empty() {
                    return Err(at(
                        source,
                        n,
                        Some(field),
                        "expected the class labels after `true`, such as `@classLabel true 1 2 3`",
                    ));
                }
                for (i, l) in labels.iter().enumerate() {
                    if labels.iter().take(i).any(|m| m == l) {
                        return Err(at(
                            source,
                            n,
                            Some(field),
                            format!(
                                "the class label '{l}' is listed twice: expected distinct labels"
                            ),
                        ));
                    }
                }
                h.class_labels = Some(labels);
            }
        }
        "targetlabel" => h.target_value = ts_bool(value, source, n, &field)?,
        "data" => {
            if h.class_labels.is_some() && h.target_value {
                return Err(at(
                    source,
                    n,
                    None,
                    "the header says both @classLabel true and @targetLabel true: expected at most one target",
                ));
            }
            if let (Some(true), Some(d)) = (h.univariate, h.dimensions) {
                if d != 1 {
                    return Err(at(
                        source,
                        n,
                        None,
                        format!("the header says @univariate true but @dimensions {d}: expected @dimensions 1 or @univariate false"),
                    ));
                }
            }
            return Ok(true);
        }
        _ => {
            return Err(at(
                source,
                n,
                Some(field),
                format!("unknown header key: expected one of {TS_KEYS}"),
            ))
        }
    }
    Ok(false)
}

/// Parses one value of a `.ts` series.
fn ts_value(cell: &str, source: &str, n: usize, d: usize, k: usize) -> Result<f32> {
    let field = || Some(format!("dimension {d}"));
    let cell = cell.trim();
    if cell.is_empty() {
        return Err(at(
            source,
            n,
            field(),
            format!("value {k} is empty: expected a number between the commas"),
        ));
    }
    if cell.starts_with('(') {
        return Err(at(
            source,
            n,
            field(),
            format!("'{cell}' looks like a time-stamped value: time stamps are not supported, expected plain numbers"),
        ));
    }
    let missing = || {
        at(
            source,
            n,
            field(),
            format!("missing value '{cell}' at value {k}: recur needs complete series (fill or drop such instances first)"),
        )
    };
    if cell == "?" {
        return Err(missing());
    }
    let x: f64 = cell.parse().map_err(|_| {
        at(
            source,
            n,
            field(),
            format!("value {k} '{cell}' is not a number"),
        )
    })?;
    if !x.is_finite() {
        return Err(missing());
    }
    let y = x as f32;
    if !y.is_finite() {
        return Err(at(
            source,
            n,
            field(),
            format!("value {k} '{cell}' is out of the range of f32"),
        ));
    }
    Ok(y)
}

/// Parses an sktime / UEA `.ts` time-series file: univariate or
/// multivariate, of equal or unequal lengths, with `@classLabel true
/// <labels...>` (classification), `@targetLabel true` (regression) or
/// neither. Lines starting with '#' are comments, blank lines are skipped,
/// header keys are case-insensitive. In a data line, dimensions are
/// separated by ':' and values by ','; the class label or target value, when
/// the header announces one, follows the last ':'.
///
/// Errors name the line (and the 0-based dimension where it applies): a data
/// line whose number of dimensions contradicts `@dimensions`, `@univariate`
/// or the lines before it; lengths that contradict `@equalLength true` or
/// `@seriesLength` (checked unless `@equalLength false`); dimensions of one
/// instance with different lengths; a class label not in `@classLabel`; a
/// target that is not a number; missing values ('?', NaN, infinities); an
/// empty dimension or value; `@timeStamps true`; an unknown or repeated
/// header key; no `@data`; no instances.
pub fn parse_ts(text: &str, source: &str) -> Result<TsData> {
    let mut h = TsHeader::default();
    let mut seen = Vec::new();
    let mut in_data = false;
    let mut series = Vec::new();
    let mut classes = Vec::new();
    let mut values = Vec::new();
    // (dimensions, line) and (length, line) of the first instance.
    let mut first_dims: Option<(usize, usize)> = None;
    let mut first_len: Option<(usize, usize)> = None;
    for (n, raw) in numbered_lines(text) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !in_data {
            let Some(rest) = line.strip_prefix('@') else {
                return Err(at(
                    source,
                    n,
                    None,
                    "expected a header line (@key value) or @data before the series",
                ));
            };
            in_data = ts_header_line(rest, &mut h, &mut seen, source, n)?;
            continue;
        }
        if line.starts_with('@') {
            return Err(at(
                source,
                n,
                None,
                "a header line after @data: expected the header before @data",
            ));
        }
        let has_target = h.class_labels.is_some() || h.target_value;
        let (body, target) = if has_target {
            match line.rsplit_once(':') {
                Some((b, t)) => (b, Some(t.trim())),
                None => {
                    let what = if h.target_value {
                        "target value"
                    } else {
                        "class label"
                    };
                    return Err(at(
                        source,
                        n,
                        None,
                        format!(
                            "no ':' on this line: expected the series, then ':' and the {what}"
                        ),
                    ));
                }
            }
        } else {
            (line, None)
        };
        let dims: Vec<&str> = body.split(':').collect();
        let expected = h
            .dimensions
            .map(|d| (d, "@dimensions says".to_string()))
            .or_else(|| (h.univariate == Some(true)).then(|| (1, "@univariate true says".into())))
            .or_else(|| first_dims.map(|(d, l)| (d, format!("line {l} has"))));
        if let Some((d, why)) = expected {
            if dims.len() != d {
                let hint = if has_target {
                    ""
                } else {
                    " (does the line end with a class label the header does not announce?)"
                };
                return Err(at(
                    source,
                    n,
                    None,
                    format!(
                        "found {} dimension(s), but {why} {d}: expected {d} ':'-separated dimension(s){hint}",
                        dims.len()
                    ),
                ));
            }
        }
        first_dims.get_or_insert((dims.len(), n));
        let mut channels: Vec<Vec<f32>> = Vec::with_capacity(dims.len());
        for (d, dim) in dims.iter().enumerate() {
            if dim.trim().is_empty() {
                return Err(at(
                    source,
                    n,
                    Some(format!("dimension {d}")),
                    "the dimension is empty: expected comma-separated numbers",
                ));
            }
            let ch = dim
                .split(',')
                .enumerate()
                .map(|(k, cell)| ts_value(cell, source, n, d, k))
                .collect::<Result<Vec<f32>>>()?;
            if let Some(first) = channels.first() {
                if ch.len() != first.len() {
                    return Err(at(
                        source,
                        n,
                        Some(format!("dimension {d}")),
                        format!(
                            "has {} values, but dimension 0 has {}: expected the dimensions of one instance to have equal lengths",
                            ch.len(),
                            first.len()
                        ),
                    ));
                }
            }
            channels.push(ch);
        }
        let steps = channels.first().map_or(0, Vec::len);
        let c = channels.len();
        if h.equal_length != Some(false) {
            if let Some(len) = h.series_length {
                if steps != len {
                    return Err(at(
                        source,
                        n,
                        None,
                        format!("the series has {steps} steps, but @seriesLength says {len}"),
                    ));
                }
            }
        }
        if h.equal_length == Some(true) {
            if let Some((len, l)) = first_len {
                if steps != len {
                    return Err(at(
                        source,
                        n,
                        None,
                        format!("the series has {steps} steps, but line {l} has {len}: @equalLength true says all series have one length"),
                    ));
                }
            }
        }
        first_len.get_or_insert((steps, n));
        match target {
            Some(t) if h.target_value => {
                let v: f64 = t.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
                    at(
                        source,
                        n,
                        Some("target".into()),
                        format!("'{t}' is not a number: @targetLabel true expects a finite number after the last ':'"),
                    )
                })?;
                values.push(v);
            }
            Some(t) => {
                let labels = h.class_labels.as_deref().unwrap_or_default();
                if !labels.iter().any(|l| l == t) {
                    return Err(at(
                        source,
                        n,
                        Some("class label".into()),
                        format!(
                            "'{t}' is not one of @classLabel's labels: {}",
                            labels.join(" ")
                        ),
                    ));
                }
                classes.push(t.to_string());
            }
            None => {}
        }
        let mut flat = vec![0f32; steps * c];
        for (ci, ch) in channels.iter().enumerate() {
            for (t, &x) in ch.iter().enumerate() {
                if let Some(slot) = flat.get_mut(t * c + ci) {
                    *slot = x;
                }
            }
        }
        series.push(TsSeries {
            steps,
            channels: c,
            values: flat,
        });
    }
    if !in_data {
        return Err(Error::input(
            source,
            "no @data line: expected a header ending in @data, then one series per line",
        ));
    }
    if series.is_empty() {
        return Err(Error::input(
            source,
            "no instances after @data: expected one series per line",
        ));
    }
    let target = if h.target_value {
        TsTarget::Value(values)
    } else if h.class_labels.is_some() {
        TsTarget::Class(classes)
    } else {
        TsTarget::None
    };
    Ok(TsData {
        problem: h.problem,
        series,
        target,
        class_labels: h.class_labels,
    })
}

/// Reads a UTF-8 `.ts` file ([`parse_ts`]).
pub fn read_ts(path: &Path) -> Result<TsData> {
    let text = read_decoded(path, Encoding::Utf8)?;
    parse_ts(&text, &path.display().to_string())
}

// ---------------------------------------------------------------------------
// CSV tables

/// Why a cell is not a usable number.
#[derive(Clone, Debug, PartialEq)]
struct BadCell {
    /// Its 1-based line.
    line: usize,
    /// What is wrong, naming the cell.
    message: String,
}

/// A numeric CSV table with a header row. Columns that hold a cell that is
/// not a finite number (such as a date column) are kept as that first bad
/// cell, and are an error only when asked for ([`Table::numeric`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The header's cells, unquoted and trimmed (the first may be empty, as
    /// in pandas' index column).
    pub header: Vec<String>,
    /// The number of data rows.
    rows: usize,
    /// Each column's values, or its first bad cell.
    columns: Vec<std::result::Result<Vec<f64>, BadCell>>,
}

impl Table {
    /// The number of data rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// A column as messages name it: `column 'name'`, or `column i` when
    /// its header cell is empty.
    fn describe(&self, idx: usize) -> String {
        match self.header.get(idx) {
            Some(h) if !h.is_empty() => format!("column '{h}'"),
            _ => format!("column {idx}"),
        }
    }

    /// The index of a column given by header name or, when no header cell
    /// has that name, by 0-based index. An unknown name, an index out of
    /// range and a name the header gives twice are errors listing the
    /// header.
    pub fn column_index(&self, name_or_index: &str, source: &str) -> Result<usize> {
        let listing = || {
            self.header
                .iter()
                .enumerate()
                .map(|(i, h)| format!("{i}: '{h}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let matches: Vec<usize> = self
            .header
            .iter()
            .enumerate()
            .filter(|(_, h)| *h == name_or_index)
            .map(|(i, _)| i)
            .collect();
        match matches[..] {
            [i] => return Ok(i),
            [i, j, ..] => {
                return Err(Error::input(
                    source,
                    format!("the header names columns {i} and {j} '{name_or_index}': give the column's 0-based index instead (the header is {})", listing()),
                ))
            }
            [] => {}
        }
        match name_or_index.trim().parse::<usize>() {
            Ok(i) if i < self.header.len() => Ok(i),
            Ok(i) => Err(Error::input(
                source,
                format!(
                    "column {i} does not exist: the table has {} columns ({})",
                    self.header.len(),
                    listing()
                ),
            )),
            Err(_) => Err(Error::input(
                source,
                format!(
                    "no column named '{name_or_index}': the header is {} (a 0-based index works too)",
                    listing()
                ),
            )),
        }
    }

    /// The values of column `idx`; an error naming the line and the column
    /// of its first cell that is empty, not a number, or not finite, or an
    /// error when there is no such column.
    pub fn numeric(&self, idx: usize, source: &str) -> Result<&[f64]> {
        match self.columns.get(idx) {
            Some(Ok(v)) => Ok(v),
            Some(Err(bad)) => Err(at(
                source,
                bad.line,
                Some(self.describe(idx)),
                bad.message.clone(),
            )),
            None => Err(Error::input(
                source,
                format!(
                    "column {idx} does not exist: the table has {} columns",
                    self.header.len()
                ),
            )),
        }
    }

    /// The values of a column given by name or index ([`Table::column_index`],
    /// [`Table::numeric`]).
    pub fn column(&self, name_or_index: &str, source: &str) -> Result<&[f64]> {
        let idx = self.column_index(name_or_index, source)?;
        self.numeric(idx, source)
    }
}

/// Splits a CSV line into cells, trimmed, with `"quoted"` cells unquoted
/// (`""` inside stands for `"`; commas inside quotes do not split). An
/// unterminated quote is an error.
fn csv_cells(line: &str, source: &str, n: usize) -> Result<Vec<String>> {
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        if let Some(q) = trimmed.strip_prefix('"') {
            let mut cell = String::new();
            let mut chars = q.char_indices();
            let after =
                loop {
                    match chars.next() {
                        Some((i, '"')) => {
                            if q.get(i + 1..).is_some_and(|s| s.starts_with('"')) {
                                cell.push('"');
                                chars.next();
                            } else {
                                break q.get(i + 1..).unwrap_or("");
                            }
                        }
                        Some((_, c)) => cell.push(c),
                        None => return Err(at(
                            source,
                            n,
                            Some(format!("cell {}", cells.len())),
                            "a quote that is not closed: expected a closing '\"' on the same line",
                        )),
                    }
                };
            cells.push(cell);
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(r) => rest = r,
                None if after.is_empty() => return Ok(cells),
                None => {
                    return Err(at(
                        source,
                        n,
                        Some(format!("cell {}", cells.len() - 1)),
                        "text after a closing quote: expected ',' or the end of the line",
                    ))
                }
            }
        } else {
            match trimmed.split_once(',') {
                Some((c, r)) => {
                    cells.push(c.trim().to_string());
                    rest = r;
                }
                None => {
                    cells.push(trimmed.trim().to_string());
                    return Ok(cells);
                }
            }
        }
    }
}

/// Parses a numeric CSV table with a header row (cells separated by ',',
/// optionally `"quoted"`; blank lines skipped; CRLF tolerated). The first
/// header cell may be empty (pandas' index column). Every row must have as
/// many cells as the header. Cells parse as f64; a column with an empty,
/// non-numeric or non-finite cell is kept as an error that
/// [`Table::numeric`] returns when that column is asked for, so a date
/// column does not stop the others from being read. No header, or no data
/// row, is an error.
pub fn parse_csv_table(text: &str, source: &str) -> Result<Table> {
    let mut lines = numbered_lines(text).filter(|(_, l)| !l.trim().is_empty());
    let Some((hn, head)) = lines.next() else {
        return Err(Error::input(
            source,
            "the file is empty: expected a header row, then rows of numbers",
        ));
    };
    let header = csv_cells(head, source, hn)?;
    let width = header.len();
    let mut columns: Vec<std::result::Result<Vec<f64>, BadCell>> =
        (0..width).map(|_| Ok(Vec::new())).collect();
    let mut rows = 0;
    for (n, line) in lines {
        let cells = csv_cells(line, source, n)?;
        if cells.len() != width {
            return Err(at(
                source,
                n,
                None,
                format!(
                    "found {} cell(s), expected {width}, one per header column ({})",
                    cells.len(),
                    header.join(", ")
                ),
            ));
        }
        for (col, cell) in columns.iter_mut().zip(&cells) {
            let Ok(values) = col else { continue };
            let problem = if cell.is_empty() {
                Some("the cell is empty: expected a number".to_string())
            } else {
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() => {
                        values.push(v);
                        None
                    }
                    Ok(_) => Some(format!("'{cell}' is not a finite number")),
                    Err(_) => Some(format!("'{cell}' is not a number")),
                }
            };
            if let Some(message) = problem {
                *col = Err(BadCell { line: n, message });
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(at(
            source,
            hn,
            None,
            "the header row is the last row: expected rows of numbers after it",
        ));
    }
    Ok(Table {
        header,
        rows,
        columns,
    })
}

/// Reads a UTF-8 CSV table ([`parse_csv_table`]).
pub fn read_csv_table(path: &Path) -> Result<Table> {
    let text = read_decoded(path, Encoding::Utf8)?;
    parse_csv_table(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of an error, as the CLI shows it.
    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    /// Asserts that a message contains every part.
    #[track_caller]
    fn has(m: &str, parts: &[&str]) {
        for p in parts {
            assert!(m.contains(p), "{m:?} lacks {p:?}");
        }
    }

    // --- encodings ---

    #[test]
    fn encoding_names() {
        for (s, e) in [
            ("UTF-8", Encoding::Utf8),
            ("utf8", Encoding::Utf8),
            ("Windows-1252", Encoding::Windows1252),
            ("cp1252", Encoding::Windows1252),
            ("latin1", Encoding::Latin1),
            ("LATIN-1", Encoding::Latin1),
            ("iso-8859-1", Encoding::Latin1),
        ] {
            assert_eq!(Encoding::from_name(s), Some(e), "{s}");
            assert_eq!(Encoding::from_name(e.name()), Some(e));
        }
        assert_eq!(Encoding::from_name("ebcdic"), None);
        assert!("koi8"
            .parse::<Encoding>()
            .unwrap_err()
            .contains("windows-1252"));
    }

    #[test]
    fn decodes_and_names_bad_utf8() {
        assert_eq!(
            decode(b"\xEF\xBB\xBFab", Encoding::Utf8, "f").unwrap(),
            "ab"
        );
        assert_eq!(
            decode(b"caf\xe9 \x93x\x94", Encoding::Windows1252, "f").unwrap(),
            "café \u{201c}x\u{201d}"
        );
        assert_eq!(
            decode(b"caf\xe9 \x93", Encoding::Latin1, "f").unwrap(),
            "café \u{93}"
        );
        let m = msg(decode(b"\xEF\xBB\xBFok\nab\xe9", Encoding::Utf8, "in.txt"));
        has(
            &m,
            &[
                "in.txt:2:",
                "byte offset 8",
                "0xe9",
                "--encoding windows-1252",
            ],
        );
        // A truncated sequence at the very end.
        let m = msg(decode(b"a\xe2\x82", Encoding::Utf8, "t"));
        has(&m, &["t:1:", "byte offset 1"]);
    }

    // --- labelled text ---

    #[test]
    fn label_tab_text() {
        let v =
            parse_label_tab_text("pos\tgood film\r\n\n  \nneg\tbad\tand long \n", "d.tsv").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            Labeled {
                label: "pos".into(),
                text: "good film".into(),
                source: "d.tsv".into(),
                line: 1
            }
        );
        assert_eq!(
            (v[1].label.as_str(), v[1].text.as_str(), v[1].line),
            ("neg", "bad\tand long", 4)
        );
    }

    #[test]
    fn label_tab_text_errors() {
        has(
            &msg(parse_label_tab_text("a\tb\nno tab here\n", "d.tsv")),
            &["d.tsv:2:", "no tab", "label<TAB>text"],
        );
        has(
            &msg(parse_label_tab_text("a\tb\n\n \tb\n", "d.tsv")),
            &["d.tsv:3: label:", "empty"],
        );
        has(
            &msg(parse_label_tab_text("a\t  \n", "d.tsv")),
            &["d.tsv:1: text:", "empty"],
        );
        has(
            &msg(parse_label_tab_text("\n\n", "d.tsv")),
            &["d.tsv", "no examples"],
        );
    }

    #[test]
    fn words_split_punctuation_and_contractions() {
        assert_eq!(
            words("It's a DON'T-miss, isn't it?! (Really.)"),
            [
                "it", "'s", "a", "do", "n't", "-", "miss", ",", "is", "n't", "it", "?", "!", "(",
                "really", ".", ")"
            ]
        );
        assert_eq!(
            words("'quoted' dogs' we'll I'm they've you'd we're 's n't"),
            [
                "'", "quoted", "'", "dogs", "'", "we", "'ll", "i", "'m", "they", "'ve", "you",
                "'d", "we", "'re", "'s", "n't"
            ]
        );
        assert_eq!(
            words("Café  rock'n'roll can’t"),
            ["café", "rock'n'roll", "ca", "n't"]
        );
        assert_eq!(words(" ' '' "), ["'", "'", "'"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn class_files_from_paths_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("rt.pos"), "good\n\nfine film \n").unwrap();
        std::fs::write(d.join("rt.neg"), "bad\r\n").unwrap();
        std::fs::write(d.join(".hidden"), "x\n").unwrap();
        let v = read_class_files(&[d.to_path_buf()], Encoding::Utf8).unwrap();
        let got: Vec<_> = v
            .iter()
            .map(|e| (e.label.as_str(), e.text.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("neg", "bad", 1),
                ("pos", "good", 1),
                ("pos", "fine film", 3)
            ]
        );
        assert!(v[0].source.ends_with("rt.neg"));

        // Different stems: the stems are the labels.
        let e = tempfile::tempdir().unwrap();
        std::fs::write(e.path().join("sports.txt"), "goal\n").unwrap();
        std::fs::write(e.path().join("politics.txt"), "vote\n").unwrap();
        let v = read_class_files(
            &[e.path().join("sports.txt"), e.path().join("politics.txt")],
            Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(v[0].label, "sports");
        assert_eq!(v[1].label, "politics");

        // Errors: one file; the same label twice; an empty class; a missing file.
        has(
            &msg(read_class_files(
                &[e.path().join("sports.txt")],
                Encoding::Utf8,
            )),
            &["sports.txt", "found 1 class file", "at least 2"],
        );
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub").join("rt.pos"), "again\n").unwrap();
        has(
            &msg(read_class_files(
                &[d.to_path_buf(), d.join("sub")],
                Encoding::Utf8,
            )),
            &["sub", "rt.pos", "'pos'", "different label"],
        );
        std::fs::write(e.path().join("empty.txt"), "\n \n").unwrap();
        has(
            &msg(read_class_files(&[e.path().to_path_buf()], Encoding::Utf8)),
            &["empty.txt", "no examples of class 'empty'"],
        );
        assert!(matches!(
            read_class_files(&[d.join("nope")], Encoding::Utf8),
            Err(Error::Io { .. })
        ));
        // A decoding error names the file.
        std::fs::write(d.join("rt.neg"), b"caf\xe9\n").unwrap();
        has(
            &msg(read_class_files(
                &[d.join("rt.neg"), d.join("rt.pos")],
                Encoding::Utf8,
            )),
            &["rt.neg:1:", "byte offset 3"],
        );
    }

    // --- CoNLL-U ---

    const CONLLU: &str = "# sent_id = 1\n\
# text = I don't know\n\
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_\n\
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n\
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_\n\
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n\
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_\n\
4.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t0:root\t_\n\
\n\
\n\
1\tNew York\tNew York\tPROPN\tNNP\t_\t0\troot\t_\t_\r\n\
";

    #[test]
    fn conllu_reads_words_and_keeps_lines() {
        let s = parse_conllu(CONLLU, "t.conllu").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].lines.len(), 8);
        let forms: Vec<_> = s[0].words.iter().map(|w| w.form.as_str()).collect();
        assert_eq!(forms, ["I", "do", "n't", "know"]);
        let w = &s[0].words[1];
        assert_eq!(
            (w.upos.as_str(), w.xpos.as_str(), w.line, w.index),
            ("AUX", "VBP", 5, 4)
        );
        assert_eq!(w.tag(TagColumn::Xpos), "VBP");
        assert_eq!(s[1].words[0].form, "New York");
        assert_eq!(s[1].words[0].line, 11);
        assert!(!s[1].lines[0].ends_with('\r'));
        assert_eq!(TagColumn::from_name("XPOS"), Some(TagColumn::Xpos));
        assert_eq!(TagColumn::Upos.name(), "upos");
        assert_eq!(parse_conllu("\n\n", "e").unwrap(), []);
    }

    #[test]
    fn conllu_writes_tags_back() {
        let s = parse_conllu(CONLLU, "t.conllu").unwrap();
        let gold: Vec<Vec<String>> = s
            .iter()
            .map(|x| x.words.iter().map(|w| w.upos.clone()).collect())
            .collect();
        let out = write_conllu(&s, &gold, TagColumn::Upos).unwrap();
        assert_eq!(
            out,
            CONLLU.replace("\r", "").replace("\n\n\n", "\n\n") + "\n"
        );
        let tags = vec![
            vec!["A".to_string(), "B".into(), "C".into(), "D".into()],
            vec!["E".into()],
        ];
        let out = write_conllu(&s, &tags, TagColumn::Xpos).unwrap();
        has(
            &out,
            &[
                "2\tdo\tdo\tAUX\tB\t_",
                "2-3\tdon't\t_\t_\t_\t",
                "4.1\tknow\tknow\tVERB\tVB\t",
                "1\tNew York\tNew York\tPROPN\tE\t",
            ],
        );
        assert!(matches!(
            write_conllu(&s, &tags[..1], TagColumn::Upos),
            Err(Error::Shape {
                expected: 2,
                got: 1,
                ..
            })
        ));
        let short = vec![tags[0][..3].to_vec(), tags[1].clone()];
        has(
            &msg(write_conllu(&s, &short, TagColumn::Upos)),
            &["tags[0] holds 3 tags", "4 words"],
        );
        let bad = vec![tags[0].clone(), vec!["a\tb".to_string()]];
        assert!(matches!(
            write_conllu(&s, &bad, TagColumn::Upos),
            Err(Error::Config(_))
        ));
        // Hand-built sentences that do not hold together are errors, not panics.
        let mut broken = s.clone();
        broken[1].words[0].index = 7;
        assert!(matches!(
            write_conllu(&broken, &tags, TagColumn::Upos),
            Err(Error::Config(_))
        ));
        broken[1].words[0].index = 0;
        broken[1].lines[0] = "1\tx".into();
        assert!(matches!(
            write_conllu(&broken, &tags, TagColumn::Upos),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn conllu_errors() {
        has(
            &msg(parse_conllu(
                "# c\n1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\n",
                "t.conllu",
            )),
            &[
                "t.conllu:2:",
                "found 9 tab-separated column(s), expected 10",
            ],
        );
        has(
            &msg(parse_conllu("1 I I PRON PRP _ 0 root _ _\n", "t.conllu")),
            &[
                "t.conllu:1:",
                "found 1",
                "expected 10",
                "spaces instead of tabs",
            ],
        );
        has(
            &msg(parse_conllu(
                "1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n\nx1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n",
                "t.conllu",
            )),
            &["t.conllu:3: ID:", "'x1'", "expected an integer"],
        );
        for id in ["1-", "-2", "1.", "1-2-3", "1.2.3", ""] {
            let line = format!("{id}\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n");
            has(&msg(parse_conllu(&line, "t")), &["t:1: ID:"]);
        }
        has(
            &msg(parse_conllu(
                "1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n\n# only\n# comments\n",
                "t",
            )),
            &["t:3:", "has no words"],
        );
        has(
            &msg(parse_conllu("1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_\n", "t")),
            &["t:1:", "has no words"],
        );
    }

    // --- .ts ---

    const TS_MULTI: &str = "#comment\n\
@problemName Toy\n\
@timeStamps false\n\
@missing false\n\
@univariate false\n\
@dimensions 2\n\
@equalLength false\n\
@classLabel true a b\n\
\n\
@data\n\
1,2,3:4,5,6:a\n\
# a comment between instances\n\
7,8:9,10:b\r\n";

    #[test]
    fn ts_multivariate_unequal() {
        let d = parse_ts(TS_MULTI, "toy.ts").unwrap();
        assert_eq!(d.problem.as_deref(), Some("Toy"));
        assert_eq!(d.class_labels, Some(vec!["a".to_string(), "b".into()]));
        assert_eq!(d.target, TsTarget::Class(vec!["a".into(), "b".into()]));
        assert_eq!(d.series.len(), 2);
        assert_eq!(
            d.series[0],
            TsSeries {
                steps: 3,
                channels: 2,
                values: vec![1., 4., 2., 5., 3., 6.]
            }
        );
        assert_eq!(d.series[1].steps, 2);
    }

    #[test]
    fn ts_univariate_regression_and_unlabelled() {
        let text = "@PROBLEMNAME r\n@Univariate TRUE\n@equallength true\n@serieslength 2\n@targetlabel true\n@DATA\n0.5,-1e-3:2.25\n1,2 : -3\n";
        let d = parse_ts(text, "r.ts").unwrap();
        assert_eq!(d.target, TsTarget::Value(vec![2.25, -3.0]));
        assert_eq!(d.class_labels, None);
        assert_eq!(d.series[0].values, [0.5, -1e-3]);
        assert_eq!(d.series[1].channels, 1);
        let d = parse_ts("@data\n1,2\n3\n", "u.ts").unwrap();
        assert_eq!(d.target, TsTarget::None);
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.problem, None);
    }

    #[test]
    fn ts_errors() {
        let head = "@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n";
        let e = |data: &str| msg(parse_ts(&format!("{head}{data}"), "x.ts"));
        // Dimensions contradicting @dimensions, @univariate, earlier lines.
        has(
            &e("1,2:3,4:a\n1,2:3,4:5,6:b\n"),
            &["x.ts:6:", "found 3 dimension(s)", "@dimensions says 2"],
        );
        has(
            &msg(parse_ts(
                "@univariate true\n@classLabel true a\n@data\n1,2:3,4:a\n",
                "x.ts",
            )),
            &["x.ts:4:", "found 2", "@univariate true says 1"],
        );
        has(
            &msg(parse_ts("@data\n1:2\n1:2:3\n", "x.ts")),
            &[
                "x.ts:3:",
                "found 3",
                "line 2 has 2",
                "class label the header does not announce",
            ],
        );
        // Lengths.
        has(
            &msg(parse_ts("@equalLength true\n@data\n1,2\n1,2,3\n", "x.ts")),
            &["x.ts:4:", "3 steps", "line 3 has 2", "@equalLength true"],
        );
        has(
            &msg(parse_ts("@seriesLength 2\n@data\n1,2\n1,2,3\n", "x.ts")),
            &["x.ts:4:", "3 steps", "@seriesLength says 2"],
        );
        has(
            &e("1,2,3:4,5:a\n"),
            &["x.ts:5: dimension 1:", "has 2 values", "dimension 0 has 3"],
        );
        // Targets.
        has(&e("1:2:c\n"), &["x.ts:5: class label:", "'c'", "a b"]);
        has(&e("1,2\n"), &["x.ts:5:", "no ':'", "class label"]);
        has(
            &msg(parse_ts("@targetLabel true\n@data\n1,2:abc\n", "x.ts")),
            &["x.ts:3: target:", "'abc' is not a number"],
        );
        has(
            &msg(parse_ts("@targetLabel true\n@data\n1,2:NaN\n", "x.ts")),
            &["x.ts:3: target:", "'NaN'"],
        );
        // Missing, empty, bad values.
        has(
            &e("1,?:3,4:a\n"),
            &[
                "x.ts:5: dimension 0:",
                "missing value '?'",
                "complete series",
            ],
        );
        has(
            &e("1,2:NaN,4:a\n"),
            &["x.ts:5: dimension 1:", "missing value 'NaN'"],
        );
        has(
            &e("1,2:inf,4:a\n"),
            &["dimension 1:", "missing value 'inf'"],
        );
        has(&e("1,2::a\n"), &["x.ts:5: dimension 1:", "empty"]);
        has(
            &e("1,,2:3,4,5:a\n"),
            &["x.ts:5: dimension 0:", "value 1 is empty"],
        );
        has(
            &e("1,x:3,4:a\n"),
            &["x.ts:5: dimension 0:", "'x' is not a number"],
        );
        has(&e("1,1e300:3,4:a\n"), &["dimension 0:", "range of f32"]);
        has(
            &e("(0,1),(1,2):(0,3):a\n"),
            &["dimension 0:", "time stamps are not supported"],
        );
        // Header.
        has(
            &msg(parse_ts("@timeStamps true\n@data\n1\n", "x.ts")),
            &["x.ts:1: @timeStamps:", "not supported"],
        );
        has(
            &msg(parse_ts("@univariate maybe\n@data\n1\n", "x.ts")),
            &["x.ts:1: @univariate:", "true or false"],
        );
        has(
            &msg(parse_ts("@dimensions 0\n@data\n1\n", "x.ts")),
            &["x.ts:1: @dimensions:", "positive integer"],
        );
        has(
            &msg(parse_ts("@colour red\n@data\n1\n", "x.ts")),
            &["x.ts:1: @colour:", "unknown header key"],
        );
        has(
            &msg(parse_ts("@data\n1\n@missing false\n", "x.ts")),
            &["x.ts:3:", "after @data"],
        );
        has(
            &msg(parse_ts("1,2\n@data\n", "x.ts")),
            &["x.ts:1:", "header line"],
        );
        has(
            &msg(parse_ts("@classLabel true\n@data\n1:a\n", "x.ts")),
            &["x.ts:1: @classLabel:", "class labels after `true`"],
        );
        has(
            &msg(parse_ts("@classLabel true a a\n@data\n1:a\n", "x.ts")),
            &["listed twice"],
        );
        has(
            &msg(parse_ts(
                "@classLabel true a\n@targetLabel true\n@data\n1:a\n",
                "x.ts",
            )),
            &["x.ts:3:", "both @classLabel true and @targetLabel true"],
        );
        has(
            &msg(parse_ts(
                "@univariate true\n@dimensions 3\n@data\n1\n",
                "x.ts",
            )),
            &["x.ts:3:", "@dimensions 3"],
        );
        has(
            &msg(parse_ts(
                "@missing false\n@Missing true\n@data\n1\n",
                "x.ts",
            )),
            &["x.ts:2: @Missing:", "twice (first on line 1)"],
        );
        has(
            &msg(parse_ts("# only\n@problemName p\n", "x.ts")),
            &["x.ts: ", "no @data"],
        );
        has(
            &msg(parse_ts("@data\n\n# none\n", "x.ts")),
            &["x.ts: ", "no instances"],
        );
    }

    // --- CSV ---

    #[test]
    fn csv_table() {
        let t = parse_csv_table(
            "\"Date\",x,\"a \"\"q\"\", b\"\r\n1949-01,1.5,3\n\n1949-02, 2.5 ,4\n",
            "f.csv",
        )
        .unwrap();
        assert_eq!(t.header, ["Date", "x", "a \"q\", b"]);
        assert_eq!(t.rows(), 2);
        assert_eq!(t.column("x", "f.csv").unwrap(), [1.5, 2.5]);
        assert_eq!(t.column("2", "f.csv").unwrap(), [3.0, 4.0]);
        assert_eq!(t.column_index("a \"q\", b", "f.csv").unwrap(), 2);
        has(
            &msg(t.column("Date", "f.csv")),
            &["f.csv:2: column 'Date':", "'1949-01' is not a number"],
        );
        has(
            &msg(t.column_index("y", "f.csv")),
            &["no column named 'y'", "0: 'Date', 1: 'x'"],
        );
        has(
            &msg(t.column_index("3", "f.csv")),
            &["column 3 does not exist", "3 columns"],
        );
        has(&msg(t.numeric(9, "f.csv")), &["column 9 does not exist"]);
        // pandas' unnamed index column; a header cell that is a number is a name first.
        let t = parse_csv_table(",0\n1821,269\n1822,321\n", "lynx.csv").unwrap();
        assert_eq!(t.column("0", "lynx.csv").unwrap(), [269.0, 321.0]);
        assert_eq!(t.numeric(0, "lynx.csv").unwrap(), [1821.0, 1822.0]);
        let t = parse_csv_table("a,a\n1,2\n", "d.csv").unwrap();
        has(&msg(t.column_index("a", "d.csv")), &["columns 0 and 1 'a'"]);
    }

    #[test]
    fn csv_errors() {
        let t = parse_csv_table("t,x\n0,1\n1,\n2,nan\n", "f.csv").unwrap();
        has(
            &msg(t.numeric(1, "f.csv")),
            &["f.csv:3: column 'x':", "empty"],
        );
        let t = parse_csv_table("t,x\n0,1\n2,inf\n", "f.csv").unwrap();
        has(
            &msg(t.column("x", "f.csv")),
            &["f.csv:3: column 'x':", "'inf' is not a finite number"],
        );
        let t = parse_csv_table(",x\nz,1\n", "f.csv").unwrap();
        has(&msg(t.numeric(0, "f.csv")), &["f.csv:2: column 0:", "'z'"]);
        has(
            &msg(parse_csv_table("t,x\n0,1\n1,2,3\n", "f.csv")),
            &["f.csv:3:", "found 3 cell(s), expected 2", "t, x"],
        );
        has(
            &msg(parse_csv_table("t,x\n0\n", "f.csv")),
            &["f.csv:2:", "found 1 cell(s), expected 2"],
        );
        has(
            &msg(parse_csv_table("\n \n", "f.csv")),
            &["f.csv: ", "empty"],
        );
        has(
            &msg(parse_csv_table("t,x\n\n", "f.csv")),
            &["f.csv:1:", "rows of numbers after"],
        );
        has(
            &msg(parse_csv_table("t,\"x\n0,1\n", "f.csv")),
            &["f.csv:1: cell 1:", "not closed"],
        );
        has(
            &msg(parse_csv_table("t,\"x\"y\n0,1\n", "f.csv")),
            &["f.csv:1: cell 1:", "after a closing quote"],
        );
    }

    // --- never panics ---

    #[test]
    fn hostile_bytes_do_not_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"0123456789.,:-?@#\t\n\r \"'abcnNeE\xe9\xff";
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            for enc in [Encoding::Utf8, Encoding::Windows1252, Encoding::Latin1] {
                let _ = decode(&bytes, enc, "fuzz");
            }
            let text = decode(&bytes, Encoding::Latin1, "fuzz").unwrap();
            let _ = parse_label_tab_text(&text, "fuzz");
            let _ = words(&text);
            if let Ok(s) = parse_conllu(&text, "fuzz") {
                let tags: Vec<Vec<String>> = s
                    .iter()
                    .map(|x| x.words.iter().map(|_| "X".into()).collect())
                    .collect();
                let _ = write_conllu(&s, &tags, TagColumn::Xpos);
            }
            let _ = parse_ts(&format!("@data\n{text}"), "fuzz");
            let _ = parse_ts(&format!("@classLabel true a 1\n@data\n{text}"), "fuzz");
            let _ = parse_ts(&format!("@targetLabel true\n@data\n{text}"), "fuzz");
            if let Ok(t) = parse_csv_table(&text, "fuzz") {
                for i in 0..t.header.len() + 1 {
                    let _ = t.numeric(i, "fuzz");
                }
            }
        }
    }

    // --- the real data sets (skipped where ../shared/data is absent) ---

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

    fn data(rel: &str) -> Option<PathBuf> {
        let p = Path::new(DATA).join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipping: {} is absent", p.display());
            None
        }
    }

    #[test]
    fn real_ud_english_ewt_dev_round_trips() {
        let Some(p) = data("ud-english-ewt/en_ewt-ud-dev.conllu") else {
            return;
        };
        let s = read_conllu(&p).unwrap();
        assert_eq!(s.len(), 2001);
        let multiword = s
            .iter()
            .flat_map(|x| &x.lines)
            .filter(|l| l.split('\t').next().is_some_and(|id| id.contains('-')));
        assert!(multiword.count() > 100);
        let gold: Vec<Vec<String>> = s
            .iter()
            .map(|x| x.words.iter().map(|w| w.upos.clone()).collect())
            .collect();
        let out = write_conllu(&s, &gold, TagColumn::Upos).unwrap();
        let file = std::fs::read_to_string(&p).unwrap();
        assert_eq!(out.trim_end(), file.trim_end());
        let xgold: Vec<Vec<String>> = s
            .iter()
            .map(|x| x.words.iter().map(|w| w.xpos.clone()).collect())
            .collect();
        assert_eq!(write_conllu(&s, &xgold, TagColumn::Xpos).unwrap(), out);
    }

    #[test]
    fn real_movie_reviews() {
        let (Some(neg), Some(pos)) = (data("mr/rt-polarity.neg"), data("mr/rt-polarity.pos"))
        else {
            return;
        };
        let v = read_class_files(&[neg.clone(), pos.clone()], Encoding::Windows1252).unwrap();
        assert_eq!(v.iter().filter(|e| e.label == "neg").count(), 5331);
        assert_eq!(v.iter().filter(|e| e.label == "pos").count(), 5331);
        assert!(v.iter().any(|e| e.text.contains('é')));
        let m = msg(read_decoded(&neg, Encoding::Utf8));
        has(
            &m,
            &[
                "rt-polarity.neg:32:",
                "byte offset 3777",
                "--encoding windows-1252",
            ],
        );
        assert!(!words(&v[0].text).is_empty());
    }

    #[test]
    fn real_ts_files() {
        if let Some(p) = data("ucr-uea/JapaneseVowels/JapaneseVowels_TRAIN.ts") {
            let d = read_ts(&p).unwrap();
            assert_eq!(d.problem.as_deref(), Some("JapaneseVowels"));
            assert_eq!(d.series.len(), 270);
            assert!(d
                .series
                .iter()
                .all(|s| s.channels == 12 && s.values.len() == s.steps * 12));
            let min = d.series.iter().map(|s| s.steps).min();
            let max = d.series.iter().map(|s| s.steps).max();
            // 7..=29 over train and test together; the train file's longest is 26.
            assert_eq!((min, max), (Some(7), Some(26)));
            assert_eq!(d.class_labels.as_ref().map(Vec::len), Some(9));
            let TsTarget::Class(c) = &d.target else {
                panic!("{:?}", d.target)
            };
            assert_eq!(c.len(), 270);
            // Step 0, channels 0 and 1 of the first instance.
            assert_eq!(&d.series[0].values[..2], [1.860936, -0.207383]);
        }
        if let Some(p) = data("ucr-uea/JapaneseVowels/JapaneseVowels_TEST.ts") {
            let d = read_ts(&p).unwrap();
            assert_eq!(d.series.len(), 370);
            let max = d.series.iter().map(|s| s.steps).max();
            assert_eq!(max, Some(29));
        }
        if let Some(p) = data("ucr-uea/GunPoint/GunPoint_TRAIN.ts") {
            let d = read_ts(&p).unwrap();
            assert_eq!(d.series.len(), 50);
            assert!(d.series.iter().all(|s| s.channels == 1 && s.steps == 150));
            assert_eq!(d.class_labels, Some(vec!["1".to_string(), "2".into()]));
        }
    }

    #[test]
    fn real_forecasting_csv() {
        if let Some(p) = data("forecasting/Airline.csv") {
            let t = read_csv_table(&p).unwrap();
            let src = p.display().to_string();
            let v = t.column("Passengers", &src).unwrap();
            assert_eq!(v.len(), 144);
            assert_eq!(v[0], 112.0);
            has(
                &msg(t.column("Date", &src)),
                &["Airline.csv:2: column 'Date':", "'1949-01'"],
            );
        }
        if let Some(p) = data("forecasting/sunspots.csv") {
            let t = read_csv_table(&p).unwrap();
            assert_eq!(t.header, ["YEAR", "SUNACTIVITY"]);
            assert_eq!(t.column("SUNACTIVITY", "s").unwrap().len(), 309);
        }
        if let Some(p) = data("forecasting/Lynx.csv") {
            let t = read_csv_table(&p).unwrap();
            assert_eq!(t.header, ["", "0"]);
            assert_eq!(t.column("0", "l").unwrap().len(), 114);
        }
    }
}
