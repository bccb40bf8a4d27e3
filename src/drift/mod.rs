//! Column-by-column drift detection between a reference and a current batch, and the retraining
//! decision. Chooses a statistical test per column exactly as Evidently 0.4.22's
//! `DataDriftPreset()` does by default (overridable per column or globally), computes it
//! ([`stats`], `ks`), and renders the result as JSON, Markdown and self-contained HTML
//! (`report`). Knows nothing of models, registries or CI; never reads files itself.

pub(crate) mod ks;
pub(crate) mod report;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data::Table;
use crate::data::schema::{COLUMNS, Kind, col};
use crate::data::table::Column;
use crate::exit::{Diagnose, Exit};
use stats::CountPair;

pub use report::write_reports;

/// Evidently's default: a reference larger than this switches from hypothesis tests to distances.
pub const SMALL_REFERENCE_ROWS: usize = 1000;
/// Evidently's dataset-drift rule: drifted when at least this share of columns drifted.
pub const DATASET_DRIFT_SHARE: f64 = 0.5;
/// The upstream's retraining rule: retrain when the drift share is strictly over this.
pub const DRIFT_SHARE_THRESHOLD: f64 = 0.30;

/// A drift test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Two-sample Kolmogorov–Smirnov p-value (numeric columns); drift when p <= threshold.
    Ks,
    /// Chi-squared p-value on category frequencies; drift when p < threshold.
    ChiSquare,
    /// Two-proportion Z-test p-value; drift when p < threshold.
    ZTest,
    /// Wasserstein distance divided by the reference's std (numeric); drift when >= threshold.
    Wasserstein,
    /// Jensen–Shannon distance; drift when >= threshold.
    JensenShannon,
    /// Population Stability Index; drift when >= threshold.
    Psi,
    /// Kullback–Leibler divergence; drift when >= threshold.
    KlDiv,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Ks,
        Method::ChiSquare,
        Method::ZTest,
        Method::Wasserstein,
        Method::JensenShannon,
        Method::Psi,
        Method::KlDiv,
    ];

    /// The name used on the command line and in `drift.json`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::ChiSquare => "chi-square",
            Method::ZTest => "z-test",
            Method::Wasserstein => "wasserstein",
            Method::JensenShannon => "jensen-shannon",
            Method::Psi => "psi",
            Method::KlDiv => "kl-div",
        }
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Method::Ks => "K-S p-value",
            Method::ChiSquare => "chi-square p-value",
            Method::ZTest => "Z-test p-value",
            Method::Wasserstein => "Wasserstein distance (normed)",
            Method::JensenShannon => "Jensen-Shannon distance",
            Method::Psi => "PSI",
            Method::KlDiv => "Kullback-Leibler divergence",
        }
    }

    /// Whether the score is a p-value (small means drift) rather than a distance.
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::ChiSquare | Method::ZTest)
    }

    /// Evidently's default threshold.
    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    /// Whether the test only applies to numeric columns.
    pub fn numeric_only(self) -> bool {
        matches!(self, Method::Ks | Method::Wasserstein)
    }

    /// The drift rule, exactly as Evidently applies it (KS uses `<=`, the other p-values `<`).
    fn drifted(self, score: f64, threshold: f64) -> bool {
        match self {
            Method::Ks => score <= threshold,
            Method::ChiSquare | Method::ZTest => score < threshold,
            _ => score >= threshold,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s || m.name().replace('-', "_") == s)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown method `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// How missing values (`?`) of categorical columns are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// `?` is a category of its own, as pandas reads the file and as the upstream compared it:
    /// a change in how often a value is missing is drift.
    #[default]
    Category,
    /// Missing values are dropped before testing (Evidently's treatment of NaN).
    Drop,
}

/// Whether a column is compared as numbers or as categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Numerical,
    Categorical,
}

/// What to compare and how to decide.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    /// Schema indices of the columns to test, in report order.
    pub columns: Vec<usize>,
    /// One test for every column instead of the automatic choice.
    pub method: Option<Method>,
    /// Per-column tests (win over `method`).
    pub column_methods: BTreeMap<usize, Method>,
    /// One threshold for every column instead of each test's default.
    pub threshold: Option<f64>,
    /// Per-column thresholds (win over `threshold`).
    pub column_thresholds: BTreeMap<usize, f64>,
    pub missing: MissingPolicy,
    /// Dataset drift when the drifted share is at least this (Evidently: 0.5).
    pub dataset_drift_share: f64,
    /// Retrain when the drifted share is strictly greater than this (upstream: 0.30).
    pub drift_share_threshold: f64,
    /// Retrain whatever the drift (passed through by the pipeline).
    pub force_retrain: bool,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            columns: default_columns(),
            method: None,
            column_methods: BTreeMap::new(),
            threshold: None,
            column_thresholds: BTreeMap::new(),
            missing: MissingPolicy::Category,
            dataset_drift_share: DATASET_DRIFT_SHARE,
            drift_share_threshold: DRIFT_SHARE_THRESHOLD,
            force_retrain: false,
        }
    }
}

/// The upstream's 44 columns: every column except the identifiers, the target and `diag_1..3`.
pub fn default_columns() -> Vec<usize> {
    (0..COLUMNS.len())
        .filter(|&c| {
            COLUMNS[c].kind != Kind::Identifier
                && c != col::READMITTED
                && !(col::DIAG_1..=col::DIAG_3).contains(&c)
        })
        .collect()
}

/// Which side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Reference,
    Current,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Reference => "reference",
            Side::Current => "current",
        })
    }
}

/// Errors of drift detection.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("column `{column}` has no values in the {side} data{}",
        if *all_missing { " (every value is missing)" } else { " (no rows)" })]
    EmptyColumn {
        column: String,
        side: Side,
        all_missing: bool,
    },
    #[error("column `{column}` is absent from the {side} file")]
    ColumnAbsent { column: String, side: Side },
    #[error(
        "test `{method}` cannot be applied to column `{column}`: it needs numbers and `{column}` is categorical"
    )]
    MethodNotApplicable { column: String, method: Method },
    #[error("unknown column `{name}`")]
    UnknownColumn { name: String },
    #[error("no columns to compare")]
    NoColumns,
    #[error("invalid {what} {value}: expected a number {range}")]
    InvalidThreshold {
        what: String,
        value: f64,
        range: &'static str,
    },
    #[error("test `{method}` on column `{column}` produced no number (NaN)")]
    NotANumber { column: String, method: Method },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Diagnose for DriftError {
    fn exit(&self) -> Exit {
        match self {
            DriftError::EmptyColumn { .. } | DriftError::ColumnAbsent { .. } => Exit::InvalidInput,
            DriftError::MethodNotApplicable { .. }
            | DriftError::UnknownColumn { .. }
            | DriftError::NoColumns
            | DriftError::InvalidThreshold { .. } => Exit::Usage,
            DriftError::NotANumber { .. } | DriftError::Write { .. } => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            DriftError::EmptyColumn { column, .. } => format!(
                "a column without values cannot be tested: leave it out with `--exclude {column}`, \
                 or count missing values as a category with `--missing category`"
            ),
            DriftError::ColumnAbsent { column, .. } => {
                format!("both files need the column, or leave it out with `--exclude {column}`")
            }
            DriftError::MethodNotApplicable { column, .. } => format!(
                "use chi-square, z-test, jensen-shannon, psi or kl-div for `{column}` \
                 (`--column-method {column}=jensen-shannon`)"
            ),
            DriftError::UnknownColumn { .. } => {
                "column names are those of the UCI diabetic_data.csv header".into()
            }
            DriftError::NoColumns => "do not exclude every column".into(),
            DriftError::InvalidThreshold { .. } => {
                "see `health-predict drift --help` for the threshold flags".into()
            }
            DriftError::NotANumber { .. } => {
                "this is a bug: please report it with both files' column summaries".into()
            }
            DriftError::Write { .. } => "check that the --report directory is writable".into(),
        })
    }
}

/// One side's summary of a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Summary {
    Numeric {
        count: usize,
        missing: usize,
        unique: usize,
        #[serde(deserialize_with = "f64_or_nan")]
        mean: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        std: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        min: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        p25: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        median: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        p75: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        max: f64,
    },
    Categorical {
        count: usize,
        missing: usize,
        unique: usize,
        /// The most frequent values with their counts, most frequent first (at most five).
        top: Vec<(String, usize)>,
    },
}

/// Shares per bin or category of both sides, for charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Why a test was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Evidently's default rule.
    Auto,
    /// `--method` for every column.
    Global,
    /// `--column-method` for this column.
    Column,
}

/// The result for one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnResult {
    pub column: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub test: Method,
    #[serde(deserialize_with = "known_label")]
    pub test_label: StaticStr,
    /// `p_value` or `distance`.
    #[serde(deserialize_with = "known_label")]
    pub score_kind: StaticStr,
    /// The p-value or the distance compared with the threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub score: f64,
    /// The test statistic behind a p-value (KS D, chi-squared, z); the distance itself otherwise.
    #[serde(deserialize_with = "f64_or_nan")]
    pub statistic: f64,
    /// `score` again, under the name of what it is: exactly one of these two is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    pub choice: Choice,
    /// Which rule chose the test, in words.
    pub why: String,
    /// Values compared on each side (after missing values were handled) and distinct values in
    /// both together.
    pub reference_values: usize,
    pub current_values: usize,
    pub distinct_values: usize,
    pub reference: Summary,
    pub current: Summary,
    pub distribution: Distribution,
}

/// The decision over all columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub columns: usize,
    pub drifted_columns: usize,
    pub drift_share: f64,
    /// Evidently's dataset drift: `drift_share >= dataset_drift_share`.
    pub dataset_drift: bool,
    pub dataset_drift_share: f64,
    /// `drift_share > drift_share_threshold` (strict).
    pub drift_over_threshold: bool,
    pub drift_share_threshold: f64,
    pub force_retrain: bool,
    /// Retrain: drift over the threshold, or forced.
    pub retrain: bool,
    pub reason: String,
}

/// serde_json writes NaN and infinities as `null`; a reader gets NaN back instead of an error.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A `&'static str` under another name: serde's derive treats a literal `&'static str` field as
/// borrowed from the input (serde-rs/serde#2665), which no file-reading caller can provide.
pub type StaticStr = &'static str;

/// Reads `test_label` / `score_kind` back into the program's own static strings; anything else
/// is not a report this program wrote.
fn known_label<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    Method::ALL
        .iter()
        .map(|m| m.label())
        .chain(["p_value", "distance"])
        .find(|l| *l == s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown test label or score kind `{s}`")))
}

/// Everything `drift.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Not read back: a report read from a file says `""` (the writer's version is in the file).
    #[serde(skip_deserializing)]
    pub tool: StaticStr,
    #[serde(skip_deserializing)]
    pub version: StaticStr,
    pub reference_rows: usize,
    pub current_rows: usize,
    pub missing: MissingPolicy,
    pub decision: Decision,
    pub columns: Vec<ColumnResult>,
}

