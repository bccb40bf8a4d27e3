//! Encounter data: the 50-column schema, loading and validation, the synthetic generator,
//! profiles, fetching and splitting. Knows nothing of models, drift or serving.

pub mod fetch;
pub(crate) mod load;
pub(crate) mod profile;
pub mod schema;
pub mod split;
pub mod synth;
pub(crate) mod table;

use std::fmt;

pub use load::{LoadOptions, load};
pub use schema::Target;
pub use table::{Row, Table, Value};

use crate::exit::{Diagnose, Exit};

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub column: Option<String>,
    pub value: Option<String>,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Columns and values come from the file: printed on one line, control characters escaped.
        write!(f, "line {}", self.line)?;
        if let Some(c) = &self.column {
            write!(f, ", column `{}`", crate::ci::printable(&truncate(c, 60)))?;
        }
        match (&self.column, &self.value) {
            (_, Some(v)) => write!(
                f,
                ": value `{}` {}",
                crate::ci::printable(&truncate(v, 60)),
                self.problem
            ),
            (Some(_), None) => write!(f, ": {}", self.problem),
            (None, None) => write!(f, ": row {}", self.problem),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// Errors reading or validating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}{}", line.map(|l| format!(" near line {l}")).unwrap_or_default())]
    Read {
        path: String,
        line: Option<u64>,
        #[source]
        source: csv::Error,
    },
    #[error("{path} {limit} (line {line})")]
    TooLarge {
        path: String,
        line: u64,
        limit: load::Limit,
    },
    #[error("{path} is empty: expected a header line with the 50 column names")]
    Empty { path: String },
    #[error("{path} has a header line but no data rows")]
    NoRows { path: String },
    #[error(
        "{path} has the wrong columns:{}{}{}",
        list(" missing", missing),
        list(" unknown", unknown),
        list(" duplicated", duplicate)
    )]
    Header {
        path: String,
        missing: Vec<String>,
        unknown: Vec<String>,
        duplicate: Vec<String>,
    },
    #[error("{path}: {total} invalid {}; first: {}", if *total == 1 { "value" } else { "values" },
        issues.first().map(ToString::to_string).unwrap_or_default())]
    Invalid {
        path: String,
        issues: Vec<Issue>,
        total: usize,
    },
}

impl DataError {
    /// The error as a list of located problems, for `data validate`. `None` when the file could
    /// not be opened at all.
    pub fn issues(&self) -> Option<(Vec<Issue>, usize)> {
        let one = |line: u64, column: Option<String>, problem: String| Issue {
            line,
            column,
            value: None,
            problem,
        };
        Some(match self {
            DataError::Io { .. } => return None,
            DataError::Invalid { issues, total, .. } => (issues.clone(), *total),
            DataError::Read { line, source, .. } => (
                vec![one(
                    line.unwrap_or(0),
                    None,
                    format!("cannot be read: {source}"),
                )],
                1,
            ),
            DataError::TooLarge { line, limit, .. } => (
                vec![one(
                    *line,
                    None,
                    format!("stops the read: the file {limit}"),
                )],
                1,
            ),
            DataError::Empty { .. } => (
                vec![one(
                    1,
                    None,
                    "is missing: the file is empty; expected a header line with the 50 column \
                     names"
                        .into(),
                )],
                1,
            ),
            DataError::NoRows { .. } => (
                vec![one(
                    2,
                    None,
                    "is missing: the file has a header but no data rows".into(),
                )],
                1,
            ),
            DataError::Header {
                missing,
                unknown,
                duplicate,
                ..
            } => {
                let mut v = Vec::new();
                for (names, problem) in [
                    (
                        missing,
                        "is missing from the header; expected all 50 columns of diabetic_data.csv",
                    ),
                    (unknown, "is not a column of the schema"),
                    (duplicate, "appears more than once in the header"),
                ] {
                    v.extend(
                        names
                            .iter()
                            .map(|n| one(1, Some(n.clone()), problem.into())),
                    );
                }
                let total = v.len();
                (v, total)
            }
        })
    }
}

fn list(label: &str, names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        let shown: Vec<_> = names
            .iter()
            .take(8)
            .map(|n| format!("`{}`", crate::ci::printable(&truncate(n, 60))))
            .collect();
        let more = if names.len() > 8 {
            format!(" and {} more", names.len() - 8)
        } else {
            String::new()
        };
        format!("{label} {}{more};", shown.join(", "))
    }
}

