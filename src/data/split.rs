//! Splitting an encounter file the way the upstream project simulated production: the first 20%
//! of file order is the initial data (train/validation/test, grouped by `patient_nbr` so no
//! patient's encounters sit in two splits), the rest is "future" data, and five 2,000-row batches
//! drawn from the future data simulate what arrives later: two without drift, two with covariate
//! drift and one with concept drift (labels flipped in `readmitted` itself, the column every
//! target is computed from).
//!
//! Everything is seeded and deterministic: one ChaCha stream per purpose, derived from the seed.
//! This module only reshapes tables; it writes files only in [`write()`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::schema::{AGE_BRACKETS, COLUMNS, Target, col};
use super::table::{Table, Value};
use crate::exit::{Diagnose, Exit};

/// The share of file order that forms the initial data.
pub const INITIAL_FRACTION: f64 = 0.2;
/// Row shares of train, validation and test inside the initial data.
pub const FRACTIONS: [f64; 3] = [0.70, 0.15, 0.15];
/// Rows per simulated batch.
pub const BATCH_ROWS: usize = 2000;
/// The default seed (the upstream's).
pub const DEFAULT_SEED: u64 = 42;

/// How to split.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub seed: u64,
    pub batch_rows: usize,
    /// Names the input in the manifest.
    pub source: Option<String>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            seed: DEFAULT_SEED,
            batch_rows: BATCH_ROWS,
            source: None,
        }
    }
}

/// Errors splitting data or writing the split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(
        "the initial {initial_rows} rows hold {groups} patients; a grouped train/validation/test \
         split needs at least 3"
    )]
    TooFewPatients { initial_rows: usize, groups: usize },
    #[error("the future data has {rows} rows, fewer than one {batch_rows}-row batch")]
    TooFewFutureRows { rows: usize, batch_rows: usize },
    #[error("batch size must be at least 1")]
    NoBatchRows,
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Diagnose for SplitError {
    fn exit(&self) -> Exit {
        match self {
            SplitError::Write { .. } => Exit::Failure,
            SplitError::NoBatchRows => Exit::Usage,
            _ => Exit::InvalidInput,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SplitError::Write { .. } => "check that the --out directory is writable".into(),
            SplitError::NoBatchRows => "pass --batch-rows 1 or more".into(),
            SplitError::TooFewPatients { .. } | SplitError::TooFewFutureRows { .. } => {
                "split a larger file (the real one has 101,766 rows) or lower --batch-rows".into()
            }
        })
    }
}

/// Splits row indices into groups of whole patients with approximately the given row shares.
///
/// Patients (by `patient_nbr`; a row without one is its own group) are shuffled with `seed` and
/// dealt in that order: each goes to the first split whose cumulative share is not yet filled.
/// Indices in each split are ascending (file order).
pub fn group_split(table: &Table, fractions: &[f64], seed: u64) -> Vec<Vec<usize>> {
    let groups = patient_groups(table);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.shuffle(&mut rng(seed, Stream::Groups));
    let total: f64 = fractions.iter().sum();
    let n = table.len() as f64;
    let mut bounds: Vec<f64> = fractions
        .iter()
        .scan(0.0, |acc, f| {
            *acc += f / total;
            Some(*acc * n)
        })
        .collect();
    if let Some(last) = bounds.last_mut() {
        *last = f64::INFINITY;
    }
    let mut out = vec![Vec::new(); fractions.len()];
    let mut assigned = 0usize;
    for g in order {
        let k = bounds
            .iter()
            .position(|&b| (assigned as f64) < b)
            .unwrap_or(fractions.len() - 1);
        out[k].extend_from_slice(&groups[g]);
        assigned += groups[g].len();
    }
    for s in &mut out {
        s.sort_unstable();
    }
    out
}

/// Row indices per patient, in order of first appearance.
fn patient_groups(table: &Table) -> Vec<Vec<usize>> {
    let ids = table.ints(col::PATIENT_NBR);
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (row, id) in ids.iter().enumerate() {
        match id {
            Some(id) => {
                let g = *index.entry(*id).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(row);
            }
            None => groups.push(vec![row]),
        }
    }
    groups
}

/// Independent random streams, so changing one recipe never shifts another's draws.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Groups,
    Batch(u64),
}

fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(match stream {
        Stream::Groups => 0,
        Stream::Batch(i) => 100 + i,
    });
    r
}