impl DriftReport {
    /// Columns ordered most drifted first: drifted before not, then by how far the score is past
    /// (or short of) its threshold.
    pub fn most_drifted_first(&self) -> Vec<&ColumnResult> {
        let mut v: Vec<&ColumnResult> = self.columns.iter().collect();
        v.sort_by(|a, b| {
            b.drifted
                .cmp(&a.drifted)
                .then(severity(b).total_cmp(&severity(a)))
                .then(a.column.cmp(&b.column))
        });
        v
    }
}

/// How far past its threshold a score is, on a scale comparable across tests.
pub fn severity(c: &ColumnResult) -> f64 {
    if c.test.is_p_value() {
        let s = c.score.max(1e-300);
        (c.threshold / s).ln()
    } else {
        (c.score.max(1e-300) / c.threshold).ln()
    }
}

/// Validates a threshold value for `what`.
pub fn check_threshold(what: &str, value: f64) -> Result<f64, DriftError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(DriftError::InvalidThreshold {
            what: what.into(),
            value,
            range: ">= 0",
        })
    }
}

/// Validates a column-share threshold.
pub fn check_share(what: &str, value: f64) -> Result<f64, DriftError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(DriftError::InvalidThreshold {
            what: what.into(),
            value,
            range: "between 0 and 1",
        })
    }
}

