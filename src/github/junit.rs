//! Reading JUnit XML (any producer: ours, pytest, cargo-nextest, surefire) into test outcomes.
//!
//! Only what reporting needs is kept: suite, class, name, outcome, message, details, and the
//! source location when the producer records one (`file`/`line` attributes on `<testcase>`, or a
//! `path:line` at the start of a failure's first line).

use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::GithubError;

/// How one test case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Errored,
    Skipped,
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub suite: String,
    pub classname: String,
    pub name: String,
    pub outcome: Outcome,
    /// The failure/error/skip `message` attribute (or the first line of its text).
    pub message: String,
    /// The failure/error body (stack trace, diff), possibly empty.
    pub details: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub seconds: f64,
    /// The case's `<system-out>` (our API tests put the request and response there).
    pub system_out: String,
    /// The case's `<system-err>`.
    pub system_err: String,
    /// The JUnit file this case was read from (annotations without a source location point
    /// at it).
    pub junit_file: Option<PathBuf>,
}

impl Case {
    /// `classname.name`, or the name alone when there is no class.
    pub fn full_name(&self) -> String {
        if self.classname.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.classname, self.name)
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failed | Outcome::Errored)
    }

    /// The failure body followed by the captured output, for annotations' raw details.
    pub fn full_details(&self) -> String {
        let mut d = self.details.clone();
        for (title, text) in [
            ("system-out", &self.system_out),
            ("system-err", &self.system_err),
        ] {
            // Our writer repeats the failure message at the top of system-out; keep it once.
            let text = text.trim();
            let text = text
                .strip_prefix(self.details.trim())
                .filter(|_| !self.details.trim().is_empty())
                .unwrap_or(text)
                .trim();
            if !text.is_empty() {
                if !d.is_empty() {
                    d.push_str("\n\n");
                }
                d.push_str(&format!("--- {title} ---\n{text}"));
            }
        }
        d
    }
}

/// Every case of one or more JUnit files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Results {
    pub cases: Vec<Case>,
    pub files: Vec<PathBuf>,
}

/// Counts for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub skipped: usize,
}

impl Results {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.cases.len(),
            ..Counts::default()
        };
        for case in &self.cases {
            match case.outcome {
                Outcome::Passed => c.passed += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Errored => c.errored += 1,
                Outcome::Skipped => c.skipped += 1,
            }
        }
        c
    }

    pub fn failures(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().filter(|c| c.is_failure())
    }

    /// Reads and merges several JUnit files.
    pub fn read_all(paths: &[PathBuf]) -> Result<Results, GithubError> {
        let mut all = Results::default();
        for p in paths {
            let one = read(p)?;
            all.cases.extend(one.cases);
            all.files.push(p.clone());
        }
        Ok(all)
    }
}

