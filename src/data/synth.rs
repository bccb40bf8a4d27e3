//! The synthetic encounter generator: the real 50-column schema, calibrated from figures about the
//! UCI file embedded in `synth_stats.json` (per-column value counts, Spearman correlations of the
//! numeric columns, encounters per patient, readmission rate by value, a logistic label model).
//!
//! How a row is made:
//! - **Patients.** Encounters per patient follow the real histogram; a patient's race, gender and
//!   age are shared by all their encounters, which are scattered through the file.
//! - **Numeric columns and age** come from a Gaussian copula: correlated normals (the Spearman
//!   matrix turned into Pearson, `2 sin(pi rho / 6)`) mapped through each column's real discrete
//!   distribution. Age is first in the Cholesky order, so a patient's age is drawn once and the
//!   other numerics of each encounter are drawn from their exact conditional given it.
//! - **Categorical columns** (including ICD-9 `diag_1..3`, by real frequency) are drawn from their
//!   real frequencies; `diabetesMed` is `Yes` exactly when some medication is prescribed and
//!   `change` is `Ch` whenever a dose went up or down (plus switches, to match its frequency).
//! - **Labels.** Log-odds start from the embedded logistic model and are calibrated ("raked") on a
//!   fixed synthetic sample so the readmission rate of every value of every feature column
//!   matches the real rate (shrunk for rare values). Expired patients are never readmitted.
//!
//! Deterministic for a seed (ChaCha8). Knows nothing of models or training.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Deserialize;

use super::schema::{AGE_BRACKETS, COLUMNS, EXPIRED_OR_HOSPICE, Kind, WIDTH, col};
use super::table::{Categories, Column, MISSING, Table, Value};

/// Discharge dispositions meaning the patient died: never readmitted.
const EXPIRED: &[i64] = &[11, 19, 20, 21];
/// Rows of the fixed sample the label model is calibrated on.
const CALIBRATION_ROWS: usize = 20_000;
const CALIBRATION_SEED: u64 = 0x5eed_ca1b;
const SWEEPS: usize = 10;
/// Per-value rates count with weight `n / (n + SHRINK)`: rare values move the model little.
const SHRINK: f64 = 200.0;

#[derive(Debug, Deserialize)]
struct Stats {
    value_counts: BTreeMap<String, BTreeMap<String, u64>>,
    encounters_per_patient: BTreeMap<String, u64>,
    positive_rate_after_clean: f64,
    readmitted_counts: BTreeMap<String, u64>,
    positive_rate_by_value: BTreeMap<String, BTreeMap<String, (f64, u64)>>,
    spearman: Spearman,
    label_model: LabelModel,
}

#[derive(Debug, Deserialize)]
struct Spearman {
    columns: Vec<String>,
    matrix: Vec<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
struct LabelModel {
    features_numeric_standardized: BTreeMap<String, MeanStd>,
    intercept: f64,
    coef: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
struct MeanStd {
    mean: f64,
    std: f64,
}

/// One column's distribution: values (sorted numerically for integer columns, so the inverse CDF
/// is monotone) and cumulative probabilities.
#[derive(Debug, Default)]
struct Marginal {
    /// `None` is the missing marker `?`.
    values: Vec<Option<String>>,
    ints: Vec<i64>,
    cum: Vec<f64>,
}

impl Marginal {
    fn new(mut counts: Vec<(String, u64)>, numeric: bool) -> Marginal {
        if numeric {
            counts.sort_by_key(|(v, _)| v.parse::<i64>().unwrap_or(i64::MAX));
        }
        let total: u64 = counts.iter().map(|(_, c)| c).sum();
        let mut acc = 0u64;
        let mut m = Marginal::default();
        for (v, c) in counts {
            acc += c;
            m.cum.push(acc as f64 / total as f64);
            m.ints.push(v.parse().unwrap_or(0));
            m.values.push((v != "?").then_some(v));
        }
        m
    }

    /// The code whose cumulative probability first reaches `u` (the inverse CDF).
    fn pick(&self, u: f64) -> u32 {
        self.cum.partition_point(|&c| c < u).min(self.cum.len() - 1) as u32
    }

