//! Short-lived AWS credentials without stored keys.
//!
//! In GitHub Actions: a fresh OIDC token from the runner (`ACTIONS_ID_TOKEN_REQUEST_URL`, bearer
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`) for every attempt, exchanged with STS
//! `AssumeRoleWithWebIdentity`. Elsewhere: the SDK's default chain (a web-identity token file as in
//! a pod with a projected service-account token, or keys already in the environment).
//!
//! The OIDC token, the request token and the session credentials are wrapped in [`Secret`] the
//! moment they arrive; only the token's `sub`/`aud`/`iss` claims (decoded, not verified) are ever
//! shown, to explain a trust-policy refusal.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::{AwsError, AwsSettings, code, describe, loader};
use crate::retry::{Backoff, Decision, retry};
use crate::secret::{Secret, redact};

/// The audience GitHub's OIDC token is requested for, as AWS's IAM OIDC provider expects.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The runner's token service variables (present only with `permissions: id-token: write`).
pub const REQUEST_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const REQUEST_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// Every variable [`CredentialRequest::source`] reads: the token service, whether this is a
/// runner, and the run that names the session.
pub const SOURCE_VARS: [&str; 5] = [
    REQUEST_URL_VAR,
    REQUEST_TOKEN_VAR,
    "GITHUB_ACTIONS",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
];

/// Which credential source to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// GitHub OIDC when a role ARN is given and the runner offers tokens, else the default chain.
    #[default]
    Auto,
    /// Always GitHub OIDC -> AssumeRoleWithWebIdentity (fails without `id-token: write`).
    GithubOidc,
    /// The SDK's default chain (environment keys, web-identity token file, profiles).
    Default,
}

/// What the caller asked for; resolved against the environment by [`CredentialRequest::source`].
#[derive(Debug, Clone)]
pub struct CredentialRequest {
    pub mode: CredentialMode,
    /// The role to assume with the GitHub OIDC token.
    pub role_arn: Option<String>,
    pub audience: String,
    /// Defaults to `gh-<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>`.
    pub session_name: Option<String>,
    /// The session's lifetime (STS accepts 900 s up to the role's MaxSessionDuration).
    pub duration: Duration,
}

/// A resolved credential source.
#[derive(Debug, Clone)]
pub enum Source {
    GithubOidc {
        request_url: String,
        request_token: Secret,
        audience: String,
        role_arn: String,
        session_name: String,
        duration: Duration,
    },
    DefaultChain,
}

impl CredentialRequest {
    /// Chooses the source from the request and the environment (read through `var`).
    pub fn source(&self, var: impl Fn(&str) -> Option<String>) -> Result<Source, AwsError> {
        let url = var(REQUEST_URL_VAR).filter(|v| !v.is_empty());
        let token = var(REQUEST_TOKEN_VAR).filter(|v| !v.is_empty());
        let oidc = match self.mode {
            CredentialMode::Default => false,
            CredentialMode::GithubOidc => true,
            CredentialMode::Auto => {
                self.role_arn.is_some()
                    && (url.is_some() || var("GITHUB_ACTIONS").is_some_and(|v| v == "true"))
            }
        };
        if !oidc {
            return Ok(Source::DefaultChain);
        }
        let role_arn = self.role_arn.clone().ok_or_else(|| {
            AwsError::Invalid("--credentials github-oidc needs --role-arn".into())
        })?;
        if !role_arn.starts_with("arn:") {
            return Err(AwsError::Invalid(format!(
                "--role-arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), got {role_arn:?}"
            )));
        }
        let (Some(request_url), Some(request_token)) = (url, token) else {
            return Err(AwsError::MissingIdTokenPermission { role_arn });
        };
        let secs = self.duration.as_secs();
        if !(900..=43_200).contains(&secs) {
            return Err(AwsError::Invalid(format!(
                "--duration must be between 900 and 43200 seconds, got {secs}"
            )));
        }
        let session_name = match &self.session_name {
            Some(s) => s.clone(),
            None => session_name(var("GITHUB_RUN_ID"), var("GITHUB_RUN_ATTEMPT")),
        };
        Ok(Source::GithubOidc {
            request_url,
            request_token: Secret::new(request_token),
            audience: self.audience.clone(),
            role_arn,
            session_name,
            duration: self.duration,
        })
    }
}

/// An STS session name from the run (`[\w+=,.@-]{2,64}`).
pub fn session_name(run_id: Option<String>, attempt: Option<String>) -> String {
    let raw = match run_id {
        Some(id) => format!("gh-{id}-{}", attempt.unwrap_or_else(|| "1".into())),
        None => format!(
            "health-predict-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.len() < 2 {
        "health-predict".into()
    } else {
        clean
    }
}

/// Credentials ready to sign requests, and where they came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub credentials: Credentials,
    /// `github-oidc` or `default-chain`.
    pub source: &'static str,
    pub role_arn: Option<String>,
}

/// Resolves credentials: the OIDC exchange (with retries, a fresh token every attempt) or the
/// default chain (checked now, so a missing credential fails here with a hint).
pub async fn resolve(source: &Source, settings: &AwsSettings) -> Result<Resolved, AwsError> {
    match source {
        Source::DefaultChain => default_chain(settings).await,
        Source::GithubOidc {
            request_url,
            request_token,
            audience,
            role_arn,
            session_name,
            duration,
        } => {
            let http = reqwest::Client::builder()
                .timeout(settings.attempt_timeout)
                .build()
                .map_err(|e| AwsError::Oidc {
                    message: e.to_string(),
                })?;
            let config = loader(settings).no_credentials().load().await;
            let sts = aws_sdk_sts::Client::new(&config);
            let exchange = |attempt: u32| {
                let (http, sts) = (&http, &sts);
                async move {
                    let token =
                        fetch_oidc_token(http, request_url, request_token, audience).await?;
                    tracing::debug!(attempt, claims = %token_claims(token.expose()), "got a GitHub OIDC token");
                    assume_role(sts, &token, role_arn, session_name, *duration).await
                }
            };
            match retry(&Backoff::API, exchange, |e: &(AwsError, Decision)| e.1).await {
                Ok(credentials) => Ok(Resolved {
                    credentials,
                    source: "github-oidc",
                    role_arn: Some(role_arn.clone()),
                }),
                Err(((AwsError::Api { message, .. }, _), attempts)) => Err(AwsError::Api {
                    service: "STS",
                    operation: "AssumeRoleWithWebIdentity",
                    attempts,
                    message,
                }),
                Err(((e, _), _)) => Err(e),
            }
        }
    }
}

/// GETs a token from the runner's token service. The request token and the returned token never
/// reach a log or an error message.
async fn fetch_oidc_token(
    http: &reqwest::Client,
    request_url: &str,
    request_token: &Secret,
    audience: &str,
) -> Result<Secret, (AwsError, Decision)> {
    let mut url = reqwest::Url::parse(request_url).map_err(|e| {
        (
            AwsError::Oidc {
                message: format!("{REQUEST_URL_VAR} is not a URL: {e}"),
            },
            Decision::Stop,
        )
    })?;
    url.query_pairs_mut().append_pair("audience", audience);
    let shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    );
    let resp = http
        .get(url)
        .bearer_auth(request_token.expose())
        .header("accept", "application/json; api-version=2.0")
        .send()
        .await
        .map_err(|e| {
            (
                AwsError::Oidc {
                    message: format!(
                        "{shown}: {}",
                        redact(&crate::exit::chain_text(&e), &[request_token])
                    ),
                },
                Decision::Retry,
            )
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err((
            AwsError::Oidc {
                message: format!("{shown} answered HTTP {}", status.as_u16()),
            },
            super::status_decision(status.as_u16()),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Body {
        value: Option<String>,
    }
    let body: Body = resp.json().await.map_err(|e| {
        (
            AwsError::Oidc {
                message: format!(
                    "{shown}: unreadable answer: {}",
                    crate::exit::chain_text(&e)
                ),
            },
            Decision::Retry,
        )
    })?;
    match body.value.filter(|v| !v.is_empty()) {
        Some(v) => Ok(Secret::new(v)),
        None => Err((
            AwsError::Oidc {
                message: format!("{shown}: the answer has no `value`"),
            },
            Decision::Stop,
        )),
    }
}

async fn assume_role(
    sts: &aws_sdk_sts::Client,
    token: &Secret,
    role_arn: &str,
    session_name: &str,
    duration: Duration,
) -> Result<Credentials, (AwsError, Decision)> {
    let result = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(token.expose())
        .duration_seconds(duration.as_secs().min(i32::MAX as u64) as i32)
        .send()
        .await;
    let out = match result {
        Ok(out) => out,
        Err(err) => {
            let message = redact(&describe(&err), &[token]);
            let decision = super::decide(&err);
            return Err((
                match code(&err) {
                    Some("AccessDenied" | "AccessDeniedException" | "InvalidIdentityToken") => {
                        AwsError::AccessDenied {
                            role_arn: role_arn.into(),
                            message,
                            claims: Box::new(token_claims(token.expose())),
                        }
                    }
                    Some("ExpiredTokenException" | "ExpiredToken") => AwsError::Expired {
                        what: "the web identity (OIDC) token",
                        message,
                    },
                    _ => {
                        return Err((
                            AwsError::Api {
                                service: "STS",
                                operation: "AssumeRoleWithWebIdentity",
                                attempts: 1,
                                message,
                            },
                            decision,
                        ));
                    }
                },
                Decision::Stop,
            ));
        }
    };
    let c = out.credentials().ok_or_else(|| {
        (
            AwsError::Api {
                service: "STS",
                operation: "AssumeRoleWithWebIdentity",
                attempts: 1,
                message: "the answer has no credentials".into(),
            },
            Decision::Stop,
        )
    })?;
    // Mask all three before anything else happens with them.
    let key_id = Secret::new(c.access_key_id());
    let secret_key = Secret::new(c.secret_access_key());
    let session = Secret::new(c.session_token());
    let expiry = SystemTime::try_from(*c.expiration()).ok();
    let credentials = Credentials::new(
        key_id.expose(),
        secret_key.expose(),
        Some(session.expose().to_owned()),
        expiry,
        "github-oidc",
    );
    Ok(credentials)
}

async fn default_chain(settings: &AwsSettings) -> Result<Resolved, AwsError> {
    let config = loader(settings).load().await;
    let Some(provider) = config.credentials_provider() else {
        return Err(AwsError::NoCredentials {
            message: "the default chain is not configured".into(),
        });
    };
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| classify_chain_error(&e))?;
    Secret::new(credentials.access_key_id());
    Secret::new(credentials.secret_access_key());
    if let Some(t) = credentials.session_token() {
        Secret::new(t);
    }
    Ok(Resolved {
        credentials,
        source: "default-chain",
        role_arn: std::env::var("AWS_ROLE_ARN").ok(),
    })
}

fn classify_chain_error(e: &aws_credential_types::provider::error::CredentialsError) -> AwsError {
    let message = aws_smithy_types::error::display::DisplayErrorContext(e).to_string();
    if message.contains("ExpiredToken") {
        AwsError::Expired {
            what: "the web identity token file",
            message,
        }
    } else if message.contains("AccessDenied") || message.contains("InvalidIdentityToken") {
        let claims = std::env::var("AWS_WEB_IDENTITY_TOKEN_FILE")
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| {
                let t = Secret::new(t.trim());
                token_claims(t.expose())
            })
            .unwrap_or_default();
        AwsError::AccessDenied {
            role_arn: std::env::var("AWS_ROLE_ARN").unwrap_or_else(|_| "the role".into()),
            message,
            claims: Box::new(claims),
        }
    } else {
        AwsError::NoCredentials { message }
    }
}

/// The claims of a JWT that explain a trust-policy decision, decoded without verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenClaims {
    pub sub: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub exp: Option<i64>,
}

impl fmt::Display for TokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sub={:?} aud={:?} iss={:?}",
            self.sub.as_deref().unwrap_or("?"),
            self.aud.as_deref().unwrap_or("?"),
            self.iss.as_deref().unwrap_or("?")
        )?;
        if let Some(exp) = self.exp.and_then(|e| jiff::Timestamp::from_second(e).ok()) {
            write!(f, " exp={exp}")?;
        }
        Ok(())
    }
}

/// Decodes a JWT's payload claims (never its signature, never the token itself).
pub fn token_claims(jwt: &str) -> TokenClaims {
    let Some(payload) = jwt.split('.').nth(1) else {
        return TokenClaims::default();
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return TokenClaims::default();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return TokenClaims::default();
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let aud = match v.get("aud") {
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => text("aud"),
    };
    TokenClaims {
        sub: text("sub"),
        aud,
        iss: text("iss"),
        exp: v.get("exp").and_then(|x| x.as_i64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request(mode: CredentialMode, role: Option<&str>) -> CredentialRequest {
        CredentialRequest {
            mode,
            role_arn: role.map(str::to_owned),
            audience: DEFAULT_AUDIENCE.into(),
            session_name: None,
            duration: Duration::from_secs(3600),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn actions_without_id_token_permission_is_a_clear_error() {
        let r = request(CredentialMode::Auto, Some("arn:aws:iam::1:role/r"));
        let err = r.source(env(&[("GITHUB_ACTIONS", "true")])).unwrap_err();
        assert!(matches!(err, AwsError::MissingIdTokenPermission { .. }));
    }

    #[test]
    fn auto_picks_oidc_only_with_a_role_and_a_token_service() {
        let vars = [
            (REQUEST_URL_VAR, "http://x/t?api=1"),
            (REQUEST_TOKEN_VAR, "rt"),
        ];
        let r = request(CredentialMode::Auto, Some("arn:aws:iam::1:role/r"));
        assert!(matches!(
            r.source(env(&vars)).unwrap(),
            Source::GithubOidc { .. }
        ));
        let r = request(CredentialMode::Auto, None);
        assert!(matches!(
            r.source(env(&vars)).unwrap(),
            Source::DefaultChain
        ));
        let r = request(CredentialMode::Default, Some("arn:aws:iam::1:role/r"));
        assert!(matches!(
            r.source(env(&vars)).unwrap(),
            Source::DefaultChain
        ));
    }

    #[test]
    fn session_name_comes_from_the_run() {
        assert_eq!(
            session_name(Some("123".into()), Some("2".into())),
            "gh-123-2"
        );
        assert!(session_name(None, None).starts_with("health-predict-"));
        assert_eq!(session_name(Some("a/b c".repeat(30)), None).len(), 64);
    }

    #[test]
    fn claims_are_decoded_without_the_token() {
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"repo:acme/hp:ref:refs/heads/main","aud":["sts.amazonaws.com"],"iss":"https://token.actions.githubusercontent.com","exp":1700000000}"#,
        );
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        let c = token_claims(&jwt);
        assert_eq!(c.sub.as_deref(), Some("repo:acme/hp:ref:refs/heads/main"));
        assert_eq!(c.aud.as_deref(), Some("sts.amazonaws.com"));
        let shown = c.to_string();
        assert!(!shown.contains(&payload) && !shown.contains("c2ln"));
        assert_eq!(token_claims("not a jwt"), TokenClaims::default());
    }
}
