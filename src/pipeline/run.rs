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
pub use super::record::{
    ApiTestRecord, CANDIDATE, DriftSummary, ImageRecord, InputsSummary, ModelSummary, PRODUCTION,
    RunReport, TestCounts,
};
use super::steps::{Done, Halt, Runner, Status, Step, StepRecord};
use crate::data::{self, LoadOptions, Table, Value, schema};
use crate::exit::Exit;
use crate::model::{ModelFile, TrainRequest};
use crate::registry::{self, Lineage, Registry};

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

/// State carried between steps.
struct State {
    registry: Box<dyn Registry>,
    production_version: Option<u64>,
    production: Option<Arc<ModelFile>>,
    /// The production model file's SHA-256, as the registry verified it on fetch.
    production_sha256: Option<String>,
    batch: Option<Arc<Table>>,
    candidate_bytes: Option<Vec<u8>>,
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
    let clock = Instant::now();
    let mut state = State::new(registry::open(&cfg.registry, &opts.mlflow)?, &cfg, &opts);
    let mut runner = Runner::new(opts.cancel.clone(), opts.plain, opts.diagnose);
    let cx = Ctx {
        cfg: &cfg,
        inputs: &inputs,
        opts: &opts,
    };
    let outcome = steps(&cx, &mut runner, &mut state).await;
    let exit = match &outcome {
        Ok(exit) => *exit,
        Err(halt) => {
            runner.skip_rest(Step::Load.through(Step::Promote), halt);
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
    state.report.steps = runner.records().to_vec();
    report(&cx, &mut state.report, clock)?;
    Ok(state.report)
}

impl State {
    fn new(registry: Box<dyn Registry>, cfg: &PipelineConfig, opts: &RunOptions) -> State {
        State {
            registry,
            production_version: None,
            production: None,
            production_sha256: None,
            batch: None,
            candidate_bytes: None,
            image: cfg.image.clone(),
            built: None,
            runtime: None,
            runtime_note: String::new(),
            report: RunReport::started(
                opts.run_id.clone(),
                opts.run_dir.display().to_string(),
                cfg.clone(),
            ),
        }
    }
}

/// report: always runs, so a run that stopped early still says why. Writes `run.json` and
/// `summary.md` (with this step recorded) and the step outputs once, appends the run history,
/// and records a run that ended by design in the ledger.
fn report(cx: &Ctx<'_>, report: &mut RunReport, clock: Instant) -> anyhow::Result<()> {
    let (cfg, opts) = (cx.cfg, cx.opts);
    let report_dir = &opts.run_dir;
    report.steps.push(StepRecord {
        name: Step::Report.name().into(),
        status: Status::Passed,
        started: jiff::Timestamp::now().to_string(),
        seconds: 0.0,
        detail: format!("wrote {}", report_dir.join("run.json").display()),
    });
    report.seconds = clock.elapsed().as_secs_f64();
    // A failed write leaves no run.json to record it in: the error goes to the caller.
    write_outputs(report, report_dir)?;
    super::history::append(&cfg.state_dir, report, report_dir)
        .context("cannot append the run to the run history (STATE_DIR/history)")?;
    if matches!(report.exit, Exit::Success | Exit::GateRefused)
        && let Some(key) = run_key(report)
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
    Ok(())
}

fn halt_exit(halt: &Halt) -> Exit {
    match halt {
        Halt::Interrupted { .. } => Exit::Interrupted,
        Halt::Errored { exit, .. } => *exit,
        Halt::Failed { step } => match step {
            Step::Gate => Exit::GateRefused,
            Step::ApiTest => Exit::TestsFailed,
            Step::Deploy | Step::Verify => Exit::DeployFailed,
            Step::Load
            | Step::Drift
            | Step::Dataset
            | Step::Train
            | Step::Evaluate
            | Step::Register
            | Step::Package
            | Step::Push
            | Step::Promote
            | Step::Report => Exit::Failure,
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

/// What every step reads and none changes.
struct Ctx<'a> {
    cfg: &'a PipelineConfig,
    inputs: &'a Inputs,
    opts: &'a RunOptions,
}

impl Ctx<'_> {
    fn deadline(&self) -> std::time::Duration {
        self.cfg.step_timeout
    }

    /// The candidate's model file in the run directory (written by `package`).
    fn model_path(&self) -> PathBuf {
        self.opts.run_dir.join("model.hpm")
    }
}

/// The steps proper. `Ok(exit)` when the run ended by design (passed, or drift said no retrain,
/// or the ledger said already processed); `Err(halt)` when a step stopped it.
async fn steps(cx: &Ctx<'_>, runner: &mut Runner, st: &mut State) -> Result<Exit, Halt> {
    let initial = load(cx, runner, st).await?;
    if let Some(exit) = already_processed(cx, runner, st)? {
        return Ok(exit);
    }
    if !drift(cx, runner, st, &initial).await? {
        return no_retrain(cx, runner, st);
    }
    let (training, holdout) = dataset(cx, runner, st, initial).await?;
    let candidate = train(cx, runner, st, training).await?;
    evaluate(cx, runner, st, &candidate, &holdout).await?;
    gate(cx, runner, st, &candidate, &holdout).await?;
    let version = register(cx, runner, st, &candidate).await?;
    package(cx, runner, st, &candidate, version).await?;
    api_test(cx, runner, st, &candidate, version).await?;
    push(cx, runner, st, version).await?;
    let Some(target) = Deployment::of(cx.cfg, st) else {
        runner.skip(Step::Deploy, "deploy = none: nothing deployed");
        runner.skip(Step::Verify, "deploy = none: nothing to verify");
        runner.skip(Step::Promote, "deploy = none: production stays where it is");
        return Ok(Exit::Success);
    };
    deploy(cx, runner, &target, version).await?;
    verify(cx, runner, &target, &candidate, version).await?;
    promote(cx, runner, st, version).await?;
    remember_batch(cx.cfg, st).map_err(|e| runner.errored(Step::Promote, &e))?;
    Ok(Exit::Success)
}

/// load: the initial data, the batch, and what the registry holds now.
async fn load(cx: &Ctx<'_>, runner: &mut Runner, st: &mut State) -> Result<Arc<Table>, Halt> {
    let inputs = cx.inputs;
    let (initial, batch, production_version, production) = runner
        .step(Step::Load, cx.deadline(), async {
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
    st.batch = batch;
    Ok(initial)
}

/// Inputs already processed with these settings: report the earlier outcome, change nothing.
/// `Some(exit)`: the run ends here.
fn already_processed(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
) -> Result<Option<Exit>, Halt> {
    if cx.opts.force {
        return Ok(None);
    }
    let Some(key) = run_key(&st.report) else {
        return Ok(None);
    };
    let ledger = Ledger::open(&cx.cfg.state_dir).map_err(|e| runner.errored(Step::Load, &e))?;
    let Some(entry) = ledger.get(&key) else {
        return Ok(None);
    };
    let reason = format!(
        "already processed by run {} ({}; decision {}): nothing to do (use --force to run again)",
        entry.run_id,
        entry.run_dir,
        entry.decision.as_deref().unwrap_or("none")
    );
    runner.skip_all(Step::Drift.through(Step::Promote), &reason);
    st.report.decision = Some("ALREADY_PROCESSED".into());
    st.report.model = entry.model_version.map(|v| ModelSummary {
        version: Some(v),
        model_id: String::new(),
    });
    Ok(Some(Exit::from_code(entry.exit_code)))
}

/// drift: is the batch distributed like the reference? `Ok(true)`: train a candidate.
async fn drift(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    initial: &Arc<Table>,
) -> Result<bool, Halt> {
    let Some(batch) = &st.batch else {
        runner.skip(
            Step::Drift,
            "no new batch: a bootstrap run trains on the initial data",
        );
        return Ok(true);
    };
    let reference = Arc::clone(initial);
    let current = Arc::clone(batch);
    let dir = cx.opts.run_dir.join("drift");
    let force = cx.cfg.force_retrain;
    let threshold = cx.cfg.drift_share_threshold;
    let has_production = st.production.is_some();
    let report = runner
        .step(Step::Drift, cx.deadline(), async move {
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
        .await?;
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
    Ok(d.retrain || st.production.is_none())
}

/// The run ends after drift said production stays: the batch is kept for later training sets.
fn no_retrain(cx: &Ctx<'_>, runner: &mut Runner, st: &mut State) -> Result<Exit, Halt> {
    let share = st.report.drift.as_ref().map_or(0.0, |d| d.share);
    let reason = format!(
        "drift share {share:.3} is not over {:.2}: production stays (use --force-retrain to train anyway)",
        cx.cfg.drift_share_threshold
    );
    runner.skip_all(Step::Dataset.through(Step::Promote), &reason);
    remember_batch(cx.cfg, st).map_err(|e| runner.errored(Step::Drift, &e))?;
    st.report.decision = Some("NO_RETRAIN".into());
    Ok(Exit::Success)
}

/// dataset: cumulative training data, this batch's holdout kept out.
async fn dataset(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    initial: Arc<Table>,
) -> Result<(Arc<Table>, Arc<Table>), Halt> {
    let earlier = earlier_batches(cx.cfg).map_err(|e| runner.errored(Step::Dataset, &e))?;
    let batch = st.batch.clone();
    let fraction = cx.cfg.holdout_fraction;
    let seed = cx.cfg.seed;
    let (training, holdout) = runner
        .step(Step::Dataset, cx.deadline(), async move {
            let (training, holdout, detail) = blocking(move || {
                let (training, holdout, detail) =
                    cumulative(&initial, &earlier, batch.as_deref(), fraction, seed);
                (Arc::new(training), Arc::new(holdout), detail)
            })
            .await?;
            Ok(Done::Passed((training, holdout), detail))
        })
        .await?;
    st.report.inputs.training_rows = Some(training.len());
    st.report.inputs.holdout_rows = Some(holdout.len());
    Ok((training, holdout))
}

/// train: search, early stopping, the model file.
async fn train(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    training: Arc<Table>,
) -> Result<Arc<ModelFile>, Halt> {
    let (target, seed, trials) = (cx.cfg.target, cx.cfg.seed, cx.cfg.trials);
    let (candidate, bytes) = runner
        .step(Step::Train, cx.deadline(), async move {
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
        })
        .await?;
    st.candidate_bytes = Some(bytes);
    st.report.model = Some(ModelSummary {
        version: None,
        model_id: candidate.meta().model_id.clone(),
    });
    Ok(candidate)
}

/// evaluate: the candidate (and production) on the holdout.
async fn evaluate(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    candidate: &Arc<ModelFile>,
    holdout: &Arc<Table>,
) -> Result<(), Halt> {
    let candidate = Arc::clone(candidate);
    let production = st.production.clone();
    let holdout = Arc::clone(holdout);
    let dir = cx.opts.run_dir.clone();
    let auc = runner
        .step(Step::Evaluate, cx.deadline(), async move {
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
        })
        .await?;
    st.report.holdout_auc = Some(auc);
    Ok(())
}

/// gate: may the candidate replace production? A refusal keeps the batch for later training
/// sets and records the decision the gate wrote.
async fn gate(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    candidate: &Arc<ModelFile>,
    holdout: &Arc<Table>,
) -> Result<(), Halt> {
    let cfg = cx.cfg;
    let gate_cfg = crate::gate::GateConfig {
        min_delta: cfg.gate_min_delta,
        refresh_tolerance: cfg.refresh_tolerance,
        min_rows: cfg.min_holdout_rows,
        seed: cfg.seed,
        ..crate::gate::GateConfig::default()
    };
    let candidate = Arc::clone(candidate);
    let production = st.production.clone();
    let production_version = st.production_version;
    let holdout = Arc::clone(holdout);
    let dir = cx.opts.run_dir.clone();
    let cand_sha = registry::sha256_hex(st.candidate_bytes.as_deref().unwrap_or_default());
    let prod_sha = st.production_sha256.clone();
    let decision = runner
        .step(Step::Gate, cx.deadline(), async move {
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
        })
        .await;
    match decision {
        Ok(decision) => {
            st.report.decision = Some(decision);
            Ok(())
        }
        Err(halt) => {
            if let Ok(text) = std::fs::read(cx.opts.run_dir.join("gate.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text)
            {
                st.report.decision = v["decision"].as_str().map(str::to_owned);
            }
            if matches!(halt, Halt::Failed { .. }) {
                remember_batch(cfg, st).map_err(|e| runner.errored(Step::Gate, &e))?;
            }
            Err(halt)
        }
    }
}

/// register: a new version (or the existing one for identical bytes), alias `candidate`.
async fn register(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    candidate: &ModelFile,
) -> Result<u64, Halt> {
    let run_id = &cx.opts.run_id;
    let version = runner
        .step(Step::Register, cx.deadline(), async {
            let bytes = st.candidate_bytes.as_deref().unwrap_or_default();
            let lineage = Lineage {
                data_fingerprint: Some(candidate.meta().data_fingerprint.clone()),
                parent_version: st.production_version,
                run_id: Some(run_id.clone()),
                git_commit: candidate.meta().git_commit.clone(),
            };
            let registered = st.registry.register_model(bytes, lineage).await?;
            let v = registered.record.version;
            st.registry.promote(v, CANDIDATE, Some(run_id)).await?;
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
        .await?;
    if let Some(m) = &mut st.report.model {
        m.version = Some(version);
    }
    Ok(version)
}

/// package: the model file, and the serving image when a runtime can test it or
/// deploy = kubernetes needs it (an OCI archive in the run directory; nothing pushed yet).
async fn package(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    candidate: &ModelFile,
    version: u64,
) -> Result<(), Halt> {
    let (cfg, opts) = (cx.cfg, cx.opts);
    let model_path = cx.model_path();
    runner
        .step(Step::Package, cx.deadline(), async {
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
        .await
}

/// api-test: the contract suite against the built image running as a container; without a
/// runtime (or image), against the candidate served in-process — recorded as such.
/// The counts are kept whether the suite passed or not.
async fn api_test(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    candidate: &Arc<ModelFile>,
    version: u64,
) -> Result<(), Halt> {
    let (cfg, opts) = (cx.cfg, cx.opts);
    let junit = opts.run_dir.join("junit.xml");
    let mut counts = None;
    let mut record = None;
    let tests = runner
        .step(Step::ApiTest, cx.deadline(), async {
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
                        Arc::clone(candidate),
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
    tests
}

/// push: publish the tested digest (registry, kind, or the state directory's archive), and
/// put the image serving this version on its registry record, so a later deploy of the
/// version (or of an alias pointing at it) resolves to exactly this reference.
async fn push(cx: &Ctx<'_>, runner: &mut Runner, st: &mut State, version: u64) -> Result<(), Halt> {
    let (cfg, opts) = (cx.cfg, cx.opts);
    match (&st.built, cfg.deploy) {
        (Some(_), DeployTarget::None) => runner.skip(
            Step::Push,
            "deploy = none: the tested image stays in the run directory",
        ),
        (Some(built), _) => {
            let published = runner
                .step(Step::Push, cx.deadline(), async {
                    let p = super::image::publish(cfg, built, &opts.run_dir, &opts.push).await?;
                    let detail = format!("{} → {}", p.digest, p.destination);
                    Ok(Done::Passed(p, detail))
                })
                .await?;
            // The final image reference, by the digest that was tested.
            st.image = Some(published.reference.clone());
            st.report.published = Some(published);
        }
        (None, _) => runner.skip(
            Step::Push,
            if cfg.image.is_some() {
                "the given image is deployed as is"
            } else {
                "no image built (no container runtime, and deploy = local needs none)"
            },
        ),
    }
    if let Some(image) = &st.image {
        st.registry
            .set_image(version, image)
            .await
            .map_err(|e| runner.errored(Step::Push, &e.into()))?;
    }
    Ok(())
}

/// Where a verified candidate goes (`deploy = none` has none).
enum Deployment {
    /// The state directory's serving slot.
    Local(local_deploy::Slot),
    /// The cluster, running this image reference.
    Kubernetes { image: String },
}

impl Deployment {
    fn of(cfg: &PipelineConfig, st: &State) -> Option<Deployment> {
        match cfg.deploy {
            DeployTarget::None => None,
            DeployTarget::Local => Some(Deployment::Local(local_deploy::Slot::new(&cfg.state_dir))),
            DeployTarget::Kubernetes => Some(Deployment::Kubernetes {
                image: st.image.clone().unwrap_or_default(),
            }),
        }
    }
}

/// deploy: install the candidate in the local serving slot, or apply it to the cluster.
async fn deploy(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    target: &Deployment,
    version: u64,
) -> Result<(), Halt> {
    match target {
        Deployment::Local(slot) => {
            let model_path = cx.model_path();
            let run_id = &cx.opts.run_id;
            runner
                .step(Step::Deploy, cx.deadline(), async {
                    let d = slot.install(&model_path, version, run_id)?;
                    Ok(Done::Passed((), d))
                })
                .await
        }
        Deployment::Kubernetes { image } => {
            runner
                .step(
                    Step::Deploy,
                    cx.deadline(),
                    super::kubernetes::deploy(cx.cfg, image, version),
                )
                .await
        }
    }
}

/// verify: only a verified deployment may be promoted; a failed one is rolled back.
async fn verify(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    target: &Deployment,
    candidate: &ModelFile,
    version: u64,
) -> Result<(), Halt> {
    match target {
        Deployment::Local(slot) => {
            runner
                .step(Step::Verify, cx.deadline(), async {
                    match slot.verify(version, &candidate.meta().checksum).await {
                        Ok(detail) => Ok(Done::Passed((), detail)),
                        Err(e) => {
                            let restored = slot.restore_previous()?;
                            Ok(Done::Failed(format!("{e:#}; rolled back: {restored}")))
                        }
                    }
                })
                .await
        }
        Deployment::Kubernetes { .. } => {
            runner
                .step(
                    Step::Verify,
                    cx.deadline(),
                    super::kubernetes::verify(cx.cfg, version),
                )
                .await
        }
    }
}

/// promote: production moves only now.
async fn promote(
    cx: &Ctx<'_>,
    runner: &mut Runner,
    st: &mut State,
    version: u64,
) -> Result<(), Halt> {
    let run_id = &cx.opts.run_id;
    runner
        .step(Step::Promote, cx.deadline(), async {
            let moved = st
                .registry
                .promote(version, PRODUCTION, Some(run_id))
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
        .await
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
        let f = |step: Step| halt_exit(&Halt::Failed { step });
        assert_eq!(f(Step::Gate), Exit::GateRefused);
        assert_eq!(f(Step::ApiTest), Exit::TestsFailed);
        assert_eq!(f(Step::Deploy), Exit::DeployFailed);
        assert_eq!(f(Step::Verify), Exit::DeployFailed);
        assert_eq!(f(Step::Train), Exit::Failure);
        assert_eq!(
            halt_exit(&Halt::Interrupted { step: Step::Train }),
            Exit::Interrupted
        );
        assert_eq!(
            halt_exit(&Halt::Errored {
                step: Step::Load,
                exit: Exit::InvalidInput
            }),
            Exit::InvalidInput
        );
    }
}
