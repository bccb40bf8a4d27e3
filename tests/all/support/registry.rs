//! Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1 with htpasswd auth,
//! and a local GitHub OIDC token endpoint (axum) that behaves like the runner's.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{free_port, require_tool};

/// A running registry; killed on drop (its storage lives in `dir`).
pub struct Registry {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts `docker-registry serve` with our own config: loopback only, filesystem storage in a
    /// temp dir, htpasswd auth for `user:password` (bcrypt hash made by `htpasswd -B`).
    pub fn start(user: &str, password: &str) -> Option<Registry> {
        Self::start_with(Some((user, password)))
    }

    /// A registry without auth (for tests that put their own gate in front).
    pub fn start_open() -> Option<Registry> {
        Self::start_with(None)
    }

    fn start_with(login: Option<(&str, &str)>) -> Option<Registry> {
        let exe = require_tool("docker-registry")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut auth_section = String::new();
        if let Some((user, password)) = login {
            let htpasswd = require_tool("htpasswd")?;
            let hash = Command::new(&htpasswd)
                .args(["-nbB", user, password])
                .output()
                .expect("htpasswd runs");
            assert!(hash.status.success(), "htpasswd failed");
            let auth = dir.path().join("htpasswd");
            std::fs::write(&auth, &hash.stdout).expect("write htpasswd");
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                auth.display()
            );
        }
        for _ in 0..3 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                    dir.path().join("data").display(),
                ),
            )
            .expect("write config");
            let mut child = Command::new(&exe)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken in the meantime: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Registry {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

/// What the fake token service hands out.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The bearer token the runner gives jobs (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    pub request_token: String,
    pub sub: String,
}

#[derive(Debug, Default)]
pub struct OidcLog {
    pub audiences: Vec<String>,
    pub issued: Vec<String>,
}

/// A local GitHub OIDC token endpoint: checks the bearer token, issues a fresh unsigned-looking
/// JWT (header.payload.signature) per call with `sub`, `aud` (the requested audience), `iss`.
pub struct Oidc {
    pub url: String,
    pub log: Arc<Mutex<OidcLog>>,
    pub calls: Arc<AtomicU32>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Oidc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type OidcState = (OidcConfig, Arc<Mutex<OidcLog>>, Arc<AtomicU32>);

async fn issue(
    State((config, log, calls)): State<OidcState>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    let expected = format!("bearer {}", config.request_token);
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !given.eq_ignore_ascii_case(&expected) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let aud = q.get("audience").cloned().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"test"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::json!({
            "sub": config.sub, "aud": aud, "iss": "https://token.actions.githubusercontent.com",
            "iat": now, "exp": now + 300, "jti": format!("jti-{n}-{}", rand_suffix()),
        })
        .to_string(),
    );
    let sig = URL_SAFE_NO_PAD.encode(format!("signature-{n}-{}", rand_suffix()));
    let jwt = format!("{header}.{payload}.{sig}");
    let mut l = log.lock().expect("lock");
    l.audiences.push(aud);
    l.issued.push(jwt.clone());
    Ok(axum::Json(serde_json::json!({ "value": jwt })))
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    )
}

impl Oidc {
    pub async fn start(config: OidcConfig) -> Oidc {
        let log = Arc::new(Mutex::new(OidcLog::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue))
            .with_state((config, log.clone(), calls.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Oidc {
            // Like the runner's URL: it already carries a query.
            url: format!("http://{addr}/token?api-version=2.0"),
            log,
            calls,
            server,
        }
    }

    pub fn issued(&self) -> Vec<String> {
        self.log.lock().expect("lock").issued.clone()
    }

    pub fn audiences(&self) -> Vec<String> {
        self.log.lock().expect("lock").audiences.clone()
    }
}
