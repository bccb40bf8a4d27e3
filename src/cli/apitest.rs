//! `api-test`: the contract suite against a running service, JUnit XML and a summary.

use std::path::PathBuf;
use std::time::Duration;

use crate::apitest::{ProxyMode, SuiteConfig};
use crate::cli::serve::parse_duration;
use crate::cli::{Context, env};
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct ApiTestArgs {
    /// The service's base URL, reachable from here (e.g. http://127.0.0.1:8000).
    #[arg(long, env = env::BASE_URL)]
    pub base_url: String,
    /// Write JUnit XML here (one testcase per check).
    #[arg(long, env = env::JUNIT)]
    pub junit: Option<PathBuf>,
    /// Fail unless /model-info reports this model version.
    #[arg(long, env = env::EXPECT_VERSION)]
    pub expect_version: Option<String>,
    /// How long to wait for /ready before testing.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = env::READY_TIMEOUT)]
    pub ready_timeout: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = env::REQUEST_TIMEOUT)]
    pub request_timeout: Duration,
    /// The p95 latency budget for single predictions.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, env = env::LATENCY_BUDGET)]
    pub latency_budget: Duration,
    /// Sequential requests measured for the latency budget.
    #[arg(long, default_value_t = 200, env = env::LATENCY_REQUESTS)]
    pub latency_requests: usize,
    /// Simultaneous requests in the concurrency check (4 rounds' worth are sent at once).
    #[arg(long, default_value_t = 16, env = env::CONCURRENCY)]
    pub concurrency: usize,
    /// Honour HTTP_PROXY/HTTPS_PROXY/ALL_PROXY (with NO_PROXY). By default connections are direct.
    #[arg(long, env = env::USE_ENV_PROXY)]
    pub use_env_proxy: bool,
}

impl ApiTestArgs {
    pub fn suite_config(&self) -> SuiteConfig {
        let mut c = SuiteConfig::new(&self.base_url);
        c.expect_version = self.expect_version.clone();
        c.ready_timeout = self.ready_timeout;
        c.request_timeout = self.request_timeout;
        c.latency_budget = self.latency_budget;
        c.latency_requests = self.latency_requests;
        c.concurrency = self.concurrency;
        c.proxy = if self.use_env_proxy {
            ProxyMode::FromEnv
        } else {
            ProxyMode::Direct
        };
        c
    }
}

pub async fn run(args: ApiTestArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let report = crate::apitest::run_suite(&args.suite_config()).await?;
    if let Some(path) = &args.junit {
        crate::apitest::write_junit(&report, path)?;
        tracing::info!(path = %path.display(), "JUnit report written");
    }
    for c in report.checks.iter().filter(|c| !c.passed) {
        if crate::ci::in_github_actions() {
            crate::ci::annotation(
                crate::ci::Level::Error,
                &format!("api-test {}: {}", c.name, c.message),
                None,
            );
        }
    }
    crate::output::emit(ctx.output, &report)?;
    Ok(report.exit())
}
