//! Running an image as a container with the runtime that is present (docker on GitHub's runners,
//! podman elsewhere): detect it, load an OCI archive, check the loaded image is the one built,
//! start it on the host network, wait for `/ready` while watching for a crash, read its logs,
//! and always remove it.
//!
//! It must not build images (that is [`crate::oci`]) or decide what a test means (the caller
//! runs [`crate::apitest`] against the address it gets). Machine-specific runtime settings
//! (podman's OCI runtime, cgroup manager, default ulimits) belong in `containers.conf`, not here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exit::{Diagnose, Exit};

/// Which runtime to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// docker when its daemon answers, else podman, else none.
    Auto,
    Docker,
    Podman,
    /// No container: the caller falls back to testing in-process.
    None,
}

/// A container engine's CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// A detected, working runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub program: PathBuf,
}

/// Errors of the container runtime. `logs` carries what the container printed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container runtime {runtime} is not usable: {problem}")]
    Unavailable { runtime: String, problem: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("the runtime loaded image {got}, not the image built ({expected})")]
    WrongImage { expected: String, got: String },
    #[error("container {name} did not become ready: {cause}{}", logs_suffix(logs))]
    NotReady {
        name: String,
        cause: String,
        logs: String,
    },
}

fn logs_suffix(logs: &str) -> String {
    if logs.trim().is_empty() {
        " (it printed nothing)".into()
    } else {
        format!("; its last output:\n{}", tail(logs, 20))
    }
}