/// The schema index of a column name, as a drift error when unknown.
pub fn column_index(name: &str) -> Result<usize, DriftError> {
    crate::data::schema::index_of(name).ok_or_else(|| DriftError::UnknownColumn {
        name: name.to_owned(),
    })
}

/// Compares every configured column of `current` with `reference` and decides.
pub fn detect(
    reference: &Table,
    current: &Table,
    config: &DriftConfig,
) -> Result<DriftReport, DriftError> {
    if config.columns.is_empty() {
        return Err(DriftError::NoColumns);
    }
    let columns = config
        .columns
        .iter()
        .map(|&c| column_drift(reference, current, c, config))
        .collect::<Result<Vec<_>, _>>()?;
    let drifted = columns.iter().filter(|c| c.drifted).count();
    let share = drifted as f64 / columns.len() as f64;
    let over = share > config.drift_share_threshold;
    let retrain = over || config.force_retrain;
    let reason = match (over, config.force_retrain) {
        (true, _) => format!(
            "{drifted} of {} columns drifted (share {share:.3} > {}): retrain",
            columns.len(),
            config.drift_share_threshold
        ),
        (false, true) => format!(
            "{drifted} of {} columns drifted (share {share:.3} <= {}), but retraining is forced",
            columns.len(),
            config.drift_share_threshold
        ),
        (false, false) => format!(
            "{drifted} of {} columns drifted (share {share:.3} <= {}): no retraining needed",
            columns.len(),
            config.drift_share_threshold
        ),
    };
    Ok(DriftReport {
        tool: "health-predict",
        version: crate::VERSION,
        reference_rows: reference.len(),
        current_rows: current.len(),
        missing: config.missing,
        decision: Decision {
            columns: columns.len(),
            drifted_columns: drifted,
            drift_share: share,
            dataset_drift: share >= config.dataset_drift_share,
            dataset_drift_share: config.dataset_drift_share,
            drift_over_threshold: over,
            drift_share_threshold: config.drift_share_threshold,
            force_retrain: config.force_retrain,
            retrain,
            reason,
        },
        columns,
    })
}

