//! `recur serve` through a real server on an ephemeral loopback port: every
//! endpoint, streaming, every kind of bad request, load, limits, shutdown,
//! and the playground in a real headless Chromium.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{ok, s};
use serde_json::{json, Value};

/// Tiny trained models of every kind, made once per test binary.
fn models() -> &'static [(String, PathBuf)] {
    static MODELS: OnceLock<(tempfile::TempDir, Vec<(String, PathBuf)>)> = OnceLock::new();
    &MODELS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let text: String = (0..300)
                .map(|i| {
                    format!(
                        "the cat {} on the mat; the dog sat.\n",
                        ["sat", "ran", "lay"][i % 3]
                    )
                })
                .collect();
            std::fs::write(d.join("lm.txt"), text).unwrap();
            let (mut cls, mut tags, mut pairs) = (String::new(), String::new(), String::new());
            let words = ["a", "b", "c", "d"];
            for i in 0..200 {
                let good = i % 2 == 0;
                cls += &format!(
                    "{}\tthe film was {}\n",
                    if good { "pos" } else { "neg" },
                    if good { "good" } else { "bad" }
                );
                tags += &format!(
                    "1\tthe\t_\tDET\t_\t_\t_\t_\t_\t_\n2\t{}\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n",
                    ["dog", "cat"][i % 2]
                );
                let src: Vec<&str> = (0..1 + i % 3).map(|k| words[(i + k) % 4]).collect();
                let tgt: Vec<&str> = src.iter().rev().copied().collect();
                pairs += &format!("{}\t{}\n", src.join(" "), tgt.join(" "));
            }
            std::fs::write(d.join("c.txt"), cls).unwrap();
            std::fs::write(d.join("t.conllu"), tags).unwrap();
            std::fs::write(d.join("p.tsv"), pairs).unwrap();
            let small = "--hidden 16 --embed 8 --layers 1 --sample-length 0";
            let runs = [
                (
                    "lm",
                    format!(
                        "--data {} --steps 30 --batch 8 --seq-len 16 {small}",
                        s(&d.join("lm.txt"))
                    ),
                ),
                (
                    "cls",
                    format!(
                        "--task classify --data {} --epochs 2 {small}",
                        s(&d.join("c.txt"))
                    ),
                ),
                (
                    "tag",
                    format!(
                        "--task tag --data {} --epochs 2 {small}",
                        s(&d.join("t.conllu"))
                    ),
                ),
                (
                    "s2s",
                    format!(
                        "--task seq2seq --data {} --epochs 2 --attention dot {small}",
                        s(&d.join("p.tsv"))
                    ),
                ),
                (
                    "ng",
                    format!(
                        "--model ngram --order 4 --data {} --sample-length 0",
                        s(&d.join("lm.txt"))
                    ),
                ),
            ];
            let mut out = Vec::new();
            for (name, args) in runs {
                let run = d.join(name);
                let line = format!("train {args} --out {}", s(&run));
                ok(&line.split_whitespace().collect::<Vec<_>>());
                out.push((name.to_string(), run.join("model.safetensors")));
            }
            (dir, out)
        })
        .1
}

