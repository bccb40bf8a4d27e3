//! Training end to end: eligible rows, the patient-grouped seeded split, fitting the preprocessing
//! on the training split, the search, the threshold on validation, metrics on the held-out test
//! split, the logistic baseline, and the model file.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::features::FeatureSpec;
use super::gbdt::Binned;
use super::logistic::{Logistic, sigmoid};
use super::metrics::{Metrics, SplitMetrics, ThresholdRule, choose_threshold};
pub use super::search::TrialReport;
use super::search::{self, SearchData, TrialParams};
use super::{Learner, ModelError, ModelFile, ModelMeta, SplitInfo};
use crate::data::schema::{EXPIRED_OR_HOSPICE, WIDTH, col};
use crate::data::{Table, Target, Value};

/// Which learner the final model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Gradient-boosted trees (this crate's histogram learner, stored as forust-ml trees) with
    /// hyperparameter search.
    #[default]
    Gbt,
    /// The logistic-regression baseline alone.
    Logistic,
}

/// Shares of patients held out for validation and test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    pub validation: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            validation: 0.15,
            test: 0.15,
        }
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest<'a> {
    pub data: &'a Table,
    /// SHA-256 hex of the training data; [`fingerprint`] computes it from the table.
    pub data_fingerprint: String,
    pub target: Target,
    pub seed: u64,
    pub trials: usize,
    pub threshold_rule: ThresholdRule,
    pub algorithm: Algorithm,
    /// Training threads; `None` uses every core.
    pub threads: Option<usize>,
    pub split: SplitFractions,
}

