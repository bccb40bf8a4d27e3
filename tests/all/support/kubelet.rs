//! A kubelet stand-in for the fake API server's port-forward: it runs a pod's image for real.
//!
//! The image is found where a node would find it: among the OCI archives `kind load
//! image-archive` put on the node (the kind stand-in's store), or pulled from its registry with
//! the credentials of the pod's pull secrets (`.dockerconfigjson`, as the kubelet reads them). Its
//! layers are unpacked with the system `tar`, and its entrypoint (with the container's `command`
//! and `args`, as Kubernetes applies them) runs from the unpacked root: the image's own binary and
//! model file, with absolute paths inside the image resolved under that root (no chroot) and the
//! listen address moved to a free loopback port. Images run by digest only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Copies a blob (or the manifest) by digest to a file.
type Fetch = Box<dyn Fn(&str, &Path) -> Result<(), String>>;

/// Runs images; kills what it started when dropped.
pub struct Kubelet {
    /// Where the kind stand-in keeps loaded archives (`<digest hex>.tar`).
    pub node_images: PathBuf,
    /// Scratch space for unpacked images and logs.
    pub work: PathBuf,
    /// `(image host, base URL, host the pull secret names)`: a local registry standing in for
    /// a remote one (ECR), reached at the base URL with the remote host's credentials.
    pub registries: Mutex<Vec<(String, String, String)>>,
    running: Mutex<HashMap<String, (Child, SocketAddr)>>,
    /// Every image started, in order.
    pub started: Mutex<Vec<String>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.lock() {
            for (_, (child, _)) in r.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Kubelet {
    pub fn new(node_images: &Path, work: &Path) -> Kubelet {
        Kubelet {
            node_images: node_images.to_path_buf(),
            work: work.to_path_buf(),
            registries: Mutex::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            started: Mutex::new(Vec::new()),
        }
    }

    /// The address where `pod`'s first container serves, starting it on first use.
    pub fn serve(&self, pod: &Value, secrets: &[Value]) -> Result<SocketAddr, String> {
        let container = &pod["spec"]["containers"][0];
        let image = container["image"]
            .as_str()
            .ok_or("the pod has no container image")?
            .to_owned();
        let mut running = self.running.lock().map_err(|e| e.to_string())?;
        if let Some((child, addr)) = running.get_mut(&image)
            && child.try_wait().map_err(|e| e.to_string())?.is_none()
        {
            return Ok(*addr);
        }
        let (name, digest) = image
            .split_once("@sha256:")
            .ok_or_else(|| format!("{image}: this kubelet runs images by digest only"))?;
        let root = self.work.join(format!("rootfs-{}", &digest[..12]));
        let blobs = self.work.join(format!("blobs-{}", &digest[..12]));
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
        let archive = self.node_images.join(format!("{digest}.tar"));
        let fetch: Fetch = if archive.is_file() {
            tar(&[
                "-xf",
                &archive.display().to_string(),
                "-C",
                &blobs.display().to_string(),
            ])?;
            let dir = blobs.clone();
            Box::new(move |d: &str, out: &Path| {
                let hex = d.trim_start_matches("sha256:");
                std::fs::copy(dir.join("blobs/sha256").join(hex), out)
                    .map(|_| ())
                    .map_err(|e| format!("blob {d} is not in the loaded archive: {e}"))
            })
        } else {
            let (host, repo) = name
                .split_once('/')
                .ok_or_else(|| format!("{image}: no registry host"))?;
            let (base, secret_host) = self
                .registries
                .lock()
                .map_err(|e| e.to_string())?
                .iter()
                .find(|(h, _, _)| h == host)
                .map(|(_, b, s)| (b.clone(), s.clone()))
                .ok_or_else(|| {
                    format!("ErrImagePull: {image} is not on the node and {host} is unknown")
                })?;
            let auth = pull_auth(secrets, &secret_host).ok_or_else(|| {
                format!("ErrImagePull: no pull secret of the pod has credentials for {secret_host}")
            })?;
            let repo = repo.to_owned();
            Box::new(move |d: &str, out: &Path| {
                let url = if out.extension().is_some_and(|e| e == "manifest") {
                    format!("{base}/v2/{repo}/manifests/{d}")
                } else {
                    format!("{base}/v2/{repo}/blobs/{d}")
                };
                curl(&url, &auth, out)
            })
        };
        // The manifest, checked against the digest the pod names.
        let manifest_path = blobs.join("image.manifest");
        fetch(&format!("sha256:{digest}"), &manifest_path)?;
        let manifest_bytes = std::fs::read(&manifest_path).map_err(|e| e.to_string())?;
        let actual = sha256_hex(&manifest_bytes);
        if actual != digest {
            return Err(format!(
                "manifest digest sha256:{actual} is not the pod's sha256:{digest}"
            ));
        }
        let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| e.to_string())?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or("manifest without config")?;
        let config_path = blobs.join("config.json");
        fetch(config_digest, &config_path)?;
        let config: Value =
            serde_json::from_slice(&std::fs::read(&config_path).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
            let d = layer["digest"].as_str().ok_or("layer without digest")?;
            let p = blobs.join(format!("layer-{}.tar.gz", &d[7..19]));
            fetch(d, &p)?;
            tar(&[
                "-xzf",
                &p.display().to_string(),
                "-C",
                &root.display().to_string(),
            ])?;
        }
        // Kubernetes: `command` replaces the entrypoint, `args` replaces the image's Cmd.
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut argv = match strings(&container["command"]) {
            c if !c.is_empty() => c,
            _ => strings(&config["config"]["Entrypoint"]),
        };
        argv.extend(match strings(&container["args"]) {
            a if !a.is_empty() => a,
            _ => strings(&config["config"]["Cmd"]),
        });
        if argv.is_empty() {
            return Err("the image has no entrypoint".into());
        }
        let inside = |a: &str| -> String {
            if a.starts_with('/') && root.join(&a[1..]).exists() {
                root.join(&a[1..]).display().to_string()
            } else {
                a.to_owned()
            }
        };
        let mut args = Vec::new();
        let mut skip = false;
        for a in &argv[1..] {
            if skip {
                skip = false;
                continue;
            }
            if a == "--addr" {
                skip = true;
                continue;
            }
            if a.starts_with("--addr=") {
                continue;
            }
            args.push(inside(a));
        }
        let port = super::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = self.work.join(format!("container-{}.log", &digest[..12]));
        let mut cmd = Command::new(inside(&argv[0]));
        cmd.args(&args).env_clear();
        for e in strings(&config["config"]["Env"]) {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        for e in container["env"].as_array().cloned().unwrap_or_default() {
            if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                cmd.env(k, v);
            }
        }
        cmd.env("HEALTH_PREDICT_ADDR", addr.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(std::fs::File::create(log.with_extension("err")).map_err(|e| e.to_string())?);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
                return Err(format!(
                    "CrashLoopBackOff: the container exited {status}: {err}"
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("the container did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.started.lock().unwrap().push(image.clone());
        running.insert(image, (child, addr));
        Ok(addr)
    }
}

/// `user:password` for `host` from `kubernetes.io/dockerconfigjson` Secrets.
fn pull_auth(secrets: &[Value], host: &str) -> Option<String> {
    secrets.iter().find_map(|s| {
        let data = s["data"][".dockerconfigjson"].as_str()?;
        let config: Value = serde_json::from_slice(&STANDARD.decode(data).ok()?).ok()?;
        let auth = config["auths"][host]["auth"].as_str()?;
        String::from_utf8(STANDARD.decode(auth).ok()?).ok()
    })
}

fn curl(url: &str, auth: &str, out: &Path) -> Result<(), String> {
    let mut c = Command::new("curl");
    c.args(["-fsS", "-u", auth, "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
        .arg("-o")
        .arg(out)
        .arg(url);
    succeed(c, &format!("ErrImagePull: GET {url}"))
}

fn tar(args: &[&str]) -> Result<(), String> {
    let mut c = Command::new("tar");
    c.args(args);
    succeed(c, &format!("tar {}", args.join(" ")))
}

/// Runs `c`; a failure is `what: <its stderr>`.
fn succeed(mut c: Command, what: &str) -> Result<(), String> {
    let o = c.output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
