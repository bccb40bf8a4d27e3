//! Charts that GitHub renders natively in Markdown (job summary, PR comment, check-run text):
//! Mermaid `xychart-beta` blocks for bars and lines, and Unicode bars in a code block where
//! Mermaid cannot express the picture (an interval). Built from the typed digests in
//! `crate::contracts`; every chart is followed by the numbers in words, because Mermaid draws no
//! legend and a reader of the raw Markdown (or of a notification e-mail) sees only the source.

use std::fmt::Write as _;

use super::number;
use crate::contracts::{DriftDigest, GateDigest, HistoryRecord};

/// Columns drawn in a per-column chart at most (the rest are in the table).
pub const MAX_COLUMNS: usize = 20;
/// Runs drawn in a trend chart at most (the most recent).
pub const TREND_RUNS: usize = 20;

/// A label Mermaid accepts inside double quotes: no quotes, brackets or line breaks.
fn label(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !matches!(c, '"' | '[' | ']' | '\n' | '\r' | '`' | ';' | '#'))
        .take(80)
        .collect();
    format!("\"{}\"", clean.trim())
}

/// A number Mermaid parses (plain decimal, no exponent).
fn num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// One `xychart-beta` chart.
#[derive(Debug, Clone, Default)]
pub struct XyChart {
    pub title: String,
    pub horizontal: bool,
    pub x_labels: Vec<String>,
    pub y_title: String,
    pub y_range: Option<(f64, f64)>,
    pub bars: Vec<Vec<f64>>,
    pub lines: Vec<Vec<f64>>,
}

impl XyChart {
    /// The chart as a fenced ```mermaid block.
    pub fn mermaid(&self) -> String {
        let mut m = String::from("```mermaid\nxychart-beta");
        if self.horizontal {
            m.push_str(" horizontal");
        }
        m.push('\n');
        let _ = writeln!(m, "    title {}", label(&self.title));
        let xs: Vec<String> = self.x_labels.iter().map(|x| label(x)).collect();
        let _ = writeln!(m, "    x-axis [{}]", xs.join(", "));
        match self.y_range {
            Some((lo, hi)) => {
                let _ = writeln!(
                    m,
                    "    y-axis {} {} --> {}",
                    label(&self.y_title),
                    num(lo),
                    num(hi)
                );
            }
            None => {
                let _ = writeln!(m, "    y-axis {}", label(&self.y_title));
            }
        }
        let series = |m: &mut String, kind: &str, v: &[f64]| {
            let vals: Vec<String> = v.iter().map(|x| num(*x)).collect();
            let _ = writeln!(m, "    {kind} [{}]", vals.join(", "));
        };
        for b in &self.bars {
            series(&mut m, "bar", b);
        }
        for l in &self.lines {
            series(&mut m, "line", l);
        }
        m.push_str("```\n");
        m
    }
}

/// A bar of Unicode blocks, `value / max` of `width` cells (eighths for the last cell).
pub fn unicode_bar(value: f64, max: f64, width: usize) -> String {
    if !(value.is_finite() && max.is_finite() && max > 0.0) {
        return String::new();
    }
    let eighths = ((value.clamp(0.0, max) / max) * (width * 8) as f64).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    s.push_str(PARTS[eighths % 8]);
    s
}

/// A rounded-out axis range around values (with `extra` values that must show, e.g. a threshold).
fn range(values: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.15).max(0.01);
    let lo = if floor_zero {
        0.0
    } else {
        ((lo - pad) * 100.0).floor() / 100.0
    };
    let hi = ((hi + pad) * 100.0).ceil() / 100.0;
    (lo.max(0.0), hi)
}

/// Per-column drift scores against their thresholds: one chart per kind of score (p-values,
/// where drift is below the line, and distances, where drift is on or above it), most drifted
/// columns first.
pub fn drift_scores(d: &DriftDigest) -> String {
    let mut md = String::new();
    for (kind, title, rule) in [
        (
            "distance",
            "Drift distance by column (line: threshold)",
            "a bar reaching the line is drift",
        ),
        (
            "p_value",
            "Drift test p-value by column (line: threshold)",
            "a bar below the line is drift",
        ),
    ] {
        let cols: Vec<_> = d
            .columns
            .iter()
            .filter(|c| c.score_kind == kind && c.score.is_some())
            .collect();
        if cols.is_empty() {
            continue;
        }
        let shown = &cols[..cols.len().min(MAX_COLUMNS)];
        let chart = XyChart {
            title: title.into(),
            horizontal: true,
            x_labels: shown
                .iter()
                .map(|c| {
                    if c.drifted {
                        format!("{} (drift)", c.column)
                    } else {
                        c.column.clone()
                    }
                })
                .collect(),
            y_title: if kind == "p_value" {
                "p-value".into()
            } else {
                "distance".into()
            },
            y_range: Some(range(
                shown
                    .iter()
                    .flat_map(|c| [c.score.unwrap_or(0.0), c.threshold]),
                true,
            )),
            bars: vec![shown.iter().map(|c| c.score.unwrap_or(0.0)).collect()],
            lines: vec![shown.iter().map(|c| c.threshold).collect()],
        };
        md.push_str(&chart.mermaid());
        let drifted = cols.iter().filter(|c| c.drifted).count();
        let _ = writeln!(
            md,
            "\n{} of {} columns tested by {} drifted ({rule}){}.\n",
            drifted,
            cols.len(),
            kind.replace('_', "-"),
            if cols.len() > shown.len() {
                format!("; the {} most drifted are drawn", shown.len())
            } else {
                String::new()
            }
        );
    }
    md
}

