//! Image pull secrets: server-side apply a `kubernetes.io/dockerconfigjson` Secret in each
//! namespace (an in-place update, never delete-then-create, so pulls never see a gap) and merge its
//! name into a ServiceAccount's `imagePullSecrets` without touching the others. The namespace is
//! server-side applied first (a fresh cluster has none, and an API server refuses objects in a
//! namespace that does not exist). Idempotent: a second run with the same credentials writes
//! nothing.
//!
//! This module gets registry credentials from its caller (the `aws` module's ECR token, composed in
//! `cli`); it never fetches them itself. Credentials stay inside [`Secret`] until they are encoded
//! into the request body, and no error or log line carries them.

use std::collections::BTreeMap;

use ::kube::Client;
use ::kube::api::{Api, Patch, PatchParams, PostParams};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    LocalObjectReference, Namespace, Secret as KSecret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::FIELD_MANAGER;
use super::error::{KubeError, decision, status_code};
use crate::retry::{Backoff, Decision, retry};
use crate::secret::{Secret, mask};

/// The Secret type kubelets read registry credentials from.
pub const DOCKERCONFIGJSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";
/// Annotation holding the credentials' expiry (RFC 3339); `verify` reads it to tell an expired
/// token from a missing one.
pub const EXPIRES_AT_ANNOTATION: &str = "health-predict.io/expires-at";
/// Annotation naming the registry the Secret is for.
pub const REGISTRY_ANNOTATION: &str = "health-predict.io/registry";

/// What to apply.
#[derive(Debug, Clone)]
pub struct PullSecretRequest {
    /// Secret name, e.g. `ecr-pull`.
    pub name: String,
    /// Registry host, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com` (no scheme).
    pub registry: String,
    pub username: String,
    pub password: Secret,
    /// When the credentials stop working.
    pub expires_at: Option<jiff::Timestamp>,
    /// Every namespace to apply the Secret in.
    pub namespaces: Vec<String>,
    /// A ServiceAccount (in each namespace) whose `imagePullSecrets` should name the Secret.
    pub service_account: Option<String>,
}

/// What happened to a ServiceAccount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountChange {
    /// The account already listed the Secret: nothing written.
    AlreadyPresent,
    /// The Secret's name was appended, other entries kept.
    Added,
    /// The account did not exist and was created listing the Secret.
    Created,
}

/// The outcome in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceOutcome {
    pub namespace: String,
    /// Whether the Secret was created or its content changed (false on an idempotent re-run).
    pub secret_changed: bool,
    pub resource_version: Option<String>,
    pub service_account: Option<AccountChange>,
}

/// The `.dockerconfigjson` document for one registry. Masked as a whole and in base64.
pub fn dockerconfigjson(registry: &str, username: &str, password: &Secret) -> Secret {
    let pair = format!("{username}:{}", password.expose());
    mask(&pair);
    let auth = STANDARD.encode(&pair);
    mask(&auth);
    let doc = serde_json::json!({
        "auths": {
            registry: {"username": username, "password": password.expose(), "auth": auth}
        }
    });
    Secret::new(doc.to_string())
}

/// Why a pull secret's content cannot work, if it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    /// Not JSON, or no `auths` map.
    NotDockerConfig(String),
    /// No entry for the registry the image comes from.
    NoEntryFor(String),
    /// The entry has neither `auth` nor `username`/`password`, or `auth` is not base64 `user:pass`.
    BadEntry(String),
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigProblem::NotDockerConfig(why) => write!(f, "is not a docker config ({why})"),
            ConfigProblem::NoEntryFor(host) => write!(f, "has no credentials for registry {host}"),
            ConfigProblem::BadEntry(why) => write!(f, "has an unusable entry ({why})"),
        }
    }
}