    fn code_of(&self, value: &str) -> Option<usize> {
        self.values
            .iter()
            .position(|v| v.as_deref().unwrap_or("?") == value)
    }
}

/// Everything needed to generate rows, built once per process.
#[derive(Debug)]
struct Model {
    /// Per schema column (identifiers have none); `age` is in `AGE_BRACKETS` order.
    marginals: Vec<Marginal>,
    /// Schema columns of the copula, age first.
    copula: Vec<usize>,
    /// Lower Cholesky factor of the copula's correlation matrix.
    chol: Vec<Vec<f64>>,
    patients: Marginal,
    /// P(`change` = Ch) for a prescribed patient whose doses did not move.
    switch_rate: f64,
    /// P(`<30` | readmitted).
    lt30_share: f64,
    /// Log-odds terms per schema column and code, and the intercept.
    beta: Vec<Vec<f64>>,
    beta0: f64,
}

fn stats() -> Stats {
    // The embedded file is checked by a unit test; a failure here is a build defect.
    #[allow(clippy::expect_used)]
    serde_json::from_str(include_str!("synth_stats.json")).expect("embedded synth_stats.json")
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| build(&stats()))
}

fn build(s: &Stats) -> Model {
    let marginals: Vec<Marginal> = COLUMNS
        .iter()
        .map(|spec| match s.value_counts.get(spec.name) {
            _ if spec.kind == Kind::Identifier => Marginal::default(),
            Some(vc) if spec.name == "age" => Marginal::new(
                AGE_BRACKETS
                    .iter()
                    .map(|b| ((*b).to_owned(), vc.get(*b).copied().unwrap_or(0)))
                    .collect(),
                false,
            ),
            Some(vc) => Marginal::new(
                vc.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                spec.kind == Kind::Integer,
            ),
            None => Marginal::default(),
        })
        .collect();

    // Copula over the Spearman columns with age moved first.
    let index = |name: &str| {
        if name == "age_ordinal" {
            Some(col::AGE)
        } else {
            super::schema::index_of(name)
        }
    };
    let mut order: Vec<usize> = (0..s.spearman.columns.len()).collect();
    order.sort_by_key(|&i| s.spearman.columns[i] != "age_ordinal");
    let copula: Vec<usize> = order
        .iter()
        .filter_map(|&i| index(&s.spearman.columns[i]))
        .collect();
    let pearson: Vec<Vec<f64>> = order
        .iter()
        .map(|&i| {
            order
                .iter()
                .map(|&j| {
                    let r = s.spearman.matrix[i][j];
                    if i == j {
                        1.0
                    } else {
                        2.0 * (std::f64::consts::PI * r / 6.0).sin()
                    }
                })
                .collect()
        })
        .collect();
    let chol = match_spearman(&marginals, &copula, pearson, &order, s);

    let patients = Marginal::new(
        s.encounters_per_patient
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        true,
    );

    // `change`: doses moving explain part of `Ch`; switches explain the rest.
    let p = |c: usize, v: &str| {
        let m = &marginals[c];
        m.code_of(v)
            .map_or(0.0, |i| m.cum[i] - if i == 0 { 0.0 } else { m.cum[i - 1] })
    };
    let meds = col::FIRST_MED..=col::LAST_MED;
    let no_move: f64 = meds
        .clone()
        .map(|c| 1.0 - p(c, "Up") - p(c, "Down"))
        .product();
    let all_no: f64 = meds.map(|c| p(c, "No")).product();
    let switch_rate =
        ((p(col::CHANGE, "Ch") - (1.0 - no_move)) / (no_move - all_no)).clamp(0.0, 1.0);
    let rc = |k: &str| s.readmitted_counts.get(k).copied().unwrap_or(0) as f64;
    let lt30_share = rc("<30") / (rc("<30") + rc(">30")).max(1.0);

    let mut m = Model {
        marginals,
        copula,
        chol,
        patients,
        switch_rate,
        lt30_share,
        beta: vec![Vec::new(); WIDTH],
        beta0: s.label_model.intercept,
    };
    m.beta = initial_beta(&m, s);
    calibrate(&mut m, s);
    m
}

/// The name a column has in the label figures.
fn label_name(c: usize) -> &'static str {
    if c == col::AGE {
        "age_ordinal"
    } else {
        COLUMNS[c].name
    }
}

/// The key a value has in the label figures (`?` race is "Unknown"; age is its ordinal).
fn label_key(m: &Model, c: usize, code: usize) -> String {
    if c == col::AGE {
        return code.to_string();
    }
    match &m.marginals[c].values[code] {
        Some(v) => v.clone(),
        None => "Unknown".into(),
    }
}