/// A subpopulation a recipe draws from or edits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subgroup {
    /// `age` at or above this bracket (e.g. `[70-80)` means 70 and older).
    AgeAtLeast { bracket: &'static str },
    /// `number_diagnoses >= min`.
    DiagnosesAtLeast { min: i64 },
    /// At least one emergency visit in the year before the encounter (`number_emergency > 0`),
    /// the upstream's "emergency patients".
    EmergencyVisits,
    /// `num_medications > 15` and `time_in_hospital > 5`: long stays on many drugs.
    LongStayManyMedications,
}

impl Subgroup {
    pub fn contains(&self, t: &Table, row: usize) -> bool {
        let int = |c: usize| t.ints(c)[row].unwrap_or(0);
        match *self {
            Subgroup::AgeAtLeast { bracket } => {
                let min = AGE_BRACKETS.iter().position(|b| *b == bracket);
                match (t.get(row, col::AGE), min) {
                    (Value::Str(a), Some(min)) => AGE_BRACKETS
                        .iter()
                        .position(|b| *b == a)
                        .is_some_and(|p| p >= min),
                    _ => false,
                }
            }
            Subgroup::DiagnosesAtLeast { min } => int(col::NUMBER_DIAGNOSES) >= min,
            Subgroup::EmergencyVisits => int(col::NUMBER_EMERGENCY) > 0,
            Subgroup::LongStayManyMedications => {
                int(col::NUM_MEDICATIONS) > 15 && int(col::TIME_IN_HOSPITAL) > 5
            }
        }
    }
}

/// One step of a batch recipe, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A simple random sample of future rows, without replacement.
    Sample,
    /// `share` of the batch drawn from the subgroup, the rest from outside it (each without
    /// replacement unless the pool is smaller than needed).
    Stratify { subgroup: Subgroup, share: f64 },
    /// Replace up to `share` of the batch's rows outside the subgroup by random future rows
    /// inside it (drawn with replacement).
    Enrich { subgroup: Subgroup, share: f64 },
    /// Add `multiple` times the column's standard deviation in the future data to every value,
    /// with stochastic rounding so values stay non-negative integers and the mean moves by
    /// exactly the shift in expectation.
    ShiftStd {
        columns: Vec<&'static str>,
        multiple: f64,
    },
    /// Flip the label of `share` of the subgroup's labelled rows, in `readmitted` itself:
    /// `NO` becomes `<30`, `>30` and `<30` become `NO` (a flip under the default target; under
    /// `lt30` the `>30` rows stay negative).
    FlipLabels { subgroup: Subgroup, share: f64 },
}

/// A named batch recipe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    pub name: String,
    /// `none`, `gradual_covariate`, `strong_covariate` or `concept`.
    pub drift: &'static str,
    pub description: &'static str,
    pub steps: Vec<Step>,
}

/// The five upstream batch recipes.
pub fn recipes() -> Vec<Recipe> {
    let age70 = Subgroup::AgeAtLeast { bracket: "[70-80)" };
    let age80 = Subgroup::AgeAtLeast { bracket: "[80-90)" };
    let numeric3 = vec!["time_in_hospital", "num_medications", "num_lab_procedures"];
    vec![
        Recipe {
            name: "batch_1".into(),
            drift: "none",
            description: "random future rows",
            steps: vec![Step::Sample],
        },
        Recipe {
            name: "batch_2".into(),
            drift: "none",
            description: "random future rows (a second, independent draw)",
            steps: vec![Step::Sample],
        },
        Recipe {
            name: "batch_3".into(),
            drift: "gradual_covariate",
            description: "50% patients aged 70+, more diagnoses",
            steps: vec![
                Step::Stratify {
                    subgroup: age70,
                    share: 0.50,
                },
                Step::Enrich {
                    subgroup: Subgroup::DiagnosesAtLeast { min: 8 },
                    share: 0.15,
                },
            ],
        },
        Recipe {
            name: "batch_4".into(),
            drift: "strong_covariate",
            description: "40% patients aged 80+, more diagnoses, +0.3 std on three numeric columns",
            steps: vec![
                Step::Stratify {
                    subgroup: age80,
                    share: 0.40,
                },
                Step::Enrich {
                    subgroup: Subgroup::DiagnosesAtLeast { min: 9 },
                    share: 0.20,
                },
                Step::ShiftStd {
                    columns: numeric3,
                    multiple: 0.3,
                },
            ],
        },
        Recipe {
            name: "batch_5".into(),
            drift: "concept",
            description: "35% emergency patients, 40% of labels flipped for long stays on many \
                          medications, +0.2 std on three numeric columns",
            steps: vec![
                Step::Stratify {
                    subgroup: Subgroup::EmergencyVisits,
                    share: 0.35,
                },
                Step::FlipLabels {
                    subgroup: Subgroup::LongStayManyMedications,
                    share: 0.40,
                },
                Step::ShiftStd {
                    columns: vec!["num_medications", "number_emergency", "number_inpatient"],
                    multiple: 0.2,
                },
            ],
        },
    ]
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Outcome {
    Sample {
        rows: usize,
    },
    Stratify {
        from_subgroup: usize,
        from_rest: usize,
        subgroup_pool: usize,
        with_replacement: bool,
    },
    Enrich {
        replaced: usize,
        eligible: usize,
    },
    ShiftStd {
        shifts: Vec<Shift>,
    },
    FlipLabels {
        flipped: usize,
        eligible: usize,
    },
}

/// One column's shift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    pub column: &'static str,
    /// Sample standard deviation of the column in the future data.
    pub std: f64,
    pub shift: f64,
    /// Mean before and after, in the batch.
    pub mean_before: f64,
    pub mean_after: f64,
}