/// A running `recur serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with(models(), extra)
    }

    /// A server of only `served`.
    fn start_with(served: &[(String, PathBuf)], extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recur"));
        cmd.arg("serve").args(["--addr", "127.0.0.1:0"]);
        for (name, path) in served {
            cmd.arg("--model").arg(format!("{name}={}", path.display()));
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server prints its address")
                .unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// (status, JSON body) of a POST.
    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = ureq::post(&self.url(path))
            .set("content-type", "application/json")
            .send_string(body);
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&self.url(path)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_endpoint_answers() {
    let srv = Server::start(&[]);
    let (c, body) = srv.get("/v1/models");
    assert_eq!(c, 200);
    let m: Value = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "language-model",
            "classifier",
            "tagger",
            "seq2seq",
            "language-model"
        ]
    );

    let (c, g) = srv.post(
        "/v1/generate",
        r#"{"prime": "the ", "length": 25, "seed": 3, "temperature": 0.7, "top_p": 0.9}"#,
    );
    assert_eq!(c, 200, "{g}");
    assert_eq!(g["tokens"].as_array().unwrap().len(), 25);
    assert_eq!(g["text"].as_str().unwrap().chars().count(), 25);
    assert!(g["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| (0.0..=1.0).contains(&t["p"].as_f64().unwrap())));
    // The same seed gives the same text.
    let (_, again) = srv.post(
        "/v1/generate",
        r#"{"prime": "the ", "length": 25, "seed": 3, "temperature": 0.7, "top_p": 0.9}"#,
    );
    assert_eq!(g["text"], again["text"]);

    // Streaming: token events, then done with the whole text.
    let resp = ureq::post(&srv.url("/v1/generate"))
        .send_string(r#"{"model": "lm", "length": 12, "seed": 3, "stream": true}"#)
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut sse = String::new();
    resp.into_reader().read_to_string(&mut sse).unwrap();
    let tokens: Vec<Value> = sse
        .split("\n\n")
        .filter(|e| e.contains("event: token"))
        .map(|e| {
            serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(tokens.len(), 12);
    let done = sse
        .split("\n\n")
        .find(|e| e.contains("event: done"))
        .expect("a done event");
    let done: Value =
        serde_json::from_str(done.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    let joined: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(done["text"].as_str().unwrap(), joined);

    let (c, sc) = srv.post("/v1/score", r#"{"text": "the cat sat on the mat"}"#);
    assert_eq!(c, 200);
    assert!((sc["perplexity"].as_f64().unwrap() - sc["loss"].as_f64().unwrap().exp()).abs() < 1e-9);

    let (c, cl) = srv.post(
        "/v1/classify",
        r#"{"text": "the film was good", "prefixes": true}"#,
    );
    assert_eq!(c, 200, "{cl}");
    assert_eq!(cl["prefixes"].as_array().unwrap().len(), 4);
    let probs = cl["probabilities"].as_object().unwrap();
    assert!((probs.values().map(|v| v.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(probs.contains_key("pos") && probs.contains_key("neg"));

    let (c, tg) = srv.post("/v1/tag", r#"{"tokens": ["the", "dog"]}"#);
    assert_eq!(c, 200, "{tg}");
    assert_eq!(tg["tags"].as_array().unwrap().len(), 2);

    let (c, tr) = srv.post(
        "/v1/translate",
        r#"{"text": "a b c", "beam": 3, "nbest": 2, "attention": true}"#,
    );
    assert_eq!(c, 200, "{tr}");
    let list = tr["translations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0]["score"].as_f64().unwrap() >= list[1]["score"].as_f64().unwrap());
    let att = list[0]["attention"].as_array().unwrap();
    assert_eq!(att[0].as_array().unwrap().len(), 3);
    let row_sum: f64 = att[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((row_sum - 1.0).abs() < 1e-4);

    let (c, ins) = srv.post(
        "/v1/inspect",
        r#"{"text": "the cat", "unit": 2, "span": [4, 7], "top": 5}"#,
    );
    assert_eq!(c, 200, "{ins}");
    assert_eq!(ins["values"].as_array().unwrap().len(), 7);
    assert_eq!(ins["top_units"].as_array().unwrap().len(), 5);
    assert_eq!(ins["state"], "c");

    assert_eq!(srv.get("/healthz"), (200, "ok\n".to_string()));
    let (c, api) = srv.get("/v1/openapi.json");
    assert_eq!(c, 200);
    let api: Value = serde_json::from_str(&api).unwrap();
    for p in [
        "/v1/generate",
        "/v1/score",
        "/v1/classify",
        "/v1/tag",
        "/v1/translate",
        "/v1/inspect",
        "/v1/models",
    ] {
        assert!(
            api["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let (c, page) = srv.get("/");
    assert_eq!(c, 200);
    assert!(page.contains("recur") && page.contains("/app.js"));
    assert_eq!(srv.get("/app.js").0, 200);
    assert_eq!(srv.get("/style.css").0, 200);
    let (c, metrics) = srv.get("/metrics");
    assert_eq!(c, 200);
    assert!(
        metrics.contains(r#"recur_requests_total{route="/v1/generate",status="200"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("recur_tokens_generated_total 62"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"recur_request_duration_seconds_count{route="/v1/translate"} 1"#));
}

#[test]
fn an_ngram_model_is_served_as_a_language_model() {
    let srv = Server::start(&[]);
    let (_, body) = srv.get("/v1/models");
    let m: Value = serde_json::from_str(&body).unwrap();
    let ng = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "ng")
        .unwrap()
        .clone();
    assert_eq!(ng["model"], "ngram");
    assert_eq!(ng["order"], 4);
    let (c, g) = srv.post(
        "/v1/generate",
        r#"{"model": "ng", "prime": "the ", "length": 20, "seed": 3}"#,
    );
    assert_eq!(c, 200, "{g}");
    assert_eq!(g["tokens"].as_array().unwrap().len(), 20);
    let (c, sc) = srv.post(
        "/v1/score",
        r#"{"model": "ng", "text": "the cat sat on the mat"}"#,
    );
    assert_eq!(c, 200, "{sc}");
    let loss = sc["loss"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < 20f64.ln(), "{sc}");
    let (c, e) = srv.post(
        "/v1/inspect",
        r#"{"model": "ng", "text": "the cat", "unit": 0}"#,
    );
    assert_eq!(c, 422, "{e}");
    assert!(e.to_string().contains("recurrent"), "{e}");
    let (c, e) = srv.post(
        "/v1/generate",
        r#"{"model": "ng", "prime": "the ", "length": 5, "beam": 2}"#,
    );
    assert!((400..500).contains(&c), "{c} {e}");
}

#[test]
fn bad_requests_get_4xx_naming_the_field_and_the_server_goes_on() {
    let srv = Server::start(&["--max-length", "500", "--max-body", "2000"]);
    let cases: &[(&str, &str, u16, Option<&str>, &str)] = &[
        (
            "/v1/generate",
            r#"{"length": 5"#,
            400,
            None,
            "malformed JSON",
        ),
        ("/v1/generate", "not json", 400, None, "malformed JSON"),
        (
            "/v1/generate",
            r#"{"length": "five"}"#,
            422,
            Some("length"),
            "invalid type",
        ),
        (
            "/v1/generate",
            r#"{"temperature": -1}"#,
            422,
            Some("temperature"),
            "temperature > 0",
        ),
        (
            "/v1/generate",
            r#"{"top_p": 1.5}"#,
            422,
            Some("top_p"),
            "(0, 1]",
        ),
        (
            "/v1/generate",
            r#"{"top_k": 0}"#,
            422,
            Some("top_k"),
            "top_k",
        ),
        (
            "/v1/generate",
            r#"{"length": 0}"#,
            422,
            Some("length"),
            "at least 1",
        ),
        (
            "/v1/generate",
            r#"{"length": 501}"#,
            422,
            Some("length"),
            "limit of 500",
        ),
        (
            "/v1/generate",
            r#"{"seed": -4}"#,
            422,
            Some("seed"),
            "invalid value",
        ),
        (
            "/v1/generate",
            r#"{"lenght": 5}"#,
            422,
            Some("lenght"),
            "unknown field",
        ),
        (
            "/v1/generate",
            r#"{"prime": "€€"}"#,
            422,
            Some("prime"),
            "not in the model's vocabulary",
        ),
        (
            "/v1/generate",
            r#"{"model": "nope"}"#,
            404,
            Some("model"),
            "no model named 'nope'",
        ),
        (
            "/v1/generate",
            r#"{"model": "cls"}"#,
            422,
            Some("model"),
            "is a classifier",
        ),
        ("/v1/generate", r#"[1, 2]"#, 422, None, "invalid type"),
        ("/v1/score", r#"{}"#, 422, Some("text"), "missing field"),
        (
            "/v1/score",
            r#"{"text": "t"}"#,
            422,
            Some("text"),
            "at least 2 tokens",
        ),
        (
            "/v1/classify",
            r#"{"text": "   "}"#,
            422,
            Some("text"),
            "at least one word",
        ),
        (
            "/v1/classify",
            r#"{"text": 5}"#,
            422,
            Some("text"),
            "invalid type",
        ),
        ("/v1/tag", r#"{}"#, 422, Some("text"), "either text"),
        (
            "/v1/tag",
            r#"{"tokens": ["a", ""]}"#,
            422,
            Some("tokens[1]"),
            "non-empty token",
        ),
        (
            "/v1/translate",
            r#"{"text": "a", "beam": 0}"#,
            422,
            Some("beam"),
            "beam width",
        ),
        (
            "/v1/translate",
            r#"{"text": "a", "beam": 2, "nbest": 3}"#,
            422,
            Some("nbest"),
            "nbest",
        ),
        (
            "/v1/inspect",
            r#"{"text": "the", "layer": 7}"#,
            422,
            Some("layer"),
            "layer from 0",
        ),
        (
            "/v1/inspect",
            r#"{"text": "the", "unit": 99}"#,
            422,
            Some("unit"),
            "unit from 0",
        ),
        (
            "/v1/inspect",
            r#"{"text": "the", "span": [2, 9]}"#,
            422,
            Some("span"),
            "within the 3 tokens",
        ),
        ("/v1/nothing", r#"{}"#, 404, None, "no such endpoint"),
    ];
    for (path, body, status, field, msg) in cases {
        let (c, v) = srv.post(path, body);
        assert_eq!(c, *status, "{path} {body}: {v}");
        let e = &v["error"];
        assert!(
            e["message"].as_str().unwrap().contains(msg),
            "{path} {body}: {v}"
        );
        match field {
            Some(f) => assert_eq!(e["field"], json!(f), "{path} {body}: {v}"),
            None => assert!(e["field"].is_null(), "{path} {body}: {v}"),
        }
    }
    let big = format!(r#"{{"text": "{}"}}"#, "a ".repeat(2000));
    let (c, v) = srv.post("/v1/score", &big);
    assert_eq!(c, 413, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit of 2000 bytes"));
    // After all of that, it still serves.
    assert_eq!(srv.get("/healthz").0, 200);
    assert_eq!(srv.post("/v1/generate", r#"{"length": 5}"#).0, 200);
}

#[test]
fn two_hundred_concurrent_generations_are_all_answered() {
    let srv = Server::start(&["--queue", "256"]);
    let url = srv.url("/v1/generate");
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"length": 20, "seed": {i}}}"#);
                let r = ureq::post(&url)
                    .timeout(Duration::from_secs(120))
                    .send_string(&body)
                    .unwrap();
                let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
                (
                    v["seed"].as_u64().unwrap(),
                    v["tokens"].as_array().unwrap().len(),
                )
            })
        })
        .collect();
    let mut seeds: Vec<u64> = handles
        .into_iter()
        .map(|h| {
            let (seed, n) = h.join().unwrap();
            assert_eq!(n, 20);
            seed
        })
        .collect();
    seeds.sort();
    assert_eq!(seeds, (0..200).collect::<Vec<u64>>());
}

#[test]
fn a_full_queue_is_503_with_retry_after_and_slow_work_is_504() {
    let srv = Server::start(&[
        "--workers",
        "1",
        "--queue",
        "0",
        "--timeout",
        "1",
        "--max-length",
        "1000000",
    ]);
    // A long streaming generation holds the only place; once its first
    // event has come, every other request is turned away.
    let url = srv.url("/v1/generate");
    let (started, wait) = std::sync::mpsc::channel();
    let hold = std::thread::spawn(move || {
        let r = ureq::post(&url)
            .send_string(r#"{"length": 1000000, "stream": true, "prime": "the"}"#)
            .unwrap();
        let mut reader = BufReader::new(r.into_reader());
        let mut s = String::new();
        reader.read_line(&mut s).unwrap();
        started.send(()).unwrap();
        reader.read_to_string(&mut s).unwrap();
        s
    });
    wait.recv().unwrap();
    let busy = match ureq::post(&srv.url("/v1/score")).send_string(r#"{"text": "the cat"}"#) {
        Err(ureq::Error::Status(503, r)) => Some(r),
        other => panic!("expected 503, got {other:?}"),
    };
    let busy = busy.expect("a 503 while the only worker is busy");
    assert_eq!(busy.header("retry-after"), Some("1"));
    let v: Value = serde_json::from_str(&busy.into_string().unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    // The held stream ends within the timeout, with an error event or done.
    let s = hold.join().unwrap();
    assert!(
        s.contains("event: error") || s.contains("event: done"),
        "{s}"
    );
    // Once free, it serves again; a generation over the time limit is 504.
    let (c, _) = srv.post("/v1/score", r#"{"text": "the cat"}"#);
    assert_eq!(c, 200);
    let srv = Server::start(&["--timeout", "0.001", "--max-length", "2000"]);
    let (c, v) = srv.post("/v1/generate", r#"{"length": 2000}"#);
    assert_eq!(c, 504, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit of 0.001 s"));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut srv = Server::start(&[]);
    assert_eq!(srv.get("/healthz").0, 200);
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_what_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("x.safetensors");
    std::fs::write(&bogus, b"not a model").unwrap();
    let e = common::fails(&["serve", "--model", s(&bogus)]);
    assert!(e.contains("x.safetensors"), "{e}");
    let (_, lm) = &models()[0];
    let e = common::fails(&["serve", "--model", s(lm), "--model", s(lm)]);
    assert!(e.contains("a second model named"), "{e}");
    let e = common::fails(&["serve", "--model", s(lm), "--addr", "localhost"]);
    assert!(e.contains("--addr"), "{e}");
    let (_, ng) = models().iter().find(|(n, _)| n == "ng").unwrap();
    let e = common::fails(&["serve", "--model", s(ng), "--precision", "int8"]);
    assert!(e.contains("n-gram") && e.contains("int8"), "{e}");
}

#[test]
fn a_language_model_is_served_in_int8() {
    let lm = &models()[..1];
    let exact = Server::start_with(lm, &[]);
    let int8 = Server::start_with(lm, &["--precision", "int8"]);
    let score = |srv: &Server| {
        let (c, sc) = srv.post(
            "/v1/score",
            &format!(
                r#"{{"model": "{}", "text": "the cat sat on the mat"}}"#,
                lm[0].0
            ),
        );
        assert_eq!(c, 200, "{sc}");
        sc["loss"].as_f64().unwrap()
    };
    let (a, b) = (score(&exact), score(&int8));
    assert!(
        a != b && (a - b).abs() < 0.02 * a,
        "int8 loss {b} against f32's {a}"
    );
    let (c, g) = int8.post(
        "/v1/generate",
        &format!(
            r#"{{"model": "{}", "prime": "the ", "length": 20, "seed": 3}}"#,
            lm[0].0
        ),
    );
    assert_eq!(c, 200, "{g}");
    assert_eq!(g["tokens"].as_array().unwrap().len(), 20);
}

/// The playground in a real headless Chromium, driven over the DevTools
/// protocol: load it, generate, switch to the activation view, check the
/// DOM, and write screenshots (desktop and phone) for people to look at.
#[test]
fn the_playground_works_in_a_real_browser() {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        assert!(
            std::env::var_os("RECUR_REQUIRE_BROWSER").is_none(),
            "no Chromium found, and RECUR_REQUIRE_BROWSER is set"
        );
        eprintln!("skipped: no Chromium (.ci/run installs it)");
        return;
    };
    let srv = Server::start(&[]);
    let profile = tempfile::tempdir().unwrap();
    let mut chrome = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-port=0",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(srv.url("/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| drive(profile.path(), &srv));
    let _ = chrome.kill();
    let _ = chrome.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn drive(profile: &Path, srv: &Server) {
    // Chromium writes its port into the profile once it listens.
    let port_file = profile.join("DevToolsActivePort");
    let mut port = String::new();
    for _ in 0..300 {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            if let Some(p) = s.lines().next().filter(|p| !p.is_empty()) {
                port = p.to_string();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !port.is_empty(),
        "Chromium did not start its DevTools server"
    );
    let mut ws_url = String::new();
    for _ in 0..100 {
        let text = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let list: Value = serde_json::from_str(&text).unwrap();
        if let Some(p) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "page" && p["url"].as_str().unwrap().starts_with(&srv.base))
        {
            ws_url = p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!ws_url.is_empty(), "no page at {}", srv.base);
    let (mut ws, _) = tungstenite::connect(ws_url.as_str()).unwrap();
    let mut id = 0;
    let mut call = |method: &str, params: Value| -> Value {
        id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = ws.read().unwrap();
            if let tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    };
    let eval = |call: &mut dyn FnMut(&str, Value) -> Value, expr: &str| -> Value {
        let r = call(
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    };
    // Wait for the page's script.
    for _ in 0..200 {
        if eval(&mut call, "typeof window.recurSelftest") == "function" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let tabs = eval(
        &mut call,
        "ready.then(() => [...document.querySelectorAll('nav button')].map(b => b.textContent))",
    );
    assert_eq!(
        tabs,
        json!([
            "Write",
            "Inside the network",
            "Translate",
            "Classify",
            "Tag"
        ])
    );
    let report = eval(&mut call, "window.recurSelftest()");
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(report["generated"], 40, "{report}");
    assert_eq!(report["tab"], "inside", "{report}");
    assert_eq!(report["unit"], 3, "{report}");
    // The 40 generated characters, each a coloured span.
    assert_eq!(report["activations"], 40, "{report}");
    let coloured = eval(
        &mut call,
        "[...document.querySelectorAll('#acts span')].filter(s => s.style.background).length",
    );
    assert_eq!(coloured, 40);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("playground");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |call: &mut dyn FnMut(&str, Value) -> Value, name: &str| {
        let r = call("Page.captureScreenshot", json!({"format": "png"}));
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(shots.join(name), png).unwrap();
    };
    shot(&mut call, "inside-desktop.png");
    eval(&mut call, "document.getElementById('tab-write').click()");
    shot(&mut call, "write-desktop.png");
    // A phone-sized screen: nothing wider than the viewport.
    call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    let overflow = eval(
        &mut call,
        "document.documentElement.scrollWidth <= window.innerWidth",
    );
    assert_eq!(overflow, true, "the page is wider than a phone's screen");
    shot(&mut call, "write-phone.png");
    eval(&mut call, "document.getElementById('tab-translate').click(); document.getElementById('source').value = 'a b c';");
    eval(&mut call, "translate()");
    let cells = eval(&mut call, "document.querySelectorAll('#heat td').length");
    assert!(cells.as_u64().unwrap() >= 3, "{cells}");
    shot(&mut call, "translate-phone.png");
    eprintln!("screenshots in {}", shots.display());
}
