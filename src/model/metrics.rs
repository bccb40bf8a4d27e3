//! Classification metrics on probabilities: ranking (ROC AUC, PR AUC), calibration (log loss,
//! Brier) and the confusion-based precision/recall/F1 at a threshold, plus threshold choice.
//! Empty or one-class inputs give `NaN` for the metrics that are undefined on them.

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to this distance from 0 and 1 in log loss.
const EPS: f64 = 1e-15;

/// Area under the ROC curve (Mann–Whitney U with average ranks for ties).
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> f64 {
    let n = labels.len().min(scores.len());
    let pos = labels[..n].iter().filter(|&&y| y).count();
    let neg = n - pos;
    if pos == 0 || neg == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        rank_sum += avg * idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = pos as f64;
    (rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64)
}

/// Area under the precision–recall curve as average precision (the step-wise sum used by
/// scikit-learn's `average_precision_score`; tied scores form one step).
pub fn pr_auc(labels: &[bool], scores: &[f64]) -> f64 {
    let n = labels.len().min(scores.len());
    let pos = labels[..n].iter().filter(|&&y| y).count();
    if pos == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    ap
}

/// Mean negative log-likelihood (natural log), probabilities clipped to `[1e-15, 1 - 1e-15]`.
pub fn log_loss(labels: &[bool], probs: &[f64]) -> f64 {
    mean(labels.iter().zip(probs).map(|(&y, &p)| {
        let p = p.clamp(EPS, 1.0 - EPS);
        if y { -p.ln() } else { -(1.0 - p).ln() }
    }))
}

/// Mean squared difference between probability and outcome.
pub fn brier(labels: &[bool], probs: &[f64]) -> f64 {
    mean(
        labels
            .iter()
            .zip(probs)
            .map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2)),
    )
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = it.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Precision, recall and F1 when `prob >= threshold` predicts positive. Undefined ratios are 0.
pub fn precision_recall_f1(labels: &[bool], probs: &[f64], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&y, &p) in labels.iter().zip(probs) {
        match (p >= threshold, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    prf(tp, fp, fn_)
}

fn prf(tp: usize, fp: usize, fn_: usize) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let p = ratio(tp, tp + fp);
    let r = ratio(tp, tp + fn_);
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f1)
}

/// How the decision threshold is chosen on validation predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum ThresholdRule {
    /// The threshold with the highest F1.
    MaxF1,
    /// The highest threshold whose recall is at least `recall` (the best precision there).
    TargetRecall { recall: f64 },
}

impl std::fmt::Display for ThresholdRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThresholdRule::MaxF1 => f.write_str("max F1 on validation"),
            ThresholdRule::TargetRecall { recall } => {
                write!(f, "recall >= {recall} on validation")
            }
        }
    }
}

/// Chooses a threshold on (validation) predictions. Candidates are the distinct scores; with no
/// positives the threshold is 0.5.
pub fn choose_threshold(labels: &[bool], probs: &[f64], rule: ThresholdRule) -> f64 {
    let n = labels.len().min(probs.len());
    let pos = labels[..n].iter().filter(|&&y| y).count();
    if pos == 0 || n == 0 {
        return 0.5;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best = (f64::NEG_INFINITY, probs[idx[0]]);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && probs[idx[j + 1]] == probs[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let t = probs[idx[i]];
        let (_, r, f1) = prf(tp, fp, pos - tp);
        match rule {
            ThresholdRule::MaxF1 => {
                if f1 > best.0 {
                    best = (f1, t);
                }
            }
            ThresholdRule::TargetRecall { recall } => {
                if r >= recall {
                    return t;
                }
                best = (r, t);
            }
        }
        i = j + 1;
    }
    best.1
}

/// Every metric on one labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub threshold: f64,
    pub rows: usize,
    pub positives: usize,
}

impl Metrics {
    /// All metrics for predictions `probs` against `labels` at `threshold`.
    pub fn compute(labels: &[bool], probs: &[f64], threshold: f64) -> Metrics {
        let (precision, recall, f1) = precision_recall_f1(labels, probs, threshold);
        Metrics {
            roc_auc: roc_auc(labels, probs),
            pr_auc: pr_auc(labels, probs),
            log_loss: log_loss(labels, probs),
            brier: brier(labels, probs),
            precision,
            recall,
            f1,
            threshold,
            rows: labels.len(),
            positives: labels.iter().filter(|&&y| y).count(),
        }
    }
}

/// Metrics on the validation split (used for choices) and the held-out test split (reported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    pub validation: Metrics,
    pub test: Metrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn auc_matches_hand_computed_values_with_ties() {
        let y = [false, false, true, true];
        assert!(close(roc_auc(&y, &[0.1, 0.4, 0.35, 0.8]), 0.75));
        assert!(close(roc_auc(&y, &[0.1, 0.2, 0.3, 0.4]), 1.0));
        assert!(close(roc_auc(&y, &[0.5, 0.5, 0.5, 0.5]), 0.5));
        // One tie across classes counts half.
        assert!(close(roc_auc(&y, &[0.1, 0.3, 0.3, 0.4]), 0.875));
        assert!(roc_auc(&[true, true], &[0.1, 0.2]).is_nan());
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.8333...
        let y = [false, false, true, true];
        assert!(close(
            pr_auc(&y, &[0.1, 0.4, 0.35, 0.8]),
            0.8333333333333333
        ));
        assert!(close(pr_auc(&y, &[0.1, 0.2, 0.3, 0.4]), 1.0));
    }

    #[test]
    fn calibration_metrics() {
        let y = [true, false];
        assert!(close(log_loss(&y, &[0.5, 0.5]), std::f64::consts::LN_2));
        assert!(close(brier(&y, &[0.8, 0.4]), (0.04 + 0.16) / 2.0));
        assert!(log_loss(&y, &[0.0, 1.0]).is_finite());
    }

    #[test]
    fn thresholds_by_f1_and_by_recall() {
        let y = [true, false, true, false, true, false];
        let p = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];
        let (pr, r, f1) = precision_recall_f1(&y, &p, 0.7);
        assert!(close(pr, 2.0 / 3.0) && close(r, 2.0 / 3.0) && close(f1, 2.0 / 3.0));
        let t = choose_threshold(&y, &p, ThresholdRule::MaxF1);
        let best = precision_recall_f1(&y, &p, t).2;
        for c in p {
            assert!(precision_recall_f1(&y, &p, c).2 <= best + 1e-12);
        }
        assert_eq!(
            choose_threshold(&y, &p, ThresholdRule::TargetRecall { recall: 1.0 }),
            0.2
        );
        assert_eq!(
            choose_threshold(&y, &p, ThresholdRule::TargetRecall { recall: 0.3 }),
            0.9
        );
    }
}
