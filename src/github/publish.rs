//! `report publish`: every channel is attempted and its outcome recorded (collect, don't abort);
//! the exit code is decided at the end. A read-only token on a pull request (forks, Dependabot)
//! degrades to the job summary and annotations, says so, and does not fail.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::GithubError;
use super::annotate::{self, StepAnnotations};
use super::api::Api;
use super::checks::{self, CheckRunPlan};
use super::comment::{self, Action};
use super::context::{CommentMode, EventInfo, Repo};
use super::junit::{Counts, Results};
use super::summary::{self, Inputs, RunDir};
use crate::exit::{Diagnose, Exit};
use crate::output::Render;
use crate::retry::Backoff;
use crate::secret::Secret;

/// A validated `report publish` request.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub run_dir: Option<PathBuf>,
    /// The run history to draw trends from; `None`: the run's own state directory if present.
    pub history: Option<PathBuf>,
    pub junit: Vec<PathBuf>,
    pub summary: Option<PathBuf>,
    pub check_name: String,
    pub comment: CommentMode,
    pub repo: Option<Repo>,
    pub sha: Option<String>,
    pub token: Option<Secret>,
    pub event: EventInfo,
    pub api_url: String,
    /// Link for "Details" (the workflow run), when known.
    pub details_url: Option<String>,
    pub workspace: Option<PathBuf>,
    pub max_annotations: usize,
    pub policy: Backoff,
}

/// How one channel went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Published.
    Done { detail: String },
    /// Not attempted (nothing to do or not configured here).
    Skipped { reason: String },
    /// Could not publish for a known, acceptable reason (read-only token); reported elsewhere.
    Degraded { reason: String },
    /// Failed: the run fails at the end.
    Failed { error: String },
}

/// What `report publish` did, channel by channel.
#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub headline: String,
    pub conclusion: &'static str,
    pub tests: Option<Counts>,
    pub check_run: Outcome,
    pub check_run_url: Option<String>,
    pub check_run_requests: usize,
    pub annotations_sent: usize,
    pub annotations_truncated: usize,
    pub comment: Outcome,
    pub comment_url: Option<String>,
    pub job_summary: Outcome,
    pub summary_trimmed_bytes: usize,
    pub step_annotations: usize,
    pub failures_not_annotated_in_log: usize,
    pub outputs: Outcome,
    pub exit: Exit,
    /// The first failure, returned to the caller for its hint.
    #[serde(skip)]
    pub errors: Vec<GithubError>,
}

impl Render for PublishReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{} ({})", self.headline, self.conclusion)?;
        let line = |o: &Outcome| match o {
            Outcome::Done { detail } => format!("done: {detail}"),
            Outcome::Skipped { reason } => format!("skipped: {reason}"),
            Outcome::Degraded { reason } => format!("degraded: {reason}"),
            Outcome::Failed { error } => format!("FAILED: {error}"),
        };
        writeln!(out, "  check run:   {}", line(&self.check_run))?;
        writeln!(out, "  PR comment:  {}", line(&self.comment))?;
        writeln!(out, "  job summary: {}", line(&self.job_summary))?;
        writeln!(out, "  outputs:     {}", line(&self.outputs))?;
        writeln!(
            out,
            "  annotations: {} in the step log, {} on the check run, {} failures left out of the check run",
            self.step_annotations, self.annotations_sent, self.annotations_truncated
        )
    }
}

/// The check-run conclusion from the results: failures fail, a refused gate is neutral, and no
/// evidence at all is neutral too (never "success" without something that passed).
fn conclusion(run: Option<&RunDir>, tests: Option<&Results>) -> &'static str {
    let failed = tests.is_some_and(|t| t.failures().next().is_some());
    let exit = run.map(|r| r.run.exit_code);
    if failed || matches!(exit, Some(c) if c != 0 && c != 3) {
        "failure"
    } else if exit == Some(3) {
        "neutral"
    } else if tests.is_some_and(|t| t.counts().passed > 0) || exit == Some(0) {
        "success"
    } else {
        "neutral"
    }
}

