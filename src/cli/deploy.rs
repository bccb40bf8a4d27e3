//! `deploy`, `verify`, `rollback` and `cluster`: arguments into `crate::kube` requests, results
//! onto stdout, events and logs into a collapsible group in GitHub Actions.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::ci;
use crate::cli::{Context, env};
use crate::exit::{Exit, fail};
use crate::kube::cluster::{self, ClusterRequest, Provider};
use crate::kube::deploy::{
    self, DeployPlan, DeployReport, DeployRequest, RollbackOutcome, RollbackRequest,
};
use crate::kube::forward::KubeForwarder;
use crate::kube::manifests;
use crate::kube::verify::{self, VerifyReport, VerifyRequest};
use crate::output::{Render, emit};

/// Which Deployment.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Namespace of the Deployment.
    #[arg(long, short = 'n', env = env::K8S_NAMESPACE, default_value = manifests::DEFAULT_NAMESPACE)]
    pub namespace: String,
}

/// How to verify.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyOpts {
    /// Give up on a rollout that tells no reason within this many seconds.
    #[arg(long, env = env::K8S_VERIFY_TIMEOUT, default_value_t = 180, value_name = "SECONDS")]
    pub timeout: u64,
    /// Check that `/model-info` through the Service reports this version (port-forward).
    #[arg(long, env = env::K8S_EXPECT_VERSION)]
    pub expect_version: Option<String>,
    /// Readiness-probe failures of one pod that fail the rollout.
    #[arg(long, env = env::K8S_READINESS_FAILURES, default_value_t = 5)]
    pub readiness_failures: i32,
    /// The Service to reach for `/model-info`.
    #[arg(long, env = env::K8S_SERVICE, default_value = manifests::APP)]
    pub service: String,
    /// The Service port.
    #[arg(long, default_value_t = 80)]
    pub service_port: u16,
}

impl VerifyOpts {
    fn request(&self, namespace: &str, deployment: &str) -> VerifyRequest {
        let mut r = VerifyRequest::new(namespace, deployment);
        r.timeout = Duration::from_secs(self.timeout.max(1));
        r.expected_version = self.expect_version.clone();
        r.readiness_failures = self.readiness_failures.max(1);
        r.service = self.service.clone();
        r.service_port = self.service_port;
        r
    }
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The image to run: REGISTRY/REPO@sha256:DIGEST or a unique tag (never :latest).
    #[arg(long, env = env::K8S_IMAGE)]
    pub image: String,
    #[command(flatten)]
    pub target: Target,
    /// Recorded as kubernetes.io/change-cause (default: the image, and the workflow run in CI).
    #[arg(long, env = env::K8S_CHANGE_CAUSE)]
    pub change_cause: Option<String>,
    /// Roll back to the previous ReplicaSet template when verify fails.
    #[arg(long, env = env::K8S_ROLLBACK_ON_FAILURE, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub rollback_on_failure: bool,
    /// Apply only; do not watch the rollout.
    #[arg(long)]
    pub no_verify: bool,
    /// Also apply the ECR refresher CronJob and its RBAC (k8s/ecr-refresher.yaml); needs
    /// --ecr-role-arn and --aws-region.
    #[arg(long)]
    pub ecr_refresher: bool,
    /// The IAM role the refresher CronJob assumes through web identity.
    #[arg(long, env = env::ECR_ROLE_ARN, requires = "ecr_refresher")]
    pub ecr_role_arn: Option<String>,
    /// The registry's AWS region, for the refresher CronJob.
    #[arg(long, env = env::AWS_REGION)]
    pub aws_region: Option<String>,
    /// How the Service is exposed: cluster-ip (in-cluster only) or node-port (30080 on every
    /// node: for kind, whose port mapping publishes it on the host).
    #[arg(long, value_enum, env = env::SERVICE_TYPE, default_value = "cluster-ip")]
    pub service_type: manifests::ServiceType,
    #[command(flatten)]
    pub verify: VerifyOpts,
}

fn default_change_cause(image: &str) -> String {
    match (
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        (Ok(repo), Ok(run)) => format!("health-predict deploy {image} (run {repo}#{run})"),
        _ => format!("health-predict deploy {image}"),
    }
}

/// Events and logs of a rollout: diagnostics, not data, so on stderr with the group markers
/// whatever the output format.
fn print_details(report: Option<&VerifyReport>) {
    let Some(report) = report else {
        return;
    };
    let failure = report.failure.as_ref();
    if report.events.is_empty() && failure.is_none_or(|f| f.logs.is_empty()) {
        return;
    }
    let _group = ci::group(&format!(
        "events and logs: {}/{}",
        report.namespace, report.deployment
    ));
    let mut out = std::io::stderr().lock();
    for e in &report.events {
        let _ = writeln!(out, "  event: {e}");
    }
    if let Some(f) = failure {
        for l in &f.logs {
            let _ = writeln!(out, "  log {}: {l}", f.pod.as_deref().unwrap_or(""));
        }
    }
}