impl Diagnose for ContainerError {
    fn exit(&self) -> Exit {
        match self {
            ContainerError::Unavailable { .. } => Exit::Usage,
            ContainerError::Command { .. } => Exit::Infra,
            ContainerError::WrongImage { .. } => Exit::Failure,
            ContainerError::NotReady { .. } => Exit::TestsFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ContainerError::Unavailable { .. } => "install docker or podman (podman also needs runc and, on cgroup v1 hosts, `[engine] cgroup_manager = \"cgroupfs\"` in containers.conf), or pass --runtime none to test in-process".into(),
            ContainerError::Command { .. } => "check the runtime works: `docker run --rm hello-world` or `podman info`".into(),
            ContainerError::WrongImage { .. } => "another image with this name was used; remove it (`docker rmi` / `podman rmi`) and run again".into(),
            ContainerError::NotReady { .. } => "the image itself is broken: read the container output above (missing library, wrong entrypoint, model path)".into(),
        })
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Finds the runtime to use; `Ok(None)` for `none`, or for `auto` when neither is present.
/// An explicitly chosen runtime that is missing or broken is an error.
pub async fn detect(choice: RuntimeChoice) -> Result<Option<Runtime>, ContainerError> {
    let candidates: &[Engine] = match choice {
        RuntimeChoice::None => return Ok(None),
        RuntimeChoice::Auto => &[Engine::Docker, Engine::Podman],
        RuntimeChoice::Docker => &[Engine::Docker],
        RuntimeChoice::Podman => &[Engine::Podman],
    };
    let mut problems = Vec::new();
    for &engine in candidates {
        let Some(program) = crate::kube::cluster::find_program(engine.program()) else {
            problems.push(format!("{} is not on PATH", engine.program()));
            continue;
        };
        let rt = Runtime { engine, program };
        // docker's `version` reaches its daemon (and fails without one); podman answers locally.
        let probe = match engine {
            Engine::Docker => "{{.Server.Version}}",
            Engine::Podman => "{{.Client.Version}}",
        };
        match rt.exec(&["version", "--format", probe], PROBE).await {
            Ok(_) => return Ok(Some(rt)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if choice == RuntimeChoice::Auto {
        tracing::info!("no container runtime: {}", problems.join("; "));
        return Ok(None);
    }
    Err(ContainerError::Unavailable {
        runtime: format!("{choice:?}").to_lowercase(),
        problem: problems.join("; "),
    })
}

const PROBE: Duration = Duration::from_secs(15);
const LOAD: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(60);

/// What a container run needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// A unique container name.
    pub name: String,
    pub image: String,
    /// Arguments appended to the image's entrypoint.
    pub args: Vec<String>,
}

/// A started container; removed (`rm -f`) when dropped, whatever happened.
#[derive(Debug)]
pub struct Container {
    runtime: Runtime,
    pub name: String,
    removed: bool,
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::process::Command::new(&self.runtime.program)
                .args(["rm", "-f", &self.name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The container's state as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub running: bool,
    pub exit_code: Option<i64>,
}

impl Runtime {
    /// Runs the CLI with a deadline; stdout on success, stderr (or stdout) as the error.
    pub async fn exec(&self, args: &[&str], timeout: Duration) -> Result<String, ContainerError> {
        let command = format!("{} {}", self.engine.program(), args.join(" "));
        let child = tokio::process::Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ContainerError::Command {
                command: command.clone(),
                message: format!("cannot start: {e}"),
            })?;
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| ContainerError::Command {
                command: command.clone(),
                message: format!("no answer within {}s (killed)", timeout.as_secs()),
            })?
            .map_err(|e| ContainerError::Command {
                command: command.clone(),
                message: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        Err(ContainerError::Command {
            command,
            message: format!(
                "exit {}: {}",
                out.status.code().unwrap_or(-1),
                tail(text, 12)
            ),
        })
    }

    /// Loads an OCI archive; returns the image ID to run it by. Checks that the loaded image's
    /// ID is the built image's config digest (podman, docker's classic store) or manifest digest
    /// (docker's containerd store), so the container runs exactly the built image.
    pub async fn load(
        &self,
        archive: &Path,
        config_digest: &str,
        manifest_digest: &str,
    ) -> Result<String, ContainerError> {
        let path = archive.display().to_string();
        let out = self.exec(&["load", "-i", &path], LOAD).await?;
        let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
        // Look the built image up by its own ID first: the tag it carries may already point at
        // another build loaded concurrently (same model, same tag), while the ID cannot.
        for want in [hex(config_digest), hex(manifest_digest)] {
            if let Ok(id) = self
                .exec(&["image", "inspect", "--format", "{{.Id}}", &want], SHORT)
                .await
                && id.trim().trim_start_matches("sha256:") == want
            {
                return Ok(want);
            }
        }
        let reference = out
            .lines()
            .rev()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix("Loaded image ID:")
                    .or_else(|| l.strip_prefix("Loaded image(s):"))
                    .or_else(|| l.strip_prefix("Loaded image:"))
                    .map(|r| r.trim().split(',').next().unwrap_or("").trim().to_owned())
            })
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ContainerError::Command {
                command: format!("{} load -i {path}", self.engine.program()),
                message: format!("did not say what it loaded: {}", tail(&out, 5)),
            })?;
        let id = self
            .exec(
                &["image", "inspect", "--format", "{{.Id}}", &reference],
                SHORT,
            )
            .await?;
        let id = id.trim().trim_start_matches("sha256:");
        if id != hex(config_digest) && id != hex(manifest_digest) {
            return Err(ContainerError::WrongImage {
                expected: manifest_digest.to_owned(),
                got: format!("{reference} (id {id})"),
            });
        }
        // Run (and later remove) by ID: a name may be re-pointed by a concurrent load.
        Ok(id.to_owned())
    }

    /// Pulls a reference unless the runtime has it.
    pub async fn pull(&self, reference: &str) -> Result<(), ContainerError> {
        if self
            .exec(
                &["image", "inspect", "--format", "{{.Id}}", reference],
                SHORT,
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.exec(&["pull", reference], LOAD).await.map(|_| ())
    }

    /// The image ID of a local image (what identifies it when the reference has no digest).
    pub fn digest_of(&self, reference: &str) -> String {
        std::process::Command::new(&self.program)
            .args(["image", "inspect", "--format", "{{.Id}}", reference])
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .map_or_else(
                || "unknown".into(),
                |id| {
                    if id.starts_with("sha256:") {
                        id
                    } else {
                        format!("sha256:{id}")
                    }
                },
            )
    }

    /// Starts a detached container on the host network (the test talks to 127.0.0.1).
    pub async fn run(&self, spec: &RunSpec) -> Result<Container, ContainerError> {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &spec.name,
            "--network",
            "host",
            &spec.image,
        ];
        args.extend(spec.args.iter().map(String::as_str));
        // Registered before the start so a half-created container is removed as well.
        let container = Container {
            runtime: self.clone(),
            name: spec.name.clone(),
            removed: false,
        };
        match self.exec(&args, SHORT).await {
            Ok(_) => Ok(container),
            Err(ContainerError::Command { message, .. }) => {
                let logs = self.logs(&spec.name).await;
                Err(ContainerError::NotReady {
                    name: spec.name.clone(),
                    cause: diagnose(&format!("{message}\n{logs}")),
                    logs: format!("{message}\n{logs}"),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// stdout and stderr of a container (empty when it has none or is gone).
    pub async fn logs(&self, name: &str) -> String {
        match tokio::process::Command::new(&self.program)
            .args(["logs", name])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
        {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => String::new(),
        }
    }

    pub async fn state(&self, name: &str) -> Result<State, ContainerError> {
        let out = self
            .exec(
                &[
                    "inspect",
                    "--format",
                    "{{.State.Running}} {{.State.ExitCode}}",
                    name,
                ],
                SHORT,
            )
            .await?;
        let mut parts = out.split_whitespace();
        Ok(State {
            running: parts.next() == Some("true"),
            exit_code: parts.next().and_then(|c| c.parse().ok()),
        })
    }
}

impl Container {
    /// Waits until `GET {base_url}/ready` answers 200, or the container exits, or the deadline.
    /// Returns the time from `started` to ready.
    pub async fn wait_ready(
        &self,
        base_url: &str,
        started: Instant,
        deadline: Duration,
    ) -> Result<Duration, ContainerError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .map_err(|e| ContainerError::Command {
                command: "HTTP client".into(),
                message: e.to_string(),
            })?;
        let url = format!("{base_url}/ready");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut polls = 0u32;
        loop {
            tick.tick().await;
            polls += 1;
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(started.elapsed());
            }
            // Checking the state costs a CLI call: every 10th poll (~0.2 s).
            if polls.is_multiple_of(10) {
                let state = self.runtime.state(&self.name).await?;
                if !state.running {
                    let logs = self.runtime.logs(&self.name).await;
                    return Err(ContainerError::NotReady {
                        name: self.name.clone(),
                        cause: format!(
                            "it exited with code {} — {}",
                            state.exit_code.map_or("?".into(), |c| c.to_string()),
                            diagnose(&logs)
                        ),
                        logs,
                    });
                }
            }
            if started.elapsed() > deadline {
                let logs = self.runtime.logs(&self.name).await;
                return Err(ContainerError::NotReady {
                    name: self.name.clone(),
                    cause: format!("{url} did not answer 200 within {}s", deadline.as_secs()),
                    logs,
                });
            }
        }
    }

    /// The container's output so far.
    pub async fn logs(&self) -> String {
        self.runtime.logs(&self.name).await
    }

    /// Removes the container (`rm -f`).
    pub async fn remove(mut self) {
        let _ = self.runtime.exec(&["rm", "-f", &self.name], SHORT).await;
        self.removed = true;
    }
}

/// Plain words for what a broken container printed.
pub fn diagnose(output: &str) -> String {
    let t = output.to_lowercase();
    if let Some(pos) = t.find("error while loading shared libraries:") {
        let rest = &output[pos + "error while loading shared libraries:".len()..];
        let lib = rest.trim().split(':').next().unwrap_or("?").trim();
        return format!("a shared library is missing from the image: {lib}");
    }
    if t.contains("model") && (t.contains("no such file") || t.contains("cannot read")) {
        return "the model file the entrypoint names is not in the image".into();
    }
    if t.contains("exec format error") {
        return "the entrypoint is not an executable for this platform (wrong architecture or not a binary)".into();
    }
    if (t.contains("executable file not found") || t.contains("no such file or directory"))
        && (t.contains("exec") || t.contains("entrypoint"))
    {
        return "the entrypoint cannot be executed: the binary, or the dynamic loader it needs, is not in the image".into();
    }
    if t.contains("certificate") || t.contains("ca bundle") {
        return "a TLS/CA bundle problem (scratch images carry no CA bundle unless one is added)"
            .into();
    }
    if t.contains("address already in use") {
        return "the port is taken on the host".into();
    }
    "see its output".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnoses_name_the_cause() {
        assert_eq!(
            diagnose(
                "/usr/local/bin/health-predict: error while loading shared libraries: libgcc_s.so.1: cannot open shared object file: No such file or directory"
            ),
            "a shared library is missing from the image: libgcc_s.so.1"
        );
        assert!(
            diagnose("error: cannot read model /model/missing.hpm: No such file or directory")
                .contains("model file")
        );
        assert!(diagnose("runc create failed: unable to start container process: exec: \"/usr/local/bin/health-predict\": stat /usr/local/bin/health-predict: no such file or directory").contains("entrypoint"));
        assert!(diagnose("exec /bin/x: exec format error").contains("architecture"));
        assert_eq!(diagnose("something else"), "see its output");
    }
}
