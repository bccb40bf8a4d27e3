//! The hyperparameters of one gradient-boosted-trees fit ([`TrialParams`]): the default
//! configuration, how the search samples others, and the forust-ml booster that records them in
//! the model file. Shared by the learner ([`super::gbdt`]) and the search ([`super::search`]);
//! imports neither.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use forust_ml::gradientbooster::GradientBooster;
use forust_ml::metric::Metric;
use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;

/// Rounds without validation improvement before a trial stops.
pub const EARLY_STOPPING_ROUNDS: usize = 40;

/// One point of the search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialParams {
    pub learning_rate: f64,
    pub max_depth: usize,
    /// Leaves per tree at most (grown best-first, like LightGBM's `num_leaves`); 0 = no cap,
    /// which grows every splittable node down to `max_depth` (depth-wise).
    #[serde(default)]
    pub max_leaves: usize,
    pub min_leaf_weight: f64,
    pub l2: f64,
    pub gamma: f64,
    pub subsample: f64,
    pub colsample_bytree: f64,
    pub nbins: u16,
}

impl Default for TrialParams {
    /// The first trial of every search: a configuration measured to do well on this data.
    fn default() -> Self {
        TrialParams {
            learning_rate: 0.05,
            // LightGBM's default tree shape: 31 leaves, depth bounded only by the leaf count.
            max_depth: 30,
            max_leaves: 31,
            min_leaf_weight: 10.0,
            l2: 1.0,
            gamma: 0.0,
            subsample: 0.8,
            colsample_bytree: 0.8,
            nbins: 128,
        }
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo.ln()..hi.ln())).exp()
}

impl TrialParams {
    /// A random point (rounded so the recorded parameters read cleanly).
    pub(crate) fn sample(rng: &mut ChaCha8Rng) -> TrialParams {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        TrialParams {
            learning_rate: r3(log_uniform(rng, 0.02, 0.2)),
            max_depth: rng.random_range(3..=8),
            max_leaves: [7, 15, 31, 63][rng.random_range(0..4)],
            min_leaf_weight: r3(log_uniform(rng, 1.0, 100.0)),
            l2: r3(log_uniform(rng, 0.1, 20.0)),
            gamma: if rng.random_bool(0.5) {
                0.0
            } else {
                r3(rng.random_range(0.0..1.0))
            },
            subsample: r3(rng.random_range(0.5..1.0)),
            colsample_bytree: r3(rng.random_range(0.4..1.0)),
            nbins: [32, 64, 128, 256][rng.random_range(0..4)],
        }
    }

    /// A forust booster recording these parameters (the trees come from [`super::gbdt`]).
    /// Thread settings are left at forust's defaults so the model bytes do not depend on them.
    pub(crate) fn booster(&self, trees: usize, seed: u64) -> GradientBooster {
        GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(trees)
            .set_learning_rate(self.learning_rate as f32)
            .set_max_depth(self.max_depth)
            .set_min_leaf_weight(self.min_leaf_weight as f32)
            .set_l2(self.l2 as f32)
            .set_gamma(self.gamma as f32)
            .set_nbins(self.nbins)
            .set_subsample(self.subsample as f32)
            .set_sample_method(if self.subsample < 1.0 {
                SampleMethod::Random
            } else {
                SampleMethod::None
            })
            .set_colsample_bytree(self.colsample_bytree)
            .set_seed(seed)
            .set_initialize_base_score(true)
            .set_evaluation_metric(Some(Metric::LogLoss))
            .set_early_stopping_rounds(Some(EARLY_STOPPING_ROUNDS))
            .set_parallel(false)
    }
}
