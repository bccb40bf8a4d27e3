//! The GitHub Actions runner interface: workflow commands (groups, annotations, masks), step
//! outputs and the job summary, exactly as the platform defines them. Outside Actions these are
//! no-ops (groups and annotations) or plain files (outputs and summary when their variables are set).
//!
//! Workflow commands go to stderr: the runner reads them from both streams (in actions/runner,
//! `ScriptHandler` feeds stdout and stderr alike to its command manager), and stdout stays
//! reserved for data, so `--output json` remains exactly one JSON document in Actions too.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use rand::Rng;

/// Whether this process runs inside a GitHub Actions job.
pub fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Annotation severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Notice,
    Warning,
    Error,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Where an annotation points.
#[derive(Debug, Clone, Default)]
pub struct Location {
    pub file: String,
    pub line: Option<u32>,
    pub title: Option<String>,
}

/// `s` on one line with every control character written as an escape (`\n`, `\r`, `\t`,
/// `\u{1b}`, also the Unicode line and paragraph separators), for printing values that came from
/// input files. Without it a quoted newline in a CSV cell would start a new output line, and a
/// line such as `::error::...` is a workflow command to the Actions runner, whichever stream it
/// is on.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}');
    if !s.contains(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if bad(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Escapes a workflow command's message (data) part.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Formats an annotation command line (without emitting it).
pub fn format_annotation(level: Level, message: &str, at: Option<&Location>) -> String {
    let mut props = Vec::new();
    if let Some(at) = at {
        if !at.file.is_empty() {
            props.push(format!("file={}", escape_property(&at.file)));
        }
        if let Some(line) = at.line {
            props.push(format!("line={line}"));
        }
        if let Some(title) = &at.title {
            props.push(format!("title={}", escape_property(title)));
        }
    }
    let props = if props.is_empty() {
        String::new()
    } else {
        format!(" {}", props.join(","))
    };
    format!("::{}{}::{}", level.command(), props, escape_data(message))
}

fn emit(line: &str) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Emits an annotation when running in Actions.
pub fn annotation(level: Level, message: &str, at: Option<&Location>) {
    if in_github_actions() {
        emit(&format_annotation(level, message, at));
    }
}

/// Registers a value with the runner's log masker. Call before the value could be printed.
pub fn add_mask(value: &str) {
    if in_github_actions() && !value.is_empty() {
        for line in value.lines().filter(|l| !l.trim().is_empty()) {
            emit(&format!("::add-mask::{}", escape_data(line)));
        }
    }
}

/// A collapsible log group; ends when dropped.
#[derive(Debug)]
pub struct Group {
    active: bool,
}

/// Opens a collapsible log group in Actions (a no-op elsewhere).
pub fn group(title: &str) -> Group {
    let active = in_github_actions();
    if active {
        emit(&format!("::group::{}", escape_data(title)));
    }
    Group { active }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.active {
            emit("::endgroup::");
        }
    }
}

/// A heredoc delimiter that cannot occur in `value`.
fn delimiter_for(value: &str) -> String {
    let mut rng = rand::rng();
    loop {
        let d = format!("ghadelimiter_{:032x}", rng.random::<u128>());
        if !value.contains(&d) {
            return d;
        }
    }
}

/// Formats one `name<<DELIM ... DELIM` entry for `GITHUB_OUTPUT`.
pub fn format_output(name: &str, value: &str) -> String {
    let d = delimiter_for(value);
    format!("{name}<<{d}\n{value}\n{d}\n")
}

/// Appends a step output to `$GITHUB_OUTPUT` (no-op when unset).
pub fn set_output(name: &str, value: &str) -> std::io::Result<()> {
    match std::env::var_os("GITHUB_OUTPUT") {
        Some(path) if !path.is_empty() => append(Path::new(&path), &format_output(name, value)),
        _ => Ok(()),
    }
}

/// The job summary's size limit per step, in bytes.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Appends Markdown to `$GITHUB_STEP_SUMMARY` (no-op when unset). Callers keep within
/// [`SUMMARY_LIMIT`]; see `report::summary` for trimming.
pub fn append_summary(markdown: &str) -> std::io::Result<()> {
    match std::env::var_os("GITHUB_STEP_SUMMARY") {
        Some(path) if !path.is_empty() => append(Path::new(&path), markdown),
        _ => Ok(()),
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keeps_values_on_one_line() {
        assert_eq!(printable("plain [70-80)"), "plain [70-80)");
        let forged = "x\n::error::pwned\r\n\u{1b}[31m\u{2028}::warning::y";
        let shown = printable(forged);
        assert_eq!(shown.lines().count(), 1);
        assert_eq!(
            shown,
            "x\\n::error::pwned\\r\\n\\u{1b}[31m\\u{2028}::warning::y"
        );
    }

    #[test]
    fn escapes_data_and_properties() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn annotation_has_properties_in_order() {
        let at = Location {
            file: "src/x.rs".into(),
            line: Some(3),
            title: Some("T: 1".into()),
        };
        assert_eq!(
            format_annotation(Level::Warning, "bad\nthing", Some(&at)),
            "::warning file=src/x.rs,line=3,title=T%3A 1::bad%0Athing"
        );
        assert_eq!(format_annotation(Level::Error, "x", None), "::error::x");
    }

    #[test]
    fn output_delimiter_never_occurs_in_value() {
        let value = "line1\nghadelimiter_\nEOF";
        let entry = format_output("name", value);
        let first = entry.lines().next().unwrap();
        let delim = first.strip_prefix("name<<").unwrap();
        assert!(!value.contains(delim));
        assert!(entry.ends_with(&format!("\n{delim}\n")));
        assert_eq!(entry.lines().count(), 5);
    }
}
