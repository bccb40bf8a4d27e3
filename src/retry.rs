//! Every retry policy in the program, declared in one place: a maximum number of attempts, an
//! overall deadline, and exponential backoff with full jitter. No bare sleep loops elsewhere.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

/// A bounded retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// The first delay's upper bound; doubles each attempt.
    pub base: Duration,
    /// The largest delay between two attempts.
    pub max_delay: Duration,
    /// No attempt starts after this much time has passed since the first.
    pub deadline: Duration,
}

impl Backoff {
    /// Calls to cloud and platform APIs (AWS, GitHub, registries): throttling and 5xx.
    pub const API: Backoff = Backoff {
        max_attempts: 5,
        base: Duration::from_millis(200),
        max_delay: Duration::from_secs(10),
        deadline: Duration::from_secs(60),
    };
    /// GitHub's REST API: like [`Backoff::API`], but a secondary rate limit asks for waits of a
    /// minute or more (`Retry-After`, or 60 s when it gives none), so the cap and deadline are
    /// longer. A requested wait above `max_delay` is not retried at all (never earlier than asked).
    pub const GITHUB: Backoff = Backoff {
        max_attempts: 5,
        base: Duration::from_millis(500),
        max_delay: Duration::from_secs(120),
        deadline: Duration::from_secs(300),
    };
    /// Waiting for a freshly started server to answer (local `serve`, port-forwards).
    pub const READINESS: Backoff = Backoff {
        max_attempts: 60,
        base: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        deadline: Duration::from_secs(30),
    };
    /// Cluster CLI operations (kind/minikube start) that fail transiently.
    pub const CLUSTER: Backoff = Backoff {
        max_attempts: 3,
        base: Duration::from_secs(2),
        max_delay: Duration::from_secs(20),
        deadline: Duration::from_secs(600),
    };

    /// Downloading a large file (the UCI dataset): few attempts, each may take minutes.
    pub const DOWNLOAD: Backoff = Backoff {
        max_attempts: 3,
        base: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
        deadline: Duration::from_secs(900),
    };

    /// Waiting for another process's registry write to finish (local registry file lock).
    pub const REGISTRY_LOCK: Backoff = Backoff {
        max_attempts: 1000,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
    };

    /// The delay before attempt `attempt + 1` (0-based `attempt` that just failed): full jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_delay);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    /// A copy with a different deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Backoff {
        self.deadline = deadline;
        self
    }

    /// A copy with a different attempt limit.
    pub fn with_attempts(mut self, max_attempts: u32) -> Backoff {
        self.max_attempts = max_attempts.max(1);
        self
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The failure is final: return it.
    Stop,
    /// Transient: wait the policy's backoff and try again.
    Retry,
    /// Transient with a server-given wait (e.g. `Retry-After`), capped by the policy's max delay.
    RetryAfter(Duration),
}

/// Runs `op` until it succeeds, `classify` says stop, or the policy is exhausted. Returns the
/// last error and how many attempts were made.
pub async fn retry<T, E, F, Fut>(
    policy: &Backoff,
    mut op: F,
    classify: impl Fn(&E) -> Decision,
) -> Result<T, (E, u32)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let decision = classify(&e);
                let attempts = attempt + 1;
                if decision == Decision::Stop || attempts >= policy.max_attempts {
                    return Err((e, attempts));
                }
                let wait = match decision {
                    Decision::RetryAfter(d) => d.min(policy.max_delay),
                    _ => policy.delay(attempt),
                };
                if start.elapsed() + wait > policy.deadline {
                    return Err((e, attempts));
                }
                tracing::debug!(
                    attempt = attempts,
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FAST: Backoff = Backoff {
        max_attempts: 4,
        base: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        deadline: Duration::from_secs(5),
    };

    #[test]
    fn delay_is_bounded_by_max() {
        for attempt in 0..40 {
            assert!(Backoff::API.delay(attempt) <= Backoff::API.max_delay);
        }
    }

    #[tokio::test]
    async fn stops_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(
            &FAST,
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("boom") }
            },
            |_| Decision::Retry,
        )
        .await;
        assert_eq!(r.unwrap_err(), ("boom", 4));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn stop_decision_is_final_and_success_returns() {
        let r: Result<(), _> =
            retry(&FAST, |_| async { Err::<(), _>(1) }, |_| Decision::Stop).await;
        assert_eq!(r.unwrap_err(), (1, 1));
        let r = retry(
            &FAST,
            |a| async move { if a < 2 { Err("x") } else { Ok(a) } },
            |_| Decision::Retry,
        )
        .await;
        assert_eq!(r.unwrap(), 2);
    }
}
