//! One run of the loop: load → drift → dataset → train → evaluate → gate → register → package →
//! api-test → push → deploy → verify → promote → report. `package` builds the serving image
//! (when a container runtime can test it, or deploy = kubernetes needs it), `api-test` runs the
//! suite against that exact image as a container (in-process only as a recorded fallback), and
//! `push` publishes the same digest. Each step is recorded; the first that fails
//! stops everything after it, and the alias `production` moves only after the deployed service
//! was verified to serve the candidate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::config::{DeployTarget, PipelineConfig};
use super::ledger::{self, Ledger};
use super::local_deploy;
use super::steps::{Done, Halt, Runner, Status, StepRecord};
use crate::data::{self, LoadOptions, Table, Value, schema};
use crate::exit::Exit;
use crate::model::{ModelFile, TrainRequest};
use crate::registry::{self, Lineage, Registry};

/// Every step, in order.
pub const STEPS: [&str; 14] = [
    "load", "drift", "dataset", "train", "evaluate", "gate", "register", "package", "api-test",
    "push", "deploy", "verify", "promote", "report",
];

/// The alias the deployed model carries.
pub const PRODUCTION: &str = "production";
/// The alias a registered, not yet deployed candidate carries.
pub const CANDIDATE: &str = "candidate";

/// Where a table comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A CSV or CSV.gz file, validated on load.
    File(PathBuf),
    /// The embedded synthetic generator.
    Synthetic { rows: usize, seed: u64 },
    /// A table already in memory (simulation), with a name for reports.
    Table(Arc<Table>, String),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Synthetic { rows, seed } => format!("synthetic ({rows} rows, seed {seed})"),
            Source::Table(_, name) => name.clone(),
        }
    }

    fn load(&self) -> anyhow::Result<Arc<Table>> {
        Ok(match self {
            Source::File(p) => Arc::new(data::load(p, &LoadOptions::default())?),
            Source::Synthetic { rows, seed } => Arc::new(data::synth::generate(*rows, *seed)),
            Source::Table(t, _) => Arc::clone(t),
        })
    }
}

/// What one run works on.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub initial: Source,
    pub batch: Option<Source>,
}

/// How to run, beyond the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_id: String,
    pub run_dir: PathBuf,
    /// Run even if the ledger says these inputs were processed.
    pub force: bool,
    /// One log line per step (CI, non-terminals).
    pub plain: bool,
    pub cancel: CancellationToken,
    /// Gives an errored step its exit code and hint (`cli::errors::diagnose`).
    pub diagnose: crate::exit::Diagnoser,
    /// Credentials for an MLflow registry (`cli` reads them from the environment).
    pub mlflow: crate::registry::MlflowCredentials,
    /// Registry logins and AWS settings for the push (`cli` reads them from the environment).
    pub push: super::kubernetes::PushEnv,
}

/// `run.json`: the record of a run (the type lives with its readers in `crate::contracts`).
pub type RunReport = crate::contracts::RunReport<PipelineConfig>;
pub use crate::contracts::{
    ApiTestRecord, DriftSummary, ImageRecord, InputsSummary, ModelSummary, TestCounts,
};

/// State carried between steps.
struct State {
    registry: Box<dyn Registry>,
    production_version: Option<u64>,
    production: Option<Arc<ModelFile>>,
    /// The production model file's SHA-256, as the registry verified it on fetch.
    production_sha256: Option<String>,
    batch: Option<Arc<Table>>,
    candidate: Option<Arc<ModelFile>>,
    candidate_bytes: Option<Vec<u8>>,
    version: Option<u64>,
    image: Option<String>,
    built: Option<super::image::Built>,
    runtime: Option<crate::container::Runtime>,
    /// Why there is no runtime (shown when the suite falls back to in-process).
    runtime_note: String,
    report: RunReport,
}

