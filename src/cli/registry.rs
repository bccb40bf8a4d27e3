//! `registry` commands and `gate`: clap definitions turned into registry and gate requests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{Context, env};
use crate::exit::{Classify, Exit, fail};
use crate::gate::{self, GateConfig, GateReport};
use crate::output::{Render, emit};
use crate::registry::{
    self, AliasEvent, Lineage, ModelRef, Moved, Registered, Registry, VersionRecord,
};
use crate::secret::Secret;

/// Where the registry lives; every registry command and the gate take it.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryLocation {
    /// The registry: a directory, or `mlflow+http://HOST:PORT[?model=NAME&experiment=NAME]`.
    #[arg(long, env = env::REGISTRY, default_value = registry::DEFAULT_LOCAL, value_name = "URI")]
    pub registry: String,
}

impl RegistryLocation {
    pub fn open(&self) -> anyhow::Result<Box<dyn Registry>> {
        Ok(registry::open(&self.registry, &mlflow_credentials())?)
    }
}

/// MLflow's credentials from its own variables (read as MLflow's clients read them).
pub fn mlflow_credentials() -> registry::MlflowCredentials {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    registry::MlflowCredentials {
        token: var(env::MLFLOW_TRACKING_TOKEN).map(Secret::new),
        username: var(env::MLFLOW_TRACKING_USERNAME),
        password: var(env::MLFLOW_TRACKING_PASSWORD).map(Secret::new),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// List every version with its aliases.
    List {
        #[command(flatten)]
        at: RegistryLocation,
    },
    /// Show one model: a version number, an alias, or a model file path.
    Show {
        /// Version number (`3`), alias (`production`) or path (`./model.json`).
        #[arg(value_name = "REF")]
        reference: String,
        #[command(flatten)]
        at: RegistryLocation,
    },
    /// Register a model file as a new version (the existing version if already registered).
    Register {
        /// The model file written by `health-predict train`.
        model: PathBuf,
        /// The version this model was trained to replace.
        #[arg(long, value_name = "VERSION")]
        parent_version: Option<u64>,
        /// The pipeline run that produced the model.
        #[arg(long, env = env::RUN_ID)]
        run_id: Option<String>,
        /// The source commit the model was trained from (when the model file does not say).
        #[arg(long, env = env::GIT_COMMIT)]
        git_commit: Option<String>,
        /// Also point this alias at the version (e.g. `candidate`).
        #[arg(long, value_name = "ALIAS")]
        alias: Option<String>,
        #[command(flatten)]
        at: RegistryLocation,
    },
    /// Point an alias at a version (no-op if it already points there).
    Promote {
        /// Version number, alias, or a model file path already registered.
        #[arg(value_name = "REF")]
        reference: String,
        /// The alias to move, e.g. `production`.
        #[arg(long, value_name = "ALIAS")]
        alias: String,
        /// The pipeline run doing the move, recorded in the alias history.
        #[arg(long, env = env::RUN_ID)]
        run_id: Option<String>,
        #[command(flatten)]
        at: RegistryLocation,
    },
    /// Move an alias back to the version it pointed at before.
    Rollback {
        #[arg(long, value_name = "ALIAS")]
        alias: String,
        #[arg(long, env = env::RUN_ID)]
        run_id: Option<String>,
        #[command(flatten)]
        at: RegistryLocation,
    },
    /// Every move of an alias, oldest first.
    History {
        #[arg(long, value_name = "ALIAS")]
        alias: String,
        #[command(flatten)]
        at: RegistryLocation,
    },
}

pub async fn run(command: RegistryCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        RegistryCommand::List { at } => {
            let reg = at.open()?;
            let versions = reg.versions().await?;
            let aliases = reg.aliases().await?;
            emit(ctx.output, &Listing::new(&*reg, versions, aliases))?;
        }
        RegistryCommand::Show { reference, at } => {
            let reference: ModelRef = reference.parse()?;
            let reg = at.open()?;
            emit(ctx.output, &show(&*reg, &reference).await?)?;
        }
        RegistryCommand::Register {
            model,
            parent_version,
            run_id,
            git_commit,
            alias,
            at,
        } => {
            if let Some(a) = &alias {
                registry::validate_alias(a)?;
            }
            let reg = at.open()?;
            let lineage = Lineage {
                data_fingerprint: None,
                parent_version,
                run_id: run_id.clone(),
                git_commit,
            };
            let registered = reg.register_file(&model, lineage).await?;
            let moved = match &alias {
                Some(a) => Some(
                    reg.promote(registered.record.version, a, run_id.as_deref())
                        .await?,
                ),
                None => None,
            };
            emit(
                ctx.output,
                &RegisterOutput {
                    registry: reg.describe(),
                    version: registered.record.version,
                    registered,
                    alias: moved,
                },
            )?;
        }
        RegistryCommand::Promote {
            reference,
            alias,
            run_id,
            at,
        } => {
            registry::validate_alias(&alias)?;
            let reference: ModelRef = reference.parse()?;
            let reg = at.open()?;
            let version = version_for(&*reg, &reference).await?;
            let moved = reg.promote(version, &alias, run_id.as_deref()).await?;
            emit(
                ctx.output,
                &MoveOutput {
                    registry: reg.describe(),
                    moved,
                },
            )?;
        }
        RegistryCommand::Rollback { alias, run_id, at } => {
            let reg = at.open()?;
            let moved = reg.rollback(&alias, run_id.as_deref()).await?;
            emit(
                ctx.output,
                &MoveOutput {
                    registry: reg.describe(),
                    moved,
                },
            )?;
        }
        RegistryCommand::History { alias, at } => {
            let reg = at.open()?;
            let events = reg.history(&alias).await?;
            let current = reg.alias(&alias).await?;
            emit(
                ctx.output,
                &HistoryOutput {
                    registry: reg.describe(),
                    alias,
                    current,
                    events,
                },
            )?;
        }
    }
    Ok(Exit::Success)
}