/// Columns whose values carry label effects.
fn label_columns(s: &Stats) -> Vec<usize> {
    (0..WIDTH)
        .filter(|&c| s.positive_rate_by_value.contains_key(label_name(c)))
        .collect()
}

fn initial_beta(m: &Model, s: &Stats) -> Vec<Vec<f64>> {
    let lm = &s.label_model;
    let mut beta = vec![Vec::new(); WIDTH];
    for c in label_columns(s) {
        let name = label_name(c);
        let n = m.marginals[c].values.len();
        beta[c] = (0..n)
            .map(|code| {
                if let Some(ms) = lm.features_numeric_standardized.get(name) {
                    let x = if c == col::AGE {
                        code as f64
                    } else {
                        m.marginals[c].ints[code] as f64
                    };
                    let coef = lm.coef.get(&format!("num__{name}")).copied().unwrap_or(0.0);
                    coef * (x - ms.mean) / ms.std.max(1e-9)
                } else {
                    let key = label_key(m, c, code);
                    lm.coef
                        .get(&format!("cat__{name}_{key}"))
                        .copied()
                        .unwrap_or(0.0)
                }
            })
            .collect();
    }
    beta
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(0.005, 0.995);
    (p / (1.0 - p)).ln()
}

/// Rakes the log-odds so each value's mean predicted rate on a fixed synthetic sample matches the
/// real rate after removing expired/hospice encounters (as the figures were computed).
fn calibrate(m: &mut Model, s: &Stats) {
    let rows = codes(m, CALIBRATION_ROWS, CALIBRATION_SEED);
    let rows: Vec<[u32; WIDTH]> = rows
        .into_iter()
        .filter(|r| {
            let d = m.marginals[col::DISCHARGE_DISPOSITION_ID].ints
                [r[col::DISCHARGE_DISPOSITION_ID] as usize];
            !EXPIRED_OR_HOSPICE.contains(&d)
        })
        .collect();
    let cols = label_columns(s);
    let targets: Vec<Vec<Option<(f64, f64)>>> = cols
        .iter()
        .map(|&c| {
            let by = &s.positive_rate_by_value[label_name(c)];
            (0..m.marginals[c].values.len())
                .map(|code| {
                    by.get(&label_key(m, c, code))
                        .map(|&(rate, n)| (logit(rate), n as f64 / (n as f64 + SHRINK)))
                })
                .collect()
        })
        .collect();
    let mut z: Vec<f64> = rows.iter().map(|r| score(m, r)).collect();
    let base = logit(s.positive_rate_after_clean);
    for _ in 0..SWEEPS {
        let mean = z.iter().map(|&x| sigmoid(x)).sum::<f64>() / z.len().max(1) as f64;
        let d = base - logit(mean);
        m.beta0 += d;
        z.iter_mut().for_each(|x| *x += d);
        for (k, &c) in cols.iter().enumerate() {
            let n = m.marginals[c].values.len();
            let mut sum = vec![0.0; n];
            let mut cnt = vec![0.0; n];
            for (r, &x) in rows.iter().zip(&z) {
                sum[r[c] as usize] += sigmoid(x);
                cnt[r[c] as usize] += 1.0;
            }
            let delta: Vec<f64> = (0..n)
                .map(|v| match targets[k][v] {
                    Some((t, w)) if cnt[v] > 0.0 => {
                        (w * (t - logit(sum[v] / cnt[v]))).clamp(-1.0, 1.0)
                    }
                    _ => 0.0,
                })
                .collect();
            for (b, d) in m.beta[c].iter_mut().zip(&delta) {
                *b += d;
            }
            for (r, x) in rows.iter().zip(z.iter_mut()) {
                *x += delta[r[c] as usize];
            }
        }
    }
}

fn score(m: &Model, r: &[u32; WIDTH]) -> f64 {
    m.beta0
        + m.beta
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(c, b)| b[r[c] as usize])
            .sum::<f64>()
}

/// Rounds of latent-correlation adjustment, and the sample size each is measured on.
const SPEARMAN_ROUNDS: usize = 3;
const SPEARMAN_ROWS: usize = 8_000;

