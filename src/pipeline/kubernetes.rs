//! The `kubernetes` deploy target: push the tested image in-process (a registry, ECR with a
//! short-lived login) or load it into kind, server-side apply, watch the rollout with failure
//! diagnosis, roll back on failure, and check `/model-info` through a port-forward.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::config::PipelineConfig;
use super::steps::Done;
use crate::aws::credentials::{self, CredentialMode, CredentialRequest};
use crate::kube::cluster;
use crate::kube::deploy::{self, DeployRequest, RollbackRequest};
use crate::kube::forward::KubeForwarder;
use crate::kube::manifests;
use crate::kube::verify::{self, VerifyRequest};
use crate::oci;
use crate::secret::Secret;

/// What the push takes from the environment, read by `cli` (the pipeline reads no variables).
/// Values are checked only when a push needs them, as before.
#[derive(Debug, Clone)]
pub struct PushEnv {
    /// A login for a registry other than ECR (`HEALTH_PREDICT_REGISTRY_USER` and `_PASSWORD`).
    pub login: Option<oci::RegistryLogin>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub aws_region: Option<String>,
    /// `AWS_ENDPOINT_URL`.
    pub aws_endpoint_url: Option<String>,
    /// `HEALTH_PREDICT_AWS_CREDENTIALS` (`Err`: why its value is not a mode).
    pub aws_credentials: Result<CredentialMode, String>,
    /// `HEALTH_PREDICT_AWS_ROLE_ARN`.
    pub aws_role_arn: Option<String>,
    /// `HEALTH_PREDICT_OIDC_AUDIENCE`.
    pub oidc_audience: Option<String>,
    /// The runner's variables that choose the credential source
    /// (`aws::credentials::SOURCE_VARS`) and are set, but for the request token.
    pub runner: Vec<(&'static str, String)>,
    /// `aws::credentials::REQUEST_TOKEN_VAR`, the runner's OIDC request token.
    pub oidc_request_token: Option<Secret>,
}

/// Pushes the built image to the configured registry in-process (ECR: a short-lived login from
/// the environment's AWS credentials, the repository created when missing).
pub async fn push(
    cfg: &PipelineConfig,
    env: &PushEnv,
    image: &oci::Image,
    tag: &str,
) -> anyhow::Result<oci::PushReport> {
    let repository = cfg
        .image_repository
        .as_deref()
        .context("image_repository is not set")?;
    let (registry, login) = if cfg.ecr {
        let (registry, login) = ecr_login(env, repository).await?;
        (cfg.image_registry.clone().unwrap_or(registry), Some(login))
    } else {
        let registry = cfg.image_registry.clone().ok_or_else(|| {
            crate::exit::fail(
                crate::exit::Exit::Usage,
                "image_repository is set but no registry to push it to",
                Some(
                    "set --image-registry (HEALTH_PREDICT_IMAGE_REGISTRY), or --ecr for Amazon ECR",
                ),
            )
        })?;
        (registry, env.login.clone())
    };
    let target = oci::Target::new(&registry, repository, tag)?;
    let mut pusher = oci::Pusher::new(target, login, Duration::from_secs(300))?;
    Ok(pusher.push(image).await?)
}

/// ECR's registry and a push login, with credentials resolved as `image push --ecr` does from
/// the environment (region, endpoint, role, OIDC audience).
async fn ecr_login(
    env: &PushEnv,
    repository: &str,
) -> anyhow::Result<(String, oci::RegistryLogin)> {
    let region = env.aws_region.clone().ok_or_else(|| {
        crate::exit::fail(
            crate::exit::Exit::Usage,
            "no AWS region for the ECR push",
            Some("set AWS_REGION"),
        )
    })?;
    let settings = crate::aws::AwsSettings {
        region,
        endpoint_url: env.aws_endpoint_url.clone(),
        attempt_timeout: crate::aws::AwsSettings::DEFAULT_ATTEMPT_TIMEOUT,
    };
    let mode = env.aws_credentials.clone().map_err(|why| {
        crate::exit::fail(
            crate::exit::Exit::Usage,
            why,
            Some("use auto, github-oidc or default"),
        )
    })?;
    let request = CredentialRequest {
        mode,
        role_arn: env.aws_role_arn.clone(),
        audience: env
            .oidc_audience
            .clone()
            .unwrap_or_else(|| credentials::DEFAULT_AUDIENCE.into()),
        session_name: None,
        duration: Duration::from_secs(3600),
    };
    let source = request.source(|k| {
        if k == credentials::REQUEST_TOKEN_VAR {
            return env
                .oidc_request_token
                .as_ref()
                .map(|t| t.expose().to_owned());
        }
        env.runner
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })?;
    let resolved = credentials::resolve(&source, &settings).await?;
    let ecr = crate::aws::ecr::Ecr::new(&crate::aws::sdk_config(&settings, &resolved).await);
    let state = ecr.ensure_repository(repository).await?;
    tracing::info!(repository, ?state, "ECR repository");
    let auth = ecr.authorization().await?;
    Ok((
        auth.registry.clone(),
        oci::RegistryLogin {
            username: auth.username.clone(),
            password: auth.password.clone(),
        },
    ))
}

/// Loads an OCI archive into the kind cluster's nodes (`kind load image-archive`).
pub async fn kind_load(cfg: &PipelineConfig, archive: &Path) -> anyhow::Result<()> {
    let provider = cluster::Provider::Kind;
    let tool = cluster::find_program(provider.program()).ok_or_else(|| {
        crate::exit::fail(
            crate::exit::Exit::Usage,
            "`kind` is not on PATH: deploy = kubernetes without --image or --image-repository loads the image into a kind cluster",
            Some(&format!(
                "{}; or pass --image-repository (with --image-registry or --ecr) to push instead, or --image to deploy a prebuilt image",
                provider.install_hint()
            )),
        )
    })?;
    let req = cluster::ClusterRequest::new(
        provider,
        tool,
        &cfg.kind_cluster,
        archive.parent().unwrap_or(Path::new(".")).to_owned(),
    );
    cluster::load_archive(&req, archive).await?;
    Ok(())
}

/// Applies the manifests with `image` for model `version`.
pub async fn deploy(cfg: &PipelineConfig, image: &str, version: u64) -> anyhow::Result<Done<()>> {
    deploy::check_image(image)?;
    let client = crate::kube::client().await?;
    let outcome = deploy::deploy(
        &client,
        &DeployRequest {
            namespace: cfg.namespace.clone(),
            image: image.to_owned(),
            change_cause: format!("health-predict pipeline: model version {version} ({image})"),
            ecr_refresher: None,
            // The Service stays ClusterIP here; verify and api-test reach it by port-forward.
            service_type: manifests::ServiceType::default(),
            manifests: manifests::bundled()?,
        },
    )
    .await?;
    let changed = outcome.applied.iter().filter(|a| a.changed).count();
    Ok(Done::Passed(
        (),
        format!(
            "applied {} objects ({changed} changed) in namespace {}; deployment {} → {image}",
            outcome.applied.len(),
            outcome.namespace,
            outcome.deployment
        ),
    ))
}

/// Watches the rollout of model `version`; on failure rolls back and verifies the rollback.
pub async fn verify(cfg: &PipelineConfig, version: u64) -> anyhow::Result<Done<()>> {
    let client = crate::kube::client().await?;
    let forwarder = KubeForwarder {
        client: client.clone(),
    };
    let mut req = VerifyRequest::new(&cfg.namespace, manifests::APP);
    req.expected_version = Some(version.to_string());
    let report = verify::verify(&client, &req, Some(&forwarder)).await?;
    if report.passed {
        return Ok(Done::Passed(
            (),
            format!(
                "rollout of {} ready in {} ms; /model-info serves version {version}",
                report.image.as_deref().unwrap_or("the image"),
                report.elapsed_ms
            ),
        ));
    }
    let why = report
        .failure
        .as_ref()
        .map_or("verification failed".to_owned(), |f| {
            format!("{:?}: {} ({})", f.kind, f.message, f.hint)
        });
    let rolled = deploy::rollback(
        &client,
        &RollbackRequest {
            namespace: cfg.namespace.clone(),
            deployment: manifests::APP.into(),
            to_revision: None,
        },
    )
    .await;
    let rollback = match rolled {
        Ok(o) => {
            let mut again = req.clone();
            again.expected_version = None;
            match verify::verify(&client, &again, Some(&forwarder)).await {
                Ok(v) if v.passed => {
                    format!("rolled back to revision {} and it is ready", o.to_revision)
                }
                Ok(_) => format!(
                    "rolled back to revision {}, which is not ready either",
                    o.to_revision
                ),
                Err(e) => format!(
                    "rolled back to revision {}; its verify errored: {e}",
                    o.to_revision
                ),
            }
        }
        Err(e) => format!("rollback failed: {e}"),
    };
    Ok(Done::Failed(format!("{why}; {rollback}")))
}
