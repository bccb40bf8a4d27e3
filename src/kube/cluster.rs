//! Local clusters through the `kind` and `minikube` CLIs (which users install): create with
//! retries and known-failure diagnostics, delete, load images, and a doctor.
//!
//! Known failures handled here: minikube dying during start-up (the profile is purged and the start
//! retried), a half-created kind cluster blocking the next attempt (deleted first), images tagged
//! `:latest` that kind's nodes re-pull instead of using the loaded copy (warned), and port mappings
//! that kind fixes at creation (checked, never silently assumed). Cluster logs are exported when
//! a create finally fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::error::KubeError;
use crate::retry::{Backoff, Decision, retry};

/// The kind cluster config bundled from `kind-config/kind.yaml`.
pub const KIND_CONFIG: &str = include_str!("../../kind-config/kind.yaml");
/// The host/node port the bundled kind config maps (equal to the Service's nodePort).
pub const NODE_PORT: u16 = 30080;

/// Which CLI to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Kind,
    Minikube,
}

impl Provider {
    pub fn program(self) -> &'static str {
        match self {
            Provider::Kind => "kind",
            Provider::Minikube => "minikube",
        }
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            Provider::Kind => {
                "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) and docker"
            }
            Provider::Minikube => "install minikube (https://minikube.sigs.k8s.io/docs/start/)",
        }
    }
}

/// A cluster operation's settings.
#[derive(Debug, Clone)]
pub struct ClusterRequest {
    pub provider: Provider,
    /// The CLI's path.
    pub tool: PathBuf,
    /// Cluster (kind) or profile (minikube) name.
    pub name: String,
    /// A kind config; `None`: the bundled one.
    pub config: Option<PathBuf>,
    /// Where logs go when a create fails.
    pub logs_dir: PathBuf,
    pub backoff: Backoff,
    /// Longest a single CLI call may run.
    pub command_timeout: Duration,
}

impl ClusterRequest {
    pub fn new(provider: Provider, tool: PathBuf, name: &str, logs_dir: PathBuf) -> ClusterRequest {
        ClusterRequest {
            provider,
            tool,
            name: name.to_owned(),
            config: None,
            logs_dir,
            backoff: Backoff::CLUSTER,
            command_timeout: Duration::from_secs(300),
        }
    }
}

/// What a cluster command did.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub provider: Provider,
    pub name: String,
    pub action: String,
    pub attempts: u32,
    pub warnings: Vec<String>,
}

impl crate::output::Render for ClusterReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} {} ({}): done after {} attempt(s)",
            self.provider.program(),
            self.name,
            self.action,
            self.attempts
        )?;
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Finds a program on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[derive(Debug)]
struct Output {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }
}

