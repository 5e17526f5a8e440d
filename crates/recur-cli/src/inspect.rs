//! `recur inspect`: what a language model's units do.
//!
//! - `--phrases FILE --pca`: each phrase's final hidden state (top layer)
//!   projected onto the first two principal components, as an SVG scatter
//!   (Sutskever, Vinyals and Le 2014's figure);
//! - `--text FILE --unit L:K`: the text coloured by unit K of layer L, as
//!   HTML and SVG (Karpathy, Johnson and Fei-Fei 2015);
//! - `--text FILE --top REGEX`: the units whose activation correlates most
//!   with being inside a match of REGEX (quotes, brackets, line position).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use recur::checkpoint::{load_lm, write_atomic};
use recur::data::{tokenize, Vocab};
use recur::linalg::principal_components;
use recur::model::lm::{LanguageModel, States};
use recur::plot::scatter_plot;
use recur::CellKind;

use crate::CliResult;

/// `recur inspect`'s options.
#[derive(Args)]
pub struct InspectArgs {
    /// A language model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Phrases, one per line, for --pca.
    #[arg(long)]
    pub phrases: Option<PathBuf>,
    /// Project the phrases' final hidden states onto their first two principal components.
    #[arg(long, requires = "phrases")]
    pub pca: bool,
    /// A text to run the model over, for --unit and --top.
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// LAYER:UNIT (both from 0): colour the text by this unit's activation.
    #[arg(long, requires = "text")]
    pub unit: Option<String>,
    /// List the units most correlated with being inside a match of this regular expression.
    #[arg(long, requires = "text", value_name = "REGEX")]
    pub top: Option<String>,
    /// How many units --top lists.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// The state read: h (hidden) or c (the LSTM's cell) [default: c for an LSTM, else h].
    #[arg(long)]
    pub state: Option<String>,
    /// Where the SVG, HTML and JSON files go.
    #[arg(long, default_value = "inspect")]
    pub out: PathBuf,
}

/// The states of `text`, with its tokens as display text.
fn run(
    model: &LanguageModel,
    vocab: &Vocab,
    text: &str,
    source: &str,
) -> anyhow::Result<(Vec<String>, States)> {
    let ids = vocab.encode(&tokenize(text, vocab.level), source)?;
    if ids.is_empty() {
        bail!("{source}: no tokens");
    }
    let states = model.states(&ids)?;
    let tokens = ids
        .iter()
        .map(|&i| vocab.tokens[i as usize].clone())
        .collect();
    Ok((tokens, states))
}

