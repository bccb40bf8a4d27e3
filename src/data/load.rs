//! Reading encounter files (CSV or gzip-compressed CSV) into a [`Table`], validating every cell
//! against the schema. Bad input is reported by file, line, column and value with what was
//! expected; the loader never panics on input.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use super::schema::{COLUMNS, ColumnSpec, Kind, WIDTH, col};
use super::table::{Table, Value};
use super::{DataError, Issue};

/// What a loaded file must contain.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// `readmitted` must be present (training and evaluation); prediction inputs may omit it.
    pub require_target: bool,
    /// `encounter_id` and `patient_nbr` must be present.
    pub require_ids: bool,
    /// Stop collecting cell problems after this many (the total is still counted).
    pub max_issues: usize,
    /// Most bytes read, after decompression: a small gzip file can expand without bound.
    pub max_bytes: u64,
    /// Longest record (one row, quoted newlines included) in bytes; the reader holds a whole
    /// record in memory, so one huge field would otherwise take as much.
    pub max_record_bytes: u64,
}

/// Default [`LoadOptions::max_bytes`]: 1 GiB (the real file is 18 MB).
pub const MAX_BYTES: u64 = 1 << 30;
/// Default [`LoadOptions::max_record_bytes`]: 1 MiB (real rows are under 1 KB).
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// The CSV reader's buffer: it reads this far ahead of the record it parses.
const BUFFER: usize = 1 << 16;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            require_target: true,
            require_ids: true,
            max_issues: 20,
            max_bytes: MAX_BYTES,
            max_record_bytes: MAX_RECORD_BYTES,
        }
    }
}

/// Which input limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`LoadOptions::max_bytes`].
    Bytes(u64),
    /// [`LoadOptions::max_record_bytes`].
    Record(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Bytes(n) => write!(f, "holds more than {n} bytes (after decompression)"),
            Limit::Record(n) => write!(f, "has a record longer than {n} bytes"),
        }
    }
}

impl std::error::Error for Limit {}

/// Counts what the CSV reader pulls and fails once either limit is passed, before the reader
/// could buffer it. `record_start` is the byte offset where the current record began (set by
/// the parse loop); the reader may be up to one buffer ahead of it.
struct Limited<R> {
    inner: R,
    read: u64,
    record_start: Rc<Cell<u64>>,
    max_bytes: u64,
    max_record: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max_bytes {
            return Err(std::io::Error::other(Limit::Bytes(self.max_bytes)));
        }
        let window = self.max_record + 2 * BUFFER as u64;
        if self.read.saturating_sub(self.record_start.get()) > window {
            return Err(std::io::Error::other(Limit::Record(self.max_record)));
        }
        Ok(n)
    }
}

/// The limit behind a CSV read error, if it was one.
fn limit_of(e: &csv::Error) -> Option<Limit> {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.get_ref()?.downcast_ref::<Limit>().copied(),
        _ => None,
    }
}

impl LoadOptions {
    /// Options for prediction inputs: no label, no identifiers needed.
    pub fn unlabeled() -> LoadOptions {
        LoadOptions {
            require_target: false,
            require_ids: false,
            ..LoadOptions::default()
        }
    }
}

/// Loads and validates a CSV or CSV.gz file (gzip is detected from the content, not the name).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Table, DataError> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read(file, &path.display().to_string(), opts)
}

/// Reads and validates CSV (or gzip-compressed CSV) from any reader; `source` names it in errors.
pub fn read<'r>(
    reader: impl Read + 'r,
    source: &str,
    opts: &LoadOptions,
) -> Result<Table, DataError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let head = buffered.fill_buf().map_err(|e| DataError::Io {
        path: source.to_owned(),
        source: e,
    })?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read + 'r> = if gz {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let record_start = Rc::new(Cell::new(0));
    let limited = Limited {
        inner: input,
        read: 0,
        record_start: record_start.clone(),
        max_bytes: opts.max_bytes,
        max_record: opts.max_record_bytes,
    };
    parse(Box::new(limited), &record_start, source, opts)
}

