//! The accept loop: a cap on open connections, a header-read timeout and an idle timeout, and
//! graceful shutdown. `axum::serve` has none of the three limits, so a client holding thousands
//! of half-sent or idle connections could exhaust file descriptors and starve `/ready`.
//!
//! It knows nothing of routes: it serves any `axum::Router`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection limits (see `ServeConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Per-connection activity, for the idle timeout.
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `born` of the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has had no request in flight, or `None` while one is.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.born.elapsed().saturating_sub(last))
    }
}

/// Decrements the in-flight count even when the request future is dropped (client gone).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection cap, clamped below the process's open-file limit so that accepting never
/// fails with EMFILE (which would also refuse the kubelet's probes).
pub fn effective_max_connections(asked: usize) -> usize {
    let asked = asked.max(1);
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        // Keep room for the model file, logs, the runtime's own descriptors and a probe.
        Ok((soft, _)) => {
            let room = usize::try_from(soft.saturating_sub(32)).unwrap_or(usize::MAX);
            let capped = asked.min(room.max(1));
            if capped < asked {
                tracing::warn!(
                    asked,
                    capped,
                    nofile = soft,
                    "--max-connections is above the open-file limit; capped"
                );
            }
            capped
        }
        Err(_) => asked,
    }
}

/// Serves `app` on `listener` until `token` is cancelled, then lets open connections finish
/// their in-flight requests (the caller bounds how long with its grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    token: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(effective_max_connections(
        limits.max_connections,
    )));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let open = tokio_util::task::TaskTracker::new();
    loop {
        // Take a slot before accepting: at the cap, new connections wait in the kernel's backlog
        // (and get served as slots free) instead of being accepted and starved.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = token.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE/ENFILE/ECONNABORTED: transient; back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = token.cancelled() => break,
                    }
                }
            },
            () = token.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let token = token.clone();
        open.spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let seen = activity.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                seen.in_flight.fetch_add(1, Ordering::AcqRel);
                let guard = InFlight(seen.clone());
                let app = app.clone();
                async move {
                    let response = app.oneshot(req.map(axum::body::Body::new)).await;
                    drop(guard);
                    response
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut closing = false;
            let mut check =
                tokio::time::interval(limits.idle_timeout.max(Duration::from_millis(20)) / 4);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = check.tick(), if !closing => {
                        if activity.idle_for().is_some_and(|d| d >= limits.idle_timeout) {
                            tracing::debug!(%peer, "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    () = token.cancelled(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    open.close();
    open.wait().await;
    Ok(())
}
