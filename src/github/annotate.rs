//! Annotations for failed tests, in both places GitHub shows them:
//!
//! - workflow commands (`::error file=..,line=..::msg`) in the step log: GitHub displays at most
//!   10 errors, 10 warnings and 10 notices per step, so we emit at most that many and one notice
//!   saying how many more failures there are and where to find them;
//! - check-run annotations (REST): any number, 50 per request; we cap the total
//!   (`--max-annotations`) and say how many were left out.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::junit::{Case, Results};
use crate::ci::{self, Level, Location};

/// Annotations GitHub displays per step and level (errors, warnings, notices each).
pub const PER_STEP: usize = 10;
/// Check-run annotations per API request (GitHub's limit).
pub const PER_REQUEST: usize = 50;
/// Bytes kept of an annotation's message and raw details (GitHub allows 64 KB each).
const FIELD_LIMIT: usize = 60_000;

/// One check-run annotation, as the REST API takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckAnnotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: &'static str,
    pub title: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_details: Option<String>,
}

/// Where an annotation points: the test's own file and line when the JUnit says, else the JUnit
/// file itself (line 1), relative to the workspace so GitHub can link it.
fn location(case: &Case, fallback: Option<&Path>, workspace: Option<&Path>) -> (String, u32) {
    let junit_file = case.junit_file.as_deref().or(fallback);
    if let Some(file) = &case.file {
        return (
            relative(Path::new(file), workspace),
            case.line.unwrap_or(1).max(1),
        );
    }
    match junit_file {
        Some(f) => (relative(f, workspace), 1),
        None => ("junit.xml".into(), 1),
    }
}

fn relative(path: &Path, workspace: Option<&Path>) -> String {
    let p: PathBuf = match workspace {
        Some(ws) => path.strip_prefix(ws).unwrap_or(path).to_owned(),
        None => path.to_owned(),
    };
    p.to_string_lossy().trim_start_matches("./").to_owned()
}

fn clip(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_owned();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn message_of(case: &Case) -> String {
    let m = if case.message.is_empty() {
        "failed without a message"
    } else {
        &case.message
    };
    let kind = if case.outcome == super::junit::Outcome::Errored {
        "error"
    } else {
        "failed"
    };
    format!("{} {kind}: {m}", case.full_name())
}

/// Check-run annotations for every failure, capped at `max`; returns them and how many failures
/// were left out.
pub fn check_annotations(
    results: &Results,
    max: usize,
    workspace: Option<&Path>,
) -> (Vec<CheckAnnotation>, usize) {
    let junit_file = results.files.first().map(PathBuf::as_path);
    let failures: Vec<&Case> = results.failures().collect();
    let kept = failures.len().min(max);
    let list = failures[..kept]
        .iter()
        .map(|c| {
            let (path, line) = location(c, junit_file, workspace);
            CheckAnnotation {
                path,
                start_line: line,
                end_line: line,
                annotation_level: "failure",
                title: clip(&c.full_name(), 255),
                message: clip(&message_of(c), FIELD_LIMIT),
                raw_details: {
                    let d = c.full_details();
                    (!d.is_empty()).then(|| clip(&d, FIELD_LIMIT))
                },
            }
        })
        .collect();
    (list, failures.len() - kept)
}

/// The workflow-command annotations for a step: at most [`PER_STEP`] errors (failed tests), the
/// given warnings (at most [`PER_STEP`]), and a notice for anything left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepAnnotations {
    /// Formatted workflow-command lines.
    pub lines: Vec<String>,
    /// Failed tests without an error annotation of their own.
    pub failures_not_annotated: usize,
}