/// The latent Gaussian correlations turned into Spearman correlations of discrete columns full of
/// ties come out weaker than asked. Measure the generated Spearman matrix on a fixed sample and
/// move the latent correlations by the difference, keeping the matrix positive definite; return
/// the final Cholesky factor.
fn match_spearman(
    marginals: &[Marginal],
    copula: &[usize],
    mut latent: Vec<Vec<f64>>,
    order: &[usize],
    s: &Stats,
) -> Vec<Vec<f64>> {
    let k = copula.len();
    let target: Vec<Vec<f64>> = order
        .iter()
        .map(|&i| order.iter().map(|&j| s.spearman.matrix[i][j]).collect())
        .collect();
    let mut chol = cholesky(&latent).unwrap_or_else(|| identity(k));
    for _ in 0..SPEARMAN_ROUNDS {
        let mut r = ChaCha8Rng::seed_from_u64(CALIBRATION_SEED);
        let mut cols = vec![Vec::with_capacity(SPEARMAN_ROWS); k];
        let mut e = vec![0.0; k];
        for _ in 0..SPEARMAN_ROWS {
            for x in e.iter_mut() {
                *x = r.sample(StandardNormal);
            }
            for (i, &c) in copula.iter().enumerate() {
                let z: f64 = (0..=i).map(|j| chol[i][j] * e[j]).sum();
                cols[i].push(f64::from(marginals[c].pick(phi(z))));
            }
        }
        let ranked: Vec<Vec<f64>> = cols.iter().map(|c| ranks(c)).collect();
        let mut next = latent.clone();
        for i in 0..k {
            for j in 0..i {
                let observed = pearson(&ranked[i], &ranked[j]);
                if observed.is_finite() {
                    let v = (latent[i][j] + target[i][j] - observed).clamp(-0.95, 0.95);
                    next[i][j] = v;
                    next[j][i] = v;
                }
            }
        }
        // Shrink toward the previous matrix until it is safely positive definite.
        let mut step = 1.0;
        loop {
            let trial: Vec<Vec<f64>> = (0..k)
                .map(|i| {
                    (0..k)
                        .map(|j| latent[i][j] + step * (next[i][j] - latent[i][j]))
                        .collect()
                })
                .collect();
            if let Some(c) = cholesky(&trial) {
                latent = trial;
                chol = c;
                break;
            }
            step /= 2.0;
            if step < 1e-3 {
                return chol;
            }
        }
    }
    chol
}

fn identity(k: usize) -> Vec<Vec<f64>> {
    (0..k)
        .map(|i| (0..k).map(|j| f64::from(u8::from(i == j))).collect())
        .collect()
}

/// Average ranks (ties share their mean rank), 1-based: with [`pearson`], Spearman's rho.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of two equally long samples.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    cov / (va * vb).sqrt()
}

/// The lower Cholesky factor, or `None` when the matrix is not safely positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d < 1e-3 {
                    return None;
                }
                l[i][j] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// The standard normal CDF.
