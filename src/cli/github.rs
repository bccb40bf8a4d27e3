//! `report` commands: publish results to GitHub (check run, job summary, PR comment, outputs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{Context, env};
use crate::exit::{Exit, fail};
use crate::github::{CommentMode, EventInfo, PublishRequest, Repo, publish};
use crate::retry::Backoff;
use crate::secret::Secret;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Publish a run's results: JUnit as a check run with annotations, the job summary, one PR
    /// comment updated in place, step outputs and log annotations. Fork pull requests (read-only
    /// token) degrade to the summary and annotations without failing.
    Publish(PublishArgs),
    /// Write the run history as a static site: index.html lists every run (date, batch, drift
    /// share, decision, versions, AUC) under trend charts; runs/*.html show one run each.
    /// Inline SVG, no scripts: open it from an artifact or publish it to GitHub Pages.
    Html(HtmlArgs),
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Report")]
pub struct HtmlArgs {
    /// The run history: a pipeline state directory (reads STATE_DIR/history) or the history
    /// directory itself.
    #[arg(long, value_name = "DIR", env = env::REPORT_RUNS)]
    pub runs: PathBuf,
    /// Directory to write the site into (created; existing pages are replaced).
    #[arg(long, value_name = "SITE", env = env::REPORT_OUT)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Publish")]
pub struct PublishArgs {
    /// Run directory written by `pipeline run` (reads run.json, gate.json, metrics.json,
    /// drift/drift.json and, unless --junit is given, junit.xml).
    #[arg(long, value_name = "DIR", env = env::PUBLISH_RUN_DIR)]
    pub run_dir: Option<PathBuf>,
    /// A downloaded artifact of another workflow run holding its run directory (and optionally
    /// JUnit files and that run's `event.json`): for a `workflow_run` workflow that publishes
    /// fork pull requests' results with the base repository's token. Sets --run-dir.
    #[arg(long, value_name = "DIR", conflicts_with = "run_dir", env = env::PUBLISH_FROM_ARTIFACT)]
    pub from_artifact: Option<PathBuf>,
    /// The run history for the trend charts [default: the run's state directory, if present].
    #[arg(long, value_name = "DIR", env = env::PUBLISH_HISTORY)]
    pub history: Option<PathBuf>,
    /// JUnit XML files to publish (repeat or comma-separate; `*`, `?` and `**` globs).
    #[arg(long, value_name = "PATH", num_args = 1.., value_delimiter = ',', env = env::PUBLISH_JUNIT)]
    pub junit: Vec<PathBuf>,
    /// Extra Markdown appended to the report (e.g. RUN_DIR/summary.md).
    #[arg(long, value_name = "PATH", env = env::PUBLISH_SUMMARY)]
    pub summary: Option<PathBuf>,
    /// Check-run name; also keys the PR comment, so each name gets its own comment.
    #[arg(long, default_value = "health-predict", env = env::PUBLISH_CHECK_NAME)]
    pub check_name: String,
    /// When to write the PR comment.
    #[arg(long, value_enum, default_value_t = CommentMode::Auto, env = env::PUBLISH_COMMENT)]
    pub comment: CommentMode,
    /// Check-run annotations at most (sent 50 per request); the rest are counted, not sent.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000), env = env::PUBLISH_MAX_ANNOTATIONS)]
    pub max_annotations: u32,