/// One side of a column, prepared for the tests.
#[derive(Debug)]
struct Prepared {
    /// Sorted numeric values (numeric columns only).
    values: Vec<f64>,
    missing: usize,
}

/// Category keys shared by both sides, in canonical order (numeric order for integer columns,
/// byte order for strings, as Python's `sorted` orders them), with each side's counts.
#[derive(Debug)]
struct Keys {
    labels: Vec<String>,
    counts: CountPair,
}

fn column_drift(
    reference: &Table,
    current: &Table,
    c: usize,
    config: &DriftConfig,
) -> Result<ColumnResult, DriftError> {
    let name = COLUMNS[c].name;
    for (t, side) in [(reference, Side::Reference), (current, Side::Current)] {
        if !t.is_present(c) {
            return Err(DriftError::ColumnAbsent {
                column: name.into(),
                side,
            });
        }
    }
    let empty = |side: Side, all_missing: bool| DriftError::EmptyColumn {
        column: name.into(),
        side,
        all_missing,
    };
    let (column_type, keys, numeric) = match (reference.column(c), current.column(c)) {
        (Column::Int(r), Column::Int(k)) => {
            // Evidently's drift metrics type feature columns by pandas dtype alone: integer
            // columns are numerical whatever their number of distinct values (its "<= 5 distinct
            // values is categorical" rule applies to target and prediction columns only).
            let r = prepare_ints(r);
            let k = prepare_ints(k);
            let keys = int_keys(&r.values, &k.values);
            (ColumnType::Numerical, keys, Some((r, k)))
        }
        _ => {
            let keys = category_keys(reference, current, c, config.missing);
            (ColumnType::Categorical, keys, None)
        }
    };
    let (n_ref, n_cur) = (
        keys.counts.reference_total() as usize,
        keys.counts.current_total() as usize,
    );
    if n_ref == 0 {
        return Err(empty(Side::Reference, !reference.is_empty()));
    }
    if n_cur == 0 {
        return Err(empty(Side::Current, !current.is_empty()));
    }
    let n_values = keys.labels.len();

    let (test, choice, why) = choose(c, column_type, n_ref, n_values, config);
    if test.numeric_only() && numeric.is_none() {
        return Err(DriftError::MethodNotApplicable {
            column: name.into(),
            method: test,
        });
    }
    let threshold = config
        .column_thresholds
        .get(&c)
        .copied()
        .or(config.threshold)
        .unwrap_or_else(|| test.default_threshold());

    let numeric_values = numeric
        .as_ref()
        .map(|(r, k)| (&r.values[..], &k.values[..]));
    let (score, statistic) = match test {
        Method::Ks => {
            let (r, k) = numeric_values.unwrap_or_default();
            let res = stats::ks_2samp(r, k);
            (res.p_value, res.statistic)
        }
        Method::Wasserstein => {
            let (r, k) = numeric_values.unwrap_or_default();
            let d = stats::wasserstein_norm(r, k);
            (d, d)
        }
        Method::ChiSquare => {
            let res = stats::chi_square(&keys.counts);
            (res.p_value, res.statistic)
        }
        Method::ZTest => {
            let res = stats::z_test(&keys.counts, 0);
            (res.p_value, res.statistic)
        }
        Method::JensenShannon | Method::Psi | Method::KlDiv => {
            let mut b = binned(numeric_values, &keys);
            let d = if test == Method::JensenShannon {
                stats::jensen_shannon(&b.reference, &b.current)
            } else {
                stats::fill_zeroes(&mut b.reference);
                stats::fill_zeroes(&mut b.current);
                if test == Method::Psi {
                    stats::psi(&b.reference, &b.current)
                } else {
                    stats::kl_divergence(&b.reference, &b.current)
                }
            };
            (d, d)
        }
    };
    if score.is_nan() {
        return Err(DriftError::NotANumber {
            column: name.into(),
            method: test,
        });
    }
    let (ref_summary, cur_summary) = match &numeric {
        Some((r, k)) => (numeric_summary(r), numeric_summary(k)),
        None => (category_summary(reference, c), category_summary(current, c)),
    };
    Ok(ColumnResult {
        column: name.into(),
        column_type,
        test,
        test_label: test.label(),
        score_kind: if test.is_p_value() {
            "p_value"
        } else {
            "distance"
        },
        score,
        statistic,
        p_value: test.is_p_value().then_some(score),
        distance: (!test.is_p_value()).then_some(score),
        threshold,
        drifted: test.drifted(score, threshold),
        choice,
        why,
        reference_values: n_ref,
        current_values: n_cur,
        distinct_values: n_values,
        reference: ref_summary,
        current: cur_summary,
        distribution: distribution(numeric_values, &keys),
    })
}