/// Checks a `.dockerconfigjson` payload for `registry` without ever returning its values.
pub fn check_dockerconfigjson(data: &[u8], registry: &str) -> Result<(), ConfigProblem> {
    let doc: serde_json::Value = serde_json::from_slice(data).map_err(|e| {
        ConfigProblem::NotDockerConfig(format!(
            "not JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let auths = doc
        .get("auths")
        .and_then(|a| a.as_object())
        .ok_or_else(|| ConfigProblem::NotDockerConfig("no `auths` object".into()))?;
    let entry = auths
        .iter()
        .find(|(k, _)| registry_host(k) == registry)
        .map(|(_, v)| v)
        .ok_or_else(|| ConfigProblem::NoEntryFor(registry.to_owned()))?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = STANDARD
            .decode(auth)
            .map_err(|_| ConfigProblem::BadEntry("`auth` is not base64".into()))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| ConfigProblem::BadEntry("`auth` is not UTF-8".into()))?;
        return match text.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(()),
            _ => Err(ConfigProblem::BadEntry(
                "`auth` is not `user:password`".into(),
            )),
        };
    }
    let has = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
    };
    if has("username") && has("password") {
        Ok(())
    } else {
        Err(ConfigProblem::BadEntry(
            "no `auth` and no `username`/`password`".into(),
        ))
    }
}

/// The host part of a registry key (`https://host/v1/` → `host`).
pub fn registry_host(key: &str) -> &str {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    k.split('/').next().unwrap_or(k)
}

/// Builds the Secret object to apply (metadata, type, data). Its data is secret: never log it.
fn secret_object(req: &PullSecretRequest, namespace: &str) -> KSecret {
    let config = dockerconfigjson(&req.registry, &req.username, &req.password);
    let mut annotations = BTreeMap::new();
    annotations.insert(REGISTRY_ANNOTATION.to_owned(), req.registry.clone());
    if let Some(t) = req.expires_at {
        annotations.insert(EXPIRES_AT_ANNOTATION.to_owned(), t.to_string());
    }
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        FIELD_MANAGER.to_owned(),
    );
    KSecret {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(annotations),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some(DOCKERCONFIGJSON_TYPE.to_owned()),
        data: Some(BTreeMap::from([(
            DOCKERCONFIGJSON_KEY.to_owned(),
            ByteString(config.expose().as_bytes().to_vec()),
        )])),
        ..KSecret::default()
    }
}

/// Applies the pull secret in every listed namespace and merges it into the ServiceAccount.
/// Stops at the first namespace that fails (earlier namespaces keep their fresh Secret).
pub async fn apply_pull_secret(
    client: &Client,
    req: &PullSecretRequest,
) -> Result<Vec<NamespaceOutcome>, KubeError> {
    let mut out = Vec::with_capacity(req.namespaces.len());
    for ns in &req.namespaces {
        ensure_namespace(client, ns).await?;
        let (secret_changed, resource_version) = apply_secret(client, req, ns).await?;
        let service_account = match &req.service_account {
            Some(sa) => Some(merge_into_service_account(client, ns, sa, &req.name).await?),
            None => None,
        };
        tracing::info!(namespace = %ns, secret = %req.name, changed = secret_changed, "pull secret applied");
        out.push(NamespaceOutcome {
            namespace: ns.clone(),
            secret_changed,
            resource_version,
            service_account,
        });
    }
    Ok(out)
}

/// The field manager of the namespace this module applies: its own, so it never takes over (or,
/// by applying fewer fields, removes) what `deploy`'s manifests set on the same Namespace.
pub const NAMESPACE_FIELD_MANAGER: &str = "health-predict-pull-secret";

/// Server-side applies the bare Namespace so the Secret has somewhere to go. Credentials scoped to
/// one namespace may not manage Namespaces (403): the namespace is then the cluster admin's to
/// create, and the Secret's own apply says so if it is missing.
async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let patch = Patch::Apply(&object);
    let params = PatchParams::apply(NAMESPACE_FIELD_MANAGER);
    match retry(&Backoff::API, |_| api.patch(ns, &params, &patch), decision).await {
        Ok(_) => Ok(()),
        Err((e, _)) if status_code(&e) == Some(403) => {
            tracing::warn!(namespace = %ns, "not allowed to manage the namespace; assuming it exists");
            Ok(())
        }
        Err((e, _)) => Err(KubeError::api(format!("applying Namespace {ns}"), e)),
    }
}

