//! A scenario-driven fake Kubernetes API server over real HTTP (axum on 127.0.0.1:0).
//!
//! No kube-apiserver can run here, so tests talk to this one through `kube::Config::new(url)`:
//! it speaks the real wire format (objects, `List` envelopes with `metadata.resourceVersion`,
//! newline-delimited watch events with `BOOKMARK`s, `Status` objects on errors) and keeps an object
//! store for any resource kind:
//!
//! - GET, LIST (label and field selectors), WATCH (from a resourceVersion, with bookmarks and
//!   `timeoutSeconds`, `410 Gone` for a too-old version), POST, PUT (optimistic concurrency on
//!   `metadata.resourceVersion`), DELETE;
//! - PATCH: server-side apply (`application/apply-patch+yaml`, `fieldManager` required, `force`),
//!   JSON merge and strategic merge (treated as merge patches); `dryRun=All`;
//! - `status` and `log` subresources; uid, creationTimestamp, resourceVersion, generation
//!   (bumped only when `spec` changes; a write that changes nothing changes no version).
//!
//! A deployment controller (on by default) plays a [`Rollout`] per image: it creates the
//! ReplicaSet (revision annotation, pod-template-hash), its Pods, moves their status through the
//! scripted [`Behaviour`] and emits Events, so tests can see a rollout fail the way a real one does
//! (missing pull secret, expired token, crash loop with logs, slow or failing readiness, stale
//! generation, unschedulable, CreateContainerConfigError, progress deadline). The moment the
//! scenario emits its telling event is recorded with [`FakeKube::mark`] under [`TELLING`].
//!
//! Simplifications (documented, not hidden): server-side apply merges the applied object into the
//! live one (maps recursively, lists atomically) and records the manager in `managedFields`, but
//! does not remove fields a manager stopped applying and does not report conflicts.
//!
//! Namespaces must exist, as on a real API server: a write into a namespace that has no Namespace
//! object answers `404 namespaces "X" not found` (objects seeded with [`FakeKube::put`] bring their
//! namespace along). Port-forward (`pods/NAME/portforward`, the `v4.channel.k8s.io` websocket
//! protocol kube-rs speaks) works when a [`Kubelet`] is set: it is asked for the loopback address
//! where the pod's image really runs, and the forward relays bytes to it.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::broadcast;

/// The mark name under which a scenario records its telling event.
pub const TELLING: &str = "telling";

/// What the pods of one rollout do.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Pods start and become Ready after `ready_after`.
    Healthy { ready_after: Duration },
    /// Readiness probes fail `probe_failures` times (Unhealthy events) before the pods get Ready.
    SlowReadiness {
        probe_failures: u32,
        ready_after: Duration,
    },
    /// The image cannot be pulled: `ErrImagePull`, then `ImagePullBackOff`, with `message` in
    /// the Failed event (e.g. "no basic auth credentials" or "authorization token has expired").
    ImagePullFails { message: String },
    /// The container exits with `exit_code` after printing `logs`; the kubelet backs off.
    CrashLoop { logs: String, exit_code: i32 },
    /// The kubelet cannot build the container's config (a missing Secret or ConfigMap key).
    ConfigError { message: String },
    /// The scheduler cannot place the pods.
    Unschedulable { message: String },
    /// The container runs but readiness never passes.
    ReadinessFails { message: String },
    /// Pods stay Pending without a reason until the Deployment's progress deadline passes.
    ProgressDeadline { after: Duration },
}

/// How the fake controller plays a rollout of one image.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub behaviour: Behaviour,
    /// How long the controller takes to observe a new generation (a stale status meanwhile).
    pub observe_after: Duration,
    /// Delay between the pod's creation and its first status change.
    pub start_after: Duration,
}

impl Rollout {
    pub fn new(behaviour: Behaviour) -> Rollout {
        Rollout {
            behaviour,
            observe_after: Duration::from_millis(50),
            start_after: Duration::from_millis(150),
        }
    }

    pub fn healthy() -> Rollout {
        Rollout::new(Behaviour::Healthy {
            ready_after: Duration::from_millis(300),
        })
    }

    pub fn observe_after(mut self, d: Duration) -> Rollout {
        self.observe_after = d;
        self
    }
}

/// One request the server answered, for assertions.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub status: u16,
}

/// An injected failure: the next `times` requests whose method matches and whose path contains
/// `path_contains` get `status` with a `Status` body.
#[derive(Debug, Clone)]
struct Injected {
    method: String,
    path_contains: String,
    status: u16,
    times: u32,
}

/// Store key: API prefix (`api/v1`, `apis/apps/v1`), plural, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    prefix: String,
    plural: String,
    ns: Option<String>,
    name: String,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: Vec<Change>,
    logs: HashMap<(String, String), String>,
    marks: HashMap<String, (Instant, std::time::SystemTime)>,
    requests: Vec<Recorded>,
    injected: Vec<Injected>,
    rollouts: Vec<(String, Rollout)>,
    default_rollout: Option<Rollout>,
    controllers: HashMap<(String, String), tokio::task::AbortHandle>,
    /// Watch history older than this resourceVersion answers 410 Gone.
    compacted: u64,
    kubelet: Option<Kubelet>,
}

/// Runs a pod's container for port-forwards: given the pod object and the pull secrets its spec
/// and service account name (the Secret objects found), the loopback address where its image
/// serves (started on first use), or an error saying why it cannot run.
pub type Kubelet =
    Arc<dyn Fn(&Value, &[Value]) -> Result<std::net::SocketAddr, String> + Send + Sync>;

struct Shared {
    store: Mutex<Store>,
    tx: broadcast::Sender<Change>,
    controller: bool,
    bookmark_every: Duration,
}

type Inner = Arc<Shared>;

/// The running fake server. Dropping it stops the server.
pub struct FakeKube {
    url: String,
    inner: Inner,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        if let Ok(store) = self.inner.store.lock() {
            for h in store.controllers.values() {
                h.abort();
            }
        }
    }
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKube").field("url", &self.url).finish()
    }
}

impl FakeKube {
    /// Starts a server with the deployment controller on (healthy rollouts unless told).
    pub async fn start() -> FakeKube {
        Self::start_with(true).await
    }

    /// Starts a plain object store: no controller acts on Deployments.
    pub async fn start_store_only() -> FakeKube {
        Self::start_with(false).await
    }

