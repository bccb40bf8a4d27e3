//! The run history as a static site (`report html`): `index.html` lists every run (date, batch,
//! drift share, decision, versions, AUC) under trend charts, and `runs/<run>.html` shows one run
//! (drift by column, the gate with its interval, API tests, steps). Self-contained: inline CSS
//! and inline SVG, no scripts, no external requests, so it works from an artifact, a file:// URL
//! or GitHub Pages alike. Every file is written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{charts, number, percent};
use crate::contracts::{HistoryRecord, Status};

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Site {
    pub index: PathBuf,
    pub runs: usize,
    pub pages: Vec<PathBuf>,
}

impl crate::output::Render for Site {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "wrote {} ({} runs, {} run pages)",
            self.index.display(),
            self.runs,
            self.pages.len()
        )
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#1f2328;background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}\
table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}a{color:#0969da}\
.muted{color:#59636e}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}\
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #d0d7de;border-radius:6px;padding:8px}\
svg text{font:11px system-ui,sans-serif;fill:#1f2328}code{font:12px ui-monospace,monospace}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<title>{}</title><style>{CSS}</style></head>\n<body>\n{body}\n<p class=\"muted\">Written by health-predict {} · <code>health-predict report html</code></p>\n</body></html>\n",
        esc(title),
        crate::VERSION
    )
}

/// A file name for a run's page (unique by position in the history).
fn page_name(i: usize, r: &HistoryRecord) -> String {
    let id: String = r
        .run
        .run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{:04}-{id}.html", i + 1)
}

fn class_of(decision: Option<&str>, status: &str) -> &'static str {
    match (decision, status) {
        (_, "errored" | "interrupted") => "bad",
        (Some("DEPLOY" | "DEPLOY_REFRESH"), "passed") => "ok",
        (Some("SKIP" | "REFUSED"), _) => "warn",
        (_, "failed") => "bad",
        _ => "",
    }
}

