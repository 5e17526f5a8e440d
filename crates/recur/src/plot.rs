//! Loss curves and gradient-flow figures as SVG, drawn with plotters into
//! memory and written through a temporary file and a rename.

use std::path::Path;

use plotters::prelude::*;

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};

/// Draws with `draw` into a string and writes it to `path`; `draw` returns
/// false when there is nothing to draw (no file is written).
fn save_svg(
    path: &Path,
    draw: impl FnOnce(&mut String) -> std::result::Result<bool, String>,
) -> Result<()> {
    let mut svg = String::new();
    let drawn = draw(&mut svg).map_err(|m| Error::Io {
        path: path.display().to_string(),
        message: format!("drawing the plot failed: {m}"),
    })?;
    if drawn {
        write_atomic(path, svg.as_bytes())
    } else {
        Ok(())
    }
}

/// 1200000 → "1.2M", 35000 → "35k", 250 → "250".
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One line of the plot: (x, y) points and a label.
pub struct Series<'a> {
    /// The legend's text.
    pub label: &'a str,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Red, green, blue.
    pub color: (u8, u8, u8),
}

/// Draws the series against a shared x axis into an SVG file.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    save_svg(path, |svg| draw_lines(svg, title, x_desc, y_desc, series))
}

fn draw_lines(
    svg: &mut String,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> std::result::Result<bool, String> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.1.is_finite())
        .collect();
    if all.is_empty() {
        return Ok(false);
    }
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(svg, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| short_number(*v))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let (r, g, b) = s.color;
        let color = RGBColor(r, g, b);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

/// The gradient-flow figure of `recur diagnose`: on top ‖dL/dh_t‖ against t
/// (log scale), below σ_max(∂h_t/∂h_{t−1}) against t, one line per record,
/// from light (early in training) to dark (late).
pub fn gradient_flow_plot(
    path: &Path,
    title: &str,
    flows: &[crate::task::GradientFlow],
) -> Result<()> {
    save_svg(path, |svg| draw_flows(svg, title, flows))
}

