//! Publishing results where reviewers look on GitHub: a check run with annotations from JUnit
//! XML, the job summary, one PR comment updated in place, step outputs and workflow-command
//! annotations.
//!
//! This module talks to the GitHub REST API through octocrab (its HTTP stack, auth and response
//! models) with the program's own retry policy (`retry::Backoff::GITHUB`), because honouring
//! secondary rate limits needs the response headers (`Retry-After`, `x-ratelimit-*`) that
//! octocrab's typed errors do not carry. It reads pipeline results as files (`run.json`, JUnit,
//! Markdown) and never imports the pipeline, the CLI or another domain module.

pub mod annotate;
pub mod api;
pub mod artifact;
pub mod checks;
pub mod comment;
pub mod context;
pub mod junit;
pub mod publish;
pub mod summary;

use std::path::PathBuf;

use crate::exit::{Diagnose, Exit};

pub use context::{CommentMode, EventInfo, Repo};
pub use publish::{PublishRequest, publish};

/// Errors of GitHub publishing.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JUnit XML: {reason}")]
    JunitInvalid { path: PathBuf, reason: String },
    #[error("{path} is not a valid run record: {reason}")]
    RunInvalid { path: PathBuf, reason: String },
    #[error("{path} is not a valid GitHub event payload: {reason}")]
    EventInvalid { path: PathBuf, reason: String },
    #[error("pull request #{pr} has head {found}, not the workflow run's commit {expected}")]
    PullRequestMismatch {
        pr: u64,
        expected: String,
        found: String,
    },
    #[error("{what} is not set")]
    Missing { what: &'static str, hint: String },
    #[error("{what}: GitHub answered {status}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: cannot reach GitHub: {reason}")]
    Transport { what: String, reason: String },
    #[error("{what}: unexpected response from GitHub: {reason}")]
    Decode { what: String, reason: String },
    #[error("cannot write {what}")]
    Write {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl GithubError {
    /// Whether the token was refused for writing (read-only tokens on fork pull requests).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, GithubError::Api { status: 403, .. })
    }
}

impl Diagnose for GithubError {
    fn exit(&self) -> Exit {
        match self {
            GithubError::ReadFile { .. }
            | GithubError::JunitInvalid { .. }
            | GithubError::RunInvalid { .. } => Exit::InvalidInput,
            GithubError::EventInvalid { .. }
            | GithubError::Missing { .. }
            | GithubError::PullRequestMismatch { .. } => Exit::Usage,
            GithubError::Api {
                status: 401 | 403 | 404 | 422,
                ..
            } => Exit::Usage,
            GithubError::Api { .. }
            | GithubError::Transport { .. }
            | GithubError::Decode { .. } => Exit::Infra,
            GithubError::Write { .. } => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            GithubError::ReadFile { .. } => {
                "check the --junit, --summary and --run-dir paths (the pipeline writes RUN_DIR/junit.xml and RUN_DIR/summary.md)".into()
            }
            GithubError::JunitInvalid { .. } => {
                "pass the JUnit XML written by `health-predict api-test --junit PATH`".into()
            }
            GithubError::RunInvalid { .. } => {
                "pass a run directory written by `health-predict pipeline run --run-dir DIR`".into()
            }
            GithubError::EventInvalid { .. } => {
                "GITHUB_EVENT_PATH must point at the runner's event JSON; unset it outside Actions".into()
            }
            GithubError::Missing { hint, .. } => hint.clone(),
            GithubError::PullRequestMismatch { .. } => {
                "the artifact's event.json names another pull request (or the PR moved on since): nothing was written to it; re-run the pull request's workflow".into()
            }
            GithubError::Api { status: 401, .. } => {
                "the token was rejected: pass `GITHUB_TOKEN: ${{ github.token }}` to the step".into()
            }
            GithubError::Api { status: 403, .. } => {
                "grant the job `permissions: {checks: write, pull-requests: write}` (fork pull requests get a read-only token and degrade to the job summary)".into()
            }
            GithubError::Api { status: 404, .. } => {
                "check GITHUB_REPOSITORY, GITHUB_SHA and GITHUB_API_URL (GitHub answers 404 when the token cannot see the repository)".into()
            }
            GithubError::Api { status: 422, .. } => {
                "GitHub refused the request's content; run with -v to see what was sent".into()
            }
            GithubError::Api { .. } | GithubError::Transport { .. } | GithubError::Decode { .. } => {
                "GitHub may be degraded (https://www.githubstatus.com); re-run the job".into()
            }
            GithubError::Write { .. } => {
                "check that $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY are writable".into()
            }
        })
    }
}
