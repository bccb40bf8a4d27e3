//! The documents one part of the program writes and another reads back: `run.json` (a run's
//! record and its steps) and the run history kept in the state directory. One type per document,
//! used by the writer (the pipeline) and every reader (`report publish`, `report html`), so a
//! field renamed on one side cannot be silently missed on the other.
//!
//! A leaf: it imports only other leaves' report types (`gate`, `drift`) and must not import the
//! pipeline, the CLI or `github`.

use serde::{Deserialize, Serialize};

use crate::exit::Exit;

/// `run.json`: the record of a run. `C` is the pipeline's configuration type for the writer;
/// readers keep it as JSON (they never act on another run's settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport<C = serde_json::Value> {
    pub run_id: String,
    /// `passed`, `failed` (a check said no), `errored` or `interrupted`.
    pub status: String,
    pub exit_code: u8,
    /// The gate's decision, `NO_RETRAIN` when drift did not call for training, or
    /// `ALREADY_PROCESSED`; `None` when the run stopped before deciding.
    pub decision: Option<String>,
    pub model: Option<ModelSummary>,
    pub production_before: Option<u64>,
    pub production_after: Option<u64>,
    pub drift: Option<DriftSummary>,
    pub tests: Option<TestCounts>,
    /// What the API suite ran against.
    #[serde(default)]
    pub api_test: Option<ApiTestRecord>,
    /// The serving image this run built.
    #[serde(default)]
    pub image_build: Option<ImageRecord>,
    /// Where the tested image went (its digest is the tested one).
    #[serde(default)]
    pub published: Option<Published>,
    /// The image reference deployed (by digest when this run built it).
    pub image: Option<String>,
    pub holdout_auc: Option<f64>,
    pub run_dir: String,
    pub started: String,
    pub seconds: f64,
    pub inputs: InputsSummary,
    pub config: C,
    pub steps: Vec<StepRecord>,
    /// Not in the file: readers get it from `exit_code` ([`RunReport::parse`]).
    #[serde(skip, default = "unknown_exit")]
    pub exit: Exit,
}

fn unknown_exit() -> Exit {
    Exit::Failure
}

impl<C> RunReport<C> {
    /// The record of a run that has just started: nothing decided, nothing run, `errored` until
    /// the run says how it ended.
    pub fn started(run_id: String, run_dir: String, config: C) -> RunReport<C> {
        RunReport {
            run_id,
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
            run_dir,
            started: jiff::Timestamp::now().to_string(),
            seconds: 0.0,
            inputs: InputsSummary::default(),
            config,
            steps: Vec::new(),
            exit: Exit::Failure,
        }
    }
}

impl RunReport<serde_json::Value> {
    /// Parses `run.json` text; `exit` is restored from `exit_code`.
    pub fn parse(text: &str) -> Result<RunReport, serde_json::Error> {
        let mut r: RunReport = serde_json::from_str(text)?;
        r.exit = Exit::from_code(r.exit_code);
        Ok(r)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub version: Option<u64>,
    pub model_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftSummary {
    pub share: f64,
    pub drifted_columns: Vec<String>,
    pub retrain: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestCounts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// What the API tests ran against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiTestRecord {
    /// `container:<runtime>` or `in-process`.
    pub target: String,
    /// The manifest digest of the image that ran (container tests).
    pub digest: Option<String>,
    /// Why the suite ran in-process, when it did.
    pub fallback: Option<String>,
    /// Container start to the first 200 on `/ready`.
    pub cold_start_ms: Option<f64>,
    /// The container's output.
    pub logs: Option<String>,
}

/// The serving image a run built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub digest: String,
    pub tag: String,
    pub archive: String,
    pub compressed_bytes: u64,
    pub unpacked_bytes: u64,
    pub build_seconds: f64,
}

/// Where the tested image went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// `registry:<host/repo:tag>`, `kind:<cluster>` or `archive:<path>`.
    pub destination: String,
    /// The reference by digest deploy uses.
    pub reference: String,
    pub digest: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputsSummary {
    pub initial: String,
    pub initial_rows: usize,
    pub initial_fingerprint: String,
    pub batch: Option<String>,
    pub batch_rows: Option<usize>,
    pub batch_fingerprint: Option<String>,
    pub training_rows: Option<usize>,
    pub holdout_rows: Option<usize>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It ran and did what it checks.
    Passed,
    /// It ran and what it checks did not hold (a refused gate, failing tests, a failed rollout).
    Failed,
    /// It did not run, for the reason in `detail`.
    Skipped,
    /// It could not do its work: an error, a missed deadline or an interruption.
    Errored,
}

/// One step's record in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: Status,
    /// RFC 3339 start time (the planned time for skipped steps: when the skip was decided).
    pub started: String,
    pub seconds: f64,
    pub detail: String,
}

