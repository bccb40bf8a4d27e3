//! The serving image's path through a run: build it in-process (OCI archive in the run
//! directory, nothing pushed), test that exact image as a container, then publish the same
//! digest — push to a registry, load into kind, or (local target) keep the archive in the state
//! directory — and hand back the reference by digest that deploy uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::config::{DeployTarget, PipelineConfig};
use crate::apitest::{self, CheckResult, SuiteConfig, SuiteReport};
use crate::container::{self, Engine, RunSpec, Runtime};
use crate::oci::{self, Base, BuildSpec, Image, ImageNames};

/// The repository name the image carries when it is not pushed to a registry (kind, local).
pub const LOCAL_REPOSITORY: &str = "docker.io/health-predict/api";
/// How long a container may take to answer `/ready`.
const CONTAINER_READY: Duration = Duration::from_secs(60);

/// A built image and where its archive is.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Image,
    pub tag: String,
    /// The OCI archive (one tagged name) the container runtime loads.
    pub archive: PathBuf,
    pub compressed_bytes: u64,
    pub unpacked_bytes: u64,
}

impl Built {
    pub fn digest(&self) -> &str {
        &self.image.manifest.digest
    }
}

/// `v<version>-<model id prefix>`.
pub fn tag(version: u64, model_id: &str) -> String {
    format!("v{version}-{}", &model_id[..model_id.len().min(12)])
}

/// Builds the serving image for `model` (this executable, scratch base plus its shared
/// libraries, the host CA bundle) and writes it as an OCI archive under `dir`.
pub fn build(model: &Path, version: u64, model_id: &str, dir: &Path) -> anyhow::Result<Built> {
    let binary =
        std::env::current_exe().context("cannot find this executable to build the image")?;
    let ca = Path::new("/").join(oci::CA_BUNDLE_PATH);
    let spec = BuildSpec {
        binary,
        model: model.to_owned(),
        base: Base::None,
        serve_args: vec![format!("--model-version={version}")],
        port: Some(8000),
        ca_bundle: ca.is_file().then_some(ca),
    };
    let image = oci::build(&spec)?;
    let tag = tag(version, model_id);
    let archive = dir.join("image.tar");
    oci::write_archive(
        &archive,
        &image,
        &ImageNames(vec![format!("{LOCAL_REPOSITORY}:{tag}")]),
    )?;
    let (compressed_bytes, unpacked_bytes) = sizes(&image)?;
    Ok(Built {
        image,
        tag,
        archive,
        compressed_bytes,
        unpacked_bytes,
    })
}

/// Compressed (what a registry stores and a node pulls) and unpacked (layer tars) sizes.
pub fn sizes(image: &Image) -> anyhow::Result<(u64, u64)> {
    let mut compressed = image.config.bytes.len() as u64 + image.manifest.bytes.len() as u64;
    let mut unpacked = 0;
    for l in &image.layers {
        compressed += l.bytes.len() as u64;
        let mut gz = flate2::read::GzDecoder::new(&l.bytes[..]);
        unpacked += std::io::copy(&mut gz, &mut std::io::sink())
            .with_context(|| format!("layer {} is not gzip", l.digest))?;
    }
    Ok((compressed, unpacked))
}

/// What a container test did.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerTest {
    pub runtime: Engine,
    /// The manifest digest of the image that ran.
    pub digest: String,
    /// From `run` to the first 200 on `/ready`; `None` when it never got ready.
    pub cold_start_ms: Option<f64>,
    /// The container's output, as written next to the JUnit file.
    pub logs_path: String,
    #[serde(skip)]
    pub report: SuiteReport,
}

/// The image a container test runs.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// An OCI archive, loaded and checked against the built digests, removed afterwards.
    Archive {
        path: PathBuf,
        config_digest: String,
        manifest_digest: String,
    },
    /// A reference the runtime pulls (or has); left in place afterwards.
    Reference(String),
}

/// Loads the archive into the runtime, checks it is the built image, runs it on 127.0.0.1
/// (a free port), runs the whole API suite against it (expecting `expect_version` from
/// `/model-info`), writes JUnit and the container's logs, and removes container and image. A
/// container that never gets ready is a failed check whose message names the cause and carries
/// its output.
pub async fn test_image(
    rt: &Runtime,
    source: &ImageSource,
    expect_version: Option<&str>,
    latency_budget: Duration,
    junit: &Path,
    logs_path: &Path,
) -> anyhow::Result<ContainerTest> {
    let (reference, digest) = match source {
        ImageSource::Archive {
            path,
            config_digest,
            manifest_digest,
        } => (
            rt.load(path, config_digest, manifest_digest).await?,
            manifest_digest.clone(),
        ),
        ImageSource::Reference(r) => {
            rt.pull(r).await?;
            let digest = r
                .split_once('@')
                .map_or_else(|| rt.digest_of(r), |(_, d)| d.to_owned());
            (r.clone(), digest)
        }
    };
    // A loaded archive is removed afterwards, also when this future is dropped (Ctrl-C).
    let loaded = matches!(source, ImageSource::Archive { .. }).then(|| LoadedImage {
        program: rt.program.clone(),
        reference: reference.clone(),
    });
    let result = run_container(rt, &reference, expect_version, latency_budget).await;
    drop(loaded);
    let (report, cold_start, logs) = result?;
    crate::fsutil::write_atomic(logs_path, logs.as_bytes())
        .with_context(|| format!("cannot write {}", logs_path.display()))?;
    apitest::write_junit(&report, junit)?;
    Ok(ContainerTest {
        runtime: rt.engine,
        digest,
        cold_start_ms: cold_start.map(|d| d.as_secs_f64() * 1000.0),
        logs_path: logs_path.display().to_string(),
        report,
    })
}

