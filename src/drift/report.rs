//! Renders a [`DriftReport`]: `drift.json` (everything), `drift.md` (a compact table for a job
//! summary or PR comment, most drifted first) and `drift.html` (self-contained: inline CSS and
//! one inline SVG chart per column, no scripts, no network).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{ColumnResult, ColumnType, DriftError, DriftReport, Summary};
use crate::fsutil::write_atomic;

/// Writes `drift.json`, `drift.md` and `drift.html` into `dir` (created if needed), each
/// atomically. Returns the paths written.
pub fn write_reports(report: &DriftReport, dir: &Path) -> Result<Vec<PathBuf>, DriftError> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| DriftError::Write {
        path: dir.join("drift.json").display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let files = [
        ("drift.json", json),
        ("drift.md", markdown(report).into_bytes()),
        ("drift.html", html(report).into_bytes()),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        write_atomic(&path, &bytes).map_err(|source| DriftError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// A score for tables: enough digits to compare, scientific when tiny.
pub fn fmt_score(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.is_infinite() {
        "inf".into()
    } else if x.abs() < 1e-4 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

fn rule(c: &ColumnResult) -> String {
    let op = match (c.test.is_p_value(), c.test) {
        (true, super::Method::Ks) => "<=",
        (true, _) => "<",
        (false, _) => ">=",
    };
    format!("{op} {}", fmt_score(c.threshold))
}

/// The Markdown summary: the decision, then one row per column, most drifted first.
pub fn markdown(r: &DriftReport) -> String {
    let d = &r.decision;
    let mut s = String::new();
    let verdict = if d.retrain {
        "**retrain**"
    } else {
        "no retraining"
    };
    let _ = writeln!(
        s,
        "### Drift: {} of {} columns drifted",
        d.drifted_columns, d.columns
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Share {:.3} (retrain when > {}; dataset drift when >= {}): {verdict}{}. \
         Reference {} rows, current {} rows.",
        d.drift_share,
        d.drift_share_threshold,
        d.dataset_drift_share,
        if d.force_retrain { " (forced)" } else { "" },
        r.reference_rows,
        r.current_rows
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| column | type | test | score | drift when | drifted |");
    let _ = writeln!(s, "|---|---|---|---:|---|:---:|");
    for c in r.most_drifted_first() {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            c.column,
            type_name(c.column_type),
            c.test,
            fmt_score(c.score),
            rule(c),
            if c.drifted { "**yes**" } else { "no" }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "<details><summary>Why each test</summary>");
    let _ = writeln!(s);
    for c in &r.columns {
        let _ = writeln!(s, "- `{}`: {}", c.column, c.why);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "</details>");
    s
}

fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Numerical => "num",
        ColumnType::Categorical => "cat",
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#59636e;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0 20px}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.card span{color:#59636e;font-size:13px}
.yes{color:#b3261e;font-weight:600}.no{color:#1a7f37}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #d1d9e0;padding:4px 10px;text-align:left}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.col{border:1px solid #d1d9e0;border-radius:8px;padding:10px 12px}
.col.drift{border-color:#b3261e;box-shadow:0 0 0 1px #b3261e inset}
.col h3{font-size:15px;margin:0 0 2px}.why{color:#59636e;font-size:12px;margin:2px 0 6px}
.legend{font-size:12px;color:#59636e}.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
.stats{font-size:12px;color:#59636e;margin-top:4px}
";

const REF_COLOR: &str = "#4c78a8";
const CUR_COLOR: &str = "#f58518";

/// The self-contained HTML report.
pub fn html(r: &DriftReport) -> String {
    let d = &r.decision;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Drift report</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head><body>"
    );
    let _ = write!(
        s,
        "<h1>Drift report</h1><div class=\"sub\">Reference {} rows · current {} rows · \
         missing values: {} · {} {}</div>",
        r.reference_rows,
        r.current_rows,
        match r.missing {
            super::MissingPolicy::Category => "counted as a category",
            super::MissingPolicy::Drop => "dropped",
        },
        r.tool,
        r.version
    );
    let verdict = if d.retrain {
        "<b class=\"yes\">retrain</b>"
    } else {
        "<b class=\"no\">no retraining</b>"
    };
    let _ = write!(
        s,
        "<div class=\"cards\">\
         <div class=\"card\"><b>{} / {}</b><span>columns drifted</span></div>\
         <div class=\"card\"><b>{:.3}</b><span>drift share (retrain when &gt; {})</span></div>\
         <div class=\"card\"><b class=\"{}\">{}</b><span>dataset drift (share &gt;= {})</span></div>\
         <div class=\"card\">{verdict}<span>{}</span></div></div>",
        d.drifted_columns,
        d.columns,
        d.drift_share,
        d.drift_share_threshold,
        if d.dataset_drift { "yes" } else { "no" },
        if d.dataset_drift { "yes" } else { "no" },
        d.dataset_drift_share,
        esc(&d.reason)
    );
    let _ = write!(
        s,
        "<h2>Columns, most drifted first</h2><table><thead><tr><th>column</th><th>type</th>\
         <th>test</th><th>score</th><th>drift when</th><th>drifted</th></tr></thead><tbody>"
    );
    let ordered = r.most_drifted_first();
    for c in &ordered {
        let _ = write!(
            s,
            "<tr><td><a href=\"#c-{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td class=\"n\">{3}</td>\
             <td>{4}</td><td class=\"{5}\">{5}</td></tr>",
            esc(&c.column),
            type_name(c.column_type),
            esc(c.test_label),
            fmt_score(c.score),
            esc(&rule(c)),
            if c.drifted { "yes" } else { "no" }
        );
    }
    let _ = write!(s, "</tbody></table><h2>Distributions</h2>");
    let _ = write!(
        s,
        "<div class=\"legend\"><span class=\"sw\" style=\"background:{REF_COLOR}\"></span>reference\
         <span class=\"sw\" style=\"background:{CUR_COLOR}\"></span>current (share of values)</div>\
         <div class=\"cols\">"
    );
    for c in &ordered {
        column_card(&mut s, c);
    }
    let _ = writeln!(s, "</div></body></html>");
    s
}

fn column_card(s: &mut String, c: &ColumnResult) {
    let _ = write!(
        s,
        "<section class=\"col{}\" id=\"c-{}\"><h3>{} <span class=\"{}\">{}</span></h3>\
         <div class=\"why\">{}: {} ({}) · {}</div>",
        if c.drifted { " drift" } else { "" },
        esc(&c.column),
        esc(&c.column),
        if c.drifted { "yes" } else { "no" },
        if c.drifted { "drifted" } else { "stable" },
        esc(c.test_label),
        fmt_score(c.score),
        esc(&rule(c)),
        esc(&c.why)
    );
    chart(s, c);
    let _ = write!(
        s,
        "<div class=\"stats\">reference: {}<br>current: {}</div></section>",
        esc(&summary_line(&c.reference)),
        esc(&summary_line(&c.current))
    );
}

fn summary_line(sm: &Summary) -> String {
    match sm {
        Summary::Numeric {
            count,
            missing,
            mean,
            std,
            min,
            median,
            max,
            ..
        } => format!(
            "{count} values, {missing} missing, mean {mean:.3}, std {std:.3}, min {min}, median {median}, max {max}"
        ),
        Summary::Categorical {
            count,
            missing,
            unique,
            top,
        } => {
            let tops: Vec<String> = top
                .iter()
                .take(3)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(
                "{count} values, {missing} missing, {unique} distinct; top: {}",
                tops.join(", ")
            )
        }
    }
}

/// A grouped bar chart: one pair of bars (reference, current) per bin or category.
fn chart(s: &mut String, c: &ColumnResult) {
    let d = &c.distribution;
    let n = d.labels.len().max(1);
    let (w, h) = (420.0, 170.0);
    let (left, right, top, bottom) = (34.0, 6.0, 8.0, 46.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = d
        .reference
        .iter()
        .chain(&d.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let slot = plot_w / n as f64;
    let bar = (slot * 0.4).max(0.5);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"{} reference vs current\" font-size=\"9\" font-family=\"sans-serif\">",
        esc(&c.column)
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = top + plot_h * (1.0 - frac);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d1d9e0\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#59636e\">{:.0}%</text>",
            w - right,
            left - 3.0,
            y + 3.0,
            max * frac * 100.0
        );
    }
    for (i, label) in d.labels.iter().enumerate() {
        let x0 = left + slot * i as f64 + slot * 0.1;
        for (k, (vals, color)) in [(&d.reference, REF_COLOR), (&d.current, CUR_COLOR)]
            .into_iter()
            .enumerate()
        {
            let v = vals.get(i).copied().unwrap_or(0.0);
            let bh = plot_h * v / max;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\">\
                 <title>{} {}: {:.2}%</title></rect>",
                x0 + bar * k as f64,
                top + plot_h - bh,
                esc(label),
                if k == 0 { "reference" } else { "current" },
                v * 100.0
            );
        }
        let lx = left + slot * (i as f64 + 0.5);
        let ly = top + plot_h + 8.0;
        let shown: String = label.chars().take(14).collect();
        let _ = write!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" fill=\"#1f2328\" \
             transform=\"rotate(-40 {lx:.1} {ly:.1})\">{}</text>",
            esc(&shown)
        );
    }
    let _ = write!(s, "</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a&'\">"), "&lt;a&amp;&#39;&quot;&gt;");
    }

    #[test]
    fn scores_are_compact() {
        assert_eq!(fmt_score(0.0), "0");
        assert_eq!(fmt_score(0.123456), "0.1235");
        assert_eq!(fmt_score(1.5e-7), "1.50e-7");
    }
}