/// Publishes everything it can. Input errors (unreadable files) are returned; channel failures
/// are recorded in the report with the exit code they imply.
pub async fn publish(req: &PublishRequest) -> Result<PublishReport, GithubError> {
    let run = req
        .run_dir
        .as_deref()
        .map(|d| RunDir::load(d, req.history.as_deref()))
        .transpose()?;
    let mut junit = req.junit.clone();
    if junit.is_empty()
        && let Some(dir) = &req.run_dir
        && dir.join("junit.xml").is_file()
    {
        junit.push(dir.join("junit.xml"));
    }
    let tests = if junit.is_empty() {
        None
    } else {
        Some(Results::read_all(&junit)?)
    };
    // The run's own summary.md is this same report: appending it would show everything twice.
    let own_summary = |p: &std::path::Path| {
        req.run_dir
            .as_ref()
            .is_some_and(|d| same_file(&d.join("summary.md"), p))
    };
    let extra = req
        .summary
        .as_deref()
        .filter(|p| !own_summary(p))
        .map(|p| {
            std::fs::read_to_string(p).map_err(|source| GithubError::ReadFile {
                path: p.to_owned(),
                source,
            })
        })
        .transpose()?;
    if run.is_none() && tests.is_none() && extra.is_none() {
        return Err(GithubError::Missing {
            what: "anything to publish",
            hint: "pass --run-dir DIR (from `pipeline run`), --junit PATH or --summary PATH".into(),
        });
    }

    let inputs = Inputs {
        run: run.as_ref(),
        tests: tests.as_ref(),
        extra: extra.as_deref(),
        link: req.details_url.as_deref(),
        check_name: &req.check_name,
    };
    let markdown = summary::render(&inputs);
    let headline = summary::headline(&inputs);
    let conclusion = conclusion(run.as_ref(), tests.as_ref());
    let empty = Results::default();
    let results = tests.as_ref().unwrap_or(&empty);
    let workspace = req.workspace.as_deref();

    let mut report = PublishReport {
        headline: headline.clone(),
        conclusion,
        tests: tests.as_ref().map(Results::counts),
        check_run: skipped(""),
        check_run_url: None,
        check_run_requests: 0,
        annotations_sent: 0,
        annotations_truncated: 0,
        comment: skipped(""),
        comment_url: None,
        job_summary: skipped(""),
        summary_trimmed_bytes: 0,
        step_annotations: 0,
        failures_not_annotated_in_log: 0,
        outputs: skipped(""),
        exit: Exit::Success,
        errors: Vec::new(),
    };

    // GitHub API channels need a token, a repository and a commit.
    let api = match (&req.token, &req.repo) {
        (Some(token), Some(_)) if !token.is_empty() => {
            match Api::new(&req.api_url, token, req.policy) {
                Ok(api) => Some(api),
                Err(e) => {
                    report.check_run = failed(&e);
                    report.errors.push(e);
                    None
                }
            }
        }
        _ => None,
    };
    let mut read_only = false;
    let mut warnings = Vec::new();

    // 1. Check run.
    let sha = req.event.head_sha.clone().or_else(|| req.sha.clone());
    match (&api, &req.repo, &sha) {
        (Some(api), Some(repo), Some(sha)) => {
            let (annotations, truncated) =
                annotate::check_annotations(results, req.max_annotations, workspace);
            report.annotations_truncated = truncated;
            let mut summary_md = format!("**{headline}**\n");
            if truncated > 0 {
                summary_md.push_str(&format!(
                    "\n{truncated} more failed tests are not annotated (limit {}); the job summary lists them.\n",
                    req.max_annotations
                ));
            }
            let plan = CheckRunPlan {
                name: req.check_name.clone(),
                head_sha: sha.clone(),
                title: headline.clone(),
                summary: summary_md,
                text: Some(markdown.clone()),
                conclusion,
                annotations,
                details_url: req.details_url.clone(),
            };
            match checks::publish(api, repo, &plan).await {
                Ok(p) => {
                    report.check_run = Outcome::Done {
                        detail: format!(
                            "check run {} ({conclusion}) with {} annotations in {} requests",
                            p.id, p.annotations, p.requests
                        ),
                    };
                    report.check_run_url = p.html_url;
                    report.check_run_requests = p.requests;
                    report.annotations_sent = p.annotations;
                }
                Err(e) if e.is_forbidden() && req.event.is_pull_request() => {
                    read_only = true;
                    let why = read_only_reason(&req.event);
                    warnings.push(format!(
                        "{why}: the check run was not created; results are in the job summary and these annotations"
                    ));
                    report.check_run = Outcome::Degraded {
                        reason: format!("{why} ({e})"),
                    };
                }
                Err(e) => {
                    report.check_run = failed(&e);
                    report.errors.push(e);
                }
            }
        }
        _ => {
            report.check_run = skipped(&missing_for_api(req, sha.is_some()));
        }
    }

    // 2. PR comment.
    let want_comment = match req.comment {
        CommentMode::Never => false,
        CommentMode::Auto => req.event.is_pull_request(),
        CommentMode::Always => true,
    };
    if !want_comment {
        report.comment = skipped(match req.comment {
            CommentMode::Never => "--comment never",
            _ => "not a pull request event",
        });
    } else if read_only {
        report.comment = Outcome::Degraded {
            reason: format!("{}: comment not written", read_only_reason(&req.event)),
        };
    } else {
        match (&api, &req.repo, req.event.pr_number) {
            (Some(api), Some(repo), Some(pr)) => {
                let marker = comment::marker(&req.check_name);
                let verified = if req.event.pr_unverified {
                    verify_pull_request(api, repo, pr, sha.as_deref()).await
                } else {
                    Ok(())
                };
                let upserted = match verified {
                    Ok(()) => comment::upsert(api, repo, pr, &marker, &markdown).await,
                    Err(e) => Err(e),
                };
                match upserted {
                    Ok(c) => {
                        report.comment = Outcome::Done {
                            detail: format!(
                                "{} comment {} on #{pr}",
                                match c.action {
                                    Action::Created => "created",
                                    Action::Updated => "updated",
                                },
                                c.id
                            ),
                        };
                        report.comment_url = Some(c.url);
                    }
                    Err(e) if e.is_forbidden() => {
                        let why = read_only_reason(&req.event);
                        warnings.push(format!("{why}: the PR comment was not written"));
                        report.comment = Outcome::Degraded {
                            reason: format!("{why} ({e})"),
                        };
                    }
                    Err(e) => {
                        report.comment = failed(&e);
                        report.errors.push(e);
                    }
                }
            }
            (_, _, None) => {
                let e = GithubError::Missing {
                    what: "a pull request number",
                    hint: "--comment always needs a pull_request event (GITHUB_EVENT_PATH); use --comment auto elsewhere".into(),
                };
                report.comment = failed(&e);
                report.errors.push(e);
            }
            _ => report.comment = skipped(&missing_for_api(req, true)),
        }
    }

    // 3. Job summary (always, when the runner gives us the file).
    let full_at = req
        .run_dir
        .as_ref()
        .map(|d| format!("`{}` (run directory)", d.join("summary.md").display()))
        .or_else(|| report.check_run_url.clone());
    let fitted = crate::report::fit(&markdown, crate::ci::SUMMARY_LIMIT, full_at.as_deref());
    report.summary_trimmed_bytes = fitted.dropped_bytes;
    if fitted.trimmed() {
        warnings.push(format!(
            "the job summary was trimmed by {} bytes to stay under GitHub's 1 MiB limit",
            fitted.dropped_bytes
        ));
    }
    report.job_summary = match std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        None => skipped("GITHUB_STEP_SUMMARY is not set (not in GitHub Actions)"),
        Some(_) => match crate::ci::append_summary(&fitted.text) {
            Ok(()) => Outcome::Done {
                detail: format!(
                    "{} bytes{}",
                    fitted.text.len(),
                    if fitted.trimmed() { " (trimmed)" } else { "" }
                ),
            },
            Err(source) => {
                let e = GithubError::Write {
                    what: "the job summary ($GITHUB_STEP_SUMMARY)".into(),
                    source,
                };
                let o = failed(&e);
                report.errors.push(e);
                o
            }
        },
    };

    // 4. Workflow-command annotations in the step log.
    let see_also = match &report.check_run_url {
        Some(url) => format!("see the check run {url} and the job summary"),
        None => "see the job summary".to_owned(),
    };
    let step = StepAnnotations::plan(results, &warnings, workspace, &see_also);
    step.emit();
    report.step_annotations = if crate::ci::in_github_actions() {
        step.lines.len()
    } else {
        0
    };
    report.failures_not_annotated_in_log = step.failures_not_annotated;
    for w in &warnings {
        tracing::warn!("{w}");
    }

    // 5. Step outputs.
    report.outputs = match write_outputs(&report) {
        Ok(true) => Outcome::Done {
            detail: "written to $GITHUB_OUTPUT".into(),
        },
        Ok(false) => skipped("GITHUB_OUTPUT is not set (not in GitHub Actions)"),
        Err(source) => {
            let e = GithubError::Write {
                what: "step outputs ($GITHUB_OUTPUT)".into(),
                source,
            };
            let o = failed(&e);
            report.errors.push(e);
            o
        }
    };

    // Publishing failures first; then the results themselves: failed tests fail this step too,
    // so a green publish never sits next to red results.
    report.exit = report
        .errors
        .iter()
        .fold(Exit::Success, |acc, e| acc.worst(e.exit()));
    if results.failures().next().is_some() {
        report.exit = report.exit.worst(Exit::TestsFailed);
    }
    Ok(report)
}

