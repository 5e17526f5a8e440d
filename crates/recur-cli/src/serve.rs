//! `recur serve`: a JSON API under `/v1` and the playground at `/`.
//!
//! Models are loaded once at start (a request names a model, never a
//! path). Model work runs on tokio's blocking pool, at most `workers` at
//! once; at most `workers + queue` requests are accepted, the rest get 503
//! with Retry-After. Every request has a body limit, a length limit and a
//! timeout, and every bad request gets a 4xx JSON error naming the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use recur::checkpoint::{file_format, load_seq, load_seq2seq, MODEL_FORMAT};
use recur::data::{tokenize, Level, Vocab, EOS};
use recur::model::any::AnyLm;
use recur::model::ngram::NGRAM_FORMAT;
use recur::model::seq::{SeqModel, SeqTask, SEQ_FORMAT};
use recur::model::seq2seq::{Seq2Seq, SEQ2SEQ_FORMAT};
use recur::model::window::WINDOW_FORMAT;
use recur::quant::Precision;
use recur::sample::{default_start, Decoding};

use crate::seqdata::token_items;
use crate::CliResult;

/// `recur serve`'s options.
#[derive(Args)]
pub struct ServeArgs {
    /// A model file to serve, as PATH or NAME=PATH (repeat for more); the
    /// name defaults to the file's stem. Any kind: language model,
    /// classifier, tagger, regressor, seq2seq.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// Address to listen on (loopback unless told otherwise; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Requests worked on at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Requests that may wait beyond those being worked on; more get 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 65536)]
    pub max_body: usize,
    /// Most tokens a request may generate or give as input.
    #[arg(long, default_value_t = 2000)]
    pub max_length: usize,
    /// Seconds a request may take before it gets 504.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Threads for each request's products (1 lets requests run side by side).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub precision: crate::PrecisionArg,
}

/// What a served model is.
#[allow(clippy::large_enum_variant)] // one per served model, never moved
enum Kind {
    Lm {
        model: AnyLm,
        vocab: Vocab,
    },
    /// The model keeps its workspace, so requests take turns.
    Seq(Mutex<SeqModel<f32>>),
    Seq2Seq(Box<Seq2Seq<f32>>),
}

struct Served {
    name: String,
    kind: Kind,
    params: usize,
}

impl Served {
    fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Lm { .. } => "language-model",
            Kind::Seq(m) => match lock(m).config().task {
                SeqTask::Classify => "classifier",
                SeqTask::Tag => "tagger",
                SeqTask::Regress => "regressor",
            },
            Kind::Seq2Seq(_) => "seq2seq",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Limits {
    max_length: usize,
    timeout: Duration,
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// route → (bucket counts, sum of seconds, count).
    latency: Mutex<BTreeMap<String, (Vec<u64>, f64, u64)>>,
    tokens_generated: AtomicU64,
    rejected: AtomicU64,
}

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

struct App {
    models: Vec<Served>,
    limits: Limits,
    /// Admission: workers + queue permits.
    permits: Arc<Semaphore>,
    capacity: usize,
    metrics: Metrics,
    started: Instant,
}

type Shared = Arc<App>;

/// A JSON error: `{"error": {"message": …, "field": …}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }
    fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(field), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"message": self.message, "field": self.field}}));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a request body: malformed JSON is 400; a wrong type, a missing
/// or unknown field is 422 naming the field.
fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            None,
            format!("malformed JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "invalid type: the request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let field = if path == "." {
            // An unknown or missing field is named in the message.
            msg.split('`').nth(1).map(str::to_string)
        } else {
            Some(path)
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, field.as_deref(), msg)
    })
}

