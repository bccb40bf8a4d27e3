//! Deploy (server-side apply of the bundled manifests with the image pinned), rollback (restore
//! the previous ReplicaSet's template) and the composition the pipeline calls: deploy, verify,
//! and on failure roll back and verify that.

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;

use super::FIELD_MANAGER;
use super::error::{KubeError, decision, status_code};
use super::forward::Forwarder;
use super::manifests::{self, CHANGE_CAUSE, Doc};
use super::verify::{self, REVISION, VerifyReport, VerifyRequest};
use crate::retry::{Backoff, Decision, retry};

/// Tags that name a channel, not a build: they move, so a rollback could not bring the old
/// pods back and two replicas could run different images.
const CHANNEL_TAGS: &[&str] = &[
    "latest",
    "production",
    "prod",
    "staging",
    "stage",
    "stable",
    "main",
    "master",
    "dev",
    "develop",
    "edge",
    "nightly",
    "canary",
    "current",
    "release",
    "test",
    "preview",
    "next",
];

/// The image policy: a digest (`@sha256:` and 64 hex digits), or a tag that names one build. A tag
/// names one build when it is not a channel name and carries a version number (`v3`, `1.4.2`,
/// `v12-3f2c1e9a`) or a commit hash (7 to 40 hex digits). Registries can move any tag: deploy by
/// digest where you can (`image push` reports it).
pub fn check_image(image: &str) -> Result<(), KubeError> {
    let bad = |problem: String| {
        Err(KubeError::ImageRef {
            image: image.to_owned(),
            problem,
        })
    };
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        return bad("is empty or contains whitespace".into());
    }
    if let Some((_, digest)) = image.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(());
        }
        return bad("has a malformed digest (expected @sha256: and 64 hex digits)".into());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = match last.split_once(':') {
        None => {
            return bad("has no tag, which means :latest: the cluster could run anything".into());
        }
        Some((_, "")) => return bad("has an empty tag".into()),
        Some((_, tag)) => tag,
    };
    if tag == "latest" {
        return bad(
            "uses :latest, which kind and kubelets may silently re-pull or not pull at all".into(),
        );
    }
    let lower = tag.to_ascii_lowercase();
    if CHANNEL_TAGS.contains(&lower.as_str()) {
        return bad(format!(
            "uses :{tag}, a tag that moves from build to build; deploy by digest \
             (REPO@sha256:...) or by a tag naming one build (a version or commit)"
        ));
    }
    let names_a_build = lower.split(['.', '-', '_', '+']).any(|part| {
        let version = part.strip_prefix('v').unwrap_or(part);
        let is_version = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
        let is_commit = (7..=40).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_hexdigit())
            && part.bytes().any(|b| b.is_ascii_digit());
        is_version || is_commit
    });
    if !names_a_build {
        return bad(format!(
            "uses :{tag}, which names no version or commit and may be moved; deploy by digest \
             (REPO@sha256:...) or by a tag like v3, 1.4.2 or a commit hash"
        ));
    }
    Ok(())
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub namespace: String,
    pub image: String,
    pub change_cause: String,
    /// Also apply the ECR refresher CronJob and its RBAC, with these settings.
    pub ecr_refresher: Option<manifests::Refresher>,
    /// ClusterIP (default) or NodePort (kind).
    pub service_type: manifests::ServiceType,
    /// The manifests (normally [`manifests::bundled`]).
    pub manifests: Vec<Doc>,
}

/// One applied object.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: String,
    pub name: String,
    /// False when the apply changed nothing.
    pub changed: bool,
}

/// The result of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub namespace: String,
    pub deployment: String,
    pub image: String,
    /// The Deployment's generation after the apply (verify waits for it to be observed).
    pub generation: Option<i64>,
    pub applied: Vec<Applied>,
}