async fn apply_secret(
    client: &Client,
    req: &PullSecretRequest,
    ns: &str,
) -> Result<(bool, Option<String>), KubeError> {
    let api: Api<KSecret> = Api::namespaced(client.clone(), ns);
    let object = secret_object(req, ns);
    let patch = Patch::Apply(&object);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let action = format!("applying Secret {ns}/{}", req.name);
    let before = retry(&Backoff::API, |_| api.get_metadata_opt(&req.name), decision)
        .await
        .map_err(|(e, _)| KubeError::api(&action, e))?
        .and_then(|m| m.metadata.resource_version);
    let after = retry(
        &Backoff::API,
        |_| api.patch(&req.name, &params, &patch),
        decision,
    )
    .await
    .map_err(|(e, _)| KubeError::api(&action, e))?;
    let rv = after.metadata.resource_version;
    Ok((before.is_none() || before != rv, rv))
}

/// Appends `secret` to the account's `imagePullSecrets` unless it is there, keeping every other
/// entry. Read-modify-write with the resourceVersion as precondition: a concurrent writer makes
/// the replace fail with 409 and the merge is redone on the fresh object. (`imagePullSecrets` is
/// an atomic list for server-side apply, so applying our one entry would drop the others.)
pub async fn merge_into_service_account(
    client: &Client,
    ns: &str,
    account: &str,
    secret: &str,
) -> Result<AccountChange, KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let action = format!("adding {secret} to ServiceAccount {ns}/{account} imagePullSecrets");
    let policy = Backoff::API.with_attempts(8);
    let result = retry(
        &policy,
        |_| {
            let api = api.clone();
            async move {
                match api.get_opt(account).await? {
                    None => {
                        let sa = ServiceAccount {
                            metadata: ObjectMeta {
                                name: Some(account.to_owned()),
                                namespace: Some(ns.to_owned()),
                                ..ObjectMeta::default()
                            },
                            image_pull_secrets: Some(vec![LocalObjectReference {
                                name: secret.to_owned(),
                            }]),
                            ..ServiceAccount::default()
                        };
                        api.create(
                            &PostParams {
                                field_manager: Some(FIELD_MANAGER.into()),
                                ..PostParams::default()
                            },
                            &sa,
                        )
                        .await?;
                        Ok(AccountChange::Created)
                    }
                    Some(mut sa) => {
                        let list = sa.image_pull_secrets.get_or_insert_with(Vec::new);
                        if list.iter().any(|r| r.name == secret) {
                            return Ok(AccountChange::AlreadyPresent);
                        }
                        list.push(LocalObjectReference {
                            name: secret.to_owned(),
                        });
                        api.replace(
                            account,
                            &PostParams {
                                field_manager: Some(FIELD_MANAGER.into()),
                                ..PostParams::default()
                            },
                            &sa,
                        )
                        .await?;
                        Ok(AccountChange::Added)
                    }
                }
            }
        },
        |e: &::kube::Error| match status_code(e) {
            Some(409) => Decision::Retry,
            _ => decision(e),
        },
    )
    .await;
    result.map_err(|(e, _)| KubeError::api(action, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerconfigjson_round_trips_through_the_checker() {
        let doc = dockerconfigjson(
            "123.dkr.ecr.eu-west-1.amazonaws.com",
            "AWS",
            &Secret::new("pw"),
        );
        let v: serde_json::Value = serde_json::from_str(doc.expose()).unwrap();
        let entry = &v["auths"]["123.dkr.ecr.eu-west-1.amazonaws.com"];
        assert_eq!(entry["username"], "AWS");
        assert_eq!(entry["auth"], STANDARD.encode("AWS:pw"));
        assert_eq!(
            check_dockerconfigjson(
                doc.expose().as_bytes(),
                "123.dkr.ecr.eu-west-1.amazonaws.com"
            ),
            Ok(())
        );
    }

    #[test]
    fn checker_names_the_problem_without_values() {
        assert!(matches!(
            check_dockerconfigjson(b"{not json", "r"),
            Err(ConfigProblem::NotDockerConfig(_))
        ));
        assert_eq!(
            check_dockerconfigjson(br#"{"auths":{"other.io":{"auth":"dTpw"}}}"#, "r.io"),
            Err(ConfigProblem::NoEntryFor("r.io".into()))
        );
        let bad =
            check_dockerconfigjson(br#"{"auths":{"https://r.io/v1/":{"auth":"!!"}}}"#, "r.io");
        assert!(matches!(bad, Err(ConfigProblem::BadEntry(_))), "{bad:?}");
        assert_eq!(
            check_dockerconfigjson(
                br#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#,
                "r.io"
            ),
            Ok(())
        );
    }
}