/// The test for a column: an override, or Evidently 0.4.22's default rule.
fn choose(
    c: usize,
    ty: ColumnType,
    n_ref: usize,
    n_values: usize,
    config: &DriftConfig,
) -> (Method, Choice, String) {
    if let Some(&m) = config.column_methods.get(&c) {
        return (m, Choice::Column, format!("--column-method chose {m}"));
    }
    if let Some(m) = config.method {
        return (m, Choice::Global, format!("--method chose {m}"));
    }
    let kind = match ty {
        ColumnType::Numerical => "numeric",
        ColumnType::Categorical => "categorical",
    };
    let size = if n_ref <= SMALL_REFERENCE_ROWS {
        format!("reference has {n_ref} values (<= {SMALL_REFERENCE_ROWS})")
    } else {
        format!("reference has {n_ref} values (> {SMALL_REFERENCE_ROWS})")
    };
    let m = if n_ref <= SMALL_REFERENCE_ROWS {
        match (ty, n_values) {
            (ColumnType::Numerical, n) if n > 5 => Method::Ks,
            (_, n) if n > 2 => Method::ChiSquare,
            _ => Method::ZTest,
        }
    } else {
        match (ty, n_values) {
            (ColumnType::Numerical, n) if n > 5 => Method::Wasserstein,
            _ => Method::JensenShannon,
        }
    };
    (
        m,
        Choice::Auto,
        format!("{size}, {kind} with {n_values} distinct values in both: {m}"),
    )
}

