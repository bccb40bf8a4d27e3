//! The Markdown reviewers read (job summary, PR comment, check-run text): the run's outcome, the
//! drift table, candidate metrics against production, the gate decision and the test results.
//!
//! It reads the run directory's documented files (`run.json`, `gate.json`, `metrics.json`,
//! `drift/drift.json`) leniently: a missing file or field leaves its section out or says
//! "not recorded"; it never invents a value.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::GithubError;
use super::junit::{Outcome, Results};
use crate::report::{self, Align, Table};

/// `RUN_DIR/run.json`, as written by `pipeline run`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub run_id: Option<String>,
    pub status: Option<String>,
    pub exit_code: Option<i64>,
    pub decision: Option<Value>,
    pub model: Option<ModelRef>,
    pub drift: Option<DriftSummary>,
    pub tests: Option<TestCounts>,
    pub image: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelRef {
    pub version: Option<Value>,
    pub model_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DriftSummary {
    pub share: Option<f64>,
    /// A count or a list of column names.
    pub drifted_columns: Option<Value>,
    pub retrain: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TestCounts {
    pub passed: Option<u64>,
    pub failed: Option<u64>,
    pub skipped: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Step {
    pub name: String,
    pub status: Option<String>,
    pub started: Option<String>,
    pub seconds: Option<f64>,
    pub detail: Option<String>,
}

/// Everything read from a run directory.
#[derive(Debug, Clone, Default)]
pub struct RunDir {
    pub path: PathBuf,
    pub run: RunRecord,
    pub gate: Option<Value>,
    pub metrics: Option<Value>,
    pub drift: Option<Value>,
}

impl RunDir {
    /// Reads `run.json` (required) and the optional `gate.json`, `metrics.json`, `drift/drift.json`.
    pub fn load(dir: &Path) -> Result<RunDir, GithubError> {
        let run_path = dir.join("run.json");
        let text = std::fs::read_to_string(&run_path).map_err(|source| GithubError::ReadFile {
            path: run_path.clone(),
            source,
        })?;
        let run: RunRecord = serde_json::from_str(&text).map_err(|e| GithubError::RunInvalid {
            path: run_path,
            reason: e.to_string(),
        })?;
        Ok(RunDir {
            path: dir.to_owned(),
            run,
            gate: optional_json(&dir.join("gate.json"))?,
            metrics: optional_json(&dir.join("metrics.json"))?,
            drift: optional_json(&dir.join("drift/drift.json"))?,
        })
    }
}

fn optional_json(path: &Path) -> Result<Option<Value>, GithubError> {
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

/// Text of a JSON scalar for a table cell.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        Value::Number(n) => n
            .as_f64()
            .map(|f| {
                if n.is_f64() {
                    report::number(f, 4)
                } else {
                    n.to_string()
                }
            })
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// The decision as a word: a string, or an object's `decision`/`action`/`outcome` field.
fn decision_word(v: &Value) -> String {
    match v {
        Value::Object(o) => ["decision", "action", "outcome", "verdict"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        other => scalar(other),
    }
}

/// Numeric leaves of an object, flattened with dotted keys (`auc`, `calibration.brier`).
fn numeric_leaves(v: &Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    if let Value::Object(o) = v {
        for (k, v) in o {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Number(n) => {
                    if let Some(f) = n.as_f64() {
                        out.push((key, f));
                    }
                }
                Value::Object(_) => numeric_leaves(v, &key, out),
                _ => {}
            }
        }
    }
}

/// The first object found under any of `keys`.
fn pick<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| v.get(*k).filter(|x| x.is_object()))
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
        if let Some(d) = &run.run.decision {
            parts.push(format!("decision {}", decision_word(d)));
        }
        if let Some(v) = run.run.model.as_ref().and_then(|m| m.version.as_ref()) {
            parts.push(format!("model {}", scalar(v)));
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
        md.push_str(&drift_section(run));
        md.push_str(&metrics_section(run));
        md.push_str(&gate_section(run));
    }
    if let Some(t) = inp.tests {
        md.push_str(&tests_section(t));
    } else if let Some(tc) = inp.run.and_then(|r| r.run.tests.as_ref()) {
        md.push_str(&format!(
            "### API tests\n\n{} passed, {} failed, {} skipped (no JUnit file was given).\n\n",
            opt(tc.passed),
            opt(tc.failed),
            opt(tc.skipped)
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
    t.row(&["Run", &opt(r.run_id.clone())]);
    t.row(&["Status", &opt(r.status.clone())]);
    t.row(&["Exit code", &opt(r.exit_code)]);
    if let Some(d) = &r.decision {
        t.row(&["Decision", &decision_word(d)]);
    }
    if let Some(m) = &r.model {
        t.row(&[
            "Model version",
            &m.version.as_ref().map(scalar).unwrap_or("—".into()),
        ]);
        if let Some(id) = &m.model_id {
            t.row(&["Model id", &format!("`{id}`")]);
        }
    }
    if let Some(img) = &r.image {
        t.row(&["Image", &format!("`{img}`")]);
    }
    format!("### Run\n\n{}\n", t.render())
}

fn drift_section(run: &RunDir) -> String {
    let s = run.run.drift.clone().unwrap_or_default();
    let detail = run.drift.as_ref();
    if run.run.drift.is_none() && detail.is_none() {
        return String::new();
    }
    let mut md = String::from("### Drift\n\n");
    let drifted = match &s.drifted_columns {
        Some(Value::Array(a)) => a.len().to_string(),
        Some(v) => scalar(v),
        None => "—".into(),
    };
    md.push_str(&format!(
        "Drifted share: **{}** ({} columns) · retrain: **{}**\n\n",
        s.share.map(report::percent).unwrap_or_else(|| "—".into()),
        drifted,
        s.retrain
            .map(|b| if b { "yes" } else { "no" })
            .unwrap_or("—"),
    ));
    // Per-column detail: drift.json's `columns` as a list of objects or an object by name.
    let columns: Vec<(String, &Value)> = match detail.and_then(|d| d.get("columns")) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| {
                let name = ["column", "name"]
                    .iter()
                    .find_map(|k| c.get(*k).and_then(Value::as_str))
                    .unwrap_or("?")
                    .to_owned();
                (name, c)
            })
            .collect(),
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => Vec::new(),
    };
    if !columns.is_empty() {
        let mut rows: Vec<(String, &Value)> = columns;
        // Drifted columns first, then by score.
        let drifted = |v: &Value| v.get("drifted").and_then(Value::as_bool).unwrap_or(false);
        let score = |v: &Value| {
            ["score", "statistic", "distance"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_f64))
                .unwrap_or(0.0)
        };
        rows.sort_by(|a, b| {
            drifted(b.1)
                .cmp(&drifted(a.1))
                .then(score(b.1).total_cmp(&score(a.1)))
        });
        let mut t = Table::new(&["Column", "Test", "Score", "p-value", "Drifted"])
            .align(2, Align::Right)
            .align(3, Align::Right);
        for (name, v) in rows.iter().take(60) {
            let field = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| v.get(*k))
                    .map(scalar)
                    .unwrap_or_else(|| "—".into())
            };
            t.row(&[
                format!("`{name}`"),
                field(&["test", "method", "stattest"]),
                field(&["score", "statistic", "distance"]),
                field(&["p_value", "pvalue"]),
                if drifted(v) {
                    "⚠️ yes".into()
                } else {
                    "no".into()
                },
            ]);
        }
        md.push_str(&t.render());
        if rows.len() > 60 {
            md.push_str(&format!(
                "\n{} more columns in `drift/drift.json`.\n",
                rows.len() - 60
            ));
        }
        md.push('\n');
    }
    md
}