/// A few figures that show what a recipe changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub rows: usize,
    pub patients: usize,
    /// Positive rate under the default target (`readmitted != NO`) and under `lt30`.
    pub positive_rate: f64,
    pub positive_rate_lt30: f64,
    pub share_age_70_plus: f64,
    pub share_age_80_plus: f64,
    pub share_emergency_visits: f64,
    pub mean_number_diagnoses: f64,
    pub mean_time_in_hospital: f64,
    pub mean_num_medications: f64,
    pub mean_num_lab_procedures: f64,
}

/// Summarises a table for the manifest.
pub fn summarize(t: &Table) -> Summary {
    let n = t.len().max(1) as f64;
    let share = |g: Subgroup| (0..t.len()).filter(|&r| g.contains(t, r)).count() as f64 / n;
    let rate = |target: Target| {
        let l = t.labels(target);
        let known = l.iter().flatten().count().max(1) as f64;
        l.iter().flatten().filter(|&&p| p).count() as f64 / known
    };
    let mut patients: Vec<i64> = t.ints(col::PATIENT_NBR).iter().flatten().copied().collect();
    patients.sort_unstable();
    patients.dedup();
    Summary {
        rows: t.len(),
        patients: patients.len(),
        positive_rate: round4(rate(Target::Any)),
        positive_rate_lt30: round4(rate(Target::Lt30)),
        share_age_70_plus: round4(share(Subgroup::AgeAtLeast { bracket: "[70-80)" })),
        share_age_80_plus: round4(share(Subgroup::AgeAtLeast { bracket: "[80-90)" })),
        share_emergency_visits: round4(share(Subgroup::EmergencyVisits)),
        mean_number_diagnoses: round4(mean(t, col::NUMBER_DIAGNOSES)),
        mean_time_in_hospital: round4(mean(t, col::TIME_IN_HOSPITAL)),
        mean_num_medications: round4(mean(t, col::NUM_MEDICATIONS)),
        mean_num_lab_procedures: round4(mean(t, col::NUM_LAB_PROCEDURES)),
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn mean(t: &Table, c: usize) -> f64 {
    let xs = t.ints(c);
    let (s, k) = xs
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(s, k), &v| (s + v as f64, k + 1));
    if k == 0 { 0.0 } else { s / k as f64 }
}

/// Sample standard deviation (n - 1), as pandas computes it.
fn std(t: &Table, c: usize) -> f64 {
    let xs: Vec<f64> = t.ints(c).iter().flatten().map(|&v| v as f64).collect();
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// One simulated batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub recipe: Recipe,
    pub table: Table,
    pub outcomes: Vec<Outcome>,
}

/// The result of [`split`].
#[derive(Debug, Clone)]
pub struct Split {
    pub seed: u64,
    pub source: Option<String>,
    pub source_rows: usize,
    pub train: Table,
    pub validation: Table,
    pub test: Table,
    pub future: Table,
    pub batches: Vec<Batch>,
}

/// Splits a table: initial train/validation/test, future data, and the five batches.
pub fn split(table: &Table, opts: &SplitOptions) -> Result<Split, SplitError> {
    if opts.batch_rows == 0 {
        return Err(SplitError::NoBatchRows);
    }
    let n_initial = (table.len() as f64 * INITIAL_FRACTION) as usize;
    let initial = table.select(&(0..n_initial).collect::<Vec<_>>());
    let future = table.select(&(n_initial..table.len()).collect::<Vec<_>>());
    let groups = patient_groups(&initial).len();
    if groups < 3 {
        return Err(SplitError::TooFewPatients {
            initial_rows: n_initial,
            groups,
        });
    }
    if future.len() < opts.batch_rows {
        return Err(SplitError::TooFewFutureRows {
            rows: future.len(),
            batch_rows: opts.batch_rows,
        });
    }
    let parts = group_split(&initial, &FRACTIONS, opts.seed);
    let batches = recipes()
        .into_iter()
        .enumerate()
        .map(|(i, recipe)| make_batch(&future, recipe, opts, i as u64 + 1))
        .collect();
    Ok(Split {
        seed: opts.seed,
        source: opts.source.clone(),
        source_rows: table.len(),
        train: initial.select(&parts[0]),
        validation: initial.select(&parts[1]),
        test: initial.select(&parts[2]),
        future,
        batches,
    })
}

/// Draws `k` distinct items of `pool` (all of them, repeated, when the pool is too small).
fn draw(pool: &[usize], k: usize, r: &mut ChaCha8Rng) -> (Vec<usize>, bool) {
    if pool.is_empty() {
        return (Vec::new(), false);
    }
    if pool.len() >= k {
        let picked = rand::seq::index::sample(r, pool.len(), k);
        (picked.iter().map(|i| pool[i]).collect(), false)
    } else {
        (
            (0..k)
                .map(|_| pool[r.random_range(0..pool.len())])
                .collect(),
            true,
        )
    }
}

fn make_batch(future: &Table, recipe: Recipe, opts: &SplitOptions, stream: u64) -> Batch {
    let mut r = rng(opts.seed, Stream::Batch(stream));
    let rows = opts.batch_rows;
    let all: Vec<usize> = (0..future.len()).collect();
    let mut picked: Vec<usize> = Vec::new();
    let mut outcomes = Vec::new();
    let mut table: Option<Table> = None;
    for step in &recipe.steps {
        let outcome = match step {
            Step::Sample => {
                picked = draw(&all, rows, &mut r).0;
                Outcome::Sample { rows }
            }
            Step::Stratify { subgroup, share } => {
                let (inside, outside): (Vec<usize>, Vec<usize>) =
                    all.iter().partition(|&&i| subgroup.contains(future, i));
                let want = ((rows as f64 * share).round() as usize).min(rows);
                let (a, rep_a) = draw(&inside, want, &mut r);
                let (b, rep_b) = draw(&outside, rows - a.len(), &mut r);
                let outcome = Outcome::Stratify {
                    from_subgroup: a.len(),
                    from_rest: b.len(),
                    subgroup_pool: inside.len(),
                    with_replacement: rep_a || rep_b,
                };
                picked = a;
                picked.extend(b);
                outcome
            }
            Step::Enrich { subgroup, share } => {
                let pool: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|&i| subgroup.contains(future, i))
                    .collect();
                let low: Vec<usize> = (0..picked.len())
                    .filter(|&p| !subgroup.contains(future, picked[p]))
                    .collect();
                let want = (rows as f64 * share) as usize;
                let k = if pool.is_empty() {
                    0
                } else {
                    want.min(low.len())
                };
                let positions = draw(&low, k, &mut r).0;
                for p in positions {
                    picked[p] = pool[r.random_range(0..pool.len())];
                }
                Outcome::Enrich {
                    replaced: k,
                    eligible: low.len(),
                }
            }
            Step::ShiftStd { columns, multiple } => {
                let t = table.get_or_insert_with(|| shuffled(future, &mut picked, &mut r));
                let shifts = columns
                    .iter()
                    .filter_map(|name| {
                        let c = COLUMNS.iter().position(|s| s.name == *name)?;
                        Some(shift_column(t, c, std(future, c), *multiple, &mut r))
                    })
                    .collect();
                Outcome::ShiftStd { shifts }
            }
            Step::FlipLabels { subgroup, share } => {
                let t = table.get_or_insert_with(|| shuffled(future, &mut picked, &mut r));
                flip_labels(t, *subgroup, *share, &mut r)
            }
        };
        outcomes.push(outcome);
    }
    let table = table.unwrap_or_else(|| shuffled(future, &mut picked, &mut r));
    Batch {
        recipe,
        table,
        outcomes,
    }
}

