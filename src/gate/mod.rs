//! The quality gate: may a candidate model replace production?
//!
//! Both models are scored on the same holdout rows, each through its own stored preprocessing
//! (the model file's `predict_table`), and compared by ROC AUC:
//! no production model → DEPLOY; delta >= min_delta (0 by default) → DEPLOY;
//! min_delta > delta >= min_delta - tolerance → DEPLOY_REFRESH; below → SKIP. A paired bootstrap (seeded) gives a confidence interval for the delta. Anything
//! the decision needs that is missing or inconsistent (unreadable model, too small a holdout, a
//! single-class holdout, models trained on different schemas, non-finite scores) makes the gate
//! REFUSE: a refusal is never a pass. [`evaluate`] works on loaded models and rows;
//! [`evaluate_refs`] resolves REFs in a registry and reads the holdout first. Must not: promote,
//! deploy or change the registry.

mod auc;
pub mod render;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::schema::{EXPIRED_OR_HOSPICE, col};
use crate::data::{Table, Target};
use crate::exit::{Diagnose, Exit};
use crate::registry::{ModelRef, Registry, RegistryError};
use std::path::Path;

pub use auc::{Ranked, auc};

/// The gate's tunables. Defaults follow the issue; every one is a flag with an env fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// The AUC gain over production at which a candidate deploys outright (0: as good is enough).
    pub min_delta: f64,
    /// How far below production's AUC a candidate may be and still be deployed as a refresh.
    pub refresh_tolerance: f64,
    /// Fewest labelled holdout rows the gate accepts.
    pub min_rows: usize,
    /// Fewest positive and fewest negative holdout rows (AUC is noise below this).
    pub min_class_rows: usize,
    /// Paired bootstrap resamples for the delta's confidence interval (0: none).
    pub bootstrap: usize,
    /// Two-sided confidence level of the interval.
    pub confidence: f64,
    /// Seed of the bootstrap: the same inputs give the same interval.
    pub seed: u64,
    /// Which readmission label the holdout is scored against; `None`: the candidate's own.
    pub target: Option<Target>,
}

impl Default for GateConfig {
    fn default() -> GateConfig {
        GateConfig {
            min_delta: 0.0,
            refresh_tolerance: 0.02,
            min_rows: 1000,
            min_class_rows: 50,
            bootstrap: 1000,
            confidence: 0.95,
            seed: 42,
            target: None,
        }
    }
}

impl GateConfig {
    /// Checks the settings make sense; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.min_delta.is_finite() && (-1.0..=1.0).contains(&self.min_delta)) {
            return Err(format!(
                "min delta {} must be between -1 and 1",
                self.min_delta
            ));
        }
        if !(self.refresh_tolerance.is_finite() && self.refresh_tolerance >= 0.0) {
            return Err(format!(
                "refresh tolerance must be a number >= 0, got {}",
                self.refresh_tolerance
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(format!(
                "confidence must be between 0 and 1, got {}",
                self.confidence
            ));
        }
        if self.min_class_rows == 0 {
            return Err("the minimum rows per class must be at least 1".into());
        }
        Ok(())
    }
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Better than (or as good as) production, or there is no production model.
    Deploy,
    /// Slightly worse, within the tolerance: deploy to refresh on newer data.
    DeployRefresh,
    /// Worse than production beyond the tolerance.
    Skip,
    /// The gate could not decide: something it needs is missing or inconsistent.
    Refused,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Deploy => "DEPLOY",
            Decision::DeployRefresh => "DEPLOY_REFRESH",
            Decision::Skip => "SKIP",
            Decision::Refused => "REFUSED",
        }
    }

    /// Whether the candidate may go ahead.
    pub fn deploys(self) -> bool {
        matches!(self, Decision::Deploy | Decision::DeployRefresh)
    }

    /// The process exit code: SKIP and refusals are `GateRefused` (3).
    pub fn exit(self) -> Exit {
        if self.deploys() {
            Exit::Success
        } else {
            Exit::GateRefused
        }
    }
}

