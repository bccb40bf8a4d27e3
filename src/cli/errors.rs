//! From an error to an exit code and a printed message: the one place that knows which domain
//! error types carry a diagnosis, and the one place the final error is printed.
//!
//! The codes, the [`Diagnose`] trait and the printer's format live in the leaf `crate::exit`, so
//! domains never import this module; the pipeline, which records each step's exit code, is
//! handed [`diagnose`] as an [`exit::Diagnoser`].

use std::process::ExitCode;

use crate::exit::{self, Diagnose, Diagnosis, Exit};

/// The exit code and hint for an error chain: the outermost classification wins.
pub fn diagnose(err: &anyhow::Error) -> Diagnosis {
    exit::diagnose_with(err, diagnose_known)
}

/// Domain error types that implement [`Diagnose`]. Add a module's error type here so its exit
/// class and hint reach the user wherever it sits in a cause chain.
fn diagnose_known(cause: &(dyn std::error::Error + 'static)) -> Option<Diagnosis> {
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

/// The lines printed for an error: `error: ...`, causes, `hint: ...`.
pub fn render(err: &anyhow::Error) -> String {
    let (_, hint) = diagnose(err);
    exit::render_with_hint(err, hint.as_deref())
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
    use crate::exit::{Classify, fail};

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

    #[test]
    fn a_domain_error_deep_in_the_chain_gives_its_exit_and_hint() {
        let domain = crate::registry::RegistryError::BadUri {
            uri: "ftp://x".into(),
        };
        let want = (domain.exit(), domain.hint());
        let err = anyhow::Error::new(domain).context("opening the registry");
        assert_eq!(diagnose(&err), want);
        assert_ne!(want.0, Exit::Failure);
        let text = render(&err);
        assert!(text.starts_with("error: opening the registry\n"), "{text}");
        assert!(text.contains("  caused by: "), "{text}");
        if let Some(h) = &want.1 {
            assert!(text.ends_with(&format!("hint: {h}\n")), "{text}");
        }
    }
}