/// Production against candidate AUC on the same holdout, with the paired bootstrap interval of
/// the difference: a Mermaid bar chart for the two AUCs and a Unicode strip for the interval
/// (Mermaid has no error bars).
pub fn auc_comparison(g: &GateDigest) -> String {
    let Some(cand) = g.candidate_auc else {
        return String::new();
    };
    let mut md = String::new();
    let prod_label = match g.production_version {
        Some(v) => format!("production v{v}"),
        None => "production".into(),
    };
    let (labels, values): (Vec<String>, Vec<f64>) = match g.production_auc {
        Some(p) => (vec![prod_label.clone(), "candidate".into()], vec![p, cand]),
        None => (vec!["candidate".into()], vec![cand]),
    };
    let chart = XyChart {
        title: "Holdout ROC AUC".into(),
        horizontal: false,
        x_labels: labels,
        y_title: "ROC AUC".into(),
        y_range: Some(range(values.iter().copied(), false)),
        bars: vec![values],
        lines: Vec::new(),
    };
    md.push_str(&chart.mermaid());
    md.push('\n');
    let mut text = String::new();
    match g.production_auc {
        Some(p) => {
            let _ = writeln!(
                text,
                "{:<16} {:>7}  {}",
                prod_label,
                number(p, 4),
                unicode_bar(p, 1.0, 40)
            );
            let _ = writeln!(
                text,
                "{:<16} {:>7}  {}",
                "candidate",
                number(cand, 4),
                unicode_bar(cand, 1.0, 40)
            );
        }
        None => {
            let _ = writeln!(
                text,
                "{:<16} {:>7}  {}   (no production model to compare with)",
                "candidate",
                number(cand, 4),
                unicode_bar(cand, 1.0, 40)
            );
        }
    }
    if let (Some(delta), Some((lo, hi, conf))) = (g.delta, g.interval) {
        let _ = writeln!(
            text,
            "\nΔ AUC {} , {:.0}% interval [{}, {}]",
            super::delta(delta, 4),
            conf * 100.0,
            super::delta(lo, 4),
            super::delta(hi, 4)
        );
        text.push_str(&interval_strip(
            delta,
            lo,
            hi,
            g.min_delta,
            g.refresh_tolerance,
        ));
    }
    md.push_str(&super::code_block("text", &text));
    md.push('\n');
    md
}

/// The axis that shows an AUC-difference interval: it spans the interval, the estimate, zero and
/// the gate's limits (min delta and min delta − refresh tolerance), padded by a tenth.
pub fn interval_axis(delta: f64, lo: f64, hi: f64, min_delta: f64, tolerance: f64) -> (f64, f64) {
    let marks = [lo, hi, delta, 0.0, min_delta, min_delta - tolerance];
    let (a, b) = marks
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let pad = ((b - a) * 0.1).max(1e-3);
    (a - pad, b + pad)
}

/// A one-line strip: the interval as `─`, the estimate as `●`, zero as `┼`, and the gate's
/// limits as `|` (min delta) and `¦` (min delta − refresh tolerance).
pub fn interval_strip(delta: f64, lo: f64, hi: f64, min_delta: f64, tolerance: f64) -> String {
    let refresh = min_delta - tolerance;
    let (a, b) = interval_axis(delta, lo, hi, min_delta, tolerance);
    const W: usize = 50;
    let pos = |v: f64| (((v - a) / (b - a)) * (W - 1) as f64).round() as usize;
    let mut cells = vec![' '; W];
    for c in cells.iter_mut().take(pos(hi) + 1).skip(pos(lo)) {
        *c = '─';
    }
    cells[pos(refresh)] = '¦';
    cells[pos(min_delta)] = '|';
    cells[pos(0.0)] = '┼';
    cells[pos(delta)] = '●';
    let strip: String = cells.into_iter().collect();
    format!(
        "{} {strip} {}\n● Δ  ─ interval  ┼ 0  | gate min Δ {}  ¦ refresh limit {}\n",
        super::delta(a, 3),
        super::delta(b, 3),
        super::delta(min_delta, 3),
        super::delta(refresh, 3)
    )
}