async fn run(tool: &Path, args: &[&str], timeout: Duration) -> Result<Output, KubeError> {
    let command = format!("{} {}", tool.display(), args.join(" "));
    tracing::info!(%command, "running");
    let child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| KubeError::Cluster {
            command: command.clone(),
            problem: format!("cannot start: {e}"),
        })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| KubeError::Cluster {
            command: command.clone(),
            problem: format!("no answer within {}s (killed)", timeout.as_secs()),
        })?
        .map_err(|e| KubeError::Cluster {
            command: command.clone(),
            problem: e.to_string(),
        })?;
    Ok(Output {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Plain words for known CLI failures, and whether another attempt can help.
pub fn explain(provider: Provider, text: &str) -> (Option<&'static str>, Decision) {
    let t = text.to_lowercase();
    if t.contains("port is already allocated") || t.contains("address already in use") {
        return (
            Some(
                "a host port of the cluster's port mappings is taken: stop what listens there or change hostPort in kind-config/kind.yaml",
            ),
            Decision::Stop,
        );
    }
    if t.contains("cannot connect to the docker daemon")
        || t.contains("permission denied while trying to connect to the docker")
    {
        return (
            Some("docker is not running or not accessible to this user"),
            Decision::Stop,
        );
    }
    match provider {
        Provider::Minikube
            if t.contains("guest_provision")
                || t.contains("exit status 80")
                || t.contains("container exited unexpectedly") =>
        {
            (
                Some(
                    "minikube died during start-up; its profile was purged before the next attempt",
                ),
                Decision::Retry,
            )
        }
        Provider::Kind if t.contains("node(s) already exist") => (
            Some(
                "a half-created kind cluster was in the way; it was deleted before the next attempt",
            ),
            Decision::Retry,
        ),
        _ => (None, Decision::Retry),
    }
}

fn cluster_error(command: String, out: &Output, provider: Provider, extra: &str) -> KubeError {
    let (why, _) = explain(provider, &format!("{}\n{}", out.stdout, out.stderr));
    let mut problem = format!(
        "exit {}: {}",
        out.code.map_or("signal".into(), |c| c.to_string()),
        out.tail()
    );
    if let Some(w) = why {
        problem.push_str(&format!(" ({w})"));
    }
    problem.push_str(extra);
    KubeError::Cluster { command, problem }
}

/// Creates the cluster unless it exists. kind: with the port mappings of the config; a failed
/// attempt's leftovers are deleted before the next; minikube: a failed start purges the profile.
pub async fn up(req: &ClusterRequest) -> Result<ClusterReport, KubeError> {
    let mut warnings = Vec::new();
    // `minikube start` is idempotent (it also restarts a stopped profile); kind cannot create a
    // cluster twice.
    if req.provider == Provider::Kind && exists(req).await? {
        if req.provider == Provider::Kind
            && let Some(false) = kind_port_mapped(&req.name, NODE_PORT).await
        {
            return Err(KubeError::Cluster {
                command: format!("kind cluster {}", req.name),
                problem: format!(
                    "exists without the host port mapping for nodePort {NODE_PORT}: kind fixes port mappings at creation (run `health-predict cluster down` then `cluster up`)"
                ),
            });
        }
        warnings.push(format!(
            "cluster {} already exists: left as it is",
            req.name
        ));
        return Ok(ClusterReport {
            provider: req.provider,
            name: req.name.clone(),
            action: "up".into(),
            attempts: 0,
            warnings,
        });
    }
    let config_file;
    let config: String = match (&req.config, req.provider) {
        (Some(p), _) => p.display().to_string(),
        (None, Provider::Kind) => {
            config_file = tempfile::Builder::new()
                .prefix("kind-config")
                .suffix(".yaml")
                .tempfile()
                .map_err(|e| KubeError::Cluster {
                    command: "kind".into(),
                    problem: format!("cannot write the kind config: {e}"),
                })?;
            std::fs::write(config_file.path(), KIND_CONFIG).map_err(|e| KubeError::Cluster {
                command: "kind".into(),
                problem: format!("cannot write the kind config: {e}"),
            })?;
            config_file.path().display().to_string()
        }
        (None, Provider::Minikube) => String::new(),
    };
    let name = req.name.as_str();
    let create: Vec<&str> = match req.provider {
        Provider::Kind => vec![
            "create", "cluster", "--name", name, "--config", &config, "--wait", "180s",
        ],
        Provider::Minikube => vec!["start", "-p", name, "--wait=all"],
    };
    let command = format!("{} {}", req.provider.program(), create.join(" "));
    let tries = std::sync::atomic::AtomicU32::new(0);
    let result = retry(
        &req.backoff,
        |attempt| {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let create = create.clone();
            let command = command.clone();
            async move {
                if attempt > 0 {
                    clean_failed_attempt(req).await;
                }
                let out = run(&req.tool, &create, req.command_timeout)
                    .await
                    .map_err(|e| (e, None))?;
                if out.ok {
                    Ok(())
                } else {
                    Err((
                        cluster_error(command.clone(), &out, req.provider, ""),
                        Some(out),
                    ))
                }
            }
        },
        |(_, out): &(KubeError, Option<Output>)| match out {
            Some(o) => explain(req.provider, &format!("{}\n{}", o.stdout, o.stderr)).1,
            None => Decision::Stop,
        },
    )
    .await;
    match result {
        Ok(()) => Ok(ClusterReport {
            provider: req.provider,
            name: req.name.clone(),
            action: "up".into(),
            attempts: tries.load(std::sync::atomic::Ordering::SeqCst),
            warnings,
        }),
        Err(((KubeError::Cluster { command, problem }, _), attempts)) => {
            let exported = export_logs(req).await;
            Err(KubeError::Cluster {
                command,
                problem: format!("{problem}; gave up after {attempts} attempt(s){exported}"),
            })
        }
        Err(((e, _), _)) => Err(e),
    }
}

async fn clean_failed_attempt(req: &ClusterRequest) {
    let name = req.name.as_str();
    let args: Vec<&str> = match req.provider {
        Provider::Kind => vec!["delete", "cluster", "--name", name],
        Provider::Minikube => vec!["delete", "-p", name, "--purge"],
    };
    if let Err(e) = run(&req.tool, &args, req.command_timeout).await {
        tracing::warn!(error = %e, "cleaning up a failed attempt failed");
    }
}

async fn export_logs(req: &ClusterRequest) -> String {
    if std::fs::create_dir_all(&req.logs_dir).is_err() {
        return String::new();
    }
    let dir = req.logs_dir.display().to_string();
    let name = req.name.as_str();
    let file = req
        .logs_dir
        .join(format!("minikube-{name}.log"))
        .display()
        .to_string();
    let args: Vec<&str> = match req.provider {
        Provider::Kind => vec!["export", "logs", &dir, "--name", name],
        Provider::Minikube => vec!["logs", "-p", name, "--file", &file],
    };
    match run(&req.tool, &args, req.command_timeout).await {
        Ok(o) if o.ok => format!("; cluster logs exported to {dir}"),
        _ => format!("; exporting cluster logs to {dir} failed too"),
    }
}

/// Whether the cluster exists.
pub async fn exists(req: &ClusterRequest) -> Result<bool, KubeError> {
    match req.provider {
        Provider::Kind => {
            let out = run(&req.tool, &["get", "clusters"], req.command_timeout).await?;
            if !out.ok {
                return Err(cluster_error(
                    "kind get clusters".into(),
                    &out,
                    req.provider,
                    "",
                ));
            }
            Ok(out.stdout.lines().any(|l| l.trim() == req.name))
        }
        Provider::Minikube => {
            let out = run(&req.tool, &["status", "-p", &req.name], req.command_timeout).await?;
            // minikube status exits 0 when running, 7 when stopped, 85 when the profile is absent.
            Ok(out.ok
                || matches!(out.code, Some(c) if c != 85 && !out.stdout.contains("not found")))
        }
    }
}

/// kind's node is a docker container: `docker port` shows whether the node port is published.
/// `None` when docker cannot tell.
async fn kind_port_mapped(name: &str, port: u16) -> Option<bool> {
    let docker = find_program("docker")?;
    let container = format!("{name}-control-plane");
    let out = run(&docker, &["port", &container], Duration::from_secs(20))
        .await
        .ok()?;
    if !out.ok {
        return None;
    }
    Some(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{port}/tcp"))),
    )
}

/// Deletes the cluster.
pub async fn down(req: &ClusterRequest) -> Result<ClusterReport, KubeError> {
    let name = req.name.as_str();
    let args: Vec<&str> = match req.provider {
        Provider::Kind => vec!["delete", "cluster", "--name", name],
        Provider::Minikube => vec!["delete", "-p", name],
    };
    let out = run(&req.tool, &args, req.command_timeout).await?;
    if !out.ok {
        return Err(cluster_error(
            format!("{} {}", req.provider.program(), args.join(" ")),
            &out,
            req.provider,
            "",
        ));
    }
    Ok(ClusterReport {
        provider: req.provider,
        name: req.name.clone(),
        action: "down".into(),
        attempts: 1,
        warnings: Vec::new(),
    })
}

/// The warning for images kind would not use from the node's cache.
pub fn latest_warning(image: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => None,
        _ => Some(format!(
            "{image} is tagged :latest (or untagged): Kubernetes defaults imagePullPolicy to Always for it, so the node re-pulls from the registry instead of using the loaded copy; tag it uniquely (e.g. the commit SHA)"
        )),
    }
}

/// Loads a local image into the cluster's nodes, with retries.
pub async fn load_image(req: &ClusterRequest, image: &str) -> Result<ClusterReport, KubeError> {
    let mut warnings = Vec::new();
    if let Some(w) = latest_warning(image) {
        tracing::warn!("{w}");
        warnings.push(w);
    }
    let name = req.name.as_str();
    let args: Vec<&str> = match req.provider {
        Provider::Kind => vec!["load", "docker-image", image, "--name", name],
        Provider::Minikube => vec!["-p", name, "image", "load", image],
    };
    load(req, &args, format!("load-image {image}"), warnings).await
}

/// Loads an OCI or docker image archive (a tar) into the cluster's nodes, with retries:
/// `kind load image-archive` (containerd's `ctr images import --digests` on each node) or
/// `minikube image load`.
pub async fn load_archive(
    req: &ClusterRequest,
    archive: &Path,
) -> Result<ClusterReport, KubeError> {
    let name = req.name.as_str();
    let path = archive.display().to_string();
    let args: Vec<&str> = match req.provider {
        Provider::Kind => vec!["load", "image-archive", &path, "--name", name],
        Provider::Minikube => vec!["-p", name, "image", "load", &path],
    };
    load(req, &args, format!("load-archive {path}"), Vec::new()).await
}

/// Runs one image-load command with the request's retry policy.
async fn load(
    req: &ClusterRequest,
    args: &[&str],
    action: String,
    warnings: Vec<String>,
) -> Result<ClusterReport, KubeError> {
    let command = format!("{} {}", req.provider.program(), args.join(" "));
    let attempts = std::sync::atomic::AtomicU32::new(0);
    retry(
        &req.backoff,
        |_| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let command = command.clone();
            async move {
                let out = run(&req.tool, args, req.command_timeout).await?;
                if out.ok {
                    Ok(())
                } else {
                    Err(cluster_error(command, &out, req.provider, ""))
                }
            }
        },
        |e: &KubeError| match e {
            KubeError::Cluster { problem, .. } => explain(req.provider, problem).1,
            _ => Decision::Stop,
        },
    )
    .await
    .map_err(|(e, _)| e)?;
    Ok(ClusterReport {
        provider: req.provider,
        name: req.name.clone(),
        action,
        attempts: attempts.load(std::sync::atomic::Ordering::SeqCst),
        warnings,
    })
}

