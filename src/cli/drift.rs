//! `health-predict drift`: compare a current batch with reference data column by column, write
//! the reports and print the decision.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{Context, env};
use crate::data::{LoadOptions, load};
use crate::drift::{self, Decision, DriftConfig, DriftError, Method, MissingPolicy};
use crate::exit::Exit;
use crate::output::{Render, emit};

/// Compare a current batch with reference data, column by column.
///
/// By default the 44 feature columns are tested (identifiers, the target and diag_1..3 left out)
/// with Evidently 0.4.22's automatic choice of test. Exit code 0 whether or not drift is found,
/// unless --fail-on-drift is given.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 done (drift or not); 1 drift decided retraining and \
    --fail-on-drift was given; 2 bad flags; 6 invalid input data."
)]
pub struct DriftArgs {
    /// Reference data (CSV or CSV.gz with the 50 UCI columns): what the production model saw.
    #[arg(long, env = env::DRIFT_REFERENCE)]
    pub reference: PathBuf,
    /// Current batch (same format).
    #[arg(long, env = env::DRIFT_CURRENT)]
    pub current: PathBuf,
    /// Directory for drift.json, drift.md and drift.html.
    #[arg(long, env = env::DRIFT_REPORT)]
    pub report: Option<PathBuf>,
    /// One test for every column instead of the automatic choice.
    #[arg(long, value_enum, env = env::DRIFT_METHOD)]
    pub method: Option<Method>,
    /// A test for one column, as COLUMN=METHOD (repeatable; wins over --method).
    #[arg(long = "column-method", value_name = "COLUMN=METHOD")]
    pub column_method: Vec<String>,
    /// One drift threshold for every column instead of each test's default
    /// (p-values 0.05, distances 0.1).
    #[arg(long, env = env::DRIFT_THRESHOLD)]
    pub threshold: Option<f64>,
    /// A threshold for one column, as COLUMN=VALUE (repeatable; wins over --threshold).
    #[arg(long = "column-threshold", value_name = "COLUMN=VALUE")]
    pub column_threshold: Vec<String>,
    /// Retrain when the share of drifted columns is strictly greater than this.
    #[arg(long, default_value_t = drift::DRIFT_SHARE_THRESHOLD, env = env::DRIFT_SHARE_THRESHOLD)]
    pub drift_share_threshold: f64,
    /// Evidently's dataset drift: share of drifted columns at or above this.
    #[arg(long, default_value_t = drift::DATASET_DRIFT_SHARE, env = env::DRIFT_DATASET_SHARE)]
    pub dataset_drift_share: f64,
    /// Test only these columns (repeatable or comma-separated), instead of the default 44.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Leave these columns out (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// How missing (`?`) categorical values count.
    #[arg(long, value_enum, default_value_t = MissingPolicy::Category, env = env::DRIFT_MISSING)]
    pub missing: MissingPolicy,
    /// Decide to retrain whatever the drift (recorded in the report).
    #[arg(long, env = env::FORCE_RETRAIN)]
    pub force_retrain: bool,
    /// Exit 1 when the decision is to retrain because of drift.
    #[arg(long, env = env::DRIFT_FAIL_ON_DRIFT)]
    pub fail_on_drift: bool,
}

/// The validated request.
#[derive(Debug)]
pub struct DriftRequest {
    pub reference: PathBuf,
    pub current: PathBuf,
    pub report: Option<PathBuf>,
    pub config: DriftConfig,
    pub fail_on_drift: bool,
}

fn pair(s: &str, flag: &str) -> Result<(usize, String), anyhow::Error> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        crate::exit::fail(
            crate::exit::Exit::Usage,
            format!("`{flag} {s}` is not COLUMN=VALUE"),
            Some("write it as COLUMN=VALUE, e.g. `--column-method age=psi`"),
        )
    })?;
    Ok((drift::column_index(k.trim())?, v.trim().to_owned()))
}