/// Runs the loop once. Never returns success for a run that did not pass: the report's `exit`
/// says how it ended, and `run.json`/`summary.md` are written whatever happened.
pub async fn run(
    cfg: PipelineConfig,
    inputs: Inputs,
    opts: RunOptions,
) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create run directory {}", opts.run_dir.display()))?;
    std::fs::create_dir_all(cfg.state_dir.join("pipeline"))
        .with_context(|| format!("cannot create state directory {}", cfg.state_dir.display()))?;
    let _lock = lock_state(&cfg.state_dir)?;
    let registry = registry::open(&cfg.registry, &opts.mlflow)?;
    let clock = Instant::now();
    let mut state = State {
        registry,
        production_version: None,
        production: None,
        production_sha256: None,
        batch: None,
        candidate: None,
        candidate_bytes: None,
        version: None,
        image: cfg.image.clone(),
        built: None,
        runtime: None,
        runtime_note: String::new(),
        report: RunReport {
            run_id: opts.run_id.clone(),
            status: "errored".into(),
            exit_code: Exit::Failure.code(),
            decision: None,
            model: None,
            production_before: None,
            production_after: None,
            drift: None,
            tests: None,
            api_test: None,
            image_build: None,
            published: None,
            image: None,
            holdout_auc: None,
            run_dir: opts.run_dir.display().to_string(),
            started: jiff::Timestamp::now().to_string(),
            seconds: 0.0,
            inputs: InputsSummary::default(),
            config: cfg.clone(),
            steps: Vec::new(),
            exit: Exit::Failure,
        },
    };
    let mut runner = Runner::new(opts.cancel.clone(), opts.plain, opts.diagnose);
    let outcome = steps(&cfg, &inputs, &opts, &mut runner, &mut state).await;
    let exit = match &outcome {
        Ok(exit) => *exit,
        Err(halt) => {
            runner.skip_rest(&STEPS[..STEPS.len() - 1], halt);
            halt_exit(halt)
        }
    };
    state.report.exit = exit;
    state.report.exit_code = exit.code();
    state.report.status = match (&outcome, exit) {
        (Err(Halt::Interrupted { .. }), _) => "interrupted",
        (Err(Halt::Errored { .. }), _) => "errored",
        (_, Exit::Success) => "passed",
        _ => "failed",
    }
    .into();
    state.report.production_after = state.registry.alias(PRODUCTION).await.ok().flatten();
    state.report.image = state.image.clone();

    // The report step always runs: a run that stopped early still says why.
    let report_dir = opts.run_dir.clone();
    let report = &mut state.report;
    report.seconds = clock.elapsed().as_secs_f64();
    report.steps = runner.records().to_vec();
    let written = write_outputs(report, &report_dir);
    let (status, detail) = match &written {
        Ok(()) => (
            Status::Passed,
            format!("wrote {}", report_dir.join("run.json").display()),
        ),
        Err(e) => (Status::Errored, format!("{e:#}")),
    };
    report.steps.push(StepRecord {
        name: "report".into(),
        status,
        started: jiff::Timestamp::now().to_string(),
        seconds: 0.0,
        detail,
    });
    report.seconds = clock.elapsed().as_secs_f64();
    // Rewrite with the report step itself recorded.
    write_outputs(report, &report_dir)?;
    super::history::append(&cfg.state_dir, report, &report_dir)
        .context("cannot append the run to the run history (STATE_DIR/history)")?;
    if matches!(exit, Exit::Success | Exit::GateRefused)
        && let Some(key) = run_key(report)
    {
        {
            let mut l = Ledger::open(&cfg.state_dir)?;
            if l.get(&key).is_none() || opts.force {
                l.record(
                    &key,
                    ledger::Entry {
                        run_id: report.run_id.clone(),
                        finished: jiff::Timestamp::now().to_string(),
                        exit_code: report.exit_code,
                        decision: report.decision.clone(),
                        model_version: report.model.as_ref().and_then(|m| m.version),
                        run_dir: report.run_dir.clone(),
                    },
                )?;
            }
        }
    }
    written?;
    Ok(state.report)
}

fn halt_exit(halt: &Halt) -> Exit {
    match halt {
        Halt::Interrupted { .. } => Exit::Interrupted,
        Halt::Errored { exit, .. } => *exit,
        Halt::Failed { step } => match step.as_str() {
            "gate" => Exit::GateRefused,
            "api-test" => Exit::TestsFailed,
            "deploy" | "verify" => Exit::DeployFailed,
            _ => Exit::Failure,
        },
    }
}

/// The ledger key of a run's inputs and outcome-relevant settings.
fn run_key(r: &RunReport) -> Option<String> {
    let c = &r.config;
    Some(ledger::key(&[
        &r.inputs.initial_fingerprint,
        r.inputs.batch_fingerprint.as_deref().unwrap_or("no-batch"),
        &format!("{:?}", c.target),
        &c.seed.to_string(),
        &c.trials.to_string(),
        &c.holdout_fraction.to_string(),
        &c.drift_share_threshold.to_string(),
        &c.force_retrain.to_string(),
        &c.refresh_tolerance.to_string(),
        &format!("{:?}", c.deploy),
        &c.registry,
    ]))
    .filter(|_| !r.inputs.initial_fingerprint.is_empty())
}