/// The picked rows in random order (so strata are not blocks in the file).
fn shuffled(future: &Table, picked: &mut [usize], r: &mut ChaCha8Rng) -> Table {
    picked.shuffle(r);
    future.select(picked)
}

fn shift_column(t: &mut Table, c: usize, std: f64, multiple: f64, r: &mut ChaCha8Rng) -> Shift {
    let shift = std * multiple;
    let before = mean(t, c);
    let whole = shift.floor();
    let frac = shift - whole;
    for v in t.ints_mut(c).iter_mut().flatten() {
        let up = if r.random::<f64>() < frac { 1.0 } else { 0.0 };
        *v = ((*v as f64) + whole + up).max(0.0) as i64;
    }
    Shift {
        column: COLUMNS[c].name,
        std: round4(std),
        shift: round4(shift),
        mean_before: round4(before),
        mean_after: round4(mean(t, c)),
    }
}

fn flip_labels(t: &mut Table, subgroup: Subgroup, share: f64, r: &mut ChaCha8Rng) -> Outcome {
    let eligible: Vec<usize> = (0..t.len())
        .filter(|&i| subgroup.contains(t, i) && t.get(i, col::READMITTED) != Value::Missing)
        .collect();
    let k = (eligible.len() as f64 * share) as usize;
    let chosen = draw(&eligible, k, r).0;
    for &i in &chosen {
        let flipped = match t.get(i, col::READMITTED) {
            Value::Str("NO") => "<30",
            _ => "NO",
        };
        t.set_cat(i, col::READMITTED, Some(flipped));
    }
    Outcome::FlipLabels {
        flipped: chosen.len(),
        eligible: eligible.len(),
    }
}