    async fn start_with(controller: bool) -> FakeKube {
        let (tx, _) = broadcast::channel(4096);
        let inner: Inner = Arc::new(Shared {
            store: Mutex::new(Store {
                default_rollout: Some(Rollout::healthy()),
                ..Store::default()
            }),
            tx,
            controller,
            bookmark_every: Duration::from_millis(500),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKube {
            url: format!("http://{addr}"),
            inner,
            server,
        }
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("valid url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// A kubeconfig file pointing at this server, for running the binary against it.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.store.lock().expect("store lock")
    }

    /// Plays `rollout` for every Deployment whose container image contains `image_contains`.
    pub fn on_image(&self, image_contains: &str, rollout: Rollout) {
        self.store()
            .rollouts
            .push((image_contains.to_owned(), rollout));
    }

    /// Creates or replaces an object as the server would store it (uid, versions, generation).
    /// `apiVersion`, `kind`, `metadata.name` (and `metadata.namespace` for namespaced kinds) are
    /// read from the object.
    pub fn set_kubelet(&self, kubelet: Kubelet) {
        self.store().kubelet = Some(kubelet);
    }

    pub fn put(&self, object: Value) -> Value {
        if let Some(ns) = object["metadata"]["namespace"].as_str()
            && object["kind"] != "Namespace"
            && self.get("v1", "namespaces", None, ns).is_none()
        {
            self.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        let key = key_of(&object);
        write(&self.inner, &key, object, WriteMode::Replace, None)
    }

    /// The stored object, if any. `api_version` as in the object (`v1`, `apps/v1`).
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = Key {
            prefix: prefix_of(api_version),
            plural: plural.to_owned(),
            ns: ns.map(str::to_owned),
            name: name.to_owned(),
        };
        self.store().objects.get(&key).cloned()
    }

    /// Deletes a stored object; returns whether it existed.
    pub fn delete(&self, api_version: &str, plural: &str, ns: Option<&str>, name: &str) -> bool {
        let key = Key {
            prefix: prefix_of(api_version),
            plural: plural.to_owned(),
            ns: ns.map(str::to_owned),
            name: name.to_owned(),
        };
        remove(&self.inner, &key).is_some()
    }

    /// The wall-clock time of a mark, to compare with timestamps the code under test reports.
    pub fn mark_wall(&self, name: &str) -> Option<std::time::SystemTime> {
        self.store().marks.get(name).map(|m| m.1)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.store().requests.clone()
    }

    /// Answers the next `times` requests with `method` and a path containing `path_contains`
    /// with `status` (e.g. 429, 500, 403) and a `Status` body.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: u32) {
        self.store().injected.push(Injected {
            method: method.to_uppercase(),
            path_contains: path_contains.to_owned(),
            status,
            times,
        });
    }

    /// The current resourceVersion counter.
    pub fn resource_version(&self) -> u64 {
        self.store().rv
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn handle(
    State(inner): State<Inner>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    mut request: axum::extract::Request,
) -> Response {
    let path = uri.path().to_owned();
    if method == Method::GET && path.ends_with("/portforward") {
        let upgrade = request
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>();
        return portforward(&inner, &path, &query, &headers, upgrade);
    }
    let body = match axum::body::to_bytes(request.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return status_response(400, "BadRequest", &format!("cannot read the body: {e}")),
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let injected = {
        let mut s = inner.store.lock().expect("store lock");
        let hit = s.injected.iter_mut().find(|i| {
            i.times > 0 && i.method == method.as_str() && path.contains(&i.path_contains)
        });
        hit.map(|i| {
            i.times -= 1;
            i.status
        })
    };
    let response = match injected {
        Some(code) => status_response(code, reason_for(code), &format!("injected failure: {code}")),
        None => {
            route(
                &inner,
                &method,
                &path,
                &query,
                content_type.as_deref(),
                &body,
                body_json.as_ref(),
            )
            .await
        }
    };
    let mut s = inner.store.lock().expect("store lock");
    s.requests.push(Recorded {
        method: method.to_string(),
        path,
        query,
        content_type,
        status: response.status().as_u16(),
    });
    response
}

struct Target {
    prefix: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" if segs.len() >= 2 => (format!("api/{}", segs[1]), &segs[2..]),
        "apis" if segs.len() >= 3 => (format!("apis/{}/{}", segs[1], segs[2]), &segs[3..]),
        _ => return None,
    };
    let (ns, rest) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first()?.to_string();
    Some(Target {
        prefix,
        plural,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

async fn route(
    inner: &Inner,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<&str>,
    raw: &Bytes,
    body: Option<&Value>,
) -> Response {
    if path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        );
    }
    let Some(t) = parse_path(path) else {
        return status_response(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        );
    };
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    // A real API server refuses writes into a namespace that does not exist.
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH")
        && let Some(ns) = &t.ns
        && !inner
            .store
            .lock()
            .expect("store lock")
            .objects
            .contains_key(&Key {
                prefix: "api/v1".into(),
                plural: "namespaces".into(),
                ns: None,
                name: ns.clone(),
            })
    {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("namespaces \"{ns}\" not found"),
            "reason": "NotFound", "details": {"name": ns, "kind": "namespaces"}, "code": 404,
        });
        status["details"]["name"] = json!(ns);
        return json_response(404, &status);
    }
    match (method.as_str(), &t.name, t.sub.as_deref()) {
        ("GET", None, _) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(inner, &t, query)
        }
        ("GET", None, _) => list(inner, &t, query),
        ("GET", Some(name), None) | ("GET", Some(name), Some("status")) => {
            match inner
                .store
                .lock()
                .expect("store lock")
                .objects
                .get(&key(&t, name))
            {
                Some(o) => json_response(200, o),
                None => not_found(&t, name),
            }
        }
        ("GET", Some(name), Some("log")) => {
            let s = inner.store.lock().expect("store lock");
            let ns = t.ns.clone().unwrap_or_default();
            if !s.objects.contains_key(&key(&t, name)) {
                return not_found(&t, name);
            }
            let text = s.logs.get(&(ns, name.clone())).cloned().unwrap_or_default();
            let text = match query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    let start = lines.len().saturating_sub(n);
                    lines[start..].iter().map(|l| format!("{l}\n")).collect()
                }
                None => text,
            };
            Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Body::from(text))
                .expect("response")
        }
        ("GET", Some(_), Some(sub)) | ("POST", Some(_), Some(sub)) => status_response(
            400,
            "BadRequest",
            &format!(
                "the fake API server does not serve the `{sub}` subresource (port-forward is covered by the kind job)"
            ),
        ),
        ("POST", None, None) => {
            let Some(mut obj) = body.cloned() else {
                return status_response(400, "BadRequest", "a create needs a JSON body");
            };
            if obj["metadata"]["name"].as_str().is_none() {
                match obj["metadata"]["generateName"].as_str() {
                    Some(g) => obj["metadata"]["name"] = json!(format!("{g}{}", short_id())),
                    None => {
                        return status_response(422, "Invalid", "metadata.name: Required value");
                    }
                }
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(ns) = &t.ns {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let k = key(&t, &name);
            if inner
                .store
                .lock()
                .expect("store lock")
                .objects
                .contains_key(&k)
            {
                return status_response_named(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", t.plural),
                    &t,
                    &name,
                );
            }
            finish_write(
                inner,
                &k,
                obj,
                WriteMode::Create,
                query.get("fieldManager").map(|s| s.as_str()),
                dry_run,
                201,
            )
        }
        ("PUT", Some(name), sub) => {
            let Some(obj) = body.cloned() else {
                return status_response(400, "BadRequest", "a replace needs a JSON body");
            };
            let k = key(&t, name);
            let mode = if sub == Some("status") {
                WriteMode::Status
            } else {
                WriteMode::Update
            };
            let current = inner
                .store
                .lock()
                .expect("store lock")
                .objects
                .get(&k)
                .cloned();
            let Some(current) = current else {
                return not_found(&t, name);
            };
            if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
                && Some(rv) != current["metadata"]["resourceVersion"].as_str()
            {
                return status_response_named(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                    &t,
                    name,
                );
            }
            finish_write(
                inner,
                &k,
                obj,
                mode,
                query.get("fieldManager").map(|s| s.as_str()),
                dry_run,
                200,
            )
        }
        ("PATCH", Some(name), sub) => {
            let k = key(&t, name);
            let current = inner
                .store
                .lock()
                .expect("store lock")
                .objects
                .get(&k)
                .cloned();
            let status_only = sub == Some("status");
            match content_type {
                Some("application/apply-patch+yaml") => {
                    let Some(manager) = query.get("fieldManager") else {
                        return status_response(
                            400,
                            "BadRequest",
                            "PATCH, application/apply-patch+yaml, requires fieldManager",
                        );
                    };
                    let applied: Value = match body.cloned().or_else(|| {
                        std::str::from_utf8(raw)
                            .ok()
                            .and_then(|s| serde_json::from_str(s).ok())
                    }) {
                        Some(v) => v,
                        None => {
                            return status_response(
                                400,
                                "BadRequest",
                                "apply body is not JSON (the fake reads JSON-form YAML only)",
                            );
                        }
                    };
                    if applied["metadata"]["name"].as_str() != Some(name.as_str()) {
                        return status_response(
                            400,
                            "BadRequest",
                            "metadata.name in the body does not match the URL",
                        );
                    }
                    if applied["kind"].as_str().is_none()
                        || applied["apiVersion"].as_str().is_none()
                    {
                        return status_response(
                            400,
                            "BadRequest",
                            "apply needs apiVersion and kind in the body",
                        );
                    }
                    let merged = match current {
                        Some(mut cur) => {
                            let mut applied = applied;
                            if status_only {
                                cur["status"] = applied["status"].take();
                            } else {
                                if let Some(o) = applied.as_object_mut() {
                                    o.remove("status");
                                }
                                merge(&mut cur, &applied, false);
                            }
                            cur
                        }
                        None => {
                            let mut obj = applied;
                            if let Some(ns) = &t.ns {
                                obj["metadata"]["namespace"] = json!(ns);
                            }
                            obj
                        }
                    };
                    let mut merged = merged;
                    record_manager(&mut merged, manager, "Apply");
                    let code = if inner
                        .store
                        .lock()
                        .expect("store lock")
                        .objects
                        .contains_key(&k)
                    {
                        200
                    } else {
                        201
                    };
                    finish_write(
                        inner,
                        &k,
                        merged,
                        if status_only {
                            WriteMode::Status
                        } else {
                            WriteMode::Apply
                        },
                        None,
                        dry_run,
                        code,
                    )
                }
                Some("application/merge-patch+json")
                | Some("application/strategic-merge-patch+json") => {
                    let Some(mut cur) = current else {
                        return not_found(&t, name);
                    };
                    let Some(patch) = body else {
                        return status_response(
                            400,
                            "BadRequest",
                            "a merge patch needs a JSON body",
                        );
                    };
                    merge(&mut cur, patch, true);
                    if let Some(m) = query.get("fieldManager") {
                        record_manager(&mut cur, m, "Update");
                    }
                    finish_write(
                        inner,
                        &k,
                        cur,
                        if status_only {
                            WriteMode::Status
                        } else {
                            WriteMode::Update
                        },
                        None,
                        dry_run,
                        200,
                    )
                }
                other => status_response(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?}; the fake does not implement JSON patch)"
                    ),
                ),
            }
        }
        ("DELETE", Some(name), None) => match remove(inner, &key(&t, name)) {
            Some(obj) => json_response(200, &obj),
            None => not_found(&t, name),
        },
        _ => status_response(
            405,
            "MethodNotAllowed",
            &format!("{method} {path} is not supported"),
        ),
    }
}

