//! `summary.md`: the run for people, ready for a job summary or a pull-request comment. It is
//! the same report `report publish` renders (one renderer: `github::summary`), with the charts,
//! the trend over the runs in this state directory's history, and every step.

use std::path::Path;

use super::record::RunReport;
use crate::github::summary::{Inputs, RunDir, render};

/// Renders a run's summary from the report in memory and the files already in `dir` (drift,
/// gate, metrics, JUnit).
pub fn markdown(r: &RunReport, dir: &Path) -> anyhow::Result<String> {
    let run: crate::contracts::RunReport = serde_json::from_value(serde_json::to_value(r)?)?;
    // The run's own files, typed. One that does not read back leaves its section out with a
    // warning: the summary of a run must never be what fails the run.
    fn typed<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
        let text = match std::fs::read_to_string(dir.join(name)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("summary.md leaves out {name}: {e}");
                return None;
            }
        };
        serde_json::from_str(&text)
            .map_err(|e| tracing::warn!("summary.md leaves out {name}: {e}"))
            .ok()
    }
    let history = crate::report::history::load(&crate::report::history::dir(&r.config.state_dir))
        .unwrap_or_else(|e| {
            tracing::warn!(
                "summary.md has no trend charts: {}",
                crate::exit::chain_text(&e)
            );
            Vec::new()
        });
    let mut rd = RunDir {
        run,
        gate: typed(dir, "gate.json"),
        evaluation: typed(dir, "metrics.json"),
        drift: typed(dir, "drift/drift.json"),
        history,
    };
    rd.add_self_to_history();
    let junit = dir.join("junit.xml");
    let tests = if r.tests.is_some() && junit.is_file() {
        crate::github::junit::Results::read_all(&[junit])
            .map_err(|e| tracing::warn!("summary.md leaves out the JUnit details: {e}"))
            .ok()
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