/// Removes a loaded image when dropped (`rmi -f`, best effort).
struct LoadedImage {
    program: PathBuf,
    reference: String,
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.program)
            .args(["rmi", "-f", &self.reference])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn run_container(
    rt: &Runtime,
    reference: &str,
    expect_version: Option<&str>,
    latency_budget: Duration,
) -> anyhow::Result<(SuiteReport, Option<Duration>, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port on 127.0.0.1")?
        .port();
    let base_url = format!("http://127.0.0.1:{port}");
    let spec = RunSpec {
        name: format!(
            "health-predict-test-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ),
        image: reference.to_owned(),
        args: vec!["--addr".into(), format!("127.0.0.1:{port}")],
    };
    let started = Instant::now();
    let broken = |e: container::ContainerError| -> anyhow::Result<_> {
        match e {
            container::ContainerError::NotReady { cause, logs, .. } => {
                let report = failed_start(&base_url, &cause, &logs, started.elapsed());
                Ok((report, None, logs))
            }
            other => Err(other.into()),
        }
    };
    let running = match rt.run(&spec).await {
        Ok(c) => c,
        Err(e) => return broken(e),
    };
    let ready = match running
        .wait_ready(&base_url, started, CONTAINER_READY)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            running.remove().await;
            return broken(e);
        }
    };
    tracing::info!(
        container = %running.name,
        "container ready in {:.0} ms",
        ready.as_secs_f64() * 1000.0
    );
    let mut suite = SuiteConfig::new(&base_url);
    suite.expect_version = expect_version.map(str::to_owned);
    suite.latency_budget = latency_budget;
    let report = apitest::run_suite(&suite).await;
    let logs = running.logs().await;
    running.remove().await;
    Ok((report?, Some(ready), logs))
}

/// A suite report with one failed check: the container never became ready.
fn failed_start(base_url: &str, cause: &str, logs: &str, took: Duration) -> SuiteReport {
    let millis = took.as_secs_f64() * 1000.0;
    SuiteReport {
        base_url: base_url.to_owned(),
        passed: 0,
        failed: 1,
        millis,
        model_version: None,
        checks: vec![CheckResult {
            name: "container_starts_and_is_ready".into(),
            passed: false,
            millis,
            message: format!(
                "the container did not become ready: {cause}; its output:\n{}",
                container::tail(logs, 40)
            ),
            request: Some("GET /ready".into()),
            response: None,
        }],
        unreachable: None,
    }
}

pub use crate::contracts::Published;

/// Publishes the built image: push to the configured registry, load into kind, or keep the
/// archive in the state directory (local target). The digest is the built one throughout.
pub async fn publish(
    cfg: &PipelineConfig,
    built: &Built,
    run_dir: &Path,
    env: &super::kubernetes::PushEnv,
) -> anyhow::Result<Published> {
    let digest = built.digest().to_owned();
    match cfg.deploy {
        DeployTarget::Kubernetes if cfg.image_repository.is_some() => {
            let report = super::kubernetes::push(cfg, env, &built.image, &built.tag).await?;
            if report.digest != digest {
                anyhow::bail!(
                    "the registry stored {} but the tested image is {digest}",
                    report.digest
                );
            }
            Ok(Published {
                destination: format!("registry:{}", report.tagged),
                reference: report.reference,
                digest,
            })
        }
        DeployTarget::Kubernetes => {
            let archive = run_dir.join("image-kind.tar");
            oci::write_archive(
                &archive,
                &built.image,
                &ImageNames::tag_and_digest(LOCAL_REPOSITORY, &built.tag, &built.image),
            )?;
            super::kubernetes::kind_load(cfg, &archive).await?;
            Ok(Published {
                destination: format!("kind:{}", cfg.kind_cluster),
                reference: format!("{LOCAL_REPOSITORY}@{digest}"),
                digest,
            })
        }
        DeployTarget::Local | DeployTarget::None => {
            let path = cfg
                .state_dir
                .join("images")
                .join(format!("{}.tar", digest.replace(':', "-")));
            if !path.exists() {
                std::fs::create_dir_all(cfg.state_dir.join("images"))?;
                std::fs::copy(&built.archive, path.with_extension("tar.part"))?;
                std::fs::rename(path.with_extension("tar.part"), &path)?;
            }
            Ok(Published {
                destination: format!("archive:{}", path.display()),
                reference: format!("{LOCAL_REPOSITORY}@{digest}"),
                digest,
            })
        }
    }
}