fn parse(
    input: Box<dyn Read + '_>,
    record_start: &Cell<u64>,
    source: &str,
    opts: &LoadOptions,
) -> Result<Table, DataError> {
    // Records end at `\n` only, with a trailing `\r` stripped below: with the default CRLF
    // terminator the reader counts a CRLF's `\n` towards the next record and every line number
    // of a Windows file comes out one low.
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(BUFFER)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    // I/O errors (a gzip stream cut short) carry no position: name the line after the last
    // record read.
    let read_err = |last: u64| {
        move |e: csv::Error| {
            let line = e.position().map_or(last + 1, |p| p.line());
            match limit_of(&e) {
                Some(limit) => DataError::TooLarge {
                    path: source.to_owned(),
                    line,
                    limit,
                },
                None => DataError::Read {
                    path: source.to_owned(),
                    line: Some(line),
                    source: e,
                },
            }
        }
    };
    // A record that fits the read-ahead window can still be over the limit: check it exactly.
    let check_len = |record: &csv::ByteRecord, line: u64| {
        if record.as_slice().len() as u64 > opts.max_record_bytes {
            Err(DataError::TooLarge {
                path: source.to_owned(),
                line,
                limit: Limit::Record(opts.max_record_bytes),
            })
        } else {
            Ok(())
        }
    };
    if !csv.read_byte_record(&mut record).map_err(read_err(0))? {
        return Err(DataError::Empty {
            path: source.to_owned(),
        });
    }
    check_len(&record, 1)?;
    record_start.set(csv.position().byte());
    let mapping = header(&record, source, opts)?;
    let mut present = [false; WIDTH];
    for &c in mapping.iter().flatten() {
        present[c] = true;
    }

    let mut table = Table::new();
    table.set_present(present);
    let mut issues = Vec::new();
    let mut total = 0usize;
    let mut report = |issue: Issue, issues: &mut Vec<Issue>| {
        total += 1;
        if issues.len() < opts.max_issues {
            issues.push(issue);
        }
    };
    let mut last = 1;
    while csv.read_byte_record(&mut record).map_err(read_err(last))? {
        record_start.set(csv.position().byte());
        let line = record.position().map_or(0, |p| p.line());
        last = line;
        check_len(&record, line)?;
        let width = record.len();
        if width == 1 && record.get(0).is_some_and(|f| cell(0, width, f).is_empty()) {
            continue; // a blank line
        }
        if record.len() != mapping.len() {
            report(
                Issue {
                    line,
                    column: None,
                    value: None,
                    problem: format!(
                        "has {} fields but the header has {} (a truncated or malformed row)",
                        record.len(),
                        mapping.len()
                    ),
                },
                &mut issues,
            );
            continue;
        }
        let mut fields: Vec<&str> = Vec::with_capacity(WIDTH);
        let mut row_ok = true;
        for (i, raw) in record.iter().enumerate() {
            let raw = cell(i, width, raw);
            match std::str::from_utf8(raw) {
                Ok(s) => fields.push(s),
                Err(_) => {
                    report(
                        Issue {
                            line,
                            column: mapping[i].map(|c| COLUMNS[c].name.to_owned()),
                            value: Some(String::from_utf8_lossy(raw).into_owned()),
                            problem: "is not valid UTF-8".into(),
                        },
                        &mut issues,
                    );
                    row_ok = false;
                    fields.push("");
                }
            }
        }
        if !row_ok {
            continue;
        }
        let mut values = vec![Value::Missing; WIDTH];
        for (i, field) in fields.iter().enumerate() {
            let Some(c) = mapping[i] else { continue };
            match check(&COLUMNS[c], field) {
                Ok(v) => values[c] = v,
                Err(problem) => {
                    report(
                        Issue {
                            line,
                            column: Some(COLUMNS[c].name.to_owned()),
                            value: Some((*field).to_owned()),
                            problem,
                        },
                        &mut issues,
                    );
                    row_ok = false;
                }
            }
        }
        if row_ok {
            table.push_row(&values);
        }
    }
    if total > 0 {
        return Err(DataError::Invalid {
            path: source.to_owned(),
            issues,
            total,
        });
    }
    if table.is_empty() {
        return Err(DataError::NoRows {
            path: source.to_owned(),
        });
    }
    Ok(table)
}

/// Field `i` of a record `width` wide, without the `\r` of a CRLF line end.
fn cell(i: usize, width: usize, raw: &[u8]) -> &[u8] {
    if i + 1 == width {
        raw.strip_suffix(b"\r").unwrap_or(raw)
    } else {
        raw
    }
}

