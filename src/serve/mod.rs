//! The prediction HTTP API (`health-predict serve`): liveness, readiness that means a verified and
//! warmed model, model identity, single and batch predictions with field-level validation,
//! OpenAPI and Prometheus metrics, limits, timeouts and graceful shutdown.
//!
//! [`start`] binds, returns a [`ServerHandle`] at once (its bound address, readiness and
//! `shutdown`) and loads the model in the background, so `/health` answers while `/ready` says
//! 503 until the model is ready. It knows nothing of registries, clusters or the pipeline.

pub(crate) mod api;
pub mod encounter;
mod listener;
pub(crate) mod metrics;
mod model_file;
pub(crate) mod openapi;
pub(crate) mod scorer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::exit::{Diagnose, Exit};
pub use api::{ModelInfo, Phase};
pub use encounter::{Encounter, FieldError};
pub use scorer::{Contribution, ModelDescription, Scorer};

/// Warm-up scorings before `/ready` turns 200.
const WARM_UP: usize = 200;

/// Where the model comes from.
#[derive(Clone)]
pub enum ModelSource {
    /// A model file: read, checksum-verified and parsed by the model module.
    File(PathBuf),
    /// A model already in memory (the pipeline, tests), with a description of its origin.
    Scorer {
        scorer: Arc<dyn Scorer>,
        source: String,
    },
}

impl std::fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::File(p) => f.debug_tuple("File").field(p).finish(),
            ModelSource::Scorer { source, .. } => f.debug_tuple("Scorer").field(source).finish(),
        }
    }
}

/// Identity overrides, e.g. from a registry: name, version and alias shown by `/model-info`.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: Option<String>,
    pub version: Option<String>,
    pub alias: Option<String>,
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address to bind; port 0 picks a free port (see [`ServerHandle::addr`]).
    pub addr: SocketAddr,
    pub model: ModelSource,
    pub identity: Identity,
    /// Most encounters in one `/predict/batch` request.
    pub batch_limit: usize,
    /// Largest request body in bytes (413 above).
    pub body_limit: usize,
    /// Longest time a request may take, body included (408 after).
    pub request_timeout: Duration,
    /// Most prediction requests in flight at once; more are shed with 503 and `Retry-After`.
    /// `/health`, `/ready` and `/metrics` are never shed.
    pub max_concurrent: usize,
    /// Most open connections (clamped below the open-file limit); more wait in the backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers once the connection waits for them (HTTP/1).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl ServeConfig {
    /// Defaults: batch limit 1,000, body limit 1 MiB, request timeout 10 s, 32 prediction
    /// requests in flight, 1,024 connections, header-read timeout 10 s, idle timeout 60 s.
    pub fn new(addr: SocketAddr, model: ModelSource) -> ServeConfig {
        ServeConfig {
            addr,
            model,
            identity: Identity::default(),
            batch_limit: 1000,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(10),
            max_concurrent: 32,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve model {source_name}: {reason}")]
    Model { source_name: String, reason: String },
    #[error("the model was not ready within {0:?}")]
    NotReady(Duration),
    #[error("the server stopped with an error")]
    Server(#[source] std::io::Error),
    #[error("in-flight requests did not finish within {0:?}")]
    ShutdownTimeout(Duration),
}

impl Diagnose for ServeError {
    fn exit(&self) -> Exit {
        match self {
            ServeError::Bind { .. } => Exit::Usage,
            ServeError::Model { .. } => Exit::InvalidInput,
            ServeError::NotReady(_) | ServeError::Server(_) | ServeError::ShutdownTimeout(_) => {
                Exit::Infra
            }
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ServeError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                "another process listens on that port: choose another with --addr (HEALTH_PREDICT_ADDR)".into()
            }
            ServeError::Bind { .. } => {
                "check --addr (HEALTH_PREDICT_ADDR): an address of this host and a free port".into()
            }
            ServeError::Model { .. } => {
                "check --model (HEALTH_PREDICT_MODEL): a model file written by `health-predict train`, unmodified since".into()
            }
            ServeError::NotReady(_) => "see the log above for the load step that is slow or stuck".into(),
            ServeError::Server(_) => "see the log above; restart the server".into(),
            ServeError::ShutdownTimeout(_) => {
                "a request took longer than the grace period; raise --shutdown-grace".into()
            }
        })
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    token: CancellationToken,
    phase: watch::Receiver<(Phase, Option<String>)>,
    state: Arc<api::AppState>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    started: Instant,
    source: String,
}

impl ServerHandle {
    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URL clients on this host can use (`0.0.0.0`/`::` become loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{ip}:{}", self.addr.port())
    }

    /// The current phase and, when not ready, why.
    pub fn phase(&self) -> (Phase, Option<String>) {
        self.phase.borrow().clone()
    }

    /// Time since [`start`] was called.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the model is ready (returns its info) or failed (returns why), at most
    /// `deadline`.
    pub async fn wait_ready(&mut self, deadline: Duration) -> Result<ModelInfo, ServeError> {
        let waited = tokio::time::timeout(
            deadline,
            self.phase
                .wait_for(|(p, _)| matches!(p, Phase::Ready | Phase::Failed)),
        )
        .await
        .map(|r| r.map(|guard| guard.clone()));
        match waited {
            Err(_) => Err(ServeError::NotReady(deadline)),
            Ok(Err(_)) => Err(ServeError::Server(std::io::Error::other(
                "server task ended",
            ))),
            Ok(Ok((Phase::Ready, _))) => match self.state.ready.get() {
                Some(l) => Ok(l.info.clone()),
                None => Err(ServeError::NotReady(deadline)),
            },
            Ok(Ok((_, reason))) => Err(ServeError::Model {
                source_name: self.source_name(),
                reason: reason.unwrap_or_else(|| "unknown".into()),
            }),
        }
    }

    fn source_name(&self) -> String {
        self.source.clone()
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (at most `grace`), and
    /// returns once the server has stopped.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ServeError> {
        self.token.cancel();
        self.stopped(grace).await
    }

    /// Waits for the server to stop (after its token was cancelled), at most `grace` after that.
    pub async fn stopped(mut self, grace: Duration) -> Result<(), ServeError> {
        self.token.cancelled().await;
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ServeError::Server(e)),
            Ok(Err(join)) => Err(ServeError::Server(std::io::Error::other(join.to_string()))),
            Err(_) => {
                self.task.abort();
                Err(ServeError::ShutdownTimeout(grace))
            }
        }
    }
}