/// An RFC 3339 time as `2026-12-04 16:58:08 UTC` (as recorded when it does not parse).
fn when(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn opt_num(v: Option<f64>, digits: usize) -> String {
    v.map(|v| number(v, digits)).unwrap_or_else(|| "—".into())
}

fn versions(r: &HistoryRecord) -> String {
    let v = |x: Option<u64>| x.map_or("none".to_owned(), |v| format!("v{v}"));
    let cand = r
        .run
        .model
        .as_ref()
        .and_then(|m| m.version)
        .map(|v| format!(" · candidate v{v}"))
        .unwrap_or_default();
    format!(
        "{} → {}{cand}",
        v(r.run.production_before),
        v(r.run.production_after)
    )
}

/// Writes the site for `history` (oldest first) into `out`.
pub fn write(history: &[HistoryRecord], out: &Path, source: &str) -> std::io::Result<Site> {
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let mut pages = Vec::new();
    for (i, r) in history.iter().enumerate() {
        let name = page_name(i, r);
        let prev = i.checked_sub(1).map(|p| page_name(p, &history[p]));
        let next = history.get(i + 1).map(|n| page_name(i + 1, n));
        let html = run_page(i, r, prev.as_deref(), next.as_deref());
        let path = runs_dir.join(&name);
        crate::fsutil::write_atomic(&path, html.as_bytes())?;
        pages.push(path);
    }
    let index = out.join("index.html");
    crate::fsutil::write_atomic(&index, index_page(history, source).as_bytes())?;
    Ok(Site {
        index,
        runs: history.len(),
        pages,
    })
}

fn index_page(history: &[HistoryRecord], source: &str) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>health-predict run history</h1><p class=\"muted\">{} runs from <code>{}</code></p>",
        history.len(),
        esc(source)
    );
    if history.is_empty() {
        b.push_str("<p>No runs recorded yet: <code>health-predict pipeline run</code> appends each run to <code>STATE_DIR/history/</code>.</p>");
        return page("health-predict run history", &b);
    }
    let labels: Vec<String> = history
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} {}", i + 1, charts::run_label(r)))
        .collect();
    b.push_str("<h2>Trends</h2><div class=\"charts\">");
    let share: Vec<Option<f64>> = history
        .iter()
        .map(|r| r.drift.as_ref().map(|d| d.share))
        .collect();
    let threshold = history
        .iter()
        .rev()
        .find_map(|r| r.drift.as_ref().map(|d| d.share_threshold));
    b.push_str(&format!(
        "<div class=\"chart\">{}</div>",
        svg::lines(
            "Drift share (dashed: retrain threshold)",
            &labels,
            &[("drift share", "#0969da", &share)],
            threshold,
            Some((
                0.0,
                share
                    .iter()
                    .flatten()
                    .copied()
                    .chain(threshold)
                    .fold(0.05f64, f64::max)
                    * 1.25
            )),
        )
    ));
    let cand: Vec<Option<f64>> = history
        .iter()
        .map(|r| r.gate.as_ref().and_then(|g| g.candidate_auc))
        .collect();
    let prod: Vec<Option<f64>> = history
        .iter()
        .map(|r| r.gate.as_ref().and_then(|g| g.production_auc))
        .collect();
    b.push_str(&format!(
        "<div class=\"chart\">{}</div></div>",
        svg::lines(
            "Holdout ROC AUC (blue: candidate, orange: production)",
            &labels,
            &[
                ("candidate", "#0969da", &cand),
                ("production", "#bc4c00", &prod)
            ],
            None,
            None,
        )
    ));
    b.push_str("<h2>Runs</h2><table><thead><tr><th>#</th><th>Started</th><th>Run</th><th>Batch</th><th>Drift share</th><th>Decision</th><th>Status</th><th>Production (before → after)</th><th>AUC candidate</th><th>AUC production</th><th>API tests</th></tr></thead><tbody>");
    for (i, r) in history.iter().enumerate().rev() {
        let run = &r.run;
        let decision = run.decision.as_deref();
        let _ = write!(
            b,
            "<tr><td class=\"n\">{}</td><td>{}</td><td><a href=\"runs/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td><td>{} (exit {})</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&when(&run.started)),
            esc(&page_name(i, r)),
            esc(&run.run_id),
            esc(run.inputs.batch.as_deref().unwrap_or("— (bootstrap)")),
            r.drift.as_ref().map_or("—".into(), |d| percent(d.share)),
            class_of(decision, &run.status),
            esc(decision.unwrap_or("—")),
            esc(&run.status),
            run.exit_code,
            esc(&versions(r)),
            opt_num(
                r.gate
                    .as_ref()
                    .and_then(|g| g.candidate_auc)
                    .or(run.holdout_auc),
                4
            ),
            opt_num(r.gate.as_ref().and_then(|g| g.production_auc), 4),
            run.tests.as_ref().map_or("—".into(), |t| format!(
                "{} passed, {} failed",
                t.passed, t.failed
            )),
        );
    }
    b.push_str("</tbody></table>");
    page("health-predict run history", &b)
}

