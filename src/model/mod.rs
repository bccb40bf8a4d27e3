//! Features, training (gradient-boosted trees from our own histogram learner, stored and
//! predicted as forust-ml trees; a logistic-regression baseline), hyperparameter search, metrics
//! and the model file.
//!
//! A [`ModelFile`] is self-describing: the fitted preprocessing definition
//! ([`features::FeatureSpec`]), the learner, the threshold, the parameters, the metrics, a
//! fingerprint of the training data, the code version and its own SHA-256 checksum, verified on
//! load. Serving, the registry and the gate use it through this module's API only.
//!
//! This module never reads files other than model files, never prints, and never imports `cli`,
//! `pipeline` or other leaf modules; callers hand it a loaded [`Table`].

pub(crate) mod features;
mod file;
mod gbdt;
pub(crate) mod logistic;
pub mod metrics;
mod params;
mod search;
mod train;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use features::FeatureSpec;
pub use file::FORMAT_VERSION;
pub use metrics::{Metrics, SplitMetrics, ThresholdRule};
pub use params::TrialParams;
pub use train::{
    Algorithm, ExportSummary, Progress, SplitFractions, TrainOutcome, TrainRequest, TrialReport,
    export_features, fingerprint, split_assignment, train,
};

use crate::data::{Row, Table, Target};
use crate::exit::{Diagnose, Exit};
use logistic::{Logistic, sigmoid};

/// Errors loading, saving or training models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write model file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name} is not a health-predict model file ({why})")]
    NotAModel { source_name: String, why: String },
    #[error(
        "{source_name} was written by model file format {found}; this build reads format {FORMAT_VERSION}"
    )]
    Version { source_name: String, found: u32 },
    #[error(
        "{source_name} failed its checksum: the file says sha256 {expected}, its content hashes to {actual} (the file is corrupt or was edited)"
    )]
    Checksum {
        source_name: String,
        expected: String,
        actual: String,
    },
    #[error("{source_name} passed its checksum but its content is malformed: {why}")]
    Malformed { source_name: String, why: String },
    #[error("cannot train: {0}")]
    Data(String),
    #[error("cannot write exported features to {path}")]
    Export {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Diagnose for ModelError {
    fn exit(&self) -> Exit {
        match self {
            ModelError::Write { .. } | ModelError::Export { .. } => Exit::Failure,
            _ => Exit::InvalidInput,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ModelError::Read { .. } => {
                "check the path given with --model (or HEALTH_PREDICT_MODEL)".into()
            }
            ModelError::Write { .. } | ModelError::Export { .. } => {
                "check that the directory exists and is writable".into()
            }
            ModelError::NotAModel { .. } | ModelError::Checksum { .. } | ModelError::Malformed { .. } => {
                "retrain with `health-predict train --data PATH --out MODEL` or fetch the model again from the registry".into()
            }
            ModelError::Version { .. } => {
                "use the health-predict release that wrote the model, or retrain it with this one".into()
            }
            ModelError::Data(_) => {
                "train needs labelled rows with `patient_nbr` and both outcomes; check --data and --target".into()
            }
        })
    }
}

/// Everything a model file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    /// Short content hash of the learned model and its preprocessing (12 hex digits).
    pub model_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// [`crate::VERSION`] of the build that trained it.
    pub code_version: String,
    /// The commit the training build came from (`HEALTH_PREDICT_GIT_COMMIT` at build time).
    pub git_commit: Option<String>,
    pub target: Target,
    /// `gbt` or `logistic`.
    pub algorithm: String,
    pub params: serde_json::Value,
    pub threshold: f64,
    pub threshold_rule: ThresholdRule,
    pub metrics: SplitMetrics,
    /// The logistic-regression baseline on the same splits (absent for baseline models).
    #[serde(default)]
    pub baseline: Option<SplitMetrics>,
    /// SHA-256 hex of the training data (every cell of every row, in order).
    pub data_fingerprint: String,
    /// Rows in the training split.
    pub training_rows: usize,
    pub split: SplitInfo,
    pub feature_names: Vec<String>,
    /// Hash of the preprocessing definition: two models are comparable iff equal.
    pub schema_hash: String,
    /// SHA-256 hex of the file body; filled on save and load, not part of the hashed body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
}

impl ModelMeta {
    /// The metrics as dotted keys (`test.roc_auc`, `validation.f1`, ...), finite numbers only:
    /// what registries store and `/model-info` shows.
    pub fn flat_metrics(&self) -> std::collections::BTreeMap<String, f64> {
        fn walk(
            prefix: &str,
            v: &serde_json::Value,
            out: &mut std::collections::BTreeMap<String, f64>,
        ) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                serde_json::Value::Number(n) => {
                    if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                        out.insert(prefix.to_owned(), x);
                    }
                }
                _ => {}
            }
        }
        let mut out = std::collections::BTreeMap::new();
        if let Ok(v) = serde_json::to_value(&self.metrics) {
            walk("", &v, &mut out);
        }
        out
    }
}

/// How the data were split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub seed: u64,
    pub grouped_by: String,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub test_rows: usize,
    /// Rows removed before splitting (expired/hospice discharges, missing labels).
    pub removed_rows: usize,
}

