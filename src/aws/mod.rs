//! AWS: GitHub OIDC to STS credentials, ECR tokens and docker configs. Image building and
//! pushing live in [`crate::oci`]; ECR's registry login is handed to it as credentials.
//!
//! Responsible for talking to STS, ECR and OCI registries with short-lived credentials, and for
//! keeping every token and password inside [`Secret`](crate::secret::Secret) from the moment it
//! arrives. It must not import `kube` or `pipeline`: the ECR pull secret is composed with the
//! Kubernetes side in `cli::aws`.
//!
//! Retries: the SDK's own retry layer is switched off and every call goes through
//! [`crate::retry`] with [`Backoff::API`](crate::retry::Backoff::API), so throttling, 5xx and
//! timeouts share one bounded, jittered policy and real failures surface at once.

pub mod credentials;
pub mod ecr;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::SdkError;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::exit::{Diagnose, Exit};
use crate::retry::Decision;

pub use credentials::{Resolved, TokenClaims};

/// Where and how to reach AWS, independent of credentials.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// The region (`--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub region: String,
    /// An endpoint override for every service (tests: a moto server on 127.0.0.1).
    pub endpoint_url: Option<String>,
    /// The time limit of one HTTP attempt; retries add up to [`crate::retry::Backoff::API`].
    pub attempt_timeout: Duration,
}

impl AwsSettings {
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
}

/// The SDK's HTTP client: hyper with rustls on ring (the program's only crypto provider).
pub(crate) fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An SDK config loader with our HTTP client, region, endpoint and timeouts, and the SDK's retries
/// disabled (we retry with [`crate::retry`]).
pub(crate) fn loader(settings: &AwsSettings) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(settings.attempt_timeout)
                .connect_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// An SDK config that signs with fixed credentials (from [`credentials::resolve`]).
pub async fn sdk_config(settings: &AwsSettings, resolved: &Resolved) -> SdkConfig {
    loader(settings)
        .credentials_provider(resolved.credentials.clone())
        .load()
        .await
}

/// Errors of the AWS module. Messages never contain a token, password or key.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "role {role_arn} needs a GitHub OIDC token, but ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set"
    )]
    MissingIdTokenPermission { role_arn: String },
    #[error("could not get a GitHub OIDC token: {message}")]
    Oidc { message: String },
    #[error(
        "STS refused to assume {role_arn} with the web identity token: {message} (token {claims})"
    )]
    AccessDenied {
        role_arn: String,
        message: String,
        claims: Box<TokenClaims>,
    },
    #[error("{what} has expired: {message}")]
    Expired { what: &'static str, message: String },
    #[error("no AWS credentials: {message}")]
    NoCredentials { message: String },
    #[error("{service} {operation} failed after {attempts} attempt(s): {message}")]
    Api {
        service: &'static str,
        operation: &'static str,
        attempts: u32,
        message: String,
    },
    #[error("ECR returned an unusable authorization token: {0}")]
    BadToken(String),
    #[error("could not write docker config {path}")]
    DockerConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Diagnose for AwsError {
    fn exit(&self) -> Exit {
        match self {
            AwsError::MissingIdTokenPermission { .. }
            | AwsError::AccessDenied { .. }
            | AwsError::NoCredentials { .. }
            | AwsError::Invalid(_) => Exit::Usage,
            AwsError::DockerConfig { .. } => Exit::Failure,
            _ => Exit::Infra,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            AwsError::MissingIdTokenPermission { .. } => {
                "add `permissions: id-token: write` to the job (and keep `contents: read`), or run outside GitHub Actions with credentials in the environment".into()
            }
            AwsError::Oidc { .. } => "the runner's token service did not answer; re-run the job, and check ACTIONS_ID_TOKEN_REQUEST_URL is the runner's own".into(),
            AwsError::AccessDenied { claims, role_arn, .. } => format!(
                "the trust policy of {role_arn} must allow this token: add a condition `token.actions.githubusercontent.com:sub` matching \"{}\" and `:aud` equal to \"{}\" (or change --audience)",
                claims.sub.as_deref().unwrap_or("?"),
                claims.aud.as_deref().unwrap_or("?")
            ),
            AwsError::Expired { what, .. } if what.contains("web identity") => {
                "the OIDC token is fetched fresh per attempt; check the runner's clock, or for a projected service-account token file that kubelet still refreshes it (AWS_WEB_IDENTITY_TOKEN_FILE)".into()
            }
            AwsError::Expired { .. } => "the session expired mid-run: re-run, or raise --duration (the role's MaxSessionDuration caps it)".into(),
            AwsError::NoCredentials { .. } => "in GitHub Actions pass --role-arn (HEALTH_PREDICT_AWS_ROLE_ARN) with `id-token: write`; in a pod set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE; otherwise AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into(),
            AwsError::Api { .. } => "transient errors were retried with backoff; check the region (--region), the endpoint (AWS_ENDPOINT_URL) and the role's ECR permissions".into(),
            AwsError::BadToken(_) => "this is ECR's answer, not your input; re-run, and report it if it persists".into(),
            AwsError::DockerConfig { .. } => "choose a writable path with --docker-config (DOCKER_CONFIG)".into(),
            AwsError::Invalid(_) => "see --help for the accepted values".into(),
        })
    }
}

/// Whether an SDK failure is transient (throttling, 5xx, timeouts, connection errors).
pub(crate) fn decide<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Decision {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalFailure",
        "ServerException",
    ];
    match err {
        SdkError::TimeoutError(_) => Decision::Retry,
        SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => Decision::Retry,
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => Decision::Stop,
        SdkError::ResponseError(r) => status_decision(r.raw().status().as_u16()),
        SdkError::ServiceError(s) => {
            if s.err().code().is_some_and(|c| THROTTLING.contains(&c)) {
                Decision::Retry
            } else {
                status_decision(s.raw().status().as_u16())
            }
        }
        _ => Decision::Stop,
    }
}

pub(crate) fn status_decision(status: u16) -> Decision {
    if status == 429 || status >= 500 {
        Decision::Retry
    } else {
        Decision::Stop
    }
}

/// A one-line description of an SDK failure: the service's code and message when it answered,
/// the transport's cause chain otherwise.
pub(crate) fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match (s.err().code(), s.err().message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}: {}", DisplayErrorContext(err)),
            }
        }
        SdkError::ResponseError(r) => format!(
            "unreadable response (HTTP {}): {}",
            r.raw().status().as_u16(),
            DisplayErrorContext(err)
        ),
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// The service's error code, if it answered with one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Converts an SDK timestamp to a `jiff` one.
pub(crate) fn timestamp(t: &aws_smithy_types::DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(t.secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_decision(429), Decision::Retry);
        assert_eq!(status_decision(503), Decision::Retry);
        assert_eq!(status_decision(400), Decision::Stop);
        assert_eq!(status_decision(403), Decision::Stop);
    }

    #[test]
    fn hints_name_what_to_change() {
        let e = AwsError::MissingIdTokenPermission {
            role_arn: "arn:aws:iam::1:role/x".into(),
        };
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.hint().unwrap().contains("id-token: write"));
        let e = AwsError::AccessDenied {
            role_arn: "arn:aws:iam::1:role/x".into(),
            message: "Not authorized".into(),
            claims: Box::new(TokenClaims {
                sub: Some("repo:o/r:ref:refs/heads/main".into()),
                aud: Some("sts.amazonaws.com".into()),
                ..TokenClaims::default()
            }),
        };
        assert!(e.to_string().contains("repo:o/r:ref:refs/heads/main"));
        assert!(e.hint().unwrap().contains("sts.amazonaws.com"));
    }
}