/// Maps each file column to its schema index, checking for missing, unknown and duplicate names.
fn header(
    record: &csv::ByteRecord,
    source: &str,
    opts: &LoadOptions,
) -> Result<Vec<Option<usize>>, DataError> {
    let mut mapping = Vec::with_capacity(record.len());
    let mut seen = [false; WIDTH];
    let mut unknown = Vec::new();
    let mut duplicate = Vec::new();
    for (i, raw) in record.iter().enumerate() {
        let mut name = String::from_utf8_lossy(raw).trim().to_owned();
        if i == 0 {
            name = name.trim_start_matches('\u{feff}').to_owned();
        }
        match super::schema::index_of(&name) {
            Some(c) if seen[c] => {
                duplicate.push(name);
                mapping.push(None);
            }
            Some(c) => {
                seen[c] = true;
                mapping.push(Some(c));
            }
            None => {
                unknown.push(name);
                mapping.push(None);
            }
        }
    }
    let optional = |c: usize| {
        (!opts.require_target && c == col::READMITTED)
            || (!opts.require_ids && (c == col::ENCOUNTER_ID || c == col::PATIENT_NBR))
    };
    let missing: Vec<String> = (0..WIDTH)
        .filter(|&c| !seen[c] && !optional(c))
        .map(|c| COLUMNS[c].name.to_owned())
        .collect();
    if !missing.is_empty() || !unknown.is_empty() || !duplicate.is_empty() {
        return Err(DataError::Header {
            path: source.to_owned(),
            missing,
            unknown,
            duplicate,
        });
    }
    Ok(mapping)
}

/// Validates one cell against its column's contract.
pub fn check<'a>(spec: &ColumnSpec, field: &'a str) -> Result<Value<'a>, String> {
    if field == "?" {
        return if spec.missing_allowed {
            Ok(Value::Missing)
        } else {
            Err("is `?` (missing), but this column must always have a value".into())
        };
    }
    if field.is_empty() {
        return Err("is empty; write `?` for a missing value".into());
    }
    match spec.kind {
        Kind::Identifier | Kind::Integer => match field.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Value::Int(v)),
            Ok(_) => Err("is negative; expected a non-negative integer".into()),
            Err(_) => Err("is not an integer; expected a non-negative integer".into()),
        },
        Kind::Categorical => match spec.allowed {
            Some(allowed) if allowed.contains(&field) => Ok(Value::Str(field)),
            Some(allowed) => Err(format!(
                "is not an allowed value; expected one of {}{}",
                allowed.join(", "),
                if spec.missing_allowed { ", ?" } else { "" }
            )),
            None if spec.name.starts_with("diag_") && !is_icd9(field) => Err(
                "is not an ICD-9 code; expected digits with an optional decimal part (`250.83`), \
                 `V` + 2 digits or `E` + 3 digits"
                    .into(),
            ),
            None => Ok(Value::Str(field)),
        },
    }
}

/// Whether a string has the shape of an ICD-9-CM code as written in this dataset.
pub fn is_icd9(code: &str) -> bool {
    let (body, frac) = match code.split_once('.') {
        Some((b, f)) => (b, Some(f)),
        None => (code, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || f.len() > 2 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    match body.as_bytes().first() {
        Some(b'V') => digits(&body[1..], 2, 2),
        Some(b'E') => digits(&body[1..], 3, 3),
        _ => digits(body, 1, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd9_shapes() {
        for ok in ["250.83", "V57", "E909", "38", "428", "V45.1", "250.8"] {
            assert!(is_icd9(ok), "{ok}");
        }
        for bad in ["", "2500", "V5", "E90", "250.", "abc", "250.123", "V57x"] {
            assert!(!is_icd9(bad), "{bad}");
        }
    }

    #[test]
    fn cell_checks_say_what_was_expected() {
        let age = &COLUMNS[col::AGE];
        assert!(check(age, "[200-300)").unwrap_err().contains("[0-10)"));
        assert_eq!(check(age, "[70-80)").unwrap(), Value::Str("[70-80)"));
        let los = &COLUMNS[col::TIME_IN_HOSPITAL];
        assert!(check(los, "three").unwrap_err().contains("integer"));
        assert!(check(los, "-1").unwrap_err().contains("negative"));
        assert!(check(los, "?").unwrap_err().contains("must always"));
        assert_eq!(check(&COLUMNS[col::RACE], "?").unwrap(), Value::Missing);
        assert!(
            check(&COLUMNS[col::RACE], "")
                .unwrap_err()
                .contains("empty")
        );
    }
}
