//! A real `mlflow server` on 127.0.0.1 (sqlite backend, temporary artifacts directory), started
//! once per test-binary run: MLflow takes ~15 s to start. A bash watchdog owns the server's
//! process group and ends it, and removes its directory, when this test process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, require_tool};

/// A running MLflow tracking server.
#[derive(Debug)]
pub struct Mlflow {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub dir: PathBuf,
    /// The watchdog owning the server; it ends the server when this process exits.
    watchdog: std::process::Child,
}

impl Mlflow {
    /// A registry URI for this server with its own registered model and experiment, so tests
    /// sharing the server do not see each other's versions.
    pub fn registry_uri(&self, model: &str) -> String {
        format!("mlflow+{}?model={model}&experiment={model}", self.url)
    }
}

static SERVER: OnceLock<Option<Mlflow>> = OnceLock::new();

const WATCHDOG: &str = r#"
set -m
"$MLFLOW" server --host 127.0.0.1 --port "$PORT" --workers 1 \
  --backend-store-uri "sqlite:///$DIR/mlflow.db" --artifacts-destination "$DIR/artifacts" \
  >"$DIR/server.log" 2>&1 &
pid=$!
trap 'kill -TERM -- -$pid 2>/dev/null; sleep 2; kill -KILL -- -$pid 2>/dev/null; rm -rf "$DIR"' EXIT
trap 'exit 0' TERM
while kill -0 "$PARENT" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
"#;

/// The shared server, or `None` (skipped) where `mlflow` is not installed outside CI.
pub fn server() -> Option<&'static Mlflow> {
    SERVER.get_or_init(start).as_ref()
}

// The watchdog runs for the life of the test process and exits by itself after it (it is kept in
// `Mlflow` and waited for on the failure path), so the returned child is deliberately not reaped.
#[allow(clippy::zombie_processes)]
fn start() -> Option<Mlflow> {
    let mlflow = require_tool("mlflow")?;
    let dir = tempfile::Builder::new()
        .prefix("hp-mlflow-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let port = free_port();
    let mut watchdog = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .env("MLFLOW", &mlflow)
        .env("PORT", port.to_string())
        .env("DIR", &dir)
        .env("PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash starts the MLflow watchdog");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(180);
    let started = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                eprintln!(
                    "mlflow server ready on {url} after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Some(Mlflow { url, dir, watchdog });
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            // SIGTERM lets the watchdog's trap stop the server group and remove its directory.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(watchdog.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = watchdog.wait();
            panic!("mlflow server did not answer /health within 180 s; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
