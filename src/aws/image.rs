//! The serving image, built and pushed without a Docker daemon.
//!
//! An OCI image is a base (an OCI image layout directory, or nothing) plus one layer holding the
//! `health-predict` binary and the model file, and a config whose entrypoint is
//! `health-predict serve --model /model/<file>`. With no base, the binary's shared libraries and
//! dynamic loader (as `ldd` reports them) go into the layer too, so a glibc-linked build still
//! starts; a statically linked binary needs nothing else.
//!
//! Pushing speaks the OCI distribution API with reqwest: `HEAD` to skip blobs the registry has,
//! `POST` + `PUT` (monolithic) or `PATCH` chunks + `PUT`, then the manifest `PUT`. Registries ask
//! for Basic auth (ECR: `AWS:<token password>`, htpasswd registries) or a bearer token from a
//! realm (`WWW-Authenticate: Bearer realm=...`); both are handled. Every request is retried on
//! 429, 5xx, timeouts and connection errors with [`Backoff::API`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AwsError;
use crate::retry::{Backoff, Decision, retry};
use crate::secret::Secret;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LIST_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "usr/local/bin/health-predict";
/// Where the CA bundle goes (the path rustls-native-certs and OpenSSL look at on Debian).
pub const CA_BUNDLE_PATH: &str = "etc/ssl/certs/ca-certificates.crt";
/// Where the model lives in the image (file name kept).
pub const MODEL_DIR: &str = "model";

