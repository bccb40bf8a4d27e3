//! `pipeline run | plan | simulate`: flags and environment merged over `health-predict.toml`,
//! turned into a validated [`PipelineConfig`], then handed to the pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{Context, env};
use crate::container::RuntimeChoice;
use crate::data::Target;
use crate::exit::{Exit, fail};
use crate::output::{Render, emit};
use crate::pipeline::config::{DeployTarget, PipelineConfig, Settings};
use crate::pipeline::kubernetes::PushEnv;
use crate::pipeline::run::{self, Inputs, RunOptions, RunReport, Source};
use crate::pipeline::steps::{Status, Step};
use crate::secret::Secret;

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run the loop once: drift → train → gate → register → API tests → deploy → verify → promote.
    Run(RunArgs),
    /// Show the merged settings and which steps would run, and why, without running them.
    Plan(RunArgs),
    /// Replay the five simulated future batches in order against one registry (the image is
    /// not built or run as a container unless --runtime asks for it).
    Simulate(SimulateArgs),
}

macro_rules! settings_args {
    ($(
        $(#[doc = $doc:expr])*
        $name:ident : $cli:ty => $file:ty, $via:ident, [$($arg:tt)*], env($($env:ident)?);
    )*) => {
        /// Settings shared by `run`, `plan` and `simulate`. Unset flags fall back to
        /// `health-predict.toml`, then to the documented defaults.
        #[derive(Debug, Clone, Args)]
        #[command(next_help_heading = "Pipeline settings")]
        pub struct SettingsArgs {
            /// Configuration file [default: ./health-predict.toml when it exists].
            #[arg(long, env = env::CONFIG)]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg($($arg)* $(, env = env::$env)?)]
                pub $name: $cli,
            )*
        }

        impl SettingsArgs {
            /// The flags and environment as one configuration layer.
            fn layer(&self) -> Settings {
                Settings {
                    $($name: crate::pipeline::config::layer::$via(&self.$name),)*
                    batch: None,
                    run_dir: None,
                }
            }
        }
    };
}
crate::pipeline::config::pipeline_settings!(settings_args);

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The new batch of encounters (CSV or CSV.gz) [default: none: a bootstrap run].
    #[arg(long, env = env::BATCH)]
    pub batch: Option<PathBuf>,
    /// Where this run's outputs go [default: runs/RUN_ID].
    #[arg(long, env = env::RUN_DIR)]
    pub run_dir: Option<PathBuf>,
    /// Run even if these inputs were already processed with these settings.
    #[arg(long)]
    pub force: bool,
    /// Only print the plan (same as `pipeline plan`).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Which of the five future batches to replay, in order: `1..5`, `2..=4` or `1,3,5`.
    #[arg(long, default_value = "1..5")]
    pub batches: String,
    /// Directory for the simulation's runs and state [default: runs/simulate-RUN_ID].
    #[arg(long, env = env::RUN_DIR)]
    pub run_dir: Option<PathBuf>,
}

impl SettingsArgs {
    /// Flags and environment over the configuration file over defaults.
    fn resolve(&self, extra: Settings) -> anyhow::Result<PipelineConfig> {
        let file = match &self.config {
            Some(p) => Settings::from_file(p)?,
            None if Path::new("health-predict.toml").exists() => {
                Settings::from_file(Path::new("health-predict.toml"))?
            }
            None => Settings::default(),
        };
        Ok(PipelineConfig::resolve(
            extra.over(self.layer()).over(file),
        )?)
    }
}

impl RunArgs {
    fn config(&self) -> anyhow::Result<PipelineConfig> {
        self.settings.resolve(Settings {
            batch: self.batch.clone(),
            run_dir: self.run_dir.clone(),
            ..Settings::default()
        })
    }
}

fn inputs(cfg: &PipelineConfig) -> Inputs {
    Inputs {
        initial: match &cfg.data {
            Some(p) => Source::File(p.clone()),
            None => Source::Synthetic {
                rows: cfg.synth_rows,
                seed: cfg.seed,
            },
        },
        batch: cfg.batch.clone().map(Source::File),
    }
}

