//! `summary.md`: the run for people — ready for a job summary or a pull-request comment.

use std::fmt::Write as _;
use std::path::Path;

use super::run::RunReport;
use super::steps::label;

/// Renders a run's summary; sections whose files exist in `dir` (drift, gate) are included.
pub fn markdown(r: &RunReport, dir: &Path) -> String {
    let mut md = String::new();
    let decision = r.decision.as_deref().unwrap_or("no decision");
    let _ = writeln!(
        md,
        "## health-predict pipeline: {} — {decision}\n",
        r.status
    );
    let model = r.model.as_ref().map_or("none".to_owned(), |m| {
        format!(
            "{}{}",
            m.version
                .map_or("unregistered".into(), |v| format!("version {v}")),
            if m.model_id.is_empty() {
                String::new()
            } else {
                format!(" (`{}`)", m.model_id)
            }
        )
    });
    let prod = |v: Option<u64>| v.map_or("none".to_owned(), |v| format!("version {v}"));
    let _ = writeln!(
        md,
        "Run `{}` · exit {} · {:.1} s · candidate {model} · production {} → {}\n",
        r.run_id,
        r.exit_code,
        r.seconds,
        prod(r.production_before),
        prod(r.production_after)
    );
    if let Some(d) = &r.drift {
        let _ = writeln!(
            md,
            "**Drift:** share {:.3} ({} drifted: {}); {}.\n",
            d.share,
            d.drifted_columns.len(),
            if d.drifted_columns.is_empty() {
                "none".into()
            } else {
                d.drifted_columns.join(", ")
            },
            d.reason
        );
    }
    if let Some(auc) = r.holdout_auc {
        let _ = writeln!(md, "**Holdout ROC AUC (candidate):** {auc:.4}\n");
    }
    if let Some(t) = &r.tests {
        let _ = writeln!(
            md,
            "**API tests:** {} passed, {} failed.\n",
            t.passed, t.failed
        );
    }
    md.push_str("| step | status | seconds | detail |\n|---|---|---:|---|\n");
    for s in &r.steps {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {} |",
            s.name,
            label(s.status),
            s.seconds,
            s.detail.replace('|', "\\|").replace('\n', " ")
        );
    }
    if let Ok(gate) = std::fs::read_to_string(dir.join("gate.md")) {
        md.push_str("\n<details><summary>Quality gate</summary>\n\n");
        md.push_str(&gate);
        md.push_str("\n</details>\n");
    }
    if let Ok(drift) = std::fs::read_to_string(dir.join("drift").join("drift.md")) {
        md.push_str("\n<details><summary>Drift by column</summary>\n\n");
        md.push_str(&drift);
        md.push_str("\n</details>\n");
    }
    md
}