impl App {
    /// The model a request names, or the first of the kinds it accepts.
    fn model(&self, name: Option<&str>, kinds: &[&str]) -> ApiResult<&Served> {
        match name {
            Some(n) => {
                let m = self.models.iter().find(|m| m.name == n).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        Some("model"),
                        format!(
                            "no model named '{n}'; serving {}",
                            self.models
                                .iter()
                                .map(|m| m.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                if !kinds.contains(&m.kind_name()) {
                    return Err(ApiError::field(
                        "model",
                        format!(
                            "'{n}' is a {}; this endpoint takes a {}",
                            m.kind_name(),
                            kinds.join(" or ")
                        ),
                    ));
                }
                Ok(m)
            }
            None => self
                .models
                .iter()
                .find(|m| kinds.contains(&m.kind_name()))
                .ok_or_else(|| {
                    ApiError::field(
                        "model",
                        format!("no {} is being served", kinds.join(" or ")),
                    )
                }),
        }
    }

    /// A language model the request named (its name already resolved).
    fn lm(&self, name: &str) -> ApiResult<(&AnyLm, &Vocab)> {
        match &self.model(Some(name), &["language-model"])?.kind {
            Kind::Lm { model, vocab } => Ok((model, vocab)),
            _ => unreachable!("checked by kind"),
        }
    }

    fn check_length(&self, field: &str, n: usize) -> ApiResult<()> {
        if n > self.limits.max_length {
            return Err(ApiError::field(
                field,
                format!(
                    "{n} tokens is over this server's limit of {}",
                    self.limits.max_length
                ),
            ));
        }
        Ok(())
    }
}

/// Runs model work on the blocking pool, if admitted, within the timeout.
async fn work<T: Send + 'static>(
    app: &Shared,
    f: impl FnOnce(&App) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let permit = admit(app)?;
    let a = app.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&a)
    });
    match tokio::time::timeout(app.limits.timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("the model failed: {e}"),
        )),
        Err(_) => Err(timeout_err(app)),
    }
}

fn timeout_err(app: &App) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        None,
        format!(
            "the request took more than this server's limit of {} s",
            app.limits.timeout.as_secs_f64()
        ),
    )
}

fn admit(app: &Shared) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    app.permits.clone().try_acquire_owned().map_err(|_| {
        app.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            format!(
                "the server is busy ({} requests in progress); retry shortly",
                app.capacity
            ),
        )
    })
}

fn lib_err(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::field(field, e.to_string())
}

fn range(field: &str, ok: bool, expected: &str) -> ApiResult<()> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(field, format!("expected {expected}")))
    }
}

// ---------------------------------------------------------------- generate

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateReq {
    model: Option<String>,
    #[serde(default)]
    prime: String,
    #[serde(default = "default_length")]
    length: usize,
    #[serde(default = "one")]
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    seed: Option<u64>,
    #[serde(default)]
    greedy: bool,
    #[serde(default)]
    stream: bool,
}

fn default_length() -> usize {
    200
}
fn one() -> f64 {
    1.0
}

/// A token as text to append: characters as they are; words with a space
/// before them, `<eos>` as a newline.
fn token_text(vocab: &Vocab, id: u32, after_newline: bool) -> String {
    let t = &vocab.tokens[id as usize];
    match vocab.level {
        Level::Char => t.clone(),
        Level::Word if t == EOS => "\n".into(),
        Level::Word if after_newline => t.clone(),
        Level::Word => format!(" {t}"),
    }
}

struct Prepared {
    ids: Vec<u32>,
    how: Decoding,
    length: usize,
    seed: u64,
}

fn prepare_generate(app: &App, m: &Served, r: &GenerateReq) -> ApiResult<Prepared> {
    let Kind::Lm { vocab, .. } = &m.kind else {
        unreachable!("checked by kind")
    };
    range("length", r.length >= 1, "a length of at least 1")?;
    app.check_length("length", r.length)?;
    range(
        "temperature",
        r.temperature.is_finite() && r.temperature > 0.0,
        "a temperature > 0",
    )?;
    if let Some(k) = r.top_k {
        range("top_k", k >= 1, "top_k ≥ 1")?;
    }
    if let Some(p) = r.top_p {
        range("top_p", p > 0.0 && p <= 1.0, "top_p in (0, 1]")?;
    }
    let ids = if r.prime.is_empty() {
        vec![default_start(vocab)]
    } else {
        vocab
            .encode(&tokenize(&r.prime, vocab.level), "prime")
            .map_err(|e| lib_err("prime", e))?
    };
    app.check_length("prime", ids.len())?;
    let how = if r.greedy {
        Decoding::Greedy
    } else {
        Decoding::Sample {
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
        }
    };
    Ok(Prepared {
        ids,
        how,
        length: r.length,
        seed: r.seed.unwrap_or_else(rand::random),
    })
}

