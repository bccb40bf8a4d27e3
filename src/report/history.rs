//! The run history: one JSON file per run under `STATE_DIR/history/`, named so that names sort
//! in the order the runs started. Append-only: a record is written to a temporary file and
//! linked into place without replacing anything (two runs can never overwrite each other's
//! record), then the directory is fsynced. Readers list the directory; a half-written record
//! cannot be seen because it never has a `.json` name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::contracts::{HISTORY_SCHEMA, HistoryRecord};

/// The history directory of a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("history")
}

/// Errors reading or writing the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the run history in {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a run history record: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot append to the run history in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file-name-safe form of a run id.
fn safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// Appends a record; returns its path. Never replaces an existing record: a second record of
/// the same run id and start time gets a numbered name.
pub fn append(dir: &Path, record: &HistoryRecord) -> Result<PathBuf, HistoryError> {
    let err = |source| HistoryError::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let started: String = record
        .run
        .started
        .chars()
        .filter(char::is_ascii_digit)
        .take(17)
        .collect();
    let stem = format!("{started:0<17}-{}", safe(&record.run.run_id));
    let bytes = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(&bytes).map_err(err)?;
    tmp.write_all(b"\n").map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    let mut n = 0;
    let path = loop {
        let name = if n == 0 {
            format!("{stem}.json")
        } else {
            format!("{stem}.{n}.json")
        };
        let path = dir.join(name);
        match tmp.persist_noclobber(&path) {
            Ok(_) => break path,
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                tmp = e.file;
                n += 1;
            }
            Err(e) => return Err(err(e.error)),
        }
    };
    crate::fsutil::sync_dir(dir).map_err(err)?;
    Ok(path)
}

/// Every record, oldest first. A missing directory is an empty history; an unreadable or
/// newer-format record is an error naming the file.
pub fn load(dir: &Path) -> Result<Vec<HistoryRecord>, HistoryError> {
    let read_err = |source| HistoryError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut paths = Vec::new();
    for e in entries {
        let p = e.map_err(read_err)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".json") && !name.starts_with('.') {
            paths.push(p);
        }
    }
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|source| HistoryError::Read {
                path: p.clone(),
                source,
            })?;
            let mut r: HistoryRecord =
                serde_json::from_str(&text).map_err(|e| HistoryError::Invalid {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
            if r.schema > HISTORY_SCHEMA {
                return Err(HistoryError::Invalid {
                    path: p.clone(),
                    reason: format!(
                        "written by a newer health-predict (layout {}, this one reads up to {HISTORY_SCHEMA})",
                        r.schema
                    ),
                });
            }
            r.run.exit = crate::exit::Exit::from_code(r.run.exit_code);
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::RunReport;

    fn record(id: &str) -> HistoryRecord {
        let mut run = RunReport::started(id.into(), "r".into(), serde_json::json!({}));
        run.status = "passed".into();
        run.exit_code = 0;
        run.exit = crate::exit::Exit::Success;
        run.decision = Some("NO_RETRAIN".into());
        run.production_before = Some(1);
        run.production_after = Some(1);
        run.started = "2026-12-04T17:00:00.5Z".into();
        run.seconds = 1.0;
        HistoryRecord {
            schema: HISTORY_SCHEMA,
            run,
            drift: None,
            gate: None,
            tests: Vec::new(),
        }
    }

    #[test]
    fn appends_never_replace_and_load_in_order() {
        let d = tempfile::tempdir().unwrap();
        let a = append(d.path(), &record("run/1")).unwrap();
        let b = append(d.path(), &record("run/1")).unwrap();
        assert_ne!(a, b, "the second record of the same run gets its own file");
        let mut later = record("run-2");
        later.run.started = "2026-12-04T17:00:01Z".into();
        let c = append(d.path(), &later).unwrap();
        assert!(
            c.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-run-2.json")
        );
        let all = load(d.path()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].run.run_id, "run/1");
        assert_eq!(all[2].run.run_id, "run-2", "oldest first");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
        assert!(load(&d.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_newer_layout_is_refused_with_the_file_name() {
        let d = tempfile::tempdir().unwrap();
        let mut r = record("x");
        r.schema = HISTORY_SCHEMA + 1;
        let p = append(d.path(), &r).unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(load(d.path()).is_err());
    }
}