/// What the image is made of.
#[derive(Debug, Clone)]
pub enum Base {
    /// Scratch: the layer carries the binary, its shared libraries (if any) and the model.
    None,
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`).
    Layout(PathBuf),
}

impl std::str::FromStr for Base {
    type Err = String;
    fn from_str(s: &str) -> Result<Base, String> {
        Ok(if s == "none" || s == "scratch" {
            Base::None
        } else {
            Base::Layout(PathBuf::from(s))
        })
    }
}

/// A request to build the serving image.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub binary: PathBuf,
    pub model: PathBuf,
    pub base: Base,
    /// Extra arguments after `serve --model <path>` (e.g. `--host 0.0.0.0`).
    pub serve_args: Vec<String>,
    /// The container port to declare.
    pub port: Option<u16>,
    /// A CA bundle to add at `etc/ssl/certs/ca-certificates.crt` (a scratch image has none, and
    /// the in-cluster ECR refresher calls STS and ECR over TLS).
    pub ca_bundle: Option<PathBuf>,
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    fn new(media_type: &str, bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob {
            media_type: media_type.into(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A built image, ready to push.
#[derive(Debug, Clone)]
pub struct Image {
    /// Base layers first, ours last.
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
    /// Files in our layer (paths inside the image).
    pub files: Vec<String>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds the image in memory. Deterministic: the same inputs give the same digest.
pub fn build(spec: &BuildSpec) -> Result<Image, AwsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| AwsError::Image(format!("cannot read {}: {e}", p.display())))
    };
    let binary = read(&spec.binary)?;
    if !binary.starts_with(b"\x7fELF") {
        return Err(AwsError::Image(format!(
            "{} is not an ELF executable",
            spec.binary.display()
        )));
    }
    let model = read(&spec.model)?;
    let model_name = spec
        .model
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AwsError::Image("the model path has no file name".into()))?;
    let model_path = format!("{MODEL_DIR}/{model_name}");

    let mut tar = TarBuilder::default();
    tar.file(BINARY_PATH, 0o755, &binary);
    tar.file(&model_path, 0o644, &model);
    if matches!(spec.base, Base::None) {
        for lib in shared_libraries(&spec.binary)? {
            let bytes = read(&lib)?;
            let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
            tar.file(&inside, 0o755, &bytes);
        }
    }
    if let Some(ca) = &spec.ca_bundle {
        tar.file(CA_BUNDLE_PATH, 0o644, &read(ca)?);
    }
    let files = tar.files.clone();
    let tar = tar.finish();
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)
        .and_then(|_| gz.flush())
        .map_err(|e| AwsError::Image(format!("compressing the layer: {e}")))?;
    let gz = gz
        .finish()
        .map_err(|e| AwsError::Image(format!("compressing the layer: {e}")))?;
    let ours = Blob::new(LAYER_TYPE, gz);

    let (mut layers, mut config) = match &spec.base {
        Base::None => (
            Vec::new(),
            json!({
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
        ),
        Base::Layout(dir) => read_layout(dir)?,
    };
    let entry = format!("/{BINARY_PATH}");
    let mut cmd = vec![
        entry.clone(),
        "serve".into(),
        "--model".into(),
        format!("/{model_path}"),
    ];
    cmd.extend(spec.serve_args.iter().cloned());
    {
        let c = config
            .as_object_mut()
            .ok_or_else(|| AwsError::Image("the base image config is not an object".into()))?;
        let cfg = c.entry("config").or_insert_with(|| json!({}));
        if !cfg.is_object() {
            *cfg = json!({});
        }
        cfg["Entrypoint"] = json!(cmd);
        cfg["Cmd"] = Value::Null;
        let mut env: Vec<Value> = cfg
            .get("Env")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        env.retain(|e| {
            e.as_str()
                .is_none_or(|s| !s.starts_with("HEALTH_PREDICT_MODEL="))
        });
        env.push(json!(format!("HEALTH_PREDICT_MODEL=/{model_path}")));
        if !env
            .iter()
            .any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH=")))
        {
            env.push(json!(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ));
        }
        cfg["Env"] = json!(env);
        if let Some(port) = spec.port {
            cfg["ExposedPorts"] = json!({ format!("{port}/tcp"): {} });
        }
        let labels = cfg
            .as_object_mut()
            .map(|o| o.entry("Labels").or_insert_with(|| json!({})));
        if let Some(Value::Object(l)) = labels {
            l.insert(
                "org.opencontainers.image.title".into(),
                json!("health-predict"),
            );
            l.insert(
                "org.opencontainers.image.version".into(),
                json!(crate::VERSION),
            );
        }
        let rootfs = c
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        match rootfs.get_mut("diff_ids").and_then(|d| d.as_array_mut()) {
            Some(ids) => ids.push(json!(diff_id)),
            None => rootfs["diff_ids"] = json!([diff_id]),
        }
        let history = c.entry("history").or_insert_with(|| json!([]));
        if let Some(h) = history.as_array_mut() {
            h.push(json!({
                "created_by": format!("health-predict image push (binary + {model_name})"),
                "comment": "health-predict serving layer",
            }));
        }
    }
    layers.push(ours);
    let config = Blob::new(
        CONFIG_TYPE,
        serde_json::to_vec(&config).map_err(|e| AwsError::Image(e.to_string()))?,
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": {"org.opencontainers.image.title": "health-predict"},
    });
    let manifest = Blob::new(
        MANIFEST_TYPE,
        serde_json::to_vec(&manifest).map_err(|e| AwsError::Image(e.to_string()))?,
    );
    Ok(Image {
        layers,
        config,
        manifest,
        files,
    })
}

/// The dynamic loader and shared libraries `ldd` lists for a binary; empty when it is static.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, AwsError> {
    let out = std::process::Command::new("ldd").arg(binary).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(AwsError::Image(format!(
                "cannot run ldd to find the shared libraries of {} ({e}); use a static (musl) build or --base with a libc",
                binary.display()
            )));
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        // `ldd` exits non-zero for "not a dynamic executable": nothing to add.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    Ok(libs)
}

/// Reads an OCI image layout: the base layers and config of its linux/amd64 (or only) image.
fn read_layout(dir: &Path) -> Result<(Vec<Blob>, Value), AwsError> {
    let bad = |m: String| AwsError::Image(format!("base layout {}: {m}", dir.display()));
    let blob = |digest: &str| -> Result<Vec<u8>, AwsError> {
        let hexpart = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("unsupported digest {digest:?}")))?;
        let p = dir.join("blobs/sha256").join(hexpart);
        let bytes =
            std::fs::read(&p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
        if sha256_digest(&bytes) != digest {
            return Err(bad(format!("blob {digest} does not match its digest")));
        }
        Ok(bytes)
    };
    let index = std::fs::read(dir.join("index.json"))
        .map_err(|e| bad(format!("cannot read index.json: {e}")))?;
    let mut doc: Value =
        serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
    // Descend through indexes to one image manifest.
    let manifest = loop {
        let list = doc
            .get("manifests")
            .and_then(|m| m.as_array())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("an index with no manifests".into()))?;
        let pick = list
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux"
                    && (m["platform"]["architecture"] == "amd64"
                        && std::env::consts::ARCH == "x86_64"
                        || m["platform"]["architecture"] == "arm64"
                            && std::env::consts::ARCH == "aarch64")
            })
            .unwrap_or(&list[0]);
        let digest = pick["digest"]
            .as_str()
            .ok_or_else(|| bad("a descriptor without a digest".into()))?;
        let next: Value = serde_json::from_slice(&blob(digest)?)
            .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
        let media = pick["mediaType"].as_str().unwrap_or("");
        if media == INDEX_TYPE || media == DOCKER_LIST_TYPE || next.get("manifests").is_some() {
            doc = next;
        } else {
            break next;
        }
    };
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("the manifest has no config".into()))?;
    let config: Value =
        serde_json::from_slice(&blob(config_digest)?).map_err(|e| bad(format!("config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"]
            .as_str()
            .ok_or_else(|| bad("a layer without a digest".into()))?;
        let media = l["mediaType"].as_str().unwrap_or(LAYER_TYPE);
        let b = Blob::new(media, blob(digest)?);
        layers.push(b);
    }
    Ok((layers, config))
}

/// A minimal, deterministic ustar writer (mtime 0, root-owned; parent directories added).
#[derive(Debug, Default)]
struct TarBuilder {
    out: Vec<u8>,
    dirs: Vec<String>,
    files: Vec<String>,
}

impl TarBuilder {
    fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            prefix.push_str(dir);
            prefix.push('/');
            if !self.dirs.contains(&prefix) {
                self.dirs.push(prefix.clone());
                self.header(&prefix, 0o755, 0, b'5');
            }
        }
        self.header(path, mode, bytes.len() as u64, b'0');
        self.out.extend_from_slice(bytes);
        let pad = (512 - bytes.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self.files.push(format!("/{path}"));
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8) {
        let mut h = [0u8; 512];
        let name = path.as_bytes();
        // Names over 100 bytes go into the ustar prefix field (155 bytes) split at a '/'.
        if name.len() <= 100 {
            h[..name.len()].copy_from_slice(name);
        } else {
            let trimmed = path.trim_end_matches('/');
            let split = trimmed[..trimmed.len().min(155)].rfind('/').unwrap_or(0);
            let (pre, rest) = (&path.as_bytes()[..split], &path.as_bytes()[split + 1..]);
            h[..rest.len().min(100)].copy_from_slice(&rest[..rest.len().min(100)]);
            h[345..345 + pre.len()].copy_from_slice(pre);
        }
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[148..156].copy_from_slice(b"        ");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// Where to push: a registry base URL (`https://host` or `http://127.0.0.1:5000`), a repository
/// and a tag.
#[derive(Debug, Clone)]
pub struct Target {
    pub registry: reqwest::Url,
    pub repository: String,
    pub tag: String,
}

impl Target {
    /// Parses `--registry` (a host defaults to https) with a repository and tag.
    pub fn new(registry: &str, repository: &str, tag: &str) -> Result<Target, AwsError> {
        let with_scheme = if registry.contains("://") {
            registry.to_owned()
        } else {
            format!("https://{registry}")
        };
        let url = reqwest::Url::parse(&with_scheme)
            .map_err(|e| AwsError::Invalid(format!("--registry {registry:?}: {e}")))?;
        let ok_repo = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !ok_repo {
            return Err(AwsError::Invalid(format!(
                "--repository {repository:?} must be lowercase path components [a-z0-9._-]"
            )));
        }
        let ok_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok_tag {
            return Err(AwsError::Invalid(format!(
                "--tag {tag:?} is not a valid tag"
            )));
        }
        Ok(Target {
            registry: url,
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    /// `host[:port]` as image references spell it.
    pub fn host(&self) -> String {
        let host = self.registry.host_str().unwrap_or("");
        match self.registry.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.registry.as_str().trim_end_matches('/'),
            self.repository
        )
    }
}

/// Basic credentials for a registry (ECR: user `AWS` and the token's password).
#[derive(Debug, Clone)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Secret,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `host/repository@sha256:...`: deploy by digest.
    pub reference: String,
    pub tagged: String,
    pub digest: String,
    pub uploaded_blobs: usize,
    pub existing_blobs: usize,
    pub uploaded_bytes: u64,
    pub image_bytes: u64,
}

/// Pushes with bounded retries per request.
#[derive(Debug, Clone)]
pub struct Pusher {
    http: reqwest::Client,
    target: Target,
    login: Option<RegistryLogin>,
    policy: Backoff,
    /// Blobs larger than this are sent in PATCH chunks of this size; `None`: one `PUT` per blob.
    /// Off by default: ECR answers an intermediate PATCH with 201 and drops the body of every
    /// PATCH after the first (aws/containers-roadmap#2831), while POST + one PUT works everywhere.
    pub chunk_size: Option<usize>,
    auth: Option<Secret>,
}

#[derive(Debug)]
struct Failure {
    error: AwsError,
    decision: Decision,
}

impl Pusher {
    pub fn new(
        target: Target,
        login: Option<RegistryLogin>,
        timeout: Duration,
    ) -> Result<Pusher, AwsError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| AwsError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Pusher {
            http,
            target,
            login,
            policy: Backoff::API,
            chunk_size: None,
            auth: None,
        })
    }

