//! The one preprocessing definition shared by training and serving. It is fitted on the training
//! split, stored inside the model file, and applied unchanged to every row scored later, so the
//! features a model sees at serving time can never drift from the ones it was trained on.
//!
//! Rules (each recorded in the fitted [`FeatureSpec`]):
//! - identifiers (`encounter_id`, `patient_nbr`) and the target are never features;
//! - a column whose measured missing rate on the training split exceeds
//!   [`DROP_MISSING_ABOVE`] is dropped (on the UCI file only `weight`, ~97% missing);
//! - `age` becomes its bracket's ordinal (0..9);
//! - `diag_1..3` are grouped into the clinical ICD-9 categories of Strack et al. (2014);
//! - every other categorical (including the id-coded `admission_type_id`,
//!   `discharge_disposition_id`, `admission_source_id`) becomes the smoothed log-odds of the
//!   target for its value, relative to the training prior. Missing is a level of its own; values
//!   seen fewer than [`MIN_LEVEL_COUNT`] times, and values never seen in training, map to one
//!   explicit `unknown` level;
//! - counts stay numeric.
//!
//! This module knows nothing about learners; it turns rows into `f64` vectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::schema::{AGE_BRACKETS, COLUMNS, Kind, Target, col};
use crate::data::{Row, Table, Value};

/// Version of the preprocessing rules; part of the schema hash.
pub const FEATURES_VERSION: u32 = 1;
/// Columns missing in more than this share of training rows are dropped.
pub const DROP_MISSING_ABOVE: f64 = 0.8;
/// Categorical levels seen fewer times than this in training are pooled into `unknown`.
pub const MIN_LEVEL_COUNT: u64 = 30;
/// Pseudo-count pulling each level's rate toward the prior (m-estimate smoothing).
pub const SMOOTHING: f64 = 20.0;

/// Integer-typed columns whose values are codes, not quantities.
const ID_CODED: [usize; 3] = [
    col::ADMISSION_TYPE_ID,
    col::DISCHARGE_DISPOSITION_ID,
    col::ADMISSION_SOURCE_ID,
];

/// How a raw value becomes a category before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// The raw value is the level.
    Identity,
    /// ICD-9 codes grouped into clinical categories.
    Icd9,
}

/// How one feature is computed from its column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Encoding {
    /// The integer as a number; missing stays missing (NaN).
    Numeric,
    /// The age bracket's position in [`AGE_BRACKETS`].
    AgeOrdinal,
    /// Smoothed target log-odds per level.
    Category {
        grouping: Grouping,
        levels: BTreeMap<String, f64>,
        missing: f64,
        unknown: f64,
    },
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    /// The schema index of the source column.
    pub column: usize,
    pub encoding: Encoding,
}

/// A column that is not a feature, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub column: String,
    pub reason: String,
}

/// The fitted preprocessing definition stored in every model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub version: u32,
    pub target: Target,
    pub drop_missing_above: f64,
    pub min_level_count: u64,
    pub smoothing: f64,
    /// Missing rate of every column that had missing values in the training split.
    pub missing_rates: BTreeMap<String, f64>,
    /// The training prior P(positive).
    pub prior: f64,
    pub dropped: Vec<Dropped>,
    pub features: Vec<Feature>,
}

/// The ICD-9 group of a diagnosis code (Strack et al. 2014, table 2).
pub fn icd9_group(code: &str) -> &'static str {
    let code = code.trim();
    if code.starts_with(['V', 'E', 'v', 'e']) {
        return "other";
    }
    let Ok(x) = code.parse::<f64>() else {
        return "other";
    };
    let n = x.floor() as i64;
    match n {
        250 => "diabetes",
        390..=459 | 785 => "circulatory",
        460..=519 | 786 => "respiratory",
        520..=579 | 787 => "digestive",
        800..=999 => "injury",
        710..=739 => "musculoskeletal",
        580..=629 | 788 => "genitourinary",
        140..=239 => "neoplasms",
        _ => "other",
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

/// The level key of a raw value, or `None` when missing.
fn level_of(v: Value<'_>, grouping: Grouping) -> Option<String> {
    let raw = match v {
        Value::Missing => return None,
        Value::Int(i) => i.to_string(),
        Value::Str("?") => return None,
        Value::Str(s) => s.to_owned(),
    };
    Some(match grouping {
        Grouping::Identity => raw,
        Grouping::Icd9 => icd9_group(&raw).to_owned(),
    })
}

fn numeric(v: Value<'_>) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
        Value::Missing => f64::NAN,
    }
}

