//! Exit codes and the one place errors are printed.
//!
//! Every command returns an [`Exit`] on success paths (a refused gate or failed tests are not
//! errors of the program, but they are not success either) or an error. Errors are printed once:
//! `error: ...`, the cause chain, then a `hint:` naming what to change.

use std::fmt;
use std::process::ExitCode;

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

/// The exit code and hint for an error chain: the outermost classification wins.
pub fn diagnose(err: &anyhow::Error) -> (Exit, Option<String>) {
    if let Some(mark) = err.downcast_ref::<Mark>() {
        return (mark.exit, mark.hint.clone());
    }
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return (c.exit, c.hint.clone());
        }
        if let Some(d) = diagnose_known(cause) {
            return d;
        }
    }
    (Exit::Failure, None)
}

/// Domain error types that implement [`Diagnose`]. Add a module's error type here so its exit
/// class and hint reach the user wherever it sits in a cause chain.
fn diagnose_known(cause: &(dyn std::error::Error + 'static)) -> Option<(Exit, Option<String>)> {
    macro_rules! known {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return Some((e.exit(), e.hint()));
            })*
        };
    }
    known!(
        crate::data::DataError,
        crate::model::ModelError,
        crate::data::split::SplitError,
        crate::drift::DriftError,
        crate::data::fetch::FetchError,
        crate::pipeline::config::ConfigError,
        crate::registry::RegistryError,
        crate::serve::ServeError,
        crate::apitest::ApiTestError,
        crate::github::GithubError,
        crate::kube::KubeError,
        crate::aws::AwsError,
        crate::oci::OciError,
        crate::container::ContainerError,
    );
    None
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

/// The lines printed for an error: `error: ...`, causes, `hint: ...`.
pub fn render(err: &anyhow::Error) -> String {
    let (_, hint) = diagnose(err);
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

/// Turns a command's outcome into the process exit code, printing an error once.
pub fn finish(result: anyhow::Result<Exit>) -> ExitCode {
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            let (exit, _) = diagnose(&err);
            let text = render(&err);
            eprint!("{text}");
            if crate::ci::in_github_actions() {
                let first = text.lines().next().unwrap_or("error");
                crate::ci::annotation(
                    crate::ci::Level::Error,
                    first.trim_start_matches("error: "),
                    None,
                );
            }
            ExitCode::from(exit.code())
        }
    }
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
        assert_eq!(diagnose(&err), (Exit::Infra, Some("free some disk".into())));
        let text = render(&err);
        assert!(text.starts_with("error: disk on fire\n"), "{text}");
        assert!(text.ends_with("hint: free some disk\n"), "{text}");
    }

    #[test]
    fn fail_is_found_under_context() {
        let err = fail(Exit::GateRefused, "refused", Some("add rows")).context("gate");
        assert_eq!(diagnose(&err).0, Exit::GateRefused);
        assert!(render(&err).contains("caused by: refused"));
    }
}
