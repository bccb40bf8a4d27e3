//! `image push` and `image test`: arguments into requests for [`crate::oci`] (build, push) and
//! [`crate::pipeline::image`] (the container test). ECR's login is fetched here through
//! `cli::aws` and handed to the pusher as credentials.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::aws::AwsError;
use crate::aws::ecr::RepositoryState;
use crate::cli::aws::{AwsArgs, parse_duration};
use crate::cli::{Context, env};
use crate::container::RuntimeChoice;
use crate::exit::{Classify, Exit};
use crate::oci::{self as image, Base, BuildSpec, Pusher, RegistryLogin, Target};
use crate::output::{Render, emit};
use crate::pipeline::image::{ContainerTest, ImageSource};
use crate::secret::Secret;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build the serving image (base + binary + model) and write it as an OCI layout and/or
    /// archive: nothing pushed. Prints its digest and sizes.
    Build(BuildArgs),
    /// Build the serving image (base + binary + model) and push it with the OCI distribution
    /// API: no Docker daemon. Prints the image reference by digest.
    Push(PushArgs),
    /// Run an image as a container (docker or podman) and run the API contract suite against
    /// it, writing JUnit: the exact artifact that will deploy, tested as itself.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// An image reference the runtime can pull or already has (e.g. `REPO@sha256:...`).
    #[arg(long, required_unless_present = "layout", conflicts_with = "layout")]
    pub image: Option<String>,
    /// An OCI image layout directory (e.g. from `image build`-style tools or the pipeline).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Container runtime: auto (docker with a daemon, then podman), docker or podman.
    #[arg(long, value_enum, default_value = "auto", env = env::CONTAINER_RUNTIME)]
    pub runtime: RuntimeChoice,
    /// Fail unless `/model-info` reports this model version.
    #[arg(long, env = env::EXPECT_VERSION)]
    pub expect_version: Option<String>,
    /// Where to write the JUnit XML report.
    #[arg(long, default_value = "junit.xml", env = env::JUNIT)]
    pub junit: PathBuf,
    /// Where to write the container's output [default: the JUnit path with `.container.log`].
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// p95 latency budget of single predictions, in ms.
    #[arg(long, default_value_t = 50.0)]
    pub latency_budget_ms: f64,
}

/// What goes into the image (shared by `image build` and `image push`).
#[derive(Debug, Clone, clap::Args)]
pub struct ContentArgs {
    /// The model file to serve.
    #[arg(long, env = env::MODEL)]
    pub model: PathBuf,
    /// Base image: an OCI image layout directory, or `none` (scratch plus the binary's shared
    /// libraries as `ldd` lists them).
    #[arg(long, default_value = "none", env = env::IMAGE_BASE)]
    pub base: Base,
    /// CA bundle for the image [default with --base none: /etc/ssl/certs/ca-certificates.crt
    /// when present]; `none` for no bundle.
    #[arg(long, env = env::IMAGE_CA_BUNDLE)]
    pub ca_bundle: Option<String>,
    /// The executable to put in the image [default: this binary].
    #[arg(long, env = env::IMAGE_BINARY)]
    pub binary: Option<PathBuf>,
    /// Extra `serve` arguments in the entrypoint (repeat), e.g. `--serve-arg=--host=0.0.0.0`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Container port to declare.
    #[arg(long, default_value_t = 8000, env = env::IMAGE_PORT)]
    pub port: u16,
}

impl ContentArgs {
    fn spec(&self) -> anyhow::Result<BuildSpec> {
        let binary = match &self.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe().classify(
                Exit::Usage,
                "pass --binary with the health-predict executable",
            )?,
        };
        let ca_bundle = match self.ca_bundle.as_deref() {
            Some("none") => None,
            Some(p) => Some(PathBuf::from(p)),
            None => {
                let host = std::path::Path::new("/").join(image::CA_BUNDLE_PATH);
                (matches!(self.base, Base::None) && host.is_file()).then_some(host)
            }
        };
        Ok(BuildSpec {
            ca_bundle,
            binary,
            model: self.model.clone(),
            base: self.base.clone(),
            serve_args: self.serve_args.clone(),
            port: Some(self.port),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub content: ContentArgs,
    /// Write the image as an OCI image layout directory.
    #[arg(long, required_unless_present = "archive")]
    pub layout: Option<PathBuf>,
    /// Write the image as an OCI archive (a tar of the layout: `kind load image-archive`,
    /// `podman load`, `docker load`).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// The name the layout's index gives the image (also the digest reference of its repository).
    #[arg(long, default_value = "docker.io/health-predict/api:local")]
    pub name: String,
}

#[derive(Debug, Serialize)]
struct BuildOutput {
    digest: String,
    compressed_bytes: u64,
    unpacked_bytes: u64,
    layers: usize,
    files: Vec<String>,
    layout: Option<String>,
    archive: Option<String>,
    build_seconds: f64,
}

impl Render for BuildOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "digest {}", self.digest)?;
        writeln!(
            out,
            "{:.1} MB compressed, {:.1} MB unpacked, {} layer(s), built in {:.2}s",
            self.compressed_bytes as f64 / 1e6,
            self.unpacked_bytes as f64 / 1e6,
            self.layers,
            self.build_seconds
        )?;
        for p in self.layout.iter().chain(&self.archive) {
            writeln!(out, "wrote {p}")?;
        }
        Ok(())
    }
}