/// The version a REF names; a path names the version holding the same bytes.
async fn version_for(reg: &dyn Registry, reference: &ModelRef) -> anyhow::Result<u64> {
    match reference {
        ModelRef::Path(p) => {
            let resolved = reg.resolve(reference).await?;
            reg.versions()
                .await?
                .into_iter()
                .find(|r| r.sha256 == resolved.sha256)
                .map(|r| r.version)
                .ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        format!("{} is not registered in {}", p.display(), reg.describe()),
                        Some("register it first with `health-predict registry register PATH`"),
                    )
                })
        }
        other => Ok(reg.version_of(other).await?),
    }
}

#[derive(Debug, Serialize)]
struct VersionView {
    #[serde(flatten)]
    record: VersionRecord,
    aliases: Vec<String>,
}

fn aliases_of(aliases: &BTreeMap<String, u64>, version: u64) -> Vec<String> {
    aliases
        .iter()
        .filter(|(_, v)| **v == version)
        .map(|(a, _)| a.clone())
        .collect()
}

#[derive(Debug, Serialize)]
struct Listing {
    registry: String,
    aliases: BTreeMap<String, u64>,
    versions: Vec<VersionView>,
}

impl Listing {
    fn new(
        reg: &dyn Registry,
        versions: Vec<VersionRecord>,
        aliases: BTreeMap<String, u64>,
    ) -> Listing {
        let versions = versions
            .into_iter()
            .map(|record| VersionView {
                aliases: aliases_of(&aliases, record.version),
                record,
            })
            .collect();
        Listing {
            registry: reg.describe(),
            aliases,
            versions,
        }
    }
}

fn short(s: Option<&str>, n: usize) -> String {
    s.map_or_else(|| "-".into(), |s| s.chars().take(n).collect())
}

