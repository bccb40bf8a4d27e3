//! A real `moto_server` (PyPI `moto[server]`) on 127.0.0.1 for STS and ECR, and a fault-injection
//! proxy in front of it (or of the registry) that answers scripted faults (429/`ThrottlingException`, 5xx, AWS error
//! codes, slow answers past the client's timeout) before passing requests through, and records
//! what passed (so tests learn the session credentials STS handed out and can scan for them).

use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;

use super::{free_port, require_tool};

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers (None: skipped locally).
    pub fn start() -> Option<Moto> {
        let exe = require_tool("moto_server")?;
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let mut moto = Moto {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break; // port taken in the meantime: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(moto);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server did not start");
    }
}

/// A scripted answer for one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, content type and body instead of passing through.
    Answer {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Wait this long, then pass through (a client with a shorter timeout gives up first).
    Delay(Duration),
}

impl Fault {
    /// An ECR (JSON 1.1) error.
    pub fn ecr(status: u16, code: &str, message: &str) -> Fault {
        Fault::Answer {
            status,
            content_type: "application/x-amz-json-1.1",
            body: format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        }
    }

    /// An OCI distribution API error.
    pub fn registry(status: u16, code: &str) -> Fault {
        Fault::Answer {
            status,
            content_type: "application/json",
            body: format!(r#"{{"errors":[{{"code":"{code}","message":"injected"}}]}}"#),
        }
    }

    /// An STS (query protocol, XML) error.
    pub fn sts(status: u16, code: &str, message: &str) -> Fault {
        Fault::Answer {
            status,
            content_type: "text/xml",
            body: format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
        }
    }
}

/// Token auth as Docker Hub, GHCR or ECR Public do it: 401 with a `Bearer realm` challenge, a
/// token endpoint that takes Basic credentials and a scope, then `Authorization: Bearer`.
#[derive(Clone)]
struct Gate {
    basic: String,
    token: String,
    scopes: Vec<String>,
}

#[derive(Default)]
struct ProxyState {
    gate: Option<Gate>,
    faults: HashMap<String, VecDeque<Fault>>,
    calls: HashMap<String, u32>,
    responses: Vec<(String, String)>,
}

type Shared = Arc<(Mutex<ProxyState>, String, reqwest::Client)>;

/// The proxy in front of moto. Actions are ECR targets (`GetAuthorizationToken`) or STS actions
/// (`AssumeRoleWithWebIdentity`).
pub struct FaultProxy {
    pub url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        health_predict::install_crypto_provider();
        let state: Shared = Arc::new((
            Mutex::new(ProxyState::default()),
            upstream.trim_end_matches('/').to_owned(),
            reqwest::Client::new(),
        ));
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            url: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// Queues faults for the next requests of `action`.
    pub fn inject(&self, action: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut s = self.state.0.lock().expect("lock");
        s.faults
            .entry(action.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Puts a bearer-token gate in front of the upstream (an open registry): `/token` answers
    /// `token` to Basic `user:password`, and every other request needs `Bearer token`.
    pub fn require_bearer(&self, user: &str, password: &str, token: &str) {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.state.0.lock().expect("lock").gate = Some(Gate {
            basic: format!("Basic {basic}"),
            token: token.to_owned(),
            scopes: Vec::new(),
        });
    }

    /// The scopes the token endpoint was asked for.
    pub fn token_scopes(&self) -> Vec<String> {
        let s = self.state.0.lock().expect("lock");
        s.gate
            .as_ref()
            .map(|g| g.scopes.clone())
            .unwrap_or_default()
    }

    /// Requests seen for `action` (faulted or passed through).
    pub fn calls(&self, action: &str) -> u32 {
        let s = self.state.0.lock().expect("lock");
        s.calls.get(action).copied().unwrap_or(0)
    }

    /// Bodies moto answered, with their action.
    pub fn responses(&self) -> Vec<(String, String)> {
        self.state.0.lock().expect("lock").responses.clone()
    }

    /// Every `<tag>value</tag>` in the answers (e.g. `SecretAccessKey`, `SessionToken`).
    pub fn xml_values(&self, tag: &str) -> Vec<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut out = Vec::new();
        for (_, body) in self.responses() {
            let mut rest = body.as_str();
            while let Some(i) = rest.find(&open) {
                let after = &rest[i + open.len()..];
                let Some(j) = after.find(&close) else { break };
                out.push(after[..j].to_owned());
                rest = &after[j..];
            }
        }
        out
    }
}

/// The request's name for fault scripts: the ECR target or STS action (`GetAuthorizationToken`,
/// `AssumeRoleWithWebIdentity`), or for the OCI distribution API the method and route
/// (`GET v2`, `HEAD blobs`, `POST uploads`, `PATCH uploads`, `PUT uploads`, `PUT manifests`).
fn action_of(method: &http::Method, path: &str, headers: &http::HeaderMap, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_owned();
    }
    let text = String::from_utf8_lossy(body);
    if let Some(a) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return a.to_owned();
    }
    let route = if path == "/v2/" || path == "/v2" {
        "v2"
    } else if path.contains("/blobs/uploads") {
        "uploads"
    } else if path.contains("/blobs/") {
        "blobs"
    } else if path.contains("/manifests/") {
        "manifests"
    } else {
        "other"
    };
    format!("{method} {route}")
}

async fn proxy(State(state): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 64 << 20).await.unwrap_or_default();
    let action = action_of(&parts.method, parts.uri.path(), &parts.headers, &body);
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let gate = state.0.lock().expect("lock").gate.clone();
    if let Some(gate) = gate {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if parts.uri.path() == "/token" {
            if authorization != gate.basic {
                return Response::builder()
                    .status(401)
                    .body(Body::empty())
                    .expect("response");
            }
            let query = parts.uri.query().unwrap_or("").to_owned();
            let mut s = state.0.lock().expect("lock");
            if let Some(g) = s.gate.as_mut() {
                g.scopes.push(query);
            }
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(format!(r#"{{"token":"{}"}}"#, gate.token)))
                .expect("response");
        }
        if authorization != format!("Bearer {}", gate.token) {
            return Response::builder()
                .status(401)
                .header(
                    "www-authenticate",
                    format!(r#"Bearer realm="http://{host}/token",service="fake-registry""#),
                )
                .body(Body::empty())
                .expect("response");
        }
    }
    let fault = {
        let mut s = state.0.lock().expect("lock");
        *s.calls.entry(action.clone()).or_default() += 1;
        s.faults.get_mut(&action).and_then(|q| q.pop_front())
    };
    match fault {
        Some(Fault::Answer {
            status,
            content_type,
            body,
        }) => {
            return Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(Body::from(body))
                .expect("response");
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let url = format!(
        "{}{}",
        state.1,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut up = state.2.request(parts.method.clone(), url).body(body);
    for (k, v) in parts.headers.iter() {
        // Host is kept: a registry builds upload `Location`s from it, so they point back here.
        if k != http::header::CONTENT_LENGTH {
            up = up.header(k, v);
        }
    }
    let resp = match up.send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("proxy: {e}")))
                .expect("response");
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    state
        .0
        .lock()
        .expect("lock")
        .responses
        .push((action, String::from_utf8_lossy(&bytes).into_owned()));
    let mut out = Response::builder().status(status);
    for (k, v) in headers.iter() {
        if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(bytes)).expect("response")
}