fn resource_for(doc: &Doc) -> Result<(ApiResource, bool), KubeError> {
    let api_version = doc.value["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let kind = doc.kind();
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "Service" => ("services", true),
        "Secret" => ("secrets", true),
        "ConfigMap" => ("configmaps", true),
        "Deployment" => ("deployments", true),
        "PodDisruptionBudget" => ("poddisruptionbudgets", true),
        "CronJob" => ("cronjobs", true),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "NetworkPolicy" => ("networkpolicies", true),
        other => {
            return Err(KubeError::Manifest {
                name: doc.file.clone(),
                problem: format!("kind {other} is not one deploy applies"),
            });
        }
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

/// Validates, renders and server-side applies the manifests (field manager `health-predict`,
/// forced: this program owns these fields), namespace first.
pub async fn deploy(client: &Client, req: &DeployRequest) -> Result<DeployOutcome, KubeError> {
    check_image(&req.image)?;
    if let Some(r) = &req.ecr_refresher {
        manifests::check_refresher(r).map_err(|problem| KubeError::Manifest {
            name: "ecr-refresher.yaml".into(),
            problem,
        })?;
    }
    let problems = manifests::validate(&req.manifests);
    if let Some(first) = problems.first() {
        return Err(KubeError::Manifest {
            name: "k8s/".into(),
            problem: format!("{first} ({} problems in all)", problems.len()),
        });
    }
    let docs = manifests::render(
        &req.manifests,
        &manifests::Render {
            namespace: &req.namespace,
            image: &req.image,
            change_cause: &req.change_cause,
            ecr_refresher: req.ecr_refresher.as_ref(),
            service_type: req.service_type,
        },
    );
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    let mut generation = None;
    for doc in &docs {
        let (ar, namespaced) = resource_for(doc)?;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), &req.namespace, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let name = doc.name().to_owned();
        let action = format!("applying {} {}", doc.kind(), name);
        let before = match retry(&Backoff::API, |_| api.get_metadata_opt(&name), decision).await {
            Ok(m) => m.and_then(|m| m.metadata.resource_version),
            // Namespace-scoped CI credentials may not read or write Namespaces: the namespace is
            // then the cluster admin's to create, and the next apply says so if it is missing.
            Err((e, _)) if !namespaced && status_code(&e) == Some(403) => {
                tracing::warn!(namespace = %name, "not allowed to manage the namespace; assuming it exists");
                continue;
            }
            Err((e, _)) => return Err(KubeError::api(&action, e)),
        };
        let patch = Patch::Apply(&doc.value);
        let after = retry(
            &Backoff::API,
            |_| api.patch(&name, &params, &patch),
            decision,
        )
        .await
        .map_err(|(e, _)| KubeError::api(&action, e))?;
        if doc.kind() == "Deployment" {
            generation = after.metadata.generation;
        }
        let changed = before.is_none() || before != after.metadata.resource_version;
        tracing::info!(kind = doc.kind(), name = %name, changed, "applied");
        applied.push(Applied {
            kind: doc.kind().to_owned(),
            name,
            changed,
        });
    }
    Ok(DeployOutcome {
        namespace: req.namespace.clone(),
        deployment: manifests::APP.to_owned(),
        image: req.image.clone(),
        generation,
        applied,
    })
}

/// What to roll back.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub namespace: String,
    pub deployment: String,
    /// A specific revision; default: the newest ReplicaSet whose template differs from the
    /// Deployment's current one.
    pub to_revision: Option<i64>,
}

/// The result of a rollback.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    pub namespace: String,
    pub deployment: String,
    pub from_image: Option<String>,
    pub to_revision: i64,
    pub to_image: Option<String>,
}

fn revision(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION)?
        .parse()
        .ok()
}

/// A ReplicaSet's template as the Deployment's: without the controller's `pod-template-hash`.
fn strip_hash(mut t: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove("pod-template-hash");
    }
    t
}

fn image_of(t: &PodTemplateSpec) -> Option<String> {
    t.spec.as_ref()?.containers.first()?.image.clone()
}

/// Restores the previous ReplicaSet's template (what `kubectl rollout undo` does), recording the
/// change cause. A read-modify-write guarded by resourceVersion, redone on conflict.
pub async fn rollback(
    client: &Client,
    req: &RollbackRequest,
) -> Result<RollbackOutcome, KubeError> {
    let ns = req.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let action = format!("rolling back Deployment {ns}/{}", req.deployment);
    let policy = Backoff::API.with_attempts(6);
    let attempt = |_| {
        let deployments = deployments.clone();
        let replicasets = replicasets.clone();
        async move {
            let Some(mut d) = deployments
                .get_opt(&req.deployment)
                .await
                .map_err(Step::Api)?
            else {
                return Err(Step::Done(KubeError::NotFound {
                    kind: "Deployment",
                    namespace: ns.to_owned(),
                    name: req.deployment.clone(),
                }));
            };
            let spec = d.spec.clone().unwrap_or_default();
            let selector = spec
                .selector
                .match_labels
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let uid = d.metadata.uid.clone();
            let mut owned: Vec<ReplicaSet> = replicasets
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(Step::Api)?
                .items
                .into_iter()
                .filter(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "Deployment" && Some(&o.uid) == uid.as_ref())
                })
                .collect();
            owned.sort_by_key(|rs| std::cmp::Reverse(revision(rs).unwrap_or(0)));
            let current = spec.template.clone();
            let target = owned.into_iter().find(|rs| {
                let t = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.clone())
                    .map(strip_hash);
                match req.to_revision {
                    Some(r) => revision(rs) == Some(r),
                    None => t.is_some_and(|t| t != current),
                }
            });
            let Some(target) = target else {
                return Err(Step::Done(KubeError::NoPreviousRevision {
                    namespace: ns.to_owned(),
                    name: req.deployment.clone(),
                }));
            };
            let to_revision = revision(&target).unwrap_or(0);
            let template = target
                .spec
                .and_then(|s| s.template)
                .map(strip_hash)
                .unwrap_or_default();
            let to_image = image_of(&template);
            let from_image = image_of(&current);
            if let Some(s) = d.spec.as_mut() {
                s.template = template;
            }
            d.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    CHANGE_CAUSE.to_owned(),
                    format!(
                        "health-predict rollback to revision {to_revision} ({})",
                        to_image.as_deref().unwrap_or("?")
                    ),
                );
            d.metadata.managed_fields = None;
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            deployments
                .replace(&req.deployment, &pp, &d)
                .await
                .map_err(Step::Api)?;
            Ok(RollbackOutcome {
                namespace: ns.to_owned(),
                deployment: req.deployment.clone(),
                from_image,
                to_revision,
                to_image,
            })
        }
    };
    match retry(&policy, attempt, |e: &Step| match e {
        Step::Api(e) if status_code(e) == Some(409) => Decision::Retry,
        Step::Api(e) => decision(e),
        Step::Done(_) => Decision::Stop,
    })
    .await
    {
        Ok(o) => {
            tracing::info!(to_revision = o.to_revision, image = ?o.to_image, "rolled back");
            Ok(o)
        }
        Err((Step::Api(e), _)) => Err(KubeError::api(action, e)),
        Err((Step::Done(e), _)) => Err(e),
    }
}