/// The `split.json` manifest: what each file holds and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub source: Option<String>,
    pub source_rows: usize,
    pub seed: u64,
    pub initial_fraction: f64,
    pub initial_rows: usize,
    /// Row shares asked for train, validation and test (patients are never split).
    pub fractions: [f64; 3],
    pub grouped_by: &'static str,
    pub files: Vec<FileEntry>,
    pub batches: Vec<BatchEntry>,
}

/// One written file.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub name: String,
    /// Relative to the output directory.
    pub file: String,
    pub summary: Summary,
}

/// One batch's recipe and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchEntry {
    pub name: String,
    pub file: String,
    pub drift: &'static str,
    pub description: &'static str,
    pub steps: Vec<Step>,
    pub outcomes: Vec<Outcome>,
    pub summary: Summary,
}

impl Split {
    /// The manifest describing this split.
    pub fn manifest(&self) -> Manifest {
        let entry = |name: &str, file: &str, t: &Table| FileEntry {
            name: name.into(),
            file: file.into(),
            summary: summarize(t),
        };
        Manifest {
            source: self.source.clone(),
            source_rows: self.source_rows,
            seed: self.seed,
            initial_fraction: INITIAL_FRACTION,
            initial_rows: self.train.len() + self.validation.len() + self.test.len(),
            fractions: FRACTIONS,
            grouped_by: "patient_nbr",
            files: vec![
                entry("train", "initial/train.csv", &self.train),
                entry("validation", "initial/validation.csv", &self.validation),
                entry("test", "initial/test.csv", &self.test),
                entry("future", "future.csv", &self.future),
            ],
            batches: self
                .batches
                .iter()
                .map(|b| BatchEntry {
                    name: b.recipe.name.clone(),
                    file: format!("batches/{}.csv", b.recipe.name),
                    drift: b.recipe.drift,
                    description: b.recipe.description,
                    steps: b.recipe.steps.clone(),
                    outcomes: b.outcomes.clone(),
                    summary: summarize(&b.table),
                })
                .collect(),
        }
    }
}

