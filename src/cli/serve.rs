//! `serve`: the prediction HTTP API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Context, env};
use crate::exit::Exit;
use crate::serve::{ModelSource, ServeConfig};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model file to serve (written by `health-predict train`).
    #[arg(long, env = env::MODEL)]
    pub model: PathBuf,
    /// The address to listen on; port 0 picks a free port (logged).
    #[arg(long, default_value = "0.0.0.0:8000", env = env::ADDR)]
    pub addr: SocketAddr,
    /// Most encounters in one /predict/batch request.
    #[arg(long, default_value_t = 1000, env = env::BATCH_LIMIT)]
    pub batch_limit: usize,
    /// Largest request body in bytes (413 above it).
    #[arg(long, default_value_t = 1 << 20, env = env::BODY_LIMIT)]
    pub body_limit: usize,
    /// Longest a request may take, body included (408 after it), e.g. `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = env::REQUEST_TIMEOUT)]
    pub request_timeout: Duration,
    /// Most prediction requests in flight; more get 503 with Retry-After (probes are never shed).
    #[arg(long, default_value_t = 32, env = env::MAX_CONCURRENT)]
    pub max_concurrent: usize,
    /// Most open connections (kept below the open-file limit); more wait in the listen backlog.
    #[arg(long, default_value_t = 1024, env = env::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers once the connection waits for them.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = env::HEADER_READ_TIMEOUT)]
    pub header_read_timeout: Duration,
    /// Close a connection with no request in flight for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = env::IDLE_TIMEOUT)]
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = env::SHUTDOWN_GRACE)]
    pub shutdown_grace: Duration,
    /// Give up when the model is not ready within this time.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = env::READY_TIMEOUT)]
    pub ready_timeout: Duration,
    /// The version `/model-info` reports, e.g. the registry version baked into an image
    /// [default: the model file's content id].
    #[arg(long, env = env::SERVE_MODEL_VERSION)]
    pub model_version: Option<String>,
    /// The model name `/model-info` reports [default: health-predict].
    #[arg(long, env = env::SERVE_MODEL_NAME)]
    pub model_name: Option<String>,
    /// The registry alias `/model-info` reports (e.g. `production`).
    #[arg(long, env = env::SERVE_ALIAS)]
    pub alias: Option<String>,
}

/// Parses `10s`, `500ms`, `1m 30s` (jiff's friendly format) or ISO 8601 (`PT10S`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("`{s}` is not a duration like 10s or 500ms: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("`{s}` is negative"))
}

impl ServeArgs {
    fn config(&self) -> ServeConfig {
        let mut c = ServeConfig::new(self.addr, ModelSource::File(self.model.clone()));
        c.batch_limit = self.batch_limit;
        c.body_limit = self.body_limit;
        c.request_timeout = self.request_timeout;
        c.max_concurrent = self.max_concurrent;
        c.max_connections = self.max_connections;
        c.header_read_timeout = self.header_read_timeout;
        c.idle_timeout = self.idle_timeout;
        c.identity = crate::serve::Identity {
            name: self.model_name.clone(),
            version: self.model_version.clone(),
            alias: self.alias.clone(),
        };
        c
    }
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: ServeArgs, _: &Context) -> anyhow::Result<Exit> {
    let mut handle = crate::serve::start(args.config()).await?;
    let token = handle.shutdown_token();
    let signals = tokio::spawn({
        let token = token.clone();
        async move {
            termination().await;
            tracing::info!("shutting down: finishing in-flight requests");
            token.cancel();
        }
    });
    let ready = tokio::select! {
        r = handle.wait_ready(args.ready_timeout) => Some(r),
        _ = token.cancelled() => None,
    };
    match ready {
        Some(Ok(info)) => tracing::info!(
            url = %handle.base_url(), model = %info.name, version = %info.version,
            ready_ms = handle.uptime().as_millis() as u64, "serving"
        ),
        Some(Err(e)) => {
            signals.abort();
            let _ = handle.shutdown(args.shutdown_grace).await;
            return Err(e.into());
        }
        None => {}
    }
    let stopped = handle.stopped(args.shutdown_grace).await;
    signals.abort();
    stopped?;
    tracing::info!("stopped");
    Ok(Exit::Success)
}