impl Diagnose for DataError {
    fn exit(&self) -> Exit {
        Exit::InvalidInput
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            DataError::Io { .. } => "check the path given with --data (or HEALTH_PREDICT_DATA)".into(),
            DataError::Read { .. } => {
                "the file is not readable CSV (or the gzip stream is truncated); re-download it \
                 with `health-predict data fetch`"
                    .into()
            }
            DataError::TooLarge {
                limit: load::Limit::Bytes(_),
                ..
            } => "the input is larger than an encounter file should be (a gzip bomb?); if it \
                  is genuine, raise --max-bytes on `data validate` (HEALTH_PREDICT_MAX_INPUT_BYTES)"
                .into(),
            DataError::TooLarge {
                limit: load::Limit::Record(_),
                ..
            } => "one record is far longer than an encounter row (an unclosed quote, or a huge \
                  field); fix that line, or raise --max-record-bytes on `data validate` \
                  (HEALTH_PREDICT_MAX_RECORD_BYTES)"
                .into(),
            DataError::Empty { .. } | DataError::NoRows { .. } => {
                "point --data at a file with encounters, or make one with `health-predict data synth`".into()
            }
            DataError::Header { .. } => {
                "the file must have the 50 columns of the UCI diabetic_data.csv header; \
                 see `health-predict data validate --help`"
                    .into()
            }
            DataError::Invalid { .. } => {
                "run `health-predict data validate PATH` to list every invalid value".into()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        schema::names().collect::<Vec<_>>().join(",")
    }

    fn good_row(id: u32) -> String {
        let mut f: Vec<String> = schema::COLUMNS
            .iter()
            .map(|c| match c.kind {
                schema::Kind::Categorical => c.allowed.map_or("X".to_owned(), |a| a[0].to_owned()),
                _ => "1".to_owned(),
            })
            .collect();
        f[0] = id.to_string();
        f[18] = "428".into();
        f[19] = "250.83".into();
        f[20] = "V57".into();
        f.join(",")
    }

    fn read_str(s: &[u8]) -> Result<Table, DataError> {
        load::read(s, "t.csv", &LoadOptions::default())
    }

    #[test]
    fn good_file_loads() {
        let text = format!("{}\n{}\n{}\n", header(), good_row(1), good_row(2));
        let t = read_str(text.as_bytes()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(1, 0), Value::Int(2));
    }

    #[test]
    fn gzip_is_detected_from_content() {
        use std::io::Write;
        let text = format!("{}\n{}\n", header(), good_row(1));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(read_str(&bytes).unwrap().len(), 1);
        let err = read_str(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(
            matches!(err, DataError::Read { .. } | DataError::Invalid { .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_inputs_are_errors_with_locations() {
        let h = header();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "is empty"),
            (format!("{h}\n").into_bytes(), "no data rows"),
            (
                format!("{h}\n{}\n1,2,3\n", good_row(1)).into_bytes(),
                "line 3: row has 3 fields",
            ),
            (
                format!("{},extra\n{},9\n", h, good_row(1)).into_bytes(),
                "unknown `extra`",
            ),
            (
                format!("{}\n{}\n", h.replace(",age,", ",",), good_row(1)).into_bytes(),
                "missing `age`",
            ),
            (
                format!("{h}\n{}\n", good_row(1).replacen(",1,", ",x,", 1)).into_bytes(),
                "line 2, column `patient_nbr`: value `x` is not an integer",
            ),
        ];
        for (input, want) in cases {
            let err = read_str(&input).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut bad = format!("{h}\n").into_bytes();
        bad.extend(good_row(1).as_bytes());
        let mut row = good_row(2).into_bytes();
        row[2] = 0xff;
        bad.push(b'\n');
        bad.extend(row);
        let err = read_str(&bad).unwrap_err().to_string();
        assert!(
            err.contains("line 3, column `patient_nbr`") && err.contains("UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn unlabeled_inputs_may_omit_target_and_ids() {
        let names: Vec<_> = schema::names().skip(2).take(47).collect();
        let row: Vec<_> = good_row(1)
            .split(',')
            .skip(2)
            .take(47)
            .map(str::to_owned)
            .collect();
        let text = format!("{}\n{}\n", names.join(","), row.join(","));
        let t = load::read(text.as_bytes(), "p.csv", &LoadOptions::unlabeled()).unwrap();
        assert!(!t.is_present(schema::col::READMITTED));
        assert_eq!(t.get(0, schema::col::READMITTED), Value::Missing);
        assert!(read_str(text.as_bytes()).is_err());
    }
}

#[cfg(test)]
mod real_data {
    /// The real UCI file: `$HEALTH_PREDICT_REAL_DATA` when set (`.ci/run` sets it when the
    /// machine has the file), else `shared/data/diabetic_data.csv.gz` in an ancestor of this
    /// checkout. `None` outside CI when absent; under `CI=true` a missing file fails the test.
    pub fn path() -> Option<std::path::PathBuf> {
        if let Some(p) = std::env::var_os("HEALTH_PREDICT_REAL_DATA") {
            let p = std::path::PathBuf::from(p);
            assert!(
                p.exists(),
                "HEALTH_PREDICT_REAL_DATA={} does not exist: point it at diabetic_data.csv.gz",
                p.display()
            );
            return Some(p);
        }
        let rel = std::path::Path::new("shared/data/diabetic_data.csv.gz");
        let found = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .skip(1)
            .map(|a| a.join(rel))
            .find(|p| p.exists());
        if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "CI=true but the real data is missing: set HEALTH_PREDICT_REAL_DATA to \
                 diabetic_data.csv.gz (.ci/run does when the machine has it) or place it at \
                 ../shared/data/diabetic_data.csv.gz"
            );
        }
        found
    }

    #[test]
    fn the_real_file_validates() {
        let Some(p) = path() else {
            eprintln!(
                "skipped: the real data is absent (set HEALTH_PREDICT_REAL_DATA or place \
                 ../shared/data/diabetic_data.csv.gz)"
            );
            return;
        };
        let t = super::load(&p, &super::LoadOptions::default()).unwrap();
        assert_eq!(t.len(), 101_766);
    }
}