/// The non-missing values of an integer column, sorted. Counts and stays of a hospital file span
/// a small range, so a counting sort does it in two passes; wide ranges fall back to sorting.
fn prepare_ints(xs: &[Option<i64>]) -> Prepared {
    let present = xs.iter().flatten();
    let (lo, hi) = present
        .clone()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let n = present.clone().count();
    let mut values: Vec<f64> = Vec::with_capacity(n);
    let span = hi.checked_sub(lo).and_then(|s| usize::try_from(s).ok());
    match span {
        Some(span) if n > 0 && span < 4 * n + 64 => {
            let mut counts = vec![0u32; span + 1];
            for &v in present {
                counts[(v - lo) as usize] += 1;
            }
            for (i, &k) in counts.iter().enumerate() {
                let x = (lo + i as i64) as f64;
                values.extend(std::iter::repeat_n(x, k as usize));
            }
        }
        _ => {
            let mut ints: Vec<i64> = present.copied().collect();
            ints.sort_unstable();
            values.extend(ints.into_iter().map(|v| v as f64));
        }
    }
    Prepared {
        missing: xs.len() - n,
        values,
    }
}

use stats::distinct_sorted;

/// Value counts of two sorted numeric samples over their union of values.
fn int_keys(r: &[f64], k: &[f64]) -> Keys {
    let (values, counts) = stats::value_counts(r, k);
    Keys {
        labels: values.iter().map(|x| format!("{x}")).collect(),
        counts,
    }
}

/// Category counts of both sides by value; `?` is a category under [`MissingPolicy::Category`].
fn category_keys(reference: &Table, current: &Table, c: usize, missing: MissingPolicy) -> Keys {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut labels: Vec<&str> = Vec::new();
    let mut sides: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for (s, t) in [reference, current].into_iter().enumerate() {
        let cats = t.cats(c);
        let (counts, n_missing) = cats.counts();
        let mut seen: Vec<(&str, u64)> = cats
            .dictionary()
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.as_str(), n))
            .collect();
        if n_missing > 0 && missing == MissingPolicy::Category {
            seen.push(("?", n_missing));
        }
        for (key, n) in seen {
            let at = *index.entry(key).or_insert_with(|| {
                labels.push(key);
                labels.len() - 1
            });
            for side in sides.iter_mut() {
                side.resize(labels.len(), 0);
            }
            sides[s][at] += n;
        }
    }
    // Canonical order: byte order, as Python sorts strings.
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[a].cmp(labels[b]));
    let [r, k] = sides;
    Keys {
        labels: order.iter().map(|&i| labels[i].to_owned()).collect(),
        counts: CountPair {
            reference: order.iter().map(|&i| r[i]).collect(),
            current: order.iter().map(|&i| k[i]).collect(),
        },
    }
}