fn metrics_section(run: &RunDir) -> String {
    // Candidate vs production: from gate.json when it records both, else metrics.json alone.
    let gate = run.gate.as_ref();
    let candidate = gate
        .and_then(|g| pick(g, &["candidate", "candidate_metrics"]))
        .or_else(|| {
            run.metrics
                .as_ref()
                .and_then(|m| pick(m, &["candidate", "test", "metrics"]))
        })
        .or(run.metrics.as_ref());
    let production = gate
        .and_then(|g| pick(g, &["production", "production_metrics", "baseline"]))
        .or_else(|| {
            run.metrics
                .as_ref()
                .and_then(|m| pick(m, &["production", "baseline"]))
        });
    let Some(candidate) = candidate else {
        return String::new();
    };
    let mut cand = Vec::new();
    numeric_leaves(candidate, "", &mut cand);
    let mut prod = Vec::new();
    if let Some(p) = production {
        numeric_leaves(p, "", &mut prod);
    }
    if cand.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&["Metric", "Candidate", "Production", "Δ"])
        .align(1, Align::Right)
        .align(2, Align::Right)
        .align(3, Align::Right);
    for (k, c) in &cand {
        let p = prod.iter().find(|(pk, _)| pk == k).map(|(_, v)| *v);
        t.row(&[
            k.clone(),
            report::number(*c, 4),
            p.map(|p| report::number(p, 4))
                .unwrap_or_else(|| "—".into()),
            p.map(|p| report::delta(c - p, 4)).unwrap_or_default(),
        ]);
    }
    let note = if production.is_none() {
        "No production model to compare with.\n\n"
    } else {
        ""
    };
    format!("### Metrics vs production\n\n{note}{}\n", t.render())
}

