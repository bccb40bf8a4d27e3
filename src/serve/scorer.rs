//! What the server needs from a model: a score, an explanation and a description. The model file
//! implements it; tests and the pipeline can plug in their own.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::encounter::Encounter;

/// One feature's share of a prediction (SHAP-style: contributions and the base value add up to
/// the log-odds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Contribution {
    /// The model feature.
    pub feature: String,
    /// The feature's value for this encounter, as the model saw it.
    pub value: serde_json::Value,
    /// The contribution to the log-odds (positive raises the risk).
    pub contribution: f64,
}

/// What a model says about itself, for `/model-info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelDescription {
    /// The model's name.
    pub name: String,
    /// The model's version (its id in the model file unless a registry says otherwise).
    pub version: String,
    /// The fingerprint of the training data.
    pub data_fingerprint: String,
    /// Evaluation metrics recorded at training time (auc, pr_auc, ...).
    pub metrics: BTreeMap<String, f64>,
    /// The probability at or above which the prediction is 1 (readmitted).
    pub threshold: f64,
    /// The git commit the model was trained from, when known.
    pub git_commit: Option<String>,
    /// The features the model reads, in order.
    pub feature_names: Vec<String>,
    /// The model file's checksum (sha256), when it was verified on load.
    pub checksum: Option<String>,
}

/// A loaded, verified model the server can score with. Scoring is synchronous and fast
/// (microseconds); it must not panic on any validated encounter.
pub trait Scorer: Send + Sync + 'static {
    /// The model's description.
    fn describe(&self) -> ModelDescription;
    /// The probability of readmission, in [0, 1].
    fn score(&self, encounter: &Encounter) -> f64;
    /// The `top` largest contributions by absolute value.
    fn explain(&self, encounter: &Encounter, top: usize) -> Vec<Contribution>;
}