fn run_page(i: usize, r: &HistoryRecord, prev: Option<&str>, next: Option<&str>) -> String {
    let run = &r.run;
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"../index.html\">← all runs</a>{}{}</p><h1>Run {} · <span class=\"{}\">{}</span></h1><p class=\"muted\"><code>{}</code> · started {} · {:.1} s</p>",
        prev.map(|p| format!(" · <a href=\"{}\">previous</a>", esc(p)))
            .unwrap_or_default(),
        next.map(|n| format!(" · <a href=\"{}\">next</a>", esc(n)))
            .unwrap_or_default(),
        i + 1,
        class_of(run.decision.as_deref(), &run.status),
        esc(run.decision.as_deref().unwrap_or("no decision")),
        esc(&run.run_id),
        esc(&when(&run.started)),
        run.seconds
    );
    b.push_str("<table><tbody>");
    let row = |b: &mut String, k: &str, v: String| {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    row(
        &mut b,
        "Status",
        format!("{} (exit {})", run.status, run.exit_code),
    );
    row(&mut b, "Versions", versions(r));
    row(
        &mut b,
        "Initial data",
        format!("{} ({} rows)", run.inputs.initial, run.inputs.initial_rows),
    );
    row(
        &mut b,
        "Batch",
        match &run.inputs.batch {
            Some(x) => format!(
                "{x} ({} rows)",
                run.inputs.batch_rows.map_or("?".into(), |n| n.to_string())
            ),
            None => "none (bootstrap run)".into(),
        },
    );
    if let Some(img) = &run.image {
        row(&mut b, "Image", img.clone());
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Drift</h2>");
    match &r.drift {
        Some(d) => {
            let _ = write!(
                b,
                "<p>Drift share <b>{}</b> (retrain when over {}): {}</p>",
                percent(d.share),
                percent(d.share_threshold),
                esc(&d.reason)
            );
            b.push_str("<div class=\"charts\">");
            for (kind, title) in [
                (
                    "distance",
                    "Distance by column (tick: threshold; drift at or past it)",
                ),
                (
                    "p_value",
                    "p-value by column (tick: threshold; drift below it)",
                ),
            ] {
                let rows: Vec<_> = d
                    .columns
                    .iter()
                    .filter(|c| c.score_kind == kind)
                    .map(|c| (c.column.as_str(), c.score, c.threshold, c.drifted))
                    .collect();
                if !rows.is_empty() {
                    let _ = write!(
                        b,
                        "<div class=\"chart\">{}</div>",
                        svg::hbars(title, &rows)
                    );
                }
            }
            b.push_str("</div>");
        }
        None => b.push_str("<p class=\"muted\">No drift check in this run (a bootstrap run, or it stopped before).</p>"),
    }

    b.push_str("<h2>Gate</h2>");
    match &r.gate {
        Some(g) => {
            let _ = write!(
                b,
                "<p><b class=\"{}\">{}</b>: {}</p>",
                class_of(Some(&g.decision), "passed"),
                esc(&g.decision),
                esc(&g.reason)
            );
            let _ = write!(
                b,
                "<div class=\"charts\"><div class=\"chart\">{}</div>",
                svg::auc_bars(g)
            );
            if let (Some(delta), Some((lo, hi, conf))) = (g.delta, g.interval) {
                let _ = write!(
                    b,
                    "<div class=\"chart\">{}</div>",
                    svg::interval(delta, lo, hi, conf, g.min_delta, g.refresh_tolerance)
                );
            }
            b.push_str("</div>");
        }
        None => b.push_str("<p class=\"muted\">The gate did not run.</p>"),
    }

    b.push_str("<h2>API tests</h2>");
    if r.tests.is_empty() {
        b.push_str(&match &run.tests {
            Some(t) => format!("<p>{} passed, {} failed.</p>", t.passed, t.failed),
            None => "<p class=\"muted\">The API tests did not run.</p>".into(),
        });
    } else {
        b.push_str(
            "<table><thead><tr><th>Test</th><th>Outcome</th><th>Message</th></tr></thead><tbody>",
        );
        for t in &r.tests {
            let cls = if t.outcome == "passed" { "ok" } else { "bad" };
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td class=\"{cls}\">{}</td><td>{}</td></tr>",
                esc(&t.name),
                esc(&t.outcome),
                esc(&t.message)
            );
        }
        b.push_str("</tbody></table>");
    }

    b.push_str("<h2>Steps</h2><table><thead><tr><th>Step</th><th>Status</th><th>Seconds</th><th>Detail</th></tr></thead><tbody>");
    for s in &run.steps {
        let cls = match s.status {
            Status::Passed => "ok",
            Status::Failed | Status::Errored => "bad",
            Status::Skipped => "muted",
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"{cls}\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            format!("{:?}", s.status).to_lowercase(),
            number(s.seconds, 2),
            esc(&s.detail)
        );
    }
    b.push_str("</tbody></table>");
    page(&format!("health-predict run {}", run.run_id), &b)
}

/// Inline SVG charts.
pub mod svg {
    use std::fmt::Write as _;