/// The head commit of pull request `pr` as GitHub reports it.
#[derive(serde::Deserialize)]
struct PullHead {
    head: PullSha,
}

#[derive(serde::Deserialize)]
struct PullSha {
    sha: String,
}

/// A PR number read from an artifact is only trusted when GitHub says that PR's head is the
/// commit the workflow run built: otherwise a fork could steer the comment onto any PR.
async fn verify_pull_request(
    api: &Api,
    repo: &Repo,
    pr: u64,
    sha: Option<&str>,
) -> Result<(), GithubError> {
    let pull: PullHead = api
        .call(
            "read the pull request",
            http::Method::GET,
            &format!("/repos/{}/{}/pulls/{pr}", repo.owner, repo.name),
            None::<&()>,
        )
        .await?;
    if Some(pull.head.sha.as_str()) == sha {
        Ok(())
    } else {
        Err(GithubError::PullRequestMismatch {
            pr,
            expected: sha.unwrap_or("(none)").to_owned(),
            found: pull.head.sha,
        })
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write_outputs(r: &PublishReport) -> std::io::Result<bool> {
    if std::env::var_os("GITHUB_OUTPUT").is_none_or(|p| p.is_empty()) {
        return Ok(false);
    }
    let status = |o: &Outcome| match o {
        Outcome::Done { .. } => "done",
        Outcome::Skipped { .. } => "skipped",
        Outcome::Degraded { .. } => "degraded",
        Outcome::Failed { .. } => "failed",
    };
    let counts = r.tests.unwrap_or_default();
    let pairs = [
        ("conclusion", r.conclusion.to_owned()),
        ("check-run", status(&r.check_run).to_owned()),
        ("check-run-url", r.check_run_url.clone().unwrap_or_default()),
        ("comment", status(&r.comment).to_owned()),
        ("comment-url", r.comment_url.clone().unwrap_or_default()),
        ("summary-trimmed-bytes", r.summary_trimmed_bytes.to_string()),
        ("annotations-truncated", r.annotations_truncated.to_string()),
        ("tests-passed", counts.passed.to_string()),
        ("tests-failed", (counts.failed + counts.errored).to_string()),
        ("tests-skipped", counts.skipped.to_string()),
    ];
    for (k, v) in pairs {
        crate::ci::set_output(k, &v)?;
    }
    Ok(true)
}

fn skipped(reason: &str) -> Outcome {
    Outcome::Skipped {
        reason: reason.to_owned(),
    }
}

fn failed(e: &GithubError) -> Outcome {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    Outcome::Failed { error: text }
}

fn read_only_reason(event: &EventInfo) -> &'static str {
    if event.from_fork {
        "pull request from a fork: GITHUB_TOKEN is read-only"
    } else {
        "GITHUB_TOKEN is read-only for this pull request"
    }
}

fn missing_for_api(req: &PublishRequest, have_sha: bool) -> String {
    let mut missing = Vec::new();
    if req.token.as_ref().is_none_or(Secret::is_empty) {
        missing.push("GITHUB_TOKEN");
    }
    if req.repo.is_none() {
        missing.push("GITHUB_REPOSITORY");
    }
    if !have_sha {
        missing.push("GITHUB_SHA");
    }
    format!("{} not set", missing.join(", "))
}