enum Step {
    Api(::kube::Error),
    Done(KubeError),
}

/// Deploy, verify, and (when asked) roll back a failed verify and verify the rollback.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub deploy: DeployOutcome,
    pub verify: Option<VerifyReport>,
    pub rollback: Option<RollbackReport>,
    /// True when the new image runs and passed verify.
    pub passed: bool,
}

/// A rollback and its own verify.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub outcome: Option<RollbackOutcome>,
    pub error: Option<String>,
    pub verify: Option<VerifyReport>,
}

/// Options for [`deploy_verified`].
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub deploy: DeployRequest,
    /// `None`: apply only.
    pub verify: Option<VerifyRequest>,
    pub rollback_on_failure: bool,
}

/// The pipeline's entry: deploy, verify, roll back on failure and verify the rollback (without
/// the version check: the previous image serves the previous model).
pub async fn deploy_verified(
    client: &Client,
    plan: &DeployPlan,
    forwarder: Option<&dyn Forwarder>,
) -> Result<DeployReport, KubeError> {
    let deployed = deploy(client, &plan.deploy).await?;
    let Some(vreq) = &plan.verify else {
        return Ok(DeployReport {
            deploy: deployed,
            verify: None,
            rollback: None,
            passed: true,
        });
    };
    let report = verify::verify(client, vreq, forwarder).await?;
    if report.passed || !plan.rollback_on_failure {
        let passed = report.passed;
        return Ok(DeployReport {
            deploy: deployed,
            verify: Some(report),
            rollback: None,
            passed,
        });
    }
    tracing::warn!("verify failed: rolling back");
    let rreq = RollbackRequest {
        namespace: vreq.namespace.clone(),
        deployment: vreq.deployment.clone(),
        to_revision: None,
    };
    let rollback = match rollback(client, &rreq).await {
        Ok(outcome) => {
            let mut again = vreq.clone();
            again.expected_version = None;
            again.timeout = again.timeout.max(Duration::from_secs(30));
            let verified = verify::verify(client, &again, forwarder).await.ok();
            RollbackReport {
                outcome: Some(outcome),
                error: None,
                verify: verified,
            }
        }
        Err(e) => RollbackReport {
            outcome: None,
            error: Some(crate::exit::render_diagnosed(e).trim_end().to_owned()),
            verify: None,
        },
    };
    Ok(DeployReport {
        deploy: deployed,
        verify: Some(report),
        rollback: Some(rollback),
        passed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_must_pin() {
        let digest = format!("r.io/a/b@sha256:{}", "a".repeat(64));
        assert!(check_image(&digest).is_ok());
        for good in [
            "r.io:5000/a/b:3f2c1e9",
            "r.io/a:v3",
            "r.io/a:1.4.2",
            "r.io/a:v12-3f2c1e9a",
            "r.io/a:good-v1",
            "a:80",
        ] {
            assert!(check_image(good).is_ok(), "{good}");
        }
        for bad in [
            "r.io/a/b",
            "r.io/a/b:latest",
            "r.io/a/b:production",
            "r.io/a/b:Stable",
            "r.io/a/b:main",
            "r.io/a/b:feature-x",
            "r.io/a/b:beefcafe",
            "r.io:5000/a",
            "r.io/a@sha256:xyz",
            "",
            "a:",
        ] {
            let e = check_image(bad).expect_err(bad);
            assert!(matches!(e, KubeError::ImageRef { .. }), "{bad}");
        }
        let e = check_image("api:latest").unwrap_err().to_string();
        assert!(e.contains(":latest"), "{e}");
    }
}