    use super::{esc, number};
    use crate::contracts::GateDigest;

    const W: f64 = 520.0;

    /// Line chart over categories; `None` points leave a gap. `threshold` draws a dashed line.
    pub fn lines(
        title: &str,
        labels: &[String],
        series: &[(&str, &str, &Vec<Option<f64>>)],
        threshold: Option<f64>,
        y_range: Option<(f64, f64)>,
    ) -> String {
        let h = 260.0;
        let (l, r, t, btm) = (48.0, 70.0, 28.0, 64.0);
        let values = series
            .iter()
            .flat_map(|s| s.2.iter().flatten().copied())
            .chain(threshold);
        let (lo, hi) = y_range.unwrap_or_else(|| {
            let (a, b) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            if a.is_finite() {
                let pad = ((b - a) * 0.15).max(0.01);
                (a - pad, b + pad)
            } else {
                (0.0, 1.0)
            }
        });
        let n = labels.len().max(1);
        let x = |i: usize| {
            if n == 1 {
                l + (W - l - r) / 2.0
            } else {
                l + (W - l - r) * i as f64 / (n - 1) as f64
            }
        };
        let y = |v: f64| t + (h - t - btm) * (1.0 - (v - lo) / (hi - lo));
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><text x=\"{l}\" y=\"16\" font-weight=\"600\">{}</text>",
            esc(title),
            esc(title)
        );
        for k in 0..=4 {
            let v = lo + (hi - lo) * k as f64 / 4.0;
            let _ = write!(
                s,
                "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - r,
                l - 4.0,
                y(v) + 4.0,
                number(v, 3),
                y = y(v)
            );
        }
        if let Some(th) = threshold {
            let _ = write!(
                s,
                "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"5 4\"/>",
                W - r,
                y = y(th)
            );
        }
        let step = n.div_ceil(12);
        for (i, lab) in labels.iter().enumerate() {
            if i % step == 0 {
                let _ = write!(
                    s,
                    "<text transform=\"translate({:.1},{}) rotate(35)\">{}</text>",
                    x(i),
                    h - btm + 14.0,
                    esc(lab)
                );
            }
        }
        for (name, color, vals) in series {
            let mut d = String::new();
            let mut pen_up = true;
            for (i, v) in vals.iter().enumerate() {
                match v {
                    Some(v) => {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1} ",
                            if pen_up { "M" } else { "L" },
                            x(i),
                            y(*v)
                        );
                        pen_up = false;
                        let _ = write!(
                            s,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {}</title></circle>",
                            x(i),
                            y(*v),
                            esc(name),
                            number(*v, 4)
                        );
                    }
                    None => pen_up = true,
                }
            }
            if !d.is_empty() {
                let _ = write!(
                    s,
                    "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                    d.trim_end()
                );
            }
        }
        s.push_str("</svg>");
        s
    }

    /// Horizontal bars (score per column) with a tick at each column's threshold; drifted
    /// columns in red.
    pub fn hbars(title: &str, rows: &[(&str, Option<f64>, f64, bool)]) -> String {
        let row_h = 16.0;
        let (l, r, t) = (150.0, 60.0, 28.0);
        let h = t + row_h * rows.len() as f64 + 12.0;
        let max = rows
            .iter()
            .flat_map(|r| [r.1.unwrap_or(0.0), r.2])
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let x = |v: f64| l + (W - l - r) * (v.clamp(0.0, max) / max);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><text x=\"4\" y=\"16\" font-weight=\"600\">{}</text>",
            esc(title),
            esc(title)
        );
        for (i, (name, score, threshold, drifted)) in rows.iter().enumerate() {
            let top = t + row_h * i as f64;
            let color = if *drifted { "#cf222e" } else { "#54aeff" };
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                l - 4.0,
                top + 11.0,
                esc(name)
            );
            if let Some(v) = score {
                let _ = write!(
                    s,
                    "<rect x=\"{l}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"><title>{}: {} (threshold {})</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    top + 2.0,
                    (x(*v) - l).max(0.5),
                    row_h - 4.0,
                    esc(name),
                    number(*v, 4),
                    number(*threshold, 4),
                    x(*v) + 4.0,
                    top + 11.0,
                    number(*v, 3)
                );
            }
            let _ = write!(
                s,
                "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1f2328\" stroke-width=\"2\"/>",
                top,
                top + row_h,
                tx = x(*threshold)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Production and candidate AUC as two bars on a zoomed axis.
    pub fn auc_bars(g: &GateDigest) -> String {
        let mut bars: Vec<(String, f64, &str)> = Vec::new();
        if let Some(p) = g.production_auc {
            bars.push((
                g.production_version
                    .map_or("production".into(), |v| format!("production v{v}")),
                p,
                "#bc4c00",
            ));
        }
        if let Some(c) = g.candidate_auc {
            bars.push(("candidate".into(), c, "#0969da"));
        }
        let h = 40.0 + 30.0 * bars.len() as f64;
        let (l, r) = (120.0, 60.0);
        let lo = bars.iter().map(|b| b.1).fold(1.0f64, f64::min);
        let lo = ((lo - 0.05) * 20.0).floor() / 20.0;
        let lo = lo.max(0.0);
        let x = |v: f64| l + (W - l - r) * ((v - lo) / (1.0 - lo)).clamp(0.0, 1.0);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"Holdout ROC AUC\"><text x=\"4\" y=\"16\" font-weight=\"600\">Holdout ROC AUC (axis from {})</text>",
            number(lo, 2)
        );
        for (i, (name, v, color)) in bars.iter().enumerate() {
            let top = 28.0 + 30.0 * i as f64;
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{l}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"20\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                l - 4.0,
                top + 14.0,
                esc(name),
                (x(*v) - l).max(0.5),
                x(*v) + 4.0,
                top + 14.0,
                number(*v, 4)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// The bootstrap interval of the AUC difference against zero and the gate's limits.
    pub fn interval(
        delta: f64,
        lo: f64,
        hi: f64,
        confidence: f64,
        min_delta: f64,
        tolerance: f64,
    ) -> String {
        let refresh = min_delta - tolerance;
        let (a, b) = super::charts::interval_axis(delta, lo, hi, min_delta, tolerance);
        let (l, r, h) = (20.0, 20.0, 110.0);
        let x = |v: f64| l + (W - l - r) * (v - a) / (b - a);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"AUC difference interval\"><text x=\"4\" y=\"16\" font-weight=\"600\">Candidate − production AUC: {} ({:.0}% interval {} to {})</text>",
            number(delta, 4),
            confidence * 100.0,
            number(lo, 4),
            number(hi, 4)
        );
        let _ = write!(
            s,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"60\" y2=\"60\" stroke=\"#d0d7de\"/>\
<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"60\" y2=\"60\" stroke=\"#0969da\" stroke-width=\"6\"/>\
<circle cx=\"{:.1}\" cy=\"60\" r=\"6\" fill=\"#0969da\"/>\
<line x1=\"{z:.1}\" x2=\"{z:.1}\" y1=\"36\" y2=\"84\" stroke=\"#1f2328\"/><text x=\"{z:.1}\" y=\"98\" text-anchor=\"middle\">0</text>\
<line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"40\" y2=\"80\" stroke=\"#1a7f37\" stroke-dasharray=\"4 3\"/><text x=\"{m:.1}\" y=\"34\" text-anchor=\"middle\">min Δ {}</text>\
<line x1=\"{f:.1}\" x2=\"{f:.1}\" y1=\"40\" y2=\"80\" stroke=\"#9a6700\" stroke-dasharray=\"4 3\"/><text x=\"{f:.1}\" y=\"98\" text-anchor=\"middle\">refresh {}</text>",
            W - r,
            x(lo),
            x(hi),
            x(delta),
            number(min_delta, 3),
            number(refresh, 3),
            z = x(0.0),
            m = x(min_delta),
            f = x(refresh),
        );
        s.push_str("</svg>");
        s
    }
}