/// One feature's share of a prediction, in log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    pub value: String,
    pub contribution: f64,
}

/// The learned part of a model.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "algorithm")]
pub(crate) enum Learner {
    Gbt { booster: forust_ml::GradientBooster },
    Logistic { model: Logistic },
}

impl Learner {
    fn name(&self) -> &'static str {
        match self {
            Learner::Gbt { .. } => "gbt",
            Learner::Logistic { .. } => "logistic",
        }
    }

    fn logit(&self, x: &[f64]) -> f64 {
        match self {
            Learner::Gbt { booster } => {
                let n = booster
                    .prediction_iteration
                    .unwrap_or(booster.trees.len())
                    .min(booster.trees.len());
                booster.base_score
                    + booster.trees[..n]
                        .iter()
                        .map(|t| t.predict_row_from_row_slice(x, &booster.missing))
                        .sum::<f64>()
            }
            Learner::Logistic { model } => model.logit(x),
        }
    }

    /// Log-odds for a column-major matrix.
    fn logits(&self, cols_major: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        match self {
            Learner::Gbt { booster } => {
                let m = forust_ml::Matrix::new(cols_major, rows, cols);
                booster.predict(&m, rows > 512)
            }
            Learner::Logistic { model } => {
                let mut row = vec![0.0; cols];
                (0..rows)
                    .map(|r| {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = cols_major[c * rows + r];
                        }
                        model.logit(&row)
                    })
                    .collect()
            }
        }
    }

    fn contributions(&self, x: &[f64]) -> Vec<f64> {
        match self {
            Learner::Gbt { booster } => {
                let m = forust_ml::Matrix::new(x, 1, x.len());
                let mut c = booster.predict_contributions(
                    &m,
                    forust_ml::gradientbooster::ContributionsMethod::Shapley,
                    false,
                );
                c.truncate(x.len());
                c
            }
            Learner::Logistic { model } => model.contributions(x),
        }
    }
}

/// A loaded, checksum-verified model.
pub struct ModelFile {
    meta: ModelMeta,
    features: FeatureSpec,
    learner: Learner,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("model_id", &self.meta.model_id)
            .field("algorithm", &self.meta.algorithm)
            .field("features", &self.features.len())
            .finish_non_exhaustive()
    }
}

impl ModelFile {
    /// Reads and verifies a model file.
    pub fn load(path: &Path) -> Result<ModelFile, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.display().to_string(),
            source,
        })?;
        file::decode(&bytes, &path.display().to_string())
    }

    /// Verifies and parses model file bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile, ModelError> {
        file::decode(bytes, "model bytes")
    }

    /// The file's bytes (deterministic for a given model).
    pub fn to_bytes(&self) -> Vec<u8> {
        file::encode(self).0
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        crate::fsutil::write_atomic(path, &self.to_bytes()).map_err(|source| ModelError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The decision threshold chosen on validation.
    pub fn threshold(&self) -> f64 {
        self.meta.threshold
    }

    /// P(positive) for one encounter.
    pub fn predict_proba<R: Row + ?Sized>(&self, row: &R) -> f64 {
        sigmoid(self.learner.logit(&self.features.encode(row)))
    }

    /// P(positive) for every row of a table.
    pub fn predict_table(&self, table: &Table) -> Vec<f64> {
        let rows: Vec<usize> = (0..table.len()).collect();
        self.predict_rows(table, &rows)
    }

    pub(crate) fn predict_rows(&self, table: &Table, rows: &[usize]) -> Vec<f64> {
        let x = self.features.encode_columns(table, rows);
        self.learner
            .logits(&x, rows.len(), self.features.len())
            .into_iter()
            .map(sigmoid)
            .collect()
    }

    /// The `top` features that moved this prediction most (log-odds, SHAP values for trees),
    /// largest magnitude first.
    pub fn explain<R: Row + ?Sized>(&self, row: &R, top: usize) -> Vec<Contribution> {
        let x = self.features.encode(row);
        let mut out: Vec<Contribution> = self
            .learner
            .contributions(&x)
            .into_iter()
            .enumerate()
            .map(|(i, c)| Contribution {
                feature: self.features.features[i].name.clone(),
                value: self.features.describe(i, row),
                contribution: c,
            })
            .collect();
        out.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        out.truncate(top);
        out
    }

    /// Scores the model on labelled rows (expired/hospice discharges and unlabeled rows are
    /// skipped, as in training) at the model's own threshold.
    pub fn evaluate(&self, table: &Table) -> Result<Evaluation, ModelError> {
        let (rows, labels, removed) = train::eligible(table, self.meta.target);
        if rows.is_empty() {
            return Err(ModelError::Data(
                "no labelled rows left after removing expired/hospice discharges".into(),
            ));
        }
        let probs = self.predict_rows(table, &rows);
        Ok(Evaluation {
            metrics: Metrics::compute(&labels, &probs, self.meta.threshold),
            removed_rows: removed,
        })
    }
}

/// The result of [`ModelFile::evaluate`].
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub metrics: Metrics,
    pub removed_rows: usize,
}