/// `recur inspect`.
pub fn inspect(a: InspectArgs) -> CliResult {
    if !a.pca && a.unit.is_none() && a.top.is_none() {
        bail!("nothing to do: give --phrases FILE --pca, or --text FILE with --unit L:K or --top REGEX");
    }
    let (model, vocab) =
        load_lm(&a.model).with_context(|| format!("--model {}", a.model.display()))?;
    let c = model.config().clone();
    let lstm = c.cell == CellKind::Lstm;
    let state = a
        .state
        .clone()
        .unwrap_or(if lstm { "c" } else { "h" }.into());
    if !(state == "h" || (state == "c" && lstm)) {
        bail!(
            "--state: expected h{}, got '{state}'",
            if lstm {
                " or c"
            } else {
                " (only an LSTM has c)"
            }
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let (l, h) = (c.layers, c.hidden);
    let pick = |s: &States| {
        if state == "c" {
            s.c.clone()
        } else {
            s.h.clone()
        }
    };

    if a.pca {
        let path = a.phrases.as_ref().expect("clap requires --phrases");
        let text = recur::data::read_text(path)?;
        let phrases: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if phrases.len() < 3 {
            bail!(
                "{}: expected at least 3 phrases (one per line), got {}",
                path.display(),
                phrases.len()
            );
        }
        // Each phrase's state after its last token, top layer: `[N, H]`.
        let mut x = Vec::with_capacity(phrases.len() * h);
        for (i, p) in phrases.iter().enumerate() {
            let (_, s) = run(&model, &vocab, p, &format!("{}:{}", path.display(), i + 1))?;
            let buf = pick(&s);
            let last = buf.len() / (l * h) - 1;
            x.extend(buf[(last * l + l - 1) * h..][..h].iter().map(|&v| v as f64));
        }
        let (scores, explained) = principal_components(&x, phrases.len(), h, 2)?;
        let points: Vec<(f64, f64)> = (0..phrases.len())
            .map(|i| (scores[2 * i], scores[2 * i + 1]))
            .collect();
        let labels: Vec<String> = phrases.iter().map(|p| p.to_string()).collect();
        let svg = a.out.join("pca.svg");
        scatter_plot(
            &svg,
            &format!(
                "final {state} of layer {} (of {l}), first two principal components",
                l - 1
            ),
            (
                &format!("PC1 ({:.1}% of the variance)", 100.0 * explained[0]),
                &format!("PC2 ({:.1}%)", 100.0 * explained[1]),
            ),
            &points,
            &labels,
        )?;
        let json: Vec<_> = labels
            .iter()
            .zip(&points)
            .map(|(p, (x, y))| serde_json::json!({"phrase": p, "pc1": x, "pc2": y}))
            .collect();
        write_atomic(
            &a.out.join("pca.json"),
            serde_json::json!({"explained": explained, "points": json})
                .to_string()
                .as_bytes(),
        )?;
        println!("{:>9} {:>9}  phrase", "PC1", "PC2");
        for (p, (x, y)) in labels.iter().zip(&points) {
            println!("{x:>9.4} {y:>9.4}  {p}");
        }
        println!(
            "PC1 and PC2 explain {:.1}% and {:.1}% of the variance; wrote {}",
            100.0 * explained[0],
            100.0 * explained[1],
            svg.display()
        );
    }

    if a.unit.is_some() || a.top.is_some() {
        let path = a.text.as_ref().expect("clap requires --text");
        let text = recur::data::read_text(path)?;
        let (tokens, s) = run(&model, &vocab, &text, &path.display().to_string())?;
        let buf = pick(&s);
        let n = tokens.len();
        let at = |t: usize, layer: usize, u: usize| buf[(t * l + layer) * h + u];
        if let Some(spec) = &a.unit {
            let (layer, unit) = spec
                .split_once(':')
                .and_then(|(x, y)| {
                    Some((
                        x.trim().parse::<usize>().ok()?,
                        y.trim().parse::<usize>().ok()?,
                    ))
                })
                .with_context(|| {
                    format!("--unit: expected LAYER:UNIT such as 1:42, got '{spec}'")
                })?;
            if layer >= l || unit >= h {
                bail!(
                    "--unit {spec}: the model has layers 0 to {} and units 0 to {}",
                    l - 1,
                    h - 1
                );
            }
            let values: Vec<f32> = (0..n).map(|t| at(t, layer, unit)).collect();
            let stem = format!("unit-{layer}-{unit}");
            let title = format!(
                "layer {layer}, unit {unit} ({state}) over {}",
                path.display()
            );
            write_atomic(
                &a.out.join(format!("{stem}.html")),
                coloured_html(&title, &tokens, &values).as_bytes(),
            )?;
            write_atomic(
                &a.out.join(format!("{stem}.svg")),
                coloured_svg(&title, &tokens, &values).as_bytes(),
            )?;
            println!("wrote {0}/{stem}.html and {0}/{stem}.svg", a.out.display());
        }
        if let Some(pattern) = &a.top {
            let re = regex::Regex::new(pattern)
                .with_context(|| format!("--top: '{pattern}' is not a regular expression"))?;
            // Each token's indicator: 1 when its text lies inside a match.
            let joined: String = tokens.concat();
            let mut inside = vec![0u8; joined.len()];
            for m in re.find_iter(&joined) {
                inside[m.range()].fill(1);
            }
            let mut pos = 0;
            let ind: Vec<f64> = tokens
                .iter()
                .map(|t| {
                    let v = f64::from(inside[pos..pos + t.len()].contains(&1));
                    pos += t.len();
                    v
                })
                .collect();
            let hits = ind.iter().filter(|&&v| v > 0.0).count();
            if hits == 0 || hits == n {
                bail!("--top '{pattern}': it matches {} of the text's {n} tokens; expected some but not all", hits);
            }
            let mut ranked: Vec<(usize, usize, f64)> = Vec::with_capacity(l * h);
            for layer in 0..l {
                for u in 0..h {
                    let v: Vec<f64> = (0..n).map(|t| at(t, layer, u) as f64).collect();
                    ranked.push((layer, u, correlation(&v, &ind)));
                }
            }
            ranked.sort_by(|x, y| {
                y.2.abs()
                    .total_cmp(&x.2.abs())
                    .then((x.0, x.1).cmp(&(y.0, y.1)))
            });
            println!("units most correlated with being inside /{pattern}/ ({hits} of {n} tokens):");
            println!("{:>5} {:>6} {:>9}", "layer", "unit", "r");
            let top: Vec<_> = ranked.iter().take(a.count.max(1)).collect();
            for (layer, u, r) in &top {
                println!("{layer:>5} {u:>6} {r:>9.4}");
            }
            let json: Vec<_> = top
                .iter()
                .map(|(layer, u, r)| serde_json::json!({"layer": layer, "unit": u, "r": r}))
                .collect();
            write_atomic(
                &a.out.join("top.json"),
                serde_json::Value::from(json).to_string().as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// Pearson's r (0 when either side is constant).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Blue for −1, white for 0, red for +1.
fn colour(v: f32) -> String {
    let a = v.clamp(-1.0, 1.0);
    if a >= 0.0 {
        format!("rgba(255,90,79,{a:.3})")
    } else {
        format!("rgba(79,124,255,{:.3})", -a)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn coloured_html(title: &str, tokens: &[String], values: &[f32]) -> String {
    let mut s = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title>\
         <style>body{{font:15px/1.7 ui-monospace,Menlo,monospace;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         pre{{white-space:pre-wrap}}span{{border-radius:2px}}</style><h3>{0}</h3><pre>",
        escape(title)
    );
    for (t, v) in tokens.iter().zip(values) {
        s += &format!(
            "<span style=\"background:{}\" title=\"{v:.3}\">{}</span>",
            colour(*v),
            escape(t)
        );
    }
    s + "</pre>"
}

/// The text on a monospace grid, each token's cell shaded by its value.
fn coloured_svg(title: &str, tokens: &[String], values: &[f32]) -> String {
    let (cw, lh, cols) = (9.0, 20.0, 100usize);
    let (mut x, mut y) = (0usize, 0usize);
    let mut cells = String::new();
    for (t, v) in tokens.iter().zip(values) {
        for ch in t.chars() {
            if ch == '\n' {
                cells += &format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{cw}\" height=\"{lh}\" fill=\"{}\"/>",
                    10.0 + x as f64 * cw,
                    40.0 + y as f64 * lh,
                    colour(*v)
                );
                x = 0;
                y += 1;
                continue;
            }
            if x == cols {
                x = 0;
                y += 1;
            }
            let (px, py) = (10.0 + x as f64 * cw, 40.0 + y as f64 * lh);
            cells += &format!(
                "<rect x=\"{px:.1}\" y=\"{py:.1}\" width=\"{cw}\" height=\"{lh}\" fill=\"{}\"/>",
                colour(*v)
            );
            if !ch.is_whitespace() {
                cells += &format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    px + 1.0,
                    py + 15.0,
                    escape(&ch.to_string())
                );
            }
            x += 1;
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"monospace\" font-size=\"14\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"10\" y=\"24\" font-family=\"sans-serif\" font-size=\"16\">{}</text>{cells}</svg>",
        20.0 + cols as f64 * cw,
        60.0 + (y + 1) as f64 * lh,
        escape(title)
    )
}