/// A run id: `HEALTH_PREDICT_RUN_ID`, else UTC time plus a random suffix.
fn run_id() -> String {
    match std::env::var(env::RUN_ID) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => format!(
            "{}-{:06x}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
            rand::random::<u32>() & 0xff_ffff
        ),
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM; a second signal exits at once.
fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::warn!("interrupted: stopping after cleanup (signal again to exit now)");
        token.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        std::process::exit(i32::from(Exit::Interrupted.code()));
    });
}

fn plain() -> bool {
    crate::ci::in_github_actions() || !std::io::IsTerminal::is_terminal(&std::io::stderr())
}

pub async fn run(command: PipelineCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        PipelineCommand::Run(args) if args.dry_run => plan(&args, ctx).await,
        PipelineCommand::Run(args) => run_once(&args, ctx).await,
        PipelineCommand::Plan(args) => plan(&args, ctx).await,
        PipelineCommand::Simulate(args) => simulate(&args, ctx).await,
    }
}

/// What the pipeline's push reads from the environment, read here.
fn push_env() -> PushEnv {
    use crate::aws::credentials::{CredentialMode, REQUEST_TOKEN_VAR, SOURCE_VARS};
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let login = match (var(env::REGISTRY_USER), var(env::REGISTRY_PASSWORD)) {
        (Some(username), Some(p)) => Some(crate::oci::RegistryLogin {
            username,
            password: Secret::new(p),
        }),
        _ => None,
    };
    let aws_credentials = match var(env::AWS_CREDENTIALS) {
        Some(m) => <CredentialMode as clap::ValueEnum>::from_str(&m, true)
            .map_err(|e| format!("{}: {e}", env::AWS_CREDENTIALS)),
        None => Ok(CredentialMode::Auto),
    };
    PushEnv {
        login,
        aws_region: var(env::AWS_REGION).or_else(|| var(env::AWS_DEFAULT_REGION)),
        aws_endpoint_url: var(env::AWS_ENDPOINT_URL),
        aws_credentials,
        aws_role_arn: var(env::AWS_ROLE_ARN),
        oidc_audience: var(env::OIDC_AUDIENCE),
        runner: SOURCE_VARS
            .into_iter()
            .filter(|k| *k != REQUEST_TOKEN_VAR)
            .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
            .collect(),
        oidc_request_token: std::env::var(REQUEST_TOKEN_VAR).ok().map(Secret::new),
    }
}

async fn run_once(args: &RunArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let cfg = args.config()?;
    let id = run_id();
    let run_dir = cfg
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&id));
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let inputs = inputs(&cfg);
    let report = run::run(
        cfg,
        inputs,
        RunOptions {
            run_id: id,
            run_dir,
            force: args.force,
            plain: plain(),
            cancel,
            diagnose: super::errors::diagnose,
            mlflow: super::registry::mlflow_credentials(),
            push: push_env(),
        },
    )
    .await?;
    emit(ctx.output, &report)?;
    Ok(report.exit)
}

impl Render for RunReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "pipeline run {}: {} (exit {}) — decision {}",
            self.run_id,
            self.status,
            self.exit_code,
            self.decision.as_deref().unwrap_or("none")
        )?;
        for s in &self.steps {
            writeln!(
                out,
                "  {:<9} {:<8} {:>7.2} s  {}",
                s.name,
                crate::pipeline::steps::label(s.status),
                s.seconds,
                s.detail
            )?;
        }
        writeln!(
            out,
            "production: {} → {}; outputs in {} ({:.1} s)",
            self.production_before
                .map_or("none".into(), |v| format!("version {v}")),
            self.production_after
                .map_or("none".into(), |v| format!("version {v}")),
            self.run_dir,
            self.seconds
        )
    }
}

/// What `pipeline plan` prints.
#[derive(Debug, Serialize)]
struct Plan {
    config: PipelineConfig,
    production: Option<u64>,
    steps: Vec<PlannedStep>,
}

#[derive(Debug, Serialize)]
struct PlannedStep {
    name: &'static str,
    runs: bool,
    why: String,
}