/// One doctor check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The doctor's findings.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl crate::output::Render for DoctorReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for c in &self.checks {
            writeln!(
                out,
                "[{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            )?;
            if let Some(h) = &c.hint {
                writeln!(out, "       hint: {h}")?;
            }
        }
        Ok(())
    }
}

fn check(name: &str, ok: bool, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
        hint: if ok { None } else { hint.map(str::to_owned) },
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(&format!(": {s}"));
        cur = s.source();
    }
    text
}

/// Checks the CLI, the cluster, kind's port mapping, proxy variables and the API server.
pub async fn doctor(req: &ClusterRequest) -> DoctorReport {
    let mut checks = Vec::new();
    let program = req.provider.program();
    let version_args: &[&str] = match req.provider {
        Provider::Kind => &["version"],
        Provider::Minikube => &["version", "--short"],
    };
    let cli_ok = match run(&req.tool, version_args, Duration::from_secs(20)).await {
        Ok(o) if o.ok => {
            checks.push(check(program, true, o.stdout.trim().to_owned(), None));
            true
        }
        Ok(o) => {
            checks.push(check(
                program,
                false,
                o.tail(),
                Some(req.provider.install_hint()),
            ));
            false
        }
        Err(e) => {
            checks.push(check(
                program,
                false,
                e.to_string(),
                Some(req.provider.install_hint()),
            ));
            false
        }
    };
    if cli_ok {
        match exists(req).await {
            Ok(true) => checks.push(check("cluster", true, format!("{} exists", req.name), None)),
            Ok(false) => checks.push(check(
                "cluster",
                false,
                format!("{} does not exist", req.name),
                Some("run `health-predict cluster up`"),
            )),
            Err(e) => checks.push(check(
                "cluster",
                false,
                e.to_string(),
                Some("run `health-predict cluster up`"),
            )),
        }
        if req.provider == Provider::Kind {
            match kind_port_mapped(&req.name, NODE_PORT).await {
                Some(ok) => checks.push(check(
                    "port mapping",
                    ok,
                    format!("nodePort {NODE_PORT} {} on the host", if ok { "is published" } else { "is NOT published" }),
                    Some("kind fixes port mappings at creation: `health-predict cluster down && health-predict cluster up` (or use port-forward: api-test --k8s-service)"),
                )),
                None => checks.push(check("port mapping", true, "not checked (docker cannot tell)", None)),
            }
        }
    }
    let proxies: Vec<String> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .filter(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
    .map(|k| k.to_string())
    .collect();
    let no_proxy = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let loopback_exempt = no_proxy.contains("127.0.0.1") || no_proxy.contains("localhost");
    checks.push(check(
        "proxy",
        proxies.is_empty() || loopback_exempt,
        if proxies.is_empty() { "no proxy variables set".to_owned() } else { format!("{} set, NO_PROXY={no_proxy:?}", proxies.join(", ")) },
        Some("add 127.0.0.1,localhost and the API server's host to NO_PROXY, or the proxy captures cluster traffic"),
    ));
    match super::client().await {
        Ok(client) => match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
            Ok(Ok(v)) => checks.push(check("api server", true, format!("reachable, {}", v.git_version), None)),
            Ok(Err(e)) => checks.push(check("api server", false, e.to_string(), Some("check the kubeconfig's current context (`kubectl config current-context`)"))),
            Err(_) => checks.push(check("api server", false, "no answer within 10s", Some("check the kubeconfig's server address, the proxy variables and that the cluster runs"))),
        },
        Err(e) => checks.push(check("api server", false, chain(&e), Some("set KUBECONFIG or create a cluster with `health-predict cluster up`"))),
    }
    DoctorReport { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_images_are_warned_about() {
        assert!(latest_warning("api:latest").is_some());
        assert!(latest_warning("r.io:5000/api").is_some());
        assert!(latest_warning("r.io:5000/api:abc123").is_none());
        assert!(latest_warning("r.io/api@sha256:00").is_none());
    }

    #[test]
    fn bundled_kind_config_maps_the_node_port() {
        assert!(KIND_CONFIG.contains(&format!("containerPort: {NODE_PORT}")));
    }

    #[test]
    fn known_failures_are_explained() {
        let (why, d) = explain(
            Provider::Kind,
            "Bind for 127.0.0.1:30080 failed: port is already allocated",
        );
        assert_eq!(d, Decision::Stop);
        assert!(why.unwrap().contains("hostPort"));
        let (why, d) = explain(
            Provider::Minikube,
            "X Exiting due to GUEST_PROVISION: error provisioning guest",
        );
        assert_eq!(d, Decision::Retry);
        assert!(why.unwrap().contains("purged"));
    }
}