    pub fn with_policy(mut self, policy: Backoff) -> Pusher {
        self.policy = policy;
        self
    }

    fn registry_error(&self, operation: &str, message: String, decision: Decision) -> Failure {
        Failure {
            error: AwsError::Registry {
                registry: self.target.host(),
                operation: operation.into(),
                attempts: 1,
                message,
            },
            decision,
        }
    }

    fn transport(&self, operation: &str, e: reqwest::Error) -> Failure {
        let decision = if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
            Decision::Retry
        } else {
            Decision::Stop
        };
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cur = c.source();
        }
        self.registry_error(operation, msg, decision)
    }

    async fn status_failure(&self, operation: &str, resp: reqwest::Response) -> Failure {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failure {
                error: AwsError::RegistryAuth {
                    registry: self.target.host(),
                    operation: operation.into(),
                    status: status.as_u16(),
                },
                decision: Decision::Stop,
            };
        }
        let decision = match (super::status_decision(status.as_u16()), retry_after) {
            (Decision::Retry, Some(d)) => Decision::RetryAfter(d),
            (d, _) => d,
        };
        self.registry_error(
            operation,
            format!("HTTP {}: {}", status.as_u16(), registry_message(&body)),
            decision,
        )
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(h) => req.header(header::AUTHORIZATION, h.expose()),
            None => req,
        }
    }

    /// Runs one request-producing operation with the retry policy.
    async fn with_retry<T, F, Fut>(&self, operation: &str, op: F) -> Result<T, AwsError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        retry(&self.policy, op, |f: &Failure| f.decision)
            .await
            .map_err(|(f, attempts)| match f.error {
                AwsError::Registry {
                    registry, message, ..
                } => AwsError::Registry {
                    registry,
                    operation: operation.into(),
                    attempts,
                    message,
                },
                other => other,
            })
    }

    /// `GET /v2/`: learns the auth scheme and, for a bearer realm, gets a push token.
    pub async fn authenticate(&mut self) -> Result<(), AwsError> {
        let url = format!(
            "{}/v2/",
            self.target.registry.as_str().trim_end_matches('/')
        );
        let challenge = self
            .with_retry("GET /v2/", |_| async {
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| self.transport("GET /v2/", e))?;
                match resp.status() {
                    s if s.is_success() => Ok(None),
                    StatusCode::UNAUTHORIZED => Ok(resp
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)),
                    _ => Err(self.status_failure("GET /v2/", resp).await),
                }
            })
            .await?;
        let Some(challenge) = challenge else {
            return Ok(());
        };
        let Some(login) = self.login.clone() else {
            return Err(AwsError::RegistryAuth {
                registry: self.target.host(),
                operation: "GET /v2/ (no credentials given)".into(),
                status: 401,
            });
        };
        let basic = Secret::new(format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", login.username, login.password.expose()))
        ));
        let (scheme, params) = parse_challenge(&challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            self.auth = Some(basic);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AwsError::Registry {
                registry: self.target.host(),
                operation: "GET /v2/".into(),
                attempts: 1,
                message: format!("unsupported auth scheme {scheme:?}"),
            });
        }
        let realm = params
            .get("realm")
            .cloned()
            .ok_or_else(|| AwsError::Registry {
                registry: self.target.host(),
                operation: "GET /v2/".into(),
                attempts: 1,
                message: "a bearer challenge without a realm".into(),
            })?;
        let mut token_url = reqwest::Url::parse(&realm)
            .map_err(|e| AwsError::Invalid(format!("token realm {realm:?}: {e}")))?;
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.target.repository),
            );
        }
        let token = self
            .with_retry("token", |_| async {
                let resp = self
                    .http
                    .get(token_url.clone())
                    .header(header::AUTHORIZATION, basic.expose())
                    .send()
                    .await
                    .map_err(|e| self.transport("token", e))?;
                if !resp.status().is_success() {
                    return Err(self.status_failure("token", resp).await);
                }
                let v: Value = resp.json().await.map_err(|e| self.transport("token", e))?;
                v.get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .map(Secret::new)
                    .ok_or_else(|| {
                        self.registry_error(
                            "token",
                            "the token answer has no `token`".into(),
                            Decision::Stop,
                        )
                    })
            })
            .await?;
        self.auth = Some(Secret::new(format!("Bearer {}", token.expose())));
        Ok(())
    }

    /// Pushes every blob the registry lacks, then the manifest under the tag.
    pub async fn push(&mut self, image: &Image) -> Result<PushReport, AwsError> {
        self.authenticate().await?;
        let mut uploaded = 0;
        let mut existing = 0;
        let mut bytes = 0u64;
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            if self.has_blob(blob).await? {
                existing += 1;
                tracing::debug!(digest = %blob.digest, "blob already in the registry");
            } else {
                tracing::info!(digest = %blob.digest, size = blob.bytes.len(), "uploading blob");
                self.upload(blob).await?;
                uploaded += 1;
                bytes += blob.bytes.len() as u64;
            }
        }
        let digest = self.put_manifest(&image.manifest).await?;
        let repo = format!("{}/{}", self.target.host(), self.target.repository);
        Ok(PushReport {
            reference: format!("{repo}@{digest}"),
            tagged: format!("{repo}:{}", self.target.tag),
            digest,
            uploaded_blobs: uploaded,
            existing_blobs: existing,
            uploaded_bytes: bytes,
            image_bytes: image
                .layers
                .iter()
                .map(|b| b.bytes.len() as u64)
                .sum::<u64>()
                + image.config.bytes.len() as u64,
        })
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool, AwsError> {
        let url = self.target.url(&format!("blobs/{}", blob.digest));
        self.with_retry("HEAD blob", |_| async {
            let resp = self
                .authorized(self.http.head(&url))
                .send()
                .await
                .map_err(|e| self.transport("HEAD blob", e))?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self.status_failure("HEAD blob", resp).await),
            }
        })
        .await
    }

    /// One upload session per attempt: a failed session is abandoned and a new one started.
    async fn upload(&self, blob: &Blob) -> Result<(), AwsError> {
        self.with_retry("blob upload", |_| async {
            let start = self.target.url("blobs/uploads/");
            let resp = self
                .authorized(self.http.post(&start))
                .header(header::CONTENT_LENGTH, "0")
                .send()
                .await
                .map_err(|e| self.transport("POST upload", e))?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_failure("POST upload", resp).await);
            }
            let mut location = self.location(resp.headers(), "POST upload")?;
            let chunk = self.chunk_size.filter(|&c| c > 0 && blob.bytes.len() > c);
            if let Some(chunk) = chunk {
                let mut offset = 0usize;
                while offset < blob.bytes.len() {
                    let end = (offset + chunk).min(blob.bytes.len());
                    let resp = self
                        .authorized(self.http.patch(location.as_str()))
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, format!("{}-{}", offset, end - 1))
                        .body(blob.bytes.slice(offset..end))
                        .send()
                        .await
                        .map_err(|e| self.transport("PATCH chunk", e))?;
                    // The spec says 202; ECR answers 201.
                    if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED
                    {
                        return Err(self.status_failure("PATCH chunk", resp).await);
                    }
                    location = self.location(resp.headers(), "PATCH chunk")?;
                    offset = end;
                }
                location
                    .query_pairs_mut()
                    .append_pair("digest", &blob.digest);
                let resp = self
                    .authorized(self.http.put(location))
                    .header(header::CONTENT_LENGTH, "0")
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT upload", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT upload", resp).await);
                }
            } else {
                location
                    .query_pairs_mut()
                    .append_pair("digest", &blob.digest);
                let resp = self
                    .authorized(self.http.put(location))
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(blob.bytes.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT upload", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT upload", resp).await);
                }
            }
            Ok(())
        })
        .await
    }

    fn location(&self, headers: &HeaderMap, operation: &str) -> Result<reqwest::Url, Failure> {
        let raw = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.registry_error(operation, "no Location header".into(), Decision::Stop)
            })?;
        self.target.registry.join(raw).map_err(|e| {
            self.registry_error(operation, format!("bad Location: {e}"), Decision::Stop)
        })
    }

    async fn put_manifest(&self, manifest: &Blob) -> Result<String, AwsError> {
        let url = self.target.url(&format!("manifests/{}", self.target.tag));
        let digest = self
            .with_retry("PUT manifest", |_| async {
                let resp = self
                    .authorized(self.http.put(&url))
                    .header(header::CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport("PUT manifest", e))?;
                if resp.status() != StatusCode::CREATED {
                    return Err(self.status_failure("PUT manifest", resp).await);
                }
                Ok(resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned))
            })
            .await?;
        match digest {
            Some(d) if d != manifest.digest => Err(AwsError::Registry {
                registry: self.target.host(),
                operation: "PUT manifest".into(),
                attempts: 1,
                message: format!(
                    "the registry stored digest {d}, but the manifest sent has {}",
                    manifest.digest
                ),
            }),
            _ => Ok(manifest.digest.clone()),
        }
    }
}