fn finish_write(
    inner: &Inner,
    k: &Key,
    obj: Value,
    mode: WriteMode,
    manager: Option<&str>,
    dry_run: bool,
    code: u16,
) -> Response {
    let mut obj = obj;
    if let Some(m) = manager {
        record_manager(&mut obj, m, "Update");
    }
    if dry_run {
        let prepared = prepare(
            inner.store.lock().expect("store lock").objects.get(k),
            obj,
            mode,
            k,
            0,
        );
        return json_response(code, &prepared);
    }
    json_response(code, &write(inner, k, obj, mode, None))
}

fn key(t: &Target, name: &str) -> Key {
    Key {
        prefix: t.prefix.clone(),
        plural: t.plural.clone(),
        ns: t.ns.clone(),
        name: name.to_owned(),
    }
}

fn list(inner: &Inner, t: &Target, query: &BTreeMap<String, String>) -> Response {
    let s = inner.store.lock().expect("store lock");
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|(k, v)| in_scope(k, t) && selected(v, query))
        .map(|(_, v)| v.clone())
        .collect();
    let (api_version, kind) = type_of(t, items.first());
    json_response(
        200,
        &json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        }),
    )
}

fn in_scope(k: &Key, t: &Target) -> bool {
    k.prefix == t.prefix && k.plural == t.plural && (t.ns.is_none() || k.ns == t.ns)
}