/// The version of [`HistoryRecord`]'s layout; readers refuse newer ones.
pub const HISTORY_SCHEMA: u32 = 1;

/// One run in the history (`STATE_DIR/history/*.json`): the run record and the digest of its
/// drift, gate and tests that the run history site and trend charts need, kept small because
/// the state directory travels between CI runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub schema: u32,
    pub run: RunReport,
    pub drift: Option<DriftDigest>,
    pub gate: Option<GateDigest>,
    /// Every API test case; empty when the suite did not run.
    pub tests: Vec<TestDigest>,
}

/// Per-column drift scores of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftDigest {
    pub share: f64,
    pub share_threshold: f64,
    pub retrain: bool,
    pub reason: String,
    pub columns: Vec<ColumnDigest>,
}

/// One column's drift test: the score against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDigest {
    pub column: String,
    pub test: String,
    /// `p_value` (drift when below the threshold) or `distance` (drift when at or above).
    pub score_kind: String,
    pub score: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
}

impl DriftDigest {
    pub fn of(r: &crate::drift::DriftReport) -> DriftDigest {
        DriftDigest {
            share: r.decision.drift_share,
            share_threshold: r.decision.drift_share_threshold,
            retrain: r.decision.retrain,
            reason: r.decision.reason.clone(),
            columns: r
                .most_drifted_first()
                .into_iter()
                .map(|c| ColumnDigest {
                    column: c.column.clone(),
                    test: c.test_label.to_owned(),
                    score_kind: c.score_kind.to_owned(),
                    score: c.score.is_finite().then_some(c.score),
                    threshold: c.threshold,
                    drifted: c.drifted,
                })
                .collect(),
        }
    }
}

/// The gate's decision and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDigest {
    pub decision: String,
    pub reason: String,
    pub candidate_auc: Option<f64>,
    pub production_auc: Option<f64>,
    pub production_version: Option<u64>,
    /// Candidate AUC minus production AUC.
    pub delta: Option<f64>,
    /// The paired bootstrap interval of `delta`: low, high, confidence.
    pub interval: Option<(f64, f64, f64)>,
    pub scored_rows: Option<usize>,
    pub min_delta: f64,
    pub refresh_tolerance: f64,
}

impl GateDigest {
    pub fn of(r: &crate::gate::GateReport) -> GateDigest {
        GateDigest {
            decision: r.decision.as_str().to_owned(),
            reason: r.reason.clone(),
            candidate_auc: r.candidate.auc,
            production_auc: r.production.as_ref().and_then(|p| p.auc),
            production_version: r.production.as_ref().and_then(|p| p.version),
            delta: r.delta,
            interval: r.interval.as_ref().map(|i| (i.low, i.high, i.confidence)),
            scored_rows: r.holdout.as_ref().map(|h| h.scored_rows),
            min_delta: r.config.min_delta,
            refresh_tolerance: r.config.refresh_tolerance,
        }
    }
}

/// One API test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestDigest {
    pub name: String,
    /// `passed`, `failed`, `errored` or `skipped`.
    pub outcome: String,
    pub message: String,
}

/// `metrics.json`: the candidate (and production) on the run's holdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub holdout_rows: usize,
    pub candidate: HoldoutMetrics,
    pub production: Option<HoldoutMetrics>,
}

/// One model's metrics on the holdout (`model::Metrics` as written; an undefined metric, such as
/// the AUC of a single-class holdout, is written as `null` and read back as NaN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutMetrics {
    #[serde(deserialize_with = "f64_or_nan")]
    pub roc_auc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub pr_auc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub log_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub brier: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub precision: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub f1: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub threshold: f64,
    pub rows: usize,
    pub positives: usize,
}

impl From<&crate::model::Metrics> for HoldoutMetrics {
    fn from(m: &crate::model::Metrics) -> HoldoutMetrics {
        HoldoutMetrics {
            roc_auc: m.roc_auc,
            pr_auc: m.pr_auc,
            log_loss: m.log_loss,
            brier: m.brier,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
            threshold: m.threshold,
            rows: m.rows,
            positives: m.positives,
        }
    }
}

use crate::drift::f64_or_nan;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_metrics_written_as_null_read_back_as_nan() {
        let m = HoldoutMetrics {
            roc_auc: f64::NAN,
            pr_auc: 0.5,
            log_loss: f64::INFINITY,
            brier: 0.2,
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
            threshold: 0.5,
            rows: 10,
            positives: 0,
        };
        let text = serde_json::to_string(&EvaluationReport {
            holdout_rows: 10,
            candidate: m,
            production: None,
        })
        .unwrap();
        assert!(text.contains("\"roc_auc\":null"), "{text}");
        let back: EvaluationReport = serde_json::from_str(&text).unwrap();
        assert!(back.candidate.roc_auc.is_nan() && back.candidate.log_loss.is_nan());
        assert_eq!(back.candidate.pr_auc, 0.5);
    }
}
