//! One GitHub REST call, retried by the program's policy: 5xx and transport errors back off with
//! jitter; secondary rate limits (403/429 with `Retry-After`, or `x-ratelimit-remaining: 0` with
//! `x-ratelimit-reset`, or GitHub's "secondary rate limit" message) wait as long as GitHub asks,
//! bounded by the policy's deadline. octocrab's own retry layer is switched off so that waits are
//! decided in one place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::GithubError;
use crate::retry::{Backoff, Decision, retry};
use crate::secret::Secret;

/// The GitHub REST API for one token.
#[derive(Debug, Clone)]
pub struct Api {
    octo: Octocrab,
    policy: Backoff,
}

/// A failed attempt, before classification.
#[derive(Debug)]
pub enum Failure {
    Status {
        status: StatusCode,
        message: String,
        wait: Option<Duration>,
    },
    Transport(String),
}

impl Failure {
    fn decision(&self, policy: &Backoff) -> Decision {
        match self {
            Failure::Transport(_) => Decision::Retry,
            Failure::Status {
                wait: Some(wait), ..
            } => {
                // Retrying earlier than GitHub asks only burns attempts; a longer wait (an
                // exhausted hourly quota) fails now with the reason.
                if *wait > policy.max_delay {
                    Decision::Stop
                } else {
                    Decision::RetryAfter(*wait)
                }
            }
            Failure::Status { status, .. } if status.is_server_error() => Decision::Retry,
            Failure::Status { .. } => Decision::Stop,
        }
    }
}

impl Api {
    /// A client for `base_url` (`GITHUB_API_URL`; `https://api.github.com` on github.com).
    pub fn new(base_url: &str, token: &Secret, policy: Backoff) -> Result<Api, GithubError> {
        let what = || "GitHub client".to_owned();
        let octo = Octocrab::builder()
            .personal_token(token.expose().to_owned())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .base_uri(base_url.trim_end_matches('/'))
            .map_err(|e| GithubError::Transport {
                what: what(),
                reason: format!("bad API URL `{base_url}`: {e}"),
            })?
            .build()
            .map_err(|e| GithubError::Transport {
                what: what(),
                reason: e.to_string(),
            })?;
        Ok(Api { octo, policy })
    }

    /// The retry policy in use.
    pub fn policy(&self) -> Backoff {
        self.policy
    }

    /// The same client with a different retry policy (e.g. one attempt for a non-idempotent
    /// request whose outcome must be checked before trying again).
    pub fn with_policy(&self, policy: Backoff) -> Api {
        Api {
            octo: self.octo.clone(),
            policy,
        }
    }

    /// Sends `method path` with an optional JSON body and decodes the answer, retrying as the
    /// policy allows. `what` names the operation in errors ("create check run").
    pub async fn call<B, T>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, GithubError>
    where
        B: Serialize + ?Sized + Sync,
        T: DeserializeOwned,
    {
        let text = retry(
            &self.policy,
            |attempt| {
                let method = method.clone();
                async move {
                    if attempt > 0 {
                        tracing::info!(what, attempt = attempt + 1, "retrying GitHub request");
                    }
                    self.once(method, path, body).await
                }
            },
            |f: &Failure| f.decision(&self.policy),
        )
        .await
        .map_err(|(failure, attempts)| match failure {
            Failure::Status {
                status, message, ..
            } => GithubError::Api {
                what: attempts_note(what, attempts),
                status: status.as_u16(),
                message,
            },
            Failure::Transport(reason) => GithubError::Transport {
                what: attempts_note(what, attempts),
                reason,
            },
        })?;
        serde_json::from_str(&text).map_err(|e| GithubError::Decode {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn once<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<String, Failure> {
        let transport = |e: octocrab::Error| Failure::Transport(crate::exit::chain_text(&e));
        let response = match method {
            Method::POST => self.octo._post(path, body).await,
            Method::PATCH => self.octo._patch(path, body).await,
            Method::PUT => self.octo._put(path, body).await,
            _ => self.octo._get(path).await,
        }
        .map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = self
            .octo
            .body_to_string(response)
            .await
            .map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(300).collect());
        let wait = rate_limit_wait(status, &headers, &message, SystemTime::now());
        Err(Failure::Status {
            status,
            message,
            wait,
        })
    }
}

fn attempts_note(what: &str, attempts: u32) -> String {
    if attempts > 1 {
        format!("{what} (after {attempts} attempts)")
    } else {
        what.to_owned()
    }
}

/// How long GitHub asks us to wait, when the response is a rate limit. GitHub's guidance: obey
/// `Retry-After`; else when `x-ratelimit-remaining` is 0 wait until `x-ratelimit-reset`; else for
/// a secondary rate limit wait at least a minute.
pub fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0")
        && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())
    {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    if message.to_ascii_lowercase().contains("rate limit")
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Some(Duration::from_secs(60));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rate_limit_waits_follow_github_guidance() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let f = StatusCode::FORBIDDEN;
        assert_eq!(
            rate_limit_wait(f, &headers(&[("retry-after", "7")]), "", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(
                f,
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1030")
                ]),
                "",
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            rate_limit_wait(
                f,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit",
                now
            ),
            Some(Duration::from_secs(60))
        );
        // A plain permission refusal is not a rate limit.
        assert_eq!(
            rate_limit_wait(
                f,
                &HeaderMap::new(),
                "Resource not accessible by integration",
                now
            ),
            None
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::NOT_FOUND,
                &headers(&[("retry-after", "1")]),
                "",
                now
            ),
            None
        );
    }

    #[test]
    fn decisions_stop_on_hopeless_waits_and_client_errors() {
        let p = Backoff::GITHUB;
        let status = |s: u16, wait: Option<u64>| Failure::Status {
            status: StatusCode::from_u16(s).unwrap(),
            message: String::new(),
            wait: wait.map(Duration::from_secs),
        };
        assert_eq!(
            status(403, Some(5)).decision(&p),
            Decision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(status(403, Some(3600)).decision(&p), Decision::Stop);
        assert_eq!(status(502, None).decision(&p), Decision::Retry);
        assert_eq!(status(422, None).decision(&p), Decision::Stop);
        assert_eq!(Failure::Transport("x".into()).decision(&p), Decision::Retry);
    }
}