async fn generate(State(app): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let r: GenerateReq = parse(&body)?;
    let m = app.model(r.model.as_deref(), &["language-model"])?;
    let name = m.name.clone();
    let p = prepare_generate(&app, m, &r)?;
    if r.stream {
        return stream_generate(app, name, p).await;
    }
    let out = work(&app, move |app| {
        let (model, vocab) = app.lm(&name)?;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut tokens = Vec::with_capacity(p.length);
        let mut text = String::new();
        let deadline = Instant::now() + app.limits.timeout;
        let mut timed_out = false;
        model
            .generate_with(&p.ids, p.length, p.how, &mut rng, &mut |id, prob| {
                let t = token_text(vocab, id, text.is_empty() || text.ends_with('\n'));
                text.push_str(&t);
                tokens.push(json!({"text": t, "p": prob}));
                timed_out = Instant::now() >= deadline;
                !timed_out
            })
            .map_err(|e| lib_err("prime", e))?;
        if timed_out {
            return Err(timeout_err(app));
        }
        app.metrics
            .tokens_generated
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        Ok(json!({"model": name, "text": text, "tokens": tokens, "seed": p.seed}))
    })
    .await?;
    Ok(Json(out).into_response())
}

/// Server-sent events: `token` events `{"text", "p"}`, then `done`.
async fn stream_generate(app: Shared, name: String, p: Prepared) -> ApiResult<Response> {
    let permit = admit(&app)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let Ok((model, vocab)) = a.lm(&name) else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut text = String::new();
        let mut n = 0u64;
        let deadline = Instant::now() + a.limits.timeout;
        let mut timed_out = false;
        let r = model.generate_with(&p.ids, p.length, p.how, &mut rng, &mut |id, prob| {
            let t = token_text(vocab, id, text.is_empty() || text.ends_with('\n'));
            text.push_str(&t);
            n += 1;
            let ev = Event::default()
                .event("token")
                .data(json!({"text": t, "p": prob}).to_string());
            // A closed connection stops the generation.
            if tx.blocking_send(ev).is_err() {
                return false;
            }
            timed_out = Instant::now() >= deadline;
            !timed_out
        });
        a.metrics.tokens_generated.fetch_add(n, Ordering::Relaxed);
        let last = match r {
            Ok(_) if timed_out => Event::default()
                .event("error")
                .data(json!({"error": {"message": "the request took too long"}}).to_string()),
            Ok(_) => Event::default().event("done").data(
                json!({"model": name, "text": text, "tokens": n, "seed": p.seed}).to_string(),
            ),
            Err(e) => Event::default()
                .event("error")
                .data(json!({"error": {"message": e.to_string()}}).to_string()),
        };
        let _ = tx.blocking_send(last);
    });
    let stream =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |e| {
            Ok::<_, std::convert::Infallible>(e)
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ------------------------------------------------------------------- score

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextReq {
    model: Option<String>,
    text: String,
}

async fn score(State(app): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let r: TextReq = parse(&body)?;
    let name = app
        .model(r.model.as_deref(), &["language-model"])?
        .name
        .clone();
    let out = work(&app, move |app| {
        let (model, vocab) = app.lm(&name)?;
        let ids = vocab
            .encode(&tokenize(&r.text, vocab.level), "text")
            .map_err(|e| lib_err("text", e))?;
        app.check_length("text", ids.len())?;
        range("text", ids.len() >= 2, "a text of at least 2 tokens")?;
        let (l, predictions) = model.cross_entropy(&ids).map_err(|e| lib_err("text", e))?;
        Ok(json!({"model": name, "loss": l, "perplexity": l.exp(),
                  "bits_per_token": l / std::f64::consts::LN_2, "predictions": predictions}))
    })
    .await?;
    Ok(Json(out))
}

// ------------------------------------------------ classify, tag, regress

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyReq {
    model: Option<String>,
    text: String,
    /// Also the prediction after every prefix of the words.
    #[serde(default)]
    prefixes: bool,
}

fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

async fn classify(State(app): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let r: ClassifyReq = parse(&body)?;
    let kinds = ["classifier", "regressor"];
    let name = app.model(r.model.as_deref(), &kinds)?.name.clone();
    let words = recur::data::read::words(&r.text);
    range("text", !words.is_empty(), "a text with at least one word")?;
    app.check_length("text", words.len())?;
    let out = work(&app, move |app| {
        let m = app.model(Some(&name), &kinds)?;
        let Kind::Seq(model) = &m.kind else {
            unreachable!()
        };
        let mut model = lock(model);
        let list: Vec<Vec<String>> = if r.prefixes {
            (1..=words.len()).map(|k| words[..k].to_vec()).collect()
        } else {
            vec![words.clone()]
        };
        let pred = crate::seq::predict_items(&mut model, &token_items(list, "the request"))
            .map_err(|e| lib_err("text", format!("{e:#}")))?;
        let labels = model.meta.labels.clone();
        let regress = model.config().task == SeqTask::Regress;
        let describe = |p: &[f32]| -> Value {
            if regress {
                return json!({"values": p});
            }
            let probs = softmax(p);
            let best = recur::model::seq::argmax(p);
            json!({"label": labels[best], "p": probs[best],
                   "probabilities": labels.iter().cloned().zip(probs.iter().copied()).collect::<BTreeMap<_, _>>()})
        };
        let mut out = describe(pred.last().expect("one prediction"));
        out["model"] = json!(name);
        if r.prefixes {
            out["prefixes"] = pred
                .iter()
                .zip(&words)
                .map(|(p, w)| {
                    let mut d = describe(p);
                    d["word"] = json!(w);
                    d
                })
                .collect();
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagReq {
    model: Option<String>,
    text: Option<String>,
    tokens: Option<Vec<String>>,
}

async fn tag(State(app): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let r: TagReq = parse(&body)?;
    let name = app.model(r.model.as_deref(), &["tagger"])?.name.clone();
    let tokens = match (r.tokens, r.text) {
        (Some(t), None) => t,
        (None, Some(s)) => recur::data::read::words(&s),
        _ => {
            return Err(ApiError::field(
                "text",
                "give either text (split at whitespace) or tokens",
            ))
        }
    };
    range("tokens", !tokens.is_empty(), "at least one token")?;
    if let Some(i) = tokens.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::field(
            &format!("tokens[{i}]"),
            "expected a non-empty token",
        ));
    }
    app.check_length("tokens", tokens.len())?;
    let out = work(&app, move |app| {
        let m = app.model(Some(&name), &["tagger"])?;
        let Kind::Seq(model) = &m.kind else {
            unreachable!()
        };
        let mut model = lock(model);
        let pred = crate::seq::predict_items(
            &mut model,
            &token_items(vec![tokens.clone()], "the request"),
        )
        .map_err(|e| lib_err("tokens", format!("{e:#}")))?;
        let labels = &model.meta.labels;
        let (mut tags, mut ps) = (Vec::new(), Vec::new());
        for row in pred[0].chunks_exact(labels.len()) {
            let p = softmax(row);
            let best = recur::model::seq::argmax(row);
            tags.push(labels[best].clone());
            ps.push(p[best]);
        }
        Ok(json!({"model": name, "tokens": tokens, "tags": tags, "probabilities": ps}))
    })
    .await?;
    Ok(Json(out))
}

// --------------------------------------------------------------- translate

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateReq {
    model: Option<String>,
    text: String,
    #[serde(default = "one_usize")]
    beam: usize,
    #[serde(default = "one_usize")]
    nbest: usize,
    #[serde(default = "penalty")]
    length_penalty: f64,
    #[serde(default)]
    attention: bool,
}

fn one_usize() -> usize {
    1
}
fn penalty() -> f64 {
    0.6
}

async fn translate(State(app): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let r: TranslateReq = parse(&body)?;
    let name = app.model(r.model.as_deref(), &["seq2seq"])?.name.clone();
    range("text", !r.text.trim().is_empty(), "a non-empty text")?;
    range(
        "beam",
        (1..=64).contains(&r.beam),
        "a beam width of 1 to 64",
    )?;
    range(
        "nbest",
        r.nbest >= 1 && r.nbest <= r.beam,
        "nbest from 1 to the beam width",
    )?;
    range(
        "length_penalty",
        r.length_penalty.is_finite() && r.length_penalty >= 0.0,
        "a length penalty ≥ 0",
    )?;
    app.check_length("text", r.text.split_whitespace().count())?;
    let out = work(&app, move |app| {
        let m = app.model(Some(&name), &["seq2seq"])?;
        let Kind::Seq2Seq(model) = &m.kind else {
            unreachable!()
        };
        let args = crate::seq2seq::DecodeArgs {
            beam: r.beam,
            nbest: r.nbest,
            length_penalty: r.length_penalty,
            sample: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 1,
            max_ratio: 2.0,
            keep_unk: false,
            batch: 1,
        };
        let how = args
            .decode()
            .map_err(|e| lib_err("beam", format!("{e:#}")))?;
        let mut out =
            crate::seq2seq::translate_all(model, std::slice::from_ref(&r.text), &how, true)
                .map_err(|e| lib_err("text", format!("{e:#}")))?;
        let list = out.pop().unwrap_or_default();
        let source = list.first().map(|t| t.source.clone()).unwrap_or_default();
        let translations: Vec<Value> = list
            .into_iter()
            .map(|t| {
                let mut v = json!({"text": t.text, "tokens": t.tokens, "score": t.hyp.score,
                                   "log_prob": t.hyp.log_prob});
                if r.attention {
                    let s = t.source.len().max(1);
                    v["attention"] = t.hyp.attention.chunks(s).map(|c| c.to_vec()).collect();
                }
                v
            })
            .collect();
        Ok(json!({"model": name, "source_tokens": source, "translations": translations}))
    })
    .await?;
    Ok(Json(out))
}

// ----------------------------------------------------------------- inspect

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InspectReq {
    model: Option<String>,
    text: String,
    #[serde(default)]
    layer: usize,
    /// "h" (hidden) or "c" (the LSTM's cell); default c for an LSTM.
    state: Option<String>,
    unit: Option<usize>,
    /// [start, end): token positions whose most active units to list.
    span: Option<[usize; 2]>,
    #[serde(default = "ten")]
    top: usize,
}

fn ten() -> usize {
    10
}

/// One unit's activation over a text, and the units that fire most on a span.
async fn inspect(State(app): State<Shared>, body: Bytes) -> ApiResult<Json<Value>> {
    let r: InspectReq = parse(&body)?;
    let name = app
        .model(r.model.as_deref(), &["language-model"])?
        .name
        .clone();
    let out = work(&app, move |app| {
        let (model, vocab) = app.lm(&name)?;
        let AnyLm::Rnn(model) = model else {
            return Err(ApiError::field(
                "model",
                "inspect reads the hidden states of a recurrent language model; this one has none",
            ));
        };
        let c = model.config();
        let (l, h) = (c.layers, c.hidden);
        let lstm = c.cell == recur::CellKind::Lstm;
        range(
            "layer",
            r.layer < l,
            &format!("a layer from 0 to {}", l - 1),
        )?;
        let state = r
            .state
            .clone()
            .unwrap_or(if lstm { "c" } else { "h" }.into());
        range(
            "state",
            state == "h" || (lstm && state == "c"),
            if lstm {
                "h or c"
            } else {
                "h (only an LSTM has c)"
            },
        )?;
        if let Some(u) = r.unit {
            range("unit", u < h, &format!("a unit from 0 to {}", h - 1))?;
        }
        let ids = vocab
            .encode(&tokenize(&r.text, vocab.level), "text")
            .map_err(|e| lib_err("text", e))?;
        range("text", !ids.is_empty(), "a non-empty text")?;
        app.check_length("text", ids.len())?;
        if let Some([a, b]) = r.span {
            range(
                "span",
                a < b && b <= ids.len(),
                &format!("[start, end) within the {} tokens", ids.len()),
            )?;
        }
        let s = model.states(&ids).map_err(|e| lib_err("text", e))?;
        let buf = if state == "c" { &s.c } else { &s.h };
        // `[T, L, H]` → layer's `[T, H]`.
        let at = |t: usize, u: usize| buf[(t * l + r.layer) * h + u];
        let tokens: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| token_text(vocab, id, i == 0))
            .collect();
        let mut out = json!({"model": name, "tokens": tokens, "layer": r.layer, "layers": l,
                             "hidden": h, "state": state});
        if let Some(u) = r.unit {
            out["unit"] = json!(u);
            out["values"] = (0..ids.len()).map(|t| at(t, u)).collect();
        }
        if let Some([a, b]) = r.span {
            // A unit's score: its mean on the span minus its mean elsewhere.
            let n = ids.len();
            let mut scores: Vec<(usize, f64)> = (0..h)
                .map(|u| {
                    let inside: f64 = (a..b).map(|t| at(t, u) as f64).sum::<f64>() / (b - a) as f64;
                    let rest = n - (b - a);
                    let outside = if rest == 0 {
                        0.0
                    } else {
                        (0..n)
                            .filter(|t| *t < a || *t >= b)
                            .map(|t| at(t, u) as f64)
                            .sum::<f64>()
                            / rest as f64
                    };
                    (u, inside - outside)
                })
                .collect();
            scores.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
            out["top_units"] = scores
                .iter()
                .take(r.top.clamp(1, h))
                .map(|(u, s)| json!({"unit": u, "score": s}))
                .collect();
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

// ------------------------------------------------------- models, health, metrics

async fn list_models(State(app): State<Shared>) -> Json<Value> {
    let models: Vec<Value> = app
        .models
        .iter()
        .map(|m| {
            let mut v = json!({"name": m.name, "kind": m.kind_name(), "parameters": m.params});
            match &m.kind {
                Kind::Lm { model, vocab } => {
                    v["level"] = json!(vocab.level.name());
                    v["vocab"] = json!(vocab.len());
                    match model {
                        AnyLm::Rnn(m) => {
                            let c = m.config();
                            v["model"] = json!("rnn");
                            v["cell"] = json!(c.cell.name());
                            v["layers"] = json!(c.layers);
                            v["hidden"] = json!(c.hidden);
                        }
                        AnyLm::Window(m) => {
                            v["model"] = json!("window");
                            v["context"] = json!(m.config().context);
                            v["hidden"] = json!(m.config().hidden);
                        }
                        AnyLm::Ngram(m) => {
                            v["model"] = json!("ngram");
                            v["order"] = json!(m.config().order);
                        }
                    }
                }
                Kind::Seq(s) => {
                    v["labels"] = json!(lock(s).meta.labels);
                }
                Kind::Seq2Seq(_) => {}
            }
            v
        })
        .collect();
    Json(json!({"models": models}))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(app): State<Shared>) -> impl IntoResponse {
    let mut s = String::new();
    s += "# HELP recur_requests_total Requests answered, by route and status.\n# TYPE recur_requests_total counter\n";
    for ((route, status), n) in lock(&app.metrics.requests).iter() {
        s += &format!("recur_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n");
    }
    s += "# HELP recur_request_duration_seconds Time to answer, by route.\n# TYPE recur_request_duration_seconds histogram\n";
    for (route, (buckets, sum, count)) in lock(&app.metrics.latency).iter() {
        for (le, n) in BUCKETS.iter().zip(buckets) {
            s += &format!(
                "recur_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {n}\n"
            );
        }
        s += &format!(
            "recur_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n"
        );
        s += &format!("recur_request_duration_seconds_sum{{route=\"{route}\"}} {sum}\n");
        s += &format!("recur_request_duration_seconds_count{{route=\"{route}\"}} {count}\n");
    }
    let in_use = app.capacity - app.permits.available_permits();
    s += &format!(
        "# HELP recur_requests_in_progress Requests admitted and not yet answered.\n# TYPE recur_requests_in_progress gauge\nrecur_requests_in_progress {in_use}\n"
    );
    s += &format!(
        "# HELP recur_requests_rejected_total Requests turned away with 503.\n# TYPE recur_requests_rejected_total counter\nrecur_requests_rejected_total {}\n",
        app.metrics.rejected.load(Ordering::Relaxed)
    );
    s += &format!(
        "# HELP recur_tokens_generated_total Tokens generated.\n# TYPE recur_tokens_generated_total counter\nrecur_tokens_generated_total {}\n",
        app.metrics.tokens_generated.load(Ordering::Relaxed)
    );
    s += &format!(
        "# HELP recur_uptime_seconds Seconds since the server started.\n# TYPE recur_uptime_seconds gauge\nrecur_uptime_seconds {:.3}\n",
        app.started.elapsed().as_secs_f64()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s,
    )
}

/// Counts every request by route and status, with its latency.
async fn track(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let secs = t0.elapsed().as_secs_f64();
    *lock(&app.metrics.requests)
        .entry((route.clone(), resp.status().as_u16()))
        .or_default() += 1;
    let mut lat = lock(&app.metrics.latency);
    let e = lat
        .entry(route)
        .or_insert_with(|| (vec![0; BUCKETS.len()], 0.0, 0));
    for (b, le) in e.0.iter_mut().zip(BUCKETS) {
        if secs <= le {
            *b += 1;
        }
    }
    e.1 += secs;
    e.2 += 1;
    resp
}

// ------------------------------------------------------------ static files

const INDEX: &str = include_str!("playground/index.html");
const APP_JS: &str = include_str!("playground/app.js");
const STYLE: &str = include_str!("playground/style.css");

fn file(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        None,
        "no such endpoint; see /v1/openapi.json",
    )
}

async fn openapi() -> Json<Value> {
    Json(openapi_doc())
}

fn openapi_doc() -> Value {
    let model = json!({"type": "string", "description": "a served model's name (GET /v1/models); default: the first of the right kind"});
    let err = json!({"description": "a bad request: {\"error\": {\"message\", \"field\"}}",
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let post = |summary: &str, props: Value, required: Vec<&str>| {
        json!({"post": {"summary": summary,
            "requestBody": {"required": true, "content": {"application/json": {"schema":
                {"type": "object", "additionalProperties": false, "required": required, "properties": props}}}},
            "responses": {"200": {"description": "the result", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "400": err.clone(), "404": err.clone(), "413": err.clone(), "422": err.clone(),
                          "503": {"description": "busy: retry after the Retry-After header's seconds"},
                          "504": err.clone()}}})
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "recur", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Recurrent networks served by `recur serve`."},
        "paths": {
            "/v1/models": {"get": {"summary": "The served models", "responses": {"200": {"description": "{\"models\": [{name, kind, parameters, …}]}"}}}},
            "/v1/generate": post("Text from a language model; with stream, server-sent events `token` {text, p} then `done`",
                json!({"model": model, "prime": {"type": "string", "default": ""},
                       "length": {"type": "integer", "minimum": 1, "default": 200},
                       "temperature": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
                       "top_k": {"type": "integer", "minimum": 1}, "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                       "seed": {"type": "integer", "minimum": 0}, "greedy": {"type": "boolean", "default": false},
                       "stream": {"type": "boolean", "default": false}}), vec![]),
            "/v1/score": post("Loss, perplexity and bits per token of a text under a language model",
                json!({"model": model, "text": {"type": "string"}}), vec!["text"]),
            "/v1/classify": post("A classifier's label and probabilities (or a regressor's values); with prefixes, after every prefix of the words",
                json!({"model": model, "text": {"type": "string"}, "prefixes": {"type": "boolean", "default": false}}), vec!["text"]),
            "/v1/tag": post("A tag for every token",
                json!({"model": model, "text": {"type": "string"}, "tokens": {"type": "array", "items": {"type": "string"}}}), vec![]),
            "/v1/translate": post("Translations by beam search, n-best, with attention weights",
                json!({"model": model, "text": {"type": "string"}, "beam": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
                       "nbest": {"type": "integer", "minimum": 1, "default": 1}, "length_penalty": {"type": "number", "minimum": 0, "default": 0.6},
                       "attention": {"type": "boolean", "default": false}}), vec!["text"]),
            "/v1/inspect": post("A language model's unit activations over a text, and the units most active on a span",
                json!({"model": model, "text": {"type": "string"}, "layer": {"type": "integer", "minimum": 0, "default": 0},
                       "state": {"type": "string", "enum": ["h", "c"]}, "unit": {"type": "integer", "minimum": 0},
                       "span": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                       "top": {"type": "integer", "minimum": 1, "default": 10}}), vec!["text"]),
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4"}}}}
        },
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object",
            "properties": {"message": {"type": "string"}, "field": {"type": "string", "nullable": true}}}}}}}
    })
}

// -------------------------------------------------------------------- run

fn load(spec: &str, precision: Precision) -> anyhow::Result<Served> {
    let (name, path) = match spec.split_once('=') {
        Some((n, p)) if !n.is_empty() => (n.to_string(), std::path::PathBuf::from(p)),
        _ => {
            let p = std::path::PathBuf::from(spec);
            let stem = p
                .file_stem()
                .map_or("model".to_string(), |s| s.to_string_lossy().into_owned());
            // run/model.safetensors is named after its run folder.
            let name = if stem == "model" || stem == "last" {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map_or(stem.clone(), |d| d.to_string_lossy().into_owned())
            } else {
                stem
            };
            (name, p)
        }
    };
    let ctx = || format!("--model {}", path.display());
    let format = file_format(&path).with_context(ctx)?;
    let (kind, params) = match format.as_str() {
        MODEL_FORMAT | WINDOW_FORMAT | NGRAM_FORMAT => {
            let (mut model, vocab) = AnyLm::load(&path).with_context(ctx)?;
            model.set_precision(precision).with_context(ctx)?;
            let n = model.num_params();
            (Kind::Lm { model, vocab }, n)
        }
        SEQ_FORMAT => {
            let mut m = load_seq(&path).with_context(ctx)?;
            m.set_precision(precision).with_context(ctx)?;
            let n = m.num_params();
            (Kind::Seq(Mutex::new(m)), n)
        }
        SEQ2SEQ_FORMAT => {
            let mut m = load_seq2seq(&path).with_context(ctx)?;
            m.set_precision(precision).with_context(ctx)?;
            let n = m.store.len();
            (Kind::Seq2Seq(Box::new(m)), n)
        }
        other => bail!(
            "--model {}: a '{other}' file cannot be served",
            path.display()
        ),
    };
    Ok(Served { name, kind, params })
}

/// The router of a server over `models`.
fn router(app: Shared, max_body: usize) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/generate", post(generate))
        .route("/v1/score", post(score))
        .route("/v1/classify", post(classify))
        .route("/v1/tag", post(tag))
        .route("/v1/translate", post(translate))
        .route("/v1/inspect", post(inspect))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), track))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| body_limit(req, next, max_body),
        ))
        .with_state(app)
}

