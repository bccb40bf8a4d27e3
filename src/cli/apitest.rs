//! `api-test`: the contract suite against a running service, JUnit XML and a summary.

use std::path::PathBuf;
use std::time::Duration;

use crate::apitest::{ProxyMode, SuiteConfig};
use crate::cli::serve::parse_duration;
use crate::cli::{Context, env};
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["base_url", "k8s_service"])))]
pub struct ApiTestArgs {
    /// The service's base URL, reachable from here (e.g. http://127.0.0.1:8000).
    #[arg(long, env = env::BASE_URL)]
    pub base_url: Option<String>,
    /// Test a Kubernetes Service instead of a URL: reached through the API server's port-forward
    /// (works from any runner with a kubeconfig; no NodePort, ClusterIP routing or proxy).
    #[arg(long, env = env::K8S_SERVICE)]
    pub k8s_service: Option<String>,
    /// How to reach --k8s-service.
    #[arg(long, value_enum, default_value_t = K8sMode::PortForward, requires = "k8s_service")]
    pub k8s_mode: K8sMode,
    /// Namespace of --k8s-service.
    #[arg(long, default_value = "health-predict", env = env::NAMESPACE)]
    pub namespace: String,
    /// The Service port (port-forward and cluster-dns modes).
    #[arg(long, default_value_t = 80)]
    pub service_port: u16,
    /// The host and nodePort for --k8s-mode node-port (kind maps the nodePort to the host
    /// through kind-config/).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_host: String,
    #[arg(long, default_value_t = crate::kube::cluster::NODE_PORT)]
    pub node_port: u16,
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

/// How `api-test --k8s-service` reaches the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum K8sMode {
    /// Through the API server (kube-rs port-forward) to a ready pod behind the Service.
    PortForward,
    /// `http://NODE_HOST:NODE_PORT` (a NodePort published on the host).
    NodePort,
    /// `http://SERVICE.NAMESPACE.svc.cluster.local:PORT`, for runs inside the cluster.
    ClusterDns,
}

impl ApiTestArgs {
    /// The suite's settings for a base URL (the given one, or a forwarded one).
    pub fn suite_config_for(&self, base_url: &str) -> SuiteConfig {
        let mut c = SuiteConfig::new(base_url);
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
    // The forward (when used) lives until the suite is done.
    let mut _forward = None;
    let base_url = match (&args.base_url, &args.k8s_service) {
        (Some(url), _) => url.clone(),
        (None, Some(svc)) => match args.k8s_mode {
            K8sMode::PortForward => {
                let client = crate::kube::client().await?;
                let handle = crate::kube::forward::forward_service(
                    client,
                    &args.namespace,
                    svc,
                    args.service_port,
                )
                .await?;
                let url = handle.base_url().to_owned();
                tracing::info!(service = %svc, namespace = %args.namespace, %url, "port-forward through the API server");
                _forward = Some(handle);
                url
            }
            K8sMode::NodePort => {
                crate::kube::forward::node_port_url(&args.node_host, args.node_port)
            }
            K8sMode::ClusterDns => {
                crate::kube::forward::cluster_dns_url(svc, &args.namespace, args.service_port)
            }
        },
        (None, None) => unreachable!("clap requires --base-url or --k8s-service"),
    };
    let report = crate::apitest::run_suite(&args.suite_config_for(&base_url)).await?;
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
