//! Corpus BLEU and chrF against sacreBLEU 2.6.0 on the fixtures in
//! `tests/fixtures/bleu`, and the 13a tokenizer on tricky strings (expected
//! outputs from sacreBLEU's `Tokenizer13a`).

use recur::bleu::{corpus_bleu, corpus_chrf, tokenize_13a, Bleu, Chrf};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bleu")
}

/// The lines of a fixture file as the generator wrote them: `"\n".join(lines) + "\n"`.
fn lines(name: &str) -> Vec<String> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n').map(str::to_owned).collect()
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6,
        "{what}: got {got}, sacreBLEU {want}"
    );
}

#[test]
fn matches_sacrebleu_fixtures() {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
            .unwrap();
    let cases = j["cases"].as_object().unwrap();
    assert!(!cases.is_empty());
    for (case, e) in cases {
        let hyps = lines(&format!("{case}.hyp"));
        let refs = lines(&format!("{case}.ref"));
        assert_eq!(hyps.len(), refs.len(), "{case}: line counts");
        let b = corpus_bleu(&hyps, &refs);
        let c = corpus_chrf(&hyps, &refs);
        let want_bleu = e["bleu"].as_f64().unwrap();
        let want_chrf = e["chrf"].as_f64().unwrap();
        println!(
            "{case:>16}: {} lines  BLEU {:.4} (|d| {:.1e})  chrF {:.4} (|d| {:.1e})",
            hyps.len(),
            b.score,
            (b.score - want_bleu).abs(),
            c.score,
            (c.score - want_chrf).abs()
        );
        close(&format!("{case} bleu"), b.score, want_bleu);
        for (n, p) in e["precisions"].as_array().unwrap().iter().enumerate() {
            close(
                &format!("{case} precision {}", n + 1),
                b.precisions[n],
                p.as_f64().unwrap(),
            );
        }
        close(&format!("{case} bp"), b.bp, e["bp"].as_f64().unwrap());
        assert_eq!(
            b.sys_len as u64,
            e["sys_len"].as_u64().unwrap(),
            "{case} sys_len"
        );
        assert_eq!(
            b.ref_len as u64,
            e["ref_len"].as_u64().unwrap(),
            "{case} ref_len"
        );
        close(&format!("{case} chrf"), c.score, want_chrf);
        assert_eq!(
            Bleu::signature(),
            e["signature"].as_str().unwrap(),
            "{case} signature"
        );
        assert_eq!(
            Chrf::signature(),
            e["chrf_signature"].as_str().unwrap(),
            "{case} chrF signature"
        );
    }
}

#[test]
fn tokenize_13a_tricky_strings() {
    let cases = [
        ("1,000.5 dollars, and 3.14.", "1,000.5 dollars , and 3.14 ."),
        ("Pages 10-20 and 3-4-5, x-ray -7 a-1", "Pages 10 - 20 and 3 - 4 - 5 , x-ray -7 a-1"),
        ("&quot;Hi&quot; &amp;lt; &amp; &gt;&lt;", "\" Hi \" < & > <"),
        (
            "Wait...what?!? (yes) [no] {maybe} ~ok~ a/b @home #tag $5 100% ^_^ `x` it's",
            "Wait . . . what ? ! ? ( yes ) [ no ] { maybe } ~ ok ~ a / b @ home # tag $ 5 100 % ^ _ ^ ` x ` it's",
        ),
        ("« Bonjour ! » — l’été, c’est ça... 1.5€ 2,5 .", "« Bonjour ! » — l’été , c’est ça . . . 1.5€ 2,5 ."),
        ("line-\nbreak and\nnewline <skipped> here", "linebreak and newline here"),
        ("  leading  and\ttrailing \u{3000}spaces\u{1c}\u{a0}end ", "leading and trailing spaces end"),
        (".5 ,5 5. 5, a.b a,b ,, ..5 5..5 x,,,y", ". 5 , 5 5 . 5 , a . b a , b , , . .5 5 . . 5 x , , , y"),
        ("", ""),
        ("日本語、テスト。数字１２,３ é.é", "日本語、テスト。数字１２ , ３ é . é"),
    ];
    for (input, want) in cases {
        assert_eq!(tokenize_13a(input), want, "tokenize_13a({input:?})");
    }
}

#[test]
fn degenerate_corpora() {
    let none: [&str; 0] = [];
    let b = corpus_bleu(&none, &none);
    assert_eq!((b.score, b.bp, b.sys_len, b.ref_len), (0.0, 1.0, 0, 0));
    assert_eq!(corpus_chrf(&none, &none).score, 0.0);
    let b = corpus_bleu(&[""], &["a b c"]);
    assert_eq!((b.score, b.bp, b.precisions), (0.0, 0.0, [0.0; 4]));
    assert_eq!(corpus_chrf(&[""], &["a b c"]).score, 0.0);
    let same = ["The cat sat on the mat.", "It's 3.5 km, isn't it?"];
    assert!((corpus_bleu(&same, &same).score - 100.0).abs() < 1e-9);
    assert!((corpus_chrf(&same, &same).score - 100.0).abs() < 1e-9);
}
