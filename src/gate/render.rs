//! The gate report for people: terminal text and `gate.md`, ready to paste as a PR comment.

use std::fmt::Write as _;

use super::{Decision, GateReport, ModelSummary};

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:+.4}"))
}

fn name(m: &ModelSummary) -> String {
    match m.version {
        Some(v) if !m.source.starts_with("version") && !m.source.starts_with("alias") => {
            format!("{} (version {v})", m.source)
        }
        _ => m.source.clone(),
    }
}

fn sha(m: &ModelSummary) -> String {
    m.sha256
        .as_deref()
        .map_or_else(|| "n/a".into(), |s| s[..s.len().min(12)].to_owned())
}

fn interval_text(r: &GateReport) -> Option<String> {
    r.interval.as_ref().map(|i| {
        format!(
            "{:.0}% CI [{:+.4}, {:+.4}] from {} paired bootstrap resamples (seed {}); candidate \
             below production in {:.1}% of resamples",
            i.confidence * 100.0,
            i.low,
            i.high,
            i.resamples,
            i.seed,
            i.share_below_zero * 100.0
        )
    })
}

fn rule(r: &GateReport) -> String {
    format!(
        "no production model → DEPLOY; delta ≥ 0 → DEPLOY; −{t:.4} ≤ delta < 0 → DEPLOY_REFRESH; \
         delta < −{t:.4} → SKIP; anything missing or inconsistent → REFUSED",
        t = r.config.refresh_tolerance
    )
}

/// Terminal text.
pub fn human(r: &GateReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "gate: {}", r.decision.as_str());
    let _ = writeln!(s, "  {}", r.reason);
    let _ = writeln!(
        s,
        "  candidate   {}  AUC {}",
        name(&r.candidate),
        num(r.candidate.auc)
    );
    match &r.production {
        Some(p) => {
            let _ = writeln!(s, "  production  {}  AUC {}", name(p), num(p.auc));
        }
        None => {
            let _ = writeln!(s, "  production  none");
        }
    }
    if r.delta.is_some() {
        let _ = writeln!(s, "  delta       {}", signed(r.delta));
    }
    if let Some(i) = interval_text(r) {
        let _ = writeln!(s, "  {i}");
    }
    if let Some(h) = &r.holdout {
        let _ = writeln!(
            s,
            "  holdout     {}: {} rows scored of {} ({} positive, {} negative)",
            h.source, h.scored_rows, h.rows, h.positives, h.negatives
        );
    }
    for refusal in &r.refusals {
        let _ = writeln!(s, "  refused: {refusal}");
    }
    s
}

/// `gate.md`: a PR comment.
pub fn markdown(r: &GateReport) -> String {
    let mut s = String::new();
    let icon = match r.decision {
        Decision::Deploy => "✅",
        Decision::DeployRefresh => "🔄",
        Decision::Skip => "⏭️",
        Decision::Refused => "⛔",
    };
    let _ = writeln!(s, "## {icon} Quality gate: `{}`\n", r.decision.as_str());
    let _ = writeln!(s, "{}\n", capitalise(&r.reason));
    let _ = writeln!(s, "| | Candidate | Production |");
    let _ = writeln!(s, "|---|---|---|");
    let none = ModelSummary {
        source: "none".into(),
        version: None,
        sha256: None,
        model_id: None,
        schema_hash: None,
        target: None,
        auc: None,
    };
    let p = r.production.as_ref().unwrap_or(&none);
    let c = &r.candidate;
    let cell = |v: &str| v.replace('|', "\\|");
    let _ = writeln!(s, "| Model | {} | {} |", cell(&name(c)), cell(&name(p)));
    let _ = writeln!(s, "| ROC AUC | {} | {} |", num(c.auc), num(p.auc));
    let _ = writeln!(s, "| SHA-256 | `{}` | `{}` |", sha(c), sha(p));
    let id = |m: &ModelSummary| cell(m.model_id.as_deref().unwrap_or("n/a"));
    let _ = writeln!(s, "| Model id | {} | {} |", id(c), id(p));
    let schema = |m: &ModelSummary| {
        m.schema_hash
            .as_deref()
            .map_or_else(|| "n/a".into(), |h| format!("`{}`", &h[..h.len().min(12)]))
    };
    let _ = writeln!(s, "| Schema | {} | {} |\n", schema(c), schema(p));
    if r.delta.is_some() {
        let _ = writeln!(
            s,
            "**AUC delta (candidate − production): {}**",
            signed(r.delta)
        );
        if let Some(i) = interval_text(r) {
            let _ = writeln!(s, "({i}).");
        }
        let _ = writeln!(s);
    }
    if let Some(h) = &r.holdout {
        let _ = writeln!(
            s,
            "Holdout: `{}`, {} rows scored of {} ({} positive, {} negative; target `{}`; {} \
             expired/hospice or unlabelled rows left out).\n",
            h.source,
            h.scored_rows,
            h.rows,
            h.positives,
            h.negatives,
            super::target_name(r.target),
            h.excluded_rows
        );
    }
    if !r.refusals.is_empty() {
        let _ = writeln!(s, "### Why the gate refused\n");
        for x in &r.refusals {
            let _ = writeln!(s, "- {x}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "<sub>Rule: {}. Minimum holdout {} labelled rows and {} per class. health-predict {}, \
         {}.</sub>",
        rule(r),
        r.config.min_rows,
        r.config.min_class_rows,
        r.health_predict_version,
        r.evaluated_at.strftime("%Y-%m-%d %H:%M UTC")
    );
    s
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