impl<'a> TrainRequest<'a> {
    /// Defaults: target `any`, seed 42, 20 trials, max-F1 threshold, trees, every core.
    pub fn new(data: &'a Table) -> TrainRequest<'a> {
        TrainRequest {
            data,
            data_fingerprint: fingerprint(data),
            target: Target::Any,
            seed: 42,
            trials: 20,
            threshold_rule: ThresholdRule::MaxF1,
            algorithm: Algorithm::Gbt,
            threads: None,
            split: SplitFractions::default(),
        }
    }

    fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// Training progress, for a progress bar or logs.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// A trial finished a rung: `done` of `total` trial-rungs.
    Trial {
        report: &'a TrialReport,
        done: usize,
        total: usize,
    },
}

/// What [`train`] returns.
#[derive(Debug)]
pub struct TrainOutcome {
    pub model: ModelFile,
    /// Wall time of the whole call.
    pub train_seconds: f64,
    /// Wall time of the hyperparameter search (all trials, all rungs).
    pub search_seconds: f64,
    pub trials: Vec<TrialReport>,
}

/// SHA-256 of a table's cells in row order (type-tagged, so `1` and `"1"` differ).
pub fn fingerprint(table: &Table) -> String {
    let mut h = Sha256::new();
    for r in 0..table.len() {
        for c in 0..WIDTH {
            match table.get(r, c) {
                Value::Missing => h.update([0u8]),
                Value::Int(i) => {
                    h.update([1u8]);
                    h.update(i.to_le_bytes());
                }
                Value::Str(s) => {
                    h.update([2u8]);
                    h.update((s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
    }
    hex::encode(h.finalize())
}

/// Rows usable for training or evaluation (labelled, not expired/hospice), their labels, and how
/// many rows were removed.
pub(crate) fn eligible(table: &Table, target: Target) -> (Vec<usize>, Vec<bool>, usize) {
    let labels = if table.is_present(col::READMITTED) {
        table.labels(target)
    } else {
        vec![None; table.len()]
    };
    let disp = table.ints(col::DISCHARGE_DISPOSITION_ID);
    let mut rows = Vec::with_capacity(table.len());
    let mut ys = Vec::with_capacity(table.len());
    for (r, y) in labels.into_iter().enumerate() {
        let expired = disp[r].is_some_and(|d| EXPIRED_OR_HOSPICE.contains(&d));
        if let (Some(y), false) = (y, expired) {
            rows.push(r);
            ys.push(y);
        }
    }
    let removed = table.len() - rows.len();
    (rows, ys, removed)
}

/// A patient's position in [0, 1): SplitMix64 of (seed, patient) so the split is stable across
/// platforms and releases.
fn patient_unit(seed: u64, patient: i64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(patient as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The three splits' rows and labels.
pub(crate) struct Splits {
    pub train: (Vec<usize>, Vec<bool>),
    pub valid: (Vec<usize>, Vec<bool>),
    pub test: (Vec<usize>, Vec<bool>),
    pub removed: usize,
}

/// Splits eligible rows by patient: every encounter of a patient lands in the same split.
pub(crate) fn split(
    table: &Table,
    target: Target,
    seed: u64,
    f: SplitFractions,
) -> Result<Splits, ModelError> {
    if !table.is_present(col::PATIENT_NBR) {
        return Err(ModelError::Data(
            "the data has no `patient_nbr` column, needed for the patient-grouped split".into(),
        ));
    }
    let (rows, labels, removed) = eligible(table, target);
    let patients = table.ints(col::PATIENT_NBR);
    let mut s = Splits {
        train: Default::default(),
        valid: Default::default(),
        test: Default::default(),
        removed,
    };
    for (r, y) in rows.into_iter().zip(labels) {
        let Some(p) = patients[r] else {
            return Err(ModelError::Data(format!(
                "row {} has no `patient_nbr`",
                r + 1
            )));
        };
        let u = patient_unit(seed, p);
        let part = if u < f.test {
            &mut s.test
        } else if u < f.test + f.validation {
            &mut s.valid
        } else {
            &mut s.train
        };
        part.0.push(r);
        part.1.push(y);
    }
    for (name, part) in [
        ("training", &s.train),
        ("validation", &s.valid),
        ("test", &s.test),
    ] {
        let pos = part.1.iter().filter(|&&y| y).count();
        if pos == 0 || pos == part.1.len() {
            return Err(ModelError::Data(format!(
                "the {name} split has {} rows and {pos} positives: both outcomes are needed (use more rows)",
                part.1.len()
            )));
        }
    }
    Ok(s)
}

/// Which split each eligible row of `table` falls in (`train`, `validation` or `test`), in row
/// order: what [`train`] uses for a given seed and target, with the default fractions.
pub fn split_assignment(
    table: &Table,
    target: Target,
    seed: u64,
) -> Result<Vec<(usize, &'static str)>, ModelError> {
    let s = split(table, target, seed, SplitFractions::default())?;
    let mut out: Vec<(usize, &'static str)> = s
        .train
        .0
        .iter()
        .map(|&r| (r, "train"))
        .chain(s.valid.0.iter().map(|&r| (r, "validation")))
        .chain(s.test.0.iter().map(|&r| (r, "test")))
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn as_f64(labels: &[bool]) -> Vec<f64> {
    labels.iter().map(|&y| f64::from(u8::from(y))).collect()
}

struct Encoded {
    spec: FeatureSpec,
    train: Vec<f64>,
    valid: Vec<f64>,
    test: Vec<f64>,
}

fn encode(table: &Table, s: &Splits, target: Target) -> Encoded {
    let spec = FeatureSpec::fit(table, &s.train.0, &s.train.1, target);
    Encoded {
        train: spec.encode_columns(table, &s.train.0),
        valid: spec.encode_columns(table, &s.valid.0),
        test: spec.encode_columns(table, &s.test.0),
        spec,
    }
}

/// Trains a model: the library entry point behind `health-predict train`.
pub fn train(
    req: &TrainRequest<'_>,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<TrainOutcome, ModelError> {
    let start = Instant::now();
    let splits = split(req.data, req.target, req.seed, req.split)?;
    let enc = encode(req.data, &splits, req.target);
    let cols = enc.spec.len();
    let (n_train, n_valid, n_test) = (
        splits.train.0.len(),
        splits.valid.0.len(),
        splits.test.0.len(),
    );
    let logistic_l2 = 1.0;
    let baseline = Logistic::fit(&enc.train, n_train, cols, &splits.train.1, logistic_l2);
    let baseline_learner = Learner::Logistic { model: baseline };
    let score = |learner: &Learner, x: &[f64], rows: usize| -> Vec<f64> {
        learner
            .logits(x, rows, cols)
            .into_iter()
            .map(sigmoid)
            .collect()
    };
    let split_metrics = |learner: &Learner| {
        let pv = score(learner, &enc.valid, n_valid);
        let t = choose_threshold(&splits.valid.1, &pv, req.threshold_rule);
        let pt = score(learner, &enc.test, n_test);
        (
            t,
            SplitMetrics {
                validation: Metrics::compute(&splits.valid.1, &pv, t),
                test: Metrics::compute(&splits.test.1, &pt, t),
            },
        )
    };
    let (baseline_threshold, baseline_metrics) = split_metrics(&baseline_learner);

    let search_start = Instant::now();
    let (learner, params, trials) = match req.algorithm {
        Algorithm::Logistic => (
            baseline_learner,
            serde_json::json!({ "l2": logistic_l2 }),
            Vec::new(),
        ),
        Algorithm::Gbt => {
            let train_y = as_f64(&splits.train.1);
            let valid_y = as_f64(&splits.valid.1);
            let binned = Binned::new(&enc.train, &train_y, &enc.valid, &valid_y, cols);
            let data = SearchData {
                binned: &binned,
                valid_labels: &splits.valid.1,
            };
            let on_trial = |report: &TrialReport, done: usize, total: usize| {
                progress(Progress::Trial {
                    report,
                    done,
                    total,
                });
            };
            let (booster, best, trials) =
                search::run(&data, req.trials, req.seed, req.threads(), &on_trial)?;
            let trees = booster.prediction_iteration.unwrap_or(booster.trees.len());
            let params = params_json(&best, trees, req.trials);
            (Learner::Gbt { booster }, params, trials)
        }
    };
    let search_seconds = search_start.elapsed().as_secs_f64();
    let (threshold, metrics) = match req.algorithm {
        Algorithm::Logistic => (baseline_threshold, baseline_metrics.clone()),
        Algorithm::Gbt => split_metrics(&learner),
    };
    let meta = ModelMeta {
        format_version: super::FORMAT_VERSION,
        model_id: String::new(),
        created_at: jiff::Timestamp::now().to_string(),
        code_version: crate::VERSION.to_owned(),
        git_commit: option_env!("HEALTH_PREDICT_GIT_COMMIT").map(str::to_owned),
        target: req.target,
        algorithm: learner.name().to_owned(),
        params,
        threshold,
        threshold_rule: req.threshold_rule,
        metrics,
        baseline: (req.algorithm != Algorithm::Logistic).then_some(baseline_metrics),
        data_fingerprint: req.data_fingerprint.clone(),
        training_rows: n_train,
        split: SplitInfo {
            seed: req.seed,
            grouped_by: "patient_nbr".to_owned(),
            validation_fraction: req.split.validation,
            test_fraction: req.split.test,
            train_rows: n_train,
            validation_rows: n_valid,
            test_rows: n_test,
            removed_rows: splits.removed,
        },
        feature_names: enc.spec.names(),
        schema_hash: enc.spec.schema_hash(),
        checksum: String::new(),
    };
    let mut model = ModelFile {
        meta,
        features: enc.spec,
        learner,
    };
    model.meta.model_id = model_id(&model);
    model.meta.checksum = super::file::body(&model).1;
    Ok(TrainOutcome {
        model,
        train_seconds: start.elapsed().as_secs_f64(),
        search_seconds,
        trials,
    })
}

fn params_json(p: &TrialParams, trees: usize, trials: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("trees".into(), trees.into());
        o.insert("trials".into(), trials.into());
        o.insert(
            "early_stopping_rounds".into(),
            search::EARLY_STOPPING_ROUNDS.into(),
        );
    }
    v
}

/// A content hash of what the model computes (learner, preprocessing, target and training data),
/// independent of when it was trained: the same data and seed give the same id.
fn model_id(m: &ModelFile) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&m.learner).unwrap_or_default());
    h.update(serde_json::to_vec(&m.features).unwrap_or_default());
    h.update(m.meta.data_fingerprint.as_bytes());
    h.update(m.meta.threshold.to_le_bytes());
    hex::encode(h.finalize())[..12].to_owned()
}

/// What [`export_features`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub dir: String,
    pub features: Vec<String>,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub test_rows: usize,
    /// The parameters of the search's first trial, for like-for-like comparisons.
    pub default_params: TrialParams,
}

/// Writes the exact split and encoded features that [`train`] would use (`train.csv`,
/// `validation.csv`, `test.csv`: one column per feature, then `label`; missing values empty) so
/// other libraries can be benchmarked on the same rows and columns.
pub fn export_features(req: &TrainRequest<'_>, dir: &Path) -> Result<ExportSummary, ModelError> {
    let splits = split(req.data, req.target, req.seed, req.split)?;
    let enc = encode(req.data, &splits, req.target);
    let names = enc.spec.names();
    let err = |source| ModelError::Export {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    for (file, x, labels) in [
        ("train.csv", &enc.train, &splits.train.1),
        ("validation.csv", &enc.valid, &splits.valid.1),
        ("test.csv", &enc.test, &splits.test.1),
    ] {
        let rows = labels.len();
        let mut out = String::with_capacity(rows * names.len() * 8);
        out.push_str(&names.join(","));
        out.push_str(",label\n");
        for r in 0..rows {
            for c in 0..names.len() {
                let v = x[c * rows + r];
                if !v.is_nan() {
                    out.push_str(&v.to_string());
                }
                out.push(',');
            }
            out.push(if labels[r] { '1' } else { '0' });
            out.push('\n');
        }
        crate::fsutil::write_atomic(&dir.join(file), out.as_bytes()).map_err(err)?;
    }
    Ok(ExportSummary {
        dir: dir.display().to_string(),
        features: names,
        train_rows: splits.train.1.len(),
        validation_rows: splits.valid.1.len(),
        test_rows: splits.test.1.len(),
        default_params: TrialParams::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_units_are_uniform_and_seeded() {
        let n = 100_000;
        let below = (0..n).filter(|&p| patient_unit(7, p) < 0.3).count();
        assert!((below as f64 / n as f64 - 0.3).abs() < 0.01, "{below}");
        assert_eq!(patient_unit(7, 12), patient_unit(7, 12));
        assert_ne!(patient_unit(7, 12), patient_unit(8, 12));
    }
}
