//! Exit codes, the [`Diagnose`] trait domain errors implement, and the error printer's format.
//!
//! Every command returns an [`Exit`] on success paths (a refused gate or failed tests are not
//! errors of the program, but they are not success either) or an error. Errors are printed once:
//! `error: ...`, the cause chain, then a `hint:` naming what to change.
//!
//! A leaf: it imports nothing from this crate, so every module may use it. Which domain error
//! types carry a diagnosis, and printing the final error, belong to the top (`cli::errors`).

use std::fmt;

/// Documented process exit codes (see README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// Everything that was asked for was done and passed.
    Success,
    /// An unexpected failure not covered by a more specific code.
    Failure,
    /// Bad arguments, configuration or environment: fix the command line or config.
    Usage,
    /// The quality gate refused the candidate (SKIP or a refusal for missing evidence).
    GateRefused,
    /// Tests (API contract tests, verification checks) ran and at least one failed.
    TestsFailed,
    /// Infrastructure could not be reached or failed: network, cluster, AWS, registry, GitHub.
    Infra,
    /// Input data or a model file is invalid.
    InvalidInput,
    /// A deployment failed verification (and was rolled back when rollback was enabled).
    DeployFailed,
    /// Interrupted by Ctrl-C or SIGTERM; what was started has been cleaned up.
    Interrupted,
}

impl Exit {
    /// The numeric process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::GateRefused => 3,
            Exit::TestsFailed => 4,
            Exit::Infra => 5,
            Exit::InvalidInput => 6,
            Exit::DeployFailed => 7,
            Exit::Interrupted => 130,
        }
    }

    /// All codes, for documentation and tests.
    pub const ALL: [Exit; 9] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::GateRefused,
        Exit::TestsFailed,
        Exit::Infra,
        Exit::InvalidInput,
        Exit::DeployFailed,
        Exit::Interrupted,
    ];

    /// The exit for a numeric code (unknown codes are `Failure`).
    pub fn from_code(code: u8) -> Exit {
        Exit::ALL
            .into_iter()
            .find(|e| e.code() == code)
            .unwrap_or(Exit::Failure)
    }

    /// The worse of two outcomes: used when independent steps are collected before deciding.
    pub fn worst(self, other: Exit) -> Exit {
        if self == Exit::Success { other } else { self }
    }
}

/// An error that carries its exit code and a hint. Build it with [`fail`] or attach a
/// classification to any error with [`Classify`].
#[derive(Debug)]
pub struct Classified {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// A classified error without a source.
pub fn fail(exit: Exit, message: impl Into<String>, hint: Option<&str>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        exit,
        message: message.into(),
        hint: hint.map(str::to_owned),
    })
}

/// Errors of domain modules that know their exit class and what the user should change.
pub trait Diagnose: std::error::Error {
    fn exit(&self) -> Exit;
    fn hint(&self) -> Option<String> {
        None
    }
}

/// Marks an error chain with an exit code and hint without changing its message.
#[derive(Debug)]
struct Mark {
    exit: Exit,
    hint: Option<String>,
}

impl fmt::Display for Mark {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Attach an exit class and a hint to a result's error.
pub trait Classify<T> {
    fn classify(self, exit: Exit, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> Classify<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn classify(self, exit: Exit, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| {
            e.into().context(Mark {
                exit,
                hint: Some(hint.into()),
            })
        })
    }
}

/// An exit code and the hint to print with it.
pub type Diagnosis = (Exit, Option<String>);

/// Classifies an error chain. The function that knows every domain's error type lives at the top
/// (`cli::errors::diagnose`); code below it that must classify an error (the pipeline records
/// each step's exit code) is handed that function rather than importing it.
pub type Diagnoser = fn(&anyhow::Error) -> Diagnosis;

/// The exit code and hint for an error chain: the outermost classification wins. A [`Classify`]
/// mark on the chain, or a [`Classified`] error in it, is found here; `known` finds the domain
/// error types that implement [`Diagnose`] (this module imports none of them).
pub fn diagnose_with(
    err: &anyhow::Error,
    known: impl Fn(&(dyn std::error::Error + 'static)) -> Option<Diagnosis>,
) -> Diagnosis {
    if let Some(mark) = err.downcast_ref::<Mark>() {
        return (mark.exit, mark.hint.clone());
    }
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return (c.exit, c.hint.clone());
        }
        if let Some(d) = known(cause) {
            return d;
        }
    }
    (Exit::Failure, None)
}

/// An error and its causes on one line, `: `-separated, a cause whose text is already shown left
/// out (for messages built from library errors whose Display omits or repeats their source).
pub fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The lines printed for an error: `error: ...`, causes, `hint: ...` (the hint as the error's
/// diagnosis gave it; `cli::errors::render` diagnoses and prints).
pub fn render_with_hint(err: &anyhow::Error, hint: Option<&str>) -> String {
    let mut out = String::new();
    let mut first = true;
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        if first {
            out.push_str(&format!("error: {text}\n"));
            first = false;
        } else {
            out.push_str(&format!("  caused by: {text}\n"));
        }
    }
    if let Some(hint) = hint {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// The lines printed for a domain error whose type is known where it is handled.
pub fn render_diagnosed<E>(err: E) -> String
where
    E: Diagnose + Send + Sync + 'static,
{
    let hint = err.hint();
    render_with_hint(&anyhow::Error::new(err), hint.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_stable() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 130]);
        assert!(Exit::ALL.iter().all(|e| Exit::from_code(e.code()) == *e));
    }

    #[test]
    fn classify_sets_exit_and_hint_without_changing_message() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("disk on fire"));
        let err = r.classify(Exit::Infra, "free some disk").unwrap_err();
        let (exit, hint) = diagnose_with(&err, |_| None);
        assert_eq!(
            (exit, hint.as_deref()),
            (Exit::Infra, Some("free some disk"))
        );
        let text = render_with_hint(&err, hint.as_deref());
        assert!(text.starts_with("error: disk on fire\n"), "{text}");
        assert!(text.ends_with("hint: free some disk\n"), "{text}");
    }

    #[test]
    fn fail_is_found_under_context() {
        let err = fail(Exit::GateRefused, "refused", Some("add rows")).context("gate");
        assert_eq!(diagnose_with(&err, |_| None).0, Exit::GateRefused);
        assert!(render_with_hint(&err, None).contains("caused by: refused"));
    }
}
