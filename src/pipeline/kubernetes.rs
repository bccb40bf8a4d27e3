//! The `kubernetes` deploy target: build and push the serving image (the same binary's
//! `image push`, run as a child so its registry and ECR settings come from the same flags and
//! environment as when run by hand), server-side apply, watch the rollout with failure diagnosis,
//! roll back on failure, and check `/model-info` through a port-forward.

use std::path::Path;

use anyhow::{Context as _, bail};

use super::config::PipelineConfig;
use super::steps::Done;
use crate::kube::deploy::{self, DeployRequest, RollbackRequest};
use crate::kube::forward::KubeForwarder;
use crate::kube::manifests;
use crate::kube::verify::{self, VerifyRequest};

/// Builds the serving image for `model` and pushes it to the configured repository; returns the
/// image reference by digest.
pub async fn push_image(
    cfg: &PipelineConfig,
    model: &Path,
    version: u64,
    model_id: &str,
) -> anyhow::Result<String> {
    let repository = cfg
        .image_repository
        .as_deref()
        .context("image_repository is not set")?;
    let exe = std::env::current_exe().context("cannot find this executable to build the image")?;
    let tag = format!("v{version}-{}", &model_id[..model_id.len().min(12)]);
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(["--output", "json", "image", "push", "--model"])
        .arg(model)
        .args(["--repository", repository, "--tag", &tag])
        .arg(format!("--serve-arg=--model-version={version}"))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    if let Some(registry) = &cfg.image_registry {
        cmd.args(["--registry", registry]);
    }
    if cfg.ecr {
        cmd.args(["--ecr", "--create-repository"]);
    }
    let out = cmd
        .output()
        .await
        .context("cannot run `health-predict image push`")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = err.lines().rev().take(6).collect();
        bail!(
            "`image push` exited {}: {}",
            out.status.code().unwrap_or(-1),
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .context("`image push --output json` printed no JSON document")?;
    doc["reference"]
        .as_str()
        .map(str::to_owned)
        .context("`image push` reported no image reference")
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