/// Refuses a body over the limit with 413 and a JSON error, before reading it.
async fn body_limit(req: Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("the request body is over this server's limit of {max} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > max) {
        return too_big();
    }
    // A body without a length (chunked) is read up to the limit.
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(_) => too_big(),
    }
}

/// `recur serve`.
pub fn run(a: ServeArgs) -> CliResult {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout: expected seconds > 0, got {}", a.timeout);
    }
    if a.max_length == 0 || a.max_body == 0 {
        bail!("--max-length and --max-body must be at least 1");
    }
    recur::gemm::set_threads(a.threads.max(1));
    let precision = a.precision.get()?;
    let mut models = Vec::new();
    for spec in &a.models {
        let m = load(spec, precision)?;
        if models.iter().any(|o: &Served| o.name == m.name) {
            bail!(
                "--model {spec}: a second model named '{}'; name them with NAME=PATH",
                m.name
            );
        }
        models.push(m);
    }
    let addr: SocketAddr = a.addr.parse().with_context(|| {
        format!(
            "--addr {}: expected IP:PORT, such as 127.0.0.1:8080",
            a.addr
        )
    })?;
    let workers = if a.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.workers
    };
    let capacity = workers + a.queue;
    let app = Arc::new(App {
        models,
        limits: Limits {
            max_length: a.max_length,
            timeout: Duration::from_secs_f64(a.timeout),
        },
        permits: Arc::new(Semaphore::new(capacity)),
        capacity,
        metrics: Metrics::default(),
        started: Instant::now(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(workers)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--addr {addr}: cannot listen"))?;
        let local = listener.local_addr()?;
        for m in &app.models {
            println!(
                "serving '{}' ({}, {} parameters)",
                m.name,
                m.kind_name(),
                m.params
            );
        }
        println!(
            "listening on http://{local} ({workers} workers, queue {})",
            a.queue
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router(app, a.max_body))
            .with_graceful_shutdown(shutdown())
            .await
            .context("the server failed")?;
        println!("stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