fn annotate(report: &VerifyReport) {
    if let Some(f) = &report.failure {
        ci::annotation(
            ci::Level::Error,
            &format!(
                "verify {}/{}: {} (hint: {})",
                report.namespace, report.deployment, f.message, f.hint
            ),
            None,
        );
    }
}

fn verify_lines(out: &mut dyn Write, label: &str, v: &VerifyReport) -> std::io::Result<()> {
    let secs = v.elapsed_ms as f64 / 1000.0;
    if v.passed {
        write!(
            out,
            "{label}: passed in {secs:.1}s (revision {}, image {})",
            v.revision.as_deref().unwrap_or("?"),
            v.image.as_deref().unwrap_or("?")
        )?;
        match &v.model_version {
            Some(m) => writeln!(out, ", /model-info version {m}"),
            None => writeln!(out),
        }
    } else if let Some(f) = &v.failure {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        writeln!(
            out,
            "{label}: FAILED after {secs:.1}s [{kind}] {}",
            f.message
        )?;
        writeln!(out, "  hint: {}", f.hint)
    } else {
        writeln!(out, "{label}: FAILED after {secs:.1}s")
    }
}

impl Render for DeployReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let changed: Vec<String> = self
            .deploy
            .applied
            .iter()
            .map(|a| {
                format!(
                    "{} {}{}",
                    a.kind,
                    a.name,
                    if a.changed { "" } else { " (unchanged)" }
                )
            })
            .collect();
        writeln!(
            out,
            "applied in {}: {} (image {})",
            self.deploy.namespace,
            changed.join(", "),
            self.deploy.image
        )?;
        if let Some(v) = &self.verify {
            verify_lines(out, "verify", v)?;
        }
        if let Some(r) = &self.rollback {
            match (&r.outcome, &r.error) {
                (Some(o), _) => writeln!(
                    out,
                    "rolled back to revision {} (image {})",
                    o.to_revision,
                    o.to_image.as_deref().unwrap_or("?")
                )?,
                (None, Some(e)) => writeln!(out, "rollback FAILED: {e}")?,
                _ => {}
            }
            if let Some(v) = &r.verify {
                verify_lines(out, "rollback verify", v)?;
            }
        }
        Ok(())
    }
}

impl Render for VerifyReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        verify_lines(
            out,
            &format!("verify {}/{}", self.namespace, self.deployment),
            self,
        )
    }
}

async fn client() -> anyhow::Result<::kube::Client> {
    Ok(crate::kube::client().await?)
}

pub async fn deploy(args: DeployArgs, ctx: &Context) -> anyhow::Result<Exit> {
    deploy::check_image(&args.image)?;
    let client = client().await?;
    let plan = DeployPlan {
        deploy: DeployRequest {
            namespace: args.target.namespace.clone(),
            change_cause: args
                .change_cause
                .clone()
                .unwrap_or_else(|| default_change_cause(&args.image)),
            image: args.image.clone(),
            ecr_refresher: args.ecr_refresher.then(|| manifests::Refresher {
                role_arn: args.ecr_role_arn.clone().unwrap_or_default(),
                region: args.aws_region.clone().unwrap_or_default(),
            }),
            service_type: args.service_type,
            manifests: manifests::bundled()?,
        },
        verify: (!args.no_verify)
            .then(|| args.verify.request(&args.target.namespace, manifests::APP)),
        rollback_on_failure: args.rollback_on_failure,
    };
    let forwarder = KubeForwarder {
        client: client.clone(),
    };
    let report = deploy::deploy_verified(&client, &plan, Some(&forwarder)).await?;
    print_details(report.verify.as_ref());
    if let Some(v) = &report.verify {
        annotate(v);
    }
    emit(ctx.output, &report)?;
    let _ = ci::set_output(
        "deploy-passed",
        if report.passed { "true" } else { "false" },
    );
    Ok(if report.passed {
        Exit::Success
    } else {
        Exit::DeployFailed
    })
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: Target,
    /// The Deployment to watch.
    #[arg(long, default_value = manifests::APP)]
    pub deployment: String,
    #[command(flatten)]
    pub verify: VerifyOpts,
}

pub async fn verify(args: VerifyArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let client = client().await?;
    let req = args
        .verify
        .request(&args.target.namespace, &args.deployment);
    let forwarder = KubeForwarder {
        client: client.clone(),
    };
    let report = verify::verify(&client, &req, Some(&forwarder)).await?;
    print_details(Some(&report));
    annotate(&report);
    emit(ctx.output, &report)?;
    Ok(if report.passed {
        Exit::Success
    } else {
        Exit::DeployFailed
    })
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: Target,
    /// The Deployment to roll back.
    #[arg(long, default_value = manifests::APP)]
    pub deployment: String,
    /// Roll back to this revision (default: the previous template).
    #[arg(long)]
    pub to_revision: Option<i64>,
    /// Do not verify the rolled-back Deployment.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub verify: VerifyOpts,
}