fn gate_section(run: &RunDir) -> String {
    let Some(g) = &run.gate else {
        return String::new();
    };
    let mut md = format!("### Gate: **{}**\n\n", decision_word(g));
    let reasons = ["reasons", "checks", "rules"]
        .iter()
        .find_map(|k| g.get(*k).and_then(Value::as_array));
    if let Some(reasons) = reasons {
        for r in reasons.iter().take(30) {
            let line = match r {
                Value::String(s) => s.clone(),
                Value::Object(o) => {
                    let name = o
                        .get("name")
                        .or(o.get("rule"))
                        .map(scalar)
                        .unwrap_or_default();
                    let ok = o.get("passed").and_then(Value::as_bool);
                    let msg = o
                        .get("message")
                        .or(o.get("detail"))
                        .or(o.get("reason"))
                        .map(scalar)
                        .unwrap_or_default();
                    let mark = match ok {
                        Some(true) => "✅ ",
                        Some(false) => "❌ ",
                        None => "",
                    };
                    format!("{mark}{name} {msg}").trim().to_owned()
                }
                other => other.to_string(),
            };
            md.push_str(&format!("- {}\n", report::escape_cell(&line)));
        }
        md.push('\n');
    }
    md
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

fn steps_section(steps: &[Step]) -> String {
    let mut t = Table::new(&["Step", "Status", "Seconds", "Detail"]).align(2, Align::Right);
    for s in steps {
        t.row(&[
            s.name.clone(),
            opt(s.status.clone()),
            s.seconds
                .map(|x| report::number(x, 1))
                .unwrap_or_else(|| "—".into()),
            s.detail.clone().unwrap_or_default(),
        ]);
    }
    report::details("Pipeline steps", &t.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run_dir() -> RunDir {
        RunDir {
            path: PathBuf::from("run"),
            run: serde_json::from_value(json!({
                "run_id": "r1", "status": "succeeded", "exit_code": 0, "decision": "promote",
                "model": {"version": 4, "model_id": "sha256:ab"},
                "drift": {"share": 0.273, "drifted_columns": ["age", "race"], "retrain": true},
                "tests": {"passed": 9, "failed": 0, "skipped": 1},
                "image": "repo/hp:4",
                "steps": [{"name": "train", "status": "ok", "seconds": 12.34, "detail": "300 trees"}]
            }))
            .unwrap(),
            gate: Some(json!({
                "decision": "promote",
                "candidate": {"auc": 0.69, "brier": 0.2},
                "production": {"auc": 0.68, "brier": 0.21},
                "reasons": [{"name": "auc", "passed": true, "message": "+0.01 >= 0"}]
            })),
            metrics: None,
            drift: Some(json!({"columns": [
                {"column": "race", "test": "chi2", "score": 0.1, "p_value": 0.5, "drifted": false},
                {"column": "age", "test": "chi2", "score": 0.3, "p_value": 0.001, "drifted": true}
            ]})),
        }
    }

    #[test]
    fn renders_every_section_from_a_run_directory() {
        let rd = run_dir();
        let md = render(&Inputs {
            run: Some(&rd),
            tests: None,
            extra: Some("extra text"),
            link: Some("https://x/checks/1"),
            check_name: "health-predict",
        });
        assert!(
            md.starts_with("## health-predict: decision promote · model 4\n"),
            "{md}"
        );
        assert!(
            md.contains("Drifted share: **27.3%** (2 columns) · retrain: **yes**"),
            "{md}"
        );
        // drifted column first
        let age = md
            .find("| `age` | chi2 | 0.3 | 0.001 | ⚠️ yes |")
            .expect(&md);
        assert!(age < md.find("| `race` |").unwrap());
        assert!(md.contains("| auc | 0.69 | 0.68 | +0.01 |"), "{md}");
        assert!(md.contains("### Gate: **promote**"), "{md}");
        assert!(md.contains("- ✅ auc +0.01 &gt;= 0"), "{md}");
        assert!(md.contains("9 passed, 0 failed, 1 skipped (no JUnit file was given)"));
        assert!(md.contains("| train | ok | 12.3 | 300 trees |"), "{md}");
        assert!(
            md.ends_with("extra text\n\n[Details](https://x/checks/1)\n"),
            "{md}"
        );
    }
}