impl DriftArgs {
    /// Turns flags into a validated request.
    pub fn request(self) -> anyhow::Result<DriftRequest> {
        let mut config = DriftConfig {
            method: self.method,
            missing: self.missing,
            force_retrain: self.force_retrain,
            drift_share_threshold: drift::check_share(
                "--drift-share-threshold",
                self.drift_share_threshold,
            )?,
            dataset_drift_share: drift::check_share(
                "--dataset-drift-share",
                self.dataset_drift_share,
            )?,
            threshold: self
                .threshold
                .map(|t| drift::check_threshold("--threshold", t))
                .transpose()?,
            ..DriftConfig::default()
        };
        if !self.columns.is_empty() {
            config.columns = self
                .columns
                .iter()
                .map(|c| drift::column_index(c.trim()))
                .collect::<Result<_, _>>()?;
        }
        let excluded: Vec<usize> = self
            .exclude
            .iter()
            .map(|c| drift::column_index(c.trim()))
            .collect::<Result<_, _>>()?;
        config.columns.retain(|c| !excluded.contains(c));
        if config.columns.is_empty() {
            return Err(DriftError::NoColumns.into());
        }
        let mut methods = BTreeMap::new();
        for s in &self.column_method {
            let (c, m) = pair(s, "--column-method")?;
            let m: Method = m.parse().map_err(|e: String| {
                crate::exit::fail(Exit::Usage, e, Some("see `health-predict drift --help`"))
            })?;
            methods.insert(c, m);
        }
        config.column_methods = methods;
        let mut thresholds = BTreeMap::new();
        for s in &self.column_threshold {
            let (c, v) = pair(s, "--column-threshold")?;
            let v: f64 = v.parse().map_err(|_| DriftError::InvalidThreshold {
                what: format!("--column-threshold {s}"),
                value: f64::NAN,
                range: ">= 0",
            })?;
            thresholds.insert(c, drift::check_threshold("--column-threshold", v)?);
        }
        config.column_thresholds = thresholds;
        Ok(DriftRequest {
            reference: self.reference,
            current: self.current,
            report: self.report,
            config,
            fail_on_drift: self.fail_on_drift,
        })
    }
}

/// What `--output json` prints: the decision, where the reports went, and the drifted columns.
#[derive(Debug, Serialize)]
struct Outcome {
    #[serde(flatten)]
    decision: Decision,
    drifted: Vec<String>,
    reports: Vec<String>,
    /// Time spent comparing (files already loaded), in milliseconds.
    detect_ms: f64,
}

impl Render for Outcome {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.decision.reason)?;
        if !self.drifted.is_empty() {
            writeln!(out, "drifted: {}", self.drifted.join(", "))?;
        }
        writeln!(
            out,
            "dataset drift (share >= {}): {}",
            self.decision.dataset_drift_share,
            if self.decision.dataset_drift {
                "yes"
            } else {
                "no"
            }
        )?;
        for r in &self.reports {
            writeln!(out, "wrote {r}")?;
        }
        Ok(())
    }
}

pub async fn run(args: DriftArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let req = args.request()?;
    let (reference, current) = tokio::task::spawn_blocking({
        let (r, c) = (req.reference.clone(), req.current.clone());
        move || -> anyhow::Result<_> {
            let opts = LoadOptions::unlabeled();
            Ok((load(&r, &opts)?, load(&c, &opts)?))
        }
    })
    .await??;
    let started = std::time::Instant::now();
    let report = drift::detect(&reference, &current, &req.config)?;
    let detect_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(detect_ms, columns = report.columns.len(), "drift computed");
    let mut reports = Vec::new();
    if let Some(dir) = &req.report {
        for p in drift::write_reports(&report, dir)? {
            reports.push(p.display().to_string());
        }
    }
    let drifted = report
        .most_drifted_first()
        .into_iter()
        .filter(|c| c.drifted)
        .map(|c| c.column.clone())
        .collect();
    let outcome = Outcome {
        decision: report.decision.clone(),
        drifted,
        reports,
        detect_ms,
    };
    emit(ctx.output, &outcome)?;
    if crate::ci::in_github_actions() {
        let d = &outcome.decision;
        for (name, value) in [
            ("drift_share", d.drift_share.to_string()),
            ("drifted_columns", d.drifted_columns.to_string()),
            ("retrain", d.retrain.to_string()),
        ] {
            if let Err(e) = crate::ci::set_output(name, &value) {
                tracing::warn!(error = %e, "cannot write step output {name} to GITHUB_OUTPUT");
            }
        }
    }
    if req.fail_on_drift && outcome.decision.drift_over_threshold {
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}