/// A model the gate can score: what it needs from a model file.
pub trait Scorer: Sync {
    /// Hash of the feature schema the model was trained on.
    fn schema_hash(&self) -> Option<String>;
    /// The model's own id.
    fn model_id(&self) -> Option<String>;
    /// The label the model was trained to predict.
    fn target(&self) -> Option<Target>;
    /// Positive-class probabilities for every row of `table`, through the model's own
    /// preprocessing.
    fn score(&self, table: &Table) -> Result<Vec<f64>, String>;
}

impl Scorer for crate::model::ModelFile {
    fn schema_hash(&self) -> Option<String> {
        Some(self.meta().schema_hash.clone())
    }
    fn model_id(&self) -> Option<String> {
        Some(self.meta().model_id.clone())
    }
    fn target(&self) -> Option<Target> {
        Some(self.meta().target)
    }
    fn score(&self, table: &Table) -> Result<Vec<f64>, String> {
        Ok(self.predict_table(table))
    }
}

/// A model offered to the gate.
#[derive(Clone, Copy)]
pub struct GateModel<'a> {
    /// How it was named: `alias `production` (version 3)`, a path.
    pub source: &'a str,
    pub version: Option<u64>,
    pub sha256: &'a str,
    pub model: &'a dyn Scorer,
}

impl std::fmt::Debug for GateModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateModel")
            .field("source", &self.source)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// The labelled rows both models are scored on.
#[derive(Debug, Clone, Copy)]
pub struct Holdout<'a> {
    pub source: &'a str,
    pub table: &'a Table,
}

/// One side of the comparison in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub source: String,
    pub target: Option<Target>,
    pub version: Option<u64>,
    pub sha256: Option<String>,
    pub model_id: Option<String>,
    pub schema_hash: Option<String>,
    /// ROC AUC on the holdout; `None` when it could not be computed.
    pub auc: Option<f64>,
}

/// The holdout as the gate used it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutSummary {
    pub source: String,
    /// Rows in the file.
    pub rows: usize,
    /// Rows left out: expired or hospice discharges (cannot be readmitted; training removes
    /// them too) and rows without a label.
    pub excluded_rows: usize,
    /// Rows with a label, scored by both models.
    pub scored_rows: usize,
    pub positives: usize,
    pub negatives: usize,
}

/// The paired bootstrap interval for `candidate AUC - production AUC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
    /// Resamples that had both classes (the others cannot give an AUC and are dropped).
    pub resamples: usize,
    pub seed: u64,
    /// Share of resamples in which the candidate scored below production.
    pub share_below_zero: f64,
}

/// Everything the gate decided and every number behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub decision: Decision,
    /// One sentence: why this decision.
    pub reason: String,
    /// Why the gate refused (empty unless `decision` is `REFUSED`).
    pub refusals: Vec<String>,
    pub candidate: ModelSummary,
    /// `None` when there is no production model.
    pub production: Option<ModelSummary>,
    pub holdout: Option<HoldoutSummary>,
    /// Candidate AUC minus production AUC.
    pub delta: Option<f64>,
    pub interval: Option<Interval>,
    pub config: GateConfig,
    /// The label scored.
    pub target: Target,
    pub exit_code: u8,
    pub evaluated_at: jiff::Timestamp,
    /// Not read back: a report read from a file says `""`.
    #[serde(skip_deserializing)]
    pub health_predict_version: crate::drift::StaticStr,
}

