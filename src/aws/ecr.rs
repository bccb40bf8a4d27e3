//! Amazon ECR: authorization tokens (12 hours), repositories on demand, and the docker
//! `config.json` a runner's docker reads.
//!
//! The token arrives base64(`AWS:<password>`); it, the password and the `AWS:<password>` pair
//! are wrapped in [`Secret`] (and so masked in Actions logs, with their base64 forms) before
//! anything else touches them.

use std::path::Path;

use aws_config::SdkConfig;
use aws_sdk_ecr::operation::create_repository::CreateRepositoryError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::{AwsError, code, decide, describe};
use crate::retry::{Backoff, retry};
use crate::secret::Secret;

/// ECR's registry credential: a host, the user `AWS`, a 12-hour password.
#[derive(Debug, Clone)]
pub struct EcrAuth {
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (no scheme).
    pub registry: String,
    pub username: String,
    pub password: Secret,
    pub expires_at: jiff::Timestamp,
}

impl EcrAuth {
    /// Decodes ECR's `authorizationToken` (base64 of `user:password`). The token is masked first.
    pub fn from_token(
        token: &str,
        proxy_endpoint: &str,
        expires_at: jiff::Timestamp,
    ) -> Result<EcrAuth, AwsError> {
        Secret::new(token);
        let decoded = STANDARD
            .decode(token.trim())
            .map_err(|_| AwsError::BadToken("not base64".into()))?;
        let pair = Secret::new(
            String::from_utf8(decoded).map_err(|_| AwsError::BadToken("not UTF-8".into()))?,
        );
        let Some((user, password)) = pair.expose().split_once(':') else {
            return Err(AwsError::BadToken("no `user:password` pair".into()));
        };
        if user.is_empty() || password.is_empty() {
            return Err(AwsError::BadToken("empty user or password".into()));
        }
        Ok(EcrAuth {
            registry: registry_host(proxy_endpoint),
            username: user.to_owned(),
            password: Secret::new(password),
            expires_at,
        })
    }

    /// The docker `auth` value: base64(`user:password`), already masked.
    pub fn basic(&self) -> Secret {
        Secret::new(STANDARD.encode(format!("{}:{}", self.username, self.password.expose())))
    }
}

/// The host part of an endpoint URL (`https://h:443/x` -> `h:443`).
pub fn registry_host(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(endpoint);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Whether a repository was made now or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepositoryState {
    Created,
    Existed,
}

/// An ECR client whose calls are retried with [`Backoff::API`].
#[derive(Debug, Clone)]
pub struct Ecr {
    client: aws_sdk_ecr::Client,
    policy: Backoff,
}

impl Ecr {
    pub fn new(config: &SdkConfig) -> Ecr {
        Ecr {
            client: aws_sdk_ecr::Client::new(config),
            policy: Backoff::API,
        }
    }

    /// GetAuthorizationToken for the caller's default registry.
    pub async fn authorization(&self) -> Result<EcrAuth, AwsError> {
        let out = retry(
            &self.policy,
            |_| self.client.get_authorization_token().send(),
            decide,
        )
        .await
        .map_err(|(e, attempts)| api_error("GetAuthorizationToken", &e, attempts))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| AwsError::BadToken("no authorizationData".into()))?;
        let token = data
            .authorization_token()
            .ok_or_else(|| AwsError::BadToken("no authorizationToken".into()))?;
        let endpoint = data
            .proxy_endpoint()
            .ok_or_else(|| AwsError::BadToken("no proxyEndpoint".into()))?;
        let expires_at = data
            .expires_at()
            .and_then(super::timestamp)
            .ok_or_else(|| AwsError::BadToken("no expiresAt".into()))?;
        EcrAuth::from_token(token, endpoint, expires_at)
    }

    /// CreateRepository, treating "already exists" as success (immutable tags off, scan on push).
    pub async fn ensure_repository(&self, name: &str) -> Result<RepositoryState, AwsError> {
        let result = retry(
            &self.policy,
            |_| self.client.create_repository().repository_name(name).send(),
            |e| {
                if matches!(
                    e.as_service_error(),
                    Some(CreateRepositoryError::RepositoryAlreadyExistsException(_))
                ) {
                    crate::retry::Decision::Stop
                } else {
                    decide(e)
                }
            },
        )
        .await;
        match result {
            Ok(_) => Ok(RepositoryState::Created),
            Err((e, _)) if code(&e) == Some("RepositoryAlreadyExistsException") => {
                Ok(RepositoryState::Existed)
            }
            Err((e, attempts)) => Err(api_error("CreateRepository", &e, attempts)),
        }
    }
}