/// Evidently's `get_binned_data`: Sturges histogram for numeric columns with more than 20
/// distinct reference values, per-value shares otherwise.
fn binned(numeric: Option<(&[f64], &[f64])>, keys: &Keys) -> stats::Binned {
    match numeric {
        Some((r, k)) => stats::numeric_shares(r, k),
        None => stats::category_shares(&keys.counts),
    }
}

const MAX_CHART_BARS: usize = 16;

fn distribution(numeric: Option<(&[f64], &[f64])>, keys: &Keys) -> Distribution {
    if let Some((r, k)) = numeric
        && keys.labels.len() > MAX_CHART_BARS
    {
        let b = stats::histogram_shares(r, k);
        let labels = b
            .edges
            .windows(2)
            .map(|w| format!("{}–{}", short(w[0]), short(w[1])))
            .collect();
        return Distribution {
            labels,
            reference: b.reference,
            current: b.current,
        };
    }
    let shares = stats::category_shares(&keys.counts);
    if keys.labels.len() <= MAX_CHART_BARS {
        return Distribution {
            labels: keys.labels.clone(),
            reference: shares.reference,
            current: shares.current,
        };
    }
    // Many categories: the most frequent overall, then everything else as one bar.
    let mut order: Vec<usize> = (0..keys.labels.len()).collect();
    order.sort_by(|&a, &b| {
        let wa = shares.reference[a] + shares.current[a];
        let wb = shares.reference[b] + shares.current[b];
        wb.total_cmp(&wa).then(a.cmp(&b))
    });
    let keep = MAX_CHART_BARS - 1;
    let mut d = Distribution {
        labels: Vec::new(),
        reference: Vec::new(),
        current: Vec::new(),
    };
    for &i in &order[..keep] {
        d.labels.push(keys.labels[i].clone());
        d.reference.push(shares.reference[i]);
        d.current.push(shares.current[i]);
    }
    d.labels
        .push(format!("other ({})", keys.labels.len() - keep));
    d.reference
        .push(order[keep..].iter().map(|&i| shares.reference[i]).sum());
    d.current
        .push(order[keep..].iter().map(|&i| shares.current[i]).sum());
    d
}

fn short(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn numeric_summary(p: &Prepared) -> Summary {
    let v = &p.values;
    if v.is_empty() {
        return Summary::Numeric {
            count: 0,
            missing: p.missing,
            unique: 0,
            mean: f64::NAN,
            std: f64::NAN,
            min: f64::NAN,
            p25: f64::NAN,
            median: f64::NAN,
            p75: f64::NAN,
            max: f64::NAN,
        };
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    Summary::Numeric {
        count: v.len(),
        missing: p.missing,
        unique: distinct_sorted(v),
        mean,
        std: stats::population_std(v),
        min: v[0],
        p25: quantile(v, 0.25),
        median: quantile(v, 0.5),
        p75: quantile(v, 0.75),
        max: v[v.len() - 1],
    }
}

/// Linear-interpolation quantile of a sorted sample (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn category_summary(t: &Table, c: usize) -> Summary {
    let cats = t.cats(c);
    let (counts, missing) = cats.counts();
    let mut top: Vec<(String, usize)> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| (cats.dictionary()[i].clone(), n as usize))
        .collect();
    let unique = top.len();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    Summary::Categorical {
        count: t.len() - missing as usize,
        missing: missing as usize,
        unique,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_values_are_sorted_whatever_their_range() {
        let narrow = prepare_ints(&[Some(3), None, Some(1), Some(3), Some(-2)]);
        assert_eq!(narrow.values, vec![-2.0, 1.0, 3.0, 3.0]);
        assert_eq!(narrow.missing, 1);
        let wide = prepare_ints(&[Some(1_000_000_000), Some(-5), Some(7)]);
        assert_eq!(wide.values, vec![-5.0, 7.0, 1e9]);
        let none = prepare_ints(&[None, None]);
        assert!(none.values.is_empty() && none.missing == 2);
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        assert!("anderson".parse::<Method>().is_err());
    }
}