/// A short label for a run in a trend: its batch's name (first word), else `bootstrap`.
pub fn run_label(r: &HistoryRecord) -> String {
    if let Some(b) = &r.run.inputs.batch {
        return b.split_whitespace().next().unwrap_or(b).to_owned();
    }
    "bootstrap".into()
}

/// The drift share and the AUCs over the last [`TREND_RUNS`] runs (oldest first).
pub fn trends(history: &[HistoryRecord]) -> String {
    let recent = &history[history.len().saturating_sub(TREND_RUNS)..];
    let mut md = String::new();
    let drift: Vec<(String, f64, f64)> = recent
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let d = r.drift.as_ref()?;
            Some((
                format!("{} {}", i + 1, run_label(r)),
                d.share,
                d.share_threshold,
            ))
        })
        .collect();
    if drift.len() >= 2 {
        let chart = XyChart {
            title: format!("Drift share, last {} runs (line: threshold)", drift.len()),
            horizontal: false,
            x_labels: drift.iter().map(|d| d.0.clone()).collect(),
            y_title: "share of columns drifted".into(),
            y_range: Some(range(drift.iter().flat_map(|d| [d.1, d.2]), true)),
            bars: vec![drift.iter().map(|d| d.1).collect()],
            lines: vec![drift.iter().map(|d| d.2).collect()],
        };
        md.push_str(&chart.mermaid());
        md.push('\n');
    }
    let auc: Vec<(String, f64, Option<f64>)> = recent
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let g = r.gate.as_ref()?;
            Some((
                format!("{} {}", i + 1, run_label(r)),
                g.candidate_auc?,
                g.production_auc,
            ))
        })
        .collect();
    if auc.len() >= 2 {
        let with_prod = auc.iter().all(|a| a.2.is_some());
        let chart = XyChart {
            title: format!(
                "Holdout ROC AUC, last {} gated runs{}",
                auc.len(),
                if with_prod {
                    " (bars: candidate, line: production)"
                } else {
                    " (candidate)"
                }
            ),
            horizontal: false,
            x_labels: auc.iter().map(|a| a.0.clone()).collect(),
            y_title: "ROC AUC".into(),
            y_range: Some(range(
                auc.iter().flat_map(|a| [Some(a.1), a.2]).flatten(),
                false,
            )),
            bars: vec![auc.iter().map(|a| a.1).collect()],
            lines: if with_prod {
                vec![auc.iter().map(|a| a.2.unwrap_or(0.0)).collect()]
            } else {
                Vec::new()
            },
        };
        md.push_str(&chart.mermaid());
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_blocks_quote_labels_and_print_plain_numbers() {
        let c = XyChart {
            title: "A \"quoted\" title".into(),
            horizontal: true,
            x_labels: vec!["age [years]".into(), "race".into()],
            y_title: "p".into(),
            y_range: Some((0.0, 0.5)),
            bars: vec![vec![1e-9, 0.25]],
            lines: vec![vec![0.05, 0.05]],
        };
        assert_eq!(
            c.mermaid(),
            "```mermaid\nxychart-beta horizontal\n    title \"A quoted title\"\n    x-axis [\"age years\", \"race\"]\n    y-axis \"p\" 0 --> 0.5\n    bar [0, 0.25]\n    line [0.05, 0.05]\n```\n"
        );
    }

    #[test]
    fn unicode_bars_use_eighths() {
        assert_eq!(unicode_bar(0.5, 1.0, 2), "█");
        assert_eq!(unicode_bar(0.5625, 1.0, 2), "█▏");
        assert_eq!(unicode_bar(f64::NAN, 1.0, 2), "");
    }

    #[test]
    fn interval_strip_marks_estimate_zero_and_limits() {
        let s = interval_strip(0.01, -0.005, 0.02, 0.0, 0.02);
        let line = s.lines().next().unwrap();
        assert!(
            line.contains('●') && line.contains('┼') && line.contains('¦'),
            "{s}"
        );
        // The estimate lies inside the interval: dashes on both sides of it.
        let strip: Vec<char> = line.chars().collect();
        let dot = strip.iter().position(|c| *c == '●').unwrap();
        assert_eq!(strip[dot - 1], '─', "{s}");
        assert_eq!(strip[dot + 1], '─', "{s}");
    }
}
