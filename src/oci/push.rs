//! Pushing with the OCI distribution API over reqwest: `HEAD` to skip blobs the registry has,
//! `POST` + `PUT` (monolithic) or `PATCH` chunks + `PUT`, then the manifest `PUT`. Registries ask
//! for Basic auth (ECR: `AWS:<token password>`, htpasswd registries) or a bearer token from a
//! realm (`WWW-Authenticate: Bearer realm=...`); both are handled. Credentials come in from the
//! caller ([`RegistryLogin`]; ECR's are fetched by `aws::ecr`). Every request is retried on 429,
//! 5xx, timeouts and connection errors with [`Backoff::API`].

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde::Serialize;
use serde_json::Value;

use super::OciError;
use super::build::{Blob, Image};
use crate::retry::{Backoff, Decision, retry};
use crate::secret::Secret;

/// Where to push: a registry base URL (`https://host` or `http://127.0.0.1:5000`), a repository
/// and a tag.
#[derive(Debug, Clone)]
pub struct Target {
    pub registry: reqwest::Url,
    pub repository: String,
    pub tag: String,
}

impl Target {
    /// Parses `--registry` (a host defaults to https) with a repository and tag.
    pub fn new(registry: &str, repository: &str, tag: &str) -> Result<Target, OciError> {
        let with_scheme = if registry.contains("://") {
            registry.to_owned()
        } else {
            format!("https://{registry}")
        };
        let url = reqwest::Url::parse(&with_scheme)
            .map_err(|e| OciError::Invalid(format!("--registry {registry:?}: {e}")))?;
        let ok_repo = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !ok_repo {
            return Err(OciError::Invalid(format!(
                "--repository {repository:?} must be lowercase path components [a-z0-9._-]"
            )));
        }
        let ok_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok_tag {
            return Err(OciError::Invalid(format!(
                "--tag {tag:?} is not a valid tag"
            )));
        }
        Ok(Target {
            registry: url,
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    /// `host[:port]` as image references spell it.
    pub fn host(&self) -> String {
        let host = self.registry.host_str().unwrap_or("");
        match self.registry.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.registry.as_str().trim_end_matches('/'),
            self.repository
        )
    }
}

/// Basic credentials for a registry (ECR: user `AWS` and the token's password).
#[derive(Debug, Clone)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Secret,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `host/repository@sha256:...`: deploy by digest.
    pub reference: String,
    pub tagged: String,
    pub digest: String,
    pub uploaded_blobs: usize,
    pub existing_blobs: usize,
    pub uploaded_bytes: u64,
    pub image_bytes: u64,
}

/// Pushes with bounded retries per request.
#[derive(Debug, Clone)]
pub struct Pusher {
    http: reqwest::Client,
    target: Target,
    login: Option<RegistryLogin>,
    policy: Backoff,
    /// Blobs larger than this are sent in PATCH chunks of this size; `None`: one `PUT` per blob.
    /// Off by default: ECR answers an intermediate PATCH with 201 and drops the body of every
    /// PATCH after the first (aws/containers-roadmap#2831), while POST + one PUT works everywhere.
    pub chunk_size: Option<usize>,
    auth: Option<Secret>,
}

#[derive(Debug)]
struct Failure {
    error: OciError,
    decision: Decision,
}

impl Pusher {
    pub fn new(
        target: Target,
        login: Option<RegistryLogin>,
        timeout: Duration,
    ) -> Result<Pusher, OciError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| OciError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Pusher {
            http,
            target,
            login,
            policy: Backoff::API,
            chunk_size: None,
            auth: None,
        })
    }

    fn registry_error(&self, operation: &str, message: String, decision: Decision) -> Failure {
        Failure {
            error: OciError::Registry {
                registry: self.target.host(),
                operation: operation.into(),
                attempts: 1,
                message,
            },
            decision,
        }
    }

    fn transport(&self, operation: &str, e: reqwest::Error) -> Failure {
        let decision = if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
            Decision::Retry
        } else {
            Decision::Stop
        };
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cur = c.source();
        }
        self.registry_error(operation, msg, decision)
    }

    async fn status_failure(&self, operation: &str, resp: reqwest::Response) -> Failure {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failure {
                error: OciError::RegistryAuth {
                    registry: self.target.host(),
                    operation: operation.into(),
                    status: status.as_u16(),
                },
                decision: Decision::Stop,
            };
        }
        let decision = match (status_decision(status.as_u16()), retry_after) {
            (Decision::Retry, Some(d)) => Decision::RetryAfter(d),
            (d, _) => d,
        };
        self.registry_error(
            operation,
            format!("HTTP {}: {}", status.as_u16(), registry_message(&body)),
            decision,
        )
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(h) => req.header(header::AUTHORIZATION, h.expose()),
            None => req,
        }
    }

    /// Runs one request-producing operation with the retry policy.
    async fn with_retry<T, F, Fut>(&self, operation: &str, op: F) -> Result<T, OciError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        retry(&self.policy, op, |f: &Failure| f.decision)
            .await
            .map_err(|(f, attempts)| match f.error {
                OciError::Registry {
                    registry, message, ..
                } => OciError::Registry {
                    registry,
                    operation: operation.into(),
                    attempts,
                    message,
                },
                other => other,
            })
    }

    /// `GET /v2/`: learns the auth scheme and, for a bearer realm, gets a push token.
    pub async fn authenticate(&mut self) -> Result<(), OciError> {
        let url = format!(
            "{}/v2/",
            self.target.registry.as_str().trim_end_matches('/')
        );
        let challenge = self
            .with_retry("GET /v2/", |_| async {
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| self.transport("GET /v2/", e))?;
                match resp.status() {
                    s if s.is_success() => Ok(None),
                    StatusCode::UNAUTHORIZED => Ok(resp
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)),
                    _ => Err(self.status_failure("GET /v2/", resp).await),
                }
            })
            .await?;
        let Some(challenge) = challenge else {
            return Ok(());
        };
        let Some(login) = self.login.clone() else {
            return Err(OciError::RegistryAuth {
                registry: self.target.host(),
                operation: "GET /v2/ (no credentials given)".into(),
                status: 401,
            });
        };
        let basic = Secret::new(format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", login.username, login.password.expose()))
        ));
        let (scheme, params) = parse_challenge(&challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            self.auth = Some(basic);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(OciError::Registry {
                registry: self.target.host(),
                operation: "GET /v2/".into(),
                attempts: 1,
                message: format!("unsupported auth scheme {scheme:?}"),
            });
        }
        let realm = params
            .get("realm")
            .cloned()
            .ok_or_else(|| OciError::Registry {
                registry: self.target.host(),
                operation: "GET /v2/".into(),
                attempts: 1,
                message: "a bearer challenge without a realm".into(),
            })?;
        let mut token_url = reqwest::Url::parse(&realm)
            .map_err(|e| OciError::Invalid(format!("token realm {realm:?}: {e}")))?;
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.target.repository),
            );
        }
        let token = self
            .with_retry("token", |_| async {
                let resp = self
                    .http
                    .get(token_url.clone())
                    .header(header::AUTHORIZATION, basic.expose())
                    .send()
                    .await
                    .map_err(|e| self.transport("token", e))?;
                if !resp.status().is_success() {
                    return Err(self.status_failure("token", resp).await);
                }
                let v: Value = resp.json().await.map_err(|e| self.transport("token", e))?;
                v.get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .map(Secret::new)
                    .ok_or_else(|| {
                        self.registry_error(
                            "token",
                            "the token answer has no `token`".into(),
                            Decision::Stop,
                        )
                    })
            })
            .await?;
        self.auth = Some(Secret::new(format!("Bearer {}", token.expose())));
        Ok(())
    }

    /// Pushes every blob the registry lacks, then the manifest under the tag.
    pub async fn push(&mut self, image: &Image) -> Result<PushReport, OciError> {
        self.authenticate().await?;
        let mut uploaded = 0;
        let mut existing = 0;
        let mut bytes = 0u64;
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            if self.has_blob(blob).await? {
                existing += 1;
                tracing::debug!(digest = %blob.digest, "blob already in the registry");
            } else {
                tracing::info!(digest = %blob.digest, size = blob.bytes.len(), "uploading blob");
                self.upload(blob).await?;
                uploaded += 1;
                bytes += blob.bytes.len() as u64;
            }
        }
        let digest = self.put_manifest(&image.manifest).await?;
        let repo = format!("{}/{}", self.target.host(), self.target.repository);
        Ok(PushReport {
            reference: format!("{repo}@{digest}"),
            tagged: format!("{repo}:{}", self.target.tag),
            digest,
            uploaded_blobs: uploaded,
            existing_blobs: existing,
            uploaded_bytes: bytes,
            image_bytes: image
                .layers
                .iter()
                .map(|b| b.bytes.len() as u64)
                .sum::<u64>()
                + image.config.bytes.len() as u64,
        })
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool, OciError> {
        let url = self.target.url(&format!("blobs/{}", blob.digest));
        self.with_retry("HEAD blob", |_| async {
            let resp = self
                .authorized(self.http.head(&url))
                .send()
                .await
                .map_err(|e| self.transport("HEAD blob", e))?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self.status_failure("HEAD blob", resp).await),
            }
        })
        .await
    }

    /// One upload session per attempt: a failed session is abandoned and a new one started.
    async fn upload(&self, blob: &Blob) -> Result<(), OciError> {
        self.with_retry("blob upload", |_| async {
            let start = self.target.url("blobs/uploads/");
            let resp = self
                .authorized(self.http.post(&start))
                .header(header::CONTENT_LENGTH, "0")
                .send()
                .await
                .map_err(|e| self.transport("POST upload", e))?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_failure("POST upload", resp).await);
            }
            let mut location = self.location(resp.headers(), "POST upload")?;
            let chunk = self.chunk_size.filter(|&c| c > 0 && blob.bytes.len() > c);
            if let Some(chunk) = chunk {
                let mut offset = 0usize;
                while offset < blob.bytes.len() {
                    let end = (offset + chunk).min(blob.bytes.len());
                    let resp = self
                        .authorized(self.http.patch(location.as_str()))
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, format!("{}-{}", offset, end - 1))
                        .body(blob.bytes.slice(offset..end))
                        .send()
                        .await
                        .map_err(|e| self.transport("PATCH chunk", e))?;
                    // The spec says 202; ECR answers 201.
                    if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED
                    {
                        return Err(self.status_failure("PATCH chunk", resp).await);
                    }
                    location = self.location(resp.headers(), "PATCH chunk")?;
                    offset = end;
                }
                location
                    .query_pairs_mut()
                    .append_pair("digest", &blob.digest);
                let resp = self
                    .authorized(self.http.put(location))
                    .header(header::CONTENT_LENGTH, "0")
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT upload", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT upload", resp).await);
                }
            } else {
                location
                    .query_pairs_mut()
                    .append_pair("digest", &blob.digest);
                let resp = self
                    .authorized(self.http.put(location))
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(blob.bytes.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT upload", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT upload", resp).await);
                }
            }
            Ok(())
        })
        .await
    }

    fn location(&self, headers: &HeaderMap, operation: &str) -> Result<reqwest::Url, Failure> {
        let raw = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.registry_error(operation, "no Location header".into(), Decision::Stop)
            })?;
        self.target.registry.join(raw).map_err(|e| {
            self.registry_error(operation, format!("bad Location: {e}"), Decision::Stop)
        })
    }

    async fn put_manifest(&self, manifest: &Blob) -> Result<String, OciError> {
        let url = self.target.url(&format!("manifests/{}", self.target.tag));
        let digest = self
            .with_retry("PUT manifest", |_| async {
                let resp = self
                    .authorized(self.http.put(&url))
                    .header(header::CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT manifest", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT manifest", resp).await);
                }
                Ok(resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned))
            })
            .await?;
        match digest {
            Some(d) if d != manifest.digest => Err(OciError::Registry {
                registry: self.target.host(),
                operation: "PUT manifest".into(),
                attempts: 1,
                message: format!(
                    "the registry stored digest {d}, but the manifest sent has {}",
                    manifest.digest
                ),
            }),
            _ => Ok(manifest.digest.clone()),
        }
    }
}

/// `Bearer realm="https://x/token",service="reg"` -> ("Bearer", {realm, service}).
pub fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_owned());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

/// The `errors[].code: message` of an OCI error body, or a short prefix of the body.
fn registry_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(errors) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["code"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    body.chars().take(200).collect()
}

fn status_decision(status: u16) -> Decision {
    if status == 429 || status >= 500 {
        Decision::Retry
    } else {
        Decision::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn targets_validate() {
        let t = Target::new("http://127.0.0.1:5000", "health-predict", "v1").unwrap();
        assert_eq!(t.host(), "127.0.0.1:5000");
        assert!(
            t.url("blobs/uploads/")
                .starts_with("http://127.0.0.1:5000/v2/health-predict/")
        );
        assert_eq!(
            Target::new("1.dkr.ecr.us-east-1.amazonaws.com", "a/b", "x")
                .unwrap()
                .registry
                .scheme(),
            "https"
        );
        assert!(Target::new("h", "Upper", "v").is_err());
        assert!(Target::new("h", "ok", "bad tag").is_err());
    }
}