/// Binds and starts serving; the model loads in the background (watch [`ServerHandle::phase`]
/// or `/ready`). Must be called inside a Tokio runtime.
pub async fn start(config: ServeConfig) -> Result<ServerHandle, ServeError> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.addr,
        source,
    })?;
    let (phase_tx, phase_rx) = watch::channel((Phase::Loading, None));
    let state = Arc::new(api::AppState {
        ready: OnceLock::new(),
        phase: phase_tx,
        metrics: metrics::Metrics::default(),
        batch_limit: config.batch_limit.max(1),
        body_limit: config.body_limit,
        timeout: config.request_timeout,
        openapi: OnceLock::new(),
        predicting: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent.max(1))),
        max_concurrent: config.max_concurrent.max(1),
    });
    let _ = state.openapi.set(openapi::document(state.batch_limit));
    let token = CancellationToken::new();
    let app = api::router(state.clone());
    let limits = listener::Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
    };
    let task = tokio::spawn(listener::serve(listener, app, limits, token.clone()));
    tracing::info!(%addr, "listening");
    let source = match &config.model {
        ModelSource::File(p) => p.display().to_string(),
        ModelSource::Scorer { source, .. } => source.clone(),
    };
    let loader_state = state.clone();
    let (model, identity) = (config.model, config.identity);
    tokio::spawn(async move {
        let s = loader_state.clone();
        let outcome = tokio::task::spawn_blocking(move || load_and_warm(&s, model, identity)).await;
        let error = match outcome {
            Ok(Ok(info)) => {
                tracing::info!(
                    model = %info.name, version = %info.version,
                    ready_ms = started.elapsed().as_millis() as u64,
                    "model ready"
                );
                return;
            }
            Ok(Err(reason)) => reason,
            Err(join) => format!("the loader stopped: {join}"),
        };
        tracing::error!(reason = %error, "model failed to load; /ready stays 503");
        loader_state.set_phase(Phase::Failed, Some(error));
    });
    Ok(ServerHandle {
        addr,
        token,
        phase: phase_rx,
        state,
        task,
        started,
        source,
    })
}

/// Loads, verifies and warms the model, then publishes it. Runs on a blocking thread.
fn load_and_warm(
    state: &api::AppState,
    model: ModelSource,
    identity: Identity,
) -> Result<ModelInfo, String> {
    let (scorer, source) = match model {
        ModelSource::File(path) => {
            let shown = path.display().to_string();
            (model_file::load(&path)?, shown)
        }
        ModelSource::Scorer { scorer, source } => (scorer, source),
    };
    state.set_phase(Phase::Warming, Some("scoring warm-up requests".into()));
    let example = Encounter::from_json(&encounter::example_json(), "")
        .map_err(|e| format!("the built-in warm-up encounter is invalid: {e:?}"))?;
    for _ in 0..WARM_UP {
        let p = scorer.score(&example);
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("warm-up scoring returned {p}, not a probability"));
        }
    }
    let _ = scorer.explain(&example, api::DEFAULT_TOP);
    let d = scorer.describe();
    let info = ModelInfo {
        name: identity.name.unwrap_or(d.name),
        version: identity.version.unwrap_or(d.version),
        alias: identity.alias,
        data_fingerprint: d.data_fingerprint,
        metrics: d.metrics,
        threshold: d.threshold,
        git_commit: d.git_commit,
        loaded_at: jiff::Timestamp::now().to_string(),
        feature_names: d.feature_names,
        checksum: d.checksum,
        source,
    };
    if !(0.0..=1.0).contains(&info.threshold) {
        return Err(format!(
            "the model's threshold {} is not in [0, 1]",
            info.threshold
        ));
    }
    let _ = state.ready.set(api::Loaded {
        scorer,
        info: info.clone(),
    });
    state.set_phase(Phase::Ready, None);
    Ok(info)
}
