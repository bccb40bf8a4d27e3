//! Logs go to stderr through `tracing`; stdout is reserved for data.

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// Appended to every filter: see `init`.
pub const SDK_CAP: &str = "aws_smithy_runtime=debug";

/// Sets up the global subscriber from `--verbose`/`--quiet`, `HEALTH_PREDICT_LOG` and `NO_COLOR`.
pub fn init(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let directive = std::env::var(crate::cli::env::LOG).unwrap_or_else(|_| {
        // Dependencies are noisy at debug; keep them at warn unless asked for by name.
        format!("warn,health_predict={default}")
    });
    // The AWS SDK's orchestrator logs whole response bodies and outputs at TRACE, and ECR's
    // authorization token is not marked sensitive in its model: cap it at DEBUG whatever was asked.
    let directive = format!("{directive},{SDK_CAP}");
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directive))
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    let _ = if crate::ci::in_github_actions() || !color {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