fn draw_flows(
    svg: &mut String,
    title: &str,
    flows: &[crate::task::GradientFlow],
) -> std::result::Result<bool, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let tn = flows
        .iter()
        .map(|f| f.state_grad_norm.len())
        .max()
        .unwrap_or(0);
    if tn == 0 {
        return Ok(false);
    }
    // log10 on a linear axis: plotters' log axis labels only a few decades,
    // and a vanishing gradient spans dozens.
    let positive = |v: &f64| v.is_finite() && *v > 0.0;
    let g: Vec<f64> = flows
        .iter()
        .flat_map(|f| f.state_grad_norm.iter().copied())
        .filter(positive)
        .map(f64::log10)
        .collect();
    let (g0, g1) = g
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (g0, g1) = if g.is_empty() {
        (-12.0, 0.0)
    } else {
        (g0.floor(), g1.ceil().max(g0.floor() + 1.0))
    };
    let j1 = flows
        .iter()
        .flat_map(|f| f.jacobian_norm.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.05)
        * 1.05;
    let color = |k: usize| {
        let s = if flows.len() > 1 {
            k as f64 / (flows.len() - 1) as f64
        } else {
            1.0
        };
        let mix = |a: f64, b: f64| (a + (b - a) * s) as u8;
        RGBColor(mix(158.0, 8.0), mix(202.0, 48.0), mix(225.0, 107.0))
    };
    let root = SVGBackend::with_string(svg, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(440);
    let x1 = tn.saturating_sub(1).max(1) as f64;
    let mut up = ChartBuilder::on(&top)
        .caption("‖∂L/∂h_t‖ (mean over the batch)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x1, g0..g1)
        .map_err(|e| err(&e))?;
    up.configure_mesh()
        .x_desc("time step t")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("gradient norm (log scale)")
        .y_label_formatter(&|v| format!("1e{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (k, f) in flows.iter().enumerate() {
        let c = color(k);
        let pts = f
            .state_grad_norm
            .iter()
            .enumerate()
            .filter(|(_, v)| positive(v))
            .map(|(t, v)| (t as f64, v.log10()));
        up.draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("step {}", f.step))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    up.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    let mut down = ChartBuilder::on(&bottom)
        .caption(
            "σ_max(∂s_t/∂s_t−1), first sequence of the batch",
            ("sans-serif", 16),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x1, 0f64..j1)
        .map_err(|e| err(&e))?;
    down.configure_mesh()
        .x_desc("time step t")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("spectral norm")
        .draw()
        .map_err(|e| err(&e))?;
    down.draw_series(LineSeries::new(vec![(0.0, 1.0), (x1, 1.0)], BLACK.mix(0.4)))
        .map_err(|e| err(&e))?;
    for (k, f) in flows.iter().enumerate() {
        let pts = f
            .jacobian_norm
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| (t as f64, *v));
        down.draw_series(LineSeries::new(pts, color(k).stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

/// A confusion matrix as an SVG heatmap: rows the true class, columns the
/// prediction, each cell shaded by its share of the row and labelled with
/// its count.
pub fn confusion_plot(
    path: &Path,
    title: &str,
    labels: &[String],
    m: &crate::metrics::Confusion,
) -> Result<()> {
    let c = m.classes();
    if c == 0 || labels.len() != c {
        return Ok(());
    }
    let totals: Vec<u64> = (0..c)
        .map(|t| (0..c).map(|p| m.count(t, p)).sum())
        .collect();
    let grid = Grid {
        title,
        note: "rows: true class; columns: predicted",
        rows: labels,
        cols: labels,
        share: &|t, p| {
            if totals[t] == 0 {
                0.0
            } else {
                m.count(t, p) as f64 / totals[t] as f64
            }
        },
        text: &|t, p| {
            let n = m.count(t, p);
            (n > 0).then(|| short_number(n as f64))
        },
    };
    save_svg(path, |svg| grid.draw(svg))
}

/// Attention weights `[U, S]` (rows: output tokens, columns: source
/// tokens) as an SVG heatmap, darker for more weight.
pub fn attention_plot(
    path: &Path,
    title: &str,
    source: &[String],
    output: &[String],
    weights: &[f32],
) -> Result<()> {
    let (u, s) = (output.len(), source.len());
    if u == 0 || s == 0 || weights.len() != u * s {
        return Ok(());
    }
    let grid = Grid {
        title,
        note: "rows: output; columns: source",
        rows: output,
        cols: source,
        share: &|r, c| weights[r * s + c] as f64,
        text: &|_, _| None,
    };
    save_svg(path, |svg| grid.draw(svg))
}

/// A labelled grid of shaded cells.
struct Grid<'a> {
    title: &'a str,
    note: &'a str,
    rows: &'a [String],
    cols: &'a [String],
    /// Each cell's shade in [0, 1].
    share: &'a dyn Fn(usize, usize) -> f64,
    /// Each cell's text, if any.
    text: &'a dyn Fn(usize, usize) -> Option<String>,
}

impl Grid<'_> {
    fn draw(&self, svg: &mut String) -> std::result::Result<bool, String> {
        let (nr, nc) = (self.rows.len(), self.cols.len());
        let cell = (36u32).max(600 / nr.max(nc) as u32).min(60);
        let margin = 110u32;
        let (w, h) = (
            margin + cell * nc as u32 + 20,
            margin + cell * nr as u32 + 60,
        );
        let root = SVGBackend::with_string(svg, (w.max(320), h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let font = ("sans-serif", 13).into_font();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.draw(&Text::new(
            self.title.to_string(),
            (10, 10),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(self.note.to_string(), (10, 28), font.clone()))
            .map_err(err)?;
        let top = 40 + margin as i32;
        let short = |s: &str| -> String { s.chars().take(14).collect() };
        for r in 0..nr {
            for c in 0..nc {
                let share = (self.share)(r, c).clamp(0.0, 1.0);
                let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
                let (x, y) = (
                    margin as i32 + (c as u32 * cell) as i32,
                    top + (r as u32 * cell) as i32,
                );
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(err)?;
                if let Some(t) = (self.text)(r, c) {
                    let color = if share > 0.55 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        t,
                        (x + 4, y + cell as i32 / 2 - 6),
                        font.clone().color(&color),
                    ))
                    .map_err(err)?;
                }
            }
            root.draw(&Text::new(
                short(&self.rows[r]),
                (6, top + (r as u32 * cell) as i32 + cell as i32 / 2 - 6),
                font.clone(),
            ))
            .map_err(err)?;
        }
        for c in 0..nc {
            root.draw(&Text::new(
                short(&self.cols[c]),
                (
                    margin as i32 + (c as u32 * cell) as i32 + cell as i32 / 2,
                    top - 8,
                ),
                font.clone().transform(FontTransform::Rotate270),
            ))
            .map_err(err)?;
        }
        root.present().map_err(|e| e.to_string())?;
        Ok(true)
    }
}

/// Labelled points `(x, y)` as an SVG scatter plot (principal components
/// of hidden states, Sutskever et al. 2014's figure).
pub fn scatter_plot(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    points: &[(f64, f64)],
    labels: &[String],
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let pad = ((hi - lo) * 0.15).max(1e-6);
        (lo - pad)..(hi + pad)
    };
    let xr = span(&mut points.iter().map(|p| p.0));
    let yr = span(&mut points.iter().map(|p| p.1));
    save_svg(path, |svg| {
        let root = SVGBackend::with_string(svg, (900, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().zip(labels).map(|(&p, l)| {
                Text::new(l.clone(), p, ("sans-serif", 13).into_font().color(&BLACK))
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        Ok(true)
    })
}

/// One bar per label, as an SVG (lower is better for a loss).
pub fn bar_plot(
    path: &Path,
    title: &str,
    labels: &[String],
    values: &[f64],
    y_desc: &str,
) -> Result<()> {
    if labels.is_empty() || labels.len() != values.len() {
        return Ok(());
    }
    let top = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        * 1.15;
    let n = labels.len();
    save_svg(path, |svg| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let root = SVGBackend::with_string(svg, (960, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(90)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1e-9))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    BLUE.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 8, 8);
                bar
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                Text::new(
                    format!("{v:.3}"),
                    (SegmentValue::CenterOf(i), v + top * 0.02),
                    ("sans-serif", 12).into_font(),
                )
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(true)
    })
}
