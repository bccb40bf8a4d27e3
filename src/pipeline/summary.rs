//! `summary.md`: the run for people, ready for a job summary or a pull-request comment. It is
//! the same report `report publish` renders (one renderer: `github::summary`), with the charts,
//! the trend over the runs in this state directory's history, and every step.

use std::path::Path;

use super::run::RunReport;
use crate::github::summary::{Inputs, RunDir, render};

/// Renders a run's summary from the report in memory and the files already in `dir` (drift,
/// gate, metrics, JUnit).
pub fn markdown(r: &RunReport, dir: &Path) -> anyhow::Result<String> {
    let run: crate::contracts::RunReport = serde_json::from_value(serde_json::to_value(r)?)?;
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let parse = |name: &str| -> anyhow::Result<Option<serde_json::Value>> {
        read(name)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(Into::into)
    };
    let mut rd = RunDir {
        path: dir.to_owned(),
        run,
        gate: parse("gate.json")?
            .map(serde_json::from_value)
            .transpose()?,
        evaluation: parse("metrics.json")?
            .map(serde_json::from_value)
            .transpose()?,
        drift: parse("drift/drift.json")?
            .map(serde_json::from_value)
            .transpose()?,
        history: crate::report::history::load(&crate::report::history::dir(&r.config.state_dir))?,
    };
    rd.add_self_to_history();
    let junit = dir.join("junit.xml");
    let tests = if r.tests.is_some() && junit.is_file() {
        Some(crate::github::junit::Results::read_all(&[junit])?)
    } else {
        None
    };
    Ok(render(&Inputs {
        run: Some(&rd),
        tests: tests.as_ref(),
        extra: None,
        link: None,
        check_name: "health-predict pipeline",
    }))
}
