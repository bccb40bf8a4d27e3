//! Seeded random hyperparameter search with successive halving. Every trial trains on the training
//! split with early stopping on the validation split; each rung keeps the best quarter (by
//! validation ROC AUC) and continues their boosters up to four times the tree budget. The first
//! trial is the measured default configuration and always reaches the last rung, so a search is
//! never worse on validation than the default alone (small budgets favour fast learning rates).
//! Every trial shares one quantised copy of the data. Trials of a rung run in parallel on a rayon
//! pool of the requested width (each single-threaded); a rung narrower than the pool lets each
//! trial build its histograms on the pool instead.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use forust_ml::gradientbooster::GradientBooster;

use super::ModelError;
use super::gbdt::{Binned, Trial};
use super::metrics::roc_auc;
pub use super::params::{EARLY_STOPPING_ROUNDS, TrialParams};

/// Trees allowed in the final rung (early stopping usually ends far sooner).
pub const MAX_TREES: usize = 1000;
/// Each rung keeps 1/ETA of the trials and gives them ETA times the budget.
const ETA: usize = 4;
/// Trees per trial in the first rung of a multi-rung search: a cheap first look, so 20 trials
/// cost a few times one trial (the default trial always continues to the end anyway).
const FIRST_RUNG_TREES: usize = 16;

/// The quantised data a search runs on (built once, shared by every trial and rung).
pub(crate) struct SearchData<'a> {
    pub binned: &'a Binned,
    pub valid_labels: &'a [bool],
}

/// One trial's result in one rung.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    pub trial: usize,
    pub rung: usize,
    pub max_trees: usize,
    pub trees: usize,
    pub validation_roc_auc: f64,
    pub params: TrialParams,
}

/// The tree budgets of the rungs for `trials` trials: [`FIRST_RUNG_TREES`] times ETA^rung, and
/// the last rung always has [`MAX_TREES`].
fn rungs(trials: usize) -> Vec<(usize, usize)> {
    let mut k = 0;
    let mut n = trials;
    while n >= ETA && k < 2 {
        n = n.div_ceil(ETA);
        k += 1;
    }
    let mut out = Vec::new();
    let mut alive = trials;
    for r in 0..=k {
        let budget = if r == k {
            MAX_TREES
        } else {
            FIRST_RUNG_TREES * ETA.pow(r as u32)
        };
        out.push((alive, budget));
        alive = alive.div_ceil(ETA);
    }
    out
}

/// The trials' parameters: trial 0 is the default, the others are seeded random points.
fn trial_params(trials: usize, seed: u64) -> Vec<TrialParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..trials)
        .map(|i| {
            let p = TrialParams::sample(&mut rng);
            if i == 0 { TrialParams::default() } else { p }
        })
        .collect()
}

/// Runs the search; returns the winning booster, its parameters and every trial report.
///
/// Each rung continues its surviving trials' boosters from where the previous rung left them
/// (same trees as a refit with the larger budget, since growth is deterministic and the budget
/// only decides when to stop); a trial that early-stopped costs nothing in later rungs.
pub(crate) fn run(
    data: &SearchData<'_>,
    trials: usize,
    seed: u64,
    threads: usize,
    on_trial: &(dyn Fn(&TrialReport, usize, usize) + Sync),
) -> Result<(GradientBooster, TrialParams, Vec<TrialReport>), ModelError> {
    let trials = trials.max(1);
    let params = trial_params(trials, seed);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ModelError::Data(format!("cannot start {threads} training threads: {e}")))?;
    let schedule = rungs(trials);
    // The default trial may ride along in later rungs.
    let total: usize = schedule
        .iter()
        .enumerate()
        .map(|(i, (n, _))| n + usize::from(i > 0 && *n < trials))
        .sum();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut states: Vec<Trial> = params
        .iter()
        .enumerate()
        .map(|(t, p)| Trial::new(data.binned, p.clone(), seed.wrapping_add(t as u64)))
        .collect();
    let mut alive: Vec<usize> = (0..trials).collect();
    let mut reports = Vec::new();
    let mut winner = 0;
    let mut final_budget = MAX_TREES;
    for (rung, &(_, budget)) in schedule.iter().enumerate() {
        // A rung narrower than the pool lets each trial use the pool for its histograms.
        let inner = alive.len() < threads;
        let mut running: Vec<(usize, &mut Trial)> = states
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| alive.contains(t))
            .collect();
        let mut scored: Vec<(usize, f64, TrialReport)> = pool.install(|| {
            running
                .par_iter_mut()
                .map(|(t, trial)| {
                    trial.advance(data.binned, budget, EARLY_STOPPING_ROUNDS, inner);
                    let auc = roc_auc(data.valid_labels, trial.best_valid_scores());
                    let report = TrialReport {
                        trial: *t,
                        rung,
                        max_trees: budget,
                        trees: trial.best_trees(),
                        validation_roc_auc: auc,
                        params: trial.params.clone(),
                    };
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    on_trial(&report, n, total);
                    let auc = if auc.is_nan() { f64::NEG_INFINITY } else { auc };
                    (*t, auc, report)
                })
                .collect()
        });
        reports.extend(scored.iter().map(|s| s.2.clone()));
        // Best first; ties go to the lower trial number so the outcome is seed-deterministic.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        winner = scored.first().map_or(0, |s| s.0);
        final_budget = budget;
        let keep = scored.len().div_ceil(ETA).max(1);
        alive = scored.iter().take(keep).map(|s| s.0).collect();
        if !alive.contains(&0) {
            alive.push(0);
        }
        alive.sort_unstable();
    }
    let best = params[winner].clone();
    let template = best.booster(final_budget, seed.wrapping_add(winner as u64));
    let trial = states.swap_remove(winner);
    let booster = trial
        .into_booster(data.binned, template)
        .map_err(|e| ModelError::Data(format!("cannot export the trained trees: {e}")))?;
    Ok((booster, best, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rung_schedule_halves_and_ends_at_the_full_budget() {
        assert_eq!(rungs(1), vec![(1, MAX_TREES)]);
        assert_eq!(rungs(2), vec![(2, MAX_TREES)]);
        assert_eq!(rungs(3), vec![(3, MAX_TREES)]);
        assert_eq!(rungs(4), vec![(4, 16), (1, MAX_TREES)]);
        assert_eq!(rungs(20), vec![(20, 16), (5, 64), (2, MAX_TREES)]);
    }

    #[test]
    fn sampling_is_seeded() {
        let a = TrialParams::sample(&mut ChaCha8Rng::seed_from_u64(1));
        let b = TrialParams::sample(&mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a, b);
        assert!((0.02..=0.2).contains(&a.learning_rate));
    }
}
