//! The Markdown reviewers read (job summary, PR comment, check-run text, the run's
//! `summary.md`): the run's outcome, charts GitHub renders natively (drift scores against their
//! thresholds, production against candidate AUC with the bootstrap interval, the trend over
//! recent runs), the drift table, candidate metrics against production, the gate decision and
//! the test results.
//!
//! It reads the run directory's files through the types their writers use (`run.json` as
//! [`RunReport`], `gate.json` as [`GateReport`], `drift/drift.json` as [`DriftReport`],
//! `metrics.json` as [`EvaluationReport`]): a file that is absent leaves its section out; a file
//! that does not parse is an error naming it.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::GithubError;
use super::junit::{Outcome, Results};
use crate::contracts::{
    DriftDigest, EvaluationReport, GateDigest, HistoryRecord, RunReport, StepRecord,
};
use crate::drift::DriftReport;
use crate::gate::GateReport;
use crate::report::{self, Align, Table, charts};

/// Everything read from a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub run: RunReport,
    pub gate: Option<GateReport>,
    pub evaluation: Option<EvaluationReport>,
    pub drift: Option<DriftReport>,
    /// Earlier runs and this one, oldest first (for the trend charts); empty when unknown.
    pub history: Vec<HistoryRecord>,
}

impl RunDir {
    /// Reads `run.json` (required) and the optional `gate.json`, `metrics.json`,
    /// `drift/drift.json`. The history is read from `history_dir` when given, else from the
    /// run's own state directory when it exists here; this run is added when it is not in it.
    pub fn load(dir: &Path, history_dir: Option<&Path>) -> Result<RunDir, GithubError> {
        let run_path = dir.join("run.json");
        let text = std::fs::read_to_string(&run_path).map_err(|source| GithubError::ReadFile {
            path: run_path.clone(),
            source,
        })?;
        let run = RunReport::parse(&text).map_err(|e| GithubError::RunInvalid {
            path: run_path,
            reason: e.to_string(),
        })?;
        let mut rd = RunDir {
            gate: optional_json(&dir.join("gate.json"))?,
            evaluation: optional_json(&dir.join("metrics.json"))?,
            drift: optional_json(&dir.join("drift/drift.json"))?,
            run,
            history: Vec::new(),
        };
        let history_dir = history_dir.map(Path::to_owned).or_else(|| {
            rd.run.config["state_dir"]
                .as_str()
                .map(|s| report::history::dir(Path::new(s)))
                .filter(|d| d.is_dir())
        });
        if let Some(h) = history_dir {
            match report::history::load(&h) {
                Ok(list) => rd.history = list,
                Err(e) => tracing::warn!(
                    "the trend charts are left out: {}",
                    crate::exit::chain_text(&e)
                ),
            }
        }
        rd.add_self_to_history();
        Ok(rd)
    }

    /// Adds this run to the history when no record of it is there yet (the pipeline renders its
    /// summary before it appends the run).
    pub fn add_self_to_history(&mut self) {
        if self
            .history
            .iter()
            .any(|h| h.run.run_id == self.run.run_id && h.run.started == self.run.started)
        {
            return;
        }
        self.history.push(HistoryRecord {
            schema: crate::contracts::HISTORY_SCHEMA,
            run: self.run.clone(),
            drift: self.drift.as_ref().map(DriftDigest::of),
            gate: self.gate.as_ref().map(GateDigest::of),
            tests: Vec::new(),
        });
    }
}

fn optional_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, GithubError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| GithubError::RunInvalid {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GithubError::ReadFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Inputs of the rendered report.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub run: Option<&'a RunDir>,
    pub tests: Option<&'a Results>,
    /// Extra Markdown (`--summary`), appended as is.
    pub extra: Option<&'a str>,
    /// A link to the check run or workflow run, when known.
    pub link: Option<&'a str>,
    pub check_name: &'a str,
}