/// Decides whether `candidate` may replace `production` on `holdout`.
///
/// `Err(reason)` marks an input the caller could not provide (unreadable model, missing file):
/// the gate refuses with that reason. `production: None` means there is no production model.
pub fn evaluate(
    candidate: Result<GateModel<'_>, String>,
    production: Option<Result<GateModel<'_>, String>>,
    holdout: Result<Holdout<'_>, String>,
    config: &GateConfig,
) -> GateReport {
    let mut refusals = Vec::new();
    if let Err(e) = config.validate() {
        refusals.push(format!("invalid gate settings: {e}"));
    }
    let summary = |m: &GateModel<'_>| ModelSummary {
        source: m.source.to_owned(),
        version: m.version,
        sha256: Some(m.sha256.to_owned()),
        model_id: m.model.model_id(),
        schema_hash: m.model.schema_hash(),
        target: m.model.target(),
        auc: None,
    };
    let missing = |what: &str, e: &str| ModelSummary {
        source: format!("{what} (unavailable: {e})"),
        version: None,
        sha256: None,
        model_id: None,
        schema_hash: None,
        target: None,
        auc: None,
    };
    let mut cand_summary = match &candidate {
        Ok(m) => summary(m),
        Err(e) => {
            refusals.push(format!("candidate model unavailable: {e}"));
            missing("candidate", e)
        }
    };
    let mut prod_summary = match &production {
        None => None,
        Some(Ok(m)) => Some(summary(m)),
        Some(Err(e)) => {
            refusals.push(format!("production model unavailable: {e}"));
            Some(missing("production", e))
        }
    };
    if let (Some(c), Some(p)) = (&cand_summary.schema_hash, prod_summary.as_ref())
        && p.sha256.is_some()
    {
        match &p.schema_hash {
            Some(ph) if ph != c => refusals.push(format!(
                "candidate and production were trained on different feature schemas \
                 ({} vs {}): their AUCs are not comparable",
                short(c),
                short(ph)
            )),
            None => refusals.push("production model records no schema hash".into()),
            _ => {}
        }
    }
    if candidate.is_ok() && cand_summary.schema_hash.is_none() {
        refusals.push("candidate model records no schema hash".into());
    }
    if let (Some(c), Some(Some(p))) = (cand_summary.target, prod_summary.as_ref().map(|p| p.target))
        && c != p
    {
        refusals.push(format!(
            "candidate predicts target `{}` but production predicts `{}`",
            target_name(c),
            target_name(p)
        ));
    }
    let target = config.target.or(cand_summary.target).unwrap_or_default();
    if let (Some(want), Some(c)) = (config.target, cand_summary.target)
        && want != c
    {
        refusals.push(format!(
            "the gate was asked to score target `{}` but the candidate predicts `{}`",
            target_name(want),
            target_name(c)
        ));
    }

    // Labelled rows, then the scores of each model on exactly those rows.
    let mut holdout_summary = None;
    let mut labels: Vec<bool> = Vec::new();
    let mut keep: Vec<usize> = Vec::new();
    match &holdout {
        Err(e) => refusals.push(format!("holdout unavailable: {e}")),
        Ok(h) => {
            let discharge = h.table.ints(col::DISCHARGE_DISPOSITION_ID);
            for (i, l) in h.table.labels(target).into_iter().enumerate() {
                let gone = discharge[i].is_some_and(|d| EXPIRED_OR_HOSPICE.contains(&d));
                if let (Some(l), false) = (l, gone) {
                    keep.push(i);
                    labels.push(l);
                }
            }
            let positives = labels.iter().filter(|l| **l).count();
            let s = HoldoutSummary {
                source: h.source.to_owned(),
                rows: h.table.len(),
                excluded_rows: h.table.len() - labels.len(),
                scored_rows: labels.len(),
                positives,
                negatives: labels.len() - positives,
            };
            if s.scored_rows < config.min_rows {
                refusals.push(format!(
                    "holdout has {} labelled rows, fewer than the minimum {} \
                     (--min-rows)",
                    s.scored_rows, config.min_rows
                ));
            }
            if s.positives < config.min_class_rows || s.negatives < config.min_class_rows {
                refusals.push(format!(
                    "holdout has {} positive and {} negative rows; each class needs at least \
                     {} (--min-class-rows)",
                    s.positives, s.negatives, config.min_class_rows
                ));
            }
            holdout_summary = Some(s);
        }
    }

    let score = |m: &GateModel<'_>, h: &Holdout<'_>, who: &str| -> Result<Vec<f64>, String> {
        let all = m
            .model
            .score(h.table)
            .map_err(|e| format!("{who} model could not score the holdout: {e}"))?;
        if all.len() != h.table.len() {
            return Err(format!(
                "{who} model returned {} scores for {} rows",
                all.len(),
                h.table.len()
            ));
        }
        let picked: Vec<f64> = keep.iter().map(|&i| all[i]).collect();
        if let Some(bad) = picked.iter().position(|s| !s.is_finite()) {
            return Err(format!(
                "{who} model gave a non-finite score on holdout row {}",
                keep[bad] + 1
            ));
        }
        Ok(picked)
    };
    let mut cand_scores = None;
    let mut prod_scores = None;
    if let Ok(h) = &holdout {
        if let Ok(m) = &candidate {
            match score(m, h, "candidate") {
                Ok(s) => cand_scores = Some(s),
                Err(e) => refusals.push(e),
            }
        }
        if let Some(Ok(m)) = &production {
            match score(m, h, "production") {
                Ok(s) => prod_scores = Some(s),
                Err(e) => refusals.push(e),
            }
        }
    }

    let cand_rank = cand_scores.as_deref().map(Ranked::new);
    let prod_rank = prod_scores.as_deref().map(Ranked::new);
    cand_summary.auc = cand_rank.as_ref().and_then(|r| auc(r, &labels, None));
    if let (Some(p), Some(r)) = (prod_summary.as_mut(), prod_rank.as_ref()) {
        p.auc = auc(r, &labels, None);
    }
    let delta = match (cand_summary.auc, prod_summary.as_ref().and_then(|p| p.auc)) {
        (Some(c), Some(p)) => Some(c - p),
        _ => None,
    };
    let interval = match (&cand_rank, &prod_rank) {
        (Some(c), Some(p)) if config.bootstrap > 0 && delta.is_some() => {
            paired_bootstrap(c, p, &labels, config)
        }
        _ => None,
    };

    let (decision, reason) = if !refusals.is_empty() {
        (
            Decision::Refused,
            format!(
                "the gate refused: {} (a refusal is not a pass)",
                refusals.join("; ")
            ),
        )
    } else if production.is_none() {
        match cand_summary.auc {
            Some(a) => (
                Decision::Deploy,
                format!("there is no production model; the candidate's AUC is {a:.4}"),
            ),
            None => (
                Decision::Refused,
                "the candidate's AUC could not be computed".into(),
            ),
        }
    } else {
        match delta {
            None => (Decision::Refused, "an AUC could not be computed".to_owned()),
            Some(d) if d >= config.min_delta => (
                Decision::Deploy,
                format!(
                    "the candidate's AUC is {d:+.4} against production (>= {:+.4})",
                    config.min_delta
                ),
            ),
            Some(d) if d >= config.min_delta - config.refresh_tolerance => (
                Decision::DeployRefresh,
                format!(
                    "the candidate's AUC is {d:+.4} against production, within the refresh \
                     tolerance {:.4}",
                    config.refresh_tolerance
                ),
            ),
            Some(d) => (
                Decision::Skip,
                format!(
                    "the candidate's AUC is {d:+.4} against production, below {:+.4} (min delta \
                     {:+.4} less the refresh tolerance {:.4})",
                    config.min_delta - config.refresh_tolerance,
                    config.min_delta,
                    config.refresh_tolerance
                ),
            ),
        }
    };
    if decision == Decision::Refused && refusals.is_empty() {
        refusals.push(reason.clone());
    }
    GateReport {
        decision,
        reason,
        refusals,
        candidate: cand_summary,
        production: prod_summary,
        holdout: holdout_summary,
        delta,
        interval,
        config: config.clone(),
        target,
        exit_code: decision.exit().code(),
        evaluated_at: jiff::Timestamp::now(),
        health_predict_version: crate::VERSION,
    }
}