impl FeatureSpec {
    /// Fits the definition on training rows (`rows` index into `table`; `labels` align with
    /// `rows`).
    pub fn fit(table: &Table, rows: &[usize], labels: &[bool], target: Target) -> FeatureSpec {
        let n = rows.len().max(1) as f64;
        let prior = labels.iter().filter(|&&y| y).count() as f64 / n;
        let mut missing_rates = BTreeMap::new();
        let mut dropped = Vec::new();
        let mut features = Vec::new();
        for (c, spec) in COLUMNS.iter().enumerate() {
            if c == col::READMITTED {
                continue;
            }
            if spec.kind == Kind::Identifier {
                dropped.push(Dropped {
                    column: spec.name.to_owned(),
                    reason: "identifier".to_owned(),
                });
                continue;
            }
            let missing = rows
                .iter()
                .filter(|&&r| matches!(table.get(r, c), Value::Missing))
                .count() as f64
                / n;
            if missing > 0.0 {
                missing_rates.insert(spec.name.to_owned(), round6(missing));
            }
            if missing > DROP_MISSING_ABOVE {
                dropped.push(Dropped {
                    column: spec.name.to_owned(),
                    reason: format!(
                        "missing in {:.1}% of training rows (rule: drop above {:.0}%)",
                        missing * 100.0,
                        DROP_MISSING_ABOVE * 100.0
                    ),
                });
                continue;
            }
            let encoding = if c == col::AGE {
                Encoding::AgeOrdinal
            } else if spec.kind == Kind::Integer && !ID_CODED.contains(&c) {
                Encoding::Numeric
            } else {
                let grouping = if matches!(c, col::DIAG_1 | col::DIAG_2 | col::DIAG_3) {
                    Grouping::Icd9
                } else {
                    Grouping::Identity
                };
                fit_category(table, rows, labels, c, grouping, prior)
            };
            features.push(Feature {
                name: spec.name.to_owned(),
                column: c,
                encoding,
            });
        }
        FeatureSpec {
            version: FEATURES_VERSION,
            target,
            drop_missing_above: DROP_MISSING_ABOVE,
            min_level_count: MIN_LEVEL_COUNT,
            smoothing: SMOOTHING,
            missing_rates,
            prior,
            dropped,
            features,
        }
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    /// Hash of what makes two models comparable: the input contract (the data schema's columns
    /// and kinds), the target and the preprocessing rules. Not the fitted result of those rules
    /// (which columns a training set's missing rates dropped, which levels it saw): each model
    /// scores a holdout through its own stored preprocessing, so a different fitted selection is
    /// a difference between models, not a misalignment.
    pub fn schema_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "v{}|{:?}|{}|{}|{}",
            self.version,
            self.target,
            self.drop_missing_above,
            self.min_level_count,
            self.smoothing
        ));
        for c in crate::data::schema::COLUMNS.iter() {
            h.update(format!("|{}:{:?}", c.name, c.kind));
        }
        hex::encode(h.finalize())
    }

    /// Encodes one row into `out` (cleared first), one value per feature.
    pub fn encode_into<R: Row + ?Sized>(&self, row: &R, out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            self.features
                .iter()
                .map(|f| encode_value(f, row.value(f.column))),
        );
    }

    /// Encodes one row.
    pub fn encode<R: Row + ?Sized>(&self, row: &R) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.len());
        self.encode_into(row, &mut out);
        out
    }

    /// Encodes the given rows of a table as a column-major matrix (`features × rows`).
    pub fn encode_columns(&self, table: &Table, rows: &[usize]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.len() * rows.len());
        for f in &self.features {
            out.extend(
                rows.iter()
                    .map(|&r| encode_value(f, table.get(r, f.column))),
            );
        }
        out
    }

    /// A readable form of the raw value behind a feature, for explanations.
    pub fn describe<R: Row + ?Sized>(&self, feature: usize, row: &R) -> String {
        let f = &self.features[feature];
        let v = row.value(f.column);
        let raw = match v {
            Value::Missing => return "missing".to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.to_owned(),
        };
        match &f.encoding {
            Encoding::Category {
                grouping: Grouping::Icd9,
                ..
            } => format!("{} ({raw})", icd9_group(&raw)),
            Encoding::Category { levels, .. } if !levels.contains_key(&raw) => {
                format!("{raw} (unknown)")
            }
            _ => raw,
        }
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn encode_value(f: &Feature, v: Value<'_>) -> f64 {
    match &f.encoding {
        Encoding::Numeric => numeric(v),
        Encoding::AgeOrdinal => match v {
            Value::Str(s) => AGE_BRACKETS
                .iter()
                .position(|b| *b == s)
                .map_or(f64::NAN, |p| p as f64),
            Value::Int(i) if (0..AGE_BRACKETS.len() as i64).contains(&i) => i as f64,
            _ => f64::NAN,
        },
        Encoding::Category {
            grouping,
            levels,
            missing,
            unknown,
        } => match level_of(v, *grouping) {
            None => *missing,
            Some(level) => levels.get(&level).copied().unwrap_or(*unknown),
        },
    }
}

fn fit_category(
    table: &Table,
    rows: &[usize],
    labels: &[bool],
    c: usize,
    grouping: Grouping,
    prior: f64,
) -> Encoding {
    // (rows, positives) per level; `None` is missing.
    let mut counts: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for (&r, &y) in rows.iter().zip(labels) {
        let e = counts
            .entry(level_of(table.get(r, c), grouping))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(y);
    }
    let base = logit(prior);
    let value = |n: u64, pos: u64| {
        let rate = (pos as f64 + SMOOTHING * prior) / (n as f64 + SMOOTHING);
        round9(logit(rate) - base)
    };
    let mut levels = BTreeMap::new();
    let (mut rare_n, mut rare_pos) = (0, 0);
    let mut missing = 0.0;
    for (level, (n, pos)) in counts {
        match level {
            None => missing = value(n, pos),
            Some(l) if n >= MIN_LEVEL_COUNT => {
                levels.insert(l, value(n, pos));
            }
            Some(_) => {
                rare_n += n;
                rare_pos += pos;
            }
        }
    }
    Encoding::Category {
        grouping,
        levels,
        missing,
        unknown: value(rare_n, rare_pos),
    }
}

/// Rounded so the model file's JSON round-trips the exact value the model was trained on.
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::schema::WIDTH;

    #[test]
    fn icd9_groups_follow_the_paper() {
        for (code, group) in [
            ("428", "circulatory"),
            ("785", "circulatory"),
            ("459", "circulatory"),
            ("486", "respiratory"),
            ("786", "respiratory"),
            ("562", "digestive"),
            ("787", "digestive"),
            ("250.83", "diabetes"),
            ("250", "diabetes"),
            ("996", "injury"),
            ("800", "injury"),
            ("715", "musculoskeletal"),
            ("599", "genitourinary"),
            ("788", "genitourinary"),
            ("174", "neoplasms"),
            ("239", "neoplasms"),
            ("V57", "other"),
            ("E909", "other"),
            ("276", "other"),
            ("junk", "other"),
        ] {
            assert_eq!(icd9_group(code), group, "{code}");
        }
    }

    fn table(rows: &[(&str, &str, Option<&str>)]) -> Table {
        let mut t = Table::new();
        for (i, (age, spec, diag)) in rows.iter().enumerate() {
            let mut v: Vec<Value<'_>> = COLUMNS
                .iter()
                .map(|c| match c.kind {
                    Kind::Categorical => c.allowed.map_or(Value::Str("x"), |a| Value::Str(a[0])),
                    _ => Value::Int(1),
                })
                .collect();
            v[col::ENCOUNTER_ID] = Value::Int(i as i64);
            v[col::AGE] = Value::Str(age);
            v[col::MEDICAL_SPECIALTY] = Value::Str(spec);
            v[col::WEIGHT] = Value::Missing;
            v[col::DIAG_1] = diag.map_or(Value::Missing, Value::Str);
            v[col::READMITTED] = Value::Str(if i % 2 == 0 { "NO" } else { "<30" });
            assert_eq!(v.len(), WIDTH);
            t.push_row(&v);
        }
        t
    }

    #[test]
    fn fit_drops_measured_missing_and_maps_unknowns() {
        let mut rows = Vec::new();
        for i in 0..100 {
            let spec = if i < 60 { "Cardiology" } else { "Rare" };
            let spec = if i >= 95 { "Tiny" } else { spec };
            rows.push(("[70-80)", spec, if i % 3 == 0 { None } else { Some("428") }));
        }
        let t = table(&rows);
        let idx: Vec<usize> = (0..t.len()).collect();
        let labels: Vec<bool> = t
            .labels(Target::Any)
            .into_iter()
            .map(|y| y == Some(true))
            .collect();
        let s = FeatureSpec::fit(&t, &idx, &labels, Target::Any);
        assert!(
            s.dropped
                .iter()
                .any(|d| d.column == "weight" && d.reason.contains("100.0%"))
        );
        assert!(s.dropped.iter().any(|d| d.column == "patient_nbr"));
        assert_eq!(s.missing_rates["weight"], 1.0);
        assert!(!s.names().contains(&"weight".to_owned()));
        assert!(!s.names().contains(&"readmitted".to_owned()));
        let spec_i = s
            .names()
            .iter()
            .position(|n| n == "medical_specialty")
            .unwrap();
        let Encoding::Category {
            levels, unknown, ..
        } = &s.features[spec_i].encoding
        else {
            panic!("medical_specialty should be categorical");
        };
        assert!(levels.contains_key("Cardiology"));
        assert!(
            !levels.contains_key("Tiny"),
            "rare levels pool into unknown"
        );
        // A value never seen in training encodes as the explicit unknown level.
        let mut probe = table(&[("[70-80)", "Never-seen", Some("V57"))]);
        let x = s.encode(&probe.row(0));
        assert_eq!(x[spec_i], *unknown);
        let age_i = s.names().iter().position(|n| n == "age").unwrap();
        assert_eq!(x[age_i], 7.0);
        probe = table(&[("[70-80)", "Cardiology", Some("428"))]);
        let d = s.names().iter().position(|n| n == "diag_1").unwrap();
        assert_eq!(s.describe(d, &probe.row(0)), "circulatory (428)");
        assert_eq!(s.schema_hash(), s.clone().schema_hash());
        let cols = s.encode_columns(&t, &idx);
        assert_eq!(cols.len(), s.len() * t.len());
        assert_eq!(cols[age_i * t.len()], 7.0);
    }
}