/// The one-line headline: outcome, decision, tests.
pub fn headline(inp: &Inputs<'_>) -> String {
    let mut parts = Vec::new();
    if let Some(run) = inp.run {
        parts.push(run.run.status.clone());
        if let Some(d) = &run.run.decision {
            parts.push(format!("decision {d}"));
        }
        if let Some(v) = run.run.model.as_ref().and_then(|m| m.version) {
            parts.push(format!("model {v}"));
        }
    }
    if let Some(t) = inp.tests {
        let c = t.counts();
        parts.push(format!(
            "tests {} passed, {} failed, {} skipped",
            c.passed,
            c.failed + c.errored,
            c.skipped
        ));
    }
    if parts.is_empty() {
        "no results recorded".into()
    } else {
        parts.join(" · ")
    }
}

/// Renders the full Markdown report.
pub fn render(inp: &Inputs<'_>) -> String {
    let mut md = format!("## {}: {}\n\n", inp.check_name, headline(inp));
    if let Some(run) = inp.run {
        md.push_str(&run_section(run));
        md.push_str(&gate_section(run));
        md.push_str(&drift_section(run));
        md.push_str(&metrics_section(run));
        md.push_str(&trend_section(run));
    }
    if let Some(t) = inp.tests {
        md.push_str(&tests_section(t));
    } else if let Some(tc) = inp.run.and_then(|r| r.run.tests.as_ref()) {
        md.push_str(&format!(
            "### API tests\n\n{} passed, {} failed, {} skipped (no JUnit file was given).\n\n",
            tc.passed, tc.failed, tc.skipped
        ));
    }
    if let Some(run) = inp.run
        && !run.run.steps.is_empty()
    {
        md.push_str(&steps_section(&run.run.steps));
    }
    if let Some(extra) = inp.extra {
        md.push_str(extra.trim_end());
        md.push_str("\n\n");
    }
    if let Some(link) = inp.link {
        md.push_str(&format!("[Details]({link})\n"));
    }
    md
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "—".into())
}

fn run_section(run: &RunDir) -> String {
    let r = &run.run;
    let mut t = Table::new(&["Item", "Value"]);
    t.row(&["Run", &format!("`{}`", r.run_id)]);
    t.row(&["Status", &format!("{} (exit {})", r.status, r.exit_code)]);
    t.row(&["Decision", &opt(r.decision.clone())]);
    if let Some(m) = &r.model {
        t.row(&[
            "Candidate",
            &match m.version {
                Some(v) => format!("version {v} (`{}`)", m.model_id),
                None => format!("unregistered (`{}`)", m.model_id),
            },
        ]);
    }
    let prod = |v: Option<u64>| v.map_or("none".to_owned(), |v| format!("version {v}"));
    t.row(&[
        "Production",
        &format!(
            "{} → {}",
            prod(r.production_before),
            prod(r.production_after)
        ),
    ]);
    if let Some(b) = &r.inputs.batch {
        t.row(&["Batch", &format!("{b} ({} rows)", opt(r.inputs.batch_rows))]);
    }
    if let Some(img) = &r.image {
        t.row(&["Image", &format!("`{img}`")]);
    }
    t.row(&["Started", &format!("{} ({:.1} s)", r.started, r.seconds)]);
    format!("### Run\n\n{}\n", t.render())
}