fn target_name(t: Target) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Percentile interval of `AUC(candidate) - AUC(production)` over resamples of the holdout rows
/// drawn with replacement, the same rows for both models in each resample. Each resample has its
/// own ChaCha stream, so the result does not depend on the thread count.
fn paired_bootstrap(
    candidate: &Ranked,
    production: &Ranked,
    labels: &[bool],
    config: &GateConfig,
) -> Option<Interval> {
    let n = labels.len();
    if n == 0 {
        return None;
    }
    let mut deltas: Vec<f64> = (0..config.bootstrap as u64)
        .into_par_iter()
        .filter_map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            rng.set_stream(b);
            let mut weights = vec![0u32; n];
            for _ in 0..n {
                weights[rng.random_range(0..n)] += 1;
            }
            let c = auc(candidate, labels, Some(&weights))?;
            let p = auc(production, labels, Some(&weights))?;
            Some(c - p)
        })
        .collect();
    if deltas.is_empty() {
        return None;
    }
    deltas.sort_by(f64::total_cmp);
    let alpha = (1.0 - config.confidence) / 2.0;
    let below = deltas.iter().filter(|d| **d < 0.0).count();
    Some(Interval {
        low: quantile(&deltas, alpha),
        high: quantile(&deltas, 1.0 - alpha),
        confidence: config.confidence,
        resamples: deltas.len(),
        seed: config.seed,
        share_below_zero: below as f64 / deltas.len() as f64,
    })
}