impl StepAnnotations {
    pub fn plan(
        results: &Results,
        warnings: &[String],
        workspace: Option<&Path>,
        see_also: &str,
    ) -> StepAnnotations {
        let junit_file = results.files.first().map(PathBuf::as_path);
        let failures: Vec<&Case> = results.failures().collect();
        let mut lines = Vec::new();
        for c in failures.iter().take(PER_STEP) {
            let (file, line) = location(c, junit_file, workspace);
            let at = Location {
                file,
                line: Some(line),
                title: Some(clip(&c.full_name(), 200)),
            };
            lines.push(ci::format_annotation(
                Level::Error,
                &clip(&message_of(c), 4_000),
                Some(&at),
            ));
        }
        for w in warnings.iter().take(PER_STEP) {
            lines.push(ci::format_annotation(Level::Warning, w, None));
        }
        let not_annotated = failures.len().saturating_sub(PER_STEP);
        let dropped_warnings = warnings.len().saturating_sub(PER_STEP);
        if not_annotated > 0 || dropped_warnings > 0 {
            let mut parts = Vec::new();
            if not_annotated > 0 {
                parts.push(format!("{not_annotated} more failed tests"));
            }
            if dropped_warnings > 0 {
                parts.push(format!("{dropped_warnings} more warnings"));
            }
            lines.push(ci::format_annotation(
                Level::Notice,
                &format!(
                    "{} are not annotated here (GitHub shows {PER_STEP} per level and step); {see_also}",
                    parts.join(" and ")
                ),
                None,
            ));
        }
        StepAnnotations {
            lines,
            failures_not_annotated: not_annotated,
        }
    }

    /// Prints the lines as workflow commands when running in GitHub Actions (on stderr, like
    /// every workflow command: see `crate::ci`).
    pub fn emit(&self) {
        if ci::in_github_actions() {
            use std::io::Write;
            let mut out = std::io::stderr().lock();
            for l in &self.lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::junit::parse;

    fn many(n: usize) -> Results {
        let mut xml = String::from("<testsuite name=\"s\">");
        for i in 0..n {
            xml.push_str(&format!(
                "<testcase classname=\"c\" name=\"t{i}\"><failure message=\"boom: 100%\"/></testcase>"
            ));
        }
        xml.push_str("<testcase name=\"ok\"/></testsuite>");
        let mut r = parse(&xml).unwrap();
        r.files.push(PathBuf::from("/ws/run/junit.xml"));
        r
    }

    #[test]
    fn step_annotations_respect_the_per_step_limit_and_say_what_was_dropped() {
        let r = many(13);
        let plan = StepAnnotations::plan(&r, &["w".into()], Some(Path::new("/ws")), "see X");
        let errors = plan
            .lines
            .iter()
            .filter(|l| l.starts_with("::error"))
            .count();
        assert_eq!(errors, PER_STEP);
        assert_eq!(plan.failures_not_annotated, 3);
        assert_eq!(
            plan.lines[0],
            "::error file=run/junit.xml,line=1,title=c.t0::c.t0 failed: boom: 100%25"
        );
        let last = plan.lines.last().unwrap();
        assert!(last.starts_with("::notice::3 more failed tests"), "{last}");
        assert!(last.ends_with("see X"), "{last}");
    }

    #[test]
    fn fallback_annotations_point_at_the_junit_file_each_case_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a-junit.xml");
        let b = dir.path().join("b-junit.xml");
        std::fs::write(
            &a,
            "<testsuite><testcase name=\"x\"><failure/></testcase></testsuite>",
        )
        .unwrap();
        std::fs::write(
            &b,
            "<testsuite><testcase name=\"y\"><failure/><system-out>request: GET /health</system-out></testcase></testsuite>",
        )
        .unwrap();
        let r = Results::read_all(&[a, b]).unwrap();
        let (list, _) = check_annotations(&r, 10, Some(dir.path()));
        assert_eq!(list[0].path, "a-junit.xml");
        assert_eq!(list[1].path, "b-junit.xml");
        assert_eq!(
            list[1].raw_details.as_deref(),
            Some("--- system-out ---\nrequest: GET /health")
        );
    }

    #[test]
    fn check_annotations_are_capped_honestly() {
        let (list, dropped) = check_annotations(&many(120), 100, None);
        assert_eq!((list.len(), dropped), (100, 20));
        assert_eq!(list[0].annotation_level, "failure");
        assert_eq!(list[0].path, "/ws/run/junit.xml");
    }
}