/// Serialises pipeline runs on one state directory.
fn lock_state(state_dir: &Path) -> anyhow::Result<std::fs::File> {
    use fs4::fs_std::FileExt;
    let path = state_dir.join("pipeline").join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock_exclusive() {
        Ok(true) => Ok(f),
        Ok(false) | Err(_) => Err(crate::exit::fail(
            Exit::Usage,
            format!("another pipeline run holds {}", path.display()),
            Some("wait for it to finish, or give this run its own --state-dir"),
        )),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a worker thread panicked")
}

/// The steps proper. `Ok(exit)` when the run ended by design (passed, or drift said no retrain,
/// or the ledger said already processed); `Err(halt)` when a step stopped it.
async fn steps(
    cfg: &PipelineConfig,
    inputs: &Inputs,
    opts: &RunOptions,
    runner: &mut Runner,
    st: &mut State,
) -> Result<Exit, Halt> {
    let deadline = cfg.step_timeout;

    // load: the initial data, the batch, and what the registry holds now.
    let loaded = runner
        .step("load", deadline, async {
            let initial_src = inputs.initial.clone();
            let batch_src = inputs.batch.clone();
            let (initial, batch) = blocking(move || -> anyhow::Result<_> {
                let initial = initial_src.load()?;
                let batch = batch_src.as_ref().map(Source::load).transpose()?;
                Ok((initial, batch))
            })
            .await??;
            let production_version = st.registry.alias(PRODUCTION).await?;
            let production = match production_version {
                Some(v) => {
                    let (bytes, record) = st.registry.fetch(v).await?;
                    Some((Arc::new(ModelFile::from_bytes(&bytes)?), record.sha256))
                }
                None => None,
            };
            let detail = format!(
                "initial {} rows from {}; batch {}; production {}",
                initial.len(),
                inputs.initial.describe(),
                match (&batch, &inputs.batch) {
                    (Some(b), Some(s)) => format!("{} rows from {}", b.len(), s.describe()),
                    _ => "none (bootstrap run)".into(),
                },
                production_version.map_or("none".into(), |v| format!("version {v}")),
            );
            Ok(Done::Passed(
                (initial, batch, production_version, production),
                detail,
            ))
        })
        .await?;
    let Some((initial, batch, production_version, production)) = loaded else {
        unreachable!("load never skips")
    };
    st.report.inputs.initial = inputs.initial.describe();
    st.report.inputs.initial_rows = initial.len();
    st.report.inputs.initial_fingerprint = crate::model::fingerprint(&initial);
    if let (Some(b), Some(s)) = (&batch, &inputs.batch) {
        st.report.inputs.batch = Some(s.describe());
        st.report.inputs.batch_rows = Some(b.len());
        st.report.inputs.batch_fingerprint = Some(crate::model::fingerprint(b));
    }
    st.production_version = production_version;
    st.report.production_before = production_version;
    let (production, production_sha256) = production.unzip();
    st.production = production;
    st.production_sha256 = production_sha256;
    st.batch = batch.clone();

    // Inputs already processed with these settings: report the earlier outcome, change nothing.
    if !opts.force
        && let Some(key) = run_key(&st.report)
        && let Some(entry) = Ledger::open(&cfg.state_dir)
            .map_err(|e| runner.errored("load", &e))?
            .get(&key)
    {
        let reason = format!(
            "already processed by run {} ({}; decision {}): nothing to do (use --force to run again)",
            entry.run_id,
            entry.run_dir,
            entry.decision.as_deref().unwrap_or("none")
        );
        for s in &STEPS[1..STEPS.len() - 1] {
            runner.skip(s, reason.clone());
        }
        st.report.decision = Some("ALREADY_PROCESSED".into());
        st.report.model = entry.model_version.map(|v| ModelSummary {
            version: Some(v),
            model_id: String::new(),
        });
        return Ok(Exit::from_code(entry.exit_code));
    }

    // drift: is the batch distributed like the reference?
    let retrain = match &batch {
        None => {
            runner.skip(
                "drift",
                "no new batch: a bootstrap run trains on the initial data",
            );
            true
        }
        Some(b) => {
            let reference = Arc::clone(&initial);
            let current = Arc::clone(b);
            let dir = opts.run_dir.join("drift");
            let force = cfg.force_retrain;
            let threshold = cfg.drift_share_threshold;
            let has_production = st.production.is_some();
            let report = runner
                .step("drift", deadline, async move {
                    let report = blocking(move || -> anyhow::Result<_> {
                        let config = crate::drift::DriftConfig {
                            drift_share_threshold: threshold,
                            force_retrain: force,
                            ..crate::drift::DriftConfig::default()
                        };
                        let report = crate::drift::detect(&reference, &current, &config)?;
                        crate::drift::write_reports(&report, &dir)?;
                        Ok(report)
                    })
                    .await??;
                    let d = &report.decision;
                    let mut detail = format!(
                        "drift share {:.3} ({} of {} columns); {}",
                        d.drift_share, d.drifted_columns, d.columns, d.reason
                    );
                    if !d.retrain && !has_production {
                        detail.push_str("; no production model yet, so training anyway");
                    }
                    Ok(Done::Passed(report, detail))
                })
                .await?
                .expect("drift passes or halts");
            let d = &report.decision;
            st.report.drift = Some(DriftSummary {
                share: d.drift_share,
                drifted_columns: report
                    .columns
                    .iter()
                    .filter(|c| c.drifted)
                    .map(|c| c.column.clone())
                    .collect(),
                retrain: d.retrain,
                reason: d.reason.clone(),
            });
            d.retrain || st.production.is_none()
        }
    };
    if !retrain {
        let share = st.report.drift.as_ref().map_or(0.0, |d| d.share);
        let reason = format!(
            "drift share {share:.3} is not over {:.2}: production stays (use --force-retrain to train anyway)",
            cfg.drift_share_threshold
        );
        for s in &STEPS[2..STEPS.len() - 1] {
            runner.skip(s, reason.clone());
        }
        remember_batch(cfg, st).map_err(|e| runner.errored("drift", &e))?;
        st.report.decision = Some("NO_RETRAIN".into());
        return Ok(Exit::Success);
    }

    // dataset: cumulative training data, this batch's holdout kept out.
    let earlier = earlier_batches(cfg).map_err(|e| runner.errored("dataset", &e))?;
    let (training, holdout) = runner
        .step("dataset", deadline, {
            let initial = Arc::clone(&initial);
            let batch = batch.clone();
            let fraction = cfg.holdout_fraction;
            let seed = cfg.seed;
            async move {
                let (training, holdout, detail) = blocking(move || {
                    let (training, holdout, detail) =
                        cumulative(&initial, &earlier, batch.as_deref(), fraction, seed);
                    (Arc::new(training), Arc::new(holdout), detail)
                })
                .await?;
                Ok(Done::Passed((training, holdout), detail))
            }
        })
        .await?
        .expect("dataset passes or halts");
    st.report.inputs.training_rows = Some(training.len());
    st.report.inputs.holdout_rows = Some(holdout.len());

    // train: search, early stopping, the model file.
    let candidate = runner
        .step("train", deadline, {
            let training = Arc::clone(&training);
            let (target, seed, trials) = (cfg.target, cfg.seed, cfg.trials);
            async move {
                let outcome = blocking(move || {
                    let mut req = TrainRequest::new(&training);
                    req.target = target;
                    req.seed = seed;
                    req.trials = trials;
                    crate::model::train(&req, &|p| {
                        let crate::model::Progress::Trial { done, total, .. } = p;
                        tracing::debug!("training: {done}/{total} trial rungs");
                    })
                })
                .await??;
                let m = &outcome.model.meta().metrics.test;
                let detail = format!(
                    "{} ({} trials) in {:.1} s: test ROC AUC {:.4}, PR AUC {:.4}",
                    outcome.model.meta().algorithm,
                    outcome.trials.len(),
                    outcome.train_seconds,
                    m.roc_auc,
                    m.pr_auc
                );
                // Everything downstream uses the model as read back from its own bytes: the
                // checksum is set and verified, exactly as `serve` and the registry will see it.
                let bytes = outcome.model.to_bytes();
                let reloaded = ModelFile::from_bytes(&bytes)?;
                Ok(Done::Passed((Arc::new(reloaded), bytes), detail))
            }
        })
        .await?
        .expect("train passes or halts");
    let (candidate, bytes) = candidate;
    st.candidate_bytes = Some(bytes);
    st.candidate = Some(Arc::clone(&candidate));
    st.report.model = Some(ModelSummary {
        version: None,
        model_id: candidate.meta().model_id.clone(),
    });

    // evaluate: the candidate (and production) on the holdout.
    if let Some(auc) = runner
        .step("evaluate", deadline, {
            let candidate = Arc::clone(&candidate);
            let production = st.production.clone();
            let holdout = Arc::clone(&holdout);
            let dir = opts.run_dir.clone();
            async move {
                let (c, p) = blocking(move || -> anyhow::Result<_> {
                    let c = candidate.evaluate(&holdout)?;
                    let p = production.map(|p| p.evaluate(&holdout)).transpose()?;
                    Ok((c, p))
                })
                .await??;
                let doc = crate::contracts::EvaluationReport {
                    holdout_rows: c.metrics.rows,
                    candidate: (&c.metrics).into(),
                    production: p.as_ref().map(|p| (&p.metrics).into()),
                };
                crate::fsutil::write_atomic(
                    &dir.join("metrics.json"),
                    &serde_json::to_vec_pretty(&doc)?,
                )?;
                let detail = match &p {
                    Some(p) => format!(
                        "holdout ROC AUC candidate {:.4}, production {:.4}",
                        c.metrics.roc_auc, p.metrics.roc_auc
                    ),
                    None => format!("holdout ROC AUC candidate {:.4}", c.metrics.roc_auc),
                };
                Ok(Done::Passed(c.metrics.roc_auc, detail))
            }
        })
        .await?
    {
        st.report.holdout_auc = Some(auc);
    }

    // gate: may the candidate replace production?
    let gate_cfg = crate::gate::GateConfig {
        min_delta: cfg.gate_min_delta,
        refresh_tolerance: cfg.refresh_tolerance,
        min_rows: cfg.min_holdout_rows,
        seed: cfg.seed,
        ..crate::gate::GateConfig::default()
    };
    let decision = runner
        .step("gate", deadline, {
            let candidate = Arc::clone(&candidate);
            let production = st.production.clone();
            let production_version = st.production_version;
            let holdout = Arc::clone(&holdout);
            let dir = opts.run_dir.clone();
            let cand_sha = registry::sha256_hex(st.candidate_bytes.as_deref().unwrap_or_default());
            let prod_sha = st.production_sha256.clone();
            async move {
                let report = blocking(move || {
                    let prod_source = production_version
                        .map(|v| format!("alias `{PRODUCTION}` (version {v})"))
                        .unwrap_or_default();
                    let prod = production.as_deref().map(|p| {
                        Ok(crate::gate::GateModel {
                            source: &prod_source,
                            version: production_version,
                            sha256: prod_sha.as_deref().unwrap_or_default(),
                            model: p,
                        })
                    });
                    crate::gate::evaluate(
                        Ok(crate::gate::GateModel {
                            source: "candidate (this run)",
                            version: None,
                            sha256: &cand_sha,
                            model: &*candidate,
                        }),
                        prod,
                        Ok(crate::gate::Holdout {
                            source: "this run's holdout",
                            table: &holdout,
                        }),
                        &gate_cfg,
                    )
                })
                .await?;
                crate::fsutil::write_atomic(
                    &dir.join("gate.json"),
                    &serde_json::to_vec_pretty(&report)?,
                )?;
                crate::fsutil::write_atomic(
                    &dir.join("gate.md"),
                    crate::gate::render::markdown(&report).as_bytes(),
                )?;
                let detail = format!("{}: {}", report.decision.as_str(), report.reason);
                if report.decision.deploys() {
                    Ok(Done::Passed(report.decision.as_str().to_owned(), detail))
                } else {
                    Ok(Done::Failed(detail))
                }
            }
        })
        .await;
    let decision = match decision {
        Ok(d) => d.expect("gate passes or halts"),
        Err(halt) => {
            if let Ok(text) = std::fs::read(opts.run_dir.join("gate.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text)
            {
                st.report.decision = v["decision"].as_str().map(str::to_owned);
            }
            if matches!(halt, Halt::Failed { .. }) {
                remember_batch(cfg, st).map_err(|e| runner.errored("gate", &e))?;
            }
            return Err(halt);
        }
    };
    st.report.decision = Some(decision.clone());

    // register: a new version (or the existing one for identical bytes), alias `candidate`.
    let version = runner
        .step("register", deadline, async {
            let bytes = st.candidate_bytes.as_deref().unwrap_or_default();
            let lineage = Lineage {
                data_fingerprint: Some(candidate.meta().data_fingerprint.clone()),
                parent_version: st.production_version,
                run_id: Some(opts.run_id.clone()),
                git_commit: candidate.meta().git_commit.clone(),
            };
            let registered = st.registry.register_model(bytes, lineage).await?;
            let v = registered.record.version;
            st.registry
                .promote(v, CANDIDATE, Some(&opts.run_id))
                .await?;
            let detail = if registered.created {
                format!(
                    "registered version {v} in {}; alias `{CANDIDATE}` → {v}",
                    st.registry.describe()
                )
            } else {
                format!(
                    "these exact bytes are already version {v}: reused; alias `{CANDIDATE}` → {v}"
                )
            };
            Ok(Done::Passed(v, detail))
        })
        .await?
        .expect("register passes or halts");
    st.version = Some(version);
    if let Some(m) = &mut st.report.model {
        m.version = Some(version);
    }

    // package: the model file, and the serving image when a runtime can test it or
    // deploy = kubernetes needs it (an OCI archive in the run directory; nothing pushed yet).
    let model_path = opts.run_dir.join("model.hpm");
    runner
        .step("package", deadline, async {
            candidate.save(&model_path)?;
            let mut detail = format!("model file {}", model_path.display());
            if cfg.deploy == DeployTarget::Kubernetes && cfg.image.is_some() {
                st.runtime_note =
                    "deploy uses the given image, which does not hold this candidate".into();
            } else {
                st.runtime = crate::container::detect(cfg.container_runtime).await?;
                if st.runtime.is_none() {
                    st.runtime_note = if cfg.container_runtime
                        == crate::container::RuntimeChoice::None
                    {
                        "container_runtime = none".into()
                    } else {
                        "no container runtime: neither docker (with a daemon) nor podman is on PATH"
                            .into()
                    };
                }
            }
            let wants_image = cfg.image.is_none()
                && (cfg.deploy == DeployTarget::Kubernetes || st.runtime.is_some());
            if wants_image {
                let (model, run_dir, id) = (
                    model_path.clone(),
                    opts.run_dir.clone(),
                    candidate.meta().model_id.clone(),
                );
                let started = Instant::now();
                let built =
                    blocking(move || super::image::build(&model, version, &id, &run_dir)).await??;
                detail.push_str(&format!(
                    "; image {} ({:.1} MB compressed, {:.1} MB unpacked) in {}",
                    built.digest(),
                    built.compressed_bytes as f64 / 1e6,
                    built.unpacked_bytes as f64 / 1e6,
                    built.archive.display()
                ));
                st.report.image_build = Some(ImageRecord {
                    digest: built.digest().to_owned(),
                    tag: built.tag.clone(),
                    archive: built.archive.display().to_string(),
                    compressed_bytes: built.compressed_bytes,
                    unpacked_bytes: built.unpacked_bytes,
                    build_seconds: started.elapsed().as_secs_f64(),
                });
                st.built = Some(built);
            }
            Ok(Done::Passed((), detail))
        })
        .await?;

    // api-test: the contract suite against the built image running as a container; without a
    // runtime (or image), against the candidate served in-process — recorded as such.
    // The counts are kept whether the suite passed or not.
    let junit = opts.run_dir.join("junit.xml");
    let mut counts = None;
    let mut record = None;
    let tests = runner
        .step("api-test", deadline, async {
            let budget = std::time::Duration::from_secs_f64(cfg.latency_budget_ms / 1000.0);
            let (report, target) = match (&st.runtime, &st.built) {
                (Some(rt), Some(built)) => {
                    let source = super::image::ImageSource::Archive {
                        path: built.archive.clone(),
                        config_digest: built.image.config.digest.clone(),
                        manifest_digest: built.digest().to_owned(),
                    };
                    let t = super::image::test_image(
                        rt,
                        &source,
                        Some(&version.to_string()),
                        budget,
                        &junit,
                        &opts.run_dir.join("container.log"),
                    )
                    .await?;
                    let target = format!("container:{} {}", t.runtime.program(), t.digest);
                    record = Some(ApiTestRecord {
                        target: format!("container:{}", t.runtime.program()),
                        digest: Some(t.digest.clone()),
                        fallback: None,
                        cold_start_ms: t.cold_start_ms,
                        logs: Some(t.logs_path.clone()),
                    });
                    (t.report, target)
                }
                _ => {
                    tracing::warn!(
                        "API tests run in-process, not against the image: {}",
                        st.runtime_note
                    );
                    let report = local_deploy::api_test(
                        Arc::clone(&candidate),
                        &version.to_string(),
                        cfg.latency_budget_ms,
                        &junit,
                    )
                    .await?;
                    record = Some(ApiTestRecord {
                        target: "in-process".into(),
                        digest: None,
                        fallback: Some(st.runtime_note.clone()),
                        cold_start_ms: None,
                        logs: None,
                    });
                    let target = format!("in-process ({})", st.runtime_note);
                    (report, target)
                }
            };
            counts = Some(TestCounts {
                passed: report.passed,
                failed: report.failed,
                skipped: 0,
            });
            let detail = format!(
                "{} passed, {} failed against {} at {} (JUnit: {})",
                report.passed,
                report.failed,
                target,
                report.base_url,
                junit.display()
            );
            if report.exit() == Exit::Success {
                Ok(Done::Passed((), detail))
            } else {
                let failed: Vec<_> = report
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.name, c.message))
                    .collect();
                Ok(Done::Failed(format!("{detail}; {}", failed.join("; "))))
            }
        })
        .await;
    st.report.tests = counts;
    st.report.api_test = record;
    tests?;

    // push: publish the tested digest (registry, kind, or the state directory's archive).
    match (&st.built, cfg.deploy) {
        (Some(_), DeployTarget::None) => runner.skip(
            "push",
            "deploy = none: the tested image stays in the run directory",
        ),
        (Some(built), _) => {
            let published = runner
                .step("push", deadline, async {
                    let p = super::image::publish(cfg, built, &opts.run_dir, &opts.push).await?;
                    let detail = format!("{} → {}", p.digest, p.destination);
                    Ok(Done::Passed(p, detail))
                })
                .await?
                .expect("push passes or halts");
            // The final image reference, by the digest that was tested.
            st.image = Some(published.reference.clone());
            st.report.published = Some(published);
        }
        (None, _) => runner.skip(
            "push",
            if cfg.image.is_some() {
                "the given image is deployed as is"
            } else {
                "no image built (no container runtime, and deploy = local needs none)"
            },
        ),
    }

    // The image serving this version goes on its registry record, so a later deploy of the
    // version (or of an alias pointing at it) resolves to exactly this reference.
    if let Some(image) = st.image.clone() {
        st.registry
            .set_image(version, &image)
            .await
            .map_err(|e| runner.errored("push", &e.into()))?;
    }

    // deploy + verify: only a verified deployment may be promoted.
    match cfg.deploy {
        DeployTarget::None => {
            runner.skip("deploy", "deploy = none: nothing deployed");
            runner.skip("verify", "deploy = none: nothing to verify");
            runner.skip("promote", "deploy = none: production stays where it is");
            return Ok(Exit::Success);
        }
        DeployTarget::Local => {
            let slot = local_deploy::Slot::new(&cfg.state_dir);
            runner
                .step("deploy", deadline, async {
                    let d = slot.install(&model_path, version, &opts.run_id)?;
                    Ok(Done::Passed((), d))
                })
                .await?;
            let verified = runner
                .step("verify", deadline, async {
                    match slot.verify(version, &candidate.meta().checksum).await {
                        Ok(detail) => Ok(Done::Passed((), detail)),
                        Err(e) => {
                            let restored = slot.restore_previous()?;
                            Ok(Done::Failed(format!("{e:#}; rolled back: {restored}")))
                        }
                    }
                })
                .await;
            verified?;
        }
        DeployTarget::Kubernetes => {
            let image = st.image.clone().unwrap_or_default();
            runner
                .step(
                    "deploy",
                    deadline,
                    super::kubernetes::deploy(cfg, &image, version),
                )
                .await?;
            runner
                .step("verify", deadline, super::kubernetes::verify(cfg, version))
                .await?;
        }
    }

    // promote: production moves only now.
    runner
        .step("promote", deadline, async {
            let moved = st
                .registry
                .promote(version, PRODUCTION, Some(&opts.run_id))
                .await?;
            let detail = if moved.changed {
                format!(
                    "alias `{PRODUCTION}`: {} → {version}",
                    moved.from.map_or("unset".into(), |v| v.to_string())
                )
            } else {
                format!("alias `{PRODUCTION}` already at {version}")
            };
            Ok(Done::Passed((), detail))
        })
        .await?;
    remember_batch(cfg, st).map_err(|e| runner.errored("promote", &e))?;
    Ok(Exit::Success)
}

/// The directory where processed batches are kept for later cumulative training sets.
fn batches_dir(cfg: &PipelineConfig) -> PathBuf {
    cfg.state_dir.join("pipeline").join("batches")
}

/// Keeps this run's batch for later runs' training sets (once per content fingerprint).
fn remember_batch(cfg: &PipelineConfig, st: &State) -> anyhow::Result<()> {
    let (Some(batch), Some(fp)) = (&st.batch, &st.report.inputs.batch_fingerprint) else {
        return Ok(());
    };
    let dir = batches_dir(cfg);
    std::fs::create_dir_all(&dir)?;
    if std::fs::read_dir(&dir)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(&fp[..16]))
    {
        return Ok(());
    }
    let n = std::fs::read_dir(&dir)?.count();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    batch.write_csv(&mut gz)?;
    let bytes = gz.finish()?;
    crate::fsutil::write_atomic(
        &dir.join(format!("{:04}-{}.csv.gz", n + 1, &fp[..16])),
        &bytes,
    )?;
    Ok(())
}