async fn build(args: BuildArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let spec = args.content.spec()?;
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || image::build(&spec)).await??;
    let build_seconds = started.elapsed().as_secs_f64();
    let repository = args
        .name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(args.name.as_str(), |(r, _)| r);
    let names = image::ImageNames(vec![
        args.name.clone(),
        format!("{repository}@{}", built.manifest.digest),
    ]);
    if let Some(dir) = &args.layout {
        image::write_layout(dir, &built, &names)?;
    }
    if let Some(path) = &args.archive {
        image::write_archive(path, &built, &names)?;
    }
    let (compressed_bytes, unpacked_bytes) = crate::pipeline::image::sizes(&built)?;
    let _ = crate::ci::set_output("digest", &built.manifest.digest);
    emit(
        ctx.output,
        &BuildOutput {
            digest: built.manifest.digest.clone(),
            compressed_bytes,
            unpacked_bytes,
            layers: built.layers.len(),
            files: built.files.clone(),
            layout: args.layout.as_ref().map(|p| p.display().to_string()),
            archive: args.archive.as_ref().map(|p| p.display().to_string()),
            build_seconds,
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub content: ContentArgs,
    /// Repository name, e.g. `health-predict`.
    #[arg(long, env = env::IMAGE_REPOSITORY)]
    pub repository: String,
    /// Tag to push, e.g. the commit SHA.
    #[arg(long, env = env::IMAGE_TAG)]
    pub tag: String,
    /// Registry URL or host (`https://` unless given, e.g. `http://127.0.0.1:5000`)
    /// [default with --ecr: the ECR registry of the account].
    #[arg(long, env = env::IMAGE_REGISTRY)]
    pub registry: Option<String>,
    /// Log in with an ECR authorization token (user `AWS`, 12-hour password).
    #[arg(long)]
    pub ecr: bool,
    /// With --ecr: create the repository if it does not exist.
    #[arg(long, requires = "ecr")]
    pub create_repository: bool,
    /// Upload blobs larger than this many MiB in PATCH chunks of that size (0: one PUT per
    /// blob). Keep 0 for ECR, which mishandles multi-chunk uploads.
    #[arg(long, default_value_t = 0, env = env::IMAGE_CHUNK_MIB)]
    pub chunk_mib: usize,
    /// Time limit of one registry HTTP request.
    #[arg(long, default_value = "300s", value_parser = parse_duration, env = env::REGISTRY_TIMEOUT)]
    pub registry_timeout: Duration,
    /// Registry user without --ecr.
    #[arg(long, env = env::REGISTRY_USER)]
    pub registry_user: Option<String>,
}

pub async fn image(cmd: ImageCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match cmd {
        ImageCommand::Build(a) => build(a, ctx).await,
        ImageCommand::Push(a) => push(a, ctx).await,
        ImageCommand::Test(a) => test(a, ctx).await,
    }
}

#[derive(Debug, Serialize)]
struct PushOutput {
    #[serde(flatten)]
    push: image::PushReport,
    repository_created: Option<bool>,
    layers: usize,
    files: Vec<String>,
    build_seconds: f64,
    push_seconds: f64,
}

impl Render for PushOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "pushed {}", self.push.tagged)?;
        writeln!(out, "digest {}", self.push.digest)?;
        writeln!(
            out,
            "{} blob(s) uploaded ({} bytes), {} already there; build {:.2}s, push {:.2}s",
            self.push.uploaded_blobs,
            self.push.uploaded_bytes,
            self.push.existing_blobs,
            self.build_seconds,
            self.push_seconds
        )?;
        writeln!(out, "deploy with image: {}", self.push.reference)
    }
}