/// A model file loaded for the gate, with how it was named.
struct Loaded {
    source: String,
    version: Option<u64>,
    sha256: String,
    model: crate::model::ModelFile,
}

impl Loaded {
    fn as_gate(&self) -> GateModel<'_> {
        GateModel {
            source: &self.source,
            version: self.version,
            sha256: &self.sha256,
            model: &self.model,
        }
    }
}

/// An error as one line: message, causes and hint, for a refusal reason.
fn one_line<E: Diagnose + Send + Sync + 'static>(e: E) -> String {
    let text = crate::exit::render_diagnosed(e);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.join("; ").trim_start_matches("error: ").to_owned()
}

/// `Ok(None)` when `reference` is an alias that is not set.
async fn load(reg: &dyn Registry, reference: &str) -> Result<Option<Loaded>, String> {
    let reference: ModelRef = reference.parse().map_err(one_line)?;
    let resolved = match reg.resolve(&reference).await {
        Ok(r) => r,
        Err(RegistryError::AliasUnset { .. }) => return Ok(None),
        Err(e) => return Err(one_line(e)),
    };
    let model = crate::model::ModelFile::from_bytes(&resolved.bytes).map_err(|e| {
        one_line(RegistryError::InvalidModel {
            what: resolved.source.clone(),
            source: e,
        })
    })?;
    Ok(Some(Loaded {
        version: resolved.version(),
        source: resolved.source,
        sha256: resolved.sha256,
        model,
    }))
}

/// The gate as the CLI and the pipeline run it: resolves both REFs in `reg` (version, alias or
/// path; an unset production alias means there is no production model), loads the holdout, and
/// evaluates. Never fails: whatever cannot be read becomes a refusal in the report.
pub async fn evaluate_refs(
    reg: &dyn Registry,
    candidate: &str,
    production: &str,
    holdout: &Path,
    config: &GateConfig,
) -> GateReport {
    let cand = match load(reg, candidate).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(format!(
            "alias `{candidate}` is not set in {}",
            reg.describe()
        )),
        Err(e) => Err(e),
    };
    let prod = load(reg, production).await;
    let source = holdout.display().to_string();
    let table = crate::data::load(holdout, &crate::data::LoadOptions::default()).map_err(one_line);
    evaluate(
        cand.as_ref().map(Loaded::as_gate).map_err(Clone::clone),
        match &prod {
            Ok(None) => None,
            Ok(Some(m)) => Some(Ok(m.as_gate())),
            Err(e) => Some(Err(e.clone())),
        },
        table
            .as_ref()
            .map(|t| Holdout {
                source: &source,
                table: t,
            })
            .map_err(Clone::clone),
        config,
    )
}

/// Writes `gate.json` (the report as `--output json` prints it) and `gate.md` (a PR comment)
/// into `dir`, atomically.
pub fn write_report(dir: &Path, report: &GateReport) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::fsutil::write_atomic(&dir.join("gate.json"), &json)?;
    crate::fsutil::write_atomic(&dir.join("gate.md"), render::markdown(report).as_bytes())
}

/// Linear-interpolation quantile of sorted values (type 7, numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests;