impl Render for Listing {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.versions.is_empty() {
            return writeln!(out, "{}: no versions registered", self.registry);
        }
        writeln!(out, "{}", self.registry)?;
        writeln!(
            out,
            "{:>7}  {:<20}  {:<12}  {:>8}  {:<14}  ALIASES",
            "VERSION", "REGISTERED", "SHA256", "AUC", "MODEL"
        )?;
        for v in &self.versions {
            let r = &v.record;
            let auc = r
                .metrics
                .get("test.roc_auc")
                .or_else(|| r.metrics.get("roc_auc"))
                .map_or_else(|| "-".into(), |a| format!("{a:.4}"));
            writeln!(
                out,
                "{:>7}  {:<20}  {:<12}  {:>8}  {:<14}  {}",
                r.version,
                r.registered_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                &r.sha256[..r.sha256.len().min(12)],
                auc,
                short(r.model_id.as_deref(), 14),
                v.aliases.join(", ")
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct ShowOutput {
    registry: String,
    source: String,
    /// The registry version, `null` for a file given by path that is not registered.
    version: Option<u64>,
    sha256: String,
    size: u64,
    /// The image serving this version, by digest, when the pipeline recorded one.
    image: Option<String>,
    record: Option<VersionRecord>,
    aliases: Vec<String>,
    /// What the model file itself says (its embedded checksum verified too).
    model: ModelView,
}

#[derive(Debug, Serialize)]
struct ModelView {
    model_id: String,
    algorithm: String,
    target: crate::data::Target,
    created_at: String,
    format_version: u32,
    schema_hash: String,
    data_fingerprint: String,
    git_commit: Option<String>,
}

async fn show(reg: &dyn Registry, reference: &ModelRef) -> anyhow::Result<ShowOutput> {
    let resolved = reg.resolve(reference).await?;
    let file = crate::model::ModelFile::from_bytes(&resolved.bytes).map_err(|e| {
        registry::RegistryError::InvalidModel {
            what: resolved.source.clone(),
            source: e,
        }
    })?;
    let meta = file.meta();
    let model = ModelView {
        model_id: meta.model_id.clone(),
        algorithm: meta.algorithm.clone(),
        target: meta.target,
        created_at: meta.created_at.clone(),
        format_version: meta.format_version,
        schema_hash: meta.schema_hash.clone(),
        data_fingerprint: meta.data_fingerprint.clone(),
        git_commit: meta.git_commit.clone(),
    };
    let aliases = reg.aliases().await?;
    let mut record = resolved.record.clone();
    if record.is_none() {
        // A path: report the registered version holding the same bytes, if any.
        record = reg
            .versions()
            .await?
            .into_iter()
            .find(|r| r.sha256 == resolved.sha256);
    }
    let version = record.as_ref().map(|r| r.version);
    Ok(ShowOutput {
        registry: reg.describe(),
        source: resolved.source.clone(),
        version,
        sha256: resolved.sha256.clone(),
        size: resolved.bytes.len() as u64,
        aliases: version.map(|v| aliases_of(&aliases, v)).unwrap_or_default(),
        image: record.as_ref().and_then(|r| r.image.clone()),
        record,
        model,
    })
}

impl Render for ShowOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.version {
            Some(v) => writeln!(out, "version {v}  ({})", self.source)?,
            None => writeln!(out, "{} (not registered in {})", self.source, self.registry)?,
        }
        writeln!(out, "  sha256        {}", self.sha256)?;
        writeln!(out, "  size          {} bytes", self.size)?;
        if let Some(image) = &self.image {
            writeln!(out, "  image         {image}")?;
        }
        if !self.aliases.is_empty() {
            writeln!(out, "  aliases       {}", self.aliases.join(", "))?;
        }
        let m = &self.model;
        writeln!(
            out,
            "  model         {} ({}, target {}, created {})",
            m.model_id,
            m.algorithm,
            serde_json::to_value(m.target)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            m.created_at
        )?;
        if let Some(r) = &self.record {
            writeln!(out, "  registered    {}", r.registered_at)?;
            writeln!(out, "  model id      {}", short(r.model_id.as_deref(), 64))?;
            writeln!(
                out,
                "  schema hash   {}",
                short(r.schema_hash.as_deref(), 64)
            )?;
            let l = &r.lineage;
            writeln!(
                out,
                "  data          {}",
                short(l.data_fingerprint.as_deref(), 64)
            )?;
            writeln!(
                out,
                "  parent        {}",
                l.parent_version
                    .map_or_else(|| "-".into(), |p| p.to_string())
            )?;
            writeln!(out, "  run id        {}", short(l.run_id.as_deref(), 64))?;
            writeln!(
                out,
                "  git commit    {}",
                short(l.git_commit.as_deref(), 64)
            )?;
            for (k, v) in &r.metrics {
                writeln!(out, "  metric        {k} = {v:.6}")?;
            }
            for (k, v) in &r.params {
                writeln!(out, "  param         {k} = {v}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct RegisterOutput {
    registry: String,
    version: u64,
    #[serde(flatten)]
    registered: Registered,
    alias: Option<Moved>,
}

impl Render for RegisterOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.registered.created {
            writeln!(
                out,
                "registered version {} in {}",
                self.version, self.registry
            )?;
        } else {
            writeln!(
                out,
                "already registered as version {} in {} (same SHA-256)",
                self.version, self.registry
            )?;
        }
        if let Some(m) = &self.alias {
            render_move(out, m)?;
        }
        Ok(())
    }
}

fn render_move(out: &mut dyn Write, m: &Moved) -> std::io::Result<()> {
    let from = m
        .from
        .map_or_else(|| "unset".into(), |v| format!("version {v}"));
    if m.changed {
        writeln!(out, "{}: {from} -> version {}", m.alias, m.to)
    } else {
        writeln!(
            out,
            "{} already points at version {} (nothing changed)",
            m.alias, m.to
        )
    }
}

#[derive(Debug, Serialize)]
struct MoveOutput {
    registry: String,
    #[serde(flatten)]
    moved: Moved,
}

impl Render for MoveOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        render_move(out, &self.moved)
    }
}

#[derive(Debug, Serialize)]
struct HistoryOutput {
    registry: String,
    alias: String,
    current: Option<u64>,
    events: Vec<AliasEvent>,
}

impl Render for HistoryOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.events.is_empty() {
            return writeln!(out, "alias `{}` has never been set", self.alias);
        }
        for e in &self.events {
            let from = e.from.map_or_else(|| "-".into(), |v| v.to_string());
            let action = match e.action {
                registry::AliasAction::Promote => "promote",
                registry::AliasAction::Rollback => "rollback",
            };
            writeln!(
                out,
                "{}  {:<8}  {:>5} -> {:<5}  {}",
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                action,
                from,
                e.to,
                e.run_id.as_deref().unwrap_or("")
            )?;
        }
        match self.current {
            Some(v) => writeln!(out, "`{}` now points at version {v}", self.alias),
            None => writeln!(out, "`{}` is not set", self.alias),
        }
    }
}

