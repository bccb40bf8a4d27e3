//! Appends each run to the run history in the state directory (`STATE_DIR/history/`), which
//! `report html` and the summaries' trend charts read. The record is built from the run's own
//! files (`gate.json`, `drift/drift.json`, `junit.xml`), read back through their typed reports.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::record::RunReport;
use crate::contracts::{DriftDigest, GateDigest, HISTORY_SCHEMA, HistoryRecord, TestDigest};

/// The history record of a finished run whose files are in `dir`.
pub fn record(report: &RunReport, dir: &Path) -> anyhow::Result<HistoryRecord> {
    let run = serde_json::from_value(serde_json::to_value(report)?)?;
    let drift = read_json::<crate::drift::DriftReport>(&dir.join("drift").join("drift.json"))?
        .map(|d| DriftDigest::of(&d));
    let gate =
        read_json::<crate::gate::GateReport>(&dir.join("gate.json"))?.map(|g| GateDigest::of(&g));
    let junit = dir.join("junit.xml");
    let tests = if junit.is_file() && report.tests.is_some() {
        crate::github::junit::read(&junit)?
            .cases
            .into_iter()
            .map(|c| TestDigest {
                outcome: match c.outcome {
                    crate::github::junit::Outcome::Passed => "passed",
                    crate::github::junit::Outcome::Failed => "failed",
                    crate::github::junit::Outcome::Errored => "errored",
                    crate::github::junit::Outcome::Skipped => "skipped",
                }
                .to_owned(),
                name: c.full_name(),
                message: c.message,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(HistoryRecord {
        schema: HISTORY_SCHEMA,
        run,
        drift,
        gate,
        tests,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Appends the run to `STATE_DIR/history/`; returns the record's path.
pub fn append(state_dir: &Path, report: &RunReport, dir: &Path) -> anyhow::Result<PathBuf> {
    let rec = record(report, dir)?;
    Ok(crate::report::history::append(
        &crate::report::history::dir(state_dir),
        &rec,
    )?)
}