/// The result of `rollback`.
#[derive(Debug, Serialize)]
struct RollbackCommandReport {
    rollback: RollbackOutcome,
    verify: Option<VerifyReport>,
}

impl Render for RollbackCommandReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "rolled back {}/{} to revision {} (image {})",
            self.rollback.namespace,
            self.rollback.deployment,
            self.rollback.to_revision,
            self.rollback.to_image.as_deref().unwrap_or("?")
        )?;
        if let Some(v) = &self.verify {
            verify_lines(out, "verify", v)?;
        }
        Ok(())
    }
}

pub async fn rollback(args: RollbackArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let client = client().await?;
    let outcome = deploy::rollback(
        &client,
        &RollbackRequest {
            namespace: args.target.namespace.clone(),
            deployment: args.deployment.clone(),
            to_revision: args.to_revision,
        },
    )
    .await?;
    let verify = if args.no_verify {
        None
    } else {
        let req = args
            .verify
            .request(&args.target.namespace, &args.deployment);
        let forwarder = KubeForwarder {
            client: client.clone(),
        };
        Some(verify::verify(&client, &req, Some(&forwarder)).await?)
    };
    print_details(verify.as_ref());
    if let Some(v) = &verify {
        annotate(v);
    }
    let passed = verify.as_ref().is_none_or(|v| v.passed);
    emit(
        ctx.output,
        &RollbackCommandReport {
            rollback: outcome,
            verify,
        },
    )?;
    Ok(if passed {
        Exit::Success
    } else {
        Exit::DeployFailed
    })
}

/// Which local cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterOpts {
    /// The cluster CLI to drive.
    #[arg(long, value_enum, env = env::CLUSTER_PROVIDER, default_value_t = Provider::Kind)]
    pub provider: Provider,
    /// Cluster (kind) or profile (minikube) name.
    #[arg(long, env = env::CLUSTER_NAME, default_value = "health-predict")]
    pub name: String,
    /// Where cluster logs are exported when something fails.
    #[arg(long, env = env::CLUSTER_LOGS_DIR, default_value = "cluster-logs")]
    pub logs_dir: PathBuf,
}

impl ClusterOpts {
    fn request(&self) -> anyhow::Result<ClusterRequest> {
        let tool = cluster::find_program(self.provider.program()).ok_or_else(|| {
            fail(
                Exit::Usage,
                format!("`{}` is not on PATH", self.provider.program()),
                Some(self.provider.install_hint()),
            )
        })?;
        Ok(ClusterRequest::new(
            self.provider,
            tool,
            &self.name,
            self.logs_dir.clone(),
        ))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Create the cluster (kind: with the port mappings of kind-config/kind.yaml), with retries.
    Up {
        #[command(flatten)]
        opts: ClusterOpts,
        /// A kind cluster config (default: the bundled kind-config/kind.yaml).
        #[arg(long, env = env::CLUSTER_CONFIG)]
        config: Option<PathBuf>,
    },
    /// Delete the cluster.
    Down {
        #[command(flatten)]
        opts: ClusterOpts,
    },
    /// Load a local image into the cluster's nodes.
    LoadImage {
        #[command(flatten)]
        opts: ClusterOpts,
        /// The image to load (warns on :latest with kind).
        #[arg(long, env = env::K8S_IMAGE)]
        image: String,
    },
    /// Check the CLIs, the cluster, its port mappings and the API server.
    Doctor {
        #[command(flatten)]
        opts: ClusterOpts,
    },
}

pub async fn cluster(command: ClusterCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        ClusterCommand::Up { opts, config } => {
            let mut req = opts.request()?;
            req.config = config;
            let report = cluster::up(&req).await?;
            emit(ctx.output, &report)?;
            Ok(Exit::Success)
        }
        ClusterCommand::Down { opts } => {
            let report = cluster::down(&opts.request()?).await?;
            emit(ctx.output, &report)?;
            Ok(Exit::Success)
        }
        ClusterCommand::LoadImage { opts, image } => {
            let report = cluster::load_image(&opts.request()?, &image).await?;
            for w in &report.warnings {
                ci::annotation(ci::Level::Warning, w, None);
            }
            emit(ctx.output, &report)?;
            Ok(Exit::Success)
        }
        ClusterCommand::Doctor { opts } => {
            let provider = opts.provider;
            let req = match opts.request() {
                Ok(r) => r,
                Err(_) => ClusterRequest::new(
                    provider,
                    PathBuf::from(provider.program()),
                    &opts.name,
                    opts.logs_dir.clone(),
                ),
            };
            let report = cluster::doctor(&req).await;
            emit(ctx.output, &report)?;
            Ok(if report.ok() {
                Exit::Success
            } else {
                Exit::Infra
            })
        }
    }
}