/// `gate`: may the candidate replace production?
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// The model that wants to replace production: a version, an alias or a path.
    #[arg(long, value_name = "REF", default_value = "candidate", env = env::GATE_CANDIDATE)]
    pub candidate: String,
    /// The model in production: a version, an alias or a path. An alias that is not set means
    /// there is no production model (DEPLOY); anything else that cannot be read refuses.
    #[arg(long, value_name = "REF", default_value = "production", env = env::GATE_PRODUCTION)]
    pub production: String,
    /// Labelled holdout data (CSV or CSV.gz) both models are scored on.
    #[arg(long, value_name = "HOLDOUT", env = env::GATE_DATA)]
    pub data: PathBuf,
    /// The AUC gain over production at which the candidate deploys outright (DEPLOY).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true, env = env::GATE_MIN_DELTA)]
    pub min_delta: f64,
    /// A candidate this much below the min delta is still deployed (DEPLOY_REFRESH).
    #[arg(long, default_value_t = 0.02, env = env::GATE_REFRESH_TOLERANCE)]
    pub refresh_tolerance: f64,
    /// Fewest labelled holdout rows accepted.
    #[arg(long, default_value_t = 1000, env = env::GATE_MIN_ROWS)]
    pub min_rows: usize,
    /// Fewest positive and fewest negative holdout rows accepted.
    #[arg(long, default_value_t = 50, env = env::GATE_MIN_CLASS_ROWS)]
    pub min_class_rows: usize,
    /// Paired bootstrap resamples for the AUC delta's confidence interval (0: none).
    #[arg(long, default_value_t = 1000, env = env::GATE_BOOTSTRAP)]
    pub bootstrap: usize,
    /// Confidence level of the interval.
    #[arg(long, default_value_t = 0.95, env = env::GATE_CONFIDENCE)]
    pub confidence: f64,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 42, env = env::SEED)]
    pub seed: u64,
    /// The label to score (default: the candidate model's own target).
    #[arg(long, value_enum, env = env::TARGET)]
    pub target: Option<crate::data::Target>,
    /// Write gate.json and gate.md (a PR comment) into this directory.
    #[arg(long, value_name = "DIR", env = env::GATE_REPORT)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub at: RegistryLocation,
}

impl GateArgs {
    fn config(&self) -> anyhow::Result<GateConfig> {
        let config = GateConfig {
            min_delta: self.min_delta,
            refresh_tolerance: self.refresh_tolerance,
            min_rows: self.min_rows,
            min_class_rows: self.min_class_rows,
            bootstrap: self.bootstrap,
            confidence: self.confidence,
            seed: self.seed,
            target: self.target,
        };
        config.validate().map_err(|e| {
            fail(
                Exit::Usage,
                e,
                Some("see `health-predict gate --help` for the gate settings"),
            )
        })?;
        Ok(config)
    }
}

pub async fn gate(args: GateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let config = args.config()?;
    let reg = args.at.open()?;
    let report = gate::evaluate_refs(
        &*reg,
        &args.candidate,
        &args.production,
        &args.data,
        &config,
    )
    .await;
    if let Some(dir) = &args.report {
        gate::write_report(dir, &report).classify(
            Exit::Infra,
            format!("check that --report {} is writable", dir.display()),
        )?;
    }
    emit(ctx.output, &GateOutput(report.clone()))?;
    Ok(report.decision.exit())
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct GateOutput(GateReport);

impl Render for GateOutput {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(gate::render::human(&self.0).as_bytes())
    }
}