impl Render for Plan {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "settings (flags > environment > health-predict.toml > defaults):"
        )?;
        let json = serde_json::to_value(&self.config).unwrap_or_default();
        if let Some(map) = json.as_object() {
            for (k, v) in map {
                writeln!(out, "  {k:<22} {v}")?;
            }
        }
        writeln!(out, "steps:")?;
        for s in &self.steps {
            writeln!(
                out,
                "  {:<9} {:<6} {}",
                s.name,
                if s.runs { "run" } else { "skip" },
                s.why
            )?;
        }
        Ok(())
    }
}

async fn plan(args: &RunArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let cfg = args.config()?;
    let registry = crate::registry::open(&cfg.registry, &super::registry::mlflow_credentials())?;
    let production = registry.alias(run::PRODUCTION).await?;
    let batch = cfg.batch.is_some();
    let deploys = cfg.deploy != DeployTarget::None;
    let step = |step: Step, runs: bool, why: String| PlannedStep {
        name: step.name(),
        runs,
        why,
    };
    let train_why = match (batch, production, cfg.force_retrain) {
        (false, _, _) => "bootstrap run: train on the initial data".to_owned(),
        (true, None, _) => "no production model yet: train whatever the drift".into(),
        (true, Some(_), true) => "--force-retrain: train whatever the drift".into(),
        (true, Some(_), false) => format!(
            "only if the drift share is over {:.2} (decided by the drift step)",
            cfg.drift_share_threshold
        ),
    };
    let mut steps = vec![
        step(
            Step::Load,
            true,
            format!("initial data: {}", inputs(&cfg).initial.describe()),
        ),
        step(
            Step::Drift,
            batch,
            if batch {
                format!(
                    "compare {} with the initial data",
                    cfg.batch
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string())
                )
            } else {
                "no --batch: nothing to compare".into()
            },
        ),
    ];
    for &s in Step::Dataset.through(Step::ApiTest) {
        steps.push(step(s, true, train_why.clone()));
    }
    let runtime = match cfg.container_runtime {
        crate::container::RuntimeChoice::None => None,
        choice => crate::container::detect(choice).await?,
    };
    let builds =
        cfg.image.is_none() && (cfg.deploy == DeployTarget::Kubernetes || runtime.is_some());
    if let Some(s) = steps.iter_mut().find(|s| s.name == Step::Package.name()) {
        s.why = format!(
            "{}; {}",
            train_why,
            if builds {
                "build the serving image as an OCI archive in the run directory"
            } else {
                "model file only"
            }
        );
    }
    if let Some(s) = steps.iter_mut().find(|s| s.name == Step::ApiTest.name()) {
        s.why = match (&runtime, builds) {
            (Some(rt), true) => format!(
                "run the built image as a container with {} and test it",
                rt.engine.program()
            ),
            _ => {
                "in-process server (no container runtime, or --image given): recorded as a fallback"
                    .into()
            }
        };
    }
    let (push_runs, push_why) = match (builds, cfg.deploy) {
        (false, _) => (false, "no image built".to_owned()),
        (true, DeployTarget::None) => (false, "deploy = none".into()),
        (true, DeployTarget::Kubernetes) => match &cfg.image_repository {
            Some(repo) => (
                true,
                format!(
                    "push the tested digest to {}/{repo}",
                    cfg.image_registry
                        .as_deref()
                        .unwrap_or(if cfg.ecr { "ECR" } else { "?" })
                ),
            ),
            None => (
                true,
                format!(
                    "load the tested image into kind: `kind load image-archive <run-dir>/image-kind.tar --name {}`; deploy {}@sha256:<digest>{}",
                    cfg.kind_cluster,
                    crate::pipeline::image::LOCAL_REPOSITORY,
                    if crate::kube::cluster::find_program("kind").is_none() {
                        " (kind is not on PATH: install it, or set --image-repository to push instead)"
                    } else {
                        ""
                    }
                ),
            ),
        },
        (true, DeployTarget::Local) => (
            true,
            format!(
                "keep the tested image as an OCI archive in {}/images",
                cfg.state_dir.display()
            ),
        ),
    };
    steps.push(step(Step::Push, push_runs, push_why));
    let deploy_why = match cfg.deploy {
        DeployTarget::Local => format!(
            "install in {}/serving and serve it to check /model-info",
            cfg.state_dir.display()
        ),
        DeployTarget::Kubernetes => format!(
            "server-side apply in namespace {} and watch the rollout",
            cfg.namespace
        ),
        DeployTarget::None => "deploy = none".into(),
    };
    steps.push(step(Step::Deploy, deploys, deploy_why.clone()));
    steps.push(step(Step::Verify, deploys, deploy_why));
    steps.push(step(
        Step::Promote,
        deploys,
        format!(
            "alias `production` ({}) moves only after a verified deploy and a passing gate",
            production.map_or("unset".into(), |v| format!("now version {v}"))
        ),
    ));
    steps.push(step(
        Step::Report,
        true,
        "run.json and summary.md, always".into(),
    ));
    debug_assert_eq!(steps.len(), Step::ALL.len());
    emit(
        ctx.output,
        &Plan {
            config: cfg,
            production,
            steps,
        },
    )?;
    Ok(Exit::Success)
}