async fn push(args: PushArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let mut repository_created = None;
    let (registry, login) = if args.ecr {
        let (ecr, _) = args.aws.ecr().await?;
        if args.create_repository {
            let state = ecr.ensure_repository(&args.repository).await?;
            tracing::info!(repository = %args.repository, ?state, "ECR repository");
            repository_created = Some(state == RepositoryState::Created);
        }
        let auth = ecr.authorization().await?;
        let registry = args
            .registry
            .clone()
            .unwrap_or_else(|| auth.registry.clone());
        (
            registry,
            Some(RegistryLogin {
                username: auth.username.clone(),
                password: auth.password.clone(),
            }),
        )
    } else {
        let registry = args
            .registry
            .clone()
            .ok_or_else(|| AwsError::Invalid("--registry is required without --ecr".into()))?;
        let password = std::env::var(env::REGISTRY_PASSWORD)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        let login = match (args.registry_user.clone(), password) {
            (Some(username), Some(password)) => Some(RegistryLogin { username, password }),
            (None, None) => None,
            _ => {
                return Err(AwsError::Invalid(format!(
                    "set both --registry-user and {} (or neither)",
                    env::REGISTRY_PASSWORD
                ))
                .into());
            }
        };
        (registry, login)
    };
    let target = Target::new(&registry, &args.repository, &args.tag)?;
    let spec = args.content.spec()?;
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || image::build(&spec)).await??;
    let build_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        layers = built.layers.len(),
        manifest = %built.manifest.digest,
        "image built in {build_seconds:.2}s"
    );
    let mut pusher = Pusher::new(target, login, args.registry_timeout)?;
    pusher.chunk_size = (args.chunk_mib > 0).then(|| args.chunk_mib * 1024 * 1024);
    let started = std::time::Instant::now();
    let report = pusher.push(&built).await?;
    let push_seconds = started.elapsed().as_secs_f64();
    let _ = crate::ci::set_output("image", &report.reference);
    let _ = crate::ci::set_output("digest", &report.digest);
    emit(
        ctx.output,
        &PushOutput {
            push: report,
            repository_created,
            layers: built.layers.len(),
            files: built.files.clone(),
            build_seconds,
            push_seconds,
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
struct TestOutput {
    #[serde(flatten)]
    test: ContainerTest,
    image: String,
    passed: usize,
    failed: usize,
    junit: String,
    failures: Vec<String>,
}

impl Render for TestOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} as a {} container: {} passed, {} failed{}",
            self.image,
            self.test.runtime.program(),
            self.passed,
            self.failed,
            self.test.cold_start_ms.map_or(String::new(), |ms| format!(
                ", ready {ms:.0} ms after start"
            ))
        )?;
        for f in &self.failures {
            writeln!(out, "FAILED {f}")?;
        }
        writeln!(
            out,
            "JUnit: {}; container output: {}",
            self.junit, self.test.logs_path
        )
    }
}

async fn test(args: TestArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let runtime = match args.runtime {
        RuntimeChoice::None => None,
        choice => crate::container::detect(choice).await?,
    }
    .ok_or_else(|| crate::container::ContainerError::Unavailable {
        runtime: format!("{:?}", args.runtime).to_lowercase(),
        problem: "neither docker (with a daemon) nor podman was found".into(),
    })?;
    let tmp = tempfile::tempdir()?;
    let (source, shown) = match (&args.image, &args.layout) {
        (Some(r), _) => (ImageSource::Reference(r.clone()), r.clone()),
        (None, Some(dir)) => {
            let archive = tmp.path().join("image.tar");
            let (manifest, config) = image::layout::archive_dir(dir, &archive)?;
            (
                ImageSource::Archive {
                    path: archive,
                    config_digest: config,
                    manifest_digest: manifest.clone(),
                },
                format!("{} ({manifest})", dir.display()),
            )
        }
        (None, None) => unreachable!("clap requires --image or --layout"),
    };
    let logs = args
        .logs
        .clone()
        .unwrap_or_else(|| args.junit.with_extension("container.log"));
    let t = crate::pipeline::image::test_image(
        &runtime,
        &source,
        args.expect_version.as_deref(),
        Duration::from_secs_f64(args.latency_budget_ms / 1000.0),
        &args.junit,
        &logs,
    )
    .await?;
    let exit = t.report.exit();
    let failures = t
        .report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    let _ = crate::ci::set_output("junit", &args.junit.display().to_string());
    emit(
        ctx.output,
        &TestOutput {
            image: shown,
            passed: t.report.passed,
            failed: t.report.failed,
            junit: args.junit.display().to_string(),
            failures,
            test: t,
        },
    )?;
    Ok(exit)
}