/// `Bearer realm="https://x/token",service="reg"` -> ("Bearer", {realm, service}).
pub fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_owned());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

/// The `errors[].code: message` of an OCI error body, or a short prefix of the body.
fn registry_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(errors) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["code"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, base: Base) -> BuildSpec {
        let model = dir.join("model.json");
        std::fs::write(&model, b"{\"trees\":[]}").unwrap();
        BuildSpec {
            binary: small_elf(),
            model,
            base,
            serve_args: vec!["--host".into(), "0.0.0.0".into()],
            port: Some(8000),
            ca_bundle: None,
        }
    }

    /// A small dynamically linked executable (the test binary itself is tens of MB to gzip).
    fn small_elf() -> PathBuf {
        let t = PathBuf::from("/bin/true");
        if t.is_file() {
            t
        } else {
            std::env::current_exe().unwrap()
        }
    }

    fn untar(gz: &[u8]) -> Vec<(String, usize)> {
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut tar).unwrap();
        let mut out = Vec::new();
        let mut off = 0;
        while off + 512 <= tar.len() && tar[off] != 0 {
            let h = &tar[off..off + 512];
            let name = String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_string();
            let prefix = String::from_utf8_lossy(&h[345..500])
                .trim_end_matches('\0')
                .to_string();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&h[124..135]).trim_end_matches('\0'),
                8,
            )
            .unwrap();
            let sum: u32 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as u32
                    }
                })
                .sum();
            let stored =
                u32::from_str_radix(String::from_utf8_lossy(&h[148..154]).trim(), 8).unwrap();
            assert_eq!(sum, stored, "checksum of {name}");
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            out.push((full, size));
            off += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn scratch_image_has_binary_model_libs_and_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let img = build(&spec(dir.path(), Base::None)).unwrap();
        assert_eq!(img.layers.len(), 1);
        let entries = untar(&img.layers[0].bytes);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&BINARY_PATH));
        assert!(names.contains(&"model/model.json"));
        let config: Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            json!([
                "/usr/local/bin/health-predict",
                "serve",
                "--model",
                "/model/model.json",
                "--host",
                "0.0.0.0"
            ])
        );
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        let manifest: Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], json!(img.config.digest));
        assert_eq!(manifest["layers"][0]["digest"], json!(img.layers[0].digest));
        // A dynamically linked binary brings its loader into the layer.
        if !shared_libraries(&small_elf()).unwrap().is_empty() {
            assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
        }
        // Deterministic: same inputs, same digest.
        let again = build(&spec(dir.path(), Base::None)).unwrap();
        assert_eq!(again.manifest.digest, img.manifest.digest);
    }

    #[test]
    fn layout_base_layers_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = build(&spec(dir.path(), Base::None)).unwrap();
        // Write the scratch image as an OCI layout and use it as a base.
        let layout = dir.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for b in scratch
            .layers
            .iter()
            .chain([&scratch.config, &scratch.manifest])
        {
            std::fs::write(blobs.join(&b.digest[7..]), &b.bytes).unwrap();
        }
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = json!({"schemaVersion":2,"manifests":[{"mediaType":MANIFEST_TYPE,"digest":scratch.manifest.digest,"size":scratch.manifest.bytes.len(),"platform":{"os":"linux","architecture":"amd64"}}]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let img = build(&spec(dir.path(), Base::Layout(layout.clone()))).unwrap();
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0].digest, scratch.layers[0].digest);
        let config: Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        // A corrupted blob is refused.
        std::fs::write(blobs.join(&scratch.layers[0].digest[7..]), b"x").unwrap();
        let err = build(&spec(dir.path(), Base::Layout(layout))).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn long_paths_use_the_ustar_prefix() {
        let mut t = TarBuilder::default();
        let long = format!("{}/file", "d".repeat(120));
        t.file(&long, 0o644, b"abc");
        let tar = t.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let entries = untar(&gz.finish().unwrap());
        assert_eq!(entries.last().unwrap(), &(long, 3));
    }

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn targets_validate() {
        let t = Target::new("http://127.0.0.1:5000", "health-predict", "v1").unwrap();
        assert_eq!(t.host(), "127.0.0.1:5000");
        assert!(
            t.url("blobs/uploads/")
                .starts_with("http://127.0.0.1:5000/v2/health-predict/")
        );
        assert_eq!(
            Target::new("1.dkr.ecr.us-east-1.amazonaws.com", "a/b", "x")
                .unwrap()
                .registry
                .scheme(),
            "https"
        );
        assert!(Target::new("h", "Upper", "v").is_err());
        assert!(Target::new("h", "ok", "bad tag").is_err());
    }
}