fn phi(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

/// Generates the value codes of `rows` encounters (identifiers and labels aside), in file order,
/// with the patient index of each row in the identifier slot `PATIENT_NBR`.
fn codes(m: &Model, rows: usize, seed: u64) -> Vec<[u32; WIDTH]> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    // Patients and their encounter counts, then encounters scattered through the file.
    let mut slots: Vec<u32> = Vec::with_capacity(rows);
    let mut patient = 0u32;
    while slots.len() < rows {
        let k = m.patients.ints[m.patients.pick(r.random::<f64>()) as usize].max(1) as usize;
        slots.extend(std::iter::repeat_n(patient, k.min(rows - slots.len())));
        patient += 1;
    }
    slots.shuffle(&mut r);
    struct Person {
        race: u32,
        gender: u32,
        e_age: f64,
    }
    let people: Vec<Person> = (0..patient)
        .map(|_| Person {
            race: m.marginals[col::RACE].pick(r.random::<f64>()),
            gender: m.marginals[col::GENDER].pick(r.random::<f64>()),
            e_age: r.sample(StandardNormal),
        })
        .collect();
    let is_copula: Vec<bool> = (0..WIDTH).map(|c| m.copula.contains(&c)).collect();
    let independent: Vec<usize> = (0..WIDTH)
        .filter(|&c| {
            COLUMNS[c].kind != Kind::Identifier
                && !is_copula[c]
                && !matches!(
                    c,
                    col::RACE | col::GENDER | col::CHANGE | col::DIABETES_MED | col::READMITTED
                )
        })
        .collect();
    // Per medication code: prescribed at all, and dose moved.
    let meds: Vec<(usize, Vec<bool>, Vec<bool>)> = (col::FIRST_MED..=col::LAST_MED)
        .map(|c| {
            let v = &m.marginals[c].values;
            (
                c,
                v.iter().map(|x| x.as_deref() != Some("No")).collect(),
                v.iter()
                    .map(|x| matches!(x.as_deref(), Some("Up" | "Down")))
                    .collect(),
            )
        })
        .collect();
    let (yes, no) = (
        code(m, col::DIABETES_MED, "Yes"),
        code(m, col::DIABETES_MED, "No"),
    );
    let (ch, unchanged) = (code(m, col::CHANGE, "Ch"), code(m, col::CHANGE, "No"));
    // Chunks with their own streams: the same rows whatever the thread count.
    slots
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(chunk, slots)| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(16 + chunk as u64);
            let mut e = vec![0.0f64; m.copula.len()];
            slots
                .iter()
                .map(|&p| {
                    let person = &people[p as usize];
                    let mut row = [0u32; WIDTH];
                    row[col::PATIENT_NBR] = p;
                    e[0] = person.e_age;
                    for x in e.iter_mut().skip(1) {
                        *x = r.sample(StandardNormal);
                    }
                    for (i, &c) in m.copula.iter().enumerate() {
                        let z: f64 = (0..=i).map(|j| m.chol[i][j] * e[j]).sum();
                        row[c] = m.marginals[c].pick(phi(z));
                    }
                    row[col::RACE] = person.race;
                    row[col::GENDER] = person.gender;
                    for &c in &independent {
                        row[c] = m.marginals[c].pick(r.random::<f64>());
                    }
                    // diabetesMed and change follow the medications.
                    let prescribed = meds.iter().any(|(c, p, _)| p[row[*c] as usize]);
                    let moved = meds.iter().any(|(c, _, mv)| mv[row[*c] as usize]);
                    let switched = prescribed && (moved || r.random::<f64>() < m.switch_rate);
                    row[col::DIABETES_MED] = if prescribed { yes } else { no };
                    row[col::CHANGE] = if switched { ch } else { unchanged };
                    row
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Rows generated per random stream (and per parallel task).
const CHUNK: usize = 8192;

fn code(m: &Model, c: usize, v: &str) -> u32 {
    m.marginals[c].code_of(v).unwrap_or(0) as u32
}

/// Generates `rows` synthetic encounters with seed `seed`.
pub fn generate(rows: usize, seed: u64) -> Table {
    let m = model();
    let rows_codes = codes(m, rows, seed);
    let mut ids = ChaCha8Rng::seed_from_u64(seed);
    ids.set_stream(2);
    let n_patients = rows_codes
        .iter()
        .map(|row| row[col::PATIENT_NBR] as usize + 1)
        .max()
        .unwrap_or(0);
    let mut patient_ids = Vec::with_capacity(n_patients);
    let mut next = 135i64;
    for _ in 0..n_patients {
        patient_ids.push(next);
        next += ids.random_range(1..=5000);
    }
    patient_ids.shuffle(&mut ids);
    let mut encounter = 12_522i64;
    let encounters: Vec<Option<i64>> = (0..rows_codes.len())
        .map(|_| {
            let e = encounter;
            encounter += ids.random_range(1..=8000);
            Some(e)
        })
        .collect();
    // Labels: 0 = NO, 1 = >30, 2 = <30; own streams so they never shift the feature draws.
    let labels: Vec<u32> = rows_codes
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(chunk, rows)| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(1 << 32 | chunk as u64);
            rows.iter()
                .map(|row| {
                    let discharge = m.marginals[col::DISCHARGE_DISPOSITION_ID].ints
                        [row[col::DISCHARGE_DISPOSITION_ID] as usize];
                    let positive =
                        !EXPIRED.contains(&discharge) && r.random::<f64>() < sigmoid(score(m, row));
                    match positive {
                        false => 0,
                        true if r.random::<f64>() < m.lt30_share => 2,
                        true => 1,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .concat();
    let columns = (0..WIDTH)
        .map(|c| {
            let mg = &m.marginals[c];
            match COLUMNS[c].kind {
                Kind::Identifier if c == col::ENCOUNTER_ID => Column::Int(encounters.clone()),
                Kind::Identifier => Column::Int(
                    rows_codes
                        .iter()
                        .map(|r| Some(patient_ids[r[c] as usize]))
                        .collect(),
                ),
                Kind::Integer => Column::Int(
                    rows_codes
                        .iter()
                        .map(|r| Some(mg.ints[r[c] as usize]))
                        .collect(),
                ),
                Kind::Categorical if c == col::READMITTED => Column::Cat(Categories::from_codes(
                    ["NO", ">30", "<30"].map(str::to_owned).to_vec(),
                    labels.clone(),
                )),
                Kind::Categorical => {
                    // The dictionary holds the non-missing values; `?` maps to MISSING.
                    let mut dict = Vec::new();
                    let remap: Vec<u32> = mg
                        .values
                        .iter()
                        .map(|v| match v {
                            Some(v) => {
                                dict.push(v.clone());
                                dict.len() as u32 - 1
                            }
                            None => MISSING,
                        })
                        .collect();
                    Column::Cat(Categories::from_codes(
                        dict,
                        rows_codes.iter().map(|r| remap[r[c] as usize]).collect(),
                    ))
                }
            }
        })
        .collect();
    Table::from_columns(columns)
}

/// The embedded label model's probability for a row of any table (exposed for fidelity tests and
/// documentation: the generator's ground truth).
pub fn label_probability(t: &Table, row: usize) -> Option<f64> {
    let m = model();
    let mut codes = [0u32; WIDTH];
    for (c, b) in m.beta.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let code = match t.get(row, c) {
            Value::Missing => m.marginals[c].code_of("?"),
            Value::Int(v) => m.marginals[c].ints.iter().position(|&x| x == v),
            Value::Str(s) if c == col::AGE => AGE_BRACKETS.iter().position(|b| *b == s),
            Value::Str(s) => m.marginals[c].code_of(s),
        };
        codes[c] = code? as u32;
    }
    Some(sigmoid(score(m, &codes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn embedded_figures_parse_and_cover_the_schema() {
        let s = stats();
        for spec in COLUMNS.iter().filter(|c| c.kind != Kind::Identifier) {
            assert!(s.value_counts.contains_key(spec.name), "{}", spec.name);
        }
        let m = model();
        assert_eq!(m.copula[0], col::AGE);
        assert_eq!(m.copula.len(), 12);
        assert!((0.0..=1.0).contains(&m.switch_rate));
        // The Cholesky factor reproduces the matrix diagonal.
        for row in &m.chol {
            let d: f64 = row.iter().map(|x| x * x).sum();
            assert!((d - 1.0).abs() < 1e-6, "{d}");
        }
    }

    #[test]
    fn deterministic_for_a_seed_and_valid() {
        let a = generate(3000, 7).to_csv_bytes(false).unwrap();
        let b = generate(3000, 7).to_csv_bytes(false).unwrap();
        let c = generate(3000, 8).to_csv_bytes(false).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let t = crate::data::load::read(&a[..], "synth", &Default::default()).unwrap();
        assert_eq!(t.len(), 3000);
    }

    #[test]
    fn patients_repeat_and_share_demographics() {
        let t = generate(5000, 1);
        let mut seen: HashMap<i64, (Value<'_>, Value<'_>, Value<'_>)> = HashMap::new();
        let mut repeats = 0;
        for i in 0..t.len() {
            let Value::Int(p) = t.get(i, col::PATIENT_NBR) else {
                panic!()
            };
            let demo = (
                t.get(i, col::RACE),
                t.get(i, col::GENDER),
                t.get(i, col::AGE),
            );
            if let Some(prev) = seen.insert(p, demo) {
                assert_eq!(prev, demo);
                repeats += 1;
            }
        }
        // The real file has 101,766 encounters of 71,518 patients (30% repeats).
        let share = repeats as f64 / t.len() as f64;
        assert!((0.2..0.4).contains(&share), "{share}");
        let mut enc: Vec<_> = t.ints(col::ENCOUNTER_ID).to_vec();
        enc.dedup();
        assert_eq!(enc.len(), t.len());
    }

    #[test]
    fn medications_drive_diabetes_med_and_expired_are_never_readmitted() {
        let t = generate(5000, 3);
        for i in 0..t.len() {
            let prescribed =
                (col::FIRST_MED..=col::LAST_MED).any(|c| t.get(i, c) != Value::Str("No"));
            assert_eq!(t.get(i, col::DIABETES_MED) == Value::Str("Yes"), prescribed);
            if let Value::Int(d) = t.get(i, col::DISCHARGE_DISPOSITION_ID)
                && EXPIRED.contains(&d)
            {
                assert_eq!(t.get(i, col::READMITTED), Value::Str("NO"));
            }
        }
    }
}