/// Batches accepted by earlier runs, oldest first.
fn earlier_batches(cfg: &PipelineConfig) -> anyhow::Result<Vec<Table>> {
    let dir = batches_dir(cfg);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    paths.sort();
    paths
        .iter()
        .map(|p| Ok(data::load(p, &LoadOptions::default())?))
        .collect()
}

/// The training set (initial + earlier batches + this batch's training part, identical rows
/// once) and the holdout (this batch's held-out patients; without a batch, held-out patients
/// of the initial data).
pub fn cumulative(
    initial: &Table,
    earlier: &[Table],
    batch: Option<&Table>,
    holdout_fraction: f64,
    seed: u64,
) -> (Table, Table, String) {
    let (base, split_from): (Table, &Table) = match batch {
        Some(b) => (initial.clone(), b),
        None => (Table::new(), initial),
    };
    let parts = data::split::group_split(
        split_from,
        &[1.0 - holdout_fraction, holdout_fraction],
        seed,
    );
    let (train_idx, hold_idx) = (&parts[0], &parts[1]);
    let mut training = base;
    for e in earlier {
        training.extend(e);
    }
    training.extend(&split_from.select(train_idx));
    let before = training.len();
    let training = dedupe(&training);
    let holdout = split_from.select(hold_idx);
    let detail = format!(
        "training {} rows ({} initial{}, {} earlier batches, {} duplicates dropped); holdout {} rows ({:.0}% of {}'s patients)",
        training.len(),
        if batch.is_some() {
            initial.len()
        } else {
            train_idx.len()
        },
        if batch.is_some() {
            format!(" + {} from this batch", train_idx.len())
        } else {
            String::new()
        },
        earlier.len(),
        before - training.len(),
        holdout.len(),
        holdout_fraction * 100.0,
        if batch.is_some() {
            "the batch"
        } else {
            "the initial data"
        },
    );
    (training, holdout, detail)
}