    /// Token with `checks: write` and `pull-requests: write`.
    #[arg(long, hide = true, env = env::GITHUB_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// Repository, owner/name.
    #[arg(long, value_name = "OWNER/NAME", env = env::GITHUB_REPOSITORY)]
    pub repository: Option<String>,
    /// Commit the check run belongs to (a pull request's head commit is read from the event).
    #[arg(long, env = env::GITHUB_SHA)]
    pub sha: Option<String>,
    /// Event name (pull_request, push, schedule, ...).
    #[arg(long, hide = true, env = env::GITHUB_EVENT_NAME)]
    pub event_name: Option<String>,
    /// Event payload JSON written by the runner (pull request number, fork status).
    #[arg(long, value_name = "PATH", env = env::GITHUB_EVENT_PATH)]
    pub event_path: Option<PathBuf>,
    /// REST API base URL (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, default_value = "https://api.github.com", env = env::GITHUB_API_URL)]
    pub api_url: String,
    #[arg(long, hide = true, default_value = "https://github.com", env = env::GITHUB_SERVER_URL)]
    pub server_url: String,
    #[arg(long, hide = true, env = env::GITHUB_RUN_ID)]
    pub run_id: Option<String>,
    #[arg(long, hide = true, env = env::GITHUB_WORKSPACE)]
    pub workspace: Option<PathBuf>,
}

impl PublishArgs {
    /// The validated request.
    pub fn request(self) -> anyhow::Result<PublishRequest> {
        let repo = self
            .repository
            .filter(|r| !r.is_empty())
            .map(|r| r.parse::<Repo>())
            .transpose()
            .map_err(|e| {
                fail(
                    Exit::Usage,
                    format!("--repository / GITHUB_REPOSITORY: {e}"),
                    Some("use owner/name, e.g. octo-org/health-predict"),
                )
            })?;
        let mut event = EventInfo::load(self.event_name.as_deref(), self.event_path.as_deref())?;
        let mut run_dir = self.run_dir;
        let mut junit = crate::github::artifact::expand(&self.junit)?;
        if let Some(dir) = &self.from_artifact {
            let found = crate::github::artifact::locate(dir)?;
            if junit.is_empty() {
                junit = found.junit;
            }
            if let Some(ev) = &found.event
                && event.is_workflow_run()
            {
                event.adopt_artifact_event(ev)?;
            }
            run_dir = Some(found.run_dir);
        }
        let details_url = match (&repo, &self.run_id) {
            (Some(repo), Some(run)) if !run.is_empty() => Some(format!(
                "{}/{repo}/actions/runs/{run}",
                self.server_url.trim_end_matches('/')
            )),
            _ => None,
        };
        Ok(PublishRequest {
            run_dir,
            history: self.history,
            junit,
            summary: self.summary,
            check_name: self.check_name,
            comment: self.comment,
            repo,
            sha: self.sha.filter(|s| !s.is_empty()),
            token: self.token.filter(|t| !t.is_empty()).map(Secret::new),
            event,
            api_url: self.api_url,
            details_url,
            workspace: self.workspace.filter(|w| !w.as_os_str().is_empty()),
            max_annotations: self.max_annotations as usize,
            policy: Backoff::GITHUB,
        })
    }
}

pub async fn run(command: ReportCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        ReportCommand::Publish(args) => {
            let req = args.request()?;
            let mut report = publish(&req).await?;
            crate::output::emit(ctx.output, &report)?;
            match report.errors.drain(..).next() {
                Some(e) => Err(e.into()),
                None => Ok(report.exit),
            }
        }
        ReportCommand::Html(args) => {
            let dir = if args.runs.join("history").is_dir() {
                crate::report::history::dir(&args.runs)
            } else {
                args.runs.clone()
            };
            if !dir.is_dir() {
                return Err(fail(
                    Exit::Usage,
                    format!("--runs {}: no such directory", args.runs.display()),
                    Some(
                        "pass the pipeline's --state-dir (default .health-predict) or its history/ directory",
                    ),
                ));
            }
            let history = crate::report::history::load(&dir).map_err(|e| {
                let msg = crate::exit::chain_text(&e);
                fail(
                    Exit::InvalidInput,
                    msg,
                    Some("the history holds one JSON file per run written by `pipeline run`; move the named file away to skip it"),
                )
            })?;
            let site = crate::report::site::write(&history, &args.out, &dir.display().to_string())
                .map_err(|e| {
                    fail(
                        Exit::Failure,
                        format!("cannot write the site into {}: {e}", args.out.display()),
                        Some("check that --out is a writable directory"),
                    )
                })?;
            crate::output::emit(ctx.output, &site)?;
            Ok(Exit::Success)
        }
    }
}