fn api_error<E>(
    operation: &'static str,
    e: &aws_sdk_ecr::error::SdkError<E>,
    attempts: u32,
) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = describe(e);
    match code(e) {
        Some("ExpiredTokenException" | "ExpiredToken") => AwsError::Expired {
            what: "the AWS session",
            message,
        },
        _ => AwsError::Api {
            service: "ECR",
            operation,
            attempts,
            message,
        },
    }
}

/// A docker `config.json` with `auth` entries for the given registries, merged into `existing`
/// (other registries, credential helpers and settings are kept).
pub fn docker_config(existing: Option<&[u8]>, auths: &[&EcrAuth]) -> Result<Vec<u8>, AwsError> {
    let mut doc: serde_json::Value = match existing {
        Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => serde_json::from_slice(bytes)
            .map_err(|e| {
                AwsError::Invalid(format!("the existing docker config is not JSON: {e}"))
            })?,
        _ => serde_json::json!({}),
    };
    let root = doc.as_object_mut().ok_or_else(|| {
        AwsError::Invalid("the existing docker config is not a JSON object".into())
    })?;
    let entry = root.entry("auths").or_insert_with(|| serde_json::json!({}));
    let map = entry
        .as_object_mut()
        .ok_or_else(|| AwsError::Invalid("`auths` in the docker config is not an object".into()))?;
    for a in auths {
        map.insert(
            a.registry.clone(),
            serde_json::json!({ "auth": a.basic().expose() }),
        );
    }
    let mut out = serde_json::to_vec_pretty(&doc)
        .map_err(|e| AwsError::Invalid(format!("docker config: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Writes (merges) the docker config atomically with mode 0600.
pub fn write_docker_config(path: &Path, auth: &EcrAuth) -> Result<(), AwsError> {
    let io = |source| AwsError::DockerConfig {
        path: path.display().to_string(),
        source,
    };
    let existing = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let bytes = docker_config(existing.as_deref(), &[auth])?;
    // The temporary file is 0600 before it is renamed into place, so no reader ever sees the
    // credential with wider permissions.
    crate::fsutil::write_atomic_with_mode(path, &bytes, 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> EcrAuth {
        let token = STANDARD.encode("AWS:pa55word");
        EcrAuth::from_token(
            &token,
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn token_decodes_to_user_password_and_host() {
        let a = auth();
        assert_eq!(a.registry, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        assert_eq!(a.username, "AWS");
        assert_eq!(a.password.expose(), "pa55word");
        assert!(!format!("{a:?}").contains("pa55word"));
        assert!(EcrAuth::from_token("!!", "h", a.expires_at).is_err());
        let nopair = STANDARD.encode("nopair");
        assert!(EcrAuth::from_token(&nopair, "h", a.expires_at).is_err());
    }

    #[test]
    fn docker_config_merges_and_keeps_other_entries() {
        let existing = br#"{"auths":{"ghcr.io":{"auth":"eA=="}},"credsStore":"desktop"}"#;
        let out = docker_config(Some(existing), &[&auth()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["auths"]["ghcr.io"]["auth"], "eA==");
        assert_eq!(v["credsStore"], "desktop");
        let e = &v["auths"]["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]["auth"];
        assert_eq!(e, &serde_json::json!(STANDARD.encode("AWS:pa55word")));
    }

    #[cfg(unix)]
    #[test]
    fn docker_config_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docker/config.json");
        write_docker_config(&p, &auth()).unwrap();
        write_docker_config(&p, &auth()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn hosts_from_endpoints() {
        assert_eq!(registry_host("https://a.b:5000/x"), "a.b:5000");
        assert_eq!(registry_host("a.b"), "a.b");
    }
}