/// Reads one JUnit XML file.
pub fn read(path: &Path) -> Result<Results, GithubError> {
    let text = std::fs::read_to_string(path).map_err(|source| GithubError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let mut results = parse(&text).map_err(|reason| GithubError::JunitInvalid {
        path: path.to_owned(),
        reason,
    })?;
    for c in &mut results.cases {
        c.junit_file = Some(path.to_owned());
    }
    results.files.push(path.to_owned());
    Ok(results)
}

/// Parses JUnit XML text. The error is a human-readable reason with its byte position.
pub fn parse(xml: &str) -> Result<Results, String> {
    let mut reader = Reader::from_str(xml);
    let mut results = Results::default();
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<Case> = None;
    // Where text goes: a failure's details or the case's captured output.
    let mut in_detail = Sink::None;
    let mut saw_root = false;
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {pos}: {e}"))?;
        match event {
            Event::Start(e) => {
                saw_root = true;
                start(&e, &mut suites, &mut case, &mut in_detail, false)?;
            }
            Event::Empty(e) => {
                saw_root = true;
                start(&e, &mut suites, &mut case, &mut in_detail, true)?;
                if e.local_name().as_ref() == b"testcase"
                    && let Some(c) = case.take()
                {
                    results.cases.push(c);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"testsuite" => {
                    suites.pop();
                }
                b"testcase" => {
                    if let Some(c) = case.take() {
                        results.cases.push(c);
                    }
                }
                b"failure" | b"error" | b"skipped" | b"system-out" | b"system-err" => {
                    in_detail = Sink::None
                }
                _ => {}
            },
            Event::Text(t) if in_detail != Sink::None => {
                let s = t
                    .decode()
                    .map_err(|e| format!("bad text at byte {pos}: {e}"))?;
                push_detail(&mut case, in_detail, &s);
            }
            Event::CData(t) if in_detail != Sink::None => {
                let s = t
                    .decode()
                    .map_err(|e| format!("bad CDATA at byte {pos}: {e}"))?;
                push_detail(&mut case, in_detail, &s);
            }
            Event::GeneralRef(r) if in_detail != Sink::None => {
                let s = if let Some(ch) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad reference at byte {pos}: {e}"))?
                {
                    ch.to_string()
                } else {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name}; at byte {pos}"))?
                        .to_owned()
                };
                push_detail(&mut case, in_detail, &s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err("no XML elements: expected <testsuites> or <testsuite>".into());
    }
    for c in &mut results.cases {
        c.details = c.details.trim().to_owned();
        c.system_out = c.system_out.trim().to_owned();
        c.system_err = c.system_err.trim().to_owned();
        if c.message.is_empty() && c.outcome != Outcome::Passed {
            c.message = c.details.lines().next().unwrap_or("").trim().to_owned();
        }
        if c.file.is_none()
            && c.is_failure()
            && let Some((file, line)) = location_in(&c.details)
        {
            c.file = Some(file);
            c.line = Some(line);
        }
    }
    Ok(results)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    None,
    Detail,
    Out,
    Err,
}

fn push_detail(case: &mut Option<Case>, sink: Sink, s: &str) {
    if let Some(c) = case {
        match sink {
            Sink::Detail => c.details.push_str(s),
            Sink::Out => c.system_out.push_str(s),
            Sink::Err => c.system_err.push_str(s),
            Sink::None => {}
        }
    }
}

fn start(
    e: &BytesStart<'_>,
    suites: &mut Vec<String>,
    case: &mut Option<Case>,
    in_detail: &mut Sink,
    empty: bool,
) -> Result<(), String> {
    let attr = |name: &str| -> Result<Option<String>, String> {
        for a in e.attributes() {
            let a = a.map_err(|err| format!("bad attribute: {err}"))?;
            if a.key.local_name().as_ref() == name.as_bytes() {
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|err| format!("bad attribute `{name}`: {err}"))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    };
    match e.local_name().as_ref() {
        b"testsuite" => {
            let name = attr("name")?.unwrap_or_default();
            if !empty {
                suites.push(name);
            }
        }
        b"testcase" => {
            *case = Some(Case {
                suite: suites.last().cloned().unwrap_or_default(),
                classname: attr("classname")?.unwrap_or_default(),
                name: attr("name")?.unwrap_or_default(),
                outcome: Outcome::Passed,
                message: String::new(),
                details: String::new(),
                file: attr("file")?.filter(|f| !f.is_empty()),
                line: attr("line")?.and_then(|l| l.trim().parse().ok()),
                seconds: attr("time")?
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0.0),
                system_out: String::new(),
                system_err: String::new(),
                junit_file: None,
            });
        }
        tag @ (b"failure" | b"error" | b"skipped") => {
            if let Some(c) = case {
                let outcome = match tag {
                    b"failure" => Outcome::Failed,
                    b"error" => Outcome::Errored,
                    _ => Outcome::Skipped,
                };
                // A failure outranks a skip recorded in the same case.
                if c.outcome == Outcome::Passed || c.outcome == Outcome::Skipped {
                    c.outcome = outcome;
                    c.message = attr("message")?.unwrap_or_default();
                }
                *in_detail = if empty { Sink::None } else { Sink::Detail };
            }
        }
        b"system-out" if case.is_some() && !empty => *in_detail = Sink::Out,
        b"system-err" if case.is_some() && !empty => *in_detail = Sink::Err,
        _ => {}
    }
    Ok(())
}

/// A `path:line` at the start of a failure's first non-empty line, e.g. `tests/api.rs:42: ...`.
fn location_in(details: &str) -> Option<(String, u32)> {
    let first = details.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut parts = first.splitn(3, ':');
    let file = parts.next()?.trim();
    let line: u32 = parts.next()?.trim().parse().ok()?;
    let plausible = !file.is_empty()
        && !file.contains(char::is_whitespace)
        && file.contains('.')
        && !file.contains("://");
    plausible.then(|| (file.to_owned(), line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="api" tests="5" failures="2" errors="1">
  <testsuite name="contract" tests="5">
    <testcase classname="health" name="returns_ok" time="0.01"/>
    <testcase classname="predict" name="rejects_bad_age" file="tests/contract.rs" line="42" time="0.2">
      <failure message="expected 422, got 200">status mismatch &amp; more
body: {"age":"[200-210)"}</failure>
    </testcase>
    <testcase classname="predict" name="timeout"><error message="">tests/api.py:17: TimeoutError</error></testcase>
    <testcase name="skipped_one"><skipped message="needs cluster"/></testcase>
    <testcase classname="model" name="version"><failure><![CDATA[version <1.2> != 1.3]]></failure></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn reads_outcomes_locations_and_messages() {
        let r = parse(XML).unwrap();
        assert_eq!(
            r.counts(),
            Counts {
                total: 5,
                passed: 1,
                failed: 2,
                errored: 1,
                skipped: 1
            }
        );
        let bad = &r.cases[1];
        assert_eq!(bad.suite, "contract");
        assert_eq!(bad.full_name(), "predict.rejects_bad_age");
        assert_eq!(bad.message, "expected 422, got 200");
        assert!(bad.details.starts_with("status mismatch & more\nbody:"));
        assert_eq!(
            (bad.file.as_deref(), bad.line),
            (Some("tests/contract.rs"), Some(42))
        );
        let err = &r.cases[2];
        assert_eq!(err.outcome, Outcome::Errored);
        assert_eq!(err.message, "tests/api.py:17: TimeoutError");
        assert_eq!(
            (err.file.as_deref(), err.line),
            (Some("tests/api.py"), Some(17))
        );
        assert_eq!(r.cases[3].message, "needs cluster");
        assert_eq!(r.cases[4].message, "version <1.2> != 1.3");
        assert_eq!(r.cases[4].file, None);
    }

    #[test]
    fn reads_captured_output_of_a_case_not_of_the_suite() {
        let r = parse(
            r#"<testsuite name="s"><testcase name="a"><failure message="expected 422, got 200"/>
<system-out>expected 422, got 200

request:
POST /predict {"age": 3}</system-out><system-err>warn &amp; more</system-err></testcase>
<system-out>base_url: http://127.0.0.1:1</system-out></testsuite>"#,
        )
        .unwrap();
        let c = &r.cases[0];
        assert!(
            c.system_out.ends_with("POST /predict {\"age\": 3}"),
            "{c:?}"
        );
        assert_eq!(c.system_err, "warn & more");
        assert_eq!(
            c.full_details(),
            "--- system-out ---\nexpected 422, got 200\n\nrequest:\nPOST /predict {\"age\": 3}\n\n--- system-err ---\nwarn & more"
        );
    }

    #[test]
    fn rejects_broken_xml_with_a_position() {
        let e = parse("<testsuite><testcase></testsuite>").unwrap_err();
        assert!(e.contains("byte"), "{e}");
        assert!(parse("").is_err());
    }
}