/// Drops rows identical to an earlier row (a re-delivered encounter).
fn dedupe(t: &Table) -> Table {
    use std::hash::{Hash, Hasher};
    let mut seen = HashSet::with_capacity(t.len());
    let keep: Vec<usize> = (0..t.len())
        .filter(|&i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for c in 0..schema::WIDTH {
                match t.get(i, c) {
                    Value::Missing => 0u8.hash(&mut h),
                    Value::Int(v) => (1u8, v).hash(&mut h),
                    Value::Str(s) => (2u8, s).hash(&mut h),
                }
            }
            seen.insert(h.finish())
        })
        .collect();
    if keep.len() == t.len() {
        t.clone()
    } else {
        t.select(&keep)
    }
}

/// Writes `run.json` and `summary.md`, and the step outputs in GitHub Actions.
fn write_outputs(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    crate::fsutil::write_atomic(&dir.join("run.json"), &serde_json::to_vec_pretty(report)?)?;
    crate::fsutil::write_atomic(
        &dir.join("summary.md"),
        super::summary::markdown(report, dir)?.as_bytes(),
    )?;
    let outputs = [
        ("decision", report.decision.clone().unwrap_or_default()),
        (
            "model-version",
            report
                .model
                .as_ref()
                .and_then(|m| m.version)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
        ("image", report.image.clone().unwrap_or_default()),
        (
            "drift-share",
            report
                .drift
                .as_ref()
                .map(|d| format!("{:.4}", d.share))
                .unwrap_or_default(),
        ),
        (
            "tests-passed",
            report
                .tests
                .as_ref()
                .map(|t| t.passed.to_string())
                .unwrap_or_default(),
        ),
        (
            "tests-failed",
            report
                .tests
                .as_ref()
                .map(|t| t.failed.to_string())
                .unwrap_or_default(),
        ),
        ("run-dir", dir.display().to_string()),
        ("summary", dir.join("summary.md").display().to_string()),
        ("junit", dir.join("junit.xml").display().to_string()),
        ("exit-code", report.exit_code.to_string()),
    ];
    for (k, v) in outputs {
        crate::ci::set_output(k, &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_keeps_the_holdout_out_and_drops_duplicates() {
        let initial = data::synth::generate(2_000, 1);
        let batch = data::synth::generate(1_000, 2);
        let earlier = vec![initial.select(&(0..100).collect::<Vec<_>>())]; // all duplicates
        let (training, holdout, detail) = cumulative(&initial, &earlier, Some(&batch), 0.3, 7);
        assert!(
            holdout.len() > 200 && holdout.len() < 400,
            "{}",
            holdout.len()
        );
        assert_eq!(training.len(), 2_000 + (1_000 - holdout.len()), "{detail}");
        assert!(detail.contains("100 duplicates dropped"), "{detail}");
        // No holdout patient is in the training set.
        let train_patients: HashSet<_> = training.ints(schema::col::PATIENT_NBR).iter().collect();
        let overlap = holdout
            .ints(schema::col::PATIENT_NBR)
            .iter()
            .filter(|p| {
                train_patients.contains(p)
                    && batch.ints(schema::col::PATIENT_NBR).contains(p)
                    && !initial.ints(schema::col::PATIENT_NBR).contains(p)
            })
            .count();
        assert_eq!(overlap, 0);
    }

    #[test]
    fn bootstrap_holds_out_initial_patients() {
        let initial = data::synth::generate(2_000, 1);
        let (training, holdout, _) = cumulative(&initial, &[], None, 0.25, 7);
        assert_eq!(training.len() + holdout.len(), 2_000);
        let hold: HashSet<_> = holdout.ints(schema::col::PATIENT_NBR).iter().collect();
        assert!(
            training
                .ints(schema::col::PATIENT_NBR)
                .iter()
                .all(|p| !hold.contains(p))
        );
    }

    #[test]
    fn halts_map_to_documented_exit_codes() {
        let f = |s: &str| halt_exit(&Halt::Failed { step: s.into() });
        assert_eq!(f("gate"), Exit::GateRefused);
        assert_eq!(f("api-test"), Exit::TestsFailed);
        assert_eq!(f("verify"), Exit::DeployFailed);
        assert_eq!(
            halt_exit(&Halt::Interrupted {
                step: "train".into()
            }),
            Exit::Interrupted
        );
        assert_eq!(
            halt_exit(&Halt::Errored {
                step: "load".into(),
                exit: Exit::InvalidInput
            }),
            Exit::InvalidInput
        );
    }
}