fn drift_section(run: &RunDir) -> String {
    let Some(d) = &run.drift else {
        return match &run.run.drift {
            Some(s) => format!(
                "### Drift\n\nDrifted share: **{}** ({} columns) · retrain: **{}** · {}\n\n",
                report::percent(s.share),
                s.drifted_columns.len(),
                if s.retrain { "yes" } else { "no" },
                s.reason
            ),
            None => String::new(),
        };
    };
    let dec = &d.decision;
    let mut md = format!(
        "### Drift\n\nDrifted share: **{}** ({} of {} columns; retrain when over {}) · retrain: **{}**\n\n{}\n\n",
        report::percent(dec.drift_share),
        dec.drifted_columns,
        dec.columns,
        report::percent(dec.drift_share_threshold),
        if dec.retrain { "yes" } else { "no" },
        dec.reason
    );
    md.push_str(&charts::drift_scores(&DriftDigest::of(d)));
    let rows = d.most_drifted_first();
    let mut t = Table::new(&["Column", "Test", "Score", "Threshold", "Drifted"])
        .align(2, Align::Right)
        .align(3, Align::Right);
    for c in rows.iter().take(60) {
        t.row(&[
            format!("`{}`", c.column),
            c.test_label.to_owned(),
            report::number(c.score, 4),
            report::number(c.threshold, 4),
            if c.drifted {
                "⚠️ yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    let mut body = t.render();
    if rows.len() > 60 {
        body.push_str(&format!(
            "\n{} more columns in `drift/drift.json`.\n",
            rows.len() - 60
        ));
    }
    md.push_str(&report::details("Drift by column", &body));
    md
}

fn metrics_section(run: &RunDir) -> String {
    let Some(e) = &run.evaluation else {
        return String::new();
    };
    let mut t = Table::new(&["Metric", "Candidate", "Production", "Δ"])
        .align(1, Align::Right)
        .align(2, Align::Right)
        .align(3, Align::Right);
    let c = &e.candidate;
    let p = e.production.as_ref();
    let rows: [(&str, f64, Option<f64>); 7] = [
        ("ROC AUC", c.roc_auc, p.map(|p| p.roc_auc)),
        ("PR AUC", c.pr_auc, p.map(|p| p.pr_auc)),
        ("log loss", c.log_loss, p.map(|p| p.log_loss)),
        ("Brier", c.brier, p.map(|p| p.brier)),
        ("precision", c.precision, p.map(|p| p.precision)),
        ("recall", c.recall, p.map(|p| p.recall)),
        ("F1", c.f1, p.map(|p| p.f1)),
    ];
    for (k, cv, pv) in rows {
        t.row(&[
            k.to_owned(),
            report::number(cv, 4),
            pv.map(|p| report::number(p, 4))
                .unwrap_or_else(|| "—".into()),
            pv.map(|p| report::delta(cv - p, 4)).unwrap_or_default(),
        ]);
    }
    let note = if p.is_none() {
        "No production model to compare with.\n\n"
    } else {
        ""
    };
    report::details(
        &format!("Metrics vs production ({} holdout rows)", e.holdout_rows),
        &format!("{note}{}", t.render()),
    )
}

fn gate_section(run: &RunDir) -> String {
    let Some(g) = &run.gate else {
        return String::new();
    };
    let mut md = format!("### Gate: **{}**\n\n{}\n\n", g.decision.as_str(), g.reason);
    md.push_str(&charts::auc_comparison(&GateDigest::of(g)));
    for r in g.refusals.iter().take(30) {
        md.push_str(&format!("- ❌ {}\n", report::escape_cell(r)));
    }
    if !g.refusals.is_empty() {
        md.push('\n');
    }
    md
}

fn trend_section(run: &RunDir) -> String {
    let charts = charts::trends(&run.history);
    if charts.is_empty() {
        return String::new();
    }
    format!(
        "### Trend\n\n{charts}{} runs in the history; `health-predict report html` draws all of them.\n\n",
        run.history.len()
    )
}

fn tests_section(t: &Results) -> String {
    let c = t.counts();
    let mut md = format!(
        "### API tests\n\n{} tests: **{} passed**, **{} failed**, {} errors, {} skipped.\n\n",
        c.total, c.passed, c.failed, c.errored, c.skipped
    );
    let failures: Vec<_> = t.failures().collect();
    if !failures.is_empty() {
        let mut table = Table::new(&["Test", "Outcome", "Message"]);
        for f in failures.iter().take(50) {
            table.row(&[
                format!("`{}`", f.full_name()),
                match f.outcome {
                    Outcome::Errored => "error".into(),
                    _ => "failed".into(),
                },
                f.message.chars().take(300).collect(),
            ]);
        }
        md.push_str(&table.render());
        if failures.len() > 50 {
            md.push_str(&format!(
                "\n{} more failures: see the check run annotations.\n",
                failures.len() - 50
            ));
        }
        md.push('\n');
    }
    md
}

fn steps_section(steps: &[StepRecord]) -> String {
    let mut t = Table::new(&["Step", "Status", "Seconds", "Detail"]).align(2, Align::Right);
    for s in steps {
        t.row(&[
            s.name.clone(),
            format!("{:?}", s.status).to_lowercase(),
            report::number(s.seconds, 1),
            s.detail.clone(),
        ]);
    }
    report::details("Pipeline steps", &t.render())
}