/// Parses `1..5`, `2..=4` (both inclusive) or `1,3,5` into batch numbers 1–5.
pub fn parse_batches(spec: &str) -> Result<Vec<usize>, String> {
    let spec = spec.trim();
    let nums: Vec<usize> = if let Some((a, b)) = spec.split_once("..") {
        let b = b.trim_start_matches('=');
        let (a, b) = (a.trim().parse::<usize>(), b.trim().parse::<usize>());
        match (a, b) {
            (Ok(a), Ok(b)) if a <= b => (a..=b).collect(),
            _ => return Err(format!("`{spec}` is not a range like 1..5")),
        }
    } else {
        spec.split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{s}` is not a batch number"))
            })
            .collect::<Result<_, _>>()?
    };
    if nums.is_empty() || nums.iter().any(|n| !(1..=5).contains(n)) {
        return Err(format!("`{spec}`: batches are numbered 1 to 5"));
    }
    Ok(nums)
}

/// One row of the simulation table.
#[derive(Debug, Serialize)]
struct SimRow {
    batch: String,
    drift_share: Option<f64>,
    retrained: bool,
    holdout_auc: Option<f64>,
    decision: Option<String>,
    deployed_version: Option<u64>,
    exit_code: u8,
    seconds: f64,
    run_dir: String,
}

#[derive(Debug, Serialize)]
struct Simulation {
    data: String,
    state_dir: String,
    rows: Vec<SimRow>,
    seconds: f64,
}

impl Render for Simulation {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "simulation on {} (state in {})",
            self.data, self.state_dir
        )?;
        writeln!(
            out,
            "| batch | drift share | retrained | holdout AUC | decision | deployed version | exit |"
        )?;
        writeln!(out, "|---|---:|---|---:|---|---:|---:|")?;
        for r in &self.rows {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.batch,
                r.drift_share.map_or("—".into(), |s| format!("{s:.3}")),
                if r.retrained { "yes" } else { "no" },
                r.holdout_auc.map_or("—".into(), |a| format!("{a:.4}")),
                r.decision.as_deref().unwrap_or("—"),
                r.deployed_version.map_or("—".into(), |v| v.to_string()),
                r.exit_code
            )?;
        }
        writeln!(out, "total {:.1} s", self.seconds)
    }
}

async fn simulate(args: &SimulateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let batches = parse_batches(&args.batches)
        .map_err(|e| fail(Exit::Usage, e, Some("pass --batches 1..5, 2..=4 or 1,3,5")))?;
    let id = run_id();
    let root = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("simulate-{id}")));
    let mut settings = Settings::default();
    if args.settings.state_dir.is_none() {
        settings.state_dir = Some(root.join("state"));
    }
    if args.settings.synth_rows.is_none() {
        settings.synth_rows = Some(50_000);
    }
    // A replay of the loop's decisions: the image is not built or run as a container unless
    // --runtime asks for it (each run would add an image build and a container start).
    if args.settings.container_runtime.is_none() {
        settings.container_runtime = Some(RuntimeChoice::None);
    }
    let cfg = args.settings.resolve(settings)?;
    let clock = std::time::Instant::now();
    let (table, name) = match &cfg.data {
        Some(p) => (
            crate::data::load(p, &crate::data::LoadOptions::default())?,
            p.display().to_string(),
        ),
        None => (
            crate::data::synth::generate(cfg.synth_rows, cfg.seed),
            format!("synthetic ({} rows, seed {})", cfg.synth_rows, cfg.seed),
        ),
    };
    let split = crate::data::split::split(
        &table,
        &crate::data::split::SplitOptions {
            seed: cfg.seed,
            batch_rows: cfg.batch_rows,
            source: Some(name.clone()),
        },
    )?;
    let mut initial = split.train.clone();
    initial.extend(&split.validation);
    initial.extend(&split.test);
    let initial = Arc::new(initial);
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let mut rows = Vec::new();
    let mut exit = Exit::Success;
    let plan: Vec<(String, Option<usize>)> = std::iter::once(("initial".to_owned(), None))
        .chain(batches.iter().map(|b| (format!("batch_{b}"), Some(*b))))
        .collect();
    for (label, batch) in plan {
        let batch_src = batch.map(|b| {
            let t = &split.batches[b - 1];
            Source::Table(
                Arc::new(t.table.clone()),
                format!("batch_{b} ({})", t.recipe.name),
            )
        });
        let report = run::run(
            cfg.clone(),
            Inputs {
                initial: Source::Table(Arc::clone(&initial), format!("initial 20% of {name}")),
                batch: batch_src,
            },
            RunOptions {
                run_id: format!("{id}-{label}"),
                run_dir: root.join(&label),
                force: false,
                plain: plain(),
                cancel: cancel.clone(),
                diagnose: super::errors::diagnose,
                mlflow: super::registry::mlflow_credentials(),
                push: push_env(),
            },
        )
        .await?;
        let retrained = report
            .steps
            .iter()
            .any(|s| s.name == Step::Train.name() && s.status == Status::Passed);
        rows.push(SimRow {
            batch: label,
            drift_share: report.drift.as_ref().map(|d| d.share),
            retrained,
            holdout_auc: report.holdout_auc,
            decision: report.decision.clone(),
            deployed_version: report.production_after,
            exit_code: report.exit_code,
            seconds: report.seconds,
            run_dir: report.run_dir.clone(),
        });
        match report.exit {
            // A refused gate is an outcome the simulation exists to show, not a failure of it.
            Exit::Success | Exit::GateRefused => {}
            other => {
                exit = other;
                break;
            }
        }
    }
    emit(
        ctx.output,
        &Simulation {
            data: name,
            state_dir: cfg.state_dir.display().to_string(),
            rows,
            seconds: clock.elapsed().as_secs_f64(),
        },
    )?;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_specs() {
        assert_eq!(parse_batches("1..5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_batches("2..=4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_batches("1, 3,5").unwrap(), vec![1, 3, 5]);
        assert!(parse_batches("0..2").is_err());
        assert!(parse_batches("5..1").is_err());
        assert!(parse_batches("x").is_err());
    }

    #[test]
    fn every_settings_flag_is_a_toml_key_and_unset_flags_defer_to_the_file() {
        let cmd = <SettingsArgs as clap::Args>::augment_args(clap::Command::new("t"));
        let keys = serde_json::to_value(Settings::default()).unwrap();
        let keys = keys.as_object().unwrap();
        let ids: Vec<_> = cmd
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| *id != "config")
            .collect();
        assert_eq!(ids.len(), 24, "{ids:?}");
        for id in &ids {
            assert!(keys.contains_key(*id), "--{id} has no TOML key");
        }

        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            s: SettingsArgs,
        }
        let t = <T as clap::Parser>::parse_from(["t", "--trials", "3", "--runtime", "none"]);
        let file = Settings {
            trials: Some(50),
            force_retrain: Some(true),
            ecr: Some(false),
            ..Settings::default()
        };
        let merged = t.s.layer().over(file);
        assert_eq!(merged.trials, Some(3));
        assert_eq!(merged.container_runtime, Some(RuntimeChoice::None));
        // An absent switch is no `false` over the file's `true`.
        assert_eq!(merged.force_retrain, Some(true));
        let t = <T as clap::Parser>::parse_from(["t", "--ecr"]);
        assert_eq!(t.s.layer().ecr, Some(true));
    }
}
