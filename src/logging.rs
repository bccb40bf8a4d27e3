//! Logs go to stderr through `tracing`; stdout is reserved for data. Also the one place that
//! scrubs credentials out of URLs before anything prints or writes them.

use std::borrow::Cow;

use tracing::Level;
use tracing_subscriber::filter::{self, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Targets whose events below WARN are dropped whatever `HEALTH_PREDICT_LOG` asks for: the AWS
/// SDK logs request and response bodies at DEBUG/TRACE (ECR's `authorizationToken` is not marked
/// sensitive in its model, so the orchestrator prints it), and the HTTP stacks under it can log
/// header frames. A prefix matches the crate and its modules (`aws_smithy_runtime::client::..`).
pub const QUIET_TARGETS: &[&str] = &[
    "aws_",
    "h2",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "reqwest",
    "rustls",
];

/// Whether an event or span from `target` at `level` may be logged at all.
pub fn allowed(target: &str, level: &Level) -> bool {
    let quiet = QUIET_TARGETS.iter().any(|t| {
        target.starts_with(t)
            && (t.ends_with('_') || target.len() == t.len() || target[t.len()..].starts_with("::"))
    });
    !quiet || *level <= Level::WARN
}

/// How to log, as the command line and the environment say (`cli` reads both; this module reads
/// no variables).
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// `--quiet`: only errors.
    pub quiet: bool,
    /// `--verbose` count: 1 debug, 2 or more trace.
    pub verbose: u8,
    /// A full filter directive (`HEALTH_PREDICT_LOG`) that replaces the level above.
    pub directive: Option<String>,
    /// ANSI colours (stderr is a terminal and `NO_COLOR` is unset or empty).
    pub color: bool,
    /// Running in GitHub Actions, which stamps each line itself: no timestamps.
    pub github_actions: bool,
}

/// Sets up the global subscriber.
pub fn init(settings: &LogSettings) {
    let default = match (settings.quiet, settings.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let directive = settings.directive.clone().unwrap_or_else(|| {
        // Dependencies are noisy at debug; keep them at warn unless asked for by name.
        format!("warn,health_predict={default}")
    });
    // The cap is a filter on the layer, not a directive: a more specific directive such as
    // `aws_smithy_runtime::client::orchestrator=trace` would win over any directive we append.
    let filter = EnvFilter::new(directive).and(filter::filter_fn(|meta| {
        allowed(meta.target(), meta.level())
    }));
    let color = settings.color;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    let registry = tracing_subscriber::registry();
    let _ = if settings.github_actions || !color {
        registry
            .with(layer.without_time().with_filter(filter))
            .try_init()
    } else {
        registry.with(layer.with_filter(filter)).try_init()
    };
}

/// `text` with the user-information part (`user:password@`) removed from every URL in it, so a
/// base URL such as `http://user:pass@host` can be printed, logged or written into a report.
pub fn strip_url_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#`, whitespace, quote or bracket-like
        // delimiter; its last `@` ends the user information.
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ')' | ','
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                changed = true;
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_and_http_stack_events_below_warn_are_dropped() {
        for t in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_ecr",
            "aws_config::sts",
            "h2::codec",
            "hyper_util::client",
            "reqwest::connect",
        ] {
            assert!(!allowed(t, &Level::TRACE), "{t}");
            assert!(!allowed(t, &Level::DEBUG), "{t}");
            assert!(!allowed(t, &Level::INFO), "{t}");
            assert!(allowed(t, &Level::WARN), "{t}");
            assert!(allowed(t, &Level::ERROR), "{t}");
        }
        for t in [
            "health_predict::aws::ecr",
            "health_predict",
            "h2o",
            "hyperloop",
        ] {
            assert!(allowed(t, &Level::TRACE), "{t}");
        }
    }

    #[test]
    fn url_credentials_are_stripped_everywhere_in_a_text() {
        assert_eq!(
            strip_url_credentials("GET http://user:pa%40ss@host:8000/ready failed"),
            "GET http://host:8000/ready failed"
        );
        assert_eq!(
            strip_url_credentials("a https://u@h/x and (http://x:y@[::1]:80)"),
            "a https://h/x and (http://[::1]:80)"
        );
        assert_eq!(
            strip_url_credentials("http://h/path@notcreds"),
            "http://h/path@notcreds"
        );
        assert!(matches!(
            strip_url_credentials("no urls here"),
            Cow::Borrowed(_)
        ));
    }
}