/// Writes every file of a split under `dir` atomically, `split.json` last, and returns the
/// manifest.
pub fn write(split: &Split, dir: &Path) -> Result<Manifest, SplitError> {
    let manifest = split.manifest();
    let put = |rel: &str, bytes: &[u8]| {
        let path = dir.join(rel);
        crate::fsutil::write_atomic(&path, bytes).map_err(|source| SplitError::Write {
            path: path.clone(),
            source,
        })
    };
    let csv = |rel: &str, t: &Table| {
        let bytes = t.to_csv_bytes(false).map_err(|source| SplitError::Write {
            path: dir.join(rel),
            source,
        })?;
        put(rel, &bytes)
    };
    csv("initial/train.csv", &split.train)?;
    csv("initial/validation.csv", &split.validation)?;
    csv("initial/test.csv", &split.test)?;
    csv("future.csv", &split.future)?;
    for b in &split.batches {
        csv(&format!("batches/{}.csv", b.recipe.name), &b.table)?;
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| SplitError::Write {
        path: dir.join("split.json"),
        source: e.into(),
    })?;
    put("split.json", &json)?;
    Ok(manifest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::schema::{Kind, WIDTH};

    /// A deterministic table of `n` rows with repeated patients and varied ages and counts.
    pub(crate) fn table(n: usize) -> Table {
        let mut t = Table::new();
        let ages = AGE_BRACKETS;
        let labels = ["NO", ">30", "<30"];
        for i in 0..n {
            let mut v = vec![Value::Str("No"); WIDTH];
            for (c, spec) in COLUMNS.iter().enumerate() {
                if spec.kind != Kind::Categorical {
                    v[c] = Value::Int((mix(i, c) % 31) as i64);
                }
            }
            v[col::ENCOUNTER_ID] = Value::Int(i as i64);
            v[col::PATIENT_NBR] = Value::Int((i / 3) as i64 * 11 % (n as i64 / 2).max(1));
            v[col::NUMBER_EMERGENCY] = Value::Int(i64::from(mix(i, 99).is_multiple_of(4)));
            v[col::AGE] = Value::Str(ages[mix(i, 98) as usize % ages.len()]);
            v[col::READMITTED] = Value::Str(labels[i % 3]);
            v[col::DIAG_1] = Value::Str("428");
            t.push_row(&v);
        }
        t
    }

    /// A cheap deterministic hash (splitmix64) so test columns are not correlated.
    fn mix(i: usize, c: usize) -> u64 {
        let mut z = (i as u64 * 64 + c as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn ids(t: &Table) -> Vec<i64> {
        t.ints(col::PATIENT_NBR).iter().flatten().copied().collect()
    }

    #[test]
    fn groups_never_span_splits_and_shares_are_close() {
        let t = table(3000);
        let parts = group_split(&t, &FRACTIONS, 7);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 3000);
        let pid = t.ints(col::PATIENT_NBR);
        let mut owner = HashMap::new();
        for (k, p) in parts.iter().enumerate() {
            for &i in p {
                assert_eq!(
                    *owner.entry(pid[i]).or_insert(k),
                    k,
                    "patient in two splits"
                );
            }
        }
        assert!((parts[0].len() as f64 / 3000.0 - 0.70).abs() < 0.02);
        assert!((parts[2].len() as f64 / 3000.0 - 0.15).abs() < 0.02);
        assert_eq!(parts, group_split(&t, &FRACTIONS, 7));
        assert_ne!(parts, group_split(&t, &FRACTIONS, 8));
    }

    #[test]
    fn batches_follow_their_recipes() {
        let t = table(20_000);
        let opts = SplitOptions {
            batch_rows: 1000,
            ..SplitOptions::default()
        };
        let s = split(&t, &opts).unwrap();
        assert_eq!(s.future.len(), 16_000);
        assert_eq!(s.train.len() + s.validation.len() + s.test.len(), 4000);
        assert_eq!(s.batches.len(), 5);
        for b in &s.batches {
            assert_eq!(b.table.len(), 1000, "{}", b.recipe.name);
        }
        // Batch 1 and 2 are different draws.
        assert_ne!(ids(&s.batches[0].table), ids(&s.batches[1].table));
        // The strata are drawn as asked; enrichment then trades some rows for high-diagnosis
        // ones, so the final shares sit a little off the recipe but far from the future's.
        let fut = summarize(&s.future);
        let b3 = summarize(&s.batches[2].table);
        assert!(matches!(
            s.batches[2].outcomes[0],
            Outcome::Stratify {
                from_subgroup: 500,
                from_rest: 500,
                ..
            }
        ));
        assert!(b3.share_age_70_plus > fut.share_age_70_plus + 0.1, "{b3:?}");
        assert!(
            b3.mean_number_diagnoses > fut.mean_number_diagnoses,
            "{b3:?}"
        );
        let b4 = summarize(&s.batches[3].table);
        assert!(matches!(
            s.batches[3].outcomes[0],
            Outcome::Stratify {
                from_subgroup: 400,
                ..
            }
        ));
        assert!(b4.share_age_80_plus > fut.share_age_80_plus + 0.1, "{b4:?}");
        let b5 = summarize(&s.batches[4].table);
        assert!(
            // 35% drawn from the subgroup, then the +0.2 std shift of number_emergency itself
            // lifts some zeros to one.
            matches!(
                s.batches[4].outcomes[0],
                Outcome::Stratify {
                    from_subgroup: 350,
                    ..
                }
            ) && b5.share_emergency_visits >= 0.35
                && fut.share_emergency_visits < 0.3,
            "{b5:?}"
        );
        let Outcome::ShiftStd { shifts } = &s.batches[3].outcomes[2] else {
            panic!("{:?}", s.batches[3].outcomes)
        };
        for sh in shifts {
            assert!(
                (sh.mean_after - sh.mean_before - sh.shift).abs() < 0.15 * sh.shift.max(1.0),
                "{sh:?}"
            );
        }
        let Outcome::FlipLabels { flipped, eligible } = s.batches[4].outcomes[1] else {
            panic!()
        };
        assert!(
            eligible > 0 && flipped == eligible * 2 / 5,
            "{flipped}/{eligible}"
        );
        // Integers stay non-negative integers.
        for b in &s.batches {
            for c in [col::TIME_IN_HOSPITAL, col::NUMBER_EMERGENCY] {
                assert!(b.table.ints(c).iter().all(|v| v.is_some_and(|v| v >= 0)));
            }
        }
    }

    #[test]
    fn flips_change_readmitted_itself() {
        let t = table(20_000);
        let opts = SplitOptions {
            batch_rows: 1000,
            ..SplitOptions::default()
        };
        let s = split(&t, &opts).unwrap();
        // Re-run batch 5 without its flip step: the labels differ in exactly `flipped` rows.
        let mut recipe = recipes().remove(4);
        recipe.steps.remove(1);
        let unflipped = make_batch(&s.future, recipe, &opts, 5);
        let a = s.batches[4].table.labels(Target::Any);
        let b = unflipped.table.labels(Target::Any);
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let Outcome::FlipLabels { flipped, .. } = s.batches[4].outcomes[1] else {
            panic!()
        };
        assert_eq!(differ, flipped);
    }

    #[test]
    fn the_offline_path_splits_synthetic_data() {
        let t = crate::data::synth::generate(12_000, 5);
        let s = split(&t, &SplitOptions::default()).unwrap();
        assert_eq!(s.future.len(), 9_600);
        assert!(s.batches.iter().all(|b| b.table.len() == BATCH_ROWS));
        let m = s.manifest();
        assert!(m.batches[3].summary.share_age_80_plus > m.files[3].summary.share_age_80_plus);
        let Outcome::FlipLabels { flipped, .. } = s.batches[4].outcomes[1] else {
            panic!()
        };
        assert!(flipped > 0);
    }

    #[test]
    fn split_is_deterministic_and_small_inputs_are_refused() {
        let t = table(12_000);
        let opts = SplitOptions {
            batch_rows: 500,
            ..SplitOptions::default()
        };
        let a = split(&t, &opts).unwrap();
        let b = split(&t, &opts).unwrap();
        for (x, y) in a.batches.iter().zip(&b.batches) {
            assert_eq!(
                x.table.to_csv_bytes(false).unwrap(),
                y.table.to_csv_bytes(false).unwrap()
            );
        }
        assert!(matches!(
            split(&table(10), &SplitOptions::default()),
            Err(SplitError::TooFewPatients { .. } | SplitError::TooFewFutureRows { .. })
        ));
        assert!(matches!(
            split(&table(100), &SplitOptions::default()),
            Err(SplitError::TooFewFutureRows { .. })
        ));
    }
}