fn watch(inner: &Inner, t: &Target, query: &BTreeMap<String, String>) -> Response {
    let since: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok());
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let (api_version, kind) = {
        let s = inner.store.lock().expect("store lock");
        let first = s
            .objects
            .iter()
            .find(|(k, _)| in_scope(k, t))
            .map(|(_, v)| v);
        type_of(t, first)
    };
    let mut backlog: Vec<Value> = Vec::new();
    let (rx, mut last_rv) = {
        let s = inner.store.lock().expect("store lock");
        match since {
            Some(rv) if rv != 0 => {
                if rv < s.compacted {
                    return status_response(
                        410,
                        "Expired",
                        &format!("too old resource version: {rv} ({})", s.compacted),
                    );
                }
                for c in s.history.iter().filter(|c| c.rv > rv) {
                    if in_scope(&c.key, t) && selected(&c.object, query) {
                        backlog.push(json!({"type": c.kind, "object": c.object}));
                    }
                }
            }
            _ => {
                for (k, v) in &s.objects {
                    if in_scope(k, t) && selected(v, query) {
                        backlog.push(json!({"type": "ADDED", "object": v}));
                    }
                }
            }
        }
        (inner.tx.subscribe(), s.rv)
    };
    let target = Target {
        prefix: t.prefix.clone(),
        plural: t.plural.clone(),
        ns: t.ns.clone(),
        name: None,
        sub: None,
    };
    let query = query.clone();
    let every = inner.bookmark_every;
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = futures::stream::unfold(
        (rx, backlog.into_iter(), false),
        move |(mut rx, mut backlog, done)| {
            let target = Target {
                prefix: target.prefix.clone(),
                plural: target.plural.clone(),
                ns: target.ns.clone(),
                name: None,
                sub: None,
            };
            let query = query.clone();
            let api_version = api_version.clone();
            let kind = kind.clone();
            async move {
                if done {
                    return None;
                }
                if let Some(ev) = backlog.next() {
                    return Some((Ok::<Bytes, Infallible>(line(&ev)), (rx, backlog, false)));
                }
                loop {
                    let tick = tokio::time::sleep(every);
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return None,
                        _ = tick => {
                            if bookmarks {
                                let ev = json!({"type": "BOOKMARK", "object": {
                                    "apiVersion": api_version, "kind": kind,
                                    "metadata": {"resourceVersion": last_rv.to_string()}}});
                                return Some((Ok(line(&ev)), (rx, backlog, false)));
                            }
                        }
                        got = rx.recv() => match got {
                            Ok(c) => {
                                last_rv = last_rv.max(c.rv);
                                if in_scope(&c.key, &target) && selected(&c.object, &query) {
                                    let ev = json!({"type": c.kind, "object": c.object});
                                    return Some((Ok(line(&ev)), (rx, backlog, false)));
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                let ev = json!({"type": "ERROR", "object": status_body(410, "Expired", "watch fell behind")});
                                return Some((Ok(line(&ev)), (rx, backlog, true)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_string(v).expect("json");
    s.push('\n');
    Bytes::from(s)
}

/// `apiVersion` and `kind` for a list envelope or bookmark of a resource.
fn type_of(t: &Target, sample: Option<&Value>) -> (String, String) {
    let api_version = t
        .prefix
        .trim_start_matches("api/")
        .trim_start_matches("apis/")
        .to_owned();
    if let Some(kind) = sample.and_then(|o| o["kind"].as_str()) {
        return (api_version, kind.to_owned());
    }
    let kind = match t.plural.as_str() {
        "pods" => "Pod",
        "services" => "Service",
        "serviceaccounts" => "ServiceAccount",
        "secrets" => "Secret",
        "events" => "Event",
        "configmaps" => "ConfigMap",
        "namespaces" => "Namespace",
        "deployments" => "Deployment",
        "replicasets" => "ReplicaSet",
        "cronjobs" => "CronJob",
        "jobs" => "Job",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        "roles" => "Role",
        "rolebindings" => "RoleBinding",
        "nodes" => "Node",
        other => other,
    };
    (api_version, kind.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Selectors

fn selected(obj: &Value, query: &BTreeMap<String, String>) -> bool {
    if let Some(sel) = query.get("labelSelector").filter(|s| !s.is_empty()) {
        let labels = &obj["metadata"]["labels"];
        for req in sel.split(',') {
            let req = req.trim();
            let ok = if let Some((k, v)) = req.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = req.strip_prefix('!') {
                labels.get(k).is_none()
            } else {
                labels.get(req).is_some()
            };
            if !ok {
                return false;
            }
        }
    }
    if let Some(sel) = query.get("fieldSelector").filter(|s| !s.is_empty()) {
        for req in sel.split(',') {
            let (path, want, eq) = match req.split_once("!=") {
                Some((p, v)) => (p, v, false),
                None => match req.split_once("==").or_else(|| req.split_once('=')) {
                    Some((p, v)) => (p, v, true),
                    None => continue,
                },
            };
            let mut cur = obj;
            for part in path.trim().split('.') {
                cur = &cur[part];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if (have == want.trim()) != eq {
                return false;
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Writes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    Create,
    Replace,
    Update,
    Apply,
    Status,
    /// A controller's write: spec and status as given.
    Controller,
}

fn prefix_of(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    }
}

fn plural_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    match lower.as_str() {
        "poddisruptionbudget" => "poddisruptionbudgets".into(),
        "networkpolicy" => "networkpolicies".into(),
        "ingress" => "ingresses".into(),
        _ if lower.ends_with('s') => format!("{lower}es"),
        _ if lower.ends_with('y') => format!("{}ies", &lower[..lower.len() - 1]),
        _ => format!("{lower}s"),
    }
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "CustomResourceDefinition",
    "StorageClass",
];

fn key_of(obj: &Value) -> Key {
    let kind = obj["kind"].as_str().expect("object has kind");
    let ns = if CLUSTER_SCOPED.contains(&kind) {
        None
    } else {
        Some(
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
        )
    };
    Key {
        prefix: prefix_of(obj["apiVersion"].as_str().expect("object has apiVersion")),
        plural: plural_of(kind),
        ns,
        name: obj["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned(),
    }
}

/// JSON merge (RFC 7386 when `nulls_delete`): maps merge recursively, everything else replaces.
fn merge(into: &mut Value, patch: &Value, nulls_delete: bool) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() && nulls_delete {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v, nulls_delete);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn record_manager(obj: &mut Value, manager: &str, operation: &str) {
    let api_version = obj["apiVersion"].clone();
    let entries = &mut obj["metadata"]["managedFields"];
    if !entries.is_array() {
        *entries = json!([]);
    }
    let list = entries.as_array_mut().expect("array");
    if !list
        .iter()
        .any(|e| e["manager"] == manager && e["operation"] == operation)
    {
        list.push(json!({
            "manager": manager, "operation": operation, "apiVersion": api_version,
            "fieldsType": "FieldsV1", "fieldsV1": {},
        }));
    }
}

/// The object as it would be stored: server-owned metadata kept or set, spec/status per mode.
fn prepare(current: Option<&Value>, mut obj: Value, mode: WriteMode, k: &Key, rv: u64) -> Value {
    if let Some(ns) = &k.ns {
        obj["metadata"]["namespace"] = json!(ns);
    }
    obj["metadata"]["name"] = json!(k.name);
    match current {
        Some(cur) => {
            for field in ["uid", "creationTimestamp"] {
                obj["metadata"][field] = cur["metadata"][field].clone();
            }
            match mode {
                WriteMode::Status => {
                    let status = obj["status"].take();
                    let mut o = cur.clone();
                    o["status"] = status;
                    obj = o;
                }
                WriteMode::Update | WriteMode::Apply => {
                    // The main resource never changes status.
                    obj["status"] = cur["status"].clone();
                }
                _ => {}
            }
            let generation = cur["metadata"]["generation"].as_i64().unwrap_or(1);
            let spec_changed = obj.get("spec") != cur.get("spec");
            if obj.get("spec").is_some() {
                obj["metadata"]["generation"] = json!(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
            }
        }
        None => {
            obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
            if obj.get("spec").is_some() {
                obj["metadata"]["generation"] = json!(1);
            }
        }
    }
    if let Some(o) = obj.as_object_mut()
        && o.get("status").is_some_and(Value::is_null)
    {
        o.remove("status");
    }
    if rv > 0 {
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    obj
}

/// Stores an object, notifies watchers and the controller. A write that changes nothing keeps
/// the resourceVersion and sends no event (as a real API server does).
fn write(inner: &Inner, k: &Key, obj: Value, mode: WriteMode, _manager: Option<&str>) -> Value {
    let (stored, changed, generation_changed) = {
        let mut s = inner.store.lock().expect("store lock");
        let current = s.objects.get(k).cloned();
        let mut candidate = prepare(current.as_ref(), obj, mode, k, 0);
        if let Some(cur) = &current {
            candidate["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            if &candidate == cur {
                return cur.clone();
            }
        }
        s.rv += 1;
        let rv = s.rv;
        candidate["metadata"]["resourceVersion"] = json!(rv.to_string());
        let generation_changed = current
            .as_ref()
            .map(|c| c["metadata"]["generation"] != candidate["metadata"]["generation"])
            .unwrap_or(true);
        let change = Change {
            rv,
            kind: if current.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            key: k.clone(),
            object: candidate.clone(),
        };
        s.objects.insert(k.clone(), candidate.clone());
        s.history.push(change.clone());
        let _ = inner.tx.send(change);
        (candidate, true, generation_changed)
    };
    if changed
        && generation_changed
        && inner.controller
        && k.plural == "deployments"
        && k.prefix == "apis/apps/v1"
        && matches!(
            mode,
            WriteMode::Create | WriteMode::Update | WriteMode::Apply
        )
    {
        start_rollout(inner, &stored);
    }
    stored
}

fn remove(inner: &Inner, k: &Key) -> Option<Value> {
    let mut s = inner.store.lock().expect("store lock");
    let mut obj = s.objects.remove(k)?;
    s.rv += 1;
    let rv = s.rv;
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    let change = Change {
        rv,
        kind: "DELETED",
        key: k.clone(),
        object: obj.clone(),
    };
    s.history.push(change.clone());
    let _ = inner.tx.send(change);
    Some(obj)
}

/// Read-modify-write of a stored object as a controller.
fn update(
    inner: &Inner,
    api_version: &str,
    plural: &str,
    ns: &str,
    name: &str,
    f: impl FnOnce(&mut Value),
) -> Option<Value> {
    let k = Key {
        prefix: prefix_of(api_version),
        plural: plural.to_owned(),
        ns: Some(ns.to_owned()),
        name: name.to_owned(),
    };
    let mut obj = inner
        .store
        .lock()
        .expect("store lock")
        .objects
        .get(&k)
        .cloned()?;
    f(&mut obj);
    Some(write(inner, &k, obj, WriteMode::Controller, None))
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(code: u16, v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

fn status_response(code: u16, reason: &str, message: &str) -> Response {
    json_response(code, &status_body(code, reason, message))
}

fn status_response_named(
    code: u16,
    reason: &str,
    message: &str,
    t: &Target,
    name: &str,
) -> Response {
    let mut body = status_body(code, reason, message);
    let group = t
        .prefix
        .split('/')
        .nth(1)
        .filter(|_| t.prefix.starts_with("apis/"))
        .unwrap_or("");
    body["details"] = json!({"name": name, "group": group, "kind": t.plural});
    json_response(code, &body)
}

fn not_found(t: &Target, name: &str) -> Response {
    let group = t
        .prefix
        .split('/')
        .nth(1)
        .filter(|_| t.prefix.starts_with("apis/"));
    let resource = match group {
        Some(g) => format!("{}.{g}", t.plural),
        None => t.plural.clone(),
    };
    status_response_named(
        404,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
        t,
        name,
    )
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .expect("round")
        .to_string()
}

fn short_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    u[..5].to_owned()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastUpdateTime": now, "lastTransitionTime": now})
}

fn set_condition(conditions: &mut Value, c: Value) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("array");
    list.retain(|x| x["type"] != c["type"]);
    list.push(c);
}

// ---------------------------------------------------------------------------------------------
// Events

fn emit_event(inner: &Inner, about: &Value, type_: &str, reason: &str, message: &str) {
    let ns = about["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let name = about["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = about["kind"].as_str().unwrap_or_default().to_owned();
    let existing = {
        let s = inner.store.lock().expect("store lock");
        s.objects
            .iter()
            .find(|(k, v)| {
                k.plural == "events"
                    && k.ns.as_deref() == Some(&ns)
                    && v["involvedObject"]["name"] == name
                    && v["involvedObject"]["kind"] == kind
                    && v["reason"] == reason
                    && v["message"] == message
            })
            .map(|(_, v)| v.clone())
    };
    let now = now_rfc3339();
    match existing {
        Some(mut ev) => {
            ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
            ev["lastTimestamp"] = json!(now);
            let k = key_of(&ev);
            write(inner, &k, ev, WriteMode::Controller, None);
        }
        None => {
            let ev = json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{name}.{}", short_id()), "namespace": ns},
                "involvedObject": {
                    "apiVersion": about["apiVersion"], "kind": kind, "name": name,
                    "namespace": ns, "uid": about["metadata"]["uid"],
                },
                "reason": reason, "message": message, "type": type_, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": if kind == "Pod" { "kubelet" } else { "deployment-controller" }},
                "reportingComponent": "", "reportingInstance": "",
            });
            let k = key_of(&ev);
            write(inner, &k, ev, WriteMode::Create, None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The deployment controller

fn template_hash(template: &Value) -> String {
    let digest = sha2::Sha256::digest(serde_json::to_vec(template).expect("json"));
    hex::encode(digest)[..10].to_owned()
}

/// Finds or creates the ReplicaSet for the Deployment's current template and gives it the next
/// revision. Returns it and whether it was created.
fn ensure_replicaset(inner: &Inner, d: &Value, min_revision: i64) -> (Value, bool) {
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let dname = d["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let hash = template_hash(&d["spec"]["template"]);
    let owned: Vec<Value> = {
        let s = inner.store.lock().expect("store lock");
        s.objects
            .iter()
            .filter(|(k, v)| {
                k.plural == "replicasets"
                    && k.ns.as_deref() == Some(&ns)
                    && v["metadata"]["ownerReferences"][0]["name"] == dname
            })
            .map(|(_, v)| v.clone())
            .collect()
    };
    let max_rev = owned.iter().filter_map(revision).max().unwrap_or(0);
    let existing = owned
        .iter()
        .find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
    let next = (max_rev + 1).max(min_revision);
    let mut annotations = d["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations
        .as_object_mut()
        .expect("map")
        .retain(|k, _| k == "kubernetes.io/change-cause");
    match existing {
        Some(rs) => {
            let name = rs["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let is_current = revision(rs) == Some(max_rev);
            let updated = update(inner, "apps/v1", "replicasets", &ns, &name, |r| {
                if !is_current {
                    r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(next.to_string());
                }
                if let Some(cause) = annotations.get("kubernetes.io/change-cause") {
                    r["metadata"]["annotations"]["kubernetes.io/change-cause"] = cause.clone();
                }
                r["spec"]["replicas"] = d["spec"]["replicas"].clone();
            })
            .unwrap_or_else(|| rs.clone());
            (updated, false)
        }
        None => {
            let mut template = d["spec"]["template"].clone();
            template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut labels = template["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            annotations["deployment.kubernetes.io/revision"] = json!(next.to_string());
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{dname}-{hash}"), "namespace": ns, "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": dname,
                        "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {"replicas": d["spec"]["replicas"], "selector": selector, "template": template},
                "status": {"replicas": 0},
            });
            let k = key_of(&rs);
            let stored = write(inner, &k, rs, WriteMode::Create, None);
            (stored, true)
        }
    }
}

fn revision(obj: &Value) -> Option<i64> {
    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn create_pod(inner: &Inner, rs: &Value) -> Value {
    let ns = rs["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
    let template = &rs["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec["nodeName"] = Value::Null;
    if let Some(o) = spec.as_object_mut() {
        o.remove("nodeName");
    }
    let containers: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                   "restartCount": 0, "started": false,
                   "state": {"waiting": {"reason": "ContainerCreating"}}})
        })
        .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{rs_name}-{}", short_id()), "namespace": ns,
            "labels": template["metadata"]["labels"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                "uid": rs["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": {"phase": "Pending", "conditions": [], "containerStatuses": statuses},
    });
    let k = key_of(&pod);
    write(inner, &k, pod, WriteMode::Create, None)
}

fn set_pod_running(p: &mut Value, ready: bool) {
    p["spec"]["nodeName"] = json!("fake-node");
    p["status"]["phase"] = json!("Running");
    p["status"]["podIP"] = json!("10.244.0.10");
    let r = if ready { "True" } else { "False" };
    p["status"]["conditions"] = json!([
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": r},
        {"type": "Ready", "status": r},
    ]);
    if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            c["ready"] = json!(ready);
            c["started"] = json!(true);
            c["state"] = json!({"running": {"startedAt": now_rfc3339()}});
        }
    }
}

fn set_waiting(p: &mut Value, reason: &str, message: &str) {
    p["spec"]["nodeName"] = json!("fake-node");
    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
    if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            c["ready"] = json!(false);
            c["state"] = json!({"waiting": {"reason": reason, "message": message}});
        }
    }
}

fn rollout_for(inner: &Inner, d: &Value) -> Option<Rollout> {
    let images: Vec<String> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["image"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let s = inner.store.lock().expect("store lock");
    s.rollouts
        .iter()
        .find(|(needle, _)| images.iter().any(|i| i.contains(needle.as_str())))
        .map(|(_, r)| r.clone())
        .or_else(|| s.default_rollout.clone())
}

fn start_rollout(inner: &Inner, d: &Value) {
    let Some(rollout) = rollout_for(inner, d) else {
        return;
    };
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let name = d["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let task = tokio::spawn(play(inner.clone(), ns.clone(), name.clone(), rollout));
    let mut s = inner.store.lock().expect("store lock");
    if let Some(old) = s.controllers.insert((ns, name), task.abort_handle()) {
        old.abort();
    }
}

fn pods_of(inner: &Inner, ns: &str, rs_name: &str) -> Vec<Value> {
    let s = inner.store.lock().expect("store lock");
    s.objects
        .iter()
        .filter(|(k, v)| {
            k.plural == "pods"
                && k.ns.as_deref() == Some(ns)
                && v["metadata"]["ownerReferences"][0]["name"] == rs_name
        })
        .map(|(_, v)| v.clone())
        .collect()
}

async fn play(inner: Inner, ns: String, name: String, rollout: Rollout) {
    tokio::time::sleep(rollout.observe_after).await;
    let Some(d) = update(&inner, "apps/v1", "deployments", &ns, &name, |_| {}) else {
        return;
    };
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let (rs, _created) = ensure_replicaset(&inner, &d, 1);
    let rs_name = rs["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let rev = revision(&rs).unwrap_or(1);
    let old_rs: Vec<String> = {
        let s = inner.store.lock().expect("store lock");
        s.objects
            .iter()
            .filter(|(k, v)| {
                k.plural == "replicasets"
                    && k.ns.as_deref() == Some(&ns)
                    && v["metadata"]["ownerReferences"][0]["name"] == name.as_str()
                    && k.name != rs_name
            })
            .map(|(k, _)| k.name.clone())
            .collect()
    };
    let old_ready: i64 = old_rs
        .iter()
        .map(|r| pods_of(&inner, &ns, r).len() as i64)
        .sum();
    // Observe the new generation: a fresh status, nothing updated yet.
    let deploy_status = |inner: &Inner, updated: i64, ready: i64, extra: Option<Value>| {
        update(inner, "apps/v1", "deployments", &ns, &name, |d| {
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
            let mut conditions = d["status"]["conditions"].clone();
            if let Some(c) = extra.clone() {
                set_condition(&mut conditions, c);
            }
            let total = updated
                + if updated >= replicas && ready >= replicas {
                    0
                } else {
                    old_ready
                };
            d["status"] = json!({
                "observedGeneration": generation,
                "replicas": total, "updatedReplicas": updated,
                "readyReplicas": ready + if ready >= replicas { 0 } else { old_ready },
                "availableReplicas": ready + if ready >= replicas { 0 } else { old_ready },
                "unavailableReplicas": (replicas - ready).max(0),
                "conditions": conditions,
            });
        });
    };
    deploy_status(
        &inner,
        0,
        0,
        Some(condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
        )),
    );
    emit_event(
        &inner,
        &d,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
    );
    // Reuse pods of a ReplicaSet rolled back to, else create them.
    let mut pods = pods_of(&inner, &ns, &rs_name);
    while (pods.len() as i64) < replicas {
        pods.push(create_pod(&inner, &rs));
    }
    let pod_names: Vec<String> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let each = |inner: &Inner, f: &dyn Fn(&mut Value)| {
        for p in &pod_names {
            update(inner, "v1", "pods", &ns, p, |v| f(v));
        }
    };
    let events = |inner: &Inner, type_: &str, reason: &str, message: &str| {
        for p in &pod_names {
            let key = Key {
                prefix: "api/v1".into(),
                plural: "pods".into(),
                ns: Some(ns.clone()),
                name: p.clone(),
            };
            // Bound first: the store lock must be released before emit_event takes it again.
            let pod = inner
                .store
                .lock()
                .expect("store lock")
                .objects
                .get(&key)
                .cloned();
            if let Some(pod) = pod {
                emit_event(inner, &pod, type_, reason, message);
            }
        }
    };
    let mark = |inner: &Inner| {
        inner
            .store
            .lock()
            .expect("store lock")
            .marks
            .entry(TELLING.to_owned())
            .or_insert_with(|| (Instant::now(), std::time::SystemTime::now()));
    };
    let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tokio::time::sleep(rollout.start_after).await;
    match rollout.behaviour {
        Behaviour::Healthy { ready_after } | Behaviour::SlowReadiness { ready_after, .. } => {
            events(
                &inner,
                "Normal",
                "Scheduled",
                "Successfully assigned to fake-node",
            );
            events(
                &inner,
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            each(&inner, &|p| set_pod_running(p, false));
            deploy_status(&inner, replicas, 0, None);
            if let Behaviour::SlowReadiness { probe_failures, .. } = rollout.behaviour {
                let gap = ready_after / (probe_failures + 1);
                for _ in 0..probe_failures {
                    tokio::time::sleep(gap).await;
                    events(
                        &inner,
                        "Warning",
                        "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    );
                }
                tokio::time::sleep(gap).await;
            } else {
                tokio::time::sleep(ready_after).await;
            }
            each(&inner, &|p| set_pod_running(p, true));
            // Scale the old ReplicaSets down.
            for r in &old_rs {
                for p in pods_of(&inner, &ns, r) {
                    let pn = p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    remove(
                        &inner,
                        &Key {
                            prefix: "api/v1".into(),
                            plural: "pods".into(),
                            ns: Some(ns.clone()),
                            name: pn,
                        },
                    );
                }
                update(&inner, "apps/v1", "replicasets", &ns, r, |v| {
                    v["spec"]["replicas"] = json!(0);
                    v["status"] =
                        json!({"replicas": 0, "observedGeneration": v["metadata"]["generation"]});
                });
            }
            update(&inner, "apps/v1", "replicasets", &ns, &rs_name, |v| {
                v["status"] = json!({"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                    "fullyLabeledReplicas": replicas, "observedGeneration": v["metadata"]["generation"]});
            });
            update(&inner, "apps/v1", "deployments", &ns, &name, |d| {
                let mut conditions = d["status"]["conditions"].clone();
                set_condition(
                    &mut conditions,
                    condition(
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                    ),
                );
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    ),
                );
                d["status"] = json!({
                    "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas, "conditions": conditions,
                });
            });
        }
        Behaviour::ImagePullFails { message } => {
            events(
                &inner,
                "Normal",
                "Scheduled",
                "Successfully assigned to fake-node",
            );
            events(
                &inner,
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image}\""),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let failed = format!("Failed to pull image \"{image}\": {message}");
            mark(&inner);
            events(&inner, "Warning", "Failed", &failed);
            events(&inner, "Warning", "Failed", "Error: ErrImagePull");
            each(&inner, &|p| set_waiting(p, "ErrImagePull", &failed));
            tokio::time::sleep(Duration::from_millis(500)).await;
            events(
                &inner,
                "Normal",
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
            );
            events(&inner, "Warning", "Failed", "Error: ImagePullBackOff");
            each(&inner, &|p| {
                set_waiting(
                    p,
                    "ImagePullBackOff",
                    &format!("Back-off pulling image \"{image}\": ErrImagePull: {message}"),
                )
            });
        }
        Behaviour::CrashLoop { logs, exit_code } => {
            for p in &pod_names {
                inner
                    .store
                    .lock()
                    .expect("store lock")
                    .logs
                    .insert((ns.clone(), p.clone()), logs.clone());
            }
            events(&inner, "Normal", "Started", "Started container");
            each(&inner, &|p| set_pod_running(p, false));
            tokio::time::sleep(Duration::from_millis(200)).await;
            mark(&inner);
            let finished = now_rfc3339();
            each(&inner, &|p| {
                set_waiting(
                    p,
                    "CrashLoopBackOff",
                    "back-off 10s restarting failed container=api",
                );
                p["status"]["phase"] = json!("Running");
                if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
                    for c in cs {
                        c["restartCount"] = json!(1);
                        c["lastState"] = json!({"terminated": {"exitCode": exit_code, "reason": "Error",
                            "startedAt": finished, "finishedAt": finished}});
                    }
                }
            });
            events(
                &inner,
                "Warning",
                "BackOff",
                "Back-off restarting failed container api",
            );
        }
        Behaviour::ConfigError { message } => {
            events(
                &inner,
                "Normal",
                "Scheduled",
                "Successfully assigned to fake-node",
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            mark(&inner);
            events(&inner, "Warning", "Failed", &format!("Error: {message}"));
            each(&inner, &|p| {
                set_waiting(p, "CreateContainerConfigError", &message)
            });
        }
        Behaviour::Unschedulable { message } => {
            // The scheduler records the event, then sets the condition (the telling signal).
            events(&inner, "Warning", "FailedScheduling", &message);
            mark(&inner);
            each(&inner, &|p| {
                p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": message}]);
            });
        }
        Behaviour::ReadinessFails { message } => {
            events(&inner, "Normal", "Started", "Started container");
            each(&inner, &|p| set_pod_running(p, false));
            deploy_status(&inner, replicas, 0, None);
            for i in 0..1000 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                // The fifth failure: the threshold `verify` uses by default.
                if i == 4 {
                    mark(&inner);
                }
                events(
                    &inner,
                    "Warning",
                    "Unhealthy",
                    &format!("Readiness probe failed: {message}"),
                );
            }
        }
        Behaviour::ProgressDeadline { after } => {
            tokio::time::sleep(after).await;
            mark(&inner);
            deploy_status(
                &inner,
                replicas,
                0,
                Some(condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                )),
            );
            emit_event(
                &inner,
                &d,
                "Warning",
                "ProgressDeadlineExceeded",
                &format!("Deployment \"{name}\" has timed out progressing"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Port-forward

/// `GET .../pods/NAME/portforward?ports=P` with a websocket upgrade: the first frame on the data
/// and error channels names the port (as the kubelet does), then bytes are relayed both ways
/// between channel 0 and a TCP connection to where the kubelet runs the pod's image.
fn portforward(
    inner: &Inner,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response {
    let Some(t) = parse_path(path) else {
        return status_response(404, "NotFound", path);
    };
    let (Some(ns), Some(name)) = (t.ns.clone(), t.name.clone()) else {
        return status_response(404, "NotFound", path);
    };
    let Some(port) = query.get("ports").and_then(|p| p.parse::<u16>().ok()) else {
        return status_response(400, "BadRequest", "one port is required in `ports`");
    };
    let (pod, kubelet, secrets) = {
        let s = inner.store.lock().expect("store lock");
        let pod = s.objects.get(&key(&t, &name)).cloned();
        let mut names: Vec<String> = Vec::new();
        if let Some(p) = &pod {
            let refs = p["spec"]["imagePullSecrets"].as_array().cloned();
            names.extend(
                refs.unwrap_or_default()
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned)),
            );
            let account = p["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            let sa = s.objects.get(&Key {
                prefix: "api/v1".into(),
                plural: "serviceaccounts".into(),
                ns: Some(ns.clone()),
                name: account.to_owned(),
            });
            if let Some(refs) = sa.and_then(|a| a["imagePullSecrets"].as_array()) {
                names.extend(
                    refs.iter()
                        .filter_map(|r| r["name"].as_str().map(str::to_owned)),
                );
            }
        }
        let secrets: Vec<Value> = names
            .iter()
            .filter_map(|n| {
                s.objects
                    .get(&Key {
                        prefix: "api/v1".into(),
                        plural: "secrets".into(),
                        ns: Some(ns.clone()),
                        name: n.clone(),
                    })
                    .cloned()
            })
            .collect();
        (pod, s.kubelet.clone(), secrets)
    };
    let Some(pod) = pod else {
        return not_found(&t, &name);
    };
    let Some(kubelet) = kubelet else {
        return status_response(
            400,
            "BadRequest",
            "the fake API server runs no containers (set a Kubelet to port-forward)",
        );
    };
    let (Some(key_header), Some(upgrade)) = (headers.get("sec-websocket-key"), upgrade) else {
        return status_response(400, "BadRequest", "port-forward needs a websocket upgrade");
    };
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let Some(protocol) = offered
        .iter()
        .find(|p| p.as_str() == "v4.channel.k8s.io")
        .cloned()
    else {
        return status_response(
            400,
            "BadRequest",
            &format!("unsupported port-forward protocols {offered:?}"),
        );
    };
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key_header.as_bytes());
    tokio::spawn(async move {
        let backend = tokio::task::spawn_blocking(move || kubelet(&pod, &secrets)).await;
        let Ok(upgraded) = upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        relay(
            ws,
            port,
            backend.unwrap_or_else(|e| Err(e.to_string())),
            &ns,
            &name,
        )
        .await;
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Body::empty())
        .expect("response")
}

async fn relay<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    port: u16,
    backend: Result<std::net::SocketAddr, String>,
    ns: &str,
    pod: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut tx, mut rx) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    if tx.send(Message::binary(vec![0, lo, hi])).await.is_err()
        || tx.send(Message::binary(vec![1, lo, hi])).await.is_err()
    {
        return;
    }
    let conn = match backend {
        Ok(addr) => tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let mut frame = vec![1];
            frame.extend_from_slice(
                format!("error forwarding port {port} to pod {ns}/{pod}: {e}").as_bytes(),
            );
            let _ = tx.send(Message::binary(frame)).await;
            let _ = tx.close().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = conn.into_split();
    // TCP half-close semantics: when the pod stops reading (e.g. it answered 413 to a body it
    // will not read) the client's bytes are still consumed, so the client is never reset before
    // it reads the answer; the stream closes when the client closes it.
    let upstream = async {
        let mut pod_open = true;
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b)
                    if b.first() == Some(&0)
                        && pod_open
                        && to_pod.write_all(&b[1..]).await.is_err() =>
                {
                    pod_open = false;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(0);
                    frame.extend_from_slice(&buf[..n]);
                    if tx.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
        tx
    };
    let ((), mut tx) = tokio::join!(upstream, downstream);
    let _ = tx.close().await;
}
