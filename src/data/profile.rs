//! A data profile: row count, class balance under both targets, missing rates per column, top
//! categories and numeric summaries. Pure computation over a [`Table`]; rendering lives in `cli`.

use serde::Serialize;

use super::schema::{COLUMNS, Kind, READMITTED, Target, col};
use super::table::{Column, Table};

/// How many categories to list per column.
pub const TOP: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub rows: usize,
    pub patients: Option<usize>,
    /// `None` when the file has no `readmitted` column.
    pub class_balance: Option<ClassBalance>,
    /// Every column present in the file, in schema order.
    pub columns: Vec<ColumnProfile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassBalance {
    /// Raw `readmitted` counts (`NO`, `>30`, `<30`).
    pub readmitted: Vec<Count>,
    /// Positive rate under the default target (`readmitted != NO`).
    pub any: Rate,
    /// Positive rate under `--target lt30` (`readmitted == <30`).
    pub lt30: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub positive: usize,
    pub negative: usize,
    pub positive_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub value: String,
    pub count: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub name: &'static str,
    pub kind: Kind,
    pub missing: usize,
    pub missing_rate: f64,
    pub distinct: usize,
    /// The most frequent values (categorical columns).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Count>,
    /// Numeric summary (integer columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numeric: Option<Numeric>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Numeric {
    pub mean: f64,
    pub std: f64,
    pub min: i64,
    pub p25: i64,
    pub median: i64,
    pub p75: i64,
    pub max: i64,
}

/// Profiles a table.
pub fn profile(t: &Table) -> Profile {
    let n = t.len();
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let columns = (0..COLUMNS.len())
        .filter(|&c| t.is_present(c))
        .map(|c| {
            let spec = &COLUMNS[c];
            match t.column(c) {
                Column::Int(xs) => {
                    let mut v: Vec<i64> = xs.iter().flatten().copied().collect();
                    v.sort_unstable();
                    let missing = n - v.len();
                    let mut distinct = v.clone();
                    distinct.dedup();
                    ColumnProfile {
                        name: spec.name,
                        kind: spec.kind,
                        missing,
                        missing_rate: share(missing),
                        distinct: distinct.len(),
                        top: Vec::new(),
                        numeric: numeric(&v),
                    }
                }
                Column::Cat(cats) => {
                    let (counts, missing) = cats.counts();
                    let mut order: Vec<usize> = (0..counts.len()).collect();
                    order.sort_by(|&a, &b| {
                        counts[b]
                            .cmp(&counts[a])
                            .then_with(|| cats.dictionary()[a].cmp(&cats.dictionary()[b]))
                    });
                    ColumnProfile {
                        name: spec.name,
                        kind: spec.kind,
                        missing: missing as usize,
                        missing_rate: share(missing as usize),
                        distinct: counts.iter().filter(|&&k| k > 0).count(),
                        top: order
                            .iter()
                            .take(TOP)
                            .filter(|&&i| counts[i] > 0)
                            .map(|&i| Count {
                                value: cats.dictionary()[i].clone(),
                                count: counts[i] as usize,
                                share: share(counts[i] as usize),
                            })
                            .collect(),
                        numeric: None,
                    }
                }
            }
        })
        .collect();
    let patients = t.is_present(col::PATIENT_NBR).then(|| {
        let mut ids: Vec<i64> = t.ints(col::PATIENT_NBR).iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    });
    let class_balance = t.is_present(col::READMITTED).then(|| {
        let cats = t.cats(col::READMITTED);
        let (counts, _) = cats.counts();
        let readmitted = READMITTED
            .iter()
            .map(|v| {
                let count = cats
                    .dictionary()
                    .iter()
                    .position(|d| d == v)
                    .map_or(0, |i| counts[i] as usize);
                Count {
                    value: (*v).to_owned(),
                    count,
                    share: share(count),
                }
            })
            .collect();
        let rate = |target: Target| {
            let labels = t.labels(target);
            let positive = labels.iter().filter(|l| **l == Some(true)).count();
            let negative = labels.iter().filter(|l| **l == Some(false)).count();
            Rate {
                positive,
                negative,
                positive_rate: if positive + negative == 0 {
                    0.0
                } else {
                    positive as f64 / (positive + negative) as f64
                },
            }
        };
        ClassBalance {
            readmitted,
            any: rate(Target::Any),
            lt30: rate(Target::Lt30),
        }
    });
    Profile {
        rows: n,
        patients,
        class_balance,
        columns,
    }
}

/// Summary of sorted values.
fn numeric(sorted: &[i64]) -> Option<Numeric> {
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let n = sorted.len() as f64;
    let mean = sorted.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = if sorted.len() > 1 {
        sorted
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0)
    } else {
        0.0
    };
    // Nearest-rank quantiles: always an observed value.
    let q = |p: f64| sorted[((p * n).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Numeric {
        mean,
        std: var.sqrt(),
        min,
        p25: q(0.25),
        median: q(0.5),
        p75: q(0.75),
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::tests::table;

    #[test]
    fn profile_counts_what_is_there() {
        let t = table(300);
        let p = profile(&t);
        assert_eq!(p.rows, 300);
        assert_eq!(p.columns.len(), 50);
        let cb = p.class_balance.unwrap();
        assert_eq!(cb.readmitted.iter().map(|c| c.count).sum::<usize>(), 300);
        assert_eq!(cb.any.positive, 200);
        assert_eq!(cb.lt30.positive, 100);
        let age = p.columns.iter().find(|c| c.name == "age").unwrap();
        assert!(age.top.len() <= TOP && age.top[0].count >= age.top[1].count);
        let nd = p
            .columns
            .iter()
            .find(|c| c.name == "number_diagnoses")
            .unwrap();
        let num = nd.numeric.as_ref().unwrap();
        assert!(num.min <= num.p25 && num.p25 <= num.median && num.median <= num.p75);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let n = numeric(&[1, 2, 3, 4]).unwrap();
        assert_eq!((n.min, n.p25, n.median, n.p75, n.max), (1, 1, 2, 3, 4));
        assert!((n.mean - 2.5).abs() < 1e-12);
        assert!(numeric(&[]).is_none());
    }
}
